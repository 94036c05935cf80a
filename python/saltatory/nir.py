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
NIR's LIF resets to v_reset, Saltatory's reset="state"; snnTorch's ``Leaky`` defaults to the
subtract reset (V - theta1), which its NIR export does not record, so import such graphs with
``from_nir(graph, reset="subtract")``.

Current-based layers (``CubaLIF``, ``RecurrentCubaLIF``: Isyn[t] = alpha_syn Isyn[t-1] + I[t]
drives the membrane in place of I[t]) are always written as NIR CubaLIF nodes, whatever
``neuron`` says. NIR's synapse  tau_syn dI/dt = -I + w_in x  has the Euler step
I[t] = (1 - dt / tau_syn) I[t-1] + (dt / tau_syn) w_in x[t], so

    tau_syn = dt / (1 - alpha_syn),   w_in = tau_syn / dt   (so that (dt / tau_syn) w_in = 1),

tau_mem, R and v_threshold as for LIF (alpha_syn = 0 gives the instantaneous synapse above). The
layer's alpha_syn (clamped into [0, 1], as forward runs it) must be < 1; it also travels as a
float32 array in the node's ``metadata["saltatory"]["alpha_syn"]``, so the round trip is exact.
A recurrent CUBA layer's Linear W_rec^T feeds the CubaLIF node, i.e. its synaptic current.

Importing accepts chains of Linear/Affine followed by LIF, CubaLIF or LI, with v_leak = 0 and
v_reset = 0, and a LIF or CubaLIF node's own recurrent Linear or Affine (whose bias, added at every
step, joins the layer's bias); anything else raises ValueError
(TypeError for a value of the wrong type) naming the node. A CubaLIF node gets
alpha_syn_j = 1 - dt / tau_syn_j (tau_syn >= dt), and its input scale c_j = (dt / tau_syn_j) w_in_j,
which Saltatory does not have, is folded into column j of the incoming weights, the bias and the
recurrent weights (Saltatory's Isyn is NIR's I: exact for any w_in). It becomes a CubaLIF (or
RecurrentCubaLIF) layer when some alpha_syn_j (in float32) is not 0 or its metadata records
alpha_syn (which must then agree with tau_syn to float32 rounding), else an equivalent LIF (or
RecurrentLIF) layer: snnTorch's export and ``neuron="CubaLIF"`` write LIF layers with tau_syn = dt.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

try:
    import nir
except ImportError as exc:  # pragma: no cover - exercised only without nir
    raise ImportError("saltatory.nir needs the nir package: pip install nir") from exc

from . import _checks, _core
from .nn import LIF, CubaLIF, Readout, RecurrentCubaLIF, RecurrentLIF, Sequential

_SALTATORY_KEYS = {"capacity": numbers.Integral, "theta2": numbers.Real, "surrogate": str,
                   "beta": numbers.Real, "reset": str, "reset_grad": str}  # and their types
_ALPHA_SYN = "alpha_syn"  # a CubaLIF node's metadata key: the layer's alpha_syn [n], float32


