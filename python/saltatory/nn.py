"""Layers and the Sequential stack. A forward call runs the whole sequence in C++:

    I[t] = bias + sum over input spikes of W[id, :] (+ W_rec rows of the layer's own spikes at t-1)
    V[t] = alpha V[t-1] (1 - r[t]) + gain (1 - alpha) I[t];   S[t] = select(V[t], theta1, theta2, K)

Weights are input-major [n_in, n_out]. ``Sequential.backward`` runs BPTT and adds into ``.grad``.
There is no hidden state between calls: every forward starts from V = 0.
"""

from __future__ import annotations

import math

import numpy as np

from . import _core
from .spikes import SpikeTensor

_SURROGATES = {"super_spike": _core.Surrogate.super_spike, "arctan": _core.Surrogate.arctan,
               "triangle": _core.Surrogate.triangle, "sigmoid": _core.Surrogate.sigmoid}
_RESETS = {"state": _core.ResetMode.state, "spike": _core.ResetMode.spike}
_RESET_GRADS = {"pass": _core.ResetGrad.pass_, "mask": _core.ResetGrad.mask}


def _choice(table: dict, value: str, what: str, layer: str):
    if value not in table:
        raise ValueError(f"[{layer}] {what} must be one of {sorted(table)}, got {value!r}")
    return table[value]


class Parameter:
    """A float32 parameter array and its gradient (same shape)."""

    def __init__(self, data):
        self.data = np.ascontiguousarray(data, dtype=np.float32)
        self.grad = np.zeros_like(self.data)

    @property
    def shape(self):
        return self.data.shape

    def __repr__(self) -> str:
        return f"Parameter(shape={self.data.shape})"


def paper_init(n_in: int, n_out: int, rng: np.random.Generator) -> np.ndarray:
    """W ~ U(-a, a) + 0.001 with a = 2 sqrt(6 / n_in) (METHOD.md section 3)."""
    a = 2.0 * math.sqrt(6.0 / n_in)
    return (rng.uniform(-a, a, size=(n_in, n_out)) + 0.001).astype(np.float32)


def _alpha_vector(alpha, n: int, layer: str) -> np.ndarray:
    a = np.asarray(alpha, dtype=np.float32)
    if a.ndim == 0:
        a = np.full(n, a, dtype=np.float32)
    if a.shape != (n,):
        raise ValueError(f"[{layer}] alpha must be a scalar or have shape ({n},), got {a.shape}")
    if not np.all((a >= 0) & (a <= 1)):
        raise ValueError(f"[{layer}] alpha values must lie in [0, 1]")
    return a


class _Layer:
    kind = None

    def __init__(self, n_in: int, n_out: int, *, alpha, gain: float, bias: bool, seed: int | None):
        name = type(self).__name__
        if int(n_in) <= 0 or int(n_out) <= 0:
            raise ValueError(f"[{name}] sizes must be positive, got {n_in} -> {n_out}")
        self.n_in, self.n_out = int(n_in), int(n_out)
        self.gain = float(gain)
        rng = np.random.default_rng(seed)
        self.weight = Parameter(paper_init(self.n_in, self.n_out, rng))
        self.bias = Parameter(np.zeros(self.n_out, np.float32)) if bias else None
        self.alpha = _alpha_vector(alpha, self.n_out, name)
        self._rng = rng

    def parameters(self) -> dict[str, Parameter]:
        params = {"weight": self.weight}
        if getattr(self, "weight_rec", None) is not None:
            params["weight_rec"] = self.weight_rec
        if self.bias is not None:
            params["bias"] = self.bias
        return params

    def config(self) -> _core.LayerConfig:
        c = _core.LayerConfig()
        c.kind = self.kind
        c.n_in, c.n_out, c.gain, c.bias = self.n_in, self.n_out, self.gain, self.bias is not None
        return c

    def _arrays(self):
        rec = getattr(self, "weight_rec", None)
        return (self.weight.data, None if rec is None else rec.data,
                None if self.bias is None else self.bias.data, self.alpha)

    def _grads(self):
        rec = getattr(self, "weight_rec", None)
        return (self.weight.grad, None if rec is None else rec.grad,
                None if self.bias is None else self.bias.grad)


