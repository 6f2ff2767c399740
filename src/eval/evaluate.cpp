// Task runners: build the harness's requests, score them, aggregate metrics the harness's way.
#include "eval/evaluate.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fmt/format.h>
#include <fstream>
#include <limits>
#include <map>

#include "core/error.h"
#include "core/rng.h"
#include "eval/tasks.h"
#include "tokenizer/unicode.h"

namespace txs::eval {

namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// "\r<task>  done/total  rate/s" on stderr, at most five times a second.
class ProgressLine {
 public:
  ProgressLine(std::string task, bool on) : task_(std::move(task)), on_(on), start_(Clock::now()), last_(start_) {}
  void operator()(size_t done, size_t total) {
    if (!on_) return;
    if (done < total && std::chrono::duration<double>(Clock::now() - last_).count() < 0.2) return;
    last_ = Clock::now();
    const double s = seconds_since(start_);
    std::fprintf(stderr, "\r%-16s %zu/%zu requests  %.1f/s  %.0fs ", task_.c_str(), done, total,
                 s > 0 ? double(done) / s : 0.0, s);
    std::fflush(stderr);
  }
  void finish() {
    if (on_) std::fprintf(stderr, "\n");
  }

 private:
  std::string task_;
  bool on_;
  Clock::time_point start_, last_;
};

double mean(const std::vector<double>& x) {
  double s = 0;
  for (double v : x) s += v;
  return x.empty() ? 0.0 : s / double(x.size());
}

// Invalid UTF-8 (an unfinished sequence where the budget cut the generation) replaced by U+FFFD: one per
// invalid lead byte, its continuation bytes included.
std::string utf8_lossy(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size();) {
    const size_t ok = unicode::valid_utf8_prefix(std::string_view(s).substr(i));
    out.append(s, i, ok);
    i += ok;
    if (i >= s.size()) break;
    out += "\xEF\xBF\xBD";
    size_t j = i + 1;
    while (j < s.size() && j < i + 4 && (uint8_t(s[j]) & 0xC0) == 0x80) ++j;
    i = j;
  }
  return out;
}

template <class T>
void apply_limit(std::vector<T>& v, int64_t limit) {
  if (limit > 0 && int64_t(v.size()) > limit) v.resize(size_t(limit));
}

std::vector<LoglikResult> score_all(LogLikelihoodScorer& scorer, const std::vector<LoglikRequest>& reqs,
                                    ProgressLine& pl) {
  auto res = scorer.score(reqs, [&](size_t d, size_t t) { pl(d, t); });
  pl.finish();
  return res;
}

TaskResult run_mc(const std::string& name, const Tokenizer& tok, LogLikelihoodScorer& scorer, const EvalOptions& opt) {
  // Only mmlu has a split to draw exemplars from; the others stay zero-shot (and say so in their settings).
  McTask task = load_mc_task(name, opt.data_dir + "/eval", name == "mmlu" ? opt.num_fewshot : 0, opt.limit);
  std::vector<LoglikRequest> reqs;
  for (auto& it : task.items)
    for (size_t k = 0; k < it.choices.size(); ++k) reqs.push_back(encode_pair(tok, it.contexts[k], it.continuations[k]));
  ProgressLine pl(name, opt.progress);
  const auto res = score_all(scorer, reqs, pl);
  std::vector<double> acc, acc_norm;
  size_t r = 0;
  for (auto& it : task.items) {
    std::vector<double> ll;
    for (size_t k = 0; k < it.choices.size(); ++k) ll.push_back(res[r++].logprob);
    acc.push_back(argmax_choice(ll) == it.gold);
    acc_norm.push_back(argmax_choice_norm(ll, it.choices) == it.gold);
  }
  TaskResult out;
  out.metrics.push_back({"acc", mean(acc), mean_stderr(acc)});
  if (task.has_acc_norm) out.metrics.push_back({"acc_norm", mean(acc_norm), mean_stderr(acc_norm)});
  out.n = int64_t(task.items.size());
  out.settings = {{"file", task.file}, {"num_fewshot", name == "mmlu" ? opt.num_fewshot : 0},
                  {"requests", reqs.size()}};
  if (name != "mmlu" && opt.num_fewshot > 0) out.settings["note"] = "zero-shot: the data set has no split for exemplars";
  return out;
}

