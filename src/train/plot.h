// Loss-curve picture (SVG): training loss (raw, faint, and smoothed) and validation loss against step.
#pragma once
#include <string>
#include <utility>
#include <vector>

namespace txs {

struct LossCurve {
  std::vector<std::pair<double, double>> train, val;  // (step, loss)
};

void write_loss_svg(const std::string& path, const LossCurve& curve, const std::string& title);
// Reads a run's metrics.jsonl (lines with step, loss and optionally val_loss).
LossCurve read_metrics(const std::string& metrics_path);

// Several named series overlaid on one chart (one colour each, legend), e.g. the loss curves of several
// runs or tokens/s against sequence length per architecture. Points with a non-finite y are left out; with
// log_x / log_y the axis is logarithmic (points ≤ 0 left out). dashed: drawn dashed (e.g. validation).
struct Series {
  std::string name;
  std::vector<std::pair<double, double>> points;
  int color = -1;  // index into the palette; −1: the series' position
  bool dashed = false, markers = true;
};
std::string lines_svg(const std::string& title, const std::string& x_label, const std::string& y_label,
                      const std::vector<Series>& series, bool log_x = false, bool log_y = false);
void write_lines_svg(const std::string& path, const std::string& title, const std::string& x_label,
                     const std::string& y_label, const std::vector<Series>& series, bool log_x = false,
                     bool log_y = false);
// Exponential moving average (bias-corrected, weight 0.1 on the new point), as the loss picture draws it.
std::vector<std::pair<double, double>> smooth_ema(const std::vector<std::pair<double, double>>& points);

}  // namespace txs
