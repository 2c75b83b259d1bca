"""Expected operational failures: what a tool reports as one readable line (the traceback goes to a log file).

A failure the user can fix — a wrong checkpoint, a data fault, a full disk, a locked work dir, a non-finite loss —
is *expected*: the tools end with ``ERROR: <message>`` and a non-zero exit status instead of a traceback
(:func:`mmrevcol.utils.cli.run_tool`). Library code raises :class:`ExpectedError` subclasses (or registers its own
exception types with :func:`register_expected`); bugs stay tracebacks.

Besides the registered types, two kinds of errors are expected whatever raises them:

* operating-system errors a user fixes outside the program (:data:`OPERATIONAL_ERRNOS`: disk full, quota, read-only
  file system, permission denied, a path that is a file where a folder is needed, ...), described by
  :func:`describe` with the path and the fix;
* running out of memory (``MemoryError``, ``torch.OutOfMemoryError``, an allocator ``RuntimeError``), described with
  the samples being processed when a hook noted them (:func:`note_context`).

An error that crossed a DataLoader worker comes back as ``Caught X in DataLoader worker process N. Original
Traceback ...``; :func:`describe` keeps the original message only.
"""
import errno
import importlib
import logging
import os
import re
from typing import Dict, List, Optional, Tuple, Type

__all__ = ['ExpectedError', 'CheckpointWriteError', 'ConfigConsistencyError', 'DataError', 'PreemptedError',
           'WorkDirLockedError', 'OPERATIONAL_ERRNOS', 'register_expected', 'expected_error_types', 'is_expected',
           'exit_code_of', 'describe', 'note_context', 'clear_context', 'current_log_file']


class ExpectedError(Exception):
    """Base of the project's expected failures. ``exit_code`` is the process status the tools exit with; ``label``
    starts the line the tools print."""
    exit_code = 1
    label = 'ERROR'


class CheckpointWriteError(ExpectedError):
    """A checkpoint (or ``last_checkpoint``) could not be written: disk full, read-only or missing folder, ...

    Nothing complete was lost: the message names the last complete checkpoint.
    """


class ConfigConsistencyError(ExpectedError, ValueError):
    """Two parts of a config contradict each other (e.g. a head's ``num_classes`` and the dataset's classes)."""


class DataError(ExpectedError):
    """A sample failed to load or transform; the message names its file(s)."""


class WorkDirLockedError(ExpectedError):
    """Another live run holds the work dir."""


class PreemptedError(ExpectedError):
    """Training stopped on a preemption signal after writing a checkpoint; rerun with ``--resume`` to continue.

    Exit status 75 (``EX_TEMPFAIL``: try again later), distinct from every failure, so a job script can requeue.
    """
    exit_code = 75
    label = 'STOPPED'


# Expected types of other modules, registered when those modules are importable (importing them here would
# import torch and the whole package from mmrevcol.utils).
_LAZY = ('mmrevcol.checkpoint.core:CheckpointMismatchError', 'mmrevcol.engine.nan_guard:NonFiniteLossError')
_EXPECTED: List[Type[BaseException]] = [ExpectedError]

OPERATIONAL_ERRNOS: Dict[int, str] = {
    errno.ENOSPC: 'the disk is full: free space or write elsewhere (--work-dir)',
    errno.EDQUOT: 'the disk quota is exceeded: free space or write elsewhere (--work-dir)',
    errno.EROFS: 'the file system is read-only: choose a writable --work-dir',
    errno.EACCES: 'permission denied: choose a --work-dir you can write to, or fix its permissions',
    errno.EPERM: 'operation not permitted: choose a --work-dir you can write to, or fix its permissions',
    errno.ENOTDIR: 'a part of this path is a file, not a folder: choose another --work-dir',
    errno.EEXIST: 'this path exists and is not a folder: choose another --work-dir',
    errno.EISDIR: 'this path is a folder where a file was expected',
    errno.ENAMETOOLONG: 'the path is too long',
    errno.EMFILE: 'too many open files: raise the limit (ulimit -n) or use fewer data-loader workers',
}

_WORKER = re.compile(r'^Caught \w+ in DataLoader worker process \d+\.')


def register_expected(*types: Type[BaseException]) -> None:
    """Treat ``types`` (e.g. :class:`mmrevcol.checkpoint.CheckpointMismatchError`) as expected failures."""
    for t in types:
        if t not in _EXPECTED:
            _EXPECTED.append(t)


