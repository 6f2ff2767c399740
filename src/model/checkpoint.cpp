#include "model/checkpoint.h"

#include <filesystem>
#include <set>

#include "core/error.h"
#include "model/safetensors.h"

namespace txs {

void save_checkpoint(const std::string& dir, const Model& model) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) fail("{}: cannot create directory ({})", dir, ec.message());
  SafetensorsWriter w;
  for (auto& p : model.params().params()) w.add_f32(p.name, p.shape, model.params().weights() + p.offset);
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
  for (auto& p : model->params().params()) {
    expected.insert(p.name);
    reader.read_f32_into(p.name, model->params().weights() + p.offset, p.shape);
  }
  for (auto& [name, info] : reader.tensors())
    if (!expected.count(name)) fail("{}: unknown tensor '{}' for this config", st_path, name);
  return model;
}

}  // namespace txs
