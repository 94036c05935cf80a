// CUDA backend: the stack driver of stack.hpp on the GPU. One thread block of kThreads per sample
// runs the time recursions (forward_step, backward_sample); selection compacts ids in ascending
// order with cub::BlockScan prefix sums, so lists equal the CPU's; element kernels (grid-stride)
// run the input-entry gradients and weight-gradient columns; the weight gradient's spikes are
// grouped by a stable cub::DeviceRadixSort instead of global atomics; dense mode's products are
// cuBLAS SGEMMs (FP32, no TF32). Built with -fmad=false, so a * b + c rounds as on the CPU.
// The context owns its device memory; CUDA and cuBLAS errors throw DeviceError naming the op.
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <climits>
#include <cub/block/block_scan.cuh>
#include <cub/device/device_radix_sort.cuh>
#include <cub/device/device_scan.cuh>
#include <mutex>
#include <string>
#include <utility>

#include "backends/cuda/stack.hpp"
#include "backends/optional.hpp"

namespace saltatory {

namespace cuda {

namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxGrid = int64_t{1} << 20;

thread_local const char* current_op = "cuda";  // the op named by errors

void check_cuda(cudaError_t status, const char* what) {
  if (status == cudaSuccess) return;
  cudaGetLastError();  // clear it, so that a later launch check does not report it again
  throw DeviceError(current_op, std::string(what) + ": " + cudaGetErrorString(status));
}

void check_cublas(cublasStatus_t status, const char* what) {
  if (status != CUBLAS_STATUS_SUCCESS)
    throw DeviceError(current_op, std::string(what) + ": cuBLAS status " + std::to_string(status));
}

/// A thread block of kThreads for the step bodies.
struct CudaBlock {
  using Scan = cub::BlockScan<int, kThreads>;
  typename Scan::TempStorage* temp;

  __device__ int rank() const { return static_cast<int>(threadIdx.x); }
  __device__ int size() const { return kThreads; }
  __device__ void sync() { __syncthreads(); }
  /// Exclusive prefix sum over the block's ranks; `total` receives the block's sum.
  __device__ int exclusive_sum(int x, int& total) {
    int before = 0;
    Scan(*temp).ExclusiveSum(x, before, total);
    __syncthreads();  // the temp storage is reused by the next scan
    return before;
  }
};

template <class F>
__global__ void __launch_bounds__(kThreads) block_kernel(F f) {
  __shared__ typename CudaBlock::Scan::TempStorage temp;
  CudaBlock blk{&temp};
  f(blk, static_cast<int>(blockIdx.x));
}

template <class F>
__global__ void __launch_bounds__(kThreads) element_kernel(int64_t n, F f) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * kThreads;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x; i < n; i += stride)
    f(i);
}

/// The executor of stack.hpp on the current CUDA device (default stream).
class CudaExec {
 public:
  using Block = CudaBlock;

  /// Device memory, zero-filled; freed with its owner.
  template <class T>
  class Array {
   public:
    Array() = default;
    explicit Array(size_t n) : n_(n) {
      if (n == 0) return;
      check_cuda(
          cudaMalloc(&p_, n * sizeof(T)),
          ("allocating " + std::to_string(n * sizeof(T)) + " bytes of device memory").c_str());
      check_cuda(cudaMemset(p_, 0, n * sizeof(T)), "cudaMemset");
    }
    Array(Array&& other) noexcept
        : p_(std::exchange(other.p_, nullptr)), n_(std::exchange(other.n_, 0)) {}
    Array& operator=(Array&& other) noexcept {
      if (this != &other) {
        release();
        p_ = std::exchange(other.p_, nullptr);
        n_ = std::exchange(other.n_, 0);
      }
      return *this;
    }
    Array(const Array&) = delete;
    Array& operator=(const Array&) = delete;
    ~Array() { release(); }
    T* data() const { return p_; }
    size_t size() const { return n_; }

