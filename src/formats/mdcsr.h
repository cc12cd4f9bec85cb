// MdCSR ("memory-efficient delta-compressed CSR"): sparse int8 rows with 8-bit column gaps,
// stored in chunks of kMdCsrChunk entries that each carry their own base column, so any chunk
// decodes without walking the row (GPU-friendly). Encoder, validator and reference decoder:
// the format's specification in code (docs/FORMAT.md has the prose and a worked example).
//
// Chunk k (16 entries) of row r (chunks row_ptr[r] .. row_ptr[r+1]-1):
//   col[0] = chunk_base[k] + deltas[16k];  col[i] = col[i-1] + deltas[16k + i]
//   w[r][col[i]] += row_scale[r] * values[16k + i]
// Entries of value 0 are padding: they bridge gaps wider than 255 (delta 255) and fill a row's
// last chunk (delta 0). Every decoded column, padding included, is < cols.
#pragma once

#include <cstdint>
#include <string>

#include "core/weight.h"
#include "formats/int8_rows.h"
#include "formats/sparse_arrays.h"
#include "pdvm/status.h"

namespace pdvm::formats {

constexpr int kMdCsrChunk = 16;          // entries per chunk: one 16-byte vector of values
constexpr int64_t kMdCsrMaxCols = 65536;  // chunk_base is uint16

// Window groups. The CPU kernel (cpu/spmv.cpp) picks x for G consecutive chunks of a row (G = 4,
// 2 or 1, counted from the row's first chunk) out of one kMdCsrWindowCols-column window starting at
// the group's first base, G chosen from the row's mean columns per chunk; a group whose entries
// reach past the window takes a slower path after a mispredicted branch (~30% of the speed from
// DRAM at 70% sparsity, where ~6% of random pairs overflow: docs/notes-cpu-kernels.md).
constexpr int64_t kMdCsrWindowCols = 128;
inline int mdcsr_window_chunks(int64_t cols, int64_t n_chunks) {
  const int64_t per_chunk = n_chunks > 0 ? cols / n_chunks : 0;
  return per_chunk <= 26 ? 4 : per_chunk <= 60 ? 2 : 1;
}
// The encoder closes a window group early (padding the rest of it) when its next entry would lie
// kMdCsrWindowCols or more columns past the group's first column, in rows whose mean group span is
// at most this (so padding stays rare: ~1% of entries at 70% sparsity on random rows). Sparser rows
// are encoded as they come (their groups would be mostly padding).
constexpr int64_t kMdCsrAlignMaxGroupSpan = 112;
// The window group size the encoder aligns a row of n_chunks chunks to, or 0 (not aligned).
inline int mdcsr_aligned_group(int64_t cols, int64_t n_chunks) {
  const int g = mdcsr_window_chunks(cols, n_chunks);
  return n_chunks > 0 && (cols / n_chunks) * g <= kMdCsrAlignMaxGroupSpan ? g : 0;
}

// The packing rule, in one place: a row's stored entries, added in column order, become chunks of
// kMdCsrChunk entries, each handed to sink(values, deltas, base) when full. A gap wider than 255
// inside a chunk is bridged with padding entries (value 0, delta 255); finish() pads the last
// chunk with (value 0, delta 0). group > 0: an entry that would join the current window group
// (counted from the row's first chunk) but lies kMdCsrWindowCols or more columns past the group's
// first base first closes the group with (value 0, delta 0) entries.
template <class Sink>
class MdCsrRowPacker {
 public:
  MdCsrRowPacker(int group, const Sink& sink) : group_(group), sink_(sink) {}

  void add(int8_t value, int64_t col) {
    const bool joins_group = fill_ > 0 || (group_ > 0 && chunks_ % group_ != 0);
    if (group_ > 0 && joins_group && col - group_base_ >= kMdCsrWindowCols)
      while (fill_ > 0 || chunks_ % group_ != 0) emit(0, prev_);
    while (fill_ > 0 && col - prev_ > 255) emit(0, prev_ + 255);  // unless a new chunk starts anyway
    emit(value, col);
  }
  // Pads the row to whole chunks; returns how many it has.
  int64_t finish() {
    while (fill_ > 0) emit(0, prev_);
    return chunks_;
  }

 private:
  void emit(int8_t value, int64_t col) {
    if (fill_ == 0) {  // new chunk: its base is this entry's column
      if (group_ > 0 && chunks_ % group_ == 0) group_base_ = col;
      base_ = col;
    }
    const int i = fill_ % kMdCsrChunk;  // == fill_ (< 16), in a form GCC's overflow check can see
    values_[i] = value;
    deltas_[i] = uint8_t(fill_ == 0 ? 0 : col - prev_);
    prev_ = col;
    if (++fill_ == kMdCsrChunk) {
      sink_(values_, deltas_, uint16_t(base_));
      fill_ = 0;
      ++chunks_;
    }
  }

  int group_;
  const Sink& sink_;
  int8_t values_[kMdCsrChunk];
  uint8_t deltas_[kMdCsrChunk];
  int fill_ = 0;  // entries in the open chunk (0: none open)
  int64_t chunks_ = 0, prev_ = 0, base_ = 0, group_base_ = 0;
};

// Encodes the nonzeros of a row-quantized matrix. cols must be <= kMdCsrMaxCols. With
// align_windows, window groups are kept inside their window where that is cheap (above); without,
// entries are packed as they come (as files written before 2026-11-25 are). Valid MdCSR either way.
Result<SparseArrays> encode_mdcsr(const QuantizedMatrix& m, bool align_windows = true);

// Array lengths as found in a file, so validation can bound every index.
struct SparseLengths {
  size_t row_ptr = 0, row_scale = 0, values = 0, deltas = 0, chunk_base = 0, masks = 0;
};

// Checks every invariant before a kernel may read the arrays: row_ptr starts at 0, never
// decreases and ends at the chunk count; array lengths match it exactly; every decoded column
// (padding included) is < cols and nonzero entries of a row have increasing columns; scales
// are finite and >= 0. Errors name `where`, the row, chunk/entry and byte offset.
Status validate_mdcsr(const core::SparseLayout& s, const SparseLengths& len, int64_t rows,
                      int64_t cols, const std::string& where);

// Row r of a validated matrix packed without window padding, as encode_mdcsr(m, false) packs it
// (the GPU kernel reads no windows, so the padding would only cost it: cuda_backend.cu repacks at
// upload). Calls chunk(values, deltas, base) for each chunk of 16 entries; returns the count.
template <class Chunk>
int64_t mdcsr_plain_row(const core::SparseLayout& s, int64_t r, const Chunk& chunk) {
  MdCsrRowPacker<Chunk> pack(0, chunk);
  for (uint32_t k = s.row_ptr[r]; k < s.row_ptr[r + 1]; ++k) {
    int64_t col = s.chunk_base[k];
    for (int i = 0; i < kMdCsrChunk; ++i) {
      const size_t e = size_t(k) * kMdCsrChunk + size_t(i);
      col += s.deltas[e];
      if (s.values[e] != 0) pack.add(s.values[e], col);
    }
  }
  return pack.finish();
}

// Reference decode of row r of a validated matrix into int8 q [cols] (zeros where nothing is
// stored); returns the row's scale.
float mdcsr_decode_row(const core::Matrix& m, int64_t r, int8_t* q);

}  // namespace pdvm::formats
