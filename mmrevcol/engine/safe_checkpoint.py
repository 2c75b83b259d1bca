"""Crash-safe checkpoints that load with plain ``torch.load(weights_only=True)``.

mmengine's :class:`~mmengine.hooks.CheckpointHook` deletes the outdated checkpoint *before* writing the new one,
writes the file and ``last_checkpoint`` in place, and pickles ``HistoryBuffer`` objects and numpy scalars into the
message hub. A process killed while saving with ``max_keep_ckpts=1`` therefore loses every checkpoint, and a
checkpoint only loads weights-only in a process that has allow-listed mmengine's types.

:class:`SafeCheckpointHook` keeps mmengine's behaviour and options and changes three things:

* every file is written to a temporary file in the same folder, fsynced, renamed over the target and the folder
  fsynced (:func:`atomic_write`, used through the ``atomic_local`` file backend), in the order checkpoint ->
  ``last_checkpoint`` -> delete the outdated checkpoint, so a kill at any moment leaves a complete checkpoint
  that ``last_checkpoint`` names or a newer complete one;
* ``--resume`` (auto) picks the newest complete checkpoint: when ``last_checkpoint`` names a missing or torn file,
  or a newer complete checkpoint exists, it says so in one log line and resumes from that one;
* the message hub and meta are stored as plain containers, tensors, numbers and strings
  (:func:`to_plain_checkpoint`) and turned back into ``HistoryBuffer`` on load (:func:`from_plain_message_hub`).
"""
import os
import os.path as osp
import re
import zipfile
from collections import OrderedDict
from typing import Any, List, Optional

import numpy as np
import torch
from mmengine.dist import is_main_process
from mmengine.fileio import LocalBackend, register_backend
from mmengine.hooks import CheckpointHook
from mmengine.logging import HistoryBuffer
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS

from ..utils.atomic_io import atomic_write, remove_quietly
from .nan_guard import NonFiniteLossError, non_finite_weights

__all__ = ['SafeCheckpointHook', 'AtomicLocalBackend', 'atomic_write', 'to_plain_checkpoint',
           'from_plain_message_hub', 'is_complete_checkpoint', 'newest_complete_checkpoint']

BACKEND = 'atomic_local'
_TMP = re.compile(r'^\..+\.[0-9a-f]{32}\.tmp$')  # the temporary names _write_synced_temp makes


# ---------------------------------------------------------------------------------------------------------------
# Atomic file writes
@register_backend(BACKEND, force=True)
class AtomicLocalBackend(LocalBackend):
    """mmengine's local file backend whose writes are atomic and durable (see :func:`atomic_write`)."""

    def put(self, obj: bytes, filepath) -> None:
        atomic_write(str(filepath), obj)

    def put_text(self, obj: str, filepath, encoding: str = 'utf-8') -> None:
        atomic_write(str(filepath), obj.encode(encoding))


