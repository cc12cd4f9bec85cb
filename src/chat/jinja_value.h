// Values of the Jinja subset used by chat templates, with Python's semantics where a template can
// observe them: truthiness, ==, str() (what {{ x }} prints), repr() inside lists and dicts, and
// json.dumps (transformers' tojson). Strings are UTF-8; lengths, indices and slices count code
// points as Python does. Owns no parsing or rendering (jinja_parser.h, jinja_render.h).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "pdvm/status.h"

namespace pdvm::chat::jinja {

class Value;
struct CallArgs {
  std::vector<Value> positional;
  std::vector<std::pair<std::string, Value>> keyword;
};
// A callable: a global (range, namespace, raise_exception) or a bound method ('a b'.split).
// Errors are plain messages; the renderer adds the position.
using NativeFunction = std::function<Result<Value>(const CallArgs&)>;

class Value {
 public:
  enum class Kind { kUndefined, kNone, kBool, kInt, kFloat, kString, kList, kDict, kNamespace,
                    kFunction };
  using List = std::vector<Value>;
  using Dict = std::vector<std::pair<std::string, Value>>;  // insertion order, as Python's dict

  Value() = default;  // undefined
  static Value undefined(std::string name = {}) { Value v; v.str_ = std::move(name); return v; }
  static Value none() { Value v; v.kind_ = Kind::kNone; return v; }
  static Value boolean(bool b) { Value v; v.kind_ = Kind::kBool; v.int_ = b; return v; }
  static Value integer(int64_t i) { Value v; v.kind_ = Kind::kInt; v.int_ = i; return v; }
  static Value floating(double f) { Value v; v.kind_ = Kind::kFloat; v.float_ = f; return v; }
  static Value string(std::string s) { Value v; v.kind_ = Kind::kString; v.str_ = std::move(s); return v; }
  static Value list(List items);
  static Value dict(Dict items);
  // A mutable attribute bag shared by every copy ({% set ns.x = 1 %} is seen through all of them).
  static Value namespace_object(Dict items);
  static Value function(std::string name, NativeFunction fn);

  Kind kind() const { return kind_; }
  bool is_undefined() const { return kind_ == Kind::kUndefined; }
  bool is_none() const { return kind_ == Kind::kNone; }
  bool is_string() const { return kind_ == Kind::kString; }
  bool is_number() const { return kind_ == Kind::kInt || kind_ == Kind::kFloat || kind_ == Kind::kBool; }
  bool is_list() const { return kind_ == Kind::kList; }
  bool is_dict() const { return kind_ == Kind::kDict; }
  bool is_mapping_like() const { return kind_ == Kind::kDict || kind_ == Kind::kNamespace; }

  bool as_bool() const { return int_ != 0; }
  int64_t as_int() const { return int_; }           // kInt or kBool
  double as_double() const { return kind_ == Kind::kFloat ? float_ : double(int_); }
  const std::string& as_string() const { return str_; }  // kString; the name for kUndefined
  const List& as_list() const { return *list_; }
  const Dict& as_dict() const { return *dict_; }      // kDict or kNamespace
  Dict& namespace_items() const { return *dict_; }    // kNamespace only (shared)
  const std::string& function_name() const { return str_; }
  const NativeFunction& function_body() const { return *fn_; }

  // Dict / namespace lookup by key; nullptr if absent.
  const Value* find(std::string_view key) const;

  bool truthy() const;                      // Python bool(); undefined is false
  std::string to_str() const;               // Python str(); undefined -> ""
  std::string repr() const;                 // Python repr()
  // json.dumps(x, ensure_ascii=False, indent=indent (<0: none), sort_keys, separators) with
  // json.dumps' default separators when null; fails on undefined and functions, as it does.
  Result<std::string> to_json(int indent = -1, bool sort_keys = false, const std::string* item_sep = nullptr,
                              const std::string* key_sep = nullptr) const;
  const char* type_name() const;            // Python's type name, for messages

 private:
  Kind kind_ = Kind::kUndefined;
  int64_t int_ = 0;
  double float_ = 0;
  std::string str_;
  std::shared_ptr<List> list_;
  std::shared_ptr<Dict> dict_;
  std::shared_ptr<const NativeFunction> fn_;
};

// Python ==: numbers compare by value across int/float/bool, containers deeply, undefined only
// equals undefined.
bool equals(const Value& a, const Value& b);

// --- UTF-8 / Python str helpers -------------------------------------------------------------
// Byte offsets of each code point start, plus the total size at the end (invalid bytes count as
// one code point each, so nothing is ever dropped).
std::vector<size_t> code_point_offsets(std::string_view s);
size_t code_point_count(std::string_view s);
// Decodes the code point at s[i] into cp and returns its byte length; an invalid byte decodes
// as itself with length 1.
size_t decode_utf8(std::string_view s, size_t i, uint32_t& cp);
void append_utf8(std::string& out, uint32_t cp);
// Python str.isspace() for one code point.
bool is_python_space(uint32_t cp);
// Python str.strip/lstrip/rstrip; `chars` null -> whitespace, else the set of code points in it.
std::string py_strip(std::string_view s, const std::string* chars, bool left, bool right);
std::string py_upper(std::string_view s);  // Python str.upper() (full Unicode case mapping, via ICU)
std::string py_lower(std::string_view s);
std::string format_float(double f);  // Python repr(float)

}  // namespace pdvm::chat::jinja
