#include "core/thread_pool.h"

#include <algorithm>

#if defined(__x86_64__)
#include <immintrin.h>
#define PDVM_PAUSE() _mm_pause()
#else
#define PDVM_PAUSE() std::this_thread::yield()
#endif

namespace pdvm::core {
namespace {
// About 50-100 us of spinning before a worker sleeps: longer than the gap between the ops of a
// decode step, much shorter than a human-visible pause.
constexpr int kSpinIterations = 1 << 15;
// About 10 us: a worker that has not finished by then is probably not running.
constexpr int kCallerSpinIterations = 1 << 12;
}  // namespace

ThreadPool::ThreadPool(int n_threads) {
  if (n_threads <= 0) n_threads = int(std::max(1u, std::thread::hardware_concurrency()));
  n_threads_ = n_threads;
  for (int i = 1; i < n_threads_; ++i) threads_.emplace_back([this, i] { worker(i); });
}

ThreadPool::~ThreadPool() {
  stop_.store(true, std::memory_order_release);
  generation_.fetch_add(1, std::memory_order_acq_rel);
  generation_.notify_all();
  for (auto& t : threads_) t.join();
}

void ThreadPool::run_impl(Trampoline fn, void* ctx) {
  job_fn_ = fn;
  job_ctx_ = ctx;
  pending_.store(n_threads_ - 1, std::memory_order_relaxed);
  // release: workers that see the new generation also see job_fn_/job_ctx_/pending_.
  generation_.fetch_add(1, std::memory_order_acq_rel);
  generation_.notify_all();
  fn(ctx, 0, n_threads_);
  // acquire: everything the workers wrote is visible once pending_ reaches 0. If a worker is
  // descheduled (a busy machine), spinning would burn our whole time slice: yield after a while.
  for (int i = 0; pending_.load(std::memory_order_acquire) != 0; ++i) {
    if (i < kCallerSpinIterations) PDVM_PAUSE();
    else std::this_thread::yield();
  }
}

void ThreadPool::worker(int index) {
  uint32_t seen = 0;
  for (;;) {
    uint32_t g = generation_.load(std::memory_order_acquire);
    for (int i = 0; g == seen && i < kSpinIterations; ++i) {
      PDVM_PAUSE();
      g = generation_.load(std::memory_order_acquire);
    }
    while (g == seen) {
      generation_.wait(seen, std::memory_order_acquire);
      g = generation_.load(std::memory_order_acquire);
    }
    seen = g;
    if (stop_.load(std::memory_order_acquire)) return;
    job_fn_(job_ctx_, index, n_threads_);
    pending_.fetch_sub(1, std::memory_order_release);
  }
}

}  // namespace pdvm::core
