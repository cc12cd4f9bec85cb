// Tree-walking renderer for the Jinja subset (see jinja_render.h). Expression semantics are
// Python's, because that is what transformers' jinja2 computes: `a or b` returns an operand,
// int / int is a float, // floors, -7 % 3 is 2, 'x' + 1 is an error, obj.name tries a method
// before a key and obj['key'] a key before a method, missing keys and attributes are Undefined
// (printing as ""), and only using an Undefined in arithmetic or attribute access is an error.
#include "chat/jinja_render.h"

#include <cmath>

#include "chat/jinja_builtins.h"

namespace pdvm::chat::jinja {
namespace {

enum class Flow { kNormal, kBreak, kContinue };

// Python's slice.indices(): the code point / item positions a[start:stop:step] visits.
Result<std::vector<size_t>> slice_positions(int64_t len, const Value& start_v, const Value& stop_v,
                                            const Value& step_v) {
  auto as_index = [](const Value& v, const char* what) -> Result<std::optional<int64_t>> {
    if (v.is_undefined() || v.is_none()) return std::optional<int64_t>();
    if (v.kind() != Value::Kind::kInt && v.kind() != Value::Kind::kBool)
      return invalid_argument(std::string("slice ") + what + " must be an integer or None, not " + v.type_name());
    return std::optional<int64_t>(v.as_int());
  };
  std::optional<int64_t> start, stop, step_opt;
  PDVM_ASSIGN_OR_RETURN(start, as_index(start_v, "start"));
  PDVM_ASSIGN_OR_RETURN(stop, as_index(stop_v, "stop"));
  PDVM_ASSIGN_OR_RETURN(step_opt, as_index(step_v, "step"));
  const int64_t step = step_opt.value_or(1);
  if (step == 0) return invalid_argument("slice step cannot be zero");
  auto adjust = [&](std::optional<int64_t> x, int64_t dflt) {
    if (!x) return dflt;
    int64_t v = *x;
    if (v < 0) {
      v = v < -len ? (step < 0 ? -1 : 0) : v + len;
    } else if (v >= len) {
      v = step < 0 ? len - 1 : len;
    }
    return v;
  };
  const int64_t a = adjust(start, step < 0 ? len - 1 : 0);
  const int64_t b = adjust(stop, step < 0 ? -1 : len);
  std::vector<size_t> out;
  if (step > 0) for (int64_t i = a; i < b; i += step) out.push_back(size_t(i));
  else for (int64_t i = a; i > b; i += step) out.push_back(size_t(i));
  return out;
}

class Renderer {
 public:
  Renderer(const Program& p, const Value::Dict& vars, std::optional<std::time_t> now, const RenderLimits& limits)
      : p_(p), now_(now), limits_(limits) {
    scopes_.push_back(globals());
    scopes_.push_back(vars);
    scopes_.emplace_back();  // the template's own top-level {% set %}s
  }

  Result<std::string> run() {
    Flow flow = Flow::kNormal;
    PDVM_TRY(render_body(p_.body, flow));
    return std::move(out_);
  }

 private:
  Status fail(size_t offset, const std::string& what) const {
    return invalid_argument("template " + p_.where(offset) + ": " + what);
  }
  Status at(size_t offset, const Status& s) const {
    if (s.is_ok() || s.message().rfind("template ", 0) == 0) return s;  // already has a position
    return fail(offset, s.message());
  }
  Status step(size_t offset) {
    if (++steps_ > limits_.max_steps)
      return fail(offset, "rendering takes too long (more than " + std::to_string(limits_.max_steps) + " steps)");
    return Status::ok();
  }
  Status emit(size_t offset, std::string_view s) {
    out_ += s;
    if (out_.size() > limits_.max_output_bytes)
      return fail(offset, "rendered text exceeds " + std::to_string(limits_.max_output_bytes >> 20) + " MiB");
    return Status::ok();
  }

