#include "core/model.h"

namespace pdvm::core {

size_t Model::weight_bytes_per_token() const {
  size_t n = output.n_bytes() + output_norm.size() * 4;
  for (const auto& l : layers) {
    n += l.wq.n_bytes() + l.wk.n_bytes() + l.wv.n_bytes() + l.wo.n_bytes() + l.w_gate.n_bytes() +
         l.w_up.n_bytes() + l.w_down.n_bytes();
    n += (l.attn_norm.size() + l.ffn_norm.size() + l.bq.size() + l.bk.size() + l.bv.size()) * 4;
  }
  return n;
}

}  // namespace pdvm::core
