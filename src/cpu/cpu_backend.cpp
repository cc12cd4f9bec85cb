// CpuBackend::execute_layer is the readable specification of one transformer layer; the CUDA
// backend is checked against it.
#include "cpu/cpu_backend.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/arena.h"
#include "cpu/attention.h"
#include "cpu/matvec.h"
#include "cpu/reference_kernels.h"
#include "cpu/vec_ops.h"
#include "formats/quant_blocks.h"

namespace pdvm::cpu {
namespace {

class CpuBackend final : public core::Backend {
 public:
  CpuBackend(const core::Model& model, const CpuOptions& o, int context)
      : m_(model), c_(model.config), kernels_(o.kernels), context_(context),
        pool_(o.kernels == CpuKernels::kReference ? 1 : o.threads) {
    kv_dim_ = c_.n_kv_heads * c_.head_dim;
    for (int i = 0; i < c_.rope_dim / 2; ++i) inv_freq_[size_t(i)] = float(c_.rope_inv_freq(i));
  }

  // Every activation buffer and the KV cache come from one arena, sized here: layout() runs
  // once to count and once to hand out memory.
  Status init() {
    layout();
    PDVM_TRY(arena_.allocate());
    layout();
    if (kernels_ == CpuKernels::kFast) prepared_ = std::make_unique<PreparedInput>(max_cols());
    return Status::ok();
  }

  int64_t max_cols() const {
    return std::max<int64_t>({c_.d_model, c_.d_ff, int64_t(c_.n_heads) * c_.head_dim});
  }

  void layout() {
    const size_t q_dim = size_t(c_.n_heads) * size_t(c_.head_dim), kv = size_t(kv_dim_);
    const size_t d = size_t(c_.d_model), ff = size_t(c_.d_ff);
    x_ = arena_.take<float>(d);
    xb_ = arena_.take<float>(std::max(d, q_dim));
    tmp_ = arena_.take<float>(d);
    q_ = arena_.take<float>(q_dim);
    k_ = arena_.take<float>(kv);
    v_ = arena_.take<float>(kv);
    att_ = arena_.take<float>(q_dim);
    gate_ = arena_.take<float>(ff);
    up_ = arena_.take<float>(ff);
    hb_ = arena_.take<float>(ff);
    logits_ = arena_.take<float>(size_t(c_.vocab_size));
    row_scratch_ = arena_.take<float>(size_t(max_cols()));
    scores_ = arena_.take<float>(size_t(pool_.size()) * size_t(context_));
    k_cache_ = arena_.take<float>(size_t(c_.n_layers) * size_t(context_) * kv);
    v_cache_ = arena_.take<float>(size_t(c_.n_layers) * size_t(context_) * kv);
  }

  std::string name() const override {
    return kernels_ == CpuKernels::kReference ? "cpu-reference" : "cpu";
  }
  int context() const override { return context_; }
  int n_layers() const override { return c_.n_layers; }
  std::span<const float> hidden() override { return x_; }

  Status embed(int32_t token) override {
    if (token < 0 || token >= c_.vocab_size)
      return out_of_range("token id " + std::to_string(token) + " is outside the vocabulary [0, " +
                          std::to_string(c_.vocab_size) + ")");
    formats::dequantize_row(m_.tok_embd.type, m_.tok_embd.row(token), c_.d_model, x_.data());
    return Status::ok();
  }

