// The whole model on a device backend against the CPU backend, for the six architectures in fp32 and in the
// bf16 mode: logits and loss, every parameter tensor's gradient, the device's stateful decoding against its
// own Model::forward, and greedy generation against the CPU's tokens. The device is a parameter: "cuda"
// (backend_for(Device::Cuda); skipped with cuda_unavailable_reason() where this build or machine has no
// GPU) and "fake_device" (fake_device_backend.h: the CPU kernels behind memory the host cannot touch), which
// runs the same checks here. Perturbed fake devices (one op's output nudged) show that each check fails
// when the op it covers is wrong.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>
#include <string>

#include "core/rng.h"
#include "fake_device_backend.h"
#include "infer/engine.h"
#include "infer/generate.h"
#include "model/model.h"
#include "model_fixtures.h"

using namespace txs;
using txs::test::small_config;

namespace {

// ---- the devices under test ------------------------------------------------------------------------------------

struct DeviceUnderTest {
  const char* name;
  Backend& (*factory)();
  std::string (*unavailable)();  // why it cannot run here ("" when it can)
};

Backend& cuda_device() { return backend_for(Device::Cuda); }
Backend& fake_device() { return test::fake_device_backend(); }
std::string always_available() { return ""; }

const DeviceUnderTest kDevices[] = {
    {"cuda", cuda_device, cuda_unavailable_reason},
    {"fake_device", fake_device, always_available},
};

// ---- model, inputs, bounds --------------------------------------------------------------------------------------

constexpr int64_t kBatch = 2, kSeq = 24;

// Weights far from the initialisation (as tests/model_fixtures.h draws them, on the host): init()'s values
// (A_log, dt_bias, … in their proper ranges), then non-unit norms, residual scales and D and larger
// projections — every path changes the output and the logits are well spread. Everything reaches the
// backend through ParamStore::load (an upload).
std::unique_ptr<Model> make(Backend& be, const std::string& arch, Precision p, bool training) {
  Model host(small_config(arch), cpu_backend(), ModelOptions{Precision::F32, true});
  host.init(7);
  std::vector<float> w = host.params().download_weights();
  Rng rng(99);
  for (const Param& q : host.params().params()) {
    float* x = w.data() + q.offset;
    const bool unit = q.name.find("norm") != std::string::npos || q.name.find("residual") != std::string::npos ||
                      (q.name.size() > 2 && q.name.substr(q.name.size() - 2) == ".D");
    const bool matrix = q.name.find("proj") != std::string::npos || q.name.find("embed") != std::string::npos ||
                        q.name.find("lm_head") != std::string::npos || q.name.find("conv1d") != std::string::npos;
    if (unit)
      for (int64_t i = 0; i < q.numel; ++i) x[i] = float(1.0 + 0.3 * rng.normal());
    else if (matrix)
      for (int64_t i = 0; i < q.numel; ++i) x[i] = float(0.3 * rng.normal());
  }
  auto m = std::make_unique<Model>(small_config(arch), be, ModelOptions{p, training});
  for (const Param& q : m->params().params()) m->params().load(q, w.data() + q.offset);
  m->params().refresh_compute();
  return m;
}

std::vector<int32_t> random_ids(Rng& rng, int64_t n, int64_t vocab) {
  std::vector<int32_t> v(static_cast<size_t>(n));
  for (auto& x : v) x = int32_t(rng.below(uint64_t(vocab)));
  return v;
}

// max|a − b| / max|b|
double rel_error(const float* a, const float* b, size_t n) {
  double diff = 0, scale = 0;
  for (size_t i = 0; i < n; ++i) {
    diff = std::max(diff, std::abs(double(a[i]) - double(b[i])));
    scale = std::max(scale, std::abs(double(b[i])));
  }
  if (scale == 0) return diff == 0 ? 0 : INFINITY;
  return std::isnan(diff) ? INFINITY : diff / scale;
}

double cosine(const float* a, const float* b, int64_t n) {
  double ab = 0, aa = 0, bb = 0;
  for (int64_t i = 0; i < n; ++i) ab += double(a[i]) * b[i], aa += double(a[i]) * a[i], bb += double(b[i]) * b[i];
  if (aa == 0 && bb == 0) return 1;
  return ab / std::sqrt(aa * bb);
}

// What the device may differ by. fp32: summation order only. bf16 mode: test_bf16.cpp's bounds (there for
// bf16 against fp32; here both sides run the bf16 mode, so they are generous).
struct Bounds {
  double logits_rel;      // logits and loss, max|dev − cpu| / max|cpu|
  double grad_rel;        // per gradient tensor, same measure (0: not checked)
  double grad_cosine;     // per gradient tensor, minimum cosine
  double stateful_rel;    // the device's prefill + decode against its own forward
  double greedy_margin;   // greedy tokens from the first CPU top-2 gap below this × max|logit| on are not compared
  int64_t greedy_min;     // tokens that must be comparable (a prefix of clear argmaxes) for a meaningful check
};
Bounds bounds_for(Precision p) {
  if (p == Precision::F32) return {1e-4, 1e-3, 0.99999, 1e-4, 1e-3, 8};
  // bf16: a gap of the logits bound; clear argmaxes are rarer there, so fewer tokens are required.
  return {3e-2, 0, 0.99, 2e-2, 3e-2, 2};
}

// ---- the checks (they measure; the tests assert) ------------------------------------------------------------

struct TrainingReport {
  double logits_rel = 0, loss_rel = 0, grad_rel = 0, grad_cosine = 1;
  std::string worst_tensor;
};

TrainingReport compare_training(Backend& dev, const std::string& arch, Precision p) {
  auto cpu = make(cpu_backend(), arch, p, true), d = make(dev, arch, p, true);
  Rng rng(7);
  const int64_t V = cpu->config().vocab_size, n = kBatch * kSeq;
  const auto ids = random_ids(rng, n, V);
  auto targets = random_ids(rng, n, V);
  targets[3] = -1;
  TrainingReport r;
  std::vector<float> lc(size_t(n * V)), ld(lc.size());
  cpu->forward(ids.data(), nullptr, kBatch, kSeq, nullptr, lc.data());
  d->forward(ids.data(), nullptr, kBatch, kSeq, nullptr, ld.data());
  r.logits_rel = rel_error(ld.data(), lc.data(), lc.size());
  const float gs = 1.0f / float(n - 1);
  cpu->params().zero_grads(), d->params().zero_grads();
  const auto rc = cpu->forward_backward(ids.data(), targets.data(), kBatch, kSeq, gs);
  const auto rd = d->forward_backward(ids.data(), targets.data(), kBatch, kSeq, gs);
  r.loss_rel = std::abs(rd.loss_sum - rc.loss_sum) / std::abs(rc.loss_sum);
  if (!std::isfinite(r.loss_rel) || rd.counted != rc.counted) r.loss_rel = INFINITY;
  const std::vector<float> gc = cpu->params().download_grads(), gd = d->params().download_grads();
  for (const Param& q : cpu->params().params()) {
    const double rel = rel_error(gd.data() + q.offset, gc.data() + q.offset, size_t(q.numel));
    const double cos = cosine(gd.data() + q.offset, gc.data() + q.offset, q.numel);
    if (rel > r.grad_rel || cos < r.grad_cosine) r.worst_tensor = q.name;
    r.grad_rel = std::max(r.grad_rel, rel);
    r.grad_cosine = std::min(r.grad_cosine, std::isnan(cos) ? -1.0 : cos);
  }
  return r;
}

// The device's engine (prefill of the first 10 tokens, then one decode step per token) against the device's
// own Model::forward of the whole row, at every position from the prompt's last.
double stateful_vs_forward(Backend& dev, const std::string& arch, Precision p) {
  auto m = make(dev, arch, p, false);
  const int64_t V = m->config().vocab_size, prompt = 10;
  Rng rng(21);
  const auto ids = random_ids(rng, kSeq, V);
  std::vector<float> full(size_t(kSeq * V));
  m->forward(ids.data(), nullptr, 1, kSeq, nullptr, full.data());
  InferenceEngine engine(*m);
  SequenceState s = engine.new_sequence();
  std::vector<float> step(static_cast<size_t>(V));
  double worst = 0;
  engine.prefill(s, ids.data(), prompt, nullptr, nullptr, step.data());
  worst = std::max(worst, rel_error(step.data(), full.data() + (prompt - 1) * V, size_t(V)));
  std::vector<SequenceState*> one{&s};
  for (int64_t t = prompt; t < kSeq; ++t) {
    engine.decode(one, &ids[size_t(t)], step.data());
    worst = std::max(worst, rel_error(step.data(), full.data() + t * V, size_t(V)));
  }
  return worst;
}

struct GreedyReport {
  std::vector<int32_t> cpu, device;
  int64_t comparable = 0;  // leading tokens whose every CPU step had a clear argmax (the device must match them)
};

// Greedy generation (generate(): prefill, then decode) on both; the CPU's top-2 gaps decide how long a
// prefix is well defined: after a near-tie either choice is right.
GreedyReport compare_greedy(Backend& dev, const std::string& arch, Precision p, double margin) {
  auto cpu = make(cpu_backend(), arch, p, false), d = make(dev, arch, p, false);
  const int64_t V = cpu->config().vocab_size, n_new = 16;
  Rng rng(33);
  const auto prompt = random_ids(rng, 9, V);
  SamplingParams greedy;
  greedy.temperature = 0;
  InferenceEngine ec(*cpu), ed(*d);
  GreedyReport r;
  SequenceState sc = ec.new_sequence(), sd = ed.new_sequence();
  r.cpu = generate(ec, sc, prompt, n_new, greedy, 0);
  r.device = generate(ed, sd, prompt, n_new, greedy, 0);
  // The CPU's margins along its own sequence.
  SequenceState s = ec.new_sequence();
  std::vector<float> logits(static_cast<size_t>(V));
  ec.prefill(s, prompt.data(), int64_t(prompt.size()), nullptr, nullptr, logits.data());
  std::vector<SequenceState*> one{&s};
  for (size_t k = 0; k < r.cpu.size(); ++k) {
    std::vector<float> sorted = logits;
    std::partial_sort(sorted.begin(), sorted.begin() + 2, sorted.end(), std::greater<float>());
    double scale = 0;
    for (float x : logits) scale = std::max(scale, double(std::abs(x)));
    if (double(sorted[0]) - double(sorted[1]) < margin * scale) break;
    r.comparable = int64_t(k) + 1;
    ec.decode(one, &r.cpu[k], logits.data());
  }
  return r;
}

// ---- the tests ----------------------------------------------------------------------------------------------

struct Param2 {
  DeviceUnderTest device;
  Precision precision;
};

class DeviceModel : public ::testing::TestWithParam<Param2> {
 protected:
  void SetUp() override {
    if (const std::string why = GetParam().device.unavailable(); !why.empty()) GTEST_SKIP() << why;
  }
  Backend& dev() { return GetParam().device.factory(); }
  Precision precision() const { return GetParam().precision; }
  Bounds bounds() const { return bounds_for(GetParam().precision); }
};

TEST_P(DeviceModel, LogitsAndGradientsMatchCpu) {
  std::printf("%-12s %12s %12s %12s %12s  %s\n", "arch", "logits rel", "loss rel", "grad rel", "grad cos", "(tensor)");
  for (const auto& arch : architecture_names()) {
    const TrainingReport r = compare_training(dev(), arch, precision());
    std::printf("%-12s %12.3e %12.3e %12.3e %12.8f  %s\n", arch.c_str(), r.logits_rel, r.loss_rel, r.grad_rel,
                r.grad_cosine, r.worst_tensor.c_str());
    EXPECT_LE(r.logits_rel, bounds().logits_rel) << arch;
    EXPECT_LE(r.loss_rel, bounds().logits_rel) << arch;
    if (bounds().grad_rel > 0) {
      EXPECT_LE(r.grad_rel, bounds().grad_rel) << arch << " " << r.worst_tensor;
    }
    EXPECT_GE(r.grad_cosine, bounds().grad_cosine) << arch << " " << r.worst_tensor;
  }
  std::fflush(stdout);
}

TEST_P(DeviceModel, StatefulDecodeFollowsForward) {
  for (const auto& arch : architecture_names()) {
    const double rel = stateful_vs_forward(dev(), arch, precision());
    std::printf("%-12s stateful vs forward: %.3e\n", arch.c_str(), rel);
    EXPECT_LE(rel, bounds().stateful_rel) << arch;
  }
  std::fflush(stdout);
}

TEST_P(DeviceModel, GreedyGenerationMatchesCpu) {
  for (const auto& arch : architecture_names()) {
    const GreedyReport r = compare_greedy(dev(), arch, precision(), bounds().greedy_margin);
    std::printf("%-12s greedy: %lld of %zu tokens comparable\n", arch.c_str(), static_cast<long long>(r.comparable),
                r.cpu.size());
    ASSERT_EQ(r.device.size(), r.cpu.size()) << arch;
    EXPECT_GE(r.comparable, bounds().greedy_min) << arch << ": too many near-ties for a meaningful comparison";
    for (int64_t k = 0; k < r.comparable; ++k) EXPECT_EQ(r.device[size_t(k)], r.cpu[size_t(k)]) << arch << " token " << k;
  }
  std::fflush(stdout);
}

std::vector<Param2> all_params() {
  std::vector<Param2> v;
  for (const auto& d : kDevices)
    for (Precision p : {Precision::F32, Precision::BF16}) v.push_back({d, p});
  return v;
}

INSTANTIATE_TEST_SUITE_P(Devices, DeviceModel, ::testing::ValuesIn(all_params()),
                         [](const ::testing::TestParamInfo<Param2>& i) {
                           return std::string(i.param.device.name) + "_" + precision_name(i.param.precision);
                         });

// ---- the checks can fail --------------------------------------------------------------------------------------

// A fake device with one op's output slightly wrong (its first row scaled by `factor`).
class PerturbedDevice final : public test::FakeDeviceBackend {
 public:
  PerturbedDevice(std::string op, float factor) : op_(std::move(op)), factor_(factor) {}
  void rmsnorm_forward(const Tensor& x, const Tensor& gain, const Tensor& y, const Tensor& rstd, double eps) override {
    FakeDeviceBackend::rmsnorm_forward(x, gain, y, rstd, eps);
    nudge("rmsnorm_forward", y);
  }
  void linear_backward(const Tensor& dy, const Tensor& x, const Tensor& W, const Tensor& dx, const Tensor& dW,
                       bool accumulate_dx) override {
    FakeDeviceBackend::linear_backward(dy, x, W, dx, dW, accumulate_dx);
    nudge("linear_backward", dW);
  }
  void ssd_step(int64_t heads, int64_t head_dim, int64_t groups, int64_t state_dim, const Tensor& x, const Tensor& dt,
                const Tensor& A, const Tensor& B, const Tensor& C, const Tensor& D, const Tensor& state,
                const Tensor& y) override {
    FakeDeviceBackend::ssd_step(heads, head_dim, groups, state_dim, x, dt, A, B, C, D, state, y);
    nudge("ssd_step", y);
  }
  void attention_decode(int64_t heads, int64_t kv_heads, int64_t head_dim, const Tensor& q, const Tensor& k,
                        const Tensor& v, const Tensor& out) override {
    FakeDeviceBackend::attention_decode(heads, kv_heads, head_dim, q, k, v, out);
    nudge("attention_decode", out);
  }
  void lm_head_logits(const Tensor& h, const Tensor& W, const Tensor& logits) override {
    FakeDeviceBackend::lm_head_logits(h, W, logits);
    nudge("lm_head_logits", logits);
  }

