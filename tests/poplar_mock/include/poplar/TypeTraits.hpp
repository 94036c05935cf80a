// Mock of the Poplar SDK declarations Saltatory uses, for compile checks only; not the SDK.
#pragma once

#include <type_traits>

namespace poplar {

/// Properties of the host types that map to device types.
struct TypeTraits {
  /// True for the scalar host types Poplar accepts by value (the SDK lists them; the mock takes
  /// the arithmetic types).
  template <typename T>
  static constexpr bool isSimpleType() {
    return std::is_arithmetic_v<T>;
  }
};

}  // namespace poplar
