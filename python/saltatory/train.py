"""The main job: train a sparse SNN on the CPU and report accuracy and throughput.

    python -m saltatory.train                      # Fashion-MNIST (Debian package), latency-coded
    python -m saltatory.train --dataset randman    # synthetic, no files needed
    python -m saltatory.train --mode dense         # the dense baseline, same data and seed

Network: input -> LIF(hidden, capacity = activity * hidden) x L -> leaky readout; membrane
cross-entropy; Adam. Prints a progress bar (loss, accuracy, samples/s), evaluates every epoch and
ends with a summary line.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import saltatory as sal
from saltatory.data import latency_encode, load_fashion_mnist, make_randman, train_test_split


def load_dataset(args) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
    """Dense time-major spikes [T, S, N] and labels for train and test, and the class count."""
    if args.dataset == "fashion-mnist":
        train_x, train_y = load_fashion_mnist(split="train")
        test_x, test_y = load_fashion_mnist(split="test")
        rng = np.random.default_rng(args.seed)
        if args.train_samples:
            keep = rng.permutation(len(train_y))[: args.train_samples]
            train_x, train_y = train_x[keep], train_y[keep]
        if args.test_samples:
            test_x, test_y = test_x[: args.test_samples], test_y[: args.test_samples]
        encode = lambda images: latency_encode(images, args.steps, linear=True)  # noqa: E731
        return encode(train_x), train_y, encode(test_x), test_y, 10
    spikes, labels = make_randman(n_classes=10, n_units=100, n_steps=args.steps,
                                  n_samples_per_class=200, seed=args.seed)
    train_x, train_y, test_x, test_y = train_test_split(spikes, labels, 0.2, seed=args.seed)
    return train_x, train_y, test_x, test_y, 10


def build_network(args, n_in: int, n_classes: int) -> sal.Sequential:
    layers, width = [], n_in
    for i, hidden in enumerate(args.hidden):
        capacity = max(2, 2 * int(args.activity * hidden / 2))
        layers.append(sal.LIF(width, hidden, capacity, seed=args.seed + i))
        width = hidden
    layers.append(sal.Readout(width, n_classes, seed=args.seed + len(args.hidden)))
    return sal.Sequential(*layers, mode=args.mode, device=args.device, seed=args.seed)


def batches(x: np.ndarray, y: np.ndarray, batch_size: int, capacity: int, rng=None):
    order = np.arange(len(y)) if rng is None else rng.permutation(len(y))
    for start in range(0, len(y), batch_size):
        idx = order[start:start + batch_size]
        yield sal.SpikeTensor.from_dense(x[:, idx], capacity), y[idx]


def evaluate(net: sal.Sequential, x, y, args) -> float:
    correct = 0
    for spikes, labels in batches(x, y, args.batch_size, args.input_capacity):
        correct += int((sal.losses.predict(net(spikes)) == labels).sum())
    return correct / len(y)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m saltatory.train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=["fashion-mnist", "randman"], default="fashion-mnist")
    parser.add_argument("--mode", choices=["sparse", "dense"], default="sparse")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--hidden", type=int, nargs="+", default=[256])
    parser.add_argument("--activity", type=float, default=0.2,
                        help="hidden capacity as a fraction of width (default 0.2)")
    parser.add_argument("--steps", type=int, default=50, help="time steps per sample")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=5e-3)
    parser.add_argument("--train-samples", type=int, default=20000, help="0 = all")
    parser.add_argument("--test-samples", type=int, default=5000, help="0 = all")
    parser.add_argument("--threads", type=int, default=0, help="0 = all cores")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        from tqdm import tqdm
    except ImportError:  # progress bars are optional
        tqdm = None

    sal.set_num_threads(args.threads)
    train_x, train_y, test_x, test_y, n_classes = load_dataset(args)
    args.input_capacity = max(1, int(np.count_nonzero(train_x, axis=2).max()))
    net = build_network(args, train_x.shape[2], n_classes)
    opt = sal.optim.Adam(net.parameters(), lr=args.lr)
    print(f"saltatory {sal.__version__}: {args.dataset}, {train_x.shape[1]} train / {test_x.shape[1]} test, "
          f"T={args.steps}, {train_x.shape[2]}-{'-'.join(map(str, args.hidden))}-{n_classes}, "
          f"mode={args.mode}, device={args.device}, input capacity {args.input_capacity}")
    rng = np.random.default_rng(args.seed)
    history, train_time, trained = [], 0.0, 0
    for epoch in range(1, args.epochs + 1):
        steps = batches(train_x, train_y, args.batch_size, args.input_capacity, rng)
        n_batches = -(-len(train_y) // args.batch_size)
        bar = tqdm(steps, total=n_batches, desc=f"epoch {epoch}", unit="batch") if tqdm else steps
        losses, correct, seen, activity, dropped = [], 0, 0, [], 0
        start = time.perf_counter()
        for spikes, labels in bar:
            out = net(spikes)
            loss, grad = sal.losses.membrane_cross_entropy(out, labels)
            net.zero_grad()
            net.backward(grad)
            opt.step()
            losses.append(loss)
            correct += int((sal.losses.predict(out) == labels).sum())
            seen += len(labels)
            activity.append(net.spikes[0].activity())
            dropped += sum(net.dropped)
            rate = seen / (time.perf_counter() - start)
            if tqdm:
                bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}", acc=f"{correct / seen:.3f}",
                                samples_s=f"{rate:.0f}")
        elapsed = time.perf_counter() - start
        train_time += elapsed
        trained += seen
        test_acc = evaluate(net, test_x, test_y, args)
        history.append({"epoch": epoch, "loss": float(np.mean(losses)), "train_acc": correct / seen,
                        "test_acc": test_acc, "samples_per_s": seen / elapsed,
                        "hidden_activity": float(np.mean(activity)), "dropped": dropped})
        print(f"epoch {epoch}: loss {np.mean(losses):.4f}  train acc {correct / seen:.4f}  "
              f"test acc {test_acc:.4f}  {seen / elapsed:.0f} samples/s  "
              f"hidden activity {np.mean(activity):.4f}  dropped spikes {dropped}")
    summary = {"dataset": args.dataset, "mode": args.mode, "test_acc": history[-1]["test_acc"],
               "samples_per_s": trained / train_time, "epochs": args.epochs, "history": history}
    print(f"summary: {args.dataset} {args.mode}: test accuracy {summary['test_acc']:.4f} after "
          f"{args.epochs} epochs, training throughput {summary['samples_per_s']:.0f} samples/s "
          f"(forward + backward + Adam, {sal.build_info()['cpu_threads']} threads)")
    return summary


if __name__ == "__main__":
    main()
