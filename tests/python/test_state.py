"""Explicit state (``Sequential.forward(x, state=, return_state=True)``): forwards over consecutive
chunks of a sequence equal one forward over the whole sequence bit for bit, for every neuron model,
sparse (stored and recomputed membranes) and dense, with recurrence, delayed coupling, the spike
reset and the random overflow policy, on the cpu and the ipu-model; a chunk's backward is truncated
BPTT from a constant state, checked against a float64 torch-autograd BPTT of the same equations;
bad states are refused. Also inference (``grad=False``: chunked, no context, memory independent of
T), ``record="membrane"`` and the torch module's state."""

from __future__ import annotations

import copy
import pickle

import numpy as np
import pytest

import saltatory as sal
from saltatory import (LIF, AdaptiveLIF, CubaLIF, Readout, RecurrentAdaptiveLIF, RecurrentCubaLIF,
                       RecurrentLIF, Sequential, SpikeTensor, State)

from neuron_checks import rand_vec, spike_input

T, B, N_IN = 13, 3, 12
_input = spike_input(T, B, N_IN, p=0.3)


def _stack(kind: str, seed: int = 0) -> list:
    rng = np.random.default_rng(seed)
    common = dict(alpha=rand_vec(rng, 0.8, 0.95, 16), seed=seed + 1)
    layers = {
        "lif": lambda: [LIF(N_IN, 16, 6, **common), RecurrentLIF(16, 14, 5, seed=seed + 2)],
        "lif_spike_reset": lambda: [RecurrentLIF(N_IN, 16, 4, reset="spike", reset_grad="mask",
                                                 **common)],
        "subtract": lambda: [RecurrentLIF(N_IN, 16, 5, reset="subtract", bias=True, **common)],
        "cuba": lambda: [CubaLIF(N_IN, 16, 6, **common), RecurrentCubaLIF(16, 14, 5, seed=seed + 2)],
        "alif": lambda: [RecurrentAdaptiveLIF(N_IN, 16, 5, adaptation="threshold", **common)],
        "adlif": lambda: [AdaptiveLIF(N_IN, 16, 6, adaptation="current", **common),
                          RecurrentAdaptiveLIF(16, 14, 5, adaptation="current", seed=seed + 2)],
    }[kind]()
    return layers + [Readout(layers[-1].n_out, 4, seed=seed + 3)]


def _chunks(net, x: SpikeTensor, bounds: list[int]):
    state, outs, spikes = None, [], []
    for t0, t1 in zip(bounds[:-1], bounds[1:]):
        out, state = net.forward(x[t0:t1], state=state, return_state=True)
        outs.append(out.to_dense() if isinstance(out, SpikeTensor) else np.array(out))
        spikes.append([s.to_dense() for s in net.spikes])
    return np.concatenate(outs), [np.concatenate(layer) for layer in zip(*spikes)], state


@pytest.mark.parametrize("kind", ["lif", "lif_spike_reset", "subtract", "cuba", "alif", "adlif"])
@pytest.mark.parametrize("mode,segment,coupling", [("sparse", 0, "same_step"),
                                                   ("sparse", 2, "delayed"),
                                                   ("dense", 0, "same_step")])
def test_chunks_equal_the_whole_sequence_bitwise(kind, mode, segment, coupling) -> None:
    net = Sequential(*_stack(kind), mode=mode, coupling=coupling, recompute_segment=segment, seed=9)
    x = SpikeTensor.from_dense(_input(3))
    whole, whole_state = net.forward(x, return_state=True)
    whole, whole_spikes = np.array(whole), [s.to_dense() for s in net.spikes]
    assert whole_state.steps == T
    assert sum(int(s.sum()) for s in whole_spikes) > 0
    for bounds in ([0, 1, T], [0, 5, 6, T], [0, *range(1, T + 1)]):  # the last: one step at a time
        out, spikes, state = _chunks(net, x, bounds)
        np.testing.assert_array_equal(out, whole)
        for a, b in zip(spikes, whole_spikes):
            np.testing.assert_array_equal(a, b)
        assert state.steps == T
        for a, b in zip(state.states, whole_state.states):
            np.testing.assert_array_equal(a, b)


