#include "chat/template_choice.h"

#include <filesystem>
#include <fstream>
#include <sstream>

namespace pdvm::chat {

Result<ChatTemplate> choose_template(const std::string& model_template, const std::string& source,
                                     const tokenizer::Tokenizer& tok, const std::string& override_name,
                                     std::string* description) {
  std::string unused;
  std::string& said = description ? *description : unused;
  if (!override_name.empty()) {
    std::error_code ec;
    if (std::filesystem::is_regular_file(override_name, ec)) {
      std::ifstream f(override_name, std::ios::binary);
      std::stringstream ss;
      ss << f.rdbuf();
      said = override_name;
      auto t = ChatTemplate::parse(ss.str());
      if (!t.is_ok()) return t.status().with_context(override_name);
      return t;
    }
    said = "built-in '" + override_name + "'";
    return builtin_template(override_name);
  }
  if (!model_template.empty()) {
    said = "the model's own";
    auto t = ChatTemplate::parse(model_template);
    if (!t.is_ok()) return t.status().with_context(source + ": chat template");
    return t;
  }
  std::string family = "chatml";
  if (tok.token_id("<|start_header_id|>")) family = "llama3";
  else if (tok.token_id("<|user|>")) family = "phi3";
  else if (tok.token_id("<|im_sep|>")) family = "phi4";
  else if (tok.token_id("[INST]")) family = "mistral";
  else if (!tok.token_id("<|im_start|>") && tok.bos_id() >= 0 && tok.token_text(tok.bos_id()) == "<s>")
    family = "llama2";
  said = "built-in '" + family + "' (the model has none)";
  return builtin_template(family);
}

}  // namespace pdvm::chat
