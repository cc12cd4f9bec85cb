// `pdvm perplexity`: load (HF dir, GGUF or .pdvm), tokenize the text, sliding-window perplexity.
#include "perplexity_command.h"

#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

#include "cpu/cpu_backend.h"
#include "generate/perplexity.h"
#include "model/load_pdvm.h"

namespace pdvm::cli {
namespace {

struct PerplexityArgs {
  std::string model, text, json_path;
  int context = 512, stride = 256, max_tokens = 0, threads = 0;
};

PerplexityArgs& args() {
  static PerplexityArgs a;
  return a;
}

}  // namespace

CLI::App* add_perplexity_command(CLI::App& app) {
  PerplexityArgs& a = args();
  auto* cmd = app.add_subcommand("perplexity", "perplexity of a model on a text file (sliding window, CPU)");
  cmd->add_option("model", a.model, "model: HF directory, .gguf or .pdvm")->required();
  cmd->add_option("text", a.text, "UTF-8 text file")->required();
  cmd->add_option("--context", a.context, "window length in tokens (default 512)")->check(CLI::Range(2, 1 << 20));
  cmd->add_option("--stride", a.stride, "window step in tokens (default 256)")->check(CLI::PositiveNumber);
  cmd->add_option("--max-tokens", a.max_tokens, "use only the first N tokens (default all)")->check(CLI::NonNegativeNumber);
  cmd->add_option("-t,--threads", a.threads, "CPU threads (default all cores)")->check(CLI::NonNegativeNumber);
  cmd->add_option("--json", a.json_path, "also write the result as JSON");
  return cmd;
}

int run_perplexity_command() {
  const PerplexityArgs& a = args();
  auto loaded = model::load_model(a.model);
  if (!loaded.is_ok()) { std::fprintf(stderr, "pdvm perplexity: %s\n", loaded.status().message().c_str()); return 1; }
  if (!loaded->tokenizer) { std::fprintf(stderr, "pdvm perplexity: %s has no tokenizer\n", a.model.c_str()); return 1; }
  std::ifstream in(a.text, std::ios::binary);
  if (!in) { std::fprintf(stderr, "pdvm perplexity: %s: cannot open\n", a.text.c_str()); return 1; }
  std::ostringstream ss;
  ss << in.rdbuf();
  auto ids = loaded->tokenizer->encode(ss.str());
  if (!ids.is_ok()) { std::fprintf(stderr, "pdvm perplexity: %s: %s\n", a.text.c_str(), ids.status().message().c_str()); return 1; }
  cpu::CpuOptions co;
  co.context = a.context;
  co.threads = a.threads;
  auto backend = cpu::make_cpu_backend(loaded->model, co);
  if (!backend.is_ok()) { std::fprintf(stderr, "pdvm perplexity: %s\n", backend.status().message().c_str()); return 1; }
  generate::PerplexityOptions po;
  po.context = a.context;
  po.stride = std::min(a.stride, a.context);
  po.max_tokens = a.max_tokens;
  po.progress = [](int64_t done, int64_t total) { std::fprintf(stderr, "\rscored %lld/%lld tokens", (long long)done, (long long)total); };
  auto r = generate::perplexity(**backend, *ids, po);
  std::fprintf(stderr, "\n");
  if (!r.is_ok()) { std::fprintf(stderr, "pdvm perplexity: %s\n", r.status().message().c_str()); return 1; }
  const size_t bytes = loaded->model.weight_bytes_per_token();
  std::printf("perplexity %.4f (mean NLL %.4f nats) over %lld scored tokens of %lld; context %d stride %d; "
              "%lld decode steps in %.1f s = %.1f tok/s; %zu weight bytes per token\n",
              r->perplexity, r->mean_nll, (long long)r->n_scored, (long long)r->n_tokens, po.context, po.stride,
              (long long)r->n_evaluated, r->seconds, r->tokens_per_s, bytes);
  if (!a.json_path.empty()) {
    nlohmann::json j = {{"model", a.model}, {"text", a.text}, {"perplexity", r->perplexity},
                        {"mean_nll", r->mean_nll}, {"n_tokens", r->n_tokens}, {"n_scored", r->n_scored},
                        {"n_evaluated", r->n_evaluated}, {"context", po.context}, {"stride", po.stride},
                        {"seconds", r->seconds}, {"tokens_per_s", r->tokens_per_s},
                        {"weight_bytes_per_token", bytes}};
    std::ofstream(a.json_path) << j.dump(2) << "\n";
  }
  return 0;
}

}  // namespace pdvm::cli
