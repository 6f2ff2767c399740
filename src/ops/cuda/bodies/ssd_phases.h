// The SSD scan's phase sequence, shared by the CUDA launcher (ops/cuda/ssd.cu) and the host test
// (tests/test_cuda_ssd_bodies.cpp): the same shape checks, the same scratch layout, the same phases in the
// same order. `run(functor, name)` executes functor(idx) for every idx < functor.count() — on the device a
// kernel launch (consecutive launches on one stream are ordered, so each phase sees all writes of the ones
// before it), on the host a loop.
#pragma once
#include <algorithm>
#include <cstdint>

#include "core/error.h"
#include "ops/cuda/bodies/ssd_bodies.h"
#include "ops/shapes.h"

namespace txs::cuda::ssd {

// Validates the shape (ops/shapes.h) and derives the sizes.
inline Geo make_geo(const SsdShape& s, const char* fn) {
  check_shape(s, fn);
  Geo g{};
  g.batch = s.batch, g.seq = s.seq, g.H = s.heads, g.P = s.head_dim, g.G = s.groups, g.N = s.state_dim;
  g.Q = s.chunk, g.nc = (s.seq + s.chunk - 1) / s.chunk, g.hpg = s.heads / s.groups;
  g.Qe = std::min(s.chunk, s.seq);
  g.xs = s.x_stride, g.bs = s.bc_stride, g.ds = s.dt_stride, g.ys = s.y_stride;
  return g;
}

// Scratch sizes in elements: `small` holds every array of Work except the chunk matrices m1 (`m1` elements)
// and m2 (`m2`, backward only). Every array starts at a multiple of 64 elements.
struct WorkSize {
  int64_t small, m1, m2;
};
inline int64_t round64(int64_t n) { return (n + 63) / 64 * 64; }
// Carves `small` (null: only counts) into the arrays of Work; returns the elements used.
template <class T>
int64_t carve_small(const Geo& g, bool backward, T* small, Work<T>& w) {
  const int64_t tok = round64(g.batch * g.H * g.seq), chunks = round64(g.batch * g.H * g.nc);
  const int64_t st = round64(g.batch * g.H * g.nc * g.PN()), bt = round64(g.batch * g.G * g.N * g.seq);
  const int64_t xt = round64(g.batch * g.H * g.P * g.seq), vu = round64(g.batch * g.H * g.seq * g.N);
  int64_t used = 0;
  auto take = [&](int64_t n) {
    T* r = small ? small + used : nullptr;
    used += n;
    return r;
  };
  w.cum = take(tok), w.erow = take(tok), w.wrow = take(tok), w.alpha = take(chunks);
  w.states = take(st), w.states_t = take(st), w.Bt = take(bt);
  if (backward) {
    w.dstates = take(st), w.dstates_t = take(st), w.Xt = take(xt), w.V = take(vu), w.U = take(vu);
    w.dl = take(tok), w.ddt_direct = take(tok), w.dww = take(tok), w.dxy = take(tok);
    w.dA_part = take(chunks), w.dD_part = take(chunks);
  }
  return used;
}
inline WorkSize work_size(const Geo& g, bool backward) {
  Work<float> unused{};
  return {carve_small<float>(g, backward, nullptr, unused), g.batch * g.H * g.nc * g.QQ(),
          backward ? g.batch * g.G * g.nc * g.QQ() : 0};
}
template <class T>
Work<T> carve(const Geo& g, bool backward, T* small, T* m1, T* m2) {
  Work<T> w{};
  carve_small<T>(g, backward, small, w);
  w.m1 = m1, w.m2 = m2;
  return w;
}

template <class T, class Run>
void forward_phases(const Run& run, const Geo& g, const Work<T>& w, const T* x, const T* dt, const T* A,
                    const T* B, const T* C, const T* D, const T* init_state, T* y, T* final_state) {
  if (g.batch * g.seq > 0 && (!x || !dt || !A || !B || !C || !y))
    fail("ssd_forward: x, dt, A, B, C and y must be non-null");
  run(ChunkDecay<T>{g, dt, A, w.cum, w.erow, w.wrow, w.alpha}, "ssd_chunk_decay");
  run(Transpose<T>{g.batch, g.seq, g.G, g.N, g.bs, B, w.Bt}, "ssd_transpose_b");
  run(ChunkStates<T>{g, x, B, C, nullptr, w.erow, w.wrow, w.states, nullptr}, "ssd_chunk_states");
  run(StatePass<T>{g, w.alpha, init_state, w.states, w.states_t, final_state}, "ssd_state_pass");
  run(DecayedGram<T>{g, w.Bt, C, w.cum, w.m1}, "ssd_decayed_gram");
  run(Outputs<T>{g, x, dt, C, D, w.erow, w.states_t, w.m1, y}, "ssd_outputs");
}

template <class T, class Run>
void backward_phases(const Run& run, const Geo& g, const Work<T>& w, const T* x, const T* dt, const T* A,
                     const T* B, const T* C, const T* D, const T* init_state, const T* dy, const T* dfinal_state,
                     T* dx, T* ddt, T* dA, T* dB, T* dC, T* dD, T* dinit_state) {
  if (g.batch * g.seq > 0 && (!x || !dt || !A || !B || !C || !dy || !dx || !ddt || !dB || !dC))
    fail("ssd_backward: x, dt, A, B, C, dy, dx, ddt, dB and dC must be non-null");
  if (!dA) fail("ssd_backward: dA must be non-null");
  if (D && !dD) fail("ssd_backward: dD must be non-null when D is given");
  run(ChunkDecay<T>{g, dt, A, w.cum, w.erow, w.wrow, w.alpha}, "ssd_chunk_decay");
  run(Transpose<T>{g.batch, g.seq, g.G, g.N, g.bs, B, w.Bt}, "ssd_transpose_b");
  run(Transpose<T>{g.batch, g.seq, g.H, g.P, g.xs, x, w.Xt}, "ssd_transpose_x");
  run(ChunkStates<T>{g, x, B, C, dy, w.erow, w.wrow, w.states, w.dstates}, "ssd_chunk_states_and_grads");
  run(StatePass<T>{g, w.alpha, init_state, w.states, w.states_t, nullptr}, "ssd_state_pass");
  run(StatePassBackward<T>{g, w.alpha, dfinal_state, w.dstates, w.dstates_t, dinit_state}, "ssd_state_pass_backward");
  run(DecayedGram<T>{g, w.Bt, C, w.cum, w.m1}, "ssd_decayed_gram");
  run(InputGrad<T>{g, dt, B, D, dy, w.wrow, w.dstates_t, w.m1, dx}, "ssd_input_grad");  // reads GE: before F
  run(DecayedGramBackward<T>{g, w.Xt, dt, dy, w.cum, w.m1, w.m2}, "ssd_decayed_gram_backward");
  run(StateRowProducts<T>{g, x, dy, w.states, w.dstates, w.V, w.U}, "ssd_state_row_products");
  run(RowGrads<T>{g, x, dt, B, C, D, dy, w.cum, w.erow, w.wrow, w.V, w.U, w.m1, w.dl, w.ddt_direct, w.dww, w.dxy},
      "ssd_row_grads");
  run(ChunkParamGrads<T>{g, dt, A, D, w.alpha, w.states, w.dstates, w.dl, w.ddt_direct, w.dww, w.dxy, ddt,
                         w.dA_part, w.dD_part},
      "ssd_chunk_param_grads");
  run(HeadParamGrads<T>{g, D, w.dA_part, w.dD_part, dA, dD}, "ssd_head_param_grads");
  run(BCGrads<T>{g, B, C, w.erow, w.wrow, w.V, w.U, w.m2, dB, dC}, "ssd_bc_grads");
}

}  // namespace txs::cuda::ssd
