// dsv3_train_kernels.cuh - the backward (vjp) and optimizer kernels of
// train_step.
//
// Appended to dsv3_kernels.cuh (it uses that file's helpers: blockSum,
// blockMax, warpSum). Extents are runtime arguments: one instance serves
// every width, so a training artifact adds a handful of instances. fp32
// storage and accumulation, deterministic (no atomics: each output has one
// writer, reductions run in a fixed order), so a resumed run repeats an
// uninterrupted one bit for bit. This is the correctness baseline of GPU
// training; tensor-core GEMMs and fused flash-style attention backward are
// later schedules checked against it.

namespace dsv3 {

/// C (+)= A B with A(m, k) = A[m sam + k sak], B(k, n) = B[k sbk + n sbn]
/// and C row-major (ldc): every transpose of a GEMM by strides. 64 x 64
/// output tiles, K in 16-wide shared-memory steps, 256 threads of 4 x 4.
/// Mode 0: batch blockIdx.z at strides sAb / sBb / sCb.
/// Mode 1 (expert dgrad): the M rows are grouped by expert, group e being
///   rows [seg[e], seg[e + 1]), multiplied by B + e sBb; a tile spanning
///   several groups runs each group's K loop with the other rows masked.
/// Mode 2 (expert wgrad): batch z = expert e sums K over its rows
///   [seg[e], seg[e + 1]) only; C at z sCb.
template <int Mode, int Accumulate>
__global__ void gemm_any(const float *A, i64 sam, i64 sak, i64 sAb, const float *B,
                         i64 sbk, i64 sbn, i64 sBb, float *C, i64 ldc, i64 sCb, i64 M,
                         i64 N, i64 K, const i64 *seg, i64 segs) {
  __shared__ float As[16][68];
  __shared__ float Bs[16][68];
  i64 m0 = i64(blockIdx.y) * 64, n0 = i64(blockIdx.x) * 64, z = blockIdx.z;
  if (m0 >= M)
    return;
  int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
  float acc[4][4];
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int j = 0; j < 4; ++j)
      acc[i][j] = 0.f;
  const float *Ab = A, *Bb = B;
  float *Cb = C;
  i64 kCount = K;
  if (Mode == 0) {
    Ab += z * sAb;
    Bb += z * sBb;
    Cb += z * sCb;
  } else if (Mode == 2) {
    i64 k0 = seg[z];
    kCount = seg[z + 1] - k0;
    Ab += k0 * sak;
    Bb += k0 * sbk;
    Cb += z * sCb;
  }
  auto run = [&](const float *a, const float *b, i64 rowLo, i64 rowHi) {
    for (i64 k0 = 0; k0 < kCount; k0 += 16) {
      for (int l = threadIdx.x; l < 1024; l += 256) {
        int mm = sak == 1 ? l / 16 : l % 64, ka = sak == 1 ? l % 16 : l / 64;
        i64 m = m0 + mm, k = k0 + ka;
        As[ka][mm] = m >= rowLo && m < rowHi && k < kCount ? a[m * sam + k * sak] : 0.f;
        int nn = sbn == 1 ? l % 64 : l / 16, kb = sbn == 1 ? l / 64 : l % 16;
        i64 n = n0 + nn, kk = k0 + kb;
        Bs[kb][nn] = n < N && kk < kCount ? b[kk * sbk + n * sbn] : 0.f;
      }
      __syncthreads();
#pragma unroll
      for (int kk = 0; kk < 16; ++kk) {
        float av[4], bv[4];
#pragma unroll
        for (int i = 0; i < 4; ++i) {
          av[i] = As[kk][ty + 16 * i];
          bv[i] = Bs[kk][tx + 16 * i];
        }
#pragma unroll
        for (int i = 0; i < 4; ++i)
#pragma unroll
          for (int j = 0; j < 4; ++j)
            acc[i][j] += av[i] * bv[j];
      }
      __syncthreads();
    }
  };
  if (Mode == 1) {
    // The groups overlapping rows [m0, m0 + 64), in order (uniform).
    i64 e = 0;
    while (e < segs && seg[e + 1] <= m0)
      ++e;
    for (; e < segs && seg[e] < m0 + 64; ++e)
      if (seg[e + 1] > seg[e])
        run(Ab, Bb + e * sBb, seg[e], seg[e + 1]);
  } else {
    run(Ab, Bb, 0, M);
  }
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    i64 m = m0 + ty + 16 * i;
    if (m >= M)
      continue;
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      i64 n = n0 + tx + 16 * j;
      if (n < N) {
        float *c = Cb + m * ldc + n;
        *c = Accumulate ? *c + acc[i][j] : acc[i][j];
      }
    }
  }
}

