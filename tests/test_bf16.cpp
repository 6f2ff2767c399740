// bf16 mixed precision at the model level (model/params.h, ModelOptions): for every architecture, a small
// initialised model run in bf16 (bf16 weight operands of the products, fp32 accumulation, fp32 everywhere
// else) against the same model in fp32 — logits (max relative error) and per-tensor gradients (cosine
// similarity) — then: bf16 inference gives the logits of bf16 training mode, the stateful engine in bf16
// follows Model::forward in bf16, and convert_checkpoint to bf16 round-trips (safetensors "BF16", loads for
// inference in either precision, refused for continuing training; bf16 inference keeps no fp32 matrices and about
// half the weight bytes).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/rng.h"
#include "infer/engine.h"
#include "model/checkpoint.h"
#include "model/model.h"
#include "model/safetensors.h"
#include "model_fixtures.h"
#include "ops/bf16.h"

using namespace txs;
using txs::test::small_config;
using txs::test::random_ids;

namespace {

constexpr uint64_t kSeed = 1234;
constexpr int64_t kBatch = 2, kSeq = 24;

// Bounds, from the worst values measured over the six architectures (printed by the tests) with a margin:
// logits max|bf16 − fp32| / max|fp32| (measured worst: see LogitsAndGradientsMatchFp32's table) and the
// minimum cosine of any parameter's gradient.
constexpr double kLogitsRelBound = 3e-2;
constexpr double kGradCosineBound = 0.99;
constexpr double kStatefulRelBound = 2e-2;

std::unique_ptr<Model> make(const std::string& arch, Precision p, bool training) {
  auto m = std::make_unique<Model>(small_config(arch), cpu_backend(), ModelOptions{p, training});
  m->init(kSeed);
  return m;
}

std::vector<float> logits_of(Model& m, const std::vector<int32_t>& ids, int64_t batch, int64_t seq) {
  std::vector<float> logits(size_t(batch * seq * m.config().vocab_size));
  m.forward(ids.data(), nullptr, batch, seq, nullptr, logits.data());
  return logits;
}

// max|a − b| / max|b|
double rel_error(const std::vector<float>& a, const std::vector<float>& b) {
  double diff = 0, scale = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    diff = std::max(diff, std::abs(double(a[i]) - double(b[i])));
    scale = std::max(scale, std::abs(double(b[i])));
  }
  return a.size() == b.size() && scale > 0 ? diff / scale : INFINITY;
}

double cosine(const float* a, const float* b, int64_t n) {
  double ab = 0, aa = 0, bb = 0;
  for (int64_t i = 0; i < n; ++i) ab += double(a[i]) * b[i], aa += double(a[i]) * a[i], bb += double(b[i]) * b[i];
  if (aa == 0 && bb == 0) return 1;  // both exactly zero (a gradient that vanishes in both precisions)
  return ab / std::sqrt(aa * bb);
}

}  // namespace

TEST(Bf16Model, LogitsAndGradientsMatchFp32) {
  std::printf("%-12s %22s %14s  %s\n", "arch", "logits max rel. error", "min grad cos", "(tensor)");
  double worst_rel = 0, worst_cos = 1;
  for (const auto& arch : architecture_names()) {
    auto m32 = make(arch, Precision::F32, true), m16 = make(arch, Precision::BF16, true);
    ASSERT_EQ(m16->precision(), Precision::BF16);
    // The bf16 model keeps the same fp32 masters (same seed).
    ASSERT_EQ(m16->params().size(), m32->params().size());
    ASSERT_TRUE(std::equal(m32->params().weights(), m32->params().weights() + m32->params().size(),
                           m16->params().weights()))
        << arch;
    Rng rng(7);
    const auto ids = random_ids(rng, kBatch * kSeq, m32->config().vocab_size);
    auto targets = random_ids(rng, kBatch * kSeq, m32->config().vocab_size);
    targets[3] = -1;

    const auto l32 = logits_of(*m32, ids, kBatch, kSeq), l16 = logits_of(*m16, ids, kBatch, kSeq);
    const double rel = rel_error(l16, l32);
    EXPECT_LE(rel, kLogitsRelBound) << arch;
    EXPECT_GT(rel, 0) << arch << ": bf16 logits identical to fp32 — is the bf16 path used at all?";

    const float gs = 1.0f / float(kBatch * kSeq - 1);
    m32->params().zero_grads(), m16->params().zero_grads();
    const auto r32 = m32->forward_backward(ids.data(), targets.data(), kBatch, kSeq, gs);
    const auto r16 = m16->forward_backward(ids.data(), targets.data(), kBatch, kSeq, gs);
    EXPECT_NEAR(r16.loss_sum / r16.counted, r32.loss_sum / r32.counted, 1e-2 * r32.loss_sum / r32.counted) << arch;
    double min_cos = 2;
    std::string min_name;
    for (const auto& p : m32->params().params()) {
      const double c = cosine(m16->params().grads() + p.offset, m32->params().grads() + p.offset, p.numel);
      EXPECT_GE(c, kGradCosineBound) << arch << " " << p.name;
      if (c < min_cos) min_cos = c, min_name = p.name;
    }
    std::printf("%-12s %22.3e %14.6f  %s\n", arch.c_str(), rel, min_cos, min_name.c_str());
    worst_rel = std::max(worst_rel, rel), worst_cos = std::min(worst_cos, min_cos);
  }
  std::printf("worst: logits rel. error %.3e (bound %.0e), gradient cosine %.6f (bound %.2f)\n", worst_rel,
              kLogitsRelBound, worst_cos, kGradCosineBound);
  std::fflush(stdout);
}

