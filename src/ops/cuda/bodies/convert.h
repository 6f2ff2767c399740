// Bodies of the converting copy (f32 ↔ bf16, element (r, c) of a strided view) and of fill (one element of a
// view set to a raw bit pattern of 2, 4 or 8 bytes: the pattern is computed on the host by fill_pattern,
// so that fp32, int32, fp64 and bf16 share one kernel per element size).
#pragma once
#include "ops/cuda/portable.h"

namespace txs::cuda {

TXS_HD void convert_f32_to_bf16_element(const float* src, int64_t src_stride, uint16_t* dst, int64_t dst_stride,
                                        int64_t r, int64_t c) {
  dst[r * dst_stride + c] = f32_to_bf16(src[r * src_stride + c]);
}

TXS_HD void convert_bf16_to_f32_element(const uint16_t* src, int64_t src_stride, float* dst, int64_t dst_stride,
                                        int64_t r, int64_t c) {
  dst[r * dst_stride + c] = bf16_to_f32(src[r * src_stride + c]);
}

template <class Bits>
TXS_HD void fill_element(Bits* dst, int64_t stride, int64_t r, int64_t c, Bits pattern) {
  dst[r * stride + c] = pattern;
}

// The element every fill writes, as the CPU backend converts the value: float(value) for fp32, the double
// itself for fp64, int32_t(value) for int32, float(value) rounded to nearest even for bf16. bytes: its size.
struct FillPattern {
  uint64_t bits = 0;
  int bytes = 0;
};
enum class FillKind { F32, BF16, F64, I32 };

inline FillPattern fill_pattern(FillKind kind, double value) {
  FillPattern p;
  switch (kind) {
    case FillKind::F32: {
      const float f = float(value);
      uint32_t u;
      std::memcpy(&u, &f, 4);
      p.bits = u, p.bytes = 4;
      break;
    }
    case FillKind::BF16: p.bits = f32_to_bf16(float(value)), p.bytes = 2; break;
    case FillKind::F64: {
      uint64_t u;
      std::memcpy(&u, &value, 8);
      p.bits = u, p.bytes = 8;
      break;
    }
    case FillKind::I32: {
      const int32_t i = int32_t(value);
      uint32_t u;
      std::memcpy(&u, &i, 4);
      p.bits = u, p.bytes = 4;
      break;
    }
  }
  return p;
}

}  // namespace txs::cuda
