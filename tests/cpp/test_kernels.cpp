// The shared per-element kernels: selection with capacity and overflow policies, surrogates,
// gathers/scatters. These are the index math every backend (CPU, CUDA, IPU) reuses.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <set>
#include <tuple>
#include <vector>

#include "backends/cpu/buffer_pool.hpp"
#include "backends/cpu/gemm.hpp"
#include "saltatory/kernels/lif.hpp"
#include "saltatory/kernels/select.hpp"
#include "saltatory/kernels/sparse.hpp"
#include "saltatory/kernels/surrogate.hpp"

namespace k = saltatory::kernels;

namespace {

struct Selected {
  std::vector<int32_t> ids;
  k::SelectCounts counts;
};

Selected select(const std::vector<float>& v, int capacity, k::OverflowPolicy policy,
                uint64_t stream = 7) {
  Selected s{std::vector<int32_t>(capacity, -1), {}};
  std::vector<uint64_t> priority(capacity);
  std::vector<int32_t> found(2 * v.size());
  const std::vector<float> theta1(v.size(), 1.0f);
  s.counts =
      k::select_two_threshold(v.data(), static_cast<int>(v.size()), theta1.data(), 0.9f, capacity,
                              policy, stream, s.ids.data(), found.data(), priority.data());
  return s;
}

}  // namespace

TEST(Select, SpikesThenCandidatesAscending) {
  //                       0     1     2     3     4     5     6
  const std::vector<float> v{0.95f, 1.5f, 0.2f, 1.01f, 0.91f, 1.0f, 2.0f};
  const Selected s = select(v, 7, k::OverflowPolicy::lowest_ids);
  EXPECT_EQ(s.counts.n_spk, 3);
  EXPECT_EQ(s.counts.n_tot, 6);  // 1.0 equals theta1: a candidate, not a spike
  EXPECT_EQ(s.counts.dropped.spikes, 0);
  EXPECT_EQ(std::vector<int32_t>(s.ids.begin(), s.ids.begin() + 6),
            (std::vector<int32_t>{1, 3, 6, 0, 4, 5}));
}

TEST(Select, CapacityExactlyFull) {
  const std::vector<float> v{1.5f, 0.0f, 1.2f, 0.95f};
  const Selected s = select(v, 3, k::OverflowPolicy::lowest_ids);
  EXPECT_EQ(s.counts.n_spk, 2);
  EXPECT_EQ(s.counts.n_tot, 3);
  EXPECT_EQ(s.counts.dropped.spikes, 0);
  EXPECT_EQ(s.ids, (std::vector<int32_t>{0, 2, 3}));
}

TEST(Select, SpikesHavePriorityOverCandidatesAndDropsAreCounted) {
  const std::vector<float> v{0.95f, 1.1f, 0.95f, 1.2f, 1.3f, 1.4f};
  const Selected s = select(v, 2, k::OverflowPolicy::lowest_ids);
  EXPECT_EQ(s.counts.n_spk, 2);
  EXPECT_EQ(s.counts.n_tot, 2);
  EXPECT_EQ(s.counts.dropped.spikes, 2);
  EXPECT_EQ(s.counts.dropped.candidates, 2);  // ids 0 and 2, in (0.9, 1.0]
  EXPECT_EQ(s.ids, (std::vector<int32_t>{1, 3}));
}

TEST(Select, RandomPolicyKeepsSortedSeededSubsetOfSpikes) {
  std::vector<float> v(200, 0.0f);
  for (int j = 0; j < 200; j += 2) v[j] = 1.5f;  // 100 spikes
  const Selected a = select(v, 10, k::OverflowPolicy::random, 1);
  const Selected b = select(v, 10, k::OverflowPolicy::random, 1);
  const Selected c = select(v, 10, k::OverflowPolicy::random, 2);
  EXPECT_EQ(a.counts.n_spk, 10);
  EXPECT_EQ(a.counts.dropped.spikes, 90);
  EXPECT_EQ(a.ids, b.ids);
  EXPECT_NE(a.ids, c.ids);
  EXPECT_TRUE(std::is_sorted(a.ids.begin(), a.ids.end()));
  EXPECT_EQ(std::set<int32_t>(a.ids.begin(), a.ids.end()).size(), 10u);
  for (int32_t id : a.ids) EXPECT_EQ(id % 2, 0);
  const Selected lowest = select(v, 10, k::OverflowPolicy::lowest_ids);
  EXPECT_NE(a.ids, lowest.ids);  // not biased to the lowest ids
}

