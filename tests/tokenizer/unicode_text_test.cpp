// The Unicode operations behind the tokenizer's text cleanup, each checked against what Python
// 3.11 returns for the same input (the values below were taken from CPython).
#include "tokenizer/unicode_text.h"

#include <gtest/gtest.h>

#include <string>

#include "tokenizer/clip_pretokenize.h"

namespace sdrt::unicode {
namespace {

TEST(UnicodeTables, GeneratedFromUnicode14LikeTheReference) {
  // Python 3.11's unicodedata; another version changes which code points are dropped as unassigned.
  EXPECT_STREQ(kUnicodeVersion, "14.0.0");
}

TEST(UnicodeTables, Flags) {
  EXPECT_TRUE(has_flag(U'a', kLetter));
  EXPECT_TRUE(has_flag(U'\u00E9', kLetter));
  EXPECT_TRUE(has_flag(U'7', kNumber));
  EXPECT_TRUE(has_flag(U'\u2167', kNumber));   // Roman numeral eight (Nl)
  EXPECT_TRUE(has_flag(U'\u200B', kDropped));  // zero-width space (Cf)
  EXPECT_TRUE(has_flag(U'\uFFFD', kDropped));
  EXPECT_TRUE(has_flag(U'\U000E0001', kDropped));
  EXPECT_TRUE(has_flag(0x0378, kDropped));  // unassigned in Unicode 14
  EXPECT_FALSE(has_flag(U'\t', kDropped));
  EXPECT_TRUE(has_flag(U'\u00A0', kBlank));       // no-break space (Zs)
  EXPECT_FALSE(has_flag(U'\u2028', kBlank));      // line separator is Zl: not BERT whitespace...
  EXPECT_TRUE(has_flag(U'\u2028', kSplitSpace));  // ...but str.split() cuts on it
  EXPECT_TRUE(has_flag(U'\u732B', kCjkIdeograph));
  EXPECT_FALSE(has_flag(U'\u3042', kCjkIdeograph));  // hiragana
  EXPECT_TRUE(has_flag(U'\u0345', kSkippedByClipRegex));
}

TEST(UnicodeText, DecodeUtf8ReplacesEachBadSequence) {
  EXPECT_EQ(decode_utf8_lossy("a\xC3\xA9z"), U"a\u00E9z");
  EXPECT_EQ(decode_utf8_lossy("\xF0\x9F\x98\x80"), U"\U0001F600");
  EXPECT_EQ(decode_utf8_lossy("a\xFF"
                              "b"),
            U"a\uFFFDb");
  EXPECT_EQ(decode_utf8_lossy("\xE2\x82"
                              "A"),
            U"\uFFFDA");                                                          // truncated, then ASCII kept
  EXPECT_EQ(decode_utf8_lossy("\xC0\xAF"), U"\uFFFD\uFFFD");                      // overlong
  EXPECT_EQ(decode_utf8_lossy("\xED\xA0\x80"), U"\uFFFD\uFFFD\uFFFD");            // surrogate
  EXPECT_EQ(decode_utf8_lossy("\xF4\x90\x80\x80"), U"\uFFFD\uFFFD\uFFFD\uFFFD");  // past U+10FFFF
  EXPECT_EQ(encode_utf8(U"a\u00E9\u732B\U0001F600"), "a\xC3\xA9\xE7\x8C\xAB\xF0\x9F\x98\x80");
}

TEST(UnicodeText, Nfc) {
  EXPECT_EQ(to_nfc(U"e\u0301"), U"\u00E9");
  EXPECT_EQ(to_nfc(U"\u1100\u1161\u11A8"), U"\uAC01");    // Hangul L V T
  EXPECT_EQ(to_nfc(U"q\u0307\u0323"), U"q\u0323\u0307");  // canonical reordering
  EXPECT_EQ(to_nfc(U"\u1E0B\u0323"), U"\u1E0D\u0307");    // recomposes around the reorder
  EXPECT_EQ(to_nfc(U"\u0B47\u0B3E"), U"\u0B4B");          // two starters compose
  EXPECT_EQ(to_nfc(U"\u0958"), U"\u0915\u093C");          // composition exclusion
  EXPECT_EQ(to_nfc(U"\u212B"), U"\u00C5");                // singleton (Angstrom sign)
  EXPECT_EQ(to_nfc(U"\uF900"), U"\u8C48");                // CJK compatibility ideograph
  EXPECT_EQ(to_nfc(U"a\u0301\u0301"), U"\u00E1\u0301");   // second acute is blocked
}

TEST(UnicodeText, LowerLikePython) {
  EXPECT_EQ(to_lower(U"ABC xyz"), U"abc xyz");
  EXPECT_EQ(to_lower(U"\u0130"), U"i\u0307");                                     // İ becomes two code points
  EXPECT_EQ(to_lower(U"\u039F\u0394\u039F\u03A3"), U"\u03BF\u03B4\u03BF\u03C2");  // final sigma
  EXPECT_EQ(to_lower(U"\u03A3"), U"\u03C3");                                      // alone: not final
  EXPECT_EQ(to_lower(U"\u03A3\u0391"), U"\u03C3\u03B1");
  EXPECT_EQ(to_lower(U"A\u03A3'"), U"a\u03C2'");  // apostrophe is case-ignorable
  EXPECT_EQ(to_lower(U"A\u03A3'B"), U"a\u03C3'b");
  EXPECT_EQ(to_lower(U"\u212A"), U"k");  // Kelvin sign
}

TEST(ClipPretokenize, CleanTextLikeBert) {
  EXPECT_EQ(clean_text_like_bert(U"  Hello\t\tWORLD \n"), U"hello world");
  EXPECT_EQ(clean_text_like_bert(U"zero\u200Bwidth"), U"zerowidth");
  EXPECT_EQ(clean_text_like_bert(U"\u4E00\u53EA"), U"\u4E00 \u53EA");
  EXPECT_EQ(clean_text_like_bert(U"Caf\u00C9"), U"caf\u00E9");  // accents kept
  EXPECT_EQ(clean_text_like_bert(U"a\u2028b"), U"a b");
  EXPECT_EQ(clean_text_like_bert(U"\u03A3\u03A3 \u03A3"), U"\u03C3\u03C2 \u03C3");  // sigma per word
}

TEST(ClipPretokenize, SplitClipWords) {
  using Words = std::vector<std::u32string>;
  EXPECT_EQ(split_clip_words(U"it's a cat's toy"), (Words{U"it", U"'s", U"a", U"cat", U"'s", U"toy"}));
  EXPECT_EQ(split_clip_words(U"x1234!?.. y"), (Words{U"x", U"1", U"2", U"3", U"4", U"!?..", U"y"}));
  EXPECT_EQ(split_clip_words(U"<|endoftext|>a"), (Words{U"<|endoftext|>", U"a"}));
  EXPECT_EQ(split_clip_words(U"''s"), (Words{U"''", U"s"}));
  EXPECT_EQ(split_clip_words(U"it'\u017F"), (Words{U"it", U"'\u017F"}));  // long s folds to s
  EXPECT_EQ(split_clip_words(U"a\u0345b"), (Words{U"a", U"b"}));
}

}  // namespace
}  // namespace sdrt::unicode
