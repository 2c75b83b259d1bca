"""PreemptionHook (issue #18 row 2): SIGTERM / SIGUSR1 during training -> the iteration finishes, a checkpoint is
written through SafeCheckpointHook, one line names it, exit status 75; ``--resume`` continues exactly (final weights
bit-identical to an uninterrupted run), also with 2 processes (gloo on CPU) and with DataLoader workers."""
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
import torch
from mmengine.hooks import Hook

import mmrevcol  # noqa: F401  (registers the hooks)
from mmrevcol.engine.preemption import PreemptionHook
from mmrevcol.utils.errors import PreemptedError
from test_tools import env, free_port
from toy_run import Data, Toy

REPO = Path(__file__).resolve().parents[1]

# A toy training (tests/toy_run.py's model and data) run by `python SCRIPT` or under torchrun (gloo, CPU), through
# run_tool as the tools run. Each iteration sleeps a little so that a signal lands mid-run.
SCRIPT = textwrap.dedent('''
    import os, sys, time
    sys.path[:0] = [{repo!r}, {tests!r}]
    import torch
    import torch.distributed as dist
    import mmrevcol  # noqa: F401
    from mmengine.hooks import Hook
    from mmengine.runner import Runner
    from mmrevcol.utils.cli import run_tool
    from toy_run import Data, Toy

    work_dir, max_iters, resume, workers = sys.argv[1], int(sys.argv[2]), sys.argv[3] == '1', int(sys.argv[4])
    distributed = 'RANK' in os.environ
    if distributed:
        dist.init_process_group('gloo')


    class Slow(Hook):
        def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
            time.sleep(0.03)


    def main(argv):
        torch.manual_seed(0)  # the model is built before the Runner seeds: same initial weights in every run
        runner = Runner(
            model=Toy(), work_dir=work_dir,
            train_dataloader=dict(dataset=Data(), sampler=dict(type='InfiniteSampler', shuffle=True), batch_size=2,
                                  collate_fn=dict(type='default_collate'), num_workers=workers,
                                  persistent_workers=workers > 0),
            train_cfg=dict(by_epoch=False, max_iters=max_iters),
            optim_wrapper=dict(optimizer=dict(type='AdamW', lr=1e-2)),
            param_scheduler=dict(type='LinearLR', start_factor=0.5, by_epoch=False, begin=0, end=10),
            default_hooks=dict(checkpoint=dict(type='SafeCheckpointHook', interval=1000, by_epoch=False,
                                               max_keep_ckpts=1),
                               logger=dict(type='LoggerHook', interval=1),
                               preemption=dict(type='PreemptionHook'),
                               work_dir_lock=dict(type='WorkDirLockHook')),
            custom_hooks=[Slow()], log_processor=dict(by_epoch=False), resume=resume, randomness=dict(seed=0),
            default_scope='mmengine',
            launcher='pytorch' if distributed else 'none', env_cfg=dict(dist_cfg=dict(backend='gloo')),
            cfg=dict(model_wrapper_cfg=dict(type='MMDistributedDataParallel', device_ids=None)))
        try:
            runner.train()
        except BaseException:
            if distributed:
                dist.destroy_process_group()
            raise
        if distributed:
            dist.barrier()
            dist.destroy_process_group()


    sys.exit(run_tool(main))
''')


def _script(tmp_path: Path) -> Path:
    script = tmp_path / 'toy_train.py'
    script.write_text(SCRIPT.format(repo=str(REPO), tests=str(REPO / 'tests')))
    return script


def _command(script: Path, work: Path, max_iters: int, resume: bool, nproc: int = 1, workers: int = 0):
    args = [str(script), str(work), str(max_iters), '1' if resume else '0', str(workers)]
    if nproc == 1:
        return [sys.executable, *args]
    return [sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node', str(nproc), '--master_port',
            str(free_port()), *args]


ITER = re.compile(r'Iter\(train\) \[\s*(\d+)/')


