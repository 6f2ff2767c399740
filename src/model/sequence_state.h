// The decoding state of one sequence: one LayerState per layer (SSD states, conv tails, the KV caches of
// attention layers only) and the number of tokens fed so far. A plain value: copying it forks the
// sequence (prefix reuse), through the backend's copy.
#pragma once
#include <cstdint>
#include <vector>

#include "model/layer.h"

namespace txs {

class SequenceState {
 public:
  int64_t position() const { return position_; }  // tokens fed so far (= RoPE position of the next token)
  size_t bytes() const {                           // memory held for this sequence (KV cache counted as used)
    size_t n = 0;
    for (auto& l : layers_) n += l.bytes();
    return n;
  }
  std::vector<LayerState>& layers() { return layers_; }
  const std::vector<LayerState>& layers() const { return layers_; }
  void set_position(int64_t p) { position_ = p; }

 private:
  std::vector<LayerState> layers_;
  int64_t position_ = 0;
};

// Bytes of decoding state one sequence of `context` tokens holds for this config (what `info` and the
// server's /metrics report): SSD states + conv tails + KV caches of the attention layers.
size_t sequence_state_bytes(const ModelConfig& config, int64_t context);

}  // namespace txs
