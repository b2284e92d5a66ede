// dsv3_kernels.cuh - the CUDA kernel templates of dsv3.
//
// Compiled by NVRTC (no host headers): dsv3c instantiates each template with
// the model's widths as compile-time constants (KernelNames.h lists which)
// and stores the cubin (sm_90a) and PTX (compute_80) in the artifact; the
// runtime's launchers (runtime/cuda/CudaLaunchers.cpp) pass the dynamic
// extents. fp32 storage and accumulation: this is the correctness baseline
// the fused, bf16 and Hopper-specific kernels are checked against.

typedef long long i64;

// The layout constants the runtime sizes launches by (stages, pads): dsv3c
// embeds dsv3_kernel_layout.h ahead of this file, so NVRTC never opens it.
#ifndef DSV3_KERNEL_LAYOUT_H
#include "dsv3_kernel_layout.h"
#endif

#ifndef INFINITY
#define INFINITY __int_as_float(0x7f800000)
#endif

namespace dsv3 {

/// Weights are stored as float or as bf16 (the top 16 bits of a float,
/// `unsigned short` here: NVRTC needs no header for it); activations are
/// float. Every weight read goes through wload.
__device__ __forceinline__ float wload(const float *p, i64 i) { return p[i]; }
__device__ __forceinline__ float wload(const unsigned short *p, i64 i) {
  return __uint_as_float(unsigned(p[i]) << 16);
}

/// 8 bf16 weights from one 16-byte load (p 16-byte aligned).
__device__ __forceinline__ void wload8(const unsigned short *p, float *w) {
  uint4 v = *reinterpret_cast<const uint4 *>(p);
  unsigned u[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    w[2 * i] = __uint_as_float(u[i] << 16);
    w[2 * i + 1] = __uint_as_float(u[i] & 0xffff0000u);
  }
}
/// 8 floats (p 16-byte aligned).
__device__ __forceinline__ void xload8(const float *p, float *x) {
  float4 a = *reinterpret_cast<const float4 *>(p), b = *reinterpret_cast<const float4 *>(p + 4);
  x[0] = a.x; x[1] = a.y; x[2] = a.z; x[3] = a.w;
  x[4] = b.x; x[5] = b.y; x[6] = b.z; x[7] = b.w;
}
/// Whether the few-row kernels read 8 bf16 weights per lane at once: bf16
/// weights, K a multiple of 256 (32 lanes x 8), x rows 16-byte aligned.
template <int K, typename WT>
__device__ __forceinline__ bool vectorRows(const float *x, i64 ldx) {
  return sizeof(WT) == 2 && K % 256 == 0 && ldx % 4 == 0 &&
         (reinterpret_cast<unsigned long long>(x) & 15) == 0;
}

__device__ __forceinline__ float warpSum(float v) {
  for (int o = 16; o > 0; o >>= 1)
    v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ float warpMax(float v) {
  for (int o = 16; o > 0; o >>= 1)
    v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}
/// Sum over the block (blockDim.x a multiple of 32, at most 1024).
__device__ float blockSum(float v) {
  __shared__ float partial[32];
  __shared__ float total;
  v = warpSum(v);
  int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0)
    partial[warp] = v;
  __syncthreads();
  if (warp == 0) {
    float s = lane < (blockDim.x >> 5) ? partial[lane] : 0.f;
    s = warpSum(s);
    if (lane == 0)
      total = s;
  }
  __syncthreads();
  float r = total;
  __syncthreads();
  return r;
}
__device__ float blockMax(float v) {
  __shared__ float partial[32];
  __shared__ float total;
  v = warpMax(v);
  int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0)
    partial[warp] = v;
  __syncthreads();
  if (warp == 0) {
    float s = lane < (blockDim.x >> 5) ? partial[lane] : -INFINITY;
    s = warpMax(s);
    if (lane == 0)
      total = s;
  }
  __syncthreads();
  float r = total;
  __syncthreads();
  return r;
}
/// The block's max of x[0 .. n) and the sum of exp(x - max), in one pass
/// over x: each thread's running sum is rescaled when its max moves, then
/// to the block's max (a row of logits is read once, not twice). Where x
/// allows 16-byte loads (n % 4 == 0, aligned), two of them in flight a
/// thread and the sum rescaled once a 4-vector: a 0.5 MB row of V3's
/// logits is read at close to HBM bandwidth rather than at a load a thread.
__device__ void blockMaxSumExp(const float *x, i64 n, float &mx, float &sum) {
  float m = -INFINITY, part = 0.f;
  i64 done = 0;
  if (n % 4 == 0 && (reinterpret_cast<unsigned long long>(x) & 15) == 0) {
    const float4 *x4 = reinterpret_cast<const float4 *>(x);
    const i64 n4 = n / 4, step = blockDim.x;
    auto fold = [&](float4 v) {
      const float top = fmaxf(fmaxf(v.x, v.y), fmaxf(v.z, v.w));
      if (top > m) {
        part *= expf(m - top); // expf(-inf) = 0 on the first
        m = top;
      }
      part += expf(v.x - m) + expf(v.y - m) + expf(v.z - m) + expf(v.w - m);
    };
    i64 c = threadIdx.x;
    for (; c + step < n4; c += 2 * step) {
      const float4 a = x4[c], b = x4[c + step];
      fold(a);
      fold(b);
    }
    if (c < n4)
      fold(x4[c]);
    done = n;
  }
  for (i64 c = done + threadIdx.x; c < n; c += blockDim.x) {
    const float v = x[c];
    if (v > m) {
      part = part * expf(m - v) + 1.f; // expf(-inf) = 0 on the first
      m = v;
    } else {
      part += expf(v - m);
    }
  }
  mx = blockMax(m);
  sum = blockSum(m == -INFINITY ? 0.f : part * expf(m - mx));
}

/// Block (t, c): token t's columns c * blockDim.x + k * blockDim.x *
/// gridDim.y (gridDim.y > 1 for a few tokens: one block per token left a
/// decode step's single row to 128 threads, ~30 us of latency).
template <int H, typename WT>
__global__ void embedding(const i64 *ids, const WT *table, float *out, i64 n) {
  i64 t = blockIdx.x;
  if (t >= n)
    return;
  const WT *row = table + ids[t] * H;
  for (int j = blockIdx.y * blockDim.x + threadIdx.x; j < H; j += blockDim.x * gridDim.y)
    out[t * H + j] = wload(row, j);
}

/// y[b] = x[b, T - 1] (the prefill entry's last positions): a block per
/// sequence.
template <int Unused>
__global__ void last_token(const float *x, float *y, i64 T, i64 H) {
  i64 b = blockIdx.x;
  for (i64 j = threadIdx.x; j < H; j += blockDim.x)
    y[b * H + j] = x[(b * T + T - 1) * H + j];
}

/// 1 / sqrt(mean(x^2) + eps) of the row xr, over the block: rms_norm and
/// rms_norm_stored sum the squares so (the same order: the same bits).
__device__ __forceinline__ float rmsInverse(const float *xr, int N, float eps) {
  float ss = 0.f;
  for (int j = threadIdx.x; j < N; j += blockDim.x)
    ss += xr[j] * xr[j];
  ss = blockSum(ss);
  return rsqrtf(ss / N + eps);
}

/// One block per row: y = w * x / sqrt(mean(x^2) + eps).
template <int N, typename WT>
__global__ void rms_norm(const float *x, const WT *w, float *y, i64 rows,
                         float eps, i64 ldx, i64 ldy) {
  i64 r = blockIdx.x;
  if (r >= rows)
    return;
  const float *xr = x + r * ldx;
  const float inv = rmsInverse(xr, N, eps);
  for (int j = threadIdx.x; j < N; j += blockDim.x)
    y[r * ldy + j] = wload(w, j) * (xr[j] * inv);
}

/// rms_norm for a few rows (decode), 256 threads a row: a thread's
/// elements (j = thread + 256 k) and weights loaded into registers before
/// any arithmetic, so one memory round trip serves the row where rms_norm's
/// loops wait on each load (~20 us a one-row call at 7168 on an H200).
/// The same sums in the same order as rms_norm with 256 threads: the same
/// bits. N <= 256 * 32 (the launcher checks).
template <int N, typename WT>
__global__ void __launch_bounds__(256)
    rms_norm_rows(const float *x, const WT *w, float *y, i64 rows, float eps, i64 ldx, i64 ldy) {
  constexpr int P = (N + 255) / 256;
  i64 r = blockIdx.x;
  if (r >= rows)
    return;
  const float *xr = x + r * ldx;
  float v[P], wv[P];
#pragma unroll
  for (int k = 0; k < P; ++k) {
    int j = threadIdx.x + k * 256;
    v[k] = j < N ? xr[j] : 0.f;
    wv[k] = j < N ? wload(w, j) : 0.f;
  }
  float ss = 0.f;
#pragma unroll
  for (int k = 0; k < P; ++k)
    if (threadIdx.x + k * 256 < N)
      ss += v[k] * v[k];
  ss = blockSum(ss);
  float inv = rsqrtf(ss / N + eps);
#pragma unroll
  for (int k = 0; k < P; ++k) {
    int j = threadIdx.x + k * 256;
    if (j < N)
      y[r * ldy + j] = wv[k] * (v[k] * inv);
  }
}

/// y[r, n] = sum_k x[r, k] W[n, k] (+ b[n]) (+ res[r, n]): 16x16 output
/// tiles, K in 16-wide shared-memory steps. x rows are `ldx` apart; the
/// residual (dsv3-fuse-residual) is added in the epilogue.
template <int N, int K, typename WT>
__global__ void linear(const float *x, i64 ldx, const WT *W, const WT *b,
                       const float *res, float *y, i64 rows) {
  __shared__ float xs[16][17];
  __shared__ float ws[16][17];
  int tx = threadIdx.x, ty = threadIdx.y;
  i64 r = i64(blockIdx.y) * 16 + ty;
  int n = blockIdx.x * 16 + tx;
  float acc = 0.f;
  for (int k0 = 0; k0 < K; k0 += 16) {
    i64 xr = i64(blockIdx.y) * 16 + ty;
    xs[ty][tx] = (xr < rows && k0 + tx < K) ? x[xr * ldx + k0 + tx] : 0.f;
    int wn = blockIdx.x * 16 + ty;
    ws[ty][tx] = (wn < N && k0 + tx < K) ? wload(W, i64(wn) * K + k0 + tx) : 0.f;
    __syncthreads();
#pragma unroll
    for (int k = 0; k < 16; ++k)
      acc += xs[ty][k] * ws[tx][k];
    __syncthreads();
  }
  if (r < rows && n < N) {
    if (b)
      acc += wload(b, n);
    if (res)
      acc += res[r * N + n];
    y[r * N + n] = acc;
  }
}

/// y[r, n] = silu(x[r] . Wg[n]) * (x[r] . Wu[n]): the tiling of `linear`
/// with both weights, SwiGLU in the epilogue (dsv3-fuse-swiglu).
template <int N, int K, typename WT>
__global__ void gated_linear(const float *x, const WT *Wg, const WT *Wu,
                             float *y, i64 rows) {
  __shared__ float xs[16][17];
  __shared__ float gs[16][17];
  __shared__ float us[16][17];
  int tx = threadIdx.x, ty = threadIdx.y;
  i64 r = i64(blockIdx.y) * 16 + ty;
  int n = blockIdx.x * 16 + tx;
  float g = 0.f, u = 0.f;
  for (int k0 = 0; k0 < K; k0 += 16) {
    xs[ty][tx] = (r < rows && k0 + tx < K) ? x[r * K + k0 + tx] : 0.f;
    int wn = blockIdx.x * 16 + ty;
    bool in = wn < N && k0 + tx < K;
    gs[ty][tx] = in ? wload(Wg, i64(wn) * K + k0 + tx) : 0.f;
    us[ty][tx] = in ? wload(Wu, i64(wn) * K + k0 + tx) : 0.f;
    __syncthreads();
#pragma unroll
    for (int k = 0; k < 16; ++k) {
      g += xs[ty][k] * gs[tx][k];
      u += xs[ty][k] * us[tx][k];
    }
    __syncthreads();
  }
  if (r < rows && n < N)
    y[r * N + n] = g / (1.f + expf(-g)) * u;
}

/// `linear` for a few rows (decode: one row per sequence): a warp per output
/// column, its lanes striding K, so each weight row is read once, coalesced,
/// and used for every row; the 16x16 tiling would leave 15 of 16 threads of
/// a tile idle and read the weights in 64-byte pieces. MaxRows bounds the
/// rows (the accumulators live in registers); the launcher picks this
/// schedule only when rows <= MaxRows.
template <int N, int K, int MaxRows, typename WT>
__global__ void linear_rows(const float *x, i64 ldx, const WT *W, const WT *b,
                            const float *res, float *y, i64 rows) {
  int lane = threadIdx.x % 32;
  int n = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
  if (n >= N)
    return;
  float acc[MaxRows] = {};
  const WT *w = W + i64(n) * K;
  if (vectorRows<K, WT>(x, ldx)) {
    // 16-byte weight loads: 512 bytes per warp per load instruction.
#pragma unroll 2
    for (int k = lane * 8; k < K; k += 256) {
      float w8[8];
      wload8(reinterpret_cast<const unsigned short *>(w) + k, w8);
#pragma unroll
      for (int r = 0; r < MaxRows; ++r)
        if (r < rows) {
          float x8[8];
          xload8(x + r * ldx + k, x8);
#pragma unroll
          for (int i = 0; i < 8; ++i)
            acc[r] += x8[i] * w8[i];
        }
    }
  } else {
#pragma unroll 4
    for (int k = lane; k < K; k += 32) {
      float wk = wload(w, k);
#pragma unroll
      for (int r = 0; r < MaxRows; ++r)
        if (r < rows)
          acc[r] += x[r * ldx + k] * wk;
    }
  }
#pragma unroll
  for (int r = 0; r < MaxRows; ++r) {
    if (r >= rows) // uniform across the warp: warpSum stays converged
      break;
    float v = warpSum(acc[r]);
    if (lane == 0) {
      if (b)
        v += wload(b, n);
      if (res)
        v += res[r * N + n];
      y[r * N + n] = v;
    }
  }
}

/// `gated_linear` for a few rows: the schedule of `linear_rows` with both
/// weights, SwiGLU on the reduced sums.
template <int N, int K, int MaxRows, typename WT>
__global__ void gated_linear_rows(const float *x, const WT *Wg, const WT *Wu,
                                  float *y, i64 rows) {
  int lane = threadIdx.x % 32;
  int n = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
  if (n >= N)
    return;
  float g[MaxRows] = {}, u[MaxRows] = {};
  const WT *wg = Wg + i64(n) * K, *wu = Wu + i64(n) * K;
  if (vectorRows<K, WT>(x, K)) {
#pragma unroll 2
    for (int k = lane * 8; k < K; k += 256) {
      float g8[8], u8[8];
      wload8(reinterpret_cast<const unsigned short *>(wg) + k, g8);
      wload8(reinterpret_cast<const unsigned short *>(wu) + k, u8);
#pragma unroll
      for (int r = 0; r < MaxRows; ++r)
        if (r < rows) {
          float x8[8];
          xload8(x + r * K + k, x8);
#pragma unroll
          for (int i = 0; i < 8; ++i) {
            g[r] += x8[i] * g8[i];
            u[r] += x8[i] * u8[i];
          }
        }
    }
  } else {
#pragma unroll 4
    for (int k = lane; k < K; k += 32) {
      float gk = wload(wg, k), uk = wload(wu, k);
#pragma unroll
      for (int r = 0; r < MaxRows; ++r)
        if (r < rows) {
          float xk = x[r * K + k];
          g[r] += xk * gk;
          u[r] += xk * uk;
        }
    }
  }
#pragma unroll
  for (int r = 0; r < MaxRows; ++r) {
    if (r >= rows)
      break;
    float gs = warpSum(g[r]), us = warpSum(u[r]);
    if (lane == 0)
      y[r * N + n] = gs / (1.f + expf(-gs)) * us;
  }
}

/// Tensor-core GEMM for bf16 weights and more than a few rows (prefill,
/// batched decode): y[r, n] = x[r] . W[n] (+ b[n]) (+ res[r, n]), or with
/// Gated, silu(x . Wg[n]) * (x . Wu[n]). mma.sync m16n8k16 (bf16 inputs,
/// fp32 accumulation; sm_80 and later). The fp32 activations are split as
/// hi + lo, both bf16, and both halves are multiplied (x = hi + lo to ~16
/// bits of mantissa): the weights are exactly bf16, so the product keeps
/// the fp32 kernels' accuracy (compared at 1e-4 with the host) at twice the
/// tensor work. Tiles: 64 rows x 64 columns x 32 of K per block, 4 warps of
/// 32 x 32; shared-memory rows padded to 40 bf16 (conflict-free fragment
/// loads).
#define DSV3_MMA_BM 64
#define DSV3_MMA_BN 64
#define DSV3_MMA_BK 32
#define DSV3_MMA_LD 40

__device__ __forceinline__ unsigned short bf16Bits(float v) { // round to nearest even
  unsigned u = __float_as_uint(v);
  return (unsigned short)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}
__device__ __forceinline__ float bf16Float(unsigned short b) {
  return __uint_as_float(unsigned(b) << 16);
}
__device__ __forceinline__ void mmaBf16(float *c, const unsigned *a, const unsigned *b) {
  asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
               "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
               : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}
__device__ __forceinline__ unsigned ld32(const unsigned short *p) {
  return *reinterpret_cast<const unsigned *>(p);
}

/// Block (blockIdx.x, tile) computes rows [row0, row0 + 64) x columns
/// [64 blockIdx.x, + 64) over K in [kBegin, kEnd); rows past `rows` are 0.
template <int N, int K, int Gated>
__device__ void mmaMainloop(const float *x, i64 ldx, const unsigned short *W,
                            const unsigned short *Wu, i64 rows, i64 row0, float (*acc)[4][4],
                            float (*accU)[4][4], int kBegin, int kEnd) {
  __shared__ __align__(16) unsigned short ahi[DSV3_MMA_BM * DSV3_MMA_LD];
  __shared__ __align__(16) unsigned short alo[DSV3_MMA_BM * DSV3_MMA_LD];
  __shared__ __align__(16) unsigned short ws[DSV3_MMA_BN * DSV3_MMA_LD];
  __shared__ __align__(16) unsigned short wus[Gated ? DSV3_MMA_BN * DSV3_MMA_LD : 2];
  int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  int wm = warp >> 1, wn = warp & 1, g = lane >> 2, q = lane & 3;
  int col0 = blockIdx.x * DSV3_MMA_BN;
  // 16-byte loads (8 of K a thread and matrix) when every row start is
  // 16-byte aligned: K % 8 == 0, ldx % 4 == 0, aligned bases.
  bool aligned = K % 8 == 0 && ldx % 4 == 0 && kBegin % 8 == 0 &&
                 (reinterpret_cast<unsigned long long>(x) & 15) == 0 &&
                 (reinterpret_cast<unsigned long long>(W) & 15) == 0 &&
                 (!Gated || (reinterpret_cast<unsigned long long>(Wu) & 15) == 0);
  for (int k0 = kBegin; k0 < kEnd; k0 += DSV3_MMA_BK) {
    __syncthreads();
    if (aligned && k0 + DSV3_MMA_BK <= kEnd) {
      for (int i = tid; i < DSV3_MMA_BM * DSV3_MMA_BK / 8; i += blockDim.x) {
        int r = i / (DSV3_MMA_BK / 8), c = (i % (DSV3_MMA_BK / 8)) * 8;
        i64 gr = row0 + r;
        float v[8] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f};
        if (gr < rows)
          xload8(x + gr * ldx + k0 + c, v);
        unsigned h[4], l[4];
#pragma unroll
        for (int j = 0; j < 4; ++j) {
          unsigned short h0 = bf16Bits(v[2 * j]), h1 = bf16Bits(v[2 * j + 1]);
          unsigned short l0 = bf16Bits(v[2 * j] - bf16Float(h0));
          unsigned short l1 = bf16Bits(v[2 * j + 1] - bf16Float(h1));
          h[j] = unsigned(h0) | (unsigned(h1) << 16);
          l[j] = unsigned(l0) | (unsigned(l1) << 16);
        }
        *reinterpret_cast<uint4 *>(ahi + r * DSV3_MMA_LD + c) = make_uint4(h[0], h[1], h[2], h[3]);
        *reinterpret_cast<uint4 *>(alo + r * DSV3_MMA_LD + c) = make_uint4(l[0], l[1], l[2], l[3]);
        int n = col0 + r;
        uint4 zero = make_uint4(0u, 0u, 0u, 0u);
        *reinterpret_cast<uint4 *>(ws + r * DSV3_MMA_LD + c) =
            n < N ? *reinterpret_cast<const uint4 *>(W + i64(n) * K + k0 + c) : zero;
        if (Gated)
          *reinterpret_cast<uint4 *>(wus + r * DSV3_MMA_LD + c) =
              n < N ? *reinterpret_cast<const uint4 *>(Wu + i64(n) * K + k0 + c) : zero;
      }
    } else
    // 64 x 32 of x (fp32 -> hi, lo) and of each weight: 16 elements a thread.
    for (int i = tid; i < DSV3_MMA_BM * DSV3_MMA_BK; i += blockDim.x) {
      int r = i / DSV3_MMA_BK, c = i % DSV3_MMA_BK;
      i64 gr = row0 + r;
      float v = gr < rows && k0 + c < kEnd ? x[gr * ldx + k0 + c] : 0.f;
      unsigned short hi = bf16Bits(v);
      ahi[r * DSV3_MMA_LD + c] = hi;
      alo[r * DSV3_MMA_LD + c] = bf16Bits(v - bf16Float(hi));
      int n = col0 + r;
      bool in = n < N && k0 + c < kEnd;
      ws[r * DSV3_MMA_LD + c] = in ? W[i64(n) * K + k0 + c] : (unsigned short)0;
      if (Gated)
        wus[r * DSV3_MMA_LD + c] = in ? Wu[i64(n) * K + k0 + c] : (unsigned short)0;
    }
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < DSV3_MMA_BK; kk += 16) {
      unsigned ah[2][4], al[2][4];
#pragma unroll
      for (int mt = 0; mt < 2; ++mt) {
        int r = wm * 32 + mt * 16 + g;
        const unsigned short *ph = ahi + r * DSV3_MMA_LD + kk + q * 2;
        const unsigned short *pl = alo + r * DSV3_MMA_LD + kk + q * 2;
        ah[mt][0] = ld32(ph);
        ah[mt][1] = ld32(ph + 8 * DSV3_MMA_LD);
        ah[mt][2] = ld32(ph + 8);
        ah[mt][3] = ld32(ph + 8 * DSV3_MMA_LD + 8);
        al[mt][0] = ld32(pl);
        al[mt][1] = ld32(pl + 8 * DSV3_MMA_LD);
        al[mt][2] = ld32(pl + 8);
        al[mt][3] = ld32(pl + 8 * DSV3_MMA_LD + 8);
      }
#pragma unroll
      for (int nt = 0; nt < 4; ++nt) {
        int n = wn * 32 + nt * 8 + g;
        unsigned bw[2] = {ld32(ws + n * DSV3_MMA_LD + kk + q * 2),
                          ld32(ws + n * DSV3_MMA_LD + kk + 8 + q * 2)};
#pragma unroll
        for (int mt = 0; mt < 2; ++mt) {
          mmaBf16(acc[mt][nt], ah[mt], bw);
          mmaBf16(acc[mt][nt], al[mt], bw);
        }
        if (Gated) {
          unsigned bu[2] = {ld32(wus + n * DSV3_MMA_LD + kk + q * 2),
                            ld32(wus + n * DSV3_MMA_LD + kk + 8 + q * 2)};
#pragma unroll
          for (int mt = 0; mt < 2; ++mt) {
            mmaBf16(accU[mt][nt], ah[mt], bu);
            mmaBf16(accU[mt][nt], al[mt], bu);
          }
        }
      }
    }
  }
}

/// Calls f(mt, nt, e, r, n) for each accumulator element this thread holds
/// after mmaMainloop (the m16n8 C-fragment layout: rows g and g + 8, columns
/// 2q and 2q + 1 of each 16 x 8 tile), for the in-range (row, column) only.
template <int N, typename F>
__device__ __forceinline__ void mmaEpilogue(i64 rows, i64 row0, F f) {
  int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  int wm = warp >> 1, wn = warp & 1, g = lane >> 2, q = lane & 3;
#pragma unroll
  for (int mt = 0; mt < 2; ++mt)
#pragma unroll
    for (int nt = 0; nt < 4; ++nt)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        i64 r = row0 + wm * 32 + mt * 16 + g + (e >= 2 ? 8 : 0);
        int n = blockIdx.x * DSV3_MMA_BN + wn * 32 + nt * 8 + q * 2 + (e & 1);
        if (r < rows && n < N)
          f(mt, nt, e, r, n);
      }
}

/// grid (ceil(N / 64), ceil(rows / 64), splits), 128 threads. With
/// split-K (splits > 1: few tiles, e.g. a batched decode step, would leave
/// most SMs idle), block z sums K in [z kChunk, (z + 1) kChunk) into
/// part[z] and splitk_reduce finishes (fixed order: deterministic).
template <int N, int K>
__global__ void linear_mma(const float *x, i64 ldx, const unsigned short *W,
                           const unsigned short *b, const float *res, float *y, i64 rows,
                           int kChunk, float *part) {
  float acc[2][4][4] = {};
  int kBegin = blockIdx.z * kChunk, kEnd = kBegin + kChunk < K ? kBegin + kChunk : K;
  i64 row0 = i64(blockIdx.y) * DSV3_MMA_BM;
  mmaMainloop<N, K, 0>(x, ldx, W, nullptr, rows, row0, acc, nullptr, kBegin, kEnd);
  if (gridDim.z > 1) {
    y = part + i64(blockIdx.z) * rows * N;
    b = nullptr;
    res = nullptr;
  }
  mmaEpilogue<N>(rows, row0, [&](int mt, int nt, int e, i64 r, int n) {
    float v = acc[mt][nt][e];
    if (b)
      v += bf16Float(b[n]);
    if (res)
      v += res[r * N + n];
    y[r * N + n] = v;
  });
}

/// y = sum_z part[z] (+ b) (+ res), in z order.
template <int N>
__global__ void splitk_reduce(const float *part, int splits, const unsigned short *b,
                              const float *res, float *y, i64 rows) {
  for (i64 i = i64(blockIdx.x) * blockDim.x + threadIdx.x; i < rows * N;
       i += i64(gridDim.x) * blockDim.x) {
    float v = 0.f;
    for (int z = 0; z < splits; ++z)
      v += part[z * rows * N + i];
    if (b)
      v += bf16Float(b[i % N]);
    if (res)
      v += res[i];
    y[i] = v;
  }
}

/// `linear_mma` with both weights and SwiGLU in the epilogue.
template <int N, int K>
__global__ void gated_linear_mma(const float *x, const unsigned short *Wg,
                                 const unsigned short *Wu, float *y, i64 rows) {
  float acc[2][4][4] = {}, accU[2][4][4] = {};
  i64 row0 = i64(blockIdx.y) * DSV3_MMA_BM;
  mmaMainloop<N, K, 1>(x, K, Wg, Wu, rows, row0, acc, accU, 0, K);
  mmaEpilogue<N>(rows, row0, [&](int mt, int nt, int e, i64 r, int n) {
    float gv = acc[mt][nt][e], uv = accU[mt][nt][e];
    y[r * N + n] = gv / (1.f + expf(-gv)) * uv;
  });
}

template <int Unused>
__global__ void add(const float *a, const float *b, float *y, i64 n) {
  // 16-byte loads and stores where all three are aligned (the launcher's
  // grid has a thread per 4 elements), the rest one by one.
  const i64 first = i64(blockIdx.x) * blockDim.x + threadIdx.x,
            stride = i64(gridDim.x) * blockDim.x;
  i64 vec = 0;
  if (((reinterpret_cast<unsigned long long>(a) | reinterpret_cast<unsigned long long>(b) |
        reinterpret_cast<unsigned long long>(y)) & 15) == 0) {
    vec = n / 4;
    for (i64 i = first; i < vec; i += stride) {
      const float4 x = reinterpret_cast<const float4 *>(a)[i],
                   z = reinterpret_cast<const float4 *>(b)[i];
      reinterpret_cast<float4 *>(y)[i] = make_float4(x.x + z.x, x.y + z.y, x.z + z.z, x.w + z.w);
    }
  }
  for (i64 i = 4 * vec + first; i < n; i += stride)
    y[i] = a[i] + b[i];
}

