// The ipu-model device: executes a layer stack's tile plan on the host, time step by time step and
// superstep by superstep (a compute set over every tile of a layer, then an exchange), with
// per-tile neuron-model states, lists and current gradients, calling the kernels/ math as the CPU
// does:
//   forward vertex, tile [j0, j1), sample b:
//     I = bias + sum_{k < n_spk(S_in[t'])} W[ids_k, j0:j1] (+ W_rec rows of S[t-1]);  the model's
//     update_row on the slice; flags: spikes V > theta1_j and candidates theta2 < V <= theta1_j
//     of the slice, ascending
//   combine, per b: the tiles' flags concatenated in tile order, kept by the overflow policy
//   backward vertex: the model's carry_row, state_grad_row of the entries in [j0, j1),
//     current_grad_row (gI) and parameter_grad_row
//   entry gradients W[ids_k, :] . gI: dot lanes passed along the layer's tiles in column order
//   weight gradients: each tile sums its columns by chunks of whole steps, latest first; its
//   workers split the rows i, so one accumulator holds them and no reduction reorders the sums.
// Every value equals the CPU backend's bit for bit (the same per-element operations in the same
// order), also continuing from an initial state (step -1 read as the CPU reads it). Dense mode is
// the CPU's baseline only.
#include <algorithm>
#include <atomic>
#include <mutex>
#include <optional>

#include "backends/common/history.hpp"
#include "backends/common/model.hpp"
#include "backends/common/spikes_by_neuron.hpp"
#include "backends/common/top_down.hpp"
#include "backends/cpu/cpu_backend.hpp"
#include "backends/optional.hpp"
#include "saltatory/core/error.hpp"
#include "saltatory/ipu/plan.hpp"
#include "saltatory/kernels/neurons/model.hpp"
#include "saltatory/kernels/select.hpp"
#include "saltatory/kernels/sparse.hpp"

namespace saltatory {

namespace ipu {

namespace {

std::atomic<int> model_neurons_per_tile{0};

/// One tile's share of a layer: neurons [j0, j1) and the per-step buffers it keeps.
struct Tile {
  int j0 = 0, j1 = 0;
  int count = 0;                    ///< the neuron model's state variables
  std::vector<float> state;         ///< the neuron model's states [count, T, B, n], V first
  std::vector<float> grad_current;  ///< gI [T, B, n] (backward)
  int n() const { return j1 - j0; }
  /// The state rows of (t, b) (B samples a step).
  kernels::neurons::Rows states(int t, int b, int B) {
    const int64_t steps = static_cast<int64_t>(state.size()) / count;
    return kernels::neurons::Rows::strided(state.data() + (static_cast<int64_t>(t) * B + b) * n(),
                                           steps, count);
  }
};

class IpuModelContext : public StackContext {
 public:
  std::vector<LayerParams> params;
  SpikeTensor input;
  std::vector<std::vector<Tile>> tiles;  ///< per layer
  RunReport report;
  /// A copy of the state the forward continued from (null: from rest); backward reads it too.
  std::unique_ptr<const StackState> initial;
  /// Held by backward while it adds to the report, and by run_report while it copies it.
  mutable std::mutex report_mutex;

  std::vector<float> stored_states(size_t l) const override {
    const int n_out = config.layers[l].n_out, count = tiles[l].front().count;
    const int64_t rows = static_cast<int64_t>(T) * B;  // (t, b) rows of each state variable
    std::vector<float> out(static_cast<size_t>(count) * rows * n_out);
    for (const Tile& tile : tiles[l])
      for (int i = 0; i < count; ++i)
        for (int64_t r = 0; r < rows; ++r)
          std::copy_n(tile.state.data() + (i * rows + r) * tile.n(), tile.n(),
                      out.data() + (i * rows + r) * n_out + tile.j0);
    return out;
  }

