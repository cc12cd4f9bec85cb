// Lexer and recursive-descent parser for the Jinja subset (see jinja_parser.h). The lexer follows
// jinja2/lexer.py rule by rule, because chat-template whitespace is part of the prompt: the text
// before {% / {# loses its indentation (lstrip_blocks) when only blanks precede the tag on its
// line, the first newline after %} / #} is dropped (trim_blocks), '-' strips all whitespace on its
// side. Operator precedence follows jinja2/parser.py (filters and tests bind tighter than
// arithmetic: 'a' + b | trim applies trim to b only).
#include "chat/jinja_parser.h"

#include <algorithm>
#include <charconv>
#include <cstring>

namespace pdvm::chat::jinja {

std::string Program::where(size_t offset) const {
  const auto it = std::upper_bound(line_starts.begin(), line_starts.end(), offset);
  const size_t line = size_t(it - line_starts.begin());  // 1-based
  const size_t start = line > 0 ? line_starts[line - 1] : 0;
  return "line " + std::to_string(line) + ", column " + std::to_string(offset - start + 1);
}

namespace {

constexpr int kMaxDepth = 200;  // nesting of expressions and blocks; deeper input is refused

enum class Tok { kData, kVarBegin, kVarEnd, kBlockBegin, kBlockEnd, kName, kString, kInt, kFloat, kOp, kEof };

struct Token {
  Tok type = Tok::kEof;
  std::string text;  // data, name, operator, or the unescaped string
  size_t offset = 0;
  int64_t int_value = 0;
  double float_value = 0;
};

const char* tok_name(Tok t) {
  switch (t) {
    case Tok::kData: return "template data";
    case Tok::kVarBegin: return "'{{'";
    case Tok::kVarEnd: return "'}}'";
    case Tok::kBlockBegin: return "'{%'";
    case Tok::kBlockEnd: return "'%}'";
    case Tok::kName: return "name";
    case Tok::kString: return "string";
    case Tok::kInt: return "integer";
    case Tok::kFloat: return "float";
    case Tok::kOp: return "operator";
    case Tok::kEof: return "end of template";
  }
  return "?";
}

std::string describe(const Token& t) {
  switch (t.type) {
    case Tok::kName: return "name '" + t.text + "'";
    case Tok::kOp: return "'" + t.text + "'";
    case Tok::kString: return "string literal";
    default: return tok_name(t.type);
  }
}

bool space_at(std::string_view s, size_t i, size_t& len) {
  if (i >= s.size()) return false;
  uint32_t cp = 0;
  len = decode_utf8(s, i, cp);
  return is_python_space(cp);
}

size_t skip_space(std::string_view s, size_t i) {
  size_t len = 0;
  while (space_at(s, i, len)) i += len;
  return i;
}

bool all_space(std::string_view s) {
  size_t i = 0, len = 0;
  while (space_at(s, i, len)) i += len;
  return i == s.size();
}

class Lexer {
 public:
  Lexer(const Program& p) : p_(p), src_(p.source) {}

  Result<std::vector<Token>> run() {
    size_t pos = 0;
    bool line_starting = true;
    while (pos < src_.size()) {
      // The next tag start: the earliest '{{', '{%' or '{#'.
      size_t at = pos;
      while (true) {
        at = src_.find('{', at);
        if (at == std::string_view::npos || at + 1 >= src_.size()) { at = std::string_view::npos; break; }
        const char c = src_[at + 1];
        if (c == '{' || c == '%' || c == '#') break;
        ++at;
      }
      if (at == std::string_view::npos) {
        emit_data(src_.substr(pos), pos);
        break;
      }
      const char kind = src_[at + 1];
      char sign = at + 2 < src_.size() && (src_[at + 2] == '-' || src_[at + 2] == '+') ? src_[at + 2] : 0;
      std::string text(src_.substr(pos, at - pos));
      if (sign == '-') {
        text = py_strip(text, nullptr, false, true);
      } else if (sign != '+' && kind != '{') {  // lstrip_blocks: not for {{ }}
        const size_t l_pos = text.rfind('\n') == std::string::npos ? 0 : text.rfind('\n') + 1;
        if ((l_pos > 0 || line_starting) && l_pos < text.size() && all_space(std::string_view(text).substr(l_pos)))
          text.resize(l_pos);
      }
      emit_data(text, pos);
      size_t inner = at + 2 + (sign ? 1 : 0);

      if (kind == '#') {
        // The first '#}' ends the comment; '-#}' strips what follows, '#}' drops one newline.
        const size_t end = src_.find("#}", inner);
        if (end == std::string_view::npos) return err(at, "missing end of comment tag '#}'");
        pos = end + 2;
        if (end > inner && src_[end - 1] == '-') pos = skip_space(src_, pos);
        else if (end > inner && src_[end - 1] == '+') {}
        else if (pos < src_.size() && src_[pos] == '\n') ++pos;
        line_starting = pos > 0 && src_[pos - 1] == '\n';
        continue;
      }
      if (kind == '%') {
        // {% raw %}...{% endraw %}: everything between is data.
        size_t k = skip_space(src_, inner);
        if (src_.compare(k, 3, "raw") == 0 && !is_name_char(k + 3)) {
          size_t e = skip_space(src_, k + 3);
          size_t body = 0;
          if (src_.compare(e, 3, "-%}") == 0) body = skip_space(src_, e + 3);
          else if (src_.compare(e, 2, "%}") == 0) body = e + 2;
          if (body) {
            PDVM_TRY(lex_raw(at, body, pos, line_starting));
            continue;
          }
        }
      }
      tokens_.push_back({kind == '{' ? Tok::kVarBegin : Tok::kBlockBegin, "", at, 0, 0});
      PDVM_ASSIGN_OR_RETURN(pos, lex_tag(inner, kind == '%', at, line_starting));
    }
    tokens_.push_back({Tok::kEof, "", src_.size(), 0, 0});
    return std::move(tokens_);
  }

