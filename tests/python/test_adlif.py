"""The adaptive LIF with current adaptation (AdaptiveLIF / RecurrentAdaptiveLIF with
adaptation="current": the adLIF of Bittar & Garner 2022) against independent implementations: a
float64 torch-autograd BPTT written here from the model equations, and Norse's LIFAdEx where it is
the same model (no membrane coupling, alpha = 0). Also b = a = 0 against the LIF, sparse against
dense, the devices and checkpointing in time, the Python API (parameters, state dicts, checks,
checkpoints, the torch module, NIR export) and a short training run.

The model, per neuron j (I[t] = x[t] W (+ bias) (+ S[t-1] W_rec), r detached, w[-1] = V[-1] = 0,
S the EMITTED spikes, i.e. a list's first n_spk entries, V[t-1] the membrane before its reset):
    w[t] = rho_j w[t-1] + (1 - rho_j) (a_j V[t-1] + b_j S[t-1])
    V[t] = alpha_j V[t-1] (1 - r[t]) + (1 - alpha_j) (g I[t] - w[t])
    r[t] = H(V[t-1] - theta1_j) (reset "state": every spike, listed or dropped) or the emitted spike
           of t-1 (reset "spike")
    spikes V > theta1_j, candidates theta2 < V <= theta1_j (the LIF's selection); SuperSpike
    1 / (beta |x| + 1)^2 of x = V - theta1_j at listed entries only. reset_grad "pass":
    dV[t]/dV[t-1] = alpha (through the leak); "mask": alpha (1 - r).
The adaptation is differentiated: V[t-1] feeds w[t] through a (dL/dV[t-1] += (1 - rho) a dL/dw[t],
at every neuron, listed or not), and a spike feeds w[t] through b, so its entry gradient includes
(1 - rho) b dL/dw[t], which reaches V through the surrogate at listed entries only. In the
reference below, S is one tensor whose forward value is the emitted 0/1 spike and whose backward is
the surrogate at listed entries (``_Spike``); it feeds the next layer, the recurrence AND the
adaptation, so all three paths are live.

External libraries: no installed package implements the adLIF itself. snnTorch 1.0 has no neuron
with an adaptation current. Norse 1.1's LIFAdEx (adaptive exponential IF) has one: with a vanishing
exponential term (delta_T = 1e-200), no synapse and alpha = 0 it is the adLIF with a = 0 (section
2). Its membrane coupling cannot be compared: Norse's a_decayed[k] reads the post-reset membrane of
call k-1, and it reaches v one call later, so it is a_c v_post[t-2] where the adLIF has
a V[t-1] (pre-reset). dL/da is checked against the float64 reference only.
"""

from __future__ import annotations

import copy
import functools
import pickle

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import saltatory as sal  # noqa: E402
from saltatory import (LIF, AdaptiveLIF, Readout, RecurrentAdaptiveLIF, RecurrentLIF,  # noqa: E402
                       Sequential, SpikeTensor)
from saltatory.torch import SparseSequential  # noqa: E402

from neuron_checks import (Errors, Spike, assert_bitwise, clamp01, grads, lists_of,  # noqa: E402
                           rand_vec, rel_err, results, run, spike_input, torch_ce)

T, B, N_IN, N1, N2, C = 12, 3, 8, 7, 6, 3
LOW = -1e9  # theta2 far below every theta1: every neuron is listed
LABELS = np.array([0, 1, 2], np.int32)

# Relative error is max |actual - expected| / max |expected| over the whole array. Saltatory runs in
# float32 against float64 references: over T = 12 steps with O(10) terms per sum the rounding error
# is O(1e-6) of the largest value; 1e-4 leaves two orders of margin, yet any wrong term (a missing
# adaptation path through the spikes or the membrane, the post-reset membrane in w, a gradient at an
# unlisted entry, a wrong decay) changes the gradients by O(1e-2) or more, and every one of them by
# at least GUARD = 30 RTOL (test_reference_variants_differ; the smallest: detaching the membrane in
# w moves dL/dtheta1 by 0.5 %).
RTOL = 1e-4
_ERRORS = Errors(RTOL)  # worst relative error per comparison kind, printed with -s
_close = _ERRORS.close
_input = spike_input(T, B, N_IN, p=0.35)
_run = functools.partial(run, labels=LABELS)
_rel_err, _rand_vec, _grads, _torch_ce, _clamp01 = rel_err, rand_vec, grads, torch_ce, clamp01
_Spike, _lists_of, _results, _assert_bitwise = Spike, lists_of, results, assert_bitwise
GUARD = 30 * RTOL  # what every wrong variant of the reference must change (most change O(1e-2..1))


def _is_adlif(layer) -> bool:
    return isinstance(layer, AdaptiveLIF) and layer.adaptation == "current"


# ----------------------------------------------------------------------------- float64 reference


def _torch_params(net: Sequential) -> list[dict]:
    """float64 leaf tensors (requires_grad) with the values of every layer's arrays."""
    out = []
    for layer in net.layers:
        p = {"weight": layer.weight.data, "alpha": layer.alpha}
        if getattr(layer, "weight_rec", None) is not None:
            p["weight_rec"] = layer.weight_rec.data
        if layer.bias is not None:
            p["bias"] = layer.bias.data
        if isinstance(layer, LIF):
            p["theta1"] = layer.theta1
        if isinstance(layer, AdaptiveLIF):
            assert _is_adlif(layer), "this reference models adaptation='current' only"
            p["rho"], p["b"], p["a"] = layer.rho, layer.b, layer.a
        out.append({k: torch.tensor(np.array(v, np.float64), requires_grad=True) for k, v in p.items()})
    return out


VARIANTS = ("live", "no_adaptation", "no_coupling", "no_spike_adaptation", "detached_spikes",
            "detached_membrane", "post_reset")


def _reference(net: Sequential, x, params: list[dict], lists=None, variant: str = "live"):
    """Dense float64 forward of ``net`` with autograd, from the model equations alone. ``lists``:
    per layer None or (emitted, listed) masks [T, B, N] taken from Saltatory's forward, which then
    decide which spikes go on (to the next layer, the recurrence, the adaptation and the spike
    reset) and where the surrogate applies; without them, emitted = V > theta1 and listed =
    V > min(theta1, theta2). A learnable decay (alpha, rho) is clamped by _clamp01. ``variant``
    (for the guard test; the model is "live"):
      "no_adaptation":       w = 0 (a and b multiplied by 0)
      "no_coupling":         a multiplied by 0 (spike-triggered adaptation only)
      "no_spike_adaptation": b multiplied by 0 (membrane-driven adaptation only)
      "detached_spikes":     w reads S.detach() (no adaptation path in a spike's entry gradient)
      "detached_membrane":   w reads V[t-1].detach() (no gradient from w back to the membrane)
      "post_reset":          w reads the post-reset membrane V[t-1] (1 - r[t]) (as Norse's AdEx)
    Returns (outputs per layer [T, B, N], membranes per layer)."""
    assert variant in VARIANTS
    inp = x if torch.is_tensor(x) else torch.tensor(x, dtype=torch.float64)
    outs, membranes = [], []
    for li, (layer, p) in enumerate(zip(net.layers, params)):
        if li > 0 and net.coupling == "delayed":
            inp = torch.cat([torch.zeros_like(inp[:1]), inp[:-1]])
        alpha = _clamp01(p["alpha"]) if layer.learn_alpha else p["alpha"]
        spiking = isinstance(layer, LIF)
        adaptive = isinstance(layer, AdaptiveLIF)
        th1 = p.get("theta1")
        if adaptive:
            rho = _clamp01(p["rho"]) if layer.learn_adaptation else p["rho"]
            a_c = p["a"] * 0.0 if variant in ("no_adaptation", "no_coupling") else p["a"]
            b_c = p["b"] * 0.0 if variant in ("no_adaptation", "no_spike_adaptation") else p["b"]
        g = float(np.float32(layer.gain))
        n, batch = layer.n_out, inp.shape[1]
        s_prev = torch.zeros(batch, n, dtype=torch.float64)  # S[t-1]: emitted value, live gradient
        e_prev = torch.zeros(batch, n, dtype=torch.float64)  # the same spikes, a constant
        w = torch.zeros(batch, n, dtype=torch.float64)  # w[0] = 0 (w[-1] = V[-1] = S[-1] = 0)
        vs, ss = [], []
        for t in range(inp.shape[0]):
            current = inp[t] @ p["weight"]
            if "bias" in p:
                current = current + p["bias"]
            if "weight_rec" in p:
                current = current + s_prev @ p["weight_rec"]
            if t == 0:
                v = (1.0 - alpha) * g * current  # V[-1] = 0: no leak, no reset; w[0] = 0
            elif not spiking:
                v = alpha * v + (1.0 - alpha) * g * current
            else:
                if layer.reset == "spike":
                    r = e_prev  # only the emitted spikes of t-1 reset
                else:  # every spike of t-1, detached
                    r = (v.detach() > th1.detach()).to(torch.float64)
                if adaptive:
                    v_in = {"detached_membrane": v.detach(), "post_reset": v * (1.0 - r)}.get(variant, v)
                    s_in = s_prev.detach() if variant == "detached_spikes" else s_prev
                    w = rho * w + (1.0 - rho) * (a_c * v_in + b_c * s_in)  # V[t-1] before its reset
                if layer.reset_grad == "mask":
                    leak = alpha * v * (1.0 - r)
                else:  # pass: a constant offset for dV/dV, but dV/dalpha = V[t-1] (1 - r)
                    leak = alpha * v - alpha * v.detach() * r
                v = leak + (1.0 - alpha) * (g * current - (w if adaptive else 0.0))
            vs.append(v)
            if spiking:
                if lists is not None and lists[li] is not None:
                    emitted = torch.from_numpy(lists[li][0][t])
                    listed = torch.from_numpy(lists[li][1][t])
                else:
                    emitted = (v.detach() > th1.detach()).to(torch.float64)
                    low = torch.minimum(th1.detach(), torch.tensor(float(layer.theta2), dtype=torch.float64))
                    listed = (v.detach() > low).to(torch.float64)
                s = _Spike.apply(v - th1, emitted, listed, float(layer.beta))
                ss.append(s)
                s_prev, e_prev = s, emitted
        membranes.append(torch.stack(vs))
        out = torch.stack(ss) if spiking else membranes[-1]
        outs.append(out)
        inp = out
    return outs, membranes


