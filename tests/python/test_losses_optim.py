"""Tests for saltatory.losses and saltatory.optim against NumPy implementations."""

from __future__ import annotations

import numpy as np
import pytest

from saltatory import Parameter, SpikeTensor
from saltatory import losses, optim


def _softmax(z):
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def _spikes_with_candidates(T, B, N, K, seed):
    """Random valid lists with spikes and gradient-only candidates and padding."""
    rng = np.random.default_rng(seed)
    ids = np.full((T, B, K), -1, np.int32)
    n_spk = np.zeros((T, B), np.int32)
    n_tot = np.zeros((T, B), np.int32)
    for t in range(T):
        for b in range(B):
            tot = int(rng.integers(0, K + 1))
            spk = int(rng.integers(0, tot + 1))
            chosen = rng.choice(N, size=tot, replace=False)
            ids[t, b, :spk] = np.sort(chosen[:spk])
            ids[t, b, spk:tot] = np.sort(chosen[spk:])
            n_spk[t, b], n_tot[t, b] = spk, tot
    return SpikeTensor(ids, n_spk, n_tot, n_neurons=N)


# ----------------------------------------------------------------------------- losses


def test_spike_count_cross_entropy_matches_numpy() -> None:
    T, B, N, K = 7, 5, 6, 4
    st = _spikes_with_candidates(T, B, N, K, seed=0)
    assert (st.n_tot > st.n_spk).any() and (st.n_tot < K).any()
    labels = np.array([0, 5, 2, 2, 3], np.int32)
    loss, grad = losses.spike_count_cross_entropy(st, labels)

    counts = np.zeros((B, N))
    for t in range(T):
        for b in range(B):
            counts[b, st.ids[t, b, :st.n_spk[t, b]]] += 1
    p = _softmax(counts)
    expected_loss = -np.log(p[np.arange(B), labels]).mean()
    g_counts = (p - np.eye(N)[labels]) / B
    expected_grad = np.zeros((T, B, K))
    for t in range(T):
        for b in range(B):
            n = st.n_tot[t, b]
            expected_grad[t, b, :n] = g_counts[b, st.ids[t, b, :n]]  # candidates included

    assert isinstance(loss, float)
    assert loss == pytest.approx(expected_loss, rel=1e-5)
    assert grad.dtype == np.float32 and grad.shape == (T, B, K)
    np.testing.assert_allclose(grad, expected_grad, rtol=1e-5, atol=1e-7)
    # Candidates do receive gradient, padding does not.
    cand = [(t, b, k) for t in range(T) for b in range(B) for k in range(st.n_spk[t, b], st.n_tot[t, b])]
    assert any(grad[c] != 0 for c in cand)
    for t in range(T):
        for b in range(B):
            assert not grad[t, b, st.n_tot[t, b]:].any()


def test_spike_count_cross_entropy_large_counts_stable() -> None:
    T, B, N = 200, 2, 3
    dense = np.zeros((T, B, N), np.float32)
    dense[:, 0, 1] = 1  # 200 spikes on the right class
    dense[:, 1, 0] = 1  # 200 spikes on the wrong class
    st = SpikeTensor.from_dense(dense, capacity=3)
    loss, grad = losses.spike_count_cross_entropy(st, np.array([1, 2]))
    assert np.isfinite(loss) and np.all(np.isfinite(grad))
    assert loss == pytest.approx((0 + 200) / 2, rel=1e-5)


def test_membrane_cross_entropy_matches_numpy() -> None:
    T, B, C = 6, 4, 5
    rng = np.random.default_rng(1)
    v = (3 * rng.standard_normal((T, B, C))).astype(np.float32)
    labels = np.array([4, 0, 1, 4], np.int64)  # any integer dtype
    loss, grad = losses.membrane_cross_entropy(v, labels)
    p = _softmax(v.astype(np.float64))
    ce = -np.log(p[:, np.arange(B), labels])  # [T, B]
    expected_loss = ce.sum(axis=0).mean()
    expected_grad = (p - np.eye(C)[labels][None]) / B
    assert loss == pytest.approx(expected_loss, rel=1e-5)
    assert grad.dtype == np.float32 and grad.shape == (T, B, C)
    np.testing.assert_allclose(grad, expected_grad, rtol=1e-5, atol=1e-7)


def test_predict() -> None:
    v = np.zeros((3, 2, 4), np.float32)
    v[:, 0, 2] = 1.0
    v[0, 1, 1] = 5.0
    v[1:, 1, 3] = 2.0
    assert losses.predict(v).tolist() == [2, 1]
    dense = np.zeros((3, 2, 4), np.float32)
    dense[:, 0, 3] = 1
    dense[0, 1, 0] = 1
    assert losses.predict(SpikeTensor.from_dense(dense)).tolist() == [3, 0]


