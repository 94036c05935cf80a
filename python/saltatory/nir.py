"""NIR (Neuromorphic Intermediate Representation) export and import of Saltatory stacks.

Saltatory's discrete LIF,  V[t] = alpha V[t-1] (1 - r[t]) + gain (1 - alpha) I[t],  is the forward-
Euler step of NIR's  tau dv/dt = (v_leak - v) + R I  with time step dt, v_leak = 0, v_reset = 0:

    tau = dt / (1 - alpha),   R = gain,   v_threshold = theta1,   I = x W + bias

(NIR weights are output-major: Linear/Affine weight = W^T). A readout is an LI node with the same
mapping. ``neuron="CubaLIF"`` writes LIF layers as CubaLIF with an instantaneous synapse
(tau_syn = dt, w_in = 1), the form some tools require. RecurrentLIF adds a Linear node W_rec^T
from the LIF node back to itself. ``fold_gain=True`` moves the gain into the weights (R = 1),
for importers that ignore R (Norse). Saltatory-only settings (capacity, theta2, surrogate, reset
conventions) travel in each node's ``metadata`` so that a Saltatory round trip is exact.
Importing accepts chains of Linear/Affine followed by LIF, CubaLIF (instantaneous synapse only)
or LI, with v_leak = 0 and v_reset = 0; anything else raises ValueError naming the node.
"""

from __future__ import annotations

import numpy as np

try:
    import nir
except ImportError as exc:  # pragma: no cover - exercised only without nir
    raise ImportError("saltatory.nir needs the nir package: pip install nir") from exc

from .nn import LIF, Readout, RecurrentLIF, Sequential

_SALTATORY_KEYS = ("capacity", "theta2", "surrogate", "beta", "reset", "reset_grad")


def to_nir(net: Sequential, dt: float = 1e-4, *, neuron: str = "LIF",
           fold_gain: bool = False) -> "nir.NIRGraph":
    """The stack as a NIR graph: input -> (Linear|Affine -> LIF|CubaLIF|LI) per layer -> output."""
    if net.coupling != "same_step":
        raise ValueError("[to_nir] NIR has no one-step layer delay: export needs coupling='same_step'")
    if neuron not in ("LIF", "CubaLIF"):
        raise ValueError(f"[to_nir] neuron must be 'LIF' or 'CubaLIF', got {neuron!r}")
    if not dt > 0:
        raise ValueError(f"[to_nir] dt must be positive, got {dt}")
    nodes = {"input": nir.Input(input_type=np.array([net.layers[0].n_in]))}
    edges, previous = [], "input"
    for i, layer in enumerate(net.layers):
        alpha = layer.alpha.astype(np.float64)
        if np.any(alpha >= 1.0):
            raise ValueError(f"[to_nir] layer {i}: alpha = 1 (no leak) has no finite NIR time constant")
        gain = np.full(layer.n_out, layer.gain)
        scale = gain if fold_gain else np.ones(layer.n_out)
        weight = (layer.weight.data.astype(np.float64) * scale).T
        if layer.bias is not None:
            nodes[f"linear_{i}"] = nir.Affine(weight=weight, bias=layer.bias.data * scale)
        else:
            nodes[f"linear_{i}"] = nir.Linear(weight=weight)
        tau, r = dt / (1.0 - alpha), (np.ones(layer.n_out) if fold_gain else gain)
        zero = np.zeros(layer.n_out)
        if isinstance(layer, Readout):
            nodes[f"neuron_{i}"] = nir.LI(tau=tau, r=r, v_leak=zero)
        else:
            threshold = np.full(layer.n_out, layer.theta1)
            meta = {"saltatory": {key: getattr(layer, key) for key in _SALTATORY_KEYS}}
            if neuron == "LIF":
                nodes[f"neuron_{i}"] = nir.LIF(tau=tau, r=r, v_leak=zero, v_threshold=threshold,
                                              v_reset=zero, metadata=meta)
            else:
                nodes[f"neuron_{i}"] = nir.CubaLIF(tau_syn=np.full(layer.n_out, dt), tau_mem=tau, r=r,
                                                  v_leak=zero, v_threshold=threshold, v_reset=zero,
                                                  w_in=np.ones(layer.n_out), metadata=meta)
        edges += [(previous, f"linear_{i}"), (f"linear_{i}", f"neuron_{i}")]
        if isinstance(layer, RecurrentLIF):
            nodes[f"recurrent_{i}"] = nir.Linear(weight=(layer.weight_rec.data.astype(np.float64) * scale).T)
            edges += [(f"neuron_{i}", f"recurrent_{i}"), (f"recurrent_{i}", f"neuron_{i}")]
        previous = f"neuron_{i}"
    nodes["output"] = nir.Output(output_type=np.array([net.layers[-1].n_out]))
    edges.append((previous, "output"))
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata={"saltatory_dt": dt})