// Inference (no gradients, no fp32 masters of the matrices) runs the very same bf16 products.
TEST(Bf16Model, InferenceModeGivesTrainingModeLogits) {
  for (const auto& arch : architecture_names()) {
    auto train = make(arch, Precision::BF16, true), infer = make(arch, Precision::BF16, false);
    Rng rng(11);
    const auto ids = random_ids(rng, kBatch * kSeq, train->config().vocab_size);
    const auto a = logits_of(*train, ids, kBatch, kSeq), b = logits_of(*infer, ids, kBatch, kSeq);
    double diff = 0;
    for (size_t i = 0; i < a.size(); ++i) diff = std::max(diff, double(std::abs(a[i] - b[i])));
    EXPECT_EQ(diff, 0.0) << arch << ": bf16 inference and bf16 training-mode logits differ";
  }
}

// The stateful path in bf16 (InferenceEngine: chunked prefill, then one-token decoding through
// Model::forward_cached) against Model::forward in bf16. Not bit-close as in fp32: a product with more than
// cpu::kGemvMaxRows rows (Model::forward, the prefill's projections) rounds its activation to bf16 (oneDNN),
// one with fewer (every decoding product, and the prefill's LM head, which reads only the last row) keeps
// it in fp32 (the gemv path). So both differ from Model::forward by activation rounding, of the order of
// bf16's ε (measured worst: prefill 2.4e-3, decode 6.9e-3, mamba2).
TEST(Bf16Model, StatefulInferenceFollowsForward) {
  constexpr int64_t kPrompt = 11, kT = 30;
  std::printf("%-12s %20s %20s\n", "arch", "prefill max rel.", "decode max rel.");
  for (const auto& arch : architecture_names()) {
    auto m = make(arch, Precision::BF16, false);
    const int64_t V = m->config().vocab_size;
    Rng rng(5);
    const auto ids = random_ids(rng, kT, V);
    const auto full = logits_of(*m, ids, 1, kT);
    InferenceEngine eng(*m);
    SequenceState s = eng.new_sequence();
    std::vector<float> last(static_cast<size_t>(V));
    eng.prefill(s, ids.data(), kPrompt, nullptr, nullptr, last.data());
    const std::vector<float> want_prefill(full.begin() + (kPrompt - 1) * V, full.begin() + kPrompt * V);
    const double rel_prefill = rel_error(last, want_prefill);
    double rel_decode = 0;
    for (int64_t t = kPrompt; t < kT; ++t) {
      std::vector<SequenceState*> seqs{&s};
      eng.decode(seqs, &ids[size_t(t)], last.data());
      const std::vector<float> want(full.begin() + t * V, full.begin() + (t + 1) * V);
      rel_decode = std::max(rel_decode, rel_error(last, want));
    }
    std::printf("%-12s %20.3e %20.3e\n", arch.c_str(), rel_prefill, rel_decode);
    EXPECT_LE(rel_prefill, kStatefulRelBound) << arch << ": bf16 prefill differs from bf16 Model::forward";
    EXPECT_LE(rel_decode, kStatefulRelBound) << arch << ": bf16 decoding drifts from bf16 Model::forward";
  }
  std::fflush(stdout);
}

namespace {

struct TempDir {
  std::filesystem::path path;
  TempDir() {
    path = std::filesystem::temp_directory_path() /
           ("txs_bf16_" + std::to_string(::testing::UnitTest::GetInstance()->random_seed()) + "_" +
            std::to_string(reinterpret_cast<uintptr_t>(this)));
    std::filesystem::remove_all(path);
    std::filesystem::create_directories(path);
  }
  ~TempDir() { std::filesystem::remove_all(path); }
};

nlohmann::json safetensors_header(const std::string& file) {
  std::ifstream in(file, std::ios::binary);
  uint64_t n = 0;
  in.read(reinterpret_cast<char*>(&n), 8);
  std::string h(size_t(n), '\0');
  in.read(h.data(), std::streamsize(n));
  return nlohmann::json::parse(h);
}

}  // namespace

