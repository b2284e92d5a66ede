//===- Dsv3Ops.cpp - dsv3 op verifiers and canonicalizations ---------------===//
//
// Every verifier names the operand or attribute it rejects and the rule it
// breaks, with the expected and actual values, so a malformed model is
// diagnosed at the op that is wrong.
//
//===----------------------------------------------------------------------===//

#include "dialects/Dsv3/IR/Dsv3Ops.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/OpImplementation.h"
#include "mlir/IR/PatternMatch.h"
#include "llvm/ADT/STLExtras.h"
#include "llvm/ADT/StringExtras.h"

using namespace mlir;
using namespace mlir::dsv3;

#define GET_OP_CLASSES
#include "dialects/Dsv3/IR/Dsv3Ops.cpp.inc"

//===----------------------------------------------------------------------===//
// Shape-checking helpers
//===----------------------------------------------------------------------===//

namespace {
/// Two extents agree when equal or when either is dynamic.
bool extentsAgree(int64_t a, int64_t b) {
  return a == b || ShapedType::isDynamic(a) || ShapedType::isDynamic(b);
}

std::string shapeString(ArrayRef<int64_t> dims) {
  std::string s = "[";
  for (auto [i, d] : llvm::enumerate(dims)) {
    if (i)
      s += ", ";
    s += ShapedType::isDynamic(d) ? std::string("?") : std::to_string(d);
  }
  return s + "]";
}

RankedTensorType tensorOf(Value v) {
  return llvm::cast<RankedTensorType>(v.getType());
}

/// Checks that `value` (called `name` in messages) has exactly the shape
/// `expected` (dynamic entries match anything); `what` explains the rule.
LogicalResult expectShape(Operation *op, Value value, StringRef name,
                          ArrayRef<int64_t> expected, StringRef what) {
  auto type = tensorOf(value);
  bool ok = type.getRank() == static_cast<int64_t>(expected.size());
  for (size_t i = 0; ok && i < expected.size(); ++i)
    ok = extentsAgree(type.getDimSize(i), expected[i]);
  if (ok)
    return success();
  return op->emitOpError() << name << " must be " << what << " = "
                           << shapeString(expected) << ", got " << type;
}

/// The checks every projection (linear, linear_add, gated_linear) shares:
/// input [..., in] and weight [out, in] (called `weightName`; `inDimOf`
/// says whose in dimension in the message). On success, `outShape` is the
/// input's shape with the last dimension = out.
LogicalResult verifyProjection(Operation *op, Value inputValue, Value weightValue,
                               StringRef weightName, StringRef inDimOf,
                               SmallVectorImpl<int64_t> &outShape) {
  auto input = tensorOf(inputValue), weight = tensorOf(weightValue);
  if (input.getRank() < 1)
    return op->emitOpError() << "input must have rank >= 1";
  if (weight.getRank() != 2)
    return op->emitOpError() << weightName << " must be [out, in], got " << weight;
  int64_t in = input.getDimSize(input.getRank() - 1);
  if (!extentsAgree(in, weight.getDimSize(1)))
    return op->emitOpError() << "input features (" << in << ") must equal " << inDimOf
                             << " in dimension (" << weight.getDimSize(1) << ")";
  outShape.assign(input.getShape().begin(), input.getShape().end());
  outShape.back() = weight.getDimSize(0);
  return success();
}

/// Checks the rank of `value`.
LogicalResult expectRank(Operation *op, Value value, StringRef name,
                         int64_t rank, StringRef what) {
  auto type = tensorOf(value);
  if (type.getRank() == rank)
    return success();
  return op->emitOpError() << name << " must have rank " << rank << " ("
                           << what << "), got " << type;
}

LogicalResult expectSameElementType(Operation *op, Value a, StringRef aName,
                                    Value b, StringRef bName) {
  Type ea = tensorOf(a).getElementType(), eb = tensorOf(b).getElementType();
  if (ea == eb)
    return success();
  return op->emitOpError() << bName << " element type " << eb
                           << " must equal the " << aName << " element type "
                           << ea;
}

LogicalResult expectPositive(Operation *op, int64_t value, StringRef name) {
  if (value > 0)
    return success();
  return op->emitOpError() << name << " (" << value << ") must be positive";
}
} // namespace

//===----------------------------------------------------------------------===//
// ParamOp / GetParamOp
//===----------------------------------------------------------------------===//

