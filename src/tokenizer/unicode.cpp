#include "tokenizer/unicode.h"

#include <unicode/bytestream.h>
#include <unicode/casemap.h>
#include <unicode/normalizer2.h>
#include <unicode/stringpiece.h>
#include <unicode/uchar.h>

#include <algorithm>
#include <array>

#include "core/error.h"

namespace txs::unicode {

size_t valid_utf8_prefix(std::string_view s) {
  const auto* p = reinterpret_cast<const uint8_t*>(s.data());
  const size_t n = s.size();
  size_t i = 0;
  while (i < n) {
    // Eight ASCII bytes at a time: the common case for English text.
    if (i + 8 <= n) {
      uint64_t w;
      __builtin_memcpy(&w, p + i, 8);
      if ((w & 0x8080808080808080ull) == 0) {
        i += 8;
        continue;
      }
    }
    const uint8_t c = p[i];
    if (c < 0x80) {
      i++;
      continue;
    }
    size_t len;
    uint8_t lo = 0x80, hi = 0xBF;  // allowed range of the second byte
    if (c >= 0xC2 && c <= 0xDF) {
      len = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
      len = 3;
      if (c == 0xE0) lo = 0xA0;  // overlong
      if (c == 0xED) hi = 0x9F;  // surrogates
    } else if (c >= 0xF0 && c <= 0xF4) {
      len = 4;
      if (c == 0xF0) lo = 0x90;  // overlong
      if (c == 0xF4) hi = 0x8F;  // above U+10FFFF
    } else {
      return i;
    }
    if (i + len > n) return i;
    if (p[i + 1] < lo || p[i + 1] > hi) return i;
    for (size_t k = 2; k < len; k++)
      if ((p[i + k] & 0xC0) != 0x80) return i;
    i += len;
  }
  return n;
}

size_t incomplete_utf8_tail(std::string_view s) {
  // Look back at most 3 bytes for the lead byte of a sequence that runs past the end.
  const auto* p = reinterpret_cast<const uint8_t*>(s.data());
  const size_t n = s.size();
  for (size_t back = 1; back <= 3 && back <= n; back++) {
    const uint8_t c = p[n - back];
    if ((c & 0xC0) == 0x80) continue;  // a continuation byte: the lead is further back
    size_t len = 0;
    uint8_t lo = 0x80, hi = 0xBF;  // allowed range of the second byte, as in valid_utf8_prefix
    if (c >= 0xC2 && c <= 0xDF) len = 2;
    if (c >= 0xE0 && c <= 0xEF) len = 3, lo = c == 0xE0 ? 0xA0 : 0x80, hi = c == 0xED ? 0x9F : 0xBF;
    if (c >= 0xF0 && c <= 0xF4) len = 4, lo = c == 0xF0 ? 0x90 : 0x80, hi = c == 0xF4 ? 0x8F : 0xBF;
    if (len <= back) return 0;  // finished, or not a lead byte at all: nothing to hold back
    if (back >= 2 && (p[n - back + 1] < lo || p[n - back + 1] > hi)) return 0;  // can never become valid
    return back;  // bytes after the second are continuation bytes (checked by the loop above)
  }
  return 0;
}

char32_t next_code_point(std::string_view s, size_t& i) {
  const uint8_t c = uint8_t(s[i]);
  if (c < 0x80) {
    i += 1;
    return c;
  }
  if (c < 0xE0) {
    char32_t r = char32_t(c & 0x1F) << 6 | (uint8_t(s[i + 1]) & 0x3F);
    i += 2;
    return r;
  }
  if (c < 0xF0) {
    char32_t r = char32_t(c & 0x0F) << 12 | char32_t(uint8_t(s[i + 1]) & 0x3F) << 6 | (uint8_t(s[i + 2]) & 0x3F);
    i += 3;
    return r;
  }
  char32_t r = char32_t(c & 0x07) << 18 | char32_t(uint8_t(s[i + 1]) & 0x3F) << 12 |
               char32_t(uint8_t(s[i + 2]) & 0x3F) << 6 | (uint8_t(s[i + 3]) & 0x3F);
  i += 4;
  return r;
}

void append_utf8(std::string& out, char32_t c) {
  if (c < 0x80) {
    out.push_back(char(c));
  } else if (c < 0x800) {
    out.push_back(char(0xC0 | (c >> 6)));
    out.push_back(char(0x80 | (c & 0x3F)));
  } else if (c < 0x10000) {
    out.push_back(char(0xE0 | (c >> 12)));
    out.push_back(char(0x80 | ((c >> 6) & 0x3F)));
    out.push_back(char(0x80 | (c & 0x3F)));
  } else {
    out.push_back(char(0xF0 | (c >> 18)));
    out.push_back(char(0x80 | ((c >> 12) & 0x3F)));
    out.push_back(char(0x80 | ((c >> 6) & 0x3F)));
    out.push_back(char(0x80 | (c & 0x3F)));
  }
}

bool is_white_space(char32_t c) {
  return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F ||
         c == 0x3000;
}

bool is_python_space(char32_t c) { return is_white_space(c) || (c >= 0x1C && c <= 0x1F); }

std::string_view python_lstrip(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    const size_t len = valid_utf8_prefix(s.substr(i, std::min<size_t>(4, s.size() - i)));
    if (len == 0) break;  // an invalid byte: nothing Python could call space
    size_t j = i;
    if (!is_python_space(next_code_point(s, j))) break;
    i = j;
  }
  return s.substr(i);
}

