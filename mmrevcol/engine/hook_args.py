"""Typed checks of hook arguments, run at construction: a config typo fails before anything is built.

Each check raises one ``TypeError`` (wrong type) or ``ValueError`` (wrong value) naming the hook, the argument,
what it must be and what it got. ``bool`` is not accepted where a number is expected (``True`` is an ``int`` in
Python, never a meaningful interval), and a float is not an int even when it is whole (``2.0``).
"""
import numbers
from typing import Any, Iterable, Optional

__all__ = ['check_int', 'check_number', 'check_bool', 'check_choice', 'check_optional_str']


def _got(value: Any) -> str:
    return f'got {value!r} ({type(value).__name__})'


def check_int(owner: str, name: str, value: Any, minimum: Optional[int] = None, allow_none: bool = False,
              also: Iterable[int] = ()) -> Optional[int]:
    """``value`` must be an int (not a bool) ``>= minimum`` (or one of ``also``, e.g. -1 for 'never')."""
    if value is None and allow_none:
        return None
    also = tuple(also)
    what = 'an int' + (f' >= {minimum}' if minimum is not None else '') + \
        (f' or {" / ".join(map(str, also))}' if also else '') + (' or None' if allow_none else '')
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f'{owner}: {name} must be {what}, {_got(value)}')
    if value not in also and minimum is not None and value < minimum:
        raise ValueError(f'{owner}: {name} must be {what}, {_got(value)}')
    return int(value)


def check_number(owner: str, name: str, value: Any, low: Optional[float] = None, high: Optional[float] = None,
                 low_open: bool = False, high_open: bool = False, allow_none: bool = False) -> Optional[float]:
    """``value`` must be a real number (not a bool, not a string) in the interval given by ``low``/``high``."""
    if value is None and allow_none:
        return None
    left = '(' if low_open else '['
    right = ')' if high_open else ']'
    interval = f' in {left}{"-inf" if low is None else low}, {"inf" if high is None else high}{right}' \
        if low is not None or high is not None else ''
    what = f'a number{interval}' + (' or None' if allow_none else '')
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f'{owner}: {name} must be {what}, {_got(value)}')
    value = float(value)
    if value != value or (low is not None and (value < low or (low_open and value == low))) or \
            (high is not None and (value > high or (high_open and value == high))):
        raise ValueError(f'{owner}: {name} must be {what}, {_got(value)}')
    return value


def check_bool(owner: str, name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f'{owner}: {name} must be True or False, {_got(value)}')
    return value


def check_choice(owner: str, name: str, value: Any, choices: Iterable[Any]) -> Any:
    choices = tuple(choices)
    if not any(type(value) is type(c) and value == c for c in choices):  # 1 is not True, 'a' is not a list
        raise ValueError(f'{owner}: {name} must be one of {choices}, {_got(value)}')
    return value


def check_optional_str(owner: str, name: str, value: Any) -> Optional[str]:
    if value is not None and not isinstance(value, str):
        raise TypeError(f'{owner}: {name} must be a string or None, {_got(value)}')
    return value