/// `gemm_any` on tensor cores: the same strided operands and modes, with
/// an optional epilogue C = acc (+ bias[n]) (+ res[m, n], rows ldc apart)
/// for the forward GEMMs of fp32 models. 3xTF32 (mma.sync m16n8k8 tf32):
/// each fp32 operand is split as big + small, both tf32 (11 significant
/// bits each, so big + small holds ~22 of the 24), and small.big +
/// big.small + big.big are summed in fp32: products within ~2^-21 of fp32's
/// (the fp32 checks keep their 1e-5 / 1e-4 tolerances) at three times the
/// TF32 tensor work, an order of magnitude above the fp32 CUDA-core rate;
/// each 32-wide k-tile is summed apart and added on the CUDA cores.
/// (A split into bf16 halves, as linear_mma does for bf16 weights, keeps
/// only ~16 bits of fp32 operands: 2e-5 drift between the naive and
/// absorbed attention paths, over the 1e-5 they are held to.) Tiles: 64 x
/// 64 x 32 per block, 4 warps of 32 x 32; A staged [m][k] and B [n][k] in
/// shared memory, rows of 36 floats (conflict-free fragment loads), each
/// operand loaded along whichever of its strides is 1 (coalesced).
#define DSV3_TF32_LD 36
__device__ __forceinline__ unsigned tf32Bits(float v) {
  unsigned r;
  asm("cvt.rna.tf32.f32 %0, %1;\n" : "=r"(r) : "f"(v));
  return r;
}
__device__ __forceinline__ void mmaTf32(float *c, const unsigned *a, const unsigned *b) {
  asm volatile("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 "
               "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
               : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

template <int Mode, int Accumulate>
__global__ void gemm_mma(const float *A, i64 sam, i64 sak, i64 sAb, const float *B, i64 sbk,
                         i64 sbn, i64 sBb, float *C, i64 ldc, i64 sCb, i64 M, i64 N, i64 K,
                         const i64 *seg, i64 segs, const float *bias, const float *res) {
  __shared__ __align__(16) unsigned abig[DSV3_MMA_BM * DSV3_TF32_LD];
  __shared__ __align__(16) unsigned asmall[DSV3_MMA_BM * DSV3_TF32_LD];
  __shared__ __align__(16) unsigned bbig[DSV3_MMA_BN * DSV3_TF32_LD];
  __shared__ __align__(16) unsigned bsmall[DSV3_MMA_BN * DSV3_TF32_LD];
  i64 m0 = i64(blockIdx.y) * DSV3_MMA_BM, n0 = i64(blockIdx.x) * DSV3_MMA_BN, z = blockIdx.z;
  if (m0 >= M)
    return;
  int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  int wm = warp >> 1, wn = warp & 1, g = lane >> 2, q = lane & 3;
  float acc[2][4][4];
#pragma unroll
  for (int a = 0; a < 2; ++a)
#pragma unroll
    for (int b = 0; b < 4; ++b)
#pragma unroll
      for (int e = 0; e < 4; ++e)
        acc[a][b][e] = 0.f;
  const float *Ab = A, *Bb = B;
  float *Cb = C;
  i64 kCount = K;
  if (Mode == 0) {
    Ab += z * sAb;
    Bb += z * sBb;
    Cb += z * sCb;
  } else if (Mode == 2) {
    i64 k0 = seg[z];
    kCount = seg[z + 1] - k0;
    Ab += k0 * sak;
    Bb += k0 * sbk;
    Cb += z * sCb;
  }
  auto split = [](float v, unsigned *big, unsigned *small, int at) {
    unsigned b = tf32Bits(v);
    big[at] = b;
    small[at] = tf32Bits(v - __uint_as_float(b));
  };
  auto run = [&](const float *a, const float *b, i64 rowLo, i64 rowHi) {
    for (i64 k0 = 0; k0 < kCount; k0 += DSV3_MMA_BK) {
      __syncthreads();
      for (int i = tid; i < DSV3_MMA_BM * DSV3_MMA_BK; i += blockDim.x) {
        int r = sak == 1 ? i / DSV3_MMA_BK : i % DSV3_MMA_BM;
        int c = sak == 1 ? i % DSV3_MMA_BK : i / DSV3_MMA_BM;
        i64 m = m0 + r, k = k0 + c;
        split(m >= rowLo && m < rowHi && k < kCount ? a[m * sam + k * sak] : 0.f, abig, asmall,
              r * DSV3_TF32_LD + c);
        int n = sbk == 1 ? i / DSV3_MMA_BK : i % DSV3_MMA_BN;
        int kb = sbk == 1 ? i % DSV3_MMA_BK : i / DSV3_MMA_BN;
        i64 gn = n0 + n, gk = k0 + kb;
        split(gn < N && gk < kCount ? b[gk * sbk + gn * sbn] : 0.f, bbig, bsmall,
              n * DSV3_TF32_LD + kb);
      }
      __syncthreads();
      // This k-tile's products in a fresh accumulator, added to acc on
      // the CUDA cores (round to nearest): the tensor cores' accumulation
      // truncates, a bias that grows with the number of additions (1.9e-4
      // of the result over K = 7168 when every product went into acc).
      float part[2][4][4];
#pragma unroll
      for (int a = 0; a < 2; ++a)
#pragma unroll
        for (int b = 0; b < 4; ++b)
#pragma unroll
          for (int e = 0; e < 4; ++e)
            part[a][b][e] = 0.f;
#pragma unroll
      for (int kk = 0; kk < DSV3_MMA_BK; kk += 8) {
        unsigned ab[2][4], as[2][4];
#pragma unroll
        for (int mt = 0; mt < 2; ++mt) {
          int r = (wm * 32 + mt * 16 + g) * DSV3_TF32_LD + kk + q;
          ab[mt][0] = abig[r];
          ab[mt][1] = abig[r + 8 * DSV3_TF32_LD];
          ab[mt][2] = abig[r + 4];
          ab[mt][3] = abig[r + 8 * DSV3_TF32_LD + 4];
          as[mt][0] = asmall[r];
          as[mt][1] = asmall[r + 8 * DSV3_TF32_LD];
          as[mt][2] = asmall[r + 4];
          as[mt][3] = asmall[r + 8 * DSV3_TF32_LD + 4];
        }
#pragma unroll
        for (int nt = 0; nt < 4; ++nt) {
          int n = (wn * 32 + nt * 8 + g) * DSV3_TF32_LD + kk + q;
          unsigned bb[2] = {bbig[n], bbig[n + 4]};
          unsigned bs[2] = {bsmall[n], bsmall[n + 4]};
#pragma unroll
          for (int mt = 0; mt < 2; ++mt) {
            mmaTf32(part[mt][nt], as[mt], bb);
            mmaTf32(part[mt][nt], ab[mt], bs);
            mmaTf32(part[mt][nt], ab[mt], bb);
          }
        }
      }
#pragma unroll
      for (int a = 0; a < 2; ++a)
#pragma unroll
        for (int b = 0; b < 4; ++b)
#pragma unroll
          for (int e = 0; e < 4; ++e)
            acc[a][b][e] += part[a][b][e];
    }
  };
  if (Mode == 1) {
    i64 e = 0;
    while (e < segs && seg[e + 1] <= m0)
      ++e;
    for (; e < segs && seg[e] < m0 + DSV3_MMA_BM; ++e)
      if (seg[e + 1] > seg[e])
        run(Ab, Bb + e * sBb, seg[e], seg[e + 1]);
  } else {
    run(Ab, Bb, 0, M);
  }
#pragma unroll
  for (int mt = 0; mt < 2; ++mt)
#pragma unroll
    for (int nt = 0; nt < 4; ++nt)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        i64 m = m0 + wm * 32 + mt * 16 + g + (e >= 2 ? 8 : 0);
        i64 n = n0 + wn * 32 + nt * 8 + q * 2 + (e & 1);
        if (m < M && n < N) {
          float v = acc[mt][nt][e];
          if (bias)
            v += bias[n];
          if (res)
            v += res[m * ldc + n];
          float *c = Cb + m * ldc + n;
          *c = Accumulate ? *c + v : v;
        }
      }
}

/// y[n] += sum over rows of x[r, n] (bias gradients): a thread per column.
template <int Unused>
__global__ void col_sum(const float *x, i64 rows, i64 cols, i64 ldx, float *y) {
  i64 n = i64(blockIdx.x) * blockDim.x + threadIdx.x;
  if (n >= cols)
    return;
  float s = 0.f;
  for (i64 r = 0; r < rows; ++r)
    s += x[r * ldx + n];
  y[n] += s;
}

/// The x row of gradient row r: rows come in groups of `rowsPer` (one
/// sequence's rows of an MTP block), x row (r / rowsPer) xBatch + r %
/// rowsPer + xShift; plain row-wise norms have rowsPer = rows, xBatch = 0.
__device__ __forceinline__ i64 gradRowToX(i64 r, i64 rowsPer, i64 xBatch, i64 xShift) {
  return (r / rowsPer) * xBatch + r % rowsPer + xShift;
}

/// RMSNorm backward, a block per row: dx += inv dy w - inv^3 x (dy w . x) / n
/// (dx rows at the x rows' positions, stride ldx); inv[r] is kept for the
/// weight gradient (rms_norm_grad_w).
template <int Unused>
__global__ void rms_norm_grad(const float *x, i64 ldx, const float *w, const float *dy,
                              i64 ldy, float *dx, float *inv, i64 rows, i64 n, i64 rowsPer,
                              i64 xBatch, i64 xShift, float eps) {
  i64 r = blockIdx.x;
  if (r >= rows)
    return;
  const float *xr = x + gradRowToX(r, rowsPer, xBatch, xShift) * ldx;
  const float *g = dy + r * ldy;
  float ss = 0.f, dot = 0.f;
  for (i64 j = threadIdx.x; j < n; j += blockDim.x) {
    ss += xr[j] * xr[j];
    dot += g[j] * w[j] * xr[j];
  }
  ss = blockSum(ss);
  dot = blockSum(dot);
  float iv = rsqrtf(ss / float(n) + eps);
  if (threadIdx.x == 0)
    inv[r] = iv;
  if (!dx)
    return;
  float *d = dx + gradRowToX(r, rowsPer, xBatch, xShift) * ldx;
  for (i64 j = threadIdx.x; j < n; j += blockDim.x)
    d[j] += iv * g[j] * w[j] - iv * iv * iv * xr[j] * dot / float(n);
}

/// part[c, j] = sum over rows r of chunk c (blockIdx.y; `chunk` rows) of
/// dy[r, j] x[r, j] inv[r]: a thread per column and chunk, so that the
/// columns of a norm (7168) times the chunks fill the GPU; col_sum then adds
/// the chunks in order into dw (deterministic).
template <int Unused>
__global__ void rms_norm_grad_w(const float *x, i64 ldx, const float *dy, i64 ldy,
                                const float *inv, float *part, i64 rows, i64 n, i64 rowsPer,
                                i64 xBatch, i64 xShift, i64 chunk) {
  i64 j = i64(blockIdx.x) * blockDim.x + threadIdx.x;
  if (j >= n)
    return;
  const i64 r0 = i64(blockIdx.y) * chunk, r1 = r0 + chunk < rows ? r0 + chunk : rows;
  float s = 0.f;
  for (i64 r = r0; r < r1; ++r)
    s += dy[r * ldy + j] * x[gradRowToX(r, rowsPer, xBatch, xShift) * ldx + j] * inv[r];
  part[i64(blockIdx.y) * n + j] = s;
}

/// y = silu(g) u: dg = dy u s (1 + g (1 - s)), du = dy g s.
template <int Unused>
__global__ void swiglu_grad(const float *g, const float *u, const float *dy, float *dg,
                            float *du, i64 n) {
  for (i64 i = i64(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += i64(gridDim.x) * blockDim.x) {
    float x = g[i], s = 1.f / (1.f + expf(-x));
    if (dg)
      dg[i] = dy[i] * u[i] * s * (1.f + x * (1.f - s));
    if (du)
      du[i] = dy[i] * x * s;
  }
}

/// The transpose of `rotate` (a rotation by -theta, then the interleaving
/// undone), a thread per D-vector: vector v is row v / perRow, item v %
/// perRow, at src + row ldRow + item ldVec (dst likewise; may equal src).
/// Position: pos[row], or row % T when pos is null (MLA: t in its sequence).
template <int D, int Interleaved>
__global__ void rope_transpose(const float *src, float *dst, i64 vectors, i64 perRow,
                               i64 ldRow, i64 ldVec, const i64 *pos, i64 T,
                               const float *invFreq, float scale) {
  i64 v = i64(blockIdx.x) * blockDim.x + threadIdx.x;
  if (v >= vectors)
    return;
  i64 row = v / perRow, item = v % perRow;
  const float *s = src + row * ldRow + item * ldVec;
  float *d = dst + row * ldRow + item * ldVec;
  i64 p = pos ? pos[row] : row % T;
  float out[D];
#pragma unroll
  for (int j = 0; j < D / 2; ++j) {
    float th = float(p) * invFreq[j];
    float c = cosf(th) * scale, sn = sinf(th) * scale;
    float y0 = s[j], y1 = s[j + D / 2];
    out[Interleaved ? 2 * j : j] = y0 * c + y1 * sn;
    out[Interleaved ? 2 * j + 1 : j + D / 2] = -y0 * sn + y1 * c;
  }
#pragma unroll
  for (int j = 0; j < D; ++j)
    d[j] = out[j];
}

/// The number of rows the shifted cross entropy counts (one block).
template <int Unused>
__global__ void ce_count(const i64 *labels, i64 B, i64 Rw, i64 T, i64 shift, i64 ignore,
                         float *count) {
  float c = 0.f;
  for (i64 row = threadIdx.x; row < B * Rw; row += blockDim.x) {
    i64 b = row / Rw, i = row % Rw;
    c += i + shift < T && labels[b * T + i + shift] != ignore ? 1.f : 0.f;
  }
  c = blockSum(c);
  if (threadIdx.x == 0)
    *count = c;
}

/// dlogits of the mean cross entropy, a block per row: dloss scale / count
/// (softmax - onehot(target)); rows without a target get zeros. The row's
/// max and sum of exponentials in one pass (blockMaxSumExp), so the logits
/// (a 0.5 MB row at V3's vocabulary) are read twice, not three times.
/// Rows r0.. (the fused loss's chunk): logits and dl hold those rows only.
template <int Unused>
__global__ void cross_entropy_grad(const float *logits, const i64 *labels,
                                   const float *dloss, const float *count, float *dl,
                                   i64 B, i64 Rw, i64 T, i64 V, i64 shift, i64 ignore,
                                   float scale, i64 r0) {
  i64 row = r0 + blockIdx.x;
  if (row >= B * Rw)
    return;
  i64 b = row / Rw, i = row % Rw;
  i64 target = i + shift < T ? labels[b * T + i + shift] : ignore;
  float *d = dl + i64(blockIdx.x) * V;
  if (target == ignore || *count == 0.f) {
    for (i64 c = threadIdx.x; c < V; c += blockDim.x)
      d[c] = 0.f;
    return;
  }
  const float *x = logits + i64(blockIdx.x) * V;
  float mx, sum;
  blockMaxSumExp(x, V, mx, sum);
  float factor = *dloss * scale / *count;
  i64 done = 0;
  if (V % 4 == 0 && ((reinterpret_cast<unsigned long long>(x) |
                      reinterpret_cast<unsigned long long>(d)) & 15) == 0) {
    // 16-byte loads and stores (the same arithmetic per element).
    const float4 *x4 = reinterpret_cast<const float4 *>(x);
    float4 *d4 = reinterpret_cast<float4 *>(d);
    for (i64 c = threadIdx.x; c < V / 4; c += blockDim.x) {
      const float4 v = x4[c];
      const i64 t = target - 4 * c; // the target's place in this vector
      d4[c] = make_float4(factor * (expf(v.x - mx) / sum - (t == 0 ? 1.f : 0.f)),
                          factor * (expf(v.y - mx) / sum - (t == 1 ? 1.f : 0.f)),
                          factor * (expf(v.z - mx) / sum - (t == 2 ? 1.f : 0.f)),
                          factor * (expf(v.w - mx) / sum - (t == 3 ? 1.f : 0.f)));
    }
    done = V;
  }
  for (i64 c = done + threadIdx.x; c < V; c += blockDim.x)
    d[c] = factor * (expf(x[c] - mx) / sum - (c == target ? 1.f : 0.f));
}

/// Router backward, a block per token: the selected experts' weights
/// w_j = scaling p_j (/ (sum p + 1e-20) when normalised) back to the
/// logits through the sigmoid or softmax scores. Shared: 2E floats.
template <int Unused>
__global__ void route_grad(const float *logits, const i64 *indices, const float *dw,
                           float *dlogit, i64 n, i64 E, i64 K, int sigmoid, int norm,
                           float scaling) {
  extern __shared__ float sh[];
  float *score = sh, *dscore = sh + E;
  i64 t = blockIdx.x;
  if (t >= n)
    return;
  const float *l = logits + t * E;
  if (sigmoid) {
    for (i64 e = threadIdx.x; e < E; e += blockDim.x)
      score[e] = 1.f / (1.f + expf(-l[e]));
  } else {
    float mx = -INFINITY;
    for (i64 e = threadIdx.x; e < E; e += blockDim.x)
      mx = fmaxf(mx, l[e]);
    mx = blockMax(mx);
    float sum = 0.f;
    for (i64 e = threadIdx.x; e < E; e += blockDim.x)
      sum += expf(l[e] - mx);
    sum = blockSum(sum);
    for (i64 e = threadIdx.x; e < E; e += blockDim.x)
      score[e] = expf(l[e] - mx) / sum;
  }
  for (i64 e = threadIdx.x; e < E; e += blockDim.x)
    dscore[e] = 0.f;
  __syncthreads();
  if (threadIdx.x == 0) {
    const i64 *sel = indices + t * K;
    const float *g = dw + t * K;
    float sum = 1e-20f, dot = 0.f;
    for (i64 j = 0; j < K; ++j) {
      sum += score[sel[j]];
      dot += g[j] * score[sel[j]];
    }
    for (i64 j = 0; j < K; ++j)
      dscore[sel[j]] += scaling * (norm ? g[j] / sum - dot / (sum * sum) : g[j]);
  }
  __syncthreads();
  float s = 0.f;
  if (!sigmoid) {
    for (i64 e = threadIdx.x; e < E; e += blockDim.x)
      s += dscore[e] * score[e];
    s = blockSum(s);
  }
  for (i64 e = threadIdx.x; e < E; e += blockDim.x)
    dlogit[t * E + e] = sigmoid ? dscore[e] * score[e] * (1.f - score[e])
                                : score[e] * (dscore[e] - s);
}

/// Balance loss, per token (a block each): the scores s (sigmoid or
/// softmax of the router logits) and their sum.
template <int Unused>
__global__ void balance_scores(const float *logits, float *s, float *sum, i64 n, i64 E,
                               int sigmoid) {
  i64 t = blockIdx.x;
  if (t >= n)
    return;
  const float *l = logits + t * E;
  float mx = 0.f;
  if (!sigmoid) {
    mx = -INFINITY;
    for (i64 e = threadIdx.x; e < E; e += blockDim.x)
      mx = fmaxf(mx, l[e]);
    mx = blockMax(mx);
  }
  float tot = 0.f;
  for (i64 e = threadIdx.x; e < E; e += blockDim.x) {
    float v = sigmoid ? 1.f / (1.f + expf(-l[e])) : expf(l[e] - mx);
    s[t * E + e] = v;
    tot += v;
  }
  tot = blockSum(tot);
  if (!sigmoid) {
    for (i64 e = threadIdx.x; e < E; e += blockDim.x)
      s[t * E + e] /= tot;
    tot = 1.f;
  }
  if (threadIdx.x == 0)
    sum[t] = tot;
}

/// The balance loss's statistics, per group g of `per` tokens and per
/// expert: f = E / (K per) times the expert's selections, P = the mean
/// normalised score. Two passes in a fixed order: balance_stats_part sums
/// a chunk of `chunk` tokens a block (grid (chunks, groups), a thread per
/// expert) into part [groups, chunks, 2, E]; balance_stats adds a group's
/// chunks in order (a block per group). One block a group walking all its
/// tokens took 3.6 ms at 4096 tokens and 64 experts.
template <int Unused>
__global__ void balance_stats_part(const float *s, const float *sum, const i64 *idx,
                                   float *part, i64 per, i64 E, i64 K, i64 chunk) {
  const i64 g = blockIdx.y, c0 = i64(blockIdx.x) * chunk, chunks = gridDim.x;
  const i64 t1 = c0 + chunk < per ? c0 + chunk : per;
  for (i64 e = threadIdx.x; e < E; e += blockDim.x) {
    float c = 0.f, p = 0.f;
    for (i64 t = c0; t < t1; ++t) {
      const i64 tok = g * per + t;
      for (i64 j = 0; j < K; ++j)
        c += idx[tok * K + j] == e ? 1.f : 0.f;
      p += s[tok * E + e] / sum[tok];
    }
    float *out = part + ((g * chunks + blockIdx.x) * 2) * E;
    out[e] = c;
    out[E + e] = p;
  }
}
template <int Unused>
__global__ void balance_stats(const float *part, i64 chunks, float *f, float *P, i64 per,
                              i64 E, i64 K) {
  const i64 g = blockIdx.x;
  for (i64 e = threadIdx.x; e < E; e += blockDim.x) {
    float c = 0.f, p = 0.f;
    for (i64 ch = 0; ch < chunks; ++ch) {
      const float *in = part + ((g * chunks + ch) * 2) * E;
      c += in[e];
      p += in[E + e];
    }
    f[g * E + e] = c * float(E) / float(K * per);
    P[g * E + e] = p / float(per);
  }
}

/// loss = alpha / groups sum f P (one block).
template <int Unused>
__global__ void balance_loss_sum(const float *f, const float *P, i64 n, float factor,
                                 float *loss) {
  float v = 0.f;
  for (i64 i = threadIdx.x; i < n; i += blockDim.x)
    v += f[i] * P[i];
  v = blockSum(v);
  if (threadIdx.x == 0)
    *loss = factor * v;
}

/// Balance loss backward, a block per token: only P carries gradient.
/// factor = alpha / (per groups), times the incoming dloss.
template <int Unused>
__global__ void balance_grad(const float *s, const float *sum, const float *f,
                             const float *dloss, float *dlogit, i64 n, i64 per, i64 E,
                             int sigmoid, float factor) {
  i64 t = blockIdx.x;
  if (t >= n)
    return;
  const float *ft = f + (t / per) * E, *st = s + t * E;
  float scale = *dloss * factor, tot = sum[t];
  float dot = 0.f;
  for (i64 e = threadIdx.x; e < E; e += blockDim.x)
    dot += ft[e] * st[e];
  dot = blockSum(dot);
  for (i64 e = threadIdx.x; e < E; e += blockDim.x) {
    float v = st[e];
    dlogit[t * E + e] = sigmoid
                            ? scale * (ft[e] / tot - dot / (tot * tot)) * v * (1.f - v)
                            : v * scale * (ft[e] - dot);
  }
}

/// Dispatch backward, a block per token: the sum of its K routed rows'
/// gradients (inverse: slot -> row).
template <int Unused>
__global__ void dispatch_grad(const float *drows, const i64 *inverse, float *dx, i64 n,
                              i64 K, i64 H) {
  i64 t = blockIdx.x;
  if (t >= n)
    return;
  for (i64 j = threadIdx.x; j < H; j += blockDim.x) {
    float acc = 0.f;
    for (i64 k = 0; k < K; ++k)
      acc += drows[inverse[t * K + k] * H + j];
    dx[t * H + j] = acc;
  }
}

/// offsets[0] = 0, offsets[e + 1] = offsets[e] + counts[e] (one thread).
template <int Unused>
__global__ void exclusive_scan(const i64 *counts, i64 *offsets, i64 E) {
  if (threadIdx.x != 0 || blockIdx.x != 0)
    return;
  i64 o = 0;
  offsets[0] = 0;
  for (i64 e = 0; e < E; ++e)
    offsets[e + 1] = (o += counts[e]);
}

/// Combine backward, a block per routed row r (slot s): deo[r] = w[s]
/// dy[token], dw[s] = dy[token] . eo[r].
template <int Unused>
__global__ void combine_grad(const float *eo, const i64 *slots, const float *w,
                             const float *dy, float *deo, float *dw, i64 R, i64 H, i64 K) {
  i64 r = blockIdx.x;
  if (r >= R)
    return;
  i64 s = slots[r];
  const float *g = dy + (s / K) * H, *o = eo + r * H;
  float dot = 0.f;
  for (i64 j = threadIdx.x; j < H; j += blockDim.x) {
    if (deo)
      deo[r * H + j] = w[s] * g[j];
    dot += g[j] * o[j];
  }
  dot = blockSum(dot);
  if (dw && threadIdx.x == 0)
    dw[s] = dot;
}

/// Embedding backward without atomics: a thread per column and range of
/// table rows (blockIdx.y of gridDim.y over the V rows) walks the tokens
/// in order and adds those whose id is in its range, dtable[id] += dy:
/// each entry's sum in token order (deterministic), the table's columns
/// times its row ranges in parallel (a thread per column alone left most
/// SMs idle).
template <int Unused>
__global__ void embedding_grad(const i64 *ids, const float *dy, float *dtable, i64 n,
                               i64 H, i64 V) {
  const i64 j = i64(blockIdx.x) * blockDim.x + threadIdx.x;
  const i64 lo = V * blockIdx.y / gridDim.y, hi = V * (blockIdx.y + 1) / gridDim.y;
  if (j >= H)
    return;
  for (i64 t = 0; t < n; ++t) {
    const i64 id = ids[t];
    if (id >= lo && id < hi)
      dtable[id * H + j] += dy[t * H + j];
  }
}

/// Sum of squares into partial[blockIdx.x] (a fixed grid: deterministic).
template <int Unused>
__global__ void sum_squares(const float *x, i64 n, float *partial) {
  float s = 0.f;
  for (i64 i = i64(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += i64(gridDim.x) * blockDim.x)
    s += x[i] * x[i];
  s = blockSum(s);
  if (threadIdx.x == 0)
    partial[blockIdx.x] = s;
}

/// out = sqrt(sum of partial) (one block).
template <int Unused>
__global__ void sqrt_sum(const float *partial, i64 n, float *out) {
  float s = 0.f;
  for (i64 i = threadIdx.x; i < n; i += blockDim.x)
    s += partial[i];
  s = blockSum(s);
  if (threadIdx.x == 0)
    *out = sqrtf(s);
}

/// AdamW's moments as stored: fp32, or bf16 bits (Bf16 = 1).
template <int Bf16> struct AdamMoment {
  using type = float;
};
template <> struct AdamMoment<1> {
  using type = unsigned short;
};
__device__ __forceinline__ float4 loadMoments4(const float *m, i64 i) {
  return reinterpret_cast<const float4 *>(m)[i];
}
__device__ __forceinline__ float4 loadMoments4(const unsigned short *m, i64 i) {
  const uint2 u = reinterpret_cast<const uint2 *>(m)[i];
  return make_float4(bf16Float((unsigned short)(u.x & 0xffffu)), bf16Float((unsigned short)(u.x >> 16)),
                     bf16Float((unsigned short)(u.y & 0xffffu)), bf16Float((unsigned short)(u.y >> 16)));
}
__device__ __forceinline__ void storeMoments4(float *m, i64 i, float4 x) {
  reinterpret_cast<float4 *>(m)[i] = x;
}
__device__ __forceinline__ void storeMoments4(unsigned short *m, i64 i, float4 x) {
  uint2 u; // the values are bf16 already (roundToBf16): the bits, exactly
  u.x = unsigned(bf16Bits(x.x)) | (unsigned(bf16Bits(x.y)) << 16);
  u.y = unsigned(bf16Bits(x.z)) | (unsigned(bf16Bits(x.w)) << 16);
  reinterpret_cast<uint2 *>(m)[i] = u;
}
__device__ __forceinline__ float loadMoment(const float *m, i64 i) { return m[i]; }
__device__ __forceinline__ float loadMoment(const unsigned short *m, i64 i) {
  return bf16Float(m[i]);
}
__device__ __forceinline__ void storeMoment(float *m, i64 i, float x) { m[i] = x; }
__device__ __forceinline__ void storeMoment(unsigned short *m, i64 i, float x) {
  m[i] = bf16Bits(x);
}

/// One AdamW step in place (dsv3.adamw): the gradient clipped by the global
/// norm, decoupled weight decay, bias-corrected moments (c1, c2 = 1 - beta^t).
/// Bf16: the moments are stored as bf16 (DeepSeek-V3 3.3.3); each new one
/// is computed in fp32, rounded to bf16, and the update reads the rounded
/// value (the host's adamw alike).
template <int Bf16>
__global__ void adamw_update(float *p, const float *g, typename AdamMoment<Bf16>::type *m,
                             typename AdamMoment<Bf16>::type *v, i64 n, const float *lr,
                             const float *norm, float b1, float b2, float eps, float wd,
                             float clip, float c1, float c2) {
  using MT = typename AdamMoment<Bf16>::type;
  float rate = *lr;
  float scale = clip > 0.f ? fminf(1.f, clip / (*norm + 1e-6f)) : 1.f;
  auto one = [&](float &pi, float gi, float &mi, float &vi) {
    gi *= scale;
    float mv = b1 * mi + (1.f - b1) * gi;
    float vv = b2 * vi + (1.f - b2) * gi * gi;
    if (Bf16) {
      mv = roundToBf16(mv);
      vv = roundToBf16(vv);
    }
    mi = mv;
    vi = vv;
    pi = pi * (1.f - rate * wd) - rate * (mv / c1) / (sqrtf(vv / c2) + eps);
  };
  auto update4 = [&](float4 &pv, const float4 &gv, float4 &mv, float4 &vv) {
    one(pv.x, gv.x, mv.x, vv.x);
    one(pv.y, gv.y, mv.y, vv.y);
    one(pv.z, gv.z, mv.z, vv.z);
    one(pv.w, gv.w, mv.w, vv.w);
  };
  const i64 stride = i64(gridDim.x) * blockDim.x, first = i64(blockIdx.x) * blockDim.x + threadIdx.x;
  i64 done = 0;
  // 4-vector loads and stores where all four arrays allow them (the same
  // arithmetic per element: results identical to the scalar loop).
  if (((reinterpret_cast<unsigned long long>(p) | reinterpret_cast<unsigned long long>(g)) & 15) ==
          0 &&
      ((reinterpret_cast<unsigned long long>(m) | reinterpret_cast<unsigned long long>(v)) &
       (4 * sizeof(MT) - 1)) == 0) {
    done = n / 4 * 4;
    for (i64 i = first; i < n / 4; i += stride) {
      float4 pv = reinterpret_cast<float4 *>(p)[i], mv = loadMoments4(m, i);
      float4 vv = loadMoments4(v, i), gv = reinterpret_cast<const float4 *>(g)[i];
      update4(pv, gv, mv, vv);
      reinterpret_cast<float4 *>(p)[i] = pv;
      storeMoments4(m, i, mv);
      storeMoments4(v, i, vv);
    }
  }
  for (i64 i = done + first; i < n; i += stride) {
    float mi = loadMoment(m, i), vi = loadMoment(v, i);
    one(p[i], g[i], mi, vi);
    storeMoment(m, i, mi);
    storeMoment(v, i, vi);
  }
}

/// bias[e] += rate sign(mean(counts) - counts[e]) (one block).
template <int Unused>
__global__ void expert_bias_update(float *bias, const i64 *counts, i64 E, float rate) {
  float mean = 0.f;
  for (i64 e = 0; e < E; ++e)
    mean += float(counts[e]);
  mean /= float(E);
  for (i64 e = threadIdx.x; e < E; e += blockDim.x) {
    float d = mean - float(counts[e]);
    bias[e] += rate * (d > 0.f ? 1.f : d < 0.f ? -1.f : 0.f);
  }
}

/// MLA backward, query side (SEMANTICS.md 3.6), a block per (query i, head
/// h, sequence b): the softmax row recomputed from q and the keys, then
/// o = P V (for o_proj's weight gradient), dP = dO V^T, delta = P . dP,
/// dS = P (dP - delta) scale and dq = dS K; the row's log-sum-exp and delta
/// are kept for the key side. Layouts as mla_attention_prefill; dO, o
/// [B*T, NH, DV]; dq [B*T, NH, DN + DR] (gradient of the rotated query).
/// Shared: 2 T floats.
template <int Unused>
__global__ void mla_grad_query(const float *q, const float *latent, const float *u,
                               const float *dO, float *o, float *dq, float *lse,
                               float *delta, i64 T, i64 NH, i64 DN, i64 DR, i64 DV, i64 R,
                               float scale) {
  extern __shared__ float sh[];
  float *p = sh, *ds = sh + T;
  i64 i = blockIdx.x, h = blockIdx.y, b = blockIdx.z;
  i64 row = (b * T + i) * NH + h;
  const float *qi = q + row * (DN + DR), *doi = dO + row * DV;
  float mx = -INFINITY;
  for (i64 t = threadIdx.x; t <= i; t += blockDim.x) {
    const float *kn = u + ((b * T + t) * NH + h) * (DN + DV);
    const float *kp = latent + (b * T + t) * (R + DR) + R;
    float s = 0.f;
    for (i64 j = 0; j < DN; ++j)
      s += qi[j] * kn[j];
    for (i64 j = 0; j < DR; ++j)
      s += qi[DN + j] * kp[j];
    s *= scale;
    p[t] = s;
    mx = fmaxf(mx, s);
  }
  mx = blockMax(mx);
  float sum = 0.f;
  for (i64 t = threadIdx.x; t <= i; t += blockDim.x)
    sum += (p[t] = expf(p[t] - mx));
  sum = blockSum(sum);
  float dl = 0.f;
  for (i64 t = threadIdx.x; t <= i; t += blockDim.x) {
    p[t] /= sum;
    const float *vt = u + ((b * T + t) * NH + h) * (DN + DV) + DN;
    float dp = 0.f;
    for (i64 j = 0; j < DV; ++j)
      dp += doi[j] * vt[j];
    ds[t] = dp;
    dl += p[t] * dp;
  }
  dl = blockSum(dl);
  for (i64 t = threadIdx.x; t <= i; t += blockDim.x)
    ds[t] = p[t] * (ds[t] - dl) * scale;
  __syncthreads();
  if (threadIdx.x == 0) {
    lse[row] = mx + logf(sum);
    delta[row] = dl;
  }
  for (i64 j = threadIdx.x; j < DV; j += blockDim.x) {
    float acc = 0.f;
    for (i64 t = 0; t <= i; ++t)
      acc += p[t] * u[((b * T + t) * NH + h) * (DN + DV) + DN + j];
    o[row * DV + j] = acc;
  }
  for (i64 j = threadIdx.x; j < DN + DR; j += blockDim.x) {
    float acc = 0.f;
    for (i64 t = 0; t <= i; ++t)
      acc += ds[t] * (j < DN ? u[((b * T + t) * NH + h) * (DN + DV) + j]
                             : latent[(b * T + t) * (R + DR) + R + j - DN]);
    dq[row * (DN + DR) + j] = acc;
  }
}

/// MLA backward, key side, a block per (key t, head h, sequence b): its
/// warps take the queries i >= t in turn, recompute p = exp(q.k scale -
/// lse) and dS = p (dO.v - delta) scale, and accumulate dk = sum dS q and
/// dv = sum p dO in per-warp shared rows, summed in warp order at the end.
/// Writes du [B*T, NH, DN + DV] (nope key and value gradients) and dkp
/// [B*T, NH, DR] (the rotated rope key's, per head; summed over heads
/// after). Shared: warps x (DN + DR + DV) floats.
template <int Unused>
__global__ void mla_grad_key(const float *q, const float *latent, const float *u,
                             const float *dO, const float *lse, const float *delta,
                             float *du, float *dkp, i64 T, i64 NH, i64 DN, i64 DR, i64 DV,
                             i64 R, float scale) {
  extern __shared__ float sh[];
  i64 t = blockIdx.x, h = blockIdx.y, b = blockIdx.z;
  int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  i64 W = DN + DR + DV;
  float *mine = sh + warp * W; // dk (DN + DR) then dv (DV)
  for (i64 j = lane; j < W; j += 32)
    mine[j] = 0.f;
  i64 krow = (b * T + t) * NH + h;
  const float *kn = u + krow * (DN + DV), *vt = kn + DN;
  const float *kp = latent + (b * T + t) * (R + DR) + R;
  for (i64 i = t + warp; i < T; i += warps) {
    i64 row = (b * T + i) * NH + h;
    const float *qi = q + row * (DN + DR), *doi = dO + row * DV;
    float s = 0.f, dp = 0.f;
    for (i64 j = lane; j < DN; j += 32)
      s += qi[j] * kn[j];
    for (i64 j = lane; j < DR; j += 32)
      s += qi[DN + j] * kp[j];
    for (i64 j = lane; j < DV; j += 32)
      dp += doi[j] * vt[j];
    s = warpSum(s);
    dp = warpSum(dp);
    float pr = expf(s * scale - lse[row]);
    float dsv = pr * (dp - delta[row]) * scale;
    for (i64 j = lane; j < DN + DR; j += 32)
      mine[j] += dsv * qi[j];
    for (i64 j = lane; j < DV; j += 32)
      mine[DN + DR + j] += pr * doi[j];
  }
  __syncthreads();
  for (i64 j = threadIdx.x; j < W; j += blockDim.x) {
    float acc = 0.f;
    for (int w = 0; w < warps; ++w)
      acc += sh[w * W + j];
    if (j < DN)
      du[krow * (DN + DV) + j] = acc;
    else if (j < DN + DR)
      dkp[krow * DR + j - DN] = acc;
    else
      du[krow * (DN + DV) + DN + j - DN - DR] = acc;
  }
}

/// Training with bf16 compute: fp32 operands rounded to bf16 as the bf16
/// GEMMs read them (K-contiguous rows of Kp >= K, zero past K: the GEMMs
/// take K in steps of 8). dst[z][c][r] = src[z][r][c] for r < rows, c <
/// cols, 0 for rows <= r < dstLd (source rows ld apart, batches srcBatch
/// floats apart; dst rows dstLd apart, batches cols x dstLd apart): a 64 x
/// 64 tile (Tile) per block of 256 threads through shared memory, so that
/// reads and writes both coalesce: 16-byte loads where the rows allow, and
/// 16-byte stores (8 columns) where nothing is segmented.
/// With seg (training's per-expert weight gradients: source rows grouped
/// by expert, seg [segs + 1] offsets), source row r of segment e goes to
/// column r - seg[e] + pseg[e] (pseg: the segments padded to 64, from
/// padded_segments; zero_segment_pads zeroes the columns in between).
template <int Tile>
__global__ void __launch_bounds__(256)
    to_bf16_transposed(const float *src, i64 ld, i64 srcBatch, i64 rows, i64 cols, i64 dstLd,
                       unsigned short *dst, const i64 *seg, const i64 *pseg, i64 segs) {
  static_assert(Tile == 64, "a block transposes 64 x 64");
  // fp32 in shared memory, rows padded by one: the loads' and the
  // transposed reads' bank conflicts stay two-way.
  __shared__ float t[64][65];
  __shared__ i64 shift[64]; // the tile's rows' destination column - source row (segments)
  const i64 r0 = i64(blockIdx.y) * 64, c0 = i64(blockIdx.x) * 64, z = blockIdx.z;
  const int tid = threadIdx.x;
  src += z * srcBatch;
  dst += z * cols * dstLd;
  if (((ld | srcBatch) & 3) == 0 && (reinterpret_cast<unsigned long long>(src) & 15) == 0 &&
      c0 + 64 <= cols) {
    // 16 float4 a row, 4 a thread, all in flight before any is stored.
    float4 v[4];
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      const int i = tid + k * 256, r = i >> 4, c = (i & 15) * 4;
      v[k] = r0 + r < rows ? *reinterpret_cast<const float4 *>(src + (r0 + r) * ld + c0 + c)
                           : make_float4(0.f, 0.f, 0.f, 0.f);
    }
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      const int i = tid + k * 256, r = i >> 4, c = (i & 15) * 4;
      t[r][c] = v[k].x;
      t[r][c + 1] = v[k].y;
      t[r][c + 2] = v[k].z;
      t[r][c + 3] = v[k].w;
    }
  } else {
#pragma unroll
    for (int k = 0; k < 16; ++k) {
      const int i = tid + k * 256, r = i >> 6, c = i & 63;
      t[r][c] = r0 + r < rows && c0 + c < cols ? src[(r0 + r) * ld + c0 + c] : 0.f;
    }
  }
  if (seg && tid < 64) {
    const i64 at = r0 + tid;
    i64 lo = 0, hi = segs; // the segment e with seg[e] <= at < seg[e + 1]
    while (hi - lo > 1) {
      const i64 mid = (lo + hi) / 2;
      if (seg[mid] <= at)
        lo = mid;
      else
        hi = mid;
    }
    shift[tid] = pseg[lo] - seg[lo];
  }
  __syncthreads();
  // Destination rows c0.. (the source's columns). Unsegmented and 16-byte
  // aligned: 8 columns a thread, a warp writing 4 rows' 64 columns.
  // Segmented (a segment's columns start anywhere): an element a thread, a
  // warp writing 32 consecutive columns of a row.
  if (!seg && (dstLd & 7) == 0 && (reinterpret_cast<unsigned long long>(dst) & 15) == 0) {
#pragma unroll
    for (int k = 0; k < 2; ++k) {
      const int i = tid + k * 256, m = (i & 7) * 8, c = i >> 3;
      const i64 r = r0 + m;
      if (c0 + c >= cols || r >= dstLd)
        continue;
      unsigned short *d = dst + (c0 + c) * dstLd + r;
      if (r + 8 <= dstLd) {
        *reinterpret_cast<uint4 *>(d) = make_uint4(
            packBf16x2(t[m][c], t[m + 1][c]), packBf16x2(t[m + 2][c], t[m + 3][c]),
            packBf16x2(t[m + 4][c], t[m + 5][c]), packBf16x2(t[m + 6][c], t[m + 7][c]));
      } else {
        for (int e = 0; r + e < dstLd; ++e)
          d[e] = (unsigned short)(packBf16x2(t[m + e][c], 0.f) & 0xffffu);
      }
    }
    return;
  }
  const i64 limit = seg ? rows : dstLd;
#pragma unroll 4
  for (int k = 0; k < 16; ++k) {
    const int i = tid + k * 256, r = i & 63, c = i >> 6;
    if (c0 + c < cols && r0 + r < limit)
      dst[(c0 + c) * dstLd + r0 + r + (seg ? shift[r] : 0)] =
          (unsigned short)(packBf16x2(t[r][c], 0.f) & 0xffffu);
  }
}

/// C[m, n] = t[m, n] (+ C[m, n] when accumulating) (+ res[m, n]), C and
/// res rows ldc apart, t rows N apart: a GEMM's result placed in a wider
/// matrix (the bf16 kernels store rows N apart).
template <int Unused>
__global__ void strided_store(const float *t, i64 M, i64 N, float *C, i64 ldc, const float *res,
                              int accumulate) {
  i64 i = i64(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= M * N)
    return;
  i64 m = i / N, n = i % N;
  float v = t[i];
  if (accumulate)
    v += C[m * ldc + n];
  if (res)
    v += res[m * ldc + n];
  C[m * ldc + n] = v;
}

/// The padding columns of to_bf16_transposed's segmented form: in each of
/// dst's `cols` rows (dstLd apart), columns [pseg[e] + seg[e + 1] - seg[e],
/// pseg[e + 1]) of segment e = blockIdx.y are zeroed (at most 63 a segment;
/// the bf16 GEMM's expert e sums K over [pseg[e], pseg[e + 1]), so nothing
/// else is read). 256 threads: 4 rows x 64 columns a block.
template <int Unused>
__global__ void zero_segment_pads(unsigned short *dst, i64 dstLd, i64 cols, const i64 *seg,
                                  const i64 *pseg) {
  const i64 e = blockIdx.y, c = i64(blockIdx.x) * 4 + (threadIdx.x >> 6);
  const i64 p = pseg[e] + (seg[e + 1] - seg[e]) + (threadIdx.x & 63);
  if (c < cols && p < pseg[e + 1])
    dst[c * dstLd + p] = 0;
}

/// pseg[e] = sum over e' < e of seg's segment e' rounded up to 64 (one
/// thread; E is at most a few hundred).
template <int Unused>
__global__ void padded_segments(const i64 *seg, i64 E, i64 *pseg) {
  if (threadIdx.x != 0)
    return;
  pseg[0] = 0;
  for (i64 e = 0; e < E; ++e)
    pseg[e + 1] = pseg[e] + (seg[e + 1] - seg[e] + 63) / 64 * 64;
}

/// The row-major form: y[r][c] = x[r][c] rounded for c < K, 0 for K <= c <
/// Kp (x rows ldx apart, y rows Kp apart), a thread per element of y.
template <int Unused>
__global__ void to_bf16_padded(const float *x, i64 ldx, i64 rows, i64 K, i64 Kp,
                               unsigned short *y) {
  i64 i = i64(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= rows * Kp)
    return;
  i64 r = i / Kp, c = i % Kp;
  y[i] = c < K ? (unsigned short)(packBf16x2(x[r * ldx + c], 0.f) & 0xffffu) : 0;
}

/// counts[e] = seg[e + 1] - seg[e] (the grouped GEMMs' rows per expert).
template <int Unused>
__global__ void segment_counts(const i64 *seg, i64 E, i64 *counts) {
  for (i64 e = threadIdx.x; e < E; e += blockDim.x)
    counts[e] = seg[e + 1] - seg[e];
}

/// MLA backward on bf16 tensor cores (training with bf16 compute; the
/// gradients of SEMANTICS.md 3.6 by FlashAttention-2's algorithm, without
/// atomics). The forward (mla_pack_kv + mla_prefill_mma) keeps each query's
/// log-sum-exp; then, per sequence:
///   mla_pack_heads   q and dO to head-major bf16 rows (widths padded to 16)
///   attention_delta  delta_i = dO_i . o_i per query and head (fp32)
///   mla_grad_q_mma   dq_i = scale sum_j dS_ij k_j: a block per 128 queries
///                    and head streams 64-key tiles of k and v
///   mla_grad_kv_mma  dk_j = scale sum_i dS_ij q_i, dv_j = sum_i P_ij dO_i:
///                    a block per 128 keys and head streams 32-query tiles
///                    of q and dO
/// Each recomputes P_ij = exp(scale q_i.k_j - lse_i), dP_ij = dO_i.v_j and
/// dS_ij = P_ij (dP_ij - delta_i) from the same bf16 operands (fp32 sums);
/// P and dS are rounded to bf16 as the next MMA's A operand, as
/// FlashAttention-2 does. Causal with no past: query i sees keys 0 .. i.

/// x [rows, NH, D] (fp32) to y [NH, rows, DP] (bf16, features past D zero):
/// a block per row.
template <int Unused>
__global__ void mla_pack_heads(const float *x, i64 rows, i64 NH, i64 D, i64 DP,
                               unsigned short *y) {
  const i64 r = blockIdx.x;
  for (i64 idx = threadIdx.x; idx < NH * DP / 2; idx += blockDim.x) {
    i64 h = idx / (DP / 2), c = idx % (DP / 2) * 2;
    const float *xr = x + (r * NH + h) * D;
    float a = c < D ? xr[c] : 0.f, b = c + 1 < D ? xr[c + 1] : 0.f;
    *reinterpret_cast<unsigned *>(y + (h * rows + r) * DP + c) = packBf16x2(a, b);
  }
}

/// delta[h * T + i] = dO[i, h, :] . o[i, h, :] ([T, NH, DV] both): a warp per
/// (query, head).
template <int Unused>
__global__ void attention_delta(const float *dO, const float *o, float *delta, i64 T, i64 NH,
                                i64 DV) {
  i64 w = (i64(blockIdx.x) * blockDim.x + threadIdx.x) >> 5;
  int lane = threadIdx.x & 31;
  if (w >= T * NH)
    return;
  const float *a = dO + w * DV, *b = o + w * DV;
  float s = 0.f;
  for (i64 c = lane; c < DV; c += 32)
    s += a[c] * b[c];
  s = warpSum(s);
  if (lane == 0)
    delta[(w % NH) * T + w / NH] = s;
}

#define DSV3_GRAD_Q 128
#define DSV3_GRAD_Q_KEYS 64
/// Query side. qb/kb [NH, T, DQP], vb/dob [NH, T, DVP] (bf16, from
/// mla_pack_kv and mla_pack_heads), lse/delta [NH, T]; dq [T, NH, DN + DR]
/// (the rotated query's gradient). Shared (dynamic): the block's 128 query
/// rows and two stages of 64 keys of k and v, rows padded by 8 bf16: 134 KB
/// at V3 widths. dO's A fragments stay in registers.
template <int NH, int DN, int DR, int DV>
__global__ void __launch_bounds__(256)
    mla_grad_q_mma(const unsigned short *qb, const unsigned short *kb, const unsigned short *vb,
                   const unsigned short *dob, const float *lse, const float *delta, float *dq,
                   i64 T, float scale) {
  constexpr int DQ = DN + DR, DQP = (DQ + 15) / 16 * 16, DVP = (DV + 15) / 16 * 16;
  constexpr int BQ = DSV3_GRAD_Q, BK = DSV3_GRAD_Q_KEYS, KP = DQP + 8, VP = DVP + 8;
  constexpr int STAGE = BK * (KP + VP);
  extern __shared__ __align__(16) float gradQSmem[];
  unsigned short *qs = reinterpret_cast<unsigned short *>(gradQSmem), *stages = qs + BQ * KP;
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, t4 = lane & 3,
            m = lane >> 3, h = blockIdx.y;
  const i64 i0 = i64(gridDim.x - 1 - blockIdx.x) * BQ; // latest (heaviest) first
  const unsigned short *qh = qb + i64(h) * T * DQP, *kh = kb + i64(h) * T * DQP;
  const unsigned short *vh = vb + i64(h) * T * DVP, *doh = dob + i64(h) * T * DVP;
  const i64 row[2] = {i0 + warp * 16 + g, i0 + warp * 16 + g + 8};
  // The block's queries (rows past T repeat row T - 1: finite, never stored).
  for (int idx = tid; idx < BQ * DQP / 8; idx += blockDim.x) {
    int r = idx / (DQP / 8), c = idx % (DQP / 8) * 8;
    i64 i = i0 + r < T ? i0 + r : T - 1;
    cpAsync16(qs + r * KP + c, qh + i * DQP + c);
  }
  cpAsyncCommit();
  unsigned dof[DVP / 16][4]; // a0: (g, 2t) a1: (g+8, 2t) a2: (g, 2t+8) a3: (g+8, 2t+8)
#pragma unroll
  for (int kk = 0; kk < DVP / 16; ++kk)
#pragma unroll
    for (int f = 0; f < 4; ++f) {
      i64 r = row[f & 1];
      dof[kk][f] = r < T ? ld32(doh + r * DVP + kk * 16 + (f >> 1) * 8 + 2 * t4) : 0u;
    }
  const float log2e = 1.4426950408889634f, scaleLog2 = scale * log2e;
  float lrow[2], drow[2];
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    i64 r = row[half] < T ? row[half] : T - 1;
    lrow[half] = lse[h * T + r] * log2e;
    drow[half] = delta[h * T + r];
  }
  float acc[DQP / 8][4];
#pragma unroll
  for (int n = 0; n < DQP / 8; ++n)
    acc[n][0] = acc[n][1] = acc[n][2] = acc[n][3] = 0.f;
  const i64 lastQ = (i0 + BQ < T ? i0 + BQ : T) - 1;
  const i64 tiles = (lastQ + BK) / BK; // keys 0 .. lastQ
  const i64 warpFirst = i0 + warp * 16;
  auto loadTile = [&](i64 t, int stage) {
    unsigned short *ks = stages + stage * STAGE, *vs = ks + BK * KP;
    for (int idx = tid; idx < BK * DQP / 8; idx += blockDim.x) {
      int kk = idx / (DQP / 8), c = idx % (DQP / 8) * 8;
      i64 j = t * BK + kk < T ? t * BK + kk : T - 1;
      cpAsync16(ks + kk * KP + c, kh + j * DQP + c);
    }
    for (int idx = tid; idx < BK * DVP / 8; idx += blockDim.x) {
      int kk = idx / (DVP / 8), c = idx % (DVP / 8) * 8;
      i64 j = t * BK + kk < T ? t * BK + kk : T - 1;
      cpAsync16(vs + kk * VP + c, vh + j * DVP + c);
    }
    cpAsyncCommit();
  };
  loadTile(0, 0);
  for (i64 t = 0; t < tiles; ++t) {
    if (t + 1 < tiles) {
      loadTile(t + 1, int((t + 1) & 1));
      cpAsyncWait<1>(); // the queries and tile t have landed
    } else {
      cpAsyncWait<0>();
    }
    __syncthreads();
    const i64 k0 = t * BK;
    const unsigned short *ks = stages + int(t & 1) * STAGE, *vs = ks + BK * KP;
    if (k0 <= warpFirst + 15) { // else every key of the tile is after this warp's queries
      float sc[BK / 8][4], dp[BK / 8][4];
#pragma unroll
      for (int n = 0; n < BK / 8; ++n)
#pragma unroll
        for (int e = 0; e < 4; ++e)
          sc[n][e] = dp[n][e] = 0.f;
      // S = Q K^T: A from the query rows (ldmatrix: lanes 0-15 rows at
      // column 0, 16-31 at column 8), B from the key rows as in the forward.
      const unsigned short *arow = qs + (warp * 16 + (lane & 15)) * KP + (lane >> 4) * 8;
      const unsigned short *krow = ks + ((m >> 1) * 8 + (lane & 7)) * KP + (m & 1) * 8;
#pragma unroll
      for (int kk = 0; kk < DQP / 16; ++kk) {
        unsigned a[4];
        ldmatrixX4(a, arow + kk * 16);
#pragma unroll
        for (int n = 0; n < BK / 8; n += 2) {
          unsigned bk[4];
          ldmatrixX4(bk, krow + n * 8 * KP + kk * 16);
          mmaBf16(sc[n], a, bk);
          mmaBf16(sc[n + 1], a, bk + 2);
        }
      }
      // dP = dO V^T: V's rows (keys) as B, like the keys above.
      const unsigned short *vrow = vs + ((m >> 1) * 8 + (lane & 7)) * VP + (m & 1) * 8;
#pragma unroll
      for (int kk = 0; kk < DVP / 16; ++kk)
#pragma unroll
        for (int n = 0; n < BK / 8; n += 2) {
          unsigned bv[4];
          ldmatrixX4(bv, vrow + n * 8 * VP + kk * 16);
          mmaBf16(dp[n], dof[kk], bv);
          mmaBf16(dp[n + 1], dof[kk], bv + 2);
        }
      const bool diag = k0 + BK - 1 > warpFirst; // the causal edge crosses the tile
#pragma unroll
      for (int n = 0; n < BK / 8; ++n)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int half = e >> 1;
          i64 j = k0 + n * 8 + 2 * t4 + (e & 1);
          float p = diag && j > row[half] ? 0.f : fastExp2(sc[n][e] * scaleLog2 - lrow[half]);
          sc[n][e] = p * (dp[n][e] - drow[half]); // dS / scale
        }
      // dq += dS K: dS's accumulator layout is the A fragment; K's rows
      // (keys) are B's k dimension (ldmatrix trans, like V in the forward).
      const unsigned short *ktrow = ks + ((m & 1) * 8 + (lane & 7)) * KP + (m >> 1) * 8;
#pragma unroll
      for (int kk = 0; kk < BK / 16; ++kk) {
        unsigned pa[4] = {packBf16x2(sc[2 * kk][0], sc[2 * kk][1]),
                          packBf16x2(sc[2 * kk][2], sc[2 * kk][3]),
                          packBf16x2(sc[2 * kk + 1][0], sc[2 * kk + 1][1]),
                          packBf16x2(sc[2 * kk + 1][2], sc[2 * kk + 1][3])};
#pragma unroll
        for (int n = 0; n < DQP / 8; n += 2) {
          unsigned bk[4];
          ldmatrixX4Trans(bk, ktrow + kk * 16 * KP + n * 8);
          mmaBf16(acc[n], pa, bk);
          mmaBf16(acc[n + 1], pa, bk + 2);
        }
      }
    }
    __syncthreads(); // the stage is refilled next iteration
  }
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    i64 r = row[half];
    if (r >= T)
      continue;
    float *out = dq + (r * NH + h) * DQ;
