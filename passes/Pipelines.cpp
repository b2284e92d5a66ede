//===- Pipelines.cpp - dsv3 pass pipelines and registration ---------------===//
#include "passes/Passes.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Pass/PassRegistry.h"
#include "mlir/Transforms/Passes.h"

using namespace mlir;
using namespace mlir::dsv3;

/// The stages every pipeline starts with.
static void addModelStages(OpPassManager &pm) {
  pm.addPass(createDsv3VerifyModelPass());
  pm.addPass(createCanonicalizerPass());
  pm.addPass(createCSEPass());
  pm.addPass(createDsv3PruneTiedParamsPass());
}

/// The stages every pipeline ends with.
static void addKernelStages(OpPassManager &pm, const PipelineOptions &options) {
  if (!options.lowerToKernels)
    return;
  pm.addPass(createDsv3FuseSwigluPass());
  pm.addPass(createDsv3FuseRmsNormPass());
  pm.addPass(createDsv3FuseResidualPass());
  // Partitioned when asked for, even over one rank: `--ep 1` runs the
  // exchanges and reductions with a single rank (the NCCL path's world
  // size 1 check).
  if (options.ep > 0 || options.dp > 0) {
    Dsv3PartitionExpertsPassOptions partition;
    partition.ep = std::max<int64_t>(1, options.ep);
    partition.dp = options.dp > 0 ? int64_t(options.dp) : partition.ep;
    partition.capacity = options.epCapacity;
    partition.placementFile = options.epPlacement;
    pm.addPass(createDsv3PartitionExpertsPass(partition));
  }
  // After the partition: a sharded expert stack's block scales are
  // sharded with it (one rank's experts, their checkpoint tensors).
  if (options.quantize == "fp8") {
    Dsv3QuantizeFp8PassOptions fp8;
    fp8.blockRows = options.fp8BlockRows;
    fp8.blockCols = options.fp8BlockCols;
    pm.addPass(createDsv3QuantizeFp8Pass(fp8));
  }
  if (options.kvCache != "f32") {
    Dsv3QuantizeKvCachePassOptions cache;
    cache.storage = options.kvCache;
    pm.addPass(createDsv3QuantizeKvCachePass(cache));
  }
  Dsv3LowerToKernelsPassOptions lowering;
  lowering.maxBatch = options.maxBatch;
  lowering.maxSeq = options.maxSeq;
  lowering.maxTokens = options.maxTokens;
  pm.addPass(createDsv3LowerToKernelsPass(lowering));
  pm.addPass(createDsv3KPlanMemoryPass());
}

void mlir::dsv3::buildDsv3InferPipeline(OpPassManager &pm,
                                        const PipelineOptions &options) {
  addModelStages(pm);
  addKernelStages(pm, options);
}

void mlir::dsv3::buildDsv3TrainPipeline(OpPassManager &pm,
                                        const PipelineOptions &options) {
  addModelStages(pm);
  // Before the gradients: the fused loss's own vjp recomputes the logits a
  // tile at a time instead of keeping them for the backward.
  if (options.fuseLmHeadLoss)
    pm.addPass(createDsv3FuseLmHeadLossPass());
  pm.addPass(createDsv3AutodiffPass());
  Dsv3OptimizerPassOptions optimizer;
  optimizer.weightDecay = options.weightDecay;
  optimizer.maxGradNorm = options.maxGradNorm;
  optimizer.biasUpdateRate = options.biasUpdateRate;
  optimizer.stateType = options.optimizerState.getValue();
  pm.addPass(createDsv3OptimizerPass(optimizer));
  pm.addPass(createCSEPass());
  // Once the gradient entries exist: each of their latent attentions hands
  // its output and log-sum-exp to its vjp (the loss entry's do not).
  if (options.saveAttentionState)
    pm.addPass(createDsv3SaveAttentionStatePass());
  // After the last CSE, which would merge the recomputed clones back.
  if (!options.recompute.empty() || options.activationBudget > 0) {
    Dsv3RecomputeActivationsPassOptions recompute;
    recompute.layers = options.recompute;
    recompute.budgetBytes = options.activationBudget;
    recompute.scope = options.recomputeScope;
    recompute.maxTokens = options.maxTokens > 0 ? int64_t(options.maxTokens)
                                                : options.maxBatch * options.maxSeq;
    pm.addPass(createDsv3RecomputeActivationsPass(recompute));
  }
  addKernelStages(pm, options);
}

void mlir::dsv3::registerDsv3PassesAndPipelines() {
  registerDsv3Passes();
  PassPipelineRegistration<PipelineOptions>(
      "dsv3-infer-pipeline",
      "the dsv3 inference pipeline (what `dsv3c --mode infer` runs)",
      buildDsv3InferPipeline);
  PassPipelineRegistration<PipelineOptions>(
      "dsv3-train-pipeline",
      "the dsv3 training pipeline (what `dsv3c --mode train` runs)",
      buildDsv3TrainPipeline);
}
