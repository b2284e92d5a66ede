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
      length and one latent cache per layer -> logits and the caches;
      `forward_mtp`: ids -> the logits of each MTP depth);
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

def Dsv3AutodiffPass : Pass<"dsv3-autodiff", "mlir::ModuleOp"> {
  let summary = "build the gradients entry by reverse-mode differentiation of loss";
  let description = [{
    Clones the `loss` entry into a `gradients` entry (and a `train_loss`
    entry, the loss with the balance terms, into `train_gradients`) that
    returns the loss
    followed by dLoss/dW of every trainable parameter, in declaration order
    (recorded in `dsv3.grad_params`). The backward pass is built in reverse
    program order from each op's `DifferentiableOpInterface` rule, seeded
    with d(loss) = 1; gradients of values used more than once are summed
    with `dsv3.add`, and the gradient of a parameter is the sum over its
    reads. The router's correction bias is a buffer, not a parameter: it
    gets no gradient and no result. A parameter the loss does not reach gets
    a zero gradient. An op without a gradient rule on the path from a
    parameter to the loss is an error naming it.

    ```mlir
    // dsv3-opt --dsv3-autodiff model.mlir
    func.func @gradients(%ids: tensor<?x?xi64>) -> (tensor<f32>, tensor<512x64xf32>, ...)
        attributes {dsv3.entry = "gradients", dsv3.grad_params = [@model.embed_tokens.weight, ...]}
    ```
  }];
  let statistics = [
    Statistic<"numRules", "gradient-rules", "gradient rules applied">
  ];
}

def Dsv3OptimizerPass : Pass<"dsv3-optimizer", "mlir::ModuleOp"> {
  let summary = "build the train_step entry: gradients, AdamW, bias balancing";
  let description = [{
    Clones the `train_gradients` entry (the loss with the balance terms),
    or else the `gradients` entry (run `dsv3-autodiff` first), into
    `train_step(ids, step : i64, lr : tensor<f32>)`, which after the
    backward pass computes the global gradient norm, applies one
    `dsv3.adamw` per trainable parameter (decoupled weight decay on
    matrices only; moments declared as parameters
    `optimizer.exp_avg.<name>` / `optimizer.exp_avg_sq.<name>` of role
    optimizer_state, stacked like their parameter, so checkpoints hold
    them under hub-style names; fp32, or bf16 with `state-type=bf16`), and for every MoE layer with a correction
    bias one `dsv3.expert_bias_update` from that layer's expert counts
    (aux-loss-free balancing, DeepSeek-V3 2.1.2). It returns the loss, the
    global gradient norm and each MoE layer's expert counts (their bias
    parameters are listed in `dsv3.expert_count_params`).
  }];
  let options = [
    Option<"beta1", "beta1", "double", /*default=*/"0.9", "AdamW beta1">,
    Option<"beta2", "beta2", "double", /*default=*/"0.95", "AdamW beta2">,
    Option<"eps", "eps", "double", /*default=*/"1e-8", "AdamW epsilon">,
    Option<"weightDecay", "weight-decay", "double", /*default=*/"0.1",
           "decoupled weight decay (matrices only)">,
    Option<"maxGradNorm", "max-grad-norm", "double", /*default=*/"1.0",
           "global gradient-norm clipping threshold (0: off)">,
    Option<"biasUpdateRate", "bias-update-rate", "double", /*default=*/"1e-3",
           "gamma of the aux-loss-free bias update (0: off)">,
    Option<"stateType", "state-type", "std::string", /*default=*/"\"f32\"",
           "element type of the AdamW moments: f32, or bf16 (DeepSeek-V3 "
           "3.3.3: moments tracked in BF16, master weights and gradients "
           "fp32)">
  ];
}

