#include "model/checkpoint.h"

#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>
#include <vector>

#include "core/error.h"
#include "model/safetensors.h"

namespace fs = std::filesystem;

namespace txs {

void save_checkpoint(const std::string& dir, const Model& model) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) fail("{}: cannot create directory ({})", dir, ec.message());
  // The writer reads host memory until write(): device weights come to the host once; host weights
  // (the CPU backend) are written in place, so a 1.3B model is not held twice.
  const ParamStore& store = model.params();
  std::vector<float> copy;
  const float* host = host_readable(store.backend(), store.all_weights(), copy);
  SafetensorsWriter w;
  for (auto& p : store.params()) w.add_f32(p.name, p.shape, host + p.offset);
  w.set_metadata("format", "pt");
  try {
    w.write(dir + "/model.safetensors");
    write_file_atomic(dir + "/config.json", model.config().to_json().dump(2) + "\n");
  } catch (...) {
    // A failed write (disk full) leaves its .tmp file behind; it would keep the disk full.
    for (const char* f : {"/model.safetensors.tmp", "/config.json.tmp"}) fs::remove(dir + f, ec);
    throw;
  }
}

std::unique_ptr<Model> load_checkpoint(const std::string& dir, Backend& backend, ModelOptions options) {
  if (!fs::is_directory(dir)) fail("{}: not a checkpoint directory", dir);
  const std::string cfg_path = dir + "/config.json", st_path = dir + "/model.safetensors";
  if (!fs::exists(cfg_path)) fail("{}: missing config.json", dir);
  if (!fs::exists(st_path)) fail("{}: missing model.safetensors", dir);
  auto model = std::make_unique<Model>(load_config_file(cfg_path), backend, options);
  SafetensorsReader reader(st_path);
  std::set<std::string> expected;
  ParamStore& store = model->params();
  std::vector<float> host;
  for (auto& p : store.params()) {
    expected.insert(p.name);
    host.resize(size_t(p.numel));
    reader.read_f32_into(p.name, host.data(), p.shape);
    // NaN/inf weights would load "fine" and give null log-probs or one repeated token.
    for (float x : host)
      if (!std::isfinite(x)) fail("{}: tensor '{}' holds non-finite values (NaN or inf)", st_path, p.name);
    store.load(p, host.data());
  }
  store.refresh_compute();
  for (auto& [name, info] : reader.tensors())
    if (!expected.count(name)) fail("{}: unknown tensor '{}' for this config", st_path, name);
  return model;
}

void require_fp32_checkpoint(const std::string& dir) {
  const std::string st_path = dir + "/model.safetensors";
  SafetensorsReader reader(st_path);
  for (auto& [name, info] : reader.tensors())
    if (info.dtype == FileDType::BF16)
      fail("{}: tensor '{}' is stored in bf16; training needs the fp32 checkpoint it was converted from", st_path,
           name);
}

void convert_checkpoint(const std::string& dir, const std::string& out, Precision dtype) {
  std::error_code ec;
  if (fs::exists(out) && fs::equivalent(dir, out, ec)) fail("convert: --out must differ from --model ({})", out);
  // Loading validates the checkpoint (names, shapes, finiteness) before anything is written.
  const auto model = load_checkpoint(dir, cpu_backend(), ModelOptions{Precision::F32, false});
  SafetensorsReader reader(dir + "/model.safetensors");
  SafetensorsWriter w;
  std::vector<std::vector<float>> f32;
  std::vector<std::vector<bf16>> b16;
  for (auto& p : model->params().params()) {
    f32.push_back(reader.read_f32(p.name));
    if (dtype == Precision::BF16) {
      b16.emplace_back(f32.back().size());
      to_bf16(f32.back().data(), b16.back().data(), int64_t(f32.back().size()));
      f32.back() = {};
      w.add(p.name, FileDType::BF16, p.shape, b16.back().data());
    } else {
      w.add_f32(p.name, p.shape, f32.back().data());
    }
  }
  w.set_metadata("format", "pt");
  fs::create_directories(out, ec);
  if (ec) fail("{}: cannot create directory ({})", out, ec.message());
  w.write(out + "/model.safetensors");
  write_file_atomic(out + "/config.json", read_file(dir + "/config.json"));
  for (const char* f : {"tokenizer.json", "vocab.json", "merges.txt"})
    if (fs::exists(fs::path(dir) / f))
      write_file_atomic((fs::path(out) / f).string(), read_file((fs::path(dir) / f).string()));
}

std::string byte_tokenizer_json() {
  // GPT-2's bytes_to_unicode: printable bytes spell themselves, the others 256, 257, … in byte order.
  nlohmann::ordered_json vocab = nlohmann::ordered_json::object();
  uint32_t next = 256;
  for (uint32_t b = 0; b < 256; ++b) {
    const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174;
    const uint32_t cp = printable ? b : next++;
    std::string spelling;
    if (cp < 0x80) {
      spelling.push_back(char(cp));
    } else {
      spelling.push_back(char(0xC0 | (cp >> 6)));
      spelling.push_back(char(0x80 | (cp & 0x3F)));
    }
    vocab[spelling] = b;
  }
  nlohmann::ordered_json j;
  j["version"] = "1.0";
  j["added_tokens"] = nlohmann::ordered_json::array();
  j["normalizer"] = nullptr;
  const nlohmann::ordered_json byte_level = {
      {"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", true}};
  j["pre_tokenizer"] = byte_level;
  j["post_processor"] = nullptr;
  j["decoder"] = byte_level;
  j["model"] = {{"type", "BPE"}, {"dropout", nullptr}, {"unk_token", nullptr}, {"fuse_unk", false},
                {"byte_fallback", false}, {"vocab", vocab}, {"merges", nlohmann::ordered_json::array()}};
  return j.dump(1) + "\n";
}

void save_checkpoint_tokenizer(const std::string& dir, const std::string& tokenizer) {
  const fs::path out(dir);
  if (tokenizer.empty()) {
    write_file_atomic((out / "tokenizer.json").string(), byte_tokenizer_json());
    return;
  }
  fs::path src(tokenizer);
  if (fs::is_directory(src)) {
    if (!fs::exists(src / "tokenizer.json")) {
      write_file_atomic((out / "vocab.json").string(), read_file((src / "vocab.json").string()));
      write_file_atomic((out / "merges.txt").string(), read_file((src / "merges.txt").string()));
      return;
    }
    src /= "tokenizer.json";
  }
  // A tokenizer.json has a "model" object; any other JSON is a GPT-2 vocab.json with merges.txt beside it
  // (the same rule as Tokenizer::from_file).
  const std::string text = read_file(src.string());
  const nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
  if (j.is_object() && !(j.contains("model") && j.at("model").is_object())) {
    write_file_atomic((out / "vocab.json").string(), text);
    write_file_atomic((out / "merges.txt").string(), read_file((src.parent_path() / "merges.txt").string()));
  } else {
    write_file_atomic((out / "tokenizer.json").string(), text);
  }
}

std::string resolve_checkpoint_tokenizer(const std::string& model_dir, const std::string& explicit_path) {
  if (!explicit_path.empty()) return explicit_path;
  const fs::path dir(model_dir);
  if (fs::exists(dir / "tokenizer.json")) return (dir / "tokenizer.json").string();
  if (fs::exists(dir / "vocab.json")) return model_dir;  // from_file finds merges.txt beside it
  return "";
}

}  // namespace txs
