//===- Bf16Check.cpp - the bf16-activation kernels against float64 -------===//
//
// dsv3-run bf16-check ART --seq T --context P [--shape M,N,K]: the CUDA
// kernels that round activations to bf16, on random operands, against
// float64 on the same rounded operands, each within a stated bound.
//
// The prefill attention: the naive-form MLA
// attention of T new queries over P cached positions (SEMANTICS.md 3.6; the
// decode entry's prefill path) on the GPU, both kernels, on random operands
// at ART's widths, against float64 computed here:
//  - mla_prefill_cached (fp32, fp32 models) against float64 on the same
//    operands: 1e-4 of the largest |v| a head. A score's fp32 dot product
//    over DN + DR = 192 terms is off by ~|s| 2^-24 sqrt(192), which moves
//    exp(s) relatively by that much: 4e-5 for the sink keys' scores of
//    ~50 (1e-5 held at 64 queries and failed, 1.06e-5, at 256);
//  - mla_pack_kv + mla_prefill_mma (bf16 tensor cores, bf16 and FP8 models)
//    against float64 on q, k and v rounded to bf16 (what the kernel
//    multiplies): the probabilities are rounded to bf16 too (relative 2^-9)
//    before P V, so |err| <= 2^-9 sum_j p_j |v_j| / sum_j p_j <= 2^-9 max |v|;
//    held to 2^-8 max |v| of the query's keys (exp2 and fp32 sums besides);
//  - the same against the unrounded float64 (reported: the bf16 cost).
// DSV3_ATTENTION_TIME=T times both at T queries (past 0, causal) and
// reports TFLOP/s against the bf16 dense peak.
//
// The absorbed decode's attention (mla_decode_mma; mla_decode_split its
// fp32 twin) and the merge of its key splits: ragged rows over latent
// caches, the same bounds with the latents' first R columns as the values.
//
// The bf16 GEMMs (gemm_bf16_tc, after to_bf16), --shape M,N,K: x normal
// with outlier channels, W normal(0, 0.02), both rounded to bf16, so every
// product is exact in fp32 and only the fp32 sums differ from float64:
// held to 2^-12 sum_k |x_k w_k| an element (an indexing error is ~|y|,
// about sum |x w| / sqrt(K): 50x more at V3 widths). Plain with bias and
// residual, gated (silu(g) u: g's and u's bounds through silu' <= 1.1),
// and both grouped over 4 experts (rows M/2, 0, M/4, the rest).
// DSV3_GEMM_TIME=M,N,K times the plain GEMM beside the split-bf16 one.
//
//===----------------------------------------------------------------------===//
#ifdef DSV3_HAVE_CUDA
#include "tools/dsv3-run/Bf16Check.h"

#include "runtime/Artifact.h"
#include "runtime/DType.h"
#include "runtime/Error.h"
#include "runtime/cuda/CudaSession.h"
#include "runtime/cuda/KernelNames.h"
#include "runtime/cuda/Launchers.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <cmath>
#include <cstdlib>
#include <functional>
#include <random>
#include <thread>
#include <vector>

