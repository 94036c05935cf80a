"""Event readers (N-MNIST, SHD, tonic arrays), the audio cochlea, FSDD and the batching loader.

Each format is tested on tiny files this test writes itself; the real data in ../shared/data is
used where present and skipped with a message otherwise.
"""

from __future__ import annotations

import os
import subprocess
import sys
import wave
from pathlib import Path

import numpy as np
import pytest

import saltatory
from saltatory.data import (CAMERA_EVENT_DTYPE, Cochlea, DenseDataset, EventDataset, ImageDataset,
                            Loader, events_to_units, from_tonic, fsdd_files, fsdd_to_shd, load_fsdd,
                            load_nmnist, load_shd, read_nmnist_events, read_shd, read_wav,
                            write_nmnist_events, write_shd)

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"


@pytest.fixture
def small_memory_limit():
    saltatory.set_memory_limit(64 << 20)
    try:
        yield 64 << 20
    finally:
        saltatory.set_memory_limit(0)


def _camera_events(rows) -> np.ndarray:
    rows = list(rows)
    events = np.zeros(len(rows), CAMERA_EVENT_DTYPE)
    for i, (x, y, t, p) in enumerate(rows):
        events[i] = (x, y, t, p)
    return events


# --- N-MNIST ---------------------------------------------------------------------------------

def test_nmnist_bytes_decode_by_hand(tmp_path: Path) -> None:
    # x=3, y=7, p=1, t=0x012345 us; then an overflow marker (y=240); then x=33, y=0, p=0, t=5
    raw = bytes([3, 7, 0x80 | 0x01, 0x23, 0x45, 0, 240, 0, 0, 0, 33, 0, 0x00, 0x00, 0x05])
    path = tmp_path / "1.bs2"
    path.write_bytes(raw)
    events = read_nmnist_events(path)
    assert events.tolist() == [(3, 7, 0x012345, 1), (33, 0, 5 + (1 << 13), 0)]
    times, units = events_to_units(events, (34, 34, 2))
    assert units.tolist() == [(1 * 34 + 7) * 34 + 3, 33]
    np.testing.assert_allclose(times, [0x012345 * 1e-6, (5 + 8192) * 1e-6])


def test_nmnist_write_read_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    events = _camera_events(zip(rng.integers(0, 34, 200), rng.integers(0, 34, 200),
                                np.sort(rng.integers(0, 1 << 23, 200)), rng.integers(0, 2, 200)))
    write_nmnist_events(tmp_path / "a.bin", events)
    assert os.path.getsize(tmp_path / "a.bin") == 5 * 200
    np.testing.assert_array_equal(read_nmnist_events(tmp_path / "a.bin"), events)


def test_nmnist_rejects_truncated_and_foreign_files(tmp_path: Path) -> None:
    (tmp_path / "short.bs2").write_bytes(bytes(7))
    with pytest.raises(ValueError, match="5-byte events"):
        read_nmnist_events(tmp_path / "short.bs2")
    (tmp_path / "wide.bs2").write_bytes(bytes([200, 3, 0, 0, 1]))
    with pytest.raises(ValueError, match="outside the 34 x 34 sensor"):
        read_nmnist_events(tmp_path / "wide.bs2")


def _write_nmnist_folder(root: Path, labels: dict[int, int]) -> None:
    root.mkdir(exist_ok=True)
    for sample, label in labels.items():
        # one event per sample at pixel (label, label), 1 ms in
        write_nmnist_events(root / f"{sample}.bs2", _camera_events([(label, label, 1000, 1)]))
    (root / "train1K.txt").write_text("#sample #class\n" + "".join(f"{s}\t{c}\n" for s, c in labels.items()))


