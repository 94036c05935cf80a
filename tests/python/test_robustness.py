"""Robustness regression tests (hostile use of the public API). Covers:

1. Forward-context views are read-only: every numpy write path into ``net.spikes[l].ids / .n_spk /
   .n_tot`` and the readout raises ValueError/TypeError and leaves the context intact; backward
   then gives bitwise the gradients of a clean run; the views stay valid after the context is
   replaced and collected; mutating the *input* SpikeTensor after forward does not change
   backward (the context copied it), also on ipu-model and through saltatory.torch; the
   ``ndarray.__setstate__`` trick (it swaps the view's storage without raising) must not change
   what backward gathers. A hypothesis property draws random mutation attempts.
   Unpickled arrays (equal, not identical dtype objects) are accepted wherever the originals are.
2. Concurrent backward: 8 threads released together on one forward (cpu, ipu-model, recompute):
   exactly one wins, the others get ValueError, the gradients are those of one backward; the
   same with two threads on one saltatory.torch graph; calls refused by validation (NaN
   gradient, memory limit) never consume the context; two threads running *forward* on one
   SparseSequential keep their own contexts; reading ``ipu_report`` while an ipu-model backward
   runs does not crash (subprocess).
3. saltatory.torch aliasing: deepcopy, .double().float(), share_memory, replaced parameters,
   ``.data`` assignment and load_state_dict train the current tensors; deepcopy / pickle /
   torch.save copies (before and after a forward) give the same outputs and train independently;
   plain Sequential copies need a forward before backward and do not consume the original's
   context; non-float32 modules are refused naming the tensor; torch.compile (eager, inductor);
   dense inputs of every float/bool dtype and layout work or are refused by name.
4. state_dict carries alpha, theta1 and gain as buffers (names, bitwise transfer) and bad buffers
   (shape, dtype, NaN, ...) are refused at forward.
5. Integer and real edges: ValueError/TypeError naming the op, never pybind11's "incompatible
   function arguments", never a silent wrap (also for settings changed after construction and
   array extents >= 2^31 read from sparse memory-mapped files).
6. Memory limit: validation over 2^31 - 1 neurons stays small, dense conversions are refused
   (subprocess, peak RSS); SALTATORY_MEMORY_LIMIT parsing of unlimited and invalid values.
7. Overflow policy: defaults are "random"; "lowest" starves high ids of candidates and "random"
   does not; dropped spikes and candidates are counted exactly (cpu and ipu-model agree).
8. Per-neuron vs per-entry gradients beyond test_nn.py: hidden-layer and mixed forms, recurrent
   last layer with checkpointing, unlisted neurons ignored, gather/scatter round trips and errors.
"""

from __future__ import annotations

import copy
import inspect
import io
import json
import operator
import os
import pickle
import re
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

import saltatory as sal
from saltatory import LIF, Readout, RecurrentLIF, Sequential, SpikeTensor

from hypothesis import given, settings
from hypothesis import strategies as st

EXPECTED = (ValueError, TypeError)
PYBIND_MESSAGE = "incompatible function arguments"
T, B, N_IN = 5, 3, 8


def _dense(seed: int = 0, T_: int = T, B_: int = B, n: int = N_IN, p: float = 0.4) -> np.ndarray:
    return (np.random.default_rng(seed).random((T_, B_, n)) < p).astype(np.float32)


def _input(seed: int = 0) -> SpikeTensor:
    """A fresh (writable, owned) input SpikeTensor; the same lists for the same seed."""
    return SpikeTensor.from_dense(_dense(seed))


def _mixed_net(**options) -> Sequential:
    return Sequential(LIF(N_IN, 10, 4, seed=0), RecurrentLIF(10, 6, 3, bias=True, seed=1),
                      Readout(6, 3, seed=2), **options)


def _lif_net(**options) -> Sequential:
    """LIF-only stack whose last layer has K == N (every neuron can be listed)."""
    return Sequential(LIF(N_IN, 10, 4, seed=0), LIF(10, 6, 6, theta2=-1.0, seed=1), **options)


NETS = {"mixed": _mixed_net, "lif_only": _lif_net}
_RNG = np.random.default_rng(1234)
G_OUT = _RNG.standard_normal((T, B, 3)).astype(np.float32)
G_HIDDEN = _RNG.standard_normal((T, B, 10)).astype(np.float32)
G_LAST = _RNG.standard_normal((T, B, 6)).astype(np.float32)


def _backward(net: Sequential, kind: str):
    """The backward each net kind uses: readout gradient, or per-neuron gradients of both layers."""
    if kind == "mixed":
        return net.backward(G_OUT, input_grad=True)
    return net.backward(grad_neurons=[G_HIDDEN, G_LAST], input_grad=True)


def _grads(net: Sequential) -> list[np.ndarray]:
    return [p.grad.copy() for p in net.parameters()]


def _snapshot(net: Sequential, out) -> list[np.ndarray]:
    arrays = [a.copy() for s in net.spikes for a in (s.ids, s.n_spk, s.n_tot)]
    if isinstance(out, np.ndarray):
        arrays.append(out.copy())
    return arrays


_CLEAN: dict = {}


def _clean(kind: str, **options):
    """(outputs snapshot, parameter gradients, input gradient) of an untouched run."""
    key = (kind, tuple(sorted(options.items())))
    if key not in _CLEAN:
        net = NETS[kind](**options)
        out = net(_input())
        snap = _snapshot(net, out)
        grad_in = _backward(net, kind)
        _CLEAN[key] = (snap, _grads(net), grad_in.copy())
    return _CLEAN[key]


def _assert_clean(net: Sequential, kind: str, grad_in, **options) -> None:
    _, grads, clean_in = _clean(kind, **options)
    for name_p, g in zip(net.named_parameters(), grads):
        np.testing.assert_array_equal(name_p[1].grad, g, err_msg=name_p[0])
    np.testing.assert_array_equal(grad_in, clean_in)


def _assert_no_pybind(err: pytest.ExceptionInfo) -> None:
    assert PYBIND_MESSAGE not in str(err.value), str(err.value)


# ============================================================================ 1. read-only views


def _first(arr):
    return (0,) * arr.ndim


WRITES = {
    "setitem": lambda a: a.__setitem__(_first(a), 1),
    "slice": lambda a: a.__setitem__(Ellipsis, 0),
    "sort": lambda a: a.sort(),
    "sort_row": lambda a: a[0].sort(),
    "copyto": lambda a: np.copyto(a, 0),
    "copyto_reversed": lambda a: np.copyto(a, a[..., ::-1].copy()),
    "fill": lambda a: a.fill(7),
    "iadd": lambda a: operator.iadd(a, 1),
    "ufunc_out": lambda a: np.add(a, 1, out=a),
    "put": lambda a: a.put(0, 5),
    "putmask": lambda a: np.putmask(a, np.ones(a.shape, bool), 3),
    "setflags": lambda a: a.setflags(write=True),
    "flags_attr": lambda a: setattr(a.flags, "writeable", True),
    "view": lambda a: a.view().__setitem__(Ellipsis, 9),
    "reshape": lambda a: a.reshape(-1).__setitem__(0, 9),
    "flat": lambda a: a.flat.__setitem__(0, 9),
    "frombuffer": lambda a: np.frombuffer(a, dtype=a.dtype).__setitem__(0, 9),
    "memoryview": lambda a: memoryview(a).cast("B").__setitem__(0, 9),
    "ndarray_buffer": lambda a: np.ndarray(a.shape, a.dtype, buffer=a).__setitem__(_first(a), 9),
    "ndarray_buffer_data": lambda a: np.ndarray(a.shape, a.dtype, buffer=a.data).__setitem__(_first(a), 9),
    "asarray": lambda a: np.asarray(a).__setitem__(Ellipsis, 9),
    "as_strided": lambda a: np.lib.stride_tricks.as_strided(a, writeable=True).__setitem__(_first(a), 9),
    "dlpack": lambda a: np.from_dlpack(a).__setitem__(Ellipsis, 9),
    "nditer": lambda a: list(np.nditer(a, op_flags=["readwrite"])),
    "byteswap": lambda a: a.byteswap(inplace=True),
    "partition": lambda a: a.reshape(-1).partition(0),
    "shuffle": lambda a: np.random.default_rng(0).shuffle(a),
    "resize": lambda a: a.resize(a.size + 1),
    "put_along_axis": lambda a: np.put_along_axis(a, np.zeros(a.shape[:-1] + (1,), np.intp), 3, axis=-1),
    "base_buffer": lambda a: memoryview(a.base),
    "base_views": lambda a: [v.__setitem__(_first(v), 1) for item in a.base.spikes for v in item[:3]],
}


