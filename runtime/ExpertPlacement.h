//===- ExpertPlacement.h - which rank holds which expert ----------*- C++ -*-===//
//
// The expert-parallel exchanges (ep_dispatch / ep_combine, host and CUDA)
// move each expert's rows to the rank slots holding it. The placement is
// the kernel parameter `placement` (row-major [ranks, slots]: the global
// expert of each rank's slot, dsv3c --ep-placement), or the contiguous
// split (slot j of rank r holds expert r·E/N + j). An expert with several
// copies has its rows split into contiguous chunks, one per copy in
// placement order (rank-major), so every rank computes the same split from
// the counts alone.
//
//===----------------------------------------------------------------------===//
#ifndef DSV3_RUNTIME_EXPERTPLACEMENT_H
#define DSV3_RUNTIME_EXPERTPLACEMENT_H

#include "runtime/Error.h"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace dsv3rt {

struct ExpertPlacement {
  int64_t ranks = 1, slots = 1, experts = 1;
  std::vector<int64_t> table;  // [ranks * slots] -> expert
  std::vector<int64_t> copyOf; // [ranks * slots] -> which copy of its expert
  std::vector<int64_t> copies; // [experts] -> how many copies

  /// From a launch's parameters ("placement", else contiguous); `kernel`
  /// names the launch in errors.
  static ExpertPlacement fromParams(const nlohmann::json &p, int64_t ranks, int64_t experts,
                                    const std::string &kernel) {
    ExpertPlacement pl;
    pl.ranks = ranks;
    pl.experts = experts;
    if (p.contains("placement")) {
      for (const auto &v : p["placement"])
        pl.table.push_back(v.get<int64_t>());
      if (pl.table.empty() || int64_t(pl.table.size()) % ranks)
        fail("kernel {}: placement of {} entries for {} ranks", kernel, pl.table.size(), ranks);
      pl.slots = int64_t(pl.table.size()) / ranks;
    } else {
      if (experts % ranks)
        fail("kernel {}: {} experts do not split over {} ranks", kernel, experts, ranks);
      pl.slots = experts / ranks;
      for (int64_t e = 0; e < experts; ++e)
        pl.table.push_back(e);
    }
    pl.copies.assign(size_t(experts), 0);
    for (int64_t e : pl.table) {
      if (e < 0 || e >= experts)
        fail("kernel {}: placement names expert {} of {}", kernel, e, experts);
      pl.copyOf.push_back(pl.copies[size_t(e)]++);
    }
    for (int64_t e = 0; e < experts; ++e)
      if (!pl.copies[size_t(e)])
        fail("kernel {}: placement leaves expert {} on no rank", kernel, e);
    return pl;
  }

  int64_t expertAt(int64_t rank, int64_t slot) const { return table[size_t(rank * slots + slot)]; }

  /// The rows [first, last) of an expert with `rows` rows that the copy in
  /// (rank, slot) handles.
  std::pair<int64_t, int64_t> chunk(int64_t rank, int64_t slot, int64_t rows) const {
    int64_t e = expertAt(rank, slot), k = copyOf[size_t(rank * slots + slot)];
    int64_t c = copies[size_t(e)];
    return {k * rows / c, (k + 1) * rows / c};
  }
};

/// ep_dispatch (both backends): fails, naming the bound (dsv3c
/// --ep-capacity), when rank `rank` received `rows` rows of `H` but its
/// buffer holds `capacity` elements.
inline void checkReceived(const std::string &k, const nlohmann::json &p, int rank, int64_t rows,
                          int64_t H, int64_t dispatched, size_t capacity) {
  if (size_t(rows * H) <= capacity)
    return;
  size_t planned = capacity / size_t(H > 0 ? H : 1);
  if (p.contains("capacity"))
    fail("kernel {}: rank {} received {} rows for its experts, more than the {} the plan holds "
         "(dsv3c --ep-capacity {}: that many times the rows a rank dispatches, {} here); "
         "recompile with a larger --ep-capacity (at most {}, the ranks: the worst case)",
         k, rank, rows, planned, p["capacity"].dump(), dispatched,
         p.value("ranks", int64_t(1)));
  fail("kernel {}: rank {} received {} rows for its experts, more than the {} the plan holds "
       "(the artifact was planned for fewer tokens a rank: recompile with larger --max-batch / "
       "--max-seq / --max-tokens)",
       k, rank, rows, planned);
}

/// A placement from measured loads (dsv3-run placement): each MoE layer's
/// mean per-expert load over the steps of a training run's metrics
/// (train --metrics: "expert_load"), E experts on `ranks` ranks with
/// ceil(E / ranks) + `redundant` slots each. The extra slots go to the
/// experts with the most load per copy, then the copies to ranks, heaviest
/// first, each on the least-loaded rank with a free slot that lacks that
/// expert. Returns the file's JSON ({"ep", "layers": {...}}) and appends a
/// line per layer to `report`: the busiest rank's load over the mean, for
/// the contiguous split and for this placement.
nlohmann::json placeExperts(const std::string &metricsPath, int64_t ranks, int64_t redundant,
                            std::string &report);

} // namespace dsv3rt

#endif // DSV3_RUNTIME_EXPERTPLACEMENT_H
