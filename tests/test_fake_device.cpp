// The layers above src/ops are device-clean: with the fake device (fake_device_backend.h — a Device::Cuda
// backend whose memory is PROT_NONE outside its own calls), every architecture in fp32 and bf16 gives the
// CPU backend's results bit for bit — logits, loss, gradients, AdamW steps, checkpoints (save, load, a
// training run resumed), the inference engine (prefill, batched decode, greedy generation, snapshots), the
// eval scorers and the study's throughput measurement. Any host dereference of device memory on the way
// would have crashed with SIGSEGV; any host array handed to an op would have been refused.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "core/rng.h"
#include "eval/scorer.h"
#include "fake_device_backend.h"
#include "infer/engine.h"
#include "infer/generate.h"
#include "model/checkpoint.h"
#include "model/model.h"
#include "model/safetensors.h"
#include "study/measure.h"
#include "train/optimizer.h"
#include "train/train_setup.h"
#include "train/trainer.h"

using namespace txs;
using txs::test::fake_device_backend;

namespace fs = std::filesystem;

namespace {

// Small (milliseconds per pass), crossing SSD chunks (chunk 5), both kinds of layer in the hybrids.
nlohmann::json small_overrides(const std::string& arch) {
  return {{"arch", arch},           {"vocab_size", 64},         {"hidden_size", 32},
          {"intermediate_size", 48}, {"num_hidden_layers", 4},   {"num_attention_heads", 4},
          {"num_key_value_heads", 2}, {"attn_layer_period", 2},  {"attn_layer_offset", 1},
          {"ssm_chunk_size", 5},     {"mamba_head_dim", 16},     {"mamba_d_state", 8},
          {"max_position_embeddings", 64}};
}

ModelConfig small_config(const std::string& arch) { return resolve_config("", "", small_overrides(arch)); }

std::unique_ptr<Model> make(Backend& be, const std::string& arch, Precision p, bool training) {
  auto m = std::make_unique<Model>(small_config(arch), be, ModelOptions{p, training});
  m->init(42);
  return m;
}

std::vector<int32_t> random_ids(Rng& rng, int64_t n, int64_t vocab) {
  std::vector<int32_t> v(static_cast<size_t>(n));
  for (auto& x : v) x = int32_t(rng.below(uint64_t(vocab)));
  return v;
}

template <class T>
bool same_bits(const std::vector<T>& a, const std::vector<T>& b) {
  return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0);
}

