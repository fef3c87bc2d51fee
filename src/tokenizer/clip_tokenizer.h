// CLIP's byte-level BPE tokenizer, producing the same ids as transformers' slow CLIPTokenizer
// (the class SD 1.x/2.x's model_index.json names) when ftfy is not installed: BERT-style text
// cleanup, CLIP's word pattern, byte-to-unicode mapping, BPE by merge rank, "</w>" word ends.
// The ftfy path (ftfy.fix_text: HTML unescaping, NFC/width/ligature fixes) is not reproduced; it
// differs only for some non-ASCII text, HTML entities and zero-width characters.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace sdrt {

class ClipTokenizer {
 public:
  // `dir` holds vocab.json, merges.txt and optionally special_tokens_map.json and
  // tokenizer_config.json, which name the special tokens as transformers reads them: SD 1.x pads
  // with "<|endoftext|>" (49407), SD 2.x with "!" (id 0). Throws sdrt::Error naming the file.
  static ClipTokenizer load(const std::string& dir);

  // BOS + tokens + EOS, truncated to max_length keeping EOS, padded with pad_id() to max_length.
  // `text` is UTF-8; invalid sequences count as U+FFFD, which the cleanup drops.
  std::vector<int64_t> encode(const std::string& text, int max_length = 77) const;
  // BOS + tokens + EOS with no padding or truncation.
  std::vector<int64_t> encode_untruncated(const std::string& text) const;

  int64_t bos_id() const { return bos_id_; }
  int64_t eos_id() const { return eos_id_; }
  int64_t pad_id() const { return pad_id_; }
  // One past the largest id encode() can return (49408 for CLIP).
  size_t vocab_size() const { return vocab_size_; }

  // A string split out of the text before cleanup and BPE (the special tokens, plus any
  // added_tokens_decoder entries), as transformers' added-token trie does.
  struct AddedToken {
    std::u32string content;
    int64_t id = 0;
    bool lstrip = false;  // eats whitespace on its left
    bool rstrip = false;  // eats whitespace on its right
  };

 private:
  struct WordCache;

  ClipTokenizer() = default;
  void append_text_ids(std::u32string_view text, std::vector<int64_t>& ids) const;
  void append_word_ids(const std::string& word, std::vector<int64_t>& ids) const;
  std::vector<int64_t> bpe_word_ids(const std::string& word) const;
  std::vector<std::string> bpe(const std::string& word) const;
  int64_t id_or_unk(const std::string& symbol) const;

  // vocab.json (byte-level UTF-8 symbol -> id), with the added tokens' ids laid over it.
  std::unordered_map<std::string, int64_t> vocab_;
  // Key: first + ' ' + second (symbols never contain a space); value: merge rank.
  std::unordered_map<std::string, int> merge_ranks_;
  std::vector<AddedToken> added_tokens_;
  std::array<std::string, 256> byte_symbols_;  // UTF-8 of bytes_to_unicode()[b]
  int64_t bos_id_ = 0, eos_id_ = 0, pad_id_ = 0, unk_id_ = 0;
  size_t vocab_size_ = 0;
  // BPE of a word never changes, so results are memoised; shared by copies, guarded by a mutex.
  std::shared_ptr<WordCache> cache_;
};

}  // namespace sdrt
