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
from .nn import (_DECAYS, _SLOTS, LIF, AdaptiveLIF, CubaLIF, Readout, RecurrentAdaptiveLIF,
                 RecurrentCubaLIF, RecurrentLIF, Sequential, State, _clamp_grad, _context_spikes,
                 _output)
from .spikes import SpikeTensor



def _dense_numpy(x: torch.Tensor, op: str) -> np.ndarray:
    if x.device.type != "cpu":
        raise ValueError(f"[{op}] input is on {x.device}; this module runs on the CPU")
    if x.dim() != 3:
        raise ValueError(f"[{op}] input must be [T, B, N], got shape {tuple(x.shape)}")
    if x.layout != torch.strided:
        raise TypeError(f"[{op}] input must be a dense (strided) tensor, got layout {x.layout}")
    if not (x.dtype.is_floating_point or x.dtype == torch.bool):
        raise TypeError(f"[{op}] input must be a float or bool tensor, got {x.dtype}")
    if x.dtype in (torch.float16, torch.bfloat16):  # numpy has no bfloat16; float32 holds both exactly
        x = x.float()
    return np.from_dlpack(x.detach().contiguous())


class _StackFunction(torch.autograd.Function):
    """forward(module, x, state, final, *parameters) -> readout membrane [T, B, C] or dense spikes
    [T, B, N]; continues from ``state`` (a State, or None) and puts the final state in the dict
    ``final`` (when given) under "state"."""

    @staticmethod
    def forward(ctx, module, x, state, final, *parameters):
        spikes_in = x if isinstance(x, SpikeTensor) else module.to_spikes(
            x, 0 if state is None else state.steps)
        ctx.saltatory = module.net._forward(spikes_in, state)  # this call's own context (several
        if final is not None:                                   # may be pending, from several
            final["state"] = State._from_core(ctx.saltatory.final_state())  # threads)
        module.net._adopt(ctx.saltatory)
        out = _output(ctx.saltatory, _context_spikes(ctx.saltatory))
        ctx.save_for_backward(*parameters)  # so that torch refuses backward after in-place changes
        ctx.layer_shapes = [tuple(None if p is None else p.data.shape for p in layer._slots())
                            for layer in module.net.layers]
        # the learnable decays as forward read them before its clamp, by slot: their gradients pass
        # the clamp's
        ctx.decays = [{_SLOTS.index(name): layer._per_neuron_arrays()[name].data.copy()
                       for name in _DECAYS if layer.parameters().get(name) is not None}
                      for layer in module.net.layers]
        ctx.spikes_in, ctx.dense_input = spikes_in, not isinstance(x, SpikeTensor)
        ctx.spikes_out = _context_spikes(ctx.saltatory)[-1] if isinstance(out, SpikeTensor) else None
        # (the readout is a read-only view of the context: torch gets a copy it may write)
        return torch.from_numpy(out.to_dense() if isinstance(out, SpikeTensor) else out.copy())

    @staticmethod
    def backward(ctx, grad_output):
        if ctx.saltatory.backward_done:
            raise RuntimeError("[SparseSequential] backward through the same forward twice")
        ctx.saved_tensors  # noqa: B018 - raises if a parameter changed in place since forward
        grad = np.ascontiguousarray(grad_output.detach().cpu().numpy(), dtype=np.float32)
        if ctx.spikes_out is not None:  # dense spike gradient -> gradient of each listed entry
            grad = ctx.spikes_out.gather(grad)
        layer_grads = [tuple(None if shape is None else np.zeros(shape, np.float32) for shape in shapes)
                       for shapes in ctx.layer_shapes]
        grads_out = [None] * (len(layer_grads) - 1) + [grad]
        want_input = ctx.needs_input_grad[1] and ctx.dense_input
        grad_in = np.zeros(ctx.saltatory.input_shape, np.float32) if want_input else None
        _core.lif_stack_backward(ctx.saltatory, grads_out, layer_grads, grad_in)
        layer_grads = [tuple(_clamp_grad(decays[i], g) if i in decays else g for i, g in enumerate(grads))
                       for grads, decays in zip(layer_grads, ctx.decays)]
        grad_x = None
        if want_input:
            grad_x = torch.from_numpy(ctx.spikes_in.scatter(grad_in))
        grads = [torch.from_numpy(g) for layer in layer_grads for g in layer if g is not None]
        return (None, grad_x, None, None, *grads)