LogicalResult ParamOp::verify() {
  RankedTensorType type = getTensorType();
  if (!type.hasStaticShape())
    return emitOpError() << "parameter @" << getSymName()
                         << " must have a static shape, got " << type;
  if (std::optional<StringRef> tpl = getStackedFrom()) {
    size_t first = tpl->find("{e}");
    if (first == StringRef::npos || tpl->find("{e}", first + 1) != StringRef::npos)
      return emitOpError() << "stacked_from template \"" << *tpl
                           << "\" must contain '{e}' exactly once";
    if (type.getRank() < 2)
      return emitOpError() << "a stacked parameter stacks expert tensors along "
                              "dimension 0, so its rank must be >= 2, got "
                           << type;
  }
  if (std::optional<uint64_t> shards = getShardedOver()) {
    if (!getStackedFrom())
      return emitOpError() << "sharded_over applies to stacked expert parameters; @"
                           << getSymName() << " has no stacked_from";
    if (static_cast<int64_t>(*shards) < 1)
      return emitOpError() << "sharded_over must be >= 1, got "
                           << static_cast<int64_t>(*shards);
  }
  if (std::optional<uint64_t> depth = getMtpDepth();
      depth && static_cast<int64_t>(*depth) < 1)
    return emitOpError() << "mtp_depth must be >= 1, got "
                         << static_cast<int64_t>(*depth);
  if (getTiedTo() && *getTiedTo() == getSymName())
    return emitOpError() << "parameter @" << getSymName()
                         << " cannot be tied to itself";
  bool scaleRole = getRole() == ParamRole::WeightScale;
  if (scaleRole != bool(getScales()))
    return emitOpError() << "parameter @" << getSymName()
                         << (scaleRole ? " has role weight_scale but no `scales @weight`"
                                       : " names `scales` but its role is not weight_scale");
  if (scaleRole && !type.getElementType().isF32())
    return emitOpError() << "block scales @" << getSymName() << " must be f32, got "
                         << type;
  return success();
}

/// Checks `scales` against FP8 weight `quantized` at block size `block`
/// (empty: any block): equal rank and leading dimensions, and, for a
/// block, ceil(extent / block) over the last two.
static LogicalResult checkBlockScales(function_ref<InFlightDiagnostic()> emitError,
                                      RankedTensorType quantized, RankedTensorType scales,
                                      ArrayRef<int64_t> block) {
  int64_t rank = quantized.getRank();
  if (rank < 2 || scales.getRank() != rank)
    return emitError() << "block scales " << scales << " must have the rank (>= 2) of the "
                       << "FP8 weight " << quantized;
  for (int64_t d = 0; d < rank; ++d) {
    int64_t want = quantized.getDimSize(d);
    if (d >= rank - 2 && !block.empty()) {
      int64_t bs = block[size_t(d - (rank - 2))];
      want = (want + bs - 1) / bs;
    }
    if ((d < rank - 2 || !block.empty()) && scales.getDimSize(d) != want)
      return emitError() << "block scales " << scales << " do not cover the FP8 weight "
                         << quantized << (block.empty() ? "" : " in blocks of [")
                         << (block.empty() ? "" : std::to_string(block[0]) + ", " +
                                                      std::to_string(block[1]) + "]")
                         << ": dimension " << d << " must be " << want;
  }
  return success();
}

LogicalResult Fp8WeightOp::verify() {
  ArrayRef<int64_t> block = getBlock();
  if (block.size() != 2 || block[0] < 1 || block[1] < 1)
    return emitOpError() << "block must be two positive extents [rows, cols]";
  auto q = cast<RankedTensorType>(getQuantized().getType());
  auto result = cast<RankedTensorType>(getResult().getType());
  if (result.getShape() != q.getShape())
    return emitOpError() << "result " << result << " must have the shape of the FP8 weight "
                         << q;
  return checkBlockScales([&] { return emitOpError(); }, q,
                          cast<RankedTensorType>(getScales().getType()), block);
}

LogicalResult ParamOp::verifySymbolUses(SymbolTableCollection &symbols) {
  if (std::optional<StringRef> of = getScales()) {
    auto weight = symbols.lookupNearestSymbolFrom<ParamOp>(*this, getScalesAttr());
    if (!weight)
      return emitOpError() << "scales @" << *of << " does not name a dsv3.param";
    if (!isa<Float8E4M3FNType>(weight.getTensorType().getElementType()))
      return emitOpError() << "scales @" << *of << ", whose type " << weight.getType()
                           << " is not f8E4M3FN";
    if (failed(checkBlockScales([&] { return emitOpError(); }, weight.getTensorType(),
                                getTensorType(), {})))
      return failure();
  }
  std::optional<StringRef> tied = getTiedTo();
  if (!tied)
    return success();
  auto target = symbols.lookupNearestSymbolFrom<ParamOp>(
      *this, getTiedToAttr());
  if (!target)
    return emitOpError() << "tied_to @" << *tied
                         << " does not name a dsv3.param";
  if (target.getTiedTo())
    return emitOpError() << "tied_to @" << *tied
                         << " is itself tied; tie to the original parameter";
  if (target.getType() != getType())
    return emitOpError() << "type " << getType()
                         << " differs from the type " << target.getType()
                         << " of the parameter it is tied to (@" << *tied
                         << ")";
  return success();
}

std::string ParamOp::getExpertTensorName(int64_t e) {
  std::string name = getStackedFrom()->str();
  size_t pos = name.find("{e}");
  return name.replace(pos, 3, std::to_string(e));
}

LogicalResult GetParamOp::verifySymbolUses(SymbolTableCollection &symbols) {
  auto param = symbols.lookupNearestSymbolFrom<ParamOp>(*this, getParamAttr());
  if (!param)
    return emitOpError() << "@" << getParam()
                         << " does not reference a dsv3.param";
  if (param.getType() != getType())
    return emitOpError() << "result type " << getType()
                         << " does not match the type " << param.getType()
                         << " of parameter @" << getParam();
  return success();
}

