//===- Dsv3Attrs.td - dsv3 enums and attributes -----------------*- tablegen -*-===//

#ifndef DSV3_ATTRS_TD
#define DSV3_ATTRS_TD

include "dialects/Dsv3/IR/Dsv3Dialect.td"
include "mlir/IR/EnumAttr.td"

//===----------------------------------------------------------------------===//
// Enums (printed as bare keywords in the ops' assembly formats)
//===----------------------------------------------------------------------===//

def Dsv3_ScoringFunc : I32EnumAttr<"ScoringFunc",
    "router score function (SEMANTICS.md 5.2, 5.5)", [
      I32EnumAttrCase<"Sigmoid", 0, "sigmoid">,
      I32EnumAttrCase<"Softmax", 1, "softmax">
    ]> {
  let cppNamespace = "::mlir::dsv3";
}

def Dsv3_TopkMethod : I32EnumAttr<"TopkMethod",
    "how the router selects experts (SEMANTICS.md 5.2, 5.5)", [
      // Top-k of all scores.
      I32EnumAttrCase<"Greedy", 0, "greedy">,
      // DeepSeek-V2: group score = max score of the group; keep topk_group
      // groups, zero the rest, then top-k.
      I32EnumAttrCase<"GroupLimitedGreedy", 1, "group_limited_greedy">,
      // DeepSeek-V3: scores + correction bias; group score = sum of the two
      // largest; keep topk_group groups, mask the rest to -inf, then top-k.
      I32EnumAttrCase<"NoauxTc", 2, "noaux_tc">
    ]> {
  let cppNamespace = "::mlir::dsv3";
}

def Dsv3_ParamRole : I32EnumAttr<"ParamRole",
    "what part of the model a parameter belongs to (for statistics and passes)", [
      I32EnumAttrCase<"Embedding", 0, "embedding">,
      I32EnumAttrCase<"Attention", 1, "attention">,
      I32EnumAttrCase<"Norm", 2, "norm">,
      I32EnumAttrCase<"DenseMlp", 3, "dense_mlp">,
      I32EnumAttrCase<"Router", 4, "router">,
      // The correction bias: a buffer updated by the balancing rule, never by
      // gradients, and not counted as a parameter.
      I32EnumAttrCase<"RouterBias", 5, "router_bias">,
      I32EnumAttrCase<"RoutedExperts", 6, "routed_experts">,
      I32EnumAttrCase<"SharedExperts", 7, "shared_experts">,
      I32EnumAttrCase<"Head", 8, "head">,
      // enorm, hnorm and eh_proj of a multi-token-prediction depth.
      I32EnumAttrCase<"MtpProjection", 9, "mtp_projection">,
      // AdamW moments of a parameter (fp32, saved in checkpoints, zero when
      // a checkpoint has none); not model parameters.
      I32EnumAttrCase<"OptimizerState", 10, "optimizer_state">,
      // The fp32 block scales of an FP8 weight (`<weight>_scale_inv` in the
      // hub format, SEMANTICS.md 9); not model parameters.
      I32EnumAttrCase<"WeightScale", 11, "weight_scale">
    ]> {
  let cppNamespace = "::mlir::dsv3";
}

def Dsv3_CacheStorage : I32EnumAttr<"CacheStorage",
    "how the decode latent cache stores each token's row (SEMANTICS.md 4; "
    "docs/fp8.md)", [
      // The activations' own precision.
      I32EnumAttrCase<"F32", 0, "f32">,
      // Every element rounded to bf16 (nearest, ties to even).
      I32EnumAttrCase<"Bf16", 1, "bf16">,
      // The kv_lora_rank latent as e4m3 codes times one fp32 scale per
      // token (amax / 448); the rope key in bf16, which FP8 would hurt most.
      I32EnumAttrCase<"Fp8", 2, "fp8">
    ]> {
  let cppNamespace = "::mlir::dsv3";
}

//===----------------------------------------------------------------------===//
// Attributes
//===----------------------------------------------------------------------===//

/// A double-precision attribute parameter, printed as a plain number and
/// stored as an APFloat (which, unlike double, MLIR can hash and unique).
class Dsv3_F64Parameter<string dflt = "">
    : AttrOrTypeParameter<"::llvm::APFloat", "a double"> {
  let comparator = "$_lhs.bitwiseIsEqual($_rhs)";
  let parser = [{ [&]() -> ::mlir::FailureOr<::llvm::APFloat> {
    double value;
    if ($_parser.parseFloat(value))
      return ::mlir::failure();
    return ::llvm::APFloat(value);
  }() }];
  let printer = "$_printer.printFloat($_self)";
  let defaultValue = !if(!empty(dflt), "",
                         "::llvm::APFloat(" # dflt # ")");
}

class Dsv3_Attr<string name, string attrMnemonic, list<Trait> traits = []>
    : AttrDef<Dsv3_Dialect, name, traits> {
  let mnemonic = attrMnemonic;
}

def Dsv3_RopeAttr : Dsv3_Attr<"Rope", "rope"> {
  let summary = "rotary position embedding parameters (default or YaRN)";
  let description = [{
    The parameters of the decoupled rotary embedding of MLA (SEMANTICS.md
    3.3-3.5): `dim` rotated features (qk_rope_head_dim), base `theta`, the
    pairing (`interleaved` pairs (2j, 2j+1); otherwise (j, j + dim/2)), and
    for YaRN the `factor`, `original_max_position_embeddings`, `beta_fast`,
    `beta_slow`, `mscale`, `mscale_all_dim`, optional `attention_factor` and
    `truncate`. `factor = 0` means no scaling (default RoPE).

    ```mlir
    #dsv3.rope<dim = 64, theta = 10000.0, interleaved = true, factor = 40.0,
               original_max_position_embeddings = 4096, mscale = 1.0,
               mscale_all_dim = 1.0>
    ```
  }];
  let parameters = (ins
    "int64_t":$dim,
    Dsv3_F64Parameter<>:$theta,
    DefaultValuedParameter<"bool", "true">:$interleaved,
    Dsv3_F64Parameter<"0.0">:$factor,
    DefaultValuedParameter<"int64_t", "0">:$original_max_position_embeddings,
    Dsv3_F64Parameter<"32.0">:$beta_fast,
    Dsv3_F64Parameter<"1.0">:$beta_slow,
    Dsv3_F64Parameter<"0.0">:$mscale,
    Dsv3_F64Parameter<"0.0">:$mscale_all_dim,
    Dsv3_F64Parameter<"0.0">:$attention_factor,
    DefaultValuedParameter<"bool", "true">:$truncate
  );
  let assemblyFormat = "`<` struct(params) `>`";
  let genVerifyDecl = 1;
  let extraClassDeclaration = [{
    /// True when YaRN scaling applies (factor > 0).
    bool isYarn() const { return getFactor().convertToDouble() > 0.0; }
    /// The factor multiplying cos/sin (SEMANTICS.md 3.4, "af").
    double getCosSinScale() const;
    /// The multiplier YaRN applies to the softmax scale (SEMANTICS.md 3.5).
    double getSoftmaxScaleMultiplier() const;
  }];
}

#endif // DSV3_ATTRS_TD