template <int Unused>
__global__ void swiglu(const float *g, const float *u, float *y, i64 n) {
  for (i64 i = i64(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += i64(gridDim.x) * blockDim.x) {
    float x = g[i];
    y[i] = x / (1.f + expf(-x)) * u[i];
  }
}

template <int Unused>
__global__ void fill(float *y, i64 n, float value) {
  for (i64 i = i64(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += i64(gridDim.x) * blockDim.x)
    y[i] = value;
}

/// Rotates D features at `pos` and writes the de-interleaved layout
/// (SEMANTICS.md 3.3); `invFreq` has D/2 entries. In place on `v`.
template <int D, int Interleaved>
__device__ void rotate(float *v, i64 pos, const float *invFreq, float scale) {
  float a[D / 2], b[D / 2];
#pragma unroll
  for (int j = 0; j < D / 2; ++j) {
    a[j] = Interleaved ? v[2 * j] : v[j];
    b[j] = Interleaved ? v[2 * j + 1] : v[j + D / 2];
  }
#pragma unroll
  for (int j = 0; j < D / 2; ++j) {
    float th = float(pos) * invFreq[j];
    float c = cosf(th) * scale, s = sinf(th) * scale;
    v[j] = a[j] * c - b[j] * s;
    v[j + D / 2] = b[j] * c + a[j] * s;
  }
}

/// One thread per rotated vector of D features (x: [B*T, per, D]).
template <int D, int Interleaved>
__global__ void rope(const float *x, const i64 *pos, float *y, i64 tokens,
                     i64 perToken, const float *invFreq, float scale) {
  i64 i = i64(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= tokens * perToken)
    return;
  float v[D];
  for (int j = 0; j < D; ++j)
    v[j] = x[i * D + j];
  rotate<D, Interleaved>(v, pos[i / perToken], invFreq, scale);
  for (int j = 0; j < D; ++j)
    y[i * D + j] = v[j];
}

__device__ __forceinline__ float e4m3ToFloat(unsigned b);
__device__ __forceinline__ unsigned floatToE4m3(float f);
__device__ __forceinline__ void e4m3x4ToFloat(unsigned w, float *out);
/// x rounded to bf16 (nearest, ties to even), as a float.
__device__ __forceinline__ float roundToBf16(float x) {
  unsigned short h;
  asm("cvt.rn.bf16.f32 %0, %1;" : "=h"(h) : "f"(x));
  return __uint_as_float(unsigned(h) << 16);
}

/// A latent-cache row as the decode stores it (dsv3c --kv-cache; the host
/// keeps every form as floats, storeCacheRow; docs/fp8.md):
///   CF 0 (f32)   R + DR floats
///   CF 1 (bf16)  R + DR bf16
///   CF 2 (fp8)   R e4m3 codes, the rope key as DR bf16, the row's fp32
///                scale (value = e4m3 x scale)
/// the packed forms padded to 16 bytes a row (cp.async and 16-byte loads).
/// At DeepSeek-V3's widths: 2304, 1152 and 656 bytes. load() gives the
/// value the row holds as a float: for fp8 exactly the product the host's
/// storeCacheRow (and this cache's earlier fp32 form) computed.
template <int R, int DR, int CF> struct CacheRow {
  static constexpr int W = R + DR;
  static constexpr int Bytes = DSV3_CACHE_ROW_BYTES(R, DR, CF);
  static constexpr int RopeAt = CF == 1 ? 2 * R : R, ScaleAt = R + 2 * DR;
  static constexpr bool Aligned4 = DSV3_CACHE_ROW_ALIGNED4(R, DR, CF);
  static __device__ __forceinline__ float bf16At(const unsigned char *p) {
    return __uint_as_float(unsigned(*reinterpret_cast<const unsigned short *>(p)) << 16);
  }
  static __device__ __forceinline__ float load(const unsigned char *row, int c) {
    if (CF == 0)
      return reinterpret_cast<const float *>(row)[c];
    if (CF == 1)
      return bf16At(row + 2 * c);
    if (c < R)
      return e4m3ToFloat(row[c]) * *reinterpret_cast<const float *>(row + ScaleAt);
    return bf16At(row + R + 2 * (c - R));
  }
  static __device__ __forceinline__ float4 load4(const unsigned char *row, int c) {
    if (CF == 0)
      return *reinterpret_cast<const float4 *>(row + 4 * c);
    if (CF == 2 && c < R) {
      float v[4];
      e4m3x4ToFloat(*reinterpret_cast<const unsigned *>(row + c), v);
      const float sc = *reinterpret_cast<const float *>(row + ScaleAt);
      return make_float4(v[0] * sc, v[1] * sc, v[2] * sc, v[3] * sc);
    }
    const uint2 h = *reinterpret_cast<const uint2 *>(row + (CF == 1 ? 2 * c : R + 2 * (c - R)));
    return make_float4(__uint_as_float(h.x << 16), __uint_as_float(h.x & 0xffff0000u),
                       __uint_as_float(h.y << 16), __uint_as_float(h.y & 0xffff0000u));
  }
};

/// Stores a row's latent in form cf (1 or 2; a block of 128 threads, every
/// thread calls it): value(j) is element j as computed. fp8: one scale for
/// the row, max(amax, 1e-4) / 448 (the host's storeCacheRow), each value
/// e4m3(v / scale).
template <int R, int DR, typename Value>
__device__ __forceinline__ void storeCacheLatent(unsigned char *row, int cf, Value value) {
  if (cf == 1) {
    for (int j = threadIdx.x; j < R; j += blockDim.x)
      reinterpret_cast<unsigned short *>(row)[j] = bf16Bits(value(j));
    return;
  }
  float amax = 1e-4f;
  for (int j = threadIdx.x; j < R; j += blockDim.x)
    amax = fmaxf(amax, fabsf(value(j)));
  const float sc = blockMax(amax) / 448.0f; // (uniform: every thread the block max)
  for (int j = threadIdx.x; j < R; j += blockDim.x)
    row[j] = (unsigned char)floatToE4m3(value(j) / sc);
  if (threadIdx.x == 0)
    *reinterpret_cast<float *>(row + CacheRow<R, DR, 2>::ScaleAt) = sc;
}
/// Stores the rope key's element j (bf16 in both packed forms).
template <int R, int DR>
__device__ __forceinline__ void storeCacheRope(unsigned char *row, int cf, int j, float v) {
  reinterpret_cast<unsigned short *>(row + (cf == 1 ? CacheRow<R, DR, 1>::RopeAt
                                                    : CacheRow<R, DR, 2>::RopeAt))[j] =
      bf16Bits(v);
}

/// Latent-cache rows between the host's fp32 layout and a packed form
/// (CudaSession, where a cache crosses to or from the GPU): a block of 128
/// threads a row. Packing an unpacked row gives its codes back (its scale
/// within an ulp: 448 x scale / 448).
template <int R, int DR, int CF>
__global__ void mla_cache_pack(const float *src, unsigned char *dst, i64 rows) {
  const i64 r = blockIdx.x;
  if (r >= rows)
    return;
  const float *s = src + r * (R + DR);
  unsigned char *d = dst + r * CacheRow<R, DR, CF>::Bytes;
  storeCacheLatent<R, DR>(d, CF, [&](int j) { return s[j]; });
  for (int j = threadIdx.x; j < DR; j += blockDim.x)
    storeCacheRope<R, DR>(d, CF, j, s[R + j]);
}
template <int R, int DR, int CF>
__global__ void mla_cache_unpack(const unsigned char *src, float *dst, i64 rows) {
  const i64 r = blockIdx.x;
  if (r >= rows)
    return;
  const unsigned char *s = src + r * CacheRow<R, DR, CF>::Bytes;
  for (int c = threadIdx.x; c < R + DR; c += blockDim.x)
    dst[r * (R + DR) + c] = CacheRow<R, DR, CF>::load(s, c);
}

/// Per token (one thread): normalise the latent, rotate the shared rope
/// key and every head's query rope part. `a` is [n, R + DR] (kv_a output);
/// the latent row goes to `latent` (prefill, [n, R + DR]) or, when `cache`
/// is set, to cache[b, past[b] + t] (decode; past is per sequence, on the
/// device) in form cacheForm (CacheRow: 0 fp32, 1 bf16, 2 e4m3 latent with
/// the row's scale and a bf16 rope key; dsv3c --kv-cache, the host's
/// storeCacheRow). q is [n, NH, DQ], rotated in place on its last DR
/// features.
template <int R, int DR, int NH, int DQ, int DN, int Interleaved, typename WT>
__global__ void mla_prepare(const float *a, const WT *kvNorm, float *latent,
                            float *q, i64 B, i64 T, const i64 *past, unsigned char *cache,
                            i64 S, const float *invFreq, float scale, float eps,
                            int cacheForm) {
  i64 token = i64(blockIdx.x);
  if (token >= B * T)
    return;
  i64 b = token / T, t = token % T, pos = (past ? past[b] : 0) + t;
  const float *ar = a + token * (R + DR);
  // A packed row (cacheForm 1, 2) is written in its bytes; an fp32 one as
  // floats, as the prefill's latents.
  unsigned char *packed =
      cache && cacheForm ? cache + (b * S + pos) * DSV3_CACHE_ROW_BYTES(R, DR, cacheForm) : nullptr;
  float *out = packed ? nullptr
               : cache ? reinterpret_cast<float *>(cache) + (b * S + pos) * (R + DR)
                       : latent + token * (R + DR);
  float ss = 0.f;
  for (int j = threadIdx.x; j < R; j += blockDim.x)
    ss += ar[j] * ar[j];
  ss = blockSum(ss);
  float inv = rsqrtf(ss / R + eps);
  if (packed)
    storeCacheLatent<R, DR>(packed, cacheForm,
                            [&](int j) { return wload(kvNorm, j) * (ar[j] * inv); });
  else
    for (int j = threadIdx.x; j < R; j += blockDim.x)
      out[j] = wload(kvNorm, j) * (ar[j] * inv);
  // cos and sin of this position, once per token (the large-argument
  // reductions of cosf/sinf are slow: per head they took ~45 us a token at
  // V3 widths), then every rotation (the rope key and each head's rope
  // query) in parallel over (vector, pair): two phases, since the
  // de-interleaving rotation moves features within a vector.
  __shared__ float cs[DR];
  for (int j = threadIdx.x; j < DR / 2; j += blockDim.x) {
    float th = float(pos) * invFreq[j];
    cs[j] = cosf(th) * scale;
    cs[j + DR / 2] = sinf(th) * scale;
  }
  __syncthreads();
  constexpr int Pairs = (NH + 1) * (DR / 2); // vector 0: the rope key
  constexpr int Items = (Pairs + 127) / 128; // launched with 128 threads
  float ra[Items], rb[Items];
#pragma unroll
  for (int it = 0; it < Items; ++it) {
    int i = threadIdx.x + it * 128;
    if (i < Pairs) {
      int h = i / (DR / 2), j = i % (DR / 2);
      const float *v = h == 0 ? ar + R : q + (token * NH + h - 1) * DQ + DN;
      ra[it] = Interleaved ? v[2 * j] : v[j];
      rb[it] = Interleaved ? v[2 * j + 1] : v[j + DR / 2];
    }
  }
  __syncthreads();
#pragma unroll
  for (int it = 0; it < Items; ++it) {
    int i = threadIdx.x + it * 128;
    if (i < Pairs) {
      int h = i / (DR / 2), j = i % (DR / 2);
      float c = cs[j], sn = cs[j + DR / 2];
      float v0 = ra[it] * c - rb[it] * sn, v1 = rb[it] * c + ra[it] * sn;
      if (h == 0 && packed) { // the cached rope key: bf16 in both packed forms
        storeCacheRope<R, DR>(packed, cacheForm, j, v0);
        storeCacheRope<R, DR>(packed, cacheForm, j + DR / 2, v1);
        continue;
      }
      float *v = h == 0 ? out + R : q + (token * NH + h - 1) * DQ + DN;
      v[j] = v0;
      v[j + DR / 2] = v1;
    }
  }
}

/// Naive-form causal attention (SEMANTICS.md 3.6): one block per (query i,
/// head h, sequence b); scores for every t <= i in shared memory.
/// q [B*T, NH, DN+DR]; latent [B*T, R+DR] (its last DR are the rope keys);
/// u [B*T, NH, DN+DV] (nope keys and values); o [B*T, NH, DV]; with lse
/// (training's saved state) each query's log-sum-exp of its scaled scores
/// at lse[(b NH + h) T + i].
template <int NH, int DN, int DR, int DV, int R>
__global__ void mla_attention_prefill(const float *q, const float *latent,
                                      const float *u, float *o, i64 T,
                                      float softmaxScale, float *lse) {
  extern __shared__ float scores[];
  i64 i = blockIdx.x, h = blockIdx.y, b = blockIdx.z;
  const float *qi = q + ((b * T + i) * NH + h) * (DN + DR);
  float mx = -INFINITY;
  for (i64 t = threadIdx.x; t <= i; t += blockDim.x) {
    const float *kn = u + ((b * T + t) * NH + h) * (DN + DV);
    const float *kp = latent + (b * T + t) * (R + DR) + R;
    float s = 0.f;
    for (int j = 0; j < DN; ++j)
      s += qi[j] * kn[j];
    for (int j = 0; j < DR; ++j)
      s += qi[DN + j] * kp[j];
    s *= softmaxScale;
    scores[t] = s;
    mx = fmaxf(mx, s);
  }
  mx = blockMax(mx);
  float sum = 0.f;
  for (i64 t = threadIdx.x; t <= i; t += blockDim.x) {
    float e = expf(scores[t] - mx);
    scores[t] = e;
    sum += e;
  }
  sum = blockSum(sum);
  if (lse && threadIdx.x == 0)
    lse[(b * NH + h) * T + i] = mx + logf(sum);
  __syncthreads();
  for (int j = threadIdx.x; j < DV; j += blockDim.x) {
    float acc = 0.f;
    for (i64 t = 0; t <= i; ++t)
      acc += scores[t] * u[((b * T + t) * NH + h) * (DN + DV) + DN + j];
    o[((b * T + i) * NH + h) * DV + j] = acc / sum;
  }
}

/// Prefill through the decode entry (many new tokens per sequence) in the
/// naive form over the cache: the absorbed form's per-head scores and
/// values are R + DR = 576 and R = 512 wide, the naive form's DN + DR = 192
/// and DV = 128 (3.4x fewer FLOPs), once the cached latents are expanded by
/// kv_b_proj into u (one GEMM on tensor cores). One sequence b per launch:
/// a block per (16 queries, head), 256 threads, streams 16-key tiles of
/// that head's keys (nope part from u, rope part from the cache) and values
/// through shared memory with an online softmax (flash-attention style),
/// so each key tile is read once per 16 queries. Query i (position past[b]
/// + i) attends keys 0 .. past[b] + i. q [T, NH, DN + DR] (rope rotated),
/// u [S, NH, DN + DV], cache [S, R + DR] (this sequence's rows), o [T, NH,
/// DV]. Shared: ~34 KB.
#define DSV3_PREFILL_Q 16
#define DSV3_PREFILL_K 16
template <int NH, int DN, int DR, int DV, int R>
__global__ void mla_prefill_cached(const float *q, const float *u, const float *cache,
                                   const i64 *past, i64 b, float *o, i64 T,
                                   float softmaxScale) {
  constexpr int DQ = DN + DR, W = R + DR, QP = DQ + 1, VP = DV + 1;
  constexpr int QT = DSV3_PREFILL_Q, KT = DSV3_PREFILL_K;
  constexpr int OPT = QT * DV / 256; // outputs per thread (DV a multiple of 16)
  __shared__ float qs[QT * QP], ks[KT * QP], vs[KT * VP], ps[QT * KT];
  __shared__ float mrun[QT], lrun[QT], alpha[QT];
  int tid = threadIdx.x, h = blockIdx.y;
  i64 i0 = i64(blockIdx.x) * QT, p0 = past[b];
  for (int idx = tid; idx < QT * DQ; idx += blockDim.x) {
    int qq = idx / DQ, c = idx % DQ;
    qs[qq * QP + c] = i0 + qq < T ? q[((i0 + qq) * NH + h) * DQ + c] * softmaxScale : 0.f;
  }
  if (tid < QT) {
    mrun[tid] = -INFINITY;
    lrun[tid] = 0.f;
  }
  float acc[OPT];
#pragma unroll
  for (int m = 0; m < OPT; ++m)
    acc[m] = 0.f;
  // Keys up to the last query of this tile.
  i64 last = i0 + QT - 1 < T - 1 ? i0 + QT - 1 : T - 1;
  i64 kEnd = p0 + last + 1;
  for (i64 k0 = 0; k0 < kEnd; k0 += KT) {
    __syncthreads();
    for (int idx = tid; idx < KT * DQ; idx += blockDim.x) {
      int kk = idx / DQ, c = idx % DQ;
      i64 j = k0 + kk;
      float v = 0.f;
      if (j < kEnd)
        v = c < DN ? u[(j * NH + h) * (DN + DV) + c] : cache[j * W + R + (c - DN)];
      ks[kk * QP + c] = v;
    }
    for (int idx = tid; idx < KT * DV; idx += blockDim.x) {
      int kk = idx / DV, c = idx % DV;
      i64 j = k0 + kk;
      vs[kk * VP + c] = j < kEnd ? u[(j * NH + h) * (DN + DV) + DN + c] : 0.f;
    }
    __syncthreads();
    { // one score per thread: 16 queries x 16 keys
      int qq = tid / KT, kk = tid % KT;
      i64 j = k0 + kk, limit = p0 + i0 + qq; // the last key query qq sees
      float sc = -INFINITY;
      if (i0 + qq < T && j <= limit && j < kEnd) {
        const float *qr = qs + qq * QP, *kr = ks + kk * QP;
        sc = 0.f;
#pragma unroll 8
        for (int c = 0; c < DQ; ++c)
          sc += qr[c] * kr[c];
      }
      ps[qq * KT + kk] = sc;
    }
    __syncthreads();
    if (tid < QT) { // online softmax, a query per thread
      float mx = mrun[tid];
      for (int kk = 0; kk < KT; ++kk)
        mx = fmaxf(mx, ps[tid * KT + kk]);
      float a = mx == -INFINITY ? 1.f : expf(mrun[tid] - mx), sum = 0.f;
      for (int kk = 0; kk < KT; ++kk) {
        float sc = ps[tid * KT + kk];
        float pr = sc == -INFINITY ? 0.f : expf(sc - mx);
        ps[tid * KT + kk] = pr;
        sum += pr;
      }
      lrun[tid] = lrun[tid] * a + sum;
      mrun[tid] = mx;
      alpha[tid] = a;
    }
    __syncthreads();
    int c = tid % DV;
#pragma unroll
    for (int m = 0; m < OPT; ++m) {
      int qq = tid / DV + m * (256 / DV);
      float v = acc[m] * alpha[qq];
#pragma unroll
      for (int kk = 0; kk < KT; ++kk)
        v += ps[qq * KT + kk] * vs[kk * VP + c];
      acc[m] = v;
    }
  }
  __syncthreads();
  int c = tid % DV;
#pragma unroll
  for (int m = 0; m < OPT; ++m) {
    int qq = tid / DV + m * (256 / DV);
    if (i0 + qq < T)
      o[((i0 + qq) * NH + h) * DV + c] = acc[m] / lrun[qq];
  }
}

/// 16 bytes global -> shared without registers (sm_80+), and its fences.
__device__ __forceinline__ void cpAsync16(void *dst, const void *src) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  unsigned d = (unsigned)__cvta_generic_to_shared(dst);
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(d), "l"(src));
#else
  *reinterpret_cast<uint4 *>(dst) = *reinterpret_cast<const uint4 *>(src);
#endif
}
__device__ __forceinline__ void cpAsyncCommit() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile("cp.async.commit_group;\n" ::);
#endif
}
template <int Pending> __device__ __forceinline__ void cpAsyncWait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile("cp.async.wait_group %0;\n" ::"n"(Pending));
#endif
}

/// The same naive-form prefill over the cache on tensor cores, for models
/// whose weights are bf16 (or FP8): the fp32 kernel above stays for fp32
/// artifacts, which are checked against the host at 1e-4. Two launches per
/// sequence:
///   mla_pack_kv      the sequence's keys (nope part of u, the cache's rope
///                    part) and values as bf16, head-major and padded to
///                    16 features with zeros: kb [NH, S, DQP], vb [NH, S,
///                    DVP] (each cached row once, instead of fp32 loads and
///                    conversions in every query tile's pass)
///   mla_prefill_mma  flash attention (FlashAttention-2's split: a warp owns
///                    16 query rows): a block of 8 warps takes 128 queries
///                    of one head and streams 64-key tiles of kb/vb into
///                    shared memory by cp.async, a tile ahead of the MMAs;
///                    S = Q K^T and O += P V on mma.sync m16n8k16 (bf16 in,
///                    fp32 accumulation), the online softmax in fp32
///                    registers. The queries stay in registers as A
///                    fragments; K's and V's B fragments come by ldmatrix
///                    (V's transposed). Query tiles heaviest (latest) first.
/// Operands rounded to bf16 (q, k, v and the probabilities, 2^-9 relative
/// each; sums in fp32) are what bf16 inference runs anyway; `dsv3-run
/// attention-check` bounds the error against float64.
#define DSV3_PREFILL_MMA_Q 128
#define DSV3_PREFILL_MMA_K 64
__device__ __forceinline__ unsigned packBf16x2(float lo, float hi) {
  unsigned r;
  asm("cvt.rn.bf16x2.f32 %0, %1, %2;\n" : "=r"(r) : "f"(hi), "f"(lo));
  return r;
}
/// 2^x by the special-function unit alone (ex2.approx.ftz: 2 ulp, results
/// below 2^-126 flushed to zero). exp2f wraps the same instruction in a
/// range test and two rescaling multiplies for subnormal results, ~4
/// instructions an exponential where the attention's softmax runs one per
/// score; a probability under 2^-126 adds nothing a bf16 P V or an fp32 sum
/// of at least one 1 can hold.
__device__ __forceinline__ float fastExp2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
}
__device__ __forceinline__ void ldmatrixX4(unsigned *r, const unsigned short *p) {
  unsigned a = (unsigned)__cvta_generic_to_shared(p);
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(a));
}
__device__ __forceinline__ void ldmatrixX4Trans(unsigned *r, const unsigned short *p) {
  unsigned a = (unsigned)__cvta_generic_to_shared(p);
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(a));
}
/// A block per cached row j: u [S, NH, DN + DV], cache [S, R + DR]; no
/// values when vb is null (mla_prefill_wgmma reads them transposed, from
/// mla_pack_vt).
template <int NH, int DN, int DR, int DV, int R>
__global__ void mla_pack_kv(const float *u, const float *cache, i64 S, unsigned short *kb,
                            unsigned short *vb) {
  constexpr int DQ = DN + DR, DQP = (DQ + 15) / 16 * 16, DVP = (DV + 15) / 16 * 16;
  const i64 j = blockIdx.x;
  const float *uj = u + j * NH * (DN + DV), *rope = cache + j * (R + DR) + R;
  for (int idx = threadIdx.x; idx < NH * DQP / 2; idx += blockDim.x) {
    int h = idx / (DQP / 2), c = idx % (DQP / 2) * 2;
    float x[2];
#pragma unroll
    for (int e = 0; e < 2; ++e) {
      int cc = c + e;
      x[e] = cc < DN ? uj[h * (DN + DV) + cc] : cc < DQ ? rope[cc - DN] : 0.f;
    }
    *reinterpret_cast<unsigned *>(kb + (h * S + j) * DQP + c) = packBf16x2(x[0], x[1]);
  }
  for (int idx = threadIdx.x; vb && idx < NH * DVP / 2; idx += blockDim.x) {
    int h = idx / (DVP / 2), c = idx % (DVP / 2) * 2;
    const float *v = uj + h * (DN + DV) + DN;
    float x0 = c < DV ? v[c] : 0.f, x1 = c + 1 < DV ? v[c + 1] : 0.f;
    *reinterpret_cast<unsigned *>(vb + (h * S + j) * DVP + c) = packBf16x2(x0, x1);
  }
}
/// The prefill attention's pieces shared by mla_prefill_mma and
/// mla_prefill_wgmma. A thread holds rows g and g + 8 of its warp's 16
/// query rows (`row`: query indices in the launch); score and output
/// accumulators are flat arrays in mma.sync's m16n8 layout, which both
/// kernels' MMAs produce: element 4 n + e is row g (e < 2) or g + 8, column
/// 8 n + 2 t4 + (e & 1).

/// The rows' query fragments in bf16 (mma's A layout: a0 (g, 2t), a1
/// (g+8, 2t), a2 (g, 2t+8), a3 (g+8, 2t+8)), zeros past DQ and past T.
/// A thread's online-softmax state for its two query rows, zeroed: the
/// output accumulators, running maxima and sums.
template <int O>
__device__ __forceinline__ void attentionStateInit(float (&oacc)[O], float (&mrun)[2],
                                                   float (&lrun)[2]) {
#pragma unroll
  for (int i = 0; i < O; ++i)
    oacc[i] = 0.f;
  mrun[0] = mrun[1] = -INFINITY;
  lrun[0] = lrun[1] = 0.f;
}
/// The key tiles (of BK) a block of BQ query rows from i0 (T in all, after
/// p0 cached positions) attends causally: keys 0 .. kEnd - 1.
template <int BQ, int BK>
__device__ __forceinline__ i64 attentionKeyTiles(i64 i0, i64 T, i64 p0, i64 &kEnd) {
  const i64 lastQ = (i0 + BQ < T ? i0 + BQ : T) - 1;
  kEnd = p0 + lastQ + 1;
  return (kEnd + BK - 1) / BK;
}
template <int NH, int DQ, int DQP>
__device__ __forceinline__ void attentionQueryFragments(unsigned (&qf)[DQP / 16][4],
                                                        const float *q, const i64 (&row)[2],
                                                        i64 T, int h, int t4) {
#pragma unroll
  for (int kk = 0; kk < DQP / 16; ++kk)
#pragma unroll
    for (int f = 0; f < 4; ++f) {
      int c = kk * 16 + (f >> 1) * 8 + 2 * t4;
      i64 r = row[f & 1];
      float x0 = 0.f, x1 = 0.f;
      if (r < T) {
        const float *qr = q + (r * NH + h) * DQ;
        x0 = c < DQ ? qr[c] : 0.f;
        x1 = c + 1 < DQ ? qr[c + 1] : 0.f;
      }
      qf[kk][f] = packBf16x2(x0, x1);
    }
}
/// Scores of a tile's keys (from k0) past a row's position set to -inf.
template <int N4>
__device__ __forceinline__ void attentionCausalMask(float (&sc)[N4], i64 k0, i64 p0,
                                                    const i64 (&row)[2], int t4) {
#pragma unroll
  for (int n = 0; n < N4 / 4; ++n)
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      i64 j = k0 + n * 8 + 2 * t4 + (e & 1);
      if (j > p0 + row[e >> 1])
        sc[4 * n + e] = -INFINITY;
    }
}
/// One key tile's online softmax (attentionSoftmaxTile) for rows g (e = 0,
/// 1) and g + 8 (e = 2, 3): the scores become exp2((s - max) scale log2 e),
/// the running max and this lane's share of the sum move on, the output
/// rows are rescaled. A
/// row's four lanes (same g) combine the max by shuffles. Key 0 is seen by
/// every query, so the running max is finite from the first tile on.
/// attentionSoftmaxScores does all but the rescale, whose factors it
/// returns in `alpha` (attentionRescale applies them): a kernel whose
/// previous product into oacc is still in flight rescales once it lands.
template <int N4>
__device__ __forceinline__ void attentionSoftmaxScores(float (&sc)[N4], float (&mrun)[2],
                                                       float (&lrun)[2], float (&alpha)[2],
                                                       float scaleLog2) {
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    float mx = mrun[half];
#pragma unroll
    for (int n = 0; n < N4 / 4; ++n)
      mx = fmaxf(mx, fmaxf(sc[4 * n + 2 * half], sc[4 * n + 2 * half + 1]));
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
    alpha[half] = fastExp2((mrun[half] - mx) * scaleLog2);
    mrun[half] = mx;
    float sum = 0.f;
#pragma unroll
    for (int n = 0; n < N4 / 4; ++n)
#pragma unroll
      for (int e = 2 * half; e < 2 * half + 2; ++e) {
        float pr = fastExp2((sc[4 * n + e] - mx) * scaleLog2);
        sc[4 * n + e] = pr;
        sum += pr;
      }
    lrun[half] = lrun[half] * alpha[half] + sum;
  }
}
template <int O4>
__device__ __forceinline__ void attentionRescale(float (&oacc)[O4], const float (&alpha)[2]) {
#pragma unroll
  for (int n = 0; n < O4 / 4; ++n) {
    oacc[4 * n + 0] *= alpha[0];
    oacc[4 * n + 1] *= alpha[0];
    oacc[4 * n + 2] *= alpha[1];
    oacc[4 * n + 3] *= alpha[1];
  }
}
template <int N4, int O4>
__device__ __forceinline__ void attentionSoftmaxTile(float (&sc)[N4], float (&oacc)[O4],
                                                     float (&mrun)[2], float (&lrun)[2],
                                                     float scaleLog2) {
  float alpha[2];
  attentionSoftmaxScores(sc, mrun, lrun, alpha, scaleLog2);
  attentionRescale(oacc, alpha);
}
/// The probabilities of keys 16 kk .. 16 kk + 15 as the A fragment of the
/// product with the values (the score layout is the A layout).
template <int N4>
__device__ __forceinline__ void attentionProbFragment(unsigned (&pa)[4], const float (&sc)[N4],
                                                      int kk) {
  pa[0] = packBf16x2(sc[8 * kk + 0], sc[8 * kk + 1]);
  pa[1] = packBf16x2(sc[8 * kk + 2], sc[8 * kk + 3]);
  pa[2] = packBf16x2(sc[8 * kk + 4], sc[8 * kk + 5]);
  pa[3] = packBf16x2(sc[8 * kk + 6], sc[8 * kk + 7]);
}
/// The rows' outputs o = oacc / sum over [T, NH, DV] (columns past DV
/// dropped), and with `lse` each row's log-sum-exp of its scaled scores at
/// lse[h * T + r]. oForm (what o_proj reads first; the values are those it
/// would make of the floats): 0 floats; 1 bf16 (nearest even); 2 (DV ==
/// 128: a head's row is one 1x128 block of o_proj's input) e4m3 codes with
/// the block's scale at oScales[r NH + h], as fp8_quantize computes them.
template <int NH, int DV, int O4>
__device__ __forceinline__ void attentionStoreRows(const float (&oacc)[O4], const float (&mrun)[2],
                                                   const float (&lrun)[2], const i64 (&row)[2],
                                                   i64 T, int h, int t4, float *o, float *lse,
                                                   float softmaxScale, int oForm,
                                                   float *oScales) {
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    float l = lrun[half];
    l += __shfl_xor_sync(0xffffffffu, l, 1);
    l += __shfl_xor_sync(0xffffffffu, l, 2);
    float inv = 1.f / l;
    // The row's amax over its quad (the four threads holding its columns),
    // shuffled before any thread leaves.
    float amax = 0.f;
    if (DV == 128 && oForm == 2) {
#pragma unroll
      for (int n = 0; n < O4 / 4; ++n)
        amax = fmaxf(amax, fmaxf(fabsf(oacc[4 * n + 2 * half] * inv),
                                 fabsf(oacc[4 * n + 2 * half + 1] * inv)));
      amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, 1));
      amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, 2));
    }
    i64 r = row[half];
    if (r >= T)
      continue;
    if (lse)
      lse[h * T + r] = mrun[half] * softmaxScale + logf(l);
    if (DV == 128 && oForm == 2) {
      const float sc = fmaxf(amax, 1e-4f) / 448.0f;
      unsigned char *orow = reinterpret_cast<unsigned char *>(o) + (r * NH + h) * DV;
#pragma unroll
      for (int n = 0; n < O4 / 4; ++n) {
        int c = n * 8 + 2 * t4;
        unsigned q0 = floatToE4m3(oacc[4 * n + 2 * half] * inv / sc);
        unsigned q1 = floatToE4m3(oacc[4 * n + 2 * half + 1] * inv / sc);
        *reinterpret_cast<unsigned short *>(orow + c) = (unsigned short)(q0 | (q1 << 8));
      }
      if (t4 == 0)
        oScales[r * NH + h] = sc;
      continue;
    }
    if (oForm == 1) { // o holds bf16 rows (the o_proj GEMM's operand, rounded as it would)
      unsigned short *orow = reinterpret_cast<unsigned short *>(o) + (r * NH + h) * DV;
#pragma unroll
      for (int n = 0; n < O4 / 4; ++n) {
        int c = n * 8 + 2 * t4;
        const unsigned both =
            packBf16x2(oacc[4 * n + 2 * half] * inv, oacc[4 * n + 2 * half + 1] * inv);
        if (c + 1 < DV && DV % 2 == 0)
          *reinterpret_cast<unsigned *>(orow + c) = both;
        else if (c < DV)
          orow[c] = (unsigned short)(both & 0xffffu);
      }
      continue;
    }
    float *orow = o + (r * NH + h) * DV;
#pragma unroll
    for (int n = 0; n < O4 / 4; ++n) {
      int c = n * 8 + 2 * t4;
      if (c < DV)
        orow[c] = oacc[4 * n + 2 * half] * inv;
      if (c + 1 < DV)
        orow[c + 1] = oacc[4 * n + 2 * half + 1] * inv;
    }
  }
}
/// q [T, NH, DN + DR] (rope rotated), kb/vb from mla_pack_kv (S rows), o
/// [T, NH, DV]; query i (position past[b] + i) attends keys 0 .. past[b] +
/// i. Dynamic shared memory: two stages of a 64-key tile of k and v, rows
/// padded by 8 bf16 (conflict-free ldmatrix): 84 KB at V3 widths. When
/// `lse` is set (training: the backward's softmax rows), each query's
/// log-sum-exp of its scaled scores goes to lse[h * T + i] (head-major).
/// oForm / oScales: o stored as floats, bf16 or e4m3 codes with scales
/// (attentionStoreRows), what the o_proj GEMM would make of the floats.
template <int NH, int DN, int DR, int DV, int R>
__global__ void __launch_bounds__(256)
    mla_prefill_mma(const float *q, const unsigned short *kb, const unsigned short *vb,
                    const i64 *past, i64 b, float *o, float *lse, i64 T, i64 S,
                    float softmaxScale, int oForm, float *oScales) {
  constexpr int DQ = DN + DR;
  constexpr int DQP = (DQ + 15) / 16 * 16, DVP = (DV + 15) / 16 * 16;
  constexpr int BQ = DSV3_PREFILL_MMA_Q, BK = DSV3_PREFILL_MMA_K;
  constexpr int KP = DQP + 8, VP = DVP + 8; // row pitches (bf16)
  constexpr int STAGE = BK * (KP + VP);     // bf16 a stage
  extern __shared__ __align__(16) float prefillSmem[]; // float-typed as the others
  unsigned short *smem = reinterpret_cast<unsigned short *>(prefillSmem);
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2,
            t4 = lane & 3, h = blockIdx.y;
  const i64 i0 = i64(gridDim.x - 1 - blockIdx.x) * BQ, p0 = past[b];
  const unsigned short *kh = kb + i64(h) * S * DQP, *vh = vb + i64(h) * S * DVP;
  // This warp's rows g and g + 8 (query indices in the launch).
  const i64 row[2] = {i0 + warp * 16 + g, i0 + warp * 16 + g + 8};
  unsigned qf[DQP / 16][4];
  attentionQueryFragments<NH, DQ, DQP>(qf, q, row, T, h, t4);
  float oacc[DVP / 2], mrun[2], lrun[2];
  attentionStateInit(oacc, mrun, lrun);
  const float scaleLog2 = softmaxScale * 1.4426950408889634f;
  const i64 warpFirst = p0 + i0 + warp * 16; // this warp's earliest position
  i64 kEnd; // keys 0 .. kEnd - 1 are seen
  const i64 tiles = attentionKeyTiles<BQ, BK>(i0, T, p0, kEnd);
  // 16-byte chunks of a tile: rows past S repeat row S - 1 (finite values;
  // such keys are masked for every query that is stored).
  auto loadTile = [&](i64 t, int stage) {
    unsigned short *ks = smem + stage * STAGE, *vs = ks + BK * KP;
    for (int idx = tid; idx < BK * DQP / 8; idx += blockDim.x) {
      int kk = idx / (DQP / 8), c = idx % (DQP / 8) * 8;
      i64 j = t * BK + kk;
      j = j < S ? j : S - 1;
      cpAsync16(ks + kk * KP + c, kh + j * DQP + c);
    }
    for (int idx = tid; idx < BK * DVP / 8; idx += blockDim.x) {
      int kk = idx / (DVP / 8), c = idx % (DVP / 8) * 8;
      i64 j = t * BK + kk;
      j = j < S ? j : S - 1;
      cpAsync16(vs + kk * VP + c, vh + j * DVP + c);
    }
    cpAsyncCommit();
  };
  loadTile(0, 0);
  for (i64 t = 0; t < tiles; ++t) {
    if (t + 1 < tiles) {
      loadTile(t + 1, int((t + 1) & 1));
      cpAsyncWait<1>();
    } else {
      cpAsyncWait<0>();
    }
    __syncthreads();
    const i64 k0 = t * BK;
    const unsigned short *ks = smem + int(t & 1) * STAGE, *vs = ks + BK * KP;
    if (k0 <= warpFirst + 15) { // else every key of the tile is after this warp's queries
      float sc[BK / 2];
#pragma unroll
      for (int i = 0; i < BK / 2; ++i)
        sc[i] = 0.f;
      // ldmatrix x4: lanes 8m..8m+7 address matrix m's rows: keys n*8 +
      // (m>>1)*8 + 0..7, features kk*16 + (m&1)*8 (b0, b1 of key tiles n
      // and n + 1).
      const int m = lane >> 3;
      const unsigned short *krow = ks + ((m >> 1) * 8 + (lane & 7)) * KP + (m & 1) * 8;
#pragma unroll
      for (int kk = 0; kk < DQP / 16; ++kk)
#pragma unroll
        for (int n = 0; n < BK / 8; n += 2) {
          unsigned bk[4];
          ldmatrixX4(bk, krow + n * 8 * KP + kk * 16);
          mmaBf16(sc + 4 * n, qf[kk], bk);
          mmaBf16(sc + 4 * (n + 1), qf[kk], bk + 2);
        }
      if (k0 + BK - 1 > warpFirst) // the diagonal crosses this tile
        attentionCausalMask(sc, k0, p0, row, t4);
      attentionSoftmaxTile(sc, oacc, mrun, lrun, scaleLog2);
      // ldmatrix x4 trans: matrix m's rows are keys kk*16 + (m&1)*8 + 0..7,
      // columns (n + (m>>1))*8: b0, b1 of value tiles n and n + 1.
      const unsigned short *vrow = vs + ((m & 1) * 8 + (lane & 7)) * VP + (m >> 1) * 8;
#pragma unroll
      for (int kk = 0; kk < BK / 16; ++kk) {
        unsigned pa[4];
        attentionProbFragment(pa, sc, kk);
#pragma unroll
        for (int n = 0; n < DVP / 8; n += 2) {
          unsigned bv[4];
          ldmatrixX4Trans(bv, vrow + kk * 16 * VP + n * 8);
          mmaBf16(oacc + 4 * n, pa, bv);
          mmaBf16(oacc + 4 * (n + 1), pa, bv + 2);
        }
      }
    }
    __syncthreads(); // the stage is refilled next iteration
  }
  attentionStoreRows<NH, DV>(oacc, mrun, lrun, row, T, h, t4, o, lse, softmaxScale, oForm,
                             oScales);
}

/// The absorbed decode (SEMANTICS.md 4) in four launches, so that every
/// weight byte and every cached latent is read once per step (not once per
/// head or per sequence):
///   mla_absorb_q      q~ = q_nope W_UK[h] per head, with the rope query
///                      appended: qt [rows, NH, R + DR]
///   mla_decode_split  FlashMLA-style split-KV: a block per (key split,
///                      group of HB heads, row) streams its keys through
///                      shared memory with an online softmax: partial o~ and
///                      (max, sum) per head and split
///   mla_decode_merge  merges the splits: o~ [rows, NH, R]
///   mla_absorb_v      o = o~ W_UV[h]^T per head: o [rows, NH, DV]
/// rows = B*T; row (b, t) attends to keys 0 .. past[b] + t.

/// Rows of q (and of o~) per pass over the absorbed weights.
#define DSV3_ABSORB_ROWS 16

/// grid (NH, ceil((R + DR) / blockDim.x)): a thread per output column c;
/// the rows' q_nope of head h staged in shared memory.
template <int NH, int DN, int DR, int DV, int R, typename WT>
__global__ void mla_absorb_q(const float *q, const WT *wkvb, float *qt, i64 rows) {
  __shared__ float qs[DSV3_ABSORB_ROWS][DN];
  int h = blockIdx.x, c = blockIdx.y * blockDim.x + threadIdx.x;
  for (i64 r0 = 0; r0 < rows; r0 += DSV3_ABSORB_ROWS) {
    __syncthreads();
    for (int i = threadIdx.x; i < DSV3_ABSORB_ROWS * DN; i += blockDim.x) {
      i64 r = r0 + i / DN;
      qs[i / DN][i % DN] = r < rows ? q[(r * NH + h) * (DN + DR) + i % DN] : 0.f;
    }
    __syncthreads();
    if (c < R) {
      float acc[DSV3_ABSORB_ROWS] = {};
      const WT *w = wkvb + i64(h) * (DN + DV) * R + c;
      for (int j = 0; j < DN; ++j) {
        float wj = wload(w, i64(j) * R);
#pragma unroll
        for (int rr = 0; rr < DSV3_ABSORB_ROWS; ++rr)
          acc[rr] += qs[rr][j] * wj;
      }
#pragma unroll
      for (int rr = 0; rr < DSV3_ABSORB_ROWS; ++rr)
        if (r0 + rr < rows)
          qt[((r0 + rr) * NH + h) * (R + DR) + c] = acc[rr];
    } else if (c < R + DR) {
      for (int rr = 0; rr < DSV3_ABSORB_ROWS && r0 + rr < rows; ++rr)
        qt[((r0 + rr) * NH + h) * (R + DR) + c] =
            q[((r0 + rr) * NH + h) * (DN + DR) + DN + (c - R)];
    }
  }
}

/// mla_absorb_q for a few rows (decode batches of up to 4) and bf16
/// weights: a block per head, 256 threads; thread t takes 8 latent columns
/// (c0 = 8 (t % (R / 8))) over one of JP = 256 / (R / 8) slices of the DN
/// nope features, with 16-byte weight loads (mla_absorb_q's 2-byte loads, a
/// thread a column, left the step at ~430 GB/s: 39 us a layer for 16.8 MB
/// of W_UK); the slices' sums are added in slice order through shared
/// memory. R % 8 == 0, (R / 8) divides 256 and JP divides DN (the launcher
/// checks). The rope query is copied after the latent columns.
#define DSV3_ABSORB_FEW_ROWS 4
template <int NH, int DN, int DR, int DV, int R>
__global__ void __launch_bounds__(256)
    mla_absorb_q_rows(const float *q, const unsigned short *wkvb, float *qt, i64 rows) {
  constexpr int CG = R / 8, JP = 256 / CG, JS = DN / JP, MR = DSV3_ABSORB_FEW_ROWS;
  __shared__ float qs[MR][DN];
  __shared__ float part[JP][MR][R];
  const int h = blockIdx.x, t = threadIdx.x, c0 = 8 * (t % CG), jp = t / CG;
  for (int i = t; i < MR * DN; i += 256) {
    int rr = i / DN;
    qs[rr][i % DN] = rr < rows ? q[(i64(rr) * NH + h) * (DN + DR) + i % DN] : 0.f;
  }
  __syncthreads();
  float acc[MR][8];
#pragma unroll
  for (int rr = 0; rr < MR; ++rr)
#pragma unroll
    for (int i = 0; i < 8; ++i)
      acc[rr][i] = 0.f;
  const unsigned short *w = wkvb + i64(h) * (DN + DV) * R + c0;
#pragma unroll 8
  for (int j = jp * JS; j < (jp + 1) * JS; ++j) {
    float wj[8];
    wload8(w + i64(j) * R, wj);
#pragma unroll
    for (int rr = 0; rr < MR; ++rr)
#pragma unroll
      for (int i = 0; i < 8; ++i)
        acc[rr][i] += qs[rr][j] * wj[i];
  }
#pragma unroll
  for (int rr = 0; rr < MR; ++rr)
#pragma unroll
    for (int i = 0; i < 8; ++i)
      part[jp][rr][c0 + i] = acc[rr][i];
  __syncthreads();
  for (int i = t; i < MR * R; i += 256) {
    int rr = i / R, c = i % R;
    if (rr >= rows)
      continue;
    float sum = 0.f;
#pragma unroll
    for (int p = 0; p < JP; ++p)
      sum += part[p][rr][c];
    qt[(i64(rr) * NH + h) * (R + DR) + c] = sum;
  }
  for (int i = t; i < MR * DR; i += 256) {
    int rr = i / DR, c = i % DR;
    if (rr < rows)
      qt[(i64(rr) * NH + h) * (R + DR) + R + c] = q[(i64(rr) * NH + h) * (DN + DR) + DN + c];
  }
}

