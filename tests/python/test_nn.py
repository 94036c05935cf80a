"""Tests for saltatory.nn: the Sequential API, errors, gradients against an independent NumPy BPTT,
sparse vs dense modes, and thread-count determinism."""

from __future__ import annotations

import numpy as np
import pytest

import saltatory
from saltatory import LIF, Readout, RecurrentLIF, Sequential, SpikeTensor


def _input(T, B, N, p, seed):
    rng = np.random.default_rng(seed)
    dense = (rng.random((T, B, N)) < p).astype(np.float32)
    return dense, SpikeTensor.from_dense(dense)


def _small_model(mode="sparse", bias=False, seed=0):
    return Sequential(LIF(8, 10, capacity=10, bias=bias, seed=seed),
                      Readout(10, 3, bias=bias, seed=seed + 1), mode=mode)


# ----------------------------------------------------------------------------- API


def test_forward_readout_returns_float32_membrane() -> None:
    _, x = _input(5, 4, 8, 0.3, seed=0)
    model = _small_model()
    out = model(x)
    assert isinstance(out, np.ndarray)
    assert out.dtype == np.float32 and out.shape == (5, 4, 3)
    assert np.all(np.isfinite(out))
    assert len(model.spikes) == 1 and isinstance(model.spikes[0], SpikeTensor)
    assert model.spikes[0].shape == (5, 4, 10)
    assert model.dropped == [0]


def test_forward_without_readout_returns_spike_tensor() -> None:
    _, x = _input(5, 4, 8, 0.3, seed=1)
    model = Sequential(LIF(8, 12, capacity=6, seed=0), LIF(12, 7, capacity=3, seed=1))
    out = model.forward(x)
    assert isinstance(out, SpikeTensor)
    assert out.shape == (5, 4, 3)
    assert out.n_neurons == 7
    assert out is model.spikes[-1]
    assert len(model.spikes) == 2 and len(model.dropped) == 2
    assert model.spikes[0].shape == (5, 4, 6)
    # Outputs satisfy the list invariants.
    SpikeTensor(out.ids, out.n_spk, out.n_tot, n_neurons=7)
    SpikeTensor(model.spikes[0].ids, model.spikes[0].n_spk, model.spikes[0].n_tot, n_neurons=12)


def test_parameters_and_named_parameters() -> None:
    model = Sequential(LIF(4, 5, seed=0, bias=True), RecurrentLIF(5, 6, seed=1),
                       Readout(6, 2, bias=True, seed=2))
    names = [n for n, _ in model.named_parameters()]
    assert names == ["layers.0.weight", "layers.0.bias", "layers.1.weight", "layers.1.weight_rec",
                     "layers.2.weight", "layers.2.bias"]
    params = model.parameters()
    assert len(params) == 6
    assert params[0] is model.layers[0].weight
    assert params[3] is model.layers[1].weight_rec
    shapes = [p.shape for p in params]
    assert shapes == [(4, 5), (5,), (5, 6), (6, 6), (6, 2), (2,)]
    for p in params:
        assert p.data.dtype == np.float32 and p.grad.dtype == np.float32
        assert p.grad.shape == p.data.shape and not p.grad.any()


def test_zero_grad_and_gradient_accumulation() -> None:
    _, x = _input(6, 3, 8, 0.3, seed=2)
    model = _small_model(bias=True)
    rng = np.random.default_rng(0)
    g = rng.standard_normal((6, 3, 3)).astype(np.float32)
    model(x)
    model.backward(g)
    first = [p.grad.copy() for p in model.parameters()]
    assert any(np.abs(f).sum() > 0 for f in first)
    model(x)
    model.backward(g)  # gradients add up
    for p, f in zip(model.parameters(), first):
        np.testing.assert_allclose(p.grad, 2 * f, rtol=1e-5, atol=1e-6)
    model.zero_grad()
    for p in model.parameters():
        assert not p.grad.any()


def test_state_dict_round_trip() -> None:
    _, x = _input(6, 3, 8, 0.3, seed=3)
    a = Sequential(LIF(8, 10, capacity=10, seed=0, bias=True, alpha=0.9), Readout(10, 3, seed=1))
    a.layers[0].bias.data[:] = np.linspace(-0.2, 0.2, 10, dtype=np.float32)
    b = Sequential(LIF(8, 10, capacity=10, seed=5, bias=True), Readout(10, 3, seed=6))
    state = a.state_dict()
    assert set(state) == {"layers.0.weight", "layers.0.bias", "layers.1.weight", "layers.0.alpha",
                          "layers.0.theta1", "layers.1.alpha"}
    # Copies, not views.
    state["layers.0.weight"][0, 0] += 1.0
    assert a.layers[0].weight.data[0, 0] != state["layers.0.weight"][0, 0]
    state = a.state_dict()
    assert not np.array_equal(a(x), b(x))
    b.load_state_dict(state)
    for name, value in b.state_dict().items():
        assert np.array_equal(value, state[name]), name
    assert np.array_equal(b.layers[0].alpha, np.full(10, 0.9, np.float32))
    assert np.array_equal(a(x), b(x))


