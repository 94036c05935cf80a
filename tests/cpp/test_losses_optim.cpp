// Losses against the reference and finite differences; optimisers against hand-written updates.
#include <gtest/gtest.h>

#include <cmath>
#include <memory>
#include <vector>

#include "saltatory/core/error.hpp"
#include "saltatory/ops/losses.hpp"
#include "saltatory/ops/optim.hpp"
#include "saltatory/reference/reference.hpp"

using namespace saltatory;

TEST(Losses, SpikeCountCrossEntropyMatchesReference) {
  SpikeTensor s(3, 2, 3, 4);
  const int lists[3][2][4] = {{{0, 2, 1, -1}, {3, -1, -1, -1}},  // {ids..., } per (t, b)
                              {{2, -1, -1, -1}, {1, 3, 0, -1}},
                              {{0, -1, -1, -1}, {-1, -1, -1, -1}}};
  const int n_spk[3][2] = {{2, 1}, {1, 1}, {1, 0}};
  const int n_tot[3][2] = {{3, 1}, {1, 3}, {1, 0}};
  for (int t = 0; t < 3; ++t)
    for (int b = 0; b < 2; ++b) {
      for (int k = 0; k < n_tot[t][b]; ++k) s.list(t, b)[k] = lists[t][b][k];
      s.n_spk(t, b) = n_spk[t][b];
      s.n_tot(t, b) = n_tot[t][b];
    }
  const std::vector<int32_t> labels{2, 1};
  std::vector<float> grad(3 * 2 * 3);
  const float loss = spike_count_cross_entropy(s.view(), labels.data(), grad.data());
  std::vector<double> ref_grad;
  const double ref = reference::spike_count_cross_entropy(s.view(), labels, &ref_grad);
  EXPECT_NEAR(loss, ref, 1e-6);
  for (size_t i = 0; i < grad.size(); ++i) EXPECT_NEAR(grad[i], ref_grad[i], 1e-6) << i;
  // Candidates receive the gradient of their neuron's count: entry (0, 0, 2) lists neuron 1.
  EXPECT_NE(grad[2], 0.0f);
  EXPECT_THROW(spike_count_cross_entropy(s.view(), std::vector<int32_t>{4, 0}.data(), nullptr),
               Error);
}

TEST(Losses, MembraneCrossEntropyFiniteDifferences) {
  const int T = 3, B = 2, C = 4;
  std::vector<float> v(T * B * C);
  for (size_t i = 0; i < v.size(); ++i) v[i] = std::sin(0.7 * i);
  const std::vector<int32_t> labels{3, 0};
  std::vector<float> grad(v.size());
  const float loss = membrane_cross_entropy(v.data(), T, B, C, labels.data(), grad.data());
  std::vector<double> vd(v.begin(), v.end()), ref_grad;
  EXPECT_NEAR(loss, reference::membrane_cross_entropy(vd, T, B, C, labels, &ref_grad), 1e-5);
  for (size_t i = 0; i < v.size(); ++i) {
    std::vector<double> up = vd, down = vd;
    up[i] += 1e-5;
    down[i] -= 1e-5;
    const double fd = (reference::membrane_cross_entropy(up, T, B, C, labels, nullptr) -
                       reference::membrane_cross_entropy(down, T, B, C, labels, nullptr)) /
                      2e-5;
    EXPECT_NEAR(grad[i], fd, 1e-5) << i;
  }
  v[5] = NAN;
  EXPECT_THROW(membrane_cross_entropy(v.data(), T, B, C, labels.data(), grad.data()), Error);
}

TEST(Optim, SgdWithMomentumAndWeightDecay) {
  std::vector<float> p{1.0f, -2.0f}, g{0.5f, 0.25f};
  Sgd sgd(0.1f, 0.9f, 0.01f);
  double v0 = 0, v1 = 0, p0 = 1, p1 = -2;
  for (int step = 0; step < 3; ++step) {
    sgd.step({{p.data(), g.data(), 2}});
    v0 = 0.9 * v0 + 0.5 + 0.01 * p0;
    v1 = 0.9 * v1 + 0.25 + 0.01 * p1;
    p0 -= 0.1 * v0;
    p1 -= 0.1 * v1;
  }
  EXPECT_NEAR(p[0], p0, 1e-6);
  EXPECT_NEAR(p[1], p1, 1e-6);
  EXPECT_EQ(sgd.steps(), 3);
}

TEST(Optim, AdamAndAdamWMatchTheirDefinitions) {
  for (bool decoupled : {false, true}) {
    std::vector<float> p{0.3f}, g{0.2f};
    Adam adam(0.01f, 0.9f, 0.999f, 1e-8f, 0.1f, decoupled);
    double m = 0, v = 0, x = 0.3;
    for (int t = 1; t <= 4; ++t) {
      adam.step({{p.data(), g.data(), 1}});
      double grad = 0.2;
      if (decoupled)
        x -= 0.01 * 0.1 * x;
      else
        grad += 0.1 * x;
      m = 0.9 * m + 0.1 * grad;
      v = 0.999 * v + 0.001 * grad * grad;
      x -= 0.01 * (m / (1 - std::pow(0.9, t))) / (std::sqrt(v / (1 - std::pow(0.999, t))) + 1e-8);
    }
    EXPECT_NEAR(p[0], x, 1e-6) << "decoupled=" << decoupled;
  }
}

TEST(Optim, RejectsChangedParameterListsAndNonFiniteGradients) {
  std::vector<float> p(3, 0.0f), g(3, 1.0f);
  Adam adam;
  adam.step({{p.data(), g.data(), 3}});
  EXPECT_THROW(adam.step({{p.data(), g.data(), 2}}), Error);
  EXPECT_THROW(adam.step({{p.data(), g.data(), 3}, {p.data(), g.data(), 3}}), Error);
  g[1] = NAN;
  EXPECT_THROW(adam.step({{p.data(), g.data(), 3}}), Error);
  EXPECT_THROW(Sgd(-1.0f), Error);
}

TEST(Optim, RestoredStateContinuesBitForBit) {
  // Four steps in one optimiser equal two steps, a state copy into a fresh one, and two more.
  const std::vector<float> g{0.2f, -0.7f, 1.5f};
  for (bool adam : {true, false}) {
    auto make = [&]() -> std::unique_ptr<Optimizer> {
      if (adam) return std::make_unique<Adam>(0.01f);
      return std::make_unique<Sgd>(0.1f, 0.9f);
    };
    std::vector<float> straight{0.3f, 0.1f, -1.0f}, resumed = straight;
    auto first = make(), second = make();
    for (int t = 0; t < 4; ++t) first->step({{straight.data(), g.data(), 3}});
    for (int t = 0; t < 2; ++t) second->step({{resumed.data(), g.data(), 3}});
    auto restored = make();
    restored->load_state(second->steps(), second->state());
    for (int t = 0; t < 2; ++t) restored->step({{resumed.data(), g.data(), 3}});
    EXPECT_EQ(restored->steps(), 4);
    EXPECT_EQ(straight, resumed) << (adam ? "Adam" : "SGD");
  }
  Adam adam;
  EXPECT_THROW(adam.load_state(-1, {}), Error);
  EXPECT_THROW(adam.load_state(1, {{NAN}}), Error);
  std::vector<float> p(3, 0.0f);
  adam.load_state(1, {{0.0f}, {0.0f}});  // sized for one value: the next step says so
  EXPECT_THROW(adam.step({{p.data(), g.data(), 3}}), Error);
}
