"""Layers and the Sequential stack. A forward call runs the whole sequence in C++:

    I[t] = bias + sum over input spikes of W[id, :] (+ W_rec rows of the layer's own spikes at t-1)
    V[t] = alpha V[t-1] (1 - r[t]) + gain (1 - alpha) I[t];   S[t] = select(V[t], theta1, theta2, K)

Weights are input-major [n_in, n_out]. ``Sequential.backward`` runs BPTT and adds into ``.grad``.
There is no hidden state between calls: every forward starts from V = 0.
"""

from __future__ import annotations

import math

import numpy as np

from . import _checks, _core
from .spikes import SpikeTensor

_OPTIONS = _core.option_names()  # every named option's spellings, from the C++ tables




def _choice(value: str, what: str, op: str) -> str:
    """``value`` if it names one of the options ``what`` (checked early, with the op's name)."""
    return _checks.choice(value, _OPTIONS[what], what, op)


class Parameter:
    """A float32 parameter array ``.data`` (a C-contiguous float32 copy of ``data``, or ``data``
    itself when it already is one) and its gradient ``.grad`` (zeros of the same shape)."""

    def __init__(self, data):
        self.data = np.ascontiguousarray(data, dtype=np.float32)
        self.grad = np.zeros_like(self.data)

    @property
    def shape(self):
        """The shape of ``.data`` (and ``.grad``)."""
        return self.data.shape

    def __repr__(self) -> str:
        return f"Parameter(shape={self.data.shape})"


def paper_init(n_in: int, n_out: int, rng: np.random.Generator) -> np.ndarray:
    """Initial weights [n_in, n_out], float32: W ~ U(-a, a) + 0.001 with a = 2 sqrt(6 / n_in)
    (docs/method.md, section 3), drawn from the numpy Generator ``rng``."""
    a = 2.0 * math.sqrt(6.0 / n_in)
    return (rng.uniform(-a, a, size=(n_in, n_out)) + 0.001).astype(np.float32)


def _clamp_grad(alpha: np.ndarray, grad: np.ndarray) -> np.ndarray:
    """The gradient through forward's clamp of a learnable alpha into [0, 1]: ``grad`` inside,
    0 outside."""
    return np.where((alpha >= 0) & (alpha <= 1), grad, 0.0).astype(np.float32)


def _check_weight_memory(n_in: int, n_out: int, layer: str) -> None:
    """paper_init draws float64 and keeps float32; the gradient is another float32 array."""
    _checks.check_memory(16 * n_in * n_out, f"[{layer}] weights [{n_in}, {n_out}]")


