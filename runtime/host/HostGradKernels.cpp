//===- HostGradKernels.cpp - vector-Jacobian products of the host kernels -===//
//
// One "<op>_vjp" kernel per differentiable dsv3 op. Inputs: the op's
// primals (its forward operands) followed by the cotangents of its
// floating-point results; outputs: the gradients of the operands listed in
// `grad_operands`. Everything the backward needs is recomputed from the
// primals (attention probabilities, routing, the dispatch permutation), as
// the GPU kernels will with flash-style recomputation.
//
//===----------------------------------------------------------------------===//

#include "runtime/VjpOperands.h"
#include "runtime/host/HostMath.h"

#include <array>

namespace dsv3rt::host {
namespace {

/// The primals, cotangents and (zeroed) gradient outputs of one vjp launch.
template <typename Real> struct Vjp : VjpOperands<T<Real>> {
  Vjp(const std::string &k, const json &p, Ins<Real> &in, Ins<Real> &out)
      : VjpOperands<T<Real>>(k, p, in, out) {
    for (size_t i = 0; i < this->grads.size(); ++i)
      if (T<Real> *t = this->grads[i]) {
        setShape(k, *t, this->primals[i]->shape);
        std::fill(t->f, t->f + t->numel(), Real(0));
      }
  }
  Real *g(size_t operand) const {
    return operand < this->grads.size() && this->grads[operand] ? this->grads[operand]->f
                                                                 : nullptr;
  }
};

template <typename Real>
void embeddingVjp(const std::string &k, const json &p, Ins<Real> &in, Ins<Real> &out) {
  Vjp<Real> v(k, p, in, out);
  T<Real> &ids = *v.primals[0], &dy = *v.cts[0];
  int64_t H = v.primals[1]->dim(1);
  if (Real *dt = v.g(1))
    for (int64_t n = 0; n < ids.numel(); ++n)
      for (int64_t j = 0; j < H; ++j)
        dt[ids.i[n] * H + j] += dy.f[n * H + j];
}

template <typename Real>
void rmsNormVjp(const std::string &k, const json &p, Ins<Real> &in, Ins<Real> &out) {
  Vjp<Real> v(k, p, in, out);
  T<Real> &x = *v.primals[0], &w = *v.primals[1], &dy = *v.cts[0];
  int64_t n = x.dim(-1);
  double eps = getf(k, p, "epsilon");
  for (int64_t r = 0, R = rowsOf(x.shape); r < R; ++r)
    rmsNormRowGrad(x.f + r * n, w.f, n, eps, dy.f + r * n,
                   v.g(0) ? v.g(0) + r * n : nullptr, v.g(1));
}

template <typename Real>
void linearVjp(const std::string &k, const json &p, Ins<Real> &in, Ins<Real> &out) {
  Vjp<Real> v(k, p, in, out);
  T<Real> &x = *v.primals[0], &w = *v.primals[1], &dy = *v.cts[0];
  int64_t N = w.dim(0), K = w.dim(1);
  if (auto [br, bc] = fp8ComputeBlock(p); br > 0) {
    // FP8 training: Dgrad and Wgrad as FP8 GEMMs (the bias in fp32).
    int64_t R = rowsOf(x.shape);
    if (v.g(0)) {
      Proj<Real> wq = projOf(k, p, in, 1);
      for (int64_t r = 0; r < R; ++r)
        fp8RowDgrad(dy.f + r * N, wq, N, K, v.g(0) + r * K);
    }
    if (v.g(1))
      fp8Wgrad(dy.f, x.f, R, N, K, bc, v.g(1));
    if (v.g(2))
      for (int64_t r = 0; r < R; ++r)
        for (int64_t o = 0; o < N; ++o)
          v.g(2)[o] += dy.f[r * N + o];
    return;
  }
  for (int64_t r = 0, R = rowsOf(x.shape); r < R; ++r) {
    const Real *g = dy.f + r * N;
    if (v.g(0))
      matvecT(g, w.f, N, K, v.g(0) + r * K);
    if (v.g(1))
      outerAdd(g, x.f + r * K, N, K, v.g(1));
    if (v.g(2))
      for (int64_t o = 0; o < N; ++o)
        v.g(2)[o] += g[o];
  }
}

template <typename Real>
void swigluVjp(const std::string &k, const json &p, Ins<Real> &in, Ins<Real> &out) {
  Vjp<Real> v(k, p, in, out);
  T<Real> &g = *v.primals[0], &u = *v.primals[1], &dy = *v.cts[0];
  for (int64_t i = 0; i < g.numel(); ++i) {
    Real x = g.f[i], s = Real(1) / (Real(1) + std::exp(-x));
    if (v.g(0))
      v.g(0)[i] = dy.f[i] * u.f[i] * s * (Real(1) + x * (Real(1) - s));
    if (v.g(1))
      v.g(1)[i] = dy.f[i] * x * s;
  }
}

template <typename Real>
void ropeVjp(const std::string &k, const json &p, Ins<Real> &in, Ins<Real> &out) {
  Vjp<Real> v(k, p, in, out);
  T<Real> &x = *v.primals[0], &pos = *v.primals[1], &dy = *v.cts[0];
  Rope<Real> r(k, p.at("rope"));
  Real *dx = v.g(0);
  if (!dx)
    return;
  std::copy(dy.f, dy.f + dy.numel(), dx);
  int64_t perToken = x.numel() / (x.dim(0) * x.dim(1));
  for (int64_t t = 0; t < x.dim(0) * x.dim(1); ++t)
    for (int64_t h = 0; h < perToken / r.dim; ++h)
      r.applyTranspose(dx + t * perToken + h * r.dim, pos.i[t]);
}

/// The gradient of meanCrossEntropy (cotangent dloss) with respect to
/// each row's logits, handed with the row to `use(b, i, drow)`; rows
/// without a target get none. Each row's logits from `logitsOf(b, i)`.
template <typename Real, typename RowFn, typename UseFn>
void crossEntropyRowGrads(const std::string &k, const json &p, const T<Real> &labels,
                          double dloss, int64_t B, int64_t R, int64_t V, RowFn logitsOf,
                          UseFn use) {
  int64_t shift = geti(k, p, "shift"), ignore = geti(k, p, "ignore_index");
  double scale = getf(k, p, "scale");
  int64_t Tn = labels.dim(1), count = 0;
  for (int64_t b = 0; b < B; ++b)
    for (int64_t i = 0; i < R && i + shift < Tn; ++i)
      count += labels.i[b * Tn + i + shift] != ignore;
  if (!count)
    return;
  double factor = dloss * scale / double(count);
  std::vector<Real> drow(static_cast<size_t>(V));
  for (int64_t b = 0; b < B; ++b)
    for (int64_t i = 0; i < R && i + shift < Tn; ++i) {
      int64_t target = labels.i[b * Tn + i + shift];
      if (target == ignore)
        continue;
      const Real *row = logitsOf(b, i);
      double m = *std::max_element(row, row + V), sum = 0;
      for (int64_t c = 0; c < V; ++c)
        sum += std::exp(double(row[c]) - m);
      for (int64_t c = 0; c < V; ++c)
        drow[size_t(c)] = Real(factor * (std::exp(double(row[c]) - m) / sum -
                                         (c == target ? 1.0 : 0.0)));
      use(b, i, drow.data());
    }
}

template <typename Real>
void crossEntropyVjp(const std::string &k, const json &p, Ins<Real> &in,
                     Ins<Real> &out) {
  Vjp<Real> v(k, p, in, out);
  T<Real> &logits = *v.primals[0], &labels = *v.primals[1];
  int64_t B = logits.dim(0), R = logits.dim(1), V = logits.dim(2);
  Real *dl = v.g(0);
  if (!dl)
    return;
  crossEntropyRowGrads(
      k, p, labels, double(v.cts[0]->f[0]), B, R, V,
      [&](int64_t b, int64_t i) { return logits.f + (b * R + i) * V; },
      [&](int64_t b, int64_t i, const Real *drow) {
        std::copy(drow, drow + V, dl + (b * R + i) * V);
      });
}

/// dsv3.lm_head_cross_entropy's gradient: each row's logits recomputed as
/// the forward computed them, its logits' gradient turned at once into the
/// hidden row's (dlogits W) and the weight's (+= dlogitsᵀ h), in the row
/// order of lm_head's own vjp (the same sums as the unfused pair).
template <typename Real>
void lmHeadCrossEntropyVjp(const std::string &k, const json &p, Ins<Real> &in,
                           Ins<Real> &out) {
  Vjp<Real> v(k, p, in, out);
  T<Real> &h = *v.primals[0], &w = *v.primals[1], &labels = *v.primals[2];
  Real *dh = v.g(0), *dw = v.g(1);
  if (!dh && !dw)
    return;
  Proj<Real> wp = projOf(k, p, in, 1);
  int64_t B = h.dim(0), R = h.dim(1), V = w.dim(0), H = w.dim(1);
  std::vector<Real> row(static_cast<size_t>(V));
  crossEntropyRowGrads(
      k, p, labels, double(v.cts[0]->f[0]), B, R, V,
      [&](int64_t b, int64_t i) {
        wp.apply(h.f + (b * R + i) * H, V, H, row.data(), nullptr);
        return row.data();
      },
      [&](int64_t b, int64_t i, const Real *drow) {
        if (dh)
          matvecT(drow, w.f, V, H, dh + (b * R + i) * H);
        if (dw)
          outerAdd(drow, h.f + (b * R + i) * H, V, H, dw);
      });
}

template <typename Real>
void mtpVjp(const std::string &k, const json &p, Ins<Real> &in, Ins<Real> &out) {
  Vjp<Real> v(k, p, in, out);
  T<Real> &h = *v.primals[0], &emb = *v.primals[1], &enorm = *v.primals[2];
  T<Real> &hnorm = *v.primals[3], &eh = *v.primals[4], &dy = *v.cts[0];
  int64_t depth = geti(k, p, "depth"), H = emb.dim(-1);
  int64_t B = emb.dim(0), Tn = emb.dim(1), rows = Tn - depth, hr = h.dim(1);
  double eps = getf(k, p, "epsilon");
  std::vector<Real> cat(2 * H), dcat(2 * H);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t i = 0; i < rows; ++i) {
      const Real *e = emb.f + (b * Tn + i + depth) * H, *x = h.f + (b * hr + i) * H;
      const Real *g = dy.f + (b * rows + i) * H;
      rmsNormRow(e, enorm.f, H, eps, cat.data());
      rmsNormRow(x, hnorm.f, H, eps, cat.data() + H);
      std::fill(dcat.begin(), dcat.end(), Real(0));
      matvecT(g, eh.f, H, 2 * H, dcat.data());
      if (v.g(4))
        outerAdd(g, cat.data(), H, 2 * H, v.g(4));
      rmsNormRowGrad(e, enorm.f, H, eps, dcat.data(),
                     v.g(1) ? v.g(1) + (b * Tn + i + depth) * H : nullptr, v.g(2));
      rmsNormRowGrad(x, hnorm.f, H, eps, dcat.data() + H,
                     v.g(0) ? v.g(0) + (b * hr + i) * H : nullptr, v.g(3));
    }
}

template <typename Real>
void moeRouteVjp(const std::string &k, const json &p, Ins<Real> &in, Ins<Real> &out) {
  Vjp<Real> v(k, p, in, out);
  T<Real> &x = *v.primals[0], &gate = *v.primals[1], &dw = *v.cts[0];
  const Real *bias = v.primals.size() > 2 ? v.primals[2]->f : nullptr;
  RouteConfig c(k, p, gate.dim(0));
  int64_t H = gate.dim(1), E = c.E, K = c.K;
  std::vector<Real> logit(E), score, dscore(E), dlogit(E);
  std::vector<int64_t> sel;
  for (int64_t n = 0, N = x.dim(0) * x.dim(1); n < N; ++n) {
    const Real *xn = x.f + n * H, *g = dw.f + n * K;
    matvec(xn, gate.f, E, H, logit.data());
    routeToken(c, logit, bias, score, sel);
    // w_k = scale * p_k (/ (sum_j p_j + 1e-20) when normalised): only the
    // selected scores carry gradient.
    std::fill(dscore.begin(), dscore.end(), Real(0));
    Real sum = Real(1e-20), dot = 0;
    for (int64_t j = 0; j < K; ++j) {
      sum += score[sel[j]];
      dot += g[j] * score[sel[j]];
    }
    for (int64_t j = 0; j < K; ++j)
      dscore[sel[j]] += Real(c.scaling) *
                        (c.norm ? g[j] / sum - dot / (sum * sum) : g[j]);
    if (c.sigmoid) {
      for (int64_t e = 0; e < E; ++e)
        dlogit[e] = dscore[e] * score[e] * (Real(1) - score[e]);
    } else {
      Real s = 0;
      for (int64_t e = 0; e < E; ++e)
        s += dscore[e] * score[e];
      for (int64_t e = 0; e < E; ++e)
        dlogit[e] = score[e] * (dscore[e] - s);
    }
    if (v.g(0))
      matvecT(dlogit.data(), gate.f, E, H, v.g(0) + n * H);
    if (v.g(1))
      outerAdd(dlogit.data(), xn, E, H, v.g(1));
  }
}

template <typename Real>
void moeDispatchVjp(const std::string &k, const json &p, Ins<Real> &in,
                    Ins<Real> &out) {
  Vjp<Real> v(k, p, in, out);
  T<Real> &x = *v.primals[0], &idx = *v.primals[1], &drows = *v.cts[0];
  int64_t E = geti(k, p, "num_experts"), H = x.dim(-1), K = idx.dim(-1);
  int64_t R = idx.numel();
  Real *dx = v.g(0);
  if (!dx)
    return;
  // The forward permutation: slots ordered by expert, stable in slot order.
  int64_t row = 0;
  for (int64_t e = 0; e < E; ++e)
    for (int64_t s = 0; s < R; ++s)
      if (idx.i[s] == e) {
        const Real *g = drows.f + row++ * H;
        Real *d = dx + (s / K) * H;
        for (int64_t j = 0; j < H; ++j)
          d[j] += g[j];
      }
}

template <typename Real>
void expertGroupedMatmulVjp(const std::string &k, const json &p, Ins<Real> &in,
                            Ins<Real> &out) {
  Vjp<Real> v(k, p, in, out);
  T<Real> &rows = *v.primals[0], &w = *v.primals[1], &counts = *v.primals[2];
  T<Real> &dy = *v.cts[0];
  int64_t E = w.dim(0), N = w.dim(1), K = w.dim(2);
  int64_t r = 0;
  if (auto [br, bc] = fp8ComputeBlock(p); br > 0) {
    // FP8 training: per expert, Dgrad and Wgrad as FP8 GEMMs over its rows.
    Proj<Real> wq = v.g(0) ? projOf(k, p, in, 1) : Proj<Real>();
    for (int64_t e = 0; e < E; ++e) {
      int64_t n = counts.i[e];
      if (v.g(0))
        for (int64_t c = 0; c < n; ++c)
          fp8RowDgrad(dy.f + (r + c) * N, wq.expert(e, N, K), N, K, v.g(0) + (r + c) * K);
      if (v.g(1))
        fp8Wgrad(dy.f + r * N, rows.f + r * K, n, N, K, bc, v.g(1) + e * N * K);
      r += n;
    }
    return;
  }
  for (int64_t e = 0; e < E; ++e)
    for (int64_t c = 0; c < counts.i[e]; ++c, ++r) {
      const Real *g = dy.f + r * N;
      if (v.g(0))
        matvecT(g, w.f + e * N * K, N, K, v.g(0) + r * K);
      if (v.g(1))
        outerAdd(g, rows.f + r * K, N, K, v.g(1) + e * N * K);
    }
}

template <typename Real>
void moeCombineVjp(const std::string &k, const json &p, Ins<Real> &in,
                   Ins<Real> &out) {
  Vjp<Real> v(k, p, in, out);
  T<Real> &eo = *v.primals[0], &slots = *v.primals[1], &w = *v.primals[2];
  T<Real> &dy = *v.cts[0];
  int64_t H = eo.dim(1), K = w.dim(-1);
  for (int64_t r = 0; r < eo.dim(0); ++r) {
    int64_t s = slots.i[r];
    const Real *g = dy.f + (s / K) * H, *o = eo.f + r * H;
    if (v.g(0))
      for (int64_t j = 0; j < H; ++j)
        v.g(0)[r * H + j] = w.f[s] * g[j];
    if (v.g(2)) {
      Real acc = 0;
      for (int64_t j = 0; j < H; ++j)
        acc += g[j] * o[j];
      v.g(2)[s] += acc;
    }
  }
}

template <typename Real>
void moeBalanceLossVjp(const std::string &k, const json &p, Ins<Real> &in,
                       Ins<Real> &out) {
  Vjp<Real> v(k, p, in, out);
  balanceLoss(k, p, *v.primals[0], *v.primals[1], *v.primals[2],
              double(v.cts[0]->f[0]), v.g(0), v.g(1));
}

/// MLA backward (SEMANTICS.md 3) by recomputation: the forward
/// intermediates of a sequence are rebuilt, the attention probabilities one
/// (query, head) at a time.
template <typename Real>
void latentAttentionVjp(const std::string &k, const json &p, Ins<Real> &in,
                        Ins<Real> &out) {
  Vjp<Real> v(k, p, in, out);
  Mla<Real> m(k, p, v.primals, 1);
  T<Real> &x = *v.primals[0], &dy = *v.cts[0];
  int64_t B = x.dim(0), Tn = x.dim(1), H = m.H, nh = m.nh, dq = m.dq;
  int64_t dn = m.dn, dr = m.dr, dv = m.dv, r = m.r, rq = m.rq;
  using S = typename Mla<Real>::Slot;
  auto grad = [&](S slot) -> Real * {
    return m.operandIndex[slot] < 0 ? nullptr : v.g(size_t(m.operandIndex[slot]));
  };
  Real *dWqa = grad(S::QA), *dwqan = grad(S::QANorm), *dWq = grad(S::Q);
  Real *dWkva = grad(S::KVA), *dwkvn = grad(S::KVANorm), *dWkvb = grad(S::KVB);
  Real *dWo = grad(S::O), *dbqa = grad(S::QABias), *dbkva = grad(S::KVABias);
  Real *dbo = grad(S::OBias), *dx = v.g(0);
  int64_t W = nh * (dn + dv);
  // FP8 training: the projections' GEMMs (the recomputed forward, Dgrad and
  // Wgrad) in FP8; a Wgrad quantizes over tokens, so each projection's rows
  // are kept and its weight gradient made once at the end.
  auto [fp8Rows, fp8Block] = fp8ComputeBlock(p);
  bool fp8 = fp8Rows > 0;
  int64_t NT = B * Tn;
  enum { PO, PKVB, PKVA, PQ, PQA, NumProj };
  struct Rows {
    std::vector<Real> dy, x;
    int64_t out = 0, in = 0;
    Real *dW = nullptr;
  };
  std::array<Rows, NumProj> kept;
  auto wgrad = [&](int which, const Real *g, const Real *xin, int64_t o, int64_t i, Real *dW,
                   int64_t row) {
    if (!dW)
      return;
    if (!fp8) {
      outerAdd(g, xin, o, i, dW);
      return;
    }
    Rows &rows = kept[size_t(which)];
    if (!rows.dW)
      rows = Rows{std::vector<Real>(size_t(NT * o)), std::vector<Real>(size_t(NT * i)), o, i, dW};
    std::copy(g, g + o, rows.dy.begin() + row * o);
    std::copy(xin, xin + i, rows.x.begin() + row * i);
  };
  auto dgrad = [&](const Real *g, const Proj<Real> &w, int64_t o, int64_t i, Real *dxi) {
    if (fp8)
      fp8RowDgrad(g, w, o, i, dxi);
    else
      matvecT(g, w.w, o, i, dxi);
  };
  std::vector<Real> QA(Tn * rq), QN(Tn * rq), Q(Tn * nh * dq), A(Tn * (r + dr));
  std::vector<Real> L(Tn * (r + dr)), U(Tn * W), tmp, z(Tn), dP(Tn);
  std::vector<Real> dQ, dU, dL, o(nh * dv), dO(nh * dv), buf;
  for (int64_t b = 0; b < B; ++b) {
    const Real *xb = x.f + b * Tn * H;
    for (int64_t t = 0; t < Tn; ++t) {
      const Real *xt = xb + t * H;
      Real *q = Q.data() + t * nh * dq;
      if (m.qLora) {
        m.qaP.apply(xt, rq, H, QA.data() + t * rq, m.qaBias);
        rmsNormRow(QA.data() + t * rq, m.qaNorm, rq, m.eps, QN.data() + t * rq);
        m.qP.apply(QN.data() + t * rq, nh * dq, rq, q);
      } else {
        m.qP.apply(xt, nh * dq, H, q);
      }
      for (int64_t h = 0; h < nh; ++h)
        m.rope.apply(q + h * dq + dn, t);
      Real *a = A.data() + t * (r + dr), *l = L.data() + t * (r + dr);
      m.kvaP.apply(xt, r + dr, H, a, m.kvaBias);
      rmsNormRow(a, m.kvaNorm, r, m.eps, l);
      std::copy(a + r, a + r + dr, l + r);
      m.rope.apply(l + r, t);
      m.kvbP.apply(l, W, r, U.data() + t * W);
    }
    dQ.assign(Tn * nh * dq, Real(0));
    dU.assign(Tn * W, Real(0));
    dL.assign(Tn * (r + dr), Real(0));
    Real s = Real(m.scale);
    for (int64_t i = 0; i < Tn; ++i) {
      const Real *g = dy.f + (b * Tn + i) * H;
      std::fill(dO.begin(), dO.end(), Real(0));
      dgrad(g, m.oP, H, nh * dv, dO.data());
      for (int64_t h = 0; h < nh; ++h) {
        const Real *qh = Q.data() + (i * nh + h) * dq;
        for (int64_t t = 0; t <= i; ++t) {
          const Real *kn = U.data() + t * W + h * (dn + dv);
          const Real *kp = L.data() + t * (r + dr) + r;
          z[t] = mlaLogit(qh, kn, dn, qh + dn, kp, dr) * s;
        }
        softmaxInPlace(z, i + 1);
        const Real *doh = dO.data() + h * dv;
        Real *oh = o.data() + h * dv;
        std::fill(oh, oh + dv, Real(0));
        Real delta = 0;
        for (int64_t t = 0; t <= i; ++t) {
          const Real *vt = U.data() + t * W + h * (dn + dv) + dn;
          Real acc = 0;
          for (int64_t j = 0; j < dv; ++j) {
            oh[j] += z[t] * vt[j];
            acc += doh[j] * vt[j];
            dU[t * W + h * (dn + dv) + dn + j] += z[t] * doh[j];
          }
          dP[t] = acc;
          delta += z[t] * acc;
        }
        Real *dqh = dQ.data() + (i * nh + h) * dq;
        for (int64_t t = 0; t <= i; ++t) {
          Real dz = z[t] * (dP[t] - delta) * s;
          if (dz == Real(0))
            continue;
          const Real *kn = U.data() + t * W + h * (dn + dv);
          const Real *kp = L.data() + t * (r + dr) + r;
          Real *dkn = dU.data() + t * W + h * (dn + dv);
          Real *dkp = dL.data() + t * (r + dr) + r;
          for (int64_t j = 0; j < dn; ++j) {
            dqh[j] += dz * kn[j];
            dkn[j] += dz * qh[j];
          }
          for (int64_t j = 0; j < dr; ++j) {
            dqh[dn + j] += dz * kp[j];
            dkp[j] += dz * qh[dn + j];
          }
        }
      }
      wgrad(PO, g, o.data(), H, nh * dv, dWo, b * Tn + i);
      if (dbo)
        for (int64_t j = 0; j < H; ++j)
          dbo[j] += g[j];
    }
    for (int64_t t = 0; t < Tn; ++t) {
      const Real *xt = xb + t * H;
      Real *dxt = dx ? dx + (b * Tn + t) * H : nullptr;
      Real *dl = dL.data() + t * (r + dr);
      const Real *l = L.data() + t * (r + dr), *a = A.data() + t * (r + dr);
      // Latent: u = c^ Wkvb^T.
      dgrad(dU.data() + t * W, m.kvbP, W, r, dl);
      wgrad(PKVB, dU.data() + t * W, l, W, r, dWkvb, b * Tn + t);
      // a = [c ; k_pe_raw] = x Wkva^T + b.
      buf.assign(r + dr, Real(0));
      rmsNormRowGrad(a, m.kvaNorm, r, m.eps, dl, buf.data(), dwkvn);
      std::copy(dl + r, dl + r + dr, buf.data() + r);
      m.rope.applyTranspose(buf.data() + r, t);
      if (dxt)
        dgrad(buf.data(), m.kvaP, r + dr, H, dxt);
      wgrad(PKVA, buf.data(), xt, r + dr, H, dWkva, b * Tn + t);
      if (dbkva)
        for (int64_t j = 0; j < r + dr; ++j)
          dbkva[j] += buf[j];
      // Query.
      Real *dqt = dQ.data() + t * nh * dq;
      for (int64_t h = 0; h < nh; ++h)
        m.rope.applyTranspose(dqt + h * dq + dn, t);
      if (m.qLora) {
        std::vector<Real> dqn(rq, Real(0)), dqa(rq, Real(0));
        dgrad(dqt, m.qP, nh * dq, rq, dqn.data());
        wgrad(PQ, dqt, QN.data() + t * rq, nh * dq, rq, dWq, b * Tn + t);
        rmsNormRowGrad(QA.data() + t * rq, m.qaNorm, rq, m.eps, dqn.data(),
                       dqa.data(), dwqan);
        if (dxt)
          dgrad(dqa.data(), m.qaP, rq, H, dxt);
        wgrad(PQA, dqa.data(), xt, rq, H, dWqa, b * Tn + t);
        if (dbqa)
          for (int64_t j = 0; j < rq; ++j)
            dbqa[j] += dqa[j];
      } else {
        if (dxt)
          dgrad(dqt, m.qP, nh * dq, H, dxt);
        wgrad(PQ, dqt, xt, nh * dq, H, dWq, b * Tn + t);
      }
    }
  }
  for (Rows &rows : kept)
    if (rows.dW)
      fp8Wgrad(rows.dy.data(), rows.x.data(), NT, rows.out, rows.in, fp8Block, rows.dW);
}
} // namespace