std::string_view python_rstrip(std::string_view s) {
  size_t end = s.size();
  while (end > 0) {
    // The last code point starts at the last byte that is not a continuation byte (at most 3 back).
    size_t start = end - 1;
    while (start > 0 && end - start < 4 && (uint8_t(s[start]) & 0xC0) == 0x80) --start;
    const std::string_view last = s.substr(start, end - start);
    if (valid_utf8_prefix(last) != last.size()) break;
    size_t j = start;
    const char32_t c = next_code_point(s, j);
    if (j != end || !is_python_space(c)) break;
    end = start;
  }
  return s.substr(0, end);
}

std::string_view python_strip(std::string_view s) { return python_rstrip(python_lstrip(s)); }

std::string to_lower(std::string_view text) {
  bool ascii = true;
  for (char ch : text)
    if (uint8_t(ch) >= 0x80) {
      ascii = false;
      break;
    }
  std::string out;
  if (ascii) {
    out.assign(text);
    for (auto& ch : out)
      if (ch >= 'A' && ch <= 'Z') ch = char(ch - 'A' + 'a');
    return out;
  }
  if (!is_valid_utf8(text)) fail("lower-casing needs valid UTF-8 (invalid byte at offset {})", valid_utf8_prefix(text));
  out.reserve(text.size() + text.size() / 8);
  icu::StringByteSink<std::string> sink(&out);
  UErrorCode status = U_ZERO_ERROR;
  // Root locale ("" ): the language-independent full mappings, as Python's str.lower().
  icu::CaseMap::utf8ToLower("", 0, icu::StringPiece(text.data(), int32_t(text.size())), sink, nullptr, status);
  if (U_FAILURE(status)) fail("Unicode lower-casing failed: {}", u_errorName(status));
  return out;
}

bool is_word_char(char32_t c) {
  if (c < 0x80) return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
  const UChar32 u = UChar32(c);
  if (u_hasBinaryProperty(u, UCHAR_ALPHABETIC) || u_hasBinaryProperty(u, UCHAR_JOIN_CONTROL)) return true;
  switch (u_charType(u)) {
    case U_NON_SPACING_MARK:
    case U_ENCLOSING_MARK:
    case U_COMBINING_SPACING_MARK:
    case U_DECIMAL_DIGIT_NUMBER:
    case U_CONNECTOR_PUNCTUATION: return true;
    default: return false;
  }
}

