// Host side of the token-mode stage timer: marks -> a per-stage table (see stage_timer.h).
#include "cuda/stage_timer.h"

#include <algorithm>
#include <cstdio>

namespace pdvm::cuda {

std::string format_stage_report(const std::vector<unsigned long long>& marks, int n_layers, int blocks) {
  static const char* kNames[] = {"qkv", "attention", "merge", "wo", "ffn_up", "down"};
  double work[6] = {}, imbalance[6] = {}, barrier[6] = {};
  int count[6] = {};
  auto at = [&](int l, int m, int b) { return marks[(size_t(l) * kStageMarks + m) * blocks + b]; };
  // layer 0's first stage has no earlier opening: layers 1.. only
  for (int l = 1; l < n_layers; ++l) {
    unsigned long long prev_open = at(l - 1, kMarkDownOpen, 0);
    for (int st = 0; st < 6; ++st) {
      const int done = 2 * st, open = 2 * st + 1;
      unsigned long long lo = ~0ull, hi = 0;
      for (int b = 0; b < blocks; ++b) { lo = std::min(lo, at(l, done, b)); hi = std::max(hi, at(l, done, b)); }
      const unsigned long long opened = at(l, open, 0);
      // a skipped stage (merge with one chunk), or layer mode's last layer (no launch after it)
      if (hi == 0 || prev_open == 0 || opened == 0) continue;
      work[st] += double(hi - prev_open);
      imbalance[st] += double(hi - lo);
      barrier[st] += double(opened - hi);
      ++count[st];
      prev_open = opened;
    }
  }
  std::string out = "  stage       work us  imbalance us  barrier us   (mean over layers 1..n-1, last step)\n";
  char line[160];
  double total = 0;
  for (int st = 0; st < 6; ++st) {
    if (count[st] == 0) continue;
    const double w = work[st] / count[st] / 1e3, i = imbalance[st] / count[st] / 1e3,
                 b = barrier[st] / count[st] / 1e3;
    total += w + b;
    std::snprintf(line, sizeof line, "  %-10s %8.2f %13.2f %11.2f\n", kNames[st], w, i, b);
    out += line;
  }
  std::snprintf(line, sizeof line, "  per layer  %8.2f us\n", total);
  return out + line;
}

}  // namespace pdvm::cuda
