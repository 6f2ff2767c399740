// SafetensorsReader on arbitrary bytes: header length, JSON header, dtypes, shapes, offsets, then reading
// every tensor it accepted.
#include "core/error.h"
#include "fuzz_util.h"
#include "model/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = fuzz::write_scratch("input.safetensors", data, size);
  try {
    txs::SafetensorsReader r(path);
    for (auto& [name, t] : r.tensors()) {
      if (t.end - t.begin > (64u << 20)) continue;  // the reader accepted it; do not allocate huge buffers
      if (t.dtype == txs::FileDType::F32 || t.dtype == txs::FileDType::BF16 || t.dtype == txs::FileDType::F64)
        (void)r.read_f64(name);
      else
        (void)r.read_raw(name);
    }
  } catch (const txs::Error&) {
  }
  return 0;
}