def _run(cmd, signal_at=None, signum=signal.SIGTERM, group=False, timeout=300):
    """Run ``cmd``; once iteration ``signal_at`` is logged send ``signum`` to the launcher (or its whole process
    group, as SLURM signals every process of a step). Returns (returncode, output)."""
    proc = subprocess.Popen(cmd, cwd=REPO, env=env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    watchdog = threading.Timer(timeout, lambda: os.killpg(proc.pid, signal.SIGKILL))
    watchdog.start()
    lines = []
    try:
        for line in proc.stdout:
            lines.append(line)
            match = ITER.search(line)
            if signal_at is not None and match and int(match.group(1)) >= signal_at:
                (os.killpg if group else os.kill)(proc.pid, signum)
                signal_at = None
        proc.wait()
    finally:
        watchdog.cancel()
    return proc.returncode, ''.join(lines)


def _stopped_at(log: str) -> int:
    match = re.search(r'(SIGTERM|SIGUSR1|another rank): training stopped after iteration (\d+); checkpoint (\S+) '
                      r'written', log)
    assert match, log[-3000:]
    return int(match.group(2))


def _weights(path: Path) -> dict:
    return torch.load(path, weights_only=True)['state_dict']


def _assert_identical(a: Path, b: Path) -> None:
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys()
    for key in wa:
        torch.testing.assert_close(wa[key], wb[key], rtol=0, atol=0, msg=key)


# ----------------------------------------------------------------------------------------------------------------
class SignalAt(Hook):
    priority = 'HIGHEST'

    def __init__(self, at, signum=signal.SIGTERM):
        self.at, self.signum = at, signum

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        if runner.iter + 1 == self.at:
            os.kill(os.getpid(), self.signum)


def _runner(work_dir, max_iters, resume=False, custom_hooks=(), interval=1000):
    from mmengine.runner import Runner
    torch.manual_seed(0)  # the model is built before the Runner seeds: same initial weights in every run
    return Runner(
        model=Toy(), work_dir=str(work_dir),
        train_dataloader=dict(dataset=Data(), sampler=dict(type='InfiniteSampler', shuffle=True), batch_size=2,
                              collate_fn=dict(type='default_collate'), num_workers=0),
        train_cfg=dict(by_epoch=False, max_iters=max_iters),
        optim_wrapper=dict(optimizer=dict(type='AdamW', lr=1e-2)),
        param_scheduler=dict(type='LinearLR', start_factor=0.5, by_epoch=False, begin=0, end=10),
        default_hooks=dict(checkpoint=dict(type='SafeCheckpointHook', interval=interval, by_epoch=False,
                                           max_keep_ckpts=1),
                           preemption=dict(type='PreemptionHook')),
        custom_hooks=list(custom_hooks), resume=resume, randomness=dict(seed=0), default_scope='mmengine')


@pytest.mark.parametrize('signum', [signal.SIGTERM, signal.SIGUSR1])
def test_signal_writes_named_checkpoint_and_resume_is_exact(signum, tmp_path):
    reference = tmp_path / 'reference'
    _runner(reference, 9).train()

    work = tmp_path / 'work'
    with pytest.raises(PreemptedError) as info:
        _runner(work, 9, custom_hooks=[SignalAt(4, signum)]).train()
    message = str(info.value)
    assert info.value.exit_code == 75
    assert message.startswith(f'{signal.Signals(signum).name}: training stopped after iteration 4; checkpoint '
                              f'{work / "iter_4.pth"} written') and '--resume' in message, message
    assert (work / 'last_checkpoint').read_text().strip() == str(work / 'iter_4.pth')
    assert torch.load(work / 'iter_4.pth', weights_only=True)['meta']['iter'] == 4

    runner = _runner(work, 9, resume=True)
    runner.train()
    assert runner.iter == 9
    _assert_identical(reference / 'iter_9.pth', work / 'iter_9.pth')


def test_periodic_checkpoint_of_that_iteration_is_not_written_twice(tmp_path):
    with pytest.raises(PreemptedError, match='after iteration 4; checkpoint .*iter_4.pth written'):
        _runner(tmp_path, 9, custom_hooks=[SignalAt(4)], interval=2).train()
    assert sorted(p.name for p in tmp_path.glob('*.pth')) == ['iter_4.pth']  # max_keep_ckpts=1 still holds


def test_epoch_based_loop_stops_mid_epoch_and_loses_nothing(tmp_path):
    from mmengine.runner import Runner

    class Start(Hook):
        priority = 'LOWEST'

        def before_train(self, runner):
            self.iter, self.weights = runner.iter, runner.model.net[0].weight.detach().clone()

    def runner(resume=False, hooks=()):
        torch.manual_seed(0)
        return Runner(model=Toy(), work_dir=str(tmp_path),
                      train_dataloader=dict(dataset=Data(), sampler=dict(type='DefaultSampler', shuffle=True),
                                            batch_size=2, collate_fn=dict(type='default_collate'), num_workers=0),
                      train_cfg=dict(by_epoch=True, max_epochs=2),
                      optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.1)),
                      default_hooks=dict(checkpoint=dict(type='SafeCheckpointHook', interval=1, by_epoch=True),
                                         preemption=dict(type='PreemptionHook')),
                      custom_hooks=list(hooks), resume=resume, randomness=dict(seed=0), default_scope='mmengine')

    first = runner(hooks=[SignalAt(3)])
    with pytest.raises(PreemptedError, match=f'after iteration 3; checkpoint {tmp_path / "iter_3.pth"} written'):
        first.train()
    weights = first.model.net[0].weight.detach().clone()
    start = Start()
    second = runner(resume=True, hooks=[start])
    second.train()
    assert start.iter == 3 and torch.equal(start.weights, weights)  # resumed from the weights of iteration 3
    assert (tmp_path / 'epoch_2.pth').is_file()