namespace {
/// Reads of a tied copy (e.g. the MTP layer's `shared_head.head.weight`, equal
/// to `lm_head.weight`) become reads of the original, so the copy is dead and
/// both users share one weight (and, in training, one gradient).
struct ReadTiedParamFromOriginal : OpRewritePattern<GetParamOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(GetParamOp op,
                                PatternRewriter &rewriter) const override {
    auto param =
        SymbolTable::lookupNearestSymbolFrom<ParamOp>(op, op.getParamAttr());
    if (!param || !param.getTiedTo())
      return failure();
    rewriter.replaceOpWithNewOp<GetParamOp>(op, op.getType(),
                                            param.getTiedToAttr());
    return success();
  }
};
} // namespace

void GetParamOp::getCanonicalizationPatterns(RewritePatternSet &results,
                                             MLIRContext *context) {
  results.add<ReadTiedParamFromOriginal>(context);
}

//===----------------------------------------------------------------------===//
// Embedding, norms, linear, rope
//===----------------------------------------------------------------------===//

LogicalResult EmbeddingOp::verify() {
  auto ids = tensorOf(getIds()), table = tensorOf(getTable());
  if (table.getRank() != 2)
    return emitOpError() << "table must be [vocab, hidden], got " << table;
  SmallVector<int64_t> expected(ids.getShape());
  expected.push_back(table.getDimSize(1));
  if (failed(expectShape(*this, getResult(), "result", expected,
                         "ids shape + [hidden]")))
    return failure();
  return expectSameElementType(*this, getTable(), "table", getResult(),
                               "result");
}

LogicalResult RmsNormOp::verify() {
  auto input = tensorOf(getInput());
  if (input.getRank() < 1)
    return emitOpError() << "input must have rank >= 1";
  if (failed(expectShape(*this, getWeight(), "weight",
                         {input.getDimSize(input.getRank() - 1)},
                         "[last dimension of the input]")))
    return failure();
  if (!(getEpsilon().convertToDouble() > 0.0))
    return emitOpError() << "epsilon (" << getEpsilon().convertToDouble()
                         << ") must be positive";
  return success();
}

LogicalResult LinearOp::verify() {
  SmallVector<int64_t> expected;
  if (failed(verifyProjection(*this, getInput(), getWeight(), "weight", "the weight's",
                              expected)))
    return failure();
  if (getBias() &&
      failed(expectShape(*this, getBias(), "bias", {expected.back()}, "[out]")))
    return failure();
  if (failed(expectShape(*this, getResult(), "result", expected,
                         "input shape with the last dimension = out")))
    return failure();
  return expectSameElementType(*this, getInput(), "input", getResult(),
                               "result");
}

LogicalResult LinearAddOp::verify() {
  SmallVector<int64_t> expected;
  if (failed(verifyProjection(*this, getInput(), getWeight(), "weight", "the weight's",
                              expected)))
    return failure();
  return expectShape(*this, getResidual(), "residual", expected,
                     "input shape with the last dimension = out");
}

/// The checks of a gate/up projection pair (gated_linear and its norm
/// prologue form): both weights [out, in] of one type, the result [..., out].
static LogicalResult verifyGatedProjection(Operation *op, Value input, Value gate,
                                           Value up, Value result) {
  SmallVector<int64_t> expected;
  if (failed(verifyProjection(op, input, gate, "gate_weight", "the weights'", expected)))
    return failure();
  if (up.getType() != gate.getType())
    return op->emitOpError() << "up_weight " << up.getType()
                             << " must have the gate_weight's type " << gate.getType();
  return expectShape(op, result, "result", expected,
                     "input shape with the last dimension = out");
}

LogicalResult GatedLinearOp::verify() {
  return verifyGatedProjection(*this, getInput(), getGateWeight(), getUpWeight(),
                               getResult());
}

/// The prologue norm of the fused projections: weight [input features],
/// epsilon > 0.
static LogicalResult verifyPrologueNorm(Operation *op, Value input, Value normWeight,
                                        APFloat epsilon) {
  auto in = tensorOf(input);
  if (in.getRank() < 1)
    return op->emitOpError() << "input must have rank >= 1";
  if (failed(expectShape(op, normWeight, "norm_weight", {in.getDimSize(in.getRank() - 1)},
                         "[input features]")))
    return failure();
  if (!(epsilon.convertToDouble() > 0.0))
    return op->emitOpError() << "epsilon (" << epsilon.convertToDouble()
                             << ") must be positive";
  return success();
}

LogicalResult NormLinearOp::verify() {
  SmallVector<int64_t> expected;
  if (failed(verifyPrologueNorm(*this, getInput(), getNormWeight(), getEpsilon())) ||
      failed(verifyProjection(*this, getInput(), getWeight(), "weight", "the weight's",
                              expected)))
    return failure();
  return expectShape(*this, getResult(), "result", expected,
                     "input shape with the last dimension = out");
}

LogicalResult NormGatedLinearOp::verify() {
  if (failed(verifyPrologueNorm(*this, getInput(), getNormWeight(), getEpsilon())))
    return failure();
  return verifyGatedProjection(*this, getInput(), getGateWeight(), getUpWeight(),
                               getResult());
}

LogicalResult RopeOp::verify() {
  auto input = tensorOf(getInput());
  if (input.getRank() != 3 && input.getRank() != 4)
    return emitOpError() << "input must be [batch, seq, dim] or [batch, seq, "
                            "heads, dim], got "
                         << input;
  int64_t dim = input.getDimSize(input.getRank() - 1);
  if (!extentsAgree(dim, getRope().getDim()))
    return emitOpError() << "input's last dimension (" << dim
                         << ") must equal the rope dim ("
                         << getRope().getDim() << ")";
  return expectShape(*this, getPositions(), "positions",
                     {input.getDimSize(0), input.getDimSize(1)},
                     "[batch, seq] of the input");
}

