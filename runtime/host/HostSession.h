//===- HostSession.h - run an artifact on the host ---------------*- C++ -*-===//
#ifndef DSV3_RUNTIME_HOST_HOSTSESSION_H
#define DSV3_RUNTIME_HOST_HOSTSESSION_H

#include "runtime/Artifact.h"
#include "runtime/Safetensors.h"
#include "runtime/host/HostTensor.h"

#include <functional>
#include <map>
#include <string>
#include <vector>

namespace dsv3rt {

/// Binds every parameter of `artifact` to its checkpoint tensors in
/// `weights`, checking names, shapes and dtypes; all problems are reported
/// in one Error. Returns each parameter's data converted to double.
struct BoundParam {
  std::vector<int64_t> shape;
  std::vector<double> data;
};
std::map<std::string, BoundParam> bindWeights(const Artifact &artifact,
                                              const WeightStore &weights);

/// Executes the entries of an artifact with the host kernels, in compute
/// type `Real` (float: the fp32 reference; double: for float64 checks).
/// Buffers live in one arena per session laid out by the artifact's
/// memory plan, so a planning error shows up as wrong numbers.
template <typename R> class HostSession {
public:
  using Real = R;
  HostSession(const Artifact &artifact, const WeightStore &weights);

  /// Runs entry `name` on `args` (views of caller memory: ids, past length,
  /// caches, which decode updates in place). Returns views of the results,
  /// valid until the next run.
  std::vector<HostTensor<Real>> run(const std::string &name,
                                    std::vector<HostTensor<Real>> args);

  const Artifact &artifact() const { return artifact_; }
  /// Launches whose kernels rounded activations to bf16: never on the host.
  int64_t bf16ActivationLaunches() const { return 0; }
  /// The host always keeps fp32 activations and adds FP8 blocks in fp32
  /// (CudaSession's switches).
  bool fp32Activations = true;
  bool exactFp8Accumulation = true;
  int64_t fp8WgmmaLaunches() const { return 0; }
  /// CudaSession's device-memory line; nothing to say on the host.
  std::string memoryReport() const { return {}; }
  /// The parameters' host copies (updated in place by training entries).
  std::map<std::string, std::vector<Real>> &paramData() { return paramData_; }

  /// Called after every launch with its index, kernel and outputs (for
  /// per-kernel comparisons between backends).
  std::function<void(size_t, const std::string &,
                     const std::vector<HostTensor<Real> *> &)>
      onLaunch;

private:
  const Artifact &artifact_;
  std::map<std::string, std::vector<Real>> paramData_;
  std::map<std::string, HostTensor<Real>> params_;
  std::vector<uint8_t> arena_;
  size_t scale_ = 1;
};

} // namespace dsv3rt

#endif // DSV3_RUNTIME_HOST_HOSTSESSION_H
