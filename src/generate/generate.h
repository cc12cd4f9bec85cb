// The generation loop: feeds a prompt through a Backend, then samples, streams text and stops
// on EOS, a stop string or the token limit. A Session keeps the position and token history so
// a chat can continue in the same KV cache without re-processing earlier turns.
#pragma once

#include <chrono>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "core/backend.h"
#include "generate/sampler.h"
#include "tokenizer/tokenizer.h"

namespace pdvm::generate {

struct GenerateOptions {
  int max_tokens = 256;                   // new tokens at most (< 0: until EOS or context end)
  std::vector<std::string> stop_strings;  // generation ends before any of these is printed
  bool stop_at_eos = true;
  SamplerOptions sampler;
};

struct GenerateStats {
  int prompt_tokens = 0;
  int generated_tokens = 0;
  double prompt_ms = 0;    // time to process the prompt (incl. the first token's logits)
  double generate_ms = 0;  // time for the generated tokens after the first
  std::string stop_reason; // "eos", "stop string", "max tokens", "context full", "cancelled"
  int32_t end_token = -1;  // the EOS token that ended generation (not in the KV cache), or -1
  double generate_tok_per_s() const {
    return generated_tokens > 1 ? (generated_tokens - 1) / (generate_ms / 1e3) : 0.0;
  }
};

// Receives text as it is produced; return false to stop generating.
using TextCallback = std::function<bool(std::string_view)>;

class Session {
 public:
  Session(core::Backend& backend, const tokenizer::Tokenizer& tok);

  // Appends `ids` to the sequence (runs them through the model), then generates.
  Result<GenerateStats> generate(std::span<const int32_t> ids, const GenerateOptions& options,
                                 const TextCallback& on_text);
  // Forgets the sequence (the next call starts at position 0).
  void reset() { history_.clear(); }
  // Keeps the first n tokens (the next call continues at position n, overwriting the KV cache
  // from there): lets a chat re-process only from the first token where a re-rendered
  // conversation differs from what the cache holds.
  void truncate(int n) { if (n >= 0 && size_t(n) < history_.size()) history_.resize(size_t(n)); }
  int position() const { return int(history_.size()); }
  const std::vector<int32_t>& history() const { return history_; }

 private:
  core::Backend& backend_;
  const tokenizer::Tokenizer& tok_;
  std::vector<int32_t> history_;  // every token in the KV cache, in order
};

}  // namespace pdvm::generate
