"""The main job: train a sparse SNN and report accuracy and throughput.

    python -m saltatory.train                                  # Fashion-MNIST (Debian package)
    python -m saltatory.train --dataset nmnist-dir --data DIR  # N-MNIST .bin/.bs2 recordings
    python -m saltatory.train --dataset shd-file --data shd_train.h5 [--test-data shd_test.h5]
    python -m saltatory.train --dataset fsdd-dir --data DIR    # spoken digits through a cochlea
    python -m saltatory.train --dataset randman                # synthetic, no files needed
    python -m saltatory.train --mode dense                     # dense baseline, same data and seed
    python -m saltatory.train --checkpoint-dir ckpt [--resume] # checkpoint every epoch / resume

Network: input -> spiking hidden layers (LIF; with --neuron cuba current-based CubaLIF, with
--neuron alif / adlif AdaptiveLIF with threshold / current adaptation; with --recurrent their
recurrent forms; with --learn-neuron their decays and adaptation learnable) with capacity =
activity * width -> leaky readout; membrane cross-entropy; Adam (with --lr-schedule cosine, its
learning rate annealed over the epochs). Shows a progress bar (loss, accuracy, samples/s),
evaluates every epoch, writes plots and summary.json to --out, and ends with a summary line.
A resumed run reproduces the uninterrupted one bit for bit on the CPU.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import tempfile
import time

import numpy as np

import saltatory as sal
from saltatory import data

_DATASETS = ("fashion-mnist", "nmnist-dir", "shd-file", "fsdd-dir", "randman")
#: per data set: time steps, bin width in ms (event data), and the data location if it has one
_DEFAULTS = {"fashion-mnist": (50, None, data.fashion_mnist.DEFAULT_ROOT), "randman": (50, None, None),
             "nmnist-dir": (100, 3.0, None), "shd-file": (100, 10.0, None), "fsdd-dir": (100, 10.0, None)}
#: the arguments that fix the network's shape: a checkpoint must match them
_ARCHITECTURE = ("dataset", "hidden", "recurrent", "neuron", "learn_neuron", "coupling", "mode", "steps",
                 "activity", "capacity", "channels")
_INT_MAX = 2**31 - 1  # counts reach the C++ core as int
#: --neuron: the hidden layer classes (feed-forward, recurrent) and their model options
_NEURONS = {"lif": ((sal.LIF, sal.RecurrentLIF), lambda args: {}),
            "cuba": ((sal.CubaLIF, sal.RecurrentCubaLIF), lambda args: {"alpha_syn": args.alpha_syn}),
            "alif": ((sal.AdaptiveLIF, sal.RecurrentAdaptiveLIF), lambda args: {}),
            "adlif": ((sal.AdaptiveLIF, sal.RecurrentAdaptiveLIF),
                      lambda args: {"adaptation": "current"})}
#: --learn-neuron: the learning flags of each model (its decays and adaptation; thresholds stay)
_LEARNED = {"lif": {"learn_alpha": True}, "cuba": {"learn_alpha": True, "learn_alpha_syn": True},
            "alif": {"learn_alpha": True, "learn_adaptation": True},
            "adlif": {"learn_alpha": True, "learn_adaptation": True}}


def _checked(convert, valid, what: str):
    """An argparse type: ``convert(text)`` if that works and is ``valid``, else an error saying the
    value must be ``what``."""
    def parse(text: str):
        try:
            value = convert(text)
        except ValueError:
            value = None
        if value is None or not valid(value):
            raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}")
        return value
    return parse


def _count(low: int):
    return _checked(int, lambda n: low <= n <= _INT_MAX, f"a whole number from {low} to {_INT_MAX}")


def _real(valid, what: str):
    return _checked(float, lambda x: math.isfinite(x) and valid(x), what)


_segment = _checked(lambda text: text if text == "auto" else int(text),
                    lambda s: s == "auto" or 0 <= s <= _INT_MAX,
                    f"'auto' or a whole number from 0 to {_INT_MAX}")


def parse_args(argv=None) -> argparse.Namespace:
    """The command line ``argv`` (default ``sys.argv[1:]``) parsed and checked, with the data
    set's defaults filled in."""
    p = argparse.ArgumentParser(prog="python -m saltatory.train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", choices=_DATASETS, default="fashion-mnist")
    p.add_argument("--data", help="data location: Fashion-MNIST IDX folder, N-MNIST or FSDD folder, "
                                  "SHD training file")
    p.add_argument("--test-data", help="SHD test file (default: the training file's name with "
                                       "'train' replaced by 'test')")
    p.add_argument("--mode", choices=["sparse", "dense"], default="sparse")
    p.add_argument("--device", default="cpu")
    p.add_argument("--distributed", action="store_true",
                   help="data-parallel over MPI: launch with mpirun; --batch-size is the global batch")
    p.add_argument("--recompute-segment", type=_segment, default=0, metavar="S",
                   help="BPTT memory: keep a membrane every S steps and recompute the rest in "
                        "backward (sparse mode); 'auto' = ceil(sqrt(T/2)); 0 = store all (default), "
                        "as does any S >= the number of steps")
    p.add_argument("--hidden", type=_count(1), nargs="+", default=[256], help="hidden layer widths")
    p.add_argument("--recurrent", action="store_true", help="recurrent hidden layers")
    p.add_argument("--neuron", choices=sorted(_NEURONS), default="lif",
                   help="hidden neuron model: lif (default), cuba (current-based, a synaptic "
                        "current with decay --alpha-syn), alif (adaptive threshold, LSNN) or "
                        "adlif (adaptation current)")
    p.add_argument("--learn-neuron", action="store_true",
                   help="learn the hidden neurons' per-neuron decays and adaptation: alpha (every "
                        "model), alpha_syn (cuba), rho and b (alif), rho, b and a (adlif); thresholds "
                        "stay fixed")
    p.add_argument("--alpha-syn", type=_real(lambda x: 0 <= x < 1, "a number in [0, 1)"), default=0.9,
                   help="synaptic decay of --neuron cuba (default 0.9)")
    p.add_argument("--coupling", choices=["same_step", "delayed"], default="same_step")
    p.add_argument("--overflow", choices=["random", "lowest"], default="random",
                   help="which spikes and candidates a full list keeps: a seeded random subset "
                        "(default) or the lowest ids (the paper's choice, biased towards low ids)")
    p.add_argument("--activity", type=_real(lambda x: 0 < x <= 1, "a number in (0, 1]"), default=0.2,
                   help="hidden capacity as a fraction of width, in (0, 1] (default 0.2)")
    p.add_argument("--capacity", type=_count(0), default=0, help="hidden capacity (overrides --activity)")
    p.add_argument("--input-capacity", type=_count(0), default=0,
                   help="input list capacity; 0 = the largest list in the data (nothing dropped)")
    p.add_argument("--steps", type=_count(0), default=0, help="time steps per sample (0 = per data set)")
    p.add_argument("--bin-ms", type=_real(lambda x: x >= 0, "a number >= 0"), default=0.0,
                   help="event bin width in ms (0 = per data set)")
    p.add_argument("--channels", type=_count(1), default=64, help="cochlea channels for fsdd-dir")
    p.add_argument("--theta2-schedule", action="store_true",
                   help="start theta2 at -100 and move it halfway to 0.9 after each step (the paper's)")
    p.add_argument("--epochs", type=_count(1), default=2)
    p.add_argument("--batch-size", type=_count(1), default=64)
    p.add_argument("--lr", type=_real(lambda x: x > 0, "a number > 0"), default=5e-3)
    p.add_argument("--lr-schedule", choices=["constant", "cosine"], default="constant",
                   help="cosine: epoch e (from 0) trains at lr (1 + cos(pi e / epochs)) / 2, as "
                        "torch's CosineAnnealingLR(T_max=epochs) stepped once per epoch")
    p.add_argument("--train-samples", type=_count(0), default=None,
                   help="use this many training samples (Fashion-MNIST default 20000; 0 = all)")
    p.add_argument("--test-samples", type=_count(0), default=None,
                   help="use this many test samples (Fashion-MNIST default 5000; 0 = all)")
    p.add_argument("--threads", type=_count(0), default=0, help="0 = all cores")
    p.add_argument("--seed", default=0,
                   type=_checked(int, lambda n: 0 <= n < 2**64, "a whole number from 0 to 2**64 - 1"))
    p.add_argument("--checkpoint-dir", help="save the training state here after every epoch")
    p.add_argument("--resume", action="store_true", help="continue from --checkpoint-dir/last.ckpt")
    p.add_argument("--out", help="folder for plots and summary.json (default runs/<dataset>-<mode>)")
    p.add_argument("--no-plots", action="store_true")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    steps, bin_ms, location = _DEFAULTS[args.dataset]
    args.steps = args.steps or steps
    args.bin_ms = args.bin_ms or bin_ms
    args.data = args.data or location
    if args.dataset == "fashion-mnist":
        args.train_samples = 20000 if args.train_samples is None else args.train_samples
        args.test_samples = 5000 if args.test_samples is None else args.test_samples
    if args.data is None and args.dataset != "randman":
        p.error(f"--dataset {args.dataset} needs --data")
    if args.device not in sal.available_devices():
        p.error(f"--device {args.device} is not available here; available: {sal.available_devices()}")
    if args.recompute_segment and args.mode != "sparse":
        p.error("--recompute-segment needs --mode sparse")
    if args.resume and not args.checkpoint_dir:
        p.error("--resume needs --checkpoint-dir")
    args.out = args.out or os.path.join("runs", f"{args.dataset}-{args.mode}")
    return args


