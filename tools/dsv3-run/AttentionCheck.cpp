//===- AttentionCheck.cpp - the prefill attention against float64 --------===//
//
// dsv3-run attention-check ART --seq T --context P: the naive-form MLA
// attention of T new queries over P cached positions (SEMANTICS.md 3.6; the
// decode entry's prefill path) on the GPU, both kernels, on random operands
// at ART's widths, against float64 computed here:
//  - mla_prefill_cached (fp32, fp32 models) against float64 on the same
//    operands: 1e-5 of the largest |v| a head (fp32 sums of ~200 terms);
//  - mla_pack_kv + mla_prefill_mma (bf16 tensor cores, bf16 and FP8 models)
//    against float64 on q, k and v rounded to bf16 (what the kernel
//    multiplies): the probabilities are rounded to bf16 too (relative 2^-9)
//    before P V, so |err| <= 2^-9 sum_j p_j |v_j| / sum_j p_j <= 2^-9 max |v|;
//    held to 2^-8 max |v| of the query's keys (exp2 and fp32 sums besides);
//  - the same against the unrounded float64 (reported: the bf16 cost).
// DSV3_ATTENTION_TIME=T times both at T queries (past 0, causal) and
// reports TFLOP/s against the bf16 dense peak.
//
//===----------------------------------------------------------------------===//
#ifdef DSV3_HAVE_CUDA
#include "tools/dsv3-run/AttentionCheck.h"

#include "runtime/Artifact.h"
#include "runtime/Error.h"
#include "runtime/cuda/CudaSession.h"
#include "runtime/cuda/KernelNames.h"
#include "runtime/cuda/Launchers.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <random>
#include <thread>
#include <vector>

