// Encode and decode (see tokenizer.h): added-token split -> normalise -> pre-tokenize -> BPE per
// word (cached) -> BOS/EOS; decode through the file's decoder chain; streaming decode.
#include "tokenizer/tokenizer.h"

#include "tokenizer/tokenizer_impl.h"
#include "tokenizer/unicode_util.h"

namespace pdvm::tokenizer {

namespace {

constexpr size_t kMaxCache = 1 << 16;      // words; cleared wholesale when full
constexpr size_t kMaxCachedWord = 256;     // bytes; longer words are rare and not worth keeping

struct Segment {
  size_t begin, end;  // into the text (unused for added tokens)
  int32_t added_id;   // -1: plain text
};

bool is_ws_at(std::string_view s, size_t pos, size_t& len) {
  len = utf8_seq_len(s, pos);
  if (len == 0) return false;
  size_t p = pos;
  return is_unicode_whitespace(utf8_next(s, p));
}

// Splits text by added tokens (leftmost-longest), applying lstrip/rstrip like tokenizers.
void split_added(const TokenizerImpl& t, const AddedTokenMatcher& m, std::string_view text, bool parse_special,
                 std::vector<Segment>& out) {
  out.clear();
  if (m.empty()) {
    if (!text.empty()) out.push_back({0, text.size(), -1});
    return;
  }
  size_t seg_start = 0, pos = 0;
  while (pos < text.size()) {
    if (!m.may_start(static_cast<unsigned char>(text[pos]))) { ++pos; continue; }
    size_t len = 0;
    const int idx = m.longest_at(text, pos, len);
    if (idx < 0 || (!parse_special && t.added[idx].special)) { ++pos; continue; }
    const AddedToken& tok = t.added[idx];
    size_t b = pos, e = pos + len;
    if (tok.lstrip) {
      // Walk back over whitespace code points, not past the previous segment boundary.
      while (b > seg_start) {
        size_t q = b - 1;
        while (q > seg_start && (static_cast<unsigned char>(text[q]) & 0xC0) == 0x80) --q;
        size_t l = 0;
        if (!is_ws_at(text, q, l) || q + l != b) break;
        b = q;
      }
    }
    if (tok.rstrip) {
      size_t l = 0;
      while (e < text.size() && is_ws_at(text, e, l)) e += l;
    }
    if (b > seg_start) out.push_back({seg_start, b, -1});
    out.push_back({b, e, tok.id});
    seg_start = pos = e;
  }
  if (seg_start < text.size()) out.push_back({seg_start, text.size(), -1});
}

}  // namespace

// --- encode --------------------------------------------------------------------------------------

namespace {

Result<std::string> normalize(const TokenizerImpl& t, std::string_view s) {
  std::string out(s);
  for (const auto& step : t.normalizer) {
    switch (step.kind) {
      case NormalizeStep::Kind::kNfc: {
        PDVM_ASSIGN_OR_RETURN(out, nfc_normalize(out));
        break;
      }
      case NormalizeStep::Kind::kPrepend:
        if (!out.empty()) out.insert(0, step.a);
        break;
      case NormalizeStep::Kind::kReplace: {
        std::string r;
        size_t pos = 0, hit;
        while ((hit = out.find(step.a, pos)) != std::string::npos) {
          r.append(out, pos, hit - pos);
          r += step.b;
          pos = hit + step.a.size();
        }
        r.append(out, pos, std::string::npos);
        out.swap(r);
        break;
      }
    }
  }
  return out;
}

// BPE over one word (raw bytes for byte-level models, normalised UTF-8 for char models).
void encode_word(const TokenizerImpl& t, std::string_view word, std::vector<int32_t>& ids) {
  ids.clear();
  if (t.kind == TokenizerImpl::ModelKind::kByteLevelBpe) {
    if (t.ignore_merges) {
      if (auto it = t.raw_vocab.find(std::string(word)); it != t.raw_vocab.end()) {
        ids.push_back(it->second);
        return;
      }
    }
    ids.reserve(word.size());
    bool prev_unk = false;
    for (char c : word) {
      const int32_t id = t.byte_id[static_cast<unsigned char>(c)];
      if (id >= 0) {
        ids.push_back(id);
        prev_unk = false;
      } else if (t.unk_id >= 0) {
        if (!(t.fuse_unk && prev_unk)) ids.push_back(t.unk_id);
        prev_unk = true;
      }
    }
    t.merges.merge(ids);
    return;
  }
  if (t.ignore_merges) {
    if (auto it = t.text_to_id.find(std::string(word)); it != t.text_to_id.end()) {
      ids.push_back(it->second);
      return;
    }
  }
  // Char model: one symbol per code point; unknown ones fall back to <0xNN> or unk.
  size_t pos = 0;
  std::string ch;
  bool prev_unk = false;
  while (pos < word.size()) {
    const size_t len = utf8_seq_len(word, pos);
    ch.assign(word.substr(pos, len));
    auto it = t.text_to_id.find(ch);
    if (it != t.text_to_id.end() && it->second < static_cast<int32_t>(t.id_to_text.size())) {
      ids.push_back(it->second);
      prev_unk = false;
    } else {
      bool all = t.byte_fallback;
      for (size_t k = 0; all && k < len; ++k) all = t.fallback_id[static_cast<unsigned char>(ch[k])] >= 0;
      if (all) {
        for (size_t k = 0; k < len; ++k) ids.push_back(t.fallback_id[static_cast<unsigned char>(ch[k])]);
        prev_unk = false;
      } else if (t.unk_id >= 0) {
        if (!(t.fuse_unk && prev_unk)) ids.push_back(t.unk_id);
        prev_unk = true;
      }
    }
    pos += len;
  }
  t.merges.merge(ids);
}

Status encode_text(const TokenizerImpl& t, std::string_view raw, std::vector<int32_t>& out) {
  PDVM_ASSIGN_OR_RETURN(std::string norm, normalize(t, raw));
  std::string_view text = norm;
  std::string prefixed;
  if (t.pre.byte_level() && t.pre.byte_level_add_prefix_space() && !text.empty() && text[0] != ' ') {
    prefixed = " " + norm;
    text = prefixed;
  }
  // Normalized added tokens are matched on the normalised text.
  std::vector<Segment> segs;
  split_added(t, t.normalized_matcher, text, true, segs);
  std::vector<std::pair<size_t, size_t>> words;
  std::vector<int32_t> word_ids;
  for (const Segment& seg : segs) {
    if (seg.added_id >= 0) { out.push_back(seg.added_id); continue; }
    const std::string_view piece = text.substr(seg.begin, seg.end - seg.begin);
    t.pre.split(piece, words);
    std::lock_guard<std::mutex> lock(t.cache_mu);
    for (const auto& [b, e] : words) {
      const std::string_view word = piece.substr(b, e - b);
      if (word.size() <= kMaxCachedWord) {
        // Heterogeneous lookup would avoid this copy; std::unordered_map needs C++20 is_transparent.
        std::string key(word);
        auto it = t.cache.find(key);
        if (it != t.cache.end()) {
          out.insert(out.end(), it->second.begin(), it->second.end());
          continue;
        }
        encode_word(t, word, word_ids);
        out.insert(out.end(), word_ids.begin(), word_ids.end());
        if (t.cache.size() >= kMaxCache) t.cache.clear();
        t.cache.emplace(std::move(key), word_ids);
      } else {
        encode_word(t, word, word_ids);
        out.insert(out.end(), word_ids.begin(), word_ids.end());
      }
    }
  }
  return Status::ok();
}

}  // namespace

Result<std::vector<int32_t>> Tokenizer::encode(std::string_view text, bool add_special, bool parse_special) const {
  const TokenizerImpl& t = *impl_;
  PDVM_TRY(validate_utf8(text, "tokenizer input"));
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3 + 4);
  if (add_special && t.add_bos && t.bos_id >= 0) ids.push_back(t.bos_id);
  std::vector<Segment> segs;
  split_added(t, t.raw_matcher, text, parse_special, segs);
  for (const Segment& seg : segs) {
    if (seg.added_id >= 0) { ids.push_back(seg.added_id); continue; }
    PDVM_TRY(encode_text(t, text.substr(seg.begin, seg.end - seg.begin), ids));
  }
  if (add_special && t.add_eos && !t.eos_ids.empty()) ids.push_back(t.eos_ids[0]);
  return ids;
}