def _limit(dataset, count: int | None, rng: np.random.Generator | None = None):
    """The first ``count`` samples, or a random ``count`` of them with ``rng``; all for 0/None."""
    if not count or count >= len(dataset):
        return dataset
    return dataset.subset(rng.permutation(len(dataset))[:count] if rng is not None else np.arange(count))


def load_datasets(args, rng: np.random.Generator):
    """(train, test, number of classes) for ``args.dataset``; ``rng`` draws the training
    subset."""
    capacity = args.input_capacity or None
    events = {"n_steps": args.steps, "bin_width": (args.bin_ms or 1.0) / 1000.0, "capacity": capacity}
    if args.dataset == "fashion-mnist":
        images, labels = data.load_fashion_mnist(args.data, split="train")
        keep = rng.permutation(len(labels))[: args.train_samples] if args.train_samples else slice(None)
        test_images, test_labels = data.load_fashion_mnist(args.data, split="test")
        train = data.ImageDataset(images[keep], labels[keep], args.steps, capacity=capacity)
        test = data.ImageDataset(test_images[: args.test_samples or None],
                                 test_labels[: args.test_samples or None], args.steps,
                                 capacity=train.capacity)
    elif args.dataset == "nmnist-dir":
        train = data.load_nmnist(args.data, "train", **events)
        test = data.load_nmnist(args.data, "test", **{**events, "capacity": train.capacity})
    elif args.dataset == "shd-file":
        test_path = args.test_data or os.path.join(
            os.path.dirname(args.data), os.path.basename(args.data).replace("train", "test"))
        if os.path.abspath(test_path) == os.path.abspath(args.data):
            raise SystemExit("saltatory.train: give the SHD test file with --test-data")
        train = data.load_shd(args.data, **events)
        test = data.load_shd(test_path, **{**events, "capacity": train.capacity})
    elif args.dataset == "fsdd-dir":
        cochlea = data.Cochlea(args.channels)
        train = data.load_fsdd(args.data, "train", cochlea=cochlea, **events)
        test = data.load_fsdd(args.data, "test", cochlea=cochlea, **{**events, "capacity": train.capacity})
    else:
        spikes, labels = data.make_randman(n_classes=10, n_units=100, n_steps=args.steps,
                                           n_samples_per_class=200, seed=args.seed)
        train_x, train_y, test_x, test_y = data.train_test_split(spikes, labels, 0.2, seed=args.seed)
        train = data.DenseDataset(train_x, train_y)
        test = data.DenseDataset(test_x, test_y, train.capacity)
    if args.dataset != "fashion-mnist":  # Fashion-MNIST: limited before encoding
        train = _limit(train, args.train_samples, rng)
        test = _limit(test, args.test_samples)
    n_classes = int(max(train.labels.max(), test.labels.max())) + 1
    return train, test, n_classes