def test_load_nmnist_list_file_and_folder_tree(tmp_path: Path) -> None:
    _write_nmnist_folder(tmp_path / "flat", {1: 4, 2: 7, 3: 0})
    flat = load_nmnist(tmp_path / "flat", "train", n_steps=5, bin_width=1e-3)
    assert flat.labels.tolist() == [4, 7, 0] and flat.n_units == 2312
    spikes = flat.spikes([2, 0])  # batch order follows the indices
    dense = spikes.to_dense()
    assert dense.shape == (5, 2, 2312) and dense.sum() == 2
    assert dense[1, 0, (34 + 0) * 34 + 0] == 1 and dense[1, 1, (34 + 4) * 34 + 4] == 1

    for digit in (2, 5):
        (tmp_path / "tree" / "Test" / str(digit)).mkdir(parents=True)
        write_nmnist_events(tmp_path / "tree" / "Test" / str(digit) / "00001.bin",
                            _camera_events([(1, 2, 10, 0)]))
    tree = load_nmnist(tmp_path / "tree", "test")
    assert tree.labels.tolist() == [2, 5]
    with pytest.raises(FileNotFoundError, match="neither"):
        load_nmnist(tmp_path / "tree", "train")


def test_load_nmnist_bad_list_file(tmp_path: Path) -> None:
    _write_nmnist_folder(tmp_path, {1: 4})
    (tmp_path / "train1K.txt").write_text("1\tfour\n")
    with pytest.raises(ValueError, match="sample<TAB>class"):
        load_nmnist(tmp_path, "train")
    (tmp_path / "train1K.txt").write_text("9\t4\n")
    with pytest.raises(FileNotFoundError, match="no .*9.bs2"):
        load_nmnist(tmp_path, "train")


def test_nmnist_labels_beyond_int32_and_large_files_are_refused(tmp_path: Path, small_memory_limit) -> None:
    _write_nmnist_folder(tmp_path / "flat", {1: 4})
    (tmp_path / "flat" / "train1K.txt").write_text("1\t4294967296\n")  # 2^32 would wrap to class 0
    with pytest.raises(ValueError, match=r"load_nmnist: .*train1K.txt:1: class 4294967296 is not an integer"):
        load_nmnist(tmp_path / "flat", "train")
    (tmp_path / "tree" / "Train" / "2147483648").mkdir(parents=True)
    with pytest.raises(ValueError, match=r"load_nmnist: .*2147483648: class 2147483648"):
        load_nmnist(tmp_path / "tree", "train")
    big = tmp_path / "big.bs2"
    big.write_bytes(bytes(5 * 600_000))  # 3 MB of events: 77 MB to decode, above the 64 MiB limit
    with pytest.raises(ValueError, match=r"read_nmnist_events: .*big.bs2 would need \d+ bytes, above the memory"):
        read_nmnist_events(big)
    saltatory.set_memory_limit(0)
    assert len(read_nmnist_events(big)) == 600_000


@pytest.mark.skipif(not (SHARED / "nmnist-small").is_dir(), reason="../shared/data/nmnist-small absent")
def test_real_nmnist_subset() -> None:
    test = load_nmnist(SHARED / "nmnist-small", "test")
    assert len(test) == 100 and set(test.labels.tolist()) == set(range(10))
    counts = [len(t) for t in test.times]
    assert 1000 < np.mean(counts) < 10000  # a few thousand events per saccade recording
    assert max(t.max() for t in test.times) < 0.4  # about 300 ms each
    spikes = test.spikes(np.arange(8))
    assert spikes.dropped == sum(int((t >= 0.3).sum()) for t in test.times[:8])  # only late events


# --- tonic-style arrays and EventDataset -------------------------------------------------------

def test_events_to_units_layout_and_errors() -> None:
    audio = np.zeros(3, dtype=[("x", "<i4"), ("t", "<f8"), ("p", "<i1")])
    audio["x"], audio["t"] = [5, 699, 0], [0.0, 1e6, 2.5e5]
    times, units = events_to_units(audio, (700, 1, 1))
    assert units.tolist() == [5, 699, 0] and times.tolist() == [0.0, 1.0, 0.25]
    with pytest.raises(ValueError, match="field x"):
        events_to_units(audio, (600, 1, 1))
    with pytest.raises(ValueError, match="lack the field"):
        events_to_units(np.zeros(2, dtype=[("x", "<i4")]), (4, 1, 1))
    with pytest.raises(TypeError, match="structured array"):
        events_to_units(np.zeros((2, 4)), (4, 1, 1))
    bad = _camera_events([(0, 0, -5, 0)])
    with pytest.raises(ValueError, match="non-negative"):
        events_to_units(bad, (34, 34, 2))


