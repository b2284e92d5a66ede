//===- HostMath.h - helpers shared by the host kernels -------------*- C++ -*-===//
//
// Parameter access, row operations, RoPE and the MLA projections, shared
// by the forward kernels (HostKernels.cpp) and their vector-Jacobian
// products (HostGradKernels.cpp).
//
//===----------------------------------------------------------------------===//
#ifndef DSV3_RUNTIME_HOST_HOSTMATH_H
#define DSV3_RUNTIME_HOST_HOSTMATH_H

#include "runtime/DType.h"
#include "runtime/Fp8Launch.h"
#include "runtime/host/HostTensor.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <memory>
#include <numeric>
#include <vector>

namespace dsv3rt::host {

using json = nlohmann::json;

template <typename Real> using T = HostTensor<Real>;
template <typename Real> using Ins = std::vector<HostTensor<Real> *>;

inline int64_t geti(const std::string &k, const json &p, const char *name) {
  if (!p.contains(name) || !p[name].is_number_integer())
    fail("kernel {}: parameter \"{}\" is missing or not an integer", k, name);
  return p[name].get<int64_t>();
}
inline double getf(const std::string &k, const json &p, const char *name) {
  if (!p.contains(name) || !p[name].is_number())
    fail("kernel {}: parameter \"{}\" is missing or not a number", k, name);
  return p[name].get<double>();
}
inline bool getb(const json &p, const char *name) {
  return p.contains(name) && p[name].is_boolean() && p[name].get<bool>();
}
inline std::string gets(const std::string &k, const json &p, const char *name) {
  if (!p.contains(name) || !p[name].is_string())
    fail("kernel {}: parameter \"{}\" is missing or not a string", k, name);
  return p[name].get<std::string>();
}

template <typename Real>
void setShape(const std::string &k, T<Real> &t, std::vector<int64_t> shape) {
  t.shape = std::move(shape);
  if (size_t(t.numel()) > t.capacity)
    fail("kernel {}: output of shape {} needs {} elements but its buffer "
         "holds {} (the artifact was planned for smaller sizes: recompile with "
         "larger --max-batch / --max-seq)",
         k, fmt::format("{}", fmt::join(t.shape, "x")), t.numel(), t.capacity);
}

template <typename Real>
void expectLast(const std::string &k, const T<Real> &t, int64_t n, const char *what) {
  if (t.shape.empty() || t.shape.back() != n)
    fail("kernel {}: {} has last extent {}, expected {}", k, what,
         t.shape.empty() ? 0 : t.shape.back(), n);
}

inline int64_t rowsOf(const std::vector<int64_t> &s) {
  int64_t n = 1;
  for (size_t i = 0; i + 1 < s.size(); ++i)
    n *= s[i];
  return n;
}

/// One head's unscaled MLA attention logit: qNope . kNope (over n: the
/// nope head dim, or the latent rank in the absorbed decode) + qRope .
/// kRope (over dr; the rope key is shared by the heads). Forward, absorbed
/// decode and the backward's recomputation share this order of summation.
template <typename Real>
Real mlaLogit(const Real *qNope, const Real *kNope, int64_t n, const Real *qRope,
              const Real *kRope, int64_t dr) {
  Real acc = 0;
  for (int64_t j = 0; j < n; ++j)
    acc += qNope[j] * kNope[j];
  for (int64_t j = 0; j < dr; ++j)
    acc += qRope[j] * kRope[j];
  return acc;
}

/// y[o] = sum_i x[i] W[o, i] (+ b[o]); W stored [out, in].
template <typename Real>
void matvec(const Real *x, const Real *W, int64_t out, int64_t in, Real *y,
            const Real *bias = nullptr) {
  for (int64_t o = 0; o < out; ++o) {
    const Real *w = W + o * in;
    Real acc = 0;
    for (int64_t i = 0; i < in; ++i)
      acc += x[i] * w[i];
    y[o] = bias ? acc + bias[o] : acc;
  }
}

/// The roundings to e4m3 (and bf16, in a rounded cache) of one host run
/// that sit near a rounding boundary, so that a second run of the same
/// program (verify's float64 reference of an fp32 run) can take them the
/// same way. The two runs' values differ by fp32's error (~1e-6 relative);
/// a value that close to a boundary between two codes rounds to either, and
/// the other code is a whole step away (6-12% for e4m3): one such flip
/// moves a token's logits by ~1e-3, far past what the comparison is meant
/// to resolve. Recording every code that a small nudge would change (1e-4
/// of the value, or a rounding's own absolute window), and every expert
/// choice between near-tied scores (routeToken), and replaying them, leaves
/// only the runs' arithmetic between them.
struct RoundingDecisions {
  bool replaying = false;
  size_t call = 0;                                      // blocks rounded so far
  std::vector<int64_t> blockSizes;                      // per block, as recorded
  std::map<std::pair<size_t, int64_t>, uint16_t> codes; // (block, element) near a boundary
  int64_t replayed = 0, taken = 0; // codes replayed; of those, where this run rounded otherwise
};
/// The decisions the host kernels record into or replay from (none: off).
inline RoundingDecisions *&activeRoundingDecisions() {
  static RoundingDecisions *active = nullptr;
  return active;
}
/// Scope of a run that records (`replay` false) or replays `d`.
class RoundingDecisionScope {
public:
  RoundingDecisionScope(RoundingDecisions &d, bool replay) {
    if (!replay)
      d = RoundingDecisions{};
    d.replaying = replay;
    d.call = 0;
    activeRoundingDecisions() = &d;
  }
  ~RoundingDecisionScope() { activeRoundingDecisions() = nullptr; }
  RoundingDecisionScope(const RoundingDecisionScope &) = delete;
  RoundingDecisionScope &operator=(const RoundingDecisionScope &) = delete;
};
/// Starts a block of `n` roundings; returns its index (0 when off).
inline size_t beginRoundingBlock(RoundingDecisions *d, int64_t n) {
  if (!d)
    return 0;
  size_t block = d->call++;
  if (!d->replaying)
    d->blockSizes.push_back(n);
  else if (block >= d->blockSizes.size() || d->blockSizes[block] != n)
    fail("rounding replay: block {} of {} values does not match the recorded run "
         "(the two runs rounded different blocks)",
         block, n);
  return block;
}
/// `round(v)`, recorded when a nudge of 1e-4 |v| (at least `absWindow`)
/// would change it, or replayed as recorded.
template <typename Round>
uint16_t roundDecided(RoundingDecisions *d, size_t block, int64_t i, float v, Round round,
                      float absWindow = 0) {
  uint16_t code = round(v);
  if (!d)
    return code;
  if (!d->replaying) {
    float w = std::max(1e-4f * std::fabs(v), absWindow);
    if (round(v + w) != code || round(v - w) != code)
      d->codes[{block, i}] = code;
  } else if (auto it = d->codes.find({block, i}); it != d->codes.end()) {
    ++d->replayed;
    d->taken += it->second != code;
    code = it->second;
  }
  return code;
}

/// Dynamic activation quantization of one block of `n` channels of a token
/// (SEMANTICS.md 9): s_a = max(amax, 1e-4) / 448 and xq = e4m3(x / s_a),
/// written as values. In fp32 whatever `Real` is, as the GPU computes it,
/// so the float64 host run quantizes exactly as the fp32 ones do.
template <typename Real> float quantizeActivationBlock(const Real *x, int64_t n, Real *xq) {
  float amax = 1e-4f;
  for (int64_t i = 0; i < n; ++i)
    amax = std::max(amax, std::fabs(float(x[i])));
  float s = amax / 448.0f;
  RoundingDecisions *d = activeRoundingDecisions();
  size_t block = beginRoundingBlock(d, n);
  // The runs' values differ by fp32's error relative to the block's largest
  // (a small value can be the remainder of larger terms), ~1e-6 of amax:
  // 4.5e-4 in units of s. So besides 1e-4 of itself, any value within 1e-3
  // of a boundary (e4m3's subnormal spacing is 2^-9) is recorded.
  for (int64_t i = 0; i < n; ++i)
    xq[i] = Real(f8e4m3ToFloat(uint8_t(roundDecided(
        d, block, i, float(x[i]) / s, [](float v) { return floatToF8e4m3(v); }, 1e-3f))));
  return s;
}

/// How a decode latent cache keeps a row (dsv3-quantize-kv-cache).
enum class CacheStorage { F32, Bf16, Fp8 };
inline CacheStorage cacheStorageOf(const std::string &kernel, const std::string &name) {
  if (name == "f32")
    return CacheStorage::F32;
  if (name == "bf16")
    return CacheStorage::Bf16;
  if (name == "fp8")
    return CacheStorage::Fp8;
  fail("kernel {}: unknown cache_storage '{}' (f32, bf16 or fp8)", kernel, name);
}

/// Rounds one cache row [r latent | dr rope key] as `storage` keeps it, in
/// fp32 whatever `Real` is (as a GPU stores it): bf16 rounds every element;
/// fp8 keeps the latent as e4m3 times one scale for the row (amax floored
/// at 1e-4, over 448, as for activations) and the rope key in bf16.
template <typename Real>
void storeCacheRow(Real *row, int64_t r, int64_t dr, CacheStorage storage) {
  RoundingDecisions *d = activeRoundingDecisions();
  auto bf16 = [&](Real *v, int64_t n) {
    size_t block = beginRoundingBlock(d, n);
    for (int64_t i = 0; i < n; ++i)
      v[i] = Real(bf16ToFloat(
          roundDecided(d, block, i, float(v[i]), [](float x) { return floatToBf16(x); })));
  };
  if (storage == CacheStorage::F32)
    return;
  if (storage == CacheStorage::Bf16)
    return bf16(row, r + dr);
  float s = quantizeActivationBlock(row, r, row);
  for (int64_t i = 0; i < r; ++i)
    row[i] = Real(float(row[i]) * s);
  bf16(row + r, dr);
}

/// A projection weight [out, in] as a kernel reads it: plain values, or an
/// FP8 weight (dsv3.fp8_weight): e4m3 values with one scale per [br, bc]
/// block, [ceil(out / br), ceil(in / bc)].
template <typename Real> struct Proj {
  const Real *w = nullptr;
  const Real *scale = nullptr; // null: not FP8
  int64_t br = 0, bc = 0;
  /// The e4m3 values and scales of a weight quantized by the kernel (FP8
  /// training: `w` and `scale` point into it).
  std::shared_ptr<const std::vector<Real>> owned;

  static int64_t ceilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }
  /// Expert `e` of a stack [E, out, in].
  Proj expert(int64_t e, int64_t out, int64_t in) const {
    Proj p = *this;
    p.w = w + e * out * in;
    if (scale)
      p.scale = scale + e * ceilDiv(out, br) * ceilDiv(in, bc);
    return p;
  }
  /// y[o] = sum_i x[i] W[o, i] (+ add[o]). FP8: x quantized per block of bc
  /// channels, each block's e4m3 dot product scaled by s_a * S_w and summed.
  void apply(const Real *x, int64_t out, int64_t in, Real *y,
             const Real *add = nullptr) const {
    if (!scale) {
      matvec(x, w, out, in, y, add);
      return;
    }
    int64_t nb = ceilDiv(in, bc);
    std::vector<Real> xq(static_cast<size_t>(in));
    std::vector<float> sa(static_cast<size_t>(nb));
    for (int64_t kb = 0; kb < nb; ++kb)
      sa[size_t(kb)] = quantizeActivationBlock(x + kb * bc, std::min(bc, in - kb * bc),
                                               xq.data() + kb * bc);
    for (int64_t o = 0; o < out; ++o) {
      const Real *wo = w + o * in;
      const Real *so = scale + (o / br) * nb;
      Real acc = 0;
      for (int64_t kb = 0; kb < nb; ++kb) {
        Real dot = 0;
        for (int64_t i = kb * bc, e = std::min(in, (kb + 1) * bc); i < e; ++i)
          dot += xq[size_t(i)] * wo[i];
        acc += dot * Real(sa[size_t(kb)] * float(so[kb]));
      }
      y[o] = add ? acc + add[o] : acc;
    }
  }
  /// W itself (an FP8 weight dequantized: e4m3 value x its block's scale).
  std::vector<Real> dequantized(int64_t out, int64_t in) const {
    std::vector<Real> d(w, w + out * in);
    if (scale)
      for (int64_t o = 0; o < out; ++o)
        for (int64_t i = 0; i < in; ++i)
          d[size_t(o * in + i)] *= scale[(o / br) * ceilDiv(in, bc) + i / bc];
    return d;
  }
};

