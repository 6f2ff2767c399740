// Training-step throughput (forward + backward + AdamW) and model FLOPs utilisation, for TransXSSM and a
// Transformer of the same size, in fp32 and in bf16 mixed precision, side by side with the same model written
// in PyTorch (bench/torch_peer.py, Debian python3-torch, same thread count, fp32). MFU is against the GEMM
// ceiling of the row's precision measured at the start of the run (bench/machine_ceiling.h), not a fixed peak:
// the CPU under the bench changes between runs. The precisions alternate per shape (fp32, bf16, fp32, …) so a
// load change on the machine hits both. Usage:
//   bench_train [--steps N] [--threads N] [--no-peer] [--only tiny|d512] [--seqs 1024,4096]
//               [--precisions fp32,bf16] [--json FILE]
#include <fmt/format.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/rng.h"
#include "core/threads.h"
#include "model/model.h"
#include "model/safetensors.h"
#include "train/optimizer.h"
#include "machine_ceiling.h"
#include "torch_peer.h"

using namespace txs;

namespace {

struct Shape {
  std::string name;
  int64_t d, layers, heads, inter, vocab;
};

struct Result {
  double tokens_per_s = 0, mfu = 0;
};

Result bench_ours(const Shape& s, const std::string& arch, int64_t seq, int steps, double ceiling_flops,
                  Precision precision) {
  nlohmann::json over = {{"arch", arch}, {"hidden_size", s.d}, {"num_hidden_layers", s.layers},
                         {"num_attention_heads", s.heads}, {"num_key_value_heads", s.heads},
                         {"intermediate_size", s.inter}, {"vocab_size", s.vocab},
                         {"max_position_embeddings", seq}};
  Model model(resolve_config("", "", over), cpu_backend(), ModelOptions{precision, true});
  model.init(1);
  AdamW opt(model.backend(), model.params(), AdamWConfig{});
  Rng rng(1);
  std::vector<int32_t> ids(static_cast<size_t>(seq)), targets(static_cast<size_t>(seq));
  for (auto& x : ids) x = int32_t(rng.below(uint64_t(s.vocab)));
  for (auto& x : targets) x = int32_t(rng.below(uint64_t(s.vocab)));
  auto step = [&] {
    model.params().zero_grads();
    model.forward_backward(ids.data(), targets.data(), 1, seq, 1.0f / float(seq));
    opt.step(1e-4);
    model.params().refresh_compute();  // as the trainer does after every update
  };
  step();  // warm-up: buffers allocated, primitives created
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < steps; ++i) step();
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / steps;
  Result r;
  r.tokens_per_s = double(seq) / secs;
  // Model FLOPs per token: 6 per matmul parameter (fwd + bwd) plus 3× the forward attention/SSD mixing terms.
  const double flops = 6.0 * double(model.matmul_params()) + 3.0 * model.mixing_flops_per_token(seq);
  r.mfu = flops * r.tokens_per_s / ceiling_flops;
  return r;
}

double bench_peer(const Shape& s, const std::string& arch, int64_t seq, int threads) {
  return bench::run_torch_peer(fmt::format("--arch {} --d-model {} --layers {} --heads {} --intermediate {} --vocab {} "
                                           "--seq {} --batch 1 --steps 2 --warmup 1 --threads {}",
                                           arch, s.d, s.layers, s.heads, s.inter, s.vocab, seq, threads))
      .value("tokens_per_s", 0.0);
}

}  // namespace

