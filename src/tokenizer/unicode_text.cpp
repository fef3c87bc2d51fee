#include "tokenizer/unicode_text.h"

#include <algorithm>
#include <iterator>

namespace sdrt::unicode {
namespace {

constexpr char32_t kReplacementChar = 0xFFFD;
constexpr char32_t kMaxCodePoint = 0x10FFFF;
constexpr char32_t kCapitalSigma = 0x03A3;
constexpr char32_t kSmallSigma = 0x03C3;
constexpr char32_t kFinalSigma = 0x03C2;

// Hangul syllables compose and decompose arithmetically (Unicode 3.12).
constexpr char32_t kHangulSBase = 0xAC00, kHangulLBase = 0x1100, kHangulVBase = 0x1161, kHangulTBase = 0x11A7;
constexpr char32_t kHangulLCount = 19, kHangulVCount = 21, kHangulTCount = 28;
constexpr char32_t kHangulNCount = kHangulVCount * kHangulTCount;
constexpr char32_t kHangulSCount = kHangulLCount * kHangulNCount;

// Every code point below this is its own NFC and has combining class 0.
constexpr char32_t kFirstCombiningMark = 0x300;

template <typename Range, typename Key, typename KeyOf>
auto find_sorted(const Range* begin, size_t count, Key key, KeyOf key_of) -> const Range* {
  const Range* end = begin + count;
  const Range* it = std::lower_bound(begin, end, key, [&](const Range& r, const Key& k) { return key_of(r) < k; });
  return (it != end && key_of(*it) == key) ? it : nullptr;
}

uint8_t combining_class(char32_t cp) {
  if (cp < kFirstCombiningMark) return 0;
  const CombiningClassRange* end = kCombiningClassRanges + kCombiningClassRangeCount;
  const CombiningClassRange* it = std::upper_bound(
      kCombiningClassRanges, end, cp, [](char32_t c, const CombiningClassRange& r) { return c < r.first; });
  if (it == kCombiningClassRanges) return 0;
  --it;
  return cp <= it->last ? it->combining_class : 0;
}

void append_decomposition(char32_t cp, std::u32string& out) {
  if (cp >= kHangulSBase && cp < kHangulSBase + kHangulSCount) {
    char32_t index = cp - kHangulSBase;
    out.push_back(kHangulLBase + index / kHangulNCount);
    out.push_back(kHangulVBase + (index % kHangulNCount) / kHangulTCount);
    if (index % kHangulTCount != 0) out.push_back(kHangulTBase + index % kHangulTCount);
    return;
  }
  const Decomposition* d =
      find_sorted(kDecompositions, kDecompositionCount, cp, [](const Decomposition& e) { return e.code_point; });
  if (d == nullptr) {
    out.push_back(cp);
    return;
  }
  out.append(kDecompositionData + d->offset, d->length);
}

// Stable sort of each run of non-starters by combining class (the canonical ordering algorithm).
void reorder_canonically(std::u32string& text) {
  size_t i = 0;
  while (i < text.size()) {
    if (combining_class(text[i]) == 0) {
      ++i;
      continue;
    }
    size_t run_end = i;
    while (run_end < text.size() && combining_class(text[run_end]) != 0) ++run_end;
    std::stable_sort(text.begin() + i, text.begin() + run_end,
                     [](char32_t a, char32_t b) { return combining_class(a) < combining_class(b); });
    i = run_end;
  }
}

// The primary composite of (first, second), or 0 when the pair does not compose.
char32_t compose_pair(char32_t first, char32_t second) {
  if (first >= kHangulLBase && first < kHangulLBase + kHangulLCount && second >= kHangulVBase &&
      second < kHangulVBase + kHangulVCount) {
    return kHangulSBase + ((first - kHangulLBase) * kHangulVCount + (second - kHangulVBase)) * kHangulTCount;
  }
  bool first_is_lv =
      first >= kHangulSBase && first < kHangulSBase + kHangulSCount && (first - kHangulSBase) % kHangulTCount == 0;
  if (first_is_lv && second > kHangulTBase && second < kHangulTBase + kHangulTCount) {
    return first + (second - kHangulTBase);
  }
  const Composition* end = kCompositions + kCompositionCount;
  const Composition* it = std::lower_bound(kCompositions, end, std::pair{first, second},
                                           [](const Composition& c, const std::pair<char32_t, char32_t>& key) {
                                             return std::pair{c.first, c.second} < key;
                                           });
  return (it != end && it->first == first && it->second == second) ? it->composite : 0;
}

// The canonical composition algorithm: each character joins the last starter unless a character
// in between has combining class 0 or one at least as high as its own ("blocked").
void compose_canonically(std::u32string& text) {
  std::u32string out;
  out.reserve(text.size());
  size_t starter = std::u32string::npos;
  for (char32_t c : text) {
    uint8_t ccc = combining_class(c);
    if (starter != std::u32string::npos) {
      bool adjacent = starter + 1 == out.size();
      bool blocked = !adjacent && combining_class(out.back()) >= ccc;
      char32_t composite = blocked ? 0 : compose_pair(out[starter], c);
      if (composite != 0) {
        out[starter] = composite;
        continue;
      }
    }
    if (ccc == 0) starter = out.size();
    out.push_back(c);
  }
  text = std::move(out);
}

char32_t single_lowercase(char32_t cp, char32_t* second) {
  *second = 0;
  if (cp < 0x80) return (cp >= 'A' && cp <= 'Z') ? cp + ('a' - 'A') : cp;
  const LowercaseMapping* m = find_sorted(kLowercaseMappings, kLowercaseMappingCount, cp,
                                          [](const LowercaseMapping& e) { return e.code_point; });
  if (m == nullptr) return cp;
  *second = m->lower[1];
  return m->lower[0];
}

// CPython's Final_Sigma test: a cased letter before (skipping case-ignorables) and none after.
bool is_final_sigma(std::u32string_view text, size_t at) {
  size_t j = at;
  while (j > 0 && has_flag(text[j - 1], kCaseIgnorable)) --j;
  if (j == 0 || !has_flag(text[j - 1], kCased)) return false;
  size_t k = at + 1;
  while (k < text.size() && has_flag(text[k], kCaseIgnorable)) ++k;
  return k == text.size() || !has_flag(text[k], kCased);
}

// Length of the valid UTF-8 sequence at `at`, or 0; `valid_prefix` gets how many bytes of an
// invalid one still looked right, which are replaced by a single U+FFFD together.
size_t utf8_sequence_length(std::string_view bytes, size_t at, size_t* valid_prefix) {
  auto byte = [&](size_t i) { return static_cast<unsigned char>(bytes[i]); };
  unsigned char lead = byte(at);
  size_t length;
  unsigned char second_min = 0x80, second_max = 0xBF;
  if (lead < 0x80) return 1;
  if (lead >= 0xC2 && lead <= 0xDF) {
    length = 2;
  } else if (lead >= 0xE0 && lead <= 0xEF) {
    length = 3;
    if (lead == 0xE0) second_min = 0xA0;  // overlong
    if (lead == 0xED) second_max = 0x9F;  // surrogates
  } else if (lead >= 0xF0 && lead <= 0xF4) {
    length = 4;
    if (lead == 0xF0) second_min = 0x90;  // overlong
    if (lead == 0xF4) second_max = 0x8F;  // past U+10FFFF
  } else {
    *valid_prefix = 1;
    return 0;
  }
  size_t i = 1;
  for (; i < length && at + i < bytes.size(); ++i) {
    unsigned char b = byte(at + i);
    unsigned char lo = i == 1 ? second_min : 0x80, hi = i == 1 ? second_max : 0xBF;
    if (b < lo || b > hi) break;
  }
  if (i == length) return length;
  *valid_prefix = i;
  return 0;
}

char32_t decode_sequence(std::string_view bytes, size_t at, size_t length) {
  auto byte = [&](size_t i) { return static_cast<char32_t>(static_cast<unsigned char>(bytes[i])); };
  static constexpr char32_t kLeadMask[] = {0, 0x7F, 0x1F, 0x0F, 0x07};
  char32_t cp = byte(at) & kLeadMask[length];
  for (size_t i = 1; i < length; ++i) cp = (cp << 6) | (byte(at + i) & 0x3F);
  return cp;
}

}  // namespace

uint16_t flags_of(char32_t cp) {
  if (cp > kMaxCodePoint) return kDropped;
  const FlagRange* end = kFlagRanges + kFlagRangeCount;
  const FlagRange* it =
      std::upper_bound(kFlagRanges, end, cp, [](char32_t c, const FlagRange& r) { return c < r.first; });
  return std::prev(it)->flags;  // the table starts at U+0000, so `it` is never the first entry
}

std::u32string decode_utf8_lossy(std::string_view bytes) {
  std::u32string text;
  text.reserve(bytes.size());
  size_t at = 0;
  while (at < bytes.size()) {
    size_t valid_prefix = 0;
    size_t length = utf8_sequence_length(bytes, at, &valid_prefix);
    if (length == 0) {
      text.push_back(kReplacementChar);
      at += valid_prefix;
      continue;
    }
    text.push_back(decode_sequence(bytes, at, length));
    at += length;
  }
  return text;
}

void append_utf8(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

std::string encode_utf8(std::u32string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char32_t cp : text) append_utf8(out, cp);
  return out;
}

std::u32string to_nfc(std::u32string_view text) {
  bool all_below_marks = std::all_of(text.begin(), text.end(), [](char32_t c) { return c < kFirstCombiningMark; });
  if (all_below_marks) return std::u32string(text);
  std::u32string decomposed;
  decomposed.reserve(text.size());
  for (char32_t c : text) append_decomposition(c, decomposed);
  reorder_canonically(decomposed);
  compose_canonically(decomposed);
  return decomposed;
}

std::u32string to_lower(std::u32string_view text) {
  std::u32string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] == kCapitalSigma) {
      out.push_back(is_final_sigma(text, i) ? kFinalSigma : kSmallSigma);
      continue;
    }
    char32_t second;
    out.push_back(single_lowercase(text[i], &second));
    if (second != 0) out.push_back(second);
  }
  return out;
}

}  // namespace sdrt::unicode