#pragma unroll
    for (int n = 0; n < DQP / 8; ++n) {
      int c = n * 8 + 2 * t4;
      if (c < DQ)
        out[c] = acc[n][2 * half] * scale;
      if (c + 1 < DQ)
        out[c + 1] = acc[n][2 * half + 1] * scale;
    }
  }
}

#define DSV3_GRAD_KV 128
#define DSV3_GRAD_KV_QUERIES 32
/// Key side. Operands as mla_grad_q_mma; du [T, NH, DN + DV] (the nope
/// key's and the value's gradients), dkp [T, NH, DR] (the rotated rope
/// key's, per head). Shared (dynamic): the block's 128 key and value rows
/// and two stages of 32 query rows of q and dO (with their lse and delta):
/// 127 KB at V3 widths. Each warp's 16 keys accumulate dk and dv in
/// registers over the queries at or after them.
template <int NH, int DN, int DR, int DV>
__global__ void __launch_bounds__(256)
    mla_grad_kv_mma(const unsigned short *qb, const unsigned short *kb, const unsigned short *vb,
                    const unsigned short *dob, const float *lse, const float *delta, float *du,
                    float *dkp, i64 T, float scale) {
  constexpr int DQ = DN + DR, DQP = (DQ + 15) / 16 * 16, DVP = (DV + 15) / 16 * 16;
  constexpr int BKV = DSV3_GRAD_KV, QT = DSV3_GRAD_KV_QUERIES, KP = DQP + 8, VP = DVP + 8;
  constexpr int STAGE = QT * (KP + VP) + 4 * QT; // bf16 units: q, dO, then lse and delta
  extern __shared__ __align__(16) float gradKvSmem[];
  unsigned short *ks = reinterpret_cast<unsigned short *>(gradKvSmem), *vs = ks + BKV * KP;
  unsigned short *stages = vs + BKV * VP;
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, t4 = lane & 3,
            m = lane >> 3, h = blockIdx.y;
  const i64 k0 = i64(blockIdx.x) * BKV; // earliest (heaviest) first
  const unsigned short *qh = qb + i64(h) * T * DQP, *kh = kb + i64(h) * T * DQP;
  const unsigned short *vh = vb + i64(h) * T * DVP, *doh = dob + i64(h) * T * DVP;
  const i64 key[2] = {k0 + warp * 16 + g, k0 + warp * 16 + g + 8};
  const i64 warpFirst = k0 + warp * 16;
  for (int idx = tid; idx < BKV * DQP / 8; idx += blockDim.x) {
    int r = idx / (DQP / 8), c = idx % (DQP / 8) * 8;
    i64 j = k0 + r < T ? k0 + r : T - 1;
    cpAsync16(ks + r * KP + c, kh + j * DQP + c);
  }
  for (int idx = tid; idx < BKV * DVP / 8; idx += blockDim.x) {
    int r = idx / (DVP / 8), c = idx % (DVP / 8) * 8;
    i64 j = k0 + r < T ? k0 + r : T - 1;
    cpAsync16(vs + r * VP + c, vh + j * DVP + c);
  }
  cpAsyncCommit();
  const float log2e = 1.4426950408889634f, scaleLog2 = scale * log2e;
  float dk[DQP / 8][4], dv[DVP / 8][4];
#pragma unroll
  for (int n = 0; n < DQP / 8; ++n)
    dk[n][0] = dk[n][1] = dk[n][2] = dk[n][3] = 0.f;
#pragma unroll
  for (int n = 0; n < DVP / 8; ++n)
    dv[n][0] = dv[n][1] = dv[n][2] = dv[n][3] = 0.f;
  const i64 tiles = (T - k0 + QT - 1) / QT; // queries k0 .. T - 1
  auto loadTile = [&](i64 t, int stage) {
    unsigned short *qs = stages + stage * STAGE, *ds = qs + QT * KP;
    float *ls = reinterpret_cast<float *>(ds + QT * VP);
    const i64 q0 = k0 + t * QT;
    for (int idx = tid; idx < QT * DQP / 8; idx += blockDim.x) {
      int r = idx / (DQP / 8), c = idx % (DQP / 8) * 8;
      i64 i = q0 + r < T ? q0 + r : T - 1;
      cpAsync16(qs + r * KP + c, qh + i * DQP + c);
    }
    for (int idx = tid; idx < QT * DVP / 8; idx += blockDim.x) {
      int r = idx / (DVP / 8), c = idx % (DVP / 8) * 8;
      i64 i = q0 + r < T ? q0 + r : T - 1;
      cpAsync16(ds + r * VP + c, doh + i * DVP + c);
    }
    cpAsyncCommit();
    // lse and delta of the tile's queries: plain loads (rows of [NH, T]
    // need not be 16-byte aligned); this stage was released by the last
    // iteration's closing barrier and is read after the next one.
    if (tid < QT) {
      i64 i = q0 + tid < T ? q0 + tid : T - 1;
      ls[tid] = lse[h * T + i] * log2e;
      ls[QT + tid] = delta[h * T + i];
    }
  };
  loadTile(0, 0);
  for (i64 t = 0; t < tiles; ++t) {
    if (t + 1 < tiles) {
      loadTile(t + 1, int((t + 1) & 1));
      cpAsyncWait<1>(); // the keys and tile t have landed
    } else {
      cpAsyncWait<0>();
    }
    __syncthreads();
    const i64 q0 = k0 + t * QT;
    const unsigned short *qs = stages + int(t & 1) * STAGE, *ds = qs + QT * KP;
    const float *ls = reinterpret_cast<const float *>(ds + QT * VP), *dl = ls + QT;
    if (q0 + QT - 1 >= warpFirst) { // else every query of the tile is before this warp's keys
      float st[QT / 8][4], dpt[QT / 8][4]; // S^T and dP^T: rows keys, columns queries
#pragma unroll
      for (int n = 0; n < QT / 8; ++n)
#pragma unroll
        for (int e = 0; e < 4; ++e)
          st[n][e] = dpt[n][e] = 0.f;
      // S^T = K Q^T: A from this warp's key rows, B from the query rows.
      const unsigned short *arow = ks + (warp * 16 + (lane & 15)) * KP + (lane >> 4) * 8;
      const unsigned short *qrow = qs + ((m >> 1) * 8 + (lane & 7)) * KP + (m & 1) * 8;
#pragma unroll
      for (int kk = 0; kk < DQP / 16; ++kk) {
        unsigned a[4];
        ldmatrixX4(a, arow + kk * 16);
#pragma unroll
        for (int n = 0; n < QT / 8; n += 2) {
          unsigned b[4];
          ldmatrixX4(b, qrow + n * 8 * KP + kk * 16);
          mmaBf16(st[n], a, b);
          mmaBf16(st[n + 1], a, b + 2);
        }
      }
      // dP^T = V dO^T.
      const unsigned short *avrow = vs + (warp * 16 + (lane & 15)) * VP + (lane >> 4) * 8;
      const unsigned short *dorow = ds + ((m >> 1) * 8 + (lane & 7)) * VP + (m & 1) * 8;
#pragma unroll
      for (int kk = 0; kk < DVP / 16; ++kk) {
        unsigned a[4];
        ldmatrixX4(a, avrow + kk * 16);
#pragma unroll
        for (int n = 0; n < QT / 8; n += 2) {
          unsigned b[4];
          ldmatrixX4(b, dorow + n * 8 * VP + kk * 16);
          mmaBf16(dpt[n], a, b);
          mmaBf16(dpt[n + 1], a, b + 2);
        }
      }
      const bool diag = q0 < warpFirst + 15; // some query precedes some key
#pragma unroll
      for (int n = 0; n < QT / 8; ++n)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int qi = n * 8 + 2 * t4 + (e & 1);
          const i64 i = q0 + qi;
          bool masked = i >= T || (diag && i < key[e >> 1]);
          float p = masked ? 0.f : fastExp2(st[n][e] * scaleLog2 - ls[qi]);
          st[n][e] = p;
          dpt[n][e] = p * (dpt[n][e] - dl[qi]); // dS^T / scale
        }
      // dv += P^T dO and dk += dS^T Q: the queries are the k dimension
      // (ldmatrix trans over the tile's rows).
      const unsigned short *dotrow = ds + ((m & 1) * 8 + (lane & 7)) * VP + (m >> 1) * 8;
      const unsigned short *qtrow = qs + ((m & 1) * 8 + (lane & 7)) * KP + (m >> 1) * 8;
#pragma unroll
      for (int kk = 0; kk < QT / 16; ++kk) {
        unsigned pa[4] = {packBf16x2(st[2 * kk][0], st[2 * kk][1]),
                          packBf16x2(st[2 * kk][2], st[2 * kk][3]),
                          packBf16x2(st[2 * kk + 1][0], st[2 * kk + 1][1]),
                          packBf16x2(st[2 * kk + 1][2], st[2 * kk + 1][3])};
        unsigned da[4] = {packBf16x2(dpt[2 * kk][0], dpt[2 * kk][1]),
                          packBf16x2(dpt[2 * kk][2], dpt[2 * kk][3]),
                          packBf16x2(dpt[2 * kk + 1][0], dpt[2 * kk + 1][1]),
                          packBf16x2(dpt[2 * kk + 1][2], dpt[2 * kk + 1][3])};
#pragma unroll
        for (int n = 0; n < DVP / 8; n += 2) {
          unsigned b[4];
          ldmatrixX4Trans(b, dotrow + kk * 16 * VP + n * 8);
          mmaBf16(dv[n], pa, b);
          mmaBf16(dv[n + 1], pa, b + 2);
        }
#pragma unroll
        for (int n = 0; n < DQP / 8; n += 2) {
          unsigned b[4];
          ldmatrixX4Trans(b, qtrow + kk * 16 * KP + n * 8);
          mmaBf16(dk[n], da, b);
          mmaBf16(dk[n + 1], da, b + 2);
        }
      }
    }
    __syncthreads(); // the stage is refilled next iteration
  }
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    i64 j = key[half];
    if (j >= T)
      continue;
    float *u = du + (j * NH + h) * (DN + DV), *kp = dkp + (j * NH + h) * DR;
