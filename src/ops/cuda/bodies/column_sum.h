// Parameter gradients that are sums over rows (RMSNorm's dgain, the conv's dw and dbias, the residual's dw,
// the softplus dbias) are reduced in two deterministic passes: pass 1 gives each (row block, column) its
// own partial sum in double, written to scratch [blocks, width]; pass 2 adds a column's partials in block
// order and accumulates the total into the fp32 gradient. No atomics, so the bits do not depend on
// scheduling, and the block size depends only on the row count.
#pragma once
#include "ops/cuda/portable.h"

namespace txs::cuda {

struct RowBlocks {
  int64_t rows_per_block = 0;
  int64_t blocks = 0;  // ≤ 256: pass 1's gridDim.y, far below 65535
};

// At least 32 rows per block (a partial that is not worth a store otherwise), at most 256 blocks.
TXS_HD RowBlocks row_blocks(int64_t rows) {
  RowBlocks b;
  if (rows <= 0) return b;
  const int64_t by_count = (rows + 255) / 256;
  b.rows_per_block = by_count > 32 ? by_count : 32;
  b.blocks = (rows + b.rows_per_block - 1) / b.rows_per_block;
  return b;
}

// Pass 2: Σ over blocks of partial[block, col], in block order.
TXS_HD double sum_partials(const double* partial, int64_t blocks, int64_t width, int64_t col) {
  double s = 0;
  for (int64_t b = 0; b < blocks; ++b) s += partial[b * width + col];
  return s;
}

}  // namespace txs::cuda
