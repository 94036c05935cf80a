// Mock of the Poplar SDK declarations Saltatory uses, for compile checks only; not the SDK.
#pragma once

#include <initializer_list>
#include <string>
#include <utility>

namespace poplar {

/// String options for graph compilation, engines and devices.
class OptionFlags {
 public:
  using OptionFlag = std::pair<const std::string, std::string>;
  OptionFlags();
  OptionFlags(std::initializer_list<OptionFlag> initList);
};

}  // namespace poplar
