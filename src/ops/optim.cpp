// SGD (momentum, L2) and Adam/AdamW updates over flat float parameters, in place.
#include "saltatory/ops/optim.hpp"

#include <algorithm>
#include <atomic>
#include <cmath>

#include "backends/cpu/parallel.hpp"
#include "saltatory/core/error.hpp"

namespace saltatory {

namespace {

/// Elements per block of a parallel update: every element is updated independently, so the result
/// does not depend on the thread count.
constexpr int64_t kUpdateBlock = 1 << 14;

}  // namespace

void Optimizer::prepare(const std::vector<ParamRef>& params, int slots, const char* op) {
  if (state_.empty())
    for (const ParamRef& p : params)
      for (int s = 0; s < slots; ++s) state_.emplace_back(p.size, 0.0f);
  check(state_.size() == params.size() * slots, op, "got ", params.size(),
        " parameters, but this optimiser was created for ", state_.size() / slots);
  for (size_t i = 0; i < params.size(); ++i) {
    check(static_cast<int64_t>(state_[i * slots].size()) == params[i].size, op, "parameter ", i,
          " has ", params[i].size, " values, expected ", state_[i * slots].size());
    check(params[i].value != nullptr && params[i].grad != nullptr, op, "parameter ", i,
          " has no value or gradient");
  }
  for (size_t i = 0; i < params.size(); ++i) {  // nothing is updated if any gradient is bad
    std::atomic<int64_t> first_bad{params[i].size};
    cpu::for_each_block(params[i].size, kUpdateBlock, [&](int64_t j0, int64_t j1) {
      for (int64_t j = j0; j < j1; ++j)
        if (!std::isfinite(params[i].grad[j])) {
          int64_t seen = first_bad.load();
          while (j < seen && !first_bad.compare_exchange_weak(seen, j)) {
          }
          break;
        }
    });
    check(first_bad.load() == params[i].size, op, "gradient of parameter ", i, " at ",
          first_bad.load(), " is not finite");
  }
  ++steps_;
}

void Optimizer::load_state(int64_t steps, std::vector<std::vector<float>> state) {
  const char* op = "Optimizer.load_state";
  check(steps >= 0, op, "step count ", steps, " is negative");
  check(steps > 0 || state.empty(), op, "state given for an optimiser that has taken no step");
  for (size_t i = 0; i < state.size(); ++i)
    for (const float x : state[i])
      check(std::isfinite(x), op, "state vector ", i, " is not finite");
  state_ = std::move(state);
  steps_ = steps;
}

Sgd::Sgd(float lr_, float momentum_, float weight_decay_)
    : momentum(momentum_), weight_decay(weight_decay_) {
  check(lr_ > 0 && momentum_ >= 0 && weight_decay_ >= 0, "SGD",
        "lr must be positive and momentum, weight_decay non-negative");
  lr = lr_;
}

void Sgd::step(const std::vector<ParamRef>& params) {
  prepare(params, 1, "SGD.step");
  const float lr_ = lr, mu = momentum, wd = weight_decay;  // locals: see Adam::step
  for (size_t i = 0; i < params.size(); ++i) {
    float* __restrict velocity = state_[i].data();
    float* __restrict p = params[i].value;
    const float* __restrict grad = params[i].grad;
    cpu::for_each_block(params[i].size, kUpdateBlock, [=](int64_t j0, int64_t j1) {
      for (int64_t j = j0; j < j1; ++j) {
        const float g = grad[j] + wd * p[j];
        velocity[j] = mu * velocity[j] + g;
        p[j] -= lr_ * velocity[j];
      }
    });
  }
}

Adam::Adam(float lr_, float beta1_, float beta2_, float eps_, float weight_decay_, bool decoupled_)
    : beta1(beta1_), beta2(beta2_), eps(eps_), weight_decay(weight_decay_), decoupled(decoupled_) {
  check(lr_ > 0 && beta1_ >= 0 && beta1_ < 1 && beta2_ >= 0 && beta2_ < 1 && eps_ > 0 &&
            weight_decay_ >= 0,
        "Adam", "need lr > 0, 0 <= betas < 1, eps > 0, weight_decay >= 0");
  lr = lr_;
}

void Adam::step(const std::vector<ParamRef>& params) {
  prepare(params, 2, "Adam.step");
  const double c1 = 1.0 - std::pow(static_cast<double>(beta1), static_cast<double>(steps_));
  const double c2 = 1.0 - std::pow(static_cast<double>(beta2), static_cast<double>(steps_));
  const float step_size = static_cast<float>(lr / c1);
  const float root_c2 = static_cast<float>(std::sqrt(c2));
  // Locals (not members) in the loop, so that stores through the arrays cannot alias them.
  const float lr_ = lr, wd = weight_decay, b1 = beta1, b2 = beta2, eps_ = eps;
  const bool decoupled_ = decoupled;
  for (size_t i = 0; i < params.size(); ++i) {
    float* __restrict m = state_[2 * i].data();
    float* __restrict v = state_[2 * i + 1].data();
    float* __restrict p = params[i].value;
    const float* __restrict grad = params[i].grad;
    cpu::for_each_block(params[i].size, kUpdateBlock, [=](int64_t j0, int64_t j1) {
      for (int64_t j = j0; j < j1; ++j) {
        float g = grad[j];
        if (decoupled_)
          p[j] -= lr_ * wd * p[j];
        else
          g += wd * p[j];
        m[j] = b1 * m[j] + (1.0f - b1) * g;
        v[j] = b2 * v[j] + (1.0f - b2) * g * g;
        p[j] -= step_size * m[j] / (std::sqrt(v[j]) / root_c2 + eps_);
      }
    });
  }
}

}  // namespace saltatory
