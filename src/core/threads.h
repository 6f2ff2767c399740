// Compute threads: never more than the free cores (OpenMP spin barriers collapse when oversubscribed).
#pragma once

namespace txs {
int num_threads();

// The most compute threads accepted: 4 x the hardware threads, and never above 1024 (1024 when the
// hardware count is unknown). A few threads more than cores are useful only for testing determinism;
// beyond that OpenMP's spin barriers make every kernel orders of magnitude slower (1000 threads on 2 cores:
// ~300x), and 100,000 threads exhaust memory for their stacks and crash inside the OpenMP runtime.
int max_threads();

// n == 0 means "all cores"; TRANSXSSM_THREADS or OMP_NUM_THREADS in the environment win over the default.
// Throws txs::Error for n < 0, n > max_threads(), or a TRANSXSSM_THREADS / OMP_NUM_THREADS (first value) that
// is not such an integer.
void set_num_threads(int n);
}  // namespace txs