def _ensure_writable(option: str, folder: str) -> None:
    """Creates ``folder`` and writes (and removes) a file in it, so that a folder the results
    cannot go to stops the run before training, not after."""
    try:
        os.makedirs(folder, exist_ok=True)
        handle, probe = tempfile.mkstemp(dir=folder, prefix=".write-test-")
        os.close(handle)
        os.remove(probe)
    except OSError as exc:
        raise SystemExit(f"saltatory.train: {option} {folder} is not a writable folder: "
                         f"{exc.strerror}") from None


def _remove_stale_temporaries(path: str) -> None:
    """Removes the temporary files ``.NAME.tmp-PID`` that a killed save_checkpoint of ``path``
    left behind, those whose process is gone."""
    folder, name = os.path.split(path)
    prefix = f".{name}.tmp-"
    for entry in os.listdir(folder):
        pid = entry[len(prefix):]
        if entry.startswith(prefix) and pid.isdigit() and not _alive(int(pid)):
            os.remove(os.path.join(folder, entry))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except PermissionError:  # someone else's process
        return True
    except (ProcessLookupError, OverflowError):
        return False
    return True


def build_network(args, n_in: int, n_classes: int) -> sal.Sequential:
    """The network of ``args`` for ``n_in`` input units and ``n_classes`` outputs: hidden layers of
    the ``--neuron`` model (recurrent with ``--recurrent``), then a Readout."""
    layers, width = [], n_in
    classes, options = _NEURONS[args.neuron]
    kind = classes[1] if args.recurrent else classes[0]
    for i, hidden in enumerate(args.hidden):
        capacity = args.capacity or max(2, 2 * int(args.activity * hidden / 2))
        learned = _LEARNED[args.neuron] if args.learn_neuron else {}
        layers.append(kind(width, hidden, capacity, seed=(args.seed + i) % 2**64, **options(args),
                           **learned))
        width = hidden
    layers.append(sal.Readout(width, n_classes, seed=(args.seed + len(args.hidden)) % 2**64))
    return sal.Sequential(*layers, coupling=args.coupling, mode=args.mode, device=args.device,
                          overflow=args.overflow, seed=args.seed,
                          recompute_segment=args.recompute_segment)


