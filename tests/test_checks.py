"""The argument checks every algorithm, planner and model shares."""

import math

import numpy as np
import pytest

from sb3_loop.checks import check_choice, check_number, check_positive_int


@pytest.mark.parametrize("value", [0.5, 1, np.float32(0.25), np.int64(1), 0.0])
def test_check_number_accepts_numbers_in_range(value):
    check_number("coef", value, 0.0, 1.0)


@pytest.mark.parametrize(
    ("value", "kwargs", "match"),
    [
        (1.5, dict(low=0.0, high=1.0), r"coef=1.5 must be a finite number in \[0.0, 1.0\]"),
        (0.0, dict(low=0.0, high=1.0, low_open=True), r"coef=0.0 must be a finite number in \(0.0, 1.0\]"),
        (-1, dict(low=0.0), r"coef=-1 must be a finite number >= 0.0"),
        (math.nan, dict(), r"coef=nan must be a finite number$"),
        (math.inf, dict(low=0.0), r"coef=inf must be a finite number >= 0.0"),
        (True, dict(), r"coef=True must be a finite number"),
        ("3", dict(), r"coef='3' must be a finite number"),
        (2.0, dict(low=1, integer=True), r"coef=2.0 must be an integer >= 1"),
        (5, dict(high=3), r"coef=5 must be a finite number <= 3"),
    ],
)
def test_check_number_names_the_offending_value(value, kwargs, match):
    with pytest.raises(ValueError, match=match):
        check_number("coef", value, **kwargs)


def test_check_positive_int():
    check_positive_int("horizon", np.int32(3))
    for bad in (0, -2, 1.0, True, None):
        with pytest.raises(ValueError, match=rf"horizon={bad!r} must be an integer >= 1"):
            check_positive_int("horizon", bad)


def test_check_choice():
    check_choice("kind", "exp", ("exp", "binary"))
    with pytest.raises(ValueError, match=r"kind='max' is not one of 'exp', 'binary'"):
        check_choice("kind", "max", ("exp", "binary"))
    with pytest.raises(ValueError, match=r"kind=\['exp'\] is not one of"):
        check_choice("kind", ["exp"], ("exp", "binary"))
