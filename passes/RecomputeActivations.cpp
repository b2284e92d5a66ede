//===- RecomputeActivations.cpp - the dsv3-recompute-activations pass -----===//
//
// Activation checkpointing on the dsv3 IR: a unit's forward ops are cloned
// before the backward that reads them, so the forward values die early and
// the memory plan's peak drops. The units and their estimated kept bytes
// come from the ops' locations (the checkpoint prefixes the model builder
// names every op with: "model.layers.3.self_attn", "model.layers.3.mlp").
//
//===----------------------------------------------------------------------===//
#include "passes/Passes.h"

#include "dialects/Dsv3/IR/Dsv3Ops.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/Builders.h"
#include "mlir/IR/IRMapping.h"

#include "llvm/ADT/SetVector.h"
#include "llvm/ADT/StringExtras.h"

#include <algorithm>
#include <set>

namespace mlir::dsv3 {
#define GEN_PASS_DEF_DSV3RECOMPUTEACTIVATIONSPASS
#include "passes/Passes.h.inc"

namespace {

/// The checkpoint prefix of an op's location ("" when it has none).
std::string locName(Location loc) {
  if (auto name = dyn_cast<NameLoc>(loc))
    return name.getName().str();
  if (auto fused = dyn_cast<FusedLoc>(loc))
    for (Location l : fused.getLocations())
      if (std::string n = locName(l); !n.empty())
        return n;
  return "";
}

/// The unit an op belongs to under `scope`, and its layer index; "" for
/// ops outside every layer (embedding, final norm, head, losses).
std::string unitOf(Operation *op, StringRef scope, int64_t &layer) {
  std::string name = locName(op->getLoc());
  StringRef rest(name);
  if (!rest.consume_front("model.layers."))
    return "";
  size_t dot = rest.find('.');
  StringRef index = rest.take_front(dot);
  if (index.getAsInteger(10, layer))
    return "";
  std::string unit = ("model.layers." + index).str();
  if (scope == "layer")
    return unit;
  StringRef part = dot == StringRef::npos ? "" : rest.drop_front(dot + 1);
  StringRef want = scope == "attention" ? "self_attn" : "mlp";
  if (part != want && !part.starts_with((want + ".").str()))
    return "";
  return unit + "." + want.str();
}

/// Bytes of a value at `tokens` rows: the first dynamic extent is the token
/// count (batch x sequence share it), later dynamic extents count once.
int64_t estimateBytes(Value v, int64_t tokens) {
  auto t = dyn_cast<RankedTensorType>(v.getType());
  if (!t)
    return 0;
  int64_t n = std::max<int64_t>(1, t.getElementTypeBitWidth() / 8);
  bool first = true;
  for (int64_t d : t.getShape()) {
    if (ShapedType::isDynamic(d)) {
      n *= first ? tokens : 1;
      first = false;
    } else {
      n *= d;
    }
  }
  return n;
}

struct Unit {
  std::string name;
  int64_t layer = 0;
  SmallVector<Operation *> ops; // forward ops, in program order
  int64_t keptBytes = 0;        // forward results the backward reads
};

struct RecomputeActivationsPass
    : impl::Dsv3RecomputeActivationsPassBase<RecomputeActivationsPass> {
  using Base::Base;

  void runOnOperation() override {
    if (scope != "layer" && scope != "attention" && scope != "mlp") {
      getOperation().emitError() << "dsv3-recompute-activations: scope must be layer, "
                                    "attention or mlp, not \""
                                 << scope << "\"";
      return signalPassFailure();
    }
    for (auto f : getOperation().getOps<func::FuncOp>()) {
      auto kind = f->getAttrOfType<StringAttr>("dsv3.entry");
      if (!kind || (kind.getValue() != "gradients" && kind.getValue() != "train_gradients" &&
                    kind.getValue() != "train_step"))
        continue;
      if (failed(recompute(f)))
        return signalPassFailure();
    }
  }

  LogicalResult recompute(func::FuncOp func) {
    Block &body = func.front();
    // The backward starts at the first vjp (autodiff appends it after the
    // forward).
    Operation *firstVjp = nullptr;
    for (Operation &op : body)
      if (isa<VjpOp>(op)) {
        firstVjp = &op;
        break;
      }
    if (!firstVjp)
      return success();
    SmallVector<Unit> units;
    llvm::StringMap<size_t> index;
    for (Operation &op : body) {
      if (&op == firstVjp)
        break;
      if (isa<GetParamOp>(op) || op.getNumResults() == 0)
        continue;
      int64_t layer = 0;
      std::string name = unitOf(&op, scope, layer);
      if (name.empty())
        continue;
      auto [it, inserted] = index.try_emplace(name, units.size());
      if (inserted) {
        units.push_back({});
        units.back().name = name;
        units.back().layer = layer;
      }
      units[it->second].ops.push_back(&op);
    }
    auto inBackward = [&](Operation *user) {
      return user == firstVjp || firstVjp->isBeforeInBlock(user);
    };
    // A unit's outputs (results the forward reads outside the unit: the
    // residual stream) are the checkpoints: kept, read by the clones of the
    // next unit, never recomputed. The rest the backward reads is what
    // recomputing saves.
    auto isOutput = [&](Value r, const Unit &u) {
      return llvm::any_of(r.getUsers(), [&](Operation *user) {
        return !inBackward(user) && !llvm::is_contained(u.ops, user);
      });
    };
    auto recomputable = [&](Value r, const Unit &u) {
      return !isOutput(r, u) && llvm::any_of(r.getUsers(), inBackward);
    };
    for (Unit &u : units)
      for (Operation *op : u.ops)
        for (Value r : op->getResults())
          if (recomputable(r, u))
            u.keptBytes += estimateBytes(r, maxTokens);

    // The units to recompute.
    std::set<size_t> chosen;
    if (budgetBytes > 0) {
      int64_t kept = 0;
      for (Unit &u : units)
        kept += u.keptBytes;
      SmallVector<size_t> order;
      for (size_t i = 0; i < units.size(); ++i)
        order.push_back(i);
      llvm::stable_sort(order, [&](size_t a, size_t b) {
        return units[a].keptBytes > units[b].keptBytes;
      });
      for (size_t i : order) {
        if (kept <= budgetBytes)
          break;
        chosen.insert(i);
        kept -= units[i].keptBytes;
      }
    } else if (layers == "all") {
      for (size_t i = 0; i < units.size(); ++i)
        chosen.insert(i);
    } else if (!layers.empty()) {
      SmallVector<StringRef> parts;
      StringRef(layers).split(parts, ',', -1, false);
      for (StringRef p : parts) {
        int64_t want;
        if (p.trim().getAsInteger(10, want))
          return func.emitError() << "dsv3-recompute-activations: layers must be \"all\" or "
                                     "comma-separated layer indices, not \""
                                  << layers << "\"";
        bool found = false;
        for (size_t i = 0; i < units.size(); ++i)
          if (units[i].layer == want) {
            chosen.insert(i);
            found = true;
          }
        if (!found)
          return func.emitError() << "dsv3-recompute-activations: no layer " << want
                                  << " in " << func.getName();
      }
    }

    SmallVector<Attribute> names;
    OpBuilder attrs(func.getContext());
    for (size_t i : chosen) {
      Unit &u = units[i];
      // Before the first backward op reading any of the unit's results.
      Operation *at = nullptr;
      for (Operation *op : u.ops)
        for (Value r : op->getResults())
          if (recomputable(r, u))
            for (Operation *user : r.getUsers())
              if (inBackward(user) && (!at || user->isBeforeInBlock(at)))
                at = user;
      if (!at)
        continue;
      OpBuilder b(at);
      IRMapping map;
      llvm::SmallPtrSet<Operation *, 32> clones;
      for (Operation *op : u.ops)
        clones.insert(b.clone(*op, map));
      for (Operation *op : u.ops)
        for (Value r : op->getResults())
          if (recomputable(r, u))
            r.replaceUsesWithIf(map.lookup(r), [&](OpOperand &use) {
            Operation *user = use.getOwner();
            return !clones.contains(user) && inBackward(user);
          });
      numCloned += u.ops.size();
      ++numUnits;
      names.push_back(attrs.getStringAttr(u.name));
    }
    func->setAttr("dsv3.recomputed", attrs.getArrayAttr(names));
    return success();
  }
};

} // namespace
} // namespace mlir::dsv3
