// The fused kernels' per-stage timer (token and layer mode; built with -DPDVM_CUDA_STAGE_TIMER=ON,
// off by default): each block's thread 0 writes the globaltimer when its block has finished a
// stage (after the block's __syncthreads, before the grid barrier) and when the barrier after it
// opened (layer mode: after down, when the next layer's launch started). The host turns the
// marks of the last step into, per stage: work (slowest block's finish - the previous barrier's
// opening), imbalance (slowest - fastest block's finish) and barrier (opening - slowest finish).
// No header here needs CUDA, so the host side compiles as plain C++.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace pdvm::cuda {

enum StageMark : int {
  kMarkQkvDone, kMarkQkvOpen, kMarkAttnDone, kMarkAttnOpen, kMarkMergeDone, kMarkMergeOpen,
  kMarkWoDone, kMarkWoOpen, kMarkUpDone, kMarkUpOpen, kMarkDownDone, kMarkDownOpen, kStageMarks
};

// marks: [n_layers][kStageMarks][blocks] in ns (0: not written, e.g. a skipped merge).
std::string format_stage_report(const std::vector<unsigned long long>& marks, int n_layers, int blocks);

}  // namespace pdvm::cuda
