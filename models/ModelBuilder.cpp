//===- ModelBuilder.cpp - build the dsv3 module of a model -----------------===//
//
// Turns a ModelConfig into dsv3 IR, layer by layer, following SEMANTICS.md 6:
// h += MLA(RMSNorm(h)); h += FFN(RMSNorm(h)); logits = lm_head(RMSNorm(h)).
// Each op gets a NameLoc of the checkpoint prefix it comes from, so a
// diagnostic says which layer is wrong.
//
//===----------------------------------------------------------------------===//

#include "models/ModelBuilder.h"

#include "dialects/Dsv3/IR/Dsv3Ops.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/Builders.h"
#include "llvm/ADT/StringMap.h"

#include <fmt/format.h>

using namespace mlir;
using namespace mlir::dsv3;

namespace dsv3 {
namespace {

constexpr int64_t kDyn = ShapedType::kDynamic;

class ModelBuilder {
public:
  ModelBuilder(MLIRContext &ctx, const ModelConfig &c, const BuildOptions &o)
      : ctx(ctx), c(c), opts(o), b(&ctx) {}

  OwningOpRef<ModuleOp> build();

private:
  // Types.
  Type elementType() {
    switch (c.dtype) {
    case ::dsv3::DType::F32: return b.getF32Type();
    case ::dsv3::DType::BF16: return b.getBF16Type();
    case ::dsv3::DType::F16: return b.getF16Type();
    }
    return b.getF32Type();
  }
  RankedTensorType tensor(ArrayRef<int64_t> shape, Type elt = {}) {
    return RankedTensorType::get(shape, elt ? elt : elementType());
  }
  RankedTensorType activations(int64_t features) {
    return tensor({kDyn, kDyn, features});
  }
  RankedTensorType idsType() { return tensor({kDyn, kDyn}, b.getI64Type()); }
  RankedTensorType cacheType() {
    return tensor({kDyn, kDyn, c.kvLoraRank + c.qkRopeHeadDim});
  }

  /// Declares parameter `name` once (module level) and reads it in the
  /// current function.
  Value param(const std::string &name, ArrayRef<int64_t> shape, ParamRole role,
              int64_t mtpDepth = 0, const std::string &stackedFrom = "",
              const std::string &tiedTo = "", Type elt = {});

  Location nameLoc(const std::string &name) {
    return NameLoc::get(b.getStringAttr(name));
  }

  RopeAttr ropeAttr();
  Value rmsNorm(Value x, const std::string &weightName, double eps,
                ParamRole role, int64_t mtp);
  Value linear(Value x, const std::string &weightName, int64_t out, int64_t in,
               ParamRole role, int64_t mtp);
  /// Dense MLP or shared experts: down(swiglu(gate(x), up(x))).
  Value mlp(Value x, const std::string &prefix, int64_t inner, ParamRole role,
            int64_t mtp);
  Value moe(Value x, const std::string &prefix, int64_t mtp);
  /// The attention of layer `prefix`; with `cache`, the decode form, which
  /// also returns the updated cache through `newCache`.
  Value attention(Value x, const std::string &prefix, int64_t mtp,
                  Value cache = {}, Value pastLen = {},
                  Value *newCache = nullptr);
  /// One decoder block (SEMANTICS.md 6).
  Value block(Value h, int64_t layer, bool moe, int64_t mtp, Value cache = {},
              Value pastLen = {}, Value *newCache = nullptr);
  /// Embedding, the decoder stack and the final norm; fills `caches` in the
  /// decode form.
  Value trunk(Value ids, Value pastLen = {}, ValueRange caches = {},
              SmallVectorImpl<Value> *newCaches = nullptr);
  Value lmHead(Value normed, const std::string &weightName, int64_t mtp);

