// Inference throughput: prefill tokens/s and decode tokens/s at several context lengths, batch sizes and
// thread counts, for TransXSSM and a Transformer of the same size side by side, plus the bytes of state one
// sequence holds. Random weights, in fp32 and in bf16 (matrices stored bf16, fp32 accumulation). Usage:
//   bench_infer [--only tiny|d512] [--contexts 512,2048,4096,8192,16384] [--batches 1,8] [--threads 1,2]
//               [--precisions fp32,bf16] [--steps N] [--json FILE]
// Decoding at context C: one sequence is prefilled to C tokens (that pass is the prefill figure), then copied
// into `batch` sequences (a fork, as for a shared prompt) that decode --steps tokens together.
// Efficiency is against ceilings measured at the start, per thread count (bench/machine_ceiling.h): prefill as
// % of the GEMM ceiling of the row's precision, decode as % of the read bandwidth (a decode step must read
// every weight it uses once — all but the rows of an untied embedding table it does not look up — and each
// sequence's state once, so at small batch it is bound by memory, not by FLOPs).
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
#include "machine_ceiling.h"

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
  std::vector<Precision> precisions = {Precision::F32, Precision::BF16};
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
    else if (!std::strcmp(argv[i], "--precisions")) {
      precisions.clear();
      const std::string v = next();
      for (size_t p = 0; p < v.size();) {
        const size_t q = v.find(',', p);
        precisions.push_back(parse_precision(v.substr(p, q - p)));
        p = q == std::string::npos ? v.size() : q + 1;
      }
    }
    else {
      std::fprintf(stderr, "unknown option %s\n", argv[i]);
      return 2;
    }
  }
  // "tiny" is the size preset; "d512" is the llama.cpp peer shape (8 layers, 8 heads, SwiGLU 1536, untied).
  const std::vector<Shape> shapes = {{"tiny", 256, 8, 4, 768, 50304, true}, {"d512", 512, 8, 8, 1536, 50304, false}};
  nlohmann::json results = nlohmann::json::array();
  std::vector<bench::MachineCeiling> machine;  // one per thread count, in the order of `threads`
  {
    const Buffer<float> buf = bench::make_read_buffer();  // one 512 MiB buffer for every bandwidth pass
    for (int64_t thr : threads) machine.push_back(bench::measure_machine(int(thr), &buf));
  }
  for (const auto& m : machine) m.print();
  fmt::print("{:<6} {:<12} {:<5} {:>7} {:>5} {:>3} {:>12} {:>12} {:>7} {:>12} {:>12} {:>7} {:>14}\n", "shape", "arch",
             "prec", "context", "batch", "thr", "prefill t/s", "(per cpu-s)", "%gemm", "decode t/s", "(per cpu-s)", "%bw",
             "state/seq");
  for (const Shape& s : shapes) {
    if (!only.empty() && only != s.name) continue;
    for (size_t ti = 0; ti < threads.size(); ++ti) {
      const int64_t thr = threads[ti];
      const bench::MachineCeiling& m = machine[ti];
      set_num_threads(int(thr));
      for (int64_t ctx : contexts) {
        for (const char* arch : {"transxssm", "transformer"})
        for (Precision prec : precisions) {
          nlohmann::json over = {{"arch", arch},
                                 {"hidden_size", s.d},
                                 {"num_hidden_layers", s.layers},
                                 {"num_attention_heads", s.heads},
                                 {"num_key_value_heads", s.heads},
                                 {"intermediate_size", s.inter},
                                 {"vocab_size", s.vocab},
                                 {"tie_word_embeddings", s.tied},
                                 {"max_position_embeddings", ctx}};
          Model model(resolve_config("", "", over), cpu_backend(), ModelOptions{prec, false});
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
          // Prefill FLOPs per token: 2 per matmul parameter, but the LM head (vocab × d, in matmul_params tied or
          // not) runs on the last token only, plus the forward attention/SSD mixing terms at this context.
          const double head = double(s.vocab * s.d);
          const double prefill_flops = 2.0 * (double(model.matmul_params()) - head) + 2.0 * head / double(ctx) +
                                       model.mixing_flops_per_token(ctx);
          const double prefill_gemm = prefill_flops * prefill_tps / (m.gemm_gflops(precision_name(prec)) * 1e9);
          // Bytes one decode step must read: every weight once as stored (bf16 matrices in bf16), except an
          // untied embedding table, of which it reads one row per sequence; plus each sequence's state.
          double weight_bytes = 0;
          for (const Param& p : model.params().params()) {
            const double elem = p.compute_offset >= 0 ? 2.0 : 4.0;
            const bool table = !s.tied && p.name == "model.word_embed.weight";
            weight_bytes += elem * double(table ? s.d : p.numel);
          }
          const double state_bytes = double(sequence_state_bytes(model.config(), ctx));
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
            const double step_s = (now() - t0) / steps;
            const double decode_tps = double(B) / step_s, decode_cpu = double(B * steps) / (cpu_now() - c0);
            const double bytes_per_step = weight_bytes + double(B) * state_bytes;
            const double decode_bw = bytes_per_step / step_s / (m.read_gbs_n * 1e9);
            const size_t bytes = base.bytes();
            fmt::print("{:<6} {:<12} {:<5} {:>7} {:>5} {:>3} {:>12.1f} {:>12.1f} {:>6.1f}% {:>12.1f} {:>12.1f} {:>6.1f}% "
                       "{:>10.2f} MiB\n",
                       s.name, arch, precision_name(prec), ctx, B, thr, prefill_tps, prefill_cpu, 100 * prefill_gemm, decode_tps, decode_cpu,
                       100 * decode_bw, double(bytes) / (1 << 20));
            std::fflush(stdout);
            results.push_back({{"shape", s.name},
                               {"arch", arch},
                               {"precision", precision_name(prec)},
                               {"context", ctx},
                               {"batch", B},
                               {"threads", thr},
                               {"prefill_tokens_per_s", prefill_tps},
                               {"decode_tokens_per_s", decode_tps},
                               {"prefill_tokens_per_cpu_s", prefill_cpu},
                               {"decode_tokens_per_cpu_s", decode_cpu},
                               {"state_bytes_per_sequence", bytes},
                               {"prefill_gemm_fraction", prefill_gemm},
                               {"decode_bytes_per_step", bytes_per_step},
                               {"decode_bandwidth_fraction", decode_bw},
                               {"machine", m.json()}});
          }
        }
      }
    }
  }
  if (!json_path.empty()) std::ofstream(json_path) << results.dump(2) << "\n";
  return 0;
}
