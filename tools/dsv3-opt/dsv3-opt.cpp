//===- dsv3-opt.cpp - mlir-opt for the dsv3 dialect and passes ------------===//
//
// Runs any dsv3 pass or pipeline alone on a .mlir file; used by the lit
// tests. Every standard mlir-opt flag works.
//
//===----------------------------------------------------------------------===//

#include "dialects/Dsv3/IR/Dsv3Dialect.h"
#include "dialects/Dsv3K/IR/Dsv3KOps.h"
#include "passes/Passes.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/DialectRegistry.h"
#include "mlir/Tools/mlir-opt/MlirOptMain.h"
#include "mlir/Transforms/Passes.h"

int main(int argc, char **argv) {
  mlir::registerTransformsPasses();
  mlir::dsv3::registerDsv3PassesAndPipelines();
  mlir::DialectRegistry registry;
  registry.insert<mlir::dsv3::Dsv3Dialect, mlir::dsv3k::Dsv3KDialect,
                  mlir::func::FuncDialect>();
  return mlir::asMainReturnCode(mlir::MlirOptMain(
      argc, argv, "dsv3 optimizer driver\n", registry));
}