class LIF(_Layer):
    """Feed-forward LIF layer with sparse spike-list output.

    capacity: list capacity K (default 2*floor(0.05*n_out/2), at least 2). theta1: spike
    threshold; theta2: gradient-candidate threshold (may change between steps, e.g. a schedule).
    surrogate: super_spike (default), arctan, triangle or sigmoid, with slope ``beta``.
    reset: "state" (from the previous membrane) or "spike" (only emitted spikes reset).
    reset_grad: "pass" (dV[t+1]/dV[t] = alpha) or "mask" (alpha (1 - reset), as snnTorch).
    """

    kind = _core.LayerKind.lif

    def __init__(self, n_in: int, n_out: int, capacity: int | None = None, *, alpha=0.95,
                 theta1: float = 1.0, theta2: float = 0.9, gain: float = 10.0,
                 surrogate: str = "super_spike", beta: float = 10.0, reset: str = "state",
                 reset_grad: str = "pass", bias: bool = False, seed: int | None = None):
        super().__init__(n_in, n_out, alpha=alpha, gain=gain, bias=bias, seed=seed)
        name = type(self).__name__
        self.capacity = max(2, 2 * int(0.05 * self.n_out / 2)) if capacity is None else int(capacity)
        if self.capacity <= 0:
            raise ValueError(f"[{name}] capacity must be positive, got {capacity}")
        self.theta1, self.theta2, self.beta = float(theta1), float(theta2), float(beta)
        if not self.theta2 <= self.theta1:
            raise ValueError(f"[{name}] theta2 ({theta2}) must not exceed theta1 ({theta1})")
        self.surrogate = surrogate
        self.reset, self.reset_grad = reset, reset_grad
        _choice(_SURROGATES, surrogate, "surrogate", name)
        _choice(_RESETS, reset, "reset", name)
        _choice(_RESET_GRADS, reset_grad, "reset_grad", name)

    def config(self) -> _core.LayerConfig:
        c = super().config()
        name = type(self).__name__
        c.capacity, c.theta1, c.theta2, c.beta = self.capacity, self.theta1, self.theta2, self.beta
        c.surrogate = _choice(_SURROGATES, self.surrogate, "surrogate", name)
        c.reset = _choice(_RESETS, self.reset, "reset", name)
        c.reset_grad = _choice(_RESET_GRADS, self.reset_grad, "reset_grad", name)
        return c


class RecurrentLIF(LIF):
    """LIF layer with lateral weights W_rec [n_out, n_out] fed by its own spikes of step t-1."""

    kind = _core.LayerKind.recurrent_lif

    def __init__(self, n_in: int, n_out: int, capacity: int | None = None, **kwargs):
        super().__init__(n_in, n_out, capacity, **kwargs)
        self.weight_rec = Parameter(paper_init(self.n_out, self.n_out, self._rng))


class Readout(_Layer):
    """Non-spiking leaky integrator: V[t] = alpha V[t-1] + gain (1 - alpha) I[t], output V."""

    kind = _core.LayerKind.readout

    def __init__(self, n_in: int, n_out: int, *, alpha=0.95, gain: float = 10.0, bias: bool = False,
                 seed: int | None = None):
        super().__init__(n_in, n_out, alpha=alpha, gain=gain, bias=bias, seed=seed)