# per spiking layer (scale, shift) of paper_init's weights at the layers' default gain 10, tuned
# for 5-50 % activity with the adaptation on
WEIGHT_SCALE = {0: (0.15, 0.15), 1: (0.2, 0.25)}


def _adlif_layers(arch: str, reset: str, reset_grad: str, seed: int = 0, *, theta2: float = LOW,
                  capacity: int | None = None, learn: bool = True, b=None, a=None, rho=None):
    """[spiking layers..., Readout] with per-neuron alpha, theta1, rho, b and a (a of both signs),
    all learnable (``learn``), biases on every layer, the default gain 10. arch: "adlif"
    (AdaptiveLIF, adaptation="current"), "radlif" (RecurrentAdaptiveLIF), "stack" (AdaptiveLIF ->
    RecurrentAdaptiveLIF), "mixed" (LIF -> RecurrentAdaptiveLIF), "lif" / "rlif" (the LIF twins of
    "adlif" / "radlif" with the same weights, for b = a = 0). ``b`` / ``a`` / ``rho`` replace the
    drawn values (drawn always, so twins stay aligned)."""
    rng = np.random.default_rng(500 + seed)
    common = dict(theta2=theta2, reset=reset, reset_grad=reset_grad, learn_alpha=learn,
                  learn_threshold=learn, bias=True)
    kinds = {"adlif": [AdaptiveLIF], "radlif": [RecurrentAdaptiveLIF], "lif": [LIF],
             "rlif": [RecurrentLIF], "stack": [AdaptiveLIF, RecurrentAdaptiveLIF],
             "mixed": [LIF, RecurrentAdaptiveLIF]}[arch]
    layers, n_in = [], N_IN
    for k, cls in enumerate(kinds):
        n = N1 if k == 0 else N2
        kw = dict(common, alpha=_rand_vec(rng, 0.8, 0.95, n), theta1=_rand_vec(rng, 0.7, 1.3, n),
                  seed=seed + 1 + k)
        rho_k, b_k, a_k = (_rand_vec(rng, 0.6, 0.95, n), _rand_vec(rng, 1.0, 4.0, n),
                           _rand_vec(rng, -0.6, 1.2, n))
        rho_k, b_k, a_k = (v if given is None else given for v, given in ((rho_k, rho), (b_k, b), (a_k, a)))
        if issubclass(cls, AdaptiveLIF):
            kw.update(adaptation="current", rho=rho_k, b=b_k, a=a_k, learn_adaptation=learn)
        layer = cls(n_in, n, n if capacity is None else capacity, **kw)
        scale, shift = WEIGHT_SCALE[k]
        layer.weight.data[:] = scale * layer.weight.data + shift
        layer.bias.data[:] = rng.uniform(-0.02, 0.04, n)
        if getattr(layer, "weight_rec", None) is not None:
            layer.weight_rec.data *= 0.1
        layers.append(layer)
        n_in = n
    ro = Readout(n_in, C, alpha=_rand_vec(rng, 0.8, 0.95, C), bias=True, seed=seed + 9,
                 learn_alpha=learn)
    ro.bias.data[:] = rng.uniform(-0.3, 0.3, C)
    return layers + [ro]


def _check_lists(net, membranes) -> None:
    """Saltatory's lists are what the reference's membranes select: spikes are V > theta1,
    candidates theta2 < V <= theta1, spikes first, at most K of each list, nothing extra."""
    for i, layer in enumerate(net.layers[:-1]):
        st = net.spikes[i]
        V = membranes[i].detach().numpy()
        th1 = layer.theta1.astype(np.float64)
        spk = V > th1
        cand = (V > layer.theta2) & ~spk
        emitted, listed = _lists_of(st)
        e, lst = emitted.astype(bool), listed.astype(bool)
        assert not np.any(e & ~spk), f"layer {i}: emitted a non-spike"
        assert not np.any(lst & ~e & ~cand), f"layer {i}: listed a non-candidate"
        K = st.ids.shape[2]
        np.testing.assert_array_equal(st.n_spk, np.minimum(spk.sum(-1), K), err_msg=f"layer {i} n_spk")
        np.testing.assert_array_equal(st.n_tot, np.minimum(spk.sum(-1) + cand.sum(-1), K),
                                      err_msg=f"layer {i} n_tot")


def _compare_with_reference(net, x, loss, tag, rtol=RTOL):
    """Saltatory's forward and gradients against the float64 reference fed Saltatory's lists."""
    rng = np.random.default_rng(7)
    G = rng.standard_normal((T, x.shape[1], C)).astype(np.float32)
    out, value = _run(net, x, loss, G)
    lists = [_lists_of(s) for s in net.spikes] + [None]
    params = _torch_params(net)
    outs, membranes = _reference(net, x, params, lists)
    if loss == "ce":
        ref_loss = _torch_ce(outs[-1], LABELS)
    else:
        ref_loss = (outs[-1] * torch.from_numpy(G.astype(np.float64))).sum()
    ref_loss.backward()
    assert abs(value - ref_loss.item()) <= 1e-4 * abs(ref_loss.item()), (value, ref_loss.item())
    _close(out, outs[-1].detach().numpy(), f"{tag} readout:membrane")
    _check_lists(net, membranes)
    names = dict(net.named_parameters())
    checked = set()
    for i, p in enumerate(params):
        for kind, tensor in p.items():
            name = f"layers.{i}.{kind}"
            if name in names:
                _close(names[name].grad, tensor.grad.numpy(), f"{tag} {name}:{kind}", rtol=rtol)
                checked.add(name)
    assert checked == set(names)
    return params, membranes


def _adaptation_current(net, x, layer_index: int = 0) -> np.ndarray:
    """w[t] [T, B, N] of an adLIF layer recomputed from Saltatory's own membranes and lists
    (float64), for the checks that the adaptation is at work."""
    layer = net.layers[layer_index]
    params = _torch_params(net)
    _, membranes = _reference(net, x, params, [_lists_of(s) for s in net.spikes] + [None])
    V = membranes[layer_index].detach().numpy()
    S = _lists_of(net.spikes[layer_index])[0]
    rho, a, b = (np.clip(layer.rho, 0, 1).astype(np.float64), layer.a.astype(np.float64),
                 layer.b.astype(np.float64))
    w = np.zeros_like(V)
    for t in range(1, V.shape[0]):
        w[t] = rho * w[t - 1] + (1 - rho) * (a * V[t - 1] + b * S[t - 1])
    return w


# ----------------------------------------------------------------------------- 1. float64 BPTT


RESETS = [("state", "pass"), ("state", "mask"), ("spike", "pass"), ("spike", "mask")]


@pytest.mark.parametrize("lists", ["all", "drops"])
@pytest.mark.parametrize("reset,reset_grad", RESETS)
@pytest.mark.parametrize("arch", ["adlif", "radlif"])
def test_gradients_match_float64_autograd(arch: str, reset: str, reset_grad: str, lists: str) -> None:
    """weight, weight_rec, bias, alpha, theta1, rho, b and a gradients (every one learnable; a of
    both signs) of an adLIF layer under a learnable Readout (its weight, bias and alpha too). "all":
    theta2 far below theta1 and K = N, so every neuron is listed (membrane cross-entropy). "drops":
    theta2 = 0.3 and K = 2 of 7, so lists overflow (spikes and candidates are dropped, the random
    policy decides which; a dropped spike still resets under "state" but does not adapt) and only
    listed entries carry gradient (linear loss sum(V G))."""
    if lists == "all":
        layers, loss, x = _adlif_layers(arch, reset, reset_grad, seed=3), "ce", _input(11)
    else:
        layers = _adlif_layers(arch, reset, reset_grad, seed=3, theta2=0.3, capacity=2)
        loss, x = "linear", _input(11, p=0.45)
    net = Sequential(*layers)
    _compare_with_reference(net, x, loss, f"{arch}/{reset}/{reset_grad}/{lists}")
    st = net.spikes[0]
    activity = st.to_dense().mean()
    assert 0.05 < activity < 0.6, f"activity {activity}"
    assert np.any(layers[0].a < 0) and np.any(layers[0].a > 0)
    # the adaptation is at work: w reaches O(0.1 .. 1) of the threshold somewhere
    w = _adaptation_current(net, x)
    assert np.abs(w).max() > 0.2, np.abs(w).max()
    if lists == "all":
        assert np.all(st.n_tot == st.n_neurons) and net.dropped == [0]
    else:  # the case tests what it claims: lists full, drops of both kinds, unlisted neurons
        assert net.dropped[0] > 0 and net.dropped_candidates[0] > 0, (net.dropped, net.dropped_candidates)
        assert np.any(st.n_tot - st.n_spk > 0) and np.any(st.n_tot < st.n_neurons)
    for name, p in net.named_parameters():
        assert np.all(np.isfinite(p.grad)) and np.count_nonzero(p.grad) > 0, name


