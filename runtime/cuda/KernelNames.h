//===- KernelNames.h - the CUDA template instances a launch needs --*- C++ -*-===//
//
// Shared by the compiler (which asks NVRTC to instantiate these templates,
// specialised with the model's widths) and the runtime (whose launchers
// look the same names up in the compiled module). Header-only and free of
// MLIR, so both sides compute exactly the same strings from a launch's
// kernel name, its parameters and its inputs' static shapes.
//
//===----------------------------------------------------------------------===//
#ifndef DSV3_RUNTIME_CUDA_KERNELNAMES_H
#define DSV3_RUNTIME_CUDA_KERNELNAMES_H

#include "codegen/kernels/dsv3_kernel_layout.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

namespace dsv3rt::cuda {

inline std::string inst(const std::string &tpl, std::initializer_list<int64_t> args) {
  std::string s = "dsv3::" + tpl + "<";
  bool first = true;
  for (int64_t a : args) {
    s += (first ? "" : ", ") + std::to_string(a);
    first = false;
  }
  return s + ">";
}

/// An instance whose last template argument is the weights' storage type.
inline std::string instW(const std::string &tpl, std::initializer_list<int64_t> args,
                         bool bf16) {
  std::string s = inst(tpl, args);
  s.pop_back();
  return s + (args.size() ? ", " : "") + (bf16 ? "unsigned short" : "float") + ">";
}
/// Whether a manifest dtype is stored as bf16 on the GPU.
inline bool isBf16(const std::string &dtype) { return dtype == "bf16"; }

/// The most rows the few-row GEMM schedules (`linear_rows`,
/// `gated_linear_rows`: decode) take; more rows use the tiled kernels
/// (tensor cores, `linear_mma`, for bf16 weights).
constexpr int64_t kFewRows = 8;
/// The fewest rows a plain bf16 GEMM (no bias) takes cuBLASLt with
/// (prefill, training, and decode from batch 16: at 128 rows o_proj took
/// 70 us against gemm_bf16_tma's 160, kv_a 13 against 75, whose one row
/// tile left most multiprocessors idle; decode b32 10.54 -> 9.80 ms, b128
/// 18.83 -> 17.91, H200). Fewer rows keep dsv3's few-row kernels.
constexpr int64_t kCublasRows = 16;
inline std::string linearName(int64_t n, int64_t k, bool bf16) {
  return instW("linear", {n, k}, bf16);
}
inline std::string linearRowsName(int64_t n, int64_t k, bool bf16) {
  return instW("linear_rows", {n, k, kFewRows}, bf16);
}
inline std::string gatedLinearName(int64_t n, int64_t k, bool bf16) {
  return instW("gated_linear", {n, k}, bf16);
}
inline std::string gatedLinearRowsName(int64_t n, int64_t k, bool bf16) {
  return instW("gated_linear_rows", {n, k, kFewRows}, bf16);
}
/// linear_rows on tensor cores (bf16 weights, K a multiple of 8).
inline bool linearRowsMmaFits(int64_t k) { return k % 8 == 0; }
inline std::string linearRowsMmaName(int64_t n, int64_t k) {
  return inst("linear_rows_mma", {n, k});
}
/// The tensor-core schedule (bf16 weights, more than kFewRows rows).
inline std::string linearMmaName(int64_t n, int64_t k) { return inst("linear_mma", {n, k}); }
inline std::string splitkReduceName(int64_t n) { return inst("splitk_reduce", {n}); }
inline std::string gatedLinearMmaName(int64_t n, int64_t k) {
  return inst("gated_linear_mma", {n, k});
}
/// The strided GEMMs of runtime extents (dsv3_train_kernels.cuh): C (+)=
/// A B with any operand transposes; mode 1/2 group rows / K by expert.
/// gemm_mma runs on tensor cores at fp32 accuracy (split bf16 operands),
/// gemm_any on CUDA cores (the reference, DSV3_SIMT_GEMM=1).
inline std::string gemmMmaName(int mode, bool accumulate) {
  return inst("gemm_mma", {mode, accumulate ? 1 : 0});
}
inline std::string gemmAnyName(int mode, bool accumulate) {
  return inst("gemm_any", {mode, accumulate ? 1 : 0});
}
/// The bf16-activation GEMM of bf16 models (prefill, large batches): the
/// conversion and the kernel (plain or gated; shapes are runtime extents).
inline std::string bf16TcName(bool gated) {
  return gated ? "dsv3::gemm_bf16_tc<1>" : "dsv3::gemm_bf16_tc<0>";
}
/// to_bf16: a pair of elements a thread, or (wide) eight.
inline std::string toBf16Name(bool wide = false) {
  return wide ? "dsv3::to_bf16<1>" : "dsv3::to_bf16<0>";
}
/// to_bf16_transposed on 64 x 64 tiles.
inline std::string toBf16TransposedName() { return "dsv3::to_bf16_transposed<64>"; }
/// Columns of strided rows copied (the absorbed decode's rope query).
inline std::string copyColumnsName() { return "dsv3::copy_columns<0>"; }
/// Hopper's form (wide: 256 weight rows a tile).
inline std::string bf16WgmmaName(bool gated, bool wide) {
  return inst("gemm_bf16_wgmma", {gated ? 1 : 0, wide ? 1 : 0});
}
/// Hopper's wide form fed by TMA, warp-specialized.
/// gemm_bf16_tma's form: plain, gated, or gated storing bf16 (bf16Out).
inline std::string bf16TmaName(bool gated, bool bf16Out = false) {
  return inst("gemm_bf16_tma", {gated ? (bf16Out ? 3 : 1) : 0});
}
inline void addBf16Tc(std::vector<std::string> &out, bool gated) {
  out.push_back(toBf16Name());
  out.push_back(toBf16Name(true));
  out.push_back(bf16TcName(gated));
  out.push_back(bf16WgmmaName(gated, false));
  out.push_back(bf16WgmmaName(gated, true));
  out.push_back(bf16TmaName(gated));
  if (gated)
    out.push_back(bf16TmaName(true, true));
}
/// Every schedule of one GEMM shape, appended to `out`: fp32 weights take
/// gemm_mma past the few-row schedule.
inline void addLinear(std::vector<std::string> &out, int64_t n, int64_t k, bool bf16) {
  out.push_back(linearName(n, k, bf16));
  out.push_back(linearRowsName(n, k, bf16));
  if (bf16) {
    if (linearRowsMmaFits(k))
      out.push_back(linearRowsMmaName(n, k));
    out.push_back(linearMmaName(n, k));
    addBf16Tc(out, false);
    out.push_back(splitkReduceName(n));
  } else {
    out.push_back(gemmMmaName(0, false));
  }
}
/// The expert GEMMs on tensor cores (bf16 weights, many rows per expert).
inline std::string expertMmaName(int64_t n, int64_t kd, int64_t e, bool gated) {
  return inst("expert_gmm_mma", {n, kd, e, gated ? 1 : 0});
}
/// The expert GEMMs at a few rows an expert on tensor cores (bf16 weights,
/// KD a multiple of 8): the weights as the MMA's M operand.
inline bool expertRowsMmaFits(int64_t kd) { return kd % 8 == 0; }
inline std::string expertRowsMmaName(int64_t n, int64_t kd, int64_t e, bool gated) {
  return inst(gated ? "expert_gated_rows_split_mma" : "expert_rows_split_mma", {n, kd, e});
}
/// The same before the warps of a block split K (artifacts compiled before
/// it still name these; the runtime launches them there).
inline std::string expertRowsMmaUnsplitName(int64_t n, int64_t kd, int64_t e, bool gated) {
  return inst(gated ? "expert_gated_rows_mma" : "expert_rows_mma", {n, kd, e});
}
/// The random-weight fill (dsv3-run --random-weights), in every artifact.
inline std::string fillNormalName(bool bf16) {
  return bf16 ? "dsv3::fill_normal<unsigned short>" : "dsv3::fill_normal<float>";
}
inline std::string rmsNormName(int64_t n, bool bf16) { return instW("rms_norm", {n}, bf16); }
/// rms_norm for a few rows (registers hold a row's 256-thread share).
inline bool rmsNormRowsFits(int64_t n) { return n <= 256 * 32; }
inline std::string rmsNormRowsName(int64_t n, bool bf16) {
  return instW("rms_norm_rows", {n}, bf16);
}
/// rms_norm and, where it fits, its few-row form.
inline void addRmsNorm(std::vector<std::string> &out, int64_t n, bool bf16) {
  out.push_back(rmsNormName(n, bf16));
  if (rmsNormRowsFits(n))
    out.push_back(rmsNormRowsName(n, bf16));
  // Stored as its reader's GEMM reads the rows: bf16 (1) or e4m3 (2).
  out.push_back(instW("rms_norm_stored", {1}, bf16));
  out.push_back(instW("rms_norm_stored", {2}, bf16));
}
inline std::string embeddingName(int64_t h, bool bf16) {
  return instW("embedding", {h}, bf16);
}
inline std::string elementwiseName(const std::string &op) { return inst(op, {0}); }
inline std::string ropeName(int64_t dim, bool interleaved) {
  return inst("rope", {dim, interleaved ? 1 : 0});
}

/// MLA widths: (r, dr, nh, dn, dv); cf: how the decode's latent cache keeps
/// a row (dsv3c --kv-cache: 0 fp32, 1 bf16, 2 fp8; DSV3_CACHE_ROW_BYTES).
struct MlaDims {
  int64_t r, dr, nh, dn, dv, rq, H;
  int64_t cf = 0;
};
/// The cache form of `cache_storage` (f32, bf16, fp8), -1 for another.
inline int64_t cacheFormOf(const std::string &storage) {
  return storage == "f32" ? 0 : storage == "bf16" ? 1 : storage == "fp8" ? 2 : -1;
}
inline int64_t cacheRowBytes(const MlaDims &d) { return DSV3_CACHE_ROW_BYTES(d.r, d.dr, d.cf); }
inline MlaDims mlaDims(const nlohmann::json &p, int64_t hidden) {
  MlaDims d;
  d.r = p.at("kv_lora_rank").get<int64_t>();
  d.dr = p.at("qk_rope_head_dim").get<int64_t>();
  d.nh = p.at("num_heads").get<int64_t>();
  d.dn = p.at("qk_nope_head_dim").get<int64_t>();
  d.dv = p.at("v_head_dim").get<int64_t>();
  d.rq = p.contains("q_lora_rank") ? p.at("q_lora_rank").get<int64_t>() : 0;
  d.H = hidden;
  d.cf = std::max<int64_t>(0, cacheFormOf(p.value("cache_storage", "f32")));
  return d;
}
inline std::string mlaPrepareName(const MlaDims &d, bool interleaved, bool bf16) {
  return instW("mla_prepare", {d.r, d.dr, d.nh, d.dn + d.dr, d.dn, interleaved ? 1 : 0},
               bf16);
}
inline std::string mlaPrefillName(const MlaDims &d) {
  return inst("mla_attention_prefill", {d.nh, d.dn, d.dr, d.dv, d.r});
}
/// The naive-form prefill over the cache (mla_prefill_cached): its thread
/// mapping needs 16 <= v_head_dim <= 256 dividing 256.
inline bool mlaPrefillCachedFits(const MlaDims &d) {
  return d.dv >= 16 && d.dv <= 256 && 256 % d.dv == 0;
}
inline std::string mlaPrefillCachedName(const MlaDims &d) {
  return inst("mla_prefill_cached", {d.nh, d.dn, d.dr, d.dv, d.r});
}
/// The same on tensor cores (mla_pack_kv + mla_prefill_mma, bf16 models):
/// the queries and the output stay in registers, so the q/k and v widths
/// (padded to 16) are bounded: 384 together (V3: 192 + 128).
inline int64_t mlaPad16(int64_t x) { return (x + 15) / 16 * 16; }
inline bool mlaPrefillMmaFits(const MlaDims &d) {
  return mlaPad16(d.dn + d.dr) + mlaPad16(d.dv) <= 384;
}
/// Its dynamic shared memory: two stages of 64 keys, rows padded by 8.
inline int64_t mlaPrefillMmaSmem(const MlaDims &d) {
  return 2 * 64 * (mlaPad16(d.dn + d.dr) + 8 + mlaPad16(d.dv) + 8) * 2;
}
inline std::string mlaPackKvName(const MlaDims &d) {
  return inst("mla_pack_kv", {d.nh, d.dn, d.dr, d.dv, d.r});
}
inline std::string mlaPrefillMmaName(const MlaDims &d) {
  return inst("mla_prefill_mma", {d.nh, d.dn, d.dr, d.dv, d.r});
}
/// mla_prefill_wgmma (sm_90a): the keys in 64-wide swizzle atoms, the values
/// as one m64n128 or m64n64 product; mla_pack_vt transposes the values. (Its
/// form before the overlapped pipeline was wrong at v_head_dim 64 on the
/// H200, cause not found; the present one matches mla_prefill_mma there:
/// bf16-check on test/data/configs/v3-train-wgmma-check.json, and the same
/// 100-step loss curve.)
inline bool mlaPrefillWgmmaFits(const MlaDims &d) {
  return (d.dn + d.dr) % 64 == 0 && (d.dv == 64 || d.dv == 128) &&
         DSV3_PREFILL_SMEM(4, d.dn + d.dr, d.dv) <= 227 * 1024;
}
inline std::string mlaPrefillWgmmaName(const MlaDims &d) {
  return inst("mla_prefill_wgmma", {d.nh, d.dn, d.dr, d.dv, d.r});
}
inline std::string mlaPackVtName(const MlaDims &d) {
  return inst("mla_pack_vt", {d.nh, d.dn, d.dr, d.dv, d.r});
}
/// mla_prefill_tma (sm_90a): mla_prefill_wgmma's operands (mla_pack_kv's
/// keys, mla_pack_vt's values) in 128-key tiles copied by TMA, the queries
/// in shared memory: where mla_prefill_wgmma fits and its larger shared
/// memory does too.
inline bool mlaPrefillTmaFits(const MlaDims &d) {
  return mlaPrefillWgmmaFits(d) && DSV3_PREFILL_TMA_SMEM(d.dn + d.dr, d.dv) <= 227 * 1024;
}
inline std::string mlaPrefillTmaName(const MlaDims &d) {
  return inst("mla_prefill_tma", {d.nh, d.dn, d.dr, d.dv, d.r});
}
inline int64_t mlaPrefillTmaSmem(const MlaDims &d) {
  return DSV3_PREFILL_TMA_SMEM(int64_t(d.dn + d.dr), int64_t(d.dv));
}
/// Its dynamic shared memory: DSV3_PREFILL_STAGES stages of 64 keys and 64
/// transposed values, plus 1 KB to align them to the swizzle.
inline int64_t mlaPrefillWgmmaSmem(const MlaDims &d) {
  return DSV3_PREFILL_SMEM(int64_t(DSV3_PREFILL_STAGES(d.dn + d.dr, d.dv)), d.dn + d.dr, d.dv);
}
/// The tensor-core prefill attention's kernels for bf16 weights, where
/// they fit: mla_pack_kv + mla_prefill_mma, and on Hopper mla_pack_vt +
/// mla_prefill_wgmma (+ mla_prefill_tma).
inline void appendPrefillMmaKernels(std::vector<std::string> &out, const MlaDims &d) {
  if (!mlaPrefillMmaFits(d))
    return;
  out.push_back(mlaPackKvName(d));
  out.push_back(mlaPrefillMmaName(d));
  if (mlaPrefillWgmmaFits(d)) {
    out.push_back(mlaPackVtName(d));
    out.push_back(mlaPrefillWgmmaName(d));
    if (mlaPrefillTmaFits(d))
      out.push_back(mlaPrefillTmaName(d));
  }
}
/// The attention backward on tensor cores (training with bf16 compute,
/// fits as mlaPrefillMmaFits): its kernels and their dynamic shared memory
/// (query side: 128 query rows and two stages of 64 keys of k and v; key
/// side: 128 key and value rows and two stages of 32 query rows of q and
/// dO with their log-sum-exp and delta), rows padded by 8 bf16.
inline std::string mlaGradQMmaName(const MlaDims &d) {
  return inst("mla_grad_q_mma", {d.nh, d.dn, d.dr, d.dv});
}
inline std::string mlaGradKvMmaName(const MlaDims &d) {
  return inst("mla_grad_kv_mma", {d.nh, d.dn, d.dr, d.dv});
}
/// The attention backward on Hopper's warpgroup MMA (mla_grad_q_wgmma,
/// mla_grad_kv_wgmma): widths in whole 64-wide swizzle atoms; dynamic
/// shared memory for the query side's 128 queries and dO rows and three
/// stages of 64 keys and values, and the key side's 128 keys and values
/// and three stages of 64 queries and dO rows with their log-sum-exp and
/// delta (1 KB a stage); 1 KB more to align them to the swizzle.
inline int64_t mlaGradQWgmmaSmem(const MlaDims &d) {
  return (128 + 3 * 64) * (d.dn + d.dr + d.dv) * 2 + 1024;
}
inline int64_t mlaGradKvWgmmaSmem(const MlaDims &d) {
  return (128 + 3 * 64) * (d.dn + d.dr + d.dv) * 2 + 3 * 1024 + 1024;
}
/// (232,448 bytes: the most a Hopper block may take; V3's widths take 204 KB.)
inline bool mlaGradWgmmaFits(const MlaDims &d) {
  return (d.dn + d.dr) % 64 == 0 && (d.dn + d.dr) <= 256 && (d.dv == 64 || d.dv == 128) &&
         mlaGradKvWgmmaSmem(d) <= 232448 && mlaGradQWgmmaSmem(d) <= 232448;
}
inline std::string mlaGradQWgmmaName(const MlaDims &d) {
  return inst("mla_grad_q_wgmma", {d.nh, d.dn, d.dr, d.dv});
}
inline std::string mlaGradKvWgmmaName(const MlaDims &d) {
  return inst("mla_grad_kv_wgmma", {d.nh, d.dn, d.dr, d.dv});
}
inline int64_t mlaGradQMmaSmem(const MlaDims &d) {
  int64_t kp = mlaPad16(d.dn + d.dr) + 8, vp = mlaPad16(d.dv) + 8;
  return (128 * kp + 2 * 64 * (kp + vp)) * 2;
}
inline int64_t mlaGradKvMmaSmem(const MlaDims &d) {
  int64_t kp = mlaPad16(d.dn + d.dr) + 8, vp = mlaPad16(d.dv) + 8;
  return (128 * (kp + vp) + 2 * (32 * (kp + vp) + 4 * 32)) * 2;
}
/// The absorbed decode's attention on tensor cores (mla_decode_mma, bf16
/// models): a 32-key tile of the latents (widths padded to 16 and 64, +8)
/// and the cross-warp score sums in 48 KB of static shared memory; q~'s
/// quarter and o~'s quarter in registers (widths up to 1024).
inline bool mlaDecodeMmaFits(const MlaDims &d) {
  int64_t wp = mlaPad16(d.r + d.dr), rp = (d.r + 63) / 64 * 64;
  int64_t cw = wp > rp ? wp : rp;
  return 32 * (cw + 8) * 2 + 4 * 16 * 32 * 4 <= 48 * 1024 && rp <= 1024;
}
/// A decode reader's instance, the cache form its last template argument
/// (fp32 caches keep the names of the kernels before the packed forms).
inline std::string cacheInst(const std::string &tpl, std::initializer_list<int64_t> args,
                             const MlaDims &d) {
  std::string n = inst(tpl, args);
  if (d.cf)
    n.insert(n.size() - 1, ", " + std::to_string(d.cf));
  return n;
}
inline std::string mlaDecodeMmaName(const MlaDims &d) {
  return cacheInst("mla_decode_mma", {d.nh, d.dr, d.r}, d);
}
/// A packed cache's rows to and from the host's fp32 layout.
inline std::string mlaCachePackName(const MlaDims &d) {
  return inst("mla_cache_pack", {d.r, d.dr, d.cf});
}
inline std::string mlaCacheUnpackName(const MlaDims &d) {
  return inst("mla_cache_unpack", {d.r, d.dr, d.cf});
}
/// mla_decode_mma_staged (16 x groups heads a block, cp.async-staged fp32
/// tiles): its tile, keys a tile, fp32 stages and groups of 16 heads. 32 x
/// 2 sums the scores and rescales the running softmax in mla_decode_mma's
/// steps (the same bits); 16 x 4 was 9% faster at batch 128 (0.534 against
/// 0.589 ms a layer, H200) but rescales every 16 keys, so its results
/// differ in the last bits: not taken. The groups do not change the bits.
struct DecodeStagedTile {
  int64_t keys, stages, groups;
};
/// The tiles an artifact holds: 2 groups (32 heads a block) and 4 (64
/// heads; decodeStagedTile picks by the rows).
constexpr DecodeStagedTile kDecodeStagedTiles[] = {{32, 2, 2}, {32, 2, 4}};
/// 16-byte rows, more heads than one group of 16 heads, and its fp32
/// stages, bf16 tile and score sums within the multiprocessor's shared
/// memory.
inline size_t mlaDecodeStagedSmem(const MlaDims &d, DecodeStagedTile t) {
  int64_t wp = mlaPad16(d.r + d.dr), rp = (d.r + 63) / 64 * 64;
  int64_t cw = wp > rp ? wp : rp;
  // The stages hold rows as stored; the score sums' rows are padded by
  // DSV3_DECODE_RED_PAD floats.
  return size_t(t.stages * t.keys * cacheRowBytes(d) + t.keys * (cw + 8) * 2 +
                t.groups * 4 * 16 * (t.keys + DSV3_DECODE_RED_PAD) * 4);
}
inline bool mlaDecodeStagedFits(const MlaDims &d, DecodeStagedTile t) {
  return mlaDecodeMmaFits(d) && DSV3_CACHE_ROW_ALIGNED4(d.r, d.dr, d.cf) &&
         cacheRowBytes(d) % 16 == 0 &&
         d.nh > 16 * (t.groups - 1) &&
         mlaDecodeStagedSmem(d, t) <= 227 * 1024;
}
inline std::string mlaDecodeStagedName(const MlaDims &d, DecodeStagedTile t) {
  return cacheInst("mla_decode_mma_staged", {d.nh, d.dr, d.r, t.keys, t.stages, t.groups},
                   d);
}
/// Heads per block of mla_decode_split (each block reads its key tiles
/// once for this many heads).
inline int64_t mlaDecodeHeads(const MlaDims &d) { return d.nh < 16 ? d.nh : 16; }
/// The absorbed decode's kernels, in launch order: absorb_q, split, merge,
/// absorb_v.
inline std::vector<std::string> mlaDecodeNames(const MlaDims &d, bool bf16) {
  return {instW("mla_absorb_q", {d.nh, d.dn, d.dr, d.dv, d.r}, bf16),
          cacheInst("mla_decode_split", {d.nh, d.dr, d.r, mlaDecodeHeads(d)}, d),
          inst("mla_decode_merge", {d.nh, d.r}),
          instW("mla_absorb_v", {d.nh, d.dn, d.dv, d.r}, bf16)};
}
/// absorb_q for a few rows with bf16 weights (16-byte weight loads, the
/// nope features split over 256 / (R / 8) slices).
inline bool mlaAbsorbQRowsFits(const MlaDims &d) {
  int64_t cg = d.r / 8;
  return d.r % 8 == 0 && cg <= 256 && 256 % cg == 0 && d.dn % (256 / cg) == 0;
}
inline std::string mlaAbsorbQRowsName(const MlaDims &d) {
  return inst("mla_absorb_q_rows", {d.nh, d.dn, d.dr, d.dv, d.r});
}
/// absorb_v on tensor cores for bf16 weights (rowsMma: R a multiple of 8).
inline bool mlaAbsorbVMmaFits(const MlaDims &d) { return d.r % 8 == 0; }
inline std::string mlaAbsorbVMmaName(const MlaDims &d) {
  return inst("mla_absorb_v_mma", {d.nh, d.dn, d.dv, d.r});
}
/// The GEMMs inside one MLA launch.
inline std::vector<std::string> mlaLinears(const MlaDims &d, bool bf16) {
  std::vector<std::string> out;
  int64_t dq = d.dn + d.dr;
  if (d.rq) {
    addLinear(out, d.rq, d.H, bf16);
    addRmsNorm(out, d.rq, bf16);
    addLinear(out, d.nh * dq, d.rq, bf16);
  } else {
    addLinear(out, d.nh * dq, d.H, bf16);
  }
  addLinear(out, d.r + d.dr, d.H, bf16);
  addLinear(out, d.nh * (d.dn + d.dv), d.r, bf16);
  addLinear(out, d.H, d.nh * d.dv, bf16);
  return out;
}

inline int scoringCode(const nlohmann::json &p) {
  return p.at("scoring_func").get<std::string>() == "sigmoid" ? 0 : 1;
}
inline int methodCode(const nlohmann::json &p) {
  std::string m = p.at("topk_method").get<std::string>();
  return m == "greedy" ? 0 : m == "group_limited_greedy" ? 1 : 2;
}
inline std::string routeName(const nlohmann::json &p, int64_t E) {
  bool norm = p.contains("norm_topk_prob") && p.at("norm_topk_prob").is_boolean() &&
              p.at("norm_topk_prob").get<bool>();
  return inst("moe_route", {E, p.at("num_experts_per_tok").get<int64_t>(),
                            p.at("n_group").get<int64_t>(), p.at("topk_group").get<int64_t>(),
                            scoringCode(p), methodCode(p), norm ? 1 : 0});
}

/// The instances of train_step's kernels (dsv3_train_kernels.cuh: runtime
/// extents, so mostly one instance each, `<0>`), plus the forward kernels
/// their recomputation launches.
inline std::vector<std::string>
trainingInstances(const std::string &kernel, const nlohmann::json &p,
                  const std::vector<std::vector<int64_t>> &in,
                  const std::vector<std::string> &dt) {
  auto g = [](const char *name) { return inst(name, {0}); };
  auto bf = [&](size_t i) { return i < dt.size() && isBf16(dt[i]); };
  std::string gemmW = gemmMmaName(0, false), gemmAcc = gemmMmaName(0, true);
  // Training with bf16 compute: the GEMMs of every launch with a backward
  // (and so the artifact's forward GEMMs too) on the bf16 kernels.
  auto withBf16 = [&](std::vector<std::string> out) {
    addBf16Tc(out, false);
    out.push_back(toBf16TransposedName());
    out.push_back(g("to_bf16_padded"));
    out.push_back(g("padded_segments"));
    out.push_back(g("zero_segment_pads"));
    out.push_back(g("strided_store"));
    out.push_back(g("segment_counts"));
    return out;
  };
  auto rope = [&](int64_t dim) {
    return inst("rope_transpose",
                {dim, p.at("rope").at("interleaved").get<bool>() ? 1 : 0});
  };
  if (kernel == "embedding_vjp")
    return {g("embedding_grad")};
  if (kernel == "rms_norm_vjp")
    return {g("rms_norm_grad"), g("rms_norm_grad_w")};
  // dx, dW stored in full, or (DSV3_GRAD_STORE=0) summed onto zeros.
  if (kernel == "linear_vjp" || kernel == "lm_head_vjp")
    return withBf16({gemmW, gemmAcc, gemmAnyName(0, false), gemmAnyName(0, true), g("col_sum")});
  if (kernel == "swiglu_vjp")
    return {g("swiglu_grad")};
  if (kernel == "rope_vjp")
    return {rope(p.at("rope").at("dim").get<int64_t>())};
  if (kernel == "cross_entropy_vjp")
    return {g("ce_count"), g("cross_entropy_grad")};
  if (kernel == "lm_head_cross_entropy_vjp") {
    // lm_head's GEMM again, the logits' gradient, lm_head's vjp.
    std::vector<std::string> out =
        withBf16({gemmAcc, gemmAnyName(0, true), g("col_sum"), g("ce_count"),
                  g("cross_entropy_grad")});
    addLinear(out, in.at(1).at(0), in.at(1).at(1), bf(1));
    return out;
  }
  if (kernel == "mtp_vjp")
    return withBf16({instW("mtp_concat", {in.at(1).back()}, bf(2)), gemmW, gemmAcc,
                     gemmAnyName(0, false), gemmAnyName(0, true), g("rms_norm_grad"),
                     g("rms_norm_grad_w")});
  if (kernel == "moe_route_vjp") {
    std::vector<std::string> out;
    addLinear(out, in.at(1).at(0), in.at(1).at(1), bf(1));
    for (const std::string &n : {routeName(p, in.at(1).at(0)), g("route_grad"), gemmAcc,
                                 gemmAnyName(0, true)})
      out.push_back(n);
    return withBf16(out);
  }
  if (kernel == "moe_balance_loss" || kernel == "moe_balance_loss_vjp") {
    std::vector<std::string> out;
    addLinear(out, in.at(1).at(0), in.at(1).at(1), bf(1));
    out.push_back(g("balance_scores"));
    out.push_back(g("balance_stats_part"));
    out.push_back(g("balance_stats"));
    out.push_back(kernel == "moe_balance_loss" ? g("balance_loss_sum") : g("balance_grad"));
    if (kernel != "moe_balance_loss") {
      out.push_back(gemmAcc);
      out.push_back(gemmAnyName(0, true));
    }
    return withBf16(out);
  }
  if (kernel == "moe_dispatch_vjp")
    return {inst("dispatch_plan", {p.at("num_experts").get<int64_t>(), in.at(1).back()}),
            inst("dispatch_place", {p.at("num_experts").get<int64_t>(), in.at(1).back()}),
            g("invert_slots"), g("dispatch_grad")};
  if (kernel == "expert_grouped_matmul_vjp")
    return withBf16({g("exclusive_scan"), gemmMmaName(1, false), gemmMmaName(2, false),
                     gemmAnyName(1, false), gemmAnyName(2, false), gemmMmaName(1, true),
                     gemmMmaName(2, true), gemmAnyName(1, true), gemmAnyName(2, true)});
  if (kernel == "moe_combine_vjp")
    return {g("combine_grad")};
  if (kernel == "latent_attention_vjp") {
    MlaDims d = mlaDims(p, in.at(0).back());
    bool w = bf(1);
    std::vector<std::string> out = mlaLinears(d, w);
    for (const std::string &n :
         {mlaPrepareName(d, p.at("rope").at("interleaved").get<bool>(), w), gemmW, gemmAcc,
          gemmAnyName(0, false), gemmAnyName(0, true),
          g("mla_grad_query"), g("mla_grad_key"), g("sum_items"), g("rms_norm_grad"),
          g("rms_norm_grad_w"), rope(d.dr), g("col_sum")})
      out.push_back(n);
    if (mlaPrefillMmaFits(d)) {
      for (const std::string &n : {g("mla_pack_heads"), g("attention_delta"),
                                   mlaGradQMmaName(d), mlaGradKvMmaName(d)})
        out.push_back(n);
      // The forward (and its recomputation here) on tensor cores too:
      // training's weights are fp32, so the forward's list lacks them.
      appendPrefillMmaKernels(out, d);
      if (mlaGradWgmmaFits(d)) {
        out.push_back(mlaGradQWgmmaName(d));
        out.push_back(mlaGradKvWgmmaName(d));
      }
    }
    return withBf16(out);
  }
  if (kernel == "global_norm")
    return {g("sum_squares"), g("sqrt_sum")};
  if (kernel == "adamw") // fp32 or bf16 moments (the launch's moments_bf16)
    return {inst("adamw_update", {p.value("moments_bf16", false) ? 1 : 0})};
  if (kernel == "expert_bias_update")
    return {g("expert_bias_update")};
  return {};
}

/// Every template instance the launch (kernel `kernel`, parameters `p`,
/// inputs with static extents `in`, -1 where dynamic, and manifest dtypes
/// `dt`) uses. Empty for a kernel without a CUDA implementation.
inline std::vector<std::string>
kernelInstances(const std::string &kernel, const nlohmann::json &p,
                const std::vector<std::vector<int64_t>> &in,
                const std::vector<std::string> &dt);

/// The FP8 kernels (runtime extents): activation quantization, the few-row
/// and tensor-core GEMMs (the TMA one plain, gated, and kv_b_proj storing
/// the prefill attention's keys and values), SwiGLU of two of
/// them, the dequantized kv_b of the absorbed decode, the random-weight
/// quantizer, and the scales' transpose for cuBLASLt's FP8 GEMM.
inline std::vector<std::string> fp8Instances() {
  return {inst("fp8_quantize", {0}), inst("fp8_gemm_rows", {0}), inst("fp8_gemm_rows_mma", {0}),
          inst("fp8_gemm_skinny", {0}), inst("fp8_splitk_reduce", {0}), inst("fp8_gemm_tc", {0}),
          inst("fp8_gemm_wgmma", {0}), inst("fp8_gemm_tma", {0}), inst("fp8_gemm_tma", {1}),
          inst("fp8_gemm_tma_wide", {0}), inst("fp8_gemm_tma_wide", {1}),
          inst("fp8_gemm_tma_wide", {3}), inst("fp8_gemm_tma_wide", {4}),
          inst("fp8_quantize_blocks", {0}), inst("fp8_scales_outer_major", {0}),
          elementwiseName("swiglu"),
          "dsv3::fp8_dequantize<float>", "dsv3::fp8_dequantize<unsigned short>"};
}

/// A launch with FP8 weights (fp8_scales): the kernels of the same launch
/// with the weights in the model's dtype (the launcher's other kernels:
/// norms, attention), plus the FP8 ones.
inline std::vector<std::string>
fp8LaunchInstances(const std::string &kernel, const nlohmann::json &p,
                   const std::vector<std::vector<int64_t>> &in,
                   const std::vector<std::string> &dt) {
  size_t operands = p.at("fp8_scales").size();
  bool bf16 = false;
  for (const std::string &d : dt)
    bf16 = bf16 || isBf16(d);
  std::vector<std::vector<int64_t>> shapes(in.begin(), in.begin() + std::min(operands, in.size()));
  std::vector<std::string> types(dt.begin(), dt.begin() + std::min(operands, dt.size()));
  for (std::string &d : types)
    if (d == "f8e4m3")
      d = bf16 ? "bf16" : "f32";
  nlohmann::json plain = p;
  plain.erase("fp8_scales");
  std::vector<std::string> out = kernelInstances(kernel, plain, shapes, types);
  for (const std::string &n : fp8Instances())
    out.push_back(n);
  return out;
}

inline std::vector<std::string>
kernelInstances(const std::string &kernel, const nlohmann::json &p,
                const std::vector<std::vector<int64_t>> &in,
                const std::vector<std::string> &dt) {
  if (p.contains("fp8_scales"))
    return fp8LaunchInstances(kernel, p, in, dt);
  if (p.contains("fp8_compute")) {
    // FP8 training: the launch's kernels on fp32 weights, the FP8 GEMMs
    // and quantizers, and the weight gradients' column quantizer.
    nlohmann::json plain = p;
    plain.erase("fp8_compute");
    std::vector<std::string> out = kernelInstances(kernel, plain, in, dt);
    for (const std::string &n : fp8Instances())
      out.push_back(n);
    out.push_back(inst("fp8_quantize_columns", {0}));
    out.push_back(inst("fp8_gemm_tc", {1}));
    out.push_back(inst("fp8_gemm_tc", {2}));
    out.push_back(inst("sum_items", {0}));
    return out;
  }
  auto last = [&](size_t i) { return in.at(i).back(); };
  auto bf = [&](size_t i) { return i < dt.size() && isBf16(dt[i]); };
  if (kernel == "embedding")
    return {embeddingName(in.at(1).at(1), bf(1))};
  if (kernel == "rms_norm") {
    std::vector<std::string> out;
    addRmsNorm(out, last(0), bf(1));
    return out;
  }
  if (kernel == "linear" || kernel == "lm_head" || kernel == "linear_add") {
    std::vector<std::string> out;
    addLinear(out, in.at(1).at(0), in.at(1).at(1), bf(1));
    return out;
  }
  if (kernel == "norm_linear") {
    std::vector<std::string> out;
    addRmsNorm(out, in.at(1).at(0), bf(1));
    addLinear(out, in.at(2).at(0), in.at(2).at(1), bf(2));
    return out;
  }
  if (kernel == "norm_gated_linear") {
    int64_t N = in.at(2).at(0), K = in.at(2).at(1);
    std::vector<std::string> out = {gatedLinearName(N, K, bf(2)),
                                    gatedLinearRowsName(N, K, bf(2))};
    addRmsNorm(out, K, bf(1));
    if (bf(2)) {
      out.push_back(gatedLinearMmaName(N, K));
      addBf16Tc(out, true);
    }
    return out;
  }
  if (kernel == "gated_linear") {
    std::vector<std::string> out = {gatedLinearName(in.at(1).at(0), in.at(1).at(1), bf(1)),
                                    gatedLinearRowsName(in.at(1).at(0), in.at(1).at(1), bf(1))};
    if (bf(1)) {
      out.push_back(gatedLinearMmaName(in.at(1).at(0), in.at(1).at(1)));
      addBf16Tc(out, true);
    }
    return out;
  }
  if (kernel == "expert_grouped_matmul" || kernel == "expert_gated_matmul") {
    // The schedules of an expert GEMM (weights [E, N, KD]): a warp per
    // output, and for bf16 weights the tensor-core tiles and rows.
    bool gated = kernel == "expert_gated_matmul";
    int64_t E = in.at(1).at(0), N = in.at(1).at(1), KD = in.at(1).at(2);
    std::vector<std::string> out = {
        instW(gated ? "expert_gated_gmm" : "expert_gmm", {N, KD, E}, bf(1))};
    if (bf(1)) {
      out.push_back(expertMmaName(N, KD, E, gated));
      if (expertRowsMmaFits(KD))
        out.push_back(expertRowsMmaName(N, KD, E, gated));
      addBf16Tc(out, gated);
    } else if (!gated) { // fp32 (training): rows grouped by expert on tensor cores
      out.push_back(inst("exclusive_scan", {0}));
      out.push_back(gemmMmaName(1, false));
    }
    return out;
  }
  if (kernel == "swiglu" || kernel == "add" || kernel == "fill")
    return {elementwiseName(kernel)};
  if (kernel == "last_token")
    return {inst("last_token", {0})};
  if (kernel == "rope")
    return {ropeName(p.at("rope").at("dim").get<int64_t>(),
                     p.at("rope").at("interleaved").get<bool>())};
  if (kernel == "latent_attention" || kernel == "latent_attention_decode") {
    MlaDims d = mlaDims(p, last(0));
    // Every weight has the model's dtype; the last input is o_proj or a bias.
    bool w = bf(in.size() - 1);
    std::vector<std::string> out = mlaLinears(d, w);
    out.push_back(mlaPrepareName(d, p.at("rope").at("interleaved").get<bool>(), w));
    if (kernel == "latent_attention") {
      out.push_back(mlaPrefillName(d));
      // bf16 models' forward (and training with bf16 compute, whose
      // backward launch lists these too) on tensor cores.
      if (w)
        appendPrefillMmaKernels(out, d);
    } else {
      for (const std::string &n : mlaDecodeNames(d, w))
        out.push_back(n);
      if (d.cf) {
        out.push_back(mlaCachePackName(d));
        out.push_back(mlaCacheUnpackName(d));
      }
      if (mlaPrefillCachedFits(d))
        out.push_back(mlaPrefillCachedName(d));
      if (w && mlaDecodeMmaFits(d))
        out.push_back(mlaDecodeMmaName(d));
      if (w)
        out.push_back(copyColumnsName());
      if (w)
        for (const DecodeStagedTile &t : kDecodeStagedTiles)
          if (mlaDecodeStagedFits(d, t))
            out.push_back(mlaDecodeStagedName(d, t));
      if (w && mlaAbsorbVMmaFits(d))
        out.push_back(mlaAbsorbVMmaName(d));
      if (w && mlaAbsorbQRowsFits(d))
        out.push_back(mlaAbsorbQRowsName(d));
      if (w)
        appendPrefillMmaKernels(out, d);
    }
    return out;
  }
  if (kernel == "moe_route")
  {
    // The gate GEMM (logits [n, E]), then the selection.
    std::vector<std::string> out;
    addLinear(out, in.at(1).at(0), in.at(1).at(1), bf(1));
    out.push_back(routeName(p, in.at(1).at(0)));
    return out;
  }
  if (kernel == "moe_dispatch")
    return {inst("dispatch_plan", {p.at("num_experts").get<int64_t>(), last(1)}),
            inst("dispatch_place", {p.at("num_experts").get<int64_t>(), last(1)}),
            inst("dispatch_gather", {last(0)}), inst("dispatch_gather_bf16", {last(0)}),
            inst("dispatch_gather_e4m3", {last(0)}), inst("dispatch_gather_codes", {0})};
  if (kernel == "moe_combine")
    return {inst("invert_slots", {0}), inst("moe_combine", {last(0), last(2)})};
  if (kernel == "mtp") {
    int64_t H = last(1);
    std::vector<std::string> out{instW("mtp_concat", {H}, bf(2))};
    addLinear(out, H, 2 * H, bf(4));
    return out;
  }
  if (kernel == "cross_entropy")
    return {inst("cross_entropy_rows", {last(0)}), inst("sum_scaled", {0})};
  if (kernel == "lm_head_cross_entropy") {
    std::vector<std::string> out = {inst("cross_entropy_rows", {in.at(1).at(0)}),
                                    inst("sum_scaled", {0})};
    addLinear(out, in.at(1).at(0), in.at(1).at(1), bf(1));
    return out;
  }
  return trainingInstances(kernel, p, in, dt);
}

} // namespace dsv3rt::cuda

#endif // DSV3_RUNTIME_CUDA_KERNELNAMES_H
