"""Optimisers (C++ updates, in place on the parameters' float32 arrays).

SGD: v = momentum v + g + wd p; p -= lr v.   Adam: bias-corrected moments; AdamW decays p directly.
``state_dict``/``load_state_dict`` carry the moments and step count for checkpoints.
"""

from __future__ import annotations

import numpy as np

from . import _core
from .nn import Parameter


class _Optimizer:
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
        return self._impl.lr

    @lr.setter
    def lr(self, value: float) -> None:
        if not value > 0:
            raise ValueError(f"[{type(self).__name__}] lr must be positive, got {value}")
        self._impl.lr = float(value)

    @property
    def steps(self) -> int:
        return self._impl.steps

    def step(self) -> None:
        """Updates every parameter from its ``.grad``."""
        self._impl.step([(p.data, p.grad) for p in self.params])

    def state_dict(self) -> dict:
        """Learning rate, step count and state vectors (copies), for checkpoints."""
        return {"lr": self.lr, "steps": self.steps, "state": self._impl.state}

    def load_state_dict(self, state: dict) -> None:
        """Restores a ``state_dict``; the next step checks it against the parameters."""
        name = type(self).__name__
        missing = {"lr", "steps", "state"} - set(state)
        if missing:
            raise ValueError(f"[{name}.load_state_dict] missing keys {sorted(missing)}")
        self._impl.load_state(int(state["steps"]),
                              [np.ascontiguousarray(a, dtype=np.float32).ravel() for a in state["state"]])
        self.lr = float(state["lr"])

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad.fill(0.0)


class SGD(_Optimizer):
    def __init__(self, params, lr: float, momentum: float = 0.0, weight_decay: float = 0.0):
        super().__init__(params, _core.Sgd(lr, momentum, weight_decay))


class Adam(_Optimizer):
    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0):
        super().__init__(params, _core.Adam(lr, betas[0], betas[1], eps, weight_decay, False))


class AdamW(_Optimizer):
    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2):
        super().__init__(params, _core.Adam(lr, betas[0], betas[1], eps, weight_decay, True))
