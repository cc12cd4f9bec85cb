// UTF-8 helpers for the tokenizer: validation with the offending offset, code point iteration,
// lossy conversion (U+FFFD for each maximal invalid subpart, as Rust's from_utf8_lossy), Unicode
// White_Space (Rust's char::is_whitespace), NFC (via ICU), and the GPT-2 byte <-> unicode map.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

#include "pdvm/status.h"

namespace pdvm::tokenizer {

// Length of the valid UTF-8 sequence starting at s[pos], or 0 if it is invalid or truncated.
size_t utf8_seq_len(std::string_view s, size_t pos);
// Decodes the code point at s[pos] (must be valid, see utf8_seq_len) and advances pos.
char32_t utf8_next(std::string_view s, size_t& pos);
void append_utf8(std::string& out, char32_t cp);
// Ok, or kInvalidArgument "invalid UTF-8 at byte N (0xXX)".
Status validate_utf8(std::string_view s, std::string_view what);
// Bytes -> valid UTF-8; each maximal invalid subpart becomes U+FFFD.
std::string utf8_lossy(std::string_view bytes);
// Rust char::is_whitespace (Unicode White_Space property).
bool is_unicode_whitespace(char32_t cp);
// NFC via ICU; input must be valid UTF-8. Returns the input unchanged when it is already NFC.
Result<std::string> nfc_normalize(std::string_view s);

// GPT-2's reversible byte -> printable code point map used by byte-level BPE.
struct ByteUnicodeMap {
  std::array<char32_t, 256> byte_to_cp{};
  ByteUnicodeMap();
  // Maps a code point back to its byte; returns -1 if cp is not in the map.
  int cp_to_byte(char32_t cp) const;
};
const ByteUnicodeMap& byte_unicode_map();

}  // namespace pdvm::tokenizer