def test_from_tonic_style_dataset() -> None:
    class TonicLike(list):  # what tonic.datasets.NMNIST looks like: (events, target) and sensor_size
        sensor_size = (34, 34, 2)

    samples = TonicLike([(_camera_events([(1, 2, 1500, 1), (3, 4, 4500, 0)]), 7),
                         (_camera_events([(0, 0, 0, 0)]), 2)])
    ds = from_tonic(samples, n_steps=5, bin_width=1e-3)
    assert ds.labels.tolist() == [7, 2] and ds.n_units == 2312
    dense = ds.spikes([0, 1]).to_dense()
    assert dense[1, 0, (34 + 2) * 34 + 1] == 1 and dense[4, 0, (0 + 4) * 34 + 3] == 1 and dense[0, 1, 0] == 1
    assert dense.sum() == 3
    assert len(from_tonic(samples, n_steps=5, bin_width=1e-3, limit=1)) == 1
    with pytest.raises(ValueError, match="sensor_size"):
        from_tonic(list(samples), n_steps=5, bin_width=1e-3)


def test_event_dataset_capacity_overflow_is_seeded_and_counted() -> None:
    # one sample, 10 distinct units in bin 0, one late event; capacity 4 keeps a random 4
    times = [np.r_[np.zeros(10), 0.5]]
    units = [np.r_[np.arange(10), 3]]
    ds = EventDataset(times, units, [1], n_units=10, n_steps=2, bin_width=0.1, capacity=4)
    a, b, c = ds.spikes([0], seed=1), ds.spikes([0], seed=1), ds.spikes([0], seed=2)
    assert a.dropped == 6 + 1 and a.n_spk[0, 0] == 4
    np.testing.assert_array_equal(a.ids, b.ids)
    kept = [set(s.ids[0, 0, :4].tolist()) for s in (a, c)]
    assert kept[0] != kept[1] or kept[0] != {0, 1, 2, 3}  # not simply the lowest ids
    full = EventDataset(times, units, [1], n_units=10, n_steps=2, bin_width=0.1)
    assert full.capacity == 10 and full.spikes([0]).dropped == 1


def test_event_dataset_validates() -> None:
    with pytest.raises(ValueError, match=r"\[EventDataset\] sample 0: unit id 0 is 12"):
        EventDataset([np.zeros(1)], [np.array([12])], [0], n_units=10, n_steps=1, bin_width=1.0)
    with pytest.raises(ValueError, match="labels"):
        EventDataset([np.zeros(1)], [np.zeros(1, int)], [0, 1], n_units=10, n_steps=1, bin_width=1.0)
    with pytest.raises(ValueError, match="differ"):
        EventDataset([np.zeros(2)], [np.zeros(1, int)], [0], n_units=10, n_steps=1, bin_width=1.0)


def test_integer_fields_and_labels_are_checked_before_narrowing() -> None:
    audio = np.zeros(2, dtype=[("x", "<f8"), ("t", "<f8")])
    audio["x"] = [3.0, 3.5]
    with pytest.raises(ValueError, match=r"\[events_to_units\] field x of event 1 is 3.5, not an integer"):
        events_to_units(audio, (700, 1, 1))
    audio["x"] = [3.0, 699.0]
    assert events_to_units(audio, (700, 1, 1))[1].tolist() == [3, 699]  # integral floats are fine
    one = dict(n_units=10, n_steps=2, bin_width=1.0)
    with pytest.raises(ValueError, match=r"\[EventDataset\] label 1 is 1099511627776, not an integer in"):
        EventDataset([np.zeros(1), np.zeros(1)], [np.zeros(1, int)] * 2, [3, 2**40], **one)  # was class 0
    with pytest.raises(ValueError, match=r"\[EventDataset\] sample 0: unit id 0 is 2.5"):
        EventDataset([np.zeros(1)], [np.array([2.5])], [0], **one)
    with pytest.raises(ValueError, match=r"\[EventDataset\] sample 0: unit id 0 is -1"):
        EventDataset([np.zeros(1)], [np.array([-1])], [0], **one)
    for bad in (np.nan, -1.0, np.inf):
        with pytest.raises(ValueError, match=r"\[EventDataset\] sample 0: event times must be finite"):
            EventDataset([np.array([bad])], [np.zeros(1, int)], [0], **one)
    far = EventDataset([np.array([1e300, 0.0])], [np.array([0, 1])], [0], **one)  # bins would overflow int64
    assert far.capacity == 1 and far.spikes([0]).dropped == 1
    with pytest.raises(ValueError, match=r"\[from_tonic\] label of sample 0 is 3.5"):
        from_tonic([(_camera_events([(0, 0, 0, 0)]), 3.5)], (34, 34, 2), n_steps=1, bin_width=1.0)
    with pytest.raises(ValueError, match=r"\[DenseDataset\] label 0 is 4294967296"):
        DenseDataset(np.zeros((1, 1, 2), np.float32), [2**32])
    with pytest.raises(ValueError, match=r"\[ImageDataset\] label 0 is -3"):
        ImageDataset(np.zeros((1, 2, 2), np.uint8), [-3], 4)


