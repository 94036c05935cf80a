// Optimisers over flat float parameters, updated in place.
//   SGD:   v = momentum v + (g + wd p);  p -= lr v
//   Adam:  m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2;  p -= lr (m/(1-b1^t)) / (sqrt(v/(1-b2^t)) + eps)
//          weight decay: L2 added to g (Adam) or decoupled p -= lr wd p (AdamW)
#pragma once

#include <cstdint>
#include <vector>

namespace saltatory {

/// One parameter: its values and its gradient, `size` floats each.
struct ParamRef {
  float* value = nullptr;
  const float* grad = nullptr;
  int64_t size = 0;
};

/// Base class: `step` updates every parameter from its gradient. The list must keep its order
/// and sizes from step to step (optimiser state is per position).
class Optimizer {
 public:
  virtual ~Optimizer() = default;
  virtual void step(const std::vector<ParamRef>& params) = 0;
  float lr = 1e-3f;
  int64_t steps() const { return steps_; }
  /// State for checkpoints: `slots` vectors per parameter, in parameter order (SGD: velocity;
  /// Adam: m, v); empty before the first step.
  const std::vector<std::vector<float>>& state() const { return state_; }
  /// Restores `state()` and the step count of a checkpoint; the next step checks the sizes
  /// against its parameters. Non-finite values are rejected.
  void load_state(int64_t steps, std::vector<std::vector<float>> state);

 protected:
  /// Allocates or checks per-parameter state: `slots` state vectors per parameter.
  void prepare(const std::vector<ParamRef>& params, int slots, const char* op);
  std::vector<std::vector<float>> state_;
  int64_t steps_ = 0;
};

/// Stochastic gradient descent with optional momentum and L2 weight decay.
class Sgd : public Optimizer {
 public:
  explicit Sgd(float lr, float momentum = 0.0f, float weight_decay = 0.0f);
  void step(const std::vector<ParamRef>& params) override;
  float momentum, weight_decay;
};

/// Adam, or AdamW with `decoupled_weight_decay`.
class Adam : public Optimizer {
 public:
  explicit Adam(float lr = 1e-3f, float beta1 = 0.9f, float beta2 = 0.999f, float eps = 1e-8f,
                float weight_decay = 0.0f, bool decoupled_weight_decay = false);
  void step(const std::vector<ParamRef>& params) override;
  float beta1, beta2, eps, weight_decay;
  bool decoupled;
};

}  // namespace saltatory
