#include "train/progress.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <fmt/format.h>

namespace txs {

Progress::Progress(int64_t total, int64_t first)
    : total_(total), first_(first), tty_(isatty(STDERR_FILENO)), start_(std::chrono::steady_clock::now()),
      last_print_(start_ - std::chrono::hours(1)) {}

std::string Progress::format_duration(double s) {
  if (!(s >= 0) || s > 1e8) return "?";
  const int64_t t = int64_t(s + 0.5);
  if (t >= 3600) return fmt::format("{}h{:02d}m", t / 3600, (t % 3600) / 60);
  if (t >= 60) return fmt::format("{}m{:02d}s", t / 60, t % 60);
  return fmt::format("{}s", t);
}

void Progress::update(int64_t step, double loss, double lr, double tokens_per_s, const std::string& extra) {
  const auto now = std::chrono::steady_clock::now();
  const double elapsed = std::chrono::duration<double>(now - start_).count();
  const bool last = step >= total_;
  if (!tty_ && !last && std::chrono::duration<double>(now - last_print_).count() < 5.0) return;
  last_print_ = now;
  const double per_step = elapsed / double(std::max<int64_t>(step - first_, 1));
  const double eta = per_step * double(total_ - step);
  const std::string line =
      fmt::format("step {}/{} | loss {:.4f} | lr {:.2e} | {:.0f} tok/s | ETA {}{}", step, total_, loss, lr,
                  tokens_per_s, format_duration(eta), extra.empty() ? "" : " | " + extra);
  if (tty_) {
    std::fprintf(stderr, "\r\033[K%s", line.c_str());
    live_ = true;
  } else {
    std::fprintf(stderr, "%s\n", line.c_str());
  }
  std::fflush(stderr);
}

void Progress::message(const std::string& line) {
  if (live_) std::fprintf(stderr, "\r\033[K");
  std::fprintf(stderr, "%s\n", line.c_str());
  live_ = false;
  std::fflush(stderr);
}

void Progress::finish() {
  if (live_) std::fprintf(stderr, "\n");
  live_ = false;
}

}  // namespace txs
