// Golden tests against transformers' slow CLIPTokenizer, plus error handling and edge cases.
//
// We match the NON-ftfy path (BERT BasicTokenizer cleanup), which is what the reference used
// (ftfy not installed). input_ids_sd15_ftfy is only counted and reported, not asserted: 9 of the
// 62 cases differ between the two paths, all through ftfy.fix_text (HTML unescaping, NFKC-like
// fixes), which this tokenizer deliberately does not reproduce.
#include "tokenizer/clip_tokenizer.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "core/error.h"
#include "test_util.h"

namespace sdrt {
namespace {

namespace fs = std::filesystem;
using Ids = std::vector<int64_t>;

constexpr int64_t kBos = 49406;
constexpr int64_t kEos = 49407;
constexpr int64_t kSd2Pad = 0;  // "!"

std::string tokenizer_dir() { return testing::data_dir() + "/golden/tokenizer"; }

nlohmann::json read_json(const std::string& path) {
  std::ifstream in(path);
  EXPECT_TRUE(in) << "cannot open " << path;
  return nlohmann::json::parse(in);
}

void write_file(const fs::path& path, const std::string& contents) {
  std::ofstream out(path, std::ios::binary);
  out << contents;
}

// Copies vocab.json and merges.txt into a fresh directory; the caller adds the rest.
fs::path copy_vocab_and_merges(const std::string& name) {
  fs::path dir = testing::scratch_dir(name);
  fs::copy_file(fs::path(tokenizer_dir()) / "vocab.json", dir / "vocab.json");
  fs::copy_file(fs::path(tokenizer_dir()) / "merges.txt", dir / "merges.txt");
  return dir;
}

// SD 2.x's special_tokens_map.json: same bos/eos/unk objects as SD 1.5, pad_token "!".
std::string sd2_special_tokens_map(const std::string& pad_json = "\"!\"") {
  const std::string token =
      R"({"content": "%s", "lstrip": false, "normalized": true, "rstrip": false, "single_word": false})";
  auto object = [&](const char* content) {
    std::string s = token;
    s.replace(s.find("%s"), 2, content);
    return s;
  };
  return "{\"bos_token\": " + object("<|startoftext|>") + ", \"eos_token\": " + object("<|endoftext|>") +
         ", \"pad_token\": " + pad_json + ", \"unk_token\": " + object("<|endoftext|>") + "}";
}

// Shows control characters in failure messages instead of printing them raw.
std::string printable(const std::string& text) {
  std::string out = "\"";
  for (unsigned char c : text) {
    if (c < 0x20 || c == 0x7F) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02X", c);
      out += buf;
    } else {
      out.push_back(static_cast<char>(c));
    }
  }
  return out + "\"";
}

class ClipTokenizerGolden : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    cases_ = new nlohmann::json(read_json(tokenizer_dir() + "/tokenizer_cases.json")["cases"]);
    sd15_ = new ClipTokenizer(ClipTokenizer::load(tokenizer_dir()));
    sd2_dir_ = new fs::path(copy_vocab_and_merges("tokenizer_sd2"));
    write_file(*sd2_dir_ / "special_tokens_map.json", sd2_special_tokens_map());
    sd2_ = new ClipTokenizer(ClipTokenizer::load(sd2_dir_->string()));
  }
  static void TearDownTestSuite() {
    delete cases_;
    delete sd15_;
    delete sd2_;
    delete sd2_dir_;
  }

  // One assertion per case, the prompt in its message; prints the tally for the test log.
  template <typename Encode>
  static void expect_all_cases(const char* field, Encode encode) {
    ASSERT_EQ(cases_->size(), 62u);
    int matched = 0;
    for (const auto& c : *cases_) {
      std::string prompt = c["prompt"].get<std::string>();
      Ids expected = c[field].get<Ids>();
      Ids actual = encode(prompt);
      EXPECT_EQ(actual, expected) << field << " for prompt " << printable(prompt);
      matched += actual == expected;
    }
    std::printf("    %s: %d/%zu cases match\n", field, matched, cases_->size());
    ::testing::Test::RecordProperty(field, std::to_string(matched) + "/" + std::to_string(cases_->size()));
  }

  static nlohmann::json* cases_;
  static ClipTokenizer* sd15_;
  static ClipTokenizer* sd2_;
  static fs::path* sd2_dir_;
};

nlohmann::json* ClipTokenizerGolden::cases_ = nullptr;
ClipTokenizer* ClipTokenizerGolden::sd15_ = nullptr;
ClipTokenizer* ClipTokenizerGolden::sd2_ = nullptr;
fs::path* ClipTokenizerGolden::sd2_dir_ = nullptr;

