#include "train/plot.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/error.h"
#include "core/json.h"
#include "model/safetensors.h"

namespace txs {

LossCurve read_metrics(const std::string& path) {
  std::ifstream in(path);
  if (!in) fail("{}: cannot open metrics file", path);
  LossCurve c;
  std::string line;
  int64_t n = 0;
  while (std::getline(in, line)) {
    ++n;
    if (line.empty()) continue;
    const nlohmann::json j = try_parse_json_bounded(line);
    if (j.is_discarded() || !j.is_object()) fail("{}:{}: not a JSON line", path, n);
    if (!j.contains("step") || !j["step"].is_number()) continue;
    const double step = j["step"].get<double>();
    if (j.contains("loss") && j["loss"].is_number()) c.train.emplace_back(step, j["loss"].get<double>());
    if (j.contains("val_loss") && j["val_loss"].is_number()) c.val.emplace_back(step, j["val_loss"].get<double>());
  }
  return c;
}

static std::string num(double v) {
  std::ostringstream s;
  s.precision(4);
  s << v;
  return s.str();
}

void write_loss_svg(const std::string& path, const LossCurve& c, const std::string& title) {
  const double W = 800, H = 480, L = 70, R = 20, T = 40, B = 50;
  double xmax = 1, ymin = INFINITY, ymax = -INFINITY;
  for (auto* series : {&c.train, &c.val})
    for (auto& [x, y] : *series) {
      if (!std::isfinite(y)) continue;
      xmax = std::max(xmax, x);
      ymin = std::min(ymin, y);
      ymax = std::max(ymax, y);
    }
  if (!std::isfinite(ymin)) ymin = 0, ymax = 1;
  if (ymax - ymin < 1e-9) ymax = ymin + 1;
  const double pad = 0.05 * (ymax - ymin);
  ymin -= pad, ymax += pad;
  auto X = [&](double x) { return L + (W - L - R) * x / xmax; };
  auto Y = [&](double y) { return T + (H - T - B) * (ymax - y) / (ymax - ymin); };
  std::ostringstream s;
  s << "<svg xmlns='http://www.w3.org/2000/svg' width='" << W << "' height='" << H << "' font-family='sans-serif' "
    << "font-size='12'>\n<rect width='100%' height='100%' fill='white'/>\n";
  s << "<text x='" << W / 2 << "' y='22' text-anchor='middle' font-size='15'>" << title << "</text>\n";
  for (int i = 0; i <= 5; ++i) {  // grid and tick labels
    const double y = ymin + (ymax - ymin) * i / 5, x = xmax * i / 5;
    s << "<line x1='" << L << "' x2='" << W - R << "' y1='" << Y(y) << "' y2='" << Y(y) << "' stroke='#ddd'/>\n";
    s << "<text x='" << L - 6 << "' y='" << Y(y) + 4 << "' text-anchor='end'>" << num(y) << "</text>\n";
    s << "<text x='" << X(x) << "' y='" << H - B + 18 << "' text-anchor='middle'>" << num(std::round(x)) << "</text>\n";
  }
  s << "<rect x='" << L << "' y='" << T << "' width='" << W - L - R << "' height='" << H - T - B
    << "' fill='none' stroke='#444'/>\n";
  s << "<text x='" << W / 2 << "' y='" << H - 12 << "' text-anchor='middle'>step</text>\n";
  s << "<text x='16' y='" << H / 2 << "' transform='rotate(-90 16 " << H / 2 << ")' text-anchor='middle'>loss (nats/token)</text>\n";
  auto polyline = [&](const std::vector<std::pair<double, double>>& pts, const char* color, double width, double op) {
    if (pts.empty()) return;
    s << "<polyline fill='none' stroke='" << color << "' stroke-width='" << width << "' stroke-opacity='" << op
      << "' points='";
    for (auto& [x, y] : pts)
      if (std::isfinite(y)) s << X(x) << "," << Y(y) << " ";
    s << "'/>\n";
  };
  polyline(c.train, "#1f77b4", 1, 0.3);
  std::vector<std::pair<double, double>> smooth;  // exponential moving average, bias-corrected
  double ema = 0, w = 0;
  for (auto& [x, y] : c.train) {
    if (!std::isfinite(y)) continue;
    ema = 0.9 * ema + 0.1 * y, w = 0.9 * w + 0.1;
    smooth.emplace_back(x, ema / w);
  }
  polyline(smooth, "#1f77b4", 2, 1);
  polyline(c.val, "#d62728", 2, 1);
  for (auto& [x, y] : c.val) s << "<circle cx='" << X(x) << "' cy='" << Y(y) << "' r='3' fill='#d62728'/>\n";
  s << "<rect x='" << W - R - 170 << "' y='" << T + 10 << "' width='160' height='44' fill='white' stroke='#aaa'/>\n"
    << "<line x1='" << W - R - 160 << "' x2='" << W - R - 130 << "' y1='" << T + 26 << "' y2='" << T + 26
    << "' stroke='#1f77b4' stroke-width='2'/><text x='" << W - R - 124 << "' y='" << T + 30 << "'>train (EMA)</text>\n"
    << "<line x1='" << W - R - 160 << "' x2='" << W - R - 130 << "' y1='" << T + 44 << "' y2='" << T + 44
    << "' stroke='#d62728' stroke-width='2'/><text x='" << W - R - 124 << "' y='" << T + 48 << "'>validation</text>\n";
  s << "</svg>\n";
  write_file_atomic(path, s.str());
}

std::vector<std::pair<double, double>> smooth_ema(const std::vector<std::pair<double, double>>& pts) {
  std::vector<std::pair<double, double>> out;
  double ema = 0, w = 0;
  for (auto& [x, y] : pts) {
    if (!std::isfinite(y)) continue;
    ema = 0.9 * ema + 0.1 * y, w = 0.9 * w + 0.1;
    out.emplace_back(x, ema / w);
  }
  return out;
}

static std::string xml_escape(const std::string& t) {
  std::string o;
  for (char ch : t) {
    if (ch == '<') o += "&lt;";
    else if (ch == '>') o += "&gt;";
    else if (ch == '&') o += "&amp;";
    else if (ch == '\'') o += "&apos;";
    else o += ch;
  }
  return o;
}

std::string lines_svg(const std::string& title, const std::string& x_label, const std::string& y_label,
                      const std::vector<Series>& series, bool log_x, bool log_y) {
  static const char* palette[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b",
                                  "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"};
  const double W = 800, H = 480, L = 80, R = 170, T = 40, B = 50;
  auto ok = [&](double x, double y) {
    return std::isfinite(x) && std::isfinite(y) && (!log_x || x > 0) && (!log_y || y > 0);
  };
  auto tx = [&](double x) { return log_x ? std::log10(x) : x; };
  auto ty = [&](double y) { return log_y ? std::log10(y) : y; };
  double xmin = INFINITY, xmax = -INFINITY, ymin = INFINITY, ymax = -INFINITY;
  for (auto& se : series)
    for (auto& [x, y] : se.points) {
      if (!ok(x, y)) continue;
      xmin = std::min(xmin, tx(x)), xmax = std::max(xmax, tx(x));
      ymin = std::min(ymin, ty(y)), ymax = std::max(ymax, ty(y));
    }
  if (!std::isfinite(xmin)) xmin = 0, xmax = 1, ymin = 0, ymax = 1;
  if (xmax - xmin < 1e-12) xmax = xmin + 1;
  if (ymax - ymin < 1e-12) ymax = ymin + 1;
  const double pad = 0.05 * (ymax - ymin);
  ymin -= pad, ymax += pad;
  auto X = [&](double x) { return L + (W - L - R) * (tx(x) - xmin) / (xmax - xmin); };
  auto Y = [&](double y) { return T + (H - T - B) * (ymax - ty(y)) / (ymax - ymin); };
  std::ostringstream s;
  s << "<svg xmlns='http://www.w3.org/2000/svg' width='" << W << "' height='" << H << "' font-family='sans-serif' "
    << "font-size='12'>\n<rect width='100%' height='100%' fill='white'/>\n";
  s << "<text x='" << (L + W - R) / 2 << "' y='22' text-anchor='middle' font-size='15'>" << xml_escape(title)
    << "</text>\n";
  for (int i = 0; i <= 5; ++i) {  // grid and tick labels (at evenly spaced positions of the drawn scale)
    const double yv = ymin + (ymax - ymin) * i / 5, xv = xmin + (xmax - xmin) * i / 5;
    const double ypx = T + (H - T - B) * (1.0 - i / 5.0), xpx = L + (W - L - R) * i / 5.0;
    s << "<line x1='" << L << "' x2='" << W - R << "' y1='" << ypx << "' y2='" << ypx << "' stroke='#ddd'/>\n";
    s << "<text x='" << L - 6 << "' y='" << ypx + 4 << "' text-anchor='end'>" << num(log_y ? std::pow(10, yv) : yv)
      << "</text>\n";
    s << "<text x='" << xpx << "' y='" << H - B + 18 << "' text-anchor='middle'>"
      << num(log_x ? std::pow(10, xv) : xv) << "</text>\n";
  }
  s << "<rect x='" << L << "' y='" << T << "' width='" << W - L - R << "' height='" << H - T - B
    << "' fill='none' stroke='#444'/>\n";
  s << "<text x='" << (L + W - R) / 2 << "' y='" << H - 12 << "' text-anchor='middle'>" << xml_escape(x_label)
    << (log_x ? " (log scale)" : "") << "</text>\n";
  s << "<text x='16' y='" << H / 2 << "' transform='rotate(-90 16 " << H / 2 << ")' text-anchor='middle'>"
    << xml_escape(y_label) << (log_y ? " (log scale)" : "") << "</text>\n";
  int legend = 0;
  for (size_t k = 0; k < series.size(); ++k) {
    const Series& se = series[k];
    const char* color = palette[size_t(se.color >= 0 ? se.color : int(k)) % 10];
    std::vector<std::pair<double, double>> pts;
    for (auto& p : se.points)
      if (ok(p.first, p.second)) pts.push_back(p);
    if (pts.size() > 1) {
      s << "<polyline fill='none' stroke='" << color << "' stroke-width='2'" << (se.dashed ? " stroke-dasharray='6,4'" : "")
        << " points='";
      for (auto& [x, y] : pts) s << X(x) << "," << Y(y) << " ";
      s << "'/>\n";
    }
    if (se.markers || pts.size() == 1)
      for (auto& [x, y] : pts) s << "<circle cx='" << X(x) << "' cy='" << Y(y) << "' r='3' fill='" << color << "'/>\n";
    const double ly = T + 14 + 18 * legend++;
    s << "<line x1='" << W - R + 10 << "' x2='" << W - R + 36 << "' y1='" << ly << "' y2='" << ly << "' stroke='"
      << color << "' stroke-width='2'" << (se.dashed ? " stroke-dasharray='6,4'" : "") << "/><text x='"
      << W - R + 42 << "' y='" << ly + 4 << "'>" << xml_escape(se.name) << "</text>\n";
  }
  s << "</svg>\n";
  return s.str();
}

void write_lines_svg(const std::string& path, const std::string& title, const std::string& x_label,
                     const std::string& y_label, const std::vector<Series>& series, bool log_x, bool log_y) {
  write_file_atomic(path, lines_svg(title, x_label, y_label, series, log_x, log_y));
}

}  // namespace txs
