"""One benchmark record: a library trains one workload point for warm-up + timed steps.

Each record runs in its own worker process (``python -m saltatory.bench --worker SPEC``), so peak
memory is the worker's own: the resident-set high-water mark during training minus the resident
set after imports (it counts weights, optimiser state, data and everything the steps allocate).

A step is forward + loss + backward + optimiser step (Adam, lr 1e-3). Baselines get the same
network (weights, decay alpha, per-layer gain folded into their weights, threshold 1, reset to
zero), the same input spikes (as a dense [T, B, N] tensor), the same loss and the same thread
count, in their fastest idiomatic CPU form: the feed-forward stack is run layer by layer, one
GEMM over all T*B rows per layer followed by the neuron's time loop (snnTorch ``Leaky`` called
per step; Norse's sequence module ``LIF``, which loops internally; SpikingJelly's multi-step
``LIFNode``; a ``lax.scan`` in JAX and in Spyx, each step one jit-compiled function).
"""

from __future__ import annotations

import importlib
import os
import statistics
import time

import numpy as np

from . import workloads as wl


def _status_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _reset_peak() -> None:
    try:  # Linux: writing 5 resets the VmHWM high-water mark
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def _timed_steps(run, warmup: int, repeats: int, max_seconds: float) -> list[float]:
    """Runs warm-up then timed steps, each from the initial weights (restored untimed, so the
    activity stays at the calibrated point while the optimiser's state evolves). Timing stops
    once max_seconds of timed steps have passed (at least one step), so that huge dense baselines
    finish. Returns the step times."""
    for _ in range(warmup):
        run.restore()
        run.step()
    times = []
    for _ in range(repeats):
        run.restore()
        t0 = time.perf_counter()
        run.step()
        times.append(time.perf_counter() - t0)
        if sum(times) > max_seconds:
            break
    return times


def run_record(spec: dict) -> dict:
    """Runs one record described by ``spec`` (see ``saltatory.bench.plan``); returns its fields."""
    library, threads = spec["library"], spec["threads"]
    w = wl.Workload(spec["workload"], tuple(spec["sizes"]), spec["batch"], spec["steps"],
                    spec["input_capacity"], spec["output_capacity"], spec["loss"])
    activity = spec["activity"]
    device = spec.get("device", "cpu")
    if library == "saltatory":
        import saltatory

        saltatory.set_num_threads(threads)
        runner = _SaltatoryRunner
    else:
        runner = BASELINES[library]
        try:
            runner.check(threads, device)
        except ImportError as e:
            return {"error": f"{library} is not installed ({e}); pip install 'saltatory[bench]'"}
    rss0 = _status_kib("VmRSS") or 0
    _reset_peak()
    x, labels = wl.make_input(w, activity)
    options = {"neuron": spec["neuron"]} if spec.get("neuron", "lif") != "lif" else {}
    run = runner(w, activity, spec["gains"], spec["mode"], x, labels, device, **options)
    times = _timed_steps(run, spec["warmup"], spec["repeats"], spec["max_seconds"])
    if device == "cpu":  # the worker's resident-set high-water mark above its start
        peak = _status_kib("VmHWM")
        peak = None if peak is None else max(0, peak - rss0)
    else:
        peak = run.device_peak_bytes()
    step_s = statistics.median(times)
    record = {
        "samples_per_s": w.batch / step_s,
        "step_s": step_s,
        "repeats": len(times),
        "hidden_activity": run.hidden_activity(),
        "layer_activity": run.layer_activity(),
        "peak_mem_bytes": peak,
    }
    if library == "saltatory" and spec["mode"] in ("sparse", "recompute"):
        record["weight_bytes_per_step"] = run.weight_bytes()
        record["dropped_fraction"] = run.dropped_fraction()
    return record


def _hidden_activity(w: wl.Workload, layer_activity: list[float]) -> float:
    """Mean measured activity of the hidden layers (the paper networks' output layer excluded)."""
    hidden = layer_activity[:-1] if w.output_capacity is not None else layer_activity
    return float(np.mean(hidden))


