// `pdvm chat`: reads user turns from stdin, renders the conversation with the model's chat
// template (chat::ChatTemplate) and streams each reply. The conversation stays in the KV cache:
// each turn feeds only the text the template added since the cache was filled (a pure suffix of
// the re-rendered conversation); when a template rewrites earlier turns (trims a reply, drops a
// <think> block), the new rendering is tokenised whole and the cache is cut back to the first
// token that differs. Ctrl-C stops a reply (the callback sees a flag set by the SIGINT handler);
// Ctrl-C at the prompt, EOF or /exit ends the program.
#include "chat_command.h"

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "chat/template_choice.h"
#include "commands.h"
#include "cpu/cpu_backend.h"
#include "generate/generate.h"
#include "model/load.h"

namespace pdvm::cli {
namespace {

namespace fs = std::filesystem;

// Flags of `pdvm chat`. The sampling flags repeat `pdvm run`'s names and defaults (main.cpp keeps
// its flag helpers file-local, so they cannot be shared from here).
struct ChatArgs {
  ModelArgs m;
  std::string system;
  std::string template_name;  // built-in name or .jinja file; "" -> the model's own
  bool stats = false;
  generate::GenerateOptions gen;
};

ChatArgs& args() {
  static ChatArgs a = [] {
    ChatArgs x;
    x.gen.max_tokens = 1024;
    return x;
  }();
  return a;
}

// SIGINT count since the last reset; written by the handler, read by the reply callback.
std::atomic<int> g_sigint{0};
static_assert(std::atomic<int>::is_always_lock_free, "the SIGINT flag must be async-signal-safe");
void on_sigint(int) { g_sigint.fetch_add(1, std::memory_order_relaxed); }

int fail(const Status& s) {
  std::fprintf(stderr, "pdvm: %s\n", s.message().c_str());
  return 1;
}

// One line from stdin without its newline; nullopt at EOF or when a signal interrupted the read.
std::optional<std::string> read_line() {
  char* buf = nullptr;
  size_t cap = 0;
  const ssize_t n = ::getline(&buf, &cap, stdin);
  std::optional<std::string> out;
  if (n >= 0) {
    out.emplace(buf, size_t(n));
    while (!out->empty() && (out->back() == '\n' || out->back() == '\r')) out->pop_back();
  }
  std::free(buf);
  return out;
}

}  // namespace

CLI::App* add_chat_command(CLI::App& app) {
  ChatArgs& a = args();
  auto* cmd = app.add_subcommand("chat", "interactive chat in the terminal (/clear resets, /exit or Ctrl-D quits)");
  cmd->add_option("-m,--model", a.m.model, "model: a .gguf file or a Hugging Face directory (default: " +
                                               default_model_path() + ")");
  cmd->add_option("-c,--ctx-size", a.m.context, "context length in tokens (default: min(model's, 4096))")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("-t,--threads", a.m.threads, "CPU threads (default: all cores)")->check(CLI::NonNegativeNumber);
  cmd->add_option("--kernels", a.m.kernels, "CPU kernels: fast or reference")->check(CLI::IsMember({"fast", "reference"}));
  cmd->add_option("--system", a.system, "system prompt (default: the template's own, if any)");
  cmd->add_option("--template", a.template_name,
                  "chat template: a .jinja file or a built-in (chatml, smollm2, qwen2, llama2, llama3, mistral, "
                  "phi3, phi4); default: the model's own");
  cmd->add_option("-n,--n-predict", a.gen.max_tokens, "tokens per reply at most (-1: until EOS)")
      ->check(CLI::Range(-1, 1 << 30));
  cmd->add_option("--temp", a.gen.sampler.temperature, "temperature (0: greedy)");
  cmd->add_option("--top-k", a.gen.sampler.top_k, "top-k (0: off)");
  cmd->add_option("--top-p", a.gen.sampler.top_p, "top-p (1: off)");
  cmd->add_option("--min-p", a.gen.sampler.min_p, "min-p (0: off)");
  cmd->add_option("--repeat-penalty", a.gen.sampler.repeat_penalty, "repetition penalty (1: off)");
  cmd->add_option("--repeat-last-n", a.gen.sampler.repeat_last_n, "tokens the penalty looks back at");
  cmd->add_option("-s,--seed", a.gen.sampler.seed, "random seed (same seed, same text)");
  cmd->add_flag("--stats", a.stats, "print tokens and speed after each reply");
  return cmd;
}

int run_chat_command() {
  const ChatArgs& a = args();
  const std::string path = a.m.model.empty() ? default_model_path() : a.m.model;
  std::error_code ec;
  if (a.m.model.empty() && !fs::exists(path, ec))
    return fail(not_found("default model not found at " + path + " (run scripts/setup.sh to fetch it, or pass -m MODEL)"));
  auto loaded = model::load_model(path);
  if (!loaded.is_ok()) return fail(loaded.status());
  if (!loaded->tokenizer) return fail(not_found(loaded->model.source + ": the model has no tokenizer"));
  const tokenizer::Tokenizer& tok = *loaded->tokenizer;

  std::string template_desc;
  auto tmpl = chat::choose_template(loaded->chat_template, loaded->model.source, tok, a.template_name, &template_desc);
  if (!tmpl.is_ok()) return fail(tmpl.status());
  const chat::RenderOptions render_opts = chat::render_options_for(tok, /*add_generation_prompt=*/true);

  cpu::CpuOptions o;
  o.context = a.m.context;
  o.threads = a.m.threads;
  o.kernels = a.m.kernels == "reference" ? cpu::CpuKernels::kReference : cpu::CpuKernels::kFast;
  auto backend = cpu::make_cpu_backend(loaded->model, o);
  if (!backend.is_ok()) return fail(backend.status());
  generate::Session session(**backend, tok);

  // No SA_RESTART: a Ctrl-C at the prompt interrupts the blocking read.
  struct sigaction sa {};
  sa.sa_handler = on_sigint;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = 0;
  sigaction(SIGINT, &sa, nullptr);

  std::fprintf(stderr, "pdvm chat: %s, context %d, chat template: %s\n"
                       "  /clear starts over, /exit or Ctrl-D quits, Ctrl-C stops a reply (at the prompt: quits)\n",
               loaded->model.source.c_str(), (*backend)->context(), template_desc.c_str());

  std::vector<chat::Message> messages;
  if (!a.system.empty()) messages.push_back({"system", a.system});
  const size_t n_fixed = messages.size();
  std::string cached_text;  // exactly the text whose tokens fill the KV cache (session.history())

  while (true) {
    std::fputs("> ", stdout);
    std::fflush(stdout);
    g_sigint.store(0);
    auto line = read_line();
    if (!line) {  // EOF, or Ctrl-C at the prompt
      std::fputc('\n', stdout);
      break;
    }
    if (*line == "/exit" || *line == "/quit") break;
    if (*line == "/clear") {
      session.reset();
      messages.resize(n_fixed);
      cached_text.clear();
      std::fputs("[conversation cleared]\n", stdout);
      continue;
    }
    if (line->empty()) continue;

    messages.push_back({"user", *line});
    auto full = tmpl->render(messages, render_opts);
    if (!full.is_ok()) {
      std::fprintf(stderr, "pdvm: %s\n", full.status().message().c_str());
      messages.pop_back();
      continue;
    }
    // What to feed: the new text after what the cache holds, or, when the template re-rendered
    // earlier turns differently, the tokens after the first one that differs.
    std::vector<int32_t> feed;
    if (!cached_text.empty() && full->compare(0, cached_text.size(), cached_text) == 0) {
      auto ids = tok.encode(std::string_view(*full).substr(cached_text.size()), /*add_special=*/false, /*parse_special=*/true);
      if (!ids.is_ok()) { std::fprintf(stderr, "pdvm: %s\n", ids.status().message().c_str()); messages.pop_back(); continue; }
      feed = std::move(*ids);
    } else {
      // transformers tokenises a rendered chat without adding specials: the template has BOS.
      auto ids = tok.encode(*full, /*add_special=*/false, /*parse_special=*/true);
      if (!ids.is_ok()) { std::fprintf(stderr, "pdvm: %s\n", ids.status().message().c_str()); messages.pop_back(); continue; }
      const auto& hist = session.history();
      size_t same = 0;
      while (same < hist.size() && same < ids->size() && hist[same] == (*ids)[same]) ++same;
      if (same == ids->size() && same > 0) --same;  // feed at least one token
      if (same < hist.size()) {
        if (!hist.empty() && a.stats)
          std::fprintf(stderr, "[pdvm] template re-rendered earlier turns: re-processing from token %zu of %zu\n",
                       same, hist.size());
        session.truncate(int(same));
      }
      feed.assign(ids->begin() + long(same), ids->end());
    }

    g_sigint.store(0);
    const int fed_from = session.position();
    const int reply_start = fed_from + int(feed.size());
    std::string reply;
    auto stats = session.generate(feed, a.gen, [&](std::string_view text) {
      if (g_sigint.load(std::memory_order_relaxed) != 0) return false;
      std::fwrite(text.data(), 1, text.size(), stdout);
      std::fflush(stdout);
      reply += text;
      return true;
    });
    if (!stats.is_ok()) {
      std::fprintf(stderr, "\npdvm: %s\n", stats.status().message().c_str());
      messages.pop_back();
      if (session.position() != fed_from) {  // the cache was partly filled: start clean
        session.reset();
        messages.resize(n_fixed);
        cached_text.clear();
        std::fputs("[conversation cleared]\n", stdout);
      }
      continue;
    }
    const bool cancelled = stats->stop_reason == "cancelled";
    std::fputs(cancelled ? " [stopped]\n" : "\n", stdout);
    if (stats->stop_reason == "context full") std::fputs("[context full: /clear to start over]\n", stdout);
    const auto& hist = session.history();
    cached_text = *full;
    if (reply_start <= int(hist.size()))
      cached_text += tok.decode(std::span<const int32_t>(hist).subspan(size_t(reply_start)), /*skip_special=*/false);
    messages.push_back({"assistant", reply});
    if (a.stats)
      std::fprintf(stderr, "[pdvm] fed %zu tokens in %.0f ms, %d tokens at %.1f tok/s, stop: %s, cache %d/%d\n",
                   feed.size(), stats->prompt_ms, stats->generated_tokens, stats->generate_tok_per_s(),
                   stats->stop_reason.c_str(), session.position(), (*backend)->context());
  }
  return 0;
}

}  // namespace pdvm::cli
