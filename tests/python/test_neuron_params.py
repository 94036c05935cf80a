"""Learnable decay (alpha) and spike thresholds (theta1) and the subtract reset, against
independent implementations: a float64 torch-autograd BPTT written here, and snnTorch's Leaky
(learn_beta, learn_threshold). Also the torch module's parameters and buffers, the clamp of a
learnable alpha into [0, 1], thresholds below theta2, named_parameters, optimisers, checkpoints
and the agreement of the devices and execution variants.

The model, per neuron j (I[t] = x[t] W (+ b) (+ S[t-1] W_rec), r detached, r[0] = 0):
    zero reset:  V[t] = alpha V[t-1] (1 - r[t]) + g (1 - alpha) I[t],  r[t] = H(V[t-1] - theta1_j)
    subtract:    V[t] = alpha V[t-1] - theta1_j r[t] + g (1 - alpha) I[t]
    readout:     V[t] = alpha V[t-1] + g (1 - alpha) I[t]
    spikes S = H(V - theta1_j), surrogate SuperSpike 1 / (beta |x| + 1)^2 at listed neurons, i.e.
    where V > min(theta1_j, theta2) (spikes and candidates theta2 < V <= theta1_j).
reset_grad "pass" treats the zero reset as a constant offset (dV[t+1]/dV[t] = alpha); "mask"
multiplies by (1 - r); the subtract reset is an offset for both.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import saltatory as sal  # noqa: E402
from saltatory import LIF, Readout, RecurrentLIF, Sequential, SpikeTensor  # noqa: E402
from saltatory.torch import SparseLIF, SparseSequential  # noqa: E402

from neuron_checks import Errors, rand_vec, rel_err, spike_input, torch_ce  # noqa: E402

T, B, N_IN, N1, N2, C = 10, 3, 8, 7, 6, 3
BETA = 10.0  # surrogate slope (the library's default)
LOW = -1e9  # theta2 far below every theta1: every neuron is listed, sparse BPTT = dense BPTT

_ERRORS = Errors(1e-3)  # worst relative error per comparison kind, printed with -s
_close = _ERRORS.close
_input = spike_input(T, B, N_IN, p=0.3)
_rel_err, _rand_vec, _torch_ce = rel_err, rand_vec, torch_ce


def _kind(name: str) -> str:
    """'layers.1.weight_rec' -> 'weight_rec'."""
    return name.split(".", 2)[2]


# ----------------------------------------------------------------------------- float64 reference


def _surrogate(kind: str, x, beta: float):
    """sigma'(x) of each surrogate family (saltatory/kernels/surrogate.hpp's formulas)."""
    if kind == "super_spike":
        return 1.0 / (beta * x.abs() + 1.0) ** 2
    if kind == "arctan":
        return (beta / 2.0) / (1.0 + (np.pi / 2.0 * beta * x) ** 2)
    if kind == "triangle":
        return torch.clamp(1.0 - beta * x.abs(), min=0.0)
    s = torch.sigmoid(beta * x)  # sigmoid
    return beta * s * (1.0 - s)


class _Spike(torch.autograd.Function):
    """H(x) forward; backward g sigma'(x) at listed neurons (mask), 0 elsewhere."""

    @staticmethod
    def forward(ctx, x, listed, kind, beta):
        ctx.save_for_backward(x, listed)
        ctx.kind, ctx.beta = kind, beta
        return (x > 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad):
        x, listed = ctx.saved_tensors
        return grad * _surrogate(ctx.kind, x, ctx.beta) * listed, None, None, None


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
        out.append({k: torch.tensor(np.array(v, np.float64), requires_grad=True) for k, v in p.items()})
    return out


def _reference(net: Sequential, x: np.ndarray, params: list[dict], *, keep_input_term=None,
               initial=None):
    """Dense float64 forward of ``net``'s layers with autograd, written from the model equations
    alone (coupling "delayed": layer l > 0 reads layer l-1's output of step t-1). Returns
    (outputs per layer [T, B, N], membranes per layer), torch tensors. A learnable alpha is
    clamped into [0, 1] by torch.clamp (whose gradient is 1 inside, 0 outside).
    ``keep_input_term``: optional per-layer bool mask [n_out]; where False, the input coefficient
    g (1 - alpha) uses a detached alpha (the documented alpha = 1 caveat).
    ``initial``: optional per layer (V[-1] [B, N], S[-1] [B, N] or None) float64 constants, the
    state a chunk of a sequence starts from (same_step coupling); None starts from rest."""
    inp = torch.tensor(x, dtype=torch.float64)
    outs, membranes = [], []
    for li, (layer, p) in enumerate(zip(net.layers, params)):
        if li > 0 and net.coupling == "delayed":
            inp = torch.cat([torch.zeros_like(inp[:1]), inp[:-1]])
        a = p["alpha"].clamp(0.0, 1.0) if layer.learn_alpha else p["alpha"]
        a_in = a
        if keep_input_term is not None and keep_input_term[li] is not None:
            a_in = torch.where(torch.as_tensor(keep_input_term[li]), a, a.detach())
        spiking = isinstance(layer, LIF)
        th = p.get("theta1")
        g = float(np.float32(layer.gain))
        n = layer.n_out
        v = torch.zeros(inp.shape[1], n, dtype=torch.float64)
        s_prev = torch.zeros(inp.shape[1], n, dtype=torch.float64)
        if initial is not None:
            v = torch.as_tensor(initial[li][0], dtype=torch.float64)
            if initial[li][1] is not None:
                s_prev = torch.as_tensor(initial[li][1], dtype=torch.float64)
        vs, ss = [], []
        for t in range(inp.shape[0]):
            current = inp[t] @ p["weight"]
            if "bias" in p:
                current = current + p["bias"]
            if "weight_rec" in p:
                current = current + s_prev @ p["weight_rec"]
            drive = g * (1.0 - a_in) * current
            if t == 0 and initial is None:
                v = drive  # V[-1] = 0, no reset at t = 0
            elif not spiking:
                v = a * v + drive
            else:
                r = (v.detach() > th.detach()).to(torch.float64)  # detached reset of V[t-1]
                if layer.reset == "subtract":
                    v = a * v - th * r + drive
                elif layer.reset_grad == "mask":
                    v = a * v * (1.0 - r) + drive
                else:  # pass: the reset is a constant offset for dV/dV, not for dV/dalpha
                    v = a * v - a * v.detach() * r + drive
            vs.append(v)
            if spiking:
                listed = (v.detach() > torch.minimum(th.detach(), torch.tensor(float(layer.theta2),
                                                                               dtype=torch.float64)))
                s = _Spike.apply(v - th, listed.to(torch.float64), layer.surrogate, float(layer.beta))
                ss.append(s)
                s_prev = s
        membranes.append(torch.stack(vs))
        out = torch.stack(ss) if spiking else membranes[-1]
        outs.append(out)
        inp = out
    return outs, membranes


