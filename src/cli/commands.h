// Each group of subcommands registers itself on the CLI11 app; main() only dispatches.
#pragma once
#include <CLI/CLI.hpp>

namespace txs::cli {
void register_model_commands(CLI::App& app);      // init, info, score, grads   (cmd_model.cpp)
void register_train_command(CLI::App& app);       // train                      (cmd_train.cpp)
void register_tokenizer_commands(CLI::App& app);  // tokenize, detokenize, tokenizer train, prepare (cmd_tokenizer.cpp)
void register_infer_commands(CLI::App& app);      // generate, serve                       (cmd_infer.cpp)
void register_eval_commands(CLI::App& app);       // eval                                  (cmd_eval.cpp)
void register_study_command(CLI::App& app);       // study                                 (cmd_study.cpp)
}  // namespace txs::cli
