"""Tests for saltatory.SpikeTensor: construction, conversion, overflow, events, validation."""

from __future__ import annotations

import numpy as np
import pytest

from saltatory import SpikeTensor


def _random_dense(shape, p, seed):
    rng = np.random.default_rng(seed)
    return (rng.random(shape) < p).astype(np.float32)


def _lists(st: SpikeTensor):
    """Python lists of (spike ids, candidate ids) per (t, b)."""
    T, B, _ = st.shape
    out = {}
    for t in range(T):
        for b in range(B):
            ns, nt = int(st.n_spk[t, b]), int(st.n_tot[t, b])
            out[t, b] = (st.ids[t, b, :ns].tolist(), st.ids[t, b, ns:nt].tolist())
    return out


# ----------------------------------------------------------------------------- from_dense


def test_from_dense_round_trip_default_capacity() -> None:
    dense = _random_dense((7, 4, 30), 0.2, seed=0)
    st = SpikeTensor.from_dense(dense)
    assert st.shape == (7, 4, int(np.count_nonzero(dense, axis=2).max()))
    assert st.ids.dtype == np.int32 and st.n_spk.dtype == np.int32 and st.n_tot.dtype == np.int32
    assert st.n_neurons == 30
    assert st.dropped == 0
    assert np.array_equal(st.n_spk, np.count_nonzero(dense, axis=2))
    assert np.array_equal(st.n_tot, st.n_spk)  # data lists carry no candidates
    for (t, b), (spk, cand) in _lists(st).items():
        assert spk == np.flatnonzero(dense[t, b]).tolist()  # ascending ids
        assert cand == []
    back = st.to_dense()
    assert back.dtype == np.float32
    assert back.shape == dense.shape
    assert np.array_equal(back, dense)


def test_from_dense_accepts_bool_and_int() -> None:
    dense = _random_dense((3, 2, 10), 0.3, seed=1)
    a = SpikeTensor.from_dense(dense, capacity=10)
    b = SpikeTensor.from_dense(dense.astype(bool), capacity=10)
    c = SpikeTensor.from_dense(dense.astype(np.int64), capacity=10)
    for other in (b, c):
        assert np.array_equal(other.to_dense(), a.to_dense())
        assert np.array_equal(other.n_spk, a.n_spk)


def test_from_dense_empty_lists() -> None:
    dense = np.zeros((2, 3, 5), np.float32)
    st = SpikeTensor.from_dense(dense)
    assert st.capacity == 1
    assert st.n_spk.sum() == 0
    assert np.array_equal(st.to_dense(), dense)
    assert st.activity() == 0.0


def test_overflow_lowest_keeps_lowest_ids_and_counts_dropped() -> None:
    dense = _random_dense((6, 5, 40), 0.35, seed=2)
    capacity = 5
    st = SpikeTensor.from_dense(dense, capacity=capacity, overflow="lowest")
    assert st.capacity == capacity
    expected_dropped = 0
    for (t, b), (spk, cand) in _lists(st).items():
        true_ids = np.flatnonzero(dense[t, b]).tolist()
        assert spk == true_ids[:capacity]
        assert cand == []
        expected_dropped += max(0, len(true_ids) - capacity)
    assert expected_dropped > 0
    assert st.dropped == expected_dropped


def test_overflow_lowest_hand_example() -> None:
    dense = np.zeros((1, 1, 12), np.float32)
    dense[0, 0, [1, 3, 5, 7, 9]] = 1
    st = SpikeTensor.from_dense(dense, capacity=3, overflow="lowest")
    assert st.ids[0, 0].tolist() == [1, 3, 5]
    assert st.n_spk[0, 0] == 3
    assert st.dropped == 2


def test_overflow_random_subset_sorted_and_seeded() -> None:
    dense = _random_dense((8, 6, 60), 0.3, seed=3)
    capacity = 6
    a = SpikeTensor.from_dense(dense, capacity=capacity, overflow="random", seed=11)
    a2 = SpikeTensor.from_dense(dense, capacity=capacity, overflow="random", seed=11)
    b = SpikeTensor.from_dense(dense, capacity=capacity, overflow="random", seed=12)
    expected_dropped = 0
    overflowing = 0
    differs = 0
    for (t, b_), (spk, cand) in _lists(a).items():
        true_ids = np.flatnonzero(dense[t, b_])
        expected_len = min(capacity, true_ids.size)
        assert len(spk) == expected_len
        assert cand == []
        assert spk == sorted(spk)
        assert len(set(spk)) == len(spk)
        assert set(spk) <= set(true_ids.tolist())
        expected_dropped += true_ids.size - expected_len
        if true_ids.size > capacity:
            overflowing += 1
            if spk != true_ids[:capacity].tolist():
                differs += 1
    assert overflowing > 20
    # A random subset is not systematically the lowest ids.
    assert differs > overflowing // 2
    assert a.dropped == expected_dropped
    assert b.dropped == expected_dropped
    # Deterministic for a seed, different for another.
    assert np.array_equal(a.ids, a2.ids) and np.array_equal(a.n_spk, a2.n_spk)
    assert not np.array_equal(a.ids, b.ids)
    assert np.array_equal(a.n_spk, b.n_spk)


