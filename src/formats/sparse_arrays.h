// SparseArrays: the owned arrays of one sparse int8 matrix (MdCSR or bitmap), as the encoders
// produce them and the native-file writer stores them; layout() views them as the
// core::SparseLayout a Matrix points at. Shared by formats/mdcsr.h and formats/bitmap_i8.h.
#pragma once

#include <cstdint>
#include <vector>

#include "core/weight.h"

namespace pdvm::formats {

struct SparseArrays {
  core::WeightType type = core::WeightType::kMdCsr;
  int64_t rows = 0, cols = 0;
  std::vector<uint32_t> row_ptr;     // [rows + 1]
  std::vector<float> row_scale;      // [rows]
  std::vector<int8_t> values;
  std::vector<uint8_t> deltas;       // MdCSR only
  std::vector<uint16_t> chunk_base;  // MdCSR only
  std::vector<uint64_t> masks;       // bitmap only
  int64_t n_nonzero = 0;

  // Views of the vectors above (valid while this object lives and is not modified).
  core::SparseLayout layout() const {
    core::SparseLayout s;
    s.row_ptr = row_ptr.data();
    s.row_scale = row_scale.data();
    s.values = values.data();
    s.deltas = deltas.empty() ? nullptr : deltas.data();
    s.chunk_base = chunk_base.empty() ? nullptr : chunk_base.data();
    s.masks = masks.empty() ? nullptr : masks.data();
    s.n_values = int64_t(values.size());
    s.n_nonzero = n_nonzero;
    s.n_bytes = row_ptr.size() * 4 + row_scale.size() * 4 + values.size() + deltas.size() +
                chunk_base.size() * 2 + masks.size() * 8;
    return s;
  }
  // A Matrix over `layout` (which must outlive it), e.g. `auto l = a.layout(); a.matrix(&l)`.
  core::Matrix matrix(const core::SparseLayout* layout) const {
    core::Matrix m;
    m.type = type;
    m.rows = rows;
    m.cols = cols;
    m.data = reinterpret_cast<const uint8_t*>(layout->row_ptr);
    m.sparse = layout;
    return m;
  }
};

}  // namespace pdvm::formats
