//===- Dsv3Dialect.cpp - dsv3 dialect registration ------------------------===//
#include "dialects/Dsv3/IR/Dsv3Dialect.h"
#include "dialects/Dsv3/IR/Dsv3Ops.h"

#include "mlir/IR/DialectImplementation.h"
#include "llvm/ADT/TypeSwitch.h"

using namespace mlir;
using namespace mlir::dsv3;

#include "dialects/Dsv3/IR/Dsv3Dialect.cpp.inc"

void Dsv3Dialect::initialize() {
  addOperations<
#define GET_OP_LIST
#include "dialects/Dsv3/IR/Dsv3Ops.cpp.inc"
      >();
  registerAttributes();
}
