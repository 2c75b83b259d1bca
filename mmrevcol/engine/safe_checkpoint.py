"""``SafeCheckpointHook``: crash-safe checkpoints that load with plain ``torch.load(weights_only=True)``.

mmengine's :class:`~mmengine.hooks.CheckpointHook` deletes the outdated checkpoint *before* writing the new one,
writes the file and ``last_checkpoint`` in place, and pickles ``HistoryBuffer`` objects and numpy scalars into the
message hub. A process killed while saving with ``max_keep_ckpts=1`` therefore loses every checkpoint, and a
checkpoint only loads weights-only in a process that has allow-listed mmengine's types.

:class:`SafeCheckpointHook` keeps mmengine's behaviour and options and changes these:

* every file is written to a temporary file in the same folder, fsynced, renamed over the target and the folder
  fsynced (:func:`mmrevcol.utils.atomic_io.atomic_write`, used through the ``atomic_local`` file backend), in the
  order checkpoint -> ``last_checkpoint`` -> delete the outdated checkpoint, so a kill at any moment leaves a
  complete checkpoint that ``last_checkpoint`` names or a newer complete one;
* ``--resume`` (auto) picks the newest complete checkpoint (:mod:`.checkpoint_discovery`): when
  ``last_checkpoint`` names a missing or torn file, or a newer complete checkpoint exists, it says so in one log line
  and resumes from that one;
* the message hub and meta are stored as plain data (:mod:`.plain_checkpoint`);
* a write that fails (disk full, read-only folder, ...) stops the run with one :class:`CheckpointWriteError` line
  naming the file, the cause and the last complete checkpoint; in distributed runs every rank stops with it;
* leftover temporary files of killed runs are removed at start, never one that a live process may be writing
  (:func:`mmrevcol.utils.atomic_io.stale_temp_files`, the work-dir lock of :mod:`.work_dir_lock`).

The helpers that lived here are importable from here as before.
"""
import os.path as osp
from typing import List, Optional

import torch
from mmengine.dist import all_reduce, is_distributed, is_main_process
from mmengine.hooks import CheckpointHook
from mmengine.registry import HOOKS

from ..utils.atomic_io import BACKEND, AtomicLocalBackend, atomic_write, remove_quietly, stale_temp_files
from ..utils.errors import CheckpointWriteError, describe
from ..utils.model import unwrap_model
from .checkpoint_discovery import (is_complete_checkpoint, newest_complete_checkpoint, read_last_checkpoint,
                                   step_pattern)
from .hook_args import check_bool, check_int
from .nan_guard import NonFiniteLossError, non_finite_weights
from .plain_checkpoint import from_plain_message_hub, to_plain_checkpoint

__all__ = ['SafeCheckpointHook', 'AtomicLocalBackend', 'atomic_write', 'to_plain_checkpoint',
           'from_plain_message_hub', 'is_complete_checkpoint', 'newest_complete_checkpoint', 'step_pattern',
           'read_last_checkpoint']

_read_last_checkpoint = read_last_checkpoint  # the name of earlier versions


