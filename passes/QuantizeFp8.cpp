//===- QuantizeFp8.cpp - the dsv3-quantize-fp8 pass -----------------------===//
//
// Rewrites the projection weights of the official FP8 set into e4m3
// parameters with block scales, and every read of them into
// `dsv3.fp8_weight`, which the lowering turns into FP8 GEMM launches.
//
//===----------------------------------------------------------------------===//
#include "passes/Passes.h"

#include "dialects/Dsv3/IR/Dsv3Ops.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/Builders.h"

namespace mlir::dsv3 {
#define GEN_PASS_DEF_DSV3QUANTIZEFP8PASS
#include "passes/Passes.h.inc"

namespace {
/// Whether the official checkpoint stores `param` in FP8 (SEMANTICS.md 9):
/// the matrices of attention, the dense MLP and the experts.
bool isFp8Weight(ParamOp param) {
  ParamRole role = param.getRole();
  bool matrixRole = role == ParamRole::Attention || role == ParamRole::DenseMlp ||
                    role == ParamRole::RoutedExperts || role == ParamRole::SharedExperts;
  RankedTensorType type = param.getTensorType();
  int64_t rank = role == ParamRole::RoutedExperts ? 3 : 2;
  return matrixRole && !param.getTiedTo() && type.getRank() == rank &&
         isa<FloatType>(type.getElementType()) &&
         !isa<Float8E4M3FNType>(type.getElementType());
}

/// The parameter an operand reads, if it is a `dsv3.get_param`.
ParamOp paramOf(Value v) {
  auto get = v.getDefiningOp<GetParamOp>();
  return get ? SymbolTable::lookupNearestSymbolFrom<ParamOp>(get, get.getParamAttr())
             : ParamOp();
}

/// Whether `op` multiplies by weights of the official FP8 set only: every
/// matrix parameter among its operands is one, and there is one. (The MTP
/// `eh_proj`, the head and the router stay in the model's dtype.)
bool multipliesFp8WeightsOnly(Operation *op) {
  bool any = false;
  for (Value v : op->getOperands())
    if (ParamOp param = paramOf(v); param && param.getTensorType().getRank() >= 2) {
      if (!isFp8Weight(param))
        return false;
      any = true;
    }
  return any;
}

struct QuantizeFp8Pass : impl::Dsv3QuantizeFp8PassBase<QuantizeFp8Pass> {
  using Base::Base;

  /// FP8 training (DeepSeek-V3 §3.3): the weights stay fp32 master
  /// parameters; every GEMM that multiplies by one of the FP8 set, forward
  /// and backward, quantizes its operands as it runs. Marked with
  /// `fp8_compute = [block rows, block cols]` (on the op, or in a `dsv3.vjp`'s
  /// params), which the kernels read.
  void markFp8Training(ModuleOp module) {
    OpBuilder b(module.getContext());
    auto block = b.getDenseI64ArrayAttr({blockRows, blockCols});
    module.walk([&](Operation *op) {
      if (isa<LinearOp, LinearAddOp, NormLinearOp, GatedLinearOp, NormGatedLinearOp,
              ExpertGroupedMatmulOp, ExpertGatedMatmulOp, LatentAttentionOp,
              LatentAttentionDecodeOp>(op)) {
        if (multipliesFp8WeightsOnly(op)) {
          op->setAttr("fp8_compute", block);
          ++numQuantized;
        }
        return;
      }
      auto vjp = dyn_cast<VjpOp>(op);
      if (!vjp || !llvm::is_contained({StringRef("linear"), StringRef("expert_grouped_matmul"),
                                       StringRef("latent_attention")},
                                      vjp.getForward()) ||
          !multipliesFp8WeightsOnly(op))
        return;
      NamedAttrList params(vjp.getParams());
      params.set("fp8_compute", block);
      vjp.setParamsAttr(params.getDictionary(module.getContext()));
      ++numQuantized;
    });
    module->setAttr("dsv3.quantization", b.getStringAttr("fp8"));
  }

  void runOnOperation() override {
    ModuleOp module = getOperation();
    if (blockRows < 1 || blockCols < 1) {
      module.emitError() << "dsv3-quantize-fp8 needs positive block sizes, got ["
                         << blockRows << ", " << blockCols << "]";
      return signalPassFailure();
    }
    bool trains = false;
    for (auto func : module.getOps<func::FuncOp>()) {
      auto entry = func->getAttrOfType<StringAttr>("dsv3.entry");
      trains |= entry && (entry.getValue() == "gradients" || entry.getValue() == "train_step" ||
                          entry.getValue() == "train_gradients");
    }
    if (trains)
      return markFp8Training(module);

    // Retype the weights and declare their scales.
    OpBuilder b(module.getContext());
    Type f8 = b.getType<Float8E4M3FNType>();
    llvm::StringMap<ParamOp> scaleOf;
    SmallVector<ParamOp> weights;
    for (ParamOp param : module.getOps<ParamOp>())
      if (isFp8Weight(param))
        weights.push_back(param);
    for (ParamOp param : weights) {
      RankedTensorType type = param.getTensorType();
      SmallVector<int64_t> scaleShape(type.getShape());
      size_t rank = scaleShape.size();
      scaleShape[rank - 2] = (scaleShape[rank - 2] + blockRows - 1) / blockRows;
      scaleShape[rank - 1] = (scaleShape[rank - 1] + blockCols - 1) / blockCols;
      b.setInsertionPointAfter(param);
      std::string name = (param.getSymName() + "_scale_inv").str();
      auto scale = ParamOp::create(
          b, param.getLoc(), b.getStringAttr(name),
          TypeAttr::get(RankedTensorType::get(scaleShape, b.getF32Type())),
          ParamRoleAttr::get(b.getContext(), ParamRole::WeightScale),
          param.getStackedFrom()
              ? b.getStringAttr(param.getStackedFrom()->str() + "_scale_inv")
              : StringAttr(),
          FlatSymbolRefAttr(), param.getMtpDepthAttr(), param.getShardedOverAttr(),
          param.getPlacementAttr(), FlatSymbolRefAttr::get(param.getSymNameAttr()));
      param.setType(RankedTensorType::get(type.getShape(), f8));
      scaleOf[param.getSymName()] = scale;
      ++numQuantized;
    }

    // Every read sees the FP8 weight through dsv3.fp8_weight.
    SmallVector<GetParamOp> reads;
    module.walk([&](GetParamOp get) {
      if (scaleOf.count(get.getParam()))
        reads.push_back(get);
    });
    for (GetParamOp get : reads) {
      ParamOp scale = scaleOf.lookup(get.getParam());
      auto weight = SymbolTable::lookupNearestSymbolFrom<ParamOp>(get, get.getParamAttr());
      b.setInsertionPoint(get);
      Value q = GetParamOp::create(b, get.getLoc(), weight.getType(), get.getParamAttr());
      Value s = GetParamOp::create(b, get.getLoc(), scale.getType(),
                                   FlatSymbolRefAttr::get(scale.getSymNameAttr()));
      Value w = Fp8WeightOp::create(b, get.getLoc(), get.getType(), q, s,
                                    b.getDenseI64ArrayAttr({blockRows, blockCols}));
      get.getResult().replaceAllUsesWith(w);
      get.erase();
    }
    module->setAttr("dsv3.quantization", b.getStringAttr("fp8"));
    // The runtime quantizes bf16 / fp32 checkpoints at load, and checks FP8
    // ones, with this block size.
    module->setAttr("dsv3.checkpoint_fp8_block",
                    b.getDenseI64ArrayAttr({blockRows, blockCols}));
  }
};
} // namespace
} // namespace mlir::dsv3