def to_nir(net: Sequential, dt: float = 1e-4, *, neuron: str = "LIF",
           fold_gain: bool = False) -> "nir.NIRGraph":
    """The stack ``net`` as a NIR graph: input -> (Linear|Affine -> LIF|CubaLIF|LI) per layer ->
    output, with time constants for the time step ``dt`` seconds (tau = dt / (1 - alpha)).
    ``neuron`` is "LIF" or "CubaLIF", the node of LIF layers (see the module docstring; CUBA
    layers are always CubaLIF nodes, tau_syn = dt / (1 - alpha_syn)), ``fold_gain`` moves the gain
    into the weights. ``net`` needs coupling="same_step", every alpha < 1 and every alpha_syn < 1."""
    if net.coupling != "same_step":
        raise ValueError("[to_nir] NIR has no one-step layer delay: export needs coupling='same_step'")
    if neuron not in ("LIF", "CubaLIF"):
        raise ValueError(f"[to_nir] neuron must be 'LIF' or 'CubaLIF', got {neuron!r}")
    if not dt > 0:
        raise ValueError(f"[to_nir] dt must be positive, got {dt}")
    nodes = {"input": nir.Input(input_type=np.array([net.layers[0].n_in]))}
    edges, previous = [], "input"
    for i, layer in enumerate(net.layers):
        if layer.neuron not in ("lif", "cuba"):
            raise ValueError(f"[to_nir] layer {i} is a {type(layer).__name__}: NIR has no node for "
                             f"the {layer.neuron} neuron model (only LIF, CubaLIF and LI)")
        alpha = np.clip(layer.alpha, 0.0, 1.0).astype(np.float64)  # what forward runs (learnable: clamped)
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
            threshold = layer.theta1.astype(np.float64)  # per neuron
            meta = {"saltatory": {key: getattr(layer, key) for key in _SALTATORY_KEYS}}
            if isinstance(layer, CubaLIF):
                alpha_syn = np.clip(layer.alpha_syn, 0.0, 1.0).astype(np.float32)  # as forward runs it
                if np.any(alpha_syn >= 1.0):
                    raise ValueError(f"[to_nir] layer {i}: alpha_syn = 1 (no synaptic leak) has no "
                                     f"finite NIR tau_syn")
                meta["saltatory"][_ALPHA_SYN] = alpha_syn
                tau_syn = dt / (1.0 - alpha_syn.astype(np.float64))
                w_in = tau_syn / dt  # (dt / tau_syn) w_in = 1: Saltatory's Isyn adds I unscaled
            else:
                tau_syn, w_in = np.full(layer.n_out, dt), np.ones(layer.n_out)  # instantaneous
            if neuron == "LIF" and not isinstance(layer, CubaLIF):
                nodes[f"neuron_{i}"] = nir.LIF(tau=tau, r=r, v_leak=zero, v_threshold=threshold,
                                              v_reset=zero, metadata=meta)
            else:
                nodes[f"neuron_{i}"] = nir.CubaLIF(tau_syn=tau_syn, tau_mem=tau, r=r, v_leak=zero,
                                                  v_threshold=threshold, v_reset=zero, w_in=w_in,
                                                  metadata=meta)
        edges += [(previous, f"linear_{i}"), (f"linear_{i}", f"neuron_{i}")]
        if isinstance(layer, RecurrentLIF):
            nodes[f"recurrent_{i}"] = nir.Linear(weight=(layer.weight_rec.data.astype(np.float64) * scale).T)
            edges += [(f"neuron_{i}", f"recurrent_{i}"), (f"recurrent_{i}", f"neuron_{i}")]
        previous = f"neuron_{i}"
    nodes["output"] = nir.Output(output_type=np.array([net.layers[-1].n_out]))
    edges.append((previous, "output"))
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata={"saltatory_dt": dt})


def _array(name: str, field: str, value, n: int | None = None) -> np.ndarray:
    """A node's field as float64: TypeError for what is not a real array, ValueError for NaN, Inf
    or values float32 cannot hold and, given n, for a shape other than (), (1,) or (n,) (then
    broadcast to (n,))."""
    try:
        a = np.asarray(value)
    except (ValueError, TypeError) as exc:  # ragged nested sequences
        raise ValueError(f"[from_nir] node '{name}': {field} is not an array ({exc})") from exc
    if a.dtype.kind not in "iuf":
        raise TypeError(f"[from_nir] node '{name}': {field} must be a real array, got dtype {a.dtype}")
    if n is not None and a.shape not in ((), (1,), (n,)):
        raise ValueError(f"[from_nir] node '{name}': {field} must have shape ({n},), got {a.shape}")
    a = a.astype(np.float64)
    if not np.all(np.abs(a) <= np.finfo(np.float32).max):
        raise ValueError(f"[from_nir] node '{name}': {field} contains NaN, Inf or values beyond float32")
    return a if n is None else np.broadcast_to(a, (n,))