TaskResult run_lambada(const Tokenizer& tok, LogLikelihoodScorer& scorer, const EvalOptions& opt) {
  const std::string file = opt.data_dir + "/eval/lambada/lambada_openai_test.jsonl";
  auto items = load_lambada(file);
  apply_limit(items, opt.limit);
  std::vector<LoglikRequest> reqs;
  for (auto& it : items) {
    reqs.push_back(encode_pair(tok, it.context, it.target));
    reqs.back().need_greedy = true;
  }
  ProgressLine pl("lambada_openai", opt.progress);
  const auto res = score_all(scorer, reqs, pl);
  std::vector<double> ll, acc;
  for (auto& r : res) ll.push_back(r.logprob), acc.push_back(r.is_greedy);
  TaskResult out;
  const double ppl = std::exp(-mean(ll));
  // The harness bootstraps the perplexity's stderr; this is the delta-method equivalent.
  out.metrics.push_back({"perplexity", ppl, ppl * mean_stderr(ll)});
  out.metrics.push_back({"acc", mean(acc), mean_stderr(acc)});
  out.n = int64_t(items.size());
  out.settings = {{"file", file}};
  return out;
}

TaskResult run_triviaqa(const Tokenizer& tok, LogLikelihoodScorer& scorer, const EvalOptions& opt) {
  const std::string file = opt.data_dir + "/eval/triviaqa/triviaqa_sm_sub.jsonl";
  auto items = load_triviaqa(file);
  apply_limit(items, opt.limit);
  // The harness's `until` (lm_eval/tasks/triviaqa/default.yaml); the end-of-text token is added as a stop
  // (handle_stop_sequences), and special tokens are left out of the decoded text (skip_special_tokens).
  static const std::vector<std::string> stops = {"\n", ".", ","};
  // The harness keeps max_length − max_gen_toks context tokens (left truncation) and refuses a budget that
  // leaves none.
  if (opt.max_gen_toks < 1) fail("triviaqa: --max-gen-toks must be positive, got {}", opt.max_gen_toks);
  const int64_t keep = scorer.max_length() - opt.max_gen_toks;
  if (keep < 1)
    fail("triviaqa: --max-gen-toks {} must be less than the model's {}-token window", opt.max_gen_toks,
         scorer.max_length());
  ProgressLine pl("triviaqa", opt.progress);
  std::vector<double> em;
  for (auto& it : items) {
    std::vector<int32_t> ids = tok.encode(it.context);
    if (int64_t(ids.size()) > keep) ids.erase(ids.begin(), ids.end() - keep);
    std::string text;
    Tokenizer::StreamDecoder dec(tok);
    scorer.greedy_extend(ids, opt.max_gen_toks, [&](int32_t id) {
      if (id == tok.eos_id()) return false;
      text += dec.push(id);
      for (auto& s : stops)
        if (text.find(s) != std::string::npos) return false;
      return true;
    });
    text += dec.flush();
    for (auto& s : stops) {
      const size_t p = text.find(s);
      if (p != std::string::npos) text.resize(p);
    }
    text = utf8_lossy(text);  // as Hugging Face's decode: a broken UTF-8 sequence becomes U+FFFD
    em.push_back(triviaqa_match(text, it.aliases));
    pl(em.size(), items.size());
  }
  pl.finish();
  TaskResult out;
  out.metrics.push_back({"exact_match", mean(em), mean_stderr(em)});
  out.n = int64_t(items.size());
  out.settings = {{"file", file}, {"until", stops}, {"max_gen_toks", opt.max_gen_toks}, {"decoding", "greedy"}};
  return out;
}

