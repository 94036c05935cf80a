"""SpikeTensor: fixed-capacity spike lists, time-major.

``ids`` int32 [T, B, K]: ``ids[t, b, :n_spk]`` are spikes, ``ids[t, b, n_spk:n_tot]`` gradient-only
candidates (neurons between the two thresholds), the rest padding. ``n_spk``/``n_tot`` int32 [T, B].
"""

from __future__ import annotations

import numpy as np

from . import _checks, _core

_POLICIES = tuple(_core.option_names()["overflow"])


def _int32(name: str, value, op: str) -> np.ndarray:
    arr = np.asarray(value)
    if not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"[{op}] {name} must be an integer array, got dtype {arr.dtype}")
    if (not np.can_cast(arr.dtype, np.int32) and arr.size
            and (arr.min() < np.iinfo(np.int32).min or arr.max() > np.iinfo(np.int32).max)):
        raise ValueError(f"[{op}] {name} does not fit in int32")
    return np.ascontiguousarray(arr, dtype=np.int32)


_CUDA_DLPACK_DEVICES = (2, 13)  # kDLCUDA, kDLCUDAManaged


def _on_cuda(value) -> bool:
    """Whether ``value`` is a DLPack producer (PyTorch, CuPy, ...) holding CUDA memory."""
    device = getattr(value, "__dlpack_device__", None)
    return device is not None and not isinstance(value, np.ndarray) and device()[0] in _CUDA_DLPACK_DEVICES


