"""WorkDirLockHook (issue #18 row 1): a second training into a busy work dir refuses with one line naming the other
run and the first run's checkpoints and config dump stay intact (or, on request, it trains in its own timestamped
subfolder); stale locks of dead processes are taken over; cleanup never removes another live run's temporary file."""
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest

import mmrevcol  # noqa: F401
from mmrevcol.engine.checkpoint_discovery import is_complete_checkpoint
from mmrevcol.engine.work_dir_lock import LOCK_NAME, WorkDirLock, WorkDirLockHook
from mmrevcol.utils.atomic_io import host_tag, stale_temp_files
from mmrevcol.utils.errors import WorkDirLockedError
from test_tools import env

REPO = Path(__file__).resolve().parents[1]

# A toy training through run_tool, its config dumped as <work_dir>/toy_cfg.py holding `tag` (to see whose dump it
# is). Each iteration sleeps so that a second run starts while the first one trains.
SCRIPT = textwrap.dedent('''
    import sys, time
    sys.path[:0] = [{repo!r}, {tests!r}]
    import torch
    import mmrevcol  # noqa: F401
    from mmengine.config import Config
    from mmengine.hooks import Hook
    from mmengine.runner import Runner
    from mmrevcol.utils.cli import run_tool
    from toy_run import Data, Toy

    work_dir, max_iters, tag, on_conflict, sleep = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], \\
        float(sys.argv[5])


    class Slow(Hook):
        def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
            time.sleep(sleep)


    def main(argv):
        torch.manual_seed(0)
        cfg = Config(dict(tag=tag), filename={config!r})
        Runner(model=Toy(), work_dir=work_dir, cfg=cfg,
               train_dataloader=dict(dataset=Data(), sampler=dict(type='InfiniteSampler', shuffle=True),
                                     batch_size=2, collate_fn=dict(type='default_collate'), num_workers=0),
               train_cfg=dict(by_epoch=False, max_iters=max_iters),
               optim_wrapper=dict(optimizer=dict(type='AdamW', lr=1e-2)),
               default_hooks=dict(checkpoint=dict(type='SafeCheckpointHook', interval=5, by_epoch=False,
                                                  max_keep_ckpts=1),
                                  logger=dict(type='LoggerHook', interval=1),
                                  work_dir_lock=dict(type='WorkDirLockHook', on_conflict=on_conflict)),
               custom_hooks=[Slow()], log_processor=dict(by_epoch=False), randomness=dict(seed=0),
               default_scope='mmengine').train()


    sys.exit(run_tool(main))
''')


def _script(tmp_path: Path) -> Path:
    script = tmp_path / 'toy_lock.py'
    script.write_text(SCRIPT.format(repo=str(REPO), tests=str(REPO / 'tests'), config=str(tmp_path / 'toy_cfg.py')))
    (tmp_path / 'toy_cfg.py').write_text('# the file a Config names; its dump holds the run\'s dict\n')
    return script


