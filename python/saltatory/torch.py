"""PyTorch interoperability: Saltatory stacks as ``torch.nn.Module``s trained by torch optimisers.

One ``torch.autograd.Function`` runs the whole-sequence forward and the sparse BPTT of a stack in
C++. Module parameters are torch tensors that share memory with the stack's numpy arrays (zero
copy, so torch optimisers update what C++ reads); inputs and outputs cross through DLPack without
copies on the CPU.

Gradients at the module boundary, for dense time-major tensors [T, B, N]:
    output spikes S (no readout):  dL/d(entry k of list (t, b)) = G[t, b, ids[t, b, k]] for every
                                   listed entry (spikes and gradient candidates)
    input x (if it requires grad): dL/dx[t, b, i] = the method's input-entry gradient where input
                                   i spikes at (t, b), 0 elsewhere (the sparse method defines no
                                   gradient for silent inputs)
Chain layers inside one ``SparseSequential`` rather than module after module: inside a stack
the candidates of every layer carry gradients; between modules only the listed entries do.
"""

from __future__ import annotations

import numpy as np

try:
    import torch
except ImportError as exc:  # pragma: no cover - exercised only without torch
    raise ImportError("saltatory.torch needs PyTorch: pip install torch "
                      "(or pip install saltatory[bench])") from exc

from . import _core
from .nn import LIF, Readout, RecurrentLIF, Sequential
from .spikes import SpikeTensor

_PARAM_SLOTS = ("weight", "weight_rec", "bias")


def _dense_numpy(x: torch.Tensor, op: str) -> np.ndarray:
    if x.device.type != "cpu":
        raise ValueError(f"[{op}] input is on {x.device}; this module runs on the CPU")
    if x.dim() != 3:
        raise ValueError(f"[{op}] input must be [T, B, N], got shape {tuple(x.shape)}")
    if not (x.dtype.is_floating_point or x.dtype == torch.bool):
        raise TypeError(f"[{op}] input must be a float or bool tensor, got {x.dtype}")
    return np.from_dlpack(x.detach().contiguous())


class _StackFunction(torch.autograd.Function):
    """forward(module, x, *parameters) -> readout membrane [T, B, C] or dense spikes [T, B, N]."""

    @staticmethod
    def forward(ctx, module, x, *parameters):
        spikes_in = x if isinstance(x, SpikeTensor) else module.to_spikes(x)
        out = module.net(spikes_in)
        ctx.saltatory = module.net._context  # this forward's context: several may be pending
        ctx.save_for_backward(*parameters)  # so that torch refuses backward after in-place changes
        ctx.module, ctx.spikes_in, ctx.dense_input = module, spikes_in, not isinstance(x, SpikeTensor)
        ctx.spikes_out = module.net.spikes[-1] if isinstance(out, SpikeTensor) else None
        result = out.to_dense() if isinstance(out, SpikeTensor) else out
        return torch.from_dlpack(np.ascontiguousarray(result))

    @staticmethod
    def backward(ctx, grad_output):
        if ctx.saltatory.backward_done:
            raise RuntimeError("[SparseSequential] backward through the same forward twice")
        ctx.saved_tensors  # noqa: B018 - raises if a parameter changed in place since forward
        grad = np.ascontiguousarray(np.from_dlpack(grad_output.detach().contiguous()), dtype=np.float32)
        if ctx.spikes_out is not None:  # dense spike gradient -> gradient of each listed entry
            grad = _gather_entries(grad, ctx.spikes_out)
        net = ctx.module.net
        layer_grads = [tuple(None if p is None else np.zeros_like(p) for p in layer._arrays()[:3])
                       for layer in net.layers]
        grads_out = [None] * (len(net.layers) - 1) + [grad]
        want_input = ctx.needs_input_grad[1] and ctx.dense_input
        grad_in = np.zeros(ctx.saltatory.input_shape, np.float32) if want_input else None
        _core.lif_stack_backward(ctx.saltatory, grads_out, layer_grads, grad_in)
        grad_x = None
        if want_input:
            grad_x = torch.from_numpy(_scatter_entries(grad_in, ctx.spikes_in))
        grads = [torch.from_numpy(g) for layer in layer_grads for g in layer if g is not None]
        return (None, grad_x, *grads)


def _listed(spikes: SpikeTensor) -> np.ndarray:
    """[T, B, K] mask of the listed entries (spikes and gradient candidates)."""
    return np.arange(spikes.capacity)[None, None, :] < spikes.n_tot[:, :, None]


