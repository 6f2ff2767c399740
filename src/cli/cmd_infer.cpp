// Inference commands: generate (prefill + constant-state decoding, streamed to the terminal, with state
// snapshots for prompt caching) and serve (the OpenAI-compatible HTTP server of src/server).
#include <fmt/format.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>
#include <optional>

#include "cli/commands.h"
#include "core/error.h"
#include "core/json.h"
#include "core/threads.h"
#include "infer/engine.h"
#include "infer/generate.h"
#include "infer/text_stream.h"
#include "model/checkpoint.h"
#include "model/safetensors.h"
#include "server/server.h"
#include "tokenizer/tokenizer.h"

namespace txs::cli {
namespace {

// --tokenizer when given, else the checkpoint's own (resolve_checkpoint_tokenizer); none: token ids only.
std::optional<Tokenizer> find_tokenizer(const std::string& model_dir, const std::string& explicit_path) {
  const std::string path = resolve_checkpoint_tokenizer(model_dir, explicit_path);
  if (path.empty()) return std::nullopt;
  return Tokenizer::from_file(path);
}

std::vector<int32_t> read_ids(const std::string& path) {
  const nlohmann::json j = read_json_file(path);
  if (!j.is_array()) fail("{}: expected a JSON array of token ids", path);
  std::vector<int32_t> ids;
  for (auto& v : j) {
    if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() > INT32_MAX)
      fail("{}: token ids must be non-negative integers, got {}", path, json_excerpt(v));
    ids.push_back(v.get<int32_t>());
  }
  return ids;
}

struct GenerateArgs {
  std::string model, prompt, prompt_file, ids, tokenizer, save_state, load_state, precision = "fp32", device = "cpu";
  std::vector<std::string> stops;
  int64_t max_tokens = 128, top_k = 0;
  double temperature = 1.0, top_p = 1.0;
  uint64_t seed = 0;
  int threads = 0;
  bool json = false, ignore_eos = false;
};

void run_generate(const GenerateArgs& a) {
  set_num_threads(a.threads);
  const int sources = !a.prompt.empty() + !a.prompt_file.empty() + !a.ids.empty();
  if (sources > 1) fail("generate: give only one of --prompt, --prompt-file and --ids");
  if (sources == 0 && a.load_state.empty()) fail("generate: give --prompt, --prompt-file or --ids");
  if (a.max_tokens < 0) fail("generate: --max-tokens must be ≥ 0");
  auto model = load_checkpoint(a.model, device_backend(a.device), inference_options(a.precision));
  const std::optional<Tokenizer> tok = find_tokenizer(a.model, a.tokenizer);
  std::vector<int32_t> prompt;
  if (!a.ids.empty()) {
    prompt = read_ids(a.ids);
  } else if (!a.prompt.empty() || !a.prompt_file.empty()) {
    if (!tok) fail("generate: {} holds no tokenizer; pass --tokenizer or --ids", a.model);
    prompt = tok->encode(a.prompt_file.empty() ? a.prompt : read_file(a.prompt_file));
  }
  InferenceEngine engine(*model);
  SequenceState seq = a.load_state.empty() ? engine.new_sequence() : engine.load_state(a.load_state);
  if (prompt.empty()) fail("generate: the prompt is empty (a loaded state needs a continuation prompt)");

  // Prefill here (not in generate()) so that the state after the prompt can be snapshotted.
  const int64_t V = model->config().vocab_size;
  std::vector<float> logits(static_cast<size_t>(V));
  GenerationStats stats;
  auto t0 = std::chrono::steady_clock::now();
  engine.prefill(seq, prompt.data(), int64_t(prompt.size()), nullptr, nullptr, logits.data());
  stats.prompt_tokens = int64_t(prompt.size());
  stats.prefill_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (!a.save_state.empty()) {
    engine.save_state(seq, a.save_state);
    fmt::print(stderr, "state after {} tokens saved to {} ({:.1f} KiB)\n", seq.position(), a.save_state,
               double(seq.bytes()) / 1024);
  }

  SamplingParams sp;
  sp.temperature = a.temperature, sp.top_k = a.top_k, sp.top_p = a.top_p;
  // The model's vocabulary may be padded past the tokenizer's: those ids have no text and are never sampled.
  if (tok) sp.real_vocab = std::min<int64_t>(tok->vocab_size(), V);
  std::optional<TextStream> text;
  if (tok) text.emplace(*tok, a.stops);
  else if (!a.stops.empty()) fail("generate: --stop needs a tokenizer");
  const int32_t eos = tok && !a.ignore_eos ? tok->eos_id() : -1;
  std::vector<int32_t> shown;
  GenerationStats dstats;
  generate(
      engine, seq, {}, a.max_tokens, sp, a.seed,
      [&](int32_t id) {
        if (id == eos) return false;
        shown.push_back(id);
        if (text) {
          const std::string piece = text->push(id);
          if (!a.json) {
            std::fwrite(piece.data(), 1, piece.size(), stdout);
            std::fflush(stdout);
          }
          return !text->stopped();
        }
        if (!a.json) {
          fmt::print("{} ", id);
          std::fflush(stdout);
        }
        return true;
      },
      &dstats, &logits);
  std::string rest = text ? text->finish() : "";
  if (a.json) {
    nlohmann::json out;
    out["ids"] = shown;
    out["text"] = text ? nlohmann::json(text->text()) : nlohmann::json(nullptr);
    std::cout << out.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
  } else {
    std::fwrite(rest.data(), 1, rest.size(), stdout);
    std::fputc('\n', stdout);
  }
  fmt::print(stderr, "prefill: {} tokens, {:.1f} tokens/s; decode: {} tokens, {:.1f} tokens/s; state {:.1f} KiB\n",
             stats.prompt_tokens, double(stats.prompt_tokens) / std::max(stats.prefill_seconds, 1e-9),
             dstats.new_tokens, double(dstats.new_tokens) / std::max(dstats.decode_seconds, 1e-9),
             double(seq.bytes()) / 1024);
}

}  // namespace

