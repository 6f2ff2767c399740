// Evaluation suite: the harness's request construction and metrics on hand-computed cases, the scorers
// against the float64 PyTorch reference (tests/reference/oracle_eval.py), model vs engine scorer, every
// loader on the real file, malformed records, and a few-item run of every task.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "core/error.h"
#include "eval/evaluate.h"
#include "eval/scorer.h"
#include "eval/tasks.h"
#include "model/checkpoint.h"
#include "oracle.h"

using namespace txs;
using namespace txs::eval;

namespace {

const std::string kData = std::string(TRANSXSSM_SHARED_DIR) + "/data";
const std::string kEval = kData + "/eval";

const Tokenizer& neox() {
  static const Tokenizer tok = Tokenizer::from_file(kData + "/tokenizers/neox-20b.json");
  return tok;
}

// A small model whose outputs are far from uniform (large init), so argmax and sums are meaningful.
ModelConfig small_config(int64_t vocab, int64_t max_pos) {
  return resolve_config("transxssm", "tiny",
                        {{"vocab_size", vocab}, {"hidden_size", 32}, {"intermediate_size", 48},
                         {"num_hidden_layers", 2}, {"num_attention_heads", 2}, {"num_key_value_heads", 2},
                         {"head_dim", 16}, {"ssm_state_size", 16}, {"attn_layer_period", 2},
                         {"attn_layer_offset", 1}, {"ssm_chunk_size", 8}, {"max_position_embeddings", max_pos},
                         {"initializer_range", 0.5}});
}

std::vector<LoglikRequest> random_requests(Rng& rng, int64_t vocab, int n, int max_ctx, int max_cont) {
  std::vector<LoglikRequest> reqs;
  std::vector<int32_t> shared;
  for (int i = 0; i < 20; ++i) shared.push_back(int32_t(rng.uniform() * double(vocab)));
  for (int i = 0; i < n; ++i) {
    LoglikRequest r;
    // A third share a 20-token prefix (few-shot style), some share the whole context (choices).
    if (i % 3 == 0) r.context = shared;
    const int nc = 1 + int(rng.uniform() * max_ctx);
    for (int k = 0; k < nc; ++k) r.context.push_back(int32_t(rng.uniform() * double(vocab)));
    if (i % 4 == 1) r.context = reqs.back().context;
    const int nk = 1 + int(rng.uniform() * max_cont);
    for (int k = 0; k < nk; ++k) r.continuation.push_back(int32_t(rng.uniform() * double(vocab)));
    r.need_greedy = (i % 2 == 0);
    reqs.push_back(std::move(r));
  }
  return reqs;
}

}  // namespace

// --- Request construction --------------------------------------------------------------------------------

TEST(EvalRequests, RollingWindowsAreTheHarnessWindows) {
  std::vector<int32_t> t = {10, 11, 12, 13, 14, 15, 16, 17, 18, 19};
  // Harness get_rolling_token_windows(t, prefix=0, max_seq_len=4, context_len=1) + make_disjoint_window.
  auto w = rolling_windows(t, 0, 4, 1);
  ASSERT_EQ(w.size(), 3u);
  EXPECT_EQ(w[0].context, (std::vector<int32_t>{0}));
  EXPECT_EQ(w[0].continuation, (std::vector<int32_t>{10, 11, 12, 13}));
  EXPECT_EQ(w[1].context, (std::vector<int32_t>{13}));
  EXPECT_EQ(w[1].continuation, (std::vector<int32_t>{14, 15, 16, 17}));
  EXPECT_EQ(w[2].context, (std::vector<int32_t>{15, 16, 17}));  // the last window keeps a full-length input
  EXPECT_EQ(w[2].continuation, (std::vector<int32_t>{18, 19}));
  // context_len = 3: stride 2 after the first window.
  w = rolling_windows(t, 0, 4, 3);
  ASSERT_EQ(w.size(), 4u);
  EXPECT_EQ(w[1].context, (std::vector<int32_t>{11, 12, 13}));
  EXPECT_EQ(w[1].continuation, (std::vector<int32_t>{14, 15}));
  EXPECT_EQ(w[3].context, (std::vector<int32_t>{15, 16, 17}));
  EXPECT_EQ(w[3].continuation, (std::vector<int32_t>{18, 19}));
  // Every token predicted once, every model input at most max_len.
  for (int64_t ctx : {1, 2, 4}) {
    size_t predicted = 0;
    for (auto& r : rolling_windows(t, 0, 4, ctx)) {
      predicted += r.continuation.size();
      EXPECT_LE(r.context.size() + r.continuation.size() - 1, 4u);
    }
    EXPECT_EQ(predicted, t.size());
  }
  EXPECT_THROW(rolling_windows(t, 0, 4, 5), Error);
}

