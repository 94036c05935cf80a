"""Batching: in-memory datasets and a loader that shuffles and prefetches in a background thread.

A dataset has ``labels``, ``n_units``, ``n_steps``, ``capacity``, ``len()``, ``subset(indices)``
and ``spikes(indices, seed)`` -> SpikeTensor [T, B, K]. The loader's order in epoch e is a permutation drawn from (seed, e) alone,
and each batch's overflow seed from (seed, e, batch), so an epoch is reproducible on its own
(a resumed run sees exactly the batches the uninterrupted run saw).
"""

from __future__ import annotations

import atexit
import queue
import threading
import weakref

import numpy as np

from ..spikes import SpikeTensor
from .._checks import integers
from .encode import latency_encode, rate_encode


# Producers still running at exit. A daemon thread inside the C++ binning (GIL released) that
# outlives the interpreter is killed while unwinding C++ frames, which aborts the process
# ("terminate called without an active exception"); so exit stops and joins them first.
_producers: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # thread -> its stop event


@atexit.register
def _stop_producers() -> None:
    for thread, stop in list(_producers.items()):
        stop.set()
        if thread.is_alive():  # registered before start: an interrupt may fall in between
            thread.join(timeout=60)  # a batch takes far less; a dataset that hangs must not hang exit


class DenseDataset:
    """Dense time-major 0/1 ``spikes`` [T, S, N] and ``labels`` [S]; batches are lists of
    ``capacity`` (default: the largest over the data set, nothing dropped)."""

    def __init__(self, spikes: np.ndarray, labels, capacity: int | None = None):
        spikes = np.asarray(spikes)
        self.labels = integers(labels, "[DenseDataset] label").astype(np.int32)
        if spikes.ndim != 3 or spikes.shape[1] != len(self.labels):
            raise ValueError(f"[DenseDataset] spikes must be [T, S, N] with S = {len(self.labels)} "
                             f"labels, got shape {spikes.shape}")
        self.dense = spikes
        self.n_steps, _, self.n_units = spikes.shape
        self.capacity = capacity or max(1, int(np.count_nonzero(spikes, axis=2).max(initial=0)))

    def __len__(self) -> int:
        return len(self.labels)

    def spikes(self, indices, seed: int = 0) -> SpikeTensor:
        """The samples ``indices`` as one batch; ``seed`` draws the subset a full list keeps."""
        return SpikeTensor.from_dense(self.dense[:, np.asarray(indices)], self.capacity,
                                      overflow="random", seed=seed)

    def subset(self, indices) -> "DenseDataset":
        """A dataset of the samples ``indices`` (same capacity)."""
        indices = np.asarray(indices, dtype=np.int64)
        return DenseDataset(self.dense[:, indices], self.labels[indices], self.capacity)


