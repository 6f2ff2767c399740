// Evaluation-set loaders. Prompts follow the harness's task YAMLs: query + target_delimiter " " + choice.
#include "eval/tasks.h"

#include <algorithm>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>

#include "core/error.h"
#include "core/json.h"
#include "tokenizer/unicode.h"

namespace txs::eval {

std::string read_text_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) fail("cannot open {}", path);
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

namespace {

std::vector<std::string> read_lines(const std::string& path) {
  const std::string text = read_text_file(path);
  std::vector<std::string> lines;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t nl = text.find('\n', pos);
    if (nl == std::string::npos) nl = text.size();
    std::string line = text.substr(pos, nl - pos);
    if (!line.empty() && line.back() == '\r') line.pop_back();
    lines.push_back(std::move(line));
    pos = nl + 1;
  }
  return lines;
}

// Each non-empty line of a JSONL file with its 1-based line number.
template <class F>
void for_each_jsonl(const std::string& path, F&& f) {
  const auto lines = read_lines(path);
  for (size_t i = 0; i < lines.size(); ++i) {
    if (lines[i].find_first_not_of(" \t") == std::string::npos) continue;
    const nlohmann::json j = try_parse_json_bounded(lines[i]);
    if (j.is_discarded()) fail("{}:{}: not valid JSON (or nested deeper than {} levels)", path, i + 1, kMaxJsonDepth);
    try {
      f(j, i + 1);
    } catch (const nlohmann::json::exception& e) {
      fail("{}:{}: malformed record ({})", path, i + 1, e.what());
    }
  }
}

std::string str_field(const nlohmann::json& j, const char* key, const std::string& path, size_t line) {
  if (!j.is_object() || !j.contains(key) || !j[key].is_string()) fail("{}:{}: missing string field \"{}\"", path, line, key);
  return j[key].get<std::string>();
}

std::vector<std::string> str_list(const nlohmann::json& j, const char* key, const std::string& path, size_t line) {
  if (!j.is_object() || !j.contains(key) || !j[key].is_array() || j[key].empty())
    fail("{}:{}: missing non-empty list field \"{}\"", path, line, key);
  std::vector<std::string> out;
  for (auto& v : j[key]) {
    if (!v.is_string()) fail("{}:{}: field \"{}\" must hold strings", path, line, key);
    out.push_back(v.get<std::string>());
  }
  return out;
}

int int_field(const nlohmann::json& j, const char* key, int lo, int hi, const std::string& path, size_t line) {
  if (!j.is_object() || !j.contains(key) || !j[key].is_number_integer())
    fail("{}:{}: missing integer field \"{}\"", path, line, key);
  // The whole int64 value is checked (get<int>() would wrap 2^32 + 1 to 1).
  const int64_t v = j[key].is_number_unsigned() && j[key].get<uint64_t>() > uint64_t(INT64_MAX) ? INT64_MAX
                                                                                              : j[key].get<int64_t>();
  if (v < lo || v > hi) fail("{}:{}: \"{}\" = {} is outside [{}, {}]", path, line, key, json_excerpt(j[key]), lo, hi);
  return int(v);
}

McItem same_context(const std::string& query, const std::vector<std::string>& choices, int gold) {
  McItem it;
  for (auto& c : choices) {
    it.contexts.push_back(query);
    it.continuations.push_back(" " + c);
    it.choices.push_back(c);
  }
  it.gold = gold;
  return it;
}

// Python's str.strip(): the harness's templates and preprocessors strip Unicode whitespace.
std::string strip(const std::string& s) { return std::string(unicode::python_strip(s)); }

void load_arc(McTask& t) {
  for_each_jsonl(t.file, [&](const nlohmann::json& j, size_t line) {
    const auto choices = str_list(j, "choices", t.file, line);
    const int gold = int_field(j, "gold", 0, int(choices.size()) - 1, t.file, line);
    // The file's query is "Question: <q>"; the harness prompt adds "\nAnswer:".
    t.items.push_back(same_context(str_field(j, "query", t.file, line) + "\nAnswer:", choices, gold));
  });
}