def _per_neuron(value, n: int, name: str, layer: str) -> np.ndarray:
    """A scalar or [n] real array as a float32 vector [n], finite."""
    a = np.asarray(value)
    if a.dtype.kind not in "fiu":
        raise TypeError(f"[{layer}] {name} must be real, got dtype {a.dtype}")
    with np.errstate(over="ignore"):  # beyond float32 becomes inf, refused below
        a = np.asarray(a, dtype=np.float32)
    if a.ndim == 0:
        a = np.full(n, a, dtype=np.float32)
    if a.shape != (n,):
        raise ValueError(f"[{layer}] {name} must be a scalar or have shape ({n},), got {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"[{layer}] {name} must be finite")
    return a


def _decay_vector(value, n: int, layer: str, name: str = "alpha") -> np.ndarray:
    a = _per_neuron(value, n, name, layer)
    if not np.all((a >= 0) & (a <= 1)):
        raise ValueError(f"[{layer}] {name} values must lie in [0, 1]")
    return a


# The arrays of a layer in the order C++ takes them and their gradients: the weights and bias, then
# the neuron model's per-neuron parameters (the flag that makes each learnable; decays are clamped
# into [0, 1] by forward when learnable).
_SLOTS = ("weight", "weight_rec", "bias", "alpha", "theta1", "alpha_syn", "rho", "b", "a")
_LEARN_FLAGS = {"alpha": "learn_alpha", "theta1": "learn_threshold", "alpha_syn": "learn_alpha_syn",
                "rho": "learn_adaptation", "b": "learn_adaptation", "a": "learn_adaptation"}
_DECAYS = ("alpha", "alpha_syn", "rho")


class _Layer:
    kind = None
    neuron = "lif"  # the neuron model (the C++ unit)

    def __init__(self, n_in: int, n_out: int, *, alpha, gain: float, bias: bool, seed: int | None,
                 learn_alpha: bool = False):
        name = type(self).__name__
        self.n_in = _checks.integer(n_in, "n_in", name, 1)
        self.n_out = _checks.integer(n_out, "n_out", name, 1)
        self.gain = _checks.real(gain, "gain", name)
        rng = np.random.default_rng(None if seed is None else _checks.seed(seed, name))
        _check_weight_memory(self.n_in, self.n_out, name)
        self.weight = Parameter(paper_init(self.n_in, self.n_out, rng))
        self.bias = Parameter(np.zeros(self.n_out, np.float32)) if bias else None
        self.learn_alpha = bool(learn_alpha)
        self._alpha = Parameter(_decay_vector(alpha, self.n_out, name))
        self._rng = rng

    @property
    def alpha(self) -> np.ndarray:
        """Decay per neuron [n_out] (a Parameter's data when ``learn_alpha``)."""
        return self._alpha.data

    @alpha.setter
    def alpha(self, value) -> None:
        self._alpha.data = _decay_vector(value, self.n_out, type(self).__name__)

    def _per_neuron_arrays(self) -> dict[str, Parameter]:
        """The model's per-neuron arrays the layer has (alpha, theta1, alpha_syn, rho, b, a),
        learnable or not, in C++'s order."""
        return {name: getattr(self, "_" + name) for name in _SLOTS[3:] if hasattr(self, "_" + name)}

    def _learns(self, name: str) -> bool:
        return bool(getattr(self, _LEARN_FLAGS[name], False))

    def _slots(self) -> tuple:
        """The Parameters of ``_SLOTS`` in the order C++ takes gradients, None where the layer has
        none or it is not learnable."""
        own = self._per_neuron_arrays()
        return (self.weight, getattr(self, "weight_rec", None), self.bias,
                *(own[name] if name in own and self._learns(name) else None for name in _SLOTS[3:]))

    def parameters(self) -> dict[str, Parameter]:
        """The layer's Parameters by name: weight, weight_rec (recurrent layers), bias (with
        ``bias=True``), alpha (with ``learn_alpha``), theta1 (with ``learn_threshold``),
        alpha_syn (CUBA layers with ``learn_alpha_syn``), rho, b and a (adaptive layers with
        ``learn_adaptation``)."""
        return {name: p for name, p in zip(_SLOTS, self._slots()) if p is not None}

    def config(self) -> _core.LayerConfig:
        """The C++ description, checked again: attributes may have changed since construction."""
        name = type(self).__name__
        c = _core.LayerConfig()
        c.kind = self.kind
        c.neuron = self.neuron
        c.n_in = _checks.integer(self.n_in, "n_in", name, 1)
        c.n_out = _checks.integer(self.n_out, "n_out", name, 1)
        c.gain, c.bias = _checks.real(self.gain, "gain", name), self.bias is not None
        return c

    def _arrays(self):
        """The arrays of ``_SLOTS`` as C++ reads them (None where the layer has none): a learnable
        decay clamped into [0, 1] (a copy), as snnTorch clamps beta."""
        rec = getattr(self, "weight_rec", None)
        own = self._per_neuron_arrays()
        neuron = []
        for name in _SLOTS[3:]:
            value = own[name].data if name in own else None
            if name in _DECAYS and value is not None and self._learns(name):
                value = np.clip(value, 0.0, 1.0)
            neuron.append(value)
        return (self.weight.data, None if rec is None else rec.data,
                None if self.bias is None else self.bias.data, *neuron)

    def _grads(self):
        """Gradient buffers C++ adds into: a learnable decay's goes through a buffer of its own,
        which _finish_grads passes on where the decay lies in [0, 1] (the clamp's gradient)."""
        own = self._per_neuron_arrays()
        self._clamped_grads = {name: np.zeros_like(own[name].data) for name in _DECAYS
                               if name in own and self._learns(name)}
        grads = [None if p is None else p.grad for p in self._slots()]
        for name, buffer in self._clamped_grads.items():
            grads[_SLOTS.index(name)] = buffer
        return tuple(grads)

    def _finish_grads(self) -> None:
        own = self._per_neuron_arrays()
        for name, buffer in getattr(self, "_clamped_grads", {}).items():
            own[name].grad += _clamp_grad(own[name].data, buffer)
        self._clamped_grads = {}


class LIF(_Layer):
    """Feed-forward LIF layer with sparse spike-list output.

    - n_in, n_out: input and output widths (weights [n_in, n_out], ``paper_init``).
    - capacity: list capacity K (default ``2 * floor(0.05 * n_out / 2)``, at least 2).
    - alpha: decay, a scalar or one per neuron, in [0, 1].
    - theta1: spike threshold, a scalar or one per neuron ([n_out]).
    - theta2: the layer-wide gradient-candidate threshold (may change between steps, e.g. a
      schedule), at most every theta1 when the layer is made. Spikes are V > theta1_j, candidates
      theta2 < V <= theta1_j; a learned theta1_j that falls below theta2 leaves neuron j no
      candidates (only its spikes carry gradient).
    - learn_alpha, learn_threshold: make alpha and theta1 Parameters (``layers.{i}.alpha``,
      ``layers.{i}.theta1``, shape [n_out]) that backward gives gradients, like snnTorch's
      ``learn_beta`` and ``learn_threshold``. A learnable alpha is clamped into [0, 1] by forward
      (its gradient is zero where the clamp is active).
    - surrogate: super_spike (default), arctan, triangle or sigmoid, with slope ``beta``.
    - reset: "state" (to zero, decided by the previous membrane), "spike" (to zero, only emitted
      spikes reset) or "subtract" (V[t] = alpha V[t-1] - theta1 r[t] + gain (1 - alpha) I[t], r
      decided by the previous membrane: snnTorch ``Leaky``'s default).
    - reset_grad: "pass" (dV[t+1]/dV[t] = alpha) or "mask" (alpha (1 - reset), as snnTorch); the
      subtract reset is a detached offset, so it always passes alpha.
    - gain: input current scale.
    - bias: add a learnable bias [n_out] (zeros) to the current.
    - seed: the initial weights' stream (None: fresh entropy).
    """

    kind = "lif"

    def __init__(self, n_in: int, n_out: int, capacity: int | None = None, *, alpha=0.95,
                 theta1=1.0, theta2: float = 0.9, gain: float = 10.0,
                 surrogate: str = "super_spike", beta: float = 10.0, reset: str = "state",
                 reset_grad: str = "pass", bias: bool = False, seed: int | None = None,
                 learn_alpha: bool = False, learn_threshold: bool = False):
        super().__init__(n_in, n_out, alpha=alpha, gain=gain, bias=bias, seed=seed,
                         learn_alpha=learn_alpha)
        name = type(self).__name__
        self.capacity = (max(2, 2 * int(0.05 * self.n_out / 2)) if capacity is None
                         else _checks.integer(capacity, "capacity", name, 1))
        self.learn_threshold = bool(learn_threshold)
        self._theta1 = Parameter(_per_neuron(theta1, self.n_out, "theta1", name))
        self.theta2 = _checks.real(theta2, "theta2", name)
        self.beta = _checks.real(beta, "beta", name)
        if self.beta <= 0:
            raise ValueError(f"[{name}] surrogate slope beta must be positive, got {beta}")
        if not self.theta2 <= float(self.theta1.min()):
            raise ValueError(f"[{name}] theta2 ({theta2}) must not exceed theta1 ({theta1})")
        self.surrogate = surrogate
        self.reset, self.reset_grad = reset, reset_grad
        for what, value in (("surrogate", surrogate), ("reset", reset), ("reset_grad", reset_grad)):
            _choice(value, what, name)

    @property
    def theta1(self) -> np.ndarray:
        """Spike threshold per neuron [n_out] (a Parameter's data when ``learn_threshold``)."""
        return self._theta1.data

    @theta1.setter
    def theta1(self, value) -> None:
        self._theta1.data = _per_neuron(value, self.n_out, "theta1", type(self).__name__)

    def config(self) -> _core.LayerConfig:
        """The C++ description of the layer, checked again: attributes may have changed since
        construction."""
        c = super().config()
        name = type(self).__name__
        c.capacity = _checks.integer(self.capacity, "capacity", name, 1)
        c.theta2 = _checks.real(self.theta2, "theta2", name)  # theta1 goes per neuron (_arrays)
        c.beta = _checks.real(self.beta, "beta", name)
        c.surrogate = _choice(self.surrogate, "surrogate", name)
        c.reset = _choice(self.reset, "reset", name)
        c.reset_grad = _choice(self.reset_grad, "reset_grad", name)
        return c


class RecurrentLIF(LIF):
    """LIF layer with lateral weights W_rec [n_out, n_out] fed by its own spikes of step t-1.

    n_in, n_out, capacity and the keyword options are those of ``LIF``; ``weight_rec`` is
    initialised like ``weight``, from the same ``seed``."""

    kind = "recurrent_lif"

    def __init__(self, n_in: int, n_out: int, capacity: int | None = None, **kwargs):
        super().__init__(n_in, n_out, capacity, **kwargs)
        _check_weight_memory(self.n_out, self.n_out, type(self).__name__)
        self.weight_rec = Parameter(paper_init(self.n_out, self.n_out, self._rng))


class CubaLIF(LIF):
    """Current-based LIF layer (a CUBA neuron, as snnTorch's ``Synaptic``, Norse's ``LIF`` and
    NIR's ``CubaLIF``): the input current passes a synapse with its own decay before the membrane,

        Isyn[t] = alpha_syn Isyn[t-1] + I[t],   V[t] = alpha V[t-1] (1 - r[t]) + gain (1 - alpha) Isyn[t]

    (the subtract reset as for ``LIF``), with spikes, candidates, surrogate and resets as ``LIF``'s.
    alpha_syn = 0 is the LIF.

    - alpha_syn: synaptic decay, a scalar or one per neuron, in [0, 1] (default 0.9).
    - learn_alpha_syn: make alpha_syn a Parameter (``layers.{i}.alpha_syn``, shape [n_out]) that
      backward gives gradients (clamped into [0, 1] by forward, as alpha).
    - gain: input current scale (default 1.0: the synapse sums about 1 / (1 - alpha_syn) = 10
      steps of input, so the drive matches the LIF's default gain of 10).
    - n_in, n_out, capacity and every other option: as for ``LIF``.
    """

    neuron = "cuba"

    def __init__(self, n_in: int, n_out: int, capacity: int | None = None, *, alpha_syn=0.9,
                 learn_alpha_syn: bool = False, gain: float = 1.0, **kwargs):
        super().__init__(n_in, n_out, capacity, gain=gain, **kwargs)
        self.learn_alpha_syn = bool(learn_alpha_syn)
        self._alpha_syn = Parameter(_decay_vector(alpha_syn, self.n_out, type(self).__name__,
                                                  "alpha_syn"))

    @property
    def alpha_syn(self) -> np.ndarray:
        """Synaptic decay per neuron [n_out] (a Parameter's data when ``learn_alpha_syn``)."""
        return self._alpha_syn.data

    @alpha_syn.setter
    def alpha_syn(self, value) -> None:
        self._alpha_syn.data = _decay_vector(value, self.n_out, type(self).__name__, "alpha_syn")


class AdaptiveLIF(LIF):
    """Adaptive LIF layer, with one of two adaptations (r[t] = H(V[t-1] - threshold of t-1), or
    the emitted spike with reset="spike"; S[t-1] the emitted spikes):

    - ``adaptation="threshold"``: the ALIF of LSNNs (Bellec et al. 2018). Each spike raises the
      neuron's threshold, which decays back::

          a[t] = rho a[t-1] + (1 - rho) S[t-1],   theta[t] = theta1 + b a[t]
          V[t] = alpha V[t-1] (1 - r[t]) + gain (1 - alpha) I[t]

      Spikes V > theta[t], gradient candidates theta[t] - (theta1 - theta2) < V <= theta[t] (the
      candidate window moves with the threshold).
    - ``adaptation="current"``: the adLIF (Bittar & Garner 2022). An adaptation current, driven by
      the membrane and by spikes, is taken off the input::

          w[t] = rho w[t-1] + (1 - rho) (a V[t-1] + b S[t-1])
          V[t] = alpha V[t-1] (1 - r[t]) + (1 - alpha) (gain I[t] - w[t])

      Spikes V > theta1, candidates theta2 < V <= theta1.

    Only listed entries carry surrogate gradients; the adaptation carries its own adjoint per
    neuron, and a spike's gradient includes what it does to the next step's adaptation.

    - adaptation: "threshold" (default) or "current".
    - rho: adaptation decay per step, a scalar or one per neuron, in [0, 1] (default 0.98, a time
      constant of about 50 steps).
    - b: adaptation per spike, a scalar or one per neuron (default 1.8, as Bellec et al.).
    - a: the current adaptation's coupling to the membrane, a scalar or one per neuron (default
      0.5; only with adaptation="current").
    - learn_adaptation: make rho, b (and a) Parameters (``layers.{i}.rho``, ``layers.{i}.b``,
      ``layers.{i}.a``, shape [n_out]) that backward gives gradients (rho clamped into [0, 1] by
      forward, as alpha).
    - reset: "state" or "spike" (to zero); the subtract reset is refused.
    - n_in, n_out, capacity and every other option: as for ``LIF``.
    """

    _NEURONS = {"threshold": "alif", "current": "adlif"}

    def __init__(self, n_in: int, n_out: int, capacity: int | None = None, *,
                 adaptation: str = "threshold", rho=0.98, b=1.8, a=None,
                 learn_adaptation: bool = False, **kwargs):
        name = type(self).__name__
        if adaptation not in self._NEURONS:
            raise ValueError(f"[{name}] adaptation must be 'threshold' or 'current', got {adaptation!r}")
        if kwargs.get("reset") == "subtract":
            raise ValueError(f"[{name}] the adaptive LIF resets to zero: reset must be 'state' or "
                             "'spike', not 'subtract'")
        if a is not None and adaptation != "current":
            raise ValueError(f"[{name}] a (the membrane coupling) is for adaptation='current' only")
        super().__init__(n_in, n_out, capacity, **kwargs)
        self.adaptation = adaptation
        self.learn_adaptation = bool(learn_adaptation)
        self._rho = Parameter(_decay_vector(rho, self.n_out, name, "rho"))
        self._b = Parameter(_per_neuron(b, self.n_out, "b", name))
        if adaptation == "current":
            self._a = Parameter(_per_neuron(0.5 if a is None else a, self.n_out, "a", name))

    @property
    def neuron(self) -> str:
        """The C++ neuron model of ``adaptation``, which is fixed at construction (the layer's
        parameters depend on it): checked again at every forward."""
        name = type(self).__name__
        if self.adaptation not in self._NEURONS:
            raise ValueError(f"[{name}] adaptation must be 'threshold' or 'current', got "
                             f"{self.adaptation!r}")
        if hasattr(self, "_a") != (self.adaptation == "current"):
            raise ValueError(f"[{name}] adaptation is fixed at construction: this layer was made with "
                             f"adaptation={'current' if hasattr(self, '_a') else 'threshold'!r}")
        return self._NEURONS[self.adaptation]

    def config(self) -> _core.LayerConfig:
        """The C++ description, checked again (the adaptive LIF resets to zero)."""
        if self.reset == "subtract":
            raise ValueError(f"[{type(self).__name__}] the adaptive LIF resets to zero: reset must be "
                             "'state' or 'spike', not 'subtract'")
        return super().config()

    @property
    def rho(self) -> np.ndarray:
        """Adaptation decay per neuron [n_out] (a Parameter's data when ``learn_adaptation``)."""
        return self._rho.data

    @rho.setter
    def rho(self, value) -> None:
        self._rho.data = _decay_vector(value, self.n_out, type(self).__name__, "rho")

    @property
    def b(self) -> np.ndarray:
        """Adaptation strength per neuron [n_out] (a Parameter's data when ``learn_adaptation``)."""
        return self._b.data

    @b.setter
    def b(self, value) -> None:
        self._b.data = _per_neuron(value, self.n_out, "b", type(self).__name__)

    @property
    def a(self) -> np.ndarray:
        """The current adaptation's membrane coupling per neuron [n_out] (adaptation="current")."""
        if not hasattr(self, "_a"):
            raise AttributeError(f"[{type(self).__name__}] a exists only with adaptation='current'")
        return self._a.data

    @a.setter
    def a(self, value) -> None:
        if not hasattr(self, "_a"):
            raise AttributeError(f"[{type(self).__name__}] a exists only with adaptation='current'")
        self._a.data = _per_neuron(value, self.n_out, "a", type(self).__name__)


class RecurrentAdaptiveLIF(RecurrentLIF, AdaptiveLIF):
    """Adaptive LIF layer with lateral weights W_rec [n_out, n_out] fed by its own spikes of step
    t-1: the recurrent LSNN layer. n_in, n_out, capacity and the keyword options are those of
    ``AdaptiveLIF``; ``weight_rec`` is initialised as ``RecurrentLIF``'s."""


class RecurrentCubaLIF(RecurrentLIF, CubaLIF):
    """Current-based LIF layer with lateral weights W_rec [n_out, n_out] fed by its own spikes of
    step t-1 (into the synaptic current). n_in, n_out, capacity and the keyword options are those
    of ``CubaLIF``; ``weight_rec`` is initialised as ``RecurrentLIF``'s."""


class Readout(_Layer):
    """Non-spiking leaky integrator: V[t] = alpha V[t-1] + gain (1 - alpha) I[t], output V.

    n_in, n_out: input width and number of outputs (classes). alpha, gain, bias, seed and
    learn_alpha are as for ``LIF``."""

    kind = "readout"

    def __init__(self, n_in: int, n_out: int, *, alpha=0.95, gain: float = 10.0, bias: bool = False,
                 seed: int | None = None, learn_alpha: bool = False):
        super().__init__(n_in, n_out, alpha=alpha, gain=gain, bias=bias, seed=seed,
                         learn_alpha=learn_alpha)


#: neuron-state bytes per chunk of an inference forward (Sequential.forward(grad=False))
_INFERENCE_CHUNK_BYTES = 16 << 20


class State:
    """The state of a ``Sequential`` after some steps of a sequence, from which its next forward
    continues (``net.forward(x, state=s, return_state=True)``): streaming, or truncated BPTT over
    a long sequence cut into chunks. Forwards over consecutive chunks give the same spikes and
    readout, bit for bit, as one forward over the whole sequence.

    - ``steps``: how many steps of the sequence have run (the random overflow policy continues
      from it).
    - ``states``: per layer, float32 [S, B, N]: the neuron model's state variables at the last step
      (V first; CUBA: V, Isyn; ALIF: u = V - b a, a; adLIF: V, w).
    - ``spikes``: per layer, the SpikeTensor [1, B, K] of the spikes emitted at the last step (what
      recurrence, the spike reset, adaptation and delayed coupling read next), None for a readout.

    Backward treats the state a forward started from as a constant: gradients stop at the chunk's
    first step (truncated BPTT), while the terms in which it meets a parameter (W_rec times its
    spikes, alpha times its membrane) are kept. Every device continues sequences (the ipu
    (Poplar) one is compiled only against a mock of the SDK and has never run)."""

    def __init__(self, steps: int, states: list, spikes: list):
        self.steps, self.states, self.spikes = int(steps), list(states), list(spikes)

    @property
    def membranes(self) -> list[np.ndarray]:
        """Per layer, the state variable that leads (V, or the ALIF's u = V - b a) [B, N]."""
        return [s[0] for s in self.states]

    def _core_form(self):
        if len(self.states) != len(self.spikes):
            raise ValueError(f"[Sequential.forward] the state has {len(self.states)} state arrays "
                             f"but {len(self.spikes)} spike entries")
        for i, (st, sp) in enumerate(zip(self.states, self.spikes)):
            if not isinstance(st, np.ndarray) or not (sp is None or isinstance(sp, SpikeTensor)):
                raise TypeError(f"[Sequential.forward] state layer {i}: states must be a numpy "
                                "array and spikes a SpikeTensor (or None for a readout)")
        return (self.steps, [(np.ascontiguousarray(st), sp)
                             for st, sp in zip(self.states, self.spikes)])

    @classmethod
    def _from_core(cls, raw) -> "State":
        steps, layers = raw
        states = [st for st, _ in layers]
        spikes = [None if sp is None else
                  SpikeTensor(sp[0], sp[1], sp[2], n_neurons=sp[3], validate=False)
                  for _, sp in layers]
        return cls(steps, states, spikes)

    def __repr__(self) -> str:
        return f"State(steps={self.steps}, layers={len(self.states)})"


class Sequential:
    """A stack of spiking layers (LIF, CubaLIF, AdaptiveLIF and their recurrent forms, mixed
    freely), optionally ending in a Readout.

    - layers: the layers, input first; each one's n_in must be the previous one's n_out.
    - coupling: "same_step" (layer l reads layer l-1 at step t) or "delayed" (at t-1).
    - mode: "sparse" (the method) or "dense" (dense-matrix baseline, no capacity limit).
    - overflow: which spikes, and then which gradient candidates, a full list keeps: "random" (the
      default: a subset drawn from ``seed``, the same on every backend) or "lowest" (the lowest ids,
      the paper's choice: it starves high ids of spikes and gradients, so keep it for reproducing
      the paper). Drops are counted in ``dropped`` and ``dropped_candidates``.
    - seed: an integer in [0, 2^64), the stream of the random overflow policy.
    - device: "cpu", "cuda" (the CUDA backend; input spikes may then also be CUDA tensors, see
      SpikeTensor) or "ipu-model" (the IPU tile plan, interpreted on the host); see
      ``available_devices()``.
    - recompute_segment: BPTT memory (checkpointing in time, sparse mode on "cpu" and "cuda";
      "ipu-model" stores every membrane). 0 (default) stores every membrane [T, B, N] for
      backward. S > 0 keeps only the spike lists, the membrane at their entries (unless
      reset_grad="mask" with reset="state") and one membrane every S steps: memory falls from O(T N) to O(T K + (S + T / S) N)
      per layer. A backward with no learnable neuron parameter reads the entries' membranes and
      recomputes nothing, unless reset_grad="mask" with reset="state" (whose carry reads every
      membrane); otherwise backward recomputes the membranes S steps at a time, for about one extra
      forward. "auto" picks
      S = ceil(sqrt(T / 2)), which minimises the membrane memory. Gradients are bitwise the same.
      The CPU rounds S up to a multiple of max(1, 256 // B) steps (its weight-gradient chunk), so
      with small batches and short sequences it may end up storing everything. "cuda" rounds as the
      CPU does.
    """

    def __init__(self, *layers, coupling: str = "same_step", mode: str = "sparse",
                 overflow: str = "random", seed: int = 0, device: str = "cpu",
                 recompute_segment: int | str = 0):
        op = "Sequential"
        for what, value in (("coupling", coupling), ("mode", mode), ("overflow", overflow),
                            ("device", device)):
            _choice(value, what, op)
        _core.require_device(device)  # ValueError saying why this build or machine cannot run it
        seed = _checks.seed(seed, op)
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
        if recompute_segment != "auto":
            if isinstance(recompute_segment, str):
                raise ValueError(f"[Sequential] recompute_segment must be 0, a positive number of steps "
                                 f"or 'auto', got {recompute_segment!r}")
            recompute_segment = _checks.integer(recompute_segment, "recompute_segment", op)
        if recompute_segment != 0 and mode != "sparse":
            raise ValueError("[Sequential] recompute_segment needs mode='sparse'; the dense baseline "
                             "stores every membrane")
        self.recompute_segment = recompute_segment
        self._context = None
        self.spikes: list[SpikeTensor] = []
        self.dropped: list[int] = []
        self.dropped_candidates: list[int] = []
        self.membranes: list[np.ndarray] = []

    def forward(self, x: SpikeTensor, state: State | None = None, return_state: bool = False, *,
                grad: bool = True, record: str | None = None):
        """Runs all T steps over the input spikes ``x`` [T, B, K_in] (a SpikeTensor of the first
        layer's n_in neurons). Returns the readout membrane [T, B, C] (float32) if the stack ends in
        a Readout, else the last layer's SpikeTensor. Per-layer outputs stay in ``self.spikes``,
        the spikes each layer dropped by capacity in ``self.dropped`` and the gradient candidates
        in ``self.dropped_candidates``. The outputs are read-only views of the forward context,
        which backward reads.

        ``state`` (a ``State``; None: from rest) continues a sequence from where an earlier forward
        left it; with ``return_state`` the call returns ``(output, state)``, the state after its
        last step. See ``State``.

        ``grad=False`` is inference: no BPTT context is kept (backward then needs a new forward),
        and the sequence runs in chunks of steps whose neuron states take about 16 MB, each
        continuing from the last one's state, so memory stays O(B N) plus the output lists,
        however long the sequence. The results are bitwise those of ``grad=True``.

        ``record="membrane"`` keeps every layer's membrane V [T, B, N] (float32; for the ALIF
        u + b a) in ``self.membranes``, for plotting; it needs the states of every step, so not
        with ``recompute_segment`` (which drops them). Without it ``self.membranes`` is empty."""
        if record not in (None, "membrane"):
            raise ValueError(f"[Sequential.forward] record must be None or 'membrane', got {record!r:.40}")
        if not isinstance(grad, bool):
            raise TypeError(f"[Sequential.forward] grad must be True or False, got {grad!r:.40}")
        if not grad:
            return self._infer(x, state, return_state, record is not None)
        ctx = self._forward(x, state)
        membranes = self._membranes(ctx) if record else []
        final = State._from_core(ctx.final_state()) if return_state else None
        out = self._adopt(ctx)
        self.membranes = membranes
        return (out, final) if return_state else out

    def _membranes(self, ctx) -> list[np.ndarray]:
        """Every layer's V [T, B, N] from a context that kept the states of every step."""
        out = []
        for i, layer in enumerate(self.layers):
            states = ctx.stored_states(i)
            if states is None:
                raise ValueError("[Sequential.forward] record='membrane' needs the states of every "
                                 "step, which only the cpu and ipu-model devices keep, and the cpu "
                                 f"only with recompute_segment=0 (this net: device {self.device!r}, "
                                 f"recompute_segment {self.recompute_segment!r})")
            v = states[0]
            if isinstance(layer, AdaptiveLIF) and layer.adaptation == "threshold":
                v = v + layer.b.astype(np.float32) * states[1]  # the ALIF stores u = V - b a
            out.append(np.ascontiguousarray(v))
        return out

    def _infer(self, x: SpikeTensor, state: State | None, return_state: bool, record: bool):
        """forward(grad=False): chunk by chunk, each from the last one's state, keeping copies of
        the outputs only."""
        if not isinstance(x, SpikeTensor):
            raise TypeError(f"[Sequential.forward] input must be a SpikeTensor, got {type(x).__name__}")
        T, B, _ = x.shape
        per_step = 4 * B * sum(layer.n_out * layer.config().states for layer in self.layers)
        steps = max(1, min(T, _INFERENCE_CHUNK_BYTES // per_step))
        outs, lists, membranes = [], [], []
        for t0 in range(0, T, steps):
            ctx = self._forward(x[t0:t0 + steps], state)
            if t0 + steps < T or return_state:
                state = State._from_core(ctx.final_state())
            if record:
                membranes.append(self._membranes(ctx))
            spikes = _context_spikes(ctx)
            lists.append([(s.ids.copy(), s.n_spk.copy(), s.n_tot.copy(), s.dropped,
                           s.dropped_candidates) for s in spikes])
            outs.append(None if ctx.readout is None else ctx.readout.copy())
            del ctx, spikes  # the chunk's context goes: nothing of it is kept
        self._context = None
        self.spikes = []
        spiking = [layer for layer in self.layers if not isinstance(layer, Readout)]
        for layer, per_chunk in zip(spiking, zip(*lists)):
            n = layer.n_out
            self.spikes.append(SpikeTensor(
                np.concatenate([c[0] for c in per_chunk]), np.concatenate([c[1] for c in per_chunk]),
                np.concatenate([c[2] for c in per_chunk]), n_neurons=n,
                dropped=sum(c[3] for c in per_chunk), dropped_candidates=sum(c[4] for c in per_chunk),
                validate=False))
        self.dropped = [s.dropped for s in self.spikes]
        self.dropped_candidates = [s.dropped_candidates for s in self.spikes]
        self.membranes = ([np.concatenate(layer) for layer in zip(*membranes)] if record else [])
        out = self.spikes[-1] if outs[0] is None else np.concatenate(outs)
        return (out, state) if return_state else out

    def _forward(self, x: SpikeTensor, state: State | None = None):
        """Runs the forward and returns its context, changing nothing on the network."""
        if not isinstance(x, SpikeTensor):
            raise TypeError(f"[Sequential.forward] input must be a SpikeTensor, got {type(x).__name__}")
        if state is not None and not isinstance(state, State):
            raise TypeError(f"[Sequential.forward] state must be a saltatory State (as forward "
                            f"returns with return_state=True), got {type(state).__name__}")
        if state is not None and len(state.states) != len(self.layers):
            raise ValueError(f"[Sequential.forward] the state has {len(state.states)} layers, the "
                             f"network {len(self.layers)}")
        for i, layer in enumerate(self.layers if state is not None else []):
            shape = getattr(state.states[i], "shape", None)
            expected = (layer.config().states, x.shape[1], layer.n_out)
            if shape != expected:
                raise ValueError(f"[Sequential.forward] the state's layer {i} has states of shape "
                                 f"{shape}, expected {expected} (variables, batch, neurons)")
        return _core.lif_stack_forward(
            [layer.config() for layer in self.layers], [layer._arrays() for layer in self.layers], x,
            coupling=self.coupling, mode=self.mode, overflow=self.overflow, seed=self.seed,
            device=self.device, recompute_segment=self.segment_for(x.shape[0]),
            state=None if state is None else state._core_form())

    def _adopt(self, ctx):
        """Makes ``ctx`` the network's last forward; returns that forward's output."""
        self._context = ctx
        self.spikes = _context_spikes(ctx)
        self.dropped = list(ctx.dropped)
        self.dropped_candidates = list(ctx.dropped_candidates)
        return _output(ctx, self.spikes)

    def __getstate__(self) -> dict:
        """Pickling and deepcopy keep the network and its last outputs, not the forward context
        (process memory that backward consumes): a copy needs a forward before its backward."""
        state = self.__dict__.copy()
        state["_context"] = None
        return state

    __call__ = forward

    def segment_for(self, steps: int) -> int:
        """The recompute segment a forward over ``steps`` steps asks for (0: store every membrane)."""
        if self.recompute_segment == "auto":
            return math.ceil(math.sqrt(steps / 2))
        return _checks.integer(self.recompute_segment, "recompute_segment", "Sequential")

    @property
    def ipu_report(self) -> dict | None:
        """On ``device="ipu-model"``: what the last forward (and backward) measured while executing
        the tile plan (tiles, bytes per tile, exchange bytes, compute-set cycle estimates)."""
        return None if self._context is None else self._context.ipu_report

    def backward(self, grad_output=None, *, grad_entries=None, grad_neurons=None,
                 input_grad: bool = False):
        """BPTT through the last forward; gradients are added into each parameter's ``.grad``.

        The gradient of the loss comes in one of three explicit forms, so that none can be taken
        for another (a per-neuron array has the shape of a per-entry one when K == N):

        - ``grad_output``: dL/d(readout membrane) [T, B, C], for a stack that ends in a Readout;
        - ``grad_entries``: dL/d(list entries) [T, B, K] of a spiking layer, entry k of list
          (t, b) being neuron ``ids[t, b, k]`` (what ``saltatory.losses`` return);
        - ``grad_neurons``: dL/dS per neuron [T, B, N] of a spiking layer (a dense gradient);
          Saltatory reads it at the listed entries (spikes and candidates), since the method
          carries no gradient through other neurons.

        ``grad_entries`` and ``grad_neurons`` are each one float32 array, for the last layer, or a
        list with one array (or None) per layer, e.g. for activity regularisers on hidden layers.
        Each forward allows one backward (also across threads). Returns dL/d(input entries)
        [T, B, K_in] if ``input_grad``."""
        op = "Sequential.backward"
        if self._context is None or self._context.backward_done:
            raise ValueError(f"[{op}] call forward first (each forward allows one backward)")
        n = len(self.layers)
        ends_in_readout = isinstance(self.layers[-1], Readout)
        if grad_output is not None and not ends_in_readout:
            raise ValueError(f"[{op}] the last layer spikes, so grad_output is ambiguous: pass "
                             "grad_entries= (per list entry [T, B, K], as the losses return) or "
                             "grad_neurons= (per neuron [T, B, N])")
        entries = self._per_layer(grad_entries, "grad_entries", op)
        neurons = self._per_layer(grad_neurons, "grad_neurons", op)
        listed = _context_spikes(self._context) if any(g is not None for g in neurons) else None
        grads_out = [None] * n
        for i, layer in enumerate(self.layers):
            if isinstance(layer, Readout):
                if entries[i] is not None or neurons[i] is not None:
                    raise ValueError(f"[{op}] layer {i} is a Readout: pass its gradient as grad_output")
                grads_out[i] = grad_output
            elif entries[i] is not None and neurons[i] is not None:
                raise ValueError(f"[{op}] layer {i} got both grad_entries and grad_neurons; give one")
            elif neurons[i] is not None:
                grads_out[i] = listed[i].gather(neurons[i])  # the context's lists, not self.spikes
            else:
                grads_out[i] = entries[i]
        grad_in = None
        if input_grad:
            grad_in = np.zeros(self._context.input_shape, np.float32)
        _core.lif_stack_backward(self._context, grads_out, [layer._grads() for layer in self.layers], grad_in)
        for layer in self.layers:
            layer._finish_grads()
        return grad_in

    def _per_layer(self, grads, name: str, op: str) -> list:
        """One gradient (or None) per layer from None, one array (the last layer's) or a list."""
        n = len(self.layers)
        if grads is None:
            return [None] * n
        if isinstance(grads, (list, tuple)):
            if len(grads) != n:
                raise ValueError(f"[{op}] {name} needs one entry (or None) per layer: {n}, got {len(grads)}")
            return list(grads)
        return [None] * (n - 1) + [grads]

    def named_parameters(self) -> list[tuple[str, Parameter]]:
        """(name, Parameter) of every learnable array, named ``layers.{i}.{weight, weight_rec,
        bias, alpha, theta1, alpha_syn, rho, b, a}``."""
        return [(f"layers.{i}.{name}", p) for i, layer in enumerate(self.layers)
                for name, p in layer.parameters().items()]

    def parameters(self) -> list[Parameter]:
        """Every learnable Parameter, in ``named_parameters`` order (what optimisers take)."""
        return [p for _, p in self.named_parameters()]

    def zero_grad(self) -> None:
        """Sets every parameter's ``.grad`` to zero (backward adds into it)."""
        for p in self.parameters():
            p.grad.fill(0.0)

    def state_dict(self) -> dict[str, np.ndarray]:
        """Copies of every parameter and of each layer's per-neuron model arrays, by name
        (``layers.{i}.alpha``, spiking layers' ``layers.{i}.theta1``, CUBA layers'
        ``layers.{i}.alpha_syn``, adaptive layers' ``layers.{i}.rho``, ``layers.{i}.b`` and, for
        current adaptation, ``layers.{i}.a``), learnable or not."""
        state = {name: p.data.copy() for name, p in self.named_parameters()}
        for i, layer in enumerate(self.layers):
            for name, array in layer._per_neuron_arrays().items():
                state[f"layers.{i}.{name}"] = array.data.copy()
        return state

    def load_state_dict(self, state: dict) -> None:
        """Loads the arrays of ``state`` (as ``state_dict`` returns) by name; every name must be
        present with the same shape, finite, and a fixed decay (alpha, alpha_syn, rho) in [0, 1], else
        ValueError and nothing changes."""
        expected = self.state_dict()
        missing = sorted(set(expected) - set(state))
        unexpected = sorted(set(state) - set(expected))
        if missing or unexpected:
            raise ValueError(f"[Sequential.load_state_dict] missing keys {missing}, unexpected keys {unexpected}")
        params = dict(self.named_parameters())
        for name, current in expected.items():
            value = np.asarray(state[name])
            if value.shape != current.shape:
                raise ValueError(f"[Sequential.load_state_dict] {name} has shape {value.shape}, expected {current.shape}")
            if not np.all(np.isfinite(value)):
                raise ValueError(f"[Sequential.load_state_dict] {name} contains NaN or Inf")
            fixed_decay = name.split(".")[-1] in _DECAYS and name not in params  # learnable: clamped
            if fixed_decay and not np.all((value >= 0) & (value <= 1)):
                raise ValueError(f"[Sequential.load_state_dict] {name} values must lie in [0, 1]")
        for name, value in state.items():
            if name in params:
                params[name].data[...] = value
            else:
                layer, what = self.layers[int(name.split(".")[1])], name.split(".")[2]
                setattr(layer, what, value)  # a fixed per-neuron array


def _context_spikes(ctx) -> list[SpikeTensor]:
    """Fresh SpikeTensors over the read-only lists of a forward context."""
    return [SpikeTensor(ids, n_spk, n_tot, n_neurons=n, dropped=d, dropped_candidates=dc, validate=False)
            for ids, n_spk, n_tot, n, d, dc in ctx.spikes]


def _output(ctx, spikes: list[SpikeTensor]):
    """A forward's output: the readout membrane, else the last layer's lists."""
    readout = ctx.readout
    return readout if readout is not None else spikes[-1]


class Theta2Schedule:
    """The paper's gradient-threshold schedule: every spiking layer of ``net`` has its theta2 start
    at ``start`` (so every neuron is a candidate) and move ``rate`` (in (0, 1]) of the way to its
    target after each ``step()``. ``targets``, one per spiking layer, default to the layers'
    theta2 when the schedule is made."""

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
            layer.theta2 = min(float(start), float(layer.theta1.min()))

    def step(self) -> None:
        """Moves every theta2 ``rate`` of the way to its target (call once per training step)."""
        for layer, target in zip(self.layers, self.targets):
            layer.theta2 += self.rate * (target - layer.theta2)
        self.steps += 1

    def state_dict(self) -> dict:
        """The schedule's state (theta2 per layer, targets, rate, steps taken), for checkpoints."""
        return {"theta2": [layer.theta2 for layer in self.layers], "targets": list(self.targets),
                "rate": self.rate, "steps": self.steps}

    def validate_state_dict(self, state) -> None:
        """Raises ValueError unless ``state`` fits this schedule: one theta2 and target per layer,
        all finite as float32, a rate in (0, 1] and a step count >= 0. (A theta2 above some
        neurons' theta1 is allowed: those neurons get no candidates.)"""
        op = "[Theta2Schedule.load_state_dict]"
        if not isinstance(state, dict):
            raise ValueError(f"{op} state must be a dict, got {type(state).__name__}")
        missing = {"theta2", "targets", "rate", "steps"} - set(state)
        if missing:
            raise ValueError(f"{op} missing keys {sorted(missing)}")
        theta2, targets, rate, steps = state["theta2"], state["targets"], state["rate"], state["steps"]
        n = len(self.layers)
        if not (isinstance(theta2, (list, tuple)) and isinstance(targets, (list, tuple))
                and len(theta2) == len(targets) == n):
            raise ValueError(f"{op} theta2 and targets must be lists of {n} numbers, one per layer")
        f32_max = float(np.finfo(np.float32).max)  # a Python float: exact against any int
        if not all(isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, bool)
                   and abs(x) <= f32_max for x in (*theta2, *targets, rate)):
            raise ValueError(f"{op} theta2, targets and rate must be finite float32 numbers")
        if not 0 < rate <= 1:
            raise ValueError(f"{op} rate must lie in (0, 1], got {rate}")
        if not (isinstance(steps, (int, np.integer)) and not isinstance(steps, bool) and steps >= 0):
            raise ValueError(f"{op} steps must be an integer >= 0, got {steps!r:.40}")

    def load_state_dict(self, state: dict) -> None:
        """Restores ``state``, a ``state_dict``; on ValueError (see ``validate_state_dict``) nothing
        changes."""
        self.validate_state_dict(state)
        for layer, theta2 in zip(self.layers, state["theta2"]):
            layer.theta2 = float(theta2)
        self.targets = [float(t) for t in state["targets"]]
        self.rate, self.steps = float(state["rate"]), int(state["steps"])
