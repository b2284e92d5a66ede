//===- SaveAttentionState.cpp - the dsv3-save-attention-state pass ---------===//
//
// A latent attention's vjp rebuilds the attention's output and each query's
// log-sum-exp by running the forward attention again (the flash-style
// backward needs the log-sum-exp; dW_o and delta = dO . o need the output).
// Here the forward returns both and the vjp reads them: the backward's
// largest recomputation traded for two tensors kept from forward to
// backward.
//
//===----------------------------------------------------------------------===//
#include "passes/Passes.h"

#include "dialects/Dsv3/IR/Dsv3Ops.h"

#include "mlir/IR/Builders.h"

namespace mlir::dsv3 {
#define GEN_PASS_DEF_DSV3SAVEATTENTIONSTATEPASS
#include "passes/Passes.h.inc"

namespace {

struct SaveAttentionStatePass
    : impl::Dsv3SaveAttentionStatePassBase<SaveAttentionStatePass> {
  using Base::Base;

  void runOnOperation() override {
    SmallVector<std::pair<LatentAttentionOp, VjpOp>> pairs;
    getOperation().walk([&](VjpOp vjp) {
      if (vjp.getForward() != "latent_attention" ||
          vjp.getParams().contains("save_for_backward"))
        return;
      // The forward whose operands are exactly the vjp's primals, in the
      // vjp's block (autodiff clones the forward into the entry it builds
      // the backward of).
      if (vjp.getPrimals().empty())
        return;
      for (Operation *user : vjp.getPrimals()[0].getUsers()) {
        auto fwd = dyn_cast<LatentAttentionOp>(user);
        if (fwd && !fwd.getSaveForBackward() && fwd->getBlock() == vjp->getBlock() &&
            fwd->getOperands() == vjp.getPrimals()) {
          pairs.push_back({fwd, vjp});
          break;
        }
      }
    });
    for (auto [fwd, vjp] : pairs) {
      OpBuilder b(fwd);
      SmallVector<Type> types{fwd.getResult().getType()};
      llvm::append_range(types, fwd.getSavedTypes());
      OperationState state(fwd.getLoc(), fwd->getName());
      state.addOperands(fwd->getOperands());
      state.addTypes(types);
      state.addAttributes(fwd->getAttrs());
      auto saving = cast<LatentAttentionOp>(b.create(state));
      saving.setSaveForBackward(true);
      fwd.getResult().replaceAllUsesWith(saving.getResult());
      fwd.erase();

      b.setInsertionPoint(vjp);
      SmallVector<Value> primals(vjp.getPrimals());
      llvm::append_range(primals, saving.getSaved());
      NamedAttrList params(vjp.getParams());
      params.set("save_for_backward", b.getUnitAttr());
      auto reading = VjpOp::create(b, vjp.getLoc(), vjp.getResultTypes(), vjp.getForwardAttr(),
                                   primals, vjp.getCotangents(), vjp.getGradOperandsAttr(),
                                   params.getDictionary(&getContext()));
      vjp.replaceAllUsesWith(reading.getResults());
      vjp.erase();
      ++numSaved;
    }
  }
};

} // namespace
} // namespace mlir::dsv3
