#include "infer/text_stream.h"

#include <algorithm>

namespace txs {

TextStream::TextStream(const Tokenizer& tok, std::vector<std::string> stops) : dec_(tok) {
  for (auto& s : stops)
    if (!s.empty()) stops_.push_back(std::move(s));
  for (auto& s : stops_) hold_ = std::max(hold_, s.size() - 1);
}

std::string TextStream::push(int32_t id) {
  if (stopped_) return {};
  const size_t before = text_.size();
  text_ += dec_.push(id);
  // A stop can only newly appear in a window that reaches back at most (its length − 1) before the new bytes.
  size_t cut = std::string::npos;
  for (auto& s : stops_) {
    const size_t from = before >= s.size() ? before - s.size() + 1 : 0;
    const size_t at = text_.find(s, std::max(from, shown_));
    if (at != std::string::npos) cut = std::min(cut, at);
  }
  if (cut != std::string::npos) {
    stopped_ = true;
    text_.resize(cut);
    std::string out = text_.substr(shown_);
    shown_ = text_.size();
    return out;
  }
  const size_t safe = text_.size() > hold_ ? text_.size() - hold_ : 0;
  if (safe <= shown_) return {};
  std::string out = text_.substr(shown_, safe - shown_);
  shown_ = safe;
  return out;
}

std::string TextStream::finish() {
  if (stopped_) return {};
  text_ += dec_.flush();
  std::string out = text_.substr(shown_);
  shown_ = text_.size();
  return out;
}

}  // namespace txs