  Value::Dict globals() {
    Value::Dict g;
    g.reserve(8);
    g.emplace_back("raise_exception", Value::function("raise_exception", [](const CallArgs& a) -> Result<Value> {
      const std::string msg = a.positional.empty() ? std::string() : a.positional[0].to_str();
      return invalid_argument("raise_exception: " + msg);
    }));
    const std::optional<std::time_t> now = now_;
    g.emplace_back("strftime_now", Value::function("strftime_now", [now](const CallArgs& a) -> Result<Value> {
      if (a.positional.empty() || !a.positional[0].is_string()) return invalid_argument("strftime_now needs a format string");
      const std::time_t t = now ? *now : std::time(nullptr);
      std::tm tm{};
      localtime_r(&t, &tm);
      char buf[512];
      const size_t n = std::strftime(buf, sizeof buf, a.positional[0].as_string().c_str(), &tm);
      return Value::string(std::string(buf, n));
    }));
    auto kw_dict = [](const CallArgs& a, const char* who) -> Result<Value::Dict> {
      Value::Dict d;
      if (!a.positional.empty()) {
        if (a.positional.size() > 1 || a.positional[0].kind() != Value::Kind::kDict)
          return invalid_argument(std::string(who) + "() takes keyword arguments or one dict");
        d = a.positional[0].as_dict();
      }
      for (const auto& kv : a.keyword) {
        bool replaced = false;
        for (auto& e : d) if (e.first == kv.first) { e.second = kv.second; replaced = true; }
        if (!replaced) d.push_back(kv);
      }
      return d;
    };
    g.emplace_back("namespace", Value::function("namespace", [kw_dict](const CallArgs& a) -> Result<Value> {
      Value::Dict d;
      PDVM_ASSIGN_OR_RETURN(d, kw_dict(a, "namespace"));
      return Value::namespace_object(std::move(d));
    }));
    g.emplace_back("dict", Value::function("dict", [kw_dict](const CallArgs& a) -> Result<Value> {
      Value::Dict d;
      PDVM_ASSIGN_OR_RETURN(d, kw_dict(a, "dict"));
      return Value::dict(std::move(d));
    }));
    g.emplace_back("range", Value::function("range", [](const CallArgs& a) -> Result<Value> {
      const auto& p = a.positional;
      if (p.empty() || p.size() > 3) return invalid_argument("range() takes 1 to 3 integer arguments");
      for (const auto& x : p)
        if (x.kind() != Value::Kind::kInt && x.kind() != Value::Kind::kBool)
          return invalid_argument(std::string("range() arguments must be integers, not ") + x.type_name());
      const int64_t start = p.size() == 1 ? 0 : p[0].as_int();
      const int64_t stop = p.size() == 1 ? p[0].as_int() : p[1].as_int();
      const int64_t stp = p.size() == 3 ? p[2].as_int() : 1;
      if (stp == 0) return invalid_argument("range() step must not be zero");
      Value::List out;
      for (int64_t i = start; stp > 0 ? i < stop : i > stop; i += stp) {
        if (out.size() >= kMaxListItems) return invalid_argument("range() longer than 1048576 items");
        out.push_back(Value::integer(i));
        if ((stp > 0 && i > INT64_MAX - stp) || (stp < 0 && i < INT64_MIN - stp)) break;
      }
      return Value::list(std::move(out));
    }));
    return g;
  }

  Value lookup(const std::string& name) const {
    for (auto s = scopes_.rbegin(); s != scopes_.rend(); ++s)
      for (const auto& kv : *s)
        if (kv.first == name) return kv.second;
    return Value::undefined(name);
  }

  void assign(const std::string& name, Value v) {
    auto& scope = scopes_.back();
    for (auto& kv : scope)
      if (kv.first == name) { kv.second = std::move(v); return; }
    scope.emplace_back(name, std::move(v));
  }

  Status assign_targets(size_t offset, const std::vector<std::string>& targets, const Value& v) {
    if (targets.size() == 1) {
      assign(targets[0], v);
      return Status::ok();
    }
    Value::List items;
    PDVM_ASSIGN_OR_RETURN(items, iterate(v));
    if (items.size() != targets.size())
      return fail(offset, "cannot unpack " + std::to_string(items.size()) + " values into " +
                              std::to_string(targets.size()) + " names");
    for (size_t i = 0; i < targets.size(); ++i) assign(targets[i], items[i]);
    return Status::ok();
  }

  Status render_body(const Body& body, Flow& flow) {
    for (const Node& n : body) {
      PDVM_TRY(render_node(n, flow));
      if (flow != Flow::kNormal) return Status::ok();
    }
    return Status::ok();
  }

