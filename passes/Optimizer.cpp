//===- Optimizer.cpp - the dsv3-optimizer pass ----------------------------===//
#include "passes/Passes.h"

#include "dialects/Dsv3/IR/Dsv3Ops.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/Builders.h"

namespace mlir::dsv3 {
#define GEN_PASS_DEF_DSV3OPTIMIZERPASS
#include "passes/Passes.h.inc"

namespace {
struct OptimizerPass : impl::Dsv3OptimizerPassBase<OptimizerPass> {
  using Base::Base;

  /// Declares (once, right after `after`) the moment `prefix.<param>` of
  /// `param`, of element type `element`; `after` becomes the declaration.
  FlatSymbolRefAttr declareState(ModuleOp module, ParamOp param, Type element,
                                 StringRef prefix, Operation *&after) {
    std::string name = (prefix + "." + param.getSymName()).str();
    if (Operation *existing = SymbolTable::lookupSymbolIn(module, name)) {
      after = existing;
    } else {
      OpBuilder b(param);
      b.setInsertionPointAfter(after);
      auto type = RankedTensorType::get(param.getTensorType().getShape(), element);
      StringAttr stacked;
      if (auto tpl = param.getStackedFrom())
        stacked = b.getStringAttr((prefix + "." + *tpl).str());
      after = ParamOp::create(b, param.getLoc(), b.getStringAttr(name),
                      TypeAttr::get(type),
                      ParamRoleAttr::get(b.getContext(), ParamRole::OptimizerState),
                      stacked, FlatSymbolRefAttr(),
                      param.getMtpDepth() ? b.getI64IntegerAttr(*param.getMtpDepth())
                                          : IntegerAttr(),
                      /*sharded_over=*/IntegerAttr(), /*placement=*/DenseI64ArrayAttr(),
        /*scales=*/FlatSymbolRefAttr());
    }
    return FlatSymbolRefAttr::get(module.getContext(), name);
  }

  void runOnOperation() override {
    ModuleOp module = getOperation();
    if (stateType != "f32" && stateType != "bf16") {
      module.emitError() << "dsv3-optimizer: state-type must be f32 or bf16, not '"
                         << stateType << "'";
      return signalPassFailure();
    }
    // Train on the loss with the balance terms when the model has one.
    func::FuncOp grads, trainGrads;
    for (auto f : module.getOps<func::FuncOp>()) {
      auto kind = f->getAttrOfType<StringAttr>("dsv3.entry");
      if (kind && kind.getValue() == "gradients")
        grads = f;
      if (kind && kind.getValue() == "train_gradients")
        trainGrads = f;
    }
    if (trainGrads)
      grads = trainGrads;
    if (!grads) {
      module.emitError() << "dsv3-optimizer needs the gradients entry (run "
                            "dsv3-autodiff first)";
      return signalPassFailure();
    }
    auto names = grads->getAttrOfType<ArrayAttr>("dsv3.grad_params");
    auto func = cast<func::FuncOp>(grads->clone());
    OpBuilder mb(module.getContext());
    func.setName("train_step");
    func->setAttr("dsv3.entry", mb.getStringAttr("train_step"));
    func->removeAttr("dsv3.grad_params");
    module.getBody()->getOperations().insertAfter(grads->getIterator(), func);

    Block &body = func.front();
    Value step = body.addArgument(mb.getI64Type(), func.getLoc());
    auto scalar = RankedTensorType::get({}, mb.getF32Type());
    Value lr = body.addArgument(scalar, func.getLoc());
    auto ret = cast<func::ReturnOp>(body.getTerminator());
    OpBuilder b(ret);
    Location loc = ret.getLoc();
    SmallVector<Value> gradients(
        ret.getOperands().drop_front().take_front(names.size()));
    SmallVector<Value> parts(ret.getOperands().drop_front(1 + names.size()));
    Value norm = GlobalNormOp::create(b, loc, scalar, gradients, /*plus_squares=*/Value(),
                                      /*squared=*/false);
    SymbolTable symbols(module);
    Type element = stateType == "bf16" ? Type(b.getBF16Type()) : Type(b.getF32Type());
    for (auto [nameAttr, g] : llvm::zip(names, gradients)) {
      auto sym = cast<FlatSymbolRefAttr>(nameAttr);
      auto param = symbols.lookup<ParamOp>(sym.getValue());
      Operation *after = param;
      FlatSymbolRefAttr m =
          declareState(module, param, element, "optimizer.exp_avg", after);
      FlatSymbolRefAttr v =
          declareState(module, param, element, "optimizer.exp_avg_sq", after);
      bool decay = param.getTensorType().getRank() >= 2;
      AdamwOp::create(b, loc, sym, m, v, g, step, lr, norm,
                      b.getF64FloatAttr(beta1), b.getF64FloatAttr(beta2),
                      b.getF64FloatAttr(eps), b.getF64FloatAttr(weightDecay),
                      decay ? b.getUnitAttr() : UnitAttr(),
                      b.getF64FloatAttr(maxGradNorm));
    }
    // Aux-loss-free balancing: each routed layer's bias moves toward the
    // mean load, from this batch's expert counts.
    SmallVector<Value> results = {ret.getOperand(0), norm};
    SmallVector<Attribute> countParams;
    for (auto route : body.getOps<MoeRouteOp>()) {
      Value bias = route.getCorrectionBias();
      auto get = bias ? bias.getDefiningOp<GetParamOp>() : GetParamOp();
      if (!get)
        continue;
      for (Operation *user : route.getIndices().getUsers()) {
        auto dispatch = dyn_cast<MoeDispatchOp>(user);
        if (!dispatch)
          continue;
        if (biasUpdateRate > 0)
          ExpertBiasUpdateOp::create(b, loc, get.getParamAttr(),
                                     dispatch.getCounts(),
                                     b.getF64FloatAttr(biasUpdateRate));
        results.push_back(dispatch.getCounts());
        countParams.push_back(get.getParamAttr());
        break;
      }
    }
    // The loss parts last (their names are in dsv3.loss_parts).
    results.append(parts.begin(), parts.end());
    func::ReturnOp::create(b, loc, results);
    ret.erase();
    SmallVector<Type> types;
    for (Value r : results)
      types.push_back(r.getType());
    func.setFunctionType(b.getFunctionType(body.getArgumentTypes(), types));
    func->setAttr("dsv3.expert_count_params", b.getArrayAttr(countParams));
  }
};
} // namespace
} // namespace mlir::dsv3
