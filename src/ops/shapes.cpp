#include "ops/shapes.h"

#include "core/error.h"

namespace txs {

void check_shape(const AttentionShape& s, const char* op) {
  if (s.batch < 0 || s.q_len < 0 || s.kv_len < 0)
    fail("{}: negative size (batch {}, q_len {}, kv_len {})", op, s.batch, s.q_len, s.kv_len);
  if (s.heads < 1 || s.kv_heads < 1 || s.head_dim < 1)
    fail("{}: heads {}, kv_heads {}, head_dim {} must be positive", op, s.heads, s.kv_heads, s.head_dim);
  if (s.heads % s.kv_heads != 0) fail("{}: kv_heads {} does not divide heads {}", op, s.kv_heads, s.heads);
  if (s.kv_len < s.q_len) fail("{}: kv_len {} is shorter than q_len {}", op, s.kv_len, s.q_len);
  if (s.q_stride < s.heads * s.head_dim || s.out_stride < s.heads * s.head_dim)
    fail("{}: q_stride {} / out_stride {} smaller than heads·head_dim {}", op, s.q_stride, s.out_stride,
         s.heads * s.head_dim);
  if (s.kv_stride < s.kv_heads * s.head_dim)
    fail("{}: kv_stride {} smaller than kv_heads·head_dim {}", op, s.kv_stride, s.kv_heads * s.head_dim);
}

void check_shape(const SsdShape& s, const char* op) {
  if (s.batch < 0 || s.seq < 0) fail("{}: batch {} and seq {} must be non-negative", op, s.batch, s.seq);
  if (s.heads < 1 || s.head_dim < 1 || s.state_dim < 1 || s.groups < 1)
    fail("{}: heads {}, head_dim {}, state_dim {}, groups {} must be positive", op, s.heads, s.head_dim,
         s.state_dim, s.groups);
  if (s.heads % s.groups) fail("{}: heads {} is not a multiple of groups {}", op, s.heads, s.groups);
  if (s.chunk < 1) fail("{}: chunk {} must be positive", op, s.chunk);
  if (s.x_stride < s.heads * s.head_dim)
    fail("{}: x_stride {} < heads*head_dim {}", op, s.x_stride, s.heads * s.head_dim);
  if (s.y_stride < s.heads * s.head_dim)
    fail("{}: y_stride {} < heads*head_dim {}", op, s.y_stride, s.heads * s.head_dim);
  if (s.bc_stride < s.groups * s.state_dim)
    fail("{}: bc_stride {} < groups*state_dim {}", op, s.bc_stride, s.groups * s.state_dim);
  if (s.dt_stride < s.heads) fail("{}: dt_stride {} < heads {}", op, s.dt_stride, s.heads);
}

}  // namespace txs
