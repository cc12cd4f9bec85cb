// The native pdvm file (formats/pdvm_file.h, model/load_pdvm.h): config round trip; and bad
// files -- inconsistent row pointers, chunk bases, deltas, columns past the row, masks, scales,
// wrong dtypes or lengths, unknown versions -- rejected at load with an error naming the file,
// the tensor and the row, never read out of bounds (run under -fsanitize=address,undefined too).
// Random byte flips in the index arrays must give either a clean error or a model whose every
// matvec stays in bounds.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>
#include <random>

#include "scratch_dir.h"
#include "core/thread_pool.h"
#include "cpu/matvec.h"
#include "formats/pdvm_file.h"
#include "formats/safetensors.h"
#include "model/convert.h"
#include "model/load_pdvm.h"

namespace fs = std::filesystem;
using namespace pdvm;

namespace {

struct Tensor {
  std::string name, dtype;
  std::vector<int64_t> shape;
  std::vector<uint8_t> bytes;
};
struct Contents {
  std::vector<Tensor> tensors;
  std::map<std::string, std::string> meta;
  Tensor* find(const std::string& name) {
    for (auto& t : tensors)
      if (t.name == name) return &t;
    return nullptr;
  }
};

// A converted fixture (llama: d_model 64, d_ff 96, 2 layers), as editable tensors.
Contents converted(model::CompressFormat fmt, double sparsity) {
  const fs::path out = test::scratch_path("pdvm_file_src.pdvm");
  model::ConvertOptions o;
  o.format = fmt;
  o.sparsity = sparsity;
  const Status s = model::convert_model_file((fs::path(PDVM_TEST_DATA) / "fixtures" / "llama").string(), out.string(), o);
  EXPECT_TRUE(s.is_ok()) << s.message();
  auto f = formats::SafetensorsFile::open(out.string());
  EXPECT_TRUE(f.is_ok());
  Contents c;
  if (!f.is_ok()) return c;
  c.meta = f->metadata();
  for (const auto& t : f->tensors()) c.tensors.push_back({t.name, t.dtype, t.shape, std::vector<uint8_t>(t.data, t.data + t.n_bytes)});
  return c;
}

std::string write(const Contents& c, const std::string& name = "edited.pdvm") {
  const std::string path = test::scratch_path(name).string();
  std::vector<formats::SafetensorsTensorToWrite> ts;
  for (const auto& t : c.tensors) ts.push_back({t.name, t.dtype, t.shape, t.bytes.data(), t.bytes.size()});
  const Status s = formats::write_safetensors(path, ts, c.meta);
  EXPECT_TRUE(s.is_ok()) << s.message();
  return path;
}

template <typename T>
T get(const Tensor& t, size_t i) {
  T v;
  std::memcpy(&v, t.bytes.data() + i * sizeof(T), sizeof(T));
  return v;
}
template <typename T>
void set(Tensor& t, size_t i, T v) {
  std::memcpy(t.bytes.data() + i * sizeof(T), &v, sizeof(T));
}

// Runs every matrix of a loaded model once (under ASan this proves in-bounds reads).
void touch_all(const core::Model& m) {
  core::ThreadPool pool(1);
  cpu::PreparedInput px(std::max(m.config.d_model, m.config.d_ff));
  std::vector<float> x(size_t(std::max(m.config.d_model, m.config.d_ff)), 0.5f), y(4096);
  for (const auto& l : m.layers)
    for (const core::Matrix* w : {&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down}) {
      ASSERT_LE(w->rows, int64_t(y.size()));
      px.prepare(x.data(), w->cols);
      cpu::matvec(*w, px, y.data(), pool);
    }
}

void expect_error(const Contents& c, const std::vector<std::string>& parts) {
  const std::string path = write(c);
  auto r = model::load_pdvm(path);
  ASSERT_FALSE(r.is_ok()) << "accepted a bad file";
  for (const auto& p : parts) EXPECT_NE(r.status().message().find(p), std::string::npos) << r.status().message();
  EXPECT_NE(r.status().message().find("edited.pdvm"), std::string::npos) << r.status().message();
}

}  // namespace