  Status render_node(const Node& n, Flow& flow) {
    PDVM_TRY(step(n.offset));
    switch (n.kind) {
      case Node::Kind::kText: return emit(n.offset, n.text);
      case Node::Kind::kOutput: {
        Value v;
        PDVM_ASSIGN_OR_RETURN(v, eval(*n.expr));
        return emit(n.offset, v.to_str());
      }
      case Node::Kind::kIf:
        for (const auto& [cond, body] : n.branches) {
          bool take = true;
          if (cond) {
            Value c;
            PDVM_ASSIGN_OR_RETURN(c, eval(*cond));
            take = c.truthy();
          }
          if (take) return render_body(body, flow);
        }
        return Status::ok();
      case Node::Kind::kFor: return render_for(n);
      case Node::Kind::kSet: {
        Value v;
        PDVM_ASSIGN_OR_RETURN(v, eval(*n.expr));
        if (!n.attr.empty()) {
          const Value ns = lookup(n.targets[0]);
          if (ns.kind() != Value::Kind::kNamespace)
            return fail(n.offset, "cannot assign attribute '" + n.attr + "' on '" + n.targets[0] +
                                      "' (a " + ns.type_name() + "): only namespace() objects take attributes");
          if (!n.attr.empty() && n.attr[0] == '_')
            return fail(n.offset, "namespace attributes may not start with '_' (as transformers enforces)");
          auto& items = ns.namespace_items();
          for (auto& kv : items)
            if (kv.first == n.attr) { kv.second = std::move(v); return Status::ok(); }
          items.emplace_back(n.attr, std::move(v));
          return Status::ok();
        }
        return assign_targets(n.offset, n.targets, v);
      }
      case Node::Kind::kSetBlock: {
        std::string saved = std::move(out_);
        out_.clear();
        Flow inner = Flow::kNormal;
        Status s = render_body(n.body, inner);
        std::string captured = std::move(out_);
        out_ = std::move(saved);
        PDVM_TRY(s);
        assign(n.targets[0], Value::string(std::move(captured)));
        return Status::ok();
      }
      case Node::Kind::kBreak:
      case Node::Kind::kContinue:
        if (loop_depth_ == 0)
          return fail(n.offset, std::string("'") + (n.kind == Node::Kind::kBreak ? "break" : "continue") +
                                    "' outside a for loop");
        flow = n.kind == Node::Kind::kBreak ? Flow::kBreak : Flow::kContinue;
        return Status::ok();
      case Node::Kind::kScope: return render_body(n.body, flow);
    }
    return Status::ok();
  }

  Status render_for(const Node& n) {
    Value seq;
    PDVM_ASSIGN_OR_RETURN(seq, eval(*n.expr));
    if (seq.is_none()) return fail(n.expr->offset, "'NoneType' object is not iterable");
    Value::List items;
    {
      auto r = iterate(seq);
      if (!r.is_ok()) return at(n.expr->offset, r.status());
      items = std::move(r).value();
    }
    if (n.filter) {  // {% for x in xs if cond %}: the loop sees only the kept items
      Value::List kept;
      for (const auto& item : items) {
        scopes_.emplace_back();
        Status s = assign_targets(n.offset, n.targets, item);
        Result<Value> c = s.is_ok() ? eval(*n.filter) : Result<Value>(s);
        scopes_.pop_back();
        if (!c.is_ok()) return c.status();
        if (c->truthy()) kept.push_back(item);
      }
      items = std::move(kept);
    }
    if (items.empty()) {
      Flow flow = Flow::kNormal;
      return render_body(n.else_body, flow);
    }
    ++loop_depth_;
    const int64_t len = int64_t(items.size());
    // loop.cycle(a, b, ...): one function per loop, reading the current index.
    auto cycle_index = std::make_shared<int64_t>(0);
    const Value cycle = Value::function("cycle", [cycle_index](const CallArgs& a) -> Result<Value> {
      if (a.positional.empty()) return invalid_argument("loop.cycle() needs at least one argument");
      return a.positional[size_t(*cycle_index) % a.positional.size()];
    });
    for (int64_t i = 0; i < len; ++i) {
      PDVM_TRY(step(n.offset));
      scopes_.emplace_back();
      Status s = assign_targets(n.offset, n.targets, items[size_t(i)]);
      if (s.is_ok()) {
        Value::Dict loop;
        loop.reserve(12);
        loop.emplace_back("index", Value::integer(i + 1));
        loop.emplace_back("index0", Value::integer(i));
        loop.emplace_back("revindex", Value::integer(len - i));
        loop.emplace_back("revindex0", Value::integer(len - i - 1));
        loop.emplace_back("first", Value::boolean(i == 0));
        loop.emplace_back("last", Value::boolean(i == len - 1));
        loop.emplace_back("length", Value::integer(len));
        loop.emplace_back("depth", Value::integer(1));
        loop.emplace_back("depth0", Value::integer(0));
        loop.emplace_back("previtem", i > 0 ? items[size_t(i - 1)] : Value::undefined("previtem"));
        loop.emplace_back("nextitem", i + 1 < len ? items[size_t(i + 1)] : Value::undefined("nextitem"));
        *cycle_index = i;
        loop.emplace_back("cycle", cycle);
        assign("loop", Value::dict(std::move(loop)));
        Flow flow = Flow::kNormal;
        s = render_body(n.body, flow);
        if (s.is_ok() && flow == Flow::kBreak) {
          scopes_.pop_back();
          break;
        }
      }
      scopes_.pop_back();
      if (!s.is_ok()) {
        --loop_depth_;
        return s;
      }
    }
    --loop_depth_;
    return Status::ok();
  }

