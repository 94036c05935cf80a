"""Tests for saltatory.data: Randman generator, IDX / Fashion-MNIST reader, spike encoders."""

from __future__ import annotations

import gzip
import os
import struct
from pathlib import Path

import numpy as np
import pytest

import saltatory
from saltatory.data.encode import latency_encode, rate_encode
from saltatory.data.fashion_mnist import DEFAULT_ROOT, load_fashion_mnist, load_idx
from saltatory.data.randman import Randman, make_randman, train_test_split

# ----------------------------------------------------------------------------- randman

SMALL = dict(n_classes=3, n_units=20, n_steps=50, n_samples_per_class=40)


def test_randman_shapes_and_dtypes() -> None:
    spikes, labels = make_randman(**SMALL, seed=1)
    assert spikes.shape == (50, 3 * 40, 20)
    assert spikes.dtype == np.float32
    assert labels.shape == (120,)
    assert labels.dtype == np.int32
    assert set(np.unique(spikes)) <= {0.0, 1.0}
    assert np.array_equal(np.bincount(labels), [40, 40, 40])


@pytest.mark.parametrize("dim_manifold", [1, 3])
def test_randman_exactly_one_spike_per_unit_and_sample(dim_manifold: int) -> None:
    spikes, _ = make_randman(**SMALL, dim_manifold=dim_manifold, seed=2)
    assert np.array_equal(spikes.sum(axis=0), np.ones((120, 20), dtype=np.float32))


def test_randman_uses_whole_window() -> None:
    # Per-class min-max standardisation puts every unit's earliest spike in bin 0 and its
    # latest one in the last bin (t -> 1 - eps maps to n_steps - 1).
    spikes, labels = make_randman(**SMALL, seed=3, shuffle=False)
    first_bin = spikes.argmax(axis=0)  # [S, U]
    for k in range(3):
        cls = first_bin[labels == k]
        assert np.all(cls.min(axis=0) == 0)
        assert np.all(cls.max(axis=0) == 49)


def test_randman_deterministic_in_seed() -> None:
    a_spikes, a_labels = make_randman(**SMALL, seed=7)
    b_spikes, b_labels = make_randman(**SMALL, seed=7)
    c_spikes, _ = make_randman(**SMALL, seed=8)
    assert np.array_equal(a_spikes, b_spikes)
    assert np.array_equal(a_labels, b_labels)
    assert not np.array_equal(a_spikes, c_spikes)


def test_randman_shuffle_is_a_permutation() -> None:
    ordered, ordered_labels = make_randman(**SMALL, seed=4, shuffle=False)
    shuffled, shuffled_labels = make_randman(**SMALL, seed=4, shuffle=True)
    assert np.array_equal(ordered_labels, np.repeat(np.arange(3), 40))
    assert not np.array_equal(shuffled_labels, ordered_labels)
    # Same multiset of samples: sort samples by their spike-time vectors.
    def canon(spikes: np.ndarray, labels: np.ndarray) -> np.ndarray:
        rows = np.concatenate([labels[:, None], spikes.argmax(axis=0)], axis=1)
        return rows[np.lexsort(rows.T[::-1])]

    assert np.array_equal(canon(ordered, ordered_labels), canon(shuffled, shuffled_labels))


