"""The cuda device from Python. Without a GPU: the build reports the backend, the device says why it
cannot run, and DLPack inputs are checked (dtype, shape, memory kind) before anything is read. With a
GPU (skipped otherwise, saying so): the backend equals the CPU (lists and readout bit for bit,
gradients to rounding), trains, runs dense mode, and reads PyTorch CUDA tensors through DLPack.
The kernels' logic is also run without a GPU, through an emulated grid, in the C++ suite
(EmulatedCudaEqualsCpu)."""

from __future__ import annotations

import os

import numpy as np
import pytest

import saltatory as sal

HAS_GPU = "cuda" in sal.available_devices()
needs_gpu = pytest.mark.skipif(not HAS_GPU, reason="no CUDA device on this machine "
                               "(the CUDA backend is compiled; these tests run where a GPU is)")


class FakeCudaArray:
    """A DLPack producer that claims CUDA memory but hands out a numpy (host) capsule: enough to
    exercise the checks that precede any read."""

    def __init__(self, array: np.ndarray) -> None:
        self.array = array
        self.shape = array.shape

    def __dlpack_device__(self):
        return (2, 0)

    def __dlpack__(self, stream=None):
        return self.array.__dlpack__()


def _input(seed: int = 0, T: int = 12, B: int = 5, N: int = 30) -> sal.SpikeTensor:
    rng = np.random.default_rng(seed)
    return sal.SpikeTensor.from_dense((rng.random((T, B, N)) < 0.2).astype(np.float32))


def _net(device: str, mode: str = "sparse") -> sal.Sequential:
    return sal.Sequential(sal.LIF(30, 26, 6, seed=1), sal.RecurrentLIF(26, 18, 5, bias=True, seed=2),
                          sal.Readout(18, 4, seed=3), coupling="delayed", device=device, mode=mode,
                          overflow="random", seed=5)


def test_build_reports_the_cuda_backend() -> None:
    if os.environ.get("SALTATORY_EXPECT_CUDA_BUILD") == "1":  # scripts/test sets it where nvcc is
        assert sal.build_info()["cuda"] is True
    if not sal.build_info()["cuda"]:
        assert "cuda" not in sal.available_devices()


@pytest.mark.skipif(HAS_GPU, reason="a CUDA device is present")
def test_cuda_without_a_device_says_why() -> None:
    with pytest.raises(ValueError, match=r"\[device\] cuda is not available: (no CUDA device found|this "
                                         r"build has no CUDA backend)"):
        _net("cuda")(_input())


def test_dlpack_inputs_are_checked_before_they_are_read() -> None:
    x = _input()
    fake = sal.SpikeTensor(FakeCudaArray(x.ids), FakeCudaArray(x.n_spk), FakeCudaArray(x.n_tot),
                           n_neurons=30)
    assert fake.device == "cuda" and "device=cuda" in repr(fake)
    with pytest.raises(ValueError, match=r"\[SpikeTensor.activity\] the spikes are in CUDA memory"):
        fake.activity()
    with pytest.raises(ValueError, match=r"\[SpikeTensor.to_dense\] the spikes are in CUDA memory"):
        fake.to_dense()
    with pytest.raises(ValueError, match=r"all be in CUDA memory or all on the host"):
        sal.SpikeTensor(FakeCudaArray(x.ids), x.n_spk, n_neurons=30)
    # the capsule really holds host memory: refused by its device type, on any device (the
    # device is set after construction, which refuses cuda without a GPU)
    net = _net("cpu")
    net.device = "cuda"
    with pytest.raises(ValueError, match=r"\[lif_stack_forward\] ids is on DLPack device type 1, "
                                         r"expected CUDA"):
        net(fake)
    wrong_dtype = sal.SpikeTensor(FakeCudaArray(x.ids.astype(np.int64)), FakeCudaArray(x.n_spk),
                                  n_neurons=30)
    with pytest.raises(TypeError, match=r"\[lif_stack_forward\] ids must have dtype int32, got DLPack "
                                        r"type code 0 with 64 bits"):
        _net("cpu")(wrong_dtype)
    wrong_shape = sal.SpikeTensor(FakeCudaArray(x.ids), FakeCudaArray(x.n_spk[:, :3].copy()),
                                  n_neurons=30)
    with pytest.raises(ValueError, match=r"n_spk has size 3 in dimension 1, expected 5"):
        _net("cpu")(wrong_shape)
    strided = sal.SpikeTensor(FakeCudaArray(x.ids[:, :, ::2]), FakeCudaArray(x.n_spk), n_neurons=30)
    with pytest.raises(ValueError, match=r"ids must be C-contiguous"):
        _net("cpu")(strided)