def test_loss_label_errors() -> None:
    st = _spikes_with_candidates(3, 2, 4, 3, seed=2)
    v = np.zeros((3, 2, 4), np.float32)
    for bad in ([0, 4], [-1, 0]):
        with pytest.raises(ValueError, match=r"\[spike_count_cross_entropy\]"):
            losses.spike_count_cross_entropy(st, np.array(bad, np.int32))
        with pytest.raises(ValueError, match=r"\[membrane_cross_entropy\]"):
            losses.membrane_cross_entropy(v, np.array(bad, np.int32))
    with pytest.raises(TypeError, match=r"\[spike_count_cross_entropy\]"):
        losses.spike_count_cross_entropy(st, np.array([0.0, 1.0]))
    with pytest.raises(TypeError, match=r"\[membrane_cross_entropy\]"):
        losses.membrane_cross_entropy(v, np.array([0.0, 1.0], np.float32))
    with pytest.raises(ValueError, match=r"\[membrane_cross_entropy\]"):
        losses.membrane_cross_entropy(v, np.array([0, 1, 2], np.int32))  # wrong batch size


def test_labels_beyond_int32_are_rejected() -> None:
    """int64 labels must not wrap around when converted to int32 (2**32 would become 0)."""
    st = _spikes_with_candidates(3, 2, 4, 3, seed=3)
    v = np.zeros((3, 2, 4), np.float32)
    labels = np.array([2**32, 1], np.int64)
    with pytest.raises(ValueError, match=r"\[membrane_cross_entropy\]"):
        losses.membrane_cross_entropy(v, labels)
    with pytest.raises(ValueError, match=r"\[spike_count_cross_entropy\]"):
        losses.spike_count_cross_entropy(st, labels)


def test_loss_input_errors() -> None:
    v = np.zeros((3, 2, 4), np.float64)
    with pytest.raises(TypeError, match=r"\[membrane_cross_entropy\]"):
        losses.membrane_cross_entropy(v, np.array([0, 1]))
    bad = np.zeros((3, 2, 4), np.float32)
    bad[1, 1, 1] = np.nan
    with pytest.raises(ValueError, match=r"\[membrane_cross_entropy\]"):
        losses.membrane_cross_entropy(bad, np.array([0, 1]))
    with pytest.raises(TypeError, match=r"\[spike_count_cross_entropy\]"):
        losses.spike_count_cross_entropy(np.zeros((3, 2, 4), np.float32), np.array([0, 1]))


# ----------------------------------------------------------------------------- optimisers


def _params(seed):
    rng = np.random.default_rng(seed)
    return [Parameter(rng.standard_normal((4, 3))), Parameter(rng.standard_normal(5)),
            Parameter(rng.standard_normal((2, 2, 2)))]


def _grads(seed, steps):
    rng = np.random.default_rng(seed + 100)
    return [[rng.standard_normal(s).astype(np.float32) for s in ((4, 3), (5,), (2, 2, 2))]
            for _ in range(steps)]


def _run(opt, params, grads):
    for step_grads in grads:
        for p, g in zip(params, step_grads):
            p.grad[...] = g
        opt.step()


def _numpy_sgd(values, grads, lr, momentum, wd):
    values = [v.astype(np.float64) for v in values]
    buf = [None] * len(values)
    for step_grads in grads:
        for i, g in enumerate(step_grads):
            d = g + wd * values[i]
            buf[i] = d if buf[i] is None else momentum * buf[i] + d  # torch.optim.SGD, dampening 0
            values[i] = values[i] - lr * buf[i]
    return values


def _numpy_adam(values, grads, lr, b1, b2, eps, wd, decoupled):
    values = [v.astype(np.float64) for v in values]
    m = [np.zeros_like(v) for v in values]
    s = [np.zeros_like(v) for v in values]
    for t, step_grads in enumerate(grads, start=1):
        for i, g in enumerate(step_grads):
            g = g.astype(np.float64)
            if decoupled:  # torch.optim.AdamW
                values[i] = values[i] * (1 - lr * wd)
            else:  # torch.optim.Adam (L2)
                g = g + wd * values[i]
            m[i] = b1 * m[i] + (1 - b1) * g
            s[i] = b2 * s[i] + (1 - b2) * g * g
            bc1 = 1 - b1**t
            bc2 = 1 - b2**t
            denom = np.sqrt(s[i]) / np.sqrt(bc2) + eps
            values[i] = values[i] - (lr / bc1) * m[i] / denom
    return values