//===----------------------------------------------------------------------===//
// Latent attention
//===----------------------------------------------------------------------===//

/// Checks the attributes and weights shared by both MLA forms against
/// SEMANTICS.md 10.
template <typename OpTy>
static LogicalResult verifyLatentAttention(OpTy op) {
  Operation *o = op.getOperation();
  int64_t nh = op.getNumHeads(), r = op.getKvLoraRank();
  int64_t dn = op.getQkNopeHeadDim(), dr = op.getQkRopeHeadDim();
  int64_t dv = op.getVHeadDim();
  if (failed(expectPositive(o, nh, "num_heads")) ||
      failed(expectPositive(o, r, "kv_lora_rank")) ||
      failed(expectPositive(o, dn, "qk_nope_head_dim")) ||
      failed(expectPositive(o, dr, "qk_rope_head_dim")) ||
      failed(expectPositive(o, dv, "v_head_dim")))
    return failure();
  if (op.getRope().getDim() != dr)
    return op.emitOpError() << "rope dim (" << op.getRope().getDim()
                            << ") must equal qk_rope_head_dim (" << dr << ")";
  if (!(op.getSoftmaxScale().convertToDouble() > 0.0))
    return op.emitOpError() << "softmax_scale ("
                            << op.getSoftmaxScale().convertToDouble()
                            << ") must be positive";
  if (failed(expectRank(o, op.getHidden(), "hidden", 3, "[batch, seq, hidden]")))
    return failure();
  auto hidden = tensorOf(op.getHidden());
  int64_t H = hidden.getDimSize(2);
  int64_t dq = dn + dr;

  std::optional<uint64_t> rq = op.getQLoraRank();
  bool hasQa = static_cast<bool>(op.getQAProj());
  if (rq && !hasQa)
    return op.emitOpError() << "q_lora_rank is set (" << *rq
                            << ") but the q_a(q_a_proj, q_a_norm) weights are "
                               "missing";
  if (!rq && hasQa)
    return op.emitOpError()
           << "q_a(q_a_proj, q_a_norm) weights are given but q_lora_rank is "
              "not set";
  if (rq) {
    int64_t q = static_cast<int64_t>(*rq);
    if (failed(expectPositive(o, q, "q_lora_rank")) ||
        failed(expectShape(o, op.getQAProj(), "q_a_proj", {q, H},
                           "[q_lora_rank, hidden]")) ||
        failed(expectShape(o, op.getQANorm(), "q_a_norm", {q},
                           "[q_lora_rank]")) ||
        failed(expectShape(o, op.getQProj(), "q_proj (q_b_proj)",
                           {nh * dq, q},
                           "[num_heads·(qk_nope+qk_rope), q_lora_rank]")))
      return failure();
  } else if (failed(expectShape(o, op.getQProj(), "q_proj", {nh * dq, H},
                                "[num_heads·(qk_nope+qk_rope), hidden]"))) {
    return failure();
  }
  if (op.getQABias() && !hasQa)
    return op.emitOpError() << "q_a_bias needs q_a_proj (q_lora_rank)";
  if (failed(expectShape(o, op.getKvAProj(), "kv_a_proj", {r + dr, H},
                         "[kv_lora_rank + qk_rope_head_dim, hidden]")) ||
      failed(expectShape(o, op.getKvANorm(), "kv_a_norm", {r},
                         "[kv_lora_rank]")) ||
      failed(expectShape(o, op.getKvBProj(), "kv_b_proj", {nh * (dn + dv), r},
                         "[num_heads·(qk_nope+v_head_dim), kv_lora_rank]")) ||
      failed(expectShape(o, op.getOProj(), "o_proj", {H, nh * dv},
                         "[hidden, num_heads·v_head_dim]")))
    return failure();
  if (op.getQABias() && rq &&
      failed(expectShape(o, op.getQABias(), "q_a_bias",
                         {static_cast<int64_t>(*rq)}, "[q_lora_rank]")))
    return failure();
  if (op.getKvABias() &&
      failed(expectShape(o, op.getKvABias(), "kv_a_bias", {r + dr},
                         "[kv_lora_rank + qk_rope_head_dim]")))
    return failure();
  if (op.getOBias() &&
      failed(expectShape(o, op.getOBias(), "o_bias", {H}, "[hidden]")))
    return failure();
  return expectShape(o, op.getResult(), "result", hidden.getShape(),
                     "the hidden shape");
}

/// Only the saved tensors are named (%saved): the attention's result keeps
/// its number, so the IR of ops without save_for_backward reads as before.
void LatentAttentionOp::getAsmResultNames(OpAsmSetValueNameFn setNameFn) {
  if (!getSaved().empty())
    setNameFn(getSaved().front(), "saved");
}

SmallVector<RankedTensorType, 2> LatentAttentionOp::getSavedTypes() {
  auto hidden = tensorOf(getHidden());
  int64_t B = hidden.getDimSize(0), T = hidden.getDimSize(1), NH = getNumHeads();
  Type f32 = Float32Type::get(getContext());
  return {RankedTensorType::get({B, T, NH * int64_t(getVHeadDim())}, f32),
          RankedTensorType::get({B, NH, T}, f32)};
}

