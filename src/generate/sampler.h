// Sampler: picks the next token from logits. Greedy when temperature <= 0; otherwise, in
// llama.cpp's order: repetition penalty, top-k, top-p, min-p, temperature, then a draw from a
// seeded generator (same seed, same tokens). Buffers are sized at construction: sample()
// allocates nothing.
#pragma once

#include <cstdint>
#include <random>
#include <span>
#include <vector>

#include "pdvm/status.h"

namespace pdvm::generate {

struct SamplerOptions {
  float temperature = 0.8f;    // <= 0: greedy (argmax)
  int top_k = 40;              // <= 0: off
  float top_p = 0.95f;         // >= 1: off
  float min_p = 0.05f;         // <= 0: off
  float repeat_penalty = 1.0f; // 1: off; divides positive logits, multiplies negative ones
  int repeat_last_n = 64;      // how many recent tokens the penalty looks at
  uint64_t seed = 0;
};

Status validate(const SamplerOptions& o);

class Sampler {
 public:
  Sampler(int vocab_size, const SamplerOptions& options);
  // `recent`: previously seen tokens (prompt and output), most recent last.
  int32_t sample(std::span<const float> logits, std::span<const int32_t> recent);
  const SamplerOptions& options() const { return o_; }

 private:
  struct Candidate { int32_t id; float logit; };
  SamplerOptions o_;
  std::mt19937_64 rng_;
  std::vector<Candidate> cand_;
  std::vector<float> penalized_;
  std::vector<uint8_t> seen_;
};

int32_t argmax(std::span<const float> logits);

}  // namespace pdvm::generate