class Sequential:
    """A stack of LIF / RecurrentLIF layers, optionally ending in a Readout.

    coupling: "same_step" (layer l reads layer l-1 at step t) or "delayed" (at t-1).
    mode: "sparse" (the method) or "dense" (dense-matrix baseline, no capacity limit).
    overflow: "lowest" or "random" (seeded) choice of the spikes kept when a list overflows.
    device: "cpu", "cuda" (the CUDA backend; input spikes may then also be CUDA tensors, see
    SpikeTensor) or "ipu-model" (the IPU tile plan, interpreted on the host); see
    ``available_devices()``.
    recompute_segment: BPTT memory (checkpointing in time, sparse mode). 0 (default) stores every
    membrane [T, B, N] for backward. S > 0 keeps only the spike lists and one membrane every S
    steps, and backward recomputes the membranes S steps at a time: memory falls from O(T N) to
    O(T K + (S + T / S) N) per layer for about one extra forward. "auto" picks
    S = ceil(sqrt(T / 2)), which minimises the membrane memory. Gradients are bitwise the same. The
    CPU rounds S up to a multiple of max(1, 256 // B) steps (its weight-gradient chunk), so with
    small batches and short sequences it may end up storing everything. "cuda" rounds as the CPU does.
    """

    def __init__(self, *layers, coupling: str = "same_step", mode: str = "sparse",
                 overflow: str = "lowest", seed: int = 0, device: str = "cpu",
                 recompute_segment: int | str = 0):
        if not layers:
            raise ValueError("[Sequential] needs at least one layer")
        for i, layer in enumerate(layers):
            if not isinstance(layer, _Layer):
                raise TypeError(f"[Sequential] layer {i} is a {type(layer).__name__}, not a saltatory layer")
            if isinstance(layer, Readout) and i != len(layers) - 1:
                raise ValueError("[Sequential] a Readout layer must be last")
        for i in range(1, len(layers)):
            if layers[i].n_in != layers[i - 1].n_out:
                raise ValueError(f"[Sequential] layer {i} expects {layers[i].n_in} inputs but layer "
                                 f"{i - 1} has {layers[i - 1].n_out} outputs")
        self.layers = list(layers)
        self.coupling, self.mode, self.overflow, self.seed, self.device = coupling, mode, overflow, seed, device
        if not (recompute_segment == "auto" or (isinstance(recompute_segment, (int, np.integer))
                                                and not isinstance(recompute_segment, bool)
                                                and recompute_segment >= 0)):
            raise ValueError(f"[Sequential] recompute_segment must be 0, a positive number of steps or "
                             f"'auto', got {recompute_segment!r}")
        if recompute_segment != 0 and mode != "sparse":
            raise ValueError("[Sequential] recompute_segment needs mode='sparse'; the dense baseline "
                             "stores every membrane")
        self.recompute_segment = recompute_segment
        self._context = None
        self.spikes: list[SpikeTensor] = []
        self.dropped: list[int] = []

    def forward(self, x: SpikeTensor):
        """Runs all T steps. Returns the readout membrane [T, B, C] (float32) if the stack ends in
        a Readout, else the last layer's SpikeTensor. Per-layer outputs stay in ``self.spikes``
        and the spikes each layer dropped by capacity in ``self.dropped``."""
        if not isinstance(x, SpikeTensor):
            raise TypeError(f"[Sequential.forward] input must be a SpikeTensor, got {type(x).__name__}")
        ctx = _core.lif_stack_forward([layer.config() for layer in self.layers],
                                      [layer._arrays() for layer in self.layers], x, self.coupling,
                                      self.mode, self.overflow, int(self.seed), self.device,
                                      self.segment_for(x.shape[0]))
        self._context = ctx
        self.spikes = [SpikeTensor(ids, n_spk, n_tot, n_neurons=n, dropped=d, validate=False)
                       for ids, n_spk, n_tot, n, d in ctx.spikes]
        self.dropped = list(ctx.dropped)
        readout = ctx.readout
        return readout if readout is not None else self.spikes[-1]

    __call__ = forward

    def segment_for(self, steps: int) -> int:
        """The recompute segment a forward over ``steps`` steps asks for (0: store every membrane)."""
        if self.recompute_segment == "auto":
            return math.ceil(math.sqrt(steps / 2))
        return int(self.recompute_segment)

    @property
    def ipu_report(self) -> dict | None:
        """On ``device="ipu-model"``: what the last forward (and backward) measured while executing
        the tile plan (tiles, bytes per tile, exchange bytes, compute-set cycle estimates)."""
        return None if self._context is None else self._context.ipu_report

    def backward(self, grad_output, *, grad_spikes=None, input_grad: bool = False):
        """BPTT through the last forward. ``grad_output``: dL/d(readout membrane) [T, B, C], or
        dL/d(entries of the last layer's lists) [T, B, K]. ``grad_spikes``: optional per-layer
        entry gradients (e.g. activity regularisers), None where absent. Gradients are added into
        each parameter's ``.grad``. Returns dL/d(input entries) [T, B, K_in] if ``input_grad``."""
        if self._context is None or self._context.backward_done:
            raise ValueError("[Sequential.backward] call forward first (each forward allows one backward)")
        grads_out = list(grad_spikes) if grad_spikes is not None else [None] * len(self.layers)
        if len(grads_out) != len(self.layers):
            raise ValueError(f"[Sequential.backward] grad_spikes needs {len(self.layers)} entries")
        if grads_out[-1] is not None:
            raise ValueError("[Sequential.backward] pass the last layer's gradient as grad_output")
        grads_out[-1] = grad_output
        grad_in = None
        if input_grad:
            grad_in = np.zeros(self._context.input_shape, np.float32)
        _core.lif_stack_backward(self._context, grads_out, [layer._grads() for layer in self.layers], grad_in)
        return grad_in

    def named_parameters(self) -> list[tuple[str, Parameter]]:
        return [(f"layers.{i}.{name}", p) for i, layer in enumerate(self.layers)
                for name, p in layer.parameters().items()]

    def parameters(self) -> list[Parameter]:
        return [p for _, p in self.named_parameters()]

    def zero_grad(self) -> None:
        for p in self.parameters():
            p.grad.fill(0.0)

    def state_dict(self) -> dict[str, np.ndarray]:
        """Copies of every parameter and of each layer's alpha, by name."""
        state = {name: p.data.copy() for name, p in self.named_parameters()}
        state.update({f"layers.{i}.alpha": layer.alpha.copy() for i, layer in enumerate(self.layers)})
        return state

    def load_state_dict(self, state: dict) -> None:
        """Loads arrays by name; every name must be present with the same shape."""
        expected = self.state_dict()
        missing = sorted(set(expected) - set(state))
        unexpected = sorted(set(state) - set(expected))
        if missing or unexpected:
            raise ValueError(f"[Sequential.load_state_dict] missing keys {missing}, unexpected keys {unexpected}")
        for name, current in expected.items():
            value = np.asarray(state[name])
            if value.shape != current.shape:
                raise ValueError(f"[Sequential.load_state_dict] {name} has shape {value.shape}, expected {current.shape}")
            if not np.all(np.isfinite(value)):
                raise ValueError(f"[Sequential.load_state_dict] {name} contains NaN or Inf")
            if name.endswith(".alpha") and not np.all((value >= 0) & (value <= 1)):
                raise ValueError(f"[Sequential.load_state_dict] {name} values must lie in [0, 1]")
        params = dict(self.named_parameters())
        for name, value in state.items():
            if name in params:
                params[name].data[...] = value
            else:
                layer = self.layers[int(name.split(".")[1])]
                layer.alpha = _alpha_vector(value, layer.n_out, type(layer).__name__)