void register_infer_commands(CLI::App& app) {
  {
    auto* cmd = app.add_subcommand("generate", "Generate text: parallel prefill, then constant-state decoding");
    auto a = std::make_shared<GenerateArgs>();
    cmd->add_option("--model", a->model, "checkpoint directory")->required();
    cmd->add_option("--prompt", a->prompt, "prompt text");
    cmd->add_option("--prompt-file", a->prompt_file, "file holding the prompt text");
    cmd->add_option("--ids", a->ids, "JSON array of prompt token ids (instead of text)");
    cmd->add_option("--tokenizer", a->tokenizer, "tokenizer (default: the checkpoint's tokenizer.json)");
    cmd->add_option("--max-tokens", a->max_tokens, "tokens to generate");
    cmd->add_option("--temperature", a->temperature, "sampling temperature (0 = greedy)");
    cmd->add_option("--top-k", a->top_k, "keep the k most likely tokens (0 = off)");
    cmd->add_option("--top-p", a->top_p, "nucleus sampling mass (1 = off)");
    cmd->add_option("--seed", a->seed, "sampling seed (same seed, same output)");
    cmd->add_option("--stop", a->stops, "stop before this string (repeatable)");
    cmd->add_option("--save-state", a->save_state, "save the state after the prompt to this file");
    cmd->add_option("--load-state", a->load_state, "continue from a saved state (the prompt is appended)");
    cmd->add_option("--threads", a->threads, "compute threads (default: all cores)");
    cmd->add_option("--precision", a->precision, kPrecisionHelp);
    cmd->add_option("--device", a->device, kDeviceHelp);
    cmd->add_flag("--json", a->json, "print {\"ids\": [...], \"text\": ...} instead of streaming");
    cmd->add_flag("--ignore-eos", a->ignore_eos, "keep going past the end-of-text token");
    cmd->callback([a] { run_generate(*a); });
  }
  {
    auto* cmd = app.add_subcommand("serve", "OpenAI-compatible completions server (continuous batching)");
    auto o = std::make_shared<ServerOptions>();
    auto model_dir = std::make_shared<std::string>();
    auto tokenizer = std::make_shared<std::string>();
    auto threads = std::make_shared<int>(0);
    cmd->add_option("--model", *model_dir, "checkpoint directory")->required();
    cmd->add_option("--tokenizer", *tokenizer, "tokenizer (default: the checkpoint's tokenizer.json)");
    cmd->add_option("--host", o->host, "address to bind (default 127.0.0.1: this machine only)");
    cmd->add_option("--port", o->port, "TCP port (0: any free port, printed at start)");
    cmd->add_option("--max-batch", o->max_batch, "most sequences decoded together (default 8)");
    cmd->add_option("--max-sequences", o->max_sequences,
                    "most sequences in flight (decoding + waiting + being sent); more: 503 with Retry-After "
                    "(default 64; also caps the prompts in one request at min(64, this))");
    cmd->add_option("--max-context", o->max_context,
                    "prompt + generated tokens per sequence: longer prompts get 400, max_tokens is capped to "
                    "what is left after the prompt (default 0: the model's context length)");
    cmd->add_option("--request-timeout", o->request_timeout,
                    "seconds a request may run; then it ends with finish_reason \"timeout\" (default 600, 0: none)");
    cmd->add_option("--prefill-chunk", o->prefill_chunk,
                    "prompt tokens prefilled between two decode steps of the running sequences (default 128)");
    cmd->add_option("--shutdown-grace", o->shutdown_grace,
                    "seconds SIGTERM/SIGINT waits for in-flight responses before exiting 0 (default 5)");
    cmd->add_option("--max-body", o->max_body_bytes, "largest request body in bytes; more: 413 (default 1048576)");
    cmd->add_option("--http-threads", o->http_threads, "HTTP worker threads (default 0: max-sequences + 8)");
    cmd->add_option("--threads", *threads, "compute threads (default: all cores)");
    auto precision = std::make_shared<std::string>("fp32");
    cmd->add_option("--precision", *precision, kPrecisionHelp);
    auto device = std::make_shared<std::string>("cpu");
    cmd->add_option("--device", *device, kDeviceHelp);
    cmd->footer("Limits and what happens beyond them: docs/server.md");
    cmd->callback([=] {
      set_num_threads(*threads);
      auto model = load_checkpoint(*model_dir, device_backend(*device), inference_options(*precision));
      std::optional<Tokenizer> tok = find_tokenizer(*model_dir, *tokenizer);
      o->model_name = std::filesystem::path(*model_dir).filename().string();
      if (o->model_name.empty()) o->model_name = "transxssm";
      run_server(*model, tok ? &*tok : nullptr, *o);
    });
  }
}

}  // namespace txs::cli
