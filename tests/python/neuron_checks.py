"""What the neuron-model test files share (test_neuron_params, test_cuba, test_alif, test_adlif):
relative errors with a record of the worst per kind, random input spikes, the float64 references'
spike function and loss, and the bitwise comparison of two runs. Not a test file: pytest imports
it from the test files' directory."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import saltatory as sal  # noqa: E402
from saltatory import SpikeTensor  # noqa: E402


def rel_err(actual, expected) -> float:
    """max |actual - expected| / max |expected| over the whole array."""
    actual = np.asarray(actual, np.float64)
    expected = np.asarray(expected, np.float64)
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    scale = max(float(np.abs(expected).max()), 1e-12)
    return float(np.abs(actual - expected).max()) / scale


class Errors:
    """One test file's comparisons: ``close`` asserts a relative error at most ``rtol`` and records
    the worst per kind (the part of ``what`` after its last ':'), ``print_worst`` prints them."""

    def __init__(self, rtol: float):
        self.rtol = rtol
        self.worst: dict[str, float] = {}

    def close(self, actual, expected, what: str, rtol: float | None = None) -> float:
        rtol = self.rtol if rtol is None else rtol
        err = rel_err(actual, expected)
        kind = what.split(":")[-1]
        self.worst[kind] = max(self.worst.get(kind, 0.0), err)
        print(f"  rel err {what}: {err:.3g}")
        assert err <= rtol, f"{what}: max abs error / max abs value = {err:.3g} > {rtol}"
        return err

    def print_worst(self) -> None:
        for kind, err in sorted(self.worst.items()):
            print(f"worst relative error {kind}: {err:.3g}")


def spike_input(t: int, b: int, n: int, p: float):
    """input(seed, p, n, t, b): 0/1 float32 spikes [t, b, n], each 1 with probability p (the
    arguments default to the test file's sizes)."""

    def make(seed: int, p: float = p, n: int = n, t: int = t, b: int = b) -> np.ndarray:
        return (np.random.default_rng(seed).random((t, b, n)) < p).astype(np.float32)

    return make


def rand_vec(rng, lo, hi, n):
    return rng.uniform(lo, hi, n).astype(np.float32)


def grads(net) -> dict[str, np.ndarray]:
    return {n: p.grad.copy() for n, p in net.named_parameters()}


def torch_ce(membrane, labels) -> torch.Tensor:
    """mean_b sum_t CE(softmax(V[t, b]), y_b) (saltatory.losses.membrane_cross_entropy)."""
    t, b, c = membrane.shape
    y = torch.as_tensor(np.asarray(labels, np.int64)).repeat(t)
    return torch.nn.functional.cross_entropy(membrane.reshape(t * b, c), y, reduction="sum") / b


def clamp01(a):
    """a clamped into [0, 1] with gradient 1 on [0, 1] (boundaries included) and 0 outside, as
    Saltatory's ``_clamp_grad``."""
    return torch.where((a >= 0) & (a <= 1), a, a.clamp(0.0, 1.0).detach())


class Spike(torch.autograd.Function):
    """Forward: the given 0/1 spikes (Saltatory's emitted lists, or H(x)); backward:
    g * SuperSpike'(x) at listed entries, 0 elsewhere."""

    @staticmethod
    def forward(ctx, x, emitted, listed, beta):
        ctx.save_for_backward(x, listed)
        ctx.beta = beta
        return emitted.clone()

    @staticmethod
    def backward(ctx, grad):
        x, listed = ctx.saved_tensors
        return grad / (ctx.beta * x.abs() + 1.0) ** 2 * listed, None, None, None


def lists_of(spikes: SpikeTensor) -> tuple[np.ndarray, np.ndarray]:
    """Dense masks [T, B, N] of a SpikeTensor's emitted spikes and of all its listed entries."""
    t_, b_, _ = spikes.ids.shape
    emitted = np.zeros((t_, b_, spikes.n_neurons), np.float64)
    listed = np.zeros_like(emitted)
    for t in range(t_):
        for b in range(b_):
            ids = spikes.ids[t, b]
            emitted[t, b, ids[:spikes.n_spk[t, b]]] = 1.0
            listed[t, b, ids[:spikes.n_tot[t, b]]] = 1.0
    return emitted, listed


def run(net, x: np.ndarray, loss: str = "ce", G=None, *, labels):
    """Forward and backward with the membrane cross-entropy or the linear loss sum(V G)."""
    out = net(SpikeTensor.from_dense(x))
    net.zero_grad()
    if loss == "ce":
        value, grad = sal.losses.membrane_cross_entropy(out, labels)
    else:
        value, grad = float((out.astype(np.float64) * G).sum()), G
    net.backward(grad)
    return out, value


def results(net, x, labels):
    """What two runs must agree on bit for bit: readout, lists, gradients and drops."""
    out, _ = run(net, x, labels=labels)
    lists = [(s.ids.copy(), s.n_spk.copy(), s.n_tot.copy()) for s in net.spikes]
    return out.copy(), lists, grads(net), list(net.dropped), list(net.dropped_candidates)


def assert_bitwise(a, b, what: str) -> None:
    out_a, lists_a, g_a, d_a, dc_a = a
    out_b, lists_b, g_b, d_b, dc_b = b
    np.testing.assert_array_equal(out_a, out_b, err_msg=f"{what}: readout")
    for la, lb in zip(lists_a, lists_b):
        for xa, xb in zip(la, lb):
            np.testing.assert_array_equal(xa, xb, err_msg=f"{what}: lists")
    assert d_a == d_b and dc_a == dc_b, what
    assert g_a.keys() == g_b.keys()
    for name in g_a:
        np.testing.assert_array_equal(g_a[name], g_b[name], err_msg=f"{what}: {name}")
