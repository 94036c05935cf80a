"""Training plots (matplotlib, written as PNG): spike rasters, loss and accuracy, layer activity."""

from __future__ import annotations

import numpy as np


def _pyplot():
    try:
        import matplotlib
    except ImportError as exc:
        raise ImportError("saltatory.plots needs matplotlib: pip install matplotlib") from exc
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_raster(spikes, path, *, sample: int = 0, names=None) -> None:
    """Writes to ``path`` one panel per SpikeTensor of ``spikes`` (e.g. the input and each
    layer), titled by ``names`` (default "layer i"): the spikes of batch entry ``sample``."""
    plt = _pyplot()
    names = names or [f"layer {i}" for i in range(len(spikes))]
    fig, axes = plt.subplots(len(spikes), 1, figsize=(8, 2.2 * len(spikes)), sharex=True, squeeze=False)
    for ax, tensor, name in zip(axes[:, 0], spikes, names):
        n = tensor.n_spk[:, sample]
        steps = np.repeat(np.arange(len(n)), n)
        ids = np.concatenate([tensor.ids[t, sample, :n[t]] for t in range(len(n))]) if n.sum() else []
        ax.scatter(steps, ids, s=1.5, c="k", marker="|")
        ax.set_xlim(-0.5, len(n) - 0.5)
        ax.set_ylim(-0.5, tensor.n_neurons - 0.5)
        ax.set_ylabel(f"{name}\nneuron")
    axes[-1, 0].set_xlabel("time step")
    fig.suptitle(f"spike raster, sample {sample}")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_curves(history: list[dict], trace: dict, path) -> None:
    """Writes to ``path`` the training loss per step, ``trace["loss"]`` (with a running mean), and
    the train/test accuracy per epoch of ``history`` (dicts with epoch, train_acc and test_acc,
    as ``saltatory.train`` records them)."""
    plt = _pyplot()
    fig, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(10, 3.6))
    loss = np.asarray(trace["loss"])
    loss_ax.plot(loss, lw=0.5, alpha=0.4, label="per step")
    window = max(1, len(loss) // 50)
    if len(loss) >= window:
        loss_ax.plot(np.arange(window - 1, len(loss)), np.convolve(loss, np.ones(window) / window, "valid"),
                     label=f"mean of {window}")
    loss_ax.set(xlabel="training step", ylabel="loss", title="loss")
    loss_ax.legend()
    epochs = [h["epoch"] for h in history]
    acc_ax.plot(epochs, [h["train_acc"] for h in history], "o-", label="train")
    acc_ax.plot(epochs, [h["test_acc"] for h in history], "s-", label="test")
    acc_ax.set(xlabel="epoch", ylabel="accuracy", title="accuracy")
    acc_ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_activity(trace: dict, path) -> None:
    """Writes to ``path`` each spiking layer's measured activity (spikes per neuron per step)
    over training, from ``trace["activity"]`` ([steps, layers])."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 3.6))
    activity = np.asarray(trace["activity"])  # [steps, layers]
    for layer in range(activity.shape[1] if activity.ndim == 2 else 0):
        ax.plot(activity[:, layer], lw=0.8, label=f"layer {layer}")
    ax.set(xlabel="training step", ylabel="activity", title="layer activity during training")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