class _SaltatoryRunner:
    def __init__(self, w: wl.Workload, activity: float, gains, mode: str, x, labels, device: str = "cpu",
                 neuron: str = "lif"):
        from .. import losses, optim

        self.w, self.x, self.labels, self.losses = w, x, labels, losses
        self.initial = wl.weights(w)
        self.net = wl.build_net(w, activity, gains, mode, self.initial, device=device,
                                neuron=neuron)
        self.opt = optim.Adam(self.net.parameters(), lr=1e-3)

    @staticmethod
    def device_peak_bytes() -> None:
        return None  # the CUDA backend's device memory is not tracked yet

    def restore(self) -> None:
        for layer, weight in zip(self.net.layers, self.initial):
            layer.weight.data[...] = weight

    def step(self) -> None:
        out = self.net(self.x)
        if self.w.loss == "sum":
            grad = np.ones(out.ids.shape, np.float32)  # d(sum of output spikes)/d(every entry)
        else:
            _, grad = self.losses.spike_count_cross_entropy(out, self.labels)
        self.opt.zero_grad()
        self.net.backward(grad_entries=grad)
        self.opt.step()

    def layer_activity(self) -> list[float]:
        return [s.activity() for s in self.net.spikes]

    def hidden_activity(self) -> float:
        return _hidden_activity(self.w, self.layer_activity())

    def dropped_fraction(self) -> float:
        dropped = sum(self.net.dropped)
        emitted = sum(int(s.n_spk.sum()) for s in self.net.spikes)
        return dropped / max(1, dropped + emitted)

    def weight_bytes(self) -> int:
        """Bytes of weight rows one training step must touch (float32): per layer, the forward
        gather reads one row per input spike, the weight-gradient scatter reads and writes one,
        and (above the first layer) the input-gradient gather-dot reads one per listed entry."""
        total = 0
        inputs = [self.x] + self.net.spikes[:-1]
        for layer, s in enumerate(inputs):
            row = 4 * self.w.sizes[layer + 1]
            spikes, entries = int(s.n_spk.sum()), int(s.n_tot.sum())
            total += row * (3 * spikes + (entries if layer > 0 else 0))
        return total


class _TorchRunner:
    """Shared parts of the PyTorch baselines: dense input, folded weights, loss and Adam."""

    @classmethod
    def check(cls, threads: int, device: str) -> None:
        """Imports PyTorch and the library (ImportError when missing) and sets the thread count."""
        import torch

        cls.load()
        torch.set_num_threads(threads)

    def __init__(self, w: wl.Workload, activity: float, gains, mode: str, x, labels, device: str = "cpu"):
        import torch

        self.torch, self.w, self.device = torch, w, device
        if device == "cuda" and not torch.cuda.is_available():
            raise RuntimeError("this PyTorch has no CUDA")
        self.x = torch.from_numpy(x.to_dense()).to(device)  # [T, B, N_in] float32
        self.labels = torch.from_numpy(np.asarray(labels, np.int64)).to(device)
        self.linears = torch.nn.ModuleList()
        for i, weight in enumerate(wl.weights(w)):
            lin = torch.nn.Linear(w.sizes[i], w.sizes[i + 1], bias=False)
            with torch.no_grad():  # fold Saltatory's input scale into the weights
                lin.weight.copy_(torch.from_numpy(weight.T * self.input_scale(gains[i])))
            self.linears.append(lin)
        self.linears.to(device)
        self.initial = [lin.weight.detach().clone() for lin in self.linears]
        self.neurons = [neuron.to(device) for neuron in self.make_neurons()]
        self.opt = torch.optim.Adam(self.linears.parameters(), lr=1e-3)
        self.spikes = []

    def restore(self) -> None:
        with self.torch.no_grad():
            for lin, weight in zip(self.linears, self.initial):
                lin.weight.copy_(weight)

    def step(self) -> None:
        h, self.spikes = self.x, []
        for lin, neuron in zip(self.linears, self.neurons):
            h = self.run_layer(neuron, lin(h))  # one GEMM over [T, B, n_in], then the time loop
            self.spikes.append(h.detach())
        if self.w.loss == "sum":
            loss = h.sum()
        else:
            loss = self.torch.nn.functional.cross_entropy(h.sum(0), self.labels)
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        if self.device == "cuda":
            self.torch.cuda.synchronize()  # the step's time includes its kernels

    def device_peak_bytes(self) -> int | None:
        return self.torch.cuda.max_memory_allocated() if self.device == "cuda" else None

    def layer_activity(self) -> list[float]:
        return [float(s.mean()) for s in self.spikes]

    def hidden_activity(self) -> float:
        return _hidden_activity(self.w, self.layer_activity())


class _SnnTorchRunner(_TorchRunner):
    @staticmethod
    def load() -> None:
        import snntorch  # noqa: F401

    @staticmethod
    def input_scale(gain: float) -> float:  # mem = alpha mem + input
        return gain * (1 - wl.ALPHA)

    def make_neurons(self):
        import snntorch as snn

        return [snn.Leaky(beta=wl.ALPHA, threshold=1.0, reset_mechanism="zero")
                for _ in self.linears]

    def run_layer(self, neuron, current):
        mem = neuron.init_leaky()
        out = []
        for t in range(current.shape[0]):
            spk, mem = neuron(current[t], mem)
            out.append(spk)
        return self.torch.stack(out)