def test_load_state_dict_errors() -> None:
    model = _small_model()
    good = model.state_dict()
    bad = dict(good)
    bad["layers.0.weight"] = np.zeros((10, 8), np.float32)
    with pytest.raises(ValueError, match=r"\[Sequential\.load_state_dict\].*shape"):
        model.load_state_dict(bad)
    bad = dict(good)
    del bad["layers.1.weight"]
    with pytest.raises(ValueError, match=r"\[Sequential\.load_state_dict\].*missing"):
        model.load_state_dict(bad)
    bad = dict(good)
    bad["layers.9.weight"] = np.zeros(3, np.float32)
    with pytest.raises(ValueError, match=r"\[Sequential\.load_state_dict\].*unexpected"):
        model.load_state_dict(bad)
    bad = dict(good)
    bad["layers.1.weight"] = good["layers.1.weight"].copy()
    bad["layers.1.weight"][2, 1] = np.nan
    with pytest.raises(ValueError, match=r"\[Sequential\.load_state_dict\].*NaN"):
        model.load_state_dict(bad)
    # A failed load leaves the model unchanged (everything is checked before anything is written).
    for name, value in model.state_dict().items():
        assert np.array_equal(value, good[name]), name


def test_load_state_dict_is_atomic_on_invalid_alpha() -> None:
    """alpha outside [0, 1] is rejected, and nothing is written before the error."""
    model = _small_model()
    good = model.state_dict()
    bad = {name: value + 1.0 if "weight" in name else value for name, value in good.items()}
    bad["layers.1.alpha"] = np.full(3, 1.5, np.float32)
    with pytest.raises(ValueError, match=r"alpha"):
        model.load_state_dict(bad)
    for name, value in model.state_dict().items():
        assert np.array_equal(value, good[name]), f"{name} was modified by a failed load"


def test_backward_twice_and_before_forward() -> None:
    _, x = _input(4, 2, 8, 0.3, seed=4)
    model = _small_model()
    g = np.ones((4, 2, 3), np.float32)
    with pytest.raises(ValueError, match=r"\[Sequential\.backward\]"):
        model.backward(g)
    model(x)
    model.backward(g)
    with pytest.raises(ValueError, match=r"\[Sequential\.backward\]"):
        model.backward(g)
    model(x)
    model.backward(g)  # a new forward allows one more backward


def test_backward_gradient_checks() -> None:
    _, x = _input(4, 2, 8, 0.3, seed=5)
    model = _small_model()
    model(x)
    with pytest.raises(TypeError, match=r"\[lif_stack_backward\]"):
        model.backward(np.ones((4, 2, 3), np.float64))
    with pytest.raises(ValueError, match=r"\[lif_stack_backward\]"):
        model.backward(np.ones((4, 2, 4), np.float32))
    bad = np.ones((4, 2, 3), np.float32)
    bad[1, 1, 1] = np.inf
    with pytest.raises(ValueError, match=r"\[lif_stack_backward\]"):
        model.backward(bad)
    model.backward(np.ones((4, 2, 3), np.float32))  # failed calls did not consume the context


def test_wrong_input_type() -> None:
    dense, _ = _input(4, 2, 8, 0.3, seed=6)
    model = _small_model()
    with pytest.raises(TypeError, match=r"\[Sequential\.forward\]"):
        model(dense)
    with pytest.raises(TypeError):
        Sequential(LIF(3, 4), "not a layer")


def test_construction_errors() -> None:
    with pytest.raises(ValueError, match=r"\[Sequential\]"):
        Sequential(LIF(8, 10), Readout(11, 3))
    with pytest.raises(ValueError, match=r"\[Sequential\]"):
        Sequential(LIF(8, 10), LIF(12, 4))
    with pytest.raises(ValueError, match=r"\[Sequential\]"):
        Sequential(Readout(8, 10), LIF(10, 4))
    with pytest.raises(ValueError, match=r"\[Sequential\]"):
        Sequential()
    with pytest.raises(ValueError, match=r"\[LIF\].*surrogate"):
        LIF(4, 4, surrogate="relu")
    with pytest.raises(ValueError, match=r"\[LIF\].*reset"):
        LIF(4, 4, reset="soft")
    with pytest.raises(ValueError, match=r"\[LIF\].*reset_grad"):
        LIF(4, 4, reset_grad="detach")
    with pytest.raises(ValueError, match=r"\[RecurrentLIF\].*surrogate"):
        RecurrentLIF(4, 4, surrogate="nope")
    with pytest.raises(ValueError, match=r"\[LIF\]"):
        LIF(4, 4, theta1=0.5, theta2=0.9)
    with pytest.raises(ValueError, match=r"\[LIF\]"):
        LIF(4, 4, capacity=0)
    with pytest.raises(ValueError, match=r"\[LIF\]"):
        LIF(0, 4)
    with pytest.raises(ValueError, match=r"\[LIF\]"):
        LIF(4, 4, alpha=1.5)
    with pytest.raises(ValueError, match=r"\[Readout\]"):
        Readout(4, 3, alpha=np.full(4, 0.9))