TEST(EvalRequests, ModelInputTruncatesFromTheLeft) {
  LoglikRequest r;
  for (int i = 0; i < 10; ++i) r.context.push_back(i);
  r.continuation = {10, 11, 12};
  int64_t first = -1;
  auto row = model_input(r, 8, &first);  // (ctx+cont)[-9:][:-1] = 4..11
  EXPECT_EQ(row, (std::vector<int32_t>{4, 5, 6, 7, 8, 9, 10, 11}));
  EXPECT_EQ(first, 5);
  row = model_input(r, 100, &first);
  EXPECT_EQ(row.size(), 12u);
  EXPECT_EQ(first, 9);
  r.continuation.assign(9, 1);
  EXPECT_THROW(model_input(r, 8, &first), Error);
}

TEST(EvalRequests, EncodePairMovesTrailingSpaces) {
  const auto& tok = neox();
  auto r = encode_pair(tok, "Question: Where is Paris?\nAnswer:", " France");
  EXPECT_EQ(r.context, tok.encode("Question: Where is Paris?\nAnswer:"));
  EXPECT_EQ(r.continuation, tok.encode(" France"));
  // "The cat " + "sat" is scored as "The cat" + " sat" (one Ġsat token, not a space token then "sat").
  r = encode_pair(tok, "The cat ", "sat");
  EXPECT_EQ(r.context, tok.encode("The cat"));
  EXPECT_EQ(r.continuation, tok.encode(" sat"));
  // Empty context: <|endoftext|> stands in.
  r = encode_pair(tok, "", "Hello world");
  EXPECT_EQ(r.context, (std::vector<int32_t>{0}));
  EXPECT_EQ(r.continuation, (std::vector<int32_t>{12092, 1533}));
}

// --- Metrics ---------------------------------------------------------------------------------------------

TEST(EvalMetrics, AccAndAccNormByHand) {
  // ll = −10 and −12 for a 2- and an 8-character choice: acc takes the first, acc_norm (−5 vs −1.5) the second.
  EXPECT_EQ(argmax_choice({-10.0, -12.0}), 0);
  EXPECT_EQ(argmax_choice_norm({-10.0, -12.0}, {"ab", "abcdefgh"}), 1);
  // Length in characters, not bytes: "éé" is 2 characters (4 bytes): −4/2 = −2 < −3.9/3 = −1.3.
  EXPECT_EQ(utf8_length("éé"), 2);
  EXPECT_EQ(argmax_choice_norm({-4.0, -3.9}, {"éé", "abc"}), 1);
  EXPECT_EQ(argmax_choice_norm({-4.0, -7.0}, {"éé", "abcd"}), 1);  // −2 vs −1.75
  EXPECT_EQ(argmax_choice_norm({-4.0, -9.0}, {"éé", "abcd"}), 0);  // −2 vs −2.25
  // Ties go to the first choice (numpy argmax).
  EXPECT_EQ(argmax_choice({-1.0, -1.0, -2.0}), 0);
  // Harness mean_stderr: sample std / sqrt(n): {1,0,1,1} → sqrt(0.25 / 4) = 0.25.
  EXPECT_NEAR(mean_stderr({1, 0, 1, 1}), 0.25, 1e-12);
  EXPECT_LT(mean_stderr({1}), 0);
}

