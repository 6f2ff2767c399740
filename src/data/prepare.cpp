#include "data/prepare.h"

#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/json.h"
#include "core/threads.h"
#include "data/shards.h"
#include "tokenizer/mapped_file.h"
#include "tokenizer/unicode.h"

namespace txs {

namespace fs = std::filesystem;

std::vector<std::string> expand_inputs(const std::vector<std::string>& inputs) {
  std::vector<std::string> files;
  for (const std::string& input : inputs) {
    std::error_code ec;
    const fs::file_status st = fs::status(input, ec);
    if (ec || !fs::exists(st)) fail("{}: no such file or folder", input);
    if (!fs::is_directory(st)) {
      files.push_back(input);
      continue;
    }
    std::vector<std::string> found;
    fs::recursive_directory_iterator it(input, fs::directory_options::none, ec), end;
    if (ec) fail("{}: cannot list folder: {}", input, ec.message());
    for (; it != end; it.increment(ec)) {
      if (ec) fail("{}: cannot list folder: {}", input, ec.message());
      const std::string name = it->path().filename().string();
      if (!name.empty() && name[0] == '.') {  // hidden files and folders (.git, editor files)
        if (it->is_directory()) it.disable_recursion_pending();
        continue;
      }
      if (it->is_regular_file()) found.push_back(it->path().string());
    }
    std::sort(found.begin(), found.end());
    files.insert(files.end(), found.begin(), found.end());
  }
  return files;
}

namespace {

// A piece of one document, encoded as one task.
struct Unit {
  std::string_view text;
  std::shared_ptr<const void> keep_alive;  // the mapped file or the parsed JSONL string
  const std::string* path;
  int64_t offset;     // of the text within its file, for error messages
  int64_t line;       // JSONL line number, 0 for plain files
  bool val;           // goes to the validation split
  bool end_of_doc;    // the end-of-document token follows it
};

bool ends_with(const std::string& s, const char* suffix) {
  const size_t n = std::strlen(suffix);
  return s.size() >= n && s.compare(s.size() - n, n, suffix) == 0;
}

void remove_old_output(const std::string& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec || !fs::is_directory(dir)) fail("{}: cannot create the output folder: {}", dir, ec.message());
  // The manifest goes first, so an interrupted run never leaves a manifest describing missing shards.
  fs::remove(fs::path(dir) / kManifestName, ec);
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    const std::string name = entry.path().filename().string();
    if ((name.rfind("train_", 0) == 0 || name.rfind("val_", 0) == 0) && ends_with(name, ".bin"))
      fs::remove(entry.path(), ec);
  }
}

}  // namespace

