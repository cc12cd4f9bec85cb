// Sliding-window perplexity (see perplexity.h).
#include "generate/perplexity.h"

#include <algorithm>
#include <chrono>
#include <cmath>

namespace pdvm::generate {

Result<PerplexityResult> perplexity(core::Backend& backend, std::span<const int32_t> tokens,
                                    const PerplexityOptions& o) {
  if (o.context < 2) return invalid_argument("perplexity: context must be at least 2 tokens");
  if (o.stride < 1 || o.stride > o.context)
    return invalid_argument("perplexity: stride must be in [1, context]");
  if (o.context > backend.context())
    return invalid_argument("perplexity: context " + std::to_string(o.context) + " exceeds the backend's " +
                            std::to_string(backend.context()) + " positions");
  int64_t n = int64_t(tokens.size());
  if (o.max_tokens > 0) n = std::min<int64_t>(n, o.max_tokens);
  if (n < 2) return invalid_argument("perplexity: need at least 2 tokens, got " + std::to_string(n));
  PerplexityResult r;
  r.n_tokens = n;
  double nll = 0;
  int64_t scored_end = 1;  // tokens [1, scored_end) are scored
  const auto t0 = std::chrono::steady_clock::now();
  for (int64_t begin = 0; scored_end < n; begin += o.stride) {
    const int64_t end = std::min(n, begin + o.context);
    for (int64_t i = begin; i < end - 1; ++i) {
      const auto pos = int32_t(i - begin);
      PDVM_TRY(backend.embed(tokens[size_t(i)]));
      for (int l = 0; l < backend.n_layers(); ++l) PDVM_TRY(backend.execute_layer(l, pos));
      ++r.n_evaluated;
      const int64_t target = i + 1;
      if (target < scored_end) continue;  // scored by an earlier window; only fill the cache
      PDVM_ASSIGN_OR_RETURN(auto logits, backend.logits());
      const int32_t t = tokens[size_t(target)];
      if (t < 0 || size_t(t) >= logits.size())
        return out_of_range("perplexity: token " + std::to_string(t) + " is outside the vocabulary");
      double mx = -INFINITY;
      for (float v : logits) mx = std::max(mx, double(v));
      double sum = 0;
      for (float v : logits) sum += std::exp(double(v) - mx);
      nll += (mx + std::log(sum)) - double(logits[size_t(t)]);
      ++r.n_scored;
    }
    scored_end = end;
    if (o.progress) o.progress(r.n_scored, n - 1);
  }
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  r.mean_nll = nll / double(r.n_scored);
  r.perplexity = std::exp(r.mean_nll);
  r.tokens_per_s = r.seconds > 0 ? double(r.n_evaluated) / r.seconds : 0;
  return r;
}

}  // namespace pdvm::generate
