// The token-shard manifest (manifest.json of `transxssm prepare`): read_prepared_info and open_prepared on a
// folder holding only the fuzzed manifest (the shard files it names are absent or empty).
#include "core/error.h"
#include "data/token_source.h"
#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fuzz::write_scratch("manifest.json", data, size);
  try {
    (void)txs::read_prepared_info(fuzz::scratch_dir());
    for (const char* split : {"train", "val"}) {
      auto src = txs::open_prepared(fuzz::scratch_dir(), split, "");
      if (src->size() > 0) {
        int32_t id = 0;
        src->read(0, 1, &id);
      }
    }
  } catch (const txs::Error&) {
  }
  return 0;
}
