// Data preparation and token shards: the shards hold exactly encode(doc) + eos for every document in
// order, split into train/val where documented; reading spans shards; results do not depend on the
// thread count; bad input and mismatched tokenizers are refused with a message naming the file.
#include <gtest/gtest.h>
#include <omp.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/error.h"
#include "data/prepare.h"
#include "data/shards.h"
#include "data/token_source.h"
#include "tokenizer/tokenizer.h"

namespace txs {
namespace {

namespace fs = std::filesystem;
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

struct TempDir {
  fs::path path;
  explicit TempDir(const std::string& tag)
      : path(fs::temp_directory_path() / ("txs_prepare_" + tag + "_" + std::to_string(getpid()))) {
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() { fs::remove_all(path); }
  std::string file(const std::string& name, const std::string& content) const {
    fs::create_directories((path / name).parent_path());
    std::ofstream(path / name, std::ios::binary) << content;
    return (path / name).string();
  }
};

std::vector<int32_t> all_tokens(const TokenSource& src) {
  std::vector<int32_t> out(size_t(src.size()));
  src.read(0, src.size(), out.data());
  return out;
}

template <class F>
std::string error_of(F f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(Prepare, ShardsHoldEveryDocumentThenEos) {
  TempDir dir("docs");
  const std::string a = read_file(kData + "/corpora/gutenberg/a_christmas_carol.txt");  // CRLF
  const std::string b = read_file(kData + "/corpora/ptb/ptb.valid.txt");
  dir.file("in/b.txt", b);
  dir.file("in/a.txt", a);
  dir.file("in/.hidden.txt", "skipped");
  dir.file("in/c.jsonl", "{\"text\": \"first doc\"}\n\n{\"text\": \"second <|endoftext|> doc\", \"x\": 1}\n");
  PrepareOptions o;
  o.inputs = {(dir.path / "in").string()};
  o.out_dir = (dir.path / "out").string();
  o.val_fraction = 0.0;
  o.shard_tokens = 7777;  // many shards, so reads cross shard boundaries
  o.piece_bytes = 4096;   // many pieces per document
  o.batch_bytes = 50000;  // several batches
  const PrepareResult r = prepare(neox(), o);
  EXPECT_EQ(r.documents, 4);
  EXPECT_EQ(r.dtype, "uint16");

  // Files in sorted order: a.txt, b.txt, c.jsonl (two documents).
  std::vector<int32_t> expected;
  for (const std::string& doc : {a, b, std::string("first doc"), std::string("second <|endoftext|> doc")}) {
    const auto ids = neox().encode(doc);
    expected.insert(expected.end(), ids.begin(), ids.end());
    expected.push_back(0);
  }
  const auto train = open_prepared(o.out_dir, "train", neox().hash());
  EXPECT_EQ(all_tokens(*train), expected);
  EXPECT_EQ(open_prepared(o.out_dir, "val")->size(), 0);
  EXPECT_GT(std::distance(fs::directory_iterator(o.out_dir), fs::directory_iterator()), 10);

  // Random reads across shard boundaries.
  std::vector<int32_t> window(9000);
  for (int64_t off : {int64_t(0), int64_t(7770), int64_t(3 * 7777 - 1), train->size() - 9000}) {
    train->read(off, 9000, window.data());
    EXPECT_TRUE(std::equal(window.begin(), window.end(), expected.begin() + off)) << off;
  }
  EXPECT_NE(error_of([&] { train->read(train->size() - 5, 6, window.data()); }), "");
  EXPECT_NE(error_of([&] { train->read(-1, 2, window.data()); }), "");

  const PreparedInfo info = read_prepared_info(o.out_dir);
  EXPECT_EQ(info.vocab_size, 50277);
  EXPECT_EQ(info.eos_id, 0);
  EXPECT_EQ(info.tokenizer_hash, neox().hash());
  EXPECT_EQ(info.train_tokens, int64_t(expected.size()));
}

TEST(Prepare, ValidationSplitIsTheTailAndExact) {
  TempDir dir("split");
  const std::string text = read_file(kData + "/corpora/tinyshakespeare.txt");
  PrepareOptions o;
  o.inputs = {dir.file("shakespeare.txt", text)};
  o.out_dir = (dir.path / "out").string();
  o.val_fraction = 0.1;
  const PrepareResult r = prepare(neox(), o);
  auto train = all_tokens(*open_prepared(o.out_dir, "train"));
  const auto val = all_tokens(*open_prepared(o.out_dir, "val"));
  const double share = double(val.size()) / double(train.size() + val.size());
  EXPECT_NEAR(share, 0.1, 0.01);
  EXPECT_EQ(r.val_tokens, int64_t(val.size()));
  // The split is a cut of the token stream: train + val == encode(text) + eos.
  train.insert(train.end(), val.begin(), val.end());
  auto expected = neox().encode(text);
  expected.push_back(0);
  EXPECT_EQ(train, expected);
}

TEST(Prepare, SameShardsWithOneOrTwoThreads) {
  TempDir dir("threads");
  PrepareOptions o;
  o.inputs = {kData + "/corpora/wikitext-2/valid.txt", kData + "/eval/piqa/valid.jsonl"};
  o.jsonl_field = "goal";
  o.piece_bytes = 20000;
  o.shard_tokens = 100000;
  const int saved = omp_get_max_threads();
  std::vector<std::string> bytes;
  for (int threads : {1, 2}) {
    omp_set_num_threads(threads);
    o.out_dir = (dir.path / std::to_string(threads)).string();
    prepare(neox(), o);
    std::vector<std::string> names;
    for (const auto& e : fs::directory_iterator(o.out_dir)) names.push_back(e.path().filename().string());
    std::sort(names.begin(), names.end());
    EXPECT_GE(names.size(), 4u);
    std::string all;
    for (const std::string& f : names) all += f + ":" + read_file(o.out_dir + "/" + f) + "|";
    bytes.push_back(all);
  }
  omp_set_num_threads(saved);
  EXPECT_GT(bytes[0].size(), 500000u);
  EXPECT_EQ(bytes[0], bytes[1]);
}

TEST(Prepare, LargeVocabularyUsesUint32) {
  TempDir dir("u32");
  auto j = nlohmann::json::parse(read_file(kData + "/tokenizers/neox-20b.json"));
  j["added_tokens"].push_back({{"id", 70000}, {"content", "<|big|>"}, {"special", true}, {"normalized", false}});
  const Tokenizer big = Tokenizer::from_json(j, "big");
  PrepareOptions o;
  o.inputs = {dir.file("t.txt", "hello <|big|> world")};
  o.out_dir = (dir.path / "out").string();
  o.val_fraction = 0;
  EXPECT_EQ(prepare(big, o).dtype, "uint32");
  std::vector<int32_t> expected = neox().encode("hello ");
  expected.push_back(70000);
  for (int32_t id : neox().encode(" world")) expected.push_back(id);
  expected.push_back(0);
  EXPECT_EQ(all_tokens(*open_prepared(o.out_dir, "train")), expected);
}

TEST(Prepare, BadInputIsRefusedWithTheFileNamed) {
  TempDir dir("bad");
  PrepareOptions o;
  o.out_dir = (dir.path / "out").string();

  o.inputs = {dir.file("good.txt", "fine\n"), dir.file("bad.txt", "fine\nbut then \xff\xfe here")};
  std::string msg = error_of([&] { prepare(neox(), o); });
  EXPECT_NE(msg.find("bad.txt"), std::string::npos) << msg;
  EXPECT_NE(msg.find("UTF-8 (byte offset 14)"), std::string::npos) << msg;
  EXPECT_FALSE(fs::exists(dir.path / "out" / "manifest.json")) << "a failed run must leave no manifest";

  o.inputs = {dir.file("x.jsonl", "{\"text\": \"ok\"}\n{\"body\": \"no text field\"}\n")};
  msg = error_of([&] { prepare(neox(), o); });
  EXPECT_NE(msg.find("x.jsonl:2"), std::string::npos) << msg;

  o.inputs = {(dir.path / "missing.txt").string()};
  msg = error_of([&] { prepare(neox(), o); });
  EXPECT_NE(msg.find("missing.txt"), std::string::npos) << msg;

  // Shards from another tokenizer, a truncated shard, no manifest.
  o.inputs = {dir.file("ok.txt", read_file(kData + "/corpora/ptb/ptb.test.txt"))};
  prepare(neox(), o);
  const Tokenizer gpt2 = Tokenizer::from_file(kData + "/tokenizers/gpt2");
  msg = error_of([&] { open_prepared(o.out_dir, "train", gpt2.hash()); });
  EXPECT_NE(msg.find("another tokenizer"), std::string::npos) << msg;
  EXPECT_NE(msg.find(o.out_dir), std::string::npos) << msg;
  EXPECT_NE(error_of([&] { open_prepared(o.out_dir, "test"); }), "");
  fs::resize_file(fs::path(o.out_dir) / "train_000000.bin", 1001);
  msg = error_of([&] { open_prepared(o.out_dir, "train"); });
  EXPECT_NE(msg.find("train_000000.bin"), std::string::npos) << msg;
  fs::remove(fs::path(o.out_dir) / "manifest.json");
  msg = error_of([&] { read_prepared_info(o.out_dir); });
  EXPECT_NE(msg.find("manifest.json"), std::string::npos) << msg;
}

TEST(Prepare, InMemoryTokens) {
  InMemoryTokens t({5, 6, 7, 8});
  int32_t out[2];
  t.read(2, 2, out);
  EXPECT_EQ(out[0], 7);
  EXPECT_EQ(out[1], 8);
  EXPECT_EQ(t.size(), 4);
  EXPECT_THROW(t.read(3, 2, out), Error);
}

}  // namespace
}  // namespace txs
