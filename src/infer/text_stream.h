// Turns generated ids into text for streaming, honouring stop strings: bytes that could still become the
// start of a stop string are held back until the next token decides, so nothing past a stop is ever shown.
#pragma once
#include <string>
#include <vector>

#include "tokenizer/tokenizer.h"

namespace txs {

class TextStream {
 public:
  TextStream(const Tokenizer& tok, std::vector<std::string> stops);
  // Adds one token; returns the bytes that are now safe to show. After a stop string is found, stopped()
  // is true and the text ends just before it.
  std::string push(int32_t id);
  // The held-back bytes at the end of generation (empty after a stop).
  std::string finish();
  bool stopped() const { return stopped_; }
  const std::string& text() const { return text_; }  // everything shown or to be shown (up to a stop)

 private:
  Tokenizer::StreamDecoder dec_;
  std::vector<std::string> stops_;
  size_t hold_ = 0;       // longest stop − 1: bytes kept back
  std::string text_;      // the whole text so far
  size_t shown_ = 0;      // bytes of text_ already returned
  bool stopped_ = false;
};

}  // namespace txs
