//===- VerifyModel.cpp - the dsv3-verify-model pass -----------------------===//
#include "passes/Passes.h"

#include "dialects/Dsv3/IR/Dsv3Ops.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "llvm/ADT/StringMap.h"

namespace mlir::dsv3 {
#define GEN_PASS_DEF_DSV3VERIFYMODELPASS
#include "passes/Passes.h.inc"

namespace {
bool isIdTensor(Type t) {
  auto rt = dyn_cast<RankedTensorType>(t);
  return rt && rt.getRank() == 2 && rt.getElementType().isInteger();
}
/// One past length per sequence of the batch.
bool isPastLengths(Type t) {
  auto rt = dyn_cast<RankedTensorType>(t);
  return rt && rt.getRank() == 1 && rt.getElementType().isInteger(64);
}
bool isLogits(Type t) {
  auto rt = dyn_cast<RankedTensorType>(t);
  return rt && rt.getRank() == 3 && isa<FloatType>(rt.getElementType());
}

/// Checks the signature an entry function of kind `kind` must have.
LogicalResult verifyEntry(func::FuncOp func, StringRef kind) {
  FunctionType type = func.getFunctionType();
  auto fail = [&](StringRef rule) {
    return func.emitOpError() << "entry '" << kind << "' must be " << rule
                              << ", got " << type;
  };
  if (kind == "forward") {
    if (type.getNumInputs() != 1 || !isIdTensor(type.getInput(0)) ||
        type.getNumResults() != 1 || !isLogits(type.getResult(0)))
      return fail("(ids [batch, seq]) -> logits [batch, seq, vocab]");
    return success();
  }
  if (kind == "loss" || kind == "train_loss") {
    auto scalar = type.getNumResults() >= 1
                      ? dyn_cast<RankedTensorType>(type.getResult(0))
                      : RankedTensorType();
    bool ok = type.getNumInputs() == 1 && isIdTensor(type.getInput(0)) &&
              scalar && scalar.getRank() == 0 && scalar.getElementType().isF32();
    if (kind == "loss")
      ok = ok && type.getNumResults() == 1;
    for (Type t : type.getResults())
      ok = ok && t == type.getResult(0);
    if (!ok)
      return fail(kind == "loss" ? "(ids [batch, seq]) -> tensor<f32>"
                                 : "(ids [batch, seq]) -> (tensor<f32> loss, "
                                   "tensor<f32> parts...)");
    return success();
  }
  if (kind == "decode" || kind == "prefill") {
    unsigned caches = type.getNumInputs() >= 2 ? type.getNumInputs() - 2 : 0;
    bool ok = type.getNumInputs() >= 2 && isIdTensor(type.getInput(0)) &&
              isPastLengths(type.getInput(1)) &&
              type.getNumResults() == caches + 1 && isLogits(type.getResult(0));
    for (unsigned i = 0; ok && i < caches; ++i)
      ok = type.getInput(2 + i) == type.getResult(1 + i);
    if (kind == "prefill" && ok)
      ok = cast<RankedTensorType>(type.getResult(0)).getDimSize(1) == 1;
    if (!ok)
      return fail(kind == "decode"
                      ? "(ids, past_len : tensor<[batch] x i64>, cache...) -> (logits, "
                        "cache...) with each cache returned in its own type"
                      : "(ids, past_len : tensor<[batch] x i64>, cache...) -> (logits "
                        "[batch, 1, vocab], cache...) with each cache returned in its "
                        "own type");
    return success();
  }
  if (kind == "gradients" || kind == "train_gradients") {
    auto scalar = type.getNumResults() >= 1
                      ? dyn_cast<RankedTensorType>(type.getResult(0))
                      : RankedTensorType();
    if (type.getNumInputs() != 1 || !isIdTensor(type.getInput(0)) || !scalar ||
        scalar.getRank() != 0)
      return fail("(ids [batch, seq]) -> (loss, one gradient per trainable "
                  "parameter)");
    return success();
  }
  if (kind == "train_step") {
    bool ok = type.getNumInputs() == 3 && isIdTensor(type.getInput(0)) &&
              isPastLengths(type.getInput(1)) && type.getNumResults() >= 2;
    if (!ok)
      return fail("(ids, step : i64, lr : tensor<f32>) -> (loss, grad_norm, "
                  "expert counts...)");
    return success();
  }
  if (kind == "forward_mtp") {
    bool ok = type.getNumInputs() == 1 && isIdTensor(type.getInput(0)) &&
              type.getNumResults() >= 1;
    for (Type t : type.getResults())
      ok = ok && isLogits(t);
    if (!ok)
      return fail("(ids [batch, seq]) -> one logits tensor per MTP depth");
    return success();
  }
  return func.emitOpError() << "unknown entry kind '" << kind
                            << "' (expected forward, loss, train_loss, decode, "
                               "prefill, forward_mtp, gradients, train_gradients "
                               "or train_step)";
}

struct VerifyModelPass : impl::Dsv3VerifyModelPassBase<VerifyModelPass> {
  using Base::Base;
  void runOnOperation() override {
    ModuleOp module = getOperation();
    bool ok = true;

    // One checkpoint tensor, one parameter.
    llvm::StringMap<ParamOp> owner;
    auto bind = [&](StringRef name, ParamOp param) {
      auto [it, inserted] = owner.try_emplace(name, param);
      if (inserted)
        return;
      param.emitOpError() << "binds checkpoint tensor '" << name
                          << "', already bound by @"
                          << it->second.getSymName();
      ok = false;
    };
    for (ParamOp param : module.getOps<ParamOp>()) {
      ++numParams;
      if (param.getStackedFrom()) {
        for (int64_t e = 0, n = param.getTensorType().getDimSize(0); e < n; ++e)
          bind(param.getExpertTensorName(e), param);
        numCheckpointTensors += param.getTensorType().getDimSize(0);
      } else {
        bind(param.getSymName(), param);
        ++numCheckpointTensors;
      }
      if (!param.getTiedTo() && SymbolTable::symbolKnownUseEmpty(param, module))
        param.emitWarning() << "parameter @" << param.getSymName()
                            << " is never read";
    }

    // Routing and dispatch agree on the expert count.
    module.walk([&](MoeDispatchOp dispatch) {
      auto route = dispatch.getIndices().getDefiningOp<MoeRouteOp>();
      if (!route)
        return;
      int64_t routed =
          cast<RankedTensorType>(route.getGateWeight().getType()).getDimSize(0);
      if (routed != static_cast<int64_t>(dispatch.getNumExperts())) {
        dispatch.emitOpError()
            << "permutes tokens over " << dispatch.getNumExperts()
            << " experts, but its indices come from a dsv3.moe_route over "
            << routed;
        ok = false;
      }
    });

    for (auto func : module.getOps<func::FuncOp>()) {
      auto kind = func->getAttrOfType<StringAttr>("dsv3.entry");
      if (!kind)
        continue;
      ++numEntries;
      if (failed(verifyEntry(func, kind.getValue())))
        ok = false;
    }
    if (!ok)
      signalPassFailure();
    markAllAnalysesPreserved();
  }
};
} // namespace
} // namespace mlir::dsv3