TEST(Select, RandomPolicyIsUniformOverNeurons) {
  // Every spiking neuron should be kept with probability cap / spikes = 0.25 over many streams.
  std::vector<float> v(40, 1.5f);
  std::vector<int> kept(40, 0);
  const int trials = 4000;
  for (int s = 0; s < trials; ++s)
    for (int32_t id : select(v, 10, k::OverflowPolicy::random, s).ids) ++kept[id];
  for (int count : kept) EXPECT_NEAR(count / static_cast<double>(trials), 0.25, 0.03);
}

TEST(Select, RandomPolicyIndependentOfScanOrderWhenNoOverflow) {
  const std::vector<float> v{1.5f, 0.95f, 1.2f, 0.0f, 0.92f};
  const Selected r = select(v, 5, k::OverflowPolicy::random);
  const Selected l = select(v, 5, k::OverflowPolicy::lowest_ids);
  EXPECT_EQ(r.ids, l.ids);
  EXPECT_EQ(r.counts.n_tot, 4);
}

TEST(Surrogate, ShapesPeakAtThresholdAndDecay) {
  for (auto kind : {k::Surrogate::super_spike, k::Surrogate::arctan, k::Surrogate::triangle,
                    k::Surrogate::sigmoid}) {
    const float peak = k::surrogate_grad(kind, 0.0f, 10.0f);
    EXPECT_GT(peak, 0.0f);
    EXPECT_GT(peak, k::surrogate_grad(kind, 0.05f, 10.0f));
    EXPECT_FLOAT_EQ(k::surrogate_grad(kind, 0.05f, 10.0f), k::surrogate_grad(kind, -0.05f, 10.0f));
  }
  EXPECT_FLOAT_EQ(k::surrogate_grad(k::Surrogate::super_spike, 0.1f, 10.0f), 0.25f);
  EXPECT_FLOAT_EQ(k::surrogate_grad(k::Surrogate::triangle, 0.2f, 10.0f), 0.0f);
  EXPECT_FLOAT_EQ(k::surrogate_grad(k::Surrogate::sigmoid, 0.0f, 4.0f), 1.0f);
  EXPECT_NEAR(k::surrogate_grad(k::Surrogate::arctan, 0.0f, 2.0f), 1.0f, 1e-6);
}

TEST(Surrogate, SuperSpikeIsTheDerivativeOfTheFastSigmoid) {
  const auto fast_sigmoid = [](double x) { return x / (1.0 + 10.0 * std::abs(x)); };
  for (double x : {-0.3, -0.01, 0.02, 0.5}) {
    const double fd = (fast_sigmoid(x + 1e-6) - fast_sigmoid(x - 1e-6)) / 2e-6;
    EXPECT_NEAR(k::surrogate_grad(k::Surrogate::super_spike, static_cast<float>(x), 10.0f), fd,
                1e-4);
  }
}

TEST(Lif, StepAndAdjoint) {
  EXPECT_FLOAT_EQ(k::lif_step(0.5f, 0.0f, 0.9f, 10.0f, 0.2f), 0.45f + 0.2f);
  EXPECT_FLOAT_EQ(k::lif_step(1.5f, 1.0f, 0.9f, 10.0f, 0.2f), 0.2f);
  EXPECT_FLOAT_EQ(k::carry_factor(0.9f, 1.0f, k::ResetGrad::pass), 0.9f);
  EXPECT_FLOAT_EQ(k::carry_factor(0.9f, 1.0f, k::ResetGrad::mask), 0.0f);
  EXPECT_FLOAT_EQ(k::current_grad(2.0f, 0.9f, 10.0f), 2.0f);
}