TEST_F(ClipTokenizerGolden, Sd15Padded) {
  expect_all_cases("input_ids_sd15", [](const std::string& p) { return sd15_->encode(p); });
}

TEST_F(ClipTokenizerGolden, Sd2Padded) {
  expect_all_cases("input_ids_sd2", [](const std::string& p) { return sd2_->encode(p); });
}

TEST_F(ClipTokenizerGolden, Sd15Untruncated) {
  expect_all_cases("input_ids_untruncated_sd15", [](const std::string& p) { return sd15_->encode_untruncated(p); });
}

TEST_F(ClipTokenizerGolden, Sd2Untruncated) {
  expect_all_cases("input_ids_untruncated_sd2", [](const std::string& p) { return sd2_->encode_untruncated(p); });
}

// Not asserted (see the top of the file): records how far the non-ftfy path is from the ftfy one.
TEST_F(ClipTokenizerGolden, FtfyPathIsOnlyReported) {
  int matched = 0;
  for (const auto& c : *cases_) {
    matched += sd15_->encode(c["prompt"].get<std::string>()) == c["input_ids_sd15_ftfy"].get<Ids>();
  }
  std::printf("    input_ids_sd15_ftfy (not our path): %d/%zu cases match\n", matched, cases_->size());
  EXPECT_GE(matched, 53);  // the 53 cases where ftfy changes nothing
}

TEST_F(ClipTokenizerGolden, SpecialIds) {
  EXPECT_EQ(sd15_->bos_id(), kBos);
  EXPECT_EQ(sd15_->eos_id(), kEos);
  EXPECT_EQ(sd15_->pad_id(), kEos);
  EXPECT_EQ(sd15_->vocab_size(), 49408u);
  EXPECT_EQ(sd2_->pad_id(), kSd2Pad);
  EXPECT_EQ(sd2_->vocab_size(), 49408u);
}

TEST_F(ClipTokenizerGolden, EmptyStringIsBosEosThenPad) {
  Ids sd15(77, kEos);
  sd15[0] = kBos;
  EXPECT_EQ(sd15_->encode(""), sd15);
  Ids sd2(77, kSd2Pad);
  sd2[0] = kBos;
  sd2[1] = kEos;
  EXPECT_EQ(sd2_->encode(""), sd2);
  EXPECT_EQ(sd15_->encode_untruncated(""), (Ids{kBos, kEos}));
}

TEST_F(ClipTokenizerGolden, LongPromptKeepsBosFirst75AndEos) {
  std::string prompt;
  for (int i = 0; i < 200; ++i) prompt += "castle ";
  Ids untruncated = sd15_->encode_untruncated(prompt);
  ASSERT_EQ(untruncated.size(), 202u);
  Ids ids = sd15_->encode(prompt);
  ASSERT_EQ(ids.size(), 77u);
  EXPECT_EQ(ids.front(), kBos);
  EXPECT_EQ(ids.back(), kEos);
  EXPECT_EQ(Ids(ids.begin(), ids.end() - 1), Ids(untruncated.begin(), untruncated.begin() + 76));
}

TEST_F(ClipTokenizerGolden, MaxLengthIsHonoured) {
  EXPECT_EQ(sd15_->encode("a photo of a cat", 4), (Ids{kBos, 320, 1125, kEos}));
  EXPECT_EQ(sd15_->encode("a", 5), (Ids{kBos, 320, kEos, kEos, kEos}));
  EXPECT_THROW(sd15_->encode("a", 1), Error);
}

TEST_F(ClipTokenizerGolden, Sd2SplitsOnExclamationMark) {
  EXPECT_EQ(sd2_->encode_untruncated("a!b!c"), (Ids{kBos, 320, 0, 321, 0, 322, kEos}));
  // With SD 1.5's map "!" is ordinary text: "!</w>" is 256.
  EXPECT_EQ(sd15_->encode_untruncated("a!b!c"), (Ids{kBos, 320, 256, 321, 256, 322, kEos}));
}

TEST_F(ClipTokenizerGolden, SpecialTokenStringsInText) {
  // Split out before cleanup, and recognised again by the word pattern after lowercasing.
  EXPECT_EQ(sd15_->encode_untruncated("<|endoftext|>"), (Ids{kBos, kEos, kEos}));
  EXPECT_EQ(sd15_->encode_untruncated("<|STARTOFTEXT|>"), (Ids{kBos, kBos, kEos}));
}