def epoch_lr(args, epoch: int) -> float:
    """The learning rate of epoch ``epoch`` (from 0) of ``--lr-schedule cosine`` over the parsed
    ``args``' lr and epochs."""
    return args.lr * 0.5 * (1.0 + math.cos(math.pi * epoch / args.epochs))


def _lr_schedule(args) -> list:
    """What fixes the learning rate of every epoch, as a checkpoint keeps it: a cosine schedule's
    lr and epochs; a constant rate is the optimiser's own (restored with it, as before schedules)."""
    return ["cosine", args.lr, args.epochs] if args.lr_schedule == "cosine" else ["constant"]


def _as_saved(value):
    """``value`` as a checkpoint's JSON gives it back (tuples as lists), for comparison."""
    return json.loads(json.dumps(value))


def evaluate(net: sal.Sequential, loader: data.Loader, ddp=None) -> float:
    """Accuracy of ``net`` over epoch 0 of ``loader``; with ``ddp`` every rank evaluates its
    ``ddp.shard`` of the test set and the result covers all ranks."""
    correct = 0
    for spikes, labels in loader.epoch(0):
        correct += int((sal.losses.predict(net(spikes)) == labels).sum())
    if ddp is None:
        return correct / len(loader.dataset)
    correct, total = ddp.sum([correct, len(loader.dataset)])
    return float(correct / total)


