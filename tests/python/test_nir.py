"""NIR export/import: exact Saltatory round trips (in memory and through a .nir file), the
snnTorch and Norse importers reproducing Saltatory's spikes, and clear errors for what Saltatory
cannot represent; for current-based (CUBA) layers also the import of foreign CubaLIF graphs
against a float64 simulation of NIR's Euler equations. Skips cleanly without the nir package (and
without torch, snnTorch or Norse for the cross-checks)."""

from __future__ import annotations

import contextlib
import io
import signal
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
                assert (a.capacity, a.theta2, a.surrogate, a.reset_grad) == \
                    (b.capacity, b.theta2, b.surrogate, b.reset_grad)
                np.testing.assert_array_equal(a.theta1, b.theta1)
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
    cuba.nodes["neuron_0"].tau_syn = np.full(3, 5e-3)  # a synaptic time constant: now a CUBA layer
    layer = from_nir(cuba).layers[0]
    assert type(layer) is sal.CubaLIF
    np.testing.assert_array_equal(layer.alpha_syn, np.float32(1 - 1e-4 / 5e-3))
    nodes = {"input": nir.Input(input_type=np.array([4])), "if": nir.IF(r=np.ones(4), v_threshold=np.ones(4)),
             "output": nir.Output(output_type=np.array([4]))}
    with pytest.raises(ValueError, match="expected Linear or Affine"):
        from_nir(nir.NIRGraph(nodes=nodes, edges=[("input", "if"), ("if", "output")]))


def _drop_edge(graph, edge) -> None:
    graph.edges.remove(edge)


def _set(graph, node: str, field: str, value) -> None:
    setattr(graph.nodes[node], field, value)


def _spoil(graph, node: str, field: str, index, value) -> None:
    array = np.array(getattr(graph.nodes[node], field), dtype=np.float64)
    array[index] = value
    setattr(graph.nodes[node], field, array)


def _add_nodes(graph, edges, **nodes) -> None:
    graph.nodes.update(nodes)
    graph.edges.extend(edges)


def _meta(graph, node: str, **settings) -> None:
    graph.nodes[node].metadata.setdefault("saltatory", {}).update(settings)


