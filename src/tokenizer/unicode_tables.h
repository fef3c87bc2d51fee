// Unicode data the CLIP tokenizer needs, generated from Python's unicodedata by
// scripts/gen_unicode_tables.py (into unicode_tables.cpp). The reference tokenizer is pure
// Python, so taking every property from the same database is what keeps the two in agreement.
#pragma once

#include <cstddef>
#include <cstdint>

namespace sdrt::unicode {

// Bit values; the generator writes the same numbers.
enum CharFlag : uint16_t {
  kLetter = 1 << 0,              // category L*  (regex \p{L})
  kNumber = 1 << 1,              // category N*  (regex \p{N})
  kDropped = 1 << 2,             // removed by BERT's _clean_text: NUL, U+FFFD, C* except \t \n \r
  kBlank = 1 << 3,               // turned into ' ' by _clean_text: ' ', \t, \n, \r, Zs
  kSplitSpace = 1 << 4,          // Python str.isspace(): what str.split() / strip() cut on
  kCjkIdeograph = 1 << 5,        // BERT's _is_chinese_char blocks
  kCased = 1 << 6,               // final-sigma context: cased and not case-ignorable
  kCaseIgnorable = 1 << 7,       // final-sigma context: skipped when looking for a cased neighbour
  kSkippedByClipRegex = 1 << 8,  // matched by no alternative of the case-insensitive CLIP pattern
};

// The flags of every code point from `first` up to the next entry's `first`.
struct FlagRange {
  char32_t first;
  uint16_t flags;
};

// Python str.lower() of one code point, when it differs; second is 0 for a single code point.
// Capital sigma is listed with its non-final form; the context rule is applied in code.
struct LowercaseMapping {
  char32_t code_point;
  char32_t lower[2];
};

struct CombiningClassRange {
  char32_t first;
  char32_t last;
  uint8_t combining_class;
};

// Full canonical decomposition (NFD of the single character), stored in kDecompositionData.
// Hangul syllables are left out: they decompose algorithmically.
struct Decomposition {
  char32_t code_point;
  uint16_t offset;
  uint8_t length;
};

// Primary composites NFC may form, sorted by (first, second). Hangul again algorithmic.
struct Composition {
  char32_t first;
  char32_t second;
  char32_t composite;
};

extern const char* const kUnicodeVersion;
extern const FlagRange kFlagRanges[];
extern const size_t kFlagRangeCount;
extern const LowercaseMapping kLowercaseMappings[];
extern const size_t kLowercaseMappingCount;
extern const CombiningClassRange kCombiningClassRanges[];
extern const size_t kCombiningClassRangeCount;
extern const char32_t kDecompositionData[];
extern const Decomposition kDecompositions[];
extern const size_t kDecompositionCount;
extern const Composition kCompositions[];
extern const size_t kCompositionCount;

}  // namespace sdrt::unicode
