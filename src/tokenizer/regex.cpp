#include "tokenizer/regex.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "core/error.h"

namespace txs {

// Unicode White_Space, as the body of a character class.
static constexpr const char* kWhiteSpace =
    "\\t-\\r\\x{20}\\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}\\x{205F}\\x{3000}";

const std::string& gpt2_split_pattern() {
  static const std::string pattern =
      spell_out_whitespace(R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)");
  return pattern;
}

std::string spell_out_whitespace(const std::string& p) {
  std::string out;
  bool in_class = false;
  for (size_t i = 0; i < p.size(); i++) {
    const char c = p[i];
    if (c == '\\' && i + 1 < p.size()) {
      const char e = p[i + 1];
      if (e == 's') {
        out += in_class ? std::string(kWhiteSpace) : "[" + std::string(kWhiteSpace) + "]";
      } else if (e == 'S' && !in_class) {
        out += "[^" + std::string(kWhiteSpace) + "]";
      } else if (e == 'S') {
        // A negated class inside a class has no PCRE2 spelling without nesting; keep PCRE2's own.
        out += "\\S";
      } else {
        out += c;
        out += e;
      }
      i++;
      continue;
    }
    if (c == '[' && !in_class) {
      in_class = true;
      out += c;
      // A ']' right after '[' or '[^' is a literal member, not the end of the class.
      if (i + 1 < p.size() && p[i + 1] == '^') out += p[++i];
      if (i + 1 < p.size() && p[i + 1] == ']') out += p[++i];
      continue;
    }
    if (c == ']' && in_class) in_class = false;
    out += c;
  }
  return out;
}

Regex::Regex(const std::string& pattern) : pattern_(pattern) {
  int error = 0;
  PCRE2_SIZE offset = 0;
  code_ = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(), PCRE2_UTF | PCRE2_UCP, &error,
                        &offset, nullptr);
  if (!code_) {
    PCRE2_UCHAR message[256];
    pcre2_get_error_message(error, message, sizeof message);
    fail("regex /{}/ does not compile at offset {}: {}", pattern, offset, reinterpret_cast<const char*>(message));
  }
  // JIT makes matching several times faster; the interpreter is the fallback where JIT is missing.
  jit_ = pcre2_jit_compile(code_, PCRE2_JIT_COMPLETE) == 0;
}

Regex::~Regex() { pcre2_code_free(code_); }

Regex::Matcher::Matcher(const Regex& re) : re_(re), data_(pcre2_match_data_create_from_pattern(re.code_, nullptr)) {
  if (!data_) throw std::bad_alloc();
}

Regex::Matcher::~Matcher() { pcre2_match_data_free(data_); }

bool Regex::Matcher::find(std::string_view text, size_t from, size_t& begin, size_t& end) {
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  // The caller has validated the UTF-8 once for the whole text; skip PCRE2's per-call check.
  const int rc = re_.jit_ ? pcre2_jit_match(re_.code_, subject, text.size(), from, PCRE2_NO_UTF_CHECK, data_, nullptr)
                          : pcre2_match(re_.code_, subject, text.size(), from, PCRE2_NO_UTF_CHECK, data_, nullptr);
  if (rc == PCRE2_ERROR_NOMATCH) return false;
  if (rc < 0) {
    PCRE2_UCHAR message[256];
    pcre2_get_error_message(rc, message, sizeof message);
    fail("regex /{}/ failed while matching: {}", re_.pattern_, reinterpret_cast<const char*>(message));
  }
  const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(data_);
  begin = ov[0];
  end = ov[1];
  return true;
}

}  // namespace txs
