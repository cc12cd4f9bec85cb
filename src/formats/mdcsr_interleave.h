// The GPU's MdCSR chunk order (cuda_backend.cu's upload): a run of consecutive chunks of one row
// whose entries are dealt out across the run's chunks like cards, so chunk i holds entries i,
// i + m, i + 2m, ... of the run (m chunks). Each chunk still decodes on its own (its base plus
// prefix-summed deltas, gaps <= 255), but a row's chunks no longer come in column order, so the
// result is not a valid MdCSR file layout (validate_mdcsr rejects it): it lives in GPU memory only.
//
// Why: the CUDA kernel gives each lane of a warp one of 32 consecutive chunks, and at step j every
// lane reads x at entry j of its chunk. In the file's order those 32 columns lie ~32 columns apart
// (one chunk's span at 50% sparsity), at banks that are in effect random: an estimated ~3.7
// shared-memory wavefronts per load (Nsight Compute measured 3.7 on bitmap_i8's equal case; MdCSR's
// was not measured). Dealt, the 32 lanes read 32 consecutive entries of the row, whose columns span
// ~64 at 50% sparsity: ~2 wavefronts, estimated. Measured: docs/notes-cuda.md, Round 18.
#pragma once

#include <cstdint>

namespace pdvm::formats {

constexpr int kMdCsrInterleaveMax = 32;  // chunks per run: one per lane of a warp

// chunks: m chunks of 32 bytes each (16 int8 values, then 16 column deltas, delta 0 of each 0);
// bases: their m base columns. Deals the entries in place and returns true, or leaves the run as
// it is and returns false when m < 2, when the run's columns decrease somewhere (not a row's chunks
// as MdCsrRowPacker writes them) or when a dealt chunk would need a gap wider than 255.
bool interleave_mdcsr_run(uint8_t* chunks, uint16_t* bases, int m);

// Row r of a matrix whose rows own chunks [ptr[r], ptr[r + 1]), dealt in the runs the CUDA kernel
// reads together: a warp takes the chunks of rows_per_group consecutive rows from the group's first
// chunk b0, and its 32 lanes chunks b0 + 32 t + lane, so the runs are row r's part of each 32-chunk
// block counted from b0. Touches only row r's chunks. Returns how many runs were dealt.
int interleave_mdcsr_row(uint8_t* chunks, uint16_t* bases, const uint32_t* ptr, int64_t r,
                         int rows_per_group);

}  // namespace pdvm::formats