@pytest.mark.parametrize("kwargs", [{"mode": "fast"}, {"coupling": "async"}, {"overflow": "highest"},
                                    {"device": "gpu"}, {"mode": None}, {"seed": -1}, {"seed": 2**64},
                                    {"seed": 1.5}, {"recompute_segment": 10**12},
                                    {"recompute_segment": "sometimes"}, {"recompute_segment": True}])
def test_bad_settings_are_refused_by_the_constructor(kwargs) -> None:
    with pytest.raises((ValueError, TypeError), match=r"\[Sequential\]"):
        Sequential(LIF(8, 10, seed=0), Readout(10, 3, seed=1), **kwargs)


def test_unavailable_device_is_refused_by_the_constructor() -> None:
    for device in ("cuda", "ipu"):
        if device not in saltatory.available_devices():
            with pytest.raises(ValueError, match=rf"\[device\] {device} is not available"):
                Sequential(LIF(8, 10, seed=0), device=device)


def test_settings_changed_after_construction_are_checked_at_forward() -> None:
    _, x = _input(4, 2, 8, 0.3, seed=7)
    for name, value in (("mode", "fast"), ("coupling", "async"), ("overflow", "highest")):
        model = Sequential(LIF(8, 10, seed=0), Readout(10, 3, seed=1))
        setattr(model, name, value)
        with pytest.raises(ValueError, match=r"\[lif_stack_forward\]"):
            model(x)


def test_surrogate_changed_after_construction_is_checked() -> None:
    _, x = _input(4, 2, 8, 0.3, seed=8)
    model = _small_model()
    model.layers[0].surrogate = "bogus"
    with pytest.raises(ValueError, match=r"\[LIF\].*surrogate"):
        model(x)


def test_nan_weight_rejected() -> None:
    _, x = _input(4, 2, 8, 0.3, seed=9)
    model = _small_model()
    model.layers[0].weight.data[3, 2] = np.nan
    with pytest.raises(ValueError, match=r"\[lif_stack_forward\].*weight"):
        model(x)
    model = _small_model()
    model.layers[1].weight.data[0, 0] = np.inf
    with pytest.raises(ValueError, match=r"\[lif_stack_forward\]"):
        model(x)


def test_input_with_wrong_n_neurons() -> None:
    _, x = _input(4, 2, 9, 0.3, seed=10)
    model = _small_model()
    with pytest.raises(ValueError, match=r"\[lif_stack_forward\]"):
        model(x)


def test_float64_weight_assigned_directly() -> None:
    _, x = _input(4, 2, 8, 0.3, seed=11)
    model = _small_model()
    model.layers[0].weight.data = model.layers[0].weight.data.astype(np.float64)
    with pytest.raises(TypeError, match=r"\[lif_stack_forward\].*weight"):
        model(x)


def test_non_contiguous_weight_rejected() -> None:
    _, x = _input(4, 2, 8, 0.3, seed=12)
    model = _small_model()
    model.layers[1].weight.data = np.asfortranarray(model.layers[1].weight.data)
    with pytest.raises(ValueError, match=r"\[lif_stack_forward\]"):
        model(x)


def test_theta2_can_change_between_calls() -> None:
    _, x = _input(6, 3, 8, 0.4, seed=13)
    model = Sequential(LIF(8, 10, capacity=10, seed=0))
    model(x)
    few = int(model.spikes[0].n_tot.sum() - model.spikes[0].n_spk.sum())
    model.layers[0].theta2 = -100.0
    model(x)
    st = model.spikes[0]
    assert np.all(st.n_tot == 10)  # every neuron is a candidate or a spike
    assert int(st.n_tot.sum() - st.n_spk.sum()) > few


# ----------------------------------------------------------------------------- NumPy reference


def _superspike(x, beta=10.0):
    return 1.0 / (beta * np.abs(x) + 1.0) ** 2


