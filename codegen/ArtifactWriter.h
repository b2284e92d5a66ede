//===- ArtifactWriter.h - write a compiled artifact ---------------*- C++ -*-===//
#ifndef DSV3_CODEGEN_ARTIFACTWRITER_H
#define DSV3_CODEGEN_ARTIFACTWRITER_H

#include "mlir/IR/BuiltinOps.h"

#include <string>

namespace mlir::dsv3 {

/// Version of manifest.json; the runtime refuses other versions.
constexpr int kArtifactVersion = 1;

/// Writes the artifact of a planned dsv3k module into `dir`: manifest.json
/// (parameters with their checkpoint bindings, and per entry its
/// arguments, results, buffers and launches in order) and model.mlir (the
/// final IR). Fails with a diagnostic when the module is not planned.
LogicalResult writeArtifact(ModuleOp module, const std::string &dir);

} // namespace mlir::dsv3

#endif // DSV3_CODEGEN_ARTIFACTWRITER_H
