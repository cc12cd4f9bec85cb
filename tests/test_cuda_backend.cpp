// CUDA backend vs a plain host reference (formats::dequantize_row + fp64 dot products), on
// synthetic models: hidden state after every layer and the logits, per weight format and mode,
// at positions 0, 1, 37 and the last two of the KV cache; in token mode (one launch per step) the
// hidden state after the last layer, the logits and the in-kernel argmax at those positions.
// Skips (with the reason) without a GPU.
//
// Tolerance: relative L2 error <= 5e-3 for every format. Both sides use exactly the same weights
// (the reference dequantizes the same blocks the GPU reads), so the format adds no error of its
// own; what differs is f32 accumulation on the GPU (~1e-6 relative), the f16 KV cache (each K/V
// element rounded to 11 bits, ~1.4e-4 rms relative, which attention averages) and __expf. Measured
// errors are printed; a wrong index, missing write (outputs are NaN-poisoned) or wrong rotation
// gives O(1) errors.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <optional>
#include <random>
#include <vector>

#include "core/thread_pool.h"
#include "formats/quant_blocks.h"
#include "model/synthetic.h"
#if defined(PDVM_HAVE_CUDA)
#include "cuda/cuda_backend.h"
#endif

namespace pdvm {
namespace {

using core::WeightType;

// ---- the reference: one decode step at a time, in double -------------------------------------
class Reference {
 public:
  Reference(const core::Model& m, int ctx) : m_(m), c_(m.config), pool_(0) {
    kc_.assign(size_t(c_.n_layers), std::vector<double>(size_t(ctx) * c_.n_kv_heads * c_.head_dim));
    vc_ = kc_;
  }

  void embed(int token) {
    std::vector<float> row(size_t(c_.d_model));
    formats::dequantize_row(m_.tok_embd.type, m_.tok_embd.row(token), c_.d_model, row.data());
    x_.assign(row.begin(), row.end());
  }

  void layer(int l, int pos) {
    const core::LayerWeights& w = m_.layers[size_t(l)];
    const int hd = c_.head_dim, kv_dim = c_.n_kv_heads * hd;
    auto xn = rmsnorm(x_, w.attn_norm);
    auto q = matvec(w.wq, xn), k = matvec(w.wk, xn), v = matvec(w.wv, xn);
    if (c_.qkv_bias) {
      for (size_t i = 0; i < q.size(); ++i) q[i] += w.bq[i];
      for (size_t i = 0; i < k.size(); ++i) { k[i] += w.bk[i]; v[i] += w.bv[i]; }
    }
    for (int h = 0; h < c_.n_heads; ++h) rope(&q[size_t(h * hd)], pos);
    for (int h = 0; h < c_.n_kv_heads; ++h) rope(&k[size_t(h * hd)], pos);
    std::copy(k.begin(), k.end(), kc_[size_t(l)].begin() + size_t(pos) * kv_dim);
    std::copy(v.begin(), v.end(), vc_[size_t(l)].begin() + size_t(pos) * kv_dim);
    const int start = c_.sliding_window > 0 ? std::max(0, pos - c_.sliding_window + 1) : 0;
    std::vector<double> att(size_t(c_.n_heads) * hd, 0.0);
    for (int h = 0; h < c_.n_heads; ++h) {
      const int kvh = h / (c_.n_heads / c_.n_kv_heads);
      std::vector<double> sc;
      double mx = -1e300;
      for (int t = start; t <= pos; ++t) {
        const double* kt = &kc_[size_t(l)][size_t(t) * kv_dim + size_t(kvh) * hd];
        double d = 0;
        for (int i = 0; i < hd; ++i) d += q[size_t(h * hd + i)] * kt[i];
        sc.push_back(d / std::sqrt(double(hd)));
        mx = std::max(mx, sc.back());
      }
      double sum = 0;
      for (double& s : sc) { s = std::exp(s - mx); sum += s; }
      for (int t = start; t <= pos; ++t) {
        const double* vt = &vc_[size_t(l)][size_t(t) * kv_dim + size_t(kvh) * hd];
        for (int i = 0; i < hd; ++i) att[size_t(h * hd + i)] += sc[size_t(t - start)] / sum * vt[i];
      }
    }
    auto o = matvec(w.wo, att);
    for (size_t i = 0; i < x_.size(); ++i) x_[i] += o[i];
    xn = rmsnorm(x_, w.ffn_norm);
    auto g = matvec(w.w_gate, xn), u = matvec(w.w_up, xn);
    for (size_t i = 0; i < g.size(); ++i) g[i] = g[i] / (1.0 + std::exp(-g[i])) * u[i];
    auto dn = matvec(w.w_down, g);
    for (size_t i = 0; i < x_.size(); ++i) x_[i] += dn[i];
  }

