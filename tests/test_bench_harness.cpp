// The benchmark harness checked against independent counts: the bytes per token it reports
// equal the bytes of every tensor the synthetic model allocated (walked here, matrix by matrix)
// plus the KV cache read at the depth; its JSON keeps a stable schema; bad input gets errors that
// list what is available. The CLI is run once end to end when it has the `bench` subcommand.
#include <gtest/gtest.h>

#include <array>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <tuple>

#include "scratch_dir.h"
#include "bench/harness.h"
#include "core/traffic.h"
#include "model/synthetic.h"

namespace {

using pdvm::bench::BenchOptions;
using pdvm::bench::ShapeArgs;

ShapeArgs tiny_shape() {
  ShapeArgs a;
  a.d_model = 64;
  a.d_ff = 96;
  a.n_heads = 4;
  a.n_kv_heads = 2;
  a.vocab_size = 320;
  a.n_layers = 3;
  a.layer_format = "q4_1";
  a.head_format = "q8_0";
  return a;
}

BenchOptions tiny_options() {
  BenchOptions o;
  o.shape = tiny_shape();
  o.threads = 1;
  o.tokens = 1;
  o.warmup = 0;
  o.repeats = 2;
  o.depths = {0, 7};
  o.ceiling_bytes = size_t(4) << 20;
  o.progress = false;
  o.command = "test_bench_harness";
  return o;
}

// Bytes of one matrix counted from its arrays: a dense one is rows x row bytes; a sparse one is
// row_ptr + row_scale + values, plus MdCSR's deltas (one per value) and chunk bases (2 B per
// chunk, row_ptr[rows] chunks) or the bitmap's masks (8 B per 64 columns per row).
size_t matrix_array_bytes(const pdvm::core::Matrix& w) {
  if (w.sparse == nullptr) return size_t(w.rows) * w.row_stride();
  const auto& s = *w.sparse;
  size_t n = size_t(w.rows + 1) * 4 + size_t(w.rows) * 4 + size_t(s.n_values);
  if (w.type == pdvm::core::WeightType::kMdCsr) n += size_t(s.n_values) + size_t(s.row_ptr[w.rows]) * 2;
  else n += size_t(w.rows) * size_t((w.cols + 63) / 64) * 8;
  return n;
}

// Every byte a decode step reads from the model, from the Model's own views: each matrix's
// arrays, every f32 vector, and one row of the embedding.
size_t walk_model_bytes(const pdvm::core::Model& m) {
  size_t n = 0;
  for (const auto& l : m.layers) {
    for (const auto* w : {&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down}) n += matrix_array_bytes(*w);
    for (const auto* v : {&l.attn_norm, &l.ffn_norm, &l.bq, &l.bk, &l.bv}) n += v->size() * sizeof(float);
  }
  n += matrix_array_bytes(m.output) + m.output_norm.size() * sizeof(float);
  n += m.tok_embd.row_stride();
  return n;
}

TEST(BenchHarness, BytesPerTokenEqualsAllocatedTensorsPlusKvRead) {
  const BenchOptions o = tiny_options();
  auto report = pdvm::bench::run_bench(o);
  ASSERT_TRUE(report.is_ok()) << report.status().message();

  auto spec = pdvm::bench::make_synthetic_spec(o.shape);
  ASSERT_TRUE(spec.is_ok()) << spec.status().message();
  auto model = pdvm::model::make_synthetic_model(*spec);
  ASSERT_TRUE(model.is_ok()) << model.status().message();
  const size_t weights = walk_model_bytes(*model);
  // A second, independent count of the same thing (Model's own sum omits the embedding row).
  EXPECT_EQ(weights, model->weight_bytes_per_token() + model->tok_embd.row_stride());

  const auto& c = model->config;
  const size_t kv_row = size_t(2) * size_t(c.n_kv_heads) * size_t(c.head_dim) * sizeof(float);  // K+V, f32
  ASSERT_EQ(report->results.size(), 2u);
  for (const auto& d : report->results) {
    SCOPED_TRACE("depth " + std::to_string(d.depth));
    // the step at position `depth` attends to depth + 1 positions in every layer
    const size_t kv = size_t(c.n_layers) * size_t(d.depth + 1) * kv_row;
    EXPECT_EQ(d.traffic.weight_bytes(), weights);
    EXPECT_EQ(d.traffic.kv_read_bytes, kv);
    EXPECT_EQ(d.traffic.total_bytes(), weights + kv);
    EXPECT_GT(d.ms_per_token.median, 0.0);
    EXPECT_LE(d.ms_per_token.min, d.ms_per_token.median);
    EXPECT_GE(d.ms_per_token.max, d.ms_per_token.median);
    EXPECT_NEAR(d.gbps, double(weights + kv) / (d.ms_per_token.median * 1e6), 1e-9 * d.gbps);
  }
  EXPECT_GT(report->ceiling.read_gbps, 0.0);
  // the JSON carries the same numbers
  const auto j = pdvm::bench::to_json(*report);
  EXPECT_EQ(j["results"][1]["bytes_per_token"]["total"].get<size_t>(),
            weights + size_t(c.n_layers) * 8 * kv_row);
}

// pdvm's int8 formats: bytes per token count the sparse arrays (which core::matrix_bytes, from
// types alone, cannot), the report carries the sparsity, and the kept fraction moves the bytes.
std::string error_of(const BenchOptions& o);

class BenchInt8Formats : public testing::TestWithParam<std::tuple<const char*, double>> {};

TEST_P(BenchInt8Formats, BytesPerTokenCountSparseArrays) {
  const auto [format, sparsity] = GetParam();
  const bool sparse = std::string(format) != "i8_row";
  BenchOptions o = tiny_options();
  o.depths = {4};
  o.shape.layer_format = format;
  o.shape.head_format = "";  // default: the layer format, q8_0 for the sparse ones
  if (sparse) o.shape.sparsity = sparsity;
  auto report = pdvm::bench::run_bench(o);
  ASSERT_TRUE(report.is_ok()) << report.status().message();
  auto spec = pdvm::bench::make_synthetic_spec(o.shape);
  ASSERT_TRUE(spec.is_ok()) << spec.status().message();
  EXPECT_DOUBLE_EQ(spec->sparsity, sparse ? sparsity : 0.0);
  auto model = pdvm::model::make_synthetic_model(*spec);
  ASSERT_TRUE(model.is_ok()) << model.status().message();
  EXPECT_EQ(pdvm::core::weight_type_name(model->layers[0].w_up.type), format);
  EXPECT_EQ(pdvm::core::weight_type_name(model->output.type), sparse ? "q8_0" : "i8_row");
  const size_t weights = walk_model_bytes(*model);
  EXPECT_EQ(weights, model->weight_bytes_per_token() + model->tok_embd.row_stride());
  const auto& c = model->config;
  const size_t kv = size_t(c.n_layers) * 5 * size_t(2 * c.n_kv_heads * c.head_dim) * sizeof(float);
  ASSERT_EQ(report->results.size(), 1u);
  EXPECT_EQ(report->results[0].traffic.weight_bytes(), weights);
  EXPECT_EQ(report->results[0].traffic.total_bytes(), weights + kv);
  EXPECT_EQ(report->model_weight_bytes, weights);
  // layer weights in bytes per weight: bitmap k + 1/8 (+ 8 B per row), MdCSR ~2.13 k, i8_row 1
  size_t layer_weights = 0;
  for (const auto& l : model->layers)
    for (const auto* w : {&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down})
      layer_weights += size_t(w->rows * w->cols);
  const double per_weight = double(report->results[0].traffic.layer_weight_bytes) / double(layer_weights);
  const double k = 1.0 - sparsity;
  const double want = std::string(format) == "bitmap_i8" ? k + 0.25 : sparse ? 2.13 * k + 0.25 : 1.0;
  EXPECT_NEAR(per_weight, want, std::string(format) == "mdcsr" ? 0.35 : 0.1) << format;
  const auto j = pdvm::bench::to_json(*report);
  EXPECT_TRUE(pdvm::bench::validate_report_json(j).is_ok());
  EXPECT_EQ(j["model"]["layer_format"], format);
  if (sparse) {
    ASSERT_TRUE(report->sparsity.has_value());
    EXPECT_DOUBLE_EQ(*report->sparsity, sparsity);
    EXPECT_DOUBLE_EQ(j["model"]["sparsity"].get<double>(), sparsity);
    EXPECT_NE(pdvm::bench::format_table(*report).find("% sparsity"), std::string::npos);
  } else {
    EXPECT_TRUE(j["model"]["sparsity"].is_null());
  }
}

INSTANTIATE_TEST_SUITE_P(Formats, BenchInt8Formats,
                         testing::Values(std::make_tuple("i8_row", 0.0), std::make_tuple("mdcsr", 0.3),
                                         std::make_tuple("mdcsr", 0.7), std::make_tuple("bitmap_i8", 0.5)),
                         [](const auto& info) {
                           return std::string(std::get<0>(info.param)) + "_" +
                                  std::to_string(int(std::lround(100 * std::get<1>(info.param))));
                         });

TEST(BenchHarness, SparseFormatsDefaultToHalfSparsity) {
  ShapeArgs a = tiny_shape();
  a.layer_format = "bitmap_i8";
  a.head_format = "";
  auto spec = pdvm::bench::make_synthetic_spec(a);
  ASSERT_TRUE(spec.is_ok()) << spec.status().message();
  EXPECT_DOUBLE_EQ(spec->sparsity, 0.5);
  EXPECT_EQ(spec->head_type, pdvm::core::WeightType::kQ8_0);
}

TEST(BenchHarness, BadSparsity) {
  for (double bad : {1.5, 1.0, -0.2}) {
    BenchOptions o = tiny_options();
    o.shape.layer_format = "mdcsr";
    o.shape.sparsity = bad;
    const std::string e = error_of(o);
    EXPECT_NE(e.find("--sparsity"), std::string::npos) << e;
    EXPECT_NE(e.find("[0, 1)"), std::string::npos) << e;
  }
  for (const char* dense : {"bf16", "q8_0", "i8_row"}) {
    BenchOptions o = tiny_options();
    o.shape.layer_format = dense;
    o.shape.sparsity = 0.5;
    const std::string e = error_of(o);
    EXPECT_NE(e.find("--sparsity applies to the sparse formats"), std::string::npos) << e;
    EXPECT_NE(e.find(dense), std::string::npos) << e;
  }
  BenchOptions h = tiny_options();
  h.shape.layer_format = "mdcsr";
  h.shape.head_format = "bitmap_i8";
  const std::string eh = error_of(h);
  EXPECT_NE(eh.find("cannot be sparse"), std::string::npos) << eh;
}

TEST(BenchHarness, MeanKvTrafficOverSeveralTokensAndSlidingWindow) {
  pdvm::core::ModelConfig c;
  c.d_model = 64; c.d_ff = 96; c.n_layers = 2; c.n_heads = 4; c.n_kv_heads = 2; c.head_dim = 16;
  c.vocab_size = 32;
  const auto types = pdvm::core::uniform_types(c, pdvm::core::WeightType::kQ8_0, pdvm::core::WeightType::kQ8_0);
  const size_t kv_row = 2 * 2 * 16 * 2;  // K+V, 2 kv heads x 16, f16
  // positions 10, 11, 12 attend to 11, 12, 13 positions: mean 12
  const auto t = pdvm::core::mean_token_traffic(c, types, 10, 3, 2);
  EXPECT_EQ(t.kv_read_bytes, size_t(2) * 12 * kv_row);
  c.sliding_window = 4;  // at most 4 positions, however deep
  EXPECT_EQ(pdvm::core::kv_read_bytes(c, 100, 2), size_t(2) * 4 * kv_row);
  EXPECT_EQ(pdvm::core::kv_read_bytes(c, 2, 2), size_t(2) * 3 * kv_row);
  // q8_0: 34 bytes per 32 weights; wq is [64, 64] -> 64 rows x 2 blocks x 34 B
  EXPECT_EQ(pdvm::core::matrix_bytes(pdvm::core::WeightType::kQ8_0, 64, 64), size_t(64 * 2 * 34));
}

TEST(BenchHarness, JsonSchemaIsStable) {
  BenchOptions o = tiny_options();
  o.depths = {3};
  o.prompt_tokens = 4;
  auto report = pdvm::bench::run_bench(o);
  ASSERT_TRUE(report.is_ok()) << report.status().message();
  const auto j = pdvm::bench::to_json(*report);
  const auto s = pdvm::bench::validate_report_json(j);
  ASSERT_TRUE(s.is_ok()) << s.message();
  // Required keys and their types (bench/results/README.md); a change here is a schema change.
  EXPECT_EQ(j["schema"], "pdvm-bench");
  EXPECT_EQ(j["schema_version"], 1);
  for (const char* k : {"date", "commit", "command", "build"}) EXPECT_TRUE(j[k].is_string()) << k;
  EXPECT_EQ(j["command"], "test_bench_harness");
  EXPECT_TRUE(j["device"]["name"].is_string());
  EXPECT_TRUE(j["ceiling"]["read_gbps"].is_number());
  EXPECT_EQ(j["model"]["layer_format"], "q4_1");
  EXPECT_EQ(j["model"]["head_format"], "q8_0");
  EXPECT_EQ(j["model"]["n_layers"], 3);
  EXPECT_EQ(j["results"].size(), 1u);
  EXPECT_EQ(j["results"][0]["depth"], 3);
  EXPECT_EQ(j["results"][0]["fill_method"].get<std::string>() == "none", false);
  EXPECT_TRUE(j["results"][0]["launches_per_token"].is_null());  // CPU
  EXPECT_EQ(j["prompt"]["tokens"], 4);

  // The validator must fail, and say where, when a key goes missing or changes type.
  auto missing = j;
  missing["results"][0]["bytes_per_token"].erase("kv");
  const auto s1 = pdvm::bench::validate_report_json(missing);
  EXPECT_FALSE(s1.is_ok());
  EXPECT_NE(s1.message().find("$.results[0].bytes_per_token.kv"), std::string::npos) << s1.message();
  auto wrong = j;
  wrong["ceiling"]["read_gbps"] = "fast";
  const auto s2 = pdvm::bench::validate_report_json(wrong);
  EXPECT_FALSE(s2.is_ok());
  EXPECT_NE(s2.message().find("read_gbps"), std::string::npos) << s2.message();
  auto version = j;
  version["schema_version"] = 2;
  EXPECT_FALSE(pdvm::bench::validate_report_json(version).is_ok());

  // A --ceiling report has no model and no results, and is valid too.
  BenchOptions c = tiny_options();
  c.ceiling_only = true;
  auto ceiling = pdvm::bench::run_bench(c);
  ASSERT_TRUE(ceiling.is_ok()) << ceiling.status().message();
  const auto jc = pdvm::bench::to_json(*ceiling);
  EXPECT_TRUE(jc["model"].is_null());
  EXPECT_TRUE(pdvm::bench::validate_report_json(jc).is_ok());
}

// --ceiling-mb unset (0) means the device's default buffer: 512 MiB on the CPU (the GPU's 2 GiB is
// checked on the GPU machine, in the JSON of every bench run); a given size is used as given, and
// one under 1 MiB is refused.
TEST(BenchHarness, CeilingBufferDefaultsPerDevice) {
  BenchOptions c = tiny_options();
  c.ceiling_only = true;
  c.ceiling_bytes = 0;
  auto def = pdvm::bench::run_bench(c);
  ASSERT_TRUE(def.is_ok()) << def.status().message();
  EXPECT_EQ(def->ceiling.n_bytes, size_t(512) << 20);
  c.ceiling_bytes = size_t(8) << 20;
  auto given = pdvm::bench::run_bench(c);
  ASSERT_TRUE(given.is_ok()) << given.status().message();
  EXPECT_EQ(given->ceiling.n_bytes, size_t(8) << 20);
  c.ceiling_bytes = 4096;
  auto small = pdvm::bench::run_bench(c);
  ASSERT_FALSE(small.is_ok());
  EXPECT_NE(small.status().message().find("at least 1 MiB"), std::string::npos) << small.status().message();
}

TEST(BenchHarness, CommittedResultsFollowTheSchema) {
  const std::filesystem::path dir = std::filesystem::path(PDVM_SOURCE_DIR) / "bench" / "results";
  if (!std::filesystem::exists(dir)) GTEST_SKIP() << "no " << dir;
  int n = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    if (e.path().extension() != ".json") continue;
    std::ifstream in(e.path());
    const auto j = nlohmann::json::parse(in, nullptr, false);
    ASSERT_FALSE(j.is_discarded()) << e.path() << " is not JSON";
    const auto s = pdvm::bench::validate_report_json(j);
    EXPECT_TRUE(s.is_ok()) << e.path() << ": " << s.message();
    ++n;
  }
  if (n == 0) GTEST_SKIP() << "no JSON in " << dir;
}