@HOOKS.register_module()
class SafeCheckpointHook(CheckpointHook):
    """:class:`~mmengine.hooks.CheckpointHook` that never loses the last complete checkpoint.

    Takes the same arguments, checked at construction (``interval`` an int >= 1 or -1, ``max_keep_ckpts`` an int,
    the switches booleans, ``filename_tmpl`` a string holding ``{}``). Local checkpoints (no
    ``backend_args``/``file_client_args``, no ``scheme://`` in ``out_dir``) are written atomically through the
    ``atomic_local`` backend; the order is new checkpoint, ``last_checkpoint``, then removal of the outdated one.
    With auto-resume the newest complete checkpoint is used (see the module doc). Checkpoints hold plain data only
    and load with ``torch.load(weights_only=True)`` in any process.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        name = type(self).__name__
        check_int(name, 'interval', self.interval, minimum=1, also=(-1,))
        check_int(name, 'max_keep_ckpts', self.max_keep_ckpts)
        check_int(name, 'save_begin', self.save_begin, minimum=0)
        for key in ('by_epoch', 'save_last', 'save_optimizer', 'save_param_scheduler'):
            check_bool(name, key, getattr(self, key))
        if not isinstance(self.filename_tmpl, str) or '{}' not in self.filename_tmpl:
            raise ValueError(f"{name}: filename_tmpl must be a string holding '{{}}' (the step), "
                             f'got {self.filename_tmpl!r}')
        out_dir = '' if self.out_dir is None else str(self.out_dir)
        self.atomic = self.backend_args is None and self.file_client_args is None and '://' not in out_dir
        if self.atomic:
            self.backend_args = dict(backend=BACKEND)

    # -- resume --------------------------------------------------------------------------------------------------
    def _checkpoint_dirs(self, runner) -> List[str]:
        out_dir = str(self.out_dir) if self.out_dir is not None else runner.work_dir
        dirs = [runner.work_dir, out_dir]
        if out_dir != runner.work_dir:  # what before_train makes of it
            dirs.append(osp.join(out_dir, osp.basename(runner.work_dir.rstrip(osp.sep))))
        return dirs

    def before_run(self, runner) -> None:
        super().before_run(runner)
        # Runner.load_or_resume runs after before_run: with auto-resume (resume=True, no load_from) it would
        # trust `last_checkpoint` blindly. Point it at the newest complete checkpoint instead.
        if not self.atomic or not getattr(runner, '_resume', False) or runner._load_from is not None:
            return
        named = read_last_checkpoint(runner.work_dir)
        dirs = self._checkpoint_dirs(runner) + ([osp.dirname(named)] if named else [])
        newest = newest_complete_checkpoint(dirs, self.filename_tmpl, extra=named)
        if newest is None:
            if named is not None:
                runner.logger.warning(f'last_checkpoint names {named}, which is missing or incomplete, and no '
                                      'other complete checkpoint was found: training starts from scratch.')
                runner._resume = False
            return
        if named is not None and osp.abspath(named) == newest:
            return
        if named is None:
            why = 'there is no last_checkpoint file'
        elif not is_complete_checkpoint(named):
            why = f'last_checkpoint names {named}, which is missing or incomplete'
        else:
            why = f'last_checkpoint names {named}, but a newer one was written (the run stopped before updating it)'
        runner.logger.warning(f'{why}: resuming from the newest complete checkpoint {newest}.')
        runner._load_from = newest  # resume=True + load_from: Runner.resume(newest)

    def before_train(self, runner) -> None:
        super().before_train(runner)
        if self.atomic and is_main_process() and osp.isdir(self.out_dir):
            from .work_dir_lock import holds_lock
            # temporary files of runs killed while saving; never one a live process may still be writing
            for path in stale_temp_files(self.out_dir, folder_locked=holds_lock(self.out_dir)):
                remove_quietly(path)

    # -- save ----------------------------------------------------------------------------------------------------
    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        to_plain_checkpoint(checkpoint)

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        from_plain_message_hub(checkpoint)

    def _save_checkpoint_with_step(self, runner, step, meta):
        if not self.atomic:
            return super()._save_checkpoint_with_step(runner, step, meta)
        broken = non_finite_weights(unwrap_model(runner.model))
        if broken:  # e.g. a finite loss with NaN gradients: never let such weights become the newest checkpoint
            raise NonFiniteLossError(
                f'non-finite weights ({", ".join(broken)}, ...) at step {step}: {self.filename_tmpl.format(step)} '
                f'not written; the last checkpoint written is {runner.message_hub.get_info("last_ckpt")}.')
        previous = self.last_ckpt
        outdated = None
        # Same bookkeeping as mmengine (keep_ckpt_ids goes into the checkpoint), but the outdated checkpoint is
        # only removed once the new one and last_checkpoint are on disk.
        if self.max_keep_ckpts > 0 and not (self.keep_ckpt_ids and self.keep_ckpt_ids[-1] == step):
            if len(self.keep_ckpt_ids) == self.max_keep_ckpts:
                outdated = self.keep_ckpt_ids.popleft()
            self.keep_ckpt_ids.append(step)
            runner.message_hub.update_info('keep_ckpt_ids', list(self.keep_ckpt_ids))

        ckpt_filename = self.filename_tmpl.format(step)
        self.last_ckpt = self.file_backend.join_path(self.out_dir, ckpt_filename)
        runner.message_hub.update_info('last_ckpt', self.last_ckpt)
        error: Optional[OSError] = None
        try:
            runner.save_checkpoint(  # rank 0 only (mmengine's master_only)
                self.out_dir, ckpt_filename, self.file_client_args, save_optimizer=self.save_optimizer,
                save_param_scheduler=self.save_param_scheduler, meta=meta, by_epoch=self.by_epoch,
                backend_args=self.backend_args, **self.args)
            if is_main_process():
                atomic_write(osp.join(runner.work_dir, 'last_checkpoint'), self.last_ckpt.encode())
        except OSError as e:
            error = e
        self._raise_if_any_rank_failed(error, previous)
        if not is_main_process():
            return
        if outdated is not None and outdated != step:
            path = self.file_backend.join_path(self.out_dir, self.filename_tmpl.format(outdated))
            try:
                if self.file_backend.isfile(path):
                    self.file_backend.remove(path)
                elif self.file_backend.isdir(path):  # deepspeed checkpoints are folders
                    self.file_backend.rmtree(path)
            except OSError as e:  # the new checkpoint is safe; an old one left behind only costs space
                runner.logger.warning(f'could not remove the outdated checkpoint {path}: {describe(e)}')

    def _raise_if_any_rank_failed(self, error: Optional[OSError], previous: Optional[str]) -> None:
        """Raise :class:`CheckpointWriteError` on every rank when the write failed on one (rank 0 writes)."""
        failed_elsewhere = False
        if is_distributed():  # the other ranks would otherwise wait for rank 0 in the next collective
            flag = torch.tensor([1.0 if error is not None else 0.0])
            all_reduce(flag, op='sum')
            failed_elsewhere = error is None and flag.item() > 0
        kept = f'the last complete checkpoint is {previous}' if previous else 'no checkpoint was written yet'
        if error is not None:
            raise CheckpointWriteError(f'cannot write checkpoint {self.last_ckpt}: {describe(error)}. '
                                       f'Nothing complete was lost: {kept}.') from error
        if failed_elsewhere:
            raise CheckpointWriteError(f'writing checkpoint {self.last_ckpt} failed on rank 0 (see its log); '
                                       f'{kept}.')