   private:
    void release() {
      if (p_ != nullptr && cudaFree(p_) != cudaSuccess) cudaGetLastError();  // e.g. at exit
      p_ = nullptr;
      n_ = 0;
    }
    T* p_ = nullptr;
    size_t n_ = 0;
  };

  ~CudaExec() {
    if (blas_ != nullptr) cublasDestroy(blas_);
  }

  /// From host or device memory (unified addressing tells which).
  template <class T>
  void upload(T* dst, const T* src, int64_t n) {
    if (n > 0) check_cuda(cudaMemcpy(dst, src, n * sizeof(T), cudaMemcpyDefault), "cudaMemcpy");
  }
  template <class T>
  void download(T* dst, const T* src, int64_t n) {
    if (n > 0)
      check_cuda(cudaMemcpy(dst, src, n * sizeof(T), cudaMemcpyDeviceToHost), "cudaMemcpy");
  }
  void fill_bytes(void* dst, int byte, size_t bytes) {
    if (bytes > 0) check_cuda(cudaMemset(dst, byte, bytes), "cudaMemset");
  }

  template <class F>
  void blocks(int grid, F f) {
    if (grid == 0) return;
    block_kernel<<<grid, kThreads>>>(f);
    check_cuda(cudaGetLastError(), "launching a block kernel");
  }
  template <class F>
  void for_each(int64_t n, F f) {
    if (n == 0) return;
    const int64_t grid = std::min<int64_t>((n + kThreads - 1) / kThreads, kMaxGrid);
    element_kernel<<<static_cast<unsigned>(grid), kThreads>>>(n, f);
    check_cuda(cudaGetLastError(), "launching an element kernel");
  }

  /// out = exclusive prefix sums of in[0:n]; returns the sum of all n.
  int64_t exclusive_sum(const int64_t* in, int64_t* out, int64_t n) {
    size_t bytes = 0;
    check_cuda(cub::DeviceScan::ExclusiveSum(nullptr, bytes, in, out, n), "cub::DeviceScan");
    Array<char> temp(bytes);
    check_cuda(cub::DeviceScan::ExclusiveSum(temp.data(), bytes, in, out, n), "cub::DeviceScan");
    int64_t last[2] = {0, 0};
    download(last, out + n - 1, 1);
    download(last + 1, in + n - 1, 1);
    return last[0] + last[1];
  }

  /// Sorts (keys, values)[0:n] by the low `bits` bits of the (non-negative) keys, stably.
  void sort_pairs(int64_t* keys, int32_t* values, int64_t n, int bits) {
    if (n == 0) return;
    check(n < INT_MAX, current_op, "too many spikes for one weight-gradient sort: ", n);
    auto* k_in = reinterpret_cast<unsigned long long*>(keys);
    Array<unsigned long long> k_out(n);
    Array<int32_t> v_out(n);
    const int count = static_cast<int>(n);
    size_t bytes = 0;
    check_cuda(cub::DeviceRadixSort::SortPairs(nullptr, bytes, k_in, k_out.data(), values,
                                               v_out.data(), count, 0, bits),
               "cub::DeviceRadixSort");
    Array<char> temp(bytes);
    check_cuda(cub::DeviceRadixSort::SortPairs(temp.data(), bytes, k_in, k_out.data(), values,
                                               v_out.data(), count, 0, bits),
               "cub::DeviceRadixSort");
    check_cuda(cudaMemcpy(k_in, k_out.data(), n * sizeof(int64_t), cudaMemcpyDeviceToDevice),
               "cudaMemcpy");
    check_cuda(cudaMemcpy(values, v_out.data(), n * sizeof(int32_t), cudaMemcpyDeviceToDevice),
               "cudaMemcpy");
  }