def _layers(arch: str, reset: str, reset_grad: str, seed: int = 0, *, theta2: float = LOW):
    """Layers with per-neuron alpha and theta1, all learnable; every neuron listed by default."""
    rng = np.random.default_rng(100 + seed)
    common = dict(theta2=theta2, reset=reset, reset_grad=reset_grad, learn_alpha=True,
                  learn_threshold=True)
    l0 = LIF(N_IN, N1, N1, alpha=_rand_vec(rng, 0.8, 0.95, N1), theta1=_rand_vec(rng, 0.7, 1.3, N1),
             seed=seed + 1, **common)
    if arch == "lif":
        return [l0]
    l1 = RecurrentLIF(N1, N2, N2, alpha=_rand_vec(rng, 0.8, 0.95, N2),
                      theta1=_rand_vec(rng, 0.7, 1.3, N2), bias=True, seed=seed + 2, **common)
    l1.bias.data[:] = rng.uniform(-0.1, 0.15, N2)
    l1.weight_rec.data *= 0.5
    ro = Readout(N2, C, alpha=_rand_vec(rng, 0.8, 0.95, C), bias=True, seed=seed + 3, learn_alpha=True)
    ro.bias.data[:] = rng.uniform(-0.3, 0.3, C)
    return [l0, l1, ro]


def _run_saltatory(net: Sequential, x: np.ndarray, labels=None, G=None):
    """Forward and backward of a Saltatory net: CE on a readout or grad_neurons G on spikes."""
    out = net(SpikeTensor.from_dense(x))
    net.zero_grad()
    if labels is not None:
        loss, grad = sal.losses.membrane_cross_entropy(out, labels)
        net.backward(grad)
        return out, loss
    net.backward(grad_neurons=G)
    return out, None


def _compare_with_reference(net, x, labels, G, tag, rtol=1e-3):
    """Runs net and the float64 reference; checks spikes (exact), outputs and every gradient."""
    out, loss = _run_saltatory(net, x, labels, G)
    params = _torch_params(net)
    outs, membranes = _reference(net, x, params)
    if labels is not None:
        ref_loss = _torch_ce(outs[-1], labels)
        ref_loss.backward()
        assert abs(loss - ref_loss.item()) <= 1e-4 * abs(ref_loss.item())
        _close(out, outs[-1].detach().numpy(), f"{tag} readout:membrane", rtol=1e-4)
    else:
        (outs[-1] * torch.from_numpy(G.astype(np.float64))).sum().backward()
    for i, layer in enumerate(net.layers):
        if isinstance(layer, LIF):
            spikes = outs[i].detach().numpy()
            assert 0.05 < spikes.mean() < 0.9, f"layer {i} activity {spikes.mean()}"
            assert spikes[:-1].sum() > 0  # resets happen
            np.testing.assert_array_equal(net.spikes[i].to_dense(), spikes.astype(np.float32),
                                          err_msg=f"{tag}: spikes of layer {i}")
            assert np.all(net.spikes[i].n_tot == layer.n_out)  # every neuron listed
    names = dict(net.named_parameters())
    for i, p in enumerate(params):
        for kind, tensor in p.items():
            name = f"layers.{i}.{kind}"
            if name not in names:
                continue  # a fixed alpha / theta1
            _close(names[name].grad, tensor.grad.numpy(), f"{tag} {name}:{kind}", rtol=rtol)
    return params, membranes


# ----------------------------------------------------------------------------- 1. float64 BPTT


