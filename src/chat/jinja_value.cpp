// Python-compatible printing and comparison of Jinja values (see jinja_value.h). The rules that
// matter for byte-exact prompts: str(float) is Python's shortest repr, repr(str) picks its quote
// as Python does, json.dumps keeps non-ASCII text as is (transformers passes ensure_ascii=False).
#include "chat/jinja_value.h"

#include <unicode/uchar.h>
#include <unicode/ustring.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>

namespace pdvm::chat::jinja {

size_t decode_utf8(std::string_view s, size_t i, uint32_t& cp) {
  const auto b = static_cast<unsigned char>(s[i]);
  size_t n = b < 0x80 ? 1 : (b >> 5) == 0x6 ? 2 : (b >> 4) == 0xE ? 3 : (b >> 3) == 0x1E ? 4 : 0;
  if (n == 0 || i + n > s.size()) { cp = b; return 1; }
  cp = n == 1 ? b : n == 2 ? (b & 0x1F) : n == 3 ? (b & 0x0F) : (b & 0x07);
  for (size_t k = 1; k < n; ++k) {
    const auto c = static_cast<unsigned char>(s[i + k]);
    if ((c & 0xC0) != 0x80) { cp = b; return 1; }
    cp = (cp << 6) | (c & 0x3F);
  }
  return n;
}

void append_utf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) { out += char(cp); return; }
  if (cp < 0x800) { out += char(0xC0 | (cp >> 6)); out += char(0x80 | (cp & 0x3F)); return; }
  if (cp < 0x10000) {
    out += char(0xE0 | (cp >> 12)); out += char(0x80 | ((cp >> 6) & 0x3F)); out += char(0x80 | (cp & 0x3F));
    return;
  }
  out += char(0xF0 | (cp >> 18)); out += char(0x80 | ((cp >> 12) & 0x3F));
  out += char(0x80 | ((cp >> 6) & 0x3F)); out += char(0x80 | (cp & 0x3F));
}

namespace {

std::string repr_string(std::string_view s) {
  const bool has_single = s.find('\'') != std::string_view::npos;
  const bool has_double = s.find('"') != std::string_view::npos;
  const char quote = has_single && !has_double ? '"' : '\'';
  std::string out(1, quote);
  for (size_t i = 0; i < s.size();) {
    uint32_t cp = 0;
    const size_t n = decode_utf8(s, i, cp);
    if (cp == '\\') out += "\\\\";
    else if (cp == uint32_t(quote)) { out += '\\'; out += quote; }
    else if (cp == '\n') out += "\\n";
    else if (cp == '\r') out += "\\r";
    else if (cp == '\t') out += "\\t";
    else {
      // Python escapes what str.isprintable() rejects: categories Cc Cf Cs Co Cn Zl Zp Zs (but ' ').
      const int8_t t = u_charType(UChar32(cp));
      const bool printable = cp == ' ' || !(t == U_CONTROL_CHAR || t == U_FORMAT_CHAR || t == U_SURROGATE ||
                                            t == U_PRIVATE_USE_CHAR || t == U_UNASSIGNED ||
                                            t == U_LINE_SEPARATOR || t == U_PARAGRAPH_SEPARATOR ||
                                            t == U_SPACE_SEPARATOR);
      if (printable) out.append(s.substr(i, n));
      else {
        char buf[16];
        if (cp < 0x100) std::snprintf(buf, sizeof buf, "\\x%02x", unsigned(cp));
        else if (cp < 0x10000) std::snprintf(buf, sizeof buf, "\\u%04x", unsigned(cp));
        else std::snprintf(buf, sizeof buf, "\\U%08x", unsigned(cp));
        out += buf;
      }
    }
    i += n;
  }
  out += quote;
  return out;
}

void json_string(std::string& out, std::string_view s) {
  out += '"';
  for (char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      default:
        if (c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", unsigned(c));
          out += buf;
        } else {
          out += ch;
        }
    }
  }
  out += '"';
}

struct JsonStyle {
  int indent = -1;
  bool sort_keys = false;
  std::string item_sep, key_sep;
};

