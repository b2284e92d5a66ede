//===- Dsv3Ops.td - dsv3 operations ------------------------------*- tablegen -*-===//
//
// The ops of the dsv3 dialect: one per part of a DeepSeek-V3-family model.
// Numerics follow SEMANTICS.md; section numbers are cited per op.
//
//===----------------------------------------------------------------------===//

#ifndef DSV3_OPS_TD
#define DSV3_OPS_TD

include "dialects/Dsv3/IR/Dsv3Dialect.td"
include "dialects/Dsv3/IR/Dsv3Attrs.td"
include "mlir/IR/SymbolInterfaces.td"
include "mlir/IR/OpAsmInterface.td"
include "mlir/Interfaces/SideEffectInterfaces.td"
include "mlir/Interfaces/InferTypeOpInterface.td"
include "dialects/Dsv3/IR/Dsv3Interfaces.td"

// Every differentiable op declares the interface; the default rule emits a
// dsv3.vjp of the op.
defvar Dsv3_Differentiable = DeclareOpInterfaceMethods<Dsv3_DifferentiableOpInterface>;

//===----------------------------------------------------------------------===//
// Type constraints
//===----------------------------------------------------------------------===//

def Dsv3_FloatTensor : RankedTensorOf<[AnyFloat]>;
def Dsv3_IdTensor : RankedTensorOf<[I32, I64]>;
def Dsv3_I64Tensor : RankedTensorOf<[I64]>;
def Dsv3_F32Tensor : RankedTensorOf<[F32]>;
def Dsv3_ScalarF32 : 0DTensorOf<[F32]> {
  let builderCall = "::mlir::RankedTensorType::get({}, $_builder.getF32Type())";
}

//===----------------------------------------------------------------------===//
// Parameters
//===----------------------------------------------------------------------===//

def Dsv3_ParamOp : Dsv3_Op<"param", [Symbol, HasParent<"::mlir::ModuleOp">,
    DeclareOpInterfaceMethods<SymbolUserOpInterface>]> {
  let summary = "a model weight, named by its checkpoint tensor name";
  let description = [{
    Declares one weight of the model. The symbol name is the checkpoint
    tensor name, so compiled artifacts bind to Hugging Face safetensors
    directly. `role` says what part of the model it belongs to.

    A `stacked_from` template (containing `{e}`) declares a stack of
    per-expert tensors: row `e` of the outermost dimension is the checkpoint
    tensor whose name is the template with `{e}` replaced by `e`.

    `tied_to` declares a checkpoint tensor that is a copy of another one
    (tied embeddings, the MTP layer's copies of the embedding and head); its
    readers are redirected to the original by canonicalization.

    `mtp_depth` marks the weights of a multi-token-prediction depth.

    `scales @w` (set by `dsv3-quantize-fp8`, role `weight_scale`) declares
    the fp32 block scales of the FP8 weight `@w`: one per block of its last
    two dimensions, leading (expert) dimensions equal. Its checkpoint name
    is the hub format's `<w>_scale_inv`; a checkpoint without it (bf16 or
    fp32 weights) is quantized at load.

    `sharded_over N` (set by `dsv3-partition-experts`) splits a stacked
    parameter's experts contiguously over N expert-parallel ranks: the type
    is one rank's slice `[experts / N, ...]`, and rank r binds the checkpoint
    tensors of experts `r·experts/N ... (r+1)·experts/N - 1`. With
    `placement [...]` (row-major `[N, slots]`), rank r's slot j holds
    expert `placement[r·slots + j]` instead (an expert may have copies on
    several ranks) and the type is `[slots, ...]`.

    ```mlir
    dsv3.param @"model.layers.3.mlp.gate.weight" router : tensor<256x7168xbf16>
    dsv3.param @"model.layers.3.mlp.experts.down_proj.weight" routed_experts
        stacked_from "model.layers.3.mlp.experts.{e}.down_proj.weight"
        : tensor<256x7168x2048xbf16>
    ```
  }];
  let arguments = (ins SymbolNameAttr:$sym_name,
                       TypeAttrOf<AnyRankedTensor>:$type,
                       Dsv3_ParamRole:$role,
                       OptionalAttr<StrAttr>:$stacked_from,
                       OptionalAttr<FlatSymbolRefAttr>:$tied_to,
                       OptionalAttr<I64Attr>:$mtp_depth,
                       OptionalAttr<I64Attr>:$sharded_over,
                       OptionalAttr<DenseI64ArrayAttr>:$placement,
                       OptionalAttr<FlatSymbolRefAttr>:$scales);
  let assemblyFormat = [{
    $sym_name $role (`stacked_from` $stacked_from^)? (`tied_to` $tied_to^)?
    (`mtp_depth` $mtp_depth^)? (`sharded_over` $sharded_over^)?
    (`placement` $placement^)? (`scales` $scales^)? attr-dict `:` $type
  }];
  let hasVerifier = 1;
  let extraClassDeclaration = [{
    ::mlir::RankedTensorType getTensorType() {
      return ::llvm::cast<::mlir::RankedTensorType>(getType());
    }
    /// Number of scalar elements (the parameter count of this tensor).
    int64_t getNumElements() { return getTensorType().getNumElements(); }
    /// The checkpoint tensor name of expert `e` of a stacked parameter.
    std::string getExpertTensorName(int64_t e);
    /// How many expert-parallel ranks share the stack (1 unless sharded).
    int64_t getNumShards() { return getShardedOver() ? int64_t(*getShardedOver()) : 1; }
  }];
}

def Dsv3_GetParamOp : Dsv3_Op<"get_param", [Pure,
    DeclareOpInterfaceMethods<SymbolUserOpInterface>]> {
  let summary = "reads a model weight";
  let description = [{
    Yields the value of the `dsv3.param` named by `param`; the result type
    must be the parameter's type.

    ```mlir
    %w = dsv3.get_param @"model.norm.weight" : tensor<7168xbf16>
    ```
  }];
  let arguments = (ins FlatSymbolRefAttr:$param);
  let results = (outs AnyRankedTensor:$result);
  let assemblyFormat = "$param attr-dict `:` type($result)";
  let hasCanonicalizer = 1;
}

