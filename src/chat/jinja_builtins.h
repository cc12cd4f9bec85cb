// Jinja's built-in filters and tests, and the Python methods templates call on strings, dicts and
// lists ('a b'.split(), message.get('x'), tool.items()), as far as chat templates use them.
// Errors are messages without a position; the renderer adds where they happened.
#pragma once

#include <string>

#include "chat/jinja_value.h"

namespace pdvm::chat::jinja {

// Caps that keep hostile templates from exhausting memory.
constexpr size_t kMaxStringBytes = size_t(64) << 20;
constexpr size_t kMaxListItems = size_t(1) << 20;

Result<Value> apply_filter(const std::string& name, const Value& value, const CallArgs& args);
Result<bool> apply_test(const std::string& name, const Value& value, const CallArgs& args);
// A bound method of a str, dict or list; Undefined when the type has no such (safe) method.
Value get_method(const Value& self, const std::string& name);
// Python's iteration: list items, dict keys, string characters; undefined iterates as empty.
Result<Value::List> iterate(const Value& v);
// Python's len(): code points of a string, items of a list or dict.
Result<int64_t> length_of(const Value& v);
// Python's < for numbers, strings and lists (others are refused as Python does).
Result<bool> less_than(const Value& a, const Value& b);

}  // namespace pdvm::chat::jinja
