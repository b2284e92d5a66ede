//===- AttentionCheck.h - dsv3-run attention-check ------------*- C++ -*-===//
#ifndef DSV3_TOOLS_ATTENTIONCHECK_H
#define DSV3_TOOLS_ATTENTIONCHECK_H

#include <cstdint>
#include <string>

namespace dsv3rt {
/// The CUDA prefill attention over the latent cache (both kernels: bf16
/// tensor cores and fp32) on random operands at the artifact's MLA widths
/// against float64; returns the process status.
int attentionCheck(const std::string &artifact, int64_t T, int64_t past, uint64_t seed);
} // namespace dsv3rt

#endif
