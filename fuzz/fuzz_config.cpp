// config.json: bounded JSON parse, then field resolution and validation (resolve_config).
#include <string_view>

#include "core/error.h"
#include "core/json.h"
#include "model/config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  try {
    const nlohmann::json j = txs::parse_json_bounded(text, "config.json");
    const txs::ModelConfig c = txs::resolve_config("", "", j);
    (void)c.to_json().dump();
  } catch (const txs::Error&) {
  }
  return 0;
}