void load_piqa(McTask& t) {
  const std::string labels_path = t.file.substr(0, t.file.rfind('/')) + "/valid-labels.lst";
  const auto labels = read_lines(labels_path);
  size_t n = 0;
  for_each_jsonl(t.file, [&](const nlohmann::json& j, size_t line) {
    if (n >= labels.size()) fail("{}:{}: no label for this record in {}", t.file, line, labels_path);
    const std::string& l = labels[n++];
    if (l != "0" && l != "1") fail("{}:{}: label must be 0 or 1, got \"{}\"", labels_path, n, l);
    const std::string goal = str_field(j, "goal", t.file, line);
    t.items.push_back(same_context("Question: " + goal + "\nAnswer:",
                                   {str_field(j, "sol1", t.file, line), str_field(j, "sol2", t.file, line)}, l == "1"));
  });
}

void load_hellaswag(McTask& t) {
  const auto lines = read_lines(t.file);
  size_t n = lines.size();
  while (n > 0 && lines[n - 1].empty()) --n;
  if (n % 6 != 0) fail("{}: {} lines is not a whole number of 6-line items", t.file, n);
  for (size_t i = 0; i < n; i += 6) {
    const std::string& g = lines[i + 1];
    if (g.size() != 1 || g[0] < '0' || g[0] > '3') fail("{}:{}: gold label must be 0..3, got \"{}\"", t.file, i + 2, g);
    std::vector<std::string> endings;
    for (size_t k = 0; k < 4; ++k) {
      if (lines[i + 2 + k].empty()) fail("{}:{}: empty ending", t.file, i + 3 + k);
      endings.push_back(hellaswag_preprocess(lines[i + 2 + k]));
    }
    if (lines[i].empty()) fail("{}:{}: empty context", t.file, i + 1);
    t.items.push_back(same_context(hellaswag_preprocess(lines[i]), endings, g[0] - '0'));
  }
}

void load_openbookqa(McTask& t) {
  const auto lines = read_lines(t.file);
  if (lines.empty() || lines[0].rfind("ID\t", 0) != 0) fail("{}:1: expected the header row starting with ID", t.file);
  static const std::regex marker(R"(\s*\(([A-D])\)\s*)");
  for (size_t i = 1; i < lines.size(); ++i) {
    if (lines[i].empty()) continue;
    std::vector<std::string> cols;
    std::stringstream ss(lines[i]);
    for (std::string c; std::getline(ss, c, '\t');) cols.push_back(c);
    if (cols.size() != 5) fail("{}:{}: expected 5 tab-separated columns, got {}", t.file, i + 1, cols.size());
    // "(A) text (B) text (C) text (D) text": split on the markers, which must come in order A, B, C, D.
    std::vector<std::string> choices;
    std::string expect = "A";
    auto it = std::sregex_iterator(cols[2].begin(), cols[2].end(), marker);
    std::vector<std::pair<size_t, size_t>> spans;  // (text start, marker start) per choice
    size_t prev_end = 0;
    bool first = true;
    for (; it != std::sregex_iterator(); ++it) {
      if ((*it)[1].str() != expect) fail("{}:{}: choice markers out of order in \"{}\"", t.file, i + 1, cols[2]);
      if (first && it->position() != 0) fail("{}:{}: choices must start with (A)", t.file, i + 1);
      if (!first) choices.push_back(cols[2].substr(prev_end, size_t(it->position()) - prev_end));
      prev_end = size_t(it->position() + it->length());
      first = false;
      expect[0]++;
    }
    if (expect != "E") fail("{}:{}: expected choices (A) to (D) in \"{}\"", t.file, i + 1, cols[2]);
    choices.push_back(strip(cols[2].substr(prev_end)));
    const std::string key = strip(cols[4]);
    if (key.size() != 1 || key[0] < 'A' || key[0] > 'D') fail("{}:{}: answer key must be A..D, got \"{}\"", t.file, i + 1, key);
    t.items.push_back(same_context(cols[1], choices, key[0] - 'A'));
  }
}

void load_winogrande(McTask& t) {
  t.has_acc_norm = false;  // the harness reports acc only
  for_each_jsonl(t.file, [&](const nlohmann::json& j, size_t line) {
    const auto options = str_list(j, "context_options", t.file, line);
    if (options.size() != 2) fail("{}:{}: expected 2 context_options, got {}", t.file, line, options.size());
    const std::string cont = strip(str_field(j, "continuation", t.file, line));
    McItem it;
    // Partial scoring: the option fills the blank in the context; only the text after the blank is scored.
    for (auto& o : options) {
      it.contexts.push_back(o);
      it.continuations.push_back(" " + cont);
      it.choices.push_back(o);
    }
    it.gold = int_field(j, "gold", 0, 1, t.file, line);
    t.items.push_back(std::move(it));
  });
}