  Status undefined_error(size_t offset, const Value& v) const {
    return fail(offset, "'" + (v.as_string().empty() ? std::string("value") : v.as_string()) + "' is undefined");
  }

  Result<Value> get_attr(const Expr& e, const Value& obj, const std::string& name) {
    if (obj.is_undefined()) return undefined_error(e.offset, obj);
    Value m = get_method(obj, name);
    if (!m.is_undefined()) return m;
    if (const Value* v = obj.find(name)) return *v;
    return Value::undefined(name);
  }

  Result<Value> get_item(const Expr& e, const Value& obj, const Value& key) {
    if (obj.is_undefined()) return undefined_error(e.offset, obj);
    if ((obj.is_list() || obj.is_string()) && (key.kind() == Value::Kind::kInt || key.kind() == Value::Kind::kBool)) {
      if (obj.is_list()) {
        const int64_t n = int64_t(obj.as_list().size());
        int64_t i = key.as_int();
        if (i < 0) i += n;
        return i >= 0 && i < n ? obj.as_list()[size_t(i)] : Value::undefined(key.to_str());
      }
      const auto offs = code_point_offsets(obj.as_string());
      const int64_t n = int64_t(offs.size()) - 1;
      int64_t i = key.as_int();
      if (i < 0) i += n;
      if (i < 0 || i >= n) return Value::undefined(key.to_str());
      return Value::string(obj.as_string().substr(offs[size_t(i)], offs[size_t(i) + 1] - offs[size_t(i)]));
    }
    if (key.is_string()) {
      if (const Value* v = obj.find(key.as_string())) return *v;
      Value m = get_method(obj, key.as_string());
      if (!m.is_undefined()) return m;
      return Value::undefined(key.as_string());
    }
    return Value::undefined(key.to_str());
  }

  Result<CallArgs> eval_args(const Expr& e, size_t first) {
    CallArgs a;
    for (size_t i = first; i < e.children.size(); ++i) {
      Value v;
      PDVM_ASSIGN_OR_RETURN(v, eval(*e.children[i]));
      a.positional.push_back(std::move(v));
    }
    for (const auto& [k, x] : e.kwargs) {
      Value v;
      PDVM_ASSIGN_OR_RETURN(v, eval(*x));
      a.keyword.emplace_back(k, std::move(v));
    }
    return a;
  }

