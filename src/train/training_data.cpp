#include "train/training_data.h"

#include <algorithm>
#include <filesystem>

#include "core/error.h"
#include "core/rng.h"
#include "model/safetensors.h"
#include "tokenizer/tokenizer.h"

namespace fs = std::filesystem;

namespace txs {

std::vector<std::string> expand_text_paths(const std::vector<std::string>& paths) {
  std::vector<std::string> out;
  for (auto& p : paths) {
    std::error_code ec;
    if (fs::is_directory(p, ec)) {
      std::vector<std::string> found;
      for (auto& e : fs::recursive_directory_iterator(p, ec)) {
        if (e.is_symlink() || !e.is_regular_file()) continue;  // links are aliases (fortunes' *.u8)
        const auto ext = e.path().extension().string();
        const auto name = e.path().filename().string();
        if (name.empty() || name[0] == '.') continue;
        if (ext == ".txt" || ext.empty()) found.push_back(e.path().string());
      }
      if (ec) fail("{}: cannot list directory ({})", p, ec.message());
      std::sort(found.begin(), found.end());
      if (found.empty()) fail("{}: directory holds no text files", p);
      out.insert(out.end(), found.begin(), found.end());
    } else if (fs::is_regular_file(p, ec)) {
      out.push_back(p);
    } else {
      fail("{}: no such file or directory", p);
    }
  }
  return out;
}

// Returns the offset of the first invalid UTF-8 sequence, or npos.
static size_t first_invalid_utf8(const std::string& s) {
  const auto* b = reinterpret_cast<const unsigned char*>(s.data());
  size_t i = 0, n = s.size();
  while (i < n) {
    unsigned c = b[i];
    size_t len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (!len || i + len > n) return i;
    for (size_t k = 1; k < len; ++k)
      if ((b[i + k] & 0xC0) != 0x80) return i;
    if (len == 2 && c < 0xC2) return i;                           // overlong
    if (len == 3 && c == 0xE0 && b[i + 1] < 0xA0) return i;       // overlong
    if (len == 3 && c == 0xED && b[i + 1] >= 0xA0) return i;      // surrogate
    if (len == 4 && (c > 0xF4 || (c == 0xF0 && b[i + 1] < 0x90) || (c == 0xF4 && b[i + 1] >= 0x90))) return i;
    i += len;
  }
  return std::string::npos;
}

std::string read_utf8_file(const std::string& path) {
  std::string text = read_file(path);
  const size_t bad = first_invalid_utf8(text);
  if (bad != std::string::npos) fail("{}: not valid UTF-8 (byte offset {})", path, bad);
  return text;
}

TrainingData load_training_data(const std::vector<std::string>& paths, const std::string& tokenizer_path,
                                double val_fraction) {
  if (paths.empty()) fail("train: no --data given");
  if (!(val_fraction > 0 && val_fraction < 0.5)) fail("train: --val-fraction must be in (0, 0.5)");
  TrainingData data;
  data.tokenizer = tokenizer_path;
  if (paths.size() == 1 && fs::exists(fs::path(paths[0]) / "manifest.json")) {
    const PreparedInfo info = read_prepared_info(paths[0]);
    std::string expected_hash;
    if (!tokenizer_path.empty()) expected_hash = Tokenizer::from_file(tokenizer_path).hash();
    data.train = open_prepared(paths[0], "train", expected_hash);
    data.val = open_prepared(paths[0], "val", expected_hash);
    data.vocab_size = info.vocab_size;
    data.description = fmt::format("prepared shards {} ({} train / {} val tokens)", paths[0], data.train->size(),
                                   data.val->size());
    return data;
  }
  const auto files = expand_text_paths(paths);
  std::vector<int32_t> tokens;
  std::unique_ptr<Tokenizer> tok;
  if (!tokenizer_path.empty()) tok = std::make_unique<Tokenizer>(Tokenizer::from_file(tokenizer_path));
  size_t bytes = 0;
  for (auto& f : files) {
    const std::string text = read_utf8_file(f);
    bytes += text.size();
    if (tok) {
      auto ids = tok->encode(text);
      tokens.insert(tokens.end(), ids.begin(), ids.end());
      if (tok->eos_id() >= 0) tokens.push_back(tok->eos_id());  // document boundary
    } else {
      for (unsigned char ch : text) tokens.push_back(int32_t(ch));
      tokens.push_back('\n');
    }
  }
  data.vocab_size = tok ? tok->vocab_size() : 256;
  data.utf8_bytes = !tok;
  const int64_t n = int64_t(tokens.size());
  const int64_t n_val = std::max<int64_t>(int64_t(double(n) * val_fraction), 1);
  std::vector<int32_t> val(tokens.end() - n_val, tokens.end());
  tokens.resize(size_t(n - n_val));
  data.description = fmt::format("{} file(s), {:.2f} MB, {} tokens ({}) → {} train / {} val", files.size(),
                                 double(bytes) / 1e6, n, tok ? "tokenizer " + tokenizer_path : "UTF-8 bytes",
                                 n - n_val, n_val);
  data.train = std::make_unique<InMemoryTokens>(std::move(tokens));
  data.val = std::make_unique<InMemoryTokens>(std::move(val));
  return data;
}

static void fill_row(const TokenSource& s, int64_t offset, int64_t seq, int32_t* ids, int32_t* targets,
                     std::vector<int32_t>& window) {
  window.resize(size_t(seq + 1));
  s.read(offset, seq + 1, window.data());
  std::copy(window.begin(), window.begin() + seq, ids);
  std::copy(window.begin() + 1, window.end(), targets);
}

void sample_batch(const TokenSource& s, uint64_t seed, int64_t index, int64_t batch, int64_t seq, int32_t* ids,
                  int32_t* targets) {
  sample_rows(s, seed, index, 0, batch, seq, ids, targets);
}

void sample_rows(const TokenSource& s, uint64_t seed, int64_t index, int64_t row_begin, int64_t row_end, int64_t seq,
                 int32_t* ids, int32_t* targets) {
  const int64_t span = s.size() - seq;  // valid start offsets: [0, size − seq − 1]
  if (span < 1) fail("training split has {} tokens, too few for --seq-len {}", s.size(), seq);
  std::vector<int32_t> window;
  for (int64_t b = row_begin; b < row_end; ++b) {
    const int64_t offset = int64_t(hash64(seed, uint64_t(index), uint64_t(b)) % uint64_t(span));
    const int64_t k = b - row_begin;
    fill_row(s, offset, seq, ids + k * seq, targets + k * seq, window);
  }
}

void validation_batch(const TokenSource& s, int64_t index, int64_t count, int64_t batch, int64_t seq, int32_t* ids,
                      int32_t* targets) {
  validation_rows(s, index, count, batch, seq, 0, batch, ids, targets);
}

void validation_rows(const TokenSource& s, int64_t index, int64_t count, int64_t batch, int64_t seq,
                     int64_t row_begin, int64_t row_end, int32_t* ids, int32_t* targets) {
  const int64_t span = s.size() - seq;
  if (span < 1) fail("validation split has {} tokens, too few for --seq-len {}", s.size(), seq);
  std::vector<int32_t> window;
  const int64_t windows = count * batch;
  for (int64_t b = row_begin; b < row_end; ++b) {
    const int64_t w = index * batch + b;
    const int64_t offset = windows > 1 ? (span - 1) * w / (windows - 1) : 0;
    const int64_t k = b - row_begin;
    fill_row(s, offset, seq, ids + k * seq, targets + k * seq, window);
  }
}

}  // namespace txs
