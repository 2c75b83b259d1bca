"""One training run per work dir: an advisory lock file that names its holder.

Two trainings started in the same work dir overwrite each other's checkpoints, ``last_checkpoint`` and config dump,
and ``max_keep_ckpts`` then deletes the other run's files. :class:`WorkDirLockHook` makes a training hold
``<work_dir>/run.lock`` from ``before_run`` to ``after_run``:

* the lock is ``flock`` on that file (released by the kernel when the process ends, however it ends); the file
  holds the holder's pid, host, start time, command and config dump as JSON, for the message of a refused run;
* a second training into the same dir stops at start with one line naming the other run
  (:class:`~mmrevcol.utils.errors.WorkDirLockedError`), restoring the first run's config dump that mmengine's
  Runner overwrote while it was being built — or, with ``on_conflict='subfolder'``, trains in its own timestamped
  subfolder ``<work_dir>/<timestamp>/`` (beside its logs) instead;
* a lock file whose holder is gone (killed, machine rebooted) is stale: the next run takes it over and says so;
  where the file system refuses ``flock``, the pid in the file decides (a pid of another machine counts as live);
* only rank 0 locks; every rank follows its decision. Evaluation-only runs (``tools/test.py``) do not lock: they
  may read a work dir while a training writes it.

``SafeCheckpointHook`` removes a temporary file of an unknown writer only while this run holds its folder's lock
(:func:`holds_lock`).
"""
import atexit
import datetime
import errno
import fcntl
import json
import os
import os.path as osp
import shutil
import socket
import sys
import threading
from typing import Dict, Optional, Tuple

from mmengine.dist import broadcast_object_list, is_distributed, is_main_process
from mmengine.hooks import Hook
from mmengine.registry import HOOKS
from mmengine.runner import BaseLoop

from ..utils.atomic_io import pid_alive
from ..utils.errors import WorkDirLockedError
from .hook_args import check_choice

__all__ = ['LOCK_NAME', 'WorkDirLock', 'WorkDirLockHook', 'holds_lock']

LOCK_NAME = 'run.lock'
_FLOCK_UNSUPPORTED = (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL)
_HELD: Dict[str, 'WorkDirLock'] = {}  # lock path -> lock held by this process


def holds_lock(dirname: str) -> bool:
    """Whether this process holds the work-dir lock of ``dirname``."""
    return osp.join(osp.abspath(dirname), LOCK_NAME) in _HELD


def _describe_holder(info: dict, path: str) -> str:
    if not info:
        return f'another run (lock file {path})'
    parts = [f'pid {info.get("pid")} on {info.get("host")}']
    if info.get('started'):
        parts.append(f'started {info["started"]}')
    if info.get('command'):
        parts.append(f'command: {info["command"]}')
    return f'another run ({", ".join(parts)}; lock file {path})'


class WorkDirLock:
    """An advisory, exclusive lock on a folder (see the module doc).

    Args:
        dirname (str): The folder.
        info (dict, optional): What to write into the lock file besides pid, host and start time.
    """

    def __init__(self, dirname: str, info: Optional[dict] = None):
        self.dirname = osp.abspath(dirname)
        self.path = osp.join(self.dirname, LOCK_NAME)
        self.info = dict(info or {})
        self.fd: Optional[int] = None
        self.thread = threading.get_ident()
        self.taken_over: Optional[dict] = None  # the stale holder replaced, for the log

    # -- reading ---------------------------------------------------------------------------------------------------
    def holder(self) -> dict:
        """The holder information of the lock file (empty when absent or unreadable)."""
        try:
            with open(self.path) as f:
                return json.loads(f.read() or '{}')
        except (OSError, ValueError):
            return {}

    @staticmethod
    def _is_live(info: dict) -> bool:
        if not info or 'pid' not in info:
            return False
        if info.get('host') != socket.gethostname():
            return True  # cannot be checked from here
        return int(info['pid']) != os.getpid() and pid_alive(int(info['pid']))

    # -- locking ---------------------------------------------------------------------------------------------------
    def acquire(self) -> None:
        """Take the lock, or raise :class:`WorkDirLockedError` naming the live holder."""
        os.makedirs(self.dirname, exist_ok=True)
        same_process = _HELD.get(self.path)
        if same_process is not None and same_process is not self:
            if same_process.thread != threading.get_ident():
                raise WorkDirLockedError(f'work dir {self.dirname} is in use by another run in this process '
                                         f'(thread {same_process.thread})')
            # A run of this thread that ended with an exception (no after_run): it cannot be running now.
            same_process.release()
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise WorkDirLockedError(
                    f'work dir {self.dirname} is in use by {_describe_holder(self.holder(), self.path)}. Wait for '
                    'it to finish, train into another --work-dir, or let this run write into a timestamped '
                    'subfolder: --cfg-options default_hooks.work_dir_lock.on_conflict=subfolder') from None
            except OSError as e:
                os.close(fd)
                if e.errno not in _FLOCK_UNSUPPORTED:
                    raise
                self._acquire_by_pid()
                return
            try:  # the holder may have released (and removed) the file between our open and flock
                same = os.path.samestat(os.fstat(fd), os.stat(self.path))
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        self.fd = fd
        previous = self.holder()
        if previous and previous.get('pid') is not None and previous.get('pid') != os.getpid():
            self.taken_over = previous
        self._write()
        _HELD[self.path] = self

    def _acquire_by_pid(self) -> None:
        """Without flock (some network file systems): exclusive creation, the pid in the file decides staleness."""
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                info = self.holder()
                if self._is_live(info):
                    raise WorkDirLockedError(
                        f'work dir {self.dirname} is in use by {_describe_holder(info, self.path)}. If that run '
                        'is dead (another machine cannot be checked from here), remove the lock file') from None
                self.taken_over = info or None
                try:
                    os.unlink(self.path)
                except FileNotFoundError:
                    pass
                continue
            self.fd = fd
            self._write()
            _HELD[self.path] = self
            return

    def _write(self) -> None:
        info = dict(pid=os.getpid(), host=socket.gethostname(),
                    started=datetime.datetime.now().isoformat(timespec='seconds'),
                    command=' '.join(sys.argv), **self.info)
        data = json.dumps(info, indent=1).encode()
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, data, 0)
        os.fsync(self.fd)

    def release(self) -> None:
        """Remove the lock file and drop the lock (idempotent)."""
        if self.fd is None:
            return
        if _HELD.get(self.path) is self:
            del _HELD[self.path]
            try:  # removed while still held: whoever opened the old file sees it is gone and retries
                if os.path.samestat(os.fstat(self.fd), os.stat(self.path)):
                    os.unlink(self.path)
            except OSError:
                pass
        try:
            os.close(self.fd)
        finally:
            self.fd = None


