// The IPU tile planner: invariants (every neuron on exactly one tile, balanced slices, layers in
// order on consecutive tiles, never straddling an IPU, memory within the budget), the paper's
// model grid (docs/method.md, section 7), and clear failures for models that do not fit.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "saltatory/core/error.hpp"
#include "saltatory/ipu/plan.hpp"

using namespace saltatory;

namespace {

/// Spiking layers of `widths` (hidden capacity 2 floor(a N / 2)), the last with capacity 2.
StackConfig stack(const std::vector<int>& sizes, double activity = 0.05, bool recurrent = false) {
  StackConfig config;
  for (size_t l = 0; l + 1 < sizes.size(); ++l) {
    LayerConfig c;
    c.kind = recurrent && l + 2 < sizes.size() ? LayerKind::recurrent_lif : LayerKind::lif;
    c.n_in = sizes[l];
    c.n_out = sizes[l + 1];
    c.capacity =
        l + 2 == sizes.size() ? 2 : std::max(2, 2 * static_cast<int>(activity * sizes[l + 1] / 2));
    config.layers.push_back(c);
  }
  return config;
}

std::vector<int> paper_deep_model(int hidden_layers, int width) {
  std::vector<int> sizes{700};
  for (int i = 0; i < hidden_layers; ++i) sizes.push_back(width);
  sizes.push_back(20);
  return sizes;
}

void expect_invariants(const ipu::Plan& plan, const StackConfig& config) {
  const ipu::Target& t = plan.target;
  int next_tile = 0, ipu = 0;
  for (size_t l = 0; l < plan.layers.size(); ++l) {
    const ipu::LayerPlacement& p = plan.layers[l];
    SCOPED_TRACE("layer " + std::to_string(l));
    const int n = config.layers[l].n_out;
    // in order, consecutive, on one IPU, moving to the next IPU only when this one is full
    if (p.ipu != ipu) {
      EXPECT_EQ(p.ipu, ipu + 1);
      EXPECT_GT(next_tile + p.tiles, (ipu + 1) * t.tiles_per_ipu);
      ipu = p.ipu;
      next_tile = ipu * t.tiles_per_ipu;
    }
    EXPECT_EQ(p.first_tile, next_tile);
    EXPECT_LE(p.first_tile + p.tiles, (p.ipu + 1) * t.tiles_per_ipu);
    next_tile += p.tiles;
    // every neuron on exactly one tile, contiguous even slices, only the last tile shorter
    std::vector<int> owner(n, 0);
    for (int g = p.first_tile; g < p.first_tile + p.tiles; ++g) {
      const ipu::Plan::TileSlice s = plan.tile(g);
      ASSERT_EQ(s.layer, static_cast<int>(l));
      ASSERT_GT(s.end, s.begin);
      if (g + 1 < p.first_tile + p.tiles) {
        EXPECT_EQ(s.end - s.begin, p.neurons_per_tile);
        EXPECT_EQ(p.neurons_per_tile % 2, 0);
      }
      for (int j = s.begin; j < s.end; ++j) ++owner[j];
    }
    for (int j = 0; j < n; ++j) ASSERT_EQ(owner[j], 1) << "neuron " << j;
    EXPECT_LE(p.memory.total(), t.bytes_per_tile - t.reserved_bytes_per_tile);
    EXPECT_GT(p.exchange_forward, 0);
    EXPECT_GT(p.cycles_forward, 0);
  }
  int tiles = 0;
  for (const ipu::LayerPlacement& p : plan.layers) tiles += p.tiles;
  EXPECT_EQ(plan.tiles_used, tiles);
  EXPECT_EQ(plan.tile(next_tile).layer, -1);
  EXPECT_LE(plan.max_tile_bytes, t.bytes_per_tile - t.reserved_bytes_per_tile);
  EXPECT_LE(plan.mean_tile_bytes, static_cast<double>(plan.max_tile_bytes));
}

ipu::PlanOptions paper_options() {
  ipu::PlanOptions o;  // docs/method.md, section 7: batch 24, T = 10, SGD, input capacity 48 (SHD)
  o.T = 10;
  o.B = 24;
  o.input_capacity = 48;
  o.optimizer_slots = 0;
  return o;
}

std::string plan_error(const StackConfig& config, const ipu::PlanOptions& o, const ipu::Target& t) {
  try {
    ipu::plan_stack(config, o, t);
  } catch (const Error& e) {
    return e.what();
  }
  return "no error";
}

TEST(IpuPlan, ShdPaperModelFitsOneIpuAtTwoNeuronsPerTile) {
  const StackConfig config = stack({700, 974, 974, 974, 20});
  const ipu::Plan plan = ipu::plan_stack(config, paper_options());
  EXPECT_EQ(plan.neurons_per_tile, 2);
  EXPECT_EQ(plan.ipus_used, 1);
  EXPECT_EQ(plan.tiles_used, 3 * 487 + 10);                       // 1471 of 1472 tiles
  EXPECT_EQ(plan.weights, 700 * 974 + 2 * 974 * 974 + 974 * 20);  // 2.6 M
  expect_invariants(plan, config);
  const std::string text = ipu::summary(plan);
  EXPECT_NE(text.find("2 neurons per tile, 1471 tiles on 1 IPU"), std::string::npos) << text;
  EXPECT_NE(text.find("assumptions"), std::string::npos);
}

TEST(IpuPlan, FortyEightHiddenLayersArePlacedAcrossTwoIpus) {
  const StackConfig config = stack(paper_deep_model(48, 976));
  ipu::Target two;
  two.ipus = 2;
  const ipu::Plan plan = ipu::plan_stack(config, paper_options(), two);
  EXPECT_EQ(plan.neurons_per_tile, 16);  // fewer neurons per tile need more than 2 x 1472 tiles
  EXPECT_EQ(plan.ipus_used, 2);
  EXPECT_EQ(plan.tiles_used, 48 * 61 + 2);
  EXPECT_NEAR(plan.weights / 1e6, 45.5, 0.1);
  EXPECT_EQ(plan.layers[23].ipu, 0);  // 24 layers of 61 tiles fill IPU 0 ...
  EXPECT_EQ(plan.layers[24].ipu, 1);  // ... and the 25th starts IPU 1
  EXPECT_EQ(plan.layers[24].first_tile, 1472);
  EXPECT_GT(plan.cross_ipu_bytes_per_step, 0);
  expect_invariants(plan, config);
  // the same model on one IPU fails, naming the layer that no longer fits
  const std::string one = plan_error(config, paper_options(), ipu::Target{});
  EXPECT_NE(one.find("[ipu_plan]"), std::string::npos) << one;
  EXPECT_NE(one.find("at 16, layer 24 (976 neurons) needs 61 tiles"), std::string::npos) << one;
  // with Adam's two moments per weight it still fits; T = 100 steps of input lists do not
  ipu::PlanOptions adam = paper_options();
  adam.optimizer_slots = 2;
  EXPECT_GT(ipu::plan_stack(config, adam, two).max_tile_bytes, plan.max_tile_bytes);
  ipu::PlanOptions long_run = paper_options();
  long_run.T = 100;
  const std::string memory = plan_error(config, long_run, two);
  EXPECT_NE(memory.find("at 16, layer 0, tile 0 (neurons 0-15) needs"), std::string::npos)
      << memory;
  EXPECT_NE(memory.find("more than the 592.0 KiB a tile offers"), std::string::npos) << memory;
}

TEST(IpuPlan, DelayedCouplingRunsLayersConcurrently) {
  StackConfig config = stack({700, 974, 974, 974, 20});
  const double same = ipu::plan_stack(config, paper_options()).cycles_per_step;
  config.coupling = Coupling::delayed;
  const double delayed = ipu::plan_stack(config, paper_options()).cycles_per_step;
  EXPECT_LT(delayed, same / 2);
}

TEST(IpuPlan, RecurrentLayersAndRecomputeChangeTileMemory) {
  const ipu::PlanOptions o = paper_options();
  const StackConfig ff = stack({700, 512, 512, 20});
  const StackConfig rec = stack({700, 512, 512, 20}, 0.05, true);
  const ipu::Plan a = ipu::plan_stack(ff, o), b = ipu::plan_stack(rec, o);
  EXPECT_EQ(b.weights - a.weights, 2 * 512 * 512);
  EXPECT_GT(b.layers[1].memory.weights, a.layers[1].memory.weights);
  expect_invariants(b, rec);
  ipu::PlanOptions long_run = o;
  long_run.T = 100;  // (T = 1000 does not fit: the input lists alone need 4.7 MB per tile)
  StackConfig recompute = ff;
  recompute.recompute_segment = 7;  // 2 x 7 + 15 = 29 membrane rows instead of 100
  EXPECT_EQ(ipu::plan_stack(recompute, long_run).layers[1].memory.membranes * 100,
            ipu::plan_stack(ff, long_run).layers[1].memory.membranes * 29);
}

TEST(IpuPlan, OddWidthsAndExplicitNeuronsPerTile) {
  const StackConfig config = stack({100, 37, 9});
  ipu::PlanOptions o = paper_options();
  o.neurons_per_tile = 6;
  const ipu::Plan plan = ipu::plan_stack(config, o);
  EXPECT_EQ(plan.neurons_per_tile, 6);
  EXPECT_EQ(plan.layers[0].tiles, 7);  // 6 x 6 + 1
  EXPECT_EQ(plan.layers[1].tiles, 2);  // 6 + 3
  expect_invariants(plan, config);
}

TEST(IpuPlan, ModelsThatDoNotFitFailClearly) {
  const ipu::PlanOptions o = paper_options();
  const std::string wide = plan_error(stack({700, 40000, 20}), o, ipu::Target{});
  EXPECT_NE(wide.find("fits at no even number of neurons per tile"), std::string::npos) << wide;
  EXPECT_NE(wide.find("layer 0 (40000 neurons) needs 2500 tiles at 16 neurons per tile, more than "
                      "an IPU's 1472"),
            std::string::npos)
      << wide;
  ipu::PlanOptions bad = o;
  bad.neurons_per_tile = 3;
  EXPECT_NE(plan_error(stack({10, 10}), bad, ipu::Target{}).find("must be 0 (automatic) or even"),
            std::string::npos);
  ipu::Target tiny;
  tiny.bytes_per_tile = 16 * 1024;
  EXPECT_NE(plan_error(stack({10, 10}), o, tiny).find("more bytes per tile than reserved"),
            std::string::npos);
  StackConfig broken = stack({10, 12, 4});
  broken.layers[1].n_in = 11;
  EXPECT_NE(plan_error(broken, o, ipu::Target{}).find("layer 1 expects 11 inputs"),
            std::string::npos);
}

}  // namespace
