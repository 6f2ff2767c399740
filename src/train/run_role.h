// Which work every process of a training run does and which only the first does. A run is one process
// (rank 0 of 1, the default) or, started by `mpirun -np N`, N processes that train one model with data
// parallelism (data_parallel.h); the split is explicit so that data parallelism only adds communication.
//
// Every process: set-up (options, data, model, optimizer state), sampling its share of the micro-batches,
// forward and backward, the optimizer step and validation, so that all processes hold the same weights.
// Only the process that writes_outputs(): the run directory, metrics.jsonl, the progress line, loss.svg,
// checkpoints and the sample text. RunOutputs (run_outputs.h) is the one place that checks it.
//
// What data parallelism adds (data_parallel.h, train_step.cpp):
//  - a sampler indexed by the global sample: micro-batch (step, micro) is global rows 0..B-1 drawn by
//    hash(seed, step·accum + micro, row), and process r takes rows r·B/W .. (r+1)·B/W-1, so every world
//    size sees the same global batch and the same loss curve (W = 1 is the one-process sampler);
//  - an all-reduce (sum) of the gradients (in buckets, overlapped with the backward pass), and of the
//    loss sum and token count, between the last backward and the optimizer step, so every process applies
//    the same clipped update and takes the same decision on a non-finite loss or gradient norm;
//  - with --zero1, a reduce-scatter of the gradients instead, each process updating its slice of weights
//    and moments, then an all-gather of the weights; rank 0 gathers the moments to write a checkpoint;
//  - validation batches split across processes and their loss sums reduced.
#pragma once

namespace txs {

namespace dist {
class Communicator;
}

struct RunRole {
  int rank = 0;
  int world_size = 1;
  int local_size = 1;                  // processes of the run on this machine (they share its cores)
  dist::Communicator* comm = nullptr;  // null: a world of one
  bool writes_outputs() const { return rank == 0; }
};

}  // namespace txs