#pragma unroll
    for (int n = 0; n < DQP / 8; ++n)
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        int c = n * 8 + 2 * t4 + e;
        float v = dk[n][2 * half + e] * scale;
        if (c < DN)
          u[c] = v;
        else if (c < DQ)
          kp[c - DN] = v;
      }
#pragma unroll
    for (int n = 0; n < DVP / 8; ++n)
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        int c = n * 8 + 2 * t4 + e;
        if (c < DV)
          u[DN + c] = dv[n][2 * half + e];
      }
  }
}

/// The attention backward on Hopper's warpgroup MMA (sm_90a; other targets
/// trap): mla_grad_q_mma's and mla_grad_kv_mma's products as
/// `wgmma.mma_async`, whose B operand the tensor cores read from shared
/// memory once a warpgroup (mma.sync's ldmatrix fed each warp its own copy:
/// those kernels moved several times the bytes of their MMAs through shared
/// memory and ran at ~120-150 TFLOP/s at V3 widths). Every tile is kept in
/// 64-wide 128B-swizzle atoms ([rows][64] bf16, rows 128 bytes apart, atoms
/// 1024-byte aligned), read K-major where the tile's columns are the
/// contraction (q.k, dO.v) and N-major (the transpose bit) where its rows
/// are (dS k, P^T dO, dS^T q): one copy of each tile serves both. The
/// N-major products run one m64n64 MMA a 64-wide atom, so their descriptor
/// needs no leading-dimension offset: 8-row groups 1024 bytes apart, as
/// K-major. Operands as the mma kernels (bf16 [NH, T, D] rows, D % 64 == 0:
/// mlaGradWgmmaFits); the same fp32 sums and bf16 roundings of P and dS.
__device__ __forceinline__ void wgmmaBf16SS_N32(float (&d)[16], unsigned long long da,
                                                unsigned long long db, int accumulate) {
  asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %18, 0;\n"
               "wgmma.mma_async.sync.aligned.m64n32k16.f32.bf16.bf16 "
               "{%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15}, %16, %17, p, 1, 1, 0, 0;\n}\n"
               : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15])
               : "l"(da), "l"(db), "r"(accumulate));
}
__device__ __forceinline__ void wgmmaBf16SS_N64(float (&d)[32], unsigned long long da,
                                                unsigned long long db, int accumulate) {
  asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\n"
               "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 "
               "{%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31}, %32, %33, p, 1, 1, 0, 0;\n}\n"
               : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
               : "l"(da), "l"(db), "r"(accumulate));
}
__device__ __forceinline__ void wgmmaBf16RegA_N64T(float (&d)[32], const unsigned (&a)[4],
                                                   unsigned long long db) {
  asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, 1, 0;\n"
               "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 "
               "{%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31}, {%32,%33,%34,%35}, %36, p, 1, 1, 1;\n}\n"
               : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(db));
}
/// A block's shared memory, 1024-aligned (the swizzle's period).
__device__ __forceinline__ unsigned short *swizzleAligned(float *smem) {
  return reinterpret_cast<unsigned short *>((reinterpret_cast<unsigned long long>(smem) + 1023) &
                                            ~1023ull);
}
/// K-major descriptor of k16 step kk of a [rows][D] tile in atoms of
/// `rows` rows, starting at row `at`.
__device__ __forceinline__ unsigned long long kMajorStep(const unsigned short *tile, int rows,
                                                         int at, int kk) {
  return wgmmaDesc(tile + (kk / 4) * rows * 64 + at * 64) +
         (unsigned long long)(((kk % 4) * 32) >> 4);
}

