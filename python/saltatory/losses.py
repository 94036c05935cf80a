"""Losses with their gradients, averaged over the batch.

spike_count_cross_entropy: c[b, j] = spikes of neuron j over T; L = mean_b CE(softmax(c[b]), y_b);
    the gradient goes to every listed entry (spikes and candidates), [T, B, K].
membrane_cross_entropy: L = mean_b sum_t CE(softmax(V[t, b]), y_b); gradient [T, B, C].
"""

from __future__ import annotations

import numpy as np

from . import _core
from .spikes import SpikeTensor


def _labels(labels, op: str) -> np.ndarray:
    y = np.asarray(labels)
    if not np.issubdtype(y.dtype, np.integer):
        raise TypeError(f"[{op}] labels must be integers, got dtype {y.dtype}")
    if y.size and (y.min() < 0 or y.max() > np.iinfo(np.int32).max):
        raise ValueError(f"[{op}] labels must be non-negative class indices, got range [{y.min()}, {y.max()}]")
    return np.ascontiguousarray(y, dtype=np.int32)


def spike_count_cross_entropy(spikes: SpikeTensor, labels) -> tuple[float, np.ndarray]:
    """Cross-entropy of the softmax of per-neuron spike counts of ``spikes`` (a SpikeTensor
    [T, B, K] of C neurons) against ``labels`` (int [B], in [0, C)), averaged over the batch.
    Returns (loss, dL/d entries [T, B, K]), the gradient for
    ``Sequential.backward(grad_entries=...)``."""
    if not isinstance(spikes, SpikeTensor):
        raise TypeError(f"[spike_count_cross_entropy] expected a SpikeTensor, got {type(spikes).__name__}")
    return _core.spike_count_cross_entropy(spikes, _labels(labels, "spike_count_cross_entropy"))


def membrane_cross_entropy(membrane, labels) -> tuple[float, np.ndarray]:
    """Cross-entropy of the softmax of the readout ``membrane`` (float32 [T, B, C]) against
    ``labels`` (int [B], in [0, C)) at every step, summed over time and averaged over the batch.
    Returns (loss, dL/dV [T, B, C]), the gradient for ``Sequential.backward(grad_output=...)``."""
    v = np.asarray(membrane)
    if v.dtype != np.float32:
        raise TypeError(f"[membrane_cross_entropy] membrane must be float32, got dtype {v.dtype}")
    return _core.membrane_cross_entropy(np.ascontiguousarray(v), _labels(labels, "membrane_cross_entropy"))


def predict(output) -> np.ndarray:
    """Class predictions [B] from a forward's ``output``: the argmax of spike counts (a
    SpikeTensor) or of time-summed membranes ([T, B, C])."""
    if isinstance(output, SpikeTensor):
        return output.counts().argmax(axis=1)
    return np.asarray(output).sum(axis=0).argmax(axis=1)
