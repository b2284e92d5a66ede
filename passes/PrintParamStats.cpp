//===- PrintParamStats.cpp - the dsv3-print-param-stats pass --------------===//
#include "passes/ParamStats.h"
#include "passes/Passes.h"

#include "dialects/Dsv3/IR/Dsv3Ops.h"

namespace mlir::dsv3 {
#define GEN_PASS_DEF_DSV3PRINTPARAMSTATSPASS
#include "passes/Passes.h.inc"

namespace {
struct PrintParamStatsPass
    : impl::Dsv3PrintParamStatsPassBase<PrintParamStatsPass> {
  using Base::Base;
  void runOnOperation() override {
    FailureOr<ParamStats> stats = computeParamStats(getOperation());
    if (failed(stats))
      return signalPassFailure();
    printParamStats(*stats, llvm::errs(), json);
    markAllAnalysesPreserved();
  }
};
} // namespace
} // namespace mlir::dsv3