/// Keys per shared-memory tile of mla_decode_split.
#define DSV3_KEY_TILE 16

/// grid (splits, ceil(NH / HB), rows of this chunk, the first being row
/// `rowBase` of the batch), 256 threads. Shared memory: the HB
/// queries and a tile of keys, rows padded to R + DR + 1 floats (no bank
/// conflicts), and the tile's probabilities. Writes part [rows, splits,
/// NH, R] (unnormalised) and ml [rows, splits, NH, 2] (running max, sum).
/// The cache's rows in form CF (CacheRow).
template <int NH, int DR, int R, int HB, int CF = 0>
__global__ void mla_decode_split(const float *qt, const unsigned char *cache, const i64 *past,
                                 float *part, float *ml, i64 T, i64 S, i64 splitLen,
                                 i64 rowBase, float softmaxScale) {
  constexpr int W = R + DR, WP = W + 1, KT = DSV3_KEY_TILE;
  constexpr int CPT = (R + 255) / 256; // o~ columns per thread
  extern __shared__ float smem[];
  float *qs = smem, *ks = qs + HB * WP, *ps = ks + KT * WP;
  __shared__ float mrun[HB], lrun[HB], alpha[HB];
  int split = blockIdx.x, h0 = blockIdx.y * HB, tid = threadIdx.x;
  // row: within this launch's chunk of rows; (b, t): of the whole batch.
  i64 row = blockIdx.z, b = (rowBase + row) / T, t = (rowBase + row) % T;
  i64 splits = gridDim.x;
  i64 n = past[b] + t + 1;
  i64 begin = i64(split) * splitLen, end = begin + splitLen < n ? begin + splitLen : n;
  using Row = CacheRow<R, DR, CF>;
  const unsigned char *cb = cache + b * S * Row::Bytes;
  for (int i = tid; i < HB * W; i += blockDim.x) {
    int h = i / W, c = i % W;
    qs[h * WP + c] = h0 + h < NH ? qt[(row * NH + h0 + h) * W + c] * softmaxScale : 0.f;
  }
  if (tid < HB) {
    mrun[tid] = -INFINITY;
    lrun[tid] = 0.f;
  }
  float acc[HB][CPT];
#pragma unroll
  for (int h = 0; h < HB; ++h)
#pragma unroll
    for (int ci = 0; ci < CPT; ++ci)
      acc[h][ci] = 0.f;
  for (i64 k0 = begin; k0 < end; k0 += KT) {
    int kn = end - k0 < KT ? int(end - k0) : KT;
    __syncthreads();
    for (int i = tid; i < KT * W; i += blockDim.x) {
      int kk = i / W, c = i % W;
      ks[kk * WP + c] = kk < kn ? Row::load(cb + (k0 + kk) * Row::Bytes, c) : 0.f;
    }
    __syncthreads();
    for (int i = tid; i < HB * KT; i += blockDim.x) {
      int h = i / KT, kk = i % KT;
      float s = -INFINITY;
      if (kk < kn) {
        const float *qh = qs + h * WP, *kr = ks + kk * WP;
        s = 0.f;
        for (int c = 0; c < W; ++c)
          s += qh[c] * kr[c];
      }
      ps[h * KT + kk] = s;
    }
    __syncthreads();
    if (tid < HB) { // online softmax, one head per thread
      float mx = mrun[tid];
      for (int kk = 0; kk < kn; ++kk)
        mx = fmaxf(mx, ps[tid * KT + kk]);
      float a = expf(mrun[tid] - mx), sum = 0.f;
      for (int kk = 0; kk < KT; ++kk) {
        float p = kk < kn ? expf(ps[tid * KT + kk] - mx) : 0.f;
        ps[tid * KT + kk] = p;
        sum += p;
      }
      lrun[tid] = lrun[tid] * a + sum;
      mrun[tid] = mx;
      alpha[tid] = a;
    }
    __syncthreads();
#pragma unroll
    for (int ci = 0; ci < CPT; ++ci) {
      int c = tid + ci * 256;
      if (c >= R)
        break;
#pragma unroll
      for (int h = 0; h < HB; ++h) {
        float v = acc[h][ci] * alpha[h];
        for (int kk = 0; kk < kn; ++kk)
          v += ps[h * KT + kk] * ks[kk * WP + c];
        acc[h][ci] = v;
      }
    }
  }
  __syncthreads();
#pragma unroll
  for (int h = 0; h < HB; ++h) {
    if (h0 + h >= NH)
      break;
    i64 at = (row * splits + split) * NH + h0 + h;
#pragma unroll
    for (int ci = 0; ci < CPT; ++ci) {
      int c = tid + ci * 256;
      if (c < R)
        part[at * R + c] = acc[h][ci];
    }
    if (tid == 0) {
      ml[at * 2] = mrun[h];
      ml[at * 2 + 1] = lrun[h];
    }
  }
}

/// Keys a tile of mla_decode_mma.
#define DSV3_DECODE_MMA_KEYS 32
/// A head's row of the score sums in shared memory (decodeMmaTile's red):
/// KT + 8 floats, so that the 8 heads a warp's lanes g = 0..7 hold sit on
/// 8 different banks apart and the 8-byte stores and loads of a half-warp
/// are one wavefront. At KT floats every g landed on the same banks: 8-way
/// conflicts, 38% of the staged kernel's shared wavefronts excessive
/// (Nsight Compute, H200). DSV3_DECODE_RED_PAD (dsv3_kernel_layout.h), which
/// the runtime's mlaDecodeStagedSmem counts too.

/// The absorbed decode on tensor cores, shared by mla_decode_mma and
/// mla_decode_mma_staged (so that both compute the same bits): a group of 4
/// warps serves 16 heads (h0..h0 + 15); wq is the warp within its group.
template <int DR, int R> struct DecodeMmaShape {
  static constexpr int RL = R; // o~'s latent columns
  static constexpr int W = R + DR, WP = (W + 15) / 16 * 16, RP = (R + 63) / 64 * 64;
  static constexpr int CW = WP > RP ? WP : RP, LD = CW + 8; // bf16 key tile row
  static constexpr int KSTEPS = WP / 16, KPW = (KSTEPS + 3) / 4; // k-steps a warp
  static constexpr int NT = RP / 4 / 8;                           // o~ n-tiles a warp
};

/// This warp's k-steps of q~ (kk = wq + 4 i) as A fragments.
template <int NH, typename Sh>
__device__ __forceinline__ void decodeMmaQuery(const float *qt, i64 row, int h0, int wq,
                                               unsigned (&qf)[Sh::KPW][4]) {
  const int lane = threadIdx.x & 31, g = lane >> 2, t4 = lane & 3;
#pragma unroll
  for (int i = 0; i < Sh::KPW; ++i) {
    int kk = wq + 4 * i;
#pragma unroll
    for (int f = 0; f < 4; ++f) {
      int c = kk * 16 + (f >> 1) * 8 + 2 * t4, h = h0 + g + (f & 1) * 8;
      float x0 = 0.f, x1 = 0.f;
      if (kk < Sh::KSTEPS && h < NH) {
        const float *qr = qt + (row * NH + h) * Sh::W;
        x0 = c < Sh::W ? qr[c] : 0.f;
        x1 = c + 1 < Sh::W ? qr[c + 1] : 0.f;
      }
      qf[i][f] = packBf16x2(x0, x1);
    }
  }
}

/// One tile of KT keys (kn of them valid) from the bf16 tile ks: the
/// scores' K dimension split over the group's warps and summed through red
/// ([4][16][KT + DSV3_DECODE_RED_PAD] floats, the group's own), then every warp runs the same
/// online softmax (rows g and g + 8 of its 16 heads) and accumulates its
/// quarter of o~'s columns (values: the tile's first columns, by
/// ldmatrix.trans). Contains a __syncthreads (every thread of the block
/// calls it).
template <typename Sh, int KT>
__device__ __forceinline__ void decodeMmaTile(const unsigned short *ks, float *red, int wq,
                                              int kn, float softmaxScale,
                                              const unsigned (&qf)[Sh::KPW][4], float (&mrun)[2],
                                              float (&lrun)[2], float (&oacc)[Sh::NT][4]) {
  constexpr int LD = Sh::LD, NT = Sh::NT, RP = Sh::RP, RS = KT + DSV3_DECODE_RED_PAD;
  const int lane = threadIdx.x & 31, g = lane >> 2, t4 = lane & 3, m = lane >> 3;
  const float LOG2E = 1.4426950408889634f;
  float sc[KT / 8][4];
#pragma unroll
  for (int j = 0; j < KT / 8; ++j)
    sc[j][0] = sc[j][1] = sc[j][2] = sc[j][3] = 0.f;
#pragma unroll
  for (int i = 0; i < Sh::KPW; ++i) {
    int kk = wq + 4 * i;
    if (kk < Sh::KSTEPS)
#pragma unroll
      for (int j = 0; j < KT / 8; j += 2) {
        unsigned bk[4];
        ldmatrixX4(bk, ks + (j * 8 + (m >> 1) * 8 + (lane & 7)) * LD + kk * 16 + (m & 1) * 8);
        mmaBf16(sc[j], qf[i], bk);
        mmaBf16(sc[j + 1], qf[i], bk + 2);
      }
  }
#pragma unroll
  for (int j = 0; j < KT / 8; ++j)
#pragma unroll
    for (int e = 0; e < 4; ++e)
      red[wq * 16 * RS + (g + (e >> 1) * 8) * RS + j * 8 + 2 * t4 + (e & 1)] = sc[j][e];
  __syncthreads();
#pragma unroll
  for (int j = 0; j < KT / 8; ++j)
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      int at = (g + (e >> 1) * 8) * RS + j * 8 + 2 * t4 + (e & 1);
      float v = (red[at] + red[16 * RS + at]) + (red[2 * 16 * RS + at] + red[3 * 16 * RS + at]);
      sc[j][e] = j * 8 + 2 * t4 + (e & 1) < kn ? v * softmaxScale : -INFINITY;
    }
  float alpha[2];
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    float mx = mrun[half];
#pragma unroll
    for (int j = 0; j < KT / 8; ++j)
      mx = fmaxf(mx, fmaxf(sc[j][2 * half], sc[j][2 * half + 1]));
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
    alpha[half] = exp2f((mrun[half] - mx) * LOG2E);
    mrun[half] = mx;
    float sum = 0.f;
#pragma unroll
    for (int j = 0; j < KT / 8; ++j)
#pragma unroll
      for (int e = 2 * half; e < 2 * half + 2; ++e) {
        float p = exp2f((sc[j][e] - mx) * LOG2E);
        sc[j][e] = p;
        sum += p;
      }
    lrun[half] = lrun[half] * alpha[half] + sum;
  }
#pragma unroll
  for (int j = 0; j < NT; ++j) {
    oacc[j][0] *= alpha[0];
    oacc[j][1] *= alpha[0];
    oacc[j][2] *= alpha[1];
    oacc[j][3] *= alpha[1];
  }
  // o~ (this warp's RP / 4 columns) += P V, V the tile's first columns.
  const unsigned short *vrow = ks + ((m & 1) * 8 + (lane & 7)) * LD + wq * (RP / 4) + (m >> 1) * 8;
#pragma unroll
  for (int kk = 0; kk < KT / 16; ++kk) {
    unsigned pa[4] = {packBf16x2(sc[2 * kk][0], sc[2 * kk][1]),
                      packBf16x2(sc[2 * kk][2], sc[2 * kk][3]),
                      packBf16x2(sc[2 * kk + 1][0], sc[2 * kk + 1][1]),
                      packBf16x2(sc[2 * kk + 1][2], sc[2 * kk + 1][3])};
#pragma unroll
    for (int j = 0; j < NT; j += 2) {
      unsigned bv[4];
      ldmatrixX4Trans(bv, vrow + kk * 16 * LD + j * 8);
      mmaBf16(oacc[j], pa, bv);
      mmaBf16(oacc[j + 1], pa, bv + 2);
    }
  }
}

/// The group's partial o~ and (m, l) of split `split` of `row`, as
/// mla_decode_split writes them (m in scaled-score units).
template <int NH, typename Sh>
__device__ __forceinline__ void decodeMmaStore(const float (&oacc)[Sh::NT][4],
                                               const float (&mrun)[2], const float (&lrun)[2],
                                               int h0, int wq, i64 row, i64 splits, i64 split,
                                               float *part, float *ml) {
  const int lane = threadIdx.x & 31, g = lane >> 2, t4 = lane & 3;
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    float l = lrun[half];
    l += __shfl_xor_sync(0xffffffffu, l, 1);
    l += __shfl_xor_sync(0xffffffffu, l, 2);
    int h = h0 + g + half * 8;
    if (h >= NH)
      continue;
    i64 at = (row * splits + split) * NH + h;
#pragma unroll
    for (int j = 0; j < Sh::NT; ++j) {
      int c = wq * (Sh::RP / 4) + j * 8 + 2 * t4;
      if (c < Sh::RL)
        part[at * Sh::RL + c] = oacc[j][2 * half];
      if (c + 1 < Sh::RL)
        part[at * Sh::RL + c + 1] = oacc[j][2 * half + 1];
    }
    if (wq == 0 && t4 == 0) {
      ml[at * 2] = mrun[half];
      ml[at * 2 + 1] = l;
    }
  }
}

/// The split-KV absorbed decode on tensor cores, for bf16 models (the fp32
/// kernel above stays for fp32 ones and for sessions that compare with the
/// host): FlashMLA's observation that the absorbed form is MQA, every head
/// of a row scoring the same latent keys, so 16 heads are the M of
/// mma.sync m16n8k16 (bf16 q~ and latents, fp32 accumulation). grid
/// (splits, ceil(NH / 16), rows), 4 warps: a 32-key tile of the row's
/// latents is converted to bf16 into shared memory once and serves as the
/// keys (all R + DR widths) and the values (the first R); the scores' K
/// dimension is split over the warps (each keeps its quarter of q~ in
/// registers) and summed through shared memory, then every warp runs the
/// same online softmax and accumulates its quarter of o~'s R columns
/// (values by ldmatrix.trans). Writes part and ml as mla_decode_split does
/// (m in scaled-score units), for mla_decode_merge. Widths padded to 16
/// (scores) and 64 (o~) with zeros. The cache's rows in form CF (CacheRow).
template <int NH, int DR, int R, int CF = 0>
__global__ void __launch_bounds__(128, 3)
    mla_decode_mma(const float *qt, const unsigned char *cache, const i64 *past, float *part,
                   float *ml, i64 T, i64 S, i64 splitLen, i64 rowBase, float softmaxScale) {
  using Sh = DecodeMmaShape<DR, R>;
  using Row = CacheRow<R, DR, CF>;
  constexpr int W = Sh::W, KT = DSV3_DECODE_MMA_KEYS, CW = Sh::CW, LD = Sh::LD;
  __shared__ __align__(16) unsigned short ks[KT * LD];
  __shared__ float red[4 * 16 * (KT + DSV3_DECODE_RED_PAD)];
  const int tid = threadIdx.x, warp = tid >> 5;
  const int split = blockIdx.x, h0 = blockIdx.y * 16;
  const i64 row = blockIdx.z, b = (rowBase + row) / T, t = (rowBase + row) % T;
  const i64 splits = gridDim.x, n = past[b] + t + 1;
  const i64 begin = i64(split) * splitLen, end = begin + splitLen < n ? begin + splitLen : n;
  const unsigned char *cb = cache + b * S * Row::Bytes;
  unsigned qf[Sh::KPW][4];
  decodeMmaQuery<NH, Sh>(qt, row, h0, warp, qf);
  float oacc[Sh::NT][4];
#pragma unroll
  for (int j = 0; j < Sh::NT; ++j)
    oacc[j][0] = oacc[j][1] = oacc[j][2] = oacc[j][3] = 0.f;
  float mrun[2] = {-INFINITY, -INFINITY}, lrun[2] = {0.f, 0.f};
  for (i64 k0 = begin; k0 < end; k0 += KT) {
    const int kn = end - k0 < KT ? int(end - k0) : KT;
    __syncthreads();
    if (Row::Aligned4) { // 4 values a load (16 bytes of an fp32 row)
      // In batches of 9 a thread, all issued before the first is stored: a
      // loop of load-then-store waited out the latency of each of a tile's
      // 36 loads a thread in turn, and the kernel ran at ~10 TFLOP/s at
      // batch 128.
      constexpr int PER = KT * CW / 4, BATCH = 9;
      for (int i0 = tid; i0 < PER; i0 += BATCH * 128) {
        float4 v[BATCH];
#pragma unroll
        for (int j = 0; j < BATCH; ++j) {
          const int i = i0 + j * 128, kk = i / (CW / 4), c = i % (CW / 4) * 4;
          v[j] = make_float4(0.f, 0.f, 0.f, 0.f);
          if (i < PER && kk < kn && c < W)
            v[j] = CF == 0 ? __ldg(reinterpret_cast<const float4 *>(cb + (k0 + kk) * Row::Bytes) +
                                   c / 4)
                           : Row::load4(cb + (k0 + kk) * Row::Bytes, c);
        }
#pragma unroll
        for (int j = 0; j < BATCH; ++j) {
          const int i = i0 + j * 128, kk = i / (CW / 4), c = i % (CW / 4) * 4;
          if (i < PER)
            *reinterpret_cast<uint2 *>(ks + kk * LD + c) =
                make_uint2(packBf16x2(v[j].x, v[j].y), packBf16x2(v[j].z, v[j].w));
        }
      }
    } else {
      for (int i = tid; i < KT * CW / 2; i += blockDim.x) {
        int kk = i / (CW / 2), c = i % (CW / 2) * 2;
        float x0 = 0.f, x1 = 0.f;
        if (kk < kn) {
          const unsigned char *kr = cb + (k0 + kk) * Row::Bytes;
          x0 = c < W ? Row::load(kr, c) : 0.f;
          x1 = c + 1 < W ? Row::load(kr, c + 1) : 0.f;
        }
        *reinterpret_cast<unsigned *>(ks + kk * LD + c) = packBf16x2(x0, x1);
      }
    }
    __syncthreads();
    decodeMmaTile<Sh, KT>(ks, red, warp, kn, softmaxScale, qf, mrun, lrun, oacc);
  }
  decodeMmaStore<NH, Sh>(oacc, mrun, lrun, h0, warp, row, splits, split, part, ml);
}

/// mla_decode_mma with its key tiles staged by cp.async, for wide batches:
/// at batch 128 mla_decode_mma waited on its loads (each block converted a
/// tile with 18 KB of loads in flight, then computed with none, ~3 TB/s
/// from L2), and each of a row's 8 head groups read the row's latents. Here
/// a block serves 16 GROUPS heads (GROUPS groups of 4 warps, each exactly
/// mla_decode_mma's 16 heads and arithmetic: the same bf16 operands in the
/// same order, so the same results, whatever GROUPS), and the next STAGES
/// - 1 tiles of KT keys' fp32 latents are in flight by cp.async while one
/// is converted to bf16 and used (STAGES fp32 stages in dynamic shared
/// memory): each tile is staged and converted once for the block's heads.
/// grid (splits, ceil(NH / (16 GROUPS)), rows), 128 GROUPS threads. The
/// cache's rows in form CF (CacheRow), staged as stored (656 bytes a row
/// for fp8 at V3's widths, against 2304 for fp32); needs 16-byte rows.
template <int NH, int DR, int R, int KT, int STAGES, int GROUPS, int CF = 0>
__global__ void __launch_bounds__(128 * GROUPS)
    mla_decode_mma_staged(const float *qt, const unsigned char *cache, const i64 *past,
                          float *part, float *ml, i64 T, i64 S, i64 splitLen, i64 rowBase,
                          float softmaxScale) {
  using Sh = DecodeMmaShape<DR, R>;
  using Row = CacheRow<R, DR, CF>;
  constexpr int W = Sh::W, CW = Sh::CW, LD = Sh::LD, RB = Row::Bytes;
  static_assert(RB % 16 == 0 && Row::Aligned4,
                "mla_decode_mma_staged stages 16-byte pieces of a row");
  static_assert(KT % 16 == 0 && STAGES >= 2, "tiles of whole k16 steps, a stage ahead");
  extern __shared__ __align__(16) float decodeStagedSmem[];
  unsigned char *stage = reinterpret_cast<unsigned char *>(decodeStagedSmem); // [STAGES][KT * RB]
  unsigned short *ks = reinterpret_cast<unsigned short *>(stage + STAGES * KT * RB); // [KT * LD]
  float *red = reinterpret_cast<float *>(ks + KT * LD); // [GROUPS][4][16][KT + pad]
  const int tid = threadIdx.x, warp = tid >> 5, grp = warp >> 2, wq = warp & 3;
  const int split = blockIdx.x, h0 = (blockIdx.y * GROUPS + grp) * 16;
  const i64 row = blockIdx.z, b = (rowBase + row) / T, t = (rowBase + row) % T;
  const i64 splits = gridDim.x, n = past[b] + t + 1;
  const i64 begin = i64(split) * splitLen, end = begin + splitLen < n ? begin + splitLen : n;
  const unsigned char *cb = cache + b * S * RB;
  // One tile's rows, 16 bytes a copy, as one commit group (empty past the
  // split's end, so that every iteration waits on the same count). The
  // tile's rows are contiguous in the cache.
  auto issue = [&](int tile) {
    const i64 k0 = begin + i64(tile) * KT;
    const int kn = k0 >= end ? 0 : end - k0 < KT ? int(end - k0) : KT;
    unsigned char *dst = stage + (tile % STAGES) * KT * RB;
    for (int i = tid; i < kn * (RB / 16); i += 128 * GROUPS)
      cpAsync16(dst + i * 16, cb + k0 * RB + i64(i) * 16);
    cpAsyncCommit();
  };
#pragma unroll
  for (int tile = 0; tile < STAGES - 1; ++tile)
    issue(tile);
  unsigned qf[Sh::KPW][4];
  decodeMmaQuery<NH, Sh>(qt, row, h0, wq, qf);
  float oacc[Sh::NT][4];
#pragma unroll
  for (int j = 0; j < Sh::NT; ++j)
    oacc[j][0] = oacc[j][1] = oacc[j][2] = oacc[j][3] = 0.f;
  float mrun[2] = {-INFINITY, -INFINITY}, lrun[2] = {0.f, 0.f};
  int tile = 0;
  for (i64 k0 = begin; k0 < end; k0 += KT, ++tile) {
    const int kn = end - k0 < KT ? int(end - k0) : KT;
    // The stage the tile STAGES - 1 ahead goes to was converted a tile
    // ago, before that tile's barriers: free.
    issue(tile + STAGES - 1);
    cpAsyncWait<STAGES - 1>();
    __syncthreads(); // this tile landed for every thread; ks is free
    const unsigned char *src = stage + (tile % STAGES) * KT * RB;
    for (int i = tid; i < KT * CW / 4; i += 128 * GROUPS) {
      const int kk = i / (CW / 4), c = i % (CW / 4) * 4;
      float4 v = make_float4(0.f, 0.f, 0.f, 0.f);
      if (kk < kn && c < W)
        v = Row::load4(src + kk * RB, c);
      *reinterpret_cast<uint2 *>(ks + kk * LD + c) =
          make_uint2(packBf16x2(v.x, v.y), packBf16x2(v.z, v.w));
    }
    __syncthreads();
    decodeMmaTile<Sh, KT>(ks, red + grp * 4 * 16 * (KT + DSV3_DECODE_RED_PAD), wq, kn,
                          softmaxScale, qf, mrun, lrun, oacc);
  }
  decodeMmaStore<NH, Sh>(oacc, mrun, lrun, h0, wq, row, splits, split, part, ml);
}

/// grid (NH, rows): o~[row, h] = sum_s e^{m_s - M} part_s / sum_s e^{m_s - M} l_s.
template <int NH, int R>
__global__ void mla_decode_merge(const float *part, const float *ml, float *ot,
                                 i64 splits) {
  int h = blockIdx.x;
  i64 row = blockIdx.y;
  float M = -INFINITY;
  for (i64 s = 0; s < splits; ++s)
    M = fmaxf(M, ml[((row * splits + s) * NH + h) * 2]);
  float L = 0.f;
  for (i64 s = 0; s < splits; ++s) {
    const float *p = ml + ((row * splits + s) * NH + h) * 2;
    L += p[1] * expf(p[0] - M);
  }
  for (int c = threadIdx.x; c < R; c += blockDim.x) {
    float v = 0.f;
    for (i64 s = 0; s < splits; ++s) {
      i64 at = (row * splits + s) * NH + h;
      float m = ml[at * 2];
      if (m != -INFINITY)
        v += part[at * R + c] * expf(m - M);
    }
    ot[(row * NH + h) * R + c] = v / L;
  }
}

/// o[r, h, j] = o~[r, h] . W_UV[h, j]: a block per (head, chunk of rows),
/// grid (NH, ceil(rows / 16)), 128 threads. The rows' o~ of head h are
/// staged in shared memory once, W_UV[h] passes through it 16 columns at a
/// time, and a thread per output feature j (DV / 128 of them each) keeps
/// the chunk's sums. (A warp per (head, j) re-read every row's o~ of its
/// head for each j: 4 GB of L2 traffic a layer at batch 128 and V3 widths,
/// 1.8 ms.)
#define DSV3_ABSORB_V_COLS 16
template <int NH, int DN, int DV, int R, typename WT>
__global__ void __launch_bounds__(128)
    mla_absorb_v(const float *ot, const WT *wkvb, float *o, i64 rows) {
  constexpr int CC = DSV3_ABSORB_V_COLS, RP = (R + CC - 1) / CC * CC;
  // Rows a chunk: 16, fewer where R or DV is wide (static shared memory
  // stays under 44 KB).
  constexpr int OS = 45056 - DV * (CC + 1) * 4; // bytes left for o~
  constexpr int RB = RP * 4 * DSV3_ABSORB_ROWS <= OS ? DSV3_ABSORB_ROWS
                     : OS / (RP * 4) > 0          ? OS / (RP * 4)
                                                  : 1;
  constexpr int JJ = (DV + 127) / 128; // output features a thread
  __shared__ float os[RB][RP];
  __shared__ float ws[DV][CC + 1];
  const int h = blockIdx.x, tid = threadIdx.x;
  const WT *w = wkvb + (i64(h) * (DN + DV) + DN) * R; // W_UV[h]: [DV, R]
  for (i64 r0 = i64(blockIdx.y) * RB; r0 < rows; r0 += i64(gridDim.y) * RB) {
    const int nr = rows - r0 < RB ? int(rows - r0) : RB;
    __syncthreads();
    for (int i = tid; i < RB * RP; i += blockDim.x) {
      int rr = i / RP, c = i % RP;
      os[rr][c] = rr < nr && c < R ? ot[((r0 + rr) * NH + h) * R + c] : 0.f;
    }
    float acc[JJ][RB];
#pragma unroll
    for (int jj = 0; jj < JJ; ++jj)
#pragma unroll
      for (int rr = 0; rr < RB; ++rr)
        acc[jj][rr] = 0.f;
    for (int c0 = 0; c0 < RP; c0 += CC) {
      __syncthreads();
      for (int i = tid; i < DV * CC; i += blockDim.x) {
        int j = i / CC, c = i % CC;
        ws[j][c] = c0 + c < R ? wload(w, i64(j) * R + c0 + c) : 0.f;
      }
      __syncthreads();
#pragma unroll
      for (int jj = 0; jj < JJ; ++jj) {
        const int j = tid + 128 * jj;
        if (j >= DV)
          break;
#pragma unroll
        for (int c = 0; c < CC; ++c) {
          const float wv = ws[j][c];
#pragma unroll
          for (int rr = 0; rr < RB; ++rr)
            acc[jj][rr] += os[rr][c0 + c] * wv;
        }
      }
    }
#pragma unroll
    for (int jj = 0; jj < JJ; ++jj) {
      const int j = tid + 128 * jj;
      if (j >= DV)
        break;
#pragma unroll
      for (int rr = 0; rr < RB; ++rr)
        if (rr < nr)
          o[((r0 + rr) * NH + h) * DV + j] = acc[jj][rr];
    }
  }
}

/// The router's selection, one token per block (SEMANTICS.md 5.2, 5.5),
/// from the gate logits [n, E] (computed by the GEMM schedules, which
/// spread the gate weight over the whole GPU; one block reading it for a
/// token took 0.5 ms at V3 widths). The block scores the experts and adds
/// the correction bias in parallel, a thread per group ranks its experts,
/// thread 0 keeps the top groups, and K rounds of a block argmax pick the
/// experts (ties: lower index first, as the host). One thread doing it all
/// took 150 us per call at V3 widths (8% of a batch-1 decode step).
/// Scoring 0 sigmoid, 1 softmax; Method 0 greedy, 1 group_limited_greedy,
/// 2 noaux_tc.
template <int E, int K, int G, int TG, int Scoring, int Method, int Norm>
__global__ void moe_route(const float *logits, const float *bias, i64 *indices,
                          float *weights, i64 n, float scaling) {
  __shared__ float score[E];
  __shared__ float choice[E];
  __shared__ float gscore[G];
  __shared__ bool keep[G];
  __shared__ int sel[K];
  __shared__ float softmaxSum;
  // Per warp: the best (value, expert) of the current top-k round.
  __shared__ float bestV[32];
  __shared__ int bestI[32];
  i64 token = blockIdx.x;
  if (token >= n)
    return;
  int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, warps = blockDim.x >> 5;
  for (int e = tid; e < E; e += blockDim.x)
    score[e] = logits[token * E + e];
  __syncthreads();
  if (Scoring == 0) {
    for (int e = tid; e < E; e += blockDim.x)
      score[e] = 1.f / (1.f + expf(-score[e]));
  } else {
    float mx = -INFINITY;
    for (int e = tid; e < E; e += blockDim.x)
      mx = fmaxf(mx, score[e]);
    mx = blockMax(mx);
    for (int e = tid; e < E; e += blockDim.x)
      score[e] = expf(score[e] - mx);
    __syncthreads();
    if (tid == 0) { // in expert order, as the host sums
      float sum = 0.f;
      for (int e = 0; e < E; ++e)
        sum += score[e];
      softmaxSum = sum;
    }
    __syncthreads();
    for (int e = tid; e < E; e += blockDim.x)
      score[e] /= softmaxSum;
  }
  __syncthreads();
  for (int e = tid; e < E; e += blockDim.x)
    choice[e] = bias ? score[e] + bias[e] : score[e];
  __syncthreads();
  if (Method != 0) {
    const int per = E / G;
    // A thread per group: its best (and second best) choice.
    for (int g = tid; g < G; g += blockDim.x) {
      float best = -INFINITY, second = -INFINITY;
      for (int e = g * per; e < (g + 1) * per; ++e) {
        float v = choice[e];
        if (v > best) {
          second = best;
          best = v;
        } else if (v > second) {
          second = v;
        }
      }
      gscore[g] = Method == 2 ? best + second : best;
      keep[g] = false;
    }
    __syncthreads();
    if (tid == 0)
      for (int k = 0; k < TG; ++k) {
        int arg = -1;
        for (int g = 0; g < G; ++g)
          if (!keep[g] && (arg < 0 || gscore[g] > gscore[arg]))
            arg = g;
        keep[arg] = true;
      }
    __syncthreads();
    for (int e = tid; e < E; e += blockDim.x)
      if (!keep[e / per])
        choice[e] = Method == 2 ? -INFINITY : 0.f;
    __syncthreads();
  }
  // K rounds of a block argmax over the experts not yet taken (ties: the
  // lower index, as the host's scan in expert order). A taken expert's
  // choice becomes NaN, which never wins a comparison.
  for (int k = 0; k < K; ++k) {
    float v = 0.f;
    int arg = -1;
    for (int e = tid; e < E; e += blockDim.x) {
      float c = choice[e];
      if (c == c && (arg < 0 || c > v)) { // strided: e ascending, so ties keep the lower
        v = c;
        arg = e;
      }
    }
    for (int off = 16; off > 0; off >>= 1) {
      float ov = __shfl_down_sync(0xffffffffu, v, off);
      int oa = __shfl_down_sync(0xffffffffu, arg, off);
      if (oa >= 0 && (arg < 0 || ov > v || (ov == v && oa < arg))) {
        v = ov;
        arg = oa;
      }
    }
    if (lane == 0) {
      bestV[warp] = v;
      bestI[warp] = arg;
    }
    __syncthreads();
    if (tid == 0) {
      float bv = 0.f;
      int ba = -1;
      for (int w = 0; w < warps; ++w)
        if (bestI[w] >= 0 && (ba < 0 || bestV[w] > bv || (bestV[w] == bv && bestI[w] < ba))) {
          bv = bestV[w];
          ba = bestI[w];
        }
      sel[k] = ba;
      choice[ba] = __int_as_float(0x7fffffff); // NaN: taken
    }
    __syncthreads();
  }
  if (tid == 0) {
    float sum = 0.f;
    for (int k = 0; k < K; ++k)
      sum += score[sel[k]];
    for (int k = 0; k < K; ++k) {
      float w = score[sel[k]];
      if (Norm)
        w /= (sum + 1e-20f);
      indices[token * K + k] = sel[k];
      weights[token * K + k] = w * scaling;
    }
  }
}

/// Counting sort of the R = n*K slots by expert, stable: counts[E], slots
/// [row] = the slot of each row (rows grouped by expert, slots ascending
/// within an expert), in chunks of DSV3_DISPATCH_CHUNK slots, a block each:
///   dispatch_plan   each chunk's expert histogram, chunkCounts [chunks, E]
///   dispatch_place  every block sums the histograms (expert totals, and the
///                   chunks before its own), scans the totals, then places
///                   its chunk: thread t owns experts t, t + 256, ... and
///                   walks the chunk (from shared memory, broadcast reads),
///                   writing its experts' slots in order.
/// (One thread over all R slots took 6 ms a layer at 65536 routed rows, one
/// block 2 ms.)
#define DSV3_DISPATCH_CHUNK 1024
template <int E, int K>
__global__ void __launch_bounds__(256)
    dispatch_plan(const i64 *indices, i64 R, int *chunkCounts) {
  __shared__ int hist[E];
  const i64 base = i64(blockIdx.x) * DSV3_DISPATCH_CHUNK;
  const i64 end = base + DSV3_DISPATCH_CHUNK < R ? base + DSV3_DISPATCH_CHUNK : R;
  for (int e = threadIdx.x; e < E; e += blockDim.x)
    hist[e] = 0;
  __syncthreads();
  for (i64 i = base + threadIdx.x; i < end; i += blockDim.x)
    atomicAdd(&hist[indices[i]], 1);
  __syncthreads();
  for (int e = threadIdx.x; e < E; e += blockDim.x)
    chunkCounts[i64(blockIdx.x) * E + e] = hist[e];
}
template <int E, int K>
__global__ void __launch_bounds__(256)
    dispatch_place(const i64 *indices, i64 R, const int *chunkCounts, i64 *counts, i64 *slots) {
  constexpr int Threads = 256, Per = (E + Threads - 1) / Threads;
  __shared__ int chunk[DSV3_DISPATCH_CHUNK];
  __shared__ i64 offset[E];
  const int tid = threadIdx.x, c = blockIdx.x, chunks = gridDim.x;
  const i64 base = i64(c) * DSV3_DISPATCH_CHUNK;
  const int n = int(R - base < DSV3_DISPATCH_CHUNK ? R - base : DSV3_DISPATCH_CHUNK);
  i64 mine[Per];
#pragma unroll
  for (int p = 0; p < Per; ++p) {
    int e = tid + p * Threads;
    i64 total = 0, before = 0;
    if (e < E)
      for (int cc = 0; cc < chunks; ++cc) {
        int v = chunkCounts[i64(cc) * E + e];
        before += cc < c ? v : 0;
        total += v;
      }
    mine[p] = before;
    if (e < E) {
      offset[e] = total;
      if (c == 0)
        counts[e] = total;
    }
  }
  for (int i = tid; i < n; i += Threads)
    chunk[i] = int(indices[base + i]);
  __syncthreads();
  if (tid == 0) { // exclusive scan of the E totals
    i64 acc = 0;
    for (int e = 0; e < E; ++e) {
      i64 t = offset[e];
      offset[e] = acc;
      acc += t;
    }
  }
  __syncthreads();
#pragma unroll
  for (int p = 0; p < Per; ++p)
    if (tid + p * Threads < E)
      mine[p] += offset[tid + p * Threads];
  for (int i = 0; i < n; ++i) {
    int e = chunk[i] - tid;
    if (e >= 0 && e % Threads == 0 && e / Threads < Per) {
#pragma unroll
      for (int p = 0; p < Per; ++p)
        if (e / Threads == p)
          slots[mine[p]++] = base + i;
    }
  }
}