def _numpy_lif_readout(x, W, b, alpha, gain, th1, th2, Wo, bo, alpha_o, gain_o, G, reset_grad,
                       delay=0):
    """Dense forward and BPTT in float64 for one LIF layer + leaky readout.

    x [T,B,Nin] 0/1, G = dL/dVo [T,B,C]; the readout reads the LIF spikes of step t - delay.
    Returns (S, Vo, dW, db, dWo, dbo, dx)."""
    x = x.astype(np.float64)
    T, B, _ = x.shape
    N = W.shape[1]
    C = Wo.shape[1]
    V = np.zeros((T, B, N))
    S = np.zeros((T, B, N))
    v = np.zeros((B, N))
    for t in range(T):
        r = (v > th1).astype(np.float64)
        v = alpha * v * (1 - r) + gain * (1 - alpha) * (b + x[t] @ W)
        V[t] = v
        S[t] = (v > th1)
    S_read = np.zeros_like(S)  # what the readout sees at step t
    S_read[delay:] = S[:T - delay]
    Vo = np.zeros((T, B, C))
    vo = np.zeros((B, C))
    for t in range(T):
        vo = alpha_o * vo + gain_o * (1 - alpha_o) * (bo + S_read[t] @ Wo)
        Vo[t] = vo
    # Readout backward: gradient of the readout's input spikes, then shift back by the delay.
    dWo = np.zeros_like(Wo)
    dbo = np.zeros_like(bo)
    gS_read = np.zeros((T, B, N))
    gvo = np.zeros((B, C))
    for t in reversed(range(T)):
        gvo = alpha_o * gvo + G[t]
        gio = gain_o * (1 - alpha_o) * gvo
        dWo += S_read[t].T @ gio
        dbo += gio.sum(0)
        gS_read[t] = gio @ Wo.T
    gS = np.zeros_like(gS_read)
    gS[:T - delay] = gS_read[delay:]
    # LIF backward.
    dW = np.zeros_like(W)
    db = np.zeros_like(b)
    dx = np.zeros_like(x)
    gv = np.zeros((B, N))
    for t in reversed(range(T)):
        if reset_grad == "pass":
            m = 1.0
        else:  # the reset at t+1 is decided by V[t]
            m = 1.0 - (V[t] > th1)
        gv = alpha * m * gv + gS[t] * _superspike(V[t] - th1) * (V[t] > th2)
        gi = gain * (1 - alpha) * gv
        dW += x[t].T @ gi
        db += gi.sum(0)
        dx[t] = gi @ W.T
    return S, Vo, dW, db, dWo, dbo, dx


def _close(actual, expected, rtol=1e-4):
    actual = np.asarray(actual, np.float64)
    expected = np.asarray(expected, np.float64)
    assert actual.shape == expected.shape
    scale = max(np.abs(expected).max(), 1e-12)
    err = np.abs(actual - expected).max()
    assert err <= rtol * scale, f"max abs error {err:.3g} vs scale {scale:.3g}"


@pytest.mark.parametrize("reset_grad", ["pass", "mask"])
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("mode,coupling", [("sparse", "same_step"), ("dense", "same_step"),
                                           ("sparse", "delayed")])
def test_gradients_match_numpy_bptt(reset_grad: str, bias: bool, mode: str, coupling: str) -> None:
    T, B, n_in, n_out, C = 6, 3, 7, 9, 4
    rng = np.random.default_rng(42)
    dense, x = _input(T, B, n_in, 0.35, seed=21)
    alpha = rng.uniform(0.8, 0.97, n_out).astype(np.float32) if bias else 0.95
    alpha_o = rng.uniform(0.85, 0.97, C).astype(np.float32) if bias else 0.9
    lif = LIF(n_in, n_out, capacity=n_out, theta2=-100.0, reset_grad=reset_grad, bias=bias,
              alpha=alpha, seed=3)
    ro = Readout(n_out, C, bias=bias, alpha=alpha_o, seed=4)
    if bias:
        lif.bias.data[:] = rng.uniform(-0.1, 0.15, n_out)
        ro.bias.data[:] = rng.uniform(-0.5, 0.5, C)
    model = Sequential(lif, ro, mode=mode, coupling=coupling)
    out = model(x)
    G = rng.standard_normal((T, B, C)).astype(np.float32)
    gx = model.backward(G, input_grad=True)

    b_ref = lif.bias.data.astype(np.float64) if bias else np.zeros(n_out)
    bo_ref = ro.bias.data.astype(np.float64) if bias else np.zeros(C)
    S, Vo, dW, db, dWo, dbo, dx = _numpy_lif_readout(
        dense, lif.weight.data.astype(np.float64), b_ref, lif.alpha.astype(np.float64), 10.0, 1.0,
        -100.0, ro.weight.data.astype(np.float64), bo_ref, ro.alpha.astype(np.float64), ro.gain,
        G.astype(np.float64), reset_grad, delay=1 if coupling == "delayed" else 0)

    # The test is only meaningful with spiking activity and resets.
    assert 0.05 < S.mean() < 0.9
    assert np.array_equal(model.spikes[0].to_dense(), S.astype(np.float32))
    assert np.all(model.spikes[0].n_tot == n_out)  # every neuron listed
    assert model.dropped == [0]
    _close(out, Vo)
    _close(lif.weight.grad, dW)
    _close(ro.weight.grad, dWo)
    if bias:
        _close(lif.bias.grad, db)
        _close(ro.bias.grad, dbo)
    # Input-entry gradients: dL/d(entry k) = dx[t, b, ids_k] for k < n_tot.
    assert gx.shape == (T, B, x.capacity) and gx.dtype == np.float32
    expected_gx = np.zeros(gx.shape)
    for t in range(T):
        for b in range(B):
            n = x.n_tot[t, b]
            expected_gx[t, b, :n] = dx[t, b, x.ids[t, b, :n]]
    _close(gx, expected_gx)