 private:
  Status err(size_t offset, const std::string& what) const {
    return invalid_argument("template " + p_.where(offset) + ": " + what);
  }

  bool is_name_char(size_t i) const {
    if (i >= src_.size()) return false;
    const char c = src_[i];
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_';
  }

  void emit_data(std::string_view text, size_t offset) {
    if (!text.empty()) tokens_.push_back({Tok::kData, std::string(text), offset, 0, 0});
  }

  Status lex_raw(size_t at, size_t body, size_t& pos, bool& line_starting) {
    for (size_t k = body;; ++k) {
      k = src_.find("{%", k);
      if (k == std::string_view::npos) return err(at, "missing end of raw directive '{% endraw %}'");
      const char sign = k + 2 < src_.size() && (src_[k + 2] == '-' || src_[k + 2] == '+') ? src_[k + 2] : 0;
      size_t e = skip_space(src_, k + 2 + (sign ? 1 : 0));
      if (src_.compare(e, 6, "endraw") != 0) continue;
      e = skip_space(src_, e + 6);
      size_t end = 0;
      if (src_.compare(e, 3, "+%}") == 0) end = e + 3;
      else if (src_.compare(e, 3, "-%}") == 0) end = skip_space(src_, e + 3);
      else if (src_.compare(e, 2, "%}") == 0) end = e + 2 + (e + 2 < src_.size() && src_[e + 2] == '\n');
      else continue;
      std::string text(src_.substr(body, k - body));
      if (sign == '-') text = py_strip(text, nullptr, false, true);
      else if (sign != '+') {
        const size_t l_pos = text.rfind('\n') == std::string::npos ? 0 : text.rfind('\n') + 1;
        if (l_pos > 0 && l_pos < text.size() && all_space(std::string_view(text).substr(l_pos))) text.resize(l_pos);
      }
      emit_data(text, body);
      pos = end;
      line_starting = src_[end - 1] == '\n';
      return Status::ok();
    }
  }