/// Quantizes the matrices [.., rows, cols] of `w` to e4m3 values with one
/// scale per [br, bc] block, in fp32 whatever `Real` is (as a GPU does):
/// scale = amax / 448 (1 for an all-zero block), value = e4m3(w / scale).
/// What FP8 training's GEMMs read of an fp32 master weight (SEMANTICS.md 9).
/// Returns the values followed by the scales [.., ceil(rows / br),
/// ceil(cols / bc)].
template <typename Real>
std::vector<Real> quantizeWeightBlocks(const Real *w, int64_t mats, int64_t rows, int64_t cols,
                                       int64_t br, int64_t bc) {
  int64_t rb = (rows + br - 1) / br, cb = (cols + bc - 1) / bc, n = mats * rows * cols;
  std::vector<Real> out(size_t(n + mats * rb * cb));
  for (int64_t m = 0; m < mats; ++m)
    for (int64_t bi = 0; bi < rb; ++bi)
      for (int64_t bj = 0; bj < cb; ++bj) {
        int64_t r0 = bi * br, r1 = std::min(rows, r0 + br);
        int64_t c0 = bj * bc, c1 = std::min(cols, c0 + bc);
        const Real *wm = w + m * rows * cols;
        Real *qm = out.data() + m * rows * cols;
        float amax = 0;
        for (int64_t r = r0; r < r1; ++r)
          for (int64_t c = c0; c < c1; ++c)
            amax = std::max(amax, std::fabs(float(wm[r * cols + c])));
        float s = amax > 0 ? amax / 448.0f : 1.0f;
        for (int64_t r = r0; r < r1; ++r)
          for (int64_t c = c0; c < c1; ++c)
            qm[r * cols + c] = Real(f8e4m3ToFloat(floatToF8e4m3(float(wm[r * cols + c]) / s)));
        out[size_t(n + (m * rb + bi) * cb + bj)] = Real(s);
      }
  return out;
}

