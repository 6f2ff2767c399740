// Training and inference throughput on the GPU (--device cuda), TransXSSM vs a Transformer of the same size,
// with the same models in PyTorch on the same GPU side by side (bench/torch_peer.py --device cuda, eager,
// torch.autocast bf16 — or fp32 — the engine's --precision). The training step is the trainer's: forward +
// backward + AdamW + the bf16 weight refresh (src/study/measure.cpp, which the study also uses); inference is
// one prefill of the whole length and batch-1 decode steps through the InferenceEngine.
// MFU = model FLOPs (6 per matmul parameter per token + 3× the forward attention/SSD mixing terms) per second
// over (a) the bf16 GEMM ceiling measured at the start through the backend's own linear_forward on a large
// square product (its activation rounding included) and (b) the nominal dense bf16 peak (--peak-tflops; H200:
// 989). Usage:
//   bench_gpu [--shapes 320m,d1024] [--seqs 4096,1024,16384] [--tokens-per-step 16384] [--precision bf16|fp32]
//             [--steps 3] [--device cuda|cpu] [--peer-seqs 4096] [--no-peer] [--peak-tflops 989] [--json FILE]
// The PyTorch peer runs at --peer-seqs only (each run starts Python and CUDA afresh, ~10 s). The JSON file is
// rewritten after every row, so a run stopped by a time limit keeps what it measured.
// Sequences shorter than --tokens-per-step are batched up to it (batch = tokens / seq), so every length does
// the same work per step; the Transformer and TransXSSM rows of one length alternate with the peer's.
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/error.h"
#include "model/config.h"
#include "model/model.h"
#include "model/safetensors.h"
#include "ops/backend.h"
#include "study/measure.h"
#include "torch_peer.h"

using namespace txs;

namespace {

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> v;
  for (size_t p = 0; p < s.size();) {
    const size_t q = s.find(',', p);
    v.push_back(s.substr(p, q - p));
    p = q == std::string::npos ? s.size() : q + 1;
  }
  return v;
}

// "320m": the size preset (d1024, 32 layers); "d1024": the same width with 24 layers; "tiny": the tiny preset.
ModelConfig shape_config(const std::string& shape, const std::string& arch, int64_t seq) {
  nlohmann::json over = {{"arch", arch}, {"max_position_embeddings", seq}};
  if (shape == "d1024") return resolve_config("", "320m", (over["num_hidden_layers"] = 24, over));
  if (shape == "320m" || shape == "tiny" || shape == "1.3b") return resolve_config("", shape, over);
  fail("bench_gpu: unknown shape '{}' (320m, d1024, tiny, 1.3b)", shape);
}

// Best TFLOP/s of the backend's linear_forward on a square product with W in `wdtype` (bf16: x is rounded to
// bf16 on the way in, as in training), over 10 timed calls after 3 warm-ups.
double gemm_ceiling_tflops(Backend& be, DType wdtype, int64_t n) {
  DeviceBuffer x(be, DType::F32, n * n), w32(be, DType::F32, n * n), w(be, wdtype, n * n), y(be, DType::F32, n * n);
  be.fill(x.flat(), 0.01), be.fill(w32.flat(), 0.02);
  be.copy(w32.mat(n, n), w.mat(n, n));
  auto call = [&] { be.linear_forward(x.mat(n, n), w.mat(n, n), y.mat(n, n)); };
  for (int i = 0; i < 3; ++i) call();
  be.synchronize();
  double best = 0;
  for (int i = 0; i < 10; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    call();
    be.synchronize();
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    best = std::max(best, 2.0 * double(n) * double(n) * double(n) / s * 1e-12);
  }
  return best;
}

double peer_tokens_per_s(const ModelConfig& c, const std::string& arch, int64_t seq, int64_t batch,
                         const std::string& device, const std::string& dtype, nlohmann::json* peer_json) {
  *peer_json = bench::run_torch_peer(
      fmt::format("--device {} --dtype {} --arch {} --d-model {} --layers {} --heads {} --intermediate {} --vocab {} "
                  "--seq {} --batch {} --steps 3 --warmup 2 --chunk {}",
                  device, dtype, arch, c.hidden_size, c.num_hidden_layers, c.num_attention_heads, c.intermediate_size,
                  c.vocab_size, seq, batch, c.ssm_chunk_size),
      device == "cuda" ? "python3" : "/usr/bin/python3");
  return peer_json->value("tokens_per_s", 0.0);
}

}  // namespace