  Result<Value> arithmetic(const Expr& e, const Value& a, const Value& b) {
    const std::string& op = e.name;
    if (op == "~") return Value::string(a.to_str() + b.to_str());
    if (a.is_undefined()) return undefined_error(e.children[0]->offset, a);
    if (b.is_undefined()) return undefined_error(e.children[1]->offset, b);
    auto bad = [&]() {
      return fail(e.offset, "unsupported operand type(s) for " + op + ": '" + a.type_name() + "' and '" +
                                b.type_name() + "'");
    };
    const bool ints = (a.kind() == Value::Kind::kInt || a.kind() == Value::Kind::kBool) &&
                      (b.kind() == Value::Kind::kInt || b.kind() == Value::Kind::kBool);
    const bool nums = a.is_number() && b.is_number();
    const Status overflow = fail(e.offset, "integer overflow in '" + op + "'");
    if (op == "+") {
      if (ints) {
        int64_t r = 0;
        if (__builtin_add_overflow(a.as_int(), b.as_int(), &r)) return overflow;
        return Value::integer(r);
      }
      if (nums) return Value::floating(a.as_double() + b.as_double());
      if (a.is_string() && b.is_string()) {
        if (a.as_string().size() + b.as_string().size() > kMaxStringBytes) return fail(e.offset, "string too long");
        return Value::string(a.as_string() + b.as_string());
      }
      if (a.is_list() && b.is_list()) {
        Value::List r = a.as_list();
        r.insert(r.end(), b.as_list().begin(), b.as_list().end());
        if (r.size() > kMaxListItems) return fail(e.offset, "list too long");
        return Value::list(std::move(r));
      }
      return bad();
    }
    if (op == "-") {
      if (ints) {
        int64_t r = 0;
        if (__builtin_sub_overflow(a.as_int(), b.as_int(), &r)) return overflow;
        return Value::integer(r);
      }
      if (nums) return Value::floating(a.as_double() - b.as_double());
      return bad();
    }
    if (op == "*") {
      if (ints) {
        int64_t r = 0;
        if (__builtin_mul_overflow(a.as_int(), b.as_int(), &r)) return overflow;
        return Value::integer(r);
      }
      if (nums) return Value::floating(a.as_double() * b.as_double());
      const Value* seq = a.is_string() || a.is_list() ? &a : b.is_string() || b.is_list() ? &b : nullptr;
      const Value* count = seq == &a ? &b : &a;
      if (seq && (count->kind() == Value::Kind::kInt || count->kind() == Value::Kind::kBool)) {
        const int64_t k = std::max<int64_t>(count->as_int(), 0);
        if (seq->is_string()) {
          if (!seq->as_string().empty() && uint64_t(k) > kMaxStringBytes / seq->as_string().size())
            return fail(e.offset, "string repetition too long");
          std::string r;
          for (int64_t i = 0; i < k; ++i) r += seq->as_string();
          return Value::string(std::move(r));
        }
        if (!seq->as_list().empty() && uint64_t(k) > kMaxListItems / seq->as_list().size())
          return fail(e.offset, "list repetition too long");
        Value::List r;
        for (int64_t i = 0; i < k; ++i) r.insert(r.end(), seq->as_list().begin(), seq->as_list().end());
        return Value::list(std::move(r));
      }
      return bad();
    }
    if (op == "/" || op == "//" || op == "%") {
      if (!nums) return bad();
      if (b.as_double() == 0) return fail(e.offset, op == "%" ? "modulo by zero" : "division by zero");
      if (op == "/") return Value::floating(a.as_double() / b.as_double());
      if (ints) {
        const int64_t x = a.as_int(), y = b.as_int();
        if (x == INT64_MIN && y == -1) return overflow;
        int64_t q = x / y, r = x % y;
        if (r != 0 && ((r < 0) != (y < 0))) { --q; r += y; }  // Python floors
        return Value::integer(op == "//" ? q : r);
      }
      const double x = a.as_double(), y = b.as_double();
      if (op == "//") return Value::floating(std::floor(x / y));
      double r = std::fmod(x, y);
      if (r != 0 && ((r < 0) != (y < 0))) r += y;
      return Value::floating(r);
    }
    if (op == "**") {
      if (!nums) return bad();
      if (ints && b.as_int() >= 0) {
        int64_t r = 1, base = a.as_int();
        for (int64_t k = b.as_int(); k > 0; --k) {
          if (__builtin_mul_overflow(r, base, &r)) return overflow;
          if (r == 0 || r == 1) break;
          if (r == -1) { r = (k % 2 == 1) ? -1 : 1; break; }
        }
        return Value::integer(r);
      }
      return Value::floating(std::pow(a.as_double(), b.as_double()));
    }
    return fail(e.offset, "unknown operator '" + op + "'");
  }

