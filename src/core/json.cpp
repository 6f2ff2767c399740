#include "core/json.h"

#include "core/error.h"

namespace txs {

int json_depth(std::string_view text, int limit) {
  int depth = 0, deepest = 0;
  bool in_string = false, escaped = false;
  for (char c : text) {
    if (in_string) {
      if (escaped) escaped = false;
      else if (c == '\\') escaped = true;
      else if (c == '"') in_string = false;
      continue;
    }
    if (c == '"') in_string = true;
    else if (c == '[' || c == '{') {
      if (++depth > deepest && (deepest = depth) > limit) return deepest;
    } else if ((c == ']' || c == '}') && depth > 0) {
      --depth;
    }
  }
  return deepest;
}

std::string text_excerpt(std::string_view text, size_t max_chars) {
  std::string out;
  for (size_t i = 0; i < text.size(); ++i) {
    const unsigned char c = text[i];
    std::string piece(1, char(c));
    if (c < 0x20 || c == 0x7f) {
      static const char* hex = "0123456789abcdef";
      piece = c == '\n' ? "\\n" : c == '\r' ? "\\r" : c == '\t' ? "\\t" : std::string("\\x") + hex[c >> 4] + hex[c & 15];
    }
    if (out.size() + piece.size() > max_chars) {
      // Cut before the piece, and not inside a UTF-8 sequence: drop a trailing incomplete character.
      size_t keep = out.size();
      while (keep > 0 && (static_cast<unsigned char>(out[keep - 1]) & 0xC0) == 0x80) --keep;
      if (keep > 0 && static_cast<unsigned char>(out[keep - 1]) >= 0xC0) {
        const unsigned char lead = out[keep - 1];
        const size_t len = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : 2;
        if (out.size() - (keep - 1) < len) out.resize(keep - 1);
      }
      out += "...";
      break;
    }
    out += piece;
  }
  return out;
}

namespace {
// Appends compact JSON to out until it holds max_chars characters (then stops); depth-limited.
void dump_limited(const nlohmann::json& v, std::string& out, size_t max_chars, int depth) {
  if (out.size() > max_chars) return;
  if (depth > kMaxJsonDepth) {
    out += "...";
    return;
  }
  if (v.is_array() || v.is_object()) {
    const bool obj = v.is_object();
    out += obj ? '{' : '[';
    bool first = true;
    for (auto it = v.begin(); it != v.end(); ++it) {
      if (out.size() > max_chars) return;
      if (!first) out += ',';
      first = false;
      if (obj) out += nlohmann::json(it.key()).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + ":";
      dump_limited(*it, out, max_chars, depth + 1);
    }
    out += obj ? '}' : ']';
    return;
  }
  if (v.is_string() && v.get_ref<const std::string&>().size() > max_chars) {
    // Cut long strings before escaping them (a huge string value must not be copied whole).
    nlohmann::json cut = v.get_ref<const std::string&>().substr(0, max_chars + 1);
    out += cut.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    return;
  }
  out += v.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}
}  // namespace

std::string json_excerpt(const nlohmann::json& value, size_t max_chars) {
  std::string out;
  dump_limited(value, out, max_chars, 0);
  return text_excerpt(out, max_chars);
}

int64_t json_int(const nlohmann::json& value, int64_t lo, int64_t hi, std::string_view what) {
  if (value.is_number_unsigned()) {
    const uint64_t u = value.get<uint64_t>();
    if (hi < 0 || u > uint64_t(hi)) fail("{} = {} is out of range [{}, {}]", what, u, lo, hi);
    return int64_t(u);
  }
  if (value.is_number_integer()) {
    const int64_t v = value.get<int64_t>();
    if (v < lo || v > hi) fail("{} = {} is out of range [{}, {}]", what, v, lo, hi);
    return v;
  }
  fail("{} must be an integer, got {}", what, json_excerpt(value));
}

nlohmann::json try_parse_json_bounded(std::string_view text, int max_depth) {
  if (json_depth(text, max_depth) > max_depth) return nlohmann::json(nlohmann::json::value_t::discarded);
  return nlohmann::json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
}

nlohmann::json parse_json_bounded(std::string_view text, std::string_view what, int max_depth) {
  if (json_depth(text, max_depth) > max_depth)
    fail("{}: JSON nested deeper than {} levels", what, max_depth);
  try {
    return nlohmann::json::parse(text.begin(), text.end());
  } catch (const nlohmann::json::exception& e) {
    // The parser's message quotes the last token read, which may be long: keep it to one short line.
    fail("{}: invalid JSON ({})", what, text_excerpt(e.what(), 160));
  }
}

}  // namespace txs