class ImageDataset:
    """``images`` [S, ...] and ``labels`` [S], encoded per batch into ``n_steps`` steps by
    ``encoding``: "latency" (linear time-to-first-spike, ``latency_encode``) or "rate"
    (``rate_encode``), with the further keyword options passed to the encoder. ``capacity``
    defaults to the largest list over the whole data set (nothing dropped)."""

    def __init__(self, images: np.ndarray, labels, n_steps: int, *, encoding: str = "latency",
                 capacity: int | None = None, **encoder_options):
        if encoding not in ("latency", "rate"):
            raise ValueError(f"[ImageDataset] encoding must be 'latency' or 'rate', got {encoding!r}")
        self.images = np.asarray(images)
        self.labels = integers(labels, "[ImageDataset] label").astype(np.int32)
        if len(self.images) != len(self.labels):
            raise ValueError(f"[ImageDataset] {len(self.images)} images but {len(self.labels)} labels")
        self.n_steps, self.encoding, self.options = int(n_steps), encoding, encoder_options
        self.n_units = int(np.prod(self.images.shape[1:]))
        if capacity is None:
            capacity = max((int(np.count_nonzero(self._encode(chunk, 0), axis=2).max(initial=1))
                            for chunk in np.array_split(np.arange(len(self)), max(1, len(self) // 512))),
                           default=1)
        self.capacity = int(capacity)

    def __len__(self) -> int:
        return len(self.labels)

    def _encode(self, indices, seed: int) -> np.ndarray:
        if self.encoding == "latency":
            return latency_encode(self.images[indices], self.n_steps, **{"linear": True, **self.options})
        return rate_encode(self.images[indices], self.n_steps, seed=seed, **self.options)

    def spikes(self, indices, seed: int = 0) -> SpikeTensor:
        """The samples ``indices`` encoded as one batch; ``seed`` draws the rate code's spikes and
        the subset a full list keeps."""
        return SpikeTensor.from_dense(self._encode(np.asarray(indices), seed), self.capacity,
                                      overflow="random", seed=seed)

    def subset(self, indices) -> "ImageDataset":
        """A dataset of the samples ``indices`` (same encoding and capacity)."""
        indices = np.asarray(indices, dtype=np.int64)
        return ImageDataset(self.images[indices], self.labels[indices], self.n_steps,
                            encoding=self.encoding, capacity=self.capacity, **self.options)


def _seed(*words: int) -> int:
    return int(np.random.SeedSequence(list(words)).generate_state(1, np.uint64)[0] >> 1)


class Loader:
    """Batches (SpikeTensor, labels int32) of ``dataset``, built ``prefetch`` ahead in a thread
    (0: in the caller's thread).

    Batches hold ``batch_size`` samples, in a random order per epoch with ``shuffle`` (drawn from
    ``seed`` and the epoch), else in order; ``drop_last`` skips a final smaller batch.
    ``epoch(e)`` iterates epoch e; plain iteration runs epochs 0, 1, 2, ... in turn. ``dropped``
    counts the events the last epoch's batches lost to capacity or to the time window.

    Data-parallel training: with ``world_size`` > 1, ``batch_size`` is the global batch and rank
    ``rank`` gets its contiguous share of each one (sizes differ by at most one). Every rank draws
    the same order, so the ranks together see exactly the single-process batches' samples (random
    encodings and random overflow draw a stream per rank, though). A final batch
    smaller than ``world_size`` is skipped on every rank, so that every rank steps equally often.
    """

    def __init__(self, dataset, batch_size: int, *, shuffle: bool = False, seed: int = 0,
                 drop_last: bool = False, prefetch: int = 2, rank: int = 0, world_size: int = 1):
        if batch_size <= 0 or prefetch < 0:
            raise ValueError(f"[Loader] batch_size must be positive and prefetch >= 0, got "
                             f"{batch_size}, {prefetch}")
        if not 0 <= rank < world_size or world_size > batch_size:
            raise ValueError(f"[Loader] need 0 <= rank < world_size <= batch_size, got rank {rank}, "
                             f"world_size {world_size}, batch_size {batch_size}")
        self.dataset, self.batch_size, self.shuffle, self.seed = dataset, int(batch_size), shuffle, int(seed)
        self.drop_last, self.prefetch = drop_last, int(prefetch)
        self.rank, self.world_size = int(rank), int(world_size)
        self.dropped = 0
        self._next_epoch = 0

    def __len__(self) -> int:
        full, rest = divmod(len(self.dataset), self.batch_size)
        return full + (0 if self.drop_last or rest < max(1, self.world_size) else 1)

    def order(self, epoch: int) -> np.ndarray:
        """The sample order of epoch ``epoch``: a permutation from (seed, epoch) with ``shuffle``,
        else 0, 1, 2, ..."""
        n = len(self.dataset)
        if not self.shuffle:
            return np.arange(n)
        return np.random.default_rng(_seed(self.seed, epoch)).permutation(n)

    def _batches(self, epoch: int):
        order = self.order(epoch)
        for b in range(len(self)):
            idx = order[b * self.batch_size:(b + 1) * self.batch_size]
            seed = _seed(self.seed, epoch, b)
            if self.world_size > 1:  # this rank's share; its own stream for random encodings
                idx = np.array_split(idx, self.world_size)[self.rank]
                seed = _seed(self.seed, epoch, b, self.rank)
            yield self.dataset.spikes(idx, seed), self.dataset.labels[idx]

    def epoch(self, epoch: int):
        """Iterates the batches (spikes, labels) of epoch ``epoch``; plain iteration then goes on
        with the next epoch."""
        self._next_epoch = epoch + 1
        self.dropped = 0
        batches = self._batches(epoch) if self.prefetch == 0 else self._prefetched(epoch)
        for spikes, labels in batches:
            self.dropped += spikes.dropped
            yield spikes, labels

    def __iter__(self):
        return self.epoch(self._next_epoch)

    def _prefetched(self, epoch: int):
        """Runs ``_batches`` in a daemon thread (the C++ binning releases the GIL); errors are
        re-raised here, and abandoning the iterator stops the thread."""
        ready: queue.Queue = queue.Queue(self.prefetch)
        stop = threading.Event()
        done = object()

        def offer(item) -> bool:  # False once the consumer has gone
            while not stop.is_set():
                try:
                    ready.put(item, timeout=0.1)
                    return True
                except queue.Full:
                    pass
            return False

        def produce():
            try:
                for item in self._batches(epoch):
                    if not offer(item):
                        return
                offer(done)
            except BaseException as exc:  # handed to the consumer
                offer(exc)

        thread = threading.Thread(target=produce, name="saltatory-loader", daemon=True)
        _producers[thread] = stop
        thread.start()
        try:
            while (item := ready.get()) is not done:
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            stop.set()