def Dsv3SaveAttentionStatePass : Pass<"dsv3-save-attention-state", "mlir::ModuleOp"> {
  let summary = "keep each latent attention's output and log-sum-exp for its vjp";
  let description = [{
    After `dsv3-autodiff`: a `dsv3.latent_attention` whose `dsv3.vjp` reads
    the same primals in the same function gets `save_for_backward`, and so
    two more results, the attention output before `o_proj` ([batch, seq,
    num_heads * v_head_dim]) and each query's log-sum-exp ([batch,
    num_heads, seq]); the vjp takes them after its primals (its params gain
    `save_for_backward`). The backward then skips the attention's forward
    (the log-sum-exp the flash-style backward needs, the output for dW_o and
    delta = dO . o), at the cost of keeping both until the backward:
    8 (num_heads * v_head_dim + num_heads) bytes a token and layer more at
    peak (~1 GB a layer at 4 x 4096 tokens and V3's widths, against ~18 ms
    of attention recomputed). Ops without a vjp (inference entries, the
    loss-only entry) are left alone.

    ```mlir
    // before
    %y = dsv3.latent_attention %x ... : (...) -> tensor<?x?x64xf32>
    %g:8 = dsv3.vjp "latent_attention" (%x, ...) cotangents(%dy) ...
    // after
    %y, %o, %lse = dsv3.latent_attention %x ... {save_for_backward}
        : (...) -> (tensor<?x?x64xf32>, tensor<?x?x128xf32>, tensor<?x4x?xf32>)
    %g:8 = dsv3.vjp "latent_attention" (%x, ..., %o, %lse) cotangents(%dy)
        ... params {save_for_backward, ...}
    ```
  }];
  let statistics = [Statistic<"numSaved", "saved", "attentions whose state the vjp reads">];
}

def Dsv3RecomputeActivationsPass
    : Pass<"dsv3-recompute-activations", "mlir::ModuleOp"> {
  let summary = "recompute chosen layers' forward in the backward (activation checkpointing)";
  let description = [{
    In the training entries (`gradients`, `train_gradients`, `train_step`),
    the backward reads the forward's activations, which stay alive from the
    forward to the vjp that reads them: at long sequences the bulk of the
    memory plan. For each chosen unit (a decoder layer, or only its
    attention or its MLP / MoE: `scope`), the unit's forward ops are cloned
    right before the first backward op that reads one of their results, and
    the backward reads the clones: the originals die in the forward, and
    only the unit's inputs (the residual stream between layers) are kept.
    Units are chosen by `layers` ("all", or layer indices "1,3,5"), or by
    `budget-bytes`: the estimated activations the backward keeps (each kept
    value at `max-tokens` rows) are compared with the budget and the units
    that keep the most are recomputed until the estimate fits. The chosen
    units are recorded as `dsv3.recomputed` on each entry; the memory plan
    (`dsv3c --stats`) shows the resulting peak. Later CSE would merge the
    clones back: the pass runs after the pipeline's last CSE.

    ```mlir
    // dsv3-opt --dsv3-recompute-activations="layers=all"
    %a = dsv3.latent_attention %x, ...          // forward, loc "model.layers.1.self_attn"
    ...
    %a2 = dsv3.latent_attention %x, ...         // the clone, before the backward
    %g = dsv3.vjp "latent_attention" ... (%x, ..., %da)
    ```
  }];
  let options = [
    Option<"layers", "layers", "std::string", /*default=*/"\"\"",
           "units to recompute: \"all\" or comma-separated layer indices">,
    Option<"budgetBytes", "budget-bytes", "int64_t", /*default=*/"0",
           "recompute the units that keep the most until the estimated kept "
           "activations fit this many bytes (0: use `layers`)">,
    Option<"scope", "scope", "std::string", /*default=*/"\"layer\"",
           "what a unit is: layer, attention or mlp">,
    Option<"maxTokens", "max-tokens", "int64_t", /*default=*/"1024",
           "rows of a token-shaped activation in the estimate">
  ];
  let statistics = [
    Statistic<"numUnits", "units", "units recomputed">,
    Statistic<"numCloned", "cloned-ops", "forward ops cloned into the backward">
  ];
}

def Dsv3FuseSwigluPass : Pass<"dsv3-fuse-swiglu", "mlir::ModuleOp"> {
  let summary = "fuse SwiGLU into the gate/up GEMM (dense MLPs and experts)";
  let description = [{
    `swiglu(linear(x, Wg), linear(x, Wu))` becomes `dsv3.gated_linear(x, Wg,
    Wu)` and `swiglu(expert_grouped_matmul(rows, Wg, c),
    expert_grouped_matmul(rows, Wu, c))` becomes
    `dsv3.expert_gated_matmul(rows, Wg, Wu, c)`: one kernel reads the input
    once for both projections and applies SwiGLU in its epilogue, so the
    gate and up activations never reach memory. Only when both projections
    read the same input, have no bias, and feed nothing but the SwiGLU (the
    backward pass of a training entry keeps its own uses, so it is left
    alone).

    ```mlir
    // before
    %g = dsv3.linear %x, %wg : ...
    %u = dsv3.linear %x, %wu : ...
    %a = dsv3.swiglu %g, %u : tensor<?x?x128xf32>
    // after
    %a = dsv3.gated_linear %x, %wg, %wu : ...
    ```
  }];
  let statistics = [
    Statistic<"numDense", "dense", "dense gate/up pairs fused">,
    Statistic<"numExperts", "experts", "expert gate/up pairs fused">
  ];
}

