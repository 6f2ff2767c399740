// The CUDA backend's products (dense.h) through cuBLASLt, plus the LM head + cross-entropy loop around them.
// Row-major ↔ column-major: every product is first written as the CPU backend's row-major call
// (bodies/gemm_plan.h, plan_*), then turned into cuBLASLt's column-major call by to_column_major — the
// derivation is in that header and tests/test_cuda_dense_bodies.cpp checks it on the host. One process-wide
// cuBLASLt handle; matmul descriptors, layouts and the heuristic's algorithm are cached per shape, type and
// operand alignment (building them costs far more than a small product).
#include "ops/cuda/dense.h"

#include <cublasLt.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <compare>
#include <cstdint>
#include <map>
#include <mutex>

#include "core/error.h"
#include "ops/cuda/bodies/cross_entropy.h"
#include "ops/cuda/bodies/gemm_plan.h"
#include "ops/cuda/cuda_check.h"
#include "ops/cuda/dense_kernels.h"
#include "ops/cuda/device_scratch.h"

namespace txs::cuda {
namespace {

// cuBLASLt's workspace (the size NVIDIA recommends for Hopper), at the start of the Gemm scratch slot; the
// bf16 copies of fp32 operands follow it in the same slot.
constexpr size_t kWorkspaceBytes = size_t(32) << 20;
// The LM head's fp32 logits block: rows per block = this / (vocab · 4) (≈ 330 rows at a 50k vocabulary).
constexpr int64_t kLogitsBudgetBytes = int64_t(64) << 20;

void lt_check(cublasStatus_t status, const char* call, int line) {
  if (status != CUBLAS_STATUS_SUCCESS)
    fail("cuBLASLt error in {} (dense.cpp:{}): {}", call, line, cublasLtGetStatusString(status));
}
#define TXS_LT_CHECK(call) lt_check((call), #call, __LINE__)

cublasLtHandle_t lt_handle() {
  static const cublasLtHandle_t handle = [] {
    cublasLtHandle_t h = nullptr;
    TXS_LT_CHECK(cublasLtCreate(&h));
    return h;
  }();
  return handle;
}

size_t round_up(size_t bytes) { return (bytes + 255) / 256 * 256; }

// The largest power of two (≤ 256) dividing the address: what the heuristic may assume of the operand.
uint32_t alignment_of(const void* p) {
  const auto a = reinterpret_cast<uintptr_t>(p);
  uint32_t align = 256;
  while (align > 1 && a % align != 0) align >>= 1;
  return align;
}

struct PlanKey {
  int64_t m, n, k, ld_first, ld_second, ldc;
  bool trans_first, trans_second, bf16_inputs;
  uint32_t align_first, align_second, align_c;
  auto operator<=>(const PlanKey&) const = default;
};

struct Plan {
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t first = nullptr, second = nullptr, c = nullptr;
  cublasLtMatmulAlgo_t algo{};
};

void destroy(Plan& p) {
  cublasLtMatrixLayoutDestroy(p.c);
  cublasLtMatrixLayoutDestroy(p.second);
  cublasLtMatrixLayoutDestroy(p.first);
  cublasLtMatmulDescDestroy(p.desc);
}

Plan make_plan(const ColumnMajorGemm& cm, const PlanKey& key) {
  Plan p;
  // fp32 accumulation and fp32 alpha/beta in both modes; CUBLAS_COMPUTE_32F never uses TF32.
  TXS_LT_CHECK(cublasLtMatmulDescCreate(&p.desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  const cublasOperation_t op_first = cm.trans_first ? CUBLAS_OP_T : CUBLAS_OP_N;
  const cublasOperation_t op_second = cm.trans_second ? CUBLAS_OP_T : CUBLAS_OP_N;
  TXS_LT_CHECK(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_TRANSA, &op_first, sizeof(op_first)));
  TXS_LT_CHECK(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_TRANSB, &op_second, sizeof(op_second)));
  const cudaDataType_t in_type = key.bf16_inputs ? CUDA_R_16BF : CUDA_R_32F;
  TXS_LT_CHECK(cublasLtMatrixLayoutCreate(&p.first, in_type, uint64_t(cm.first_rows), uint64_t(cm.first_cols),
                                          cm.ld_first));
  TXS_LT_CHECK(cublasLtMatrixLayoutCreate(&p.second, in_type, uint64_t(cm.second_rows), uint64_t(cm.second_cols),
                                          cm.ld_second));
  TXS_LT_CHECK(cublasLtMatrixLayoutCreate(&p.c, CUDA_R_32F, uint64_t(cm.c_rows), uint64_t(cm.c_cols), cm.ldc));

  cublasLtMatmulPreference_t pref = nullptr;
  TXS_LT_CHECK(cublasLtMatmulPreferenceCreate(&pref));
  const uint64_t workspace = kWorkspaceBytes;
  TXS_LT_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &workspace,
                                                    sizeof(workspace)));
  // The operands' real alignments (column slices and row blocks are not 256-byte aligned): the heuristic
  // must not pick a kernel that needs more.
  TXS_LT_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES,
                                                    &key.align_first, sizeof(uint32_t)));
  TXS_LT_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
                                                    &key.align_second, sizeof(uint32_t)));
  TXS_LT_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &key.align_c,
                                                    sizeof(uint32_t)));
  TXS_LT_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &key.align_c,
                                                    sizeof(uint32_t)));
  cublasLtMatmulHeuristicResult_t result{};
  int found = 0;
  const cublasStatus_t st = cublasLtMatmulAlgoGetHeuristic(lt_handle(), p.desc, p.first, p.second, p.c, p.c, pref, 1,
                                                           &result, &found);
  cublasLtMatmulPreferenceDestroy(pref);
  if (st != CUBLAS_STATUS_SUCCESS || found == 0) {
    destroy(p);
    fail("cuBLASLt has no algorithm for the {} product m={} n={} k={} (ld {} {} {}, ops {}{}): {}",
         key.bf16_inputs ? "bf16" : "fp32", cm.m, cm.n, cm.k, cm.ld_first, cm.ld_second, cm.ldc,
         cm.trans_first ? 'T' : 'N', cm.trans_second ? 'T' : 'N',
         st != CUBLAS_STATUS_SUCCESS ? cublasLtGetStatusString(st) : "no heuristic result");
  }
  p.algo = result.algo;
  return p;
}