class _NorseRunner(_TorchRunner):
    @staticmethod
    def load() -> None:
        import norse.torch  # noqa: F401

    @staticmethod
    def input_scale(gain: float) -> float:  # v += dt tau_mem_inv (i - v), dt tau_mem_inv = 1 - alpha
        return gain

    def make_neurons(self):
        import norse.torch as norse

        # dt = 1 ms, tau_mem_inv = (1 - alpha) / dt; a fast synapse (tau_syn_inv = 1/dt) so the
        # current reaches the membrane within a step.
        p = norse.LIFParameters(tau_mem_inv=self.torch.tensor((1 - wl.ALPHA) / 1e-3),
                                tau_syn_inv=self.torch.tensor(1e3), v_th=self.torch.tensor(1.0),
                                v_reset=self.torch.tensor(0.0))
        return [norse.LIF(p) for _ in self.linears]

    def run_layer(self, neuron, current):
        spikes, _ = neuron(current)
        return spikes


class _SpikingJellyRunner(_TorchRunner):
    @staticmethod
    def load() -> None:
        import spikingjelly.activation_based.neuron  # noqa: F401

    @staticmethod
    def input_scale(gain: float) -> float:  # H = V + (X - V) / tau with tau = 1 / (1 - alpha)
        return gain

    def make_neurons(self):
        from spikingjelly.activation_based import neuron, surrogate

        # multi-step mode: one call runs the whole [T, B, N] sequence; hard reset to 0, detached
        return [neuron.LIFNode(tau=1 / (1 - wl.ALPHA), decay_input=True, v_threshold=1.0, v_reset=0.0,
                               surrogate_function=surrogate.ATan(), detach_reset=True, step_mode="m")
                for _ in self.linears]

    def run_layer(self, neuron, current):
        neuron.reset()  # the membrane starts at 0 in every step
        return neuron(current)


def _load_jax(threads: int, device: str, *modules: str) -> None:
    """Imports JAX and ``modules`` (ImportError when missing) on ``device``'s platform, with this
    process's CPUs cut to ``threads`` first: XLA sizes its CPU thread pool by the CPUs a process
    may use."""
    os.environ["JAX_PLATFORMS"] = "cpu" if device == "cpu" else "cuda"
    cpus = sorted(os.sched_getaffinity(0))
    if device == "cpu" and threads < len(cpus):
        os.sched_setaffinity(0, cpus[:threads])
    for module in ("jax", *modules):
        importlib.import_module(module)


def _spike_counts_loss(w: wl.Workload, spikes, labels):
    """The step's loss on the output layer's [T, B, C] spikes, in JAX."""
    import optax

    if w.loss == "sum":
        return spikes.sum()
    return optax.softmax_cross_entropy_with_integer_labels(spikes.sum(0), labels).mean()


class _JaxRunner:
    """Idiomatic JAX: the whole training step one ``jax.jit`` (``value_and_grad`` and optax Adam);
    each layer is one GEMM over all T*B rows and a ``lax.scan`` of the LIF over time, whose spike is
    a ``custom_jvp`` Heaviside with the arctan surrogate (snnTorch's default)."""

    @staticmethod
    def check(threads: int, device: str) -> None:
        _load_jax(threads, device, "optax")

    def __init__(self, w: wl.Workload, activity: float, gains, mode: str, x, labels, device: str = "cpu"):
        import jax
        import jax.numpy as jnp
        import optax

        self.jax, self.w = jax, w
        self.x = jnp.asarray(x.to_dense())  # [T, B, N_in]
        self.labels = jnp.asarray(labels, jnp.int32)
        # V[t] = alpha V[t-1] (1 - r[t]) + x W: Saltatory's input scale g (1 - alpha) folded into W
        self.initial = [jnp.asarray(weight * gain * (1 - wl.ALPHA))
                        for weight, gain in zip(wl.weights(w), gains)]
        adam = optax.adam(1e-3)

        @jax.custom_jvp
        def spike(v):
            return (v > 0).astype(v.dtype)

        @spike.defjvp
        def spike_jvp(primals, tangents):
            (v,), (dv,) = primals, tangents
            return spike(v), dv / (1 + (jnp.pi * v) ** 2)  # snnTorch's ATan(alpha=2)

        def lif(current):  # [T, B, N] -> spikes [T, B, N]; the reset is detached
            def advance(v, i):
                v = wl.ALPHA * v * (v <= 1.0) + i
                return v, spike(v - 1.0)

            return jax.lax.scan(advance, jnp.zeros(current.shape[1:], current.dtype), current)[1]

        def loss(params, x, labels):
            spikes = []
            for weight in params:
                x = lif(x @ weight)
                spikes.append(x)
            return _spike_counts_loss(w, x, labels), [s.mean() for s in spikes]

        def train_step(params, opt_state, x, labels):
            (_, activity), grads = jax.value_and_grad(loss, has_aux=True)(params, x, labels)
            updates, opt_state = adam.update(grads, opt_state, params)
            return optax.apply_updates(params, updates), opt_state, activity

        self.train_step = jax.jit(train_step)
        self.params, self.opt_state = self.initial, adam.init(self.initial)
        self.activity = []

    def restore(self) -> None:
        self.params = self.initial  # jax arrays are immutable: no copy needed

    def step(self) -> None:
        self.params, self.opt_state, self.activity = self.train_step(
            self.params, self.opt_state, self.x, self.labels)
        self.jax.block_until_ready(self.params)  # the step's time includes its computation

    def device_peak_bytes(self) -> int | None:
        stats = self.jax.devices()[0].memory_stats() or {}
        return stats.get("peak_bytes_in_use")

    def layer_activity(self) -> list[float]:
        return [float(a) for a in self.activity]

    def hidden_activity(self) -> float:
        return _hidden_activity(self.w, self.layer_activity())


