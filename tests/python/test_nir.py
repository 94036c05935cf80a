"""NIR export/import: exact Saltatory round trips (in memory and through a .nir file), the
snnTorch and Norse importers reproducing Saltatory's spikes, and clear errors for what Saltatory
cannot represent. Skips cleanly without the nir package (and without torch for the cross-checks)."""

from __future__ import annotations

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
    cuba.nodes["neuron_0"].tau_syn = np.full(3, 5e-3)
    with pytest.raises(ValueError, match="synaptic"):
        from_nir(cuba)
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
    "recurrent Affine": (lambda g: g.nodes.update(recurrent_1=nir.Affine(weight=np.ones((16, 16)),
                                                                         bias=np.ones(16))),
                         ValueError, "node 'recurrent_1' loops back into 'neuron_1' but is a Affine"),
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
