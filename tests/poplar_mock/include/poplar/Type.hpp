// Mock of the Poplar SDK declarations Saltatory uses, for compile checks only; not the SDK.
#pragma once

namespace poplar {

/// A device data type.
class Type {
 public:
  Type(const Type& other);
  Type(Type&& other) noexcept;
  Type& operator=(const Type& other);
  Type& operator=(Type&& other) noexcept;
  ~Type();
  bool operator==(const Type& other) const;
  bool operator!=(const Type& other) const;
};

// The device types (LONG, UNSIGNED_LONG and DOUBLE left out: the IPU does not support them).
extern Type BOOL;
extern Type CHAR;
extern Type UNSIGNED_CHAR;
extern Type SIGNED_CHAR;
extern Type UNSIGNED_SHORT;
extern Type SHORT;
extern Type UNSIGNED_INT;
extern Type INT;
extern Type UNSIGNED_LONGLONG;
extern Type LONGLONG;
extern Type HALF;
extern Type FLOAT;

}  // namespace poplar