std::mutex g_plans_mutex;
std::map<PlanKey, Plan> g_plans;

// C[M,N] = op(A)·op(B) + beta·C, row-major as the CPU backend writes it (g); A and B are fp32, or both bf16
// bits when bf16_inputs; C fp32. beta is 0 (write; C is not read) or 1 (accumulate).
void matmul(const RowMajorGemm& g, bool bf16_inputs, const void* A, const void* B, float* C, float beta) {
  if (g.M < 0 || g.N < 0 || g.K < 0) fail("gemm: negative size M={} N={} K={}", g.M, g.N, g.K);
  if (g.M == 0 || g.N == 0) return;
  if (g.K == 0) {  // an empty sum: C = beta·C, exactly (as the CPU's gemm)
    if (beta == 0.0f)
      TXS_CUDA_CHECK(cudaMemset2D(C, size_t(g.ldc) * sizeof(float), 0, size_t(g.N) * sizeof(float), size_t(g.M)));
    return;
  }
  const ColumnMajorGemm cm = to_column_major(g);
  const void* first = B;  // see gemm_plan.h: cuBLASLt's first factor is the row-major B
  const void* second = A;
  const PlanKey key{cm.m,
                    cm.n,
                    cm.k,
                    cm.ld_first,
                    cm.ld_second,
                    cm.ldc,
                    cm.trans_first,
                    cm.trans_second,
                    bf16_inputs,
                    alignment_of(first),
                    alignment_of(second),
                    alignment_of(C)};
  void* workspace = scratch(ScratchSlot::Gemm, kWorkspaceBytes);
  const float alpha = 1.0f;
  std::lock_guard lock(g_plans_mutex);  // held through the (asynchronous) launch: the plan must not be freed
  auto it = g_plans.find(key);
  if (it == g_plans.end()) {
    if (g_plans.size() >= 512) {  // a model has a handful of shapes; bound the cache anyway
      for (auto& [k, p] : g_plans) destroy(p);
      g_plans.clear();
    }
    it = g_plans.emplace(key, make_plan(cm, key)).first;
  }
  const Plan& p = it->second;
  TXS_LT_CHECK(cublasLtMatmul(lt_handle(), p.desc, &alpha, first, p.first, second, p.second, &beta, C, p.c, C, p.c,
                              &p.algo, workspace, kWorkspaceBytes, /*legacy default stream*/ nullptr));
}

