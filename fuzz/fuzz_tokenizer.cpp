// tokenizer.json loader (Tokenizer::from_json_text); an accepted tokenizer then encodes and decodes a
// fixed text and the input itself (bounded).
#include <string_view>

#include "core/error.h"
#include "tokenizer/tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  try {
    const txs::Tokenizer tok = txs::Tokenizer::from_json_text(text, "tokenizer.json");
    const auto ids = tok.encode("Hello, world! \xc3\xa9\xe2\x82\xac 123\n\t<|endoftext|>");
    (void)tok.decode(ids);
    (void)tok.decode(tok.encode(text.substr(0, 256)));
  } catch (const txs::Error&) {
  }
  return 0;
}