def Dsv3_Fp8WeightOp : Dsv3_Op<"fp8_weight", [Pure]> {
  let summary = "a block-scaled FP8 weight as the projections reading it see it";
  let description = [{
    The weight `W[..., n, k] = quantized[..., n, k] · scales[..., n / bn,
    k / bk]` (SEMANTICS.md 9) with `block = [bn, bk]`, in the result's
    element type. It is never materialized: lowering hands the e4m3 tensor
    and its scales to the kernels of its users, and a projection reading it
    computes in FP8 (activation scheme "dynamic"): its input is quantized
    per token per `bk` channels (`s_a = max(amax, 1e-4) / 448`), and each
    K block's e4m3 dot product is scaled by `s_a · scale` and accumulated in
    fp32. The absorbed decode (`latent_attention_decode`) dequantizes
    `kv_b`, as the official inference does. Written by `dsv3-quantize-fp8`.

    ```mlir
    %w = dsv3.fp8_weight %q, %s block [128, 128]
        : tensor<1536x7168xf8E4M3FN>, tensor<12x56xf32> -> tensor<1536x7168xbf16>
    ```
  }];
  let arguments = (ins RankedTensorOf<[F8E4M3FN]>:$quantized,
                       Dsv3_F32Tensor:$scales,
                       DenseI64ArrayAttr:$block);
  let results = (outs Dsv3_FloatTensor:$result);
  let assemblyFormat = [{
    $quantized `,` $scales `block` $block attr-dict `:` type($quantized) `,`
    type($scales) `->` type($result)
  }];
  let hasVerifier = 1;
}

//===----------------------------------------------------------------------===//
// Elementwise and normalization
//===----------------------------------------------------------------------===//