/// The FP8 block of a training artifact's launch (`fp8_compute`, set by
/// dsv3-quantize-fp8 on a module that trains), or {0, 0}.
inline std::pair<int64_t, int64_t> fp8ComputeBlock(const json &p) {
  if (!p.contains("fp8_compute"))
    return {0, 0};
  const json &b = p.at("fp8_compute");
  return {b.at(0).get<int64_t>(), b.at(1).get<int64_t>()};
}

/// The op's operands among a launch's inputs (FP8 scales follow them).
template <typename Real> size_t numOperands(const json &p, const Ins<Real> &in) {
  return fp8LaunchOperands(p, in.size());
}

/// Launch input `i` as a projection weight: FP8 when the launch's
/// `fp8_scales[i]` names its scales (the shape checked against `fp8_block`).
template <typename Real>
Proj<Real> projOf(const std::string &k, const json &p, const Ins<Real> &in, size_t i) {
  Proj<Real> w;
  w.w = in.at(i)->f;
  int64_t si = fp8ScalesInput(p, i);
  if (auto [br, bc] = fp8ComputeBlock(p); si < 0 && br > 0) {
    // FP8 training: the GEMM reads the fp32 master weight quantized now.
    const T<Real> &wt = *in[i];
    if (wt.shape.size() < 2 || br < 1 || bc < 1)
      fail("kernel {}: fp8_compute on input {} of shape [{}] (needs a matrix and positive "
           "blocks)",
           k, i, fmt::join(wt.shape, ", "));
    int64_t rows = wt.shape[wt.shape.size() - 2], cols = wt.shape.back();
    auto q = std::make_shared<std::vector<Real>>(
        quantizeWeightBlocks(wt.f, wt.numel() / (rows * cols), rows, cols, br, bc));
    w.w = q->data();
    w.scale = q->data() + wt.numel();
    w.br = br;
    w.bc = bc;
    w.owned = q;
    return w;
  }
  if (si < 0)
    return w;
  size_t s = size_t(si);
  const json &block = p.at("fp8_block");
  w.br = block.at(0).get<int64_t>();
  w.bc = block.at(1).get<int64_t>();
  if (s >= in.size() || w.br < 1 || w.bc < 1)
    fail("kernel {}: fp8_scales[{}] = {} names no input (the launch has {})", k, i, s,
         in.size());
  const T<Real> &wt = *in[i], &st = *in[s];
  std::vector<int64_t> want = wt.shape;
  if (want.size() < 2)
    fail("kernel {}: FP8 input {} is not a matrix", k, i);
  want[want.size() - 2] = Proj<Real>::ceilDiv(want[want.size() - 2], w.br);
  want.back() = Proj<Real>::ceilDiv(want.back(), w.bc);
  if (st.shape != want)
    fail("kernel {}: the scales of FP8 input {} have shape [{}], its [{}] weight in {}x{} "
         "blocks needs [{}]",
         k, i, fmt::join(st.shape, ", "), fmt::join(wt.shape, ", "), w.br, w.bc,
         fmt::join(want, ", "));
  w.scale = st.f;
  return w;
}