@pytest.mark.parametrize("reset_grad", ["pass", "mask"])
@pytest.mark.parametrize("reset", ["state", "subtract"])
@pytest.mark.parametrize("arch", ["lif", "stack"])
def test_learnable_gradients_match_float64_autograd(arch: str, reset: str, reset_grad: str) -> None:
    """alpha, theta1 (and weight, bias, weight_rec) gradients of a LIF (loss sum(S G) through
    grad_neurons) or LIF -> RecurrentLIF -> Readout (membrane cross-entropy) stack."""
    net = Sequential(*_layers(arch, reset, reset_grad, seed=3))
    x = _input(11, p=0.35)
    rng = np.random.default_rng(12)
    if arch == "lif":
        G = rng.standard_normal((T, B, N1)).astype(np.float32)
        _compare_with_reference(net, x, None, G, f"{arch}/{reset}/{reset_grad}")
    else:
        labels = np.array([0, 1, 2], np.int32)
        _compare_with_reference(net, x, labels, None, f"{arch}/{reset}/{reset_grad}")
    names = [n for n, _ in net.named_parameters()]
    assert "layers.0.alpha" in names and "layers.0.theta1" in names
    for _, p in net.named_parameters():
        assert np.all(np.isfinite(p.grad)) and np.count_nonzero(p.grad) > 0


@pytest.mark.parametrize("surrogate,beta,coupling", [
    ("super_spike", BETA, "delayed"), ("arctan", 2.0, "same_step"), ("triangle", 1.0, "same_step"),
    ("sigmoid", 5.0, "same_step")])
def test_learnable_gradients_with_other_surrogates_and_couplings(surrogate: str, beta: float,
                                                                 coupling: str) -> None:
    """dL/dtheta1 = - sum gS sigma'(V - theta1) for each surrogate family, and the learnable
    gradients with the delayed coupling (layer l reads layer l-1 at t-1)."""
    layers = _layers("stack", "subtract", "pass", seed=3)
    for layer in layers[:2]:
        layer.surrogate, layer.beta = surrogate, beta
    net = Sequential(*layers, coupling=coupling)
    _compare_with_reference(net, _input(11, p=0.35), np.array([0, 1, 2], np.int32), None,
                            f"stack/{surrogate}/{coupling}")


def test_reference_conventions_differ() -> None:
    """Guards the reference: pass and mask differ for the zero reset (the tests above can tell
    them apart), subtract differs from the zero reset, and a detached reset is not the same as
    no reset."""
    x = _input(11, p=0.35)
    G = torch.from_numpy(np.random.default_rng(12).standard_normal((T, B, N1)))
    grads = {}
    for reset, reset_grad in (("state", "pass"), ("state", "mask"), ("subtract", "pass")):
        net = Sequential(*_layers("lif", reset, reset_grad, seed=3))
        params = _torch_params(net)
        outs, _ = _reference(net, x, params)
        (outs[0] * G).sum().backward()
        grads[reset, reset_grad] = {k: v.grad.numpy() for k, v in params[0].items()}
    for kind in ("weight", "alpha"):
        assert _rel_err(grads["state", "pass"][kind], grads["state", "mask"][kind]) > 1e-2
        assert _rel_err(grads["state", "pass"][kind], grads["subtract", "pass"][kind]) > 1e-2
    assert _rel_err(grads["state", "pass"]["theta1"], grads["subtract", "pass"]["theta1"]) > 1e-2


def test_subtract_gives_the_same_gradients_for_pass_and_mask() -> None:
    """The subtract reset is a detached offset: reset_grad does not change anything, bit for bit."""
    x = _input(11, p=0.35)
    labels = np.array([0, 1, 2], np.int32)
    grads = []
    for reset_grad in ("pass", "mask"):
        net = Sequential(*_layers("stack", "subtract", reset_grad, seed=3))
        _run_saltatory(net, x, labels)
        grads.append({n: p.grad.copy() for n, p in net.named_parameters()})
    assert grads[0].keys() == grads[1].keys()
    for name in grads[0]:
        np.testing.assert_array_equal(grads[0][name], grads[1][name], err_msg=name)


def test_spike_reset_equals_state_reset_when_nothing_is_dropped() -> None:
    """With capacity = n_out nothing is dropped: reset="spike" (emitted spikes reset) is the state
    reset, learnable gradients included, bit for bit."""
    x = _input(11, p=0.35)
    labels = np.array([0, 1, 2], np.int32)
    results = []
    for reset in ("state", "spike"):
        net = Sequential(*_layers("stack", reset, "mask", seed=3))
        out, _ = _run_saltatory(net, x, labels)
        assert net.dropped == [0, 0]
        results.append((out.copy(), {n: p.grad.copy() for n, p in net.named_parameters()}))
    np.testing.assert_array_equal(results[0][0], results[1][0])
    for name in results[0][1]:
        np.testing.assert_array_equal(results[0][1][name], results[1][1][name], err_msg=name)


def test_alpha_gradient_near_one() -> None:
    """alpha close to 1 (the kernel recovers g I from (V - leak) / (1 - alpha) in float32)."""
    net = Sequential(*_layers("lif", "subtract", "pass", seed=3))
    lif = net.layers[0]
    lif.alpha = np.array([0.99, 0.995, 0.999, 0.95, 0.9, 0.99, 0.98], np.float32)
    lif.gain = 100.0  # keeps g (1 - alpha) of order 1 so that the neurons spike
    x = _input(11, p=0.35)
    G = np.random.default_rng(12).standard_normal((T, B, N1)).astype(np.float32)
    out, _ = _run_saltatory(net, x, None, G)
    params = _torch_params(net)
    outs, _ = _reference(net, x, params)
    (outs[0] * torch.from_numpy(G.astype(np.float64))).sum().backward()
    np.testing.assert_array_equal(out.to_dense(), outs[0].detach().numpy().astype(np.float32))
    _close(lif._alpha.grad, params[0]["alpha"].grad.numpy(), "near-one lif:alpha", rtol=1e-3)


