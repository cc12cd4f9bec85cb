// Renders a parsed Jinja Program with a set of variables, with jinja2's scoping (a {% set %} in a
// for-loop body lives for one iteration; namespace() objects carry values out) and the globals
// transformers gives chat templates: raise_exception, strftime_now, namespace, range, dict.
// Work and output are bounded, so a hostile template ends with an error, not a hang.
#pragma once

#include <ctime>
#include <optional>
#include <string>

#include "chat/jinja_ast.h"

namespace pdvm::chat::jinja {

struct RenderLimits {
  size_t max_output_bytes = size_t(64) << 20;
  uint64_t max_steps = 2'000'000;  // expression evaluations and loop iterations (a real chat
                                   // template takes about 100 per message)
};

// `now`: what strftime_now() formats (local time); the current time when unset.
Result<std::string> render_program(const Program& program, const Value::Dict& variables,
                                   std::optional<std::time_t> now = std::nullopt,
                                   const RenderLimits& limits = {});

}  // namespace pdvm::chat::jinja
