// Entry points of the optional backends. Each is defined either by the real backend or by its
// stub (no_cuda.cpp, no_ipu.cpp), chosen by CMake.
#pragma once

#include "saltatory/backend/backend.hpp"

namespace saltatory {

bool cuda_backend_built();
bool cuda_device_present();
/// The CUDA backend; throws Error naming the reason when unavailable.
Backend& cuda_backend();

bool poplar_backend_built();
bool ipu_model_built();
bool ipu_device_present();
/// The IPU backend for `device` (ipu_model or ipu); throws Error when unavailable.
Backend& ipu_backend(Device device);

}  // namespace saltatory