# Each case spoils the export of _trained_like_net(): input -> linear_0 (Affine) -> neuron_0 (LIF)
# -> linear_1 -> neuron_1 (LIF, recurrent_1 looping back) -> linear_2 -> neuron_2 (LI) -> output.
_MALFORMED = {
    "cycle back to the first layer": (lambda g: (_drop_edge(g, ("neuron_2", "output")),
                                                 g.edges.append(("neuron_2", "linear_0"))),
                                      ValueError, "node 'linear_0' is reached twice: the graph has a cycle"),
    "a branch back": (lambda g: g.edges.append(("neuron_1", "linear_0")), ValueError, "node 'neuron_1' feeds 2"),
    "LIF looping into itself": (lambda g: g.edges.append(("neuron_0", "neuron_0")), ValueError,
                                "node 'neuron_0' loops back into 'neuron_0' but is part of a cycle"),
    "LIF looping into its Linear": (lambda g: g.edges.append(("neuron_0", "linear_0")), ValueError,
                                    "node 'linear_0' loops back into 'neuron_0' but is part of a cycle"),
    "recurrent Linear feeding on": (lambda g: g.edges.append(("recurrent_1", "output")), ValueError,
                                    "node 'recurrent_1' loops back into 'neuron_1' but is part of a cycle"),
    "two recurrent loops": (lambda g: _add_nodes(g, [("neuron_1", "r2"), ("r2", "neuron_1")],
                                                 r2=nir.Linear(weight=np.ones((16, 16)))),
                            ValueError, "node 'neuron_1' has 2 recurrent loops"),
    "recurrent Affine with a NaN bias": (lambda g: g.nodes.update(recurrent_1=nir.Affine(
        weight=np.ones((16, 16)), bias=np.full(16, np.nan))), ValueError,
        "node 'recurrent_1': bias contains NaN"),
    "recurrent Affine bias of the wrong shape": (lambda g: g.nodes.update(recurrent_1=nir.Affine(
        weight=np.ones((16, 16)), bias=np.ones(15))), ValueError,
        r"node 'recurrent_1': bias must have shape \(16,\)"),
    "recurrent weight of the wrong shape": (lambda g: _set(g, "recurrent_1", "weight", np.ones((16, 15))),
                                            ValueError, r"node 'recurrent_1': a recurrent weight must have "
                                                        r"shape \(16, 16\)"),
    "recurrent readout": (lambda g: _add_nodes(g, [("neuron_2", "r3"), ("r3", "neuron_2")],
                                               r3=nir.Linear(weight=np.ones((3, 3)))),
                          ValueError, r"node 'neuron_2': an LI \(readout\) node cannot be recurrent"),
    "cycle off the chain": (lambda g: _add_nodes(g, [("a", "b"), ("b", "a")], a=nir.Linear(weight=np.ones((2, 2))),
                                                 b=nir.Linear(weight=np.ones((2, 2)))),
                            ValueError, "node 'a' is not on the chain"),
    "disconnected node": (lambda g: g.nodes.update(lonely=nir.Linear(weight=np.ones((2, 2)))), ValueError,
                          "node 'lonely' is not on the chain"),
    "edge to a missing node": (lambda g: g.edges.append(("neuron_0", "ghost")), ValueError,
                               "names 'ghost', not a node"),
    "node removed under its edges": (lambda g: g.nodes.pop("linear_1"), ValueError, "names 'linear_1', not a node"),
    "malformed edge": (lambda g: g.edges.append(("input",)), ValueError, "an edge must be a .source, target. pair"),
    "edges not a list": (lambda g: setattr(g, "edges", None), TypeError, "edges a list"),
    "empty graph": (lambda g: (g.nodes.clear(), g.edges.clear()), ValueError, "the graph has no nodes"),
    "no layers": (lambda g: (g.nodes.clear(), g.edges.clear(), _add_nodes(
        g, [("input", "output")], input=nir.Input(input_type=np.array([3])),
        output=nir.Output(output_type=np.array([3])))), ValueError, "the graph has no layers"),
    "two inputs": (lambda g: g.nodes.update(input2=nir.Input(input_type=np.array([30]))), ValueError,
                   "exactly one Input node, found 2"),
    "output feeding on": (lambda g: g.edges.append(("output", "input")), ValueError,
                          "node 'output': expected an Output of the last layer's 3 neurons that feeds nothing"),
    "output of the wrong size": (lambda g: _set(g, "output", "output_type", {"output": np.array([4])}),
                                 ValueError, "node 'output': expected an Output of the last layer's 3"),
    "input of the wrong size": (lambda g: _set(g, "input", "input_type", {"input": np.array([29])}),
                                ValueError, r"node 'linear_0': weight must have shape \(n_out, 29\)"),
    "input shape not integers": (lambda g: _set(g, "input", "input_type", {"input": np.array([2.5])}),
                                 ValueError, "node 'input': a shape must be positive integers"),
    "readout in the middle": (lambda g: g.nodes.update(neuron_0=nir.LI(tau=np.ones(24), r=np.ones(24),
                                                                         v_leak=np.zeros(24))),
                              ValueError, "node 'neuron_0' is an LI .a readout., which must be the last"),
    "IF neuron": (lambda g: g.nodes.update(neuron_0=nir.IF(r=np.ones(24), v_threshold=np.ones(24))),
                  ValueError, "node 'neuron_0' .after a Linear/Affine. is a IF"),
    "tau negative": (lambda g: _set(g, "neuron_0", "tau", np.full(24, -1.0)), ValueError,
                     "node 'neuron_0': tau must be positive"),
    "tau zero": (lambda g: _spoil(g, "neuron_1", "tau", 3, 0.0), ValueError,
                 "node 'neuron_1': tau must be positive"),
    "tau below dt": (lambda g: _set(g, "neuron_2", "tau", np.full(3, 1e-5)), ValueError,
                     "node 'neuron_2': tau must be positive and at least dt"),
    "tau NaN": (lambda g: _spoil(g, "neuron_0", "tau", 0, np.nan), ValueError, "node 'neuron_0': tau contains NaN"),
    "tau inf": (lambda g: _spoil(g, "neuron_0", "tau", 0, np.inf), ValueError,
                "node 'neuron_0': tau contains NaN, Inf"),
    "tau of the wrong shape": (lambda g: _set(g, "neuron_0", "tau", np.ones(5)), ValueError,
                               r"node 'neuron_0': tau must have shape \(24,\)"),
    "tau a string": (lambda g: _set(g, "neuron_0", "tau", "fast"), TypeError,
                     "node 'neuron_0': tau must be a real array"),
    "weight NaN": (lambda g: _spoil(g, "linear_1", "weight", (0, 0), np.nan), ValueError,
                   "node 'linear_1': weight contains NaN"),
    "weight beyond float32": (lambda g: _spoil(g, "linear_1", "weight", (0, 0), 1e39), ValueError,
                              "node 'linear_1': weight contains NaN, Inf or values beyond float32"),
    "weight not fitting the layer before": (lambda g: _set(g, "linear_1", "weight", np.ones((16, 7))), ValueError,
                                            r"node 'linear_1': weight must have shape \(n_out, 24\)"),
    "weight one-dimensional": (lambda g: _set(g, "linear_1", "weight", np.ones(24)), ValueError,
                               "node 'linear_1': weight must have shape"),
    "weight ragged": (lambda g: _set(g, "linear_1", "weight", [[1.0, 2.0], [3.0]]), ValueError,
                      "node 'linear_1': weight is not an array"),
    "weight complex": (lambda g: _set(g, "linear_1", "weight", np.ones((16, 24), complex)), TypeError,
                       "node 'linear_1': weight must be a real array, got dtype complex128"),
    "weight of objects": (lambda g: _set(g, "linear_1", "weight", None), TypeError,
                          "node 'linear_1': weight must be a real array, got dtype object"),
    "bias of the wrong shape": (lambda g: _set(g, "linear_0", "bias", np.ones(3)), ValueError,
                                r"node 'linear_0': bias must have shape \(24,\)"),
    "bias inf": (lambda g: _spoil(g, "linear_0", "bias", 1, -np.inf), ValueError, "node 'linear_0': bias contains"),
    "threshold below theta2": (lambda g: _spoil(g, "neuron_0", "v_threshold", 2, 0.5), ValueError,
                               r"node 'neuron_0': \[LIF\] theta2 \(0.7\) must not exceed theta1"),
    "gain NaN": (lambda g: _spoil(g, "neuron_1", "r", 0, np.nan), ValueError,
                 r"node 'neuron_1': r \(the gain\) contains NaN"),
    "v_reset NaN": (lambda g: _spoil(g, "neuron_1", "v_reset", 0, np.nan), ValueError,
                    "node 'neuron_1': v_reset contains NaN"),
    "unknown metadata key": (lambda g: _meta(g, "neuron_0", tau_adapt=3.0), ValueError,
                             "node 'neuron_0': unknown Saltatory metadata key 'tau_adapt'"),
    "metadata on a readout": (lambda g: _set(g, "neuron_2", "metadata", {"saltatory": {"capacity": 3}}), ValueError,
                              "node 'neuron_2': unknown Saltatory metadata key 'capacity'"),
    "capacity a float": (lambda g: _meta(g, "neuron_1", capacity=2.5), TypeError,
                         "node 'neuron_1': capacity must be of type Integral, got 2.5"),
    "capacity a bool": (lambda g: _meta(g, "neuron_1", capacity=True), TypeError, "node 'neuron_1': capacity must"),
    "capacity zero": (lambda g: _meta(g, "neuron_1", capacity=0), ValueError, "node 'neuron_1': .*capacity"),
    "theta2 NaN": (lambda g: _meta(g, "neuron_0", theta2=float("nan")), ValueError,
                   "node 'neuron_0': theta2 must be finite"),
    "theta2 above theta1": (lambda g: _meta(g, "neuron_0", theta2=2.0), ValueError,
                            r"node 'neuron_0': \[LIF\] theta2 .* must not exceed theta1"),
    "surrogate unknown": (lambda g: _meta(g, "neuron_0", surrogate="bogus"), ValueError,
                          "node 'neuron_0': .*surrogate must be one of"),
    "surrogate not a string": (lambda g: _meta(g, "neuron_0", surrogate=["arctan"]), TypeError,
                               "node 'neuron_0': surrogate must be of type str"),
    "metadata not a dict": (lambda g: _set(g, "neuron_0", "metadata", "junk"), TypeError,
                            r"node 'neuron_0': metadata and metadata\['saltatory'\] must be dicts"),
    "dt NaN": (lambda g: g.metadata.update(saltatory_dt=float("nan")), ValueError, "dt must be a positive finite"),
    "dt negative": (lambda g: g.metadata.update(saltatory_dt=-1e-4), ValueError, "dt must be a positive finite"),
    "dt a string": (lambda g: g.metadata.update(saltatory_dt="1e-4"), ValueError, "dt must be a positive finite"),
}


def _alarm(signum, frame):
    raise TimeoutError("from_nir did not return within 10 s")


