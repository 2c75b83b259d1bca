"""Graceful preemption: on SIGTERM / SIGUSR1, finish the iteration, write a checkpoint, exit with status 75.

Clusters send SIGTERM before killing a preempted job (SLURM, Kubernetes), and SLURM can be asked for SIGUSR1 some
time before the time limit (``--signal=USR1@120``, see ``tools/slurm_train.sh``). mmengine does nothing with them:
the process dies and up to ``checkpoint.interval`` iterations are lost. :class:`PreemptionHook`:

* notes the signal (the handler only sets a flag; the process never stops mid-step);
* after the current training iteration (or the current validation iteration, if the signal came during
  validation), writes a checkpoint through the run's checkpoint hook — ``SafeCheckpointHook``'s atomic path,
  ``iter_<N>.pth`` and ``last_checkpoint``, exactly as a periodic checkpoint — unless that iteration's periodic
  checkpoint was just written;
* logs one line naming it and how to resume, and raises :class:`~mmrevcol.utils.errors.PreemptedError` (exit
  status 75 through the tools); ``--resume`` continues from it exactly as from a periodic checkpoint (the data
  order and the random state are replayed as mmengine does for any iteration-based resume);
* in distributed runs, one all-reduced flag per iteration makes every rank stop after the same iteration; rank 0
  writes, all ranks wait for it, then all exit.

A signal outside training (model building, evaluation-only runs) keeps its usual effect. DataLoader worker
processes ignore the preemption signals while a hook is active (torch makes workers die on SIGTERM, which would
fail the iteration in progress; SLURM signals every process of a step): the main process ends them. This holds for
workers started with ``fork`` (Linux's default).

Epoch-based loops (checkpoint hook with ``by_epoch=True``) also stop after the current iteration, writing
``iter_<N>.pth`` and ``last_checkpoint``; mmengine has no mid-epoch resume, so ``--resume`` restarts that epoch
from its first batch with the weights of iteration N (nothing trained is lost, part of one epoch is seen twice).
Iteration-based loops resume exactly.

A launcher whose own exit status hides the workers' (torchrun exits 1 after forwarding a signal) can set
``MMREVCOL_PREEMPTED_FILE``: rank 0 writes the stop line there (``tools/dist_train.sh`` prints it and exits 75).
"""
import atexit
import multiprocessing
import os
import signal
import threading
from typing import Dict, Optional, Sequence

import torch
from mmengine.dist import all_reduce, barrier, is_distributed, is_main_process
from mmengine.hooks import CheckpointHook, Hook
from mmengine.registry import HOOKS

from ..utils.atomic_io import BACKEND, atomic_write
from ..utils.errors import PreemptedError
from .hook_args import check_int

__all__ = ['PreemptionHook']

_WORKER_SIGNALS: tuple = ()  # what DataLoader workers started now ignore (inherited by fork)
_ENDING = None  # shared with forked workers: 1 once the main process stops training or exits


def _worker_handle(signum, frame) -> None:
    """A DataLoader worker's preemption-signal handler: ignored while the main process trains (it finishes the
    iteration, which may still need this worker); fatal once the main process ends (``Process.terminate()``)."""
    if _ENDING is not None and _ENDING.value:
        os._exit(0)  # as torch's own handler does for a SIGTERM of the main process: a clean worker exit


def _worker_signal_handlers(*args, **kwargs) -> None:
    """torch's DataLoader worker set-up (SIGTERM: die at once), then :func:`_worker_handle` for the active signals."""
    from torch.utils.data._utils import signal_handling
    signal_handling._mmrevcol_original(*args, **kwargs)
    for signum in _WORKER_SIGNALS:
        signal.signal(signum, _worker_handle)


def _in_dataloader_worker() -> bool:
    # Any other forked child (a user's subprocess, a test) inherits the handler too and must keep the signal's effect.
    from torch.utils.data import get_worker_info
    return get_worker_info() is not None


def _set_ending(value: int) -> None:
    if _ENDING is not None:
        _ENDING.value = value


