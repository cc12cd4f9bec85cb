// measure_read_bandwidth: the read-only streaming ceiling, summed with the widest vector loads the
// build has so the loop is bound by memory, not by instructions.
#include "cpu/read_bandwidth.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>

// GCC 12.2 -O3 reports -Wmaybe-uninitialized inside its own AVX-512 intrinsic headers (the
// _mm512_undefined_* placeholders, GCC PR 105593); silence it for those headers only.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif
#if defined(__AVX512F__) || defined(__AVX2__)
#include <immintrin.h>
#endif
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

#include "pdvm/status.h"

namespace pdvm::cpu {
namespace {

// Sums n_bytes (a multiple of 256) at p; returns something that depends on every byte so the
// compiler cannot drop the loads.
uint64_t sum_bytes(const uint8_t* p, size_t n_bytes) {
#if defined(__AVX512F__)
  __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0;
  for (size_t i = 0; i < n_bytes; i += 256) {
    a0 = _mm512_add_epi64(a0, _mm512_load_si512(p + i));
    a1 = _mm512_add_epi64(a1, _mm512_load_si512(p + i + 64));
    a2 = _mm512_add_epi64(a2, _mm512_load_si512(p + i + 128));
    a3 = _mm512_add_epi64(a3, _mm512_load_si512(p + i + 192));
  }
  return uint64_t(_mm512_reduce_add_epi64(
      _mm512_add_epi64(_mm512_add_epi64(a0, a1), _mm512_add_epi64(a2, a3))));
#else
  uint64_t s[4] = {0, 0, 0, 0};
  for (size_t i = 0; i < n_bytes; i += 32) {
    for (int k = 0; k < 4; ++k) {
      uint64_t v;
      std::memcpy(&v, p + i + 8 * k, 8);
      s[k] += v;
    }
  }
  return s[0] + s[1] + s[2] + s[3];
#endif
}

struct FreeDeleter { void operator()(void* p) const { std::free(p); } };

}  // namespace

ReadBandwidth measure_read_bandwidth(core::ThreadPool& pool, size_t n_bytes, int repeats) {
  constexpr size_t kUnit = 256;  // one unrolled step of sum_bytes
  const int nt = pool.size();
  n_bytes = std::max(n_bytes / (kUnit * nt) * (kUnit * nt), kUnit * nt);
  std::unique_ptr<uint8_t, FreeDeleter> buf(static_cast<uint8_t*>(std::aligned_alloc(64, n_bytes)));
  if (!buf) throw std::bad_alloc();
  const size_t share = n_bytes / size_t(nt);
  // Each thread touches its own share first (pages land where they will be read, and no
  // first-touch page faults fall inside the timed passes).
  pool.run([&](int t, int) {
    uint8_t* p = buf.get() + share * size_t(t);
    for (size_t i = 0; i < share; ++i) p[i] = uint8_t(i * 131 + size_t(t));
  });
  std::atomic<uint64_t> sink{0};
  ReadBandwidth out;
  out.n_bytes = n_bytes;
  out.threads = nt;
  out.best_ms = 1e300;
  for (int rep = 0; rep < std::max(repeats, 1); ++rep) {
    const auto t0 = std::chrono::steady_clock::now();
    pool.run([&](int t, int) {
      sink.fetch_add(sum_bytes(buf.get() + share * size_t(t), share), std::memory_order_relaxed);
    });
    const double ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    out.best_ms = std::min(out.best_ms, ms);
  }
  volatile uint64_t keep = sink.load();  // keeps the sums observable
  (void)keep;
  out.gbps = double(n_bytes) / (out.best_ms * 1e6);
  return out;
}

}  // namespace pdvm::cpu
