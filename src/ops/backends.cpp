// Backend selection by device: the one place that knows which backends this build has.
#include <fmt/format.h>

#include <thread>

#include "core/error.h"
#include "ops/backend.h"
#include "ops/op_checks.h"
#if TRANSXSSM_BACKEND_CUDA
#include "ops/cuda/cuda_backend.h"
#endif

namespace txs {

std::string cuda_unavailable_reason() {
#if TRANSXSSM_BACKEND_CUDA
  return cuda::unavailable_reason();
#else
  return "this build has no CUDA backend (configure with -DTRANSXSSM_BACKEND_CUDA=ON on a machine with the CUDA "
         "toolkit)";
#endif
}

Backend& backend_for(Device device) {
  if (device == Device::Cpu) return cpu_backend();
  if (const std::string why = cuda_unavailable_reason(); !why.empty()) fail("--device cuda: {}", why);
#if TRANSXSSM_BACKEND_CUDA
  return cuda::cuda_backend();
#else
  fail("--device cuda: unreachable");
#endif
}

std::string device_description(Device device) {
  if (device == Device::Cpu) return fmt::format("{} logical cores", std::thread::hardware_concurrency());
#if TRANSXSSM_BACKEND_CUDA
  return cuda::device_description();
#else
  return cuda_unavailable_reason();
#endif
}

void Backend::adamw_update_segments(const Tensor& w, const Tensor& g, const Tensor& m, const Tensor& v,
                                    const std::vector<AdamWSegment>& segments, const AdamWParams& p) {
  op_checks::adamw_update_segments(w, g, m, v, segments, p);
  for (const AdamWSegment& s : segments)
    adamw_update(w.col_slice(s.offset, s.length), g.col_slice(s.offset, s.length), m.col_slice(s.offset, s.length),
                 v.col_slice(s.offset, s.length), p, s.decay);
}

int select_cuda_device(int index) {
  if (const std::string why = cuda_unavailable_reason(); !why.empty()) fail("--device cuda: {}", why);
#if TRANSXSSM_BACKEND_CUDA
  return cuda::select_device(index);
#else
  (void)index;
  fail("--device cuda: unreachable");
#endif
}

Device parse_device(const std::string& name) {
  if (name == "cpu") return Device::Cpu;
  if (name == "cuda") return Device::Cuda;
  fail("unknown device '{}' (choose cpu or cuda)", name);
}

}  // namespace txs