TEST(EvalMetrics, TriviaqaNormalisation) {
  EXPECT_TRUE(triviaqa_match(" Onion", {"Onion skins", "Onion"}));
  EXPECT_TRUE(triviaqa_match("  u.s.a", {"USA"}));
  EXPECT_FALSE(triviaqa_match(" the onion", {"Onion"}));  // the harness does not drop articles
  EXPECT_FALSE(triviaqa_match(" Onions are", {"Onion"}));
  EXPECT_EQ(normalize_triviaqa("Dr. No's \"Bond\"!"), "dr nos bond");
}

TEST(EvalMetrics, HellaswagPreprocess) {
  EXPECT_EQ(hellaswag_preprocess(" How to cook [title] Boil water. [step] Add  salt."), "How to cook. Boil water. Add salt.");
  EXPECT_EQ(hellaswag_preprocess("already clean text"), "already clean text");
}

// --- Scorers against the PyTorch reference --------------------------------------------------------------

TEST(EvalScorer, ModelScorerMatchesPyTorchReference) {
  const ModelConfig cfg = small_config(64, 24);
  Model model(cfg);
  model.init(7);
  const std::string dir = test::scratch_dir("eval_ckpt");
  save_checkpoint(dir, model);
  Rng rng(3);
  auto reqs = random_requests(rng, 64, 12, 30, 4);  // some rows longer than the 24-token window
  ModelScorer batched(model, 64), single(model, 1);
  const auto a = batched.score(reqs), b = single.score(reqs);
  test::OracleTensor ctx{{int64_t(reqs.size()), 64}, {}}, cont{{int64_t(reqs.size()), 8}, {}};
  ctx.data.assign(size_t(reqs.size() * 64), -1.0), cont.data.assign(size_t(reqs.size() * 8), -1.0);
  for (size_t i = 0; i < reqs.size(); ++i) {
    for (size_t k = 0; k < reqs[i].context.size(); ++k) ctx.data[i * 64 + k] = reqs[i].context[k];
    for (size_t k = 0; k < reqs[i].continuation.size(); ++k) cont.data[i * 8 + k] = reqs[i].continuation[k];
  }
  auto ref = test::torch_oracle("eval", {{"context", ctx}, {"continuation", cont}},
                                {{"checkpoint", dir}, {"max_len", 24}});
  ASSERT_EQ(ref["logprob"].data.size(), reqs.size());
  int greedy_seen = 0;
  for (size_t i = 0; i < reqs.size(); ++i) {
    const double want = ref["logprob"].data[i];
    EXPECT_NEAR(a[i].logprob, want, 1e-4 * std::max(1.0, std::abs(want))) << "request " << i;
    EXPECT_NEAR(b[i].logprob, a[i].logprob, 1e-4 * std::max(1.0, std::abs(want))) << "request " << i;
    EXPECT_EQ(a[i].tokens, int64_t(reqs[i].continuation.size()));
    if (reqs[i].need_greedy) {
      EXPECT_EQ(a[i].is_greedy, ref["greedy"].data[i] > 0.5) << "request " << i;
      greedy_seen += a[i].is_greedy;
    }
  }
  // A request whose continuation is the model's own greedy choice must come out greedy.
  LoglikRequest g;
  g.context = {1, 2, 3};
  std::vector<int32_t> ids = g.context;
  single.greedy_extend(ids, 3, {});
  g.continuation.assign(ids.begin() + 3, ids.end());
  g.need_greedy = true;
  EXPECT_TRUE(batched.score({g})[0].is_greedy);
  std::filesystem::remove_all(dir);
}

TEST(EvalScorer, EngineScorerEqualsModelScorer) {
  const ModelConfig cfg = small_config(64, 48);
  Model model(cfg);
  model.init(11);
  Rng rng(5);
  auto reqs = random_requests(rng, 64, 24, 30, 5);
  ModelScorer ms(model, 256);
  auto es = make_engine_scorer(model);
  ASSERT_TRUE(es);
  const auto a = ms.score(reqs), b = es->score(reqs);
  for (size_t i = 0; i < reqs.size(); ++i) {
    EXPECT_NEAR(a[i].logprob, b[i].logprob, 2e-4 * std::max(1.0, std::abs(a[i].logprob))) << "request " << i;
    EXPECT_EQ(a[i].is_greedy, b[i].is_greedy) << "request " << i;
  }
  // Generation: the same greedy tokens.
  std::vector<int32_t> x = {5, 6, 7, 8}, y = x;
  ms.greedy_extend(x, 6, {});
  es->greedy_extend(y, 6, {});
  EXPECT_EQ(x, y);
}

