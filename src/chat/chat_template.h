// Chat templates: renders a conversation into the prompt text a model was trained on, by running
// the model's own Jinja template (tokenizer_config.json "chat_template", GGUF
// "tokenizer.chat_template") exactly as transformers' apply_chat_template(tokenize=False) does,
// or a built-in template for models that ship none. Owns: the template API and the built-ins;
// the Jinja engine lives in jinja_*.h. Thread safety: a ChatTemplate is immutable after parse();
// render() may run on several threads at once.
#pragma once

#include <ctime>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "pdvm/status.h"

namespace pdvm::tokenizer { class Tokenizer; }
namespace pdvm::chat {
namespace jinja { struct Program; }

struct Message {
  std::string role;  // "system", "user", "assistant" (templates may accept others, e.g. "tool")
  std::string content;
};

struct RenderOptions {
  bool add_generation_prompt = true;
  std::string bos_token;  // the tokenizer's BOS/EOS *text*, as transformers passes them
  std::string eos_token;
  std::optional<std::time_t> now;  // the clock strftime_now() reads (unset: the current time)
  // Further template variables, e.g. {"enable_thinking": false} or {"tools": [...]}; `tools` and
  // `documents` default to None, as in transformers.
  nlohmann::ordered_json extra = nlohmann::ordered_json::object();
};

class ChatTemplate {
 public:
  // Parse errors name the line and column ("template line 3, column 14: unexpected ...").
  static Result<ChatTemplate> parse(std::string_view jinja_source);

  Result<std::string> render(const std::vector<Message>& messages, bool add_generation_prompt,
                             std::string_view bos_token = "", std::string_view eos_token = "") const;
  Result<std::string> render(const std::vector<Message>& messages, const RenderOptions& options) const;
  // Messages as JSON objects with any fields (tool_calls, reasoning_content, ...), in order.
  Result<std::string> render_json(const nlohmann::ordered_json& messages, const RenderOptions& options) const;

  const std::string& source() const;

 private:
  std::shared_ptr<const jinja::Program> program_;
};

// Built-in templates for models without one: "chatml", "smollm2", "qwen2", "llama2", "llama3",
// "mistral", "phi3", "phi4". Each is the family's published template (see chat_template.cpp).
Result<ChatTemplate> builtin_template(std::string_view family);
std::vector<std::string> builtin_template_names();

// The bos/eos strings for RenderOptions from a tokenizer (its BOS token and first EOS token;
// "" where it has none).
RenderOptions render_options_for(const tokenizer::Tokenizer& tok, bool add_generation_prompt);

}  // namespace pdvm::chat
