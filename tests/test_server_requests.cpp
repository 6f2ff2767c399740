// The server's request parsing without a model or a socket (check_completion_request, the path every
// /v1/completions body takes before admission): client errors are 4xx with short messages, never a crash.
// Regression cases from fuzz/fuzz_request.
#include <gtest/gtest.h>

#include <string>

#include "model/checkpoint.h"
#include "server/server.h"
#include "tokenizer/tokenizer.h"

namespace txs {
namespace {

const Tokenizer& bytes() {
  static const Tokenizer tok = Tokenizer::from_json_text(byte_tokenizer_json(), "bytes");
  return tok;
}

std::string check(const std::string& body) { return check_completion_request(body, &bytes(), 256, 64); }

TEST(ServerRequests, ValidBodiesAreAdmitted) {
  EXPECT_EQ(check(R"({"prompt":"Hello","max_tokens":8})"), "");
  EXPECT_EQ(check(R"({"model":"transxssm","prompt":[1,2,3],"temperature":0.5,"top_k":5,"top_p":0.9})"), "");
  EXPECT_EQ(check(R"({"prompt":["a",[1,2]],"echo":true,"logprobs":2,"max_tokens":0,"stop":["\n"]})"), "");
}

TEST(ServerRequests, ClientErrorsAreShort4xx) {
  EXPECT_EQ(check("{").substr(0, 4), "400 ");
  EXPECT_EQ(check(std::string(100000, '[')).substr(0, 4), "400 ");  // nesting bounded, no stack overflow
  EXPECT_EQ(check(R"({"prompt":[1,2,300]})").substr(0, 4), "400 ");  // id outside the vocabulary
  EXPECT_EQ(check(R"({"prompt":"x","max_tokens":-1})").substr(0, 4), "400 ");
  EXPECT_EQ(check(R"({"prompt":")" + std::string(100, 'x') + R"("})").substr(0, 4), "400 ");  // > context 64
  // Found by fuzz_request: an unknown model name was echoed whole into the 404 message.
  const std::string v = check(R"({"model":")" + std::string(100000, 'm') + R"(","prompt":"x"})");
  EXPECT_EQ(v.substr(0, 4), "404 ");
  EXPECT_LT(v.size(), 200u) << v.substr(0, 300);
}

}  // namespace
}  // namespace txs