# --- SHD ---------------------------------------------------------------------------------------

def test_shd_round_trip_and_binning(tmp_path: Path) -> None:
    pytest.importorskip("h5py")
    times = [np.array([0.0, 0.015, 0.999], np.float32), np.array([0.5], np.float32)]
    units = [np.array([0, 699, 3]), np.array([42])]
    write_shd(tmp_path / "shd_train.h5", times, units, [3, 19])
    t, u, labels, n_units = read_shd(tmp_path / "shd_train.h5")
    assert n_units == 700 and labels.tolist() == [3, 19]
    assert [x.tolist() for x in u] == [[0, 699, 3], [42]]
    np.testing.assert_array_equal(t[0], times[0].astype(np.float64))
    ds = load_shd(tmp_path / "shd_train.h5")  # 100 bins of 10 ms
    dense = ds.spikes([0, 1]).to_dense()
    assert dense[0, 0, 0] == 1 and dense[1, 0, 699] == 1 and dense[99, 0, 3] == 1 and dense[50, 1, 42] == 1
    assert dense.sum() == 4


def test_shd_malformed_files(tmp_path: Path) -> None:
    h5py = pytest.importorskip("h5py")
    (tmp_path / "junk.h5").write_bytes(b"not hdf5 at all")
    with pytest.raises(ValueError, match="not a readable HDF5"):
        read_shd(tmp_path / "junk.h5")
    with h5py.File(tmp_path / "partial.h5", "w") as f:
        f.create_dataset("labels", data=np.zeros(2, np.uint16))
    with pytest.raises(ValueError, match="no 'spikes/times'"):
        read_shd(tmp_path / "partial.h5")
    with pytest.raises(FileNotFoundError):
        read_shd(tmp_path / "missing.h5")
    write_shd(tmp_path / "short.h5", [np.zeros(1)], [np.array([800])], [0], n_units=700)
    with pytest.raises(ValueError, match="read_shd: .*short.h5: sample 0 unit 0 is 800"):
        load_shd(tmp_path / "short.h5")


def _write_raw_shd(path: Path, units, labels, unit_dtype, **attrs) -> None:
    """An SHD-layout file with the given unit and label dtypes (write_shd would convert them)."""
    h5py = pytest.importorskip("h5py")
    with h5py.File(path, "w") as f:
        for key, arrays, dtype in (("spikes/times", [np.zeros(len(u)) for u in units], np.float32),
                                   ("spikes/units", units, unit_dtype)):
            column = np.empty(len(arrays), dtype=object)
            column[:] = [np.asarray(a, dtype) for a in arrays]
            f.create_dataset(key, data=column, dtype=h5py.vlen_dtype(np.dtype(dtype)))
        f.create_dataset("labels", data=labels)
        f.attrs.update(attrs)


