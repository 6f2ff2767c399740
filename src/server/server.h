// OpenAI-compatible completions server: /v1/completions (prompt text or token ids, sampling, stop strings,
// streaming by server-sent events, logprobs + echo for log-likelihood scoring), /v1/models, /health and a
// /metrics text page. HTTP threads only parse and validate; one scheduler thread owns the inference engine
// and decodes every active request together (continuous batching: new requests join between steps).
#pragma once
#include <cstdint>
#include <string>

#include "model/model.h"
#include "tokenizer/tokenizer.h"

namespace txs {

struct ServerOptions {
  std::string host = "127.0.0.1";  // loopback by default: nothing outside this machine can reach it
  int port = 8080;                 // 0: any free port
  int64_t max_batch = 8;           // sequences decoded together
  size_t max_body_bytes = size_t(1) << 20;
  int http_threads = 8;
  std::string model_name = "transxssm";
};

// Serves until SIGINT / SIGTERM. Prints "listening on http://HOST:PORT" to stderr once bound. tokenizer may
// be null: then only token-array prompts are accepted and texts come back empty.
void run_server(Model& model, const Tokenizer* tokenizer, const ServerOptions& options);

}  // namespace txs
