// Bad input gives one clear error, never a crash: broken model directories and GGUF files
// (unsupported architecture, missing tensor, wrong shape, wrong dtype, bad config), a prompt
// longer than the context, bad CLI flags. Parser-level corruption (truncation, offsets past the
// end, huge counts) is covered by test_safetensors / test_gguf. Runs under ASan+UBSan in CI.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>

#include "scratch_dir.h"
#include "cpu/cpu_backend.h"
#include "formats/gguf.h"
#include "formats/safetensors.h"
#include "generate/generate.h"
#include "model/load.h"

namespace fs = std::filesystem;
using namespace pdvm;

namespace {

const fs::path kFixtures = fs::path(PDVM_TEST_DATA) / "fixtures";

fs::path temp_dir(const std::string& name) {
  fs::path d = test::scratch_path("bad_input") / name;
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

// Copies fixture `src` to a temp dir, rewriting config.json and model.safetensors through the
// given edits.
fs::path edited_hf_copy(const std::string& name, const std::function<void(nlohmann::json&)>& edit_config,
                        const std::function<void(std::vector<formats::SafetensorsTensorToWrite>&)>& edit_tensors) {
  const fs::path dst = temp_dir(name);
  std::ifstream cin(kFixtures / "llama" / "config.json");
  nlohmann::json cfg = nlohmann::json::parse(cin);
  if (edit_config) edit_config(cfg);
  std::ofstream(dst / "config.json") << cfg.dump(1);
  auto st = formats::SafetensorsFile::open((kFixtures / "llama" / "model.safetensors").string());
  EXPECT_TRUE(st.is_ok()) << st.status().message();
  std::vector<formats::SafetensorsTensorToWrite> tensors;
  for (const auto& t : st->tensors()) tensors.push_back({t.name, t.dtype, t.shape, t.data, t.n_bytes});
  if (edit_tensors) edit_tensors(tensors);
  EXPECT_TRUE(formats::write_safetensors((dst / "model.safetensors").string(), tensors).is_ok());
  return dst;
}

std::string load_error(const fs::path& p) {
  auto r = model::load_model(p.string());
  EXPECT_FALSE(r.is_ok()) << p << " loaded but should not have";
  return r.is_ok() ? "" : r.status().message();
}

TEST(BadModel, UnsupportedArchitecture) {
  auto dir = edited_hf_copy("arch", [](auto& c) { c["model_type"] = "gpt_neox"; }, nullptr);
  const auto msg = load_error(dir);
  EXPECT_NE(msg.find("gpt_neox"), std::string::npos) << msg;
  EXPECT_NE(msg.find("config.json"), std::string::npos) << msg;
}

TEST(BadModel, InconsistentConfig) {
  auto dir = edited_hf_copy("heads", [](auto& c) { c["num_key_value_heads"] = 3; }, nullptr);
  EXPECT_NE(load_error(dir).find("multiple of kv heads"), std::string::npos);
  dir = edited_hf_copy("neg", [](auto& c) { c["hidden_size"] = -64; }, nullptr);
  EXPECT_NE(load_error(dir).find("hidden size"), std::string::npos);
  dir = edited_hf_copy("type", [](auto& c) { c["num_hidden_layers"] = "two"; }, nullptr);
  EXPECT_NE(load_error(dir).find("num_hidden_layers"), std::string::npos);
  dir = edited_hf_copy("rope", [](auto& c) { c["rope_parameters"] = {{"rope_type", "yarn"}, {"factor", 4.0}}; }, nullptr);
  EXPECT_NE(load_error(dir).find("yarn"), std::string::npos);
}

TEST(BadModel, MissingTensor) {
  auto dir = edited_hf_copy("missing", nullptr, [](auto& t) {
    std::erase_if(t, [](const auto& x) { return x.name == "model.layers.1.mlp.up_proj.weight"; });
  });
  const auto msg = load_error(dir);
  EXPECT_NE(msg.find("model.layers.1.mlp.up_proj.weight"), std::string::npos) << msg;
  EXPECT_NE(msg.find("missing"), std::string::npos) << msg;
}

TEST(BadModel, WrongShape) {
  auto dir = edited_hf_copy("shape", [](auto& c) { c["intermediate_size"] = int(c["intermediate_size"]) * 2; }, nullptr);
  const auto msg = load_error(dir);
  EXPECT_NE(msg.find("shape"), std::string::npos) << msg;
  EXPECT_NE(msg.find("expected"), std::string::npos) << msg;
}

TEST(BadModel, WrongDtype) {
  auto dir = edited_hf_copy("dtype", nullptr, [](auto& t) {
    for (auto& x : t) if (x.name == "model.layers.0.self_attn.q_proj.weight") x.dtype = "I32";
  });
  const auto msg = load_error(dir);
  EXPECT_NE(msg.find("I32"), std::string::npos) << msg;
}

TEST(BadModel, MissingFiles) {
  EXPECT_NE(load_error("/nonexistent/model.gguf").find("no such file"), std::string::npos);
  auto dir = temp_dir("empty");
  EXPECT_NE(load_error(dir).find("config.json"), std::string::npos);
  std::ofstream(dir / "config.json") << "{not json";
  EXPECT_NE(load_error(dir).find("JSON"), std::string::npos);
}

// Rewrites the llama GGUF fixture with edits to its metadata and tensor table.
fs::path edited_gguf_copy(const std::string& name,
                          const std::function<void(std::vector<formats::GgufKv>&)>& edit_kv,
                          const std::function<void(std::vector<formats::GgufTensorToWrite>&)>& edit_tensors) {
  auto f = formats::GgufFile::open((kFixtures / "gguf_llama_q8_0" / "model.gguf").string());
  EXPECT_TRUE(f.is_ok()) << f.status().message();
  std::vector<formats::GgufKv> kvs;
  for (const auto& k : f->keys()) kvs.push_back({k, *f->value(k)});
  std::vector<formats::GgufTensorToWrite> tensors;
  for (const auto& t : f->tensors()) tensors.push_back({t.name, t.ggml_type, t.dims, t.data, t.n_bytes});
  if (edit_kv) edit_kv(kvs);
  if (edit_tensors) edit_tensors(tensors);
  const fs::path p = temp_dir(name) / "model.gguf";
  EXPECT_TRUE(formats::write_gguf(p.string(), kvs, tensors).is_ok());
  return p;
}

TEST(BadModel, GgufUnsupportedArchitecture) {
  auto p = edited_gguf_copy("gguf_arch", [](auto& kvs) {
    for (auto& kv : kvs) if (kv.key == "general.architecture") kv.value = formats::GgufValue::string("rwkv6");
  }, nullptr);
  const auto msg = load_error(p);
  EXPECT_NE(msg.find("rwkv6"), std::string::npos) << msg;
  EXPECT_NE(msg.find("model.gguf"), std::string::npos) << msg;
}

TEST(BadModel, GgufMissingAndMisshapenTensors) {
  auto p = edited_gguf_copy("gguf_missing", nullptr, [](auto& t) {
    std::erase_if(t, [](const auto& x) { return x.name == "blk.1.ffn_down.weight"; });
  });
  EXPECT_NE(load_error(p).find("blk.1.ffn_down.weight"), std::string::npos);
  p = edited_gguf_copy("gguf_count", [](auto& kvs) {
    for (auto& kv : kvs) if (kv.key == "llama.block_count") kv.value = formats::GgufValue::u32(3);
  }, nullptr);
  EXPECT_NE(load_error(p).find("blk.2."), std::string::npos);
  p = edited_gguf_copy("gguf_ff", [](auto& kvs) {
    for (auto& kv : kvs) if (kv.key == "llama.feed_forward_length") kv.value = formats::GgufValue::u32(64);
  }, nullptr);
  EXPECT_NE(load_error(p).find("expected"), std::string::npos);
}

TEST(BadInput, PromptLongerThanContext) {
  auto loaded = model::load_model((kFixtures / "gguf_llama_q8_0" / "model.gguf").string());
  ASSERT_TRUE(loaded.is_ok()) << loaded.status().message();
  ASSERT_TRUE(loaded->tokenizer);
  cpu::CpuOptions o;
  o.context = 8;
  auto backend = cpu::make_cpu_backend(loaded->model, o);
  ASSERT_TRUE(backend.is_ok());
  generate::Session session(**backend, *loaded->tokenizer);
  std::vector<int32_t> ids(9, 1);
  auto r = session.generate(ids, {}, nullptr);
  ASSERT_FALSE(r.is_ok());
  EXPECT_NE(r.status().message().find("context"), std::string::npos) << r.status().message();
  // out-of-vocabulary ids are refused, not read past the embedding
  auto l = (*backend)->execute_model(1 << 20, 0);
  EXPECT_FALSE(l.is_ok());
  l = (*backend)->execute_model(1, 8);  // position past the cache
  EXPECT_FALSE(l.is_ok());
}

int run_cli(const std::string& args, std::string* out = nullptr) {
  const std::string cmd = std::string(PDVM_CLI_PATH) + " " + args + " 2>&1";
  FILE* p = ::popen(cmd.c_str(), "r");
  std::string text;
  char buf[4096];
  while (size_t n = std::fread(buf, 1, sizeof buf, p)) text.append(buf, n);
  const int status = ::pclose(p);
  if (out) *out = text;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}

TEST(BadInput, CliExitCodes) {
  std::string out;
  EXPECT_EQ(run_cli("run --no-such-flag", &out), 2) << out;
  EXPECT_EQ(run_cli("run -m /nonexistent.gguf -p hi", &out), 1) << out;
  EXPECT_NE(out.find("/nonexistent.gguf"), std::string::npos) << out;
  EXPECT_EQ(run_cli("logits -m " + (kFixtures / "llama").string() + " --ids 1,x", &out), 2) << out;
  EXPECT_EQ(run_cli("logits -m " + (kFixtures / "llama").string() + " --ids 1,99999", &out), 1) << out;
  EXPECT_NE(out.find("vocabulary"), std::string::npos) << out;
  EXPECT_EQ(run_cli("run -m " + (kFixtures / "gguf_llama_q8_0" / "model.gguf").string() +
                    " --no-chat -c 4 -p 'a long prompt that will not fit in four positions'", &out), 1) << out;
  EXPECT_NE(out.find("context"), std::string::npos) << out;
  EXPECT_EQ(run_cli("run --top-p 0 -m " + (kFixtures / "gguf_llama_q8_0" / "model.gguf").string() + " -p hi", &out), 1) << out;
}

}  // namespace