std::string read_bytes(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

struct Case {
  std::string arch;
  Precision precision;
};

std::vector<Case> all_cases() {
  std::vector<Case> cases;
  for (const auto& arch : architecture_names())
    for (Precision p : {Precision::F32, Precision::BF16}) cases.push_back({arch, p});
  return cases;
}

std::string label(const Case& c) { return c.arch + "/" + precision_name(c.precision); }

// A fresh temporary folder, removed with everything in it when the test ends.
struct TempDir {
  fs::path path;
  explicit TempDir(const std::string& name)
      : path(fs::temp_directory_path() / ("txs_fake_device_" + std::to_string(::getpid()) + "_" + name)) {
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

}  // namespace

TEST(FakeDevice, RefusesHostArraysAndCatchesHostDereferences) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");  // OpenMP threads may be running
  auto& fake = fake_device_backend();
  DeviceBuffer buf(fake, DType::F32, 8);
  std::vector<float> host(8, 1.0f);
  // A host array given to an op is refused (as the CUDA backend must): tagged Cpu, or not its allocation.
  EXPECT_THROW(fake.scale(vec(host.data(), 8), 2.0f), Error);
  EXPECT_THROW(fake.scale(vec(host.data(), 8, Device::Cuda), 2.0f), Error);
  EXPECT_THROW(fake.upload(buf.raw(), buf.flat()), Error);  // device memory passed as the host side
  // Through the backend the memory works; the views carry Device::Cuda.
  fake.upload(host.data(), buf.flat());
  fake.scale(buf.flat(), 3.0f);
  EXPECT_EQ(buf.flat().device, Device::Cuda);
  std::vector<float> back(8);
  fake.download(buf.flat(), back.data());
  EXPECT_EQ(back[7], 3.0f);
  // Touching it from the host dies: that is what makes the model tests below meaningful.
  EXPECT_DEATH({ (void)*static_cast<volatile float*>(buf.raw()); }, "");
  // ParamStore / AdamW refuse to hand out host pointers of device memory.
  Model m(small_config("transxssm"), fake, ModelOptions{Precision::F32, true});
  EXPECT_THROW(m.params().weights(), Error);
  EXPECT_THROW(m.params().grads(), Error);
  AdamW opt(fake, m.params(), AdamWConfig{});
  EXPECT_THROW(opt.m(), Error);
}

// Forward (logits, log-probs, loss), backward (every gradient) and three AdamW steps: the CPU's bits.
TEST(FakeDevice, TrainingMatchesCpuBitForBit) {
  auto& fake = fake_device_backend();
  for (const Case& c : all_cases()) {
    SCOPED_TRACE(label(c));
    auto cpu = make(cpu_backend(), c.arch, c.precision, true), dev = make(fake, c.arch, c.precision, true);
    ASSERT_TRUE(same_bits(cpu->params().download_weights(), dev->params().download_weights()));
    const int64_t B = 2, T = 13, V = cpu->config().vocab_size;
    Rng rng(5);
    const auto ids = random_ids(rng, B * T, V);
    auto targets = random_ids(rng, B * T, V);
    targets[4] = -1;
    std::vector<int32_t> positions(size_t(B * T));
    for (size_t i = 0; i < positions.size(); ++i) positions[i] = int32_t(3 + i % size_t(T));

    std::vector<float> lc(size_t(B * T * V)), ld(lc.size()), pc(size_t(B * T)), pd(pc.size());
    const auto rc = cpu->forward(ids.data(), targets.data(), B, T, pc.data(), lc.data());
    const auto rd = dev->forward(ids.data(), targets.data(), B, T, pd.data(), ld.data());
    EXPECT_TRUE(same_bits(lc, ld)) << "logits";
    EXPECT_TRUE(same_bits(pc, pd)) << "target log-probs";
    EXPECT_EQ(rc.loss_sum, rd.loss_sum);
    EXPECT_EQ(rc.counted, rd.counted);

    AdamW oc(cpu_backend(), cpu->params(), AdamWConfig{}), od(fake, dev->params(), AdamWConfig{});
    for (int step = 0; step < 3; ++step) {
      for (Model* m : {cpu.get(), dev.get()}) {
        m->params().zero_grads();
        m->forward_backward(ids.data(), targets.data(), B, T, 1.0f / float(B * T), step == 1 ? positions.data() : nullptr);
      }
      ASSERT_TRUE(same_bits(cpu->params().download_grads(), dev->params().download_grads())) << "gradients, step " << step;
      EXPECT_EQ(oc.step(1e-2), od.step(1e-2));
      cpu->params().refresh_compute(), dev->params().refresh_compute();
    }
    EXPECT_TRUE(same_bits(cpu->params().download_weights(), dev->params().download_weights())) << "weights";
    EXPECT_TRUE(same_bits(download_floats(cpu_backend(), oc.m_tensor()), download_floats(fake, od.m_tensor())));
    EXPECT_TRUE(same_bits(download_floats(cpu_backend(), oc.v_tensor()), download_floats(fake, od.v_tensor())));
    // The last forward pass's logits after the updates, through the bf16 copies in the bf16 mode.
    cpu->forward(ids.data(), nullptr, B, T, nullptr, lc.data());
    dev->forward(ids.data(), nullptr, B, T, nullptr, ld.data());
    EXPECT_TRUE(same_bits(lc, ld)) << "logits after training";
  }
}

// save_checkpoint writes the CPU's file; load_checkpoint onto the device gives the CPU's weights.
TEST(FakeDevice, CheckpointSaveAndLoad) {
  auto& fake = fake_device_backend();
  const TempDir tmp("checkpoint");
  const fs::path& root = tmp.path;
  for (const std::string& arch : architecture_names()) {
    SCOPED_TRACE(arch);
    auto cpu = make(cpu_backend(), arch, Precision::F32, true), dev = make(fake, arch, Precision::F32, true);
    save_checkpoint((root / "cpu").string(), *cpu);
    save_checkpoint((root / "dev").string(), *dev);
    EXPECT_EQ(read_bytes(root / "cpu" / "model.safetensors"), read_bytes(root / "dev" / "model.safetensors"));
    for (Precision p : {Precision::F32, Precision::BF16})
      for (bool training : {true, false}) {
        auto a = load_checkpoint((root / "dev").string(), fake, ModelOptions{p, training});
        auto b = load_checkpoint((root / "dev").string(), cpu_backend(), ModelOptions{p, training});
        if (training || p == Precision::F32) {  // bf16 inference keeps no fp32 matrices
          EXPECT_TRUE(same_bits(a->params().download_weights(), b->params().download_weights()));
        }
        Rng rng(3);
        const auto ids = random_ids(rng, 9, a->config().vocab_size);
        std::vector<float> la(size_t(9 * a->config().vocab_size)), lb(la.size());
        a->forward(ids.data(), nullptr, 1, 9, nullptr, la.data());
        b->forward(ids.data(), nullptr, 1, 9, nullptr, lb.data());
        EXPECT_TRUE(same_bits(la, lb)) << precision_name(p) << (training ? " training" : " inference");
      }
  }
}

// A training run (train(): validation, checkpoints with the AdamW moments, the sample) on the device, resumed
// half-way, ends with the weights and moments of an uninterrupted CPU run.
TEST(FakeDevice, TrainingRunResumesToTheCpuRun) {
  auto& fake = fake_device_backend();
  const TempDir tmp("train");
  const fs::path& root = tmp.path;
  std::string text;
  for (int i = 0; i < 400; ++i)
    text += "The quick brown fox " + std::to_string(i * 7919 % 1000) + " jumps over the lazy dog. ";
  std::ofstream(root / "corpus.txt") << text;
  for (const std::string precision : {"fp32", "bf16"}) {
    for (const std::string arch : {"transxssm", "hybrid-conv", "jamba"}) {
      SCOPED_TRACE(arch + "/" + precision);
      auto request = [&](const std::string& out, int64_t steps, Backend& be) {
        TrainRequest r;
        TrainOptions& o = r.flags;
        o.arch = arch;
        o.model_overrides = small_overrides(arch);
        o.model_overrides.erase("vocab_size");  // the data's: 256 bytes
        o.data = {(root / "corpus.txt").string()};
        o.steps = steps, o.seq_len = 16, o.batch_size = 2, o.grad_accum = 2;
        o.schedule.kind = "constant", o.schedule.lr = 3e-3, o.schedule.warmup = 0;
        o.precision = precision;
        o.out = (root / out).string();
        o.val_every = 2, o.val_batches = 1, o.save_every = 2, o.sample_tokens = 3;
        r.backend = &be;
        return r;
      };
      const TrainResult whole = train(request("cpu_" + arch + precision, 4, cpu_backend()), RunRole{});
      const TrainResult half = train(request("dev_" + arch + precision, 2, fake), RunRole{});
      EXPECT_EQ(half.steps_done, 2);
      TrainRequest more = request("", 4, fake);
      more.resume_dir = (root / ("dev_" + arch + precision)).string();
      more.flags.steps = 4;
      more.given.insert("steps");
      const TrainResult rest = train(more, RunRole{});
      EXPECT_EQ(rest.last_loss, whole.last_loss);
      EXPECT_EQ(rest.last_val_loss, whole.last_val_loss);
      EXPECT_EQ(rest.sample, whole.sample);
      const fs::path a = root / ("cpu_" + arch + precision) / "checkpoint",
                     b = root / ("dev_" + arch + precision) / "checkpoint";
      EXPECT_EQ(read_bytes(a / "model.safetensors"), read_bytes(b / "model.safetensors"));
      SafetensorsReader sa((a / "train_state.safetensors").string()), sb((b / "train_state.safetensors").string());
      for (const char* name : {"adamw.m", "adamw.v"}) EXPECT_TRUE(same_bits(sa.read_f32(name), sb.read_f32(name))) << name;
    }
  }
}

// The inference engine: prefill (log-probs, last logits), per-token logits, batched decode at different
// positions, greedy generation, snapshots, forks — the CPU's bits.
TEST(FakeDevice, InferenceEngineMatchesCpuBitForBit) {
  auto& fake = fake_device_backend();
  const TempDir tmp("engine");
  const fs::path& root = tmp.path;
  for (const Case& c : all_cases()) {
    SCOPED_TRACE(label(c));
    auto cpu = make(cpu_backend(), c.arch, c.precision, false), dev = make(fake, c.arch, c.precision, false);
    InferenceEngine ec(*cpu), ed(*dev);
    EXPECT_EQ(ec.fingerprint(), ed.fingerprint());
    const int64_t V = cpu->config().vocab_size;
    Rng rng(9);
    const auto prompt = random_ids(rng, 11, V);
    std::vector<int32_t> targets(prompt.begin() + 1, prompt.end());
    targets.push_back(-1);

    SequenceState sc = ec.new_sequence(), sd = ed.new_sequence();
    std::vector<float> lpc(prompt.size()), lpd(prompt.size()), lastc(static_cast<size_t>(V)), lastd(lastc);
    ec.prefill(sc, prompt.data(), int64_t(prompt.size()), targets.data(), lpc.data(), lastc.data());
    ed.prefill(sd, prompt.data(), int64_t(prompt.size()), targets.data(), lpd.data(), lastd.data());
    EXPECT_TRUE(same_bits(lpc, lpd));
    EXPECT_TRUE(same_bits(lastc, lastd));

    // Every position's logits (echo + logprobs).
    std::vector<float> allc, alld;
    SequenceState ac = ec.new_sequence(), ad = ed.new_sequence();
    ec.prefill_each(ac, prompt.data(), int64_t(prompt.size()), [&](int64_t, const float* l) { allc.insert(allc.end(), l, l + V); });
    ed.prefill_each(ad, prompt.data(), int64_t(prompt.size()), [&](int64_t, const float* l) { alld.insert(alld.end(), l, l + V); });
    EXPECT_TRUE(same_bits(allc, alld));

    // Greedy generation from the prompt; a snapshot after the prompt continues identically.
    SamplingParams greedy;
    greedy.temperature = 0;
    SequenceState gc = sc, gd = sd;  // forks (copies through the backend)
    const auto tc = generate(ec, gc, {}, 10, greedy, 1, {}, nullptr, &lastc);
    const auto td = generate(ed, gd, {}, 10, greedy, 1, {}, nullptr, &lastd);
    EXPECT_EQ(tc, td);
    const std::string snap = (root / "state.bin").string();
    ed.save_state(sd, snap);
    SequenceState loaded = ed.load_state(snap);
    EXPECT_EQ(loaded.position(), sd.position());
    EXPECT_EQ(generate(ed, loaded, {}, 10, greedy, 1, {}, nullptr, &lastd), td);

    // A batched decode step over sequences at different positions, then sampling with temperature.
    std::vector<SequenceState*> bc{&sc, &gc}, bd{&sd, &gd};
    const int32_t next[2] = {1, 2};
    std::vector<float> dc(size_t(2 * V)), dd(dc.size());
    ec.decode(bc, next, dc.data());
    ed.decode(bd, next, dd.data());
    EXPECT_TRUE(same_bits(dc, dd));
    SamplingParams sp;
    sp.temperature = 0.8, sp.top_k = 10;
    EXPECT_EQ(generate(ec, sc, {3, 4}, 6, sp, 7), generate(ed, sd, {3, 4}, 6, sp, 7));
  }
}

// The eval scorers (batched forward, and the engine with prefix reuse) and the study's throughput
// measurement run on the device; the scores are the CPU's.
TEST(FakeDevice, EvalScorersAndThroughput) {
  auto& fake = fake_device_backend();
  for (const std::string& arch : architecture_names()) {
    SCOPED_TRACE(arch);
    auto cpu = make(cpu_backend(), arch, Precision::F32, false), dev = make(fake, arch, Precision::F32, false);
    std::vector<eval::LoglikRequest> reqs;
    Rng rng(13);
    for (int i = 0; i < 4; ++i)
      reqs.push_back({random_ids(rng, 6 + i, 64), random_ids(rng, 1 + i % 3, 64), true});
    reqs.push_back({reqs[0].context, random_ids(rng, 2, 64), true});  // shared prefix
    for (int kind = 0; kind < 2; ++kind) {
      std::unique_ptr<eval::LogLikelihoodScorer> a, b;
      if (kind == 0) a = std::make_unique<eval::ModelScorer>(*cpu, 64), b = std::make_unique<eval::ModelScorer>(*dev, 64);
      else a = eval::make_engine_scorer(*cpu), b = eval::make_engine_scorer(*dev);
      ASSERT_TRUE(a && b);
      const auto ra = a->score(reqs), rb = b->score(reqs);
      ASSERT_EQ(ra.size(), rb.size());
      for (size_t i = 0; i < ra.size(); ++i) {
        EXPECT_EQ(ra[i].logprob, rb[i].logprob) << a->name() << " request " << i;
        EXPECT_EQ(ra[i].is_greedy, rb[i].is_greedy);
      }
      std::vector<int32_t> ga = reqs[1].context, gb = ga;
      a->greedy_extend(ga, 5, {});
      b->greedy_extend(gb, 5, {});
      EXPECT_EQ(ga, gb) << a->name();
    }
    study::ThroughputOptions to;
    to.backend = &fake;
    to.train_steps = 1, to.decode_steps = 2;
    const study::Throughput t = study::measure_throughput(small_config(arch), 24, to);
    EXPECT_TRUE(t.skipped.empty()) << t.skipped;
    EXPECT_GT(t.train_tokens_per_s, 0);
    EXPECT_GT(t.decode_tokens_per_s, 0);
  }
  EXPECT_EQ(fake.live_allocations() > 0 || fake.ops_run() > 0, true);
}
