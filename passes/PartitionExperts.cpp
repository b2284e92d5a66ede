//===- PartitionExperts.cpp - the dsv3-partition-experts pass -------------===//
//
// Expert parallelism: each MoE layer's routed experts are split contiguously
// over the expert-parallel ranks, and the token copies travel to the rank
// of their expert and back through two all-to-all-v collectives
// (dsv3.ep_dispatch / dsv3.ep_combine). Attention, dense layers, the
// router and the shared experts stay replicated and run data-parallel:
// every rank routes its own tokens.
//
//===----------------------------------------------------------------------===//
#include "passes/Passes.h"

#include "dialects/Dsv3/IR/Dsv3Ops.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/Builders.h"

namespace mlir::dsv3 {
#define GEN_PASS_DEF_DSV3PARTITIONEXPERTSPASS
#include "passes/Passes.h.inc"

namespace {
bool isExpertMatmul(Operation *op) {
  return isa<ExpertGroupedMatmulOp, ExpertGatedMatmulOp>(op);
}

struct PartitionExpertsPass : impl::Dsv3PartitionExpertsPassBase<PartitionExpertsPass> {
  using Base::Base;

  /// Shards every stacked routed-expert parameter over `ep` ranks.
  LogicalResult shardParams(ModuleOp module) {
    llvm::StringMap<RankedTensorType> sharded;
    for (ParamOp param : module.getOps<ParamOp>()) {
      if (param.getRole() != ParamRole::RoutedExperts || !param.getStackedFrom())
        continue;
      RankedTensorType type = param.getTensorType();
      int64_t experts = type.getDimSize(0);
      if (experts % ep != 0)
        return param.emitError() << "cannot split the " << experts << " experts of @"
                                 << param.getSymName() << " over " << int64_t(ep)
                                 << " expert-parallel ranks (--ep must divide "
                                    "n_routed_experts)";
      SmallVector<int64_t> shape(type.getShape());
      shape[0] = experts / ep;
      auto local = RankedTensorType::get(shape, type.getElementType());
      param.setType(local);
      param.setShardedOver(uint64_t(ep));
      sharded[param.getSymName()] = local;
      ++numParams;
    }
    module.walk([&](GetParamOp get) {
      auto it = sharded.find(get.getParam());
      if (it != sharded.end())
        get.getResult().setType(it->second);
    });
    return success();
  }

  /// Puts the exchanges around the expert GEMMs fed by `dispatch`.
  LogicalResult partition(MoeDispatchOp dispatch) {
    Value rows = dispatch.getRows(), counts = dispatch.getCounts();
    SmallVector<OpOperand *> rowUses, countUses;
    SmallVector<MoeCombineOp> combines;
    for (OpOperand &use : rows.getUses()) {
      if (!isExpertMatmul(use.getOwner()))
        return use.getOwner()->emitError()
               << "dsv3-partition-experts: the dispatched rows feed '"
               << use.getOwner()->getName()
               << "', which has no expert-parallel form (only the expert GEMMs may read "
                  "them)";
      rowUses.push_back(&use);
    }
    for (OpOperand &use : counts.getUses()) {
      if (!isExpertMatmul(use.getOwner()))
        return use.getOwner()->emitError()
               << "dsv3-partition-experts: the expert counts feed '"
               << use.getOwner()->getName() << "', which has no expert-parallel form";
      countUses.push_back(&use);
    }
    for (Operation *user : dispatch.getSlots().getUsers()) {
      auto combine = dyn_cast<MoeCombineOp>(user);
      if (!combine)
        return user->emitError() << "dsv3-partition-experts: the dispatch slots feed '"
                                 << user->getName() << "', expected dsv3.moe_combine";
      combines.push_back(combine);
    }
    OpBuilder b(dispatch->getContext());
    b.setInsertionPointAfter(dispatch);
    auto countsType = cast<RankedTensorType>(counts.getType());
    int64_t local = countsType.getDimSize(0) / ep;
    auto rowsType = cast<RankedTensorType>(rows.getType());
    auto exchange = ExpertDispatchExchangeOp::create(
        b, dispatch.getLoc(),
        RankedTensorType::get({ShapedType::kDynamic, rowsType.getDimSize(1)},
                              rowsType.getElementType()),
        RankedTensorType::get({local}, countsType.getElementType()),
        RankedTensorType::get({int64_t(ep), local}, countsType.getElementType()), rows,
        counts, uint64_t(ep));
    for (OpOperand *use : rowUses)
      use->set(exchange.getLocalRows());
    for (OpOperand *use : countUses)
      use->set(exchange.getLocalCounts());
    for (MoeCombineOp combine : combines) {
      b.setInsertionPoint(combine);
      Value out = combine.getExpertOut();
      auto back = ExpertCombineExchangeOp::create(b, combine.getLoc(), out.getType(), out,
                                                  exchange.getLayout(), counts,
                                                  uint64_t(ep));
      combine.getExpertOutMutable().assign(back.getResult());
    }
    ++numLayers;
    return success();
  }

  void runOnOperation() override {
    ModuleOp module = getOperation();
    if (ep < 1 || dp < 1) {
      module.emitError() << "dsv3-partition-experts: ep (" << int64_t(ep) << ") and dp (" << int64_t(dp)
                         << ") must be >= 1";
      return signalPassFailure();
    }
    if (ep > 1 && dp != ep) {
      module.emitError() << "dsv3-partition-experts: ep " << int64_t(ep) << " with dp " << int64_t(dp)
                         << ": expert-parallel groups inside a larger data-parallel "
                            "group are not built yet (use dp = ep)";
      return signalPassFailure();
    }
    Builder b(module.getContext());
    module->setAttr("dsv3.expert_parallel", b.getI64IntegerAttr(ep));
    module->setAttr("dsv3.data_parallel", b.getI64IntegerAttr(dp));
    if (ep == 1)
      return;
    bool training = false;
    module.walk([&](func::FuncOp f) { training |= f.getName() == "gradients"; });
    if (training) {
      module.emitError() << "dsv3-partition-experts: expert-parallel training (--ep with "
                            "--mode train) is not built yet";
      return signalPassFailure();
    }
    if (failed(shardParams(module)))
      return signalPassFailure();
    SmallVector<MoeDispatchOp> dispatches;
    module.walk([&](MoeDispatchOp d) { dispatches.push_back(d); });
    for (MoeDispatchOp d : dispatches)
      if (failed(partition(d)))
        return signalPassFailure();
  }
};
} // namespace
} // namespace mlir::dsv3