  Status execute_layer(int layer, int32_t pos) override {
    if (layer < 0 || layer >= c_.n_layers) return out_of_range("layer " + std::to_string(layer) + " does not exist");
    if (pos < 0 || pos >= context_)
      return out_of_range("position " + std::to_string(pos) + " is outside the context (" +
                          std::to_string(context_) + " positions; raise -c)");
    const core::LayerWeights& w = m_.layers[size_t(layer)];
    const int d = c_.d_model;

    // 1. attention input: xb = rmsnorm(x) * attn_norm
    rmsnorm(x_.data(), w.attn_norm.data(), xb_.data());
    // 2. q, k, v = W xb (+ bias)
    matvec3(w.wq, q_.data(), w.wk, k_.data(), w.wv, v_.data(), xb_.data());
    add_bias(q_, w.bq); add_bias(k_, w.bk); add_bias(v_, w.bv);
    // 3. rotate q and k to position pos
    rope(q_.data(), c_.n_heads, pos);
    rope(k_.data(), c_.n_kv_heads, pos);
    // 4. append k, v to this layer's cache row `pos`
    float* k_layer = k_cache_.data() + size_t(layer) * context_ * kv_dim_;
    float* v_layer = v_cache_.data() + size_t(layer) * context_ * kv_dim_;
    std::copy(k_.begin(), k_.end(), k_layer + size_t(pos) * kv_dim_);
    std::copy(v_.begin(), v_.end(), v_layer + size_t(pos) * kv_dim_);
    // 5. attention of each query head over its kv head's positions (GQA), within the window
    const int first = c_.sliding_window > 0 ? std::max(0, pos - c_.sliding_window + 1) : 0;
    attention(k_layer, v_layer, first, pos);
    // 6. x += Wo att
    matvec1(w.wo, att_.data(), tmp_.data());
    for (int i = 0; i < d; ++i) x_[size_t(i)] += tmp_[size_t(i)];
    // 7. feed-forward input: xb = rmsnorm(x) * ffn_norm
    rmsnorm(x_.data(), w.ffn_norm.data(), xb_.data());
    // 8. gate, up = W xb; hb = silu(gate) * up
    matvec2(w.w_gate, gate_.data(), w.w_up, up_.data(), xb_.data());
    swiglu();
    // 9. x += Wdown hb
    matvec1(w.w_down, hb_.data(), tmp_.data());
    for (int i = 0; i < d; ++i) x_[size_t(i)] += tmp_[size_t(i)];
    return Status::ok();
  }

  Status fill_kv_random(int n_positions, uint64_t seed) override {
    if (n_positions < 0 || n_positions > context_)
      return out_of_range("cannot fill " + std::to_string(n_positions) + " KV positions: the context holds " +
                          std::to_string(context_));
    // splitmix64 -> uniform on [-sqrt(3), sqrt(3)] (std 1), deterministic for a seed.
    uint64_t state = seed;
    auto next = [&state] {
      uint64_t z = (state += 0x9e3779b97f4a7c15ull);
      z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
      z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
      return z ^ (z >> 31);
    };
    const size_t per_layer = size_t(context_) * size_t(kv_dim_);
    const size_t n = size_t(n_positions) * size_t(kv_dim_);
    for (int l = 0; l < c_.n_layers; ++l) {
      for (float* cache : {k_cache_.data(), v_cache_.data()}) {
        float* rows = cache + size_t(l) * per_layer;
        for (size_t i = 0; i < n; ++i) rows[i] = float((double(next() >> 11) * 0x1.0p-53 * 2 - 1) * 1.7320508);
      }
    }
    return Status::ok();
  }

  Result<std::span<const float>> logits() override {
    rmsnorm(x_.data(), m_.output_norm.data(), xb_.data());
    matvec1(m_.output, xb_.data(), logits_.data());
    return std::span<const float>(logits_);
  }

 private:
  bool reference() const { return kernels_ == CpuKernels::kReference; }

  void rmsnorm(const float* x, const float* w, float* out) {
    if (reference()) ref::rmsnorm(x, w, c_.d_model, c_.rms_eps, out);
    else rmsnorm_f32(x, w, c_.d_model, c_.rms_eps, out);
  }