  // Lexes the inside of {{ }} or {% %} from `i`; returns the offset after the end delimiter.
  Result<size_t> lex_tag(size_t i, bool block, size_t tag_at, bool& line_starting) {
    std::vector<char> balance;  // closing brackets expected; end delimiters only count at depth 0
    while (true) {
      i = skip_space(src_, i);
      if (i >= src_.size())
        return err(tag_at, std::string("unexpected end of template, expected ") + (block ? "'%}'" : "'}}'") +
                               " to close this tag");
      if (balance.empty()) {
        size_t end = 0;
        if (block) {
          if (src_.compare(i, 3, "+%}") == 0) end = i + 3;
          else if (src_.compare(i, 3, "-%}") == 0) end = skip_space(src_, i + 3);
          else if (src_.compare(i, 2, "%}") == 0) end = i + 2 + (i + 2 < src_.size() && src_[i + 2] == '\n');
        } else {
          if (src_.compare(i, 3, "-}}") == 0) end = skip_space(src_, i + 3);
          else if (src_.compare(i, 2, "}}") == 0) end = i + 2;
        }
        if (end) {
          tokens_.push_back({block ? Tok::kBlockEnd : Tok::kVarEnd, "", i, 0, 0});
          line_starting = src_[end - 1] == '\n';
          return end;
        }
      }
      const char c = src_[i];
      if (std::isdigit(static_cast<unsigned char>(c))) {
        PDVM_ASSIGN_OR_RETURN(i, lex_number(i));
        continue;
      }
      if (std::isalpha(static_cast<unsigned char>(c)) || c == '_') {
        size_t e = i;
        while (is_name_char(e)) ++e;
        tokens_.push_back({Tok::kName, std::string(src_.substr(i, e - i)), i, 0, 0});
        i = e;
        continue;
      }
      if (c == '\'' || c == '"') {
        PDVM_ASSIGN_OR_RETURN(i, lex_string(i));
        continue;
      }
      static const char* kOps[] = {"//", "**", "==", "!=", ">=", "<=", "+", "-", "/", "*", "%", "~", "[", "]",
                                   "(", ")", "{", "}", ">", "<", "=", ".", ":", "|", ",", ";"};
      const char* op = nullptr;
      for (const char* o : kOps)
        if (src_.compare(i, std::strlen(o), o) == 0) { op = o; break; }
      if (!op) {
        uint32_t cp = 0;
        const size_t n = decode_utf8(src_, i, cp);
        return err(i, "unexpected character '" + std::string(src_.substr(i, n)) + "' inside a tag");
      }
      const char oc = op[0];
      if (op[1] == 0 && (oc == '(' || oc == '[' || oc == '{')) {
        balance.push_back(oc == '(' ? ')' : oc == '[' ? ']' : '}');
      } else if (op[1] == 0 && (oc == ')' || oc == ']' || oc == '}')) {
        if (balance.empty()) return err(i, std::string("unexpected '") + oc + "'");
        if (balance.back() != oc)
          return err(i, std::string("unexpected '") + oc + "', expected '" + balance.back() + "'");
        balance.pop_back();
      }
      tokens_.push_back({Tok::kOp, op, i, 0, 0});
      i += std::strlen(op);
    }
  }

  Result<size_t> lex_number(size_t i) {
    size_t e = i;
    auto digits = [&] {
      const size_t start = e;
      while (e < src_.size() && (std::isdigit(static_cast<unsigned char>(src_[e])) ||
                                 (src_[e] == '_' && e > start && e + 1 < src_.size() &&
                                  std::isdigit(static_cast<unsigned char>(src_[e + 1])))))
        ++e;
    };
    digits();
    bool is_float = false;
    if (e + 1 < src_.size() && src_[e] == '.' && std::isdigit(static_cast<unsigned char>(src_[e + 1]))) {
      ++e;
      digits();
      is_float = true;
    }
    if (e < src_.size() && (src_[e] == 'e' || src_[e] == 'E')) {
      size_t k = e + 1;
      if (k < src_.size() && (src_[k] == '+' || src_[k] == '-')) ++k;
      if (k < src_.size() && std::isdigit(static_cast<unsigned char>(src_[k]))) {
        e = k;
        digits();
        is_float = true;
      }
    }
    std::string text(src_.substr(i, e - i));
    text.erase(std::remove(text.begin(), text.end(), '_'), text.end());
    Token t{is_float ? Tok::kFloat : Tok::kInt, text, i, 0, 0};
    if (is_float) {
      auto r = std::from_chars(text.data(), text.data() + text.size(), t.float_value);
      if (r.ec != std::errc()) return err(i, "number '" + text + "' is out of range");
    } else {
      auto r = std::from_chars(text.data(), text.data() + text.size(), t.int_value);
      if (r.ec != std::errc()) return err(i, "integer '" + text + "' does not fit in 64 bits");
    }
    tokens_.push_back(std::move(t));
    return e;
  }

  // A Python string literal with its escapes (as Jinja decodes it with 'unicode-escape').
  Result<size_t> lex_string(size_t i) {
    const char q = src_[i];
    std::string out;
    size_t k = i + 1;
    auto hex = [&](size_t at, int n, uint32_t& cp) {
      if (at + size_t(n) > src_.size()) return false;
      cp = 0;
      for (int d = 0; d < n; ++d) {
        const char h = src_[at + size_t(d)];
        if (!std::isxdigit(static_cast<unsigned char>(h))) return false;
        cp = cp * 16 + uint32_t(std::isdigit(static_cast<unsigned char>(h)) ? h - '0' : (std::tolower(h) - 'a' + 10));
      }
      return true;
    };
    while (true) {
      if (k >= src_.size()) return err(i, "unterminated string literal");
      const char c = src_[k];
      if (c == q) break;
      if (c != '\\') { out += c; ++k; continue; }
      if (k + 1 >= src_.size()) return err(i, "unterminated string literal");
      const char e = src_[k + 1];
      k += 2;
      uint32_t cp = 0;
      switch (e) {
        case '\n': break;
        case '\\': out += '\\'; break;
        case '\'': out += '\''; break;
        case '"': out += '"'; break;
        case 'n': out += '\n'; break;
        case 't': out += '\t'; break;
        case 'r': out += '\r'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'v': out += '\v'; break;
        case 'a': out += '\a'; break;
        case 'x': case 'u': case 'U': {
          const int n = e == 'x' ? 2 : e == 'u' ? 4 : 8;
          if (!hex(k, n, cp) || cp > 0x10FFFF)
            return err(k - 2, std::string("invalid \\") + e + " escape in string literal");
          append_utf8(out, cp);
          k += size_t(n);
          break;
        }
        default:
          if (e >= '0' && e <= '7') {
            cp = uint32_t(e - '0');
            for (int d = 0; d < 2 && k < src_.size() && src_[k] >= '0' && src_[k] <= '7'; ++d, ++k)
              cp = cp * 8 + uint32_t(src_[k] - '0');
            append_utf8(out, cp);
          } else {
            out += '\\';
            out += e;
          }
      }
    }
    tokens_.push_back({Tok::kString, std::move(out), i, 0, 0});
    return k + 1;
  }