TEST(EvalScorer, RollingPerplexityEqualsOneForwardPass) {
  // A document shorter than the window: the windows' sum is log p of every token after <eot>.
  const ModelConfig cfg = small_config(64, 32);
  Model model(cfg);
  model.init(13);
  std::vector<int32_t> doc;
  Rng rng(9);
  for (int i = 0; i < 70; ++i) doc.push_back(int32_t(1 + rng.uniform() * 63));
  ModelScorer sc(model, 512);
  for (int64_t ctx_len : {1, 9}) {
    double sum = 0;
    for (auto& r : sc.score(rolling_windows(doc, 0, 32, ctx_len))) sum += r.logprob;
    // Direct: every window by hand with Model::forward on its full input.
    double direct = 0;
    for (auto& w : rolling_windows(doc, 0, 32, ctx_len)) {
      std::vector<int32_t> row(w.context), tgt;
      row.insert(row.end(), w.continuation.begin(), w.continuation.end());
      tgt.assign(row.begin() + 1, row.end());
      row.pop_back();
      const size_t skip = w.context.size() - 1;
      for (size_t k = 0; k < skip; ++k) tgt[k] = -1;
      std::vector<float> lp(row.size());
      model.forward(row.data(), tgt.data(), 1, int64_t(row.size()), lp.data());
      for (size_t k = skip; k < lp.size(); ++k) direct += lp[k];
    }
    EXPECT_NEAR(sum, direct, 1e-3) << "context_len " << ctx_len;
  }
  // Short document: one window = a single forward of [eot] + doc.
  std::vector<int32_t> shortdoc(doc.begin(), doc.begin() + 20), row = {0};
  row.insert(row.end(), shortdoc.begin(), shortdoc.end() - 1);
  std::vector<float> lp(row.size());
  model.forward(row.data(), shortdoc.data(), 1, int64_t(row.size()), lp.data());
  double want = 0;
  for (float v : lp) want += v;
  EXPECT_NEAR(sc.score(rolling_windows(shortdoc, 0, 32, 1))[0].logprob, want, 1e-3);
}

// --- Loaders on the real files -----------------------------------------------------------------------------

