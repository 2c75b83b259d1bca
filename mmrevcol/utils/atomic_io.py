"""Atomic, durable file writes: a reader (or a crash) sees the old file or the whole new one, never a torn one.

Used by every writer of checkpoints: ``SafeCheckpointHook`` (through mmengine's ``atomic_local`` file backend,
:class:`AtomicLocalBackend`) and :func:`mmrevcol.checkpoint.atomic_save` (``tools/convert_checkpoint.py`` and the
other tools).

A write goes to ``.<name>.<pid>-<host>.<random>.tmp`` beside the target: the temporary name says which process on
which machine writes it, so the cleanup of a killed run's leftovers (:func:`stale_temp_files`) never removes the
file another live run is writing.
"""
import contextlib
import hashlib
import os
import os.path as osp
import re
import socket
import uuid
from typing import List, Optional, Tuple

from mmengine.fileio import LocalBackend, register_backend

__all__ = ['atomic_write', 'remove_quietly', 'AtomicLocalBackend', 'BACKEND', 'is_temp_file', 'temp_file_owner',
           'stale_temp_files', 'pid_alive', 'host_tag']

BACKEND = 'atomic_local'
# .<name>.<pid>-<host>.<32 hex>.tmp; files of earlier versions have no <pid>-<host> part
_TMP = re.compile(r'^\.(?P<name>.+?)\.(?:(?P<pid>\d+)-(?P<host>[0-9a-f]{8})\.)?(?P<uid>[0-9a-f]{32})\.tmp$')


def host_tag(hostname: Optional[str] = None) -> str:
    """8 hex digits naming a machine in temporary file names (host names may hold dots and dashes)."""
    return hashlib.sha1((hostname or socket.gethostname()).encode()).hexdigest()[:8]


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    return True


def is_temp_file(name: str) -> bool:
    """Whether the file name ``name`` is a temporary file of :func:`atomic_write`."""
    return _TMP.match(name) is not None


def temp_file_owner(name: str) -> Optional[Tuple[int, str]]:
    """``(pid, host tag)`` of the process that writes the temporary file ``name``; None for an older name."""
    match = _TMP.match(name)
    if match is None or match.group('pid') is None:
        return None
    return int(match.group('pid')), match.group('host')


def stale_temp_files(dirname: str, folder_locked: bool = False) -> List[str]:
    """Temporary files in ``dirname`` whose writer is gone: safe to remove.

    A file written by a process of this machine is stale when that process no longer exists. A file of another
    machine (or of an older name without its writer) is stale only when ``folder_locked``: this run holds the
    folder's work-dir lock, so no other live run writes there.
    """
    try:
        names = os.listdir(dirname)
    except OSError:
        return []
    here, me, stale = host_tag(), os.getpid(), []
    for name in names:
        if not is_temp_file(name):
            continue
        owner = temp_file_owner(name)
        if owner is not None and owner[1] == here:
            if owner[0] != me and not pid_alive(owner[0]):
                stale.append(osp.join(dirname, name))
        elif folder_locked:
            stale.append(osp.join(dirname, name))
    return stale


def _fsync_dir(dirname: str) -> None:
    try:
        fd = os.open(dirname, os.O_RDONLY)
    except OSError:  # e.g. Windows cannot open a folder; the rename is still atomic there
        return
    try:
        with contextlib.suppress(OSError):  # some file systems refuse fsync on a folder
            os.fsync(fd)
    finally:
        os.close(fd)


def _write_synced_temp(path: str, data: bytes) -> str:
    """Write ``data`` to a new temporary file beside ``path`` and fsync it; return the temporary path."""
    dirname, name = osp.split(osp.abspath(path))
    tmp = osp.join(dirname, f'.{name}.{os.getpid()}-{host_tag()}.{uuid.uuid4().hex}.tmp')
    # os.open with 0o666 honours the umask, so checkpoints get the same permissions as before (mkstemp: 0600).
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, 'wb') as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        remove_quietly(tmp)
        raise
    return tmp


def _publish(tmp: str, path: str) -> None:
    """Rename the complete temporary file over ``path`` (atomic) and make the rename durable."""
    try:
        os.replace(tmp, path)
    except BaseException:
        remove_quietly(tmp)
        raise
    _fsync_dir(osp.dirname(osp.abspath(path)))


def remove_quietly(path: str) -> None:
    with contextlib.suppress(OSError):  # already gone
        os.unlink(path)


def atomic_write(path: str, data: bytes) -> None:
    """Replace ``path`` by ``data`` so that a reader (or a crash) sees either the old file or the whole new one."""
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    _publish(_write_synced_temp(path, data), path)


@register_backend(BACKEND, force=True)
class AtomicLocalBackend(LocalBackend):
    """mmengine's local file backend whose writes are atomic and durable (see :func:`atomic_write`)."""

    def put(self, obj: bytes, filepath) -> None:
        atomic_write(str(filepath), obj)

    def put_text(self, obj: str, filepath, encoding: str = 'utf-8') -> None:
        atomic_write(str(filepath), obj.encode(encoding))