std::string mmlu_question(const nlohmann::json& j, const std::vector<std::string>& c, const std::string& path,
                          size_t line) {
  return strip(str_field(j, "question", path, line)) + "\nA. " + c[0] + "\nB. " + c[1] + "\nC. " + c[2] + "\nD. " +
         c[3] + "\nAnswer:";
}

void load_mmlu(McTask& t, int num_fewshot, int64_t limit) {
  t.has_acc_norm = false;  // the harness reports acc only
  struct Q {
    std::string subject, text;
    int answer;
    nlohmann::json record;  // the whole record: the harness compares documents as dicts
    size_t line;
  };
  std::vector<Q> qs;
  for_each_jsonl(t.file, [&](const nlohmann::json& j, size_t line) {
    const auto choices = str_list(j, "choices", t.file, line);
    if (choices.size() != 4) fail("{}:{}: expected 4 choices, got {}", t.file, line, choices.size());
    qs.push_back({str_field(j, "subject", t.file, line), mmlu_question(j, choices, t.file, line),
                  int_field(j, "answer", 0, 3, t.file, line), j, line});
  });
  std::map<std::string, std::vector<size_t>> by_subject;
  for (size_t i = 0; i < qs.size(); ++i) by_subject[qs[i].subject].push_back(i);
  static const std::vector<std::string> letters = {"A", "B", "C", "D"};
  const size_t n = limit > 0 ? std::min(qs.size(), size_t(limit)) : qs.size();
  for (size_t i = 0; i < n; ++i) {
    std::string subject = qs[i].subject;
    for (auto& ch : subject)
      if (ch == '_') ch = ' ';
    std::string prompt = "The following are multiple choice questions (with answers) about " + subject + ".\n\n";
    if (num_fewshot > 0) {
      // The harness's first_n sampler over the subject's dev items when the evaluated split is the few-shot
      // split: every document equal to the one asked (the item itself and any duplicate of it) is left out
      // of the pool, then the first num_fewshot are taken; a pool that is too small is an error.
      std::vector<size_t> pool;
      for (size_t e : by_subject[qs[i].subject])
        if (qs[e].record != qs[i].record) pool.push_back(e);
      if (size_t(num_fewshot) > pool.size())
        fail("{}:{}: mmlu {}: {} few-shot exemplars asked for, but only {} dev items of the subject remain once "
             "those equal to the question are left out (lower --num-fewshot)",
             t.file, qs[i].line, qs[i].subject, num_fewshot, pool.size());
      for (int k = 0; k < num_fewshot; ++k) {
        const Q& e = qs[pool[size_t(k)]];
        prompt += e.text + " " + letters[size_t(e.answer)] + "\n\n";
      }
    }
    t.items.push_back(same_context(prompt + qs[i].text, letters, qs[i].answer));
  }
}

}  // namespace

bool is_mc_task(const std::string& name) {
  return name == "arc_easy" || name == "arc_challenge" || name == "piqa" || name == "hellaswag" ||
         name == "openbookqa" || name == "winogrande" || name == "mmlu";
}

McTask load_mc_task(const std::string& name, const std::string& eval_dir, int num_fewshot, int64_t limit) {
  McTask t;
  t.name = name;
  if (num_fewshot < 0) fail("--num-fewshot must be >= 0, got {}", num_fewshot);
  if (num_fewshot > 0 && name != "mmlu") fail("{}: few-shot needs a training split, which this data set lacks", name);
  if (name == "arc_easy" || name == "arc_challenge") {
    t.file = eval_dir + "/arc/" + name + "_test.jsonl";
    load_arc(t);
  } else if (name == "piqa") {
    t.file = eval_dir + "/piqa/valid.jsonl";
    load_piqa(t);
  } else if (name == "hellaswag") {
    t.file = eval_dir + "/hellaswag/hellaswag_val_full.txt";
    load_hellaswag(t);
  } else if (name == "openbookqa") {
    t.file = eval_dir + "/openbookqa/dev.tsv";
    load_openbookqa(t);
  } else if (name == "winogrande") {
    t.file = eval_dir + "/winogrande/winogrande_dev.jsonl";
    load_winogrande(t);
  } else if (name == "mmlu") {
    t.file = eval_dir + "/mmlu/mmlu_dev.jsonl";
    load_mmlu(t, num_fewshot, limit);
  } else {
    fail("unknown multiple-choice task \"{}\"", name);
  }
  if (t.items.empty()) fail("{}: no items", t.file);
  if (limit > 0 && int64_t(t.items.size()) > limit) t.items.resize(size_t(limit));
  return t;
}

