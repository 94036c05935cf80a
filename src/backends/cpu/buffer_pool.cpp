// The buffer pool: a mutex-guarded list of free buffers, never destroyed (contexts may outlive
// static destruction, e.g. in an exiting Python interpreter).
#include "backends/cpu/buffer_pool.hpp"

#include <mutex>
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
  delete[] data;
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
  return Buffer(new float[n], BufferReturn{n});
}

}  // namespace saltatory::cpu