@pytest.mark.parametrize("arch,coupling,loss,reset", [("stack", "delayed", "ce", "state"),
                                                      ("stack", "same_step", "linear", "spike"),
                                                      ("mixed", "same_step", "ce", "state")])
def test_stacked_gradients_match_float64_autograd(arch, coupling, loss, reset) -> None:
    """Two spiking layers (AdaptiveLIF or LIF -> RecurrentAdaptiveLIF -> Readout) with overflowing
    lists: an adLIF layer fed by a spiking layer, whose candidates get gradients through it, and
    whose own spikes get gradients from the next layer and from their adaptation current."""
    net = Sequential(*_adlif_layers(arch, reset, "pass", seed=4, theta2=0.4, capacity=3),
                     coupling=coupling)
    _compare_with_reference(net, _input(12, p=0.4), loss, f"{arch}/{coupling}/{reset}")
    activity = [float(s.to_dense().mean()) for s in net.spikes]
    assert all(0.03 < m < 0.6 for m in activity), activity
    assert net.dropped[0] + net.dropped[1] > 0


EDGE_CASES = ["negative a", "negative b", "rho at 0 and 1", "theta1 below theta2", "a = 0"]


@pytest.mark.parametrize("case", EDGE_CASES)
def test_edge_parameters_match_float64_autograd(case: str) -> None:
    """Parameters at the edges of their ranges: every a negative (w falls as V rises, so the
    coupling excites), a negative b (a spike excites), rho = 0
    (w[t] = a V[t-1] + b S[t-1]) and rho = 1 (w never moves: w = 0, yet dL/drho =
    sum gw (w[t-1] - a V[t-1] - b S[t-1]) is not 0) per neuron, learned thresholds theta1_j below
    theta2 (neurons without candidates: only their spikes are listed), a = 0 (spike-triggered
    adaptation only; dL/da is still not 0); also the input-entry gradient (input_grad=True) against
    the reference's dL/dx at the input spikes."""
    x, loss = _input(11), "ce"
    if case == "negative a":
        layers = _adlif_layers("radlif", "state", "pass", seed=3,
                               a=np.linspace(-1.0, -0.2, N1).astype(np.float32))
    elif case == "negative b":
        layers = _adlif_layers("adlif", "spike", "pass", seed=3,
                               b=np.linspace(-1.5, 2.0, N1).astype(np.float32))
    elif case == "rho at 0 and 1":
        layers = _adlif_layers("adlif", "spike", "mask", seed=3,
                               rho=np.array([0, 1, 0.5, 0, 1, 0.9, 0.2], np.float32))
    elif case == "a = 0":
        layers = _adlif_layers("radlif", "state", "mask", seed=3, a=0.0)
    else:
        layers = _adlif_layers("radlif", "state", "mask", seed=3, theta2=0.7, capacity=4)
        layers[0]._theta1.data[[1, 3]] = 0.55
        x, loss = _input(11, p=0.45), "linear"
    net = Sequential(*layers)
    _compare_with_reference(net, x, loss, case)
    assert 0.05 < net.spikes[0].to_dense().mean() < 0.6, net.spikes[0].to_dense().mean()
    grads = _grads(net)
    if case == "rho at 0 and 1":
        assert np.all(grads["layers.0.rho"][[1, 4]] != 0.0)  # at the clamp's boundary the gradient passes
        w = _adaptation_current(net, x)
        assert np.all(w[..., [1, 4]] == 0.0)
    if case == "a = 0":
        assert np.all(grads["layers.0.a"] != 0.0)
    if case == "theta1 below theta2":
        emitted, listed = _lists_of(net.spikes[0])
        np.testing.assert_array_equal(listed[..., [1, 3]], emitted[..., [1, 3]])
        assert net.dropped[0] > 0
    # the input-entry gradient: the same forward again, then backward with input_grad
    rng = np.random.default_rng(7)
    G = rng.standard_normal((T, x.shape[1], C)).astype(np.float32)
    spikes_in = SpikeTensor.from_dense(x)
    out = net(spikes_in)
    grad = sal.losses.membrane_cross_entropy(out, LABELS)[1] if loss == "ce" else G
    grad_in = net.backward(grad, input_grad=True)
    xt = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    outs, _ = _reference(net, xt, _torch_params(net), [_lists_of(s) for s in net.spikes] + [None])
    ref_loss = (_torch_ce(outs[-1], LABELS) if loss == "ce"
                else (outs[-1] * torch.from_numpy(G.astype(np.float64))).sum())
    ref_loss.backward()
    _close(spikes_in.scatter(grad_in), xt.grad.numpy() * x, f"{case} input:input")


def _reference_grads(net, x, lists=None, variant="live"):
    params = _torch_params(net)
    outs, _ = _reference(net, x, params, lists, variant)
    _torch_ce(outs[-1], LABELS).backward()
    return {k: np.zeros(v.shape) if v.grad is None else v.grad.numpy().copy()
            for k, v in params[0].items()}


def test_reference_variants_differ() -> None:
    """Guards the reference (and so the tests above): removing the adaptation (w = 0), its membrane
    coupling (a = 0) or its spike term (b = 0), detaching the spikes or the membrane where they
    drive w, or driving w by the post-reset membrane, gives other gradients of every parameter, by
    far more than RTOL (at least GUARD = 30 RTOL; mostly 3e-2 .. 1); and with overflowing lists,
    feeding Saltatory's lists matters."""
    for arch in ("adlif", "radlif"):
        for reset in ("state", "spike"):
            net = Sequential(*_adlif_layers(arch, reset, "pass", seed=3))
            x = _input(11)
            net(SpikeTensor.from_dense(x))
            lists = [_lists_of(net.spikes[0]), None]
            live = _reference_grads(net, x, lists)
            for variant in VARIANTS[1:]:
                other = _reference_grads(net, x, lists, variant)
                for kind in ("weight", "alpha", "theta1", "rho", "b", "a"):
                    err = _rel_err(other[kind], live[kind])
                    print(f"  {arch} {reset} {variant} {kind}: {err:.3g}")
                    assert err > GUARD, (arch, reset, variant, kind, err)
            # without the lists fed, the reference selects the same spikes here (nothing overflows)
            own = _reference_grads(net, x)
            for kind in live:
                np.testing.assert_allclose(own[kind], live[kind], rtol=1e-12, atol=1e-12)
    # with overflowing lists, the reference's own selection (every spike and candidate) is not
    # Saltatory's: the tests above must feed it Saltatory's lists
    net = Sequential(*_adlif_layers("adlif", "spike", "mask", seed=3, theta2=0.3, capacity=2))
    x = _input(11, p=0.45)
    net(SpikeTensor.from_dense(x))
    assert net.dropped[0] > 0
    fed = _reference_grads(net, x, [_lists_of(net.spikes[0]), None])
    own = _reference_grads(net, x)
    for kind in ("weight", "alpha", "theta1", "rho", "b", "a"):
        assert _rel_err(fed[kind], own[kind]) > GUARD, kind


# ----------------------------------------------------------------------------- 2. Norse's LIFAdEx


DT = 2.0 ** -10  # a power of two: dt * (1 / dt) = 1 and dt * ((1 - x) / dt) = 1 - x exactly