/// The tile pipeline of the attention backward's two sides (cp.async
/// copies by every thread into Stages stages): the prologue copies tiles 0
/// and 1 and waits for tile 0; each step waits for tile t + 1, whose
/// barrier also means every warpgroup is done with tile t - 1's stage (its
/// MMAs were waited for), and copies tile t + 2 into that stage.
template <int Stages, typename Load>
__device__ __forceinline__ void gradTilesFirst(i64 tiles, Load &&loadTile) {
  loadTile(0, 0); // one group with the block's own rows
  cpAsyncCommit();
  if (tiles > 1)
    loadTile(1, 1);
  cpAsyncCommit();
  cpAsyncWait<1>();
  // The copies (generic proxy) are read next by the tensor cores (async
  // proxy).
  asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
  __syncthreads();
}
template <int Stages, typename Load>
__device__ __forceinline__ void gradTilesNext(i64 t, i64 tiles, Load &&loadTile) {
  static_assert(Stages == 3, "tile t + 2 goes to tile t - 1's stage");
  cpAsyncWait<0>();
  asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
  __syncthreads();
  if (t + 2 < tiles)
    loadTile(t + 2, int((t + 2) % Stages));
  cpAsyncCommit();
}

#define DSV3_GRAD_Q_STAGES 3
#define DSV3_GRAD_KV_STAGES 3
/// Query side: a block of 128 queries (a warpgroup's 64 each) over 64-key
/// tiles. Shared: the queries and dO (A of S = Q K^T and dP = dO V^T), and
/// three stages of keys and values: 201 KB at V3 widths.
template <int NH, int DN, int DR, int DV>
__global__ void __launch_bounds__(256, 1)
    mla_grad_q_wgmma(const unsigned short *qb, const unsigned short *kb,
                     const unsigned short *vb, const unsigned short *dob, const float *lse,
                     const float *delta, float *dq, i64 T, float scale) {
#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
  constexpr int DQ = DN + DR, KA = DQ / 64, BQ = 128, BK = 64, Stages = DSV3_GRAD_Q_STAGES;
  static_assert(DQ % 64 == 0 && DV % 64 == 0, "mlaGradWgmmaFits");
  constexpr int Stage = BK * (DQ + DV);
  extern __shared__ __align__(1024) float gradQWgSmem[];
  unsigned short *qs = swizzleAligned(gradQWgSmem), *ds = qs + BQ * DQ, *stages = ds + BQ * DV;
  const int tid = threadIdx.x, wg = tid >> 7, warp = (tid >> 5) & 3, lane = tid & 31,
            g = lane >> 2, t4 = lane & 3, h = blockIdx.y;
  const i64 i0 = i64(gridDim.x - 1 - blockIdx.x) * BQ; // latest (heaviest) first
  const unsigned short *qh = qb + i64(h) * T * DQ, *kh = kb + i64(h) * T * DQ;
  const unsigned short *vh = vb + i64(h) * T * DV, *doh = dob + i64(h) * T * DV;
  const i64 wgFirst = i0 + wg * 64;
  const i64 row[2] = {wgFirst + warp * 16 + g, wgFirst + warp * 16 + g + 8};
  swizzledRows<DQ, BQ>(qs, qh, DQ, i0, T);
  swizzledRows<DV, BQ>(ds, doh, DV, i0, T);
  const float log2e = 1.4426950408889634f, scaleLog2 = scale * log2e;
  float lrow[2], drow[2];
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    i64 r = row[half] < T ? row[half] : T - 1;
    lrow[half] = lse[h * T + r] * log2e;
    drow[half] = delta[h * T + r];
  }
  float acc[KA][32];
