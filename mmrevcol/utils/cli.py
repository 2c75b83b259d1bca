"""The tools' command-line helpers: :func:`run_tool` (the entry point of every tool: an expected failure ends in one
line, third-party noise goes to the log, :mod:`mmrevcol.utils.noise`), :func:`require_path` (a missing input is
one line) and :class:`LiteralDictAction`.

``--cfg-options`` that also take ``dict(...)`` / ``{...}`` values, e.g. a custom RevCol arch.

mmengine's :class:`~mmengine.config.DictAction` splits values at top-level commas and recurses into brackets; a
value such as ``dict(channels=[8,16],layers=[1,1])`` has no top-level comma and no bracket it strips, so it
recurses on itself until RecursionError. :class:`LiteralDictAction` parses dict-like values (and any value with
unbalanced brackets) with a small literal-only evaluator and leaves every other value to mmengine, so existing
command lines mean what they meant before. A dict value replaces the config's value as a whole (like any other
value; give ``a.b.c=...`` keys to change parts of a dict). A value it cannot parse ends the program with one line.

Examples (no white space, or quote the whole value)::

    --cfg-options model.backbone.arch="dict(channels=[64,128,256,512],layers=[2,2,4,2],num_columns=4)"
    --cfg-options model.backbone.arch="{'channels':[64,128,256,512],'layers':[2,2,4,2],'num_columns':4}"
    --cfg-options model.backbone.arch.channels=[64,128,256,512]   # a key of an arch that is already a dict
"""
import ast
import contextlib
import copy
import os
import sys
from typing import Any, Callable, Optional, Union

from mmengine.config import DictAction

from .errors import ExpectedError
from .noise import quiet_third_party

__all__ = ['InvalidInputError', 'LiteralDictAction', 'MissingInputError', 'parse_literal', 'quiet_third_party',
           'require_path',
           'run_tool']

_OPEN, _CLOSE = '([{', ')]}'


def _balanced(text: str) -> bool:
    stack, quote = [], None
    for char in text:
        if quote:
            quote = None if char == quote else quote
        elif char in '\'"':
            quote = char
        elif char in _OPEN:
            stack.append(_CLOSE[_OPEN.index(char)])
        elif char in _CLOSE:
            if not stack or stack.pop() != char:
                return False
    return not stack and quote is None


def _evaluate(node: ast.AST) -> Any:
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):  # an unquoted word is a string, as in DictAction (`[a,b]`, `dict(type=BN)`)
        return node.id
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)) \
            and isinstance(node.operand, ast.Constant) and isinstance(node.operand.value, (int, float)):
        return -node.operand.value if isinstance(node.op, ast.USub) else node.operand.value
    if isinstance(node, ast.List):
        return [_evaluate(e) for e in node.elts]
    if isinstance(node, ast.Tuple):
        return tuple(_evaluate(e) for e in node.elts)
    if isinstance(node, ast.Dict):
        if any(k is None for k in node.keys):
            raise ValueError('`**` is not supported')
        return {_evaluate(k): _evaluate(v) for k, v in zip(node.keys, node.values)}
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == 'dict':
        if node.args or any(k.arg is None for k in node.keywords):
            raise ValueError('dict(...) takes key=value arguments only')
        return {k.arg: _evaluate(k.value) for k in node.keywords}
    raise ValueError(f'{ast.unparse(node)!r} is not a literal (numbers, strings, lists, tuples, dict(...), {{...}})')


def parse_literal(text: str) -> Any:
    """Parse a Python literal that may contain ``dict(key=value, ...)`` calls; nothing is executed.

    Raises:
        ValueError: with a one-line reason when ``text`` is not such a literal.
    """
    try:
        tree = ast.parse(text.strip(), mode='eval')
    except SyntaxError as e:
        raise ValueError(f'syntax error at column {e.offset}: {e.msg}') from None
    return _evaluate(tree.body)


class _Replacement(dict):
    """A dict given on the command line replaces the config's value instead of being merged into it.

    ``Config.merge_from_dict`` merges dicts key by key and refuses a dict over a non-dict (``arch='tiny'``)
    unless the dict says ``_delete_=True``; a visible ``_delete_`` key would stay in the value where the config
    had none, so this dict answers ``pop('_delete_')`` with True without holding the key.
    """

    def pop(self, key, *default):
        if key == '_delete_':
            return True
        return super().pop(key, *default)