// Device room for `bytes` of bf16 operand copies, after cuBLASLt's workspace in the Gemm slot (so matmul's
// own scratch() call never reallocates it).
uint16_t* gemm_operand_scratch(size_t bytes) {
  return reinterpret_cast<uint16_t*>(static_cast<char*>(scratch(ScratchSlot::Gemm, kWorkspaceBytes + bytes)) +
                                     kWorkspaceBytes);
}

void check_linear(const char* op, int64_t rows, int64_t in, int64_t out) {
  if (rows < 0 || in < 0 || out < 0) fail("{}: negative size rows={} in={} out={}", op, rows, in, out);
}

}  // namespace

void linear_forward(const float* x, const void* W, bool w_bf16, float* y, int64_t rows, int64_t in, int64_t out) {
  check_linear("linear_forward", rows, in, out);
  const RowMajorGemm g = plan_linear_forward(rows, in, out);
  if (!w_bf16) return matmul(g, false, x, W, y, 0.0f);
  // bf16 mode: x rounded to bf16 (as cpu::gemm_bf16 does), then bf16 × bf16 with fp32 accumulation.
  uint16_t* x16 = gemm_operand_scratch(size_t(rows * in) * 2);
  launch_round_to_bf16(x, rows, in, in, x16);
  matmul(g, true, x16, W, y, 0.0f);
}

void linear_backward(const float* dy, const float* x, const void* W, bool w_bf16, float* dx, bool accumulate_dx,
                     float* dW, int64_t rows, int64_t in, int64_t out) {
  check_linear("linear_backward", rows, in, out);
  const float beta_dx = accumulate_dx ? 1.0f : 0.0f;
  if (!w_bf16) {
    if (dx) matmul(plan_linear_dx(rows, in, out), false, dy, W, dx, beta_dx);  // dx (+)= dy·W
    if (dW) matmul(plan_linear_dw(rows, in, out), false, dy, x, dW, 1.0f);     // dW += dyᵀ·x
    return;
  }
  // bf16 mode, as cpu::linear_backward_bf16: dy rounded once for both products, x rounded for dW's.
  if (rows == 0 || (!dx && !dW)) return;
  const size_t dy_bytes = round_up(size_t(rows * out) * 2);
  uint16_t* dy16 = gemm_operand_scratch(dy_bytes + (dW ? size_t(rows * in) * 2 : 0));
  uint16_t* x16 = reinterpret_cast<uint16_t*>(reinterpret_cast<char*>(dy16) + dy_bytes);
  launch_round_to_bf16(dy, rows, out, out, dy16);
  if (dx) matmul(plan_linear_dx(rows, in, out), true, dy16, W, dx, beta_dx);
  if (dW) {
    launch_round_to_bf16(x, rows, in, in, x16);
    matmul(plan_linear_dw(rows, in, out), true, dy16, x16, dW, 1.0f);
  }
}

