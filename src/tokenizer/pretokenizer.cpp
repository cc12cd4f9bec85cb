// Pre-tokenizer steps and their PCRE2 regexes (see pretokenizer.h). The split regexes are the
// ones in the models' tokenizer.json files; the GGUF "pre" names map to the same patterns.
#define PCRE2_CODE_UNIT_WIDTH 8
#include "tokenizer/pretokenizer.h"

#include <pcre2.h>

#include <nlohmann/json.hpp>

namespace pdvm::tokenizer {

namespace {

// Llama-3 (also the tiktoken-converter default and the Phi-4 file): 1-3 digit groups.
constexpr std::string_view kLlama3Pattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
// Qwen2: like Llama-3 but single digits.
constexpr std::string_view kQwen2Pattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
// GPT-4o / o200k (case-aware letter runs). Not covered by a fixture.
constexpr std::string_view kGpt4oPattern =
    R"([^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

// tokenizers compiles split regexes with Oniguruma (Ruby syntax); PCRE2 differs on two points
// that real patterns hit, so patterns are translated before compiling:
//  - \s: PCRE2's (via \h) includes U+180E MONGOLIAN VOWEL SEPARATOR, not White_Space since
//    Unicode 6.3; \s and \S become explicit White_Space classes.
//  - X{n,m}+ is possessive in PCRE2 but in Ruby syntax means (?:X{n,m})+ (tiktoken's cl100k
//    pattern has \p{N}{1,3}+, so tokenizers splits digit runs of any length there).
constexpr std::string_view kWhiteSpaceSet =
    R"(\t\n\x{0B}\f\r \x{85}\x{A0}\x{1680}\x{2000}-\x{200A}\x{2028}\x{2029}\x{202F}\x{205F}\x{3000})";

// Copies an escape starting at p[i] ('\\') to out, rewriting \s / \S; returns the index after it.
size_t copy_escape(std::string_view p, size_t i, bool in_class, std::string& out) {
  if (i + 1 >= p.size()) { out += p[i]; return i + 1; }
  const char e = p[i + 1];
  if (e == 's') {
    out += in_class ? std::string(kWhiteSpaceSet) : "[" + std::string(kWhiteSpaceSet) + "]";
    return i + 2;
  }
  if (e == 'S' && !in_class) {
    out += "[^" + std::string(kWhiteSpaceSet) + "]";
    return i + 2;
  }
  size_t j = i + 2;
  if ((e == 'p' || e == 'P' || e == 'x') && j < p.size() && p[j] == '{') {
    const size_t close = p.find('}', j);
    j = close == std::string_view::npos ? p.size() : close + 1;
  }
  out.append(p.substr(i, j - i));
  return j;
}

std::string translate_onig_pattern(std::string_view p) {
  std::string out;
  out.reserve(p.size() + 64);
  std::vector<size_t> group_open;  // positions in out of unclosed '('
  size_t atom = 0;                 // position in out where the last atom starts
  size_t i = 0;
  while (i < p.size()) {
    const char c = p[i];
    if (c == '\\') {
      atom = out.size();
      i = copy_escape(p, i, false, out);
    } else if (c == '[') {
      atom = out.size();
      out += c;
      ++i;
      if (i < p.size() && p[i] == '^') out += p[i++];
      if (i < p.size() && p[i] == ']') out += p[i++];  // a leading ']' is literal
      while (i < p.size() && p[i] != ']') {
        if (p[i] == '\\') i = copy_escape(p, i, true, out);
        else out += p[i++];
      }
      if (i < p.size()) out += p[i++];
    } else if (c == '(') {
      group_open.push_back(out.size());
      out += c;
      ++i;
    } else if (c == ')') {
      atom = group_open.empty() ? out.size() : group_open.back();
      if (!group_open.empty()) group_open.pop_back();
      out += c;
      ++i;
    } else if (c == '{') {
      size_t j = i + 1;
      while (j < p.size() && ((p[j] >= '0' && p[j] <= '9') || p[j] == ',')) ++j;
      const bool interval = j < p.size() && p[j] == '}' && j > i + 1;
      if (interval && j + 1 < p.size() && p[j + 1] == '+') {
        out.insert(atom, "(?:");
        out.append(p.substr(i, j + 1 - i));
        out += ")+";
        i = j + 2;
      } else {
        const size_t end = interval ? j + 1 : i + 1;
        out.append(p.substr(i, end - i));
        i = end;
      }
    } else if (c == '?' || c == '*' || c == '+' || c == '|') {
      out += c;
      ++i;
    } else {
      atom = out.size();
      size_t len = 1;
      while (i + len < p.size() && (static_cast<unsigned char>(p[i + len]) & 0xC0) == 0x80) ++len;
      out.append(p.substr(i, len));
      i += len;
    }
  }
  return out;
}

}  // namespace

struct Regex::Code {
  pcre2_code* code = nullptr;
  bool jit = false;
  ~Code() { if (code) pcre2_code_free(code); }
};

Result<Regex> Regex::compile(std::string_view pattern) {
  const std::string rewritten = translate_onig_pattern(pattern);
  int err = 0;
  PCRE2_SIZE err_off = 0;
  pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(rewritten.data()), rewritten.size(),
                                   PCRE2_UTF | PCRE2_UCP | PCRE2_NO_UTF_CHECK, &err, &err_off, nullptr);
  if (!code) {
    PCRE2_UCHAR msg[256];
    pcre2_get_error_message(err, msg, sizeof(msg));
    return unsupported("pre-tokenizer regex does not compile at offset " + std::to_string(err_off) + ": " +
                       reinterpret_cast<const char*>(msg) + " (pattern: " + std::string(pattern) + ")");
  }
  Regex r;
  r.code_ = std::make_shared<Code>();
  r.code_->code = code;
  // JIT is optional: without it PCRE2 interprets, more slowly but with the same results.
  r.code_->jit = pcre2_jit_compile(code, PCRE2_JIT_COMPLETE) == 0;
  return r;
}