def test_no_overflow_policies_agree() -> None:
    dense = _random_dense((4, 3, 20), 0.2, seed=4)
    a = SpikeTensor.from_dense(dense, capacity=20, overflow="lowest")
    b = SpikeTensor.from_dense(dense, capacity=20, overflow="random", seed=5)
    assert a.dropped == b.dropped == 0
    assert _lists(a) == _lists(b)


def test_from_dense_bad_policy_and_values() -> None:
    dense = _random_dense((2, 2, 5), 0.5, seed=5)
    with pytest.raises(ValueError, match=r"\[SpikeTensor\.from_dense\]"):
        SpikeTensor.from_dense(dense, overflow="highest")
    bad = dense.copy()
    bad[1, 0, 2] = 0.5
    with pytest.raises(ValueError, match=r"\[SpikeTensor\.from_dense\]"):
        SpikeTensor.from_dense(bad)
    with pytest.raises(ValueError, match=r"\[SpikeTensor\.from_dense\]"):
        SpikeTensor.from_dense(dense[0])  # not 3-D
    with pytest.raises(TypeError):
        SpikeTensor.from_dense(np.array([[["a"]]]))


# ----------------------------------------------------------------------------- from_events


def test_from_events_binning() -> None:
    # bin_width 2.0, 4 bins: [0,2) [2,4) [4,6) [6,8); times >= 8 dropped.
    times = [0.0, 1.999, 2.0, 3.5, 3.9, 7.999, 8.0, 100.0, 5.0, 5.5, 0.5]
    units = [3, 1, 4, 4, 0, 2, 1, 3, 2, 2, 1]
    samples = [0, 0, 0, 0, 1, 1, 0, 1, 1, 1, 1]
    st = SpikeTensor.from_events(times, units, samples=samples, bin_width=2.0, n_steps=4,
                                 n_neurons=5, capacity=3)
    assert st.shape == (4, 2, 3)
    assert st.n_neurons == 5
    expected = {
        (0, 0): [1, 3], (0, 1): [1],
        (1, 0): [4],    # 2.0 and 3.5 on unit 4: one spike
        (1, 1): [0],
        (2, 0): [],     (2, 1): [2],  # 5.0 and 5.5 on unit 2 merged
        (3, 0): [],     (3, 1): [2],
    }
    got = _lists(st)
    for key, ids in expected.items():
        assert got[key] == (ids, []), key
    assert st.dropped == 2  # t = 8.0 and t = 100.0
    dense = np.zeros((4, 2, 5), np.float32)
    for (t, b), ids in expected.items():
        dense[t, b, ids] = 1
    assert np.array_equal(st.to_dense(), dense)


def test_from_events_batch_size_inferred_and_explicit() -> None:
    st = SpikeTensor.from_events([0.0, 1.0], [0, 1], samples=[0, 2], bin_width=1.0, n_steps=2,
                                 n_neurons=3, capacity=2)
    assert st.shape[1] == 3
    st = SpikeTensor.from_events([0.0, 1.0], [0, 1], samples=[0, 2], bin_width=1.0, n_steps=2,
                                 n_neurons=3, capacity=2, batch_size=5)
    assert st.shape == (2, 5, 2)
    assert st.to_dense()[1, 2, 1] == 1 and st.to_dense().sum() == 2
    # No samples: one batch entry.
    st = SpikeTensor.from_events([0.5, 0.5], [2, 2], bin_width=1.0, n_steps=1, n_neurons=3,
                                 capacity=4)
    assert st.shape == (1, 1, 4)
    assert st.n_spk[0, 0] == 1 and st.ids[0, 0, 0] == 2 and st.dropped == 0