def _norse_adex_params(alpha, theta1, rho, b):
    """Norse LIFAdExParameters equal to Saltatory's adLIF with a = 0, every parameter a float64 leaf
    (requires_grad) or a function of one, so that autograd gives gradients in Saltatory's terms:
      tau_syn_inv = 1 / dt             i_decayed = i_jump - dt tau_syn_inv i_jump = 0: no synapse
      tau_mem_inv = (1 - alpha) / dt   v_dec = v + (1 - alpha) (v_leak - v + i - a)
      tau_ada_inv = (1 - rho) / dt     a_decayed = a + (1 - rho) (a_c v - a) = rho a (a_c = 0)
      adaptation_spike = (1 - rho) b,  adaptation_current = 0
      delta_T = 1e-200: delta_T exp((v - v_th) / delta_T) is exactly 0 (and so is its gradient)
      for every v below v_th, and Norse's v after a step is at most v_th
      v_leak = v_reset = 0, v_th = theta1, SuperSpike (Norse ignores its alpha: 1 / (|x| + 1)^2,
      Saltatory's super_spike with beta = 1)."""
    from norse.torch.functional.lif_adex import LIFAdExParameters

    def leaf(v):
        return torch.tensor(np.asarray(v, np.float64), requires_grad=True)

    def const(v):
        return torch.tensor(v, dtype=torch.float64)

    leaves = {"alpha": leaf(alpha), "theta1": leaf(theta1), "rho": leaf(rho), "b": leaf(b)}
    p = LIFAdExParameters(adaptation_current=const(0.0),
                          adaptation_spike=(1.0 - leaves["rho"]) * leaves["b"],
                          delta_T=const(1e-200), tau_ada_inv=(1.0 - leaves["rho"]) / DT,
                          tau_syn_inv=const(1.0 / DT), tau_mem_inv=(1.0 - leaves["alpha"]) / DT,
                          v_leak=const(0.0), v_th=leaves["theta1"], v_reset=const(0.0),
                          method="super", alpha=1.0)
    return p, leaves


def _norse_adex_run(step, x, w, w_rec, p, n, G):
    """Norse over x [T, B, N_in] from v = i = a = z = 0. Its input reaches v in the same call
    (i_jump = i + input feeds v_dec), so Norse's z[t] is Saltatory's S[t]; its a after call t-1
    (rho a + (1 - rho) b z[t-1]) is Saltatory's w[t]; its recurrence reads z of the previous call,
    as Saltatory's S[t-1] W_rec. Backward of sum(z G)."""
    from norse.torch.functional.lif_adex import (LIFAdExFeedForwardState, LIFAdExState,
                                                 lif_adex_feed_forward_step, lif_adex_step)

    b_ = x.shape[1]
    zeros = torch.zeros(b_, n, dtype=torch.float64)
    spikes = []
    if step == "feed_forward":
        state = LIFAdExFeedForwardState(v=zeros, i=zeros, a=zeros)
        for xt in torch.tensor(x, dtype=torch.float64):
            z, state = lif_adex_feed_forward_step(xt @ w, state, p, dt=DT)
            spikes.append(z)
    else:
        state = LIFAdExState(z=zeros, v=zeros, i=zeros, a=zeros)
        for xt in torch.tensor(x, dtype=torch.float64):
            z, state = lif_adex_step(xt, state, w.T, w_rec.T, p, dt=DT)
            spikes.append(z)
    spikes = torch.stack(spikes)
    (spikes * torch.from_numpy(G.astype(np.float64))).sum().backward()
    return spikes


@pytest.mark.parametrize("step", ["feed_forward", "recurrent"])
def test_adlif_equals_norse_adex_at_alpha_zero(step: str) -> None:
    """Norse 1.1.0's LIFAdEx (lif_adex_feed_forward_step, what norse.torch.LIFAdExCell runs, and the
    recurrent lif_adex_step; Euler):
        v_dec = v + dt tau_mem_inv (v_leak - v + delta_T exp((v - v_th) / delta_T) + i_jump - a)
        a_dec = a + dt tau_ada_inv (a_c (v - v_leak) - a);   z = H(v_dec - v_th)
        v = (1 - z) v_dec + z v_reset;  a = a_dec + a_spike z;  i_jump = i + input (+ z W_rec)
    With the parameters of _norse_adex_params it is Saltatory's adLIF with a = 0, gain 1, the state
    reset (every spike; K = N here) and SuperSpike at every neuron (theta2 far below theta1).
    Differences: (1) the exponential term, made exactly 0; (2) the membrane coupling a_c reads the
    post-reset membrane one step earlier than the adLIF's a (module docstring): compared at a = 0
    only, and dL/da is not compared; (3) this step keeps z live in the reset, v = (1 - z) v_dec,
    so a spike's gradient includes -v_dec dL/dv; Saltatory's reset is detached. At alpha = 0
    (tau_mem_inv = 1 / dt) dv_dec[t+1]/dv[t] = 1 - dt tau_mem_inv = 0 exactly, so that path
    carries nothing and the gradients are equal; (4) a = a_dec + a_spike z keeps z live too: the
    adaptation is differentiated, as Saltatory's. So this compares Saltatory's spike-triggered
    adaptation path (and the rho, b gradients through tau_ada_inv and a_spike), and the recurrence,
    with an independent implementation: forward spikes bit for bit, every gradient to RTOL, and
    the float64 reference equals Norse to 1e-9. With a leak (alpha in [0.8, 0.95]) the forward
    spikes are still equal bit for bit (the gradients are not: difference (3))."""
    pytest.importorskip("norse.torch")
    from norse.torch.module.lif_adex import LIFAdEx

    n, t_, b_, n_in = 12, 14, 4, 20
    rng = np.random.default_rng(61)
    theta1 = _rand_vec(rng, 0.7, 1.3, n)
    rho = _rand_vec(rng, 0.5, 0.9, n)
    b_vals = _rand_vec(rng, 0.5, 2.0, n)
    x = _input(62, p=0.4, n=n_in, t=t_, b=b_)
    G = rng.standard_normal((t_, b_, n)).astype(np.float32)
    cls = AdaptiveLIF if step == "feed_forward" else RecurrentAdaptiveLIF
    layer = cls(n_in, n, n, adaptation="current", alpha=0.0, theta1=theta1, theta2=LOW, gain=1.0,
                rho=rho, b=b_vals, a=0.0, beta=1.0, reset="state", reset_grad="mask",
                learn_alpha=True, learn_threshold=True, learn_adaptation=True, seed=63)
    layer.weight.data[:] = 0.6 * layer.weight.data + 0.12
    if step == "recurrent":
        layer.weight_rec.data *= 0.3
    net = Sequential(layer)
    ours = net(SpikeTensor.from_dense(x)).to_dense()
    net.backward(grad_neurons=G)
    salt = {"weight": layer.weight.grad, "theta1": layer._theta1.grad, "alpha": layer._alpha.grad,
            "rho": layer._rho.grad, "b": layer._b.grad}
    if step == "recurrent":
        salt["weight_rec"] = layer.weight_rec.grad
    assert np.all(layer._a.grad != 0.0)  # Saltatory's dL/da at a = 0 (no Norse counterpart)

    p, leaves = _norse_adex_params(layer.alpha, layer.theta1, layer.rho, layer.b)
    w = torch.tensor(layer.weight.data.astype(np.float64), requires_grad=True)
    w_rec = None
    if step == "recurrent":
        w_rec = torch.tensor(layer.weight_rec.data.astype(np.float64), requires_grad=True)
    spikes = _norse_adex_run(step, x, w, w_rec, p, n, G)
    theirs = spikes.detach().numpy().astype(np.float32)
    assert 0.05 < theirs.mean() < 0.6, theirs.mean()
    np.testing.assert_array_equal(ours, theirs)
    # the adaptation matters here: without it the spikes differ
    net.layers[0].b = 0.0
    assert not np.array_equal(net(SpikeTensor.from_dense(x)).to_dense(), ours)
    net.layers[0].b = b_vals
    np.testing.assert_array_equal(net(SpikeTensor.from_dense(x)).to_dense(), ours)  # the lists again
    if step == "feed_forward":  # the module runs the same step (forward only, its own initial state)
        with torch.no_grad():
            module = LIFAdEx(p=p, dt=DT)
            w64 = torch.tensor(layer.weight.data, dtype=torch.float64)
            z, _ = module(torch.tensor(x, dtype=torch.float64) @ w64)
        np.testing.assert_array_equal(z.numpy().astype(np.float32), ours)
    norse = {"weight": w.grad.numpy(), **{k: v.grad.numpy() for k, v in leaves.items()}}
    if step == "recurrent":
        norse["weight_rec"] = w_rec.grad.numpy()
    for kind, g in salt.items():
        _close(g, norse[kind], f"norse {step}:norse-{kind}")
        assert np.count_nonzero(g) > 0, kind
    # and the float64 reference agrees with Norse (both float64)
    params = _torch_params(net)
    outs, _ = _reference(net, x, params, [_lists_of(net.spikes[0])])
    (outs[0] * torch.from_numpy(G.astype(np.float64))).sum().backward()
    for kind in salt:
        _close(params[0][kind].grad.numpy(), norse[kind], f"norse {step} vs reference:norse-ref-{kind}",
               rtol=1e-9)
    # with a leak the forward is still the same model: spikes bit for bit
    leaky = copy.deepcopy(layer)
    leaky.alpha = _rand_vec(rng, 0.8, 0.95, n)
    leaky.weight.data[:] = 2.0 * leaky.weight.data
    ours_leaky = Sequential(leaky)(SpikeTensor.from_dense(x)).to_dense()
    p_leaky, _ = _norse_adex_params(leaky.alpha, leaky.theta1, leaky.rho, leaky.b)
    w_leaky = torch.tensor(leaky.weight.data.astype(np.float64), requires_grad=True)
    w_rec_leaky = None if w_rec is None else w_rec.detach().clone().requires_grad_(True)
    theirs_leaky = _norse_adex_run(step, x, w_leaky, w_rec_leaky, p_leaky, n, G)
    assert 0.05 < ours_leaky.mean() < 0.6, ours_leaky.mean()
    np.testing.assert_array_equal(ours_leaky, theirs_leaky.detach().numpy().astype(np.float32))


