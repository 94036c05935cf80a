// Mock of the Poplar SDK declarations Saltatory uses, for compile checks only; not the SDK.
#pragma once

namespace poplar {

enum class TargetType { IPU, IPU_MODEL, CPU };

}  // namespace poplar