/// rows[r] = x[slots[r] / K], one block per row.
template <int H>
__global__ void dispatch_gather(const float *x, const i64 *slots, float *rows,
                                i64 R, i64 K) {
  i64 r = blockIdx.x;
  if (r >= R)
    return;
  const float *src = x + (slots[r] / K) * H;
  for (int j = threadIdx.x; j < H; j += blockDim.x)
    rows[r * H + j] = src[j];
}
/// dispatch_gather storing each row rounded to bf16 (H even), where the
/// rows' only reader is a bf16 grouped GEMM that would round them first:
/// half the bytes written, and no to_bf16 pass over them.
template <int H>
__global__ void dispatch_gather_bf16(const float *x, const i64 *slots, unsigned short *rows,
                                     i64 R, i64 K) {
  i64 r = blockIdx.x;
  if (r >= R)
    return;
  const float *src = x + (slots[r] / K) * H;
  for (int j = 2 * threadIdx.x; j < H; j += 2 * blockDim.x) {
    float2 v = *reinterpret_cast<const float2 *>(src + j);
    *reinterpret_cast<unsigned *>(rows + r * H + j) = packBf16x2(v.x, v.y);
  }
}

/// The expert owning row r of the routed rows (grouped by expert, counts[e]
/// each, in expert order) and that expert's rows [begin, end), for the
/// whole warp: lane l sums the counts of experts [l P, (l + 1) P), a warp
/// scan finds the lane whose range holds r, which walks its experts and
/// broadcasts (one thread walking all E counts took tens of microseconds
/// per block at E = 256).
template <int E>
__device__ __forceinline__ void expertRows(const i64 *counts, i64 r, int &expert, i64 &begin,
                                           i64 &end) {
  constexpr int P = (E + 31) / 32;
  const int lane = threadIdx.x & 31;
  i64 c[P], sum = 0;
#pragma unroll
  for (int j = 0; j < P; ++j) {
    int e = lane * P + j;
    c[j] = e < E ? counts[e] : 0;
    sum += c[j];
  }
  i64 last = sum;
  for (int off = 1; off < 32; off <<= 1) {
    i64 t = __shfl_up_sync(0xffffffffu, last, off);
    if (lane >= off)
      last += t;
  }
  i64 first = last - sum;
  unsigned owner = __ballot_sync(0xffffffffu, r >= first && r < last);
  int e = E;
  i64 b = 0, n = 0;
  if (r >= first && r < last) {
#pragma unroll
    for (int j = 0; j < P; ++j) {
      if (e == E && r < first + c[j]) {
        e = lane * P + j;
        b = first;
        n = c[j];
      }
      first += c[j];
    }
  }
  int src = owner ? __ffs(owner) - 1 : 0;
  expert = owner ? __shfl_sync(0xffffffffu, e, src) : E;
  begin = __shfl_sync(0xffffffffu, b, src);
  end = begin + __shfl_sync(0xffffffffu, n, src);
}

/// The routed experts' GEMMs at a few rows an expert (decode): y[r, n] =
/// rows[r] . W[e(r), n] (gated: silu(rows[r] . Wg) * (rows[r] . Wu)). A
/// warp per output column, 8 a block; blockIdx.y is a row, and the block
/// of an expert's first row computes all that expert's rows, 4 at a time,
/// so each weight row is read once per expert rather than once per routed
/// row (the blocks of the other rows exit). bf16 weights: 8 a lane per
/// 16-byte load (2-byte loads left the kernel at ~1.8 TB/s); the rows are
/// read from global memory (L1/L2: 28 KB a row at V3 widths).
template <int N, int KD, int E, typename WT, bool Gated>
__device__ __forceinline__ void expertRowsGemm(const float *rows, const WT *W, const WT *Wu,
                                               const i64 *counts, float *y, i64 R) {
  const int lane = threadIdx.x & 31;
  const int n = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
  // Rows beyond the grid's y extent (at most 65535) loop.
  for (i64 r = blockIdx.y; r < R; r += gridDim.y) {
    int expert;
    i64 begin, end;
    expertRows<E>(counts, r, expert, begin, end);
    if (r != begin || n >= N || expert >= E)
      continue; // another block serves this expert's rows
    const WT *w = W + (i64(expert) * N + n) * KD;
    const WT *wu = Gated ? Wu + (i64(expert) * N + n) * KD : nullptr;
    for (i64 g0 = begin; g0 < end; g0 += 4) {
      const int nr = end - g0 < 4 ? int(end - g0) : 4;
      float a[4] = {0.f, 0.f, 0.f, 0.f}, u[4] = {0.f, 0.f, 0.f, 0.f};
      if constexpr (sizeof(WT) == 2 && KD % 8 == 0) {
        for (int k = lane * 8; k < KD; k += 256) {
          float w8[8], u8[8];
          wload8(reinterpret_cast<const unsigned short *>(w) + k, w8);
          if (Gated)
            wload8(reinterpret_cast<const unsigned short *>(wu) + k, u8);
#pragma unroll
          for (int i = 0; i < 4; ++i) {
            if (i >= nr)
              break;
            float x8[8];
            xload8(rows + (g0 + i) * KD + k, x8);
#pragma unroll
            for (int q = 0; q < 8; ++q) {
              a[i] += x8[q] * w8[q];
              if (Gated)
                u[i] += x8[q] * u8[q];
            }
          }
        }
      } else {
        for (int k = lane; k < KD; k += 32) {
          float wk = wload(w, k), uk = Gated ? wload(wu, k) : 0.f;
#pragma unroll
          for (int i = 0; i < 4; ++i) {
            if (i >= nr)
              break;
            float xv = rows[(g0 + i) * KD + k];
            a[i] += xv * wk;
            if (Gated)
              u[i] += xv * uk;
          }
        }
      }
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        if (i >= nr)
          break;
        float g = warpSum(a[i]);
        float v = g;
        if (Gated)
          v = g / (1.f + expf(-g)) * warpSum(u[i]);
        if (lane == 0)
          y[(g0 + i) * N + n] = v;
      }
    }
  }
}

/// y[r, n] = rows[r] . W[e(r), n], e(r) the expert owning row r.
template <int N, int KD, int E, typename WT>
__global__ void expert_gmm(const float *rows, const WT *W, const i64 *counts,
                           float *y, i64 R) {
  expertRowsGemm<N, KD, E, WT, false>(rows, W, nullptr, counts, y, R);
}

/// The experts' gate/up projections with SwiGLU: expert_gmm with two weights.
template <int N, int KD, int E, typename WT>
__global__ void expert_gated_gmm(const float *rows, const WT *Wg,
                                 const WT *Wu, const i64 *counts, float *y,
                                 i64 R) {
  expertRowsGemm<N, KD, E, WT, true>(rows, Wg, Wu, counts, y, R);
}

/// The routed experts' GEMMs at a few rows an expert on tensor cores, for
/// bf16 weights (decode batches: at batch 128 of top-8 over 256 experts,
/// ~4 rows an expert). The weights are the MMA's M operand and the rows its
/// N ("swap AB"): mma.sync m16n8k16 computes 16 weight rows x 8 routed rows,
/// so an expert's handful of rows fills an 8-wide tile where the 64- and
/// 128-row tiles of the prefill GEMMs were mostly padding (computed), and
/// the CUDA-core row kernel above was bound by its FMAs from ~4 rows an
/// expert. A warp owns 16 weight rows of one expert, 8 warps a block,
/// grid (ceil(N / 128), E): each weight byte is read once per pass of up to
/// DSV3_ROWS_MMA_TILES x 8 rows (more rows take more passes), streamed with
/// 16-byte loads that skip L1 (the rows, re-read by the block's 8 warps,
/// stay there).
///
/// Fragments without shared memory: lane (g, t4) loads 8 consecutive K
/// elements, at 8 t4 of each 32-wide chunk, of weight rows g and g + 8 and
/// of routed row g of the tile. Those 8 elements serve as the lane's K
/// positions {2t4, 2t4+1, 2t4+8, 2t4+9} of two k16 steps. The map from K
/// positions to elements is a permutation of the chunk, the same for both
/// operands, so the dot products are unchanged. The fp32 rows are split as
/// hi + lo, both bf16, and both are multiplied (as gemm_mma: fp32 accuracy,
/// the extra MMAs free in a memory-bound kernel). KD % 8 == 0 (a lane's 8
/// elements all inside K or all past it, zeros then).
#define DSV3_ROWS_MMA_TILES 4
#define DSV3_ROWS_MMA_UNROLL 4

/// 16 bytes of a weight stream, not kept in L1.
__device__ __forceinline__ uint4 ldStream16(const void *p) {
  uint4 v;
  asm("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];\n"
      : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
      : "l"(p));
  return v;
}
/// ldStream16 with the L2::256B hint: a miss brings the 256-byte sector
/// group into L2 at once. The row kernels read 256 contiguous bytes of a
/// row between waits; on an H200 their read pattern ran at 4.2 TB/s with
/// the hint against 3.8 without (bench/hbm_ceiling.cu).
__device__ __forceinline__ uint4 ldStream16L2(const void *p) {
  uint4 v;
  asm("ld.global.nc.L1::no_allocate.L2::256B.v4.u32 {%0, %1, %2, %3}, [%4];\n"
      : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
      : "l"(p));
  return v;
}
/// x0, x1 as bf16 pairs hi and lo with x ~ hi + lo.
__device__ __forceinline__ void splitBf16x2(float x0, float x1, unsigned &hi, unsigned &lo) {
  hi = packBf16x2(x0, x1);
  lo = packBf16x2(x0 - __uint_as_float(hi << 16), x1 - __uint_as_float(hi & 0xffff0000u));
}

/// The first of expert e's rows (rows grouped by expert, counts[e] each,
/// in expert order): the counts of the experts before it, summed by the
/// whole warp.
__device__ __forceinline__ i64 expertFirstRow(const i64 *counts, int e) {
  i64 first = 0;
  for (int j = threadIdx.x & 31; j < e; j += 32)
    first += counts[j];
  for (int o = 16; o > 0; o >>= 1)
    first += __shfl_xor_sync(0xffffffffu, first, o);
  return first;
}

/// f(i, j, n, r) for every accumulator of the swap-AB kernels' tiles that
/// holds an output: accumulator j of 8-row tile i is weight row n0 + g (+ 8
/// from j = 2) and row 8 i + 2 t4 (+ 1 for odd j) of the pass, n < N, r <
/// left.
template <int TILES, typename F>
__device__ __forceinline__ void rowsMmaOutputs(int tiles, int n0, int N, int left, F f) {
  const int lane = threadIdx.x & 31, g = lane >> 2, t4 = lane & 3;
#pragma unroll
  for (int i = 0; i < TILES; ++i) {
    if (i >= tiles)
      break;
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int n = n0 + g + (j >> 1) * 8, r = i * 8 + 2 * t4 + (j & 1);
      if (n < N && r < left)
        f(i, j, n, r);
    }
  }
}

/// One 32-wide K step of the swap-AB kernels: acc[i] (gated: and accU[i])
/// += the step's weight fragments (a0 / a1: the lane's 8 elements of rows
/// g and g + 8 of W, up0 / up1 of Wu) times rows [8 i, 8 i + 8) of x (stride
/// ldx; `left` of them, `tiles` tiles) at K positions [k, k + 32); `in`:
/// whether the lane's 8 elements lie inside K.
template <int TILES, bool Gated>
__device__ __forceinline__ void rowsMmaStep(const uint4 &a0, const uint4 &a1, const uint4 &up0,
                                            const uint4 &up1, const float *x, i64 ldx, int k,
                                            bool in, int left, int tiles,
                                            float (&acc)[TILES][4], float (&accU)[TILES][4]) {
  const int lane = threadIdx.x & 31, g = lane >> 2, t4 = lane & 3;
  const unsigned A[2][4] = {{a0.x, a1.x, a0.y, a1.y}, {a0.z, a1.z, a0.w, a1.w}};
  const unsigned AU[2][4] = {{up0.x, up1.x, up0.y, up1.y}, {up0.z, up1.z, up0.w, up1.w}};
#pragma unroll
  for (int i = 0; i < TILES; ++i) {
    if (i >= tiles)
      break;
    float xs[8] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f};
    if (in && i * 8 + g < left)
      xload8(x + (i * 8 + g) * ldx + k + 8 * t4, xs);
    unsigned hi[4], lo[4];
#pragma unroll
    for (int q = 0; q < 4; ++q)
      splitBf16x2(xs[2 * q], xs[2 * q + 1], hi[q], lo[q]);
#pragma unroll
    for (int st = 0; st < 2; ++st) {
      const unsigned bh[2] = {hi[2 * st], hi[2 * st + 1]};
      const unsigned bl[2] = {lo[2 * st], lo[2 * st + 1]};
      mmaBf16(acc[i], A[st], bh);
      mmaBf16(acc[i], A[st], bl);
      if (Gated) {
        mmaBf16(accU[i], AU[st], bh);
        mmaBf16(accU[i], AU[st], bl);
      }
    }
  }
}

/// The K loop of the swap-AB kernels: acc[i] (gated: and accU[i]) += the
/// warp's 16 weight rows (w0/w1: rows g and g + 8 of W, u0/u1 of Wu, each
/// already at the lane's 8 t4 elements; v0/v1 whether those rows exist)
/// times rows [8 i, 8 i + 8) of x (stride ldx; `left` of them, `tiles`
/// tiles) over K in [kb, ke): kb a multiple of 32, ke - kb too or ke the
/// end of K (a lane's 8 elements then all inside or all past it).
template <int TILES, bool Gated>
__device__ __forceinline__ void rowsMmaSums(const float *x, i64 ldx, const unsigned short *w0,
                                            const unsigned short *w1, const unsigned short *u0,
                                            const unsigned short *u1, bool v0, bool v1, int left,
                                            int tiles, int kb, int ke, float (&acc)[TILES][4],
                                            float (&accU)[TILES][4]) {
  constexpr int U = DSV3_ROWS_MMA_UNROLL;
  const int t4 = threadIdx.x & 3;
  const uint4 zero = make_uint4(0u, 0u, 0u, 0u);
  for (int k0 = kb; k0 < ke; k0 += 32 * U) {
    uint4 a0[U], a1[U], up0[U], up1[U]; // gate (or only) and up weights
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const int k = k0 + 32 * u;
      const bool in = k + 8 * t4 < ke;
      a0[u] = in && v0 ? ldStream16L2(w0 + k) : zero;
      a1[u] = in && v1 ? ldStream16L2(w1 + k) : zero;
      up0[u] = Gated && in && v0 ? ldStream16L2(u0 + k) : zero;
      up1[u] = Gated && in && v1 ? ldStream16L2(u1 + k) : zero;
    }
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const int k = k0 + 32 * u;
      if (k >= ke)
        break;
      rowsMmaStep<TILES, Gated>(a0[u], a1[u], up0[u], up1[u], x, ldx, k, k + 8 * t4 < ke, left,
                                tiles, acc, accU);
    }
  }
}

/// The lane's pointers into weight rows n0 + g and n0 + g + 8 of W [N, KD]
/// (row 0 where a row is past N, never read then).
template <int N, int KD>
__device__ __forceinline__ void rowsMmaRows(const unsigned short *W, int n0,
                                            const unsigned short *&w0,
                                            const unsigned short *&w1) {
  const int lane = threadIdx.x & 31, g = lane >> 2, t4 = lane & 3;
  w0 = W + i64(n0 + g < N ? n0 + g : 0) * KD + 8 * t4;
  w1 = W + i64(n0 + g + 8 < N ? n0 + g + 8 : 0) * KD + 8 * t4;
}

/// The warp's part of y[r, n] = x[r] . W[n] for `count` rows of x (stride
/// ldx) and y (stride ldy), W [N, KD] (rows KD apart), n in [n0, n0 + 16).
template <int N, int KD>
__device__ __forceinline__ void rowsMma(const float *x, i64 ldx, const unsigned short *W,
                                        i64 count, float *y, i64 ldy, int n0) {
  constexpr int TILES = DSV3_ROWS_MMA_TILES;
  static_assert(KD % 8 == 0, "rowsMma reads K in 8-element pieces");
  const int g = (threadIdx.x & 31) >> 2;
  const unsigned short *w0, *w1;
  rowsMmaRows<N, KD>(W, n0, w0, w1);
  for (i64 t0 = 0; t0 < count; t0 += 8 * TILES) {
    const int left = count - t0 < 8 * TILES ? int(count - t0) : 8 * TILES;
    const int tiles = (left + 7) / 8;
    float acc[TILES][4], unused[TILES][4];
#pragma unroll
    for (int i = 0; i < TILES; ++i)
#pragma unroll
      for (int j = 0; j < 4; ++j)
        acc[i][j] = 0.f;
    rowsMmaSums<TILES, false>(x + t0 * ldx, ldx, w0, w1, nullptr, nullptr, n0 + g < N,
                              n0 + g + 8 < N, left, tiles, 0, KD, acc, unused);
    rowsMmaOutputs<TILES>(tiles, n0, N, left,
                          [&](int i, int j, int n, int r) { y[(t0 + r) * ldy + n] = acc[i][j]; });
  }
}

/// Block (blockIdx.x, e) of the expert row kernels: y[r, n] = rows[r] .
/// W[e, n] (gated: silu(rows[r] . Wg[e, n]) * (rows[r] . Wu[e, n])) for
/// expert e's rows (grouped by expert, counts[e] each, in expert order).
/// The block's 8 warps form 8 / ks groups of ks: group q takes weight rows
/// [16 (blockIdx.x 8 / ks + q), + 16), and its ks warps split K into
/// slices of whole 32 x DSV3_ROWS_MMA_UNROLL steps, their sums meeting in
/// shared memory (dynamic, ks > 1: [8][2 or 1][TILES x 4][32] floats),
/// added in slice order. With ks = 2 a block is 64 rows: twice the blocks
/// for the few experts of small batches, and decode at batch 128 ~0.3 ms
/// faster on an H200 (expertRowsKsplit). Warps taking turns over K's steps
/// instead of slices (runs of ks x 256 bytes a row) read no faster
/// (bench/hbm_ceiling.cu).
template <int N, int KD, bool Gated>
__device__ __forceinline__ void expertRowsSplitMma(const float *rows, const unsigned short *W,
                                                   const unsigned short *Wu, const i64 *counts,
                                                   float *y, int ks) {
  constexpr int TILES = DSV3_ROWS_MMA_TILES, U = DSV3_ROWS_MMA_UNROLL, NA = Gated ? 2 : 1;
  static_assert(KD % 8 == 0, "the expert row kernels read K in 8-element pieces");
  extern __shared__ float rowsSplitRed[]; // [8][NA][TILES][4][32]
  const int e = blockIdx.y;
  const i64 cnt = counts[e];
  if (cnt == 0)
    return;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2;
  const int s = warp % ks, n0 = (blockIdx.x * (8 / ks) + warp / ks) * 16;
  const unsigned short *w0, *w1, *u0 = nullptr, *u1 = nullptr;
  rowsMmaRows<N, KD>(W + i64(e) * N * KD, n0, w0, w1);
  if (Gated)
    rowsMmaRows<N, KD>(Wu + i64(e) * N * KD, n0, u0, u1);
  // Slice s: whole steps of 32 U, the last slice's end K's.
  constexpr int STEPS = (KD + 32 * U - 1) / (32 * U);
  const int per = (STEPS + ks - 1) / ks * 32 * U;
  const int kb = s * per < KD ? s * per : KD, ke = kb + per < KD ? kb + per : KD;
  const i64 first = expertFirstRow(counts, e);
  const float *x = rows + first * KD;
  float *yb = y + first * N;
  float *red = rowsSplitRed + warp * (NA * TILES * 4 * 32) + lane;
  // Every warp runs every pass (counts[e] is the block's), so that the
  // barriers below are reached by all; groups past N read nothing.
  for (i64 t0 = 0; t0 < cnt; t0 += 8 * TILES) {
    const int left = cnt - t0 < 8 * TILES ? int(cnt - t0) : 8 * TILES;
    const int tiles = (left + 7) / 8;
    float acc[TILES][4], accU[TILES][4];
#pragma unroll
    for (int i = 0; i < TILES; ++i)
#pragma unroll
      for (int j = 0; j < 4; ++j)
        acc[i][j] = accU[i][j] = 0.f;
    rowsMmaSums<TILES, Gated>(x + t0 * KD, KD, w0, w1, u0, u1, n0 + g < N, n0 + g + 8 < N, left,
                              tiles, kb, ke, acc, accU);
    if (ks > 1) {
      if (s > 0)
#pragma unroll
        for (int i = 0; i < TILES; ++i)
#pragma unroll
          for (int j = 0; j < 4; ++j) {
            red[(i * 4 + j) * 32] = acc[i][j];
            if (Gated)
              red[((TILES + i) * 4 + j) * 32] = accU[i][j];
          }
      __syncthreads();
      if (s == 0)
        for (int o = 1; o < ks; ++o)
#pragma unroll
          for (int i = 0; i < TILES; ++i)
#pragma unroll
            for (int j = 0; j < 4; ++j) {
              const float *r = red + o * (NA * TILES * 4 * 32);
              acc[i][j] += r[(i * 4 + j) * 32];
              if (Gated)
                accU[i][j] += r[((TILES + i) * 4 + j) * 32];
            }
      __syncthreads(); // read before the next pass writes
    }
    if (s == 0)
      rowsMmaOutputs<TILES>(tiles, n0, N, left, [&](int i, int j, int n, int r) {
        float v = acc[i][j];
        if (Gated)
          v = v / (1.f + expf(-v)) * accU[i][j];
        yb[(t0 + r) * N + n] = v;
      });
  }
}

/// y[r, n] = rows[r] . W[e(r), n] on tensor cores (expertRowsSplitMma),
/// grid (ceil(N / (128 / ks)), E), 256 threads, ks in {1, 2, 4, 8}.
template <int N, int KD, int E>
__global__ void __launch_bounds__(256, 3)
    expert_rows_split_mma(const float *rows, const unsigned short *W, const i64 *counts,
                          float *y, int ks) {
  expertRowsSplitMma<N, KD, false>(rows, W, nullptr, counts, y, ks);
}

/// silu(rows[r] . Wg[e(r), n]) * (rows[r] . Wu[e(r), n]) on tensor cores.
template <int N, int KD, int E>
__global__ void __launch_bounds__(256, 2)
    expert_gated_rows_split_mma(const float *rows, const unsigned short *Wg,
                                const unsigned short *Wu, const i64 *counts, float *y, int ks) {
  expertRowsSplitMma<N, KD, true>(rows, Wg, Wu, counts, y, ks);
}

/// mla_absorb_v for bf16 weights on tensor cores (rowsMma: W_UV[h]'s DV
/// rows as the MMA's M operand, the rows' o~ as its N), grid (ceil(DV /
/// 128), NH), 256 threads: W_UV is read once per 32 rows. The fp32 o~ is
/// split as hi + lo (fp32 accuracy, as the kernel above).
template <int NH, int DN, int DV, int R>
__global__ void __launch_bounds__(256)
    mla_absorb_v_mma(const float *ot, const unsigned short *wkvb, float *o, i64 rows) {
  const int h = blockIdx.y, n0 = (blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32) * 16;
  if (n0 >= DV)
    return;
  rowsMma<DV, R>(ot + i64(h) * R, i64(NH) * R, wkvb + (i64(h) * (DN + DV) + DN) * R, rows,
                 o + i64(h) * DV, i64(NH) * DV, n0);
}

/// linear_rows for bf16 weights on tensor cores: decode's dense GEMMs
/// (lm_head, the attention projections, the dense MLP's down projection)
/// at up to 8 rows, each weight byte read once. The fragments are
/// rowsMma's (weights as the MMA's M operand, 16 rows a warp); here the 8
/// warps of a block share those 16 weight rows and split K between them
/// (the sums meet in shared memory), and blockIdx.y splits K further: a
/// narrow N (kv_a's 576, the router's 256) then still spreads over the
/// whole GPU, which 16 rows a warp alone did not (96 us for kv_a at batch
/// 1, against 20 for the CUDA-core kernel). grid (ceil(N / 16), splits),
/// kChunk a multiple of 256; with splits > 1 the sums go to part[split]
/// and splitk_reduce adds them (fixed order), the bias and the residual.
/// x 16-byte aligned, ldx % 4 == 0, rows <= 8.
template <int N, int K>
__global__ void __launch_bounds__(256)
    linear_rows_mma(const float *x, i64 ldx, const unsigned short *W, const unsigned short *b,
                    const float *res, float *y, i64 rows, int kChunk, float *part) {
  static_assert(K % 8 == 0, "linear_rows_mma reads K in 8-element pieces");
  __shared__ float red[8][32][4];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, t4 = lane & 3;
  const int n0 = blockIdx.x * 16;
  const int per = kChunk / 8; // a multiple of 32
  const int kb = blockIdx.y * kChunk + warp * per;
  const int ke = kb + per < K ? kb + per : K;
  const unsigned short *w0, *w1;
  rowsMmaRows<N, K>(W, n0, w0, w1);
  float acc[1][4] = {{0.f, 0.f, 0.f, 0.f}}, unused[1][4];
  rowsMmaSums<1, false>(x, ldx, w0, w1, nullptr, nullptr, n0 + g < N, n0 + g + 8 < N, int(rows),
                        1, kb, ke, acc, unused);
#pragma unroll
  for (int j = 0; j < 4; ++j)
    red[warp][lane][j] = acc[0][j];
  __syncthreads();
  if (warp != 0)
    return;
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    float v = 0.f;
#pragma unroll
    for (int w = 0; w < 8; ++w)
      v += red[w][lane][j];
    // Accumulator j: weight row n0 + g (+ 8 from j = 2), row 2 t4 (+ 1).
    const int n = n0 + g + (j >> 1) * 8, r = 2 * t4 + (j & 1);
    if (n >= N || r >= rows)
      continue;
    if (gridDim.y > 1) {
      part[(i64(blockIdx.y) * rows + r) * N + n] = v;
      continue;
    }
    if (b)
      v += bf16Float(b[n]);
    if (res)
      v += res[i64(r) * N + n];
    y[i64(r) * N + n] = v;
  }
}

/// Which 64-row tile of which expert block `tile` of an expert-grouped
/// tensor-core GEMM serves. The rows are grouped by expert (counts[e] each,
/// in expert order) and each expert's rows cut into 64-row tiles, numbered
/// expert by expert; the counts stay on the GPU (no host round trip, so the
/// step can be a CUDA graph), so the grid is an upper bound (rows / 64 + E
/// tiles) and blocks past the last tile exit. The first warp finds the tile:
/// lane l sums the tiles of experts [l P, (l + 1) P), P = ceil(E / 32), a
/// warp scan finds the lane holding `tile`, which walks its experts. Writes
/// {expert (-1: none), first row, rows} to info.
template <int E>
__device__ void expertTile(const i64 *counts, i64 tile, i64 *info) {
  constexpr int P = (E + 31) / 32;
  int lane = threadIdx.x;
  if (lane >= 32)
    return;
  i64 c[P], tiles = 0, rows = 0;
#pragma unroll
  for (int j = 0; j < P; ++j) {
    int e = lane * P + j;
    c[j] = e < E ? counts[e] : 0;
    tiles += (c[j] + DSV3_MMA_BM - 1) / DSV3_MMA_BM;
    rows += c[j];
  }
  i64 tEnd = tiles, rEnd = rows;
  for (int off = 1; off < 32; off <<= 1) {
    i64 t = __shfl_up_sync(0xffffffffu, tEnd, off), r = __shfl_up_sync(0xffffffffu, rEnd, off);
    if (lane >= off) {
      tEnd += t;
      rEnd += r;
    }
  }
  i64 total = __shfl_sync(0xffffffffu, tEnd, 31);
  if (lane == 0 && tile >= total)
    info[0] = -1;
  i64 t0 = tEnd - tiles, r0 = rEnd - rows;
  if (tile < t0 || tile >= tEnd)
    return;
#pragma unroll
  for (int j = 0; j < P; ++j) {
    i64 nt = (c[j] + DSV3_MMA_BM - 1) / DSV3_MMA_BM;
    if (tile < t0 + nt) {
      i64 first = (tile - t0) * DSV3_MMA_BM;
      info[0] = lane * P + j;
      info[1] = r0 + first;
      info[2] = c[j] - first < DSV3_MMA_BM ? c[j] - first : DSV3_MMA_BM;
      return;
    }
    t0 += nt;
    r0 += c[j];
  }
}

/// The expert GEMMs on tensor cores (many rows per expert: prefill): one
/// launch for all experts, a block per (64 columns, 64-row tile of one
/// expert), the mainloop of linear_mma over that expert's weights; Gated:
/// the gate/up pair with SwiGLU in the epilogue. grid (ceil(N / 64),
/// ceil(R / 64) + E), 128 threads; y[r] for the routed rows r (grouped by
/// expert, as expert_gmm).
template <int N, int KD, int E, int Gated>
__global__ void expert_gmm_mma(const float *rows, const unsigned short *W,
                               const unsigned short *Wu, const i64 *counts, float *y) {
  __shared__ i64 info[3];
  expertTile<E>(counts, blockIdx.y, info);
  __syncthreads();
  if (info[0] < 0)
    return;
  i64 first = info[1], n = info[2];
  const unsigned short *w = W + info[0] * i64(N) * KD;
  const unsigned short *wu = Gated ? Wu + info[0] * i64(N) * KD : nullptr;
  float acc[2][4][4] = {}, accU[2][4][4] = {};
  mmaMainloop<N, KD, Gated>(rows + first * KD, KD, w, wu, n, 0, acc, accU, 0, KD);
  mmaEpilogue<N>(n, 0, [&](int mt, int nt, int e, i64 r, int c) {
    float v = acc[mt][nt][e];
    if (Gated) {
      float u = accU[mt][nt][e];
      v = v / (1.f + expf(-v)) * u;
    }
    y[(first + r) * N + c] = v;
  });
}

template <int Unused>
__global__ void invert_slots(const i64 *slots, i64 *inverse, i64 R) {
  i64 r = i64(blockIdx.x) * blockDim.x + threadIdx.x;
  if (r < R)
    inverse[slots[r]] = r;
}

/// y[t] = sum_k w[t, k] out[row of slot t*K + k], one block per token.
template <int H, int K>
__global__ void moe_combine(const float *out, const i64 *inverse,
                            const float *weights, float *y, i64 n) {
  i64 t = blockIdx.x;
  if (t >= n)
    return;
  for (int j = threadIdx.x; j < H; j += blockDim.x) {
    float acc = 0.f;
    for (int k = 0; k < K; ++k)
      acc += weights[t * K + k] * out[inverse[t * K + k] * H + j];
    y[t * H + j] = acc;
  }
}

/// MTP input (SEMANTICS.md 7): cat = [rms(emb[i + depth]; enorm),
/// rms(h[i]; hnorm)], one block per output row.
template <int H, typename WT>
__global__ void mtp_concat(const float *h, i64 hRows, const float *emb, i64 T,
                           const WT *enorm, const WT *hnorm, float *cat,
                           i64 B, i64 rows, i64 depth, float eps) {
  i64 id = blockIdx.x;
  if (id >= B * rows)
    return;
  i64 b = id / rows, i = id % rows;
  const float *e = emb + (b * T + i + depth) * H, *x = h + (b * hRows + i) * H;
  float se = 0.f, sx = 0.f;
  for (int j = threadIdx.x; j < H; j += blockDim.x) {
    se += e[j] * e[j];
    sx += x[j] * x[j];
  }
  se = blockSum(se);
  sx = blockSum(sx);
  float ie = rsqrtf(se / H + eps), ix = rsqrtf(sx / H + eps);
  for (int j = threadIdx.x; j < H; j += blockDim.x) {
    cat[id * 2 * H + j] = wload(enorm, j) * (e[j] * ie);
    cat[id * 2 * H + H + j] = wload(hnorm, j) * (x[j] * ix);
  }
}

/// Per row of logits [B, Rw, V]: logsumexp - logit[target] into ce[row]
/// and 1/0 into valid[row] (targets beyond the sequence or ignored). Rows
/// r0.. of them (the fused loss's chunk, lm_head_cross_entropy): logits
/// holds those rows only, ce and valid are every row's.
template <int V>
__global__ void cross_entropy_rows(const float *logits, const i64 *labels,
                                   float *ce, float *valid, i64 B, i64 Rw, i64 T,
                                   i64 shift, i64 ignore, i64 r0) {
  i64 row = r0 + blockIdx.x;
  if (row >= B * Rw)
    return;
  i64 b = row / Rw, i = row % Rw;
  i64 target = i + shift < T ? labels[b * T + i + shift] : ignore;
  if (target == ignore || target < 0 || target >= V) {
    if (threadIdx.x == 0) {
      ce[row] = 0.f;
      valid[row] = 0.f;
    }
    return;
  }
  const float *l = logits + i64(blockIdx.x) * V;
  float mx, sum;
  blockMaxSumExp(l, V, mx, sum);
  if (threadIdx.x == 0) {
    ce[row] = mx + logf(sum) - l[target];
    valid[row] = 1.f;
  }
}

/// out[0] = scale * sum(x) / sum(count): one block, deterministic.
template <int Unused>
__global__ void sum_scaled(const float *x, const float *count, float *out, i64 n,
                           float scale) {
  float s = 0.f, c = 0.f;
  for (i64 i = threadIdx.x; i < n; i += blockDim.x) {
    s += x[i];
    c += count[i];
  }
  s = blockSum(s);
  c = blockSum(c);
  if (threadIdx.x == 0)
    out[0] = c > 0.f ? scale * s / c : 0.f;
}

/// Random weights made on the GPU (dsv3-run --random-weights: benchmarks at
/// full widths without writing a checkpoint): out[i] = mean + stddev * z_i,
/// z_i normal(0, 1) by Box-Muller from a counter-based hash of (seed, i), so
/// the values depend on the seed and the index only, not on the launch.
__device__ __forceinline__ unsigned long long mix64(unsigned long long x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}
__device__ __forceinline__ void storeWeight(float *p, float v) { *p = v; }
__device__ __forceinline__ void storeWeight(unsigned short *p, float v) { *p = bf16Bits(v); }
template <typename W>
__global__ void fill_normal(W *out, i64 n, unsigned long long seed, float mean, float stddev) {
  for (i64 i = i64(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += i64(gridDim.x) * blockDim.x) {
    unsigned long long h = mix64(seed ^ mix64((unsigned long long)i));
    float u1 = float((h >> 40) + 1) * (1.0f / 16777217.0f); // (0, 1]
    float u2 = float((h >> 16) & 0xffffffull) * (1.0f / 16777216.0f);
    float z = sqrtf(-2.0f * logf(u1)) * cospif(2.0f * u2);
    storeWeight(out + i, stddev == 0.0f ? mean : mean + stddev * z);
  }
}

//===----------------------------------------------------------------------===//
// FP8 (dsv3c --quantize fp8, SEMANTICS.md 9): e4m3 weights with fp32 block
// scales; activations quantized per token per 128 channels; each 128-wide
// K block's e4m3 dot product scaled by s_a * s_w and summed in fp32.
// Runtime extents (one instance each, `<0>`).
//===----------------------------------------------------------------------===//

/// e4m3fn code -> float (no NaN codes are produced by the quantizers).
__device__ __forceinline__ float e4m3ToFloat(unsigned b) {
  unsigned e = (b >> 3) & 15u, m = b & 7u;
  float v = e ? __uint_as_float(((e + 120u) << 23) | (m << 20)) : float(m) * 0.001953125f;
  return (b & 0x80u) ? -v : v;
}
/// Four e4m3 codes (a little-endian word) -> floats: the sm_89+
/// conversion to f16 pairs (exact: every e4m3 value is an f16), else bits.
__device__ __forceinline__ void e4m3x4ToFloat(unsigned w, float *out) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 890
  unsigned short wl = (unsigned short)(w & 0xffffu), wh = (unsigned short)(w >> 16);
  unsigned lo, hi;
  asm("cvt.rn.f16x2.e4m3x2 %0, %1;" : "=r"(lo) : "h"(wl));
  asm("cvt.rn.f16x2.e4m3x2 %0, %1;" : "=r"(hi) : "h"(wh));
  asm("{.reg .f16 a, b;\n mov.b32 {a, b}, %2;\n cvt.f32.f16 %0, a;\n cvt.f32.f16 %1, b;}"
      : "=f"(out[0]), "=f"(out[1]) : "r"(lo));
  asm("{.reg .f16 a, b;\n mov.b32 {a, b}, %2;\n cvt.f32.f16 %0, a;\n cvt.f32.f16 %1, b;}"
      : "=f"(out[2]), "=f"(out[3]) : "r"(hi));
#else
#pragma unroll
  for (int i = 0; i < 4; ++i)
    out[i] = e4m3ToFloat((w >> (8 * i)) & 0xffu);
#endif
}
/// float -> e4m3fn code, nearest, ties to even, saturating at +-448: the
/// host's bit arithmetic (runtime/DType.cpp), so both round alike.
__device__ __forceinline__ unsigned floatToE4m3(float f) {
  unsigned bits = __float_as_uint(f), sign = (bits >> 24) & 0x80u;
  float a = fabsf(f);
  if (!(a < 448.0f))
    return sign | 0x7eu;
  if (a < 0.015625f)
    return sign | unsigned(rintf(a * 512.0f));
  unsigned ab = bits & 0x7fffffffu;
  int e = int(ab >> 23) - 127;
  unsigned man = ab & 0x7fffffu, keep = man >> 20, rest = man & 0xfffffu;
  if (rest > 0x80000u || (rest == 0x80000u && (keep & 1u)))
    ++keep;
  if (keep == 8u) {
    keep = 0;
    ++e;
  }
  unsigned code = (unsigned(e + 7) << 3) | keep;
  return sign | (code < 126u ? code : 126u);
}