def test_random_overflow_continues_by_absolute_step() -> None:
    """Full lists keep a random subset drawn per (step, sample): chunks draw as the whole does."""
    net = Sequential(LIF(N_IN, 30, 2, seed=1, gain=30.0), overflow="random", seed=4)
    x = SpikeTensor.from_dense(_input(5))
    whole = net.forward(x).to_dense()
    assert net.dropped[0] > 0
    _, spikes, _ = _chunks(net, x, [0, 4, 9, T])
    np.testing.assert_array_equal(spikes[0], whole)


def test_truncated_bptt_matches_float64_autograd_from_a_constant_state() -> None:
    """The second chunk's gradients (weights, recurrent weights, bias, learnable alpha and theta1)
    equal those of a float64 autograd BPTT that starts from the first chunk's state as a constant."""
    torch = pytest.importorskip("torch")
    from neuron_checks import Errors, torch_ce
    from test_neuron_params import _reference, _torch_params

    rng = np.random.default_rng(5)
    low = dict(theta2=-1e9, learn_alpha=True, learn_threshold=True)  # every neuron listed
    l0 = LIF(N_IN, 9, 9, alpha=rand_vec(rng, 0.8, 0.95, 9), theta1=rand_vec(rng, 0.7, 1.3, 9),
             seed=1, **low)
    l1 = RecurrentLIF(9, 8, 8, alpha=rand_vec(rng, 0.8, 0.95, 8), bias=True, seed=2, **low)
    l1.bias.data[:] = rng.uniform(-0.1, 0.15, 8)
    ro = Readout(8, 3, bias=True, seed=3, learn_alpha=True)
    net = Sequential(l0, l1, ro)
    x = _input(8, p=0.35)
    _, state = net.forward(SpikeTensor.from_dense(x[:6]), return_state=True)
    out = net.forward(SpikeTensor.from_dense(x[6:]), state=state)
    labels = np.array([0, 1, 2], np.int32)
    loss, grad = sal.losses.membrane_cross_entropy(out, labels)
    net.zero_grad()
    net.backward(grad)

    params = _torch_params(net)
    initial = [(st[0].astype(np.float64),
                None if sp is None else sp.to_dense()[0].astype(np.float64))
               for st, sp in zip(state.states, state.spikes)]
    outs, _ = _reference(net, x[6:], params, initial=initial)
    ref_loss = torch_ce(outs[-1], labels)
    ref_loss.backward()
    assert abs(loss - ref_loss.item()) <= 1e-4 * abs(ref_loss.item())
    errors = Errors(1e-3)
    errors.close(out, outs[-1].detach().numpy(), "readout", rtol=1e-4)
    names = dict(net.named_parameters())
    for i, p in enumerate(params):
        for kind, tensor in p.items():
            if f"layers.{i}.{kind}" in names:
                errors.close(names[f"layers.{i}.{kind}"].grad, tensor.grad.numpy(),
                             f"layers.{i}.{kind}", rtol=1e-3)
    # the initial state matters: from rest the gradients differ
    net.forward(SpikeTensor.from_dense(x[6:]))
    net.zero_grad()
    net.backward(sal.losses.membrane_cross_entropy(net.forward(SpikeTensor.from_dense(x[6:])),
                                                   labels)[1])
    assert not np.allclose(names["layers.1.weight_rec"].grad, params[1]["weight_rec"].grad.numpy(),
                           rtol=1e-3)


