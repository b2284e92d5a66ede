//===- Plot.h - SVG charts of a training run's metrics ------------*- C++ -*-===//
#ifndef DSV3_RUNTIME_PLOT_H
#define DSV3_RUNTIME_PLOT_H

#include <string>
#include <vector>

namespace dsv3rt {

/// Reads METRICS.jsonl as `dsv3-run train --metrics` writes it (one JSON
/// object per step) and writes into `dir`: loss.svg (the loss and each of
/// its parts: main, MTP, balance), lr.svg, tokens_per_s.svg, grad_norm.svg,
/// one expert-load heatmap per MoE layer (expert_load_layer_N.svg: experts
/// over steps, load relative to the mean) and index.html showing them all.
/// Returns the files written. Malformed lines fail with their line number.
std::vector<std::string> plotMetrics(const std::string &jsonl, const std::string &dir);

} // namespace dsv3rt

#endif // DSV3_RUNTIME_PLOT_H