def test_reference_reset_grad_conventions_differ() -> None:
    """Guards the NumPy reference: pass and mask must give different gradients here."""
    T, B, n_in, n_out, C = 6, 3, 7, 9, 4
    rng = np.random.default_rng(42)
    dense, x = _input(T, B, n_in, 0.35, seed=21)
    G = rng.standard_normal((T, B, C)).astype(np.float32)
    grads = {}
    for reset_grad in ("pass", "mask"):
        lif = LIF(n_in, n_out, capacity=n_out, theta2=-100.0, reset_grad=reset_grad, seed=3)
        model = Sequential(lif, Readout(n_out, C, seed=4))
        model(x)
        model.backward(G)
        grads[reset_grad] = lif.weight.grad.copy()
    assert not np.allclose(grads["pass"], grads["mask"], rtol=1e-3, atol=1e-6)


def test_masked_surrogate_with_default_theta2() -> None:
    """With theta2 = 0.9 only neurons above 0.9 carry gradient (sparse equals the masked dense BPTT)."""
    T, B, n_in, n_out, C = 6, 3, 7, 9, 4
    rng = np.random.default_rng(7)
    dense, x = _input(T, B, n_in, 0.35, seed=22)
    lif = LIF(n_in, n_out, capacity=n_out, theta2=0.9, seed=3)
    ro = Readout(n_out, C, seed=4)
    model = Sequential(lif, ro)
    out = model(x)
    G = rng.standard_normal((T, B, C)).astype(np.float32)
    model.backward(G)
    S, Vo, dW, _, dWo, _, _ = _numpy_lif_readout(
        dense, lif.weight.data.astype(np.float64), np.zeros(n_out), 0.95, 10.0, 1.0, 0.9,
        ro.weight.data.astype(np.float64), np.zeros(C), 0.95, ro.gain, G.astype(np.float64), "pass")
    assert np.array_equal(model.spikes[0].to_dense(), S.astype(np.float32))
    assert np.any(model.spikes[0].n_tot < n_out)
    _close(out, Vo)
    _close(lif.weight.grad, dW)
    _close(ro.weight.grad, dWo)


# ----------------------------------------------------------------------------- sparse vs dense


def _stack(kind: str, mode: str, capacity_scale: float = 1.0, coupling: str = "same_step",
           readout: bool = True, reset: str = "state", reset_grad: str = "pass"):
    n_in, n1, n2, C = 12, 20, 16, 5
    caps = [max(1, int(n1 * capacity_scale)), max(1, int(n2 * capacity_scale))]
    kw = dict(reset=reset, reset_grad=reset_grad, bias=True)
    if kind == "lif":
        layers = [LIF(n_in, n1, capacity=caps[0], seed=1, **kw), LIF(n1, n2, capacity=caps[1], seed=2, **kw)]
    else:
        layers = [RecurrentLIF(n_in, n1, capacity=caps[0], seed=1, **kw),
                  RecurrentLIF(n1, n2, capacity=caps[1], seed=2, **kw)]
    layers[0].bias.data[:] = np.linspace(-0.05, 0.1, n1, dtype=np.float32)
    layers[1].bias.data[:] = np.linspace(0.1, -0.05, n2, dtype=np.float32)
    if readout:
        layers.append(Readout(n2, C, seed=3, bias=True))
    return Sequential(*layers, mode=mode, coupling=coupling)


def _assert_models_match(a: Sequential, b: Sequential, atol=1e-5) -> None:
    for (name, pa), (_, pb) in zip(a.named_parameters(), b.named_parameters()):
        scale = max(1.0, float(np.abs(pb.grad).max()))
        np.testing.assert_allclose(pa.grad, pb.grad, rtol=0, atol=atol * scale, err_msg=name)


