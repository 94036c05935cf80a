// Surrogate derivatives dS/dV ~ sigma'(x), x = V - theta1, slope beta.
//   super_spike: 1 / (beta |x| + 1)^2                       (Zenke & Ganguli 2018; default, beta = 10)
//   arctan:      (beta / 2) / (1 + (pi/2 * beta * x)^2)     (snnTorch atan)
//   triangle:    max(0, 1 - beta |x|)
//   sigmoid:     beta * s * (1 - s),  s = 1 / (1 + exp(-beta x))
#pragma once

#include <cmath>

#include "saltatory/kernels/common.hpp"

namespace saltatory::kernels {

/// Surrogate derivative families.
enum class Surrogate : int { super_spike = 0, arctan = 1, triangle = 2, sigmoid = 3 };

/// sigma'(x) of the chosen surrogate with slope `beta`.
SALTATORY_HD float surrogate_grad(Surrogate kind, float x, float beta) {
  switch (kind) {
    case Surrogate::arctan: {
      const float u = 1.5707963267948966f * beta * x;
      return 0.5f * beta / (1.0f + u * u);
    }
    case Surrogate::triangle: {
      const float u = 1.0f - beta * fabsf(x);
      return u > 0.0f ? u : 0.0f;
    }
    case Surrogate::sigmoid: {
      const float s = 1.0f / (1.0f + expf(-beta * x));
      return beta * s * (1.0f - s);
    }
    case Surrogate::super_spike:
    default: {
      const float d = beta * fabsf(x) + 1.0f;
      return 1.0f / (d * d);
    }
  }
}

}  // namespace saltatory::kernels
