//===- Dsv3KOps.cpp - the dsv3k kernel-level dialect ----------------------===//
#include "dialects/Dsv3K/IR/Dsv3KOps.h"

#include "dialects/Dsv3/IR/Dsv3Ops.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/OpImplementation.h"

using namespace mlir;
using namespace mlir::dsv3k;

#include "dialects/Dsv3K/IR/Dsv3KDialect.cpp.inc"

void Dsv3KDialect::initialize() {
  addOperations<
#define GET_OP_LIST
#include "dialects/Dsv3K/IR/Dsv3KOps.cpp.inc"
      >();
}

#define GET_OP_CLASSES
#include "dialects/Dsv3K/IR/Dsv3KOps.cpp.inc"

int64_t AllocOp::getMaxBytes() {
  auto type = cast<MemRefType>(getType());
  int64_t n = 1;
  for (int64_t d : getMaxShape())
    n *= d;
  return (n * type.getElementTypeBitWidth() + 7) / 8;
}

LogicalResult AllocOp::verify() {
  auto type = cast<MemRefType>(getType());
  ArrayRef<int64_t> max = getMaxShape();
  if (static_cast<int64_t>(max.size()) != type.getRank())
    return emitOpError() << "max_shape has " << max.size()
                         << " extents but the buffer has rank "
                         << type.getRank();
  for (auto [i, d] : llvm::enumerate(max)) {
    if (d < 0)
      return emitOpError() << "max_shape extent " << i << " (" << d
                           << ") must be >= 0";
    if (!type.isDynamicDim(i) && type.getDimSize(i) != d)
      return emitOpError() << "max_shape extent " << i << " (" << d
                           << ") must equal the static extent "
                           << type.getDimSize(i);
  }
  if (getOffset() && (static_cast<int64_t>(*getOffset()) < 0 ||
                      static_cast<int64_t>(*getOffset()) % 256 != 0))
    return emitOpError() << "offset (" << static_cast<int64_t>(*getOffset())
                         << ") must be a non-negative multiple of 256";
  if (getBytes() && static_cast<int64_t>(*getBytes()) < getMaxBytes())
    return emitOpError() << "bytes (" << static_cast<int64_t>(*getBytes())
                         << ") is smaller than the buffer at max_shape ("
                         << getMaxBytes() << ")";
  return success();
}

LogicalResult ParamOp::verifySymbolUses(SymbolTableCollection &symbols) {
  auto param =
      symbols.lookupNearestSymbolFrom<dsv3::ParamOp>(*this, getParamAttr());
  if (!param)
    return emitOpError() << "@" << getParam()
                         << " does not reference a dsv3.param";
  auto tensor = param.getTensorType();
  auto memref = cast<MemRefType>(getType());
  if (tensor.getShape() != memref.getShape() ||
      tensor.getElementType() != memref.getElementType())
    return emitOpError() << "buffer type " << memref
                         << " does not match parameter @" << getParam()
                         << " of type " << tensor;
  return success();
}

LogicalResult LaunchOp::verify() {
  if (getKernel().empty())
    return emitOpError() << "needs a kernel name";
  if (getOutputs().empty())
    return emitOpError() << "kernel '" << getKernel()
                         << "' writes no output buffer";
  for (Value v : getInputs())
    if (!isa<MemRefType>(v.getType()) && !v.getType().isSignlessInteger(64))
      return emitOpError() << "input of type " << v.getType()
                           << " must be a buffer (memref) or an i64 scalar";
  // FP8 weights: fp8_scales[i] >= 0 names the f32 scales of input i, an
  // f8E4M3FN buffer; fp8_block the block size they cover.
  if (auto scales = getParams().getAs<DenseI64ArrayAttr>("fp8_scales")) {
    auto block = getParams().getAs<DenseI64ArrayAttr>("fp8_block");
    if (!block || block.size() != 2 || block[0] < 1 || block[1] < 1)
      return emitOpError() << "fp8_scales needs fp8_block, two positive extents";
    int64_t n = int64_t(getInputs().size());
    if (int64_t(scales.size()) > n)
      return emitOpError() << "fp8_scales names " << scales.size() << " inputs, the launch has "
                           << n;
    for (auto [i, s] : llvm::enumerate(scales.asArrayRef())) {
      if (s < 0)
        continue;
      auto weight = dyn_cast<MemRefType>(getInputs()[i].getType());
      if (s >= n || !weight || !isa<Float8E4M3FNType>(weight.getElementType()))
        return emitOpError() << "fp8_scales[" << i << "] = " << s
                             << ": input " << i << " must be an f8E4M3FN buffer and the scales "
                             << "an input index below " << n;
      auto sc = dyn_cast<MemRefType>(getInputs()[size_t(s)].getType());
      if (!sc || !sc.getElementType().isF32() || sc.getRank() != weight.getRank())
        return emitOpError() << "fp8_scales[" << i << "]: input " << s
                             << " must be an f32 buffer of the weight's rank, got "
                             << getInputs()[size_t(s)].getType();
    }
  }
  return success();
}