TEST(Sparse, GatherScatterDotMatchDense) {
  const int n_in = 13, n_out = 11;  // not multiples of the vector width
  std::mt19937 rng(3);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::vector<float> w(n_in * n_out), g(n_out);
  for (float& x : w) x = u(rng);
  for (float& x : g) x = u(rng);
  const std::vector<int32_t> ids{0, 4, 12};
  std::vector<float> current(n_out, 0.0f);
  k::gather_rows(current.data(), w.data(), n_out, ids.data(), 3, n_out);
  for (int c = 0; c < n_out; ++c)
    EXPECT_FLOAT_EQ(current[c], w[0 * n_out + c] + w[4 * n_out + c] + w[12 * n_out + c]);
  float expected = 0.0f;
  for (int c = 0; c < n_out; ++c) expected += w[4 * n_out + c] * g[c];
  EXPECT_NEAR(k::dot_row(w.data() + 4 * n_out, g.data(), n_out), expected, 1e-6);
  std::vector<float> dense(n_in, 0.0f), gs(3);
  k::scatter_value(dense.data(), ids.data(), 3, 1.0f);
  EXPECT_EQ(std::count(dense.begin(), dense.end(), 1.0f), 3);
  k::add_gathered(gs.data(), w.data(), ids.data(), 3);
  EXPECT_EQ(gs[2], w[12]);
}

// The summation order is the kernels' contract: groups of four rows added pairwise, then a pair,
// then a single row; dot products in kDotLanes lanes. Any column slice computed alone gives the
// same bits (what CUDA relies on).
TEST(Sparse, SummationOrderIsFixedAndSliceIndependent) {
  const int n_in = 16, n_out = 21;
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::vector<float> w(n_in * n_out), g(n_out);
  for (float& x : w) x = u(rng);
  for (float& x : g) x = u(rng);
  const std::vector<int32_t> ids{1, 2, 5, 7, 9, 11, 15};
  std::vector<float> whole(n_out, 0.25f), sliced(n_out, 0.25f);
  k::gather_rows(whole.data(), w.data(), n_out, ids.data(), 7, n_out);
  for (int c = 0; c < n_out; ++c) {
    k::gather_rows(sliced.data() + c, w.data() + c, n_out, ids.data(), 7, 1);
    const auto at = [&](int i) { return w[ids[i] * n_out + c]; };
    const float expected =
        ((0.25f + ((at(0) + at(1)) + (at(2) + at(3)))) + (at(4) + at(5))) + at(6);
    EXPECT_EQ(whole[c], expected) << "column " << c;
  }
  EXPECT_EQ(whole, sliced);

  float lane[k::kDotLanes] = {};
  for (int c = 0; c < n_out; ++c) lane[c % k::kDotLanes] += w[3 * n_out + c] * g[c];
  EXPECT_EQ(k::dot_row(w.data() + 3 * n_out, g.data(), n_out), k::reduce_lanes(lane));
  std::vector<float> gs(7);
  k::dot_rows(gs.data(), w.data(), n_out, ids.data(), 7, g.data(), n_out);
  for (int i = 0; i < 7; ++i)
    EXPECT_EQ(gs[i], k::dot_row(w.data() + ids[i] * n_out, g.data(), n_out));
}

TEST(Sparse, StateGradOnlyTouchesListedNeurons) {
  const std::vector<float> v{1.2f, 0.95f, 0.1f};
  const std::vector<int32_t> ids{0, 1};
  const std::vector<float> gs{2.0f, 3.0f};
  std::vector<float> gv(3, 0.5f);
  k::accumulate_state_grad(gv.data(), v.data(), ids.data(), gs.data(), 2, 1.0f,
                           k::Surrogate::super_spike, 10.0f);
  EXPECT_FLOAT_EQ(gv[0], 0.5f + 2.0f / 9.0f);
  EXPECT_FLOAT_EQ(gv[1], 0.5f + 3.0f / 2.25f);  // x = -0.05: 1 / (0.5 + 1)^2
  EXPECT_FLOAT_EQ(gv[2], 0.5f);
}