  /// The logits of every MTP depth, from the main model's normed output.
  SmallVector<Value> mtpLogits(Value ids, Value h);
  void buildForward();
  /// The loss of `ids`: mean next-token cross entropy plus the weighted
  /// MTP losses.
  Value lossValue(Value ids, Value *mainLoss = nullptr, Value *mtpLoss = nullptr);
  void buildLoss();
  /// train_loss: the loss plus the load-balancing losses.
  void buildTrainLoss();
  /// forward_mtp: ids -> the logits of each MTP depth (the drafts of
  /// speculative decoding).
  void buildForwardMtp();
  void buildDecode();
  void buildPrefill();
  func::FuncOp beginFunction(StringRef name, StringRef kind,
                             FunctionType type);

  MLIRContext &ctx;
  const ModelConfig &c;
  const BuildOptions &opts;
  OpBuilder b;
  ModuleOp module;
  llvm::StringMap<ParamOp> params;
  /// The routers built in the current function (for the balance losses).
  SmallVector<MoeRouteOp> routes;
  OpBuilder::InsertPoint paramInsertPoint;
};

Value ModelBuilder::param(const std::string &name, ArrayRef<int64_t> shape,
                          ParamRole role, int64_t mtpDepth,
                          const std::string &stackedFrom,
                          const std::string &tiedTo, Type elt) {
  RankedTensorType type = tensor(shape, elt);
  auto it = params.find(name);
  if (it == params.end()) {
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPointToEnd(module.getBody());
    // Parameters come before the functions; keep them in declaration order.
    if (auto firstFunc = *module.getOps<func::FuncOp>().begin())
      b.setInsertionPoint(firstFunc);
    auto p = ParamOp::create(
        b, nameLoc(name), b.getStringAttr(name), TypeAttr::get(type),
        ParamRoleAttr::get(&ctx, role),
        stackedFrom.empty() ? StringAttr() : b.getStringAttr(stackedFrom),
        tiedTo.empty() ? FlatSymbolRefAttr()
                       : FlatSymbolRefAttr::get(&ctx, tiedTo),
        mtpDepth ? b.getI64IntegerAttr(mtpDepth) : IntegerAttr(),
        /*sharded_over=*/IntegerAttr(), /*placement=*/DenseI64ArrayAttr(),
        /*scales=*/FlatSymbolRefAttr());
    it = params.try_emplace(name, p).first;
  }
  return GetParamOp::create(b, b.getUnknownLoc(), type,
                            FlatSymbolRefAttr::get(&ctx, name));
}

RopeAttr ModelBuilder::ropeAttr() {
  const RopeConfig &r = c.rope;
  auto f = [](double v) { return APFloat(v); };
  return RopeAttr::get(&ctx, c.qkRopeHeadDim, f(r.theta), c.ropeInterleave,
                       f(r.yarn ? r.factor : 0.0),
                       r.yarn ? r.originalMaxPositions : 0, f(r.betaFast),
                       f(r.betaSlow), f(r.mscale), f(r.mscaleAllDim),
                       f(r.attentionFactor.value_or(0.0)), r.truncate);
}

Value ModelBuilder::rmsNorm(Value x, const std::string &weightName, double eps,
                            ParamRole role, int64_t mtp) {
  int64_t n = cast<RankedTensorType>(x.getType()).getShape().back();
  Value w = param(weightName, {n}, role, mtp);
  return RmsNormOp::create(b, nameLoc(weightName), x.getType(), x, w,
                           b.getF64FloatAttr(eps));
}

Value ModelBuilder::linear(Value x, const std::string &weightName, int64_t out,
                           int64_t in, ParamRole role, int64_t mtp) {
  Value w = param(weightName, {out, in}, role, mtp);
  auto xt = cast<RankedTensorType>(x.getType());
  SmallVector<int64_t> shape(xt.getShape());
  shape.back() = out;
  return LinearOp::create(b, nameLoc(weightName), tensor(shape), x, w,
                          Value());
}

Value ModelBuilder::mlp(Value x, const std::string &prefix, int64_t inner,
                        ParamRole role, int64_t mtp) {
  int64_t H = c.hiddenSize;
  Value gate = linear(x, prefix + ".gate_proj.weight", inner, H, role, mtp);
  Value up = linear(x, prefix + ".up_proj.weight", inner, H, role, mtp);
  Value act = SwigluOp::create(b, nameLoc(prefix), gate, up);
  return linear(act, prefix + ".down_proj.weight", H, inner, role, mtp);
}

Value ModelBuilder::moe(Value x, const std::string &prefix, int64_t mtp) {
  int64_t H = c.hiddenSize, E = c.nRoutedExperts, K = c.numExpertsPerTok;
  int64_t I = c.moeIntermediateSize;
  Location loc = nameLoc(prefix);
  Value gate = param(prefix + ".gate.weight", {E, H}, ParamRole::Router, mtp);
  Value bias;
  if (c.topkMethod == ::dsv3::TopkMethod::NoauxTc)
    bias = param(prefix + ".gate.e_score_correction_bias", {E},
                 ParamRole::RouterBias, mtp, "", "", b.getF32Type());
  auto indexType = tensor({kDyn, kDyn, K}, b.getI64Type());
  auto weightType = tensor({kDyn, kDyn, K}, b.getF32Type());
  auto route = MoeRouteOp::create(
      b, loc, indexType, weightType, x, gate, bias,
      ScoringFuncAttr::get(&ctx, c.scoring == ::dsv3::Scoring::Sigmoid
                                     ? mlir::dsv3::ScoringFunc::Sigmoid
                                     : mlir::dsv3::ScoringFunc::Softmax),
      TopkMethodAttr::get(&ctx, static_cast<mlir::dsv3::TopkMethod>(
                                    static_cast<int>(c.topkMethod))),
      b.getI64IntegerAttr(K), b.getI64IntegerAttr(c.nGroup),
      b.getI64IntegerAttr(c.topkGroup),
      // HF DeepseekV2 keeps norm_topk_prob only for config compatibility and
      // never renormalises (SEMANTICS.md 5.5).
      c.normTopkProb && c.family == ModelFamily::DeepseekV3 ? b.getUnitAttr()
                                                             : UnitAttr(),
      b.getF64FloatAttr(c.routedScalingFactor));
  routes.push_back(route);
  auto dispatch = MoeDispatchOp::create(
      b, loc, tensor({kDyn, H}), tensor({E}, b.getI64Type()),
      tensor({kDyn}, b.getI64Type()), x, route.getIndices(),
      b.getI64IntegerAttr(E));
  auto stacked = [&](const char *proj, int64_t out, int64_t in) {
    std::string name = prefix + ".experts." + proj + ".weight";
    std::string tpl = prefix + ".experts.{e}." + proj + ".weight";
    return param(name, {E, out, in}, ParamRole::RoutedExperts, mtp, tpl);
  };
  auto grouped = [&](Value rows, Value w, int64_t out) {
    return ExpertGroupedMatmulOp::create(b, loc, tensor({kDyn, out}), rows, w,
                                         dispatch.getCounts())
        .getResult();
  };
  Value g = grouped(dispatch.getRows(), stacked("gate_proj", I, H), I);
  Value u = grouped(dispatch.getRows(), stacked("up_proj", I, H), I);
  Value act = SwigluOp::create(b, loc, g, u);
  Value down = grouped(act, stacked("down_proj", H, I), H);
  Value y = MoeCombineOp::create(b, loc, x.getType(), down, dispatch.getSlots(),
                                 route.getWeights());
  if (c.nSharedExperts > 0) {
    Value shared = mlp(x, prefix + ".shared_experts", I * c.nSharedExperts,
                       ParamRole::SharedExperts, mtp);
    y = AddOp::create(b, loc, y, shared);
  }
  return y;
}

Value ModelBuilder::attention(Value x, const std::string &prefix, int64_t mtp,
                              Value cache, Value pastLen, Value *newCache) {
  int64_t H = c.hiddenSize, nh = c.numAttentionHeads, r = c.kvLoraRank;
  int64_t dn = c.qkNopeHeadDim, dr = c.qkRopeHeadDim, dv = c.vHeadDim;
  int64_t dq = c.qHeadDim();
  auto role = ParamRole::Attention;
  Value qa, qaNorm, q, qaBias, kvaBias, oBias;
  if (c.qLoraRank) {
    int64_t rq = *c.qLoraRank;
    qa = param(prefix + ".q_a_proj.weight", {rq, H}, role, mtp);
    qaNorm = param(prefix + ".q_a_layernorm.weight", {rq}, ParamRole::Norm, mtp);
    q = param(prefix + ".q_b_proj.weight", {nh * dq, rq}, role, mtp);
    if (c.attentionBias)
      qaBias = param(prefix + ".q_a_proj.bias", {rq}, role, mtp);
  } else {
    q = param(prefix + ".q_proj.weight", {nh * dq, H}, role, mtp);
  }
  Value kva = param(prefix + ".kv_a_proj_with_mqa.weight", {r + dr, H}, role, mtp);
  Value kvaNorm =
      param(prefix + ".kv_a_layernorm.weight", {r}, ParamRole::Norm, mtp);
  Value kvb = param(prefix + ".kv_b_proj.weight", {nh * (dn + dv), r}, role, mtp);
  Value o = param(prefix + ".o_proj.weight", {H, nh * dv}, role, mtp);
  if (c.attentionBias) {
    kvaBias = param(prefix + ".kv_a_proj_with_mqa.bias", {r + dr}, role, mtp);
    oBias = param(prefix + ".o_proj.bias", {H}, role, mtp);
  }
  Location loc = nameLoc(prefix);
  IntegerAttr qLora =
      c.qLoraRank ? b.getI64IntegerAttr(*c.qLoraRank) : IntegerAttr();
  auto i64 = [&](int64_t v) { return b.getI64IntegerAttr(v); };
  FloatAttr scale = b.getF64FloatAttr(c.softmaxScale());
  FloatAttr eps = b.getF64FloatAttr(1e-6); // q_a/kv_a norms: always 1e-6
  if (!cache)
    return LatentAttentionOp::create(b, loc, x.getType(), TypeRange(), x, qa, qaNorm, q,
                                     kva, kvaNorm, kvb, o, qaBias, kvaBias, oBias,
                                     i64(nh), qLora, i64(r), i64(dn), i64(dr),
                                     i64(dv), scale, ropeAttr(), eps, UnitAttr())
        .getResult();
  auto op = LatentAttentionDecodeOp::create(
      b, loc, x.getType(), cache.getType(), x, cache, pastLen, qa, qaNorm, q,
      kva, kvaNorm, kvb, o, qaBias, kvaBias, oBias, i64(nh), qLora, i64(r),
      i64(dn), i64(dr), i64(dv), scale, ropeAttr(), eps);
  *newCache = op.getNewCache();
  return op.getResult();
}

Value ModelBuilder::block(Value h, int64_t layer, bool isMoe, int64_t mtp,
                          Value cache, Value pastLen, Value *newCache) {
  std::string prefix = fmt::format("model.layers.{}", layer);
  Value x = rmsNorm(h, prefix + ".input_layernorm.weight", c.rmsNormEps,
                    ParamRole::Norm, mtp);
  Value a = attention(x, prefix + ".self_attn", mtp, cache, pastLen, newCache);
  h = AddOp::create(b, nameLoc(prefix), h, a);
  Value y = rmsNorm(h, prefix + ".post_attention_layernorm.weight",
                    c.rmsNormEps, ParamRole::Norm, mtp);
  Value f = isMoe ? moe(y, prefix + ".mlp", mtp)
                  : mlp(y, prefix + ".mlp", c.intermediateSize,
                        ParamRole::DenseMlp, mtp);
  return AddOp::create(b, nameLoc(prefix), h, f);
}

Value ModelBuilder::trunk(Value ids, Value pastLen, ValueRange caches,
                          SmallVectorImpl<Value> *newCaches) {
  const char *embed = "model.embed_tokens.weight";
  Value table = param(embed, {c.vocabSize, c.hiddenSize}, ParamRole::Embedding);
  Value h = EmbeddingOp::create(b, nameLoc(embed), activations(c.hiddenSize),
                                ids, table);
  for (int64_t i = 0; i < c.numHiddenLayers; ++i) {
    Value newCache;
    h = block(h, i, c.isMoeLayer(i), 0, caches.empty() ? Value() : caches[i],
              pastLen, &newCache);
    if (newCaches)
      newCaches->push_back(newCache);
  }
  return rmsNorm(h, "model.norm.weight", c.rmsNormEps, ParamRole::Norm, 0);
}

Value ModelBuilder::lmHead(Value normed, const std::string &weightName,
                           int64_t mtp) {
  // The MTP heads share the main head, which is itself the embedding when
  // tied: a tie names the original parameter, never another tie.
  std::string tied;
  if (c.tieWordEmbeddings)
    tied = "model.embed_tokens.weight";
  else if (mtp)
    tied = "lm_head.weight";
  Value w = param(weightName, {c.vocabSize, c.hiddenSize}, ParamRole::Head, mtp,
                  "", tied);
  // Logits at the positions `normed` has (all of them, or the last one).
  auto hidden = cast<RankedTensorType>(normed.getType());
  return LmHeadOp::create(
      b, nameLoc(weightName),
      tensor({hidden.getDimSize(0), hidden.getDimSize(1), c.vocabSize}), normed, w);
}

func::FuncOp ModelBuilder::beginFunction(StringRef name, StringRef kind,
                                         FunctionType type) {
  b.setInsertionPointToEnd(module.getBody());
  auto func = func::FuncOp::create(b, nameLoc(name.str()), name, type);
  func->setAttr("dsv3.entry", b.getStringAttr(kind));
  b.setInsertionPointToStart(func.addEntryBlock());
  return func;
}

void ModelBuilder::buildForward() {
  auto func = beginFunction("forward", "forward",
                            b.getFunctionType({idsType()},
                                              {activations(c.vocabSize)}));
  Value h = trunk(func.getArgument(0));
  Value logits = lmHead(h, "lm_head.weight", 0);
  func::ReturnOp::create(b, b.getUnknownLoc(), logits);
}

SmallVector<Value> ModelBuilder::mtpLogits(Value ids, Value h) {
  // Multi-token prediction (SEMANTICS.md 7): depth k reads the previous
  // depth's normed output and the embeddings k tokens ahead.
  SmallVector<Value> logits;
  int64_t D = c.numNextnPredictLayers;
  if (D == 0)
    return logits;
  Value table = param("model.embed_tokens.weight", {c.vocabSize, c.hiddenSize},
                      ParamRole::Embedding);
  Value embeds = EmbeddingOp::create(b, nameLoc("model.embed_tokens.weight"),
                                     activations(c.hiddenSize), ids, table);
  Value prev = h;
  for (int64_t k = 1; k <= D; ++k) {
    int64_t layer = c.numHiddenLayers + k - 1;
    std::string prefix = fmt::format("model.layers.{}", layer);
    // The checkpoint's copy of the embedding, tied to the main one.
    param(prefix + ".embed_tokens.weight", {c.vocabSize, c.hiddenSize},
          ParamRole::Embedding, k, "", "model.embed_tokens.weight");
    Value enorm = param(prefix + ".enorm.weight", {c.hiddenSize},
                        ParamRole::MtpProjection, k);
    Value hnorm = param(prefix + ".hnorm.weight", {c.hiddenSize},
                        ParamRole::MtpProjection, k);
    Value eh = param(prefix + ".eh_proj.weight", {c.hiddenSize, 2 * c.hiddenSize},
                     ParamRole::MtpProjection, k);
    // Depth k has seq - k rows: row i joins hidden row i of depth k-1 with
    // the embedding of token i + k of the full sequence.
    Value m = MtpOp::create(b, nameLoc(prefix), activations(c.hiddenSize), prev,
                            embeds, enorm, hnorm, eh, b.getI64IntegerAttr(k),
                            b.getF64FloatAttr(c.rmsNormEps));
    Value g = block(m, layer, /*moe=*/true, k);
    prev = rmsNorm(g, prefix + ".shared_head.norm.weight", c.rmsNormEps,
                   ParamRole::Norm, k);
    logits.push_back(lmHead(prev, prefix + ".shared_head.head.weight", k));
  }
  return logits;
}

Value ModelBuilder::lossValue(Value ids, Value *mainLoss, Value *mtpLoss) {
  auto scalar = tensor({}, b.getF32Type());
  Value h = trunk(ids);
  Value logits = lmHead(h, "lm_head.weight", 0);
  Location loc = nameLoc("loss");
  Value loss = CrossEntropyOp::create(b, loc, scalar, logits, ids,
                                      b.getI64IntegerAttr(1),
                                      b.getF64FloatAttr(1.0),
                                      b.getI64IntegerAttr(-100));
  if (mainLoss)
    *mainLoss = loss;
  // L = L_main + lambda / D * sum_k L_k; depth k's row i targets token
  // i + k + 1.
  int64_t D = c.numNextnPredictLayers;
  Value mtpTotal;
  for (auto [i, depthLogits] : llvm::enumerate(mtpLogits(ids, h))) {
    int64_t k = int64_t(i) + 1;
    Value depthLoss = CrossEntropyOp::create(
        b, nameLoc(fmt::format("model.layers.{}", c.numHiddenLayers + k - 1)),
        scalar, depthLogits, ids, b.getI64IntegerAttr(k + 1),
        b.getF64FloatAttr(opts.mtpLambda / D), b.getI64IntegerAttr(-100));
    mtpTotal = mtpTotal ? Value(AddOp::create(b, loc, mtpTotal, depthLoss))
                        : depthLoss;
  }
  if (mtpTotal)
    loss = AddOp::create(b, loc, loss, mtpTotal);
  if (mtpLoss)
    *mtpLoss = mtpTotal ? mtpTotal
                        : Value(FillOp::create(b, loc, scalar, b.getF64FloatAttr(0.0)));
  return loss;
}

void ModelBuilder::buildLoss() {
  auto scalar = tensor({}, b.getF32Type());
  auto func = beginFunction("loss", "loss",
                            b.getFunctionType({idsType()}, {scalar}));
  Value loss = lossValue(func.getArgument(0));
  func::ReturnOp::create(b, b.getUnknownLoc(), loss);
}

void ModelBuilder::buildTrainLoss() {
  auto scalar = tensor({}, b.getF32Type());
  // Results: the loss trained on, then its parts (main cross entropy,
  // weighted MTP losses, balance losses) for the training metrics.
  auto func = beginFunction(
      "train_loss", "train_loss",
      b.getFunctionType({idsType()}, {scalar, scalar, scalar, scalar}));
  func->setAttr("dsv3.loss_parts",
                b.getStrArrayAttr({"loss_main", "loss_mtp", "loss_balance"}));
  routes.clear();
  Value mainLoss, mtpLoss, balanceTotal;
  Value loss = lossValue(func.getArgument(0), &mainLoss, &mtpLoss);
  // One balance term per routed layer (the MTP block's too).
  for (MoeRouteOp route : routes) {
    bool sigmoid = route.getScoringFunc() == mlir::dsv3::ScoringFunc::Sigmoid;
    Value balance = MoeBalanceLossOp::create(
        b, route.getLoc(), scalar, route.getHidden(), route.getGateWeight(),
        route.getIndices(), b.getF64FloatAttr(opts.balanceAlpha),
        sigmoid ? b.getUnitAttr() : UnitAttr(), route.getScoringFuncAttr());
    balanceTotal = balanceTotal
                       ? Value(AddOp::create(b, route.getLoc(), balanceTotal, balance))
                       : balance;
  }
  // A model without routed layers (every layer dense) has no balance term:
  // its part is reported as 0 and nothing is added to the loss.
  if (balanceTotal)
    loss = AddOp::create(b, func.getLoc(), loss, balanceTotal);
  else
    balanceTotal = FillOp::create(b, func.getLoc(), scalar, b.getF64FloatAttr(0.0));
  func::ReturnOp::create(b, b.getUnknownLoc(),
                         ValueRange{loss, mainLoss, mtpLoss, balanceTotal});
}

void ModelBuilder::buildForwardMtp() {
  SmallVector<Type> results(c.numNextnPredictLayers, activations(c.vocabSize));
  auto func = beginFunction("forward_mtp", "forward_mtp",
                            b.getFunctionType({idsType()}, results));
  Value ids = func.getArgument(0);
  SmallVector<Value> logits = mtpLogits(ids, trunk(ids));
  func::ReturnOp::create(b, b.getUnknownLoc(), logits);
}

void ModelBuilder::buildDecode() {
  // past_len: one length per sequence (continuous batching).
  SmallVector<Type> inputs = {idsType(), tensor({kDyn}, b.getI64Type())};
  SmallVector<Type> results = {activations(c.vocabSize)};
  for (int64_t i = 0; i < c.numHiddenLayers; ++i) {
    inputs.push_back(cacheType());
    results.push_back(cacheType());
  }
  auto func = beginFunction("decode", "decode",
                            b.getFunctionType(inputs, results));
  SmallVector<Value> newCaches;
  Value h = trunk(func.getArgument(0), func.getArgument(1),
                  func.getArguments().drop_front(2), &newCaches);
  SmallVector<Value> rets = {lmHead(h, "lm_head.weight", 0)};
  rets.append(newCaches);
  func::ReturnOp::create(b, b.getUnknownLoc(), rets);
}

void ModelBuilder::buildPrefill() {
  // The decode entry with the logits of each sequence's last position only
  // (prompt chunks: generation samples from the last one).
  SmallVector<Type> inputs = {idsType(), tensor({kDyn}, b.getI64Type())};
  SmallVector<Type> results = {tensor({kDyn, 1, c.vocabSize})};
  for (int64_t i = 0; i < c.numHiddenLayers; ++i) {
    inputs.push_back(cacheType());
    results.push_back(cacheType());
  }
  auto func = beginFunction("prefill", "prefill", b.getFunctionType(inputs, results));
  SmallVector<Value> newCaches;
  Value h = trunk(func.getArgument(0), func.getArgument(1),
                  func.getArguments().drop_front(2), &newCaches);
  auto hidden = cast<RankedTensorType>(h.getType());
  Value last = LastTokenOp::create(
      b, nameLoc("model.norm.weight"),
      RankedTensorType::get({kDyn, 1, hidden.getDimSize(2)}, hidden.getElementType()), h);
  SmallVector<Value> rets = {lmHead(last, "lm_head.weight", 0)};
  rets.append(newCaches);
  func::ReturnOp::create(b, b.getUnknownLoc(), rets);
}

OwningOpRef<ModuleOp> ModelBuilder::build() {
  ctx.loadDialect<Dsv3Dialect, func::FuncDialect>();
  OwningOpRef<ModuleOp> owned = ModuleOp::create(nameLoc(c.source));
  module = *owned;
  module->setAttr("dsv3.model_type", b.getStringAttr(c.modelType));
  // The checkpoint's FP8 block quantization (quantization_config): its
  // e4m3 weights come with <name>_scale_inv blocks of this size.
  if (c.fp8)
    module->setAttr("dsv3.checkpoint_fp8_block",
                    b.getDenseI64ArrayAttr({c.fp8->blockRows, c.fp8->blockCols}));
  buildForward();
  buildLoss();
  buildDecode();
  buildPrefill();
  if (c.numNextnPredictLayers > 0)
    buildForwardMtp();
  if (opts.balanceAlpha > 0 && c.nRoutedExperts > 0)
    buildTrainLoss();
  return owned;
}

} // namespace

OwningOpRef<ModuleOp> buildModelModule(MLIRContext &context,
                                       const ModelConfig &config,
                                       const BuildOptions &options) {
  return ModelBuilder(context, config, options).build();
}

} // namespace dsv3
