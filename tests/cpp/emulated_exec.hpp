// An executor for the CUDA backend's driver (src/backends/cuda/stack.hpp) that runs on the CPU:
// every thread block is kThreads std::threads meeting at a std::barrier for each sync, with the
// block scan done through shared slots, and element kernels visit their indices in reverse order.
// It runs the kernels' index math, block synchronisation and executor protocol without a GPU, so
// tests can hold them bitwise to the CPU backend (and TSan can look for missing syncs).
#pragma once

#include <algorithm>
#include <barrier>
#include <cstring>
#include <numeric>
#include <thread>
#include <vector>

namespace saltatory::test_support {

class EmulatedExec {
 public:
  static constexpr int kThreads = 5;  // not a power of two: odd strides and partial tiles

  class Block {
   public:
    Block(int rank, std::barrier<>& barrier, std::vector<int>& slots)
        : rank_(rank), barrier_(barrier), slots_(slots) {}
    int rank() const { return rank_; }
    int size() const { return kThreads; }
    void sync() { barrier_.arrive_and_wait(); }
    int exclusive_sum(int x, int& total) {
      slots_[rank_] = x;
      sync();
      const int before = std::accumulate(slots_.begin(), slots_.begin() + rank_, 0);
      total = std::accumulate(slots_.begin(), slots_.end(), 0);
      sync();
      return before;
    }

   private:
    int rank_;
    std::barrier<>& barrier_;
    std::vector<int>& slots_;
  };

  template <class T>
  class Array {
   public:
    Array() = default;
    explicit Array(size_t n) : data_(n) {}
    T* data() const { return const_cast<T*>(data_.data()); }
    size_t size() const { return data_.size(); }

   private:
    std::vector<T> data_;
  };

  template <class T>
  void upload(T* dst, const T* src, int64_t n) {
    std::copy_n(src, n, dst);
  }
  template <class T>
  void download(T* dst, const T* src, int64_t n) {
    std::copy_n(src, n, dst);
  }
  void fill_bytes(void* dst, int byte, size_t bytes) { std::memset(dst, byte, bytes); }

  template <class F>
  void blocks(int grid, F f) {
    for (int b = grid; b-- > 0;) {
      std::barrier<> barrier(kThreads);
      std::vector<int> slots(kThreads);
      std::vector<std::thread> threads;
      for (int r = 0; r < kThreads; ++r)
        threads.emplace_back([&, r] {
          Block blk(r, barrier, slots);
          f(blk, b);
        });
      for (std::thread& t : threads) t.join();
    }
  }
  template <class F>
  void for_each(int64_t n, F f) {
    for (int64_t i = n; i-- > 0;) f(i);
  }
  int64_t exclusive_sum(const int64_t* in, int64_t* out, int64_t n) {
    int64_t sum = 0;
    for (int64_t i = 0; i < n; ++i) {
      out[i] = sum;
      sum += in[i];
    }
    return sum;
  }
  void sort_pairs(int64_t* keys, int32_t* values, int64_t n, int bits) {
    std::vector<int64_t> order(n);
    std::iota(order.begin(), order.end(), 0);
    const int64_t mask = bits >= 63 ? -1 : (int64_t{1} << bits) - 1;
    std::stable_sort(order.begin(), order.end(),
                     [&](int64_t a, int64_t b) { return (keys[a] & mask) < (keys[b] & mask); });
    std::vector<int64_t> k(n);
    std::vector<int32_t> v(n);
    for (int64_t i = 0; i < n; ++i) {
      k[i] = keys[order[i]];
      v[i] = values[order[i]];
    }
    std::copy(k.begin(), k.end(), keys);
    std::copy(v.begin(), v.end(), values);
  }
  /// C[m, n] += op(A) op(B), row-major, accumulated in double per element.
  void gemm_add(const float* a, bool a_transposed, const float* b, bool b_transposed, float* c,
                int64_t m, int64_t k, int64_t n) {
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) {
        double sum = 0;
        for (int64_t p = 0; p < k; ++p)
          sum += static_cast<double>(a_transposed ? a[p * m + i] : a[i * k + p]) *
                 (b_transposed ? b[j * k + p] : b[p * n + j]);
        c[i * n + j] += static_cast<float>(sum);
      }
  }
};

}  // namespace saltatory::test_support