@pytest.mark.parametrize("kind,coupling,reset,reset_grad", [
    ("lif", "same_step", "state", "pass"),
    ("lif", "delayed", "state", "mask"),
    ("recurrent", "same_step", "state", "pass"),
    ("recurrent", "same_step", "spike", "mask"),
    ("recurrent", "delayed", "state", "mask"),
    ("recurrent", "delayed", "spike", "pass"),
])
def test_sparse_equals_dense_with_readout(kind, coupling, reset, reset_grad) -> None:
    T, B = 10, 4
    _, x = _input(T, B, 12, 0.3, seed=30)
    sparse = _stack(kind, "sparse", coupling=coupling, reset=reset, reset_grad=reset_grad)
    dense = _stack(kind, "dense", coupling=coupling, reset=reset, reset_grad=reset_grad)
    out_s, out_d = sparse(x), dense(x)
    np.testing.assert_allclose(out_s, out_d, rtol=0, atol=1e-5 * max(1.0, np.abs(out_d).max()))
    for ls, ld in zip(sparse.spikes, dense.spikes):
        assert np.array_equal(ls.to_dense(), ld.to_dense())
        assert np.array_equal(ls.n_spk, ld.n_spk) and np.array_equal(ls.n_tot, ld.n_tot)
        for t in range(T):
            for b in range(B):
                n = ls.n_tot[t, b]
                assert np.array_equal(ls.ids[t, b, :n], ld.ids[t, b, :n])
    assert any(s.n_spk.sum() > 0 for s in sparse.spikes[1:])  # the top layer is active
    assert sparse.dropped == dense.dropped == [0, 0]
    G = np.random.default_rng(1).standard_normal(out_s.shape).astype(np.float32)
    gx_s = sparse.backward(G, input_grad=True)
    gx_d = dense.backward(G, input_grad=True)
    assert gx_s.shape == gx_d.shape == (T, B, x.capacity)
    assert np.abs(gx_d).max() > 0
    np.testing.assert_allclose(gx_s, gx_d, rtol=0, atol=1e-5 * max(1.0, np.abs(gx_d).max()))
    assert np.abs(sparse.layers[0].weight.grad).max() > 0
    _assert_models_match(sparse, dense)


@pytest.mark.parametrize("kind,coupling", [("lif", "same_step"), ("recurrent", "delayed")])
def test_sparse_equals_dense_spike_output_and_layer_grads(kind, coupling) -> None:
    """No readout: per-neuron gradients on the last layer, plus an extra one on the first layer
    (read at each mode's listed entries), given per neuron or per entry."""
    T, B = 8, 3
    _, x = _input(T, B, 12, 0.3, seed=31)
    sparse = _stack(kind, "sparse", coupling=coupling, readout=False)
    dense = _stack(kind, "dense", coupling=coupling, readout=False)
    out_s, out_d = sparse(x), dense(x)
    assert np.array_equal(out_s.to_dense(), out_d.to_dense())
    rng = np.random.default_rng(2)
    g_top = rng.standard_normal((T, B, 16)).astype(np.float32)  # per neuron
    g_low = rng.standard_normal((T, B, 20)).astype(np.float32)

    def entries(st: SpikeTensor, g_neuron):
        g = np.zeros(st.shape, np.float32)
        for t in range(T):
            for b in range(B):
                n = st.n_tot[t, b]
                g[t, b, :n] = g_neuron[t, b, st.ids[t, b, :n]]
        return g

    for model in (sparse, dense):
        model.backward(grad_neurons=[g_low, g_top])
    _assert_models_match(sparse, dense)
    assert np.abs(sparse.layers[0].weight.grad).max() > 0
    by_neuron = [p.grad.copy() for p in sparse.parameters()]
    sparse.zero_grad()
    sparse(x)
    sparse.backward(grad_entries=[entries(sparse.spikes[0], g_low), entries(sparse.spikes[1], g_top)])
    for a, b in zip(by_neuron, sparse.parameters()):
        np.testing.assert_array_equal(a, b.grad)


def test_small_capacity_sparse_drops_dense_does_not() -> None:
    _, x = _input(10, 4, 12, 0.5, seed=32)
    sparse = _stack("lif", "sparse", capacity_scale=0.1)
    sparse.overflow = "lowest"
    dense = _stack("lif", "dense", capacity_scale=0.1)
    sparse(x)
    dense(x)
    assert sparse.dropped[0] > 0
    assert sparse.spikes[0].dropped == sparse.dropped[0]
    assert dense.dropped == [0, 0]
    assert all(s.dropped == 0 for s in dense.spikes)
    # Dense lists hold every neuron; sparse lists hold at most the capacity.
    assert dense.spikes[0].capacity == 20 and sparse.spikes[0].capacity == 2
    assert sparse.spikes[0].n_tot.max() <= 2
    # Dropped = (spikes the dense run had at layer 0) - kept, when layer 0 sees the same input.
    ref = Sequential(LIF(12, 20, capacity=20, seed=1, bias=True, theta2=1.0))
    ref.layers[0].bias.data[:] = sparse.layers[0].bias.data
    ref(x)
    assert ref.dropped == [0]
    n_spikes = ref.spikes[0].n_spk
    assert sparse.dropped[0] == int(np.maximum(n_spikes - 2, 0).sum())
    # State-based reset ignores drops, so layer 0 keeps the lowest ids of the full spike lists
    # ("lowest" policy) or a sorted subset of them ("random").
    rnd = _stack("lif", "sparse", capacity_scale=0.1)
    rnd.overflow = "random"
    rnd(x)
    assert rnd.dropped[0] == sparse.dropped[0]
    differs = 0
    for t in range(10):
        for b in range(4):
            full = ref.spikes[0].ids[t, b, :n_spikes[t, b]].tolist()
            kept = sparse.spikes[0].ids[t, b, :sparse.spikes[0].n_spk[t, b]].tolist()
            assert kept == full[:2]
            kept_rnd = rnd.spikes[0].ids[t, b, :rnd.spikes[0].n_spk[t, b]].tolist()
            assert len(kept_rnd) == min(2, len(full))
            assert kept_rnd == sorted(kept_rnd) and set(kept_rnd) <= set(full)
            differs += kept_rnd != kept
    assert differs > 0


