//===- FuseLmHeadLoss.cpp - the dsv3-fuse-lm-head-loss pass ---------------===//
#include "passes/Passes.h"

#include "dialects/Dsv3/IR/Dsv3Ops.h"

#include "mlir/IR/PatternMatch.h"
#include "mlir/Transforms/GreedyPatternRewriteDriver.h"

namespace mlir::dsv3 {
#define GEN_PASS_DEF_DSV3FUSELMHEADLOSSPASS
#include "passes/Passes.h.inc"

namespace {
/// cross_entropy(lm_head(h, W), labels) -> lm_head_cross_entropy(h, W,
/// labels), when the logits have no other reader: nothing else needs the
/// full-vocabulary tensor, so no kernel has to write it.
struct FuseLmHeadIntoCrossEntropy : OpRewritePattern<CrossEntropyOp> {
  FuseLmHeadIntoCrossEntropy(MLIRContext *ctx, llvm::Statistic &count)
      : OpRewritePattern(ctx), count(count) {}
  LogicalResult matchAndRewrite(CrossEntropyOp op,
                                PatternRewriter &rewriter) const override {
    auto head = op.getLogits().getDefiningOp<LmHeadOp>();
    if (!head || !head->hasOneUse())
      return rewriter.notifyMatchFailure(op, "logits not from a single-use lm_head");
    rewriter.replaceOpWithNewOp<LmHeadCrossEntropyOp>(
        op, op.getType(), head.getHidden(), head.getWeight(), op.getLabels(),
        op.getShiftAttr(), op.getScaleAttr(), op.getIgnoreIndexAttr());
    rewriter.eraseOp(head);
    ++count;
    return success();
  }
  llvm::Statistic &count;
};

struct FuseLmHeadLossPass : impl::Dsv3FuseLmHeadLossPassBase<FuseLmHeadLossPass> {
  using Base::Base;
  void runOnOperation() override {
    RewritePatternSet patterns(&getContext());
    patterns.add<FuseLmHeadIntoCrossEntropy>(&getContext(), numFused);
    if (failed(applyPatternsGreedily(getOperation(), std::move(patterns))))
      signalPassFailure();
  }
};
} // namespace
} // namespace mlir::dsv3
