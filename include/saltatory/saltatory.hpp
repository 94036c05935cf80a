// Saltatory: sparse BPTT for spiking neural networks. Umbrella header of the C++ API.
#pragma once

#include "saltatory/bench/probe.hpp"
#include "saltatory/core/device.hpp"
#include "saltatory/core/error.hpp"
#include "saltatory/core/memory.hpp"
#include "saltatory/core/spikes.hpp"
#include "saltatory/ops/lif_stack.hpp"
#include "saltatory/ops/losses.hpp"
#include "saltatory/ops/optim.hpp"