/// Dynamic activation quantization: a warp per (row, 128-channel block):
/// s = max(amax, 1e-4) / 448, xq = e4m3(x / s). x [rows, K] (row stride
/// ldx), xq [rows, K] codes, sa [rows, ceil(K / 128)].
/// One 1x128 block of a row quantized by a warp (lane l: channels 4l ..
/// 4l + 3 of the block, `valid` of them present): its scale and codes, and
/// where xd is set the quantized values themselves (e4m3 x s_a).
/// quantizeBlock128 on values a lane already holds (v[i] = channel 4 lane +
/// i of the block, 0 where not `valid`).
__device__ __forceinline__ void quantizeValues128(const float (&v)[4], int valid,
                                                  unsigned char *xq, float *scale, float *xd) {
  const int lane = threadIdx.x & 31, k0 = lane * 4;
  float amax = 0.f;
#pragma unroll
  for (int i = 0; i < 4; ++i)
    amax = fmaxf(amax, fabsf(v[i]));
  amax = fmaxf(warpMax(amax), 1e-4f);
  float s = amax / 448.0f;
#pragma unroll
  for (int i = 0; i < 4; ++i)
    if (k0 + i < valid) {
      unsigned q = floatToE4m3(v[i] / s);
      if (xq)
        xq[k0 + i] = (unsigned char)q;
      if (xd) // the quantized value itself (e4m3 x s_a), for fp8_gemm_rows
        xd[k0 + i] = e4m3ToFloat(q) * s;
    }
  if (lane == 0 && scale)
    *scale = s;
}
__device__ __forceinline__ void quantizeBlock128(const float *x, int valid, unsigned char *xq,
                                                 float *scale, float *xd) {
  const int k0 = (threadIdx.x & 31) * 4;
  float v[4];
#pragma unroll
  for (int i = 0; i < 4; ++i)
    v[i] = k0 + i < valid ? x[k0 + i] : 0.f;
  quantizeValues128(v, valid, xq, scale, xd);
}
template <int Unused>
__global__ void fp8_quantize(const float *x, i64 ldx, unsigned char *xq, float *sa,
                             float *xd, i64 rows, int K) {
  int blocksPerRow = (K + 127) / 128;
  i64 item = i64(blockIdx.x) * (blockDim.x >> 5) + (threadIdx.x >> 5);
  if (item >= rows * blocksPerRow)
    return;
  i64 r = item / blocksPerRow;
  int kb = int(item % blocksPerRow), k0 = kb * 128;
  quantizeBlock128(x + r * ldx + k0, min(128, K - k0), xq ? xq + r * K + k0 : nullptr,
                   sa ? sa + r * blocksPerRow + kb : nullptr, xd ? xd + r * K + k0 : nullptr);
}
/// rms_norm storing its rows in the form their only reader's GEMM makes of
/// them first, so the normed floats are never written and read back:
/// Form 1 bf16 (to_bf16's rounding; y [rows, N] halves, N even), Form 2
/// e4m3 codes y [rows, N] with their 1x128 scales sa [rows, ceil(N / 128)]
/// (fp8_quantize's values). The row's sum of squares is rms_norm's with
/// 256 threads, term for term, and each value is its `w * (x * inv)`: the
/// same bits as rms_norm followed by to_bf16 or fp8_quantize. N at run
/// time (its loops are rms_norm's, so the same order). A block a row, 256
/// threads.
template <int Form, typename WT>
__global__ void __launch_bounds__(256)
    rms_norm_stored(const float *x, const WT *w, void *y, float *sa, i64 rows, float eps,
                    i64 ldx, int N) {
  static_assert(Form == 1 || Form == 2, "rms_norm_stored: Form 1 (bf16) or 2 (e4m3)");
  const i64 r = blockIdx.x;
  if (r >= rows)
    return;
  const float *xr = x + r * ldx;
  const float inv = rmsInverse(xr, N, eps);
  if constexpr (Form == 1) {
    unsigned *yr = reinterpret_cast<unsigned *>(static_cast<unsigned short *>(y) + r * N);
    for (int j = 2 * threadIdx.x; j < N; j += 2 * blockDim.x)
      yr[j / 2] = packBf16x2(wload(w, j) * (xr[j] * inv), wload(w, j + 1) * (xr[j + 1] * inv));
  } else {
    const int nb = (N + 127) / 128, k0 = (threadIdx.x & 31) * 4;
    unsigned char *yr = static_cast<unsigned char *>(y) + r * N;
    for (int kb = threadIdx.x >> 5; kb < nb; kb += blockDim.x >> 5) {
      const int c0 = kb * 128, valid = min(128, N - c0);
      float v[4];
#pragma unroll
      for (int i = 0; i < 4; ++i)
        v[i] = k0 + i < valid ? wload(w, c0 + k0 + i) * (xr[c0 + k0 + i] * inv) : 0.f;
      quantizeValues128(v, valid, yr + c0, sa + r * nb + kb, nullptr);
    }
  }
}
/// An FP8 GEMM's activation scales [rows, nb] (fp8_quantize's layout, and
/// every producer's that stores e4m3 rows) as cuBLASLt's 1 x 128 block
/// scaling reads them: [nb, rows], the rows contiguous (runtime
/// cublasLtFp8Gemm). Small (rows x K / 128 floats): one element a thread,
/// the stores coalesced.
template <int Unused>
__global__ void fp8_scales_outer_major(const float *sa, float *saT, i64 rows, int nb) {
  const i64 i = i64(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= rows * nb)
    return;
  const i64 kb = i / rows, r = i % rows;
  saT[i] = sa[r * nb + kb];
}
/// dispatch_gather storing each row as fp8_quantize does (e4m3 codes xq
/// [R, H], scales sa [R, ceil(H / 128)]), where the rows' only reader is
/// an FP8 grouped GEMM on tensor cores: the row's scales depend on the row
/// alone, so this is bitwise the quantization of the gathered fp32 rows,
/// without writing and re-reading them. A warp per 128-channel block.
template <int H>
__global__ void dispatch_gather_e4m3(const float *x, const i64 *slots, unsigned char *xq,
                                     float *sa, i64 R, i64 K) {
  constexpr int NB = (H + 127) / 128;
  i64 r = blockIdx.x;
  if (r >= R)
    return;
  const float *src = x + (slots[r] / K) * H;
  for (int kb = threadIdx.x >> 5; kb < NB; kb += blockDim.x >> 5)
    quantizeBlock128(src + kb * 128, min(128, H - kb * 128), xq + r * H + kb * 128,
                     sa + r * NB + kb, nullptr);
}

/// The routed rows' e4m3 codes and 1x128 scales copied from their tokens'
/// (fp8_quantize once a token, where dispatch_gather_e4m3 quantizes each
/// of a token's K copies): the same bytes, an eighth of the quantization
/// at top-8. A block a row, 16 bytes a thread a step (H a multiple of 16;
/// tq, xq 16-byte aligned).
template <int Unused>
__global__ void dispatch_gather_codes(const unsigned char *tq, const float *ts, const i64 *slots,
                                      unsigned char *xq, float *sa, i64 R, i64 K, int H) {
  const i64 r = blockIdx.x;
  if (r >= R)
    return;
  const int nb = (H + 127) / 128;
  const i64 token = slots[r] / K;
  const uint4 *src = reinterpret_cast<const uint4 *>(tq + token * H);
  uint4 *dst = reinterpret_cast<uint4 *>(xq + r * H);
  for (int i = threadIdx.x; i < H / 16; i += blockDim.x)
    dst[i] = src[i];
  for (int i = threadIdx.x; i < nb; i += blockDim.x)
    sa[r * nb + i] = ts[token * nb + i];
}

/// The expert owning routed row `row` (rows grouped by expert, counts[e]
/// each), found by the whole warp (call it converged): lane l sums the
/// counts of experts [l P, (l + 1) P), P = ceil(E / 32), a warp scan finds
/// the lane whose range holds the row, which walks its experts (it was one
/// lane walking up to all E counts serially, in every warp of the grouped
/// few-row GEMM: to be timed at FP8 decode b1).
__device__ __forceinline__ int expertOfRow(const i64 *counts, int E, i64 row) {
  const int lane = threadIdx.x & 31, P = (E + 31) / 32;
  i64 sum = 0;
  for (int j = 0; j < P; ++j) {
    int e = lane * P + j;
    if (e < E)
      sum += counts[e];
  }
  i64 last = sum;
  for (int off = 1; off < 32; off <<= 1) {
    i64 t = __shfl_up_sync(0xffffffffu, last, off);
    if (lane >= off)
      last += t;
  }
  i64 first = last - sum;
  bool mine = row >= first && row < last;
  unsigned owner = __ballot_sync(0xffffffffu, mine);
  int e = E - 1;
  if (mine)
    for (int j = 0; j < P; ++j) {
      int ex = lane * P + j;
      if (ex >= E)
        break;
      first += counts[ex];
      if (row < first) {
        e = ex;
        break;
      }
    }
  return owner ? __shfl_sync(0xffffffffu, e, __ffs(owner) - 1) : E - 1;
}

/// The FP8 GEMMs' epilogue: y[r, n] = v (+ b[n]) (+ res[r, n]).
__device__ __forceinline__ void fp8Store(float *y, const float *b, const float *res, i64 r,
                                         int n, int N, float v) {
  if (b)
    v += b[n];
  if (res)
    v += res[r * N + n];
  y[r * N + n] = v;
}

/// y[r, n] = sum_k xd[r, k] W[n, k] s_w[n / br, k / 128] (+ b[n]) (+ res[r, n])
/// for a few rows, xd the quantized activations (e4m3 x s_a, from
/// fp8_quantize): a warp per output column, each lane 16 weight bytes a load
/// (one 128-wide scale block), so the weights are read once for all rows.
/// Grouped (counts != null): one row per blockIdx.y, its expert's weights
/// ([E, N, K], scales [E, ceil(N / br), K / 128]).
template <int Unused>
__global__ void fp8_gemm_rows(const float *xd, const unsigned char *W, const float *sw,
                              const float *b, const float *res, float *y, i64 rows, int N,
                              int K, int br, const i64 *counts, int E) {
  int lane = threadIdx.x & 31;
  int n = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
  if (n >= N)
    return;
  int nb = (K + 127) / 128;
  i64 r0 = 0, r1 = rows < 8 ? rows : 8;
  if (counts) {
    r0 = blockIdx.y;
    r1 = r0 + 1;
    if (r0 >= rows)
      return;
    int e = expertOfRow(counts, E, r0);
    W += i64(e) * N * K;
    sw += i64(e) * ((N + br - 1) / br) * nb;
  }
  const unsigned char *w = W + i64(n) * K;
  const float *swn = sw + i64(n / br) * nb;
  float acc[8] = {};
  if (K % 16 == 0) {
#pragma unroll 2
    for (int k = lane * 16; k < K; k += 512) {
      uint4 wv = *reinterpret_cast<const uint4 *>(w + k);
      float wf[16];
      e4m3x4ToFloat(wv.x, wf);
      e4m3x4ToFloat(wv.y, wf + 4);
      e4m3x4ToFloat(wv.z, wf + 8);
      e4m3x4ToFloat(wv.w, wf + 12);
      float s = swn[k >> 7];
#pragma unroll
      for (int j = 0; j < 8; ++j) {
        i64 r = r0 + j;
        if (r >= r1)
          break;
        const float4 *xr = reinterpret_cast<const float4 *>(xd + r * K + k);
        float dot = 0.f;
#pragma unroll
        for (int q = 0; q < 4; ++q) {
          float4 xv = xr[q];
          dot += xv.x * wf[4 * q] + xv.y * wf[4 * q + 1] + xv.z * wf[4 * q + 2] +
                 xv.w * wf[4 * q + 3];
        }
        acc[j] += dot * s;
      }
    }
  } else {
    for (int k = lane; k < K; k += 32) {
      float wk = e4m3ToFloat(w[k]) * swn[k >> 7];
#pragma unroll
      for (int j = 0; j < 8; ++j) {
        i64 r = r0 + j;
        if (r >= r1)
          break;
        acc[j] += xd[r * K + k] * wk;
      }
    }
  }
#pragma unroll
  for (int j = 0; j < 8; ++j) {
    i64 r = r0 + j;
    if (r >= r1) // uniform across the warp
      break;
    float v = warpSum(acc[j]);
    if (lane == 0)
      fp8Store(y, b, res, r, n, N, v);
  }
}

/// One e4m3 tensor-core MMA: D(16x8 f32) += A(16x32) B(32x8), sm_89+.
__device__ __forceinline__ void mmaE4m3(float *d, const unsigned *a, const unsigned *bw) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 890
  asm volatile("mma.sync.aligned.m16n8k32.row.col.f32.e4m3.e4m3.f32 "
               "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
               : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(bw[0]), "r"(bw[1]));
#endif
}

/// The routed experts' FP8 GEMMs at a few rows an expert (decode batches)
/// on e4m3 tensor cores, the weights as the MMA's M operand (as
/// expert_rows_mma for bf16): mma.sync m16n8k32 computes 16 weight rows x 8
/// routed rows, a warp owns 16 weight rows of one expert, 8 warps a block,
/// grid (ceil(N / 128), E). Lane (g, t4) loads 16 consecutive codes at
/// 16 t4 of each 64-wide chunk of weight rows g, g + 8 and of routed row g;
/// they serve as the lane's K positions {4t4..4t4+3, 16+4t4..16+4t4+3} of
/// two k32 steps (a permutation within the chunk, the same for both
/// operands). Each 128-wide K block's four MMAs start from zero and are
/// added in fp32 scaled by s_a * s_w (DeepSeek-V3 3.3.2, as the host).
/// xq, sa from fp8_quantize; K % 64 == 0; up to DSV3_ROWS_MMA_TILES x 8
/// rows an expert a pass over its weights.
template <int Unused>
__global__ void __launch_bounds__(256)
    fp8_gemm_rows_mma(const unsigned char *xq, const float *sa, const unsigned char *W,
                      const float *sw, const float *b, const float *res, float *y, int N,
                      int K, int br, const i64 *counts) {
  constexpr int TILES = DSV3_ROWS_MMA_TILES;
  const int lane = threadIdx.x & 31, g = lane >> 2, t4 = lane & 3, e = blockIdx.y;
  const i64 cnt = counts[e];
  const int n0 = (blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32) * 16;
  if (cnt == 0 || n0 >= N)
    return;
  const i64 first = expertFirstRow(counts, e);
  const int nb = (K + 127) / 128;
  W += i64(e) * N * K;
  sw += i64(e) * ((N + br - 1) / br) * nb;
  const bool v0 = n0 + g < N, v1 = n0 + g + 8 < N;
  const int na = v0 ? n0 + g : 0, nc = v1 ? n0 + g + 8 : 0;
  const unsigned char *w0 = W + i64(na) * K + 16 * t4, *w1 = W + i64(nc) * K + 16 * t4;
  const float *sw0 = sw + i64(na / br) * nb, *sw1 = sw + i64(nc / br) * nb;
  const uint4 zero = make_uint4(0u, 0u, 0u, 0u);
  for (i64 t0 = first; t0 < first + cnt; t0 += 8 * TILES) {
    const int left = first + cnt - t0 < 8 * TILES ? int(first + cnt - t0) : 8 * TILES;
    const int tiles = (left + 7) / 8;
    float acc[TILES][4];
#pragma unroll
    for (int i = 0; i < TILES; ++i)
      acc[i][0] = acc[i][1] = acc[i][2] = acc[i][3] = 0.f;
#pragma unroll 2
    for (int kb = 0; kb < nb; ++kb) {
      const int k = kb * 128;
      const bool second = k + 64 < K; // the block's second 64-wide chunk
      uint4 a0[2], a1[2];
      a0[0] = v0 ? ldStream16(w0 + k) : zero;
      a1[0] = v1 ? ldStream16(w1 + k) : zero;
      a0[1] = v0 && second ? ldStream16(w0 + k + 64) : zero;
      a1[1] = v1 && second ? ldStream16(w1 + k + 64) : zero;
      const float s0 = v0 ? sw0[kb] : 0.f, s1 = v1 ? sw1[kb] : 0.f;
#pragma unroll
      for (int i = 0; i < TILES; ++i) {
        if (i >= tiles)
          break;
        const bool rin = i * 8 + g < left;
        const unsigned char *xr = xq + (t0 + i * 8 + (rin ? g : 0)) * K + k + 16 * t4;
        uint4 bx[2];
        bx[0] = rin ? *reinterpret_cast<const uint4 *>(xr) : zero;
        bx[1] = rin && second ? *reinterpret_cast<const uint4 *>(xr + 64) : zero;
        float p[4] = {0.f, 0.f, 0.f, 0.f};
#pragma unroll
        for (int c = 0; c < 2; ++c) {
          const unsigned A0[4] = {a0[c].x, a1[c].x, a0[c].y, a1[c].y};
          const unsigned A1[4] = {a0[c].z, a1[c].z, a0[c].w, a1[c].w};
          const unsigned B0[2] = {bx[c].x, bx[c].y}, B1[2] = {bx[c].z, bx[c].w};
          mmaE4m3(p, A0, B0);
          mmaE4m3(p, A1, B1);
        }
        // p[j]: weight row n0 + g (+ 8 from j = 2), routed row 8 i + 2 t4
        // (+ 1 for odd j).
        const int r0 = i * 8 + 2 * t4, r1 = r0 + 1;
        const float sa0 = r0 < left ? sa[(t0 + r0) * nb + kb] : 0.f;
        const float sa1 = r1 < left ? sa[(t0 + r1) * nb + kb] : 0.f;
        acc[i][0] += p[0] * (sa0 * s0);
        acc[i][1] += p[1] * (sa1 * s0);
        acc[i][2] += p[2] * (sa0 * s1);
        acc[i][3] += p[3] * (sa1 * s1);
      }
    }
    rowsMmaOutputs<TILES>(tiles, n0, N, left, [&](int i, int j, int n, int r) {
      fp8Store(y, b, res, t0 + r, n, N, acc[i][j]);
    });
  }
}

/// The (column tile, row tile) a block of a 2-D GEMM grid computes, in
/// groups of `group` row tiles: the blocks resident at once (numbered x
/// first) then cover a few row tiles and many column tiles, so a weight
/// tile is read from HBM once per group rather than once per row tile
/// (group 1: row tile blockIdx.y, column tile blockIdx.x).
/// gemmTile's order for tile `pid` of an nx x ny tile grid (persistent
/// blocks walk the tiles in this order).
__device__ __forceinline__ void gemmTileOf(unsigned pid, unsigned nx, unsigned ny, int group,
                                           unsigned &tn, unsigned &tm) {
  const unsigned gs = unsigned(group), first = pid / (gs * nx) * gs;
  unsigned rowsInGroup = ny - first < gs ? ny - first : gs;
  tm = first + (pid % (gs * nx)) % rowsInGroup;
  tn = (pid % (gs * nx)) / rowsInGroup;
}
__device__ __forceinline__ void gemmTile(int group, unsigned &tn, unsigned &tm) {
  gemmTileOf(blockIdx.y * gridDim.x + blockIdx.x, gridDim.x, gridDim.y, group, tn, tm);
}

/// Tile `t` of `tileRows`-row tiles over rows grouped by expert (counts[E]):
/// its rows [begin, end) and expert; false past the last tile (blocks of a
/// grid sized rows / tileRows + E, an upper bound, return).
/// Warp-cooperative (every lane of the calling warp takes part; `t` the
/// same on all of them): lane l sums the tiles and rows of experts
/// [l * per, (l + 1) * per) (per = ceil(E / 32); independent loads, issued
/// together), one shuffle scan over the 32 lanes places `t` in a lane by a
/// ballot, and that lane walks its own experts again (L1 hits). One L2
/// round trip and one scan, where a scan a 32 experts (8 dependent rounds
/// at E = 256, each a load and 64-bit shuffles) cost ~2 us by estimate in
/// every block of a grouped GEMM before its first copy, where a 128 x 256 x
/// 2048 tile computes in ~18 us at peak. Counts are below 2^31 (a call's
/// rows).
__device__ __forceinline__ bool expertTileAt(const i64 *counts, int E, int tileRows, i64 t,
                                             i64 &begin, i64 &end, int &expert, i64 &firstTile,
                                             i64 &firstRow) {
  const int lane = threadIdx.x & 31, per = (E + 31) / 32;
  const int e0 = lane * per < E ? lane * per : E, e1 = e0 + per < E ? e0 + per : E;
  int tiles = 0, rows = 0;
#pragma unroll 8
  for (int e = e0; e < e1; ++e) {
    const int c = int(counts[e]);
    tiles += (c + tileRows - 1) / tileRows;
    rows += c;
  }
  int tIncl = tiles, rIncl = rows;
#pragma unroll
  for (int off = 1; off < 32; off <<= 1) {
    const int a = __shfl_up_sync(0xffffffffu, tIncl, off), b = __shfl_up_sync(0xffffffffu, rIncl, off);
    if (lane >= off) {
      tIncl += a;
      rIncl += b;
    }
  }
  i64 tStart = tIncl - tiles, rStart = rIncl - rows;
  const unsigned hit = __ballot_sync(0xffffffffu, t >= tStart && t < i64(tIncl));
  if (!hit)
    return false;
  const int src = __ffs(hit) - 1;
  i64 b = 0, en = 0, ft = 0, fr = 0;
  int ex = 0;
  if (lane == src) {
    for (int e = e0; e < e1; ++e) {
      const i64 c = counts[e], tl = (c + tileRows - 1) / tileRows;
      if (t < tStart + tl) {
        b = rStart + (t - tStart) * tileRows;
        en = rStart + c;
        ex = e;
        ft = tStart;
        fr = rStart;
        break;
      }
      tStart += tl;
      rStart += c;
    }
  }
  begin = __shfl_sync(0xffffffffu, b, src);
  end = __shfl_sync(0xffffffffu, en, src);
  expert = __shfl_sync(0xffffffffu, ex, src);
  firstTile = __shfl_sync(0xffffffffu, ft, src);
  firstRow = __shfl_sync(0xffffffffu, fr, src);
  return true;
}
/// expertTile(t): tile t's rows [begin, end) and expert.
__device__ __forceinline__ bool expertTile(const i64 *counts, int E, int tileRows, i64 t,
                                           i64 &begin, i64 &end, int &expert) {
  i64 firstTile, firstRow;
  return expertTileAt(counts, E, tileRows, t, begin, end, expert, firstTile, firstRow);
}

/// Tile L of a 128-row GEMM grid of nx column tiles, its column tile tn and
/// rows [rowBegin, rowEnd) (grouped: `counts`, and the expert). A negative
/// tileGroup (grouped grids only) walks expert by expert: each expert's row tiles
/// times every column tile, the row tile fastest, so the 2-3 row tiles of
/// a prefill's expert read each of its weight tiles together (once from
/// HBM), where groups of tileGroup row tiles split an expert's row tiles
/// between groups run apart. Expert e's tiles are L in [nx P_e, nx (P_e +
/// c_e)), P_e its first row tile in expertTile's numbering and c_e its
/// row tiles: L / nx is one of them. Warp-cooperative when grouped. (Why
/// negative: kernels of artifacts compiled before this order, run by a
/// newer runtime, read it in gemmTileOf as one group of every row tile
/// (unsigned(-1) * nx wraps to 2^32 - nx): a valid order of the same
/// tiles, where 0 would divide by zero.)
__device__ __forceinline__ bool gemmGridTile(unsigned L, unsigned nx, unsigned ny, int tileGroup,
                                             const i64 *counts, int E, i64 rows, unsigned &tn,
                                             i64 &rowBegin, i64 &rowEnd, int &expert) {
  expert = 0;
  if (counts && tileGroup < 0) {
    i64 firstTile, firstRow;
    if (!expertTileAt(counts, E, 128, i64(L / nx), rowBegin, rowEnd, expert, firstTile,
                      firstRow))
      return false;
    const i64 c = (rowEnd - firstRow + 127) / 128, local = i64(L) - i64(nx) * firstTile;
    tn = unsigned(local / c);
    rowBegin = firstRow + (local % c) * 128;
    return rowBegin < rowEnd;
  }
  unsigned tm;
  gemmTileOf(L, nx, ny, tileGroup < 1 ? 1 : tileGroup, tn, tm);
  rowBegin = i64(tm) * 128;
  rowEnd = rows;
  if (counts && !expertTile(counts, E, 128, tm, rowBegin, rowEnd, expert))
    return false;
  return rowBegin < rowEnd;
}

/// Expert e's tiles [begin, end) among every expert's `tileRows`-row tiles
/// (counts[E]; each expert's tiles start at its first row, as expertTile
/// numbers them). Warp-cooperative: the lanes sum the tiles before e in
/// strides of 32, then a butterfly sum.
__device__ __forceinline__ void expertTileRange(const i64 *counts, int tileRows, int e,
                                                int &begin, int &end) {
  const int lane = threadIdx.x & 31;
  int before = 0;
  for (int j = lane; j < e; j += 32)
    before += int((counts[j] + tileRows - 1) / tileRows);
#pragma unroll
  for (int off = 16; off; off >>= 1)
    before += __shfl_xor_sync(0xffffffffu, before, off);
  begin = before;
  end = before + int((counts[e] + tileRows - 1) / tileRows);
}

/// The bf16 GEMM of many rows for bf16 models (prefill, large batches): the
/// activations rounded to bf16 once (to_bf16), then y = x W^T on mma.sync
/// m16n8k16 with fp32 accumulation: 128-row tiles, 8 warps of 64 x 32,
/// 32-wide K steps copied to shared memory by cp.async three stages ahead,
/// fragments by ldmatrix (rows padded to 40 bf16: conflict-free). Plain:
/// 128 output columns a block, y (+ b) (+ res). Gated: 64 columns a block,
/// the weight tile's rows interleaving 8 gate and 8 up rows, so one thread
/// holds gate and up of the same output: y = silu(x Wg^T) * (x Wu^T).
/// Grouped (counts != null): rows grouped by expert, blockIdx.y enumerates
/// every expert's 128-row tiles (gridDim.y >= rows / 128 + E), expert e's
/// weights at W + e N K. Needs K % 8 == 0 and 16-byte aligned operands
/// (the launcher checks). Against the split-bf16 kernels (linear_mma: the
/// activations as hi + lo, fp32 accuracy, twice the MMAs, no pipeline),
/// what bf16 inference computes; `dsv3-run bf16-check` bounds it against
/// float64 on the same bf16 operands.
/// y[r, c] = x[r, c] for c < cols, rows of x and y ldx and ldy apart (the
/// absorbed decode's rope query, copied beside the cuBLASLt products).
template <int Unused>
__global__ void copy_columns(const float *x, i64 ldx, float *y, i64 ldy, i64 rows, int cols) {
  i64 i = i64(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= rows * cols)
    return;
  i64 r = i / cols;
  int c = int(i % cols);
  y[r * ldy + c] = x[r * ldx + c];
}

/// y [rows, K] = x [rows, K] rounded to bf16 (x rows ldx apart, y's K):
/// Wide 0 a pair of elements a thread (K and ldx even, x 8-byte aligned);
/// Wide 1 eight (K % 8 == 0, ldx % 4 == 0, x 16-byte aligned): two 16-byte
/// loads and one 16-byte store a thread, which the conversions of bf16
/// compute (logits' gradients: 8.5 GB at train 4 x 4096) need to approach
/// HBM bandwidth.
template <int Wide>
__global__ void to_bf16(const float *x, i64 ldx, i64 rows, int K, unsigned short *y) {
  constexpr int Per = Wide ? 8 : 2;
  i64 i = (i64(blockIdx.x) * blockDim.x + threadIdx.x) * Per, n = rows * K;
  if (i >= n)
    return;
  i64 r = i / K;
  int c = int(i % K); // K % Per == 0: a thread's elements never straddle rows
  const float *src = x + r * ldx + c;
  if constexpr (Wide) {
    const float4 a = *reinterpret_cast<const float4 *>(src);
    const float4 b = *reinterpret_cast<const float4 *>(src + 4);
    *reinterpret_cast<uint4 *>(y + i) = make_uint4(packBf16x2(a.x, a.y), packBf16x2(a.z, a.w),
                                                   packBf16x2(b.x, b.y), packBf16x2(b.z, b.w));
  } else {
    float2 v = *reinterpret_cast<const float2 *>(src);
    *reinterpret_cast<unsigned *>(y + i) = packBf16x2(v.x, v.y);
  }
}
#define DSV3_TC_LD 40
#define DSV3_TC_STAGES 3
template <int Gated>
__global__ void __launch_bounds__(256)
gemm_bf16_tc(const unsigned short *xb, const unsigned short *W, const unsigned short *Wu,
             const float *b, const float *res, float *y, i64 rows, int N, int K,
             const i64 *counts, int E, int tileGroup) {
  constexpr int Ld = DSV3_TC_LD, Tile = 128 * Ld, BN = Gated ? 64 : 128;
  extern __shared__ __align__(16) float tcSmem[]; // float-typed as the others
  unsigned short *smem = reinterpret_cast<unsigned short *>(tcSmem);
  unsigned tn, tm;
  gemmTile(tileGroup, tn, tm);
  i64 rowBegin = i64(tm) * 128, rowEnd = rows;
  if (counts) {
    int e = 0;
    if (!expertTile(counts, E, 128, tm, rowBegin, rowEnd, e))
      return;
    W += i64(e) * N * K;
    if (Gated)
      Wu += i64(e) * N * K;
  }
  if (rowBegin >= rowEnd)
    return;
  const int n0 = int(tn) * BN, tid = threadIdx.x;
  const int warp = tid >> 5, lane = tid & 31, g = lane >> 2, t4 = lane & 3;
  const int wm = (warp >> 2) * 64, wn = (warp & 3) * 32;
  const int ksteps = (K + 31) / 32;
  // Weight row rr of the tile: plain, column n0 + rr; gated, 16-row groups
  // of 8 gate then 8 up rows for columns n0 + 8 (rr / 16) + 0..7.
  auto weightRow = [&](int rr, int &n) -> const unsigned short * {
    if (!Gated) {
      n = n0 + rr;
      return W;
    }
    n = n0 + (rr >> 4) * 8 + (rr & 7);
    return (rr & 8) ? Wu : W;
  };
  auto stage = [&](int ks, int st) {
    unsigned short *As = smem + st * 2 * Tile, *Bs = As + Tile;
    for (int i = tid; i < 128 * 4; i += 256) {
      int rr = i >> 2, c = (i & 3) * 8, k = ks * 32 + c;
      i64 row = rowBegin + rr;
      if (row < rowEnd && k < K)
        cpAsync16(As + rr * Ld + c, xb + row * K + k);
      else
        *reinterpret_cast<uint4 *>(As + rr * Ld + c) = make_uint4(0, 0, 0, 0);
      int n;
      const unsigned short *src = weightRow(rr, n);
      if (n < N && k < K)
        cpAsync16(Bs + rr * Ld + c, src + i64(n) * K + k);
      else
        *reinterpret_cast<uint4 *>(Bs + rr * Ld + c) = make_uint4(0, 0, 0, 0);
    }
  };
  float acc[4][4][4];
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int j = 0; j < 4; ++j)
#pragma unroll
      for (int q = 0; q < 4; ++q)
        acc[i][j][q] = 0.f;
  // Stages 0 .. STAGES-2 in flight before the loop; one commit group per
  // K step (empty past the end), so wait<STAGES-2> means step ks landed.
#pragma unroll
  for (int st = 0; st < DSV3_TC_STAGES - 1; ++st) {
    if (st < ksteps)
      stage(st, st);
    cpAsyncCommit();
  }
  // ldmatrix addresses: A x4 = rows wm + i*16 + (lane & 15), K + (lane >> 4)*8;
  // B x4 = rows wn + j*8 + (lane >> 4)*8 + (lane & 7), K + ((lane >> 3) & 1)*8.
  const int aRow = lane & 15, aCol = (lane >> 4) * 8;
  const int bRow = (lane >> 4) * 8 + (lane & 7), bCol = ((lane >> 3) & 1) * 8;
  for (int ks = 0; ks < ksteps; ++ks) {
    cpAsyncWait<DSV3_TC_STAGES - 2>();
    __syncthreads();
    // Refill the stage consumed last iteration (all warps are past it).
    if (ks + DSV3_TC_STAGES - 1 < ksteps)
      stage(ks + DSV3_TC_STAGES - 1, (ks + DSV3_TC_STAGES - 1) % DSV3_TC_STAGES);
    cpAsyncCommit();
    const unsigned short *As = smem + (ks % DSV3_TC_STAGES) * 2 * Tile, *Bs = As + Tile;
#pragma unroll
    for (int kk = 0; kk < 32; kk += 16) {
      unsigned a[4][4], bw[4][2];
#pragma unroll
      for (int i = 0; i < 4; ++i)
        ldmatrixX4(a[i], As + (wm + i * 16 + aRow) * Ld + kk + aCol);
#pragma unroll
      for (int j = 0; j < 4; j += 2) {
        unsigned r4[4];
        ldmatrixX4(r4, Bs + (wn + j * 8 + bRow) * Ld + kk + bCol);
        bw[j][0] = r4[0];
        bw[j][1] = r4[1];
        bw[j + 1][0] = r4[2];
        bw[j + 1][1] = r4[3];
      }
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j)
          mmaBf16(acc[i][j], a[i], bw[j]);
    }
  }
  cpAsyncWait<0>();
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int q = 0; q < 4; ++q) {
      i64 r = rowBegin + wm + i * 16 + g + (q >= 2 ? 8 : 0);
      if (r >= rowEnd)
        continue;
      if (Gated) {
        // Tiles j = 0, 2 are gate rows, j + 1 the up rows of the same columns.
#pragma unroll
        for (int j = 0; j < 4; j += 2) {
          int n = n0 + ((wn + j * 8) >> 4) * 8 + t4 * 2 + (q & 1);
          float gv = acc[i][j][q], uv = acc[i][j + 1][q];
          if (n < N)
            y[r * N + n] = gv / (1.f + expf(-gv)) * uv;
        }
      } else {
#pragma unroll
        for (int j = 0; j < 4; ++j) {
          int n = n0 + wn + j * 8 + t4 * 2 + (q & 1);
          if (n < N)
            fp8Store(y, b, res, r, n, N, acc[i][j][q]);
        }
      }
    }
}