def _install_worker_patch() -> None:
    global _ENDING
    from torch.utils.data._utils import signal_handling
    if not hasattr(signal_handling, '_mmrevcol_original'):
        signal_handling._mmrevcol_original = signal_handling._set_worker_signal_handlers
        signal_handling._set_worker_signal_handlers = _worker_signal_handlers  # worker.py looks it up per worker
        _ENDING = multiprocessing.RawValue('b', 0)
        # atexit runs last-registered first: before multiprocessing terminates (and joins) the daemonic workers
        atexit.register(_set_ending, 1)


def _tell_launcher(message: str) -> None:
    """Write the stop line where a launcher script asked for it (``tools/dist_train.sh``: torchrun's own exit status
    after a signal says nothing of the workers')."""
    path = os.environ.get('MMREVCOL_PREEMPTED_FILE')
    if path:
        try:
            with open(path, 'w') as f:
                f.write(f'STOPPED: {message}\n')
        except OSError:
            pass


def _signal_number(name) -> int:
    if isinstance(name, str) and name.isupper() and name.startswith('SIG') and hasattr(signal, name):
        return int(getattr(signal, name))
    raise ValueError(f"PreemptionHook: signals must be names such as 'SIGTERM', 'SIGUSR1', got {name!r}")


@HOOKS.register_module()
class PreemptionHook(Hook):
    """Stop training gracefully on a preemption signal (see the module doc).

    Args:
        signals (sequence of str): Signal names that request the stop. Defaults to ('SIGTERM', 'SIGUSR1').
        exit_code (int): Exit status of the tools after the stop (1..255). Defaults to 75 (``EX_TEMPFAIL``).
    """
    # After every other after_train_iter (the checkpoint hook, VERY_LOW, has written this iteration's periodic
    # checkpoint when one was due).
    priority = 'LOWEST'

    def __init__(self, signals: Sequence[str] = ('SIGTERM', 'SIGUSR1'), exit_code: int = 75):
        if isinstance(signals, str) or not isinstance(signals, (list, tuple)) or not signals:
            raise TypeError(f"PreemptionHook: signals must be a non-empty list of signal names, got {signals!r}")
        self.signals = tuple(_signal_number(s) for s in signals)
        self.exit_code = check_int(type(self).__name__, 'exit_code', exit_code, minimum=1)
        if self.exit_code > 255:
            raise ValueError(f'PreemptionHook: exit_code must be an int in [1, 255], got {exit_code!r}')
        self.requested: Optional[int] = None
        self._loop = None
        self._pid = os.getpid()
        self._previous: Dict[int, object] = {}
        # Installed now, before the Runner builds its data loaders: forked DataLoader workers inherit the handler
        # (and ignore the signal) instead of dying and failing the iteration in progress.
        self._install()

    # -- signals -----------------------------------------------------------------------------------------------------
    def _install(self) -> None:
        global _WORKER_SIGNALS
        _install_worker_patch()
        _WORKER_SIGNALS = self.signals
        if threading.current_thread() is not threading.main_thread():
            return  # Python allows handlers in the main thread only; before_run says so
        for signum in self.signals:
            if signum not in self._previous:
                self._previous[signum] = signal.signal(signum, self._handle)

    def _restore(self) -> None:
        global _WORKER_SIGNALS
        _WORKER_SIGNALS = ()
        for signum, previous in self._previous.items():
            if signal.getsignal(signum) == self._handle:
                signal.signal(signum, previous)
        self._previous = {}

    def _training(self, frame) -> bool:
        """Whether ``frame`` runs inside this hook's train loop (an earlier run that raised does not count)."""
        while frame is not None:
            if frame.f_code.co_name == 'run' and self._loop is not None and frame.f_locals.get('self') is self._loop:
                return True
            frame = frame.f_back
        return False

    def _handle(self, signum, frame) -> None:
        if os.getpid() != self._pid and _in_dataloader_worker():
            return  # a forked DataLoader worker: the main process stops the run and ends the workers
        if self._training(frame):
            self.requested = signum
            return
        _set_ending(1)  # not training: DataLoader workers obey the signal too
        previous = self._previous.get(signum, signal.SIG_DFL)
        if callable(previous):
            previous(signum, frame)
        elif previous != signal.SIG_IGN:  # the usual effect of the signal
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)

    # -- runner ------------------------------------------------------------------------------------------------------
    def before_run(self, runner) -> None:
        self._install()  # again: a handler restored by an earlier run of this process
        if not self._previous:
            runner.logger.warning('PreemptionHook: the runner is not in the main thread, where Python handles '
                                  'signals; preemption signals keep their default effect (the process ends)')

    def before_train(self, runner) -> None:
        self._loop = runner.train_loop
        self.requested = None
        _set_ending(0)

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        if self._stop_requested():
            self._stop(runner, step=runner.iter + 1, where='iteration')

    def after_val_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        # validation inside training (train iteration runner.iter is complete): do not wait for its end
        if self._loop is not None and self._val_in_step(runner) and self._stop_requested():
            self._stop(runner, step=runner.iter, where='validation after iteration')

    def after_train(self, runner) -> None:
        self._loop = None

    def after_run(self, runner) -> None:
        self._loop = None
        self._restore()
        _set_ending(1)

    @staticmethod
    def _val_in_step(runner) -> bool:
        """Whether every rank runs the same number of validation iterations (an all-reduce per iteration is safe)."""
        if not is_distributed():
            return True
        from mmengine.dataset import DefaultSampler
        sampler = getattr(runner.val_loop.dataloader, 'sampler', None)
        return isinstance(sampler, DefaultSampler) and sampler.round_up

    # -- stopping ----------------------------------------------------------------------------------------------------
    def _stop_requested(self) -> bool:
        if not is_distributed():
            return self.requested is not None
        flag = torch.tensor([0.0 if self.requested is None else 1.0])
        all_reduce(flag, op='sum')  # every rank stops after the same iteration
        return flag.item() > 0

    def _stop(self, runner, step: int, where: str) -> None:
        name = signal.Signals(self.requested).name if self.requested else 'a preemption signal on another rank'
        path = self._save(runner, step)
        barrier()  # rank 0 writes; nobody exits before the checkpoint is on disk
        message = (f'{name}: training stopped after {where} {step}; checkpoint {path} written. Resume: run the same '
                   'command with --resume (tools/train.py; Runner(resume=True)), which continues from it exactly.')
        if is_main_process():
            runner.logger.warning(message)
            _tell_launcher(message)
        self._loop = None
        self._restore()
        _set_ending(1)
        error = PreemptedError(message)
        error.exit_code = self.exit_code
        raise error

    @staticmethod
    def _checkpoint_hook(runner) -> Optional[CheckpointHook]:
        return next((h for h in runner.hooks if isinstance(h, CheckpointHook)), None)

    def _save(self, runner, step: int) -> str:
        hook = self._checkpoint_hook(runner)
        meta = dict(epoch=runner.epoch, iter=step)
        if hook is not None and not hook.by_epoch:
            path = hook.file_backend.join_path(hook.out_dir, hook.filename_tmpl.format(step))
            if hook.last_ckpt == path and runner.message_hub.get_info('last_ckpt') == path:
                return path  # this iteration's periodic checkpoint
            hook._save_checkpoint_with_step(runner, step, meta)
            return hook.last_ckpt
        # no iteration checkpoints configured: write one atomically beside the periodic ones
        out_dir = hook.out_dir if hook is not None else runner.work_dir
        filename = f'iter_{step}.pth'
        runner.message_hub.update_info('last_ckpt', os.path.join(out_dir, filename))
        runner.save_checkpoint(out_dir, filename, meta=meta, by_epoch=False, backend_args=dict(backend=BACKEND))
        if is_main_process():
            atomic_write(os.path.join(runner.work_dir, 'last_checkpoint'), os.path.join(out_dir, filename).encode())
        return os.path.join(out_dir, filename)
