#include "tokenizer/tokenizer.h"

#include <omp.h>

#include <algorithm>
#include <atomic>
#include <climits>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <queue>
#include <sstream>
#include <unordered_map>

#include "core/error.h"
#include "core/json.h"
#include "core/threads.h"
#include "tokenizer/regex.h"
#include "tokenizer/unicode.h"

namespace txs {

using json = nlohmann::json;
using unicode::NormalForm;

namespace {

// Ids above this are rejected at load time: a corrupt id must not make us allocate gigabytes.
constexpr int64_t kMaxId = int64_t(1) << 26;

struct AddedToken {
  int32_t id = -1;
  std::string content;
  bool special = false, normalized = true, lstrip = false, rstrip = false, single_word = false;
};

// Leftmost-longest matching of a set of byte strings (Hugging Face uses Aho-Corasick with the same
// match kind). A plain trie walked from each candidate start is enough for the handful of added tokens
// real tokenizers have; `first_` skips positions whose byte starts no token.
class TokenTrie {
 public:
  void add(std::string_view s, int32_t value) {
    if (s.empty()) return;
    int32_t node = 0;
    if (nodes_.empty()) nodes_.emplace_back();
    for (char ch : s) {
      const uint8_t b = uint8_t(ch);
      auto& edges = nodes_[node].edges;
      auto it = std::lower_bound(edges.begin(), edges.end(), std::pair<uint8_t, int32_t>(b, INT32_MIN));
      if (it != edges.end() && it->first == b) {
        node = it->second;
      } else {
        const int32_t child = int32_t(nodes_.size());
        edges.insert(it, {b, child});
        nodes_.emplace_back();
        node = child;
      }
    }
    nodes_[node].value = value;
    first_[uint8_t(s[0])] = true;
  }
  bool empty() const { return nodes_.empty(); }
  // Finds the leftmost, then longest, match starting at or after `from`.
  bool find(std::string_view text, size_t from, size_t& begin, size_t& end, int32_t& value) const {
    if (nodes_.empty()) return false;
    for (size_t s = from; s < text.size(); s++) {
      if (!first_[uint8_t(text[s])]) continue;
      int32_t node = 0, best = -1;
      size_t best_end = 0;
      for (size_t i = s; i < text.size(); i++) {
        const auto& edges = nodes_[node].edges;
        auto it = std::lower_bound(edges.begin(), edges.end(),
                                   std::pair<uint8_t, int32_t>(uint8_t(text[i]), INT32_MIN));
        if (it == edges.end() || it->first != uint8_t(text[i])) break;
        node = it->second;
        if (nodes_[node].value >= 0) best = nodes_[node].value, best_end = i + 1;
      }
      if (best >= 0) {
        begin = s, end = best_end, value = best;
        return true;
      }
    }
    return false;
  }

 private:
  struct Node {
    std::vector<std::pair<uint8_t, int32_t>> edges;  // sorted by byte
    int32_t value = -1;
  };
  std::vector<Node> nodes_;
  bool first_[256] = {};
};

// (left id, right id) -> (rank, merged id), open addressing: the hottest lookup of encoding.
class MergeTable {
 public:
  void build(const std::vector<std::pair<uint64_t, std::pair<int32_t, int32_t>>>& entries) {
    size_t cap = 16;
    while (cap < entries.size() * 2) cap *= 2;
    mask_ = cap - 1;
    keys_.assign(cap, kEmpty);
    values_.assign(cap, {0, 0});
    for (auto& [key, value] : entries) {
      size_t slot = hash(key) & mask_;
      while (keys_[slot] != kEmpty && keys_[slot] != key) slot = (slot + 1) & mask_;
      keys_[slot] = key;
      values_[slot] = value;  // a repeated pair keeps its last rank, as Hugging Face's map does
    }
  }
  bool find(int32_t a, int32_t b, int32_t& rank, int32_t& merged) const {
    if (keys_.empty()) return false;
    const uint64_t key = pack(a, b);
    for (size_t slot = hash(key) & mask_;; slot = (slot + 1) & mask_) {
      if (keys_[slot] == key) {
        rank = values_[slot].first, merged = values_[slot].second;
        return true;
      }
      if (keys_[slot] == kEmpty) return false;
    }
  }
  static uint64_t pack(int32_t a, int32_t b) { return uint64_t(uint32_t(a)) << 32 | uint32_t(b); }

 private:
  static constexpr uint64_t kEmpty = ~uint64_t(0);
  static size_t hash(uint64_t k) { return size_t((k * 0x9E3779B97F4A7C15ull) >> 17); }
  std::vector<uint64_t> keys_;
  std::vector<std::pair<int32_t, int32_t>> values_;
  size_t mask_ = 0;
};

// FNV-1a, 64 bit: a stable content hash (not a security measure).
struct Fnv {
  uint64_t h = 0xcbf29ce484222325ull;
  void bytes(std::string_view s) {
    for (char c : s) h = (h ^ uint8_t(c)) * 0x100000001b3ull;
  }
  void field(std::string_view s) {
    num(int64_t(s.size()));
    bytes(s);
  }
  void num(int64_t v) {
    for (int i = 0; i < 8; i++) h = (h ^ uint8_t(uint64_t(v) >> (8 * i))) * 0x100000001b3ull;
  }
};

struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};

std::atomic<uint64_t> g_next_serial{1};

}  // namespace

struct Tokenizer::Impl {
  std::string origin;
  uint64_t serial = g_next_serial++;  // identifies this tokenizer to the per-thread BPE caches

