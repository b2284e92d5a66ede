//===- PartitionExperts.cpp - the dsv3-partition-experts pass -------------===//
//
// Expert parallelism: each MoE layer's routed experts are split contiguously
// over the expert-parallel ranks, and the token copies travel to the rank
// of their expert and back through two all-to-all-v collectives
// (dsv3.ep_dispatch / dsv3.ep_combine). Attention, dense layers, the
// router and the shared experts stay replicated and run data-parallel:
// every rank routes its own tokens.
//
// Training entries (those with a backward pass) also get the data-parallel
// reductions: the loss seed is 1/dp, so each rank's gradients are its
// share of the mean over the global batch; the replicated parameters'
// gradients are all-reduced (sum) before the norm and AdamW, while an
// expert's gradient is already complete on its rank (every rank's rows of
// that expert were there); the gradient norm adds the experts' squares
// over the ranks; the routed counts that drive the bias update, and the
// reported loss, are all-reduced too. Every rank then applies the same
// update to the replicated weights.
//
//===----------------------------------------------------------------------===//
#include "passes/Passes.h"

#include "dialects/Dsv3/IR/Dsv3Ops.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/Builders.h"
#include "llvm/Support/JSON.h"
#include "llvm/Support/MemoryBuffer.h"

namespace mlir::dsv3 {
#define GEN_PASS_DEF_DSV3PARTITIONEXPERTSPASS
#include "passes/Passes.h.inc"

namespace {
bool isExpertMatmul(Operation *op) {
  if (isa<ExpertGroupedMatmulOp, ExpertGatedMatmulOp>(op))
    return true;
  auto vjp = dyn_cast<VjpOp>(op);
  return vjp && vjp.getForward() == "expert_grouped_matmul";
}

bool isVjpOf(Operation *op, StringRef forward) {
  auto vjp = dyn_cast<VjpOp>(op);
  return vjp && vjp.getForward() == forward;
}

/// The layer an expert parameter belongs to: its name up to ".experts."
/// ("model.layers.3.mlp").
StringRef layerOf(StringRef paramName) {
  size_t at = paramName.find(".experts.");
  return at == StringRef::npos ? StringRef() : paramName.take_front(at);
}

struct PartitionExpertsPass : impl::Dsv3PartitionExpertsPassBase<PartitionExpertsPass> {
  using Base::Base;

  /// From the placement file: each layer's table (row-major [ep, slots]),
  /// and the default for the others (empty: contiguous).
  llvm::StringMap<SmallVector<int64_t>> layerPlacement;
  SmallVector<int64_t> defaultPlacement;

  LogicalResult loadPlacement(ModuleOp module) {
    std::string file = placementFile;
    auto buffer = llvm::MemoryBuffer::getFile(file);
    if (!buffer)
      return module.emitError() << "expert placement " << file << ": cannot read: "
                                << buffer.getError().message();
    llvm::Expected<llvm::json::Value> json = llvm::json::parse((*buffer)->getBuffer());
    if (!json)
      return module.emitError() << "expert placement " << file << ": not JSON: "
                                << llvm::toString(json.takeError());
    const llvm::json::Object *top = json->getAsObject();
    if (!top)
      return module.emitError() << "expert placement " << file << ": must be a JSON object";
    std::optional<int64_t> ranks = top->getInteger("ep");
    if (!ranks || *ranks != ep)
      return module.emitError() << "expert placement " << file << ": \"ep\" must be "
                                << int64_t(ep) << " (the --ep of this compile)";
    auto table = [&](const llvm::json::Value &v, StringRef where,
                     SmallVector<int64_t> &out) -> LogicalResult {
      const llvm::json::Array *rows = v.getAsArray();
      if (!rows || int64_t(rows->size()) != ep)
        return module.emitError() << "expert placement " << file << ": " << where
                                  << " must list the experts of each of the " << int64_t(ep)
                                  << " ranks";
      size_t slots = 0;
      for (auto [r, row] : llvm::enumerate(*rows)) {
        const llvm::json::Array *experts = row.getAsArray();
        if (!experts || experts->empty() || (r > 0 && experts->size() != slots))
          return module.emitError() << "expert placement " << file << ": " << where << "["
                                    << r << "] must be a non-empty list of expert indices, as "
                                       "long as every other rank's";
        slots = experts->size();
        for (const llvm::json::Value &e : *experts) {
          std::optional<int64_t> id = e.getAsInteger();
          if (!id || *id < 0)
            return module.emitError() << "expert placement " << file << ": " << where << "["
                                      << r << "] holds a non-index";
          out.push_back(*id);
        }
      }
      return success();
    };
    if (const llvm::json::Value *d = top->get("default"))
      if (failed(table(*d, "default", defaultPlacement)))
        return failure();
    if (const llvm::json::Object *layers = top->getObject("layers"))
      for (auto &[name, v] : *layers)
        if (failed(table(v, ("layers." + name.str()), layerPlacement[name.str()])))
          return failure();
    return success();
  }

