"""Randman: spike-timing classification data on random smooth manifolds.

Reimplementation (numpy only) of the generator of Zenke & Vogels (2021),
"The remarkable robustness of surrogate gradient learning for instilling
complex function in spiking neural networks", following F. Zenke's ``randman``
package (default torch backend) and its ``make_spiking_dataset`` recipe.

Each class k owns a random manifold of intrinsic dimension D embedded in
``n_units`` dimensions.  Coordinate i of the embedding of a point x in [0, 1)^D is

    y_i(x) = prod_{d<D} sum_{j<F} A_idj * s_j * sin(2*pi*(j * x_d * f_idj + phi_idj)),
    s_j    = 1 / ((j + 1)**alpha + 1),          F = ceil(prec**(-1/alpha)), prec = 1e-3,

with A, f, phi ~ U[0, 1) and A_id0 = 0 (no constant offset).  Larger ``alpha``
damps high frequencies, i.e. gives smoother manifolds.  A sample of class k is
y(x) at x ~ U[0, 1)^D, min-max standardised per unit over the class's samples,

    t_i = (y_i - min_i) / (max_i - min_i + 1e-7)  in [0, 1),

and unit i emits exactly one spike, in time bin min(floor(t_i * n_steps), n_steps - 1).
All information is therefore in relative spike timing (spike counts are constant).
"""

from __future__ import annotations

import math

import numpy as np

_PREC = 1e-3
_MAX_F_CUTOFF = 1000
_STANDARDIZE_EPS = 1e-7


class Randman:
    """One random smooth manifold of dimension ``dim_manifold`` in ``dim_embedding`` dims, with
    smoothness ``alpha`` (see the module docstring), its parameters drawn from the numpy
    Generator ``rng``."""

    def __init__(
        self,
        dim_embedding: int,
        dim_manifold: int,
        alpha: float,
        rng: np.random.Generator,
    ) -> None:
        self.dim_embedding = dim_embedding
        self.dim_manifold = dim_manifold
        self.f_cutoff = int(min(math.ceil(_PREC ** (-1.0 / alpha)), _MAX_F_CUTOFF))
        # params[i, d] = (amplitude, frequency, phase) rows over the F frequencies.
        self.params = rng.uniform(0.0, 1.0, size=(dim_embedding, dim_manifold, 3, self.f_cutoff))
        self.params[:, :, 0, 0] = 0.0
        self.spectrum = 1.0 / (np.arange(1, self.f_cutoff + 1, dtype=np.float64) ** alpha + 1.0)

    def eval_manifold(self, x: np.ndarray) -> np.ndarray:
        """Embed intrinsic coordinates ``x`` [N, dim_manifold] into [N, dim_embedding]."""
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.dim_manifold:
            raise ValueError(
                f"Randman.eval_manifold: x must have shape [N, {self.dim_manifold}], got {x.shape}"
            )
        amp = self.params[:, :, 0, :] * self.spectrum  # [U, D, F]
        freq = self.params[:, :, 1, :] * np.arange(self.f_cutoff)  # j * f_idj
        phase = self.params[:, :, 2, :]
        acc = np.zeros((x.shape[0], self.dim_embedding, self.dim_manifold))  # [N, U, D]
        for j in range(self.f_cutoff):
            acc += amp[:, :, j] * np.sin(2.0 * np.pi * (x[:, None, :] * freq[:, :, j] + phase[:, :, j]))
        return acc.prod(axis=2)


def _check_positive_int(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"make_randman: {name} must be a positive integer, got {value!r}")


def make_randman(
    n_classes: int = 10,
    n_units: int = 100,
    n_steps: int = 100,
    n_samples_per_class: int = 100,
    dim_manifold: int = 1,
    alpha: float = 2.0,
    seed: int = 0,
    shuffle: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Generate a Randman spike-timing classification data set.

    Returns ``(spikes, labels)``: ``spikes`` float32 [n_steps, S, n_units] of 0/1 with
    exactly one spike per unit and sample, ``labels`` int32 [S], where
    S = n_classes * n_samples_per_class.  Without ``shuffle`` samples are grouped by class.

    Deterministic in ``seed``.  The manifolds depend only on (seed, n_classes, n_units,
    dim_manifold, alpha), not on ``n_samples_per_class``, so calls that differ only in the
    number of samples draw from the same class manifolds.
    """
    for name, value in (
        ("n_classes", n_classes),
        ("n_units", n_units),
        ("n_steps", n_steps),
        ("n_samples_per_class", n_samples_per_class),
        ("dim_manifold", dim_manifold),
    ):
        _check_positive_int(name, value)
    if not (math.isfinite(alpha) and alpha > 0):
        raise ValueError(f"make_randman: alpha must be a positive finite number, got {alpha!r}")

    manifold_ss, sample_ss, shuffle_ss = np.random.SeedSequence(seed).spawn(3)
    manifold_rng = np.random.default_rng(manifold_ss)
    sample_rng = np.random.default_rng(sample_ss)

    n_total = n_classes * n_samples_per_class
    bins = np.empty((n_total, n_units), dtype=np.int64)
    for k in range(n_classes):
        manifold = Randman(n_units, dim_manifold, alpha, manifold_rng)
        x = sample_rng.random((n_samples_per_class, dim_manifold))
        y = manifold.eval_manifold(x)
        lo, hi = y.min(axis=0), y.max(axis=0)
        t = (y - lo) / (hi - lo + _STANDARDIZE_EPS)
        rows = slice(k * n_samples_per_class, (k + 1) * n_samples_per_class)
        bins[rows] = np.minimum(np.floor(t * n_steps).astype(np.int64), n_steps - 1)
    labels = np.repeat(np.arange(n_classes, dtype=np.int32), n_samples_per_class)

    if shuffle:
        order = np.random.default_rng(shuffle_ss).permutation(n_total)
        bins, labels = bins[order], labels[order]

    spikes = np.zeros((n_steps, n_total, n_units), dtype=np.float32)
    sample_idx, unit_idx = np.indices((n_total, n_units))
    spikes[bins, sample_idx, unit_idx] = 1.0
    return spikes, labels


def train_test_split(
    spikes: np.ndarray,
    labels: np.ndarray,
    test_fraction: float,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Randomly split time-major ``spikes`` [T, S, N] and ``labels`` [S] along the sample axis.

    Returns ``(train_spikes, train_labels, test_spikes, test_labels)`` with
    round(test_fraction * S) test samples, drawn by a permutation deterministic in ``seed``.
    """
    spikes = np.asarray(spikes)
    labels = np.asarray(labels)
    if spikes.ndim != 3:
        raise ValueError(f"train_test_split: spikes must be [T, S, N], got shape {spikes.shape}")
    if labels.shape != (spikes.shape[1],):
        raise ValueError(
            f"train_test_split: labels must have shape ({spikes.shape[1]},), got {labels.shape}"
        )
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"train_test_split: test_fraction must be in (0, 1), got {test_fraction!r}")
    n_samples = spikes.shape[1]
    n_test = int(round(test_fraction * n_samples))
    order = np.random.default_rng(seed).permutation(n_samples)
    test, train = order[:n_test], order[n_test:]
    return spikes[:, train], labels[train], spikes[:, test], labels[test]
