//===- ModelBuilder.h - build the dsv3 module of a model ---------*- C++ -*-===//
#ifndef DSV3_MODELS_MODELBUILDER_H
#define DSV3_MODELS_MODELBUILDER_H

#include "models/ModelConfig.h"

#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/OwningOpRef.h"

namespace dsv3 {

struct BuildOptions {
  /// Weight of the MTP loss, divided over the depths (paper: 0.3 for the
  /// first 10T tokens, 0.1 after).
  double mtpLambda = 0.3;
  /// alpha of the load-balancing loss added in the `train_loss` entry
  /// (sequence-wise for sigmoid routing, DeepSeekMoE's expert-level loss
  /// for softmax routing); 0: no train_loss entry. The `loss` entry is
  /// always the plain HF loss (what the oracle fixtures hold).
  double balanceAlpha = 0.0;
};

/// Builds the dsv3 module of `config`: one `dsv3.param` per checkpoint
/// tensor (routed experts stacked per layer) and the entry functions
/// `forward` (ids -> logits), `loss` (ids -> mean next-token cross entropy,
/// plus the weighted MTP loss when the model has MTP depths) and `decode`
/// (ids, past length, one latent cache per layer -> logits, caches).
mlir::OwningOpRef<mlir::ModuleOp> buildModelModule(mlir::MLIRContext &context,
                                                   const ModelConfig &config,
                                                   const BuildOptions &options);

} // namespace dsv3

#endif // DSV3_MODELS_MODELBUILDER_H
