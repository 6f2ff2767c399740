#include "tokenizer/bpe_trainer.h"

#include <omp.h>

#include <algorithm>
#include <queue>
#include <unordered_map>
#include <unordered_set>

#include "core/error.h"
#include "core/threads.h"
#include "tokenizer/mapped_file.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/unicode.h"

namespace txs {

using ordered_json = nlohmann::ordered_json;

namespace {

// The parts of the tokenizer.json that do not depend on what was learned.
ordered_json skeleton(const std::vector<std::string>& specials) {
  const ordered_json byte_level = {
      {"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", true}};
  ordered_json j;
  j["version"] = "1.0";
  j["truncation"] = nullptr;
  j["padding"] = nullptr;
  j["added_tokens"] = ordered_json::array();
  for (size_t i = 0; i < specials.size(); i++)
    j["added_tokens"].push_back({{"id", int64_t(i)},
                                 {"content", specials[i]},
                                 {"single_word", false},
                                 {"lstrip", false},
                                 {"rstrip", false},
                                 {"normalized", false},
                                 {"special", true}});
  j["normalizer"] = {{"type", "NFC"}};
  j["pre_tokenizer"] = byte_level;
  j["post_processor"] = byte_level;
  j["decoder"] = byte_level;
  j["model"] = {{"type", "BPE"},
                {"dropout", nullptr},
                {"unk_token", nullptr},
                {"continuing_subword_prefix", nullptr},
                {"end_of_word_suffix", nullptr},
                {"fuse_unk", false},
                {"byte_fallback", false},
                {"ignore_merges", false},
                {"vocab", ordered_json::object()},
                {"merges", ordered_json::array()}};
  return j;
}

using WordCounts = std::unordered_map<std::string, int64_t>;

// Counts the pre-tokens of one text in parallel pieces (cut where the tokenizer says it is exact).
void count_words(const Tokenizer& pre, std::string_view text, WordCounts& total) {
  std::vector<size_t> cuts = pre.safe_cuts(text, 1 << 20);
  cuts.insert(cuts.begin(), 0);
  cuts.push_back(text.size());
  const int pieces = int(cuts.size()) - 1;
  const int threads = std::max(1, std::min(num_threads(), pieces));
  std::vector<WordCounts> local(static_cast<size_t>(threads));
  std::vector<std::string> errors(cuts.size() - 1);
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
  for (int p = 0; p < pieces; p++) {
    WordCounts& counts = local[size_t(omp_get_thread_num())];
    try {
      pre.pre_tokenize(
          text.substr(cuts[size_t(p)], cuts[size_t(p) + 1] - cuts[size_t(p)]),
          [&](std::string_view piece) { counts[std::string(piece)]++; }, [](int32_t) {});
    } catch (const std::exception& e) {
      errors[size_t(p)] = e.what();
    }
  }
  for (auto& e : errors)
    if (!e.empty()) throw Error(e);
  for (auto& counts : local)
    for (auto& [word, n] : counts) total[word] += n;
}

struct Word {
  std::vector<int32_t> syms;
  int64_t count;
};

uint64_t pack(int32_t a, int32_t b) { return uint64_t(uint32_t(a)) << 32 | uint32_t(b); }

BpeTrainerResult learn(WordCounts&& counts, const BpeTrainerOptions& options, int64_t input_bytes) {
  const std::vector<std::string>& specials = options.special_tokens;
  const int64_t base = int64_t(specials.size()) + 256;
  if (options.vocab_size < base)
    fail("--vocab-size {} is too small: the {} special tokens and 256 bytes need {}", options.vocab_size,
         specials.size(), base);

  // Vocabulary: special tokens, then the 256 bytes in GPT-2's order (printable characters first).
  std::vector<std::string> token;  // raw bytes of each id
  std::unordered_map<std::string, int32_t> id_of;
  for (const std::string& s : specials) {
    id_of.emplace(s, int32_t(token.size()));
    token.push_back(s);
  }
  std::vector<int> bytes(256);
  for (int b = 0; b < 256; b++) bytes[size_t(b)] = b;
  std::sort(bytes.begin(), bytes.end(),
            [](int x, int y) { return unicode::byte_to_char(uint8_t(x)) < unicode::byte_to_char(uint8_t(y)); });
  int32_t byte_id[256];
  for (int b : bytes) {
    const std::string s(1, char(b));
    // A one-byte special token would already own these bytes; reuse its id then.
    auto it = id_of.find(s);
    if (it != id_of.end()) {
      byte_id[b] = it->second;
      continue;
    }
    byte_id[b] = int32_t(token.size());
    id_of.emplace(s, int32_t(token.size()));
    token.push_back(s);
  }

  // Words as symbol sequences, in a fixed order (sorted) so that nothing depends on hash order.
  std::vector<std::pair<std::string, int64_t>> sorted(counts.begin(), counts.end());
  counts.clear();
  std::sort(sorted.begin(), sorted.end());
  std::vector<Word> words;
  words.reserve(sorted.size());
  for (auto& [w, n] : sorted) {
    Word word{{}, n};
    for (char c : w) word.syms.push_back(byte_id[uint8_t(c)]);
    words.push_back(std::move(word));
  }
  BpeTrainerResult result;
  result.words = int64_t(words.size());
  result.input_bytes = input_bytes;
  sorted.clear();
  sorted.shrink_to_fit();

  // Pair statistics: occurrences weighted by word count, and which words hold each pair.
  std::unordered_map<uint64_t, int64_t> pair_count;
  std::unordered_map<uint64_t, std::vector<int32_t>> pair_words;
  for (size_t w = 0; w < words.size(); w++) {
    const auto& s = words[w].syms;
    for (size_t i = 0; i + 1 < s.size(); i++) {
      const uint64_t p = pack(s[i], s[i + 1]);
      pair_count[p] += words[w].count;
      auto& list = pair_words[p];
      if (list.empty() || list.back() != int32_t(w)) list.push_back(int32_t(w));
    }
  }
  // Max-heap by count; equal counts go to the smaller (left, right) id pair. Entries go stale when a
  // count changes; every change pushes a fresh entry, so a popped entry is current iff its count
  // equals the pair's count now.
  struct Entry {
    int64_t count;
    uint64_t pair;
    bool operator<(const Entry& o) const { return count != o.count ? count < o.count : pair > o.pair; }
  };
  std::priority_queue<Entry> heap;
  for (auto& [p, n] : pair_count) heap.push({n, p});

  std::vector<std::pair<int32_t, int32_t>> merges;
  std::unordered_map<uint64_t, int64_t> delta;
  while (int64_t(token.size()) < options.vocab_size && !heap.empty()) {
    const Entry top = heap.top();
    heap.pop();
    auto pc = pair_count.find(top.pair);
    if (pc == pair_count.end() || pc->second != top.count) continue;  // stale
    if (top.count < std::max<int64_t>(options.min_frequency, 1)) break;
    const int32_t a = int32_t(top.pair >> 32), b = int32_t(uint32_t(top.pair));
    const std::string merged_bytes = token[size_t(a)] + token[size_t(b)];
    int32_t merged;
    auto existing = id_of.find(merged_bytes);
    if (existing != id_of.end()) {
      merged = existing->second;  // reached before through another pair: same token, no new id
    } else {
      merged = int32_t(token.size());
      id_of.emplace(merged_bytes, merged);
      token.push_back(merged_bytes);
    }
    merges.emplace_back(a, b);

    // Rewrite every word holding the pair, left to right, and collect the change in pair counts.
    delta.clear();
    std::vector<int32_t> holders = std::move(pair_words[top.pair]);
    pair_words.erase(top.pair);
    for (int32_t w : holders) {
      Word& word = words[size_t(w)];
      auto& s = word.syms;
      bool has = false;
      for (size_t i = 0; i + 1 < s.size() && !has; i++) has = s[i] == a && s[i + 1] == b;
      if (!has) continue;  // an older entry: the word lost the pair to an earlier merge
      for (size_t i = 0; i + 1 < s.size(); i++) delta[pack(s[i], s[i + 1])] -= word.count;
      std::vector<int32_t> next;
      next.reserve(s.size());
      for (size_t i = 0; i < s.size(); i++) {
        if (i + 1 < s.size() && s[i] == a && s[i + 1] == b) {
          next.push_back(merged);
          i++;
        } else {
          next.push_back(s[i]);
        }
      }
      s.swap(next);
      for (size_t i = 0; i + 1 < s.size(); i++) {
        const uint64_t p = pack(s[i], s[i + 1]);
        delta[p] += word.count;
        if (s[i] == merged || s[i + 1] == merged) {
          auto& list = pair_words[p];
          if (list.empty() || list.back() != w) list.push_back(w);
        }
      }
    }
    for (auto& [p, d] : delta) {
      if (d == 0) continue;
      int64_t& n = pair_count[p];
      n += d;
      if (n > 0) heap.push({n, p});
    }
    pair_count.erase(top.pair);
  }
  result.merges = int64_t(merges.size());

  // The tokenizer.json: byte-level spellings of every token, merges as "left right".
  result.tokenizer = skeleton(specials);
  ordered_json& vocab = result.tokenizer["model"]["vocab"];
  for (size_t id = 0; id < token.size(); id++)
    vocab[id < specials.size() ? token[id] : unicode::bytes_to_byte_level(token[id])] = int64_t(id);
  ordered_json& merge_list = result.tokenizer["model"]["merges"];
  for (auto& [l, r] : merges)
    merge_list.push_back(unicode::bytes_to_byte_level(token[size_t(l)]) + " " +
                         unicode::bytes_to_byte_level(token[size_t(r)]));
  return result;
}

Tokenizer pre_tokenizer_for(const BpeTrainerOptions& options) {
  // A tokenizer with no merges: it pre-tokenises exactly as the trained one will.
  ordered_json j = skeleton(options.special_tokens);
  for (size_t i = 0; i < options.special_tokens.size(); i++) {
    if (options.special_tokens[i].empty()) fail("special tokens must not be empty");
    j["model"]["vocab"][options.special_tokens[i]] = int64_t(i);
  }
  for (int b = 0; b < 256; b++)
    j["model"]["vocab"][unicode::bytes_to_byte_level(std::string(1, char(b)))] =
        int64_t(options.special_tokens.size()) + b;
  return Tokenizer::from_json(nlohmann::json::parse(j.dump()), "(trainer)");
}

}  // namespace

BpeTrainerResult train_bpe_from_texts(const std::vector<std::string>& texts, const BpeTrainerOptions& options) {
  const Tokenizer pre = pre_tokenizer_for(options);
  WordCounts counts;
  int64_t bytes = 0;
  for (const std::string& t : texts) {
    count_words(pre, t, counts);
    bytes += int64_t(t.size());
  }
  return learn(std::move(counts), options, bytes);
}

BpeTrainerResult train_bpe(const std::vector<std::string>& files, const BpeTrainerOptions& options) {
  if (files.empty()) fail("tokenizer training needs at least one input file");
  const Tokenizer pre = pre_tokenizer_for(options);
  WordCounts counts;
  int64_t bytes = 0;
  for (const std::string& path : files) {
    MappedFile file(path);
    const std::string_view text = file.view();
    const size_t valid = unicode::valid_utf8_prefix(text);
    if (valid != text.size()) fail("{}: not valid UTF-8 (byte offset {})", path, valid);
    count_words(pre, text, counts);
    bytes += int64_t(text.size());
  }
  return learn(std::move(counts), options, bytes);
}

}  // namespace txs
