// Reads fuzzer bytes as small sizes and typed arrays; what runs out reads as zeros.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

namespace saltatory::fuzz {

class Input {
 public:
  Input(const uint8_t* data, size_t size) : data_(data), size_(size) {}
  template <class T>
  T take() {
    T value{};
    const size_t n = size_ - used_ < sizeof(T) ? size_ - used_ : sizeof(T);
    std::memcpy(&value, data_ + used_, n);
    used_ += n;
    return value;
  }
  /// A size in [0, limit].
  int size(int limit) { return static_cast<int>(take<uint8_t>() % (limit + 1)); }
  template <class T>
  std::vector<T> array(size_t n) {
    std::vector<T> out(n);
    for (T& x : out) x = take<T>();
    return out;
  }

 private:
  const uint8_t* data_;
  size_t size_, used_ = 0;
};

}  // namespace saltatory::fuzz
