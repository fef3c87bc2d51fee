// The few Unicode text operations the CLIP tokenizer needs, each defined as Python 3.11 does it
// (the reference tokenizer is pure Python), driven by the generated tables in unicode_tables.h.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "tokenizer/unicode_tables.h"

namespace sdrt::unicode {

// The CharFlag bits of one code point.
uint16_t flags_of(char32_t code_point);
inline bool has_flag(char32_t code_point, CharFlag flag) { return (flags_of(code_point) & flag) != 0; }

// Strict UTF-8 decoding (no overlongs, surrogates or values past U+10FFFF). Each invalid or
// truncated sequence becomes U+FFFD, as bytes.decode("utf-8", errors="replace") does, so any byte
// string can be tokenized; the BERT cleanup later drops U+FFFD.
std::u32string decode_utf8_lossy(std::string_view bytes);
void append_utf8(std::string& out, char32_t code_point);
std::string encode_utf8(std::u32string_view text);

// unicodedata.normalize("NFC", text).
std::u32string to_nfc(std::u32string_view text);

// str.lower(): full lowercase mappings (U+0130 becomes two code points) and the final-sigma rule,
// which looks at the whole of `text`.
std::u32string to_lower(std::u32string_view text);

}  // namespace sdrt::unicode