def test_state_survives_copy_and_pickle_and_bad_states_are_refused() -> None:
    net = Sequential(*_stack("alif"))
    x = SpikeTensor.from_dense(_input(2))
    out, state = net.forward(x[:5], return_state=True)
    rest = np.array(net.forward(x[5:], state=state))
    for clone in (copy.deepcopy(state), pickle.loads(pickle.dumps(state))):
        np.testing.assert_array_equal(np.array(net.forward(x[5:], state=clone)), rest)
    assert len(state.membranes) == 2 and state.membranes[0].shape == (B, 16)

    with pytest.raises(TypeError, match="Sequential.forward.*State"):
        net.forward(x, state={"v": 0})
    bad = copy.deepcopy(state)
    bad.states[0] = bad.states[0][:, :2]
    with pytest.raises(ValueError, match="Sequential.forward.*layer 0.*shape.*batch"):
        net.forward(x, state=bad)
    bad = copy.deepcopy(state)
    bad.states[0] = bad.states[0][:1]
    with pytest.raises(ValueError, match="Sequential.forward.*layer 0.*shape"):
        net.forward(x, state=bad)
    bad = copy.deepcopy(state)
    bad.states[1] = bad.states[1].copy()
    bad.states[1][0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="lif_stack_forward.*not finite"):
        net.forward(x, state=bad)
    bad = copy.deepcopy(state)
    bad.states[0] = bad.states[0].astype(np.float64)
    with pytest.raises(TypeError, match="lif_stack_forward.*dtype"):
        net.forward(x, state=bad)
    bad = copy.deepcopy(state)
    bad.states.pop()
    with pytest.raises(ValueError, match="Sequential.forward.*layers"):
        net.forward(x, state=bad)
    bad = copy.deepcopy(state)
    bad.spikes[0] = bad.spikes[0].to_dense()
    with pytest.raises(TypeError, match="Sequential.forward.*SpikeTensor"):
        net.forward(x, state=bad)
    bad = copy.deepcopy(state)
    bad.spikes[0] = None
    with pytest.raises(ValueError, match="lif_stack_forward.*initial spikes"):
        net.forward(x, state=bad)
    bad = copy.deepcopy(state)
    bad.states[0] = np.ascontiguousarray(bad.states[0].reshape(2, 16, 3))  # the right size
    with pytest.raises(ValueError, match="Sequential.forward.*layer 0.*shape"):
        net.forward(x, state=bad)
    bad = copy.deepcopy(state)
    bad.spikes[0].ids[0, 0, 0] = 1000
    bad.spikes[0].n_spk[0, 0] = bad.spikes[0].n_tot[0, 0] = max(1, int(bad.spikes[0].n_tot[0, 0]))
    with pytest.raises(ValueError, match="lif_stack_forward.*state's spikes"):
        net.forward(x, state=bad)
    with pytest.raises(TypeError, match="not iterable"):
        iter(x)
    bad = copy.deepcopy(state)
    bad.steps = -1
    with pytest.raises(ValueError, match="lif_stack_forward.*steps"):
        net.forward(x, state=bad)
    with pytest.raises(TypeError, match="SpikeTensor.*slice"):
        x[3]
    with pytest.raises(ValueError, match="SpikeTensor.*no step"):
        x[5:5]
    assert isinstance(state, State)


def test_ipu_model_continues_as_the_cpu_does() -> None:
    """A state left by the cpu continues on the ipu-model with the same results, and back."""
    if "ipu-model" not in sal.available_devices():
        pytest.skip("ipu-model is not built")
    x = SpikeTensor.from_dense(_input(1))
    cpu, ipu = Sequential(*_stack("alif")), Sequential(*_stack("alif"), device="ipu-model")
    whole = np.array(cpu.forward(x))
    _, state = cpu.forward(x[:4], return_state=True)
    middle, state = ipu.forward(x[4:9], state=state, return_state=True)
    rest = cpu.forward(x[9:], state=state)
    np.testing.assert_array_equal(np.concatenate([whole[:4], middle, rest]), whole)


def test_inference_keeps_no_context_and_equals_the_training_forward() -> None:
    """grad=False: bitwise the grad=True outputs, drops and membranes, in chunks of steps (here
    forced small), with no context left for backward."""
    import saltatory.nn as nn

    net = Sequential(*_stack("cuba"), overflow="random", seed=3)
    x = SpikeTensor.from_dense(_input(4))
    out, state = net.forward(x, return_state=True, record="membrane")
    out, membranes = np.array(out), [m.copy() for m in net.membranes]
    spikes, dropped = [s.to_dense() for s in net.spikes], list(net.dropped)
    saved = nn._INFERENCE_CHUNK_BYTES
    try:
        for chunk_bytes in (saved, 4 * B * (16 * 2 + 14 * 2 + 4) * 3):  # everything, 3 steps
            nn._INFERENCE_CHUNK_BYTES = chunk_bytes
            got, got_state = net.forward(x, grad=False, return_state=True, record="membrane")
            np.testing.assert_array_equal(got, out)
            for a, b in zip(net.membranes, membranes):
                np.testing.assert_array_equal(a, b)
            for a, b in zip(net.spikes, spikes):
                np.testing.assert_array_equal(a.to_dense(), b)
            assert net.dropped == dropped
            for a, b in zip(got_state.states, state.states):
                np.testing.assert_array_equal(a, b)
            with pytest.raises(ValueError, match="call forward first"):
                net.backward(np.zeros_like(out))
    finally:
        nn._INFERENCE_CHUNK_BYTES = saved


