//===- QuantizeKvCache.cpp - the dsv3-quantize-kv-cache pass ---------------===//
//
// Sets the storage of every decode latent cache (Passes.td says what each
// storage computes). A pass rather than a builder flag so that the choice
// shows in the IR dumps and composes with imported or hand-written modules.
//
//===----------------------------------------------------------------------===//
#include "passes/Passes.h"

#include "dialects/Dsv3/IR/Dsv3Ops.h"

namespace mlir::dsv3 {
#define GEN_PASS_DEF_DSV3QUANTIZEKVCACHEPASS
#include "passes/Passes.h.inc"

namespace {
struct QuantizeKvCachePass : impl::Dsv3QuantizeKvCachePassBase<QuantizeKvCachePass> {
  using Base::Base;
  void runOnOperation() override {
    std::optional<CacheStorage> storage = symbolizeCacheStorage(this->storage);
    if (!storage) {
      emitError(getOperation().getLoc())
          << "dsv3-quantize-kv-cache: storage must be f32, bf16 or fp8, got '"
          << this->storage << "'";
      return signalPassFailure();
    }
    getOperation().walk([&](LatentAttentionDecodeOp op) {
      op.setCacheStorage(*storage);
      ++numCaches;
    });
  }
};
} // namespace
} // namespace mlir::dsv3
