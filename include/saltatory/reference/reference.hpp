// Naive double-precision reference of Saltatory's ops, independent of saltatory/kernels/:
//   lif_stack.hpp  forward / backward of a LIF stack (lists, membranes, BPTT with masked surrogate)
//   losses.hpp     spike-count and membrane softmax cross-entropy with their gradients
#pragma once

#include "saltatory/reference/lif_stack.hpp"
#include "saltatory/reference/losses.hpp"