class Theta2Schedule:
    """The paper's gradient-threshold schedule: every spiking layer's theta2 starts at ``start``
    (so every neuron is a candidate) and moves ``rate`` of the way to its target after each
    ``step()``. Targets default to the layers' theta2 when the schedule is made."""

    def __init__(self, net: Sequential, start: float = -100.0, rate: float = 0.5, targets=None):
        self.layers = [layer for layer in net.layers if isinstance(layer, LIF)]
        if not 0 < rate <= 1:
            raise ValueError(f"[Theta2Schedule] rate must lie in (0, 1], got {rate}")
        self.targets = ([layer.theta2 for layer in self.layers] if targets is None
                        else [float(t) for t in targets])
        if len(self.targets) != len(self.layers):
            raise ValueError(f"[Theta2Schedule] {len(self.targets)} targets for {len(self.layers)} layers")
        self.rate, self.steps = float(rate), 0
        for layer in self.layers:
            layer.theta2 = min(float(start), layer.theta1)

    def step(self) -> None:
        for layer, target in zip(self.layers, self.targets):
            layer.theta2 += self.rate * (target - layer.theta2)
        self.steps += 1

    def state_dict(self) -> dict:
        return {"theta2": [layer.theta2 for layer in self.layers], "targets": list(self.targets),
                "rate": self.rate, "steps": self.steps}

    def load_state_dict(self, state: dict) -> None:
        if len(state["theta2"]) != len(self.layers) or len(state["targets"]) != len(self.layers):
            raise ValueError(f"[Theta2Schedule.load_state_dict] state is for {len(state['theta2'])} "
                             f"layers, this schedule has {len(self.layers)}")
        for layer, theta2 in zip(self.layers, state["theta2"]):
            layer.theta2 = float(theta2)
        self.targets = [float(t) for t in state["targets"]]
        self.rate, self.steps = float(state["rate"]), int(state["steps"])
