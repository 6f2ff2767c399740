// A PCRE2 regular expression (UTF + Unicode properties, JIT-compiled) for pre-tokenisation.
#pragma once
#include <memory>
#include <string>
#include <string_view>

struct pcre2_real_code_8;
struct pcre2_real_match_data_8;

namespace txs {

class Regex {
 public:
  // Throws txs::Error with PCRE2's message and the offset when the pattern does not compile.
  explicit Regex(const std::string& pattern);
  ~Regex();
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;
  const std::string& pattern() const { return pattern_; }

  // Per-thread matching state (PCRE2 match data); one per concurrent user of the same Regex.
  class Matcher {
   public:
    explicit Matcher(const Regex& re);
    ~Matcher();
    Matcher(const Matcher&) = delete;
    Matcher& operator=(const Matcher&) = delete;
    // Finds the first match at or after `from` in `text` (valid UTF-8, `from` on a character
    // boundary). Returns false when there is none; otherwise [begin, end) of the match.
    bool find(std::string_view text, size_t from, size_t& begin, size_t& end);

   private:
    const Regex& re_;
    pcre2_real_match_data_8* data_;
  };

 private:
  std::string pattern_;
  pcre2_real_code_8* code_ = nullptr;
  bool jit_ = false;
};

// The GPT-2 split pattern that Hugging Face's ByteLevel pre-tokenizer uses:
//   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
// with \s spelled out as Unicode White_Space (Hugging Face's Oniguruma meaning), because PCRE2's
// \s and JavaScript's \s each differ from it in one or two code points.
const std::string& gpt2_split_pattern();
// Rewrites \s and \S (outside and inside character classes) of a Hugging Face pattern to the explicit
// White_Space class, so a user-supplied Split pattern means what it means in Hugging Face.
std::string spell_out_whitespace(const std::string& pattern);

}  // namespace txs
