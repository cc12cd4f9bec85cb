// pdvm command line: flag parsing and dispatch only (commands.cpp does the work).
// Flag names follow llama.cpp where one exists (-m, -p, -n, -c, -t, --temp, --top-k, ...).
#include <CLI/CLI.hpp>
#include <cstdio>
#include <iostream>
#include <iterator>

#include "bench_command.h"
#include "chat_command.h"
#include "commands.h"
#include "convert_command.h"
#include "perplexity_command.h"

namespace {

void add_model_flags(CLI::App* app, pdvm::cli::ModelArgs& m) {
  app->add_option("-m,--model", m.model, "model: a .gguf file or a Hugging Face directory (default: " +
                                              pdvm::cli::default_model_path() + ")");
  app->add_option("-c,--ctx-size", m.context, "context length in tokens (default: min(model's, 4096))")
      ->check(CLI::NonNegativeNumber);
  app->add_option("-t,--threads", m.threads, "CPU threads (default: all cores)")->check(CLI::NonNegativeNumber);
  app->add_option("--kernels", m.kernels, "CPU kernels: fast or reference (plain, slow, exact)")
      ->check(CLI::IsMember({"fast", "reference"}));
  app->add_option("--backend", m.backend, "where to run: cpu or cuda")->check(CLI::IsMember({"cpu", "cuda"}));
  app->add_option("--gpu-mode", m.gpu_mode, "cuda execution: token (one launch per token, the default and fastest), layer (one launch per layer) or ops (one kernel per op, in a CUDA graph)");
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"pdvm: batch-1 LLM inference at the memory-bandwidth limit"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "pdvm 0.1.0");

  pdvm::cli::RunArgs run;
  auto* run_cmd = app.add_subcommand("run", "generate text from a prompt");
  add_model_flags(run_cmd, run.m);
  run_cmd->add_option("-p,--prompt", run.prompt, "prompt text (default: a short greeting; '-' reads stdin)");
  run_cmd->add_option("-n,--n-predict", run.gen.max_tokens, "tokens to generate at most (-1: until EOS)")
      ->check(CLI::Range(-1, 1 << 30));
  run_cmd->add_option("--temp", run.gen.sampler.temperature, "temperature (0: greedy)");
  run_cmd->add_option("--top-k", run.gen.sampler.top_k, "top-k (0: off)");
  run_cmd->add_option("--top-p", run.gen.sampler.top_p, "top-p (1: off)");
  run_cmd->add_option("--min-p", run.gen.sampler.min_p, "min-p (0: off)");
  run_cmd->add_option("--repeat-penalty", run.gen.sampler.repeat_penalty, "repetition penalty (1: off)");
  run_cmd->add_option("--repeat-last-n", run.gen.sampler.repeat_last_n, "tokens the penalty looks back at");
  run_cmd->add_option("-s,--seed", run.gen.sampler.seed, "random seed (same seed, same text)");
  run_cmd->add_option("--stop", run.gen.stop_strings, "stop when this text appears (repeatable)");
  run_cmd->add_flag("--ignore-eos", run.ignore_eos, "keep generating past end-of-sequence tokens");
  run_cmd->add_flag("!--no-chat", run.chat, "feed the prompt as raw text, without the chat template");
  run_cmd->add_option("--system", run.system, "system prompt (chat mode)");
  run_cmd->add_option("--template", run.template_name, "chat template: a built-in name (chatml, llama3, ...) or a Jinja file");
  run_cmd->add_flag("!--no-stats", run.stats, "do not print the stats line");

  std::string inspect_model;
  auto* inspect_cmd = app.add_subcommand("inspect", "print a model's architecture, tensors and bytes");
  inspect_cmd->add_option("model", inspect_model, "model path (default: the default model)");

  pdvm::cli::LogitsArgs logits;
  std::string ids_text;
  auto* logits_cmd = app.add_subcommand("logits", "print the logits at every position of a token sequence, as JSON");
  add_model_flags(logits_cmd, logits.m);
  logits_cmd->add_option("--ids", ids_text, "comma-separated token ids")->required();
  logits_cmd->add_option("--top", logits.top, "print only the top N (id, logit) per position");

  std::string tok_model, tok_text;
  bool tok_json = false, tok_decode = false;
  auto* tok_cmd = app.add_subcommand("tokenize", "print the token ids of a text (or decode ids)");
  tok_cmd->add_option("-m,--model", tok_model, "model or tokenizer.json");
  tok_cmd->add_option("text", tok_text, "text (default: stdin)");
  tok_cmd->add_flag("--json", tok_json, "print a JSON array");
  tok_cmd->add_flag("--decode", tok_decode, "input is ids, print the text");

  CLI::App* bench_cmd = pdvm::cli::add_bench_command(app);
  CLI::App* chat_cmd = pdvm::cli::add_chat_command(app);
  CLI::App* convert_cmd = pdvm::cli::add_convert_command(app);
  CLI::App* perplexity_cmd = pdvm::cli::add_perplexity_command(app);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);
    return code == 0 ? 0 : 2;  // bad flags: usage, exit 2
  }
  if (*run_cmd) {
    if (run.prompt == "-") {
      run.prompt.assign(std::istreambuf_iterator<char>(std::cin), {});
    }
    if (run.ignore_eos) run.gen.stop_at_eos = false;
    return pdvm::cli::run_generate(run);
  }
  if (*bench_cmd) return pdvm::cli::run_bench_command();
  if (*chat_cmd) return pdvm::cli::run_chat_command();
  if (*convert_cmd) return pdvm::cli::run_convert_command();
  if (*perplexity_cmd) return pdvm::cli::run_perplexity_command();
  if (*inspect_cmd) return pdvm::cli::run_inspect(inspect_model);
  if (*logits_cmd) {
    size_t at = 0;
    while (at < ids_text.size()) {
      size_t end = ids_text.find(',', at);
      if (end == std::string::npos) end = ids_text.size();
      const std::string item = ids_text.substr(at, end - at);
      try {
        size_t used = 0;
        const long v = std::stol(item, &used);
        if (used != item.size() || v < 0 || v > INT32_MAX) throw std::invalid_argument(item);
        logits.ids.push_back(int(v));
      } catch (const std::exception&) {
        std::fprintf(stderr, "pdvm logits: --ids: '%s' is not a token id (expected e.g. --ids 1,2,3)\n", item.c_str());
        return 2;
      }
      at = end + 1;
    }
    if (logits.ids.empty()) {
      std::fprintf(stderr, "pdvm logits: --ids is empty\n");
      return 2;
    }
    return pdvm::cli::run_logits(logits);
  }
  if (*tok_cmd) {
    if (tok_text.empty()) tok_text.assign(std::istreambuf_iterator<char>(std::cin), {});
    return pdvm::cli::run_tokenize(tok_model, tok_text, tok_json, tok_decode);
  }
  return 2;
}
