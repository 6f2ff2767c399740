// Inference throughput: prefill tokens/s and decode tokens/s at several context lengths, batch sizes and
// thread counts, for TransXSSM and a Transformer of the same size side by side, plus the bytes of state one
// sequence holds. Random weights, fp32. Usage:
//   bench_infer [--only tiny|d512] [--contexts 512,2048,4096,8192,16384] [--batches 1,8] [--threads 1,2]
//               [--steps N] [--json FILE]
// Decoding at context C: one sequence is prefilled to C tokens (that pass is the prefill figure), then copied
// into `batch` sequences (a fork, as for a shared prompt) that decode --steps tokens together.
#include <fmt/format.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/rng.h"
#include "core/threads.h"
#include "infer/engine.h"
#include "model/model.h"

using namespace txs;

namespace {

struct Shape {
  std::string name;
  int64_t d, layers, heads, inter, vocab;
  bool tied;
};

std::vector<int64_t> parse_list(const char* s) {
  std::vector<int64_t> v;
  for (const char* p = s; *p;) {
    v.push_back(std::strtoll(p, const_cast<char**>(&p), 10));
    if (*p == ',') ++p;
  }
  return v;
}

double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }
// CPU seconds of this process: on a machine shared with other jobs, tokens per CPU-second with one thread is
// what an idle core would give (wall-clock rates are printed too).
double cpu_now() {
  timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return double(ts.tv_sec) + 1e-9 * double(ts.tv_nsec);
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<int64_t> contexts = {512, 2048, 4096, 8192, 16384}, batches = {1, 8}, threads = {1, 2};
  std::string only, json_path;
  int steps = 16;
  for (int i = 1; i < argc; ++i) {
    auto next = [&] {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "missing value after %s\n", argv[i]);
        std::exit(2);
      }
      return argv[++i];
    };
    if (!std::strcmp(argv[i], "--only")) only = next();
    else if (!std::strcmp(argv[i], "--contexts")) contexts = parse_list(next());
    else if (!std::strcmp(argv[i], "--batches")) batches = parse_list(next());
    else if (!std::strcmp(argv[i], "--threads")) threads = parse_list(next());
    else if (!std::strcmp(argv[i], "--steps")) steps = std::atoi(next());
    else if (!std::strcmp(argv[i], "--json")) json_path = next();
    else {
      std::fprintf(stderr, "unknown option %s\n", argv[i]);
      return 2;
    }
  }
  // "tiny" is the size preset; "d512" is the llama.cpp peer shape (8 layers, 8 heads, SwiGLU 1536, untied).
  const std::vector<Shape> shapes = {{"tiny", 256, 8, 4, 768, 50304, true}, {"d512", 512, 8, 8, 1536, 50304, false}};
  nlohmann::json results = nlohmann::json::array();
  fmt::print("{:<6} {:<12} {:>7} {:>5} {:>3} {:>12} {:>12} {:>12} {:>12} {:>14}\n", "shape", "arch", "context", "batch",
             "thr", "prefill t/s", "(per cpu-s)", "decode t/s", "(per cpu-s)", "state/seq");
  for (const Shape& s : shapes) {
    if (!only.empty() && only != s.name) continue;
    for (int64_t thr : threads) {
      set_num_threads(int(thr));
      for (int64_t ctx : contexts) {
        for (const char* arch : {"transxssm", "transformer"}) {
          nlohmann::json over = {{"arch", arch},
                                 {"hidden_size", s.d},
                                 {"num_hidden_layers", s.layers},
                                 {"num_attention_heads", s.heads},
                                 {"num_key_value_heads", s.heads},
                                 {"intermediate_size", s.inter},
                                 {"vocab_size", s.vocab},
                                 {"tie_word_embeddings", s.tied},
                                 {"max_position_embeddings", ctx}};
          Model model(resolve_config("", "", over));
          model.init(1);
          InferenceEngine eng(model);
          Rng rng(1);
          std::vector<int32_t> ids(static_cast<size_t>(ctx));
          for (auto& x : ids) x = int32_t(rng.below(uint64_t(s.vocab)));
          std::vector<float> logits(static_cast<size_t>(s.vocab * 8));
          {  // warm-up: buffers grown, GEMM primitives created
            SequenceState w = eng.new_sequence();
            eng.prefill(w, ids.data(), std::min<int64_t>(ctx, 512), nullptr, nullptr, logits.data());
          }
          SequenceState base = eng.new_sequence();
          double t0 = now(), c0 = cpu_now();
          eng.prefill(base, ids.data(), ctx, nullptr, nullptr, logits.data());
          const double prefill_tps = double(ctx) / (now() - t0), prefill_cpu = double(ctx) / (cpu_now() - c0);
          for (int64_t B : batches) {
            std::vector<SequenceState> seqs(static_cast<size_t>(B), base);
            std::vector<SequenceState*> ptrs;
            for (auto& q : seqs) ptrs.push_back(&q);
            logits.resize(static_cast<size_t>(B * s.vocab));
            std::vector<int32_t> next(static_cast<size_t>(B));
            for (auto& x : next) x = int32_t(rng.below(uint64_t(s.vocab)));
            eng.decode(ptrs, next.data(), logits.data());  // warm-up step
            t0 = now(), c0 = cpu_now();
            for (int k = 0; k < steps; ++k) eng.decode(ptrs, next.data(), logits.data());
            const double decode_tps = double(B * steps) / (now() - t0), decode_cpu = double(B * steps) / (cpu_now() - c0);
            const size_t bytes = base.bytes();
            fmt::print("{:<6} {:<12} {:>7} {:>5} {:>3} {:>12.1f} {:>12.1f} {:>12.1f} {:>12.1f} {:>10.2f} MiB\n", s.name,
                       arch, ctx, B, thr, prefill_tps, prefill_cpu, decode_tps, decode_cpu, double(bytes) / (1 << 20));
            std::fflush(stdout);
            results.push_back({{"shape", s.name},
                               {"arch", arch},
                               {"context", ctx},
                               {"batch", B},
                               {"threads", thr},
                               {"prefill_tokens_per_s", prefill_tps},
                               {"decode_tokens_per_s", decode_tps},
                               {"prefill_tokens_per_cpu_s", prefill_cpu},
                               {"decode_tokens_per_cpu_s", decode_cpu},
                               {"state_bytes_per_sequence", bytes}});
          }
        }
      }
    }
  }
  if (!json_path.empty()) std::ofstream(json_path) << results.dump(2) << "\n";
  return 0;
}