def _run(device: str, x: sal.SpikeTensor, mode: str = "sparse"):
    net = _net(device, mode)
    out = net(x)
    labels = np.arange(x.shape[1], dtype=np.int32) % 4
    loss, grad = sal.losses.membrane_cross_entropy(out, labels)
    grad_in = net.backward(grad, input_grad=True)
    return net, out.copy(), [p.grad.copy() for p in net.parameters()], grad_in, loss


def _assert_like_cpu(cuda, cpu) -> None:
    net_g, out_g, grads_g, in_g, _ = cuda
    net_c, out_c, grads_c, in_c, _ = cpu
    for sg, sc in zip(net_g.spikes, net_c.spikes):  # lists bit for bit
        np.testing.assert_array_equal(sg.ids, sc.ids)
        np.testing.assert_array_equal(sg.n_spk, sc.n_spk)
        np.testing.assert_array_equal(sg.n_tot, sc.n_tot)
    assert net_g.dropped == net_c.dropped
    np.testing.assert_array_equal(out_g, out_c)
    for a, b in zip(grads_g, grads_c):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(in_g, in_c, rtol=1e-5, atol=1e-6)


@needs_gpu
def test_cuda_equals_cpu() -> None:
    x = _input(1)
    _assert_like_cpu(_run("cuda", x), _run("cpu", x))


@needs_gpu
def test_cuda_reads_torch_tensors_through_dlpack() -> None:
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("this PyTorch has no CUDA")
    x = _input(2)
    on_gpu = sal.SpikeTensor(*(torch.from_numpy(a).cuda() for a in (x.ids, x.n_spk, x.n_tot)),
                             n_neurons=30)
    assert on_gpu.device == "cuda"
    _assert_like_cpu(_run("cuda", on_gpu), _run("cpu", x))
    bad = torch.from_numpy(x.ids).cuda()
    bad[0, 0, 0] = 99
    with pytest.raises(ValueError, match=r"id 99 at \[0, 0, 0\] is outside \[0, 30\)"):
        _net("cuda")(sal.SpikeTensor(bad, torch.from_numpy(x.n_spk).cuda(),
                                     torch.from_numpy(np.maximum(x.n_tot, 1)).cuda(), n_neurons=30))


@needs_gpu
def test_cuda_dense_mode_matches_the_cpu_dense_mode() -> None:
    x = _input(3)
    gpu, cpu = _run("cuda", x, "dense"), _run("cpu", x, "dense")
    np.testing.assert_allclose(gpu[1], cpu[1], rtol=1e-4, atol=1e-5)
    for a, b in zip(gpu[2], cpu[2]):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4)


@needs_gpu
def test_cuda_trains_like_the_cpu() -> None:
    x = _input(4, T=20, B=16)
    labels = np.arange(16, dtype=np.int32) % 4
    losses = {}
    for device in ("cpu", "cuda"):
        net = _net(device)
        opt = sal.optim.Adam(net.parameters(), lr=1e-2)
        history = []
        for _ in range(5):
            net.zero_grad()
            loss, grad = sal.losses.membrane_cross_entropy(net(x), labels)
            net.backward(grad)
            opt.step()
            history.append(loss)
        losses[device] = history
    np.testing.assert_allclose(losses["cuda"], losses["cpu"], rtol=1e-4)
    assert losses["cuda"][-1] < losses["cuda"][0]


@needs_gpu
@pytest.mark.parametrize("learn", [False, True])
def test_cuda_recompute_equals_stored(learn) -> None:
    """Checkpointing in time on the GPU gives bitwise the stored path's gradients: from the
    membranes kept at the list entries (fixed neuron parameters) or recomputed (learnable)."""
    x = _input(5, T=40, B=64)
    results = []
    options = {"learn_alpha": True, "learn_threshold": True} if learn else {}
    for segment in (0, 5):
        net = sal.Sequential(sal.LIF(30, 26, 6, seed=1, **options),
                             sal.RecurrentLIF(26, 18, 5, seed=2, **options),
                             sal.Readout(18, 4, seed=3), device="cuda", recompute_segment=segment)
        out = net(x)
        _, grad = sal.losses.membrane_cross_entropy(out, np.arange(64, dtype=np.int32) % 4)
        net.backward(grad)
        results.append([out.copy()] + [p.grad.copy() for p in net.parameters()])
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)