  std::vector<NormalForm> normalizers;  // applied in order
  bool add_prefix_space = false;
  std::unique_ptr<Regex> split;  // null: the whole piece is one pre-token (ByteLevel use_regex=false)
  bool chunkable = false;        // safe_cuts() is valid for this configuration

  // Vocabulary: bytes of each id (empty + !present for holes), and bytes -> id for BPE tokens.
  std::vector<std::string> id_bytes;
  std::vector<uint8_t> id_present;
  std::unordered_map<std::string, int32_t, StringHash, std::equal_to<>> model_ids;  // by raw bytes
  int32_t byte_id[256];  // the single-byte token of each byte, -1 if the vocabulary lacks it
  MergeTable merges;
  std::vector<std::pair<int32_t, int32_t>> merge_list;  // for the hash
  int32_t unk_id = -1;
  bool fuse_unk = false, ignore_merges = false;

  std::vector<AddedToken> added;
  TokenTrie raw_trie, normalized_trie;  // values index `added`
  int32_t eos = -1;
  std::string hash;

  // ---- encoding ----
  void encode_valid(std::string_view text, std::vector<int32_t>& out) const;
  template <class OnPiece, class OnAdded>
  void walk(std::string_view text, OnPiece on_piece, OnAdded on_added) const;
  void bpe_cached(std::string_view word, std::vector<int32_t>& out) const;
  void bpe(std::string_view word, std::vector<int32_t>& out) const;
  template <class OnText, class OnToken>
  void split_added(const TokenTrie& trie, std::string_view text, OnText on_text, OnToken on_token) const;
  void finish(const std::string& pattern);
};

// ------------------------------------------------------------------------------------------------
// Encoding

// Per-thread cache of BPE results by pre-token: text repeats its words, so most pre-tokens are seen
// before. A flat open-addressing table whose keys and ids live in two arenas (no allocation per
// entry). Tied to one tokenizer at a time through its serial number; emptied when full.
namespace {
constexpr size_t kCacheMaxWord = 64;         // longer pre-tokens are rare; they skip the cache
constexpr size_t kCacheMinSlots = size_t(1) << 12, kCacheMaxSlots = size_t(1) << 19;  // at most half used

uint64_t word_hash(std::string_view s) {
  uint64_t h = 0x9E3779B97F4A7C15ull ^ s.size();
  size_t i = 0;
  for (; i + 8 <= s.size(); i += 8) {
    uint64_t w;
    std::memcpy(&w, s.data() + i, 8);
    h = (h ^ w) * 0xBF58476D1CE4E5B9ull;
    h ^= h >> 31;
  }
  uint64_t w = 0;
  std::memcpy(&w, s.data() + i, s.size() - i);
  h = (h ^ w) * 0x94D049BB133111EBull;
  return h ^ (h >> 29);
}

struct BpeCache {
  struct Slot {
    uint64_t hash;
    uint32_t key_offset, ids_offset;
    uint16_t key_size, ids_size;  // key_size 0: empty slot
  };
  uint64_t owner = 0;
  std::vector<Slot> slots;
  std::string keys;
  std::vector<int32_t> ids;
  size_t used = 0;

  void reset(uint64_t new_owner) {
    owner = new_owner;
    slots.assign(kCacheMinSlots, Slot{0, 0, 0, 0, 0});
    keys.clear();
    ids.clear();
    used = 0;
  }
  // Doubles the table (re-placing every entry), or starts over once it is at its largest.
  void grow() {
    if (slots.size() >= kCacheMaxSlots) return reset(owner);
    std::vector<Slot> old(slots.size() * 2, Slot{0, 0, 0, 0, 0});
    old.swap(slots);
    const size_t mask = slots.size() - 1;
    for (const Slot& e : old) {
      if (e.key_size == 0) continue;
      size_t i = size_t(e.hash) & mask;
      while (slots[i].key_size != 0) i = (i + 1) & mask;
      slots[i] = e;
    }
  }
};
thread_local BpeCache t_cache;
}  // namespace

void Tokenizer::Impl::bpe_cached(std::string_view word, std::vector<int32_t>& out) const {
  if (word.size() > kCacheMaxWord) return bpe(word, out);
  BpeCache& cache = t_cache;
  if (cache.owner != serial) cache.reset(serial);
  if (cache.used >= cache.slots.size() / 2) cache.grow();
  const uint64_t h = word_hash(word);
  const size_t mask = cache.slots.size() - 1;
  size_t slot = size_t(h) & mask;
  for (;; slot = (slot + 1) & mask) {
    const BpeCache::Slot& e = cache.slots[slot];
    if (e.key_size == 0) break;
    if (e.hash == h && e.key_size == word.size() &&
        std::memcmp(cache.keys.data() + e.key_offset, word.data(), word.size()) == 0) {
      out.insert(out.end(), cache.ids.begin() + e.ids_offset, cache.ids.begin() + e.ids_offset + e.ids_size);
      return;
    }
  }
  const size_t start = out.size();
  bpe(word, out);
  // A pre-token of at most 64 bytes has at most 64 ids (unk fusing only shortens).
  cache.slots[slot] = {h, uint32_t(cache.keys.size()), uint32_t(cache.ids.size()), uint16_t(word.size()),
                       uint16_t(out.size() - start)};
  cache.keys.append(word);
  cache.ids.insert(cache.ids.end(), out.begin() + ptrdiff_t(start), out.end());
  cache.used++;
}