LogicalResult LatentAttentionOp::verify() {
  if (failed(verifyLatentAttention(*this)))
    return failure();
  size_t saved = getSaved().size();
  if (saved != (getSaveForBackward() ? 2u : 0u))
    return emitOpError() << "returns " << saved << " saved tensors; "
                         << (getSaveForBackward() ? "save_for_backward needs 2 (the "
                                                    "attention output and its log-sum-exp)"
                                                  : "without save_for_backward none");
  if (!saved)
    return success();
  for (Value v : getSaved())
    if (!tensorOf(v).getElementType().isF32())
      return emitOpError() << "saved tensors must be f32, got " << v.getType();
  SmallVector<RankedTensorType, 2> want = getSavedTypes();
  if (failed(expectShape(*this, getSaved()[0], "saved attention output", want[0].getShape(),
                         "[batch, seq, num_heads * v_head_dim]")))
    return failure();
  return expectShape(*this, getSaved()[1], "saved log-sum-exp", want[1].getShape(),
                     "[batch, num_heads, seq]");
}

LogicalResult LatentAttentionDecodeOp::verify() {
  if (failed(verifyLatentAttention(*this)))
    return failure();
  auto hidden = tensorOf(getHidden());
  int64_t width = getKvLoraRank() + getQkRopeHeadDim();
  if (failed(expectRank(*this, getCache(), "cache", 3,
                        "[batch, max_seq, kv_lora_rank + qk_rope_head_dim]")) ||
      failed(expectShape(*this, getCache(), "cache",
                         {hidden.getDimSize(0), tensorOf(getCache()).getDimSize(1),
                          width},
                         "[batch, max_seq, kv_lora_rank + qk_rope_head_dim]")))
    return failure();
  if (failed(expectRank(*this, getPastLen(), "past_len", 1, "[batch]")) ||
      failed(expectShape(*this, getPastLen(), "past_len", {hidden.getDimSize(0)},
                         "[batch]")))
    return failure();
  if (getNewCache().getType() != getCache().getType())
    return emitOpError() << "new_cache type " << getNewCache().getType()
                         << " must equal the cache type "
                         << getCache().getType();
  return success();
}

//===----------------------------------------------------------------------===//
// Mixture of experts
//===----------------------------------------------------------------------===//

LogicalResult MoeRouteOp::verify() {
  if (failed(expectRank(*this, getHidden(), "hidden", 3, "[batch, seq, hidden]")))
    return failure();
  auto hidden = tensorOf(getHidden()), gate = tensorOf(getGateWeight());
  if (gate.getRank() != 2 || gate.isDynamicDim(0))
    return emitOpError() << "gate_weight must be [n_routed_experts, hidden] "
                            "with a static expert count, got "
                         << gate;
  if (!extentsAgree(gate.getDimSize(1), hidden.getDimSize(2)))
    return emitOpError() << "gate_weight's hidden dimension ("
                         << gate.getDimSize(1) << ") must equal the hidden size ("
                         << hidden.getDimSize(2) << ")";
  int64_t E = gate.getDimSize(0);
  int64_t K = getNumExpertsPerTok(), G = getNGroup(), TG = getTopkGroup();
  if (failed(expectPositive(*this, K, "num_experts_per_tok")) ||
      failed(expectPositive(*this, G, "n_group")) ||
      failed(expectPositive(*this, TG, "topk_group")))
    return failure();
  if (K > E)
    return emitOpError() << "num_experts_per_tok (" << K
                         << ") must be <= n_routed_experts (" << E << ")";
  if (E % G != 0)
    return emitOpError() << "n_group (" << G
                         << ") must divide n_routed_experts (" << E << ")";
  if (TG > G)
    return emitOpError() << "topk_group (" << TG << ") must be <= n_group ("
                         << G << ")";
  TopkMethod method = getTopkMethod();
  if (method != TopkMethod::Greedy && K > TG * (E / G))
    return emitOpError() << "num_experts_per_tok (" << K
                         << ") exceeds the " << TG * (E / G)
                         << " experts of the topk_group (" << TG
                         << ") kept groups of " << E / G << " experts";
  if (method == TopkMethod::NoauxTc) {
    if (!getCorrectionBias())
      return emitOpError() << "noaux_tc routing needs a correction_bias operand";
    if (E / G < 2)
      return emitOpError() << "noaux_tc ranks a group by the sum of its two "
                              "best experts, so each group needs >= 2 experts; "
                              "n_routed_experts ("
                           << E << ") / n_group (" << G << ") = " << E / G;
  } else if (getCorrectionBias()) {
    return emitOpError() << "correction_bias is only used by noaux_tc routing, "
                            "not "
                         << stringifyTopkMethod(method);
  }
  if (getCorrectionBias() &&
      failed(expectShape(*this, getCorrectionBias(), "correction_bias", {E},
                         "[n_routed_experts]")))
    return failure();
  if (!(getRoutedScalingFactor().convertToDouble() > 0.0))
    return emitOpError() << "routed_scaling_factor ("
                         << getRoutedScalingFactor().convertToDouble()
                         << ") must be positive";
  SmallVector<int64_t> expected = {hidden.getDimSize(0), hidden.getDimSize(1), K};
  if (failed(expectShape(*this, getIndices(), "indices", expected,
                         "[batch, seq, num_experts_per_tok]")) ||
      failed(expectShape(*this, getWeights(), "weights", expected,
                         "[batch, seq, num_experts_per_tok]")))
    return failure();
  return success();
}

