"""Atomic, durable file writes: a reader (or a crash) sees the old file or the whole new one, never a torn one.

Used by every writer of checkpoints: ``SafeCheckpointHook`` (through mmengine's ``atomic_local`` file backend)
and :func:`mmrevcol.checkpoint.atomic_save` (``tools/convert_checkpoint.py`` and the other tools).
"""
import contextlib
import os
import os.path as osp
import uuid

__all__ = ['atomic_write', 'remove_quietly']


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
    tmp = osp.join(dirname, f'.{name}.{uuid.uuid4().hex}.tmp')
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