def _start(script, work, max_iters, tag, on_conflict='refuse', sleep=0.0):
    return subprocess.Popen([sys.executable, str(script), str(work), str(max_iters), tag, on_conflict, str(sleep)],
                            cwd=REPO, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_iteration(proc, at=2, timeout=200):
    deadline = time.time() + timeout
    lines = []
    for line in proc.stdout:  # mmengine logs to stdout
        lines.append(line)
        match = re.search(r'Iter\(train\) \[\s*(\d+)/', line)
        if match and int(match.group(1)) >= at:
            return lines
        assert time.time() < deadline, ''.join(lines[-20:])
    raise AssertionError(''.join(lines[-40:]))


@pytest.fixture
def first_run(tmp_path):
    """Run A: 40 slow iterations (checkpoint every 5, max_keep_ckpts=1), holding the lock of tmp/work."""
    script = _script(tmp_path)
    work = tmp_path / 'work'
    proc = _start(script, work, 40, 'A', sleep=0.25)
    _wait_for_iteration(proc)
    yield script, work, proc
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def _finish(proc, timeout=300):
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err[-3000:]


@pytest.mark.slow
def test_second_run_refuses_and_first_run_is_intact(first_run):
    """The issue's reproduction with two real trainings (~30 s)."""
    script, work, proc_a = first_run
    holder = json.loads((work / LOCK_NAME).read_text())
    assert holder['pid'] == proc_a.pid
    proc_b = _start(script, work, 40, 'B')
    out, err = proc_b.communicate(timeout=300)
    assert proc_b.returncode == 1, err[-3000:]
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert lines[-2].startswith(f'ERROR: work dir {work} is in use by another run (pid {proc_a.pid} on '), err
    assert 'on_conflict=subfolder' in lines[-2] and lines[-1].startswith('(traceback in '), err
    assert 'Traceback' not in err
    assert "tag = 'A'" in (work / 'toy_cfg.py').read_text()  # B's Runner overwrote A's dump: put back

    _finish(proc_a)
    assert sorted(p.name for p in work.glob('iter_*.pth')) == ['iter_40.pth']
    assert is_complete_checkpoint(str(work / 'iter_40.pth'))
    assert (work / 'last_checkpoint').read_text().strip() == str(work / 'iter_40.pth')
    assert "tag = 'A'" in (work / 'toy_cfg.py').read_text()
    assert not (work / LOCK_NAME).exists()  # released at the end


@pytest.mark.slow
def test_second_run_trains_in_its_own_subfolder_on_request(first_run):
    script, work, proc_a = first_run
    proc_b = _start(script, work, 6, 'B', on_conflict='subfolder')
    out, err = proc_b.communicate(timeout=300)
    assert proc_b.returncode == 0, err[-3000:]
    match = re.search(r'this run trains in (\S+) instead', out)
    assert match, out[-3000:]
    sub = Path(match.group(1))
    assert sub.parent == work and re.fullmatch(r'\d{8}_\d{6}', sub.name)
    assert (sub / 'iter_6.pth').is_file() and (sub / 'last_checkpoint').read_text().strip() == str(sub / 'iter_6.pth')
    assert "tag = 'B'" in (sub / 'toy_cfg.py').read_text()
    _finish(proc_a)
    assert sorted(p.name for p in work.glob('iter_*.pth')) == ['iter_40.pth']
    assert (work / 'last_checkpoint').read_text().strip() == str(work / 'iter_40.pth')
    assert "tag = 'A'" in (work / 'toy_cfg.py').read_text()


# ----------------------------------------------------------------------------------------------------------------
HOLD = 'import sys, time; sys.path.insert(0, %r); from mmrevcol.engine.work_dir_lock import WorkDirLock; ' \
       'WorkDirLock(sys.argv[1]).acquire(); print("held", flush=True); time.sleep(600)' % str(REPO)


def _holder(dirname):
    proc = subprocess.Popen([sys.executable, '-c', HOLD, str(dirname)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == 'held'
    return proc


def test_run_into_a_held_work_dir_stops_at_start_and_changes_nothing(tmp_path, capsys):
    from mmrevcol.utils.cli import run_tool
    from toy_run import make_runner
    make_runner(tmp_path, 3).train()  # the first run's files (max_keep_ckpts=1)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    proc = _holder(tmp_path)  # ... and the first run, still training
    try:
        def second(argv):
            runner = make_runner(tmp_path, 6, resume=True)
            runner.register_hook(WorkDirLockHook(), priority='HIGHEST')
            runner.train()

        assert run_tool(second) == 1
    finally:
        proc.kill()
        proc.wait()
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0].startswith(f'ERROR: work dir {tmp_path} is in use by another run (pid {proc.pid} on '), err
    assert len(err) == 2 and err[1].startswith('(traceback in '), err
    after = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file() and p.name != LOCK_NAME}
    assert after == {k: v for k, v in before.items() if k != LOCK_NAME} and 'iter_3.pth' in after


def test_lock_names_a_live_holder_and_takes_over_a_dead_one(tmp_path):
    proc = _holder(tmp_path)
    try:
        with pytest.raises(WorkDirLockedError, match=rf'in use by another run \(pid {proc.pid} on '):
            WorkDirLock(tmp_path).acquire()
    finally:
        proc.send_signal(signal.SIGKILL)  # dies without releasing: the file stays, naming it
        proc.wait()
    assert json.loads((tmp_path / LOCK_NAME).read_text())['pid'] == proc.pid
    lock = WorkDirLock(tmp_path)
    lock.acquire()
    assert lock.taken_over['pid'] == proc.pid  # stale lock detected and replaced
    assert json.loads((tmp_path / LOCK_NAME).read_text())['pid'] == os.getpid()
    lock.release()
    assert not (tmp_path / LOCK_NAME).exists()


def test_same_thread_takes_over_a_run_that_ended_with_an_exception(tmp_path):
    first = WorkDirLock(tmp_path)
    first.acquire()  # never released, as a run whose train() raised
    second = WorkDirLock(tmp_path)
    second.acquire()
    assert first.fd is None and json.loads((tmp_path / LOCK_NAME).read_text())['pid'] == os.getpid()
    second.release()


def test_on_conflict_is_checked():
    with pytest.raises(ValueError, match="on_conflict must be one of \\('refuse', 'subfolder'\\)"):
        WorkDirLockHook(on_conflict='wait')


def test_cleanup_never_touches_a_live_writers_temporary_file(tmp_path):
    sleeper = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'])
    dead = subprocess.Popen([sys.executable, '-c', 'pass'])
    dead.wait()
    try:
        here = host_tag()
        live = tmp_path / f'.iter_3.pth.{sleeper.pid}-{here}.{uuid.uuid4().hex}.tmp'
        stale = tmp_path / f'.iter_3.pth.{dead.pid}-{here}.{uuid.uuid4().hex}.tmp'
        other_host = tmp_path / f'.iter_3.pth.{sleeper.pid}-{host_tag("elsewhere")}.{uuid.uuid4().hex}.tmp'
        legacy = tmp_path / f'.iter_2.pth.{uuid.uuid4().hex}.tmp'
        for path in (live, stale, other_host, legacy):
            path.write_bytes(b'partial')
        assert stale_temp_files(str(tmp_path)) == [str(stale)]
        # holding the folder's lock proves no other run writes there: unknown writers' files are leftovers too
        assert sorted(stale_temp_files(str(tmp_path), folder_locked=True)) == sorted(
            map(str, (stale, other_host, legacy)))

        # through a run: SafeCheckpointHook + WorkDirLockHook remove what is stale, keep the live writer's file
        from toy_run import make_runner
        runner = make_runner(tmp_path, 1)
        runner.register_hook(WorkDirLockHook(), priority='HIGHEST')
        runner.train()
        assert sorted(p.name for p in tmp_path.glob('.*.tmp')) == [live.name]
    finally:
        sleeper.kill()
        sleeper.wait()