// --- decode --------------------------------------------------------------------------------------

namespace {

bool parse_byte_token(const std::string& s, unsigned char& b) {
  // "<0xNN>" with two uppercase or lowercase hex digits.
  if (s.size() != 6 || s[0] != '<' || s[1] != '0' || s[2] != 'x' || s[5] != '>') return false;
  auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
  };
  const int hi = hex(s[3]), lo = hex(s[4]);
  if (hi < 0 || lo < 0) return false;
  b = static_cast<unsigned char>(hi * 16 + lo);
  return true;
}

}  // namespace

std::string Tokenizer::decode(std::span<const int32_t> ids, bool skip_special) const {
  const TokenizerImpl& t = *impl_;
  std::vector<std::string> toks;
  toks.reserve(ids.size());
  for (int32_t id : ids) {
    if (id < 0 || id >= static_cast<int32_t>(t.id_to_text.size())) continue;
    if (skip_special && t.special[id]) continue;
    toks.push_back(t.id_to_text[id]);
  }
  const ByteUnicodeMap& bmap = byte_unicode_map();
  for (const DecodeStep& step : t.decoder) {
    switch (step.kind) {
      case DecodeStep::Kind::kByteLevel: {
        // Each token's characters map back to bytes; a token with any unmapped character (an
        // added token such as "<|im end|>" with a space) contributes its own UTF-8 bytes.
        std::string bytes;
        for (const std::string& tok : toks) {
          const size_t mark = bytes.size();
          size_t pos = 0;
          bool ok = true;
          while (pos < tok.size()) {
            if (utf8_seq_len(tok, pos) == 0) { ok = false; break; }
            const int b = bmap.cp_to_byte(utf8_next(tok, pos));
            if (b < 0) { ok = false; break; }
            bytes += static_cast<char>(b);
          }
          if (!ok) { bytes.resize(mark); bytes += tok; }
        }
        toks.assign(1, utf8_lossy(bytes));
        break;
      }
      case DecodeStep::Kind::kReplace:
        for (std::string& tok : toks) {
          std::string r;
          size_t pos = 0, hit;
          while ((hit = tok.find(step.a, pos)) != std::string::npos) {
            r.append(tok, pos, hit - pos);
            r += step.b;
            pos = hit + step.a.size();
          }
          r.append(tok, pos, std::string::npos);
          tok.swap(r);
        }
        break;
      case DecodeStep::Kind::kByteFallback: {
        // Runs of <0xNN> tokens become their bytes if those are valid UTF-8, else one U+FFFD each.
        std::vector<std::string> out;
        std::string run;
        size_t run_len = 0;
        auto flush = [&]() {
          if (run_len == 0) return;
          if (validate_utf8(run, "").is_ok()) {
            out.push_back(run);
          } else {
            for (size_t k = 0; k < run_len; ++k) out.emplace_back("\xEF\xBF\xBD");
          }
          run.clear();
          run_len = 0;
        };
        for (std::string& tok : toks) {
          unsigned char b;
          if (parse_byte_token(tok, b)) {
            run += static_cast<char>(b);
            ++run_len;
          } else {
            flush();
            out.push_back(std::move(tok));
          }
        }
        flush();
        toks.swap(out);
        break;
      }
      case DecodeStep::Kind::kFuse: {
        std::string all;
        for (const std::string& tok : toks) all += tok;
        toks.assign(1, std::move(all));
        break;
      }
      case DecodeStep::Kind::kStrip:
        for (std::string& tok : toks) {
          size_t b = 0, e = tok.size();
          for (int k = 0; k < step.start && tok.compare(b, step.a.size(), step.a) == 0 && b < e; ++k)
            b += step.a.size();
          for (int k = 0; k < step.stop && e >= b + step.a.size() &&
                          tok.compare(e - step.a.size(), step.a.size(), step.a) == 0; ++k)
            e -= step.a.size();
          tok = tok.substr(b, e - b);
        }
        break;
    }
  }
  std::string text;
  for (const std::string& tok : toks) text += tok;
  return text;
}

