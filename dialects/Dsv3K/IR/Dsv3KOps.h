//===- Dsv3KOps.h - the dsv3k kernel-level dialect ----------------*- C++ -*-===//
#ifndef DSV3K_OPS_H
#define DSV3K_OPS_H

#include "mlir/Bytecode/BytecodeOpInterface.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/BuiltinTypes.h"
#include "mlir/IR/Dialect.h"
#include "mlir/IR/OpDefinition.h"
#include "mlir/IR/SymbolTable.h"
#include "mlir/Interfaces/SideEffectInterfaces.h"

#include "dialects/Dsv3K/IR/Dsv3KDialect.h.inc"

#define GET_OP_CLASSES
#include "dialects/Dsv3K/IR/Dsv3KOps.h.inc"

#endif // DSV3K_OPS_H