@pytest.mark.parametrize("units,labels,unit_dtype,attrs,match", [
    ([[1, 2]], np.array([2**40], np.uint64), np.uint16, {}, r"label 0 is 1099511627776, not an integer in"),
    ([[1, 2]], np.array([-1], np.int8), np.uint16, {}, "label 0 is -1"),
    ([[1, 2], [3]], np.array([1.0, 1.5]), np.uint16, {}, "label 1 is 1.5"),
    ([[1, 2]], np.array([np.nan]), np.uint16, {}, "label 0 is nan"),
    ([[1, 2]], np.array([b"7"]), np.uint16, {}, "label values must be integers, got dtype"),
    ([[1.0, 3.7]], np.array([0]), np.float32, {}, r"sample 0 unit 1 is 3.7\d*, not an integer"),
    ([[2**63 + 5]], np.array([0]), np.uint64, {}, "sample 0 unit 0 is 9223372036854775813"),
    ([[1], [-4]], np.array([0, 1]), np.int32, {}, "sample 1 unit 0 is -4"),
    ([[1]], np.array([0]), np.uint16, {"n_units": 3.5}, "n_units is 3.5, not an integer in"),
    ([[1]], np.array([0]), np.uint16, {"n_units": 0}, "n_units is 0"),
    ([[1]], np.array([0]), np.uint16, {"n_units": 2**40}, "n_units is 1099511627776"),
    ([[1]], np.array([0]), np.uint16, {"n_units": [700, 700]}, "the n_units attribute must be one integer"),
    ([[1, 9]], np.array([0]), np.uint16, {"n_units": 8}, r"sample 0 unit 1 is 9, not an integer in \[0, 8\)"),
])
def test_shd_integers_are_checked_before_narrowing(tmp_path: Path, units, labels, unit_dtype, attrs,
                                                   match: str) -> None:
    _write_raw_shd(tmp_path / "bad.h5", units, labels, unit_dtype, **attrs)
    with pytest.raises(ValueError, match=rf"^read_shd: .*bad.h5: {match}"):
        read_shd(tmp_path / "bad.h5")


def test_shd_integral_floats_are_read_as_integers(tmp_path: Path) -> None:
    _write_raw_shd(tmp_path / "floats.h5", [[1.0, 699.0]], np.array([3.0]), np.float64, n_units=700.0)
    _, units, labels, n_units = read_shd(tmp_path / "floats.h5")
    assert units[0].tolist() == [1, 699] and labels.tolist() == [3] and n_units == 700


def test_shd_huge_declared_datasets_are_refused_before_reading(tmp_path: Path, small_memory_limit) -> None:
    h5py = pytest.importorskip("h5py")
    write_shd(tmp_path / "ok.h5", [np.zeros(2)], [np.array([1, 2])], [0])
    assert read_shd(tmp_path / "ok.h5")[2].tolist() == [0]  # a small file passes under the limit
    for key in ("labels", "spikes/units"):  # chunked and compressed: a few KB declaring 2^30 entries
        write_shd(tmp_path / "huge.h5", [np.zeros(2)], [np.array([1, 2])], [0])
        with h5py.File(tmp_path / "huge.h5", "a") as f:
            dtype = f[key].dtype
            del f[key]
            f.create_dataset(key, shape=(2**30,), dtype=dtype, chunks=(2**16,), compression="gzip")
        assert os.path.getsize(tmp_path / "huge.h5") < 1 << 20
        with pytest.raises(ValueError, match=r"read_shd: .*huge.h5 would need \d+ bytes, above the memory limit"):
            read_shd(tmp_path / "huge.h5")
    with h5py.File(tmp_path / "flat.h5", "w") as f:
        for key in ("spikes/times", "spikes/units", "labels"):
            f.create_dataset(key, data=np.zeros((2, 2)))
    with pytest.raises(ValueError, match=r"read_shd: .*flat.h5: spikes/times must be one-dimensional"):
        read_shd(tmp_path / "flat.h5")


# --- audio -------------------------------------------------------------------------------------

def _write_wav(path: Path, samples: np.ndarray, rate: int = 8000, width: int = 2) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(width)
        w.setframerate(rate)
        if width == 2:
            w.writeframes((samples * 32767).astype("<i2").tobytes())
        else:
            w.writeframes((samples * 127 + 128).astype(np.uint8).tobytes())


