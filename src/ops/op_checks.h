// What every backend requires of each op's operands, checked before a kernel sees them: the views' shapes,
// strides and sizes against each other and against the op's parameters. Each backend calls the function of
// the op first, then checks device and dtype as it takes the pointers (ops/operand_checks.h: operand_ptr),
// so a wrong view is the same one-line error on every backend instead of an out-of-bounds access. Only what
// one backend alone cannot run (the GPU's largest head_dim) stays in that backend.
#pragma once
#include <cstdint>
#include <vector>

#include "ops/backend.h"
#include "ops/operand_checks.h"

namespace txs::op_checks {

inline void linear_forward(const Tensor& x, const Tensor& W, const Tensor& y) {
  const char* op = "linear_forward";
  need(x.contiguous() && y.contiguous() && W.contiguous(), op, "operands must be contiguous");
  need_shape(y, x.rows, W.rows, op, "y");
  need(x.cols == W.cols, op, "x columns differ from W's");
}
inline void linear_backward(const Tensor& dy, const Tensor& x, const Tensor& W, const Tensor& dx, const Tensor& dW) {
  const char* op = "linear_backward";
  need(dy.contiguous() && x.contiguous() && W.contiguous() && dx.contiguous() && dW.contiguous(), op,
       "operands must be contiguous");
  need_shape(dy, x.rows, W.rows, op, "dy");
  need_shape(dx, x.rows, x.cols, op, "dx");
  need_shape(dW, W.rows, W.cols, op, "dW");
}

inline void rmsnorm_forward(const Tensor& x, const Tensor& gain, const Tensor& y, const Tensor& rstd, double eps) {
  const char* op = "rmsnorm_forward";
  need(x.contiguous() && y.contiguous(), op, "operands must be contiguous");
  need_shape(y, x.rows, x.cols, op, "y");
  need(gain && y, op, "gain and y are required");
  need_shape(gain, 1, x.cols, op, "gain");
  need(!rstd || (rstd.contiguous() && rstd.numel() >= x.rows), op, "rstd too small (or not contiguous)");
  need(x.cols > 0, op, "rows must have at least one element");
  need(eps >= 0, op, "eps must be >= 0");
}
inline void rmsnorm_backward(const Tensor& dy, const Tensor& x, const Tensor& gain, const Tensor& rstd,
                             const Tensor& dx, const Tensor& dgain) {
  const char* op = "rmsnorm_backward";
  need(dy.contiguous() && x.contiguous() && dx.contiguous(), op, "operands must be contiguous");
  need_shape(dy, x.rows, x.cols, op, "dy");
  need_shape(dx, x.rows, x.cols, op, "dx");
  need_shape(dgain, 1, x.cols, op, "dgain");
  need(gain && dy && dx, op, "gain, dy and dx are required");
  need_shape(gain, 1, x.cols, op, "gain");
  need(rstd && rstd.contiguous() && rstd.numel() >= x.rows, op,
       "rstd from the forward pass is required (one per row)");
  need(x.cols > 0, op, "rows must have at least one element");
}
inline void rope_apply(const Tensor& x, int64_t heads, const Tensor& pos, const RopeCoeffs& c) {
  const char* op = "rope_apply";
  need(c.dim > 0 && c.dim % 2 == 0, op, "rotated dimension must be positive and even");
  need(heads >= 0, op, "negative head count");
  need(x.cols >= heads * c.dim, op, "fewer columns than heads·dim");
  need(pos.numel() == x.rows && pos.contiguous(), op, "one position per row needed");
  need(c.positions == 0 || (c.cos && c.sin), op, "table without cos/sin");
}

// The shape with the operands' strides filled in (operand_shape); the kernels check the shape itself on
// entry (ops/shapes.h: check_shape), as they are also called with raw pointers.
inline AttentionShape attention_forward(const AttentionShape& s0, const Tensor& q, const Tensor& k, const Tensor& v,
                                        const Tensor& out, const Tensor& lse) {
  const char* op = "attention_forward";
  const AttentionShape s = operand_shape(s0, q, k, v, out, op);
  need(lse.contiguous() && lse.numel() >= s.batch * s.heads * s.q_len, op, "lse too small (or not contiguous)");
  return s;
}
inline AttentionShape attention_backward(const AttentionShape& s0, const Tensor& q, const Tensor& k, const Tensor& v,
                                         const Tensor& out, const Tensor& lse, const Tensor& dout, const Tensor& dq,
                                         const Tensor& dk, const Tensor& dv) {
  const char* op = "attention_backward";
  const AttentionShape s = operand_shape(s0, q, k, v, out, op);
  need(dout.stride == out.stride && dq.stride == q.stride && dk.stride == k.stride && dv.stride == v.stride, op,
       "gradients must have the strides of their inputs");
  need_shape(dout, out.rows, out.cols, op, "dout");
  need_shape(dq, q.rows, q.cols, op, "dq");
  need_shape(dk, k.rows, k.cols, op, "dk");
  need_shape(dv, v.rows, v.cols, op, "dv");
  need(lse.contiguous() && lse.numel() >= s.batch * s.heads * s.q_len, op, "lse too small (or not contiguous)");
  return s;
}
inline void attention_decode(int64_t heads, int64_t kv_heads, int64_t head_dim, const Tensor& q, const Tensor& k,
                             const Tensor& v, const Tensor& out) {
  const char* op = "attention_decode";
  need(q.cols >= heads * head_dim && out.cols >= heads * head_dim, op, "q/out narrower than heads·dim");
  need(k.rows == v.rows && k.stride == v.stride && k.cols >= kv_heads * head_dim, op, "k and v views differ");
  need(v.cols >= kv_heads * head_dim, op, "v narrower than kv_heads·dim");
}

inline void ssd_decay_forward(const Tensor& A_log, const Tensor& A) {
  const char* op = "ssd_decay_forward";
  need_shape(A, A_log.rows, A_log.cols, op, "A");
  need(A_log.contiguous() && A.contiguous(), op, "operands must be contiguous");
}
inline void ssd_decay_backward(const Tensor& dA, const Tensor& A, const Tensor& dA_log) {
  const char* op = "ssd_decay_backward";
  need_shape(dA, A.rows, A.cols, op, "dA");
  need_shape(dA_log, A.rows, A.cols, op, "dA_log");
  need(dA.contiguous() && A.contiguous() && dA_log.contiguous(), op, "operands must be contiguous");
}
inline SsdShape ssd_forward(const SsdShape& s0, const Tensor& x, const Tensor& dt, const Tensor& A, const Tensor& B,
                            const Tensor& C, const Tensor& D, const Tensor& init_state, const Tensor& y,
                            const Tensor& final_state) {
  const char* op = "ssd_forward";
  const SsdShape s = operand_shape(s0, x, dt, A, B, C, D, y, op);
  need_state(s, init_state, op), need_state(s, final_state, op);
  return s;
}
inline SsdShape ssd_backward(const SsdShape& s0, const Tensor& x, const Tensor& dt, const Tensor& A, const Tensor& B,
                             const Tensor& C, const Tensor& D, const Tensor& init_state, const Tensor& dy,
                             const Tensor& dfinal_state, const Tensor& dx, const Tensor& ddt, const Tensor& dA,
                             const Tensor& dB, const Tensor& dC, const Tensor& dD, const Tensor& dinit_state) {
  const char* op = "ssd_backward";
  const SsdShape s = operand_shape(s0, x, dt, A, B, C, D, dy, op);
  need(dx.stride == x.stride && ddt.stride == dt.stride && dB.stride == B.stride && dC.stride == C.stride, op,
       "gradients must have the strides of their inputs");
  need_shape(dx, x.rows, x.cols, op, "dx");
  need_shape(ddt, dt.rows, dt.cols, op, "ddt");
  need_shape(dB, B.rows, B.cols, op, "dB");
  need_shape(dC, C.rows, C.cols, op, "dC");
  need(!dA || dA.numel() == s.heads, op, "dA needs one value per head");
  need(!dD || dD.numel() == s.heads, op, "dD needs one value per head");
  need_state(s, init_state, op), need_state(s, dfinal_state, op), need_state(s, dinit_state, op);
  return s;
}
inline void ssd_step(int64_t H, int64_t P, int64_t G, int64_t N, const Tensor& x, const Tensor& dt, const Tensor& A,
                     const Tensor& B, const Tensor& C, const Tensor& D, const Tensor& state, const Tensor& y) {
  const char* op = "ssd_step";
  need(H > 0 && P > 0 && G > 0 && N > 0 && H % G == 0, op, "heads, head_dim, groups and state_dim must be "
       "positive, and groups must divide heads");
  need(x.cols >= H * P && y.cols >= H * P && dt.cols >= H && B.cols >= G * N && C.cols >= G * N, op,
       "operand narrower than its heads");
  need(x.rows == 1 && y.rows == 1 && dt.rows == 1 && B.rows == 1 && C.rows == 1, op, "one row per operand");
  need(A.numel() == H && (!D || D.numel() == H), op, "A and D need one value per head");
  need(state.numel() == H * P * N && state.contiguous(), op, "state is not H·P·N");
}

inline void conv1d_silu_forward(const Tensor& x, const Tensor& w, const Tensor& bias, const Tensor& y, int64_t batch,
                                int64_t seq) {
  const char* op = "conv1d_silu_forward";
  need(batch >= 0 && seq >= 0 && x.cols > 0 && w.cols > 0, op, "bad shape");
  need(x.rows == batch * seq && y.rows == x.rows && y.cols == x.cols, op, "x and y must be [batch·seq, C]");
  need(w.rows == x.cols && w.contiguous(), op, "w must be [C, K]");
  need(!bias || bias.numel() == x.cols, op, "bias must be [1, C]");
}
inline void conv1d_silu_backward(const Tensor& dy, const Tensor& x, const Tensor& w, const Tensor& bias,
                                 const Tensor& dx, const Tensor& dw, const Tensor& dbias, int64_t batch, int64_t seq) {
  const char* op = "conv1d_silu_backward";
  need(batch >= 0 && seq >= 0 && x.cols > 0 && w.cols > 0, op, "bad shape");
  need(x.rows == batch * seq && dy.rows == x.rows && dx.rows == x.rows, op, "operands must be [batch·seq, C]");
  need(dy.cols == x.cols && dx.cols == x.cols, op, "dy and dx must have x's columns");
  need(dx.stride == x.stride, op, "dx must have x's stride");  // the kernels write dx with x's stride
  need(w.rows == x.cols && w.contiguous(), op, "w must be [C, K]");
  need(!bias || bias.numel() == x.cols, op, "bias must be [1, C]");
  need_shape(dw, w.rows, w.cols, op, "dw");
  need(dw.contiguous() && (!dbias || dbias.numel() == x.cols), op, "dw must be contiguous [C, K], dbias [1, C]");
}
inline void silu_mul_forward(const Tensor& gate, const Tensor& up, const Tensor& out) {
  const char* op = "silu_mul_forward";
  need_shape(up, gate.rows, gate.cols, op, "up");
  need_shape(out, gate.rows, gate.cols, op, "out");
}
inline void silu_mul_backward(const Tensor& dout, const Tensor& gate, const Tensor& up, const Tensor& dgate,
                              const Tensor& dup) {
  const char* op = "silu_mul_backward";
  need(dgate.stride == gate.stride && dup.stride == up.stride, op, "gradients must have their inputs' strides");
  need_shape(up, gate.rows, gate.cols, op, "up");
  need_shape(dout, gate.rows, gate.cols, op, "dout");
  need_shape(dgate, gate.rows, gate.cols, op, "dgate");
  need_shape(dup, gate.rows, gate.cols, op, "dup");
}
inline void residual_forward(const Tensor& skip, const Tensor& w, const Tensor& branch, const Tensor& out) {
  const char* op = "residual_forward";
  need(skip.contiguous() && branch.contiguous() && out.contiguous(), op, "operands must be contiguous");
  need_shape(branch, skip.rows, skip.cols, op, "branch");
  need_shape(out, skip.rows, skip.cols, op, "out");
  need(!w || w.numel() == skip.cols, op, "w must be [1, dim]");
}
inline void residual_backward(const Tensor& dout, const Tensor& skip, const Tensor& w, const Tensor& dskip,
                              const Tensor& dw) {
  const char* op = "residual_backward";
  need(dout.contiguous() && skip.contiguous() && dskip.contiguous(), op, "operands must be contiguous");
  need_shape(dskip, dout.rows, dout.cols, op, "dskip");
  need_shape(skip, dout.rows, dout.cols, op, "skip");
  need(!w || w.numel() == dout.cols, op, "w must be [1, dim]");
  need(!dw || dw.numel() == dout.cols, op, "dw must be [1, dim]");
}
inline void softplus_forward(const Tensor& raw, const Tensor& bias, const Tensor& dt) {
  const char* op = "softplus_forward";
  need(dt.contiguous() && dt.rows == raw.rows && dt.cols == raw.cols, op, "dt must be contiguous [rows, H]");
  need(!bias || bias.numel() == raw.cols, op, "bias must be [1, H]");
}
inline void softplus_backward(const Tensor& ddt, const Tensor& raw, const Tensor& bias, const Tensor& draw,
                              const Tensor& dbias) {
  const char* op = "softplus_backward";
  need(ddt.contiguous() && draw.stride == raw.stride, op, "ddt contiguous, draw with raw's stride");
  need_shape(ddt, raw.rows, raw.cols, op, "ddt");
  need_shape(draw, raw.rows, raw.cols, op, "draw");
  need(!bias || bias.numel() == raw.cols, op, "bias must be [1, H]");
  need(!dbias || dbias.numel() == raw.cols, op, "dbias must be [1, H]");
}
inline void embedding_forward(const Tensor& ids, const Tensor& table, const Tensor& out) {
  const char* op = "embedding_forward";
  need(out.contiguous() && out.rows == ids.numel() && out.cols == table.cols, op, "out must be [ids, dim]");
  need(ids.contiguous() && table.contiguous(), op, "ids and table must be contiguous");
}
inline void embedding_backward(const Tensor& ids, const Tensor& dout, const Tensor& dtable) {
  const char* op = "embedding_backward";
  need(dout.contiguous() && dout.rows == ids.numel() && dout.cols == dtable.cols, op, "dout must be [ids, dim]");
  need(ids.contiguous() && dtable.contiguous(), op, "ids and dtable must be contiguous");
}

inline void lm_head_cross_entropy(const Tensor& h, const Tensor& W, const Tensor& targets,
                                  const Tensor& target_logprob, const Tensor& dh, const Tensor& dW) {
  const char* op = "lm_head_cross_entropy";
  need(h.contiguous() && W.contiguous() && h.cols == W.cols, op, "h [rows, dim] and W [vocab, dim] contiguous");
  need(targets.numel() == h.rows && targets.contiguous(), op, "one target per row needed");
  need(!target_logprob || (target_logprob.numel() >= h.rows && target_logprob.contiguous()), op,
       "target_logprob too small (or not contiguous)");
  need_shape(dh, h.rows, h.cols, op, "dh");
  need_shape(dW, W.rows, W.cols, op, "dW");
  need(dh.contiguous() && dW.contiguous(), op, "dh and dW must be contiguous");
}
inline void lm_head_logits(const Tensor& h, const Tensor& W, const Tensor& logits) {
  const char* op = "lm_head_logits";
  need(h.contiguous() && W.contiguous() && logits.contiguous() && h.cols == W.cols, op, "bad shapes");
  need_shape(logits, h.rows, W.rows, op, "logits");
}

inline void adamw_update(const Tensor& w, const Tensor& g, const Tensor& m, const Tensor& v, const AdamWParams& p,
                         const char* op = "adamw_update") {
  need(w.contiguous() && g.contiguous() && m.contiguous() && v.contiguous(), op, "operands must be contiguous");
  need(g.numel() == w.numel() && m.numel() == w.numel() && v.numel() == w.numel(), op, "sizes differ");
  need(p.step >= 1, op, "step must be >= 1 (1-based)");
}
inline void adamw_update_segments(const Tensor& w, const Tensor& g, const Tensor& m, const Tensor& v,
                                  const std::vector<AdamWSegment>& segments, const AdamWParams& p) {
  const char* op = "adamw_update_segments";
  adamw_update(w, g, m, v, p, op);
  int64_t end = 0;
  for (const AdamWSegment& s : segments) {
    need(s.offset >= end && s.length >= 0, op, "segments must be ascending and must not overlap");
    end = s.offset + s.length;
  }
  need(end <= w.numel(), op, "a segment runs past the views");
}

// sum_squares, scale, all_finite: one flat operand.
inline void flat(const Tensor& x, const char* op) { need(x.contiguous(), op, "operand must be contiguous"); }

}  // namespace txs::op_checks