  /// Adds `cycles` (the slowest tile's) to the compute set `name`, created on first use.
  void charge(const std::string& name, double value) {
    for (size_t i = 0; i < report.compute_sets.size(); ++i)
      if (report.compute_sets[i].first == name) {
        report.compute_sets[i].second += value;
        return;
      }
    report.compute_sets.emplace_back(name, value);
  }
};

/// Buffers of one forward step, allocated once per forward: the flags of a layer's tiles
/// concatenated (spikes, candidates), a tile's reset flags, and the random policy's priorities.
struct StepScratch {
  std::vector<int32_t> spikes, candidates;
  std::vector<float> flags;
  std::vector<uint64_t> priority;
};

/// Layer l's input lists and the step delay at which it reads them.
SpikeView input_of(const IpuModelContext& ctx, size_t l) {
  return l == 0 ? ctx.input.view() : ctx.spikes[l - 1].view();
}
int delay_of(const IpuModelContext& ctx, size_t l) {
  return ctx.config.coupling == Coupling::delayed && l > 0 ? 1 : 0;
}
/// Layer l's input lists, with the initial state's of step -1 that delayed coupling reads.
common::SpikeHistory input_history(const IpuModelContext& ctx, size_t l) {
  const bool before = ctx.initial != nullptr && delay_of(ctx, l) > 0;
  return {input_of(ctx, l), before ? ctx.initial->layers[l - 1].spikes.view() : SpikeView{}};
}
/// Spiking layer l's own lists, with the initial state's of step -1.
common::SpikeHistory own_history(const IpuModelContext& ctx, size_t l) {
  return {ctx.spikes[l].view(),
          ctx.initial != nullptr ? ctx.initial->layers[l].spikes.view() : SpikeView{}};
}
/// Whether step t of a layer has a step t - 1: t > 0, or t = 0 continuing from a state.
bool has_prev(const IpuModelContext& ctx, int t) { return t > 0 || ctx.initial != nullptr; }
/// The state rows of tile's (t - 1, b) of layer l: stored, or at t = 0 the initial state's slice.
kernels::neurons::Rows prev_states(const IpuModelContext& ctx, size_t l, Tile& tile, int t, int b) {
  if (t > 0) return tile.states(t - 1, b, ctx.B);
  if (ctx.initial == nullptr) return {};
  const int64_t row = static_cast<int64_t>(ctx.B) * ctx.config.layers[l].n_out;
  float* base = const_cast<float*>(ctx.initial->layers[l].states.data());
  return kernels::neurons::Rows::strided(
      base + static_cast<int64_t>(b) * ctx.config.layers[l].n_out + tile.j0, row, tile.count);
}

/// Marks in `flags` (the tile's slice, zeroed) the ids of `list[0:count]` inside [j0, j1).
void mark_slice(float* flags, const int32_t* list, int count, int j0, int j1, float value) {
  for (int k = 0; k < count; ++k)
    if (list[k] >= j0 && list[k] < j1) flags[list[k] - j0] = value;
}

/// Entry gradients W[ids_k, :] . g for k < count, the lanes chained along `tiles` in column
/// order (bit for bit kernels::dot_row); `g(tile)` is the tile's gI row, `w` is [.., n_out].
template <class G>
void chained_dots(float* out, const float* w, int n_out, const int32_t* ids, int count,
                  const std::vector<Tile>& tiles, G&& g) {
  for (int k = 0; k < count; ++k) {
    float lane[kernels::kDotLanes] = {};
    for (const Tile& tile : tiles)
      kernels::dot_row_lanes(lane, w + static_cast<int64_t>(ids[k]) * n_out + tile.j0, g(tile),
                             tile.j0, tile.j1);
    out[k] = kernels::reduce_lanes(lane);
  }
}

class IpuModelBackend final : public Backend {
 public:
  std::string name() const override { return "ipu-model"; }
  bool learns_neuron_parameters() const override { return true; }
  bool continues_state() const override { return true; }