def train_epoch(net, opt, loader, epoch: int, trace: dict, schedule=None, progress=True,
                ddp=None) -> dict:
    """One pass of ``net`` and its optimiser ``opt`` over ``loader``'s epoch ``epoch``, stepping
    the Theta2Schedule ``schedule`` (if any) after each batch, with a progress bar if
    ``progress``; appends per-step loss and activity to ``trace``.
    With ``ddp`` (a ``saltatory.distributed.DataParallel``) gradients are averaged over the ranks
    before each optimiser step, and the epoch's figures cover every rank."""
    bar = None
    if progress and (ddp is None or ddp.is_main):
        try:
            from tqdm import tqdm
            bar = tqdm(total=len(loader), desc=f"epoch {epoch + 1}", unit="batch")
        except ImportError:  # progress bars are optional
            pass
    losses, correct, seen, dropped = [], 0, 0, []
    start = time.perf_counter()
    for spikes, labels in loader.epoch(epoch):
        out = net(spikes)
        loss, grad = sal.losses.membrane_cross_entropy(out, labels)
        net.zero_grad()
        net.backward(grad)
        if ddp is not None:  # mean gradient and loss over the global batch
            total = ddp.allreduce_gradients(len(labels))
            loss = float(ddp.sum([loss * len(labels)])[0] / total)
        opt.step()
        if schedule is not None:
            schedule.step()
        losses.append(loss)
        correct += int((sal.losses.predict(out) == labels).sum())
        seen += len(labels)
        dropped.append(net.dropped + net.dropped_candidates)  # spikes, then candidates, per layer
        trace["loss"].append(float(loss))
        trace["activity"].append([s.activity() for s in net.spikes])
        if bar is not None:
            bar.update()
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}", acc=f"{correct / seen:.3f}",
                            samples_s=f"{seen / (time.perf_counter() - start):.0f}")
    elapsed = time.perf_counter() - start
    if bar is not None:
        bar.close()
    activity = np.asarray(trace["activity"][-len(losses):]).mean(axis=0)
    loss, dropped, dropped_input = float(np.mean(losses)), np.sum(dropped, axis=0), loader.dropped
    if ddp is not None:  # every rank's figures: sums, and means over ranks
        totals = ddp.sum([correct, seen, dropped_input, elapsed, *(activity * seen), *dropped])
        correct, seen, dropped_input, elapsed = totals[0], totals[1], totals[2], totals[3] / ddp.size
        activity, dropped = totals[4:4 + len(activity)] / seen, totals[4 + len(activity):]
    layers = len(dropped) // 2
    return {"epoch": epoch + 1, "loss": loss, "train_acc": float(correct / seen),
            "samples_per_s": float(seen / elapsed), "seconds": elapsed,
            "activity": [float(a) for a in activity],
            "dropped_hidden": [int(d) for d in dropped[:layers]],
            "dropped_candidates": [int(d) for d in dropped[layers:]],
            "dropped_input": int(dropped_input)}


