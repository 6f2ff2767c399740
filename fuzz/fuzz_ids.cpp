// Token-id JSON (`score --ids`, `generate --ids`, `grads --ids`): the bounded parser, the id checks of the
// CLI (same rules as src/cli: integers in [0, INT32_MAX]), and error excerpts of whatever was parsed.
#include <cstdint>
#include <string_view>

#include "core/error.h"
#include "core/json.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  try {
    const nlohmann::json j = txs::parse_json_bounded(text, "ids.json");
    if (txs::json_excerpt(j).size() > txs::kMaxEchoChars + 3) __builtin_trap();
    if (!j.is_array()) txs::fail("expected an array, got {}", txs::json_excerpt(j));
    auto take = [](const nlohmann::json& row) {
      for (auto& v : row) {
        if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() > INT32_MAX)
          txs::fail("token ids must be non-negative integers, got {}", txs::json_excerpt(v));
      }
    };
    if (!j.empty() && j[0].is_array())
      for (auto& row : j) take(row);
    else
      take(j);
  } catch (const txs::Error&) {
  }
  if (txs::text_excerpt(text).size() > txs::kMaxEchoChars + 3) __builtin_trap();
  return 0;
}