template <typename Real>
void rmsNormRow(const Real *x, const Real *w, int64_t n, double eps, Real *y) {
  Real ss = 0;
  for (int64_t i = 0; i < n; ++i)
    ss += x[i] * x[i];
  Real inv = Real(1) / std::sqrt(ss / Real(n) + Real(eps));
  for (int64_t i = 0; i < n; ++i)
    y[i] = w[i] * (x[i] * inv);
}

template <typename Real> Real silu(Real x) { return x / (Real(1) + std::exp(-x)); }

/// dx[i] += sum_o dy[o] W[o, i] (the input gradient of matvec).
template <typename Real>
void matvecT(const Real *dy, const Real *W, int64_t out, int64_t in, Real *dx) {
  for (int64_t o = 0; o < out; ++o) {
    const Real *w = W + o * in;
    Real g = dy[o];
    if (g != Real(0))
      for (int64_t i = 0; i < in; ++i)
        dx[i] += g * w[i];
  }
}

/// dW[o, i] += dy[o] x[i] (the weight gradient of matvec).
template <typename Real>
void outerAdd(const Real *dy, const Real *x, int64_t out, int64_t in, Real *dW) {
  for (int64_t o = 0; o < out; ++o) {
    Real g = dy[o];
    if (g != Real(0)) {
      Real *w = dW + o * in;
      for (int64_t i = 0; i < in; ++i)
        w[i] += g * x[i];
    }
  }
}

/// FP8 training's input gradient of one row (DeepSeek-V3 §3.3, Dgrad):
/// dx[i] += sum over blocks nb of br outputs of s_dy[nb] · S_w[nb, i / bc] ·
/// sum_{o in nb} e4m3(dy[o] / s_dy[nb]) · Wq[o, i], with dy quantized per
/// block of the weight's br rows as an activation is (1 × br tiles) and the
/// block sums in fp32. `w` is an FP8 projection (projOf with fp8_compute).
template <typename Real>
void fp8RowDgrad(const Real *dy, const Proj<Real> &w, int64_t out, int64_t in, Real *dx) {
  int64_t nb = (out + w.br - 1) / w.br, cb = (in + w.bc - 1) / w.bc;
  std::vector<Real> q(static_cast<size_t>(out)), part(static_cast<size_t>(in));
  for (int64_t b = 0; b < nb; ++b) {
    int64_t o0 = b * w.br, o1 = std::min(out, o0 + w.br);
    float s = quantizeActivationBlock(dy + o0, o1 - o0, q.data() + o0);
    std::fill(part.begin(), part.end(), Real(0));
    for (int64_t o = o0; o < o1; ++o)
      if (q[size_t(o)] != Real(0))
        for (int64_t i = 0; i < in; ++i)
          part[size_t(i)] += q[size_t(o)] * w.w[o * in + i];
    for (int64_t i = 0; i < in; ++i)
      dx[i] += part[size_t(i)] * Real(s * float(w.scale[b * cb + i / w.bc]));
  }
}

