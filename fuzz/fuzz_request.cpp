// The server's /v1/completions request parsing (check_completion_request: bounded JSON, then every field
// with the server's limits), with a byte-level tokenizer so that text prompts and stop strings are encoded.
// A client error must come back as a 4xx; any other exception escaping is a bug (the server would answer
// a bad request with 500), so it is left to crash the fuzzer.
#include <string>
#include <string_view>

#include "model/checkpoint.h"
#include "server/server.h"
#include "tokenizer/tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const txs::Tokenizer tok = txs::Tokenizer::from_json_text(txs::byte_tokenizer_json(), "bytes");
  const std::string_view body(reinterpret_cast<const char*>(data), size);
  const std::string verdict = txs::check_completion_request(body, &tok, 256, 512);
  if (!verdict.empty() && verdict[0] != '4') __builtin_trap();  // only client errors are expected
  if (verdict.size() > 400) __builtin_trap();                   // errors never echo unbounded input
  return 0;
}
