//===- CudaSession.h - run an artifact on an NVIDIA GPU -----------*- C++ -*-===//
#ifndef DSV3_RUNTIME_CUDA_CUDASESSION_H
#define DSV3_RUNTIME_CUDA_CUDASESSION_H

#include "runtime/Artifact.h"
#include "runtime/Safetensors.h"
#include "runtime/cuda/CudaDriver.h"
#include "runtime/host/HostTensor.h"

#include <functional>
#include <map>
#include <string>
#include <vector>

namespace dsv3rt::cuda {

struct Dim3 {
  unsigned x = 1, y = 1, z = 1;
};

/// A buffer on the GPU with its runtime shape.
struct DevTensor {
  bool isInt = false;
  std::vector<int64_t> shape;
  CUdeviceptr ptr = 0;
  size_t capacity = 0; // elements
  int64_t scalar = 0;  // the value of an i64 scalar argument (host copy)
  bool bf16 = false;   // weights stored as bf16 (activations are float)
  int64_t numel() const {
    int64_t n = 1;
    for (int64_t d : shape)
      n *= d;
    return n;
  }
  int64_t dim(int k) const { return shape.at(k < 0 ? shape.size() + k : k); }
};

/// Executes an artifact's entries on the GPU with the kernels NVRTC
/// compiled into it (the cubin of this GPU's architecture, else PTX that
/// the driver JITs). Same interface as HostSession<float>: arguments and
/// results are host tensors; weights are uploaded once; one allocation
/// holds every entry's arena as the memory plan lays it out.
class CudaSession {
public:
  using Real = float;
  CudaSession(const Artifact &artifact, const WeightStore &weights);
  ~CudaSession();

  std::vector<HostTensor<float>> run(const std::string &name,
                                     std::vector<HostTensor<float>> args);
  const Artifact &artifact() const { return artifact_; }
  std::map<std::string, std::vector<float>> &paramData();
  /// Called after every launch with its index, kernel and outputs copied to
  /// the host (synchronising the stream: for per-kernel comparisons).
  std::function<void(size_t, const std::string &,
                     const std::vector<HostTensor<float> *> &)>
      onLaunch;

  /// "NVIDIA H100 80GB HBM3 (sm_90, cubin sm_90a)".
  const std::string &description() const { return description_; }

  // For the launchers.
  CUfunction function(const std::string &instance);
  /// Scratch memory for the current launch (valid until the next launch:
  /// launches run in stream order).
  CUdeviceptr workspace(size_t bytes);
  /// A device copy of a small constant table (uploaded once per key).
  CUdeviceptr constant(const std::string &key, const std::vector<float> &data);
  void launch(const std::string &instance, Dim3 grid, Dim3 block, size_t smem,
              std::vector<void *> args, const std::string &what);
  void upload(CUdeviceptr dst, const void *src, size_t bytes, const std::string &what);
  Driver &driver() { return drv_; }
  CUstream stream() const { return stream_; }

private:
  const Artifact &artifact_;
  Driver &drv_;
  CUdevice device_ = 0;
  CUcontext context_ = nullptr;
  CUstream stream_ = nullptr;
  CUmodule module_ = nullptr;
  std::string description_;
  std::map<std::string, std::string> lowered_; // instance -> mangled name
  std::map<std::string, CUfunction> functions_;
  std::map<std::string, DevTensor> params_;
  std::map<std::string, std::vector<float>> hostParams_;
  CUdeviceptr arena_ = 0;
  size_t arenaBytes_ = 0;
  /// Activations are float on the GPU: a plan laid out for narrower
  /// elements (bf16 models) is scaled uniformly, as on the host.
  size_t scale_ = 1;
  /// Workspace chunks, never freed while the session lives (an earlier
  /// piece of the same launch may still be in use), reused by every launch.
  std::vector<std::pair<CUdeviceptr, size_t>> chunks_;
  size_t chunk_ = 0, chunkUsed_ = 0;
  std::map<std::string, CUdeviceptr> constants_;
  std::vector<CUdeviceptr> argBuffers_;
};

/// A kernel's launcher: computes the output shapes (as the host kernel
/// does) and launches the CUDA instances KernelNames.h names.
using Launcher = void (*)(CudaSession &s, const std::string &kernel,
                          const nlohmann::json &params,
                          std::vector<DevTensor *> &ins,
                          std::vector<DevTensor *> &outs);
Launcher findLauncher(const std::string &kernel);

} // namespace dsv3rt::cuda

#endif // DSV3_RUNTIME_CUDA_CUDASESSION_H