/// FP8 training's weight gradient (DeepSeek-V3 §3.3, Wgrad): dW[o, i] +=
/// sum over blocks of `blk` rows (tokens) of s_dy[o] · s_x[i] · sum_r
/// e4m3(dy[r, o] / s_dy[o]) · e4m3(x[r, i] / s_x[i]): both operands
/// quantized per column over each block of rows (the paper's 128 × 1 tiles
/// of the backward), the block sums in fp32. dy is [rows, out], x [rows, in].
template <typename Real>
void fp8Wgrad(const Real *dy, const Real *x, int64_t rows, int64_t out, int64_t in,
              int64_t blk, Real *dW) {
  std::vector<Real> col(static_cast<size_t>(blk)), qcol(static_cast<size_t>(blk));
  std::vector<Real> qdy, qx, part(static_cast<size_t>(in));
  std::vector<float> sdy(static_cast<size_t>(out)), sx(static_cast<size_t>(in));
  // Column-quantizes m [rows, n] over rows r0..r1 into q [r1 - r0, n].
  auto quantizeColumns = [&](const Real *m, int64_t n, int64_t r0, int64_t r1,
                             std::vector<Real> &q, std::vector<float> &scales) {
    q.assign(size_t((r1 - r0) * n), Real(0));
    for (int64_t c = 0; c < n; ++c) {
      for (int64_t r = r0; r < r1; ++r)
        col[size_t(r - r0)] = m[r * n + c];
      scales[size_t(c)] = quantizeActivationBlock(col.data(), r1 - r0, qcol.data());
      for (int64_t r = r0; r < r1; ++r)
        q[size_t((r - r0) * n + c)] = qcol[size_t(r - r0)];
    }
  };
  for (int64_t r0 = 0; r0 < rows; r0 += blk) {
    int64_t r1 = std::min(rows, r0 + blk);
    quantizeColumns(dy, out, r0, r1, qdy, sdy);
    quantizeColumns(x, in, r0, r1, qx, sx);
    for (int64_t o = 0; o < out; ++o) {
      std::fill(part.begin(), part.end(), Real(0));
      for (int64_t r = 0; r < r1 - r0; ++r) {
        Real g = qdy[size_t(r * out + o)];
        if (g != Real(0))
          for (int64_t i = 0; i < in; ++i)
            part[size_t(i)] += g * qx[size_t(r * in + i)];
      }
      Real *w = dW + o * in;
      for (int64_t i = 0; i < in; ++i)
        w[i] += part[size_t(i)] * Real(sdy[size_t(o)] * sx[size_t(i)]);
    }
  }
}

/// The gradient of rmsNormRow: dx += J^T dy, dw += dy * x * r.
template <typename Real>
void rmsNormRowGrad(const Real *x, const Real *w, int64_t n, double eps,
                    const Real *dy, Real *dx, Real *dw) {
  Real ss = 0, dot = 0;
  for (int64_t i = 0; i < n; ++i)
    ss += x[i] * x[i];
  Real r = Real(1) / std::sqrt(ss / Real(n) + Real(eps));
  for (int64_t i = 0; i < n; ++i)
    dot += dy[i] * w[i] * x[i];
  for (int64_t i = 0; i < n; ++i) {
    if (dx)
      dx[i] += r * dy[i] * w[i] - r * r * r * x[i] * dot / Real(n);
    if (dw)
      dw[i] += dy[i] * x[i] * r;
  }
}

/// Rotary embedding (SEMANTICS.md 3.3-3.4): the frequencies (with YaRN) and
/// the cos/sin scale, computed once per launch.
template <typename Real> struct Rope {
  int64_t dim = 0;
  bool interleaved = true;
  double scale = 1.0;
  std::vector<Real> invFreq;

  Rope(const std::string &k, const json &r) {
    if (!r.is_object())
      fail("kernel {}: parameter \"rope\" must be an object", k);
    dim = geti(k, r, "dim");
    double theta = getf(k, r, "theta");
    interleaved = getb(r, "interleaved");
    double factor = getf(k, r, "factor");
    scale = getf(k, r, "cos_sin_scale");
    int64_t half = dim / 2;
    for (int64_t j = 0; j < half; ++j) {
      double base = std::pow(theta, double(2 * j) / double(dim));
      double f = 1.0 / base;
      if (factor > 0) {
        double L0 = double(geti(k, r, "original_max_position_embeddings"));
        auto cd = [&](double n) {
          return double(dim) * std::log(L0 / (n * 2 * M_PI)) / (2 * std::log(theta));
        };
        double low = cd(getf(k, r, "beta_fast")), high = cd(getf(k, r, "beta_slow"));
        if (getb(r, "truncate")) {
          low = std::floor(low);
          high = std::ceil(high);
        }
        low = std::max(low, 0.0);
        high = std::min(high, double(dim - 1));
        if (low == high)
          high += 0.001;
        double ramp = std::clamp((double(j) - low) / (high - low), 0.0, 1.0);
        double extrapolation = 1.0 - ramp;
        f = (1.0 / (factor * base)) * (1.0 - extrapolation) + (1.0 / base) * extrapolation;
      }
      invFreq.push_back(Real(f));
    }
  }

  /// Rotates y (dim values) at position `pos`; writes the de-interleaved
  /// layout (all first components of the pairs, then all second).
  void apply(Real *y, int64_t pos) const {
    int64_t half = dim / 2;
    Real tmp[1024];
    DSV3_CHECK(dim <= 1024, "rope dim {} too large", dim);
    for (int64_t j = 0; j < half; ++j) {
      Real th = Real(pos) * invFreq[j];
      Real c = std::cos(th) * Real(scale), s = std::sin(th) * Real(scale);
      Real a = interleaved ? y[2 * j] : y[j];
      Real b = interleaved ? y[2 * j + 1] : y[j + half];
      tmp[j] = a * c - b * s;
      tmp[j + half] = b * c + a * s;
    }
    std::copy(tmp, tmp + dim, y);
  }

  /// The transpose of `apply` (rotation by -theta back into the input
  /// layout): the gradient of the input given the gradient of the output.
  void applyTranspose(Real *dy, int64_t pos) const {
    int64_t half = dim / 2;
    Real tmp[1024];
    for (int64_t j = 0; j < half; ++j) {
      Real th = Real(pos) * invFreq[j];
      Real c = std::cos(th) * Real(scale), s = std::sin(th) * Real(scale);
      Real da = dy[j] * c + dy[j + half] * s;
      Real db = -dy[j] * s + dy[j + half] * c;
      tmp[interleaved ? 2 * j : j] = da;
      tmp[interleaved ? 2 * j + 1 : j + half] = db;
    }
    std::copy(tmp, tmp + dim, dy);
  }
};

