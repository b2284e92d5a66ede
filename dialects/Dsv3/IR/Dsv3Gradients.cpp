//===- Dsv3Gradients.cpp - gradient rules of the dsv3 ops -----------------===//
//
// The DifferentiableOpInterface implementations. Most ops use the default
// rule (one dsv3.vjp, whose kernel recomputes what it needs from the
// primals); dsv3.add passes its cotangent to both operands; the router
// differentiates its hidden state and gate weight, never the correction
// bias (it steers selection only and is trained by the balancing rule).
//
//===----------------------------------------------------------------------===//

#include "dialects/Dsv3/IR/Dsv3Ops.h"

#include "mlir/IR/Builders.h"

using namespace mlir;
using namespace mlir::dsv3;

#include "dialects/Dsv3/IR/Dsv3Interfaces.cpp.inc"

LogicalResult mlir::dsv3::buildVjpGradient(Operation *op, OpBuilder &b,
                                           ValueRange cotangents,
                                           SmallVectorImpl<Value> &operandGrads) {
  auto iface = cast<DifferentiableOpInterface>(op);
  SmallVector<unsigned> diff = iface.getDifferentiableOperands();
  if (llvm::none_of(cotangents, [](Value v) { return static_cast<bool>(v); })) {
    operandGrads.append(diff.size(), Value());
    return success();
  }
  SmallVector<Value> cts;
  unsigned next = 0;
  for (Value r : op->getResults()) {
    auto type = dyn_cast<RankedTensorType>(r.getType());
    if (!type || !isa<FloatType>(type.getElementType()))
      continue;
    Value ct = cotangents[next++];
    if (!ct) {
      if (!type.hasStaticShape())
        return op->emitOpError()
               << "result " << cast<OpResult>(r).getResultNumber()
               << " has no cotangent and a dynamic shape; its gradient rule "
                  "cannot build zeros";
      ct = FillOp::create(b, op->getLoc(), type, b.getF64FloatAttr(0.0));
    }
    cts.push_back(ct);
  }
  SmallVector<Type> gradTypes;
  SmallVector<int64_t> indices;
  for (unsigned i : diff) {
    gradTypes.push_back(op->getOperand(i).getType());
    indices.push_back(i);
  }
  auto params =
      dyn_cast_or_null<DictionaryAttr>(op->getPropertiesAsAttribute());
  auto vjp = VjpOp::create(
      b, op->getLoc(), gradTypes,
      b.getStringAttr(op->getName().stripDialect()), op->getOperands(), cts,
      b.getDenseI64ArrayAttr(indices),
      params ? params : b.getDictionaryAttr({}));
  operandGrads.append(vjp.getResults().begin(), vjp.getResults().end());
  return success();
}

LogicalResult AddOp::buildGradient(OpBuilder &, ValueRange cotangents,
                                   SmallVectorImpl<Value> &operandGrads) {
  operandGrads.push_back(cotangents[0]);
  operandGrads.push_back(cotangents[0]);
  return success();
}

SmallVector<unsigned> MoeRouteOp::getDifferentiableOperands() {
  return {0, 1}; // hidden, gate_weight; never correction_bias
}

LogicalResult FillOp::verify() {
  if (!cast<RankedTensorType>(getType()).hasStaticShape())
    return emitOpError() << "result must have a static shape, got "
                         << getType();
  return success();
}

LogicalResult VjpOp::verify() {
  ArrayRef<int64_t> indices = getGradOperands();
  if (indices.size() != getGrads().size())
    return emitOpError() << "lists " << indices.size()
                         << " gradient operands but has "
                         << getGrads().size() << " results";
  int64_t previous = -1;
  for (auto [i, index] : llvm::enumerate(indices)) {
    if (index <= previous || index >= int64_t(getPrimals().size()))
      return emitOpError() << "grad_operands must be increasing indices of "
                              "primals (0.."
                           << getPrimals().size() << "), got " << index;
    previous = index;
    if (getPrimals()[index].getType() != getGrads()[i].getType())
      return emitOpError() << "gradient " << i << " has type "
                           << getGrads()[i].getType() << " but primal "
                           << index << " has type "
                           << getPrimals()[index].getType();
  }
  if (getCotangents().empty())
    return emitOpError() << "needs at least one cotangent";
  return success();
}

//===----------------------------------------------------------------------===//
// Optimizer ops
//===----------------------------------------------------------------------===//

LogicalResult GlobalNormOp::verify() {
  if (getInputs().empty())
    return emitOpError() << "needs at least one tensor";
  return success();
}

/// The parameter `sym` must exist with `type` (when given).
static LogicalResult checkParam(Operation *op, SymbolTableCollection &symbols,
                                FlatSymbolRefAttr sym, StringRef what,
                                Type type, bool optimizerState) {
  auto param = symbols.lookupNearestSymbolFrom<ParamOp>(op, sym);
  if (!param)
    return op->emitOpError() << what << " @" << sym.getValue()
                             << " does not name a dsv3.param";
  if (type && param.getType() != type)
    return op->emitOpError() << what << " @" << sym.getValue() << " has type "
                             << param.getType() << ", expected " << type;
  if (optimizerState && param.getRole() != ParamRole::OptimizerState)
    return op->emitOpError() << what << " @" << sym.getValue()
                             << " must have role optimizer_state";
  return success();
}

LogicalResult AdamwOp::verifySymbolUses(SymbolTableCollection &symbols) {
  Type grad = getGrad().getType();
  // The moments are fp32, or bf16 (DeepSeek-V3 3.3.3), both alike: the
  // first moment's element type is the one both must have.
  Type element = Float32Type::get(getContext());
  if (auto m = symbols.lookupNearestSymbolFrom<ParamOp>(*this, getExpAvgAttr()))
    if (m.getTensorType().getElementType().isBF16())
      element = m.getTensorType().getElementType();
  auto state =
      RankedTensorType::get(cast<RankedTensorType>(grad).getShape(), element);
  return success(succeeded(checkParam(*this, symbols, getParamAttr(), "param",
                                      grad, false)) &&
                 succeeded(checkParam(*this, symbols, getExpAvgAttr(),
                                      "exp_avg", state, true)) &&
                 succeeded(checkParam(*this, symbols, getExpAvgSqAttr(),
                                      "exp_avg_sq", state, true)));
}

LogicalResult AdamwOp::verify() {
  double b1 = getBeta1().convertToDouble(), b2 = getBeta2().convertToDouble();
  if (!(b1 >= 0 && b1 < 1) || !(b2 >= 0 && b2 < 1))
    return emitOpError() << "betas (" << b1 << ", " << b2
                         << ") must lie in [0, 1)";
  if (!(getEps().convertToDouble() > 0))
    return emitOpError() << "eps (" << getEps().convertToDouble()
                         << ") must be positive";
  if (getWeightDecay().convertToDouble() < 0 ||
      getMaxGradNorm().convertToDouble() < 0)
    return emitOpError() << "weight_decay and max_grad_norm must be >= 0";
  return success();
}

LogicalResult
ExpertBiasUpdateOp::verifySymbolUses(SymbolTableCollection &symbols) {
  auto param = symbols.lookupNearestSymbolFrom<ParamOp>(*this, getBiasAttr());
  if (!param || param.getRole() != ParamRole::RouterBias)
    return emitOpError() << "@" << getBias()
                         << " must name a dsv3.param of role router_bias";
  int64_t E = cast<RankedTensorType>(getCounts().getType()).getDimSize(0);
  if (param.getTensorType().getShape() != ArrayRef<int64_t>{E})
    return emitOpError() << "counts of " << E << " experts for bias "
                         << param.getType();
  return success();
}