def _single(name: str, field: str, value, n: int) -> float:
    values = np.unique(_array(name, field, value, n))
    if values.size != 1:
        raise ValueError(f"[from_nir] node '{name}': {field} must be the same for every neuron, got {values}")
    return float(values[0])


def _size(name: str, types) -> int:
    """The size an Input's input_type or an Output's output_type declares: {key: shape}."""
    if not isinstance(types, dict) or len(types) != 1:
        raise ValueError(f"[from_nir] node '{name}': expected one declared shape, got {types!r}")
    shape = _array(name, "shape", next(iter(types.values())))
    if shape.ndim != 1 or not np.all((shape > 0) & (shape == np.floor(shape))):
        raise ValueError(f"[from_nir] node '{name}': a shape must be positive integers, got {types!r}")
    return math.prod(int(s) for s in shape)


def _edges(graph) -> dict[str, list[str]]:
    """Each node's successors, once every edge is a pair of the graph's node names."""
    if not isinstance(graph.nodes, dict) or not isinstance(graph.edges, (list, tuple)):
        raise TypeError("[from_nir] the graph's nodes must be a dict and its edges a list")
    if not graph.nodes:
        raise ValueError("[from_nir] the graph has no nodes")
    successors = {name: [] for name in graph.nodes}
    for edge in graph.edges:
        if not isinstance(edge, (list, tuple)) or len(edge) != 2:
            raise ValueError(f"[from_nir] an edge must be a (source, target) pair, got {edge!r}")
        for end in edge:
            if not isinstance(end, str) or end not in successors:
                raise ValueError(f"[from_nir] edge {tuple(edge)} names {end!r}, not a node of the graph")
        successors[edge[0]].append(edge[1])
    return successors


def _options(name: str, neuron, keys, overrides: dict) -> dict:
    """The node's Saltatory settings (metadata["saltatory"], the ``overrides`` that are not None
    replacing them), checked (a CubaLIF node's alpha_syn array is left to _synapse)."""
    if not isinstance(neuron.metadata, dict) or not isinstance(neuron.metadata.get("saltatory", {}), dict):
        raise TypeError(f"[from_nir] node '{name}': metadata and metadata['saltatory'] must be dicts")
    options = dict(neuron.metadata.get("saltatory", {}))
    options.update({key: value for key, value in overrides.items() if value is not None and key in keys})
    for key, value in options.items():
        if key not in keys:
            raise ValueError(f"[from_nir] node '{name}': unknown Saltatory metadata key {key!r} "
                             f"(this node takes {list(keys)})")
        if key == _ALPHA_SYN:
            continue  # an array, checked by _synapse
        kind = _SALTATORY_KEYS[key]
        if not isinstance(value, kind) or isinstance(value, bool):
            raise TypeError(f"[from_nir] node '{name}': {key} must be of type {kind.__name__}, got {value!r}")
        if kind is numbers.Real and not math.isfinite(value):
            raise ValueError(f"[from_nir] node '{name}': {key} must be finite, got {value}")
    return options