  const Program& p_;
  std::string_view src_;
  std::vector<Token> tokens_;
};

class Parser {
 public:
  Parser(const Program& p, std::vector<Token> tokens) : p_(p), t_(std::move(tokens)) {}

  Result<Body> parse_all() {
    Body body;
    std::string end;
    PDVM_TRY(parse_body(body, {}, end));
    return body;
  }

 private:
  const Token& cur() const { return t_[i_]; }
  const Token& peek(size_t k = 1) const { return t_[std::min(i_ + k, t_.size() - 1)]; }
  void advance() { if (i_ + 1 < t_.size()) ++i_; }
  bool is_op(const char* op) const { return cur().type == Tok::kOp && cur().text == op; }
  bool is_name(const char* n) const { return cur().type == Tok::kName && cur().text == n; }

  Status err(size_t offset, const std::string& what) const {
    return invalid_argument("template " + p_.where(offset) + ": " + what);
  }
  Status unexpected(const std::string& expected) const {
    return err(cur().offset, "unexpected " + describe(cur()) + ", expected " + expected);
  }
  Status expect_op(const char* op) {
    if (!is_op(op)) return unexpected(std::string("'") + op + "'");
    advance();
    return Status::ok();
  }
  Status expect(Tok type) {
    if (cur().type != type) return unexpected(tok_name(type));
    advance();
    return Status::ok();
  }
  Status enter() {
    if (++depth_ > kMaxDepth) return err(cur().offset, "template nested too deeply (more than 200 levels)");
    return Status::ok();
  }

  // Parses nodes until a block tag whose name is in `ends` (left unconsumed after '{%'; its name
  // goes to `end`) or the end of the template (only allowed when `ends` is empty).
  Status parse_body(Body& body, const std::vector<std::string>& ends, std::string& end) {
    PDVM_TRY(enter());
    while (true) {
      const Token& t = cur();
      if (t.type == Tok::kEof) {
        if (!ends.empty()) {
          std::string list;
          for (const auto& e : ends) list += (list.empty() ? "'" : " or '") + e + "'";
          return err(t.offset, "unexpected end of template, expected " + list);
        }
        break;
      }
      if (t.type == Tok::kData) {
        Node n;
        n.kind = Node::Kind::kText;
        n.offset = t.offset;
        n.text = t.text;
        body.push_back(std::move(n));
        advance();
      } else if (t.type == Tok::kVarBegin) {
        Node n;
        n.kind = Node::Kind::kOutput;
        n.offset = t.offset;
        advance();
        PDVM_ASSIGN_OR_RETURN(n.expr, parse_tuple());
        PDVM_TRY(expect(Tok::kVarEnd));
        body.push_back(std::move(n));
      } else if (t.type == Tok::kBlockBegin) {
        const size_t at = t.offset;
        advance();
        if (cur().type != Tok::kName) return unexpected("a tag name");
        const std::string name = cur().text;
        if (std::find(ends.begin(), ends.end(), name) != ends.end()) {
          end = name;
          --depth_;
          return Status::ok();
        }
        static const char* kEndTags[] = {"elif", "else", "endif", "endfor", "endset", "endgeneration", "endraw"};
        for (const char* e : kEndTags) {
          if (name != e) continue;
          std::string list;
          for (const auto& x : ends) list += (list.empty() ? "'" : " or '") + x + "'";
          return err(at, "unexpected '{% " + name + " %}'" +
                             (list.empty() ? std::string(" outside any block") : ", expected " + list));
        }
        advance();
        PDVM_TRY(parse_statement(name, at, body));
      } else {
        return unexpected("template data or a tag");
      }
    }
    --depth_;
    return Status::ok();
  }

