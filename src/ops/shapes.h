// Shape and parameter structs of the ops: plain values shared by the op table (ops/backend.h) and every
// backend's kernels. They describe how the columns of a matrix operand split into heads; row strides are
// carried by the operands' views (ops/tensor.h) and filled in by the backend.
#pragma once
#include <cstdint>

namespace txs {

struct AttentionShape {
  int64_t batch = 1;
  int64_t q_len = 0;     // queries per batch row
  int64_t kv_len = 0;    // keys per batch row; query i sits at key position i + (kv_len − q_len)
  int64_t heads = 1;     // H (query heads)
  int64_t kv_heads = 1;  // Hkv; query head h reads kv head h / (H / Hkv)
  int64_t head_dim = 0;  // P
  // Row strides in elements: q row (b,t) starts at q + (b*q_len + t)*q_stride, head h at + h*P.
  int64_t q_stride = 0;   // ≥ H*P (q may be a column slice of a fused qkv buffer)
  int64_t kv_stride = 0;  // ≥ Hkv*P, for both k and v
  int64_t out_stride = 0; // ≥ H*P
};

struct SsdShape {
  int64_t batch = 1;
  int64_t seq = 0;        // T
  int64_t heads = 1;      // H
  int64_t head_dim = 0;   // P
  int64_t groups = 1;     // G: B and C have G groups; head h uses group h / (H / G)
  int64_t state_dim = 0;  // N
  int64_t chunk = 256;    // Q
  // Row strides in elements (token (b,t) is row b*seq + t); inputs may be column slices of one buffer.
  int64_t x_stride = 0;   // ≥ H*P
  int64_t bc_stride = 0;  // ≥ G*N, for both B and C
  int64_t dt_stride = 0;  // ≥ H
  int64_t y_stride = 0;   // ≥ H*P
};

// Reject a shape no backend can run: negative sizes, head or group counts that do not divide, row strides
// narrower than the rows. Every backend calls these first, so a bad shape gets the same message everywhere;
// `op` names the op in it. Backend-specific limits (the GPU's largest head_dim) are checked by the backend.
void check_shape(const AttentionShape& s, const char* op);
void check_shape(const SsdShape& s, const char* op);

struct CrossEntropyResult {
  double loss_sum = 0;   // Σ −log p(target) over rows with a target
  int64_t counted = 0;   // rows with target ≥ 0
};

struct AdamWParams {
  float lr = 1e-3f, beta1 = 0.9f, beta2 = 0.95f, eps = 1e-8f, weight_decay = 0.1f;
  int64_t step = 1;  // 1-based, for the bias corrections
};

// One parameter's run [offset, offset + length) of flat parameter buffers, for the multi-tensor AdamW
// (Backend::adamw_update_segments); decay: whether weight decay applies to it.
struct AdamWSegment {
  int64_t offset = 0, length = 0;
  bool decay = false;
};

// A RoPE cos/sin table as kernels read it: row p holds dim/2 values for position p.
struct RopeCoeffs {
  const float* cos = nullptr;
  const float* sin = nullptr;
  int64_t dim = 0;        // rotated vector size D (even)
  int64_t positions = 0;  // rows available: positions [0, positions)
};

}  // namespace txs
