"""libFuzzer (atheris) target for saltatory.nir.from_nir over mutated NIR graphs.

    python tests/fuzz/fuzz_nir.py CORPUS... [-max_total_time=60]

Each input picks a small Saltatory stack (layer kinds and sizes, LIF or CubaLIF nodes, folded
gain) and its NIR export, then mutates the graph: parameters set to NaN, inf, 0, negative, huge,
wrongly shaped or typed values, metadata spoiled or given unknown keys, nodes added, replaced or
removed, edges added (cycles, self-loops, dangling names), removed, reversed, doubled or
malformed. from_nir may refuse a graph only with ValueError or TypeError; any other exception, a
crash or a hang is a finding. A graph it accepts must also run forward (refusals: ValueError).
"""

import sys
import warnings

import atheris
import numpy as np

with atheris.instrument_imports():
    import nir
    import saltatory as sal
    from saltatory.nir import from_nir, to_nir

SPECIAL = [np.nan, np.inf, -np.inf, 0.0, -0.0, -1.0, 1e-30, 1e30, 1e300, 2.0**40, 0.5, 1.0]
KEYS = ["capacity", "theta2", "surrogate", "beta", "reset", "reset_grad", "unknown"]


def hostile(fdp, current):
    """A replacement for a field whose value is ``current``."""
    shape = np.shape(current) if isinstance(current, np.ndarray) else ()
    choice = fdp.ConsumeIntInRange(0, 11)
    if choice == 0:
        return fdp.PickValueInList(SPECIAL)
    if choice == 1 and isinstance(current, np.ndarray) and current.size and current.dtype.kind in "biuf":
        spoiled = current.astype(np.float64)  # a copy
        spoiled.flat[fdp.ConsumeIntInRange(0, current.size - 1)] = fdp.PickValueInList(SPECIAL)
        return spoiled
    if choice == 2:
        dims = [fdp.ConsumeIntInRange(0, 4) for _ in range(fdp.ConsumeIntInRange(0, 3))]
        return np.full(dims, fdp.ConsumeRegularFloat())
    if choice == 3:
        return fdp.PickValueInList([np.array(["a", "b"]), np.ones(2, complex), np.ones(shape, bool),
                                    np.array([None, 1.0], dtype=object), np.ones(shape, np.float16)])
    if choice == 4:
        return fdp.PickValueInList([None, "abc", {}, [[1.0, 2.0], [3.0]], [], (), object()])
    if choice == 5:
        return np.full(shape, fdp.ConsumeIntInRange(-2**40, 2**40))
    if choice == 6:
        return np.full(shape, fdp.ConsumeFloat())
    if choice == 7 and isinstance(current, dict):  # an Input's or Output's declared shape
        return {fdp.PickValueInList(["input", "output", "x"]): hostile(fdp, np.array([3]))}
    if choice == 8:
        return np.full(shape, fdp.PickValueInList(SPECIAL), dtype=np.float32)
    return np.full(shape, fdp.ConsumeRegularFloat())


def new_node(fdp):
    """A node of any kind, or None when nir refuses its arguments."""
    n = fdp.ConsumeIntInRange(1, 4)
    ones = np.ones(n)
    kinds = [lambda: nir.Input(input_type=np.array([n])), lambda: nir.Output(output_type=np.array([n])),
             lambda: nir.Linear(weight=np.ones((n, fdp.ConsumeIntInRange(1, 4)))),
             lambda: nir.Affine(weight=np.ones((n, fdp.ConsumeIntInRange(1, 4))), bias=ones),
             lambda: nir.LIF(tau=ones, r=ones, v_leak=0 * ones, v_threshold=ones),
             lambda: nir.CubaLIF(tau_syn=ones * 1e-4, tau_mem=ones, r=ones, v_leak=0 * ones, v_threshold=ones),
             lambda: nir.LI(tau=ones, r=ones, v_leak=0 * ones), lambda: nir.IF(r=ones, v_threshold=ones),
             lambda: nir.Scale(scale=ones)]
    try:
        return kinds[fdp.ConsumeIntInRange(0, len(kinds) - 1)]()
    except Exception:  # nir's own checks: not from_nir's concern
        return None


