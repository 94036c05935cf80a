"""Saltatory: sparse BPTT for spiking neural networks.

Spikes are fixed-capacity lists of neuron ids; a second, lower threshold marks the neurons that
carry surrogate gradients; forward and backward are gathers and scatters whose cost follows
activity (Finkbeiner et al., AAAI 2024).
"""

from . import _core
from . import data, losses, optim
from .checkpoint import CheckpointError, load_checkpoint, read_checkpoint, save_checkpoint
from .nn import (LIF, AdaptiveLIF, CubaLIF, Parameter, Readout, RecurrentAdaptiveLIF,
                 RecurrentCubaLIF, RecurrentLIF, Sequential, State, Theta2Schedule)
from .spikes import SpikeTensor

__version__ = _core.build_info()["version"]


def available_devices() -> list[str]:
    """Devices this build can run on this machine ("cpu" always)."""
    return list(_core.available_devices())


def build_info() -> dict:
    """Version, compiler, enabled backends and default CPU thread count."""
    return dict(_core.build_info())


def memory_limit() -> int:
    """Bytes one op may need (default: SALTATORY_MEMORY_LIMIT, else physical memory). Requests
    above it fail with ValueError before allocating anything."""
    return int(_core.memory_limit())


def set_memory_limit(n_bytes: int) -> None:
    """Sets the per-op memory limit to ``n_bytes``; 0 restores the default."""
    _core.set_memory_limit(n_bytes)


def set_num_threads(n: int) -> None:
    """Caps CPU worker threads at ``n`` (0 restores the default). Results do not depend on it."""
    _core.set_num_threads(n)


__all__ = ["SpikeTensor", "LIF", "RecurrentLIF", "CubaLIF", "RecurrentCubaLIF", "AdaptiveLIF",
           "RecurrentAdaptiveLIF", "Readout",
           "Sequential", "State", "Parameter",
           "Theta2Schedule", "losses", "optim", "data", "save_checkpoint", "load_checkpoint",
           "read_checkpoint", "CheckpointError", "available_devices", "build_info",
           "set_num_threads", "memory_limit", "set_memory_limit"]
