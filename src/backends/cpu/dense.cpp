// Dense mode: the baseline the method is measured against. Spikes are dense 0/1 matrices and every
// product is a GEMM over all neurons (gemm.hpp), whatever the activity; lists have capacity N.
//   forward:  I = X W + bias, one GEMM over all T*B rows (X [T*B, N_in] 0/1, t' rows);
//             then per step I[t] += S[t-1] W_rec
//   backward: the neuron model's carry_row, dense_state_grad_row of gS_dense at every neuron a
//             list would hold (masked surrogate: a spike or a candidate), current_grad_row (gI):
//             dW += X^T gI;  dW_rec += S_prev^T gI;  dbias += sum gI
//             gX = gI W^T (gathered to the input entries);  gS_dense[t-1] += gI[t] W_rec^T
// Matrices are row-major: X, I, gI [T*B, N]; W [N_in, N_out]. Step -1 (X's delayed rows, S[-1],
// the states) comes from the initial state when the call continues a sequence.
#include <algorithm>

#include "backends/cpu/cpu_backend.hpp"
#include "backends/cpu/gemm.hpp"
#include "backends/cpu/parallel.hpp"
#include "saltatory/kernels/lif.hpp"
#include "saltatory/kernels/neurons/model.hpp"
#include "saltatory/kernels/sparse.hpp"

