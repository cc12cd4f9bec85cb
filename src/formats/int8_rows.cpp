// Dense int8 rows: per-row symmetric quantization and the kI8Row layout (see int8_rows.h).
#include "formats/int8_rows.h"

#include <algorithm>
#include <cmath>
#include <cstring>

namespace pdvm::formats {

float quantize_row_i8(const float* w, int64_t cols, int8_t* q) {
  float amax = 0.0f;
  for (int64_t c = 0; c < cols; ++c) amax = std::max(amax, std::fabs(w[c]));
  if (amax == 0.0f) {
    std::fill(q, q + cols, int8_t(0));
    return 0.0f;
  }
  const float scale = amax / 127.0f;
  const float inv = 1.0f / scale;
  for (int64_t c = 0; c < cols; ++c) {
    const float v = std::nearbyint(w[c] * inv);
    q[c] = int8_t(std::clamp(v, -127.0f, 127.0f));
  }
  return scale;
}

QuantizedMatrix quantize_matrix_i8(const float* w, int64_t rows, int64_t cols) {
  QuantizedMatrix m;
  m.rows = rows;
  m.cols = cols;
  m.q.resize(size_t(rows * cols));
  m.scale.resize(size_t(rows));
  for (int64_t r = 0; r < rows; ++r)
    m.scale[size_t(r)] = quantize_row_i8(w + r * cols, cols, m.q.data() + r * cols);
  return m;
}

std::vector<uint8_t> encode_i8_rows(const QuantizedMatrix& m) {
  const size_t stride = size_t(m.cols) + 4;
  std::vector<uint8_t> out(size_t(m.rows) * stride);
  for (int64_t r = 0; r < m.rows; ++r) {
    uint8_t* row = out.data() + size_t(r) * stride;
    std::memcpy(row, &m.scale[size_t(r)], 4);
    std::memcpy(row + 4, m.q.data() + r * m.cols, size_t(m.cols));
  }
  return out;
}

Status validate_i8_rows(const uint8_t* data, size_t n_bytes, int64_t rows, int64_t cols,
                        const std::string& where) {
  if (rows < 0 || cols <= 0) return corrupt(where + ": i8_row matrix has shape [" +
                                            std::to_string(rows) + ", " + std::to_string(cols) + "]");
  const size_t stride = size_t(cols) + 4;
  if (n_bytes != size_t(rows) * stride)
    return corrupt(where + ": i8_row matrix [" + std::to_string(rows) + ", " + std::to_string(cols) +
                   "] needs " + std::to_string(size_t(rows) * stride) + " bytes, tensor has " +
                   std::to_string(n_bytes));
  for (int64_t r = 0; r < rows; ++r) {
    float s;
    std::memcpy(&s, data + size_t(r) * stride, 4);
    if (!std::isfinite(s) || s < 0.0f)
      return corrupt(where + " row " + std::to_string(r) + ": scale " + std::to_string(s) +
                     " is not finite and >= 0 (offset " + std::to_string(size_t(r) * stride) + ")");
  }
  return Status::ok();
}

}  // namespace pdvm::formats