const char* normal_form_name(NormalForm f) {
  switch (f) {
    case NormalForm::None: return "none";
    case NormalForm::NFC: return "NFC";
    case NormalForm::NFD: return "NFD";
    case NormalForm::NFKC: return "NFKC";
    case NormalForm::NFKD: return "NFKD";
  }
  return "?";
}

static const icu::Normalizer2* icu_normalizer(NormalForm form) {
  UErrorCode status = U_ZERO_ERROR;
  const icu::Normalizer2* n = nullptr;
  switch (form) {
    case NormalForm::NFC: n = icu::Normalizer2::getNFCInstance(status); break;
    case NormalForm::NFD: n = icu::Normalizer2::getNFDInstance(status); break;
    case NormalForm::NFKC: n = icu::Normalizer2::getNFKCInstance(status); break;
    case NormalForm::NFKD: n = icu::Normalizer2::getNFKDInstance(status); break;
    case NormalForm::None: return nullptr;
  }
  if (U_FAILURE(status) || !n) fail("ICU normaliser {} is unavailable: {}", normal_form_name(form), u_errorName(status));
  return n;
}

std::string normalize(NormalForm form, std::string_view text) {
  if (form == NormalForm::None) return std::string(text);
  // Every normal form leaves ASCII alone; most text is ASCII, so skip ICU for it.
  bool ascii = true;
  for (char ch : text)
    if (uint8_t(ch) >= 0x80) {
      ascii = false;
      break;
    }
  if (ascii) return std::string(text);
  const icu::Normalizer2* n = icu_normalizer(form);
  UErrorCode status = U_ZERO_ERROR;
  icu::StringPiece piece(text.data(), int32_t(text.size()));
  if (n->isNormalizedUTF8(piece, status) && U_SUCCESS(status)) return std::string(text);
  status = U_ZERO_ERROR;
  std::string out;
  out.reserve(text.size() + text.size() / 8);
  icu::StringByteSink<std::string> sink(&out);
  n->normalizeUTF8(0, piece, sink, nullptr, status);
  if (U_FAILURE(status)) fail("Unicode normalisation ({}) failed: {}", normal_form_name(form), u_errorName(status));
  return out;
}

// GPT-2's table: printable Latin-1 bytes stand for themselves, the other 68 bytes are moved to
// U+0100 and up, in byte order.
static const std::array<char32_t, 256>& byte_table() {
  static const std::array<char32_t, 256> table = [] {
    std::array<char32_t, 256> t{};
    char32_t next = 256;
    for (int b = 0; b < 256; b++) {
      const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      t[b] = printable ? char32_t(b) : next++;
    }
    return t;
  }();
  return table;
}

char32_t byte_to_char(uint8_t b) { return byte_table()[b]; }

int char_to_byte(char32_t c) {
  // Inverse of byte_table(): characters below U+0100 map to themselves when printable, the moved
  // bytes are U+0100..U+0143 in order.
  static const std::array<int16_t, 324> inverse = [] {
    std::array<int16_t, 324> t;
    t.fill(-1);
    for (int b = 0; b < 256; b++) t[byte_table()[b]] = int16_t(b);
    return t;
  }();
  return c < inverse.size() ? inverse[c] : -1;
}

std::string bytes_to_byte_level(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size() * 2);
  for (char b : bytes) append_utf8(out, byte_to_char(uint8_t(b)));
  return out;
}

bool byte_level_to_bytes(std::string_view text, std::string& out) {
  out.clear();
  if (!is_valid_utf8(text)) return false;
  for (size_t i = 0; i < text.size();) {
    const int b = char_to_byte(next_code_point(text, i));
    if (b < 0) return false;
    out.push_back(char(b));
  }
  return true;
}

}  // namespace txs::unicode
