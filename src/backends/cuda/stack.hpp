// The CUDA backend's stack driver, written against an executor `Exec` so that the same code runs
// on the GPU (CudaExec, cuda_backend.cu) and, in tests, on the CPU (an emulated grid). Every
// tensor stays in the executor's memory from the input upload to the gradient download.
//   forward, per layer: sparse mode runs one block per sample over all T steps (forward_step);
//     dense mode forms I = X W + bias with one GEMM, adds S[t-1] W_rec per step by GEMM, and runs
//     the same step body with capacity N
//   backward, top-down: phase A (backward_sample, or dense_backward_step with GEMMs for the
//     recurrent term), input-entry gradients, and weight gradients: sparse mode groups the feeding
//     spikes by (chunk, neuron) with a stable sort and gathers gI rows per (neuron, column), in the
//     CPU's order (no atomics); dense mode uses GEMMs.
// Exec provides: Block; Array<T> (owning, zero-filled); upload, download, fill_bytes; blocks(grid,
// f(Block&, b)); for_each(n, f(i)); exclusive_sum; sort_pairs (stable); gemm_add (row-major, as
// the CPU's: C[m, n] += op(A) op(B)).
#pragma once

#include <algorithm>
#include <memory>
#include <vector>

#include "backends/cpu/cpu_backend.hpp"
#include "backends/cuda/bodies.hpp"
#include "saltatory/core/error.hpp"

#if defined(__CUDACC__)
#define SALTATORY_DEVICE_LAMBDA __device__
#else
#define SALTATORY_DEVICE_LAMBDA
#endif

namespace saltatory::cuda {

/// Forward state in executor memory; `spikes` and `readout` (host) are copies of it.
template <class Exec>
class DeviceContext final : public StackContext {
 public:
  template <class T>
  using Array = typename Exec::template Array<T>;
  struct LayerData {
    Array<float> w, w_rec, bias, alpha, v;
    Array<int32_t> ids, n_spk, n_tot;
  };
  Array<int32_t> in_ids, in_n_spk, in_n_tot;
  int in_K = 0;
  std::vector<LayerData> data;
  Array<float> flags;        ///< Scratch::flags, zero between uses
  Array<int32_t> found;      ///< Scratch::found
  Array<uint64_t> priority;  ///< Scratch::priority

