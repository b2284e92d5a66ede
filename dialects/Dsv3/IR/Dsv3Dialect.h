//===- Dsv3Dialect.h - the dsv3 dialect ---------------------------*- C++ -*-===//
#ifndef DSV3_DIALECT_H
#define DSV3_DIALECT_H

#include "mlir/IR/Dialect.h"

#include "dialects/Dsv3/IR/Dsv3Dialect.h.inc"

#endif // DSV3_DIALECT_H