PrepareResult prepare(const Tokenizer& tok, const PrepareOptions& opt) {
  const auto start = std::chrono::steady_clock::now();
  const int32_t eos = tok.eos_id();
  if (eos < 0)
    fail("{}: the tokenizer has no end-of-text token (<|endoftext|>, </s>, ...) to put between documents",
         tok.origin());
  if (!(opt.val_fraction >= 0 && opt.val_fraction < 1))
    fail("validation fraction must be in [0, 1), got {}", opt.val_fraction);
  if (opt.out_dir.empty()) fail("prepare needs an output folder");
  const std::vector<std::string> files = expand_inputs(opt.inputs);
  if (files.empty()) fail("no input files");

  std::vector<int64_t> sizes;
  int64_t total_bytes = 0;
  for (const std::string& f : files) {
    std::error_code ec;
    const auto size = fs::file_size(f, ec);
    if (ec) fail("{}: {}", f, ec.message());
    sizes.push_back(int64_t(size));
    total_bytes += int64_t(size);
  }
  const int64_t split_at = total_bytes - int64_t(std::llround(double(total_bytes) * opt.val_fraction));

  remove_old_output(opt.out_dir);
  const TokenDType dtype = token_dtype_for_vocab(tok.vocab_size());
  ShardWriter train(opt.out_dir, "train", dtype, opt.shard_tokens);
  ShardWriter val(opt.out_dir, "val", dtype, opt.shard_tokens);
  PrepareResult result;
  result.input_bytes = total_bytes;
  result.dtype = token_dtype_name(dtype);

  std::vector<Unit> batch;
  size_t batch_bytes = 0;
  int64_t bytes_done = 0;
  auto flush = [&] {
    const int n = int(batch.size());
    std::vector<std::vector<int32_t>> ids(batch.size());
    std::vector<std::string> errors(batch.size());
#pragma omp parallel for schedule(dynamic, 1)
    for (int u = 0; u < n; u++) {
      const Unit& unit = batch[size_t(u)];
      const size_t valid = unicode::valid_utf8_prefix(unit.text);
      if (valid != unit.text.size()) {
        errors[size_t(u)] = unit.line ? fmt::format("{}:{}: text is not valid UTF-8", *unit.path, unit.line)
                                      : fmt::format("{}: not valid UTF-8 (byte offset {})", *unit.path,
                                                    unit.offset + int64_t(valid));
        continue;
      }
      try {
        ids[size_t(u)].reserve(unit.text.size() / 3);
        tok.encode_into(unit.text, ids[size_t(u)]);
      } catch (const std::exception& e) {  // nothing may leave an OpenMP region
        errors[size_t(u)] = fmt::format("{}: {}", *unit.path, e.what());
      }
    }
    for (const std::string& e : errors)
      if (!e.empty()) throw Error(e);
    for (size_t u = 0; u < batch.size(); u++) {
      ShardWriter& w = batch[u].val ? val : train;
      w.append(ids[u].data(), ids[u].size());
      if (batch[u].end_of_doc) w.append(&eos, 1);
      bytes_done += int64_t(batch[u].text.size());
    }
    batch.clear();
    batch_bytes = 0;
    if (opt.progress) opt.progress(bytes_done, total_bytes);
  };
  auto add = [&](Unit unit) {
    batch_bytes += unit.text.size();
    batch.push_back(std::move(unit));
    if (batch_bytes >= opt.batch_bytes) flush();
  };

  int64_t file_start = 0;  // offset of the current file in the concatenated input
  for (size_t f = 0; f < files.size(); f++) {
    const std::string* path = &files[f];
    auto mapped = std::make_shared<MappedFile>(files[f]);
    const std::string_view text = mapped->view();
    if (ends_with(files[f], ".jsonl")) {
      // One document per line: the string in the chosen field.
      int64_t line_no = 0;
      for (size_t pos = 0; pos < text.size();) {
        size_t eol = text.find('\n', pos);
        if (eol == std::string_view::npos) eol = text.size();
        const std::string_view line = text.substr(pos, eol - pos);
        const int64_t line_start = int64_t(pos);
        pos = eol + 1;
        line_no++;
        if (line.find_first_not_of(" \t\r") == std::string_view::npos) continue;
        const size_t valid = unicode::valid_utf8_prefix(line);
        if (valid != line.size())
          fail("{}:{}: not valid UTF-8 (byte offset {})", files[f], line_no, line_start + int64_t(valid));
        nlohmann::json j = try_parse_json_bounded(line);
        if (j.is_discarded() || !j.is_object()) fail("{}:{}: not a JSON object", files[f], line_no);
        auto field = j.find(opt.jsonl_field);
        if (field == j.end() || !field->is_string())
          fail("{}:{}: no string field \"{}\" (choose one with --jsonl-field)", files[f], line_no, opt.jsonl_field);
        auto doc = std::make_shared<std::string>(field->get<std::string>());
        result.documents++;
        if (doc->empty()) continue;
        add(Unit{*doc, doc, path, line_start, line_no, file_start + line_start >= split_at, true});
      }
    } else if (!text.empty()) {
      // One document; the split point may fall inside it.
      result.documents++;
      size_t val_from = 0;
      if (file_start + int64_t(text.size()) <= split_at) {
        val_from = text.size();
      } else if (file_start < split_at) {
        val_from = tok.next_safe_cut(text, size_t(split_at - file_start));
      }
      struct Range {
        size_t begin, end;
        bool val;
      };
      for (Range r : {Range{0, val_from, false}, Range{val_from, text.size(), true}}) {
        if (r.begin == r.end) continue;
        const std::string_view part = text.substr(r.begin, r.end - r.begin);
        std::vector<size_t> cuts = tok.safe_cuts(part, opt.piece_bytes);
        cuts.insert(cuts.begin(), 0);
        cuts.push_back(part.size());
        for (size_t c = 0; c + 1 < cuts.size(); c++)
          add(Unit{part.substr(cuts[c], cuts[c + 1] - cuts[c]), mapped, path, int64_t(r.begin + cuts[c]), 0, r.val,
                   r.end == text.size() && c + 2 == cuts.size()});
      }
    }
    file_start += sizes[f];
  }
  if (!batch.empty()) flush();

  const std::vector<ShardInfo> train_shards = train.finish(), val_shards = val.finish();
  result.train_tokens = train.tokens();
  result.val_tokens = val.tokens();

  nlohmann::ordered_json m;
  m["format"] = kManifestFormat;
  m["version"] = kManifestVersion;
  m["dtype"] = result.dtype;
  m["tokenizer"] = {{"hash", tok.hash()},
                    {"vocab_size", tok.vocab_size()},
                    {"eos_id", eos},
                    {"path", opt.tokenizer_path.empty() ? tok.origin() : opt.tokenizer_path}};
  auto split_json = [](int64_t tokens, const std::vector<ShardInfo>& shards) {
    nlohmann::ordered_json s;
    s["tokens"] = tokens;
    s["shards"] = nlohmann::ordered_json::array();
    for (const ShardInfo& info : shards) s["shards"].push_back({{"file", info.file}, {"tokens", info.tokens}});
    return s;
  };
  m["splits"]["train"] = split_json(result.train_tokens, train_shards);
  m["splits"]["val"] = split_json(result.val_tokens, val_shards);
  m["documents"] = result.documents;
  m["input_bytes"] = total_bytes;
  m["input_files"] = int64_t(files.size());
  m["val_fraction"] = opt.val_fraction;
  m["inputs"] = opt.inputs;
  const fs::path manifest = fs::path(opt.out_dir) / kManifestName;
  const fs::path tmp = fs::path(opt.out_dir) / (std::string(kManifestName) + ".tmp");
  {
    std::ofstream out(tmp, std::ios::binary);
    out << m.dump(2) << "\n";
    if (!out) fail("cannot write {}", tmp.string());
  }
  std::error_code ec;
  fs::rename(tmp, manifest, ec);
  if (ec) fail("cannot write {}: {}", manifest.string(), ec.message());
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return result;
}

}  // namespace txs
