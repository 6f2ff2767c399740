// UTF-8 checks, Unicode normalisation (ICU) and the GPT-2 byte <-> character map used by byte-level BPE.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace txs::unicode {

// Length of the longest prefix of `s` that is valid UTF-8 (strict: no overlong forms, no surrogates,
// nothing above U+10FFFF). Equals s.size() when the whole string is valid.
size_t valid_utf8_prefix(std::string_view s);
inline bool is_valid_utf8(std::string_view s) { return valid_utf8_prefix(s) == s.size(); }

// Number of bytes at the end of `s` that start a UTF-8 sequence which is not finished yet but could
// still become valid (0..3). A streaming decoder holds these back until the next token arrives.
size_t incomplete_utf8_tail(std::string_view s);

// Decodes the code point at s[i] (which must be valid UTF-8) and advances i.
char32_t next_code_point(std::string_view s, size_t& i);
// Appends the UTF-8 encoding of c.
void append_utf8(std::string& out, char32_t c);

// Unicode White_Space: what Hugging Face's regex engine (Oniguruma) and Rust's char::is_whitespace
// call whitespace. Notably includes U+0085 and excludes U+FEFF and U+180E.
bool is_white_space(char32_t c);

// Python's str.isspace() (what str.strip()/rstrip() with no argument and the `re` module's \s remove
// or match): Unicode White_Space plus U+001C..U+001F, which Python counts as space (bidi class B/S).
bool is_python_space(char32_t c);
// Python's s.rstrip(), s.lstrip(), s.strip() on UTF-8 text: code points with is_python_space() removed
// from the end, the start, or both. Stops at bytes that are not valid UTF-8.
std::string_view python_rstrip(std::string_view s);
std::string_view python_lstrip(std::string_view s);
std::string_view python_strip(std::string_view s);

// Python's str.lower() on valid UTF-8: full Unicode lower-case mapping (SpecialCasing included, e.g.
// U+0130 → "i̇", and the final sigma rule), through ICU's root locale. ASCII text skips ICU.
std::string to_lower(std::string_view text);

// Unicode \w as in UTS #18 and Rust's regex crate (which Hugging Face uses for single_word added
// tokens): Alphabetic, marks, decimal digits, connector punctuation, join controls.
bool is_word_char(char32_t c);

enum class NormalForm { None, NFC, NFD, NFKC, NFKD };
const char* normal_form_name(NormalForm f);
// Normalises valid UTF-8 text. Pure-ASCII text is returned unchanged without calling ICU.
std::string normalize(NormalForm form, std::string_view text);

// GPT-2's reversible map from the 256 byte values to printable characters ('Ġ' for a space, ...).
char32_t byte_to_char(uint8_t b);
// The byte a character stands for, or -1 when the character is not one of the 256.
int char_to_byte(char32_t c);
// Byte-level spelling of raw bytes: each byte becomes its character, UTF-8 encoded.
std::string bytes_to_byte_level(std::string_view bytes);
// The raw bytes a byte-level string stands for; false when some character is not in the map.
bool byte_level_to_bytes(std::string_view text, std::string& out);

}  // namespace txs::unicode
