#include "core/threads.h"

#include <omp.h>

#include <cstdlib>
#include <thread>

namespace txs {

int num_threads() { return omp_get_max_threads(); }

void set_num_threads(int n) {
  if (n <= 0) {
    if (const char* env = std::getenv("TRANSXSSM_THREADS")) n = std::atoi(env);
  }
  if (n <= 0 && std::getenv("OMP_NUM_THREADS")) return;  // the user already chose
  if (n <= 0) n = int(std::thread::hardware_concurrency());
  if (n <= 0) n = 1;
  omp_set_num_threads(n);
}

}  // namespace txs
