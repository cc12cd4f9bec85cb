// Which chat template a model is spoken to with: a --template override (a built-in name or a
// Jinja file), else the model's own template, else a built-in picked from the tokenizer's
// special tokens. Shared by `pdvm run` and `pdvm chat`.
#pragma once

#include <string>

#include "chat/chat_template.h"
#include "tokenizer/tokenizer.h"

namespace pdvm::chat {

// `source` names the model in error messages; `description` (optional) says what was chosen.
Result<ChatTemplate> choose_template(const std::string& model_template, const std::string& source,
                                     const tokenizer::Tokenizer& tok, const std::string& override_name,
                                     std::string* description = nullptr);

}  // namespace pdvm::chat