void Regex::find_all(std::string_view s, size_t base, std::vector<std::pair<size_t, size_t>>& out) const {
  // Match data is small; thread_local keeps find_all reentrant without a per-call allocation.
  struct MatchData {
    pcre2_match_data* md = pcre2_match_data_create(1, nullptr);
    ~MatchData() { pcre2_match_data_free(md); }
  };
  thread_local MatchData tl;
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(s.data());
  size_t start = 0;
  while (start < s.size()) {
    const int rc = code_->jit
        ? pcre2_jit_match(code_->code, subject, s.size(), start, PCRE2_NO_UTF_CHECK, tl.md, nullptr)
        : pcre2_match(code_->code, subject, s.size(), start, PCRE2_NO_UTF_CHECK, tl.md, nullptr);
    if (rc < 0) break;
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(tl.md);
    size_t b = ov[0], e = ov[1];
    if (e == b) {
      // Empty match: step over one character (none of the supported patterns match empty).
      ++e;
      while (e < s.size() && (static_cast<unsigned char>(s[e]) & 0xC0) == 0x80) ++e;
      start = e;
      continue;
    }
    out.emplace_back(base + b, base + e);
    start = e;
  }
}

Result<PreTokenizer> PreTokenizer::from_json(const nlohmann::json& j) {
  PreTokenizer pt;
  if (j.is_null()) return pt;
  std::vector<const nlohmann::json*> steps;
  const std::string type = j.value("type", "");
  if (type == "Sequence") {
    if (!j.contains("pretokenizers") || !j["pretokenizers"].is_array())
      return corrupt("pre_tokenizer Sequence without a 'pretokenizers' array");
    for (const auto& s : j["pretokenizers"]) steps.push_back(&s);
  } else {
    steps.push_back(&j);
  }
  for (size_t i = 0; i < steps.size(); ++i) {
    const auto& s = *steps[i];
    const std::string t = s.value("type", "");
    if (pt.byte_level_) return unsupported("pre_tokenizer: step '" + t + "' after ByteLevel is not supported");
    if (t == "Split") {
      const std::string behavior = s.value("behavior", "");
      if (behavior != "Isolated" || s.value("invert", false))
        return unsupported("pre_tokenizer Split with behavior '" + behavior + "'" +
                           (s.value("invert", false) ? " and invert" : "") + " is not supported (only Isolated)");
      const auto& pat = s.at("pattern");
      PreTokenizeStep step;
      if (pat.contains("Regex")) {
        step.kind = PreTokenizeStep::Kind::kRegexIsolated;
        PDVM_ASSIGN_OR_RETURN(step.regex, Regex::compile(pat["Regex"].get<std::string>()));
      } else if (pat.contains("String")) {
        step.kind = PreTokenizeStep::Kind::kStringIsolated;
        step.literal = pat["String"].get<std::string>();
        if (step.literal.empty()) return corrupt("pre_tokenizer Split with an empty String pattern");
      } else {
        return corrupt("pre_tokenizer Split pattern is neither Regex nor String");
      }
      pt.steps_.push_back(std::move(step));
    } else if (t == "Digits") {
      PreTokenizeStep step;
      PDVM_ASSIGN_OR_RETURN(step.regex, Regex::compile(s.value("individual_digits", false) ? R"(\p{N})" : R"(\p{N}+)"));
      pt.steps_.push_back(std::move(step));
    } else if (t == "ByteLevel") {
      pt.byte_level_ = true;
      pt.add_prefix_space_ = s.value("add_prefix_space", false);
      if (pt.add_prefix_space_ && !pt.steps_.empty())
        return unsupported("pre_tokenizer ByteLevel with add_prefix_space after other steps is not supported");
      if (s.value("use_regex", true)) {
        PreTokenizeStep step;
        step.kind = PreTokenizeStep::Kind::kRegexIsolated;
        PDVM_ASSIGN_OR_RETURN(step.regex, Regex::compile(kGpt2Pattern));
        pt.steps_.push_back(std::move(step));
      }
    } else {
      return unsupported("pre_tokenizer type '" + t +
                         "' is not supported (supported: Sequence, Split, Digits, ByteLevel)");
    }
  }
  return pt;
}