LogicalResult MoeDispatchOp::verify() {
  if (failed(expectRank(*this, getHidden(), "hidden", 3, "[batch, seq, hidden]")) ||
      failed(expectRank(*this, getIndices(), "indices", 3,
                        "[batch, seq, top_k]")) ||
      failed(expectPositive(*this, getNumExperts(), "num_experts")))
    return failure();
  auto hidden = tensorOf(getHidden()), idx = tensorOf(getIndices());
  if (!extentsAgree(hidden.getDimSize(0), idx.getDimSize(0)) ||
      !extentsAgree(hidden.getDimSize(1), idx.getDimSize(1)))
    return emitOpError() << "indices " << idx
                         << " must have the batch and seq dimensions of hidden "
                         << hidden;
  int64_t rows = ShapedType::kDynamic;
  if (idx.hasStaticShape())
    rows = idx.getNumElements();
  if (failed(expectShape(*this, getRows(), "rows", {rows, hidden.getDimSize(2)},
                         "[batch·seq·top_k, hidden]")) ||
      failed(expectShape(*this, getCounts(), "counts", {int64_t(getNumExperts())},
                         "[num_experts]")) ||
      failed(expectShape(*this, getSlots(), "slots",
                         {tensorOf(getRows()).getDimSize(0)}, "[rows]")))
    return failure();
  return expectSameElementType(*this, getHidden(), "hidden", getRows(), "rows");
}

/// The expert-parallel exchanges' shared checks: `ranks` divides the
/// global expert count, and the layout is [ranks, experts / ranks].
static LogicalResult verifyExpertExchange(Operation *op, Value rows, Value counts,
                                          Value layout, int64_t ranks,
                                          std::optional<ArrayRef<int64_t>> placement) {
  if (failed(expectPositive(op, ranks, "ranks")) ||
      failed(expectRank(op, rows, "rows", 2, "[rows, hidden]")) ||
      failed(expectRank(op, counts, "counts", 1, "[experts]")))
    return failure();
  int64_t experts = tensorOf(counts).getDimSize(0);
  if (placement) {
    // Every expert on at least one rank, every slot a valid expert.
    if (ShapedType::isDynamic(experts) || placement->empty() ||
        int64_t(placement->size()) % ranks != 0)
      return op->emitOpError() << "placement has " << placement->size()
                               << " entries, not a whole number of slots for each of the "
                               << ranks << " ranks";
    std::vector<bool> placed(size_t(experts), false);
    for (int64_t e : *placement) {
      if (e < 0 || e >= experts)
        return op->emitOpError() << "placement names expert " << e << ", outside [0, "
                                 << experts << ")";
      placed[size_t(e)] = true;
    }
    for (int64_t e = 0; e < experts; ++e)
      if (!placed[size_t(e)])
        return op->emitOpError() << "placement leaves expert " << e << " on no rank";
    int64_t slots = int64_t(placement->size()) / ranks;
    return expectShape(op, layout, "layout", {ranks, slots}, "[ranks, slots]");
  }
  if (ShapedType::isDynamic(experts) || experts % ranks != 0)
    return op->emitOpError() << "counts " << tensorOf(counts)
                             << " must hold a static number of experts divisible by the "
                             << ranks << " ranks";
  return expectShape(op, layout, "layout", {ranks, experts / ranks},
                     "[ranks, experts / ranks]");
}

LogicalResult ExpertDispatchExchangeOp::verify() {
  if (failed(verifyExpertExchange(*this, getRows(), getCounts(), getLayout(),
                                  int64_t(getRanks()), getPlacement())))
    return failure();
  if (std::optional<APFloat> capacity = getCapacity();
      capacity && !(capacity->convertToDouble() >= 1.0))
    return emitOpError() << "capacity must be >= 1 (a rank keeps at least its own rows' "
                            "worth), got "
                         << capacity->convertToDouble();
  int64_t local = tensorOf(getLayout()).getDimSize(1);
  if (failed(expectShape(*this, getLocalCounts(), "local_counts", {local},
                         "[slots of a rank]")) ||
      failed(expectShape(*this, getLocalRows(), "local_rows",
                         {ShapedType::kDynamic, tensorOf(getRows()).getDimSize(1)},
                         "[?, hidden]")))
    return failure();
  return expectSameElementType(*this, getRows(), "rows", getLocalRows(), "local_rows");
}

LogicalResult ExpertCombineExchangeOp::verify() {
  if (failed(verifyExpertExchange(*this, getRows(), getCounts(), getLayout(),
                                  int64_t(getRanks()), getPlacement())) ||
      failed(expectShape(*this, getResult(), "result",
                         {ShapedType::kDynamic, tensorOf(getRows()).getDimSize(1)},
                         "[?, hidden]")))
    return failure();
  return expectSameElementType(*this, getRows(), "rows", getResult(), "result");
}