/// The bf16 GEMMs on Hopper's warpgroup MMA (sm_90a; other targets trap:
/// the launcher takes them only on sm_90): gemm_bf16_tc's three forms
/// (plain with bias and residual, gated with the SwiGLU epilogue, grouped
/// over experts) with `wgmma.mma_async` m64n128k16, both operands read by
/// the tensor cores from shared memory through matrix descriptors.
/// Block tile 128 rows x 128 weight rows (Wide: 256; gated: half gate, then
/// the up rows of the same columns), two consumer warpgroups of 64 rows. K in 64-wide
/// steps (one 128-byte swizzle atom per row) copied by cp.async into the
/// 128B-swizzled K-major layout (16-byte chunk c of row r at
/// r * 128 + ((c ^ (r % 8)) * 16), tiles 1024-byte aligned), which the
/// descriptors name: start >> 4, stride between 8-row groups 1024 B,
/// swizzle mode 128B; each k16 step advances the start by 32 bytes.
/// Pipeline: DSV3_WG_STAGES stages, copies DSV3_WG_STAGES - 2 steps ahead,
/// and one step's MMAs left in flight (wait_group 1) while the next are
/// issued: the slot a copy overwrites was read by MMAs two steps back,
/// which both warpgroups have waited for before the step's barrier.
/// The warpgroup MMA's ordering points: registers written before
/// wgmmaFence are what the MMAs issued after it read; wgmmaCommit closes
/// the MMAs issued since the last one into a group; wgmmaWait<N> returns
/// once at most N groups are in flight (0: every result is in its
/// registers and every shared-memory operand read).
__device__ __forceinline__ void wgmmaFence() {
  asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
}
__device__ __forceinline__ void wgmmaCommit() {
  asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
}
template <int N> __device__ __forceinline__ void wgmmaWait() {
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
}
__device__ __forceinline__ unsigned long long wgmmaDesc(const void *smemTile) {
  unsigned a = (unsigned)__cvta_generic_to_shared(smemTile);
  unsigned long long d = 0;
  d |= (unsigned long long)((a & 0x3FFFF) >> 4);        // start address
  d |= (unsigned long long)1 << 16;                      // leading offset (unused: SW128 K-major)
  d |= (unsigned long long)(1024 >> 4) << 32;            // stride: 8 rows x 128 B
  d |= (unsigned long long)1 << 62;                      // 128B swizzle
  return d;
}
/// One m64nNk16 bf16 warpgroup MMA accumulating into d (N / 2 fp32 a
/// thread), A and B from shared memory through descriptors da, db.
__device__ __forceinline__ void wgmmaBf16N128(float (&d)[64], unsigned long long da,
                                                unsigned long long db) {
  asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, 1, 0;\n"
               "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 "
               "{%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31,%32,%33,%34,%35,%36,%37,%38,%39,%40,%41,%42,%43,%44,%45,%46,%47,%48,%49,%50,%51,%52,%53,%54,%55,%56,%57,%58,%59,%60,%61,%62,%63}, %64, %65, p, 1, 1, 0, 0;\n}\n"
               : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
               : "l"(da), "l"(db));
}
__device__ __forceinline__ void wgmmaBf16N256(float (&d)[128], unsigned long long da,
                                                unsigned long long db) {
  asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, 1, 0;\n"
               "wgmma.mma_async.sync.aligned.m64n256k16.f32.bf16.bf16 "
               "{%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31,%32,%33,%34,%35,%36,%37,%38,%39,%40,%41,%42,%43,%44,%45,%46,%47,%48,%49,%50,%51,%52,%53,%54,%55,%56,%57,%58,%59,%60,%61,%62,%63,%64,%65,%66,%67,%68,%69,%70,%71,%72,%73,%74,%75,%76,%77,%78,%79,%80,%81,%82,%83,%84,%85,%86,%87,%88,%89,%90,%91,%92,%93,%94,%95,%96,%97,%98,%99,%100,%101,%102,%103,%104,%105,%106,%107,%108,%109,%110,%111,%112,%113,%114,%115,%116,%117,%118,%119,%120,%121,%122,%123,%124,%125,%126,%127}, %128, %129, p, 1, 1, 0, 0;\n}\n"
               : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63]), "+f"(d[64]), "+f"(d[65]), "+f"(d[66]), "+f"(d[67]), "+f"(d[68]), "+f"(d[69]), "+f"(d[70]), "+f"(d[71]), "+f"(d[72]), "+f"(d[73]), "+f"(d[74]), "+f"(d[75]), "+f"(d[76]), "+f"(d[77]), "+f"(d[78]), "+f"(d[79]), "+f"(d[80]), "+f"(d[81]), "+f"(d[82]), "+f"(d[83]), "+f"(d[84]), "+f"(d[85]), "+f"(d[86]), "+f"(d[87]), "+f"(d[88]), "+f"(d[89]), "+f"(d[90]), "+f"(d[91]), "+f"(d[92]), "+f"(d[93]), "+f"(d[94]), "+f"(d[95]), "+f"(d[96]), "+f"(d[97]), "+f"(d[98]), "+f"(d[99]), "+f"(d[100]), "+f"(d[101]), "+f"(d[102]), "+f"(d[103]), "+f"(d[104]), "+f"(d[105]), "+f"(d[106]), "+f"(d[107]), "+f"(d[108]), "+f"(d[109]), "+f"(d[110]), "+f"(d[111]), "+f"(d[112]), "+f"(d[113]), "+f"(d[114]), "+f"(d[115]), "+f"(d[116]), "+f"(d[117]), "+f"(d[118]), "+f"(d[119]), "+f"(d[120]), "+f"(d[121]), "+f"(d[122]), "+f"(d[123]), "+f"(d[124]), "+f"(d[125]), "+f"(d[126]), "+f"(d[127])
               : "l"(da), "l"(db));
}
/// One m64n128k32 e4m3 warpgroup MMA (QGMMA) into d, or (accumulate 0)
/// starting d from zero.
__device__ __forceinline__ void wgmmaE4m3N128(float (&d)[64], unsigned long long da,
                                              unsigned long long db, int accumulate) {
  asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"
                   "wgmma.mma_async.sync.aligned.m64n128k32.f32.e4m3.e4m3 "
                   "{%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31,%32,%33,%34,%35,%36,%37,%38,%39,%40,%41,%42,%43,%44,%45,%46,%47,%48,%49,%50,%51,%52,%53,%54,%55,%56,%57,%58,%59,%60,%61,%62,%63}, %64, %65, p, 1, 1;\n}\n"
                   : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
                   : "l"(da), "l"(db), "r"(accumulate));
}
/// One 128-byte K slice of a stage's tiles (bf16: 64 wide, four k16 MMAs;
/// e4m3: 128 wide, four k32 MMAs) issued by the warpgroup, each step's
/// descriptors 32 bytes further along the swizzled rows; the e4m3 block
/// starts its sums from zero (promoted to fp32 by the caller).
template <int Wide>
__device__ __forceinline__ void wgmmaBf16Slice(float (&d)[Wide ? 128 : 64], const void *As,
                                               const void *Bs) {
#pragma unroll
  for (int kk = 0; kk < 4; ++kk) {
    unsigned long long da = wgmmaDesc(As) + (unsigned long long)((kk * 32) >> 4);
    unsigned long long db = wgmmaDesc(Bs) + (unsigned long long)((kk * 32) >> 4);
    if constexpr (Wide)
      wgmmaBf16N256(d, da, db);
    else
      wgmmaBf16N128(d, da, db);
  }
}
__device__ __forceinline__ void wgmmaE4m3Block(float (&part)[64], const void *As,
                                               const void *Bs) {
#pragma unroll
  for (int kk = 0; kk < 4; ++kk) {
    unsigned long long da = wgmmaDesc(As) + (unsigned long long)((kk * 32) >> 4);
    unsigned long long db = wgmmaDesc(Bs) + (unsigned long long)((kk * 32) >> 4);
    wgmmaE4m3N128(part, da, db, kk > 0);
  }
}
/// acc += part * s0 (rows g) / s1 (rows g + 8): a K block's promotion.
__device__ __forceinline__ void promoteBlock(float (&acc)[64], const float (&part)[64],
                                             float s0, float s1) {
#pragma unroll
  for (int j = 0; j < 16; ++j) {
    acc[4 * j] += part[4 * j] * s0;
    acc[4 * j + 1] += part[4 * j + 1] * s0;
    acc[4 * j + 2] += part[4 * j + 2] * s1;
    acc[4 * j + 3] += part[4 * j + 3] * s1;
  }
}
/// promoteBlock for a gated tile: columns 0..63 (registers 0..31) are
/// gates, scaled by s0 / s1, columns 64..127 ups, scaled by u0 / u1.
__device__ __forceinline__ void promoteBlockGated(float (&acc)[64], const float (&part)[64],
                                                  float s0, float s1, float u0, float u1) {
#pragma unroll
  for (int j = 0; j < 16; ++j) {
    const float r0 = j < 8 ? s0 : u0, r1 = j < 8 ? s1 : u1;
    acc[4 * j] += part[4 * j] * r0;
    acc[4 * j + 1] += part[4 * j + 1] * r0;
    acc[4 * j + 2] += part[4 * j + 2] * r1;
    acc[4 * j + 3] += part[4 * j + 3] * r1;
  }
}
/// Stores one consumer warpgroup's accumulators d: rows rowBase + 0..63
/// (warp w of the warpgroup holds rows 16 w + g and 16 w + g + 8), where
/// register 4 j + e is tile column 8 j + 2 t4 + (e & 1) of row g + 8 (e >> 1)
/// (the wgmma D fragment). Plain: columns n0 + 0..BN-1, plus bias and
/// residual; gated: tile columns BN.. are the ups of columns 0..BN-1,
/// y = silu(gate) * up.
/// Bf16Out: y holds bf16 (unsigned short) elements, each value rounded to
/// nearest even (what the GEMM reading them would round them to).
template <int Gated, int BN, int NR, bool Bf16Out = false>
__device__ __forceinline__ void wgmmaStore(const float (&d)[NR], i64 rowBase, i64 rowEnd,
                                           int n0, int N, const float *b, const float *res,
                                           float *y) {
  const int lane = threadIdx.x & 31, warpInWg = (threadIdx.x >> 5) & 3;
  const int g = lane >> 2, t4 = lane & 3;
  // A thread's two adjacent columns of a row (e = 2 h, 2 h + 1) as one
  // store (8 bytes, bf16: 4) where y is so aligned and N even (then r N +
  // n is even); the residual's two as one load where it is.
  const bool pairs =
      (N & 1) == 0 && (reinterpret_cast<unsigned long long>(y) & (Bf16Out ? 3 : 7)) == 0;
  const bool resPairs = (N & 1) == 0 && (reinterpret_cast<unsigned long long>(res) & 7) == 0;
  unsigned short *yb = reinterpret_cast<unsigned short *>(y);
  // The residual is read in batches of JB column pairs, every load of a
  // batch issued before its stores: res is y itself when a GEMM
  // accumulates (training's C += A B), so a load after a store of the same
  // thread may not move above it, and one load a store made the epilogue
  // JB times as many memory round trips (the per-expert weight
  // gradients' 128 x 256 tiles spent most of their time here). Each value
  // is still d (+ b) + res, in that order: the same bits.
  constexpr int JB = 8, Pairs = BN / 8;
  static_assert(Pairs % JB == 0, "wgmmaStore: BN / 8 must be a multiple of the batch");
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    i64 r = rowBase + warpInWg * 16 + g + h * 8;
    if (r >= rowEnd)
      continue;
#pragma unroll
    for (int j0 = 0; j0 < Pairs; j0 += JB) {
      float2 rv[JB];
#pragma unroll
      for (int jj = 0; jj < JB; ++jj) {
        const int n = n0 + (j0 + jj) * 8 + 2 * t4;
        rv[jj] = make_float2(0.f, 0.f);
        if (Gated || !res || n >= N)
          continue;
        if (resPairs && n + 1 < N) {
          rv[jj] = *reinterpret_cast<const float2 *>(res + r * N + n);
        } else {
          rv[jj].x = res[r * N + n];
          if (n + 1 < N)
            rv[jj].y = res[r * N + n + 1];
        }
      }
#pragma unroll
      for (int jj = 0; jj < JB; ++jj) {
        const int j = j0 + jj, n = n0 + j * 8 + 2 * t4;
        if (n >= N)
          continue;
        float v[2];
#pragma unroll
        for (int c = 0; c < 2; ++c) {
          const int e = 2 * h + c;
          if (Gated) {
            float gv = d[4 * j + e], uv = d[4 * (j + BN / 8) + e];
            v[c] = gv / (1.f + expf(-gv)) * uv;
          } else {
            v[c] = d[4 * j + e];
            if (b && n + c < N)
              v[c] += b[n + c];
            if (res && n + c < N)
              v[c] += c ? rv[jj].y : rv[jj].x;
          }
        }
        if (Bf16Out) {
          const unsigned both = packBf16x2(v[0], v[1]);
          if (pairs && n + 1 < N) {
            *reinterpret_cast<unsigned *>(yb + r * N + n) = both;
          } else {
            yb[r * N + n] = (unsigned short)(both & 0xffffu);
            if (n + 1 < N)
              yb[r * N + n + 1] = (unsigned short)(both >> 16);
          }
        } else if (pairs && n + 1 < N) {
          *reinterpret_cast<float2 *>(y + r * N + n) = make_float2(v[0], v[1]);
        } else {
          y[r * N + n] = v[0];
          if (n + 1 < N)
            y[r * N + n + 1] = v[1];
        }
      }
    }
  }
}
template <int Gated, int Wide>
__global__ void __launch_bounds__(256)
gemm_bf16_wgmma(const unsigned short *xb, const unsigned short *W, const unsigned short *Wu,
                const float *b, const float *res, float *y, i64 rows, int N, int K,
                const i64 *counts, int E, int tileGroup) {
#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
  // Weight rows of a tile (Wide: 256, each warpgroup m64n256), output
  // columns (gated: half), stages, and the accumulators a thread holds.
  constexpr int BW = Wide ? 256 : 128, BN = Gated ? BW / 2 : BW, NR = BW / 2;
  constexpr int Stages = Wide ? DSV3_WG_WIDE_STAGES : DSV3_WG_STAGES, Ahead = Stages - 2;
  constexpr int TileA = 128 * 64, Stage = TileA + BW * 64;
  extern __shared__ __align__(1024) float wgSmem[];
  // 1024-byte alignment of every tile (the swizzle pattern repeats per 1 KB).
  unsigned short *smem = reinterpret_cast<unsigned short *>(
      (reinterpret_cast<unsigned long long>(wgSmem) + 1023) & ~1023ull);
  unsigned tn, tm;
  gemmTile(tileGroup, tn, tm);
  i64 rowBegin = i64(tm) * 128, rowEnd = rows;
  if (counts) {
    int e = 0;
    if (!expertTile(counts, E, 128, tm, rowBegin, rowEnd, e))
      return;
    W += i64(e) * N * K;
    if (Gated)
      Wu += i64(e) * N * K;
  }
  if (rowBegin >= rowEnd)
    return;
  const int n0 = int(tn) * BN, tid = threadIdx.x;
  const int wg = tid >> 7;
  const int ksteps = (K + 63) / 64;
  auto stage = [&](int ks, int st) {
    unsigned short *As = smem + st * Stage, *Bs = As + TileA;
    for (int i = tid; i < 128 * 8; i += 256) {
      int r = i >> 3, c = i & 7, k = ks * 64 + c * 8;
      int at = r * 64 + ((c ^ (r & 7)) * 8);
      i64 row = rowBegin + r;
      if (row < rowEnd && k < K)
        cpAsync16(As + at, xb + row * K + k);
      else
        *reinterpret_cast<uint4 *>(As + at) = make_uint4(0, 0, 0, 0);
    }
    for (int i = tid; i < BW * 8; i += 256) {
      int r = i >> 3, c = i & 7, k = ks * 64 + c * 8;
      int at = r * 64 + ((c ^ (r & 7)) * 8);
      int n = Gated ? n0 + (r % BN) : n0 + r;
      const unsigned short *src = Gated && r >= BN ? Wu : W;
      if (n < N && k < K)
        cpAsync16(Bs + at, src + i64(n) * K + k);
      else
        *reinterpret_cast<uint4 *>(Bs + at) = make_uint4(0, 0, 0, 0);
    }
  };
  float d[NR];
#pragma unroll
  for (int i = 0; i < NR; ++i)
    d[i] = 0.f;
#pragma unroll
  for (int st = 0; st < Ahead; ++st) {
    if (st < ksteps)
      stage(st, st);
    cpAsyncCommit();
  }
  for (int ks = 0; ks < ksteps; ++ks) {
    cpAsyncWait<Ahead - 1>();
    // The copies (generic proxy) are read next by the tensor cores (async
    // proxy).
    asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
    __syncthreads();
    if (ks + Ahead < ksteps)
      stage(ks + Ahead, (ks + Ahead) % Stages);
    cpAsyncCommit();
    const unsigned short *As = smem + (ks % Stages) * Stage + wg * 64 * 64;
    const unsigned short *Bs = smem + (ks % Stages) * Stage + TileA;
    wgmmaFence();
    wgmmaBf16Slice<Wide>(d, As, Bs);
    wgmmaCommit();
    wgmmaWait<1>();
  }
  wgmmaWait<0>();
  cpAsyncWait<0>();
  wgmmaStore<Gated, BN, NR>(d, rowBegin + wg * 64, rowEnd, n0, N, b, res, y);
#else
  __trap(); // sm_90a only (the launcher checks the GPU)
#endif
}

__device__ __forceinline__ void wgmmaBf16RegA_N64(float (&d)[32], const unsigned (&a)[4],
                                                     unsigned long long db, int accumulate) {
  asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %37, 0;\n"
               "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 "
               "{%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31}, {%32,%33,%34,%35}, %36, p, 1, 1, 0;\n}\n"
               : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(db), "r"(accumulate));
}
__device__ __forceinline__ void wgmmaBf16RegA_N128(float (&d)[64], const unsigned (&a)[4],
                                                     unsigned long long db, int accumulate) {
  asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %69, 0;\n"
               "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 "
               "{%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31,%32,%33,%34,%35,%36,%37,%38,%39,%40,%41,%42,%43,%44,%45,%46,%47,%48,%49,%50,%51,%52,%53,%54,%55,%56,%57,%58,%59,%60,%61,%62,%63}, {%64,%65,%66,%67}, %68, p, 1, 1, 0;\n}\n"
               : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(db), "r"(accumulate));
}

/// O += P V over BK keys (BK / 16 k16 steps, P's A fragments in
/// registers), the values transposed in shared memory as BK / 64 swizzle
/// atoms of DV rows x 64 keys (K-major B: mla_pack_vt's layout), by the
/// prefill attentions on the warpgroup MMA.
template <int DV, int BK>
__device__ __forceinline__ void wgmmaAttentionPV(float (&oacc)[DV / 2],
                                                 const unsigned (&pa)[BK / 16][4],
                                                 const unsigned short *vs) {
#pragma unroll
  for (int kk = 0; kk < BK / 16; ++kk) {
    const unsigned long long db =
        wgmmaDesc(vs + (kk / 4) * DV * 64) + (unsigned long long)(((kk % 4) * 32) >> 4);
    if constexpr (DV == 128)
      wgmmaBf16RegA_N128(oacc, pa[kk], db, 1);
    else
      wgmmaBf16RegA_N64(oacc, pa[kk], db, 1);
  }
}

/// Rows r0 .. r0 + N - 1 of x (D bf16 columns, rows ld apart; a row index
/// clamped to T - 1: finite, never stored) by cp.async into the tile's D / 64
/// swizzle atoms of N rows each (K-major, 128B swizzle), by a block of 256
/// threads: a thread copies 16-byte column c = tid % 8 of rows tid / 8 +
/// 32 m, so its addresses are one base and constant steps (a division per
/// copy, as a flat index needs, cost more issue slots than the copies).
template <int D, int N>
__device__ __forceinline__ void swizzledRows(unsigned short *tile, const unsigned short *x,
                                             i64 ld, i64 r0, i64 T) {
  static_assert(D % 64 == 0 && N % 32 == 0, "whole atoms, 32 rows a pass");
  const int c = threadIdx.x & 7, rr = threadIdx.x >> 3;
#pragma unroll
  for (int m = 0; m < N / 32; ++m) {
    const int r = rr + 32 * m;
    const i64 i = r0 + r < T ? r0 + r : T - 1;
    const unsigned short *src = x + i * ld + c * 8;
    unsigned short *dst = tile + r * 64 + ((c ^ (r & 7)) * 8);
#pragma unroll
    for (int a = 0; a < D / 64; ++a)
      cpAsync16(dst + a * N * 64, src + a * 64);
  }
}
/// Registers a warpgroup MMA wrote, read only after wgmmaWait: the empty
/// asm ties each to this point, so the compiler cannot move a read of it
/// above the wait (which names no registers).
template <int N> __device__ __forceinline__ void wgmmaLanded(float (&x)[N]) {
#pragma unroll
  for (int i = 0; i < N; ++i)
    asm volatile("" : "+f"(x[i])::"memory");
}
/// mbarrier primitives (sm_90): a barrier's phase completes when
/// its arrivals and, for expect_tx, the bytes of the copies it names land.
__device__ __forceinline__ void mbarInit(unsigned long long *bar, unsigned count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(
                   (unsigned)__cvta_generic_to_shared(bar)),
               "r"(count)
               : "memory");
}
__device__ __forceinline__ void mbarArrive(unsigned long long *bar) {
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(
                   (unsigned)__cvta_generic_to_shared(bar))
               : "memory");
}
__device__ __forceinline__ void mbarExpectTx(unsigned long long *bar, unsigned bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(
                   (unsigned)__cvta_generic_to_shared(bar)),
               "r"(bytes)
               : "memory");
}
__device__ __forceinline__ void mbarWait(unsigned long long *bar, unsigned parity) {
  unsigned a = (unsigned)__cvta_generic_to_shared(bar);
  asm volatile("{\n.reg .pred done;\nwait_%=:\n"
               "mbarrier.try_wait.parity.shared::cta.b64 done, [%0], %1;\n"
               "@!done bra wait_%=;\n}\n" ::"r"(a),
               "r"(parity)
               : "memory");
}
/// Named barrier `id` (1..15; 0 is __syncthreads') of `count` threads:
/// wait for it, or arrive without waiting (producer / consumer hand-offs
/// between warpgroups).
__device__ __forceinline__ void namedBarSync(int id, int count) {
  asm volatile("bar.sync %0, %1;\n" ::"r"(id), "r"(count) : "memory");
}
__device__ __forceinline__ void namedBarArrive(int id, int count) {
  asm volatile("bar.arrive %0, %1;\n" ::"r"(id), "r"(count) : "memory");
}
/// The slots' mbarriers of a warp-specialized GEMM block, initialized by
/// its first thread before any is used: full[s] completes with the
/// producer's one arrival (and its copies' bytes), empty[s] with the two
/// consumer warpgroups'.
template <int Stages>
__device__ __forceinline__ void initSlotBarriers(unsigned long long *full,
                                                 unsigned long long *empty,
                                                 unsigned fullArrivals = 1,
                                                 unsigned emptyArrivals = 2) {
  if (threadIdx.x == 0) {
    for (int s = 0; s < Stages; ++s) {
      mbarInit(&full[s], fullArrivals);
      mbarInit(&empty[s], emptyArrivals);
    }
    asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
  }
  __syncthreads();
}
/// An arrival on `bar` once every cp.async this thread issued so far has
/// landed (counted against the barrier's expected arrivals: .noinc).
__device__ __forceinline__ void cpAsyncArriveNoinc(unsigned long long *bar) {
  asm volatile("cp.async.mbarrier.arrive.noinc.shared::cta.b64 [%0];\n" ::"r"(
                   (unsigned)__cvta_generic_to_shared(bar))
               : "memory");
}
/// The prefill attention on Hopper's warpgroup MMA (sm_90a; other targets
/// trap): mla_prefill_mma's online softmax with both products as
/// `wgmma.mma_async` whose A operand is in registers (the queries' and the
/// probabilities' fragments: the layout of mma.sync's A) and whose B
/// operand the tensor cores read from 128B-swizzled shared memory once a
/// warpgroup, where mma.sync's ldmatrix fed each warp separately (that
/// kernel moved ~2.5x the bytes of its MMAs through shared memory and ran
/// at ~175 TFLOP/s at V3 widths). Two warpgroups of 64 queries (128 a
/// block), 64-key tiles in DSV3_PREFILL_STAGES stages copied by cp.async,
/// Stages - 2 tiles ahead: the keys [64, DQ] as DQ / 64 swizzle atoms (B of
/// S = Q K^T, K-major), the values transposed [DV, 64] (B of O += P V,
/// K-major: mla_pack_vt).
/// The softmax runs while the tensor cores work, twice over:
/// - within a warpgroup (FlashAttention-3's intra-warpgroup overlap): a
///   step issues the next tile's scores and this tile's P V together,
///   takes the next tile's softmax once its scores land (P V still in
///   flight), then rescales O;
/// - between the warpgroups (FlashAttention-3's ping-pong): they take
///   turns issuing a step's MMAs (named barriers 1 and 2), so one's
///   softmax runs under the other's MMAs. No block-wide barrier holds them
///   in step: a stage's copies land on its `full` barrier (every thread's
///   cp.async arrives on it) and it is refilled once both warpgroups freed
///   it (`empty`, a warp's arrival each), the copies far enough ahead that
///   a warpgroup never waits for the other's release.
/// The same MMAs and softmax in the same order as with a barrier a tile:
/// the same bits.
/// Needs DQ % 64 == 0 and DV 64 or 128 (mlaPrefillWgmmaFits).
template <int NH, int DN, int DR, int DV, int R>
__global__ void __launch_bounds__(256, 1)
    mla_prefill_wgmma(const float *q, const unsigned short *kb, const unsigned short *vt, i64 Sp,
                      const i64 *past, i64 b, float *o, float *lse, i64 T, i64 S,
                      float softmaxScale, int oForm, float *oScales) {
#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
  constexpr int DQ = DN + DR, BQ = 128, BK = 64;
  static_assert(DQ % 64 == 0 && (DV == 64 || DV == 128), "mlaPrefillWgmmaFits");
  constexpr int TileK = BK * DQ, Stage = TileK + DV * BK, Stages = DSV3_PREFILL_STAGES(DQ, DV);
  // Tile t + Ahead goes to the stage tile t - 2 used: both warpgroups were
  // done with it (the later one is at most a step behind).
  constexpr int Ahead = Stages - 2;
  extern __shared__ __align__(1024) float prefillWgSmem[];
  unsigned short *smem = reinterpret_cast<unsigned short *>(
      (reinterpret_cast<unsigned long long>(prefillWgSmem) + 1023) & ~1023ull);
  __shared__ __align__(8) unsigned long long full[Stages], empty[Stages];
  const int tid = threadIdx.x, wg = tid >> 7, warp = (tid >> 5) & 3, lane = tid & 31,
            g = lane >> 2, t4 = lane & 3, h = blockIdx.y;
  const i64 i0 = i64(gridDim.x - 1 - blockIdx.x) * BQ, p0 = past[b];
  const unsigned short *kh = kb + i64(h) * S * DQ, *vh = vt + i64(h) * DV * Sp;
  // full: every thread's copies; empty: every warp, done with the stage.
  initSlotBarriers<Stages>(full, empty, 256, 8);
  // This thread's query rows (g and g + 8 of its warp's 16).
  const i64 row[2] = {i0 + wg * 64 + warp * 16 + g, i0 + wg * 64 + warp * 16 + g + 8};
  unsigned qf[DQ / 16][4];
  attentionQueryFragments<NH, DQ, DQ>(qf, q, row, T, h, t4);
  // Accumulators: m64nN's layout is, per warp, mma.sync's m16n8 tiles.
  float oacc[DV / 2], mrun[2], lrun[2];
  attentionStateInit(oacc, mrun, lrun);
  const float scaleLog2 = softmaxScale * 1.4426950408889634f;
  const i64 wgFirst = p0 + i0 + wg * 64; // this warpgroup's earliest position
  i64 kEnd; // keys 0 .. kEnd - 1 are seen
  const i64 tiles = attentionKeyTiles<BQ, BK>(i0, T, p0, kEnd);
  // The block's tiles each warpgroup multiplies: later ones hold only keys
  // after its queries (warpgroup-uniform, as every wgmma must be). The
  // first warpgroup's (earlier queries) are never more than the second's.
  auto tilesOf = [&](int w) {
    const i64 last = (p0 + i0 + w * 64 + BK - 1) / BK;
    return tiles < last + 1 ? tiles : last + 1;
  };
  const i64 wgTiles = tilesOf(wg), firstTiles = tilesOf(0);
  // Keys past S repeat row S - 1 (finite; masked for every stored query);
  // values past S are mla_pack_vt's zeros (Sp: S rounded up to 64). Every
  // thread copies its share of each tile once that tile's stage is free,
  // and arrives on its full barrier when the copies land.
  auto loadTile = [&](i64 t) {
    if (t >= tiles)
      return;
    const int st = int(t % Stages);
    if (t >= Stages)
      mbarWait(&empty[st], unsigned((t / Stages) - 1) & 1);
    unsigned short *ks = smem + st * Stage, *vs = ks + TileK;
    swizzledRows<DQ, BK>(ks, kh, DQ, t * BK, S);
    swizzledRows<BK, DV>(vs, vh + t * BK, Sp, 0, DV); // rows: the value features
    cpAsyncArriveNoinc(&full[st]);
  };
  // Tile t landed, visible to the tensor cores (the copies are generic-
  // proxy writes, the MMAs read through the async proxy).
  auto tileLanded = [&](i64 t) {
    mbarWait(&full[int(t % Stages)], unsigned(t / Stages) & 1);
    asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
  };
  // This warp is done with tile t's stage (its MMAs that read it landed).
  auto freeTile = [&](i64 t) {
    __syncwarp();
    if (lane == 0)
      mbarArrive(&empty[int(t % Stages)]);
  };
  float sc[32];
  auto issueScores = [&](i64 t) { // sc = Q K_t^T
    const unsigned short *ks = smem + int(t % Stages) * Stage;
#pragma unroll
    for (int kk = 0; kk < DQ / 16; ++kk)
      wgmmaBf16RegA_N64(sc, qf[kk],
                        wgmmaDesc(ks + (kk / 4) * BK * 64) +
                            (unsigned long long)(((kk % 4) * 32) >> 4),
                        kk > 0);
  };
  // Tile t's scores, landed, to probabilities (pa: the A fragments of P V)
  // and the factors that rescale O.
  unsigned pa[4][4];
  float alpha[2];
  auto softmax = [&](i64 t, unsigned (&p)[4][4]) {
    wgmmaLanded(sc);
    if (t * BK + BK - 1 > wgFirst) // the diagonal crosses this tile
      attentionCausalMask(sc, t * BK, p0, row, t4);
    attentionSoftmaxScores(sc, mrun, lrun, alpha, scaleLog2);
#pragma unroll
    for (int kk = 0; kk < 4; ++kk)
      attentionProbFragment(p[kk], sc, kk);
  };
#pragma unroll
  for (int t = 0; t < Ahead; ++t)
    loadTile(t);
  tileLanded(0);
  wgmmaFence();
  issueScores(0); // every warpgroup has tile 0 (key 0 precedes every query)
  wgmmaCommit();
  wgmmaWait<0>();
  softmax(0, pa);
  for (i64 t = 0; t < tiles; ++t) {
    loadTile(t + Ahead);
    if (t < wgTiles) {
      const bool next = t + 1 < wgTiles;
      const unsigned short *vs = smem + int(t % Stages) * Stage + TileK;
      if (next)
        tileLanded(t + 1);
      // Turns while both warpgroups multiply: the first issues step t once
      // the second issued step t - 1, the second once the first issued
      // step t.
      if (wg == 0 ? t > 0 : t < firstTiles)
        namedBarSync(1 + wg, 256);
      wgmmaFence(); // sc and oacc were written since the last MMAs read them
      // At its last tile a warpgroup multiplies that tile's keys again
      // (results unused): an MMA under a branch of its own is serialized by
      // ptxas (C7520, it cannot tell the branch is warpgroup-uniform).
      issueScores(next ? t + 1 : t);
      wgmmaCommit();
      wgmmaAttentionPV<DV, BK>(oacc, pa, vs);
      wgmmaCommit();
      if (wg == 0 || t + 1 < firstTiles)
        namedBarArrive(2 - wg, 256);
      unsigned pn[4][4]; // tile t + 1's probabilities (pa is P V's operand in flight)
      // Waited for outside the branch: a wait under a branch ptxas cannot
      // prove warpgroup-uniform makes it wait for every MMA as issued.
      wgmmaWait<1>();
      if (next)
        softmax(t + 1, pn);
      wgmmaWait<0>();
      wgmmaLanded(oacc);
      if (next) {
        attentionRescale(oacc, alpha);
#pragma unroll
        for (int kk = 0; kk < 4; ++kk)
#pragma unroll
          for (int f = 0; f < 4; ++f)
            pa[kk][f] = pn[kk][f];
      }
    }
    freeTile(t); // read (or, past this warpgroup's tiles, never needed)
  }
  cpAsyncWait<0>(); // no copy of this thread's left in flight as it leaves
  attentionStoreRows<NH, DV>(oacc, mrun, lrun, row, T, h, t4, o, lse, softmaxScale, oForm,
                             oScales);
#else
  __trap(); // sm_90a only (the launcher checks the GPU)
#endif
}
/// mla_prefill_wgmma's values, transposed: vt[(h DV + c) Sp + j] = bf16(v of
/// key j, head h, feature c), zeros for keys S .. Sp - 1. Grid (Sp / 64,
/// NH): 64 keys of a head through shared memory (reads along the features,
/// writes along the keys).
template <int NH, int DN, int DR, int DV, int R>
__global__ void __launch_bounds__(256) mla_pack_vt(const float *u, i64 S, i64 Sp,
                                                   unsigned short *vt) {
  __shared__ unsigned tile[DV][33]; // bf16 pairs of keys (2m, 2m + 1), padded
  const int h = blockIdx.y;
  const i64 j0 = i64(blockIdx.x) * 64;
  for (int idx = threadIdx.x; idx < 32 * DV; idx += blockDim.x) {
    const int m = idx / DV, c = idx % DV;
    const i64 j = j0 + 2 * m;
    float v0 = j < S ? u[(j * NH + h) * (DN + DV) + DN + c] : 0.f;
    float v1 = j + 1 < S ? u[((j + 1) * NH + h) * (DN + DV) + DN + c] : 0.f;
    tile[c][m] = packBf16x2(v0, v1);
  }
  __syncthreads();
  for (int idx = threadIdx.x; idx < DV * 32; idx += blockDim.x) {
    const int c = idx / 32, m = idx % 32;
    *reinterpret_cast<unsigned *>(vt + (i64(h) * DV + c) * Sp + j0 + 2 * m) = tile[c][m];
  }
}

/// A TMA tensor map (CUtensorMap: 128 opaque bytes, 64-byte aligned),
/// passed by value as a __grid_constant__ kernel parameter.
struct __align__(64) TmaMap {
  unsigned long long opaque[16];
};
/// A 2-D box of `map` at (column c0, row c1) into shared memory at dst,
/// completing `bar`'s transaction bytes (rows or columns past the tensor
/// read as zeros).
__device__ __forceinline__ void tmaLoad2d(void *dst, const TmaMap *map, int c0, int c1,
                                          unsigned long long *bar) {
  asm volatile("cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes "
               "[%0], [%1, {%2, %3}], [%4];\n" ::"r"((unsigned)__cvta_generic_to_shared(dst)),
               "l"(map), "r"(c0), "r"(c1), "r"((unsigned)__cvta_generic_to_shared(bar))
               : "memory");
}

/// A 2-D box of shared memory at src into `map`'s tensor at (column c0,
/// row c1), as one bulk group of this thread's (elements past the tensor
/// are not written); tmaStoreCommitAndWaitRead closes this thread's copies
/// into a group and waits until they have read their shared memory (the
/// writes may still drain).
__device__ __forceinline__ void tmaStore2d(const TmaMap *map, const void *src, int c0, int c1) {
  asm volatile("cp.async.bulk.tensor.2d.global.shared::cta.bulk_group [%0, {%1, %2}], [%3];\n" ::
                   "l"(map), "r"(c0), "r"(c1), "r"((unsigned)__cvta_generic_to_shared(src))
               : "memory");
}
__device__ __forceinline__ void tmaStoreCommitAndWaitRead() {
  asm volatile("cp.async.bulk.commit_group;\n" ::: "memory");
  asm volatile("cp.async.bulk.wait_group.read 0;\n" ::: "memory");
}

