// The language model: token embedding → blocks (mixer + SwiGLU, each with RMSNorm and a residual scale)
// → final RMSNorm → LM head fused with the cross-entropy. Every computation goes through a Backend.
#pragma once
#include <memory>
#include <vector>

#include "model/config.h"
#include "model/layer.h"
#include "model/params.h"
#include "ops/backend.h"

namespace txs {

class Model {
 public:
  // Parameters start at zero; call init(seed) or load weights (load_checkpoint does).
  explicit Model(ModelConfig config, Backend& backend = cpu_backend());
  ~Model();
  Model(const Model&) = delete;
  Model& operator=(const Model&) = delete;

  const ModelConfig& config() const { return config_; }
  ParamStore& params() { return store_; }
  const ParamStore& params() const { return store_; }
  Backend& backend() { return be_; }

  // Spec section 8, bit-identical for a seed on every machine: each parameter draws from its own
  // generator seeded by (seed, parameter index), so the order of layer code does not matter.
  void init(uint64_t seed);

  int64_t num_params() const { return store_.size(); }
  int64_t matmul_params() const;  // every projection, the LM head included (6× this per token = matmul FLOPs)
  // Forward FLOPs per token of the attention and SSD mixing terms at sequence length T (not in matmul_params).
  double mixing_flops_per_token(int64_t seq) const;

  // Forward and backward. ids, targets: [batch, seq]; target −1 = not counted. Parameter gradients are
  // accumulated (+=), scaled by grad_scale (e.g. 1 / counted tokens of the whole optimizer step).
  // positions: [batch*seq] or null for 0..seq−1 in every row.
  CrossEntropyResult forward_backward(const int32_t* ids, const int32_t* targets, int64_t batch, int64_t seq,
                                      float grad_scale, const int32_t* positions = nullptr);

  // Forward only. target_logprob [batch*seq] (nullable) gets log p(target); logits [batch*seq, vocab]
  // (nullable) gets every logit (small inputs only: this is the full matrix).
  CrossEntropyResult forward(const int32_t* ids, const int32_t* targets, int64_t batch, int64_t seq,
                             float* target_logprob, float* logits = nullptr, const int32_t* positions = nullptr);
  // Forward of one row; logits [vocab] of its last position only.
  void forward_last(const int32_t* ids, int64_t seq, float* logits);

 private:
  struct Block;
  void check_ids(const int32_t* ids, const int32_t* targets, int64_t n) const;
  void run_forward(const int32_t* ids, int64_t batch, int64_t seq, const int32_t* positions);
  const float* head_weight();

  ModelConfig config_;
  Backend& be_;
  ParamStore store_;
  std::vector<std::unique_ptr<Block>> blocks_;
  int i_embed_, i_final_norm_, i_head_ = -1;
  RopeTable rope_head_, rope_state_;
  Pass pass_;
  Workspace ws_;
  Buffer<int32_t> pos_;
  Buffer<float> stream_;             // residual stream: [layers+1, rows, hidden]
  Buffer<float> final_, final_rstd_;  // final RMSNorm output and its statistics
  Buffer<float> dstream_, dtmp_, dbranch_;
};

}  // namespace txs