class SpikeTensor:
    """Spike lists of ``n_neurons`` neurons over T steps and B samples, capacity K per list.

    ids: int32 [T, B, K] neuron ids; n_spk: int32 [T, B], how many leading entries of each list
    are spikes; n_tot: int32 [T, B], how many are listed in all (spikes, then gradient
    candidates), default ``n_spk`` (no candidates). Arrays that are already int32 and C-contiguous
    are used without copying. ``dropped`` counts spikes lost to capacity when the tensor was built
    (or by the layer that selected them), and ``dropped_candidates`` the gradient candidates lost
    to it. validate: check the lists (ids in [0, n_neurons), distinct within a list,
    0 <= n_spk <= n_tot <= K) and raise ValueError otherwise; pass False only for lists Saltatory
    made itself.

    Arrays in CUDA memory (PyTorch or CuPy int32 tensors, or anything with ``__dlpack__``) stay
    there: ``device`` is then ``"cuda"``, a forward on ``device="cuda"`` reads them through DLPack
    without a round trip through the host and validates them on the GPU, and host-only methods
    (``to_dense``, ``counts``, ``activity``) raise.
    """

    def __init__(self, ids, n_spk, n_tot=None, *, n_neurons: int, dropped: int = 0,
                 dropped_candidates: int = 0, validate: bool = True):
        op = "SpikeTensor"
        arrays = [ids, n_spk] + ([] if n_tot is None else [n_tot])
        on_cuda = [_on_cuda(a) for a in arrays]
        if any(on_cuda) and not all(on_cuda):
            raise ValueError(f"[{op}] ids, n_spk and n_tot must all be in CUDA memory or all on the host")
        self.device = "cuda" if all(on_cuda) else "cpu"
        convert = (lambda name, a: a) if self.device == "cuda" else (lambda name, a: _int32(name, a, op))
        self.ids = convert("ids", ids)
        self.n_spk = convert("n_spk", n_spk)
        self.n_tot = self.n_spk if n_tot is None else convert("n_tot", n_tot)
        self.n_neurons = _checks.integer(n_neurons, "n_neurons", op, 1)
        self.dropped = int(dropped)
        self.dropped_candidates = int(dropped_candidates)
        if validate and self.device == "cpu":
            _core.validate_spikes(self, op)

    @classmethod
    def from_dense(cls, dense, capacity: int | None = None, *, overflow: str = "random", seed: int = 0,
                   first_step: int = 0):
        """From dense 0/1 spikes [T, B, N]. ``capacity`` defaults to the largest list size.

        A list with more spikes than ``capacity`` keeps ``overflow``'s choice ("random": a subset
        drawn from ``seed``; "lowest": the lowest ids) and counts the rest in ``dropped``. The
        random subset of list (t, b) is drawn for step ``first_step + t``: converting the chunks
        of a sequence with their first steps keeps the spikes converting the whole would."""
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
        _checks.choice(overflow, _POLICIES, "overflow", op)
        ids, n_spk, n_tot, dropped = _core.spikes_from_dense(
            arr, _checks.integer(capacity, "capacity", op, 1), overflow, _checks.seed(seed, op),
            first_step)
        return cls(ids, n_spk, n_tot, n_neurons=arr.shape[2], dropped=dropped, validate=False)

    @classmethod
    def from_events(cls, times, units, *, bin_width: float, n_steps: int, n_neurons: int, capacity: int,
                    samples=None, batch_size: int | None = None, overflow: str = "random", seed: int = 0):
        """Bins events (time, unit[, sample]) into T = n_steps bins of ``bin_width``.

        ``times``, ``units`` and ``samples`` (default all 0) are 1-D arrays, one entry per event:
        its time (same unit as ``bin_width``), neuron id in [0, n_neurons) and sample in
        [0, batch_size) (default: the largest sample id + 1). Events at or after
        ``n_steps * bin_width`` and spikes beyond ``capacity`` are dropped and counted in
        ``dropped`` (which spikes a full list keeps: ``overflow`` and ``seed``, as in
        ``from_dense``); repeated (bin, unit) pairs make one spike.
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
        _checks.choice(overflow, _POLICIES, "overflow", op)
        ids, n_spk, n_tot, dropped = _core.spikes_from_events(
            samples, times, units, _checks.real(bin_width, "bin_width", op), n_steps, batch_size,
            n_neurons, capacity, overflow, seed)
        return cls(ids, n_spk, n_tot, n_neurons=n_neurons, dropped=dropped, validate=False)

    def to_dense(self) -> np.ndarray:
        """Dense float32 0/1 [T, B, N] of the spikes (candidates excluded)."""
        self._host_only("SpikeTensor.to_dense")
        return _core.spikes_to_dense(self)

    def counts(self) -> np.ndarray:
        """Spike counts per sample and neuron, float32 [B, N]."""
        self._host_only("SpikeTensor.counts")
        return _core.spike_counts(self)

    def gather(self, per_neuron) -> np.ndarray:
        """Per-entry values [T, B, K] of a per-neuron float32 array [T, B, N] (e.g. dL/dS): entry
        k of list (t, b) gets ``per_neuron[t, b, ids[t, b, k]]`` for every listed entry (spikes and
        candidates), 0 for padding."""
        op = "SpikeTensor.gather"
        self._host_only(op)
        dense = _float32_array(per_neuron, (*self.shape[:2], self.n_neurons), op)
        listed = self._listed()
        entries = np.take_along_axis(dense, np.where(listed, self.ids, 0), axis=2)
        return np.where(listed, entries, 0.0).astype(np.float32)

    def scatter(self, per_entry) -> np.ndarray:
        """The per-neuron float32 array [T, B, N] of ``per_entry`` values [T, B, K]: each listed
        entry's value at its neuron, 0 elsewhere (the inverse of ``gather`` on listed neurons)."""
        op = "SpikeTensor.scatter"
        self._host_only(op)
        entries = _float32_array(per_entry, self.shape, op)
        T, B, _ = self.shape
        _checks.check_memory(4 * T * B * self.n_neurons, f"[{op}] a dense [T, B, N] array")
        dense = np.zeros((T, B, self.n_neurons), np.float32)
        t, b, k = np.nonzero(self._listed())
        dense[t, b, self.ids[t, b, k]] = entries[t, b, k]  # ids in a list are distinct
        return dense

    def _listed(self) -> np.ndarray:
        """[T, B, K] mask of the listed entries (spikes and gradient candidates)."""
        return np.arange(self.capacity)[None, None, :] < self.n_tot[:, :, None]

    @property
    def shape(self) -> tuple[int, int, int]:
        """(T, B, K)."""
        return self.ids.shape

    @property
    def capacity(self) -> int:
        """K, the most entries a list can hold."""
        return self.ids.shape[2]

    def _host_only(self, op: str) -> None:
        if self.device != "cpu":
            raise ValueError(f"[{op}] the spikes are in CUDA memory; copy ids, n_spk and n_tot to "
                             "the host first")

    def activity(self) -> float:
        """Measured activity: spikes per neuron per step, averaged over the batch."""
        self._host_only("SpikeTensor.activity")
        T, B, _ = self.ids.shape
        return float(self.n_spk.sum(dtype=np.int64)) / (T * B * self.n_neurons)

    __iter__ = None  # slicing is by steps only: iterating is refused, not emulated by indexing

    def __getitem__(self, steps: slice) -> "SpikeTensor":
        """``x[t0:t1]``: the lists of steps [t0, t1) (views of the arrays; at least one step), e.g.
        the chunks of a sequence that ``Sequential.forward(..., state=)`` runs one after another.
        Drop counts are not carried over."""
        if not isinstance(steps, slice) or steps.step not in (None, 1):
            raise TypeError(f"[SpikeTensor] index with a slice of steps x[t0:t1], got {steps!r:.40}")
        start, stop, _ = steps.indices(self.shape[0])
        if stop <= start:
            raise ValueError(f"[SpikeTensor] steps {steps.start}:{steps.stop} of {self.shape[0]} "
                             "select no step")
        return SpikeTensor(self.ids[start:stop], self.n_spk[start:stop], self.n_tot[start:stop],
                           n_neurons=self.n_neurons, validate=False)

    def __repr__(self) -> str:
        T, B, K = self.shape
        if self.device != "cpu":
            return f"SpikeTensor(T={T}, B={B}, K={K}, n_neurons={self.n_neurons}, device={self.device})"
        return (f"SpikeTensor(T={T}, B={B}, K={K}, n_neurons={self.n_neurons}, "
                f"spikes={int(self.n_spk.sum())}, dropped={self.dropped})")


def _float32_array(value, shape: tuple, op: str) -> np.ndarray:
    if not isinstance(value, np.ndarray) or value.dtype != np.float32:
        raise TypeError(f"[{op}] expected a float32 numpy array of shape {shape}, got "
                        f"{getattr(value, 'dtype', type(value).__name__)}")
    if value.shape != tuple(shape):
        raise ValueError(f"[{op}] expected shape {tuple(shape)}, got {value.shape}")
    return value