Result<PreTokenizer> PreTokenizer::from_gguf_pre(std::string_view pre) {
  PreTokenizer pt;
  pt.byte_level_ = true;
  auto add_regex = [&](std::string_view pattern) -> Status {
    PreTokenizeStep step;
    step.kind = PreTokenizeStep::Kind::kRegexIsolated;
    PDVM_ASSIGN_OR_RETURN(step.regex, Regex::compile(pattern));
    pt.steps_.push_back(std::move(step));
    return Status::ok();
  };
  if (pre == "default" || pre == "gpt-2" || pre == "gpt2" || pre.empty()) {
    PDVM_TRY(add_regex(kGpt2Pattern));
  } else if (pre == "llama-bpe" || pre == "llama3" || pre == "llama-v3" || pre == "dbrx" || pre == "smaug-bpe") {
    PDVM_TRY(add_regex(kLlama3Pattern));
  } else if (pre == "qwen2" || pre == "deepseek-r1-qwen") {
    PDVM_TRY(add_regex(kQwen2Pattern));
  } else if (pre == "gpt-4o") {
    PDVM_TRY(add_regex(kGpt4oPattern));
  } else if (pre == "smollm" || pre == "starcoder" || pre == "refact") {
    // The SmolLM2/StarCoder tokenizer.json: Digits(individual_digits) then ByteLevel's regex.
    PDVM_TRY(add_regex(R"(\p{N})"));
    PDVM_TRY(add_regex(kGpt2Pattern));
  } else {
    return unsupported("GGUF tokenizer.ggml.pre '" + std::string(pre) +
                       "' is not supported (supported: default, gpt-2, llama-bpe, llama3, dbrx, smaug-bpe, "
                       "qwen2, deepseek-r1-qwen, gpt-4o, smollm, starcoder, refact)");
  }
  return pt;
}

void PreTokenizer::split(std::string_view text, std::vector<std::pair<size_t, size_t>>& words) const {
  words.clear();
  if (text.empty()) return;
  words.emplace_back(0, text.size());
  std::vector<std::pair<size_t, size_t>> next, matches;
  for (const auto& step : steps_) {
    next.clear();
    for (const auto& [b, e] : words) {
      const std::string_view piece = text.substr(b, e - b);
      matches.clear();
      switch (step.kind) {
        case PreTokenizeStep::Kind::kRegexIsolated:
          step.regex.find_all(piece, b, matches);
          break;
        case PreTokenizeStep::Kind::kStringIsolated: {
          size_t pos = 0;
          while ((pos = piece.find(step.literal, pos)) != std::string_view::npos) {
            matches.emplace_back(b + pos, b + pos + step.literal.size());
            pos += step.literal.size();
          }
          break;
        }

      }
      // Isolated: each match is a word and so is each non-empty gap between matches.
      size_t cur = b;
      for (const auto& m : matches) {
        if (m.first > cur) next.emplace_back(cur, m.first);
        next.push_back(m);
        cur = m.second;
      }
      if (cur < e) next.emplace_back(cur, e);
    }
    words.swap(next);
  }
}

}  // namespace pdvm::tokenizer
