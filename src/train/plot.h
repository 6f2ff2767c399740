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

}  // namespace txs
