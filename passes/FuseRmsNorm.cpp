//===- FuseRmsNorm.cpp - the dsv3-fuse-rms-norm pass ----------------------===//
//
// An RMSNorm whose only consumer is a projection becomes that projection's
// prologue (dsv3.norm_linear, dsv3.norm_gated_linear), so the normed
// activations are never written to memory and read back.
//
//===----------------------------------------------------------------------===//
#include "passes/Passes.h"

#include "dialects/Dsv3/IR/Dsv3Ops.h"

#include "mlir/IR/PatternMatch.h"
#include "mlir/Transforms/GreedyPatternRewriteDriver.h"

namespace mlir::dsv3 {
#define GEN_PASS_DEF_DSV3FUSERMSNORMPASS
#include "passes/Passes.h.inc"

namespace {
/// The norm feeding `input`, when the consumer is its only user.
RmsNormOp soleNorm(Value input) {
  auto norm = input.getDefiningOp<RmsNormOp>();
  return norm && norm->hasOneUse() ? norm : RmsNormOp();
}

/// linear(rms_norm(x, wn), W) (no bias) and lm_head(rms_norm(x, wn), W)
/// -> norm_linear(x, wn, W).
template <typename Projection>
struct FuseIntoLinear : OpRewritePattern<Projection> {
  FuseIntoLinear(MLIRContext *ctx, llvm::Statistic &count)
      : OpRewritePattern<Projection>(ctx), count(count) {}
  LogicalResult matchAndRewrite(Projection op, PatternRewriter &rewriter) const override {
    Value input, weight;
    if constexpr (std::is_same_v<Projection, LinearOp>) {
      if (op.getBias())
        return rewriter.notifyMatchFailure(op, "the projection has a bias");
      input = op.getInput();
      weight = op.getWeight();
    } else {
      input = op.getHidden();
      weight = op.getWeight();
    }
    RmsNormOp norm = soleNorm(input);
    if (!norm)
      return rewriter.notifyMatchFailure(op, "input is not a norm used only here");
    rewriter.replaceOpWithNewOp<NormLinearOp>(op, op.getType(), norm.getInput(),
                                              norm.getWeight(), weight,
                                              norm.getEpsilonAttr());
    rewriter.eraseOp(norm);
    ++count;
    return success();
  }
  llvm::Statistic &count;
};

/// gated_linear(rms_norm(x, wn), Wg, Wu) -> norm_gated_linear(x, wn, Wg, Wu).
struct FuseIntoGatedLinear : OpRewritePattern<GatedLinearOp> {
  FuseIntoGatedLinear(MLIRContext *ctx, llvm::Statistic &count)
      : OpRewritePattern(ctx), count(count) {}
  LogicalResult matchAndRewrite(GatedLinearOp op, PatternRewriter &rewriter) const override {
    RmsNormOp norm = soleNorm(op.getInput());
    if (!norm)
      return rewriter.notifyMatchFailure(op, "input is not a norm used only here");
    rewriter.replaceOpWithNewOp<NormGatedLinearOp>(
        op, op.getType(), norm.getInput(), norm.getWeight(), op.getGateWeight(),
        op.getUpWeight(), norm.getEpsilonAttr());
    rewriter.eraseOp(norm);
    ++count;
    return success();
  }
  llvm::Statistic &count;
};

struct FuseRmsNormPass : impl::Dsv3FuseRmsNormPassBase<FuseRmsNormPass> {
  using Base::Base;
  void runOnOperation() override {
    RewritePatternSet patterns(&getContext());
    patterns.add<FuseIntoLinear<LinearOp>>(&getContext(), numLinear);
    patterns.add<FuseIntoLinear<LmHeadOp>>(&getContext(), numLinear);
    patterns.add<FuseIntoGatedLinear>(&getContext(), numGated);
    if (failed(applyPatternsGreedily(getOperation(), std::move(patterns))))
      signalPassFailure();
  }
};
} // namespace
} // namespace mlir::dsv3
