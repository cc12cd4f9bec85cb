// `pdvm bench` flags -> bench::BenchOptions -> run_bench -> table on stdout and --json FILE.
#include "bench_command.h"

#include <cstdio>
#include <fstream>
#include <string>

#include "bench/harness.h"

namespace pdvm::cli {
namespace {

struct BenchArgs {
  bench::BenchOptions o;
  std::string depths = "0";
  std::string format, head_format;
  double sparsity = 0;
  CLI::Option* sparsity_opt = nullptr;  // count() says whether --sparsity was given
  std::string json_path;
  bool quiet = false;
  int ceiling_mb = 0;  // 0: the device's default
};

BenchArgs& args() {
  static BenchArgs a;  // the parsed flags of this process's one bench command
  return a;
}

// "0,1024,4096" -> {0, 1024, 4096}.
bool parse_depths(const std::string& text, std::vector<int>& out, std::string& bad) {
  out.clear();
  size_t at = 0;
  while (at <= text.size()) {
    size_t end = text.find(',', at);
    if (end == std::string::npos) end = text.size();
    const std::string item = text.substr(at, end - at);
    try {
      size_t used = 0;
      const long v = std::stol(item, &used);
      if (used != item.size() || v < 0 || v > (1 << 24)) throw std::invalid_argument(item);
      out.push_back(int(v));
    } catch (const std::exception&) {
      bad = item;
      return false;
    }
    at = end + 1;
  }
  return !out.empty();
}

}  // namespace

CLI::App* add_bench_command(CLI::App& app) {
  BenchArgs& a = args();
  bench::BenchOptions& o = a.o;
  auto* cmd = app.add_subcommand(
      "bench", "time decode (and prompt processing) on a model file or a synthetic shape; "
               "report ms/token, GB/s and % of the measured memory ceiling");
  auto* model_opt = cmd->add_option("-m,--model", o.model_path, "model file (.gguf or HF directory)");
  cmd->add_option("--shape", o.shape.shape, "synthetic shape: phi-4, llama-3-8b, smollm2-135m")
      ->excludes(model_opt);
  cmd->add_option("--d-model", o.shape.d_model, "synthetic: hidden size")->check(CLI::PositiveNumber);
  cmd->add_option("--d-ff", o.shape.d_ff, "synthetic: FFN size")->check(CLI::PositiveNumber);
  cmd->add_option("--heads", o.shape.n_heads, "synthetic: query heads")->check(CLI::PositiveNumber);
  cmd->add_option("--kv-heads", o.shape.n_kv_heads, "synthetic: KV heads")->check(CLI::PositiveNumber);
  cmd->add_option("--head-dim", o.shape.head_dim, "synthetic: head dim (default d_model/heads)")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--vocab", o.shape.vocab_size, "synthetic: vocabulary size")->check(CLI::PositiveNumber);
  cmd->add_option("--n-layers", o.shape.n_layers, "synthetic: layer count")->check(CLI::PositiveNumber);
  cmd->add_option("--layers", o.shape.layers, "keep only the first N layers")->check(CLI::PositiveNumber);
  cmd->add_option("--format", a.format,
                  "synthetic layer weights: f32 f16 bf16 q8_0 q4_0 q4_1 q5_0 q5_1 q4_K q5_K q6_K "
                  "i8_row mdcsr bitmap_i8 (default q8_0)");
  cmd->add_option("--head-format", a.head_format,
                  "synthetic embedding / LM head weights (default: --format; q8_0 for mdcsr, bitmap_i8)");
  a.sparsity_opt = cmd->add_option("--sparsity", a.sparsity,
                                   "synthetic mdcsr / bitmap_i8: zero fraction of each row, 0 <= S < 1 "
                                   "(default 0.5)");
  cmd->add_option("--seed", o.shape.seed, "synthetic weights seed");
  cmd->add_option("--backend", o.backend, "cpu or cuda")->check(CLI::IsMember({"cpu", "cuda"}));
  cmd->add_option("--gpu-mode", o.gpu_mode, "cuda execution mode: token (default), layer, ops");
  cmd->add_option("--kernels", o.kernels, "CPU kernels: fast or reference")
      ->check(CLI::IsMember({"fast", "reference"}));
  cmd->add_option("-t,--threads", o.threads, "CPU threads (default: all cores)")->check(CLI::NonNegativeNumber);
  cmd->add_option("--depth", a.depths, "context depths, comma-separated (default 0)");
  cmd->add_option("--tokens", o.tokens, "timed decode steps per repetition")->check(CLI::PositiveNumber);
  cmd->add_option("--warmup", o.warmup, "untimed steps before timing, per depth")->check(CLI::NonNegativeNumber);
  cmd->add_option("--repeats", o.repeats, "repetitions (median, min, max over them)")->check(CLI::PositiveNumber);
  cmd->add_option("--prompt-tokens", o.prompt_tokens, "also time a prompt of this many tokens")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--json", a.json_path, "write the report as JSON to FILE");
  cmd->add_flag("--ceiling", o.ceiling_only, "measure the memory read ceiling only");
  cmd->add_option("--ceiling-mb", a.ceiling_mb,
                  "ceiling buffer in MiB, well above the last-level cache (default: 512 on the CPU, "
                  "2048 on the GPU)")
      ->check(CLI::Range(1, 1 << 20));
  cmd->add_flag("-q,--quiet", a.quiet, "no progress lines on stderr");
  return cmd;
}

int run_bench_command() {
  BenchArgs& a = args();
  bench::BenchOptions o = a.o;
  std::string bad;
  if (!parse_depths(a.depths, o.depths, bad)) {
    std::fprintf(stderr, "pdvm bench: --depth: '%s' is not a depth (expected e.g. --depth 0,1024,4096)\n",
                 bad.c_str());
    return 2;
  }
  if (!o.model_path.empty() && (!a.format.empty() || !a.head_format.empty())) {
    std::fprintf(stderr, "pdvm bench: --format / --head-format apply to synthetic models; a model file "
                         "keeps its own weight types\n");
    return 2;
  }
  if (a.sparsity_opt->count() > 0) o.shape.sparsity = a.sparsity;
  if (!a.format.empty()) o.shape.layer_format = a.format;
  if (!a.head_format.empty()) o.shape.head_format = a.head_format;
  o.ceiling_bytes = size_t(a.ceiling_mb) << 20;
  o.progress = !a.quiet;
  o.command = bench::self_command_line();

  auto report = bench::run_bench(o, a.quiet ? nullptr : bench::stderr_progress());
  if (!report.is_ok()) {
    std::fprintf(stderr, "pdvm bench: %s\n", report.status().message().c_str());
    return report.status().code() == StatusCode::kInvalidArgument ? 2 : 1;
  }
  std::fputs(bench::format_table(*report).c_str(), stdout);
  std::fflush(stdout);
  if (!a.json_path.empty()) {
    std::ofstream out(a.json_path);
    out << bench::to_json(*report).dump(2) << "\n";
    if (!out) {
      std::fprintf(stderr, "pdvm bench: cannot write %s\n", a.json_path.c_str());
      return 1;
    }
    std::fprintf(stderr, "wrote %s\n", a.json_path.c_str());
  }
  return 0;
}

}  // namespace pdvm::cli
