// Tokenizer throughput: encode, decode and streaming decode on a mixed corpus (the GPL-3 text from
// /usr/share/common-licenses when present, for English prose, plus the multilingual/code/emoji test
// texts), single-threaded, bytes-processed counter = input bytes (encode) or output bytes (decode).
// Compare with Hugging Face tokenizers on the same corpus:
//   python3 scripts/record_tokenizer_ids.py bench-hf   (prints MB/s for the same tokenizers)
#include <benchmark/benchmark.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>

#include "tokenizer/tokenizer.h"
#include "tokenizer/tokenizer_impl.h"

namespace {

using pdvm::tokenizer::Tokenizer;
using pdvm::tokenizer::TokenizerSpec;

// The source dir, from this file's path (bench/CMakeLists.txt defines no data-path macro).
const std::string kSource = std::filesystem::path(__FILE__).parent_path().parent_path().string();

std::string corpus() {
  static const std::string text = [] {
    std::string s;
    std::ifstream gpl("/usr/share/common-licenses/GPL-3");
    if (gpl) {
      std::stringstream ss;
      ss << gpl.rdbuf();
      s = ss.str();
    }
    std::ifstream tj(kSource + "/tests/data/tokenizers/texts.json");
    if (tj) {
      const auto texts = nlohmann::json::parse(tj);
      for (int rep = 0; rep < 4; ++rep)
        for (const auto& t : texts) s += t.get<std::string>() + "\n";
    }
    return s;
  }();
  return text;
}

const Tokenizer* load(const std::string& name) {
  static std::map<std::string, std::unique_ptr<Tokenizer>> cache;
  auto it = cache.find(name);
  if (it != cache.end()) return it->second.get();
  const std::string shared = kSource + "/../shared/data/tokenizers";
  pdvm::Result<Tokenizer> r = pdvm::Status(pdvm::StatusCode::kNotFound, "unknown");
  if (name == "llama3" || name == "llama2") {
    r = Tokenizer::from_json_file(shared + "/" + name + "/tokenizer.json.gz", shared + "/" + name + "/tokenizer_config.json");
  } else if (name == "qwen2") {
    r = Tokenizer::from_json_file(kSource + "/tests/data/tokenizers/qwen2/tokenizer.json.gz", "/dev/null");
  } else if (name == "smollm2") {
    auto txt = pdvm::tokenizer::read_maybe_gz(kSource + "/tests/data/tokenizers/smollm2/gguf_tokenizer.json.gz");
    if (txt.is_ok()) {
      const auto f = nlohmann::json::parse(txt.value());
      TokenizerSpec s;
      s.model = f.value("tokenizer.ggml.model", "");
      s.pre = f.value("tokenizer.ggml.pre", "");
      s.tokens = f.value("tokenizer.ggml.tokens", std::vector<std::string>{});
      s.token_types = f.value("tokenizer.ggml.token_type", std::vector<int32_t>{});
      s.merges = f.value("tokenizer.ggml.merges", std::vector<std::string>{});
      s.bos_id = f.value("tokenizer.ggml.bos_token_id", -1);
      s.eos_id = f.value("tokenizer.ggml.eos_token_id", -1);
      r = Tokenizer::from_spec(s);
    }
  }
  if (!r.is_ok()) {
    cache[name] = nullptr;
    return nullptr;
  }
  cache[name] = std::make_unique<Tokenizer>(std::move(r).value());
  return cache[name].get();
}

void BM_Encode(benchmark::State& state, const std::string& name) {
  const Tokenizer* tok = load(name);
  if (!tok) { state.SkipWithError(("tokenizer " + name + " not available").c_str()); return; }
  const std::string text = corpus();
  size_t n_ids = 0;
  for (auto _ : state) {
    auto ids = tok->encode(text, false);
    n_ids = ids.value().size();
    benchmark::DoNotOptimize(ids);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * text.size()));
  state.counters["tokens"] = static_cast<double>(n_ids);
  state.counters["bytes"] = static_cast<double>(text.size());
}

void BM_Decode(benchmark::State& state, const std::string& name) {
  const Tokenizer* tok = load(name);
  if (!tok) { state.SkipWithError(("tokenizer " + name + " not available").c_str()); return; }
  const auto ids = tok->encode(corpus(), false).value();
  size_t n_out = 0;
  for (auto _ : state) {
    std::string s = tok->decode(ids);
    n_out = s.size();
    benchmark::DoNotOptimize(s);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * n_out));
}

// Streaming decode as the generation loop uses it: one push per generated token.
void BM_StreamDecode(benchmark::State& state, const std::string& name) {
  const Tokenizer* tok = load(name);
  if (!tok) { state.SkipWithError(("tokenizer " + name + " not available").c_str()); return; }
  const auto ids = tok->encode(corpus(), false).value();
  size_t n_out = 0;
  for (auto _ : state) {
    pdvm::tokenizer::StreamDecoder sd(*tok);
    n_out = 0;
    for (int32_t id : ids) n_out += sd.push(id).size();
    n_out += sd.flush().size();
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * n_out));
  state.counters["tokens_per_s"] =
      benchmark::Counter(static_cast<double>(ids.size()), benchmark::Counter::kIsIterationInvariantRate);
}

BENCHMARK_CAPTURE(BM_Encode, llama3, std::string("llama3"))->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_Encode, llama2, std::string("llama2"))->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_Encode, qwen2_cut, std::string("qwen2"))->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_Encode, smollm2_gguf, std::string("smollm2"))->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_Decode, llama3, std::string("llama3"))->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_Decode, llama2, std::string("llama2"))->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_StreamDecode, llama3, std::string("llama3"))->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_StreamDecode, smollm2_gguf, std::string("smollm2"))->Unit(benchmark::kMillisecond);

}  // namespace
