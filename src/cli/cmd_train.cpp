// `transxssm train` and `transxssm plot`.
#include <fmt/format.h>

#include <algorithm>
#include <filesystem>

#include "cli/commands.h"
#include "core/error.h"
#include "dist/communicator.h"
#include "train/data_parallel.h"
#include "train/plot.h"
#include "train/train_setup.h"
#include "train/trainer.h"

namespace txs::cli {

void register_train_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("train", "Train a model on text files or prepared token shards");
  // A flag given twice takes its last value, so scripts/demo.sh can pass overrides after its defaults.
  cmd->option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  auto o = std::make_shared<TrainOptions>();
  auto resume = std::make_shared<std::string>();
  auto config = std::make_shared<std::string>();
  cmd->add_option("--config", *config, "JSON file: arch, size, model field overrides, and a \"train\" object "
                                       "with any training option (command-line flags win)");
  cmd->add_option("--arch", o->arch, "architecture: transxssm transformer mamba2 jamba hybrid-conv hybrid-nope");
  cmd->add_option("--size", o->size, "size preset: tiny 320m 1.3b");
  cmd->add_option("--data", o->data, "text files / directories, or one `prepare` output directory")
      ->expected(1, -1)
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  cmd->add_option("--tokenizer", o->tokenizer, "tokenizer.json (default: UTF-8 bytes as tokens)");
  cmd->add_option("--val-fraction", o->val_fraction, "share of text held out for validation");
  cmd->add_option("--steps", o->steps, "optimizer steps");
  cmd->add_option("--seq-len", o->seq_len, "tokens per sequence");
  cmd->add_option("--batch-size", o->batch_size, "sequences per micro-batch");
  cmd->add_option("--grad-accum", o->grad_accum, "micro-batches per optimizer step");
  cmd->add_option("--lr", o->schedule.lr, "peak learning rate");
  cmd->add_option("--min-lr", o->schedule.min_lr, "final learning rate");
  cmd->add_option("--warmup", o->schedule.warmup, "linear warmup steps");
  cmd->add_option("--schedule", o->schedule.kind, "cosine | wsd | constant");
  cmd->add_option("--decay-fraction", o->schedule.decay_fraction, "WSD: final fraction of steps that decays");
  cmd->add_option("--weight-decay", o->adamw.weight_decay, "AdamW decoupled weight decay");
  cmd->add_option("--beta1", o->adamw.beta1);
  cmd->add_option("--beta2", o->adamw.beta2);
  cmd->add_option("--clip-norm", o->adamw.clip_norm, "global gradient-norm clip (0: off)");
  cmd->add_option("--seed", o->seed, "seed for initialisation and data sampling");
  cmd->add_option("--precision", o->precision,
                  "fp32 | bf16 (bf16 products with fp32 accumulation; fp32 master weights, gradients, moments)");
  auto device = std::make_shared<std::string>("cpu");
  cmd->add_option("--device", *device, std::string(kDeviceHelp) + "; not saved: a run may resume on another device");
  cmd->add_option("--nonfinite", o->nonfinite,
                  "a step with NaN/inf loss or gradient norm: stop (error, last good checkpoint kept) or skip "
                  "(drop its update, log it, go on)");
  cmd->add_option("--max-skips", o->max_skips, "with --nonfinite skip: most consecutive skipped steps before stopping");
  cmd->add_option("--out", o->out, "run directory (checkpoint, metrics.jsonl, loss.svg)");
  cmd->add_option("--save-every", o->save_every, "checkpoint every K steps (0: at the end only)");
  cmd->add_option("--val-every", o->val_every, "validation loss every K steps (0: never)");
  cmd->add_option("--val-batches", o->val_batches, "batches per validation");
  cmd->add_option("--threads", o->threads, "compute threads (default: all cores)");
  cmd->add_option("--sample-tokens", o->sample_tokens, "print a sample of this many tokens at the end");
  cmd->add_option("--sample-prompt", o->sample_prompt, "prompt of that sample");
  cmd->add_option("--resume", *resume, "continue the run in this directory exactly where it stopped");
  auto dist = std::make_shared<DistOptions>();
  cmd->add_flag("--zero1", dist->zero1,
                "data parallelism (mpirun -np N): shard the AdamW moments over the processes (ZeRO-1)");
  cmd->add_option("--dist-timeout", dist->timeout_s,
                  "data parallelism: seconds a collective may wait before the job is aborted (a peer died or hangs)");
  cmd->add_option("--bucket-mb", dist->bucket_mb, "data parallelism: gradient all-reduce bucket size in MB");
  cmd->callback([=] {
    // Only collects what was given; src/train/train_setup.cpp merges it with the config file and resume state.
    TrainRequest request{*o, {}, *config, *resume, *dist};
    request.device = *device;
    (void)parse_device(request.device);  // an unknown name fails before any process sets up
    for (const CLI::Option* opt : cmd->get_options()) {
      if (opt->count() == 0 || opt->get_lnames().empty()) continue;
      std::string key = opt->get_lnames().front();
      std::replace(key.begin(), key.end(), '-', '_');
      request.given.insert(key);
    }
    if (!(dist->timeout_s > 0) || !(dist->bucket_mb > 0)) fail("train: --dist-timeout and --bucket-mb must be positive");
    // One process, or one of the `mpirun -np N` processes (then only rank 0 prints and writes).
    std::unique_ptr<dist::Communicator> comm = dist::make_communicator(dist->timeout_s, parse_device(request.device));
    const RunRole role{comm->rank(), comm->size(), comm->local_size(), comm.get()};
    TrainResult r;
    if (role.world_size == 1) {
      r = train(request, role);
    } else {
      try {
        r = train(request, role);
      } catch (const std::exception& e) {
        // The other processes would wait for this one forever: end the whole job.
        comm->abort(1, fmt::format("error: {}", e.what()));
      }
      if (!role.writes_outputs()) return;
    }
    fmt::print("done: {} steps, final loss {:.4f}", r.steps_done, r.last_loss);
    if (r.last_val_loss > 0) fmt::print(", val loss {:.4f}", r.last_val_loss);
    if (r.first_val_loss > 0) fmt::print(" (start {:.4f})", r.first_val_loss);
    fmt::print("\n");
    fmt::print("checkpoint: {}\nmetrics:    {}\nloss curve: {}\n", r.checkpoint_dir, r.metrics_path, r.curve_path);
    if (!r.sample.empty()) fmt::print("sample:\n{}\n", r.sample);
  });

  auto* plot = app.add_subcommand("plot", "Draw a run's loss curve (SVG) from its metrics.jsonl");
  auto run = std::make_shared<std::string>();
  auto out = std::make_shared<std::string>();
  plot->add_option("--run", *run, "run directory")->required();
  plot->add_option("--out", *out, "SVG path (default RUN/loss.svg)");
  plot->callback([=] {
    const std::string path = out->empty() ? *run + "/loss.svg" : *out;
    write_loss_svg(path, read_metrics(*run + "/metrics.jsonl"), std::filesystem::path(*run).filename().string());
    fmt::print("wrote {}\n", path);
  });
}

}  // namespace txs::cli
