//===- CudaGradLaunchers.cpp - launch the training kernels on the GPU -----===//
//
// The CUDA side of train_step: one launcher per "<op>_vjp" kernel (inputs:
// the op's primals, then the cotangents of its float results; outputs: the
// gradients of the operands in `grad_operands`), the balance loss, the
// global gradient norm and the in-place optimizer updates. As on the host
// (HostGradKernels.cpp), the backward recomputes what it needs from the
// primals (MLA projections and probabilities, routing, the dispatch
// permutation) instead of keeping forward intermediates. Every gradient
// output is zeroed first and the kernels accumulate into it. Kernels:
// codegen/kernels/dsv3_train_kernels.cuh.
//
//===----------------------------------------------------------------------===//

#include "runtime/cuda/Launchers.h"

#include "runtime/Error.h"
#include "runtime/VjpOperands.h"

#include <cmath>

namespace dsv3rt::cuda {

void mlaAttentionGradFp32(CudaSession &s, const std::string &k, const MlaDims &d, CUdeviceptr Q,
                          CUdeviceptr L, CUdeviceptr U, CUdeviceptr dO, CUdeviceptr O,
                          CUdeviceptr dQ, CUdeviceptr dU, CUdeviceptr dKP, i64 B, i64 T,
                          float scale) {
  const i64 nh = d.nh, dn = d.dn, dr = d.dr, dv = d.dv, r = d.r;
  if (size_t(2 * T) * 4 > 227 * 1024)
    fail("kernel {}: the attention backward holds 2 x {} scores in shared memory (at "
         "most 29056 tokens a sequence)",
         k, T);
  CUdeviceptr lse = s.workspace(size_t(B * T * nh) * 4);
  CUdeviceptr delta = s.workspace(size_t(B * T * nh) * 4);
  s.launch(inst("mla_grad_query", {0}), {unsigned(T), unsigned(nh), unsigned(B)}, {128, 1, 1},
           size_t(2 * T) * 4,
           argv(Q, L, U, dO, O, dQ, lse, delta, T, nh, dn, dr, dv, r, scale),
           k + " attention (queries)");
  s.launch(inst("mla_grad_key", {0}), {unsigned(T), unsigned(nh), unsigned(B)}, {256, 1, 1},
           size_t(8 * (dn + dr + dv)) * 4,
           argv(Q, L, U, dO, lse, delta, dU, dKP, T, nh, dn, dr, dv, r, scale),
           k + " attention (keys)");
}

/// Whether the attention backward runs on the warpgroup MMA
/// (mla_grad_q_wgmma, mla_grad_kv_wgmma; Hopper) rather than on mma.sync:
/// where the artifact has them. DSV3_GRAD_WGMMA=0 never.
bool useGradWgmma(CudaSession &s, const MlaDims &d) {
  static const bool enabled = envNotZero("DSV3_GRAD_WGMMA");
  return enabled && s.computeCapability() == 90 && mlaGradWgmmaFits(d) &&
         s.hasFunction(mlaGradQWgmmaName(d)) && s.hasFunction(mlaGradKvWgmmaName(d));
}

/// The attention backward on bf16 tensor cores (CudaSession::bf16Attention),
/// a sequence at a time: the forward again (mla_pack_kv, then
/// mla_prefill_wgmma on Hopper or mla_prefill_mma: o and each query's
/// log-sum-exp), q and dO packed to bf16 head-major rows, delta = dO . o,
/// then the query side (dq) and the key side (du: the nope key's and
/// value's gradients; dkp: the rope key's per head), on the warpgroup MMA
/// where useGradWgmma (and `wgmma`), else mma.sync.
/// Q [N, NH, DQ] (rotated), L [N, R + DR], U [N, NH, DN + DV], dO and O
/// [N, NH, DV]; dQ, dU, dKP as the fp32 kernels write them.
void mlaAttentionGradMma(CudaSession &s, const std::string &k, const MlaDims &d, CUdeviceptr Q,
                         CUdeviceptr L, CUdeviceptr U, CUdeviceptr dO, CUdeviceptr O,
                         CUdeviceptr dQ, CUdeviceptr dU, CUdeviceptr dKP, i64 B, i64 T,
                         float scale, bool wgmma, CUdeviceptr savedLse) {
  const i64 nh = d.nh, dq = d.dn + d.dr, dv = d.dv, UW = nh * (d.dn + d.dv), W = d.r + d.dr;
  const i64 DQP = mlaPad16(dq), DVP = mlaPad16(dv), Tp = (T + 63) / 64 * 64;
  // With the forward's saved state (O as given, savedLse [B, NH, T]) the
  // attention is not run again.
  const bool again = !savedLse;
  const bool forwardWg = again && wgmma && usePrefillWgmma(s, d),
             backwardWg = wgmma && useGradWgmma(s, d);
  auto bf16Buffer = [&](i64 n) { return s.workspace(size_t(n) * 2); };
  CUdeviceptr kb = bf16Buffer(nh * T * DQP), vb = bf16Buffer(nh * T * DVP);
  CUdeviceptr qb = bf16Buffer(nh * T * DQP), dob = bf16Buffer(nh * T * DVP);
  CUdeviceptr vt = forwardWg ? bf16Buffer(nh * dv * Tp) : 0;
  CUdeviceptr lseAgain = again ? s.workspace(size_t(nh * T) * 4) : 0,
              delta = s.workspace(size_t(nh * T) * 4);
  CUdeviceptr past = zeroPast(s);
  const i64 none = 0;
  const unsigned tiles = unsigned((T + 127) / 128);
  int oFloat = 0; // the backward reads o as floats
  auto at = [](CUdeviceptr p, i64 floats) { return p + CUdeviceptr(floats) * 4; };
  for (i64 b = 0; b < B; ++b) {
    CUdeviceptr q = at(Q, b * T * nh * dq), l = at(L, b * T * W), u = at(U, b * T * UW);
    CUdeviceptr o = at(O, b * T * nh * dv), g = at(dO, b * T * nh * dv);
    CUdeviceptr dqB = at(dQ, b * T * nh * dq), du = at(dU, b * T * UW),
                dkp = at(dKP, b * T * nh * d.dr);
    CUdeviceptr lse = again ? lseAgain : savedLse + CUdeviceptr(b * nh * T) * 4;
    s.countBf16ActivationLaunch();
    s.launch(mlaPackKvName(d), {unsigned(T), 1, 1}, {256, 1, 1}, 0, argv(u, l, T, kb, vb), k);
    if (!again) {
      // o and lse: the forward's.
    } else if (forwardWg) {
      s.launch(mlaPackVtName(d), {unsigned(Tp / 64), unsigned(nh), 1}, {256, 1, 1}, 0,
               argv(u, T, Tp, vt), k);
      s.launch(mlaPrefillWgmmaName(d), {tiles, unsigned(nh), 1}, {256, 1, 1},
               size_t(mlaPrefillWgmmaSmem(d)),
               argv(q, kb, vt, Tp, past, none, o, lse, T, T, scale, oFloat, none),
               k + " attention (forward again)");
    } else {
      s.launch(mlaPrefillMmaName(d), {tiles, unsigned(nh), 1}, {256, 1, 1},
               size_t(mlaPrefillMmaSmem(d)),
               argv(q, kb, vb, past, none, o, lse, T, T, scale, oFloat, none),
               k + " attention (forward again)");
    }
    s.launch(inst("mla_pack_heads", {0}), {unsigned(T), 1, 1}, {256, 1, 1}, 0,
             argv(q, T, nh, dq, DQP, qb), k);
    s.launch(inst("mla_pack_heads", {0}), {unsigned(T), 1, 1}, {256, 1, 1}, 0,
             argv(g, T, nh, dv, DVP, dob), k);
    s.launch(inst("attention_delta", {0}), {blocks(T * nh * 32, 256), 1, 1}, {256, 1, 1}, 0,
             argv(g, o, delta, T, nh, dv), k);
    const bool wg = backwardWg; // the same operands either way
    s.launch(wg ? mlaGradQWgmmaName(d) : mlaGradQMmaName(d), {tiles, unsigned(nh), 1},
             {256, 1, 1}, size_t(wg ? mlaGradQWgmmaSmem(d) : mlaGradQMmaSmem(d)),
             argv(qb, kb, vb, dob, lse, delta, dqB, T, scale), k + " attention (queries)");
    s.launch(wg ? mlaGradKvWgmmaName(d) : mlaGradKvMmaName(d), {tiles, unsigned(nh), 1},
             {256, 1, 1}, size_t(wg ? mlaGradKvWgmmaSmem(d) : mlaGradKvMmaSmem(d)),
             argv(qb, kb, vb, dob, lse, delta, du, dkp, T, scale), k + " attention (keys)");
  }
}

namespace {

/// C[M, N] (+)= A[M, K] B[K, N].
void gemmT(CudaSession &s, const std::string &what, i64 M, i64 N, i64 K, Mat A, Mat B,
           CUdeviceptr C, i64 ldc, bool accumulate) {
  GemmArgs g = gemmArgs(M, N, K, A, B, C, ldc);
  g.accumulate = accumulate;
  stridedGemm(s, what, g);
}

/// dw (+)= column sums of x [rows, cols] (bias gradients).
void colSum(CudaSession &s, const std::string &what, CUdeviceptr x, i64 rows, i64 cols,
            i64 ldx, CUdeviceptr y) {
  if (!y)
    return;
  s.launch(inst("col_sum", {0}), {blocks(cols, 128), 1, 1}, {128, 1, 1}, 0,
           argv(x, rows, cols, ldx, y), what);
}

/// RMSNorm backward of `rows` rows of width n: dx += ..., dw += ...; the x
/// (and dx) row of gradient row r is (r / rowsPer) xBatch + r % rowsPer +
/// xShift, rows ldx apart; dy rows ldy apart.
void rmsGrad(CudaSession &s, const std::string &what, CUdeviceptr x, i64 ldx, CUdeviceptr w,
             CUdeviceptr dy, i64 ldy, CUdeviceptr dx, CUdeviceptr dw, i64 rows, i64 n,
             float eps, i64 rowsPer = 0, i64 xBatch = 0, i64 xShift = 0) {
  if (rows <= 0 || (!dx && !dw))
    return;
  if (!rowsPer)
    rowsPer = rows;
  CUdeviceptr inv = s.workspace(size_t(rows) * 4);
  s.launch(inst("rms_norm_grad", {0}), {unsigned(rows), 1, 1}, {256, 1, 1}, 0,
           argv(x, ldx, w, dy, ldy, dx, inv, rows, n, rowsPer, xBatch, xShift, eps), what);
  if (dw) {
    // Chunks of 256 rows (at most 256 chunks), summed in order by col_sum.
    i64 chunk = std::max<i64>(256, (rows + 255) / 256), chunks = (rows + chunk - 1) / chunk;
    CUdeviceptr part = s.workspace(size_t(chunks * n) * 4);
    s.launch(inst("rms_norm_grad_w", {0}), {blocks(n, 128), unsigned(chunks), 1}, {128, 1, 1},
             0, argv(x, ldx, dy, ldy, inv, part, rows, n, rowsPer, xBatch, xShift, chunk), what);
    colSum(s, what, part, chunks, n, n, dw);
  }
}

/// Whether launchers store gradients they compute in full (Vjp's
/// `written`) instead of summing them onto zeros (DSV3_GRAD_STORE=0).
bool gradStores() {
  static const bool on = envNotZero("DSV3_GRAD_STORE");
  return on;
}

/// The primals, cotangents and (zeroed) gradient outputs of a vjp launch.
/// `written`: operands (bit i: operand i) whose gradient the launcher
/// stores in full with one product (C = A B, not C += A B), left unzeroed:
/// zeroing them wrote every byte once more and summing onto the zeros read
/// it back (training's expert weight gradients are 11 GB a MoE layer at
/// DeepSeek-V3's widths).
struct Vjp : VjpOperands<DevTensor> {
  Vjp(CudaSession &s, const std::string &k, const json &p, Ins &in, Ins &out,
      unsigned written = 0)
      : VjpOperands<DevTensor>(k, p, in, out) {
    for (size_t i = 0; i < grads.size(); ++i)
      if (DevTensor *t = grads[i]) {
        setShape(k, *t, primals[i]->shape);
        if (i >= 32 || !(written >> i & 1u))
          zero(s, t->ptr, t->numel(), k);
      }
    for (DevTensor *t : primals)
      if (t->bf16)
        fail("kernel {}: bf16 weights; GPU training takes fp32 weights (compile the "
             "training artifact without --dtype bf16)",
             k);
  }
  CUdeviceptr g(size_t operand) const {
    return operand < grads.size() && grads[operand] ? grads[operand]->ptr : 0;
  }
};

void embeddingVjp(CudaSession &s, const std::string &k, const json &p, Ins &in, Ins &out) {
  Vjp v(s, k, p, in, out);
  DevTensor &ids = *v.primals[0], &dy = *v.cts[0];
  i64 H = v.primals[1]->dim(1), V = v.primals[1]->dim(0), n = ids.numel();
  // Row ranges of the table: enough blocks to fill the GPU (a few per SM)
  // while each thread's walk over the ids stays short.
  const unsigned ranges = unsigned(std::clamp<i64>(1024 / blocks(H, 128), 1, std::min<i64>(V, 64)));
  if (CUdeviceptr dt = v.g(1))
    s.launch(inst("embedding_grad", {0}), {blocks(H, 128), ranges, 1}, {128, 1, 1}, 0,
             argv(ids.ptr, dy.ptr, dt, n, H, V), k);
}

void rmsNormVjp(CudaSession &s, const std::string &k, const json &p, Ins &in, Ins &out) {
  Vjp v(s, k, p, in, out);
  DevTensor &x = *v.primals[0], &w = *v.primals[1], &dy = *v.cts[0];
  i64 n = x.dim(-1);
  rmsGrad(s, k, x.ptr, n, w.ptr, dy.ptr, n, v.g(0), v.g(1), rowsOf(x), n,
          float(p.at("epsilon").get<double>()));
}

void linearVjp(CudaSession &s, const std::string &k, const json &p, Ins &in, Ins &out) {
  // Unless FP8: dx and dW each one full product (the bias's column sums
  // add onto zeros).
  const bool fp8 = p.contains("fp8_compute"), store = !fp8 && gradStores();
  Vjp v(s, k, p, in, out, store ? 3u : 0u);
  DevTensor &x = *v.primals[0], &w = *v.primals[1], &dy = *v.cts[0];
  i64 N = w.dim(0), K = w.dim(1), R = rowsOf(x);
  if (fp8) { // FP8 training: Dgrad and Wgrad in FP8, the bias in fp32
    if (CUdeviceptr dx = v.g(0)) {
      Fp8Weight wT;
      fp8MasterWeight(s, k, p, w, &wT);
      fp8Dgrad(s, k + " dx", dy.ptr, R, N, wT, dx, K, true);
    }
    if (CUdeviceptr dw = v.g(1))
      fp8Wgrad(s, k + " dW", dy.ptr, N, x.ptr, K, R, N, K, dw);
    colSum(s, k + " db", dy.ptr, R, N, N, v.g(2));
    return;
  }
  if (CUdeviceptr dx = v.g(0))
    gemmT(s, k + " dx", R, K, N, rowMajor(dy.ptr, N), rowMajor(w.ptr, K), dx, K, !store);
  if (CUdeviceptr dw = v.g(1))
    gemmT(s, k + " dW", N, K, R, transposed(dy.ptr, N), rowMajor(x.ptr, K), dw, K, !store);
  colSum(s, k + " db", dy.ptr, R, N, N, v.g(2));
}

void swigluVjp(CudaSession &s, const std::string &k, const json &p, Ins &in, Ins &out) {
  Vjp v(s, k, p, in, out);
  DevTensor &g = *v.primals[0], &u = *v.primals[1], &dy = *v.cts[0];
  i64 n = g.numel();
  CUdeviceptr dg = v.g(0), du = v.g(1);
  s.launch(inst("swiglu_grad", {0}), {blocks(n, 256), 1, 1}, {256, 1, 1}, 0,
           argv(g.ptr, u.ptr, dy.ptr, dg, du, n), k);
}

void ropeVjp(CudaSession &s, const std::string &k, const json &p, Ins &in, Ins &out) {
  Vjp v(s, k, p, in, out);
  DevTensor &x = *v.primals[0], &pos = *v.primals[1], &dy = *v.cts[0];
  CUdeviceptr dx = v.g(0);
  if (!dx)
    return;
  int64_t D = p.at("rope").at("dim").get<int64_t>();
  i64 tokens = x.dim(0) * x.dim(1), per = x.numel() / (tokens * D), T = x.dim(1);
  i64 ldRow = per * D, ldVec = D, vectors = tokens * per;
  float scale;
  CUdeviceptr f = invFreq(s, k, p.at("rope"), scale);
  s.launch(inst("rope_transpose", {D, p.at("rope").at("interleaved").get<bool>() ? 1 : 0}),
           {blocks(vectors, 128), 1, 1}, {128, 1, 1}, 0,
           argv(dy.ptr, dx, vectors, per, ldRow, ldVec, pos.ptr, T, f, scale), k);
}

void crossEntropyVjp(CudaSession &s, const std::string &k, const json &p, Ins &in,
                     Ins &out) {
  Vjp v(s, k, p, in, out);
  DevTensor &logits = *v.primals[0], &labels = *v.primals[1], &dloss = *v.cts[0];
  CUdeviceptr dl = v.g(0);
  if (!dl)
    return;
  i64 B = logits.dim(0), Rw = logits.dim(1), V = logits.dim(2), T = labels.dim(1);
  i64 shift = p.at("shift").get<int64_t>(), ignore = p.at("ignore_index").get<int64_t>();
  float scale = float(p.at("scale").get<double>());
  CUdeviceptr count = s.workspace(4);
  s.launch(inst("ce_count", {0}), {1, 1, 1}, {1024, 1, 1}, 0,
           argv(labels.ptr, B, Rw, T, shift, ignore, count), k);
  i64 r0 = 0;
  s.launch(inst("cross_entropy_grad", {0}), {unsigned(B * Rw), 1, 1}, {256, 1, 1}, 0,
           argv(logits.ptr, labels.ptr, dloss.ptr, count, dl, B, Rw, T, V, shift, ignore,
                scale, r0),
           k);
}

/// dsv3.lm_head_cross_entropy's gradient, per chunk of rows (the
/// forward's): the chunk's logits again (the forward's GEMM), their
/// gradient (cross_entropy_grad at the chunk's first row), then the hidden
/// rows' gradient dlogits W and the weight's += dlogitsᵀ h, as lm_head's
/// vjp computes them for all rows at once.
void lmHeadCrossEntropyVjp(CudaSession &s, const std::string &k, const json &p, Ins &in,
                           Ins &out) {
  Vjp v(s, k, p, in, out);
  DevTensor &h = *v.primals[0], &w = *v.primals[1], &labels = *v.primals[2];
  DevTensor &dloss = *v.cts[0];
  CUdeviceptr dh = v.g(0), dw = v.g(1);
  if (!dh && !dw)
    return;
  i64 B = h.dim(0), Rw = h.dim(1), T = labels.dim(1), V = w.dim(0), H = w.dim(1);
  i64 shift = p.at("shift").get<int64_t>(), ignore = p.at("ignore_index").get<int64_t>();
  float scale = float(p.at("scale").get<double>());
  const i64 n = B * Rw, chunk = lossChunkRows(n, V);
  CUdeviceptr count = s.workspace(4);
  s.launch(inst("ce_count", {0}), {1, 1, 1}, {1024, 1, 1}, 0,
           argv(labels.ptr, B, Rw, T, shift, ignore, count), k);
  CUdeviceptr logits = s.workspace(size_t(chunk * V) * 4);
  CUdeviceptr dl = s.workspace(size_t(chunk * V) * 4);
  const CudaSession::WorkspaceMark mark = s.workspaceMark();
  for (i64 r0 = 0; r0 < n; r0 += chunk) {
    const i64 rows = std::min(chunk, n - r0);
    const CUdeviceptr hc = h.ptr + CUdeviceptr(r0 * H) * 4;
    gemm(s, k + " logits", hc, H, w.ptr, 0, logits, rows, V, H, w.bf16);
    s.launch(inst("cross_entropy_grad", {0}), {unsigned(rows), 1, 1}, {256, 1, 1}, 0,
             argv(logits, labels.ptr, dloss.ptr, count, dl, B, Rw, T, V, shift, ignore,
                  scale, r0),
             k);
    if (dh)
      gemmT(s, k + " dh", rows, H, V, rowMajor(dl, V), rowMajor(w.ptr, H),
            dh + CUdeviceptr(r0 * H) * 4, H, true);
    if (dw)
      gemmT(s, k + " dW", V, H, rows, transposed(dl, V), rowMajor(hc, H), dw, H, true);
    s.rewindWorkspace(mark); // the GEMMs' bf16 operands
  }
}

void mtpVjp(CudaSession &s, const std::string &k, const json &p, Ins &in, Ins &out) {
  Vjp v(s, k, p, in, out);
  DevTensor &h = *v.primals[0], &emb = *v.primals[1], &enorm = *v.primals[2];
  DevTensor &hnorm = *v.primals[3], &eh = *v.primals[4], &dy = *v.cts[0];
  i64 depth = p.at("depth").get<int64_t>(), B = emb.dim(0), T = emb.dim(1), H = emb.dim(-1);
  i64 rows = T - depth, hRows = h.dim(1), n = B * rows;
  float eps = float(p.at("epsilon").get<double>());
  CUdeviceptr cat = s.workspace(size_t(n * 2 * H) * 4), dcat = s.workspace(size_t(n * 2 * H) * 4);
  s.launch(instW("mtp_concat", {H}, false), {unsigned(n), 1, 1}, {128, 1, 1}, 0,
           argv(h.ptr, hRows, emb.ptr, T, enorm.ptr, hnorm.ptr, cat, B, rows, depth, eps), k);
  gemmT(s, k + " dcat", n, 2 * H, H, rowMajor(dy.ptr, H), rowMajor(eh.ptr, 2 * H), dcat,
        2 * H, false);
  if (CUdeviceptr deh = v.g(4))
    gemmT(s, k + " deh_proj", H, 2 * H, n, transposed(dy.ptr, H), rowMajor(cat, 2 * H), deh,
          2 * H, true);
  rmsGrad(s, k + " enorm", emb.ptr, H, enorm.ptr, dcat, 2 * H, v.g(1), v.g(2), n, H, eps,
          rows, T, depth);
  rmsGrad(s, k + " hnorm", h.ptr, H, hnorm.ptr, dcat + CUdeviceptr(H) * 4, 2 * H, v.g(0),
          v.g(3), n, H, eps, rows, hRows, 0);
}

/// x [n, H] -> logits [n, E] = x gate^T (workspace).
CUdeviceptr routerLogits(CudaSession &s, const std::string &k, DevTensor &x, DevTensor &gate,
                         i64 n) {
  i64 E = gate.dim(0), H = gate.dim(1);
  CUdeviceptr logits = s.workspace(size_t(n * E) * 4);
  gemm(s, k + " gate", x.ptr, H, gate.ptr, 0, logits, n, E, H, false);
  return logits;
}

/// dx += dlogit gate, dgate += dlogit^T x.
void routerBackward(CudaSession &s, const std::string &k, CUdeviceptr dlogit, DevTensor &x,
                    DevTensor &gate, i64 n, CUdeviceptr dx, CUdeviceptr dgate) {
  i64 E = gate.dim(0), H = gate.dim(1);
  if (dx)
    gemmT(s, k + " dx", n, H, E, rowMajor(dlogit, E), rowMajor(gate.ptr, H), dx, H, true);
  if (dgate)
    gemmT(s, k + " dgate", E, H, n, transposed(dlogit, E), rowMajor(x.ptr, H), dgate, H,
          true);
}

void moeRouteVjp(CudaSession &s, const std::string &k, const json &p, Ins &in, Ins &out) {
  Vjp v(s, k, p, in, out);
  DevTensor &x = *v.primals[0], &gate = *v.primals[1], &dw = *v.cts[0];
  CUdeviceptr bias = v.primals.size() > 2 ? v.primals[2]->ptr : 0;
  i64 E = gate.dim(0), n = x.dim(0) * x.dim(1), K = p.at("num_experts_per_tok").get<int64_t>();
  float scaling = float(p.at("routed_scaling_factor").get<double>());
  // The selection of the forward (same kernel, same order of the experts).
  CUdeviceptr logits = routerLogits(s, k, x, gate, n);
  CUdeviceptr idx = s.workspace(size_t(n * K) * 8), wts = s.workspace(size_t(n * K) * 4);
  s.launch(routeName(p, E), {unsigned(n), 1, 1}, {128, 1, 1}, 0,
           argv(logits, bias, idx, wts, n, scaling), k);
  CUdeviceptr dlogit = s.workspace(size_t(n * E) * 4);
  int sigmoid = scoringCode(p) == 0 ? 1 : 0;
  int norm = p.contains("norm_topk_prob") && p.at("norm_topk_prob").is_boolean() &&
             p.at("norm_topk_prob").get<bool>();
  s.launch(inst("route_grad", {0}), {unsigned(n), 1, 1}, {128, 1, 1}, size_t(2 * E) * 4,
           argv(logits, idx, dw.ptr, dlogit, n, E, K, sigmoid, norm, scaling), k);
  routerBackward(s, k, dlogit, x, gate, n, v.g(0), v.g(1));
}

/// The balance loss's per-token scores and per-group statistics.
struct BalanceStats {
  CUdeviceptr logits, score, sum, f, P;
  i64 n, per, groups, E;
  int sigmoid;
};
BalanceStats balanceStats(CudaSession &s, const std::string &k, const json &p, DevTensor &x,
                          DevTensor &gate, DevTensor &idx) {
  BalanceStats b;
  i64 B = x.dim(0), T = x.dim(1), K = idx.dim(2);
  b.E = gate.dim(0);
  b.n = B * T;
  bool seqWise = p.at("sequence_wise").get<bool>();
  b.groups = seqWise ? B : 1;
  b.per = seqWise ? T : B * T;
  b.sigmoid = p.at("scoring_func").get<std::string>() == "sigmoid" ? 1 : 0;
  b.logits = routerLogits(s, k, x, gate, b.n);
  b.score = s.workspace(size_t(b.n * b.E) * 4);
  b.sum = s.workspace(size_t(b.n) * 4);
  b.f = s.workspace(size_t(b.groups * b.E) * 4);
  b.P = s.workspace(size_t(b.groups * b.E) * 4);
  s.launch(inst("balance_scores", {0}), {unsigned(b.n), 1, 1}, {128, 1, 1}, 0,
           argv(b.logits, b.score, b.sum, b.n, b.E, b.sigmoid), k);
  // 64 tokens a chunk, a thread an expert (up to 256 a block).
  const i64 chunk = 64, chunks = (b.per + chunk - 1) / chunk;
  const unsigned threads = unsigned(std::clamp<i64>((b.E + 31) / 32 * 32, 32, 256));
  CUdeviceptr part = s.workspace(size_t(b.groups * chunks * 2 * b.E) * 4);
  s.launch(inst("balance_stats_part", {0}), {unsigned(chunks), unsigned(b.groups), 1},
           {threads, 1, 1}, 0, argv(b.score, b.sum, idx.ptr, part, b.per, b.E, K, chunk), k);
  s.launch(inst("balance_stats", {0}), {unsigned(b.groups), 1, 1}, {threads, 1, 1}, 0,
           argv(part, chunks, b.f, b.P, b.per, b.E, K), k);
  return b;
}

void moeBalanceLoss(CudaSession &s, const std::string &k, const json &p, Ins &in, Ins &out) {
  setShape(k, *out[0], {});
  BalanceStats b = balanceStats(s, k, p, *in[0], *in[1], *in[2]);
  i64 n = b.groups * b.E;
  float factor = float(p.at("alpha").get<double>() / double(b.groups));
  s.launch(inst("balance_loss_sum", {0}), {1, 1, 1}, {1024, 1, 1}, 0,
           argv(b.f, b.P, n, factor, out[0]->ptr), k);
}

void moeBalanceLossVjp(CudaSession &s, const std::string &k, const json &p, Ins &in,
                       Ins &out) {
  Vjp v(s, k, p, in, out);
  DevTensor &x = *v.primals[0], &gate = *v.primals[1], &dloss = *v.cts[0];
  BalanceStats b = balanceStats(s, k, p, x, gate, *v.primals[2]);
  float factor = float(p.at("alpha").get<double>() / double(b.per * b.groups));
  CUdeviceptr dlogit = s.workspace(size_t(b.n * b.E) * 4);
  s.launch(inst("balance_grad", {0}), {unsigned(b.n), 1, 1}, {128, 1, 1}, 0,
           argv(b.score, b.sum, b.f, dloss.ptr, dlogit, b.n, b.per, b.E, b.sigmoid, factor),
           k);
  routerBackward(s, k, dlogit, x, gate, b.n, v.g(0), v.g(1));
}

void moeDispatchVjp(CudaSession &s, const std::string &k, const json &p, Ins &in,
                    Ins &out) {
  Vjp v(s, k, p, in, out);
  DevTensor &x = *v.primals[0], &idx = *v.primals[1], &drows = *v.cts[0];
  CUdeviceptr dx = v.g(0);
  if (!dx)
    return;
  int64_t E = p.at("num_experts").get<int64_t>();
  i64 H = x.dim(-1), K = idx.dim(-1), R = idx.numel(), n = R / K;
  // The forward permutation again (slots ordered by expert, stable).
  CUdeviceptr counts = s.workspace(size_t(E) * 8), slots = s.workspace(size_t(R) * 8);
  CUdeviceptr inverse = s.workspace(size_t(R) * 8);
  dispatchPlan(s, k, E, K, idx.ptr, counts, slots, R);
  s.launch(inst("invert_slots", {0}), {blocks(R, 256), 1, 1}, {256, 1, 1}, 0,
           argv(slots, inverse, R), k);
  s.launch(inst("dispatch_grad", {0}), {unsigned(n), 1, 1}, {128, 1, 1}, 0,
           argv(drows.ptr, inverse, dx, n, K, H), k);
}

void expertGroupedMatmulVjp(CudaSession &s, const std::string &k, const json &p, Ins &in,
                            Ins &out) {
  // Unless FP8: dW one full product over every expert (an expert without
  // rows stores zeros). dx stays zeroed: the grouped GEMM stores the
  // experts' rows only, and the planned rows may be more.
  const bool fp8 = p.contains("fp8_compute"), store = !fp8 && gradStores();
  Vjp v(s, k, p, in, out, store ? 2u : 0u);
  DevTensor &rows = *v.primals[0], &w = *v.primals[1], &counts = *v.primals[2];
  DevTensor &dy = *v.cts[0];
  i64 E = w.dim(0), N = w.dim(1), KD = w.dim(2), R = rows.dim(0);
  if (fp8) {
    // FP8 training: Dgrad as the grouped FP8 GEMM on the transposed
    // experts, Wgrad grouped the same way (each expert's 128-token tiles
    // start at its first row, as the host's do); without e4m3 tensor
    // cores, Wgrad per expert with the counts brought to the host.
    if (CUdeviceptr dx = v.g(0)) {
      Fp8Weight wT;
      fp8MasterWeight(s, k, p, w, &wT);
      fp8Dgrad(s, k + " dx", dy.ptr, R, N, wT, dx, KD, true, counts.ptr, E);
    }
    if (CUdeviceptr dw = v.g(1); dw && fp8WgradGroupedOn(s) &&
                                  fp8WgradGrouped(s, k + " dW", dy.ptr, rows.ptr, R, N, KD,
                                                  counts.ptr, E, dw))
      return;
    if (CUdeviceptr dw = v.g(1)) {
      std::vector<i64> n(static_cast<size_t>(E));
      auto &drv = s.driver();
      DSV3_CU(drv, streamSynchronize, k, s.stream());
      DSV3_CU(drv, memcpyDtoH, k + " expert counts", n.data(), counts.ptr, size_t(E) * 8);
      i64 r0 = 0;
      for (i64 e = 0; e < E; ++e) {
        if (n[size_t(e)] < 0 || r0 + n[size_t(e)] > R)
          fail("kernel {}: expert {} has {} rows after {} of {}", k, e, n[size_t(e)], r0, R);
        fp8Wgrad(s, k + " dW", dy.ptr + CUdeviceptr(r0 * N) * 4, N,
                 rows.ptr + CUdeviceptr(r0 * KD) * 4, KD, n[size_t(e)], N, KD,
                 dw + CUdeviceptr(e * N * KD) * 4);
        r0 += n[size_t(e)];
      }
    }
    return;
  }
  CUdeviceptr offsets = s.workspace(size_t(E + 1) * 8);
  s.launch(inst("exclusive_scan", {0}), {1, 1, 1}, {32, 1, 1}, 0,
           argv(counts.ptr, offsets, E), k);
  if (CUdeviceptr dx = v.g(0)) {
    // dx[r] = dy[r] W[e(r)]: rows grouped by expert (rows past the
    // experts' keep their zeros).
    GemmArgs g = gemmArgs(R, KD, N, rowMajor(dy.ptr, N), rowMajor(w.ptr, KD), dx, KD);
    g.mode = 1;
    g.accumulate = !store;
    g.sBb = N * KD;
    g.seg = offsets;
    g.segs = E;
    stridedGemm(s, k + " dx", g);
  }
  if (CUdeviceptr dw = v.g(1)) {
    // dW[e] = dy_e^T x_e over the expert's rows.
    GemmArgs g = gemmArgs(N, KD, R, transposed(dy.ptr, N), rowMajor(rows.ptr, KD), dw, KD);
    g.mode = 2;
    g.accumulate = !store;
    g.sCb = N * KD;
    g.batches = unsigned(E);
    g.seg = offsets;
    g.segs = E;
    stridedGemm(s, k + " dW", g);
  }
}

void moeCombineVjp(CudaSession &s, const std::string &k, const json &p, Ins &in,
                   Ins &out) {
  Vjp v(s, k, p, in, out);
  DevTensor &eo = *v.primals[0], &slots = *v.primals[1], &w = *v.primals[2];
  DevTensor &dy = *v.cts[0];
  i64 R = eo.dim(0), H = eo.dim(1), K = w.dim(-1);
  CUdeviceptr deo = v.g(0), dw = v.g(2);
  s.launch(inst("combine_grad", {0}), {unsigned(R), 1, 1}, {128, 1, 1}, 0,
           argv(eo.ptr, slots.ptr, w.ptr, dy.ptr, deo, dw, R, H, K), k);
}

/// MLA backward (SEMANTICS.md 3) by recomputation: the projections, latent
/// and attention of the forward are rebuilt, then the query and key sides
/// of the attention backward, then the projections' backward as GEMMs.
void latentAttentionVjp(CudaSession &s, const std::string &k, const json &p, Ins &in,
                        Ins &out) {
  Vjp v(s, k, p, in, out);
  DevTensor &x = *v.primals[0], &dy = *v.cts[0];
  MlaDims d = mlaDims(p, x.dim(-1));
  MlaWeights mw = mlaWeights(s, k, p, v.primals, 1);
  CUdeviceptr gw[10] = {0};
  for (int i = 0; i < 10; ++i)
    if (mw.operand[i] >= 0)
      gw[i] = v.g(size_t(mw.operand[i]));
  using S = MlaWeights;
  const CUdeviceptr *w = mw.w;
  CUdeviceptr dx = v.g(0);
  i64 B = x.dim(0), T = x.dim(1), N = B * T, H = d.H, nh = d.nh, dn = d.dn, dr = d.dr;
  i64 dv = d.dv, r = d.r, rq = d.rq, dq = dn + dr, RW = r + dr, UW = nh * (dn + dv);
  i64 NO = nh * dv, NQ = nh * dq;
  float eps = float(p.at("latent_norm_eps").get<double>());
  float softmaxScale = float(p.at("softmax_scale").get<double>());
  float scale;
  CUdeviceptr freq = invFreq(s, k, p.at("rope"), scale);
  int interleaved = p.at("rope").at("interleaved").get<bool>() ? 1 : 0;
  MlaProjections proj = mlaProject(s, k, d, mw, x.ptr, N, eps);
  MlaLatent lat = mlaLatent(s, k, p, d, mw, proj, B, T, eps);
  auto ws = [&](i64 n) { return s.workspace(size_t(n) * 4); };
  // save_for_backward: the forward's attention output and log-sum-exp are
  // the last two primals; the tensor-core backward reads them instead of
  // running the attention again (the fp32 one recomputes both itself).
  const bool mmaGrad = s.bf16Attention() && mlaPrefillMmaFits(d);
  CUdeviceptr savedO = 0, savedLse = 0;
  if (p.value("save_for_backward", false)) {
    if (v.primals.size() < 2)
      fail("kernel {}: save_for_backward without the saved output and log-sum-exp", k);
    DevTensor &so = *v.primals[v.primals.size() - 2], &sl = *v.primals.back();
    if (so.numel() != N * NO || sl.numel() != N * nh)
      fail("kernel {}: saved attention state of {} and {} elements for {} tokens of {} heads",
           k, so.numel(), sl.numel(), N, nh);
    if (mmaGrad)
      savedO = so.ptr, savedLse = sl.ptr;
  }
  CUdeviceptr dO = ws(N * NO), O = savedO ? savedO : ws(N * NO), dQ = ws(N * NQ);
  CUdeviceptr dU = ws(N * UW), dKP = ws(N * nh * dr), dL = ws(N * RW);
  CUdeviceptr buf = ws(N * RW);
  // A projection's input gradient y (+)= g [N, o] W [o, i] (rows ldy apart)
  // and weight gradient dW += g^T x: under fp8_compute (FP8 training) as
  // FP8 GEMMs (the projections' recomputation above read their weights
  // quantized too), a strided y through a buffer added in (y zeroed).
  const bool fp8 = p.contains("fp8_compute");
  auto dgrad = [&](int slot, const std::string &what, CUdeviceptr g, i64 o, i64 i,
                   CUdeviceptr y, i64 ldy, bool accumulate) {
    if (!fp8)
      return gemmT(s, what, N, i, o, rowMajor(g, o), rowMajor(w[slot], i), y, ldy, accumulate);
    Fp8Weight wT;
    fp8MasterWeight(s, what, p, *v.primals[size_t(mw.operand[slot])], &wT);
    if (ldy == i)
      return fp8Dgrad(s, what, g, N, o, wT, y, i, accumulate);
    CUdeviceptr part = ws(N * i);
    fp8Dgrad(s, what, g, N, o, wT, part, i, false);
    i64 one = 1;
    s.launch(inst("sum_items", {0}), {blocks(N * i, 128), 1, 1}, {128, 1, 1}, 0,
             argv(part, N, one, i, y, ldy), what);
  };
  auto wgrad = [&](int slot, const std::string &what, CUdeviceptr g, i64 ldg, i64 o,
                   CUdeviceptr xin, i64 ldx, i64 i) {
    if (!gw[slot])
      return;
    if (!fp8)
      return gemmT(s, what, o, i, N, transposed(g, ldg), rowMajor(xin, ldx), gw[slot], i, true);
    fp8Wgrad(s, what, g, ldg, xin, ldx, N, o, i, gw[slot]);
  };
  // Attention: dO = dy W_o, then the query side (o, dq, lse, delta) and the
  // key side (du, per-head rope-key gradients).
  dgrad(S::O, k + " dO", dy.ptr, H, NO, dO, NO, false);
  if (mmaGrad)
    mlaAttentionGradMma(s, k, d, proj.Q, lat.L, lat.U, dO, O, dQ, dU, dKP, B, T, softmaxScale,
                        true, savedLse);
  else
    mlaAttentionGradFp32(s, k, d, proj.Q, lat.L, lat.U, dO, O, dQ, dU, dKP, B, T,
                         softmaxScale);
  wgrad(S::O, k + " dW_o", dy.ptr, H, H, O, NO, NO);
  colSum(s, k + " db_o", dy.ptr, N, H, H, gw[S::OBias]);
  // Latent: dL = [dU W_kvb ; sum over heads of the rope keys' gradients].
  zero(s, dL, N * RW, k);
  dgrad(S::KVB, k + " dlatent", dU, UW, r, dL, RW, false);
  s.launch(inst("sum_items", {0}), {blocks(N * dr, 128), 1, 1}, {128, 1, 1}, 0,
           argv(dKP, N, nh, dr, dL + CUdeviceptr(r) * 4, RW), k);
  wgrad(S::KVB, k + " dW_kvb", dU, UW, UW, lat.L, RW, r);
  // kv_a output a = [c ; k_pe]: the latent norm's backward and the rope's
  // transpose into buf, then kv_a_proj's.
  zero(s, buf, N * RW, k);
  rmsGrad(s, k + " kv_a_layernorm", proj.A, RW, w[S::KVANorm], dL, RW, buf, gw[S::KVANorm],
          N, r, eps);
  i64 one = 1, none = 0;
  CUdeviceptr noPos = 0, dLp = dL + CUdeviceptr(r) * 4, bufP = buf + CUdeviceptr(r) * 4;
  std::string ropeT = inst("rope_transpose", {dr, interleaved});
  s.launch(ropeT, {blocks(N, 128), 1, 1}, {128, 1, 1}, 0,
           argv(dLp, bufP, N, one, RW, none, noPos, T, freq, scale), k + " rope key");
  if (dx)
    dgrad(S::KVA, k + " dx (kv_a)", buf, RW, H, dx, H, true);
  wgrad(S::KVA, k + " dW_kva", buf, RW, RW, x.ptr, H, H);
  colSum(s, k + " db_kva", buf, N, RW, RW, gw[S::KVABias]);
  // Queries: the rope transpose on each head's rope part, then q_b / q_a.
  CUdeviceptr dQp = dQ + CUdeviceptr(dn) * 4;
  i64 vectors = N * nh;
  s.launch(ropeT, {blocks(vectors, 128), 1, 1}, {128, 1, 1}, 0,
           argv(dQp, dQp, vectors, nh, NQ, dq, noPos, T, freq, scale), k + " rope query");
  if (rq) {
    CUdeviceptr dQN = ws(N * rq), dQA = ws(N * rq);
    dgrad(S::Q, k + " dq_b", dQ, NQ, rq, dQN, rq, false);
    wgrad(S::Q, k + " dW_qb", dQ, NQ, NQ, proj.QN, rq, rq);
    zero(s, dQA, N * rq, k);
    rmsGrad(s, k + " q_a_layernorm", proj.QA, rq, w[S::QANorm], dQN, rq, dQA,
            gw[S::QANorm], N, rq, eps);
    if (dx)
      dgrad(S::QA, k + " dx (q_a)", dQA, rq, H, dx, H, true);
    wgrad(S::QA, k + " dW_qa", dQA, rq, rq, x.ptr, H, H);
    colSum(s, k + " db_qa", dQA, N, rq, rq, gw[S::QABias]);
  } else {
    if (dx)
      dgrad(S::Q, k + " dx (q)", dQ, NQ, H, dx, H, true);
    wgrad(S::Q, k + " dW_q", dQ, NQ, NQ, x.ptr, H, H);
  }
}

/// sqrt of the sum of squares of every input (the global gradient norm),
/// in a fixed order: a fixed grid per tensor, then one block.
void globalNorm(CudaSession &s, const std::string &k, const json &p, Ins &in, Ins &out) {
  // The expert-parallel forms: `squared` (no root) and `plus_squares` (a
  // scalar sum of squares from the other ranks, the last input).
  bool squared = p.value("squared", false);
  size_t tensors = in.size();
  bool plus = false;
  if (p.contains("operandSegmentSizes") && p["operandSegmentSizes"].size() == 2) {
    tensors = p["operandSegmentSizes"][0].get<size_t>();
    plus = p["operandSegmentSizes"][1].get<int>() == 1;
  }
  if (squared || plus) {
    // Partial sums of squares on the GPU, finished on the host (once a
    // step; the exchanges around it synchronise anyway).
    setShape(k, *out[0], {});
    std::vector<i64> parts;
    i64 total = 0;
    for (size_t i = 0; i < tensors; ++i) {
      parts.push_back(std::max<i64>(1, std::min<i64>((in[i]->numel() + 1023) / 1024, 64)));
      total += parts.back();
    }
    CUdeviceptr partial = s.workspace(size_t(std::max<i64>(total, 1)) * 4);
    i64 at = 0;
    for (size_t i = 0; i < tensors; ++i) {
      s.launch(inst("sum_squares", {0}), {unsigned(parts[i]), 1, 1}, {256, 1, 1}, 0,
               argv(in[i]->ptr, i64(in[i]->numel()), partial + CUdeviceptr(at) * 4), k);
      at += parts[i];
    }
    std::vector<float> host(static_cast<size_t>(total));
    float extra = 0;
    DSV3_CU(s.driver(), streamSynchronize, k, s.stream());
    if (total)
      DSV3_CU(s.driver(), memcpyDtoH, k, host.data(), partial, host.size() * 4);
    if (plus)
      DSV3_CU(s.driver(), memcpyDtoH, k, &extra, in[tensors]->ptr, 4);
    double ss = plus ? double(extra) : 0.0;
    for (float v : host)
      ss += double(v);
    float result = float(squared ? ss : std::sqrt(ss));
    s.upload(out[0]->ptr, &result, 4, k);
    return;
  }
  setShape(k, *out[0], {});
  std::vector<i64> grid;
  i64 total = 0;
  for (DevTensor *t : in) {
    // Up to 1024 blocks a tensor (64 left the largest at ~0.6 TB/s); fixed
    // by the size, so the sum's order, and the norm's bits, are too.
    grid.push_back(std::max<i64>(1, std::min<i64>((t->numel() + 1023) / 1024, 1024)));
    total += grid.back();
  }
  CUdeviceptr partial = s.workspace(size_t(total) * 4);
  i64 at = 0;
  for (size_t i = 0; i < in.size(); ++i) {
    i64 n = in[i]->numel();
    CUdeviceptr dst = partial + CUdeviceptr(at) * 4;
    s.launch(inst("sum_squares", {0}), {unsigned(grid[i]), 1, 1}, {256, 1, 1}, 0,
             argv(in[i]->ptr, n, dst), k);
    at += grid[i];
  }
  s.launch(inst("sqrt_sum", {0}), {1, 1, 1}, {1024, 1, 1}, 0,
           argv(partial, total, out[0]->ptr), k);
}

void adamw(CudaSession &s, const std::string &k, const json &p, Ins &in, Ins &) {
  DevTensor &param = *in[0], &grad = *in[1], &m = *in[2], &v = *in[3];
  int64_t step = in[4]->scalar;
  if (step < 1)
    fail("kernel {}: optimizer step must be >= 1, got {}", k, step);
  const bool bf16 = p.value("moments_bf16", false);
  if (param.bf16)
    fail("kernel {}: GPU training keeps fp32 master weights", k);
  if (m.bf16 != bf16 || v.bf16 != bf16)
    fail("kernel {}: its moments are stored as {} and {}, the launch expects {}", k,
         m.bf16 ? "bf16" : "fp32", v.bf16 ? "bf16" : "fp32", bf16 ? "bf16" : "fp32");
  if (grad.numel() != param.numel())
    fail("kernel {}: gradient has {} elements, the parameter {}", k, grad.numel(),
         param.numel());
  double b1 = p.at("beta1").get<double>(), b2 = p.at("beta2").get<double>();
  float fb1 = float(b1), fb2 = float(b2), eps = float(p.at("eps").get<double>());
  float wd = p.value("decay", false) ? float(p.at("weight_decay").get<double>()) : 0.f;
  float clip = float(p.at("max_grad_norm").get<double>());
  float c1 = float(1 - std::pow(b1, double(step))), c2 = float(1 - std::pow(b2, double(step)));
  i64 n = param.numel();
  unsigned grid = unsigned(std::min<i64>((n + 255) / 256, i64(s.multiprocessors()) * 8));
  s.invalidateFp8MasterCopies(); // a later reader quantizes the updated weight
  s.launch(inst("adamw_update", {bf16 ? 1 : 0}), {std::max(grid, 1u), 1, 1}, {256, 1, 1}, 0,
           argv(param.ptr, grad.ptr, m.ptr, v.ptr, n, in[5]->ptr, in[6]->ptr, fb1, fb2, eps,
                wd, clip, c1, c2),
           k);
}

void expertBiasUpdate(CudaSession &s, const std::string &k, const json &p, Ins &in, Ins &) {
  DevTensor &bias = *in[0], &counts = *in[1];
  i64 E = counts.numel();
  if (bias.numel() != E)
    fail("kernel {}: {} biases for {} expert counts", k, bias.numel(), E);
  float rate = float(p.at("rate").get<double>());
  s.launch(inst("expert_bias_update", {0}), {1, 1, 1}, {256, 1, 1}, 0,
           argv(bias.ptr, counts.ptr, E, rate), k);
}

} // namespace

void addGradLaunchers(std::map<std::string, Launcher> &t) {
  t["embedding_vjp"] = embeddingVjp;
  t["rms_norm_vjp"] = rmsNormVjp;
  t["linear_vjp"] = linearVjp;
  t["lm_head_vjp"] = linearVjp;
  t["swiglu_vjp"] = swigluVjp;
  t["rope_vjp"] = ropeVjp;
  t["cross_entropy_vjp"] = crossEntropyVjp;
  t["lm_head_cross_entropy_vjp"] = lmHeadCrossEntropyVjp;
  t["mtp_vjp"] = mtpVjp;
  t["moe_route_vjp"] = moeRouteVjp;
  t["moe_dispatch_vjp"] = moeDispatchVjp;
  t["expert_grouped_matmul_vjp"] = expertGroupedMatmulVjp;
  t["moe_combine_vjp"] = moeCombineVjp;
  t["latent_attention_vjp"] = latentAttentionVjp;
  t["moe_balance_loss"] = moeBalanceLoss;
  t["moe_balance_loss_vjp"] = moeBalanceLossVjp;
  t["global_norm"] = globalNorm;
  t["adamw"] = adamw;
  t["expert_bias_update"] = expertBiasUpdate;
}

} // namespace dsv3rt::cuda
