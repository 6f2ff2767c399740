// What every mixer (SSD, attention, Mamba-2) and the MLP share: the shape of the current pass and the
// two ways a layer runs.
//   Training / scoring: forward over [batch, seq] saving what backward needs, then backward.
//   Stateful (inference): forward_cached over the new tokens of several sequences, each continuing from its
//   carried LayerState — prefill (one sequence, many tokens) and decode (many sequences, one token each,
//   at mixed positions) are the same call. Prefill from an empty state equals forward.
#pragma once
#include <cstdint>

#include "model/config.h"
#include "model/params.h"
#include "ops/backend.h"

namespace txs {

struct Pass {
  int64_t batch = 1, seq = 0;  // stateful passes: batch = sequences, seq = new tokens per sequence
  Tensor pos;                  // I32 [1, batch·seq]: position of every token (Unified RoPE)
  RopeCoeffs rope_head;        // dimension head_dim (q, k)
  RopeCoeffs rope_state;       // dimension ssm_state_size (C, B); the same table when N = P
  int64_t rows() const { return batch * seq; }
};

// One layer's inference state for one sequence, in backend memory. Fields a layer type does not use stay
// empty. Copying it (DeviceBuffer copies through the backend) forks the sequence.
struct LayerState {
  DeviceBuffer ssm;   // [H·P·N] SSD state
  DeviceBuffer conv;  // [(K−1)·channels] conv inputs of the last K−1 tokens (zeros before the start)
  DeviceBuffer kv;    // [tokens, 2·Hkv·P] rotated keys then values of every token so far
  size_t bytes() const { return ssm.bytes() + conv.bytes() + kv.bytes(); }
};

// A stateful pass: Pass plus, per sequence b, this layer's state and the tokens it had before the pass.
struct CachedPass : Pass {
  LayerState* const* states = nullptr;  // [batch]
  const int64_t* past = nullptr;        // [batch], host
  bool decode = false;                  // one token per sequence (seq = 1), the O(1) recurrence
};

class Layer {
 public:
  virtual ~Layer() = default;
  // u: input [rows, hidden]; out: [rows, hidden]. Saves what backward needs.
  virtual void forward(Backend& be, const Pass& pass, const Tensor& u, const Tensor& out) = 0;
  // dout [rows, hidden] → du [rows, hidden] (written); parameter gradients accumulated. Scratch comes from
  // the arena and lives until the caller resets it.
  virtual void backward(Backend& be, const Pass& pass, const Tensor& u, const Tensor& dout, const Tensor& du,
                        Arena& scratch) = 0;
  // A fresh state (zeros; an empty KV cache).
  virtual LayerState new_state(Backend& be) const { return {}; }
  // Stateful forward: advances every sequence's state by its new tokens.
  virtual void forward_cached(Backend& be, const CachedPass& pass, const Tensor& u, const Tensor& out) {
    forward(be, pass, u, out);  // stateless layers (the MLP)
  }
};

}  // namespace txs
