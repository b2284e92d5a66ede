//===- ExpertPlacement.cpp - placing experts from measured loads ----------===//
#include "runtime/ExpertPlacement.h"

#include <algorithm>
#include <fstream>
#include <map>
#include <numeric>

namespace dsv3rt {

nlohmann::json placeExperts(const std::string &metricsPath, int64_t ranks, int64_t redundant,
                            std::string &report) {
  if (ranks < 1 || redundant < 0)
    fail("placement: --ep must be >= 1 and --redundant >= 0");
  std::ifstream in(metricsPath);
  if (!in)
    fail("{}: cannot open", metricsPath);
  // "layer 3" -> summed loads, and the number of steps.
  std::map<std::string, std::vector<double>> loads;
  int64_t steps = 0, lineNo = 0;
  std::string line;
  while (std::getline(in, line)) {
    ++lineNo;
    if (line.empty())
      continue;
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(line);
    } catch (const std::exception &e) {
      fail("{}:{}: not JSON ({})", metricsPath, lineNo, e.what());
    }
    if (!j.contains("expert_load") || !j["expert_load"].is_object())
      fail("{}:{}: no \"expert_load\" object (a train --metrics file?)", metricsPath, lineNo);
    for (auto &[layer, counts] : j["expert_load"].items()) {
      if (!counts.is_array() || counts.empty())
        fail("{}:{}: expert_load.{} must be a list of counts", metricsPath, lineNo, layer);
      std::vector<double> &sum = loads[layer];
      if (sum.empty())
        sum.assign(counts.size(), 0.0);
      if (sum.size() != counts.size())
        fail("{}:{}: expert_load.{} has {} experts, earlier lines {}", metricsPath, lineNo,
             layer, counts.size(), sum.size());
      for (size_t e = 0; e < counts.size(); ++e)
        sum[e] += counts[e].get<double>();
    }
    ++steps;
  }
  if (loads.empty())
    fail("{}: no steps with expert loads", metricsPath);
  nlohmann::json layers = nlohmann::json::object();
  for (auto &[layer, load] : loads) {
    int64_t E = int64_t(load.size());
    int64_t slots = (E + ranks - 1) / ranks + redundant;
    if (slots * ranks < E)
      fail("placement: {} experts need more than {} slots on {} ranks", E, slots, ranks);
    // Copies: one each, the spare slots to the heaviest load per copy.
    std::vector<int64_t> copies(size_t(E), 1);
    for (int64_t extra = slots * ranks - E; extra > 0; --extra) {
      int64_t best = 0;
      for (int64_t e = 1; e < E; ++e)
        if (load[size_t(e)] / double(copies[size_t(e)]) >
            load[size_t(best)] / double(copies[size_t(best)]))
          best = e;
      ++copies[size_t(best)];
    }
    struct Copy {
      int64_t expert;
      double load;
    };
    std::vector<Copy> all;
    for (int64_t e = 0; e < E; ++e)
      for (int64_t k = 0; k < copies[size_t(e)]; ++k)
        all.push_back({e, load[size_t(e)] / double(copies[size_t(e)])});
    std::stable_sort(all.begin(), all.end(),
                     [](const Copy &a, const Copy &b) { return a.load > b.load; });
    std::vector<std::vector<int64_t>> onRank(static_cast<size_t>(ranks));
    std::vector<double> rankLoad(size_t(ranks), 0.0);
    for (const Copy &c : all) {
      int64_t pick = -1;
      for (int pass = 0; pass < 2 && pick < 0; ++pass)
        for (int64_t r = 0; r < ranks; ++r) {
          auto &held = onRank[size_t(r)];
          bool has = std::find(held.begin(), held.end(), c.expert) != held.end();
          if (int64_t(held.size()) >= slots || (pass == 0 && has))
            continue;
          if (pick < 0 || rankLoad[size_t(r)] < rankLoad[size_t(pick)])
            pick = r;
        }
      onRank[size_t(pick)].push_back(c.expert);
      rankLoad[size_t(pick)] += c.load;
    }
    double total = std::accumulate(load.begin(), load.end(), 0.0);
    double mean = total / double(ranks);
    double contiguousMax = 0;
    for (int64_t r = 0; r < ranks; ++r) {
      double sum = 0;
      for (int64_t e = r * E / ranks; e < (r + 1) * E / ranks; ++e)
        sum += load[size_t(e)];
      contiguousMax = std::max(contiguousMax, sum);
    }
    double placedMax = *std::max_element(rankLoad.begin(), rankLoad.end());
    // "layer 3" -> the checkpoint prefix of its MoE.
    std::string index = layer.rfind("layer ", 0) == 0 ? layer.substr(6) : layer;
    layers["model.layers." + index + ".mlp"] = onRank;
    report += fmt::format("  {:<10} {} experts, {} slots a rank: busiest rank / mean load "
                          "{:.3f} contiguous, {:.3f} placed\n",
                          layer, E, slots, mean > 0 ? contiguousMax / mean : 1.0,
                          mean > 0 ? placedMax / mean : 1.0);
  }
  report = fmt::format("placement for {} ranks ({} redundant slots a rank) from {} steps of {}\n",
                       ranks, redundant, steps, metricsPath) +
           report;
  return {{"ep", ranks}, {"layers", layers}};
}

} // namespace dsv3rt
