// ThreadPool: persistent worker threads for the CPU backend's per-op parallelism. The caller is
// thread 0 and works too. Workers spin briefly between ops (a decode step issues hundreds of
// small parallel ops, and a futex wake costs more than the op), then sleep on an atomic wait so
// an idle engine uses no CPU. run() allocates nothing.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <thread>
#include <type_traits>
#include <vector>

namespace pdvm::core {

class ThreadPool {
 public:
  explicit ThreadPool(int n_threads);  // n_threads <= 0: hardware concurrency
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return n_threads_; }

  // Calls fn(thread_index, n_threads) on every thread; returns when all have returned.
  template <typename F>
  void run(F&& fn) {
    if (n_threads_ == 1) { fn(0, 1); return; }
    run_impl([](void* ctx, int t, int n) { (*static_cast<std::remove_reference_t<F>*>(ctx))(t, n); },
             const_cast<void*>(static_cast<const void*>(&fn)));
  }

  // Splits [0, n) into one contiguous range per thread, boundaries multiples of `grain`;
  // calls fn(begin, end) for each non-empty range.
  template <typename F>
  void parallel_for(int64_t n, int64_t grain, F&& fn) {
    run([&](int t, int nt) {
      const int64_t blocks = (n + grain - 1) / grain;
      const int64_t b0 = blocks * t / nt, b1 = blocks * (t + 1) / nt;
      const int64_t begin = b0 * grain, end = std::min(n, b1 * grain);
      if (begin < end) fn(begin, end);
    });
  }

 private:
  using Trampoline = void (*)(void*, int, int);
  void run_impl(Trampoline fn, void* ctx);
  void worker(int index);

  int n_threads_;
  std::vector<std::thread> threads_;
  Trampoline job_fn_ = nullptr;
  void* job_ctx_ = nullptr;
  std::atomic<uint32_t> generation_{0};  // bumped once per run(); 32-bit so atomic wait is a plain futex
  std::atomic<int> pending_{0};          // workers still running the current job
  std::atomic<bool> stop_{false};
};

}  // namespace pdvm::core
