// Chat prompts: renders a conversation in the model's chat format. For now the built-in
// ChatML format (SmolLM2, Qwen2, Phi-4 use it) with the model template's default system
// prompt; full Jinja templates come with the chat issue.
#pragma once

#include <string>
#include <vector>

#include "pdvm/status.h"

namespace pdvm::generate {

struct ChatMessage {
  std::string role;  // "system", "user", "assistant"
  std::string content;
};

class ChatTemplate {
 public:
  // From the model's Jinja template text (may be empty): recognises ChatML and its default
  // system prompt; anything else is refused with a clear message.
  static Result<ChatTemplate> from_model_template(const std::string& jinja);
  std::string render(const std::vector<ChatMessage>& messages, bool add_generation_prompt) const;
  const std::string& default_system() const { return default_system_; }
  // Text that ends an assistant turn (what the model emits before its EOS token).
  std::string end_of_turn() const { return "<|im_end|>\n"; }

 private:
  std::string default_system_;
};

}  // namespace pdvm::generate