def Dsv3FuseRmsNormPass : Pass<"dsv3-fuse-rms-norm", "mlir::ModuleOp"> {
  let summary = "fuse an RMSNorm into the projection that is its only consumer";
  let description = [{
    `linear(rms_norm(x, wn), W)` (no bias) and `lm_head(rms_norm(x, wn), W)`
    become `dsv3.norm_linear(x, wn, W)`; `gated_linear(rms_norm(x, wn), Wg,
    Wu)` becomes `dsv3.norm_gated_linear(x, wn, Wg, Wu)`: the projection
    normalises its input rows in its prologue. Only when the norm has no
    other user: the final norm before the LM head and a dense MLP's
    post-attention norm (after `dsv3-fuse-swiglu`) qualify; a MoE layer's
    norm also feeds the router and the dispatch, and a training entry's
    backward keeps its own uses, so those stay.

    ```mlir
    // before
    %n = dsv3.rms_norm %x, %wn eps 1.0e-06 : tensor<?x?x64xf32>, tensor<64xf32>
    %l = dsv3.lm_head %n, %w : (tensor<?x?x64xf32>, tensor<512x64xf32>) -> tensor<?x?x512xf32>
    // after
    %l = dsv3.norm_linear %x, %wn, %w eps 1.0e-06 : (...) -> tensor<?x?x512xf32>
    ```
  }];
  let statistics = [
    Statistic<"numLinear", "linear", "norms fused into a projection or the LM head">,
    Statistic<"numGated", "gated", "norms fused into a gate/up projection">
  ];
}

def Dsv3FuseResidualPass : Pass<"dsv3-fuse-residual", "mlir::ModuleOp"> {
  let summary = "fuse residual adds into the epilogue of the projection feeding them";
  let description = [{
    `dsv3.add(r, dsv3.linear(x, W))` (either operand order) becomes
    `dsv3.linear_add(x, W, r)` when the projection has no bias and no other
    user: the down projections of dense MLPs add the residual stream as they
    write, and the shared experts' down projection adds the routed experts'
    combined output.

    ```mlir
    // before
    %d = dsv3.linear %a, %wd : ...
    %h2 = dsv3.add %h1, %d : tensor<?x?x64xf32>
    // after
    %h2 = dsv3.linear_add %a, %wd, %h1 : ...
    ```
  }];
  let statistics = [Statistic<"numFused", "fused", "residual adds fused">];
}

