// Filters, tests and methods for the Jinja subset (see jinja_builtins.h). Each follows the
// jinja2/filters.py or Python str/dict behaviour it is named after; where only part of a
// signature is supported, other arguments are refused with a message rather than ignored.
#include "chat/jinja_builtins.h"

#include <algorithm>
#include <cmath>

namespace pdvm::chat::jinja {
namespace {

// Positional-or-keyword argument access, as Python binds them.
struct ArgView {
  const CallArgs& a;
  const Value* get(size_t pos, const char* name) const {
    if (pos < a.positional.size()) return &a.positional[pos];
    for (const auto& kv : a.keyword)
      if (kv.first == name) return &kv.second;
    return nullptr;
  }
};

Status type_error(const std::string& what) { return invalid_argument(what); }

Result<std::string> want_string(const Value* v, const char* what) {
  if (!v || !v->is_string()) return type_error(std::string(what) + " must be a string");
  return v->as_string();
}

Result<int64_t> want_int(const Value* v, const char* what) {
  if (!v || (v->kind() != Value::Kind::kInt && v->kind() != Value::Kind::kBool))
    return type_error(std::string(what) + " must be an integer");
  return v->as_int();
}

Value str_value(std::string s) { return Value::string(std::move(s)); }

std::string substr_cp(const std::string& s, const std::vector<size_t>& offs, size_t a, size_t b) {
  return s.substr(offs[a], offs[b] - offs[a]);
}

// Python str.split(sep=None, maxsplit=-1).
Result<Value> py_split(const std::string& s, const Value* sep_v, int64_t maxsplit) {
  Value::List parts;
  if (!sep_v || sep_v->is_none()) {
    size_t i = 0;
    while (i < s.size()) {
      uint32_t cp = 0;
      size_t n = decode_utf8(s, i, cp);
      if (is_python_space(cp)) { i += n; continue; }
      if (maxsplit >= 0 && int64_t(parts.size()) >= maxsplit) {
        // The rest, with trailing whitespace removed.
        parts.push_back(str_value(py_strip(s.substr(i), nullptr, false, true)));
        return Value::list(std::move(parts));
      }
      size_t j = i;
      while (j < s.size()) {
        n = decode_utf8(s, j, cp);
        if (is_python_space(cp)) break;
        j += n;
      }
      parts.push_back(str_value(s.substr(i, j - i)));
      i = j;
    }
    return Value::list(std::move(parts));
  }
  if (!sep_v->is_string()) return type_error("split: the separator must be a string or None");
  const std::string& sep = sep_v->as_string();
  if (sep.empty()) return type_error("split: empty separator");
  size_t start = 0;
  while (true) {
    if (maxsplit >= 0 && int64_t(parts.size()) >= maxsplit) break;
    const size_t at = s.find(sep, start);
    if (at == std::string::npos) break;
    parts.push_back(str_value(s.substr(start, at - start)));
    start = at + sep.size();
  }
  parts.push_back(str_value(s.substr(start)));
  return Value::list(std::move(parts));
}

std::string py_replace(const std::string& s, const std::string& from, const std::string& to, int64_t count) {
  std::string out;
  if (from.empty()) {  // Python inserts `to` between every character (and at both ends)
    const auto offs = code_point_offsets(s);
    int64_t done = 0;
    for (size_t k = 0; k + 1 < offs.size(); ++k) {
      if (count < 0 || done < count) { out += to; ++done; }
      out += substr_cp(s, offs, k, k + 1);
    }
    if (count < 0 || done < count) out += to;
    return out;
  }
  size_t start = 0;
  int64_t done = 0;
  while (count < 0 || done < count) {
    const size_t at = s.find(from, start);
    if (at == std::string::npos) break;
    out.append(s, start, at - start);
    out += to;
    start = at + from.size();
    ++done;
  }
  out.append(s, start);
  return out;
}

// Python str.title() / Jinja's title filter: a letter after a non-letter starts a word.
std::string title_case(const std::string& s) {
  std::string out;
  bool prev_letter = false;
  const auto offs = code_point_offsets(s);
  for (size_t k = 0; k + 1 < offs.size(); ++k) {
    const std::string ch = substr_cp(s, offs, k, k + 1);
    const bool letter = ch.size() > 1 || std::isalpha(static_cast<unsigned char>(ch[0]));
    out += prev_letter ? py_lower(ch) : py_upper(ch);
    prev_letter = letter;
  }
  return out;
}

std::string capitalize(const std::string& s) {
  const auto offs = code_point_offsets(s);
  if (offs.size() < 2) return s;
  return py_upper(substr_cp(s, offs, 0, 1)) + py_lower(s.substr(offs[1]));
}

Result<Value> get_attribute_path(const Value& v, const std::string& path) {
  Value cur = v;
  size_t start = 0;
  while (start <= path.size()) {
    size_t dot = path.find('.', start);
    if (dot == std::string::npos) dot = path.size();
    const std::string part = path.substr(start, dot - start);
    const Value* found = cur.find(part);
    if (found) {
      cur = *found;
    } else if (cur.is_list() && !part.empty() && std::all_of(part.begin(), part.end(), ::isdigit)) {
      const size_t idx = size_t(std::stoull(part.substr(0, 9)));
      cur = idx < cur.as_list().size() ? cur.as_list()[idx] : Value::undefined(part);
    } else {
      cur = Value::undefined(part);
    }
    start = dot + 1;
  }
  return cur;
}

CallArgs tail_args(const CallArgs& a, size_t from) {
  CallArgs out;
  for (size_t i = from; i < a.positional.size(); ++i) out.positional.push_back(a.positional[i]);
  out.keyword = a.keyword;
  return out;
}

// select/reject/selectattr/rejectattr.
Result<Value> select_items(const Value& v, const CallArgs& args, bool by_attr, bool keep_when) {
  Value::List items;
  PDVM_ASSIGN_OR_RETURN(items, iterate(v));
  size_t next = 0;
  std::string attr;
  if (by_attr) {
    if (args.positional.empty() || !args.positional[0].is_string())
      return type_error("selectattr/rejectattr: the first argument must be an attribute name");
    attr = args.positional[0].as_string();
    next = 1;
  }
  std::string test;
  if (args.positional.size() > next) {
    if (!args.positional[next].is_string()) return type_error("select: the test name must be a string");
    test = args.positional[next].as_string();
  }
  const CallArgs test_args = tail_args(args, next + 1);
  Value::List out;
  for (const auto& item : items) {
    Value subject = item;
    if (by_attr) { PDVM_ASSIGN_OR_RETURN(subject, get_attribute_path(item, attr)); }
    bool ok = false;
    if (test.empty()) ok = subject.truthy();
    else { PDVM_ASSIGN_OR_RETURN(ok, apply_test(test, subject, test_args)); }
    if (ok == keep_when) out.push_back(item);
  }
  return Value::list(std::move(out));
}

Result<double> to_number(const Value& v, const char* what) {
  if (!v.is_number()) return type_error(std::string(what) + ": expected a number, got " + v.type_name());
  return v.as_double();
}

}  // namespace

Result<Value::List> iterate(const Value& v) {
  switch (v.kind()) {
    case Value::Kind::kUndefined: return Value::List{};
    case Value::Kind::kList: return v.as_list();
    case Value::Kind::kDict: {
      Value::List keys;
      for (const auto& kv : v.as_dict()) keys.push_back(str_value(kv.first));
      return keys;
    }
    case Value::Kind::kString: {
      Value::List chars;
      const auto offs = code_point_offsets(v.as_string());
      for (size_t k = 0; k + 1 < offs.size(); ++k) chars.push_back(str_value(substr_cp(v.as_string(), offs, k, k + 1)));
      return chars;
    }
    default:
      return type_error(std::string("'") + v.type_name() + "' object is not iterable");
  }
}

Result<int64_t> length_of(const Value& v) {
  switch (v.kind()) {
    case Value::Kind::kUndefined: return int64_t(0);
    case Value::Kind::kString: return int64_t(code_point_count(v.as_string()));
    case Value::Kind::kList: return int64_t(v.as_list().size());
    case Value::Kind::kDict: return int64_t(v.as_dict().size());
    default: return type_error(std::string("object of type '") + v.type_name() + "' has no len()");
  }
}

Result<bool> less_than(const Value& a, const Value& b) {
  if (a.is_number() && b.is_number()) {
    if (a.kind() == Value::Kind::kFloat || b.kind() == Value::Kind::kFloat) return a.as_double() < b.as_double();
    return a.as_int() < b.as_int();
  }
  if (a.is_string() && b.is_string()) return a.as_string() < b.as_string();  // UTF-8 order = code point order
  if (a.is_list() && b.is_list()) {
    const auto& x = a.as_list();
    const auto& y = b.as_list();
    for (size_t i = 0; i < std::min(x.size(), y.size()); ++i) {
      if (equals(x[i], y[i])) continue;
      return less_than(x[i], y[i]);
    }
    return x.size() < y.size();
  }
  return type_error(std::string("'<' not supported between instances of '") + a.type_name() + "' and '" +
                    b.type_name() + "'");
}

Result<bool> apply_test(const std::string& name, const Value& v, const CallArgs& args) {
  using K = Value::Kind;
  const ArgView av{args};
  const Value* arg = av.get(0, "value");
  auto need_arg = [&]() -> Status {
    return arg ? Status::ok() : type_error("test '" + name + "' needs an argument");
  };
  if (name == "defined") return !v.is_undefined();
  if (name == "undefined") return v.is_undefined();
  if (name == "none") return v.is_none();
  if (name == "boolean") return v.kind() == K::kBool;
  if (name == "true") return v.kind() == K::kBool && v.as_bool();
  if (name == "false") return v.kind() == K::kBool && !v.as_bool();
  if (name == "integer") return v.kind() == K::kInt;
  if (name == "float") return v.kind() == K::kFloat;
  if (name == "number") return v.is_number();
  if (name == "string") return v.is_string();
  if (name == "mapping") return v.kind() == K::kDict;
  if (name == "iterable") return v.is_string() || v.is_list() || v.kind() == K::kDict || v.is_undefined();
  if (name == "sequence") return v.is_string() || v.is_list() || v.kind() == K::kDict;
  if (name == "callable") return v.kind() == K::kFunction;
  if (name == "lower") return v.is_string() && py_lower(v.as_string()) == v.as_string();
  if (name == "upper") return v.is_string() && py_upper(v.as_string()) == v.as_string();
  if (name == "odd" || name == "even") {
    if (v.kind() != K::kInt && v.kind() != K::kBool) return type_error("test '" + name + "' needs an integer");
    const int64_t r = v.as_int() % 2;
    return name == "odd" ? r != 0 : r == 0;
  }
  if (name == "divisibleby") {
    PDVM_TRY(need_arg());
    int64_t d = 0;
    PDVM_ASSIGN_OR_RETURN(d, want_int(arg, "divisibleby's argument"));
    if (d == 0) return type_error("divisibleby(0): division by zero");
    if (v.kind() != K::kInt && v.kind() != K::kBool) return type_error("divisibleby needs an integer");
    return v.as_int() % d == 0;
  }
  if (name == "eq" || name == "equalto" || name == "==") { PDVM_TRY(need_arg()); return equals(v, *arg); }
  if (name == "ne" || name == "!=") { PDVM_TRY(need_arg()); return !equals(v, *arg); }
  if (name == "sameas") {
    PDVM_TRY(need_arg());
    if (v.kind() == K::kNone || v.kind() == K::kBool || v.kind() == K::kUndefined) return v.kind() == arg->kind() && equals(v, *arg);
    return v.is_mapping_like() && arg->is_mapping_like() && &v.as_dict() == &arg->as_dict();
  }
  if (name == "lt" || name == "<") { PDVM_TRY(need_arg()); return less_than(v, *arg); }
  if (name == "gt" || name == ">") { PDVM_TRY(need_arg()); return less_than(*arg, v); }
  if (name == "le" || name == "<=") {
    PDVM_TRY(need_arg());
    bool gt = false;
    PDVM_ASSIGN_OR_RETURN(gt, less_than(*arg, v));
    return !gt;
  }
  if (name == "ge" || name == ">=") {
    PDVM_TRY(need_arg());
    bool lt = false;
    PDVM_ASSIGN_OR_RETURN(lt, less_than(v, *arg));
    return !lt;
  }
  if (name == "in") {
    PDVM_TRY(need_arg());
    if (arg->is_string()) return v.is_string() && arg->as_string().find(v.as_string()) != std::string::npos;
    if (arg->kind() == K::kDict) return v.is_string() && arg->find(v.as_string()) != nullptr;
    Value::List items;
    PDVM_ASSIGN_OR_RETURN(items, iterate(*arg));
    return std::any_of(items.begin(), items.end(), [&](const Value& x) { return equals(x, v); });
  }
  return type_error("unknown test '" + name + "'");
}

Result<Value> apply_filter(const std::string& name, const Value& v, const CallArgs& args) {
  using K = Value::Kind;
  const ArgView av{args};
  if (name == "default" || name == "d") {
    const Value* dflt = av.get(0, "default_value");
    const Value* boolean = av.get(1, "boolean");
    const bool use = v.is_undefined() || (boolean && boolean->truthy() && !v.truthy());
    return use ? (dflt ? *dflt : str_value("")) : v;
  }
  if (name == "length" || name == "count") {
    int64_t n = 0;
    PDVM_ASSIGN_OR_RETURN(n, length_of(v));
    return Value::integer(n);
  }
  if (name == "string") return str_value(v.to_str());
  if (name == "safe") return v;
  if (name == "trim") {
    const Value* chars = av.get(0, "chars");
    std::string set;
    if (chars && !chars->is_none()) { PDVM_ASSIGN_OR_RETURN(set, want_string(chars, "trim's chars")); }
    return str_value(py_strip(v.to_str(), chars && !chars->is_none() ? &set : nullptr, true, true));
  }
  if (name == "upper") return str_value(py_upper(v.to_str()));
  if (name == "lower") return str_value(py_lower(v.to_str()));
  if (name == "capitalize") return str_value(capitalize(v.to_str()));
  if (name == "title") return str_value(title_case(v.to_str()));
  if (name == "tojson") {
    const Value* indent = av.get(0, "indent");
    const Value* ensure_ascii = av.get(1, "ensure_ascii");
    const Value* separators = av.get(2, "separators");
    const Value* sort_keys = av.get(3, "sort_keys");
    int ind = -1;
    if (indent && !indent->is_none()) {
      int64_t n = 0;
      PDVM_ASSIGN_OR_RETURN(n, want_int(indent, "tojson's indent"));
      if (n > 64) return type_error("tojson: indent larger than 64 is not supported");
      ind = int(std::max<int64_t>(n, 0));
    }
    if (ensure_ascii && ensure_ascii->truthy()) return type_error("tojson: ensure_ascii=True is not supported");
    std::string item_sep, key_sep;
    if (separators && !separators->is_none()) {
      if (!separators->is_list() || separators->as_list().size() != 2 || !separators->as_list()[0].is_string() ||
          !separators->as_list()[1].is_string())
        return type_error("tojson: separators must be a pair of strings");
      item_sep = separators->as_list()[0].as_string();
      key_sep = separators->as_list()[1].as_string();
    }
    std::string out;
    const bool custom = separators && !separators->is_none();
    PDVM_ASSIGN_OR_RETURN(out, v.to_json(ind, sort_keys && sort_keys->truthy(), custom ? &item_sep : nullptr,
                                         custom ? &key_sep : nullptr));
    return str_value(std::move(out));
  }
  if (name == "first" || name == "last") {
    Value::List items;
    PDVM_ASSIGN_OR_RETURN(items, iterate(v));
    if (items.empty()) return Value::undefined("first");
    return name == "first" ? items.front() : items.back();
  }
  if (name == "list") {
    Value::List items;
    PDVM_ASSIGN_OR_RETURN(items, iterate(v));
    return Value::list(std::move(items));
  }
  if (name == "reverse") {
    if (v.is_string()) {
      const auto offs = code_point_offsets(v.as_string());
      std::string out;
      for (size_t k = offs.size() - 1; k > 0; --k) out += substr_cp(v.as_string(), offs, k - 1, k);
      return str_value(std::move(out));
    }
    Value::List items;
    PDVM_ASSIGN_OR_RETURN(items, iterate(v));
    std::reverse(items.begin(), items.end());
    return Value::list(std::move(items));
  }
  if (name == "join") {
    const Value* sep = av.get(0, "d");
    const Value* attribute = av.get(1, "attribute");
    std::string d;
    if (sep) { PDVM_ASSIGN_OR_RETURN(d, want_string(sep, "join's separator")); }
    Value::List items;
    PDVM_ASSIGN_OR_RETURN(items, iterate(v));
    std::string out;
    for (size_t i = 0; i < items.size(); ++i) {
      if (i) out += d;
      Value item = items[i];
      if (attribute && attribute->is_string()) { PDVM_ASSIGN_OR_RETURN(item, get_attribute_path(item, attribute->as_string())); }
      out += item.to_str();
      if (out.size() > kMaxStringBytes) return type_error("join: result larger than 64 MiB");
    }
    return str_value(std::move(out));
  }
  if (name == "replace") {
    std::string from, to;
    PDVM_ASSIGN_OR_RETURN(from, want_string(av.get(0, "old"), "replace's old"));
    PDVM_ASSIGN_OR_RETURN(to, want_string(av.get(1, "new"), "replace's new"));
    int64_t count = -1;
    if (const Value* c = av.get(2, "count"); c && !c->is_none()) { PDVM_ASSIGN_OR_RETURN(count, want_int(c, "replace's count")); }
    const std::string s = v.to_str();
    if (!to.empty() && s.size() + (s.size() + 1) * to.size() > kMaxStringBytes) return type_error("replace: result too large");
    return str_value(py_replace(s, from, to, count));
  }
  if (name == "items") {
    if (v.is_undefined()) return Value::list({});
    if (v.kind() != K::kDict) return type_error("items: expected a mapping, got " + std::string(v.type_name()));
    Value::List out;
    for (const auto& kv : v.as_dict()) out.push_back(Value::list({str_value(kv.first), kv.second}));
    return Value::list(std::move(out));
  }
  if (name == "dictsort") {
    if (v.kind() != K::kDict) return type_error("dictsort: expected a mapping");
    Value::List out;
    for (const auto& kv : v.as_dict()) out.push_back(Value::list({str_value(kv.first), kv.second}));
    std::stable_sort(out.begin(), out.end(), [](const Value& a, const Value& b) {
      return py_lower(a.as_list()[0].as_string()) < py_lower(b.as_list()[0].as_string());
    });
    return Value::list(std::move(out));
  }
  if (name == "select" || name == "reject") return select_items(v, args, false, name == "select");
  if (name == "selectattr" || name == "rejectattr") return select_items(v, args, true, name == "selectattr");
  if (name == "map") {
    Value::List items;
    PDVM_ASSIGN_OR_RETURN(items, iterate(v));
    Value::List out;
    if (const Value* attribute = av.get(99, "attribute")) {
      if (!attribute->is_string()) return type_error("map: attribute must be a string");
      const Value* dflt = nullptr;
      for (const auto& kv : args.keyword) if (kv.first == "default") dflt = &kv.second;
      for (const auto& item : items) {
        Value x;
        PDVM_ASSIGN_OR_RETURN(x, get_attribute_path(item, attribute->as_string()));
        out.push_back(x.is_undefined() && dflt ? *dflt : x);
      }
      return Value::list(std::move(out));
    }
    if (args.positional.empty() || !args.positional[0].is_string()) return type_error("map: expected a filter name or attribute=");
    const CallArgs rest = tail_args(args, 1);
    for (const auto& item : items) {
      Value x;
      PDVM_ASSIGN_OR_RETURN(x, apply_filter(args.positional[0].as_string(), item, rest));
      out.push_back(std::move(x));
    }
    return Value::list(std::move(out));
  }
  if (name == "unique") {
    Value::List items;
    PDVM_ASSIGN_OR_RETURN(items, iterate(v));
    Value::List out;
    for (const auto& x : items)
      if (std::none_of(out.begin(), out.end(), [&](const Value& y) { return equals(x, y); })) out.push_back(x);
    return Value::list(std::move(out));
  }
  if (name == "sort") {
    Value::List items;
    PDVM_ASSIGN_OR_RETURN(items, iterate(v));
    const Value* reverse = av.get(0, "reverse");
    const Value* attribute = av.get(2, "attribute");
    Status failure;
    auto key = [&](const Value& x) -> Value {
      Value k = x;
      if (attribute && attribute->is_string()) {
        auto r = get_attribute_path(x, attribute->as_string());
        if (r.is_ok()) k = *r;
      }
      return k.is_string() ? str_value(py_lower(k.as_string())) : k;  // case_sensitive=False
    };
    std::stable_sort(items.begin(), items.end(), [&](const Value& a, const Value& b) {
      auto r = less_than(key(a), key(b));
      if (!r.is_ok()) { failure = r.status(); return false; }
      return *r;
    });
    PDVM_TRY(failure);
    if (reverse && reverse->truthy()) std::reverse(items.begin(), items.end());
    return Value::list(std::move(items));
  }
  if (name == "abs") {
    if (v.kind() == K::kFloat) return Value::floating(std::fabs(v.as_double()));
    if (v.kind() == K::kInt || v.kind() == K::kBool) {
      if (v.as_int() == INT64_MIN) return type_error("abs: integer overflow");
      return Value::integer(v.as_int() < 0 ? -v.as_int() : v.as_int());
    }
    return type_error(std::string("bad operand type for abs(): '") + v.type_name() + "'");
  }
  if (name == "int" || name == "float") {
    const Value* dflt = av.get(0, "default");
    const Value fallback = dflt ? *dflt : (name == "int" ? Value::integer(0) : Value::floating(0));
    double d = 0;
    if (v.is_number()) d = v.as_double();
    else if (v.is_string()) {
      const std::string s = py_strip(v.as_string(), nullptr, true, true);
      try {
        size_t used = 0;
        d = std::stod(s, &used);
        if (used != s.size()) return fallback;
      } catch (const std::exception&) {
        return fallback;
      }
    } else {
      return fallback;
    }
    if (name == "float") return Value::floating(d);
    if (v.kind() == K::kInt || v.kind() == K::kBool) return Value::integer(v.as_int());
    if (!std::isfinite(d) || std::fabs(d) > 9.2e18) return fallback;
    return Value::integer(int64_t(d));
  }
  if (name == "round") {
    double d = 0;
    PDVM_ASSIGN_OR_RETURN(d, to_number(v, "round"));
    int64_t precision = 0;
    if (const Value* p = av.get(0, "precision")) { PDVM_ASSIGN_OR_RETURN(precision, want_int(p, "round's precision")); }
    std::string method = "common";
    if (const Value* m = av.get(1, "method")) { PDVM_ASSIGN_OR_RETURN(method, want_string(m, "round's method")); }
    const double scale = std::pow(10.0, double(std::clamp<int64_t>(precision, -300, 300)));
    double r = d * scale;
    r = method == "ceil" ? std::ceil(r) : method == "floor" ? std::floor(r) : std::round(r);
    return Value::floating(r / scale);
  }
  if (name == "sum") {
    Value::List items;
    PDVM_ASSIGN_OR_RETURN(items, iterate(v));
    const Value* attribute = av.get(0, "attribute");
    const Value* start = av.get(1, "start");
    bool is_float = start && start->kind() == K::kFloat;
    double fsum = start ? start->as_double() : 0;
    int64_t isum = start && !is_float ? start->as_int() : 0;
    for (auto x : items) {
      if (attribute && attribute->is_string()) { PDVM_ASSIGN_OR_RETURN(x, get_attribute_path(x, attribute->as_string())); }
      if (!x.is_number()) return type_error(std::string("sum: unsupported operand type '") + x.type_name() + "'");
      if (x.kind() == K::kFloat) is_float = true;
      fsum += x.as_double();
      if (__builtin_add_overflow(isum, x.kind() == K::kFloat ? 0 : x.as_int(), &isum)) return type_error("sum: integer overflow");
    }
    return is_float ? Value::floating(fsum) : Value::integer(isum);
  }
  if (name == "min" || name == "max") {
    Value::List items;
    PDVM_ASSIGN_OR_RETURN(items, iterate(v));
    if (items.empty()) return Value::undefined(name);
    Value best = items[0];
    for (size_t i = 1; i < items.size(); ++i) {
      bool lt = false;
      PDVM_ASSIGN_OR_RETURN(lt, name == "min" ? less_than(items[i], best) : less_than(best, items[i]));
      if (lt) best = items[i];
    }
    return best;
  }
  if (name == "indent") {
    int64_t width = 4;
    if (const Value* w = av.get(0, "width")) { PDVM_ASSIGN_OR_RETURN(width, want_int(w, "indent's width")); }
    width = std::clamp<int64_t>(width, 0, 256);
    const Value* first = av.get(1, "first");
    const Value* blank = av.get(2, "blank");
    const std::string pad(size_t(width), ' ');
    const std::string s = v.to_str();
    std::string out;
    size_t start = 0;
    bool first_line = true;
    while (true) {
      const size_t nl = s.find('\n', start);
      const std::string line = s.substr(start, nl == std::string::npos ? std::string::npos : nl - start);
      const bool add = first_line ? (first && first->truthy()) : (!line.empty() || (blank && blank->truthy()));
      if (add) out += pad;
      out += line;
      if (nl == std::string::npos) break;
      out += '\n';
      start = nl + 1;
      first_line = false;
      if (out.size() > kMaxStringBytes) return type_error("indent: result too large");
    }
    return str_value(std::move(out));
  }
  if (name == "e" || name == "escape") {
    std::string out;
    for (char c : v.to_str()) {
      switch (c) {
        case '&': out += "&amp;"; break;
        case '<': out += "&lt;"; break;
        case '>': out += "&gt;"; break;
        case '"': out += "&#34;"; break;
        case '\'': out += "&#39;"; break;
        default: out += c;
      }
    }
    return str_value(std::move(out));
  }
  if (name == "attr") {
    std::string a;
    PDVM_ASSIGN_OR_RETURN(a, want_string(av.get(0, "name"), "attr's name"));
    const Value* found = v.find(a);
    return found ? *found : Value::undefined(a);
  }
  return type_error("unknown filter '" + name + "'");
}

Value get_method(const Value& self, const std::string& name) {
  auto bind = [&](NativeFunction fn) { return Value::function(name, std::move(fn)); };
  if (self.is_string()) {
    const std::string s = self.as_string();
    if (name == "strip" || name == "lstrip" || name == "rstrip") {
      const bool left = name != "rstrip", right = name != "lstrip";
      return bind([s, left, right](const CallArgs& a) -> Result<Value> {
        const Value* chars = ArgView{a}.get(0, "chars");
        if (chars && !chars->is_none()) {
          if (!chars->is_string()) return type_error("strip: chars must be a string or None");
          return str_value(py_strip(s, &chars->as_string(), left, right));
        }
        return str_value(py_strip(s, nullptr, left, right));
      });
    }
    if (name == "split") {
      return bind([s](const CallArgs& a) -> Result<Value> {
        int64_t maxsplit = -1;
        if (const Value* m = ArgView{a}.get(1, "maxsplit")) { PDVM_ASSIGN_OR_RETURN(maxsplit, want_int(m, "split's maxsplit")); }
        return py_split(s, ArgView{a}.get(0, "sep"), maxsplit);
      });
    }
    if (name == "startswith" || name == "endswith") {
      const bool starts = name == "startswith";
      return bind([s, starts](const CallArgs& a) -> Result<Value> {
        const Value* p = ArgView{a}.get(0, "prefix");
        if (!p) return type_error("startswith/endswith need an argument");
        Value::List options = p->is_list() ? p->as_list() : Value::List{*p};
        for (const auto& o : options) {
          if (!o.is_string()) return type_error("startswith/endswith: expected a string or a tuple of strings");
          const std::string& x = o.as_string();
          if (x.size() <= s.size() && (starts ? s.compare(0, x.size(), x) == 0 : s.compare(s.size() - x.size(), x.size(), x) == 0))
            return Value::boolean(true);
        }
        return Value::boolean(false);
      });
    }
    if (name == "upper") return bind([s](const CallArgs&) -> Result<Value> { return str_value(py_upper(s)); });
    if (name == "lower") return bind([s](const CallArgs&) -> Result<Value> { return str_value(py_lower(s)); });
    if (name == "title") return bind([s](const CallArgs&) -> Result<Value> { return str_value(title_case(s)); });
    if (name == "capitalize") return bind([s](const CallArgs&) -> Result<Value> { return str_value(capitalize(s)); });
    if (name == "replace") {
      return bind([s](const CallArgs& a) -> Result<Value> {
        CallArgs b = a;
        return apply_filter("replace", str_value(s), b);
      });
    }
    if (name == "find" || name == "count" || name == "rfind") {
      return bind([s, name](const CallArgs& a) -> Result<Value> {
        std::string sub;
        PDVM_ASSIGN_OR_RETURN(sub, want_string(ArgView{a}.get(0, "sub"), "the substring"));
        if (name == "count") {
          if (sub.empty()) return Value::integer(int64_t(code_point_count(s)) + 1);
          int64_t n = 0;
          for (size_t at = s.find(sub); at != std::string::npos; at = s.find(sub, at + sub.size())) ++n;
          return Value::integer(n);
        }
        const size_t at = name == "find" ? s.find(sub) : s.rfind(sub);
        return Value::integer(at == std::string::npos ? -1 : int64_t(code_point_count(s.substr(0, at))));
      });
    }
    if (name == "join") {
      return bind([s](const CallArgs& a) -> Result<Value> {
        const Value* it = ArgView{a}.get(0, "iterable");
        if (!it) return type_error("join needs an argument");
        Value::List items;
        PDVM_ASSIGN_OR_RETURN(items, iterate(*it));
        std::string out;
        for (size_t i = 0; i < items.size(); ++i) {
          if (!items[i].is_string()) return type_error("join: sequence item " + std::to_string(i) + ": expected str");
          if (i) out += s;
          out += items[i].as_string();
          if (out.size() > kMaxStringBytes) return type_error("join: result too large");
        }
        return str_value(std::move(out));
      });
    }
    if (name == "splitlines") {
      return bind([s](const CallArgs&) -> Result<Value> {
        Value::List out;
        size_t start = 0;
        while (start < s.size()) {
          size_t nl = s.find_first_of("\n\r", start);
          if (nl == std::string::npos) { out.push_back(str_value(s.substr(start))); break; }
          out.push_back(str_value(s.substr(start, nl - start)));
          start = nl + (s[nl] == '\r' && nl + 1 < s.size() && s[nl + 1] == '\n' ? 2 : 1);
        }
        return Value::list(std::move(out));
      });
    }
    if (name == "removeprefix" || name == "removesuffix") {
      const bool prefix = name == "removeprefix";
      return bind([s, prefix](const CallArgs& a) -> Result<Value> {
        std::string x;
        PDVM_ASSIGN_OR_RETURN(x, want_string(ArgView{a}.get(0, "prefix"), "the affix"));
        if (x.size() <= s.size()) {
          if (prefix && s.compare(0, x.size(), x) == 0) return str_value(s.substr(x.size()));
          if (!prefix && s.compare(s.size() - x.size(), x.size(), x) == 0) return str_value(s.substr(0, s.size() - x.size()));
        }
        return str_value(s);
      });
    }
    if (name == "isdigit" || name == "isalpha" || name == "isalnum" || name == "isspace") {
      return bind([s, name](const CallArgs&) -> Result<Value> {
        if (s.empty()) return Value::boolean(false);
        for (size_t i = 0; i < s.size();) {
          uint32_t cp = 0;
          i += decode_utf8(s, i, cp);
          const bool ok = name == "isspace" ? is_python_space(cp)
                          : cp >= 0x80 ? name != "isdigit"  // non-ASCII letters count as alpha
                          : name == "isdigit" ? std::isdigit(int(cp)) != 0
                          : name == "isalpha" ? std::isalpha(int(cp)) != 0 : std::isalnum(int(cp)) != 0;
          if (!ok) return Value::boolean(false);
        }
        return Value::boolean(true);
      });
    }
    return Value::undefined(name);
  }
  if (self.kind() == Value::Kind::kDict) {
    if (name == "items" || name == "keys" || name == "values") {
      return bind([self, name](const CallArgs&) -> Result<Value> {
        Value::List out;
        for (const auto& kv : self.as_dict()) {
          if (name == "items") out.push_back(Value::list({str_value(kv.first), kv.second}));
          else out.push_back(name == "keys" ? str_value(kv.first) : kv.second);
        }
        return Value::list(std::move(out));
      });
    }
    if (name == "get") {
      return bind([self](const CallArgs& a) -> Result<Value> {
        const Value* key = ArgView{a}.get(0, "key");
        const Value* dflt = ArgView{a}.get(1, "default");
        if (!key) return type_error("get needs a key");
        const Value* found = key->is_string() ? self.find(key->as_string()) : nullptr;
        return found ? *found : dflt ? *dflt : Value::none();
      });
    }
    return Value::undefined(name);
  }
  if (self.is_list()) {
    if (name == "count" || name == "index") {
      return bind([self, name](const CallArgs& a) -> Result<Value> {
        const Value* x = ArgView{a}.get(0, "value");
        if (!x) return type_error(name + " needs an argument");
        int64_t n = 0;
        for (size_t i = 0; i < self.as_list().size(); ++i) {
          if (!equals(self.as_list()[i], *x)) continue;
          if (name == "index") return Value::integer(int64_t(i));
          ++n;
        }
        if (name == "index") return type_error(x->repr() + " is not in list");
        return Value::integer(n);
      });
    }
  }
  return Value::undefined(name);
}

}  // namespace pdvm::chat::jinja
