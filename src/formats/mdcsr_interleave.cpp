#include "formats/mdcsr_interleave.h"

#include "pdvm/status.h"
#include "formats/mdcsr.h"

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
  // entry e of the run goes to chunk e % m, at place e / m
  for (int e = m; e < m * kMdCsrChunk; ++e) {
    const int32_t gap = col[e] - col[e - m];
    PDVM_ASSERT(gap >= 0);
    if (gap > 255) return false;
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

}  // namespace pdvm::formats
