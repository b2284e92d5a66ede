//===- FuseResidual.cpp - the dsv3-fuse-residual pass ---------------------===//
#include "passes/Passes.h"

#include "dialects/Dsv3/IR/Dsv3Ops.h"

#include "mlir/IR/PatternMatch.h"
#include "mlir/Transforms/GreedyPatternRewriteDriver.h"

namespace mlir::dsv3 {
#define GEN_PASS_DEF_DSV3FUSERESIDUALPASS
#include "passes/Passes.h.inc"

namespace {
/// add(r, linear(x, W)) -> linear_add(x, W, r), for a bias-free projection
/// used only by the add.
struct FuseAddIntoLinear : OpRewritePattern<AddOp> {
  FuseAddIntoLinear(MLIRContext *ctx, llvm::Statistic &count)
      : OpRewritePattern(ctx), count(count) {}
  LogicalResult matchAndRewrite(AddOp op, PatternRewriter &rewriter) const override {
    for (auto [mine, other] : {std::pair(op.getLhs(), op.getRhs()),
                               std::pair(op.getRhs(), op.getLhs())}) {
      auto linear = mine.getDefiningOp<LinearOp>();
      if (!linear || linear.getBias() || !linear->hasOneUse() ||
          linear.getType() != other.getType())
        continue;
      rewriter.replaceOpWithNewOp<LinearAddOp>(op, op.getType(), linear.getInput(),
                                               linear.getWeight(), other);
      rewriter.eraseOp(linear);
      ++count;
      return success();
    }
    return rewriter.notifyMatchFailure(op, "no fusable projection operand");
  }
  llvm::Statistic &count;
};

struct FuseResidualPass : impl::Dsv3FuseResidualPassBase<FuseResidualPass> {
  using Base::Base;
  void runOnOperation() override {
    RewritePatternSet patterns(&getContext());
    patterns.add<FuseAddIntoLinear>(&getContext(), numFused);
    if (failed(applyPatternsGreedily(getOperation(), std::move(patterns))))
      signalPassFailure();
  }
};
} // namespace
} // namespace mlir::dsv3