TaskResult run_perplexity(const std::string& name, const std::string& file, const Tokenizer& tok,
                          LogLikelihoodScorer& scorer, const EvalOptions& opt) {
  auto docs = load_documents(file);
  const bool one_doc = docs.size() == 1 && file.find("wikitext") == std::string::npos;
  // The harness's wikitext task scores wikitext_detokenizer(page) but counts words (re.split(r"\s+", page))
  // and UTF-8 bytes on the page as it is in the file.
  const bool harness_wikitext = name == "wikitext";
  if (one_doc && opt.limit > 0) {
    // A single-document corpus: --limit keeps its first N lines.
    size_t pos = 0;
    for (int64_t l = 0; l < opt.limit && pos != std::string::npos; ++l) {
      pos = docs[0].find('\n', pos);
      if (pos != std::string::npos) ++pos;
    }
    if (pos != std::string::npos) docs[0].resize(pos);
  } else {
    apply_limit(docs, opt.limit);
  }
  const int64_t ctx = opt.ppl_context > 0 ? opt.ppl_context : scorer.max_length();
  const int64_t stride = opt.ppl_stride > 0 ? opt.ppl_stride : ctx;
  if (stride > ctx) fail("perplexity stride {} is larger than the window {}", stride, ctx);
  if (tok.eos_id() < 0) fail("perplexity needs an end-of-text token to start each document");
  std::vector<LoglikRequest> reqs;
  std::vector<size_t> doc_of;
  double words = 0, bytes = 0, tokens = 0;
  for (size_t d = 0; d < docs.size(); ++d) {
    const auto ids = tok.encode(harness_wikitext ? wikitext_detokenize(docs[d]) : docs[d]);
    for (auto& w : rolling_windows(ids, tok.eos_id(), ctx, ctx - stride + 1)) reqs.push_back(std::move(w)), doc_of.push_back(d);
    tokens += double(ids.size());
    bytes += double(docs[d].size());
    if (harness_wikitext) {
      words += double(python_split_count(docs[d]));
    } else {
      bool in_word = false;
      for (char c : docs[d]) {
        const bool space = c == ' ' || c == '\n' || c == '\t' || c == '\r' || c == '\f' || c == '\v';
        if (!space && !in_word) words += 1;
        in_word = !space;
      }
    }
  }
  ProgressLine pl(name, opt.progress);
  const auto res = score_all(scorer, reqs, pl);
  double ll = 0;
  for (auto& r : res) ll += r.logprob;
  TaskResult out;
  out.metrics.push_back({"word_perplexity", std::exp(-ll / words)});
  out.metrics.push_back({"byte_perplexity", std::exp(-ll / bytes)});
  out.metrics.push_back({"bits_per_byte", -ll / bytes / std::log(2.0)});
  out.metrics.push_back({"token_perplexity", std::exp(-ll / tokens)});
  out.n = int64_t(docs.size());
  if (one_doc && opt.limit > 0) out.settings["lines"] = opt.limit;
  out.settings.update({{"file", file}, {"window", ctx}, {"stride", stride}, {"tokens", tokens}, {"bytes", bytes},
                  {"words", words}, {"windows", reqs.size()}});
  if (harness_wikitext) out.settings["detokenizer"] = "wikitext_detokenizer (harness)";
  return out;
}

// --- Needle in a haystack and passkey ---------------------------------------------------------------------

struct NeedleSpec {
  std::vector<int32_t> hay, needle, question, answer;
  bool need_greedy = false;
};

std::vector<int64_t> needle_lengths(const Model& model, const EvalOptions& opt) {
  if (!opt.needle_lengths.empty()) return opt.needle_lengths;
  std::vector<int64_t> L;
  for (int64_t n = 1024; n <= 2 * model.config().max_position_embeddings; n *= 2) L.push_back(n);
  return L;
}

bool ends_sentence(const Tokenizer& tok, int32_t id) {
  const std::string& b = tok.token_bytes(id);
  return !b.empty() && (b.back() == '.' || b.back() == '\n');
}

