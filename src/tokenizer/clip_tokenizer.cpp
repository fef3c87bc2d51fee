#include "tokenizer/clip_tokenizer.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <limits>
#include <mutex>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/error.h"
#include "tokenizer/clip_pretokenize.h"
#include "tokenizer/unicode_text.h"

namespace sdrt {

namespace fs = std::filesystem;
using json = nlohmann::json;

struct ClipTokenizer::WordCache {
  // Bounded so that a long-running process fed ever-new words does not grow without limit.
  static constexpr size_t kMaxEntries = 1 << 16;
  std::mutex mutex;
  std::unordered_map<std::string, std::vector<int64_t>> ids;
};

namespace {

// transformers reads merges.txt as read().strip().split("\n")[1 : 49152 - 256 - 2 + 1]: the
// header line is skipped and at most this many merges are used, whatever the file holds.
constexpr size_t kMaxMerges = 49152 - 256 - 2;
constexpr std::string_view kWordEnd = "</w>";
constexpr std::string_view kStartOfText = "<|startoftext|>";
constexpr std::string_view kEndOfText = "<|endoftext|>";

std::string read_text_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(path.string(), ": cannot open tokenizer file");
  std::ostringstream contents;
  contents << in.rdbuf();
  if (in.bad()) fail(path.string(), ": read error");
  return contents.str();
}

json read_json_file(const fs::path& path) {
  std::string text = read_text_file(path);
  try {
    return json::parse(text);
  } catch (const json::exception& e) {
    fail(path.string(), ": invalid JSON: ", e.what());
  }
}

std::unordered_map<std::string, int64_t> read_vocab(const fs::path& path) {
  json j = read_json_file(path);
  if (!j.is_object()) fail(path.string(), ": expected a JSON object mapping tokens to ids");
  std::unordered_map<std::string, int64_t> vocab;
  vocab.reserve(j.size());
  for (const auto& [token, id] : j.items()) {
    if (!id.is_number_integer() || id.get<int64_t>() < 0) {
      fail(path.string(), ": token '", token, "' has id ", id.dump(), ", expected a non-negative integer");
    }
    vocab.emplace(token, id.get<int64_t>());
  }
  return vocab;
}

bool is_ascii_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }

std::string_view strip_ascii_space(std::string_view s) {
  while (!s.empty() && is_ascii_space(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_ascii_space(s.back())) s.remove_suffix(1);
  return s;
}

std::vector<std::string_view> split_ascii_space(std::string_view s) {
  std::vector<std::string_view> parts;
  size_t i = 0;
  while (i < s.size()) {
    while (i < s.size() && is_ascii_space(s[i])) ++i;
    size_t start = i;
    while (i < s.size() && !is_ascii_space(s[i])) ++i;
    if (i > start) parts.push_back(s.substr(start, i - start));
  }
  return parts;
}

std::string merge_key(std::string_view first, std::string_view second) {
  std::string key;
  key.reserve(first.size() + 1 + second.size());
  key.append(first).append(1, ' ').append(second);
  return key;
}

std::vector<std::string_view> split_lines(std::string_view text) {
  std::vector<std::string_view> lines;
  size_t start = 0;
  while (true) {
    size_t newline = text.find('\n', start);
    lines.push_back(text.substr(start, newline - start));
    if (newline == std::string_view::npos) return lines;
    start = newline + 1;
  }
}

std::unordered_map<std::string, int> read_merges(const fs::path& path) {
  std::string text = read_text_file(path);
  std::vector<std::string_view> lines = split_lines(strip_ascii_space(text));
  // Line 0 is the "#version" header; like transformers, skip it without looking at it.
  size_t end = std::min(lines.size(), kMaxMerges + 1);
  std::unordered_map<std::string, int> ranks;
  ranks.reserve(end);
  for (size_t i = 1; i < end; ++i) {
    std::vector<std::string_view> symbols = split_ascii_space(lines[i]);
    if (symbols.size() != 2) {
      fail(path.string(), ":", i + 1, ": malformed merge '", lines[i], "': expected two space-separated symbols");
    }
    // Like the dict built in Python, a pair listed twice keeps its later rank.
    ranks[merge_key(symbols[0], symbols[1])] = static_cast<int>(i - 1);
  }
  return ranks;
}

// GPT-2's bytes_to_unicode(): printable Latin-1 bytes stand for themselves, the others are
// moved to U+0100 onwards, so every byte is a visible, non-space character in vocab.json.
std::array<std::string, 256> byte_level_symbols() {
  std::array<std::string, 256> symbols;
  auto stands_for_itself = [](int b) { return (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE; };
  char32_t next_moved = 0x100;
  for (int b = 0; b < 256; ++b) {
    char32_t cp = stands_for_itself(b) ? static_cast<char32_t>(b) : next_moved++;
    unicode::append_utf8(symbols[b], cp);
  }
  return symbols;
}

struct TokenSpec {
  std::string content;
  bool lstrip = false;
  bool rstrip = false;
};

bool optional_flag(const json& object, const char* key, const fs::path& file, const std::string& where) {
  if (!object.contains(key) || object[key].is_null()) return false;
  if (!object[key].is_boolean()) fail(file.string(), ": ", where, ".", key, " must be true or false");
  return object[key].get<bool>();
}

// A special token is written either as a plain string or as an AddedToken object.
TokenSpec parse_token_spec(const json& value, const fs::path& file, const std::string& where) {
  if (value.is_string()) return TokenSpec{value.get<std::string>()};
  if (!value.is_object() || !value.contains("content") || !value["content"].is_string()) {
    fail(file.string(), ": ", where, " must be a string or an object with a string \"content\"");
  }
  if (optional_flag(value, "single_word", file, where)) {
    fail(file.string(), ": ", where, " has single_word=true, which this tokenizer does not support");
  }
  return TokenSpec{value["content"].get<std::string>(), optional_flag(value, "lstrip", file, where),
                   optional_flag(value, "rstrip", file, where)};
}

struct SpecialTokenSpecs {
  TokenSpec bos{std::string(kStartOfText)};
  TokenSpec eos{std::string(kEndOfText)};
  TokenSpec unk{std::string(kEndOfText)};
  TokenSpec pad{std::string(kEndOfText)};            // CLIPTokenizer's default ("hack to enable padding")
  std::vector<std::pair<int64_t, TokenSpec>> added;  // tokenizer_config.json added_tokens_decoder
};

void override_special_tokens(const json& j, const fs::path& file, SpecialTokenSpecs& specs) {
  if (!j.is_object()) fail(file.string(), ": expected a JSON object");
  std::pair<const char*, TokenSpec*> slots[] = {
      {"bos_token", &specs.bos}, {"eos_token", &specs.eos}, {"unk_token", &specs.unk}, {"pad_token", &specs.pad}};
  for (auto [key, slot] : slots) {
    if (j.contains(key) && !j[key].is_null()) *slot = parse_token_spec(j[key], file, key);
  }
}

void read_added_tokens_decoder(const json& decoder, const fs::path& file, SpecialTokenSpecs& specs) {
  if (!decoder.is_object()) fail(file.string(), ": added_tokens_decoder must be an object of id -> token");
  for (const auto& [id_text, token] : decoder.items()) {
    int64_t id;
    try {
      size_t used = 0;
      id = std::stoll(id_text, &used);
      if (used != id_text.size() || id < 0) throw std::invalid_argument("not a plain id");
    } catch (const std::exception&) {
      fail(file.string(), ": added_tokens_decoder key '", id_text, "' is not a token id");
    }
    specs.added.emplace_back(id, parse_token_spec(token, file, "added_tokens_decoder." + id_text));
  }
}

// transformers (4.38) takes the special tokens from tokenizer_config.json; when that file has no
// added_tokens_decoder (the older format SD 1.x/2.x ship), special_tokens_map.json overrides it.
SpecialTokenSpecs read_special_token_specs(const fs::path& dir) {
  SpecialTokenSpecs specs;
  fs::path config_path = dir / "tokenizer_config.json";
  fs::path map_path = dir / "special_tokens_map.json";
  bool has_added_tokens_decoder = false;
  if (fs::exists(config_path)) {
    json config = read_json_file(config_path);
    override_special_tokens(config, config_path, specs);
    if (config.contains("added_tokens_decoder")) {
      has_added_tokens_decoder = true;
      read_added_tokens_decoder(config["added_tokens_decoder"], config_path, specs);
    }
  }
  if (!has_added_tokens_decoder && fs::exists(map_path)) {
    override_special_tokens(read_json_file(map_path), map_path, specs);
  }
  return specs;
}

struct Segment {
  std::u32string_view text;
  const ClipTokenizer::AddedToken* token = nullptr;  // set when the segment is an added token
};

// The added token that starts at `at`, the longest one if several do.
const ClipTokenizer::AddedToken* added_token_at(std::u32string_view text, size_t at,
                                                const std::vector<ClipTokenizer::AddedToken>& tokens) {
  const ClipTokenizer::AddedToken* best = nullptr;
  for (const auto& token : tokens) {
    if (text.substr(at).starts_with(token.content) && (!best || token.content.size() > best->content.size())) {
      best = &token;
    }
  }
  return best;
}

// transformers' Trie.split: leftmost, then longest, exact (case-sensitive) matches.
std::vector<Segment> split_on_added_tokens(std::u32string_view text,
                                           const std::vector<ClipTokenizer::AddedToken>& tokens) {
  std::vector<Segment> segments;
  size_t text_start = 0, at = 0;
  while (at < text.size()) {
    const ClipTokenizer::AddedToken* token = added_token_at(text, at, tokens);
    if (token == nullptr) {
      ++at;
      continue;
    }
    if (at > text_start) segments.push_back({text.substr(text_start, at - text_start)});
    segments.push_back({text.substr(at, token->content.size()), token});
    at += token->content.size();
    text_start = at;
  }
  if (text_start < text.size()) segments.push_back({text.substr(text_start)});
  return segments;
}

bool is_python_space(char32_t c) { return unicode::has_flag(c, unicode::kSplitSpace); }

// An added token with rstrip/lstrip eats the whitespace of the text beside it (str.lstrip/rstrip).
void strip_beside_added_tokens(std::vector<Segment>& segments) {
  for (size_t i = 0; i < segments.size(); ++i) {
    const ClipTokenizer::AddedToken* token = segments[i].token;
    if (token == nullptr) continue;
    if (token->rstrip && i + 1 < segments.size() && segments[i + 1].token == nullptr) {
      std::u32string_view& right = segments[i + 1].text;
      while (!right.empty() && is_python_space(right.front())) right.remove_prefix(1);
    }
    if (token->lstrip && i > 0 && segments[i - 1].token == nullptr) {
      std::u32string_view& left = segments[i - 1].text;
      while (!left.empty() && is_python_space(left.back())) left.remove_suffix(1);
    }
  }
}

int64_t lookup_token_id(const TokenSpec& spec, const std::unordered_map<std::string, int64_t>& vocab,
                        const std::vector<ClipTokenizer::AddedToken>& added, const fs::path& dir, const char* role) {
  std::u32string content = unicode::decode_utf8_lossy(spec.content);
  for (const auto& token : added) {
    if (token.content == content) return token.id;
  }
  auto it = vocab.find(spec.content);
  if (it == vocab.end()) {
    fail((dir / "vocab.json").string(), ": ", role, " '", spec.content, "' is not in the vocabulary");
  }
  return it->second;
}

void add_token_once(std::vector<ClipTokenizer::AddedToken>& tokens, const TokenSpec& spec, int64_t id) {
  std::u32string content = unicode::decode_utf8_lossy(spec.content);
  if (content.empty()) return;  // the trie never matches an empty string
  for (const auto& token : tokens) {
    if (token.content == content) return;
  }
  tokens.push_back({std::move(content), id, spec.lstrip, spec.rstrip});
}

}  // namespace

ClipTokenizer ClipTokenizer::load(const std::string& dir_string) {
  fs::path dir(dir_string);
  ClipTokenizer tok;
  tok.vocab_ = read_vocab(dir / "vocab.json");
  tok.merge_ranks_ = read_merges(dir / "merges.txt");
  tok.byte_symbols_ = byte_level_symbols();
  tok.cache_ = std::make_shared<WordCache>();

  SpecialTokenSpecs specs = read_special_token_specs(dir);
  for (const auto& [id, spec] : specs.added) add_token_once(tok.added_tokens_, spec, id);
  struct Role {
    const char* name;
    const TokenSpec& spec;
    int64_t& id;
  };
  const Role roles[] = {{"bos_token", specs.bos, tok.bos_id_},
                        {"eos_token", specs.eos, tok.eos_id_},
                        {"unk_token", specs.unk, tok.unk_id_},
                        {"pad_token", specs.pad, tok.pad_id_}};
  for (const Role& role : roles) {
    role.id = lookup_token_id(role.spec, tok.vocab_, tok.added_tokens_, dir, role.name);
    add_token_once(tok.added_tokens_, role.spec, role.id);
  }

  // Ids are looked up in the added tokens first, as convert_tokens_to_ids does.
  for (const auto& token : tok.added_tokens_) tok.vocab_[unicode::encode_utf8(token.content)] = token.id;

  int64_t max_id = 0;
  for (const auto& [token, id] : tok.vocab_) max_id = std::max(max_id, id);
  tok.vocab_size_ = static_cast<size_t>(max_id) + 1;
  return tok;
}

std::vector<int64_t> ClipTokenizer::encode_untruncated(const std::string& text) const {
  std::u32string decoded = unicode::decode_utf8_lossy(text);
  std::vector<Segment> segments = split_on_added_tokens(decoded, added_tokens_);
  strip_beside_added_tokens(segments);
  std::vector<int64_t> ids{bos_id_};
  for (const Segment& segment : segments) {
    if (segment.token != nullptr) {
      ids.push_back(segment.token->id);
    } else {
      append_text_ids(segment.text, ids);
    }
  }
  ids.push_back(eos_id_);
  return ids;
}

std::vector<int64_t> ClipTokenizer::encode(const std::string& text, int max_length) const {
  SDRT_CHECK(max_length >= 2, "ClipTokenizer::encode: max_length ", max_length, " leaves no room for BOS and EOS");
  std::vector<int64_t> ids = encode_untruncated(text);
  size_t limit = static_cast<size_t>(max_length);
  if (ids.size() > limit) {
    ids.resize(limit - 1);  // keeps BOS and the first max_length - 2 tokens
    ids.push_back(eos_id_);
  }
  ids.resize(limit, pad_id_);
  return ids;
}

void ClipTokenizer::append_text_ids(std::u32string_view text, std::vector<int64_t>& ids) const {
  std::u32string cleaned = clean_text_like_bert(text);
  for (const std::u32string& word : split_clip_words(cleaned)) append_word_ids(unicode::encode_utf8(word), ids);
}

void ClipTokenizer::append_word_ids(const std::string& word, std::vector<int64_t>& ids) const {
  // CLIPTokenizer seeds its BPE cache with the two special strings, so when the pattern matches
  // one (e.g. from "<|ENDOFTEXT|>" after lowercasing) it maps to its id without "</w>".
  if (word == kStartOfText || word == kEndOfText) {
    ids.push_back(id_or_unk(word));
    return;
  }
  {
    std::lock_guard<std::mutex> lock(cache_->mutex);
    auto it = cache_->ids.find(word);
    if (it != cache_->ids.end()) {
      ids.insert(ids.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  std::vector<int64_t> word_ids = bpe_word_ids(word);
  ids.insert(ids.end(), word_ids.begin(), word_ids.end());
  std::lock_guard<std::mutex> lock(cache_->mutex);
  if (cache_->ids.size() >= WordCache::kMaxEntries) cache_->ids.clear();
  cache_->ids.emplace(word, std::move(word_ids));
}

std::vector<int64_t> ClipTokenizer::bpe_word_ids(const std::string& word) const {
  std::vector<int64_t> ids;
  for (const std::string& symbol : bpe(word)) ids.push_back(id_or_unk(symbol));
  return ids;
}

// CLIP's BPE: the word's bytes as byte-level symbols, "</w>" on the last; then, while some
// adjacent pair has a merge rank, merge every occurrence (left to right) of the best-ranked one.
std::vector<std::string> ClipTokenizer::bpe(const std::string& word) const {
  std::vector<std::string> symbols;
  symbols.reserve(word.size());
  for (unsigned char byte : word) symbols.push_back(byte_symbols_[byte]);
  if (symbols.empty()) return symbols;
  symbols.back() += kWordEnd;

  while (symbols.size() > 1) {
    int best_rank = std::numeric_limits<int>::max();
    size_t best_at = 0;
    for (size_t i = 0; i + 1 < symbols.size(); ++i) {
      auto it = merge_ranks_.find(merge_key(symbols[i], symbols[i + 1]));
      if (it != merge_ranks_.end() && it->second < best_rank) {
        best_rank = it->second;
        best_at = i;
      }
    }
    if (best_rank == std::numeric_limits<int>::max()) break;
    const std::string first = symbols[best_at], second = symbols[best_at + 1];
    std::vector<std::string> merged;
    merged.reserve(symbols.size());
    for (size_t i = 0; i < symbols.size(); ++i) {
      if (i + 1 < symbols.size() && symbols[i] == first && symbols[i + 1] == second) {
        merged.push_back(first + second);
        ++i;
      } else {
        merged.push_back(std::move(symbols[i]));
      }
    }
    symbols = std::move(merged);
  }
  return symbols;
}

int64_t ClipTokenizer::id_or_unk(const std::string& symbol) const {
  auto it = vocab_.find(symbol);
  return it != vocab_.end() ? it->second : unk_id_;
}

}  // namespace sdrt