/// z[0 .. n) = softmax(z[0 .. n)); returns log sum exp of the inputs.
template <typename Real> Real softmaxInPlace(std::vector<Real> &z, int64_t n) {
  Real m = *std::max_element(z.begin(), z.begin() + n), sum = 0;
  for (int64_t i = 0; i < n; ++i)
    sum += (z[i] = std::exp(z[i] - m));
  for (int64_t i = 0; i < n; ++i)
    z[i] /= sum;
  return m + std::log(sum);
}

/// Indices of the `k` largest of `v` (ties: lower index first).
template <typename Real>
std::vector<int64_t> topk(const std::vector<Real> &v, int64_t k) {
  std::vector<int64_t> idx(v.size());
  std::iota(idx.begin(), idx.end(), 0);
  std::stable_sort(idx.begin(), idx.end(),
                   [&](int64_t a, int64_t b) { return v[a] > v[b]; });
  idx.resize(k);
  return idx;
}

/// Multi-head latent attention, both forms (SEMANTICS.md 3 and 4).
template <typename Real> struct Mla {
  std::string k;
  int64_t nh, r, dn, dr, dv, dq, H;
  bool qLora;
  int64_t rq = 0;
  double scale, eps;
  Rope<Real> rope;
  // Weights (nullptr when absent).
  /// Operand index of each weight (order of the pointers below), -1 if absent.
  enum Slot { QA, QANorm, Q, KVA, KVANorm, KVB, O, QABias, KVABias, OBias };
  int64_t operandIndex[10];
  const Real *qa = nullptr, *qaNorm = nullptr, *q = nullptr, *kva = nullptr,
             *kvaNorm = nullptr, *kvb = nullptr, *o = nullptr, *qaBias = nullptr,
             *kvaBias = nullptr, *oBias = nullptr;
  /// The projections as GEMMs see them (FP8 weights: block-scaled FP8
  /// GEMMs); `kvb` itself is dequantized for the absorbed decode.
  Proj<Real> qaP, qP, kvaP, kvbP, oP;
  std::vector<Real> kvbDense;

  Mla(const std::string &k, const json &p, Ins<Real> &in, size_t firstWeight)
      : k(k), rope(k, p.at("rope")) {
    nh = geti(k, p, "num_heads");
    r = geti(k, p, "kv_lora_rank");
    dn = geti(k, p, "qk_nope_head_dim");
    dr = geti(k, p, "qk_rope_head_dim");
    dv = geti(k, p, "v_head_dim");
    dq = dn + dr;
    qLora = p.contains("q_lora_rank");
    if (qLora)
      rq = geti(k, p, "q_lora_rank");
    scale = getf(k, p, "softmax_scale");
    eps = getf(k, p, "latent_norm_eps");
    H = in[0]->dim(-1);
    // Operand segments: the weights follow `firstWeight` leading operands.
    const json &seg = p.at("operandSegmentSizes");
    std::vector<const Real **> slots = {&qa, &qaNorm, &q, &kva, &kvaNorm,
                                        &kvb, &o, &qaBias, &kvaBias, &oBias};
    size_t next = 0;
    std::fill(std::begin(operandIndex), std::end(operandIndex), -1);
    for (size_t s = 0; s < seg.size(); ++s) {
      int64_t n = seg[s].get<int64_t>();
      if (s >= firstWeight && n) {
        if (next >= in.size())
          fail("kernel {}: operandSegmentSizes name more operands than the launch has", k);
        *slots[s - firstWeight] = in[next]->f;
        operandIndex[s - firstWeight] = int64_t(next);
      }
      next += n;
    }
    // Every weight must have the shape the launch's widths imply (an edited
    // manifest or a kernel bug would otherwise read out of bounds).
    const char *names[] = {"q_a_proj", "q_a_layernorm", "q_proj", "kv_a_proj",
                           "kv_a_layernorm", "kv_b_proj", "o_proj", "q_a_bias",
                           "kv_a_bias", "o_bias"};
    std::vector<std::vector<int64_t>> want = {
        {rq, H}, {rq}, {nh * dq, qLora ? rq : H}, {r + dr, H}, {r},
        {nh * (dn + dv), r}, {H, nh * dv}, {rq}, {r + dr}, {H}};
    for (int w : {2, 3, 4, 5, 6})
      if (operandIndex[w] < 0)
        fail("kernel {}: no {} operand", k, names[w]);
    for (int w = 0; w < 10; ++w)
      if (operandIndex[w] >= 0 && in[size_t(operandIndex[w])]->shape != want[size_t(w)])
        fail("kernel {}: {} has shape [{}], the launch's widths imply [{}]", k, names[w],
             fmt::join(in[size_t(operandIndex[w])]->shape, ", "),
             fmt::join(want[size_t(w)], ", "));
    auto proj = [&](Slot s) {
      return operandIndex[s] >= 0 ? projOf(k, p, in, size_t(operandIndex[s])) : Proj<Real>();
    };
    qaP = proj(QA), qP = proj(Q), kvaP = proj(KVA), kvbP = proj(KVB), oP = proj(O);
    if (kvbP.scale) {
      kvbDense = kvbP.dequantized(nh * (dn + dv), r);
      kvb = kvbDense.data();
    }
  }

  /// The query of one token: [nh, dq], rope applied at `pos`.
  void query(const Real *x, int64_t pos, Real *out, std::vector<Real> &tmp) const {
    if (qLora) {
      tmp.resize(2 * rq);
      qaP.apply(x, rq, H, tmp.data(), qaBias);
      rmsNormRow(tmp.data(), qaNorm, rq, eps, tmp.data() + rq);
      qP.apply(tmp.data() + rq, nh * dq, rq, out);
    } else {
      qP.apply(x, nh * dq, H, out);
    }
    for (int64_t h = 0; h < nh; ++h)
      rope.apply(out + h * dq + dn, pos);
  }

  /// The latent and rope key of one token: [r + dr] (normed latent, roped key).
  void latent(const Real *x, int64_t pos, Real *out, std::vector<Real> &tmp) const {
    tmp.resize(r + dr);
    kvaP.apply(x, r + dr, H, tmp.data(), kvaBias);
    rmsNormRow(tmp.data(), kvaNorm, r, eps, out);
    std::copy(tmp.data() + r, tmp.data() + r + dr, out + r);
    rope.apply(out + r, pos);
  }

  void project(const Real *attn, Real *y) const { oP.apply(attn, H, nh * dv, y, oBias); }
};