LogicalResult AllReduceOp::verify() {
  if (getReduction() != "sum" && getReduction() != "mean")
    return emitOpError() << "reduction must be 'sum' or 'mean', got '" << getReduction()
                         << "'";
  if (getGroup() != "data" && getGroup() != "expert" && getGroup() != "expert_data")
    return emitOpError() << "group must be 'data', 'expert' or 'expert_data', got '"
                         << getGroup() << "'";
  if (getReduction() == "mean" && !isa<FloatType>(tensorOf(getInput()).getElementType()))
    return emitOpError() << "a mean needs a floating-point tensor, got "
                         << tensorOf(getInput());
  return expectPositive(*this, int64_t(getRanks()), "ranks");
}

LogicalResult ExpertGroupedMatmulOp::verify() {
  auto rows = tensorOf(getRows()), weight = tensorOf(getWeight());
  if (rows.getRank() != 2)
    return emitOpError() << "rows must be [rows, in], got " << rows;
  if (weight.getRank() != 3)
    return emitOpError() << "weight must be [experts, out, in], got " << weight;
  if (!extentsAgree(rows.getDimSize(1), weight.getDimSize(2)))
    return emitOpError() << "rows' feature dimension (" << rows.getDimSize(1)
                         << ") must equal the weight's in dimension ("
                         << weight.getDimSize(2) << ")";
  if (failed(expectShape(*this, getCounts(), "counts", {weight.getDimSize(0)},
                         "[experts]")) ||
      failed(expectShape(*this, getResult(), "result",
                         {rows.getDimSize(0), weight.getDimSize(1)},
                         "[rows, out]")))
    return failure();
  return expectSameElementType(*this, getRows(), "rows", getResult(), "result");
}

LogicalResult ExpertGatedMatmulOp::verify() {
  auto rows = tensorOf(getRows()), gate = tensorOf(getGateWeight());
  if (rows.getRank() != 2)
    return emitOpError() << "rows must be [rows, in], got " << rows;
  if (gate.getRank() != 3)
    return emitOpError() << "gate_weight must be [experts, out, in], got " << gate;
  if (getUpWeight().getType() != getGateWeight().getType())
    return emitOpError() << "up_weight " << getUpWeight().getType()
                         << " must have the gate_weight's type " << gate;
  if (!extentsAgree(rows.getDimSize(1), gate.getDimSize(2)))
    return emitOpError() << "rows' feature dimension (" << rows.getDimSize(1)
                         << ") must equal the weights' in dimension ("
                         << gate.getDimSize(2) << ")";
  if (failed(expectShape(*this, getCounts(), "counts", {gate.getDimSize(0)},
                         "[experts]")))
    return failure();
  return expectShape(*this, getResult(), "result",
                     {rows.getDimSize(0), gate.getDimSize(1)}, "[rows, out]");
}

LogicalResult MoeCombineOp::verify() {
  auto out = tensorOf(getExpertOut());
  if (out.getRank() != 2)
    return emitOpError() << "expert_out must be [rows, hidden], got " << out;
  if (failed(expectShape(*this, getSlots(), "slots", {out.getDimSize(0)},
                         "[rows]")) ||
      failed(expectRank(*this, getWeights(), "weights", 3,
                        "[batch, seq, top_k]")))
    return failure();
  auto w = tensorOf(getWeights());
  if (w.hasStaticShape() && !extentsAgree(out.getDimSize(0), w.getNumElements()))
    return emitOpError() << "expert_out has " << out.getDimSize(0)
                         << " rows but the weights select "
                         << w.getNumElements() << " (batch·seq·top_k)";
  if (failed(expectShape(*this, getResult(), "result",
                         {w.getDimSize(0), w.getDimSize(1), out.getDimSize(1)},
                         "[batch, seq, hidden]")))
    return failure();
  return expectSameElementType(*this, getExpertOut(), "expert_out", getResult(),
                               "result");
}

LogicalResult MoeBalanceLossOp::verify() {
  if (failed(expectRank(*this, getHidden(), "hidden", 3, "[batch, seq, hidden]")) ||
      failed(expectRank(*this, getIndices(), "indices", 3,
                        "[batch, seq, top_k]")))
    return failure();
  auto hidden = tensorOf(getHidden()), gate = tensorOf(getGateWeight());
  if (gate.getRank() != 2 || !extentsAgree(gate.getDimSize(1), hidden.getDimSize(2)))
    return emitOpError() << "gate_weight must be [n_routed_experts, hidden] with "
                            "hidden = "
                         << hidden.getDimSize(2) << ", got " << gate;
  auto idx = tensorOf(getIndices());
  if (!extentsAgree(idx.getDimSize(0), hidden.getDimSize(0)) ||
      !extentsAgree(idx.getDimSize(1), hidden.getDimSize(1)))
    return emitOpError() << "indices " << idx
                         << " must have the batch and seq dimensions of hidden "
                         << hidden;
  if (getAlpha().convertToDouble() < 0)
    return emitOpError() << "alpha (" << getAlpha().convertToDouble()
                         << ") must be >= 0";
  if (getSequenceWise() && getScoringFunc() != ScoringFunc::Sigmoid)
    return emitOpError() << "the sequence-wise loss normalises sigmoid scores; "
                            "softmax routing uses the expert-level loss";
  return success();
}

//===----------------------------------------------------------------------===//
// MTP, head, loss
//===----------------------------------------------------------------------===//

