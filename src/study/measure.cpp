#include "study/measure.h"

#include <algorithm>
#include <chrono>
#include <fmt/format.h>
#include <fstream>
#include <new>
#include <vector>

#include "core/error.h"
#include "core/rng.h"
#include "infer/engine.h"
#include "model/model.h"
#include "model/sequence_state.h"
#include "train/optimizer.h"

namespace txs::study {

namespace {
double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }
}  // namespace

nlohmann::json Throughput::to_json() const {
  nlohmann::json j = {{"length", length}};
  auto put = [&](const char* k, double v) { j[k] = v > 0 ? nlohmann::json(v) : nlohmann::json(nullptr); };
  put("train_tokens_per_s", train_tokens_per_s);
  put("prefill_tokens_per_s", prefill_tokens_per_s);
  put("decode_tokens_per_s", decode_tokens_per_s);
  j["state_bytes"] = state_bytes;
  j["ssm_state_bytes"] = ssm_state_bytes;
  j["kv_cache_bytes"] = kv_cache_bytes;
  if (!skipped.empty()) j["skipped"] = skipped;
  return j;
}

double available_memory_bytes() {
  std::ifstream f("/proc/meminfo");
  std::string key;
  double kb = 0;
  std::string unit;
  while (f >> key >> kb >> unit)
    if (key == "MemAvailable:") return kb * 1024.0;
  return 0;
}

double estimate_train_bytes(const ModelConfig& c, int64_t T) {
  // Parameters: weights, gradients, two AdamW moments (fp32). Activations kept for the backward pass: about
  // 24 d-wide rows per layer and token plus the MLP's 3 I-wide rows, and the per-head SSD chunk states.
  double params = 0;
  {
    const double d = double(c.hidden_size);
    params = double(c.vocab_size) * d * (c.tie_word_embeddings ? 1 : 2) +
             double(c.layer_types.size()) * (8.0 * d * d + 3.0 * d * double(c.intermediate_size));
  }
  const double L = double(c.layer_types.size()), d = double(c.hidden_size), I = double(c.intermediate_size);
  const double acts = double(T) * L * (24.0 * d + 3.0 * I + 4.0 * double(c.mamba_inner())) * 4.0;
  return 16.0 * params + acts + double(T) * double(c.vocab_size) * 4.0 / 8.0 /* blocked LM head */;
}

Throughput measure_throughput(ModelConfig config, int64_t length, const ThroughputOptions& opt) {
  Throughput r;
  r.length = length;
  config.max_position_embeddings = std::max(config.max_position_embeddings, length);
  r.state_bytes = int64_t(sequence_state_bytes(config, length));
  r.ssm_state_bytes = int64_t(sequence_state_bytes(config, 0));
  r.kv_cache_bytes = r.state_bytes - r.ssm_state_bytes;
  // Timings end with synchronize(): a device backend's ops may still be queued when a call returns.
  Backend& be = opt.backend ? *opt.backend : backend_for(opt.device);
  // The default limit is the host's memory, which only the CPU backend computes in (a device that runs out
  // throws std::bad_alloc below).
  const double host_limit = be.device() == Device::Cpu ? 0.7 * available_memory_bytes() : 0;
  const double limit = opt.memory_limit_bytes > 0 ? opt.memory_limit_bytes : host_limit;
  const double need = estimate_train_bytes(config, std::max<int64_t>(1, opt.batch) * length);
  if (limit > 0 && need > limit) {
    r.skipped = fmt::format("estimated {:.1f} GB for a training step > {:.1f} GB allowed", need / 1e9, limit / 1e9);
    return r;
  }
  try {
    Model model(config, be, ModelOptions{opt.precision, opt.train});
    model.init(1);
    Rng rng(1);
    const uint64_t V = uint64_t(config.vocab_size);
    const int64_t batch = std::max<int64_t>(1, opt.batch);
    std::vector<int32_t> ids(static_cast<size_t>(batch * length)), targets(static_cast<size_t>(batch * length));
    for (auto& x : ids) x = int32_t(rng.below(V));
    for (auto& x : targets) x = int32_t(rng.below(V));
    if (opt.train && opt.train_steps > 0) {
      AdamW adamw(model.backend(), model.params(), AdamWConfig{});
      auto step = [&] {
        model.params().zero_grads();
        model.forward_backward(ids.data(), targets.data(), batch, length, 1.0f / float(batch * length));
        adamw.step(1e-4);
        model.params().refresh_compute();  // as the trainer does after every update
      };
      step();  // warm-up: buffers allocated, primitives created
      be.synchronize();
      const double t0 = now();
      for (int i = 0; i < opt.train_steps; ++i) step();
      be.synchronize();
      r.train_tokens_per_s = double(batch * length) * opt.train_steps / (now() - t0);
    }
    if (opt.infer) {
      InferenceEngine eng(model);
      std::vector<float> logits(size_t(config.vocab_size));
      {  // warm-up
        SequenceState w = eng.new_sequence();
        eng.prefill(w, ids.data(), std::min<int64_t>(length, 512), nullptr, nullptr, logits.data());
      }
      SequenceState s = eng.new_sequence();
      double t0 = now();
      eng.prefill(s, ids.data(), length, nullptr, nullptr, logits.data());
      r.prefill_tokens_per_s = double(length) / (now() - t0);
      if (opt.decode_steps > 0) {
        std::vector<SequenceState*> ptrs = {&s};
        int32_t next = ids[0];
        eng.decode(ptrs, &next, logits.data());  // warm-up step
        t0 = now();
        for (int k = 0; k < opt.decode_steps; ++k) eng.decode(ptrs, &next, logits.data());
        r.decode_tokens_per_s = double(opt.decode_steps) / (now() - t0);
      }
    }
  } catch (const std::bad_alloc&) {
    r.skipped = "out of memory";
  }
  return r;
}

}  // namespace txs::study
