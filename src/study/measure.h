// Throughput and memory measurements of one model configuration at one sequence length, with random
// weights (speed does not depend on the weights): a training step (forward + backward + AdamW, `batch` sequences) and
// inference through the InferenceEngine (one prefill of `length` tokens, then batch-1 decode steps), as
// bench/bench_train.cpp and bench/bench_infer.cpp measure them (warm-up first, then timed repetitions).
#pragma once
#include "model/params.h"
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

#include "model/config.h"

namespace txs::study {

struct ThroughputOptions {
  Precision precision = Precision::F32;  // of the model measured (training and inference)
  Device device = Device::Cpu;           // where it computes
  Backend* backend = nullptr;            // when set, used instead of `device` (tests: a fake device)
  int64_t batch = 1;         // sequences per training step (inference: one sequence)
  int train_steps = 2;       // timed training steps (after one warm-up step)
  int decode_steps = 8;      // timed decode steps (after one warm-up step)
  double memory_limit_bytes = 0;  // skip a length whose estimated memory is above this (0: 70% of MemAvailable
                                  // on the CPU, none on a device)
  bool train = true, infer = true;
};

struct Throughput {
  int64_t length = 0;
  double train_tokens_per_s = 0;    // 0: not measured (see skipped)
  double prefill_tokens_per_s = 0;
  double decode_tokens_per_s = 0;
  int64_t state_bytes = 0;          // one sequence's state after `length` tokens: SSM states + conv tails + KV cache
  int64_t ssm_state_bytes = 0;      // the part that does not grow with length
  int64_t kv_cache_bytes = 0;       // the part that does
  std::string skipped;              // why (part of) this length was not measured
  nlohmann::json to_json() const;
};

// Rough peak bytes of a batch-1 training step at this length (weights, gradients, AdamW moments, activations).
double estimate_train_bytes(const ModelConfig& c, int64_t length);
double available_memory_bytes();  // MemAvailable of /proc/meminfo (0 when unknown)

// config: any resolved config; max_position_embeddings is raised to `length` for the measurement.
Throughput measure_throughput(ModelConfig config, int64_t length, const ThroughputOptions& opt);

}  // namespace txs::study
