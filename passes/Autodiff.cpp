//===- Autodiff.cpp - the dsv3-autodiff pass ------------------------------===//
#include "passes/Passes.h"

#include "dialects/Dsv3/IR/Dsv3Ops.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/Builders.h"

namespace mlir::dsv3 {
#define GEN_PASS_DEF_DSV3AUTODIFFPASS
#include "passes/Passes.h.inc"

namespace {
bool isFloatTensor(Type t) {
  auto rt = dyn_cast<RankedTensorType>(t);
  return rt && isa<FloatType>(rt.getElementType());
}

struct AutodiffPass : impl::Dsv3AutodiffPassBase<AutodiffPass> {
  using Base::Base;

  void runOnOperation() override {
    ModuleOp module = getOperation();
    // loss -> gradients (the oracle's loss); train_loss -> train_gradients
    // (with the balance losses), when the model has one.
    SmallVector<std::pair<func::FuncOp, StringRef>> todo;
    for (auto f : module.getOps<func::FuncOp>()) {
      auto kind = f->getAttrOfType<StringAttr>("dsv3.entry");
      if (kind && kind.getValue() == "loss")
        todo.push_back({f, "gradients"});
      else if (kind && kind.getValue() == "train_loss")
        todo.push_back({f, "train_gradients"});
    }
    if (todo.empty()) {
      module.emitError() << "dsv3-autodiff needs a function marked "
                            "dsv3.entry = \"loss\"";
      return signalPassFailure();
    }
    for (auto [f, name] : todo)
      if (failed(differentiate(module, f, name)))
        return signalPassFailure();
  }

  LogicalResult differentiate(ModuleOp module, func::FuncOp loss,
                              StringRef name) {
    auto func = cast<func::FuncOp>(loss->clone());
    func.setName(name);
    OpBuilder mb(module.getContext());
    func->setAttr("dsv3.entry", mb.getStringAttr(name));
    module.getBody()->getOperations().insertAfter(loss->getIterator(), func);

    Block &body = func.front();
    auto ret = cast<func::ReturnOp>(body.getTerminator());
    Value lossValue = ret.getOperand(0);
    OpBuilder b(ret);
    Location loc = ret.getLoc();
    DenseMap<Value, Value> grads;
    auto accumulate = [&](Value v, Value g) {
      if (!g)
        return;
      auto [it, inserted] = grads.try_emplace(v, g);
      if (!inserted)
        it->second = AddOp::create(b, loc, it->second, g);
    };
    accumulate(lossValue,
               FillOp::create(b, loc, lossValue.getType(), b.getF64FloatAttr(1.0)));

    SmallVector<Operation *> forward;
    for (Operation &op : body.without_terminator())
      forward.push_back(&op);
    for (Operation *op : llvm::reverse(forward)) {
      if (isa<GetParamOp>(op))
        continue;
      SmallVector<Value> cotangents;
      bool reached = false;
      for (Value r : op->getResults()) {
        if (!isFloatTensor(r.getType()))
          continue;
        Value g = grads.lookup(r);
        reached |= static_cast<bool>(g);
        cotangents.push_back(g);
      }
      if (!reached)
        continue;
      auto rule = dyn_cast<DifferentiableOpInterface>(op);
      if (!rule)
        return op->emitOpError() << "has no gradient rule, but its result "
                                    "reaches the loss";
      SmallVector<Value> operandGrads;
      if (failed(rule.buildGradient(b, cotangents, operandGrads)))
        return failure();
      SmallVector<unsigned> diff = rule.getDifferentiableOperands();
      for (auto [index, g] : llvm::zip(diff, operandGrads))
        accumulate(op->getOperand(index), g);
      ++numRules;
    }

    // One gradient per trainable parameter, summed over its reads; the
    // loss function's other results (the parts of the loss) follow.
    SmallVector<Value> results = {lossValue};
    SmallVector<Attribute> names;
    for (ParamOp param : module.getOps<ParamOp>()) {
      if (param.getRole() == ParamRole::RouterBias)
        continue;
      Value total;
      for (auto get : func.getOps<GetParamOp>()) {
        if (get.getParam() != param.getSymName())
          continue;
        Value g = grads.lookup(get.getResult());
        if (g)
          total = total ? Value(AddOp::create(b, loc, total, g)) : g;
      }
      if (!total)
        total = FillOp::create(b, loc, param.getType(), b.getF64FloatAttr(0.0));
      results.push_back(total);
      names.push_back(FlatSymbolRefAttr::get(param.getSymNameAttr()));
    }
    for (Value extra : ret.getOperands().drop_front())
      results.push_back(extra);
    func::ReturnOp::create(b, loc, results);
    ret.erase();
    SmallVector<Type> types;
    for (Value v : results)
      types.push_back(v.getType());
    func.setFunctionType(b.getFunctionType(func.getArgumentTypes(), types));
    func->setAttr("dsv3.grad_params", b.getArrayAttr(names));
    return success();
  }
};
} // namespace
} // namespace mlir::dsv3