def test_inference_memory_does_not_grow_with_the_sequence() -> None:
    """Under a memory limit that refuses the training forward's [T, B, N] membranes, grad=False
    runs the same sequence (its chunks hold about 16 MB of states) and gives the same spikes as
    the training forward in pieces."""
    T_long, n = 6000, 2048
    rng = np.random.default_rng(0)
    ids = np.sort(rng.integers(0, 64, (T_long, 1, 4)), axis=2).astype(np.int32)
    ids[:, :, 1:] += np.arange(1, 4, dtype=np.int32) * 64  # distinct
    x = SpikeTensor(ids, np.full((T_long, 1), 4, np.int32), n_neurons=256)
    net = Sequential(LIF(256, n, 64, seed=1, gain=20.0))
    limit = sal.memory_limit()
    try:
        sal.set_memory_limit(40 << 20)  # the membranes alone would be 49 MB
        with pytest.raises(ValueError, match="lif_stack_forward.*memory"):
            net.forward(x)
        out = net.forward(x, grad=False)
    finally:
        sal.set_memory_limit(limit)
    assert out.shape[0] == T_long and out.n_spk.sum() > 0
    np.testing.assert_array_equal(out.ids[:1000], net.forward(x[:1000]).ids)


def test_membranes_are_v_for_every_model() -> None:
    """record="membrane": V itself, also for the ALIF (which stores u = V - b a)."""
    x = SpikeTensor.from_dense(_input(6))
    for kind in ("lif", "alif"):
        net = Sequential(*_stack(kind))
        _, state = net.forward(x, return_state=True, record="membrane")
        assert [m.shape for m in net.membranes] == [(T, B, layer.n_out) for layer in net.layers]
        first = net.layers[0]
        u = state.states[0][0]
        expected = u if kind == "lif" else u + first.b.astype(np.float32) * state.states[0][1]
        np.testing.assert_array_equal(net.membranes[0][-1], expected)
        net.forward(x)
        assert net.membranes == []
    net = Sequential(*_stack("lif"), recompute_segment=2)  # B = 256: the CPU keeps 1-step windows
    with pytest.raises(ValueError, match="record='membrane' needs"):
        net.forward(SpikeTensor.from_dense(spike_input(T, 256, N_IN, p=0.3)(6)), record="membrane")
    with pytest.raises(ValueError, match="record must be"):
        net.forward(x, record="spikes")


def test_torch_module_takes_and_returns_state() -> None:
    torch = pytest.importorskip("torch")
    from saltatory.torch import SparseSequential

    module = SparseSequential(*_stack("lif"))
    dense = torch.from_numpy(_input(7))
    x = module.to_spikes(dense)
    whole = module(x)
    first, state = module(x[:6], return_state=True)
    rest = module(x[6:], state=state)
    assert isinstance(state, State)
    torch.testing.assert_close(torch.cat([first, rest]), whole, rtol=0, atol=0)
    rest.sum().backward()  # truncated BPTT through the second chunk
    assert module.layers_0_weight.grad is not None and module.layers_0_weight.grad.abs().sum() > 0
    with pytest.raises(TypeError, match="SparseSequential.*State"):
        module(x, state=(0, []))
    # dense inputs whose lists overflow: each chunk is binned with the state's step
    m = SparseSequential(*_stack("lif"), input_capacity=2, seed=4)
    whole = m(dense)
    assert m.net.spikes and m.to_spikes(dense).dropped > 0
    first, state = m(dense[:5], return_state=True)
    torch.testing.assert_close(torch.cat([first, m(dense[5:], state=state)]), whole, rtol=0, atol=0)