TEST_F(ClipTokenizerGolden, InvalidUtf8IsDroppedLikeReplacementCharacters) {
  // Python would see U+FFFD for each bad sequence, and BERT's cleanup removes U+FFFD.
  EXPECT_EQ(sd15_->encode("ca\xFFt"), sd15_->encode("cat"));
  EXPECT_EQ(sd15_->encode("cat\xE2\x82"), sd15_->encode("cat"));
  EXPECT_EQ(sd15_->encode("\xC0\xAF"
                          "dog \xED\xA0\x80"),
            sd15_->encode("dog"));
}

TEST_F(ClipTokenizerGolden, UnicodeCleanupDetails) {
  // Combining acute composes (NFC) into the same word as precomposed é.
  EXPECT_EQ(sd15_->encode("cafe\xCC\x81"), sd15_->encode("caf\xC3\xA9"));
  // Final sigma: "ΟΔΟΣ" lowercases to "οδος" ending in ς, like Python's str.lower().
  EXPECT_EQ(sd15_->encode("\xCE\x9F\xCE\x94\xCE\x9F\xCE\xA3"), sd15_->encode("\xCE\xBF\xCE\xB4\xCE\xBF\xCF\x82"));
  EXPECT_NE(sd15_->encode("\xCE\xBF\xCE\xB4\xCE\xBF\xCF\x82"), sd15_->encode("\xCE\xBF\xCE\xB4\xCE\xBF\xCF\x83"));
  // U+0345 after a non-Greek letter is matched by no alternative of the case-insensitive
  // pattern (its uppercase is a letter), so it vanishes.
  EXPECT_EQ(sd15_->encode("x\xCD\x85y"), sd15_->encode("x y"));
  // Ideographs become separate words; Zs spaces and tabs separate words.
  EXPECT_EQ(sd15_->encode("a\xE7\x8C\xAB"
                          "b"),
            sd15_->encode("a \xE7\x8C\xAB b"));
  EXPECT_EQ(sd15_->encode("a\xE3\x80\x80\tb"), sd15_->encode("a b"));
}

TEST_F(ClipTokenizerGolden, ConcurrentEncodeMatchesSequential) {
  std::vector<std::string> prompts;
  for (const auto& c : *cases_) prompts.push_back(c["prompt"].get<std::string>());
  std::vector<Ids> expected;
  for (const auto& p : prompts) expected.push_back(sd2_->encode(p));
  // A freshly loaded tokenizer, so the threads race on filling its (empty) word cache.
  const ClipTokenizer fresh = ClipTokenizer::load(sd2_dir_->string());
  std::vector<std::thread> threads;
  std::vector<int> mismatches(4, 0);
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int round = 0; round < 5; ++round) {
        for (size_t i = 0; i < prompts.size(); ++i) mismatches[t] += fresh.encode(prompts[i]) != expected[i];
      }
    });
  }
  for (auto& th : threads) th.join();
  for (int t = 0; t < 4; ++t) EXPECT_EQ(mismatches[t], 0) << "thread " << t;
}

// --- loading the special-token files ---

TEST(ClipTokenizerLoad, PadTokenMayBeAnObject) {
  fs::path dir = copy_vocab_and_merges("tokenizer_pad_object");
  write_file(dir / "special_tokens_map.json", sd2_special_tokens_map(R"({"content": "!", "lstrip": false})"));
  ClipTokenizer tok = ClipTokenizer::load(dir.string());
  EXPECT_EQ(tok.pad_id(), kSd2Pad);
  EXPECT_EQ(tok.encode_untruncated("wow!"), (Ids{kBos, 2781, kSd2Pad, kEos}));
}

TEST(ClipTokenizerLoad, SpecialTokensMapOverridesTokenizerConfig) {
  // SD 2.x ships a tokenizer_config.json and a special_tokens_map.json; transformers lets the map win.
  fs::path dir = copy_vocab_and_merges("tokenizer_map_over_config");
  fs::copy_file(fs::path(tokenizer_dir()) / "tokenizer_config.json", dir / "tokenizer_config.json");
  write_file(dir / "special_tokens_map.json", sd2_special_tokens_map());
  EXPECT_EQ(ClipTokenizer::load(dir.string()).pad_id(), kSd2Pad);
}

TEST(ClipTokenizerLoad, WithoutSpecialTokenFilesUsesClipDefaults) {
  fs::path dir = copy_vocab_and_merges("tokenizer_defaults");
  ClipTokenizer tok = ClipTokenizer::load(dir.string());
  EXPECT_EQ(tok.bos_id(), kBos);
  EXPECT_EQ(tok.eos_id(), kEos);
  EXPECT_EQ(tok.pad_id(), kEos);
}