  std::vector<double> logits() { return matvec(m_.output, rmsnorm(x_, m_.output_norm)); }
  const std::vector<double>& hidden() const { return x_; }

 private:
  std::vector<double> rmsnorm(const std::vector<double>& x, const std::vector<float>& g) const {
    double ss = 0;
    for (double v : x) ss += v * v;
    const double s = 1.0 / std::sqrt(ss / double(x.size()) + double(c_.rms_eps));
    std::vector<double> y(x.size());
    for (size_t i = 0; i < x.size(); ++i) y[i] = x[i] * s * g[i];
    return y;
  }

  // Rotates pairs (i, i + rope_dim/2) (neox) or (2i, 2i+1) (interleaved) by pos * inv_freq(i).
  void rope(double* v, int pos) const {
    for (int i = 0; i < c_.rope_dim / 2; ++i) {
      const int a = c_.rope_style == core::RopeStyle::kNeox ? i : 2 * i;
      const int b = c_.rope_style == core::RopeStyle::kNeox ? i + c_.rope_dim / 2 : 2 * i + 1;
      const double th = pos * c_.rope_inv_freq(i), cs = std::cos(th), sn = std::sin(th);
      const double va = v[a], vb = v[b];
      v[a] = va * cs - vb * sn;
      v[b] = vb * cs + va * sn;
    }
  }

  std::vector<double> matvec(const core::Matrix& w, const std::vector<double>& x) {
    std::vector<double> y(size_t(w.rows));
    pool_.parallel_for(w.rows, 16, [&](int64_t r0, int64_t r1) {
      std::vector<float> row(size_t(w.cols));
      for (int64_t r = r0; r < r1; ++r) {
        formats::dequantize_row(w.type, w.row(r), w.cols, row.data());
        double d = 0;
        for (int64_t j = 0; j < w.cols; ++j) d += double(row[size_t(j)]) * x[size_t(j)];
        y[size_t(r)] = d;
      }
    });
    return y;
  }