/// The router's hyper-parameters (SEMANTICS.md 5.2, 5.5).
struct RouteConfig {
  int64_t E, K, G, TG;
  bool sigmoid, norm;
  std::string method;
  double scaling;
  RouteConfig(const std::string &k, const json &p, int64_t experts)
      : E(experts), K(geti(k, p, "num_experts_per_tok")), G(geti(k, p, "n_group")),
        TG(geti(k, p, "topk_group")),
        sigmoid(gets(k, p, "scoring_func") == "sigmoid"),
        norm(getb(p, "norm_topk_prob")), method(gets(k, p, "topk_method")),
        scaling(getf(k, p, "routed_scaling_factor")) {
    if (method != "greedy" && method != "group_limited_greedy" && method != "noaux_tc")
      fail("kernel {}: unknown topk_method \"{}\"", k, method);
    std::string scoring = gets(k, p, "scoring_func");
    if (scoring != "sigmoid" && scoring != "softmax")
      fail("kernel {}: unknown scoring_func \"{}\"", k, scoring);
    // The selection indexes experts and groups by these: check them as the
    // op verifier does (an edited manifest must not index out of bounds).
    if (K < 1 || K > E)
      fail("kernel {}: num_experts_per_tok ({}) must be in [1, {}]", k, K, E);
    if (G < 1 || E % G != 0 || TG < 1 || TG > G)
      fail("kernel {}: n_group ({}) must divide the {} experts and topk_group ({}) be in "
           "[1, n_group]",
           k, G, E, TG);
    if (method != "greedy" && K > TG * (E / G))
      fail("kernel {}: num_experts_per_tok ({}) exceeds the {} experts of the kept groups", k,
           K, TG * (E / G));
  }
};

/// Whether the k-th and (k+1)-th largest of `v` lie within 1e-4 (relative)
/// of each other: the top-k set then hangs on the last digits.
template <typename Real> bool separatesNearTie(const std::vector<Real> &v, int64_t k) {
  if (int64_t(v.size()) <= k)
    return false;
  std::vector<Real> s(v);
  std::sort(s.begin(), s.end(), std::greater<Real>());
  Real a = s[size_t(k - 1)], b = s[size_t(k)];
  if (!std::isfinite(double(a)) || !std::isfinite(double(b)))
    return false;
  return std::fabs(double(a - b)) <= 1e-4 * std::max(std::fabs(double(a)), std::fabs(double(b)));
}

