"""Third-party noise of the tools: kept in a log file, off the console (standard library only).

What counts as noise is what a user of the tools cannot act on: deprecation notices of the stack about itself
(``pkg_resources is deprecated`` from mmengine/mmcv at import, torch ``FutureWarning``\\ s, "X has been moved to Y"),
and the operator lists of mmengine's FLOP counter. Warnings raised by mmrevcol or the tools, and any other warning,
stay on the console.

Two pieces:

- :func:`quiet_tool_process`, called first thing by ``import mmrevcol``. The stack warns while it is imported, and
  the tools import it at their top, before their ``main`` runs; so in a process started from the project's
  ``tools/`` (``MMREVCOL_QUIET=1`` / ``0`` forces it on / off; never when ``-W`` / ``PYTHONWARNINGS`` chose a
  warnings policy) the routing is installed for the whole process, and what it collects before a log is known is
  written out by :func:`quiet_third_party` or, at the latest, at exit. Anywhere else (a user's script, a notebook,
  pytest) importing mmrevcol leaves warnings alone.
- :func:`quiet_third_party` (what :func:`mmrevcol.utils.cli.run_tool` runs a tool's ``main`` in) routes the noise
  raised during the run, plus what was collected before, to the log: ``log_file`` when given, else the file handler
  of mmengine's current logger when a run has one (the run's log in its work dir, in order), else
  ``work_dirs/logs/<tool>.log``. One line on stderr at the end says how many lines went there.

This module imports nothing outside the standard library: it runs before mmengine, mmcv and torch are imported.
"""
import atexit
import contextlib
import logging
import os
import os.path as osp
import re
import sys
import time
import warnings
from typing import Callable, Iterator, List, Optional, Tuple, Union

__all__ = ['is_noise', 'quiet_tool_process', 'quiet_third_party', 'NoiseLog', 'collected']

_PACKAGE_DIR = osp.dirname(osp.dirname(osp.abspath(__file__)))  # .../mmrevcol
_REPO = osp.dirname(_PACKAGE_DIR)
_OWN = (_PACKAGE_DIR + os.sep, osp.join(_REPO, 'tools') + os.sep, osp.join(_REPO, 'configs') + os.sep)

#: Messages of the stack's warnings that are noise whatever their category (deprecations it raises about itself).
NOISE_MESSAGES = re.compile('|'.join([
    r'pkg_resources is deprecated',
    r'has been moved to',                      # mmcv: MultiScaleDeformableAttention moved to mmcv.ops
    r'would be deprecated soon',               # mmseg: build_loss
    r'Default ``avg_non_ignore`` is False',    # mmseg's CrossEntropyLoss default, unchanged since 2022
    r'[Dd]eprecat',                            # any other deprecation notice of a third-party package
    r'TypedStorage is deprecated',
]))
#: Categories that are noise when a third-party module raises them.
NOISE_CATEGORIES = (DeprecationWarning, PendingDeprecationWarning, FutureWarning, ImportWarning)
#: mmengine log records that are noise: the FLOP counter's lists of ops without a handle and of uncalled modules,
#: and ``BaseModule.init_weights``'s one record per parameter, which mmengine writes to the run's log file when its
#: logger has one and to the console otherwise (a tool that builds models outside a runner: thousands of lines).
NOISE_RECORDS = re.compile(r'Unsupported operator |were never called during the trace|never called during the trace'
                           r'|\A\n\S+ - torch\.Size\(\[[0-9, ]*\]\): \n')


def _own_file(filename: str) -> bool:
    return osp.abspath(filename or '').startswith(_OWN)


def is_noise(message: Union[str, Warning], category: type, filename: str) -> bool:
    """Whether a warning is third-party noise (see the module doc). Warnings of mmrevcol, tools/ and configs/
    never are."""
    if _own_file(filename):
        return False
    if issubclass(category, NOISE_CATEGORIES):
        return True
    return bool(NOISE_MESSAGES.search(str(message)))


class NoiseLog:
    """Where the noise goes: lines kept until a log file is known, then written there."""

    max_pending = 10000  # outside a tool nobody writes the lines out: keep memory bounded

    def __init__(self) -> None:
        self.pending: List[Tuple[int, str]] = []
        self.count = 0
        self.written_to: Optional[str] = None
        self.active = 0  # quiet_third_party blocks running: only then are lines written out as they come
        self.log_file: Union[None, str, Callable[[], Optional[str]]] = None  # the running block's log_file

    def add_warning(self, message, category, filename, lineno) -> None:
        self._add(f'{filename}:{lineno}: {category.__name__}: {message}', logging.WARNING)

    def add_record(self, record: logging.LogRecord) -> None:
        self._add(record.getMessage(), record.levelno)

    def note(self, text: str) -> None:
        """A line for the log only (e.g. the operators the FLOP counter skipped)."""
        self._add(text, logging.INFO)

    def _add(self, text: str, level: int) -> None:
        self.count += 1
        if len(self.pending) < self.max_pending:
            self.pending.append((level, f'[third-party] {text}'))
        if self.active:
            self.flush(final=False)

    def flush(self, final: bool, default: Optional[str] = None) -> None:
        """Write what is pending: to ``self.log_file`` when one is set (a path, or a callable returning one or
        None), else through the current mmengine run's file handlers (the run's log, in order); at the end
        (``final``) to ``default`` when there is neither."""
        if not self.pending:
            return
        path = self.log_file() if callable(self.log_file) else self.log_file
        handlers = [] if path else _run_file_handlers()
        if handlers:
            for level, text in self.pending:
                record = logging.LogRecord('mmrevcol.noise', level, __file__, 0, text, None, None)
                for handler in handlers:
                    if record.levelno >= handler.level:
                        handler.handle(record)
            self.written_to = handlers[0].baseFilename
            self.pending.clear()
            return
        path = path or (default if final else None)
        if not path:
            return
        try:
            os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
            with open(path, 'a') as f:
                stamp = time.strftime('%Y/%m/%d %H:%M:%S')
                f.writelines(f'{stamp} - {logging.getLevelName(level)} - {text}\n' for level, text in self.pending)
        except OSError:
            return
        self.written_to = path
        self.pending.clear()


