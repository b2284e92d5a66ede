//===- Bf16Check.h - dsv3-run bf16-check ------------------------*- C++ -*-===//
#ifndef DSV3_TOOLS_BF16CHECK_H
#define DSV3_TOOLS_BF16CHECK_H

#include <cstdint>
#include <string>
#include <vector>

namespace dsv3rt {
/// The CUDA kernels that round activations to bf16 (bf16 and FP8 models),
/// on random operands at the artifact's widths against float64: the
/// prefill attention over the latent cache (T new queries after `past`
/// cached positions; its fp32 twin too) and, with M > 0, the bf16 GEMMs at
/// M x N x K (plain with bias and residual, gated, grouped over experts).
/// Returns the process status.
int bf16Check(const std::string &artifact, int64_t T, int64_t past, int64_t M, int64_t N,
              int64_t K, uint64_t seed);

/// The row counts of the checks' grouped GEMMs (bf16-check, fp8-gemm), one
/// an expert: 4 experts by default (M/2, 0, M/4, the rest);
/// DSV3_CHECK_EXPERTS=E spreads M rows over E experts unevenly, every 7th
/// one empty (E > 32 crosses the grouped kernels' 32-expert tile lookup).
std::vector<int64_t> checkExpertCounts(int64_t M);
} // namespace dsv3rt

#endif
