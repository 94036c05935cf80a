"""The adaptive-threshold LIF (AdaptiveLIF, RecurrentAdaptiveLIF: the ALIF / LSNN neuron of Bellec
et al. 2018) against independent implementations: a float64 torch-autograd BPTT written here from
the model equations, and Norse's LSNN. Also b = 0 against the LIF, sparse against dense, the
devices and checkpointing in time, the Python API (parameters, state dicts, checks, the clamp of a
learnable rho, checkpoints, the torch module, NIR export) and a short training run.

The model, per neuron j (I[t] = x[t] W (+ bias) (+ S[t-1] W_rec), r detached, a[-1] = V[-1] = 0,
S the EMITTED spikes, i.e. a list's first n_spk entries):
    a[t]     = rho_j a[t-1] + (1 - rho_j) S[t-1]
    theta[t] = theta1_j + b_j a[t]
    V[t]     = alpha_j V[t-1] (1 - r[t]) + g (1 - alpha_j) I[t]
    r[t]     = H(V[t-1] - theta[t-1]) (reset "state": every spike, listed or dropped) or the emitted
               spike of t-1 (reset "spike")
    spikes V > theta[t], candidates theta[t] - (theta1_j - theta2) < V <= theta[t] (the window
    moves with the threshold); SuperSpike 1 / (beta |x| + 1)^2 of x = V - theta[t] at listed
    entries only. reset_grad "pass": dV[t]/dV[t-1] = alpha; "mask": alpha (1 - r).
The adaptation is differentiated like the activity: a spike's entry gradient includes what it does
to the next step's threshold, dL/dS[t] += (1 - rho) dL/da[t+1], and that gradient too reaches V
through the surrogate at listed entries only. In the reference below, S is one tensor whose forward
value is the emitted 0/1 spike and whose backward is the surrogate at listed entries (``_Spike``);
it feeds the next layer, the recurrence AND the adaptation, so all three paths are live.
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
# is O(1e-6) of the largest value (the unit's u = V - b a and V = u + b a add a few roundings of
# |b a| <= |theta|, the same order); 1e-4 leaves two orders of margin, yet any wrong term (a missing
# adaptation path, a surrogate at V - theta1 instead of V - theta[t], a gradient at an unlisted
# entry, a wrong decay) changes the gradients by O(1e-2) or more (test_reference_variants_differ).
RTOL = 1e-4
_ERRORS = Errors(RTOL)  # worst relative error per comparison kind, printed with -s
_close = _ERRORS.close
_input = spike_input(T, B, N_IN, p=0.35)
_run = functools.partial(run, labels=LABELS)
_rel_err, _rand_vec, _grads, _torch_ce, _clamp01 = rel_err, rand_vec, grads, torch_ce, clamp01
_Spike, _lists_of, _results, _assert_bitwise = Spike, lists_of, results, assert_bitwise


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
            p["rho"], p["b"] = layer.rho, layer.b
        out.append({k: torch.tensor(np.array(v, np.float64), requires_grad=True) for k, v in p.items()})
    return out


VARIANTS = ("live", "detached", "no_adaptation", "static_surrogate")


def _reference(net: Sequential, x: np.ndarray, params: list[dict], lists=None, variant: str = "live"):
    """Dense float64 forward of ``net`` with autograd, from the model equations alone. ``lists``:
    per layer None or (emitted, listed) masks [T, B, N] taken from Saltatory's forward, which then
    decide which spikes go on (to the next layer, the recurrence, the adaptation and the spike
    reset) and where the surrogate applies; without them, emitted = V > theta[t] and listed =
    V - theta[t] + theta1 > min(theta1, theta2). A learnable decay (alpha, rho) is clamped by
    _clamp01. ``variant`` (for the guard test; the model is "live"):
      "detached":         the adaptation reads S.detach() (no gradient through the threshold a spike
                          raises: Norse's recurrent lsnn_step)
      "no_adaptation":    b replaced by 0 (theta = theta1)
      "static_surrogate": the surrogate at V - theta1 instead of V - theta[t]
    Returns (outputs per layer [T, B, N], membranes per layer, thresholds theta[t] per layer)."""
    assert variant in VARIANTS
    inp = x if torch.is_tensor(x) else torch.tensor(x, dtype=torch.float64)
    outs, membranes, thresholds = [], [], []
    for li, (layer, p) in enumerate(zip(net.layers, params)):
        if li > 0 and net.coupling == "delayed":
            inp = torch.cat([torch.zeros_like(inp[:1]), inp[:-1]])
        alpha = _clamp01(p["alpha"]) if layer.learn_alpha else p["alpha"]
        spiking = isinstance(layer, LIF)
        adaptive = isinstance(layer, AdaptiveLIF)
        th1 = p.get("theta1")
        if adaptive:
            rho = _clamp01(p["rho"]) if layer.learn_adaptation else p["rho"]
            b = torch.zeros_like(p["b"]) if variant == "no_adaptation" else p["b"]
        g = float(np.float32(layer.gain))
        n, batch = layer.n_out, inp.shape[1]
        s_prev = torch.zeros(batch, n, dtype=torch.float64)  # S[t-1]: emitted value, live gradient
        e_prev = torch.zeros(batch, n, dtype=torch.float64)  # the same spikes, a constant
        adapt = torch.zeros(batch, n, dtype=torch.float64)  # a[0] = 0
        theta = th1
        vs, ss, ths = [], [], []
        for t in range(inp.shape[0]):
            current = inp[t] @ p["weight"]
            if "bias" in p:
                current = current + p["bias"]
            if "weight_rec" in p:
                current = current + s_prev @ p["weight_rec"]
            drive = g * (1.0 - alpha) * current
            theta_prev = theta
            if adaptive and t > 0:
                s_in = s_prev.detach() if variant == "detached" else s_prev
                adapt = rho * adapt + (1.0 - rho) * s_in
            if adaptive:
                theta = th1 + b * adapt  # live in theta1, b, rho and the spikes
            if t == 0:
                v = drive  # V[-1] = 0: no leak, no reset
            elif not spiking:
                v = alpha * v + drive
            else:
                if layer.reset == "spike":
                    r = e_prev  # only the emitted spikes of t-1 reset
                else:  # every spike of t-1 against its threshold of t-1, detached
                    r = (v.detach() > theta_prev.detach()).to(torch.float64)
                if layer.reset_grad == "mask":
                    v = alpha * v * (1.0 - r) + drive
                else:  # pass: a constant offset for dV/dV, but dV/dalpha = V[t-1] (1 - r)
                    v = alpha * v - alpha * v.detach() * r + drive
            vs.append(v)
            if spiking:
                ths.append((theta * torch.ones_like(v)).detach())
                if lists is not None and lists[li] is not None:
                    emitted = torch.from_numpy(lists[li][0][t])
                    listed = torch.from_numpy(lists[li][1][t])
                else:
                    emitted = (v.detach() > theta.detach()).to(torch.float64)
                    low = torch.minimum(th1.detach(), torch.tensor(float(layer.theta2), dtype=torch.float64))
                    listed = ((v - theta + th1).detach() > low).to(torch.float64)
                arg = v - th1 if variant == "static_surrogate" else v - theta
                s = _Spike.apply(arg, emitted, listed, float(layer.beta))
                ss.append(s)
                s_prev, e_prev = s, emitted
        membranes.append(torch.stack(vs))
        thresholds.append(torch.stack(ths) if spiking else None)
        out = torch.stack(ss) if spiking else membranes[-1]
        outs.append(out)
        inp = out
    return outs, membranes, thresholds


# per spiking layer (scale, shift) of paper_init's weights at the layers' default gain 10, tuned
# for 5-50 % activity with the adaptation on
WEIGHT_SCALE = {0: (0.12, 0.1), 1: (0.15, 0.2)}


def _alif_layers(arch: str, reset: str, reset_grad: str, seed: int = 0, *, theta2: float = LOW,
                 capacity: int | None = None, learn: bool = True, b=None, rho=None):
    """[spiking layers..., Readout] with per-neuron alpha, theta1, rho and b, all learnable
    (``learn``), biases on every layer, the default gain 10. arch: "alif" (AdaptiveLIF), "ralif"
    (RecurrentAdaptiveLIF), "stack" (AdaptiveLIF -> RecurrentAdaptiveLIF), "mixed" (LIF ->
    RecurrentAdaptiveLIF), "lif" / "rlif" (the LIF twins of "alif" / "ralif" with the same weights,
    for b = 0). ``b`` / ``rho`` replace the drawn values (drawn always, so twins stay aligned)."""
    rng = np.random.default_rng(300 + seed)
    common = dict(theta2=theta2, reset=reset, reset_grad=reset_grad, learn_alpha=learn,
                  learn_threshold=learn, bias=True)
    kinds = {"alif": [AdaptiveLIF], "ralif": [RecurrentAdaptiveLIF], "lif": [LIF],
             "rlif": [RecurrentLIF], "stack": [AdaptiveLIF, RecurrentAdaptiveLIF],
             "mixed": [LIF, RecurrentAdaptiveLIF]}[arch]
    layers, n_in = [], N_IN
    for k, cls in enumerate(kinds):
        n = N1 if k == 0 else N2
        kw = dict(common, alpha=_rand_vec(rng, 0.8, 0.95, n), theta1=_rand_vec(rng, 0.7, 1.3, n),
                  seed=seed + 1 + k)
        rho_k = _rand_vec(rng, 0.7, 0.95, n) if rho is None else rho
        b_k = _rand_vec(rng, 0.8, 2.5, n)
        b_k = b_k if b is None else b
        if issubclass(cls, AdaptiveLIF):
            kw.update(rho=rho_k, b=b_k, learn_adaptation=learn)
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


def _check_lists(net, membranes, thresholds) -> None:
    """Saltatory's lists are what the reference's membranes select: spikes are V > theta[t],
    candidates theta[t] - (theta1 - theta2) < V <= theta[t], spikes first, at most K of each
    list, nothing extra."""
    for i, layer in enumerate(net.layers[:-1]):
        st = net.spikes[i]
        V = membranes[i].detach().numpy()
        th = thresholds[i].numpy()
        spk = V > th
        cand = (V > th - (layer.theta1.astype(np.float64) - layer.theta2)) & ~spk
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
    outs, membranes, thresholds = _reference(net, x, params, lists)
    if loss == "ce":
        ref_loss = _torch_ce(outs[-1], LABELS)
    else:
        ref_loss = (outs[-1] * torch.from_numpy(G.astype(np.float64))).sum()
    ref_loss.backward()
    assert abs(value - ref_loss.item()) <= 1e-4 * abs(ref_loss.item()), (value, ref_loss.item())
    _close(out, outs[-1].detach().numpy(), f"{tag} readout:membrane")
    _check_lists(net, membranes, thresholds)
    names = dict(net.named_parameters())
    checked = set()
    for i, p in enumerate(params):
        for kind, tensor in p.items():
            name = f"layers.{i}.{kind}"
            if name in names:
                _close(names[name].grad, tensor.grad.numpy(), f"{tag} {name}:{kind}", rtol=rtol)
                checked.add(name)
    assert checked == set(names)
    return params, membranes, thresholds


# ----------------------------------------------------------------------------- 1. float64 BPTT


RESETS = [("state", "pass"), ("state", "mask"), ("spike", "pass"), ("spike", "mask")]


@pytest.mark.parametrize("lists", ["all", "drops"])
@pytest.mark.parametrize("reset,reset_grad", RESETS)
@pytest.mark.parametrize("arch", ["alif", "ralif"])
def test_gradients_match_float64_autograd(arch: str, reset: str, reset_grad: str, lists: str) -> None:
    """weight, weight_rec, bias, alpha, theta1, rho and b gradients (every one learnable) of an
    adaptive layer under a learnable Readout. "all": theta2 far below theta1 and K = N, so every
    neuron is listed (membrane cross-entropy). "drops": theta2 = 0.3 and K = 2 of 7, so lists
    overflow (spikes and candidates are dropped, the random policy decides which; a dropped spike
    still resets under "state" but does not adapt) and only listed entries carry gradient (linear
    loss sum(V G))."""
    if lists == "all":
        layers, loss, x = _alif_layers(arch, reset, reset_grad, seed=3), "ce", _input(11)
    else:
        layers = _alif_layers(arch, reset, reset_grad, seed=3, theta2=0.3, capacity=2)
        loss, x = "linear", _input(11, p=0.45)
    net = Sequential(*layers)
    _, _, thresholds = _compare_with_reference(net, x, loss, f"{arch}/{reset}/{reset_grad}/{lists}")
    st = net.spikes[0]
    activity = st.to_dense().mean()
    assert 0.05 < activity < 0.6, f"activity {activity}"
    # the adaptation is at work: thresholds rose by O(0.1 .. 1) somewhere
    rise = (thresholds[0].numpy() - layers[0].theta1).max()
    assert rise > 0.1, rise
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
    lists: an adaptive layer fed by a spiking layer, whose candidates get gradients through it, and
    whose own spikes get gradients from the next layer and from their thresholds."""
    net = Sequential(*_alif_layers(arch, reset, "pass", seed=4, theta2=0.4, capacity=3),
                     coupling=coupling)
    _compare_with_reference(net, _input(12, p=0.4), loss, f"{arch}/{coupling}/{reset}")
    assert all(s.to_dense().mean() > 0.03 for s in net.spikes)
    assert net.dropped[0] + net.dropped[1] > 0


@pytest.mark.parametrize("case", ["negative b", "rho at 0 and 1", "theta1 below theta2"])
def test_edge_parameters_match_float64_autograd(case: str) -> None:
    """Parameters at the edges of their ranges: a negative b (the threshold falls after a spike),
    rho = 0 (a[t] = S[t-1]) and rho = 1 (a never moves: a = 0, yet dL/drho = sum ga (a - S) is
    not 0) per neuron, and learned thresholds theta1_j below theta2 (neurons without candidates:
    their window theta[t] - (theta1 - theta2) < V <= theta[t] is empty, only spikes are listed);
    also the input-entry gradient (input_grad=True) against the reference's dL/dx at the input
    spikes."""
    x, loss = _input(11), "ce"
    if case == "negative b":
        layers = _alif_layers("ralif", "state", "pass", seed=3,
                              b=np.linspace(-0.8, 2.0, N1).astype(np.float32))
    elif case == "rho at 0 and 1":
        layers = _alif_layers("alif", "spike", "mask", seed=3,
                              rho=np.array([0, 1, 0.5, 0, 1, 0.9, 0.2], np.float32))
    else:
        layers = _alif_layers("ralif", "state", "mask", seed=3, theta2=0.8, capacity=4)
        layers[0]._theta1.data[[1, 3]] = 0.6
        x, loss = _input(11, p=0.45), "linear"
    net = Sequential(*layers)
    params, _, _ = _compare_with_reference(net, x, loss, case)
    assert 0.05 < net.spikes[0].to_dense().mean() < 0.6
    rho_grad = dict(net.named_parameters())["layers.0.rho"].grad
    if case == "rho at 0 and 1":
        assert np.all(rho_grad[[1, 4]] != 0.0)  # at the clamp's boundary the gradient passes
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
    outs, _, _ = _reference(net, xt, _torch_params(net), [_lists_of(s) for s in net.spikes] + [None])
    ref_loss = (_torch_ce(outs[-1], LABELS) if loss == "ce"
                else (outs[-1] * torch.from_numpy(G.astype(np.float64))).sum())
    ref_loss.backward()
    _close(spikes_in.scatter(grad_in), xt.grad.numpy() * x, f"{case} input:input")


def _reference_grads(net, x, lists=None, variant="live"):
    params = _torch_params(net)
    outs, _, _ = _reference(net, x, params, lists, variant)
    _torch_ce(outs[-1], LABELS).backward()
    return {k: np.zeros(v.shape) if v.grad is None else v.grad.numpy().copy()  # b unused: None
            for k, v in params[0].items()}


def test_reference_variants_differ() -> None:
    """Guards the reference (and so the tests above): removing the adaptation (b = 0), detaching it
    (no gradient through the threshold a spike raises) or taking the surrogate at V - theta1
    instead of V - theta[t] gives other gradients, by far more than RTOL; and with overflowing
    lists, feeding Saltatory's lists matters."""
    for arch in ("alif", "ralif"):
        net = Sequential(*_alif_layers(arch, "state", "pass", seed=3))
        x = _input(11)
        net(SpikeTensor.from_dense(x))
        lists = [_lists_of(net.spikes[0]), None]
        live = _reference_grads(net, x, lists)
        for variant in VARIANTS[1:]:
            other = _reference_grads(net, x, lists, variant)
            for kind in ("weight", "alpha", "theta1", "rho", "b"):
                if variant == "no_adaptation" and kind == "rho":
                    continue  # with b = 0, rho has no effect: its gradient is 0
                err = _rel_err(other[kind], live[kind])
                print(f"  {arch} {variant} {kind}: {err:.3g}")
                assert err > 1e-2, (arch, variant, kind, err)
        # without the lists fed, the reference selects the same spikes here (nothing overflows)
        own = _reference_grads(net, x)
        for kind in live:
            np.testing.assert_allclose(own[kind], live[kind], rtol=1e-12, atol=1e-12)
    # with overflowing lists, the reference's own selection (every spike and candidate) is not
    # Saltatory's: the tests above must feed it Saltatory's lists
    net = Sequential(*_alif_layers("alif", "spike", "mask", seed=3, theta2=0.3, capacity=2))
    x = _input(11, p=0.45)
    net(SpikeTensor.from_dense(x))
    assert net.dropped[0] > 0
    fed = _reference_grads(net, x, [_lists_of(net.spikes[0]), None])
    own = _reference_grads(net, x)
    for kind in ("weight", "alpha", "theta1", "rho", "b"):
        assert _rel_err(fed[kind], own[kind]) > 1e-2, kind


# ----------------------------------------------------------------------------- 2. Norse's LSNN


DT = 2.0 ** -10  # a power of two: dt * (1 / dt) = 1 and dt * ((1 - x) / dt) = 1 - x exactly


def _norse_lsnn_params(alpha, theta1, rho, b):
    """Norse LSNNParameters equal to Saltatory's (alpha, theta1, rho, b), every one a float64 leaf
    (requires_grad) or a function of one, so that autograd gives gradients in Saltatory's terms:
      tau_syn_inv = 1 / dt       i_decayed = i - dt tau_syn_inv i = 0: no synapse, i[t] = input[t]
      tau_mem_inv = (1 - alpha) / dt
      tau_adapt_inv = (1 - rho) / dt, beta = b (1 - rho) / rho   (see the Norse tests' docstring)
      v_leak = v_reset = 0, v_th = theta1, SuperSpike (Norse ignores its alpha: 1 / (|x| + 1)^2,
      Saltatory's super_spike with beta = 1)."""
    from norse.torch.functional.lsnn import LSNNParameters

    def leaf(v):
        return torch.tensor(np.asarray(v, np.float64), requires_grad=True)

    leaves = {"alpha": leaf(alpha), "theta1": leaf(theta1), "rho": leaf(rho), "b": leaf(b)}
    zero = torch.tensor(0.0, dtype=torch.float64)
    p = LSNNParameters(tau_syn_inv=torch.tensor(1.0 / DT, dtype=torch.float64),
                       tau_mem_inv=(1.0 - leaves["alpha"]) / DT,
                       tau_adapt_inv=(1.0 - leaves["rho"]) / DT, v_leak=zero,
                       v_th=leaves["theta1"], v_reset=zero,
                       beta=leaves["b"] * (1.0 - leaves["rho"]) / leaves["rho"], method="super",
                       alpha=1.0)
    return p, leaves


def _norse_run(step, x, w, p, n, G=None, with_step0: bool = False):
    """Norse over x [T, B, N_in]: its input reaches the membrane one step later (i[t] feeds
    v[t+1]), so Norse's z[t + 1] is Saltatory's S[t]. Norse's step 0 (v = 0, so z[0] = 0 for
    v_th > 0) is not run but given as the initial state it leaves: v = 0, b = v_th (live:
    db/dv_th = 1), i = the input of step 0. (Running it would add a term Saltatory has not: z[0]
    is 0 but its surrogate sigma'(0 - v_th) passes the adaptation's gradient, beta dL/db, to v_th.)
    Then x[1:] and one step of zeros: the returned z[1..T] are S[0..T-1]. ``with_step0``: run
    step 0 too (from v = i = 0, b = v_th; feed-forward only), for the test that shows its term."""
    from norse.torch.functional.lsnn import LSNNFeedForwardState, LSNNState

    b_ = x.shape[1]
    zeros = torch.zeros(b_, n, dtype=torch.float64)
    th0 = p.v_th * torch.ones(b_, n, dtype=torch.float64)
    xs = list(torch.tensor(x, dtype=torch.float64)) + [torch.zeros(b_, x.shape[2], dtype=torch.float64)]
    spikes = []
    if step == "feed_forward":
        from norse.torch.functional.lsnn import lsnn_feed_forward_step

        state = LSNNFeedForwardState(v=zeros, i=xs[0] @ w, b=th0)
        if with_step0:
            state = LSNNFeedForwardState(v=zeros, i=zeros, b=th0)
            z, state = lsnn_feed_forward_step(xs[0] @ w, state, p, dt=DT)
            assert not z.any()
        for xt in xs[1:]:
            z, state = lsnn_feed_forward_step(xt @ w, state, p, dt=DT)
            spikes.append(z)
    else:
        from norse.torch.functional.lsnn import lsnn_step

        state = LSNNState(z=zeros, v=zeros, i=xs[0] @ w, b=th0)
        w_rec = torch.zeros(n, n, dtype=torch.float64)  # see the docstring: W_rec = 0
        for xt in xs[1:]:
            z, state = lsnn_step(xt, state, w.T, w_rec, p, dt=DT)
            spikes.append(z)
    spikes = torch.stack(spikes)
    if G is not None:
        (spikes * torch.from_numpy(G.astype(np.float64))).sum().backward()
    return spikes


def _norse_case(seed, alpha, n=12, t_=14, b_=4, p_in=0.4, scale=1.0, shift=0.0, b=None,
                reset_grad="mask"):
    rng = np.random.default_rng(seed)
    theta1 = _rand_vec(rng, 0.7, 1.3, n)
    rho = _rand_vec(rng, 0.6, 0.9, n)
    b_vals = _rand_vec(rng, 0.8, 2.0, n) if b is None else np.full(n, b, np.float32)
    x = _input(seed + 1, p=p_in, n=20, t=t_, b=b_)
    G = rng.standard_normal((t_, b_, n)).astype(np.float32)
    layer = AdaptiveLIF(20, n, n, alpha=alpha, theta1=theta1, theta2=LOW, gain=1.0, rho=rho,
                        b=b_vals, beta=1.0, reset="state", reset_grad=reset_grad, learn_alpha=True,
                        learn_threshold=True, learn_adaptation=True, seed=seed + 2)
    layer.weight.data[:] = scale * layer.weight.data + shift
    net = Sequential(layer)
    out = net(SpikeTensor.from_dense(x)).to_dense()
    net.backward(grad_neurons=G)
    return layer, net, x, G, out


def _saltatory_leaf_grads(layer):
    return {"weight": layer.weight.grad, "theta1": layer._theta1.grad, "alpha": layer._alpha.grad,
            "rho": layer._rho.grad, "b": layer._b.grad}


def _norse_leaf_grads(w, leaves):
    return {"weight": w.grad.numpy(), **{k: v.grad.numpy() for k, v in leaves.items()}}


def test_alif_equals_norse_lsnn_feed_forward_at_alpha_zero() -> None:
    """Norse 1.1.0's LSNN (lsnn_feed_forward_step, what norse.torch.LSNNCell runs; Euler):
        v_dec = v + dt tau_mem_inv (v_leak - v + i);  i_dec = (1 - dt tau_syn_inv) i
        b_dec = b + dt tau_adapt_inv (v_th - b);      z = H(v_dec - b_dec)
        v = (1 - z) v_dec + z v_reset;  b = b_dec + beta z;  i = i_dec + input
    Its b is the whole threshold relaxing to v_th (continuous-time, Euler-stepped), Saltatory's
    theta = theta1 + b a. With e = b_dec - v_th, e[t] = rho (e[t-1] + beta z[t-1]) where
    rho = 1 - dt tau_adapt_inv: Saltatory's b a[t] = rho b a[t-1] + b (1 - rho) S[t-1] when
    beta = b (1 - rho) / rho (Norse's jump lands before the decay, Saltatory's after). With no
    synapse (tau_syn_inv = 1 / dt) and v_leak = v_reset = 0, Norse's v_dec[t + 1] is Saltatory's
    V[t] with gain 1 and alpha = 1 - dt tau_mem_inv (the input reaches v one step later), and
    Norse's reset by z[t] (every spike; K = N here) is the state reset.
    Differences: (1) the one-step input delay (compared shifted); (2) this step keeps z live in the
    reset, v = (1 - z) v_dec, so a spike's gradient includes -v_dec dL/dv; Saltatory's reset is
    detached. At alpha = 0 (tau_mem_inv = 1 / dt) dv_dec[t+1]/dv[t] = 1 - dt tau_mem_inv = 0
    exactly, so that reset path carries nothing and the gradients are equal; (3) b = b_dec + beta z
    keeps z live too: the adaptation is differentiated, as Saltatory's; (4) Norse has a step 0
    before Saltatory's first (v = 0, z = 0) whose surrogate sigma'(0 - v_th) would pass
    beta dL/db to v_th (an 8 % difference in dL/dtheta1 here): _norse_run starts from the state it
    leaves (asserted below: run from step 0, only dL/dtheta1 changes). So this compares
    Saltatory's adaptation path (and the rho, b gradients through tau_adapt_inv and beta) with an
    independent implementation: forward spikes bit for bit, every gradient to RTOL."""
    pytest.importorskip("norse.torch")
    from norse.torch.module.lsnn import LSNNCell

    layer, net, x, G, ours = _norse_case(33, alpha=0.0, scale=0.6, shift=0.15)
    p, leaves = _norse_lsnn_params(layer.alpha, layer.theta1, layer.rho, layer.b)
    w = torch.tensor(layer.weight.data.astype(np.float64), requires_grad=True)
    spikes = _norse_run("feed_forward", x, w, p, layer.n_out, G)
    theirs = spikes.detach().numpy().astype(np.float32)
    assert 0.05 < theirs.mean() < 0.6 and theirs[:-1].sum() > 0
    np.testing.assert_array_equal(ours, theirs)
    salt = {k: v.copy() for k, v in _saltatory_leaf_grads(layer).items()}
    # the adaptation matters here: without it the spikes differ
    b_values = layer.b.copy()
    net.layers[0].b = 0.0
    assert not np.array_equal(net(SpikeTensor.from_dense(x)).to_dense(), ours)
    net.layers[0].b = b_values
    # the module LSNNCell runs the same step (forward only: from its own initial state, step 0
    # included, b = v_th.detach() of the same value)
    with torch.no_grad():
        cell = LSNNCell(p=p, dt=DT)
        state, zs = None, []
        w64 = torch.tensor(layer.weight.data, dtype=torch.float64)
        xs = list(torch.tensor(x, dtype=torch.float64)) + [torch.zeros(x.shape[1], 20, dtype=torch.float64)]
        for xt in xs:
            z, state = cell(xt @ w64, state)
            zs.append(z)
    assert not torch.stack(zs)[0].any()
    np.testing.assert_array_equal(torch.stack(zs)[1:].numpy().astype(np.float32), ours)
    norse = _norse_leaf_grads(w, leaves)
    for kind in ("weight", "theta1", "alpha", "rho", "b"):
        _close(salt[kind], norse[kind], f"norse feed-forward:norse-{kind}")
        assert np.count_nonzero(salt[kind]) > 0, kind
    # difference (4): with Norse's step 0 run (its z[0] = 0 in the loss's graph), dL/dtheta1 differs
    p0, leaves0 = _norse_lsnn_params(layer.alpha, layer.theta1, layer.rho, layer.b)
    w0 = torch.tensor(layer.weight.data.astype(np.float64), requires_grad=True)
    spikes0 = _norse_run("feed_forward", x, w0, p0, layer.n_out, G, with_step0=True)
    np.testing.assert_array_equal(spikes0.detach().numpy().astype(np.float32), ours)
    norse0 = _norse_leaf_grads(w0, leaves0)
    for kind in ("weight", "alpha", "rho", "b"):
        np.testing.assert_allclose(norse0[kind], norse[kind], rtol=1e-12, atol=1e-12, err_msg=kind)
    assert _rel_err(salt["theta1"], norse0["theta1"]) > 1e-2


@pytest.mark.parametrize("b", [0.0, None])
def test_alif_forward_equals_norse_lsnn_step(b) -> None:
    """Norse 1.1.0's recurrent lsnn_step (what norse.torch.LSNNRecurrentCell runs) with alpha in
    [0.8, 0.95]: the same equations as the feed-forward step above, but it detaches z in the reset,
    v = (1 - z.detach()) v_dec (Saltatory's reset_grad="mask"), AND in the adaptation,
    b = b_dec + z.detach() beta: in Norse a spike gets no gradient through the threshold it raises;
    in Saltatory (and in Bellec et al.'s LSNN) it does. Also its recurrence reads z of the previous
    call into i, which reaches v one call later: S[t-2] W_rec feeds V[t] where Saltatory's
    S[t-1] W_rec does, so W_rec = 0 here (the recurrence of the adaptive layer is covered by the
    float64 reference).
    Asserted: the forward spikes, bit for bit; Norse's gradients equal the float64 reference with
    the adaptation detached (to 1e-9: both are float64), which checks the reference's membrane,
    threshold and parameter algebra against Norse; with b = 0 (no adaptation) Saltatory's
    gradients, including dL/db = -sum of listed terms a[t], equal Norse's to RTOL; with b != 0
    they differ (the adaptation path, by far more than RTOL) and equal the live reference."""
    pytest.importorskip("norse.torch")
    rng = np.random.default_rng(40)
    alpha = _rand_vec(rng, 0.8, 0.95, 12)
    layer, net, x, G, ours = _norse_case(41, alpha=alpha, scale=4.0, shift=0.6, b=b)
    p, leaves = _norse_lsnn_params(layer.alpha, layer.theta1, layer.rho, layer.b)
    w = torch.tensor(layer.weight.data.astype(np.float64), requires_grad=True)
    spikes = _norse_run("recurrent", x, w, p, layer.n_out, G)
    theirs = spikes.detach().numpy().astype(np.float32)
    assert 0.05 < theirs.mean() < 0.6 and theirs[:-1].sum() > 0
    np.testing.assert_array_equal(ours, theirs)
    salt = _saltatory_leaf_grads(layer)
    norse = _norse_leaf_grads(w, leaves)
    # the reference, with G on the spikes (the layer alone; the reference needs no readout)
    refs = {}
    for variant in ("live", "detached"):
        params = _torch_params(net)
        outs, _, _ = _reference(net, x, params, [_lists_of(net.spikes[0])], variant)
        (outs[0] * torch.from_numpy(G.astype(np.float64))).sum().backward()
        refs[variant] = {k: v.grad.numpy() for k, v in params[0].items()}
    for kind in ("weight", "theta1", "alpha", "rho", "b"):
        _close(norse[kind], refs["detached"][kind], f"norse step vs reference:norse-ref-{kind}",
               rtol=1e-9)
        _close(salt[kind], refs["live"][kind], f"norse step case vs reference:{kind}")
    if b == 0.0:
        assert np.all(salt["rho"] == 0.0) and np.all(np.abs(norse["rho"]) < 1e-12)
        for kind in ("weight", "theta1", "alpha", "b"):
            _close(salt[kind], norse[kind], f"norse step b=0:norse-{kind}")
            assert np.count_nonzero(salt[kind]) > 0, kind
    else:
        for kind in ("weight", "theta1", "rho", "b"):
            err = _rel_err(salt[kind], norse[kind])
            print(f"  saltatory (live adaptation) vs norse (detached) {kind}: {err:.3g}")
            assert err > 1e-2, (kind, err)


# ----------------------------------------------------------------------------- 3. b = 0


@pytest.mark.parametrize("mode,theta2,capacity", [("sparse", 0.3, 2), ("sparse", LOW, None),
                                                  ("dense", 0.3, None)])
@pytest.mark.parametrize("reset,reset_grad", [("state", "pass"), ("state", "mask"),
                                              ("spike", "mask")])
@pytest.mark.parametrize("arch", ["alif", "ralif"])
def test_b_zero_is_the_lif_bit_for_bit(arch, reset, reset_grad, mode, theta2, capacity) -> None:
    """u = V - 0 a = V and V = u + 0 a exactly, ga stays 0 and the adaptation's share f = 0: the
    same lists (ids, counts, drops), readout and gradients of the shared parameters as the LIF twin
    with the same weights and gain, bit for bit. dL/drho = sum ga (a - S) is exactly 0; dL/db =
    -sum of listed terms a[t], which the LIF has not, is checked against the float64 reference."""
    x = _input(13)
    twin = {"alif": "lif", "ralif": "rlif"}[arch]
    opts = dict(seed=5, theta2=theta2, capacity=capacity)
    alif = Sequential(*_alif_layers(arch, reset, reset_grad, b=0.0, **opts), mode=mode)
    lif = Sequential(*_alif_layers(twin, reset, reset_grad, **opts), mode=mode)
    assert alif.layers[0].neuron == "alif" and lif.layers[0].neuron == "lif"
    assert alif.layers[0].gain == lif.layers[0].gain == 10.0
    out_a, _ = _run(alif, x)
    out_l, _ = _run(lif, x)
    np.testing.assert_array_equal(out_a, out_l)
    sa, sl = alif.spikes[0], lif.spikes[0]
    for what in ("ids", "n_spk", "n_tot"):
        np.testing.assert_array_equal(getattr(sa, what), getattr(sl, what), err_msg=what)
    assert alif.dropped == lif.dropped and alif.dropped_candidates == lif.dropped_candidates
    if capacity is not None:
        assert alif.dropped[0] > 0
    assert 0.05 < sa.to_dense().mean() < 0.6
    ga, gl = _grads(alif), _grads(lif)
    assert set(ga) == set(gl) | {"layers.0.rho", "layers.0.b"}
    for name in gl:
        np.testing.assert_array_equal(ga[name], gl[name], err_msg=name)
    assert np.all(ga["layers.0.rho"] == 0.0)
    assert np.count_nonzero(ga["layers.0.b"]) > 0
    if mode == "sparse":
        params = _torch_params(alif)
        outs, _, _ = _reference(alif, x, params, [_lists_of(sa), None])
        _torch_ce(outs[-1], LABELS).backward()
        _close(ga["layers.0.b"], params[0]["b"].grad.numpy(), "b=0:b-at-zero")


# ----------------------------------------------------------------------------- 4. sparse = dense


@pytest.mark.parametrize("theta2", [LOW, 0.3])
@pytest.mark.parametrize("reset,reset_grad", [("state", "pass"), ("state", "mask"),
                                              ("spike", "pass"), ("spike", "mask")])
@pytest.mark.parametrize("arch", ["alif", "ralif", "stack"])
def test_sparse_equals_dense(arch: str, reset: str, reset_grad: str, theta2: float) -> None:
    """mode="sparse" with K = N and theta2 far below theta1 lists every neuron, which is the dense
    baseline's BPTT: the same spikes, the gradients to rounding (the dense mode's GEMMs fuse
    multiply-adds and sum in another order: float32 rounding, ~1e-7 relative per sum, 1e-5 allows ~100 of them).
    With theta2 = 0.3 and K = N nothing overflows either: both modes take the surrogate at the
    same spikes and candidates (the window moving with theta[t])."""
    x = _input(14, p=0.4)
    results = {}
    for mode in ("sparse", "dense"):
        net = Sequential(*_alif_layers(arch, reset, reset_grad, seed=6, theta2=theta2), mode=mode)
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
    assert g_s.keys() == g_d.keys() and {"layers.0.rho", "layers.0.b"} <= set(g_s)
    for name in g_s:
        _close(g_s[name], g_d[name], f"dense {arch}/{reset} {name}:dense-{name.split('.')[-1]}",
               rtol=1e-5)


# ----------------------------------------------------------------------------- 5. devices, recompute


@pytest.mark.parametrize("reset,reset_grad,coupling", [("state", "mask", "same_step"),
                                                       ("spike", "pass", "same_step"),
                                                       ("state", "pass", "delayed")])
def test_ipu_model_and_recompute_equal_cpu_bit_for_bit(reset: str, reset_grad: str, coupling: str) -> None:
    """An AdaptiveLIF -> RecurrentAdaptiveLIF -> Readout stack (lists that overflow, every parameter
    learnable) on device="ipu-model" and with recompute_segment=3, against the CPU storing every
    membrane: bit for bit (the adaptation's state a is recomputed with u, its adjoints carried
    across windows). B = 256 makes the CPU's weight-gradient chunk one step (256 // B), so the
    segment of 3 is not rounded up to T."""
    if "ipu-model" not in sal.available_devices():
        pytest.skip("this build has no ipu-model device")
    b_ = 256
    x = _input(15, p=0.35, b=b_)
    labels = np.arange(b_, dtype=np.int32) % C
    variants = {"cpu": {}, "ipu-model": {"device": "ipu-model"}, "recompute": {"recompute_segment": 3}}
    results = {key: _results(Sequential(*_alif_layers("stack", reset, reset_grad, seed=7, theta2=0.3,
                                                      capacity=2), coupling=coupling, **opts),
                             x, labels)
               for key, opts in variants.items()}
    cpu = results["cpu"]
    assert cpu[3][0] > 0 and cpu[4][0] > 0  # drops happen: the overflow streams are compared too
    assert {"layers.0.rho", "layers.0.b", "layers.1.rho", "layers.1.b",
            "layers.1.weight_rec"} <= set(cpu[2])
    assert all(np.count_nonzero(cpu[2][k]) > 0 for k in ("layers.0.rho", "layers.1.b"))
    _assert_bitwise(results["ipu-model"], cpu, "ipu-model")
    _assert_bitwise(results["recompute"], cpu, "recompute_segment=3")


# ----------------------------------------------------------------------------- 6. Python API


def test_named_parameters_and_state_dict_keys() -> None:
    net = Sequential(AdaptiveLIF(N_IN, N1, N1, learn_adaptation=True, theta2=LOW, seed=1),
                     RecurrentAdaptiveLIF(N1, N2, N2, theta2=LOW, seed=2), Readout(N2, C, seed=3))
    assert [n for n, _ in net.named_parameters()] == [
        "layers.0.weight", "layers.0.rho", "layers.0.b", "layers.1.weight", "layers.1.weight_rec",
        "layers.2.weight"]
    assert sorted(net.state_dict()) == sorted([
        "layers.0.weight", "layers.0.alpha", "layers.0.theta1", "layers.0.rho", "layers.0.b",
        "layers.1.weight", "layers.1.weight_rec", "layers.1.alpha", "layers.1.theta1",
        "layers.1.rho", "layers.1.b", "layers.2.weight", "layers.2.alpha"])
    state = net.state_dict()
    for i, n in ((0, N1), (1, N2)):  # the defaults: rho 0.98, b 1.8
        np.testing.assert_array_equal(state[f"layers.{i}.rho"], np.full(n, 0.98, np.float32))
        np.testing.assert_array_equal(state[f"layers.{i}.b"], np.full(n, 1.8, np.float32))
    assert net.layers[1].neuron == "alif" and net.layers[1].kind == "recurrent_lif"
    assert isinstance(net.layers[1], RecurrentLIF) and isinstance(net.layers[1], AdaptiveLIF)
    assert net.layers[0].adaptation == "threshold"
    assert not any(k.endswith((".rho", ".b")) for k in Sequential(LIF(N_IN, N1, N1)).state_dict())
    x = _input(16)
    out = net(SpikeTensor.from_dense(x))
    net.backward(sal.losses.membrane_cross_entropy(out, LABELS)[1])
    params = dict(net.named_parameters())
    for kind in ("rho", "b"):
        p = params[f"layers.0.{kind}"]
        assert p.shape == (N1,) and np.count_nonzero(p.grad) > 0, kind
        assert p.data is getattr(net.layers[0], kind)  # the property reads the Parameter


def test_state_dict_round_trip() -> None:
    a = Sequential(*_alif_layers("ralif", "state", "pass", seed=1))
    a.layers[0]._rho.data[:] = np.linspace(0.5, 0.9, N1)
    a.layers[0]._b.data[:] = np.linspace(0.3, 2.0, N1)
    b_layers = _alif_layers("ralif", "state", "pass", seed=2)
    b_layers[0].learn_adaptation = False  # fixed rho and b are state entries too
    fixed = Sequential(*b_layers)
    learn = Sequential(*_alif_layers("ralif", "state", "pass", seed=2))
    state = a.state_dict()
    x = _input(17)
    ref = a(SpikeTensor.from_dense(x)).copy()
    for other in (learn, fixed):
        for kind in ("rho", "b"):
            assert not np.array_equal(other.state_dict()[f"layers.0.{kind}"], state[f"layers.0.{kind}"])
        other.load_state_dict(state)
        for name, value in other.state_dict().items():
            np.testing.assert_array_equal(value, state[name], err_msg=name)
        np.testing.assert_array_equal(other(SpikeTensor.from_dense(x)), ref)
    # refused: a missing key, a wrong shape, a fixed rho outside [0, 1], a NaN b; nothing changes
    before = fixed.state_dict()
    bad = dict(state)
    del bad["layers.0.b"]
    with pytest.raises(ValueError, match="missing keys"):
        fixed.load_state_dict(bad)
    with pytest.raises(ValueError, match="shape"):
        fixed.load_state_dict({**state, "layers.0.rho": np.zeros(N1 + 1, np.float32)})
    with pytest.raises(ValueError, match=r"rho values must lie in \[0, 1\]"):
        fixed.load_state_dict({**state, "layers.0.rho": np.full(N1, 1.5, np.float32)})
    with pytest.raises(ValueError, match="NaN"):
        fixed.load_state_dict({**state, "layers.0.b": np.full(N1, np.nan, np.float32)})
    for name, value in fixed.state_dict().items():
        np.testing.assert_array_equal(value, before[name], err_msg=name)
    # a learnable rho outside [0, 1] loads (forward clamps it); b may be any finite value
    learn.load_state_dict({**state, "layers.0.rho": np.full(N1, 1.5, np.float32),
                           "layers.0.b": np.full(N1, -0.5, np.float32)})
    np.testing.assert_array_equal(learn.layers[0].rho, np.full(N1, 1.5, np.float32))


@pytest.mark.parametrize("cls", [AdaptiveLIF, RecurrentAdaptiveLIF])
def test_invalid_options_raise_naming_the_layer(cls) -> None:
    name = cls.__name__
    for what, bad, match in (("rho", 1.5, r"rho values must lie in \[0, 1\]"),
                             ("rho", -0.1, r"rho values must lie in \[0, 1\]"),
                             ("rho", float("nan"), "rho must be finite"),
                             ("rho", np.full(N1 - 1, 0.5, np.float32), "rho must be a scalar or have shape"),
                             ("b", float("nan"), "b must be finite"),
                             ("b", np.inf, "b must be finite"),
                             ("b", np.full(N1 + 1, 0.5, np.float32), "b must be a scalar or have shape"),
                             ("b", np.full((N1, 1), 0.5, np.float32), "b must be a scalar or have shape")):
        with pytest.raises(ValueError, match=rf"^\[{name}\] {match}"):
            cls(N_IN, N1, N1, seed=0, **{what: bad})
        layer = cls(N_IN, N1, N1, seed=0)
        with pytest.raises(ValueError, match=rf"^\[{name}\] {match}"):
            setattr(layer, what, bad)
        np.testing.assert_array_equal(layer.rho, np.full(N1, 0.98, np.float32))  # unchanged
        np.testing.assert_array_equal(layer.b, np.full(N1, 1.8, np.float32))
    with pytest.raises(TypeError, match=rf"^\[{name}\] b must be real"):
        cls(N_IN, N1, N1, seed=0, b="1.0")
    with pytest.raises(ValueError, match=rf"^\[{name}\] a \(the membrane coupling\) is for adaptation='current'"):
        cls(N_IN, N1, N1, seed=0, a=0.3)
    # adaptation changed after construction is checked again at forward: an unknown one is
    # refused, and 'current' without its coupling a is refused by the op layer
    x = SpikeTensor.from_dense(np.ones((3, 2, N_IN), np.float32))
    layer = cls(N_IN, N1, N1, seed=0)
    layer.adaptation = "spike"
    with pytest.raises(ValueError, match=rf"^\[{name}\] adaptation must be 'threshold' or 'current'"):
        Sequential(layer)(x)
    layer.adaptation = "current"
    with pytest.raises(ValueError, match=rf"^\[{name}\] adaptation is fixed at construction"):
        Sequential(layer)(x)
    with pytest.raises(ValueError, match=rf"^\[{name}\] adaptation must be 'threshold'"):
        cls(N_IN, N1, N1, seed=0, adaptation="spike")
    with pytest.raises(ValueError, match=rf"^\[{name}\] .*reset must be 'state' or 'spike'"):
        cls(N_IN, N1, N1, seed=0, reset="subtract")
    # set after construction, forward refuses it (every device, both modes)
    layer = cls(N_IN, N1, N1, seed=0)
    layer.reset = "subtract"
    for mode in ("sparse", "dense"):
        with pytest.raises(ValueError, match=rf"^\[{name}\] the adaptive LIF resets to zero"):
            Sequential(layer, mode=mode)(SpikeTensor.from_dense(_input(1)))
    # the boundaries, negative b (a threshold that falls with activity) and b = 0 are allowed
    for ok in (dict(rho=0.0), dict(rho=1.0), dict(rho=np.linspace(0, 1, N1)), dict(b=-1.0),
               dict(b=0.0), dict(b=np.linspace(-1, 3, N1))):
        layer = cls(N_IN, N1, N1, seed=0, **ok)
        assert layer.rho.shape == layer.b.shape == (N1,)


def test_learnable_rho_outside_unit_interval_is_clamped() -> None:
    """A learnable rho outside [0, 1] (e.g. after an optimiser step) runs as its clamp; its gradient
    is zero where the clamp is active and unchanged elsewhere; the other gradients are those of the
    clamped values, bit for bit; the float64 reference agrees."""
    outside = np.array([0, 2, 5])
    x = _input(18)
    raw_values = _alif_layers("alif", "state", "pass", seed=9)[0].rho.copy()
    raw_values[outside] = [1.3, -0.2, 1.0001]
    runs = []
    for values in (raw_values, np.clip(raw_values, 0.0, 1.0)):
        net = Sequential(*_alif_layers("alif", "state", "pass", seed=9))
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
    outs, _, _ = _reference(raw, x, params, [_lists_of(raw.spikes[0]), None])
    _torch_ce(outs[-1], LABELS).backward()
    _close(g_raw["layers.0.rho"], params[0]["rho"].grad.numpy(), "clamp:rho")


def test_checkpoint_round_trip(tmp_path) -> None:
    def build(seed):
        return Sequential(*_alif_layers("stack", "state", "pass", seed=seed, theta2=0.4))

    x = _input(20, p=0.4)
    net = build(11)
    opt = sal.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(2):
        _run(net, x)
        opt.step()
    state = net.state_dict()
    sal.save_checkpoint(tmp_path / "c.ckpt", net, opt, epoch=4)
    arrays, _ = sal.read_checkpoint(tmp_path / "c.ckpt")
    assert {"net/layers.0.rho", "net/layers.0.b", "net/layers.1.rho", "net/layers.1.b"} <= set(arrays)
    out, _ = _run(net, x)
    grads = _grads(net)

    other = build(21)
    other_opt = sal.optim.Adam(other.parameters(), lr=1e-2)
    assert not np.array_equal(other.state_dict()["layers.1.b"], state["layers.1.b"])
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

    # fixed rho and b go through checkpoints too; a fixed rho outside [0, 1] is refused
    fixed_net = Sequential(*_alif_layers("alif", "state", "pass", seed=11, learn=False))
    fixed_net.layers[0].rho = np.linspace(0.2, 0.7, N1)
    sal.save_checkpoint(tmp_path / "f.ckpt", fixed_net)
    target = Sequential(*_alif_layers("alif", "state", "pass", seed=12, learn=False))
    sal.load_checkpoint(tmp_path / "f.ckpt", target)
    np.testing.assert_array_equal(target.layers[0].rho, fixed_net.layers[0].rho)
    np.testing.assert_array_equal(target.layers[0].b, fixed_net.layers[0].b)
    fixed_net.layers[0]._rho.data[1] = 1.5  # bypasses the setter
    sal.save_checkpoint(tmp_path / "bad.ckpt", fixed_net)
    before = target.state_dict()
    with pytest.raises(sal.CheckpointError, match="rho"):
        sal.load_checkpoint(tmp_path / "bad.ckpt", target)
    for name, value in target.state_dict().items():
        np.testing.assert_array_equal(value, before[name], err_msg=name)
    # a checkpoint of a LIF net does not fit an adaptive net
    sal.save_checkpoint(tmp_path / "lif.ckpt", Sequential(*_alif_layers("lif", "state", "pass", seed=11)))
    with pytest.raises(sal.CheckpointError, match="rho"):
        sal.load_checkpoint(tmp_path / "lif.ckpt", target)


def _module_layers(seed: int, learn_adaptation: bool = True):
    layers = _alif_layers("ralif", "state", "pass", seed=seed, theta2=0.3, capacity=4)
    layers[0].learn_adaptation = learn_adaptation
    return layers


def test_torch_module_parameters_gradients_and_training() -> None:
    module = SparseSequential(*_module_layers(14))
    params, buffers = dict(module.named_parameters()), dict(module.named_buffers())
    assert set(params) == {"layers_0_weight", "layers_0_weight_rec", "layers_0_bias", "layers_0_alpha",
                           "layers_0_theta1", "layers_0_rho", "layers_0_b", "layers_1_weight",
                           "layers_1_bias", "layers_1_alpha"}
    assert set(buffers) == {"layers_0_gain", "layers_1_gain"}
    fixed = SparseSequential(*_module_layers(14, learn_adaptation=False))
    assert not {"layers_0_rho", "layers_0_b"} & set(dict(fixed.named_parameters()))
    fixed_buffers = dict(fixed.named_buffers())
    np.testing.assert_array_equal(fixed_buffers["layers_0_rho"].numpy(), fixed.net.layers[0].rho)
    np.testing.assert_array_equal(fixed_buffers["layers_0_b"].numpy(), fixed.net.layers[0].b)

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
    # the fixed b buffer is what forward reads
    before = fixed(x).detach().numpy()
    with torch.no_grad():
        fixed.layers_0_b.fill_(0.0)
    assert not np.array_equal(before, fixed(x).detach().numpy())
    np.testing.assert_array_equal(fixed.net.layers[0].b, np.zeros(N1, np.float32))
    # torch.optim trains the module, rho and b included; the stack reads the updated values
    opt = torch.optim.Adam(module.parameters(), lr=1e-2)
    start = {k: getattr(module, k).detach().clone() for k in ("layers_0_rho", "layers_0_b")}
    losses = []
    for _ in range(15):
        opt.zero_grad()
        loss = _torch_ce(module(x), LABELS)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    for k, v in start.items():
        assert not torch.equal(getattr(module, k).detach(), v), k
    np.testing.assert_array_equal(module.net.layers[0].b, module.layers_0_b.detach().numpy())
    assert losses[-1] < 0.8 * losses[0], losses
    state = module.state_dict()
    assert {"layers_0_rho", "layers_0_b"} <= set(state)
    clone = SparseSequential(*_module_layers(15))
    clone.load_state_dict(state)
    np.testing.assert_array_equal(clone(x).detach().numpy(), module(x).detach().numpy())


@pytest.mark.parametrize("how", ["deepcopy", "pickle"])
def test_deepcopy_and_pickle_after_forward(how: str) -> None:
    net = Sequential(*_alif_layers("ralif", "state", "mask", seed=13, theta2=0.3, capacity=3))
    x = _input(21)
    out, _ = _run(net, x)  # forward and backward: the net holds a context and gradients
    grads = _grads(net)
    clone = copy.deepcopy(net) if how == "deepcopy" else pickle.loads(pickle.dumps(net))
    assert clone._context is None  # the context is not copied: a forward comes first
    for name, value in net.state_dict().items():
        np.testing.assert_array_equal(clone.state_dict()[name], value, err_msg=name)
    assert clone.layers[0].learn_adaptation and clone.layers[0].rho is not net.layers[0].rho
    out_clone, _ = _run(clone, x)
    np.testing.assert_array_equal(out_clone, out)
    for name, g in _grads(clone).items():
        np.testing.assert_array_equal(g, grads[name], err_msg=name)
    clone.layers[0]._b.data[:] = 0.1  # independent storage
    assert not np.array_equal(net.layers[0].b, clone.layers[0].b)


def test_nir_export_refuses_adaptive_layers() -> None:
    pytest.importorskip("nir")
    from saltatory.nir import to_nir

    for cls in (AdaptiveLIF, RecurrentAdaptiveLIF):
        net = Sequential(cls(4, 5, 5, seed=1), Readout(5, 2, seed=2))
        with pytest.raises(ValueError, match=rf"{cls.__name__}"):
            to_nir(net)
    # a stack with an adaptive layer anywhere is refused, not written without it
    net = Sequential(LIF(4, 5, 5, seed=1), AdaptiveLIF(5, 5, 5, seed=2), Readout(5, 2, seed=3))
    with pytest.raises(ValueError, match=r"layer 1 .*AdaptiveLIF"):
        to_nir(net)


# ----------------------------------------------------------------------------- 7. training


def test_training_lowers_the_loss() -> None:
    """RecurrentAdaptiveLIF (learnable alpha, theta1, rho, b) + Readout on a fixed random task: each
    class is a fixed random spike pattern, samples are noisy copies (3 % of bits flipped). 30 Adam
    steps must halve the membrane cross-entropy and classify the training batch; rho and b must
    move."""
    t_, b_, n_in, h = 20, 24, 30, 32
    rng = np.random.default_rng(40)
    protos = rng.random((C, t_, n_in)) < 0.15
    labels = np.arange(b_, dtype=np.int32) % C
    flips = rng.random((t_, b_, n_in)) < 0.03
    x = (protos[labels].transpose(1, 0, 2) ^ flips).astype(np.float32)
    net = Sequential(RecurrentAdaptiveLIF(n_in, h, 16, alpha=0.9, rho=0.9, b=1.0, theta2=0.5,
                                          learn_alpha=True, learn_threshold=True,
                                          learn_adaptation=True, seed=41),
                     Readout(h, C, seed=42))
    net.layers[0].weight.data *= 0.4
    opt = sal.optim.Adam(net.parameters(), lr=5e-3)
    spikes = SpikeTensor.from_dense(x)
    start_rho, start_b = net.layers[0].rho.copy(), net.layers[0].b.copy()
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
    assert np.abs(net.layers[0].rho - start_rho).max() > 1e-3
    assert np.abs(net.layers[0].b - start_b).max() > 1e-3


def test_print_worst_errors() -> None:
    """Not a check: prints the worst relative errors seen so far (run with -s)."""
    _ERRORS.print_worst()
