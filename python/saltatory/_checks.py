"""Argument checks shared by the Python layers. Each raises TypeError (wrong kind) or ValueError
(wrong value) naming the op, before a value reaches C++ (where pybind11 would answer an int that
does not fit with "incompatible function arguments")."""

from __future__ import annotations

import math
import operator

import numpy as np

INT32_MAX = 2**31 - 1
UINT64_MAX = 2**64 - 1


def integer(value, name: str, op: str, low: int = 0, high: int = INT32_MAX) -> int:
    """``value`` as an int in [low, high]: an int, a numpy integer or anything with __index__
    (not a bool, not a float)."""
    if isinstance(value, (bool, np.bool_)) or not hasattr(type(value), "__index__"):
        raise TypeError(f"[{op}] {name} must be an integer, got {type(value).__name__}")
    value = operator.index(value)
    if not low <= value <= high:
        raise ValueError(f"[{op}] {name} must lie in [{low}, {high}], got {value}")
    return value


def seed(value, op: str) -> int:
    """A seed: an integer in [0, 2^64)."""
    return integer(value, "seed", op, 0, UINT64_MAX)


def real(value, name: str, op: str) -> float:
    """``value`` as a finite float."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"[{op}] {name} must be a real number, got {type(value).__name__}")
    try:
        result = float(value)
    except OverflowError:
        result = math.inf
    if not math.isfinite(result):
        raise ValueError(f"[{op}] {name} must be finite, got {value}")
    return result


def choice(value, options, name: str, op: str):
    """``value`` if it is one of ``options`` (a string option)."""
    if not isinstance(value, str) or value not in options:
        raise ValueError(f"[{op}] {name} must be one of {sorted(options)}, got {value!r}")
    return value