# ---------------------------------------------------------------------------------------------------------------
# Plain-data checkpoints
def _plain(obj: Any) -> Any:
    # numpy first: np.float64 and np.str_ are also float / str, yet pickle as numpy globals.
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return torch.from_numpy(obj.copy()) if obj.dtype.kind in 'biuf' else _plain(obj.tolist())
    if isinstance(obj, (torch.Tensor, str, bytes, bool, int, float, type(None))):
        return obj
    if isinstance(obj, HistoryBuffer):
        return _plain_history_buffer(obj)
    if isinstance(obj, np.dtype):
        return str(obj)
    if isinstance(obj, OrderedDict):
        return OrderedDict((_plain(k), _plain(v)) for k, v in obj.items())
    if isinstance(obj, dict):
        return {_plain(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_plain(v) for v in obj]
    if isinstance(obj, tuple) and not hasattr(obj, '_fields'):
        return tuple(_plain(v) for v in obj)
    return obj  # anything else is left as it is (and then needs an allow-list to load weights-only)


def _plain_history_buffer(buffer: HistoryBuffer) -> dict:
    log, count = buffer.data
    return dict(log_history=torch.from_numpy(np.asarray(log).copy()),
                count_history=torch.from_numpy(np.asarray(count).copy()), max_length=buffer.max_length)


def _is_plain_history_buffer(obj: Any) -> bool:
    return isinstance(obj, dict) and set(obj) == {'log_history', 'count_history', 'max_length'}


def to_plain_checkpoint(checkpoint: dict) -> None:
    """Turn the message hub, meta and any numpy value of ``checkpoint`` into plain data, in place.

    ``HistoryBuffer`` becomes ``dict(log_history=tensor, count_history=tensor, max_length=int)``, numpy arrays
    tensors, numpy scalars Python numbers, dtypes strings. Model and optimizer tensors are untouched.
    """
    for key in list(checkpoint):
        if key != 'state_dict':  # weights are tensors already; don't walk millions of entries
            checkpoint[key] = _plain(checkpoint[key])


def from_plain_message_hub(checkpoint: dict) -> None:
    """Rebuild the ``HistoryBuffer`` objects of a checkpoint written by :func:`to_plain_checkpoint`, in place."""
    hub = checkpoint.get('message_hub')
    if not isinstance(hub, dict) or not isinstance(hub.get('log_scalars'), dict):
        return
    for key, value in hub['log_scalars'].items():
        if _is_plain_history_buffer(value):
            hub['log_scalars'][key] = HistoryBuffer(
                np.asarray(value['log_history'].numpy()), np.asarray(value['count_history'].numpy()),
                int(value['max_length']))


# ---------------------------------------------------------------------------------------------------------------
# Which checkpoint to resume from
def is_complete_checkpoint(path: str) -> bool:
    """Whether ``path`` is a whole ``torch.save`` file (a zip archive whose central directory is intact).

    A file cut short by a crash loses the central directory at its end, so this is cheap and catches torn
    files without loading the tensors.
    """
    if not osp.isfile(path):
        return False
    try:
        with zipfile.ZipFile(path) as archive:
            return any(name.endswith('data.pkl') for name in archive.namelist())
    except (zipfile.BadZipFile, OSError, EOFError):
        return False


def _step_pattern(filename_tmpl: str) -> re.Pattern:
    head, _, tail = filename_tmpl.partition('{}')
    return re.compile('^' + re.escape(head) + r'(\d+)' + re.escape(tail) + '$')


def newest_complete_checkpoint(dirs: List[str], filename_tmpl: str,
                               extra: Optional[str] = None) -> Optional[str]:
    """The most recently written complete checkpoint named by ``filename_tmpl`` in ``dirs`` (or ``extra``).

    Most recently written rather than highest step: a work dir reused by a shorter run may still hold a
    higher-numbered checkpoint of the earlier run.
    """
    pattern = _step_pattern(filename_tmpl)
    found = {}
    for dirname in dict.fromkeys(d for d in dirs if d and osp.isdir(d)):
        for name in os.listdir(dirname):
            match = pattern.match(name)
            if match:
                found[osp.abspath(osp.join(dirname, name))] = int(match.group(1))
    if extra and osp.isfile(extra):
        found.setdefault(osp.abspath(extra), -1)

    def age(path):
        try:
            return os.stat(path).st_mtime_ns, found[path]
        except OSError:
            return -1, found[path]

    for path in sorted(found, key=age, reverse=True):
        if is_complete_checkpoint(path):
            return path
    return None


def _read_last_checkpoint(work_dir: str) -> Optional[str]:
    try:
        with open(osp.join(work_dir, 'last_checkpoint')) as f:
            return f.read().strip() or None
    except OSError:
        return None


# ---------------------------------------------------------------------------------------------------------------
@HOOKS.register_module()
class SafeCheckpointHook(CheckpointHook):
    """:class:`~mmengine.hooks.CheckpointHook` that never loses the last complete checkpoint.

    Takes the same arguments. Local checkpoints (no ``backend_args``/``file_client_args``, no ``scheme://`` in
    ``out_dir``) are written atomically through the ``atomic_local`` backend; the order is new checkpoint,
    ``last_checkpoint``, then removal of the outdated one. With auto-resume the newest complete checkpoint is
    used (see the module doc). Checkpoints hold plain data only and load with ``torch.load(weights_only=True)``
    in any process.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
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
        named = _read_last_checkpoint(runner.work_dir)
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
            for name in os.listdir(self.out_dir):  # temporary files of a run killed while saving
                if _TMP.match(name):
                    remove_quietly(osp.join(self.out_dir, name))

    # -- save ----------------------------------------------------------------------------------------------------
    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        to_plain_checkpoint(checkpoint)

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        from_plain_message_hub(checkpoint)

    def _save_checkpoint_with_step(self, runner, step, meta):
        if not self.atomic:
            return super()._save_checkpoint_with_step(runner, step, meta)
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        broken = non_finite_weights(model)
        if broken:  # e.g. a finite loss with NaN gradients: never let such weights become the newest checkpoint
            raise NonFiniteLossError(
                f'non-finite weights ({", ".join(broken)}, ...) at step {step}: {self.filename_tmpl.format(step)} '
                f'not written; the last checkpoint written is {runner.message_hub.get_info("last_ckpt")}.')
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
        runner.save_checkpoint(
            self.out_dir, ckpt_filename, self.file_client_args, save_optimizer=self.save_optimizer,
            save_param_scheduler=self.save_param_scheduler, meta=meta, by_epoch=self.by_epoch,
            backend_args=self.backend_args, **self.args)
        if not is_main_process():
            return
        atomic_write(osp.join(runner.work_dir, 'last_checkpoint'), self.last_ckpt.encode())
        if outdated is not None and outdated != step:
            path = self.file_backend.join_path(self.out_dir, self.filename_tmpl.format(outdated))
            if self.file_backend.isfile(path):
                self.file_backend.remove(path)
            elif self.file_backend.isdir(path):  # deepspeed checkpoints are folders
                self.file_backend.rmtree(path)
