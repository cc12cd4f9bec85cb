// The converter: any model pdvm loads (HF directory, GGUF, pdvm file) -> a native pdvm file with
// chosen matrices pruned and quantized. Pruning is per output row, by magnitude |W| or
// activation-aware (Wanda: |W_rc| * ||x_c||, with ||x_c|| the L2 norm over calibration tokens of
// the matrix's input activation c, gathered by a plain forward pass on a calibration text).
// Then each row is quantized to int8 with one scale (formats/int8_rows.h) and stored as dense
// int8, Q8_0, MdCSR or bitmap. The LM head and the embeddings stay as they are by default.
#pragma once

#include <functional>
#include <span>
#include <string>
#include <vector>

#include "core/model.h"
#include "pdvm/status.h"

namespace pdvm::model {

enum class CompressFormat { kI8Row, kQ8_0, kMdCsr, kBitmapI8 };
enum class PruneMethod { kMagnitude, kWanda };
Result<CompressFormat> parse_compress_format(const std::string& name);  // int8 q8_0 mdcsr bitmap
const char* compress_format_name(CompressFormat f);

struct ConvertOptions {
  CompressFormat format = CompressFormat::kI8Row;
  double sparsity = 0.0;  // fraction of each row's weights set to zero, [0, 1)
  PruneMethod prune = PruneMethod::kMagnitude;
  std::string calibration_file;  // text; needed for kWanda
  int calibration_tokens = 256;  // at most this many tokens of it (capped by the context)
  // Which layer matrices to compress (names as in core::LayerWeights: wq wk wv wo w_gate w_up w_down).
  std::vector<std::string> matrices = {"wq", "wk", "wv", "wo", "w_gate", "w_up", "w_down"};
  bool compress_output = false;  // the LM head too (when not tied to the embeddings)
  int threads = 0;               // calibration forward pass threads (0: all cores)
  // Called after each matrix: (done, total, name).
  std::function<void(int, int, const std::string&)> progress;
};

struct MatrixReport {
  std::string name;
  std::string type;
  int64_t rows = 0, cols = 0;
  int64_t n_nonzero = 0;  // kept weights (rows * cols for dense types)
  size_t n_bytes = 0;     // bytes a matvec reads
};
struct ConvertReport {
  std::vector<MatrixReport> matrices;  // every matrix of the output, compressed or not
  size_t layer_weight_bytes = 0;       // sum over the layer matrices
  int64_t layer_weights = 0;           // their rows * cols
  size_t file_bytes = 0;               // of the written file (convert_model_file only)
};

// Input-activation norms ||x_c||_2 over calibration tokens, per layer: attn_in (input of wq, wk,
// wv), attn_out (of wo), ffn_in (of w_gate, w_up), ffn_hidden (of w_down).
struct ActivationNorms {
  std::vector<std::vector<float>> attn_in, attn_out, ffn_in, ffn_hidden;
};
// Runs `tokens` through the model (f32 activations, cpu::matvec for the products, the reference
// kernels for norm, rope and attention: the same steps as cpu_backend's execute_layer).
Result<ActivationNorms> gather_activation_norms(const core::Model& model, std::span<const int32_t> tokens,
                                                int threads);

// A copy of `src` whose selected matrices are compressed. New arrays are owned by the result's
// storage; unchanged weights still view src's storage (kept alive through it). `norms` is needed
// for kWanda.
Result<core::Model> compress_model(const core::Model& src, const ConvertOptions& options,
                                   const ActivationNorms* norms, ConvertReport* report = nullptr);

// Loads `src_path`, gathers activation norms if asked, compresses, writes `out_path` with the
// source's tokenizer and the options in the metadata.
Status convert_model_file(const std::string& src_path, const std::string& out_path,
                          const ConvertOptions& options, ConvertReport* report = nullptr);

// Row r of any matrix (dense, block or sparse type) as f32: the converter's and tests' decoder.
void dequantize_matrix_row(const core::Matrix& m, int64_t r, float* out);

}  // namespace pdvm::model
