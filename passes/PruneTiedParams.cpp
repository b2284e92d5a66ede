//===- PruneTiedParams.cpp - the dsv3-prune-tied-params pass --------------===//
#include "passes/Passes.h"

#include "dialects/Dsv3/IR/Dsv3Ops.h"

namespace mlir::dsv3 {
#define GEN_PASS_DEF_DSV3PRUNETIEDPARAMSPASS
#include "passes/Passes.h.inc"

namespace {
struct PruneTiedParamsPass
    : impl::Dsv3PruneTiedParamsPassBase<PruneTiedParamsPass> {
  using Base::Base;
  void runOnOperation() override {
    ModuleOp module = getOperation();
    SmallVector<ParamOp> dead;
    for (ParamOp param : module.getOps<ParamOp>())
      if (param.getTiedTo() && SymbolTable::symbolKnownUseEmpty(param, module))
        dead.push_back(param);
    for (ParamOp param : dead)
      param.erase();
    numPruned += dead.size();
  }
};
} // namespace
} // namespace mlir::dsv3
