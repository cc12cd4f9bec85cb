#include "generate/chat_template.h"

namespace pdvm::generate {

Result<ChatTemplate> ChatTemplate::from_model_template(const std::string& jinja) {
  ChatTemplate t;
  if (jinja.empty() || jinja.find("<|im_start|>") != std::string::npos) {
    // SmolLM2's template injects a system turn when the conversation has none.
    const std::string open = "<|im_start|>system\\n";
    const std::string close = "<|im_end|>";
    if (auto a = jinja.find(open); a != std::string::npos) {
      a += open.size();
      if (auto b = jinja.find(close, a); b != std::string::npos) t.default_system_ = jinja.substr(a, b - a);
    }
    return t;
  }
  return unsupported("the model's chat template is not ChatML; only ChatML is built in so far");
}

std::string ChatTemplate::render(const std::vector<ChatMessage>& messages,
                                 bool add_generation_prompt) const {
  std::string out;
  if (!default_system_.empty() && (messages.empty() || messages.front().role != "system"))
    out += "<|im_start|>system\n" + default_system_ + "<|im_end|>\n";
  for (const auto& m : messages) out += "<|im_start|>" + m.role + "\n" + m.content + "<|im_end|>\n";
  if (add_generation_prompt) out += "<|im_start|>assistant\n";
  return out;
}

}  // namespace pdvm::generate