Status json_value(std::string& out, const Value& v, const JsonStyle& st, int depth) {
  const int indent = st.indent;
  if (depth > 512) return invalid_argument("tojson: value nested too deeply");
  std::string nl, nl_end;  // built by append: GCC 12 warns falsely on "\n" + std::string(...)
  if (indent >= 0) {
    nl_end.push_back('\n');
    nl_end.append(size_t(indent) * size_t(depth), ' ');
    nl = nl_end;
    nl.append(size_t(indent), ' ');
  }
  const std::string& sep = st.item_sep;
  switch (v.kind()) {
    case Value::Kind::kNone: out += "null"; return Status::ok();
    case Value::Kind::kBool: out += v.as_bool() ? "true" : "false"; return Status::ok();
    case Value::Kind::kInt: out += std::to_string(v.as_int()); return Status::ok();
    case Value::Kind::kFloat: {
      const double f = v.as_double();
      out += std::isnan(f) ? "NaN" : std::isinf(f) ? (f > 0 ? "Infinity" : "-Infinity") : format_float(f);
      return Status::ok();
    }
    case Value::Kind::kString: json_string(out, v.as_string()); return Status::ok();
    case Value::Kind::kList: {
      if (v.as_list().empty()) { out += "[]"; return Status::ok(); }
      out += '[';
      bool first = true;
      for (const auto& item : v.as_list()) {
        if (!first) out += sep;
        first = false;
        out += nl;
        PDVM_TRY(json_value(out, item, st, depth + 1));
      }
      out += nl_end;
      out += ']';
      return Status::ok();
    }
    case Value::Kind::kDict: {
      if (v.as_dict().empty()) { out += "{}"; return Status::ok(); }
      std::vector<const std::pair<std::string, Value>*> items;
      for (const auto& kv : v.as_dict()) items.push_back(&kv);
      if (st.sort_keys) std::stable_sort(items.begin(), items.end(), [](auto* a, auto* b) { return a->first < b->first; });
      out += '{';
      bool first = true;
      for (const auto* kv : items) {
        if (!first) out += sep;
        first = false;
        out += nl;
        json_string(out, kv->first);
        out += st.key_sep;
        PDVM_TRY(json_value(out, kv->second, st, depth + 1));
      }
      out += nl_end;
      out += '}';
      return Status::ok();
    }
    default:
      return invalid_argument(std::string("tojson: Object of type ") + v.type_name() + " is not JSON serializable");
  }
}

std::string repr_value(const Value& v, int depth) {
  if (depth > 512) return "...";
  switch (v.kind()) {
    case Value::Kind::kString: return repr_string(v.as_string());
    case Value::Kind::kList: {
      std::string out = "[";
      for (size_t i = 0; i < v.as_list().size(); ++i) {
        if (i) out += ", ";
        out += repr_value(v.as_list()[i], depth + 1);
      }
      return out + "]";
    }
    case Value::Kind::kDict:
    case Value::Kind::kNamespace: {
      std::string out = "{";
      for (size_t i = 0; i < v.as_dict().size(); ++i) {
        if (i) out += ", ";
        out += repr_string(v.as_dict()[i].first) + ": " + repr_value(v.as_dict()[i].second, depth + 1);
      }
      out += "}";
      return v.kind() == Value::Kind::kNamespace ? "<Namespace " + out + ">" : out;
    }
    case Value::Kind::kUndefined: return "Undefined";
    default: return v.to_str();
  }
}

}  // namespace

Value Value::list(List items) {
  Value v;
  v.kind_ = Kind::kList;
  v.list_ = std::make_shared<List>(std::move(items));
  return v;
}

Value Value::dict(Dict items) {
  Value v;
  v.kind_ = Kind::kDict;
  v.dict_ = std::make_shared<Dict>(std::move(items));
  return v;
}

Value Value::namespace_object(Dict items) {
  Value v = dict(std::move(items));
  v.kind_ = Kind::kNamespace;
  return v;
}

Value Value::function(std::string name, NativeFunction fn) {
  Value v;
  v.kind_ = Kind::kFunction;
  v.str_ = std::move(name);
  v.fn_ = std::make_shared<const NativeFunction>(std::move(fn));
  return v;
}

const Value* Value::find(std::string_view key) const {
  if (!is_mapping_like()) return nullptr;
  for (const auto& kv : *dict_)
    if (kv.first == key) return &kv.second;
  return nullptr;
}

