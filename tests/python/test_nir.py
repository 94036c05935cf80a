"""NIR export/import: exact Saltatory round trips (in memory and through a .nir file), the
snnTorch and Norse importers reproducing Saltatory's spikes, and clear errors for what Saltatory
cannot represent. Skips cleanly without the nir package (and without torch for the cross-checks)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

nir = pytest.importorskip("nir")

import saltatory as sal  # noqa: E402
from saltatory.nir import from_nir, to_nir  # noqa: E402

T, B = 20, 4


def _input(n_in: int, seed: int = 0) -> sal.SpikeTensor:
    return sal.SpikeTensor.from_dense((np.random.default_rng(seed).random((T, B, n_in)) < 0.3).astype(np.float32))


def _trained_like_net() -> sal.Sequential:
    rng = np.random.default_rng(3)
    return sal.Sequential(
        sal.LIF(30, 24, 6, bias=True, alpha=rng.uniform(0.8, 0.97, 24), theta2=0.7, surrogate="arctan",
                reset_grad="mask", seed=1),
        sal.RecurrentLIF(24, 16, 5, gain=4.0, seed=2),
        sal.Readout(16, 3, alpha=0.9, seed=3))


@pytest.mark.parametrize("neuron", ["LIF", "CubaLIF"])
def test_round_trip_is_exact(tmp_path: Path, neuron: str) -> None:
    net = _trained_like_net()
    for p in net.parameters():  # non-zero biases, like a trained network
        p.data += np.random.default_rng(4).normal(0, 0.05, p.data.shape).astype(np.float32)
    graph = to_nir(net, neuron=neuron)
    assert {type(n).__name__ for n in graph.nodes.values()} >= {"Input", "Affine", neuron, "Linear", "LI", "Output"}
    nir.write(tmp_path / "net.nir", graph)
    for restored in (from_nir(graph), from_nir(nir.read(tmp_path / "net.nir"))):
        for (name, a), (_, b) in zip(net.named_parameters(), restored.named_parameters()):
            np.testing.assert_array_equal(a.data, b.data, err_msg=name)
        for a, b in zip(net.layers, restored.layers):
            np.testing.assert_array_equal(a.alpha, b.alpha)
            assert type(a) is type(b) and a.gain == b.gain
            if isinstance(a, sal.LIF):
                assert (a.capacity, a.theta1, a.theta2, a.surrogate, a.reset_grad) == \
                    (b.capacity, b.theta1, b.theta2, b.surrogate, b.reset_grad)
        x = _input(30)
        np.testing.assert_array_equal(net(x), restored(x))
        for a, b in zip(net.spikes, restored.spikes):
            np.testing.assert_array_equal(a.ids, b.ids)


def test_time_constants_map_to_the_discrete_decay() -> None:
    net = sal.Sequential(sal.LIF(4, 3, 3, alpha=0.9, gain=2.0, seed=0))
    node = to_nir(net, dt=1e-3).nodes["neuron_0"]
    np.testing.assert_allclose(node.tau, 1e-3 / (1 - np.float32(0.9)))  # alpha = 1 - dt / tau
    np.testing.assert_array_equal(node.r, [2.0, 2.0, 2.0])
    np.testing.assert_array_equal(to_nir(net).nodes["linear_0"].weight, net.layers[0].weight.data.T)
    folded = to_nir(net, fold_gain=True)
    np.testing.assert_array_equal(folded.nodes["neuron_0"].r, [1.0, 1.0, 1.0])
    np.testing.assert_allclose(folded.nodes["linear_0"].weight, 2.0 * net.layers[0].weight.data.T)


def test_unsupported_graphs_and_settings_raise() -> None:
    with pytest.raises(ValueError, match="coupling"):
        to_nir(sal.Sequential(sal.LIF(4, 3, 2), coupling="delayed"))
    with pytest.raises(ValueError, match="alpha = 1"):
        to_nir(sal.Sequential(sal.LIF(4, 3, 2, alpha=1.0)))
    graph = to_nir(sal.Sequential(sal.LIF(4, 3, 2, seed=0)))
    graph.nodes["neuron_0"].v_leak = np.full(3, 0.5)
    with pytest.raises(ValueError, match="v_leak = 0"):
        from_nir(graph)
    cuba = to_nir(sal.Sequential(sal.LIF(4, 3, 2, seed=0)), neuron="CubaLIF")
    cuba.nodes["neuron_0"].tau_syn = np.full(3, 5e-3)
    with pytest.raises(ValueError, match="synaptic"):
        from_nir(cuba)
    nodes = {"input": nir.Input(input_type=np.array([4])), "if": nir.IF(r=np.ones(4), v_threshold=np.ones(4)),
             "output": nir.Output(output_type=np.array([4]))}
    with pytest.raises(ValueError, match="expected Linear or Affine"):
        from_nir(nir.NIRGraph(nodes=nodes, edges=[("input", "if"), ("if", "output")]))


def _feed_forward_net() -> sal.Sequential:
    # theta2 far below theta1 and capacity = width: nothing is dropped, as in the dense libraries
    return sal.Sequential(sal.LIF(30, 20, 20, theta2=-1e9, seed=1), sal.LIF(20, 10, 10, theta2=-1e9, seed=2))


def _run_steps(module, x: np.ndarray, with_state: bool) -> np.ndarray:
    torch = pytest.importorskip("torch")
    state, outputs = None, []
    for t in range(len(x)):
        out = module(torch.from_numpy(x[t]), state) if with_state else module(torch.from_numpy(x[t]))
        out, state = out if isinstance(out, tuple) else (out, None)
        outputs.append(out.detach().numpy())
    return np.stack(outputs)


def test_snntorch_import_reproduces_spikes() -> None:
    pytest.importorskip("snntorch")
    from snntorch.import_nir import import_from_nir

    net = _feed_forward_net()
    x = _input(30, seed=5)
    ours = net(x).to_dense()
    assert 0 < ours.mean() < 0.5
    theirs = _run_steps(import_from_nir(to_nir(net)), x.to_dense(), with_state=False)
    np.testing.assert_array_equal(theirs, ours)


def test_norse_import_reproduces_spikes() -> None:
    norse = pytest.importorskip("norse.torch")
    net = _feed_forward_net()
    x = _input(30, seed=6)
    ours = net(x).to_dense()
    # Norse ignores R, so the gain goes into the weights; Norse's default dt is 1 ms
    module = norse.from_nir(to_nir(net, dt=1e-3, fold_gain=True), dt=1e-3)
    theirs = _run_steps(module, x.to_dense(), with_state=True)
    np.testing.assert_array_equal(theirs, ours)
