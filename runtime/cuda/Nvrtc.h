//===- Nvrtc.h - compile the kernel templates with NVRTC ----------*- C++ -*-===//
//
// One NVRTC call shared by the compiler (dsv3c writes cubin and PTX into the
// artifact) and the runtime (which re-JITs the artifact's source for a GPU
// it has no cubin for, caching the result on disk). MLIR-free.
//
//===----------------------------------------------------------------------===//
#ifndef DSV3_RUNTIME_CUDA_NVRTC_H
#define DSV3_RUNTIME_CUDA_NVRTC_H

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace dsv3rt::cuda {

struct NvrtcOutput {
  std::string binary; ///< a cubin for sm_XX[a], PTX for compute_XX
  bool cubin = false;
  /// Name expression (`dsv3::linear<7168, 512, float>`) -> mangled name.
  std::map<std::string, std::string> lowered;
};

/// Whether this build has NVRTC.
bool haveNvrtc();
/// "major.minor", empty without NVRTC.
std::string nvrtcVersionString();
/// Compiles `source` for `arch` (sm_90a, compute_80, ...), instantiating
/// `instances`. On failure returns false with the NVRTC log in `error`.
bool nvrtcCompile(const std::string &source, const std::vector<std::string> &instances,
                  const std::string &arch, NvrtcOutput &out, std::string &error);

/// The on-disk cache of runtime re-JITs: $DSV3_CACHE_DIR, else
/// $XDG_CACHE_HOME/dsv3, else ~/.cache/dsv3.
std::string jitCacheDir();
/// FNV-1a of `s`, 64 bits: stable across builds and machines (std::hash is
/// not), for the cache's file names.
uint64_t stableHash(const std::string &s);
/// mkdir -p `dir`; false when a component cannot be made.
bool makeDirectories(const std::string &dir);
/// The cubin of `source` for `arch`: read from `cacheDir` when a file keyed
/// by the source's hash, the arch and the NVRTC version is there, else
/// compiled and written there atomically. `cached` says which.
bool jitCubin(const std::string &source, const std::vector<std::string> &instances,
              const std::string &arch, const std::string &cacheDir, std::string &cubin,
              std::string &path, bool &cached, std::string &error);

} // namespace dsv3rt::cuda

#endif // DSV3_RUNTIME_CUDA_NVRTC_H