std::vector<LambadaItem> load_lambada(const std::string& path) {
  std::vector<LambadaItem> out;
  for_each_jsonl(path, [&](const nlohmann::json& j, size_t line) {
    const std::string text = str_field(j, "text", path, line);
    const size_t sp = text.rfind(' ');
    if (sp == std::string::npos || sp == 0 || sp + 1 == text.size())
      fail("{}:{}: text has no last word after a space", path, line);
    out.push_back({text.substr(0, sp), text.substr(sp)});  // continuation keeps its leading space
  });
  return out;
}

std::vector<TriviaItem> load_triviaqa(const std::string& path) {
  std::vector<TriviaItem> out;
  for_each_jsonl(path, [&](const nlohmann::json& j, size_t line) {
    TriviaItem it{str_field(j, "context", path, line), str_list(j, "aliases", path, line)};
    out.push_back(std::move(it));
  });
  return out;
}

std::string normalize_triviaqa(const std::string& s) {
  static const std::string punct = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~";  // Python's string.punctuation
  std::string out;
  // ignore_case (numpy char.lower = str.lower: full Unicode), then ignore_punctuation (ASCII only).
  for (char c : unicode::to_lower(s))
    if (punct.find(c) == std::string::npos) out += c;
  return out;
}

bool triviaqa_match(const std::string& generation, const std::vector<std::string>& aliases) {
  // remove_whitespace filter: resp.strip() (the references are not stripped).
  const std::string pred = normalize_triviaqa(std::string(unicode::python_strip(generation)));
  for (auto& al : aliases)
    if (normalize_triviaqa(al) == pred) return true;
  return false;
}

std::vector<std::string> load_documents(const std::string& path) {
  const std::string text = read_text_file(path);
  std::vector<std::string> docs;
  if (path.find("wikitext") == std::string::npos) {
    if (!text.empty()) docs.push_back(text);
    return docs;
  }
  // EleutherAI/wikitext_document_level (the harness's wikitext data set): the file split at "\n", a page
  // starts at each top-level heading line and is its lines joined with "\n" (so no newline after its last
  // line); a blank stretch before the first heading is no page.
  std::vector<std::string_view> lines;
  const std::string_view all(text);
  for (size_t pos = 0;;) {
    const size_t nl = all.find('\n', pos);
    lines.push_back(all.substr(pos, nl == std::string_view::npos ? std::string_view::npos : nl - pos));
    if (nl == std::string_view::npos) break;
    pos = nl + 1;
  }
  auto flush = [&](size_t from, size_t to) {
    std::string page;
    for (size_t k = from; k < to; ++k) {
      if (k > from) page += '\n';
      page += lines[k];
    }
    if (!unicode::python_strip(page).empty()) docs.push_back(std::move(page));
  };
  size_t start = 0;
  for (size_t k = 0; k < lines.size(); ++k)
    if (is_wikitext_heading(lines[k])) {
      flush(start, k);
      start = k;
    }
  flush(start, lines.size());
  return docs;
}

bool is_wikitext_heading(std::string_view line) {
  // line.replace("= = =", "===").replace("= =", "==").strip(), then starts with "= " and ends with " =".
  const std::string r = std::string(unicode::python_strip(replace_all(replace_all(line, "= = =", "==="), "= =", "==")));
  return r.size() >= 3 && r.compare(0, 2, "= ") == 0 && r.compare(r.size() - 2, 2, " =") == 0;
}

