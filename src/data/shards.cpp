#include "data/shards.h"

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/error.h"
#include "core/json.h"

namespace txs {

static_assert(std::endian::native == std::endian::little, "shards are little-endian; add byte swapping");

const char* token_dtype_name(TokenDType t) { return t == TokenDType::U16 ? "uint16" : "uint32"; }
size_t token_dtype_size(TokenDType t) { return t == TokenDType::U16 ? 2 : 4; }
TokenDType token_dtype_for_vocab(int64_t vocab_size) {
  return vocab_size <= 65536 ? TokenDType::U16 : TokenDType::U32;
}

// ------------------------------------------------------------------------------------------------
// Writing

ShardWriter::ShardWriter(std::string dir, std::string split, TokenDType dtype, int64_t shard_tokens)
    : dir_(std::move(dir)), split_(std::move(split)), dtype_(dtype), shard_tokens_(shard_tokens) {
  if (shard_tokens_ <= 0) fail("shard size must be positive, got {}", shard_tokens_);
}

ShardWriter::~ShardWriter() {
  if (file_) std::fclose(file_);
}

void ShardWriter::open_next() {
  const std::string name = fmt::format("{}_{:06d}.bin", split_, shards_.size());
  const std::string path = (std::filesystem::path(dir_) / name).string();
  file_ = std::fopen(path.c_str(), "wb");
  if (!file_) fail("cannot create {}: {}", path, std::strerror(errno));
  shards_.push_back({name, 0});
}

void ShardWriter::close_current() {
  if (!file_) return;
  const bool bad = std::ferror(file_) != 0;
  const bool close_failed = std::fclose(file_) != 0;
  file_ = nullptr;
  if (bad || close_failed) fail("cannot write {}/{} (disk full?)", dir_, shards_.back().file);
}

void ShardWriter::append(const int32_t* ids, size_t n) {
  const size_t width = token_dtype_size(dtype_);
  while (n > 0) {
    if (!file_ || shards_.back().tokens == shard_tokens_) {
      close_current();
      open_next();
    }
    const size_t take = std::min<size_t>(n, size_t(shard_tokens_ - shards_.back().tokens));
    staging_.resize(take * width);
    if (dtype_ == TokenDType::U16) {
      auto* dst = reinterpret_cast<uint16_t*>(staging_.data());
      for (size_t i = 0; i < take; i++) {
        if (uint32_t(ids[i]) > 0xFFFF) fail("token id {} does not fit the uint16 shards", ids[i]);
        dst[i] = uint16_t(ids[i]);
      }
    } else {
      std::memcpy(staging_.data(), ids, take * 4);
    }
    if (std::fwrite(staging_.data(), 1, staging_.size(), file_) != staging_.size())
      fail("cannot write {}/{}: {}", dir_, shards_.back().file, std::strerror(errno));
    shards_.back().tokens += int64_t(take);
    total_ += int64_t(take);
    ids += take;
    n -= take;
  }
}

std::vector<ShardInfo> ShardWriter::finish() {
  close_current();
  return shards_;
}

// ------------------------------------------------------------------------------------------------
// Reading

ShardedTokens::ShardedTokens(const std::string& dir, const std::vector<ShardInfo>& shards, TokenDType dtype)
    : dtype_(dtype) {
  starts_.push_back(0);
  for (const ShardInfo& s : shards) {
    const std::string path = (std::filesystem::path(dir) / s.file).string();
    MappedFile f(path);
    const uint64_t expected = uint64_t(s.tokens) * token_dtype_size(dtype);
    if (f.size() != expected)
      fail("{}: has {} bytes, but the manifest says {} {} tokens ({} bytes); prepare the data again", path,
           f.size(), s.tokens, token_dtype_name(dtype), expected);
    files_.push_back(std::move(f));
    total_ += s.tokens;
    starts_.push_back(total_);
  }
}

void ShardedTokens::read(int64_t offset, int64_t n, int32_t* out) const {
  if (offset < 0 || n < 0 || offset > total_ - n)
    fail("token range [{}, {}) is outside the split's {} tokens", offset, offset + n, total_);
  while (n > 0) {
    // The shard holding `offset`: the last one starting at or before it.
    const size_t s = size_t(std::upper_bound(starts_.begin(), starts_.end(), offset) - starts_.begin()) - 1;
    const int64_t local = offset - starts_[s];
    const int64_t take = std::min(n, starts_[s + 1] - offset);
    const char* base = files_[s].data();
    if (dtype_ == TokenDType::U16) {
      const auto* src = reinterpret_cast<const uint16_t*>(base) + local;
      for (int64_t i = 0; i < take; i++) out[i] = int32_t(src[i]);
    } else {
      std::memcpy(out, reinterpret_cast<const int32_t*>(base) + local, size_t(take) * 4);
    }
    out += take;
    offset += take;
    n -= take;
  }
}

void InMemoryTokens::read(int64_t offset, int64_t n, int32_t* out) const {
  if (offset < 0 || n < 0 || offset > size() - n)
    fail("token range [{}, {}) is outside the {} tokens in memory", offset, offset + n, size());
  std::copy_n(ids_.data() + offset, n, out);
}

// ------------------------------------------------------------------------------------------------
// Manifest

namespace {

struct Manifest {
  PreparedInfo info;
  TokenDType dtype = TokenDType::U16;
  std::vector<ShardInfo> train, val;
};

Manifest read_manifest(const std::string& dir) {
  const std::string path = (std::filesystem::path(dir) / kManifestName).string();
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    std::error_code ec;
    if (!std::filesystem::is_directory(dir, ec)) fail("{}: no such folder of prepared tokens", dir);
    fail("{}: not found (was `transxssm prepare` interrupted, or is this not a prepared folder?)", path);
  }
  std::stringstream ss;
  ss << in.rdbuf();
  nlohmann::json j = try_parse_json_bounded(ss.str());
  if (j.is_discarded() || !j.is_object()) fail("{}: malformed JSON", path);
  Manifest m;
  try {
    if (j.value("format", std::string()) != kManifestFormat)
      fail("{}: not a transxssm token manifest (format is not \"{}\")", path, kManifestFormat);
    // Counts are bounded far beyond any corpus (2^50 tokens) so that sums cannot overflow.
    constexpr int64_t kMaxCount = int64_t(1) << 50;
    const std::string where = path + ": ";
    const int64_t version = json_int(j.at("version"), INT32_MIN, INT32_MAX, where + "version");
    if (version != kManifestVersion)
      fail("{}: manifest version {} is not supported (expected {})", path, version, kManifestVersion);
    const auto& tok = j.at("tokenizer");
    m.info.vocab_size = json_int(tok.at("vocab_size"), 1, INT32_MAX, where + "tokenizer vocab_size");
    m.info.tokenizer_hash = tok.at("hash").get<std::string>();
    m.info.eos_id = int32_t(json_int(tok.at("eos_id"), -1, INT32_MAX, where + "tokenizer eos_id"));
    m.info.dtype = j.at("dtype").get<std::string>();
    if (m.info.dtype == "uint16") {
      m.dtype = TokenDType::U16;
    } else if (m.info.dtype == "uint32") {
      m.dtype = TokenDType::U32;
    } else {
      fail("{}: unknown dtype \"{}\"", path, m.info.dtype);
    }
    auto shards = [&](const char* split, int64_t& total) {
      std::vector<ShardInfo> out;
      const auto& s = j.at("splits").at(split);
      int64_t sum = 0;
      for (const auto& e : s.at("shards")) {
        ShardInfo info{e.at("file").get<std::string>(), json_int(e.at("tokens"), 0, kMaxCount, where + "shard tokens")};
        if (info.tokens < 0 || info.file.find('/') != std::string::npos || info.file.empty())
          fail("{}: bad shard entry in split \"{}\"", path, split);
        sum += info.tokens;
        if (sum > kMaxCount) fail("{}: split \"{}\" holds more than 2^50 tokens", path, split);
        out.push_back(std::move(info));
      }
      total = json_int(s.at("tokens"), 0, kMaxCount, where + "split tokens");
      if (total != sum) fail("{}: split \"{}\" says {} tokens but its shards hold {}", path, split, total, sum);
      return out;
    };
    m.train = shards("train", m.info.train_tokens);
    m.val = shards("val", m.info.val_tokens);
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    std::string what = e.what();
    std::replace(what.begin(), what.end(), '\n', ' ');
    fail("{}: invalid manifest: {}", path, what);
  }
  return m;
}

}  // namespace

PreparedInfo read_prepared_info(const std::string& dir) { return read_manifest(dir).info; }

std::unique_ptr<TokenSource> open_prepared(const std::string& dir, const std::string& split,
                                           const std::string& expected_tokenizer_hash) {
  if (split != "train" && split != "val") fail("unknown split \"{}\" (train or val)", split);
  Manifest m = read_manifest(dir);
  if (!expected_tokenizer_hash.empty() && expected_tokenizer_hash != m.info.tokenizer_hash)
    fail("{}: tokens were prepared with another tokenizer (hash {}, expected {}); run `transxssm prepare` "
         "again with this tokenizer",
         dir, m.info.tokenizer_hash, expected_tokenizer_hash);
  return std::make_unique<ShardedTokens>(dir, split == "train" ? m.train : m.val, m.dtype);
}

}  // namespace txs
