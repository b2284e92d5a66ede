//===- ArtifactWriter.h - write a compiled artifact ---------------*- C++ -*-===//
#ifndef DSV3_CODEGEN_ARTIFACTWRITER_H
#define DSV3_CODEGEN_ARTIFACTWRITER_H

#include "codegen/CudaEmitter.h"

#include "mlir/IR/BuiltinOps.h"

#include <nlohmann/json.hpp>

#include <string>

namespace mlir::dsv3 {

/// Version of manifest.json; the runtime refuses other versions.
constexpr int kArtifactVersion = 1;

/// Writes the artifact of a planned dsv3k module into `dir`: manifest.json
/// (parameters with their checkpoint bindings, and per entry its
/// arguments, results, buffers and launches in order) and model.mlir (the
/// final IR). Fails with a diagnostic when the module is not planned.
/// With `cuda`, also the CUDA kernels (cuda/: source, cubins, PTX) compiled
/// by NVRTC for those targets.
LogicalResult writeArtifact(ModuleOp module, const std::string &dir,
                            const ::dsv3::CudaTargets *cuda = nullptr);

/// The manifest of a planned dsv3k module (what writeArtifact writes).
FailureOr<nlohmann::json> buildManifest(ModuleOp module);

} // namespace mlir::dsv3

#endif // DSV3_CODEGEN_ARTIFACTWRITER_H
