//===- Plot.cpp - SVG charts of a training run's metrics ------------------===//
//
// Hand-written SVG (no dependencies): line charts with axes, ticks and a
// legend, and heatmaps with a colour scale. Steps beyond ~600 are averaged
// into buckets so a long run still draws quickly.
//
//===----------------------------------------------------------------------===//
#include "runtime/Plot.h"

#include "runtime/Error.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sys/stat.h>

namespace dsv3rt {

namespace {
constexpr double kWidth = 760, kHeight = 420, kLeft = 78, kRight = 170, kTop = 40,
                 kBottom = 56;
const char *kColours[] = {"#1f77b4", "#d62728", "#2ca02c", "#9467bd",
                          "#ff7f0e", "#8c564b", "#e377c2", "#17becf"};

std::string esc(const std::string &s) {
  std::string out;
  for (char c : s) {
    if (c == '<') out += "&lt;";
    else if (c == '>') out += "&gt;";
    else if (c == '&') out += "&amp;";
    else if (c == '"') out += "&quot;";
    else out += c;
  }
  return out;
}

/// Tick label: short and exact enough for the axis.
std::string tick(double v) {
  double a = std::fabs(v);
  if (a == 0) return "0";
  if (a >= 1e6 || a < 1e-3) return fmt::format("{:.2e}", v);
  if (a >= 100) return fmt::format("{:.0f}", v);
  return fmt::format("{:.3g}", v);
}

/// "Nice" tick positions covering [lo, hi].
std::vector<double> ticks(double lo, double hi, int n = 5) {
  double span = hi - lo;
  if (!(span > 0))
    return {lo};
  double raw = span / n, mag = std::pow(10.0, std::floor(std::log10(raw)));
  double step = mag;
  for (double m : {1.0, 2.0, 2.5, 5.0, 10.0})
    if (m * mag >= raw) {
      step = m * mag;
      break;
    }
  std::vector<double> out;
  for (double v = std::ceil(lo / step) * step; v <= hi + step * 1e-9; v += step)
    out.push_back(std::fabs(v) < step * 1e-9 ? 0.0 : v);
  return out;
}

struct Series {
  std::string name;
  std::vector<double> x, y;
};

void writeText(const std::string &path, const std::string &text) {
  std::ofstream out(path, std::ios::binary);
  if (!out)
    fail("{}: cannot open for writing: {}", path, std::strerror(errno));
  out << text;
  if (!out)
    fail("{}: write failed: {}", path, std::strerror(errno));
}

std::string header(const std::string &title) {
  return fmt::format(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{0}\" height=\"{1}\" "
      "viewBox=\"0 0 {0} {1}\" font-family=\"sans-serif\" font-size=\"12\">\n"
      "<title>{2}</title>\n<rect width=\"{0}\" height=\"{1}\" fill=\"white\"/>\n"
      "<text x=\"{3}\" y=\"24\" font-size=\"15\" font-weight=\"bold\">{2}</text>\n",
      kWidth, kHeight, esc(title), kLeft);
}

/// A line chart of `series` against steps.
std::string lineChart(const std::string &title, const std::string &yLabel,
                      const std::vector<Series> &series) {
  double x0 = 1e300, x1 = -1e300, y0 = 1e300, y1 = -1e300;
  for (const Series &s : series)
    for (size_t i = 0; i < s.x.size(); ++i) {
      if (!std::isfinite(s.y[i]))
        continue;
      x0 = std::min(x0, s.x[i]);
      x1 = std::max(x1, s.x[i]);
      y0 = std::min(y0, s.y[i]);
      y1 = std::max(y1, s.y[i]);
    }
  if (x0 > x1) // no finite points
    x0 = 0, x1 = 1, y0 = 0, y1 = 1;
  if (x1 == x0)
    x1 = x0 + 1;
  double pad = (y1 - y0) * 0.05;
  if (!(pad > 0))
    pad = std::max(std::fabs(y0) * 0.05, 1e-12);
  y0 -= pad;
  y1 += pad;
  double pw = kWidth - kLeft - kRight, ph = kHeight - kTop - kBottom;
  auto px = [&](double x) { return kLeft + (x - x0) / (x1 - x0) * pw; };
  auto py = [&](double y) { return kTop + (1 - (y - y0) / (y1 - y0)) * ph; };
  std::string svg = header(title);
  svg += fmt::format("<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"none\" "
                     "stroke=\"#444\"/>\n",
                     kLeft, kTop, pw, ph);
  for (double v : ticks(y0, y1))
    svg += fmt::format("<line x1=\"{0}\" x2=\"{1}\" y1=\"{2:.1f}\" y2=\"{2:.1f}\" "
                       "stroke=\"#ddd\"/><text x=\"{3}\" y=\"{4:.1f}\" "
                       "text-anchor=\"end\">{5}</text>\n",
                       kLeft, kLeft + pw, py(v), kLeft - 6, py(v) + 4, tick(v));
  for (double v : ticks(x0, x1))
    svg += fmt::format("<line x1=\"{0:.1f}\" x2=\"{0:.1f}\" y1=\"{1}\" y2=\"{2}\" "
                       "stroke=\"#ddd\"/><text x=\"{0:.1f}\" y=\"{3}\" "
                       "text-anchor=\"middle\">{4}</text>\n",
                       px(v), kTop, kTop + ph, kTop + ph + 16, tick(v));
  svg += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">step</text>\n",
                     kLeft + pw / 2, kHeight - 14);
  svg += fmt::format("<text transform=\"translate(18,{}) rotate(-90)\" "
                     "text-anchor=\"middle\">{}</text>\n",
                     kTop + ph / 2, esc(yLabel));
  for (size_t k = 0; k < series.size(); ++k) {
    const Series &s = series[k];
    const char *colour = kColours[k % 8];
    std::string points;
    for (size_t i = 0; i < s.x.size(); ++i)
      if (std::isfinite(s.y[i]))
        points += fmt::format("{:.1f},{:.1f} ", px(s.x[i]), py(s.y[i]));
    svg += fmt::format("<polyline class=\"series\" data-name=\"{}\" fill=\"none\" "
                       "stroke=\"{}\" stroke-width=\"1.5\" points=\"{}\"/>\n",
                       esc(s.name), colour, points);
    double ly = kTop + 14 + 20 * double(k);
    svg += fmt::format("<line x1=\"{0}\" x2=\"{1}\" y1=\"{2}\" y2=\"{2}\" stroke=\"{3}\" "
                       "stroke-width=\"3\"/><text class=\"legend\" x=\"{4}\" "
                       "y=\"{5}\">{6}</text>\n",
                       kWidth - kRight + 14, kWidth - kRight + 38, ly, colour,
                       kWidth - kRight + 44, ly + 4, esc(s.name));
  }
  return svg + "</svg>\n";
}

/// Load relative to the mean (1 = balanced): white 0, light 1, dark red >= 3.
std::string heatColour(double r) {
  double t = std::clamp(r / 3.0, 0.0, 1.0);
  auto mix = [](double a, double b, double t) { return int(std::lround(a + (b - a) * t)); };
  // white (255,255,255) -> orange (253,141,60) -> dark red (128,0,38)
  if (t < 1.0 / 3)
    return fmt::format("rgb({},{},{})", 255, mix(255, 230, t * 3), mix(255, 200, t * 3));
  if (t < 2.0 / 3)
    return fmt::format("rgb({},{},{})", mix(255, 253, t * 3 - 1), mix(230, 141, t * 3 - 1),
                       mix(200, 60, t * 3 - 1));
  return fmt::format("rgb({},{},{})", mix(253, 128, t * 3 - 2), mix(141, 0, t * 3 - 2),
                     mix(60, 38, t * 3 - 2));
}

/// Experts (rows) over steps (columns), each cell the expert's share of the
/// layer's routed tokens relative to the mean share.
std::string heatmap(const std::string &title, const std::vector<double> &steps,
                    const std::vector<std::vector<double>> &loads) {
  size_t E = loads.empty() ? 0 : loads[0].size();
  size_t cols = std::min<size_t>(steps.size(), 600);
  double pw = kWidth - kLeft - kRight, ph = kHeight - kTop - kBottom;
  double cw = pw / double(std::max<size_t>(cols, 1)), ch = ph / double(std::max<size_t>(E, 1));
  std::string svg = header(title);
  for (size_t c = 0; c < cols; ++c) {
    // Steps [a, b) averaged into column c.
    size_t a = c * steps.size() / cols, b = (c + 1) * steps.size() / cols;
    std::vector<double> mean(E, 0.0);
    for (size_t s = a; s < b; ++s) {
      double total = 0;
      for (double v : loads[s])
        total += v;
      for (size_t e = 0; e < E; ++e)
        mean[e] += total > 0 ? loads[s][e] * double(E) / total : 0.0;
    }
    for (size_t e = 0; e < E; ++e)
      svg += fmt::format("<rect class=\"cell\" x=\"{:.2f}\" y=\"{:.2f}\" width=\"{:.2f}\" "
                         "height=\"{:.2f}\" fill=\"{}\"/>\n",
                         kLeft + cw * double(c), kTop + ch * double(e), cw + 0.3, ch + 0.3,
                         heatColour(mean[e] / double(std::max<size_t>(b - a, 1))));
  }
  svg += fmt::format("<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"none\" "
                     "stroke=\"#444\"/>\n",
                     kLeft, kTop, pw, ph);
  double s0 = steps.empty() ? 0 : steps.front(), s1 = steps.empty() ? 1 : steps.back();
  if (s1 == s0)
    s1 = s0 + 1;
  for (double v : ticks(s0, s1))
    svg += fmt::format("<text x=\"{:.1f}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n",
                       kLeft + (v - s0) / (s1 - s0) * pw, kTop + ph + 16, tick(v));
  for (double v : ticks(0, double(E > 0 ? E - 1 : 0)))
    svg += fmt::format("<text x=\"{}\" y=\"{:.1f}\" text-anchor=\"end\">{}</text>\n",
                       kLeft - 6, kTop + ch * (v + 0.5) + 4, tick(v));
  svg += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">step</text>\n",
                     kLeft + pw / 2, kHeight - 14);
  svg += fmt::format("<text transform=\"translate(18,{}) rotate(-90)\" "
                     "text-anchor=\"middle\">expert</text>\n",
                     kTop + ph / 2);
  // Colour scale.
  double lx = kWidth - kRight + 30;
  for (int i = 0; i < 30; ++i)
    svg += fmt::format("<rect x=\"{}\" y=\"{:.1f}\" width=\"18\" height=\"{:.2f}\" "
                       "fill=\"{}\"/>\n",
                       lx, kTop + ph * (1 - double(i + 1) / 30), ph / 30 + 0.3,
                       heatColour(3.0 * (double(i) + 0.5) / 30));
  for (double v : {0.0, 1.0, 2.0, 3.0})
    svg += fmt::format("<text x=\"{}\" y=\"{:.1f}\">{}{}</text>\n", lx + 24,
                       kTop + ph * (1 - v / 3) + 4, tick(v), v == 3.0 ? "+" : "");
  svg += fmt::format("<text x=\"{}\" y=\"{}\">load / mean</text>\n", lx - 8, kTop - 8);
  return svg + "</svg>\n";
}
} // namespace

