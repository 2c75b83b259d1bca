"""Fault injection (issue #9 acceptance): a 2-process (gloo) training that saves a checkpoint every iteration
(max_keep_ckpts=1) is SIGKILLed at random moments and at every step of saving, resumed each time with
``--resume``, and ends with the same weights as an uninterrupted run.

Kill points: random ones (a random delay after an iteration's log line, which is printed just before that
iteration is saved) and, through a module loaded with ``custom_imports``, the exact steps of
``SafeCheckpointHook``'s save: a torn temporary file, a complete temporary file before its rename, the new
checkpoint renamed but ``last_checkpoint`` not yet updated, ``last_checkpoint`` updated but the old checkpoint not
yet deleted. After every kill a complete checkpoint must exist.

Preemption (issue #18): the same run gets SIGTERM at 5 random moments — through ``tools/dist_train.sh`` as a
container runtime sends it (to the launcher only) or as SLURM does (to every process) — and must each time stop with
status 75 after writing a named checkpoint; resumed each time, it ends with the same weights as an uninterrupted run.

Run them (slow, ~5 min each on 2 busy cores): ``.venv/bin/python -m pytest tests/test_fault_injection.py -m slow -q``
"""
import os
import random
import re
import signal
import subprocess
import textwrap
import threading
from pathlib import Path

import pytest
import torch

from mmrevcol.engine.safe_checkpoint import is_complete_checkpoint
from test_tools import REPO, SEG, SEG_TINY, data_opts, demo_root, env, free_port  # noqa: F401  (fixture)

MAX_ITERS = 24
STAGES = ('mid_write', 'before_rename', 'after_rename', 'after_last_checkpoint')

FAULT_POINTS = textwrap.dedent('''
    """Pause (to be SIGKILLed) at one step of SafeCheckpointHook's save of iter_<N>.pth: MMREVCOL_FAULT=stage:N."""
    import os
    import time

    from mmrevcol.utils import atomic_io as sc  # where SafeCheckpointHook's writes happen

    STAGE, AT = os.environ.get('MMREVCOL_FAULT', 'none:0').split(':')
    TARGET = f'iter_{AT}.pth'
    real_write, real_publish = sc._write_synced_temp, sc._publish


    def pause():
        print(f'FAULT-POINT {STAGE} {TARGET}', flush=True)
        time.sleep(600)


    def write(path, data):
        tmp = real_write(path, data)
        if os.path.basename(path) == TARGET:
            if STAGE == 'mid_write':
                with open(tmp, 'r+b') as f:  # what a kill in the middle of writing leaves
                    f.truncate(len(data) // 2)
                pause()
            if STAGE == 'before_rename':
                pause()
        return tmp


    def publish(tmp, path):
        real_publish(tmp, path)
        if STAGE == 'after_rename' and os.path.basename(path) == TARGET:
            pause()
        if STAGE == 'after_last_checkpoint' and os.path.basename(path) == 'last_checkpoint':
            with open(path) as f:
                if f.read().strip().endswith(TARGET):
                    pause()


    sc._write_synced_temp, sc._publish = write, publish
''')


def _config(faults: Path) -> str:
    """The seg demo config that also imports fault_points (custom_imports given by --cfg-options come too late:
    Config.fromfile imports them before the options are merged)."""
    config = faults / 'upernet_revcol_demo_faults.py'
    config.write_text(f"_base_ = [{str(REPO / SEG)!r}]\n"
                      "custom_imports = dict(imports=['mmrevcol', 'fault_points'], allow_failed_imports=False)\n")
    return str(config)


def _command(config: str, work: Path, root: str, resume: bool):
    opts = [*SEG_TINY, *data_opts(root), f'train_cfg.max_iters={MAX_ITERS}', f'train_cfg.val_interval={MAX_ITERS * 10}',
            'default_hooks.checkpoint.interval=1', 'default_hooks.checkpoint.max_keep_ckpts=1',
            'default_hooks.logger.interval=1', 'train_dataloader.batch_size=2', 'param_scheduler.0.end=3',
            'param_scheduler.1.begin=3', f'param_scheduler.1.end={MAX_ITERS}',
            # deterministic: no dropout (its torch RNG draws are not replayed on resume)
            'model.decode_head.dropout_ratio=0', 'model.auxiliary_head.dropout_ratio=0',
            'randomness.deterministic=True']
    return (['bash', 'tools/dist_train.sh', config, '2', '--work-dir', str(work)] + (['--resume'] if resume else [])
            + ['--cfg-options', *opts])


