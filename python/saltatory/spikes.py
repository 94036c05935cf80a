"""SpikeTensor: fixed-capacity spike lists, time-major.

``ids`` int32 [T, B, K]: ``ids[t, b, :n_spk]`` are spikes, ``ids[t, b, n_spk:n_tot]`` gradient-only
candidates (neurons between the two thresholds), the rest padding. ``n_spk``/``n_tot`` int32 [T, B].
"""

from __future__ import annotations

import numpy as np

from . import _core

_POLICIES = ("lowest", "random")


def _int32(name: str, value, op: str) -> np.ndarray:
    arr = np.asarray(value)
    if not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"[{op}] {name} must be an integer array, got dtype {arr.dtype}")
    if arr.size and (arr.min() < np.iinfo(np.int32).min or arr.max() > np.iinfo(np.int32).max):
        raise ValueError(f"[{op}] {name} does not fit in int32")
    return np.ascontiguousarray(arr, dtype=np.int32)


class SpikeTensor:
    """Spike lists of ``n_neurons`` neurons over T steps and B samples, capacity K per list.

    Arrays that are already int32 and C-contiguous are used without copying. ``dropped`` counts
    spikes lost to capacity when the tensor was built.
    """

    def __init__(self, ids, n_spk, n_tot=None, *, n_neurons: int, dropped: int = 0, validate: bool = True):
        op = "SpikeTensor"
        self.ids = _int32("ids", ids, op)
        self.n_spk = _int32("n_spk", n_spk, op)
        self.n_tot = self.n_spk if n_tot is None else _int32("n_tot", n_tot, op)
        if int(n_neurons) <= 0:
            raise ValueError(f"[{op}] n_neurons must be positive, got {n_neurons}")
        self.n_neurons = int(n_neurons)
        self.dropped = int(dropped)
        if validate:
            _core.validate_spikes(self, op)

    @classmethod
    def from_dense(cls, dense, capacity: int | None = None, *, overflow: str = "lowest", seed: int = 0):
        """From dense 0/1 spikes [T, B, N]. ``capacity`` defaults to the largest list size."""
        op = "SpikeTensor.from_dense"
        arr = np.asarray(dense)
        real = np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)
        if not (real or arr.dtype == bool):
            raise TypeError(f"[{op}] dense must be real numbers or bool, got dtype {arr.dtype}")
        if arr.ndim != 3:
            raise ValueError(f"[{op}] dense must be [T, B, N], got shape {arr.shape}")
        if arr.dtype != np.float32:  # check 0/1 before converting, so no value changes on the way
            bad = np.argwhere((arr != 0) & (arr != 1))
            if len(bad):
                t, b, j = bad[0]
                raise ValueError(f"[{op}] value {arr[t, b, j]} at [{t}, {b}, {j}] is not 0 or 1")
        arr = np.ascontiguousarray(arr, dtype=np.float32)
        if capacity is None:
            capacity = max(1, int(np.count_nonzero(arr, axis=2).max(initial=0)))
        _check_policy(overflow, op)
        ids, n_spk, n_tot, dropped = _core.spikes_from_dense(arr, int(capacity), overflow, int(seed))
        return cls(ids, n_spk, n_tot, n_neurons=arr.shape[2], dropped=dropped, validate=False)

    @classmethod
    def from_events(cls, times, units, *, bin_width: float, n_steps: int, n_neurons: int, capacity: int,
                    samples=None, batch_size: int | None = None, overflow: str = "lowest", seed: int = 0):
        """Bins events (time, unit[, sample]) into T = n_steps bins of ``bin_width``.

        Events at or after ``n_steps * bin_width`` and spikes beyond ``capacity`` are dropped and
        counted in ``dropped``; repeated (bin, unit) pairs make one spike.
        """
        op = "SpikeTensor.from_events"
        units = _int32("units", units, op).astype(np.int64).ravel()
        times = np.asarray(times)
        if not np.issubdtype(times.dtype, np.number):
            raise TypeError(f"[{op}] times must be numeric, got dtype {times.dtype}")
        times = np.ascontiguousarray(times, dtype=np.float64).ravel()
        samples = np.zeros_like(units) if samples is None else _int32("samples", samples, op).astype(np.int64).ravel()
        if batch_size is None:
            batch_size = int(samples.max(initial=-1)) + 1 if samples.size else 1
        _check_policy(overflow, op)
        ids, n_spk, n_tot, dropped = _core.spikes_from_events(
            samples, times, units, float(bin_width), int(n_steps), int(batch_size), int(n_neurons),
            int(capacity), overflow, int(seed))
        return cls(ids, n_spk, n_tot, n_neurons=n_neurons, dropped=dropped, validate=False)

    def to_dense(self) -> np.ndarray:
        """Dense float32 0/1 [T, B, N] of the spikes (candidates excluded)."""
        return _core.spikes_to_dense(self)

    def counts(self) -> np.ndarray:
        """Spike counts per sample and neuron, float32 [B, N]."""
        return _core.spike_counts(self)

    @property
    def shape(self) -> tuple[int, int, int]:
        """(T, B, K)."""
        return self.ids.shape

    @property
    def capacity(self) -> int:
        return self.ids.shape[2]

    def activity(self) -> float:
        """Measured activity: spikes per neuron per step, averaged over the batch."""
        T, B, _ = self.ids.shape
        return float(self.n_spk.sum(dtype=np.int64)) / (T * B * self.n_neurons)

    def __repr__(self) -> str:
        T, B, K = self.shape
        return (f"SpikeTensor(T={T}, B={B}, K={K}, n_neurons={self.n_neurons}, "
                f"spikes={int(self.n_spk.sum())}, dropped={self.dropped})")


def _check_policy(overflow: str, op: str) -> None:
    if overflow not in _POLICIES:
        raise ValueError(f"[{op}] overflow must be one of {_POLICIES}, got {overflow!r}")
