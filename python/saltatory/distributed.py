"""Data-parallel training over MPI, through mpi4py (no transport of our own).

Every rank (process) holds the whole network. Each global batch is split between the ranks
(``Loader(..., rank=, world_size=)``), every rank runs forward and BPTT on its share, and
``DataParallel.allreduce_gradients`` replaces each gradient with the batch-weighted mean over
ranks, sum_r n_r g_r / sum_r n_r, in one MPI all-reduce (in float64). Since the ranks start from
the same weights (broadcast from rank 0) and apply the same optimiser to the same gradient, they
stay identical, and training follows the single-process run on the same global batch up to the
order of float summation. (Random input encodings and random overflow draw a stream per rank, so
with those the ranks see other, equally distributed, random spikes than one process would.) An
uncaught exception on any rank aborts every rank (MPI_Abort) instead of leaving them waiting::

    from saltatory import distributed
    ddp = distributed.DataParallel(net)                    # broadcasts rank 0's parameters
    loader = data.Loader(train, 256, shuffle=True, rank=ddp.rank, world_size=ddp.size)
    for spikes, labels in loader:                          # this rank's share of 256
        loss, grad = losses.membrane_cross_entropy(net(spikes), labels)
        net.zero_grad(); net.backward(grad)
        ddp.allreduce_gradients(len(labels))
        opt.step()

Launch with ``mpirun -np 2 python train.py`` (one machine) or with a hostfile across machines;
see docs/scaling.md. Needs MPI and mpi4py: ``apt-get install openmpi-bin libopenmpi-dev`` and
``pip install mpi4py`` (or ``pip install 'saltatory[mpi]'``).
"""

from __future__ import annotations

import hashlib
import sys

import numpy as np


def _mpi():
    try:
        from mpi4py import MPI
    except ImportError as exc:
        raise ImportError("saltatory.distributed needs mpi4py on an MPI installation: apt-get install "
                          "openmpi-bin libopenmpi-dev, then pip install mpi4py") from exc
    return MPI


class DataParallel:
    """Keeps the replicas of ``net`` on the ranks of ``comm`` (default: every rank) in step.

    Construction broadcasts rank 0's parameters and decay constants to every rank.
    """

    def __init__(self, net, comm=None):
        self.MPI = _mpi()
        self.comm = comm if comm is not None else self.MPI.COMM_WORLD
        self.rank, self.size = self.comm.Get_rank(), self.comm.Get_size()
        self.net = net
        self._buffer = np.empty(sum(p.data.size for p in net.parameters()) + 1, np.float64)
        if self.size > 1:
            self._abort_on_uncaught_exceptions()
        self.broadcast_parameters()

    def _abort_on_uncaught_exceptions(self) -> None:
        previous = sys.excepthook

        def hook(kind, value, traceback):
            previous(kind, value, traceback)
            sys.stderr.flush()
            self.comm.Abort(1)

        sys.excepthook = hook

    @property
    def is_main(self) -> bool:
        """Whether this is rank 0, the one that prints and writes files."""
        return self.rank == 0

    def broadcast_parameters(self, root: int = 0) -> None:
        """Copies rank ``root``'s weights, biases, alphas and thresholds into every rank's network."""
        for p in self.net.parameters():
            self.comm.Bcast(p.data, root=root)
        for array in self._per_neuron():
            self.comm.Bcast(array, root=root)

    def _per_neuron(self) -> list[np.ndarray]:
        """Every layer's per-neuron model arrays (alpha, theta1, alpha_syn, rho, b, a), learnable or
        not."""
        return [p.data for layer in self.net.layers for p in layer._per_neuron_arrays().values()]

    def allreduce_gradients(self, local_batch: int) -> int:
        """Sets every parameter's ``.grad`` to sum_r n_r g_r / sum_r n_r over the ranks, where g_r
        is rank r's gradient (a mean over its ``local_batch`` = n_r samples). Every rank must call
        it once per step. Returns the global batch size."""
        if int(local_batch) < 0:
            raise ValueError(f"[DataParallel.allreduce_gradients] local_batch must be >= 0, got {local_batch}")
        flat, offset = self._buffer, 0
        params = self.net.parameters()
        for p in params:
            flat[offset:offset + p.grad.size] = p.grad.ravel()
            offset += p.grad.size
        flat[:-1] *= local_batch
        flat[-1] = local_batch
        self.comm.Allreduce(self.MPI.IN_PLACE, flat, op=self.MPI.SUM)
        total = int(flat[-1])
        if total == 0:
            raise ValueError("[DataParallel.allreduce_gradients] no rank had any samples")
        flat[:-1] /= total
        offset = 0
        for p in params:
            np.copyto(p.grad, flat[offset:offset + p.grad.size].reshape(p.grad.shape), casting="same_kind")
            offset += p.grad.size
        return total

    def sum(self, values) -> np.ndarray:
        """Element-wise sum over ranks of ``values``, a small array of numbers (float64): for
        metrics. Every rank must call it."""
        local = np.ascontiguousarray(values, dtype=np.float64)
        out = np.empty_like(local)
        self.comm.Allreduce(local, out, op=self.MPI.SUM)
        return out

    def shard(self, dataset):
        """This rank's contiguous 1/size part of ``dataset`` (for evaluation: every sample is seen
        by exactly one rank)."""
        return dataset.subset(np.array_split(np.arange(len(dataset)), self.size)[self.rank])

    def in_sync(self) -> bool:
        """Whether every rank holds bitwise the same parameters, alphas and thresholds (a debugging
        check)."""
        arrays = [p.data for p in self.net.parameters()] + self._per_neuron()
        digest = np.array([int.from_bytes(hashlib.sha256(a.tobytes()).digest()[:8], "little", signed=True)
                           for a in arrays], np.int64)
        low = np.empty_like(digest)
        high = np.empty_like(digest)
        self.comm.Allreduce(digest, low, op=self.MPI.MIN)
        self.comm.Allreduce(digest, high, op=self.MPI.MAX)
        return bool(np.all(low == high))
