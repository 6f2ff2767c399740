#include "train/schedule.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"

namespace txs {

void LrSchedule::validate() const {
  if (kind != "cosine" && kind != "wsd" && kind != "constant")
    fail("schedule: unknown kind '{}' (expected cosine, wsd or constant)", kind);
  if (!(lr > 0) || !(min_lr >= 0) || min_lr > lr) fail("schedule: need 0 ≤ min_lr ≤ lr and lr > 0");
  if (warmup < 0 || total <= 0) fail("schedule: need warmup ≥ 0 and steps > 0");
  if (!(decay_fraction > 0 && decay_fraction <= 1)) fail("schedule: decay fraction must be in (0, 1]");
}

double LrSchedule::at(int64_t step) const {
  if (warmup > 0 && step < warmup) return lr * double(step + 1) / double(warmup);
  if (kind == "constant") return lr;
  const double span = double(std::max<int64_t>(total - warmup, 1));
  const double t = std::clamp(double(step - warmup) / span, 0.0, 1.0);
  if (kind == "cosine") return min_lr + 0.5 * (lr - min_lr) * (1.0 + std::cos(M_PI * t));
  const double stable = 1.0 - decay_fraction;  // WSD
  if (t <= stable) return lr;
  return lr - (lr - min_lr) * (t - stable) / decay_fraction;
}

}  // namespace txs