# ----------------------------------------------------------------------------- 2. snnTorch Leaky


@pytest.mark.parametrize("reset,reset_grad,mechanism", [("subtract", "pass", "subtract"),
                                                         ("subtract", "mask", "subtract"),
                                                         ("state", "mask", "zero")])
def test_learnable_lif_equals_snntorch_leaky(reset: str, reset_grad: str, mechanism: str) -> None:
    """snnTorch Leaky (checked on snnTorch 1.0.0; reset_delay=True, the default): the reset
    r = H(mem[t-1] - threshold) comes from ``mem_reset`` with ``.clone().detach()``, so r is
    detached; "subtract" is mem = clamp(beta) mem + input - r threshold (threshold is not
    detached there: its gradient gets - sum gV r, as Saltatory's), so dmem[t]/dmem[t-1] = beta:
    Saltatory's subtract (pass and mask alike). "zero" is mem = clamp(beta) (1 - r) mem + input:
    reset_grad="mask". fast_sigmoid(slope=k) = SuperSpike with beta = k. snnTorch accepts
    per-neuron beta and threshold tensors [N], which broadcast over the batch.

    Saltatory's input term is g (1 - alpha) I, snnTorch's is the raw input (it does not depend on
    beta). With alpha = 0.875 and g = 8, g (1 - alpha) = 1 exactly, so the forwards are the same;
    the alpha gradient differs by the input term's derivative - g sum gV I. The test multiplies
    snnTorch's input by c = 1 (a leaf, so dL/dc = sum gV I) and checks
    dL/dalpha (Saltatory) = dL/dbeta (snnTorch) - g dL/dc."""
    snn = pytest.importorskip("snntorch")
    from snntorch import surrogate

    alpha, gain, n = 0.875, 8.0, 16
    rng = np.random.default_rng(21)
    theta1 = rng.uniform(0.7, 1.3, n).astype(np.float32)
    x = _input(22, p=0.4, n=20, t=12, b=4)
    G = rng.standard_normal((12, 4, n)).astype(np.float32)
    module = SparseLIF(20, n, n, alpha=np.full(n, alpha, np.float32), theta1=theta1, theta2=LOW,
                       gain=gain, learn_alpha=True, learn_threshold=True, reset=reset,
                       reset_grad=reset_grad, surrogate="super_spike", beta=BETA, seed=23)
    weight = module.layers_0_weight.detach().numpy().copy()
    out = module(torch.from_numpy(x))
    (out * torch.from_numpy(G)).sum().backward()

    lif = snn.Leaky(beta=torch.full((n,), alpha), threshold=torch.from_numpy(theta1.copy()),
                    spike_grad=surrogate.fast_sigmoid(slope=BETA), learn_beta=True,
                    learn_threshold=True, reset_mechanism=mechanism)
    assert lif.reset_delay and isinstance(lif.beta, torch.nn.Parameter)
    assert isinstance(lif.threshold, torch.nn.Parameter) and lif.threshold.shape == (n,)
    w = torch.tensor(weight.T.copy(), requires_grad=True)  # torch Linear is output-major
    c = torch.ones(n, requires_grad=True)
    mem = torch.zeros(4, n)
    spikes = []
    for t in range(12):
        spk, mem = lif(c * (torch.from_numpy(x[t]) @ w.T), mem)
        spikes.append(spk)
    spikes = torch.stack(spikes)
    (spikes * torch.from_numpy(G)).sum().backward()

    assert 0.05 < spikes.mean().item() < 0.6
    np.testing.assert_array_equal(out.detach().numpy(), spikes.detach().numpy())
    tag = f"snntorch {mechanism}/{reset_grad}"
    _close(module.layers_0_weight.grad.numpy(), w.grad.numpy().T, f"{tag}:weight")
    _close(module.layers_0_theta1.grad.numpy(), lif.threshold.grad.numpy(), f"{tag}:theta1")
    expected_alpha = lif.beta.grad.numpy() - gain * c.grad.numpy()
    _close(module.layers_0_alpha.grad.numpy(), expected_alpha, f"{tag}:alpha")
    # snnTorch's own beta gradient lacks the input term: the conventions do differ
    assert _rel_err(module.layers_0_alpha.grad.numpy(), lif.beta.grad.numpy()) > 0.1


# ----------------------------------------------------------------------------- 3. torch module


def _module_layers(seed: int = 0):
    rng = np.random.default_rng(seed + 50)
    return (LIF(N_IN, N1, N1, alpha=_rand_vec(rng, 0.8, 0.95, N1), theta1=_rand_vec(rng, 0.7, 1.3, N1),
                theta2=LOW, reset="subtract", learn_alpha=True, learn_threshold=True, seed=seed + 1),
            RecurrentLIF(N1, N2, N2, alpha=_rand_vec(rng, 0.8, 0.95, N2),
                         theta1=_rand_vec(rng, 0.7, 1.3, N2), theta2=LOW, reset="state",
                         reset_grad="mask", learn_threshold=True, seed=seed + 2),
            Readout(N2, C, alpha=_rand_vec(rng, 0.8, 0.95, C), learn_alpha=True, seed=seed + 3))