// Grid of scores [depth][length]: the needle goes into the first (L − rest) haystack tokens at the sentence
// end at or before depth·budget, then the question; the answer's log-likelihood is the score.
TaskResult run_grid(const std::string& name, Model& model, const Tokenizer& tok, LogLikelihoodScorer& scorer,
                    const EvalOptions& opt, const std::function<NeedleSpec(size_t cell)>& make) {
  const auto lengths = needle_lengths(model, opt);
  const int nd = std::max(2, opt.needle_depths);
  std::vector<double> depths;
  for (int i = 0; i < nd; ++i) depths.push_back(100.0 * i / (nd - 1));
  std::vector<std::vector<double>> grid(depths.size(), std::vector<double>(lengths.size(), 0.0));
  std::vector<double> all;
  ProgressLine pl(name, opt.progress);
  size_t cell = 0;
  const size_t cells = depths.size() * lengths.size();
  for (size_t li = 0; li < lengths.size(); ++li) {
    const int64_t L = lengths[li];
    // Beyond the scorer's window, score with an unwindowed forward pass (no left truncation).
    std::unique_ptr<ModelScorer> wide;
    LogLikelihoodScorer* sc = &scorer;
    if (L > scorer.max_length()) wide = std::make_unique<ModelScorer>(model, 4096, L), sc = wide.get();
    for (size_t di = 0; di < depths.size(); ++di, ++cell) {
      const NeedleSpec s = make(cell);
      const int64_t budget = L - int64_t(s.needle.size() + s.question.size() + s.answer.size());
      if (budget < 1) fail("{}: context length {} leaves no room for the haystack", name, L);
      std::vector<int32_t> hay;
      while (int64_t(hay.size()) < budget) hay.insert(hay.end(), s.hay.begin(), s.hay.end());
      hay.resize(size_t(budget));
      int64_t at = int64_t(std::llround(depths[di] / 100.0 * double(budget)));
      if (at < budget)
        while (at > 0 && !ends_sentence(tok, hay[size_t(at - 1)])) --at;
      LoglikRequest r;
      r.context.assign(hay.begin(), hay.begin() + at);
      r.context.insert(r.context.end(), s.needle.begin(), s.needle.end());
      r.context.insert(r.context.end(), hay.begin() + at, hay.end());
      r.context.insert(r.context.end(), s.question.begin(), s.question.end());
      r.continuation = s.answer;
      r.need_greedy = s.need_greedy;
      double v = std::numeric_limits<double>::quiet_NaN();
      try {
        const auto res = sc->score({r});
        // Passkey: exact greedy retrieval (0/1). Needle: the answer's per-token probability (geometric mean).
        v = s.need_greedy ? double(res[0].is_greedy) : std::exp(res[0].logprob / double(res[0].tokens));
      } catch (const Error& e) {
        std::fprintf(stderr, "\n%s: length %ld depth %.0f%%: %s\n", name.c_str(), long(L), depths[di], e.what());
      }
      grid[di][li] = v;
      if (!std::isnan(v)) all.push_back(v);
      pl(cell + 1, cells);
    }
  }
  pl.finish();
  TaskResult out;
  out.metrics.push_back({name == "passkey" ? "acc" : "answer_prob", mean(all), mean_stderr(all)});
  out.n = int64_t(all.size());
  out.settings = {{"lengths", lengths}, {"depths_percent", depths}};
  out.extra = {{"grid", grid}};
  if (!opt.needle_svg.empty()) {
    std::string path = opt.needle_svg;
    if (name == "passkey") {
      const size_t dot = path.rfind('.');
      path = (dot == std::string::npos ? path : path.substr(0, dot)) + "_passkey.svg";
    }
    std::ofstream f(path);
    if (!f) fail("cannot write {}", path);
    f << heatmap_svg(name == "passkey" ? "Passkey retrieval (greedy exact match)"
                                       : "Needle in a haystack (answer token probability)",
                     lengths, depths, grid);
    out.settings["svg"] = path;
  }
  return out;
}

TaskResult run_needle(Model& model, const Tokenizer& tok, LogLikelihoodScorer& scorer, const EvalOptions& opt) {
  const std::string file = opt.data_dir + "/haystack/paul_graham_essays.txt";
  NeedleSpec s;
  s.hay = tok.encode(read_text_file(file));
  // The original test's needle and question; the answer is primed so a base model can complete it.
  s.needle = tok.encode("\nThe best thing to do in San Francisco is eat a sandwich and sit in Dolores Park on a sunny day.\n");
  s.question = tok.encode("\n\nQuestion: What is the best thing to do in San Francisco?\nAnswer: The best thing to do in San Francisco is");
  s.answer = tok.encode(" eat a sandwich and sit in Dolores Park on a sunny day.");
  auto out = run_grid("needle", model, tok, scorer, opt, [&](size_t) { return s; });
  out.settings["file"] = file;
  return out;
}

