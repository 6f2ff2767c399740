#include "model/ssm_state.h"

#include "core/error.h"

namespace txs {

void conv_cached(Backend& be, const CachedPass& pass, const Tensor& x, const Tensor& w, const Tensor& bias,
                 const Tensor& y, int64_t kernel, DeviceBuffer& window, DeviceBuffer& conv_out) {
  // Before the start the tail is zeros, as the kernel's padding is, so the outputs at the new rows are
  // exactly those of the full sequence.
  const int64_t B = pass.batch, n = pass.seq, tail = kernel - 1, win = tail + n, C = x.cols;
  window.resize(B * win * C);
  conv_out.resize(B * win * C);
  const Tensor wv = window.mat(B * win, C), cv = conv_out.mat(B * win, C);
  for (int64_t b = 0; b < B; ++b) {
    const Tensor t = pass.states[b]->conv.mat(tail, C);
    be.copy(t, wv.row_slice(b * win, tail));
    be.copy(x.row_slice(b * n, n), wv.row_slice(b * win + tail, n));
  }
  be.conv1d_silu_forward(wv, w, bias, cv, B, win);
  for (int64_t b = 0; b < B; ++b) {
    be.copy(cv.row_slice(b * win + tail, n), y.row_slice(b * n, n));
    be.copy(wv.row_slice(b * win + n, tail), pass.states[b]->conv.mat(tail, C));
  }
}

void scan_cached(Backend& be, const CachedPass& pass, const SsdShape& shape, const Tensor& x, const Tensor& dt,
                 const Tensor& A, const Tensor& B, const Tensor& C, const Tensor& D, const Tensor& y,
                 DeviceBuffer& final_state) {
  const int64_t H = shape.heads, P = shape.head_dim, G = shape.groups, N = shape.state_dim;
  if (pass.decode) {
    // O(1) per token: S = exp(Δ·A)·S + Δ·x⊗B, y = S·C (+ D·x), one sequence per row.
    for (int64_t b = 0; b < pass.batch; ++b)
      be.ssd_step(H, P, G, N, x.row_slice(b, 1), dt.row_slice(b, 1), A, B.row_slice(b, 1), C.row_slice(b, 1), D,
                  pass.states[b]->ssm.mat(1, H * P * N), y.row_slice(b, 1));
    return;
  }
  if (pass.batch != 1) fail("internal: a multi-token stateful pass runs one sequence at a time");
  final_state.resize(H * P * N);
  const Tensor state = pass.states[0]->ssm.mat(1, H * P * N);
  be.ssd_forward(shape, x, dt, A, B, C, D, state, y, final_state.mat(1, H * P * N));
  be.copy(final_state.mat(1, H * P * N), state);
}

}  // namespace txs
