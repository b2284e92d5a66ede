//===- FuseSwiglu.cpp - the dsv3-fuse-swiglu pass -------------------------===//
#include "passes/Passes.h"

#include "dialects/Dsv3/IR/Dsv3Ops.h"

#include "mlir/IR/PatternMatch.h"
#include "mlir/Transforms/GreedyPatternRewriteDriver.h"

namespace mlir::dsv3 {
#define GEN_PASS_DEF_DSV3FUSESWIGLUPASS
#include "passes/Passes.h.inc"

namespace {
/// swiglu(linear(x, Wg), linear(x, Wu)) -> gated_linear(x, Wg, Wu).
struct FuseDenseGateUp : OpRewritePattern<SwigluOp> {
  FuseDenseGateUp(MLIRContext *ctx, llvm::Statistic &count)
      : OpRewritePattern(ctx), count(count) {}
  LogicalResult matchAndRewrite(SwigluOp op, PatternRewriter &rewriter) const override {
    auto gate = op.getGate().getDefiningOp<LinearOp>();
    auto up = op.getUp().getDefiningOp<LinearOp>();
    if (!gate || !up || gate == up || gate.getBias() || up.getBias() ||
        gate.getInput() != up.getInput() || !gate->hasOneUse() || !up->hasOneUse() ||
        gate.getWeight().getType() != up.getWeight().getType())
      return rewriter.notifyMatchFailure(op, "not a fusable gate/up pair");
    rewriter.replaceOpWithNewOp<GatedLinearOp>(op, op.getType(), gate.getInput(),
                                               gate.getWeight(), up.getWeight());
    rewriter.eraseOp(gate);
    rewriter.eraseOp(up);
    ++count;
    return success();
  }
  llvm::Statistic &count;
};

/// The same for the experts' grouped GEMMs.
struct FuseExpertGateUp : OpRewritePattern<SwigluOp> {
  FuseExpertGateUp(MLIRContext *ctx, llvm::Statistic &count)
      : OpRewritePattern(ctx), count(count) {}
  LogicalResult matchAndRewrite(SwigluOp op, PatternRewriter &rewriter) const override {
    auto gate = op.getGate().getDefiningOp<ExpertGroupedMatmulOp>();
    auto up = op.getUp().getDefiningOp<ExpertGroupedMatmulOp>();
    if (!gate || !up || gate == up || gate.getRows() != up.getRows() ||
        gate.getCounts() != up.getCounts() || !gate->hasOneUse() ||
        !up->hasOneUse() || gate.getWeight().getType() != up.getWeight().getType())
      return rewriter.notifyMatchFailure(op, "not a fusable expert gate/up pair");
    rewriter.replaceOpWithNewOp<ExpertGatedMatmulOp>(
        op, op.getType(), gate.getRows(), gate.getWeight(), up.getWeight(),
        gate.getCounts());
    rewriter.eraseOp(gate);
    rewriter.eraseOp(up);
    ++count;
    return success();
  }
  llvm::Statistic &count;
};

struct FuseSwigluPass : impl::Dsv3FuseSwigluPassBase<FuseSwigluPass> {
  using Base::Base;
  void runOnOperation() override {
    RewritePatternSet patterns(&getContext());
    patterns.add<FuseDenseGateUp>(&getContext(), numDense);
    patterns.add<FuseExpertGateUp>(&getContext(), numExperts);
    if (failed(applyPatternsGreedily(getOperation(), std::move(patterns))))
      signalPassFailure();
  }
};
} // namespace
} // namespace mlir::dsv3
