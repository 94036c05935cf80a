// Sparse mode: the method. Per layer and window of steps [t0, t1) (the whole sequence, or one
// recompute segment), with lists S_in (input) and S (own), t' = t - delay:
//   forward phase 1, per list chunk in parallel:
//     I[t, b] = bias + sum_{k<n_spk(S_in[t'])} W[ids_k, :]             (into V's buffer)
//   forward phase 2, per b in parallel, t = t0..t1-1 (a recompute skips the selection):
//     I += sum_{k<n_spk(S[t-1])} W_rec[ids_k, :];  states[t] = the neuron model's update_row
//     S[t] = select(V[t], theta1, theta2, K)
//   backward phase A, per b in parallel, t = t1-1..t0 (the model's adjoints and gRec carried
//   between windows; V[t] from the states, or only at the entries of S[t] from the values the
//   forward kept there): its carry_row, state_grad_row over the entries of S[t] with gradients
//     gS[t,k] + gRec[k], current_grad_row (gI[t]) and parameter_grad_row
//     gRec[k] = W_rec[ids_k, :] . gI[t]   k < n_tot(S[t-1])   (feeds step t-1)
//   backward phase B, per list chunk in parallel:
//     gS_in[t', k] += W[ids_k, :] . gI[t]       k < n_tot(S_in[t'])
//   backward phase C, per column block in parallel, no atomics: with the spikes grouped by chunk
//   of whole steps and then by input neuron i, for each chunk, latest first
//     dW[i, cols] += sum of gI[t, b, cols] over the chunk's lists (t, b) that i fed (ascending)
//   dW_rec likewise;  dbias[cols] += gI[t, b, cols] over all lists, latest first
// Chunks never straddle windows, so every sum runs in the same order whatever the window. A call
// that continues a sequence reads step -1 (states, own and delayed input lists) from its initial
// state (common/history.hpp); backward stops there (truncated BPTT).
// W is input-major [N_in, N_out]; membranes and gI are [T, B, N_out]; entry grads [T, B, K].
#include "saltatory/kernels/sparse.hpp"

#include <algorithm>
#include <memory>

#include "backends/common/spikes_by_neuron.hpp"
#include "backends/cpu/cpu_backend.hpp"
#include "backends/cpu/parallel.hpp"
#include "saltatory/kernels/neurons/model.hpp"

