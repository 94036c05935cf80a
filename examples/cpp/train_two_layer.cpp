// Trains a two-layer spiking network (LIF 40 -> 64, leaky readout 64 -> 4) on random spikes and
// random labels for 20 Adam steps with the C++ API. Exits 0 if the loss went down.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <random>
#include <vector>

#include "saltatory/saltatory.hpp"

namespace sl = saltatory;

int main() {
  const int T = 20, B = 8, N = 40, H = 64, C = 4;
  std::mt19937 rng(1234);

  // Input: a Bernoulli(0.2) spike pattern [T, B, N], stored as spike lists of capacity N.
  std::bernoulli_distribution fire(0.2);
  std::vector<float> dense(static_cast<size_t>(T) * B * N);
  for (float& x : dense) x = fire(rng) ? 1.0f : 0.0f;
  const sl::SpikeTensor input = sl::SpikeTensor::from_dense(dense.data(), T, B, N, /*K=*/N);

  std::uniform_int_distribution<int32_t> label(0, C - 1);
  std::vector<int32_t> labels(B);
  for (int32_t& y : labels) y = label(rng);

  // The stack: a LIF layer keeping at most 16 entries per list, then a readout.
  sl::StackConfig config;
  sl::LayerConfig hidden;
  hidden.kind = sl::LayerKind::lif;
  hidden.n_in = N;
  hidden.n_out = H;
  hidden.capacity = 16;
  sl::LayerConfig readout;
  readout.kind = sl::LayerKind::readout;
  readout.n_in = H;
  readout.n_out = C;
  config.layers = {hidden, readout};

  // Parameters: weights U(-a, a) + 0.001 with a = 2 sqrt(6 / n_in), alpha = 0.95.
  auto init = [&](int n_in, int n_out) {
    const float a = 2.0f * std::sqrt(6.0f / n_in);
    std::uniform_real_distribution<float> u(-a, a);
    std::vector<float> w(static_cast<size_t>(n_in) * n_out);
    for (float& x : w) x = u(rng) + 0.001f;
    return w;
  };
  std::vector<float> w0 = init(N, H), w1 = init(H, C);
  const std::vector<float> alpha0(H, 0.95f), alpha1(C, 0.95f);
  const std::vector<sl::LayerParams> params = {{.weight = w0.data(), .alpha = alpha0.data()},
                                               {.weight = w1.data(), .alpha = alpha1.data()}};

  std::vector<float> g0(w0.size()), g1(w1.size());
  const std::vector<sl::LayerGrads> grads = {{.weight = g0.data()}, {.weight = g1.data()}};
  std::vector<float> grad_readout(static_cast<size_t>(T) * B * C);
  sl::Adam adam(/*lr=*/1e-2f);

  float first = 0.0f, loss = 0.0f;
  for (int step = 0; step < 20; ++step) {
    auto context = sl::lif_stack_forward(config, params, input.view());
    loss = sl::membrane_cross_entropy(context->readout.data(), T, B, C, labels.data(),
                                      grad_readout.data());
    if (step == 0) first = loss;
    if (step % 5 == 0) std::printf("step %2d  loss %.4f\n", step, loss);

    // Backward adds into the gradient buffers, so zero them first. Only the readout has a loss.
    std::fill(g0.begin(), g0.end(), 0.0f);
    std::fill(g1.begin(), g1.end(), 0.0f);
    sl::lif_stack_backward(*context, {nullptr, grad_readout.data()}, grads);
    adam.step({{w0.data(), g0.data(), static_cast<int64_t>(w0.size())},
               {w1.data(), g1.data(), static_cast<int64_t>(w1.size())}});
  }
  // The loss after the last update (no gradient needed).
  auto context = sl::lif_stack_forward(config, params, input.view());
  loss = sl::membrane_cross_entropy(context->readout.data(), T, B, C, labels.data(), nullptr);
  std::printf("first loss %.4f, final loss %.4f: %s\n", first, loss,
              loss < first ? "decreased" : "did NOT decrease");
  return loss < first ? 0 : 1;
}
