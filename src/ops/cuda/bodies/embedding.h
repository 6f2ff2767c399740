// Embedding bodies (semantics: ops/cpu/elementwise.h): one thread per (row r, column c); ids live on the
// device, so they are checked here: an id outside [0, vocab) is never dereferenced — the body sets
// bad[0] = 1, bad[1] = that id, a deferred error (ops/cuda/pointwise.h). The table is contiguous [vocab, dim],
// fp32 or bf16 (raw bits, widened exactly).
#pragma once
#include "ops/cuda/portable.h"

namespace txs::cuda {

template <class Table>
TXS_HD void embedding_forward_element(const int32_t* ids, const Table* table, float* out, int64_t dim, int64_t vocab,
                                      int64_t r, int64_t c, int32_t* bad) {
  const int32_t id = ids[r];
  if (id < 0 || id >= vocab) {
    bad[0] = 1;
    bad[1] = id;
    return;
  }
  out[r * dim + c] = load_f32(table, int64_t(id) * dim + c);
}

// Backward: the index of dtable that dout[r, c] is added to (the kernel adds with atomicAdd, since several
// rows may carry the same id), or −1 for an id outside the table (recorded as above).
TXS_HD int64_t embedding_backward_target(const int32_t* ids, int64_t dim, int64_t vocab, int64_t r, int64_t c,
                                         int32_t* bad) {
  const int32_t id = ids[r];
  if (id < 0 || id >= vocab) {
    bad[0] = 1;
    bad[1] = id;
    return -1;
  }
  return int64_t(id) * dim + c;
}

}  // namespace txs::cuda