namespace dsv3rt {

std::vector<int64_t> checkExpertCounts(int64_t M) {
  const char *env = std::getenv("DSV3_CHECK_EXPERTS");
  int64_t E = env && *env ? std::atoll(env) : 4;
  if (E < 1)
    fail("DSV3_CHECK_EXPERTS must be a positive count, got '{}'", env);
  if (E == 4)
    return {M / 2, 0, M / 4, M - M / 2 - M / 4};
  std::vector<int64_t> weight(static_cast<size_t>(E)), counts(static_cast<size_t>(E), 0);
  int64_t sum = 0, given = 0, last = 0;
  for (int64_t e = 0; e < E; ++e) {
    weight[size_t(e)] = e % 7 == 3 ? 0 : 1 + (e * 37) % 11;
    sum += weight[size_t(e)];
    if (weight[size_t(e)])
      last = e;
  }
  for (int64_t e = 0; e < E; ++e)
    given += counts[size_t(e)] = M * weight[size_t(e)] / std::max<int64_t>(sum, 1);
  counts[size_t(last)] += M - given;
  return counts;
}
namespace {

/// v rounded to bf16 (nearest even), as a float.
float roundBf16(float v) { return bf16ToFloat(floatToBf16(v)); }

/// The float64 references' loops: fn(thread, i) for every i < n, spread
/// over up to kReferenceThreads threads (thread t takes t, t + threads, ...).
constexpr unsigned kReferenceThreads = 16;
template <typename F> void parallelFor(int64_t n, F fn) {
  unsigned threads =
      std::max(1u, std::min(kReferenceThreads, std::thread::hardware_concurrency()));
  std::vector<std::thread> pool;
  for (unsigned t = 0; t < threads; ++t)
    pool.emplace_back([&, t] {
      for (int64_t i = t; i < n; i += threads)
        fn(t, i);
    });
  for (std::thread &t : pool)
    t.join();
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
  parallelFor(d.nh, [&](unsigned, int64_t h) { head(h); });
  return o;
}

/// Milliseconds a call of `once` takes on the session's stream: one
/// warm-up, then the mean of `reps` (wall time around synchronised runs).
template <typename F> double timeMs(cuda::CudaSession &s, F once, int reps) {
  auto sync = [&] { DSV3_CU(s.driver(), streamSynchronize, "timing", s.stream()); };
  once();
  sync();
  auto t0 = std::chrono::steady_clock::now();
  for (int r = 0; r < reps; ++r)
    once();
  sync();
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0)
             .count() / reps;
}

/// The MLA widths and softmax scale of ART's decode entry.
struct MlaOf {
  cuda::MlaDims d;
  double scale;
};
MlaOf mlaOf(const Artifact &art, const std::string &artifact) {
  if (art.hasEntry("decode"))
    for (const Launch &l : art.entry("decode").launches)
      if (l.kernel == "latent_attention_decode") {
        cuda::MlaDims d = cuda::mlaDims(l.params, 0);
        if (d.cf)
          fail("bf16-check: {} keeps its decode cache packed (dsv3c --kv-cache); the check "
               "drives the kernels with fp32 rows: compile it without --kv-cache",
               artifact);
        return {d, l.params.at("softmax_scale").get<double>()};
      }
  fail("bf16-check: {} has no latent_attention_decode launch (a decode entry)", artifact);
}

int attentionCheck(const std::string &artifact, int64_t T, int64_t past, uint64_t seed) {
  Artifact art = Artifact::load(artifact);
  auto [d, scale] = mlaOf(art, artifact);
  if (T < 1 || past < 0)
    fail("bf16-check: --seq must be >= 1 and --context >= 0");
  cuda::CudaSession s(art, cuda::RandomWeights{1, 0.02});
  auto &drv = s.driver();
  const int64_t DQ = d.dn + d.dr, UW = d.dn + d.dv, W = d.r + d.dr;
  bool mmaBuilt = cuda::mlaPrefillMmaFits(d) && s.hasFunction(cuda::mlaPrefillMmaName(d));
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
  CUdeviceptr dq = s.deviceBuffer(x.q.size() * 4, "bf16-check q", x.q.data());
  CUdeviceptr du = s.deviceBuffer(x.u.size() * 4, "bf16-check u", x.u.data());
  CUdeviceptr dc = s.deviceBuffer(x.cache.size() * 4, "bf16-check cache", x.cache.data());
  int64_t pastHost = past;
  CUdeviceptr dp = s.deviceBuffer(8, "bf16-check past", &pastHost);
  CUdeviceptr dout = s.deviceBuffer(size_t(T * d.nh * d.dv) * 4, "bf16-check o");
  using cuda::PrefillKernel;
  auto runKernel = [&](bool mma, PrefillKernel kernel = PrefillKernel::Mma) {
    cuda::mlaPrefillAttention(s, "bf16-check attention", d, mma, dq, du, dc, dp, 0, dout, T, x.S,
                              float(scale), 0, kernel);
    DSV3_CU(drv, streamSynchronize, "bf16-check attention", s.stream());
    std::vector<float> o(size_t(T * d.nh * d.dv));
    DSV3_CU(drv, memcpyDtoH, "bf16-check o", o.data(), dout, o.size() * 4);
    return o;
  };
  fmt::print("bf16-check {} on {}: the prefill attention, {} heads, q/k {} + {}, v {}; {} new queries over {} "
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
  // The fp32 kernel's thread mapping needs v_head_dim dividing 256.
  const bool cachedFits = cuda::mlaPrefillCachedFits(d);
  if (cachedFits) {
    Worst w = measure(runKernel(false), exact, 1e-4);
    bool pass = w.ratio <= 1.0;
    ok = ok && pass;
    fmt::print("  {:<58} {:>12.3e} {:>10.3e} {:>8.1f}%  {}\n",
               "mla_prefill_cached (fp32), float64 (bound 1e-4 max|v|)", w.rel, w.rms,
               100 * w.ratio, pass ? "PASS" : "FAIL");
  } else {
    fmt::print("  mla_prefill_cached: not for v_head_dim {} (the decode entry's prefill takes "
               "the absorbed form)\n",
               d.dv);
  }
  // The tensor-core kernels: mma.sync everywhere, the warpgroup MMA on
  // Hopper (the default there).
  const bool wgmmaBuilt = mmaBuilt && cuda::usePrefillWgmma(s, d);
  std::vector<std::pair<PrefillKernel, std::string>> tensorCoreKernels;
  if (mmaBuilt)
    tensorCoreKernels.push_back({PrefillKernel::Mma, "mla_prefill_mma"});
  if (wgmmaBuilt)
    tensorCoreKernels.push_back({PrefillKernel::Wgmma, "mla_prefill_wgmma"});
  if (wgmmaBuilt && cuda::usePrefillTma(s, d))
    tensorCoreKernels.push_back({PrefillKernel::Tma, "mla_prefill_tma"});
  for (const auto &[kernel, name] : tensorCoreKernels) {
    std::vector<float> o = runKernel(true, kernel);
    Worst w = measure(o, rounded, std::ldexp(1.0, -8));
    bool pass = w.ratio <= 1.0;
    ok = ok && pass;
    fmt::print("  {:<58} {:>12.3e} {:>10.3e} {:>8.1f}%  {}\n",
               name + " (bf16), float64 on bf16 q/k/v (2^-8 max|v|)", w.rel, w.rms,
               100 * w.ratio, pass ? "PASS" : "FAIL");
    Worst e = measure(o, exact, 1.0);
    fmt::print("  {:<58} {:>12.3e} {:>10.3e} {:>9}  (the bf16 operands' cost)\n",
               name + " (bf16), float64 on the fp32 operands", e.rel, e.rms, "");
  }
  if (!mmaBuilt) {
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
    CUdeviceptr q2 = s.deviceBuffer(tq.size() * 4, "timing q", tq.data());
    CUdeviceptr u2 = s.deviceBuffer(tu.size() * 4, "timing u", tu.data());
    CUdeviceptr c2 = s.deviceBuffer(tc.size() * 4, "timing cache", tc.data());
    int64_t zero = 0;
    CUdeviceptr p2 = s.deviceBuffer(8, "timing past", &zero);
    CUdeviceptr o2 = s.deviceBuffer(size_t(tt * d.nh * d.dv) * 4, "timing o");
    double flops = 2.0 * double(d.nh) * double(tt) * double(tt + 1) / 2 * double(DQ + d.dv);
    // The tensor-core kernels, then the fp32 one (mma false; its
    // PrefillKernel is unused).
    std::vector<std::pair<PrefillKernel, std::string>> timed = tensorCoreKernels;
    if (cachedFits)
      timed.push_back({PrefillKernel::Auto, "mla_prefill_cached"});
    for (const auto &[kernel, name] : timed) {
      const bool mma = name != "mla_prefill_cached";
      auto once = [&] {
        cuda::mlaPrefillAttention(s, "attention timing", d, mma, q2, u2, c2, p2, 0, o2, tt, tt,
                                  float(scale), 0, kernel);
      };
      double ms = timeMs(s, once, mma ? 10 : 2);
      double tf = flops / (ms * 1e9);
      fmt::print("  timing {} queries x {} heads, causal: {:<34} {:8.3f} ms {:7.1f} TFLOP/s "
                 "({:.1f}% of 989)\n",
                 tt, d.nh, mma ? "packing + " + name : name, ms, tf, 100 * tf / 989);
    }
  }
  fmt::print("{}\n", ok ? "attention: PASS" : "attention: FAIL");
  return ok ? 0 : 1;
}

/// The absorbed decode's attention (mla_decode_mma; mla_decode_split, its
/// fp32 twin), then mla_decode_merge: 2 sequences with 700 and 333 cached
/// positions, 3 new rows each, over latent caches of 1024 rows in key
/// splits of 96 (several per row, a partial last one, splits past a row's
/// keys), against float64; bounds as for the prefill attention (the values
/// are the latents' first R columns).
int decodeCheck(const std::string &artifact, uint64_t seed) {
  Artifact art = Artifact::load(artifact);
  auto [d, scale] = mlaOf(art, artifact);
  cuda::CudaSession s(art, cuda::RandomWeights{1, 0.02});
  bool mmaBuilt = cuda::mlaDecodeMmaFits(d) && s.hasFunction(cuda::mlaDecodeMmaName(d));
  // Every staged tile the artifact holds is checked and timed.
  std::vector<cuda::DecodeStagedTile> stagedTiles;
  for (const cuda::DecodeStagedTile &t : cuda::kDecodeStagedTiles)
    if (mmaBuilt && cuda::mlaDecodeStagedFits(d, t) &&
        s.hasFunction(cuda::mlaDecodeStagedName(d, t)))
      stagedTiles.push_back(t);
  auto tileName = [](const cuda::DecodeStagedTile &t) {
    return fmt::format("mla_decode_mma_staged {}x{}x{}", t.keys, t.stages, t.groups);
  };
  auto &drv = s.driver();
  const int64_t B = 2, T = 3, S = 1024, W = d.r + d.dr, rows = B * T, splitLen = 96;
  const int64_t splits = (S + splitLen - 1) / splitLen;
  std::vector<int64_t> past = {700, 333};
  std::mt19937_64 rng(seed + 41);
  std::normal_distribution<float> normal(0.f, 1.f);
  float qs = float(2.0 / (scale * std::sqrt(double(W))));
  std::vector<float> qt(static_cast<size_t>(rows * d.nh * W));
  std::vector<float> cache(static_cast<size_t>(B * S * W));
  for (float &v : qt)
    v = normal(rng) * qs;
  for (size_t i = 0; i < cache.size(); ++i)
    cache[i] = normal(rng) * ((i / size_t(W)) % 17 == 3 ? 6.f : 1.f);
  CUdeviceptr dq = s.deviceBuffer(qt.size() * 4, "decode-check q~", qt.data());
  CUdeviceptr dc = s.deviceBuffer(cache.size() * 4, "decode-check cache", cache.data());
  CUdeviceptr dp = s.deviceBuffer(past.size() * 8, "decode-check past", past.data());
  CUdeviceptr part = s.deviceBuffer(size_t(rows * splits * d.nh * d.r) * 4, "decode-check part");
  CUdeviceptr ml = s.deviceBuffer(size_t(rows * splits * d.nh * 2) * 4, "decode-check ml");
  CUdeviceptr ot = s.deviceBuffer(size_t(rows * d.nh * d.r) * 4, "decode-check o~");
  auto runKernel = [&](cuda::DecodeKernel kernel, cuda::DecodeStagedTile tile = {0, 0, 0}) {
    cuda::mlaDecodeAttention(s, "decode-check", d, kernel, dq, dc, dp, part, ml, ot, rows, splits,
                             splitLen, 0, T, S, float(scale), tile);
    DSV3_CU(drv, streamSynchronize, "decode-check", s.stream());
    std::vector<float> o(size_t(rows * d.nh * d.r));
    DSV3_CU(drv, memcpyDtoH, "decode-check o~", o.data(), ot, o.size() * 4);
    return o;
  };
  auto reference = [&](bool bf16) {
    auto in = [&](float v) { return double(bf16 ? roundBf16(v) : v); };
    std::vector<double> o(static_cast<size_t>(rows * d.nh * d.r)), vmax(static_cast<size_t>(rows));
    for (int64_t r = 0; r < rows; ++r) {
      int64_t b = r / T, keys = past[size_t(b)] + r % T + 1;
      const float *cb = cache.data() + b * S * W;
      double vm = 0;
      for (int64_t j = 0; j < keys; ++j)
        for (int64_t c = 0; c < d.r; ++c)
          vm = std::max(vm, double(std::fabs(cb[j * W + c])));
      vmax[size_t(r)] = vm;
      std::vector<double> sc(static_cast<size_t>(keys));
      for (int64_t h = 0; h < d.nh; ++h) {
        const float *q = qt.data() + (r * d.nh + h) * W;
        double mx = -INFINITY;
        for (int64_t j = 0; j < keys; ++j) {
          double acc = 0;
          for (int64_t c = 0; c < W; ++c)
            acc += in(q[c]) * in(cb[j * W + c]);
          sc[size_t(j)] = acc * scale;
          mx = std::max(mx, sc[size_t(j)]);
        }
        double sum = 0;
        for (double &v : sc)
          sum += v = std::exp(v - mx);
        double *oh = o.data() + (r * d.nh + h) * d.r;
        for (int64_t j = 0; j < keys; ++j)
          for (int64_t c = 0; c < d.r; ++c)
            oh[c] += sc[size_t(j)] / sum * in(cb[j * W + c]);
      }
    }
    return std::make_pair(o, vmax);
  };
  auto measure = [&](const std::vector<float> &o, const std::vector<double> &ref,
                     const std::vector<double> &vmax, double factor, double &rms) {
    double worst = 0, se = 0, sr = 0;
    for (size_t i = 0; i < o.size(); ++i) {
      double e = std::fabs(double(o[i]) - ref[i]);
      if (!std::isfinite(double(o[i])))
        e = INFINITY;
      worst = std::max(worst, e / (factor * vmax[i / size_t(d.nh * d.r)]));
      se += e * e;
      sr += ref[i] * ref[i];
    }
    rms = std::sqrt(se / std::max(sr, 1e-300));
    return worst;
  };
  fmt::print("bf16-check {} on {}: the absorbed decode attention, {} heads, latents {} + {}, "
             "2 sequences x 3 rows after 700 and 333 positions, key splits of {}\n",
             artifact, s.description(), d.nh, d.r, d.dr, splitLen);
  auto [exact, vmax] = reference(false);
  bool ok = true;
  double rms = 0;
  double w = measure(runKernel(cuda::DecodeKernel::Split), exact, vmax, 1e-5, rms);
  ok = ok && w <= 1;
  fmt::print("  {:<58} rms rel {:.3e}, worst {:6.1f}% of the bound  {}\n",
             "mla_decode_split (fp32), float64 (1e-5 max|v|)", rms, 100 * w,
             w <= 1 ? "PASS" : "FAIL");
  if (mmaBuilt) {
    auto [rounded, vmax2] = reference(true);
    std::vector<float> o = runKernel(cuda::DecodeKernel::Mma);
    w = measure(o, rounded, vmax2, std::ldexp(1.0, -8), rms);
    ok = ok && w <= 1;
    fmt::print("  {:<58} rms rel {:.3e}, worst {:6.1f}% of the bound  {}\n",
               "mla_decode_mma (bf16), float64 on bf16 q~/latents (2^-8)", rms, 100 * w,
               w <= 1 ? "PASS" : "FAIL");
    double e = measure(o, exact, vmax, 1.0, rms);
    fmt::print("  {:<58} rms rel {:.3e}, max |err| / max|v| {:.3e} (the bf16 operands' cost)\n",
               "mla_decode_mma (bf16), float64 on the fp32 operands", rms, e);
    for (const cuda::DecodeStagedTile &t : stagedTiles) {
      // The same bf16 operands summed in the same order: the same bits.
      std::vector<float> st = runKernel(cuda::DecodeKernel::Staged, t);
      size_t differ = 0;
      for (size_t i = 0; i < o.size(); ++i)
        differ += std::memcmp(&o[i], &st[i], sizeof(float)) != 0;
      ok = ok && differ == 0;
      fmt::print("  {:<58} {} of {} values differ  {}\n",
                 tileName(t) + " (bf16), bitwise against mla_decode_mma", differ, o.size(),
                 differ == 0 ? "PASS" : "FAIL");
    }
    if (stagedTiles.empty())
      fmt::print("  mla_decode_mma_staged: not in this artifact\n");
    // Timing at a decode step's shape: 128 sequences, one new row each
    // after 1023 cached positions, one key split (as the decode entry
    // sizes it at this batch), random latents.
    const int64_t TB = 128, TS = 1024;
    std::vector<float> tq(size_t(TB * d.nh * W)), tc(size_t(TB * TS * W));
    for (float &v : tq)
      v = normal(rng) * qs;
    for (float &v : tc)
      v = normal(rng);
    std::vector<int64_t> tp(size_t(TB), TS - 1);
    CUdeviceptr bq = s.deviceBuffer(tq.size() * 4, "decode timing q~", tq.data());
    CUdeviceptr bc = s.deviceBuffer(tc.size() * 4, "decode timing cache", tc.data());
    CUdeviceptr bp = s.deviceBuffer(tp.size() * 8, "decode timing past", tp.data());
    CUdeviceptr bpart = s.deviceBuffer(size_t(TB * d.nh * d.r) * 4, "decode timing part");
    CUdeviceptr bml = s.deviceBuffer(size_t(TB * d.nh * 2) * 4, "decode timing ml");
    CUdeviceptr bo = s.deviceBuffer(size_t(TB * d.nh * d.r) * 4, "decode timing o~");
    double bytes = double(TB * TS * W) * 4;
    std::vector<cuda::DecodeStagedTile> timed = {{0, 0, 0}}; // {0, 0, 0}: mla_decode_mma
    timed.insert(timed.end(), stagedTiles.begin(), stagedTiles.end());
    for (const cuda::DecodeStagedTile &t : timed) {
      const cuda::DecodeKernel kernel =
          t.groups ? cuda::DecodeKernel::Staged : cuda::DecodeKernel::Mma;
      double ms = timeMs(
          s,
          [&] {
            cuda::mlaDecodeAttention(s, "decode timing", d, kernel, bq, bc, bp, bpart, bml, bo,
                                     TB, 1, TS, 0, 1, TS, float(scale), t);
          },
          20);
      fmt::print("  timing {} rows x {} heads over {} cached rows: {:<30} {:8.3f} ms "
                 "(the fp32 cache read once: {:.0f} GB/s)\n",
                 TB, d.nh, TS, t.groups ? tileName(t) : std::string("mla_decode_mma"), ms,
                 bytes / (ms * 1e6));
    }
  } else {
    fmt::print("  mla_decode_mma: not in this artifact (fp32 models run the fp32 kernel)\n");
  }
  return ok ? 0 : 1;
}

/// The absorbed decode's per-head products (mlaAbsorbQ, mlaAbsorbV) on
/// cuBLASLt (the activations rounded to bf16, all heads in one strided
/// batched call) and on dsv3's kernels (fp32 activations), against float64
/// on random bf16 kv_b weights and random activations, 32 rows: each output
/// within 2^-14 sum |x w| (fp32 accumulation over K <= 512 terms errs by at
/// most K 2^-24 sum |x w| = 2^-15 at K = 512), the rope query copied
/// exactly; both timed at 128 rows.
int absorbCheck(const std::string &artifact, uint64_t seed) {
  Artifact art = Artifact::load(artifact);
  auto [d, scale] = mlaOf(art, artifact);
  (void)scale;
  cuda::CudaSession s(art, cuda::RandomWeights{1, 0.02});
  if (!s.cublasLt) {
    fmt::print("absorb-check: cuBLASLt is not loaded here, nothing to check\n");
    return 0;
  }
  if (!s.hasFunction(cuda::copyColumnsName())) {
    // fp32 weights (a training artifact's master weights) never take the
    // cuBLASLt products (useAbsorbCublas): their module has no copy_columns.
    fmt::print("absorb-check: not in this artifact (fp32 weights keep the fp32 products)\n");
    return 0;
  }
  auto &drv = s.driver();
  const int64_t dq = d.dn + d.dr, W = d.r + d.dr, KV = d.nh * (d.dn + d.dv) * d.r;
  std::mt19937_64 rng(seed + 59);
  std::normal_distribution<float> normal(0.f, 1.f);
  std::vector<uint16_t> kvb(static_cast<size_t>(KV));
  for (uint16_t &v : kvb)
    v = floatToBf16(normal(rng) * 0.05f);
  const int64_t TR = 128; // rows allocated (timing); 32 checked
  std::vector<float> q(size_t(TR * d.nh * dq)), ot(size_t(TR * d.nh * d.r));
  for (float &v : q)
    v = normal(rng);
  for (float &v : ot)
    v = normal(rng);
  CUdeviceptr dk = s.deviceBuffer(kvb.size() * 2, "absorb-check kv_b", kvb.data());
  CUdeviceptr dqb = s.deviceBuffer(q.size() * 4, "absorb-check q", q.data());
  CUdeviceptr dot = s.deviceBuffer(ot.size() * 4, "absorb-check o~", ot.data());
  CUdeviceptr dqt = s.deviceBuffer(size_t(TR * d.nh * W) * 4, "absorb-check q~");
  CUdeviceptr dout = s.deviceBuffer(size_t(TR * d.nh * d.dv) * 4, "absorb-check o");
  auto fetch = [&](CUdeviceptr p, size_t n) {
    DSV3_CU(drv, streamSynchronize, "absorb-check", s.stream());
    std::vector<float> h(n);
    DSV3_CU(drv, memcpyDtoH, "absorb-check", h.data(), p, n * 4);
    return h;
  };
  const int64_t rows = 32;
  bool ok = true;
  fmt::print("absorb-check {} on {}: the absorbed decode's per-head products, {} heads, "
             "{} rows, bound 2^-14 sum|x w|\n",
             artifact, s.description(), d.nh, rows);
  for (bool cublas : {true, false}) {
    const char *form = cublas ? "cuBLASLt, bf16 activations" : "dsv3 kernels, fp32 activations";
    auto in = [&](float v) { return double(cublas ? roundBf16(v) : v); };
    cuda::mlaAbsorbQ(s, "absorb-check", d, true, cublas, dqb, dk, dqt, rows);
    std::vector<float> qt = fetch(dqt, size_t(rows * d.nh * W));
    double worst = 0;
    size_t ropeDiffer = 0;
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t h = 0; h < d.nh; ++h) {
        const float *qr = q.data() + (r * d.nh + h) * dq;
        const float *got = qt.data() + (r * d.nh + h) * W;
        for (int64_t c = 0; c < d.r; ++c) {
          double acc = 0, mag = 0;
          for (int64_t i = 0; i < d.dn; ++i) {
            double w = bf16ToFloat(kvb[size_t((h * (d.dn + d.dv) + i) * d.r + c)]);
            acc += in(qr[i]) * w;
            mag += std::fabs(in(qr[i]) * w);
          }
          double e = std::fabs(double(got[c]) - acc) / (std::ldexp(1.0, -14) * mag + 1e-30);
          worst = std::max(worst, std::isfinite(got[c]) ? e : INFINITY);
        }
        for (int64_t j = 0; j < d.dr; ++j)
          ropeDiffer += got[d.r + j] != qr[d.dn + j];
      }
    ok = ok && worst <= 1 && ropeDiffer == 0;
    fmt::print("  absorb_q ({:<32}) worst {:6.1f}% of the bound, rope query {} differ  {}\n", form,
               100 * worst, ropeDiffer, worst <= 1 && ropeDiffer == 0 ? "PASS" : "FAIL");
    cuda::mlaAbsorbV(s, "absorb-check", d, true, cublas, dot, dk, dout, rows);
    std::vector<float> o = fetch(dout, size_t(rows * d.nh * d.dv));
    worst = 0;
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t h = 0; h < d.nh; ++h) {
        const float *x = ot.data() + (r * d.nh + h) * d.r;
        for (int64_t j = 0; j < d.dv; ++j) {
          const uint16_t *w = kvb.data() + (h * (d.dn + d.dv) + d.dn + j) * d.r;
          double acc = 0, mag = 0;
          for (int64_t c = 0; c < d.r; ++c) {
            acc += in(x[c]) * double(bf16ToFloat(w[c]));
            mag += std::fabs(in(x[c]) * double(bf16ToFloat(w[c])));
          }
          float got = o[size_t((r * d.nh + h) * d.dv + j)];
          double e = std::fabs(double(got) - acc) / (std::ldexp(1.0, -14) * mag + 1e-30);
          worst = std::max(worst, std::isfinite(got) ? e : INFINITY);
        }
      }
    ok = ok && worst <= 1;
    fmt::print("  absorb_v ({:<32}) worst {:6.1f}% of the bound  {}\n", form, 100 * worst,
               worst <= 1 ? "PASS" : "FAIL");
  }
  for (bool cublas : {true, false}) {
    double ms = timeMs(
        s,
        [&] {
          const auto mark = s.workspaceMark(); // the bf16 activations' room, reused
          cuda::mlaAbsorbQ(s, "absorb timing", d, true, cublas, dqb, dk, dqt, TR);
          cuda::mlaAbsorbV(s, "absorb timing", d, true, cublas, dot, dk, dout, TR);
          s.rewindWorkspace(mark);
        },
        20);
    fmt::print("  timing absorb_q + absorb_v, {} rows: {:<32} {:8.3f} ms\n", TR,
               cublas ? "cuBLASLt" : "dsv3 kernels", ms);
  }
  fmt::print("{}\n", ok ? "absorb-check: PASS" : "absorb-check: FAIL");
  return ok ? 0 : 1;
}

