"""The benchmark's fixed workloads, their inputs and the gain calibration that sets activity.

Names are fixed so that results stay comparable over time:

- ``shd-paper``: 700-974-974-974-20, B=48, T=100, input capacity 48, spike-count cross-entropy.
- ``shd-long``: ``shd-paper`` over T=1000 steps, where BPTT memory is what limits training (the
  workload of checkpointing in time, ``saltatory-recompute``).
- ``nmnist-paper``: 1152-978-978-976-10, B=48, T=100, input capacity 32, spike-count cross-entropy.
- ``single-layer``: one Linear+LIF layer n -> n, n in {4096, 8192}, B=16, T=500 (the Open
  Neuromorphic benchmark's shape), input activity equal to the swept activity, sum-of-outputs loss.

Hidden capacity is ``2*floor(a*N/2)`` for the swept activity ``a``; the paper networks' output
capacity is 2. Activity is *controlled* by calibrating each layer's input gain so that its
uncapped firing rate is ``a`` (bisection on a small batch), and then *measured* in every run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

ACTIVITIES = (0.01, 0.025, 0.05, 0.1, 0.2)
ALPHA = 0.95


@dataclass(frozen=True)
class Workload:
    name: str
    sizes: tuple[int, ...]
    batch: int
    steps: int
    input_capacity: int | None  # None: the swept activity's capacity
    output_capacity: int | None  # None: the swept activity's capacity
    loss: str  # "spike_count_ce" or "sum"


def workloads(names, tiny: bool = False) -> list[Workload]:
    """The named workloads (``single-layer`` expands to both sizes). ``tiny`` shrinks every one to a
    seconds-long smoke run with the same structure."""
    table = {
        "shd-paper": [Workload("shd-paper", (700, 974, 974, 974, 20), 48, 100, 48, 2, "spike_count_ce")],
        "shd-long": [Workload("shd-long", (700, 974, 974, 974, 20), 48, 1000, 48, 2, "spike_count_ce")],
        "nmnist-paper": [Workload("nmnist-paper", (1152, 978, 978, 976, 10), 48, 100, 32, 2,
                                  "spike_count_ce")],
        "single-layer": [Workload("single-layer", (n, n), 16, 500, None, None, "sum") for n in (4096, 8192)],
    }
    out = []
    for name in names:
        if name not in table:
            raise ValueError(f"[saltatory.bench] unknown workload {name!r}; choose from {sorted(table)}")
        for w in table[name]:
            if tiny:
                keep_last = w.output_capacity is not None  # the class count of the paper networks
                sizes = tuple(s if keep_last and i == len(w.sizes) - 1 else max(16, s // 8)
                              for i, s in enumerate(w.sizes))
                w = Workload(w.name, sizes, 4, 10, None if w.input_capacity is None else 8,
                             w.output_capacity, w.loss)
                if w.name == "single-layer" and out and out[-1].name == "single-layer":
                    continue  # one tiny single-layer size is enough
            out.append(w)
    return out


def capacity(activity: float, n: int) -> int:
    """The paper's list capacity 2*floor(a*N/2), at least 2."""
    return max(2, 2 * math.floor(activity * n / 2))


def capacities(w: Workload, activity: float) -> list[int]:
    """List capacity of every layer's output."""
    caps = [capacity(activity, n) for n in w.sizes[1:]]
    if w.output_capacity is not None:
        caps[-1] = w.output_capacity
    return caps


def input_capacity(w: Workload, activity: float) -> int:
    return w.input_capacity if w.input_capacity is not None else capacity(activity, w.sizes[0])


def make_input(w: Workload, activity: float, batch: int | None = None, seed: int = 0):
    """Random input lists, every list full (input activity = input capacity / N_in), and labels."""
    from ..spikes import SpikeTensor

    rng = np.random.default_rng(seed)
    T, B, n_in = w.steps, batch or w.batch, w.sizes[0]
    k = input_capacity(w, activity)
    ids = np.empty((T, B, k), np.int32)
    for t in range(T):  # k distinct random ids per list, ascending
        keys = rng.random((B, n_in), dtype=np.float32)
        ids[t] = np.sort(np.argpartition(keys, k - 1, axis=-1)[:, :k], axis=-1)
    counts = np.full((T, B), k, np.int32)
    labels = rng.integers(0, w.sizes[-1], size=B)
    return SpikeTensor(ids, counts, counts, n_neurons=n_in), labels