# ----------------------------------------------------------------------------- 3. b = a = 0


@pytest.mark.parametrize("mode,theta2,capacity", [("sparse", 0.3, 2), ("sparse", LOW, None),
                                                  ("dense", 0.3, None)])
@pytest.mark.parametrize("reset,reset_grad", [("state", "pass"), ("state", "mask"),
                                              ("spike", "mask")])
@pytest.mark.parametrize("arch", ["adlif", "radlif"])
def test_b_and_a_zero_is_the_lif_bit_for_bit(arch, reset, reset_grad, mode, theta2, capacity) -> None:
    """With b = a = 0 (rho anything, 0 and 1 included) w stays exactly 0, V[t] = the LIF's V[t] - 0
    exactly, and gw feeds nothing (gV gets 0 a gw, f = 0 b gw): the same lists (ids, counts,
    drops), readout and gradients of the shared parameters as the LIF twin with the same weights
    and gain, bit for bit. dL/drho = sum gw (w[t-1] - 0) is exactly 0; dL/db =
    sum gw (1 - rho) S[t-1] and dL/da = sum gw (1 - rho) V[t-1], which the LIF has not, are checked
    against the float64 reference."""
    x = _input(13)
    twin = {"adlif": "lif", "radlif": "rlif"}[arch]
    opts = dict(seed=5, theta2=theta2, capacity=capacity)
    rho = np.array([0.0, 1.0, 0.3, 0.9, 0.99, 0.5, 0.7], np.float32)
    adl = Sequential(*_adlif_layers(arch, reset, reset_grad, b=0.0, a=0.0, rho=rho, **opts), mode=mode)
    lif = Sequential(*_adlif_layers(twin, reset, reset_grad, **opts), mode=mode)
    assert adl.layers[0].neuron == "adlif" and lif.layers[0].neuron == "lif"
    assert adl.layers[0].gain == lif.layers[0].gain == 10.0
    out_a, _ = _run(adl, x)
    out_l, _ = _run(lif, x)
    np.testing.assert_array_equal(out_a, out_l)
    sa, sl = adl.spikes[0], lif.spikes[0]
    for what in ("ids", "n_spk", "n_tot"):
        np.testing.assert_array_equal(getattr(sa, what), getattr(sl, what), err_msg=what)
    assert adl.dropped == lif.dropped and adl.dropped_candidates == lif.dropped_candidates
    if capacity is not None:
        assert adl.dropped[0] > 0
    assert 0.05 < sa.to_dense().mean() < 0.6
    ga, gl = _grads(adl), _grads(lif)
    assert set(ga) == set(gl) | {"layers.0.rho", "layers.0.b", "layers.0.a"}
    for name in gl:
        np.testing.assert_array_equal(ga[name], gl[name], err_msg=name)
    assert np.all(ga["layers.0.rho"] == 0.0)
    assert np.count_nonzero(ga["layers.0.b"]) > 0 and np.count_nonzero(ga["layers.0.a"]) > 0
    if mode == "sparse":
        params = _torch_params(adl)
        outs, _ = _reference(adl, x, params, [_lists_of(sa), None])
        _torch_ce(outs[-1], LABELS).backward()
        _close(ga["layers.0.b"], params[0]["b"].grad.numpy(), "b=a=0:b-at-zero")
        _close(ga["layers.0.a"], params[0]["a"].grad.numpy(), "b=a=0:a-at-zero")


# ----------------------------------------------------------------------------- 4. sparse = dense


@pytest.mark.parametrize("theta2", [LOW, 0.3])
@pytest.mark.parametrize("reset,reset_grad", RESETS)
@pytest.mark.parametrize("arch", ["adlif", "radlif", "stack"])
def test_sparse_equals_dense(arch: str, reset: str, reset_grad: str, theta2: float) -> None:
    """mode="sparse" with K = N and theta2 far below theta1 lists every neuron, which is the dense
    baseline's BPTT: the same spikes, the gradients to rounding (the dense mode's GEMMs fuse
    multiply-adds and sum in another order: float32 rounding, ~1e-7 relative per sum, 1e-5 allows ~100 of them).
    With theta2 = 0.3 and K = N nothing overflows either: both modes take the surrogate at the
    same spikes and candidates."""
    x = _input(14, p=0.4)
    results = {}
    for mode in ("sparse", "dense"):
        net = Sequential(*_adlif_layers(arch, reset, reset_grad, seed=6, theta2=theta2), mode=mode)
        out, _ = _run(net, x)
        results[mode] = (out.copy(), [s.to_dense() for s in net.spikes], _grads(net))
        if mode == "sparse":
            results["sparse_lists"] = net.spikes[0]
            assert net.dropped[0] == net.dropped_candidates[0] == 0
    (out_s, spk_s, g_s), (out_d, spk_d, g_d) = results["sparse"], results["dense"]
    for a, b in zip(spk_s, spk_d):
        np.testing.assert_array_equal(a, b)
        assert 0.03 < a.mean() < 0.6
    if theta2 == LOW:
        assert np.all(results["sparse_lists"].n_tot == results["sparse_lists"].n_neurons)
    else:
        assert np.any(results["sparse_lists"].n_tot < results["sparse_lists"].n_neurons)
    _close(out_s, out_d, f"dense {arch}/{reset} readout:dense-membrane", rtol=1e-5)
    assert g_s.keys() == g_d.keys() and {"layers.0.rho", "layers.0.b", "layers.0.a"} <= set(g_s)
    for name in g_s:
        _close(g_s[name], g_d[name], f"dense {arch}/{reset} {name}:dense-{name.split('.')[-1]}",
               rtol=1e-5)


# ----------------------------------------------------------------------------- 5. devices, recompute


@pytest.mark.parametrize("reset,reset_grad,coupling", [("state", "mask", "same_step"),
                                                       ("spike", "pass", "same_step"),
                                                       ("state", "pass", "delayed")])
def test_ipu_model_and_recompute_equal_cpu_bit_for_bit(reset: str, reset_grad: str, coupling: str) -> None:
    """An AdaptiveLIF -> RecurrentAdaptiveLIF -> Readout stack (adaptation="current", lists that
    overflow, every parameter learnable) on device="ipu-model" and with recompute_segment=3,
    against the CPU storing every membrane: bit for bit (the adaptation current w is recomputed
    with V, its adjoints carried across windows). B = 256 makes the CPU's weight-gradient chunk one
    step (256 // B), so the segment of 3 is not rounded up to T."""
    if "ipu-model" not in sal.available_devices():
        pytest.skip("this build has no ipu-model device")
    b_ = 256
    x = _input(15, p=0.35, b=b_)
    labels = np.arange(b_, dtype=np.int32) % C
    variants = {"cpu": {}, "ipu-model": {"device": "ipu-model"}, "recompute": {"recompute_segment": 3}}
    results = {key: _results(Sequential(*_adlif_layers("stack", reset, reset_grad, seed=7, theta2=0.3,
                                                       capacity=2), coupling=coupling, **opts),
                             x, labels)
               for key, opts in variants.items()}
    cpu = results["cpu"]
    assert cpu[3][0] > 0 and cpu[4][0] > 0  # drops happen: the overflow streams are compared too
    assert {"layers.0.rho", "layers.0.b", "layers.0.a", "layers.1.rho", "layers.1.b", "layers.1.a",
            "layers.1.weight_rec"} <= set(cpu[2])
    assert all(np.count_nonzero(cpu[2][k]) > 0 for k in ("layers.0.a", "layers.1.a", "layers.0.rho",
                                                         "layers.1.b"))
    _assert_bitwise(results["ipu-model"], cpu, "ipu-model")
    _assert_bitwise(results["recompute"], cpu, "recompute_segment=3")


def _alif_first(layers, b: float, capacity=None):
    """``layers`` of arch "mixed" (LIF -> RecurrentAdaptiveLIF -> Readout, deep-copied) with the LIF
    replaced by a threshold-adaptation AdaptiveLIF of the same weights, bias, alpha, theta1 and
    options, rho 0.9 and the given b (both learnable)."""
    lif, rest = layers[0], copy.deepcopy(layers[1:])
    alif = AdaptiveLIF(lif.n_in, lif.n_out, lif.capacity if capacity is None else capacity,
                       alpha=lif.alpha, theta1=lif.theta1, theta2=lif.theta2, reset=lif.reset,
                       reset_grad=lif.reset_grad, bias=True, learn_alpha=True,
                       learn_threshold=True, rho=0.9, b=b, learn_adaptation=True)
    alif.weight.data[:] = lif.weight.data
    alif.bias.data[:] = lif.bias.data
    assert alif.adaptation == "threshold" and rest[0].adaptation == "current"
    return [alif, *rest]