@atexit.register
def _release_all() -> None:
    for lock in list(_HELD.values()):
        lock.release()


# ---------------------------------------------------------------------------------------------------------------
def _restore_config_dump(runner, holder: dict) -> None:
    """Put back the holder's config dump that building this runner overwrote (same config file name), or remove
    this runner's own dump (named after its timestamp when the config has no file)."""
    dump, copy = holder.get('config_dump'), holder.get('config_copy')
    ours = _config_dump_path(runner)
    try:
        if dump and copy and ours and osp.abspath(dump) == osp.abspath(ours) and osp.isfile(copy):
            shutil.copyfile(copy, dump)
        elif ours and osp.basename(ours) == f'{runner.timestamp}.py':  # named after this run: nobody else's
            os.unlink(ours)
    except OSError:
        pass


def _config_dump_path(runner) -> Optional[str]:
    filename = getattr(runner.cfg, 'filename', None)
    name = osp.basename(filename) if filename else f'{runner.timestamp}.py'
    return osp.join(runner.work_dir, name)


@HOOKS.register_module()
class WorkDirLockHook(Hook):
    """Hold the work dir's lock while training (see the module doc).

    Args:
        on_conflict (str): What a training does when another live run holds its work dir: ``'refuse'`` (stop at
            start with one line naming the other run) or ``'subfolder'`` (train in ``<work_dir>/<timestamp>/``,
            the folder of its own logs, and say so). Defaults to 'refuse'.
    """
    priority = 'HIGHEST'  # before anything reads or writes the work dir (auto-resume, checkpoints)

    def __init__(self, on_conflict: str = 'refuse'):
        self.on_conflict = check_choice(type(self).__name__, 'on_conflict', on_conflict, ('refuse', 'subfolder'))
        self.lock: Optional[WorkDirLock] = None

    def before_run(self, runner) -> None:
        if not isinstance(getattr(runner, '_train_loop', None), BaseLoop):
            return  # not training: evaluation may read a work dir a training writes
        outcome: Tuple[str, str, dict] = ('ok', '', {})
        if is_main_process():
            outcome = self._lock(runner)
        if is_distributed():
            box = [outcome]
            broadcast_object_list(box, src=0)
            outcome = box[0]
        kind, detail, holder = outcome
        if kind == 'refused':
            if is_main_process():
                _restore_config_dump(runner, holder)
            raise WorkDirLockedError(detail)
        if kind == 'subfolder':
            if is_main_process():
                _restore_config_dump(runner, holder)
            runner.logger.warning(detail)
            runner._work_dir = osp.join(runner.work_dir, runner.timestamp)
            runner.dump_config()
        if self.lock is not None and self.lock.taken_over:
            runner.logger.warning(f'work dir {self.lock.dirname}: took over the stale lock of a run that is gone '
                                  f'({_describe_holder(self.lock.taken_over, self.lock.path)})')

    def _lock(self, runner) -> Tuple[str, str, dict]:
        dump = _config_dump_path(runner)
        copy = osp.join(runner.log_dir, osp.basename(dump)) if dump else None
        info = dict(work_dir=runner.work_dir, log_dir=runner.log_dir, config_dump=dump, config_copy=copy)
        lock = WorkDirLock(runner.work_dir, info)
        try:
            lock.acquire()
        except WorkDirLockedError as e:
            holder = lock.holder()
            if self.on_conflict == 'refuse':
                return 'refused', str(e), holder
            subfolder = osp.join(runner.work_dir, runner.timestamp)
            lock = WorkDirLock(subfolder, dict(info, work_dir=subfolder, config_dump=osp.join(
                subfolder, osp.basename(dump)) if dump else None))
            lock.acquire()  # a fresh folder of this run's own timestamp
            self.lock = lock
            return ('subfolder', f'work dir {runner.work_dir} is in use by '
                    f'{_describe_holder(holder, osp.join(runner.work_dir, LOCK_NAME))}: this run trains in '
                    f'{subfolder} instead (on_conflict=subfolder)', holder)
        self.lock = lock
        if dump and copy and osp.isfile(dump):  # what a refused run puts back if building it overwrote the dump
            try:
                shutil.copyfile(dump, copy)
            except OSError:
                pass
        return 'ok', '', {}

    def after_run(self, runner) -> None:
        if self.lock is not None:
            self.lock.release()
            self.lock = None