def test_randman_classes_differ() -> None:
    # Each class is its own manifold: leave-one-out 1-nearest-neighbour on spike-time
    # vectors is (near) perfect, far above chance (1/3).  A shuffled labelling is not.
    spikes, labels = make_randman(n_classes=3, n_units=50, n_steps=100, n_samples_per_class=200, seed=5)
    times = spikes.argmax(axis=0).astype(np.float64)
    dist = ((times[:, None, :] - times[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(dist, np.inf)
    nearest = dist.argmin(axis=1)
    assert np.mean(labels[nearest] == labels) > 0.95
    permuted = np.random.default_rng(0).permutation(labels)
    assert np.mean(permuted[nearest] == permuted) < 0.5


def test_randman_samples_lie_on_smooth_one_dim_manifold() -> None:
    # For dim_manifold=1, nearby intrinsic coordinates give nearby embeddings (smoothness),
    # and the embedding is not constant.
    rm = Randman(30, 1, alpha=2.0, rng=np.random.default_rng(0))
    x = np.linspace(0.0, 1.0, 2001)[:, None]
    y = rm.eval_manifold(x)
    step = np.abs(np.diff(y, axis=0)).max()
    spread = (y.max(axis=0) - y.min(axis=0)).min()
    assert spread > 0.0
    assert step < 0.05 * spread


def test_randman_embedding_is_product_over_manifold_dims() -> None:
    # y_i(x) = prod_d f_id(x_d): on a grid over a 2-d manifold each unit's values form a
    # rank-1 matrix.
    rm = Randman(8, 2, alpha=2.0, rng=np.random.default_rng(2))
    g = np.linspace(0.0, 1.0, 25)
    x = np.stack(np.meshgrid(g, g, indexing="ij"), axis=-1).reshape(-1, 2)
    y = rm.eval_manifold(x).reshape(25, 25, 8)
    for i in range(8):
        sv = np.linalg.svd(y[:, :, i], compute_uv=False)
        assert sv[0] > 0 and sv[1] < 1e-10 * sv[0]


def test_randman_smoothness_increases_with_alpha() -> None:
    x = np.linspace(0.0, 1.0, 4001)[:, None]

    def roughness(alpha: float) -> float:
        y = Randman(50, 1, alpha=alpha, rng=np.random.default_rng(1)).eval_manifold(x)
        y = (y - y.min(0)) / (y.max(0) - y.min(0))
        return float(np.abs(np.diff(y, n=2, axis=0)).mean())

    assert roughness(4.0) < roughness(3.0) < roughness(2.0) < roughness(1.5)


def test_randman_manifolds_independent_of_sample_count() -> None:
    # The class manifolds depend on the seed only, so unit time-orderings (ranked by the
    # per-class mean spike time) agree between a small and a large draw.
    small, small_labels = make_randman(n_classes=2, n_units=30, n_steps=1000, n_samples_per_class=400, seed=9)
    large, large_labels = make_randman(n_classes=2, n_units=30, n_steps=1000, n_samples_per_class=800, seed=9)
    for k in range(2):
        m_small = small.argmax(axis=0)[small_labels == k].mean(axis=0)
        m_large = large.argmax(axis=0)[large_labels == k].mean(axis=0)
        assert np.corrcoef(m_small, m_large)[0, 1] > 0.95


@pytest.mark.parametrize(
    "kwargs",
    [dict(n_classes=0), dict(n_units=-1), dict(n_steps=0), dict(n_samples_per_class=2.5), dict(alpha=0.0)],
)
def test_randman_rejects_bad_arguments(kwargs: dict) -> None:
    with pytest.raises(ValueError, match="make_randman"):
        make_randman(**kwargs)


def test_train_test_split() -> None:
    spikes, labels = make_randman(**SMALL, seed=6)
    tr_x, tr_y, te_x, te_y = train_test_split(spikes, labels, test_fraction=0.25, seed=0)
    assert tr_x.shape == (50, 90, 20) and te_x.shape == (50, 30, 20)
    assert tr_y.shape == (90,) and te_y.shape == (30,)
    joined = np.concatenate([tr_x, te_x], axis=1)
    joined_labels = np.concatenate([tr_y, te_y])
    assert sorted(map(bytes, np.moveaxis(joined, 1, 0).reshape(120, -1))) == sorted(
        map(bytes, np.moveaxis(spikes, 1, 0).reshape(120, -1))
    )
    assert np.array_equal(np.sort(joined_labels), np.sort(labels))
    with pytest.raises(ValueError, match="test_fraction"):
        train_test_split(spikes, labels, test_fraction=1.0)


# ----------------------------------------------------------------------------- IDX reader


def _idx_bytes(array: np.ndarray, type_code: int) -> bytes:
    header = bytes([0, 0, type_code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def _write_gz(path: Path, payload: bytes) -> Path:
    with gzip.open(path, "wb") as f:
        f.write(payload)
    return path


def test_load_idx_valid_uint8_gz(tmp_path: Path) -> None:
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    out = load_idx(_write_gz(tmp_path / "img.gz", _idx_bytes(images, 0x08)))
    assert out.dtype == np.uint8
    assert np.array_equal(out, images)


def test_load_idx_valid_plain_int32_big_endian(tmp_path: Path) -> None:
    values = np.array([1, -2, 70000, -(2**31)], dtype=np.int32)
    path = tmp_path / "vals.idx"
    path.write_bytes(_idx_bytes(values, 0x0C))
    out = load_idx(path)
    assert out.dtype == np.dtype(np.int32)
    assert out.dtype.isnative
    assert np.array_equal(out, values)


def test_load_idx_wrong_magic(tmp_path: Path) -> None:
    payload = bytearray(_idx_bytes(np.zeros((2, 2), dtype=np.uint8), 0x08))
    payload[0] = 0x01
    with pytest.raises(ValueError, match="magic"):
        load_idx(_write_gz(tmp_path / "bad1.gz", bytes(payload)))
    payload[0] = 0x00
    payload[2] = 0x42  # unknown element type
    with pytest.raises(ValueError, match="magic"):
        load_idx(_write_gz(tmp_path / "bad2.gz", bytes(payload)))


def test_load_idx_truncated_payload(tmp_path: Path) -> None:
    payload = _idx_bytes(np.zeros((10, 28, 28), dtype=np.uint8), 0x08)
    with pytest.raises(ValueError, match="size mismatch"):
        load_idx(_write_gz(tmp_path / "short.gz", payload[:-1]))
    with pytest.raises(ValueError, match="size mismatch"):
        load_idx(_write_gz(tmp_path / "long.gz", payload + b"\x00"))


def test_load_idx_truncated_header(tmp_path: Path) -> None:
    payload = _idx_bytes(np.zeros((10, 28, 28), dtype=np.uint8), 0x08)
    with pytest.raises(ValueError, match="header"):
        load_idx(_write_gz(tmp_path / "hdr.gz", payload[:9]))
    with pytest.raises(ValueError, match="header"):
        load_idx(_write_gz(tmp_path / "tiny.gz", payload[:2]))


def test_load_idx_truncated_gzip_stream(tmp_path: Path) -> None:
    path = _write_gz(tmp_path / "cut.gz", _idx_bytes(np.arange(1000, dtype=np.uint8) % 7, 0x08))
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ValueError, match="gzip"):
        load_idx(path)


def test_load_fashion_mnist_from_synthetic_root(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(5, 28, 28), dtype=np.uint8)
    labels = np.array([0, 9, 3, 3, 1], dtype=np.uint8)
    _write_gz(tmp_path / "t10k-images-idx3-ubyte.gz", _idx_bytes(images, 0x08))
    _write_gz(tmp_path / "t10k-labels-idx1-ubyte.gz", _idx_bytes(labels, 0x08))
    x, y = load_fashion_mnist(tmp_path, split="test")
    assert x.dtype == np.uint8 and np.array_equal(x, images)
    assert y.dtype == np.int32 and np.array_equal(y, labels)

    _write_gz(tmp_path / "t10k-labels-idx1-ubyte.gz", _idx_bytes(labels[:4], 0x08))
    with pytest.raises(ValueError, match="labels"):
        load_fashion_mnist(tmp_path, split="test")


def test_load_idx_refuses_declared_arrays_above_the_memory_limit(tmp_path: Path) -> None:
    header = bytes([0, 0, 0x08, 3]) + struct.pack(">3I", 1000, 1000, 100)  # 100 MB of uint8
    path = tmp_path / "bomb.gz"
    with gzip.open(path, "wb", compresslevel=1) as f:  # 100 MB of zeros in about 100 KB
        f.write(header)
        for _ in range(100):
            f.write(bytes(1_000_000))
    assert os.path.getsize(path) < 1 << 20
    saltatory.set_memory_limit(64 << 20)
    try:
        with pytest.raises(ValueError, match=r"load_idx: .*bomb.gz: the header's shape \(1000, 1000, 100\) "
                                             r"would need 200000000 bytes, above the memory limit"):
            load_idx(path)
        small = tmp_path / "small.idx"
        small.write_bytes(_idx_bytes(np.arange(6, dtype=np.uint8).reshape(2, 3), 0x08))
        assert load_idx(small).tolist() == [[0, 1, 2], [3, 4, 5]]
    finally:
        saltatory.set_memory_limit(0)
    huge = tmp_path / "huge.idx"  # 16 bytes declaring 2^64 bytes: refused unread under any limit
    huge.write_bytes(bytes([0, 0, 0x08, 2]) + struct.pack(">2I", 2**32 - 1, 2**32 - 1) + bytes(4))
    with pytest.raises(ValueError, match="above the memory limit"):
        load_idx(huge)


@pytest.mark.parametrize("labels,type_code,match", [
    (np.array([0.0, 2.5]), 0x0E, "label 1 is 2.5"),
    (np.array([3, -1], np.int32), 0x0C, "label 1 is -1"),
    (np.array([np.nan, 1.0]), 0x0E, "label 0 is nan"),
])
def test_load_fashion_mnist_refuses_non_integer_labels(tmp_path: Path, labels, type_code, match: str) -> None:
    _write_gz(tmp_path / "t10k-images-idx3-ubyte.gz", _idx_bytes(np.zeros((2, 28, 28), np.uint8), 0x08))
    _write_gz(tmp_path / "t10k-labels-idx1-ubyte.gz", _idx_bytes(labels, type_code))
    with pytest.raises(ValueError, match=rf"load_fashion_mnist: .*t10k-labels-idx1-ubyte.gz: {match}, not an integer"):
        load_fashion_mnist(tmp_path, split="test")


def test_load_fashion_mnist_missing_files(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
        load_fashion_mnist(tmp_path, split="train")
    with pytest.raises(ValueError, match="split"):
        load_fashion_mnist(tmp_path, split="validation")


@pytest.mark.skipif(
    not os.path.isdir(DEFAULT_ROOT),
    reason=f"{DEFAULT_ROOT} absent (apt-get install dataset-fashion-mnist)",
)
@pytest.mark.parametrize("split,n", [("train", 60000), ("test", 10000)])
def test_load_fashion_mnist_real_files(split: str, n: int) -> None:
    images, labels = load_fashion_mnist(split=split)
    assert images.shape == (n, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (n,) and labels.dtype == np.int32
    # Fashion-MNIST is balanced over its 10 classes and uses the full intensity range.
    assert np.array_equal(np.bincount(labels), np.full(10, n // 10))
    assert images.min() == 0 and images.max() == 255


# ----------------------------------------------------------------------------- encoders


@pytest.mark.parametrize("linear", [False, True])
def test_latency_monotonic_threshold_and_single_spike(linear: bool) -> None:
    levels = np.arange(256, dtype=np.uint8)
    images = np.stack([levels.reshape(16, 16), levels[::-1].reshape(16, 16)])  # [2, 16, 16]
    spikes = latency_encode(images, n_steps=100, threshold=0.2, linear=linear)
    assert spikes.shape == (100, 2, 256) and spikes.dtype == np.float32
    counts = spikes.sum(axis=0)
    assert counts.max() == 1.0

    x = levels / 255.0
    fired = counts[0] == 1
    assert not np.any(fired[x <= 0.2])  # at or below threshold: silent
    assert fired[-1]  # full intensity always spikes
    t = spikes[:, 0, :].argmax(axis=0)[fired]
    assert np.all(np.diff(t) <= 0)  # brighter -> earlier (non-increasing)
    assert t[0] > t[-1]  # and genuinely varying
    # Second sample is the mirrored image: same code, reversed pixel order.
    assert np.array_equal(spikes[:, 1, ::-1], spikes[:, 0, :])


def test_latency_log_formula_values() -> None:
    x = np.array([[1.0, 0.5, 0.25, 0.2001]])
    spikes = latency_encode(x, n_steps=100, tau=20.0, threshold=0.2)
    expected = np.floor(20.0 * np.log(x[0, :3] / (x[0, :3] - 0.2))).astype(int)  # [4, 10, 32]
    assert np.array_equal(spikes[:, 0, :3].argmax(axis=0), expected)
    assert spikes[:, 0, 3].sum() == 0  # t = 20*ln(2001) ~ 152 falls outside the window


def test_latency_linear_spans_window() -> None:
    x = np.array([[1.0, 0.6, 0.2 + 1e-9]])
    spikes = latency_encode(x, n_steps=11, threshold=0.2, linear=True)
    assert list(spikes[:, 0, :].argmax(axis=0)) == [0, 5, 9]


def test_latency_uint8_matches_float_and_flattens() -> None:
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, size=(3, 4, 5, 2), dtype=np.uint8)
    a = latency_encode(img, n_steps=60)
    b = latency_encode(img.astype(np.float32) / 255.0, n_steps=60)
    assert a.shape == (60, 3, 40)
    assert np.array_equal(a, b)


def test_rate_encode_mean_rate() -> None:
    intensities = np.array([0.0, 0.1, 0.5, 0.9, 1.0])
    images = np.tile(intensities, (200, 1))  # [200, 5]
    spikes = rate_encode(images, n_steps=500, max_rate=1.0, seed=3)
    assert spikes.shape == (500, 200, 5) and spikes.dtype == np.float32
    rate = spikes.mean(axis=(0, 1))
    np.testing.assert_allclose(rate, intensities, atol=0.01)
    assert rate[0] == 0.0 and rate[-1] == 1.0

    half = rate_encode(images, n_steps=500, max_rate=0.5, seed=3).mean(axis=(0, 1))
    np.testing.assert_allclose(half, intensities * 0.5, atol=0.01)


def test_rate_encode_uint8_and_seed() -> None:
    img = np.full((50, 2, 2), 128, dtype=np.uint8)
    a = rate_encode(img, n_steps=100, seed=1)
    assert a.shape == (100, 50, 4)
    assert abs(a.mean() - 128 / 255) < 0.02
    assert np.array_equal(a, rate_encode(img, n_steps=100, seed=1))
    assert not np.array_equal(a, rate_encode(img, n_steps=100, seed=2))


@pytest.mark.parametrize("encoder", [latency_encode, rate_encode])
@pytest.mark.parametrize(
    "images,n_steps,match",
    [
        (np.zeros((2, 3), dtype=np.int64), 10, "dtype"),
        (np.zeros((2, 3), dtype=bool), 10, "dtype"),
        (np.zeros(5, dtype=np.uint8), 10, "ndim"),
        (np.full((2, 3), 1.5), 10, r"\[0, 1\]"),
        (np.full((2, 3), np.nan), 10, "NaN"),
        (np.zeros((2, 3), dtype=np.uint8), 0, "n_steps"),
        (np.zeros((2, 3), dtype=np.uint8), 2.0, "n_steps"),
    ],
)
def test_encoders_reject_bad_input(encoder, images: np.ndarray, n_steps, match: str) -> None:
    with pytest.raises(ValueError, match=rf"{encoder.__name__}.*{match}"):
        encoder(images, n_steps)


def test_encoders_reject_bad_parameters() -> None:
    img = np.zeros((2, 3), dtype=np.uint8)
    with pytest.raises(ValueError, match="latency_encode.*threshold"):
        latency_encode(img, 10, threshold=1.0)
    with pytest.raises(ValueError, match="latency_encode.*tau"):
        latency_encode(img, 10, tau=-1.0)
    with pytest.raises(ValueError, match="rate_encode.*max_rate"):
        rate_encode(img, 10, max_rate=1.5)
