#include "model/checkpoint.h"

#include <filesystem>
#include <set>
#include <vector>

#include "core/error.h"
#include "model/safetensors.h"

namespace txs {

void save_checkpoint(const std::string& dir, const Model& model) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) fail("{}: cannot create directory ({})", dir, ec.message());
  // The writer reads host memory until write(): device weights come to the host once; host weights
  // (the CPU backend) are written in place, so a 1.3B model is not held twice.
  const ParamStore& store = model.params();
  std::vector<float> copy;
  const float* host = store.weights();
  if (store.backend().device() != Device::Cpu) {
    copy.resize(size_t(store.size()));
    store.backend().download(store.all_weights(), copy.data());
    host = copy.data();
  }
  SafetensorsWriter w;
  for (auto& p : store.params()) w.add_f32(p.name, p.shape, host + p.offset);
  w.set_metadata("format", "pt");
  w.write(dir + "/model.safetensors");
  write_file_atomic(dir + "/config.json", model.config().to_json().dump(2) + "\n");
}

std::unique_ptr<Model> load_checkpoint(const std::string& dir, Backend& backend) {
  if (!std::filesystem::is_directory(dir)) fail("{}: not a checkpoint directory", dir);
  const std::string cfg_path = dir + "/config.json", st_path = dir + "/model.safetensors";
  if (!std::filesystem::exists(cfg_path)) fail("{}: missing config.json", dir);
  if (!std::filesystem::exists(st_path)) fail("{}: missing model.safetensors", dir);
  auto model = std::make_unique<Model>(load_config_file(cfg_path), backend);
  SafetensorsReader reader(st_path);
  std::set<std::string> expected;
  ParamStore& store = model->params();
  std::vector<float> host;
  for (auto& p : store.params()) {
    expected.insert(p.name);
    host.resize(size_t(p.numel));
    reader.read_f32_into(p.name, host.data(), p.shape);
    backend.upload(host.data(), store.all_weights().col_slice(p.offset, p.numel));
  }
  for (auto& [name, info] : reader.tensors())
    if (!expected.count(name)) fail("{}: unknown tensor '{}' for this config", st_path, name);
  return model;
}

}  // namespace txs
