// The CUDA backend's pointwise and row kernels (launchers declared in pointwise.h). Each kernel maps its
// threads to indices and calls the body in bodies/*.h that does the work, so the arithmetic and indexing are
// the code tests/test_cuda_bodies.cpp checks on the host.
// Layouts: element-wise ops use one thread per element, columns fastest (coalesced), in grid-stride loops;
// RMSNorm uses one block per row (block reduction in double for the row statistic); parameter gradients
// summed over rows use the two deterministic passes of bodies/column_sum.h; sum_squares reduces per block,
// then adds the block sums in order in one block. Device-side checks of ids and positions record a deferred
// error (pointwise.h) without waiting; all_finite's flag is copied back at once (its caller wants the answer).
#include "ops/cuda/pointwise.h"

#include <algorithm>
#include <vector>

#include "ops/cuda/bodies/adamw.h"
#include "ops/cuda/bodies/column_sum.h"
#include "ops/cuda/bodies/conv1d.h"
#include "ops/cuda/bodies/convert.h"
#include "ops/cuda/bodies/embedding.h"
#include "ops/cuda/bodies/reduce.h"
#include "ops/cuda/bodies/residual.h"
#include "ops/cuda/bodies/rmsnorm.h"
#include "ops/cuda/bodies/rope.h"
#include "ops/cuda/bodies/silu_mul.h"
#include "ops/cuda/bodies/softplus.h"
#include "ops/cuda/cuda_check.h"
#include "ops/cuda/device_scratch.h"