def from_nir(graph: "nir.NIRGraph", dt: float | None = None, *, capacity: int | None = None,
             reset: str | None = None, theta2: float | None = None, seed: int = 0,
             mode: str = "sparse") -> Sequential:
    """A Saltatory stack from a NIR graph (see the module docstring for what is accepted).

    CubaLIF nodes become CubaLIF or RecurrentCubaLIF layers with alpha_syn = 1 - dt / tau_syn per
    neuron, their input scale (dt / tau_syn) w_in folded into the weights and bias that feed them
    (exact for any w_in), or LIF layers where tau_syn = dt (and no Saltatory alpha_syn metadata).

    ``dt`` defaults to the exporter's (Saltatory graphs record it) or 1e-4 (snnTorch's). Settings
    NIR cannot hold (capacity, theta2, ...) come from Saltatory metadata when present, otherwise
    from the layer defaults; ``capacity`` overrides them for every spiking layer. ``reset``
    ("state", "spike" or "subtract") sets every spiking layer's reset rule; None takes it from the
    metadata, else NIR's reset to v_reset = 0 ("state"). NIR's LIF cannot express snnTorch
    ``Leaky``'s default subtract reset: import snnTorch graphs with reset="subtract". ``theta2``
    (the gradient-candidate threshold, below every v_threshold) likewise overrides it for every
    spiking layer: graphs without Saltatory metadata otherwise get the layer default 0.9, which a
    v_threshold at or below 0.9 refuses. Whatever else
    the graph holds (a cycle, a node off the chain, a missing node, a parameter of the wrong shape
    or dtype or not finite, an unknown metadata key) raises ValueError or TypeError naming the node.
    ``mode`` and ``seed`` are the Sequential's (the random overflow stream; layer i's initial
    weights, then overwritten by the graph's, draw from ``seed + i``).
    """
    if not isinstance(graph, nir.NIRGraph):
        raise TypeError(f"[from_nir] expected a nir.NIRGraph, got {type(graph).__name__}")
    if reset is not None:
        if not isinstance(reset, str):
            raise TypeError(f"[from_nir] reset must be a string or None, got {type(reset).__name__}")
        _checks.choice(reset, _core.option_names()["reset"], "reset", "from_nir")
    successors = _edges(graph)
    if dt is None:
        dt = graph.metadata.get("saltatory_dt", 1e-4) if isinstance(graph.metadata, dict) else 1e-4
    if not isinstance(dt, numbers.Real) or isinstance(dt, bool) or not 0 < dt < math.inf:
        raise ValueError(f"[from_nir] dt must be a positive finite number, got {dt!r}")
    inputs = [name for name, node in graph.nodes.items() if isinstance(node, nir.Input)]
    if len(inputs) != 1:
        raise ValueError(f"[from_nir] need exactly one Input node, found {len(inputs)}")
    chain = [inputs[0]]  # the nodes reached, each once

    def reach(source: str, loop: str | None = None) -> str:
        """The one node ``source`` feeds besides its recurrent ``loop``; a node reached twice is a cycle."""
        following = [b for b in successors[source] if b != loop]
        if len(following) != 1:
            raise ValueError(f"[from_nir] node '{source}' feeds {len(following)} nodes {following}; "
                             f"only chains (plus a LIF node's recurrent Linear) are supported")
        if following[0] in chain:
            raise ValueError(f"[from_nir] node '{following[0]}' is reached twice: the graph has a cycle "
                             f"(only a LIF node's own recurrent Linear may loop back)")
        chain.append(following[0])
        return following[0]

    layers, size, current, loop = [], _size(inputs[0], graph.nodes[inputs[0]].input_type), inputs[0], None
    while not isinstance(graph.nodes[name := reach(current, loop)], nir.Output):
        node = graph.nodes[name]
        if not isinstance(node, (nir.Linear, nir.Affine)):
            raise ValueError(f"[from_nir] node '{name}' is a {type(node).__name__}; "
                             f"expected Linear or Affine")
        if layers and isinstance(layers[-1], Readout):
            raise ValueError(f"[from_nir] node '{current}' is an LI (a readout), which must be the "
                             f"last layer")
        weight = _array(name, "weight", node.weight)
        if weight.ndim != 2 or weight.shape[1] != size or weight.shape[0] == 0:
            raise ValueError(f"[from_nir] node '{name}': weight must have shape (n_out, {size}) for its "
                             f"{size} inputs, got {weight.shape}")
        bias = _array(name, "bias", node.bias, len(weight)) if isinstance(node, nir.Affine) else None
        current = reach(name)
        loop, recurrent, recurrent_bias = _loop(current, len(weight), graph, successors, chain)
        if recurrent_bias is not None:  # W_rec s[t-1] + b_rec adds b_rec at every step (t = 0 too)
            bias = recurrent_bias if bias is None else bias + recurrent_bias
        layers.append(_layer(current, graph.nodes[current], weight, bias, recurrent, dt,
                             {"capacity": capacity, "reset": reset, "theta2": theta2},
                             seed + len(layers)))
        size = len(weight)
    if not layers:
        raise ValueError("[from_nir] the graph has no layers")
    if _size(name, graph.nodes[name].output_type) != size or successors[name]:
        raise ValueError(f"[from_nir] node '{name}': expected an Output of the last layer's {size} "
                         f"neurons that feeds nothing")
    stray = [name for name in graph.nodes if name not in chain]
    if stray:
        raise ValueError(f"[from_nir] node '{stray[0]}' is not on the chain from the input to the output")
    return Sequential(*layers, mode=mode, seed=seed)