LogicalResult MtpOp::verify() {
  if (failed(expectRank(*this, getEmbeds(), "embeds", 3, "[batch, seq, hidden]")))
    return failure();
  auto embeds = tensorOf(getEmbeds());
  int64_t H = embeds.getDimSize(2), T = embeds.getDimSize(1);
  int64_t depth = static_cast<int64_t>(getDepth());
  if (depth < 1)
    return emitOpError() << "depth must be >= 1, got " << depth;
  int64_t rows = ShapedType::isDynamic(T) ? T : T - depth;
  if (!ShapedType::isDynamic(T) && rows < 1)
    return emitOpError() << "depth " << getDepth()
                         << " leaves no rows of a sequence of " << T;
  if (failed(expectRank(*this, getHidden(), "hidden", 3,
                        "[batch, rows, hidden]")) ||
      failed(expectShape(*this, getHidden(), "hidden",
                         {embeds.getDimSize(0), tensorOf(getHidden()).getDimSize(1), H},
                         "[batch, rows, hidden] with the embeds' batch and hidden")))
    return failure();
  int64_t hiddenRows = tensorOf(getHidden()).getDimSize(1);
  if (!ShapedType::isDynamic(rows) && !ShapedType::isDynamic(hiddenRows) &&
      hiddenRows < rows)
    return emitOpError() << "hidden has " << hiddenRows << " rows but depth "
                         << getDepth() << " of a sequence of " << T
                         << " needs " << rows;
  if (failed(expectShape(*this, getEnorm(), "enorm", {H}, "[hidden]")) ||
      failed(expectShape(*this, getHnorm(), "hnorm", {H}, "[hidden]")) ||
      failed(expectShape(*this, getEhProj(), "eh_proj",
                         {H, ShapedType::isDynamic(H) ? H : 2 * H},
                         "[hidden, 2·hidden]")))
    return failure();
  return expectShape(*this, getResult(), "result",
                     {embeds.getDimSize(0), rows, H},
                     "[batch, seq - depth, hidden]");
}

LogicalResult LastTokenOp::verify() {
  if (failed(expectRank(*this, getInput(), "input", 3, "[batch, seq, hidden]")))
    return failure();
  auto in = tensorOf(getInput());
  if (tensorOf(getResult()).getElementType() != in.getElementType())
    return emitOpError() << "result element type must be the input's, "
                         << in.getElementType();
  return expectShape(*this, getResult(), "result",
                     {in.getDimSize(0), 1, in.getDimSize(2)}, "[batch, 1, hidden]");
}

LogicalResult LmHeadOp::verify() {
  if (failed(expectRank(*this, getHidden(), "hidden", 3, "[batch, seq, hidden]")))
    return failure();
  auto hidden = tensorOf(getHidden()), weight = tensorOf(getWeight());
  if (weight.getRank() != 2 ||
      !extentsAgree(weight.getDimSize(1), hidden.getDimSize(2)))
    return emitOpError() << "weight must be [vocab, hidden] with hidden = "
                         << hidden.getDimSize(2) << ", got " << weight;
  return expectShape(*this, getLogits(), "logits",
                     {hidden.getDimSize(0), hidden.getDimSize(1),
                      weight.getDimSize(0)},
                     "[batch, seq, vocab]");
}

/// A loss's labels against its rows ([batch, rows, ...]: the logits, or
/// the hidden states of a fused loss): the same batch, a shift >= 0, no
/// more rows than the labels have positions.
static LogicalResult verifyLossLabels(Operation *op, RankedTensorType rows,
                                      RankedTensorType labels, int64_t shift,
                                      StringRef what, StringRef have) {
  if (!extentsAgree(rows.getDimSize(0), labels.getDimSize(0)))
    return op->emitOpError() << what << " batch (" << rows.getDimSize(0)
                             << ") must equal labels batch ("
                             << labels.getDimSize(0) << ")";
  if (shift < 0)
    return op->emitOpError() << "shift must be >= 0, got " << shift;
  if (!rows.isDynamicDim(1) && !labels.isDynamicDim(1) &&
      rows.getDimSize(1) > labels.getDimSize(1))
    return op->emitOpError() << what << " " << have << " " << rows.getDimSize(1)
                             << " rows but labels only " << labels.getDimSize(1)
                             << " positions";
  return success();
}

LogicalResult LmHeadCrossEntropyOp::verify() {
  if (failed(expectRank(*this, getHidden(), "hidden", 3, "[batch, rows, hidden]")) ||
      failed(expectRank(*this, getLabels(), "labels", 2, "[batch, seq]")))
    return failure();
  auto hidden = tensorOf(getHidden()), weight = tensorOf(getWeight()),
       labels = tensorOf(getLabels());
  if (weight.getRank() != 2 ||
      !extentsAgree(weight.getDimSize(1), hidden.getDimSize(2)))
    return emitOpError() << "weight must be [vocab, hidden] with hidden = "
                         << hidden.getDimSize(2) << ", got " << weight;
  return verifyLossLabels(*this, hidden, labels, static_cast<int64_t>(getShift()), "hidden",
                          "has");
}

LogicalResult CrossEntropyOp::verify() {
  if (failed(expectRank(*this, getLogits(), "logits", 3, "[batch, rows, vocab]")) ||
      failed(expectRank(*this, getLabels(), "labels", 2, "[batch, seq]")))
    return failure();
  return verifyLossLabels(*this, tensorOf(getLogits()), tensorOf(getLabels()),
                          static_cast<int64_t>(getShift()), "logits", "have");
}