def Dsv3_EmbeddingOp : Dsv3_Op<"embedding", [Pure, Dsv3_Differentiable]> {
  let summary = "token embedding lookup";
  let description = [{
    `result[b, t, :] = table[ids[b, t], :]` (SEMANTICS.md 6). The table is
    `[vocab, hidden]`; the result has the ids' shape plus `hidden`.

    ```mlir
    %h = dsv3.embedding %ids, %table
        : (tensor<?x?xi64>, tensor<512x64xf32>) -> tensor<?x?x64xf32>
    ```
  }];
  let arguments = (ins Dsv3_IdTensor:$ids, Dsv3_FloatTensor:$table);
  let results = (outs Dsv3_FloatTensor:$result);
  let assemblyFormat = [{
    $ids `,` $table attr-dict `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
}

def Dsv3_RmsNormOp : Dsv3_Op<"rms_norm", [Pure, Dsv3_Differentiable,
    AllTypesMatch<["input", "result"]>]> {
  let summary = "RMSNorm over the last dimension";
  let description = [{
    `w * x / sqrt(mean(x^2) + epsilon)` over the last axis, computed in fp32
    (SEMANTICS.md 2). `weight` has the size of the last dimension.

    ```mlir
    %y = dsv3.rms_norm %x, %w eps 1.0e-06 : tensor<?x?x64xf32>, tensor<64xf32>
    ```
  }];
  let arguments = (ins Dsv3_FloatTensor:$input, Dsv3_FloatTensor:$weight,
                       F64Attr:$epsilon);
  let results = (outs Dsv3_FloatTensor:$result);
  let assemblyFormat = [{
    $input `,` $weight `eps` $epsilon attr-dict `:` type($input) `,` type($weight)
  }];
  let hasVerifier = 1;
}

def Dsv3_LinearOp : Dsv3_Op<"linear", [Pure, Dsv3_Differentiable]> {
  let summary = "x W^T (+ b) over the last dimension";
  let description = [{
    `result = input · weightᵀ (+ bias)` with `weight` stored `[out, in]` as
    in the checkpoint; leading dimensions of `input` are batch dimensions.

    ```mlir
    %y = dsv3.linear %x, %w : (tensor<?x?x64xf32>, tensor<32x64xf32>) -> tensor<?x?x32xf32>
    ```
  }];
  let arguments = (ins Dsv3_FloatTensor:$input, Dsv3_FloatTensor:$weight,
                       Optional<Dsv3_FloatTensor>:$bias);
  let results = (outs Dsv3_FloatTensor:$result);
  let assemblyFormat = [{
    $input `,` $weight (`bias` $bias^)? attr-dict `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
}

def Dsv3_RopeOp : Dsv3_Op<"rope", [Pure, Dsv3_Differentiable, AllTypesMatch<["input", "result"]>]> {
  let summary = "rotary position embedding (default or YaRN)";
  let description = [{
    Rotates the last dimension (`rope.dim` features) of `input`
    (`[batch, seq, dim]` or `[batch, seq, heads, dim]`) by the angles of
    `positions` (`[batch, seq]`), with the pairing, frequencies and
    cos/sin scale of `rope` (SEMANTICS.md 3.3-3.4). The output is written
    de-interleaved (all first components of the pairs, then all second).

    ```mlir
    %y = dsv3.rope %x, %pos <dim = 8, theta = 10000.0>
        : tensor<?x?x4x8xf32>, tensor<?x?xi64>
    ```
  }];
  let arguments = (ins Dsv3_FloatTensor:$input, Dsv3_I64Tensor:$positions,
                       Dsv3_RopeAttr:$rope);
  let results = (outs Dsv3_FloatTensor:$result);
  let assemblyFormat = [{
    $input `,` $positions $rope attr-dict `:` type($input) `,` type($positions)
  }];
  let hasVerifier = 1;
}

def Dsv3_SwigluOp : Dsv3_Op<"swiglu", [Pure, Dsv3_Differentiable, SameOperandsAndResultType]> {
  let summary = "silu(gate) * up";
  let description = [{
    The gated activation of the MLP and of every expert (SEMANTICS.md 5.1).

    ```mlir
    %a = dsv3.swiglu %g, %u : tensor<?x?x128xf32>
    ```
  }];
  let arguments = (ins Dsv3_FloatTensor:$gate, Dsv3_FloatTensor:$up);
  let results = (outs Dsv3_FloatTensor:$result);
  let assemblyFormat = "$gate `,` $up attr-dict `:` type($result)";
}

def Dsv3_AddOp : Dsv3_Op<"add", [Pure, Commutative, SameOperandsAndResultType,
    DeclareOpInterfaceMethods<Dsv3_DifferentiableOpInterface, ["buildGradient"]>]> {
  let summary = "elementwise sum (residual connections, loss terms)";
  let description = [{
    ```mlir
    %h1 = dsv3.add %h0, %attn : tensor<?x?x64xf32>
    ```
  }];
  let arguments = (ins AnyRankedTensor:$lhs, AnyRankedTensor:$rhs);
  let results = (outs AnyRankedTensor:$result);
  let assemblyFormat = "$lhs `,` $rhs attr-dict `:` type($result)";
}

def Dsv3_LinearAddOp : Dsv3_Op<"linear_add", [Pure,
    AllTypesMatch<["residual", "result"]>]> {
  let summary = "x Wᵀ + residual: a projection with the residual add in its epilogue";
  let description = [{
    Produced by `dsv3-fuse-residual` from `dsv3.add(residual, dsv3.linear(x,
    W))`: the GEMM adds the residual stream as it writes its output, so the
    projection's result never makes a round trip through memory.

    ```mlir
    %h2 = dsv3.linear_add %a, %wd, %h1
        : (tensor<?x?x128xf32>, tensor<64x128xf32>, tensor<?x?x64xf32>) -> tensor<?x?x64xf32>
    ```
  }];
  let arguments = (ins Dsv3_FloatTensor:$input, Dsv3_FloatTensor:$weight,
                       Dsv3_FloatTensor:$residual);
  let results = (outs Dsv3_FloatTensor:$result);
  let assemblyFormat = [{
    $input `,` $weight `,` $residual attr-dict `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
}

def Dsv3_NormLinearOp : Dsv3_Op<"norm_linear", [Pure]> {
  let summary = "rms_norm(x, w_norm) Wᵀ: an RMSNorm fused into its projection";
  let description = [{
    Produced by `dsv3-fuse-rms-norm` from a `dsv3.rms_norm` whose only user
    is a `dsv3.linear` (no bias) or `dsv3.lm_head`: the projection normalises
    each input row in its prologue, so the normed activations are never
    written out and read back. Numerics as the two ops (SEMANTICS.md 2).

    ```mlir
    %y = dsv3.norm_linear %x, %wn, %w eps 1.0e-06
        : (tensor<?x?x64xf32>, tensor<64xf32>, tensor<512x64xf32>) -> tensor<?x?x512xf32>
    ```
  }];
  let arguments = (ins Dsv3_FloatTensor:$input, Dsv3_FloatTensor:$norm_weight,
                       Dsv3_FloatTensor:$weight, F64Attr:$epsilon);
  let results = (outs Dsv3_FloatTensor:$result);
  let assemblyFormat = [{
    $input `,` $norm_weight `,` $weight `eps` $epsilon attr-dict `:`
    functional-type(operands, results)
  }];
  let hasVerifier = 1;
}

def Dsv3_NormGatedLinearOp : Dsv3_Op<"norm_gated_linear", [Pure]> {
  let summary = "gated_linear(rms_norm(x, w_norm), W_gate, W_up) in one op";
  let description = [{
    Produced by `dsv3-fuse-rms-norm` from a `dsv3.rms_norm` whose only user
    is a `dsv3.gated_linear` (a dense MLP after `dsv3-fuse-swiglu`): norm in
    the prologue, SwiGLU in the epilogue.

    ```mlir
    %a = dsv3.norm_gated_linear %x, %wn, %wg, %wu eps 1.0e-06
        : (tensor<?x?x64xf32>, tensor<64xf32>, tensor<128x64xf32>, tensor<128x64xf32>)
        -> tensor<?x?x128xf32>
    ```
  }];
  let arguments = (ins Dsv3_FloatTensor:$input, Dsv3_FloatTensor:$norm_weight,
                       Dsv3_FloatTensor:$gate_weight, Dsv3_FloatTensor:$up_weight,
                       F64Attr:$epsilon);
  let results = (outs Dsv3_FloatTensor:$result);
  let assemblyFormat = [{
    $input `,` $norm_weight `,` $gate_weight `,` $up_weight `eps` $epsilon attr-dict `:`
    functional-type(operands, results)
  }];
  let hasVerifier = 1;
}

def Dsv3_GatedLinearOp : Dsv3_Op<"gated_linear", [Pure]> {
  let summary = "silu(x W_gateᵀ) ⊙ (x W_upᵀ): gate, up and SwiGLU in one op";
  let description = [{
    The first half of an MLP (SEMANTICS.md 5.1) as one op, produced by
    `dsv3-fuse-swiglu`: one GEMM reads the input once for both weights and
    applies SwiGLU in its epilogue, instead of two GEMMs writing `gate` and
    `up` and a third kernel reading them back.

    ```mlir
    %a = dsv3.gated_linear %x, %wg, %wu
        : (tensor<?x?x64xf32>, tensor<128x64xf32>, tensor<128x64xf32>) -> tensor<?x?x128xf32>
    ```
  }];
  let arguments = (ins Dsv3_FloatTensor:$input, Dsv3_FloatTensor:$gate_weight,
                       Dsv3_FloatTensor:$up_weight);
  let results = (outs Dsv3_FloatTensor:$result);
  let assemblyFormat = [{
    $input `,` $gate_weight `,` $up_weight attr-dict `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
}

//===----------------------------------------------------------------------===//
// Multi-head latent attention
//===----------------------------------------------------------------------===//

// The weights shared by the prefill and the decode form, in checkpoint order.
defvar Dsv3_MlaWeights = (ins
  Optional<Dsv3_FloatTensor>:$q_a_proj,
  Optional<Dsv3_FloatTensor>:$q_a_norm,
  Dsv3_FloatTensor:$q_proj,
  Dsv3_FloatTensor:$kv_a_proj,
  Dsv3_FloatTensor:$kv_a_norm,
  Dsv3_FloatTensor:$kv_b_proj,
  Dsv3_FloatTensor:$o_proj,
  Optional<Dsv3_FloatTensor>:$q_a_bias,
  Optional<Dsv3_FloatTensor>:$kv_a_bias,
  Optional<Dsv3_FloatTensor>:$o_bias);

defvar Dsv3_MlaAttrs = (ins
  I64Attr:$num_heads,
  OptionalAttr<I64Attr>:$q_lora_rank,
  I64Attr:$kv_lora_rank,
  I64Attr:$qk_nope_head_dim,
  I64Attr:$qk_rope_head_dim,
  I64Attr:$v_head_dim,
  F64Attr:$softmax_scale,
  Dsv3_RopeAttr:$rope,
  DefaultValuedAttr<F64Attr, "1.0e-6">:$latent_norm_eps);

defvar Dsv3_MlaWeightsFormat = [{
  (`q_a` `(` $q_a_proj^ `,` $q_a_norm `)`)? `q` `(` $q_proj `)`
  `kv_a` `(` $kv_a_proj `,` $kv_a_norm `)` `kv_b` `(` $kv_b_proj `)`
  `o` `(` $o_proj `)`
  (`q_a_bias` `(` $q_a_bias^ `)`)? (`kv_a_bias` `(` $kv_a_bias^ `)`)?
  (`o_bias` `(` $o_bias^ `)`)?
}];

def Dsv3_LatentAttentionOp : Dsv3_Op<"latent_attention",
    [Pure, Dsv3_Differentiable, AttrSizedOperandSegments,
     DeclareOpInterfaceMethods<OpAsmOpInterface, ["getAsmResultNames"]>]> {
  let summary = "multi-head latent attention over a whole sequence (prefill)";
  let description = [{
    DeepSeek-V2/V3 MLA (SEMANTICS.md 3): the query comes from `q_proj`
    applied to the normed hidden state, or, when `q_lora_rank` is set, from
    `q_a_proj` -> RMSNorm(`q_a_norm`) -> `q_proj` (the checkpoint's
    q_b_proj). `kv_a_proj` yields the compressed latent (`kv_lora_rank`) and
    one rope key shared by all heads (`qk_rope_head_dim`); the latent is
    normed (`kv_a_norm`) and expanded by `kv_b_proj` into per-head nope keys
    and values. RoPE (`rope`) at positions 0..seq-1, causal softmax with
    `softmax_scale`, then `o_proj`.

    With `save_for_backward` (`dsv3-save-attention-state`, training) the op
    also returns what its gradient would otherwise recompute: the attention
    output before `o_proj`, `[batch, seq, num_heads * v_head_dim]`, and each
    query's log-sum-exp of its scaled scores (natural log),
    `[batch, num_heads, seq]`, both f32. They are not differentiable: the
    op's `dsv3.vjp` takes them after its primals.

    ```mlir
    %a = dsv3.latent_attention %x q_a(%qa, %qan) q(%qb) kv_a(%kva, %kvan)
           kv_b(%kvb) o(%o) {kv_lora_rank = 32 : i64, num_heads = 4 : i64, ...}
           : (...) -> tensor<?x?x64xf32>
    %b, %out, %lse = dsv3.latent_attention %x ... {save_for_backward, ...}
           : (...) -> (tensor<?x?x64xf32>, tensor<?x?x128xf32>, tensor<?x4x?xf32>)
    ```
  }];
  let arguments = !con((ins Dsv3_FloatTensor:$hidden), Dsv3_MlaWeights,
                       Dsv3_MlaAttrs, (ins UnitAttr:$save_for_backward));
  let results = (outs Dsv3_FloatTensor:$result, Variadic<Dsv3_FloatTensor>:$saved);
  let assemblyFormat = !strconcat("$hidden ", Dsv3_MlaWeightsFormat,
      " attr-dict `:` functional-type(operands, results)");
  let hasVerifier = 1;
  let extraClassDeclaration = [{
    /// The types `save_for_backward` returns: the attention output before
    /// o_proj [batch, seq, num_heads * v_head_dim] and each query's
    /// log-sum-exp [batch, num_heads, seq], f32 (the verifier's contract,
    /// which dsv3-save-attention-state builds to).
    ::llvm::SmallVector<::mlir::RankedTensorType, 2> getSavedTypes();
  }];
}

def Dsv3_LatentAttentionDecodeOp : Dsv3_Op<"latent_attention_decode",
    [Pure, AttrSizedOperandSegments]> {
  let summary = "multi-head latent attention of new tokens over a latent cache";
  let description = [{
    The decode form of `dsv3.latent_attention` (SEMANTICS.md 4). `cache` is
    `[batch, max_seq, kv_lora_rank + qk_rope_head_dim]`: per token the normed
    latent and the rope key after RoPE. The new tokens sit at positions
    `past_len .. past_len + seq - 1`; their latents are written into the
    cache (the updated cache is the second result) and they attend to every
    cached token and to each other causally. `past_len` is `[batch]`: one
    length per sequence, so sequences of different lengths decode in one
    batch (continuous batching); sequence `b` writes rows
    `past_len[b] .. past_len[b] + seq - 1` of its cache.

    `storage` (default f32) is how a row is kept: `bf16` rounds it, `fp8`
    keeps the latent as e4m3 with one fp32 scale per token and the rope key
    in bf16 (`dsv3-quantize-kv-cache`). Every token, the new ones included,
    attends to the stored (rounded) rows.

    ```mlir
    %a, %c1 = dsv3.latent_attention_decode %x cache(%c0, %past) storage fp8 q(%q) ...
    ```
  }];
  let arguments = !con((ins Dsv3_FloatTensor:$hidden, Dsv3_FloatTensor:$cache,
                            Dsv3_I64Tensor:$past_len),
                       Dsv3_MlaWeights, Dsv3_MlaAttrs,
                       (ins DefaultValuedAttr<Dsv3_CacheStorage,
                                              "::mlir::dsv3::CacheStorage::F32">:$cache_storage));
  let results = (outs Dsv3_FloatTensor:$result, Dsv3_FloatTensor:$new_cache);
  let assemblyFormat = !strconcat("$hidden `cache` `(` $cache `,` $past_len `)` ",
      "(`storage` $cache_storage^)? ",
      Dsv3_MlaWeightsFormat,
      " attr-dict `:` functional-type(operands, results)");
  let hasVerifier = 1;
}

//===----------------------------------------------------------------------===//
// Mixture of experts
//===----------------------------------------------------------------------===//

def Dsv3_MoeRouteOp : Dsv3_Op<"moe_route", [Pure,
    DeclareOpInterfaceMethods<Dsv3_DifferentiableOpInterface,
                              ["getDifferentiableOperands"]>]> {
  let summary = "expert selection and routing weights";
  let description = [{
    Per token: logits `hidden · gate_weightᵀ` in fp32, scores by
    `scoring_func`; `noaux_tc` adds `correction_bias` for selection only,
    ranks groups (contiguous blocks of experts) by the sum of their two best
    biased scores and keeps `topk_group` of `n_group`; `group_limited_greedy`
    ranks groups by their best score; `greedy` ignores groups. The top
    `num_experts_per_tok` experts of the kept groups are selected; their
    unbiased scores, renormalized when `norm_topk_prob`, times
    `routed_scaling_factor`, are the weights (SEMANTICS.md 5.2, 5.5).
    Results: `indices` and `weights`, `[batch, seq, num_experts_per_tok]`.

    ```mlir
    %idx, %w = dsv3.moe_route sigmoid noaux_tc %x, %gate bias %b
        {n_group = 8 : i64, num_experts_per_tok = 8 : i64, topk_group = 4 : i64,
         norm_topk_prob, routed_scaling_factor = 2.5 : f64}
        : (tensor<?x?x7168xbf16>, tensor<256x7168xbf16>, tensor<256xf32>)
        -> (tensor<?x?x8xi64>, tensor<?x?x8xf32>)
    ```
  }];
  let arguments = (ins Dsv3_FloatTensor:$hidden, Dsv3_FloatTensor:$gate_weight,
                       Optional<Dsv3_F32Tensor>:$correction_bias,
                       Dsv3_ScoringFunc:$scoring_func,
                       Dsv3_TopkMethod:$topk_method,
                       I64Attr:$num_experts_per_tok,
                       I64Attr:$n_group,
                       I64Attr:$topk_group,
                       UnitAttr:$norm_topk_prob,
                       F64Attr:$routed_scaling_factor);
  let results = (outs Dsv3_I64Tensor:$indices, Dsv3_F32Tensor:$weights);
  let assemblyFormat = [{
    $scoring_func $topk_method $hidden `,` $gate_weight
    (`bias` $correction_bias^)? attr-dict `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
}

def Dsv3_MoeDispatchOp : Dsv3_Op<"moe_dispatch", [Pure, Dsv3_Differentiable]> {
  let summary = "permute token copies so that each expert's rows are contiguous";
  let description = [{
    Each token is copied once per selected expert; the `batch·seq·top_k`
    copies are ordered by expert (stable in token order), giving `rows`.
    `counts[e]` is the number of rows of expert `e`; `slots[r]` is the flat
    index `token·top_k + k` that row `r` came from (what `dsv3.moe_combine`
    needs to undo the permutation).

    ```mlir
    %rows, %counts, %slots = dsv3.moe_dispatch %x, %idx experts 16
        : (tensor<?x?x64xf32>, tensor<?x?x4xi64>)
        -> (tensor<?x64xf32>, tensor<16xi64>, tensor<?xi64>)
    ```
  }];
  let arguments = (ins Dsv3_FloatTensor:$hidden, Dsv3_I64Tensor:$indices,
                       I64Attr:$num_experts);
  let results = (outs Dsv3_FloatTensor:$rows, Dsv3_I64Tensor:$counts,
                      Dsv3_I64Tensor:$slots);
  let assemblyFormat = [{
    $hidden `,` $indices `experts` $num_experts attr-dict `:`
    functional-type(operands, results)
  }];
  let hasVerifier = 1;
}

def Dsv3_ExpertGroupedMatmulOp : Dsv3_Op<"expert_grouped_matmul", [Pure, Dsv3_Differentiable]> {
  let summary = "one matmul per expert over its contiguous rows, in one op";
  let description = [{
    `rows` holds the tokens grouped by expert (`counts[e]` consecutive rows
    for expert `e`, in expert order); `weight` stacks the experts' matrices
    `[experts, out, in]`. Row `r` of expert `e` gives `rows[r] · weight[e]ᵀ`.

    ```mlir
    %y = dsv3.expert_grouped_matmul %rows, %w, %counts
        : (tensor<?x64xf32>, tensor<16x32x64xf32>, tensor<16xi64>) -> tensor<?x32xf32>
    ```
  }];
  let arguments = (ins Dsv3_FloatTensor:$rows, Dsv3_FloatTensor:$weight,
                       Dsv3_I64Tensor:$counts);
  let results = (outs Dsv3_FloatTensor:$result);
  let assemblyFormat = [{
    $rows `,` $weight `,` $counts attr-dict `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
}

def Dsv3_ExpertDispatchExchangeOp : Dsv3_Op<"ep_dispatch", []> {
  let summary = "expert parallelism: send every rank the rows of its experts (all-to-all-v)";
  let description = [{
    The collective of expert-parallel dispatch, inserted by
    `dsv3-partition-experts`. `rows` are this rank's token copies grouped by
    global expert (`counts[e]` rows for expert `e`, as `dsv3.moe_dispatch`
    gives them); the experts are split contiguously over `ranks` ranks, so
    the rows for rank `r` are one contiguous block. Every rank sends each
    rank its block (an all-to-all of the per-expert counts, then an
    all-to-all-v of the rows) and receives the rows of its own
    `experts / ranks` local experts from every rank.

    `local_rows` holds the received rows grouped by local expert (within an
    expert, by source rank, then in the source's order), ready for the
    local `dsv3.expert_grouped_matmul`; `local_counts[l]` is the number of
    rows of local expert `l`; `layout[s, l]` the number that came from rank
    `s`, which `dsv3.ep_combine` needs to send the results back.

    `placement [...]` (row-major `[ranks, slots]`: the global expert each
    rank's local slot holds) replaces the contiguous split, e.g. with
    redundant copies of hot experts (DeepSeek-V3's inference deployment):
    an expert's rows are split into contiguous chunks, one per copy in
    placement order, and `layout`/`local_counts` count slots.

    `capacity F` bounds the rows a rank receives to F times the rows it
    dispatches (what the memory plan allocates; more is a runtime error
    naming the bound). Without it the plan holds the worst case, `ranks`
    times (every rank's rows routed to this rank's experts).

    Not pure: it communicates, and every rank must execute it in the same
    order (it is never reordered, merged or removed).

    ```mlir
    %local, %local_counts, %layout = dsv3.ep_dispatch %rows, %counts ranks 2
        : (tensor<?x64xf32>, tensor<16xi64>)
        -> (tensor<?x64xf32>, tensor<8xi64>, tensor<2x8xi64>)
    ```
  }];
  let arguments = (ins Dsv3_FloatTensor:$rows, Dsv3_I64Tensor:$counts, I64Attr:$ranks,
                       OptionalAttr<F64Attr>:$capacity,
                       OptionalAttr<DenseI64ArrayAttr>:$placement);
  let results = (outs Dsv3_FloatTensor:$local_rows, Dsv3_I64Tensor:$local_counts,
                      Dsv3_I64Tensor:$layout);
  let assemblyFormat = [{
    $rows `,` $counts `ranks` $ranks (`capacity` $capacity^)?
    (`placement` $placement^)? attr-dict `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
}

def Dsv3_ExpertCombineExchangeOp : Dsv3_Op<"ep_combine", []> {
  let summary = "expert parallelism: return the experts' outputs to their tokens' ranks (all-to-all-v)";
  let description = [{
    The reverse of `dsv3.ep_dispatch`: `rows` are the local experts' output
    rows in `local_rows` order, `layout` and `counts` the dispatch's. Each
    rank gets back the outputs of the rows it sent, in the order it sent
    them (grouped by global expert), ready for `dsv3.moe_combine`. With a
    `placement`, the dispatch's: each expert's chunks come back from its
    copies and are put together in order.

    ```mlir
    %back = dsv3.ep_combine %y, %layout, %counts ranks 2
        : (tensor<?x64xf32>, tensor<2x8xi64>, tensor<16xi64>) -> tensor<?x64xf32>
    ```
  }];
  let arguments = (ins Dsv3_FloatTensor:$rows, Dsv3_I64Tensor:$layout,
                       Dsv3_I64Tensor:$counts, I64Attr:$ranks,
                       OptionalAttr<DenseI64ArrayAttr>:$placement);
  let results = (outs Dsv3_FloatTensor:$result);
  let assemblyFormat = [{
    $rows `,` $layout `,` $counts `ranks` $ranks (`placement` $placement^)? attr-dict `:`
    functional-type(operands, results)
  }];
  let hasVerifier = 1;
}

def Dsv3_AllReduceOp : Dsv3_Op<"all_reduce", [SameOperandsAndResultType]> {
  let summary = "sum or average a tensor over the ranks of a parallel group";
  let description = [{
    Every rank of `group` (`ranks` of them) contributes `input` and receives
    the elementwise sum (`sum`) or mean (`mean`) over the ranks, identical on
    all of them (the runtime reduces in rank order). The groups: `data`,
    every rank; `expert`, this rank's expert-parallel group (the
    consecutive ranks its exchanges run among); `expert_data`, the ranks
    holding the same expert shard, one in each expert-parallel group (when
    `--dp` is a multiple of `--ep`). Not pure: it communicates.

    ```mlir
    %g = dsv3.all_reduce mean over data 2 %grad : tensor<16x64xf32>
    ```
  }];
  let arguments = (ins AnyRankedTensor:$input, StrAttr:$reduction, StrAttr:$group,
                       I64Attr:$ranks);
  let results = (outs AnyRankedTensor:$result);
  let assemblyFormat = [{
    $reduction `over` $group $ranks $input attr-dict `:` type($input)
  }];
  let hasVerifier = 1;
}

def Dsv3_ExpertGatedMatmulOp : Dsv3_Op<"expert_gated_matmul", [Pure]> {
  let summary = "the experts' gate and up projections and SwiGLU, in one op";
  let description = [{
    `silu(rows[r] · gate_weight[e]ᵀ) ⊙ (rows[r] · up_weight[e]ᵀ)` for row r
    of expert e (rows grouped by expert as for
    `dsv3.expert_grouped_matmul`), produced by `dsv3-fuse-swiglu`.

    ```mlir
    %a = dsv3.expert_gated_matmul %rows, %wg, %wu, %counts
        : (tensor<?x64xf32>, tensor<16x32x64xf32>, tensor<16x32x64xf32>, tensor<16xi64>)
        -> tensor<?x32xf32>
    ```
  }];
  let arguments = (ins Dsv3_FloatTensor:$rows, Dsv3_FloatTensor:$gate_weight,
                       Dsv3_FloatTensor:$up_weight, Dsv3_I64Tensor:$counts);
  let results = (outs Dsv3_FloatTensor:$result);
  let assemblyFormat = [{
    $rows `,` $gate_weight `,` $up_weight `,` $counts attr-dict `:`
    functional-type(operands, results)
  }];
  let hasVerifier = 1;
}

def Dsv3_MoeCombineOp : Dsv3_Op<"moe_combine", [Pure, Dsv3_Differentiable]> {
  let summary = "un-permute expert outputs and sum them with routing weights";
  let description = [{
    `result[token] = Σ_k weights[token, k] · expert_out[r]` where row `r` has
    `slots[r] = token·top_k + k` (SEMANTICS.md 5.3, routed part).

    ```mlir
    %y = dsv3.moe_combine %out, %slots, %w
        : (tensor<?x64xf32>, tensor<?xi64>, tensor<?x?x4xf32>) -> tensor<?x?x64xf32>
    ```
  }];
  let arguments = (ins Dsv3_FloatTensor:$expert_out, Dsv3_I64Tensor:$slots,
                       Dsv3_F32Tensor:$weights);
  let results = (outs Dsv3_FloatTensor:$result);
  let assemblyFormat = [{
    $expert_out `,` $slots `,` $weights attr-dict `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
}

def Dsv3_MoeBalanceLossOp : Dsv3_Op<"moe_balance_loss", [Pure, Dsv3_Differentiable]> {
  let summary = "load-balancing loss of one MoE layer";
  let description = [{
    `alpha · Σ_e f_e P_e` (SEMANTICS.md 8). `f_e = E / (K·T) · #(tokens that
    selected e)` from `indices` (the actual selection); `P_e` is the mean
    over tokens of the scores: with `sequence_wise` (DeepSeek-V3's
    complementary sequence-wise loss) the sigmoid scores normalised over all
    experts, per sequence of T tokens, averaged over the batch; otherwise
    (DeepSeekMoE / V2 expert-level loss) the softmax scores over all
    T = batch·seq tokens. Scores are recomputed from `hidden` and
    `gate_weight` exactly as `dsv3.moe_route` does; only P carries gradient.

    ```mlir
    %l = dsv3.moe_balance_loss %x, %gate, %idx {alpha = 1.0e-4 : f64,
        sequence_wise, scoring_func = 0 : i32}
        : (tensor<?x?x64xf32>, tensor<8x64xf32>, tensor<?x?x2xi64>) -> tensor<f32>
    ```
  }];
  let arguments = (ins Dsv3_FloatTensor:$hidden, Dsv3_FloatTensor:$gate_weight,
                       Dsv3_I64Tensor:$indices, F64Attr:$alpha,
                       UnitAttr:$sequence_wise, Dsv3_ScoringFunc:$scoring_func);
  let results = (outs Dsv3_ScalarF32:$loss);
  let assemblyFormat = [{
    $scoring_func $hidden `,` $gate_weight `,` $indices attr-dict `:`
    functional-type(operands, results)
  }];
  let hasVerifier = 1;
}

//===----------------------------------------------------------------------===//
// Multi-token prediction, head and loss
//===----------------------------------------------------------------------===//

def Dsv3_MtpOp : Dsv3_Op<"mtp", [Pure, Dsv3_Differentiable]> {
  let summary = "input projection of one multi-token-prediction depth";
  let description = [{
    For depth `k` (SEMANTICS.md 7): rows `i = 0 .. seq-k-1` get
    `eh_proj · [RMSNorm(embeds[i+k]; enorm) ; RMSNorm(hidden[i]; hnorm)]`
    (embedding first). `embeds` are the token embeddings of the whole
    sequence (`[batch, seq, hidden]`); `hidden` is the previous depth's
    normed output (the main model's final-normed state for depth 1, with
    `seq` rows; depth k-1's with `seq-k+1`), of which the first `seq-k`
    rows are read. The result, `[batch, seq-k, hidden]`, feeds the depth's
    own decoder block and the shared head.

    ```mlir
    %m = dsv3.mtp depth 1 %h, %e, %enorm, %hnorm, %eh eps 1.0e-06
        : (...) -> tensor<?x?x64xf32>
    ```
  }];
  let arguments = (ins Dsv3_FloatTensor:$hidden, Dsv3_FloatTensor:$embeds,
                       Dsv3_FloatTensor:$enorm, Dsv3_FloatTensor:$hnorm,
                       Dsv3_FloatTensor:$eh_proj, I64Attr:$depth,
                       F64Attr:$epsilon);
  let results = (outs Dsv3_FloatTensor:$result);
  let assemblyFormat = [{
    `depth` $depth $hidden `,` $embeds `,` $enorm `,` $hnorm `,` $eh_proj
    `eps` $epsilon attr-dict `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
}

def Dsv3_LastTokenOp : Dsv3_Op<"last_token", [Pure]> {
  let summary = "each sequence's last position: [batch, seq, hidden] -> [batch, 1, hidden]";
  let description = [{
    The `prefill` entry's head reads only the position generation samples
    from: the logits of a prompt chunk of T tokens are [batch, 1, vocab], not
    [batch, T, vocab] (4.2 GB in fp32 at 8192 tokens of DeepSeek-V3's
    vocabulary), and the vocabulary GEMM is T times smaller.

    ```mlir
    %last = dsv3.last_token %h : tensor<?x?x64xf32> -> tensor<?x1x64xf32>
    ```
  }];
  let arguments = (ins Dsv3_FloatTensor:$input);
  let results = (outs Dsv3_FloatTensor:$result);
  let assemblyFormat = "$input attr-dict `:` type($input) `->` type($result)";
  let hasVerifier = 1;
}

def Dsv3_LmHeadOp : Dsv3_Op<"lm_head", [Pure, Dsv3_Differentiable]> {
  let summary = "vocabulary projection (logits at every position)";
  let description = [{
    `logits = hidden · weightᵀ`, `weight` `[vocab, hidden]`. A separate op
    from `dsv3.linear` so that fusion can merge it with the loss without
    materialising the full-vocabulary logits.

    ```mlir
    %l = dsv3.lm_head %h, %w : (tensor<?x?x64xf32>, tensor<512x64xf32>) -> tensor<?x?x512xf32>
    ```
  }];
  let arguments = (ins Dsv3_FloatTensor:$hidden, Dsv3_FloatTensor:$weight);
  let results = (outs Dsv3_FloatTensor:$logits);
  let assemblyFormat = [{
    $hidden `,` $weight attr-dict `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
}

def Dsv3_CrossEntropyOp : Dsv3_Op<"cross_entropy", [Pure, Dsv3_Differentiable]> {
  let summary = "mean next-token cross entropy";
  let description = [{
    Row `i` of `logits` (`[batch, rows, vocab]`) targets `labels[b, i + shift]`
    (`labels` `[batch, seq]`); rows whose target lies beyond the sequence or
    equals `ignore_index` are skipped. The result is `scale` times the mean,
    in fp32, of `logsumexp(logits_i) - logits_i[target]` over the remaining
    rows (SEMANTICS.md 6; `shift = k + 1` for MTP depth k, section 7).

    ```mlir
    %loss = dsv3.cross_entropy %logits, %ids shift 1 scale 1.0
        : (tensor<?x?x512xf32>, tensor<?x?xi64>) -> tensor<f32>
    ```
  }];
  let arguments = (ins Dsv3_FloatTensor:$logits, Dsv3_IdTensor:$labels,
                       I64Attr:$shift, F64Attr:$scale,
                       DefaultValuedAttr<I64Attr, "-100">:$ignore_index);
  let results = (outs Dsv3_ScalarF32:$loss);
  let assemblyFormat = [{
    $logits `,` $labels `shift` $shift `scale` $scale attr-dict `:`
    functional-type(operands, results)
  }];
  let hasVerifier = 1;
}

def Dsv3_LmHeadCrossEntropyOp : Dsv3_Op<"lm_head_cross_entropy",
    [Pure, Dsv3_Differentiable]> {
  let summary = "the vocabulary projection and its cross entropy, fused";
  let description = [{
    `dsv3.cross_entropy` of `dsv3.lm_head %hidden, %weight` without the
    full-vocabulary logits (`dsv3-fuse-lm-head-loss`): a kernel computes a
    tile of rows' logits, their log-sum-exp and target logit, and drops the
    tile; its gradient recomputes each tile's logits and turns them into
    the hidden and weight gradients at once. Same attributes and value as
    the cross entropy it replaces (SEMANTICS.md 6).

    ```mlir
    %loss = dsv3.lm_head_cross_entropy %h, %w, %ids shift 1 scale 1.0
        : (tensor<?x?x64xf32>, tensor<512x64xf32>, tensor<?x?xi64>) -> tensor<f32>
    ```
  }];
  let arguments = (ins Dsv3_FloatTensor:$hidden, Dsv3_FloatTensor:$weight,
                       Dsv3_IdTensor:$labels, I64Attr:$shift, F64Attr:$scale,
                       DefaultValuedAttr<I64Attr, "-100">:$ignore_index);
  let results = (outs Dsv3_ScalarF32:$loss);
  let assemblyFormat = [{
    $hidden `,` $weight `,` $labels `shift` $shift `scale` $scale attr-dict `:`
    functional-type(operands, results)
  }];
  let hasVerifier = 1;
}

//===----------------------------------------------------------------------===//
// Training
//===----------------------------------------------------------------------===//

def Dsv3_FillOp : Dsv3_Op<"fill", [Pure]> {
  let summary = "a tensor of one value";
  let description = [{
    A statically shaped tensor whose every element is `value` (the seed
    of the backward pass, zero gradients).

    ```mlir
    %one = dsv3.fill 1.0 : tensor<f32>
    ```
  }];
  let arguments = (ins F64Attr:$value);
  let results = (outs Dsv3_FloatTensor:$result);
  let assemblyFormat = "$value attr-dict `:` type($result)";
  let hasVerifier = 1;
}

def Dsv3_VjpOp : Dsv3_Op<"vjp", [Pure, AttrSizedOperandSegments]> {
  let summary = "vector-Jacobian product of one dsv3 op";
  let description = [{
    The gradient of the op `forward` (its mnemonic, with attributes
    `params`) applied to `primals`: given the `cotangents` of its
    floating-point results, the results are the gradients of the operands
    listed in `grad_operands`, each of its operand's type. Emitted by the
    default gradient rule of `DifferentiableOpInterface`; the kernel
    recomputes what it needs from the primals. The one exception:
    `dsv3-save-attention-state` appends a `latent_attention`'s saved
    results (its attention output and log-sum-exp) to the primals of its
    vjp, whose params then carry `save_for_backward`.

    ```mlir
    %dx, %dw = dsv3.vjp "rms_norm" (%x, %w) cotangents(%dy) grads [0, 1]
        params {epsilon = 1.0e-06 : f64}
        : (tensor<?x?x64xf32>, tensor<64xf32>, tensor<?x?x64xf32>)
        -> (tensor<?x?x64xf32>, tensor<64xf32>)
    ```
  }];
  let arguments = (ins StrAttr:$forward, Variadic<AnyType>:$primals,
                       Variadic<Dsv3_FloatTensor>:$cotangents,
                       DenseI64ArrayAttr:$grad_operands,
                       DictionaryAttr:$params);
  let results = (outs Variadic<Dsv3_FloatTensor>:$grads);
  let assemblyFormat = [{
    $forward `(` $primals `)` `cotangents` `(` $cotangents `)`
    `grads` $grad_operands `params` $params attr-dict `:`
    functional-type(operands, results)
  }];
  let hasVerifier = 1;
}

def Dsv3_GlobalNormOp : Dsv3_Op<"global_norm", [Pure, AttrSizedOperandSegments]> {
  let summary = "the L2 norm of all given tensors together";
  let description = [{
    `sqrt(sum over every element of every operand of x^2)`, in fp32 (the
    global gradient norm that clipping uses). With `squared`, the sum
    without the root; with `plus_squares %s`, `%s` is added under the root
    (expert parallelism: the sharded experts' squares, summed over the
    ranks by a `dsv3.all_reduce`, join the replicated gradients').

    ```mlir
    %n = dsv3.global_norm %g0, %g1 : tensor<64xf32>, tensor<32x64xf32> -> tensor<f32>
    %s = dsv3.global_norm squared %e0 : tensor<8x32x64xf32> -> tensor<f32>
    %t = dsv3.all_reduce "sum" over "expert" 2 %s : tensor<f32>
    %m = dsv3.global_norm %g0 plus_squares %t : tensor<64xf32> -> tensor<f32>
    ```
  }];
  let arguments = (ins Variadic<Dsv3_FloatTensor>:$inputs,
                       Optional<Dsv3_ScalarF32>:$plus_squares, UnitAttr:$squared);
  let results = (outs Dsv3_ScalarF32:$norm);
  let assemblyFormat = [{
    (`squared` $squared^)? $inputs (`plus_squares` $plus_squares^)? attr-dict `:`
    type($inputs) `->` type($norm)
  }];
  let hasVerifier = 1;
}

def Dsv3_AdamwOp : Dsv3_Op<"adamw",
    [DeclareOpInterfaceMethods<SymbolUserOpInterface>]> {
  let summary = "one AdamW update of a parameter, in place";
  let description = [{
    Updates parameter `param` and its moments `exp_avg`, `exp_avg_sq`
    (`dsv3.param`s of role optimizer_state, both fp32 or both bf16: with
    bf16 moments, DeepSeek-V3 3.3.3, each new moment is computed in fp32
    from the stored one, rounded to bf16 (nearest even) and the update
    reads the rounded value) from `grad`, at optimizer step
    `step` (1-based), learning rate `lr` (the runtime's warmup + cosine
    schedule) and global gradient norm `grad_norm`: g is scaled by
    min(1, max_grad_norm / (grad_norm + 1e-6)) when max_grad_norm > 0;
    p -= lr · weight_decay · p (decoupled; only when `decay`, set for
    matrices, not for norms and biases); m = b1 m + (1 - b1) g,
    v = b2 v + (1 - b2) g², p -= lr · m̂ / (sqrt(v̂) + eps) with the
    bias-corrected moments m̂, v̂ (PyTorch's AdamW).

    ```mlir
    dsv3.adamw @w, @"optimizer.exp_avg.w", @"optimizer.exp_avg_sq.w" grad %g
        step %step lr %lr norm %n {beta1 = 0.9 : f64, ...} : tensor<64xf32>
    ```
  }];
  let arguments = (ins FlatSymbolRefAttr:$param, FlatSymbolRefAttr:$exp_avg,
                       FlatSymbolRefAttr:$exp_avg_sq, Dsv3_FloatTensor:$grad,
                       I64:$step, Dsv3_ScalarF32:$lr, Dsv3_ScalarF32:$grad_norm,
                       F64Attr:$beta1, F64Attr:$beta2, F64Attr:$eps,
                       F64Attr:$weight_decay, UnitAttr:$decay,
                       F64Attr:$max_grad_norm);
  let assemblyFormat = [{
    $param `,` $exp_avg `,` $exp_avg_sq `grad` $grad `step` $step `lr` $lr
    `norm` $grad_norm attr-dict `:` type($grad)
  }];
  let hasVerifier = 1;
}

def Dsv3_ExpertBiasUpdateOp : Dsv3_Op<"expert_bias_update",
    [DeclareOpInterfaceMethods<SymbolUserOpInterface>]> {
  let summary = "auxiliary-loss-free balancing of one MoE layer, in place";
  let description = [{
    DeepSeek-V3's bias update (paper 2.1.2, SEMANTICS.md 8): with `counts`
    the tokens routed to each expert over the batch and n̄ their mean,
    `bias[e] += rate · sign(n̄ - counts[e])` (no change when equal).

    ```mlir
    dsv3.expert_bias_update @"model.layers.3.mlp.gate.e_score_correction_bias"
        counts %counts rate 1.0e-03 : tensor<256xi64>
    ```
  }];
  let arguments = (ins FlatSymbolRefAttr:$bias, Dsv3_I64Tensor:$counts,
                       F64Attr:$rate);
  let assemblyFormat = "$bias `counts` $counts `rate` $rate attr-dict `:` type($counts)";
}

#endif // DSV3_OPS_TD