  Result<bool> contains(const Expr& e, const Value& item, const Value& seq) {
    if (seq.is_string()) {
      if (!item.is_string())
        return fail(e.offset, std::string("'in <string>' requires string as left operand, not ") + item.type_name());
      return seq.as_string().find(item.as_string()) != std::string::npos;
    }
    if (seq.kind() == Value::Kind::kDict) return item.is_string() && seq.find(item.as_string()) != nullptr;
    if (seq.is_list()) {
      for (const auto& x : seq.as_list())
        if (equals(x, item)) return true;
      return false;
    }
    if (seq.is_undefined()) return false;
    return fail(e.offset, std::string("argument of type '") + seq.type_name() + "' is not iterable");
  }

  Result<Value> eval(const Expr& e) {
    PDVM_TRY(step(e.offset));
    switch (e.kind) {
      case Expr::Kind::kLiteral: return e.literal;
      case Expr::Kind::kName: return lookup(e.name);
      case Expr::Kind::kList: {
        Value::List items;
        for (const auto& c : e.children) {
          Value v;
          PDVM_ASSIGN_OR_RETURN(v, eval(*c));
          items.push_back(std::move(v));
        }
        return Value::list(std::move(items));
      }
      case Expr::Kind::kDict: {
        Value::Dict items;
        for (size_t i = 0; i + 1 < e.children.size(); i += 2) {
          Value k, v;
          PDVM_ASSIGN_OR_RETURN(k, eval(*e.children[i]));
          PDVM_ASSIGN_OR_RETURN(v, eval(*e.children[i + 1]));
          if (!k.is_string()) return fail(e.children[i]->offset, "dict keys must be strings here");
          bool replaced = false;
          for (auto& kv : items) if (kv.first == k.as_string()) { kv.second = v; replaced = true; }
          if (!replaced) items.emplace_back(k.as_string(), std::move(v));
        }
        return Value::dict(std::move(items));
      }
      case Expr::Kind::kAttr: {
        Value obj;
        PDVM_ASSIGN_OR_RETURN(obj, eval(*e.children[0]));
        return get_attr(e, obj, e.name);
      }
      case Expr::Kind::kIndex: {
        Value obj, key;
        PDVM_ASSIGN_OR_RETURN(obj, eval(*e.children[0]));
        PDVM_ASSIGN_OR_RETURN(key, eval(*e.children[1]));
        return get_item(e, obj, key);
      }
      case Expr::Kind::kSlice: {
        Value obj, parts[3];
        PDVM_ASSIGN_OR_RETURN(obj, eval(*e.children[0]));
        for (int k = 0; k < 3; ++k)
          if (e.children[size_t(k) + 1]) { PDVM_ASSIGN_OR_RETURN(parts[k], eval(*e.children[size_t(k) + 1])); }
        if (obj.is_undefined()) return undefined_error(e.offset, obj);
        if (!obj.is_list() && !obj.is_string()) return fail(e.offset, std::string("'") + obj.type_name() + "' object is not subscriptable");
        const std::vector<size_t> offs = obj.is_string() ? code_point_offsets(obj.as_string()) : std::vector<size_t>{};
        const int64_t len = obj.is_list() ? int64_t(obj.as_list().size()) : int64_t(offs.size()) - 1;
        auto pos = slice_positions(len, parts[0], parts[1], parts[2]);
        if (!pos.is_ok()) return at(e.offset, pos.status());
        if (obj.is_list()) {
          Value::List r;
          for (size_t i : *pos) r.push_back(obj.as_list()[i]);
          return Value::list(std::move(r));
        }
        std::string r;
        for (size_t i : *pos) r.append(obj.as_string(), offs[i], offs[i + 1] - offs[i]);
        return Value::string(std::move(r));
      }
      case Expr::Kind::kCall: {
        Value callee;
        PDVM_ASSIGN_OR_RETURN(callee, eval(*e.children[0]));
        if (callee.is_undefined()) return undefined_error(e.children[0]->offset, callee);
        if (callee.kind() != Value::Kind::kFunction)
          return fail(e.offset, std::string("'") + callee.type_name() + "' object is not callable");
        CallArgs args;
        PDVM_ASSIGN_OR_RETURN(args, eval_args(e, 1));
        auto r = callee.function_body()(args);
        if (!r.is_ok()) return at(e.offset, r.status());
        return r;
      }
      case Expr::Kind::kFilter: {
        Value v;
        PDVM_ASSIGN_OR_RETURN(v, eval(*e.children[0]));
        CallArgs args;
        PDVM_ASSIGN_OR_RETURN(args, eval_args(e, 1));
        auto r = apply_filter(e.name, v, args);
        if (!r.is_ok()) return at(e.offset, r.status());
        return r;
      }
      case Expr::Kind::kTest: {
        Value v;
        PDVM_ASSIGN_OR_RETURN(v, eval(*e.children[0]));
        CallArgs args;
        PDVM_ASSIGN_OR_RETURN(args, eval_args(e, 1));
        auto r = apply_test(e.name, v, args);
        if (!r.is_ok()) return at(e.offset, r.status());
        return Value::boolean(*r != e.negated);
      }
      case Expr::Kind::kUnary: {
        Value v;
        PDVM_ASSIGN_OR_RETURN(v, eval(*e.children[0]));
        if (v.is_undefined()) return undefined_error(e.children[0]->offset, v);
        if (!v.is_number()) return fail(e.offset, std::string("bad operand type for unary ") + e.name + ": '" + v.type_name() + "'");
        if (e.name == "+") return v.kind() == Value::Kind::kBool ? Value::integer(v.as_int()) : v;
        if (v.kind() == Value::Kind::kFloat) return Value::floating(-v.as_double());
        if (v.as_int() == INT64_MIN) return fail(e.offset, "integer overflow in unary '-'");
        return Value::integer(-v.as_int());
      }
      case Expr::Kind::kBinary: {
        Value a, b;
        PDVM_ASSIGN_OR_RETURN(a, eval(*e.children[0]));
        PDVM_ASSIGN_OR_RETURN(b, eval(*e.children[1]));
        return arithmetic(e, a, b);
      }
      case Expr::Kind::kCompare: {
        Value left;
        PDVM_ASSIGN_OR_RETURN(left, eval(*e.children[0]));
        for (size_t i = 0; i < e.ops.size(); ++i) {
          Value right;
          PDVM_ASSIGN_OR_RETURN(right, eval(*e.children[i + 1]));
          const std::string& op = e.ops[i];
          bool r = false;
          if (op == "==") r = equals(left, right);
          else if (op == "!=") r = !equals(left, right);
          else if (op == "in" || op == "not in") {
            PDVM_ASSIGN_OR_RETURN(r, contains(e, left, right));
            if (op == "not in") r = !r;
          } else {
            Result<bool> lt = op == "<" || op == ">=" ? less_than(left, right) : less_than(right, left);
            if (!lt.is_ok()) return at(e.children[i + 1]->offset, lt.status());
            r = (op == "<" || op == ">") ? *lt : !*lt;
          }
          if (!r) return Value::boolean(false);
          left = std::move(right);
        }
        return Value::boolean(true);
      }
      case Expr::Kind::kAnd: {
        Value a;
        PDVM_ASSIGN_OR_RETURN(a, eval(*e.children[0]));
        if (!a.truthy()) return a;
        return eval(*e.children[1]);
      }
      case Expr::Kind::kOr: {
        Value a;
        PDVM_ASSIGN_OR_RETURN(a, eval(*e.children[0]));
        if (a.truthy()) return a;
        return eval(*e.children[1]);
      }
      case Expr::Kind::kNot: {
        Value a;
        PDVM_ASSIGN_OR_RETURN(a, eval(*e.children[0]));
        return Value::boolean(!a.truthy());
      }
      case Expr::Kind::kCondition: {
        Value c;
        PDVM_ASSIGN_OR_RETURN(c, eval(*e.children[0]));
        if (c.truthy()) return eval(*e.children[1]);
        if (e.children[2]) return eval(*e.children[2]);
        return Value::undefined("");
      }
    }
    return fail(e.offset, "internal: unknown expression kind");
  }

  const Program& p_;
  std::optional<std::time_t> now_;
  RenderLimits limits_;
  std::vector<Value::Dict> scopes_;  // [0] globals, [1] caller's variables, [2] template top level, then loops
  std::string out_;
  uint64_t steps_ = 0;
  int loop_depth_ = 0;
};

}  // namespace

Result<std::string> render_program(const Program& program, const Value::Dict& variables,
                                   std::optional<std::time_t> now, const RenderLimits& limits) {
  Renderer r(program, variables, now, limits);
  return r.run();
}

}  // namespace pdvm::chat::jinja