def test_read_wav_scales_to_unit_range(tmp_path: Path) -> None:
    tone = 0.5 * np.sin(np.linspace(0, 20 * np.pi, 800))
    for width in (1, 2):
        _write_wav(tmp_path / f"w{width}.wav", tone, width=width)
        audio, rate = read_wav(tmp_path / f"w{width}.wav")
        assert rate == 8000 and audio.dtype == np.float32
        np.testing.assert_allclose(audio, tone, atol=1.5 / (1 << (8 * width - 1)))
    (tmp_path / "bad.wav").write_bytes(b"RIFF....WAVEjunk")
    with pytest.raises(ValueError, match="not a readable PCM WAV"):
        read_wav(tmp_path / "bad.wav")


def test_cochlea_is_tonotopic() -> None:
    cochlea = Cochlea(32)
    assert np.all(np.diff(cochlea.centres) > 0) and cochlea.centres[-1] < 4000
    t = np.arange(8000) / 8000.0
    peaks = []
    for freq in (300.0, 1000.0, 3000.0):
        times, units = cochlea.encode(0.3 * np.sin(2 * np.pi * freq * t))
        counts = np.bincount(units, minlength=32)
        peaks.append(int(counts.argmax()))
        nearest = int(np.abs(cochlea.centres - freq).argmin())
        assert abs(peaks[-1] - nearest) <= 1, (freq, peaks[-1], nearest)
        assert counts.sum() > 0 and times.max() <= 1.0 + 1e-9
    assert peaks[0] < peaks[1] < peaks[2]
    assert cochlea.encode(np.zeros(800))[0].size == 0


def test_cochlea_rate_follows_level_and_rejects_bad_input() -> None:
    cochlea = Cochlea(16, max_rate=0.5)
    t = np.arange(4000) / 8000.0
    loud_quiet = np.r_[np.sin(2 * np.pi * 500 * t), 0.01 * np.sin(2 * np.pi * 500 * t)]
    times, units = cochlea.encode(loud_quiet)
    first, second = (times < 0.5).sum(), (times >= 0.5).sum()
    assert first > 2 * second  # 40 dB quieter fires far less
    assert np.all(np.bincount(np.round(times / cochlea.hop).astype(int) * 16 + units) <= 1)  # <= 1/frame
    with pytest.raises(ValueError, match="NaN"):
        cochlea.encode(np.array([0.0, np.nan]))
    with pytest.raises(ValueError, match="Nyquist"):
        Cochlea(16, f_max=5000.0)


def test_cochlea_silence_gives_no_spikes_and_tones_keep_theirs() -> None:
    cochlea = Cochlea(16)
    t = np.arange(8000) / 8000.0
    tone = 0.3 * np.sin(2 * np.pi * 440 * t)
    times, units = cochlea.encode(tone)
    # the spikes of the level relative to the loudest frame, as before the absolute floor
    assert np.bincount(units, minlength=16).tolist() == [1, 2, 2, 68, 228, 250, 116, 21] + [0] * 8
    for quiet in (np.zeros(8000), np.full(8000, 1e-30), np.full(8000, 0.2), 1e-6 * tone, np.zeros(3), np.zeros(0)):
        assert cochlea.encode(quiet)[0].size == 0  # silence, DC offsets, -130 dBFS (4000 spikes before)
    for same in (tone + 0.2, 1e200 * tone):  # a DC offset changes nothing; no overflow
        again_times, again_units = cochlea.encode(same)
        np.testing.assert_array_equal(again_times, times)
        np.testing.assert_array_equal(again_units, units)
    assert 0 < cochlea.encode(1e-4 * tone)[0].size < times.size / 2  # -90 dBFS: just above the floor
    assert Cochlea(16, floor_db=-200.0).encode(1e-6 * tone)[0].size == times.size  # a lower floor
    for bad in (np.inf, -np.inf, np.nan):
        with pytest.raises(ValueError, match=r"\[Cochlea\] audio contains NaN or Inf"):
            cochlea.encode(np.r_[tone, bad])
    with pytest.raises(ValueError, match=r"\[Cochlea\] floor_db must be a finite level"):
        Cochlea(16, floor_db=np.nan)