CrossEntropyResult lm_head_cross_entropy(const float* h, const void* W, bool w_bf16, const int32_t* targets,
                                         float* target_logprob, float* dh, float* dW, float grad_scale,
                                         int64_t rows, int64_t dim, int64_t vocab) {
  if (rows < 0 || dim <= 0 || vocab <= 0) fail("cross_entropy: bad shape rows={} dim={} vocab={}", rows, dim, vocab);
  if (dh && !dW) fail("cross_entropy: the backward pass needs dW");
  if (rows == 0) return {};
  const bool backward = dh != nullptr;
  const int64_t block = lm_head_block_rows(rows, vocab, kLogitsBudgetBytes);

  // The LmHead slot, carved: block logits (then fp32 dlogits in place), the bf16 dlogits and bf16 h block
  // (bf16 mode), every row's log-probability (for the final ordered sum) and the totals.
  const size_t logits_bytes = round_up(size_t(block * vocab) * sizeof(float));
  const size_t dz16_bytes = (w_bf16 && backward) ? round_up(size_t(block * vocab) * 2) : 0;
  const size_t h16_bytes = w_bf16 ? round_up(size_t(block * dim) * 2) : 0;
  const size_t logprob_bytes = round_up(size_t(rows) * sizeof(double));
  char* base = static_cast<char*>(scratch(ScratchSlot::LmHead, logits_bytes + dz16_bytes + h16_bytes + logprob_bytes +
                                                                   round_up(sizeof(CeTotals))));
  float* logits = reinterpret_cast<float*>(base);
  uint16_t* dz16 = dz16_bytes ? reinterpret_cast<uint16_t*>(base + logits_bytes) : nullptr;
  uint16_t* h16 = reinterpret_cast<uint16_t*>(base + logits_bytes + dz16_bytes);
  double* row_logprob = reinterpret_cast<double*>(base + logits_bytes + dz16_bytes + h16_bytes);
  CeTotals* totals = reinterpret_cast<CeTotals*>(base + logits_bytes + dz16_bytes + h16_bytes + logprob_bytes);

  for (int64_t r0 = 0; r0 < rows; r0 += block) {
    const int64_t nb = std::min(block, rows - r0);
    const float* hb = h + r0 * dim;
    const void* h_operand = hb;
    if (w_bf16) {  // rounded once, read by the logits and the dW products (cpu::gemm_bf16 rounds it for both)
      launch_round_to_bf16(hb, nb, dim, dim, h16);
      h_operand = h16;
    }
    matmul(plan_lm_head_logits(nb, dim, vocab, vocab), w_bf16, h_operand, W, logits, 0.0f);  // h·Wᵀ
    launch_ce_rows(logits, nb, vocab, targets + r0, backward, grad_scale, dz16, row_logprob + r0,
                   target_logprob ? target_logprob + r0 : nullptr);
    if (backward) {
      const void* dz = w_bf16 ? static_cast<const void*>(dz16) : static_cast<const void*>(logits);
      matmul(plan_lm_head_dh(nb, dim, vocab), w_bf16, dz, W, dh + r0 * dim, 0.0f);  // dh = dz·W
      matmul(plan_lm_head_dw(nb, dim, vocab), w_bf16, dz, h_operand, dW, 1.0f);     // dW += dzᵀ·h
    }
  }

  launch_ce_totals(row_logprob, targets, rows, vocab, totals);
  CeTotals host;
  TXS_CUDA_CHECK(cudaMemcpy(&host, totals, sizeof(CeTotals), cudaMemcpyDeviceToHost));
  if (host.first_bad_row >= 0) {
    // The CPU checks before computing; here the outputs of this call are garbage, but the error is the same.
    int32_t bad = 0;
    TXS_CUDA_CHECK(cudaMemcpy(&bad, targets + host.first_bad_row, sizeof(int32_t), cudaMemcpyDeviceToHost));
    fail("cross_entropy: target {} at row {} outside [-1, {})", bad, host.first_bad_row, vocab);
  }
  CrossEntropyResult res;
  res.loss_sum = host.loss_sum;
  res.counted = host.counted;
  return res;
}

void lm_head_logits(const float* h, const void* W, bool w_bf16, float* logits, int64_t logits_stride, int64_t rows,
                    int64_t dim, int64_t vocab) {
  if (rows < 0 || dim <= 0 || vocab <= 0) fail("lm_head_logits: bad shape rows={} dim={} vocab={}", rows, dim, vocab);
  if (logits_stride < vocab) fail("lm_head_logits: row stride {} is below the vocabulary {}", logits_stride, vocab);
  const RowMajorGemm g = plan_lm_head_logits(rows, dim, vocab, logits_stride);
  if (!w_bf16) return matmul(g, false, h, W, logits, 0.0f);
  uint16_t* h16 = gemm_operand_scratch(size_t(rows * dim) * 2);
  launch_round_to_bf16(h, rows, dim, dim, h16);
  matmul(g, true, h16, W, logits, 0.0f);
}

}  // namespace txs::cuda
