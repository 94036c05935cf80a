// Google Benchmark microbenchmarks of the shared per-row kernels on SHD-sized rows (974 columns,
// lists of 48 ids over 974 inputs): the forward gather, the input-gradient gather-dot, the
// weight-gradient row scatter, state-gradient accumulation and two-threshold selection.
// Bytes processed count the weight rows each call reads (and, for the scatter, writes).
#include <benchmark/benchmark.h>

#include <algorithm>
#include <numeric>
#include <random>
#include <vector>

#include "saltatory/kernels/select.hpp"
#include "saltatory/kernels/sparse.hpp"

namespace k = saltatory::kernels;

namespace {

constexpr int kRows = 974;

struct Rows {
  std::vector<float> w, out;
  std::vector<int32_t> ids;
  int cols, n;
  Rows(int cols_, int n_) : w(static_cast<size_t>(kRows) * cols_), out(cols_), cols(cols_), n(n_) {
    std::mt19937 rng(7);
    std::uniform_real_distribution<float> u(-1.0f, 1.0f);
    for (float& x : w) x = u(rng);
    for (float& x : out) x = u(rng);
    std::vector<int32_t> all(kRows);
    std::iota(all.begin(), all.end(), 0);
    std::shuffle(all.begin(), all.end(), rng);
    ids.assign(all.begin(), all.begin() + n);
    std::sort(ids.begin(), ids.end());
  }
  void count(benchmark::State& state, int passes) const {
    state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(n) * cols * 4 * passes);
  }
};

void GatherRows(benchmark::State& state) {
  Rows r(state.range(0), state.range(1));
  for (auto _ : state) {
    k::gather_rows(r.out.data(), r.w.data(), r.cols, r.ids.data(), r.n, r.cols);
    benchmark::DoNotOptimize(r.out.data());
  }
  r.count(state, 1);
}
BENCHMARK(GatherRows)->ArgsProduct({{974, 4096}, {10, 48}});

void DotRows(benchmark::State& state) {
  Rows r(state.range(0), state.range(1));
  std::vector<float> gs(r.n);
  for (auto _ : state) {
    k::dot_rows(gs.data(), r.w.data(), r.cols, r.ids.data(), r.n, r.out.data(), r.cols);
    benchmark::DoNotOptimize(gs.data());
  }
  r.count(state, 1);
}
BENCHMARK(DotRows)->ArgsProduct({{974, 4096}, {10, 48}});

void ScatterRows(benchmark::State& state) {
  Rows r(state.range(0), state.range(1));
  for (auto _ : state) {
    for (int i = 0; i < r.n; ++i)
      k::add_row(r.w.data() + static_cast<int64_t>(r.ids[i]) * r.cols, r.out.data(), r.cols);
    benchmark::DoNotOptimize(r.w.data());
  }
  r.count(state, 2);
}
BENCHMARK(ScatterRows)->ArgsProduct({{974, 4096}, {10, 48}});

void SelectTwoThreshold(benchmark::State& state) {
  const int n = state.range(0), capacity = state.range(1);
  const auto policy = static_cast<k::OverflowPolicy>(state.range(2));
  std::vector<float> v(n);
  std::mt19937 rng(3);
  std::normal_distribution<float> normal(0.0f, 0.6f);  // about 5 % above theta1 = 1
  for (float& x : v) x = normal(rng);
  std::vector<int32_t> ids(capacity);
  std::vector<uint64_t> priority(capacity);
  std::vector<int32_t> found(2 * n);
  const std::vector<float> theta1(n, 1.0f);
  for (auto _ : state) {
    auto counts = k::select_two_threshold(v.data(), n, theta1.data(), 0.9f, capacity, policy, 42,
                                          ids.data(), found.data(), priority.data());
    benchmark::DoNotOptimize(counts);
  }
  state.SetItemsProcessed(state.iterations() * n);
}
BENCHMARK(SelectTwoThreshold)->ArgsProduct({{974, 8192}, {48, 16}, {0, 1}});

void AccumulateStateGrad(benchmark::State& state) {
  Rows r(kRows, state.range(0));
  std::vector<float> gv(kRows), v(kRows, 0.95f), gs(r.n, 0.1f);
  for (auto _ : state) {
    k::accumulate_state_grad(gv.data(), v.data(), r.ids.data(), gs.data(), r.n, 1.0f,
                             k::Surrogate::super_spike, 10.0f);
    benchmark::DoNotOptimize(gv.data());
  }
  state.SetItemsProcessed(state.iterations() * r.n);
}
BENCHMARK(AccumulateStateGrad)->Arg(48);

}  // namespace

namespace {

// The forward phase-1 access pattern: 256 lists of 48 random rows each, gathered from one column
// block (arg: its width) of a 974 x 974 matrix.
void GatherColumnBlock(benchmark::State& state) {
  const int width = state.range(0), stride = kRows, lists = 256, n = 48;
  std::vector<float> w(static_cast<size_t>(kRows) * stride, 0.5f), out(width * lists);
  std::vector<int32_t> ids(static_cast<size_t>(lists) * n);
  std::mt19937 rng(5);
  std::vector<int32_t> all(kRows);
  std::iota(all.begin(), all.end(), 0);
  for (int l = 0; l < lists; ++l) {
    std::shuffle(all.begin(), all.end(), rng);
    std::sort(all.begin(), all.begin() + n);
    std::copy_n(all.begin(), n, ids.begin() + l * n);
  }
  for (auto _ : state) {
    for (int l = 0; l < lists; ++l)
      k::gather_rows(out.data() + l * width, w.data(), stride, ids.data() + l * n, n, width);
    benchmark::DoNotOptimize(out.data());
  }
  state.SetBytesProcessed(state.iterations() * int64_t{lists} * n * width * 4);
}
BENCHMARK(GatherColumnBlock)->Arg(64)->Arg(128)->Arg(256)->Arg(974);

}  // namespace
