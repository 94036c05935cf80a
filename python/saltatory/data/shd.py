"""Spiking Heidelberg Digits / Spiking Speech Commands HDF5 files (Cramer et al. 2020), via h5py.

Layout: ``spikes/times`` (one float array of seconds per sample), ``spikes/units`` (one integer
array of channel ids per sample), ``labels`` (one integer per sample). SHD and SSC have 700
channels; files written by ``write_shd`` also carry an ``n_units`` attribute.
"""

from __future__ import annotations

import math
import os
import struct

import numpy as np

from .._checks import check_memory, integers
from .events import EventDataset

SHD_UNITS = 700
_SAMPLE_BYTES = 256  # Python and numpy objects of one sample's array, as read and as converted


def _h5py():
    try:
        import h5py
    except ImportError as exc:
        raise ImportError("saltatory.data: SHD files need h5py: pip install h5py "
                          "(or pip install saltatory[train])") from exc
    return h5py


class _CorruptFile(ValueError):
    """A corruption found by Saltatory's own checks (its message is already complete)."""


_VLEN_ELEMENT = np.dtype([("length", "<u4"), ("collection", "<u8"), ("index", "<u4")])


def _check_global_heaps(path: str, f, h5py) -> None:
    """Checks the HDF5 global-heap objects that hold the vlen samples of contiguous datasets and
    raises _CorruptFile where libhdf5 would loop forever (a free-space record of size 0) or a
    sample is missing from its heap. Reads only the vlen elements and the collections they use.

    Layout (HDF5 file format spec, III.E): a vlen element is (length u32, collection address u64,
    object index u32); a collection is "GCOL", version, 3 reserved bytes, its size (u64), then
    objects of (index u16, reference count u16, 4 reserved bytes, size u64, data padded to 8),
    ending at the free-space object (index 0)."""
    file_size = os.path.getsize(path)
    collections: dict[int, dict[int, int]] = {}
    with open(path, "rb") as raw_file:

        def read(offset: int, size: int, what: str) -> bytes:
            if offset + size > file_size:
                raise _CorruptFile(f"read_shd: {path}: {what} runs past the end of the file")
            raw_file.seek(offset)
            return raw_file.read(size)

        def objects(address: int) -> dict[int, int]:
            """Index -> size of a collection's objects, walked as libhdf5 walks them (H5HGcache.c)."""
            if address not in collections:
                header = read(address, 16, f"the vlen heap at byte {address}")
                if header[:4] != b"GCOL":
                    raise _CorruptFile(f"read_shd: {path}: no vlen heap at byte {address} "
                                       f"(corrupted file)")
                total = struct.unpack_from("<Q", header, 8)[0]
                body = read(address + 16, max(total - 16, 0), f"the vlen heap at byte {address}")
                found, position = {}, 0
                while position + 16 <= len(body):
                    index, _, size = struct.unpack_from("<HH4xQ", body, position)
                    if index == 0 and size == 0:  # libhdf5 would never advance past this record
                        raise _CorruptFile(f"read_shd: {path}: empty free-space record in the vlen "
                                           f"heap at byte {address + 16 + position} (corrupted file)")
                    if index:
                        found[index] = size
                    position += size if index == 0 else 16 + (size + 7) // 8 * 8
                collections[address] = found
            return collections[address]

        for key in ("spikes/times", "spikes/units"):
            dataset = f[key]
            offset, base = dataset.id.get_offset(), h5py.check_vlen_dtype(dataset.dtype)
            if offset is None or base is None:  # chunked, compressed or not vlen: left to libhdf5
                continue
            count = math.prod(dataset.shape)
            elements = np.frombuffer(read(offset, _VLEN_ELEMENT.itemsize * count, key), _VLEN_ELEMENT)
            for i in np.flatnonzero(elements["length"]):
                length, address, index = (int(v) for v in elements[i])
                if objects(address).get(index, -1) < length * base.itemsize:
                    raise _CorruptFile(f"read_shd: {path}: sample {i} of {key} is missing from its "
                                       f"vlen heap (corrupted file)")


def _check_vlen_kinds(path: str, f, h5py) -> None:
    """libhdf5 accepts a variable-length datatype whose kind (the low four bits of its first class
    byte) is neither a sequence (0) nor a string (1), and then crashes converting its data (a
    segfault, found by fuzzing): refuse the spike datasets' types unless they are sequences."""
    for key in ("spikes/times", "spikes/units"):
        datatype = f[key].id.get_type()
        if datatype.get_class() == h5py.h5t.VLEN and datatype.encode()[3] & 0x0F != 0:
            raise ValueError(f"read_shd: {path}: {key} has a variable-length datatype of unknown kind "
                             f"{datatype.encode()[3] & 0x0F} (corrupted file)")


