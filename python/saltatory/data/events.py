"""Event datasets: per-sample event lists (time in seconds, unit id) binned into SpikeTensors.

Event-camera events (x, y, p, t), as tonic stores them, map to units as tonic's ToFrame lays out
a frame [P, H, W]:  unit = (p * H + y) * W + x,  time = t * time_scale (tonic: t in microseconds).
Audio events (x = channel, t, p) map to unit = x.  Binning: bin = floor(time / bin_width); events
at or after n_steps * bin_width, and spikes beyond the capacity of a list, are dropped and counted
(a seeded random subset is kept, so no unit range is favoured).
"""

from __future__ import annotations

import numpy as np

from ..spikes import SpikeTensor
from .._checks import integers

#: tonic's event dtype for cameras; audio datasets use (x, t, p) with x the channel.
CAMERA_EVENT_DTYPE = np.dtype([("x", "<i2"), ("y", "<i2"), ("t", "<i8"), ("p", "<i1")])


def events_to_units(events: np.ndarray, sensor_size, time_scale: float = 1e-6):
    """Tonic-style structured events -> (times in seconds float64, unit ids int64).

    ``sensor_size`` is (W, H, P) as in tonic (e.g. (34, 34, 2) for N-MNIST, (700, 1, 1) for SHD).
    Fields: x and t are required; y and p default to 0. Values outside the sensor, and x, y or p
    that are not integers, raise ValueError. ``time_scale`` converts t to seconds (default 1e-6:
    t in microseconds).
    """
    op = "events_to_units"
    if not isinstance(events, np.ndarray) or events.dtype.names is None:
        raise TypeError(f"[{op}] events must be a numpy structured array with fields x, t[, y, p]")
    missing = {"x", "t"} - set(events.dtype.names)
    if missing:
        raise ValueError(f"[{op}] events lack the field(s) {sorted(missing)}; have {events.dtype.names}")
    if len(sensor_size) != 3 or min(int(s) for s in sensor_size) <= 0:
        raise ValueError(f"[{op}] sensor_size must be three positive sizes (W, H, P), got {sensor_size}")
    width, height, polarities = (int(s) for s in sensor_size)
    fields = {}
    for name, size in (("x", width), ("y", height), ("p", polarities)):
        if name not in events.dtype.names:
            fields[name] = np.zeros(len(events), np.int64)
            continue
        fields[name] = integers(events[name], f"[{op}] field {name} of event", 0, size)
    times = events["t"].astype(np.float64) * time_scale
    if times.size and not (np.all(np.isfinite(times)) and times.min() >= 0):
        raise ValueError(f"[{op}] event times must be finite and non-negative")
    return times, (fields["p"] * height + fields["y"]) * width + fields["x"]