TEST(PdvmFile, ConfigJsonRoundTrip) {
  core::ModelConfig c;
  c.arch = core::Arch::kPhi3;
  c.d_model = 64; c.d_ff = 96; c.n_layers = 2; c.n_heads = 4; c.n_kv_heads = 2; c.head_dim = 16;
  c.vocab_size = 300; c.max_seq = 128; c.rms_eps = 1e-6f; c.rope_theta = 5e5f; c.rope_dim = 16;
  c.rope_style = core::RopeStyle::kInterleaved;
  c.rope_scaling.type = core::RopeScalingType::kLlama3;
  c.rope_scaling.factor = 8;
  c.rope_freq_factors = std::vector<float>(8, 1.5f);
  c.qkv_bias = true; c.tie_embeddings = true; c.sliding_window = 32; c.bos_id = 1; c.eos_ids = {2, 7};
  auto back = formats::config_from_json(formats::config_to_json(c), "t");
  ASSERT_TRUE(back.is_ok()) << back.status().message();
  EXPECT_EQ(formats::config_to_json(*back), formats::config_to_json(c));
  EXPECT_FALSE(formats::config_from_json("{\"arch\": \"gpt5\"}", "t").is_ok());
  EXPECT_FALSE(formats::config_from_json("[1]", "t").is_ok());
}

TEST(PdvmFile, ValidFilesLoadAndMatricesKeepTheirFormat) {
  for (auto fmt : {model::CompressFormat::kMdCsr, model::CompressFormat::kBitmapI8, model::CompressFormat::kI8Row}) {
    const Contents c = converted(fmt, 0.5);
    auto r = model::load_pdvm(write(c, "valid.pdvm"));
    ASSERT_TRUE(r.is_ok()) << r.status().message();
    const auto want = fmt == model::CompressFormat::kMdCsr    ? core::WeightType::kMdCsr
                      : fmt == model::CompressFormat::kBitmapI8 ? core::WeightType::kBitmapI8
                                                              : core::WeightType::kI8Row;
    EXPECT_EQ(r->model.layers[1].w_down.type, want);
    EXPECT_EQ(r->model.tok_embd.type, core::WeightType::kF32);  // embeddings stay as they were
    if (fmt != model::CompressFormat::kI8Row) {
      EXPECT_EQ(r->model.layers[0].wq.sparse->n_nonzero, 64 * 32);  // 50% of each 64-column row
    }
    touch_all(r->model);
  }
}

TEST(PdvmFile, MdCsrInconsistenciesAreRejected) {
  const Contents base = converted(model::CompressFormat::kMdCsr, 0.5);
  const std::string w = "layers.1.w_gate";  // [96, 64]: 32 entries per row = 2 chunks
  struct Case { const char* what; std::function<void(Contents&)> edit; std::vector<std::string> expect; };
  const std::vector<Case> cases = {
      {"row_ptr decreases", [&](Contents& c) { set<uint32_t>(*c.find(w + ".row_ptr"), 5, 1); }, {w, "row 4", "decreases"}},
      {"row_ptr past the chunks", [&](Contents& c) { auto& t = *c.find(w + ".row_ptr"); set<uint32_t>(t, 96, get<uint32_t>(t, 96) + 1); }, {w, "chunk"}},
      {"chunk base past cols", [&](Contents& c) { set<uint16_t>(*c.find(w + ".chunk_base"), 6, 64); }, {w, "row 3", "column index reaches"}},
      {"delta runs past the row", [&](Contents& c) { c.find(w + ".deltas")->bytes[16 * 7 + 15] = 200; }, {w, "row 3", "column index reaches"}},
      {"columns go back", [&](Contents& c) { set<uint16_t>(*c.find(w + ".chunk_base"), 9, 0); }, {w, "row 4", "does not follow"}},
      {"NaN scale", [&](Contents& c) { set<float>(*c.find(w + ".row_scale"), 10, std::nanf("")); }, {w, "row 10", "scale"}},
      {"values too short", [&](Contents& c) { auto& t = *c.find(w + ".values"); t.bytes.resize(t.bytes.size() - 16); t.shape[0] -= 16; }, {w, "values"}},
      {"deltas missing", [&](Contents& c) { auto& v = c.tensors; v.erase(std::find_if(v.begin(), v.end(), [&](const Tensor& t) { return t.name == w + ".deltas"; })); }, {w + ".deltas", "missing"}},
      {"row_ptr wrong dtype", [&](Contents& c) { c.find(w + ".row_ptr")->dtype = "I32"; }, {w, "dtype"}},
      {"unknown version", [&](Contents& c) { c.meta["pdvm.format_version"] = "99"; }, {"version"}},
      {"no config", [&](Contents& c) { c.meta.erase("pdvm.config"); }, {"pdvm.config"}},
      {"matrix shape against config", [&](Contents& c) {
         auto j = nlohmann::json::parse(c.meta["pdvm.matrices"]); j[w]["rows"] = 95; c.meta["pdvm.matrices"] = j.dump(); }, {w}},
  };
  for (const auto& k : cases) {
    SCOPED_TRACE(k.what);
    Contents c = base;
    k.edit(c);
    expect_error(c, k.expect);
  }
}