def test_threshold_and_current_adaptation_in_one_stack() -> None:
    """AdaptiveLIF(adaptation="threshold") -> RecurrentAdaptiveLIF(adaptation="current") -> Readout:
    two adaptive models (of different state and adjoint counts) in one stack. With the ALIF's b = 0
    it is its LIF twin bit for bit, so the stack equals LIF -> adLIF (whose gradients test_stacked_*
    checks against the float64 reference): lists, drops, readout and every shared gradient, bit for
    bit. With b = 1.5, ipu-model and recompute_segment=3 (B = 256) equal the CPU bit for bit, and
    sparse with K = N equals dense."""
    x = _input(23, p=0.4)
    base = _adlif_layers("mixed", "state", "pass", seed=8, theta2=0.4, capacity=3)
    results = {}
    for key, layers in (("lif", copy.deepcopy(base)), ("alif", _alif_first(base, b=0.0))):
        net = Sequential(*layers)
        results[key] = _results(net, x, LABELS)
    lif, alif = results["lif"], results["alif"]
    assert set(alif[2]) == set(lif[2]) | {"layers.0.rho", "layers.0.b"}
    assert np.all(alif[2]["layers.0.rho"] == 0.0) and np.count_nonzero(alif[2]["layers.0.b"]) > 0
    _assert_bitwise(lif, (*alif[:2], {k: v for k, v in alif[2].items() if k in lif[2]}, *alif[3:]),
                    "ALIF(b = 0) -> adLIF against LIF -> adLIF")
    assert lif[3][0] + lif[3][1] > 0
    # b != 0: the devices and checkpointing in time, and the dense baseline
    if "ipu-model" in sal.available_devices():
        b_ = 256
        xb = _input(24, p=0.35, b=b_)
        labels = np.arange(b_, dtype=np.int32) % C
        runs = {key: _results(Sequential(*_alif_first(base, b=1.5), **opts), xb, labels)
                for key, opts in (("cpu", {}), ("ipu-model", {"device": "ipu-model"}),
                                  ("recompute", {"recompute_segment": 3}))}
        assert runs["cpu"][3][0] > 0 and runs["cpu"][3][1] > 0
        assert all(np.count_nonzero(runs["cpu"][2][k]) > 0 for k in ("layers.0.b", "layers.1.a"))
        _assert_bitwise(runs["ipu-model"], runs["cpu"], "mixed kinds: ipu-model")
        _assert_bitwise(runs["recompute"], runs["cpu"], "mixed kinds: recompute_segment=3")
    full = _adlif_layers("mixed", "state", "pass", seed=8, theta2=LOW)
    dense = {}
    for mode in ("sparse", "dense"):
        net = Sequential(*_alif_first(full, b=1.5), mode=mode)
        out, _ = _run(net, x)
        dense[mode] = (out.copy(), [s.to_dense() for s in net.spikes], _grads(net))
    for a, b in zip(dense["sparse"][1], dense["dense"][1]):
        np.testing.assert_array_equal(a, b)
        assert 0.03 < a.mean() < 0.6
    _close(dense["sparse"][0], dense["dense"][0], "mixed kinds readout:dense-membrane", rtol=1e-5)
    for name, g in dense["sparse"][2].items():
        _close(g, dense["dense"][2][name], f"mixed kinds {name}:dense-{name.split('.')[-1]}", rtol=1e-5)


# ----------------------------------------------------------------------------- 6. Python API


def test_named_parameters_and_state_dict_keys() -> None:
    net = Sequential(AdaptiveLIF(N_IN, N1, N1, adaptation="current", learn_adaptation=True,
                                 theta2=LOW, seed=1),
                     RecurrentAdaptiveLIF(N1, N2, N2, adaptation="current", theta2=LOW, seed=2),
                     Readout(N2, C, seed=3))
    assert [n for n, _ in net.named_parameters()] == [
        "layers.0.weight", "layers.0.rho", "layers.0.b", "layers.0.a", "layers.1.weight",
        "layers.1.weight_rec", "layers.2.weight"]
    assert sorted(net.state_dict()) == sorted([
        "layers.0.weight", "layers.0.alpha", "layers.0.theta1", "layers.0.rho", "layers.0.b",
        "layers.0.a", "layers.1.weight", "layers.1.weight_rec", "layers.1.alpha", "layers.1.theta1",
        "layers.1.rho", "layers.1.b", "layers.1.a", "layers.2.weight", "layers.2.alpha"])
    state = net.state_dict()
    for i, n in ((0, N1), (1, N2)):  # the defaults: rho 0.98, b 1.8, a 0.5
        np.testing.assert_array_equal(state[f"layers.{i}.rho"], np.full(n, 0.98, np.float32))
        np.testing.assert_array_equal(state[f"layers.{i}.b"], np.full(n, 1.8, np.float32))
        np.testing.assert_array_equal(state[f"layers.{i}.a"], np.full(n, 0.5, np.float32))
    assert net.layers[0].neuron == net.layers[1].neuron == "adlif"
    assert net.layers[1].kind == "recurrent_lif" and net.layers[0].adaptation == "current"
    assert isinstance(net.layers[1], RecurrentLIF) and isinstance(net.layers[1], AdaptiveLIF)
    # the threshold adaptation has no a: not in the state, and the property refuses
    alif = AdaptiveLIF(N_IN, N1, N1, learn_adaptation=True, seed=1)
    assert alif.neuron == "alif"
    assert not any(k.endswith(".a") for k in Sequential(alif).state_dict())
    with pytest.raises(AttributeError, match=r"a exists only with adaptation='current'"):
        alif.a  # noqa: B018
    x = _input(16)
    out = net(SpikeTensor.from_dense(x))
    net.backward(sal.losses.membrane_cross_entropy(out, LABELS)[1])
    params = dict(net.named_parameters())
    for kind in ("rho", "b", "a"):
        p = params[f"layers.0.{kind}"]
        assert p.shape == (N1,) and np.count_nonzero(p.grad) > 0, kind
        assert p.data is getattr(net.layers[0], kind)  # the property reads the Parameter
    # a per-neuron a is taken (float32), any finite value of either sign
    layer = AdaptiveLIF(N_IN, N1, N1, adaptation="current", a=np.linspace(-2, 3, N1), seed=0)
    np.testing.assert_array_equal(layer.a, np.linspace(-2, 3, N1).astype(np.float32))
    layer.a = -0.25
    np.testing.assert_array_equal(layer.a, np.full(N1, -0.25, np.float32))


@pytest.mark.parametrize("cls", [AdaptiveLIF, RecurrentAdaptiveLIF])
def test_invalid_options_raise_naming_the_layer(cls) -> None:
    name = cls.__name__
    cur = dict(adaptation="current")
    for what, bad, match in (("a", float("nan"), "a must be finite"),
                             ("a", -np.inf, "a must be finite"),
                             ("a", np.full(N1 - 1, 0.5, np.float32), "a must be a scalar or have shape"),
                             ("a", np.full((N1, 1), 0.5, np.float32), "a must be a scalar or have shape"),
                             ("rho", 1.5, r"rho values must lie in \[0, 1\]"),
                             ("rho", -0.1, r"rho values must lie in \[0, 1\]"),
                             ("b", float("nan"), "b must be finite")):
        with pytest.raises(ValueError, match=rf"^\[{name}\] {match}"):
            cls(N_IN, N1, N1, seed=0, **cur, **{what: bad})
        layer = cls(N_IN, N1, N1, seed=0, **cur)
        with pytest.raises(ValueError, match=rf"^\[{name}\] {match}"):
            setattr(layer, what, bad)
        for kind, default in (("rho", 0.98), ("b", 1.8), ("a", 0.5)):  # unchanged
            np.testing.assert_array_equal(getattr(layer, kind), np.full(N1, default, np.float32))
    with pytest.raises(TypeError, match=rf"^\[{name}\] a must be real"):
        cls(N_IN, N1, N1, seed=0, a="0.5", **cur)
    # a is for the current adaptation only: given with adaptation="threshold" (the default) it raises
    for adaptation in ({}, dict(adaptation="threshold")):
        with pytest.raises(ValueError,
                           match=rf"^\[{name}\] a \(the membrane coupling\) is for adaptation='current'"):
            cls(N_IN, N1, N1, seed=0, a=0.3, **adaptation)
        with pytest.raises(AttributeError, match=rf"^\[{name}\] a exists only"):
            cls(N_IN, N1, N1, seed=0, **adaptation).a = 0.3
    with pytest.raises(ValueError, match=rf"^\[{name}\] .*reset must be 'state' or 'spike'"):
        cls(N_IN, N1, N1, seed=0, reset="subtract", **cur)
    # set after construction, forward refuses it (both modes)
    layer = cls(N_IN, N1, N1, seed=0, **cur)
    layer.reset = "subtract"
    for mode in ("sparse", "dense"):
        with pytest.raises(ValueError, match=rf"^\[{name}\] the adaptive LIF resets to zero"):
            Sequential(layer, mode=mode)(SpikeTensor.from_dense(_input(1)))
    # adaptation changed after construction is checked again at forward: current -> threshold
    # leaves an a that the threshold model does not read, and forward refuses it
    x = SpikeTensor.from_dense(np.ones((3, 2, N_IN), np.float32))
    layer = cls(N_IN, N1, N1, seed=0, **cur)
    layer.adaptation = "threshold"
    with pytest.raises(ValueError, match=rf"^\[{name}\] adaptation is fixed at construction"):
        Sequential(layer)(x)
    layer.adaptation = "currents"
    with pytest.raises(ValueError, match=rf"^\[{name}\] adaptation must be 'threshold' or 'current'"):
        Sequential(layer)(x)
    # an a made non-finite behind the setter's back is refused by the op layer
    layer = cls(N_IN, N1, N1, seed=0, **cur)
    layer._a.data[2] = np.nan
    with pytest.raises(ValueError, match=r"a\[2\] = nan is not finite"):
        Sequential(layer)(x)
    # allowed: a = 0, negative a, per-neuron a of both signs, rho at its boundaries
    for ok in (dict(a=0.0), dict(a=-1.0), dict(a=np.linspace(-1, 1, N1)), dict(rho=0.0), dict(rho=1.0)):
        layer = cls(N_IN, N1, N1, seed=0, **cur, **ok)
        assert layer.a.shape == layer.rho.shape == layer.b.shape == (N1,)
        Sequential(layer)(x)


