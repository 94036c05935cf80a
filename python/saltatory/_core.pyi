"""
Saltatory compiled core (use the saltatory package, not this module)
"""
from __future__ import annotations
import numpy
import typing
__all__: list[str] = ['Adam', 'IpuPlanOptions', 'IpuTarget', 'LayerConfig', 'Optimizer', 'Sgd', 'StackContext', 'available_devices', 'build_info', 'ipu_plan', 'lif_stack_backward', 'lif_stack_forward', 'membrane_cross_entropy', 'memory_limit', 'option_names', 'probe_gather_bandwidth', 'probe_multiply_add', 'require_device', 'set_memory_limit', 'set_num_threads', 'spike_count_cross_entropy', 'spike_counts', 'spikes_from_dense', 'spikes_from_events', 'spikes_to_dense', 'validate_spikes']
class LayerConfig:
    beta: float
    bias: bool
    capacity: int
    gain: float
    kind: str
    n_in: int
    n_out: int
    neuron: str
    reset: str
    reset_grad: str
    surrogate: str
    theta1: float
    theta2: float
    def __init__(self) -> None:
        ...
    @property
    def states(self) -> int:
        ...
class StackContext:
    def final_state(self) -> tuple:
        ...
    def stored_states(self, arg0: int) -> typing.Any:
        ...
    @property
    def backward_done(self) -> bool:
        ...
    @property
    def dropped(self) -> list[int]:
        ...
    @property
    def dropped_candidates(self) -> list[int]:
        ...
    @property
    def input_shape(self) -> tuple:
        ...
    @property
    def ipu_report(self) -> typing.Any:
        ...
    @property
    def readout(self) -> typing.Any:
        ...
    @property
    def spikes(self) -> list:
        ...
class Optimizer:
    lr: float
    def load_state(self, arg0: int, arg1: list) -> None:
        ...
    def step(self, arg0: list) -> None:
        ...
    @property
    def state(self) -> list:
        ...
    @property
    def steps(self) -> int:
        ...
class Sgd(Optimizer):
    def __init__(self, lr: float, momentum: float = 0.0, weight_decay: float = 0.0) -> None:
        ...
class Adam(Optimizer):
    def __init__(self, lr: float = 0.0010000000474974513, beta1: float = 0.8999999761581421, beta2: float = 0.9990000128746033, eps: float = 9.99999993922529e-09, weight_decay: float = 0.0, decoupled_weight_decay: bool = False) -> None:
        ...
class IpuPlanOptions:
    B: int
    T: int
    input_capacity: int
    neurons_per_tile: int
    optimizer_slots: int
    def __init__(self) -> None:
        ...
class IpuTarget:
    bytes_per_tile: int
    clock_hz: float
    ipus: int
    reserved_bytes_per_tile: int
    tiles_per_ipu: int
    workers_per_tile: int
    def __init__(self) -> None:
        ...
def available_devices() -> list[str]:
    ...
def build_info() -> dict:
    ...
def ipu_plan(layers: list[LayerConfig], coupling: str, recompute_segment: int, options: IpuPlanOptions, target: IpuTarget) -> dict:
    ...
def lif_stack_backward(arg0: StackContext, arg1: list, arg2: list, arg3: typing.Any) -> None:
    ...
def lif_stack_forward(layers: list[LayerConfig], params: list, input: typing.Any, *, coupling: str, mode: str, overflow: str, seed: typing.Any, device: str, recompute_segment: typing.Any, state: typing.Any = None) -> StackContext:
    ...
def membrane_cross_entropy(arg0: typing.Any, arg1: typing.Any) -> tuple:
    ...
def memory_limit() -> int:
    ...
def option_names() -> dict:
    ...
def probe_gather_bandwidth(rows: int, cols: int, k: int, min_seconds: float = 0.2) -> float:
    """
    Bytes/s of summing lists of k random rows of a [rows, cols] float32 matrix (all threads).
    """
def probe_multiply_add(min_seconds: float = 0.2) -> tuple:
    """
    (FLOP/s, used_fma) of independent multiply-add chains on all threads.
    """
def require_device(name: str) -> None:
    ...
def set_memory_limit(bytes: typing.Any) -> None:
    ...
def set_num_threads(n: typing.Any) -> None:
    ...
def spike_count_cross_entropy(arg0: typing.Any, arg1: typing.Any) -> tuple:
    ...
def spike_counts(arg0: typing.Any) -> numpy.ndarray[numpy.float32]:
    ...
def spikes_from_dense(dense: typing.Any, capacity: typing.Any, overflow: str, seed: typing.Any, first_step: typing.Any = 0) -> tuple:
    ...
def spikes_from_events(samples: typing.Any, times: typing.Any, units: typing.Any, bin_width: float, n_steps: typing.Any, batch_size: typing.Any, n_neurons: typing.Any, capacity: typing.Any, overflow: str, seed: typing.Any) -> tuple:
    ...
def spikes_to_dense(arg0: typing.Any) -> numpy.ndarray[numpy.float32]:
    ...
def validate_spikes(arg0: typing.Any, arg1: str) -> None:
    ...
