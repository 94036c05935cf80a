// The buffer pool: a mutex-guarded list of free buffers, never destroyed (contexts may outlive
// static destruction, e.g. in an exiting Python interpreter).
#include "backends/cpu/buffer_pool.hpp"

#include <sys/mman.h>

#include <algorithm>
#include <cstdlib>
#include <mutex>
#include <new>
#include <vector>

namespace saltatory::cpu {

namespace {

struct Pool {
  std::mutex mutex;
  std::vector<std::pair<float*, size_t>> free;  // (data, capacity)
  size_t bytes = 0;
};

Pool& pool() {
  static Pool* instance = new Pool;  // intentionally leaked, see above
  return *instance;
}

/// Memory for n floats; buffers of 2 MB or more sit on 2 MB boundaries and ask for huge pages,
/// so that the row-strided walks of the backward pass stay within the TLB.
float* allocate(size_t n) {
  constexpr size_t kHuge = size_t{2} << 20;
  const size_t bytes = std::max<size_t>(n, 1) * sizeof(float);
  void* data = nullptr;
  if (bytes >= kHuge) {
    data = std::aligned_alloc(kHuge, (bytes + kHuge - 1) / kHuge * kHuge);
#if defined(MADV_HUGEPAGE)
    if (data != nullptr) madvise(data, bytes, MADV_HUGEPAGE);
#endif
  } else {
    data = std::malloc(bytes);
  }
  if (data == nullptr) throw std::bad_alloc();
  return static_cast<float*>(data);
}

}  // namespace

void BufferReturn::operator()(float* data) const {
  Pool& p = pool();
  {
    std::lock_guard<std::mutex> lock(p.mutex);
    if (p.free.size() < kPoolBuffers && p.bytes + capacity * sizeof(float) <= kPoolBytes) {
      p.free.emplace_back(data, capacity);
      p.bytes += capacity * sizeof(float);
      return;
    }
  }
  std::free(data);
}

Buffer acquire_buffer(size_t n) {
  Pool& p = pool();
  {
    std::lock_guard<std::mutex> lock(p.mutex);
    for (auto it = p.free.begin(); it != p.free.end(); ++it) {
      if (it->second >= n && it->second <= n + n / 4) {
        const auto [data, capacity] = *it;
        p.free.erase(it);
        p.bytes -= capacity * sizeof(float);
        return Buffer(data, BufferReturn{capacity});
      }
    }
  }
  return Buffer(allocate(n), BufferReturn{n});
}

}  // namespace saltatory::cpu
