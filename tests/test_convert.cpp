// The converter (model/convert.h) on the tiny fixture models (tests/data/fixtures):
//  - int8, and 0%-sparsity MdCSR and bitmap conversions give logits within 3e-2 * max|logit| of
//    transformers' (the tolerance test_hf_fixtures uses for the fast int8 paths: per-row int8
//    X
//  - encode -> decode is exact w.r.t. the pruned, quantized matrix;
//  - magnitude and activation-aware pruning remove the lowest-scoring weights of each row;
//  - a converted file loads back (load_pdvm) and gives bitwise the logits of the in-memory model.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "scratch_dir.h"
#include "cpu/cpu_backend.h"
#include "formats/int8_rows.h"
#include "model/convert.h"
#include "model/load.h"
#include "model/load_pdvm.h"

namespace fs = std::filesystem;
using namespace pdvm;

namespace {

struct Fixture {
  std::string path;
  std::vector<int32_t> tokens;
  std::vector<float> logits;
  int vocab = 0;
};

Fixture read_fixture(const std::string& name) {
  Fixture f;
  const fs::path dir = fs::path(PDVM_TEST_DATA) / "fixtures" / name;
  std::ifstream in(dir / "expected.json");
  const auto j = nlohmann::json::parse(in);
  f.tokens = j.at("tokens").get<std::vector<int32_t>>();
  const auto shape = j.at("logits_shape").get<std::vector<int>>();
  f.vocab = shape.at(1);
  f.path = j.at("format") == "gguf" ? (dir / j.at("model_file").get<std::string>()).string() : dir.string();
  std::ifstream bin(dir / j.at("logits_file").get<std::string>(), std::ios::binary);
  f.logits.resize(size_t(shape[0]) * size_t(shape[1]));
  bin.read(reinterpret_cast<char*>(f.logits.data()), std::streamsize(f.logits.size() * 4));
  return f;
}

std::vector<float> run_logits(const core::Model& m, const std::vector<int32_t>& tokens) {
  cpu::CpuOptions o;
  o.context = int(tokens.size());
  o.threads = 2;
  auto backend = cpu::make_cpu_backend(m, o);
  EXPECT_TRUE(backend.is_ok()) << backend.status().message();
  std::vector<float> out;
  if (!backend.is_ok()) return out;
  for (size_t pos = 0; pos < tokens.size(); ++pos) {
    auto l = (*backend)->execute_model(tokens[pos], int32_t(pos));
    EXPECT_TRUE(l.is_ok()) << l.status().message();
    if (!l.is_ok()) return out;
    out.insert(out.end(), l->begin(), l->end());
  }
  return out;
}

double rel_err(const std::vector<float>& a, const std::vector<float>& ref) {
  double mx = 0, err = 0;
  for (float v : ref) mx = std::max(mx, double(std::fabs(v)));
  for (size_t i = 0; i < ref.size() && i < a.size(); ++i) err = std::max(err, double(std::fabs(a[i] - ref[i])));
  return a.size() == ref.size() ? err / std::max(1.0, mx) : INFINITY;
}

const core::Matrix& layer_matrix(const core::Model& m, int l, int i) {
  const auto& lw = m.layers[size_t(l)];
  const core::Matrix* ms[] = {&lw.wq, &lw.wk, &lw.wv, &lw.wo, &lw.w_gate, &lw.w_up, &lw.w_down};
  return *ms[i];
}

}  // namespace

class ConvertFixture : public testing::TestWithParam<std::string> {};

TEST_P(ConvertFixture, LogitsWithinToleranceOfTransformers) {
  const Fixture f = read_fixture(GetParam());
  auto loaded = model::load_model(f.path);
  ASSERT_TRUE(loaded.is_ok()) << loaded.status().message();
  for (auto fmt : {model::CompressFormat::kI8Row, model::CompressFormat::kMdCsr, model::CompressFormat::kBitmapI8}) {
    SCOPED_TRACE(model::compress_format_name(fmt));
    model::ConvertOptions o;
    o.format = fmt;
    model::ConvertReport rep;
    auto m = model::compress_model(loaded->model, o, nullptr, &rep);
    ASSERT_TRUE(m.is_ok()) << m.status().message();
    const std::vector<float> logits = run_logits(*m, f.tokens);
    const double err = rel_err(logits, f.logits);
    std::printf("%s %s: max |logit - hf| / max |hf| = %.2e\n", GetParam().c_str(), model::compress_format_name(fmt), err);
    EXPECT_LE(err, 3e-2);
  }
}

INSTANTIATE_TEST_SUITE_P(Fixtures, ConvertFixture,
                         testing::Values("llama", "qwen2", "mistral", "phi3", "gguf_llama_q8_0", "gguf_llama_q4_k_m"));

