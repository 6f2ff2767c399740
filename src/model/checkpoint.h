// Checkpoints (spec section 9): DIR/config.json + DIR/model.safetensors, both written atomically, and the
// tokenizer the model was trained with (DIR/tokenizer.json, or vocab.json + merges.txt).
#pragma once
#include <memory>
#include <string>

#include "model/model.h"

namespace txs {

void save_checkpoint(const std::string& dir, const Model& model);
// Loads config.json, builds the model and reads every tensor; any missing, unknown, mis-shaped,
// truncated or non-finite (NaN/inf) tensor is a one-line txs::Error naming the file and the tensor.
// options: the precision to run in (an fp32 checkpoint loads into bf16 by rounding its matrices; a bf16 one
// into fp32 exactly) and whether the model gets gradients (`grads` checks the gradients of a bf16 file's
// weights as stored; continuing a training run from one is refused by require_fp32_checkpoint).
std::unique_ptr<Model> load_checkpoint(const std::string& dir, Backend& backend = cpu_backend(),
                                       ModelOptions options = {});

// Fails (naming the file and a tensor) when checkpoint DIR stores any tensor in bf16: a `convert --dtype bf16`
// output has lost the fp32 master weights a training run continues from.
void require_fp32_checkpoint(const std::string& dir);

// Writes checkpoint DIR to OUT with every tensor stored in `dtype` (bf16: safetensors "BF16", the same
// tensor names; for inference — training needs the fp32 masters), config and tokenizer files copied.
void convert_checkpoint(const std::string& dir, const std::string& out, Precision dtype);

// Stores the tokenizer of a training run in checkpoint DIR, so that generate, serve and eval work from
// --model alone. `tokenizer` is what `train --tokenizer` names (a tokenizer.json, a vocab.json with
// merges.txt beside it, or a folder holding either): its files are copied. Empty means the run trained on
// UTF-8 bytes: DIR/tokenizer.json is then the byte tokenizer (byte_tokenizer_json()).
void save_checkpoint_tokenizer(const std::string& dir, const std::string& tokenizer);

// A standard byte-level BPE tokenizer.json with no merges whose id b is byte b: encoding gives the UTF-8
// bytes of the text, decoding the bytes back, exactly the ids of a run trained without --tokenizer.
std::string byte_tokenizer_json();

// The tokenizer every command uses with checkpoint `model_dir`: `explicit_path` (--tokenizer) when given,
// else the checkpoint's tokenizer.json, or the folder when it holds vocab.json + merges.txt (pass the
// result to Tokenizer::from_file), else "" (a checkpoint without one, e.g. from `init` or an older build: the
// commands then take token ids).
std::string resolve_checkpoint_tokenizer(const std::string& model_dir, const std::string& explicit_path);

}  // namespace txs