std::vector<std::string> plotMetrics(const std::string &jsonl, const std::string &dir) {
  std::ifstream in(jsonl);
  if (!in)
    fail("{}: cannot open: {}", jsonl, std::strerror(errno));
  std::vector<double> steps;
  std::map<std::string, Series> scalars;
  std::map<std::string, std::vector<std::vector<double>>> loads;
  std::string text;
  for (int64_t lineNo = 1; std::getline(in, text); ++lineNo) {
    if (text.find_first_not_of(" \t\r") == std::string::npos)
      continue;
    nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
    if (j.is_discarded() || !j.is_object())
      fail("{}:{}: not a JSON object (one metrics record per line)", jsonl, lineNo);
    if (!j.contains("step") || !j["step"].is_number())
      fail("{}:{}: no numeric \"step\"", jsonl, lineNo);
    double step = j["step"].get<double>();
    steps.push_back(step);
    for (auto &[key, value] : j.items())
      if (value.is_number() && key != "step") {
        Series &s = scalars[key];
        s.name = key;
        s.x.push_back(step);
        s.y.push_back(value.get<double>());
      }
    if (j.contains("expert_load") && j["expert_load"].is_object())
      for (auto &[layer, counts] : j["expert_load"].items()) {
        if (!counts.is_array())
          fail("{}:{}: expert_load[\"{}\"] is not an array", jsonl, lineNo, layer);
        std::vector<double> row;
        for (auto &c : counts)
          row.push_back(c.is_number() ? c.get<double>() : 0.0);
        auto &rows = loads[layer];
        if (!rows.empty() && rows.back().size() != row.size())
          fail("{}:{}: expert_load[\"{}\"] has {} experts, earlier lines {}", jsonl,
               lineNo, layer, row.size(), rows.back().size());
        rows.push_back(std::move(row));
      }
  }
  if (steps.empty())
    fail("{}: no metrics records", jsonl);
  if (::mkdir(dir.c_str(), 0777) != 0 && errno != EEXIST)
    fail("{}: cannot create the output directory: {}", dir, std::strerror(errno));

  std::vector<std::string> written;
  auto emit = [&](const std::string &name, const std::string &svg) {
    writeText(dir + "/" + name, svg);
    written.push_back(name);
  };
  // The loss and its parts in one chart (total first).
  std::vector<Series> loss;
  for (const char *k : {"loss", "loss_main", "loss_mtp", "loss_balance"})
    if (scalars.count(k))
      loss.push_back(scalars[k]);
  for (auto &[k, s] : scalars)
    if (k.rfind("loss_", 0) == 0 && k != "loss_main" && k != "loss_mtp" &&
        k != "loss_balance")
      loss.push_back(s);
  if (!loss.empty())
    emit("loss.svg", lineChart("training loss (total, main, MTP, balance)", "loss", loss));
  struct One {
    const char *key, *file, *title, *label;
  };
  for (One o : {One{"lr", "lr.svg", "learning rate", "lr"},
                One{"tokens_per_s", "tokens_per_s.svg", "throughput", "tokens / s"},
                One{"grad_norm", "grad_norm.svg", "gradient norm (before clipping)",
                    "global L2 norm"}})
    if (scalars.count(o.key))
      emit(o.file, lineChart(o.title, o.label, {scalars[o.key]}));
  for (auto &[layer, rows] : loads) {
    std::string id = layer;
    std::replace(id.begin(), id.end(), ' ', '_');
    std::vector<double> at(steps.begin(), steps.begin() + long(rows.size()));
    emit("expert_load_" + id + ".svg",
         heatmap(fmt::format("expert load, {} ({} experts)", layer,
                             rows.empty() ? 0 : rows[0].size()),
                 at, rows));
  }
  std::string html = fmt::format("<!doctype html>\n<html><head><meta charset=\"utf-8\">"
                                 "<title>{0}</title></head><body>\n<h1>{0}</h1>\n",
                                 esc(jsonl));
  for (const std::string &f : written)
    html += fmt::format("<p><img src=\"{}\" alt=\"{}\"></p>\n", f, f);
  html += "</body></html>\n";
  emit("index.html", html);
  return written;
}

} // namespace dsv3rt
