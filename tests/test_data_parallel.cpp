// Data parallelism without MPI: the pieces that make N processes compute what one does — the row shares of
// the sampler, the model's "gradients final" callback that drives the bucketed all-reduce, the buckets
// themselves (through a recording communicator), and the ZeRO-1 sharded AdamW update.
#include <gtest/gtest.h>

#include <algorithm>
#include <utility>
#include <vector>

#include "core/error.h"
#include "core/rng.h"
#include "core/threads.h"
#include "data/token_source.h"
#include "dist/communicator.h"
#include "model/model.h"
#include "model_fixtures.h"
#include "train/data_parallel.h"
#include "train/optimizer.h"
#include "train/training_data.h"

using namespace txs;

namespace {

ModelConfig tiny_config(bool tied = true) {
  ModelConfig c = resolve_config("transxssm", "tiny",
                                 {{"hidden_size", 64}, {"intermediate_size", 128}, {"num_hidden_layers", 3},
                                  {"num_attention_heads", 2}, {"num_key_value_heads", 2}, {"head_dim", 32},
                                  {"ssm_state_size", 32}, {"attn_layer_period", 2}, {"attn_layer_offset", 1},
                                  {"ssm_chunk_size", 16}, {"vocab_size", 128}, {"tie_word_embeddings", tied}});
  return c;
}

// A world of `size` processes seen from rank `rank`: collectives are recorded, sums leave data unchanged.
class Recording : public dist::Communicator {
 public:
  Recording(int rank, int size) : rank_(rank), size_(size) {}
  const char* name() const override { return "recording"; }
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  Handle allreduce_sum_async(const Tensor& x) override {
    issued.emplace_back(x.data, x.numel());
    return Handle(issued.size());
  }
  void wait(Handle h) override { waited.push_back(h); }
  void progress() override { ++progress_calls; }
  void reduce_scatter_sum(const Tensor&, const std::vector<int64_t>&) override { ++reduce_scatters; }
  void allgather(const Tensor&, const std::vector<int64_t>&) override { ++allgathers; }
  void gather(const Tensor&, const Tensor&, const std::vector<int64_t>&, int) override {}
  void broadcast(const Tensor&, int) override {}
  void barrier() override {}
  [[noreturn]] void abort(int, const std::string& m) override { fail("abort: {}", m); }
  std::vector<std::pair<void*, int64_t>> issued;
  std::vector<Handle> waited;
  int progress_calls = 0, reduce_scatters = 0, allgathers = 0;

 private:
  int rank_, size_;
};

}  // namespace

TEST(Shares, CoverEvenly) {
  for (int64_t n : {1, 2, 5, 8, 1001})
    for (int parts = 1; parts <= 4; ++parts) {
      if (n < parts) continue;
      auto c = dist::share_counts(n, parts);
      int64_t sum = 0;
      for (int p = 0; p < parts; ++p) {
        EXPECT_EQ(dist::share_begin(n, parts, p), sum);
        EXPECT_GE(c[size_t(p)], n / parts);
        EXPECT_LE(c[size_t(p)], n / parts + 1);
        sum += c[size_t(p)];
      }
      EXPECT_EQ(sum, n);
    }
}

// Every world size sees the same global batch: the processes' rows, put together, are sample_batch's.
TEST(Sampler, RowSharesMakeTheGlobalBatch) {
  Rng rng(3);
  InMemoryTokens src(test::random_ids(rng, 5000, 256));
  const int64_t B = 6, T = 16;
  for (int64_t index : {0, 7, 123}) {
    std::vector<int32_t> ids(B * T), tg(B * T);
    sample_batch(src, 9, index, B, T, ids.data(), tg.data());
    for (int world = 1; world <= 4; ++world) {
      std::vector<int32_t> ids2, tg2;
      for (int r = 0; r < world; ++r) {
        const int64_t r0 = dist::share_begin(B, world, r), r1 = dist::share_begin(B, world, r + 1);
        std::vector<int32_t> a((r1 - r0) * T), b((r1 - r0) * T);
        sample_rows(src, 9, index, r0, r1, T, a.data(), b.data());
        ids2.insert(ids2.end(), a.begin(), a.end());
        tg2.insert(tg2.end(), b.begin(), b.end());
      }
      EXPECT_EQ(ids, ids2) << "world " << world;
      EXPECT_EQ(tg, tg2) << "world " << world;
    }
    std::vector<int32_t> v(B * T), vt(B * T), v2((B - 2) * T), vt2((B - 2) * T);
    validation_batch(src, 1, 3, B, T, v.data(), vt.data());
    validation_rows(src, 1, 3, B, T, 2, B, v2.data(), vt2.data());
    EXPECT_TRUE(std::equal(v2.begin(), v2.end(), v.begin() + 2 * T));
  }
}

