// What every mixer (SSD, attention, Mamba-2) and the MLP share: the shape of the current pass and the
// forward/backward contract. Each layer keeps the activations its backward pass needs.
#pragma once
#include <cstdint>

#include "core/buffer.h"
#include "core/rng.h"
#include "model/config.h"
#include "model/params.h"
#include "ops/backend.h"

namespace txs {

struct Pass {
  int64_t batch = 1, seq = 0;
  const int32_t* pos = nullptr;  // [batch*seq] position of every token (Unified RoPE)
  const RopeTable* rope_head = nullptr;   // dimension head_dim (q, k)
  const RopeTable* rope_state = nullptr;  // dimension ssm_state_size (C, B); the same table when N = P
  int64_t rows() const { return batch * seq; }
};

// Scratch shared by all layers during the backward pass (grown once, reused every step).
struct Workspace {
  Buffer<float> a, b, c, d;
};

class Layer {
 public:
  virtual ~Layer() = default;
  // Registers parameters (in checkpoint order) — called from the constructor of the concrete layer.
  // Resolves parameter pointers after ParamStore::allocate().
  virtual void bind(ParamStore& store) = 0;
  // u: input [rows, hidden]; out: [rows, hidden]. Saves what backward needs.
  virtual void forward(Backend& be, const Pass& pass, const float* u, float* out) = 0;
  // dout [rows, hidden] → du [rows, hidden] (written); parameter gradients accumulated.
  virtual void backward(Backend& be, const Pass& pass, const float* u, const float* dout, float* du,
                        Workspace& ws) = 0;
};

}  // namespace txs