def _context_arrays(net: Sequential, out) -> list[tuple[str, np.ndarray]]:
    arrays = [(f"spikes[{l}].{name}", getattr(s, name)) for l, s in enumerate(net.spikes)
              for name in ("ids", "n_spk", "n_tot")]
    if isinstance(out, np.ndarray):
        arrays.append(("readout", out))
    return arrays


@pytest.mark.parametrize("kind", sorted(NETS))
def test_every_write_into_the_forward_context_is_refused(kind: str) -> None:
    net = NETS[kind]()
    out = net(_input())
    before = _snapshot(net, out)
    attempts = 0
    for where, arr in _context_arrays(net, out):
        assert not arr.flags.writeable, where
        for how, write in WRITES.items():
            try:
                write(arr)
            except EXPECTED:
                pass
            else:
                pytest.fail(f"{how} into {where} was not refused")
            attempts += 1
            assert not arr.flags.writeable, (where, how)
    assert attempts == len(WRITES) * (3 * len(net.spikes) + (kind == "mixed"))
    for a, b in zip(_snapshot(net, out), before):
        np.testing.assert_array_equal(a, b)
    _assert_context_is(net, _clean(kind)[0])
    _assert_clean(net, kind, _backward(net, kind))


def _assert_context_is(net: Sequential, snapshot: list[np.ndarray]) -> None:
    """The context's lists, read afresh from it (not through net.spikes), equal ``snapshot``."""
    fresh = [a for item in net._context.spikes for a in item[:3]]
    for a, b in zip(fresh, snapshot[:len(fresh)]):
        np.testing.assert_array_equal(a, b)


def test_views_outlive_the_context_they_borrow_from() -> None:
    """A view keeps its context alive: another forward (or a copy) must not free its memory."""
    import gc

    net = _mixed_net()
    out = net(_input())
    views = [(s.ids, s.n_spk, s.n_tot) for s in net.spikes]
    kept = _snapshot(net, out)
    net.backward(G_OUT)
    for seed in (1, 2, 3):
        net(_input(seed))
    net._context = None
    net.spikes = []
    gc.collect()
    for arr, want in zip([a for v in views for a in v] + [out], kept):
        np.testing.assert_array_equal(arr, want)
        assert not arr.flags.writeable


def test_setstate_swap_of_a_view_does_not_change_what_backward_reads() -> None:
    """``ndarray.__setstate__`` (pure numpy, no error) gives the user-visible array new, writable
    storage; the context is untouched, so backward, which reads the context, must not see any
    later write (nor a ``shape`` changed by assignment or a same-size ``resize``)."""
    for hostile in ("reversed", "huge", "shape", "resize"):
        net = _lif_net()
        net(_input())
        for s in net.spikes:
            a = s.ids
            if hostile == "shape":  # allowed on a read-only array: no data changes
                a.shape = (-1,)
                continue
            if hostile == "resize":  # the same size: a reshape in place, also allowed
                a.resize(a.size)
                continue
            a.__setstate__(a.__reduce__()[2])  # no error: a now owns a writable copy
            assert a.flags.writeable
            if hostile == "reversed":
                a[...] = a[..., ::-1].copy()
            else:
                a[...] = 10**8
        _assert_context_is(net, _clean("lif_only")[0])  # the context's lists are as they were
        _assert_clean(net, "lif_only", _backward(net, "lif_only"))


INPUT_MUTATIONS = {
    "ids_huge": lambda x: x.ids.__setitem__(Ellipsis, 10**8),
    "ids_negative": lambda x: x.ids.__setitem__(Ellipsis, -1),
    "ids_int32_max": lambda x: x.ids.__setitem__((0, 0, 0), 2**31 - 1),
    "n_tot_huge": lambda x: x.n_tot.__setitem__(Ellipsis, 10**7),
    "n_spk_negative": lambda x: x.n_spk.__setitem__(Ellipsis, -5),
    "ids_sorted": lambda x: x.ids.sort(),
    "ids_reversed": lambda x: np.copyto(x.ids, x.ids[..., ::-1].copy()),
    "n_spk_over_n_tot": lambda x: x.n_spk.__setitem__(Ellipsis, x.ids.shape[2]),
    "all_zero": lambda x: [a.fill(0) for a in (x.ids, x.n_spk, x.n_tot)],
    "rebind_arrays": lambda x: [setattr(x, n, np.full_like(getattr(x, n), 10**8))
                                for n in ("ids", "n_spk", "n_tot")],
}


@pytest.mark.parametrize("device", ["cpu", "ipu-model"])
@pytest.mark.parametrize("kind", sorted(NETS))
def test_mutating_the_input_after_forward_does_not_change_backward(kind: str, device: str) -> None:
    for name, mutate in INPUT_MUTATIONS.items():
        net = NETS[kind](device=device)
        x = _input()
        out = net(x)
        before = _snapshot(net, out)
        mutate(x)
        for a, b in zip(_snapshot(net, out), before):
            np.testing.assert_array_equal(a, b, err_msg=name)
        _assert_clean(net, kind, _backward(net, kind), device=device)


@pytest.mark.parametrize("kind", sorted(NETS))
def test_input_mutation_with_recompute_segment(kind: str) -> None:
    """Checkpointing in time re-reads the input lists in backward: from the context's copy."""
    net = NETS[kind](recompute_segment=1)
    x = sal.SpikeTensor.from_dense(_dense(0, T_=20, B_=256))  # B = 256: windows of one step
    net(x)
    x.ids[...] = 10**8
    x.n_tot[...] = 10**7
    got = _backward_big(net, kind)
    ref = NETS[kind]()
    ref(sal.SpikeTensor.from_dense(_dense(0, T_=20, B_=256)))
    want = _backward_big(ref, kind)
    np.testing.assert_array_equal(got, want)
    for p, q in zip(net.parameters(), ref.parameters()):
        np.testing.assert_array_equal(p.grad, q.grad)


def _backward_big(net, kind):
    rng = np.random.default_rng(5)
    T_, B_ = 20, 256
    if kind == "mixed":
        return net.backward(rng.standard_normal((T_, B_, 3)).astype(np.float32), input_grad=True)
    return net.backward(grad_neurons=rng.standard_normal((T_, B_, 6)).astype(np.float32), input_grad=True)


VALUES = st.one_of(st.sampled_from([10**8, -5, -1, 0, 2**31 - 1, -2**31, 5, 7, 10**7]),
                   st.integers(-2**31, 2**31 - 1))
OPS = st.sampled_from(["set", "slice", "sort", "reverse", "fill", "setflags_then_set",
                       "flags_then_set", "copyto", "iadd", "frombuffer_set"])


def _apply(op: str, arr: np.ndarray, index: tuple, value) -> None:
    if arr.dtype == np.float32:
        value = np.float32(value)
    if op == "set":
        arr[index] = value
    elif op == "slice":
        arr[index[0]] = value
    elif op == "sort":
        arr.sort(axis=-1)
    elif op == "reverse":
        np.copyto(arr, arr[..., ::-1].copy())
    elif op == "fill":
        arr.fill(value)
    elif op == "setflags_then_set":
        arr.setflags(write=True)
        arr[index] = value
    elif op == "flags_then_set":
        arr.flags.writeable = True
        arr[index] = value
    elif op == "copyto":
        np.copyto(arr, value)
    elif op == "iadd":
        arr += value if arr.dtype == np.float32 else np.int32(value % 7)
    elif op == "frombuffer_set":
        np.frombuffer(arr, dtype=arr.dtype)[int(np.ravel_multi_index(index, arr.shape))] = value


@settings(max_examples=80, deadline=None, derandomize=True)
@given(kind=st.sampled_from(sorted(NETS)), target=st.sampled_from(["context", "readout", "input"]),
       layer=st.integers(0, 1), array=st.sampled_from(["ids", "n_spk", "n_tot"]), op=OPS,
       value=VALUES, where=st.tuples(st.integers(0, 10**6), st.integers(0, 10**6), st.integers(0, 10**6)),
       n_tot_over_k=st.booleans())