def Dsv3FuseLmHeadLossPass : Pass<"dsv3-fuse-lm-head-loss", "mlir::ModuleOp"> {
  let summary = "fuse the vocabulary projection into the cross entropy that reads it";
  let description = [{
    `dsv3.cross_entropy(dsv3.lm_head(h, W), labels)` becomes
    `dsv3.lm_head_cross_entropy(h, W, labels)` when the logits have no other
    reader (the loss functions of a training module: the main head and each
    MTP depth): the full-vocabulary logits, [tokens, vocab] floats (8.5 GB
    at 4 x 4096 tokens and DeepSeek-V3's vocabulary), are never stored.
    Runs before `dsv3-autodiff`, so the backward is the fused op's own
    `dsv3.vjp`, which recomputes a tile of logits at a time.

    ```mlir
    // before
    %l = dsv3.lm_head %h, %w : (tensor<?x?x64xf32>, tensor<512x64xf32>) -> tensor<?x?x512xf32>
    %loss = dsv3.cross_entropy %l, %ids shift 1 scale 1.0 : (tensor<?x?x512xf32>, tensor<?x?xi64>) -> tensor<f32>
    // after
    %loss = dsv3.lm_head_cross_entropy %h, %w, %ids shift 1 scale 1.0
        : (tensor<?x?x64xf32>, tensor<512x64xf32>, tensor<?x?xi64>) -> tensor<f32>
    ```
  }];
  let statistics = [Statistic<"numFused", "fused", "losses fused with their lm_head">];
}

def Dsv3QuantizeFp8Pass : Pass<"dsv3-quantize-fp8", "mlir::ModuleOp"> {
  let summary = "store the projection weights as block-scaled FP8 and compute their GEMMs in FP8";
  let description = [{
    `dsv3c --quantize fp8`: the weights DeepSeek-V3's official checkpoint
    stores in FP8 (SEMANTICS.md 9: every attention projection, the dense MLP,
    the routed and shared experts, in the main model and the MTP layers)
    become `f8E4M3FN` parameters, each with an f32 block-scale parameter
    (`<name>_scale_inv`, role `weight_scale`, `scales @name`) of shape
    `[..., ceil(N / block-rows), ceil(K / block-cols)]`. Every read becomes
    `dsv3.fp8_weight` of the two, typed as before, so the projections are
    unchanged ops whose lowering passes the e4m3 weight and its scales to
    the kernel (FP8 GEMMs with per-token 1×block-cols activation scales).
    Embeddings, the head, the router, norms, biases and the MTP `eh_proj`
    stay in the model's dtype, as in the official checkpoint.

    ```mlir
    // before
    dsv3.param @"model.layers.0.mlp.down_proj.weight" dense_mlp : tensor<64x128xf32>
    %w = dsv3.get_param @"model.layers.0.mlp.down_proj.weight" : tensor<64x128xf32>
    // after
    dsv3.param @"model.layers.0.mlp.down_proj.weight" dense_mlp : tensor<64x128xf8E4M3FN>
    dsv3.param @"model.layers.0.mlp.down_proj.weight_scale_inv" weight_scale
        scales @"model.layers.0.mlp.down_proj.weight" : tensor<1x1xf32>
    %q = dsv3.get_param @"model.layers.0.mlp.down_proj.weight" : tensor<64x128xf8E4M3FN>
    %s = dsv3.get_param @"model.layers.0.mlp.down_proj.weight_scale_inv" : tensor<1x1xf32>
    %w = dsv3.fp8_weight %q, %s block [128, 128]
        : tensor<64x128xf8E4M3FN>, tensor<1x1xf32> -> tensor<64x128xf32>
    ```

    Runs after `dsv3-partition-experts`: the scales of a sharded expert
    stack are sharded with it (`sharded_over`, `placement`), one rank's
    experts.

    A module that trains (a `gradients`, `train_gradients` or `train_step`
    entry) keeps its fp32 master weights: FP8 training (DeepSeek-V3 §3.3).
    Every GEMM op that multiplies by weights of the set only, and every
    `dsv3.vjp` of `linear`, `expert_grouped_matmul` or `latent_attention`
    that does, gets `fp8_compute = [block-rows, block-cols]` (an attribute,
    or an entry of the vjp's `params`). Its kernels quantize as they run:
    the weight in blocks, the forward's activations per token in 1 × block
    tiles, Dgrad's cotangent likewise, Wgrad's two operands per channel in
    block × 1 tiles over the tokens; each block's e4m3 products summed in
    fp32 and scaled (docs/fp8.md, "FP8 training").

    ```mlir
    %y = dsv3.linear %x, %w {fp8_compute = array<i64: 128, 128>} : ...
    %dw = dsv3.vjp "linear"(%x, %w) cotangents(%dy) grads [1]
        params {fp8_compute = array<i64: 128, 128>} : ...
    ```
  }];
  let options = [
    Option<"blockRows", "block-rows", "int64_t", "128",
           "rows of a weight-scale block (the config's weight_block_size[0])">,
    Option<"blockCols", "block-cols", "int64_t", "128",
           "columns of a weight-scale block, and the activation block">,
  ];
  let statistics = [
    Statistic<"numQuantized", "quantized-params",
              "parameters stored as FP8 (training: GEMM ops marked fp8_compute)">,
  ];
}

def Dsv3QuantizeKvCachePass : Pass<"dsv3-quantize-kv-cache", "mlir::ModuleOp"> {
  let summary = "store the decode latent cache in bf16, or as FP8 latents with per-token scales";
  let description = [{
    `dsv3c --kv-cache bf16|fp8`: sets `storage` on every
    `dsv3.latent_attention_decode`. The cache operand keeps its type (a
    backend chooses the bytes: the host keeps the rounded values in f32,
    the CUDA backend packs them, 656 bytes a row at V3 widths);
    what changes is the arithmetic, which every backend must reproduce:
    - `bf16`: each row element rounded to bf16 as it is written;
    - `fp8`: the `kv_lora_rank` latent as e4m3 codes times one fp32 scale
      per token (max(amax, 1e-4) / 448), the rope key rounded to
      bf16 (FlashMLA's FP8 cache and DeepSeek-V3.2 keep it out of FP8).

    The new tokens attend to their own stored rows as the later ones will,
    so a prompt prefilled through the cache and one decoded a token at a
    time see the same keys. An FP8 row is 512 + 2 × 64 + 4 = 644 bytes at
    DeepSeek-V3's widths against 2304 in f32 and 1152 in bf16.

    ```mlir
    // before
    %a, %c1 = dsv3.latent_attention_decode %x cache(%c0, %past) q(%q) ...
    // after (storage=fp8)
    %a, %c1 = dsv3.latent_attention_decode %x cache(%c0, %past) storage fp8 q(%q) ...
    ```
  }];
  let options = [
    Option<"storage", "storage", "std::string", "\"fp8\"",
           "f32, bf16 or fp8">,
  ];
  let statistics = [
    Statistic<"numCaches", "caches", "decode caches given the storage">,
  ];
}

def Dsv3PartitionExpertsPass : Pass<"dsv3-partition-experts", "mlir::ModuleOp"> {
  let summary = "split the routed experts over expert-parallel ranks (all-to-all dispatch and combine)";
  let description = [{
    Expert parallelism (`dsv3c --ep N --dp M`): every stacked routed-expert
    parameter is split contiguously over the `ep` ranks (`sharded_over N`,
    type `[experts / N, ...]`), and each MoE layer's expert GEMMs are put
    between two collectives: `dsv3.ep_dispatch` after `dsv3.moe_dispatch`
    (an all-to-all-v sending every rank the rows of its experts) and
    `dsv3.ep_combine` before `dsv3.moe_combine` (the reverse all-to-all-v).
    Everything else (attention, dense layers, router, shared experts) is
    replicated and data-parallel: each rank runs its own tokens. The
    program is the same on every rank (SPMD); the runtime binds rank r to
    its experts' checkpoint tensors. Records `dsv3.expert_parallel` and
    `dsv3.data_parallel` on the module.

    ```mlir
    // after, inside an MoE layer
    %rows, %counts, %slots = dsv3.moe_dispatch %h, %idx experts 16 : ...
    %local, %local_counts, %layout = dsv3.ep_dispatch %rows, %counts ranks 2 : ...
    %a = dsv3.expert_gated_matmul %local, %wg, %wu, %local_counts : ...
    %y = dsv3.expert_grouped_matmul %a, %wd, %local_counts : ...
    %back = dsv3.ep_combine %y, %layout, %counts ranks 2 : ...
    %out = dsv3.moe_combine %back, %slots, %weights : ...
    ```

    Entries with a backward pass (`gradients`, `train_gradients`,
    `train_step`) also get the data-parallel reductions: the loss seed
    becomes 1/dp (each rank's gradients are its share of the global-batch
    mean); the replicated weights' gradients are all-reduced (sum) before
    the norm and AdamW, while a sharded expert's gradient is complete on its
    rank (the adjoint of `ep_combine` is `ep_dispatch` and vice versa, so
    every rank's rows of that expert meet there); the clipping norm adds the
    experts' squares over the ranks (`global_norm squared` + `all_reduce` +
    `plus_squares`); the routed counts of the bias update and the reported
    loss are all-reduced. `dp > 1` with `ep = 1` is plain data parallelism.

    `placement=FILE` places the experts from a JSON file instead of the
    contiguous split (`dsv3-run placement` makes one from measured loads):
    `{"ep": N, "default": [[experts of rank 0], ...], "layers":
    {"model.layers.3.mlp": [[...], ...]}}`, every rank the same number of
    slots, an expert on one rank or several (redundant copies of hot
    experts, as DeepSeek-V3's inference deployment runs them; an expert's
    rows are split evenly over its copies). The parameters get the layer's
    `placement`; inference entries only.

    `dp` a multiple of `ep`: the ranks form dp / ep expert-parallel groups
    of ep consecutive ranks (the exchanges run within a group); a sharded
    expert's gradient is then also summed over the groups (`all_reduce ...
    over "expert_data"`). The host backend runs every such layout; the
    NCCL path so far dp = ep (or ep = 1).
  }];
  let options = [
    Option<"ep", "ep", "int64_t", /*default=*/"1", "expert-parallel ranks">,
    Option<"dp", "dp", "int64_t", /*default=*/"1", "data-parallel ranks">,
    Option<"capacity", "capacity", "double", /*default=*/"0",
           "rows a rank receives, as a multiple of the rows it dispatches (0: the "
           "worst case, ep times)">,
    Option<"placementFile", "placement", "std::string", /*default=*/"\"\"",
           "a JSON placement of the experts on the ranks (redundant copies allowed; "
           "inference only); default: contiguous">
  ];
  let statistics = [
    Statistic<"numLayers", "layers", "MoE layers partitioned">,
    Statistic<"numParams", "params", "expert parameters sharded">,
    Statistic<"numTrainingEntries", "training-entries",
              "entries given the data-parallel gradient reductions">
  ];
}

def Dsv3LowerToKernelsPass : Pass<"dsv3-lower-to-kernels", "mlir::ModuleOp"> {
  let summary = "lower the dsv3 entry functions to dsv3k kernel launches";
  let description = [{
    Every entry function becomes a program over buffers: tensors become
    memrefs, `dsv3.get_param` becomes `dsv3k.param`, and every other dsv3 op
    becomes one `dsv3k.launch` of the kernel of the same name, with one
    `dsv3k.alloc` per result and the op's attributes as kernel parameters.
    The latent cache of `dsv3.latent_attention_decode` is updated in place
    (its new_cache result is the cache argument). Each allocation records
    its shape at `max-batch` x `max-seq` (the decode caches hold `max-seq`
    tokens), from which the memory plan sizes it.

    ```mlir
    // before
    %y = dsv3.rms_norm %x, %w eps 1.0e-06 : tensor<?x?x64xf32>, tensor<64xf32>
    // after
    %y = dsv3k.alloc max_shape [4, 256, 64] : memref<?x?x64xf32>
    dsv3k.launch "rms_norm" ins(%x, %w : memref<?x?x64xf32>, memref<64xf32>)
        outs(%y : memref<?x?x64xf32>) params {epsilon = 1.0e-06 : f64}
    ```
  }];
  let options = [
    Option<"maxBatch", "max-batch", "int64_t", /*default=*/"4",
           "largest batch the buffers are planned for">,
    Option<"maxSeq", "max-seq", "int64_t", /*default=*/"256",
           "largest sequence (and decode cache length) planned for">,
    Option<"maxTokens", "max-tokens", "int64_t", /*default=*/"0",
           "most tokens (batch x sequence) one call processes; 0 = "
           "max-batch x max-seq. Token-shaped buffers are planned for this "
           "many rows, the decode caches still for max-batch x max-seq">
  ];
  let dependentDialects = ["::mlir::dsv3k::Dsv3KDialect"];
  let statistics = [
    Statistic<"numLaunches", "launches", "kernel launches created">,
    Statistic<"numAllocs", "allocs", "buffers allocated">
  ];
}

def Dsv3KPlanMemoryPass : Pass<"dsv3k-plan-memory", "mlir::ModuleOp"> {
  let summary = "assign every buffer an arena offset by liveness";
  let description = [{
    Per entry function: a buffer is live from the launch that writes it to
    the last launch that reads it (to the end when returned). Buffers are
    placed first-fit, in order of definition, at 256-byte aligned offsets
    that no overlapping-live buffer uses, so buffers whose lifetimes do not
    overlap share memory. Sets `offset` and `bytes` on every `dsv3k.alloc`
    and `dsv3k.arena_bytes` (the peak) and `dsv3k.unplanned_bytes` (the sum
    of all buffers) on the function.
  }];
  let statistics = [
    Statistic<"arenaBytes", "arena-bytes", "arena bytes over all entries">,
    Statistic<"unplannedBytes", "unplanned-bytes",
              "bytes without reuse over all entries">
  ];
}

#endif // DSV3_PASSES_TD
