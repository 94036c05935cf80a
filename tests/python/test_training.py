"""Smoke test: a small LIF network learns seeded Randman in both sparse and dense modes."""

from __future__ import annotations

import numpy as np
import pytest

from saltatory import LIF, Readout, Sequential, SpikeTensor, losses, optim
from saltatory.data import make_randman, train_test_split

N_CLASSES, N_UNITS, N_STEPS, PER_CLASS = 5, 50, 50, 100
EPOCHS, BATCH = 20, 50


@pytest.fixture(scope="module")
def data():
    x, y = make_randman(n_classes=N_CLASSES, n_units=N_UNITS, n_steps=N_STEPS,
                        n_samples_per_class=PER_CLASS, seed=0)
    assert x.dtype == np.float32 and x.shape == (N_STEPS, N_CLASSES * PER_CLASS, N_UNITS)
    assert y.dtype == np.int32
    return train_test_split(x, y, 0.2, seed=0)


def _train(data, mode: str) -> dict:
    x_train, y_train, x_test, y_test = data
    model = Sequential(LIF(N_UNITS, 128, capacity=32, seed=1), Readout(128, N_CLASSES, seed=2), mode=mode)
    opt = optim.Adam(model.parameters(), lr=2e-3)
    rng = np.random.default_rng(0)
    epoch_losses, dropped = [], 0
    for _ in range(EPOCHS):
        order = rng.permutation(x_train.shape[1])
        batch_losses = []
        for start in range(0, order.size, BATCH):
            idx = order[start:start + BATCH]
            out = model(SpikeTensor.from_dense(x_train[:, idx]))
            loss, grad = losses.membrane_cross_entropy(out, y_train[idx])
            assert np.isfinite(loss)
            opt.zero_grad()
            model.backward(grad)
            opt.step()
            batch_losses.append(loss)
            dropped += sum(model.dropped)
        epoch_losses.append(float(np.mean(batch_losses)))
    out = model(SpikeTensor.from_dense(x_test))
    accuracy = float((losses.predict(out) == y_test).mean())
    return {"losses": epoch_losses, "accuracy": accuracy, "dropped": dropped,
            "activity": model.spikes[0].activity()}


@pytest.fixture(scope="module")
def results(data):
    return {mode: _train(data, mode) for mode in ("sparse", "dense")}


@pytest.mark.parametrize("mode", ["sparse", "dense"])
def test_loss_falls(results, mode: str) -> None:
    epoch_losses = results[mode]["losses"]
    assert epoch_losses[-1] < epoch_losses[0]
    assert epoch_losses[-1] < 0.98 * np.log(N_CLASSES) * N_STEPS  # below the uniform-prediction loss


@pytest.mark.parametrize("mode", ["sparse", "dense"])
def test_held_out_accuracy_above_chance(results, mode: str) -> None:
    assert results[mode]["accuracy"] > 0.5, results[mode]  # chance is 0.2
    assert 0.0 < results[mode]["activity"] < 0.25  # the hidden layer spikes, sparsely


def test_sparse_and_dense_agree(results) -> None:
    sparse, dense = results["sparse"], results["dense"]
    assert dense["dropped"] == 0
    assert abs(sparse["accuracy"] - dense["accuracy"]) <= 0.05
    assert abs(sparse["losses"][-1] - dense["losses"][-1]) <= 0.02 * dense["losses"][-1]