def _check_sizes(path: str, f) -> None:
    """Refuses datasets that are not one-dimensional, or whose reading would exceed the memory
    limit: 8 bytes a label, _SAMPLE_BYTES a sample, and the spike data, which the vlen heaps hold
    within the file (at most 9 bytes in memory per byte of file: a uint8 and its int64 copy)."""
    shapes = {key: f[key].shape for key in ("spikes/times", "spikes/units", "labels")}
    for key, shape in shapes.items():
        if len(shape) != 1:
            raise ValueError(f"read_shd: {path}: {key} must be one-dimensional, got shape {shape}")
    samples = shapes["spikes/times"][0] + shapes["spikes/units"][0]
    check_memory(8 * shapes["labels"][0] + _SAMPLE_BYTES * samples + 9 * os.path.getsize(path),
                 f"read_shd: {path}")


def read_shd(path) -> tuple[list[np.ndarray], list[np.ndarray], np.ndarray, int]:
    """(times, units, labels, n_units) of the SHD-layout file ``path``; malformed files raise
    ValueError, among them labels and unit ids that are not integers (a float 3.5, a label of
    2^40), unit ids outside [0, n_units), and files whose arrays would exceed
    ``saltatory.memory_limit()``."""
    h5py = _h5py()
    path = os.fspath(path)
    # h5py reports corruption as OSError, KeyError, TypeError, RuntimeError or ValueError
    corrupt = (OSError, KeyError, TypeError, RuntimeError, ValueError, AttributeError, IndexError)
    if not os.path.exists(path):
        raise FileNotFoundError(f"read_shd: {path} not found")
    try:
        f = h5py.File(path, "r")
    except corrupt as exc:
        raise ValueError(f"read_shd: {path} is not a readable HDF5 file ({exc})") from exc
    try:
        with f:
            missing = [key for key in ("spikes/times", "spikes/units", "labels") if key not in f]
            if not missing:
                _check_sizes(path, f)
                _check_vlen_kinds(path, f, h5py)
                _check_global_heaps(path, f, h5py)
                times = [np.asarray(t, dtype=np.float64) for t in f["spikes/times"]]
                units = [np.asarray(u) for u in f["spikes/units"]]
                labels = np.asarray(f["labels"])
                n_units = np.asarray(f.attrs.get("n_units", SHD_UNITS))
    except _CorruptFile:
        raise
    except corrupt as exc:
        raise ValueError(f"read_shd: {path}: unreadable or corrupted data ({exc})") from exc
    if missing:
        raise ValueError(f"read_shd: {path} has no '{missing[0]}' dataset (not an SHD-layout file)")
    if labels.ndim != 1 or any(t.ndim != 1 for t in times) or any(u.ndim != 1 for u in units):
        raise ValueError(f"read_shd: {path}: times, units and labels must be one-dimensional per sample")
    if not len(times) == len(units) == len(labels):
        raise ValueError(f"read_shd: {path}: {len(times)} time arrays, {len(units)} unit arrays and "
                         f"{len(labels)} labels")
    if n_units.ndim != 0:
        raise ValueError(f"read_shd: {path}: the n_units attribute must be one integer, got {n_units}")
    n_units = int(integers(n_units, f"read_shd: {path}: n_units", 1))
    labels = integers(labels, f"read_shd: {path}: label")
    units = [integers(u, f"read_shd: {path}: sample {i} unit", 0, n_units) for i, u in enumerate(units)]
    return times, units, labels, n_units


def write_shd(path, times, units, labels, n_units: int = SHD_UNITS, **attrs) -> None:
    """Writes samples to ``path`` in the SHD layout: ``times`` (per sample, seconds, as float32),
    ``units`` (per sample, channel ids in [0, n_units), as uint16) and ``labels`` (uint16), with
    ``n_units`` and any further keyword ``attrs`` as file attributes."""
    h5py = _h5py()
    if not len(times) == len(units) == len(labels):
        raise ValueError("write_shd: times, units and labels need one entry per sample")
    with h5py.File(os.fspath(path), "w") as f:
        for key, arrays, dtype in (("spikes/times", times, np.float32), ("spikes/units", units, np.uint16)):
            column = np.empty(len(arrays), dtype=object)
            for i, a in enumerate(arrays):  # element-wise: equal lengths must not make a 2-D array
                column[i] = np.asarray(a, dtype)
            f.create_dataset(key, data=column, dtype=h5py.vlen_dtype(np.dtype(dtype)))
        f.create_dataset("labels", data=np.asarray(labels, np.uint16))
        f.attrs["n_units"] = int(n_units)
        for key, value in attrs.items():
            f.attrs[key] = value


def load_shd(path, *, n_steps: int = 100, bin_width: float = 1e-2, capacity: int | None = None,
             limit: int | None = None) -> EventDataset:
    """The SHD-layout file ``path`` as an EventDataset: ``n_steps`` bins of ``bin_width`` seconds
    (default 100 bins of 10 ms = 1 s), lists of ``capacity`` (default: the largest, nothing
    dropped). ``limit``: the first this many samples (None: all)."""
    times, units, labels, n_units = read_shd(path)
    if limit is not None:
        times, units, labels = times[:limit], units[:limit], labels[:limit]
    return EventDataset(times, units, labels, n_units=n_units, n_steps=n_steps, bin_width=bin_width,
                        capacity=capacity)
