// The IPU tile planner (include/saltatory/ipu/plan.hpp): per layer n neurons per tile,
//   tiles_l = ceil(N_l / n), layers on consecutive tiles, the next IPU when one is full;
//   tile bytes = (N_in [+ N]) n 4 (2 + optimiser slots)  + (S + 1) T B n 4 (the neuron model's S
//              states, gI)  + T B (K_in + 2) 4 [+ T B (K + 2) 4]  + T B (min(n, K) + 2) 4
//              + (P [+ 2]) n 4 (its P per-neuron parameters [, bias and its gradient])  + scratch
//              ((1 + adjoints + sums) B n 4, the current and the model's backward rows);
//   tile cycles per time step, forward: B (K_in [+ K]) n / 2 (gathers) + B n (4 / 2 + 1) (update,
//   compaction); backward: 2 B (K_in [+ K]) n / 2 (input-entry dots, weight gradients)
//   + B n (3 / 2) + 8 B min(n, K) (surrogates);  exchange = received bytes / 4 per cycle.
#include <algorithm>
#include <cmath>
#include <iomanip>
#include <sstream>

#include "backends/common/model.hpp"
#include "saltatory/core/error.hpp"
#include "saltatory/ipu/plan.hpp"

namespace saltatory::ipu {

namespace {

constexpr const char* kOp = "ipu_plan";
constexpr int64_t kWord = 4;  // bytes of a float32 or int32

/// What the tiles of one layer hold and receive.
struct LayerShape {
  int n_in, n_out, k_in, k_out;  // k_out = 0 for a readout
  bool recurrent, bias;
  kernels::neurons::Model model;  // the neuron model's counts (states, adjoints, sums, parameters)
};

std::vector<LayerShape> shapes(const StackConfig& config, const PlanOptions& o) {
  std::vector<LayerShape> out;
  int k_in = o.input_capacity;
  for (const LayerConfig& c : config.layers) {
    const bool readout = c.kind == LayerKind::readout;
    const int k_out = readout ? 0 : std::min(c.capacity, c.n_out);
    out.push_back({c.n_in, c.n_out, k_in, k_out, c.kind == LayerKind::recurrent_lif, c.bias,
                   common::layer_model(c, LayerParams{})});
    k_in = k_out;
  }
  return out;
}

TileMemory tile_memory(const LayerShape& s, int n, const PlanOptions& o, const Target& /*target*/,
                       int membrane_steps) {
  const int64_t T = o.T, B = o.B, rows = s.n_in + (s.recurrent ? s.n_out : 0);
  TileMemory m;
  m.weights = rows * n * kWord;
  m.weight_grads = m.weights;  // one accumulator: each worker owns rows i of it, no reduction
  m.optimizer = o.optimizer_slots * m.weights;
  // the model's per-neuron parameters; bias and its gradient
  m.parameters = (s.model.param_count() + (s.bias ? 2 : 0)) * int64_t{n} * kWord;
  // the model's states of every step (membrane first)
  m.membranes = s.model.states() * membrane_steps * B * n * kWord;
  m.current_grads =
      membrane_steps * B * n * kWord;  // gI of the same steps, read by the weight grads
  m.input_lists = T * B * (s.k_in + 2) * kWord + (s.recurrent ? T * B * (s.k_out + 2) * kWord : 0);
  m.output_lists = s.k_out > 0 ? T * B * (std::min(n, s.k_out) + 2) * kWord : 0;
  // the current, the model's adjoints and per-sample parameter sums, and input-entry partials
  m.scratch = ((1 + s.model.adjoints() + s.model.sums()) * B * n + B * s.k_in) * kWord;
  return m;
}

/// Listed input entries a tile's neurons read per sample and step (feed-forward and recurrent).
int64_t entries_in(const LayerShape& s) { return s.k_in + (s.recurrent ? s.k_out : 0); }

double forward_cycles(const LayerShape& s, int n, int B) {
  return B * (entries_in(s) * n / kFloatsPerCycle + n * (4 / kFloatsPerCycle + 1));
}

double backward_cycles(const LayerShape& s, int n, int B) {
  return B * (2 * entries_in(s) * n / kFloatsPerCycle + n * 3 / kFloatsPerCycle +
              8.0 * std::min(n, s.k_out));
}

std::string kib(int64_t bytes) {
  std::ostringstream s;
  s.setf(std::ios::fixed);
  s.precision(1);
  s << bytes / 1024.0 << " KiB";
  return s.str();
}

/// Places every layer at `npt` neurons per tile, or returns why it cannot.
std::string place(Plan& plan, const StackConfig& config, int npt) {
  const Target& t = plan.target;
  const PlanOptions& o = plan.options;
  const std::vector<LayerShape> layer_shapes = shapes(config, o);
  const int segment = std::min(o.T, config.recompute_segment);
  const int membrane_steps =
      segment > 0 ? std::min(o.T, 2 * segment + (o.T + segment - 1) / segment) : o.T;
  const int64_t budget = t.bytes_per_tile - t.reserved_bytes_per_tile;
  plan.layers.clear();
  int ipu = 0, used = 0;
  for (size_t l = 0; l < layer_shapes.size(); ++l) {
    const LayerShape& s = layer_shapes[l];
    const int n = std::min(npt, s.n_out), tiles = (s.n_out + n - 1) / n;
    std::ostringstream why;
    if (tiles > t.tiles_per_ipu) {
      why << "layer " << l << " (" << s.n_out << " neurons) needs " << tiles << " tiles at " << npt
          << " neurons per tile, more than an IPU's " << t.tiles_per_ipu;
      return why.str();
    }
    if (used + tiles > t.tiles_per_ipu) {
      if (ipu + 1 >= t.ipus) {
        why << "layer " << l << " (" << s.n_out << " neurons) needs " << tiles << " tiles at "
            << npt << " neurons per tile, but IPU " << ipu << " has " << t.tiles_per_ipu - used
            << " left and the target has " << t.ipus << " IPU" << (t.ipus > 1 ? "s" : "");
        return why.str();
      }
      ++ipu;
      used = 0;
    }
    LayerPlacement p;
    p.layer = static_cast<int>(l);
    p.ipu = ipu;
    p.first_tile = ipu * t.tiles_per_ipu + used;
    p.tiles = tiles;
    p.neurons_per_tile = n;
    p.memory = tile_memory(s, n, o, t, membrane_steps);
    if (p.memory.total() > budget) {
      why << "layer " << l << ", tile " << p.first_tile << " (neurons 0-" << n - 1 << ") needs "
          << kib(p.memory.total()) << ", more than the " << kib(budget) << " a tile offers ("
          << kib(t.bytes_per_tile) << " less " << kib(t.reserved_bytes_per_tile) << " reserved)";
      return why.str();
    }
    const int64_t B = o.B;
    const int64_t list_bytes = B * (entries_in(s) + 2 * (s.recurrent ? 2 : 1)) * kWord;
    const int64_t reduce_levels = static_cast<int64_t>(std::ceil(std::log2(tiles))) + 1;
    p.exchange_forward = tiles * list_bytes + (s.k_out > 0 ? tiles * B * 2 * kWord : 0);
    p.exchange_backward = tiles * B * s.k_in * kWord;  // partials into a reduction tree
    p.cycles_forward = forward_cycles(s, n, o.B) + list_bytes / kExchangeBytesPerCycle;
    p.cycles_backward =
        backward_cycles(s, n, o.B) + B * s.k_in * kWord * reduce_levels / kExchangeBytesPerCycle;
    plan.layers.push_back(p);
    used += tiles;
  }
  return {};
}

}  // namespace

int64_t TileMemory::total() const {
  return weights + weight_grads + optimizer + parameters + membranes + current_grads + input_lists +
         output_lists + scratch;
}

Plan::TileSlice Plan::tile(int tile) const {
  for (const LayerPlacement& p : layers)
    if (tile >= p.first_tile && tile < p.first_tile + p.tiles) {
      const int i = tile - p.first_tile, begin = p.neuron_begin(i);
      return {p.layer, begin, std::min(begin + p.neurons_per_tile, layer_sizes[p.layer])};
    }
  return {};
}

Plan plan_stack(const StackConfig& config, const PlanOptions& options, const Target& target) {
  check(!config.layers.empty(), kOp, "the stack has no layers");
  check(options.T > 0 && options.B > 0 && options.input_capacity > 0, kOp, "T (", options.T,
        "), B (", options.B, ") and the input capacity (", options.input_capacity,
        ") must be positive");
  check(options.optimizer_slots >= 0, kOp, "optimizer_slots must be >= 0");
  check(config.recompute_segment >= 0, kOp, "recompute_segment must be >= 0");
  check(options.neurons_per_tile == 0 ||
            (options.neurons_per_tile >= 2 && options.neurons_per_tile <= 16 &&
             options.neurons_per_tile % 2 == 0),
        kOp, "neurons_per_tile ", options.neurons_per_tile,
        " must be 0 (automatic) or even in [2, 16]");
  check(target.ipus > 0 && target.tiles_per_ipu > 0 && target.workers_per_tile > 0 &&
            target.bytes_per_tile > target.reserved_bytes_per_tile &&
            target.reserved_bytes_per_tile >= 0 && target.clock_hz > 0,
        kOp,
        "the target needs positive IPUs, tiles, workers and clock, and more bytes per tile than "
        "reserved");
  for (size_t l = 0; l < config.layers.size(); ++l) {
    const LayerConfig& c = config.layers[l];
    check(c.n_in > 0 && c.n_out > 0, kOp, "layer ", l, ": sizes ", c.n_in, " -> ", c.n_out,
          " must be positive");
    check(c.kind == LayerKind::readout || c.capacity > 0, kOp, "layer ", l, ": capacity ",
          c.capacity, " must be positive");
    check(c.kind != LayerKind::readout || l + 1 == config.layers.size(), kOp, "layer ", l,
          ": a readout layer must be last");
    check(l == 0 || c.n_in == config.layers[l - 1].n_out, kOp, "layer ", l, " expects ", c.n_in,
          " inputs but layer ", l - 1, " has ", config.layers[l - 1].n_out, " outputs");
  }

  Plan plan;
  plan.target = target;
  plan.options = options;
  plan.coupling = config.coupling;
  plan.n_in = config.layers.front().n_in;
  for (const LayerConfig& c : config.layers) plan.layer_sizes.push_back(c.n_out);
  std::vector<int> candidates;
  if (options.neurons_per_tile > 0)
    candidates.push_back(options.neurons_per_tile);
  else
    for (int n = 2; n <= 16; n += 2) candidates.push_back(n);
  std::string first_failure, last_failure;
  for (int npt : candidates) {
    const std::string why = place(plan, config, npt);
    if (why.empty()) {
      plan.neurons_per_tile = npt;
      break;
    }
    if (first_failure.empty()) first_failure = why;
    last_failure = why;
  }
  if (plan.neurons_per_tile == 0) {
    if (candidates.size() == 1) throw Error(kOp, "the model does not fit: " + last_failure);
    throw Error(kOp, "the model fits at no even number of neurons per tile from 2 to 16: at 2, " +
                         first_failure + "; at 16, " + last_failure);
  }

  const bool delayed = config.coupling == Coupling::delayed;
  double fwd_max = 0, bwd_max = 0, sequential = 0, mean = 0;
  for (size_t l = 0; l < plan.layers.size(); ++l) {
    const LayerPlacement& p = plan.layers[l];
    const LayerConfig& c = config.layers[l];
    plan.tiles_used += p.tiles;
    plan.ipus_used = std::max(plan.ipus_used, p.ipu + 1);
    plan.weights +=
        static_cast<int64_t>(c.n_in + (c.kind == LayerKind::recurrent_lif ? c.n_out : 0)) * c.n_out;
    plan.max_tile_bytes = std::max(plan.max_tile_bytes, p.memory.total());
    mean += static_cast<double>(p.memory.total()) * p.tiles;  // the fullest tile stands for all
    plan.exchange_bytes_per_step += p.exchange_forward + p.exchange_backward;
    double cross = 0;
    if (l + 1 < plan.layers.size() && plan.layers[l + 1].ipu != p.ipu) {
      const int64_t k = std::min(c.capacity, c.n_out);
      const int64_t bytes = static_cast<int64_t>(options.B) * (2 * k + 2) * kWord;  // list + grads
      plan.cross_ipu_bytes_per_step += bytes;
      cross = bytes / kCrossIpuBytesPerCycle;
    }
    fwd_max = std::max(fwd_max, p.cycles_forward + cross / 2);
    bwd_max = std::max(bwd_max, p.cycles_backward + cross / 2);
    sequential += p.cycles_forward + p.cycles_backward + cross;
  }
  plan.mean_tile_bytes = mean / plan.tiles_used;
  const double sync = plan.ipus_used > 1 ? kCrossIpuSyncCycles : kSyncCycles;
  const auto supersteps = static_cast<double>(delayed ? 2 : 2 * plan.layers.size());
  plan.cycles_per_step = (delayed ? fwd_max + bwd_max : sequential) + supersteps * sync;
  return plan;
}

std::string summary(const Plan& plan) {
  const Target& t = plan.target;
  const PlanOptions& o = plan.options;
  std::ostringstream s;
  s.setf(std::ios::fixed);
  s.precision(1);
  s << "IPU plan: " << t.ipus << " IPU(s) x " << t.tiles_per_ipu << " tiles, " << t.workers_per_tile
    << " workers and " << kib(t.bytes_per_tile) << " per tile (" << kib(t.reserved_bytes_per_tile)
    << " reserved); T=" << o.T << ", B=" << o.B << ", input capacity " << o.input_capacity
    << ", optimiser state " << o.optimizer_slots << " per weight, "
    << (plan.coupling == Coupling::delayed ? "delayed" : "same-step") << " coupling\n";
  s << "model " << plan.n_in;  // runs of more than 3 equal sizes as NxR
  for (size_t l = 0; l < plan.layer_sizes.size();) {
    size_t run = 1;
    while (l + run < plan.layer_sizes.size() && plan.layer_sizes[l + run] == plan.layer_sizes[l])
      ++run;
    if (run > 3) {
      s << "-" << plan.layer_sizes[l] << "x" << run;
    } else {
      for (size_t r = 0; r < run; ++r) s << "-" << plan.layer_sizes[l];
    }
    l += run;
  }
  s << ": " << plan.weights / 1e6 << " M weights, " << plan.neurons_per_tile
    << " neurons per tile, " << plan.tiles_used << " tiles on " << plan.ipus_used << " IPU(s)\n";
  s << "layer neurons ipu tiles n/tile  KiB/tile = weights + grads + optimiser + V and gI + lists"
       " + other   exchange KiB/step fwd, bwd\n";
  for (const LayerPlacement& p : plan.layers) {
    const TileMemory& m = p.memory;
    const auto k = [](int64_t bytes) { return bytes / 1024.0; };
    s << std::setw(5) << p.layer << std::setw(8) << plan.layer_sizes[p.layer] << std::setw(4)
      << p.ipu << std::setw(6) << p.tiles << std::setw(7) << p.neurons_per_tile << std::setw(10)
      << k(m.total()) << " = " << k(m.weights) << " + " << k(m.weight_grads) << " + "
      << k(m.optimizer) << " + " << k(m.membranes + m.current_grads) << " + "
      << k(m.input_lists + m.output_lists) << " + " << k(m.parameters + m.scratch) << std::setw(12)
      << k(p.exchange_forward) << ", " << k(p.exchange_backward) << "\n";
  }
  s << "memory per tile: max " << kib(plan.max_tile_bytes) << ", mean "
    << kib(static_cast<int64_t>(plan.mean_tile_bytes)) << " of "
    << kib(t.bytes_per_tile - t.reserved_bytes_per_tile) << "\n";
  s << "exchange per time step: " << plan.exchange_bytes_per_step / 1024.0 << " KiB ("
    << plan.cross_ipu_bytes_per_step / 1024.0 << " KiB across IPUs)\n";
  s.precision(0);
  s << "estimated cycles per time step (forward + backward): " << plan.cycles_per_step << ", "
    << plan.cycles_per_step * o.T / t.clock_hz * 1e6 << " us per training step of " << o.T
    << " steps at " << std::setprecision(2) << t.clock_hz / 1e9 << " GHz\n";
  s.precision(1);
  s << "assumptions: lists full to capacity; " << kFloatsPerCycle << " f32 ops per tile cycle; "
    << kExchangeBytesPerCycle << " bytes received per tile cycle; " << kSyncCycles
    << " cycles per sync (" << kCrossIpuSyncCycles << " across IPUs); " << kCrossIpuBytesPerCycle
    << " IPU-Link bytes per cycle; no host I/O, no optimiser step";
  return s.str();
}

}  // namespace saltatory::ipu