TEST(ClipTokenizerLoad, AddedTokenWithRstripEatsFollowingSpace) {
  fs::path dir = copy_vocab_and_merges("tokenizer_rstrip");
  write_file(dir / "special_tokens_map.json", sd2_special_tokens_map(R"({"content": "!", "rstrip": true})"));
  ClipTokenizer tok = ClipTokenizer::load(dir.string());
  EXPECT_EQ(tok.encode_untruncated("a!   b"), tok.encode_untruncated("a!b"));
}

TEST(ClipTokenizerLoad, AddedTokensDecoderFormatIgnoresSpecialTokensMap) {
  // Newer saves list added tokens in tokenizer_config.json; transformers then reads the special
  // tokens from that file alone.
  fs::path dir = copy_vocab_and_merges("tokenizer_added_tokens_decoder");
  write_file(dir / "tokenizer_config.json", R"({
    "added_tokens_decoder": {
      "0": {"content": "!", "lstrip": false, "normalized": false, "rstrip": false, "single_word": false, "special": true},
      "49406": {"content": "<|startoftext|>", "lstrip": false, "normalized": true, "rstrip": false, "single_word": false, "special": true},
      "49407": {"content": "<|endoftext|>", "lstrip": false, "normalized": true, "rstrip": false, "single_word": false, "special": true}
    },
    "bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>", "pad_token": "!", "unk_token": "<|endoftext|>"})");
  write_file(dir / "special_tokens_map.json", R"({"pad_token": "<|endoftext|>"})");
  ClipTokenizer tok = ClipTokenizer::load(dir.string());
  EXPECT_EQ(tok.pad_id(), kSd2Pad);
  EXPECT_EQ(tok.encode_untruncated("a!b!c"), (Ids{kBos, 320, 0, 321, 0, 322, kEos}));
}

// Expects load() to throw an Error whose message contains every one of `parts`.
void expect_load_error(const fs::path& dir, std::initializer_list<std::string> parts) {
  try {
    ClipTokenizer::load(dir.string());
    ADD_FAILURE() << "load(" << dir << ") did not throw";
  } catch (const Error& e) {
    for (const auto& part : parts) EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what();
  }
}

TEST(ClipTokenizerLoad, MissingVocabNamesTheFile) {
  fs::path dir = testing::scratch_dir("tokenizer_no_vocab");
  fs::copy_file(fs::path(tokenizer_dir()) / "merges.txt", dir / "merges.txt");
  expect_load_error(dir, {(dir / "vocab.json").string(), "cannot open"});
}

TEST(ClipTokenizerLoad, MissingMergesNamesTheFile) {
  fs::path dir = testing::scratch_dir("tokenizer_no_merges");
  fs::copy_file(fs::path(tokenizer_dir()) / "vocab.json", dir / "vocab.json");
  expect_load_error(dir, {(dir / "merges.txt").string(), "cannot open"});
}

TEST(ClipTokenizerLoad, BadVocabJsonNamesTheFile) {
  fs::path dir = copy_vocab_and_merges("tokenizer_bad_vocab");
  write_file(dir / "vocab.json", "{\"a\": 0,");
  expect_load_error(dir, {"vocab.json", "invalid JSON"});
  write_file(dir / "vocab.json", "{\"a\": \"zero\"}");
  expect_load_error(dir, {"vocab.json", "'a'"});
}

TEST(ClipTokenizerLoad, MalformedMergeLineNamesFileAndLine) {
  fs::path dir = copy_vocab_and_merges("tokenizer_bad_merges");
  write_file(dir / "merges.txt", "#version: 0.2\ni n\nt h e\n");
  expect_load_error(dir, {"merges.txt:3", "t h e"});
}

TEST(ClipTokenizerLoad, BadSpecialTokensMapNamesTheFile) {
  fs::path dir = copy_vocab_and_merges("tokenizer_bad_special");
  write_file(dir / "special_tokens_map.json", "{\"pad_token\": 7}");
  expect_load_error(dir, {"special_tokens_map.json", "pad_token"});
  write_file(dir / "special_tokens_map.json", "{\"pad_token\": \"<|notatoken|>\"}");
  expect_load_error(dir, {"vocab.json", "pad_token", "<|notatoken|>"});
  write_file(dir / "special_tokens_map.json", "[");
  expect_load_error(dir, {"special_tokens_map.json", "invalid JSON"});
}

}  // namespace
}  // namespace sdrt