def _register_lazy() -> None:
    for spec in _LAZY:
        module, name = spec.split(':')
        try:
            register_expected(getattr(importlib.import_module(module), name))
        except Exception:  # noqa: BLE001  a broken optional import must not hide the error being reported
            pass


def expected_error_types() -> Tuple[Type[BaseException], ...]:
    _register_lazy()
    return tuple(_EXPECTED)


def _is_out_of_memory(error: BaseException) -> bool:
    if isinstance(error, MemoryError) or type(error).__name__ == 'OutOfMemoryError':
        return True
    text = str(error)
    return isinstance(error, RuntimeError) and ("can't allocate memory" in text or 'out of memory' in text)


def is_expected(error: BaseException) -> bool:
    """Whether ``error`` is an expected failure (registered type, operational OS error or out of memory)."""
    if isinstance(error, expected_error_types()):
        return True
    if isinstance(error, OSError) and error.errno in OPERATIONAL_ERRNOS:
        return True
    return _is_out_of_memory(error)


def exit_code_of(error: BaseException) -> int:
    return int(getattr(error, 'exit_code', 1))


# ---------------------------------------------------------------------------------------------------------------
# What was being processed, for messages of errors raised far from it (out of memory in the model)
_CONTEXT: Dict[str, str] = {}


def note_context(key: str, text: str) -> None:
    """Remember what is being processed (e.g. ``note_context('batch', 'iteration 12: a.jpg, b.jpg')``)."""
    _CONTEXT[key] = text


def clear_context(key: str) -> None:
    _CONTEXT.pop(key, None)


def _one_line(text: str, limit: int = 600) -> str:
    text = ' '.join(text.split())
    return text if len(text) <= limit else text[:limit - 3] + '...'


def _worker_message(text: str) -> str:
    """The original message of an error re-raised from a DataLoader worker (its traceback's last line)."""
    lines = [line for line in text.strip().splitlines() if line.strip()]
    last = lines[-1] if lines else text
    # "mmrevcol.utils.errors.DataError: message" -> "message"
    match = re.match(r'^[\w.]+(?:Error|Exception|Interrupt|Exit|Warning)?: (.*)$', last)
    return match.group(1) if match else last


def describe(error: BaseException) -> str:
    """One readable line for an expected error: its message, with the path and the fix for OS errors."""
    if isinstance(error, OSError) and not isinstance(error, ExpectedError) and error.errno in OPERATIONAL_ERRNOS:
        name = errno.errorcode.get(error.errno, str(error.errno))
        where = f': {error.filename}' if error.filename else ''
        if error.filename and error.filename2:
            where += f' -> {error.filename2}'
        return _one_line(f'{error.strerror or os.strerror(error.errno)} ({name}){where}: '
                         f'{OPERATIONAL_ERRNOS[error.errno]}')
    text = str(error) or type(error).__name__
    if _WORKER.match(text):
        text = _worker_message(text)
    if _is_out_of_memory(error):
        where = '; '.join(f'{key}: {value}' for key, value in _CONTEXT.items())
        text = (f'out of memory ({type(error).__name__}: {_one_line(text, 200)})'
                + (f' while processing {where}' if where else '')
                + '. Lower the batch size or the image scale of the pipeline, or check that image with '
                'tools/check_dataset.py')
    return _one_line(text)


def logger_names() -> set:
    """Names of the mmengine loggers that exist now (to tell later which ones a tool created)."""
    try:
        from mmengine.logging import MMLogger
    except ImportError:
        return set()
    return set(MMLogger._instance_dict)


def current_log_file(exclude: Optional[set] = None) -> Optional[str]:
    """The log file of the newest mmengine logger (the run's ``<work_dir>/<timestamp>/<timestamp>.log``), if any.

    ``exclude``: logger names that existed before the tool started (:func:`logger_names`): an earlier run's log in
    the same process is not this tool's.
    """
    try:
        from mmengine.logging import MMLogger
    except ImportError:
        return None
    for name in reversed(list(MMLogger._instance_dict)):  # insertion order: the newest last
        if exclude and name in exclude:
            continue
        for handler in MMLogger._instance_dict[name].handlers:
            if isinstance(handler, logging.FileHandler):
                return handler.baseFilename
        return None
    return None
