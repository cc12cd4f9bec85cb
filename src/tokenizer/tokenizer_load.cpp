// Builds TokenizerImpl from tokenizer.json (+ tokenizer_config.json) or from a GGUF TokenizerSpec.
// Every field is checked: unknown model/normaliser/pre-tokenizer/decoder types and merges naming
// tokens that are not in the vocab are reported as a Status naming what was found.
#include <zlib.h>

#include <algorithm>
#include <cstdio>
#include <map>
#include <nlohmann/json.hpp>

#include "tokenizer/tokenizer_impl.h"
#include "tokenizer/unicode_util.h"

namespace pdvm::tokenizer {

using nlohmann::json;

// --- added-token trie ----------------------------------------------------------------------------

void AddedTokenMatcher::add(const std::string& content, int index) {
  if (content.empty()) return;
  int node = 0;
  for (char ch : content) {
    const auto c = static_cast<unsigned char>(ch);
    int child = -1;
    for (const auto& [k, v] : nodes_[node].children) if (k == c) { child = v; break; }
    if (child < 0) {
      child = static_cast<int>(nodes_.size());
      nodes_[node].children.emplace_back(c, child);
      nodes_.emplace_back();
    }
    node = child;
  }
  if (nodes_[node].token < 0) nodes_[node].token = index;  // first definition wins
  first_[static_cast<unsigned char>(content[0])] = true;
}

int AddedTokenMatcher::longest_at(std::string_view text, size_t pos, size_t& len) const {
  int node = 0, best = -1;
  for (size_t i = pos; i < text.size(); ++i) {
    const auto c = static_cast<unsigned char>(text[i]);
    int child = -1;
    for (const auto& [k, v] : nodes_[node].children) if (k == c) { child = v; break; }
    if (child < 0) break;
    node = child;
    if (nodes_[node].token >= 0) { best = nodes_[node].token; len = i + 1 - pos; }
  }
  return best;
}

// --- shared finishing ----------------------------------------------------------------------------

Status TokenizerImpl::finish() {
  const size_t n = id_to_text.size();
  special.assign(n, 0);
  for (size_t i = 0; i < added.size(); ++i) {
    const AddedToken& a = added[i];
    if (a.special) special[a.id] = 1;
    (a.normalized && !normalizer.empty() ? normalized_matcher : raw_matcher).add(a.content, static_cast<int>(i));
  }
  // End-of-generation ids: the declared eos, then the end-of-turn specials of the supported chat
  // formats when present (Llama-3 <|eot_id|>, ChatML <|im_end|>, Phi <|end|>).
  for (const char* name : {"<|eot_id|>", "<|eom_id|>", "<|im_end|>", "<|end|>", "<|endoftext|>", "<|end_of_text|>"}) {
    auto it = text_to_id.find(name);
    if (it == text_to_id.end() || !special[it->second]) continue;
    if (std::find(eos_ids.begin(), eos_ids.end(), it->second) == eos_ids.end()) eos_ids.push_back(it->second);
  }
  if (bos_id >= static_cast<int32_t>(n)) return corrupt("bos id " + std::to_string(bos_id) + " >= vocab size " + std::to_string(n));
  for (int32_t e : eos_ids)
    if (e < 0 || e >= static_cast<int32_t>(n)) return corrupt("eos id " + std::to_string(e) + " outside vocab of " + std::to_string(n));
  if (kind == ModelKind::kByteLevelBpe) {
    const ByteUnicodeMap& m = byte_unicode_map();
    for (int b = 0; b < 256; ++b) {
      std::string s;
      append_utf8(s, m.byte_to_cp[b]);
      // Trained byte-level vocabs may lack bytes that never occur (SmolLM2 lacks some control
      // bytes); tokenizers then emits unk_token, or nothing when there is none.
      auto it = text_to_id.find(s);
      byte_id[b] = it == text_to_id.end() ? -1 : it->second;
    }
    // Raw bytes of every model token, for whole-word lookups (ignore_merges).
    raw_vocab.reserve(n);
    for (size_t id = 0; id < n; ++id) {
      const std::string& tok = id_to_text[id];
      std::string raw;
      size_t pos = 0;
      bool ok = true;
      while (pos < tok.size() && ok) {
        if (utf8_seq_len(tok, pos) == 0) { ok = false; break; }
        const int b = m.cp_to_byte(utf8_next(tok, pos));
        if (b < 0) ok = false;
        else raw += static_cast<char>(b);
      }
      if (ok && !raw.empty() && !special[id]) raw_vocab.emplace(std::move(raw), static_cast<int32_t>(id));
    }
  } else {
    fallback_id.fill(-1);
    if (byte_fallback) {
      for (int b = 0; b < 256; ++b) {
        char name[8];
        std::snprintf(name, sizeof(name), "<0x%02X>", b);
        auto it = text_to_id.find(name);
        if (it != text_to_id.end()) fallback_id[b] = it->second;
      }
    }
  }
  return Status::ok();
}

// --- tokenizer.json ------------------------------------------------------------------------------

namespace {

std::string token_content(const json& j) {
  if (j.is_string()) return j.get<std::string>();
  if (j.is_object() && j.contains("content") && j["content"].is_string()) return j["content"].get<std::string>();
  return {};
}

Status parse_normalizer(const json& j, std::vector<NormalizeStep>& out) {
  if (j.is_null()) return Status::ok();
  const std::string t = j.value("type", "");
  if (t == "Sequence") {
    for (const auto& s : j.at("normalizers")) PDVM_TRY(parse_normalizer(s, out));
  } else if (t == "NFC") {
    out.push_back({NormalizeStep::Kind::kNfc, "", ""});
  } else if (t == "Prepend") {
    out.push_back({NormalizeStep::Kind::kPrepend, j.at("prepend").get<std::string>(), ""});
  } else if (t == "Replace") {
    const auto& p = j.at("pattern");
    if (!p.contains("String")) return unsupported("normalizer Replace with a Regex pattern is not supported");
    const std::string from = p["String"].get<std::string>();
    if (from.empty()) return corrupt("normalizer Replace with an empty pattern");
    out.push_back({NormalizeStep::Kind::kReplace, from, j.at("content").get<std::string>()});
  } else {
    return unsupported("normalizer type '" + t + "' is not supported (supported: Sequence, NFC, Prepend, Replace)");
  }
  return Status::ok();
}

Status parse_decoder(const json& j, std::vector<DecodeStep>& out) {
  if (j.is_null()) return Status::ok();
  const std::string t = j.value("type", "");
  if (t == "Sequence") {
    for (const auto& s : j.at("decoders")) PDVM_TRY(parse_decoder(s, out));
  } else if (t == "ByteLevel") {
    out.push_back({DecodeStep::Kind::kByteLevel, "", "", 0, 0});
  } else if (t == "Replace") {
    const auto& p = j.at("pattern");
    if (!p.contains("String")) return unsupported("decoder Replace with a Regex pattern is not supported");
    out.push_back({DecodeStep::Kind::kReplace, p["String"].get<std::string>(), j.at("content").get<std::string>(), 0, 0});
  } else if (t == "ByteFallback") {
    out.push_back({DecodeStep::Kind::kByteFallback, "", "", 0, 0});
  } else if (t == "Fuse") {
    out.push_back({DecodeStep::Kind::kFuse, "", "", 0, 0});
  } else if (t == "Strip") {
    out.push_back({DecodeStep::Kind::kStrip, j.at("content").get<std::string>(), "", j.value("start", 0), j.value("stop", 0)});
  } else {
    return unsupported("decoder type '" + t + "' is not supported (supported: Sequence, ByteLevel, Replace, ByteFallback, Fuse, Strip)");
  }
  return Status::ok();
}

Result<std::shared_ptr<TokenizerImpl>> parse_json(const json& j, const json& cfg) {
  auto impl = std::make_shared<TokenizerImpl>();
  TokenizerImpl& t = *impl;
  if (!j.is_object() || !j.contains("model")) return corrupt("tokenizer.json has no 'model' object");
  const json& m = j["model"];
  const std::string mtype = m.value("type", "");
  if (mtype != "BPE")
    return unsupported("tokenizer model type '" + mtype + "' is not supported (supported: BPE)");
  if (!m.value("dropout", json()).is_null()) return unsupported("BPE dropout is not supported");
  for (const char* k : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    const json v = m.value(k, json());
    if (!v.is_null() && !(v.is_string() && v.get<std::string>().empty()))
      return unsupported(std::string("BPE ") + k + " is not supported");
  }
  PDVM_TRY(parse_normalizer(j.value("normalizer", json()), t.normalizer));
  PDVM_ASSIGN_OR_RETURN(t.pre, PreTokenizer::from_json(j.value("pre_tokenizer", json())));
  PDVM_TRY(parse_decoder(j.value("decoder", json()), t.decoder));
  t.kind = t.pre.byte_level() ? TokenizerImpl::ModelKind::kByteLevelBpe : TokenizerImpl::ModelKind::kCharBpe;
  t.ignore_merges = m.value("ignore_merges", false);
  t.byte_fallback = m.value("byte_fallback", false);
  t.fuse_unk = m.value("fuse_unk", false);
  if (t.kind == TokenizerImpl::ModelKind::kByteLevelBpe && t.byte_fallback)
    return unsupported("byte_fallback together with a ByteLevel pre-tokenizer is not supported");

  // Vocab: ids may be sparse; the table covers max id + 1 (added tokens may extend it).
  const json& vocab = m.at("vocab");
  if (!vocab.is_object()) return corrupt("model.vocab is not an object");
  int64_t max_id = -1;
  for (auto it = vocab.begin(); it != vocab.end(); ++it) {
    if (!it.value().is_number_integer()) return corrupt("model.vocab['" + it.key() + "'] is not an integer id");
    const int64_t id = it.value().get<int64_t>();
    if (id < 0 || id > (1 << 24)) return corrupt("model.vocab['" + it.key() + "'] has id " + std::to_string(id) + " outside [0, 2^24]");
    max_id = std::max(max_id, id);
  }
  const json added = j.value("added_tokens", json::array());
  for (const auto& a : added) {
    const int64_t id = a.value("id", int64_t{-1});
    if (id < 0 || id > (1 << 24)) return corrupt("added token '" + a.value("content", "") + "' has id " + std::to_string(id));
    max_id = std::max(max_id, id);
  }
  t.id_to_text.assign(static_cast<size_t>(max_id + 1), std::string());
  t.text_to_id.reserve(static_cast<size_t>(max_id + 1));
  for (auto it = vocab.begin(); it != vocab.end(); ++it) {
    const auto id = it.value().get<int32_t>();
    t.id_to_text[id] = it.key();
    t.text_to_id.emplace(it.key(), id);
  }

  // Merges: "a b" strings or ["a", "b"] pairs; rank = line index.
  const json& merges = m.value("merges", json::array());
  t.merges.reserve(merges.size());
  std::string left, right;
  for (size_t i = 0; i < merges.size(); ++i) {
    const json& mg = merges[i];
    if (mg.is_string()) {
      const std::string s = mg.get<std::string>();
      const size_t sp = s.find(' ', 1);  // tokens never start with a space here; the split is after the first token
      if (sp == std::string::npos) return corrupt("merge " + std::to_string(i) + " '" + s + "' is not 'a b'");
      left = s.substr(0, sp);
      right = s.substr(sp + 1);
    } else if (mg.is_array() && mg.size() == 2 && mg[0].is_string() && mg[1].is_string()) {
      left = mg[0].get<std::string>();
      right = mg[1].get<std::string>();
    } else {
      return corrupt("merge " + std::to_string(i) + " is neither 'a b' nor [a, b]");
    }
    auto li = t.text_to_id.find(left), ri = t.text_to_id.find(right), mi = t.text_to_id.find(left + right);
    const std::string& bad = li == t.text_to_id.end() ? left : ri == t.text_to_id.end() ? right : left + right;
    if (li == t.text_to_id.end() || ri == t.text_to_id.end() || mi == t.text_to_id.end())
      return corrupt("merge " + std::to_string(i) + " '" + left + " " + right + "' names token '" + bad +
                     "' that is not in the vocab");
    t.merges.add(li->second, ri->second, static_cast<uint32_t>(i), mi->second);
  }

  // Added tokens (they override vocab entries of the same text, as tokenizers does).
  for (const auto& a : added) {
    AddedToken tok;
    tok.content = a.value("content", "");
    tok.id = a.value("id", int32_t{-1});
    tok.special = a.value("special", false);
    tok.lstrip = a.value("lstrip", false);
    tok.rstrip = a.value("rstrip", false);
    tok.normalized = a.value("normalized", !tok.special);
    if (a.value("single_word", false))
      return unsupported("added token '" + tok.content + "' has single_word = true, which is not supported");
    if (tok.content.empty()) return corrupt("added token " + std::to_string(tok.id) + " has empty content");
    t.id_to_text[tok.id] = tok.content;
    t.text_to_id[tok.content] = tok.id;
    t.added.push_back(tok);
  }
  {
    const json unk = m.value("unk_token", json());
    if (unk.is_string()) {
      auto it = t.text_to_id.find(unk.get<std::string>());
      if (it == t.text_to_id.end()) return corrupt("unk_token '" + unk.get<std::string>() + "' is not in the vocab");
      t.unk_id = it->second;
    }
  }

  // Post-processing: TemplateProcessing decides BOS/EOS unless tokenizer_config says otherwise.
  const json post = j.value("post_processor", json());
  std::string bos_text, eos_text;
  if (post.is_object()) {
    const std::string pt = post.value("type", "");
    if (pt == "TemplateProcessing") {
      const json single = post.value("single", json::array());
      auto special_id = [&](const json& piece) -> std::string {
        return piece.contains("SpecialToken") ? piece["SpecialToken"].value("id", "") : std::string();
      };
      if (!single.empty()) {
        bos_text = special_id(single.front());
        if (single.size() > 1) eos_text = special_id(single.back());
      }
      t.add_bos = !bos_text.empty();
      t.add_eos = !eos_text.empty();
    } else if (pt != "ByteLevel") {
      return unsupported("post_processor type '" + pt + "' is not supported (supported: TemplateProcessing, ByteLevel)");
    }
  }
  if (cfg.is_object()) {
    if (cfg.contains("add_bos_token") && cfg["add_bos_token"].is_boolean()) t.add_bos = cfg["add_bos_token"].get<bool>();
    if (cfg.contains("add_eos_token") && cfg["add_eos_token"].is_boolean()) t.add_eos = cfg["add_eos_token"].get<bool>();
    if (cfg.contains("bos_token")) { const std::string s = token_content(cfg["bos_token"]); if (!s.empty()) bos_text = s; }
    if (cfg.contains("eos_token")) { const std::string s = token_content(cfg["eos_token"]); if (!s.empty()) eos_text = s; }
    if (cfg.contains("chat_template") && cfg["chat_template"].is_string()) t.chat_template = cfg["chat_template"].get<std::string>();
  }
  if (!bos_text.empty()) {
    auto it = t.text_to_id.find(bos_text);
    if (it == t.text_to_id.end()) return corrupt("bos token '" + bos_text + "' is not in the vocab");
    t.bos_id = it->second;
  }
  if (!eos_text.empty()) {
    auto it = t.text_to_id.find(eos_text);
    if (it == t.text_to_id.end()) return corrupt("eos token '" + eos_text + "' is not in the vocab");
    t.eos_ids.push_back(it->second);
  }
  PDVM_TRY(t.finish());
  return impl;
}

}  // namespace

Result<std::shared_ptr<TokenizerImpl>> load_from_json(std::string_view json_text, std::string_view config_json) {
  json j, cfg;
  try {
    j = json::parse(json_text);
  } catch (const json::exception& e) {
    return corrupt(std::string("tokenizer.json is not valid JSON: ") + e.what());
  }
  if (!config_json.empty()) {
    try {
      cfg = json::parse(config_json);
    } catch (const json::exception& e) {
      return corrupt(std::string("tokenizer_config.json is not valid JSON: ") + e.what());
    }
  }
  try {
    return parse_json(j, cfg);
  } catch (const json::exception& e) {
    // A field of the wrong JSON type (nlohmann throws on get<> / at()).
    return corrupt(std::string("tokenizer.json has an unexpected field: ") + e.what());
  }
}

// --- GGUF spec -----------------------------------------------------------------------------------

Result<std::shared_ptr<TokenizerImpl>> load_from_spec(const TokenizerSpec& spec) {
  auto impl = std::make_shared<TokenizerImpl>();
  TokenizerImpl& t = *impl;
  const size_t n = spec.tokens.size();
  if (n == 0) return corrupt("GGUF tokenizer.ggml.tokens is empty");
  if (!spec.token_types.empty() && spec.token_types.size() != n)
    return corrupt("GGUF tokenizer.ggml.token_type has " + std::to_string(spec.token_types.size()) +
                   " entries, expected " + std::to_string(n));
  auto type_of = [&](size_t i) { return spec.token_types.empty() ? 1 : spec.token_types[i]; };
  t.id_to_text = spec.tokens;
  t.text_to_id.reserve(n);
  for (size_t i = 0; i < n; ++i) t.text_to_id.emplace(spec.tokens[i], static_cast<int32_t>(i));
  t.chat_template = spec.chat_template;
  auto check_id = [&](int32_t id, const char* what) -> Status {
    if (id >= static_cast<int32_t>(n)) return corrupt(std::string("GGUF tokenizer.ggml.") + what + " " + std::to_string(id) + " >= vocab size " + std::to_string(n));
    return Status::ok();
  };
  PDVM_TRY(check_id(spec.bos_id, "bos_token_id"));
  PDVM_TRY(check_id(spec.eos_id, "eos_token_id"));
  PDVM_TRY(check_id(spec.unk_id, "unknown_token_id"));
  t.bos_id = spec.bos_id;
  if (spec.eos_id >= 0) t.eos_ids.push_back(spec.eos_id);
  t.add_bos = spec.add_bos;
  t.add_eos = spec.add_eos;

  // Control (3) and unknown (2) tokens are special; user-defined (4) ones match in text too.
  for (size_t i = 0; i < n; ++i) {
    const int32_t ty = type_of(i);
    if (ty == 2 || ty == 3 || ty == 4) {
      AddedToken a;
      a.content = spec.tokens[i];
      a.id = static_cast<int32_t>(i);
      a.special = ty != 4;
      if (!a.content.empty()) t.added.push_back(a);
    }
  }

  if (spec.model == "gpt2") {
    t.kind = TokenizerImpl::ModelKind::kByteLevelBpe;
    PDVM_ASSIGN_OR_RETURN(t.pre, PreTokenizer::from_gguf_pre(spec.pre));
    t.decoder.push_back({DecodeStep::Kind::kByteLevel, "", "", 0, 0});
    t.merges.reserve(spec.merges.size());
    for (size_t i = 0; i < spec.merges.size(); ++i) {
      const std::string& s = spec.merges[i];
      const size_t sp = s.find(' ', 1);
      if (sp == std::string::npos) return corrupt("GGUF merge " + std::to_string(i) + " '" + s + "' is not 'a b'");
      const std::string l = s.substr(0, sp), r = s.substr(sp + 1);
      auto li = t.text_to_id.find(l), ri = t.text_to_id.find(r), mi = t.text_to_id.find(l + r);
      if (li == t.text_to_id.end() || ri == t.text_to_id.end() || mi == t.text_to_id.end())
        return corrupt("GGUF merge " + std::to_string(i) + " '" + s + "' names a token that is not in the vocab");
      t.merges.add(li->second, ri->second, static_cast<uint32_t>(i), mi->second);
    }
  } else if (spec.model == "llama") {
    // SentencePiece BPE by score: any two adjacent pieces whose concatenation is a token merge,
    // highest score first, leftmost on ties. Turned into ranks = dense rank of the merged score.
    t.kind = TokenizerImpl::ModelKind::kCharBpe;
    if (spec.scores.size() != n)
      return corrupt("GGUF tokenizer.ggml.scores has " + std::to_string(spec.scores.size()) + " entries, expected " + std::to_string(n));
    t.byte_fallback = true;
    t.unk_id = spec.unk_id;
    t.normalizer.push_back({NormalizeStep::Kind::kReplace, " ", "\xE2\x96\x81"});
    if (spec.add_space_prefix) t.normalizer.insert(t.normalizer.begin(), {NormalizeStep::Kind::kPrepend, "\xE2\x96\x81", ""});
    t.decoder.push_back({DecodeStep::Kind::kReplace, "\xE2\x96\x81", " ", 0, 0});
    t.decoder.push_back({DecodeStep::Kind::kByteFallback, "", "", 0, 0});
    t.decoder.push_back({DecodeStep::Kind::kFuse, "", "", 0, 0});
    if (spec.add_space_prefix) t.decoder.push_back({DecodeStep::Kind::kStrip, " ", "", 1, 0});
    std::vector<float> distinct(spec.scores);
    std::sort(distinct.begin(), distinct.end(), std::greater<float>());
    distinct.erase(std::unique(distinct.begin(), distinct.end()), distinct.end());
    for (size_t id = 0; id < n; ++id) {
      const int32_t ty = type_of(id);
      if (ty != 1 && ty != 4) continue;  // only normal / user-defined pieces are merge results
      const std::string& tok = spec.tokens[id];
      const auto rank = static_cast<uint32_t>(std::lower_bound(distinct.begin(), distinct.end(), spec.scores[id],
                                                               std::greater<float>()) - distinct.begin());
      for (size_t cut = 1; cut < tok.size(); ++cut) {
        if ((static_cast<unsigned char>(tok[cut]) & 0xC0) == 0x80) continue;  // not a char boundary
        auto li = t.text_to_id.find(tok.substr(0, cut));
        if (li == t.text_to_id.end()) continue;
        auto ri = t.text_to_id.find(tok.substr(cut));
        if (ri == t.text_to_id.end()) continue;
        t.merges.add(li->second, ri->second, rank, static_cast<int32_t>(id));
      }
    }
  } else {
    return unsupported("GGUF tokenizer.ggml.model '" + spec.model + "' is not supported (supported: gpt2, llama)");
  }
  PDVM_TRY(t.finish());
  return impl;
}

// --- files ---------------------------------------------------------------------------------------

Result<std::string> read_maybe_gz(const std::string& path) {
  // gzopen reads plain files as they are, so one path serves both.
  gzFile f = gzopen(path.c_str(), "rb");
  if (!f) return not_found(path + ": cannot open");
  std::string out;
  char buf[1 << 16];
  int n;
  while ((n = gzread(f, buf, sizeof(buf))) > 0) out.append(buf, static_cast<size_t>(n));
  int errnum = 0;
  const char* msg = gzerror(f, &errnum);
  const std::string err = errnum != Z_OK && errnum != Z_STREAM_END ? msg : "";
  gzclose(f);
  if (n < 0 || !err.empty()) return io_error(path + ": read failed: " + err);
  return out;
}

}  // namespace pdvm::tokenizer
