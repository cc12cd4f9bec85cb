// Perplexity of a model on a token sequence, by sliding window (the Hugging Face recipe): windows
// of `context` tokens starting every `stride` tokens; each token is scored once, in the first
// window that holds it with context before it (the first window scores all but its first token).
// Every window restarts the backend at position 0. Log-softmax in double.
#pragma once

#include <cstdint>
#include <functional>
#include <span>

#include "core/backend.h"
#include "pdvm/status.h"

namespace pdvm::generate {

struct PerplexityOptions {
  int context = 512;    // window length in tokens (<= the backend's context)
  int stride = 256;     // window start step; stride == context: disjoint windows
  int max_tokens = 0;   // use only the first N tokens of the input (0: all)
  std::function<void(int64_t scored, int64_t total)> progress;  // after each window
};

struct PerplexityResult {
  double perplexity = 0;     // exp(mean negative log-likelihood)
  double mean_nll = 0;       // nats per scored token
  int64_t n_tokens = 0;      // tokens used
  int64_t n_scored = 0;      // tokens whose probability was scored
  int64_t n_evaluated = 0;   // decode steps run (windows overlap: > n_tokens when stride < context)
  double seconds = 0;
  double tokens_per_s = 0;   // n_evaluated / seconds
};

Result<PerplexityResult> perplexity(core::Backend& backend, std::span<const int32_t> tokens,
                                    const PerplexityOptions& options);

}  // namespace pdvm::generate