#: The noise collected until a log is known (a tool's :func:`quiet_third_party`, or at exit).
_COLLECTED = NoiseLog()


def collected() -> NoiseLog:
    return _COLLECTED


def _run_file_handlers() -> list:
    """File handlers of mmengine's current logger (a Runner's log in its work dir), if mmengine is loaded."""
    mmlogging = sys.modules.get('mmengine.logging')
    if mmlogging is None or not getattr(mmlogging.MMLogger, '_instance_dict', None):
        return []
    logger = mmlogging.MMLogger.get_current_instance()
    return [h for h in logger.handlers if isinstance(h, logging.FileHandler)]


def _tool_process() -> bool:
    forced = os.environ.get('MMREVCOL_QUIET')
    if forced in ('0', '1'):
        return forced == '1'
    if sys.warnoptions:  # -W or PYTHONWARNINGS: the user chose what to see
        return False
    main = getattr(sys.modules.get('__main__'), '__file__', None) or (sys.argv[0] if sys.argv else '')
    return osp.abspath(main).startswith(osp.join(_REPO, 'tools') + os.sep)


def _route_warnings(sink: NoiseLog) -> Callable[[], None]:
    """Send noise warnings to ``sink`` from now on; returns the function that undoes it."""
    original = warnings.showwarning

    def showwarning(message, category, filename, lineno, file=None, line=None):
        if is_noise(message, category, filename):
            sink.add_warning(message, category, filename, lineno)
        else:
            original(message, category, filename, lineno, file, line)

    showwarning.routes_noise = True
    warnings.showwarning = showwarning

    def undo() -> None:
        if warnings.showwarning is showwarning:
            warnings.showwarning = original

    return undo


def quiet_tool_process() -> bool:
    """In a process of the project's tools, route the stack's noise to the log from now on (see the module doc);
    returns whether it did. Idempotent."""
    if not _tool_process() or getattr(warnings.showwarning, 'routes_noise', False):
        return False
    _route_warnings(_COLLECTED)
    atexit.register(_COLLECTED.flush, final=True, default=_default_log())
    return True


class _RecordFilter(logging.Filter):

    def __init__(self, sink: NoiseLog) -> None:
        super().__init__()
        self.sink = sink

    def filter(self, record: logging.LogRecord) -> bool:
        if NOISE_RECORDS.search(record.getMessage()):
            self.sink.add_record(record)
            return False
        return True


def _default_log() -> str:
    main = getattr(sys.modules.get('__main__'), '__file__', None) or (sys.argv[0] if sys.argv else '') or 'tool'
    name = osp.splitext(osp.basename(main))[0] or 'tool'
    return osp.join('work_dirs', 'logs', f'{name}.log')


@contextlib.contextmanager
def quiet_third_party(log_file: Union[None, str, Callable[[], Optional[str]]] = None,
                      announce: bool = True) -> Iterator[NoiseLog]:
    """Run a block with third-party noise routed to a log file instead of the console.

    Args:
        log_file: where the noise goes (a path, or a callable returning one or None); without one, the current
            mmengine run's log (through its file handler, in order) or, when there is no run, ``work_dirs/logs/
            <tool>.log``.
        announce: print one line to stderr at the end saying how many lines went where.

    Yields:
        The :class:`NoiseLog` (``count``, ``written_to``).
    """
    sink = _COLLECTED
    filter_ = _RecordFilter(sink)
    loggers = _mm_loggers()
    for logger in loggers:
        logger.addFilter(filter_)
    sink.active += 1
    previous_log, sink.log_file = sink.log_file, log_file
    undo = None if getattr(warnings.showwarning, 'routes_noise', False) else _route_warnings(sink)
    try:
        yield sink
    finally:
        if undo is not None:
            undo()
        sink.active -= 1
        for logger in loggers + [lg for lg in _mm_loggers() if lg not in loggers]:
            logger.removeFilter(filter_)
        sink.flush(final=True, default=_default_log())
        sink.log_file = previous_log
        if announce and sink.count and sink.written_to and os.environ.get('RANK', '0') == '0':
            print(f'({sink.count} third-party warning(s) kept off the console: {sink.written_to})', file=sys.stderr,
                  flush=True)
            sink.count = 0


def _mm_loggers() -> list:
    """mmengine's loggers existing now (the FLOP counter logs through the current one)."""
    mmlogging = sys.modules.get('mmengine.logging')
    if mmlogging is None:
        return []
    mmlogging.MMLogger.get_current_instance()  # the default instance the counter would create
    return list(mmlogging.MMLogger._instance_dict.values())