TaskResult run_passkey(Model& model, const Tokenizer& tok, LogLikelihoodScorer& scorer, const EvalOptions& opt) {
  NeedleSpec base;
  base.hay = tok.encode(" The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again.");
  base.question = tok.encode("\nWhat is the pass key? The pass key is");
  base.need_greedy = true;
  const auto intro = tok.encode(
      "There is an important info hidden inside a lot of irrelevant text. Find it and memorize it. "
      "I will quiz you about the important information there.\n");
  Rng rng(opt.seed);
  const auto lengths = needle_lengths(model, opt);
  auto out = run_grid("passkey", model, tok, scorer, opt, [&](size_t) {
    NeedleSpec s = base;
    const int key = 10000 + int(rng.uniform() * 89999.0);
    s.needle = tok.encode(fmt::format(" The pass key is {}. Remember it. {} is the pass key.", key, key));
    s.answer = tok.encode(fmt::format(" {}", key));
    // The intro leads the filler: put it in the haystack's first repetition.
    std::vector<int32_t> hay = intro;
    const int64_t longest = *std::max_element(lengths.begin(), lengths.end());
    for (int64_t i = 0; i <= longest / int64_t(base.hay.size()); ++i) hay.insert(hay.end(), base.hay.begin(), base.hay.end());
    s.hay = hay;
    return s;
  });
  out.settings["seed"] = opt.seed;
  return out;
}

}  // namespace

const std::vector<std::string>& task_names() {
  static const std::vector<std::string> names = {"arc_easy",  "arc_challenge",  "piqa",     "hellaswag", "openbookqa",
                                                 "winogrande", "mmlu", "lambada_openai", "triviaqa", "wikitext",
                                                 "ptb",        "needle", "passkey"};
  return names;
}

TaskResult run_task(const std::string& name, Model& model, const Tokenizer& tok, LogLikelihoodScorer& scorer,
                    const EvalOptions& opt) {
  if (tok.vocab_size() > model.config().vocab_size)
    fail("tokenizer {} has {} ids but the model only {}", tok.origin(), tok.vocab_size(), model.config().vocab_size);
  const auto start = Clock::now();
  TaskResult r;
  if (is_mc_task(name)) r = run_mc(name, tok, scorer, opt);
  else if (name == "lambada_openai") r = run_lambada(tok, scorer, opt);
  else if (name == "triviaqa") r = run_triviaqa(tok, scorer, opt);
  else if (name == "wikitext") r = run_perplexity(name, opt.data_dir + "/corpora/wikitext-2/test.txt", tok, scorer, opt);
  else if (name == "ptb") r = run_perplexity(name, opt.data_dir + "/corpora/ptb/ptb.test.txt", tok, scorer, opt);
  else if (name.rfind("ppl:", 0) == 0) r = run_perplexity(name, name.substr(4), tok, scorer, opt);
  else if (name == "needle") r = run_needle(model, tok, scorer, opt);
  else if (name == "passkey") r = run_passkey(model, tok, scorer, opt);
  else fail("unknown task \"{}\" (known: {}, ppl:<file>)", name, fmt::join(task_names(), " "));
  r.task = name;
  r.seconds = seconds_since(start);
  r.settings["scorer"] = scorer.name();
  if (opt.limit > 0) r.settings["limit"] = opt.limit;
  return r;
}

int argmax_choice(const std::vector<double>& ll) {
  if (ll.empty()) fail("no choices to pick from");
  return int(std::max_element(ll.begin(), ll.end()) - ll.begin());
}

int argmax_choice_norm(const std::vector<double>& ll, const std::vector<std::string>& choices) {
  if (ll.size() != choices.size() || ll.empty()) fail("acc_norm needs one length per choice");
  std::vector<double> norm(ll.size());
  for (size_t k = 0; k < ll.size(); ++k) norm[k] = ll[k] / double(std::max<int64_t>(1, utf8_length(choices[k])));
  return argmax_choice(norm);
}

double mean_stderr(const std::vector<double>& x) {
  if (x.size() < 2) return -1.0;
  const double mu = mean(x);
  double ss = 0;
  for (double v : x) ss += (v - mu) * (v - mu);
  return std::sqrt(ss / double(x.size() - 1) / double(x.size()));
}