class SparseSequential(torch.nn.Module):
    """A Saltatory stack (LIF, CubaLIF and AdaptiveLIF layers and their recurrent forms, optionally
    a final Readout) as one module.

    ``forward(x)``: x is a dense [T, B, N_in] tensor of 0/1 spikes (binned into lists of
    ``input_capacity``, default the largest list in x) or a ``saltatory.SpikeTensor``. Returns the
    readout membrane [T, B, C], or the last layer's dense spikes [T, B, N]. The layers and the
    options coupling, mode, overflow, seed and recompute_segment are those of
    ``saltatory.Sequential`` (on the CPU); ``.spikes``, ``.dropped`` and ``.dropped_candidates``
    hold the last forward's lists and drops.

    The module's tensors are the truth: parameters ``layers_{i}_weight``, ``layers_{i}_weight_rec``
    and ``layers_{i}_bias`` (and ``layers_{i}_alpha`` / ``layers_{i}_theta1`` /
    ``layers_{i}_alpha_syn`` [n_out] for layers made with ``learn_alpha`` / ``learn_threshold`` /
    ``learn_alpha_syn``; ``layers_{i}_rho`` / ``layers_{i}_b`` / ``layers_{i}_a`` with
    ``learn_adaptation``), and
    buffers for the others: ``layers_{i}_alpha``, ``layers_{i}_gain``, (spiking layers)
    ``layers_{i}_theta1``, (CUBA layers) ``layers_{i}_alpha_syn`` and (adaptive layers)
    ``layers_{i}_rho``, ``layers_{i}_b`` and ``layers_{i}_a`` [n_out],
    so ``state_dict`` carries everything that changes outputs
    (theta2, which only selects gradient candidates, stays on ``module.net.layers[i]`` where a
    ``Theta2Schedule`` moves it). Each forward reads their current storage (so ``.data`` assignment,
    replaced parameters, ``deepcopy``, ``pickle``, ``share_memory`` and ``.double().float()``
    work); they must be float32 CPU tensors (this module runs on the CPU), else forward raises.
    ``torch.compile`` runs the stack outside the compiled graph (a graph break).
    """

    def __init__(self, *layers, coupling: str = "same_step", mode: str = "sparse", overflow: str = "random",
                 seed: int = 0, input_capacity: int | None = None, recompute_segment: int | str = 0):
        super().__init__()
        self.net = Sequential(*layers, coupling=coupling, mode=mode, overflow=overflow, seed=seed,
                              recompute_segment=recompute_segment)
        self.input_capacity = input_capacity
        self._order = []  # the parameters, in the order C++ returns their gradients
        for i, layer in enumerate(self.net.layers):
            for slot, param in layer.parameters().items():
                name = f"layers_{i}_{slot}"
                self.register_parameter(name, torch.nn.Parameter(torch.tensor(param.data)))
                self._order.append(name)
            for name, value in _layer_buffers(layer).items():
                self.register_buffer(f"layers_{i}_{name}", torch.tensor(value, dtype=torch.float32))

    def to_spikes(self, x: torch.Tensor, first_step: int = 0) -> SpikeTensor:
        """The dense 0/1 CPU tensor ``x`` [T, B, N_in] as input lists of ``input_capacity``, its
        step 0 being step ``first_step`` of the sequence (the random overflow policy draws by it)."""
        dense = _dense_numpy(x, "SparseSequential")
        return SpikeTensor.from_dense(dense, self.input_capacity, overflow=self.net.overflow,
                                      seed=self.net.seed, first_step=first_step)

    def forward(self, x, state: State | None = None, return_state: bool = False):
        """Runs the stack on ``x``, a dense [T, B, N_in] tensor of 0/1 spikes or a SpikeTensor;
        returns the readout membrane [T, B, C] or the last layer's dense spikes [T, B, N].
        ``state`` and ``return_state`` are those of ``saltatory.Sequential.forward``: continue
        from a ``saltatory.State`` and return ``(output, state)`` (truncated BPTT: backward treats
        the state as a constant)."""
        if not isinstance(x, (torch.Tensor, SpikeTensor)):
            raise TypeError(f"[SparseSequential] input must be a torch.Tensor or SpikeTensor, got "
                            f"{type(x).__name__}")
        if state is not None and not isinstance(state, State):
            raise TypeError(f"[SparseSequential] state must be a saltatory State, got "
                            f"{type(state).__name__}")
        final = {} if return_state else None
        out = self._run(x, state, final)
        return (out, final["state"]) if return_state else out

    @torch.compiler.disable
    def _run(self, x, state, final):
        self._bind()
        return _StackFunction.apply(self, x, state, final,
                                    *(getattr(self, name) for name in self._order))

    def _bind(self) -> None:
        """Points the stack at the current storage of the module's parameters and buffers."""
        for i, layer in enumerate(self.net.layers):
            params = layer.parameters()
            for slot, param in params.items():
                param.data = _host_array(self, f"layers_{i}_{slot}", param.grad.shape)
            for slot in _layer_buffers(layer):
                if slot == "gain":
                    layer.gain = float(_host_array(self, f"layers_{i}_gain", ()))
                else:  # a fixed per-neuron array (alpha, theta1, alpha_syn, rho, b, a)
                    setattr(layer, slot, _host_array(self, f"layers_{i}_{slot}", (layer.n_out,)))

    @property
    def spikes(self) -> list[SpikeTensor]:
        """Each layer's output lists of the last forward."""
        return self.net.spikes

    @property
    def dropped(self) -> list[int]:
        """Spikes each layer lost to capacity in the last forward."""
        return self.net.dropped

    @property
    def dropped_candidates(self) -> list[int]:
        """Gradient candidates each layer lost to capacity in the last forward."""
        return self.net.dropped_candidates


