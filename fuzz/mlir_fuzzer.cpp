//===- mlir_fuzzer.cpp - libFuzzer target: dsv3 IR through the parser -----===//
// Any bytes as an MLIR module in the dsv3 / dsv3k dialects (what dsv3-opt
// reads): the parser and the verifiers must accept or reject it with a
// diagnostic, never crash, hang or trip a sanitizer. Exercises the custom
// assembly parsers and verifiers of every op, attribute and enum.
#include "dialects/Dsv3/IR/Dsv3Dialect.h"
#include "dialects/Dsv3/IR/Dsv3Ops.h"
#include "dialects/Dsv3K/IR/Dsv3KOps.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/IR/Verifier.h"
#include "mlir/Parser/Parser.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/SourceMgr.h"

#include <cstddef>
#include <cstdint>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static mlir::MLIRContext *context = [] {
    mlir::DialectRegistry registry;
    registry.insert<mlir::dsv3::Dsv3Dialect, mlir::dsv3k::Dsv3KDialect, mlir::func::FuncDialect>();
    auto *c = new mlir::MLIRContext(registry);
    c->loadAllAvailableDialects();
    c->disableMultithreading();
    // Diagnostics are the expected outcome of bad input: swallow them.
    c->getDiagEngine().registerHandler([](mlir::Diagnostic &) { return mlir::success(); });
    return c;
  }();
  // MLIR's own parser recurses once per nesting level of attributes and
  // types, so input nested thousands deep exhausts the stack (upstream, in
  // mlir::detail::Parser::parseAttribute; found by this target): skip
  // inputs nested deeper than any real module, to keep fuzzing our parsers.
  int depth = 0, deepest = 0;
  for (size_t i = 0; i < size; ++i) {
    char c = char(data[i]);
    depth += (c == '[' || c == '{' || c == '(' || c == '<') - (c == ']' || c == '}' || c == ')' || c == '>');
    deepest = depth > deepest ? depth : deepest;
  }
  if (deepest > 256)
    return 0;
  // As dsv3-opt reads a file: a null-terminated buffer (MLIR's lexer relies
  // on the terminator).
  llvm::SourceMgr sources;
  sources.AddNewSourceBuffer(
      llvm::MemoryBuffer::getMemBufferCopy(
          llvm::StringRef(reinterpret_cast<const char *>(data), size), "fuzz.mlir"),
      llvm::SMLoc());
  mlir::ParserConfig config(context);
  mlir::OwningOpRef<mlir::ModuleOp> module =
      mlir::parseSourceFile<mlir::ModuleOp>(sources, config);
  if (module)
    (void)mlir::verify(*module);
  return 0;
}