def test_audio_memory_limit(tmp_path: Path, small_memory_limit) -> None:
    with pytest.raises(ValueError, match=r"\[Cochlea\] 4800000 samples would need \d+ bytes, above the memory"):
        Cochlea(16).encode(np.zeros(4_800_000))  # 10 minutes: 2.5 GB of frames
    _write_wav(tmp_path / "long.wav", np.zeros(4_000_000))  # 8 MB of 16-bit samples, 72 MB as floats
    with pytest.raises(ValueError, match=r"read_wav: .*long.wav would need \d+ bytes, above the memory"):
        read_wav(tmp_path / "long.wav")
    saltatory.set_memory_limit(0)
    assert len(read_wav(tmp_path / "long.wav")[0]) == 4_000_000


def test_fsdd_split_and_shd_files(tmp_path: Path) -> None:
    pytest.importorskip("h5py")
    rec = tmp_path / "recordings"
    rec.mkdir()
    rng = np.random.default_rng(0)
    for digit in (1, 2):
        for take in (0, 7):
            _write_wav(rec / f"{digit}_alice_{take}.wav", 0.3 * rng.standard_normal(1600))
    (rec / "notes.txt").write_text("ignored")
    train_files, train_labels = fsdd_files(tmp_path, "train")
    assert [Path(f).name for f in train_files] == ["1_alice_7.wav", "2_alice_7.wav"] and train_labels == [1, 2]
    test = load_fsdd(tmp_path, "test", cochlea=Cochlea(8))
    assert test.labels.tolist() == [1, 2] and test.n_units == 8 and sum(map(len, test.times)) > 0
    paths = fsdd_to_shd(tmp_path, tmp_path / "out", Cochlea(8))
    t, u, labels, n_units = read_shd(paths["test"])
    assert n_units == 8 and labels.tolist() == [1, 2]
    np.testing.assert_allclose(t[0], test.times[0], atol=1e-6)  # float32 seconds in the file
    np.testing.assert_array_equal(u[1], test.units[1])


@pytest.mark.skipif(not (SHARED / "fsdd").is_dir(), reason="../shared/data/fsdd absent")
def test_real_fsdd_files() -> None:
    files, labels = fsdd_files(SHARED / "fsdd", "test")
    assert len(files) == 300 and sorted(set(labels)) == list(range(10))
    audio, rate = read_wav(files[0])
    assert rate == 8000 and 0.05 < np.abs(audio).max() <= 1.0
    times, units = Cochlea().encode(audio)
    assert 0 < units.max() < 64 and len(np.unique(units)) > 32  # many channels, not all of one


# --- loader ------------------------------------------------------------------------------------

def _dense_dataset(n: int = 10) -> DenseDataset:
    spikes = np.zeros((3, n, n), np.float32)
    spikes[0, np.arange(n), np.arange(n)] = 1  # sample i: neuron i at t=0
    return DenseDataset(spikes, np.arange(n) % 3)


def test_loader_epochs_are_reproducible_permutations() -> None:
    loader = Loader(_dense_dataset(), 4, shuffle=True, seed=5)
    assert len(loader) == 3
    epoch = [(s.ids[0, :, 0].copy(), y) for s, y in loader.epoch(1)]
    seen = np.concatenate([ids for ids, _ in epoch])
    assert sorted(seen.tolist()) == list(range(10))
    np.testing.assert_array_equal(np.concatenate([y for _, y in epoch]), seen % 3)
    again = np.concatenate([s.ids[0, :, 0] for s, _ in Loader(_dense_dataset(), 4, shuffle=True,
                                                                 seed=5, prefetch=0).epoch(1)])
    np.testing.assert_array_equal(seen, again)
    other = np.concatenate([s.ids[0, :, 0] for s, _ in loader.epoch(2)])
    assert not np.array_equal(seen, other)
    assert len(Loader(_dense_dataset(), 4, drop_last=True)) == 2


def test_loader_reraises_producer_errors_and_stops_early() -> None:
    class Broken(DenseDataset):
        def spikes(self, indices, seed=0):
            if indices[0] >= 4:
                raise ValueError("broken sample")
            return super().spikes(indices, seed)

    broken = Broken(_dense_dataset().dense, np.zeros(10))
    with pytest.raises(ValueError, match="broken sample"):
        list(Loader(broken, 4))
    first = next(iter(Loader(_dense_dataset(), 2, prefetch=1)))  # abandoning the iterator is fine
    assert first[0].shape[1] == 2