@pytest.mark.parametrize("case", list(_MALFORMED))
def test_malformed_graphs_raise_naming_the_node(case: str) -> None:
    spoil, error, match = _MALFORMED[case]
    graph = to_nir(_trained_like_net())
    spoil(graph)
    previous = signal.signal(signal.SIGALRM, _alarm)  # a cycle once looped forever
    signal.alarm(10)
    try:
        with pytest.raises(error, match=rf"^\[from_nir\] .*{match}"):
            from_nir(graph)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def test_from_nir_refuses_what_is_not_a_graph_and_bad_capacities() -> None:
    with pytest.raises(TypeError, match=r"\[from_nir\] expected a nir.NIRGraph, got dict"):
        from_nir({"nodes": {}, "edges": []})
    graph = to_nir(_trained_like_net())
    assert [layer.capacity for layer in from_nir(graph, capacity=4).layers[:2]] == [4, 4]
    with pytest.raises(TypeError, match="node 'neuron_0': capacity must be of type Integral, got '4'"):
        from_nir(graph, capacity="4")
    with pytest.raises(ValueError, match=r"\[from_nir\] dt must be a positive finite number, got inf"):
        from_nir(graph, dt=float("inf"))


def test_theta2_override_imports_graphs_with_low_thresholds() -> None:
    net = sal.Sequential(sal.LIF(12, 8, 8, theta1=0.5, theta2=0.3, seed=1),
                         sal.Readout(8, 3, seed=2))
    graph = to_nir(net)
    for node in graph.nodes.values():
        node.metadata = {}  # as a foreign exporter writes it: no Saltatory settings
    with pytest.raises(ValueError, match=r"^\[from_nir\] node 'neuron_0'.*theta2"):
        from_nir(graph)  # the default theta2 = 0.9 lies above v_threshold = 0.5
    layer = from_nir(graph, theta2=0.3).layers[0]
    assert layer.theta2 == pytest.approx(0.3) and np.allclose(layer.theta1, 0.5)
    with pytest.raises(TypeError, match=r"^\[from_nir\] node 'neuron_0': theta2 must be of type Real"):
        from_nir(graph, theta2="0.3")
    with pytest.raises(ValueError, match=r"^\[from_nir\] node 'neuron_0': theta2 must be finite"):
        from_nir(graph, theta2=float("nan"))


def test_reset_overrides_the_metadata() -> None:
    net = _trained_like_net()
    for layer in net.layers[:2]:
        layer.reset = "subtract"
    graph = to_nir(net)
    assert [layer.reset for layer in from_nir(graph).layers[:2]] == ["subtract", "subtract"]
    restored = from_nir(graph, reset="spike")
    for layer in net.layers[:2]:
        layer.reset = "spike"
    x = _input(30)
    np.testing.assert_array_equal(net(x), restored(x))
    for a, b in zip(net.spikes, restored.spikes):
        np.testing.assert_array_equal(a.ids, b.ids)


@pytest.mark.parametrize("reset, error, match", [
    ("zero", ValueError, r"reset must be one of \['spike', 'state', 'subtract'\], got 'zero'"),
    ("Subtract", ValueError, "reset must be one of"),
    ("", ValueError, "reset must be one of"),
    (1, TypeError, "reset must be a string or None, got int"),
    (["subtract"], TypeError, "reset must be a string or None, got list"),
])
def test_from_nir_refuses_bad_resets(reset, error, match: str) -> None:
    with pytest.raises(error, match=rf"^\[from_nir\] {match}"):
        from_nir(to_nir(_trained_like_net()), reset=reset)


def test_fuzzer_seeds_stay_refused_or_accepted() -> None:
    """The seeds in tests/fuzz/corpus/nir replayed through the fuzz target (needs atheris)."""
    pytest.importorskip("atheris")
    import importlib.util

    fuzz = Path(__file__).resolve().parents[1] / "fuzz"
    spec = importlib.util.spec_from_file_location("fuzz_nir", fuzz / "fuzz_nir.py")
    target = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(target)
    seeds = sorted((fuzz / "corpus" / "nir").iterdir())
    assert len(seeds) >= 8
    for seed in seeds:
        target.one_input(seed.read_bytes())  # raises on a finding


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


def test_snntorch_subtract_reset_export_imports_with_reset_subtract() -> None:
    snn = pytest.importorskip("snntorch")
    import torch
    from snntorch import utils
    from snntorch.export_nir import export_to_nir

    torch.manual_seed(0)
    # beta and threshold per neuron, from which the exporter infers the layer sizes; one beta per
    # layer, as the exported r = 1 / (1 - beta) becomes the layer's gain (gain (1 - alpha) = 1)
    leaky = [snn.Leaky(beta=torch.full((n,), beta), threshold=torch.full((n,), 1.25), init_hidden=True,
                       reset_mechanism="subtract") for n, beta in ((20, 0.9), (10, 0.95))]
    module = torch.nn.Sequential(torch.nn.Linear(30, 20), leaky[0], torch.nn.Linear(20, 10), leaky[1])
    with torch.no_grad():
        for linear in module[::2]:
            linear.weight *= 4.0
    graph = export_to_nir(module, torch.zeros(30))
    utils.reset(module)  # the export ran the module on its sample
    x = _input(30, seed=5)
    theirs = _run_steps(module, x.to_dense(), with_state=False)
    # capacity = the widest layer: nothing is dropped, as in snnTorch
    ours = from_nir(graph, capacity=20, reset="subtract")(x).to_dense()
    assert 0 < ours.mean() < 0.5
    np.testing.assert_array_equal(ours, theirs)
    zero = from_nir(graph, capacity=20)(x).to_dense()  # NIR's reset to v_reset = 0
    assert not np.array_equal(zero, theirs)


def test_norse_import_reproduces_spikes() -> None:
    norse = pytest.importorskip("norse.torch")
    net = _feed_forward_net()
    x = _input(30, seed=6)
    ours = net(x).to_dense()
    # Norse ignores R, so the gain goes into the weights; Norse's default dt is 1 ms
    module = norse.from_nir(to_nir(net, dt=1e-3, fold_gain=True), dt=1e-3)
    theirs = _run_steps(module, x.to_dense(), with_state=True)
    np.testing.assert_array_equal(theirs, ours)


# ----------------------------------------------------------------------------------------------
# Current-based (CUBA) layers: Isyn[t] = alpha_syn Isyn[t-1] + I[t] drives the membrane. They are
# NIR CubaLIF nodes with tau_syn = dt / (1 - alpha_syn) and w_in = tau_syn / dt.


