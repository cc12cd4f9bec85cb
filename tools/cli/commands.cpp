// The work behind each pdvm subcommand: load, run, print. Errors print one line to stderr
// ("pdvm: <what>: <where>") and return exit code 1.
#include "commands.h"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "cpu/cpu_backend.h"
#ifdef PDVM_HAVE_CUDA
#include "cuda/cuda_backend.h"
#endif
#include "chat/template_choice.h"
#include "model/load.h"

namespace pdvm::cli {
namespace fs = std::filesystem;

namespace {

constexpr const char* kDefaultModelFile = "SmolLM2-135M-Instruct.Q4_1.gguf";
constexpr const char* kDefaultPrompt = "What are three good habits for writing clear code? Answer briefly.";

int fail(const Status& s) {
  std::fprintf(stderr, "pdvm: %s\n", s.message().c_str());
  return 1;
}

std::string exe_dir() {
  std::error_code ec;
  auto p = fs::read_symlink("/proc/self/exe", ec);
  return ec ? std::string(".") : p.parent_path().string();
}

Result<model::LoadedModel> load(const std::string& path_arg) {
  const std::string path = path_arg.empty() ? default_model_path() : path_arg;
  if (path_arg.empty() && !fs::exists(path))
    return not_found("default model not found at " + path +
                     " (run scripts/setup.sh to fetch it, or pass -m MODEL)");
  return model::load_model(path);
}

Result<std::unique_ptr<core::Backend>> make_backend(const core::Model& m, const ModelArgs& a) {
  if (a.backend == "cuda") {
#ifdef PDVM_HAVE_CUDA
    cuda::CudaOptions o;
    PDVM_ASSIGN_OR_RETURN(o.mode, cuda::parse_mode(a.gpu_mode));
    o.context = a.context;
    return cuda::make_cuda_backend(m, o);
#else
    return unsupported("--backend cuda: this pdvm was built without CUDA (no nvcc at build time)");
#endif
  }
  cpu::CpuOptions o;
  o.context = a.context;
  o.threads = a.threads;
  o.kernels = a.kernels == "reference" ? cpu::CpuKernels::kReference : cpu::CpuKernels::kFast;
  return cpu::make_cpu_backend(m, o);
}

}  // namespace

std::string default_model_path() {
  if (const char* env = std::getenv("PDVM_MODEL"); env && *env) return env;
  // the setup script puts it in <repo>/models; the binary lives in <repo>/build
  for (const fs::path& dir : {fs::path("models"), fs::path(exe_dir()) / ".." / "models"}) {
    std::error_code ec;
    if (fs::exists(dir / kDefaultModelFile, ec)) return fs::weakly_canonical(dir / kDefaultModelFile).string();
  }
  return (fs::path("models") / kDefaultModelFile).string();
}

int run_generate(const RunArgs& a) {
  auto loaded = load(a.m.model);
  if (!loaded.is_ok()) return fail(loaded.status());
  if (!loaded->tokenizer) return fail(not_found(loaded->model.source + ": the model has no tokenizer"));
  const auto& tok = *loaded->tokenizer;

  std::string prompt = a.prompt.empty() ? kDefaultPrompt : a.prompt;
  if (a.chat) {
    auto tmpl = chat::choose_template(loaded->chat_template, loaded->model.source, tok, a.template_name);
    if (!tmpl.is_ok()) return fail(tmpl.status());
    std::vector<chat::Message> msgs;
    if (!a.system.empty()) msgs.push_back({"system", a.system});
    msgs.push_back({"user", prompt});
    auto rendered = tmpl->render(msgs, chat::render_options_for(tok, /*add_generation_prompt=*/true));
    if (!rendered.is_ok()) return fail(rendered.status().with_context("chat template"));
    prompt = std::move(*rendered);
  }
  // A rendered chat already holds its BOS (as transformers' apply_chat_template + encode
  // without special tokens); raw text gets the tokenizer's own BOS/EOS rule.
  auto ids = tok.encode(prompt, /*add_special=*/!a.chat, /*parse_special=*/a.chat);
  if (!ids.is_ok()) return fail(ids.status().with_context("prompt"));

  auto backend = make_backend(loaded->model, a.m);
  if (!backend.is_ok()) return fail(backend.status());
  generate::Session session(**backend, tok);
  auto stats = session.generate(*ids, a.gen, [](std::string_view text) {
    std::fwrite(text.data(), 1, text.size(), stdout);
    std::fflush(stdout);
    return true;
  });
  std::fputc('\n', stdout);
  if (!stats.is_ok()) return fail(stats.status());
  if (a.stats) {
    const double ms_per_token = stats->generated_tokens > 1 ? stats->generate_ms / (stats->generated_tokens - 1) : 0;
    std::fprintf(stderr,
                 "\n[pdvm] prompt: %d tokens in %.1f ms (%.1f tok/s) | generated: %d tokens, "
                 "%.1f tok/s, %.2f ms/token | stop: %s | backend: %s, %d threads\n",
                 stats->prompt_tokens, stats->prompt_ms,
                 stats->prompt_ms > 0 ? stats->prompt_tokens / (stats->prompt_ms / 1e3) : 0.0,
                 stats->generated_tokens, stats->generate_tok_per_s(), ms_per_token,
                 stats->stop_reason.c_str(), (*backend)->name().c_str(),
                 a.m.threads > 0 ? a.m.threads : int(sysconf(_SC_NPROCESSORS_ONLN)));
  }
  return 0;
}

int run_inspect(const std::string& path) {
  auto loaded = load(path);
  if (!loaded.is_ok()) return fail(loaded.status());
  const auto& m = loaded->model;
  const auto& c = m.config;
  std::printf("model:        %s\n", m.source.c_str());
  std::printf("architecture: %s\n", core::arch_name(c.arch));
  std::printf("layers %d, d_model %d, d_ff %d, heads %d (kv %d) x %d, vocab %d, context %d\n",
              c.n_layers, c.d_model, c.d_ff, c.n_heads, c.n_kv_heads, c.head_dim, c.vocab_size, c.max_seq);
  std::printf("rope: theta %g, dims %d, %s, scaling %s%s\n", c.rope_theta, c.rope_dim,
              c.rope_style == core::RopeStyle::kNeox ? "neox" : "interleaved",
              c.rope_scaling.type == core::RopeScalingType::kNone ? "none"
              : c.rope_scaling.type == core::RopeScalingType::kLinear ? "linear" : "llama3",
              c.rope_freq_factors.empty() ? "" : " (+ rope_freqs factors)");
  std::printf("rms_eps %g, qkv bias %s, tied embeddings %s, sliding window %d\n", c.rms_eps,
              c.qkv_bias ? "yes" : "no", c.tie_embeddings ? "yes" : "no", c.sliding_window);
  std::printf("tokenizer:    %s\n", loaded->tokenizer ? (std::to_string(loaded->tokenizer->vocab_size()) + " tokens").c_str() : "none");
  std::printf("\n%-28s %-10s %-16s %12s %9s\n", "tensor", "type", "shape", "bytes", "sparsity");
  auto row = [](const std::string& name, const core::Matrix& w) {
    char shape[48];
    std::snprintf(shape, sizeof shape, "[%lld, %lld]", (long long)w.rows, (long long)w.cols);
    const std::string_view type = core::weight_type_name(w.type);
    const double sparsity = w.sparse ? 1.0 - double(w.sparse->n_nonzero) / (double(w.rows) * double(w.cols)) : 0.0;
    std::printf("%-28s %-10.*s %-16s %12zu %8.1f%%\n", name.c_str(), int(type.size()), type.data(), shape,
                w.n_bytes(), 100 * sparsity);
  };
  row("tok_embd", m.tok_embd);
  for (size_t i = 0; i < m.layers.size(); ++i) {
    if (i == 1 && m.layers.size() > 2) { std::printf("... (layers 1..%zu alike)\n", m.layers.size() - 1); continue; }
    if (i > 1 && i + 1 < m.layers.size()) continue;
    const auto& l = m.layers[i];
    const std::string p = "layer." + std::to_string(i) + ".";
    row(p + "wq", l.wq); row(p + "wk", l.wk); row(p + "wv", l.wv); row(p + "wo", l.wo);
    row(p + "w_gate", l.w_gate); row(p + "w_up", l.w_up); row(p + "w_down", l.w_down);
  }
  row(c.tie_embeddings ? "output (tied)" : "output", m.output);
  const double per_token = double(m.weight_bytes_per_token());
  std::printf("\nweight bytes read per token: %.1f MB (+ KV cache: %d bytes per position per layer in f32)\n",
              per_token / 1e6, 2 * c.n_kv_heads * c.head_dim * 4);
  return 0;
}

int run_logits(const LogitsArgs& a) {
  auto loaded = load(a.m.model);
  if (!loaded.is_ok()) return fail(loaded.status());
  auto backend = make_backend(loaded->model, a.m);
  if (!backend.is_ok()) return fail(backend.status());
  if (int(a.ids.size()) > (*backend)->context())
    return fail(out_of_range(std::to_string(a.ids.size()) + " ids do not fit the context of " +
                             std::to_string((*backend)->context()) + " (raise -c)"));
  nlohmann::json out;
  out["model"] = loaded->model.source;
  out["backend"] = (*backend)->name();
  out["ids"] = a.ids;
  auto& rows = out["logits"] = nlohmann::json::array();
  for (size_t pos = 0; pos < a.ids.size(); ++pos) {
    auto logits = (*backend)->execute_model(a.ids[pos], int32_t(pos));
    if (!logits.is_ok()) return fail(logits.status());
    if (a.top > 0) {
      std::vector<int> order(logits->size());
      for (size_t i = 0; i < order.size(); ++i) order[i] = int(i);
      const size_t k = std::min(order.size(), size_t(a.top));
      std::partial_sort(order.begin(), order.begin() + long(k), order.end(),
                        [&](int x, int y) { return (*logits)[size_t(x)] > (*logits)[size_t(y)]; });
      auto& r = rows.emplace_back(nlohmann::json::array());
      for (size_t i = 0; i < k; ++i) r.push_back({order[i], (*logits)[size_t(order[i])]});
    } else {
      rows.push_back(std::vector<float>(logits->begin(), logits->end()));
    }
  }
  std::printf("%s\n", out.dump().c_str());
  return 0;
}

int run_tokenize(const std::string& model_path, const std::string& text, bool json, bool decode) {
  std::shared_ptr<const tokenizer::Tokenizer> tok;
  if (model_path.size() > 5 && model_path.ends_with(".json")) {
    auto t = tokenizer::Tokenizer::from_json_file(model_path);
    if (!t.is_ok()) return fail(t.status());
    tok = std::make_shared<tokenizer::Tokenizer>(std::move(*t));
  } else {
    auto loaded = load(model_path);
    if (!loaded.is_ok()) return fail(loaded.status());
    if (!loaded->tokenizer) return fail(not_found(loaded->model.source + ": the model has no tokenizer"));
    tok = loaded->tokenizer;
  }
  if (decode) {
    std::vector<int32_t> ids;
    std::string cleaned = text;
    for (char& ch : cleaned) if (ch == ',' || ch == '[' || ch == ']') ch = ' ';
    size_t at = 0;
    while (at < cleaned.size()) {
      while (at < cleaned.size() && std::isspace(static_cast<unsigned char>(cleaned[at]))) ++at;
      if (at >= cleaned.size()) break;
      size_t used = 0;
      long v = 0;
      try { v = std::stol(cleaned.substr(at), &used); } catch (const std::exception&) { used = 0; }
      if (used == 0 || v < 0 || v >= tok->vocab_size())
        return fail(invalid_argument("--decode: '" + cleaned.substr(at, 16) + "' is not a token id of this vocabulary"));
      ids.push_back(int32_t(v));
      at += used;
    }
    std::printf("%s\n", tok->decode(ids).c_str());
    return 0;
  }
  auto ids = tok->encode(text);
  if (!ids.is_ok()) return fail(ids.status().with_context("input text"));
  if (json) {
    std::printf("%s\n", nlohmann::json(*ids).dump().c_str());
  } else {
    for (int32_t id : *ids) {
      const std::string piece(tok->token_text(id));
      std::printf("%6d  %s\n", id, nlohmann::json(piece).dump().c_str());
    }
  }
  return 0;
}

}  // namespace pdvm::cli