std::string markdown_table(const std::vector<TaskResult>& results) {
  std::string s = "| Task | Metric | Value | ± Stderr | n | items/s |\n|---|---|---:|---:|---:|---:|\n";
  for (auto& r : results)
    for (size_t m = 0; m < r.metrics.size(); ++m) {
      const auto& x = r.metrics[m];
      s += fmt::format("| {} | {} | {:.4f} | {} | {} | {} |\n", m == 0 ? r.task : "", x.name, x.value,
                       x.stderr_ >= 0 ? fmt::format("{:.4f}", x.stderr_) : "—", m == 0 ? std::to_string(r.n) : "",
                       m == 0 ? fmt::format("{:.2f}", r.seconds > 0 ? double(r.n) / r.seconds : 0.0) : "");
    }
  return s;
}

nlohmann::json results_json(const std::vector<TaskResult>& results, const nlohmann::json& run_settings) {
  nlohmann::json j = {{"settings", run_settings}, {"results", nlohmann::json::object()}};
  for (auto& r : results) {
    nlohmann::json t = {{"n", r.n}, {"seconds", r.seconds},
                        {"items_per_second", r.seconds > 0 ? double(r.n) / r.seconds : 0.0},
                        {"settings", r.settings}, {"metrics", nlohmann::json::object()}};
    for (auto& m : r.metrics)
      t["metrics"][m.name] = {{"value", m.value}, {"stderr", m.stderr_ >= 0 ? nlohmann::json(m.stderr_) : nlohmann::json()}};
    for (auto& [k, v] : r.extra.items()) t[k] = v;
    j["results"][r.task] = t;
  }
  return j;
}

std::string heatmap_svg(const std::string& title, const std::vector<int64_t>& lengths, const std::vector<double>& depths,
                        const std::vector<std::vector<double>>& score) {
  const int cw = 56, ch = 26, left = 70, top = 40, bottom = 50, right = 90;
  const int W = left + cw * int(lengths.size()) + right, H = top + ch * int(depths.size()) + bottom;
  std::string s = fmt::format(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{}\" font-family=\"sans-serif\" "
      "font-size=\"11\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
      "<text x=\"{}\" y=\"22\" font-size=\"14\" text-anchor=\"middle\">{}</text>\n",
      W, H, W / 2, title);
  // Red (0) → yellow → green (1), the original test's colour scale; grey for a cell that failed.
  auto colour = [](double v) {
    if (std::isnan(v)) return std::string("#bbbbbb");
    v = std::clamp(v, 0.0, 1.0);
    const int r = v < 0.5 ? 230 : int(230 - (v - 0.5) * 2 * 190), g = v < 0.5 ? int(60 + v * 2 * 160) : 220;
    return fmt::format("#{:02x}{:02x}50", r, g);
  };
  for (size_t d = 0; d < depths.size(); ++d) {
    const int y = top + ch * int(d);
    s += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{:.0f}%</text>\n", left - 6, y + ch / 2 + 4, depths[d]);
    for (size_t l = 0; l < lengths.size(); ++l) {
      const double v = score[d][l];
      s += fmt::format("<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"{}\" stroke=\"white\"><title>"
                       "length {} depth {:.0f}%: {:.3f}</title></rect>\n",
                       left + cw * int(l), y, cw, ch, colour(v), lengths[l], depths[d], v);
    }
  }
  const int yb = top + ch * int(depths.size());
  for (size_t l = 0; l < lengths.size(); ++l)
    s += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n", left + cw * int(l) + cw / 2, yb + 16,
                     lengths[l]);
  s += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">context length (tokens)</text>\n",
                   left + cw * int(lengths.size()) / 2, yb + 36);
  s += fmt::format("<text x=\"16\" y=\"{}\" transform=\"rotate(-90 16 {})\" text-anchor=\"middle\">needle depth</text>\n",
                   top + ch * int(depths.size()) / 2, top + ch * int(depths.size()) / 2);
  // Colour legend.
  const int lx = left + cw * int(lengths.size()) + 24;
  for (int i = 0; i <= 10; ++i)
    s += fmt::format("<rect x=\"{}\" y=\"{}\" width=\"16\" height=\"{}\" fill=\"{}\"/>\n", lx,
                     top + (10 - i) * ch * int(depths.size()) / 11, ch * int(depths.size()) / 11 + 1, colour(i / 10.0));
  s += fmt::format("<text x=\"{}\" y=\"{}\">1</text><text x=\"{}\" y=\"{}\">0</text>\n", lx + 20, top + 10, lx + 20, yb);
  s += "</svg>\n";
  return s;
}

}  // namespace txs::eval