def test_random_mutations_are_refused_or_harmless(kind, target, layer, array, op, value, where,
                                                  n_tot_over_k) -> None:
    net = NETS[kind]()
    x = _input()
    out = net(x)
    before = _snapshot(net, out)
    if target == "readout" and kind == "mixed":
        arr = out
    elif target == "input":
        arr = getattr(x, array)
    else:
        arr = getattr(net.spikes[layer], array)
    index = tuple(w % n for w, n in zip(where, arr.shape))
    if n_tot_over_k and array == "n_tot" and op == "set":
        value = x.ids.shape[2] + 1 + abs(value) % 100  # n_tot > K
    try:
        _apply(op, arr, index, value)
        refused = False
    except EXPECTED:
        refused = True
    if arr is not getattr(x, array, None):  # a context view: always refused, never changed
        assert refused, (target, array, op)
    for a, b in zip(_snapshot(net, out), before):
        np.testing.assert_array_equal(a, b)
    _assert_context_is(net, before)
    _assert_clean(net, kind, _backward(net, kind))


# ============================================================================ 2. concurrency


def _race(n: int, fn) -> list:
    """Runs fn() on n threads released together; returns each result or exception."""
    barrier = threading.Barrier(n)
    results = [None] * n

    def work(i: int) -> None:
        barrier.wait()
        try:
            results[i] = ("ok", fn())
        except BaseException as exc:  # noqa: BLE001 - collected for the assertions
            results[i] = ("error", exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


@pytest.mark.parametrize("options", [{}, {"device": "ipu-model"}, {"recompute_segment": 1}],
                         ids=["cpu", "ipu-model", "recompute"])
@pytest.mark.parametrize("kind", sorted(NETS))
def test_concurrent_backward_exactly_one_wins(kind: str, options: dict) -> None:
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # interleave the threads' Python code as finely as possible
    try:
        net = NETS[kind](**options)
        for _ in range(20):
            net.zero_grad()
            net(_input())
            results = _race(8, lambda: _backward(net, kind))
            wins = [r for status, r in results if status == "ok"]
            losses = [r for status, r in results if status == "error"]
            assert len(wins) == 1, results
            for exc in losses:
                assert isinstance(exc, ValueError), repr(exc)
                assert "forward" in str(exc) or "consumed" in str(exc), str(exc)
            _assert_clean(net, kind, wins[0], **options)
    finally:
        sys.setswitchinterval(old)


def test_concurrent_backward_refused_by_validation_does_not_consume() -> None:
    """Seven threads pass a NaN gradient, one a good one: whatever the order, the good one wins
    (a refused call leaves the context unconsumed) and the gradients are the clean ones."""
    bad = G_OUT.copy()
    bad[0, 0, 0] = np.nan
    net = _mixed_net()
    for _ in range(20):
        net.zero_grad()
        net(_input())
        turn, lock = [0], threading.Lock()

        def call():
            with lock:
                mine = turn[0]
                turn[0] += 1
            return net.backward(G_OUT if mine == 5 else bad, input_grad=True)

        results = _race(8, call)
        wins = [r for status, r in results if status == "ok"]
        assert len(wins) == 1, results
        assert all(isinstance(r, ValueError) for status, r in results if status == "error"), results
        _assert_clean(net, "mixed", wins[0])


def test_backward_refused_by_the_memory_limit_can_be_retried() -> None:
    net = _mixed_net()
    net(_input())
    try:
        sal.set_memory_limit(1024)
        with pytest.raises(ValueError, match=r"^\[lif_stack_backward\] .*memory limit"):
            net.backward(G_OUT)
    finally:
        sal.set_memory_limit(0)
    _assert_clean(net, "mixed", net.backward(G_OUT, input_grad=True))


def test_concurrent_torch_backward_on_one_graph_exactly_one_wins() -> None:
    torch = pytest.importorskip("torch")
    from saltatory.torch import SparseSequential

    x = torch.from_numpy(_dense(3))
    ref = SparseSequential(*_torch_layers())
    ref(x).square().sum().backward()
    want = [p.grad.clone() for p in ref.parameters()]
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        for _ in range(20):
            module = SparseSequential(*_torch_layers())
            loss = module(x).square().sum()
            results = _race(2, lambda: loss.backward(retain_graph=True))
            assert [status for status, _ in results].count("ok") == 1, results
            for status, exc in results:
                if status == "error":
                    assert isinstance(exc, (RuntimeError, ValueError)), repr(exc)
                    assert "twice" in str(exc) or "consumed" in str(exc), str(exc)
            for p, g in zip(module.parameters(), want):
                assert torch.equal(p.grad, g)
    finally:
        sys.setswitchinterval(old)


def test_concurrent_torch_forwards_keep_their_own_contexts() -> None:
    """Two threads run forward on one SparseSequential; each graph must backpropagate through its
    own forward. The stack is wrapped so that both forwards finish before either returns to the
    autograd Function (an interleaving the GIL allows at any bytecode): the Function must not take
    its context from shared module state (``module.net._context``) after the call."""
    torch = pytest.importorskip("torch")
    from saltatory.torch import SparseSequential

    xs = [torch.from_numpy(_dense(seed, p=p)) for seed, p in ((4, 0.2), (5, 0.6))]
    want = []
    for x in xs:
        ref = SparseSequential(*_torch_layers())
        out = ref(x)
        out.square().sum().backward()
        want.append((out.detach().clone(), [p.grad.clone() for p in ref.parameters()]))
    both_done = threading.Barrier(2)

    class Rendezvous(Sequential):
        def forward(self, x):
            out = super().forward(x)
            try:
                both_done.wait(timeout=2)
            except threading.BrokenBarrierError:  # a serialising fix never lets both in at once
                pass
            return out

        __call__ = forward

    module = SparseSequential(*_torch_layers())
    module.net.__class__ = Rendezvous
    outs = [None, None]

    def work(i: int) -> None:
        outs[i] = module(xs[i])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, (out_want, grads_want) in enumerate(want):
        assert torch.equal(outs[i].detach(), out_want)
        for p in module.parameters():
            p.grad = None
        outs[i].square().sum().backward()
        for (name, p), g in zip(module.named_parameters(), grads_want):
            assert torch.equal(p.grad, g), f"thread {i}: {name} got another forward's gradient"


def test_reading_ipu_report_during_backward_does_not_crash() -> None:
    """ipu-model backward runs without the GIL and appends to the run report; another thread
    reading ``net.ipu_report`` at the same time must get a consistent report, never corrupt the
    heap (SIGSEGV / SIGABRT, or a hang on a corrupted malloc lock). Three short runs in fresh
    processes (about 0.5 s each when the report is safe to read)."""
    code = textwrap.dedent("""
        import sys, threading, numpy as np, saltatory as sal
        sys.setswitchinterval(1e-4)
        dense = (np.random.default_rng(0).random((20, 4, 32)) < 0.3).astype(np.float32)
        x = sal.SpikeTensor.from_dense(dense)
        net = sal.Sequential(*[sal.LIF(32, 32, 8, seed=i) for i in range(8)], sal.Readout(32, 3),
                             device="ipu-model")
        g = np.ones((20, 4, 3), np.float32)
        done, names = threading.Event(), set()
        def reader():
            while not done.is_set():
                report = net.ipu_report
                if report is not None:
                    names.update(name.split(" layer")[0] for name, _ in report["compute_sets"])
        thread = threading.Thread(target=reader)
        thread.start()
        for _ in range(300):
            net(x)
            net.backward(g)
        done.set()
        thread.join()
        print(sorted(names))
        print("survived")
    """)
    for attempt in range(3):
        try:
            proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
        except subprocess.TimeoutExpired:
            pytest.fail(f"attempt {attempt}: hung (a corrupted heap can deadlock malloc)")
        assert proc.returncode == 0 and "survived" in proc.stdout, (attempt, proc.returncode,
                                                                    proc.stderr[-2000:])
        names = set(eval(proc.stdout.splitlines()[0]))  # noqa: S307 - our own output
        assert names <= {"forward", "backward", "entry gradients", "weight gradients"}, names


# ============================================================================ 3. torch aliasing


def _torch_layers(seed: int = 1, **options):
    return (LIF(N_IN, 10, 4, seed=seed, **options),
            RecurrentLIF(10, 6, 3, bias=True, seed=seed + 1, **options),
            Readout(6, 3, seed=seed + 2, **{k: v for k, v in options.items() if k in ("alpha", "gain")}))


def _torch_run(module, x):
    """Output and gradients (by name) of one forward/backward from zero gradients."""
    torch = pytest.importorskip("torch")
    for p in module.parameters():
        p.grad = None
    out = module(x)
    (out * _output_weights(torch, out)).sum().backward()
    return out.detach().clone(), {n: p.grad.clone() for n, p in module.named_parameters()}


def _output_weights(torch, out):
    """Fixed random weights of the output (a loss whose gradient reaches every output)."""
    return torch.from_numpy(np.random.default_rng(7).standard_normal(tuple(out.shape)).astype(np.float32))


def _torch_reference(values: dict):
    """A fresh module with its parameters set to ``values``."""
    torch = pytest.importorskip("torch")
    from saltatory.torch import SparseSequential

    ref = SparseSequential(*_torch_layers(seed=11))  # other initial weights, overwritten
    with torch.no_grad():
        for name, value in values.items():
            getattr(ref, name).copy_(value)
    return ref


def _new_values(module, scale: float = 1.5) -> dict:
    return {n: (p.detach() * scale + 0.01).clone() for n, p in module.named_parameters()}


def _alias_scenario(name: str, module):
    """Applies one aliasing change; returns (the module to use, the parameter values it holds)."""
    torch = pytest.importorskip("torch")
    if name == "deepcopy":
        values = _new_values(module)
        with torch.no_grad():
            for n, v in values.items():
                getattr(module, n).copy_(v)
        return copy.deepcopy(module), values
    if name == "double_float":
        module.double().float()
    elif name == "share_memory":
        module.share_memory()
    elif name == "replace_parameter":
        values = _new_values(module)
        for n, v in values.items():
            setattr(module, n, torch.nn.Parameter(v.clone()))
        return module, values
    elif name == "assign_data":
        values = _new_values(module)
        for n, v in values.items():
            getattr(module, n).data = v.clone()
        return module, values
    elif name == "load_state_dict":
        values = _new_values(module)
        module.load_state_dict({**module.state_dict(), **values})
        return module, values
    return module, {n: p.detach().clone() for n, p in module.named_parameters()}


@pytest.mark.parametrize("scenario", ["deepcopy", "double_float", "share_memory", "replace_parameter",
                                      "assign_data", "load_state_dict"])
def test_torch_module_uses_its_current_parameters(scenario: str) -> None:
    torch = pytest.importorskip("torch")
    from saltatory.torch import SparseSequential

    x = torch.from_numpy(_dense(6))
    original = SparseSequential(*_torch_layers())
    original(x)  # binds the stack to the original storage first
    module, values = _alias_scenario(scenario, original)
    ref = _torch_reference(values)
    out, grads = _torch_run(module, x)
    ref_out, ref_grads = _torch_run(ref, x)
    assert torch.equal(out, ref_out)
    for name, p in module.named_parameters():
        assert p.grad is not None, name  # landed on the current parameter
        assert torch.equal(grads[name], ref_grads[name]), name
        assert torch.equal(p.detach(), values[name]), name
    # a torch optimiser step on the current parameters changes the output, as on the reference
    for m in (module, ref):
        torch.optim.SGD(m.parameters(), lr=0.5).step()
    stepped, _ = _torch_run(module, x)
    ref_stepped, _ = _torch_run(ref, x)
    assert not torch.equal(stepped, out)
    assert torch.equal(stepped, ref_stepped)


def _torch_copy(how: str, module):
    torch = pytest.importorskip("torch")
    if how == "deepcopy":
        return copy.deepcopy(module)
    if how == "pickle":
        return pickle.loads(pickle.dumps(module))
    buffer = io.BytesIO()
    torch.save(module, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=False)


@pytest.mark.parametrize("when", ["before_forward", "after_forward", "pending_graph"])
@pytest.mark.parametrize("how", ["deepcopy", "pickle", "torch_save"])
def test_torch_module_copies_match_and_train_independently(how: str, when: str) -> None:
    torch = pytest.importorskip("torch")
    from saltatory.torch import SparseSequential

    x = torch.from_numpy(_dense(8))
    module = SparseSequential(*_torch_layers())
    pending = None
    if when != "before_forward":
        pending = module(x)
        if when == "after_forward":
            pending.sum().backward()
            pending = None
    clone = _torch_copy(how, module)
    out, grads = _torch_run(module, x)
    clone_out, clone_grads = _torch_run(clone, x)
    assert torch.equal(out, clone_out)
    for name in grads:
        assert torch.equal(grads[name], clone_grads[name]), name
    if pending is not None:  # the original's graph from before the copy still backpropagates
        pending.sum().backward()
    torch.optim.SGD(clone.parameters(), lr=0.5).step()
    assert not torch.equal(_torch_run(clone, x)[0], out)
    assert torch.equal(_torch_run(module, x)[0], out)  # stepping the copy left the original alone
    for (name, p), (_, q) in zip(module.named_parameters(), clone.named_parameters()):
        assert p.data_ptr() != q.data_ptr(), name


@pytest.mark.parametrize("how", ["deepcopy", "pickle"])
def test_sequential_copies_need_their_own_forward(how: str) -> None:
    net = _mixed_net()
    out = net(_input())
    clone = copy.deepcopy(net) if how == "deepcopy" else pickle.loads(pickle.dumps(net))
    np.testing.assert_array_equal(clone.spikes[0].ids, net.spikes[0].ids)  # last outputs kept
    with pytest.raises(ValueError, match=r"\[Sequential\.backward\].*forward"):
        clone.backward(G_OUT)
    # copying did not consume or clear the original's context
    _assert_clean(net, "mixed", net.backward(G_OUT, input_grad=True))
    np.testing.assert_array_equal(clone(_input()), out)
    _assert_clean(clone, "mixed", clone.backward(G_OUT, input_grad=True))
    clone.layers[0].weight.data += 1.0  # independent arrays
    np.testing.assert_array_equal(net(_input()), out)


def test_unpickled_arrays_are_accepted_where_the_originals_are() -> None:
    """Unpickled numpy arrays carry an equal but not identical dtype object (np.dtype('float32')
    == it, ``is`` it not): the bindings must compare dtypes by value. (Pickling is how
    multiprocessing data loaders and ``pickle`` checkpoints move SpikeTensors and arrays.)"""
    def thaw(obj):
        return pickle.loads(pickle.dumps(obj))

    net = _mixed_net()
    x = _input(22)
    out = net(x).copy()
    clean_grad_in = net.backward(G_OUT, input_grad=True)
    grads = _grads(net)
    for what in ("input", "net", "grad_output", "all"):
        n = thaw(net) if what in ("net", "all") else _mixed_net()
        n.zero_grad()
        xi = thaw(x) if what in ("input", "all") else x
        np.testing.assert_array_equal(n(xi), out, err_msg=what)
        g = thaw(G_OUT) if what in ("grad_output", "all") else G_OUT
        np.testing.assert_array_equal(n.backward(g, input_grad=True), clean_grad_in, err_msg=what)
        for a, b in zip(_grads(n), grads):
            np.testing.assert_array_equal(a, b, err_msg=what)
    labels = np.array([0, 1, 2], np.int32)
    loss, grad = sal.losses.membrane_cross_entropy(out, labels)
    loss_p, grad_p = sal.losses.membrane_cross_entropy(thaw(out), thaw(labels))
    assert loss_p == loss and np.array_equal(grad_p, grad)
    s = net.spikes[0]
    np.testing.assert_array_equal(thaw(s).to_dense(), s.to_dense())
    np.testing.assert_array_equal(thaw(s).counts(), s.counts())


@pytest.mark.parametrize("dtype", ["float64", "float16", "bfloat16"])
def test_torch_module_in_another_dtype_is_refused(dtype: str) -> None:
    torch = pytest.importorskip("torch")
    from saltatory.torch import SparseSequential

    module = SparseSequential(*_torch_layers())
    module.to(getattr(torch, dtype))
    with pytest.raises(ValueError, match=r"\[SparseSequential\] layers_0_weight .*float32") as err:
        module(torch.from_numpy(_dense(9)))
    _assert_no_pybind(err)


@pytest.mark.parametrize("backend", ["eager", "inductor"])
def test_torch_compile_gives_the_module_results(backend: str) -> None:
    torch = pytest.importorskip("torch")
    from saltatory.torch import SparseSequential

    x = torch.from_numpy(_dense(10))
    module = SparseSequential(*_torch_layers())
    want_out, want_grads = _torch_run(SparseSequential(*_torch_layers()), x)
    compiled = torch.compile(module, backend=backend)
    for _ in range(2):  # the second call reuses the compiled code
        for p in module.parameters():
            p.grad = None
        out = compiled(x)
        (out * _output_weights(torch, out)).sum().backward()
        assert torch.equal(out.detach(), want_out)
        for name, p in module.named_parameters():
            assert torch.equal(p.grad, want_grads[name]), name
    if backend == "eager":  # the stack inside a larger compiled function (graph break)
        fn = torch.compile(lambda m, x: (m(x) * 2.0).sum(), backend="eager")
        for p in module.parameters():
            p.grad = None
        fn(module, x).backward()
        ref = SparseSequential(*_torch_layers())
        (ref(x) * 2.0).sum().backward()
        for p, q in zip(module.parameters(), ref.parameters()):
            assert torch.equal(p.grad, q.grad)


def test_torch_input_mutation_after_forward_does_not_change_backward() -> None:
    torch = pytest.importorskip("torch")
    from saltatory.torch import SparseSequential

    dense = _dense(12)
    ref = SparseSequential(*_torch_layers())
    xr = torch.from_numpy(dense.copy()).requires_grad_(True)
    ref(xr).square().sum().backward()
    for as_spikes in (False, True):
        module = SparseSequential(*_torch_layers())
        if as_spikes:
            x = SpikeTensor.from_dense(dense)
            out = module(x)
            x.ids[...] = 10**8
            x.n_tot[...] = 10**7
        else:
            x = torch.from_numpy(dense.copy()).requires_grad_(True)
            out = module(x)
            x.data.fill_(1.0)
        out.square().sum().backward()
        for p, q in zip(module.parameters(), ref.parameters()):
            assert torch.equal(p.grad, q.grad)
        if not as_spikes:
            assert torch.equal(x.grad, xr.grad)


@pytest.mark.parametrize("variant", ["bfloat16", "float16", "float64", "bool", "expanded", "transposed",
                                     "sparse_layout"])
def test_torch_dense_input_kinds_work_or_are_refused_by_name(variant: str) -> None:
    """Any float or bool 0/1 tensor gives the float32 result; a kind the module cannot read is
    refused with ValueError/TypeError naming it (never a bare DLPack/torch RuntimeError)."""
    torch = pytest.importorskip("torch")
    from saltatory.torch import SparseSequential

    base = torch.from_numpy(_dense(23))
    x = {"bfloat16": lambda: base.to(torch.bfloat16), "float16": lambda: base.half(),
         "float64": lambda: base.double(), "bool": lambda: base.bool(),
         "expanded": lambda: base[:1].expand(T, B, N_IN),
         "transposed": lambda: base.transpose(0, 1).contiguous().transpose(0, 1),
         "sparse_layout": lambda: base.to_sparse()}[variant]()
    module = SparseSequential(*_torch_layers())
    want = module(x.to_dense().float() if x.is_sparse else x.float()).detach()
    try:
        got = module(x).detach()
    except EXPECTED as err:
        assert str(err).startswith("[SparseSequential]"), str(err)
        assert variant == "sparse_layout", f"{variant} is a float/bool tensor: {err}"
        return
    assert torch.equal(got, want)


# ============================================================================ 4. state_dict buffers


def test_state_dict_carries_alpha_theta1_and_gain() -> None:
    torch = pytest.importorskip("torch")
    from saltatory.torch import SparseSequential

    x = torch.from_numpy(_dense(13))
    a = SparseSequential(*_torch_layers(seed=1, alpha=0.9, theta1=0.7, gain=5.0, theta2=0.5))
    b = SparseSequential(*_torch_layers(seed=21, theta2=0.5))  # defaults, same theta2 (not a buffer)
    state = a.state_dict()
    buffers = {n for n, _ in a.named_buffers()}
    assert buffers == {"layers_0_alpha", "layers_0_theta1", "layers_0_gain", "layers_1_alpha",
                       "layers_1_theta1", "layers_1_gain", "layers_2_alpha", "layers_2_gain"}
    assert buffers <= set(state)
    theta1 = state["layers_0_theta1"]  # per neuron
    assert theta1.shape == (a.net.layers[0].n_out,) and torch.equal(theta1, torch.full_like(theta1, 0.7))
    assert torch.equal(state["layers_2_gain"], torch.tensor(5.0))
    assert torch.equal(state["layers_1_alpha"], torch.full((6,), 0.9))
    a_out, a_grads = _torch_run(a, x)
    assert not torch.equal(_torch_run(b, x)[0], a_out)
    b.load_state_dict(state)
    b_out, b_grads = _torch_run(b, x)
    assert torch.equal(b_out, a_out)
    for name, g in a_grads.items():
        assert torch.equal(b_grads[name], g), name
    layer = b.net.layers[0]
    assert np.all(layer.theta1 == np.float32(0.7)) and layer.gain == 5.0
    assert np.all(layer.alpha == np.float32(0.9))
    # theta2 stays on the stack: where it exceeds the loaded theta1 a neuron gets no candidates
    c = SparseSequential(*_torch_layers(seed=31))  # theta2 0.9 above the loaded theta1 0.7
    c.load_state_dict(state)
    c(x)
    for s in c.spikes:
        assert np.all(s.n_tot == s.n_spk)


BAD_BUFFERS = {
    "alpha_shape": ("layers_0_alpha", lambda t: t.zeros(3), ValueError),
    "alpha_float64": ("layers_0_alpha", lambda t: t.full((10,), 0.9, dtype=t.float64), ValueError),
    "alpha_noncontiguous": ("layers_0_alpha", lambda t: t.full((20,), 0.9)[::2], ValueError),
    "alpha_out_of_range": ("layers_0_alpha", lambda t: t.full((10,), 2.0), ValueError),
    "alpha_nan": ("layers_1_alpha", lambda t: t.full((6,), float("nan")), ValueError),
    "gain_shape": ("layers_0_gain", lambda t: t.ones(1), ValueError),
    "gain_float64": ("layers_2_gain", lambda t: t.tensor(5.0, dtype=t.float64), ValueError),
    "gain_inf": ("layers_2_gain", lambda t: t.tensor(float("inf")), ValueError),
    "theta1_shape": ("layers_1_theta1", lambda t: t.ones(2), ValueError),
    "theta1_int64": ("layers_1_theta1", lambda t: t.tensor(1), ValueError),
    "theta1_nan": ("layers_1_theta1", lambda t: t.tensor(float("nan")), ValueError),
    "theta1_below_theta2": ("layers_0_theta1", lambda t: t.tensor(0.0), ValueError),
    "buffer_none": ("layers_0_alpha", lambda t: None, TypeError),
    "weight_meta": ("layers_0_weight", lambda t: t.nn.Parameter(t.zeros(N_IN, 10, device="meta")),
                    ValueError),
}


@pytest.mark.parametrize("case", sorted(BAD_BUFFERS))
def test_bad_buffers_are_refused_at_forward(case: str) -> None:
    torch = pytest.importorskip("torch")
    from saltatory.torch import SparseSequential

    name, make, error = BAD_BUFFERS[case]
    module = SparseSequential(*_torch_layers())
    setattr(module, name, make(torch))
    ops = r"^\[(SparseSequential|LIF|RecurrentLIF|Readout|lif_stack_forward)\]"
    with pytest.raises(error, match=ops) as err:
        module(torch.from_numpy(_dense(14)))
    _assert_no_pybind(err)


# ============================================================================ 5. integer edges

_IDS = np.zeros((2, 1, 2), np.int32)
_COUNTS = np.zeros((2, 1), np.int32)
_DENSE = np.zeros((2, 1, 4), np.float32)
_DENSE[0, 0, 1] = 1.0
_EVENTS = dict(bin_width=1.0, n_steps=2, n_neurons=4, capacity=2)


def _from_events(**changes):
    return SpikeTensor.from_events(np.array([0.5]), np.array([1]), **{**_EVENTS, **changes})


EDGES = {
    "spikes_n_neurons_2**40": (lambda: SpikeTensor(_IDS, _COUNTS, _COUNTS, n_neurons=2**40), "SpikeTensor"),
    "spikes_n_neurons_2**31": (lambda: SpikeTensor(_IDS, _COUNTS, _COUNTS, n_neurons=2**31), "SpikeTensor"),
    "spikes_n_neurons_-1": (lambda: SpikeTensor(_IDS, _COUNTS, _COUNTS, n_neurons=-1), "SpikeTensor"),
    "spikes_n_neurons_1.5": (lambda: SpikeTensor(_IDS, _COUNTS, _COUNTS, n_neurons=1.5), "SpikeTensor"),
    "spikes_n_neurons_True": (lambda: SpikeTensor(_IDS, _COUNTS, _COUNTS, n_neurons=True), "SpikeTensor"),
    "spikes_n_neurons_np_uint64": (lambda: SpikeTensor(_IDS, _COUNTS, _COUNTS, n_neurons=np.uint64(2**63)),
                                   "SpikeTensor"),
    "lif_n_in_2**40": (lambda: LIF(2**40, 4), "LIF"),
    "lif_n_out_2**31": (lambda: LIF(4, 2**31), "LIF"),
    "lif_capacity_2**31": (lambda: LIF(4, 4, capacity=2**31), "LIF"),
    "lif_seed_2**64": (lambda: LIF(4, 4, seed=2**64), "LIF"),
    "lif_gain_nan": (lambda: LIF(4, 4, gain=float("nan")), "LIF"),
    "lif_gain_10**400": (lambda: LIF(4, 4, gain=10**400), "LIF"),
    "lif_theta1_inf": (lambda: LIF(4, 4, theta1=float("inf")), "LIF"),
    "lif_beta_0": (lambda: LIF(4, 4, beta=0), "LIF"),
    "lif_beta_nan": (lambda: LIF(4, 4, beta=float("nan")), "LIF"),
    "readout_n_out_2**31": (lambda: Readout(4, 2**31), "Readout"),
    "sequential_seed_2**64": (lambda: Sequential(LIF(4, 4), seed=2**64), "Sequential"),
    "sequential_seed_-1": (lambda: Sequential(LIF(4, 4), seed=-1), "Sequential"),
    "sequential_seed_1.5": (lambda: Sequential(LIF(4, 4), seed=1.5), "Sequential"),
    "sequential_segment_10**12": (lambda: Sequential(LIF(4, 4), recompute_segment=10**12), "Sequential"),
    "from_dense_capacity_2**31": (lambda: SpikeTensor.from_dense(_DENSE, capacity=2**31),
                                  "SpikeTensor.from_dense"),
    "from_dense_capacity_0": (lambda: SpikeTensor.from_dense(_DENSE, capacity=0), "SpikeTensor.from_dense"),
    "from_dense_capacity_1.5": (lambda: SpikeTensor.from_dense(_DENSE, capacity=1.5),
                                "SpikeTensor.from_dense"),
    "from_dense_seed_2**64": (lambda: SpikeTensor.from_dense(_DENSE, seed=2**64), "SpikeTensor.from_dense"),
    "from_events_n_steps_2**31": (lambda: _from_events(n_steps=2**31), "SpikeTensor.from_events"),
    "from_events_n_neurons_2**40": (lambda: _from_events(n_neurons=2**40), "SpikeTensor.from_events"),
    "from_events_capacity_10**12": (lambda: _from_events(capacity=10**12), "SpikeTensor.from_events"),
    "from_events_batch_size_0": (lambda: _from_events(batch_size=0), "SpikeTensor.from_events"),
    "from_events_bin_width_nan": (lambda: _from_events(bin_width=float("nan")), "SpikeTensor.from_events"),
    "from_events_seed_2**64": (lambda: _from_events(seed=2**64), "SpikeTensor.from_events"),
    "from_events_n_steps_1.5": (lambda: _from_events(n_steps=1.5), "SpikeTensor.from_events"),
    "memory_limit_2**70": (lambda: sal.set_memory_limit(2**70), "set_memory_limit"),
    "memory_limit_-1": (lambda: sal.set_memory_limit(-1), "set_memory_limit"),
    "memory_limit_1.5": (lambda: sal.set_memory_limit(1.5), "set_memory_limit"),
    "num_threads_2**40": (lambda: sal.set_num_threads(2**40), "set_num_threads"),
    "num_threads_-1": (lambda: sal.set_num_threads(-1), "set_num_threads"),
}


@pytest.mark.parametrize("case", list(EDGES))
def test_integer_and_real_edges_name_the_op(case: str) -> None:
    fn, op = EDGES[case]
    limit = sal.memory_limit()
    try:
        with pytest.raises(EXPECTED, match=rf"^\[{re.escape(op)}\]") as err:
            fn()
        _assert_no_pybind(err)
    finally:
        sal.set_memory_limit(0)
        sal.set_num_threads(0)
    assert sal.memory_limit() == limit  # a refused limit changed nothing


def test_layer_sizes_whose_weights_cannot_fit_are_refused_by_name() -> None:
    """n_in and n_out fit int32, but the weights (8 TiB) do not fit the memory limit: ValueError
    naming the layer, not numpy's MemoryError (in a child; no address-space cap, which ASan's
    shadow memory would exceed: unchecked, numpy's requests of 8 to 32 TiB fail at once)."""
    proc = _run_python("""
        import json, saltatory as sal
        sal.set_memory_limit(64 << 20)
        out = {}
        for name, make in [("LIF", lambda: sal.LIF(2**20, 2**20)),
                           ("RecurrentLIF", lambda: sal.RecurrentLIF(1, 2**20)),
                           ("Readout", lambda: sal.Readout(2**16, 2**16))]:
            try:
                make()
                out[name] = "accepted"
            except Exception as e:
                out[name] = f"{type(e).__name__}: {e}"
        print(json.dumps(out))
    """)
    assert proc.returncode == 0, proc.stderr[-2000:]
    for name, got in json.loads(proc.stdout).items():
        assert got.startswith(f"ValueError: [{name}]") and "memory limit" in got, got


# Settings changed on a built stack reach C++ through LayerConfig / the forward call: they must be
# checked like constructor arguments (never pybind11's conversion error, never truncated).
LATE_EDGES = {
    "capacity_2**31": lambda n: setattr(n.layers[0], "capacity", 2**31),
    "capacity_np_int64_2**40": lambda n: setattr(n.layers[0], "capacity", np.int64(2**40)),
    "capacity_1.5": lambda n: setattr(n.layers[0], "capacity", 1.5),
    "n_out_2**31": lambda n: setattr(n.layers[0], "n_out", 2**31),
    "theta1_string": lambda n: setattr(n.layers[0], "theta1", "1"),
    "gain_none": lambda n: setattr(n.layers[1], "gain", None),
    "theta1_1e39": lambda n: setattr(n.layers[0], "theta1", 1e39),  # inf as float32
    "beta_1e-50": lambda n: setattr(n.layers[0], "beta", 1e-50),  # 0 as float32
    "seed_2**64": lambda n: setattr(n, "seed", 2**64),
    "seed_1.5": lambda n: setattr(n, "seed", 1.5),
    "recompute_segment_2**31": lambda n: setattr(n, "recompute_segment", 2**31),
    "recompute_segment_1.5": lambda n: setattr(n, "recompute_segment", 1.5),
    "recompute_segment_True": lambda n: setattr(n, "recompute_segment", True),
}


@pytest.mark.parametrize("case", list(LATE_EDGES))
def test_settings_changed_after_construction_are_checked(case: str) -> None:
    net = Sequential(LIF(N_IN, 10, 4, seed=0), Readout(10, 3, seed=1))
    with pytest.raises(EXPECTED, match=r"^\[(LIF|Readout|Sequential|lif_stack_forward)\]") as err:
        LATE_EDGES[case](net)  # refused when set (a checked attribute) or by the next forward
        net(_input())
    _assert_no_pybind(err)


def test_real_values_that_overflow_float32_are_refused() -> None:
    """Finite as Python floats, infinite as float32: refused at construction or at forward."""
    for make in (lambda: LIF(N_IN, 4, theta1=1e39), lambda: LIF(N_IN, 4, theta2=-1e39),
                 lambda: Readout(N_IN, 3, gain=1e39), lambda: LIF(N_IN, 4, beta=1e-50)):
        with pytest.raises(ValueError, match=r"^\[(LIF|Readout|lif_stack_forward)\]") as err:
            Sequential(make())(_input())
        _assert_no_pybind(err)


def _fake_spikes(ids, n_spk, n_tot, n_neurons: int = 4) -> SpikeTensor:
    """A SpikeTensor over the given arrays, skipping the Python constructor (to reach C++)."""
    s = object.__new__(SpikeTensor)
    s.ids, s.n_spk, s.n_tot, s.n_neurons, s.device = ids, n_spk, n_tot, n_neurons, "cpu"
    s.dropped = s.dropped_candidates = 0
    return s


def test_extents_of_2_31_or_more_are_refused_not_truncated(tmp_path) -> None:
    """Sparse memory-mapped files give arrays of 2^31 .. 2^32 + 1 elements per dimension without
    RAM; every C++ entry point must refuse the extent before reading (K = 2^32 + 1 is not 1)."""

    def mm(name, dtype, shape):
        return np.memmap(tmp_path / name, mode="w+", dtype=dtype, shape=shape)

    zero = np.zeros((1, 1), np.int32)
    cases = {"K": _fake_spikes(mm("k", np.int32, (1, 1, 2**32 + 1)), zero, zero),
             "T": _fake_spikes(mm("t", np.int32, (2**31, 1, 1)), mm("t1", np.int32, (2**31, 1)),
                               mm("t2", np.int32, (2**31, 1))),
             "B": _fake_spikes(mm("b", np.int32, (1, 2**31, 1)), mm("b1", np.int32, (1, 2**31)),
                               mm("b2", np.int32, (1, 2**31)))}
    net = Sequential(LIF(4, 4, 2, seed=0))
    try:
        for dim, s in cases.items():
            calls = {"lif_stack_forward": lambda: net(s), "SpikeTensor.to_dense": s.to_dense,
                     "spike_counts": s.counts}
            if dim == "K":
                calls["spike_count_cross_entropy"] = lambda: sal.losses.spike_count_cross_entropy(
                    s, np.zeros(1, np.int32))
            for op, call in calls.items():
                pattern = rf"^\[{op}\] ids \({dim}\) has size \d+, more than"
                with pytest.raises(ValueError, match=pattern) as err:
                    call()
                _assert_no_pybind(err)
        dense = mm("d", np.float32, (1, 1, 2**31))
        with pytest.raises(ValueError, match=r"^\[SpikeTensor\.from_dense\] dense \(N\) has size 2147483648"):
            SpikeTensor.from_dense(dense, capacity=1)
        pattern = r"^\[membrane_cross_entropy\] membrane \(C\) has size 2147483648"
        with pytest.raises(ValueError, match=pattern):
            sal.losses.membrane_cross_entropy(dense, np.zeros(1, np.int32))
    finally:
        for s in cases.values():
            del s.ids, s.n_spk, s.n_tot
        for f in tmp_path.iterdir():
            f.unlink()


def test_spike_tensor_constructor_refuses_a_2_32_plus_1_capacity_without_reading_it(tmp_path) -> None:
    """SpikeTensor(ids, ...) over a 16 GiB sparse memmap: ValueError about the size, raised before
    the data is read (it must not scan the array: the parent stops the child if its resident memory
    passes 2 GiB, which reading the file would quickly do)."""
    code = textwrap.dedent(f"""
        import numpy as np, saltatory as sal
        ids = np.memmap({str(tmp_path / "ids")!r}, mode="w+", dtype=np.int32, shape=(1, 1, 2**32 + 1))
        zero = np.zeros((1, 1), np.int32)
        try:
            sal.SpikeTensor(ids, zero, zero, n_neurons=4)
            print("accepted")
        except ValueError as e:
            print("ValueError:", e)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    peak_kb, deadline = 0, time.monotonic() + 300  # a safety net only; the assertion is on memory
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            try:
                with open(f"/proc/{proc.pid}/status") as status:
                    rss = [int(line.split()[1]) for line in status if line.startswith("VmRSS:")]
                peak_kb = max([peak_kb, *rss])
            except (OSError, ValueError):
                pass
            if peak_kb > 2 << 20:  # 2 GiB: room for a sanitizer's overhead, far below 16 GiB
                break
            time.sleep(0.02)
    finally:
        if proc.poll() is None:
            proc.kill()
        stdout, stderr = proc.communicate()
        (tmp_path / "ids").unlink(missing_ok=True)
    assert peak_kb <= 2 << 20, f"SpikeTensor read the 16 GiB ids array (resident {peak_kb >> 10} MB)"
    assert proc.returncode == 0, stderr[-2000:]
    assert "ValueError: [SpikeTensor] ids (K) has size 4294967297" in stdout, (stdout, stderr[-2000:])


# ============================================================================ 6. memory limit


def _run_python(code: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=timeout, env=None if env is None else {**os.environ, **env})


def test_validation_over_2_31_neurons_stays_small_and_dense_views_are_refused() -> None:
    proc = _run_python("""
        import json, resource, numpy as np, saltatory as sal
        sal.set_memory_limit(64 << 20)
        N = 2**31 - 1
        ids = np.array([[[5, N - 1, 0, -1]]], np.int32)
        s = sal.SpikeTensor(ids, np.array([[2]], np.int32), np.array([[3]], np.int32), n_neurons=N)
        sal._core.validate_spikes(s, "probe")  # validates again, explicitly
        out = {}
        for name, call in [("to_dense", s.to_dense), ("counts", s.counts),
                           ("scatter", lambda: s.scatter(np.zeros((1, 1, 4), np.float32))),
                           ("duplicate", lambda: sal.SpikeTensor(np.array([[[N - 1, N - 1]]], np.int32),
                                                                  np.full((1, 1), 2, np.int32), n_neurons=N)),
                           ("out_of_range", lambda: sal.SpikeTensor(np.array([[[N]]], np.int32),
                                                                     np.ones((1, 1), np.int32), n_neurons=N))]:
            try:
                call()
                out[name] = "accepted"
            except ValueError as e:
                out[name] = str(e)
        out["activity"] = s.activity()
        out["maxrss_kb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        with open("/proc/self/status") as status:  # this image's own peak: ru_maxrss survives exec
            out["hwm_kb"] = [int(l.split()[1]) for l in status if l.startswith("VmHWM:")][0]
        print(json.dumps(out))
    """)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout)
    # Linux keeps ru_maxrss across execve, so in a child of a large pytest process it reports the
    # parent's peak; VmHWM is the child's own. Marks for 2^31 neurons would take 16 GiB.
    assert out["hwm_kb"] < 1 << 20, out  # 1 GiB: room for a sanitizer's overhead
    for name, op in (("to_dense", "SpikeTensor.to_dense"), ("counts", "counts"),
                     ("scatter", "SpikeTensor.scatter")):
        assert "memory limit" in out[name] and op in out[name], out[name]
    assert "twice" in out["duplicate"], out["duplicate"]
    assert "outside" in out["out_of_range"], out["out_of_range"]
    assert out["activity"] == pytest.approx(2 / (2**31 - 1))


UNLIMITED = ["inf", "99999999999T", "9.3e18", "9223372036854775808", "1e400"]
INVALID = ["nan", "-5", "abc", "0", "0.5", "8GB", "-inf", ""]


def test_memory_limit_environment_values() -> None:
    proc = _run_python(f"""
        import json, os, numpy as np, saltatory as sal
        out = {{}}
        for value in {UNLIMITED + INVALID!r}:
            os.environ["SALTATORY_MEMORY_LIMIT"] = value
            row = {{}}
            try:
                row["limit"] = sal.memory_limit()
            except ValueError as e:
                row["error"] = str(e)
            try:
                net = sal.Sequential(sal.LIF(3, 4, 2, seed=0))
                net(sal.SpikeTensor.from_dense(np.ones((2, 1, 3), np.float32)))
                row["forward"] = "ok"
            except ValueError as e:
                row["forward"] = str(e)
            sal.set_memory_limit(64 << 20)  # an explicit limit overrides a bad variable
            row["explicit"] = sal.memory_limit()
            sal.set_memory_limit(0)
            out[value] = row
        print(json.dumps(out))
    """)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout)
    for value in UNLIMITED:
        assert out[value].get("limit") == 2**63 - 1 and out[value]["forward"] == "ok", (value, out[value])
    for value in INVALID:
        row = out[value]
        assert "limit" not in row and "SALTATORY_MEMORY_LIMIT" in row["error"], (value, row)
        assert "SALTATORY_MEMORY_LIMIT" in row["forward"], (value, row)
    for value, row in out.items():
        assert row["explicit"] == 64 << 20, (value, row)


# ============================================================================ 7. overflow policy


def test_overflow_defaults_are_random() -> None:
    assert inspect.signature(Sequential).parameters["overflow"].default == "random"
    assert inspect.signature(SpikeTensor.from_dense).parameters["overflow"].default == "random"
    assert inspect.signature(SpikeTensor.from_events).parameters["overflow"].default == "random"
    assert Sequential(LIF(4, 4)).overflow == "random"
    dense = _dense(15, n=64, p=0.5)
    default = SpikeTensor.from_dense(dense, capacity=4)
    random = SpikeTensor.from_dense(dense, capacity=4, overflow="random")
    lowest = SpikeTensor.from_dense(dense, capacity=4, overflow="lowest")
    np.testing.assert_array_equal(default.ids, random.ids)
    assert not np.array_equal(default.ids, lowest.ids)


def test_torch_overflow_default_is_random() -> None:
    pytest.importorskip("torch")
    from saltatory.torch import SparseSequential

    assert inspect.signature(SparseSequential).parameters["overflow"].default == "random"
    assert SparseSequential(LIF(4, 4)).net.overflow == "random"


def _candidate_ids(s: SpikeTensor) -> np.ndarray:
    k = np.arange(s.capacity)[None, None, :]
    return s.ids[(k >= s.n_spk[..., None]) & (k < s.n_tot[..., None])]


def test_lowest_policy_starves_high_ids_and_random_does_not() -> None:
    counts = {}
    for policy in ("lowest", "random"):
        net = Sequential(LIF(32, 256, 40, theta2=-100.0, seed=3), overflow=policy)
        cand = []
        for seed in range(3):
            net(SpikeTensor.from_dense(_dense(100 + seed, T_=10, B_=4, n=32, p=0.3)))
            cand.append(_candidate_ids(net.spikes[0]))
        cand = np.concatenate(cand)
        counts[policy] = (cand.size, int(np.count_nonzero(cand >= 128)))
    assert counts["lowest"][0] > 0 and counts["lowest"][1] == 0, counts
    assert counts["random"][1] >= 0.3 * counts["random"][0] > 0, counts


@pytest.mark.parametrize("policy", ["lowest", "random"])
def test_dropped_spikes_and_candidates_are_counted_exactly(policy: str) -> None:
    x = SpikeTensor.from_dense(_dense(16, T_=12, B_=4, n=32, p=0.35))
    n_out = 64

    def run(capacity: int, device: str = "cpu") -> Sequential:
        net = Sequential(LIF(32, n_out, capacity, theta2=0.2, seed=3), overflow=policy, device=device, seed=9)
        net(x)
        return net

    full = run(n_out)
    f = full.spikes[0]
    assert full.dropped == [0] and full.dropped_candidates == [0]
    assert f.dropped == 0 and f.dropped_candidates == 0
    assert np.any(f.n_tot > f.n_spk)  # there are candidates to drop
    for capacity in (3, 12):
        net = run(capacity)
        s = net.spikes[0]
        np.testing.assert_array_equal(s.n_spk, np.minimum(f.n_spk, capacity))
        np.testing.assert_array_equal(s.n_tot, np.minimum(f.n_tot, capacity))
        dropped = int(np.maximum(f.n_spk - capacity, 0).sum())
        dropped_candidates = int(((f.n_tot - f.n_spk) - (s.n_tot - s.n_spk)).sum())
        assert dropped > 0 and dropped_candidates > 0
        assert net.dropped == [dropped] and s.dropped == dropped
        assert net.dropped_candidates == [dropped_candidates] and s.dropped_candidates == dropped_candidates
        for t in range(s.shape[0]):
            for b in range(s.shape[1]):
                spikes_full = set(f.ids[t, b, :f.n_spk[t, b]].tolist())
                cands_full = set(f.ids[t, b, f.n_spk[t, b]:f.n_tot[t, b]].tolist())
                kept = s.ids[t, b, :s.n_spk[t, b]].tolist()
                kept_c = s.ids[t, b, s.n_spk[t, b]:s.n_tot[t, b]].tolist()
                assert set(kept) <= spikes_full and set(kept_c) <= cands_full
                if policy == "lowest":
                    assert set(kept) == set(sorted(spikes_full)[:capacity])
                    assert set(kept_c) == set(sorted(cands_full)[:len(kept_c)])
        ipu = run(capacity, "ipu-model")
        assert ipu.dropped == net.dropped and ipu.dropped_candidates == net.dropped_candidates
        assert ipu.spikes[0].dropped_candidates == dropped_candidates
        for name in ("ids", "n_spk", "n_tot"):
            np.testing.assert_array_equal(getattr(ipu.spikes[0], name), getattr(s, name))


# ============================================================================ 8. gradient forms


def test_hidden_and_mixed_gradient_forms_agree() -> None:
    """grad_neurons for every layer == grad_entries of the gathered values, also mixing the forms
    per layer, on a recurrent last layer with K == N and checkpointing in time."""
    def make():
        return Sequential(LIF(N_IN, 10, 4, seed=0), RecurrentLIF(10, 6, 6, theta2=-1.0, seed=1),
                          recompute_segment=1)

    x = sal.SpikeTensor.from_dense(_dense(17, T_=6, B_=256))
    rng = np.random.default_rng(3)
    g0 = rng.standard_normal((6, 256, 10)).astype(np.float32)
    g1 = rng.standard_normal((6, 256, 6)).astype(np.float32)
    results = []
    for form in ("neurons", "entries", "mixed"):
        net = make()
        net(x)
        s0, s1 = net.spikes
        if form == "neurons":
            gin = net.backward(grad_neurons=[g0, g1], input_grad=True)
        elif form == "entries":
            gin = net.backward(grad_entries=[s0.gather(g0), s1.gather(g1)], input_grad=True)
        else:
            gin = net.backward(grad_entries=[s0.gather(g0), None], grad_neurons=[None, g1], input_grad=True)
        results.append((gin, _grads(net)))
    for gin, grads in results[1:]:
        np.testing.assert_array_equal(gin, results[0][0])
        for a, b in zip(grads, results[0][1]):
            np.testing.assert_array_equal(a, b)
    net = make()
    net(x)
    for positional in (g1, [g0, g1], [None, g1]):
        with pytest.raises(ValueError, match="ambiguous"):
            net.backward(positional)
    with pytest.raises(ValueError, match="ambiguous"):
        net.backward(g1, grad_neurons=g1)
    net.backward(grad_neurons=g1)  # the refusals did not consume the context


def test_per_neuron_gradient_of_unlisted_neurons_is_ignored() -> None:
    x = _input(18)
    net = _lif_net()
    net(x)
    noisy = []
    for s, g in zip(net.spikes, (G_HIDDEN, G_LAST)):
        listed = s.scatter(np.ones(s.shape, np.float32)) != 0
        noisy.append(g + np.where(listed, 0.0, 1e6).astype(np.float32))
        assert listed.any()
    assert not np.array_equal(noisy[0], G_HIDDEN)  # K = 4 < N = 10: some neurons are unlisted
    net.backward(grad_neurons=noisy)
    got = _grads(net)
    ref = _lif_net()
    ref(x)
    ref.backward(grad_neurons=[G_HIDDEN, G_LAST])
    for a, b in zip(got, _grads(ref)):
        np.testing.assert_array_equal(a, b)


def test_gather_scatter_round_trip_on_listed_entries() -> None:
    net = _mixed_net()
    net(_input(19))
    tensors = list(net.spikes) + [SpikeTensor.from_dense(_dense(20, n=16, p=0.5), capacity=3)]
    for s in tensors:
        T_, B_, K = s.shape
        listed = np.arange(K)[None, None, :] < s.n_tot[..., None]
        rng = np.random.default_rng(K)
        entries = rng.standard_normal(s.shape).astype(np.float32)
        neurons = rng.standard_normal((T_, B_, s.n_neurons)).astype(np.float32)
        np.testing.assert_array_equal(s.gather(s.scatter(entries)), np.where(listed, entries, 0))
        dense_listed = s.scatter(listed.astype(np.float32)) != 0
        np.testing.assert_array_equal(s.scatter(s.gather(neurons)), np.where(dense_listed, neurons, 0))
        assert dense_listed.sum() == listed.sum()  # ids in a list are distinct
        fortran = np.asfortranarray(neurons)  # any layout of the right shape and dtype
        np.testing.assert_array_equal(s.gather(fortran), s.gather(neurons))
        assert s.gather(neurons).dtype == np.float32 and s.scatter(entries).dtype == np.float32


def test_gather_and_scatter_refuse_wrong_arrays() -> None:
    net = _lif_net()
    net(_input(21))
    s = net.spikes[0]  # K = 4, N = 10
    T_, B_, K = s.shape
    good = np.zeros((T_, B_, s.n_neurons), np.float32)
    bad = {"float64": good.astype(np.float64), "int32": good.astype(np.int32), "list": good.tolist(),
           "shape_N+1": np.zeros((T_, B_, s.n_neurons + 1), np.float32),
           "shape_2d": np.zeros((T_, B_), np.float32), "shape_K": np.zeros((T_, B_, K), np.float32),
           "shape_T+1": np.zeros((T_ + 1, B_, s.n_neurons), np.float32), "scalar": np.float32(0),
           "none": None}
    for name, value in bad.items():
        with pytest.raises(EXPECTED, match=r"^\[SpikeTensor\.gather\]"):
            s.gather(value)
    for name, value in {"float64": np.zeros(s.shape), "shape_N": good, "list": [[0.0]]}.items():
        with pytest.raises(EXPECTED, match=r"^\[SpikeTensor\.scatter\]"):
            s.scatter(value)
    with pytest.raises(EXPECTED, match=r"\[SpikeTensor\.gather\]"):
        net.backward(grad_neurons=[good[..., :4], None])
    net.backward(grad_neurons=[good, None])  # still unconsumed