def _cuba_net() -> sal.Sequential:
    """LIF, CubaLIF, RecurrentCubaLIF and Readout with per-neuron alpha_syn: 0, 1e-12 (which the
    float64 tau_syn alone does not give back in float32: the metadata carries it), 0.999 and random
    values; biases, per-neuron alpha and theta1, and every reset rule."""
    rng = np.random.default_rng(7)
    alpha_syn = rng.uniform(0.2, 0.95, 20).astype(np.float32)
    alpha_syn[:3] = [0.0, 1e-12, 0.999]
    return sal.Sequential(
        sal.LIF(30, 24, 6, bias=True, alpha=rng.uniform(0.8, 0.97, 24), theta2=0.7, seed=1),
        sal.CubaLIF(24, 20, 5, alpha=rng.uniform(0.85, 0.95, 20), alpha_syn=alpha_syn, gain=6.0,
                    surrogate="triangle", reset_grad="mask", reset="subtract", seed=2),
        sal.RecurrentCubaLIF(20, 16, 4, bias=True, alpha=0.9, alpha_syn=rng.uniform(0.0, 0.9, 16),
                             theta1=rng.uniform(0.95, 1.2, 16), reset="spike", seed=3),
        sal.Readout(16, 3, alpha=0.9, seed=4))


_SETTINGS = ("capacity", "theta2", "surrogate", "beta", "reset", "reset_grad", "gain")


@pytest.mark.parametrize("neuron", ["LIF", "CubaLIF"])
def test_cuba_round_trip_is_exact(tmp_path: Path, neuron: str) -> None:
    net = _cuba_net()
    for p in net.parameters():  # non-zero biases, like a trained network
        p.data += np.random.default_rng(4).normal(0, 0.05, p.data.shape).astype(np.float32)
    graph = to_nir(net, neuron=neuron)  # ``neuron`` picks the node of LIF layers only
    assert [type(graph.nodes[f"neuron_{i}"]).__name__ for i in range(4)] == [neuron, "CubaLIF", "CubaLIF", "LI"]
    assert {("neuron_2", "recurrent_2"), ("recurrent_2", "neuron_2")} <= set(graph.edges)
    nir.write(tmp_path / "net.nir", graph)
    x = _input(30)
    expected = net(x)
    assert all(s.to_dense().any() for s in net.spikes)
    for restored in (from_nir(graph), from_nir(nir.read(tmp_path / "net.nir"))):
        assert [type(layer) for layer in restored.layers] == [type(layer) for layer in net.layers]
        ours, theirs = net.state_dict(), restored.state_dict()  # weights, biases, alpha, theta1, alpha_syn
        assert sorted(ours) == sorted(theirs) and "layers.2.alpha_syn" in ours and "layers.2.weight_rec" in ours
        for name in ours:
            np.testing.assert_array_equal(ours[name], theirs[name], err_msg=name)
        for a, b in zip(net.layers[:3], restored.layers):
            assert [getattr(a, key) for key in _SETTINGS] == [getattr(b, key) for key in _SETTINGS]
        np.testing.assert_array_equal(restored(x), expected)
        for a, b in zip(net.spikes, restored.spikes):
            np.testing.assert_array_equal(a.ids, b.ids)
            np.testing.assert_array_equal(a.to_dense(), b.to_dense())


def test_cuba_time_constants_map_to_the_discrete_decays() -> None:
    layer = sal.CubaLIF(4, 3, 3, alpha=0.9, alpha_syn=[0.0, 0.5, 0.75], gain=2.0, seed=0)
    net = sal.Sequential(layer)
    node = to_nir(net, dt=1e-3).nodes["neuron_0"]  # neuron="LIF" (the default): still a CubaLIF
    assert isinstance(node, nir.CubaLIF)
    np.testing.assert_allclose(node.tau_syn, [1e-3, 2e-3, 4e-3], rtol=1e-15)  # dt / (1 - alpha_syn)
    np.testing.assert_allclose(node.w_in, [1.0, 2.0, 4.0], rtol=1e-15)        # tau_syn / dt
    np.testing.assert_allclose(node.tau_mem, 1e-3 / (1 - np.float32(0.9)))
    np.testing.assert_array_equal(node.r, [2.0, 2.0, 2.0])
    np.testing.assert_array_equal(node.metadata["saltatory"]["alpha_syn"], layer.alpha_syn)
    folded = to_nir(net, fold_gain=True)
    np.testing.assert_array_equal(folded.nodes["neuron_0"].r, [1.0, 1.0, 1.0])
    np.testing.assert_allclose(folded.nodes["linear_0"].weight, 2.0 * layer.weight.data.T)
    # a learnable alpha_syn is exported as forward runs it, clamped into [0, 1]
    learnable = sal.CubaLIF(4, 3, 3, alpha_syn=0.5, learn_alpha_syn=True, seed=0)
    dict(learnable.parameters())["alpha_syn"].data[0] = -0.25
    clamped = to_nir(sal.Sequential(learnable), dt=1e-3).nodes["neuron_0"]
    np.testing.assert_allclose(clamped.tau_syn, [1e-3, 2e-3, 2e-3])
    np.testing.assert_array_equal(clamped.metadata["saltatory"]["alpha_syn"], [0.0, 0.5, 0.5])
    dict(learnable.parameters())["alpha_syn"].data[0] = 1.5  # clamped to 1: no finite tau_syn
    with pytest.raises(ValueError, match=r"^\[to_nir\] layer 0: alpha_syn = 1 \(no synaptic leak\)"):
        to_nir(sal.Sequential(learnable))


def test_cuba_export_refuses_alpha_syn_one() -> None:
    net = sal.Sequential(sal.LIF(6, 5, 2, seed=0), sal.RecurrentCubaLIF(5, 4, 2, alpha_syn=[0.5, 1.0, 0.2, 0.0]))
    with pytest.raises(ValueError, match=r"^\[to_nir\] layer 1: alpha_syn = 1 .*no finite NIR tau_syn"):
        to_nir(net)


def test_cuba_without_a_synaptic_decay_imports_as_lif() -> None:
    """A CubaLIF node with tau_syn = dt (snnTorch's export of a Leaky-like Synaptic, or
    ``neuron="CubaLIF"``) and no Saltatory alpha_syn metadata is a LIF layer: the same model. A
    Saltatory CubaLIF layer with alpha_syn = 0 comes back as one (its metadata says so)."""
    net = sal.Sequential(sal.CubaLIF(12, 8, 8, alpha_syn=0.0, seed=1), sal.Readout(8, 3, seed=2))
    graph = to_nir(net)
    x = _input(12, seed=2)
    assert type(from_nir(graph).layers[0]) is sal.CubaLIF
    del graph.nodes["neuron_0"].metadata["saltatory"]["alpha_syn"]
    lif = from_nir(graph)
    assert type(lif.layers[0]) is sal.LIF
    np.testing.assert_array_equal(lif(x), net(x))
    np.testing.assert_array_equal(lif.spikes[0].ids, net.spikes[0].ids)


