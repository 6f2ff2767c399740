// Each group of subcommands registers itself on the CLI11 app; main() only dispatches.
#pragma once
#include <CLI/CLI.hpp>

#include <sstream>
#include <string>
#include <vector>

#include "model/model.h"

namespace txs::cli {
// "a,b,,c" → {"a", "b", "c"}: the comma-separated list options (--tasks, --archs, --lengths, ...).
inline std::vector<std::string> split_list(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  for (std::string t; std::getline(ss, t, ',');)
    if (!t.empty()) out.push_back(t);
  return out;
}

// How generate, serve, eval and score hold a checkpoint: --precision, no gradients.
inline ModelOptions inference_options(const std::string& precision) { return {parse_precision(precision), false}; }
inline constexpr const char* kPrecisionHelp =
    "fp32 | bf16: bf16 rounds the checkpoint's matrices at load (or reads a bf16 checkpoint) and runs the products "
    "in bf16 with fp32 accumulation; norms, SSD scan, attention softmax and states stay fp32";

// --device of every command that runs a model: which backend computes (ops/backend.h).
inline constexpr const char* kDeviceHelp =
    "cpu | cuda: where the model computes (cuda: the CUDA backend on the first visible GPU; an error naming "
    "what is missing when this build or machine has none)";
// The backend of a --device value; a one-line error for an unknown name or an unusable CUDA device.
inline Backend& device_backend(const std::string& device) { return backend_for(parse_device(device)); }

void register_model_commands(CLI::App& app);      // init, info, score, grads   (cmd_model.cpp)
void register_train_command(CLI::App& app);       // train                      (cmd_train.cpp)
void register_tokenizer_commands(CLI::App& app);  // tokenize, detokenize, tokenizer train, prepare (cmd_tokenizer.cpp)
void register_infer_commands(CLI::App& app);      // generate, serve                       (cmd_infer.cpp)
void register_eval_commands(CLI::App& app);       // eval                                  (cmd_eval.cpp)
void register_study_command(CLI::App& app);       // study                                 (cmd_study.cpp)
void register_devices_command(CLI::App& app);     // devices                               (cmd_devices.cpp)
}  // namespace txs::cli
