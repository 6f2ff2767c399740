// Checkpoints (spec section 9): DIR/config.json + DIR/model.safetensors, both written atomically.
#pragma once
#include <memory>
#include <string>

#include "model/model.h"

namespace txs {

void save_checkpoint(const std::string& dir, const Model& model);
// Loads config.json, builds the model and reads every tensor; any missing, unknown, mis-shaped or
// truncated tensor is a one-line txs::Error naming the file.
std::unique_ptr<Model> load_checkpoint(const std::string& dir, Backend& backend = cpu_backend());

}  // namespace txs