def test_learnable_rho_outside_unit_interval_is_clamped() -> None:
    """A learnable rho outside [0, 1] (e.g. after an optimiser step) runs as its clamp; its gradient
    is zero where the clamp is active and unchanged elsewhere; the other gradients (a and b
    included) are those of the clamped values, bit for bit; the float64 reference agrees."""
    outside = np.array([0, 2, 5])
    x = _input(18)
    raw_values = _adlif_layers("adlif", "state", "pass", seed=9)[0].rho.copy()
    raw_values[outside] = [1.3, -0.2, 1.0001]
    runs = []
    for values in (raw_values, np.clip(raw_values, 0.0, 1.0)):
        net = Sequential(*_adlif_layers("adlif", "state", "pass", seed=9))
        dict(net.named_parameters())["layers.0.rho"].data[:] = values  # bypasses the setter
        out, _ = _run(net, x)
        runs.append((net, out.copy(), _grads(net)))
    (raw, out_raw, g_raw), (_, out_cl, g_cl) = runs
    np.testing.assert_array_equal(out_raw, out_cl)
    np.testing.assert_array_equal(raw.layers[0].rho, raw_values)  # the Parameter keeps its value
    inside = np.ones(N1, bool)
    inside[outside] = False
    assert np.all(g_raw["layers.0.rho"][outside] == 0.0)
    np.testing.assert_array_equal(g_raw["layers.0.rho"][inside], g_cl["layers.0.rho"][inside])
    assert np.all(g_raw["layers.0.rho"][inside] != 0.0)
    for name in g_raw:
        if name != "layers.0.rho":
            np.testing.assert_array_equal(g_raw[name], g_cl[name], err_msg=name)
    params = _torch_params(raw)
    outs, _ = _reference(raw, x, params, [_lists_of(raw.spikes[0]), None])
    _torch_ce(outs[-1], LABELS).backward()
    _close(g_raw["layers.0.rho"], params[0]["rho"].grad.numpy(), "clamp:rho")


def test_fixed_adaptation_leaves_the_other_gradients_unchanged() -> None:
    """learn_adaptation=False drops rho, b and a from the parameters and changes no other gradient,
    bit for bit; learn_alpha / learn_threshold off likewise leave the adaptation's gradients as
    they are."""
    x = _input(19)
    runs = {}
    for key, flags in (("all", {}), ("fixed adaptation", {"learn_adaptation": False}),
                       ("fixed membrane", {"learn_alpha": False, "learn_threshold": False})):
        layers = _adlif_layers("radlif", "spike", "mask", seed=10, theta2=0.3, capacity=3)
        for attr, value in flags.items():
            setattr(layers[0], attr, value)
        net = Sequential(*layers)
        _run(net, x)
        runs[key] = _grads(net)
    assert set(runs["all"]) - set(runs["fixed adaptation"]) == {"layers.0.rho", "layers.0.b", "layers.0.a"}
    assert set(runs["all"]) - set(runs["fixed membrane"]) == {"layers.0.alpha", "layers.0.theta1"}
    for key in ("fixed adaptation", "fixed membrane"):
        for name, g in runs[key].items():
            np.testing.assert_array_equal(g, runs["all"][name], err_msg=f"{key}: {name}")


def test_state_dict_round_trip() -> None:
    src = Sequential(*_adlif_layers("radlif", "state", "pass", seed=1))
    src.layers[0]._a.data[:] = np.linspace(-0.8, 0.9, N1)
    b_layers = _adlif_layers("radlif", "state", "pass", seed=2)
    b_layers[0].learn_adaptation = False  # fixed rho, b and a are state entries too
    fixed = Sequential(*b_layers)
    learn = Sequential(*_adlif_layers("radlif", "state", "pass", seed=2))
    state = src.state_dict()
    x = _input(17)
    ref = src(SpikeTensor.from_dense(x)).copy()
    for other in (learn, fixed):
        assert not np.array_equal(other.state_dict()["layers.0.a"], state["layers.0.a"])
        other.load_state_dict(state)
        for name, value in other.state_dict().items():
            np.testing.assert_array_equal(value, state[name], err_msg=name)
        np.testing.assert_array_equal(other(SpikeTensor.from_dense(x)), ref)
    # refused: a missing a, a wrong shape, a NaN a; nothing changes
    before = fixed.state_dict()
    bad = dict(state)
    del bad["layers.0.a"]
    with pytest.raises(ValueError, match=r"missing keys \['layers.0.a'\]"):
        fixed.load_state_dict(bad)
    with pytest.raises(ValueError, match="shape"):
        fixed.load_state_dict({**state, "layers.0.a": np.zeros(N1 + 1, np.float32)})
    for target in (fixed, learn):
        with pytest.raises(ValueError, match="NaN"):
            target.load_state_dict({**state, "layers.0.a": np.full(N1, np.nan, np.float32)})
    for name, value in fixed.state_dict().items():
        np.testing.assert_array_equal(value, before[name], err_msg=name)
    # a may be any finite value, fixed or learnable
    fixed.load_state_dict({**state, "layers.0.a": np.full(N1, -3.0, np.float32)})
    np.testing.assert_array_equal(fixed.layers[0].a, np.full(N1, -3.0, np.float32))
    # a threshold-adaptation state has no a: it does not fit
    alif = Sequential(AdaptiveLIF(N_IN, N1, N1, seed=1), Readout(N1, C, seed=2))
    cur = Sequential(AdaptiveLIF(N_IN, N1, N1, adaptation="current", seed=1), Readout(N1, C, seed=2))
    with pytest.raises(ValueError, match=r"missing keys \['layers.0.a'\]"):
        cur.load_state_dict(alif.state_dict())
    with pytest.raises(ValueError, match=r"unexpected keys \['layers.0.a'\]"):
        alif.load_state_dict(cur.state_dict())


def test_checkpoint_round_trip(tmp_path) -> None:
    def build(seed):
        return Sequential(*_adlif_layers("stack", "state", "pass", seed=seed, theta2=0.4))

    x = _input(20, p=0.4)
    net = build(11)
    opt = sal.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(2):
        _run(net, x)
        opt.step()
    state = net.state_dict()
    sal.save_checkpoint(tmp_path / "c.ckpt", net, opt, epoch=4)
    arrays, _ = sal.read_checkpoint(tmp_path / "c.ckpt")
    assert {"net/layers.0.a", "net/layers.1.a", "net/layers.0.rho", "net/layers.1.b"} <= set(arrays)
    out, _ = _run(net, x)
    grads = _grads(net)

    other = build(21)
    other_opt = sal.optim.Adam(other.parameters(), lr=1e-2)
    assert not np.array_equal(other.state_dict()["layers.1.a"], state["layers.1.a"])
    meta = sal.load_checkpoint(tmp_path / "c.ckpt", other, other_opt)
    assert meta["epoch"] == 4
    loaded = other.state_dict()
    assert loaded.keys() == state.keys()
    for name in state:
        np.testing.assert_array_equal(loaded[name], state[name], err_msg=name)
    out_other, _ = _run(other, x)
    np.testing.assert_array_equal(out_other, out)
    for name, g in _grads(other).items():
        np.testing.assert_array_equal(g, grads[name], err_msg=name)
    opt.step()
    other_opt.step()
    for (name, p), q in zip(net.named_parameters(), other.parameters()):
        np.testing.assert_array_equal(p.data, q.data, err_msg=name)

    # a fixed a goes through checkpoints too; a NaN a is refused and nothing changes
    fixed_net = Sequential(*_adlif_layers("adlif", "state", "pass", seed=11, learn=False))
    fixed_net.layers[0].a = np.linspace(-0.5, 0.7, N1)
    sal.save_checkpoint(tmp_path / "f.ckpt", fixed_net)
    target = Sequential(*_adlif_layers("adlif", "state", "pass", seed=12, learn=False))
    sal.load_checkpoint(tmp_path / "f.ckpt", target)
    np.testing.assert_array_equal(target.layers[0].a, fixed_net.layers[0].a)
    fixed_net.layers[0]._a.data[1] = np.nan  # bypasses the setter
    sal.save_checkpoint(tmp_path / "bad.ckpt", fixed_net)
    before = target.state_dict()
    with pytest.raises(sal.CheckpointError):
        sal.load_checkpoint(tmp_path / "bad.ckpt", target)
    for name, value in target.state_dict().items():
        np.testing.assert_array_equal(value, before[name], err_msg=name)
    # a checkpoint of a threshold-adaptation net (no a) does not fit a current-adaptation net
    alif = Sequential(AdaptiveLIF(N_IN, N1, N1, seed=1), Readout(N1, C, seed=2))
    sal.save_checkpoint(tmp_path / "alif.ckpt", alif)
    with pytest.raises(sal.CheckpointError, match=r"layers\.0\.a"):
        sal.load_checkpoint(tmp_path / "alif.ckpt", Sequential(
            AdaptiveLIF(N_IN, N1, N1, adaptation="current", seed=1), Readout(N1, C, seed=2)))