def base_graph(fdp):
    n_layers = fdp.ConsumeIntInRange(1, 3)
    sizes = [fdp.ConsumeIntInRange(1, 6) for _ in range(n_layers + 1)]
    layers = []
    for i in range(n_layers):
        kind = fdp.ConsumeIntInRange(0, 2)
        n_in, n_out, bias = sizes[i], sizes[i + 1], fdp.ConsumeBool()
        if kind == 2 and i == n_layers - 1:
            layers.append(sal.Readout(n_in, n_out, bias=bias, seed=i))
        else:
            cls = sal.RecurrentLIF if kind == 1 else sal.LIF
            layers.append(cls(n_in, n_out, fdp.ConsumeIntInRange(1, n_out + 1), bias=bias, seed=i))
    return to_nir(sal.Sequential(*layers), neuron=fdp.PickValueInList(["LIF", "CubaLIF"]),
                  fold_gain=fdp.ConsumeBool())


def mutate(fdp, graph) -> None:
    for _ in range(fdp.ConsumeIntInRange(0, 6)):
        names = list(graph.nodes)
        pick = lambda: fdp.PickValueInList(names) if names else "input"  # noqa: E731
        op = fdp.ConsumeIntInRange(0, 9)
        if op == 0 and names:  # a parameter
            node = graph.nodes[pick()]
            fields = sorted(f for f in vars(node) if f != "metadata")
            if fields:
                field = fdp.PickValueInList(fields)
                setattr(node, field, hostile(fdp, getattr(node, field)))
        elif op == 1:  # an edge, possibly closing a cycle or naming no node
            graph.edges.append((pick(), fdp.PickValueInList(names + ["ghost"]) if names else "ghost"))
        elif op == 2 and graph.edges:
            del graph.edges[fdp.ConsumeIntInRange(0, len(graph.edges) - 1)]
        elif op == 3 and names:
            del graph.nodes[pick()]
        elif op == 4:  # a node added, or replacing one
            node = new_node(fdp)
            if node is not None:
                graph.nodes[pick() if fdp.ConsumeBool() else f"extra{len(names)}"] = node
        elif op == 5 and names:  # Saltatory metadata
            node = graph.nodes[pick()]
            key = fdp.PickValueInList(KEYS)
            node.metadata = fdp.PickValueInList([
                {"saltatory": {key: fdp.PickValueInList([1, 0, -3, 2**70, 0.5, np.nan, np.inf, "lowest",
                                                         "arctan", "mask", True, None, [1]])}},
                {"saltatory": "capacity"}, "junk", None, {"other_tool": {key: 1}}])
        elif op == 6:
            graph.metadata = fdp.PickValueInList([{"saltatory_dt": fdp.PickValueInList(SPECIAL + ["1e-3", None])},
                                                  None, "junk"])
        elif op == 7 and graph.edges:  # a malformed edge
            graph.edges[fdp.ConsumeIntInRange(0, len(graph.edges) - 1)] = fdp.PickValueInList(
                [("input",), ("input", "output", "x"), (1, 2), "ab", None, ["input", "linear_0"]])
        elif op == 8 and graph.edges:  # an edge reversed
            i = fdp.ConsumeIntInRange(0, len(graph.edges) - 1)
            graph.edges[i] = graph.edges[i][::-1] if isinstance(graph.edges[i], tuple) else graph.edges[i]
        elif op == 9 and graph.edges:  # an edge doubled
            graph.edges.append(graph.edges[fdp.ConsumeIntInRange(0, len(graph.edges) - 1)])
    if fdp.ConsumeIntInRange(0, 15) == 15:  # the containers themselves (not once the data runs out)
        setattr(graph, fdp.PickValueInList(["nodes", "edges"]),
                fdp.PickValueInList([{}, [], None, "junk", {("input", "output")}]))


def one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    graph = base_graph(fdp)
    mutate(fdp, graph)
    options = {}
    if fdp.ConsumeBool():
        options["dt"] = fdp.PickValueInList(SPECIAL + [1e-3, "1e-3", None])
    if fdp.ConsumeBool():
        options["capacity"] = fdp.PickValueInList([1, 0, -1, 2**70, 2.5, True, "4", None])
    try:
        net = from_nir(graph, **options)
    except (ValueError, TypeError):
        return
    x = sal.SpikeTensor.from_dense(np.ones((2, 1, net.layers[0].n_in), np.float32))
    try:
        net(x)
    except ValueError:
        pass


if __name__ == "__main__":
    warnings.simplefilter("ignore")  # numpy's overflow warnings on hostile values
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()