namespace dsv3rt {
namespace {

float roundBf16(float v) {
  uint32_t u;
  std::memcpy(&u, &v, 4);
  u = (u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u;
  std::memcpy(&v, &u, 4);
  return v;
}

struct Operands {
  int64_t T, P, S;
  std::vector<float> q, u, cache; // [T, NH, DQ], [S, NH, DN + DV], [S, R + DR]
};

/// o [T, NH, DV] in float64, every query and head (threads over heads).
std::vector<double> reference(const cuda::MlaDims &d, double scale, const Operands &x,
                              bool bf16) {
  const int64_t DQ = d.dn + d.dr, UW = d.dn + d.dv, W = d.r + d.dr;
  auto in = [&](float v) { return double(bf16 ? roundBf16(v) : v); };
  std::vector<double> o(size_t(x.T * d.nh * d.dv));
  auto head = [&](int64_t h) {
    std::vector<double> sc(size_t(x.S));
    for (int64_t i = 0; i < x.T; ++i) {
      const float *qi = x.q.data() + (i * d.nh + h) * DQ;
      int64_t keys = x.P + i + 1;
      double mx = -INFINITY;
      for (int64_t j = 0; j < keys; ++j) {
        const float *un = x.u.data() + (j * d.nh + h) * UW;
        const float *kr = x.cache.data() + j * W + d.r;
        double s = 0;
        for (int64_t c = 0; c < d.dn; ++c)
          s += in(qi[c]) * in(un[c]);
        for (int64_t c = 0; c < d.dr; ++c)
          s += in(qi[d.dn + c]) * in(kr[c]);
        sc[size_t(j)] = s * scale;
        mx = std::max(mx, sc[size_t(j)]);
      }
      double sum = 0;
      for (int64_t j = 0; j < keys; ++j)
        sum += sc[size_t(j)] = std::exp(sc[size_t(j)] - mx);
      double *oi = o.data() + (i * d.nh + h) * d.dv;
      for (int64_t j = 0; j < keys; ++j) {
        const float *v = x.u.data() + (j * d.nh + h) * UW + d.dn;
        for (int64_t c = 0; c < d.dv; ++c)
          oi[c] += sc[size_t(j)] / sum * in(v[c]);
      }
    }
  };
  unsigned n = std::max(1u, std::min(16u, std::thread::hardware_concurrency()));
  std::vector<std::thread> pool;
  for (unsigned t = 0; t < n; ++t)
    pool.emplace_back([&, t] {
      for (int64_t h = t; h < d.nh; h += n)
        head(h);
    });
  for (std::thread &t : pool)
    t.join();
  return o;
}

} // namespace

int attentionCheck(const std::string &artifact, int64_t T, int64_t past, uint64_t seed) {
  Artifact art = Artifact::load(artifact);
  const Launch *mla = nullptr;
  if (art.hasEntry("decode"))
    for (const Launch &l : art.entry("decode").launches)
      if (l.kernel == "latent_attention_decode")
        mla = &l;
  if (!mla)
    fail("attention-check: {} has no latent_attention_decode launch (a decode entry)",
         artifact);
  cuda::MlaDims d = cuda::mlaDims(mla->params, 0);
  double scale = mla->params.at("softmax_scale").get<double>();
  if (T < 1 || past < 0)
    fail("attention-check: --seq must be >= 1 and --context >= 0");
  cuda::CudaSession s(art, cuda::RandomWeights{1, 0.02});
  auto &drv = s.driver();
  const int64_t DQ = d.dn + d.dr, UW = d.dn + d.dv, W = d.r + d.dr;
  bool mmaBuilt = cuda::mlaPrefillMmaFits(d);
  try {
    if (mmaBuilt)
      s.function(cuda::mlaPrefillMmaName(d));
  } catch (const std::exception &) {
    mmaBuilt = false; // an fp32 artifact: only the fp32 kernel is compiled
  }
  auto upload = [&](const void *p, size_t bytes, const char *what) {
    CUdeviceptr dptr = 0;
    DSV3_CU(drv, memAlloc, what, &dptr, std::max<size_t>(bytes, 16));
    s.upload(dptr, p, bytes, what);
    return dptr;
  };
  // Scores of unit variance times 2 (softmax neither flat nor one-hot),
  // keys and values normal; one cached row in 17 carries a 6x larger key
  // (an attention sink: peaked rows).
  Operands x{T, past, past + T, {}, {}, {}};
  std::mt19937_64 rng(seed + 17);
  std::normal_distribution<float> normal(0.f, 1.f);
  float qs = float(2.0 / (scale * std::sqrt(double(DQ))));
  x.q.resize(size_t(T * d.nh * DQ));
  for (float &v : x.q)
    v = normal(rng) * qs;
  x.u.resize(size_t(x.S * d.nh * UW));
  for (size_t i = 0; i < x.u.size(); ++i)
    x.u[i] = normal(rng) * ((i / size_t(d.nh * UW)) % 17 == 3 ? 6.f : 1.f);
  x.cache.resize(size_t(x.S * W));
  for (float &v : x.cache)
    v = normal(rng);
  CUdeviceptr dq = upload(x.q.data(), x.q.size() * 4, "attention-check q");
  CUdeviceptr du = upload(x.u.data(), x.u.size() * 4, "attention-check u");
  CUdeviceptr dc = upload(x.cache.data(), x.cache.size() * 4, "attention-check cache");
  int64_t pastHost = past;
  CUdeviceptr dp = upload(&pastHost, 8, "attention-check past");
  CUdeviceptr dout = 0;
  DSV3_CU(drv, memAlloc, "attention-check o", &dout, size_t(T * d.nh * d.dv) * 4);
  auto runKernel = [&](bool mma) {
    cuda::mlaPrefillAttention(s, "attention-check", d, mma, dq, du, dc, dp, 0, dout, T, x.S,
                              float(scale));
    DSV3_CU(drv, streamSynchronize, "attention-check", s.stream());
    std::vector<float> o(size_t(T * d.nh * d.dv));
    DSV3_CU(drv, memcpyDtoH, "attention-check o", o.data(), dout, o.size() * 4);
    return o;
  };
  fmt::print("attention-check {} on {}: {} heads, q/k {} + {}, v {}; {} new queries over {} "
             "cached positions\n",
             artifact, s.description(), d.nh, d.dn, d.dr, d.dv, T, past);
  std::vector<double> exact = reference(d, scale, x, false);
  std::vector<double> rounded = mmaBuilt ? reference(d, scale, x, true) : std::vector<double>();
  // Per query and head: the largest |v| of the keys it sees (query i sees
  // one more than query i - 1).
  auto absV = [&](int64_t j, int64_t h) {
    double m = 0;
    for (int64_t c = 0; c < d.dv; ++c)
      m = std::max(m, double(std::fabs(x.u[size_t((j * d.nh + h) * UW + d.dn + c)])));
    return m;
  };
  std::vector<double> vmax(size_t(T * d.nh));
  for (int64_t h = 0; h < d.nh; ++h) {
    double m = 0;
    for (int64_t j = 0; j <= past; ++j)
      m = std::max(m, absV(j, h));
    for (int64_t i = 0; i < T; ++i) {
      if (i)
        m = std::max(m, absV(past + i, h));
      vmax[size_t(i * d.nh + h)] = m;
    }
  }
  struct Worst {
    double ratio = 0, rel = 0, rms = 0;
  };
  auto measure = [&](const std::vector<float> &o, const std::vector<double> &ref,
                     double boundFactor) {
    Worst w;
    double se = 0, sr = 0;
    for (int64_t i = 0; i < T; ++i)
      for (int64_t h = 0; h < d.nh; ++h) {
        double vm = vmax[size_t(i * d.nh + h)];
        for (int64_t c = 0; c < d.dv; ++c) {
          size_t k = size_t((i * d.nh + h) * d.dv + c);
          double e = std::fabs(double(o[k]) - ref[k]);
          if (!std::isfinite(double(o[k])))
            e = INFINITY;
          w.ratio = std::max(w.ratio, e / (boundFactor * vm));
          w.rel = std::max(w.rel, e / vm);
          se += e * e;
          sr += ref[k] * ref[k];
        }
      }
    w.rms = std::sqrt(se / std::max(sr, 1e-300));
    return w;
  };
  bool ok = true;
  fmt::print("  {:<58} {:>12} {:>10} {:>9}  {}\n", "kernel, against", "max |err|/max|v|",
             "rms rel", "of bound", "result");
  {
    Worst w = measure(runKernel(false), exact, 1e-5);
    bool pass = w.ratio <= 1.0;
    ok = ok && pass;
    fmt::print("  {:<58} {:>12.3e} {:>10.3e} {:>8.1f}%  {}\n",
               "mla_prefill_cached (fp32), float64 (bound 1e-5 max|v|)", w.rel, w.rms,
               100 * w.ratio, pass ? "PASS" : "FAIL");
  }
  if (mmaBuilt) {
    std::vector<float> o = runKernel(true);
    Worst w = measure(o, rounded, std::ldexp(1.0, -8));
    bool pass = w.ratio <= 1.0;
    ok = ok && pass;
    fmt::print("  {:<58} {:>12.3e} {:>10.3e} {:>8.1f}%  {}\n",
               "mla_prefill_mma (bf16), float64 on bf16 q/k/v (2^-8 max|v|)", w.rel, w.rms,
               100 * w.ratio, pass ? "PASS" : "FAIL");
    Worst e = measure(o, exact, 1.0);
    fmt::print("  {:<58} {:>12.3e} {:>10.3e} {:>9}  (the bf16 operands' cost)\n",
               "mla_prefill_mma (bf16), float64 on the fp32 operands", e.rel, e.rms, "");
  } else {
    fmt::print("  mla_prefill_mma: not in this artifact (fp32 models run the fp32 kernel)\n");
  }
  if (const char *spec = std::getenv("DSV3_ATTENTION_TIME")) {
    int64_t tt = std::atoll(spec);
    if (tt < 1)
      fail("DSV3_ATTENTION_TIME takes a query count, got '{}'", spec);
    std::vector<float> tq(size_t(tt * d.nh * DQ)), tu(size_t(tt * d.nh * UW)),
        tc(size_t(tt * W));
    for (size_t i = 0; i < tq.size(); ++i)
      tq[i] = x.q[i % x.q.size()];
    for (size_t i = 0; i < tu.size(); ++i)
      tu[i] = x.u[i % x.u.size()];
    for (size_t i = 0; i < tc.size(); ++i)
      tc[i] = x.cache[i % x.cache.size()];
    CUdeviceptr q2 = upload(tq.data(), tq.size() * 4, "timing q");
    CUdeviceptr u2 = upload(tu.data(), tu.size() * 4, "timing u");
    CUdeviceptr c2 = upload(tc.data(), tc.size() * 4, "timing cache");
    int64_t zero = 0;
    CUdeviceptr p2 = upload(&zero, 8, "timing past");
    CUdeviceptr o2 = 0;
    DSV3_CU(drv, memAlloc, "timing o", &o2, size_t(tt * d.nh * d.dv) * 4);
    double flops = 2.0 * double(d.nh) * double(tt) * double(tt + 1) / 2 * double(DQ + d.dv);
    for (bool mma : {true, false}) {
      if (mma && !mmaBuilt)
        continue;
      auto once = [&] {
        cuda::mlaPrefillAttention(s, "attention timing", d, mma, q2, u2, c2, p2, 0, o2, tt, tt,
                                  float(scale));
      };
      once();
      DSV3_CU(drv, streamSynchronize, "attention timing", s.stream());
      const int reps = mma ? 10 : 2;
      auto t0 = std::chrono::steady_clock::now();
      for (int r = 0; r < reps; ++r)
        once();
      DSV3_CU(drv, streamSynchronize, "attention timing", s.stream());
      double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0)
                      .count() / reps;
      double tf = flops / (ms * 1e9);
      fmt::print("  timing {} queries x {} heads, causal: {:<26} {:8.3f} ms {:7.1f} TFLOP/s "
                 "({:.1f}% of 989)\n",
                 tt, d.nh, mma ? "mla_pack_kv + mla_prefill_mma" : "mla_prefill_cached", ms, tf,
                 100 * tf / 989);
    }
  }
  fmt::print("{}\n", ok ? "attention-check: PASS" : "attention-check: FAIL");
  return ok ? 0 : 1;
}

} // namespace dsv3rt
#endif
