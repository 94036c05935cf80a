"""Optimisers (C++ updates, in place on the parameters' float32 arrays).

SGD: v = momentum v + g + wd p; p -= lr v.   Adam: bias-corrected moments; AdamW decays p directly.
``state_dict``/``load_state_dict`` carry the moments and step count for checkpoints.
"""

from __future__ import annotations

import reprlib

import numpy as np

from . import _core
from .nn import Parameter

#: the largest step count a state may hold: beyond any run, and the C++ int64 count can still grow
MAX_STEPS = 2**62


def finite_real(value) -> bool:
    """Whether ``value`` is a real number (not a bool) that is finite as a float32; never raises."""
    return (isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
            and abs(value) <= float(np.finfo(np.float32).max))  # a Python float: exact against any int


def finite_array(a: np.ndarray) -> bool:
    """Whether every value of the real array ``a`` is finite as a float32."""
    return bool(np.all(np.abs(a) <= np.finfo(np.float32).max))  # a float32 bound: float16 inf fails too


class _Optimizer:
    slots = 1  # state vectors per parameter, after the first step

    def __init__(self, params, impl):
        self.params: list[Parameter] = list(params)
        if not self.params:
            raise ValueError(f"[{type(self).__name__}] got an empty parameter list")
        for p in self.params:
            if not isinstance(p, Parameter):
                raise TypeError(f"[{type(self).__name__}] expected saltatory Parameters, got {type(p).__name__}")
        self._impl = impl

    @property
    def lr(self) -> float:
        """The learning rate (settable, e.g. by a schedule; must stay positive)."""
        return self._impl.lr

    @lr.setter
    def lr(self, value: float) -> None:
        if not value > 0:
            raise ValueError(f"[{type(self).__name__}] lr must be positive, got {value}")
        self._impl.lr = float(value)

    @property
    def steps(self) -> int:
        """How many steps have been taken (Adam's bias correction uses it)."""
        return self._impl.steps

    def step(self) -> None:
        """Updates every parameter from its ``.grad``."""
        self._impl.step([(p.data, p.grad) for p in self.params])

    def state_dict(self) -> dict:
        """Learning rate, step count and state vectors (copies), for checkpoints."""
        return {"lr": self.lr, "steps": self.steps, "state": self._impl.state}

    def validate_state_dict(self, state) -> None:
        """Raises ValueError unless ``state`` fits this optimiser: a positive lr, a step count in
        [0, MAX_STEPS], and state vectors only after a step, then ``slots`` per parameter of its
        size, real and finite as float32."""
        op = f"[{type(self).__name__}.load_state_dict]"
        if not isinstance(state, dict):
            raise ValueError(f"{op} state must be a dict, got {type(state).__name__}")
        missing = {"lr", "steps", "state"} - set(state)
        if missing:
            raise ValueError(f"{op} missing keys {sorted(missing)}")
        lr, steps, vectors = state["lr"], state["steps"], state["state"]
        if not (finite_real(lr) and np.float32(lr) > 0):
            raise ValueError(f"{op} lr must be a positive, finite float32, got {reprlib.repr(lr)}")
        if not (isinstance(steps, (int, np.integer)) and not isinstance(steps, bool)
                and 0 <= steps <= MAX_STEPS):
            raise ValueError(f"{op} steps must be an integer in [0, 2**62], got {reprlib.repr(steps)}")
        sizes = [p.data.size for p in self.params for _ in range(self.slots)] if steps else []
        if not isinstance(vectors, (list, tuple)) or len(vectors) != len(sizes):
            raise ValueError(f"{op} after {steps} steps the state must be a list of {len(sizes)} vectors, "
                             f"got {reprlib.repr(vectors)}")
        for i, (v, n) in enumerate(zip(vectors, sizes)):
            if not (isinstance(v, np.ndarray) and v.dtype.kind in "fiu" and v.shape == (n,)):
                got = f"{v.dtype} {v.shape}" if isinstance(v, np.ndarray) else type(v).__name__
                raise ValueError(f"{op} state vector {i} must be a real array of shape ({n},), got {got}")
            if not finite_array(v):
                raise ValueError(f"{op} state vector {i} is not finite (as float32)")

    def load_state_dict(self, state: dict) -> None:
        """Restores ``state``, a ``state_dict``; on ValueError (see ``validate_state_dict``) nothing
        changes."""
        self.validate_state_dict(state)
        self._impl.load_state(int(state["steps"]),
                              [np.ascontiguousarray(a, dtype=np.float32) for a in state["state"]])
        self.lr = float(state["lr"])

    def zero_grad(self) -> None:
        """Sets the ``.grad`` of every parameter to zero."""
        for p in self.params:
            p.grad.fill(0.0)


class SGD(_Optimizer):
    """Stochastic gradient descent with momentum: v = momentum v + g + weight_decay p, then
    p -= lr v, for each Parameter of ``params`` (e.g. ``net.parameters()``)."""

    def __init__(self, params, lr: float, momentum: float = 0.0, weight_decay: float = 0.0):
        super().__init__(params, _core.Sgd(lr, momentum, weight_decay))


class Adam(_Optimizer):
    """Adam (Kingma & Ba) on the Parameters ``params``: learning rate ``lr``, moment decays
    ``betas`` = (beta1, beta2), ``eps`` added to the root of the second moment, and L2
    ``weight_decay`` added to the gradient (weight_decay p), as torch.optim.Adam."""

    slots = 2  # first and second moments

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0):
        super().__init__(params, _core.Adam(lr, betas[0], betas[1], eps, weight_decay, False))


class AdamW(_Optimizer):
    """Adam with decoupled weight decay (Loshchilov & Hutter), as torch.optim.AdamW: ``params``,
    ``lr``, ``betas`` and ``eps`` as for Adam; each step also shrinks p by lr weight_decay p."""

    slots = 2

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2):
        super().__init__(params, _core.Adam(lr, betas[0], betas[1], eps, weight_decay, True))