TEST(EvalLoaders, RealFiles) {
  struct Want {
    const char* task;
    size_t n;
  };
  for (auto w : {Want{"arc_easy", 2376}, Want{"arc_challenge", 1172}, Want{"piqa", 1838}, Want{"hellaswag", 10042},
                 Want{"openbookqa", 500}, Want{"winogrande", 1267}, Want{"mmlu", 285}}) {
    auto t = load_mc_task(w.task, kEval);
    EXPECT_EQ(t.items.size(), w.n) << w.task;
    for (auto& it : t.items) {
      ASSERT_GE(it.choices.size(), 2u);
      ASSERT_LT(size_t(it.gold), it.choices.size());
    }
  }
  auto arc = load_mc_task("arc_easy", kEval);
  EXPECT_EQ(arc.items[0].contexts[0],
            "Question: Which statement best explains why photosynthesis is the foundation of most food webs?\nAnswer:");
  EXPECT_EQ(arc.items[0].continuations[0], " Sunlight is the source of energy for nearly all ecosystems.");
  auto piqa = load_mc_task("piqa", kEval);
  EXPECT_EQ(piqa.items[0].contexts[0], "Question: How do I ready a guinea pig cage for it's new occupants?\nAnswer:");
  auto hs = load_mc_task("hellaswag", kEval);
  EXPECT_EQ(hs.items[0].contexts[0], "Roof shingle removal: A man is sitting on a roof. he");
  EXPECT_EQ(hs.items[0].continuations[3], " starts pulling up roofing on a roof.");
  EXPECT_EQ(hs.items[0].gold, 3);
  auto obqa = load_mc_task("openbookqa", kEval);
  EXPECT_EQ(obqa.items[0].choices, (std::vector<std::string>{"Deep sea animals", "fish", "Long Sea Fish", "Far Sea Animals"}));
  EXPECT_EQ(obqa.items[0].gold, 0);
  EXPECT_EQ(obqa.items[1].gold, 3);
  auto wg = load_mc_task("winogrande", kEval);
  EXPECT_FALSE(wg.has_acc_norm);
  EXPECT_EQ(wg.items[0].contexts[1], "Sarah was a much better surgeon than Maria so Maria");
  EXPECT_EQ(wg.items[0].continuations[0], " always got the easier cases.");
  EXPECT_EQ(wg.items[0].continuations[1], " always got the easier cases.");
  EXPECT_EQ(wg.items[0].gold, 1);
  auto mmlu = load_mc_task("mmlu", kEval);
  EXPECT_EQ(mmlu.items[0].contexts[0],
            "The following are multiple choice questions (with answers) about abstract algebra.\n\n"
            "Find all c in Z_3 such that Z_3[x]/(x^2 + c) is a field.\nA. 0\nB. 1\nC. 2\nD. 3\nAnswer:");
  EXPECT_EQ(mmlu.items[0].continuations, (std::vector<std::string>{" A", " B", " C", " D"}));
  EXPECT_EQ(mmlu.items[0].gold, 1);
  // Few-shot: the subject's first dev items, never the item itself.
  auto mmlu2 = load_mc_task("mmlu", kEval, 2);
  const std::string& p1 = mmlu2.items[1].contexts[0];
  EXPECT_NE(p1.find("Find all c in Z_3"), std::string::npos);
  EXPECT_NE(p1.find("Answer: B\n\n"), std::string::npos);
  EXPECT_EQ(p1.find("Statement 1 | If aH"), p1.rfind("Statement 1 | If aH"));  // item 1 appears once
  EXPECT_THROW(load_mc_task("arc_easy", kEval, 1), Error);
  auto lam = load_lambada(kEval + "/lambada/lambada_openai_test.jsonl");
  EXPECT_EQ(lam.size(), 5153u);
  EXPECT_EQ(lam[0].target, " signs");
  EXPECT_EQ(lam[0].context.substr(lam[0].context.size() - 18), "I don't care about");
  auto tq = load_triviaqa(kEval + "/triviaqa/triviaqa_sm_sub.jsonl");
  EXPECT_EQ(tq.size(), 3000u);
  EXPECT_EQ(tq[0].context, "Question: Brunswick, Lancastrian and Pearl Pickler are types of which vegetable?\nAnswer:");
  auto wiki = load_documents(kData + "/corpora/wikitext-2/test.txt");
  EXPECT_GT(wiki.size(), 40u);
  EXPECT_EQ(wiki[0].rfind(" = Robert <unk> = \n", 0), 0u);
  EXPECT_EQ(wiki[1].rfind(" = ", 0), 0u);
}