// Byte-pair merging of one pre-token: repeatedly merge the adjacent pair with the lowest merge rank,
// the leftmost one on ties, until no adjacent pair has a merge (what Hugging Face's BPE computes).
void Tokenizer::Impl::bpe(std::string_view word, std::vector<int32_t>& out) const {
  if (ignore_merges) {
    // Llama-3-style tokenizers: a pre-token that is itself in the vocabulary is taken whole.
    auto it = model_ids.find(word);
    if (it != model_ids.end()) {
      out.push_back(it->second);
      return;
    }
  }
  // Initial symbols: one per byte. A byte missing from the vocabulary becomes the unknown token (runs
  // of them fused into one when fuse_unk), or is dropped when there is none, as in Hugging Face.
  std::vector<int32_t> sym;
  sym.reserve(word.size());
  bool last_unk = false;
  for (char ch : word) {
    const int32_t id = byte_id[uint8_t(ch)];
    if (id >= 0) {
      sym.push_back(id);
      last_unk = false;
    } else if (unk_id >= 0) {
      if (!(fuse_unk && last_unk)) sym.push_back(unk_id);
      last_unk = true;
    }
  }
  const size_t n = sym.size();
  if (n <= 1) {
    out.insert(out.end(), sym.begin(), sym.end());
    return;
  }
  if (n <= 128) {
    // Short words (nearly all): keep each adjacent pair's rank in an array and scan it for the
    // minimum; after a merge only the two neighbouring pairs change.
    int32_t rank[128], merged[128];
    size_t len = n;
    for (size_t i = 0; i + 1 < len; i++)
      if (!merges.find(sym[i], sym[i + 1], rank[i], merged[i])) rank[i] = INT32_MAX;
    while (len > 1) {
      size_t best = 0;
      for (size_t i = 1; i + 1 < len; i++)
        if (rank[i] < rank[best]) best = i;
      if (rank[best] == INT32_MAX) break;
      sym[best] = merged[best];
      // Remove symbol best+1 and pair best+1 (its pair with the next symbol).
      for (size_t i = best + 1; i + 1 < len; i++) sym[i] = sym[i + 1];
      for (size_t i = best + 1; i + 2 < len; i++) rank[i] = rank[i + 1], merged[i] = merged[i + 1];
      len--;
      if (best + 1 < len && !merges.find(sym[best], sym[best + 1], rank[best], merged[best])) rank[best] = INT32_MAX;
      if (best > 0 && !merges.find(sym[best - 1], sym[best], rank[best - 1], merged[best - 1]))
        rank[best - 1] = INT32_MAX;
    }
    out.insert(out.end(), sym.begin(), sym.begin() + ptrdiff_t(len));
    return;
  }
  // Long words (runs of digits or punctuation, base64 blobs): a linked list of symbols and a heap of
  // candidate merges ordered by (rank, position); stale candidates are recognised and skipped.
  std::vector<int32_t> prev(n), next(n);
  for (size_t i = 0; i < n; i++) prev[i] = int32_t(i) - 1, next[i] = i + 1 < n ? int32_t(i + 1) : -1;
  struct Candidate {
    int32_t rank, pos, left, right, merged;
    bool operator>(const Candidate& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
  };
  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<>> heap;
  auto push = [&](int32_t pos) {
    if (pos < 0 || next[pos] < 0) return;
    int32_t r, m;
    if (merges.find(sym[pos], sym[next[pos]], r, m)) heap.push({r, pos, sym[pos], sym[next[pos]], m});
  };
  for (size_t i = 0; i + 1 < n; i++) push(int32_t(i));
  while (!heap.empty()) {
    const Candidate c = heap.top();
    heap.pop();
    const int32_t right = next[c.pos];
    // Symbols only ever grow, so a candidate is current iff both of its symbols are still there.
    if (sym[c.pos] != c.left || right < 0 || sym[right] != c.right) continue;
    sym[c.pos] = c.merged;
    sym[right] = -1;
    next[c.pos] = next[right];
    if (next[right] >= 0) prev[next[right]] = c.pos;
    push(prev[c.pos]);
    push(c.pos);
  }
  for (int32_t i = 0; i >= 0; i = next[i]) out.push_back(sym[i]);
}

// Splits `text` around the added tokens of `trie`, applying each token's lstrip / rstrip / single_word
// flags as Hugging Face does: lstrip and rstrip swallow the whitespace next to the token, single_word
// ignores a match that touches a letter or digit.
template <class OnText, class OnToken>
void Tokenizer::Impl::split_added(const TokenTrie& trie, std::string_view text, OnText on_text,
                                  OnToken on_token) const {
  size_t done = 0, from = 0, begin, end;
  int32_t index;
  using unicode::is_word_char;
  while (trie.find(text, from, begin, end, index)) {
    const AddedToken& tok = added[size_t(index)];
    if (tok.single_word) {
      bool left_ok = true, right_ok = true;
      if (begin > 0) {
        size_t i = begin - 1;
        while (i > 0 && (uint8_t(text[i]) & 0xC0) == 0x80) i--;
        left_ok = !is_word_char(unicode::next_code_point(text, i));
      }
      if (end < text.size()) {
        size_t i = end;
        right_ok = !is_word_char(unicode::next_code_point(text, i));
      }
      if (!left_ok || !right_ok) {
        from = begin + 1;
        while (from < text.size() && (uint8_t(text[from]) & 0xC0) == 0x80) from++;
        continue;
      }
    }
    if (tok.lstrip) {
      size_t b = begin;
      while (b > done) {
        size_t i = b - 1;
        while (i > done && (uint8_t(text[i]) & 0xC0) == 0x80) i--;
        size_t j = i;
        if (!unicode::is_white_space(unicode::next_code_point(text, j))) break;
        b = i;
      }
      begin = b;
    }
    if (tok.rstrip) {
      while (end < text.size()) {
        size_t j = end;
        if (!unicode::is_white_space(unicode::next_code_point(text, j))) break;
        end = j;
      }
    }
    if (begin > done) on_text(text.substr(done, begin - done));
    on_token(tok.id);
    done = from = end;
  }
  if (done < text.size()) on_text(text.substr(done));
}

// Hugging Face's pre-tokenisation: added tokens, normaliser, split pattern. Calls on_piece(bytes) for
// each pre-token and on_added(id) for each added token, in text order.
template <class OnPiece, class OnAdded>
void Tokenizer::Impl::walk(std::string_view text, OnPiece on_piece, OnAdded on_added) const {
  std::unique_ptr<Regex::Matcher> matcher;
  if (split) matcher = std::make_unique<Regex::Matcher>(*split);
  // 3. The split pattern, Hugging Face's "Isolated" behaviour: matches and the gaps between them are
  //    all pre-tokens.
  auto split_pieces = [&](std::string_view piece) {
    if (piece.empty()) return;
    std::string prefixed;
    if (add_prefix_space && piece[0] != ' ') {
      prefixed = " " + std::string(piece);
      piece = prefixed;
    }
    if (!matcher) return on_piece(piece);
    size_t pos = 0, begin, end;
    while (pos < piece.size() && matcher->find(piece, pos, begin, end)) {
      if (begin > pos) on_piece(piece.substr(pos, begin - pos));
      if (end == begin) {  // an empty match: take one character and go on after it
        size_t next = begin;
        unicode::next_code_point(piece, next);
        on_piece(piece.substr(begin, next - begin));
        pos = next;
        continue;
      }
      on_piece(piece.substr(begin, end - begin));
      pos = end;
    }
    if (pos < piece.size()) on_piece(piece.substr(pos));
  };
  // 2. Normalise what lies between raw added tokens, then match the normalised added tokens.
  auto after_raw_split = [&](std::string_view piece) {
    std::string normalized;
    if (!normalizers.empty()) {
      normalized = std::string(piece);
      for (NormalForm f : normalizers) normalized = unicode::normalize(f, normalized);
      piece = normalized;
    }
    if (normalized_trie.empty()) return split_pieces(piece);
    split_added(normalized_trie, piece, split_pieces, on_added);
  };
  // 1. Added tokens that are matched on the raw text.
  if (raw_trie.empty()) return after_raw_split(text);
  split_added(raw_trie, text, after_raw_split, on_added);
}

void Tokenizer::Impl::encode_valid(std::string_view text, std::vector<int32_t>& out) const {
  walk(
      text, [&](std::string_view piece) { bpe_cached(piece, out); }, [&](int32_t id) { out.push_back(id); });
}

void Tokenizer::pre_tokenize(std::string_view text, const std::function<void(std::string_view)>& on_piece,
                             const std::function<void(int32_t)>& on_added) const {
  const size_t valid = unicode::valid_utf8_prefix(text);
  if (valid != text.size()) fail("text is not valid UTF-8 (byte offset {})", valid);
  impl_->walk(text, on_piece, on_added);
}

void Tokenizer::encode_into(std::string_view text, std::vector<int32_t>& out) const {
  const size_t valid = unicode::valid_utf8_prefix(text);
  if (valid != text.size()) fail("text is not valid UTF-8 (byte offset {})", valid);
  impl_->encode_valid(text, out);
}

std::vector<int32_t> Tokenizer::encode(std::string_view text) const {
  std::vector<int32_t> out;
  const size_t valid = unicode::valid_utf8_prefix(text);
  if (valid != text.size()) fail("text is not valid UTF-8 (byte offset {})", valid);
  const int threads = num_threads();
  constexpr size_t kParallelFrom = size_t(1) << 20;
  if (threads <= 1 || text.size() < kParallelFrom || !impl_->chunkable) {
    out.reserve(text.size() / 3);
    impl_->encode_valid(text, out);
    return out;
  }
  // Cut into ~8 pieces per thread at safe places, encode them in parallel, concatenate in order.
  std::vector<size_t> cuts = safe_cuts(text, std::max<size_t>(text.size() / size_t(threads * 8), 64 << 10));
  cuts.insert(cuts.begin(), 0);
  cuts.push_back(text.size());
  const int pieces = int(cuts.size()) - 1;
  std::vector<std::vector<int32_t>> parts(cuts.size() - 1);
  std::vector<std::string> errors(cuts.size() - 1);
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
  for (int p = 0; p < pieces; p++) {
    try {
      parts[size_t(p)].reserve((cuts[size_t(p) + 1] - cuts[size_t(p)]) / 3);
      impl_->encode_valid(text.substr(cuts[size_t(p)], cuts[size_t(p) + 1] - cuts[size_t(p)]), parts[size_t(p)]);
    } catch (const std::exception& e) {  // exceptions must not leave an OpenMP region
      errors[size_t(p)] = e.what();
    }
  }
  for (auto& e : errors)
    if (!e.empty()) throw Error(e);
  size_t total = 0;
  for (auto& p : parts) total += p.size();
  out.reserve(total);
  for (auto& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

namespace {
bool is_printable_ascii(char c) { return c >= 0x21 && c <= 0x7E; }
bool is_ascii_cut_space(char c) { return c == ' ' || c == '\n' || c == '\r' || c == '\t'; }
}  // namespace

size_t Tokenizer::next_safe_cut(std::string_view text, size_t pos) const {
  if (!impl_->chunkable) return text.size();
  for (size_t p = std::max<size_t>(pos, 1); p < text.size(); p++)
    if (is_ascii_cut_space(text[p]) && is_printable_ascii(text[p - 1])) return p;
  return text.size();
}

std::vector<size_t> Tokenizer::safe_cuts(std::string_view text, size_t target_bytes) const {
  std::vector<size_t> cuts;
  if (!impl_->chunkable) return cuts;
  target_bytes = std::max<size_t>(target_bytes, 1);
  for (size_t pos = target_bytes; pos < text.size();) {
    const size_t cut = next_safe_cut(text, pos);
    if (cut >= text.size()) break;
    cuts.push_back(cut);
    pos = cut + target_bytes;
  }
  return cuts;
}

// ------------------------------------------------------------------------------------------------
// Decoding

bool Tokenizer::has_id(int32_t id) const {
  return id >= 0 && size_t(id) < impl_->id_present.size() && impl_->id_present[size_t(id)];
}

const std::string& Tokenizer::token_bytes(int32_t id) const {
  if (!has_id(id)) fail("token id {} is not in the vocabulary of {} (size {})", id, impl_->origin, vocab_size());
  return impl_->id_bytes[size_t(id)];
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids) const {
  std::string out;
  for (int32_t id : ids) out += token_bytes(id);
  return out;
}

std::string Tokenizer::StreamDecoder::push(int32_t id) {
  pending_ += tok_->token_bytes(id);
  // Everything is ready except an unfinished UTF-8 sequence at the very end.
  const size_t hold = unicode::incomplete_utf8_tail(pending_);
  std::string ready = pending_.substr(0, pending_.size() - hold);
  pending_.erase(0, pending_.size() - hold);
  return ready;
}

std::string Tokenizer::StreamDecoder::flush() {
  std::string rest;
  rest.swap(pending_);
  return rest;
}

// ------------------------------------------------------------------------------------------------
// Queries

int64_t Tokenizer::vocab_size() const { return int64_t(impl_->id_bytes.size()); }
int32_t Tokenizer::eos_id() const { return impl_->eos; }
std::string Tokenizer::hash() const { return impl_->hash; }
const std::string& Tokenizer::origin() const { return impl_->origin; }

std::optional<int32_t> Tokenizer::token_to_id(std::string_view text) const {
  for (const AddedToken& t : impl_->added)
    if (t.content == text) return t.id;
  auto it = impl_->model_ids.find(text);
  if (it != impl_->model_ids.end()) return it->second;
  return std::nullopt;
}

// ------------------------------------------------------------------------------------------------
// Loading

void Tokenizer::Impl::finish(const std::string& pattern) {
  for (size_t i = 0; i < added.size(); i++) {
    AddedToken& t = added[i];
    if (t.normalized && !normalizers.empty()) {
      // Normalised added tokens are matched on normalised text, so match their normalised spelling.
      std::string s = t.content;
      for (NormalForm f : normalizers) s = unicode::normalize(f, s);
      normalized_trie.add(s, int32_t(i));
    } else if (t.normalized) {
      normalized_trie.add(t.content, int32_t(i));
    } else {
      raw_trie.add(t.content, int32_t(i));
    }
  }
  // Cutting between a printable ASCII character and an ASCII space, tab, CR or LF is exact with GPT-2's
  // pattern: no alternative can take whitespace after a visible character (a space only ever starts a
  // pre-token), so some pre-token ends at the cut in both cases, and matching after it never looks
  // behind. Normal forms compose nothing across two ASCII characters. It also needs no prefix space
  // added to each piece, and no added token that could span the cut (one holding a visible character
  // followed by whitespace) or that looks across it (lstrip, rstrip, single_word).
  chunkable = split && split->pattern() == gpt2_split_pattern() && !add_prefix_space;
  for (const AddedToken& t : added) {
    if (t.lstrip || t.rstrip || t.single_word) chunkable = false;
    for (size_t i = 1; i < t.content.size(); i++)
      if (is_printable_ascii(t.content[i - 1]) && is_ascii_cut_space(t.content[i])) chunkable = false;
  }

  static const char* const kEosNames[] = {"<|endoftext|>", "<|end_of_text|>", "</s>", "<eos>"};
  for (const char* name : kEosNames) {
    for (const AddedToken& t : added)
      if (t.content == name && eos < 0) eos = t.id;
    if (eos < 0) {
      auto it = model_ids.find(std::string_view(name));
      if (it != model_ids.end()) eos = it->second;
    }
    if (eos >= 0) break;
  }

  Fnv h;
  h.field("transxssm-bpe-v1");
  for (NormalForm f : normalizers) h.field(unicode::normal_form_name(f));
  h.field(add_prefix_space ? "prefix" : "noprefix");
  h.field(pattern);
  h.num(int64_t(id_bytes.size()));
  for (size_t id = 0; id < id_bytes.size(); id++) {
    h.num(id_present[id]);
    h.field(id_bytes[id]);
  }
  for (int b = 0; b < 256; b++) h.num(byte_id[b]);
  for (auto& [a, b] : merge_list) h.num(int64_t(a) << 32 | uint32_t(b));
  for (const AddedToken& t : added) {
    h.num(t.id);
    h.field(t.content);
    h.num(t.special | t.normalized << 1 | t.lstrip << 2 | t.rstrip << 3 | t.single_word << 4);
  }
  h.num(unk_id);
  h.num(fuse_unk | ignore_merges << 1);
  hash = fmt::format("fnv1a64:{:016x}", h.h);
}

namespace {

std::string read_whole_file(const std::string& path, const char* what) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) fail("cannot read {} {}: it is a directory", what, path);
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("cannot read {} {}: {}", what, path, std::strerror(errno));
  in.seekg(0, std::ios::end);
  const std::streamoff size = in.tellg();
  in.seekg(0, std::ios::beg);
  std::string text(size > 0 ? size_t(size) : 0, '\0');
  if (!text.empty()) in.read(text.data(), std::streamsize(text.size()));
  if (!in) fail("cannot read {} {}: read error", what, path);
  return text;
}

NormalForm parse_normal_form(const std::string& type, const std::string& origin) {
  if (type == "NFC") return NormalForm::NFC;
  if (type == "NFD") return NormalForm::NFD;
  if (type == "NFKC") return NormalForm::NFKC;
  if (type == "NFKD") return NormalForm::NFKD;
  fail("{}: unsupported normalizer \"{}\" (supported: NFC, NFD, NFKC, NFKD, Sequence of these)", origin, type);
}

const json& member(const json& obj, const char* key, const std::string& origin, const char* where) {
  if (!obj.is_object() || !obj.contains(key)) fail("{}: {} has no \"{}\"", origin, where, key);
  return obj.at(key);
}

bool flag(const json& obj, const char* key, bool fallback) {
  if (!obj.contains(key) || obj.at(key).is_null()) return fallback;
  return obj.at(key).get<bool>();
}

}  // namespace

Tokenizer Tokenizer::from_json(const json& j, const std::string& origin) {
  auto impl = std::make_shared<Impl>();
  impl->origin = origin;
  std::string pattern;
  try {
    if (!j.is_object()) fail("{}: not a tokenizer.json (the top level is not an object)", origin);
    const json& model = member(j, "model", origin, "the file");
    if (!model.is_object()) fail("{}: \"model\" is not an object", origin);
    std::string type = model.contains("type") ? model.at("type").get<std::string>() : "";
    if (type.empty() && model.contains("merges")) type = "BPE";
    if (type != "BPE") fail("{}: unsupported model type \"{}\" (only byte-level BPE is supported)", origin, type);
    if (!model.contains("merges") || model.at("merges").is_null())
      fail("{}: the BPE model has no \"merges\" list", origin);
    const json& vocab = member(model, "vocab", origin, "the BPE model");
    if (!vocab.is_object()) fail("{}: the BPE model's \"vocab\" is not an object", origin);
    if (model.contains("dropout") && !model.at("dropout").is_null() && model.at("dropout").get<double>() != 0.0)
      fail("{}: BPE dropout is not supported", origin);
    for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"})
      if (model.contains(key) && !model.at(key).is_null() && !model.at(key).get<std::string>().empty())
        fail("{}: BPE option \"{}\" is not supported (byte-level BPE does not use it)", origin, key);
    if (flag(model, "byte_fallback", false)) fail("{}: BPE byte_fallback is not supported", origin);
    impl->fuse_unk = flag(model, "fuse_unk", false);
    impl->ignore_merges = flag(model, "ignore_merges", false);

    // Normaliser.
    if (j.contains("normalizer") && !j.at("normalizer").is_null()) {
      const json& n = j.at("normalizer");
      const std::string ntype = member(n, "type", origin, "the normalizer").get<std::string>();
      if (ntype == "Sequence") {
        for (const json& sub : member(n, "normalizers", origin, "the Sequence normalizer"))
          impl->normalizers.push_back(
              parse_normal_form(member(sub, "type", origin, "a normalizer").get<std::string>(), origin));
      } else {
        impl->normalizers.push_back(parse_normal_form(ntype, origin));
      }
    }

    // Pre-tokenizer: ByteLevel (GPT-2 pattern), or Sequence [Split(regex, Isolated), ByteLevel].
    bool byte_level = false;
    auto byte_level_step = [&](const json& p) {
      byte_level = true;
      impl->add_prefix_space = flag(p, "add_prefix_space", true);
      if (flag(p, "use_regex", true)) {
        if (!pattern.empty()) fail("{}: two splitting pre-tokenizers are not supported", origin);
        pattern = gpt2_split_pattern();
      }
    };
    if (j.contains("pre_tokenizer") && !j.at("pre_tokenizer").is_null()) {
      const json& p = j.at("pre_tokenizer");
      const std::string ptype = member(p, "type", origin, "the pre_tokenizer").get<std::string>();
      if (ptype == "ByteLevel") {
        byte_level_step(p);
      } else if (ptype == "Sequence") {
        for (const json& sub : member(p, "pretokenizers", origin, "the Sequence pre_tokenizer")) {
          const std::string stype = member(sub, "type", origin, "a pre_tokenizer").get<std::string>();
          if (stype == "ByteLevel") {
            byte_level_step(sub);
          } else if (stype == "Split") {
            if (byte_level || !pattern.empty())
              fail("{}: a Split pre-tokenizer is supported only once, before ByteLevel", origin);
            const json& pat = member(sub, "pattern", origin, "the Split pre_tokenizer");
            const std::string behavior = sub.value("behavior", std::string("Isolated"));
            if (behavior != "Isolated" || flag(sub, "invert", false))
              fail("{}: Split pre-tokenizer behavior \"{}\"{} is not supported (only Isolated)", origin, behavior,
                   flag(sub, "invert", false) ? " with invert" : "");
            if (pat.contains("Regex")) {
              pattern = spell_out_whitespace(pat.at("Regex").get<std::string>());
            } else if (pat.contains("String")) {
              // A literal: escape it for PCRE2 with \Q...\E.
              pattern = "\\Q" + pat.at("String").get<std::string>() + "\\E";
            } else {
              fail("{}: the Split pre-tokenizer's pattern is neither Regex nor String", origin);
            }
          } else {
            fail("{}: unsupported pre_tokenizer \"{}\" in Sequence", origin, stype);
          }
        }
      } else {
        fail("{}: unsupported pre_tokenizer \"{}\" (only ByteLevel, or Split + ByteLevel)", origin, ptype);
      }
    }
    if (!byte_level) fail("{}: no ByteLevel pre-tokenizer: only byte-level BPE tokenizers are supported", origin);
    if (!pattern.empty()) impl->split = std::make_unique<Regex>(pattern);

    if (j.contains("decoder") && !j.at("decoder").is_null()) {
      const std::string dtype = member(j.at("decoder"), "type", origin, "the decoder").get<std::string>();
      if (dtype != "ByteLevel") fail("{}: unsupported decoder \"{}\" (only ByteLevel)", origin, dtype);
    }

    // Vocabulary. Tokens are stored as the raw bytes they stand for; a token whose spelling is not
    // byte-level (rare, e.g. a special token in the model vocabulary) keeps its UTF-8 spelling, which
    // is what Hugging Face's ByteLevel decoder outputs for it.
    // A float id would be converted with undefined behaviour when out of range; other non-integers get
    // nlohmann's type error (reported as an invalid tokenizer.json below).
    auto json_id = [&](const json& v) -> int64_t {
      if (v.is_number_float()) fail("{}: token id {} is not an integer", origin, json_excerpt(v));
      return v.get<int64_t>();
    };
    int64_t max_id = -1;
    std::vector<std::pair<std::string, int64_t>> entries;
    entries.reserve(vocab.size());
    for (auto it = vocab.begin(); it != vocab.end(); ++it) {
      const int64_t id = json_id(it.value());
      if (id < 0 || id >= kMaxId) fail("{}: token id {} of \"{}\" is out of range", origin, id, it.key());
      entries.emplace_back(it.key(), id);
      max_id = std::max(max_id, id);
    }
    const json& added_json = j.contains("added_tokens") && !j.at("added_tokens").is_null() ? j.at("added_tokens")
                                                                                          : json::array();
    if (!added_json.is_array()) fail("{}: \"added_tokens\" is not a list", origin);
    for (const json& a : added_json) {
      AddedToken t;
      const int64_t id = json_id(member(a, "id", origin, "an added token"));
      if (id < 0 || id >= kMaxId) fail("{}: added token id {} is out of range", origin, id);
      t.id = int32_t(id);
      t.content = member(a, "content", origin, "an added token").get<std::string>();
      if (t.content.empty()) fail("{}: added token {} has empty content", origin, id);
      t.special = flag(a, "special", false);
      t.normalized = flag(a, "normalized", !t.special);
      t.lstrip = flag(a, "lstrip", false);
      t.rstrip = flag(a, "rstrip", false);
      t.single_word = flag(a, "single_word", false);
      impl->added.push_back(std::move(t));
      max_id = std::max(max_id, id);
    }
    // Ids index dense tables: a file must not make a tiny vocabulary allocate gigabytes with one huge sparse
    // id. Ids must be below the number of tokens (vocabulary entries plus added tokens) plus a slack of
    // 65536 for added tokens placed after a padded vocabulary (e.g. ids from 50304 on); at most ~3 MB of
    // unused table entries.
    constexpr int64_t kIdSlack = 65536;
    const int64_t num_tokens = int64_t(entries.size() + added_json.size());
    if (max_id >= num_tokens + kIdSlack)
      fail("{}: token id {} is out of range: ids must be below the number of tokens ({} vocabulary entries + "
           "{} added) + {}", origin, max_id, entries.size(), added_json.size(), kIdSlack);
    impl->id_bytes.assign(size_t(max_id + 1), std::string());
    impl->id_present.assign(size_t(max_id + 1), 0);
    std::unordered_map<std::string, int32_t> by_spelling;  // byte-level spelling -> id, for merges
    by_spelling.reserve(entries.size());
    impl->model_ids.reserve(entries.size());
    for (auto& [spelling, id] : entries) {
      if (impl->id_present[size_t(id)]) fail("{}: token id {} is used twice in the vocabulary", origin, id);
      std::string bytes;
      if (!unicode::byte_level_to_bytes(spelling, bytes)) bytes = spelling;
      impl->id_present[size_t(id)] = 1;
      impl->id_bytes[size_t(id)] = bytes;
      impl->model_ids.emplace(bytes, int32_t(id));
      by_spelling.emplace(spelling, int32_t(id));
    }
    for (const AddedToken& t : impl->added) {
      // Hugging Face looks up added tokens before the model, so an added token owns its id.
      std::string bytes;
      if (!unicode::byte_level_to_bytes(t.content, bytes)) bytes = t.content;
      impl->id_present[size_t(t.id)] = 1;
      impl->id_bytes[size_t(t.id)] = bytes;
    }
    for (int b = 0; b < 256; b++) {
      auto it = by_spelling.find(unicode::bytes_to_byte_level(std::string(1, char(b))));
      impl->byte_id[b] = it == by_spelling.end() ? -1 : it->second;
    }
    if (model.contains("unk_token") && !model.at("unk_token").is_null()) {
      const std::string unk = model.at("unk_token").get<std::string>();
      auto it = by_spelling.find(unk);
      if (it == by_spelling.end()) fail("{}: unk_token \"{}\" is not in the vocabulary", origin, unk);
      impl->unk_id = it->second;
    }
    // Byte-level BPE encodes any text as bytes first: without a token for every byte that valid UTF-8 can
    // contain (and no unk_token) some text would have no encoding and vanish silently. Input is checked to
    // be UTF-8, so the bytes UTF-8 never uses (0xC0, 0xC1, 0xF5-0xFF) may lack tokens (NeoX-20B lacks them).
    if (impl->unk_id < 0)
      for (int b = 0; b < 256; b++)
        if (impl->byte_id[b] < 0 && !(b == 0xC0 || b == 0xC1 || b >= 0xF5))
          fail("{}: the vocabulary has no token for byte 0x{:02x} (\"{}\"): a byte-level BPE vocabulary needs "
               "a single-byte token for every byte of UTF-8 text (or an unk_token)", origin, b,
               unicode::bytes_to_byte_level(std::string(1, char(b))));

    // Merges: "left right" strings, or [left, right] pairs (newer files). Rank = position.
    const json& merges = model.at("merges");
    if (!merges.is_array()) fail("{}: the BPE model's \"merges\" is not a list", origin);
    std::vector<std::pair<uint64_t, std::pair<int32_t, int32_t>>> table;
    table.reserve(merges.size());
    int32_t rank = 0;
    for (const json& m : merges) {
      std::string left, right;
      if (m.is_string()) {
        const std::string s = m.get<std::string>();
        const size_t space = s.find(' ');
        if (space == std::string::npos || s.find(' ', space + 1) != std::string::npos)
          fail("{}: merge {} \"{}\" is not two tokens separated by one space", origin, rank, s);
        left = s.substr(0, space), right = s.substr(space + 1);
      } else if (m.is_array() && m.size() == 2) {
        left = m[0].get<std::string>(), right = m[1].get<std::string>();
      } else {
        fail("{}: merge {} is neither \"a b\" nor [a, b]", origin, rank);
      }
      auto a = by_spelling.find(left), b = by_spelling.find(right), ab = by_spelling.find(left + right);
      if (a == by_spelling.end() || b == by_spelling.end() || ab == by_spelling.end())
        fail("{}: merge {} \"{} {}\": token \"{}\" is not in the vocabulary", origin, rank, left, right,
             a == by_spelling.end() ? left : b == by_spelling.end() ? right : left + right);
      table.push_back({MergeTable::pack(a->second, b->second), {rank, ab->second}});
      impl->merge_list.emplace_back(a->second, b->second);
      rank++;
    }
    impl->merges.build(table);
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    // nlohmann type errors and the like: name the file, keep one line.
    std::string what = e.what();
    std::replace(what.begin(), what.end(), '\n', ' ');
    fail("{}: invalid tokenizer.json: {}", origin, what);
  }
  impl->finish(pattern);
  return Tokenizer(std::move(impl));
}

Tokenizer Tokenizer::from_json_text(std::string_view text, const std::string& origin) {
  json j = try_parse_json_bounded(text);
  if (j.is_discarded()) fail("{}: malformed JSON (or nested deeper than {} levels)", origin, kMaxJsonDepth);
  return from_json(j, origin);
}

Tokenizer Tokenizer::from_vocab_merges(const std::string& vocab_path, const std::string& merges_path) {
  const std::string vocab_text = read_whole_file(vocab_path, "vocabulary");
  json vocab = try_parse_json_bounded(vocab_text);
  if (vocab.is_discarded() || !vocab.is_object()) fail("{}: not a JSON object of token -> id", vocab_path);
  const std::string merges_text = read_whole_file(merges_path, "merges file");
  // merges.txt: an optional "#version" line, then one "left right" pair per line in rank order.
  json merges = json::array();
  std::istringstream lines(merges_text);
  std::string line;
  int64_t line_no = 0;
  while (std::getline(lines, line)) {
    line_no++;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty() || (line_no == 1 && line.rfind("#version", 0) == 0)) continue;
    const size_t space = line.find(' ');
    if (space == std::string::npos || space == 0 || space + 1 == line.size() ||
        line.find(' ', space + 1) != std::string::npos)
      fail("{}:{}: expected \"left right\", got \"{}\"", merges_path, line_no, line.substr(0, 60));
    merges.push_back(line);
  }
  // The equivalent tokenizer.json of GPT-2: ByteLevel without prefix space, no normaliser,
  // <|endoftext|> as the special token when the vocabulary has it.
  json j = json::object();
  j["model"] = json::object();
  j["model"]["type"] = "BPE";
  j["model"]["vocab"] = std::move(vocab);
  j["model"]["merges"] = std::move(merges);
  j["pre_tokenizer"] = json::object({{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}});
  j["decoder"] = json::object({{"type", "ByteLevel"}});
  j["added_tokens"] = json::array();
  const json& v = j["model"]["vocab"];
  if (v.contains("<|endoftext|>") && v.at("<|endoftext|>").is_number_integer())
    j["added_tokens"].push_back(json::object(
        {{"id", v.at("<|endoftext|>")}, {"content", "<|endoftext|>"}, {"special", true}, {"normalized", false}}));
  return from_json(j, vocab_path);
}

Tokenizer Tokenizer::from_file(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (fs::is_directory(path, ec)) {
    if (fs::exists(fs::path(path) / "tokenizer.json")) return from_file((fs::path(path) / "tokenizer.json").string());
    if (fs::exists(fs::path(path) / "vocab.json") && fs::exists(fs::path(path) / "merges.txt"))
      return from_vocab_merges((fs::path(path) / "vocab.json").string(), (fs::path(path) / "merges.txt").string());
    fail("{}: folder has neither tokenizer.json nor vocab.json + merges.txt", path);
  }
  const std::string text = read_whole_file(path, "tokenizer");
  json j = try_parse_json_bounded(text);
  if (j.is_discarded()) fail("{}: malformed JSON (or nested deeper than {} levels)", path, kMaxJsonDepth);
  if (j.is_object() && !(j.contains("model") && j.at("model").is_object())) {
    // A GPT-2 style vocab.json: its merges.txt is beside it.
    const fs::path merges = fs::path(path).parent_path() / "merges.txt";
    if (fs::exists(merges)) return from_vocab_merges(path, merges.string());
  }
  return from_json(j, path);
}

}  // namespace txs
