//===- HostTensor.h - buffers of the host backend -----------------*- C++ -*-===//
#ifndef DSV3_RUNTIME_HOST_HOSTTENSOR_H
#define DSV3_RUNTIME_HOST_HOSTTENSOR_H

#include "runtime/Error.h"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace dsv3rt {

/// A view of host memory with a runtime shape: floating data in the
/// backend's compute type `Real` (float or double), or int64 data.
template <typename Real> struct HostTensor {
  bool isInt = false;
  std::vector<int64_t> shape;
  Real *f = nullptr;
  int64_t *i = nullptr;
  size_t capacity = 0; // elements the storage holds

  int64_t numel() const {
    int64_t n = 1;
    for (int64_t d : shape)
      n *= d;
    return n;
  }
  int64_t dim(int k) const { return shape.at(k < 0 ? shape.size() + k : k); }
  int64_t rank() const { return int64_t(shape.size()); }
};

/// A host kernel: reads `ins`, writes `outs` (setting their shapes).
template <typename Real>
using HostKernelFn = void (*)(const std::string &kernel,
                              const nlohmann::json &params,
                              std::vector<HostTensor<Real> *> &ins,
                              std::vector<HostTensor<Real> *> &outs);

/// The host implementation of `kernel`, or nullptr.
template <typename Real> HostKernelFn<Real> findHostKernel(const std::string &kernel);

/// Names of every host kernel (for diagnostics).
std::vector<std::string> hostKernelNames();

} // namespace dsv3rt

#endif // DSV3_RUNTIME_HOST_HOSTTENSOR_H
