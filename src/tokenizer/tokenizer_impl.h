// Internal state of a Tokenizer, shared by the loaders (tokenizer_load.cpp: tokenizer.json and
// GGUF spec) and the encode/decode code (tokenizer.cpp). Not part of the public API.
#pragma once

#include <array>
#include <cstdint>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "tokenizer/bpe.h"
#include "tokenizer/pretokenizer.h"
#include "tokenizer/tokenizer.h"

namespace pdvm::tokenizer {

struct AddedToken {
  std::string content;
  int32_t id = -1;
  bool special = false, lstrip = false, rstrip = false, normalized = false;
};

// Byte trie over added-token contents for leftmost-longest matching.
class AddedTokenMatcher {
 public:
  void add(const std::string& content, int index);
  // Longest token starting at text[pos] (index into the added list), or -1.
  int longest_at(std::string_view text, size_t pos, size_t& len) const;
  bool empty() const { return nodes_.size() <= 1; }
  bool may_start(unsigned char b) const { return first_[b]; }

 private:
  struct Node {
    std::vector<std::pair<unsigned char, int>> children;
    int token = -1;
  };
  std::vector<Node> nodes_{1};
  std::array<bool, 256> first_{};
};

struct NormalizeStep {
  enum class Kind { kNfc, kPrepend, kReplace };
  Kind kind;
  std::string a, b;  // prepend: a; replace: a -> b
};

struct DecodeStep {
  enum class Kind { kByteLevel, kReplace, kByteFallback, kFuse, kStrip };
  Kind kind;
  std::string a, b;      // replace a -> b; strip: a is the char
  int start = 0, stop = 0;  // strip counts
};

struct TokenizerImpl {
  enum class ModelKind { kByteLevelBpe, kCharBpe };  // byte-level vs SentencePiece-style (chars + byte fallback)
  ModelKind kind = ModelKind::kByteLevelBpe;

  std::vector<std::string> id_to_text;                   // [vocab_size]: vocab string or added content
  std::unordered_map<std::string, int32_t> text_to_id;   // model vocab + added tokens
  std::vector<uint8_t> special;                          // [vocab_size]: 1 for special tokens
  MergeTable merges;
  bool ignore_merges = false;

  // Byte-level model: id of each byte's mapped character, and raw-bytes -> id for whole words.
  std::array<int32_t, 256> byte_id{};
  std::unordered_map<std::string, int32_t> raw_vocab;
  // Char model: byte fallback ids (<0xNN>), or -1; unk handling.
  bool byte_fallback = false;
  std::array<int32_t, 256> fallback_id{};
  int32_t unk_id = -1;
  bool fuse_unk = false;

  std::vector<NormalizeStep> normalizer;
  PreTokenizer pre;

  std::vector<AddedToken> added;
  AddedTokenMatcher raw_matcher;         // added tokens matched on raw text (normalized = false)
  AddedTokenMatcher normalized_matcher;  // normalized = true ones, matched after normalisation

  std::vector<DecodeStep> decoder;

  bool add_bos = false, add_eos = false;
  int32_t bos_id = -1;
  std::vector<int32_t> eos_ids;
  std::string chat_template;

  // Word cache: word bytes -> ids. Guarded by cache_mu; cleared when it grows past kMaxCache.
  mutable std::mutex cache_mu;
  mutable std::unordered_map<std::string, std::vector<int32_t>> cache;

  // Shared finishing steps of both loaders: special flags, matchers, eos list, sanity checks.
  Status finish();
};

Result<std::shared_ptr<TokenizerImpl>> load_from_json(std::string_view json, std::string_view config_json);
Result<std::shared_ptr<TokenizerImpl>> load_from_spec(const TokenizerSpec& spec);
Result<std::string> read_maybe_gz(const std::string& path);

}  // namespace pdvm::tokenizer
