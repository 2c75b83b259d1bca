"""Expected operational failures: what a tool reports as one readable line (the traceback goes to a log file).

A failure the user can fix — a wrong checkpoint, a data fault, a full disk, a locked work dir, a non-finite loss —
is *expected*: the tools end with ``ERROR: <message>`` and a non-zero exit status instead of a traceback
(:func:`mmrevcol.utils.cli.run_tool`). Library code raises :class:`ExpectedError` subclasses (or registers its own
exception types with :func:`register_expected`); bugs stay tracebacks.
"""
from typing import List, Tuple, Type


class ExpectedError(Exception):
    """Base of the project's expected failures. ``exit_code`` is the process status the tools exit with."""
    exit_code = 1


_EXPECTED: List[Type[BaseException]] = [ExpectedError]


def register_expected(*types: Type[BaseException]) -> None:
    """Treat ``types`` (e.g. :class:`mmrevcol.checkpoint.CheckpointMismatchError`) as expected failures."""
    for t in types:
        if t not in _EXPECTED:
            _EXPECTED.append(t)


def expected_error_types() -> Tuple[Type[BaseException], ...]:
    return tuple(_EXPECTED)


def exit_code_of(error: BaseException) -> int:
    return int(getattr(error, 'exit_code', 1))
