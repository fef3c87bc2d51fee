// The text stages of transformers' slow CLIPTokenizer that come before BPE, for the path taken
// when ftfy is NOT installed (the one the golden cases and diffusers' usual setup use).
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace sdrt {

// " ".join(BasicTokenizer(strip_accents=False, do_split_on_punc=False).tokenize(text)):
// drops control/format/unassigned characters, NUL and U+FFFD; turns whitespace into spaces; puts
// spaces around CJK ideographs; NFC; splits on whitespace; lowercases each word. Accents are kept.
std::u32string clean_text_like_bert(std::u32string_view text);

// re.findall of CLIP's pattern, compiled case-insensitively with the `regex` module:
//   <\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+
std::vector<std::u32string> split_clip_words(std::u32string_view text);

}  // namespace sdrt