def _layer_buffers(layer) -> dict:
    """What changes a layer's outputs without being learnable."""
    values = {"gain": layer.gain}
    learnable = layer.parameters()
    for name, array in layer._per_neuron_arrays().items():
        if name not in learnable:
            values[name] = array.data
    return values


def _host_array(module: SparseSequential, name: str, shape: tuple) -> np.ndarray:
    """A numpy view of tensor ``name``'s current storage, which must be float32, contiguous, on
    the CPU and of the shape the stack was built with."""
    tensor = getattr(module, name)
    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f"[SparseSequential] {name} must be a torch tensor, is {type(tensor).__name__}")
    if tensor.dtype != torch.float32 or tensor.device.type != "cpu" or not tensor.is_contiguous():
        raise ValueError(f"[SparseSequential] {name} must be a contiguous float32 CPU tensor (the "
                         f"module runs on the CPU), is {tensor.dtype} on {tensor.device}"
                         f"{'' if tensor.is_contiguous() else ', not contiguous'}")
    if tuple(tensor.shape) != tuple(shape):
        raise ValueError(f"[SparseSequential] {name} must have shape {tuple(shape)}, has {tuple(tensor.shape)}")
    return tensor.detach().numpy()


class SparseLIF(SparseSequential):
    """One feed-forward LIF layer as a module: dense spikes [T, B, n_in] -> dense spikes
    [T, B, n_out]. n_in, n_out, capacity and the keyword options are those of ``saltatory.LIF``;
    mode, input_capacity and recompute_segment those of ``SparseSequential``."""

    def __init__(self, n_in: int, n_out: int, capacity: int | None = None, *, mode: str = "sparse",
                 input_capacity: int | None = None, recompute_segment: int | str = 0, **options):
        super().__init__(LIF(n_in, n_out, capacity, **options), mode=mode, input_capacity=input_capacity,
                         recompute_segment=recompute_segment)


class SparseRecurrentLIF(SparseSequential):
    """One recurrent LIF layer as a module. n_in, n_out, capacity and the keyword options are
    those of ``saltatory.RecurrentLIF``; mode, input_capacity and recompute_segment those of
    ``SparseSequential``."""

    def __init__(self, n_in: int, n_out: int, capacity: int | None = None, *, mode: str = "sparse",
                 input_capacity: int | None = None, recompute_segment: int | str = 0, **options):
        super().__init__(RecurrentLIF(n_in, n_out, capacity, **options), mode=mode,
                         input_capacity=input_capacity, recompute_segment=recompute_segment)


__all__ = ["SparseSequential", "SparseLIF", "SparseRecurrentLIF", "LIF", "RecurrentLIF", "CubaLIF",
           "RecurrentCubaLIF", "AdaptiveLIF", "RecurrentAdaptiveLIF", "Readout"]