  Status parse_statement(const std::string& name, size_t at, Body& body) {
    Node n;
    n.offset = at;
    std::string end;
    if (name == "if") {
      n.kind = Node::Kind::kIf;
      ExprPtr cond;
      PDVM_ASSIGN_OR_RETURN(cond, parse_tuple());
      while (true) {
        PDVM_TRY(expect(Tok::kBlockEnd));
        Body b;
        PDVM_TRY(parse_body(b, {"elif", "else", "endif"}, end));
        advance();  // the end tag's name
        n.branches.emplace_back(std::move(cond), std::move(b));
        if (end == "elif") {
          PDVM_ASSIGN_OR_RETURN(cond, parse_tuple());
          continue;
        }
        if (end == "else") {
          PDVM_TRY(expect(Tok::kBlockEnd));
          Body e;
          PDVM_TRY(parse_body(e, {"endif"}, end));
          advance();
          n.branches.emplace_back(nullptr, std::move(e));
        }
        break;
      }
    } else if (name == "for") {
      n.kind = Node::Kind::kFor;
      PDVM_TRY(parse_targets(n.targets));
      if (!is_name("in")) return unexpected("'in'");
      advance();
      PDVM_ASSIGN_OR_RETURN(n.expr, parse_tuple(/*with_condexpr=*/false));
      if (is_name("if")) {
        advance();
        PDVM_ASSIGN_OR_RETURN(n.filter, parse_expression());
      }
      if (is_name("recursive")) return err(cur().offset, "recursive for loops are not supported");
      PDVM_TRY(expect(Tok::kBlockEnd));
      PDVM_TRY(parse_body(n.body, {"endfor", "else"}, end));
      advance();
      if (end == "else") {
        PDVM_TRY(expect(Tok::kBlockEnd));
        PDVM_TRY(parse_body(n.else_body, {"endfor"}, end));
        advance();
      }
    } else if (name == "set") {
      if (cur().type == Tok::kName && peek().type == Tok::kOp && peek().text == "." && peek(2).type == Tok::kName) {
        n.kind = Node::Kind::kSet;
        n.targets.push_back(cur().text);
        n.attr = peek(2).text;
        advance(); advance(); advance();
      } else {
        PDVM_TRY(parse_targets(n.targets));
        if (!is_op("=")) {
          if (n.targets.size() != 1) return unexpected("'='");
          // {% set x %}...{% endset %}
          n.kind = Node::Kind::kSetBlock;
          PDVM_TRY(expect(Tok::kBlockEnd));
          PDVM_TRY(parse_body(n.body, {"endset"}, end));
          advance();
          PDVM_TRY(expect(Tok::kBlockEnd));
          body.push_back(std::move(n));
          return Status::ok();
        }
        n.kind = Node::Kind::kSet;
      }
      PDVM_TRY(expect_op("="));
      PDVM_ASSIGN_OR_RETURN(n.expr, parse_tuple());
    } else if (name == "break" || name == "continue") {
      n.kind = name == "break" ? Node::Kind::kBreak : Node::Kind::kContinue;
    } else if (name == "generation") {
      n.kind = Node::Kind::kScope;
      PDVM_TRY(expect(Tok::kBlockEnd));
      PDVM_TRY(parse_body(n.body, {"endgeneration"}, end));
      advance();
    } else if (name == "macro" || name == "call" || name == "filter" || name == "include" || name == "import" ||
               name == "from" || name == "extends" || name == "block" || name == "with" || name == "do") {
      return err(at, "the '" + name + "' tag is not supported by pdvm's Jinja subset");
    } else {
      return err(at, "unknown tag '" + name + "'");
    }
    PDVM_TRY(expect(Tok::kBlockEnd));
    body.push_back(std::move(n));
    return Status::ok();
  }

  Status parse_targets(std::vector<std::string>& targets) {
    const bool paren = is_op("(");
    if (paren) advance();
    while (true) {
      if (cur().type != Tok::kName) return unexpected("a variable name");
      targets.push_back(cur().text);
      advance();
      if (!is_op(",")) break;
      advance();
    }
    if (paren) PDVM_TRY(expect_op(")"));
    return Status::ok();
  }

  ExprPtr make(Expr::Kind k, size_t offset) {
    auto e = std::make_unique<Expr>();
    e->kind = k;
    e->offset = offset;
    return e;
  }

  // expr [, expr ...]: a tuple (a list here) when there is a comma.
  Result<ExprPtr> parse_tuple(bool with_condexpr = true) {
    const size_t at = cur().offset;
    ExprPtr first;
    PDVM_ASSIGN_OR_RETURN(first, with_condexpr ? parse_expression() : parse_or());
    if (!is_op(",")) return first;
    auto t = make(Expr::Kind::kList, at);
    t->children.push_back(std::move(first));
    while (is_op(",")) {
      advance();
      if (cur().type == Tok::kVarEnd || cur().type == Tok::kBlockEnd) break;
      ExprPtr e;
      PDVM_ASSIGN_OR_RETURN(e, with_condexpr ? parse_expression() : parse_or());
      t->children.push_back(std::move(e));
    }
    return t;
  }