# A hand-made CubaLIF graph as foreign tools write it: per-neuron tau_syn (one neuron with
# tau_syn = dt), per-neuron w_in unrelated to tau_syn / dt, a bias, a recurrent Linear, then a
# CubaLIF with tau_syn = dt and w_in = 3 (a LIF layer), and an LI readout.
_DT = 1e-3


def _foreign_cuba_graph(seed: int):
    rng = np.random.default_rng(seed)
    n0, n1, n2, n3 = 12, 16, 8, 3
    tau_syn = _DT / (1 - rng.uniform(0.3, 0.9, n1))
    tau_syn[0] = _DT
    nodes = {
        "in": nir.Input(input_type=np.array([n0])),
        "a0": nir.Affine(weight=rng.normal(0, 1.0, (n1, n0)), bias=rng.normal(0.1, 0.1, n1)),
        "c0": nir.CubaLIF(tau_syn=tau_syn, tau_mem=_DT / (1 - rng.uniform(0.7, 0.95, n1)), r=np.full(n1, 2.5),
                          v_leak=np.zeros(n1), v_threshold=rng.uniform(1.0, 1.5, n1), v_reset=np.zeros(n1),
                          w_in=rng.uniform(0.2, 3.0, n1)),
        "r0": nir.Linear(weight=rng.normal(0, 0.3, (n1, n1))),
        "l1": nir.Linear(weight=rng.normal(0, 0.8, (n2, n1))),
        "c1": nir.CubaLIF(tau_syn=np.full(n2, _DT), tau_mem=np.full(n2, _DT / 0.1), r=np.full(n2, 1.5),
                          v_leak=np.zeros(n2), v_threshold=np.full(n2, 1.0), v_reset=np.zeros(n2),
                          w_in=np.full(n2, 3.0)),
        "l2": nir.Affine(weight=rng.normal(0, 1.0, (n3, n2)), bias=rng.normal(0, 0.1, n3)),
        "li": nir.LI(tau=np.full(n3, _DT / 0.2), r=np.full(n3, 2.0), v_leak=np.zeros(n3)),
        "out": nir.Output(output_type=np.array([n3])),
    }
    edges = [("in", "a0"), ("a0", "c0"), ("c0", "r0"), ("r0", "c0"), ("c0", "l1"), ("l1", "c1"),
             ("c1", "l2"), ("l2", "li"), ("li", "out")]
    return nir.NIRGraph(nodes=nodes, edges=edges)


def _nir_euler(graph, x: np.ndarray):
    """NIR's equations for _foreign_cuba_graph, forward Euler with step _DT in float64:
    tau_syn dI/dt = -I + w_in u,  tau_mem dv/dt = (v_leak - v) + r I,  spike v > v_threshold, then
    v = v_reset; the recurrent Linear feeds u with the layer's spikes of the step before. Returns
    both spike trains, the LI membrane and the closest approach of a membrane to its threshold."""
    n = graph.nodes

    def cuba(node, u, state):
        current, v = state
        k = _DT / node.tau_syn
        current = (1 - k) * current + k * node.w_in * u
        v = v + _DT / node.tau_mem * (node.v_leak - v + node.r * current)
        spikes = v > node.v_threshold
        gap = np.abs(v - node.v_threshold).min()
        return spikes.astype(np.float64), (current, np.where(spikes, node.v_reset, v)), gap

    state0, state1 = (np.zeros((B, 16)),) * 2, (np.zeros((B, 8)),) * 2
    s0, v2, out0, out1, out2, gap = np.zeros((B, 16)), np.zeros((B, 3)), [], [], [], np.inf
    for t in range(len(x)):
        u0 = x[t] @ n["a0"].weight.T + n["a0"].bias + s0 @ n["r0"].weight.T
        s0, state0, gap0 = cuba(n["c0"], u0, state0)
        s1, state1, gap1 = cuba(n["c1"], s0 @ n["l1"].weight.T, state1)
        v2 = v2 + _DT / n["li"].tau * (n["li"].v_leak - v2 + n["li"].r * (s1 @ n["l2"].weight.T + n["l2"].bias))
        out0.append(s0), out1.append(s1), out2.append(v2)
        gap = min(gap, gap0, gap1)
    return np.stack(out0), np.stack(out1), np.stack(out2), gap


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_foreign_cubalif_import_follows_the_nir_euler_equations(seed: int) -> None:
    graph = _foreign_cuba_graph(seed)
    x = (np.random.default_rng(100 + seed).random((T, B, 12)) < 0.3).astype(np.float32)
    spikes0, spikes1, membrane, gap = _nir_euler(graph, x.astype(np.float64))
    # no membrane comes within 1e-5 of its threshold, far above float32 rounding (~1e-7 here): so
    # Saltatory's float32 forward must give the same spikes
    assert gap > 1e-5 and 0 < spikes0.mean() < 0.5 and 0 < spikes1.mean() < 0.5
    net = from_nir(graph, dt=_DT, capacity=16)  # capacity = width: nothing dropped
    assert [type(layer) for layer in net.layers] == [sal.RecurrentCubaLIF, sal.LIF, sal.Readout]
    c0, c1 = graph.nodes["c0"], graph.nodes["c1"]
    np.testing.assert_array_equal(net.layers[0].alpha_syn, (1 - _DT / c0.tau_syn).astype(np.float32))
    assert net.layers[0].alpha_syn[0] == 0
    scale = _DT / c0.tau_syn * c0.w_in  # folded into the columns of what feeds the synapse
    def f32(a):
        return a.astype(np.float32)

    first = net.layers[0]
    np.testing.assert_array_equal(first.weight.data, f32(graph.nodes["a0"].weight * scale[:, None]).T)
    np.testing.assert_array_equal(first.bias.data, f32(graph.nodes["a0"].bias * scale))
    np.testing.assert_array_equal(first.weight_rec.data, f32(graph.nodes["r0"].weight * scale[:, None]).T)
    np.testing.assert_array_equal(net.layers[1].weight.data, f32(3.0 * graph.nodes["l1"].weight).T)
    readout = net(sal.SpikeTensor.from_dense(x))
    assert net.dropped == [0, 0]
    np.testing.assert_array_equal(net.spikes[0].to_dense(), spikes0)
    np.testing.assert_array_equal(net.spikes[1].to_dense(), spikes1)
    np.testing.assert_allclose(readout, membrane, rtol=0, atol=1e-5)
    # w_in matters: without the fold (w_in = tau_syn / dt) the first layer spikes differently
    c0.w_in = c0.tau_syn / _DT
    unscaled = from_nir(graph, dt=_DT, capacity=16)
    unscaled(sal.SpikeTensor.from_dense(x))
    assert not np.array_equal(unscaled.spikes[0].to_dense(), spikes0)