// The CPU backend's buffer pool hands a freed buffer back out for a request it fits (capacity
// within [n, 5n/4]) and allocates anew otherwise.
TEST(BufferPool, ReusesFittingBuffers) {
  namespace cpu = saltatory::cpu;
  const size_t n = 123457;  // a size no other test uses
  float* first = nullptr;
  {
    cpu::Buffer a = cpu::acquire_buffer(n);
    first = a.get();
    a[n - 1] = 1.0f;
  }
  cpu::Buffer b = cpu::acquire_buffer(n - 1000);  // fits: n <= 5/4 (n - 1000)
  EXPECT_EQ(b.get(), first);
  EXPECT_EQ(b.get_deleter().capacity, n);
  cpu::Buffer c = cpu::acquire_buffer(n);  // the fitting buffer is in use: a new one
  EXPECT_NE(c.get(), first);
  EXPECT_EQ(c.get_deleter().capacity, n);
}

// The dense GEMM: every tile this CPU runs (AVX-512, AVX2, portable) gives each entry of C exactly
// the fma chain in k order, for every transpose, at edges of tiles and across k blocks.
TEST(DenseGemm, EveryTileGivesTheFmaChainInKOrder) {
  namespace cpu = saltatory::cpu;
  std::mt19937 rng(7);
  std::normal_distribution<float> normal;
  const std::vector<cpu::gemm_tiles::Shape> shapes = cpu::gemm_shapes();
  ASSERT_GE(shapes.size(), 1U);
  for (const auto& [m, kk, n] :
       {std::tuple{1, 1, 1}, std::tuple{13, 300, 37}, std::tuple{50, 530, 70}})
    for (bool a_t : {false, true})
      for (bool b_t : {false, true}) {
        std::vector<float> a(static_cast<size_t>(m) * kk), b(static_cast<size_t>(kk) * n),
            c0(static_cast<size_t>(m) * n);
        for (float& x : a) x = normal(rng);
        for (float& x : b) x = normal(rng);
        for (float& x : c0) x = normal(rng);
        std::vector<float> expected = c0;
        for (int i = 0; i < m; ++i)
          for (int j = 0; j < n; ++j)
            for (int p = 0; p < kk; ++p)
              expected[i * n + j] =
                  std::fma(a_t ? a[p * m + i] : a[i * kk + p], b_t ? b[j * kk + p] : b[p * n + j],
                           expected[i * n + j]);
        for (const cpu::gemm_tiles::Shape& shape : shapes) {
          std::vector<float> c = c0;
          cpu::gemm_add(shape, a.data(), a_t, b.data(), b_t, c.data(), m, kk, n);
          EXPECT_EQ(c, expected) << m << "x" << kk << "x" << n << " a_t " << a_t << " b_t " << b_t
                                 << " tile " << shape.mr << "x" << shape.nr;
        }
      }
}

// With 0/1 spikes as A, a row of C is the bias plus the selected rows of B added one after
// another, bit for bit.
TEST(DenseGemm, SpikeRowsAddTheSelectedRowsInOrder) {
  std::mt19937 rng(8);
  std::normal_distribution<float> normal;
  const int m = 7, kk = 600, n = 45;
  std::vector<float> a(m * kk), b(kk * n), c(m * n), bias(n);
  for (float& x : b) x = normal(rng);
  for (float& x : bias) x = normal(rng);
  for (float& x : a) x = rng() % 4 == 0 ? 1.0f : 0.0f;
  for (int i = 0; i < m; ++i) std::copy(bias.begin(), bias.end(), c.begin() + i * n);
  saltatory::cpu::gemm_add(a.data(), false, b.data(), false, c.data(), m, kk, n);
  for (int i = 0; i < m; ++i) {
    std::vector<float> sum = bias;
    for (int p = 0; p < kk; ++p)
      if (a[i * kk + p] != 0.0f)
        for (int j = 0; j < n; ++j) sum[j] += b[p * n + j];
    EXPECT_EQ(std::vector<float>(c.begin() + i * n, c.begin() + (i + 1) * n), sum) << "row " << i;
  }
}