 private:
  void nudge(const char* op, const Tensor& t) {
    if (op_ == op) scale(t.row_slice(0, 1), factor_);
  }
  std::string op_;
  float factor_;
};

TEST(DeviceModelChecks, FailOnAWrongOp) {
  const Bounds b = bounds_for(Precision::F32);
  {  // forward: a 1% error in one norm's first row
    PerturbedDevice dev("rmsnorm_forward", 1.01f);
    const TrainingReport r = compare_training(dev, "transxssm", Precision::F32);
    EXPECT_GT(r.logits_rel, b.logits_rel);
  }
  {  // backward only: the logits are right, the weight gradients are not
    PerturbedDevice dev("linear_backward", 1.01f);
    const TrainingReport r = compare_training(dev, "transxssm", Precision::F32);
    EXPECT_EQ(r.logits_rel, 0);
    EXPECT_GT(r.grad_rel, b.grad_rel);
  }
  // decoding only: the forward pass is right, the recurrent step / the KV-cache attention is not
  for (const char* op : {"ssd_step", "attention_decode"}) {
    PerturbedDevice dev(op, 1.01f);
    EXPECT_EQ(compare_training(dev, "transxssm", Precision::F32).logits_rel, 0) << op;
    EXPECT_GT(stateful_vs_forward(dev, "transxssm", Precision::F32), b.stateful_rel) << op;
  }
  {  // generation: flipped logits make the argmax the argmin
    PerturbedDevice dev("lm_head_logits", -1.0f);
    const GreedyReport r = compare_greedy(dev, "transxssm", Precision::F32, b.greedy_margin);
    ASSERT_GE(r.comparable, 1);
    EXPECT_NE(r.device[0], r.cpu[0]);
  }
  // And unperturbed, the same fake device passes every bound exactly.
  auto& fake = test::fake_device_backend();
  const TrainingReport r = compare_training(fake, "transxssm", Precision::F32);
  EXPECT_EQ(r.logits_rel, 0);
  EXPECT_EQ(r.grad_rel, 0);
  EXPECT_EQ(stateful_vs_forward(fake, "transxssm", Precision::F32),
            stateful_vs_forward(cpu_backend(), "transxssm", Precision::F32));
}

}  // namespace