  std::shared_ptr<StackContext> lif_stack_forward(const StackConfig& config,
                                                  const std::vector<LayerParams>& params,
                                                  const SpikeView& input,
                                                  const StackState* initial) override {
    check(config.mode == Mode::sparse, "lif_stack_forward",
          "ipu-model runs the sparse method only; dense mode is the CPU baseline");
    PlanOptions options;
    options.T = input.T;
    options.B = input.B;
    options.input_capacity = input.K;
    options.neurons_per_tile = model_neurons_per_tile.load();
    auto ctx = std::make_shared<IpuModelContext>();
    StackConfig stored = config;  // the interpreter keeps every step's membranes
    stored.recompute_segment = 0;
    try {
      ctx->report.plan = plan_stack(stored, options, ipu_model_target());
    } catch (const Error& e) {  // run anyway, on tiles without limits, and say why it would not fit
      ctx->report.fits = false;
      ctx->report.fit_error = e.what();
      Target unbounded = ipu_model_target();
      unbounded.ipus = 1 << 16;
      unbounded.bytes_per_tile = int64_t{1} << 40;
      ctx->report.plan = plan_stack(stored, options, unbounded);
    }
    ctx->config = config;
    ctx->params = params;
    ctx->T = input.T;
    ctx->B = input.B;
    ctx->input = SpikeTensor::from_view(input);
    if (initial != nullptr) ctx->initial = std::make_unique<const StackState>(*initial);
    ctx->first_step = initial != nullptr ? initial->steps : 0;  // the overflow streams' step 0
    const Plan& plan = ctx->report.plan;
    const int T = input.T, B = input.B;
    StepScratch scratch;
    for (size_t l = 0; l < config.layers.size(); ++l) {
      const LayerConfig& c = config.layers[l];
      std::vector<Tile>& tiles = ctx->tiles.emplace_back();
      for (int i = 0; i < plan.layers[l].tiles; ++i) {
        const Plan::TileSlice s = plan.tile(plan.layers[l].first_tile + i);
        Tile& tile = tiles.emplace_back();
        tile.j0 = s.begin;
        tile.j1 = s.end;
        tile.count = common::layer_model(c, ctx->params[l]).states();
        tile.state.assign(tile.count * static_cast<size_t>(T) * B * tile.n(), 0.0f);
      }
      if (c.kind == LayerKind::readout) {
        ctx->readout.assign(static_cast<size_t>(T) * B * c.n_out, 0.0f);
      } else {
        ctx->spikes.emplace_back(T, B, c.capacity, c.n_out);
        ctx->dropped.push_back(0);
        ctx->dropped_candidates.push_back(0);
      }
      scratch.spikes.resize(std::max<size_t>(scratch.spikes.size(), c.n_out));
      scratch.candidates.resize(scratch.spikes.size());
      scratch.priority.resize(std::max<size_t>(scratch.priority.size(), c.capacity));
    }
    for (int t = 0; t < T; ++t)  // superstep by superstep: layer l's compute set, then exchange
      for (size_t l = 0; l < config.layers.size(); ++l) forward_step(*ctx, l, t, scratch);
    for (size_t l = 0; l < ctx->spikes.size(); ++l)
      ctx->spikes[l].set_dropped({ctx->dropped[l], ctx->dropped_candidates[l]});
    for (size_t l = 0; l < config.layers.size(); ++l) {  // the states of step T - 1, [count, B, N]
      const int n_out = config.layers[l].n_out;
      std::vector<float>& last = ctx->last_states.emplace_back(
          static_cast<size_t>(ctx->tiles[l].front().count) * B * n_out);
      for (Tile& tile : ctx->tiles[l])
        for (int b = 0; b < B; ++b) {
          const kernels::neurons::Rows rows = tile.states(T - 1, b, B);
          for (int i = 0; i < tile.count; ++i)
            std::copy_n(rows[i], tile.n(),
                        last.data() + (static_cast<int64_t>(i) * B + b) * n_out + tile.j0);
        }
    }
    for (size_t l = 0; l < config.layers.size(); ++l)
      if (config.layers[l].kind == LayerKind::readout)
        for (const Tile& tile : ctx->tiles[l])
          for (int64_t row = 0; row < static_cast<int64_t>(T) * B; ++row)
            std::copy_n(tile.state.data() + row * tile.n(), tile.n(),
                        ctx->readout.data() + row * config.layers[l].n_out + tile.j0);
    finish_report(*ctx);
    return ctx;
  }

  void lif_stack_backward(StackContext& context, const std::vector<const float*>& grad_outputs,
                          const std::vector<LayerGrads>& grads, float* grad_input) override {
    auto& ctx = dynamic_cast<IpuModelContext&>(context);
    const std::lock_guard<std::mutex> lock(ctx.report_mutex);
    common::backward_top_down(ctx, grad_outputs, grad_input, ctx.input.K(),
                              [&](size_t l, const float* grad_out, float* below) {
                                backward_layer(ctx, l, grad_out, grads[l], below);
                              });
    finish_report(ctx);
  }