namespace txs::cuda {
namespace {

constexpr int kThreads = 256;            // threads per block of every kernel here (a multiple of 32)
constexpr int64_t kMaxBlocks = 1 << 20;  // grid-stride loops cover larger index spaces
constexpr int64_t kSumBlocks = 1024;     // sum_squares' first pass: at most this many block sums

unsigned blocks_for(int64_t n) { return unsigned(std::min<int64_t>((n + kThreads - 1) / kThreads, kMaxBlocks)); }

#define TXS_GRID_LOOP(i, n) \
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < (n); i += int64_t(gridDim.x) * blockDim.x)

// Σ v over the block, returned to every thread; the order is fixed for a fixed block size. Every thread of
// the block must call it (it synchronises); blockDim.x a multiple of 32.
__device__ double block_sum(double v) {
  __shared__ double warp_sums[32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  __syncthreads();  // readers of an earlier call are done with warp_sums
  if (lane == 0) warp_sums[warp] = v;
  __syncthreads();
  v = lane < warps ? warp_sums[lane] : 0.0;  // every warp adds the warp sums the same way
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// Two int32 flags on the device ([0]: set when a check failed, [1]: the offending value), reset before each
// checked kernel and read back after it. Ops run on one stream, so one pair serves every op.
int32_t* device_flags() {
  static int32_t* flags = [] {
    int32_t* p = nullptr;
    TXS_CUDA_CHECK(cudaMalloc(&p, 2 * sizeof(int32_t)));
    return p;
  }();
  return flags;
}
int32_t* reset_flags() {
  int32_t* flags = device_flags();
  TXS_CUDA_CHECK(cudaMemsetAsync(flags, 0, 2 * sizeof(int32_t)));
  return flags;
}
// True when no check failed; otherwise *bad_value (when given) receives the offending value.
bool flags_clear(const int32_t* flags, int32_t* bad_value) {
  int32_t host[2];
  TXS_CUDA_CHECK(cudaMemcpy(host, flags, sizeof host, cudaMemcpyDeviceToHost));
  if (host[0] != 0 && bad_value) *bad_value = host[1];
  return host[0] == 0;
}

// The deferred checks' records: one (flag, value) pair per checked op, zero until a kernel finds a bad input,
// plus the table size each op was last launched with (host side, for the message).
constexpr int kCheckedOps = 4;
int32_t* deferred_records() {
  static int32_t* records = [] {
    int32_t* p = nullptr;
    TXS_CUDA_CHECK(cudaMalloc(&p, 2 * kCheckedOps * sizeof(int32_t)));
    TXS_CUDA_CHECK(cudaMemset(p, 0, 2 * kCheckedOps * sizeof(int32_t)));
    return p;
  }();
  return records;
}
int64_t g_deferred_limit[kCheckedOps] = {};
int32_t* deferred_flags(CheckedOp op, int64_t limit) {
  g_deferred_limit[int(op)] = limit;
  return deferred_records() + 2 * int(op);
}

// Scratch of the column reductions: [blocks, width] doubles after `offset` bytes (256-aligned) of other data.
size_t align256(size_t bytes) { return (bytes + 255) / 256 * 256; }
double* partial_scratch(const RowBlocks& b, int64_t width, size_t offset, void** base) {
  *base = scratch(ScratchSlot::Reduce, offset + size_t(b.blocks * width) * sizeof(double));
  return reinterpret_cast<double*>(static_cast<char*>(*base) + offset);
}
dim3 partial_grid(const RowBlocks& b, int64_t width) {
  return dim3(unsigned((width + kThreads - 1) / kThreads), unsigned(b.blocks));
}
// The row range of this block of a column reduction's pass 1.
__device__ void block_rows(const RowBlocks& b, int64_t rows, int64_t* r0, int64_t* r1) {
  *r0 = int64_t(blockIdx.y) * b.rows_per_block;
  *r1 = min(rows, *r0 + b.rows_per_block);
}

// ---- RMSNorm -----------------------------------------------------------------------------------------------

__global__ void rmsnorm_forward_kernel(const float* x, const float* gain, float* y, float* rstd, int64_t dim,
                                       double eps) {
  const int64_t r = blockIdx.x;
  const double sumsq = block_sum(rmsnorm_sumsq_part(x, dim, r, threadIdx.x, blockDim.x));
  const float s = rmsnorm_row_rstd(sumsq, dim, eps, threadIdx.x == 0 ? rstd : nullptr, r);
  for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) rmsnorm_forward_element(x, gain, y, s, dim, r, i);
}

__global__ void rmsnorm_dx_kernel(const float* dy, const float* x, const float* gain, const float* rstd, float* dx,
                                  int64_t dim) {
  const int64_t r = blockIdx.x;
  const double dot = block_sum(rmsnorm_dot_part(dy, x, gain, dim, r, threadIdx.x, blockDim.x));
  for (int64_t i = threadIdx.x; i < dim; i += blockDim.x)
    rmsnorm_backward_element(dy, x, gain, rstd, dot, dx, dim, r, i);
}

__global__ void rmsnorm_dgain_part_kernel(const float* dy, const float* x, const float* rstd, int64_t rows, int64_t dim,
                                          RowBlocks b, double* partial) {
  const int64_t c = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (c >= dim) return;
  int64_t r0, r1;
  block_rows(b, rows, &r0, &r1);
  partial[int64_t(blockIdx.y) * dim + c] = rmsnorm_dgain_part(dy, x, rstd, dim, c, r0, r1);
}

__global__ void rmsnorm_dgain_finish_kernel(const double* partial, int64_t blocks, int64_t dim, float* dgain) {
  TXS_GRID_LOOP(c, dim) rmsnorm_dgain_finish(partial, blocks, dim, c, dgain);
}

// ---- RoPE --------------------------------------------------------------------------------------------------

__global__ void rope_kernel(float* x, int64_t rows, int64_t heads, int64_t stride, const int32_t* pos, RopeCoeffs c,
                            bool inverse, int32_t* bad) {
  TXS_GRID_LOOP(k, rows * heads * (c.dim / 2))
    rope_pair(x, stride, pos, c.cos, c.sin, c.dim, c.positions, heads, inverse, k, bad);
}

// ---- conv1d + SiLU -----------------------------------------------------------------------------------------

__global__ void conv1d_forward_kernel(const float* x, int64_t x_stride, const float* w, const float* bias, float* y,
                                      int64_t y_stride, int64_t rows, int64_t seq, int64_t channels, int64_t width) {
  TXS_GRID_LOOP(k, rows * channels)
    conv1d_silu_forward_element(x, x_stride, w, bias, y, y_stride, seq, width, k / channels, k % channels);
}

__global__ void conv1d_grad_kernel(const float* dy, int64_t y_stride, const float* x, int64_t x_stride, const float* w,
                                   const float* bias, float* g, int64_t rows, int64_t seq, int64_t channels,
                                   int64_t width) {
  TXS_GRID_LOOP(k, rows * channels)
    conv1d_silu_grad_element(dy, y_stride, x, x_stride, w, bias, g, seq, channels, width, k / channels, k % channels);
}

__global__ void conv1d_param_part_kernel(const float* g, const float* x, int64_t x_stride, int64_t rows, int64_t seq,
                                         int64_t channels, int64_t width, RowBlocks b, double* partial) {
  const int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x, span = (width + 1) * channels;
  if (e >= span) return;
  int64_t r0, r1;
  block_rows(b, rows, &r0, &r1);
  partial[int64_t(blockIdx.y) * span + e] = conv1d_param_grad_part(g, x, x_stride, seq, channels, width, e, r0, r1);
}

__global__ void conv1d_param_finish_kernel(const double* partial, int64_t blocks, int64_t channels, int64_t width,
                                           float* dw, float* dbias) {
  TXS_GRID_LOOP(e, (width + 1) * channels) conv1d_param_grad_finish(partial, blocks, channels, width, e, dw, dbias);
}

__global__ void conv1d_dx_kernel(const float* g, const float* w, float* dx, int64_t x_stride, int64_t rows, int64_t seq,
                                 int64_t channels, int64_t width) {
  TXS_GRID_LOOP(k, rows * channels)
    conv1d_dx_element(g, w, dx, x_stride, seq, channels, width, k / channels, k % channels);
}

// ---- SiLU-gated product, residual, softplus ---------------------------------------------------------------

__global__ void silu_mul_forward_kernel(const float* gate, int64_t gate_stride, const float* up, int64_t up_stride,
                                        float* out, int64_t out_stride, int64_t rows, int64_t n) {
  TXS_GRID_LOOP(k, rows * n) silu_mul_forward_element(gate, gate_stride, up, up_stride, out, out_stride, k / n, k % n);
}

__global__ void silu_mul_backward_kernel(const float* dout, int64_t out_stride, const float* gate, int64_t gate_stride,
                                         const float* up, int64_t up_stride, float* dgate, float* dup, int64_t rows,
                                         int64_t n) {
  TXS_GRID_LOOP(k, rows * n)
    silu_mul_backward_element(dout, out_stride, gate, gate_stride, up, up_stride, dgate, dup, k / n, k % n);
}

__global__ void residual_forward_kernel(const float* skip, const float* w, const float* branch, float* out,
                                        int64_t rows, int64_t dim) {
  TXS_GRID_LOOP(k, rows * dim) residual_forward_element(skip, w, branch, out, dim, k / dim, k % dim);
}

__global__ void residual_dskip_kernel(const float* dout, const float* w, float* dskip, int64_t rows, int64_t dim) {
  TXS_GRID_LOOP(k, rows * dim) residual_dskip_element(dout, w, dskip, dim, k / dim, k % dim);
}

__global__ void residual_dw_part_kernel(const float* dout, const float* skip, int64_t rows, int64_t dim, RowBlocks b,
                                        double* partial) {
  const int64_t c = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (c >= dim) return;
  int64_t r0, r1;
  block_rows(b, rows, &r0, &r1);
  partial[int64_t(blockIdx.y) * dim + c] = residual_dw_part(dout, skip, dim, c, r0, r1);
}

__global__ void residual_dw_finish_kernel(const double* partial, int64_t blocks, int64_t dim, float* dw) {
  TXS_GRID_LOOP(c, dim) residual_dw_finish(partial, blocks, dim, c, dw);
}

__global__ void softplus_forward_kernel(const float* raw, int64_t raw_stride, const float* bias, float* dt,
                                        int64_t rows, int64_t heads) {
  TXS_GRID_LOOP(k, rows * heads) softplus_forward_element(raw, raw_stride, bias, dt, heads, k / heads, k % heads);
}

__global__ void softplus_backward_kernel(const float* ddt, const float* raw, int64_t raw_stride, const float* bias,
                                         float* draw, int64_t rows, int64_t heads) {
  TXS_GRID_LOOP(k, rows * heads)
    softplus_backward_element(ddt, raw, raw_stride, bias, draw, heads, k / heads, k % heads);
}

__global__ void softplus_dbias_part_kernel(const float* draw, int64_t raw_stride, int64_t rows, int64_t heads,
                                           RowBlocks b, double* partial) {
  const int64_t h = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (h >= heads) return;
  int64_t r0, r1;
  block_rows(b, rows, &r0, &r1);
  partial[int64_t(blockIdx.y) * heads + h] = softplus_dbias_part(draw, raw_stride, h, r0, r1);
}

__global__ void softplus_dbias_finish_kernel(const double* partial, int64_t blocks, int64_t heads, float* dbias) {
  TXS_GRID_LOOP(h, heads) softplus_dbias_finish(partial, blocks, heads, h, dbias);
}

// ---- embedding ---------------------------------------------------------------------------------------------

template <class Table>
__global__ void embedding_forward_kernel(const int32_t* ids, const Table* table, float* out, int64_t rows, int64_t dim,
                                         int64_t vocab, int32_t* bad) {
  TXS_GRID_LOOP(k, rows * dim) embedding_forward_element(ids, table, out, dim, vocab, k / dim, k % dim, bad);
}

__global__ void embedding_backward_kernel(const int32_t* ids, const float* dout, float* dtable, int64_t rows,
                                          int64_t dim, int64_t vocab, int32_t* bad) {
  TXS_GRID_LOOP(k, rows * dim) {
    const int64_t target = embedding_backward_target(ids, dim, vocab, k / dim, k % dim, bad);
    if (target >= 0) atomicAdd(dtable + target, dout[k]);  // dout is contiguous [rows, dim]: element k
  }
}

// ---- optimizer, reductions, fill, conversions --------------------------------------------------------------

__global__ void adamw_kernel(float* w, const float* g, float* m, float* v, int64_t n, AdamWCoeffs k) {
  TXS_GRID_LOOP(i, n) adamw_element(w, g, m, v, k, i);
}

__global__ void adamw_segments_kernel(float* w, const float* g, float* m, float* v, int64_t n, AdamWCoeffs k,
                                      const AdamWRun* runs, int64_t nruns) {
  TXS_GRID_LOOP(i, n) adamw_segment_element(w, g, m, v, k, runs, nruns, i);
}

__global__ void sum_squares_part_kernel(const float* x, int64_t n, double* block_sums) {
  const int64_t step = int64_t(gridDim.x) * blockDim.x;
  const double s = block_sum(sum_squares_part(x, n, int64_t(blockIdx.x) * blockDim.x + threadIdx.x, step));
  if (threadIdx.x == 0) block_sums[blockIdx.x] = s;
}

__global__ void sum_block_sums_kernel(const double* block_sums, int64_t blocks, double* total) {
  double s = 0;
  for (int64_t b = threadIdx.x; b < blocks; b += blockDim.x) s += block_sums[b];
  s = block_sum(s);
  if (threadIdx.x == 0) *total = s;
}

__global__ void scale_kernel(float* x, int64_t n, float s) {
  TXS_GRID_LOOP(i, n) scale_element(x, s, i);
}

__global__ void check_finite_kernel(const float* x, int64_t n, int32_t* bad) {
  TXS_GRID_LOOP(i, n) check_finite_element(x, i, bad);
}

template <class Bits>
__global__ void fill_kernel(Bits* dst, int64_t stride, int64_t rows, int64_t cols, Bits pattern) {
  TXS_GRID_LOOP(k, rows * cols) fill_element(dst, stride, k / cols, k % cols, pattern);
}

__global__ void f32_to_bf16_kernel(const float* src, int64_t src_stride, uint16_t* dst, int64_t dst_stride,
                                   int64_t rows, int64_t cols) {
  TXS_GRID_LOOP(k, rows * cols) convert_f32_to_bf16_element(src, src_stride, dst, dst_stride, k / cols, k % cols);
}

__global__ void bf16_to_f32_kernel(const uint16_t* src, int64_t src_stride, float* dst, int64_t dst_stride,
                                   int64_t rows, int64_t cols) {
  TXS_GRID_LOOP(k, rows * cols) convert_bf16_to_f32_element(src, src_stride, dst, dst_stride, k / cols, k % cols);
}

}  // namespace

// ---- launchers ---------------------------------------------------------------------------------------------

void rmsnorm_forward(const float* x, const float* gain, float* y, float* rstd, int64_t rows, int64_t dim, double eps) {
  if (rows == 0) return;
  rmsnorm_forward_kernel<<<unsigned(rows), kThreads>>>(x, gain, y, rstd, dim, eps);
  TXS_CUDA_LAUNCHED("rmsnorm_forward");
}

void rmsnorm_backward(const float* dy, const float* x, const float* gain, const float* rstd, float* dx, float* dgain,
                      int64_t rows, int64_t dim) {
  if (rows == 0) return;
  if (dgain) {  // before dx: dx may alias dy or x
    const RowBlocks b = row_blocks(rows);
    void* base;
    double* partial = partial_scratch(b, dim, 0, &base);
    rmsnorm_dgain_part_kernel<<<partial_grid(b, dim), kThreads>>>(dy, x, rstd, rows, dim, b, partial);
    TXS_CUDA_LAUNCHED("rmsnorm_dgain_part");
    rmsnorm_dgain_finish_kernel<<<blocks_for(dim), kThreads>>>(partial, b.blocks, dim, dgain);
    TXS_CUDA_LAUNCHED("rmsnorm_dgain_finish");
  }
  rmsnorm_dx_kernel<<<unsigned(rows), kThreads>>>(dy, x, gain, rstd, dx, dim);
  TXS_CUDA_LAUNCHED("rmsnorm_dx");
}

void rope_apply(float* x, int64_t rows, int64_t heads, int64_t stride, const int32_t* pos, const RopeCoeffs& c,
                bool inverse) {
  const int64_t n = rows * heads * (c.dim / 2);
  if (n == 0) return;
  rope_kernel<<<blocks_for(n), kThreads>>>(x, rows, heads, stride, pos, c, inverse,
                                           deferred_flags(CheckedOp::Rope, c.positions));
  TXS_CUDA_LAUNCHED("rope_apply");
}

void conv1d_silu_forward(const float* x, int64_t x_stride, const float* w, const float* bias, float* y,
                         int64_t y_stride, int64_t batch, int64_t seq, int64_t channels, int64_t width) {
  const int64_t rows = batch * seq;
  if (rows * channels == 0) return;
  conv1d_forward_kernel<<<blocks_for(rows * channels), kThreads>>>(x, x_stride, w, bias, y, y_stride, rows, seq,
                                                                   channels, width);
  TXS_CUDA_LAUNCHED("conv1d_silu_forward");
}

void conv1d_silu_backward(const float* dy, int64_t y_stride, const float* x, int64_t x_stride, const float* w,
                          const float* bias, float* dx, float* dw, float* dbias, int64_t batch, int64_t seq,
                          int64_t channels, int64_t width) {
  const int64_t rows = batch * seq, n = rows * channels, span = (width + 1) * channels;
  if (n == 0) return;
  // Scratch: g [rows, C] fp32, then the dw/dbias partials [blocks, (W+1)·C] in double.
  const RowBlocks b = row_blocks(rows);
  void* base;
  double* partial = partial_scratch(b, span, align256(size_t(n) * sizeof(float)), &base);
  float* g = static_cast<float*>(base);
  conv1d_grad_kernel<<<blocks_for(n), kThreads>>>(dy, y_stride, x, x_stride, w, bias, g, rows, seq, channels, width);
  TXS_CUDA_LAUNCHED("conv1d_silu_grad");
  if (dw || dbias) {  // before dx: dx may alias x
    conv1d_param_part_kernel<<<partial_grid(b, span), kThreads>>>(g, x, x_stride, rows, seq, channels, width, b,
                                                                  partial);
    TXS_CUDA_LAUNCHED("conv1d_param_grad_part");
    conv1d_param_finish_kernel<<<blocks_for(span), kThreads>>>(partial, b.blocks, channels, width, dw, dbias);
    TXS_CUDA_LAUNCHED("conv1d_param_grad_finish");
  }
  if (dx) {
    conv1d_dx_kernel<<<blocks_for(n), kThreads>>>(g, w, dx, x_stride, rows, seq, channels, width);
    TXS_CUDA_LAUNCHED("conv1d_silu_dx");
  }
}

void silu_mul_forward(const float* gate, int64_t gate_stride, const float* up, int64_t up_stride, float* out,
                      int64_t out_stride, int64_t rows, int64_t n) {
  if (rows * n == 0) return;
  silu_mul_forward_kernel<<<blocks_for(rows * n), kThreads>>>(gate, gate_stride, up, up_stride, out, out_stride, rows,
                                                              n);
  TXS_CUDA_LAUNCHED("silu_mul_forward");
}

void silu_mul_backward(const float* dout, int64_t out_stride, const float* gate, int64_t gate_stride, const float* up,
                       int64_t up_stride, float* dgate, float* dup, int64_t rows, int64_t n) {
  if (rows * n == 0) return;
  silu_mul_backward_kernel<<<blocks_for(rows * n), kThreads>>>(dout, out_stride, gate, gate_stride, up, up_stride,
                                                               dgate, dup, rows, n);
  TXS_CUDA_LAUNCHED("silu_mul_backward");
}

void residual_forward(const float* skip, const float* w, const float* branch, float* out, int64_t rows, int64_t dim) {
  if (rows * dim == 0) return;
  residual_forward_kernel<<<blocks_for(rows * dim), kThreads>>>(skip, w, branch, out, rows, dim);
  TXS_CUDA_LAUNCHED("residual_forward");
}

void residual_backward(const float* dout, const float* skip, const float* w, float* dskip, float* dw, int64_t rows,
                       int64_t dim) {
  if (rows * dim == 0) return;
  if (w && dw) {  // before dskip: dskip may alias dout
    const RowBlocks b = row_blocks(rows);
    void* base;
    double* partial = partial_scratch(b, dim, 0, &base);
    residual_dw_part_kernel<<<partial_grid(b, dim), kThreads>>>(dout, skip, rows, dim, b, partial);
    TXS_CUDA_LAUNCHED("residual_dw_part");
    residual_dw_finish_kernel<<<blocks_for(dim), kThreads>>>(partial, b.blocks, dim, dw);
    TXS_CUDA_LAUNCHED("residual_dw_finish");
  }
  if (dskip == dout && !w) return;  // dskip = dout already
  residual_dskip_kernel<<<blocks_for(rows * dim), kThreads>>>(dout, w, dskip, rows, dim);
  TXS_CUDA_LAUNCHED("residual_dskip");
}

void softplus_forward(const float* raw, int64_t raw_stride, const float* bias, float* dt, int64_t rows, int64_t heads) {
  if (rows * heads == 0) return;
  softplus_forward_kernel<<<blocks_for(rows * heads), kThreads>>>(raw, raw_stride, bias, dt, rows, heads);
  TXS_CUDA_LAUNCHED("softplus_forward");
}

void softplus_backward(const float* ddt, const float* raw, int64_t raw_stride, const float* bias, float* draw,
                       float* dbias, int64_t rows, int64_t heads) {
  if (rows * heads == 0) return;
  softplus_backward_kernel<<<blocks_for(rows * heads), kThreads>>>(ddt, raw, raw_stride, bias, draw, rows, heads);
  TXS_CUDA_LAUNCHED("softplus_backward");
  if (dbias) {  // from the draw just written, as on the CPU
    const RowBlocks b = row_blocks(rows);
    void* base;
    double* partial = partial_scratch(b, heads, 0, &base);
    softplus_dbias_part_kernel<<<partial_grid(b, heads), kThreads>>>(draw, raw_stride, rows, heads, b, partial);
    TXS_CUDA_LAUNCHED("softplus_dbias_part");
    softplus_dbias_finish_kernel<<<blocks_for(heads), kThreads>>>(partial, b.blocks, heads, dbias);
    TXS_CUDA_LAUNCHED("softplus_dbias_finish");
  }
}

void embedding_forward(const int32_t* ids, const void* table, bool table_bf16, float* out, int64_t rows, int64_t dim,
                       int64_t vocab) {
  if (rows * dim == 0) return;
  int32_t* flags = deferred_flags(CheckedOp::EmbeddingForward, vocab);
  if (table_bf16)
    embedding_forward_kernel<<<blocks_for(rows * dim), kThreads>>>(ids, static_cast<const uint16_t*>(table), out, rows,
                                                                   dim, vocab, flags);
  else
    embedding_forward_kernel<<<blocks_for(rows * dim), kThreads>>>(ids, static_cast<const float*>(table), out, rows,
                                                                   dim, vocab, flags);
  TXS_CUDA_LAUNCHED("embedding_forward");
}

void embedding_backward(const int32_t* ids, const float* dout, float* dtable, int64_t rows, int64_t dim,
                        int64_t vocab) {
  if (rows * dim == 0) return;
  int32_t* flags = deferred_flags(CheckedOp::EmbeddingBackward, vocab);
  embedding_backward_kernel<<<blocks_for(rows * dim), kThreads>>>(ids, dout, dtable, rows, dim, vocab, flags);
  TXS_CUDA_LAUNCHED("embedding_backward");
}

DeferredError take_deferred_error() {
  int32_t host[2 * kCheckedOps];
  TXS_CUDA_CHECK(cudaMemcpy(host, deferred_records(), sizeof host, cudaMemcpyDeviceToHost));
  for (int op = 1; op < kCheckedOps; ++op) {
    if (host[2 * op] == 0) continue;
    TXS_CUDA_CHECK(cudaMemset(deferred_records(), 0, sizeof host));
    return DeferredError{CheckedOp(op), host[2 * op + 1], g_deferred_limit[op]};
  }
  return {};
}

void adamw_update(float* w, const float* g, float* m, float* v, int64_t n, const AdamWParams& p, bool decay) {
  if (n == 0) return;
  adamw_kernel<<<blocks_for(n), kThreads>>>(w, g, m, v, n, adamw_coeffs(p, decay));
  TXS_CUDA_LAUNCHED("adamw_update");
}

void adamw_update_segments(float* w, const float* g, float* m, float* v, int64_t n, const AdamWSegment* segments,
                           int64_t nsegments, const AdamWParams& p) {
  if (n == 0 || nsegments == 0) return;
  // The runs change only when the parameter layout does: keep the last ones on the device and compare.
  static std::vector<AdamWRun> host_runs;
  static AdamWRun* device_runs = nullptr;
  static size_t device_capacity = 0;
  std::vector<AdamWRun> runs(static_cast<size_t>(nsegments));
  for (int64_t s = 0; s < nsegments; ++s)
    runs[size_t(s)] = {segments[s].offset, segments[s].offset + segments[s].length, segments[s].decay ? 1 : 0};
  const bool same = runs.size() == host_runs.size() &&
                    std::equal(runs.begin(), runs.end(), host_runs.begin(), [](const AdamWRun& a, const AdamWRun& b) {
                      return a.begin == b.begin && a.end == b.end && a.decay == b.decay;
                    });
  if (!same) {
    if (runs.size() > device_capacity) {
      if (device_runs) TXS_CUDA_CHECK(cudaFree(device_runs));
      TXS_CUDA_CHECK(cudaMalloc(&device_runs, runs.size() * sizeof(AdamWRun)));
      device_capacity = runs.size();
    }
    // Synchronous copy: the host vector may change before an asynchronous one would have read it.
    TXS_CUDA_CHECK(cudaMemcpy(device_runs, runs.data(), runs.size() * sizeof(AdamWRun), cudaMemcpyHostToDevice));
    host_runs = std::move(runs);
  }
  adamw_segments_kernel<<<blocks_for(n), kThreads>>>(w, g, m, v, n, adamw_coeffs(p, true), device_runs, nsegments);
  TXS_CUDA_LAUNCHED("adamw_update_segments");
}

double sum_squares(const float* x, int64_t n) {
  if (n == 0) return 0.0;
  // The grid depends only on n, so the summation order (and the bits of the result) repeat run to run.
  const int64_t blocks = std::min<int64_t>(kSumBlocks, (n + kThreads - 1) / kThreads);
  double* sums = static_cast<double*>(scratch(ScratchSlot::Reduce, size_t(blocks + 1) * sizeof(double)));
  sum_squares_part_kernel<<<unsigned(blocks), kThreads>>>(x, n, sums);
  TXS_CUDA_LAUNCHED("sum_squares_part");
  sum_block_sums_kernel<<<1, kThreads>>>(sums, blocks, sums + blocks);
  TXS_CUDA_LAUNCHED("sum_squares_total");
  double total = 0;
  TXS_CUDA_CHECK(cudaMemcpy(&total, sums + blocks, sizeof total, cudaMemcpyDeviceToHost));
  return total;
}

void scale(float* x, int64_t n, float s) {
  if (n == 0) return;
  scale_kernel<<<blocks_for(n), kThreads>>>(x, n, s);
  TXS_CUDA_LAUNCHED("scale");
}

bool all_finite(const float* x, int64_t n) {
  if (n == 0) return true;
  int32_t* flags = reset_flags();
  check_finite_kernel<<<blocks_for(n), kThreads>>>(x, n, flags);
  TXS_CUDA_LAUNCHED("all_finite");
  return flags_clear(flags, nullptr);
}

void fill(void* dst, int64_t stride, int64_t rows, int64_t cols, int element_bytes, uint64_t bits) {
  const int64_t n = rows * cols;
  if (n == 0) return;
  switch (element_bytes) {
    case 2:
      fill_kernel<<<blocks_for(n), kThreads>>>(static_cast<uint16_t*>(dst), stride, rows, cols, uint16_t(bits));
      break;
    case 4:
      fill_kernel<<<blocks_for(n), kThreads>>>(static_cast<uint32_t*>(dst), stride, rows, cols, uint32_t(bits));
      break;
    case 8: fill_kernel<<<blocks_for(n), kThreads>>>(static_cast<uint64_t*>(dst), stride, rows, cols, bits); break;
    default: fail("fill: element size {} (2, 4 or 8 bytes expected)", element_bytes);
  }
  TXS_CUDA_LAUNCHED("fill");
}

void convert_f32_to_bf16(const float* src, int64_t src_stride, uint16_t* dst, int64_t dst_stride, int64_t rows,
                         int64_t cols) {
  if (rows * cols == 0) return;
  f32_to_bf16_kernel<<<blocks_for(rows * cols), kThreads>>>(src, src_stride, dst, dst_stride, rows, cols);
  TXS_CUDA_LAUNCHED("convert_f32_to_bf16");
}

void convert_bf16_to_f32(const uint16_t* src, int64_t src_stride, float* dst, int64_t dst_stride, int64_t rows,
                         int64_t cols) {
  if (rows * cols == 0) return;
  bf16_to_f32_kernel<<<blocks_for(rows * cols), kThreads>>>(src, src_stride, dst, dst_stride, rows, cols);
  TXS_CUDA_LAUNCHED("convert_bf16_to_f32");
}

}  // namespace txs::cuda