def test_module_exposes_learnable_alpha_and_theta1_as_parameters() -> None:
    module = SparseSequential(*_module_layers())
    params, buffers = dict(module.named_parameters()), dict(module.named_buffers())
    assert set(params) == {"layers_0_weight", "layers_0_alpha", "layers_0_theta1", "layers_1_weight",
                           "layers_1_weight_rec", "layers_1_theta1", "layers_2_weight",
                           "layers_2_alpha"}
    assert set(buffers) == {"layers_0_gain", "layers_1_gain", "layers_1_alpha", "layers_2_gain"}
    for name, n in (("layers_0_alpha", N1), ("layers_0_theta1", N1), ("layers_1_theta1", N2),
                    ("layers_2_alpha", C)):
        assert isinstance(params[name], torch.nn.Parameter) and params[name].requires_grad
        assert params[name].shape == (n,) and params[name].dtype == torch.float32
    assert buffers["layers_1_alpha"].shape == (N2,) and not buffers["layers_1_alpha"].requires_grad
    np.testing.assert_array_equal(params["layers_0_alpha"].detach().numpy(), module.net.layers[0].alpha)
    np.testing.assert_array_equal(params["layers_1_theta1"].detach().numpy(),
                                  module.net.layers[1].theta1)

    x = torch.from_numpy(_input(31, p=0.35))
    labels = np.array([0, 1, 2], np.int32)
    membrane = module(x)
    for name, param in params.items():  # a forward reads the parameters in place
        layer, slot = int(name.split("_")[1]), name.split("_", 2)[2]
        assert param.data_ptr() == module.net.layers[layer].parameters()[slot].data.ctypes.data, name
    _torch_ce(membrane, labels).backward()
    for name in ("layers_0_alpha", "layers_0_theta1", "layers_1_theta1", "layers_2_alpha"):
        grad = params[name].grad
        assert grad is not None and grad.shape == params[name].shape
        assert torch.isfinite(grad).all() and torch.count_nonzero(grad) > 0, name

    # the module's gradients are the numpy stack's, bit for bit
    reference = Sequential(*_module_layers())
    out = reference(SpikeTensor.from_dense(x.numpy()))
    np.testing.assert_array_equal(out, membrane.detach().numpy())
    _, grad = sal.losses.membrane_cross_entropy(out, labels)
    reference.backward(grad)
    ref = {name.replace(".", "_"): p.grad for name, p in reference.named_parameters()}
    assert set(ref) == set(params)
    for name, param in params.items():
        np.testing.assert_allclose(param.grad.numpy(), ref[name], rtol=1e-5, atol=1e-6, err_msg=name)


def test_module_state_dict_round_trip_and_optimiser_step() -> None:
    x = torch.from_numpy(_input(32, p=0.35))
    labels = np.array([0, 1, 2], np.int32)
    a = SparseSequential(*_module_layers(0))
    with torch.no_grad():  # values of their own, away from the constructor's
        a.layers_0_alpha.copy_(torch.linspace(0.7, 0.97, N1))
        a.layers_0_theta1.copy_(torch.linspace(0.6, 1.4, N1))
        a.layers_1_theta1.copy_(torch.linspace(1.2, 0.8, N2))
        a.layers_1_alpha.copy_(torch.linspace(0.85, 0.9, N2))
        a.layers_2_alpha.copy_(torch.tensor([0.9, 0.8, 0.95]))
    state = a.state_dict()
    assert {"layers_0_alpha", "layers_0_theta1", "layers_1_alpha", "layers_1_theta1",
            "layers_2_alpha"} <= set(state)
    b = SparseSequential(*_module_layers(7))
    b.load_state_dict(state)
    out_a, out_b = a(x), b(x)
    np.testing.assert_array_equal(out_a.detach().numpy(), out_b.detach().numpy())
    _torch_ce(out_a, labels).backward()
    _torch_ce(out_b, labels).backward()
    for (name, pa), (_, pb) in zip(a.named_parameters(), b.named_parameters()):
        np.testing.assert_array_equal(pa.grad.numpy(), pb.grad.numpy(), err_msg=name)

    before = {name: p.detach().clone() for name, p in a.named_parameters()}
    opt = torch.optim.SGD(a.parameters(), lr=1e-2)
    opt.step()
    for name in ("layers_0_alpha", "layers_0_theta1", "layers_1_theta1", "layers_2_alpha"):
        p = getattr(a, name)
        changed = p.detach() != before[name]
        assert changed.any(), name
        assert torch.equal(changed, p.grad != 0), name
    np.testing.assert_array_equal(a.net.layers[0].alpha, a.layers_0_alpha.detach().numpy())
    assert not np.array_equal(a(x).detach().numpy(), out_a.detach().numpy())  # forward reads them
    np.testing.assert_array_equal(a.layers_1_alpha.numpy(), state["layers_1_alpha"].numpy())  # buffer


# ----------------------------------------------------------------------------- 4. clamp


OUTSIDE_HIGH, OUTSIDE_LOW = [0, 3], [1, 5]


def _clamp_layers(seed=5):
    """LIF (learnable alpha and theta1) -> Readout (learnable alpha); alpha set by the caller."""
    rng = np.random.default_rng(seed)
    return (LIF(N_IN, N1, N1, alpha=0.9, theta1=_rand_vec(rng, 0.7, 1.3, N1), theta2=LOW,
                reset="subtract", learn_alpha=True, learn_threshold=True, seed=seed),
            Readout(N1, C, alpha=0.9, learn_alpha=True, seed=seed + 1))