def weights(w: Workload, seed: int = 0) -> list[np.ndarray]:
    """Input-major weights [n_in, n_out] of every layer, the paper's initialisation."""
    from ..nn import paper_init

    rng = np.random.default_rng(seed + 1)
    return [paper_init(w.sizes[i], w.sizes[i + 1], rng) for i in range(len(w.sizes) - 1)]


#: ``--neurons``: the hidden layers' class and options of each neuron model (the paper networks'
#: spiking output layer stays a LIF)
NEURONS = {"lif": ("LIF", {}), "cuba": ("CubaLIF", {"alpha_syn": 0.9}),
           "alif": ("AdaptiveLIF", {"adaptation": "threshold"}),
           "adlif": ("AdaptiveLIF", {"adaptation": "current"})}


def _layers(w: Workload, gains, caps, arrays, neuron: str = "lif") -> list:
    """The workload's layers (hidden ones of the ``neuron`` model) with the given gains,
    capacities and weights."""
    from .. import nn

    layers = []
    spiking_output = w.output_capacity is not None
    for i, cap in enumerate(caps):
        hidden = not (spiking_output and i == len(caps) - 1)
        kind, options = NEURONS[neuron] if hidden else NEURONS["lif"]
        layer = getattr(nn, kind)(w.sizes[i], w.sizes[i + 1], cap, alpha=ALPHA, gain=float(gains[i]),
                                  **options)
        layer.weight.data[...] = arrays[i]
        layers.append(layer)
    return layers


def build_net(w: Workload, activity: float, gains, mode: str, weight_arrays=None, device: str = "cpu",
              neuron: str = "lif"):
    """The Saltatory stack of the workload with the given per-layer gains, on ``device``, hidden
    layers of the ``neuron`` model. Mode "recompute" is sparse mode with checkpointing in time
    (``recompute_segment="auto"``)."""
    from ..nn import Sequential

    arrays = weight_arrays if weight_arrays is not None else weights(w)
    layers = _layers(w, gains, capacities(w, activity), arrays, neuron)
    if mode == "recompute":
        return Sequential(*layers, mode="sparse", recompute_segment="auto", device=device)
    return Sequential(*layers, mode=mode, device=device)


def calibrate_gains(w: Workload, activity: float, iterations: int = 10,
                    neuron: str = "lif") -> list[float]:
    """Per-layer input gains giving each hidden layer (of the ``neuron`` model) an uncapped
    activity of ``activity``.

    Layers are calibrated in order (a layer's rate depends only on the layers below it) by
    bisection on log(gain), on a batch of 4 and at most 100 steps (five membrane time constants)
    with list capacity 2*a*N so that the cap rarely clips the measurement. The output layer of
    the paper networks keeps the default gain 10."""
    short = Workload(w.name, w.sizes, min(4, w.batch), min(100, w.steps), w.input_capacity,
                     w.output_capacity, w.loss)
    x, _ = make_input(short, activity, seed=99)
    n_layers = len(w.sizes) - 1
    caps = [min(n, 2 * capacity(activity, n)) for n in w.sizes[1:]]
    layers = _layers(w, [10.0] * n_layers, caps, weights(w), neuron)
    spiking = n_layers if w.output_capacity is None else n_layers - 1
    from ..nn import Sequential

    for layer in range(spiking):
        lo, hi = math.log(0.5), math.log(500.0)
        for _ in range(iterations):
            mid = 0.5 * (lo + hi)
            layers[layer].gain = math.exp(mid)
            net = Sequential(*layers[:layer + 1])
            net(x)
            if net.spikes[-1].activity() < activity:
                lo = mid
            else:
                hi = mid
        layers[layer].gain = math.exp(0.5 * (lo + hi))
    return [layer.gain for layer in layers]