#pragma unroll
  for (int a = 0; a < KA; ++a)
#pragma unroll
    for (int e = 0; e < 32; ++e)
      acc[a][e] = 0.f;
  const i64 lastQ = (i0 + BQ < T ? i0 + BQ : T) - 1;
  const i64 tiles = (lastQ + BK) / BK; // keys 0 .. lastQ
  auto loadTile = [&](i64 t, int st) {
    unsigned short *ks = stages + st * Stage, *vs = ks + BK * DQ;
    swizzledRows<DQ, BK>(ks, kh, DQ, t * BK, T);
    swizzledRows<DV, BK>(vs, vh, DV, t * BK, T);
  };
  // S = Q K^T and dP = dO V^T of key tile t (its stage).
  auto issueScores = [&](float (&sc)[32], float (&dp)[32], i64 t) {
    const unsigned short *ks = stages + int(t % Stages) * Stage, *vs = ks + BK * DQ;
#pragma unroll
    for (int kk = 0; kk < DQ / 16; ++kk)
      wgmmaBf16SS_N64(sc, kMajorStep(qs, BQ, wg * 64, kk), kMajorStep(ks, BK, 0, kk), kk > 0);
#pragma unroll
    for (int kk = 0; kk < DV / 16; ++kk)
      wgmmaBf16SS_N64(dp, kMajorStep(ds, BQ, wg * 64, kk), kMajorStep(vs, BK, 0, kk), kk > 0);
  };
  // Tile t's scores are issued behind tile t - 1's dq products, so the
  // tensor cores run them back to back: a stage holds tile t + 1 while t
  // is multiplied and t - 1's products finish, hence three. Every wait is
  // a full one (ptxas serializes a kernel's MMAs where a wait leaves a
  // group pending across the tile's barrier), and no branch stands between
  // MMAs: a warpgroup multiplies the tile wholly after its queries too (p
  // = 0 there adds zeros, which leave dq's bits as they are), and the last
  // tile issues scores of a stale stage that nothing reads.
  gradTilesFirst<Stages>(tiles, loadTile); // the queries, dO and tile 0 landed
  float sc[32], dp[32]; // the first MMA of each ignores them (scale-d 0)
  // dq's zeros are tied here, before the first scores' MMAs: sunk below
  // them, they are non-MMA definitions of accumulators inside an MMA
  // pipeline stage, which ptxas answers by serializing every MMA (C7515).