def _launch(cmd, extra_env):
    e = env()
    e.update(extra_env, PORT=str(free_port()))
    return subprocess.Popen(cmd, cwd=REPO, env=e, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _descendants(pid: int) -> list:
    """Process ids below ``pid`` (from /proc): torchrun starts each worker in a session of its own."""
    children = {}
    for entry in os.listdir('/proc'):
        if entry.isdigit():
            try:
                with open(f'/proc/{entry}/stat') as f:
                    ppid = int(f.read().rsplit(')', 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _kill_group(proc):
    """SIGKILL the launcher and every process below it at once, as a power cut or the OOM killer would."""
    for pid in [proc.pid, *_descendants(proc.pid)]:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait()


def _run_until(cmd, extra_env, should_kill, timeout=400):
    """Run ``cmd``; SIGKILL its process group when ``should_kill(line)`` says so. Returns (killed, log)."""
    proc = _launch(cmd, extra_env)
    watchdog = threading.Timer(timeout, _kill_group, [proc])
    watchdog.start()
    lines, killed = [], False
    try:
        for line in proc.stdout:
            lines.append(line)
            if should_kill(line):
                killed = True
                _kill_group(proc)
                break
        proc.wait()
    finally:
        watchdog.cancel()
        if proc.poll() is None:
            _kill_group(proc)
    log = ''.join(lines)
    assert killed or proc.returncode == 0, log[-4000:]
    return killed, log


def _progress(work: Path) -> int:
    """The newest complete checkpoint's iteration (0 if none); asserts that nothing complete was lost."""
    done = [int(p.stem.split('_')[1]) for p in work.glob('iter_*.pth') if is_complete_checkpoint(str(p))]
    return max(done, default=0)


ITER = re.compile(r'Iter\(train\) \[\s*(\d+)/')


def _random_kill(rng):
    target = {'at': None}

    def should_kill(line):
        match = ITER.search(line)
        if not match:
            return False
        step = int(match.group(1))
        if target['at'] is None:  # the first iteration logged by this launch: aim zero or one iteration further
            target['at'] = step + rng.randint(0, 1)
        if step >= target['at']:
            threading.Event().wait(rng.uniform(0, 0.4))  # land before, during or after saving this iteration
            return True
        return False

    return should_kill


@pytest.mark.slow
def test_sigkill_at_random_moments_and_while_saving_then_resume_equals_uninterrupted(demo_root, tmp_path):
    rng = random.Random(0)
    faults = tmp_path / 'faults'
    faults.mkdir()
    (faults / 'fault_points.py').write_text(FAULT_POINTS)
    config = _config(faults)
    path = {'PYTHONPATH': str(faults)}  # dist_train.sh puts the repository in front

    reference = tmp_path / 'reference'
    _run_until(_command(config, reference, demo_root, resume=False), path, lambda line: False)

    work = tmp_path / 'work'
    trials = [('random', None)] + [x for stage in STAGES for x in (('stage', stage), ('random', None))]
    trials += [('stage', rng.choice(STAGES)), ('random', None)]
    assert len(trials) >= 10
    history, ever_saved = [], 0
    for number, (kind, stage) in enumerate(trials):
        before = _progress(work)
        if before >= MAX_ITERS - 1:
            break
        extra = dict(path)
        if kind == 'stage':
            at = before + 1 + rng.randint(0, 1)
            extra['MMREVCOL_FAULT'] = f'{stage}:{at}'
            should_kill = (lambda line: line.startswith('FAULT-POINT'))
        else:
            should_kill = _random_kill(rng)
        killed, log = _run_until(_command(config, work, demo_root, resume=number > 0), extra,
                                 should_kill)
        after = _progress(work)
        history.append((kind, stage, before, after, killed))
        print(f'trial {number}: {kind} {stage or ""} from {before} -> {after}, killed={killed}', flush=True)
        ever_saved = max(ever_saved, after)
        # no data loss: the newest complete checkpoint never goes backwards
        assert after >= before and (ever_saved == 0 or after > 0), (history, log[-3000:])
        if number > 0 and before > 0:
            assert f'iter_{before}.pth' in log or 'newest complete checkpoint' in log, log[-3000:]

    killed, log = _run_until(_command(config, work, demo_root, resume=True), path, lambda line: False)
    assert not killed and re.search(rf'Iter\(train\) \[{MAX_ITERS}/{MAX_ITERS}\]', log), log[-3000:]
    assert sum(1 for h in history if h[4]) >= 10, history

    expected = torch.load(reference / f'iter_{MAX_ITERS}.pth', weights_only=True)
    got = torch.load(work / f'iter_{MAX_ITERS}.pth', weights_only=True)
    assert got['meta']['iter'] == MAX_ITERS
    assert expected['state_dict'].keys() == got['state_dict'].keys()
    for key, value in expected['state_dict'].items():
        torch.testing.assert_close(got['state_dict'][key], value, rtol=0, atol=0, msg=f'{key} after {history}')


# ----------------------------------------------------------------------------------------------------------------
PREEMPT_INTERVAL = 8  # periodic checkpoints at 8, 16, 24: most stops write a checkpoint of their own


def _preempt_config(folder: Path) -> str:
    """The seg demo config with the safety hooks this test relies on (the shipped fragment states them too)."""
    config = folder / 'upernet_revcol_demo_preempt.py'
    config.write_text(f"_base_ = [{str(REPO / SEG)!r}]\n"
                      "default_hooks = dict(checkpoint=dict(type='SafeCheckpointHook'),\n"
                      "                     preemption=dict(type='PreemptionHook'),\n"
                      "                     work_dir_lock=dict(type='WorkDirLockHook'))\n")
    return str(config)


def _preempt_command(config: str, work: Path, root: str, resume: bool):
    cmd = _command(config, work, root, resume)
    return [f'default_hooks.checkpoint.interval={PREEMPT_INTERVAL}' if arg == 'default_hooks.checkpoint.interval=1'
            else arg for arg in cmd]


def _signal_tree(proc, signum, everyone: bool):
    """``signum`` to the launcher script only (a container's PID 1), or to every process below it too (SLURM)."""
    for pid in [proc.pid] + (_descendants(proc.pid) if everyone else []):
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass


STEP_TIME = re.compile(r'\btime: ([0-9.]+)')


def _run_and_signal(cmd, rng, everyone: bool, timeout=400):
    """Run ``cmd``; a random 1-3 iterations after its first logged one, plus 0-1.5 iteration times, send SIGTERM.

    The delay is counted in the run's own iteration time (from its log line), not in seconds: on a quiet machine a
    demo iteration takes 0.06 s, and a fixed 0.4 s could let a run reach its last iteration before the signal.
    Returns (returncode, log, signalled)."""
    proc = _launch(cmd, {})
    watchdog = threading.Timer(timeout, _kill_group, [proc])
    watchdog.start()
    lines, target, signalled = [], None, False
    try:
        for line in proc.stdout:
            lines.append(line)
            match = ITER.search(line)
            if signalled or not match:
                continue
            step = int(match.group(1))
            if target is None:
                target = min(step + rng.randint(1, 3), MAX_ITERS - 3)
            if step >= target:
                took = STEP_TIME.search(line)
                step_time = float(took.group(1)) if took else 0.1
                threading.Event().wait(rng.uniform(0, 1.5) * step_time)  # during the next iteration or its save
                _signal_tree(proc, signal.SIGTERM, everyone)
                signalled = True
        proc.wait()
    finally:
        watchdog.cancel()
        if proc.poll() is None:
            _kill_group(proc)
    return proc.returncode, ''.join(lines), signalled


STOPPED = re.compile(r'^STOPPED: SIGTERM: training stopped after (?:iteration|validation after iteration) (\d+); '
                     r'checkpoint (\S+) written', re.M)


@pytest.mark.slow
def test_sigterm_at_random_moments_then_resume_equals_uninterrupted(demo_root, tmp_path):
    rng = random.Random(18)
    folder = tmp_path / 'cfg'
    folder.mkdir()
    config = _preempt_config(folder)

    reference = tmp_path / 'reference'
    _run_until(_preempt_command(config, reference, demo_root, resume=False), {}, lambda line: False)

    work = tmp_path / 'work'
    history = []
    for number in range(5):
        before = _progress(work)
        everyone = number % 2 == 1
        code, log, signalled = _run_and_signal(_preempt_command(config, work, demo_root, resume=number > 0), rng,
                                               everyone)
        assert signalled, log[-3000:]
        assert code == 75, (code, log[-3000:])
        match = STOPPED.search(log)
        assert match, log[-3000:]
        step, path = int(match.group(1)), match.group(2)
        assert path == str(work / f'iter_{step}.pth') and is_complete_checkpoint(path), log[-3000:]
        assert (work / 'last_checkpoint').read_text().strip() == path
        assert step > before and _progress(work) == step, (history, log[-3000:])
        if number > 0:  # resumed exactly where the previous stop was
            assert re.search(rf'Iter\(train\) \[\s*{before + 1}/{MAX_ITERS}\]', log), log[-3000:]
            assert not re.search(rf'Iter\(train\) \[\s*{before}/{MAX_ITERS}\]', log), log[-3000:]
        history.append((number, 'every process' if everyone else 'launcher', before, step))
        print(f'stop {number}: SIGTERM to {history[-1][1]}: {before} -> {step}', flush=True)

    killed, log = _run_until(_preempt_command(config, work, demo_root, resume=True), {}, lambda line: False)
    assert not killed and re.search(rf'Iter\(train\) \[{MAX_ITERS}/{MAX_ITERS}\]', log), log[-3000:]
    expected = torch.load(reference / f'iter_{MAX_ITERS}.pth', weights_only=True)
    got = torch.load(work / f'iter_{MAX_ITERS}.pth', weights_only=True)
    assert got['meta']['iter'] == MAX_ITERS and expected['state_dict'].keys() == got['state_dict'].keys()
    for key, value in expected['state_dict'].items():
        torch.testing.assert_close(got['state_dict'][key], value, rtol=0, atol=0, msg=f'{key} after {history}')