// The callback reports contiguous, decreasing ranges covering the gradient buffer, each after its
// gradients are final; it changes nothing in what is computed.
TEST(GradsReady, RangesDecreaseCoverAndAreFinal) {
  set_num_threads(1);
  for (bool tied : {true, false}) {
    Model m(tiny_config(tied));
    m.init(1);
    Rng rng(5);
    const int64_t B = 2, T = 16;
    auto ids = test::random_ids(rng, B * T, 128), tg = test::random_ids(rng, B * T, 128);
    m.params().zero_grads();
    m.forward_backward(ids.data(), tg.data(), B, T, 0.01f);
    const std::vector<float> plain(m.params().grads(), m.params().grads() + m.params().size());
    m.params().zero_grads();
    std::vector<std::pair<int64_t, int64_t>> ranges;
    std::vector<std::vector<float>> at_report;
    m.forward_backward(ids.data(), tg.data(), B, T, 0.01f, nullptr, [&](int64_t lo, int64_t hi) {
      ranges.emplace_back(lo, hi);
      at_report.emplace_back(m.params().grads() + lo, m.params().grads() + hi);
    });
    const float* g = m.params().grads();
    EXPECT_TRUE(std::equal(plain.begin(), plain.end(), g)) << "the callback changed the gradients";
    ASSERT_EQ(ranges.size(), size_t(m.config().num_hidden_layers + 2));
    EXPECT_EQ(ranges.front().second, m.params().size());
    EXPECT_EQ(ranges.back().first, 0);
    for (size_t k = 1; k < ranges.size(); ++k) EXPECT_EQ(ranges[k].second, ranges[k - 1].first);
    for (size_t k = 0; k < ranges.size(); ++k)  // final when reported
      EXPECT_TRUE(std::equal(at_report[k].begin(), at_report[k].end(), g + ranges[k].first)) << "range " << k;
  }
}

// Plain data parallelism: buckets are started during the backward pass, in the order the gradients become
// final, and together cover the buffer once.
TEST(DataParallel, BucketsStartDuringBackward) {
  set_num_threads(1);
  Model m(tiny_config());
  m.init(1);
  Recording comm(0, 2);
  DistOptions o;
  o.bucket_mb = 20000 * 4 / (1024.0 * 1024.0);  // 20000 floats: about one block
  DataParallel dp(comm, o, m.params());
  Rng rng(5);
  auto ids = test::random_ids(rng, 32, 128), tg = test::random_ids(rng, 32, 128);
  dp.begin_step();
  m.forward_backward(ids.data(), tg.data(), 1, 32, 0.01f, nullptr, dp.grads_ready_hook());
  const size_t during = comm.issued.size();
  EXPECT_GE(during, 2u) << "no bucket was started during the backward pass";
  EXPECT_GT(comm.progress_calls, 0);
  dp.finish_gradients();
  EXPECT_EQ(comm.waited.size(), comm.issued.size());
  int64_t covered = 0;
  const float* end = m.params().grads() + m.params().size();
  for (auto& [p, n] : comm.issued) {
    EXPECT_EQ(static_cast<float*>(p) + n, end - covered);  // decreasing, contiguous
    covered += n;
  }
  EXPECT_EQ(covered, m.params().size());
  // ZeRO-1: no all-reduce, a reduce-scatter after the backward pass and an all-gather after the update.
  Recording comm2(1, 2);
  o.zero1 = true;
  DataParallel dz(comm2, o, m.params());
  dz.begin_step();
  EXPECT_FALSE(bool(dz.grads_ready_hook()));
  dz.finish_gradients();
  dz.after_update();
  EXPECT_EQ(comm2.reduce_scatters, 1);
  EXPECT_EQ(comm2.allgathers, 1);
  EXPECT_TRUE(comm2.issued.empty());
  EXPECT_EQ(dz.shard_lo(), dist::share_begin(m.params().size(), 2, 1));
  EXPECT_EQ(dz.shard_hi(), m.params().size());
}

// ZeRO-1: the shards' updates, put together, are the whole update bit for bit (same global norm given).
TEST(ShardedAdamW, ShardsMakeTheWholeUpdate) {
  set_num_threads(1);
  Model full(tiny_config()), part(tiny_config());
  full.init(2);
  part.init(2);
  Rng rng(7);
  const int64_t n = full.params().size();
  for (int64_t i = 0; i < n; ++i) full.params().grads()[i] = float(rng.normal() * 0.1);
  AdamWConfig cfg;
  cfg.clip_norm = 0.5;  // clipping active
  AdamW a(full.backend(), full.params(), cfg);
  const int world = 3;
  std::vector<float> w0(full.params().weights(), full.params().weights() + n);
  std::vector<float> g0(full.params().grads(), full.params().grads() + n);
  for (int step = 0; step < 3; ++step) {
    const double norm = a.grad_norm();
    a.apply(1e-2, norm);
    std::copy(g0.begin(), g0.end(), full.params().grads());  // apply() clipped them in place
  }
  std::vector<float> w(n);
  for (int r = 0; r < world; ++r) {
    const int64_t lo = dist::share_begin(n, world, r), hi = dist::share_begin(n, world, r + 1);
    std::copy(w0.begin(), w0.end(), part.params().weights());
    AdamW s(part.backend(), part.params(), cfg, lo, hi);
    EXPECT_TRUE(s.sharded());
    EXPECT_EQ(s.size(), hi - lo);
    for (int step = 0; step < 3; ++step) {
      std::copy(g0.begin(), g0.end(), part.params().grads());
      double sq = 0;  // the global norm from the shards' sums of squares
      for (int q = 0; q < world; ++q) {
        AdamW probe(part.backend(), part.params(), cfg, dist::share_begin(n, world, q), dist::share_begin(n, world, q + 1));
        sq += probe.shard_sum_squares();
      }
      EXPECT_NEAR(std::sqrt(sq), a.grad_norm(), 1e-9 * a.grad_norm());
      s.apply(1e-2, a.grad_norm());
    }
    std::copy(part.params().weights() + lo, part.params().weights() + hi, w.begin() + lo);
    EXPECT_TRUE(std::equal(a.m() + lo, a.m() + hi, s.m()));
    EXPECT_TRUE(std::equal(a.v() + lo, a.v() + hi, s.v()));
  }
  EXPECT_TRUE(std::equal(w.begin(), w.end(), full.params().weights()));
}
