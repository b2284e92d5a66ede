//===- CudaEmitter.h - CUDA sources and NVRTC for an artifact ------*- C++ -*-===//
#ifndef DSV3_CODEGEN_CUDAEMITTER_H
#define DSV3_CODEGEN_CUDAEMITTER_H

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

namespace dsv3 {

struct CudaTargets {
  /// Each "sm_XX[a]" gives a cubin, each "compute_XX" PTX.
  std::vector<std::string> archs = {"sm_90a", "compute_80"};
};

/// The template instances every launch of `manifest` needs (sorted, unique).
std::vector<std::string> cudaInstances(const nlohmann::json &manifest);

/// The CUDA source of the artifact: the kernel templates plus a comment
/// listing the instances.
std::string cudaSource(const std::vector<std::string> &instances);

/// Compiles the instances with NVRTC for every target, writes DIR/cuda/
/// (kernels.cu, one .cubin or .ptx per target) and records them, with each
/// instance's lowered (mangled) name, in manifest["cuda"]. Returns false
/// and sets `error` (with NVRTC's log) on failure.
bool emitCuda(nlohmann::json &manifest, const std::string &dir,
              const CudaTargets &targets, std::string &error);

/// The NVRTC version as "major.minor", or "" when built without NVRTC.
std::string nvrtcVersion();

} // namespace dsv3

#endif // DSV3_CODEGEN_CUDAEMITTER_H
