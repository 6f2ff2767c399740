// Learning-rate schedules: linear warmup, then cosine decay or warmup-stable-decay (WSD), to min_lr.
#pragma once
#include <cstdint>
#include <string>

namespace txs {

struct LrSchedule {
  std::string kind = "cosine";  // cosine | wsd | constant
  double lr = 3e-3;
  double min_lr = 3e-4;
  int64_t warmup = 100;
  int64_t total = 1000;
  double decay_fraction = 0.2;  // WSD: the last fraction of steps decays linearly
  void validate() const;
  double at(int64_t step) const;  // step is 0-based: the lr used for update number step+1
};

}  // namespace txs
