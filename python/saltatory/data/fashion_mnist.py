"""Fashion-MNIST reader for the IDX files of the Debian package ``dataset-fashion-mnist``.

IDX layout (all integers big-endian):

    bytes 0-1   0x00 0x00
    byte  2     element type: 0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32, 0x0D float32, 0x0E float64
    byte  3     number of dimensions n
    4*n bytes   dimension sizes d_0 .. d_{n-1} (uint32)
    data        d_0 * ... * d_{n-1} elements, row-major

Files may be plain or gzip-compressed (detected from the gzip magic 0x1f 0x8b).
"""

from __future__ import annotations

import gzip
import math
import os
import zlib

import numpy as np

from .._checks import check_memory, integers

DEFAULT_ROOT = "/usr/share/datasets/fashion-mnist"

_IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

_SPLIT_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}


def _read(stream, size: int, path: str) -> bytes:
    """Up to ``size`` bytes of a plain or gzip stream (a corrupted gzip stream raises ValueError)."""
    try:
        return stream.read(size)
    except (EOFError, OSError, zlib.error) as exc:
        raise ValueError(f"load_idx: {path}: corrupted or truncated gzip stream ({exc})") from exc


def load_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Parse an IDX file (optionally gzip-compressed) into a native-endian numpy array.

    Raises FileNotFoundError if ``path`` does not exist and ValueError if the header
    magic is wrong, the payload size does not match the header's dimensions, or the array
    the header declares would exceed ``saltatory.memory_limit()`` (checked before reading it).
    """
    path = os.fspath(path)
    with open(path, "rb") as raw:
        gzipped = raw.read(2) == b"\x1f\x8b"
        raw.seek(0)
        stream = gzip.GzipFile(fileobj=raw) if gzipped else raw
        data = _read(stream, 4, path)
        if len(data) < 4:
            raise ValueError(f"load_idx: {path}: file too short for an IDX header ({len(data)} bytes)")
        if data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
            raise ValueError(f"load_idx: {path}: bad IDX magic number 0x{data[:4].hex()}")
        dtype = _IDX_DTYPES[data[2]]
        ndim = data[3]
        dims = _read(stream, 4 * ndim, path)
        if len(dims) < 4 * ndim:
            raise ValueError(
                f"load_idx: {path}: truncated header, need {4 + 4 * ndim} bytes for {ndim} dimensions, "
                f"got {4 + len(dims)}"
            )
        shape = tuple(int(d) for d in np.frombuffer(dims, dtype=">u4"))
        expected = math.prod(shape) * dtype.itemsize
        check_memory(2 * expected, f"load_idx: {path}: the header's shape {shape}")  # bytes + array
        payload = _read(stream, expected + 1, path)  # one more byte: a longer payload is refused too
    if len(payload) != expected:
        actual = f"{len(payload)}" if len(payload) <= expected else "more"
        raise ValueError(
            f"load_idx: {path}: payload size mismatch, header shape {shape} needs {expected} bytes, "
            f"file has {actual}"
        )
    array = np.frombuffer(payload, dtype=dtype).reshape(shape)
    return array.astype(dtype.newbyteorder("="))


def load_fashion_mnist(
    root: str | os.PathLike[str] = DEFAULT_ROOT,
    split: str = "train",
) -> tuple[np.ndarray, np.ndarray]:
    """Load one Fashion-MNIST split: ``(images uint8 [S, 28, 28], labels int32 [S])``.

    ``root`` is the folder of the four IDX .gz files (default: where the Debian package puts
    them); ``split`` is "train" (60000 samples) or "test" (10000 samples).
    """
    if split not in _SPLIT_FILES:
        raise ValueError(f"load_fashion_mnist: split must be 'train' or 'test', got {split!r}")
    root = os.fspath(root)
    image_path, label_path = (os.path.join(root, name) for name in _SPLIT_FILES[split])
    for p in (image_path, label_path):
        if not os.path.isfile(p):
            raise FileNotFoundError(
                f"load_fashion_mnist: {p} not found; install the data with "
                f"`apt-get install dataset-fashion-mnist` or pass root= pointing at the IDX .gz files"
            )
    images = load_idx(image_path)
    labels = load_idx(label_path)
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (28, 28):
        raise ValueError(
            f"load_fashion_mnist: {image_path}: expected uint8 images [S, 28, 28], "
            f"got {images.dtype} {images.shape}"
        )
    if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
        raise ValueError(
            f"load_fashion_mnist: {label_path}: expected {images.shape[0]} labels, got shape {labels.shape}"
        )
    return images, integers(labels, f"load_fashion_mnist: {label_path}: label").astype(np.int32)
