// UTF-8 helpers, NFC through ICU, and the GPT-2 byte <-> unicode map (see unicode_util.h).
#include "tokenizer/unicode_util.h"

#include <unicode/normalizer2.h>
#include <unicode/unistr.h>

#include <cstdio>

namespace pdvm::tokenizer {

size_t utf8_seq_len(std::string_view s, size_t pos) {
  const size_t n = s.size();
  const auto b0 = static_cast<unsigned char>(s[pos]);
  if (b0 < 0x80) return 1;
  auto cont = [&](size_t i) { return i < n && (static_cast<unsigned char>(s[i]) & 0xC0) == 0x80; };
  auto byte = [&](size_t i) { return static_cast<unsigned char>(s[i]); };
  if (b0 >= 0xC2 && b0 <= 0xDF) return cont(pos + 1) ? 2 : 0;
  if (b0 >= 0xE0 && b0 <= 0xEF) {
    if (!cont(pos + 1) || !cont(pos + 2)) return 0;
    const unsigned b1 = byte(pos + 1);
    if (b0 == 0xE0 && b1 < 0xA0) return 0;   // overlong
    if (b0 == 0xED && b1 >= 0xA0) return 0;  // surrogate
    return 3;
  }
  if (b0 >= 0xF0 && b0 <= 0xF4) {
    if (!cont(pos + 1) || !cont(pos + 2) || !cont(pos + 3)) return 0;
    const unsigned b1 = byte(pos + 1);
    if (b0 == 0xF0 && b1 < 0x90) return 0;   // overlong
    if (b0 == 0xF4 && b1 >= 0x90) return 0;  // > U+10FFFF
    return 4;
  }
  return 0;
}

char32_t utf8_next(std::string_view s, size_t& pos) {
  const auto b0 = static_cast<unsigned char>(s[pos]);
  auto c = [&](size_t i) { return static_cast<char32_t>(static_cast<unsigned char>(s[pos + i]) & 0x3F); };
  char32_t cp;
  if (b0 < 0x80) { cp = b0; pos += 1; }
  else if (b0 < 0xE0) { cp = ((b0 & 0x1Fu) << 6) | c(1); pos += 2; }
  else if (b0 < 0xF0) { cp = ((b0 & 0x0Fu) << 12) | (c(1) << 6) | c(2); pos += 3; }
  else { cp = ((b0 & 0x07u) << 18) | (c(1) << 12) | (c(2) << 6) | c(3); pos += 4; }
  return cp;
}

void append_utf8(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

Status validate_utf8(std::string_view s, std::string_view what) {
  size_t pos = 0;
  while (pos < s.size()) {
    // ASCII fast path: 8 bytes at a time.
    while (pos + 8 <= s.size()) {
      uint64_t w;
      __builtin_memcpy(&w, s.data() + pos, 8);
      if (w & 0x8080808080808080ull) break;
      pos += 8;
    }
    if (pos >= s.size()) break;
    const size_t len = utf8_seq_len(s, pos);
    if (len == 0) {
      char buf[96];
      std::snprintf(buf, sizeof(buf), "invalid UTF-8 at byte %zu (0x%02X) of %zu", pos,
                    static_cast<unsigned>(static_cast<unsigned char>(s[pos])), s.size());
      return invalid_argument(std::string(what) + ": " + buf);
    }
    pos += len;
  }
  return Status::ok();
}

std::string utf8_lossy(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size());
  size_t pos = 0;
  while (pos < bytes.size()) {
    const size_t len = utf8_seq_len(bytes, pos);
    if (len > 0) {
      out.append(bytes.substr(pos, len));
      pos += len;
      continue;
    }
    // Maximal subpart: the longest prefix of a valid sequence (Unicode 6.3 "best practice").
    const auto b0 = static_cast<unsigned char>(bytes[pos]);
    size_t skip = 1;
    auto in = [&](size_t i, unsigned lo, unsigned hi) {
      if (i >= bytes.size()) return false;
      const auto b = static_cast<unsigned char>(bytes[i]);
      return b >= lo && b <= hi;
    };
    if (b0 >= 0xE0 && b0 <= 0xEF) {
      const unsigned lo = b0 == 0xE0 ? 0xA0 : 0x80, hi = b0 == 0xED ? 0x9F : 0xBF;
      if (in(pos + 1, lo, hi)) skip = in(pos + 2, 0x80, 0xBF) ? 3 : 2;
    } else if (b0 >= 0xF0 && b0 <= 0xF4) {
      const unsigned lo = b0 == 0xF0 ? 0x90 : 0x80, hi = b0 == 0xF4 ? 0x8F : 0xBF;
      if (in(pos + 1, lo, hi)) skip = in(pos + 2, 0x80, 0xBF) ? 3 : 2;
    }
    out += "\xEF\xBF\xBD";
    pos += skip;
  }
  return out;
}

bool is_unicode_whitespace(char32_t cp) {
  switch (cp) {
    case 0x09: case 0x0A: case 0x0B: case 0x0C: case 0x0D: case 0x20: case 0x85: case 0xA0:
    case 0x1680: case 0x2028: case 0x2029: case 0x202F: case 0x205F: case 0x3000:
      return true;
    default:
      return cp >= 0x2000 && cp <= 0x200A;
  }
}

Result<std::string> nfc_normalize(std::string_view s) {
  UErrorCode err = U_ZERO_ERROR;
  const icu::Normalizer2* nfc = icu::Normalizer2::getNFCInstance(err);
  if (U_FAILURE(err)) return Status(StatusCode::kInternal, std::string("ICU NFC unavailable: ") + u_errorName(err));
  // Quick check on the UTF-8 bytes first: ASCII-only text is always NFC.
  bool ascii = true;
  for (char c : s) if (static_cast<unsigned char>(c) >= 0x80) { ascii = false; break; }
  if (ascii) return std::string(s);
  icu::UnicodeString u = icu::UnicodeString::fromUTF8(icu::StringPiece(s.data(), static_cast<int32_t>(s.size())));
  if (nfc->isNormalized(u, err) && U_SUCCESS(err)) return std::string(s);
  err = U_ZERO_ERROR;
  icu::UnicodeString n = nfc->normalize(u, err);
  if (U_FAILURE(err)) return Status(StatusCode::kInternal, std::string("ICU NFC failed: ") + u_errorName(err));
  std::string out;
  n.toUTF8String(out);
  return out;
}

ByteUnicodeMap::ByteUnicodeMap() {
  // Printable Latin-1 bytes map to themselves; the other 68 bytes map to U+0100 upwards in order.
  char32_t next = 256;
  for (int b = 0; b < 256; ++b) {
    const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
    byte_to_cp[b] = printable ? static_cast<char32_t>(b) : next++;
  }
}

int ByteUnicodeMap::cp_to_byte(char32_t cp) const {
  if (cp < 256) {
    return byte_to_cp[cp] == cp ? static_cast<int>(cp) : -1;
  }
  if (cp < 256 + 68) {
    for (int b = 0; b < 256; ++b) if (byte_to_cp[b] == cp) return b;
  }
  return -1;
}

const ByteUnicodeMap& byte_unicode_map() {
  static const ByteUnicodeMap kMap;
  return kMap;
}

}  // namespace pdvm::tokenizer