def main(argv=None) -> dict:
    """``python -m saltatory.train`` with the arguments ``argv``: trains, evaluates, writes the
    plots and summary.json, and returns the summary."""
    args = parse_args(argv)
    sal.set_num_threads(args.threads)
    rng = np.random.default_rng(args.seed)
    train, test, n_classes = load_datasets(args, rng)
    net = build_network(args, train.n_units, n_classes)
    opt = sal.optim.Adam(net.parameters(), lr=args.lr)
    schedule = sal.Theta2Schedule(net) if args.theta2_schedule else None
    ddp, rank, world_size = None, 0, 1
    if args.distributed:
        from saltatory import distributed

        ddp = distributed.DataParallel(net)
        rank, world_size = ddp.rank, ddp.size
        if args.batch_size < world_size:
            raise SystemExit(f"saltatory.train: --batch-size {args.batch_size} is smaller than the "
                             f"{world_size} ranks")
    train_loader = data.Loader(train, args.batch_size, shuffle=True, seed=args.seed, rank=rank,
                               world_size=world_size)
    test_loader = data.Loader(test if ddp is None else ddp.shard(test), args.batch_size, seed=args.seed)
    architecture = {key: getattr(args, key) for key in _ARCHITECTURE}
    say = print if rank == 0 else (lambda *_args, **_kwargs: None)  # only rank 0 prints
    if rank == 0:
        _ensure_writable("--out", args.out)
        if args.checkpoint_dir:
            _ensure_writable("--checkpoint-dir", args.checkpoint_dir)

    history, trace, first_epoch = [], {"loss": [], "activity": []}, 0
    checkpoint = os.path.join(args.checkpoint_dir, "last.ckpt") if args.checkpoint_dir else None
    # only no file at all starts afresh: a dangling link or a link loop is an unusable checkpoint
    found = bool(args.resume and os.path.lexists(checkpoint))
    if ddp is not None and args.resume:  # rank 0 decides; every rank must see the same file
        found = bool(ddp.comm.bcast(found, root=0))
        missing = ddp.sum([found and not os.path.lexists(checkpoint)])[0]
        if missing:
            raise SystemExit(f"saltatory.train: {checkpoint} is not visible on every rank; "
                             f"--checkpoint-dir must be on a file system all nodes share")
    if found:
        try:  # the network and schedule it was made with are checked first, then it is loaded
            saved_extra = sal.read_checkpoint(checkpoint)[1].get("extra")
            if not isinstance(saved_extra, dict):
                raise sal.CheckpointError(f"{checkpoint}: meta needs an object extra")
            saved = saved_extra.get("architecture")
            if isinstance(saved, dict):  # checkpoints from before --neuron trained the LIF
                saved.setdefault("neuron", "lif")
                saved.setdefault("learn_neuron", False)  # and before --learn-neuron, fixed neurons
            if saved != _as_saved(architecture):
                raise SystemExit(f"saltatory.train: {checkpoint} was made with {saved}, this run has "
                                 f"{architecture}")
            saved_schedule = saved_extra.get("lr_schedule", ["constant"])  # before schedules
            if saved_schedule != _as_saved(_lr_schedule(args)):
                raise SystemExit(f"saltatory.train: {checkpoint} was made with the learning-rate "
                                 f"schedule {saved_schedule} ([name, lr, epochs]), this run has "
                                 f"{_lr_schedule(args)}")
            meta = sal.load_checkpoint(checkpoint, net, opt, rng=rng, schedule=schedule)
        except OSError as exc:
            raise SystemExit(f"saltatory.train: cannot resume from {checkpoint}: {exc.strerror}") from None
        except sal.CheckpointError as exc:
            raise SystemExit(f"saltatory.train: cannot resume: {exc}") from None
        extra = meta["extra"]
        history, trace, first_epoch = extra.get("history"), extra.get("trace"), meta["epoch"]
        if not (isinstance(history, list) and isinstance(trace, dict)
                and all(isinstance(trace.get(k), list) for k in ("loss", "activity"))):
            raise SystemExit(f"saltatory.train: cannot resume: {checkpoint} holds no training history "
                             "(it was not written by this command)")
        if ddp is not None and not ddp.in_sync():
            raise SystemExit(f"saltatory.train: the ranks loaded different weights from {checkpoint}")
        say(f"resumed from {checkpoint} after epoch {first_epoch}")
    elif args.resume:
        say(f"no checkpoint at {checkpoint}: starting from scratch")

    say(f"saltatory {sal.__version__}: {args.dataset}, {len(train)} train / {len(test)} test, "
        f"T={args.steps}, {train.n_units}-{'-'.join(map(str, args.hidden))}-{n_classes}"
        f"{' recurrent' if args.recurrent else ''} {args.neuron}, mode={args.mode}, device={args.device}, "
        f"input capacity {train.capacity}{f', {world_size} MPI ranks' if ddp else ''}")
    # SIGTERM (a scheduler's or kill's stop) ends the run as Ctrl-C does: the checkpoint of the
    # last whole epoch stays, and the run stops with a message
    previous_sigterm = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        for epoch in range(first_epoch, args.epochs):
            if args.lr_schedule == "cosine":
                opt.lr = epoch_lr(args, epoch)
            record = train_epoch(net, opt, train_loader, epoch, trace, schedule, not args.no_progress, ddp)
            record["test_acc"], record["lr"] = evaluate(net, test_loader, ddp), opt.lr
            history.append(record)
            if checkpoint and rank == 0:  # saved before the epoch's line, which thus vouches for it
                _remove_stale_temporaries(checkpoint)
                sal.save_checkpoint(checkpoint, net, opt, epoch=epoch + 1, rng=rng, schedule=schedule,
                                    extra={"architecture": architecture, "history": history,
                                           "trace": trace, "lr_schedule": _lr_schedule(args)})
            say(f"epoch {epoch + 1}: loss {record['loss']:.4f}  train acc {record['train_acc']:.4f}  "
                f"test acc {record['test_acc']:.4f}  {record['samples_per_s']:.0f} samples/s  "
                f"hidden activity {record['activity'][0]:.4f}  dropped spikes: input "
                f"{record['dropped_input']}, hidden {sum(record['dropped_hidden'])}, dropped "
                f"candidates {sum(record['dropped_candidates'])}")
    except KeyboardInterrupt:
        where = f"; resume with --resume --checkpoint-dir {args.checkpoint_dir}" if checkpoint else ""
        raise SystemExit(f"\ninterrupted during epoch {len(history) + 1}{where}") from None
    finally:
        signal.signal(signal.SIGTERM, previous_sigterm)

    seconds = sum(h["seconds"] for h in history)
    summary = {"dataset": args.dataset, "mode": args.mode, "epochs": args.epochs,
               "test_acc": history[-1]["test_acc"] if history else None,
               "samples_per_s": len(train) * len(history) / seconds if seconds else None,
               "train_seconds": seconds, "threads": sal.build_info()["cpu_threads"],
               "ranks": world_size, "history": history, "args": vars(args)}
    if rank != 0:  # rank 0 writes the files and the summary line
        return summary
    with open(os.path.join(args.out, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
    if not args.no_plots and history:
        from saltatory import plots

        plots.plot_curves(history, trace, os.path.join(args.out, "curves.png"))
        plots.plot_activity(trace, os.path.join(args.out, "activity.png"))
        spikes, _ = next(iter(test_loader.epoch(0)))
        net(spikes)
        plots.plot_raster([spikes] + net.spikes, os.path.join(args.out, "raster.png"),
                          names=["input"] + [f"hidden {i}" for i in range(len(net.spikes))])
    print(f"summary: {args.dataset} {args.mode}: test accuracy {summary['test_acc']:.4f} after "
          f"{args.epochs} epochs, training throughput {summary['samples_per_s']:.0f} samples/s "
          f"(forward + backward + Adam, {summary['threads']} threads"
          f"{f' x {world_size} ranks' if ddp else ''}); plots and summary.json in "
          f"{args.out}")
    return summary


if __name__ == "__main__":
    main()