/// Rows grouped over 4 experts: M/2, 0, M/4, the rest.

int gemmCheck(const std::string &artifact, int64_t M, int64_t N, int64_t K, uint64_t seed) {
  if (K % 8)
    fail("bf16-check: the bf16 GEMM needs K % 8 == 0, got {}", K);
  Artifact art = Artifact::load(artifact);
  cuda::CudaSession s(art, cuda::RandomWeights{1, 0.02});
  if (!s.hasFunction(cuda::bf16TcName(false))) {
    fmt::print("  gemm_bf16_tc: not in this artifact (fp32 models keep fp32 activations)\n");
    return 0;
  }
  auto &drv = s.driver();
  std::vector<int64_t> counts = checkExpertCounts(M);
  const int64_t E = int64_t(counts.size());
  std::mt19937_64 rng(seed + 29);
  std::normal_distribution<float> normal(0.f, 1.f);
  // x: normal, every 97th channel x20 (outliers, as trained models have);
  // weights normal(0, 0.02): E experts' gate and up (expert 0 is the plain
  // GEMM's); all rounded to bf16. Bias and residual fp32.
  std::vector<float> x(size_t(M * K));
  for (size_t i = 0; i < x.size(); ++i)
    x[i] = roundBf16(normal(rng) * ((i % size_t(K)) % 97 == 5 ? 20.f : 1.f));
  auto weights = [&] {
    std::vector<float> w(size_t(E * N * K));
    for (float &v : w)
      v = roundBf16(normal(rng) * 0.02f);
    return w;
  };
  std::vector<float> wg = weights(), wu = weights();
  std::vector<float> bias(static_cast<size_t>(N)), res(static_cast<size_t>(M * N));
  for (float &v : bias)
    v = normal(rng);
  for (float &v : res)
    v = normal(rng);
  auto bits = [](const std::vector<float> &w) { // exact: w holds bf16 values
    std::vector<uint16_t> b(w.size());
    for (size_t i = 0; i < w.size(); ++i)
      b[i] = floatToBf16(w[i]);
    return b;
  };
  std::vector<uint16_t> bg = bits(wg), bu = bits(wu);
  CUdeviceptr dx = s.deviceBuffer(x.size() * 4, "bf16-check x", x.data());
  CUdeviceptr dg = s.deviceBuffer(bg.size() * 2, "bf16-check gate", bg.data());
  CUdeviceptr du = s.deviceBuffer(bu.size() * 2, "bf16-check up", bu.data());
  CUdeviceptr db = s.deviceBuffer(bias.size() * 4, "bf16-check bias", bias.data());
  CUdeviceptr dr = s.deviceBuffer(res.size() * 4, "bf16-check residual", res.data());
  CUdeviceptr dc = s.deviceBuffer(counts.size() * 8, "bf16-check counts", counts.data());
  CUdeviceptr dy = s.deviceBuffer(size_t(M * N) * 4, "bf16-check y");
  // Reference: y = x W_e^T in float64 and sum |x w| (rows of expert e use
  // W_e when grouped, W_0 otherwise), threads over rows.
  auto dots = [&](const std::vector<float> &w, bool grouped, std::vector<double> &y,
                  std::vector<double> &mag) {
    y.assign(size_t(M * N), 0);
    mag.assign(size_t(M * N), 0);
    std::vector<int64_t> expertOf(size_t(M), 0);
    if (grouped)
      for (int64_t e = 0, r = 0; e < E; ++e)
        for (int64_t c = 0; c < counts[size_t(e)]; ++c)
          expertOf[size_t(r++)] = e;
    parallelFor(M, [&](unsigned, int64_t r) {
      for (int64_t n = 0; n < N; ++n) {
        const float *xr = x.data() + r * K, *wr = w.data() + (expertOf[size_t(r)] * N + n) * K;
        double acc = 0, m = 0;
        for (int64_t k = 0; k < K; ++k) {
          double p = double(xr[k]) * double(wr[k]);
          acc += p;
          m += std::fabs(p);
        }
        y[size_t(r * N + n)] = acc;
        mag[size_t(r * N + n)] = m;
      }
    });
  };
  const double rel = std::ldexp(1.0, -12);
  bool ok = true;
  // The kernel's bare name ("dsv3::gemm_bf16_wgmma<0>" -> gemm_bf16_wgmma).
  std::string kernel = cuda::bf16GemmKernel(s);
  kernel = kernel.substr(6, kernel.find('<') - 6);
  fmt::print("bf16-check {} on {}: the bf16 GEMMs at {} x {} x {} (bound 2^-12 sum|x w|)\n",
             artifact, s.description(), M, N, K);
  for (bool grouped : {false, true}) {
    std::vector<double> g, gm, u, um;
    dots(wg, grouped, g, gm);
    dots(wu, grouped, u, um);
    // Variants: plain with bias and residual, gated; ungrouped also plain
    // without bias, which takes cuBLASLt where the session uses it.
    for (int variant : {0, 1, 2}) {
      bool gated = variant == 1, noBias = variant == 2;
      if (noBias && (grouped || !s.cublasLt || M < cuda::cublasRows()))
        continue;
      cuda::bf16TcGemm(s, "bf16-check", dx, K, dg, gated ? du : 0, gated || noBias ? 0 : db,
                       gated ? 0 : dr, dy, M, N, K, grouped ? dc : 0, grouped ? E : 0);
      DSV3_CU(drv, streamSynchronize, "bf16-check", s.stream());
      std::vector<float> y(size_t(M * N));
      DSV3_CU(drv, memcpyDtoH, "bf16-check y", y.data(), dy, y.size() * 4);
      double worst = 0, se = 0, sr = 0;
      for (int64_t r = 0; r < M; ++r)
        for (int64_t n = 0; n < N; ++n) {
          size_t i = size_t(r * N + n);
          double ref, bound;
          if (gated) {
            double sg = g[i] / (1 + std::exp(-g[i]));
            ref = sg * u[i];
            bound = 1.1 * rel * gm[i] * std::fabs(u[i]) + std::fabs(sg) * rel * um[i] +
                    rel * rel * gm[i] * um[i];
          } else {
            double bn = noBias ? 0.0 : bias[size_t(n)];
            ref = g[i] + bn + res[i];
            bound = rel * gm[i] + 1e-6 * (std::fabs(bn) + std::fabs(res[i]));
          }
          double e = std::fabs(double(y[i]) - ref);
          if (!std::isfinite(double(y[i])))
            e = INFINITY;
          worst = std::max(worst, e / std::max(bound, 1e-30));
          se += e * e;
          sr += ref * ref;
        }
      bool pass = worst <= 1.0;
      ok = ok && pass;
      fmt::print("  {:<52} rms rel {:.3e}, worst {:6.1f}% of the bound  {}\n",
                 noBias ? std::string("cublasLtMatmul plain (+ res)")
                        : fmt::format("{} {}{}", kernel,
                                      gated ? "gated (silu(g) u)" : "plain (+ b + res)",
                                      grouped ? fmt::format(", grouped ({} experts)", E) : ""),
                 std::sqrt(se / std::max(sr, 1e-300)), 100 * worst, pass ? "PASS" : "FAIL");
    }
  }
  if (const char *spec = std::getenv("DSV3_GEMM_TIME")) {
    int64_t tm = 0, tn = 0, tk = 0;
    if (std::sscanf(spec, "%ld,%ld,%ld", &tm, &tn, &tk) != 3 || tm < 64 || tn < 1 || tk % 8)
      fail("DSV3_GEMM_TIME takes M,N,K (M >= 64, K % 8 == 0), got '{}'", spec);
    std::vector<float> tx(size_t(tm * tk));
    for (size_t i = 0; i < tx.size(); ++i)
      tx[i] = x[i % x.size()];
    std::vector<uint16_t> tw(size_t(tn * tk));
    for (size_t i = 0; i < tw.size(); ++i)
      tw[i] = bg[i % bg.size()];
    CUdeviceptr x2 = s.deviceBuffer(tx.size() * 4, "timing x", tx.data());
    CUdeviceptr w2 = s.deviceBuffer(tw.size() * 2, "timing w", tw.data());
    CUdeviceptr y2 = s.deviceBuffer(size_t(tm * tn) * 4, "timing y");
    const bool cublasWas = s.cublasLt, withCublas = s.cublasLt && tm >= cuda::cublasRows();
    for (int variant : {0, 1, 2}) {
      if (variant == 2 && !withCublas)
        continue;
      bool split = variant == 1;
      s.fp32Activations = split; // gemm() takes linear_mma (hi + lo) then
      s.cublasLt = variant == 2;
      auto once = [&] {
        cuda::gemm(s, "bf16 timing", x2, tk, w2, 0, y2, tm, tn, tk, true, 0, nullptr);
      };
      double ms = timeMs(s, once, 10);
      double tf = 2.0 * double(tm) * double(tn) * double(tk) / (ms * 1e9);
      fmt::print("  timing {}x{}x{} {:<40} {:8.3f} ms {:7.1f} TFLOP/s ({:.1f}% of 989)\n", tm, tn,
                 tk,
                 split           ? std::string("linear_mma (fp32 activations as hi + lo)")
                 : variant == 2 ? std::string("to_bf16 + cublasLtMatmul")
                                : "to_bf16 + " + kernel,
                 ms, tf, 100 * tf / 989);
    }
    s.fp32Activations = false;
    s.cublasLt = cublasWas;
  }
  return ok ? 0 : 1;
}