bool Value::truthy() const {
  switch (kind_) {
    case Kind::kUndefined: case Kind::kNone: return false;
    case Kind::kBool: case Kind::kInt: return int_ != 0;
    case Kind::kFloat: return float_ != 0.0;
    case Kind::kString: return !str_.empty();
    case Kind::kList: return !list_->empty();
    case Kind::kDict: return !dict_->empty();
    default: return true;
  }
}

std::string Value::to_str() const {
  switch (kind_) {
    case Kind::kUndefined: return "";
    case Kind::kNone: return "None";
    case Kind::kBool: return int_ ? "True" : "False";
    case Kind::kInt: return std::to_string(int_);
    case Kind::kFloat: return format_float(float_);
    case Kind::kString: return str_;
    case Kind::kFunction: return "<function " + str_ + ">";
    default: return repr_value(*this, 0);
  }
}

std::string Value::repr() const { return repr_value(*this, 0); }

Result<std::string> Value::to_json(int indent, bool sort_keys, const std::string* item_sep,
                                  const std::string* key_sep) const {
  JsonStyle st;
  st.indent = indent;
  st.sort_keys = sort_keys;
  st.item_sep = item_sep ? *item_sep : indent >= 0 ? "," : ", ";  // json.dumps' defaults
  st.key_sep = key_sep ? *key_sep : ": ";
  std::string out;
  PDVM_TRY(json_value(out, *this, st, 0));
  return out;
}

const char* Value::type_name() const {
  switch (kind_) {
    case Kind::kUndefined: return "Undefined";
    case Kind::kNone: return "NoneType";
    case Kind::kBool: return "bool";
    case Kind::kInt: return "int";
    case Kind::kFloat: return "float";
    case Kind::kString: return "str";
    case Kind::kList: return "list";
    case Kind::kDict: return "dict";
    case Kind::kNamespace: return "Namespace";
    case Kind::kFunction: return "function";
  }
  return "?";
}

bool equals(const Value& a, const Value& b) {
  using K = Value::Kind;
  if (a.is_number() && b.is_number()) {
    if (a.kind() == K::kFloat || b.kind() == K::kFloat) return a.as_double() == b.as_double();
    return a.as_int() == b.as_int();
  }
  if (a.kind() != b.kind()) return false;
  switch (a.kind()) {
    case K::kUndefined: case K::kNone: return true;
    case K::kString: return a.as_string() == b.as_string();
    case K::kList: {
      const auto& x = a.as_list();
      const auto& y = b.as_list();
      if (x.size() != y.size()) return false;
      for (size_t i = 0; i < x.size(); ++i)
        if (!equals(x[i], y[i])) return false;
      return true;
    }
    case K::kDict: {
      if (a.as_dict().size() != b.as_dict().size()) return false;
      for (const auto& kv : a.as_dict()) {
        const Value* other = b.find(kv.first);
        if (!other || !equals(kv.second, *other)) return false;
      }
      return true;
    }
    case K::kNamespace: return &a.as_dict() == &b.as_dict();
    case K::kFunction: return &a.function_body() == &b.function_body();
    default: return false;
  }
}

std::vector<size_t> code_point_offsets(std::string_view s) {
  std::vector<size_t> out;
  out.reserve(s.size() + 1);
  for (size_t i = 0; i < s.size();) {
    out.push_back(i);
    uint32_t cp = 0;
    i += decode_utf8(s, i, cp);
  }
  out.push_back(s.size());
  return out;
}

size_t code_point_count(std::string_view s) {
  size_t n = 0;
  for (size_t i = 0; i < s.size(); ++n) {
    uint32_t cp = 0;
    i += decode_utf8(s, i, cp);
  }
  return n;
}