def _loop(name: str, n: int, graph, successors, chain: list[str]):
    """(name, weight [n, n], bias [n] or None) of the Linear or Affine node looping back into
    ``name`` (added to ``chain``), or (None, None, None)."""
    loops = [b for b in successors[name] if name in successors[b]]
    if len(loops) > 1:
        raise ValueError(f"[from_nir] node '{name}' has {len(loops)} recurrent loops {loops}; at most one")
    if not loops:
        return None, None, None
    loop, node = loops[0], graph.nodes[loops[0]]
    if loop in chain or successors[loop] != [name]:
        raise ValueError(f"[from_nir] node '{loop}' loops back into '{name}' but is part of a cycle; "
                         f"a recurrent Linear must only feed its LIF node")
    if not isinstance(node, (nir.Linear, nir.Affine)):
        raise ValueError(f"[from_nir] node '{loop}' loops back into '{name}' but is a "
                         f"{type(node).__name__}; a recurrent loop must be a Linear or Affine")
    weight = _array(loop, "weight", node.weight)
    if weight.shape != (n, n):
        raise ValueError(f"[from_nir] node '{loop}': a recurrent weight must have shape ({n}, {n}), "
                         f"got {weight.shape}")
    bias = _array(loop, "bias", node.bias, n) if isinstance(node, nir.Affine) else None
    chain.append(loop)
    return loop, weight, bias


def _synapse(name: str, neuron, dt: float, n: int, recorded):
    """A CubaLIF node's (alpha_syn [n] float32, c [n] float64): alpha_syn = 1 - dt / tau_syn and the
    input scale c = (dt / tau_syn) w_in that the caller folds into the incoming weights. ``recorded``
    (the node's metadata alpha_syn, or None) replaces the computed alpha_syn, which it must match
    to float32 rounding."""
    tau_syn = _array(name, "tau_syn", neuron.tau_syn, n)
    if np.any(tau_syn < dt):
        raise ValueError(f"[from_nir] node '{name}': tau_syn must be positive and at least dt = {dt} "
                         f"(alpha_syn = 1 - dt / tau_syn in [0, 1]), got {tau_syn.min()}")
    w_in = _array(name, "w_in", neuron.w_in, n)
    alpha_syn = (1.0 - dt / tau_syn).astype(np.float32)
    if recorded is not None:
        recorded = _array(name, "metadata alpha_syn", recorded, n).astype(np.float32)
        if not np.all(np.abs(recorded.astype(np.float64) - alpha_syn) <= 1e-6):
            worst = int(np.argmax(np.abs(recorded.astype(np.float64) - alpha_syn)))
            raise ValueError(f"[from_nir] node '{name}': metadata alpha_syn disagrees with "
                             f"1 - dt / tau_syn for dt = {dt} (neuron {worst}: {recorded[worst]} "
                             f"against {alpha_syn[worst]})")
        alpha_syn = recorded
    return alpha_syn, (dt / tau_syn) * w_in


