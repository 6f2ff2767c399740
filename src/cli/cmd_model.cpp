// Model commands: init (fresh checkpoint), info (config, parameter counts, memory per precision), convert
// (checkpoint dtype), score (log-probabilities of a token sequence), grads (loss gradients of every
// parameter, for checking against a reference).
#include <fmt/format.h>

#include <iostream>
#include <set>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "core/error.h"
#include "core/json.h"
#include "core/threads.h"
#include "infer/engine.h"
#include "model/checkpoint.h"
#include "model/config.h"
#include "model/safetensors.h"

namespace txs::cli {
namespace {

// Reads a JSON array of ids (one row) or an array of equal-length arrays (a batch).
std::vector<int32_t> read_id_rows(const std::string& path, int64_t& batch, int64_t& seq) {
  const nlohmann::json j = read_json_file(path);
  if (!j.is_array() || j.empty()) fail("{}: expected a non-empty JSON array of token ids", path);
  std::vector<int32_t> ids;
  auto take = [&](const nlohmann::json& row) {
    for (auto& v : row) {
      if (!v.is_number_integer()) fail("{}: token ids must be integers, got {}", path, json_excerpt(v));
      const int64_t id = v.get<int64_t>();
      if (id < 0 || id > INT32_MAX) fail("{}: token id {} out of range", path, id);
      ids.push_back(int32_t(id));
    }
  };
  if (j[0].is_array()) {
    batch = int64_t(j.size());
    seq = int64_t(j[0].size());
    for (auto& row : j) {
      if (!row.is_array() || int64_t(row.size()) != seq) fail("{}: all rows must be arrays of the same length", path);
      take(row);
    }
  } else {
    batch = 1;
    seq = int64_t(j.size());
    take(j);
  }
  if (seq < 2) fail("{}: need at least two tokens per row", path);
  return ids;
}

void print_info(const Model& model) {
  const auto& c = model.config();
  std::cout << c.to_json().dump(2) << "\n";
  int64_t embed = 0, mixer = 0, mlp = 0, norms = 0;
  for (auto& p : model.params().params()) {
    if (p.name.find("word_embed") != std::string::npos || p.name == "lm_head.weight") embed += p.numel;
    else if (p.name.find("feed_forward") != std::string::npos) mlp += p.numel;
    else if (p.name.find(".ssd.") != std::string::npos || p.name.find(".attn.") != std::string::npos ||
             p.name.find(".mamba.") != std::string::npos)
      mixer += p.numel;
    else norms += p.numel;
  }
  fmt::print("parameters: {} total ({:.2f}M): embedding/head {}, mixers {}, MLPs {}, norms/scales {}\n",
             model.num_params(), double(model.num_params()) / 1e6, embed, mixer, mlp, norms);
  fmt::print("layers: {} ssd, {} attention, {} mamba2\n", c.count(LayerType::Ssd), c.count(LayerType::Attention),
             c.count(LayerType::Mamba2));
  // Memory per precision (model/params.h): bf16 stores the matrices (projections, LM head, embedding) in
  // bf16 and the vectors (norms, scales, A_log, D, dt bias, conv) in fp32.
  int64_t lowp = 0;
  for (auto& p : model.params().params()) lowp += p.low_precision ? p.numel : 0;
  const int64_t n = model.num_params();
  const double MiB = 1 << 20;
  fmt::print("weights for inference: fp32 {:.2f} MiB, bf16 {:.2f} MiB ({} matrix parameters in bf16, {} in fp32)\n",
             double(4 * n) / MiB, double(2 * lowp + 4 * (n - lowp)) / MiB, lowp, n - lowp);
  fmt::print("training memory for weights, gradients and AdamW moments: fp32 {:.2f} MiB, bf16 {:.2f} MiB "
             "(fp32 masters, gradients and moments plus the bf16 copies)\n",
             double(16 * n) / MiB, double(16 * n + 2 * lowp) / MiB);
  // Decoding memory per sequence: constant SSD/conv state plus a KV cache for attention layers only. Both
  // precisions keep it in fp32: the SSD state accumulates over every token, and the cache feeds a softmax.
  for (int64_t ctx : std::set<int64_t>{1024, 4096, c.max_position_embeddings})
    fmt::print("decoding state per sequence at context {}: {:.2f} MiB (fp32 in both precisions)\n", ctx,
               double(sequence_state_bytes(c, ctx)) / MiB);
}

}  // namespace

void register_model_commands(CLI::App& app) {
  {
    auto* cmd = app.add_subcommand("init", "Write a freshly initialised checkpoint (spec section 8)");
    auto config = std::make_shared<std::string>();
    auto arch = std::make_shared<std::string>("transxssm");
    auto size = std::make_shared<std::string>("tiny");
    auto seed = std::make_shared<uint64_t>(0);
    auto out = std::make_shared<std::string>();
    cmd->add_option("--config", *config, "config.json (arch, size and field overrides)");
    cmd->add_option("--arch", *arch, "architecture when no --config is given");
    cmd->add_option("--size", *size, "size preset when no --config is given");
    cmd->add_option("--seed", *seed, "initialisation seed");
    cmd->add_option("--out", *out, "checkpoint directory")->required();
    cmd->callback([=] {
      ModelConfig c = config->empty() ? resolve_config(*arch, *size) : load_config_file(*config);
      Model model(c);
      model.init(*seed);
      save_checkpoint(*out, model);
      fmt::print("wrote {} ({} parameters, {})\n", *out, model.num_params(), c.arch);
    });
  }
  {
    auto* cmd = app.add_subcommand("info", "Print a checkpoint's config and parameter counts");
    auto model_dir = std::make_shared<std::string>();
    cmd->add_option("--model", *model_dir, "checkpoint directory")->required();
    cmd->callback([=] { print_info(*load_checkpoint(*model_dir, cpu_backend(), inference_options("fp32"))); });
  }
  {
    auto* cmd = app.add_subcommand("convert", "Rewrite a checkpoint's weights in another dtype (same tensor names)");
    auto model_dir = std::make_shared<std::string>();
    auto out = std::make_shared<std::string>();
    auto dtype = std::make_shared<std::string>("bf16");
    cmd->add_option("--model", *model_dir, "checkpoint directory")->required();
    cmd->add_option("--out", *out, "output checkpoint directory")->required();
    cmd->add_option("--dtype", *dtype, "bf16 (every tensor stored as safetensors \"BF16\") or fp32");
    cmd->callback([=] { convert_checkpoint(*model_dir, *out, parse_precision(*dtype)); });
  }
  {
    auto* cmd = app.add_subcommand("score", "Log-probability of each next token of a JSON id array");
    auto model_dir = std::make_shared<std::string>();
    auto ids_path = std::make_shared<std::string>();
    auto threads = std::make_shared<int>(0);
    cmd->add_option("--model", *model_dir, "checkpoint directory")->required();
    cmd->add_option("--ids", *ids_path, "JSON array of token ids")->required();
    cmd->add_option("--threads", *threads, "compute threads (default: all cores)");
    auto precision = std::make_shared<std::string>("fp32");
    cmd->add_option("--precision", *precision, kPrecisionHelp);
    auto device = std::make_shared<std::string>("cpu");
    cmd->add_option("--device", *device, kDeviceHelp);
    cmd->callback([=] {
      set_num_threads(*threads);
      auto model = load_checkpoint(*model_dir, device_backend(*device), inference_options(*precision));
      int64_t batch = 0, seq = 0;
      auto ids = read_id_rows(*ids_path, batch, seq);
      if (batch != 1) fail("{}: score takes one row (a flat array)", *ids_path);
      std::vector<int32_t> targets(ids.begin() + 1, ids.end());
      targets.push_back(-1);
      std::vector<float> lp(ids.size());
      auto r = model->forward(ids.data(), targets.data(), 1, seq, lp.data());
      nlohmann::json out;
      out["logprobs"] = std::vector<double>(lp.begin(), lp.end() - 1);
      out["loss"] = r.loss_sum / double(r.counted);
      std::cout << out.dump() << "\n";
    });
  }
  {
    auto* cmd = app.add_subcommand("grads", "Write logits, loss and every parameter gradient (for checking)");
    auto model_dir = std::make_shared<std::string>();
    auto ids_path = std::make_shared<std::string>();
    auto out = std::make_shared<std::string>();
    cmd->add_option("--model", *model_dir, "checkpoint directory")->required();
    cmd->add_option("--ids", *ids_path, "JSON array of id rows")->required();
    cmd->add_option("--out", *out, "output .safetensors")->required();
    auto precision = std::make_shared<std::string>("fp32");
    cmd->add_option("--precision", *precision, "fp32 | bf16: the precision of the training step whose gradients are written");
    auto device = std::make_shared<std::string>("cpu");
    cmd->add_option("--device", *device, kDeviceHelp);
    cmd->callback([=] {
      auto model = load_checkpoint(*model_dir, device_backend(*device), ModelOptions{parse_precision(*precision), true});
      int64_t batch = 0, seq = 0;
      auto ids = read_id_rows(*ids_path, batch, seq);
      std::vector<int32_t> targets(ids.size(), -1);
      for (int64_t b = 0; b < batch; ++b)
        for (int64_t t = 0; t + 1 < seq; ++t) targets[size_t(b * seq + t)] = ids[size_t(b * seq + t + 1)];
      const int64_t counted = batch * (seq - 1);
      const int64_t V = model->config().vocab_size;
      std::vector<float> logits(size_t(batch * seq * V));
      model->forward(ids.data(), nullptr, batch, seq, nullptr, logits.data());
      model->params().zero_grads();
      auto r = model->forward_backward(ids.data(), targets.data(), batch, seq, 1.0f / float(counted));
      float loss = float(r.loss_sum / double(r.counted));
      SafetensorsWriter w;
      w.add_f32("logits", {batch, seq, V}, logits.data());
      w.add_f32("loss", {1}, &loss);
      const std::vector<float> grads = model->params().download_grads();
      for (auto& p : model->params().params()) w.add_f32(p.name, p.shape, grads.data() + p.offset);
      w.write(*out);
    });
  }
}

}  // namespace txs::cli
