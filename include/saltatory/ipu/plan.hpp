// The IPU tile plan (docs/method.md, section 7), a pure function of the model and the target. Each layer
// owns consecutive tiles, in layer order; a layer never straddles two IPUs (when an IPU is full
// the next layer starts on the next one). Each tile holds a contiguous, even-sized slice of one
// layer's neurons [j0, j1) and, for them:
//   weights W[:, j0:j1] (and W_rec[:, j0:j1]), input-major;  their gradient accumulator, whose
//   rows i the tile's worker threads split between them (the paper gave each worker a private
//   copy and reduced them: 6x the memory, and a reduction that reorders the sums);  optimiser state;  alpha, bias;  the membrane history [T, B, n];  the input lists
//   of every step [T, B, K_in + 2] (broadcast to every tile of the layer);  its own part of the
//   output lists [T, B, min(n, K) + 2] (parallel compaction);  per-step scratch.
// Per step only lists move forward (each layer's list broadcast to the tiles that consume it) and
// per-entry gradients backward (each tile's partial dots reduced over the tiles of the layer).
// Sizes are bytes (float32 and int32 values); "exchange" counts bytes received by tiles.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "saltatory/ops/lif_stack.hpp"

namespace saltatory::ipu {

/// An IPU system. The defaults describe one Graphcore Mk2 GC200.
struct Target {
  int ipus = 1;
  int tiles_per_ipu = 1472;
  int workers_per_tile = 6;
  int64_t bytes_per_tile = 624 * 1024;
  /// Tile memory the plan leaves to vertex code, worker stacks and exchange code (an assumption;
  /// Poplar's compiler reports the real figure).
  int64_t reserved_bytes_per_tile = 32 * 1024;
  double clock_hz = 1.33e9;  ///< GC200 tile clock
};

/// What a training step keeps besides the model: sizes that set per-tile memory.
struct PlanOptions {
  int T = 10;                ///< steps per sample
  int B = 24;                ///< batch
  int input_capacity = 48;   ///< K of the input lists
  int neurons_per_tile = 0;  ///< even, 2 to 16; 0 picks the smallest that fits
  int optimizer_slots = 0;   ///< state per weight: 0 SGD (the paper's scaling runs), 2 Adam
};

/// Bytes one tile needs, by purpose.
struct TileMemory {
  int64_t weights = 0, weight_grads = 0, optimizer = 0, parameters = 0, membranes = 0,
          current_grads = 0, input_lists = 0, output_lists = 0, scratch = 0;
  int64_t total() const;
};

/// One layer's tiles.
struct LayerPlacement {
  int layer = 0;
  int ipu = 0;
  int first_tile = 0;  ///< global tile index (ipu * tiles_per_ipu + tile on that IPU)
  int tiles = 0;
  int neurons_per_tile = 0;       ///< the last tile may hold fewer (still even when N is)
  TileMemory memory;              ///< of the fullest tile
  int64_t exchange_forward = 0;   ///< bytes per step the layer's tiles receive going forward
  int64_t exchange_backward = 0;  ///< bytes per step they receive going backward
  /// Per-step work of the fullest tile, in tile cycles (see Plan::cycles_per_step).
  double cycles_forward = 0, cycles_backward = 0;
  /// Neurons [begin, end) of tile i of this layer.
  int neuron_begin(int i) const { return i * neurons_per_tile; }
};

/// A complete placement of a layer stack on a target.
struct Plan {
  Target target;
  PlanOptions options;
  Coupling coupling = Coupling::same_step;
  std::vector<LayerPlacement> layers;
  int n_in = 0;                  ///< input neurons of the first layer
  std::vector<int> layer_sizes;  ///< N_out of every layer
  int tiles_used = 0;
  int ipus_used = 0;
  int neurons_per_tile = 0;
  int64_t weights = 0;                   ///< parameters of the model (W and W_rec)
  int64_t max_tile_bytes = 0;            ///< the fullest tile
  double mean_tile_bytes = 0;            ///< over used tiles
  int64_t exchange_bytes_per_step = 0;   ///< forward + backward, all tiles
  int64_t cross_ipu_bytes_per_step = 0;  ///< lists and gradients that cross an IPU boundary
  /// Estimated tile cycles of one training step (forward + backward of one time step): compute of
  /// the slowest tile per superstep, exchange at kExchangeBytesPerCycle per tile, and a sync per
  /// superstep. Layers run one after another (same-step coupling) or all at once (delayed).
  double cycles_per_step = 0;
  /// Tile of global index `tile`: its layer and neurons [begin, end); layer -1 when unused.
  struct TileSlice {
    int layer = -1, begin = 0, end = 0;
  };
  TileSlice tile(int tile) const;
};

/// Assumptions of the cycle estimate (documented in the plan summary).
inline constexpr double kFloatsPerCycle = 2.0;          ///< f32 vector ops per tile cycle (64 bit)
inline constexpr double kExchangeBytesPerCycle = 4.0;   ///< bytes a tile receives per cycle
inline constexpr double kSyncCycles = 150.0;            ///< one superstep's sync on one IPU
inline constexpr double kCrossIpuSyncCycles = 1500.0;   ///< a sync spanning several IPUs
inline constexpr double kCrossIpuBytesPerCycle = 32.0;  ///< IPU-Link bytes per tile cycle

/// Places `config`'s layers on `target`. Throws Error (op "ipu_plan") when the model does not fit,
/// naming the layer and the tile or IPU that overflows.
Plan plan_stack(const StackConfig& config, const PlanOptions& options,
                const Target& target = Target{});

/// A human-readable summary: tiles, neurons per tile, memory per tile, exchange and cycles.
std::string summary(const Plan& plan);

/// What a forward (and backward) on the ipu-model device measured while executing its plan.
struct RunReport {
  /// The plan executed: on the ipu-model target when the model fits it; otherwise on the same
  /// target with unbounded tiles and IPUs (results are the same), with `fit_error` saying why.
  Plan plan;
  bool fits = true;
  std::string fit_error;
  std::vector<int64_t> tile_bytes;      ///< per used tile: bytes of its buffers at their high-water
  int64_t exchange_bytes_forward = 0;   ///< bytes received by tiles, whole sequence
  int64_t exchange_bytes_backward = 0;  ///< likewise in backward
  /// Compute sets and their estimated cycles (slowest tile, summed over steps), in run order.
  std::vector<std::pair<std::string, double>> compute_sets;
};

/// A copy of the report of a context made on the ipu-model device (taken while no backward adds to
/// it); empty for other devices.
std::optional<RunReport> run_report(const StackContext& context);

/// The target the ipu-model device plans for: GC200 IPUs, as many as the model needs (up to 16).
Target ipu_model_target();

/// Neurons per tile of the ipu-model device's plans: 0 (default) lets the planner choose, else an
/// even number in [2, 16]. Results do not depend on it.
void set_ipu_model_neurons_per_tile(int n);

}  // namespace saltatory::ipu