/// The training attention's backward (SEMANTICS.md 3.6's gradients; no
/// past): mla_prefill_mma + mla_grad_q_mma + mla_grad_kv_mma (bf16 tensor
/// cores: `dsv3-run train/time --compute bf16`) and the fp32 kernels
/// (mla_grad_query + mla_grad_key) on 2 sequences of T tokens at ART's
/// widths, against float64. With P_ij the softmax, dP_ij = dO_i . v_j,
/// delta_i = dO_i . o_i and dS_ij = P_ij (dP_ij - delta_i):
///   dq_i = scale sum_j dS_ij k_j, dk_j = scale sum_i dS_ij q_i,
///   dv_j = sum_i P_ij dO_i.
/// The bf16 path multiplies q, k, v and dO rounded to bf16 (the reference
/// rounds them too) and rounds P and dS to bf16 (2^-9 relative) as the
/// next MMA's operand; its delta takes the forward's o (within 2^-8 of the
/// largest |v| a query sees, the forward's bound) and the fp32 dO. So
/// |error of dS_ij| <= 2^-9 P_ij |dP_ij - delta_i| + P_ij 2^-8 vmax_i
/// sum_c |dO_ic| <= 2^-8 E_ij with E_ij = P_ij (|dP_ij - delta_i| + 2 vmax_i
/// sum_c |dO_ic|), and each gradient is held to 2^-8 of the matching sum
/// of magnitudes: dq_if to scale sum_j E_ij |k_jf|, dk_jf to scale sum_i
/// E_ij |q_if|, dv_jc to sum_i P_ij |dO_ic| (a factor 2 over the rounding
/// alone, for fp32 sums and exp2). The fp32 kernels are held to 1e-4 of the
/// same sums on the unrounded operands (compare's tolerance: a score's fp32
/// dot product over DN + DR terms moves exp by ~1e-6 relative per unit of
/// |q.k|, and the sink keys' scores reach ~50).
/// DSV3_ATTENTION_TIME=T times both at one sequence of T tokens.
int attentionGradCheck(const std::string &artifact, int64_t T, uint64_t seed) {
  Artifact art = Artifact::load(artifact);
  auto [d, scale] = mlaOf(art, artifact);
  cuda::CudaSession s(art, cuda::RandomWeights{1, 0.02});
  auto &drv = s.driver();
  bool mmaBuilt = cuda::mlaPrefillMmaFits(d) && s.hasFunction(cuda::mlaGradQMmaName(d));
  const int64_t B = 2, N = B * T, NH = d.nh, DQ = d.dn + d.dr, UW = d.dn + d.dv,
                W = d.r + d.dr, DV = d.dv;
  std::mt19937_64 rng(seed + 71);
  std::normal_distribution<float> normal(0.f, 1.f);
  float qs = float(2.0 / (scale * std::sqrt(double(DQ))));
  std::vector<float> q(size_t(N * NH * DQ)), u(size_t(N * NH * UW)), l(size_t(N * W)),
      dO(size_t(N * NH * DV));
  for (float &v : q)
    v = normal(rng) * qs;
  for (size_t i = 0; i < u.size(); ++i)
    u[i] = normal(rng) * ((i / size_t(NH * UW)) % 17 == 3 ? 6.f : 1.f);
  for (float &v : l)
    v = normal(rng);
  for (float &v : dO)
    v = normal(rng);
  CUdeviceptr gq = s.deviceBuffer(q.size() * 4, "grad-check q", q.data());
  CUdeviceptr gu = s.deviceBuffer(u.size() * 4, "grad-check u", u.data());
  CUdeviceptr gl = s.deviceBuffer(l.size() * 4, "grad-check latent", l.data());
  CUdeviceptr gdo = s.deviceBuffer(dO.size() * 4, "grad-check dO", dO.data());
  CUdeviceptr go = s.deviceBuffer(size_t(N * NH * DV) * 4, "grad-check o");
  CUdeviceptr gdq = s.deviceBuffer(q.size() * 4, "grad-check dq");
  CUdeviceptr gdu = s.deviceBuffer(u.size() * 4, "grad-check du");
  CUdeviceptr gdkp = s.deviceBuffer(size_t(N * NH * d.dr) * 4, "grad-check dkp");
  struct Grads {
    std::vector<double> dq, du, dkp;
  };
  // The form: fp32 kernels, mma.sync, or the warpgroup MMA (Hopper).
  enum class Form { Fp32, Mma, Wgmma };
  const bool wgmmaBuilt = mmaBuilt && cuda::useGradWgmma(s, d);
  auto attentionGrad = [&](Form f, CUdeviceptr q, CUdeviceptr l, CUdeviceptr u, CUdeviceptr dO,
                           CUdeviceptr o, CUdeviceptr dq, CUdeviceptr du, CUdeviceptr dkp,
                           int64_t b, int64_t t) {
    if (f == Form::Fp32)
      cuda::mlaAttentionGradFp32(s, "grad-check", d, q, l, u, dO, o, dq, du, dkp, b, t,
                                 float(scale));
    else
      cuda::mlaAttentionGradMma(s, "grad-check", d, q, l, u, dO, o, dq, du, dkp, b, t,
                                float(scale), f == Form::Wgmma);
  };
  auto runKernels = [&](Form f) {
    attentionGrad(f, gq, gl, gu, gdo, go, gdq, gdu, gdkp, B, T);
    DSV3_CU(drv, streamSynchronize, "grad-check", s.stream());
    auto down = [&](CUdeviceptr p, size_t n) {
      std::vector<float> f(n);
      DSV3_CU(drv, memcpyDtoH, "grad-check result", f.data(), p, n * 4);
      return std::vector<double>(f.begin(), f.end());
    };
    return Grads{down(gdq, q.size()), down(gdu, u.size()), down(gdkp, size_t(N * NH * d.dr))};
  };
  // float64 gradients and their bounds' magnitude sums, per (sequence, head).
  auto reference = [&](bool bf16, Grads &g, Grads &mag) {
    auto in = [&](float v) { return double(bf16 ? roundBf16(v) : v); };
    g = Grads{std::vector<double>(q.size()), std::vector<double>(u.size()),
              std::vector<double>(size_t(N * NH * d.dr))};
    mag = g;
    auto head = [&](int64_t b, int64_t h) {
      auto qv = [&](int64_t i, int64_t f) {
        return in(q[size_t(((b * T + i) * NH + h) * DQ + f)]);
      };
      auto kv = [&](int64_t j, int64_t f) {
        return f < d.dn ? in(u[size_t(((b * T + j) * NH + h) * UW + f)])
                        : in(l[size_t((b * T + j) * W + d.r + f - d.dn)]);
      };
      auto vv = [&](int64_t j, int64_t c) {
        return in(u[size_t(((b * T + j) * NH + h) * UW + d.dn + c)]);
      };
      auto dov = [&](int64_t i, int64_t c) {
        return in(dO[size_t(((b * T + i) * NH + h) * DV + c)]);
      };
      auto doAbs = [&](int64_t i, int64_t c) {
        return double(std::fabs(dO[size_t(((b * T + i) * NH + h) * DV + c)]));
      };
      auto gi = [&](std::vector<double> &t, int64_t i, int64_t f) -> double & {
        return t[size_t(((b * T + i) * NH + h) * DQ + f)];
      };
      auto gk = [&](Grads &t, int64_t j, int64_t f) -> double & {
        return f < d.dn ? t.du[size_t(((b * T + j) * NH + h) * UW + f)]
                        : t.dkp[size_t(((b * T + j) * NH + h) * d.dr + f - d.dn)];
      };
      auto gv = [&](std::vector<double> &t, int64_t j, int64_t c) -> double & {
        return t[size_t(((b * T + j) * NH + h) * UW + d.dn + c)];
      };
      std::vector<double> P(static_cast<size_t>(T)), dS(static_cast<size_t>(T)),
          E(static_cast<size_t>(T)), o(static_cast<size_t>(DV));
      double vmax = 0;
      for (int64_t i = 0; i < T; ++i) {
        for (int64_t c = 0; c < DV; ++c)
          vmax = std::max(vmax, std::fabs(vv(i, c)));
        double mx = -INFINITY;
        for (int64_t j = 0; j <= i; ++j) {
          double acc = 0;
          for (int64_t f = 0; f < DQ; ++f)
            acc += qv(i, f) * kv(j, f);
          P[size_t(j)] = acc * scale;
          mx = std::max(mx, P[size_t(j)]);
        }
        double sum = 0;
        for (int64_t j = 0; j <= i; ++j)
          sum += P[size_t(j)] = std::exp(P[size_t(j)] - mx);
        std::fill(o.begin(), o.end(), 0.0);
        for (int64_t j = 0; j <= i; ++j) {
          P[size_t(j)] /= sum;
          for (int64_t c = 0; c < DV; ++c)
            o[size_t(c)] += P[size_t(j)] * vv(j, c);
        }
        double delta = 0, doSum = 0;
        for (int64_t c = 0; c < DV; ++c) {
          delta += double(dO[size_t(((b * T + i) * NH + h) * DV + c)]) * o[size_t(c)];
          doSum += doAbs(i, c);
        }
        for (int64_t j = 0; j <= i; ++j) {
          double dp = 0;
          for (int64_t c = 0; c < DV; ++c)
            dp += dov(i, c) * vv(j, c);
          dS[size_t(j)] = P[size_t(j)] * (dp - delta);
          E[size_t(j)] = P[size_t(j)] * (std::fabs(dp - delta) + 2 * vmax * doSum);
        }
        for (int64_t j = 0; j <= i; ++j) {
          for (int64_t f = 0; f < DQ; ++f) {
            gi(g.dq, i, f) += scale * dS[size_t(j)] * kv(j, f);
            gi(mag.dq, i, f) += scale * E[size_t(j)] * std::fabs(kv(j, f));
            gk(g, j, f) += scale * dS[size_t(j)] * qv(i, f);
            gk(mag, j, f) += scale * E[size_t(j)] * std::fabs(qv(i, f));
          }
          for (int64_t c = 0; c < DV; ++c) {
            gv(g.du, j, c) += P[size_t(j)] * dov(i, c);
            gv(mag.du, j, c) += P[size_t(j)] * doAbs(i, c);
          }
        }
      }
    };
    parallelFor(B * NH, [&](unsigned, int64_t bh) { head(bh / NH, bh % NH); });
  };
  fmt::print("bf16-check {} on {}: the training attention's backward, {} heads, q/k {} + {}, "
             "v {}; 2 sequences of {} tokens\n",
             artifact, s.description(), NH, d.dn, d.dr, DV, T);
  fmt::print("  {:<52} {:>7} {:>11} {:>9}  {}\n", "kernels, against", "tensor", "max err/max",
             "of bound", "result");
  bool ok = true;
  auto measure = [&](const char *what, const Grads &got, const Grads &ref, const Grads &mag,
                     double factor) {
    auto one = [&](const char *name, const std::vector<double> &a, const std::vector<double> &r,
                   const std::vector<double> &m) {
      double worst = 0, scaleMax = 1e-300, errMax = 0;
      for (size_t i = 0; i < a.size(); ++i) {
        double e = std::isfinite(a[i]) ? std::fabs(a[i] - r[i]) : INFINITY;
        if (factor > 0)
          worst = std::max(worst, e / (factor * m[i] + 1e-30));
        scaleMax = std::max(scaleMax, std::fabs(r[i]));
        errMax = std::max(errMax, e);
      }
      bool pass = factor <= 0 || worst <= 1.0;
      ok = ok && pass;
      if (factor > 0)
        fmt::print("  {:<52} {:>7} {:>11.3e} {:>8.1f}%  {}\n", what, name, errMax / scaleMax,
                   100 * worst, pass ? "PASS" : "FAIL");
      else
        fmt::print("  {:<52} {:>7} {:>11.3e} {:>9}  (the bf16 operands' cost)\n", what, name,
                   errMax / scaleMax, "");
    };
    // du holds the nope key's and the value's gradients.
    one("dq", got.dq, ref.dq, mag.dq);
    one("du", got.du, ref.du, mag.du);
    one("dk rope", got.dkp, ref.dkp, mag.dkp);
  };
  Grads exact, exactMag;
  reference(false, exact, exactMag);
  measure("fp32 kernels, float64 (1e-4 of the sums)", runKernels(Form::Fp32), exact, exactMag,
          1e-4);
  if (mmaBuilt) {
    Grads rounded, roundedMag;
    reference(true, rounded, roundedMag);
    Grads mma;
    for (Form f : {Form::Mma, Form::Wgmma}) {
      if (f == Form::Wgmma && !wgmmaBuilt) {
        fmt::print("  mla_grad_*_wgmma: not run (not in this artifact, not Hopper, or "
                   "DSV3_GRAD_WGMMA=0)\n");
        continue;
      }
      const bool wg = f == Form::Wgmma;
      Grads got = runKernels(f);
      measure(wg ? "wgmma kernels, float64 on bf16 operands (2^-8)"
                 : "bf16 kernels, float64 on bf16 operands (2^-8)",
              got, rounded, roundedMag, std::ldexp(1.0, -8));
      measure(wg ? "wgmma kernels, float64 on the fp32 operands"
                 : "bf16 kernels, float64 on the fp32 operands",
              got, exact, exactMag, 0);
      if (!wg) {
        mma = std::move(got);
        continue;
      }
      // Both forms multiply 16-deep bf16 slices into fp32 in the same key
      // and column order, so equal bits are expected, not required: say
      // which it was.
      size_t differ = 0, total = 0;
      double largest = 0;
      auto diff = [&](const std::vector<double> &a, const std::vector<double> &b) {
        for (size_t i = 0; i < a.size(); ++i, ++total)
          if (a[i] != b[i]) {
            ++differ;
            largest = std::max(largest, std::fabs(a[i] - b[i]));
          }
      };
      diff(got.dq, mma.dq);
      diff(got.du, mma.du);
      diff(got.dkp, mma.dkp);
      fmt::print("  wgmma against mma.sync: {} of {} gradient values differ (largest by {:.3e})\n",
                 differ, total, largest);
    }
  } else {
    fmt::print("  mla_grad_q_mma: not in this artifact (a --mode train artifact has it)\n");
  }
  if (const char *spec = std::getenv("DSV3_ATTENTION_TIME")) {
    int64_t tt = std::atoll(spec);
    if (tt < 1)
      fail("DSV3_ATTENTION_TIME takes a token count, got '{}'", spec);
    auto tile = [&](const std::vector<float> &x, int64_t n) {
      std::vector<float> y(static_cast<size_t>(n));
      for (size_t i = 0; i < y.size(); ++i)
        y[i] = x[i % x.size()];
      return s.deviceBuffer(y.size() * 4, "timing operand", y.data());
    };
    CUdeviceptr q2 = tile(q, tt * NH * DQ), u2 = tile(u, tt * NH * UW), l2 = tile(l, tt * W),
                do2 = tile(dO, tt * NH * DV);
    CUdeviceptr o2 = s.deviceBuffer(size_t(tt * NH * DV) * 4, "timing o");
    CUdeviceptr dq2 = s.deviceBuffer(size_t(tt * NH * DQ) * 4, "timing dq");
    CUdeviceptr du2 = s.deviceBuffer(size_t(tt * NH * UW) * 4, "timing du");
    CUdeviceptr dk2 = s.deviceBuffer(size_t(tt * NH * d.dr) * 4, "timing dkp");
    // Executed multiply-adds per causal (query, key) pair: the forward
    // again (q.k, p v), the query side (q.k, dO.v, dS k) and the key side
    // (k.q, v.dO, p dO, dS q).
    double pairs = double(tt) * double(tt + 1) / 2 * double(NH);
    double flops = 2 * pairs * double(5 * DQ + 4 * DV);
    for (Form f : {Form::Wgmma, Form::Mma, Form::Fp32}) {
      if ((f == Form::Mma && !mmaBuilt) || (f == Form::Wgmma && !wgmmaBuilt))
        continue;
      auto once = [&] { attentionGrad(f, q2, l2, u2, do2, o2, dq2, du2, dk2, 1, tt); };
      double ms = timeMs(s, once, f == Form::Fp32 ? 1 : 10);
      double tf = flops / (ms * 1e9);
      const char *what = f == Form::Wgmma ? "wgmma (forward again + q + kv)"
                         : f == Form::Mma ? "bf16 (forward again + q + kv)"
                                          : "fp32 (query + key kernels)";
      fmt::print("  timing backward, {} tokens x {} heads, causal: {:<30} {:9.3f} ms {:7.1f} "
                 "TFLOP/s ({:.1f}% of 989)\n",
                 tt, NH, what, ms, tf, 100 * tf / 989);
    }
  }
  fmt::print("{}\n", ok ? "attention backward: PASS" : "attention backward: FAIL");
  return ok ? 0 : 1;
}

