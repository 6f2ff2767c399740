// One-line live progress display on stderr (rewritten in place on a terminal, a line every few seconds
// otherwise): step, loss, lr, tokens/s, ETA.
#pragma once
#include <chrono>
#include <cstdint>
#include <string>

namespace txs {

class Progress {
 public:
  Progress(int64_t total_steps, int64_t first_step);
  void update(int64_t step, double loss, double lr, double tokens_per_s, const std::string& extra = "");
  void message(const std::string& line);  // prints a full line without breaking the live line
  void finish();
  static std::string format_duration(double seconds);

 private:
  int64_t total_, first_;
  bool tty_;
  std::chrono::steady_clock::time_point start_, last_print_;
  bool live_ = false;
};

}  // namespace txs