/// A plain wide tile's 128 x 256 fp32 sums (each consumer's acc: 64 rows,
/// the m64n256 fragment of promoteHalf) stored by TMA through shared memory
/// (the stage slots, free once both consumers' K loops ended): eight boxes
/// of 32 columns x 128 rows, 128B-swizzled (16-byte chunk c of row r at
/// c ^ (r & 7): a warp's eight rows spread over every bank, each twice),
/// then one thread's bulk copies to y at (n0, rowBegin), columns past N
/// dropped by the map. The block leaves once the copies read shared
/// memory, its writes still draining, where the register stores held it
/// until every store issued. Whole tiles only (a box writes all 128 rows:
/// an expert's partial last tile would write into the next one's).
/// Called by both consumer warpgroups (named barrier 5, 256 threads).
__device__ __forceinline__ void wgmmaStoreWideByTma(const float (&acc)[128], unsigned char *smem,
                                                    const TmaMap *mapY, int n0, int N,
                                                    i64 rowBegin) {
  const int tid = threadIdx.x, cw = (tid >> 7) - 1, warpInWg = (tid >> 5) & 3, lane = tid & 31;
  const int g = lane >> 2, t4 = lane & 3;
  float *ys = reinterpret_cast<float *>(smem);
  namedBarSync(5, 256); // both consumers' MMAs landed: the slots are free
#pragma unroll
  for (int H = 0; H < 2; ++H)
#pragma unroll
    for (int j = 0; j < 16; ++j)
#pragma unroll
      for (int half = 0; half < 2; ++half) {
        const int r = cw * 64 + warpInWg * 16 + g + 8 * half, c = H * 128 + 8 * j + 2 * t4;
        const int cc = c % 32;
        float *dst = ys + (c / 32) * (128 * 32) + r * 32 + (((cc / 4) ^ (r & 7)) * 4) + cc % 4;
        *reinterpret_cast<float2 *>(dst) =
            make_float2(acc[H * 64 + 4 * j + 2 * half], acc[H * 64 + 4 * j + 2 * half + 1]);
      }
  // Generic-proxy stores, read next by the bulk copies (async proxy).
  asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
  namedBarSync(5, 256);
  if (tid == 128) {
#pragma unroll
    for (int box = 0; box < 8; ++box)
      if (n0 + box * 32 < N)
        tmaStore2d(mapY, ys + box * (128 * 32), n0 + box * 32, int(rowBegin));
    tmaStoreCommitAndWaitRead();
  }
}

/// Where fp8_gemm_tma_wide<4> (kv_b_proj over one sequence's latent rows,
/// expanded straight into the prefill attention's operands) stores a head's
/// keys and values: kb [NH, S, DQ] (the 128 no-rope features, then the row's
/// rope key from `rows` [S, W] at column R, shared by every head) and vt
/// [NH, 128, Sp] (the 128 value features transposed), bf16 rounded to
/// nearest even as mla_pack_kv and mla_pack_vt round kv_b_proj's fp32
/// output. Zeros elsewhere (null pointers) in the other forms.
struct MlaKvOut {
  unsigned short *kb, *vt;
  const float *rows;
  i64 S, Sp;
  int W, R, DR;
};

/// fp8_gemm_tma_wide<4>'s epilogue: the tile of rows [rowBase, rowEnd)
/// (this consumer's 64; S rows in all) and columns n0 .. n0 + 255, head n0
/// / 256's no-rope keys (acc half 0, the m64n256 fragment of promoteHalf)
/// and values (half 1), the values stored transposed (a quad's 8 rows are
/// 16 consecutive bytes of a feature's row); then its rows' rope keys.
__device__ __forceinline__ void wgmmaStoreMlaKv(const float (&acc)[128], i64 rowBase, i64 rowEnd,
                                                int n0, const MlaKvOut &kv) {
  const int tid = threadIdx.x, warpInWg = (tid >> 5) & 3, lane = tid & 31;
  const int g = lane >> 2, t4 = lane & 3, h = n0 / 256, DQ = 128 + kv.DR;
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    const i64 r = rowBase + warpInWg * 16 + g + 8 * half;
    if (r >= rowEnd)
      continue;
    unsigned short *krow = kv.kb + (i64(h) * kv.S + r) * DQ;
    unsigned short *vcol = kv.vt + i64(h) * 128 * kv.Sp + r;
#pragma unroll
    for (int j = 0; j < 16; ++j) {
      const int c = 8 * j + 2 * t4;
      *reinterpret_cast<unsigned *>(krow + c) =
          packBf16x2(acc[4 * j + 2 * half], acc[4 * j + 2 * half + 1]);
      const unsigned v = packBf16x2(acc[64 + 4 * j + 2 * half], acc[64 + 4 * j + 2 * half + 1]);
      vcol[i64(c) * kv.Sp] = (unsigned short)(v & 0xffffu);
      vcol[i64(c + 1) * kv.Sp] = (unsigned short)(v >> 16);
    }
  }
  // The rope keys of this consumer's rows, pairs of features by its 128
  // threads (a consumer whose rows all lie past S left before its K loop;
  // rows past S are not stored).
  for (int idx = tid & 127; idx < 64 * (kv.DR / 2); idx += 128) {
    const i64 r = rowBase + idx / (kv.DR / 2);
    const int c = 2 * (idx % (kv.DR / 2));
    if (r >= rowEnd)
      continue;
    const float *rope = kv.rows + r * kv.W + kv.R + c;
    *reinterpret_cast<unsigned *>(kv.kb + (i64(h) * kv.S + r) * DQ + 128 + c) =
        packBf16x2(rope[0], rope[1]);
  }
}

/// One m64n128k16 bf16 warpgroup MMA with both operands in shared memory
/// (descriptors da, db) into d, or (accumulate 0) starting d from zero.
__device__ __forceinline__ void wgmmaBf16SS_N128(float (&d)[64], unsigned long long da,
                                                 unsigned long long db, int accumulate) {
  asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"
               "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 "
               "{%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31,%32,%33,%34,%35,%36,%37,%38,%39,%40,%41,%42,%43,%44,%45,%46,%47,%48,%49,%50,%51,%52,%53,%54,%55,%56,%57,%58,%59,%60,%61,%62,%63}, %64, %65, p, 1, 1, 0, 0;\n}\n"
               : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
               : "l"(da), "l"(db), "r"(accumulate));
}

/// The prefill attention with 128-key tiles fed by the Tensor Memory
/// Accelerator and warp-specialized (sm_90a; FlashAttention-3's shape):
/// warpgroup 0's first thread copies the keys [128, DQ] (map mapK over kb
/// [NH S, DQ], boxes of 64 features) and the transposed values [DV, 128]
/// (map mapV over vt [NH DV, Sp], boxes of 64 keys) of each tile into two
/// key and two value slots; warpgroups 1 and 2 take 64 queries each, held
/// bf16 in shared memory (so S = Q K^T reads both operands from there and
/// the registers hold the 128-key tile's scores, probabilities and the
/// output: 160 a thread). mla_prefill_wgmma's schedule otherwise: a step
/// issues the next tile's scores and this tile's P V, takes the next tile's
/// softmax while P V runs (intra-warpgroup overlap), and the consumers take
/// turns issuing (named barriers 1 and 2, the ping-pong). The key and value
/// slots are freed apart (kEmpty once a tile's scores landed, vEmpty once
/// its P V did), so a key tile is copied a whole step before it is needed
/// with two slots of each (two 80 KB stages freed together would make every
/// step wait for its copy). Keys past S (the next head's rows, or zeros past
/// the map) and values past S (mla_pack_vt's zeros: the launcher rounds Sp
/// up to whole 128-key tiles) are finite and masked for every stored query. Needs DQ % 64 == 0, DV 64 or 128 and
/// DSV3_PREFILL_TMA_SMEM within 227 KB (mlaPrefillTmaFits).
template <int NH, int DN, int DR, int DV, int R>
__global__ void __launch_bounds__(384, 1)
    mla_prefill_tma(const __grid_constant__ TmaMap mapK, const __grid_constant__ TmaMap mapV,
                    const float *q, i64 S, const i64 *past, i64 b, float *o, float *lse, i64 T,
                    float softmaxScale, int oForm, float *oScales) {
#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
  constexpr int DQ = DN + DR, BQ = 128, BK = 128;
  static_assert(DQ % 64 == 0 && (DV == 64 || DV == 128), "mlaPrefillTmaFits");
  constexpr int TileQ = BQ * DQ, TileK = BK * DQ, TileV = DV * BK; // bf16 elements
  extern __shared__ __align__(1024) float prefillTmaSmem[];
  unsigned short *qs = reinterpret_cast<unsigned short *>(
      (reinterpret_cast<unsigned long long>(prefillTmaSmem) + 1023) & ~1023ull);
  unsigned short *ks0 = qs + TileQ, *vs0 = ks0 + 2 * TileK;
  __shared__ __align__(8) unsigned long long kFull[2], kEmpty[2], vFull[2], vEmpty[2];
  const int tid = threadIdx.x, wg = tid >> 7, h = blockIdx.y;
  const i64 i0 = i64(gridDim.x - 1 - blockIdx.x) * BQ, p0 = past[b];
  i64 kEnd; // keys 0 .. kEnd - 1 are seen
  const i64 tiles = attentionKeyTiles<BQ, BK>(i0, T, p0, kEnd);
  // full: the producer's arrival and its copies' bytes; empty: the eight
  // consumer warps'.
  initSlotBarriers<2>(kFull, kEmpty, 1, 8);
  initSlotBarriers<2>(vFull, vEmpty, 1, 8);
  if (wg == 0) {
    asm volatile("setmaxnreg.dec.sync.aligned.u32 40;\n" ::: "memory");
    if (tid == 0) {
      const int kRow = h * int(S), vRow = h * DV;
      auto loadKeys = [&](i64 t) {
        const int s = int(t & 1);
        if (t >= 2)
          mbarWait(&kEmpty[s], unsigned((t >> 1) - 1) & 1);
        mbarExpectTx(&kFull[s], unsigned(TileK * 2));
#pragma unroll
        for (int a = 0; a < DQ / 64; ++a)
          tmaLoad2d(ks0 + s * TileK + a * BK * 64, &mapK, a * 64, kRow + int(t) * BK, &kFull[s]);
      };
      auto loadValues = [&](i64 t) {
        const int s = int(t & 1);
        if (t >= 2)
          mbarWait(&vEmpty[s], unsigned((t >> 1) - 1) & 1);
        mbarExpectTx(&vFull[s], unsigned(TileV * 2));
#pragma unroll
        for (int a = 0; a < BK / 64; ++a)
          tmaLoad2d(vs0 + s * TileV + a * DV * 64, &mapV, int(t) * BK + a * 64, vRow, &vFull[s]);
      };
      // The order the consumers need them: a step multiplies tile t + 1's
      // keys and tile t's values.
      loadKeys(0);
      for (i64 t = 0; t < tiles; ++t) {
        if (t + 1 < tiles)
          loadKeys(t + 1);
        loadValues(t);
      }
    }
    return;
  }
  asm volatile("setmaxnreg.inc.sync.aligned.u32 232;\n" ::: "memory");
  const int cw = wg - 1, warp = (tid >> 5) & 3, lane = tid & 31, g = lane >> 2, t4 = lane & 3;
  // This warpgroup's 64 queries into rows cw * 64 .. of the query tile as
  // bf16, in DQ / 64 swizzle atoms of 128 rows (the keys' layout), zeros
  // past T; generic-proxy stores, read next by the tensor cores.
  // Every chunk's loads first (DQ / 16 chunks a thread: 96 registers at V3
  // widths, before the accumulators live), then the conversions and
  // stores, so that the loads are in flight together rather than one
  // chunk's latency after another's.
  constexpr int Chunks = 64 * (DQ / 8) / 128;
  static_assert(64 * (DQ / 8) % 128 == 0, "whole chunks a thread");
  float4 qx[Chunks][2];
#pragma unroll
  for (int it = 0; it < Chunks; ++it) {
    const int idx = (tid & 127) + it * 128, r = idx / (DQ / 8), ch = idx % (DQ / 8);
    const i64 qr = i0 + cw * 64 + r;
    qx[it][0] = qx[it][1] = make_float4(0.f, 0.f, 0.f, 0.f);
    if (qr < T) {
      const float4 *src = reinterpret_cast<const float4 *>(q + (qr * NH + h) * DQ + ch * 8);
      qx[it][0] = src[0];
      qx[it][1] = src[1];
    }
  }
#pragma unroll
  for (int it = 0; it < Chunks; ++it) {
    const int idx = (tid & 127) + it * 128, r = idx / (DQ / 8), ch = idx % (DQ / 8);
    const int rr = cw * 64 + r;
    const float4 x0 = qx[it][0], x1 = qx[it][1];
    const uint4 v = make_uint4(packBf16x2(x0.x, x0.y), packBf16x2(x0.z, x0.w),
                               packBf16x2(x1.x, x1.y), packBf16x2(x1.z, x1.w));
    *reinterpret_cast<uint4 *>(qs + (ch / 8) * BQ * 64 + rr * 64 + (((ch % 8) ^ (rr & 7)) * 8)) =
        v;
  }
  asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
  namedBarSync(3 + cw, 128);
  // This thread's query rows (g and g + 8 of its warp's 16).
  const i64 row[2] = {i0 + cw * 64 + warp * 16 + g, i0 + cw * 64 + warp * 16 + g + 8};
  float oacc[DV / 2], mrun[2], lrun[2];
  attentionStateInit(oacc, mrun, lrun);
  const float scaleLog2 = softmaxScale * 1.4426950408889634f;
  const i64 wgFirst = p0 + i0 + cw * 64; // this warpgroup's earliest position
  // The tiles a warpgroup multiplies: those holding a key at or before its
  // last query (warpgroup-uniform, as every wgmma must be); the first's
  // (earlier queries) are never more than the second's.
  auto tilesOf = [&](int w) {
    const i64 last = (p0 + i0 + w * 64 + 63) / BK;
    return tiles < last + 1 ? tiles : last + 1;
  };
  const i64 wgTiles = tilesOf(cw), firstTiles = tilesOf(0);
  auto keysLanded = [&](i64 t) { mbarWait(&kFull[int(t & 1)], unsigned(t >> 1) & 1); };
  auto valuesLanded = [&](i64 t) { mbarWait(&vFull[int(t & 1)], unsigned(t >> 1) & 1); };
  // A warp's release of a slot whose MMAs landed (empty counts 8).
  auto release = [&](unsigned long long *bar) {
    __syncwarp();
    if (lane == 0)
      mbarArrive(bar);
  };
  float sc[64];
  auto issueScores = [&](i64 t) { // sc = Q K_t^T
    const unsigned short *ks = ks0 + int(t & 1) * TileK, *qw = qs + cw * 64 * 64;
#pragma unroll
    for (int kk = 0; kk < DQ / 16; ++kk) {
      const unsigned long long step = (unsigned long long)(((kk % 4) * 32) >> 4);
      wgmmaBf16SS_N128(sc, wgmmaDesc(qw + (kk / 4) * BQ * 64) + step,
                       wgmmaDesc(ks + (kk / 4) * BK * 64) + step, kk > 0);
    }
  };
  unsigned pa[BK / 16][4]; // P, the A fragments of P V
  float alpha[2];
  // Tile t's scores, landed, to probabilities in sc and the factors that
  // rescale O (applied once the P V in flight landed).
  auto softmax = [&](i64 t) {
    wgmmaLanded(sc);
    if (t * BK + BK - 1 > wgFirst) // the diagonal crosses this tile
      attentionCausalMask(sc, t * BK, p0, row, t4);
    attentionSoftmaxScores(sc, mrun, lrun, alpha, scaleLog2);
  };
  auto toProbs = [&] {
#pragma unroll
    for (int kk = 0; kk < BK / 16; ++kk)
      attentionProbFragment(pa[kk], sc, kk);
  };
  keysLanded(0);
  wgmmaFence();
  issueScores(0); // every warpgroup has tile 0 (key 0 precedes every query)
  wgmmaCommit();
  wgmmaWait<0>();
  // A warpgroup's last key tile is read again by its last step (below), so
  // its slot is freed there.
  if (wgTiles > 1)
    release(&kEmpty[0]);
  softmax(0);
  toProbs();
  for (i64 t = 0; t < tiles; ++t) {
    if (t < wgTiles) {
      const bool next = t + 1 < wgTiles;
      if (next)
        keysLanded(t + 1);
      valuesLanded(t);
      // Turns while both warpgroups multiply: the first issues step t once
      // the second issued step t - 1, the second once the first issued
      // step t.
      if (cw == 0 ? t > 0 : t < firstTiles)
        namedBarSync(1 + cw, 256);
      wgmmaFence(); // sc and oacc were written since the last MMAs read them
      // At its last tile a warpgroup multiplies that tile's keys again
      // (results unused): an MMA under a branch of its own is serialized by
      // ptxas (C7520, it cannot tell the branch is warpgroup-uniform).
      issueScores(next ? t + 1 : t);
      wgmmaCommit();
      wgmmaAttentionPV<DV, BK>(oacc, pa, vs0 + int(t & 1) * TileV);
      wgmmaCommit();
      if (cw == 0 || t + 1 < firstTiles)
        namedBarArrive(2 - cw, 256);
      // Waited for outside the branch: a wait under a branch ptxas cannot
      // prove warpgroup-uniform makes it wait for every MMA as issued.
      wgmmaWait<1>();
      // The scores landed: their key tile is done with, unless it is this
      // warpgroup's last (read again by the next step's repeat) or was the
      // repeat itself.
      if (!next)
        release(&kEmpty[int(t & 1)]);
      else if (t + 2 < wgTiles)
        release(&kEmpty[int((t + 1) & 1)]);
      if (next)
        softmax(t + 1);
      wgmmaWait<0>();
      wgmmaLanded(oacc);
      release(&vEmpty[int(t & 1)]);
      if (next) {
        attentionRescale(oacc, alpha);
        toProbs();
      }
    } else {
      // A tile after this warpgroup's queries: freed once it landed (an
      // arrival before that would count toward the slot's previous phase).
      keysLanded(t);
      valuesLanded(t);
      release(&kEmpty[int(t & 1)]);
      release(&vEmpty[int(t & 1)]);
    }
  }
  attentionStoreRows<NH, DV>(oacc, mrun, lrun, row, T, h, t4, o, lse, softmaxScale, oForm,
                             oScales);
#else
  __trap(); // sm_90a only (the launcher checks the GPU)
#endif
}

/// A K block's scales in a slot of an FP8 TMA GEMM (sm_90a): the block's
/// activation scale of each of the tile's 128 rows (0 past rowEnd) and the
/// weight scales of its two column halves (plain narrow tiles: the same
/// one twice; gated: the gate's and the up's).
struct Fp8SlotScales {
  float a[128];
  float w[2];
};

/// A consumer warp's release of its slot (empty counts 8: two consumer
/// warpgroups of 4 warps), once its MMAs that read the slot landed and its
/// lanes read the slot's scales: __syncwarp orders the lanes' reads before
/// lane 0's arrive, whose release orders them before the producer's reuse
/// of the slot (a warpgroup-wide arrive by one thread would not cover the
/// other warps' scale reads).
__device__ __forceinline__ void fp8ReleaseSlot(unsigned long long *empty) {
  __syncwarp();
  if ((threadIdx.x & 31) == 0)
    mbarArrive(empty);
}

/// The second warp of an FP8 TMA GEMM's producer warpgroup: stages each K
/// block's scales (sa [rows, nb], w0 / w1 [nb]) into its slot, up to
/// Stages blocks ahead of the consumers, who read them from shared memory
/// instead of loading them from global memory inside their K loop (two
/// scattered activation-scale loads a thread a block, whose latency the
/// loop waited for: the wide loop with loop-invariant scales ran 942 ->
/// 1047 TFLOP/s at 8192 x 18432 x 7168 on an H200; these staged scales
/// 926 -> 954, 8192 x 7168 x 16384 851 -> 869, the same sums bitwise).
/// Each lane arrives on full[s] after its stores (release; the consumers'
/// wait acquires them), so full[s] counts 1 + 32 arrivals.
template <int Stages>
__device__ __forceinline__ void fp8StageScales(Fp8SlotScales *slots, unsigned long long *full,
                                               unsigned long long *empty, const float *sa,
                                               const float *w0, const float *w1, i64 rowBegin,
                                               i64 rowEnd, int nb) {
  const int lane = threadIdx.x & 31;
  for (int kb = 0; kb < nb; ++kb) {
    const int s = kb % Stages;
    float v[4];
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const i64 r = rowBegin + lane + 32 * j;
      v[j] = r < rowEnd ? sa[r * nb + kb] : 0.f;
    }
    const float ws = lane == 0 ? w0[kb] : lane == 1 ? w1[kb] : 0.f;
    if (kb >= Stages)
      mbarWait(&empty[s], ((kb / Stages) - 1) & 1);
#pragma unroll
    for (int j = 0; j < 4; ++j)
      slots[s].a[lane + 32 * j] = v[j];
    if (lane < 2)
      slots[s].w[lane] = ws;
    mbarArrive(&full[s]);
  }
}

/// gemm_bf16_wgmma's wide form fed by the Tensor Memory Accelerator and
/// warp-specialized (sm_90a): warpgroup 0 is the producer, one thread of
/// it issuing each K step's TMA copies (A: 128 rows x 64, B: 256 weight
/// rows x 64, 128B-swizzled as the descriptors expect) into one of
/// DSV3_TMA_STAGES slots; warpgroups 1 and 2 each run m64n256k16 over 64
/// rows. full[s] completes when a slot's bytes land; empty[s] when both
/// consumers' MMAs that read it are done (each arrives once its next
/// step's MMAs are issued and wait_group 1 returns). No block-wide barrier
/// in the K loop, and no thread but one spends issue slots on copies.
/// Grouped: the weights' map spans [E * N, K] rows (an expert's tile reads
/// row e * N + n0; rows past N are never stored), the activations' [rows,
/// K]. Gated: the B tile is 128 gate rows (map B) then 128 up rows (map
/// Bu), SwiGLU epilogue over 128 columns. With kseg (training's per-expert
/// weight gradients): blockIdx.z = z sums K columns kseg[z] .. kseg[z + 1]
/// (multiples of 64, zero-padded by the caller) into y + z * yBatch.
/// Form: 1 gated; 3 gated with y stored as bf16 (for a bf16 GEMM reading
/// it: DevTensor::Storage::Bf16); 0 plain.
template <int Form>
__global__ void __launch_bounds__(384, 1)
gemm_bf16_tma(const __grid_constant__ TmaMap mapA, const __grid_constant__ TmaMap mapB,
              const __grid_constant__ TmaMap mapBu, const float *b, const float *res, float *y,
              i64 rows, int N, int K, const i64 *counts, int E, int tileGroup,
              const i64 *kseg, i64 yBatch, int tilesX, int tilesY) {
#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
  constexpr int Gated = Form & 1;
  constexpr bool Bf16Out = (Form & 2) != 0;
  constexpr int BW = 256, BN = Gated ? 128 : 256, NR = 128, Stages = DSV3_TMA_STAGES;
  constexpr int TileA = 128 * 64, Stage = TileA + BW * 64; // bf16 elements
  extern __shared__ __align__(1024) float wgSmem[];
  unsigned short *smem = reinterpret_cast<unsigned short *>(
      (reinterpret_cast<unsigned long long>(wgSmem) + 1023) & ~1023ull);
  __shared__ __align__(8) unsigned long long full[Stages], empty[Stages];
  const int tid = threadIdx.x, wg = tid >> 7;
  int kFirst = 0, ksteps = (K + 63) / 64;
  if (kseg) { // batch z sums its own K columns (zero-padded to 64)
    const i64 z = blockIdx.z;
    kFirst = int(kseg[z] / 64);
    ksteps = int((kseg[z + 1] - kseg[z]) / 64);
    y += z * yBatch;
    if (res)
      res += z * yBatch;
  }
  initSlotBarriers<Stages>(full, empty);
  // The tiles this block computes: tile L, L + blocks, ... of tilesX x
  // tilesY (one when the grid has a block a tile; persistent when the grid
  // is smaller: the producer then copies the next tile's K steps while the
  // consumers store the last one's results). Producer and consumers walk
  // the same tiles; `it` counts K steps across them (slot it % Stages, its
  // phase it / Stages).
  const unsigned blocks = gridDim.x * gridDim.y, total = unsigned(tilesX) * unsigned(tilesY);
  // The tile's rows [rowBegin, rowEnd), weight row block and output column;
  // false for a grouped grid's tiles past the last expert's.
  auto tileOf = [&](unsigned L, i64 &rowBegin, i64 &rowEnd, int &expert, int &n0) {
    unsigned tn;
    const bool live = gemmGridTile(L, unsigned(tilesX), unsigned(tilesY), tileGroup, counts, E,
                                   rows, tn, rowBegin, rowEnd, expert);
    n0 = int(tn) * BN;
    return live;
  };
  unsigned it = 0;
  if (wg == 0) {
    // The whole warp finds the tiles (expertTile is warp-cooperative); its
    // first thread issues the copies.
    if (tid >= 32)
      return;
    for (unsigned L = blockIdx.y * gridDim.x + blockIdx.x; L < total; L += blocks) {
      i64 rowBegin, rowEnd;
      int expert, n0;
      if (!tileOf(L, rowBegin, rowEnd, expert, n0))
        continue;
      if (tid == 0) {
        const int wrow = expert * N + n0;
        for (int ks = 0; ks < ksteps; ++ks, ++it) {
          int s = int(it % Stages);
          if (it >= Stages)
            mbarWait(&empty[s], ((it / Stages) - 1) & 1);
          unsigned short *As = smem + s * Stage, *Bs = As + TileA;
          mbarExpectTx(&full[s], unsigned(Stage * 2));
          const int kc = (kFirst + ks) * 64;
          tmaLoad2d(As, &mapA, kc, int(rowBegin), &full[s]);
          if (Gated) {
            tmaLoad2d(Bs, &mapB, kc, wrow, &full[s]);
            tmaLoad2d(Bs + 128 * 64, &mapBu, kc, wrow, &full[s]);
          } else {
            tmaLoad2d(Bs, &mapB, kc, wrow, &full[s]);
          }
        }
      }
    }
    return;
  }
  const int cw = wg - 1;
  for (unsigned L = blockIdx.y * gridDim.x + blockIdx.x; L < total; L += blocks) {
    i64 rowBegin, rowEnd;
    int expert, n0;
    if (!tileOf(L, rowBegin, rowEnd, expert, n0))
      continue;
    float d[NR];
#pragma unroll
    for (int i = 0; i < NR; ++i)
      d[i] = 0.f;
    // A warpgroup whose 64 rows are all past the tile's (a grouped GEMM's
    // last tile of an expert, ~256 +- 16 rows an expert in the prefill)
    // issues no MMAs, leaving the tensor cores to the other; it still
    // waits for each slot and releases it, so the slots' phases stay in
    // step. The branch is around the whole K loop: with MMAs issued or
    // waited for under a branch inside it, ptxas (which cannot tell the
    // branch is warpgroup-uniform) waits for every MMA before issuing the
    // next.
    const bool live = rowBegin + cw * 64 < rowEnd;
    if (live) {
      for (int ks = 0; ks < ksteps; ++ks, ++it) {
        int s = int(it % Stages);
        mbarWait(&full[s], (it / Stages) & 1);
        const unsigned short *As = smem + s * Stage + cw * 64 * 64;
        const unsigned short *Bs = smem + s * Stage + TileA;
        wgmmaFence();
        wgmmaBf16Slice<1>(d, As, Bs);
        wgmmaCommit();
        wgmmaWait<1>();
        // The previous step's MMAs are done: its slot may be refilled.
        if (ks > 0 && (tid & 127) == 0)
          mbarArrive(&empty[(it - 1) % Stages]);
      }
      wgmmaWait<0>();
    } else {
      for (int ks = 0; ks < ksteps; ++ks, ++it) {
        mbarWait(&full[it % Stages], (it / Stages) & 1);
        if (ks > 0 && (tid & 127) == 0)
          mbarArrive(&empty[(it - 1) % Stages]);
      }
    }
    // The tile's last slot too (the producer may be on the next tile).
    if (ksteps > 0 && (tid & 127) == 0)
      mbarArrive(&empty[(it - 1) % Stages]);
    if (live)
      wgmmaStore<Gated, BN, NR, Bf16Out>(d, rowBegin + cw * 64, rowEnd, n0, N, b, res, y);
  }
#else
  __trap(); // sm_90a only (the launcher checks the GPU)
#endif
}

/// The FP8 GEMM of many rows on Hopper's warpgroup MMA (sm_90a; other
/// targets trap): fp8_gemm_tc's schedule with `wgmma.mma_async`
/// m64n128k32 e4m3 (QGMMA) from shared memory. Block tile 128 x 128, two
/// warpgroups of 64 rows; each 128-wide K block (one 128-byte swizzle atom
/// a row) copied by cp.async three stages ahead into the SW128 K-major
/// layout; the block's four k32 MMAs accumulate from zero into `part`, which
/// is promoted to fp32 with s_a * s_w (DeepSeek-V3 3.3.2, as DeepGEMM does).
/// Grouped as fp8_gemm_tc. Not yet checked on a GPU.
template <int Unused>
__global__ void __launch_bounds__(256)
fp8_gemm_wgmma(const unsigned char *xq, const float *sa, const unsigned char *W,
               const float *sw, const float *b, const float *res, float *y, i64 rows, int N,
               int K, int br, const i64 *counts, int E, int tileGroup) {
#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
  constexpr int Tile = 128 * 128; // bytes of one operand's stage
  extern __shared__ __align__(1024) float wgSmem[];
  unsigned char *smem = reinterpret_cast<unsigned char *>(
      (reinterpret_cast<unsigned long long>(wgSmem) + 1023) & ~1023ull);
  const int nb = (K + 127) / 128;
  unsigned tn, tm;
  gemmTile(tileGroup, tn, tm);
  i64 rowBegin = i64(tm) * 128, rowEnd = rows;
  if (counts) {
    int e = 0;
    if (!expertTile(counts, E, 128, tm, rowBegin, rowEnd, e))
      return;
    W += i64(e) * N * K;
    sw += i64(e) * ((N + br - 1) / br) * nb;
  }
  if (rowBegin >= rowEnd)
    return;
  const int n0 = int(tn) * 128, tid = threadIdx.x;
  const int wg = tid >> 7, lane = tid & 31, warpInWg = (tid >> 5) & 3;
  const int g = lane >> 2;
  const float *swn = sw + i64(n0 / br) * nb;
  auto stage = [&](int kb, int st) {
    unsigned char *As = smem + st * 2 * Tile, *Bs = As + Tile;
    for (int i = tid; i < 128 * 8; i += 256) {
      int r = i >> 3, c = i & 7, k = kb * 128 + c * 16;
      int at = r * 128 + ((c ^ (r & 7)) * 16);
      i64 row = rowBegin + r;
      if (row < rowEnd && k + 16 <= K)
        cpAsync16(As + at, xq + row * K + k);
      else
        *reinterpret_cast<uint4 *>(As + at) = make_uint4(0, 0, 0, 0);
      if (n0 + r < N && k + 16 <= K)
        cpAsync16(Bs + at, W + i64(n0 + r) * K + k);
      else
        *reinterpret_cast<uint4 *>(Bs + at) = make_uint4(0, 0, 0, 0);
    }
  };
  float acc[64], part[64];
#pragma unroll
  for (int i = 0; i < 64; ++i)
    acc[i] = part[i] = 0.f;
#pragma unroll
  for (int st = 0; st < DSV3_WG_STAGES - 1; ++st) {
    if (st < nb)
      stage(st, st);
    cpAsyncCommit();
  }
  const i64 r0 = rowBegin + wg * 64 + warpInWg * 16 + g, r1 = r0 + 8;
  for (int kb = 0; kb < nb; ++kb) {
    cpAsyncWait<DSV3_WG_STAGES - 2>();
    asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
    __syncthreads();
    if (kb + DSV3_WG_STAGES - 1 < nb)
      stage(kb + DSV3_WG_STAGES - 1, (kb + DSV3_WG_STAGES - 1) % DSV3_WG_STAGES);
    cpAsyncCommit();
    const unsigned char *As = smem + (kb % DSV3_WG_STAGES) * 2 * Tile + wg * 64 * 128;
    const unsigned char *Bs = smem + (kb % DSV3_WG_STAGES) * 2 * Tile + Tile;
    wgmmaFence();
    wgmmaE4m3Block(part, As, Bs);
    wgmmaCommit();
    wgmmaWait<0>();
    float s = swn[kb];
    float s0 = r0 < rowEnd ? sa[r0 * nb + kb] * s : 0.f;
    float s1 = r1 < rowEnd ? sa[r1 * nb + kb] * s : 0.f;
    promoteBlock(acc, part, s0, s1);
  }
  cpAsyncWait<0>();
  wgmmaStore<0, 128, 64>(acc, rowBegin + wg * 64, rowEnd, n0, N, b, res, y);
#else
  __trap(); // sm_90a only (the launcher checks the GPU)
#endif
}

/// The tile of an FP8 TMA GEMM block (fp8_gemm_tma, fp8_gemm_tma_wide):
/// its column tile tn, rows [rowBegin, rowEnd) and expert, with the weight
/// scales sw (and, gated, swu) moved to the expert's; false where the block
/// has no rows (a grouped grid's tiles past the last expert's).
template <int Gated>
__device__ __forceinline__ bool fp8TmaTile(int tileGroup, const i64 *counts, int E, i64 rows,
                                           int N, int br, int nb, unsigned &tn, i64 &rowBegin,
                                           i64 &rowEnd, int &expert, const float *&sw,
                                           const float *&swu) {
  if (!gemmGridTile(blockIdx.y * gridDim.x + blockIdx.x, gridDim.x, gridDim.y, tileGroup, counts,
                    E, rows, tn, rowBegin, rowEnd, expert))
    return false;
  if (counts) {
    sw += i64(expert) * ((N + br - 1) / br) * nb;
    if (Gated)
      swu += i64(expert) * ((N + br - 1) / br) * nb;
  }
  return rowBegin < rowEnd;
}

/// fp8_gemm_wgmma fed by TMA and warp-specialized (sm_90a), as
/// gemm_bf16_tma: warpgroup 0's first thread copies each 128-wide K block
/// (A: 128 rows, B: 128 weight rows, e4m3, 128B-swizzled) into one of
/// DSV3_FP8_TMA_STAGES slots, its second warp the block's scales
/// (fp8StageScales); warpgroups 1 and 2 run the block's four
/// m64n128k32 MMAs from zero, wait for them, free the slot, and promote the
/// sums to fp32 with s_a * s_w (DeepSeek-V3 3.3.2). pingpong: the two
/// consumers take turns issuing a block's MMAs (named barriers), so one's
/// wait and promotion overlap the other's MMAs (issued together, both wait
/// and promote together while the tensor cores idle). Grouped: the
/// weights' map spans [E * N, K] rows.
/// Gated: the B tile is 64 gate rows (map B, scales sw) then 64 up rows
/// (map Bu, scales swu; both maps in boxes of 64 rows), each half promoted
/// with its own weight scale, and the epilogue stores silu(gate) * up over
/// 64 output columns: one kernel for both GEMMs, no fp32 gate and up
/// written and read back by a SwiGLU pass (br % 64 == 0: a tile's rows
/// share their scales).
template <int Gated>
__global__ void __launch_bounds__(384, 1)
fp8_gemm_tma(const __grid_constant__ TmaMap mapA, const __grid_constant__ TmaMap mapB,
             const __grid_constant__ TmaMap mapBu, const float *sa, const float *sw,
             const float *swu, const float *b, const float *res, float *y, i64 rows, int N,
             int K, int br, const i64 *counts, int E, int tileGroup, int pingpong) {
#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
  constexpr int Stages = DSV3_FP8_TMA_STAGES, Tile = 128 * 128; // bytes of one operand
  constexpr int BN = Gated ? 64 : 128; // output columns of a tile
  extern __shared__ __align__(1024) float wgSmem[];
  unsigned char *smem = reinterpret_cast<unsigned char *>(
      (reinterpret_cast<unsigned long long>(wgSmem) + 1023) & ~1023ull);
  __shared__ __align__(8) unsigned long long full[Stages], empty[Stages];
  __shared__ Fp8SlotScales scales[Stages];
  const int nb = (K + 127) / 128;
  unsigned tn;
  i64 rowBegin, rowEnd;
  int expert;
  if (!fp8TmaTile<Gated>(tileGroup, counts, E, rows, N, br, nb, tn, rowBegin, rowEnd, expert,
                         sw, swu))
    return;
  const int n0 = int(tn) * BN, tid = threadIdx.x, wg = tid >> 7;
  const float *swn = sw + i64(n0 / br) * nb;
  const float *swun = Gated ? swu + i64(n0 / br) * nb : swn;
  initSlotBarriers<Stages>(full, empty, 33, 8);
  if (wg == 0) {
    if (tid >= 32 && tid < 64)
      fp8StageScales<Stages>(scales, full, empty, sa, swn, swun, rowBegin, rowEnd, nb);
    if (tid == 0) {
      const int wrow = expert * N + n0;
      for (int kb = 0; kb < nb; ++kb) {
        int s = kb % Stages;
        if (kb >= Stages)
          mbarWait(&empty[s], ((kb / Stages) - 1) & 1);
        unsigned char *As = smem + s * 2 * Tile;
        mbarExpectTx(&full[s], unsigned(2 * Tile));
        tmaLoad2d(As, &mapA, kb * 128, int(rowBegin), &full[s]);
        tmaLoad2d(As + Tile, &mapB, kb * 128, wrow, &full[s]);
        if (Gated)
          tmaLoad2d(As + Tile + 64 * 128, &mapBu, kb * 128, wrow, &full[s]);
      }
    }
    return;
  }
  const int cw = wg - 1, lane = tid & 31, warpInWg = (tid >> 5) & 3;
  const int g = lane >> 2;
  const int r0 = cw * 64 + warpInWg * 16 + g, r1 = r0 + 8; // the tile's rows
  float acc[64], part[64];
#pragma unroll
  for (int i = 0; i < 64; ++i)
    acc[i] = part[i] = 0.f;
  for (int kb = 0; kb < nb; ++kb) {
    int s = kb % Stages;
    mbarWait(&full[s], (kb / Stages) & 1);
    // The block's scales (staged by the producer's second warp), read
    // before the MMAs as in fp8_gemm_tma_wide.
    const float a0 = scales[s].a[r0], a1 = scales[s].a[r1], ws = scales[s].w[0];
    const float s0 = a0 * ws, s1 = a1 * ws;
    const float u0 = Gated ? a0 * scales[s].w[1] : 0.f, u1 = Gated ? a1 * scales[s].w[1] : 0.f;
    const unsigned char *As = smem + s * 2 * Tile + cw * 64 * 128;
    const unsigned char *Bs = smem + s * 2 * Tile + Tile;
    // pingpong: the consumers take turns issuing a block's MMAs (named
    // barrier 1: the first's turn, 2: the second's), so the tensor cores
    // finish one's block while the other promotes its own.
    if (pingpong && (cw == 1 || kb > 0))
      namedBarSync(1 + cw, 256);
    wgmmaFence();
    wgmmaE4m3Block(part, As, Bs);
    wgmmaCommit();
    if (pingpong && (cw == 0 || kb + 1 < nb))
      namedBarArrive(2 - cw, 256);
    wgmmaWait<0>();
    fp8ReleaseSlot(&empty[s]);
    if (Gated)
      promoteBlockGated(acc, part, s0, s1, u0, u1);
    else
      promoteBlock(acc, part, s0, s1);
  }
  wgmmaStore<Gated, BN, 64>(acc, rowBegin + cw * 64, rowEnd, n0, N, b, res, y);
#else
  __trap(); // sm_90a only (the launcher checks the GPU)
#endif
}