  /// C[m, n] += op(A) op(B), row-major (as cpu's gemm_add): cuBLAS computes the column-major
  /// transpose C^T = op(B)^T op(A)^T.
  void gemm_add(const float* a, bool a_transposed, const float* b, bool b_transposed, float* c,
                int64_t m, int64_t k, int64_t n) {
    if (m == 0 || n == 0 || k == 0) return;
    check(m < INT_MAX && n < INT_MAX && k < INT_MAX, current_op, "GEMM [", m, ", ", k, "] x [", k,
          ", ", n, "] is too large");
    if (blas_ == nullptr) {
      check_cublas(cublasCreate(&blas_), "cublasCreate");
      check_cublas(cublasSetMathMode(blas_, CUBLAS_PEDANTIC_MATH), "cublasSetMathMode");
    }
    const float one = 1.0f;
    check_cublas(cublasSgemm(blas_, b_transposed ? CUBLAS_OP_T : CUBLAS_OP_N,
                             a_transposed ? CUBLAS_OP_T : CUBLAS_OP_N, static_cast<int>(n),
                             static_cast<int>(m), static_cast<int>(k), &one, b,
                             static_cast<int>(b_transposed ? k : n), a,
                             static_cast<int>(a_transposed ? m : k), &one, c, static_cast<int>(n)),
                 "cublasSgemm");
  }

 private:
  cublasHandle_t blas_ = nullptr;
};

/// Names the op in errors raised while it runs.
class OpScope {
 public:
  explicit OpScope(const char* op) : previous_(std::exchange(current_op, op)) {}
  ~OpScope() { current_op = previous_; }
  OpScope(const OpScope&) = delete;
  OpScope& operator=(const OpScope&) = delete;

 private:
  const char* previous_;
};

class CudaBackend final : public Backend {
 public:
  std::string name() const override { return "cuda"; }
  bool learns_neuron_parameters() const override { return true; }
  bool continues_state() const override { return true; }

  std::shared_ptr<StackContext> lif_stack_forward(const StackConfig& config,
                                                  const std::vector<LayerParams>& params,
                                                  const SpikeView& input,
                                                  const StackState* initial) override {
    return run("lif_stack_forward",
               [&] { return stack_forward(exec_, config, params, input, initial); });
  }

  void lif_stack_backward(StackContext& context, const std::vector<const float*>& grad_outputs,
                          const std::vector<LayerGrads>& grads, float* grad_input) override {
    run("lif_stack_backward", [&] {
      stack_backward(exec_, dynamic_cast<DeviceContext<CudaExec>&>(context), grad_outputs, grads,
                     grad_input);
    });
  }

 private:
  /// Runs f as op `op`: errors name it, one call at a time, on device 0 (CUDA_VISIBLE_DEVICES
  /// chooses which GPU that is).
  template <class F>
  auto run(const char* op, F&& f) -> decltype(f()) {
    const OpScope scope(op);
    const std::lock_guard<std::mutex> lock(mutex_);
    check_cuda(cudaSetDevice(0), "cudaSetDevice");
    return f();
  }

  std::mutex mutex_;  // one call at a time: the executor's cuBLAS handle and default stream
  CudaExec exec_;
};

/// Why no CUDA device can be used, or "" when one can.
const std::string& unavailable_reason() {
  static const std::string reason = [] {
    int count = 0;
    const cudaError_t status = cudaGetDeviceCount(&count);
    if (status != cudaSuccess)
      return std::string("no CUDA device found (cudaGetDeviceCount: ") +
             cudaGetErrorString(status) + ")";
    return count > 0 ? std::string() : std::string("no CUDA device found");
  }();
  return reason;
}

}  // namespace

}  // namespace cuda

bool cuda_backend_built() { return true; }
bool cuda_device_present() { return cuda::unavailable_reason().empty(); }
Backend& cuda_backend() {
  check(cuda_device_present(), "device", "cuda is not available: ", cuda::unavailable_reason());
  // Never destroyed: its cuBLAS handle must not outlive the CUDA runtime's own exit teardown.
  static auto* backend = new cuda::CudaBackend;
  return *backend;
}

}  // namespace saltatory