 private:
  static void forward_step(IpuModelContext& ctx, size_t l, int t, StepScratch& scratch) {
    const LayerConfig& c = ctx.config.layers[l];
    const LayerParams& p = ctx.params[l];
    const common::SpikeHistory in = input_history(ctx, l);
    const int B = ctx.B, t_in = t - delay_of(ctx, l);
    const bool readout = c.kind == LayerKind::readout;
    SpikeTensor* out = readout ? nullptr : &ctx.spikes[l];
    const common::SpikeHistory own = readout ? common::SpikeHistory{} : own_history(ctx, l);
    std::vector<Tile>& tiles = ctx.tiles[l];
    std::vector<int32_t>& spikes = scratch.spikes;
    std::vector<int32_t>& candidates = scratch.candidates;
    std::vector<float>& flags = scratch.flags;
    const kernels::neurons::Model model = common::layer_model(c, p);
    double slowest = 0;
    for (int b = 0; b < B; ++b) {
      int n_above = 0, n_between = 0;
      for (Tile& tile : tiles) {  // compute set: one vertex per tile and sample
        const int n = tile.n();
        const kernels::neurons::Rows now = tile.states(t, b, B);
        float* v = now[0];
        if (p.bias != nullptr)
          std::copy_n(p.bias + tile.j0, n, v);
        else
          std::fill_n(v, n, 0.0f);
        int rows = 0;
        if (in.has(t_in)) {
          kernels::gather_rows(v, p.weight + tile.j0, c.n_out, in.list(t_in, b), in.spikes(t_in, b),
                               n);
          rows += in.spikes(t_in, b);
        }
        if (c.kind == LayerKind::recurrent_lif && own.has(t - 1)) {
          kernels::gather_rows(v, p.weight_rec + tile.j0, c.n_out, own.list(t - 1, b),
                               own.spikes(t - 1, b), n);
          rows += own.spikes(t - 1, b);
        }
        const kernels::neurons::Model m = model.slice(tile.j0);
        if (has_prev(ctx, t) && m.update_reads_emitted()) {
          flags.assign(n, 0.0f);
          mark_slice(flags.data(), own.list(t - 1, b), own.spikes(t - 1, b), tile.j0, tile.j1,
                     1.0f);
        }
        kernels::neurons::update_row(kernels::SerialBlock{}, m, now,
                                     prev_states(ctx, l, tile, t, b), flags.data(), v, n);
        if (!readout)
          for (int j = 0; j < n; ++j) {  // flags of the slice, ascending
            const kernels::neurons::Flag flag = m.flag(j, v[j]);
            if (flag == kernels::neurons::spike)
              spikes[n_above++] = tile.j0 + j;
            else if (flag == kernels::neurons::candidate)
              candidates[n_between++] = tile.j0 + j;
          }
        slowest = std::max(slowest, (rows + 4.0) * n / kFloatsPerCycle + n);
      }
      if (readout) continue;
      // exchange and combine: the tiles' flags in tile order, then the capacity by policy
      const uint64_t stream =
          kernels::list_stream(kernels::layer_seed(ctx.config.seed, l), ctx.first_step + t, b);
      std::vector<uint64_t>& priority = scratch.priority;
      int32_t* ids = out->list(t, b);
      const int n_spk = kernels::keep_subset(spikes.data(), n_above, ids, out->K(),
                                             ctx.config.overflow, stream, priority.data());
      const int n_cand =
          kernels::keep_subset(candidates.data(), n_between, ids + n_spk, out->K() - n_spk,
                               ctx.config.overflow, kernels::mix64(stream + 1), priority.data());
      out->n_spk(t, b) = n_spk;
      out->n_tot(t, b) = n_spk + n_cand;
      ctx.dropped[l] += n_above - n_spk;
      ctx.dropped_candidates[l] += n_between - n_cand;
      // bytes: each tile's flags to the combiner; the list to every tile that reads it
      const auto consumers = static_cast<int64_t>(
          (l + 1 < ctx.tiles.size() ? ctx.tiles[l + 1].size() : 0) +
          (c.kind == LayerKind::recurrent_lif || model.update_reads_emitted() ? tiles.size() : 0));
      ctx.report.exchange_bytes_forward +=
          4 * (n_above + n_between + 2 * static_cast<int64_t>(tiles.size())) +
          4 * (n_spk + n_cand + 2) * consumers;
    }
    ctx.charge("forward layer " + std::to_string(l), slowest * B);
  }

