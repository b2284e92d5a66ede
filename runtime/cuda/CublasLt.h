//===- CublasLt.h - cuBLASLt for the plain bf16 GEMMs, loaded at run time -===//
//
// The prefill's and training's plain bf16 GEMMs (no bias, no grouping, no
// gated epilogue) through cublasLtMatmul where it beats gemm_bf16_tma on
// the bench slice (docs/benchmarks.md). libcublasLt is opened with dlopen
// the first time it is asked for, so dsv3-run runs where it is missing
// (then gemm_bf16_tma runs). DSV3_CUBLAS=0 never uses it; DSV3_CUBLAS=1
// requires it; DSV3_CUBLAS_LIB=PATH names the library.
//
//===----------------------------------------------------------------------===//
#ifndef DSV3_RUNTIME_CUDA_CUBLASLT_H
#define DSV3_RUNTIME_CUDA_CUBLASLT_H

#include "runtime/cuda/CudaDriver.h"

#include <cstdint>
#include <string>

namespace dsv3rt::cuda {

/// Whether this session's plain bf16 GEMMs may run on cuBLASLt: the library
/// loads, DSV3_CUBLAS is not "0", and the GPU is sm_80 or newer.
/// DSV3_CUBLAS=1 makes a library that does not load an error. `device`
/// (the GPU's name) keys the record of tuned algorithms (CublasLt.cpp).
bool cublasLtAvailable(int computeCapability, const std::string &device);

/// y[M, N] (fp32, row-major) = xb[M, K] (bf16) W[N, K]^T (bf16) (+ res[M, N],
/// fp32, which may be y), fp32 accumulation, on `stream`. Fails with a
/// message naming `what` when cuBLASLt refuses the shape.
void cublasLtGemm(const char *what, CUstream stream, CUdeviceptr xb, CUdeviceptr W,
                  CUdeviceptr res, CUdeviceptr y, int64_t M, int64_t N, int64_t K);

/// y[M, N] (fp32, row-major) = the block-scaled FP8 product of DeepSeek-V3
/// (3.3.2): xq[M, K] e4m3 codes with fp32 scales per token per 128 columns,
/// stored [ceil(K / 128), M] (M contiguous: cuBLASLt's "outer-dim-major"
/// 1x128 layout, not fp8_quantize's [M, ceil(K / 128)]), times Wq[N, K]^T
/// e4m3 with fp32 scales per 128 x 128 block [ceil(N / 128), ceil(K /
/// 128)] (the checkpoint's `weight_scale_inv` layout) (+ res[M, N], fp32,
/// which may be y); each block's products summed in the tensor cores, then
/// scaled and added in fp32. Hopper and cuBLAS 12.9 or newer: false (and
/// nothing run) where cuBLASLt has no algorithm for the shape, so the
/// caller runs its own kernel.
bool cublasLtFp8Gemm(const char *what, CUstream stream, CUdeviceptr xq, CUdeviceptr xScales,
                     CUdeviceptr Wq, CUdeviceptr wScales, CUdeviceptr res, CUdeviceptr y,
                     int64_t M, int64_t N, int64_t K);
/// Whether cublasLtFp8Gemm was asked for this shape before and had no
/// algorithm (the caller then skips what it prepares for the library).
bool cublasLtFp8Refused(int64_t M, int64_t N, int64_t K, bool res);

/// `batch` products in cuBLAS's column-major terms: D_i[m, n] (fp32, ldd)
/// = op(A_i)[m, k] B_i[k, n] (bf16; op(A) = A^T, A stored k x m with lda,
/// when transA), X_i = X + i * strideX (elements), fp32 accumulation, D
/// overwritten. The heuristic's first algorithm (the absorbed decode's
/// per-head products: small, untimed).
void cublasLtGemmStridedBatched(const char *what, CUstream stream, bool transA, CUdeviceptr A,
                                int64_t lda, int64_t strideA, CUdeviceptr B, int64_t ldb,
                                int64_t strideB, CUdeviceptr D, int64_t ldd, int64_t strideD,
                                int64_t m, int64_t n, int64_t k, int64_t batch);

} // namespace dsv3rt::cuda

#endif // DSV3_RUNTIME_CUDA_CUBLASLT_H
