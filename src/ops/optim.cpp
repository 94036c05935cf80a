// SGD (momentum, L2) and Adam/AdamW updates over flat float parameters, in place.
#include "saltatory/ops/optim.hpp"

#include <cmath>

#include "saltatory/core/error.hpp"

namespace saltatory {

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
  for (size_t i = 0; i < params.size(); ++i)
    for (int64_t j = 0; j < params[i].size; ++j)
      check(std::isfinite(params[i].grad[j]), op, "gradient of parameter ", i, " at ", j,
            " is not finite");
  ++steps_;
}

Sgd::Sgd(float lr_, float momentum_, float weight_decay_)
    : momentum(momentum_), weight_decay(weight_decay_) {
  check(lr_ > 0 && momentum_ >= 0 && weight_decay_ >= 0, "SGD",
        "lr must be positive and momentum, weight_decay non-negative");
  lr = lr_;
}

void Sgd::step(const std::vector<ParamRef>& params) {
  prepare(params, 1, "SGD.step");
  for (size_t i = 0; i < params.size(); ++i) {
    float* velocity = state_[i].data();
    for (int64_t j = 0; j < params[i].size; ++j) {
      const float g = params[i].grad[j] + weight_decay * params[i].value[j];
      velocity[j] = momentum * velocity[j] + g;
      params[i].value[j] -= lr * velocity[j];
    }
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
  for (size_t i = 0; i < params.size(); ++i) {
    float* m = state_[2 * i].data();
    float* v = state_[2 * i + 1].data();
    float* p = params[i].value;
    for (int64_t j = 0; j < params[i].size; ++j) {
      float g = params[i].grad[j];
      if (decoupled)
        p[j] -= lr * weight_decay * p[j];
      else
        g += weight_decay * p[j];
      m[j] = beta1 * m[j] + (1.0f - beta1) * g;
      v[j] = beta2 * v[j] + (1.0f - beta2) * g * g;
      p[j] -= step_size * m[j] / (std::sqrt(v[j]) / root_c2 + eps);
    }
  }
}

}  // namespace saltatory