// --- accessors -----------------------------------------------------------------------------------

int32_t Tokenizer::vocab_size() const { return static_cast<int32_t>(impl_->id_to_text.size()); }
int32_t Tokenizer::bos_id() const { return impl_->bos_id; }
const std::vector<int32_t>& Tokenizer::eos_ids() const { return impl_->eos_ids; }
std::optional<int32_t> Tokenizer::token_id(std::string_view token_text) const {
  auto it = impl_->text_to_id.find(std::string(token_text));
  if (it == impl_->text_to_id.end()) return std::nullopt;
  return it->second;
}
std::string_view Tokenizer::token_text(int32_t id) const {
  if (id < 0 || id >= vocab_size()) return {};
  return impl_->id_to_text[id];
}
bool Tokenizer::is_special(int32_t id) const { return id >= 0 && id < vocab_size() && impl_->special[id]; }
const std::string& Tokenizer::chat_template() const { return impl_->chat_template; }

Result<Tokenizer> Tokenizer::from_spec(const TokenizerSpec& spec) {
  PDVM_ASSIGN_OR_RETURN(auto impl, load_from_spec(spec));
  return Tokenizer(std::move(impl));
}

Result<Tokenizer> Tokenizer::from_json_string(std::string_view json, std::string_view config_json) {
  PDVM_ASSIGN_OR_RETURN(auto impl, load_from_json(json, config_json));
  return Tokenizer(std::move(impl));
}

