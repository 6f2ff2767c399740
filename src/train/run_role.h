// Which work every process of a training run does and which only the first does. Today a run is one
// process (rank 0 of 1); the split is explicit so that data parallelism only has to add communication.
//
// Every process: set-up (options, data, model, optimizer state), sampling its micro-batches, forward and
// backward, the optimizer step and validation, so that all processes hold the same weights.
// Only the process that writes_outputs(): the run directory, metrics.jsonl, the progress line, loss.svg,
// checkpoints and the sample text. RunOutputs (run_outputs.h) is the one place that checks it.
//
// A data-parallel run will add:
//  - an all-reduce (sum) of the gradients, and of the loss sum and token count, between the last backward
//    and the optimizer step (train_step), so every process applies the same clipped update and takes the
//    same decision on a non-finite loss or gradient norm (checked after the reduction: stop or skip together);
//  - a sampler indexed by the global sample: micro-batch (step, micro) is global rows 0..B-1 drawn by
//    hash(seed, step·accum + micro, row) as today, and process r takes rows r·B/W .. (r+1)·B/W-1, so every
//    world size sees the same global batch and the same loss curve (W = 1 is today's sampler);
//  - validation batches split across processes and their loss sums reduced.
#pragma once

namespace txs {

struct RunRole {
  int rank = 0;
  int world_size = 1;
  bool writes_outputs() const { return rank == 0; }
};

}  // namespace txs
