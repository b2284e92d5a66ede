//===- Dsv3Ops.h - dsv3 ops, attributes and enums -----------------*- C++ -*-===//
#ifndef DSV3_OPS_H
#define DSV3_OPS_H

#include "dialects/Dsv3/IR/Dsv3Dialect.h"
#include "mlir/Bytecode/BytecodeOpInterface.h"
#include "mlir/IR/Attributes.h"
#include "mlir/IR/BuiltinAttributes.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/BuiltinTypes.h"
#include "mlir/IR/OpDefinition.h"
#include "mlir/IR/SymbolTable.h"
#include "mlir/Interfaces/InferTypeOpInterface.h"
#include "mlir/Interfaces/SideEffectInterfaces.h"

#include "dialects/Dsv3/IR/Dsv3Enums.h.inc"

namespace mlir::dsv3 {
/// The default gradient rule: one dsv3.vjp of `op`.
LogicalResult buildVjpGradient(Operation *op, OpBuilder &builder,
                               ValueRange cotangents,
                               SmallVectorImpl<Value> &operandGrads);
} // namespace mlir::dsv3

#include "dialects/Dsv3/IR/Dsv3Interfaces.h.inc"

#define GET_ATTRDEF_CLASSES
#include "dialects/Dsv3/IR/Dsv3Attrs.h.inc"

#define GET_OP_CLASSES
#include "dialects/Dsv3/IR/Dsv3Ops.h.inc"

#endif // DSV3_OPS_H