#pragma unroll
  for (int a = 0; a < KA; ++a)
    wgmmaLanded(acc[a]);
  wgmmaFence();
  issueScores(sc, dp, 0);
  wgmmaCommit();
  for (i64 t = 0; t < tiles; ++t) {
    wgmmaWait<0>(); // tile t's scores, and tile t - 1's dq products
    wgmmaLanded(sc);
    wgmmaLanded(dp);
    gradTilesNext<Stages>(t, tiles, loadTile);
    const i64 k0 = t * BK;
    const bool diag = k0 + BK - 1 > wgFirst; // the causal edge crosses the tile
#pragma unroll
    for (int n = 0; n < 8; ++n)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int half = e >> 1;
        const i64 j = k0 + n * 8 + 2 * t4 + (e & 1);
        float p = diag && j > row[half] ? 0.f : fastExp2(sc[4 * n + e] * scaleLog2 - lrow[half]);
        sc[4 * n + e] = p * (dp[4 * n + e] - drow[half]); // dS / scale
      }
    unsigned pa[4][4];
#pragma unroll
    for (int kk = 0; kk < 4; ++kk)
      attentionProbFragment(pa[kk], sc, kk);
    // dq += dS K: the key tile N-major (its rows are the contraction).
    const unsigned short *ks = stages + int(t % Stages) * Stage;
    wgmmaFence();