TEST(Bf16Checkpoint, ConvertRoundTrip) {
  for (const std::string arch : {"transxssm", "jamba"}) {
    SCOPED_TRACE(arch);
    TempDir tmp;
    const std::string fp32_dir = (tmp.path / "fp32").string(), bf16_dir = (tmp.path / "bf16").string();
    auto m32 = make(arch, Precision::F32, true);
    // Initialised weights: A_log, dt_bias, conv and the matrices are not bf16 values already.
    save_checkpoint(fp32_dir, *m32);
    convert_checkpoint(fp32_dir, bf16_dir, Precision::BF16);

    // Every tensor is "BF16" in the header, with the same names as the fp32 file.
    const auto h32 = safetensors_header(fp32_dir + "/model.safetensors");
    const auto h16 = safetensors_header(bf16_dir + "/model.safetensors");
    int64_t n = 0;
    for (auto it = h16.begin(); it != h16.end(); ++it) {
      const std::string& name = it.key();
      const nlohmann::json& info = it.value();
      if (name == "__metadata__") continue;
      ++n;
      EXPECT_EQ(info.at("dtype"), "BF16") << name;
      ASSERT_TRUE(h32.contains(name)) << name;
      EXPECT_EQ(info.at("shape"), h32.at(name).at("shape")) << name;
    }
    EXPECT_EQ(n, int64_t(m32->params().params().size()));
    EXPECT_LT(std::filesystem::file_size(bf16_dir + "/model.safetensors"),
              std::filesystem::file_size(fp32_dir + "/model.safetensors") * 6 / 10);

    // Loads for inference in fp32: every weight is exactly the bf16 rounding of the fp32 one.
    auto f = load_checkpoint(bf16_dir, cpu_backend(), ModelOptions{Precision::F32, false});
    const float* w32 = m32->params().weights();
    const float* wf = f->params().weights();
    int64_t mismatches = 0;
    for (int64_t i = 0; i < m32->params().size(); ++i) mismatches += wf[i] != round_bf16(w32[i]);
    EXPECT_EQ(mismatches, 0);

    // … and in bf16; both give the fp32 model's logits within the bf16 bound.
    auto b = load_checkpoint(bf16_dir, cpu_backend(), ModelOptions{Precision::BF16, false});
    Rng rng(9);
    const auto ids = random_ids(rng, kBatch * kSeq, m32->config().vocab_size);
    const auto l32 = logits_of(*m32, ids, kBatch, kSeq), lf = logits_of(*f, ids, kBatch, kSeq),
               lb = logits_of(*b, ids, kBatch, kSeq);
    std::printf("%s: bf16 checkpoint logits rel. error vs fp32: loaded fp32 %.3e, loaded bf16 %.3e\n", arch.c_str(),
                rel_error(lf, l32), rel_error(lb, l32));
    EXPECT_LE(rel_error(lf, l32), kLogitsRelBound);
    EXPECT_LE(rel_error(lb, l32), kLogitsRelBound);
    // The fp32 checkpoint loaded in bf16 runs the same bf16 matrices (vectors differ: fp32 there).
    auto b32 = load_checkpoint(fp32_dir, cpu_backend(), ModelOptions{Precision::BF16, false});
    EXPECT_LE(rel_error(logits_of(*b32, ids, kBatch, kSeq), lb), kLogitsRelBound);

    // Continuing training from the bf16 file is refused, naming it and the reason (train --resume calls this;
    // tests/test_bf16_train.sh checks the command). The fp32 file passes.
    try {
      require_fp32_checkpoint(bf16_dir);
      ADD_FAILURE() << "a bf16 checkpoint was accepted for training";
    } catch (const Error& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find("bf16"), std::string::npos) << msg;
      EXPECT_NE(msg.find("training"), std::string::npos) << msg;
      EXPECT_NE(msg.find("model.safetensors"), std::string::npos) << msg;
      EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
    }
    EXPECT_NO_THROW(require_fp32_checkpoint(fp32_dir));
    // Gradients of a bf16 file's weights as stored (`transxssm grads`, the reference test's bf16 case).
    EXPECT_NO_THROW(load_checkpoint(bf16_dir, cpu_backend(), ModelOptions{Precision::F32, true}));
    // The fp32 file still loads for training in bf16 (masters kept).
    EXPECT_NO_THROW(load_checkpoint(fp32_dir, cpu_backend(), ModelOptions{Precision::BF16, true}));

    // bf16 inference holds no fp32 matrices: no all_weights(), about half the bytes of fp32 inference.
    EXPECT_THROW(b->params().all_weights(), Error);
    EXPECT_THROW(b->params().weights(), Error);
    EXPECT_THROW(save_checkpoint((tmp.path / "resave").string(), *b), Error);
    int64_t lowp = 0;
    for (const auto& p : b->params().params()) lowp += p.low_precision ? p.numel : 0;
    const int64_t total = b->params().size();
    EXPECT_EQ(f->params().weight_bytes(), size_t(4 * total));
    EXPECT_EQ(b->params().weight_bytes(), size_t(2 * lowp + 4 * (total - lowp)));
    const double ratio = double(b->params().weight_bytes()) / double(f->params().weight_bytes());
    std::printf("%s: weight bytes fp32 inference %zu, bf16 inference %zu (ratio %.3f)\n", arch.c_str(),
                f->params().weight_bytes(), b->params().weight_bytes(), ratio);
    EXPECT_GE(ratio, 0.5);
    EXPECT_LE(ratio, 0.55);
    EXPECT_EQ(b->params().grad_bytes(), 0u);
  }
  std::fflush(stdout);
}
