//===- Fp8Launch.h - how a launch names its FP8 weights' scales --*- C++ -*-===//
//
// dsv3-lower-to-kernels passes an FP8 weight's e4m3 buffer in the weight's
// place and its block scales after the op's operands, `fp8_scales[i]`
// naming the scales of input i (-1: not FP8) and `fp8_block` their block.
// Shared by the host kernels and the CUDA launchers (header-only, no MLIR).
//
//===----------------------------------------------------------------------===//
#ifndef DSV3_RUNTIME_FP8LAUNCH_H
#define DSV3_RUNTIME_FP8LAUNCH_H

#include <nlohmann/json.hpp>

#include <cstdint>

namespace dsv3rt {

/// The op's operands among a launch's `inputs` (FP8 scales follow them).
inline size_t fp8LaunchOperands(const nlohmann::json &p, size_t inputs) {
  return p.contains("fp8_scales") ? p.at("fp8_scales").size() : inputs;
}

/// The input holding the scales of input `i`, or -1 when `i` is not FP8.
inline int64_t fp8ScalesInput(const nlohmann::json &p, size_t i) {
  if (!p.contains("fp8_scales"))
    return -1;
  const nlohmann::json &scales = p.at("fp8_scales");
  return i < scales.size() ? scales[i].get<int64_t>() : -1;
}

} // namespace dsv3rt

#endif // DSV3_RUNTIME_FP8LAUNCH_H