namespace saltatory::cpu {

namespace {

/// A pooled buffer of `n` zeros.
Buffer zeroed_buffer(size_t n) {
  Buffer buffer = acquire_buffer(n);
  std::fill_n(buffer.get(), n, 0.0f);
  return buffer;
}

/// Dense 0/1 rows [T*B, N] of `spikes`, where row (t, b) holds step t - delay (zero before the
/// history's first step).
Buffer dense_rows(const common::SpikeHistory& spikes, int T, int delay) {
  const int B = spikes.now.B, N = spikes.now.N;
  Buffer x = zeroed_buffer(static_cast<size_t>(T) * B * N);
  for (int t = 0; t < T; ++t)
    for (int b = 0; b < B && spikes.has(t - delay); ++b)
      kernels::scatter_value(x.get() + (static_cast<int64_t>(t) * B + b) * N,
                             spikes.list(t - delay, b), spikes.spikes(t - delay, b), 1.0f);
  return x;
}

}  // namespace

Drops dense_forward(const LayerRun& run) {
  const LayerConfig& c = run.config;
  const LayerParams& p = run.params;
  const int n = c.n_out, T = run.T, B = run.B;
  const int64_t rows = static_cast<int64_t>(T) * B;
  Buffer current = p.bias != nullptr ? acquire_buffer(rows * n) : zeroed_buffer(rows * n);
  if (p.bias != nullptr)  // every row starts from the bias
    for (int64_t r = 0; r < rows; ++r) std::copy_n(p.bias, n, current.get() + r * n);
  const Buffer x = dense_rows(run.input_history(), T, run.input_delay);
  // one GEMM over all T*B rows; an entry's fma chain does not depend on the call's shape, so
  // consecutive chunks of a sequence equal the whole one bit for bit
  gemm_add(x.get(), false, p.weight, false, current.get(), rows, c.n_in, n);

  const bool recurrent = c.kind == LayerKind::recurrent_lif;
  const common::SpikeHistory own = recurrent ? run.own_history() : common::SpikeHistory{};
  std::vector<float> previous(recurrent ? static_cast<size_t>(B) * n : 0, 0.0f);
  std::vector<SelectScratch> scratch(B, SelectScratch(n, n));
  std::vector<Drops> dropped(B);
  for (int t = 0; t < T; ++t) {
    float* current_t = current.get() + static_cast<int64_t>(t) * B * n;
    if (recurrent && own.has(t - 1)) {
      std::fill(previous.begin(), previous.end(), 0.0f);
      for (int b = 0; b < B; ++b)
        kernels::scatter_value(previous.data() + static_cast<int64_t>(b) * n, own.list(t - 1, b),
                               own.spikes(t - 1, b), 1.0f);
      gemm_add(previous.data(), false, p.weight_rec, false, current_t, B, n, n);
    }
    parallel_for(0, B, [&](int64_t b) {
      dropped[b] +=
          update_and_select(run, t, b, current_t + static_cast<int64_t>(b) * n, scratch[b], true);
    });
  }
  Drops total;
  for (const Drops& d : dropped) total += d;
  return total;
}

void dense_backward(const LayerRun& run, const float* grad_output, const LayerGrads& grads,
                    float* grad_input) {
  const LayerConfig& c = run.config;
  const LayerParams& p = run.params;
  const int n = c.n_out, T = run.T, B = run.B;
  const int64_t rows = static_cast<int64_t>(T) * B;
  const bool readout = c.kind == LayerKind::readout;
  const bool recurrent = c.kind == LayerKind::recurrent_lif;
  const kernels::neurons::Model m = run.model();
  const int k_out = readout ? n : run.output->K();
  const int64_t row = static_cast<int64_t>(B) * n;
  Buffer grad_current = zeroed_buffer(rows * n);
  std::vector<float> grad_spikes(row), flags(row, 0.0f);
  // the model's adjoints and per-sample parameter sums over t (when a parameter is learnable),
  // reduced at the end; no window carries them
  BackwardCarry carry(m, row, 0, common::learns(grads));

  for (int t = T - 1; t >= 0; --t) {
    float* gi_t = grad_current.get() + static_cast<int64_t>(t) * B * n;
    std::fill(grad_spikes.begin(), grad_spikes.end(), 0.0f);
    if (recurrent && t < T - 1)  // gS[t] += gI[t+1] W_rec^T
      gemm_add(gi_t + static_cast<int64_t>(B) * n, false, p.weight_rec, true, grad_spikes.data(), B,
               n, n);
    parallel_for(0, B, [&](int64_t b) {
      const int64_t list = static_cast<int64_t>(t) * B + b;
      const kernels::neurons::Rows g = carry.adjoint_rows(b, n), sum_rows = carry.sum_rows(b, n);
      float* gs = grad_spikes.data() + b * n;
      float* scratch = flags.data() + b * n;
      if (t < T - 1) carry_adjoints(run, t, static_cast<int>(b), g, scratch);
      if (readout) {
        kernels::add_row(g[0], grad_output + list * k_out, n);
      } else {
        const int32_t* ids = run.output->list(t, b);
        const float* g_entries = grad_output + list * k_out;
        for (int k = 0; k < run.output->n_tot(t, b); ++k) gs[ids[k]] += g_entries[k];
        kernels::neurons::dense_state_grad_row(kernels::SerialBlock{}, m, g,
                                               run.states(t, static_cast<int>(b)), gs, n, sum_rows);
      }
      // completes the adjoints of t, then their parameter terms
      kernels::neurons::current_grad_row(kernels::SerialBlock{}, m, gi_t + b * n, g, n);
      if (sum_rows) parameter_sums(run, t, static_cast<int>(b), sum_rows, g, scratch);
    });
  }
  if (!carry.sums.empty()) common::add_parameter_grads(m, carry.sums.data(), B, n, grads);

  const Buffer x = dense_rows(run.input_history(), T, run.input_delay);
  if (grads.weight != nullptr)
    gemm_add(x.get(), true, grad_current.get(), false, grads.weight, c.n_in, rows, n);
  if (grads.weight_rec != nullptr && recurrent) {
    const Buffer own_previous = dense_rows(run.own_history(), T, 1);
    gemm_add(own_previous.get(), true, grad_current.get(), false, grads.weight_rec, n, rows, n);
  }
  if (grads.bias != nullptr && c.bias)
    for_each_block(n, kColumnBlock, [&](int c0, int c1) {
      for (int64_t r = 0; r < rows; ++r)
        kernels::add_row(grads.bias + c0, grad_current.get() + r * n + c0, c1 - c0);
    });
  if (grad_input != nullptr) {
    Buffer grad_x = zeroed_buffer(rows * c.n_in);
    gemm_add(grad_current.get(), false, p.weight, true, grad_x.get(), rows, n, c.n_in);
    const int k_in = run.input.K;
    for (int t = run.input_delay; t < T; ++t)
      for (int b = 0; b < B; ++b) {
        const int t_in = t - run.input_delay;
        const int32_t* ids = run.input.list(t_in, b);
        float* g_in = grad_input + (static_cast<int64_t>(t_in) * B + b) * k_in;
        const float* gx = grad_x.get() + (static_cast<int64_t>(t) * B + b) * c.n_in;
        kernels::add_gathered(g_in, gx, ids, run.input.total(t_in, b));
      }
  }
}

}  // namespace saltatory::cpu
