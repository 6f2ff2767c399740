#include "core/threads.h"

#include <omp.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <thread>

#include "core/error.h"
#include "core/json.h"

namespace txs {

int num_threads() { return omp_get_max_threads(); }

int max_threads() {
  constexpr int kPerCore = 4, kAbsolute = 1024;
  const unsigned hw = std::thread::hardware_concurrency();
  return hw == 0 ? kAbsolute : int(std::min<unsigned>(kPerCore * hw, kAbsolute));
}

static void check_threads(long n, const char* what) {
  if (n < 0) fail("{} must not be negative (got {}; 0 means all cores)", what, n);
  if (n > max_threads())
    fail("{} = {} is too many: at most {} (4 x the {} hardware threads, at most 1024)", what, n, max_threads(),
         std::thread::hardware_concurrency());
}

// The integer at the start of an environment variable; `list` allows OpenMP's "4,2" (first level counts).
static long env_threads(const char* name, const char* value, bool list) {
  char* end = nullptr;
  errno = 0;
  const long v = std::strtol(value, &end, 10);
  if (errno != 0 || end == value || (*end != '\0' && !(list && *end == ',')))
    fail("{} must be an integer, got \"{}\"", name, text_excerpt(value));
  check_threads(v, name);
  return v;
}

void set_num_threads(int n) {
  check_threads(n, "--threads");
  if (n == 0) {
    if (const char* env = std::getenv("TRANSXSSM_THREADS"); env && *env) n = int(env_threads("TRANSXSSM_THREADS", env, false));
  }
  if (const char* omp = std::getenv("OMP_NUM_THREADS"); n == 0 && omp && *omp) {
    env_threads("OMP_NUM_THREADS", omp, true);  // the OpenMP runtime would start this many threads
    return;                                     // the user already chose
  }
  if (n == 0) n = int(std::thread::hardware_concurrency());
  if (n <= 0) n = 1;
  omp_set_num_threads(n);
}

}  // namespace txs