def _construct_then_signal():
    PreemptionHook()
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(5)  # not reached


def test_signal_outside_training_keeps_its_effect():
    import multiprocessing
    child = multiprocessing.get_context('fork').Process(target=_construct_then_signal)
    child.start()
    child.join(60)
    assert child.exitcode == -signal.SIGTERM


def test_arguments_are_checked():
    with pytest.raises(ValueError, match='signals'):
        PreemptionHook(signals=['TERM'])
    with pytest.raises(TypeError, match='signals'):
        PreemptionHook(signals='SIGTERM')
    with pytest.raises(TypeError, match='exit_code'):
        PreemptionHook(exit_code=75.0)


def test_process_group_signal_with_dataloader_workers(tmp_path):
    """SLURM signals every process of the step, DataLoader workers included: they must not die mid-iteration."""
    script = _script(tmp_path)
    code, log = _run(_command(script, tmp_path / 'work', 200, resume=False, workers=2), signal_at=3, group=True)
    assert code == 75, log[-3000:]
    step = _stopped_at(log)
    assert (tmp_path / 'work' / f'iter_{step}.pth').is_file()
    last = [line for line in log.strip().splitlines() if line.strip()][-1]
    assert 'Traceback' not in log, log[-2000:]
    assert last.startswith('STOPPED: SIGTERM: training stopped after iteration'), log[-2000:]


@pytest.mark.slow
def test_two_processes_stop_at_the_same_iteration_and_resume_exactly(tmp_path):
    """torchrun gets SIGTERM (as a container's PID 1 would) and forwards it; both ranks agree on the iteration.
    (~70 s on 2 busy cores: three torchrun launches.)"""
    script = _script(tmp_path)
    max_iters = 40
    code, log = _run(_command(script, tmp_path / 'reference', max_iters, resume=False, nproc=2))
    assert code == 0, log[-3000:]

    work = tmp_path / 'work'
    code, log = _run(_command(script, work, max_iters, resume=False, nproc=2), signal_at=3)
    assert code != 0, log[-3000:]
    step = _stopped_at(log)
    assert 3 <= step < max_iters, log[-3000:]
    assert sorted(p.name for p in work.glob('iter_*.pth')) == [f'iter_{step}.pth'], log[-3000:]
    assert 'STOPPED: SIGTERM' in log, log[-3000:]

    code, log = _run(_command(script, work, max_iters, resume=True, nproc=2))
    assert code == 0, log[-3000:]
    assert re.search(rf'Iter\(train\) \[\s*{step + 1}/{max_iters}\]', log), log[-3000:]
    assert not re.search(rf'Iter\(train\) \[\s*{step}/{max_iters}\]', log)
    _assert_identical(tmp_path / 'reference' / f'iter_{max_iters}.pth', work / f'iter_{max_iters}.pth')