  static void backward_layer(IpuModelContext& ctx, size_t l, const float* grad_output,
                             const LayerGrads& grads, float* grad_input) {
    const LayerConfig& c = ctx.config.layers[l];
    const LayerParams& p = ctx.params[l];
    const SpikeView in = input_of(ctx, l);
    const int T = ctx.T, B = ctx.B, delay = delay_of(ctx, l);
    const bool readout = c.kind == LayerKind::readout;
    const bool recurrent = c.kind == LayerKind::recurrent_lif;
    SpikeTensor* out = readout ? nullptr : &ctx.spikes[l];
    const common::SpikeHistory own = readout ? common::SpikeHistory{} : own_history(ctx, l);
    const int k_out = readout ? c.n_out : out->K();
    std::vector<Tile>& tiles = ctx.tiles[l];
    for (Tile& tile : tiles) tile.grad_current.assign(static_cast<size_t>(T) * B * tile.n(), 0.0f);
    const auto gi = [&](const Tile& tile, int t, int b) {
      return tile.grad_current.data() + (static_cast<int64_t>(t) * B + b) * tile.n();
    };
    double state_cycles = 0, dot_cycles = 0, weight_cycles = 0;
    // the model's per-sample parameter sums over t [sums(), B, n_out] (when a parameter is
    // learnable); tiles write their slices
    using kernels::neurons::Model;
    using kernels::neurons::Rows;
    const Model model = common::layer_model(c, p);
    const int64_t sums_stride = static_cast<int64_t>(B) * c.n_out;
    std::vector<float> sums(common::learns(grads) ? model.sums() * sums_stride : 0, 0.0f);
    for (int b = 0; b < B; ++b) {  // the time recursion: vertices per tile, entry dots exchanged
      std::vector<std::vector<float>> adjoints(tiles.size());  // each [adjoints(), n]
      for (size_t i = 0; i < tiles.size(); ++i)
        adjoints[i].assign(model.adjoints() * tiles[i].n(), 0.0f);
      std::vector<float> grad_rec(recurrent ? k_out : 0, 0.0f), flags;
      for (int t = T - 1; t >= 0; --t) {
        const int64_t list = static_cast<int64_t>(t) * B + b;
        const float* g_out = grad_output + list * k_out;
        for (size_t i = 0; i < tiles.size(); ++i) {
          Tile& tile = tiles[i];
          const int n = tile.n();
          const Rows g = Rows::strided(adjoints[i].data(), n, model.adjoints());
          const Rows at = tile.states(t, b, B);
          const Rows tile_sums = sums.empty() ? Rows{}
                                              : Rows::strided(sums.data() + b * c.n_out + tile.j0,
                                                              sums_stride, model.sums());
          const Model m = model.slice(tile.j0);
          const kernels::SerialBlock one;
          if (t < T - 1) {
            if (m.carry_reads_emitted()) {
              flags.assign(n, 0.0f);
              mark_slice(flags.data(), out->list(t, b), out->n_spk(t, b), tile.j0, tile.j1, 1.0f);
            }
            kernels::neurons::carry_row(one, m, g, at, flags.data(), n);
          }
          if (readout) {
            kernels::add_row(g[0], g_out + tile.j0, n);
          } else {
            kernels::neurons::state_grad_row(one, m, g, at, out->list(t, b), g_out,
                                             out->n_tot(t, b), tile.j0, tile.j1, tile_sums);
            if (recurrent && t < T - 1)
              kernels::neurons::state_grad_row(one, m, g, at, out->list(t, b), grad_rec.data(),
                                               out->n_tot(t, b), tile.j0, tile.j1, tile_sums);
          }
          // completes the adjoints of t, then their parameter terms
          kernels::neurons::current_grad_row(one, m, tile.grad_current.data() + list * n, g, n);
          if (tile_sums) {  // r[t] from the footprint of S[t-1]
            const bool emitted = has_prev(ctx, t) && m.update_reads_emitted();
            if (emitted) {
              flags.assign(n, 0.0f);
              mark_slice(flags.data(), own.list(t - 1, b), own.spikes(t - 1, b), tile.j0, tile.j1,
                         1.0f);
            }
            kernels::neurons::parameter_grad_row(
                one, m, tile_sums, g, prev_states(ctx, l, tile, t, b), flags.data(), at, n);
          }
          state_cycles =
              std::max(state_cycles, 3.0 * n / kFloatsPerCycle + 8.0 * std::min(n, k_out));
        }
        if (recurrent && t > 0) {
          const int count = out->n_tot(t - 1, b);
          chained_dots(grad_rec.data(), p.weight_rec, c.n_out, out->list(t - 1, b), count, tiles,
                       [&](const Tile& tile) { return gi(tile, t, b); });
          ctx.report.exchange_bytes_backward +=
              4 * count * (kernels::kDotLanes * static_cast<int64_t>(tiles.size() - 1) + 1);
        }
      }
    }
    if (!sums.empty()) common::add_parameter_grads(model, sums.data(), B, c.n_out, grads);
    if (grad_input != nullptr) {  // entry gradients of the input lists
      std::vector<float> dots(in.K);
      for (int t = delay; t < T; ++t)
        for (int b = 0; b < B; ++b) {
          const int t_in = t - delay, count = in.total(t_in, b);
          chained_dots(dots.data(), p.weight, c.n_out, in.list(t_in, b), count, tiles,
                       [&](const Tile& tile) { return gi(tile, t, b); });
          kernels::add_row(grad_input + (static_cast<int64_t>(t_in) * B + b) * in.K, dots.data(),
                           count);
          ctx.report.exchange_bytes_backward +=
              4 * count * (kernels::kDotLanes * static_cast<int64_t>(tiles.size() - 1) + 1);
          dot_cycles += count * (2.0 * tiles.front().n() / kFloatsPerCycle);
        }
    }
    // weight gradients: per tile, its columns, chunks of whole steps latest first (the CPU's order)
    const auto weight_grad = [&](float* dw, const common::SpikeHistory& spikes, int d) {
      const common::SpikesByNeuron by_neuron(spikes, {0, T}, d, common::scatter_chunk_steps(B));
      for (const Tile& tile : tiles) {
        double ops = 0;
        for (int64_t chunk = by_neuron.chunks(); chunk-- > 0;)
          for (int i = 0; i < spikes.now.N; ++i) {
            kernels::gather_rows(dw + static_cast<int64_t>(i) * c.n_out + tile.j0,
                                 tile.grad_current.data(), tile.n(), by_neuron.lists(chunk, i),
                                 by_neuron.count(chunk, i), tile.n());
            ops += by_neuron.count(chunk, i) * tile.n();
          }
        weight_cycles = std::max(weight_cycles, ops / kFloatsPerCycle);
      }
    };
    if (grads.weight != nullptr) weight_grad(grads.weight, input_history(ctx, l), delay);
    if (grads.weight_rec != nullptr && recurrent) weight_grad(grads.weight_rec, own, 1);
    if (grads.bias != nullptr && c.bias)
      for (const Tile& tile : tiles)
        for (int64_t list = static_cast<int64_t>(T) * B; list-- > 0;)
          kernels::add_row(grads.bias + tile.j0, tile.grad_current.data() + list * tile.n(),
                           tile.n());
    const std::string layer = " layer " + std::to_string(l);
    ctx.charge("backward" + layer, state_cycles * T * B);
    ctx.charge("entry gradients" + layer, dot_cycles);
    ctx.charge("weight gradients" + layer, weight_cycles);
  }

