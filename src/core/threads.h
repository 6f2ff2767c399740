// Compute threads: never more than the free cores (OpenMP spin barriers collapse when oversubscribed).
#pragma once

namespace txs {
int num_threads();
// n <= 0 means "all cores"; TRANSXSSM_THREADS or OMP_NUM_THREADS in the environment win over the default.
void set_num_threads(int n);
}  // namespace txs