def _needs_literal_parser(value: str) -> bool:
    stripped = value.strip()
    return 'dict(' in stripped or stripped.startswith('{') or not _balanced(stripped)


class LiteralDictAction(DictAction):
    """:class:`~mmengine.config.DictAction` that also parses ``dict(...)`` and ``{...}`` values (see module doc).

    A malformed ``key=value`` exits with status 2 and one line naming the key and the reason.
    """

    def __call__(self, parser, namespace, values, option_string=None):
        options = copy.copy(getattr(namespace, self.dest, None) or {})
        for item in values or []:
            key, sep, value = item.partition('=')
            if not sep or not key:
                self._fail(parser, option_string, item, 'expected key=value')
            try:
                if _needs_literal_parser(value):
                    parsed = parse_literal(value)
                    options[key] = _Replacement(parsed) if isinstance(parsed, dict) else parsed
                else:
                    options[key] = self._parse_iterable(value)
            except (ValueError, RecursionError) as e:
                self._fail(parser, option_string, item, str(e) or type(e).__name__)
        setattr(namespace, self.dest, options)

    @staticmethod
    def _fail(parser, option_string, item: str, why: str) -> None:
        parser.exit(2, f'{parser.prog}: error: {option_string} {item}: {why}\n')


class MissingInputError(ExpectedError, FileNotFoundError):
    """A file or folder named on a tool's command line does not exist (one line, exit status 1)."""


class InvalidInputError(ExpectedError, ValueError):
    """A file named on a tool's command line exists but cannot be used (e.g. an image that does not decode)."""


def require_path(path: str, what: str = 'input', hint: str = '') -> str:
    """``path`` if it exists, else :class:`MissingInputError` naming ``what``, the path and ``hint``."""
    if path is None or not os.path.exists(path):
        raise MissingInputError(f'{what} not found: {path!r} (absolute: {os.path.abspath(str(path))})'
                                + (f'; {hint}' if hint else ''))
    return path


def run_tool(main: Callable[[Optional[list]], Any], argv: Optional[list] = None,
             log_file: Union[None, str, Callable[[], Optional[str]]] = None, quiet: bool = True) -> int:
    """Run a tool's ``main(argv)``; an expected failure (:mod:`mmrevcol.utils.errors`) ends in one line.

    ``ERROR: <message>`` goes to stderr and the exit status is the error's ``exit_code``; the traceback is appended
    to ``log_file`` (a path, or a callable returning one, e.g. the run's log in its work dir; by default the log
    file of the mmengine run this tool started, if any) when there is one. Anything else (a bug) keeps its
    traceback. Returns ``main``'s status: an ``int`` as is, 0 for anything else (None, or the results a tool's
    ``main`` returns to its callers).

    With ``quiet`` (the default) ``main`` runs in :func:`~mmrevcol.utils.noise.quiet_third_party`: the stack's
    deprecation notices and FLOP-counter lists go to ``log_file``, else to the mmengine run's log, else to
    ``work_dirs/logs/<tool>.log``, instead of the console, together with what was collected since ``import mmrevcol``
    in a tool's process; one line at the end names the file.
    """
    import traceback

    from .errors import current_log_file, describe, exit_code_of, is_expected, logger_names
    earlier_loggers = logger_names()
    error, status, path = None, 0, None
    with (quiet_third_party(log_file) if quiet else contextlib.nullcontext()):
        try:
            status = main(argv)
        except Exception as e:  # noqa: BLE001  only expected failures are handled; the rest is re-raised
            if not is_expected(e):
                raise
            error = e
            if getattr(e, 'label', 'ERROR') == 'ERROR':  # a preemption stop is no error: no traceback
                path = log_file() if callable(log_file) else log_file
                path = path or current_log_file(exclude=earlier_loggers)
            if path:
                try:
                    with open(path, 'a') as f:
                        traceback.print_exc(file=f)
                except OSError:
                    path = None
    if error is not None:  # after the noise summary: the line the user needs comes last
        print(f"{getattr(error, 'label', 'ERROR')}: {describe(error)}" + (f'\n(traceback in {path})' if path else ''),
              file=sys.stderr, flush=True)
        return exit_code_of(error)
    return status if isinstance(status, int) else 0
