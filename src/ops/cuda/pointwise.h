// Launchers of the CUDA backend's pointwise and row kernels (pointwise.cu), with the semantics of the CPU
// kernels named in each group (ops/cpu/*.h): written vs accumulated outputs, strides and allowed aliasing are
// theirs. All pointers are device pointers (null where the CPU kernel allows null), all launches on the
// default stream; shapes are checked by the backend (cuda_backend.cpp) before a launcher is called. The
// per-thread work of every kernel is a body in bodies/*.h, which tests/test_cuda_bodies.cpp runs on the host.
#pragma once
#include <cstdint>

#include "ops/shapes.h"

namespace txs::cuda {

// ops/cpu/rmsnorm.h: x, y, dy, dx contiguous [rows, dim]; rstd [rows] (may be null in the forward pass);
// dgain accumulated (may be null).
void rmsnorm_forward(const float* x, const float* gain, float* y, float* rstd, int64_t rows, int64_t dim, double eps);
void rmsnorm_backward(const float* dy, const float* x, const float* gain, const float* rstd, float* dx, float* dgain,
                      int64_t rows, int64_t dim);

// Deferred input checks. rope_apply and the embedding ops never read outside their tables: a row whose position
// or id is out of range is left alone and recorded on the device, without waiting for the kernel (a wait per
// call would drain the GPU's queue on every layer of every step). take_deferred_error() reports the first
// record since the last call and clears them; the backend calls it wherever it waits anyway (synchronize,
// download, the ops that return host values), so a bad input fails before any result reaches the host.
enum class CheckedOp : int32_t { None = 0, Rope, EmbeddingForward, EmbeddingBackward };
struct DeferredError {
  CheckedOp op = CheckedOp::None;
  int32_t value = 0;  // the offending position or id
  int64_t limit = 0;  // the table size it was checked against
};
DeferredError take_deferred_error();  // waits for the device

// ops/cpu/rope.h: rotates `heads` vectors of c.dim at the start of each row of x (row stride `stride`) in
// place. Rows whose position lies outside [0, c.positions) are left untouched (a deferred error).
void rope_apply(float* x, int64_t rows, int64_t heads, int64_t stride, const int32_t* pos, const RopeCoeffs& c,
                bool inverse);

// ops/cpu/conv1d.h: x, dx with x_stride, y, dy with y_stride, w [C, W] contiguous; dx written (may be null),
// dw, dbias accumulated (may be null).
void conv1d_silu_forward(const float* x, int64_t x_stride, const float* w, const float* bias, float* y,
                         int64_t y_stride, int64_t batch, int64_t seq, int64_t channels, int64_t width);
void conv1d_silu_backward(const float* dy, int64_t y_stride, const float* x, int64_t x_stride, const float* w,
                          const float* bias, float* dx, float* dw, float* dbias, int64_t batch, int64_t seq,
                          int64_t channels, int64_t width);

// ops/cpu/elementwise.h.
void silu_mul_forward(const float* gate, int64_t gate_stride, const float* up, int64_t up_stride, float* out,
                      int64_t out_stride, int64_t rows, int64_t n);
void silu_mul_backward(const float* dout, int64_t out_stride, const float* gate, int64_t gate_stride, const float* up,
                       int64_t up_stride, float* dgate, float* dup, int64_t rows, int64_t n);
void residual_forward(const float* skip, const float* w, const float* branch, float* out, int64_t rows, int64_t dim);
void residual_backward(const float* dout, const float* skip, const float* w, float* dskip, float* dw, int64_t rows,
                       int64_t dim);
void softplus_forward(const float* raw, int64_t raw_stride, const float* bias, float* dt, int64_t rows, int64_t heads);
void softplus_backward(const float* ddt, const float* raw, int64_t raw_stride, const float* bias, float* draw,
                       float* dbias, int64_t rows, int64_t heads);
// table [vocab, dim] contiguous, fp32 or bf16 (table_bf16: raw bf16 bits). An id outside [0, vocab) is
// skipped (a deferred error).
void embedding_forward(const int32_t* ids, const void* table, bool table_bf16, float* out, int64_t rows, int64_t dim,
                       int64_t vocab);
// dtable += scatter of dout by ids, with atomicAdd: rows sharing an id add in an unspecified order, so the
// sum of a repeated id may differ from the CPU's in the last bits (and from run to run).
void embedding_backward(const int32_t* ids, const float* dout, float* dtable, int64_t rows, int64_t dim, int64_t vocab);

// ops/cpu/adamw.h (p.step ≥ 1). sum_squares and all_finite return to the host (they wait for the device).
void adamw_update(float* w, const float* g, float* m, float* v, int64_t n, const AdamWParams& p, bool decay);
// The multi-tensor form: n elements of flat w, g, m, v; segments (host array, ascending) as in
// Backend::adamw_update_segments. One launch; the segments are copied to the device only when they change.
void adamw_update_segments(float* w, const float* g, float* m, float* v, int64_t n, const AdamWSegment* segments,
                           int64_t nsegments, const AdamWParams& p);
double sum_squares(const float* x, int64_t n);
void scale(float* x, int64_t n, float s);
bool all_finite(const float* x, int64_t n);

// Every element of a [rows, cols] view (row stride in elements) set to a bit pattern of element_bytes
// (2, 4 or 8; bodies/convert.h fill_pattern), and the converting copies of ops/backend.h (bf16 as raw bits).
void fill(void* dst, int64_t stride, int64_t rows, int64_t cols, int element_bytes, uint64_t bits);
void convert_f32_to_bf16(const float* src, int64_t src_stride, uint16_t* dst, int64_t dst_stride, int64_t rows,
                         int64_t cols);
void convert_bf16_to_f32(const uint16_t* src, int64_t src_stride, float* dst, int64_t dst_stride, int64_t rows,
                         int64_t cols);

}  // namespace txs::cuda