/// A gated wide tile's epilogue stored as the FP8 GEMM reading it would
/// quantize it (fp8_quantize: s = max(amax, 1e-4) / 448 over a row's 1x128
/// block, codes e4m3(v / s)): d holds one consumer's 64 rows x (128 gates,
/// 128 ups), v = silu(gate) * up as wgmmaStore computes it. A row's 128
/// columns (n0 .. n0 + 127: one scale block, N % 128 == 0) lie with the 4
/// threads of a quad (t4), 32 each: the block's amax is theirs reduced
/// over the quad. Codes yq [rows, N], scales ysa [rows, N / 128]. The same
/// values as wgmmaStore then fp8_quantize, without the float round trip.
__device__ __forceinline__ void wgmmaStoreGatedE4m3(const float (&d)[128], i64 rowBase,
                                                    i64 rowEnd, int n0, int N,
                                                    unsigned char *yq, float *ysa) {
  const int lane = threadIdx.x & 31, warpInWg = (threadIdx.x >> 5) & 3;
  const int g = lane >> 2, t4 = lane & 3;
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const i64 r = rowBase + warpInWg * 16 + g + h * 8;
    float v[32];
    float amax = 0.f;
#pragma unroll
    for (int j = 0; j < 16; ++j)
#pragma unroll
      for (int c = 0; c < 2; ++c) {
        const int e = 2 * h + c;
        const float gv = d[4 * j + e], uv = d[4 * (j + 16) + e];
        v[2 * j + c] = gv / (1.f + expf(-gv)) * uv;
        amax = fmaxf(amax, fabsf(v[2 * j + c]));
      }
    // Every lane takes part (rows past the tile's are not stored).
    amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, 1));
    amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, 2));
    const float s = fmaxf(amax, 1e-4f) / 448.0f;
    if (r >= rowEnd)
      continue;
    unsigned char *row = yq + r * N + n0 + 2 * t4;
#pragma unroll
    for (int j = 0; j < 16; ++j) {
      const unsigned q0 = floatToE4m3(v[2 * j] / s), q1 = floatToE4m3(v[2 * j + 1] / s);
      *reinterpret_cast<unsigned short *>(row + 8 * j) = (unsigned short)(q0 | (q1 << 8));
    }
    if (t4 == 0)
      ysa[r * (N / 128) + n0 / 128] = s;
  }
}

/// acc[H * 64 ..] += part * s0 (rows g) / s1 (rows g + 8): the promotion of
/// one 128-column half of a wide tile's K block (the m64n256 fragment is
/// two m64n128 ones side by side: register 64 + i is column 128 + that of i).
template <int H>
__device__ __forceinline__ void promoteHalf(float (&acc)[128], const float (&part)[64],
                                            float s0, float s1) {
#pragma unroll
  for (int j = 0; j < 16; ++j) {
    acc[H * 64 + 4 * j] += part[4 * j] * s0;
    acc[H * 64 + 4 * j + 1] += part[4 * j + 1] * s0;
    acc[H * 64 + 4 * j + 2] += part[4 * j + 2] * s1;
    acc[H * 64 + 4 * j + 3] += part[4 * j + 3] * s1;
  }
}

/// fp8_gemm_tma with 128 x 256 tiles (sm_90a): each 128-wide K block
/// brings 128 activation rows and 256 weight rows (48 KB) through L2 for
/// 8.4 MFLOP, where the 128 x 128 tiles bring 32 KB for 4.2: the
/// multiprocessors draw a quarter less from L2 per product (H200: 835 ->
/// 913 TFLOP/s at 8192 x 18432 x 7168).
/// A consumer warpgroup's block is two m64n128k32 x 4 batches, one per
/// 128-row half of the B tile, each into the same 64 partial sums, waited
/// for and promoted into its half of 128 fp32 accumulators (a m64n256
/// fragment): 192 registers of sums, so the producer warpgroup gives its
/// registers to the consumers (setmaxnreg 40 / 232). Turns (pingpong) are
/// taken per half: one consumer promotes while the other's batch runs.
/// Plain: the halves are columns n0 .. n0 + 127 and n0 + 128 .. n0 + 255,
/// each with its own weight scale (br % 128). Gated: the halves are 128
/// gate rows (map B, sw) and the same 128 up rows (map Bu, swu), the
/// epilogue storing silu(gate) * up over 128 columns (br % 128).
/// Each output is the same products summed in the same order as in
/// fp8_gemm_tma (a block's four k32 MMAs, then its promotion); the scales
/// staged in the slots as there (fp8StageScales).
/// Form: 0 plain, 1 gated, 3 gated storing e4m3 codes into y and their
/// 1x128 scales into ysa (wgmmaStoreGatedE4m3: N % 128 == 0). storeByTma
/// (plain, no bias or residual): whole tiles stored through shared memory
/// by TMA (mapY: y as fp32 [rows, N], boxes of 32 x 128; wgmmaStoreWideByTma).
/// Form 4: plain, kv_b_proj of one sequence (N = NH x 256: a tile is a
/// head's 128 key and 128 value columns) stored as the prefill attention's
/// keys and transposed values (kvOut, wgmmaStoreMlaKv), no fp32 output.
template <int Form>
__global__ void __launch_bounds__(384, 1)
fp8_gemm_tma_wide(const __grid_constant__ TmaMap mapA, const __grid_constant__ TmaMap mapB,
                  const __grid_constant__ TmaMap mapBu, const float *sa, const float *sw,
                  const float *swu, const float *b, const float *res, float *y, float *ysa,
                  i64 rows, int N, int K, int br, const i64 *counts, int E, int tileGroup,
                  int pingpong, const __grid_constant__ TmaMap mapY, int storeByTma,
                  const MlaKvOut kvOut) {
#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
  constexpr int Gated = Form & 1;
  constexpr int Stages = DSV3_FP8_WIDE_STAGES, TileA = 128 * 128, TileB = 256 * 128;
  constexpr int BN = Gated ? 128 : 256; // output columns of a tile
  static_assert(Stages * (TileA + TileB) >= 128 * 256 * 4,
                "wgmmaStoreWideByTma's fp32 tile fits in the slots");
  extern __shared__ __align__(1024) float wgSmem[];
  unsigned char *smem = reinterpret_cast<unsigned char *>(
      (reinterpret_cast<unsigned long long>(wgSmem) + 1023) & ~1023ull);
  __shared__ __align__(8) unsigned long long full[Stages], empty[Stages];
  __shared__ Fp8SlotScales scales[Stages];
  const int nb = (K + 127) / 128;
  unsigned tn;
  i64 rowBegin, rowEnd;
  int expert;
  if (!fp8TmaTile<Gated>(tileGroup, counts, E, rows, N, br, nb, tn, rowBegin, rowEnd, expert,
                         sw, swu))
    return;
  const int n0 = int(tn) * BN, tid = threadIdx.x, wg = tid >> 7;
  // The halves' weight scales: plain, the scale blocks of columns n0 and
  // n0 + 128 (the second clamped to the last block where it is past N:
  // its columns are never stored); gated, the gate's and the up's.
  const int nBlocks = (N + br - 1) / br;
  const float *sw0 = sw + i64(n0 / br) * nb;
  const float *sw1 = Gated ? swu + i64(n0 / br) * nb
                           : sw + i64(min((n0 + 128) / br, nBlocks - 1)) * nb;
  initSlotBarriers<Stages>(full, empty, 33, 8);
  if (wg == 0) {
    asm volatile("setmaxnreg.dec.sync.aligned.u32 40;\n" ::: "memory");
    if (tid >= 32 && tid < 64)
      fp8StageScales<Stages>(scales, full, empty, sa, sw0, sw1, rowBegin, rowEnd, nb);
    if (tid == 0) {
      const int wrow = expert * N + n0;
      for (int kb = 0; kb < nb; ++kb) {
        int s = kb % Stages;
        if (kb >= Stages)
          mbarWait(&empty[s], ((kb / Stages) - 1) & 1);
        unsigned char *As = smem + s * (TileA + TileB), *Bs = As + TileA;
        mbarExpectTx(&full[s], unsigned(TileA + TileB));
        tmaLoad2d(As, &mapA, kb * 128, int(rowBegin), &full[s]);
        tmaLoad2d(Bs, &mapB, kb * 128, wrow, &full[s]);
        if (Gated)
          tmaLoad2d(Bs + TileB / 2, &mapBu, kb * 128, wrow, &full[s]);
        else
          tmaLoad2d(Bs + TileB / 2, &mapB, kb * 128, wrow + 128, &full[s]);
      }
    }
    return;
  }
  asm volatile("setmaxnreg.inc.sync.aligned.u32 232;\n" ::: "memory");
  const int cw = wg - 1, lane = tid & 31, warpInWg = (tid >> 5) & 3;
  const int g = lane >> 2;
  const int r0 = cw * 64 + warpInWg * 16 + g, r1 = r0 + 8; // the tile's rows
  float acc[128], part[64];
#pragma unroll
  for (int i = 0; i < 128; ++i)
    acc[i] = 0.f;
#pragma unroll
  for (int i = 0; i < 64; ++i)
    part[i] = 0.f;
  // Turn t = 2 kb + h: the first consumer issues each half's batch, then
  // the second (named barrier 1: the first's turn, 2: the second's).
  const int turns = 2 * nb;
  // A consumer whose 64 rows all lie past the tile's (an expert's last
  // tile of 64 rows or fewer: in the 4 x 2048 prefill about every other
  // expert's, at decode-sized batches nearly every tile) issues no MMAs:
  // it waits for each slot, takes its turns and frees the slot, so the
  // phases and the other consumer's turns run as before. Warpgroup-uniform,
  // and a branch around the whole K loop (MMAs under a branch inside it
  // are serialized by ptxas): its own loop, the live one's turns and slot
  // hand-offs without the MMAs.
  if (rowBegin + cw * 64 >= rowEnd) {
    for (int kb = 0; kb < nb; ++kb) {
      const int s = kb % Stages, t = 2 * kb;
      mbarWait(&full[s], (kb / Stages) & 1);
      if (pingpong) {
        if (cw == 1 || t > 0)
          namedBarSync(1 + cw, 256);
        if (cw == 0 || t + 1 < turns)
          namedBarArrive(2 - cw, 256);
        namedBarSync(1 + cw, 256);
        if (cw == 0 || t + 2 < turns)
          namedBarArrive(2 - cw, 256);
      }
      fp8ReleaseSlot(&empty[s]);
    }
    return; // no rows to store
  }
  for (int kb = 0; kb < nb; ++kb) {
    int s = kb % Stages;
    mbarWait(&full[s], (kb / Stages) & 1);
    // The block's scales (staged by the producer's second warp) read
    // before the MMAs are issued, so the shared loads' latency and the
    // products below run under the MMAs rather than after the wait
    // (DeepGEMM's order; H200: 8192 x 7168 x 16384 866 -> 887 TFLOP/s,
    // 8192 x 18432 x 7168 951 -> 967, FP8 prefill 4 x 2048 56.74 -> 56.18
    // ms, 1 x 2048 17.50 -> 17.27; the same sums, bitwise-equal logits).
    const float a0 = scales[s].a[r0], a1 = scales[s].a[r1];
    const float ws0 = scales[s].w[0], ws1 = scales[s].w[1];
    const float c0 = a0 * ws0, c1 = a1 * ws0, d0 = a0 * ws1, d1 = a1 * ws1;
    const unsigned char *As = smem + s * (TileA + TileB) + cw * 64 * 128;
    const unsigned char *Bs = smem + s * (TileA + TileB) + TileA;
    // Half 0.
    int t = 2 * kb;
    if (pingpong && (cw == 1 || t > 0))
      namedBarSync(1 + cw, 256);
    wgmmaFence();
    wgmmaE4m3Block(part, As, Bs);
    wgmmaCommit();
    if (pingpong && (cw == 0 || t + 1 < turns))
      namedBarArrive(2 - cw, 256);
    wgmmaWait<0>();
    promoteHalf<0>(acc, part, c0, c1);
    // Half 1.
    ++t;
    if (pingpong)
      namedBarSync(1 + cw, 256);
    wgmmaFence();
    wgmmaE4m3Block(part, As, Bs + TileB / 2);
    wgmmaCommit();
    if (pingpong && (cw == 0 || t + 1 < turns))
      namedBarArrive(2 - cw, 256);
    wgmmaWait<0>();
    fp8ReleaseSlot(&empty[s]);
    promoteHalf<1>(acc, part, d0, d1);
  }
  if constexpr (Form == 3) {
    wgmmaStoreGatedE4m3(acc, rowBegin + cw * 64, rowEnd, n0, N,
                        reinterpret_cast<unsigned char *>(y), ysa);
  } else if constexpr (Form == 4) {
    wgmmaStoreMlaKv(acc, rowBegin + cw * 64, rowEnd, n0, kvOut);
  } else {
    // storeByTma (the launcher: no bias, no residual) on whole tiles (the
    // tile's 128 rows all before rowEnd, the expert's or the matrix's end:
    // both consumers live); a block-uniform test, so both meet at the
    // store's barriers.
    if (Form == 0 && storeByTma && rowEnd - rowBegin >= 128)
      wgmmaStoreWideByTma(acc, smem, &mapY, n0, N, rowBegin);
    else
      wgmmaStore<Gated, BN, 128>(acc, rowBegin + cw * 64, rowEnd, n0, N, b, res, y);
  }
#else
  __trap(); // sm_90a only (the launcher checks the GPU)
#endif
}

/// The FP8 GEMM of many rows (prefill) on tensor cores: 128 x 128 output
/// tiles, 16 warps of 32 x 32 (the per-block partial sums and the fp32
/// accumulators of a 64 x 32 warp tile took all 255 registers and
/// spilled), K in 128-wide blocks copied to shared memory by cp.async two
/// blocks ahead of the MMAs (three stages), fragments by ldmatrix; each
/// block's MMA sums scaled by s_a * s_w and added in fp32 (br a multiple
/// of 128: a tile's columns share a scale; PerRow: br 1, a scale per weight
/// row, its own instance: the promotion's extra loads would make the other
/// spill). Dynamic shared memory: 3 stages
/// x 2 operands x 128 x 144 bytes (rows padded: conflict-free ldmatrix).
/// Grouped (counts != null): blockIdx.y enumerates every expert's 128-row
/// tiles (gridDim.y >= rows / 128 + E).
/// PerRow 2: FP8 training's weight gradients of all routed experts in one
/// launch (fp8WgradGrouped): a scale per weight row as PerRow 1, expert
/// blockIdx.z summing only its own K blocks (its 128-token tiles among
/// every expert's, expertTileRange over counts; K = all tiles' tokens, the
/// operands padded with zeros to whole tiles) into y + e * rows * N.
template <int PerRow>
__global__ void __launch_bounds__(512)
fp8_gemm_tc(const unsigned char *xq, const float *sa, const unsigned char *W, const float *sw,
            const float *b, const float *res, float *y, i64 rows, int N, int K, int br,
            const i64 *counts, int E, int tileGroup) {
  constexpr int Ld = 144, Tile = 128 * Ld, Threads = 512;
  extern __shared__ __align__(16) float fp8Smem[]; // bytes; float-typed as the others
  unsigned char *smem = reinterpret_cast<unsigned char *>(fp8Smem);
  int nb = (K + 127) / 128;
  unsigned tn, tm;
  gemmTile(tileGroup, tn, tm);
  i64 rowBegin = i64(tm) * 128, rowEnd = rows;
  int kbBegin = 0, kbEnd = nb;
  if (PerRow == 2) {
    expertTileRange(counts, 128, int(blockIdx.z), kbBegin, kbEnd);
    y += i64(blockIdx.z) * rows * N;
    if (res)
      res += i64(blockIdx.z) * rows * N;
  } else if (counts) {
    int e = 0;
    if (!expertTile(counts, E, 128, tm, rowBegin, rowEnd, e))
      return;
    W += i64(e) * N * K;
    sw += i64(e) * ((N + br - 1) / br) * nb;
  }
  if (rowBegin >= rowEnd)
    return;
  const int kbs = kbEnd - kbBegin;
  int n0 = int(tn) * 128, tid = threadIdx.x;
  int warp = tid >> 5, lane = tid & 31, g = lane >> 2, t4 = lane & 3;
  int wm = (warp >> 2) * 32, wn = (warp & 3) * 32;
  const float *swn = sw + i64(n0 / br) * nb;
  auto stage = [&](int kb, int st) {
    unsigned char *As = smem + st * 2 * Tile, *Bs = As + Tile;
    for (int i = tid; i < 128 * 8; i += Threads) {
      int rr = i >> 3, c = (i & 7) * 16, k = kb * 128 + c;
      i64 row = rowBegin + rr;
      if (row < rowEnd && k + 16 <= K)
        cpAsync16(As + rr * Ld + c, xq + row * K + k);
      else
        *reinterpret_cast<uint4 *>(As + rr * Ld + c) = make_uint4(0, 0, 0, 0);
      if (n0 + rr < N && k + 16 <= K)
        cpAsync16(Bs + rr * Ld + c, W + i64(n0 + rr) * K + k);
      else
        *reinterpret_cast<uint4 *>(Bs + rr * Ld + c) = make_uint4(0, 0, 0, 0);
    }
  };
  float acc[2][4][4], part[2][4][4];
#pragma unroll
  for (int i = 0; i < 2; ++i)
#pragma unroll
    for (int j = 0; j < 4; ++j)
#pragma unroll
      for (int q = 0; q < 4; ++q)
        acc[i][j][q] = 0.f;
  // One commit group per K block (empty past the end): wait<STAGES-2>
  // means block kb landed.
#pragma unroll
  for (int st = 0; st < DSV3_FP8_TC_STAGES - 1; ++st) {
    if (st < kbs)
      stage(kbBegin + st, st);
    cpAsyncCommit();
  }
  // ldmatrix (b16 units = byte pairs): A x4 = rows wm + i*16 + (lane & 15),
  // bytes (lane >> 4) * 16: a0..a3 of m16n8k32; B x4 = rows wn + j*8 +
  // (lane >> 4) * 8 + (lane & 7), bytes ((lane >> 3) & 1) * 16: b0, b1 of
  // column tiles j and j + 1.
  const int aRow = lane & 15, aCol = (lane >> 4) * 16;
  const int bRow = (lane >> 4) * 8 + (lane & 7), bCol = ((lane >> 3) & 1) * 16;
  for (int kb = kbBegin; kb < kbEnd; ++kb) {
    const int it = kb - kbBegin; // the stages count from the first block
    cpAsyncWait<DSV3_FP8_TC_STAGES - 2>();
    __syncthreads();
    if (kb + DSV3_FP8_TC_STAGES - 1 < kbEnd)
      stage(kb + DSV3_FP8_TC_STAGES - 1, (it + DSV3_FP8_TC_STAGES - 1) % DSV3_FP8_TC_STAGES);
    cpAsyncCommit();
    const unsigned char *As = smem + (it % DSV3_FP8_TC_STAGES) * 2 * Tile, *Bs = As + Tile;
#pragma unroll
    for (int i = 0; i < 2; ++i)
#pragma unroll
      for (int j = 0; j < 4; ++j)
#pragma unroll
        for (int q = 0; q < 4; ++q)
          part[i][j][q] = 0.f;
#pragma unroll
    for (int ks = 0; ks < 128; ks += 32) {
      unsigned a[2][4], bw[4][2];
#pragma unroll
      for (int i = 0; i < 2; ++i)
        ldmatrixX4(a[i], reinterpret_cast<const unsigned short *>(
                             As + (wm + i * 16 + aRow) * Ld + ks + aCol));
#pragma unroll
      for (int j = 0; j < 4; j += 2) {
        unsigned r4[4];
        ldmatrixX4(r4, reinterpret_cast<const unsigned short *>(
                           Bs + (wn + j * 8 + bRow) * Ld + ks + bCol));
        bw[j][0] = r4[0];
        bw[j][1] = r4[1];
        bw[j + 1][0] = r4[2];
        bw[j + 1][1] = r4[3];
      }
#pragma unroll
      for (int i = 0; i < 2; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j)
          mmaE4m3(part[i][j], a[i], bw[j]);
    }
    if constexpr (PerRow >= 1) {
      // A scale per weight row (br 1; FP8 training's weight gradient: x^T
      // in 128 x 1 tiles): each column its own, multiplied into s_a first
      // as a block's one is.
#pragma unroll
      for (int i = 0; i < 2; ++i) {
        i64 r0 = rowBegin + wm + i * 16 + g, r1 = r0 + 8;
        float a0 = r0 < rowEnd ? sa[r0 * nb + kb] : 0.f;
        float a1 = r1 < rowEnd ? sa[r1 * nb + kb] : 0.f;
#pragma unroll
        for (int j = 0; j < 4; ++j) {
          const int c = n0 + wn + j * 8 + 2 * t4;
          float w0 = c < N ? sw[i64(c) * nb + kb] : 0.f;
          float w1 = c + 1 < N ? sw[i64(c + 1) * nb + kb] : 0.f;
          acc[i][j][0] += part[i][j][0] * (a0 * w0);
          acc[i][j][1] += part[i][j][1] * (a0 * w1);
          acc[i][j][2] += part[i][j][2] * (a1 * w0);
          acc[i][j][3] += part[i][j][3] * (a1 * w1);
        }
      }
      continue;
    }
    float s = swn[kb];
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      i64 r0 = rowBegin + wm + i * 16 + g, r1 = r0 + 8;
      float s0 = r0 < rowEnd ? sa[r0 * nb + kb] * s : 0.f;
      float s1 = r1 < rowEnd ? sa[r1 * nb + kb] * s : 0.f;
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        acc[i][j][0] += part[i][j][0] * s0;
        acc[i][j][1] += part[i][j][1] * s0;
        acc[i][j][2] += part[i][j][2] * s1;
        acc[i][j][3] += part[i][j][3] * s1;
      }
    }
  }
  cpAsyncWait<0>();
#pragma unroll
  for (int i = 0; i < 2; ++i)
#pragma unroll
    for (int j = 0; j < 4; ++j)
#pragma unroll
      for (int q = 0; q < 4; ++q) {
        i64 r = rowBegin + wm + i * 16 + g + (q >= 2 ? 8 : 0);
        int n = n0 + wn + j * 8 + t4 * 2 + (q & 1);
        if (r < rowEnd && n < N)
          fp8Store(y, b, res, r, n, N, acc[i][j][q]);
      }
}

/// The FP8 GEMM of few rows on tensor cores (decode): a warp per 8 output
/// columns and 16 rows (rows past the tile's end are zeros), its weights
/// read straight from global memory in MMA fragment order (32 bytes a
/// column per 32-wide K step), the activations as e4m3 codes. Each 128-wide
/// K block's partial sums are scaled by s_a * s_w and added in fp32, as in
/// fp8_gemm_tc. blockIdx.y: 16-row tiles (grouped: every expert's, rows
/// grouped by expert); blockIdx.z: a K range of kPer 128-wide blocks, whose
/// sums go to part[z] for fp8_splitk_reduce when gridDim.z > 1.
template <int Unused>
__global__ void __launch_bounds__(256)
fp8_gemm_skinny(const unsigned char *xq, const float *sa, const unsigned char *W,
                const float *sw, const float *b, const float *res, float *y, i64 rows, int N,
                int K, int br, const i64 *counts, int E, int kPer, float *part) {
  int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t4 = lane & 3;
  int n0 = (blockIdx.x * (blockDim.x >> 5) + warp) * 8;
  if (n0 >= N)
    return;
  int nb = (K + 127) / 128;
  i64 rowBegin = i64(blockIdx.y) * 16, rowEnd = rows;
  if (counts) {
    int e = 0;
    if (!expertTile(counts, E, 16, blockIdx.y, rowBegin, rowEnd, e))
      return;
    W += i64(e) * N * K;
    sw += i64(e) * ((N + br - 1) / br) * nb;
  }
  if (rowBegin >= rowEnd)
    return;
  i64 ra = rowBegin + g, rb = ra + 8;
  bool va = ra < rowEnd, vb = rb < rowEnd;
  int n = n0 + g;
  bool vn = n < N;
  const unsigned char *xa = xq + (va ? ra : rowBegin) * K, *xb = xq + (vb ? rb : rowBegin) * K;
  const unsigned char *wn = W + i64(vn ? n : n0) * K;
  const float *swn = sw + i64(n0 / br) * nb;
  int kb0 = blockIdx.z * kPer, kb1 = kb0 + kPer < nb ? kb0 + kPer : nb;
  float acc[4] = {0.f, 0.f, 0.f, 0.f};
#pragma unroll 2
  for (int kb = kb0; kb < kb1; ++kb) {
    float pt[4] = {0.f, 0.f, 0.f, 0.f};
    unsigned a[4][4], bw[4][2];
    // Every load of the block first (the scales too: nothing waits on the
    // MMAs but the final sums).
    float s = swn[kb];
    float s0 = va ? sa[ra * nb + kb] * s : 0.f, s1 = vb ? sa[rb * nb + kb] * s : 0.f;
#pragma unroll
    for (int st = 0; st < 4; ++st) {
      int k = kb * 128 + st * 32 + t4 * 4;
      bool in = kb * 128 + st * 32 < K; // K % 32 == 0: whole 32-wide steps
      a[st][0] = va && in ? *reinterpret_cast<const unsigned *>(xa + k) : 0u;
      a[st][1] = vb && in ? *reinterpret_cast<const unsigned *>(xb + k) : 0u;
      a[st][2] = va && in ? *reinterpret_cast<const unsigned *>(xa + k + 16) : 0u;
      a[st][3] = vb && in ? *reinterpret_cast<const unsigned *>(xb + k + 16) : 0u;
      bw[st][0] = vn && in ? *reinterpret_cast<const unsigned *>(wn + k) : 0u;
      bw[st][1] = vn && in ? *reinterpret_cast<const unsigned *>(wn + k + 16) : 0u;
    }
#pragma unroll
    for (int st = 0; st < 4; ++st)
      mmaE4m3(pt, a[st], bw[st]);
    acc[0] += pt[0] * s0;
    acc[1] += pt[1] * s0;
    acc[2] += pt[2] * s1;
    acc[3] += pt[3] * s1;
  }
  bool split = gridDim.z > 1;
  float *out = split ? part + i64(blockIdx.z) * rows * N : y;
#pragma unroll
  for (int q = 0; q < 4; ++q) {
    i64 r = q < 2 ? ra : rb;
    int c = n0 + t4 * 2 + (q & 1);
    if ((q < 2 ? va : vb) && c < N) // split: the reduce adds b and res
      fp8Store(out, split ? nullptr : b, split ? nullptr : res, r, c, N, acc[q]);
  }
}

/// y = sum over the K splits of fp8_gemm_skinny (fixed order) + b + res.
template <int Unused>
__global__ void fp8_splitk_reduce(const float *part, int splits, const float *b,
                                  const float *res, float *y, i64 rows, int N) {
  for (i64 i = i64(blockIdx.x) * blockDim.x + threadIdx.x; i < rows * N;
       i += i64(gridDim.x) * blockDim.x) {
    float v = 0.f;
    for (int z = 0; z < splits; ++z)
      v += part[i64(z) * rows * N + i];
    if (b)
      v += b[i % N];
    if (res)
      v += res[i];
    y[i] = v;
  }
}

/// An FP8 weight [E, N, K] dequantized into the compute dtype (the
/// absorbed decode reads kv_b so, as the official inference does).
template <typename WT>
__global__ void fp8_dequantize(const unsigned char *W, const float *sw, WT *out, i64 n, int N,
                               int K, int br, int bc) {
  int sc = (K + bc - 1) / bc, sr = (N + br - 1) / br;
  for (i64 i = i64(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += i64(gridDim.x) * blockDim.x) {
    i64 e = i / (i64(N) * K), rem = i % (i64(N) * K);
    int r = int(rem / K), c = int(rem % K);
    storeWeight(out + i, e4m3ToFloat(W[i]) * sw[e * sr * sc + (r / br) * sc + c / bc]);
  }
}

/// FP8 weights from fp32 ones (dsv3-run --random-weights; FP8 training's
/// master weights each step): w [E, N, K] quantized per [br, bc] block, a
/// CUDA block per weight block: scale = amax / 448 (1 for zeros), codes =
/// e4m3(w / scale), scales [E, ceil(N / br), ceil(K / bc)]. With codesT,
/// also the transposed codes [E, K, N] and scales [E, ceil(K / bc),
/// ceil(N / br)]: the same blocks as the weight of the input gradient's
/// GEMM (dx = dy W, which contracts over N).
template <int Unused>
__global__ void fp8_quantize_blocks(const float *w, unsigned char *codes, float *scales, int N,
                                    int K, int br, int bc, unsigned char *codesT = nullptr,
                                    float *scalesT = nullptr) {
  int sc = (K + bc - 1) / bc, sr = (N + br - 1) / br;
  i64 blk = blockIdx.x, e = blk / (i64(sr) * sc);
  int bi = int((blk / sc) % sr), bj = int(blk % sc);
  const float *we = w + e * N * K;
  float amax = 0.f;
  for (int i = threadIdx.x; i < br * bc; i += blockDim.x) {
    int r = bi * br + i / bc, c = bj * bc + i % bc;
    if (r < N && c < K)
      amax = fmaxf(amax, fabsf(we[i64(r) * K + c]));
  }
  __shared__ float part[32];
  amax = warpMax(amax);
  if ((threadIdx.x & 31) == 0)
    part[threadIdx.x >> 5] = amax;
  __syncthreads();
  amax = 0.f;
  for (int i = 0; i < int(blockDim.x >> 5); ++i)
    amax = fmaxf(amax, part[i]);
  float s = amax > 0.f ? amax / 448.0f : 1.0f;
  // The transposed codes go through shared memory (blocks up to 128 x
  // 128): written straight, a warp's 32 bytes land N apart, a sector each.
  __shared__ unsigned char tile[128 * 129];
  const bool staged = codesT && br <= 128 && bc <= 128;
  for (int i = threadIdx.x; i < br * bc; i += blockDim.x) {
    int rr = i / bc, cc = i % bc, r = bi * br + rr, c = bj * bc + cc;
    if (r < N && c < K) {
      const unsigned char q = (unsigned char)floatToE4m3(we[i64(r) * K + c] / s);
      codes[e * N * K + i64(r) * K + c] = q;
      if (staged)
        tile[cc * (br + 1) + rr] = q;
      else if (codesT)
        codesT[e * N * K + i64(c) * N + r] = q;
    }
  }
  if (staged) {
    __syncthreads();
    for (int i = threadIdx.x; i < br * bc; i += blockDim.x) {
      int cc = i / br, rr = i % br, r = bi * br + rr, c = bj * bc + cc;
      if (r < N && c < K)
        codesT[e * N * K + i64(c) * N + r] = tile[cc * (br + 1) + rr];
    }
  }
  if (threadIdx.x == 0) {
    scales[blk] = s;
    if (scalesT)
      scalesT[e * sr * sc + i64(bj) * sr + bi] = s;
  }
}

/// FP8 training's weight-gradient operands (DeepSeek-V3 3.3: the
/// backward's 128 x 1 tiles): x [R, C] (rows ldx apart) quantized per
/// column over each tile of 128 rows as fp8_quantize does a 1 x 128 block
/// (s = max(amax, 1e-4) / 448, codes e4m3(x / s)), stored transposed:
/// codes xqT [C, ldT] with scales saT [C, tiles] (tiles = gridDim.y: what
/// fp8_quantize gives for the [C, R] matrix, so the FP8 GEMMs read them as
/// rows), and/or the quantized values xdT [C, ldT] as floats; a tile's
/// rows past the data (up to ldT) are zeros, padding the GEMM's K to whole
/// tiles. With counts (the routed experts' rows, grouped by expert) the
/// tiles are every expert's, as expertTile numbers them. A block of 256
/// threads per tile of 128 rows x 32 columns, through shared memory
/// (coalesced reads along the columns, writes along the rows).
template <int Unused>
__global__ void __launch_bounds__(256)
    fp8_quantize_columns(const float *x, i64 ldx, unsigned char *xqT, float *saT, float *xdT,
                         i64 R, i64 ldT, int C, const i64 *counts = nullptr, int E = 0) {
  __shared__ float tile[128][33];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  // Tile t (blockIdx.y) of the rows, or with counts of every expert's rows
  // (grouped: each expert's tiles start at its first row; its codes go to
  // columns t * 128.. of the transposed matrix, gridDim.y >= R / 128 + E).
  const i64 t = blockIdx.y, out0 = t * 128;
  i64 r0 = out0, end = R;
  if (counts) {
    int e = 0;
    if (!expertTile(counts, E, 128, t, r0, end, e))
      return;
  }
  const int c0 = blockIdx.x * 32, valid = int(end - r0 < 128 ? end - r0 : 128);
  for (int r = warp; r < 128; r += 8)
    tile[r][lane] = r < valid && c0 + lane < C ? x[(r0 + r) * ldx + c0 + lane] : 0.f;
  __syncthreads();
  const i64 tiles = gridDim.y;
  // Rows (tokens) written: the valid ones, then zeros up to ldT.
  const int written = int(ldT - out0 < 128 ? ldT - out0 : 128);
  for (int cc = warp; cc < 32 && c0 + cc < C; cc += 8) {
    float v[4], amax = 0.f;
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      v[i] = tile[lane * 4 + i][cc];
      amax = fmaxf(amax, fabsf(v[i]));
    }
    amax = fmaxf(warpMax(amax), 1e-4f);
    const float s = amax / 448.0f;
    const i64 row = i64(c0 + cc) * ldT + out0;
#pragma unroll
    for (int i = 0; i < 4; ++i)
      if (lane * 4 + i < written) {
        const unsigned q = floatToE4m3(v[i] / s);
        if (xqT)
          xqT[row + lane * 4 + i] = (unsigned char)q;
        if (xdT)
          xdT[row + lane * 4 + i] = e4m3ToFloat(q) * s;
      }
    if (lane == 0 && saT)
      saT[i64(c0 + cc) * tiles + t] = s;
  }
}

} // namespace dsv3
