//===- ParamStats.h - parameter counts of a dsv3 module ----------*- C++ -*-===//
#ifndef DSV3_PARAMSTATS_H
#define DSV3_PARAMSTATS_H

#include "mlir/IR/BuiltinOps.h"
#include "llvm/Support/raw_ostream.h"

#include <cstdint>
#include <string>
#include <vector>

namespace mlir::dsv3 {

/// Parameter counts of one category: every element, and the elements one
/// token uses (routed experts scaled by top_k / n_routed_experts).
struct ParamCount {
  std::string category;
  int64_t total = 0;
  int64_t activated = 0;
};

struct ParamStats {
  /// Main model, by category (embedding, attention, norms, dense MLP,
  /// routed experts, shared experts, router, head).
  std::vector<ParamCount> main;
  ParamCount mainTotal{"main model", 0, 0};
  /// All MTP depths together: unique weights; activated excludes nothing
  /// shared (the embedding and head the depths reuse are in mtpShared).
  ParamCount mtp{"MTP", 0, 0};
  /// Embedding + head the MTP depths read from the main model.
  int64_t mtpShared = 0;
  int64_t mtpDepths = 0;
  /// Buffers that are not parameters (router correction biases).
  int64_t buffers = 0;
  /// Checkpoint tensors bound (stacked parameters count once per expert).
  int64_t checkpointTensors = 0;
  /// Bytes of all parameters and buffers at their declared element types.
  int64_t bytes = 0;
};

/// Counts the `dsv3.param`s of `module`. Fails (with a diagnostic on the
/// param) when a stacked expert parameter's top_k cannot be found from the
/// router that feeds it.
FailureOr<ParamStats> computeParamStats(ModuleOp module);

/// Prints a table (or JSON) of `stats`.
void printParamStats(const ParamStats &stats, llvm::raw_ostream &os, bool json);

} // namespace mlir::dsv3

#endif // DSV3_PARAMSTATS_H
