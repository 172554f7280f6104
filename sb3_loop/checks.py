"""
Argument checks shared by every algorithm, planner and model here: each raises a ``ValueError`` that
names the argument and the offending value.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any


def check_number(
    name: str,
    value: Any,
    low: float = -math.inf,
    high: float = math.inf,
    low_open: bool = False,
    integer: bool = False,
) -> None:
    """
    Raise ``ValueError`` naming ``name`` unless ``value`` is a finite real number (an integer with
    ``integer``) in ``[low, high]``, or ``(low, high]`` with ``low_open``. Booleans are refused.

    :param name: The argument's name, as the user wrote it.
    :param value: The value given.
    :param low: Lower bound.
    :param high: Upper bound (inclusive).
    :param low_open: Exclude ``low`` itself.
    :param integer: Require an integer.
    """
    kind = numbers.Integral if integer else numbers.Real
    valid = isinstance(value, kind) and not isinstance(value, bool) and math.isfinite(value)
    if valid and (value > low if low_open else value >= low) and value <= high:
        return
    what = "an integer" if integer else "a finite number"
    raise ValueError(f"{name}={value!r} must be {what} {_bounds(low, high, low_open)}".rstrip())


def _bounds(low: float, high: float, low_open: bool) -> str:
    if math.isinf(high):
        return f"{'>' if low_open else '>='} {low}" if not math.isinf(low) else ""
    if math.isinf(low):
        return f"<= {high}"
    return f"in {'(' if low_open else '['}{low}, {high}]"


def check_positive_int(name: str, value: Any) -> None:
    """Raise ``ValueError`` naming ``name`` unless ``value`` is an integer >= 1."""
    check_number(name, value, 1, integer=True)


def check_choice(name: str, value: Any, choices: Sequence[str]) -> None:
    """Raise ``ValueError`` naming ``name`` unless ``value`` is one of ``choices``."""
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name}={value!r} is not one of {', '.join(map(repr, choices))}")