def test_alpha_outside_unit_interval_is_clamped_numpy_stack() -> None:
    rng = np.random.default_rng(40)
    alpha = _rand_vec(rng, 0.8, 0.95, N1)
    alpha[OUTSIDE_HIGH], alpha[OUTSIDE_LOW] = 1.2, -0.1
    x = _input(41, p=0.35)
    labels = np.array([0, 1, 2], np.int32)
    runs = []
    for values in (alpha, np.clip(alpha, 0.0, 1.0)):
        net = Sequential(*_clamp_layers())
        dict(net.named_parameters())["layers.0.alpha"].data[:] = values  # bypasses the setter check
        out, _ = _run_saltatory(net, x, labels)
        runs.append((net, out.copy()))
    (raw, out_raw), (clamped, out_clamped) = runs
    np.testing.assert_array_equal(out_raw, out_clamped)
    np.testing.assert_array_equal(raw.layers[0].alpha, alpha)  # the Parameter keeps its value
    g_raw = dict(raw.named_parameters())
    g_cl = dict(clamped.named_parameters())
    outside = np.zeros(N1, bool)
    outside[OUTSIDE_HIGH + OUTSIDE_LOW] = True
    assert np.all(g_raw["layers.0.alpha"].grad[outside] == 0.0)
    np.testing.assert_array_equal(g_raw["layers.0.alpha"].grad[~outside],
                                  g_cl["layers.0.alpha"].grad[~outside])
    assert np.all(g_raw["layers.0.alpha"].grad[~outside] != 0)
    for name in g_raw:
        if name != "layers.0.alpha":
            np.testing.assert_array_equal(g_raw[name].grad, g_cl[name].grad, err_msg=name)
    # the float64 reference (torch.clamp) agrees, the clamped neurons' zeros included
    params = _torch_params(raw)
    outs, _ = _reference(raw, x, params, keep_input_term=[alpha <= 1.0, None])
    _torch_ce(outs[-1], labels).backward()
    _close(g_raw["layers.0.alpha"].grad, params[0]["alpha"].grad.numpy(), "clamp:alpha")
    # training steps with saltatory.optim leave the clamped neurons' alpha where it was
    opt = sal.optim.Adam(raw.parameters(), lr=1e-2)
    for _ in range(3):
        _run_saltatory(raw, x, labels)
        opt.step()
    np.testing.assert_array_equal(raw.layers[0].alpha[outside], alpha[outside])
    assert np.all(raw.layers[0].alpha[~outside] != alpha[~outside])


def test_alpha_outside_unit_interval_is_clamped_torch_module() -> None:
    rng = np.random.default_rng(42)
    alpha = _rand_vec(rng, 0.8, 0.95, N1)
    alpha[OUTSIDE_HIGH], alpha[OUTSIDE_LOW] = 1.2, -0.1
    x = torch.from_numpy(_input(43, p=0.35))
    labels = np.array([0, 1, 2], np.int32)
    modules = []
    for values in (alpha, np.clip(alpha, 0.0, 1.0)):
        module = SparseSequential(*_clamp_layers())
        with torch.no_grad():
            module.layers_0_alpha.copy_(torch.from_numpy(values))
        out = module(x)
        _torch_ce(out, labels).backward()
        modules.append((module, out.detach().numpy()))
    (raw, out_raw), (clamped, out_clamped) = modules
    np.testing.assert_array_equal(out_raw, out_clamped)
    outside = torch.zeros(N1, dtype=torch.bool)
    outside[OUTSIDE_HIGH + OUTSIDE_LOW] = True
    assert torch.all(raw.layers_0_alpha.grad[outside] == 0)
    assert torch.equal(raw.layers_0_alpha.grad[~outside], clamped.layers_0_alpha.grad[~outside])
    opt = torch.optim.Adam(raw.parameters(), lr=1e-2)
    for _ in range(3):
        opt.zero_grad()
        _torch_ce(raw(x), labels).backward()
        opt.step()
    np.testing.assert_array_equal(raw.layers_0_alpha.detach().numpy()[outside.numpy()],
                                  alpha[outside.numpy()])


def test_alpha_exactly_one_follows_the_documented_caveat() -> None:
    """lif.hpp: at alpha_j = 1 the input is not stored and dL/dalpha_j drops its input term
    (- g sum gV I). The true derivative from below is not 0 there; Saltatory gives the partial
    without it (documented). A clamp to 1 from above gives 0 anyway."""
    alpha = np.full(N1, 0.9, np.float32)
    alpha[[2, 4]] = 1.0
    net = Sequential(*_clamp_layers(seed=6))
    net.layers[0].alpha = alpha
    x = _input(44, p=0.35)
    labels = np.array([0, 1, 2], np.int32)
    _run_saltatory(net, x, labels)
    params = _torch_params(net)
    outs, _ = _reference(net, x, params, keep_input_term=[alpha < 1.0, None])
    _torch_ce(outs[-1], labels).backward()
    _close(net.layers[0]._alpha.grad, params[0]["alpha"].grad.numpy(), "alpha=1 caveat:alpha")
    # (V stays 0 at alpha = 1, so the documented gradient there is exactly 0)
    assert np.all(net.layers[0]._alpha.grad[[2, 4]] == 0.0)


