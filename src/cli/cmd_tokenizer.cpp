// Tokenizer commands: tokenize (text -> JSON ids), detokenize (JSON ids -> text), tokenizer train
// (learn a byte-level BPE, write tokenizer.json), prepare (corpus -> token shards for training).
#include <fmt/format.h>

#include <charconv>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <iterator>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "core/error.h"
#include "core/json.h"
#include "core/threads.h"
#include "data/prepare.h"
#include "tokenizer/bpe_trainer.h"
#include "tokenizer/mapped_file.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/unicode.h"

namespace txs::cli {
namespace {

// Writes to a file, or to stdout when the path is empty or "-".
void write_output(const std::string& path, std::string_view bytes) {
  if (path.empty() || path == "-") {
    if (std::fwrite(bytes.data(), 1, bytes.size(), stdout) != bytes.size() || std::fflush(stdout) != 0)
      fail("cannot write to standard output");
    return;
  }
  std::ofstream out(path, std::ios::binary);
  if (!out) fail("cannot create {}", path);
  out.write(bytes.data(), std::streamsize(bytes.size()));
  if (!out) fail("cannot write {}", path);
}

std::string read_input(const std::string& path) {
  if (path.empty() || path == "-") {
    std::string s((std::istreambuf_iterator<char>(std::cin)), std::istreambuf_iterator<char>());
    return s;
  }
  MappedFile f(path);
  return std::string(f.view());
}

std::string ids_to_json(const std::vector<int32_t>& ids) {
  std::string out;
  out.reserve(ids.size() * 6 + 3);
  out.push_back('[');
  char buf[16];
  for (size_t i = 0; i < ids.size(); i++) {
    if (i) out.push_back(',');
    auto [end, ec] = std::to_chars(buf, buf + sizeof buf, ids[i]);
    out.append(buf, end);
  }
  out += "]\n";
  return out;
}

void apply_threads(int threads) {
  if (threads < 0) fail("--threads must be positive, got {}", threads);
  if (threads > 0) set_num_threads(threads);
}

}  // namespace

void register_tokenizer_commands(CLI::App& app) {
  {
    auto* cmd = app.add_subcommand("tokenize",
                                    "Print the token ids of a text file as one JSON array (one line per file "
                                    "when several are given)");
    auto tokenizer = std::make_shared<std::string>();
    auto inputs = std::make_shared<std::vector<std::string>>();
    auto text = std::make_shared<std::string>();
    auto out = std::make_shared<std::string>();
    auto threads = std::make_shared<int>(0);
    cmd->add_option("--tokenizer", *tokenizer, "tokenizer.json, vocab.json (+ merges.txt) or their folder")
        ->required();
    auto* in_opt = cmd->add_option("--input", *inputs, "UTF-8 text file(s) (- for standard input)");
    auto* text_opt = cmd->add_option("--text", *text, "the text itself, instead of --input");
    in_opt->excludes(text_opt);
    cmd->add_option("--out", *out, "write the JSON here instead of standard output");
    cmd->add_option("--threads", *threads, "encoding threads (default: all cores)");
    cmd->callback([=] {
      apply_threads(*threads);
      const bool from_text = cmd->count("--text") > 0;
      if (!from_text && inputs->empty()) fail("tokenize needs --input FILE or --text STRING");
      const Tokenizer tok = Tokenizer::from_file(*tokenizer);
      std::string json_out;
      auto encode_one = [&](const std::string& content, const std::string& name) {
        const size_t valid = unicode::valid_utf8_prefix(content);
        if (valid != content.size()) fail("{}: not valid UTF-8 (byte offset {})", name, valid);
        json_out += ids_to_json(tok.encode(content));
      };
      if (from_text) {
        encode_one(*text, "--text");
      } else {
        for (const std::string& input : *inputs)
          encode_one(read_input(input), input.empty() || input == "-" ? "standard input" : input);
      }
      write_output(*out, json_out);
    });
  }
  {
    auto* cmd = app.add_subcommand("detokenize", "Write the text of a JSON array of token ids");
    auto tokenizer = std::make_shared<std::string>();
    auto ids_path = std::make_shared<std::string>();
    auto out = std::make_shared<std::string>();
    cmd->add_option("--tokenizer", *tokenizer, "tokenizer.json, vocab.json (+ merges.txt) or their folder")
        ->required();
    cmd->add_option("--ids", *ids_path, "JSON array of ids (default: standard input)");
    cmd->add_option("--out", *out, "write the text here instead of standard output");
    cmd->callback([=] {
      const Tokenizer tok = Tokenizer::from_file(*tokenizer);
      const std::string name = ids_path->empty() || *ids_path == "-" ? "standard input" : *ids_path;
      const std::string content = read_input(*ids_path);
      const nlohmann::json j = try_parse_json_bounded(content);
      if (j.is_discarded() || !j.is_array()) fail("{}: expected a JSON array of token ids", name);
      std::vector<int32_t> ids;
      ids.reserve(j.size());
      for (const auto& v : j) {
        if (!v.is_number_integer()) fail("{}: token ids must be integers, got {}", name, json_excerpt(v));
        const int64_t id = v.get<int64_t>();
        if (id < 0 || id >= tok.vocab_size() || !tok.has_id(int32_t(id)))
          fail("{}: token id {} is not in the vocabulary (size {})", name, id, tok.vocab_size());
        ids.push_back(int32_t(id));
      }
      write_output(*out, tok.decode(ids));
    });
  }
  {
    auto* group = app.add_subcommand("tokenizer", "Tokenizer tools");
    group->require_subcommand(1);
    auto* cmd = group->add_subcommand("train", "Learn a byte-level BPE tokenizer and write its tokenizer.json");
    auto vocab_size = std::make_shared<int64_t>(0);
    auto inputs = std::make_shared<std::vector<std::string>>();
    auto out = std::make_shared<std::string>();
    auto specials = std::make_shared<std::vector<std::string>>(std::vector<std::string>{"<|endoftext|>"});
    auto min_frequency = std::make_shared<int64_t>(2);
    auto threads = std::make_shared<int>(0);
    cmd->add_option("--vocab-size", *vocab_size, "vocabulary size: special tokens + 256 bytes + merges")
        ->required();
    cmd->add_option("--input", *inputs, "UTF-8 text files or folders")->required();
    cmd->add_option("--out", *out, "tokenizer.json to write")->required();
    cmd->add_option("--special", *specials, "special tokens, given ids 0.. (default <|endoftext|>)");
    cmd->add_option("--min-frequency", *min_frequency, "stop when the best pair is rarer than this");
    cmd->add_option("--threads", *threads, "counting threads (default: all cores)");
    cmd->callback([=] {
      apply_threads(*threads);
      BpeTrainerOptions options;
      options.vocab_size = *vocab_size;
      options.special_tokens = *specials;
      options.min_frequency = *min_frequency;
      const BpeTrainerResult r = train_bpe(expand_inputs(*inputs), options);
      write_output(*out, r.tokenizer.dump(2) + "\n");
      const Tokenizer check = Tokenizer::from_file(*out);  // what we wrote must load
      fmt::print("trained {}: vocabulary {} ({} merges) from {} bytes, {} distinct pre-tokens; hash {}\n", *out,
                 check.vocab_size(), r.merges, r.input_bytes, r.words, check.hash());
      if (check.vocab_size() < *vocab_size)
        fmt::print(stderr, "warning: the corpus supports only {} tokens at --min-frequency {}\n", check.vocab_size(),
                   *min_frequency);
    });
  }
  {
    auto* cmd = app.add_subcommand("prepare", "Tokenize a corpus into train/val token shards");
    auto tokenizer = std::make_shared<std::string>();
    auto opts = std::make_shared<PrepareOptions>();
    auto threads = std::make_shared<int>(0);
    cmd->add_option("--tokenizer", *tokenizer, "tokenizer.json, vocab.json (+ merges.txt) or their folder")
        ->required();
    cmd->add_option("--input", opts->inputs, "text or .jsonl files, or folders of them")->required();
    cmd->add_option("--out", opts->out_dir, "output folder (manifest.json + shards)")->required();
    cmd->add_option("--val-fraction", opts->val_fraction, "share of the input bytes held out for validation")
        ->capture_default_str();
    cmd->add_option("--shard-tokens", opts->shard_tokens, "tokens per shard file")->capture_default_str();
    cmd->add_option("--jsonl-field", opts->jsonl_field, "field holding the text in .jsonl files")
        ->capture_default_str();
    cmd->add_option("--threads", *threads, "encoding threads (default: all cores)");
    cmd->callback([=] {
      apply_threads(*threads);
      const Tokenizer tok = Tokenizer::from_file(*tokenizer);
      opts->tokenizer_path = *tokenizer;
      const PrepareResult r = prepare(tok, *opts);
      fmt::print("prepared {}: {} documents, {:.1f} MB -> {} train + {} val tokens ({}) in {:.1f} s ({:.1f} MB/s)\n",
                 opts->out_dir, r.documents, double(r.input_bytes) / 1e6, r.train_tokens, r.val_tokens, r.dtype,
                 r.seconds, double(r.input_bytes) / 1e6 / std::max(r.seconds, 1e-9));
      if (opts->val_fraction > 0 && r.val_tokens == 0)
        fmt::print(stderr, "warning: the validation split is empty (no place to cut the last document)\n");
    });
  }
}

}  // namespace txs::cli
