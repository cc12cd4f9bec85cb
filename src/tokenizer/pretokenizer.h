// Pre-tokenization: splits a normalised text segment into words before BPE. Supports the steps
// real tokenizer.json files use (Split with a regex or string, "Isolated" behaviour; Digits;
// ByteLevel with or without its GPT-2 regex) and the GGUF tokenizer.ggml.pre names. Regexes run
// on PCRE2 in UTF + UCP mode with JIT; inputs are validated UTF-8 before they get here.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "pdvm/status.h"

namespace pdvm::tokenizer {

// A compiled PCRE2 pattern (shared, immutable; match data is allocated per call).
class Regex {
 public:
  static Result<Regex> compile(std::string_view pattern);
  // Appends [begin, end) byte ranges of all non-overlapping matches in s[0, n) to out, each
  // offset by `base`.
  void find_all(std::string_view s, size_t base, std::vector<std::pair<size_t, size_t>>& out) const;

 private:
  struct Code;
  std::shared_ptr<Code> code_;
};

struct PreTokenizeStep {
  // tokenizers' Digits step is a kRegexIsolated step with \p{N} or \p{N}+ (it tests
  // char::is_numeric, i.e. general categories Nd, Nl, No).
  enum class Kind { kRegexIsolated, kStringIsolated };
  Kind kind = Kind::kRegexIsolated;
  Regex regex;          // kRegexIsolated
  std::string literal;  // kStringIsolated
};

// The GPT-2 ByteLevel pre-tokenizer regex (tokenizers' ByteLevel with use_regex = true).
inline constexpr std::string_view kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

class PreTokenizer {
 public:
  // From tokenizer.json's "pre_tokenizer" (null allowed). Sets byte_level when a ByteLevel step
  // ends the sequence.
  static Result<PreTokenizer> from_json(const nlohmann::json& j);
  // From GGUF tokenizer.ggml.pre (byte-level models only).
  static Result<PreTokenizer> from_gguf_pre(std::string_view pre);

  // Splits text (valid UTF-8) into word byte ranges, in order, covering all of text.
  void split(std::string_view text, std::vector<std::pair<size_t, size_t>>& words) const;

  bool byte_level() const { return byte_level_; }
  bool byte_level_add_prefix_space() const { return add_prefix_space_; }
  bool empty() const { return steps_.empty(); }

 private:
  std::vector<PreTokenizeStep> steps_;
  bool byte_level_ = false;
  bool add_prefix_space_ = false;
};

}  // namespace pdvm::tokenizer