TEST(EvalLoaders, MalformedRecordsNameFileAndLine) {
  const std::string dir = test::scratch_dir("eval_bad");
  std::filesystem::create_directories(dir + "/arc");
  std::filesystem::create_directories(dir + "/winogrande");
  std::filesystem::create_directories(dir + "/hellaswag");
  auto write = [](const std::string& p, const std::string& s) { std::ofstream(p) << s; };
  auto expect_error = [](auto&& f, const std::string& needle) {
    try {
      f();
      ADD_FAILURE() << "no error, expected " << needle;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  write(dir + "/arc/arc_easy_test.jsonl",
        "{\"query\": \"Question: q\", \"choices\": [\"a\", \"b\"], \"gold\": 1}\n{\"query\": \"Question: q\", \"choices\": [\"a\"], \"gold\": 3}\n");
  expect_error([&] { load_mc_task("arc_easy", dir); }, "arc_easy_test.jsonl:2:");
  write(dir + "/arc/arc_easy_test.jsonl", "{\"query\": \"Question: q\", \"choices\": [\"a\", \"b\"], \"gold\": 1}\n{not json\n");
  expect_error([&] { load_mc_task("arc_easy", dir); }, "arc_easy_test.jsonl:2: not valid JSON");
  write(dir + "/winogrande/winogrande_dev.jsonl", "{\"context_options\": [\"a\"], \"continuation\": \"x\", \"gold\": 0}\n");
  expect_error([&] { load_mc_task("winogrande", dir); }, "winogrande_dev.jsonl:1:");
  write(dir + "/hellaswag/hellaswag_val_full.txt", "ctx\n7\na\nb\nc\nd\n");
  expect_error([&] { load_mc_task("hellaswag", dir); }, "hellaswag_val_full.txt:2:");
  expect_error([&] { load_mc_task("nope", dir); }, "unknown");
  std::filesystem::remove_all(dir);
}

// --- Every task on a few items ---------------------------------------------------------------------------

TEST(EvalTasks, FewItemRunOfEveryTask) {
  // NeoX vocabulary, a very small network: a few items of each task must run and give sane numbers.
  ModelConfig cfg = small_config(50304, 256);
  cfg.initializer_range = 0.02;
  Model model(cfg);
  model.init(1);
  auto engine = make_engine_scorer(model);
  ModelScorer ms(model);
  EvalOptions opt;
  opt.data_dir = kData;
  opt.limit = 2;
  opt.progress = false;
  opt.max_gen_toks = 4;
  opt.needle_lengths = {96, 300};  // 300 is beyond the model's 256 positions
  opt.needle_depths = 3;
  opt.needle_svg = test::scratch_dir("eval_svg") + "/needle.svg";
  std::vector<TaskResult> results;
  for (const auto& name : task_names()) {
    EvalOptions o = opt;
    if (name == "mmlu") o.num_fewshot = 2;
    if (name == "wikitext") o.ppl_context = 128, o.limit = 1;
    if (name == "ptb") o.ppl_context = 128, o.limit = 20;  // lines
    if (name == "ptb") o.ppl_stride = 64;
    TaskResult r = run_task(name, model, neox(), name == "piqa" ? static_cast<LogLikelihoodScorer&>(ms) : *engine, o);
    ASSERT_FALSE(r.metrics.empty()) << name;
    for (auto& m : r.metrics) {
      EXPECT_TRUE(std::isfinite(m.value)) << name << " " << m.name;
      if (m.name.rfind("acc", 0) == 0 || m.name == "exact_match" || m.name == "answer_prob") {
        EXPECT_GE(m.value, 0.0) << name;
        EXPECT_LE(m.value, 1.0) << name;
      }
      if (m.name.find("perplexity") != std::string::npos) {
        EXPECT_GT(m.value, 1.0) << name;
      }
    }
    const int64_t want_n = (name == "needle" || name == "passkey") ? 6 : (name == "wikitext" || name == "ptb") ? 1 : 2;
    EXPECT_EQ(r.n, want_n) << name;
    std::printf("%-16s %.2fs\n", name.c_str(), r.seconds);
    results.push_back(std::move(r));
  }
  // A random model is near-uniform: token perplexity close to the vocabulary size, bits per byte large.
  for (auto& r : results)
    if (r.task == "wikitext") {
      EXPECT_GT(r.metrics[3].value, 5000.0);
      EXPECT_LT(r.metrics[3].value, 200000.0);
    }
  const auto j = results_json(results, {{"model", "test"}});
  EXPECT_TRUE(j["results"].contains("hellaswag"));
  EXPECT_TRUE(j["results"]["hellaswag"]["metrics"].contains("acc_norm"));
  EXPECT_EQ(j["results"]["needle"]["grid"].size(), 3u);
  const std::string table = markdown_table(results);
  EXPECT_NE(table.find("| winogrande | acc |"), std::string::npos);
  EXPECT_TRUE(std::filesystem::exists(opt.needle_svg));
  const std::string svg = read_text_file(opt.needle_svg);
  EXPECT_EQ(svg.rfind("<svg", 0), 0u);
  EXPECT_NE(svg.find("length 300 depth 100%"), std::string::npos);
  EXPECT_THROW(run_task("no_such_task", model, neox(), ms, opt), Error);
  std::filesystem::remove_all(std::filesystem::path(opt.needle_svg).parent_path());
}