def _cuba_spoil_w_in_and(node: str, field: str, index):
    return lambda g: (_spoil(g, "neuron_1" if node == "linear_1" else "neuron_2", "w_in", 0, 1e30),
                      _spoil(g, node, field, index, 1e30))


# Each case spoils the export of _cuba_net(): input -> linear_0 (Affine) -> neuron_0 (LIF) ->
# linear_1 (Linear) -> neuron_1 (CubaLIF, 20) -> linear_2 (Affine) -> neuron_2 (CubaLIF, 16,
# recurrent_2 looping back) -> linear_3 -> neuron_3 (LI) -> output.
_CUBA_MALFORMED = {
    "tau_syn NaN": (lambda g: _spoil(g, "neuron_1", "tau_syn", 0, np.nan), ValueError,
                    "node 'neuron_1': tau_syn contains NaN"),
    "tau_syn inf": (lambda g: _spoil(g, "neuron_2", "tau_syn", 1, np.inf), ValueError,
                    "node 'neuron_2': tau_syn contains NaN, Inf"),
    "tau_syn zero": (lambda g: _spoil(g, "neuron_2", "tau_syn", 3, 0.0), ValueError,
                     "node 'neuron_2': tau_syn must be positive and at least dt"),
    "tau_syn negative": (lambda g: _set(g, "neuron_1", "tau_syn", np.full(20, -1e-3)), ValueError,
                         "node 'neuron_1': tau_syn must be positive"),
    "tau_syn below dt": (lambda g: _set(g, "neuron_1", "tau_syn", np.full(20, 5e-5)), ValueError,
                         r"node 'neuron_1': tau_syn must be positive and at least dt = 0.0001 \(alpha_syn"),
    "tau_syn of the wrong shape": (lambda g: _set(g, "neuron_1", "tau_syn", np.ones(5)), ValueError,
                                   r"node 'neuron_1': tau_syn must have shape \(20,\)"),
    "tau_syn a string": (lambda g: _set(g, "neuron_1", "tau_syn", "slow"), TypeError,
                         "node 'neuron_1': tau_syn must be a real array"),
    "tau_mem below dt": (lambda g: _spoil(g, "neuron_2", "tau_mem", 0, 1e-5), ValueError,
                         "node 'neuron_2': tau_mem must be positive and at least dt"),
    "tau_mem NaN": (lambda g: _spoil(g, "neuron_2", "tau_mem", 0, np.nan), ValueError,
                    "node 'neuron_2': tau_mem contains NaN"),
    "w_in of the wrong shape": (lambda g: _set(g, "neuron_1", "w_in", np.ones(7)), ValueError,
                                r"node 'neuron_1': w_in must have shape \(20,\)"),
    "w_in two-dimensional": (lambda g: _set(g, "neuron_2", "w_in", np.ones((16, 16))), ValueError,
                             r"node 'neuron_2': w_in must have shape \(16,\)"),
    "w_in NaN": (lambda g: _spoil(g, "neuron_1", "w_in", 2, np.nan), ValueError,
                 "node 'neuron_1': w_in contains NaN"),
    "w_in beyond float32": (lambda g: _spoil(g, "neuron_1", "w_in", 2, 1e39), ValueError,
                            "node 'neuron_1': w_in contains NaN, Inf or values beyond float32"),
    "w_in of objects": (lambda g: _set(g, "neuron_1", "w_in", None), TypeError,
                        "node 'neuron_1': w_in must be a real array, got dtype object"),
    "folded weight beyond float32": (_cuba_spoil_w_in_and("linear_1", "weight", (0, 0)), ValueError,
                                     "node 'neuron_1': the incoming weight times the input scale"),
    "folded bias beyond float32": (_cuba_spoil_w_in_and("linear_2", "bias", 0), ValueError,
                                   "node 'neuron_2': the bias times the input scale"),
    "folded recurrent weight beyond float32": (_cuba_spoil_w_in_and("recurrent_2", "weight", (0, 1)), ValueError,
                                               "node 'neuron_2': the recurrent weight times the input scale"),
    "tau_syn edited under the metadata": (lambda g: _spoil(g, "neuron_1", "tau_syn", 4, 5e-3), ValueError,
                                          r"node 'neuron_1': metadata alpha_syn disagrees with 1 - dt / tau_syn "
                                          r"for dt = 0.0001 \(neuron 4"),
    "metadata alpha_syn of the wrong shape": (lambda g: _meta(g, "neuron_2", alpha_syn=np.zeros(3)), ValueError,
                                              r"node 'neuron_2': metadata alpha_syn must have shape \(16,\)"),
    "metadata alpha_syn a string": (lambda g: _meta(g, "neuron_2", alpha_syn="0.5"), TypeError,
                                    "node 'neuron_2': metadata alpha_syn must be a real array"),
    "metadata alpha_syn on a LIF node": (lambda g: _meta(g, "neuron_0", alpha_syn=np.zeros(24)), ValueError,
                                         "node 'neuron_0': unknown Saltatory metadata key 'alpha_syn'"),
    "metadata alpha_syn on a readout": (lambda g: _set(g, "neuron_3", "metadata",
                                                       {"saltatory": {"alpha_syn": 0.5}}),
                                        ValueError, "node 'neuron_3': unknown Saltatory metadata key 'alpha_syn'"),
    "threshold below theta2": (lambda g: _spoil(g, "neuron_2", "v_threshold", 0, 0.5), ValueError,
                               r"node 'neuron_2': \[RecurrentCubaLIF\] theta2 .* must not exceed theta1"),
    "v_reset not zero": (lambda g: _set(g, "neuron_1", "v_reset", np.full(20, 0.1)), ValueError,
                         "node 'neuron_1': only v_leak = 0 and v_reset = 0"),
}


@pytest.mark.parametrize("case", list(_CUBA_MALFORMED))
def test_malformed_cuba_graphs_raise_naming_the_node(case: str) -> None:
    spoil, error, match = _CUBA_MALFORMED[case]
    graph = to_nir(_cuba_net())
    spoil(graph)
    with pytest.raises(error, match=rf"^\[from_nir\] .*{match}"):
        from_nir(graph)


