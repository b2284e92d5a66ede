//===- Passes.h - dsv3 passes and pipelines -----------------------*- C++ -*-===//
#ifndef DSV3_PASSES_H
#define DSV3_PASSES_H

#include "mlir/IR/BuiltinOps.h"
#include "mlir/Pass/Pass.h"
#include "mlir/Pass/PassManager.h"

namespace mlir::dsv3 {

#define GEN_PASS_DECL
#include "passes/Passes.h.inc"

/// Options shared by the dsv3 pipelines (later issues add fusion, FP8 and
/// expert-parallel options here).
struct PipelineOptions : public PassPipelineOptions<PipelineOptions> {};

/// Inference: verify, canonicalize (tied weights read their original), CSE,
/// drop dead tied copies.
void buildDsv3InferPipeline(OpPassManager &pm, const PipelineOptions &options);

/// Training: the inference stages; autodiff and the optimizer are added here
/// by the training issue.
void buildDsv3TrainPipeline(OpPassManager &pm, const PipelineOptions &options);

/// Registers every dsv3 pass and both pipelines with the global registry
/// (for dsv3-opt and dsv3c).
void registerDsv3PassesAndPipelines();

#define GEN_PASS_REGISTRATION
#include "passes/Passes.h.inc"

} // namespace mlir::dsv3

#endif // DSV3_PASSES_H