TEST(Convert, DecodeIsExactlyThePrunedQuantizedMatrix) {
  auto loaded = model::load_model((fs::path(PDVM_TEST_DATA) / "fixtures" / "llama").string());
  ASSERT_TRUE(loaded.is_ok()) << loaded.status().message();
  const core::Model& src = loaded->model;
  for (auto fmt : {model::CompressFormat::kI8Row, model::CompressFormat::kMdCsr, model::CompressFormat::kBitmapI8})
    for (double s : {0.0, 0.3, 0.5, 0.7}) {
      SCOPED_TRACE(testing::Message() << model::compress_format_name(fmt) << " sparsity " << s);
      model::ConvertOptions o;
      o.format = fmt;
      o.sparsity = s;
      auto m = model::compress_model(src, o, nullptr);
      ASSERT_TRUE(m.is_ok()) << m.status().message();
      for (int l = 0; l < src.config.n_layers; ++l)
        for (int i = 0; i < 7; ++i) {
          const core::Matrix& a = layer_matrix(src, l, i);
          const core::Matrix& b = layer_matrix(*m, l, i);
          std::vector<float> row(static_cast<size_t>(a.cols)), got(static_cast<size_t>(a.cols));
          std::vector<int8_t> q(static_cast<size_t>(a.cols));
          const auto n_prune = int64_t(std::floor(s * double(a.cols) + 1e-9));
          for (int64_t r = 0; r < a.rows; ++r) {
            model::dequantize_matrix_row(a, r, row.data());
            // Prune: the n_prune smallest |w| (ties to the higher column), as the converter does.
            std::vector<int32_t> idx(static_cast<size_t>(a.cols));
            for (int32_t c = 0; c < int32_t(a.cols); ++c) idx[size_t(c)] = c;
            std::sort(idx.begin(), idx.end(), [&](int32_t x, int32_t y) {
              const float ax = std::fabs(row[size_t(x)]), ay = std::fabs(row[size_t(y)]);
              return ax < ay || (ax == ay && x > y);
            });
            for (int64_t k = 0; k < n_prune; ++k) row[size_t(idx[size_t(k)])] = 0;
            const float scale = formats::quantize_row_i8(row.data(), a.cols, q.data());
            model::dequantize_matrix_row(b, r, got.data());
            for (int64_t c = 0; c < a.cols; ++c)
              ASSERT_EQ(got[size_t(c)], scale * float(q[size_t(c)])) << "layer " << l << " matrix " << i << " row " << r << " col " << c;
          }
        }
    }
}

TEST(Convert, ActivationAwarePruningUsesNorms) {
  const Fixture f = read_fixture("llama");
  auto loaded = model::load_model(f.path);
  ASSERT_TRUE(loaded.is_ok());
  const core::Model& src = loaded->model;
  auto norms = model::gather_activation_norms(src, f.tokens, 2);
  ASSERT_TRUE(norms.is_ok()) << norms.status().message();
  ASSERT_EQ(norms->attn_in.size(), size_t(src.config.n_layers));
  ASSERT_EQ(norms->ffn_hidden[0].size(), size_t(src.config.d_ff));
  for (float v : norms->attn_in[0]) EXPECT_GT(v, 0.0f);
  model::ConvertOptions o;
  o.format = model::CompressFormat::kBitmapI8;
  o.sparsity = 0.5;
  o.prune = model::PruneMethod::kWanda;
  EXPECT_FALSE(model::compress_model(src, o, nullptr).is_ok());  // needs norms
  auto m = model::compress_model(src, o, &*norms);
  ASSERT_TRUE(m.is_ok()) << m.status().message();
  // In every row of layer 0's w_down, each kept weight scores (|w| * norm) at least as high as
  // each pruned one.
  const core::Matrix& a = src.layers[0].w_down;
  const core::Matrix& b = m->layers[0].w_down;
  const auto& nrm = norms->ffn_hidden[0];
  std::vector<float> row(static_cast<size_t>(a.cols)), got(static_cast<size_t>(a.cols));
  for (int64_t r = 0; r < a.rows; ++r) {
    model::dequantize_matrix_row(a, r, row.data());
    model::dequantize_matrix_row(b, r, got.data());
    float min_kept = INFINITY, max_pruned = 0;
    int pruned = 0;
    for (int64_t c = 0; c < a.cols; ++c) {
      const float score = std::fabs(row[size_t(c)]) * nrm[size_t(c)];
      if (got[size_t(c)] == 0) { max_pruned = std::max(max_pruned, score); ++pruned; }
      else min_kept = std::min(min_kept, score);
    }
    EXPECT_GE(pruned, a.cols / 2);
    EXPECT_GE(min_kept, max_pruned) << "row " << r;
  }
  // Sanity: these differ from plain magnitude pruning somewhere.
  o.prune = model::PruneMethod::kMagnitude;
  auto mag = model::compress_model(src, o, nullptr);
  ASSERT_TRUE(mag.is_ok());
  EXPECT_NE(run_logits(*m, f.tokens), run_logits(*mag, f.tokens));
}

TEST(Convert, FileRoundTripGivesIdenticalLogits) {
  const Fixture f = read_fixture("qwen2");  // biases too
  const fs::path out = test::scratch_path("convert_roundtrip.pdvm");
  for (auto fmt : {model::CompressFormat::kMdCsr, model::CompressFormat::kBitmapI8, model::CompressFormat::kI8Row,
                   model::CompressFormat::kQ8_0}) {
    SCOPED_TRACE(model::compress_format_name(fmt));
    model::ConvertOptions o;
    o.format = fmt;
    o.sparsity = fmt == model::CompressFormat::kQ8_0 ? 0.0 : 0.3;
    o.compress_output = true;
    model::ConvertReport rep;
    const Status s = model::convert_model_file(f.path, out.string(), o, &rep);
    ASSERT_TRUE(s.is_ok()) << s.message();
    EXPECT_EQ(rep.file_bytes, size_t(fs::file_size(out)));
    auto file = model::load_pdvm(out.string());
    ASSERT_TRUE(file.is_ok()) << file.status().message();
    auto src = model::load_model(f.path);
    ASSERT_TRUE(src.is_ok());
    auto mem = model::compress_model(src->model, o, nullptr);
    ASSERT_TRUE(mem.is_ok());
    EXPECT_EQ(run_logits(file->model, f.tokens), run_logits(*mem, f.tokens));
    EXPECT_EQ(file->model.weight_bytes_per_token(), mem->weight_bytes_per_token());
  }
  fs::remove(out);
}