std::string error_of(const BenchOptions& o) {
  auto r = pdvm::bench::run_bench(o);
  return r.is_ok() ? std::string() : r.status().message();
}

TEST(BenchHarness, UnknownShapeListsKnownShapes) {
  BenchOptions o = tiny_options();
  o.shape = ShapeArgs{};
  o.shape.shape = "phi-5";
  const std::string e = error_of(o);
  ASSERT_FALSE(e.empty());
  EXPECT_NE(e.find("phi-5"), std::string::npos) << e;
  for (const auto& k : pdvm::model::known_shapes()) EXPECT_NE(e.find(k), std::string::npos) << e;
}

TEST(BenchHarness, HeadsNotDividingDModel) {
  BenchOptions o = tiny_options();
  o.shape.n_heads = 5;  // 64 % 5 != 0
  o.shape.n_kv_heads = 5;
  const std::string e = error_of(o);
  EXPECT_NE(e.find("heads (5) do not divide d_model (64)"), std::string::npos) << e;
  // missing dims for a custom shape are named
  BenchOptions m = tiny_options();
  m.shape.d_ff = 0;
  const std::string e2 = error_of(m);
  EXPECT_NE(e2.find("--d-ff"), std::string::npos) << e2;
}

TEST(BenchHarness, FormatTheBackendLacksListsAvailableOnes) {
  for (const char* bad : {"q3_K", "iq2_xs", "int3"}) {
    BenchOptions o = tiny_options();
    o.shape.layer_format = bad;
    const std::string e = error_of(o);
    ASSERT_FALSE(e.empty()) << bad;
    EXPECT_NE(e.find(bad), std::string::npos) << e;
    for (const auto& f : pdvm::bench::synthetic_formats()) EXPECT_NE(e.find(f), std::string::npos) << e;
  }
  BenchOptions h = tiny_options();
  h.shape.head_format = "q3_K";
  EXPECT_NE(error_of(h).find("--head-format"), std::string::npos);
  // a K-quant on rows that are not whole 256-blocks (the tiny shape is 64 wide): named, not run
  BenchOptions k = tiny_options();
  k.shape.layer_format = "q4_K";
  EXPECT_NE(error_of(k).find("not a multiple of the block size"), std::string::npos) << error_of(k);
  BenchOptions b = tiny_options();
  b.backend = "tpu";
  const std::string eb = error_of(b);
  EXPECT_NE(eb.find("cpu, cuda"), std::string::npos) << eb;
}