int main(int argc, char** argv) {
  int steps = 3, threads = 0;
  bool peer = true;
  std::string only, json_path;
  std::vector<int64_t> seqs = {1024, 4096};
  std::vector<Precision> precisions = {Precision::F32, Precision::BF16};
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&] { return i + 1 < argc ? std::string(argv[++i]) : std::string(); };
    if (a == "--steps") steps = std::stoi(next());
    else if (a == "--threads") threads = std::stoi(next());
    else if (a == "--no-peer") peer = false;
    else if (a == "--only") only = next();
    else if (a == "--json") json_path = next();
    else if (a == "--precisions") {
      precisions.clear();
      std::string v = next();
      for (size_t p = 0; p < v.size();) {
        size_t q = v.find(',', p);
        precisions.push_back(parse_precision(v.substr(p, q - p)));
        p = q == std::string::npos ? v.size() : q + 1;
      }
    }
    else if (a == "--seqs") {
      seqs.clear();
      std::string v = next();
      for (size_t p = 0; p < v.size();) {
        size_t q = v.find(',', p);
        seqs.push_back(std::stoll(v.substr(p, q - p)));
        p = q == std::string::npos ? v.size() : q + 1;
      }
    } else {
      std::fprintf(stderr, "usage: bench_train [--steps N] [--threads N] [--no-peer] [--only tiny|d512] "
                           "[--seqs 1024,4096] [--precisions fp32,bf16] [--json FILE]\n");
      return 2;
    }
  }
  set_num_threads(threads);
  const int nthreads = num_threads();
  const std::vector<Shape> shapes = {{"tiny", 256, 8, 4, 768, 256}, {"d512", 512, 8, 8, 1536, 50304}};
  const bench::MachineCeiling machine = bench::measure_machine(nthreads);
  machine.print();
  fmt::print("training step = forward + backward + AdamW, batch 1, {} threads; MFU = % of the measured GEMM "
             "ceiling of the row's precision (fp32 {:.0f}, bf16 {:.0f} GFLOP/s); torch peer in fp32\n",
             nthreads, machine.gemm_gflops("fp32"), machine.gemm_gflops("bf16"));
  fmt::print("{:<6} {:>6} {:<12} {:<5} {:>12} {:>7} {:>12} {:>9}\n", "model", "seq", "arch", "prec", "ours tok/s",
             "MFU", "torch tok/s", "vs torch");
  nlohmann::json all = nlohmann::json::array();
  for (auto& s : shapes) {
    if (!only.empty() && s.name != only) continue;
    for (int64_t seq : seqs) {
      std::map<std::pair<std::string, Precision>, double> tps;
      for (std::string arch : {"transxssm", "transformer"}) {
        const double theirs = peer ? bench_peer(s, arch, seq, nthreads) : 0;
        for (Precision prec : precisions) {
          const double ceiling = machine.gemm_gflops(precision_name(prec)) * 1e9;
          Result r = bench_ours(s, arch, seq, steps, ceiling, prec);
          tps[{arch, prec}] = r.tokens_per_s;
          const bool fp32 = prec == Precision::F32;
          fmt::print("{:<6} {:>6} {:<12} {:<5} {:>12.0f} {:>6.1f}% {:>12} {:>9}\n", s.name, seq, arch,
                     precision_name(prec), r.tokens_per_s, 100 * r.mfu,
                     theirs > 0 && fp32 ? fmt::format("{:.0f}", theirs) : "-",
                     theirs > 0 ? fmt::format("{:.1f}x", r.tokens_per_s / theirs) : "-");
          std::fflush(stdout);
          all.push_back({{"model", s.name}, {"seq", seq}, {"arch", arch}, {"precision", precision_name(prec)},
                         {"tokens_per_s", r.tokens_per_s}, {"mfu", r.mfu}, {"torch_fp32_tokens_per_s", theirs},
                         {"threads", nthreads}, {"machine", machine.json()}});  // the ceilings behind this MFU
        }
      }
      for (Precision prec : precisions)
        fmt::print("{:<6} {:>6} {:<5} transxssm / transformer tokens/s = {:.2f}x\n", s.name, seq, precision_name(prec),
                   tps[{"transxssm", prec}] / tps[{"transformer", prec}]);
      if (tps.count({"transxssm", Precision::BF16}) && tps.count({"transxssm", Precision::F32}))
        for (std::string arch : {"transxssm", "transformer"})
          fmt::print("{:<6} {:>6} {:<12} bf16 / fp32 tokens/s = {:.2f}x\n", s.name, seq, arch,
                     tps[{arch, Precision::BF16}] / tps[{arch, Precision::F32}]);
    }
  }
  if (!json_path.empty()) write_file_atomic(json_path, all.dump(2) + "\n");
  return 0;
}
