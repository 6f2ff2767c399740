// Hardening of every parser of external input: bounded JSON nesting and error echoes, the thread cap,
// safetensors tiling and shape overflow, config integer fields, tokenizer byte coverage and id bounds.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/json.h"
#include "core/threads.h"
#include "data/token_source.h"
#include "model/config.h"
#include "model/safetensors.h"
#include "tokenizer/bpe_trainer.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/unicode.h"

namespace txs {
namespace {

template <class F>
std::string error_of(F f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

std::string temp_path(const std::string& name) {
  return (std::filesystem::temp_directory_path() / ("txs_parsers_" + std::to_string(getpid()) + "_" + name)).string();
}

std::string write_temp(const std::string& name, const std::string& content) {
  const std::string path = temp_path(name);
  std::ofstream(path, std::ios::binary) << content;
  return path;
}

const std::string kDeep = std::string(100000, '[');

// A one-line message that does not echo the input and is short.
void expect_short_error(const std::string& msg, const std::string& expect) {
  EXPECT_NE(msg.find(expect), std::string::npos) << msg;
  EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
  EXPECT_LT(msg.size(), 400u) << msg;
}

TEST(Json, DepthIsBoundedBeforeParsing) {
  expect_short_error(error_of([] { parse_json_bounded(kDeep, "ids.json"); }), "ids.json: JSON nested deeper than 64");
  expect_short_error(error_of([] { parse_json_bounded(kDeep + std::string(100000, ']'), "x"); }), "nested deeper");
  EXPECT_TRUE(try_parse_json_bounded(kDeep).is_discarded());
  std::string ok = std::string(64, '[') + std::string(64, ']');
  EXPECT_NO_THROW(parse_json_bounded(ok, "x"));
  EXPECT_TRUE(try_parse_json_bounded("[" + ok + "]").is_discarded());
  // Brackets inside strings (escaped quotes included) do not count.
  const std::string in_string = "[\"" + std::string(1000, '[') + "\\\"{{{\"]";
  EXPECT_EQ(json_depth(in_string), 1);
  EXPECT_EQ(parse_json_bounded(in_string, "x")[0].get<std::string>().size(), 1004u);
  // Parse errors are one short line even when the bad token is huge.
  expect_short_error(error_of([] { parse_json_bounded("\"" + std::string(100000, 'a'), "big"); }),
                     "big: invalid JSON");
}

TEST(Json, ExcerptsAreBounded) {
  EXPECT_EQ(json_excerpt(nlohmann::json{1, 2}), "[1,2]");
  nlohmann::json deep = nlohmann::json::array();
  for (int i = 0; i < 100000; i++) deep = nlohmann::json::array({std::move(deep)});  // built, not parsed
  EXPECT_LE(json_excerpt(deep).size(), kMaxEchoChars + 3);
  EXPECT_LE(json_excerpt(std::string(1 << 20, 'x')).size(), kMaxEchoChars + 3);
  EXPECT_EQ(text_excerpt("a\nb"), "a\\nb");
  EXPECT_EQ(text_excerpt(std::string(100, 'z')), std::string(60, 'z') + "...");
  // Found by fuzz_ids: escaped control characters (4 characters each) must not overshoot the bound.
  EXPECT_EQ(text_excerpt(std::string(100, '\x06')).size(), 15 * 4 + 3u);
  // A cut never splits a UTF-8 character: 59 ASCII + "é" (2 bytes) keeps 59 + "...".
  EXPECT_EQ(text_excerpt(std::string(59, 'a') + "\xc3\xa9" + "bbb"), std::string(59, 'a') + "...");
  EXPECT_EQ(text_excerpt(std::string(58, 'a') + "\xc3\xa9" + "bbb"), std::string(58, 'a') + "\xc3\xa9...");
}

TEST(Json, DeepConfigFieldIsAnError) {
  const std::string path = write_temp("deep_config.json", "{\"hidden_size\": " + kDeep + "}");
  expect_short_error(error_of([&] { load_config_file(path); }), "nested deeper");
  const std::string path2 = write_temp("deep_config2.json", "{\"hidden_size\": " + std::string(60, '[') +
                                                                std::string(60, ']') + "}");
  expect_short_error(error_of([&] { load_config_file(path2); }), "must be an integer");
  std::filesystem::remove(path), std::filesystem::remove(path2);
}

std::string safetensors_bytes(const std::string& header, size_t data_bytes) {
  std::string h = header;
  std::string out;
  for (int i = 0; i < 8; ++i) out.push_back(char((uint64_t(h.size()) >> (8 * i)) & 0xff));
  return out + h + std::string(data_bytes, '\0');
}

TEST(Safetensors, DeepDtypeIsAnError) {
  const std::string path =
      write_temp("deep.safetensors", safetensors_bytes("{\"a\":{\"dtype\":" + kDeep + ",\"shape\":[1],\"data_offsets\":[0,4]}}", 4));
  expect_short_error(error_of([&] { SafetensorsReader r(path); }), "nested deeper");
  const std::string path2 = write_temp(
      "deepish.safetensors",
      safetensors_bytes("{\"a\":{\"dtype\":" + std::string(50, '[') + std::string(50, ']') +
                            ",\"shape\":[1],\"data_offsets\":[0,4]}}", 4));
  expect_short_error(error_of([&] { SafetensorsReader r(path2); }), "unsupported dtype");
  std::filesystem::remove(path), std::filesystem::remove(path2);
}

TEST(Safetensors, TensorsMustTileTheDataExactly) {
  auto header = [](int a0, int a1, int b0, int b1) {
    return fmt::format("{{\"a\":{{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[{},{}]}},"
                       "\"b\":{{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[{},{}]}}}}", a0, a1, b0, b1);
  };
  struct Case {
    std::string header;
    size_t data;
    std::string expect;  // "" = valid
  };
  const std::vector<Case> cases = {
      {header(0, 8, 8, 16), 16, ""},
      {header(8, 16, 0, 8), 16, ""},
      {header(0, 8, 4, 12), 16, "overlaps tensor 'a'"},   // b shifted 4 bytes into a
      {header(0, 8, 0, 8), 16, "overlaps"},                // aliasing
      {header(0, 8, 12, 20), 20, "unused data bytes"},     // gap
      {header(4, 12, 12, 20), 20, "unused data bytes"},    // gap at the start
      {header(0, 8, 8, 16), 20, "data bytes after the last tensor"},
  };
  for (size_t i = 0; i < cases.size(); i++) {
    const std::string path = write_temp("tile" + std::to_string(i) + ".safetensors", safetensors_bytes(cases[i].header, cases[i].data));
    const std::string msg = error_of([&] { SafetensorsReader r(path); });
    if (cases[i].expect.empty()) {
      EXPECT_EQ(msg, "") << i;
    } else {
      expect_short_error(msg, cases[i].expect);
      EXPECT_NE(msg.find(path), std::string::npos) << msg;
    }
    std::filesystem::remove(path);
  }
}

TEST(Safetensors, EmptyTensorsRead) {
  // Found by fuzz_safetensors (UBSan): reading a tensor with a zero dimension passed null to memcpy.
  const std::string path = write_temp(
      "empty.safetensors",
      safetensors_bytes("{\"e\":{\"dtype\":\"F32\",\"shape\":[0,3],\"data_offsets\":[0,0]},"
                        "\"d\":{\"dtype\":\"F64\",\"shape\":[0],\"data_offsets\":[0,0]},"
                        "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4));
  SafetensorsReader r(path);
  EXPECT_TRUE(r.read_f32("e").empty());
  EXPECT_TRUE(r.read_f64("e").empty());
  EXPECT_TRUE(r.read_f64("d").empty());
  EXPECT_TRUE(r.read_raw("d").empty());
  EXPECT_EQ(r.read_f32("a").size(), 1u);
  std::filesystem::remove(path);
}

TEST(Safetensors, HugeShapesAreAnErrorNotAnOverflow) {
  TensorInfo t;
  t.shape = {int64_t(1) << 40, int64_t(1) << 40};
  expect_short_error(error_of([&] { t.numel(); }), "too many elements");
  t.shape = {int64_t(1) << 31, int64_t(1) << 31};
  EXPECT_EQ(t.numel(), int64_t(1) << 62);
  const std::string path = write_temp(
      "huge.safetensors",
      safetensors_bytes("{\"a\":{\"dtype\":\"F32\",\"shape\":[1099511627776,1099511627776],\"data_offsets\":[0,0]}}", 0));
  expect_short_error(error_of([&] { SafetensorsReader r(path); }), "too many elements");
  // Fits int64 as a count, but not as bytes.
  const std::string path2 = write_temp(
      "huge2.safetensors",
      safetensors_bytes("{\"a\":{\"dtype\":\"F64\",\"shape\":[1099511627776,4194304],\"data_offsets\":[0,0]}}", 0));
  expect_short_error(error_of([&] { SafetensorsReader r(path2); }), "does not match its shape");
  std::filesystem::remove(path), std::filesystem::remove(path2);
}

TEST(Config, IntegerFieldsMustBeIntegersInRange) {
  auto msg = [](const std::string& value) {
    return error_of([&] { resolve_config("", "tiny", parse_json_bounded("{\"hidden_size\": " + value + "}", "t")); });
  };
  expect_short_error(msg("18446744073709551617"), "out of range");  // 2^64 + 1 (parsed as a float)
  expect_short_error(msg("18446744073709551615"), "out of range");  // 2^64 - 1
  expect_short_error(msg("9223372036854775807"), "out of range");
  expect_short_error(msg("-9223372036854775808"), "out of range");
  expect_short_error(msg("1e300"), "out of range");
  expect_short_error(msg("256.5"), "must be an integer, got 256.5");
  expect_short_error(msg("\"256\""), "must be an integer");
  expect_short_error(msg("-256"), "hidden_size must be positive");
  EXPECT_EQ(msg("256"), "");
  EXPECT_EQ(msg("256.0"), "");
  EXPECT_EQ(resolve_config("", "tiny", nlohmann::json{{"hidden_size", 256.0}}).hidden_size, 256);
  expect_short_error(error_of([] { resolve_config("", "tiny", nlohmann::json{{"num_hidden_layers", 2000000000}}); }),
                     "num_hidden_layers 2000000000 is too large");
}

TEST(Threads, CountIsBounded) {
  const char* omp_env = getenv("OMP_NUM_THREADS");
  const std::string saved_omp = omp_env ? omp_env : "";
  unsetenv("OMP_NUM_THREADS");
  expect_short_error(error_of([] { set_num_threads(100000); }), "too many");
  expect_short_error(error_of([] { set_num_threads(max_threads() + 1); }), "too many");
  expect_short_error(error_of([] { set_num_threads(-1); }), "must not be negative");
  EXPECT_LE(max_threads(), 1024);
  EXPECT_GE(max_threads(), 1);
  EXPECT_EQ(error_of([] { set_num_threads(1); }), "");
  EXPECT_EQ(num_threads(), 1);
  setenv("TRANSXSSM_THREADS", "100000", 1);
  expect_short_error(error_of([] { set_num_threads(0); }), "TRANSXSSM_THREADS = 100000 is too many");
  setenv("TRANSXSSM_THREADS", "-3", 1);
  expect_short_error(error_of([] { set_num_threads(0); }), "TRANSXSSM_THREADS must not be negative");
  setenv("TRANSXSSM_THREADS", "2x", 1);
  expect_short_error(error_of([] { set_num_threads(0); }), "TRANSXSSM_THREADS must be an integer");
  setenv("TRANSXSSM_THREADS", "1", 1);
  EXPECT_EQ(error_of([] { set_num_threads(0); }), "");
  unsetenv("TRANSXSSM_THREADS");
  setenv("OMP_NUM_THREADS", "100000", 1);
  expect_short_error(error_of([] { set_num_threads(0); }), "OMP_NUM_THREADS = 100000 is too many");
  EXPECT_EQ(error_of([] { set_num_threads(1); }), "");  // an explicit count wins over the environment
  setenv("OMP_NUM_THREADS", "1,1", 1);
  EXPECT_EQ(error_of([] { set_num_threads(0); }), "");
  if (omp_env) setenv("OMP_NUM_THREADS", saved_omp.c_str(), 1);
  else unsetenv("OMP_NUM_THREADS");
}

// A small byte-level BPE tokenizer.json (all 256 byte tokens, dense ids).
nlohmann::json small_tokenizer() {
  BpeTrainerOptions o;
  o.vocab_size = 300;
  std::string text;
  for (int i = 0; i < 50; i++) text += "the quick brown fox jumps over the lazy dog. ";
  const auto r = train_bpe_from_texts({text}, o);
  return nlohmann::json::parse(r.tokenizer.dump());
}

TEST(Tokenizer, EveryByteNeedsAToken) {
  const nlohmann::json base = small_tokenizer();
  EXPECT_FALSE(Tokenizer::from_json(base, "base").encode("x\x01").empty());
  // Drop the token of byte 0x01 and give its id to another token: ids stay dense, byte 0x01 has no token.
  nlohmann::json j = base;
  const std::string spelling = unicode::bytes_to_byte_level("\x01");
  const int64_t id = j["model"]["vocab"].at(spelling).get<int64_t>();
  j["model"]["vocab"].erase(spelling);
  j["model"]["vocab"]["zzzz"] = id;
  expect_short_error(error_of([&] { Tokenizer::from_json(j, "nobyte.json"); }), "no token for byte 0x01");
  // Bytes that UTF-8 never uses may be missing (NeoX-20B has no token for 0xC0, 0xC1, 0xF5-0xFF).
  nlohmann::json k = base;
  const std::string c0 = unicode::bytes_to_byte_level("\xc0");
  const int64_t c0_id = k["model"]["vocab"].at(c0).get<int64_t>();
  k["model"]["vocab"].erase(c0);
  k["model"]["vocab"]["zzzz"] = c0_id;
  EXPECT_EQ(error_of([&] { Tokenizer::from_json(k, "noc0.json"); }), "");
  // With an unk_token the byte encodes as unk instead of vanishing.
  j["model"]["unk_token"] = "zzzz";
  const auto ids = Tokenizer::from_json(j, "unk").encode("\x01");
  EXPECT_EQ(ids, std::vector<int32_t>{int32_t(id)});
}

TEST(Tokenizer, IdsAreBoundedByTheNumberOfTokens) {
  nlohmann::json j = small_tokenizer();
  const int64_t n = int64_t(j["model"]["vocab"].size());
  j["added_tokens"] = nlohmann::json::array();
  j["added_tokens"].push_back({{"id", 60000000}, {"content", "<big>"}, {"special", true}});
  expect_short_error(error_of([&] { Tokenizer::from_json(j, "big.json"); }), "token id 60000000 is out of range");
  j["added_tokens"][0]["id"] = n;  // the usual added token right after the vocabulary
  EXPECT_EQ(Tokenizer::from_json(j, "ok").vocab_size(), n + 1);
  j["added_tokens"][0]["id"] = n + 1 + 65535;  // after a padded vocabulary: within the slack
  EXPECT_EQ(Tokenizer::from_json(j, "pad").vocab_size(), n + 1 + 65536);
  j["added_tokens"][0]["id"] = n + 1 + 65536;  // beyond it
  expect_short_error(error_of([&] { Tokenizer::from_json(j, "hole.json"); }), "out of range");
  nlohmann::json v = small_tokenizer();
  v["model"]["vocab"]["zzzz"] = 60000000;
  expect_short_error(error_of([&] { Tokenizer::from_json(v, "bigvocab.json"); }), "out of range");
}

TEST(Tokenizer, DeepJsonIsAnError) {
  const std::string path = write_temp("deep_tokenizer.json", "{\"model\": " + kDeep + "}");
  expect_short_error(error_of([&] { Tokenizer::from_file(path); }), "nested deeper");
  std::filesystem::remove(path);
}

TEST(Tokenizer, FloatIdsAreAnError) {
  nlohmann::json j = small_tokenizer();
  j["model"]["vocab"]["zzzz"] = 1e300;  // converting it to an integer would be undefined behaviour
  expect_short_error(error_of([&] { Tokenizer::from_json(j, "float.json"); }), "is not an integer");
}

TEST(Manifest, NumbersAreCheckedIntegers) {
  const std::string dir = temp_path("manifest");
  std::filesystem::create_directories(dir);
  const nlohmann::json base = {
      {"format", "transxssm-tokens"}, {"version", 1}, {"dtype", "uint16"},
      {"tokenizer", {{"hash", "h"}, {"vocab_size", 300}, {"eos_id", 0}}},
      {"splits", {{"train", {{"tokens", 10}, {"shards", {{{"file", "train_000000.bin"}, {"tokens", 10}}}}}},
                  {"val", {{"tokens", 0}, {"shards", nlohmann::json::array()}}}}}};
  auto msg = [&](const nlohmann::json& m) {
    std::ofstream(dir + "/manifest.json") << m.dump();
    return error_of([&] { read_prepared_info(dir); });
  };
  EXPECT_EQ(msg(base), "");
  nlohmann::json m = base;
  m["version"] = 1e300;
  expect_short_error(msg(m), "version must be an integer");
  m = base;
  m["tokenizer"]["eos_id"] = 4294967296LL;
  expect_short_error(msg(m), "eos_id = 4294967296 is out of range");
  m = base;  // two shards whose sum overflows int64
  m["splits"]["train"]["shards"] = {{{"file", "a"}, {"tokens", INT64_MAX}}, {{"file", "b"}, {"tokens", INT64_MAX}}};
  expect_short_error(msg(m), "out of range");
  m = base;
  m["splits"]["train"]["shards"] = {{{"file", "a"}, {"tokens", int64_t(1) << 50}}, {{"file", "b"}, {"tokens", 1}}};
  expect_short_error(msg(m), "more than 2^50 tokens");
  std::ofstream(dir + "/manifest.json") << kDeep;
  expect_short_error(error_of([&] { read_prepared_info(dir); }), "malformed JSON");
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace txs
