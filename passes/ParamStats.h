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

/// What one rank holds when the routed experts are split over `ep` ranks
/// (contiguously; everything else replicated, attention data-parallel), in
/// parameters and in bytes at bf16 and at DeepSeek-V3's FP8 checkpoint
/// format (e4m3 matrices of attention, MLPs and experts with one f32 scale
/// per `fp8Block` x `fp8Block` block; embeddings, head, router and norms in
/// bf16).
struct RankMemory {
  int64_t ep = 1;
  int64_t expertsPerRank = 0, experts = 0; // per MoE layer (the largest rank)
  int64_t replicatedParams = 0, expertParams = 0;
  int64_t replicatedBf16 = 0, expertBf16 = 0, replicatedFp8 = 0, expertFp8 = 0;
  /// For the KV cache per token (set by the caller from the config).
  int64_t layers = 0, latentWidth = 0;
};
RankMemory computeRankMemory(ModuleOp module, int64_t ep, int64_t fp8Block = 128);
void printRankMemory(const RankMemory &m, int64_t arenaBytes, llvm::raw_ostream &os,
                     bool json);

/// Prints a table (or JSON) of `stats`.
void printParamStats(const ParamStats &stats, llvm::raw_ostream &os, bool json);

} // namespace mlir::dsv3

#endif // DSV3_PARAMSTATS_H
