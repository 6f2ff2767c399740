// Tokenizer training: the incremental trainer against a from-scratch reference, vocabulary size,
// determinism, round trips and errors. (That Hugging Face loads and agrees with what we write is
// checked by tests/test_tokenizer_oracle.sh.)
#include <gtest/gtest.h>
#include <omp.h>

#include <filesystem>
#include <fstream>
#include <map>
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

// Reference BPE training, written for clarity: count every adjacent pair of every word from scratch,
// merge the most frequent (ties: smaller ids), repeat. Same id assignment as the trainer.
std::vector<std::string> reference_merges(const std::map<std::string, int64_t>& word_counts, int64_t vocab_size,
                                          int64_t specials) {
  std::vector<std::string> token;  // bytes by id
  std::map<std::string, int32_t> id_of;
  for (int64_t i = 0; i < specials; i++) token.push_back("\x01special" + std::to_string(i));
  std::vector<int> bytes(256);
  for (int b = 0; b < 256; b++) bytes[b] = b;
  std::sort(bytes.begin(), bytes.end(),
            [](int x, int y) { return unicode::byte_to_char(uint8_t(x)) < unicode::byte_to_char(uint8_t(y)); });
  for (int b : bytes) {
    id_of[std::string(1, char(b))] = int32_t(token.size());
    token.push_back(std::string(1, char(b)));
  }
  std::vector<std::pair<std::vector<int32_t>, int64_t>> words;
  for (auto& [w, n] : word_counts) {
    std::vector<int32_t> s;
    for (char c : w) s.push_back(id_of[std::string(1, c)]);
    words.emplace_back(s, n);
  }
  std::vector<std::string> merges;
  while (int64_t(token.size()) < vocab_size) {
    std::map<std::pair<int32_t, int32_t>, int64_t> counts;
    for (auto& [s, n] : words)
      for (size_t i = 0; i + 1 < s.size(); i++) counts[{s[i], s[i + 1]}] += n;
    std::pair<int32_t, int32_t> best{-1, -1};
    int64_t best_n = 0;
    for (auto& [p, n] : counts)
      if (n > best_n) best = p, best_n = n;  // map order: the smallest pair wins ties
    if (best_n < 2) break;
    const std::string merged = token[best.first] + token[best.second];
    int32_t id;
    if (id_of.count(merged)) {
      id = id_of[merged];
    } else {
      id = int32_t(token.size());
      id_of[merged] = id;
      token.push_back(merged);
    }
    merges.push_back(unicode::bytes_to_byte_level(token[best.first]) + " " +
                     unicode::bytes_to_byte_level(token[best.second]));
    for (auto& [s, n] : words) {
      std::vector<int32_t> next;
      for (size_t i = 0; i < s.size(); i++) {
        if (i + 1 < s.size() && s[i] == best.first && s[i + 1] == best.second) {
          next.push_back(id);
          i++;
        } else {
          next.push_back(s[i]);
        }
      }
      s = next;
    }
  }
  return merges;
}

TEST(TokenizerTrain, MatchesReferenceTrainer) {
  const std::string text = read_file(kData + "/corpora/ptb/ptb.valid.txt").substr(0, 60000) +
                           " aaaaaaa aaaa aaa naïve café 日本語 日本 ";
  BpeTrainerOptions o;
  o.vocab_size = 600;
  const BpeTrainerResult r = train_bpe_from_texts({text}, o);
  // The reference gets the same pre-tokens (the tokenizer's own pre-tokenisation).
  const Tokenizer pre = Tokenizer::from_json(nlohmann::json::parse(r.tokenizer.dump()), "trained");
  std::map<std::string, int64_t> counts;
  pre.pre_tokenize(text, [&](std::string_view p) { counts[std::string(p)]++; }, [](int32_t) {});
  const auto expected = reference_merges(counts, 600, 1);
  std::vector<std::string> got;
  for (auto& m : r.tokenizer["model"]["merges"]) got.push_back(m.get<std::string>());
  ASSERT_EQ(got.size(), expected.size());
  EXPECT_EQ(got, expected);
  EXPECT_EQ(pre.vocab_size(), 600);
}

TEST(TokenizerTrain, VocabularyRoundTripAndCompression) {
  const std::string shakespeare = read_file(kData + "/corpora/tinyshakespeare.txt");
  size_t previous = shakespeare.size() + 1;
  for (int64_t size : {300, 1000, 4000}) {
    BpeTrainerOptions o;
    o.vocab_size = size;
    const auto r = train_bpe_from_texts({shakespeare}, o);
    const Tokenizer tok = Tokenizer::from_json(nlohmann::json::parse(r.tokenizer.dump()), "trained");
    EXPECT_EQ(tok.vocab_size(), size);
    EXPECT_EQ(tok.eos_id(), 0);
    EXPECT_EQ(tok.encode("<|endoftext|>"), std::vector<int32_t>{0});
    const auto ids = tok.encode(shakespeare);
    EXPECT_LT(ids.size(), previous) << "a bigger vocabulary must compress better";
    previous = ids.size();
    EXPECT_EQ(tok.decode(ids), shakespeare);
    // Text unlike the training data still round-trips through the byte tokens.
    const std::string other = "Ünïcödé 日本語 😀 \t\r\n 12345 <|endoftext|> tail";
    EXPECT_EQ(tok.decode(tok.encode(other)), other);
  }
}

TEST(TokenizerTrain, DeterministicAcrossThreadsAndRuns) {
  const std::string path = kData + "/corpora/wikitext-2/valid.txt";
  BpeTrainerOptions o;
  o.vocab_size = 1500;
  const int saved = omp_get_max_threads();
  omp_set_num_threads(1);
  const std::string one = train_bpe({path}, o).tokenizer.dump();
  omp_set_num_threads(2);
  const std::string two = train_bpe({path}, o).tokenizer.dump();
  const std::string again = train_bpe({path}, o).tokenizer.dump();
  omp_set_num_threads(saved);
  EXPECT_EQ(one, two);
  EXPECT_EQ(two, again);
}

TEST(TokenizerTrain, Errors) {
  BpeTrainerOptions o;
  o.vocab_size = 100;
  try {
    train_bpe_from_texts({"abc"}, o);
    ADD_FAILURE() << "vocab 100 < 257 accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("too small"), std::string::npos) << e.what();
  }
  o.vocab_size = 500;
  const std::string bad = (std::filesystem::temp_directory_path() / ("txs_train_bad_" + std::to_string(getpid()))).string();
  std::ofstream(bad, std::ios::binary) << "fine text\n\xc3\x28 broken";
  try {
    train_bpe({bad}, o);
    ADD_FAILURE() << "non-UTF-8 corpus accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(bad), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("UTF-8"), std::string::npos) << e.what();
  }
  std::filesystem::remove(bad);
  EXPECT_THROW(train_bpe({"/no/such/corpus.txt"}, o), Error);
}

}  // namespace
}  // namespace txs