std::string replace_all(std::string_view s, std::string_view from, std::string_view to) {
  // Python's str.replace: non-overlapping matches, left to right.
  std::string out;
  size_t pos = 0;
  for (size_t p; (p = s.find(from, pos)) != std::string_view::npos; pos = p + from.size()) {
    out.append(s.substr(pos, p - pos));
    out.append(to);
  }
  out.append(s.substr(pos));
  return out;
}

namespace {

// re.sub(r"O\s*([^C]*?)\s*C", r"O\1C", s) for one bracket pair O, C (O may equal C): from each O, the
// first C after it closes the match, and the text between loses its leading and trailing whitespace
// (Python's \s: str.isspace). Scanning resumes after the C; an O without a C after it is left alone.
std::string tighten_pairs(const std::string& s, char open, char close) {
  std::string out;
  size_t pos = 0;
  while (pos < s.size()) {
    const size_t o = s.find(open, pos);
    if (o == std::string::npos) break;
    const size_t c = s.find(close, o + 1);
    if (c == std::string::npos) break;  // no later O can find a C either
    out.append(s, pos, o - pos);
    out += open;
    out.append(unicode::python_strip(std::string_view(s).substr(o + 1, c - o - 1)));
    out += close;
    pos = c + 1;
  }
  out.append(s, pos);
  return out;
}

// re.sub(r"/' [0-9]/", r"/'[0-9]/", s): the replacement is that literal text (the harness's pattern).
std::string slash_quote_digit(const std::string& s) {
  std::string out;
  size_t pos = 0;
  for (size_t p = s.find("/' "); p != std::string::npos; p = s.find("/' ", p + 1)) {
    if (p < pos) continue;
    if (p + 4 < s.size() && s[p + 3] >= '0' && s[p + 3] <= '9' && s[p + 4] == '/') {
      out.append(s, pos, p - pos);
      out += "/'[0-9]/";
      pos = p + 5;
    }
  }
  out.append(s, pos);
  return out;
}

}  // namespace

std::string wikitext_detokenize(const std::string& page) {
  std::string s = replace_all(page, "s '", "s'");  // contractions
  s = slash_quote_digit(s);
  for (auto [from, to] : {std::pair{" @-@ ", "-"}, {" @,@ ", ","}, {" @.@ ", "."},  // number separators
                          {" : ", ": "}, {" ; ", "; "}, {" . ", ". "}, {" ! ", "! "}, {" ? ", "? "}, {" , ", ", "}})
    s = replace_all(s, from, to);
  s = tighten_pairs(s, '(', ')');  // double brackets
  s = tighten_pairs(s, '[', ']');
  s = tighten_pairs(s, '{', '}');
  s = tighten_pairs(s, '"', '"');
  s = tighten_pairs(s, '\'', '\'');
  for (auto [from, to] : {std::pair{"= = = =", "===="}, {"= = =", "==="}, {"= =", "=="},  // miscellaneous
                          {" \u00b0 ", "\u00b0"}, {" \n", "\n"}, {"\n ", "\n"}, {" N ", " 1 "}, {" 's", "'s"}})
    s = replace_all(s, from, to);
  return s;
}

int64_t python_split_count(std::string_view s) {
  // len(re.split(r"\s+", s)): one more than the number of maximal whitespace runs (empty ends count).
  int64_t n = 1;
  bool in_space = false;
  for (size_t i = 0; i < s.size();) {
    const size_t len = unicode::valid_utf8_prefix(s.substr(i, std::min<size_t>(4, s.size() - i)));
    bool space = false;
    if (len == 0) {
      ++i;  // an invalid byte is no space
    } else {
      space = unicode::is_python_space(unicode::next_code_point(s, i));
    }
    if (space && !in_space) ++n;
    in_space = space;
  }
  return n;
}

std::string hellaswag_preprocess(const std::string& text) {
  std::string s = strip(text);
  for (size_t p; (p = s.find(" [title]")) != std::string::npos;) s.replace(p, 8, ". ");
  for (size_t p; (p = s.find('[')) != std::string::npos;) {
    const size_t q = s.find(']', p);
    if (q == std::string::npos) break;
    s.erase(p, q - p + 1);
  }
  for (size_t p; (p = s.find("  ")) != std::string::npos;) s.erase(p, 1);
  return s;
}

int64_t utf8_length(const std::string& s) {
  int64_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return n;
}

}  // namespace txs::eval
