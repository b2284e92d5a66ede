//===- PlanMemory.cpp - the dsv3k-plan-memory pass ------------------------===//
#include "passes/Passes.h"

#include "dialects/Dsv3K/IR/Dsv3KOps.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"

#include <algorithm>
#include <limits>

namespace mlir::dsv3 {
#define GEN_PASS_DEF_DSV3KPLANMEMORYPASS
#include "passes/Passes.h.inc"

namespace {
constexpr int64_t kAlignment = 256;

int64_t alignUp(int64_t n) { return (n + kAlignment - 1) / kAlignment * kAlignment; }

struct Interval {
  dsv3k::AllocOp alloc;
  int64_t begin, end, bytes, offset = -1;
};

struct PlanMemoryPass : impl::Dsv3KPlanMemoryPassBase<PlanMemoryPass> {
  using Base::Base;

  void planFunction(func::FuncOp func) {
    // Program order of the launches, and each buffer's live interval.
    DenseMap<Operation *, int64_t> position;
    int64_t index = 0;
    func.walk([&](Operation *op) { position[op] = index++; });
    SmallVector<Interval> intervals;
    for (auto alloc : func.getOps<dsv3k::AllocOp>()) {
      Interval iv{alloc, position[alloc], position[alloc],
                  std::max<int64_t>(alignUp(alloc.getMaxBytes()), kAlignment)};
      for (Operation *user : alloc->getUsers())
        iv.end = isa<func::ReturnOp>(user)
                     ? std::numeric_limits<int64_t>::max()
                     : std::max(iv.end, position[user]);
      intervals.push_back(iv);
    }
    // First fit in order of definition among the buffers still live.
    SmallVector<Interval *> live;
    int64_t arena = 0, unplanned = 0;
    for (Interval &iv : intervals) {
      llvm::erase_if(live, [&](Interval *o) { return o->end < iv.begin; });
      llvm::sort(live, [](Interval *a, Interval *b) { return a->offset < b->offset; });
      int64_t offset = 0;
      for (Interval *o : live) {
        if (offset + iv.bytes <= o->offset)
          break;
        offset = std::max(offset, o->offset + o->bytes);
      }
      iv.offset = offset;
      live.push_back(&iv);
      arena = std::max(arena, offset + iv.bytes);
      unplanned += iv.bytes;
      OpBuilder b(iv.alloc);
      iv.alloc.setOffsetAttr(b.getI64IntegerAttr(offset));
      iv.alloc.setBytesAttr(b.getI64IntegerAttr(iv.bytes));
    }
    OpBuilder b(func);
    func->setAttr("dsv3k.arena_bytes", b.getI64IntegerAttr(arena));
    func->setAttr("dsv3k.unplanned_bytes", b.getI64IntegerAttr(unplanned));
    arenaBytes += arena;
    unplannedBytes += unplanned;
  }

  void runOnOperation() override {
    for (auto func : getOperation().getOps<func::FuncOp>())
      if (!func.getOps<dsv3k::AllocOp>().empty())
        planFunction(func);
  }
};
} // namespace
} // namespace mlir::dsv3