class EventDataset:
    """Labelled samples stored as events; ``spikes(indices)`` bins a batch into a SpikeTensor.

    times[i] (seconds) and units[i] (ids in [0, n_units)) are the events of sample i, labels[i]
    its class. Bins are ``bin_width`` seconds, ``n_steps`` of them. ``capacity`` (spikes per list)
    defaults to the largest list over the data set, so nothing is dropped; a smaller one keeps a
    seeded random subset and counts the rest.
    """

    def __init__(self, times, units, labels, *, n_units: int, n_steps: int, bin_width: float,
                 capacity: int | None = None):
        op = "EventDataset"
        self.labels = integers(labels, f"[{op}] label").astype(np.int32)
        if len(times) != len(self.labels) or len(units) != len(self.labels):
            raise ValueError(f"[{op}] got {len(times)} time arrays, {len(units)} unit arrays and "
                             f"{len(self.labels)} labels")
        if n_units <= 0 or n_steps <= 0 or not bin_width > 0:
            raise ValueError(f"[{op}] n_units, n_steps and bin_width must be positive")
        self.times = [np.ascontiguousarray(t, dtype=np.float64) for t in times]
        self.units = [integers(u, f"[{op}] sample {i}: unit id", 0, n_units) for i, u in enumerate(units)]
        for i, (t, u) in enumerate(zip(self.times, self.units)):
            if t.shape != u.shape or t.ndim != 1:
                raise ValueError(f"[{op}] sample {i}: times {t.shape} and units {u.shape} differ")
            if not np.all((t >= 0) & (t < np.inf)):
                raise ValueError(f"[{op}] sample {i}: event times must be finite and non-negative")
        self.n_units, self.n_steps, self.bin_width = int(n_units), int(n_steps), float(bin_width)
        self.capacity = self.largest_list() if capacity is None else int(capacity)
        if self.capacity <= 0:
            raise ValueError(f"[{op}] capacity must be positive, got {capacity}")

    def __len__(self) -> int:
        return len(self.labels)

    def largest_list(self) -> int:
        """The most distinct units any sample has in one bin (the capacity that drops nothing)."""
        largest = 1
        for t, u in zip(self.times, self.units):
            keep = t / self.bin_width < self.n_steps  # before the cast: far times would overflow it
            if keep.any():
                bins = np.floor(t[keep] / self.bin_width).astype(np.int64)
                pairs = np.unique(bins * self.n_units + u[keep])
                largest = max(largest, int(np.bincount(pairs // self.n_units).max()))
        return largest

    def spikes(self, indices, seed: int = 0) -> SpikeTensor:
        """The samples ``indices`` as one batch, in that order; ``.dropped`` counts lost events.
        ``seed`` draws the random subset a full list keeps."""
        indices = np.asarray(indices, dtype=np.int64)
        samples = np.repeat(np.arange(len(indices)), [len(self.units[i]) for i in indices])
        times = np.concatenate([self.times[i] for i in indices]) if len(indices) else np.zeros(0)
        units = np.concatenate([self.units[i] for i in indices]) if len(indices) else np.zeros(0, int)
        return SpikeTensor.from_events(times, units, samples=samples, batch_size=len(indices),
                                       bin_width=self.bin_width, n_steps=self.n_steps,
                                       n_neurons=self.n_units, capacity=self.capacity,
                                       overflow="random", seed=seed)

    def subset(self, indices) -> "EventDataset":
        """A dataset of the samples ``indices`` (same bins and capacity)."""
        return EventDataset([self.times[i] for i in indices], [self.units[i] for i in indices],
                            self.labels[np.asarray(indices, dtype=np.int64)], n_units=self.n_units,
                            n_steps=self.n_steps, bin_width=self.bin_width, capacity=self.capacity)


def from_tonic(dataset, sensor_size=None, *, n_steps: int, bin_width: float, capacity: int | None = None,
               time_scale: float = 1e-6, limit: int | None = None) -> EventDataset:
    """An EventDataset from ``dataset``, any sequence of (events, label) pairs with tonic-style
    structured events, e.g. a ``tonic.datasets`` object (whose ``sensor_size`` is used when not
    given). Events map to units as in ``events_to_units`` (with ``time_scale``); ``n_steps``,
    ``bin_width`` (seconds) and ``capacity`` are as for EventDataset. ``limit``: read at most
    this many samples (None: all)."""
    sensor_size = sensor_size if sensor_size is not None else getattr(dataset, "sensor_size", None)
    if sensor_size is None:
        raise ValueError("[from_tonic] give sensor_size (W, H, P): the dataset has no sensor_size")
    times, units, labels = [], [], []
    for i, (events, label) in enumerate(dataset):
        if limit is not None and i >= limit:
            break
        t, u = events_to_units(events, sensor_size, time_scale)
        times.append(t)
        units.append(u)
        labels.append(int(integers(label, f"[from_tonic] label of sample {i}")))
    width, height, polarities = (int(s) for s in sensor_size)
    return EventDataset(times, units, labels, n_units=width * height * polarities, n_steps=n_steps,
                        bin_width=bin_width, capacity=capacity)