namespace saltatory::cpu {

namespace {

/// Phase 1: the feed-forward current of every list of the window, written into its membrane row.
void feedforward_currents(const LayerRun& run, Window w) {
  const LayerParams& p = run.params;
  const int n = run.config.n_out;
  const common::SpikeHistory in = run.input_history();
  const int64_t lists = static_cast<int64_t>(w.t1 - w.t0) * run.B;
  for_each_block(lists, list_block(lists), [&](int64_t l0, int64_t l1) {
    for (int64_t list = l0; list < l1; ++list) {
      const int t = w.t0 + static_cast<int>(list / run.B);
      const int b = static_cast<int>(list % run.B);
      float* current = run.v(t, b);
      if (p.bias != nullptr)
        std::copy_n(p.bias, n, current);
      else
        std::fill_n(current, n, 0.0f);
      const int t_in = t - run.input_delay;
      if (in.has(t_in))
        kernels::gather_rows(current, p.weight, n, in.list(t_in, b), in.spikes(t_in, b), n);
    }
  });
}

}  // namespace

Drops sparse_forward(const LayerRun& run, Window w, bool select) {
  const LayerConfig& c = run.config;
  const LayerParams& p = run.params;
  const int n = c.n_out;
  const int capacity = run.output != nullptr ? run.output->K() : 0;
  feedforward_currents(run, w);
  std::vector<Drops> dropped(run.B);
  parallel_for(0, run.B, [&](int64_t b) {
    SelectScratch scratch(n, select ? capacity : 0);
    const common::SpikeHistory own =
        c.kind == LayerKind::recurrent_lif ? run.own_history() : common::SpikeHistory{};
    for (int t = w.t0; t < w.t1; ++t) {
      float* current = run.v(t, static_cast<int>(b));
      if (c.kind == LayerKind::recurrent_lif && own.has(t - 1))
        kernels::gather_rows(current, p.weight_rec, n, own.list(t - 1, static_cast<int>(b)),
                             own.spikes(t - 1, static_cast<int>(b)), n);
      dropped[b] += update_and_select(run, t, static_cast<int>(b), current, scratch, select);
    }
  });
  Drops total;
  for (const Drops& d : dropped) total += d;
  return total;
}

void sparse_backward(const LayerRun& run, Window w, const float* grad_output,
                     const LayerGrads& grads, float* grad_input, BackwardCarry& carry,
                     float* grad_current) {
  const LayerConfig& c = run.config;
  const LayerParams& p = run.params;
  const int n = c.n_out, T = run.T, B = run.B;
  const bool readout = c.kind == LayerKind::readout;
  const bool recurrent = c.kind == LayerKind::recurrent_lif;
  const int k_out = readout ? n : run.output->K();
  const int k_in = run.input.K;
  const int64_t lists = static_cast<int64_t>(w.t1 - w.t0) * B;  // gI row (t, b): (t - t0) B + b
  const kernels::neurons::Model m = run.model();
  const kernels::SerialBlock one;

  parallel_for(0, B, [&](int64_t b) {  // phase A: the time recursion, independent per sample
    const kernels::neurons::Rows g = carry.adjoint_rows(b, n), sums = carry.sum_rows(b, n);
    float* grad_rec = recurrent ? carry.grad_rec.data() + b * k_out : nullptr;
    std::vector<float> flags(n, 0.0f);
    // from `listed`: V[t] at the entries of S[t], NaN elsewhere (a read there would show)
    std::vector<float> membrane(run.listed != nullptr ? n : 0, kernels::kNotListed);
    for (int t = w.t1 - 1; t >= w.t0; --t) {
      const int64_t list = static_cast<int64_t>(t) * B + b;
      if (t < T - 1) carry_adjoints(run, t, static_cast<int>(b), g, flags.data());
      const float* g_out = grad_output + list * k_out;
      if (readout) {
        kernels::add_row(g[0], g_out, n);
      } else {
        const int32_t* ids = run.output->list(t, b);
        const int n_tot = run.output->n_tot(t, b);
        kernels::neurons::Rows at = run.states(t, static_cast<int>(b));
        if (run.listed != nullptr) {
          kernels::scatter_values(membrane.data(), ids, run.listed + list * k_out, n_tot);
          at = kernels::neurons::Rows::strided(membrane.data(), n, 1);
        }
        kernels::neurons::state_grad_row(one, m, g, at, ids, g_out, n_tot, 0, n, sums);
        if (recurrent && t < T - 1)
          kernels::neurons::state_grad_row(one, m, g, at, ids, grad_rec, n_tot, 0, n, sums);
        if (run.listed != nullptr)
          kernels::scatter_value(membrane.data(), ids, n_tot, kernels::kNotListed);
      }
      float* gi = grad_current + (static_cast<int64_t>(t - w.t0) * B + b) * n;
      kernels::neurons::current_grad_row(one, m, gi, g, n);  // completes the adjoints of t
      if (sums) {
        // the parameter sums stream every stored state row, latest step first: ask for the row
        // that step t - 1 reads beyond this one (V[t - 2]) now, so it is in cache by then
        if (t > w.t0 + 1) prefetch_rows(run.states(t - 2, static_cast<int>(b)), n);
        parameter_sums(run, t, static_cast<int>(b), sums, g, flags.data());
      }
      if (recurrent && t > 0)
        kernels::dot_rows(grad_rec, p.weight_rec, n, run.output->list(t - 1, b),
                          run.output->n_tot(t - 1, b), gi, n);
    }
  });

  if (grad_input != nullptr) {  // phase B: input-entry gradients, independent per list
    for_each_block(lists, list_block(lists), [&](int64_t l0, int64_t l1) {
      std::vector<float> dots(k_in);
      for (int64_t list = l0; list < l1; ++list) {
        const int t_in = w.t0 + static_cast<int>(list / B) - run.input_delay;
        const int b = static_cast<int>(list % B);
        if (t_in < 0) continue;
        const int n_in = run.input.total(t_in, b);
        kernels::dot_rows(dots.data(), p.weight, n, run.input.list(t_in, b), n_in,
                          grad_current + list * n, n);
        float* g_in = grad_input + (static_cast<int64_t>(t_in) * B + b) * k_in;
        kernels::add_row(g_in, dots.data(), n_in);
      }
    });
  }

  // phase C: dW[i, cols] += the gI rows of the lists that i fed, chunk by chunk, latest first; a
  // chunk's gI block stays in cache while every input neuron gathers its rows from it. dW rows
  // lie a row stride apart, which the hardware prefetcher does not follow: ask for row i + kAhead
  // while row i gathers. That matters when a window is one chunk (checkpointing in time's usual
  // case), which walks all of dW per chunk rather than one column block through every chunk.
  constexpr int kAhead = 4;
  const auto weight_grad = [&](float* dw, const common::SpikeHistory& spikes, int delay) {
    const common::SpikesByNeuron by_neuron(spikes, w, delay, common::scatter_chunk_steps(B));
    const int n_in = spikes.now.N;
    for_each_block(n, kColumnBlock, [&](int c0, int c1) {
      for (int64_t chunk = by_neuron.chunks(); chunk-- > 0;)
        for (int i = 0; i < n_in; ++i) {
          if (i + kAhead < n_in)
            prefetch_row(dw + static_cast<int64_t>(i + kAhead) * n + c0, c1 - c0);
          kernels::gather_rows(dw + static_cast<int64_t>(i) * n + c0, grad_current + c0, n,
                               by_neuron.lists(chunk, i), by_neuron.count(chunk, i), c1 - c0);
        }
    });
  };
  if (grads.weight != nullptr) weight_grad(grads.weight, run.input_history(), run.input_delay);
  if (grads.weight_rec != nullptr && recurrent) weight_grad(grads.weight_rec, run.own_history(), 1);
  if (grads.bias != nullptr && c.bias) {
    for_each_block(n, kColumnBlock, [&](int c0, int c1) {
      for (int64_t list = lists; list-- > 0;)
        kernels::add_row(grads.bias + c0, grad_current + list * n + c0, c1 - c0);
    });
  }
}

}  // namespace saltatory::cpu
