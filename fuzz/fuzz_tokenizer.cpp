// libFuzzer target for the CLIP tokenizer: any byte string, valid UTF-8 or not, must encode
// without crashing, and the ids must keep the shape the text encoder relies on. Both pad
// conventions run: SD 1.x (pad = EOS) and SD 2.x (pad "!" = 0, which also splits the text).
//
// The tokenizer files come from $SDRT_TOKENIZER_DIR, by default the golden SD 1.5 files in the
// repository (SDRT_TEST_DATA_DIR). The SD 2.x variant is built once in a temporary directory:
// the same vocab and merges with a special_tokens_map.json whose pad_token is "!".
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "tokenizer/clip_tokenizer.h"

#ifndef SDRT_TEST_DATA_DIR
#error "compile with -DSDRT_TEST_DATA_DIR=\"<repository>/tests/data\""
#endif

namespace {

namespace fs = std::filesystem;

constexpr int kMaxLength = 77;

[[noreturn]] void violated(const char* invariant, const char* convention) {
  std::fprintf(stderr, "fuzz_tokenizer: %s (%s)\n", invariant, convention);
  std::abort();
}

std::string tokenizer_dir() {
  const char* from_env = std::getenv("SDRT_TOKENIZER_DIR");
  return from_env != nullptr ? from_env : SDRT_TEST_DATA_DIR "/golden/tokenizer";
}

fs::path make_sd2_dir(const fs::path& sd1_dir) {
  fs::path dir = fs::temp_directory_path() / ("sdrt_fuzz_tokenizer_sd2_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  fs::copy_file(sd1_dir / "vocab.json", dir / "vocab.json", fs::copy_options::overwrite_existing);
  fs::copy_file(sd1_dir / "merges.txt", dir / "merges.txt", fs::copy_options::overwrite_existing);
  std::ofstream(dir / "special_tokens_map.json") << R"({"bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>",
    "unk_token": "<|endoftext|>", "pad_token": "!"})";
  return dir;
}

struct Tokenizers {
  sdrt::ClipTokenizer sd1;
  sdrt::ClipTokenizer sd2;
};

const Tokenizers& tokenizers() {
  static const Tokenizers loaded = [] {
    fs::path sd1_dir = tokenizer_dir();
    fs::path sd2_dir = make_sd2_dir(sd1_dir);
    Tokenizers t{sdrt::ClipTokenizer::load(sd1_dir.string()), sdrt::ClipTokenizer::load(sd2_dir.string())};
    fs::remove_all(sd2_dir);
    return t;
  }();
  return loaded;
}

void check_ids_in_vocab(const std::vector<int64_t>& ids, const sdrt::ClipTokenizer& tok, const char* convention) {
  for (int64_t id : ids) {
    if (id < 0 || static_cast<size_t>(id) >= tok.vocab_size()) violated("id outside the vocabulary", convention);
  }
}

void check_encoding(const std::string& text, size_t max_length, const sdrt::ClipTokenizer& tok,
                    const char* convention) {
  std::vector<int64_t> full = tok.encode_untruncated(text);
  if (full.size() < 2 || full.front() != tok.bos_id() || full.back() != tok.eos_id()) {
    violated("untruncated ids are not BOS ... EOS", convention);
  }
  check_ids_in_vocab(full, tok, convention);

  std::vector<int64_t> padded = tok.encode(text, static_cast<int>(max_length));
  if (padded.size() != max_length) violated("padded length differs from max_length", convention);
  if (padded.front() != tok.bos_id()) violated("padded ids do not start with BOS", convention);
  if (padded.back() != tok.eos_id() && padded.back() != tok.pad_id()) {
    violated("padded ids end in neither EOS nor pad", convention);
  }
  check_ids_in_vocab(padded, tok, convention);

  // encode() must be exactly the untruncated ids cut to fit (keeping EOS) and padded.
  std::vector<int64_t> expected = full;
  if (expected.size() > max_length) {
    expected.resize(max_length - 1);
    expected.push_back(tok.eos_id());
  }
  expected.resize(max_length, tok.pad_id());
  if (padded != expected) violated("encode() disagrees with encode_untruncated()", convention);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const Tokenizers& t = tokenizers();
  std::string text(reinterpret_cast<const char*>(data), size);
  check_encoding(text, kMaxLength, t.sd1, "SD 1.x pad");
  check_encoding(text, kMaxLength, t.sd2, "SD 2.x pad");
  // A short limit as well, so truncation is exercised by short inputs too.
  size_t short_length = 2 + (size > 0 ? data[0] % 8 : 0);
  check_encoding(text, short_length, t.sd1, "SD 1.x pad, short max_length");
  check_encoding(text, short_length, t.sd2, "SD 2.x pad, short max_length");
  return 0;
}