def _gather_entries(dense: np.ndarray, spikes: SpikeTensor) -> np.ndarray:
    listed = _listed(spikes)
    entries = np.take_along_axis(dense, np.where(listed, spikes.ids, 0), axis=2)
    return np.where(listed, entries, 0.0).astype(np.float32)


def _scatter_entries(entries: np.ndarray, spikes: SpikeTensor) -> np.ndarray:
    T, B, _ = spikes.shape
    dense = np.zeros((T, B, spikes.n_neurons), np.float32)
    t, b, k = np.nonzero(_listed(spikes))
    np.add.at(dense, (t, b, spikes.ids[t, b, k]), entries[t, b, k])
    return dense


class SparseSequential(torch.nn.Module):
    """A Saltatory stack (LIF / RecurrentLIF layers, optionally a final Readout) as one module.

    ``forward(x)``: x is a dense [T, B, N_in] tensor of 0/1 spikes (binned into lists of
    ``input_capacity``, default the largest list in x) or a ``saltatory.SpikeTensor``. Returns the
    readout membrane [T, B, C], or the last layer's dense spikes [T, B, N]. Options are those of
    ``saltatory.Sequential``; ``.spikes`` and ``.dropped`` hold the last forward's lists and drops.
    """

    def __init__(self, *layers, coupling: str = "same_step", mode: str = "sparse", overflow: str = "lowest",
                 seed: int = 0, input_capacity: int | None = None, recompute_segment: int | str = 0):
        super().__init__()
        self.net = Sequential(*layers, coupling=coupling, mode=mode, overflow=overflow, seed=seed,
                              recompute_segment=recompute_segment)
        self.input_capacity = input_capacity
        self._order = []
        for i, layer in enumerate(self.net.layers):
            for slot in _PARAM_SLOTS:
                param = getattr(layer, slot, None)
                if param is not None:  # a torch view of the numpy array C++ reads: no copy
                    name = f"layers_{i}_{slot}"
                    self.register_parameter(name, torch.nn.Parameter(torch.from_numpy(param.data)))
                    self._order.append(name)

    def to_spikes(self, x: torch.Tensor) -> SpikeTensor:
        dense = _dense_numpy(x, "SparseSequential")
        return SpikeTensor.from_dense(dense, self.input_capacity, overflow=self.net.overflow,
                                      seed=self.net.seed)

    def forward(self, x):
        if not isinstance(x, (torch.Tensor, SpikeTensor)):
            raise TypeError(f"[SparseSequential] input must be a torch.Tensor or SpikeTensor, got "
                            f"{type(x).__name__}")
        for name in self._order:
            param = getattr(self, name)
            if param.dtype != torch.float32 or param.device.type != "cpu" or not param.is_contiguous():
                raise ValueError(f"[SparseSequential] parameter {name} must stay a contiguous float32 "
                                 f"CPU tensor, is {param.dtype} on {param.device}")
        return _StackFunction.apply(self, x, *(getattr(self, name) for name in self._order))

    @property
    def spikes(self) -> list[SpikeTensor]:
        return self.net.spikes

    @property
    def dropped(self) -> list[int]:
        return self.net.dropped


class SparseLIF(SparseSequential):
    """One feed-forward LIF layer (see ``saltatory.LIF`` for the options) as a module:
    dense spikes [T, B, n_in] -> dense spikes [T, B, n_out]."""

    def __init__(self, n_in: int, n_out: int, capacity: int | None = None, *, mode: str = "sparse",
                 input_capacity: int | None = None, recompute_segment: int | str = 0, **options):
        super().__init__(LIF(n_in, n_out, capacity, **options), mode=mode, input_capacity=input_capacity,
                         recompute_segment=recompute_segment)


class SparseRecurrentLIF(SparseSequential):
    """One recurrent LIF layer (see ``saltatory.RecurrentLIF``) as a module."""

    def __init__(self, n_in: int, n_out: int, capacity: int | None = None, *, mode: str = "sparse",
                 input_capacity: int | None = None, recompute_segment: int | str = 0, **options):
        super().__init__(RecurrentLIF(n_in, n_out, capacity, **options), mode=mode,
                         input_capacity=input_capacity, recompute_segment=recompute_segment)


__all__ = ["SparseSequential", "SparseLIF", "SparseRecurrentLIF", "LIF", "RecurrentLIF", "Readout"]