bool is_python_space(uint32_t cp) {
  return (cp >= 0x09 && cp <= 0x0D) || (cp >= 0x1C && cp <= 0x20) || cp == 0x85 || cp == 0xA0 ||
         cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 ||
         cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

std::string py_strip(std::string_view s, const std::string* chars, bool left, bool right) {
  std::vector<uint32_t> set;
  if (chars)
    for (size_t i = 0; i < chars->size();) {
      uint32_t cp = 0;
      i += decode_utf8(*chars, i, cp);
      set.push_back(cp);
    }
  auto strip_it = [&](uint32_t cp) {
    return chars ? std::find(set.begin(), set.end(), cp) != set.end() : is_python_space(cp);
  };
  const auto offs = code_point_offsets(s);
  size_t a = 0, b = offs.size() - 1;  // code point range [a, b)
  auto cp_at = [&](size_t k) { uint32_t cp = 0; decode_utf8(s, offs[k], cp); return cp; };
  if (left) while (a < b && strip_it(cp_at(a))) ++a;
  if (right) while (b > a && strip_it(cp_at(b - 1))) --b;
  return std::string(s.substr(offs[a], offs[b] - offs[a]));
}

namespace {
std::string icu_case(std::string_view s, bool upper) {
  bool ascii = true;
  for (char c : s) ascii = ascii && static_cast<unsigned char>(c) < 0x80;
  if (ascii) {
    std::string out(s);
    for (char& c : out) c = upper ? char(std::toupper(static_cast<unsigned char>(c)))
                                  : char(std::tolower(static_cast<unsigned char>(c)));
    return out;
  }
  UErrorCode err = U_ZERO_ERROR;
  int32_t n16 = 0;
  u_strFromUTF8WithSub(nullptr, 0, &n16, s.data(), int32_t(s.size()), 0xFFFD, nullptr, &err);
  err = U_ZERO_ERROR;
  std::u16string in(size_t(n16), u'\0');
  u_strFromUTF8WithSub(reinterpret_cast<UChar*>(in.data()), n16, nullptr, s.data(), int32_t(s.size()), 0xFFFD,
                       nullptr, &err);
  if (U_FAILURE(err)) return std::string(s);
  std::u16string out(in.size() * 3 + 4, u'\0');
  err = U_ZERO_ERROR;
  const int32_t n = upper ? u_strToUpper(reinterpret_cast<UChar*>(out.data()), int32_t(out.size()),
                                         reinterpret_cast<const UChar*>(in.data()), n16, "", &err)
                          : u_strToLower(reinterpret_cast<UChar*>(out.data()), int32_t(out.size()),
                                         reinterpret_cast<const UChar*>(in.data()), n16, "", &err);
  if (U_FAILURE(err)) return std::string(s);
  std::string res;
  int32_t n8 = 0;
  err = U_ZERO_ERROR;
  u_strToUTF8(nullptr, 0, &n8, reinterpret_cast<const UChar*>(out.data()), n, &err);
  res.resize(size_t(n8));
  err = U_ZERO_ERROR;
  u_strToUTF8(res.data(), n8, nullptr, reinterpret_cast<const UChar*>(out.data()), n, &err);
  return U_FAILURE(err) ? std::string(s) : res;
}
}  // namespace

std::string py_upper(std::string_view s) { return icu_case(s, true); }
std::string py_lower(std::string_view s) { return icu_case(s, false); }

std::string format_float(double f) {
  if (std::isnan(f)) return "nan";
  if (std::isinf(f)) return f > 0 ? "inf" : "-inf";
  char buf[64];
  auto r = std::to_chars(buf, buf + sizeof buf, f, std::chars_format::scientific);
  std::string sci(buf, r.ptr);  // shortest round-trip digits: "-d.ddde+XX"
  const bool neg = sci[0] == '-';
  if (neg) sci.erase(0, 1);
  const size_t e_at = sci.find('e');
  std::string digits = sci.substr(0, e_at);
  digits.erase(std::remove(digits.begin(), digits.end(), '.'), digits.end());
  const int exp = std::stoi(sci.substr(e_at + 1));
  std::string out;
  if (exp >= -4 && exp < 16) {  // Python's repr switches to exponent form outside [1e-4, 1e16)
    if (exp < 0) {
      out = "0." + std::string(size_t(-exp - 1), '0') + digits;
    } else if (size_t(exp) + 1 >= digits.size()) {
      out = digits + std::string(size_t(exp) + 1 - digits.size(), '0') + ".0";
    } else {
      out = digits.substr(0, size_t(exp) + 1);
      out.push_back('.');
      out.append(digits, size_t(exp) + 1, std::string::npos);
    }
  } else {
    out = digits.substr(0, 1);
    if (digits.size() > 1) {
      out.push_back('.');
      out.append(digits, 1, std::string::npos);
    }
    char e[16];
    std::snprintf(e, sizeof e, "e%c%02d", exp < 0 ? '-' : '+', exp < 0 ? -exp : exp);
    out += e;
  }
  return neg ? "-" + out : out;
}

}  // namespace pdvm::chat::jinja
