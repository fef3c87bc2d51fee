#include "tokenizer/clip_pretokenize.h"

#include <array>

#include "tokenizer/unicode_text.h"

namespace sdrt {
namespace {

using unicode::has_flag;

// BERT _clean_text followed by _tokenize_chinese_chars.
std::u32string drop_controls_and_space_out_cjk(std::u32string_view text) {
  std::u32string out;
  out.reserve(text.size());
  for (char32_t c : text) {
    uint16_t flags = unicode::flags_of(c);
    if (flags & unicode::kDropped) continue;
    if (flags & unicode::kBlank) {
      out.push_back(U' ');
    } else if (flags & unicode::kCjkIdeograph) {
      out.append({U' ', c, U' '});
    } else {
      out.push_back(c);
    }
  }
  return out;
}

// Python's str.split() with no argument.
std::vector<std::u32string_view> split_on_whitespace(std::u32string_view text) {
  std::vector<std::u32string_view> words;
  size_t i = 0;
  while (i < text.size()) {
    while (i < text.size() && has_flag(text[i], unicode::kSplitSpace)) ++i;
    size_t start = i;
    while (i < text.size() && !has_flag(text[i], unicode::kSplitSpace)) ++i;
    if (i > start) words.push_back(text.substr(start, i - start));
  }
  return words;
}

// regex's \s is the White_Space property: str.isspace() less U+001C..U+001F. (Those are
// control characters the BERT cleanup has already removed, but the distinction costs nothing.)
bool is_regex_space(char32_t c) { return has_flag(c, unicode::kSplitSpace) && !(c >= 0x1C && c <= 0x1F); }

bool is_letter(char32_t c) { return has_flag(c, unicode::kLetter); }
bool is_number(char32_t c) { return has_flag(c, unicode::kNumber); }
bool is_other_symbol(char32_t c) {
  return !is_regex_space(c) && !is_letter(c) && !is_number(c) && !has_flag(c, unicode::kSkippedByClipRegex);
}

// One character of a literal alternative under IGNORECASE (simple case folding). The text is
// lowercase by now, but U+017F (long s) still folds to 's'.
bool matches_ignoring_case(char32_t text_char, char32_t pattern_char) {
  if (text_char == pattern_char) return true;
  if (pattern_char >= U'a' && pattern_char <= U'z' && text_char == pattern_char - (U'a' - U'A')) return true;
  return pattern_char == U's' && text_char == 0x017F;
}

bool literal_at(std::u32string_view text, size_t at, std::u32string_view literal) {
  if (text.size() - at < literal.size()) return false;
  for (size_t i = 0; i < literal.size(); ++i) {
    if (!matches_ignoring_case(text[at + i], literal[i])) return false;
  }
  return true;
}

// Length of the literal alternative (special token or contraction) matching at `at`, else 0.
// Tried in the pattern's order; none is a prefix of another, so the order decides nothing.
size_t literal_match_length(std::u32string_view text, size_t at) {
  static constexpr std::array<std::u32string_view, 9> kLiterals = {
      U"<|startoftext|>", U"<|endoftext|>", U"'s", U"'t", U"'re", U"'ve", U"'m", U"'ll", U"'d"};
  for (std::u32string_view literal : kLiterals) {
    if (literal_at(text, at, literal)) return literal.size();
  }
  return 0;
}

template <typename Predicate>
size_t run_length(std::u32string_view text, size_t at, Predicate belongs) {
  size_t end = at;
  while (end < text.size() && belongs(text[end])) ++end;
  return end - at;
}

}  // namespace

std::u32string clean_text_like_bert(std::u32string_view text) {
  std::u32string normalized = unicode::to_nfc(drop_controls_and_space_out_cjk(text));
  std::u32string joined;
  joined.reserve(normalized.size());
  for (std::u32string_view word : split_on_whitespace(normalized)) {
    if (!joined.empty()) joined.push_back(U' ');
    joined += unicode::to_lower(word);  // per word: the final-sigma rule sees only its own word
  }
  return joined;
}

std::vector<std::u32string> split_clip_words(std::u32string_view text) {
  std::vector<std::u32string> words;
  size_t at = 0;
  while (at < text.size()) {
    size_t length = literal_match_length(text, at);
    if (length == 0 && is_letter(text[at])) length = run_length(text, at, is_letter);
    if (length == 0 && is_number(text[at])) length = 1;
    if (length == 0 && is_other_symbol(text[at])) length = run_length(text, at, is_other_symbol);
    if (length == 0) {  // whitespace, or a character no alternative accepts
      ++at;
      continue;
    }
    words.emplace_back(text.substr(at, length));
    at += length;
  }
  return words;
}

}  // namespace sdrt