def test_readout_only_matches_numpy() -> None:
    """A stack that is just a Readout is a leaky integrator of the input spikes."""
    T, B, n_in, C = 7, 3, 6, 4
    dense, x = _input(T, B, n_in, 0.4, seed=34)
    ro = Readout(n_in, C, bias=True, alpha=0.8, gain=2.0, seed=0)
    ro.bias.data[:] = [0.1, -0.2, 0.3, 0.0]
    model = Sequential(ro)
    out = model(x)
    assert model.spikes == [] and model.dropped == []
    W, bo = ro.weight.data.astype(np.float64), ro.bias.data.astype(np.float64)
    v = np.zeros((B, C))
    expected = np.zeros((T, B, C))
    for t in range(T):
        v = 0.8 * v + 2.0 * 0.2 * (bo + dense[t] @ W)
        expected[t] = v
    _close(out, expected, rtol=1e-5)
    G = np.random.default_rng(0).standard_normal((T, B, C)).astype(np.float32)
    gx = model.backward(G, input_grad=True)
    gv = np.zeros((B, C))
    dW = np.zeros_like(W)
    db = np.zeros(C)
    dx = np.zeros((T, B, n_in))
    for t in reversed(range(T)):
        gv = 0.8 * gv + G[t]
        gi = 2.0 * 0.2 * gv
        dW += dense[t].T.astype(np.float64) @ gi
        db += gi.sum(0)
        dx[t] = gi @ W.T
    _close(ro.weight.grad, dW, rtol=1e-5)
    _close(ro.bias.grad, db, rtol=1e-5)
    expected_gx = np.zeros(gx.shape)
    for t in range(T):
        for b in range(B):
            n = x.n_tot[t, b]
            expected_gx[t, b, :n] = dx[t, b, x.ids[t, b, :n]]
    _close(gx, expected_gx, rtol=1e-5)


def test_gradient_form_errors() -> None:
    _, x = _input(4, 2, 8, 0.3, seed=35)
    model = Sequential(LIF(8, 10, capacity=4, seed=0), Readout(10, 3, seed=1))
    model(x)
    g = np.ones((4, 2, 3), np.float32)
    with pytest.raises(ValueError, match=r"\[Sequential\.backward\]"):
        model.backward(g, grad_entries=[None])
    with pytest.raises(ValueError, match=r"\[Sequential\.backward\] layer 1 is a Readout"):
        model.backward(g, grad_entries=[None, g])
    with pytest.raises(ValueError, match=r"\[Sequential\.backward\] layer 1 is a Readout"):
        model.backward(grad_neurons=g)
    with pytest.raises(ValueError, match=r"\[lif_stack_backward\]"):
        model.backward(g, grad_entries=[np.ones((4, 2, 10), np.float32), None])  # K is 4, not 10
    with pytest.raises(ValueError, match=r"\[SpikeTensor\.gather\]"):
        model.backward(g, grad_neurons=[np.ones((4, 2, 4), np.float32), None])  # N is 10, not 4
    with pytest.raises(ValueError, match=r"both grad_entries and grad_neurons"):
        model.backward(g, grad_entries=[np.ones((4, 2, 4), np.float32), None],
                       grad_neurons=[np.ones((4, 2, 10), np.float32), None])
    model.backward(g, grad_entries=[np.ones((4, 2, 4), np.float32), None])


def test_per_neuron_gradient_is_never_taken_for_per_entry() -> None:
    """K == N: a per-neuron [T, B, N] array has the shape of a per-entry one, so a spiking last
    layer accepts neither positionally; each form must be named."""
    _, x = _input(4, 2, 8, 0.3, seed=36)
    model = Sequential(LIF(8, 6, capacity=6, seed=0), LIF(6, 5, capacity=5, theta2=-1.0, seed=1))
    model(x)
    g = np.random.default_rng(0).standard_normal((4, 2, 5)).astype(np.float32)
    with pytest.raises(ValueError, match=r"grad_output is ambiguous"):
        model.backward(g)
    model.backward(grad_neurons=g)
    by_neuron = [p.grad.copy() for p in model.parameters()]
    model.zero_grad()
    model(x)
    model.backward(grad_entries=g)  # read as entries: a different gradient
    assert any(not np.array_equal(a, p.grad) for a, p in zip(by_neuron, model.parameters()))
    model.zero_grad()
    model(x)
    model.backward(grad_entries=model.spikes[-1].gather(g))
    for a, p in zip(by_neuron, model.parameters()):
        np.testing.assert_array_equal(a, p.grad)


