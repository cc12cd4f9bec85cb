// The syntax tree of a parsed Jinja template (jinja_parser.cpp builds it, jinja_render.cpp walks
// it). Every node keeps the byte offset where it starts in the newline-normalised source so that
// render errors can name a line and column.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "chat/jinja_value.h"

namespace pdvm::chat::jinja {

struct Expr;
using ExprPtr = std::unique_ptr<Expr>;

struct Expr {
  enum class Kind {
    kLiteral,    // literal
    kName,       // name
    kList,       // children: items
    kDict,       // children: key, value, key, value, ...
    kAttr,       // children[0].name
    kIndex,      // children[0][children[1]]
    kSlice,      // children[0][children[1]:children[2]:children[3]] (null parts allowed)
    kCall,       // children[0](children[1..], kwargs)
    kFilter,     // children[0] | name(children[1..], kwargs)
    kTest,       // children[0] is [not] name(children[1..])
    kUnary,      // name ("-", "+") children[0]
    kBinary,     // children[0] name children[1]; name in + - * / // % ** ~
    kCompare,    // children[0] ops[0] children[1] ops[1] children[2] ... (chained as Python)
    kAnd, kOr, kNot,
    kCondition,  // children[1] if children[0] else children[2] (children[2] may be null)
  };
  Kind kind = Kind::kLiteral;
  size_t offset = 0;
  Value literal;
  std::string name;
  std::vector<ExprPtr> children;
  std::vector<std::string> ops;
  std::vector<std::pair<std::string, ExprPtr>> kwargs;
  bool negated = false;  // kTest: "is not"
};

struct Node;
using Body = std::vector<Node>;

struct Node {
  enum class Kind {
    kText,      // text
    kOutput,    // {{ expr }}
    kIf,        // branches: (condition or null for else, body)
    kFor,       // for targets in expr [if filter]: body [else: else_body]
    kSet,       // set targets = expr, or set targets[0].attr = expr
    kSetBlock,  // set targets[0] %} body {% endset
    kBreak, kContinue,
    kScope,     // {% generation %} body: rendered as is (transformers' assistant tracker)
  };
  Kind kind = Kind::kText;
  size_t offset = 0;
  std::string text;
  ExprPtr expr;
  ExprPtr filter;
  std::vector<std::string> targets;
  std::string attr;
  std::vector<std::pair<ExprPtr, Body>> branches;
  Body body, else_body;
};

struct Program {
  std::string source;               // after newline normalisation (what offsets refer to)
  std::vector<size_t> line_starts;  // offset of each line's first byte
  Body body;
  // "line L, column C" for a byte offset into `source`.
  std::string where(size_t offset) const;
};

}  // namespace pdvm::chat::jinja
