//===- HostKernels.cpp - the host reference implementation of every kernel ===//
//
// Plain C++ loops, written from SEMANTICS.md section by section; they are
// the reference every GPU kernel is checked against, so clarity beats
// speed. Templated on the compute type: float (the default) or double (for
// checks against float64 oracles). Accumulations that decide the loss use
// double in both.
//
//===----------------------------------------------------------------------===//

#include "runtime/host/HostMath.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>

using json = nlohmann::json;

namespace dsv3rt {
namespace host {
namespace {

//===----------------------------------------------------------------------===//
// Kernels
//===----------------------------------------------------------------------===//

template <typename Real>
void embedding(const std::string &k, const json &, Ins<Real> &in, Ins<Real> &out) {
  T<Real> &ids = *in[0], &table = *in[1], &y = *out[0];
  int64_t V = table.dim(0), H = table.dim(1);
  std::vector<int64_t> shape = ids.shape;
  shape.push_back(H);
  setShape(k, y, shape);
  for (int64_t n = 0; n < ids.numel(); ++n) {
    int64_t id = ids.i[n];
    if (id < 0 || id >= V)
      fail("token id {} (at flat position {}) is outside the vocabulary "
           "[0, {})",
           id, n, V);
    std::copy(table.f + id * H, table.f + (id + 1) * H, y.f + n * H);
  }
}

/// Each sequence's last position: [B, T, H] -> [B, 1, H].
template <typename Real>
void lastToken(const std::string &k, const json &, Ins<Real> &in, Ins<Real> &out) {
  T<Real> &x = *in[0];
  int64_t B = x.dim(0), Tn = x.dim(1), H = x.dim(2);
  if (Tn < 1)
    fail("kernel {}: no positions to take the last of", k);
  setShape(k, *out[0], {B, 1, H});
  for (int64_t b = 0; b < B; ++b)
    std::copy_n(x.f + (b * Tn + Tn - 1) * H, H, out[0]->f + b * H);
}

template <typename Real>
void rmsNorm(const std::string &k, const json &p, Ins<Real> &in, Ins<Real> &out) {
  T<Real> &x = *in[0], &w = *in[1], &y = *out[0];
  int64_t n = x.dim(-1);
  expectLast(k, w, n, "weight");
  setShape(k, y, x.shape);
  double eps = getf(k, p, "epsilon");
  for (int64_t r = 0, R = rowsOf(x.shape); r < R; ++r)
    rmsNormRow(x.f + r * n, w.f, n, eps, y.f + r * n);
}

template <typename Real>
void linear(const std::string &k, const json &p, Ins<Real> &in, Ins<Real> &out) {
  T<Real> &x = *in[0], &w = *in[1], &y = *out[0];
  Proj<Real> wp = projOf(k, p, in, 1);
  int64_t N = w.dim(0), K = w.dim(1);
  expectLast(k, x, K, "input");
  const Real *bias = numOperands(p, in) > 2 ? in[2]->f : nullptr;
  std::vector<int64_t> shape = x.shape;
  shape.back() = N;
  setShape(k, y, shape);
  for (int64_t r = 0, R = rowsOf(x.shape); r < R; ++r)
    wp.apply(x.f + r * K, N, K, y.f + r * N, bias);
}

/// x W^T + residual (dsv3.linear_add).
template <typename Real>
void linearAdd(const std::string &k, const json &p, Ins<Real> &in, Ins<Real> &out) {
  T<Real> &x = *in[0], &w = *in[1], &res = *in[2], &y = *out[0];
  Proj<Real> wp = projOf(k, p, in, 1);
  int64_t N = w.dim(0), K = w.dim(1);
  expectLast(k, x, K, "input");
  std::vector<int64_t> shape = x.shape;
  shape.back() = N;
  if (res.shape != shape)
    fail("kernel {}: residual shape differs from the projection's", k);
  setShape(k, y, shape);
  for (int64_t r = 0, R = rowsOf(x.shape); r < R; ++r)
    wp.apply(x.f + r * K, N, K, y.f + r * N, res.f + r * N);
}

/// silu(x Wg^T) * (x Wu^T) (dsv3.gated_linear).
template <typename Real>
void gatedLinear(const std::string &k, const json &p, Ins<Real> &in, Ins<Real> &out) {
  T<Real> &x = *in[0], &wg = *in[1], &wu = *in[2], &y = *out[0];
  Proj<Real> gp = projOf(k, p, in, 1), up = projOf(k, p, in, 2);
  int64_t N = wg.dim(0), K = wg.dim(1);
  expectLast(k, x, K, "input");
  std::vector<int64_t> shape = x.shape;
  shape.back() = N;
  setShape(k, y, shape);
  std::vector<Real> g(N), u(N);
  for (int64_t r = 0, R = rowsOf(x.shape); r < R; ++r) {
    gp.apply(x.f + r * K, N, K, g.data());
    up.apply(x.f + r * K, N, K, u.data());
    for (int64_t n = 0; n < N; ++n)
      y.f[r * N + n] = silu(g[n]) * u[n];
  }
}

/// The shared checks of the norm-prologue projections: x [..., K], the norm
/// weight [K], the projection weight [N, K]; shapes y and returns epsilon.
template <typename Real>
double normProjection(const std::string &k, const json &p, T<Real> &x, T<Real> &wn,
                      T<Real> &w, T<Real> &y) {
  int64_t N = w.dim(0), K = w.dim(1);
  expectLast(k, x, K, "input");
  expectLast(k, wn, K, "norm_weight");
  std::vector<int64_t> shape = x.shape;
  shape.back() = N;
  setShape(k, y, shape);
  return getf(k, p, "epsilon");
}

/// rms_norm(x, wn) W^T (dsv3.norm_linear): the norm per row, then the
/// projection, with the unfused ops' numerics.
template <typename Real>
void normLinear(const std::string &k, const json &p, Ins<Real> &in, Ins<Real> &out) {
  T<Real> &x = *in[0], &wn = *in[1], &w = *in[2], &y = *out[0];
  double eps = normProjection(k, p, x, wn, w, y);
  int64_t N = w.dim(0), K = w.dim(1);
  Proj<Real> wp = projOf(k, p, in, 2);
  std::vector<Real> normed(static_cast<size_t>(K));
  for (int64_t r = 0, R = rowsOf(x.shape); r < R; ++r) {
    rmsNormRow(x.f + r * K, wn.f, K, eps, normed.data());
    wp.apply(normed.data(), N, K, y.f + r * N);
  }
}

/// gated_linear(rms_norm(x, wn), Wg, Wu) (dsv3.norm_gated_linear).
template <typename Real>
void normGatedLinear(const std::string &k, const json &p, Ins<Real> &in, Ins<Real> &out) {
  T<Real> &x = *in[0], &wn = *in[1], &wg = *in[2], &wu = *in[3], &y = *out[0];
  double eps = normProjection(k, p, x, wn, wg, y);
  int64_t N = wg.dim(0), K = wg.dim(1);
  Proj<Real> gp = projOf(k, p, in, 2), up = projOf(k, p, in, 3);
  std::vector<Real> normed(static_cast<size_t>(K)), g(N), u(N);
  for (int64_t r = 0, R = rowsOf(x.shape); r < R; ++r) {
    rmsNormRow(x.f + r * K, wn.f, K, eps, normed.data());
    gp.apply(normed.data(), N, K, g.data());
    up.apply(normed.data(), N, K, u.data());
    for (int64_t n = 0; n < N; ++n)
      y.f[r * N + n] = silu(g[n]) * u[n];
  }
}

template <typename Real>
void rope(const std::string &k, const json &p, Ins<Real> &in, Ins<Real> &out) {
  T<Real> &x = *in[0], &pos = *in[1], &y = *out[0];
  Rope<Real> r(k, p.at("rope"));
  expectLast(k, x, r.dim, "input");
  setShape(k, y, x.shape);
  std::copy(x.f, x.f + x.numel(), y.f);
  int64_t perToken = x.numel() / (x.dim(0) * x.dim(1));
  for (int64_t t = 0; t < x.dim(0) * x.dim(1); ++t)
    for (int64_t h = 0; h < perToken / r.dim; ++h)
      r.apply(y.f + t * perToken + h * r.dim, pos.i[t]);
}

template <typename Real>
void swiglu(const std::string &k, const json &, Ins<Real> &in, Ins<Real> &out) {
  T<Real> &g = *in[0], &u = *in[1], &y = *out[0];
  setShape(k, y, g.shape);
  for (int64_t i = 0; i < g.numel(); ++i)
    y.f[i] = silu(g.f[i]) * u.f[i];
}

template <typename Real>
void add(const std::string &k, const json &, Ins<Real> &in, Ins<Real> &out) {
  T<Real> &a = *in[0], &b = *in[1], &y = *out[0];
  if (a.shape != b.shape)
    fail("kernel {}: operand shapes differ", k);
  setShape(k, y, a.shape);
  for (int64_t i = 0; i < a.numel(); ++i)
    y.f[i] = a.f[i] + b.f[i];
}

template <typename Real>
void latentAttention(const std::string &k, const json &p, Ins<Real> &in, Ins<Real> &out) {
  Mla<Real> m(k, p, in, 1);
  T<Real> &x = *in[0], &y = *out[0];
  setShape(k, y, x.shape);
  int64_t B = x.dim(0), Tn = x.dim(1), H = m.H, nh = m.nh, dq = m.dq;
  int64_t dn = m.dn, dr = m.dr, dv = m.dv, r = m.r;
  // save_for_backward: the output before o_proj [B, T, NH DV] and each
  // query's log-sum-exp [B, NH, T] (the vjp here recomputes; the CUDA one
  // reads them).
  T<Real> *savedO = out.size() == 3 ? out[1] : nullptr, *savedLse = savedO ? out[2] : nullptr;
  if (out.size() != 1 && !savedO)
    fail("kernel {}: {} outputs (1, or 3 with save_for_backward)", k, out.size());
  if (savedO) {
    setShape(k, *savedO, {B, Tn, nh * dv});
    setShape(k, *savedLse, {B, nh, Tn});
  }
  std::vector<Real> Q(Tn * nh * dq), L(Tn * (r + dr)), U(Tn * nh * (dn + dv));
  std::vector<Real> tmp, z(Tn), attn(nh * dv);
  for (int64_t b = 0; b < B; ++b) {
    const Real *xb = x.f + b * Tn * H;
    for (int64_t t = 0; t < Tn; ++t) {
      m.query(xb + t * H, t, Q.data() + t * nh * dq, tmp);
      m.latent(xb + t * H, t, L.data() + t * (r + dr), tmp);
      // The naive form: expand the latent into per-head keys and values.
      m.kvbP.apply(L.data() + t * (r + dr), nh * (dn + dv), r,
                   U.data() + t * nh * (dn + dv));
    }
    for (int64_t i = 0; i < Tn; ++i) {
      for (int64_t h = 0; h < nh; ++h) {
        const Real *qh = Q.data() + i * nh * dq + h * dq;
        for (int64_t t = 0; t <= i; ++t) {
          const Real *kn = U.data() + t * nh * (dn + dv) + h * (dn + dv);
          const Real *kp = L.data() + t * (r + dr) + r;
          z[t] = mlaLogit(qh, kn, dn, qh + dn, kp, dr) * Real(m.scale);
        }
        Real lse = softmaxInPlace(z, i + 1);
        if (savedLse)
          savedLse->f[(b * nh + h) * Tn + i] = lse;
        Real *oh = attn.data() + h * dv;
        std::fill(oh, oh + dv, Real(0));
        for (int64_t t = 0; t <= i; ++t) {
          const Real *v = U.data() + t * nh * (dn + dv) + h * (dn + dv) + dn;
          for (int64_t j = 0; j < dv; ++j)
            oh[j] += z[t] * v[j];
        }
      }
      if (savedO)
        std::copy(attn.begin(), attn.end(), savedO->f + (b * Tn + i) * nh * dv);
      m.project(attn.data(), y.f + (b * Tn + i) * H);
    }
  }
}

template <typename Real>
void latentAttentionDecode(const std::string &k, const json &p, Ins<Real> &in,
                           Ins<Real> &out) {
  Mla<Real> m(k, p, in, 3);
  T<Real> &x = *in[0], &cache = *in[1], &y = *out[0];
  const T<Real> &pastLen = *in[2];
  setShape(k, y, x.shape);
  int64_t B = x.dim(0), Tn = x.dim(1), H = m.H, nh = m.nh, dq = m.dq;
  int64_t dn = m.dn, dr = m.dr, dv = m.dv, r = m.r, S = cache.dim(1);
  if (cache.dim(0) < B || cache.dim(2) != r + dr)
    fail("kernel {}: cache of shape [{}] does not fit batch {} and width {}", k,
         fmt::join(cache.shape, ", "), B, r + dr);
  if (pastLen.shape.size() != 1 || pastLen.dim(0) != B)
    fail("kernel {}: past_len must hold one length per sequence ([{}]), got [{}]",
         k, B, fmt::join(pastLen.shape, ", "));
  CacheStorage storage = cacheStorageOf(k, p.value("cache_storage", "f32"));
  std::vector<Real> qv(nh * dq), qt(nh * r), tmp, z, lat(r);
  std::vector<Real> attn(nh * dv);
  for (int64_t b = 0; b < B; ++b) {
    // Continuous batching: each sequence has its own past length.
    int64_t past = pastLen.i[b];
    if (past < 0 || past + Tn > S)
      fail("kernel {}: sequence {}: {} cached + {} new tokens exceed the cache "
           "length {}",
           k, b, past, Tn, S);
    z.resize(size_t(past + Tn));
    Real *cb = cache.f + b * S * (r + dr);
    // Append the new tokens' latents and rope keys first, as the cache
    // stores them: every token attends to the stored rows.
    for (int64_t t = 0; t < Tn; ++t) {
      Real *row = cb + (past + t) * (r + dr);
      m.latent(x.f + (b * Tn + t) * H, past + t, row, tmp);
      storeCacheRow(row, r, dr, storage);
    }
    for (int64_t t = 0; t < Tn; ++t) {
      int64_t pos = past + t, n = pos + 1;
      m.query(x.f + (b * Tn + t) * H, pos, qv.data(), tmp);
      for (int64_t h = 0; h < nh; ++h) {
        // Absorb W_UK into the query: q~ = q_nope W_UK[h] (an r-vector).
        const Real *qh = qv.data() + h * dq;
        Real *qa = qt.data() + h * r;
        std::fill(qa, qa + r, Real(0));
        for (int64_t j = 0; j < dn; ++j) {
          const Real *wuk = m.kvb + (h * (dn + dv) + j) * r;
          for (int64_t c = 0; c < r; ++c)
            qa[c] += qh[j] * wuk[c];
        }
        for (int64_t s = 0; s < n; ++s) {
          const Real *cs = cb + s * (r + dr);
          z[s] = mlaLogit(qa, cs, r, qh + dn, cs + r, dr) * Real(m.scale);
        }
        softmaxInPlace(z, n);
        std::fill(lat.begin(), lat.end(), Real(0));
        for (int64_t s = 0; s < n; ++s)
          for (int64_t c = 0; c < r; ++c)
            lat[c] += z[s] * cb[s * (r + dr) + c];
        // o[h] = W_UV[h] · (sum_s P_s c_s).
        for (int64_t j = 0; j < dv; ++j) {
          const Real *wuv = m.kvb + (h * (dn + dv) + dn + j) * r;
          Real acc = 0;
          for (int64_t c = 0; c < r; ++c)
            acc += wuv[c] * lat[c];
          attn[h * dv + j] = acc;
        }
      }
      m.project(attn.data(), y.f + (b * Tn + t) * H);
    }
  }
  // outs[1] is the cache itself (updated in place).
  if (out.size() > 1 && out[1]->f != cache.f)
    fail("kernel {}: the cache must be updated in place", k);
}

template <typename Real>
void moeRoute(const std::string &k, const json &p, Ins<Real> &in, Ins<Real> &out) {
  T<Real> &x = *in[0], &gate = *in[1];
  const Real *bias = in.size() > 2 ? in[2]->f : nullptr;
  RouteConfig c(k, p, gate.dim(0));
  int64_t H = gate.dim(1), K = c.K;
  expectLast(k, x, H, "hidden");
  std::vector<int64_t> shape = {x.dim(0), x.dim(1), K};
  setShape(k, *out[0], shape);
  setShape(k, *out[1], shape);
  std::vector<Real> logit(c.E), score;
  std::vector<int64_t> sel;
  for (int64_t n = 0, N = x.dim(0) * x.dim(1); n < N; ++n) {
    matvec(x.f + n * H, gate.f, c.E, H, logit.data());
    routeToken(c, logit, bias, score, sel);
    Real sum = 0;
    for (int64_t j = 0; j < K; ++j)
      sum += score[sel[j]];
    for (int64_t j = 0; j < K; ++j) {
      Real w = score[sel[j]];
      if (c.norm)
        w /= (sum + Real(1e-20));
      out[0]->i[n * K + j] = sel[j];
      out[1]->f[n * K + j] = w * Real(c.scaling);
    }
  }
}

template <typename Real>
void moeDispatch(const std::string &k, const json &p, Ins<Real> &in, Ins<Real> &out) {
  T<Real> &x = *in[0], &idx = *in[1];
  int64_t E = geti(k, p, "num_experts"), H = x.dim(-1), K = idx.dim(-1);
  int64_t N = x.dim(0) * x.dim(1), R = N * K;
  setShape(k, *out[0], {R, H});
  setShape(k, *out[1], {E});
  setShape(k, *out[2], {R});
  std::vector<std::vector<int64_t>> slotsOf(E);
  for (int64_t s = 0; s < R; ++s) {
    int64_t e = idx.i[s];
    if (e < 0 || e >= E)
      fail("kernel {}: expert index {} out of range [0, {})", k, e, E);
    slotsOf[e].push_back(s);
  }
  int64_t row = 0;
  for (int64_t e = 0; e < E; ++e) {
    out[1]->i[e] = int64_t(slotsOf[e].size());
    for (int64_t s : slotsOf[e]) {
      std::copy(x.f + (s / K) * H, x.f + (s / K + 1) * H, out[0]->f + row * H);
      out[2]->i[row++] = s;
    }
  }
}

template <typename Real>
void expertGroupedMatmul(const std::string &k, const json &p, Ins<Real> &in,
                         Ins<Real> &out) {
  T<Real> &rows = *in[0], &w = *in[1], &counts = *in[2], &y = *out[0];
  Proj<Real> wp = projOf(k, p, in, 1);
  int64_t E = w.dim(0), N = w.dim(1), K = w.dim(2), R = rows.dim(0);
  expectLast(k, rows, K, "rows");
  setShape(k, y, {R, N});
  int64_t r = 0;
  for (int64_t e = 0; e < E; ++e)
    for (int64_t c = 0; c < counts.i[e]; ++c, ++r) {
      if (r >= R)
        fail("kernel {}: counts sum past the {} rows", k, R);
      wp.expert(e, N, K).apply(rows.f + r * K, N, K, y.f + r * N);
    }
}

/// The experts' gate/up projections and SwiGLU (dsv3.expert_gated_matmul).
template <typename Real>
void expertGatedMatmul(const std::string &k, const json &p, Ins<Real> &in,
                       Ins<Real> &out) {
  T<Real> &rows = *in[0], &wg = *in[1], &wu = *in[2], &counts = *in[3], &y = *out[0];
  Proj<Real> gp = projOf(k, p, in, 1), up = projOf(k, p, in, 2);
  int64_t E = wg.dim(0), N = wg.dim(1), K = wg.dim(2), R = rows.dim(0);
  expectLast(k, rows, K, "rows");
  setShape(k, y, {R, N});
  std::vector<Real> g(N), u(N);
  int64_t r = 0;
  for (int64_t e = 0; e < E; ++e)
    for (int64_t c = 0; c < counts.i[e]; ++c, ++r) {
      if (r >= R)
        fail("kernel {}: counts sum past the {} rows", k, R);
      gp.expert(e, N, K).apply(rows.f + r * K, N, K, g.data());
      up.expert(e, N, K).apply(rows.f + r * K, N, K, u.data());
      for (int64_t n = 0; n < N; ++n)
        y.f[r * N + n] = silu(g[n]) * u[n];
    }
}

template <typename Real>
void moeCombine(const std::string &k, const json &, Ins<Real> &in, Ins<Real> &out) {
  T<Real> &eo = *in[0], &slots = *in[1], &w = *in[2], &y = *out[0];
  int64_t H = eo.dim(1), K = w.dim(-1);
  setShape(k, y, {w.dim(0), w.dim(1), H});
  std::fill(y.f, y.f + y.numel(), Real(0));
  for (int64_t r = 0; r < eo.dim(0); ++r) {
    int64_t s = slots.i[r];
    Real weight = w.f[s];
    Real *dst = y.f + (s / K) * H;
    for (int64_t j = 0; j < H; ++j)
      dst[j] += weight * eo.f[r * H + j];
  }
}

template <typename Real>
void mtp(const std::string &k, const json &p, Ins<Real> &in, Ins<Real> &out) {
  T<Real> &h = *in[0], &emb = *in[1], &enorm = *in[2], &hnorm = *in[3];
  T<Real> &eh = *in[4], &y = *out[0];
  int64_t depth = geti(k, p, "depth"), H = emb.dim(-1);
  int64_t B = emb.dim(0), Tn = emb.dim(1), rows = Tn - depth;
  double eps = getf(k, p, "epsilon");
  if (rows < 1)
    fail("kernel {}: depth {} leaves no rows of a sequence of {}", k, depth, Tn);
  setShape(k, y, {B, rows, H});
  std::vector<Real> cat(2 * H);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t i = 0; i < rows; ++i) {
      // Embedding first, hidden second (SEMANTICS.md 7).
      rmsNormRow(emb.f + (b * Tn + i + depth) * H, enorm.f, H, eps, cat.data());
      rmsNormRow(h.f + (b * h.dim(1) + i) * H, hnorm.f, H, eps, cat.data() + H);
      matvec(cat.data(), eh.f, H, 2 * H, y.f + (b * rows + i) * H);
    }
}

/// The mean cross entropy of rows [batch, rows] against labels [batch,
/// seq] (row i targets position i + shift; ignore_index skipped), each
/// row's logits from `logitsOf(b, i)`: the stored logits (cross_entropy)
/// or one row computed on the spot (lm_head_cross_entropy).
template <typename Real, typename RowFn>
double meanCrossEntropy(const std::string &k, const json &p, const T<Real> &labels, int64_t B,
                        int64_t R, int64_t V, RowFn logitsOf) {
  int64_t shift = geti(k, p, "shift"), ignore = geti(k, p, "ignore_index"), Tn = labels.dim(1);
  double total = 0;
  int64_t count = 0;
  for (int64_t b = 0; b < B; ++b)
    for (int64_t i = 0; i < R && i + shift < Tn; ++i) {
      int64_t target = labels.i[b * Tn + i + shift];
      if (target == ignore)
        continue;
      if (target < 0 || target >= V)
        fail("kernel {}: label {} outside the vocabulary [0, {})", k, target, V);
      const Real *row = logitsOf(b, i);
      double m = *std::max_element(row, row + V), sum = 0;
      for (int64_t v = 0; v < V; ++v)
        sum += std::exp(double(row[v]) - m);
      total += m + std::log(sum) - double(row[target]);
      ++count;
    }
  return count ? getf(k, p, "scale") * total / double(count) : 0.0;
}

template <typename Real>
void crossEntropy(const std::string &k, const json &p, Ins<Real> &in, Ins<Real> &out) {
  T<Real> &logits = *in[0], &labels = *in[1];
  int64_t B = logits.dim(0), R = logits.dim(1), V = logits.dim(2);
  setShape(k, *out[0], {});
  out[0]->f[0] = Real(meanCrossEntropy(k, p, labels, B, R, V, [&](int64_t b, int64_t i) {
    return logits.f + (b * R + i) * V;
  }));
}

/// dsv3.lm_head_cross_entropy: cross_entropy of lm_head's logits, each
/// row's computed as lm_head computes it (the same sums) into one row's
/// buffer and dropped.
template <typename Real>
void lmHeadCrossEntropy(const std::string &k, const json &p, Ins<Real> &in, Ins<Real> &out) {
  T<Real> &h = *in[0], &w = *in[1], &labels = *in[2];
  Proj<Real> wp = projOf(k, p, in, 1);
  int64_t B = h.dim(0), R = h.dim(1), V = w.dim(0), H = w.dim(1);
  expectLast(k, h, H, "hidden");
  setShape(k, *out[0], {});
  std::vector<Real> row(static_cast<size_t>(V));
  out[0]->f[0] = Real(meanCrossEntropy(k, p, labels, B, R, V, [&](int64_t b, int64_t i) {
    wp.apply(h.f + (b * R + i) * H, V, H, row.data(), nullptr);
    return row.data();
  }));
}

template <typename Real>
void fill(const std::string &k, const json &p, Ins<Real> &, Ins<Real> &out) {
  std::vector<int64_t> shape;
  for (const json &d : p.at("shape"))
    shape.push_back(d.get<int64_t>());
  setShape(k, *out[0], shape);
  std::fill(out[0]->f, out[0]->f + out[0]->numel(), Real(getf(k, p, "value")));
}
template <typename Real>
void moeBalanceLoss(const std::string &k, const json &p, Ins<Real> &in, Ins<Real> &out) {
  setShape(k, *out[0], {});
  out[0]->f[0] = Real(balanceLoss(k, p, *in[0], *in[1], *in[2], 0.0,
                                  (Real *)nullptr, (Real *)nullptr));
}

/// sqrt of the sum of squares of every element of every input.
template <typename Real>
void globalNorm(const std::string &k, const json &p, Ins<Real> &in, Ins<Real> &out) {
  // operandSegmentSizes: [tensors, 0 or 1 (plus_squares, a scalar sum of
  // squares added under the root)].
  size_t tensors = in.size();
  bool plus = false;
  if (p.contains("operandSegmentSizes") && p["operandSegmentSizes"].size() == 2) {
    tensors = p["operandSegmentSizes"][0].get<size_t>();
    plus = p["operandSegmentSizes"][1].get<int>() == 1;
    if (tensors + (plus ? 1 : 0) != in.size())
      fail("kernel {}: operandSegmentSizes disagree with its {} inputs", k, in.size());
  }
  double ss = 0;
  for (size_t j = 0; j < tensors; ++j)
    for (int64_t i = 0; i < in[j]->numel(); ++i)
      ss += double(in[j]->f[i]) * double(in[j]->f[i]);
  if (plus)
    ss += double(in[tensors]->f[0]);
  setShape(k, *out[0], {});
  out[0]->f[0] = Real(getb(p, "squared") ? ss : std::sqrt(ss));
}

/// One AdamW step in place (see dsv3.adamw): clip, decoupled decay, moments,
/// bias-corrected update. bf16 moments (moments_bf16): each new moment is
/// rounded to bf16 as the cuda kernel does (from fp32), and the update reads
/// the rounded value.
template <typename Real>
void adamw(const std::string &k, const json &p, Ins<Real> &in, Ins<Real> &) {
  T<Real> &param = *in[0], &grad = *in[1], &m = *in[2], &v = *in[3];
  int64_t step = in[4]->i[0];
  double lr = in[5]->f[0], norm = in[6]->f[0];
  double b1 = getf(k, p, "beta1"), b2 = getf(k, p, "beta2"), eps = getf(k, p, "eps");
  double wd = getb(p, "decay") ? getf(k, p, "weight_decay") : 0.0;
  double clip = getf(k, p, "max_grad_norm");
  if (step < 1)
    fail("kernel {}: optimizer step must be >= 1, got {}", k, step);
  double scale = clip > 0 ? std::min(1.0, clip / (norm + 1e-6)) : 1.0;
  double c1 = 1 - std::pow(b1, double(step)), c2 = 1 - std::pow(b2, double(step));
  const bool bf16 = getb(p, "moments_bf16");
  auto stored = [&](double x) { return bf16 ? double(bf16ToFloat(floatToBf16(float(x)))) : x; };
  for (int64_t i = 0; i < param.numel(); ++i) {
    double g = double(grad.f[i]) * scale;
    double pv = double(param.f[i]) * (1 - lr * wd);
    double mv = stored(b1 * double(m.f[i]) + (1 - b1) * g);
    double vv = stored(b2 * double(v.f[i]) + (1 - b2) * g * g);
    m.f[i] = Real(mv);
    v.f[i] = Real(vv);
    param.f[i] = Real(pv - lr * (mv / c1) / (std::sqrt(vv / c2) + eps));
  }
}

/// b[e] += rate * sign(mean(n) - n[e]) (aux-loss-free balancing).
template <typename Real>
void expertBiasUpdate(const std::string &k, const json &p, Ins<Real> &in, Ins<Real> &) {
  T<Real> &bias = *in[0], &counts = *in[1];
  double rate = getf(k, p, "rate"), mean = 0;
  int64_t E = counts.numel();
  for (int64_t e = 0; e < E; ++e)
    mean += double(counts.i[e]);
  mean /= double(E);
  for (int64_t e = 0; e < E; ++e) {
    double d = mean - double(counts.i[e]);
    bias.f[e] += Real(rate * (d > 0 ? 1 : d < 0 ? -1 : 0));
  }
}
} // namespace

template <typename Real>
const std::map<std::string, HostKernelFn<Real>> &registry() {
  static const std::map<std::string, HostKernelFn<Real>> kernels = [] {
    std::map<std::string, HostKernelFn<Real>> kernels = {
      {"embedding", embedding<Real>},
      {"rms_norm", rmsNorm<Real>},
      {"last_token", lastToken<Real>},
      {"linear", linear<Real>},
      {"lm_head", linear<Real>},
      {"rope", rope<Real>},
      {"gated_linear", gatedLinear<Real>},
      {"norm_linear", normLinear<Real>},
      {"norm_gated_linear", normGatedLinear<Real>},
      {"linear_add", linearAdd<Real>},
      {"expert_gated_matmul", expertGatedMatmul<Real>},
      {"swiglu", swiglu<Real>},
      {"add", add<Real>},
      {"latent_attention", latentAttention<Real>},
      {"latent_attention_decode", latentAttentionDecode<Real>},
      {"moe_route", moeRoute<Real>},
      {"moe_dispatch", moeDispatch<Real>},
      {"expert_grouped_matmul", expertGroupedMatmul<Real>},
      {"moe_combine", moeCombine<Real>},
      {"mtp", mtp<Real>},
      {"cross_entropy", crossEntropy<Real>},
      {"lm_head_cross_entropy", lmHeadCrossEntropy<Real>},
      {"fill", fill<Real>},
      {"global_norm", globalNorm<Real>},
      {"moe_balance_loss", moeBalanceLoss<Real>},
      {"adamw", adamw<Real>},
      {"expert_bias_update", expertBiasUpdate<Real>},
    };
    addGradKernels<Real>(kernels);
    addCollectiveKernels<Real>(kernels);
    return kernels;
  }();
  return kernels;
}
} // namespace host

template <typename Real> HostKernelFn<Real> findHostKernel(const std::string &kernel) {
  auto &r = host::registry<Real>();
  auto it = r.find(kernel);
  return it == r.end() ? nullptr : it->second;
}
template HostKernelFn<float> findHostKernel<float>(const std::string &);
template HostKernelFn<double> findHostKernel<double>(const std::string &);

std::vector<std::string> hostKernelNames() {
  std::vector<std::string> names;
  for (auto &[n, f] : host::registry<float>())
    names.push_back(n);
  return names;
}

} // namespace dsv3rt
