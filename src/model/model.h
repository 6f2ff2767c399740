// The language model: token embedding → blocks (mixer + SwiGLU, each with RMSNorm and a residual scale)
// → final RMSNorm → LM head fused with the cross-entropy. Defined once, for training, scoring and
// stateful inference; every computation goes through a Backend.
#pragma once
#include <functional>
#include <memory>
#include <vector>

#include "model/config.h"
#include "model/layer.h"
#include "model/params.h"
#include "model/sequence_state.h"
#include "ops/backend.h"
#include "ops/rope_table.h"

namespace txs {

// How a model holds its weights (model/params.h): the precision its products run in, and whether it trains
// (gradients, fp32 masters) or only runs inference.
struct ModelOptions {
  Precision precision = Precision::F32;
  bool training = true;
};

class Model {
 public:
  // Parameters start at zero; call init(seed) or load weights (load_checkpoint does).
  explicit Model(ModelConfig config, Backend& backend = cpu_backend(), ModelOptions options = {});
  ~Model();
  Model(const Model&) = delete;
  Model& operator=(const Model&) = delete;

  const ModelConfig& config() const { return config_; }
  ParamStore& params() { return store_; }
  const ParamStore& params() const { return store_; }
  Backend& backend() { return be_; }
  Precision precision() const { return store_.precision(); }

  // Spec section 8, bit-identical for a seed on every machine: each parameter draws from its own
  // generator seeded by (seed, parameter index), so the order of layer code does not matter.
  void init(uint64_t seed);

  int64_t num_params() const { return store_.size(); }
  int64_t matmul_params() const;  // every projection, the LM head included (6× this per token = matmul FLOPs)
  // Forward FLOPs per token of the attention and SSD mixing terms at sequence length T (not in matmul_params).
  double mixing_flops_per_token(int64_t seq) const;

  // ---- training and scoring (host ids in, host results out) ------------------------------------------------
  // Forward and backward. ids, targets: [batch, seq]; target −1 = not counted. Parameter gradients are
  // accumulated (+=), scaled by grad_scale (e.g. 1 / counted tokens of the whole optimizer step).
  // positions: [batch*seq] or null for 0..seq−1 in every row.
  // grads_ready (optional): called as the backward pass finishes parameters, with the range [lo, hi) of the
  // gradient buffer that this pass will not touch again; the ranges come in decreasing order (the LM head
  // and final norm, then each block from the last, then the embedding) and together cover the buffer, so
  // a data-parallel trainer can start reducing later gradients while earlier blocks are still computed.
  using GradsReady = std::function<void(int64_t lo, int64_t hi)>;
  CrossEntropyResult forward_backward(const int32_t* ids, const int32_t* targets, int64_t batch, int64_t seq,
                                      float grad_scale, const int32_t* positions = nullptr,
                                      const GradsReady& grads_ready = {});

  // Forward only. target_logprob [batch*seq] (nullable) gets log p(target); logits [batch*seq, vocab]
  // (nullable) gets every logit (small inputs only: this is the full matrix).
  CrossEntropyResult forward(const int32_t* ids, const int32_t* targets, int64_t batch, int64_t seq,
                             float* target_logprob, float* logits = nullptr, const int32_t* positions = nullptr);
  // Forward of one row; logits [vocab] of its last position only.
  void forward_last(const int32_t* ids, int64_t seq, float* logits);

  // ---- stateful inference -----------------------------------------------------------------------------------
  SequenceState new_sequence() const;
  // Feeds `tokens_per_seq` new tokens to each sequence (ids: host [seqs, tokens_per_seq]), continuing its
  // state at its position. decode: one token per sequence, the O(1) path; otherwise one sequence (prefill).
  // Returns the final normed hidden states [rows, hidden] in backend memory, valid until the next call.
  Tensor forward_cached(const std::vector<SequenceState*>& seqs, const int32_t* ids, int64_t tokens_per_seq,
                        bool decode);
  // The LM head matrix [vocab, hidden] (the embedding when tied).
  Tensor head_weight() const;

  // Checks token ids (and targets, −1 allowed) against the vocabulary: a one-line error naming the first bad one.
  void check_ids(const int32_t* ids, const int32_t* targets, int64_t n) const;

 private:
  struct Block;
  // Uploads ids (and positions) and runs every block; h_final_ gets the final normed hidden states.
  void run_forward(const int32_t* ids, int64_t batch, int64_t seq, const int32_t* positions);
  void set_positions(Pass& pass, const int32_t* positions, int64_t batch, int64_t seq, const int64_t* start);

  ModelConfig config_;
  Backend& be_;
  ParamStore store_;
  std::vector<std::unique_ptr<Block>> blocks_;
  ParamRef embed_, final_norm_, head_;
  RopeTable rope_head_, rope_state_;
  Pass pass_;
  Arena scratch_;
  std::vector<int32_t> host_pos_;
  DeviceBuffer ids_, targets_, pos_;
  DeviceBuffer stream_;              // residual stream: [layers+1, rows, hidden]
  DeviceBuffer final_, final_rstd_;  // final RMSNorm output and its statistics
  DeviceBuffer dstream_, dtmp_, dbranch_, out_;
};

}  // namespace txs
