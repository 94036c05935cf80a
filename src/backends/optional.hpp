// Entry points of the optional backends. Each is defined either by the real backend or by its
// stub (no_cuda.cpp, no_poplar.cpp), chosen by CMake. The IPU model is always built.
#pragma once

#include "saltatory/backend/backend.hpp"

namespace saltatory {

bool cuda_backend_built();
bool cuda_device_present();
/// The CUDA backend; throws Error naming the reason when unavailable.
Backend& cuda_backend();

bool poplar_backend_built();
bool ipu_device_present();
/// The IPU backend on Poplar (device "ipu"); throws Error when unavailable.
Backend& poplar_backend();
/// The tile-plan interpreter (device "ipu-model"), always built.
Backend& ipu_model_backend();

}  // namespace saltatory
