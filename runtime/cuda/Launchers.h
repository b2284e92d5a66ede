//===- Launchers.h - helpers shared by the CUDA launchers ---------*- C++ -*-===//
//
// Internal to runtime/cuda: the forward launchers (CudaLaunchers.cpp) and
// the training ones (CudaGradLaunchers.cpp) share the GEMM schedules, the
// row norm, the rope tables and the MLA projections through these.
//
//===----------------------------------------------------------------------===//
#ifndef DSV3_RUNTIME_CUDA_LAUNCHERS_H
#define DSV3_RUNTIME_CUDA_LAUNCHERS_H

#include "runtime/Fp8Launch.h"
#include "runtime/cuda/CudaSession.h"
#include "runtime/cuda/KernelNames.h"

#include <algorithm>
#include <map>
#include <string>
#include <vector>

namespace dsv3rt::cuda {

using json = nlohmann::json;
using Ins = std::vector<DevTensor *>;
using i64 = long long;

/// Kernel arguments: pointers to the (lvalue) arguments, in order (the
/// driver only reads them).
template <typename... A> std::vector<void *> argv(const A &...a) {
  return {const_cast<void *>(static_cast<const void *>(&a))...};
}
/// Blocks of `per` threads covering n items, for grid.x (up to 2^31 - 1:
/// kernels with a thread per item, no grid-stride loop, need all of them;
/// a cap at 65535 once left to_bf16 converting only the first 33.5M
/// elements of a 8192 x 7168 prefill's activations).
unsigned blocks(i64 n, unsigned per);
/// Sets an output's runtime shape, failing when its buffer is too small.
void setShape(const std::string &k, DevTensor &t, std::vector<int64_t> shape);
/// The product of all but the last extent.
i64 rowsOf(const DevTensor &t);

/// y[rows, N] = x[rows, K] (row stride ldx) W^T (+ b) (+ res): the
/// forward GEMM schedules (few rows, tensor cores for bf16, tiled fp32).
/// An FP8 weight operand of a launch (dsv3c --quantize fp8): e4m3 codes
/// and fp32 scales per [br, bc] block; empty when the operand is not FP8.
struct Fp8Weight {
  CUdeviceptr w = 0, scale = 0;
  int br = 0, bc = 0;
  explicit operator bool() const { return scale != 0; }
};
/// Launch input `i` as an FP8 weight (its scales named by fp8_scales[i]).
Fp8Weight fp8Of(const json &p, const Ins &in, size_t i);
/// FP8 training (`fp8_compute` [br, bc], dsv3c --mode train --quantize
/// fp8): the fp32 master weight w [..., N, K] quantized now per [br, bc]
/// block into the workspace, as the host's projOf does; with `transposed`,
/// also its [..., K, N] codes and scales (the input gradient's weight).
Fp8Weight fp8MasterWeight(CudaSession &s, const std::string &k, const json &p,
                          const DevTensor &w, Fp8Weight *transposed = nullptr);
/// The FP8 weight launch input `i`'s GEMM reads: fp8Of, or under
/// fp8_compute the master weight quantized (fp8MasterWeight).
Fp8Weight fp8Operand(CudaSession &s, const std::string &k, const json &p, const Ins &in,
                     size_t i);
/// The op's operands among a launch's inputs (FP8 scales follow them).
size_t numOperands(const json &p, const Ins &in);
/// y[rows, N] = x W^T (+ b) (+ res) with an FP8 weight: x quantized per
/// token per 128 channels (fp8_quantize), then the e4m3 GEMM (tensor cores
/// on sm_89+ for more than a few rows, fp8_gemm_rows otherwise). Grouped
/// (counts [E] on the device): rows grouped by expert, w [E, N, K].
/// `schedule`: -1 chooses, 0 the few-row CUDA-core kernel, 1 the tensor-core
/// tiles, 2 the skinny tensor-core kernel (decode).
void fp8Gemm(CudaSession &s, const std::string &what, CUdeviceptr x, i64 ldx,
             const Fp8Weight &w, CUdeviceptr b, CUdeviceptr y, i64 rows, int64_t N, int64_t K,
             CUdeviceptr res = 0, CUdeviceptr counts = 0, int64_t E = 0, int schedule = -1);

/// Whether a plain FP8 GEMM of `rows` rows on the TMA schedule runs on
/// cuBLASLt's block-scaled kernel instead of fp8_gemm_tma (CudaLaunchers.cpp;
/// DSV3_FP8_CUBLAS=0 never, DSV3_FP8_CUBLAS_ROWS the fewest rows).
/// (res: with a residual, which cuBLASLt plans apart.)
bool fp8CublasLt(CudaSession &s, const Fp8Weight &w, i64 rows, int64_t N, int64_t K,
                 bool res);

/// FP8 training's GEMMs of a backward (DeepSeek-V3 3.3), as the host's
/// fp8RowDgrad / fp8Wgrad compute them. Dgrad: dx [R, K] (+)= dy [R, N] W
/// with dy quantized per token per 128 outputs and W's transposed codes
/// (fp8MasterWeight), grouped by expert with counts. Wgrad: dW [N, K] +=
/// dy^T x over R rows (dy rows ldy apart, x rows ldx apart), both quantized
/// per column over 128-row tiles (fp8_quantize_columns), each tile's
/// products summed in fp32, then scaled.
void fp8Dgrad(CudaSession &s, const std::string &what, CUdeviceptr dy, i64 R, int64_t N,
              const Fp8Weight &wT, CUdeviceptr dx, int64_t K, bool accumulate,
              CUdeviceptr counts = 0, int64_t E = 0);
void fp8Wgrad(CudaSession &s, const std::string &what, CUdeviceptr dy, i64 ldy, CUdeviceptr x,
              i64 ldx, i64 R, int64_t N, int64_t K, CUdeviceptr dW);
/// fp8Wgrad of every routed expert in two quantizer launches and one GEMM
/// (fp8_gemm_tc<2>), the rows grouped by expert with counts [E] on the
/// GPU: dW [E, N, K], expert e's += over its own rows, its 128-token tiles
/// starting at its first row (the host's and fp8Wgrad's tiles). False on a
/// GPU without e4m3 tensor cores (the caller runs fp8Wgrad per expert).
/// Whether fp8WgradGrouped runs here: e4m3 tensor cores and not
/// DSV3_FP8_WGRAD_GROUPED=0.
bool fp8WgradGroupedOn(const CudaSession &s);
bool fp8WgradGrouped(CudaSession &s, const std::string &what, CUdeviceptr dy, CUdeviceptr x,
                     i64 R, int64_t N, int64_t K, CUdeviceptr counts, int64_t E,
                     CUdeviceptr dW);

/// Rows of logits a chunk of the fused loss holds at a time
/// (lm_head_cross_entropy and its vjp): 2 GiB of them (4096 rows at
/// DeepSeek-V3's vocabulary), whole 128-row tiles. Each chunk rounds the
/// lm_head weight to bf16 again for its GEMMs (bf16 compute), so chunks
/// much smaller than this cost more in rounding than they save.
inline i64 lossChunkRows(i64 rows, int64_t V) {
  i64 chunk = std::max<i64>(128, (i64(2) << 30) / (4 * V) / 128 * 128);
  return std::min(rows, chunk);
}

/// An FP8 `fp8` weight (set) takes fp8Gemm instead.
void gemm(CudaSession &s, const std::string &what, CUdeviceptr x, i64 ldx, CUdeviceptr W,
          CUdeviceptr b, CUdeviceptr y, i64 rows, int64_t N, int64_t K, bool bf16,
          CUdeviceptr res = 0, const Fp8Weight *fp8 = nullptr);
/// DSV3_SIMT_GEMM=1: the fp32 GEMMs on CUDA cores (gemm_any, linear)
/// instead of gemm_mma's split-bf16 tensor-core products (to check one
/// against the other).
bool simtGemm();
/// The fewest rows a plain bf16 GEMM takes cuBLASLt with: kCublasRows, or
/// DSV3_CUBLAS_ROWS.
int64_t cublasRows();
/// C (+)= A B on strided operands (gemm_mma, or gemm_any with
/// DSV3_SIMT_GEMM=1): element (m, k) of A at A + m sam + k sak, (k, n) of B
/// at B + k sbk + n sbn, C rows ldc apart. Mode 0: batch z at strides
/// sAb/sBb/sCb over `batches`; mode 1: the M rows grouped by `seg` (segs + 1
/// offsets) with B + e sBb for group e; mode 2: batch e sums K over rows
/// [seg[e], seg[e + 1]) into C + e sCb. bias / res: gemm_mma's epilogue
/// (mode 0, not accumulating; 0 when absent).
struct GemmArgs {
  int mode = 0;
  bool accumulate = false;
  i64 M = 0, N = 0, K = 0;
  CUdeviceptr A = 0;
  i64 sam = 0, sak = 0, sAb = 0;
  CUdeviceptr B = 0;
  i64 sbk = 0, sbn = 0, sBb = 0;
  CUdeviceptr C = 0;
  i64 ldc = 0, sCb = 0;
  unsigned batches = 1;
  CUdeviceptr seg = 0;
  i64 segs = 0;
  CUdeviceptr bias = 0, res = 0;
};
void stridedGemm(CudaSession &s, const std::string &what, const GemmArgs &g);
/// A strided matrix view: element (i, j) at p + i rs + j cs (floats).
struct Mat {
  CUdeviceptr p;
  i64 rs, cs;
};
inline Mat rowMajor(CUdeviceptr p, i64 ld) { return {p, ld, 1}; }
/// The transpose of a row-major matrix with rows ld apart.
inline Mat transposed(CUdeviceptr p, i64 ld) { return {p, 1, ld}; }
/// C[M, N] = A[M, K] B[K, N] (mode 0, no epilogue): the fields the other
/// modes and options then adjust.
inline GemmArgs gemmArgs(i64 M, i64 N, i64 K, Mat A, Mat B, CUdeviceptr C, i64 ldc) {
  GemmArgs g;
  g.M = M;
  g.N = N;
  g.K = K;
  g.A = A.p;
  g.sam = A.rs;
  g.sak = A.cs;
  g.B = B.p;
  g.sbk = B.rs;
  g.sbn = B.cs;
  g.C = C;
  g.ldc = ldc;
  return g;
}
/// y = rms_norm(x) w, row by row.
void rmsRows(CudaSession &s, const std::string &what, CUdeviceptr x, CUdeviceptr w,
             CUdeviceptr y, i64 rows, int64_t N, float eps, bool bf16);
/// The rope frequencies on the device (uploaded once per configuration);
/// `scale` gets the cos/sin scale.
CUdeviceptr invFreq(CudaSession &s, const std::string &k, const json &rope, float &scale);

/// An MLA launch's weights by operand segment (q_a, q_a_norm, q, kv_a,
/// kv_a_norm, kv_b, o, q_a_bias, kv_a_bias, o_bias; 0 when absent), after
/// `first` leading operand segments; `operand` is each one's input index
/// (-1 when absent).
struct MlaWeights {
  enum Slot { QA, QANorm, Q, KVA, KVANorm, KVB, O, QABias, KVABias, OBias };
  CUdeviceptr w[10] = {0};
  int64_t operand[10] = {-1, -1, -1, -1, -1, -1, -1, -1, -1, -1};
  bool bf16 = false;
  Fp8Weight fp8[10];
};
MlaWeights mlaWeights(CudaSession &s, const std::string &k, const json &p, const Ins &in,
                       size_t first);

/// The query and kv_a projections of N tokens (workspace): QA, QN (q_a
/// output and its norm, with q_lora_rank), Q [N, NH, DN + DR] (rope not yet
/// applied) and A [N, R + DR].
struct MlaProjections {
  CUdeviceptr QA = 0, QN = 0, Q = 0, A = 0;
};
MlaProjections mlaProject(CudaSession &s, const std::string &k, const MlaDims &d,
                          const MlaWeights &w, CUdeviceptr x, i64 N, float eps,
                          DevTensor::Storage xForm = DevTensor::Storage::F32,
                          bool keepNormedQ = true);
/// A prefill's latent L [N, R + DR] (normalised latent, rotated rope key;
/// Q's rope part rotated in place) and U = L[:, :R] W_kvb^T [N, NH, DN + DV].
/// y = x W^T over bf16 activations (x rounded once, to_bf16; then
/// gemm_bf16_tc): plain (+ b) (+ res), or with Wu, silu(x W^T) * (x Wu^T);
/// grouped over E experts when counts is set (rows grouped by expert, W
/// [E, N, K]).
/// The kernel bf16TcGemm runs on this GPU (DSV3_BF16_GEMM, read once), and
/// its plain form's name (for reports).
enum class Bf16Gemm { Tc, Wgmma, Tma };
Bf16Gemm bf16GemmSchedule(const CudaSession &s);
std::string bf16GemmKernel(const CudaSession &s);
void bf16TcGemm(CudaSession &s, const std::string &what, CUdeviceptr x, i64 ldx,
                CUdeviceptr W, CUdeviceptr Wu, CUdeviceptr b, CUdeviceptr res, CUdeviceptr y,
                i64 rows, int64_t N, int64_t K, CUdeviceptr counts, int64_t E,
                bool bf16Out = false);
/// The same with x already bf16 (xb [rows, K], 16-byte aligned). bf16Out:
/// y stored as bf16 (the gated form on gemm_bf16_tma only).
void bf16RoundedGemm(CudaSession &s, const std::string &what, CUdeviceptr xb, CUdeviceptr W,
                     CUdeviceptr Wu, CUdeviceptr b, CUdeviceptr res, CUdeviceptr y, i64 rows,
                     int64_t N, int64_t K, CUdeviceptr counts, int64_t E,
                     bool bf16Out = false);
/// The stable counting sort of R routed slots (indices [R], K per token)
/// by expert: counts [E] and slots [R] (dispatch_plan + dispatch_place).
void dispatchPlan(CudaSession &s, const std::string &k, int64_t E, int64_t K,
                  CUdeviceptr indices, CUdeviceptr counts, CUdeviceptr slots, i64 R);
/// The absorbed decode's attention of `rows` query rows (row r is row
/// rowBase + r of the batch: sequence / T, position past + r % T) over the
/// latent caches [B, S, R + DR]: qt [rows, NH, R + DR] (q~, rope query
/// appended) -> ot [rows, NH, R], through `splits` key splits of splitLen
/// keys (part [rows, splits, NH, R] and ml [rows, splits, NH, 2] are the
/// workspace) and their merge. On tensor cores (bf16 q~ and latents:
/// mla_decode_mma, or mla_decode_mma_staged, the same arithmetic with 32
/// heads a block and cp.async-staged tiles) or in fp32 (mla_decode_split).
/// The absorbed decode's per-head products: q~ = q_nope W_UK[h] (with the
/// rope query copied after the latent columns: qt [rows, NH, R + DR] from
/// q [rows, NH, DN + DR]) and o = o~ W_UV[h]^T (o [rows, NH, DV] from ot
/// [rows, NH, R]), kvb kv_b_proj [NH (DN + DV), R]. `cublas`: the
/// activations rounded to bf16 and all heads in one strided batched
/// cuBLASLt call (useAbsorbCublas: bf16 weights, batches of 16 rows or
/// more, DSV3_ABSORB_CUBLAS=0 never); else dsv3's kernels (fp32
/// activations).
bool useAbsorbCublas(const CudaSession &s, const MlaDims &d, bool bf16Weights, i64 rows);
void mlaAbsorbQ(CudaSession &s, const std::string &k, const MlaDims &d, bool bf16Weights,
                bool cublas, CUdeviceptr q, CUdeviceptr kvb, CUdeviceptr qt, i64 rows);
void mlaAbsorbV(CudaSession &s, const std::string &k, const MlaDims &d, bool bf16Weights,
                bool cublas, CUdeviceptr ot, CUdeviceptr kvb, CUdeviceptr o, i64 rows);
enum class DecodeKernel { Split, Mma, Staged };
/// The tile mla_decode_mma_staged runs with here for `rows` query rows
/// (groups 0: none).
DecodeStagedTile decodeStagedTile(const CudaSession &s, const MlaDims &d, i64 rows);
/// Heads a block of that kernel serves (the key splits are sized from it).
int64_t mlaDecodeHeadsPerBlock(const CudaSession &s, DecodeKernel kernel, const MlaDims &d,
                               i64 rows);
/// The split-KV attention and its merge; the staged kernel with `staged`
/// where its groups are set (a check's choice), else decodeStagedTile's.
void mlaDecodeAttention(CudaSession &s, const std::string &k, const MlaDims &d,
                        DecodeKernel kernel,
                        CUdeviceptr qt, CUdeviceptr cache, CUdeviceptr past, CUdeviceptr part,
                        CUdeviceptr ml, CUdeviceptr ot, i64 rows, i64 splits, i64 splitLen,
                        i64 rowBase, i64 T, i64 S, float softmaxScale,
                        DecodeStagedTile staged = {0, 0, 0});
/// The causal attention backward of B sequences of T tokens (training;
/// SEMANTICS.md 3.6): Q [B*T, NH, DN + DR] (rotated), L [B*T, R + DR] (its
/// last DR the rotated rope keys), U [B*T, NH, DN + DV] (nope keys and
/// values), dO and O [B*T, NH, DV] (O written: o_proj's weight gradient
/// needs it); writes dQ [B*T, NH, DN + DR], dU [B*T, NH, DN + DV] and dKP
/// [B*T, NH, DR] (the rope key's gradient per head). In fp32 (a block per
/// query or key and head) or on bf16 tensor cores (flash-style; needs
/// mlaPrefillMmaFits).
void mlaAttentionGradFp32(CudaSession &s, const std::string &k, const MlaDims &d, CUdeviceptr Q,
                          CUdeviceptr L, CUdeviceptr U, CUdeviceptr dO, CUdeviceptr O,
                          CUdeviceptr dQ, CUdeviceptr dU, CUdeviceptr dKP, i64 B, i64 T,
                          float scale);
/// `wgmma` false keeps the tensor-core form on mma.sync (the checks
/// compare both). O is written (the attention run again) unless savedLse
/// is given: then O and savedLse ([B, NH, T]) are the forward's, read only.
void mlaAttentionGradMma(CudaSession &s, const std::string &k, const MlaDims &d, CUdeviceptr Q,
                         CUdeviceptr L, CUdeviceptr U, CUdeviceptr dO, CUdeviceptr O,
                         CUdeviceptr dQ, CUdeviceptr dU, CUdeviceptr dKP, i64 B, i64 T,
                         float scale, bool wgmma = true, CUdeviceptr savedLse = 0);
bool useGradWgmma(CudaSession &s, const MlaDims &d);
/// A kernel choice an environment variable can turn off: false only when
/// `name` is set to "0".
bool envNotZero(const char *name);
/// A device i64 0: the past length of a sequence attended without a cache.
CUdeviceptr zeroPast(CudaSession &s);
/// The naive-form attention of sequence b's T new queries over its S
/// cached rows (`rows`, [S, R + DR]) whose latents kv_b_proj expanded into
/// u [S, NH, DN + DV]: q [T, NH, DN + DR] (rope rotated), o [T, NH, DV].
/// On tensor cores with bf16 operands (mma) or in fp32. With mma, `lse`
/// (when set) receives each query's log-sum-exp, [NH, T] (training), and
/// `kernel` picks the tensor-core kernel (Auto: mla_prefill_tma where
/// usePrefillTma, else mla_prefill_wgmma where usePrefillWgmma, else
/// mla_prefill_mma; the checks force each, Wgmma and Tma failing where they
/// cannot run). `out` (mma only): o stored as floats, as
/// bf16 [T, NH, DV] rounded to nearest even, or (DV 128) as e4m3 codes with
/// one scale per row and head at oScales [T, NH], fp8_quantize's values:
/// for an o_proj that makes that of the floats first.
enum class PrefillKernel { Auto, Mma, Wgmma, Tma };
enum class AttentionOut { F32, Bf16, E4m3 };
bool usePrefillWgmma(CudaSession &s, const MlaDims &d);
bool usePrefillTma(CudaSession &s, const MlaDims &d);
/// Whether an FP8 kv_b_proj (weight `kvb`) and the tensor-core prefill
/// attention's packing run as one GEMM per sequence, kv_b_proj's output
/// stored straight as the attention's bf16 keys and transposed values
/// (fp8_gemm_tma_wide<4>; no fp32 u, no mla_pack_kv / mla_pack_vt): Hopper,
/// the warpgroup-MMA attention, 128 no-rope and 128 value features a head
/// (a 256-column tile is one head), 128 x 128 weight blocks, and
/// DSV3_MLA_KV_FP8=1 (opt-in until run on a GPU). Then mlaPrefillAttention
/// takes u = 0 and `kvb`.
bool useMlaKvFp8(CudaSession &s, const MlaDims &d, const Fp8Weight &kvb);
/// `kvb` (useMlaKvFp8): u is not given; `rows`' latents are expanded by it.
void mlaPrefillAttention(CudaSession &s, const std::string &k, const MlaDims &d, bool mma,
                         CUdeviceptr q, CUdeviceptr u, CUdeviceptr rows, CUdeviceptr past,
                         i64 b, CUdeviceptr o, i64 T, i64 S, float softmaxScale,
                         CUdeviceptr lse = 0, PrefillKernel kernel = PrefillKernel::Auto,
                         AttentionOut out = AttentionOut::F32, CUdeviceptr oScales = 0,
                         const Fp8Weight *kvb = nullptr);
struct MlaLatent {
  CUdeviceptr L = 0, U = 0;
};
/// The prefill's latents L (and, with expandU, kv_b_proj's output U).
MlaLatent mlaLatent(CudaSession &s, const std::string &k, const json &p, const MlaDims &d,
                    const MlaWeights &w, const MlaProjections &proj, i64 B, i64 T,
                    float eps, bool expandU = true);

/// Sets a tensor to zeros (stream-ordered).
void zero(CudaSession &s, CUdeviceptr p, i64 n, const std::string &what);

/// The training launchers (CudaGradLaunchers.cpp): the *_vjp kernels, the
/// balance loss, the gradient norm and the optimizer updates.
void addGradLaunchers(std::map<std::string, Launcher> &table);
/// Adds ep_dispatch / ep_combine / all_reduce (NCCL; CudaCollectiveLaunchers.cpp).
void addCollectiveLaunchers(std::map<std::string, Launcher> &table);

} // namespace dsv3rt::cuda

#endif // DSV3_RUNTIME_CUDA_LAUNCHERS_H