def test_cuba_import_with_another_dt_disagrees_with_the_metadata() -> None:
    graph = to_nir(_cuba_net())  # dt = 1e-4 recorded; alpha_syn = 1 - dt / tau_syn changes with dt
    with pytest.raises(ValueError, match=r"^\[from_nir\] node 'neuron_1': metadata alpha_syn disagrees"):
        from_nir(graph, dt=5e-5)
    for node in graph.nodes.values():
        node.metadata = {}  # a foreign graph: the time constants alone decide
    net = from_nir(graph, dt=5e-5, theta2=0.0)
    assert [type(layer) for layer in net.layers] == [sal.LIF, sal.CubaLIF, sal.RecurrentCubaLIF, sal.Readout]
    np.testing.assert_array_equal(net.layers[1].alpha_syn,
                                  (1 - 5e-5 / graph.nodes["neuron_1"].tau_syn).astype(np.float32))


# snnTorch's importer (snntorch.import_nir.import_from_nir, snnTorch 1.0) turns a CubaLIF node into
# Synaptic(alpha = 1 - dt / tau_syn, beta = 1 - dt / tau_mem, reset_mechanism="zero",
# reset_delay=False) with dt = 1e-4 fixed:  syn = alpha syn + x,  mem = beta mem + syn,  spike
# mem > threshold, then mem = 0 at once (reset_delay=False); the synaptic current is not reset.
# That is Saltatory's reset="state" (reset to zero, decided by the previous membrane) exactly, with
# (dt / tau_syn) w_in = 1 as exported, but only if gain (1 - alpha) = 1: the importer asserts
# r = tau_mem / dt and has no input scale for the membrane. So each layer has one alpha and
# gain = 1 / (1 - alpha) (one r per layer), one threshold (snnTorch takes one); alpha_syn may vary
# per neuron. Dyadic decays make gain (1 - alpha) = 1 and 1 - dt / tau_syn = alpha_syn exact in
# floating point; the remaining difference, the order of the weight sums, is ~1e-7 and flips no
# spike here.


def _snntorch_cuba_net(recurrent: bool = False) -> sal.Sequential:
    last = sal.RecurrentCubaLIF if recurrent else sal.CubaLIF
    alpha_syn = np.resize(np.float32([0.5, 0.75, 0.875, 0.25, 0.0]), 20)
    net = sal.Sequential(  # theta2 far below theta1 and capacity = width: nothing is dropped
        sal.LIF(30, 24, 24, alpha=0.875, gain=8.0, theta2=-1e9, seed=1),
        sal.CubaLIF(24, 20, 20, alpha=0.9375, gain=16.0, alpha_syn=alpha_syn, theta2=-1e9, seed=2),
        last(20, 10, 10, alpha=0.75, gain=4.0, alpha_syn=0.5, theta2=-1e9, seed=3))
    for layer, scale in zip(net.layers, (1.0, 0.4, 0.5)):
        layer.weight.data *= scale
    return net


def _snntorch_import(graph):
    from snntorch.import_nir import import_from_nir

    with contextlib.redirect_stdout(io.StringIO()):  # it prints its progress
        return import_from_nir(graph)


def test_snntorch_import_of_cuba_layers_reproduces_spikes() -> None:
    pytest.importorskip("snntorch")
    import snntorch as snn

    net = _snntorch_cuba_net()
    x = _input(30, seed=5)
    ours = net(x).to_dense()
    assert all(0 < s.to_dense().mean() < 0.5 for s in net.spikes) and net.dropped == [0, 0, 0]
    module = _snntorch_import(to_nir(net))
    assert [type(m) for m in (module.neuron_1, module.neuron_2)] == [snn.Synaptic, snn.Synaptic]
    assert module.neuron_1.reset_mechanism == "zero" and not module.neuron_1.reset_delay
    theirs = _run_steps(module, x.to_dense(), with_state=True)
    np.testing.assert_array_equal(theirs, ours)  # 0 of 800 spikes differ
    for layer in net.layers:  # the test tells the reset rules apart: 97 of 800 differ
        layer.reset = "subtract"
    assert not np.array_equal(net(x).to_dense(), theirs)


def test_snntorch_import_of_a_recurrent_cuba_layer_feeds_the_input_through_w_rec() -> None:
    """snnTorch 1.0's import_from_nir wraps a recurrent loop into a subgraph whose input edge goes
    into the recurrent Linear, not the neuron (snntorch.import_nir._create_rnn_subgraph: edge
    (input, w_rec)), and, having no node_map entry for a subgraph, runs it as it is (not as an
    RSynaptic). So its recurrent layer computes syn = alpha syn + (x W + s[t-1]) W_rec instead of
    NIR's (and Saltatory's) alpha syn + x W + s[t-1] W_rec. Here 173 of the 800 last-layer spikes
    differ; snnTorch's spikes are those of that miswired model exactly (a float64 simulation from
    Saltatory's spikes of the layer before). Should snnTorch be fixed, they equal Saltatory's."""
    pytest.importorskip("snntorch")
    net = _snntorch_cuba_net(recurrent=True)
    x = _input(30, seed=5)
    ours = net(x).to_dense()
    theirs = _run_steps(_snntorch_import(to_nir(net)), x.to_dense(), with_state=True)
    if np.array_equal(theirs, ours):
        return  # fixed upstream
    layer, before = net.layers[2], net.spikes[1].to_dense().astype(np.float64)
    w, w_rec = layer.weight.data.astype(np.float64), layer.weight_rec.data.astype(np.float64)
    syn, v, s, miswired = np.zeros((B, 10)), np.zeros((B, 10)), np.zeros((B, 10)), []
    for t in range(T):
        syn = 0.5 * syn + (before[t] @ w + s) @ w_rec
        v = 0.75 * v + syn  # gain (1 - alpha) = 1
        s = (v > 1.0).astype(np.float64)
        v = v * (1 - s)
        miswired.append(s)
    np.testing.assert_array_equal(theirs, np.stack(miswired))
    assert (theirs != ours).sum() == 173