  const core::Model& m_;
  const core::ModelConfig& c_;
  core::ThreadPool pool_;
  std::vector<double> x_;
  std::vector<std::vector<double>> kc_, vc_;  // [layer][pos][kv_head*head_dim]
};

template <typename A, typename B>
double rel_l2(const A& got, const B& want, size_t n, size_t* first_bad) {
  double num = 0, den = 0;
  *first_bad = n;
  for (size_t i = 0; i < n; ++i) {
    const double g = double(got[i]), w = double(want[i]);
    if (!std::isfinite(g) && *first_bad == n) *first_bad = i;
    num += (g - w) * (g - w);
    den += w * w;
  }
  if (*first_bad != n) return INFINITY;
  return std::sqrt(num / std::max(den, 1e-300));
}

constexpr double kTolerance = 5e-3;

struct Case {
  const char* name;
  const char* shape;
  int layers;
  WeightType type;
  bool variant;  // interleaved partial rope, llama3 scaling, qkv bias, sliding window
  // When set: wv, w_down and the LM head of this type instead, as llama.cpp's _K_M files mix
  // them (Q5_K_M: Q6_K there), so q|k|v fuses two block types (converted to q8_16 at upload).
  std::optional<WeightType> mix = std::nullopt;
  // When > 0: SmolLM2's layers with this head size, 8 query heads and 2 KV heads (Phi-4's group
  // of 4): head size 128 runs the tensor-core attention (attend_chunk_mma), small enough for
  // the sanitizers
  int head_dim = 0;
};

std::string case_name(const testing::TestParamInfo<Case>& info) { return info.param.name; }

class CudaBackendTest : public testing::TestWithParam<Case> {};

TEST_P(CudaBackendTest, MatchesHostReference) {
#if !defined(PDVM_HAVE_CUDA)
  GTEST_SKIP() << "built without CUDA (nvcc not found at configure time)";
#else
  auto n_dev = cuda::cuda_device_count();
  if (!n_dev.is_ok()) GTEST_SKIP() << n_dev.status().message();
  const Case& tc = GetParam();
  auto spec = model::parse_shape(tc.shape);
  ASSERT_TRUE(spec.is_ok()) << spec.status().message();
  spec->config.n_layers = tc.layers;
  spec->layer_type = tc.type;
  spec->head_type = tc.type;
  spec->seed = std::random_device{}();  // fresh weights every run
  if (tc.head_dim > 0) {
    spec->config.head_dim = spec->config.rope_dim = tc.head_dim;
    spec->config.n_heads = 8;
    spec->config.n_kv_heads = 2;
  }
  if (tc.variant) {
    spec->config.rope_style = core::RopeStyle::kInterleaved;
    spec->config.rope_dim = spec->config.head_dim / 2;
    spec->config.rope_scaling = {core::RopeScalingType::kLlama3, 8.0f, 1.0f, 4.0f, 64};
    spec->config.qkv_bias = true;
    spec->config.sliding_window = 20;
  }
  auto model = model::make_synthetic_model(*spec);
  ASSERT_TRUE(model.is_ok()) << model.status().message();
  if (tc.mix) {
    auto donor_spec = *spec;
    donor_spec.layer_type = donor_spec.head_type = *tc.mix;
    donor_spec.seed += 1;
    auto donor = model::make_synthetic_model(donor_spec);
    ASSERT_TRUE(donor.is_ok()) << donor.status().message();
    for (size_t l = 0; l < model->layers.size(); ++l) {
      model->layers[l].wv = donor->layers[l].wv;
      model->layers[l].w_down = donor->layers[l].w_down;
    }
    model->output = donor->output;
    for (auto& buf : donor->storage) model->storage.push_back(buf);  // keeps the views alive
  }
  const core::ModelConfig& c = model->config;
  const int ctx = 48, chunk = 16;  // 3 chunks: the split/merge path is exercised
  const std::vector<int> checked = {0, 1, 37, ctx - 2, ctx - 1};
  std::mt19937 rng(std::random_device{}());
  std::vector<int> tokens(static_cast<size_t>(ctx));
  for (int& t : tokens) t = int(rng() % uint32_t(c.vocab_size));
  std::printf("seed %llu, tokens[0..2] %d %d %d\n", (unsigned long long)spec->seed, tokens[0],
              tokens[1], tokens[2]);
  std::fflush(stdout);

  // the reference trace once; both modes are compared with it
  Reference ref(*model, ctx);
  std::vector<std::vector<std::vector<double>>> ref_hidden(static_cast<size_t>(ctx));  // [pos][layer]
  std::vector<std::vector<double>> ref_logits(static_cast<size_t>(ctx));
  for (int pos = 0; pos < ctx; ++pos) {
    ref.embed(tokens[size_t(pos)]);
    const bool check = std::find(checked.begin(), checked.end(), pos) != checked.end();
    for (int l = 0; l < c.n_layers; ++l) {
      ref.layer(l, pos);
      if (check) ref_hidden[size_t(pos)].push_back(ref.hidden());
    }
    if (check) ref_logits[size_t(pos)] = ref.logits();
  }

  for (cuda::Mode mode : {cuda::Mode::kOps, cuda::Mode::kLayer, cuda::Mode::kToken}) {
    SCOPED_TRACE(cuda::mode_name(mode));
    cuda::CudaOptions opt;
    opt.mode = mode;
    opt.context = ctx;
    opt.attn_chunk = chunk;
    auto made = cuda::make_cuda_backend(*model, opt);
    ASSERT_TRUE(made.is_ok()) << made.status().message();
    auto* be = dynamic_cast<cuda::CudaBackend*>(made->get());
    ASSERT_NE(be, nullptr);
    double worst_hidden = 0, worst_logits = 0;
    for (int pos = 0; pos < ctx; ++pos) {
      const bool check = std::find(checked.begin(), checked.end(), pos) != checked.end();
      if (!check) {  // the whole-token path (graph in ops mode) for the positions in between
        auto lg = be->execute_model(tokens[size_t(pos)], pos);
        ASSERT_TRUE(lg.is_ok()) << lg.status().message();
        continue;
      }
      ASSERT_TRUE(be->poison_scratch().is_ok());
      if (mode == cuda::Mode::kToken) {
        // the one token kernel: the hidden state after the last layer, then logits and argmax
        // (decode_step leaves the logits on the device; copy them through execute_model)
        auto lg = be->execute_model(tokens[size_t(pos)], pos);
        ASSERT_TRUE(lg.is_ok()) << lg.status().message();
        std::vector<float> got(lg->begin(), lg->end());
        auto h = be->hidden();
        ASSERT_EQ(h.size(), size_t(c.d_model));
        size_t bad = 0;
        const double eh = rel_l2(h, ref_hidden[size_t(pos)].back(), h.size(), &bad);
        worst_hidden = std::max(worst_hidden, eh);
        EXPECT_LE(eh, kTolerance) << "hidden after the last layer, pos " << pos;
        const auto& want = ref_logits[size_t(pos)];
        const double el = rel_l2(got, want, want.size(), &bad);
        worst_logits = std::max(worst_logits, el);
        EXPECT_LE(el, kTolerance) << "logits, pos " << pos;
        auto am = be->argmax();
        ASSERT_TRUE(am.is_ok());
        const double ref_max = *std::max_element(want.begin(), want.end());
        double norm = 0;
        for (double v : want) norm += v * v;
        norm = std::sqrt(norm / double(want.size()));
        EXPECT_GE(want[size_t(*am)], ref_max - 1e-2 * norm) << "argmax " << *am << ", pos " << pos;
        continue;
      }
      ASSERT_TRUE(be->embed(tokens[size_t(pos)]).is_ok());
      for (int l = 0; l < c.n_layers; ++l) {
        const Status st = be->execute_layer(l, pos);
        ASSERT_TRUE(st.is_ok()) << st.message();
        auto h = be->hidden();
        ASSERT_EQ(h.size(), size_t(c.d_model));
        size_t bad = 0;
        const double err = rel_l2(h, ref_hidden[size_t(pos)][size_t(l)], h.size(), &bad);
        worst_hidden = std::max(worst_hidden, err);
        EXPECT_LE(err, kTolerance) << "hidden, pos " << pos << " layer " << l
                                   << (bad < h.size() ? ", non-finite at " + std::to_string(bad) : "");
      }
      auto lg = be->logits();
      ASSERT_TRUE(lg.is_ok()) << lg.status().message();
      const auto& want = ref_logits[size_t(pos)];
      size_t bad = 0;
      const double err = rel_l2(*lg, want, want.size(), &bad);
      worst_logits = std::max(worst_logits, err);
      EXPECT_LE(err, kTolerance) << "logits, pos " << pos
                                 << (bad < want.size() ? ", non-finite at " + std::to_string(bad) : "");
      // top-1: the device argmax must be a reference maximum up to the tolerance
      auto am = be->argmax();
      ASSERT_TRUE(am.is_ok());
      const double ref_max = *std::max_element(want.begin(), want.end());
      double norm = 0;
      for (double v : want) norm += v * v;
      norm = std::sqrt(norm / double(want.size()));
      EXPECT_GE(want[size_t(*am)], ref_max - 1e-2 * norm) << "argmax " << *am << ", pos " << pos;
    }
    std::printf("%s %s: worst rel L2 hidden %.2e logits %.2e\n", tc.name, cuda::mode_name(mode),
                worst_hidden, worst_logits);
    std::fflush(stdout);
  }
#endif
}

INSTANTIATE_TEST_SUITE_P(
    Formats, CudaBackendTest,
    testing::Values(Case{"smollm4_bf16", "smollm2-135m", 4, WeightType::kBF16, false},
                    Case{"smollm4_f16", "smollm2-135m", 4, WeightType::kF16, false},
                    Case{"smollm4_q8_0", "smollm2-135m", 4, WeightType::kQ8_0, false},
                    Case{"smollm4_q4_0", "smollm2-135m", 4, WeightType::kQ4_0, false},
                    Case{"smollm4_q4_1", "smollm2-135m", 4, WeightType::kQ4_1, false},
                    Case{"smollm2_variant_q8_0", "smollm2-135m", 2, WeightType::kQ8_0, true},
                    // the tensor-core attention: plain, and with the variant's sliding window
                    // (ranges starting at odd positions) and partial rope
                    Case{"smollm2_hd128_q8_0", "smollm2-135m", 2, WeightType::kQ8_0, false,
                         std::nullopt, 128},
                    Case{"smollm2_hd128_variant_q8_0", "smollm2-135m", 2, WeightType::kQ8_0, true,
                         std::nullopt, 128},
                    Case{"phi4_1layer_bf16", "phi-4", 1, WeightType::kBF16, false},
                    Case{"phi4_1layer_f16", "phi-4", 1, WeightType::kF16, false},
                    Case{"phi4_1layer_q8_0", "phi-4", 1, WeightType::kQ8_0, false},
                    Case{"phi4_1layer_q4_0", "phi-4", 1, WeightType::kQ4_0, false},
                    Case{"phi4_1layer_q4_1", "phi-4", 1, WeightType::kQ4_1, false},
                    // K-quants, converted at upload (Q4_K -> q4_1, Q6_K -> q8_16): d_model and
                    // d_ff must be multiples of 256, so Phi-4's shape, not SmolLM2's
                    Case{"phi4_1layer_q4_k", "phi-4", 1, WeightType::kQ4_K, false},
                    Case{"phi4_1layer_q6_k", "phi-4", 1, WeightType::kQ6_K, false},
                    // Q5 types, converted at upload to q8_16; Q5_K_M's mix with Q6_K fuses q|k|v
                    // of two block types
                    Case{"phi4_1layer_q5_0", "phi-4", 1, WeightType::kQ5_0, false},
                    Case{"phi4_1layer_q5_1", "phi-4", 1, WeightType::kQ5_1, false},
                    Case{"phi4_1layer_q5_k", "phi-4", 1, WeightType::kQ5_K, false},
                    Case{"phi4_1layer_q5_k_m", "phi-4", 1, WeightType::kQ5_K, false,
                         WeightType::kQ6_K}),
    case_name);

TEST(CudaBackendErrors, RejectsBadInputsWithStatus) {
#if !defined(PDVM_HAVE_CUDA)
  GTEST_SKIP() << "built without CUDA (nvcc not found at configure time)";
#else
  auto n_dev = cuda::cuda_device_count();
  if (!n_dev.is_ok()) GTEST_SKIP() << n_dev.status().message();
  auto spec = model::parse_shape("smollm2-135m");
  ASSERT_TRUE(spec.is_ok());
  spec->config.n_layers = 1;
  auto model = model::make_synthetic_model(*spec);
  ASSERT_TRUE(model.is_ok());
  cuda::CudaOptions opt;
  opt.context = 8;
  auto be = cuda::make_cuda_backend(*model, opt);
  ASSERT_TRUE(be.is_ok()) << be.status().message();
  EXPECT_EQ((*be)->execute_layer(0, 8).code(), StatusCode::kOutOfRange);
  EXPECT_EQ((*be)->execute_layer(1, 0).code(), StatusCode::kOutOfRange);
  EXPECT_EQ((*be)->embed(-1).code(), StatusCode::kOutOfRange);
  EXPECT_EQ((*be)->embed(model->config.vocab_size).code(), StatusCode::kOutOfRange);
  opt.attn_chunk = 65;
  EXPECT_FALSE(cuda::make_cuda_backend(*model, opt).is_ok());
  // rows that do not fill their blocks (Q4_K is 256 wide; d_model is 576): a clear error, no read
  core::Model m2 = *model;
  m2.layers[0].wq.type = WeightType::kQ4_K;
  opt.attn_chunk = 16;
  auto bad = cuda::make_cuda_backend(m2, opt);
  ASSERT_FALSE(bad.is_ok());
  EXPECT_NE(bad.status().message().find("not a multiple"), std::string::npos);
  std::printf("expected error: %s\n", bad.status().message().c_str());
  // a fused matrix mixing a float type with another: Unsupported, naming both
  core::Model m3 = *model;
  m3.layers[0].wq.type = m3.layers[0].wk.type == WeightType::kF16 ? WeightType::kBF16 : WeightType::kF16;
  auto bad3 = cuda::make_cuda_backend(m3, opt);
  ASSERT_FALSE(bad3.is_ok());
  EXPECT_EQ(bad3.status().code(), StatusCode::kUnsupported);
  std::printf("expected error: %s\n", bad3.status().message().c_str());
#endif
}

}  // namespace
}  // namespace pdvm