  Result<ExprPtr> parse_expression() {
    PDVM_TRY(enter());
    ExprPtr e;
    PDVM_ASSIGN_OR_RETURN(e, parse_or());
    while (is_name("if")) {
      auto c = make(Expr::Kind::kCondition, cur().offset);
      advance();
      ExprPtr cond;
      PDVM_ASSIGN_OR_RETURN(cond, parse_or());
      c->children.push_back(std::move(cond));
      c->children.push_back(std::move(e));
      if (is_name("else")) {
        advance();
        ExprPtr other;
        PDVM_ASSIGN_OR_RETURN(other, parse_expression());
        c->children.push_back(std::move(other));
      } else {
        c->children.push_back(nullptr);
      }
      e = std::move(c);
    }
    --depth_;
    return e;
  }

  Result<ExprPtr> parse_or() {
    ExprPtr l;
    PDVM_ASSIGN_OR_RETURN(l, parse_and());
    while (is_name("or")) {
      auto n = make(Expr::Kind::kOr, cur().offset);
      advance();
      ExprPtr r;
      PDVM_ASSIGN_OR_RETURN(r, parse_and());
      n->children.push_back(std::move(l));
      n->children.push_back(std::move(r));
      l = std::move(n);
    }
    return l;
  }

  Result<ExprPtr> parse_and() {
    ExprPtr l;
    PDVM_ASSIGN_OR_RETURN(l, parse_not());
    while (is_name("and")) {
      auto n = make(Expr::Kind::kAnd, cur().offset);
      advance();
      ExprPtr r;
      PDVM_ASSIGN_OR_RETURN(r, parse_not());
      n->children.push_back(std::move(l));
      n->children.push_back(std::move(r));
      l = std::move(n);
    }
    return l;
  }

  Result<ExprPtr> parse_not() {
    if (is_name("not")) {
      PDVM_TRY(enter());
      auto n = make(Expr::Kind::kNot, cur().offset);
      advance();
      ExprPtr e;
      PDVM_ASSIGN_OR_RETURN(e, parse_not());
      n->children.push_back(std::move(e));
      --depth_;
      return n;
    }
    return parse_compare();
  }

  Result<ExprPtr> parse_compare() {
    const size_t at = cur().offset;
    ExprPtr l;
    PDVM_ASSIGN_OR_RETURN(l, parse_math1());
    ExprPtr cmp;
    while (true) {
      std::string op;
      if (cur().type == Tok::kOp && (cur().text == "==" || cur().text == "!=" || cur().text == "<" ||
                                     cur().text == "<=" || cur().text == ">" || cur().text == ">=")) {
        op = cur().text;
        advance();
      } else if (is_name("in")) {
        op = "in";
        advance();
      } else if (is_name("not") && peek().type == Tok::kName && peek().text == "in") {
        op = "not in";
        advance();
        advance();
      } else {
        break;
      }
      if (!cmp) {
        cmp = make(Expr::Kind::kCompare, at);
        cmp->children.push_back(std::move(l));
      }
      ExprPtr r;
      PDVM_ASSIGN_OR_RETURN(r, parse_math1());
      cmp->ops.push_back(op);
      cmp->children.push_back(std::move(r));
    }
    return cmp ? std::move(cmp) : std::move(l);
  }

  Result<ExprPtr> binary_chain(Result<ExprPtr> (Parser::*next)(), std::initializer_list<const char*> ops) {
    ExprPtr l;
    PDVM_ASSIGN_OR_RETURN(l, (this->*next)());
    while (true) {
      const char* op = nullptr;
      for (const char* o : ops)
        if (is_op(o)) op = o;
      if (!op) return l;
      auto n = make(Expr::Kind::kBinary, cur().offset);
      n->name = op;
      advance();
      ExprPtr r;
      PDVM_ASSIGN_OR_RETURN(r, (this->*next)());
      n->children.push_back(std::move(l));
      n->children.push_back(std::move(r));
      l = std::move(n);
    }
  }
  Result<ExprPtr> parse_math1() { return binary_chain(&Parser::parse_concat, {"+", "-"}); }
  Result<ExprPtr> parse_concat() { return binary_chain(&Parser::parse_math2, {"~"}); }
  Result<ExprPtr> parse_math2() { return binary_chain(&Parser::parse_pow, {"*", "/", "//", "%"}); }
  Result<ExprPtr> parse_pow() { return binary_chain(&Parser::parse_unary_filtered, {"**"}); }
  Result<ExprPtr> parse_unary_filtered() { return parse_unary(true); }