  void matvec1(const core::Matrix& w, const float* x, float* y) {
    if (reference()) return ref::matvec(w, x, y, row_scratch_.data());
    prepared_->prepare(x, w.cols);
    matvec(w, *prepared_, y, pool_);
  }
  void matvec2(const core::Matrix& w1, float* y1, const core::Matrix& w2, float* y2, const float* x) {
    if (reference()) {
      ref::matvec(w1, x, y1, row_scratch_.data());
      ref::matvec(w2, x, y2, row_scratch_.data());
      return;
    }
    prepared_->prepare(x, w1.cols);
    const MatvecJob jobs[] = {{&w1, y1}, {&w2, y2}};
    matvec_multi(jobs, *prepared_, pool_);
  }
  void matvec3(const core::Matrix& w1, float* y1, const core::Matrix& w2, float* y2,
               const core::Matrix& w3, float* y3, const float* x) {
    if (reference()) {
      ref::matvec(w1, x, y1, row_scratch_.data());
      ref::matvec(w2, x, y2, row_scratch_.data());
      ref::matvec(w3, x, y3, row_scratch_.data());
      return;
    }
    prepared_->prepare(x, w1.cols);
    const MatvecJob jobs[] = {{&w1, y1}, {&w2, y2}, {&w3, y3}};
    matvec_multi(jobs, *prepared_, pool_);
  }

  static void add_bias(std::span<float> v, const std::vector<float>& b) {
    if (b.empty()) return;
    for (size_t i = 0; i < v.size(); ++i) v[i] += b[i];
  }

  void rope(float* v, int n_heads, int pos) {
    if (reference()) return ref::rope(v, n_heads, c_, pos);
    rope_f32(v, n_heads, c_.head_dim, c_.rope_dim / 2, c_.rope_style, inv_freq_.data(), pos);
  }

  void attention(const float* k_layer, const float* v_layer, int first, int last) {
    const int hd = c_.head_dim, group = c_.n_heads / c_.n_kv_heads;
    if (reference()) {
      for (int h = 0; h < c_.n_heads; ++h)
        ref::attend_head(q_.data() + size_t(h) * hd, k_layer + size_t(h / group) * hd,
                         v_layer + size_t(h / group) * hd, kv_dim_, hd, first, last,
                         scores_.data(), att_.data() + size_t(h) * hd);
      return;
    }
    const AttentionShape shape{c_.n_heads, c_.n_kv_heads, hd, kv_dim_};
    attend_heads(q_.data(), k_layer, v_layer, shape, first, last, scores_.data(), context_, att_.data(), pool_);
  }

  void swiglu() {
    if (reference()) return ref::swiglu(gate_.data(), up_.data(), c_.d_ff, hb_.data());
    for (int i = 0; i < c_.d_ff; ++i) {
      const float g = gate_[size_t(i)];
      hb_[size_t(i)] = g / (1.0f + std::exp(-g)) * up_[size_t(i)];
    }
  }

  const core::Model& m_;
  const core::ModelConfig& c_;
  CpuKernels kernels_;
  int context_;
  int kv_dim_ = 0;
  core::ThreadPool pool_;
  std::unique_ptr<PreparedInput> prepared_;
  core::Arena arena_;
  // activations (f32): hidden state, normed input, q/k/v, attention output, FFN intermediates
  std::span<float> x_, xb_, tmp_, q_, k_, v_, att_, gate_, up_, hb_, logits_;
  std::span<float> row_scratch_;  // one dequantized row (reference matvec)
  std::span<float> scores_;       // [threads][context] attention scores
  std::vector<float> inv_freq_ = std::vector<float>(size_t(c_.rope_dim / 2));  // [rope_dim/2]
  // KV cache, f32: [n_layers][context][n_kv_heads * head_dim]
  std::span<float> k_cache_, v_cache_;
};

}  // namespace

Result<std::unique_ptr<core::Backend>> make_cpu_backend(const core::Model& model,
                                                        const CpuOptions& options) {
  PDVM_TRY(model.config.validate());
  int context = options.context > 0 ? options.context : std::min(model.config.max_seq, 4096);
  if (context <= 0) return invalid_argument("context must be positive");
  const double kv_bytes = 2.0 * model.config.n_layers * double(context) *
                          model.config.n_kv_heads * model.config.head_dim * 4;
  if (kv_bytes > 64e9)
    return invalid_argument("a context of " + std::to_string(context) + " positions needs " +
                            std::to_string(int64_t(kv_bytes / 1e9)) + " GB of KV cache; lower -c");
  auto backend = std::make_unique<CpuBackend>(model, options, context);
  PDVM_TRY(backend->init());
  return std::unique_ptr<core::Backend>(std::move(backend));
}

}  // namespace pdvm::cpu