/// Scores and selects the experts of one token from its router logits:
/// `score` gets the (unbiased) sigmoid or softmax scores, `sel` the K
/// selected experts in descending order of their (biased) choice score.
template <typename Real>
void routeToken(const RouteConfig &c, const std::vector<Real> &logit,
                const Real *bias, std::vector<Real> &score,
                std::vector<int64_t> &sel) {
  int64_t E = c.E, per = E / c.G;
  score.assign(logit.begin(), logit.end());
  if (c.sigmoid) {
    for (int64_t e = 0; e < E; ++e)
      score[e] = Real(1) / (Real(1) + std::exp(-logit[e]));
  } else {
    softmaxInPlace(score, E);
  }
  std::vector<Real> choice(score);
  if (bias)
    for (int64_t e = 0; e < E; ++e)
      choice[e] += bias[e];
  // Only a recording run looks for near-ties (a sort per group ranking).
  RoundingDecisions *d = activeRoundingDecisions();
  const bool recording = d && !d->replaying;
  bool nearTie = false;
  if (c.method != "greedy") {
    // Rank groups: sum of the two best (noaux_tc) or the best
    // (group_limited_greedy); mask the experts of the others.
    std::vector<Real> groupScore(c.G);
    for (int64_t g = 0; g < c.G; ++g) {
      std::vector<Real> members(choice.begin() + g * per,
                                choice.begin() + (g + 1) * per);
      std::sort(members.begin(), members.end(), std::greater<Real>());
      groupScore[g] = c.method == "noaux_tc" ? members[0] + members[1] : members[0];
    }
    std::vector<bool> keep(c.G, false);
    for (int64_t g : topk(groupScore, c.TG))
      keep[g] = true;
    Real masked = c.method == "noaux_tc" ? -INFINITY : Real(0);
    for (int64_t e = 0; e < E; ++e)
      if (!keep[e / per])
        choice[e] = masked;
    nearTie = recording && separatesNearTie(groupScore, c.TG);
  }
  sel = topk(choice, c.K);
  // Like a rounding, a choice between two scores within 1e-4 of each other
  // is recorded by a checked run and replayed by its float64 reference
  // (RoundingDecisions): another model than the oracle's (rounded weights,
  // a rounded cache) has its own near-ties, which the oracle's margins do
  // not rule out, and one flipped expert moves a token's output by O(1).
  if (!d)
    return;
  size_t block = beginRoundingBlock(d, c.K);
  if (recording) {
    if (nearTie || separatesNearTie(choice, c.K))
      for (int64_t j = 0; j < c.K; ++j)
        d->codes[{block, j}] = uint16_t(sel[size_t(j)]);
  } else if (d->codes.count({block, 0})) {
    std::vector<int64_t> recorded(size_t(c.K));
    for (int64_t j = 0; j < c.K; ++j)
      recorded[size_t(j)] = d->codes.at({block, j});
    ++d->replayed;
    d->taken += recorded != sel;
    sel = recorded;
  }
}

/// The load-balancing loss of one MoE layer (dsv3.moe_balance_loss) and,
/// when `dx`/`dgate` are given, its gradient scaled by `dloss`.
template <typename Real>
double balanceLoss(const std::string &k, const json &p, const T<Real> &x,
                   const T<Real> &gate, const T<Real> &idx, double dloss,
                   Real *dx, Real *dgate) {
  int64_t B = x.dim(0), Tn = x.dim(1), H = x.dim(2), E = gate.dim(0);
  int64_t K = idx.dim(2);
  double alpha = getf(k, p, "alpha");
  bool seqWise = getb(p, "sequence_wise");
  bool sigmoid = gets(k, p, "scoring_func") == "sigmoid";
  // Groups of tokens the loss averages over: one per sequence, or the batch.
  int64_t groups = seqWise ? B : 1, per = seqWise ? Tn : B * Tn;
  std::vector<Real> logit(E), s(E), d(E), dlogit(E);
  std::vector<double> f(E), P(E);
  double total = 0;
  for (int64_t g = 0; g < groups; ++g) {
    std::fill(f.begin(), f.end(), 0.0);
    std::fill(P.begin(), P.end(), 0.0);
    for (int64_t t = 0; t < per; ++t)
      for (int64_t j = 0; j < K; ++j)
        f[size_t(idx.i[(g * per + t) * K + j])] += double(E) / double(K * per);
    for (int pass = 0; pass < 2; ++pass) {
      for (int64_t t = 0; t < per; ++t) {
        const Real *xt = x.f + (g * per + t) * H;
        matvec(xt, gate.f, E, H, logit.data());
        Real sum = 0;
        if (sigmoid) {
          for (int64_t e = 0; e < E; ++e)
            sum += (s[e] = Real(1) / (Real(1) + std::exp(-logit[e])));
        } else {
          s = logit;
          softmaxInPlace(s, E);
          sum = 1;
        }
        if (pass == 0) {
          for (int64_t e = 0; e < E; ++e)
            P[e] += double(s[e] / sum) / double(per);
          continue;
        }
        // Backward: only P carries gradient.
        double scale = dloss * alpha / double(per * groups);
        if (sigmoid) {
          double fs = 0;
          for (int64_t e = 0; e < E; ++e)
            fs += f[e] * double(s[e]);
          for (int64_t e = 0; e < E; ++e) {
            double ds = scale * (f[e] / double(sum) - fs / double(sum * sum));
            dlogit[e] = Real(ds) * s[e] * (Real(1) - s[e]);
          }
        } else {
          double dot = 0;
          for (int64_t e = 0; e < E; ++e)
            dot += scale * f[e] * double(s[e]);
          for (int64_t e = 0; e < E; ++e)
            dlogit[e] = s[e] * Real(scale * f[e] - dot);
        }
        if (dx)
          matvecT(dlogit.data(), gate.f, E, H, dx + (g * per + t) * H);
        if (dgate)
          outerAdd(dlogit.data(), xt, E, H, dgate);
      }
      if (pass == 0) {
        double l = 0;
        for (int64_t e = 0; e < E; ++e)
          l += f[e] * P[e];
        total += alpha * l / double(groups);
        if (!dx && !dgate)
          break;
      }
    }
  }
  return total;
}

/// Adds the *_vjp kernels (HostGradKernels.cpp) to `kernels`.
template <typename Real>
void addGradKernels(std::map<std::string, HostKernelFn<Real>> &kernels);

/// Adds the collectives (ep_dispatch, ep_combine, all_reduce;
/// HostCollectiveKernels.cpp) to `kernels`.
template <typename Real>
void addCollectiveKernels(std::map<std::string, HostKernelFn<Real>> &kernels);

} // namespace dsv3rt::host

#endif // DSV3_RUNTIME_HOST_HOSTMATH_H