def _follow(graph, name: str) -> list[str]:
    """The nodes ``name`` feeds, except a recurrent loop back into it."""
    return [b for a, b in graph.edges if a == name and (b, name) not in graph.edges]


def _recurrent(graph, name: str) -> list[str]:
    return [b for a, b in graph.edges if a == name and (b, name) in graph.edges]


def _single(values, what: str, node: str) -> float:
    values = np.unique(np.asarray(values, dtype=np.float64))
    if values.size != 1:
        raise ValueError(f"[from_nir] node {node}: {what} must be the same for every neuron, got {values}")
    return float(values[0])


def from_nir(graph: "nir.NIRGraph", dt: float | None = None, *, capacity: int | None = None,
             seed: int = 0, mode: str = "sparse") -> Sequential:
    """A Saltatory stack from a NIR graph (see the module docstring for what is accepted).

    ``dt`` defaults to the exporter's (Saltatory graphs record it) or 1e-4 (snnTorch's). Settings
    NIR cannot hold (capacity, theta2, ...) come from Saltatory metadata when present, otherwise
    from the layer defaults; ``capacity`` overrides them for every spiking layer.
    """
    if dt is None:
        dt = graph.metadata.get("saltatory_dt", 1e-4) if isinstance(graph.metadata, dict) else 1e-4
    inputs = [name for name, node in graph.nodes.items() if isinstance(node, nir.Input)]
    if len(inputs) != 1:
        raise ValueError(f"[from_nir] need exactly one Input node, found {len(inputs)}")
    layers, current = [], inputs[0]
    while True:
        following = _follow(graph, current)
        if len(following) != 1:
            raise ValueError(f"[from_nir] node {current} feeds {len(following)} nodes; only chains "
                             f"(plus self-recurrence) are supported")
        name = following[0]
        node = graph.nodes[name]
        if isinstance(node, nir.Output):
            break
        if not isinstance(node, (nir.Linear, nir.Affine)):
            raise ValueError(f"[from_nir] node {name} is a {type(node).__name__}; expected Linear or Affine")
        weight = np.asarray(node.weight, dtype=np.float64)
        bias = np.asarray(node.bias, dtype=np.float64) if isinstance(node, nir.Affine) else None
        after = _follow(graph, name)
        neuron_name = after[0] if len(after) == 1 else None
        neuron = graph.nodes.get(neuron_name)
        layers.append(_layer(neuron_name, neuron, weight, bias, graph, dt, capacity, seed + len(layers)))
        current = neuron_name
    if not layers:
        raise ValueError("[from_nir] the graph has no layers")
    return Sequential(*layers, mode=mode, seed=seed)


def _layer(name, neuron, weight, bias, graph, dt, capacity, seed):
    if not isinstance(neuron, (nir.LIF, nir.CubaLIF, nir.LI)):
        raise ValueError(f"[from_nir] node {name} (after a Linear/Affine) is a {type(neuron).__name__}; "
                         f"expected LIF, CubaLIF or LI")
    n_out, n_in = weight.shape
    tau = neuron.tau_mem if isinstance(neuron, nir.CubaLIF) else neuron.tau
    if not np.allclose(neuron.v_leak, 0.0) or not np.allclose(getattr(neuron, "v_reset", 0.0), 0.0):
        raise ValueError(f"[from_nir] node {name}: only v_leak = 0 and v_reset = 0 are supported")
    instantaneous = lambda n: np.allclose(n.tau_syn, dt) and np.allclose(n.w_in, 1.0)  # noqa: E731
    if isinstance(neuron, nir.CubaLIF) and not instantaneous(neuron):
        raise ValueError(f"[from_nir] node {name}: CubaLIF with a synaptic time constant "
                         f"(tau_syn != dt) is not supported: Saltatory LIF has no synaptic current")
    alpha = (1.0 - dt / np.broadcast_to(np.asarray(tau, np.float64), (n_out,))).astype(np.float32)
    gain = _single(neuron.r, "r (the gain)", name)
    if isinstance(neuron, nir.LI):
        layer = Readout(n_in, n_out, alpha=alpha, gain=gain, bias=bias is not None, seed=seed)
    else:
        options = dict(neuron.metadata.get("saltatory", {})) if isinstance(neuron.metadata, dict) else {}
        if capacity is not None:
            options["capacity"] = capacity
        recurrent = _recurrent(graph, name)
        kind = RecurrentLIF if recurrent else LIF
        layer = kind(n_in, n_out, options.pop("capacity", None), alpha=alpha, gain=gain,
                     theta1=_single(neuron.v_threshold, "v_threshold", name), bias=bias is not None,
                     seed=seed, **options)
        if recurrent:
            layer.weight_rec.data[...] = np.asarray(graph.nodes[recurrent[0]].weight, np.float64).T
    layer.weight.data[...] = weight.T
    if bias is not None:
        layer.bias.data[...] = bias
    return layer
