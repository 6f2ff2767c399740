// OpenAI-compatible completions server: /v1/completions (prompt text or token ids, sampling, stop strings,
// streaming by server-sent events, logprobs + echo for log-likelihood scoring), /v1/models, /health and a
// /metrics text page. HTTP threads only parse and validate; one scheduler thread owns the inference engine
// and decodes every active request together (continuous batching: new requests join between steps).
#pragma once
#include <cstdint>
#include <string>
#include <string_view>

#include "model/model.h"
#include "tokenizer/tokenizer.h"

namespace txs {

// Limits (docs/server.md): every one bounds what one client can make the server hold or spend.
struct ServerOptions {
  std::string host = "127.0.0.1";  // loopback by default: nothing outside this machine can reach it
  int port = 8080;                 // 0: any free port
  int64_t max_batch = 8;           // sequences decoded together
  int64_t max_sequences = 64;      // sequences admitted at once (decoding + waiting); beyond: 503 + Retry-After
  int64_t max_context = 0;         // prompt + generated tokens per sequence; 0: the model's context length
  double request_timeout = 600;    // seconds a request may run before it ends with finish_reason "timeout"; 0: none
  int64_t prefill_chunk = 128;     // prompt tokens prefilled between two decode steps of the running sequences
  double shutdown_grace = 5;       // seconds SIGTERM / SIGINT waits for in-flight responses before exiting
  size_t max_body_bytes = size_t(1) << 20;
  int http_threads = 0;            // 0: max_sequences + 8, so /health always finds a free thread
  std::string model_name = "transxssm";
};

// Serves until SIGINT / SIGTERM, then cancels in-flight requests (they get 503), and returns within about
// shutdown_grace seconds. Prints "listening on http://HOST:PORT" to stderr once bound. tokenizer may
// be null: then only token-array prompts are accepted and texts come back empty.
void run_server(Model& model, const Tokenizer* tokenizer, const ServerOptions& options);

// Parses and validates one /v1/completions body exactly as the server does, without a model (the fuzz
// target and tests): "" when it would be admitted, else "<status> <message>" as the client would get it.
// Anything other than a client error escaping from here is a server bug (a 500 for a bad request).
std::string check_completion_request(std::string_view body, const Tokenizer* tokenizer, int64_t vocab,
                                     int64_t context);

}  // namespace txs
