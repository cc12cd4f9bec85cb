#include "formats/mdcsr_interleave.h"

#include <algorithm>

#include "formats/mdcsr.h"
#include "pdvm/status.h"

namespace pdvm::formats {

bool interleave_mdcsr_run(uint8_t* chunks, uint16_t* bases, int m) {
  PDVM_ASSERT(m <= kMdCsrInterleaveMax);
  if (m < 2) return false;
  constexpr int kBytes = 2 * kMdCsrChunk;  // a device chunk: values, then deltas
  int32_t col[kMdCsrInterleaveMax * kMdCsrChunk];
  int8_t val[kMdCsrInterleaveMax * kMdCsrChunk];
  for (int c = 0; c < m; ++c) {
    int32_t x = bases[c];
    for (int i = 0; i < kMdCsrChunk; ++i) {
      x += chunks[c * kBytes + kMdCsrChunk + i];
      col[c * kMdCsrChunk + i] = x;
      val[c * kMdCsrChunk + i] = int8_t(chunks[c * kBytes + i]);
    }
  }
  // entry e of the run goes to chunk e % m, at place e / m; its delta is col[e] - col[e - m]
  for (int e = m; e < m * kMdCsrChunk; ++e) {
    const int32_t gap = col[e] - col[e - m];
    if (gap < 0 || gap > 255) return false;
  }
  for (int c = 0; c < m; ++c) {
    uint8_t* dst = chunks + c * kBytes;
    bases[c] = uint16_t(col[c]);
    for (int i = 0; i < kMdCsrChunk; ++i) {
      const int e = i * m + c;
      dst[i] = uint8_t(val[e]);
      dst[kMdCsrChunk + i] = uint8_t(i == 0 ? 0 : col[e] - col[e - m]);
    }
  }
  return true;
}

int interleave_mdcsr_row(uint8_t* chunks, uint16_t* bases, const uint32_t* ptr, int64_t r,
                         int rows_per_group) {
  constexpr uint32_t kRun = kMdCsrInterleaveMax;
  const uint32_t b0 = ptr[r - r % rows_per_group], p = ptr[r], q = ptr[r + 1];
  int dealt = 0;
  for (uint32_t s = b0 + (p - b0) / kRun * kRun; s < q; s += kRun) {
    const uint32_t a = std::max(p, s), e = std::min(q, s + kRun);
    dealt += interleave_mdcsr_run(chunks + size_t(a) * 2 * kMdCsrChunk, bases + a, int(e - a));
  }
  return dealt;
}

}  // namespace pdvm::formats