#pragma unroll
    for (int kk = 0; kk < 4; ++kk)
#pragma unroll
      for (int a = 0; a < KA; ++a)
        wgmmaBf16RegA_N64T(acc[a], pa[kk], wgmmaDesc(ks + a * BK * 64 + kk * 16 * 64));
    issueScores(sc, dp, t + 1);
    wgmmaCommit();
  }
  wgmmaWait<0>();
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    const i64 r = row[half];
    if (r >= T)
      continue;
    float *out = dq + (r * NH + h) * DQ;
#pragma unroll
    for (int a = 0; a < KA; ++a)
#pragma unroll
      for (int n = 0; n < 8; ++n) {
        const int c = a * 64 + n * 8 + 2 * t4;
        *reinterpret_cast<float2 *>(out + c) =
            make_float2(acc[a][4 * n + 2 * half] * scale, acc[a][4 * n + 2 * half + 1] * scale);
      }
  }
#else
  __trap(); // sm_90a only (the launcher checks the GPU)
#endif
}

/// Key side: a block of 128 keys (a warpgroup's 64 each) over the queries
/// at or after them, 64 a stage, multiplied 32 at a time (the accumulators
/// dk and dv take 160 registers a thread at V3 widths). Shared: the keys
/// and values (A of S^T = K Q^T and dP^T = V dO^T), and three stages of
/// queries and dO with their log-sum-exp and delta: 204 KB at V3 widths.
template <int NH, int DN, int DR, int DV>
__global__ void __launch_bounds__(256, 1)
    mla_grad_kv_wgmma(const unsigned short *qb, const unsigned short *kb,
                      const unsigned short *vb, const unsigned short *dob, const float *lse,
                      const float *delta, float *du, float *dkp, i64 T, float scale) {
#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
  constexpr int DQ = DN + DR, KA = DQ / 64, VA = DV / 64, BKV = 128, QT = 64, QH = 32;
  constexpr int Stages = DSV3_GRAD_KV_STAGES;
  static_assert(DQ % 64 == 0 && DV % 64 == 0, "mlaGradWgmmaFits");
  // bf16 units: the query and dO rows, then lse and delta (2 QT floats) in
  // 1 KB, so every stage starts at a swizzle period.
  constexpr int Stage = QT * (DQ + DV) + 512;
  extern __shared__ __align__(1024) float gradKvWgSmem[];
  unsigned short *ks = swizzleAligned(gradKvWgSmem), *vs = ks + BKV * DQ,
                 *stages = vs + BKV * DV;
  const int tid = threadIdx.x, wg = tid >> 7, warp = (tid >> 5) & 3, lane = tid & 31,
            g = lane >> 2, t4 = lane & 3, h = blockIdx.y;
  const i64 k0 = i64(blockIdx.x) * BKV; // earliest (heaviest) first
  const unsigned short *qh = qb + i64(h) * T * DQ, *kh = kb + i64(h) * T * DQ;
  const unsigned short *vh = vb + i64(h) * T * DV, *doh = dob + i64(h) * T * DV;
  const i64 wgFirst = k0 + wg * 64;
  const i64 key[2] = {wgFirst + warp * 16 + g, wgFirst + warp * 16 + g + 8};
  swizzledRows<DQ, BKV>(ks, kh, DQ, k0, T);
  swizzledRows<DV, BKV>(vs, vh, DV, k0, T);
  const float log2e = 1.4426950408889634f, scaleLog2 = scale * log2e;
  float dk[KA][32], dv[VA][32];
#pragma unroll
  for (int a = 0; a < KA; ++a)
#pragma unroll
    for (int e = 0; e < 32; ++e)
      dk[a][e] = 0.f;
#pragma unroll
  for (int a = 0; a < VA; ++a)
#pragma unroll
    for (int e = 0; e < 32; ++e)
      dv[a][e] = 0.f;
  const i64 tiles = (T - k0 + QT - 1) / QT; // queries k0 .. T - 1
  auto loadTile = [&](i64 t, int st) {
    unsigned short *qs = stages + st * Stage, *dos = qs + QT * DQ;
    float *ls = reinterpret_cast<float *>(dos + QT * DV);
    const i64 q0 = k0 + t * QT;
    swizzledRows<DQ, QT>(qs, qh, DQ, q0, T);
    swizzledRows<DV, QT>(dos, doh, DV, q0, T);
    // lse and delta: plain stores (rows of [NH, T] need not be 16-byte
    // aligned); this stage was released by this iteration's opening
    // barrier and is read after the next one.
    if (tid < QT) {
      const i64 i = q0 + tid < T ? q0 + tid : T - 1;
      ls[tid] = lse[h * T + i] * log2e;
      ls[QT + tid] = delta[h * T + i];
    }
  };
  // S^T and dP^T of part `part` of query tile t (rows keys, columns its 32
  // queries).
  auto issueScores = [&](float (&st)[16], float (&dpt)[16], i64 t, int part) {
    const unsigned short *qs = stages + int(t % Stages) * Stage, *dos = qs + QT * DQ;
#pragma unroll
    for (int kk = 0; kk < DQ / 16; ++kk)
      wgmmaBf16SS_N32(st, kMajorStep(ks, BKV, wg * 64, kk), kMajorStep(qs, QT, part * QH, kk),
                      kk > 0);
#pragma unroll
    for (int kk = 0; kk < DV / 16; ++kk)
      wgmmaBf16SS_N32(dpt, kMajorStep(vs, BKV, wg * 64, kk), kMajorStep(dos, QT, part * QH, kk),
                      kk > 0);
  };
  // P^T and dS^T / scale of a part as the A fragments of its products.
  // A query before a key has p = 0 (so dS^T = 0): a part wholly before
  // this warpgroup's keys adds zeros, which leave dk and dv's bits as they
  // are (x + 0 = x), so no branch stands between the MMAs.
  auto probabilities = [&](float (&st)[16], float (&dpt)[16], i64 t, int part,
                           unsigned (&pa)[2][4], unsigned (&da)[2][4]) {
    const float *ls = reinterpret_cast<const float *>(stages + int(t % Stages) * Stage +
                                                      QT * (DQ + DV)),
                *dl = ls + QT;
    const i64 q0 = k0 + t * QT + part * QH;
#pragma unroll
    for (int n = 0; n < QH / 8; ++n)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int qi = part * QH + n * 8 + 2 * t4 + (e & 1);
        const i64 i = q0 + n * 8 + 2 * t4 + (e & 1);
        const bool masked = i >= T || i < key[e >> 1];
        const float p = masked ? 0.f : fastExp2(st[4 * n + e] * scaleLog2 - ls[qi]);
        st[4 * n + e] = p;
        dpt[4 * n + e] = p * (dpt[4 * n + e] - dl[qi]); // dS^T / scale
      }
#pragma unroll
    for (int kk = 0; kk < 2; ++kk) {
      attentionProbFragment(pa[kk], st, kk);
      attentionProbFragment(da[kk], dpt, kk);
    }
  };
  // dv += P^T dO and dk += dS^T Q: the query and dO tiles N-major.
  auto issueGrads = [&](const unsigned (&pa)[2][4], const unsigned (&da)[2][4], i64 t, int part) {
    const unsigned short *qs = stages + int(t % Stages) * Stage, *dos = qs + QT * DQ;
#pragma unroll
    for (int kk = 0; kk < 2; ++kk) {
      const int r = part * QH + kk * 16;
#pragma unroll
      for (int a = 0; a < VA; ++a)
        wgmmaBf16RegA_N64T(dv[a], pa[kk], wgmmaDesc(dos + a * QT * 64 + r * 64));
#pragma unroll
      for (int a = 0; a < KA; ++a)
        wgmmaBf16RegA_N64T(dk[a], da[kk], wgmmaDesc(qs + a * QT * 64 + r * 64));
    }
  };
  static_assert(QT / QH == 2, "a tile's two parts are pipelined by hand");
  // Each part's scores are issued right behind the previous part's
  // products (part 0's behind the last tile's part 1), so the tensor cores
  // run them back to back: a stage holds tile t + 1 while t is multiplied
  // and t - 1's last products finish, hence three. Every wait is a full
  // one (ptxas serializes a kernel's MMAs where a wait leaves a group
  // pending across the tile's barrier), and the last tile issues scores of
  // a stale stage that nothing reads. ptxas spills ~40 bytes at V3 widths
  // (255 registers); the waits saved are worth more (same-call A/B on the
  // H200, train 4x4096: 551.8 -> 538.7 ms against the tile-only form).
  gradTilesFirst<Stages>(tiles, loadTile); // the keys, values and tile 0 landed
  // One pair of score registers: a part's scores become its A fragments
  // (pa, da) before the next part's scores are issued into them.
  float st[16], dpt[16]; // each part's first MMA ignores them (scale-d 0)
  unsigned pa[2][4], da[2][4];
  // dk and dv's zeros are tied here, before the first scores' MMAs: sunk
  // below them, they are non-MMA definitions of accumulators inside an MMA
  // pipeline stage, which ptxas answers by serializing every MMA (C7515).
#pragma unroll
  for (int a = 0; a < KA; ++a)
    wgmmaLanded(dk[a]);
#pragma unroll
  for (int a = 0; a < VA; ++a)
    wgmmaLanded(dv[a]);
  wgmmaFence();
  issueScores(st, dpt, 0, 0);
  wgmmaCommit();
  for (i64 t = 0; t < tiles; ++t) {
    wgmmaWait<0>(); // part 0's scores, and the last tile's products
    gradTilesNext<Stages>(t, tiles, loadTile);
    probabilities(st, dpt, t, 0, pa, da);
    wgmmaFence();
    issueGrads(pa, da, t, 0);
    issueScores(st, dpt, t, 1);
    wgmmaCommit();
    wgmmaWait<0>();
    probabilities(st, dpt, t, 1, pa, da);
    wgmmaFence();
    issueGrads(pa, da, t, 1);
    issueScores(st, dpt, t + 1, 0);
    wgmmaCommit();
  }
  wgmmaWait<0>();
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    const i64 j = key[half];
    if (j >= T)
      continue;
    float *u = du + (j * NH + h) * (DN + DV), *kp = dkp + (j * NH + h) * DR;
#pragma unroll
    for (int a = 0; a < KA; ++a)
#pragma unroll
      for (int n = 0; n < 8; ++n)
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          const int c = a * 64 + n * 8 + 2 * t4 + e;
          const float v = dk[a][4 * n + 2 * half + e] * scale;
          if (c < DN)
            u[c] = v;
          else
            kp[c - DN] = v;
        }
#pragma unroll
    for (int a = 0; a < VA; ++a)
#pragma unroll
      for (int n = 0; n < 8; ++n) {
        const int c = a * 64 + n * 8 + 2 * t4;
        u[DN + c] = dv[a][4 * n + 2 * half];
        u[DN + c + 1] = dv[a][4 * n + 2 * half + 1];
      }
  }
#else
  __trap(); // sm_90a only (the launcher checks the GPU)
#endif
}

/// y[r, j] += sum over the `items` of x[r, item, j] (x rows [items, n];
/// y rows ldy apart): the shared rope key's gradient summed over heads.
template <int Unused>
__global__ void sum_items(const float *x, i64 rows, i64 items, i64 n, float *y, i64 ldy) {
  i64 id = i64(blockIdx.x) * blockDim.x + threadIdx.x;
  if (id >= rows * n)
    return;
  i64 r = id / n, j = id % n;
  float s = 0.f;
  for (i64 it = 0; it < items; ++it)
    s += x[(r * items + it) * n + j];
  y[r * ldy + j] += s;
}

} // namespace dsv3
