// The CUDA backend's stack driver, written against an executor `Exec` so that the same code runs
// on the GPU (CudaExec, cuda_backend.cu) and, in tests, on the CPU (an emulated grid). Every
// tensor stays in the executor's memory from the input upload to the gradient download.
//   forward, per layer: sparse mode runs one block per sample over all T steps (forward_step), or
//     window by window under checkpointing in time (keeping the states at the end of each window,
//     and V at every list entry when the model's carry reads no state);
//     dense mode forms I = X W + bias with one GEMM, adds S[t-1] W_rec per step by GEMM, and runs
//     the same step body with capacity N
//   backward, top-down, sparse window by window (recomputing a window's membranes when they were
//     not kept, unless no neuron parameter learns and V was kept at the entries): phase A
//     (backward_sample, or dense_backward_step with GEMMs for the recurrent term), input-entry
//     gradients, and weight gradients: sparse mode groups the feeding spikes by (chunk, neuron)
//     with a stable sort and gathers gI rows per (neuron, column), in the CPU's order (no
//     atomics); dense mode uses GEMMs.
// Exec provides: Block; Array<T> (owning, zero-filled); upload, download, fill_bytes; blocks(grid,
// f(Block&, b)); for_each(n, f(i)); exclusive_sum; sort_pairs (stable); gemm_add (row-major, as
// the CPU's: C[m, n] += op(A) op(B)).
#pragma once

#include <algorithm>
#include <memory>
#include <vector>

#include "backends/common/model.hpp"
#include "backends/common/order.hpp"
#include "backends/cuda/bodies.hpp"
#include "saltatory/core/error.hpp"

#if defined(__CUDACC__)
#define SALTATORY_DEVICE_LAMBDA __device__
#else
#define SALTATORY_DEVICE_LAMBDA
#endif

namespace saltatory::cuda {

/// The executor's owning, zero-filled device array of T.
template <class Exec, class T>
using ArrayOf = typename Exec::template Array<T>;

/// Forward state in executor memory; `spikes` and `readout` (host) are copies of it.
template <class Exec>
class DeviceContext final : public StackContext {
 public:
  template <class T>
  using Array = ArrayOf<Exec, T>;
  struct LayerData {
    Array<float> w, w_rec, bias;
    Array<float> neuron[kernels::neurons::kMaxParams];  ///< the model's per-neuron parameters
    /// The model's states [states(), T, B, n] when stored; else the states at the end of every
    /// window but the last, [states(), windows - 1, B, n]
    Array<float> v;
    /// V at every entry of the lists [T, B, K] when the states are recomputed and the model's
    /// carry reads none (Layer::listed); else empty
    Array<float> listed;
    Array<int32_t> ids, n_spk, n_tot;
    /// The initial state (empty from rest): the model's states [states(), B, n] and the spikes of
    /// step -1, [B, K] (repacked to the layer's list width) with counts [B].
    Array<float> initial;
    Array<int32_t> initial_ids, initial_n_spk;
  };
  Array<int32_t> in_ids, in_n_spk, in_n_tot;
  int in_K = 0;
  int window = 0;  ///< steps per window: T, or the recompute segment (as the CPU rounds it)
  std::vector<LayerData> data;
  Array<float> flags;        ///< Scratch::flags, zero between uses
  Array<int32_t> found;      ///< Scratch::found
  Array<uint64_t> priority;  ///< Scratch::priority
  Array<float> membrane;  ///< Scratch::membrane, NaN between uses (empty: no layer keeps `listed`)