class _SpyxRunner(_JaxRunner):
    """Spyx's own layers: per layer a Flax NNX ``Linear`` over all T*B rows and ``spyx.nn.LIF`` run
    over time by ``spyx.nn.run`` (a ``lax.scan``), trained by one ``nnx.jit`` step with
    ``nnx.Optimizer`` (optax Adam). Spyx's LIF is another neuron: it spikes on the membrane *before*
    the step's update (``S[t] = H(V[t-1] - 1)``), subtracts the threshold rather than resetting to
    zero, and does not detach the reset, so its activity differs at the same weights. Its beta is
    an ``nnx.Param``; only the weights are trained, as in every other runner."""

    @staticmethod
    def check(threads: int, device: str) -> None:
        _load_jax(threads, device, "optax", "flax.nnx", "spyx.nn")

    def __init__(self, w: wl.Workload, activity: float, gains, mode: str, x, labels, device: str = "cpu"):
        import jax
        import jax.numpy as jnp
        import optax
        import spyx
        from flax import nnx

        self.jax, self.nnx, self.w = jax, nnx, w
        self.x = jnp.asarray(x.to_dense())
        self.labels = jnp.asarray(labels, jnp.int32)
        rngs = nnx.Rngs(0)

        class Stack(nnx.Module):
            def __init__(self):
                self.linears = nnx.List([nnx.Linear(n_in, n_out, use_bias=False, rngs=rngs)
                                         for n_in, n_out in zip(w.sizes[:-1], w.sizes[1:])])
                self.neurons = nnx.List([spyx.nn.LIF((n,), beta=np.float32(wl.ALPHA), threshold=1.0,
                                                     activation=spyx.axn.arctan(), rngs=rngs)
                                         for n in w.sizes[1:]])

            def __call__(self, x):
                spikes = []
                for linear, neuron in zip(self.linears, self.neurons):
                    x, _ = spyx.nn.run(neuron, linear(x))  # V = beta V + x W
                    spikes.append(x)
                return spikes

        self.model = Stack()
        for linear, weight, gain in zip(self.model.linears, wl.weights(w), gains):
            linear.kernel[...] = jnp.asarray(weight * gain * (1 - wl.ALPHA))
        self.initial = jax.tree.map(jnp.copy, nnx.state(self.model))  # values, not the variables
        weights = nnx.All(nnx.Param, nnx.PathContains("linears"))  # beta stays fixed, as elsewhere
        self.optimizer = nnx.Optimizer(self.model, optax.adam(1e-3), wrt=weights)

        @nnx.jit
        def train_step(model, optimizer, x, labels):
            def loss(model):
                spikes = model(x)
                return _spike_counts_loss(w, spikes[-1], labels), [s.mean() for s in spikes]

            (_, activity), grads = nnx.value_and_grad(
                loss, argnums=nnx.DiffState(0, weights), has_aux=True)(model)
            optimizer.update(model, grads)
            return activity

        self.train_step = train_step
        self.activity = []

    def restore(self) -> None:
        self.nnx.update(self.model, self.initial)

    def step(self) -> None:
        self.activity = self.train_step(self.model, self.optimizer, self.x, self.labels)
        self.jax.block_until_ready(self.activity)


#: the baselines by name: each runs the same network, input and loss in its library's idiom
BASELINES = {"snntorch": _SnnTorchRunner, "norse": _NorseRunner, "spikingjelly": _SpikingJellyRunner,
             "jax": _JaxRunner, "spyx": _SpyxRunner}


def worker_env(threads: int) -> dict:
    """Environment of a worker process: the thread count pinned for OpenMP-based PyTorch too."""
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = str(threads)
    return env