  /// The placement of the layer (empty: contiguous).
  ArrayRef<int64_t> placementOf(StringRef layer) {
    auto it = layerPlacement.find(layer);
    if (it != layerPlacement.end())
      return it->second;
    return defaultPlacement;
  }

  /// Shards every stacked routed-expert parameter over `ep` ranks.
  LogicalResult shardParams(ModuleOp module) {
    llvm::StringMap<RankedTensorType> sharded;
    for (ParamOp param : module.getOps<ParamOp>()) {
      if (param.getRole() != ParamRole::RoutedExperts || !param.getStackedFrom())
        continue;
      RankedTensorType type = param.getTensorType();
      int64_t experts = type.getDimSize(0);
      ArrayRef<int64_t> placed = placementOf(layerOf(param.getSymName()));
      if (!placed.empty()) {
        for (int64_t e : placed)
          if (e >= experts)
            return param.emitError() << "the expert placement names expert " << e << " but @"
                                     << param.getSymName() << " has " << experts;
        SmallVector<int64_t> shape(type.getShape());
        shape[0] = int64_t(placed.size()) / ep;
        auto local = RankedTensorType::get(shape, type.getElementType());
        param.setType(local);
        param.setShardedOver(uint64_t(ep));
        param.setPlacement(placed);
        sharded[param.getSymName()] = local;
        ++numParams;
        continue;
      }
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
    // The AdamW moments of a sharded weight are sharded alike.
    SmallVector<StringRef> states;
    module.walk([&](AdamwOp u) {
      if (sharded.count(u.getParam()))
        states.append({u.getExpAvg(), u.getExpAvgSq()});
    });
    for (StringRef name : states) {
      auto param = SymbolTable::lookupNearestSymbolFrom<ParamOp>(
          module, StringAttr::get(module.getContext(), name));
      if (!param || !param.getStackedFrom() || param.getNumShards() > 1)
        continue;
      RankedTensorType type = param.getTensorType();
      SmallVector<int64_t> shape(type.getShape());
      shape[0] /= ep;
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

  /// Puts the exchanges around the expert GEMMs fed by `dispatch` (and, in
  /// a training entry, around their gradients).
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
    // The expert GEMMs (and their gradients) count local rows; the bias
    // update, the balance metrics and the returned loads keep the rank's
    // counts over all experts.
    for (OpOperand &use : counts.getUses())
      if (isExpertMatmul(use.getOwner()))
        countUses.push_back(&use);
    SmallVector<VjpOp> combineVjps, dispatchVjps;
    for (Operation *user : dispatch.getSlots().getUsers()) {
      if (auto combine = dyn_cast<MoeCombineOp>(user)) {
        combines.push_back(combine);
        continue;
      }
      if (isVjpOf(user, "moe_combine")) {
        combineVjps.push_back(cast<VjpOp>(user));
        continue;
      }
      return user->emitError() << "dsv3-partition-experts: the dispatch slots feed '"
                               << user->getName() << "', expected dsv3.moe_combine";
    }
    // The gradient of the dispatch itself: a vjp "moe_dispatch" on the same
    // hidden states and indices.
    for (Operation *user : dispatch.getHidden().getUsers())
      if (isVjpOf(user, "moe_dispatch")) {
        auto vjp = cast<VjpOp>(user);
        if (vjp.getPrimals().size() == 2 && vjp.getPrimals()[0] == dispatch.getHidden() &&
            vjp.getPrimals()[1] == dispatch.getIndices())
          dispatchVjps.push_back(vjp);
      }
    // The layer (for its placement): the expert weights the rows feed.
    layer_ = StringRef();
    for (OpOperand *use : rowUses)
      if (auto get = use->getOwner()->getOperand(1).getDefiningOp<GetParamOp>())
        layer_ = layerOf(get.getParam());
    OpBuilder b(dispatch->getContext());
    b.setInsertionPointAfter(dispatch);
    auto exchange = createDispatch(b, dispatch.getLoc(), rows, counts);
    for (OpOperand *use : rowUses)
      use->set(exchange.getLocalRows());
    for (OpOperand *use : countUses)
      use->set(exchange.getLocalCounts());
    // Forward: the local experts' outputs go back to their tokens' ranks.
    DenseMap<Value, Value> returned; // local expert output -> its rows back home
    for (MoeCombineOp combine : combines) {
      b.setInsertionPoint(combine);
      Value out = combine.getExpertOut();
      auto back = ExpertCombineExchangeOp::create(b, combine.getLoc(), out.getType(), out,
                                                  exchange.getLayout(), counts,
                                                  uint64_t(ep), placementAttr(b));
      combine.getExpertOutMutable().assign(back.getResult());
      returned[out] = back.getResult();
    }
    // Backward: moe_combine's gradient reads the rows as they came back,
    // and its row cotangent travels to the experts (the adjoint of
    // ep_combine is ep_dispatch) ...
    for (VjpOp vjp : combineVjps) {
      Value out = vjp.getPrimals()[0];
      auto it = returned.find(out);
      if (it == returned.end())
        return vjp.emitError() << "dsv3-partition-experts: the gradient of moe_combine "
                                  "reads expert outputs no forward combine returns";
      vjp.getPrimalsMutable()[0].set(it->second);
      ArrayRef<int64_t> grads = vjp.getGradOperands();
      for (auto [i, operand] : llvm::enumerate(grads)) {
        if (operand != 0)
          continue;
        Value dBack = vjp.getResult(i);
        b.setInsertionPointAfter(vjp);
        auto toExperts = createDispatch(b, vjp.getLoc(), dBack, counts);
        dBack.replaceAllUsesExcept(toExperts.getLocalRows(), toExperts);
      }
    }
    // ... and the rows' cotangent returns to the tokens' ranks before the
    // dispatch's gradient (the adjoint of ep_dispatch is ep_combine).
    for (VjpOp vjp : dispatchVjps) {
      b.setInsertionPoint(vjp);
      Value dLocal = vjp.getCotangents()[0];
      auto home = ExpertCombineExchangeOp::create(b, vjp.getLoc(), dLocal.getType(), dLocal,
                                                  exchange.getLayout(), counts,
                                                  uint64_t(ep), placementAttr(b));
      vjp.getCotangentsMutable()[0].set(home.getResult());
    }
    ++numLayers;
    return success();
  }

  /// The layer being partitioned (set by partition()).
  StringRef layer_;
  DenseI64ArrayAttr placementAttr(OpBuilder &b) {
    ArrayRef<int64_t> placed = placementOf(layer_);
    return placed.empty() ? DenseI64ArrayAttr() : b.getDenseI64ArrayAttr(placed);
  }

  ExpertDispatchExchangeOp createDispatch(OpBuilder &b, Location loc, Value rows,
                                          Value counts) {
    auto countsType = cast<RankedTensorType>(counts.getType());
    ArrayRef<int64_t> placed = placementOf(layer_);
    int64_t local = placed.empty() ? countsType.getDimSize(0) / ep : int64_t(placed.size()) / ep;
    auto rowsType = cast<RankedTensorType>(rows.getType());
    return ExpertDispatchExchangeOp::create(
        b, loc,
        RankedTensorType::get({ShapedType::kDynamic, rowsType.getDimSize(1)},
                              rowsType.getElementType()),
        RankedTensorType::get({local}, countsType.getElementType()),
        RankedTensorType::get({int64_t(ep), local}, countsType.getElementType()), rows,
        counts, uint64_t(ep), capacity > 0 ? b.getF64FloatAttr(capacity) : FloatAttr(),
        placementAttr(b));
  }

  /// Each vjp's results have its differentiated primals' types (a sharded
  /// weight's gradient is one rank's slice).
  void fixGradientTypes(ModuleOp module) {
    module.walk([&](VjpOp vjp) {
      for (auto [i, operand] : llvm::enumerate(vjp.getGradOperands()))
        vjp.getResult(i).setType(vjp.getPrimals()[operand].getType());
    });
    // Entries returning those gradients return the slices.
    for (auto func : module.getOps<func::FuncOp>()) {
      auto ret = cast<func::ReturnOp>(func.front().getTerminator());
      func.setFunctionType(FunctionType::get(func.getContext(), func.getArgumentTypes(),
                                             ret.getOperandTypes()));
    }
  }

  /// Whether `param` names a parameter split over the expert ranks.
  bool isSharded(ModuleOp module, FlatSymbolRefAttr param) {
    auto p = SymbolTable::lookupNearestSymbolFrom<ParamOp>(module, param);
    return p && p.getNumShards() > 1;
  }

  Value allReduce(OpBuilder &b, Location loc, Value v, StringRef reduction, StringRef group,
                  int64_t ranks) {
    return AllReduceOp::create(b, loc, v.getType(), v, b.getStringAttr(reduction),
                               b.getStringAttr(group), uint64_t(ranks));
  }

  /// The data-parallel reductions of a function with a backward pass.
  LogicalResult reduceGradients(ModuleOp module, func::FuncOp func) {
    OpBuilder b(func.getContext());
    // The loss seed: 1/dp, so the ranks' gradients sum to the mean over
    // the global batch.
    for (FillOp fill : llvm::make_early_inc_range(func.getOps<FillOp>())) {
      auto type = dyn_cast<RankedTensorType>(fill.getType());
      if (!type || type.getRank() != 0 || fill.getValue().convertToDouble() != 1.0 ||
          fill->use_empty() ||
          !llvm::all_of(fill->getUsers(), [](Operation *u) { return isa<VjpOp>(u); }))
        continue;
      fill.setValueAttr(b.getF64FloatAttr(1.0 / double(dp)));
    }
    auto ret = cast<func::ReturnOp>(func.front().getTerminator());
    bool isStep = func.getName() == "train_step";
    SmallVector<AdamwOp> updates(func.getOps<AdamwOp>());
    GlobalNormOp norm;
    for (GlobalNormOp n : func.getOps<GlobalNormOp>())
      norm = n;
    // Where the reductions go: before the norm (train_step), else before
    // the return.
    Operation *at = norm ? norm.getOperation() : ret.getOperation();
    b.setInsertionPoint(at);
    Location loc = at->getLoc();
    DenseMap<Value, Value> reduced;
    auto reduceOnce = [&](Value g) {
      auto [it, fresh] = reduced.try_emplace(g, Value());
      if (fresh)
        it->second = allReduce(b, loc, g, "sum", "data", dp);
      return it->second;
    };
    if (isStep) {
      SmallVector<Value> replicated, sharded;
      for (AdamwOp u : updates) {
        if (isSharded(module, u.getParamAttr())) {
          // Complete within its expert-parallel group; with several groups
          // (dp > ep) the same shard's gradients add up across them.
          Value g = u.getGrad();
          if (dp > ep) {
            g = allReduce(b, loc, g, "sum", "expert_data", dp / ep);
            u.getGradMutable().assign(g);
          }
          sharded.push_back(g);
          continue;
        }
        Value r = reduceOnce(u.getGrad());
        u.getGradMutable().assign(r);
        replicated.push_back(r);
      }
      if (!norm)
        return func.emitError() << "dsv3-partition-experts: train_step has no global_norm";
      b.setInsertionPoint(norm);
      Value squares;
      if (!sharded.empty()) {
        auto scalar = RankedTensorType::get({}, b.getF32Type());
        Value mine = GlobalNormOp::create(b, loc, scalar, sharded, Value(), true);
        squares = allReduce(b, loc, mine, "sum", "expert", ep);
      }
      auto whole = GlobalNormOp::create(b, loc, norm.getType(), replicated, squares, false);
      norm.replaceAllUsesWith(whole.getResult());
      norm.erase();
      b.setInsertionPoint(ret);
      // The bias update and the reported loads use the global batch's counts.
      DenseMap<Value, Value> globalCounts;
      auto countsOnce = [&](Value c) {
        auto [it, fresh] = globalCounts.try_emplace(c, Value());
        if (fresh) {
          OpBuilder::InsertionGuard guard(b);
          b.setInsertionPointAfterValue(c);
          it->second = allReduce(b, c.getLoc(), c, "sum", "data", dp);
        }
        return it->second;
      };
      for (ExpertBiasUpdateOp u : func.getOps<ExpertBiasUpdateOp>())
        u.getCountsMutable().assign(countsOnce(u.getCounts()));
      for (OpOperand &r : ret->getOpOperands()) {
        auto type = dyn_cast<RankedTensorType>(r.get().getType());
        if (type && type.getElementType().isInteger(64) && type.getRank() == 1)
          r.set(countsOnce(r.get()));
      }
    } else {
      // gradients / train_gradients: [loss, gradients..., loss parts...].
      auto names = func->getAttrOfType<ArrayAttr>("dsv3.grad_params");
      if (names)
        for (auto [i, nameAttr] : llvm::enumerate(names)) {
          OpOperand &r = ret->getOpOperand(unsigned(1 + i));
          if (!isSharded(module, cast<FlatSymbolRefAttr>(nameAttr)))
            r.set(reduceOnce(r.get()));
          else if (dp > ep)
            r.set(allReduce(b, loc, r.get(), "sum", "expert_data", dp / ep));
        }
    }
    // The reported loss and its parts: the mean over the ranks (equal
    // tokens a rank). train_step's result 1 is the norm, already global.
    b.setInsertionPoint(ret);
    for (auto [i, r] : llvm::enumerate(ret->getOpOperands())) {
      if (isStep && i == 1)
        continue;
      auto type = dyn_cast<RankedTensorType>(r.get().getType());
      if (type && type.getRank() == 0 && isa<FloatType>(type.getElementType()) &&
          !reduced.count(r.get()))
        r.set(allReduce(b, ret.getLoc(), r.get(), "mean", "data", dp));
    }
    ++numTrainingEntries;
    return success();
  }

  void runOnOperation() override {
    ModuleOp module = getOperation();
    if (ep < 1 || dp < 1) {
      module.emitError() << "dsv3-partition-experts: ep (" << int64_t(ep) << ") and dp ("
                         << int64_t(dp) << ") must be >= 1";
      return signalPassFailure();
    }
    if (capacity != 0 && capacity < 1) {
      module.emitError() << "dsv3-partition-experts: capacity " << double(capacity)
                         << " must be >= 1 (or 0: the worst case)";
      return signalPassFailure();
    }
    if (ep > 1 && dp % ep != 0) {
      module.emitError() << "dsv3-partition-experts: dp " << int64_t(dp)
                         << " must be a multiple of ep " << int64_t(ep)
                         << " (each group of ep consecutive ranks holds every expert once)";
      return signalPassFailure();
    }
    if (!placementFile.empty()) {
      bool training = false;
      module.walk([&](VjpOp) { training = true; });
      if (training) {
        module.emitError() << "dsv3-partition-experts: an expert placement (redundant copies) "
                              "is an inference deployment; training splits the experts "
                              "contiguously";
        return signalPassFailure();
      }
      if (failed(loadPlacement(module)))
        return signalPassFailure();
    }
    Builder b(module.getContext());
    module->setAttr("dsv3.expert_parallel", b.getI64IntegerAttr(ep));
    module->setAttr("dsv3.data_parallel", b.getI64IntegerAttr(dp));
    // The exchanges go in with expert parallelism, and also for one rank
    // (ep = dp = 1: rows then move to the same rank, which checks the
    // collectives' paths with world size 1); plain data parallelism keeps
    // every expert on every rank.
    if (ep > 1 || dp == 1) {
      if (failed(shardParams(module)))
        return signalPassFailure();
      SmallVector<MoeDispatchOp> dispatches;
      module.walk([&](MoeDispatchOp d) { dispatches.push_back(d); });
      for (MoeDispatchOp d : dispatches)
        if (failed(partition(d)))
          return signalPassFailure();
      fixGradientTypes(module);
    }
    for (auto func : llvm::to_vector(module.getOps<func::FuncOp>())) {
      bool backward = false;
      func.walk([&](VjpOp) { backward = true; });
      if (backward && failed(reduceGradients(module, func)))
        return signalPassFailure();
    }
  }
};
} // namespace
} // namespace mlir::dsv3