TEST(BenchHarness, CudaBackendWithoutGpuSaysWhy) {
  BenchOptions o = tiny_options();
  o.backend = "cuda";
  auto r = pdvm::bench::run_bench(o);
  if (r.is_ok()) GTEST_SKIP() << "a GPU is present: the cuda backend ran";
  const std::string& e = r.status().message();
  EXPECT_TRUE(e.find("built without CUDA") != std::string::npos || e.find("no GPU found") != std::string::npos ||
              e.find("cuda backend") != std::string::npos)
      << e;
}

// Runs a shell command; returns its exit status and stdout+stderr.
int run(const std::string& cmd, std::string& out) {
  out.clear();
  FILE* f = popen((cmd + " 2>&1").c_str(), "r");
  if (!f) return -1;
  std::array<char, 512> buf{};
  while (fgets(buf.data(), int(buf.size()), f)) out += buf.data();
  const int st = pclose(f);
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

// $PDVM_BENCH_CLI overrides the CLI path (to test a binary built outside this tree).
TEST(BenchHarness, CliRunsPhi4FourLayers) {
  const char* override_cli = std::getenv("PDVM_BENCH_CLI");
  const std::string cli = override_cli ? override_cli : PDVM_CLI_PATH;
  std::string out;
  if (run("'" + cli + "' --help", out) != 0 || out.find("bench") == std::string::npos)
    GTEST_SKIP() << "the pdvm CLI at " << cli << " has no bench subcommand yet";
  const std::string json = pdvm::test::scratch_path("bench_cli_phi4.json").string();
  // < 10 s on 2 cores (2.5 GB of q8_0 weights generated, 4 timed steps)
  const int rc = run("'" + cli + "' bench --shape phi-4 --layers 4 --tokens 4 --repeats 1 --warmup 1 -q "
                     "--ceiling-mb 64 --json '" + json + "'", out);
  ASSERT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("ms/layer"), std::string::npos) << out;
  EXPECT_NE(out.find("% ceil"), std::string::npos) << out;
  std::ifstream in(json);
  const auto j = nlohmann::json::parse(in, nullptr, false);
  ASSERT_FALSE(j.is_discarded());
  const auto s = pdvm::bench::validate_report_json(j);
  EXPECT_TRUE(s.is_ok()) << s.message();
  EXPECT_EQ(j["model"]["n_layers"], 4);
  EXPECT_EQ(j["model"]["d_model"], 5120);
  EXPECT_NE(j["command"].get<std::string>().find("--shape phi-4"), std::string::npos);
  // bad input: exit 2 with the list of shapes
  EXPECT_EQ(run("'" + cli + "' bench --shape nope -q", out), 2) << out;
  EXPECT_NE(out.find("smollm2-135m"), std::string::npos) << out;
  // --sparsity out of range, or for a dense format: exit 2 before anything is measured
  EXPECT_EQ(run("'" + cli + "' bench --shape phi-4 --format mdcsr --sparsity 1.5 -q", out), 2) << out;
  EXPECT_NE(out.find("[0, 1)"), std::string::npos) << out;
  EXPECT_EQ(run("'" + cli + "' bench --shape phi-4 --format bf16 --sparsity 0.5 -q", out), 2) << out;
  EXPECT_NE(out.find("sparse formats"), std::string::npos) << out;
}

}  // namespace