def _module_layers(seed: int, learn_adaptation: bool = True):
    layers = _adlif_layers("radlif", "state", "pass", seed=seed, theta2=0.3, capacity=4)
    layers[0].learn_adaptation = learn_adaptation
    return layers


def test_torch_module_parameters_gradients_and_training() -> None:
    module = SparseSequential(*_module_layers(14))
    params, buffers = dict(module.named_parameters()), dict(module.named_buffers())
    assert set(params) == {"layers_0_weight", "layers_0_weight_rec", "layers_0_bias", "layers_0_alpha",
                           "layers_0_theta1", "layers_0_rho", "layers_0_b", "layers_0_a",
                           "layers_1_weight", "layers_1_bias", "layers_1_alpha"}
    assert set(buffers) == {"layers_0_gain", "layers_1_gain"}
    fixed = SparseSequential(*_module_layers(14, learn_adaptation=False))
    assert not {"layers_0_rho", "layers_0_b", "layers_0_a"} & set(dict(fixed.named_parameters()))
    fixed_buffers = dict(fixed.named_buffers())
    for kind in ("rho", "b", "a"):
        np.testing.assert_array_equal(fixed_buffers[f"layers_0_{kind}"].numpy(),
                                      getattr(fixed.net.layers[0], kind))

    x = torch.from_numpy(_input(22))
    membrane = module(x)
    _torch_ce(membrane, LABELS).backward()
    reference = Sequential(*_module_layers(14))
    out = reference(SpikeTensor.from_dense(x.numpy()))
    np.testing.assert_array_equal(out, membrane.detach().numpy())
    reference.backward(sal.losses.membrane_cross_entropy(out, LABELS)[1])
    ref = {name.replace(".", "_"): p.grad for name, p in reference.named_parameters()}
    assert set(ref) == set(params)
    for name, param in params.items():
        assert torch.count_nonzero(param.grad) > 0, name
        # torch's CE gradient is the library's to float32 rounding of the softmax, so not bitwise
        _close(param.grad.numpy(), ref[name], f"torch module {name}:module-{name.split('_', 2)[2]}",
               rtol=1e-5)
    # with the library's own loss gradient the module is Sequential.backward, bit for bit
    module.zero_grad()
    module(x).backward(torch.from_numpy(sal.losses.membrane_cross_entropy(out, LABELS)[1]))
    for name, param in params.items():
        np.testing.assert_array_equal(param.grad.numpy(), ref[name], err_msg=name)
    # the fixed a buffer is what forward reads
    before = fixed(x).detach().numpy()
    with torch.no_grad():
        fixed.layers_0_a.fill_(-1.0)
    assert not np.array_equal(before, fixed(x).detach().numpy())
    np.testing.assert_array_equal(fixed.net.layers[0].a, np.full(N1, -1.0, np.float32))
    # torch.optim trains the module, rho, b and a included; the stack reads the updated values
    opt = torch.optim.Adam(module.parameters(), lr=1e-2)
    start = {k: getattr(module, k).detach().clone() for k in ("layers_0_rho", "layers_0_b", "layers_0_a")}
    losses = []
    for _ in range(15):
        opt.zero_grad()
        loss = _torch_ce(module(x), LABELS)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    for k, v in start.items():
        assert not torch.equal(getattr(module, k).detach(), v), k
    np.testing.assert_array_equal(module.net.layers[0].a, module.layers_0_a.detach().numpy())
    assert losses[-1] < 0.8 * losses[0], losses
    state = module.state_dict()
    assert {"layers_0_rho", "layers_0_b", "layers_0_a"} <= set(state)
    clone = SparseSequential(*_module_layers(15))
    clone.load_state_dict(state)
    np.testing.assert_array_equal(clone(x).detach().numpy(), module(x).detach().numpy())


@pytest.mark.parametrize("how", ["deepcopy", "pickle"])
def test_deepcopy_and_pickle_after_forward(how: str) -> None:
    net = Sequential(*_adlif_layers("radlif", "state", "mask", seed=13, theta2=0.3, capacity=3))
    x = _input(21)
    out, _ = _run(net, x)  # forward and backward: the net holds a context and gradients
    grads = _grads(net)
    clone = copy.deepcopy(net) if how == "deepcopy" else pickle.loads(pickle.dumps(net))
    assert clone._context is None  # the context is not copied: a forward comes first
    for name, value in net.state_dict().items():
        np.testing.assert_array_equal(clone.state_dict()[name], value, err_msg=name)
    assert clone.layers[0].adaptation == "current" and clone.layers[0].a is not net.layers[0].a
    out_clone, _ = _run(clone, x)
    np.testing.assert_array_equal(out_clone, out)
    for name, g in _grads(clone).items():
        np.testing.assert_array_equal(g, grads[name], err_msg=name)
    clone.layers[0]._a.data[:] = 0.1  # independent storage
    assert not np.array_equal(net.layers[0].a, clone.layers[0].a)


def test_nir_export_refuses_adlif_layers() -> None:
    pytest.importorskip("nir")
    from saltatory.nir import to_nir

    for cls in (AdaptiveLIF, RecurrentAdaptiveLIF):
        net = Sequential(cls(4, 5, 5, adaptation="current", seed=1), Readout(5, 2, seed=2))
        with pytest.raises(ValueError, match=rf"{cls.__name__}"):
            to_nir(net)
    # a stack with an adLIF layer anywhere is refused, not written without it
    net = Sequential(LIF(4, 5, 5, seed=1), AdaptiveLIF(5, 5, 5, adaptation="current", seed=2),
                     Readout(5, 2, seed=3))
    with pytest.raises(ValueError, match=r"layer 1 .*AdaptiveLIF"):
        to_nir(net)


# ----------------------------------------------------------------------------- 7. training


def test_training_lowers_the_loss() -> None:
    """RecurrentAdaptiveLIF (adaptation="current"; learnable alpha, theta1, rho, b, a) + Readout on
    a fixed random task: each class is a fixed random spike pattern, samples are noisy copies (3 %
    of bits flipped). 30 Adam steps must halve the membrane cross-entropy and classify the
    training batch; rho, b and a must move."""
    t_, b_, n_in, h = 20, 24, 30, 32
    rng = np.random.default_rng(40)
    protos = rng.random((C, t_, n_in)) < 0.15
    labels = np.arange(b_, dtype=np.int32) % C
    flips = rng.random((t_, b_, n_in)) < 0.03
    x = (protos[labels].transpose(1, 0, 2) ^ flips).astype(np.float32)
    net = Sequential(RecurrentAdaptiveLIF(n_in, h, 16, adaptation="current", alpha=0.9, rho=0.9,
                                          b=1.0, a=0.3, theta2=0.5, learn_alpha=True,
                                          learn_threshold=True, learn_adaptation=True, seed=41),
                     Readout(h, C, seed=42))
    net.layers[0].weight.data *= 0.4
    opt = sal.optim.Adam(net.parameters(), lr=5e-3)
    spikes = SpikeTensor.from_dense(x)
    start = {k: getattr(net.layers[0], k).copy() for k in ("rho", "b", "a")}
    losses = []
    for _ in range(30):
        out = net(spikes)
        loss, grad = sal.losses.membrane_cross_entropy(out, labels)
        net.zero_grad()
        net.backward(grad)
        opt.step()
        losses.append(loss)
    print("  training losses", losses[0], losses[-1], "activity", net.spikes[0].to_dense().mean())
    assert np.all(np.isfinite(losses))
    assert losses[-1] < 0.5 * losses[0], (losses[0], losses[-1])
    assert (sal.losses.predict(out) == labels).mean() >= 0.8
    for k, v in start.items():
        assert np.abs(getattr(net.layers[0], k) - v).max() > 1e-3, k


def test_print_worst_errors() -> None:
    """Not a check: prints the worst relative errors seen so far (run with -s)."""
    _ERRORS.print_worst()