def test_from_events_capacity_overflow_counts() -> None:
    # 6 distinct units in one bin, capacity 4; plus one late event.
    times = [0.1] * 6 + [0.2, 9.0]
    units = [5, 0, 4, 2, 3, 1, 5, 0]
    st = SpikeTensor.from_events(times, units, bin_width=1.0, n_steps=2, n_neurons=6, capacity=4,
                                 overflow="lowest")
    assert st.ids[0, 0].tolist() == [0, 1, 2, 3]
    assert st.n_spk[0, 0] == 4 and st.n_spk[1, 0] == 0
    assert st.dropped == 2 + 1  # two over capacity (the duplicate of 5 is not a spike), one late
    rnd = SpikeTensor.from_events(times, units, bin_width=1.0, n_steps=2, n_neurons=6, capacity=4,
                                  overflow="random", seed=3)
    kept = rnd.ids[0, 0].tolist()
    assert kept == sorted(kept) and len(set(kept)) == 4 and set(kept) <= set(range(6))
    assert rnd.dropped == 3


def test_from_events_errors() -> None:
    with pytest.raises(ValueError, match=r"\[SpikeTensor\.from_events\]"):
        SpikeTensor.from_events([0.0], [7], bin_width=1.0, n_steps=2, n_neurons=5, capacity=2)
    with pytest.raises(ValueError, match=r"\[SpikeTensor\.from_events\]"):
        SpikeTensor.from_events([-1.0], [0], bin_width=1.0, n_steps=2, n_neurons=5, capacity=2)
    with pytest.raises(ValueError, match=r"\[SpikeTensor\.from_events\]"):
        SpikeTensor.from_events([0.0], [0], bin_width=0.0, n_steps=2, n_neurons=5, capacity=2)
    with pytest.raises(TypeError, match=r"\[SpikeTensor\.from_events\]"):
        SpikeTensor.from_events([0.0], [0.0], bin_width=1.0, n_steps=2, n_neurons=5, capacity=2)
    with pytest.raises(ValueError, match=r"\[SpikeTensor\.from_events\]"):
        SpikeTensor.from_events([0.0], [0], samples=[3], batch_size=2, bin_width=1.0, n_steps=2,
                                n_neurons=5, capacity=2)


# ----------------------------------------------------------------------------- validation


def _valid_arrays():
    ids = np.array([[[0, 2, -1], [1, -1, -1]], [[3, 1, 0], [-1, -1, -1]]], np.int32)  # T=2, B=2, K=3
    n_spk = np.array([[2, 1], [1, 0]], np.int32)
    n_tot = np.array([[2, 1], [3, 0]], np.int32)
    return ids, n_spk, n_tot


def test_valid_tensor_with_candidates() -> None:
    ids, n_spk, n_tot = _valid_arrays()
    st = SpikeTensor(ids, n_spk, n_tot, n_neurons=4)
    dense = st.to_dense()
    expected = np.zeros((2, 2, 4), np.float32)
    expected[0, 0, [0, 2]] = 1
    expected[0, 1, 1] = 1
    expected[1, 0, 3] = 1  # candidates 1 and 0 are not spikes
    assert np.array_equal(dense, expected)
    assert np.array_equal(st.counts(), expected.sum(axis=0))
    assert st.activity() == pytest.approx(4 / (2 * 2 * 4))
    # n_tot defaults to n_spk.
    st2 = SpikeTensor(ids, n_spk, n_neurons=4)
    assert st2.n_tot is st2.n_spk


@pytest.mark.parametrize("case", ["id_high", "id_negative", "duplicate", "spk_gt_tot", "tot_gt_k",
                                  "negative_count"])
def test_validation_errors_name_the_op(case: str) -> None:
    ids, n_spk, n_tot = _valid_arrays()
    if case == "id_high":
        ids[0, 0, 1] = 4
    elif case == "id_negative":
        ids[1, 0, 2] = -1  # a candidate slot inside n_tot
    elif case == "duplicate":
        ids[1, 0, 2] = 3  # duplicates the spike id 3 among the candidates
    elif case == "spk_gt_tot":
        n_spk[0, 1] = 2
    elif case == "tot_gt_k":
        n_spk[1, 1] = 1
        n_tot[1, 1] = 4
    elif case == "negative_count":
        n_spk[0, 0] = -1
    with pytest.raises(ValueError, match=r"^\[SpikeTensor\]"):
        SpikeTensor(ids, n_spk, n_tot, n_neurons=4)
    # validate=False skips the check (caller's responsibility).
    SpikeTensor(ids, n_spk, n_tot, n_neurons=4, validate=False)