def test_nir_export_of_a_clamped_alpha_is_the_clamped_model() -> None:
    """A learnable alpha outside [0, 1] runs as its clamp; an export describes what runs (and
    imports again)."""
    nir_mod = pytest.importorskip("saltatory.nir")
    alpha = np.array([-0.1, 0.5, 0.9, 0.8, 0.85, 0.9, 0.9], np.float32)
    raw = Sequential(*_clamp_layers())
    dict(raw.named_parameters())["layers.0.alpha"].data[:] = alpha
    clamped = Sequential(*_clamp_layers())
    clamped.layers[0].alpha = np.clip(alpha, 0.0, 1.0)
    dt = 1e-3
    tau_raw = nir_mod.to_nir(raw, dt=dt).nodes["neuron_0"].tau
    tau_clamped = nir_mod.to_nir(clamped, dt=dt).nodes["neuron_0"].tau
    np.testing.assert_allclose(tau_raw, tau_clamped, rtol=1e-12)
    back = nir_mod.from_nir(nir_mod.to_nir(raw, dt=dt))
    x = _input(45, p=0.35)
    np.testing.assert_allclose(back(SpikeTensor.from_dense(x)), raw(SpikeTensor.from_dense(x)),
                               rtol=1e-5, atol=1e-5)


# ----------------------------------------------------------------------------- 5. theta1 < theta2


def test_theta1_below_theta2_leaves_no_candidates() -> None:
    theta2 = 0.5
    rng = np.random.default_rng(60)
    lif = LIF(N_IN, N1, N1, alpha=_rand_vec(rng, 0.8, 0.95, N1), theta1=_rand_vec(rng, 0.9, 1.2, N1),
              theta2=theta2, learn_alpha=True, learn_threshold=True, reset="subtract", seed=61)
    low = np.array([1, 4])
    net = Sequential(lif)
    dict(net.named_parameters())["layers.0.theta1"].data[low] = [0.3, 0.1]  # learned below theta2
    x = _input(62, p=0.35)
    G = rng.standard_normal((T, B, N1)).astype(np.float32)
    out = net(SpikeTensor.from_dense(x))
    st = net.spikes[0]
    params = _torch_params(net)
    outs, membranes = _reference(net, x, params)
    V = membranes[0].detach().numpy()
    theta1 = lif.theta1.astype(np.float64)
    spikes = V > theta1
    np.testing.assert_array_equal(out.to_dense(), spikes.astype(np.float32))
    n_cand = 0
    for t in range(T):
        for b in range(B):
            ids = st.ids[t, b]
            spk, cand = ids[:st.n_spk[t, b]], ids[st.n_spk[t, b]:st.n_tot[t, b]]
            np.testing.assert_array_equal(np.sort(spk), np.flatnonzero(spikes[t, b]))
            expected = np.flatnonzero((V[t, b] > theta2) & (V[t, b] <= theta1))
            np.testing.assert_array_equal(np.sort(cand), expected)
            assert not np.isin(cand, low).any()
            n_cand += len(cand)
    assert n_cand > 0  # the other neurons do have candidates
    assert spikes[:, :, low].any()  # the low neurons spike
    # and have sub-threshold steps above theta2 that a layer-wide rule would have listed
    assert ((V[:, :, low] > theta2) & (V[:, :, low] <= theta1[low])).sum() == 0
    assert (V[:, :, low] <= theta1[low]).any()
    # gradients: the low neurons carry surrogate gradient only at their spikes
    net.backward(grad_neurons=G)
    (outs[0] * torch.from_numpy(G.astype(np.float64))).sum().backward()
    for name, p in net.named_parameters():
        _close(p.grad, params[0][_kind(name)].grad.numpy(), f"theta1<theta2 {name}:{_kind(name)}")


# ----------------------------------------------------------------------------- 6. numpy API


def test_named_parameters_list_alpha_and_theta1_only_when_learnable() -> None:
    net = Sequential(LIF(N_IN, N1, N1, learn_alpha=True), RecurrentLIF(N1, N2, N2, learn_threshold=True),
                     Readout(N2, C))
    assert [n for n, _ in net.named_parameters()] == [
        "layers.0.weight", "layers.0.alpha", "layers.1.weight", "layers.1.weight_rec",
        "layers.1.theta1", "layers.2.weight"]
    net = Sequential(LIF(N_IN, N1, N1), Readout(N1, C, learn_alpha=True))
    assert [n for n, _ in net.named_parameters()] == ["layers.0.weight", "layers.1.weight",
                                                      "layers.1.alpha"]
    net = Sequential(LIF(N_IN, N1, N1), RecurrentLIF(N1, N2, N2), Readout(N2, C))
    assert not [n for n, _ in net.named_parameters() if n.endswith(("alpha", "theta1"))]
    params = dict(Sequential(*_layers("stack", "state", "pass")).named_parameters())
    for name in ("layers.0.alpha", "layers.0.theta1", "layers.1.alpha", "layers.1.theta1",
                 "layers.2.alpha"):
        assert isinstance(params[name], sal.Parameter) and params[name].shape == (
            {0: N1, 1: N2, 2: C}[int(name.split(".")[1])],)


@pytest.mark.parametrize("make_opt", [lambda p: sal.optim.SGD(p, lr=0.05),
                                      lambda p: sal.optim.Adam(p, lr=1e-2)])
