// dsv3_kernel_layout.h - the kernels' shared-memory layout constants that the
// runtime sizes launches by: one definition for both sides.
//
// dsv3_kernels.cuh is compiled by NVRTC from a string embedded in dsv3c
// (codegen/CMakeLists.txt puts this file first in it); the runtime's
// launchers (runtime/cuda) include it. Plain macros: no host or device
// headers, valid C++ for both compilers.
#ifndef DSV3_KERNEL_LAYOUT_H
#define DSV3_KERNEL_LAYOUT_H

/// gemm_bf16_wgmma / fp8_gemm_wgmma: pipeline stages of two 128 x 128-byte
/// operand tiles; the wide bf16 form's stages of 128 + 256 rows x 128 bytes.
#define DSV3_WG_STAGES 5
#define DSV3_WG_WIDE_STAGES 4
/// gemm_bf16_tma: stages of 128 + 256 rows x 128 bytes.
#define DSV3_TMA_STAGES 4
/// fp8_gemm_tma: stages of two 128 x 128-byte tiles.
#define DSV3_FP8_TMA_STAGES 6
/// fp8_gemm_tma_wide: stages of 128 + 256 rows x 128 bytes.
#define DSV3_FP8_WIDE_STAGES 4
/// fp8_gemm_tc: stages of two 128 x 144-byte tiles (rows padded).
#define DSV3_FP8_TC_STAGES 3
/// mla_prefill_wgmma: stages of 64 keys (dq bf16 features) and 64
/// transposed values (dv), five where they fit in the 227 KB a block may
/// take (DeepSeek-V3: 200 KB), else four; DSV3_PREFILL_SMEM its dynamic
/// shared memory (plus 1 KB to align the stages to the swizzle).
#define DSV3_PREFILL_SMEM(stages, dq, dv) ((stages) * 64 * ((dq) + (dv)) * 2 + 1024)
#define DSV3_PREFILL_STAGES(dq, dv) (DSV3_PREFILL_SMEM(5, dq, dv) <= 227 * 1024 ? 5 : 4)
/// mla_prefill_tma: 128 queries, two slots of 128 keys and two of 128
/// transposed values, bf16 (DeepSeek-V3: 209 KB), plus 1 KB of alignment.
#define DSV3_PREFILL_TMA_SMEM(dq, dv) ((128 * (dq) * 3 + 2 * 128 * (dv)) * 2 + 1024)
/// The decode attention's score sums (decodeMmaTile's red): a head's row
/// is the key tile plus this many floats (bank-conflict padding).
#define DSV3_DECODE_RED_PAD 8
/// A latent-cache row's bytes in form cf (dsv3c --kv-cache; CacheRow):
/// 0 fp32 (r + dr floats); 1 bf16 (r + dr); 2 r e4m3 codes, the rope key in
/// dr bf16 and one fp32 scale. The packed forms are padded to 16 bytes.
#define DSV3_CACHE_ROW_RAW(r, dr, cf) \
  ((cf) == 0 ? 4 * ((r) + (dr)) : (cf) == 1 ? 2 * ((r) + (dr)) : (r) + 2 * (dr) + 4)
#define DSV3_CACHE_ROW_BYTES(r, dr, cf) \
  ((cf) == 0 ? DSV3_CACHE_ROW_RAW(r, dr, cf) : (DSV3_CACHE_ROW_RAW(r, dr, cf) + 15) / 16 * 16)
/// Whether a row reads as pieces of 4 values (c % 4 == 0) that are aligned
/// and never straddle the latent and the rope key (CacheRow::load4).
#define DSV3_CACHE_ROW_ALIGNED4(r, dr, cf) \
  ((cf) == 2 ? (r) % 8 == 0 && (dr) % 4 == 0 : ((r) + (dr)) % 4 == 0)

#endif // DSV3_KERNEL_LAYOUT_H