def test_input_grad_shape() -> None:
    _, x = _input(5, 3, 8, 0.3, seed=33)
    model = _small_model()
    model(x)
    g = model.backward(np.ones((5, 3, 3), np.float32), input_grad=True)
    assert isinstance(g, np.ndarray) and g.dtype == np.float32
    assert g.shape == (5, 3, x.capacity)
    # Padding entries get no gradient.
    for t in range(5):
        for b in range(3):
            assert not g[t, b, x.n_tot[t, b]:].any()
    model(x)
    assert model.backward(np.ones((5, 3, 3), np.float32)) is None


# ----------------------------------------------------------------------------- threads


@pytest.mark.parametrize("mode", ["sparse", "dense"])
def test_deterministic_across_thread_counts(mode: str) -> None:
    T, B, n_in, n_hidden, C = 12, 16, 40, 300, 6
    _, x = _input(T, B, n_in, 0.2, seed=40)
    G = np.random.default_rng(3).standard_normal((T, B, C)).astype(np.float32)
    results = []
    try:
        for threads in (1, 2, 1):
            saltatory.set_num_threads(threads)
            model = Sequential(RecurrentLIF(n_in, n_hidden, capacity=30, seed=1, bias=True),
                               LIF(n_hidden, n_hidden, capacity=40, seed=2, theta2=0.5),
                               Readout(n_hidden, C, seed=3, bias=True), mode=mode, overflow="random",
                               seed=9)
            out = model(x).copy()
            gx = model.backward(G, input_grad=True)
            results.append((out, gx, [p.grad.copy() for p in model.parameters()],
                            [s.ids.copy() for s in model.spikes], list(model.dropped)))
    finally:
        saltatory.set_num_threads(0)
    ref = results[0]
    assert np.abs(ref[0]).max() > 0 and any(np.abs(g).max() > 0 for g in ref[2])
    for other in results[1:]:
        assert np.array_equal(ref[0], other[0])
        assert np.array_equal(ref[1], other[1])
        for a, b in zip(ref[2], other[2]):
            assert np.array_equal(a, b)
        for a, b in zip(ref[3], other[3]):
            assert np.array_equal(a, b)
        assert ref[4] == other[4]


@pytest.mark.parametrize("segment", [1, 3, "auto", 29, 100])
@pytest.mark.parametrize("learn", [False, True])  # backward from the kept entries, or recomputing
def test_recompute_segment_gives_bitwise_the_stored_gradients(segment, learn) -> None:
    rng = np.random.default_rng(5)
    x = SpikeTensor.from_dense((rng.random((30, 128, 40)) < 0.2).astype(np.float32))
    labels = rng.integers(0, 5, 128).astype(np.int32)

    def run(recompute_segment):
        net = Sequential(LIF(40, 48, 8, seed=1, learn_alpha=learn, learn_threshold=learn),
                         RecurrentLIF(48, 32, 6, bias=True, seed=2),
                         Readout(32, 5, seed=3), recompute_segment=recompute_segment)
        out = net(x)
        _, grad = saltatory.losses.membrane_cross_entropy(out, labels)
        grad_in = net.backward(grad, input_grad=True)
        return out.copy(), [s.ids.copy() for s in net.spikes], [p.grad for p in net.parameters()], grad_in

    stored, recomputed = run(0), run(segment)
    np.testing.assert_array_equal(recomputed[0], stored[0])
    for a, b in zip(recomputed[1], stored[1]):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(recomputed[2], stored[2]):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(recomputed[3], stored[3])


def test_recompute_segment_errors() -> None:
    for bad in (-1, 2.5, "half", True, 2**31):
        with pytest.raises((ValueError, TypeError), match=r"\[Sequential\] recompute_segment"):
            Sequential(LIF(4, 4, 2), recompute_segment=bad)
    for segment in (4, "auto"):
        with pytest.raises(ValueError, match=r"\[Sequential\] recompute_segment needs mode='sparse'"):
            Sequential(LIF(4, 4, 2), mode="dense", recompute_segment=segment)
    net = Sequential(LIF(4, 4, 2), mode="dense")
    net.recompute_segment = 4  # changed after construction: the C++ check still refuses it
    with pytest.raises(ValueError, match=r"\[lif_stack_forward\] recompute_segment needs sparse mode"):
        net(SpikeTensor.from_dense(np.zeros((5, 2, 4), np.float32)))


def test_build_info_reports_the_thread_cap() -> None:
    default = saltatory.build_info()["cpu_threads"]
    try:
        saltatory.set_num_threads(1)
        assert saltatory.build_info()["cpu_threads"] == 1
    finally:
        saltatory.set_num_threads(0)
    assert saltatory.build_info()["cpu_threads"] == default >= 1