Result<Tokenizer> Tokenizer::from_json_file(const std::string& tokenizer_json, const std::string& tokenizer_config_json) {
  PDVM_ASSIGN_OR_RETURN(std::string json, read_maybe_gz(tokenizer_json));
  std::string config;
  if (!tokenizer_config_json.empty()) {
    PDVM_ASSIGN_OR_RETURN(config, read_maybe_gz(tokenizer_config_json));
  } else {
    const size_t slash = tokenizer_json.find_last_of('/');
    const std::string dir = slash == std::string::npos ? "." : tokenizer_json.substr(0, slash);
    auto r = read_maybe_gz(dir + "/tokenizer_config.json");
    if (r.is_ok()) config = std::move(r).value();
  }
  auto r = load_from_json(json, config);
  if (!r.is_ok()) return r.status().with_context(tokenizer_json);
  return Tokenizer(std::move(r).value());
}

// --- streaming decode ----------------------------------------------------------------------------

StreamDecoder::StreamDecoder(const Tokenizer& tok, bool skip_special) : tok_(tok), skip_special_(skip_special) {}

std::string StreamDecoder::push(int32_t id) {
  // As tokenizers' DecodeStream: decode context + new ids, emit what follows the context's text
  // once it does not end in U+FFFD (an incomplete character), then keep the new ids as context
  // so that decoders that look at neighbours (leading-space strip, byte runs) see them.
  ids_.push_back(id);
  std::string text = tok_.decode(ids_, skip_special_);
  static constexpr std::string_view kReplacement = "\xEF\xBF\xBD";
  const bool incomplete = text.size() >= 3 && std::string_view(text).substr(text.size() - 3) == kReplacement;
  if (text.size() <= prefix_.size() || incomplete || text.compare(0, prefix_.size(), prefix_) != 0) return {};
  std::string out = text.substr(prefix_.size());
  ids_.erase(ids_.begin(), ids_.begin() + static_cast<std::ptrdiff_t>(prefix_index_));
  prefix_ = tok_.decode(ids_, skip_special_);
  prefix_index_ = ids_.size();
  return out;
}

std::string StreamDecoder::flush() {
  std::string text = tok_.decode(ids_, skip_special_);
  std::string out;
  if (text.size() > prefix_.size() && text.compare(0, prefix_.size(), prefix_) == 0) out = text.substr(prefix_.size());
  ids_.clear();
  prefix_.clear();
  prefix_index_ = 0;
  return out;
}

}  // namespace pdvm::tokenizer
