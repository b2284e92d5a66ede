//===- LowerToKernels.cpp - the dsv3-lower-to-kernels pass ----------------===//
#include "passes/Passes.h"

#include "dialects/Dsv3/IR/Dsv3Ops.h"
#include "dialects/Dsv3K/IR/Dsv3KOps.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/Builders.h"
#include "mlir/IR/IRMapping.h"
#include "llvm/ADT/TypeSwitch.h"

#include <cmath>

namespace mlir::dsv3 {
#define GEN_PASS_DEF_DSV3LOWERTOKERNELSPASS
#include "passes/Passes.h.inc"

namespace {
using Shape = SmallVector<int64_t>;

Type toBuffer(Type t) {
  if (auto tensor = dyn_cast<RankedTensorType>(t))
    return MemRefType::get(tensor.getShape(), tensor.getElementType());
  return t;
}

int64_t product(ArrayRef<int64_t> s) {
  int64_t n = 1;
  for (int64_t d : s)
    n *= d;
  return n;
}

/// The shape of every result of `op` when its operands have the shapes
/// `in` (their shapes at the planning maxima): the op's static result
/// extents, and for each dynamic extent the rule of the op.
SmallVector<Shape> maxResultShapes(Operation *op, ArrayRef<Shape> in, int64_t maxBatch) {
  auto fill = [&](Type t, Shape dyn) {
    auto rt = cast<RankedTensorType>(t);
    Shape s(rt.getShape());
    for (size_t i = 0; i < s.size(); ++i)
      if (ShapedType::isDynamic(s[i]))
        s[i] = i < dyn.size() ? dyn[i] : 1;
    return s;
  };
  auto lastReplaced = [](Shape s, int64_t last) {
    s.back() = last;
    return s;
  };
  Shape none;
  return TypeSwitch<Operation *, SmallVector<Shape>>(op)
      .Case([&](EmbeddingOp) {
        Shape s = in[0];
        s.push_back(0);
        return SmallVector<Shape>{fill(op->getResult(0).getType(), s)};
      })
      .Case<LinearOp, LmHeadOp>([&](auto) {
        return SmallVector<Shape>{fill(op->getResult(0).getType(),
                                       lastReplaced(in[0], 0))};
      })
      .Case([&](LatentAttentionOp) {
        // The result and the saved output like the hidden state; the saved
        // log-sum-exp [batch, heads, seq].
        SmallVector<Shape> out;
        for (Value r : op->getResults())
          out.push_back(fill(r.getType(), out.size() == 2
                                              ? Shape{in[0][0], 0, in[0][1]}
                                              : in[0]));
        return out;
      })
      .Case([&](MoeRouteOp) {
        Shape s = {in[0][0], in[0][1], 0};
        return SmallVector<Shape>{fill(op->getResult(0).getType(), s),
                                  fill(op->getResult(1).getType(), s)};
      })
      .Case([&](MoeDispatchOp) {
        int64_t rows = product(in[1]);
        return SmallVector<Shape>{fill(op->getResult(0).getType(), {rows, 0}),
                                  fill(op->getResult(1).getType(), none),
                                  fill(op->getResult(2).getType(), {rows})};
      })
      .Case([&](LastTokenOp) {
        // One row per sequence: at most max-batch of them, and no more than
        // the tokens (a token budget plans activations as [1, tokens]).
        int64_t rows = std::min(maxBatch, in[0][0] * in[0][1]);
        return SmallVector<Shape>{fill(op->getResult(0).getType(), {rows, 1, 0})};
      })
      .Case([&](ExpertDispatchExchangeOp ex) {
        // A rank may receive every rank's rows (all routed to its experts),
        // unless a capacity bounds it.
        int64_t rows = in[0][0] * int64_t(ex.getRanks());
        if (std::optional<APFloat> cap = ex.getCapacity())
          rows = std::min(rows, int64_t(std::ceil(cap->convertToDouble() * double(in[0][0]))));
        return SmallVector<Shape>{fill(op->getResult(0).getType(), {rows, 0}),
                                  fill(op->getResult(1).getType(), none),
                                  fill(op->getResult(2).getType(), none)};
      })
      .Case([&](ExpertCombineExchangeOp ex) {
        // Back to the rows this rank dispatched: its input holds the
        // received rows' maximum, the dispatch's factor (ranks, or the
        // capacity) times that.
        double factor = double(ex.getRanks());
        if (auto dispatch = ex.getLayout().getDefiningOp<ExpertDispatchExchangeOp>())
          if (std::optional<APFloat> cap = dispatch.getCapacity())
            factor = std::min(factor, cap->convertToDouble());
        int64_t rows = std::max<int64_t>(1, int64_t(double(in[0][0]) / factor));
        return SmallVector<Shape>{fill(op->getResult(0).getType(), {rows, 0})};
      })
      .Case([&](ExpertGroupedMatmulOp) {
        return SmallVector<Shape>{
            fill(op->getResult(0).getType(), {in[0][0], 0})};
      })
      .Case([&](MoeCombineOp) {
        return SmallVector<Shape>{
            fill(op->getResult(0).getType(), {in[2][0], in[2][1], 0})};
      })
      .Case([&](MtpOp mtp) {
        int64_t rows = std::max<int64_t>(in[1][1] - int64_t(mtp.getDepth()), 1);
        return SmallVector<Shape>{
            fill(op->getResult(0).getType(), {in[1][0], rows, 0})};
      })
      .Case([&](VjpOp vjp) {
        // Each gradient has the shape of its primal.
        SmallVector<Shape> out;
        for (auto [i, index] : llvm::enumerate(vjp.getGradOperands()))
          out.push_back(in[index]);
        return out;
      })
      .Case([&](FillOp) {
        return SmallVector<Shape>{fill(op->getResult(0).getType(), none)};
      })
      .Default([&](Operation *) {
        // Elementwise ops, norms, rope, attention: results shaped like the
        // first operand.
        SmallVector<Shape> out;
        for (Value r : op->getResults())
          out.push_back(fill(r.getType(), in.empty() ? none : in[0]));
        return out;
      });
}

/// The kernel of `op` and its parameters: the op's inherent attributes
/// (properties). A vjp runs the "<forward>_vjp" kernel with the forward op's
/// attributes plus which operands get gradients and how many primals there
/// are; a fill also gets its static shape.
DictionaryAttr kernelParams(Operation *op);
std::pair<std::string, DictionaryAttr> kernelOf(Operation *op) {
  Builder b(op->getContext());
  if (auto vjp = dyn_cast<VjpOp>(op)) {
    SmallVector<NamedAttribute> attrs(vjp.getParams().begin(),
                                      vjp.getParams().end());
    attrs.push_back(b.getNamedAttr("grad_operands", vjp.getGradOperandsAttr()));
    attrs.push_back(b.getNamedAttr(
        "num_primals", b.getI64IntegerAttr(vjp.getPrimals().size())));
    return {vjp.getForward().str() + "_vjp", b.getDictionaryAttr(attrs)};
  }
  DictionaryAttr params = kernelParams(op);
  if (auto fill = dyn_cast<FillOp>(op)) {
    SmallVector<NamedAttribute> attrs(params.begin(), params.end());
    attrs.push_back(b.getNamedAttr(
        "shape", b.getDenseI64ArrayAttr(
                     cast<RankedTensorType>(fill.getType()).getShape())));
    params = b.getDictionaryAttr(attrs);
  }
  return {op->getName().stripDialect().str(), params};
}

/// The inherent attributes (properties) of `op`.
DictionaryAttr kernelParams(Operation *op) {
  Attribute props = op->getPropertiesAsAttribute();
  SmallVector<NamedAttribute> attrs;
  if (auto dict = dyn_cast_or_null<DictionaryAttr>(props))
    attrs.append(dict.begin(), dict.end());
  for (NamedAttribute a : op->getDiscardableAttrs())
    attrs.push_back(a);
  return DictionaryAttr::get(op->getContext(), attrs);
}

/// Whether `v` is the latent cache operand of a decode op.
bool isDecodeCache(Value v) {
  return llvm::any_of(v.getUsers(), [&](Operation *user) {
    auto dec = dyn_cast<LatentAttentionDecodeOp>(user);
    return dec && dec.getCache() == v;
  });
}

struct LowerToKernelsPass
    : impl::Dsv3LowerToKernelsPassBase<LowerToKernelsPass> {
  using Base::Base;

  LogicalResult lowerFunction(func::FuncOp func) {
    OpBuilder b(func);
    SmallVector<Type> inputs, results;
    for (Type t : func.getArgumentTypes())
      inputs.push_back(toBuffer(t));
    for (Type t : func.getResultTypes())
      results.push_back(toBuffer(t));
    auto newFunc = func::FuncOp::create(b, func.getLoc(), func.getName(),
                                        b.getFunctionType(inputs, results));
    newFunc->setAttrs(func->getAttrs());
    newFunc.setFunctionType(b.getFunctionType(inputs, results));
    Block *entry = newFunc.addEntryBlock();
    b.setInsertionPointToStart(entry);

    IRMapping map;
    DenseMap<Value, Shape> maxShape;
    // dsv3.fp8_weight results: the e4m3 buffer and its scales, handed to
    // the kernels of its users (never materialized in the weight's dtype).
    DenseMap<Value, std::pair<Value, Value>> fp8Weights;
    DenseI64ArrayAttr fp8Block;
    for (auto [oldArg, newArg] :
         llvm::zip(func.getArguments(), entry->getArguments())) {
      map.map(oldArg, newArg);
      if (auto rt = dyn_cast<RankedTensorType>(oldArg.getType())) {
        Shape s(rt.getShape());
        for (size_t i = 0; i < s.size(); ++i)
          if (ShapedType::isDynamic(s[i]))
            s[i] = i == 0 ? maxBatch : maxSeq;
        // Arguments over [batch, seq] (ids, labels, activations) bound every
        // activation (they are shaped from them); with a token budget they
        // are planned as one row of maxTokens, which holds any batch x seq
        // <= maxTokens (buffers are checked by element count). The decode
        // caches stay per sequence: [maxBatch, maxSeq, width].
        if (maxTokens > 0 && s.size() >= 2 && rt.isDynamicDim(0) &&
            rt.isDynamicDim(1) && !isDecodeCache(oldArg)) {
          s[0] = 1;
          s[1] = std::min(maxTokens.getValue(), maxBatch * maxSeq);
        }
        maxShape[oldArg] = s;
      }
    }

    for (Operation &op : func.getBody().front()) {
      if (auto ret = dyn_cast<func::ReturnOp>(op)) {
        SmallVector<Value> operands;
        for (Value v : ret.getOperands())
          operands.push_back(map.lookup(v));
        func::ReturnOp::create(b, ret.getLoc(), operands);
        continue;
      }
      if (auto get = dyn_cast<GetParamOp>(op)) {
        Value buf = dsv3k::ParamOp::create(b, get.getLoc(),
                                           toBuffer(get.getType()),
                                           get.getParamAttr());
        map.map(get.getResult(), buf);
        maxShape[get.getResult()] =
            Shape(cast<RankedTensorType>(get.getType()).getShape());
        continue;
      }
      if (auto fp8 = dyn_cast<Fp8WeightOp>(op)) {
        fp8Weights[fp8.getResult()] = {map.lookup(fp8.getQuantized()),
                                       map.lookup(fp8.getScales())};
        if (fp8Block && fp8Block != fp8.getBlockAttr())
          return fp8.emitOpError() << "FP8 weights of one module must share a block size";
        fp8Block = fp8.getBlockAttr();
        maxShape[fp8.getResult()] = maxShape.lookup(fp8.getQuantized());
        continue;
      }
      // In-place updates of parameters (optimizer, balancing): the launch
      // writes the parameter buffers it reads.
      auto paramBuffer = [&](FlatSymbolRefAttr sym) -> Value {
        auto param = SymbolTable::lookupNearestSymbolFrom<ParamOp>(func, sym);
        return dsv3k::ParamOp::create(b, op.getLoc(),
                                      toBuffer(param.getType()), sym);
      };
      if (auto adam = dyn_cast<AdamwOp>(op)) {
        Value p = paramBuffer(adam.getParamAttr());
        Value m = paramBuffer(adam.getExpAvgAttr());
        Value v = paramBuffer(adam.getExpAvgSqAttr());
        SmallVector<Value> ins = {p, map.lookup(adam.getGrad()), m, v,
                                  map.lookup(adam.getStep()),
                                  map.lookup(adam.getLr()),
                                  map.lookup(adam.getGradNorm())};
        // The kernels take the moments' element type from the launch.
        NamedAttrList params(kernelParams(&op));
        auto moment = SymbolTable::lookupNearestSymbolFrom<ParamOp>(
            func, adam.getExpAvgAttr());
        if (moment.getTensorType().getElementType().isBF16())
          params.set("moments_bf16", b.getUnitAttr());
        dsv3k::LaunchOp::create(b, op.getLoc(), b.getStringAttr("adamw"), ins,
                                ValueRange{p, m, v},
                                params.getDictionary(b.getContext()));
        ++numLaunches;
        continue;
      }
      if (auto update = dyn_cast<ExpertBiasUpdateOp>(op)) {
        Value bias = paramBuffer(update.getBiasAttr());
        dsv3k::LaunchOp::create(b, op.getLoc(),
                                b.getStringAttr("expert_bias_update"),
                                ValueRange{bias, map.lookup(update.getCounts())},
                                ValueRange{bias}, kernelParams(&op));
        ++numLaunches;
        continue;
      }
      if (op.getDialect() != op.getContext()->getLoadedDialect<Dsv3Dialect>())
        return op.emitOpError() << "cannot be lowered to a kernel launch";

      SmallVector<Value> ins;
      SmallVector<Shape> inShapes;
      // An FP8 weight operand is its e4m3 buffer; its scales follow the
      // operands, and `fp8_scales[i]` is the input index of operand i's
      // scales (-1: not FP8).
      SmallVector<int64_t> fp8Scales;
      SmallVector<Value> scaleIns;
      for (Value v : op.getOperands()) {
        auto it = fp8Weights.find(v);
        if (it == fp8Weights.end()) {
          ins.push_back(map.lookup(v));
          fp8Scales.push_back(-1);
        } else {
          ins.push_back(it->second.first);
          fp8Scales.push_back(int64_t(op.getNumOperands() + scaleIns.size()));
          scaleIns.push_back(it->second.second);
        }
        inShapes.push_back(maxShape.lookup(v));
      }
      ins.append(scaleIns.begin(), scaleIns.end());
      SmallVector<Shape> outShapes = maxResultShapes(&op, inShapes, maxBatch);
      SmallVector<Value> outs;
      for (auto [i, r] : llvm::enumerate(op.getResults())) {
        // The decode cache is updated in place: its new value is the
        // buffer of the cache operand.
        if (auto dec = dyn_cast<LatentAttentionDecodeOp>(op);
            dec && r == dec.getNewCache()) {
          outs.push_back(map.lookup(dec.getCache()));
        } else {
          auto alloc = dsv3k::AllocOp::create(
              b, op.getLoc(), toBuffer(r.getType()),
              b.getDenseI64ArrayAttr(outShapes[i]), IntegerAttr(),
              IntegerAttr());
          outs.push_back(alloc);
          ++numAllocs;
        }
        map.map(r, outs.back());
        maxShape[r] = outShapes[i];
      }
      auto [kernel, params] = kernelOf(&op);
      if (!scaleIns.empty()) {
        SmallVector<NamedAttribute> attrs(params.begin(), params.end());
        attrs.push_back(b.getNamedAttr("fp8_scales", b.getDenseI64ArrayAttr(fp8Scales)));
        attrs.push_back(b.getNamedAttr("fp8_block", fp8Block));
        params = b.getDictionaryAttr(attrs);
      }
      dsv3k::LaunchOp::create(b, op.getLoc(), b.getStringAttr(kernel), ins,
                              outs, params);
      ++numLaunches;
    }
    if (maxTokens > 0)
      newFunc->setAttr("dsv3k.max_tokens",
                       b.getI64IntegerAttr(std::min(maxTokens.getValue(), maxBatch * maxSeq)));
    func.erase();
    return success();
  }

  void runOnOperation() override {
    if (maxTokens < 0) {
      getOperation().emitError() << "dsv3-lower-to-kernels needs max-tokens >= 0, got "
                                 << maxTokens;
      return signalPassFailure();
    }
    if (maxBatch < 1 || maxSeq < 2) {
      getOperation().emitError() << "dsv3-lower-to-kernels needs max-batch >= 1 "
                                    "and max-seq >= 2, got "
                                 << maxBatch << " and " << maxSeq;
      return signalPassFailure();
    }
    SmallVector<func::FuncOp> funcs(getOperation().getOps<func::FuncOp>());
    for (func::FuncOp func : funcs)
      if (func->hasAttr("dsv3.entry") && failed(lowerFunction(func)))
        return signalPassFailure();
  }
};
} // namespace
} // namespace mlir::dsv3