def test_saltatory_optimisers_step_learnable_alpha_and_theta1(make_opt) -> None:
    layers = _layers("stack", "subtract", "pass", seed=8)
    layers[1].learn_alpha = False  # one fixed per-neuron alpha, one fixed theta1
    layers[0].learn_threshold = False
    net = Sequential(*layers)
    x = _input(70, p=0.35)
    labels = np.array([0, 1, 2], np.int32)
    fixed = (layers[1].alpha.copy(), layers[0].theta1.copy())
    before = {n: p.data.copy() for n, p in net.named_parameters()}
    opt = make_opt(net.parameters())
    _run_saltatory(net, x, labels)
    grads = {n: p.grad.copy() for n, p in net.named_parameters()}
    opt.step()
    for name in ("layers.0.alpha", "layers.1.theta1", "layers.2.alpha"):
        p = dict(net.named_parameters())[name]
        np.testing.assert_array_equal(p.data != before[name], grads[name] != 0, err_msg=name)
        if isinstance(opt, sal.optim.SGD):
            np.testing.assert_allclose(p.data, before[name] - 0.05 * grads[name], rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(layers[1].alpha, fixed[0])
    np.testing.assert_array_equal(layers[0].theta1, fixed[1])


def test_checkpoint_round_trips_learnable_and_fixed_per_neuron_values(tmp_path) -> None:
    def build(seed):
        layers = _layers("stack", "subtract", "pass", seed=seed)
        layers[1].learn_alpha = False
        layers[0].learn_threshold = False
        return Sequential(*layers)

    x = _input(80, p=0.35)
    labels = np.array([0, 1, 2], np.int32)
    net = build(9)
    opt = sal.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(2):
        _run_saltatory(net, x, labels)
        opt.step()
    net.layers[0]._alpha.data[0] = 1.2  # a learnable alpha outside [0, 1]: allowed (clamped)
    net.layers[2]._alpha.data[1] = -0.05
    state = net.state_dict()
    sal.save_checkpoint(tmp_path / "p.ckpt", net, opt, epoch=3)
    out, _ = _run_saltatory(net, x, labels)
    grads = {n: p.grad.copy() for n, p in net.named_parameters()}

    other = build(19)
    other_opt = sal.optim.Adam(other.parameters(), lr=1e-2)
    for name, value in state.items():  # every value differs before loading
        assert not np.array_equal(other.state_dict()[name], value), name
    meta = sal.load_checkpoint(tmp_path / "p.ckpt", other, other_opt)
    assert meta["epoch"] == 3
    loaded = other.state_dict()
    assert loaded.keys() == state.keys()
    for name in state:
        np.testing.assert_array_equal(loaded[name], state[name], err_msg=name)
    for name in ("layers.0.alpha", "layers.0.theta1", "layers.1.alpha", "layers.1.theta1",
                 "layers.2.alpha"):
        assert name in state
    np.testing.assert_array_equal(other.layers[1].alpha, net.layers[1].alpha)  # fixed
    np.testing.assert_array_equal(other.layers[0].theta1, net.layers[0].theta1)  # fixed
    out_other, _ = _run_saltatory(other, x, labels)
    np.testing.assert_array_equal(out_other, out)
    for name, p in other.named_parameters():
        np.testing.assert_array_equal(p.grad, grads[name], err_msg=name)
    opt.step()
    other_opt.step()
    for (name, p), q in zip(net.named_parameters(), other.parameters()):
        np.testing.assert_array_equal(p.data, q.data, err_msg=name)


# ----------------------------------------------------------------------------- 7. agreement


def _grads_of(net, x, labels):
    out, _ = _run_saltatory(net, x, labels)
    return out.copy(), [s.to_dense() for s in net.spikes], {n: p.grad.copy() for n, p in
                                                           net.named_parameters()}


@pytest.mark.parametrize("reset,reset_grad", [("state", "pass"), ("state", "mask"),
                                              ("subtract", "pass")])
def test_ipu_model_and_recompute_equal_cpu_bit_for_bit(reset: str, reset_grad: str) -> None:
    """The same learnable-parameter backward on device="ipu-model", with recompute_segment=1
    (membranes recomputed in backward) and on the CPU: bit for bit, alpha and theta1 grads
    included. The dense mode (every neuron listed here) agrees to rounding."""
    if "ipu-model" not in sal.available_devices():
        pytest.skip("this build has no ipu-model device")
    # B = 128: the CPU rounds a segment up to max(1, 256 // B) = 2 steps, so recompute_segment=1
    # really recomputes windows of 2 of the T steps (with B = 3 it would round up past T and
    # store everything)
    x = _input(90, p=0.35, b=128)
    labels = (np.arange(128) % 3).astype(np.int32)
    variants = {"cpu": {}, "ipu-model": {"device": "ipu-model"}, "recompute": {"recompute_segment": 1},
                "dense": {"mode": "dense"}}
    results = {}
    for key, options in variants.items():
        net = Sequential(*_layers("stack", reset, reset_grad, seed=10), **options)
        results[key] = _grads_of(net, x, labels)
    out, spikes, grads = results["cpu"]
    assert {"layers.0.alpha", "layers.0.theta1", "layers.1.alpha", "layers.1.theta1",
            "layers.2.alpha"} <= set(grads)
    for key in ("ipu-model", "recompute"):
        o, s, g = results[key]
        np.testing.assert_array_equal(o, out, err_msg=key)
        for a, b in zip(s, spikes):
            np.testing.assert_array_equal(a, b, err_msg=key)
        for name in grads:
            np.testing.assert_array_equal(g[name], grads[name], err_msg=f"{key} {name}")
    o, s, g = results["dense"]
    for a, b in zip(s, spikes):
        np.testing.assert_array_equal(a, b)
    for name in grads:
        _close(g[name], grads[name], f"dense vs sparse {name}:{_kind(name)}", rtol=1e-4)


def test_print_worst_errors() -> None:
    """Not a check: prints the worst relative errors seen so far (run with -s)."""
    _ERRORS.print_worst()
