//===- Passes.h - dsv3 passes and pipelines -----------------------*- C++ -*-===//
#ifndef DSV3_PASSES_H
#define DSV3_PASSES_H

#include "mlir/IR/BuiltinOps.h"
#include "mlir/Pass/Pass.h"
#include "mlir/Pass/PassManager.h"
#include "mlir/Pass/PassOptions.h"

namespace mlir::dsv3k {
class Dsv3KDialect;
} // namespace mlir::dsv3k

namespace mlir::dsv3 {

#define GEN_PASS_DECL
#include "passes/Passes.h.inc"

/// Options shared by the dsv3 pipelines (later issues add fusion, FP8 and
/// expert-parallel options here).
struct PipelineOptions : public PassPipelineOptions<PipelineOptions> {
  Option<int64_t> maxBatch{*this, "max-batch",
                           llvm::cl::desc("largest batch buffers are planned for"),
                           llvm::cl::init(4)};
  Option<int64_t> maxSeq{*this, "max-seq",
                         llvm::cl::desc("largest sequence / decode cache length "
                                        "buffers are planned for"),
                         llvm::cl::init(256)};
  Option<int64_t> maxTokens{
      *this, "max-tokens",
      llvm::cl::desc("most tokens (batch x sequence) one call processes "
                     "(0 = max-batch x max-seq)"),
      llvm::cl::init(0)};
  Option<bool> lowerToKernels{
      *this, "lower-to-kernels",
      llvm::cl::desc("end with the kernel-level program (dsv3k); false stops "
                     "at the verified, canonical dsv3 module"),
      llvm::cl::init(true)};
  Option<bool> fuseLmHeadLoss{
      *this, "fuse-lm-head-loss",
      llvm::cl::desc("training: each loss's lm_head fused into its cross "
                     "entropy (dsv3-fuse-lm-head-loss; no full-vocabulary logits)"),
      llvm::cl::init(true)};
  Option<bool> saveAttentionState{
      *this, "save-attention-state",
      llvm::cl::desc("training: each latent attention keeps its output and "
                     "log-sum-exp for its vjp (dsv3-save-attention-state)"),
      llvm::cl::init(true)};
  Option<double> weightDecay{*this, "weight-decay",
                             llvm::cl::desc("AdamW decoupled weight decay"),
                             llvm::cl::init(0.1)};
  Option<double> maxGradNorm{*this, "max-grad-norm",
                             llvm::cl::desc("global gradient-norm clipping"),
                             llvm::cl::init(1.0)};
  Option<double> biasUpdateRate{
      *this, "bias-update-rate",
      llvm::cl::desc("gamma of the aux-loss-free bias update"),
      llvm::cl::init(1e-3)};
  Option<std::string> optimizerState{
      *this, "optimizer-state",
      llvm::cl::desc("element type of the AdamW moments: f32 or bf16"),
      llvm::cl::init("f32")};
  Option<std::string> recompute{
      *this, "recompute",
      llvm::cl::desc("training: units whose forward the backward recomputes "
                     "(\"all\" or layer indices; dsv3-recompute-activations)"),
      llvm::cl::init("")};
  Option<int64_t> activationBudget{
      *this, "activation-budget",
      llvm::cl::desc("training: recompute units until the estimated kept "
                     "activations fit this many bytes (0: off)"),
      llvm::cl::init(0)};
  Option<int64_t> ep{*this, "ep",
                     llvm::cl::desc("expert-parallel ranks (dsv3-partition-experts; 0: "
                                    "no partition unless dp is given)"),
                     llvm::cl::init(0)};
  Option<double> epCapacity{
      *this, "ep-capacity",
      llvm::cl::desc("rows a rank receives, as a multiple of the rows it dispatches "
                     "(0: the worst case, ep times)"),
      llvm::cl::init(0)};
  Option<std::string> epPlacement{
      *this, "ep-placement",
      llvm::cl::desc("a JSON placement of the experts on the expert-parallel ranks"),
      llvm::cl::init("")};
  Option<int64_t> dp{*this, "dp",
                     llvm::cl::desc("data-parallel ranks (default: ep)"),
                     llvm::cl::init(0)};
  Option<std::string> quantize{
      *this, "quantize",
      llvm::cl::desc("\"fp8\": block-scaled FP8 weights and GEMMs (dsv3-quantize-fp8)"),
      llvm::cl::init("")};
  Option<std::string> kvCache{
      *this, "kv-cache",
      llvm::cl::desc("decode latent cache storage: f32, bf16 or fp8 "
                     "(dsv3-quantize-kv-cache)"),
      llvm::cl::init("f32")};
  Option<int64_t> fp8BlockRows{*this, "fp8-block-rows",
                               llvm::cl::desc("rows of an FP8 weight-scale block"),
                               llvm::cl::init(128)};
  Option<int64_t> fp8BlockCols{*this, "fp8-block-cols",
                               llvm::cl::desc("columns of an FP8 weight-scale block"),
                               llvm::cl::init(128)};
  Option<std::string> recomputeScope{
      *this, "recompute-scope",
      llvm::cl::desc("training: a recomputed unit is a layer, its attention "
                     "or its mlp"),
      llvm::cl::init("layer")};
};

/// Inference: verify, canonicalize (tied weights read their original), CSE,
/// drop dead tied copies, lower to kernel launches, plan memory.
void buildDsv3InferPipeline(OpPassManager &pm, const PipelineOptions &options);

/// Training: the inference stages plus autodiff (the `gradients` entry) and
/// the optimizer (the `train_step` entry) before the lowering.
void buildDsv3TrainPipeline(OpPassManager &pm, const PipelineOptions &options);

/// Registers every dsv3 pass and both pipelines with the global registry
/// (for dsv3-opt and dsv3c).
void registerDsv3PassesAndPipelines();

#define GEN_PASS_REGISTRATION
#include "passes/Passes.h.inc"

} // namespace mlir::dsv3

#endif // DSV3_PASSES_H