  /// The kernels' view of layer l.
  Layer layer(size_t l) const {
    const LayerConfig& c = config.layers[l];
    const LayerData& d = data[l];
    Layer L;
    L.c = c;
    L.w = d.w.data();
    L.w_rec = c.kind == LayerKind::recurrent_lif ? d.w_rec.data() : nullptr;
    L.bias = c.bias ? d.bias.data() : nullptr;
    L.alpha = d.alpha.data();
    if (l == 0)
      L.in = {in_ids.data(), in_n_spk.data(), in_n_tot.data(), in_K, B};
    else
      L.in = lists(l - 1);
    L.delay = config.coupling == Coupling::delayed && l > 0 ? 1 : 0;
    if (c.kind != LayerKind::readout) L.out = lists(l);
    L.v = d.v.data();
    L.T = T;
    L.B = B;
    L.overflow = config.overflow;
    L.seed = kernels::stream_key(config.seed, l, 0x5E1EC7, 0);  // as the CPU backend
    return L;
  }
  /// Layer l's own lists (a spiking layer).
  Lists lists(size_t l) const {
    const LayerData& d = data[l];
    return {d.ids.data(), d.n_spk.data(), d.n_tot.data(), list_capacity(l), B};
  }
  int list_capacity(size_t l) const {
    const LayerConfig& c = config.layers[l];
    return config.mode == Mode::dense ? c.n_out : c.capacity;
  }
  int widest() const {
    int n = 1;
    for (const LayerConfig& c : config.layers) n = std::max(n, c.n_out);
    return n;
  }
  Scratch scratch(float* gv = nullptr, float* grad_rec = nullptr) const {
    return {flags.data(), found.data(), priority.data(), gv, grad_rec};
  }
};

/// Dense 0/1 rows [T * B, s.N] of lists `s` over `N` neurons, row (t, b) holding step t - delay.
template <class Exec>
typename Exec::template Array<float> dense_rows(Exec& exec, const Lists& s, int T, int N,
                                                int delay) {
  typename Exec::template Array<float> x(static_cast<size_t>(T) * s.B * N);
  float* out = x.data();
  const int K = s.K;
  exec.for_each(static_cast<int64_t>(T) * s.B * K, [=] SALTATORY_DEVICE_LAMBDA(int64_t e) {
    const int64_t list = e / K;
    const int k = static_cast<int>(e % K);
    const int t = static_cast<int>(list / s.B) - delay, b = static_cast<int>(list % s.B);
    if (t >= 0 && k < s.n_spk[s.at(t, b)]) out[list * N + s.list(t, b)[k]] = 1.0f;
  });
  return x;
}

/// Checks lists that arrived in device memory (one thread per list); throws Error naming `op` and
/// the first offending [t, b, k], as validate() does for host lists.
template <class Exec>
void validate_on_device(Exec& exec, const Lists& s, int T, int N, const char* op) {
  const int64_t lists = static_cast<int64_t>(T) * s.B;
  typename Exec::template Array<int64_t> problems(lists);
  int64_t* out = problems.data();
  exec.for_each(
      lists, [=] SALTATORY_DEVICE_LAMBDA(int64_t list) { out[list] = list_problem(s, N, list); });
  std::vector<int64_t> found(lists);
  exec.download(found.data(), out, lists);
  const auto bad = std::find_if(found.begin(), found.end(), [](int64_t p) { return p != 0; });
  if (bad == found.end()) return;
  const int64_t list = bad - found.begin();
  const int t = static_cast<int>(list / s.B), b = static_cast<int>(list % s.B);
  const int k = static_cast<int>(*bad >> 2);
  int32_t id = 0;
  if ((*bad & 3) != 1) exec.download(&id, s.ids + list * s.K + k, 1);
  const std::string where = std::to_string(t) + ", " + std::to_string(b);
  const int64_t kind = *bad & 3;
  check(kind != 1, op, "input spikes (in CUDA memory): counts at [", where,
        "] violate 0 <= n_spk <= n_tot <= K (", s.K, ")");
  check(kind != 2, op, "input spikes (in CUDA memory): id ", id, " at [", where, ", ", k,
        "] is outside [0, ", N, ")");
  check(false, op, "input spikes (in CUDA memory): id ", id, " appears twice in list [", where,
        "]");
}

template <class Exec>
std::shared_ptr<DeviceContext<Exec>> stack_forward(Exec& exec, const StackConfig& config,
                                                   const std::vector<LayerParams>& params,
                                                   const SpikeView& input) {
  using Block = typename Exec::Block;
  auto ctx = std::make_shared<DeviceContext<Exec>>();
  ctx->config = config;
  const int T = input.T, B = input.B;
  ctx->T = T;
  ctx->B = B;
  ctx->in_K = input.K;
  const int64_t lists = static_cast<int64_t>(T) * B;
  const auto upload = [&](auto& array, const auto* src, int64_t n) {
    array = std::remove_reference_t<decltype(array)>(n);
    exec.upload(array.data(), src, n);
  };
  upload(ctx->in_ids, input.ids, lists * input.K);
  upload(ctx->in_n_spk, input.n_spk, lists);
  upload(ctx->in_n_tot, input.n_tot, lists);
  if (input.on_device)
    validate_on_device(exec,
                       {ctx->in_ids.data(), ctx->in_n_spk.data(), ctx->in_n_tot.data(), input.K, B},
                       T, input.N, "lif_stack_forward");
  const bool dense = config.mode == Mode::dense;
  int widest_capacity = 1;
  for (size_t l = 0; l < config.layers.size(); ++l) {
    const LayerConfig& c = config.layers[l];
    const LayerParams& p = params[l];
    auto& d = ctx->data.emplace_back();
    upload(d.w, p.weight, static_cast<int64_t>(c.n_in) * c.n_out);
    if (c.kind == LayerKind::recurrent_lif)
      upload(d.w_rec, p.weight_rec, static_cast<int64_t>(c.n_out) * c.n_out);
    if (c.bias) upload(d.bias, p.bias, c.n_out);
    upload(d.alpha, p.alpha, c.n_out);
    d.v = typename DeviceContext<Exec>::template Array<float>(lists * c.n_out);
    if (c.kind == LayerKind::readout) continue;
    const int K = ctx->list_capacity(l);
    widest_capacity = std::max(widest_capacity, K);
    d.ids = typename DeviceContext<Exec>::template Array<int32_t>(lists * K);
    exec.fill_bytes(d.ids.data(), 0xFF, d.ids.size() * sizeof(int32_t));  // padding ids are -1
    d.n_spk = typename DeviceContext<Exec>::template Array<int32_t>(lists);
    d.n_tot = typename DeviceContext<Exec>::template Array<int32_t>(lists);
  }
  const int widest = ctx->widest();
  ctx->flags = typename DeviceContext<Exec>::template Array<float>(static_cast<size_t>(B) * widest);
  ctx->found =
      typename DeviceContext<Exec>::template Array<int32_t>(static_cast<size_t>(B) * 2 * widest);
  ctx->priority = typename DeviceContext<Exec>::template Array<uint64_t>(static_cast<size_t>(B) *
                                                                         widest_capacity);

  typename Exec::template Array<int64_t> dropped(B);
  for (size_t l = 0; l < config.layers.size(); ++l) {
    const Layer L = ctx->layer(l);
    const Scratch s = ctx->scratch();
    int64_t* drops = dropped.data();
    exec.fill_bytes(drops, 0, B * sizeof(int64_t));
    const int n = L.c.n_out;
    if (!dense) {
      exec.blocks(B, [=] SALTATORY_DEVICE_LAMBDA(Block & blk, int b) {
        int64_t d = 0;
        for (int t = 0; t < L.T; ++t) d += forward_step(blk, L, t, b, nullptr, s);
        if (blk.rank() == 0) drops[b] = d;
      });
    } else {
      typename Exec::template Array<float> current(lists * n);
      if (L.bias != nullptr) {
        float* cur = current.data();
        const float* bias = L.bias;
        exec.for_each(lists * n, [=] SALTATORY_DEVICE_LAMBDA(int64_t i) { cur[i] = bias[i % n]; });
      }
      const auto x = dense_rows(exec, L.in, T, L.c.n_in, L.delay);
      exec.gemm_add(x.data(), false, L.w, false, current.data(), lists, L.c.n_in, n);
      typename Exec::template Array<float> previous(L.recurrent() ? static_cast<size_t>(B) * n : 0);
      for (int t = 0; t < T; ++t) {
        float* current_t = current.data() + static_cast<int64_t>(t) * B * n;
        if (L.recurrent() && t > 0) {
          exec.fill_bytes(previous.data(), 0, previous.size() * sizeof(float));
          float* prev = previous.data();
          const Lists out = L.out;
          exec.for_each(static_cast<int64_t>(B) * out.K, [=] SALTATORY_DEVICE_LAMBDA(int64_t e) {
            const int b = static_cast<int>(e / out.K), k = static_cast<int>(e % out.K);
            if (k < out.n_spk[out.at(t - 1, b)])
              prev[static_cast<int64_t>(b) * n + out.list(t - 1, b)[k]] = 1.0f;
          });
          exec.gemm_add(prev, false, L.w_rec, false, current_t, B, n, n);
        }
        const float* cur = current.data();
        exec.blocks(B, [=] SALTATORY_DEVICE_LAMBDA(Block & blk, int b) {
          const int d = forward_step(blk, L, t, b, cur, s);
          if (blk.rank() == 0) drops[b] += d;
        });
      }
    }
    // copies for the host side of the context
    const auto& d = ctx->data[l];
    if (L.readout()) {
      ctx->readout.resize(lists * n);
      exec.download(ctx->readout.data(), d.v.data(), lists * n);
      continue;
    }
    SpikeTensor& spikes = ctx->spikes.emplace_back(T, B, L.out.K, n);
    exec.download(spikes.ids().data(), d.ids.data(), lists * L.out.K);
    exec.download(spikes.n_spk().data(), d.n_spk.data(), lists);
    exec.download(spikes.n_tot().data(), d.n_tot.data(), lists);
    std::vector<int64_t> per_sample(B);
    exec.download(per_sample.data(), drops, B);
    int64_t total = 0;
    for (int64_t x : per_sample) total += x;
    spikes.set_dropped(total);
    ctx->dropped.push_back(total);
  }
  return ctx;
}

/// dW += the gradient of W fed by lists `s` (delay 0 or 1), without atomics: the (chunk, neuron,
/// list) triples are stably sorted by (chunk, neuron), then each (neuron, column) gathers its gI
/// rows chunk by chunk, latest first (the CPU's SpikesByNeuron order).
template <class Exec>
void sparse_weight_grad(Exec& exec, const Lists& s, int N, int delay, int T, int n_out,
                        const float* grad_current, float* dw) {
  using I64 = typename Exec::template Array<int64_t>;
  const int64_t lists = static_cast<int64_t>(T) * s.B;
  const Feeding f{s, delay, T, N, cpu::scatter_chunk_steps(s.B)};
  I64 count(lists + 1), offset(lists + 1);
  int64_t* counts = count.data();
  exec.for_each(lists, [=] SALTATORY_DEVICE_LAMBDA(int64_t list) { counts[list] = f.count(list); });
  const int64_t total = exec.exclusive_sum(count.data(), offset.data(), lists + 1);
  const int64_t n_keys = static_cast<int64_t>(f.chunks()) * N;
  I64 keys(std::max<int64_t>(total, 1)), start(n_keys + 1);
  typename Exec::template Array<int32_t> feeding(std::max<int64_t>(total, 1));
  int64_t* key = keys.data();
  int32_t* fed = feeding.data();
  const int64_t* off = offset.data();
  const int K = s.K;
  exec.for_each(lists * K, [=] SALTATORY_DEVICE_LAMBDA(int64_t e) {
    f.pair(e / K, static_cast<int>(e % K), off, key, fed);
  });
  int bits = 1;
  while ((int64_t{1} << bits) < n_keys) ++bits;
  exec.sort_pairs(key, fed, total, bits);
  int64_t* first = start.data();
  exec.for_each(n_keys + 1,
                [=] SALTATORY_DEVICE_LAMBDA(int64_t k) { group_start(k, key, total, first); });
  exec.for_each(static_cast<int64_t>(N) * n_out, [=] SALTATORY_DEVICE_LAMBDA(int64_t e) {
    weight_grad_column(f, static_cast<int>(e / n_out), static_cast<int>(e % n_out), n_out,
                       grad_current, first, fed, dw);
  });
}

/// Adds a host gradient buffer's share computed by `compute(device_buffer)`: upload, add, download.
template <class Exec, class F>
void accumulate_into(Exec& exec, float* host, int64_t n, F&& compute) {
  if (host == nullptr) return;
  typename Exec::template Array<float> d(n);
  exec.upload(d.data(), host, n);
  compute(d.data());
  exec.download(host, d.data(), n);
}

/// Backward of layer l: grad_out [T, B, K_l] (or [T, B, n]), below [T, B, K_in] (or null).
template <class Exec>
void layer_backward(Exec& exec, DeviceContext<Exec>& ctx, size_t l, const float* grad_out,
                    const LayerGrads& grads, float* below) {
  using Block = typename Exec::Block;
  using F32 = typename Exec::template Array<float>;
  const Layer L = ctx.layer(l);
  const int n = L.c.n_out, B = L.B, T = L.T;
  const int64_t lists = static_cast<int64_t>(T) * B;
  F32 grad_current(lists * n), gv(static_cast<size_t>(B) * n),
      grad_rec(static_cast<size_t>(B) * std::max(L.out.K, 1));
  const Scratch s = ctx.scratch(gv.data(), grad_rec.data());
  float* gI = grad_current.data();
  const bool dense = ctx.config.mode == Mode::dense;
  if (!dense) {
    exec.blocks(B, [=] SALTATORY_DEVICE_LAMBDA(Block & blk, int b) {
      backward_sample(blk, L, b, grad_out, gI, s);
    });
  } else {
    F32 grad_spikes(static_cast<size_t>(B) * n);
    float* gs = grad_spikes.data();
    for (int t = T - 1; t >= 0; --t) {
      exec.fill_bytes(gs, 0, grad_spikes.size() * sizeof(float));
      if (L.recurrent() && t < T - 1)  // gS[t] += gI[t+1] W_rec^T
        exec.gemm_add(gI + (t + 1) * static_cast<int64_t>(B) * n, false, L.w_rec, true, gs, B, n,
                      n);
      exec.blocks(B, [=] SALTATORY_DEVICE_LAMBDA(Block & blk, int b) {
        dense_backward_step(blk, L, t, b, grad_out, gs, gI, s);
      });
    }
  }

  const auto weight_grad = [&](const Lists& from, int N, int delay, float* dw) {
    if (!dense) {
      sparse_weight_grad(exec, from, N, delay, T, n, gI, dw);
    } else {
      const auto x = dense_rows(exec, from, T, N, delay);
      exec.gemm_add(x.data(), true, gI, false, dw, N, lists, n);
    }
  };
  accumulate_into(exec, grads.weight, static_cast<int64_t>(L.c.n_in) * n,
                  [&](float* dw) { weight_grad(L.in, L.c.n_in, L.delay, dw); });
  if (L.recurrent())
    accumulate_into(exec, grads.weight_rec, static_cast<int64_t>(n) * n,
                    [&](float* dw) { weight_grad(L.out, n, 1, dw); });
  if (L.c.bias)
    accumulate_into(exec, grads.bias, n, [&](float* db) {
      exec.for_each(n, [=] SALTATORY_DEVICE_LAMBDA(int64_t col) {
        bias_grad_column(static_cast<int>(col), n, lists, gI, db);
      });
    });
  if (below == nullptr) return;
  const int k_in = L.in.K;
  if (!dense) {
    exec.for_each(lists * k_in, [=] SALTATORY_DEVICE_LAMBDA(int64_t e) {
      input_entry_grad(L, e / k_in, static_cast<int>(e % k_in), gI, below);
    });
  } else {  // gX = gI W^T, gathered to the input entries
    F32 grad_x(lists * L.c.n_in);
    float* gx = grad_x.data();
    const int n_in = L.c.n_in;
    exec.gemm_add(gI, false, L.w, true, gx, lists, n, n_in);
    exec.for_each(lists * k_in, [=] SALTATORY_DEVICE_LAMBDA(int64_t e) {
      const int64_t list = e / k_in;
      const int k = static_cast<int>(e % k_in);
      const int t_in = static_cast<int>(list / B) - L.delay, b = static_cast<int>(list % B);
      if (t_in < 0 || k >= L.in.n_tot[L.in.at(t_in, b)]) return;
      kernels::add_gathered(below + L.in.at(t_in, b) * k_in + k, gx + list * n_in,
                            L.in.list(t_in, b) + k, 1);
    });
  }
}

/// BPTT through the stack, top-down (as cpu::backward_top_down, in executor memory).
template <class Exec>
void stack_backward(Exec& exec, DeviceContext<Exec>& ctx,
                    const std::vector<const float*>& grad_outputs,
                    const std::vector<LayerGrads>& grads, float* grad_input) {
  using F32 = typename Exec::template Array<float>;
  const auto& layers = ctx.config.layers;
  const int64_t lists = static_cast<int64_t>(ctx.T) * ctx.B;
  const auto callers = [&](size_t l) {  // the caller's gradient of layer l's outputs, or zeros
    const int64_t size =
        lists * (layers[l].kind == LayerKind::readout ? layers[l].n_out : ctx.list_capacity(l));
    F32 g(size);
    if (grad_outputs[l] != nullptr) exec.upload(g.data(), grad_outputs[l], size);
    return g;
  };
  F32 grad_out = callers(layers.size() - 1);
  for (size_t l = layers.size(); l-- > 0;) {
    F32 below;
    if (l > 0)
      below = callers(l - 1);
    else if (grad_input != nullptr)
      below = F32(lists * ctx.in_K);
    layer_backward(exec, ctx, l, grad_out.data(), grads[l],
                   below.size() > 0 ? below.data() : nullptr);
    if (l == 0 && grad_input != nullptr) exec.download(grad_input, below.data(), below.size());
    grad_out = std::move(below);
  }
}

}  // namespace saltatory::cuda
