"""Checks shared by the Python layers and the readers. Each raises TypeError (wrong kind) or
ValueError (wrong value) naming the op, before a value reaches C++ (where pybind11 would answer an
int that does not fit with "incompatible function arguments") or a cast could truncate or wrap."""

from __future__ import annotations

import math
import operator

import numpy as np

from . import _core

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


def integers(values, where: str, low: int = 0, high: int = 2**31) -> np.ndarray:
    """``values`` as int64 once every one is an integer in [low, high) (floats must be integral);
    otherwise ValueError "<where> <index> is <value>, not an integer in [low, high)" (no index for
    a single value). The check
    comes before any cast, so nothing is truncated or wraps around."""
    a = np.asarray(values)
    if a.dtype.kind not in "biuf":
        raise ValueError(f"{where} values must be integers, got dtype {a.dtype}")
    good = (a >= low) & (a < high)
    if a.dtype.kind == "f":
        good &= a == np.floor(a)  # NaN fails every comparison
    if not np.all(good):
        i = int(np.flatnonzero(~good)[0])
        at = f" {i}" if a.ndim else ""
        raise ValueError(f"{where}{at} is {a.ravel()[i]}, not an integer in [{low}, {high})")
    return a.astype(np.int64)


def check_memory(n_bytes: int, what: str) -> None:
    """Refuses (ValueError) what would need more than ``saltatory.memory_limit()`` bytes."""
    limit = _core.memory_limit()
    if n_bytes > limit:
        raise ValueError(f"{what} would need {n_bytes} bytes, above the memory limit of {limit} "
                         f"bytes (saltatory.set_memory_limit)")