int main(int argc, char** argv) try {
  std::vector<std::string> shapes = {"320m", "d1024"};
  std::vector<int64_t> seqs = {4096, 1024, 16384}, peer_seqs = {4096};
  int64_t tokens_per_step = 16384;
  std::string precision = "bf16", device_name_arg = "cuda", json_path;
  int steps = 3;
  bool peer = true;
  double peak_tflops = 989;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&] {
      if (i + 1 >= argc) fail("bench_gpu: {} needs a value", a);
      return std::string(argv[++i]);
    };
    if (a == "--shapes") shapes = split(next());
    else if (a == "--seqs") { seqs.clear(); for (auto& s : split(next())) seqs.push_back(std::stoll(s)); }
    else if (a == "--tokens-per-step") tokens_per_step = std::stoll(next());
    else if (a == "--precision") precision = next();
    else if (a == "--device") device_name_arg = next();
    else if (a == "--steps") steps = std::stoi(next());
    else if (a == "--no-peer") peer = false;
    else if (a == "--peer-seqs") { peer_seqs.clear(); for (auto& s : split(next())) peer_seqs.push_back(std::stoll(s)); }
    else if (a == "--peak-tflops") peak_tflops = std::stod(next());
    else if (a == "--json") json_path = next();
    else fail("usage: bench_gpu [--shapes 320m,d1024] [--seqs 1024,4096,16384] [--tokens-per-step N] "
              "[--precision bf16|fp32] [--steps N] [--device cuda|cpu] [--peer-seqs 4096] [--no-peer] [--peak-tflops T] "
              "[--json FILE]");
  }
  const Device device = parse_device(device_name_arg);
  Backend& be = backend_for(device);
  const Precision prec = parse_precision(precision);
  const double ceiling = gemm_ceiling_tflops(be, prec == Precision::BF16 ? DType::BF16 : DType::F32,
                                             device == Device::Cuda ? 8192 : 1024);
  fmt::print("device {} ({}), precision {}: GEMM ceiling {:.1f} TFLOP/s measured (linear_forward, square), "
             "nominal peak {:.1f}\n", device_name(device), be.name(), precision, ceiling, peak_tflops);
  fmt::print("{:<6} {:>6} {:>5} {:<12} {:>11} {:>7} {:>7} {:>11} {:>8} {:>11} {:>10}\n", "shape", "seq", "batch",
             "arch", "train tok/s", "MFU", "MFU-nom", "torch tok/s", "vs torch", "prefill t/s", "decode t/s");
  nlohmann::json rows = nlohmann::json::array();
  for (const auto& shape : shapes) {
    for (int64_t seq : seqs) {
      const int64_t batch = std::max<int64_t>(1, tokens_per_step / seq);
      double tps[2] = {0, 0}, dec[2] = {0, 0};
      int k = 0;
      for (const std::string arch : {"transxssm", "transformer"}) {
        const ModelConfig c = shape_config(shape, arch, seq);
        study::ThroughputOptions opt;
        opt.precision = prec, opt.device = device, opt.batch = batch, opt.train_steps = steps, opt.decode_steps = 16;
        opt.memory_limit_bytes = 1e15;  // device memory: a failed allocation is reported as skipped
        const study::Throughput t = study::measure_throughput(c, seq, opt);
        Model probe(c, cpu_backend(), ModelOptions{Precision::F32, false});
        const double flops = 6.0 * double(probe.matmul_params()) + 3.0 * probe.mixing_flops_per_token(seq);
        const double achieved = flops * t.train_tokens_per_s * 1e-12;
        nlohmann::json peer_json;
        const bool run_peer = peer && std::find(peer_seqs.begin(), peer_seqs.end(), seq) != peer_seqs.end();
        const double theirs =
            run_peer ? peer_tokens_per_s(c, arch, seq, batch, device_name_arg, precision, &peer_json) : 0;
        tps[k] = t.train_tokens_per_s, dec[k] = t.decode_tokens_per_s, ++k;
        fmt::print("{:<6} {:>6} {:>5} {:<12} {:>11.0f} {:>6.1f}% {:>6.1f}% {:>11} {:>8} {:>11.0f} {:>10.1f}{}\n", shape,
                   seq, batch, arch, t.train_tokens_per_s, 100 * achieved / ceiling, 100 * achieved / peak_tflops,
                   theirs > 0 ? fmt::format("{:.0f}", theirs) : "-",
                   theirs > 0 ? fmt::format("{:.2f}x", t.train_tokens_per_s / theirs) : "-", t.prefill_tokens_per_s,
                   t.decode_tokens_per_s, t.skipped.empty() ? "" : "  (" + t.skipped + ")");
        std::fflush(stdout);
        rows.push_back({{"shape", shape}, {"seq", seq}, {"batch", batch}, {"arch", arch}, {"precision", precision},
                        {"device", device_name_arg}, {"params", probe.num_params()}, {"flops_per_token", flops},
                        {"mfu_vs_measured", achieved / ceiling}, {"mfu_vs_nominal", achieved / peak_tflops},
                        {"ceiling_tflops", ceiling}, {"engine", t.to_json()}, {"torch", peer_json}});
        if (!json_path.empty()) write_file_atomic(json_path, rows.dump(2) + "\n");
      }
      if (tps[1] > 0)
        fmt::print("{:<6} {:>6} transxssm / transformer: training {:.2f}x, decode {:.2f}x\n", shape, seq,
                   tps[0] / tps[1], dec[1] > 0 ? dec[0] / dec[1] : 0.0);
    }
  }
  if (!json_path.empty()) write_file_atomic(json_path, rows.dump(2) + "\n");
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "bench_gpu: %s\n", e.what());
  return 1;
}
