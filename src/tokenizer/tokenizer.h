// Tokenizer: text <-> token ids, exactly as Hugging Face `tokenizers` does for the supported
// files (byte-level BPE: GPT-2, Llama-3, Qwen2, cl100k/Phi-4, SmolLM2; SentencePiece-style BPE:
// Llama-2/Mistral), built from tokenizer.json or from GGUF tokenizer.ggml.* metadata.
// Owns: added/special token matching, normalisers, pre-tokenizer regexes (PCRE2), BPE merges,
// decoders, streaming decode. Leaves chat templates to the chat code (it only carries the string).
// Thread safety: a Tokenizer is immutable after construction except for an internal word cache
// guarded by a mutex, so encode()/decode() may be called from several threads.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "pdvm/status.h"

namespace pdvm::tokenizer {

// What GGUF metadata (tokenizer.ggml.*) says; filled by the model loader from a GgufFile.
struct TokenizerSpec {
  std::string model;                 // tokenizer.ggml.model: "gpt2" (byte-level BPE) or "llama" (SentencePiece-style)
  std::string pre;                   // tokenizer.ggml.pre: "smollm", "llama-bpe", "qwen2", "gpt-2", "default", ...
  std::vector<std::string> tokens;
  std::vector<int32_t> token_types;  // 1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte
  std::vector<std::string> merges;   // "a b"
  std::vector<float> scores;
  int32_t bos_id = -1, eos_id = -1, unk_id = -1, pad_id = -1;
  bool add_bos = false, add_eos = false, add_space_prefix = false;
  std::string chat_template;         // tokenizer.chat_template (kept for the chat code)
};

struct TokenizerImpl;  // tokenizer.cpp

class Tokenizer {
 public:
  static Result<Tokenizer> from_spec(const TokenizerSpec& spec);
  // tokenizer.json (gzipped if the name ends in .gz) and, if given or present next to it as
  // tokenizer_config.json, the config for bos/eos/add_bos/add_eos/chat_template.
  static Result<Tokenizer> from_json_file(const std::string& tokenizer_json,
                                          const std::string& tokenizer_config_json = "");
  static Result<Tokenizer> from_json_string(std::string_view json, std::string_view config_json = "");

  // add_special: prepend BOS (and append EOS) when the tokenizer asks for it.
  // parse_special: match special added tokens in text (non-special added tokens always match).
  // Invalid UTF-8 -> kInvalidArgument naming the byte offset.
  Result<std::vector<int32_t>> encode(std::string_view text, bool add_special = true,
                                      bool parse_special = true) const;
  // Ids out of range decode to nothing. Invalid UTF-8 produced by byte tokens becomes U+FFFD,
  // as tokenizers does.
  std::string decode(std::span<const int32_t> ids, bool skip_special = false) const;

  int32_t vocab_size() const;                    // model vocab + added tokens (max id + 1)
  int32_t bos_id() const;                        // -1 if none
  const std::vector<int32_t>& eos_ids() const;   // eos first, then other end-of-turn specials
  std::optional<int32_t> token_id(std::string_view token_text) const;  // exact vocab / added-token lookup
  std::string_view token_text(int32_t id) const;                        // "" if out of range
  bool is_special(int32_t id) const;
  const std::string& chat_template() const;      // "" if none

 private:
  explicit Tokenizer(std::shared_ptr<const TokenizerImpl> impl) : impl_(std::move(impl)) {}
  std::shared_ptr<const TokenizerImpl> impl_;
  friend class StreamDecoder;
};

// Streaming decode: push ids one at a time, get text that never ends inside a UTF-8 character.
// The concatenation of all push() results and flush() equals tok.decode(all ids, skip_special).
// Keeps a reference to tok: tok must outlive the decoder.
class StreamDecoder {
 public:
  explicit StreamDecoder(const Tokenizer& tok, bool skip_special = true);
  std::string push(int32_t id);
  std::string flush();  // emits what is held back (an incomplete character at the end) and resets

 private:
  const Tokenizer& tok_;
  bool skip_special_;
  std::vector<int32_t> ids_;   // window: already-emitted context ids + not yet emitted ids
  std::string prefix_;         // decode of the context part of ids_
  size_t prefix_index_ = 0;    // ids_[0, prefix_index_) are context
};

}  // namespace pdvm::tokenizer
