// Bounded JSON parsing for every external input (files, command-line --ids, manifests, tokenizers).
// nlohmann::json parses, copies and dumps nested values recursively: 100,000 '[' overflow the stack. The
// helpers here check the nesting depth before parsing and never echo unbounded input into a message.
#pragma once
#include <cstddef>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

namespace txs {

// Deepest nesting of arrays/objects accepted in external JSON. Every format read here (configs,
// safetensors headers, tokenizer.json, manifests, id lists) needs at most a handful of levels.
inline constexpr int kMaxJsonDepth = 64;
// Longest excerpt of an input value quoted in an error message.
inline constexpr size_t kMaxEchoChars = 60;

// Nesting depth of JSON text (brackets inside strings ignored), scanning stops once it exceeds `limit`.
int json_depth(std::string_view text, int limit = kMaxJsonDepth);

// Parses JSON text whose nesting is at most max_depth. Throws txs::Error "<what>: ..." (one line, the
// parser's message truncated) when the text is not valid JSON or nests deeper.
nlohmann::json parse_json_bounded(std::string_view text, std::string_view what, int max_depth = kMaxJsonDepth);

// Same, but returns a discarded value (is_discarded()) instead of throwing; for callers with their own message.
nlohmann::json try_parse_json_bounded(std::string_view text, int max_depth = kMaxJsonDepth);

// A JSON integer (not a float, not a string) in [lo, hi]; otherwise throws txs::Error "<what> must be an
// integer..." or "<what> = N is out of range [lo, hi]". (get<int64_t>() of 1e300 is undefined behaviour.)
int64_t json_int(const nlohmann::json& value, int64_t lo, int64_t hi, std::string_view what);

// A value for an error message: compact JSON, at most max_chars characters ("..." marks a cut); values
// nested deeper than kMaxJsonDepth are not recursed into.
std::string json_excerpt(const nlohmann::json& value, size_t max_chars = kMaxEchoChars);
// Raw text for an error message: one line (control characters escaped), at most max_chars characters.
std::string text_excerpt(std::string_view text, size_t max_chars = kMaxEchoChars);

}  // namespace txs
