//===- Passes.td - dsv3 passes -----------------------------------*- tablegen -*-===//
//
// Every dsv3 pass, in pipeline order. One pass a .cpp file in this folder;
// pipelines (dsv3-infer-pipeline, dsv3-train-pipeline) are in Pipelines.cpp.
//
//===----------------------------------------------------------------------===//

#ifndef DSV3_PASSES_TD
#define DSV3_PASSES_TD

include "mlir/Pass/PassBase.td"

def Dsv3VerifyModelPass : Pass<"dsv3-verify-model", "mlir::ModuleOp"> {
  let summary = "check the module-level invariants of a dsv3 model";
  let description = [{
    Op verifiers check each op on its own; this pass checks what only the
    whole module shows:
    - no two parameters bind the same checkpoint tensor name (stacked
      parameters expand `{e}` to one name per expert);
    - every `dsv3.moe_dispatch` has as many experts as the `dsv3.moe_route`
      whose indices it permutes;
    - each function marked `dsv3.entry` has the signature of its kind
      (`forward`: ids -> logits; `loss`: ids -> scalar; `decode`: ids, past
      length and one latent cache per layer -> logits and the caches);
    - a parameter that nothing reads gets a warning.

    ```mlir
    // dsv3-opt --dsv3-verify-model model.mlir
    ```
  }];
  let statistics = [
    Statistic<"numParams", "params", "parameter tensors declared">,
    Statistic<"numCheckpointTensors", "checkpoint-tensors",
              "checkpoint tensors bound (stacked parameters count each expert)">,
    Statistic<"numEntries", "entries", "entry functions">
  ];
}

def Dsv3PruneTiedParamsPass : Pass<"dsv3-prune-tied-params", "mlir::ModuleOp"> {
  let summary = "drop tied parameter copies that nothing reads any more";
  let description = [{
    After canonicalization has redirected every read of a tied copy (tied
    embeddings, the MTP layer's copies of the embedding and head) to the
    original, the copies are dead declarations; this pass erases them, so
    the artifact binds and (in training) updates the weight once.

    ```mlir
    // before: dsv3.param @"model.layers.2.shared_head.head.weight" head
    //           tied_to @"lm_head.weight" : tensor<320x64xf32>   (unused)
    // after:  (erased)
    ```
  }];
  let statistics = [
    Statistic<"numPruned", "pruned", "tied parameter copies erased">
  ];
}

def Dsv3PrintParamStatsPass : Pass<"dsv3-print-param-stats", "mlir::ModuleOp"> {
  let summary = "print total and activated-per-token parameter counts";
  let description = [{
    Counts the elements of every `dsv3.param` by role (attention, dense MLP,
    routed experts, shared experts, router, norms, embedding and head, MTP)
    and prints a table to stderr (or `--json`). Activated counts replace a
    layer's routed experts by the `num_experts_per_tok` of the router that
    reads it. Tied copies and the router's correction bias (a buffer) are
    not parameters. The MTP depths are counted separately: their unique
    weights, and their activated weights including the shared embedding and
    head.
  }];
  let options = [
    Option<"json", "json", "bool", /*default=*/"false",
           "print JSON instead of a table">
  ];
}

#endif // DSV3_PASSES_TD
