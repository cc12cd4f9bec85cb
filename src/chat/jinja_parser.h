// Parses Jinja template text into a Program, lexing exactly as Jinja2 does with the options
// transformers uses for chat templates: trim_blocks, lstrip_blocks, keep_trailing_newline off,
// {%- -%} / {%+ +%} whitespace control, comments, {% raw %}. Errors name the line and column and
// what was unexpected; no input crashes it (nesting depth is bounded).
#pragma once

#include <memory>
#include <string_view>

#include "chat/jinja_ast.h"

namespace pdvm::chat::jinja {

Result<std::shared_ptr<const Program>> parse_template(std::string_view source);

}  // namespace pdvm::chat::jinja