template <typename Real>
void addGradKernels(std::map<std::string, HostKernelFn<Real>> &kernels) {
  kernels["embedding_vjp"] = embeddingVjp<Real>;
  kernels["rms_norm_vjp"] = rmsNormVjp<Real>;
  kernels["linear_vjp"] = linearVjp<Real>;
  kernels["lm_head_vjp"] = linearVjp<Real>;
  kernels["swiglu_vjp"] = swigluVjp<Real>;
  kernels["rope_vjp"] = ropeVjp<Real>;
  kernels["cross_entropy_vjp"] = crossEntropyVjp<Real>;
  kernels["lm_head_cross_entropy_vjp"] = lmHeadCrossEntropyVjp<Real>;
  kernels["mtp_vjp"] = mtpVjp<Real>;
  kernels["moe_route_vjp"] = moeRouteVjp<Real>;
  kernels["moe_dispatch_vjp"] = moeDispatchVjp<Real>;
  kernels["expert_grouped_matmul_vjp"] = expertGroupedMatmulVjp<Real>;
  kernels["moe_combine_vjp"] = moeCombineVjp<Real>;
  kernels["latent_attention_vjp"] = latentAttentionVjp<Real>;
  kernels["moe_balance_loss_vjp"] = moeBalanceLossVjp<Real>;
}
template void addGradKernels(std::map<std::string, HostKernelFn<float>> &);
template void addGradKernels(std::map<std::string, HostKernelFn<double>> &);

} // namespace dsv3rt::host