  // As jinja2's parse_unary: "-x|abs" is (-x)|abs, so the operand of '-' takes no filters.
  Result<ExprPtr> parse_unary(bool with_filter) {
    PDVM_TRY(enter());
    ExprPtr e;
    if (is_op("-") || is_op("+")) {
      auto n = make(Expr::Kind::kUnary, cur().offset);
      n->name = cur().text;
      advance();
      ExprPtr operand;
      PDVM_ASSIGN_OR_RETURN(operand, parse_unary(false));
      n->children.push_back(std::move(operand));
      e = std::move(n);
    } else {
      PDVM_ASSIGN_OR_RETURN(e, parse_primary());
    }
    PDVM_ASSIGN_OR_RETURN(e, parse_postfix(std::move(e)));
    if (with_filter) { PDVM_ASSIGN_OR_RETURN(e, parse_filters(std::move(e))); }
    --depth_;
    return e;
  }

  Result<ExprPtr> parse_primary() {
    const Token t = cur();
    switch (t.type) {
      case Tok::kName: {
        advance();
        auto e = make(Expr::Kind::kLiteral, t.offset);
        if (t.text == "true" || t.text == "True") e->literal = Value::boolean(true);
        else if (t.text == "false" || t.text == "False") e->literal = Value::boolean(false);
        else if (t.text == "none" || t.text == "None") e->literal = Value::none();
        else { e->kind = Expr::Kind::kName; e->name = t.text; }
        return e;
      }
      case Tok::kString: {
        std::string s;
        while (cur().type == Tok::kString) {  // adjacent literals concatenate
          s += cur().text;
          advance();
        }
        auto e = make(Expr::Kind::kLiteral, t.offset);
        e->literal = Value::string(std::move(s));
        return e;
      }
      case Tok::kInt: case Tok::kFloat: {
        advance();
        auto e = make(Expr::Kind::kLiteral, t.offset);
        e->literal = t.type == Tok::kInt ? Value::integer(t.int_value) : Value::floating(t.float_value);
        return e;
      }
      case Tok::kOp:
        if (t.text == "(") {
          advance();
          if (is_op(")")) {  // empty tuple
            advance();
            return make(Expr::Kind::kList, t.offset);
          }
          ExprPtr e;
          PDVM_ASSIGN_OR_RETURN(e, parse_tuple());
          PDVM_TRY(expect_op(")"));
          return e;
        }
        if (t.text == "[") {
          advance();
          auto e = make(Expr::Kind::kList, t.offset);
          while (!is_op("]")) {
            if (!e->children.empty()) PDVM_TRY(expect_op(","));
            if (is_op("]")) break;
            ExprPtr item;
            PDVM_ASSIGN_OR_RETURN(item, parse_expression());
            e->children.push_back(std::move(item));
          }
          advance();
          return e;
        }
        if (t.text == "{") {
          advance();
          auto e = make(Expr::Kind::kDict, t.offset);
          while (!is_op("}")) {
            if (!e->children.empty()) PDVM_TRY(expect_op(","));
            if (is_op("}")) break;
            ExprPtr k, v;
            PDVM_ASSIGN_OR_RETURN(k, parse_expression());
            PDVM_TRY(expect_op(":"));
            PDVM_ASSIGN_OR_RETURN(v, parse_expression());
            e->children.push_back(std::move(k));
            e->children.push_back(std::move(v));
          }
          advance();
          return e;
        }
        break;
      default:
        break;
    }
    return unexpected("an expression");
  }

  Status parse_call_args(Expr& call) {
    PDVM_TRY(expect_op("("));
    bool first = true;
    while (!is_op(")")) {
      if (!first) PDVM_TRY(expect_op(","));
      first = false;
      if (is_op(")")) break;
      if (cur().type == Tok::kName && peek().type == Tok::kOp && peek().text == "=") {
        std::string key = cur().text;
        advance();
        advance();
        ExprPtr v;
        PDVM_ASSIGN_OR_RETURN(v, parse_expression());
        call.kwargs.emplace_back(std::move(key), std::move(v));
      } else {
        if (!call.kwargs.empty()) return err(cur().offset, "positional argument after keyword argument");
        ExprPtr v;
        PDVM_ASSIGN_OR_RETURN(v, parse_expression());
        call.children.push_back(std::move(v));
      }
    }
    advance();
    return Status::ok();
  }