TEST(PdvmFile, BitmapAndInt8InconsistenciesAreRejected) {
  {
    const Contents base = converted(model::CompressFormat::kBitmapI8, 0.5);
    const std::string w = "layers.0.w_down";  // [64, 96]: 2 mask words per row
    Contents c = base;
    set<uint64_t>(*c.find(w + ".masks"), 2 * 5 + 1, get<uint64_t>(*c.find(w + ".masks"), 11) | (uint64_t(1) << 40));
    expect_error(c, {w, "row 5", "past cols"});
    c = base;
    set<uint64_t>(*c.find(w + ".masks"), 0, 0);
    expect_error(c, {w, "row 0", "masks mark"});
    c = base;
    set<uint32_t>(*c.find(w + ".row_ptr"), 64, 5);
    expect_error(c, {w, "row_ptr ends"});
  }
  {
    Contents c = converted(model::CompressFormat::kI8Row, 0.0);
    const std::string w = "layers.0.wo";  // rows of 4 + 64 bytes
    set<float>(*c.find(w), size_t(68 * 7) / 4, INFINITY);
    expect_error(c, {w, "row 7", "scale"});
  }
}

TEST(PdvmFile, RandomByteFlipsNeverReadOutOfBounds) {
  std::mt19937 rng(5);
  for (auto fmt : {model::CompressFormat::kMdCsr, model::CompressFormat::kBitmapI8}) {
    const Contents base = converted(fmt, 0.7);
    std::vector<size_t> index_tensors;
    for (size_t i = 0; i < base.tensors.size(); ++i) {
      const std::string& n = base.tensors[i].name;
      if (n.find(".row_ptr") != std::string::npos || n.find(".chunk_base") != std::string::npos ||
          n.find(".deltas") != std::string::npos || n.find(".masks") != std::string::npos)
        index_tensors.push_back(i);
    }
    ASSERT_FALSE(index_tensors.empty());
    int rejected = 0;
    for (int iter = 0; iter < 150; ++iter) {
      Contents c = base;
      Tensor& t = c.tensors[index_tensors[rng() % index_tensors.size()]];
      for (int k = 0; k < 3; ++k) t.bytes[rng() % t.bytes.size()] ^= uint8_t(1u << (rng() % 8));
      std::vector<formats::SafetensorsTensorToWrite> ts;
      for (const auto& x : c.tensors) ts.push_back({x.name, x.dtype, x.shape, x.bytes.data(), x.bytes.size()});
      auto r = model::load_pdvm(write(c, "flipped.pdvm"));
      if (!r.is_ok()) { ++rejected; continue; }
      touch_all(r->model);  // accepted: must be in bounds (ASan)
    }
    EXPECT_GT(rejected, 100) << "most random flips of index arrays break an invariant";
  }
}