_EXIT_WHILE_PREFETCHING = """
import time
import numpy as np
import saltatory
from saltatory.data import Loader
dense = (np.random.default_rng(0).random((400, 256, 700)) < 0.05).astype(np.float32)
class Slow:  # each batch is one long GIL-free call into the C++ binning
    labels = np.zeros(256, np.int32); n_units = 700; n_steps = 400; capacity = 64
    def __len__(self): return 256
    def spikes(self, indices, seed): return saltatory.SpikeTensor.from_dense(dense, capacity=64)
batches = iter(Loader(Slow(), 128, prefetch=1))
next(batches)  # the producer is now binning the next batch
class SlowFinalizer:  # collected after the interpreter starts finalizing
    def __del__(self, sleep=time.sleep): sleep(1)
a = SlowFinalizer(); a.cycle = [a]; del a
raise SystemExit("stopped")
"""


def test_exit_while_the_loader_prefetches_does_not_abort(tmp_path: Path) -> None:
    # a daemon producer that re-took the GIL during finalization was killed inside C++ frames, and
    # the process aborted ("terminate called without an active exception") instead of exiting
    script = tmp_path / "exit.py"
    script.write_text(_EXIT_WHILE_PREFETCHING)
    run = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert (run.returncode, run.stderr.strip()) == (1, "stopped")


def test_exit_skips_producers_that_never_started() -> None:
    # an interrupt between registering a producer and starting it left one that join() refused,
    # and the exception stopped the join of the producers after it
    import threading

    from saltatory.data import loader

    never = threading.Thread(target=lambda: None)
    stop = threading.Event()
    loader._producers[never] = stop
    try:
        loader._stop_producers()
    finally:
        del loader._producers[never]
    assert stop.is_set()


def test_image_dataset_latency_capacity_and_rate() -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (20, 4, 4), dtype=np.uint8)
    ds = ImageDataset(images, np.arange(20), 10)
    spikes = ds.spikes(np.arange(20))
    assert spikes.dropped == 0 and spikes.n_neurons == 16 and spikes.capacity == ds.capacity
    assert spikes.n_spk.max() == ds.capacity
    assert np.all(spikes.to_dense().sum(axis=0) <= 1)  # at most one spike per pixel
    rate = ImageDataset(images, np.arange(20), 10, encoding="rate", capacity=16)
    np.testing.assert_array_equal(rate.spikes([1, 2], seed=3).ids, rate.spikes([1, 2], seed=3).ids)
    with pytest.raises(ValueError, match="encoding"):
        ImageDataset(images, np.arange(20), 10, encoding="phase")


def test_loader_counts_dropped_events() -> None:
    times = [np.zeros(5), np.zeros(2)]
    units = [np.arange(5), np.arange(2)]
    ds = EventDataset(times, units, [0, 1], n_units=5, n_steps=1, bin_width=1.0, capacity=3)
    loader = Loader(ds, 2)
    list(loader)
    assert loader.dropped == 2


def test_fuzzer_findings_stay_fixed() -> None:
    """Inputs the fuzzers once turned into crashes or stray exceptions (tests/fuzz/corpus)."""
    pytest.importorskip("h5py")
    corpus = Path(__file__).resolve().parents[1] / "fuzz" / "corpus"
    with pytest.raises(ValueError, match="read_shd: .*corrupted"):
        read_shd(corpus / "shd" / "regression-bad-object-header.h5")  # h5py raised KeyError
    for name in ("regression-vlen-heap-hang.h5", "regression-vlen-heap-hang-2.h5",
                 "regression-vlen-free-space-hang.h5"):  # libhdf5 looped forever on these
        with pytest.raises(ValueError, match="empty free-space record"):
            read_shd(corpus / "shd" / name)
    for name in ("regression-vlen-kind-segfault.h5", "regression-vlen-kind-segfault-2.h5"):
        with pytest.raises(ValueError, match="variable-length datatype of unknown kind"):
            read_shd(corpus / "shd" / name)  # libhdf5 segfaulted converting these