  Result<ExprPtr> parse_postfix(ExprPtr e) {
    while (true) {
      if (is_op(".")) {
        advance();
        if (cur().type == Tok::kName) {
          auto n = make(Expr::Kind::kAttr, cur().offset);
          n->name = cur().text;
          n->children.push_back(std::move(e));
          advance();
          e = std::move(n);
        } else if (cur().type == Tok::kInt) {
          auto n = make(Expr::Kind::kIndex, cur().offset);
          auto idx = make(Expr::Kind::kLiteral, cur().offset);
          idx->literal = Value::integer(cur().int_value);
          n->children.push_back(std::move(e));
          n->children.push_back(std::move(idx));
          advance();
          e = std::move(n);
        } else {
          return unexpected("an attribute name after '.'");
        }
      } else if (is_op("[")) {
        const size_t at = cur().offset;
        advance();
        ExprPtr parts[3];
        int n_parts = 1;
        bool slice = false;
        for (int k = 0; k < 3; ++k) {
          if (!is_op(":") && !is_op("]")) { PDVM_ASSIGN_OR_RETURN(parts[k], parse_expression()); }
          if (k < 2 && is_op(":")) {
            slice = true;
            advance();
            ++n_parts;
            continue;
          }
          break;
        }
        PDVM_TRY(expect_op("]"));
        if (!slice && !parts[0]) return err(at, "empty subscript '[]'");
        auto n = make(slice ? Expr::Kind::kSlice : Expr::Kind::kIndex, at);
        n->children.push_back(std::move(e));
        for (int k = 0; k < (slice ? 3 : 1); ++k) n->children.push_back(k < n_parts ? std::move(parts[k]) : nullptr);
        e = std::move(n);
      } else if (is_op("(")) {
        auto n = make(Expr::Kind::kCall, cur().offset);
        n->children.push_back(std::move(e));
        PDVM_TRY(parse_call_args(*n));
        e = std::move(n);
      } else {
        return e;
      }
    }
  }

  Result<ExprPtr> parse_filters(ExprPtr e) {
    while (true) {
      if (is_op("|")) {
        advance();
        if (cur().type != Tok::kName) return unexpected("a filter name after '|'");
        auto n = make(Expr::Kind::kFilter, cur().offset);
        n->name = cur().text;
        advance();
        n->children.push_back(std::move(e));
        if (is_op("(")) PDVM_TRY(parse_call_args(*n));
        e = std::move(n);
      } else if (is_name("is")) {
        advance();
        auto n = make(Expr::Kind::kTest, cur().offset);
        if (is_name("not")) {
          n->negated = true;
          advance();
        }
        if (cur().type != Tok::kName) return unexpected("a test name after 'is'");
        n->name = cur().text;
        advance();
        n->children.push_back(std::move(e));
        if (is_op("(")) {
          PDVM_TRY(parse_call_args(*n));
        } else if ((cur().type == Tok::kName || cur().type == Tok::kString || cur().type == Tok::kInt ||
                    cur().type == Tok::kFloat || is_op("[") || is_op("{")) &&
                   !is_name("else") && !is_name("or") && !is_name("and") && !is_name("if") &&
                   !is_name("in") && !is_name("not") && !is_name("is")) {
          // One argument without parentheses: "is divisibleby 3", "is sameas false".
          ExprPtr arg;
          PDVM_ASSIGN_OR_RETURN(arg, parse_primary());
          PDVM_ASSIGN_OR_RETURN(arg, parse_postfix(std::move(arg)));
          n->children.push_back(std::move(arg));
        }
        e = std::move(n);
      } else {
        return e;
      }
    }
  }

  const Program& p_;
  std::vector<Token> t_;
  size_t i_ = 0;
  int depth_ = 0;
};

}  // namespace

Result<std::shared_ptr<const Program>> parse_template(std::string_view source) {
  auto p = std::make_shared<Program>();
  // Jinja joins the lines split at \r\n, \r or \n with "\n" and drops one trailing newline.
  p->source.reserve(source.size());
  for (size_t i = 0; i < source.size(); ++i) {
    if (source[i] == '\r') {
      p->source += '\n';
      if (i + 1 < source.size() && source[i + 1] == '\n') ++i;
    } else {
      p->source += source[i];
    }
  }
  if (!p->source.empty() && p->source.back() == '\n') p->source.pop_back();
  p->line_starts.push_back(0);
  for (size_t i = 0; i < p->source.size(); ++i)
    if (p->source[i] == '\n') p->line_starts.push_back(i + 1);

  Lexer lexer(*p);
  std::vector<Token> tokens;
  PDVM_ASSIGN_OR_RETURN(tokens, lexer.run());
  Parser parser(*p, std::move(tokens));
  PDVM_ASSIGN_OR_RETURN(p->body, parser.parse_all());
  return std::shared_ptr<const Program>(std::move(p));
}

}  // namespace pdvm::chat::jinja
