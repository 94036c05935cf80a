"""N-MNIST reader (Orchard et al. 2015): the original binary format, ``.bin`` or ``.bs2``.

Each event is 5 bytes: byte 0 = x, byte 1 = y, bit 7 of byte 2 = polarity, the other 23 bits of
bytes 2-4 (big-endian) = timestamp in microseconds. An event with y = 240 is a timestamp-overflow
marker: every later timestamp gains 2^13 (as in the dataset's own Matlab reader and in tonic).
Sensor 34 x 34 x 2, so 2312 units: unit = (p * 34 + y) * 34 + x.

Folder layouts: the official ``Train/<digit>/<n>.bin`` tree, or a flat folder of ``<n>.bs2``
files with a list file of ``sample<TAB>class`` lines (as in slayerPytorch's N-MNIST subset).
"""

from __future__ import annotations

import os

import numpy as np

from .._checks import check_memory
from .events import CAMERA_EVENT_DTYPE, EventDataset, events_to_units

SENSOR_SIZE = (34, 34, 2)
_OVERFLOW_MARKER = 240
_OVERFLOW_STEP = 1 << 13
_EVENT_BYTES = 128  # peak memory per 5-byte event while decoding (the bytes, int64 columns, events)


def read_nmnist_events(path) -> np.ndarray:
    """The recording at ``path`` as tonic-style structured events (x, y, t in microseconds, p),
    CAMERA_EVENT_DTYPE. Files whose decoding would need more than ``saltatory.memory_limit()``
    bytes raise ValueError unread."""
    path = os.fspath(path)
    check_memory(os.path.getsize(path) // 5 * _EVENT_BYTES, f"read_nmnist_events: {path}")
    raw = np.fromfile(path, dtype=np.uint8)
    if raw.size % 5:
        raise ValueError(f"read_nmnist_events: {path}: {raw.size} bytes is not a whole number of "
                         f"5-byte events (truncated file?)")
    raw = raw.reshape(-1, 5).astype(np.int64)
    overflow = raw[:, 1] == _OVERFLOW_MARKER
    stamps = ((raw[:, 2] & 0x7F) << 16) | (raw[:, 3] << 8) | raw[:, 4]
    stamps += _OVERFLOW_STEP * np.cumsum(overflow)
    real = ~overflow
    x, y = raw[real, 0], raw[real, 1]
    if x.size and (x.max() >= SENSOR_SIZE[0] or y.max() >= SENSOR_SIZE[1]):
        raise ValueError(f"read_nmnist_events: {path}: pixel ({x.max()}, {y.max()}) is outside the "
                         f"34 x 34 sensor (not an N-MNIST file?)")
    events = np.empty(int(real.sum()), CAMERA_EVENT_DTYPE)
    events["x"], events["y"], events["t"], events["p"] = x, y, stamps[real], raw[real, 2] >> 7
    return events


def write_nmnist_events(path, events: np.ndarray) -> None:
    """Writes ``events`` (x, y, t < 2^23 microseconds, p) to ``path`` in the 5-byte N-MNIST
    format."""
    t = events["t"].astype(np.int64)
    if t.size and (t.min() < 0 or t.max() >= 1 << 23):
        raise ValueError("write_nmnist_events: timestamps must lie in [0, 2^23) microseconds")
    raw = np.empty((len(events), 5), np.uint8)
    raw[:, 0], raw[:, 1] = events["x"], events["y"]
    raw[:, 2] = (events["p"].astype(np.int64) << 7) | (t >> 16)
    raw[:, 3], raw[:, 4] = (t >> 8) & 0xFF, t & 0xFF
    raw.tofile(os.fspath(path))


def _label(digits: str, where: str) -> int:
    """The class a folder name or list-file field of decimal digits gives, refused at 2^31 and above."""
    if int(digits) >= 2**31:
        raise ValueError(f"load_nmnist: {where}: class {digits} is not an integer in [0, 2^31)")
    return int(digits)


def _listed_samples(root: str, split: str) -> tuple[list[str], list[int]]:
    """(files, labels) of a split: a list file <root>/<split> or <root>/<split>*.txt, or the
    folder tree <root>/<Split>/<digit>/*.bin."""
    for folder in (split, split.capitalize()):
        tree = os.path.join(root, folder)
        if os.path.isdir(tree):
            files, labels = [], []
            for digit in sorted(d for d in os.listdir(tree) if d.isdecimal()):
                label = _label(digit, os.path.join(tree, digit))
                for name in sorted(os.listdir(os.path.join(tree, digit))):
                    if name.endswith((".bin", ".bs2")):
                        files.append(os.path.join(tree, digit, name))
                        labels.append(label)
            return files, labels
    candidates = [os.path.join(root, split)] + sorted(
        os.path.join(root, n) for n in os.listdir(root) if n.startswith(split) and n.endswith(".txt"))
    list_file = next((c for c in candidates if os.path.isfile(c)), None)
    if list_file is None:
        raise FileNotFoundError(f"load_nmnist: {root} has neither a {split}/ folder tree nor a "
                                f"{split}*.txt list file")
    files, labels = [], []
    with open(list_file) as f:
        for number, line in enumerate(f, 1):
            if not line.strip() or line.startswith("#"):
                continue
            fields = line.split()
            if len(fields) != 2 or not fields[0].isdecimal() or not fields[1].isdecimal():
                raise ValueError(f"load_nmnist: {list_file}:{number}: expected 'sample<TAB>class', "
                                 f"got {line.strip()!r}")
            stem = os.path.join(root, fields[0])
            path = next((stem + ext for ext in (".bs2", ".bin") if os.path.isfile(stem + ext)), None)
            if path is None:
                raise FileNotFoundError(f"load_nmnist: {list_file}:{number}: no {stem}.bs2 or .bin")
            files.append(path)
            labels.append(_label(fields[1], f"{list_file}:{number}"))
    return files, labels


def load_nmnist(root, split: str = "train", *, n_steps: int = 100, bin_width: float = 3e-3,
                capacity: int | None = None, limit: int | None = None) -> EventDataset:
    """An N-MNIST split (e.g. "train" or "test") of the folder ``root`` (either layout of the module
    docstring) as an EventDataset of 2312 units: ``n_steps`` bins of ``bin_width`` seconds
    (default 100 bins of 3 ms = 300 ms), lists of ``capacity`` (default: the largest, nothing
    dropped). ``limit``: the first this many samples (None: all)."""
    files, labels = _listed_samples(os.fspath(root), split)
    if limit is not None:
        files, labels = files[:limit], labels[:limit]
    times, units = [], []
    for path in files:
        t, u = events_to_units(read_nmnist_events(path), SENSOR_SIZE)
        times.append(t)
        units.append(u)
    return EventDataset(times, units, labels, n_units=int(np.prod(SENSOR_SIZE)), n_steps=n_steps,
                        bin_width=bin_width, capacity=capacity)