def test_duplicate_spike_ids() -> None:
    ids = np.array([[[2, 2]]], np.int32)
    with pytest.raises(ValueError, match=r"\[SpikeTensor\].*twice"):
        SpikeTensor(ids, np.array([[2]], np.int32), n_neurons=3)


def test_padding_is_not_validated() -> None:
    ids = np.array([[[1, 99, 99]]], np.int32)
    st = SpikeTensor(ids, np.array([[1]], np.int32), n_neurons=3)
    assert st.to_dense()[0, 0].tolist() == [0, 1, 0]


def test_type_errors() -> None:
    ids, n_spk, n_tot = _valid_arrays()
    with pytest.raises(TypeError, match=r"\[SpikeTensor\]"):
        SpikeTensor(ids.astype(np.float32), n_spk, n_tot, n_neurons=4)
    with pytest.raises(TypeError, match=r"\[SpikeTensor\]"):
        SpikeTensor(ids, n_spk.astype(np.float64), n_tot, n_neurons=4)
    with pytest.raises(TypeError, match=r"\[SpikeTensor\]"):
        SpikeTensor(ids, n_spk, n_tot.astype(np.float32), n_neurons=4)
    with pytest.raises(ValueError, match=r"\[SpikeTensor\]"):
        SpikeTensor(ids, n_spk, n_tot, n_neurons=0)


def test_shape_errors() -> None:
    ids, n_spk, n_tot = _valid_arrays()
    with pytest.raises(ValueError, match=r"\[SpikeTensor\]"):
        SpikeTensor(ids[0], n_spk, n_tot, n_neurons=4)  # ids not 3-D
    with pytest.raises(ValueError, match=r"\[SpikeTensor\]"):
        SpikeTensor(ids, n_spk[:1], n_tot[:1], n_neurons=4)  # counts [1, 2] vs ids [2, 2, K]


def test_int64_ids_are_converted_and_checked() -> None:
    ids, n_spk, n_tot = _valid_arrays()
    st = SpikeTensor(ids.astype(np.int64), n_spk.astype(np.int16), n_tot.astype(np.uint8), n_neurons=4)
    assert st.ids.dtype == np.int32 and np.array_equal(st.ids, ids)
    assert st.n_spk.dtype == np.int32 and st.n_tot.dtype == np.int32
    big = ids.astype(np.int64)
    big[0, 0, 0] = 2**40
    with pytest.raises(ValueError, match=r"\[SpikeTensor\]"):
        SpikeTensor(big, n_spk, n_tot, n_neurons=4)


# ----------------------------------------------------------------------------- memory, stats


def test_zero_copy_for_int32_contiguous() -> None:
    ids, n_spk, n_tot = _valid_arrays()
    st = SpikeTensor(ids, n_spk, n_tot, n_neurons=4)
    assert np.shares_memory(st.ids, ids)
    assert np.shares_memory(st.n_spk, n_spk)
    assert np.shares_memory(st.n_tot, n_tot)
    # Non-contiguous or other dtypes are copied.
    st2 = SpikeTensor(np.asfortranarray(ids), n_spk.astype(np.int64), n_tot, n_neurons=4)
    assert not np.shares_memory(st2.ids, ids)
    assert st2.ids.flags["C_CONTIGUOUS"]
    assert np.array_equal(st2.ids, ids)


def test_activity_and_counts() -> None:
    dense = _random_dense((9, 5, 25), 0.15, seed=6)
    st = SpikeTensor.from_dense(dense)
    assert st.activity() == pytest.approx(float(dense.mean(dtype=np.float64)), rel=1e-12)
    counts = st.counts()
    assert counts.dtype == np.float32 and counts.shape == (5, 25)
    assert np.array_equal(counts, dense.sum(axis=0))
    # After overflow, counts follow the kept spikes, not the data.
    small = SpikeTensor.from_dense(dense, capacity=2)
    assert np.array_equal(small.counts(), small.to_dense().sum(axis=0))
    assert small.counts().sum() == small.n_spk.sum() == dense.sum() - small.dropped
    assert small.activity() == pytest.approx(small.n_spk.sum() / (9 * 5 * 25))


def test_repr_mentions_shape_and_dropped() -> None:
    st = SpikeTensor.from_dense(_random_dense((2, 3, 8), 0.6, seed=7), capacity=2)
    text = repr(st)
    assert "T=2" in text and "B=3" in text and "K=2" in text and f"dropped={st.dropped}" in text
