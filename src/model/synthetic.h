// Synthetic models: a named shape (phi-4, llama-3-8b, smollm2-135m) filled with random but valid
// weights of a chosen WeightType, for backend tests and benchmarks that need a real-sized model
// and no file. Weights are scaled so activations stay O(1) through every layer; the Model owns
// its buffers through Model::storage. Generation is deterministic for a seed, whatever the threads.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "core/model.h"

namespace pdvm::model {

struct SyntheticSpec {
  std::string shape = "custom";  // the name parse_shape() was given
  core::ModelConfig config;      // n_layers may be overridden (the CLI's --layers N)
  core::WeightType layer_type = core::WeightType::kQ8_0;  // wq wk wv wo w_gate w_up w_down
  core::WeightType head_type = core::WeightType::kQ8_0;   // tok_embd and output (LM head)
  // Fraction of the weights of each layer-matrix row that are zero; only for the sparse
  // layer types (mdcsr, bitmap_i8), in [0, 1). Each row keeps exactly round((1 - sparsity) * cols).
  double sparsity = 0;
  uint64_t seed = 0x5eed;
  int threads = 0;  // 0: all cores
};

// Called from the generating thread after each matrix: bytes of weights written so far, total.
// For the sparse types both are estimates that assume no MdCSR gap padding; done reaches total.
using ProgressFn = std::function<void(size_t bytes_done, size_t bytes_total)>;

// The known shapes, in the order parse_shape() lists them.
std::vector<std::string> known_shapes();

// "phi-4" (vocab 100352, d_model 5120, 40 layers, 40/10 heads of 128, d_ff 17920, theta 250000,
// untied), "llama-3-8b" (llama3 rope scaling, interleaved rope), "smollm2-135m" (tied).
// An unknown name gives an error that lists the known ones.
Result<SyntheticSpec> parse_shape(std::string_view name);

// Weight rules (what the backends may rely on, and tests check):
//  - quantized blocks: random qs bytes; f16 scales d drawn as base * U[0.75, 1.25] with base set so
//    the dequantized weights have std ~ 1/sqrt(cols); Q4_1 mins centre the block near zero.
//  - f32/f16/bf16: uniform with std 1/sqrt(cols).
//  - tok_embd: std 1 when untied (hidden starts O(1)), 1/sqrt(d_model) when tied (it is also the
//    LM head); norms 1 + U[-0.1, 0.1]; biases (qkv_bias) U[-0.1, 0.1].
//  - i8_row, mdcsr, bitmap_i8 (pdvm's int8 types, docs/FORMAT.md): each row is int8 values
//    uniform over +-1..+-127 at exactly round((1 - sparsity) * cols) columns (all of them for
//    i8_row) drawn uniformly at random, and an f32 row scale set so the row's weights have std
//    ~ 1/sqrt(cols), jittered by U[0.75, 1.25]. The bytes are the formats' own encoders' output
//    (encode_i8_rows / encode_mdcsr / encode_bitmap_i8), so they pass the validators.
// Supported layer types: f32, f16, bf16, q8_0, q4_0, q4_1, i8_row, mdcsr, bitmap_i8; head types
// the same less the sparse ones (the embedding is read a row at a time). MdCSR needs cols <= 65536.
Result<core::Model> make_synthetic_model(const SyntheticSpec& spec, ProgressFn progress = nullptr);

}  // namespace pdvm::model
