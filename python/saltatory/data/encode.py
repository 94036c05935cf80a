"""Image-to-spike encoders producing dense time-major spikes float32 [T, S, n_pixels].

Intensities are x = pixel / 255 for uint8 images, or the pixel itself for float images
(which must lie in [0, 1]).  Trailing image dimensions are flattened.

Latency (time-to-first-spike) code, threshold theta, at most one spike per pixel; only
pixels with x > theta spike, in time bin floor(t) if floor(t) < T:

    log    (linear=False): t = tau * ln(x / (x - theta))        tau defaults to 20 steps
    linear (linear=True):  t = tau * (1 - x) / (1 - theta)      tau defaults to T - 1

The log form is the time a leaky integrator with time constant tau, driven by constant
current x, takes to reach threshold theta (as in Zenke's SpyTorch Fashion-MNIST tutorial);
the linear form maps x in (theta, 1] linearly onto [0, tau).  Both are non-increasing in x:
brighter pixels spike earlier.

Rate code: every step, pixel p spikes independently with probability x_p * max_rate.
"""

from __future__ import annotations

import math

import numpy as np

_DEFAULT_LOG_TAU = 20.0


def _intensities(images: np.ndarray, fn: str) -> np.ndarray:
    """Validate ``images`` [S, ...] and return float64 intensities in [0, 1], shape [S, P]."""
    images = np.asarray(images)
    if images.ndim < 2:
        raise ValueError(f"{fn}: images must have shape [S, ...] with ndim >= 2, got shape {images.shape}")
    if images.dtype == np.uint8:
        x = images.astype(np.float64) / 255.0
    elif np.issubdtype(images.dtype, np.floating):
        x = images.astype(np.float64)
        if not np.all(np.isfinite(x)):
            raise ValueError(f"{fn}: float images contain NaN or inf")
        if x.size and (x.min() < 0.0 or x.max() > 1.0):
            raise ValueError(
                f"{fn}: float images must lie in [0, 1], got range [{x.min()}, {x.max()}]"
            )
    else:
        raise ValueError(f"{fn}: images must be uint8 (0..255) or float (0..1), got dtype {images.dtype}")
    return x.reshape(x.shape[0], -1)


def _check_n_steps(n_steps: int, fn: str) -> None:
    if isinstance(n_steps, bool) or not isinstance(n_steps, (int, np.integer)) or n_steps <= 0:
        raise ValueError(f"{fn}: n_steps must be a positive integer, got {n_steps!r}")


def latency_encode(
    images: np.ndarray,
    n_steps: int,
    tau: float | None = None,
    threshold: float = 0.2,
    linear: bool = False,
) -> np.ndarray:
    """Time-to-first-spike encoding of ``images`` [S, ...] (uint8, or float in [0, 1]); see the
    module docstring for the formulas.

    Returns float32 [n_steps, S, n_pixels] with at most one spike per (sample, pixel); only
    pixels brighter than ``threshold`` (in [0, 1)) spike. ``linear`` picks the linear form over
    the log one. ``tau`` is in time steps; ``None`` selects 20 (log) or n_steps - 1 (linear).
    """
    fn = "latency_encode"
    _check_n_steps(n_steps, fn)
    if not 0.0 <= threshold < 1.0:
        raise ValueError(f"{fn}: threshold must be in [0, 1), got {threshold!r}")
    if tau is None:
        tau = float(n_steps - 1) if linear else _DEFAULT_LOG_TAU
    if not (math.isfinite(tau) and tau > 0):
        raise ValueError(f"{fn}: tau must be a positive finite number, got {tau!r}")
    x = _intensities(images, fn)

    active = x > threshold
    xa = x[active]
    if linear:
        t = tau * (1.0 - xa) / (1.0 - threshold)
    else:
        t = tau * np.log(xa / (xa - threshold))
    bins = np.floor(t)
    in_window = bins < n_steps
    sample_idx, pixel_idx = np.nonzero(active)

    spikes = np.zeros((n_steps, x.shape[0], x.shape[1]), dtype=np.float32)
    spikes[bins[in_window].astype(np.int64), sample_idx[in_window], pixel_idx[in_window]] = 1.0
    return spikes


def rate_encode(
    images: np.ndarray,
    n_steps: int,
    max_rate: float = 1.0,
    seed: int = 0,
) -> np.ndarray:
    """Bernoulli rate encoding of ``images`` [S, ...] (uint8, or float in [0, 1]): spike with
    probability intensity * max_rate in every step.

    Returns float32 [n_steps, S, n_pixels]; deterministic in ``seed``.
    ``max_rate`` is a per-step probability in [0, 1].
    """
    fn = "rate_encode"
    _check_n_steps(n_steps, fn)
    if not 0.0 <= max_rate <= 1.0:
        raise ValueError(f"{fn}: max_rate must be a per-step probability in [0, 1], got {max_rate!r}")
    p = (_intensities(images, fn) * max_rate).astype(np.float32)

    rng = np.random.default_rng(seed)
    spikes = np.empty((n_steps,) + p.shape, dtype=np.float32)
    for step in range(n_steps):
        spikes[step] = rng.random(p.shape, dtype=np.float32) < p
    return spikes