  /// The kernels' view of layer l.
  Layer layer(size_t l) const {
    const LayerConfig& c = config.layers[l];
    const LayerData& d = data[l];
    Layer L;
    L.c = c;
    L.w = d.w.data();
    L.w_rec = c.kind == LayerKind::recurrent_lif ? d.w_rec.data() : nullptr;
    L.bias = c.bias ? d.bias.data() : nullptr;
    for (int i = 0; i < kernels::neurons::kMaxParams; ++i)
      L.neuron.param[i] = d.neuron[i].size() > 0 ? d.neuron[i].data() : nullptr;
    if (l == 0)
      L.in = {in_ids.data(), in_n_spk.data(), in_n_tot.data(), in_K, B};
    else
      L.in = lists(l - 1);
    L.delay = config.coupling == Coupling::delayed && l > 0 ? 1 : 0;
    if (c.kind != LayerKind::readout) L.out = lists(l);
    L.v = d.v.data();
    L.state_stride = static_cast<int64_t>(d.v.size()) / L.model().states();
    L.T = T;
    L.B = B;
    L.overflow = config.overflow;
    L.seed = kernels::layer_seed(config.seed, l);
    L.initial = d.initial.size() > 0 ? d.initial.data() : nullptr;
    L.first_step = first_step;
    L.listed = d.listed.size() > 0 ? d.listed.data() : nullptr;
    return L;
  }
  /// Layer l's own lists (a spiking layer), with the initial state's of step -1.
  Lists lists(size_t l) const {
    const LayerData& d = data[l];
    Lists s{d.ids.data(), d.n_spk.data(), d.n_tot.data(), list_capacity(l), B};
    if (d.initial_ids.size() > 0) {
      s.ids_before = d.initial_ids.data();
      s.n_spk_before = d.initial_n_spk.data();
    }
    return s;
  }
  int list_capacity(size_t l) const {
    const LayerConfig& c = config.layers[l];
    return config.mode == Mode::dense ? c.n_out : c.capacity;
  }
  int windows() const { return (T + window - 1) / window; }
  /// Steps [t0, t1) of window k.
  std::pair<int, int> steps(int k) const { return {k * window, std::min(T, (k + 1) * window)}; }
  /// Whether layer l's states are recomputed in backward rather than stored.
  bool recomputes(size_t l) const {
    return window < T && config.layers[l].kind != LayerKind::readout;
  }
  int widest() const {
    int n = 1;
    for (const LayerConfig& c : config.layers) n = std::max(n, c.n_out);
    return n;
  }
  Scratch scratch(float* adjoints = nullptr, float* grad_rec = nullptr) const {
    Scratch s{flags.data(), found.data(), priority.data(), adjoints, grad_rec};
    s.membrane = membrane.size() > 0 ? membrane.data() : nullptr;
    return s;
  }
};

/// Dense 0/1 rows [T * B, s.N] of lists `s` over `N` neurons, row (t, b) holding step t - delay.
template <class Exec>
ArrayOf<Exec, float> dense_rows(Exec& exec, const Lists& s, int T, int N, int delay) {
  ArrayOf<Exec, float> x(static_cast<size_t>(T) * s.B * N);
  float* out = x.data();
  const int K = s.K;
  exec.for_each(static_cast<int64_t>(T) * s.B * K, [=] SALTATORY_DEVICE_LAMBDA(int64_t e) {
    const int64_t list = e / K;
    const int k = static_cast<int>(e % K);
    const int t = static_cast<int>(list / s.B) - delay, b = static_cast<int>(list % s.B);
    if (k < s.spikes(t, b)) out[list * N + s.spikes_of(t, b)[k]] = 1.0f;
  });
  return x;
}

/// Checks lists that arrived in device memory (one thread per list); throws Error naming `op` and
/// the first offending [t, b, k], as validate() does for host lists.
template <class Exec>
void validate_on_device(Exec& exec, const Lists& s, int T, int N, const char* op) {
  const int64_t lists = static_cast<int64_t>(T) * s.B;
  ArrayOf<Exec, int64_t> problems(lists);
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

/// Sparse forward steps [t0, t1) of layer L, one block per sample; adds the dropped entries to
/// drops[b] (when given). With `select` false it recomputes membranes of lists already selected.
template <class Exec>
void forward_window(Exec& exec, const Layer& L, int t0, int t1, const Scratch& s,
                    kernels::Drops* drops, bool select) {
  exec.blocks(L.B, [=] SALTATORY_DEVICE_LAMBDA(typename Exec::Block & blk, int b) {
    kernels::Drops d;
    for (int t = t0; t < t1; ++t) d += forward_step(blk, L, t, b, nullptr, s, select);
    if (drops != nullptr && blk.rank() == 0) drops[b] += d;
  });
}

/// Layer l over window k in `buffer` (the states of window + 1 steps of [B, n]): its first step
/// holds the states of t0 - 1, loaded from those kept at the end of window k - 1.
template <class Exec>
Layer window_layer(Exec& exec, const DeviceContext<Exec>& ctx, size_t l, float* buffer, int k) {
  Layer L = ctx.layer(l);
  const int64_t row = static_cast<int64_t>(ctx.B) * L.c.n_out, kept = L.state_stride;
  L.v = buffer;
  L.state_stride = (ctx.window + 1) * row;
  if (k > 0)
    for (int i = 0; i < L.model().states(); ++i)
      exec.upload(buffer + i * L.state_stride, ctx.data[l].v.data() + i * kept + (k - 1) * row,
                  row);
  else if (L.initial != nullptr)  // the first window's step t0 - 1 = -1: the initial state
    for (int i = 0; i < L.model().states(); ++i)
      exec.upload(buffer + i * L.state_stride, L.initial + i * row, row);
  L.v_first = ctx.steps(k).first - 1;
  return L;
}

/// The states of step T - 1 of layer L (whose buffer holds it) into the host's last_states.
template <class Exec>
void keep_last_states(Exec& exec, DeviceContext<Exec>& ctx, const Layer& L) {
  const int64_t row = static_cast<int64_t>(ctx.B) * L.c.n_out;
  const kernels::neurons::Rows last = L.states(ctx.T - 1, 0);
  std::vector<float>& out = ctx.last_states.emplace_back(L.model().states() * row);
  for (int i = 0; i < L.model().states(); ++i) exec.download(out.data() + i * row, last[i], row);
}

/// Uploads layer l's part of an initial state (validated by the op layer), its lists repacked to
/// the layer's width K (which every list of a valid state fits).
template <class Exec>
void upload_initial(Exec& exec, DeviceContext<Exec>& ctx, size_t l, const LayerState& s) {
  auto& d = ctx.data[l];
  d.initial = ArrayOf<Exec, float>(s.states.size());
  exec.upload(d.initial.data(), s.states.data(), static_cast<int64_t>(s.states.size()));
  if (s.spikes.T() == 0) return;
  const int K = ctx.list_capacity(l), B = ctx.B;
  const SpikeView v = s.spikes.view();
  std::vector<int32_t> ids(static_cast<size_t>(B) * K, -1), n_spk(B);
  for (int b = 0; b < B; ++b) {
    n_spk[b] = v.spikes(0, b);
    std::copy_n(v.list(0, b), n_spk[b], ids.begin() + static_cast<int64_t>(b) * K);
  }
  d.initial_ids = ArrayOf<Exec, int32_t>(ids.size());
  exec.upload(d.initial_ids.data(), ids.data(), static_cast<int64_t>(ids.size()));
  d.initial_n_spk = ArrayOf<Exec, int32_t>(B);
  exec.upload(d.initial_n_spk.data(), n_spk.data(), B);
}

template <class Exec>
std::shared_ptr<DeviceContext<Exec>> stack_forward(Exec& exec, const StackConfig& config,
                                                   const std::vector<LayerParams>& params,
                                                   const SpikeView& input,
                                                   const StackState* initial = nullptr) {
  using Block = typename Exec::Block;
  auto ctx = std::make_shared<DeviceContext<Exec>>();
  ctx->config = config;
  const int T = input.T, B = input.B;
  ctx->T = T;
  ctx->B = B;
  ctx->in_K = input.K;
  ctx->window = common::window_steps(config, T, B);
  ctx->first_step = initial != nullptr ? initial->steps : 0;
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
    const kernels::neurons::Params<const float> neuron = common::neuron_params(p);
    const kernels::neurons::Model model = common::layer_model(c, neuron);
    for (int i = 0; i < model.param_count(); ++i)
      if (neuron[i] != nullptr) upload(d.neuron[i], neuron[i], c.n_out);
    d.v = ArrayOf<Exec, float>(model.states() *
                               (ctx->recomputes(l)
                                    ? (ctx->windows() - 1) * static_cast<int64_t>(B) * c.n_out
                                    : lists * c.n_out));
    if (c.kind == LayerKind::readout) continue;
    const int K = ctx->list_capacity(l);
    widest_capacity = std::max(widest_capacity, K);
    if (!dense && ctx->recomputes(l) && !model.carry_reads_states())  // else never read
      d.listed = ArrayOf<Exec, float>(lists * K);
    d.ids = ArrayOf<Exec, int32_t>(lists * K);
    exec.fill_bytes(d.ids.data(), 0xFF, d.ids.size() * sizeof(int32_t));  // padding ids are -1
    d.n_spk = ArrayOf<Exec, int32_t>(lists);
    d.n_tot = ArrayOf<Exec, int32_t>(lists);
  }
  if (initial != nullptr)
    for (size_t l = 0; l < config.layers.size(); ++l)
      upload_initial(exec, *ctx, l, initial->layers[l]);
  const int widest = ctx->widest();
  ctx->flags = ArrayOf<Exec, float>(static_cast<size_t>(B) * widest);
  ctx->found = ArrayOf<Exec, int32_t>(static_cast<size_t>(B) * 2 * widest);
  ctx->priority = ArrayOf<Exec, uint64_t>(static_cast<size_t>(B) * widest_capacity);
  if (std::any_of(ctx->data.begin(), ctx->data.end(),
                  [](const auto& d) { return d.listed.size() > 0; })) {
    ctx->membrane = ArrayOf<Exec, float>(static_cast<size_t>(B) * widest);
    exec.fill_bytes(ctx->membrane.data(), 0xFF, ctx->membrane.size() * sizeof(float));  // NaN
  }

  ArrayOf<Exec, kernels::Drops> dropped(B);
  for (size_t l = 0; l < config.layers.size(); ++l) {
    const Layer L = ctx->layer(l);
    const Scratch s = ctx->scratch();
    kernels::Drops* drops = dropped.data();
    exec.fill_bytes(drops, 0, B * sizeof(kernels::Drops));
    const int n = L.c.n_out;
    if (!dense && !ctx->recomputes(l)) {
      forward_window(exec, L, 0, T, s, drops, true);
      keep_last_states(exec, *ctx, L);
    } else if (!dense) {  // window by window, keeping V at the end of every window but the last
      const int64_t row = static_cast<int64_t>(B) * n;
      ArrayOf<Exec, float> buffer(L.model().states() * (ctx->window + 1) * row);
      for (int k = 0; k < ctx->windows(); ++k) {
        const int t0 = ctx->steps(k).first, t1 = ctx->steps(k).second;
        const Layer Lw = window_layer(exec, *ctx, l, buffer.data(), k);
        forward_window(exec, Lw, t0, t1, s, drops, true);
        if (k + 1 < ctx->windows())
          for (int i = 0; i < L.model().states(); ++i)
            exec.upload(ctx->data[l].v.data() + i * L.state_stride + k * row,
                        Lw.states(t1 - 1, 0)[i], row);
        else
          keep_last_states(exec, *ctx, Lw);
      }
    } else {
      ArrayOf<Exec, float> current(lists * n);
      if (L.bias != nullptr) {
        float* cur = current.data();
        const float* bias = L.bias;
        exec.for_each(lists * n, [=] SALTATORY_DEVICE_LAMBDA(int64_t i) { cur[i] = bias[i % n]; });
      }
      const auto x = dense_rows(exec, L.in, T, L.c.n_in, L.delay);
      // one GEMM per step: the same shape whatever T (cuBLAS may sum in a shape-dependent order),
      // so chunks equal the whole
      for (int t = 0; t < T; ++t)
        exec.gemm_add(x.data() + static_cast<int64_t>(t) * B * L.c.n_in, false, L.w, false,
                      current.data() + static_cast<int64_t>(t) * B * n, B, L.c.n_in, n);
      ArrayOf<Exec, float> previous(L.recurrent() ? static_cast<size_t>(B) * n : 0);
      for (int t = 0; t < T; ++t) {
        float* current_t = current.data() + static_cast<int64_t>(t) * B * n;
        if (L.recurrent() && L.out.has(t - 1)) {
          exec.fill_bytes(previous.data(), 0, previous.size() * sizeof(float));
          float* prev = previous.data();
          const Lists out = L.out;
          exec.for_each(static_cast<int64_t>(B) * out.K, [=] SALTATORY_DEVICE_LAMBDA(int64_t e) {
            const int b = static_cast<int>(e / out.K), k = static_cast<int>(e % out.K);
            if (k < out.spikes(t - 1, b))
              prev[static_cast<int64_t>(b) * n + out.spikes_of(t - 1, b)[k]] = 1.0f;
          });
          exec.gemm_add(prev, false, L.w_rec, false, current_t, B, n, n);
        }
        const float* cur = current.data();
        exec.blocks(B, [=] SALTATORY_DEVICE_LAMBDA(Block & blk, int b) {
          const kernels::Drops d = forward_step(blk, L, t, b, cur, s);
          if (blk.rank() == 0) drops[b] += d;
        });
      }
    }
    if (dense) keep_last_states(exec, *ctx, L);
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
    std::vector<kernels::Drops> per_sample(B);
    exec.download(per_sample.data(), drops, B);
    kernels::Drops total;
    for (const kernels::Drops& x : per_sample) total += x;
    ctx->add_dropped(total);
  }
  return ctx;
}

/// dW += the gradient of W fed by lists `s` (delay 0 or 1) over the window [t0, t1) (gI rows
/// numbered from its first list), without atomics: the (chunk, neuron,
/// list) triples are stably sorted by (chunk, neuron), then each (neuron, column) gathers its gI
/// rows chunk by chunk, latest first (common::SpikesByNeuron's order).
template <class Exec>
void sparse_weight_grad(Exec& exec, const Lists& s, int N, int delay, int t0, int t1, int n_out,
                        const float* grad_current, float* dw) {
  using I64 = ArrayOf<Exec, int64_t>;
  const int64_t lists = static_cast<int64_t>(t1 - t0) * s.B;
  const Feeding f{s, delay, t0, t1, N, common::scatter_chunk_steps(s.B)};
  I64 count(lists + 1), offset(lists + 1);
  int64_t* counts = count.data();
  exec.for_each(lists, [=] SALTATORY_DEVICE_LAMBDA(int64_t list) { counts[list] = f.count(list); });
  const int64_t total = exec.exclusive_sum(count.data(), offset.data(), lists + 1);
  const int64_t n_keys = static_cast<int64_t>(f.chunks()) * N;
  I64 keys(std::max<int64_t>(total, 1)), start(n_keys + 1);
  ArrayOf<Exec, int32_t> feeding(std::max<int64_t>(total, 1));
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

/// A device copy of a host gradient buffer (empty when `host` is null), to add into.
template <class Exec>
ArrayOf<Exec, float> device_copy(Exec& exec, const float* host, int64_t n) {
  ArrayOf<Exec, float> d(host != nullptr ? n : 0);
  if (host != nullptr) exec.upload(d.data(), host, n);
  return d;
}

/// out[j] += sum over samples b = 0, 1, ... of partial[b, j] (common::add_sample_sums' order), in
/// device memory.
template <class Exec>
void add_sample_sums(Exec& exec, const float* partial, int B, int n, float* out) {
  exec.for_each(n, [=] SALTATORY_DEVICE_LAMBDA(int64_t j) {
    for (int b = 0; b < B; ++b)
      kernels::add_row(out + j, partial + static_cast<int64_t>(b) * n + j, 1);
  });
}

/// Adds the model's parameter gradients into `grads` (host) from the per-sample sums
/// [sums(), B, n] (common::add_parameter_grads' order and operations), when `partial` is not empty.
template <class Exec>
void add_parameter_grads(Exec& exec, const Layer& L, const ArrayOf<Exec, float>& partial,
                         const LayerGrads& grads) {
  if (partial.size() == 0) return;
  const kernels::neurons::Model m = L.model();
  const int n = L.c.n_out, B = L.B;
  ArrayOf<Exec, float> sums(m.sums() * static_cast<size_t>(n));  // zero-filled
  for (int i = 0; i < m.sums(); ++i)
    add_sample_sums(exec, partial.data() + static_cast<int64_t>(i) * B * n, B, n,
                    sums.data() + static_cast<int64_t>(i) * n);
  const kernels::neurons::Params<float> host = common::neuron_grads(grads);
  ArrayOf<Exec, float> device[kernels::neurons::kMaxParams];
  kernels::neurons::Params<float> grad;
  for (int i = 0; i < m.param_count(); ++i) {
    if (host[i] == nullptr || m.params[i] == nullptr) continue;  // not wanted; a readout's theta1
    device[i] = device_copy(exec, host[i], n);
    grad.param[i] = device[i].data();
  }
  const float* s = sums.data();
  exec.for_each(n, [=] SALTATORY_DEVICE_LAMBDA(int64_t j) {
    kernels::neurons::add_parameter_grads(m, static_cast<int>(j), s, n, grad);
  });
  for (int i = 0; i < m.param_count(); ++i)
    if (grad[i] != nullptr) exec.download(host[i], grad[i], n);
}

/// Backward of layer l: grad_out [T, B, K_l] (or [T, B, n]), below [T, B, K_in] (or null).
/// Sparse mode runs window by window, latest first (recomputing the membranes of a window from
/// the lists and the kept membrane when they were not stored), so that current gradients exist
/// for one window at a time; every sum keeps the whole-sequence order.
template <class Exec>
void layer_backward(Exec& exec, DeviceContext<Exec>& ctx, size_t l, const float* grad_out,
                    const LayerGrads& grads, float* below) {
  using Block = typename Exec::Block;
  using F32 = ArrayOf<Exec, float>;
  const Layer L = ctx.layer(l);
  const int n = L.c.n_out, n_in = L.c.n_in, B = L.B, T = L.T, k_in = L.in.K;
  const kernels::neurons::Model model = L.model();
  const int64_t row = static_cast<int64_t>(B) * n;
  F32 adjoints(model.adjoints() * row), grad_rec(static_cast<size_t>(B) * std::max(L.out.K, 1));
  // the model's per-sample parameter sums over t [sums(), B, n] (a parameter learnable), reduced
  // over samples at the end
  F32 sums(common::learns(grads) ? model.sums() * row : 0);
  Scratch s = ctx.scratch(adjoints.data(), grad_rec.data());
  s.sums = sums.size() > 0 ? sums.data() : nullptr;
  s.sample_rows = row;
  F32 dw = device_copy(exec, grads.weight, static_cast<int64_t>(n_in) * n);
  F32 dw_rec =
      device_copy(exec, L.recurrent() ? grads.weight_rec : nullptr, static_cast<int64_t>(n) * n);
  F32 db = device_copy(exec, L.c.bias ? grads.bias : nullptr, n);
  float* dbias = db.data();

  if (ctx.config.mode == Mode::sparse) {
    // States that were not kept are recomputed, unless backward needs only the membrane at the
    // list entries: no learnable parameter, and the forward kept the entries (Layer::listed).
    const bool from_listed = L.listed != nullptr && !common::learns(grads);
    const bool recompute = ctx.recomputes(l) && !from_listed;
    F32 grad_current(ctx.window * row);
    F32 buffer(recompute ? model.states() * (ctx.window + 1) * row : 0);
    float* gI = grad_current.data();
    for (int k = ctx.windows(); k-- > 0;) {
      const int t0 = ctx.steps(k).first, t1 = ctx.steps(k).second;
      const int64_t lists = static_cast<int64_t>(t1 - t0) * B;
      Layer Lw = recompute ? window_layer(exec, ctx, l, buffer.data(), k) : L;
      if (from_listed)
        Lw.v = nullptr;  // only the window ends are kept: read nothing of them
      else
        Lw.listed = nullptr;
      if (recompute) forward_window(exec, Lw, t0, t1, s, nullptr, false);
      exec.blocks(B, [=] SALTATORY_DEVICE_LAMBDA(Block & blk, int b) {
        backward_sample(blk, Lw, b, t0, t1, grad_out, gI, s);
      });
      if (dw.size() > 0) sparse_weight_grad(exec, L.in, n_in, L.delay, t0, t1, n, gI, dw.data());
      if (dw_rec.size() > 0) sparse_weight_grad(exec, L.out, n, 1, t0, t1, n, gI, dw_rec.data());
      if (db.size() > 0)
        exec.for_each(n, [=] SALTATORY_DEVICE_LAMBDA(int64_t col) {
          bias_grad_column(static_cast<int>(col), n, lists, gI, dbias);
        });
      if (below != nullptr)
        exec.for_each(lists * k_in, [=] SALTATORY_DEVICE_LAMBDA(int64_t e) {
          input_entry_grad(Lw, t0, e / k_in, static_cast<int>(e % k_in), gI, below);
        });
    }
  } else {  // dense: the whole sequence, products by GEMM
    const int64_t lists = static_cast<int64_t>(T) * B;
    F32 grad_current(lists * n), grad_spikes(static_cast<size_t>(B) * n);
    float* gI = grad_current.data();
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
    if (dw.size() > 0) {
      const auto x = dense_rows(exec, L.in, T, n_in, L.delay);
      exec.gemm_add(x.data(), true, gI, false, dw.data(), n_in, lists, n);
    }
    if (dw_rec.size() > 0) {
      const auto x = dense_rows(exec, L.out, T, n, 1);
      exec.gemm_add(x.data(), true, gI, false, dw_rec.data(), n, lists, n);
    }
    if (db.size() > 0)
      exec.for_each(n, [=] SALTATORY_DEVICE_LAMBDA(int64_t col) {
        bias_grad_column(static_cast<int>(col), n, lists, gI, dbias);
      });
    if (below != nullptr) {  // gX = gI W^T, gathered to the input entries
      F32 grad_x(lists * n_in);
      float* gx = grad_x.data();
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
  if (dw.size() > 0) exec.download(grads.weight, dw.data(), dw.size());
  if (dw_rec.size() > 0) exec.download(grads.weight_rec, dw_rec.data(), dw_rec.size());
  if (db.size() > 0) exec.download(grads.bias, dbias, db.size());
  add_parameter_grads(exec, L, sums, grads);
}

/// BPTT through the stack, top-down (as common::backward_top_down, in executor memory).
template <class Exec>
void stack_backward(Exec& exec, DeviceContext<Exec>& ctx,
                    const std::vector<const float*>& grad_outputs,
                    const std::vector<LayerGrads>& grads, float* grad_input) {
  using F32 = ArrayOf<Exec, float>;
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
