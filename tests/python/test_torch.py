"""saltatory.torch: the autograd Function and modules, and cross-checks against snnTorch's Leaky.
Skips cleanly when PyTorch (or snnTorch) is absent."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import saltatory as sal  # noqa: E402
from saltatory.torch import SparseLIF, SparseRecurrentLIF, SparseSequential  # noqa: E402

T, B, N_IN, N, C = 12, 4, 20, 16, 3


def _input(seed: int = 0, p: float = 0.3) -> np.ndarray:
    return (np.random.default_rng(seed).random((T, B, N_IN)) < p).astype(np.float32)


def _stack_layers(seed: int = 1):
    return (sal.LIF(N_IN, N, 8, seed=seed), sal.RecurrentLIF(N, N, 6, bias=True, seed=seed + 1),
            sal.Readout(N, C, seed=seed + 2))


@pytest.mark.parametrize("recompute_segment", [0, 1])
def test_module_gradients_equal_the_numpy_stack(recompute_segment: int) -> None:
    """Also with checkpointing in time in the module (B = 4: windows of 64 steps, so T = 12 is one
    window; a 256-sample batch below splits into windows of one step)."""
    x = _input()
    labels = np.array([0, 1, 2, 1], np.int32)
    module = SparseSequential(*_stack_layers(), coupling="delayed", recompute_segment=recompute_segment)
    reference = sal.Sequential(*_stack_layers(), coupling="delayed")
    spikes = sal.SpikeTensor.from_dense(x)
    out = reference(spikes)
    loss, grad = sal.losses.membrane_cross_entropy(out, labels)
    reference.backward(grad)

    membrane = module(torch.from_numpy(x))
    assert membrane.shape == (T, B, C) and membrane.dtype == torch.float32
    np.testing.assert_array_equal(membrane.detach().numpy(), out)
    membrane.data[...] = 0  # a copy: the context, which backward reads, stays as it was
    np.testing.assert_array_equal(module.net._context.readout, out)
    membrane.backward(torch.from_numpy(grad))
    for (name, param), torch_name in zip(reference.named_parameters(), module._order):
        np.testing.assert_array_equal(getattr(module, torch_name).grad.numpy(), param.grad, err_msg=name)


def test_module_with_recompute_segment_gives_the_stored_gradients() -> None:
    x = torch.from_numpy((np.random.default_rng(3).random((T, 256, N_IN)) < 0.3).astype(np.float32))
    grads = []
    for segment in (0, 1, "auto"):
        module = SparseSequential(*_stack_layers(), recompute_segment=segment)
        module(x).square().sum().backward()
        grads.append([p.grad.numpy().copy() for p in module.parameters()])
    for other in grads[1:]:
        for a, b in zip(grads[0], other):
            np.testing.assert_array_equal(a, b)


def test_parameters_share_memory_and_torch_optimisers_train() -> None:
    module = SparseSequential(sal.LIF(N_IN, 32, 16, seed=0), sal.Readout(32, 2, seed=1))
    module(torch.from_numpy(_input()[:, :, :N_IN]))
    for name, param in module.named_parameters():  # a forward reads the parameters in place
        layer, slot = int(name.split("_")[1]), name.split("_", 2)[2]
        assert param.data_ptr() == getattr(module.net.layers[layer], slot).data.ctypes.data
    rng = np.random.default_rng(0)
    x = np.zeros((T, 32, N_IN), np.float32)
    labels = rng.integers(0, 2, 32)
    for b, label in enumerate(labels):  # class 0 fires in the first half of the inputs, class 1 in the second
        half = slice(0, N_IN // 2) if label == 0 else slice(N_IN // 2, N_IN)
        x[:, b, half] = rng.random((T, N_IN // 2)) < 0.4
    opt = torch.optim.Adam(module.parameters(), lr=1e-2)
    target = torch.from_numpy(labels)
    losses = []
    for _ in range(30):
        logits = module(torch.from_numpy(x)).sum(0)  # summed readout membrane
        loss = torch.nn.functional.cross_entropy(logits, target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_input_gradient_is_defined_at_input_spikes() -> None:
    x = torch.from_numpy(_input(3)).requires_grad_(True)
    module = SparseLIF(N_IN, N, N, theta2=-1e9)  # every neuron listed: dense-equivalent
    out = module(x)
    weights = torch.from_numpy(np.random.default_rng(1).standard_normal((T, B, N)).astype(np.float32))
    (out * weights).sum().backward()
    grad = x.grad.numpy()
    assert np.all(grad[x.detach().numpy() == 0] == 0)
    assert np.count_nonzero(grad) > 0


def test_two_pending_forwards_and_errors() -> None:
    module = SparseRecurrentLIF(N_IN, N, 8, seed=2)
    first, second = module(torch.from_numpy(_input(1))), module(torch.from_numpy(_input(2)))
    (first.sum() + second.sum()).backward()  # each forward keeps its own context
    assert module.layers_0_weight.grad is not None
    with pytest.raises(ValueError, match=r"\[T, B, N\]"):
        module(torch.zeros(3, 4))
    with pytest.raises(TypeError, match="torch.Tensor or SpikeTensor"):
        module(np.zeros((T, B, N_IN), np.float32))
    with pytest.raises(TypeError, match="float or bool"):
        module(torch.zeros(T, B, N_IN, dtype=torch.int64))
    out = module(torch.from_numpy(_input(1)))
    out.sum().backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="twice"):
        out.sum().backward()


def _snntorch_reference(x: np.ndarray, weight: np.ndarray, alpha: float, grad_spikes: np.ndarray):
    """Linear (no bias) + snntorch.Leaky(reset to zero, fast-sigmoid surrogate, slope 10)."""
    snn = pytest.importorskip("snntorch")
    from snntorch import surrogate

    w = torch.tensor(weight.T.copy(), requires_grad=True)  # torch Linear is output-major
    xt = torch.tensor(x, requires_grad=True)
    lif = snn.Leaky(beta=alpha, threshold=1.0, spike_grad=surrogate.fast_sigmoid(slope=10),
                    reset_mechanism="zero")
    mem = torch.zeros(x.shape[1], weight.shape[1])
    spikes = []
    for t in range(x.shape[0]):
        spk, mem = lif(xt[t] @ w.T, mem)
        spikes.append(spk)
    spikes = torch.stack(spikes)
    (spikes * torch.from_numpy(grad_spikes)).sum().backward()
    return spikes.detach().numpy(), w.grad.numpy().T, xt.grad.numpy()


@pytest.mark.parametrize("mode", ["sparse", "dense"])
def test_lif_equals_snntorch_leaky(mode: str) -> None:
    alpha = 0.9
    x = _input(5, p=0.4)
    grad_spikes = np.random.default_rng(6).standard_normal((T, B, N)).astype(np.float32)
    # snnTorch: mem = beta mem (1 - reset) + W x, reset = H(mem[t-1] - 1) detached from the graph;
    # Saltatory: V = alpha V (1 - r) + gain (1 - alpha) I with gain = 1 / (1 - alpha), reset_grad
    # "mask", and theta2 low enough that every neuron is listed (capacity N): the dense gradient.
    module = SparseLIF(N_IN, N, N, alpha=alpha, gain=1.0 / (1.0 - alpha), theta2=-1e9,
                       reset_grad="mask", surrogate="super_spike", beta=10.0, mode=mode, seed=4)
    weight = module.layers_0_weight.detach().numpy().copy()
    xt = torch.from_numpy(x).requires_grad_(True)
    out = module(xt)
    (out * torch.from_numpy(grad_spikes)).sum().backward()

    spikes_ref, grad_w_ref, grad_x_ref = _snntorch_reference(x, weight, alpha, grad_spikes)
    assert 0 < spikes_ref.mean() < 0.5  # some, not all, neurons spike
    np.testing.assert_array_equal(out.detach().numpy(), spikes_ref)
    np.testing.assert_allclose(module.layers_0_weight.grad.numpy(), grad_w_ref, rtol=2e-4, atol=2e-5)
    at_spikes = x == 1  # Saltatory defines input gradients at input spikes
    np.testing.assert_allclose(xt.grad.numpy()[at_spikes], grad_x_ref[at_spikes], rtol=2e-4, atol=2e-5)


def _detached_reset(z, v, reset, th):
    """Norse's reset_value with the spike detached: the reset-gradient convention of snnTorch and
    of Saltatory's reset_grad="mask" (Norse's default also differentiates through the reset)."""
    z = z.detach()
    return (1 - z) * v + z * reset


@pytest.mark.parametrize("mode", ["sparse", "dense"])
def test_lif_equals_norse_lif_box(mode: str) -> None:
    norse = pytest.importorskip("norse.torch")
    from norse.torch.functional.lif_box import (LIFBoxFeedForwardState, LIFBoxParameters,
                                                lif_box_feed_forward_step)

    alpha, dt = 0.9, 1e-3
    x = _input(7, p=0.4)
    grad_spikes = np.random.default_rng(8).standard_normal((T, B, N)).astype(np.float32)
    # Norse LIFBox: v = v + dt tau_inv (i - v), z = H(v - 1), v = (1 - z) v: alpha = 1 - dt tau_inv
    # and gain = 1. Norse's SuperSpike has slope 1: 1 / (|v - 1| + 1)^2.
    module = SparseLIF(N_IN, N, N, alpha=alpha, gain=1.0, theta2=-1e9, reset_grad="mask",
                       surrogate="super_spike", beta=1.0, mode=mode, seed=9)
    weight = module.layers_0_weight.detach().numpy().copy()
    xt = torch.from_numpy(x).requires_grad_(True)
    out = module(xt)
    (out * torch.from_numpy(grad_spikes)).sum().backward()

    p = LIFBoxParameters(tau_mem_inv=torch.as_tensor((1 - alpha) / dt), v_leak=torch.as_tensor(0.0),
                         v_th=torch.as_tensor(1.0), v_reset=torch.as_tensor(0.0), method="super",
                         reset_method=_detached_reset)
    w = torch.tensor(weight, requires_grad=True)
    xn = torch.tensor(x, requires_grad=True)
    state = LIFBoxFeedForwardState(v=torch.zeros(B, N))
    spikes = []
    for t in range(T):
        z, state = lif_box_feed_forward_step(xn[t] @ w, state, p, dt=dt)
        spikes.append(z)
    spikes = torch.stack(spikes)
    (spikes * torch.from_numpy(grad_spikes)).sum().backward()
    assert norse is not None and 0 < spikes.mean().item() < 0.5
    np.testing.assert_array_equal(out.detach().numpy(), spikes.detach().numpy())
    np.testing.assert_allclose(module.layers_0_weight.grad.numpy(), w.grad.numpy(), rtol=2e-4, atol=2e-5)
    at_spikes = x == 1
    np.testing.assert_allclose(xt.grad.numpy()[at_spikes], xn.grad.numpy()[at_spikes], rtol=2e-4, atol=2e-5)


def test_lif_forward_equals_norse_current_based_lif() -> None:
    pytest.importorskip("norse.torch")
    from norse.torch.functional.lif import LIFFeedForwardState, LIFParameters, lif_feed_forward_step

    # Norse's LIF adds the input to a synaptic current that decays by dt * tau_syn_inv per step;
    # with dt * tau_syn_inv = 1 the current is the step's input alone, which is Saltatory's LIF.
    # (Its reset is differentiated, so only the forward is compared; gradients: LIFBox above.)
    alpha, dt = 0.9, 1e-3
    x = _input(9, p=0.4)
    module = SparseLIF(N_IN, N, N, alpha=alpha, gain=1.0, theta2=-1e9, seed=10)
    w = torch.from_numpy(module.layers_0_weight.detach().numpy().copy())
    p = LIFParameters(tau_syn_inv=torch.as_tensor(1.0 / dt), tau_mem_inv=torch.as_tensor((1 - alpha) / dt),
                      v_leak=torch.as_tensor(0.0), v_th=torch.as_tensor(1.0), v_reset=torch.as_tensor(0.0))
    state = LIFFeedForwardState(v=torch.zeros(B, N), i=torch.zeros(B, N))
    spikes = []
    for t in range(T):
        z, state = lif_feed_forward_step(torch.from_numpy(x[t]) @ w, state, p, dt=dt)
        spikes.append(z)
    spikes = torch.stack(spikes).numpy()
    assert 0 < spikes.mean() < 0.5
    np.testing.assert_array_equal(module(torch.from_numpy(x)).detach().numpy(), spikes)