  /// Each used tile's bytes: its plan's accounting, with the buffers this run really holds.
  static void finish_report(IpuModelContext& ctx) {
    RunReport& r = ctx.report;
    r.tile_bytes.clear();
    for (size_t l = 0; l < ctx.tiles.size(); ++l)
      for (const Tile& tile : ctx.tiles[l]) {
        TileMemory m = r.plan.layers[l].memory;
        m.membranes = static_cast<int64_t>(tile.state.size()) * 4;
        m.current_grads = static_cast<int64_t>(tile.grad_current.size()) * 4;
        r.tile_bytes.push_back(m.total());
      }
  }
};

}  // namespace

void set_ipu_model_neurons_per_tile(int n) {
  check(n == 0 || (n >= 2 && n <= 16 && n % 2 == 0), "set_ipu_model_neurons_per_tile",
        "neurons per tile ", n, " must be 0 (automatic) or even in [2, 16]");
  model_neurons_per_tile = n;
}

Target ipu_model_target() {
  Target target;
  target.ipus = 16;
  return target;
}

std::optional<RunReport> run_report(const StackContext& context) {
  const auto* ctx = dynamic_cast<const IpuModelContext*>(&context);
  if (ctx == nullptr) return std::nullopt;
  const std::lock_guard<std::mutex> lock(ctx->report_mutex);  // a backward may be running
  return ctx->report;
}

}  // namespace ipu

Backend& ipu_model_backend() {
  static ipu::IpuModelBackend backend;
  return backend;
}

}  // namespace saltatory