def _folded(name: str, what: str, value: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """``value`` (output-major: rows are the node's neurons) times the input scale per row,
    refused where the product leaves float32."""
    value = value * (scale[:, None] if value.ndim == 2 else scale)
    if not np.all(np.abs(value) <= np.finfo(np.float32).max):
        raise ValueError(f"[from_nir] node '{name}': {what} times the input scale (dt / tau_syn) w_in "
                         f"leaves float32")
    return value


def _layer(name, neuron, weight, bias, recurrent, dt, overrides, seed):
    if not isinstance(neuron, (nir.LIF, nir.CubaLIF, nir.LI)):
        raise ValueError(f"[from_nir] node '{name}' (after a Linear/Affine) is a {type(neuron).__name__}; "
                         f"expected LIF, CubaLIF or LI")
    n_out, n_in = weight.shape
    cuba = isinstance(neuron, nir.CubaLIF)
    tau_field = "tau_mem" if cuba else "tau"
    tau = _array(name, tau_field, getattr(neuron, tau_field), n_out)
    if np.any(tau < dt):
        raise ValueError(f"[from_nir] node '{name}': {tau_field} must be positive and at least dt = {dt} "
                         f"(alpha = 1 - dt / {tau_field} in [0, 1]), got {tau.min()}")
    def near(field: str, value: float) -> bool:
        return np.allclose(_array(name, field, getattr(neuron, field, 0.0), n_out), value)

    if not near("v_leak", 0.0) or not near("v_reset", 0.0):
        raise ValueError(f"[from_nir] node '{name}': only v_leak = 0 and v_reset = 0 are supported")
    if isinstance(neuron, nir.LI) and recurrent is not None:
        raise ValueError(f"[from_nir] node '{name}': an LI (readout) node cannot be recurrent")
    alpha = (1.0 - dt / tau).astype(np.float32)
    gain = _single(name, "r (the gain)", neuron.r, n_out)
    keys = () if isinstance(neuron, nir.LI) else tuple(_SALTATORY_KEYS) + ((_ALPHA_SYN,) if cuba else ())
    options = _options(name, neuron, keys, overrides)
    if not isinstance(neuron, nir.LI):
        options["theta1"] = _array(name, "v_threshold", neuron.v_threshold, n_out)  # per neuron
    if cuba:  # Saltatory's Isyn is NIR's I: the input scale goes into everything feeding it
        recorded = options.pop(_ALPHA_SYN, None)
        alpha_syn, scale = _synapse(name, neuron, dt, n_out, recorded)
        weight = _folded(name, "the incoming weight", weight, scale)
        bias = None if bias is None else _folded(name, "the bias", bias, scale)
        recurrent = None if recurrent is None else _folded(name, "the recurrent weight", recurrent, scale)
        if recorded is not None or np.any(alpha_syn != 0):  # else a LIF is the same model
            options["alpha_syn"] = alpha_syn
    try:
        if isinstance(neuron, nir.LI):
            layer = Readout(n_in, n_out, alpha=alpha, gain=gain, bias=bias is not None, seed=seed)
        else:
            if "alpha_syn" in options:
                kind = CubaLIF if recurrent is None else RecurrentCubaLIF
            else:
                kind = LIF if recurrent is None else RecurrentLIF
            layer = kind(n_in, n_out, options.pop("capacity", None), alpha=alpha, gain=gain,
                         bias=bias is not None, seed=seed, **options)
    except ValueError as exc:  # a setting the layer refuses (theta2 above theta1, a surrogate name)
        raise ValueError(f"[from_nir] node '{name}': {exc}") from exc
    if recurrent is not None:
        layer.weight_rec.data[...] = recurrent.T
    layer.weight.data[...] = weight.T
    if bias is not None:
        layer.bias.data[...] = bias
    return layer