@pytest.mark.parametrize("momentum,wd", [(0.0, 0.0), (0.9, 0.0), (0.9, 0.05)])
def test_sgd_matches_numpy(momentum, wd) -> None:
    params = _params(0)
    start = [p.data.copy() for p in params]
    grads = _grads(0, 5)
    opt = optim.SGD(params, lr=0.05, momentum=momentum, weight_decay=wd)
    _run(opt, params, grads)
    assert opt.steps == 5
    for p, e in zip(params, _numpy_sgd(start, grads, 0.05, momentum, wd)):
        np.testing.assert_allclose(p.data, e, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("wd", [0.0, 0.1])
def test_adam_matches_numpy(wd) -> None:
    params = _params(1)
    start = [p.data.copy() for p in params]
    grads = _grads(1, 5)
    opt = optim.Adam(params, lr=0.01, betas=(0.8, 0.99), eps=1e-6, weight_decay=wd)
    _run(opt, params, grads)
    assert opt.steps == 5
    for p, e in zip(params, _numpy_adam(start, grads, 0.01, 0.8, 0.99, 1e-6, wd, False)):
        np.testing.assert_allclose(p.data, e, rtol=1e-6, atol=1e-6)


def test_adam_defaults_match_numpy() -> None:
    params = _params(2)
    start = [p.data.copy() for p in params]
    grads = _grads(2, 5)
    _run(optim.Adam(params), params, grads)
    for p, e in zip(params, _numpy_adam(start, grads, 1e-3, 0.9, 0.999, 1e-8, 0.0, False)):
        np.testing.assert_allclose(p.data, e, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("wd", [1e-2, 0.3])
def test_adamw_matches_numpy(wd) -> None:
    params = _params(3)
    start = [p.data.copy() for p in params]
    grads = _grads(3, 5)
    _run(optim.AdamW(params, lr=0.02, weight_decay=wd), params, grads)
    expected = _numpy_adam(start, grads, 0.02, 0.9, 0.999, 1e-8, wd, True)
    for p, e in zip(params, expected):
        np.testing.assert_allclose(p.data, e, rtol=1e-6, atol=1e-6)
    # AdamW differs from Adam with L2 for the same weight decay.
    adam = _numpy_adam(start, grads, 0.02, 0.9, 0.999, 1e-8, wd, False)
    assert not np.allclose(adam[0], expected[0], rtol=0, atol=1e-5)


def test_lr_change_between_steps() -> None:
    params = _params(4)
    start = [p.data.copy() for p in params]
    grads = _grads(4, 2)
    opt = optim.SGD(params, lr=0.1)
    _run(opt, params, grads[:1])
    opt.lr = 0.01
    assert opt.lr == pytest.approx(0.01)
    _run(opt, params, grads[1:])
    for p, s, g0, g1 in zip(params, start, grads[0], grads[1]):
        np.testing.assert_allclose(p.data, s - 0.1 * g0 - 0.01 * g1, rtol=1e-6, atol=1e-6)


def test_optimizer_zero_grad() -> None:
    params = _params(5)
    for p in params:
        p.grad[...] = 1.0
    opt = optim.Adam(params)
    opt.zero_grad()
    assert all(not p.grad.any() for p in params)


def test_optimizer_errors() -> None:
    for make in (lambda ps, lr: optim.SGD(ps, lr=lr), lambda ps, lr: optim.Adam(ps, lr=lr),
                 lambda ps, lr: optim.AdamW(ps, lr=lr)):
        with pytest.raises(ValueError):
            make(_params(6), 0.0)
        with pytest.raises(ValueError):
            make(_params(6), -1e-3)
        opt = make(_params(6), 1e-3)
        with pytest.raises(ValueError):
            opt.lr = 0.0
        assert opt.lr == pytest.approx(1e-3)
    with pytest.raises(ValueError):
        optim.SGD(_params(6), lr=0.1, momentum=-0.5)
    with pytest.raises(ValueError):
        optim.Adam(_params(6), betas=(1.0, 0.999))
    with pytest.raises(ValueError):
        optim.SGD([], lr=0.1)
    with pytest.raises(TypeError):
        optim.SGD([np.zeros(3, np.float32)], lr=0.1)


def test_float64_parameter_rejected() -> None:
    params = _params(7)
    opt = optim.SGD(params, lr=0.1)
    params[1].data = params[1].data.astype(np.float64)
    with pytest.raises(TypeError, match=r"\[Optimizer\.step\]"):
        opt.step()
    params = _params(7)
    opt = optim.Adam(params)
    params[0].grad = params[0].grad.astype(np.float64)
    with pytest.raises(TypeError, match=r"\[Optimizer\.step\]"):
        opt.step()


def test_parameter_list_change_rejected() -> None:
    for cls in (optim.SGD, optim.Adam):
        params = _params(8)
        opt = cls(params, lr=0.1)
        opt.step()
        opt.params.append(Parameter(np.zeros(3)))
        with pytest.raises(ValueError):
            opt.step()
        opt.params.pop()
        opt.params.pop()
        with pytest.raises(ValueError):
            opt.step()
        # Same length but a different size in one position.
        opt.params.append(Parameter(np.zeros(7)))
        with pytest.raises(ValueError):
            opt.step()


def test_nan_gradient_rejected_without_update() -> None:
    params = _params(9)
    before = [p.data.copy() for p in params]
    opt = optim.Adam(params)
    params[2].grad[0, 1, 0] = np.nan
    with pytest.raises(ValueError, match=r"not finite"):
        opt.step()
    for p, b in zip(params, before):
        assert np.array_equal(p.data, b)