/// Training's GEMMs with bf16 compute (stridedGemm under
/// CudaSession::bf16Compute: operands rounded to bf16, gemm_bf16_tma on
/// Hopper), on a training artifact at M x N x K: the forward x W^T with
/// bias and residual, the input gradient dy W accumulated into C, the
/// weight gradient dy^T x (both operands transposed views), and the expert
/// forms grouped over 4 experts (rows M/2, 0, M/4, the rest): x W_e^T and
/// dy W_e accumulated. Against float64 on the same bf16-rounded operands,
/// 2^-12 of sum |a b| an element (the fp32 sums; as the bf16 GEMM check),
/// plus 1e-6 of the epilogue's added terms. DSV3_GEMM_TIME=M,N,K times the
/// forward beside gemm_mma (3xTF32, the fp32 compute).
int trainGemmCheck(const std::string &artifact, int64_t M, int64_t N, int64_t K,
                   uint64_t seed) {
  Artifact art = Artifact::load(artifact);
  cuda::CudaSession s(art, cuda::RandomWeights{1, 0.02});
  s.bf16Compute = true;
  auto &drv = s.driver();
  std::vector<int64_t> counts = checkExpertCounts(M), seg(1, 0);
  const int64_t E = int64_t(counts.size());
  std::mt19937_64 rng(seed + 97);
  std::normal_distribution<float> normal(0.f, 1.f);
  auto fill = [&](int64_t n, float scale) {
    std::vector<float> v(static_cast<size_t>(n));
    for (float &x : v)
      x = normal(rng) * scale;
    return v;
  };
  std::vector<float> x = fill(M * K, 1.f), w = fill(E * N * K, 0.02f), dy = fill(M * N, 1.f);
  std::vector<float> bias = fill(N, 1.f), res = fill(M * N, 1.f);
  std::vector<float> prev = fill(E * std::max(M, N) * (std::max(N, K) + 24), 1.f);
  for (int64_t c : counts)
    seg.push_back(seg.back() + c);
  CUdeviceptr gx = s.deviceBuffer(x.size() * 4, "gemm-check x", x.data());
  CUdeviceptr gw = s.deviceBuffer(w.size() * 4, "gemm-check w", w.data());
  CUdeviceptr gdy = s.deviceBuffer(dy.size() * 4, "gemm-check dy", dy.data());
  CUdeviceptr gb = s.deviceBuffer(bias.size() * 4, "gemm-check bias", bias.data());
  CUdeviceptr gr = s.deviceBuffer(res.size() * 4, "gemm-check res", res.data());
  CUdeviceptr gseg = s.deviceBuffer(seg.size() * 8, "gemm-check segments", seg.data());
  CUdeviceptr gc = s.deviceBuffer(prev.size() * 4, "gemm-check c");
  auto r = [](float v) { return double(roundBf16(v)); };
  struct Form {
    std::string name;
    int64_t m, n, k;
    cuda::GemmArgs g;
    std::function<double(int64_t, int64_t)> a;          // a(m, k)
    std::function<double(int64_t, int64_t, int64_t)> b; // b(e, k, n)
    bool grouped, accumulate, epilogue;
    bool segmented = false; // per-expert K ranges (mode 2): E outputs
    int64_t ldc = 0;        // C's row pitch when wider than n
  };
  auto args = [&](int64_t m, int64_t n, int64_t k, cuda::Mat a, cuda::Mat b, int64_t ldc) {
    return cuda::gemmArgs(m, n, k, a, b, gc, ldc);
  };
  std::vector<Form> forms;
  {
    Form f{"x W^T + b + res (forward)", M, N, K,
           args(M, N, K, cuda::rowMajor(gx, K), cuda::transposed(gw, K), N),
           [&](int64_t i, int64_t k) { return r(x[size_t(i * K + k)]); },
           [&](int64_t, int64_t k, int64_t n) { return r(w[size_t(n * K + k)]); }, false, false,
           true};
    f.g.bias = gb;
    f.g.res = gr;
    forms.push_back(f);
  }
  {
    Form f{"C += dy W (input gradient)", M, K, N,
           args(M, K, N, cuda::rowMajor(gdy, N), cuda::rowMajor(gw, K), K),
           [&](int64_t i, int64_t k) { return r(dy[size_t(i * N + k)]); },
           [&](int64_t, int64_t k, int64_t n) { return r(w[size_t(k * K + n)]); }, false, true,
           false};
    f.g.accumulate = true;
    forms.push_back(f);
  }
  forms.push_back(Form{"dy^T x (weight gradient)", N, K, M,
                       args(N, K, M, cuda::transposed(gdy, N), cuda::rowMajor(gx, K), K),
                       [&](int64_t i, int64_t k) { return r(dy[size_t(k * N + i)]); },
                       [&](int64_t, int64_t k, int64_t n) { return r(x[size_t(k * K + n)]); },
                       false, false, false});
  {
    Form f{fmt::format("x W_e^T, grouped ({} experts)", E), M, N, K,
           args(M, N, K, cuda::rowMajor(gx, K), cuda::transposed(gw, K), N),
           [&](int64_t i, int64_t k) { return r(x[size_t(i * K + k)]); },
           [&](int64_t e, int64_t k, int64_t n) { return r(w[size_t((e * N + n) * K + k)]); },
           true, false, false};
    f.g.mode = 1;
    f.g.sBb = N * K;
    f.g.seg = gseg;
    f.g.segs = E;
    forms.push_back(f);
  }
  {
    Form f{fmt::format("C += dy W_e, grouped ({} experts)", E), M, K, N,
           args(M, K, N, cuda::rowMajor(gdy, N), cuda::rowMajor(gw, K), K),
           [&](int64_t i, int64_t k) { return r(dy[size_t(i * N + k)]); },
           [&](int64_t e, int64_t k, int64_t n) { return r(w[size_t((e * N + k) * K + n)]); },
           true, true, false};
    f.g.mode = 1;
    f.g.sBb = N * K;
    f.g.seg = gseg;
    f.g.segs = E;
    f.g.accumulate = true;
    forms.push_back(f);
  }
  {
    // Into rows wider than N (as the latent's gradient, a slice of [N, R +
    // DR]): the result through a temporary and strided_store.
    Form f{"C += dy W into rows K + 24 apart", M, K, N,
           args(M, K, N, cuda::rowMajor(gdy, N), cuda::rowMajor(gw, K), K + 24),
           [&](int64_t i, int64_t k) { return r(dy[size_t(i * N + k)]); },
           [&](int64_t, int64_t k, int64_t n) { return r(w[size_t(k * K + n)]); }, false, true,
           false};
    f.g.accumulate = true;
    f.ldc = K + 24;
    forms.push_back(f);
  }
  {
    Form f{"dy_e^T x_e per expert (weight grads)", N, K, M,
           args(N, K, M, cuda::transposed(gdy, N), cuda::rowMajor(gx, K), K),
           [&](int64_t i, int64_t k) { return r(dy[size_t(k * N + i)]); },
           [&](int64_t, int64_t k, int64_t n) { return r(x[size_t(k * K + n)]); }, false, true,
           false};
    f.g.mode = 2;
    f.g.accumulate = true;
    f.g.sCb = N * K;
    f.g.batches = unsigned(E);
    f.g.seg = gseg;
    f.g.segs = E;
    f.segmented = true;
    forms.push_back(f);
  }
  fmt::print("bf16-check {} on {}: training's GEMMs with bf16 compute at {} x {} x {} "
             "(bound 2^-12 sum|a b|)\n",
             artifact, s.description(), M, N, K);
  const double rel = std::ldexp(1.0, -12);
  bool ok = true;
  for (const Form &f : forms) {
    const int64_t outs = f.segmented ? E : 1, ldc = f.ldc ? f.ldc : f.n;
    DSV3_CU(drv, memcpyHtoD, "gemm-check c", gc, prev.data(), size_t(outs * f.m * ldc) * 4);
    int64_t launches = s.bf16ActivationLaunches();
    cuda::stridedGemm(s, "gemm-check", f.g);
    bool onBf16 = s.bf16ActivationLaunches() > launches;
    DSV3_CU(drv, streamSynchronize, "gemm-check", s.stream());
    std::vector<float> c(size_t(outs * f.m * ldc));
    DSV3_CU(drv, memcpyDtoH, "gemm-check c", c.data(), gc, c.size() * 4);
    std::vector<int64_t> expertOf(size_t(f.m), 0);
    if (f.grouped)
      for (int64_t e = 0, row = 0; e < E; ++e)
        for (int64_t n = 0; n < counts[size_t(e)]; ++n)
          expertOf[size_t(row++)] = e;
    std::vector<double> worstOf(kReferenceThreads, 0.0);
    parallelFor(outs * f.m, [&](unsigned t, int64_t iz) {
      std::vector<double> arow(static_cast<size_t>(f.k));
      const int64_t z = iz / f.m, i = iz % f.m;
      const int64_t k0 = f.segmented ? seg[size_t(z)] : 0;
      const int64_t k1 = f.segmented ? seg[size_t(z + 1)] : f.k;
      for (int64_t k = k0; k < k1; ++k)
        arow[size_t(k)] = f.a(i, k);
      for (int64_t n = 0; n < f.n; ++n) {
        double acc = 0, mag = 0;
        for (int64_t k = k0; k < k1; ++k) {
          double p = arow[size_t(k)] * f.b(expertOf[size_t(i)], k, n);
          acc += p;
          mag += std::fabs(p);
        }
        size_t at = size_t((z * f.m + i) * ldc + n);
        double extra = 0;
        if (f.epilogue) {
          acc += bias[size_t(n)] + res[at];
          extra = std::fabs(bias[size_t(n)]) + std::fabs(res[at]);
        }
        if (f.accumulate) {
          acc += prev[at];
          extra += std::fabs(prev[at]);
        }
        double e = std::isfinite(double(c[at])) ? std::fabs(double(c[at]) - acc) : INFINITY;
        worstOf[t] = std::max(worstOf[t], e / (rel * mag + 1e-6 * extra + 1e-30));
      }
    });
    double worst = *std::max_element(worstOf.begin(), worstOf.end());
    bool pass = onBf16 && worst <= 1.0;
    ok = ok && pass;
    fmt::print("  {:<36} {:<22} worst {:6.1f}% of the bound  {}\n", f.name,
               onBf16 ? cuda::bf16GemmKernel(s).substr(6) : "(not on the bf16 path)",
               100 * worst, pass ? "PASS" : "FAIL");
  }
  if (const char *spec = std::getenv("DSV3_GEMM_TIME")) {
    int64_t tm = 0, tn = 0, tk = 0;
    if (std::sscanf(spec, "%ld,%ld,%ld", &tm, &tn, &tk) != 3 || tm < 64 || tn < 1 || tk % 8)
      fail("DSV3_GEMM_TIME takes M,N,K (M >= 64, K % 8 == 0), got '{}'", spec);
    auto tile = [&](const std::vector<float> &v, int64_t n) {
      std::vector<float> t(static_cast<size_t>(n));
      for (size_t i = 0; i < t.size(); ++i)
        t[i] = v[i % v.size()];
      return s.deviceBuffer(t.size() * 4, "timing operand", t.data());
    };
    CUdeviceptr tx = tile(x, tm * tk), tw = tile(w, tn * tk);
    CUdeviceptr ty = s.deviceBuffer(size_t(tm * tn) * 4, "timing y");
    cuda::GemmArgs g = cuda::gemmArgs(tm, tn, tk, cuda::rowMajor(tx, tk),
                                      cuda::transposed(tw, tk), ty, tn);
    for (bool bf16 : {true, false}) {
      s.bf16Compute = bf16;
      double ms = timeMs(s, [&] { cuda::stridedGemm(s, "gemm timing", g); }, bf16 ? 10 : 2);
      double tf = 2.0 * double(tm) * double(tn) * double(tk) / (ms * 1e9);
      fmt::print("  timing {}x{}x{} {:<44} {:8.3f} ms {:7.1f} TFLOP/s ({:.1f}% of 989)\n", tm,
                 tn, tk,
                 bf16 ? "bf16 compute (both operands rounded + gemm)" : "gemm_mma (3xTF32)", ms,
                 tf, 100 * tf / 989);
    }
    s.bf16Compute = true;
  }
  return ok ? 0 : 1;
}

} // namespace

int bf16Check(const std::string &artifact, int64_t T, int64_t past, int64_t M, int64_t N,
              int64_t K, uint64_t seed) {
  const bool training = Artifact::load(artifact).hasEntry("train_step");
  int status = attentionCheck(artifact, T, past, seed);
  status |= decodeCheck(artifact, seed);
  if (Artifact::load(artifact).hasEntry("decode"))
    status |= absorbCheck(artifact, seed);
  if (training)
    status |= attentionGradCheck(artifact, T, seed);
  if (M > 0)
    status |= training ? trainGemmCheck(artifact, M, N, K, seed)
                       : gemmCheck(artifact, M, N, K, seed);
  fmt::print("{}\n", status ? "bf16-check: FAIL" : "bf16-check: PASS");
  return status;
}

} // namespace dsv3rt
#endif