def test_snntorch_synaptic_export_imports_with_reset_subtract() -> None:
    """snnTorch's Synaptic defaults to the subtract reset decided by the previous membrane
    (reset_delay=True: mem = beta mem + syn - reset threshold, reset = H(mem[t-1] - threshold)),
    Saltatory's reset="subtract"; its export writes tau_syn = dt / (1 - alpha), w_in = tau_syn / dt,
    r = tau_mem / dt, and does not record the reset, so import with reset="subtract". The exporter
    computes the time constants in float32, so (dt / tau_syn) w_in is 1 only to float32 rounding:
    the folded weights may move by an ulp, which flips no spike here."""
    snn = pytest.importorskip("snntorch")
    import torch
    from snntorch import utils
    from snntorch.export_nir import export_to_nir

    torch.manual_seed(0)
    alphas = (torch.linspace(0.3, 0.9, 20), torch.full((10,), 0.6))  # alpha per neuron
    synaptic = [snn.Synaptic(alpha=alpha, beta=torch.full((n,), beta), threshold=torch.full((n,), 1.25),
                             init_hidden=True, reset_mechanism="subtract")
                for n, alpha, beta in ((20, alphas[0], 0.9), (10, alphas[1], 0.95))]
    module = torch.nn.Sequential(torch.nn.Linear(30, 20), synaptic[0], torch.nn.Linear(20, 10), synaptic[1])
    with torch.no_grad():
        for linear in module[::2]:
            linear.weight *= 1.5
    graph = export_to_nir(module, torch.zeros(30))
    assert isinstance(graph.nodes["1"], nir.CubaLIF)
    utils.reset(module)  # the export ran the module on its sample
    x = _input(30, seed=5)
    theirs = _run_steps(module, x.to_dense(), with_state=False)
    net = from_nir(graph, capacity=20, reset="subtract")  # capacity = the widest layer: no drops
    assert [type(layer) for layer in net.layers] == [sal.CubaLIF, sal.CubaLIF]
    np.testing.assert_allclose(net.layers[0].alpha_syn, alphas[0].numpy(), rtol=0, atol=1e-6)
    ours = net(x).to_dense()
    assert 0 < ours.mean() < 0.5
    np.testing.assert_array_equal(ours, theirs)
    zero = from_nir(graph, capacity=20)(x).to_dense()  # NIR's reset to v_reset = 0
    assert not np.array_equal(zero, theirs)


def test_norse_import_of_cuba_layers_reproduces_spikes() -> None:
    """Norse's importer (norse.torch.from_nir) runs a CubaLIF node as w_in x into an LI box
    synapse, (1 - dt / tau_syn) I + (dt / tau_syn) w_in x, times r into a LIF box,
    v + dt / tau_mem (r I - v), reset to v_reset at once: NIR's Euler step, so Saltatory's model for
    any per-neuron alpha, alpha_syn and gain. Its LIF node ignores r, hence fold_gain=True (also
    fine for CubaLIF: r = 1, the gain in the weights). It runs the recurrent loop through its
    graph executor, which feeds the Linear's output of the step before: Saltatory's recurrence.
    Time constants pass through float32 (dt / tau is not exactly 1 - alpha); no spike flips here."""
    norse = pytest.importorskip("norse.torch")
    rng = np.random.default_rng(8)
    net = sal.Sequential(
        sal.LIF(30, 20, 20, theta2=-1e9, seed=1),
        sal.CubaLIF(20, 16, 16, alpha=rng.uniform(0.85, 0.95, 16), alpha_syn=rng.uniform(0.0, 0.9, 16),
                    gain=6.0, theta2=-1e9, seed=2),
        sal.RecurrentCubaLIF(16, 10, 10, alpha=0.9, alpha_syn=rng.uniform(0.3, 0.8, 10), gain=5.0,
                             theta1=rng.uniform(0.9, 1.1, 10), theta2=-1e9, seed=3))
    x = _input(30, seed=6)
    ours = net(x).to_dense()
    assert all(0 < s.to_dense().mean() < 0.5 for s in net.spikes) and net.dropped == [0, 0, 0]
    module = norse.from_nir(to_nir(net, dt=1e-3, fold_gain=True), dt=1e-3)
    theirs = _run_steps(module, x.to_dense(), with_state=True)
    np.testing.assert_array_equal(theirs, ours)  # 0 of 800 spikes differ
    net.layers[2].weight_rec.data[...] = 0  # the recurrence shows in the spikes
    assert not np.array_equal(net(x).to_dense(), theirs)


def test_export_refuses_models_nir_cannot_represent():
    """An adaptive layer has no NIR node: export says so instead of writing a plain LIF."""
    for layer in (sal.AdaptiveLIF(4, 5, 5, seed=1), sal.RecurrentAdaptiveLIF(4, 5, 5, seed=1)):
        with pytest.raises(ValueError, match=r"\[to_nir\] layer 0 is a \w*AdaptiveLIF: NIR has no node"):
            to_nir(sal.Sequential(layer, sal.Readout(5, 2, seed=2)))


def test_recurrent_affine_bias_joins_the_layer_bias():
    """A recurrent Affine (snnTorch's RLeaky writes one) adds its bias at every step, t = 0 included
    (the Affine of the zero spikes), so it imports as part of the layer's bias: the same network as
    the bias on the input node."""
    net = _trained_like_net()
    graph = to_nir(net)
    w_rec = np.asarray(graph.nodes["recurrent_1"].weight)
    b_rec = np.linspace(-0.2, 0.3, w_rec.shape[0])
    graph.nodes["recurrent_1"] = nir.Affine(weight=w_rec, bias=b_rec)
    moved = to_nir(net)
    into = moved.nodes["linear_1"]
    moved.nodes["linear_1"] = nir.Affine(weight=into.weight,
                                         bias=np.asarray(getattr(into, "bias", 0.0)) + b_rec)
    got, expected = from_nir(graph), from_nir(moved)
    assert got.layers[1].bias is not None
    np.testing.assert_array_equal(got.layers[1].bias.data, expected.layers[1].bias.data)
    np.testing.assert_allclose(got.layers[1].bias.data, b_rec.astype(np.float32) + (
        0.0 if net.layers[1].bias is None else net.layers[1].bias.data), rtol=1e-6)
    x = sal.SpikeTensor.from_dense((np.random.default_rng(3).random((20, 4, net.layers[0].n_in))
                                    < 0.3).astype(np.float32))
    np.testing.assert_array_equal(got(x), expected(x))
    for a, b in zip(got.spikes, expected.spikes):
        np.testing.assert_array_equal(a.to_dense(), b.to_dense())
    assert not np.array_equal(got(x), from_nir(to_nir(net))(x))  # the bias matters


def test_snntorch_has_no_readout_node_so_export_the_spiking_part():
    """snnTorch 1.0's import_from_nir has no node type for NIR's LI (Saltatory's Readout): a stack
    ending in a Readout cannot be loaded there as a whole. Its spiking part loads (docs/python-api.md
    says so); if snnTorch learns LI, this test fails and the docs need updating."""
    snntorch_nir = pytest.importorskip("snntorch.import_nir")
    net = sal.Sequential(sal.LIF(8, 6, 6, seed=1), sal.Readout(6, 3, seed=2))
    with pytest.raises(ValueError, match="LI"):
        snntorch_nir.import_from_nir(to_nir(net))
    assert snntorch_nir.import_from_nir(to_nir(sal.Sequential(*net.layers[:-1]))) is not None
