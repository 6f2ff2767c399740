// Tokenizer: golden ids, whole-file counts, exact chunking, streaming decode, loader errors, fuzzing.
// (The id-for-id comparison with Hugging Face's JavaScript library is tests/test_tokenizer_oracle.sh.)
#include <gtest/gtest.h>
#include <omp.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>

#include "core/error.h"
#include "tokenizer/bpe_trainer.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/unicode.h"

namespace txs {
namespace {

const std::string kData = std::string(TRANSXSSM_SHARED_DIR) + "/data";

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

const Tokenizer& neox() {
  static const Tokenizer t = Tokenizer::from_file(kData + "/tokenizers/neox-20b.json");
  return t;
}
const Tokenizer& gpt2() {
  static const Tokenizer t = Tokenizer::from_file(kData + "/tokenizers/gpt2/vocab.json");
  return t;
}

// The error message of `f`, or "" when it does not throw txs::Error.
template <class F>
std::string error_of(F f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(Tokenizer, GoldenIds) {
  const auto golden = nlohmann::json::parse(read_file(kData + "/tokenizers/golden-ids.json"));
  int cases = 0;
  for (auto [key, tok] : {std::pair{"neox_20b", &neox()}, std::pair{"gpt2", &gpt2()}}) {
    for (const auto& c : golden.at(key)) {
      const std::string text = c.at("text");
      const auto ids = tok->encode(text);
      EXPECT_EQ(ids, c.at("ids").get<std::vector<int32_t>>()) << key << ": " << c.at("text").dump();
      if (c.at("decoded_equals_input").get<bool>()) {
        EXPECT_EQ(tok->decode(ids), text) << key;
      }
      cases++;
    }
  }
  EXPECT_EQ(cases, 32);
}

TEST(Tokenizer, VocabularyFacts) {
  EXPECT_EQ(neox().vocab_size(), 50277);
  EXPECT_EQ(neox().eos_id(), 0);
  EXPECT_EQ(gpt2().vocab_size(), 50257);
  EXPECT_EQ(gpt2().eos_id(), 50256);
  EXPECT_EQ(neox().token_to_id("<|padding|>"), 1);
  EXPECT_EQ(gpt2().token_to_id(" the"), 262);
  EXPECT_EQ(neox().encode("x                              y"), (std::vector<int32_t>{89, 50254, 50272, 90}));
  EXPECT_EQ(neox().decode({50254}), std::string(24, ' '));
  // The hash is of the content: stable, the same however the files are named, different per tokenizer.
  EXPECT_EQ(neox().hash(), Tokenizer::from_file(kData + "/tokenizers/neox-20b.json").hash());
  EXPECT_EQ(gpt2().hash(), Tokenizer::from_file(kData + "/tokenizers/gpt2").hash());
  EXPECT_NE(neox().hash(), gpt2().hash());
}

TEST(Tokenizer, HashIgnoresSpellingOfTheFile) {
  // The same tokenizer with merges written as pairs and another key order hashes the same; a changed
  // merge order does not.
  auto j = nlohmann::json::parse(read_file(kData + "/tokenizers/neox-20b.json"));
  nlohmann::json pairs = nlohmann::json::array();
  for (const auto& m : j["model"]["merges"]) {
    const std::string s = m;
    pairs.push_back({s.substr(0, s.find(' ')), s.substr(s.find(' ') + 1)});
  }
  j["model"]["merges"] = pairs;
  EXPECT_EQ(Tokenizer::from_json(j, "pairs").hash(), neox().hash());
  std::swap(j["model"]["merges"][0], j["model"]["merges"][1]);
  EXPECT_NE(Tokenizer::from_json(j, "swapped").hash(), neox().hash());
}

// Whole files, counts from shared/data/README.md (checked there against two implementations).
TEST(Tokenizer, WholeFileCountsAndRoundTrip) {
  const std::vector<std::pair<std::string, size_t>> files = {{"corpora/tinyshakespeare.txt", 340240},
                                                             {"corpora/wikitext-2/valid.txt", 258131},
                                                             {"haystack/paul_graham_essays.txt", 152915}};
  for (auto& [name, count] : files) {
    const std::string text = read_file(kData + "/" + name);
    const auto ids = neox().encode(text);
    EXPECT_EQ(ids.size(), count) << name;
    EXPECT_EQ(neox().decode(ids), text) << name;
    EXPECT_EQ(gpt2().decode(gpt2().encode(text)), text) << name;
  }
}

// Encoding pieces cut at safe_cuts() and concatenating must give the ids of the whole text. Cuts every
// few bytes make this a strong check of the cut rule on CRLF text, U+0085, added tokens and whitespace.
TEST(Tokenizer, SafeCutsAreExact) {
  std::string tricky;
  for (int i = 0; i < 300; i++)
    tricky += "a.\n\n  b\r\n<|endoftext|>\n c'\n's  \n\t\nx\xc2\x85\n\xe2\x80\x83y.\n   \n";
  const std::vector<std::string> texts = {
      read_file(kData + "/corpora/gutenberg/a_christmas_carol.txt").substr(0, 200000),
      read_file(kData + "/eval/triviaqa/triviaqa_sm_sub.jsonl").substr(0, 300000),
      read_file(kData + "/corpora/wikitext-2/test.txt").substr(0, 200000), tricky};
  for (const Tokenizer* tok : {&neox(), &gpt2()}) {
    for (const std::string& text : texts) {
      const std::vector<size_t> cuts = tok->safe_cuts(text, 50);
      ASSERT_GT(cuts.size(), 100u);
      std::vector<int32_t> pieces;
      size_t begin = 0;
      for (size_t cut : cuts) {
        ASSERT_GT(cut, begin);
        tok->encode_into(std::string_view(text).substr(begin, cut - begin), pieces);
        begin = cut;
      }
      tok->encode_into(std::string_view(text).substr(begin), pieces);
      std::vector<int32_t> whole;
      tok->encode_into(text, whole);
      ASSERT_EQ(pieces, whole);
    }
  }
}

TEST(Tokenizer, ParallelEncodeEqualsSerial) {
  const std::string text = read_file(kData + "/corpora/gutenberg/great_expectations.txt") +
                           read_file(kData + "/corpora/tinyshakespeare.txt");
  std::vector<int32_t> serial;
  neox().encode_into(text, serial);
  const int saved = omp_get_max_threads();
  omp_set_num_threads(2);
  EXPECT_EQ(neox().encode(text), serial);
  omp_set_num_threads(saved);
}

TEST(Tokenizer, StreamDecoderHoldsBackIncompleteUtf8) {
  // GPT-2 spells emoji and CJK as separate byte tokens: a character arrives over several pushes.
  const std::string text = "Emoji 😀👍🏽 and 日本語, naïve — ok\n";
  const auto ids = gpt2().encode(text);
  Tokenizer::StreamDecoder stream(gpt2());
  std::string joined;
  int held = 0;
  for (int32_t id : ids) {
    const std::string part = stream.push(id);
    EXPECT_TRUE(unicode::is_valid_utf8(part)) << "pushed out a partial character";
    if (part.size() < gpt2().token_bytes(id).size()) held++;
    joined += part;
  }
  joined += stream.flush();
  EXPECT_EQ(joined, text);
  EXPECT_GT(held, 0);

  // Bytes that can never be valid pass through at once; an unfinished tail comes out at flush().
  const int32_t ff = gpt2().token_to_id("\xff").value_or(-1);
  ASSERT_GE(ff, 0);
  EXPECT_EQ(gpt2().decode({ff}), "\xff");
  Tokenizer::StreamDecoder s2(gpt2());
  EXPECT_EQ(s2.push(ff), "\xff");
  const int32_t e6 = gpt2().token_to_id("\xe6").value_or(-1);
  EXPECT_EQ(s2.push(e6), "");
  EXPECT_EQ(s2.flush(), "\xe6");
  EXPECT_EQ(s2.flush(), "");
}

TEST(Tokenizer, Utf8Helpers) {
  EXPECT_EQ(unicode::valid_utf8_prefix("ab\xc3\xa9z"), 5u);
  EXPECT_EQ(unicode::valid_utf8_prefix("ab\xc0\xafz"), 2u);       // overlong
  EXPECT_EQ(unicode::valid_utf8_prefix("a\xed\xa0\x80"), 1u);     // surrogate
  EXPECT_EQ(unicode::valid_utf8_prefix("a\xf4\x90\x80\x80"), 1u); // above U+10FFFF
  EXPECT_EQ(unicode::incomplete_utf8_tail("a\xe6\x97"), 2u);
  EXPECT_EQ(unicode::incomplete_utf8_tail("a\xe6\x97\xa5"), 0u);
  EXPECT_EQ(unicode::incomplete_utf8_tail("a\xf0\x9f"), 2u);
  EXPECT_EQ(unicode::incomplete_utf8_tail("a\xe0\x80"), 0u);  // can never become valid
  EXPECT_EQ(unicode::incomplete_utf8_tail("a\x80"), 0u);
  EXPECT_EQ(unicode::normalize(unicode::NormalForm::NFC, "Cafe\xcc\x81"), "Caf\xc3\xa9");
}

TEST(Tokenizer, InvalidUtf8IsAnError) {
  const std::string msg = error_of([] { neox().encode("abc\xff"); });
  EXPECT_NE(msg.find("not valid UTF-8 (byte offset 3)"), std::string::npos) << msg;
  EXPECT_NE(error_of([] { neox().decode({50277}); }), "");
  EXPECT_NE(error_of([] { neox().decode({-1}); }), "");
}

std::string write_temp(const std::string& name, const std::string& content) {
  const auto path = std::filesystem::temp_directory_path() / ("txs_tok_" + std::to_string(::getpid()) + "_" + name);
  std::ofstream(path, std::ios::binary) << content;
  return path.string();
}

// A small but real tokenizer.json (trained here) for the loader tests.
const nlohmann::json& small_json() {
  static const nlohmann::json j = [] {
    BpeTrainerOptions o;
    o.vocab_size = 400;
    const auto r = train_bpe_from_texts({read_file(kData + "/corpora/tinyshakespeare.txt").substr(0, 100000)}, o);
    return nlohmann::json::parse(r.tokenizer.dump());
  }();
  return j;
}

TEST(Tokenizer, LoaderErrorsNameTheFileAndTheProblem) {
  struct Case {
    std::string name, content, expect;
  };
  nlohmann::json no_merges = small_json();
  no_merges["model"].erase("merges");
  nlohmann::json wordpiece = small_json();
  wordpiece["model"]["type"] = "WordPiece";
  nlohmann::json bad_merge = small_json();
  bad_merge["model"]["merges"].push_back("zzzq zzzr");
  nlohmann::json lowercase = small_json();
  lowercase["normalizer"] = {{"type", "Lowercase"}};
  nlohmann::json wrong_type = small_json();
  wrong_type["model"]["vocab"]["Ġthe"] = "seven";
  nlohmann::json huge_id = small_json();
  huge_id["added_tokens"][0]["id"] = 4000000000LL;
  const std::vector<Case> cases = {
      {"truncated.json", small_json().dump().substr(0, 500), "malformed JSON"},
      {"nomerges.json", no_merges.dump(), "no \"merges\""},
      {"wordpiece.json", wordpiece.dump(), "unsupported model type \"WordPiece\""},
      {"badmerge.json", bad_merge.dump(), "not in the vocabulary"},
      {"lowercase.json", lowercase.dump(), "unsupported normalizer \"Lowercase\""},
      {"wrongtype.json", wrong_type.dump(), "invalid tokenizer.json"},
      {"hugeid.json", huge_id.dump(), "out of range"},
      {"array.json", "[1,2,3]", "not a tokenizer.json"},
  };
  for (const Case& c : cases) {
    const std::string path = write_temp(c.name, c.content);
    const std::string msg = error_of([&] { Tokenizer::from_file(path); });
    EXPECT_NE(msg.find(path), std::string::npos) << c.name << ": " << msg;
    EXPECT_NE(msg.find(c.expect), std::string::npos) << c.name << ": " << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
    std::filesystem::remove(path);
  }
  EXPECT_NE(error_of([] { Tokenizer::from_file("/no/such/tokenizer.json"); }).find("/no/such/tokenizer.json"),
            std::string::npos);
  const std::string dir = std::filesystem::temp_directory_path().string();
  EXPECT_NE(error_of([&] { Tokenizer::from_file(dir); }).find("neither tokenizer.json"), std::string::npos);
}

TEST(Tokenizer, AddedTokenFlags) {
  // lstrip / rstrip swallow the whitespace beside the token; single_word ignores a match inside a word.
  nlohmann::json j = small_json();
  const int64_t id = j["model"]["vocab"].size();
  j["added_tokens"].push_back({{"id", id}, {"content", "<mask>"}, {"special", true}, {"normalized", false},
                               {"lstrip", true}, {"rstrip", true}, {"single_word", false}});
  j["added_tokens"].push_back({{"id", id + 1}, {"content", "zap"}, {"special", false}, {"normalized", true},
                               {"lstrip", false}, {"rstrip", false}, {"single_word", true}});
  const Tokenizer tok = Tokenizer::from_json(j, "flags");
  auto cat = [](std::vector<int32_t> a, const std::vector<int32_t>& b) {
    a.insert(a.end(), b.begin(), b.end());
    return a;
  };
  const auto a = tok.encode("a"), b = tok.encode("b");
  EXPECT_EQ(tok.encode("a  <mask>  b"), cat(cat(a, {int32_t(id)}), b));
  EXPECT_EQ(tok.encode("a zap b"), cat(cat(tok.encode("a "), {int32_t(id + 1)}), tok.encode(" b")));
  for (const char* word : {"zapper", "\xc3\xa4zap", "zap_", "zap\xcc\x81"})  // zapper, äzap, zap_, zap+accent
    for (int32_t t : tok.encode(word)) EXPECT_NE(t, id + 1) << "single_word token matched inside " << word;
  const auto dashed = tok.encode("\xe2\x80\x94zap\xe2\x80\x94");  // em dashes are not word characters
  EXPECT_NE(std::find(dashed.begin(), dashed.end(), int32_t(id + 1)), dashed.end());
  EXPECT_EQ(tok.vocab_size(), id + 2);
  EXPECT_TRUE(tok.safe_cuts("a b c d e f", 1).empty()) << "lstrip/rstrip tokens look across cuts";
}

TEST(Tokenizer, SplitPreTokenizerAndIgnoreMerges) {
  // Llama-3 style: Sequence [Split(regex, Isolated), ByteLevel(use_regex=false)], ignore_merges.
  nlohmann::json j = small_json();
  j["pre_tokenizer"] = {
      {"type", "Sequence"},
      {"pretokenizers",
       {{{"type", "Split"},
         {"pattern", {{"Regex", R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)"}}},
         {"behavior", "Isolated"},
         {"invert", false}},
        {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", false}}}}};
  j["model"]["ignore_merges"] = true;
  const Tokenizer tok = Tokenizer::from_json(j, "llama3-like");
  std::vector<std::string> pieces;
  tok.pre_tokenize("I'M 1234567 ok.\n\nx", [&](std::string_view p) { pieces.emplace_back(p); }, [](int32_t) {});
  EXPECT_EQ(pieces, (std::vector<std::string>{"I", "'M", " ", "123", "456", "7", " ok", ".\n\n", "x"}));
  const std::string text = read_file(kData + "/corpora/tinyshakespeare.txt").substr(0, 20000);
  EXPECT_EQ(tok.decode(tok.encode(text)), text);
  EXPECT_TRUE(tok.safe_cuts(text, 100).empty()) << "cut rule is only proven for GPT-2's pattern";
}

TEST(Tokenizer, FuzzLoader) {
  // Random damage to a valid file: it either loads or throws txs::Error; nothing else.
  const std::string good = small_json().dump();
  std::mt19937_64 rng(7);
  int loaded = 0, refused = 0;
  for (int iter = 0; iter < 300; iter++) {
    std::string s = good;
    const int edits = 1 + int(rng() % 4);
    for (int e = 0; e < edits; e++) {
      const size_t pos = rng() % s.size();
      switch (rng() % 4) {
        case 0: s[pos] = char(rng() % 256); break;
        case 1: s.erase(pos, 1 + rng() % 20); break;
        case 2: s.insert(pos, 1, "{}[]\",:0-9ae \\"[rng() % 15]); break;
        case 3: s.resize(pos); break;
      }
      if (s.empty()) s.push_back('{');
    }
    try {
      const Tokenizer t = Tokenizer::from_json_text(s, "fuzz");
      t.encode("Hello, world! 123");
      loaded++;
    } catch (const Error&) {
      refused++;
    }
  }
  // Structural damage: any node replaced by a value of another type.
  const std::vector<nlohmann::json> values = {nullptr, 3, -1, 1e30, "x", true, nlohmann::json::array(),
                                              nlohmann::json::object(), nlohmann::json::array({1, "a"})};
  for (int iter = 0; iter < 300; iter++) {
    nlohmann::json j = small_json();
    nlohmann::json* node = &j;
    for (int depth = 0; depth < 4 && (node->is_object() || node->is_array()) && !node->empty(); depth++) {
      auto it = node->begin();
      std::advance(it, ptrdiff_t(rng() % std::min<size_t>(node->size(), 50)));
      node = &*it;
    }
    *node = values[rng() % values.size()];
    try {
      Tokenizer::from_json(j, "fuzz").encode("ab cd");
      loaded++;
    } catch (const Error&) {
      refused++;
    }
  }
  EXPECT_GT(refused, 100);
  EXPECT_GT(loaded, 0);
}

TEST(Tokenizer, FuzzEncode) {
  std::mt19937_64 rng(11);
  // Random bytes: invalid UTF-8 is refused with an error, valid input round-trips.
  for (int iter = 0; iter < 2000; iter++) {
    std::string s(rng() % 40, '\0');
    for (char& c : s) c = char(rng() % 256);
    for (const Tokenizer* tok : {&neox(), &gpt2()}) {
      if (!unicode::is_valid_utf8(s)) {
        EXPECT_NE(error_of([&] { tok->encode(s); }), "");
      } else {
        EXPECT_EQ(tok->decode(tok->encode(s)), tok == &neox() ? unicode::normalize(unicode::NormalForm::NFC, s) : s);
      }
    }
  }
  // Random code points, including the whitespace and combining marks the pattern cares about.
  const std::vector<char32_t> special = {0x20, 0x09, 0x0A, 0x0D, 0x85, 0xA0, 0x2003, 0x200B, 0xFEFF,
                                         0x180E, 0x301, 0x27, 0x3000, 0x1F600, 0x30, 0x661, 0x4E00};
  for (int iter = 0; iter < 2000; iter++) {
    std::string s;
    const int n = int(rng() % 30);
    for (int k = 0; k < n; k++) {
      char32_t c = rng() % 2 ? special[rng() % special.size()] : char32_t(rng() % 0x10FFFF);
      if (c >= 0xD800 && c <= 0xDFFF) c = 'x';
      unicode::append_utf8(s, c);
    }
    EXPECT_EQ(gpt2().decode(gpt2().encode(s)), s);
    EXPECT_EQ(neox().decode(neox().encode(s)), unicode::normalize(unicode::NormalForm::NFC, s));
  }
}

TEST(Tokenizer, PathologicalInputsFinish) {
  // Long runs become single pre-tokens; BPE on them must stay fast (heap-based merging) and exact.
  const std::vector<std::string> texts = {std::string(1 << 20, ' '), std::string(200000, '7'),
                                          std::string(100000, 'a'), std::string(100000, '='),
                                          [] {
                                            std::string s;
                                            for (int i = 0; i < 30000; i++) s += "'s";
                                            return s;
                                          }()};
  for (const std::string& t : texts) {
    for (const Tokenizer* tok : {&neox(), &gpt2()}) {
      const auto ids = tok->encode(t);
      EXPECT_LE(ids.size(), t.size());
      EXPECT_EQ(tok->decode(ids), t);
    }
  }
}

}  // namespace
}  // namespace txs
