//===- CudaLaunchers.cpp - launch the CUDA kernels of each dsv3 kernel ----===//
//
// One launcher per kernel of the manifest: it derives the output shapes
// from the inputs (as the host kernel does), takes scratch space from the
// session's workspace, and launches the template instances that
// KernelNames.h names (and dsv3c compiled). Composite ops (latent
// attention, MTP, the MoE steps) launch several kernels in stream order.
//
//===----------------------------------------------------------------------===//

#include "runtime/cuda/Launchers.h"

#include "runtime/cuda/CublasLt.h"

#include "codegen/kernels/dsv3_kernel_layout.h"
#include "runtime/Error.h"
#include "runtime/host/HostMath.h"

#include <cstdlib>
#include <map>
#include <tuple>
#include <utility>

namespace dsv3rt::cuda {

/// Dynamic shared memory of the warpgroup-MMA GEMMs, from the kernels' own
/// stage counts (codegen/kernels/dsv3_kernel_layout.h), plus 1 KB to align
/// the tiles to the 128B swizzle: gemm_bf16_wgmma / fp8_gemm_wgmma, stages
/// of two 128 x 128-byte operand tiles (the wide bf16 form 128 + 256 rows x
/// 128 bytes); gemm_bf16_tma and fp8_gemm_tma_wide 128 + 256 rows;
/// fp8_gemm_tma two 128 x 128-byte tiles; fp8_gemm_tc two 128 x 144-byte
/// tiles (no swizzle).
constexpr size_t kWgmmaSmem = DSV3_WG_STAGES * 2 * 128 * 128 + 1024;
constexpr size_t kWgmmaWideSmem = DSV3_WG_WIDE_STAGES * (128 + 256) * 128 + 1024;
constexpr size_t kBf16TmaSmem = DSV3_TMA_STAGES * (128 + 256) * 128 + 1024;
constexpr size_t kFp8TmaSmem = DSV3_FP8_TMA_STAGES * 2 * 128 * 128 + 1024;
constexpr size_t kFp8TmaWideSmem = DSV3_FP8_WIDE_STAGES * (128 + 256) * 128 + 1024;
/// fp8_gemm_tma_wide's last parameter, MlaKvOut, as the kernel lays it out
/// (three pointers, two i64, three int; zeros but in its form 4).
struct MlaKvOut {
  CUdeviceptr kb = 0, vt = 0, rows = 0;
  long long S = 0, Sp = 0;
  int W = 0, R = 0, DR = 0;
};
static_assert(sizeof(MlaKvOut) == 56, "the kernel's MlaKvOut");
constexpr size_t kFp8TcSmem = DSV3_FP8_TC_STAGES * 2 * 128 * 144;

/// Row tiles a group of the 128-row GEMMs' grid walks before the next
/// column tiles (gemmTile in dsv3_kernels.cuh); DSV3_GEMM_TILE_GROUP sets it.
/// 8: gemm_bf16_tma at 8192 x 7168 x 16384 on an H200 runs at 800 TFLOP/s,
/// 573 with 1 (row tile by row tile, the weight read again for each).
int gemmTileGroup() {
  static const int group = [] {
    const char *env = std::getenv("DSV3_GEMM_TILE_GROUP");
    int g = env ? std::atoi(env) : 8;
    return g < 1 ? 1 : g;
  }();
  return group;
}

/// The grid order of the TMA GEMMs (gemm_bf16_tma, fp8_gemm_tma[_wide]):
/// grouped (counts given), -1 walks expert by expert (gemmGridTile: an
/// expert's row tiles read each weight tile together; an older artifact's
/// kernels take -1 as one group of every row tile, a valid order); plain,
/// and with DSV3_GEMM_EXPERT_ORDER=0, gemmTileGroup().
int tmaTileGroup(CUdeviceptr counts) {
  static const bool expertOrder = envNotZero("DSV3_GEMM_EXPERT_ORDER");
  return counts && expertOrder ? -1 : gemmTileGroup();
}

/// Grid rows of a GEMM over 128-row tiles: rows / 128, plus E for the
/// grouped form (each expert's last tile may be partial); fails past CUDA's
/// grid limit.
unsigned gemmRowTiles(const std::string &what, i64 rows, int64_t E) {
  i64 tiles = (rows + 127) / 128 + E;
  if (tiles > 65535)
    fail("{}: {} rows exceed the GEMM grid ({} tiles of 128 rows, at most 65535)", what,
         rows, tiles);
  return unsigned(tiles);
}

unsigned blocks(i64 n, unsigned per) {
  i64 b = (n + per - 1) / per;
  if (b > 0x7fffffff)
    fail("{} items in blocks of {} exceed the grid (2^31 - 1 blocks)", n, per);
  return unsigned(std::max<i64>(b, 1));
}

void setShape(const std::string &k, DevTensor &t, std::vector<int64_t> shape) {
  t.shape = std::move(shape);
  if (size_t(t.numel()) > t.capacity)
    fail("kernel {}: output needs {} elements but its buffer holds {} (the "
         "artifact was planned for smaller sizes: recompile with larger "
         "--max-batch / --max-seq)",
         k, t.numel(), t.capacity);
}

i64 rowsOf(const DevTensor &t) {
  i64 n = 1;
  for (size_t i = 0; i + 1 < t.shape.size(); ++i)
    n *= t.shape[i];
  return n;
}

size_t numOperands(const json &p, const Ins &in) { return fp8LaunchOperands(p, in.size()); }

Fp8Weight fp8Of(const json &p, const Ins &in, size_t i) {
  Fp8Weight w;
  int64_t input = fp8ScalesInput(p, i);
  if (input < 0)
    return w;
  size_t si = size_t(input);
  if (si >= in.size() || !in[i]->fp8)
    fail("FP8 launch: input {} is not an e4m3 weight with scales at input {}", i, si);
  w.w = in[i]->ptr;
  w.scale = in[si]->ptr;
  w.br = p.at("fp8_block").at(0).get<int>();
  w.bc = p.at("fp8_block").at(1).get<int>();
  return w;
}

Fp8Weight fp8MasterWeight(CudaSession &s, const std::string &k, const json &p,
                          const DevTensor &w, Fp8Weight *transposed) {
  const json &block = p.at("fp8_compute");
  const int br = block.at(0).get<int>(), bc = block.at(1).get<int>();
  if (w.shape.size() < 2 || br < 1 || bc < 1 || w.bf16 || w.fp8)
    fail("kernel {}: fp8_compute on a weight of shape [{}] (FP8 training quantizes an fp32 "
         "matrix or a stack of them in {}x{} blocks)",
         k, fmt::join(w.shape, ", "), br, bc);
  int N = int(w.dim(-2)), K = int(w.dim(-1));
  const i64 E = w.numel() / (i64(N) * K), sr = (N + br - 1) / br, sc = (K + bc - 1) / bc;
  Fp8Weight q;
  static const bool copies = envNotZero("DSV3_FP8_MASTER_COPIES");
  if (copies) {
    // One quantization a weight an entry run, both ways at once
    // (CudaSession::Fp8MasterCopy).
    CudaSession::Fp8MasterCopy &c =
        s.fp8MasterCopy(w.ptr, br, bc, size_t(w.numel()), size_t(E * sr * sc) * 4);
    if (!c.current) {
      s.launch(inst("fp8_quantize_blocks", {0}), {unsigned(E * sr * sc), 1, 1}, {256, 1, 1}, 0,
               argv(w.ptr, c.codes, c.scales, N, K, br, bc, c.codesT, c.scalesT),
               k + " (FP8 training: the master weight quantized)");
      c.current = true;
    }
    q = {c.codes, c.scales, br, bc};
    if (transposed)
      *transposed = {c.codesT, c.scalesT, bc, br};
    return q;
  }
  q.w = s.workspace(size_t(w.numel()));
  q.scale = s.workspace(size_t(E * sr * sc) * 4);
  q.br = br;
  q.bc = bc;
  CUdeviceptr codesT = 0, scalesT = 0;
  if (transposed) {
    // Its blocks are [bc, br] (the GEMM checks that it can take them).
    codesT = transposed->w = s.workspace(size_t(w.numel()));
    scalesT = transposed->scale = s.workspace(size_t(E * sr * sc) * 4);
    transposed->br = bc;
    transposed->bc = br;
  }
  s.launch(inst("fp8_quantize_blocks", {0}), {unsigned(E * sr * sc), 1, 1}, {256, 1, 1}, 0,
           argv(w.ptr, q.w, q.scale, N, K, br, bc, codesT, scalesT),
           k + " (FP8 training: the master weight quantized)");
  return q;
}

Fp8Weight fp8Operand(CudaSession &s, const std::string &k, const json &p, const Ins &in,
                     size_t i) {
  // Under fp8_compute every matrix operand a launcher asks for is a
  // projection of the official FP8 set; vectors (norms, biases) stay fp32.
  if (p.contains("fp8_compute") && fp8ScalesInput(p, i) < 0)
    return in.at(i)->shape.size() >= 2 ? fp8MasterWeight(s, k, p, *in[i]) : Fp8Weight();
  return fp8Of(p, in, i);
}

namespace {
/// A TMA map of the row-major matrix [rows, K] at `base` (elements of
/// `bytes` bytes, row stride K), read in boxes of 128 bytes of a row x
/// boxRows rows, 128B-swizzled (the wgmma descriptors' layout);
/// out-of-range elements read as zeros.
CUtensorMap tmaMap(CudaSession &s, const std::string &what, CUdeviceptr base, i64 rows,
                   int64_t K, int bytes, unsigned boxRows) {
  CUtensorMap map;
  cuuint64_t dims[2] = {cuuint64_t(K), cuuint64_t(rows)};
  cuuint64_t strides[1] = {cuuint64_t(K) * cuuint64_t(bytes)};
  cuuint32_t box[2] = {cuuint32_t(128 / bytes), boxRows}, elementStrides[2] = {1, 1};
  DSV3_CU(s.driver(), tensorMapEncodeTiled, what + " (TMA map)", &map,
          bytes == 4   ? CU_TENSOR_MAP_DATA_TYPE_FLOAT32
          : bytes == 2 ? CU_TENSOR_MAP_DATA_TYPE_BFLOAT16
                       : CU_TENSOR_MAP_DATA_TYPE_UINT8,
          2,
          reinterpret_cast<void *>(base), dims, strides, box, elementStrides,
          CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B,
          CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  return map;
}
CUtensorMap bf16TmaMap(CudaSession &s, const std::string &what, CUdeviceptr base, i64 rows,
                       int64_t K, unsigned boxRows) {
  return tmaMap(s, what, base, rows, K, 2, boxRows);
}
CUtensorMap e4m3TmaMap(CudaSession &s, const std::string &what, CUdeviceptr base, i64 rows,
                       int64_t K, unsigned boxRows = 128) {
  return tmaMap(s, what, base, rows, K, 1, boxRows);
}
/// fp8_gemm_tma_wide's output y [rows, N] as fp32 boxes of 32 columns x
/// 128 rows (wgmmaStoreWideByTma).
CUtensorMap f32TmaMap(CudaSession &s, const std::string &what, CUdeviceptr base, i64 rows,
                      int64_t N) {
  return tmaMap(s, what, base, rows, N, 4, 128);
}
} // namespace

/// A kernel choice that an environment variable can turn off: false only
/// when `name` is set to "0" (read once per variable: the callers cache it).
bool envNotZero(const char *name) {
  const char *env = std::getenv(name);
  return !(env && std::string(env) == "0");
}

/// An opt-in kernel choice: true only when `name` is set to "1".
bool envIsOne(const char *name) {
  const char *env = std::getenv(name);
  return env && std::string(env) == "1";
}

/// Decode's latency-bound one-row kernels in their few-row forms
/// (rms_norm_rows: the same bits as rms_norm; mla_absorb_q_rows): decode
/// b1 at V3 widths 2.16 -> 2.00 ms on an H200, b32 unchanged
/// (docs/benchmarks.md). DSV3_FEW_ROW_KERNELS=0 turns them off.
bool fewRowKernels() {
  static const bool on = envNotZero("DSV3_FEW_ROW_KERNELS");
  return on;
}

/// The FP8 GEMM's schedule: 0 the few-row CUDA-core kernel (any GPU), 1 the
/// 128 x 128 tensor-core tiles (prefill), 2 the skinny tensor-core kernel
/// (16-row tiles read straight from global memory: decode), on Hopper 3
/// the warpgroup MMA (fp8_gemm_wgmma) and 4 the same fed by TMA
/// (fp8_gemm_tma); 5 the routed experts at a few rows an expert
/// (fp8_gemm_rows_mma, K % 64). The tensor cores need e4m3 MMA (sm_89+), K %
/// 32 and scale blocks of whole column tiles (br % 128, % 8). `schedule` >= 0
/// (or DSV3_FP8_MMA=0..5) forces one where it can run.
int fp8Schedule(CudaSession &s, const Fp8Weight &w, i64 rows, int64_t K, int64_t E,
                int schedule) {
  static const char *force = std::getenv("DSV3_FP8_MMA");
  if (schedule < 0 && force && *force)
    schedule = std::atoi(force);
  bool mma = s.computeCapability() >= 89 && K % 32 == 0;
  bool tiles = mma && w.br % 128 == 0, skinny = mma && w.br % 8 == 0;
  if (schedule == 1)
    return tiles ? 1 : 0;
  if (schedule == 2)
    return skinny ? 2 : 0;
  bool hopper = tiles && s.computeCapability() == 90;
  bool tma = hopper && Driver::get().tensorMapEncodeTiled;
  if (schedule == 3) // wgmma (sm_90a)
    return hopper ? 3 : tiles ? 1 : 0;
  if (schedule == 4) // wgmma fed by TMA (sm_90a)
    return tma ? 4 : hopper ? 3 : tiles ? 1 : 0;
  bool wgmma = hopper && !s.fp32Activations && !s.exactFp8Accumulation;
  // 5: the routed experts at a few rows an expert, weights as the MMA's M
  // operand (fp8_gemm_rows_mma). Checked against the host on the same
  // operands at V3 widths (fp8-gemm, 6x2048x7168 and 300x7168x2048: 1.3e-7)
  // and measured on the bench slice (H200): FP8 decode b32 14.34 -> 8.87 ms
  // a step, b1 2.44 -> 2.20. Like wgmma, it sums a block's products in the
  // tensor cores' order, so sessions that check against the host with exact
  // FP8 accumulation keep the CUDA-core kernels (a last-bit difference there
  // moves a downstream activation's e4m3 code). DSV3_FP8_ROWS_MMA=0: never.
  static const bool rowsMmaOn = envNotZero("DSV3_FP8_ROWS_MMA");
  bool rowsMma = E && mma && K % 64 == 0;
  if (schedule == 5)
    return rowsMma ? 5 : 0;
  rowsMma = rowsMma && rowsMmaOn && !s.fp32Activations && !s.exactFp8Accumulation;
  if (schedule == 0)
    return 0;
  // Measured on the bench slice (H200): one or a few rows a weight (decode
  // of small batches: plain up to 8 rows, grouped under one row per 4
  // experts) stream fastest through the warp-per-column kernel (batch 1:
  // 3.46 ms a step, 7.66 with the skinny kernel); up to 32 rows, or about a
  // row an expert, the skinny kernel (batch 32: 23.1 ms, 41.6 with the
  // few-row kernel); past that the 64 x 64 tiles.
  // Many rows: on Hopper the warpgroup MMA fed by TMA (fp8_gemm_tma: 834
  // TFLOP/s at 8192 x 18432 x 7168 on an H200, fp8_gemm_wgmma 477,
  // fp8_gemm_tc 204).
  if (E ? rows >= 2 * E : rows > 32)
    return wgmma ? (tma ? 4 : 3) : tiles ? 1 : skinny ? 2 : 0;
  if (rowsMma)
    return 5;
  if (E ? 4 * rows < E : rows <= kFewRows)
    return 0;
  return skinny ? 2 : 0;
}

/// fp8_gemm_tma's two consumer warpgroups take turns issuing each K block's
/// MMAs, so the tensor cores run one's block while the other waits for and
/// promotes its own (they otherwise issue together and promote together,
/// ncu: 33% of the stall samples on the MMA wait, the tensor pipe 44%
/// busy). H200: 8192 x 18432 x 7168 752 -> 835 TFLOP/s, 8192 x 7168 x
/// 16384 704 -> 754, FP8 prefill 4 x 2048 67.3 -> 64.2 ms; the same sums
/// in the same order. DSV3_FP8_PINGPONG=0: issue together.
static int fp8TmaPingpong() {
  static const int on = envNotZero("DSV3_FP8_PINGPONG") ? 1 : 0;
  return on;
}

/// Whether an FP8 GEMM on the TMA schedule takes the 128 x 256 tiles
/// (fp8_gemm_tma_wide: a quarter less L2 traffic a product; gated, 128
/// gate and 128 up rows a tile): its weight scale blocks whole halves (br %
/// 128), and its grid at least two waves (`blocks` of the wide tiles; fewer
/// leave multiprocessors idle that the narrow tiles would fill).
/// DSV3_FP8_WIDE=0: never; 1: wherever the scale blocks allow (checks).
bool fp8TmaWide(CudaSession &s, const Fp8Weight &w, i64 blocks, bool gated) {
  static const bool on = envNotZero("DSV3_FP8_WIDE"), always = envIsOne("DSV3_FP8_WIDE");
  return on && w.br % 128 == 0 && (always || blocks >= 2 * i64(s.multiprocessors())) &&
         s.hasFunction(gated ? "dsv3::fp8_gemm_tma_wide<1>" : "dsv3::fp8_gemm_tma_wide<0>");
}

/// Whether producers may store a GEMM's operand in the form the GEMM
/// reads (DevTensor::Storage: routed rows as bf16 or e4m3, gated outputs as
/// bf16, the attention's output; and an operand two GEMMs read is
/// converted once); DSV3_STORED_OPERANDS=0 keeps every activation float (the same
/// values: each form is what the reader rounded the floats to).
bool storedOperands() {
  static const bool on = envNotZero("DSV3_STORED_OPERANDS");
  return on;
}

/// An FP8 GEMM's activations as its kernels read them: e4m3 codes [rows,
/// K] and their 1x128 scales (the tensor-core schedules), or the quantized
/// values as floats (fp8_gemm_rows).
struct Fp8Rows {
  CUdeviceptr xq = 0, sa = 0, xd = 0;
};

/// Workspace for activations [rows, cols] quantized in `blocks` scale
/// blocks a row: codes and scales, or (codes false) the values as floats.
Fp8Rows fp8RowsWorkspace(CudaSession &s, i64 rows, i64 cols, i64 blocks, bool codes) {
  Fp8Rows q;
  if (codes) {
    q.xq = s.workspace(size_t(rows * cols));
    q.sa = s.workspace(size_t(rows * blocks) * 4);
  } else {
    q.xd = s.workspace(size_t(rows * cols) * 4);
  }
  return q;
}

/// x [rows, K] (row stride ldx) quantized per token per 128 channels
/// (fp8_quantize) into the workspace: codes and scales, or (codes false)
/// the quantized values as floats.
Fp8Rows fp8QuantizeRows(CudaSession &s, const std::string &what, CUdeviceptr x, i64 ldx,
                        i64 rows, int64_t K, bool codes) {
  i64 nb = (K + 127) / 128;
  Fp8Rows q = fp8RowsWorkspace(s, rows, K, nb, codes);
  int nK = int(K);
  s.launch("dsv3::fp8_quantize<0>", {blocks(rows * nb * 32, 256), 1, 1}, {256, 1, 1}, 0,
           argv(x, ldx, q.xq, q.sa, q.xd, rows, nK), what + " (activation quantization)");
  return q;
}

/// Where a buffer stored as e4m3 (DevTensor::Storage::E4m3) keeps the
/// scales of its [rows, K] codes: after them, 256-byte aligned.
CUdeviceptr e4m3ScalesAfter(CUdeviceptr codes, i64 rows, int64_t K) {
  return codes + CUdeviceptr((rows * K + 255) / 256 * 256);
}
CUdeviceptr e4m3StoredScales(const DevTensor &t, i64 rows, int64_t K) {
  return e4m3ScalesAfter(t.ptr, rows, K);
}

/// Whether a plain FP8 GEMM on the TMA schedule runs on cuBLASLt's
/// block-scaled kernel (cublasLtFp8Gemm): Hopper, the library loaded, the
/// DeepSeek-V3 blocks (128 x 128 weights, 1 x 128 activations), whole
/// blocks, and K / 128 a multiple of 4 (H200, cuBLAS 13.0: it takes 300 x
/// 576 x 640 and 300 x 512 x 640 and computes them wrong, 84-87% of max
/// |y|, while 300 x 512 x 1024, 1000 x 1024 x 512 and 1024 x 2048 x 512
/// are right; likely it reads the weight-scale rows as if 16 bytes apart,
/// ours are K / 128 floats apart), at least DSV3_FP8_CUBLAS_ROWS rows
/// (default 256: the prefill's GEMMs; decode keeps its kernels), the
/// artifact's scale transpose, and a shape the library did not refuse
/// before (cublasLtFp8Refused; 1050 rows: no algorithm). Rows a multiple of 4 too: the activations' scale rows are
/// `rows` floats apart, and as K / 128 above showed, a pitch that is not
/// 16 bytes may be taken and read wrong (300, 1000 and 1024 rows checked).
/// DSV3_FP8_CUBLAS=0: never.
bool fp8CublasLt(CudaSession &s, const Fp8Weight &w, i64 rows, int64_t N, int64_t K,
                 bool res) {
  static const bool on = envNotZero("DSV3_FP8_CUBLAS");
  static const i64 minRows = [] {
    const char *env = std::getenv("DSV3_FP8_CUBLAS_ROWS");
    return env && *env ? std::max<i64>(1, std::atoll(env)) : i64(256);
  }();
  return on && s.cublasLt && s.computeCapability() == 90 && w.br == 128 && w.bc == 128 &&
         rows >= minRows && rows % 4 == 0 && K % 512 == 0 && N % 128 == 0 &&
         s.hasFunction("dsv3::fp8_scales_outer_major<0>") &&
         !cublasLtFp8Refused(rows, N, K, res);
}

/// fp8Gemm on activations already quantized, as schedule `sched`
/// (fp8Schedule) reads them.
void fp8GemmQuantized(CudaSession &s, const std::string &what, const Fp8Rows &q, int sched,
                      const Fp8Weight &w, CUdeviceptr b, CUdeviceptr y, i64 rows, int64_t N,
                      int64_t K, CUdeviceptr res, CUdeviceptr counts, int64_t E) {
  if (w.bc != 128)
    fail("{}: the CUDA FP8 kernels take weight blocks 128 columns wide (the activations' "
         "1x128 blocks); the artifact's are {}x{}",
         what, w.br, w.bc);
  if (rows <= 0)
    return;
  if ((sched > 0 && (!q.xq || !q.sa)) || (sched == 0 && !q.xd))
    fail("{}: FP8 schedule {} reads the activations as {}, which were not made", what, sched,
         sched > 0 ? "e4m3 codes and scales" : "quantized floats");
  int nK = int(K), nN = int(N), br = w.br, e = int(E);
  i64 nb = (K + 127) / 128;
  CUdeviceptr xq = q.xq, sa = q.sa, xd = q.xd;
  static bool warned = false;
  if (s.computeCapability() < 89 && !warned) {
    warned = true;
    fmt::print(stderr, "dsv3-run: warning: this GPU has no FP8 tensor cores (sm_{}): the FP8 "
                       "GEMMs run on CUDA cores (e4m3 weights converted in registers), correct "
                       "but slower than the bf16 artifact\n",
               s.computeCapability());
  }
  CUdeviceptr none = 0;
  if (sched == 5) {
    s.launch("dsv3::fp8_gemm_rows_mma<0>", {unsigned((N + 127) / 128), unsigned(E), 1},
             {256, 1, 1}, 0, argv(xq, sa, w.w, w.scale, b, res, y, nN, nK, br, counts), what);
    return;
  }
  if (sched == 4 && !counts && !b && fp8CublasLt(s, w, rows, N, K, res != 0)) {
    // A plain GEMM of many rows: cuBLASLt's block-scaled FP8 kernel, which
    // beats fp8_gemm_tma(_wide) on the dense shapes (H200, bench/bound.py:
    // 1,208 TFLOP/s at 8192 x 36864 x 7168, 1,322 at 8192 x 7168 x 16384,
    // 1,163 at 8192 x 7168 x 2048; ours 959 / 881 / 633). It reads the
    // activations' scales K-block-major: transposed first.
    CUdeviceptr saT = s.workspace(size_t(rows * nb) * 4);
    int nbI = int(nb);
    s.launch("dsv3::fp8_scales_outer_major<0>", {blocks(rows * nb, 256), 1, 1}, {256, 1, 1},
             0, argv(sa, saT, rows, nbI), what + " (scales for cuBLASLt)");
    bool ran = false;
    s.timedCall("cublasLtMatmul (FP8 block-scaled, fp32 out)", what, [&] {
      ran = cublasLtFp8Gemm(what.c_str(), s.stream(), xq, saT, w.w, w.scale, res, y, rows, N,
                            K);
    });
    if (ran)
      return;
  }
  if (sched == 4) {
    s.countFp8WgmmaLaunch();
    unsigned tiles = gemmRowTiles(what, rows, E);
    int pingpong = fp8TmaPingpong();
    CUtensorMap mapA = e4m3TmaMap(s, what, xq, rows, K);
    CUtensorMap mapB = e4m3TmaMap(s, what, w.w, i64(E ? E : 1) * N, K);
    CUdeviceptr noUp = 0;
    const unsigned wideCols = unsigned((N + 255) / 256);
    if (fp8TmaWide(s, w, i64(wideCols) * ((rows + 127) / 128), false)) {
      // Whole tiles' fp32 sums stored by TMA through shared memory (no bias
      // or residual, y and its rows 16-byte aligned, as a TMA map needs;
      // DSV3_FP8_TMA_STORE=0 never). The same sums: bitwise equal logits,
      // the routed down GEMM's shape 2.7% faster on an H200 (28th session).
      static const bool tmaStore = envNotZero("DSV3_FP8_TMA_STORE");
      int storeByTma = tmaStore && !b && !res && N % 4 == 0 && y % 16 == 0 ? 1 : 0;
      CUtensorMap mapY = storeByTma ? f32TmaMap(s, what, y, rows, N) : mapB;
      s.launch("dsv3::fp8_gemm_tma_wide<0>", {wideCols, tiles, 1}, {384, 1, 1},
               kFp8TmaWideSmem,
               argv(mapA, mapB, mapB, sa, w.scale, noUp, b, res, y, noUp, rows, nN, nK, br,
                    counts, e, tmaTileGroup(counts), pingpong, mapY, storeByTma, MlaKvOut{}),
               what);
      return;
    }
    s.launch("dsv3::fp8_gemm_tma<0>", {unsigned((N + 127) / 128), tiles, 1}, {384, 1, 1},
             kFp8TmaSmem,
             argv(mapA, mapB, mapB, sa, w.scale, noUp, b, res, y, rows, nN, nK, br, counts, e,
                  tmaTileGroup(counts), pingpong),
             what);
    return;
  }
  if (sched == 3) {
    s.countFp8WgmmaLaunch();
    unsigned tiles = gemmRowTiles(what, rows, E);
    s.launch("dsv3::fp8_gemm_wgmma<0>", {unsigned((N + 127) / 128), tiles, 1}, {256, 1, 1},
             kWgmmaSmem,
             argv(xq, sa, w.w, w.scale, b, res, y, rows, nN, nK, br, counts, e, gemmTileGroup()),
             what);
    return;
  }
  if (sched == 1) {
    // 128 x 128 tiles, 16 warps, cp.async three stages (108 KB of shared
    // memory).
    unsigned tiles = gemmRowTiles(what, rows, E);
    s.launch(w.br == 1 ? "dsv3::fp8_gemm_tc<1>" : "dsv3::fp8_gemm_tc<0>",
             {unsigned((N + 127) / 128), tiles, 1}, {512, 1, 1},
             kFp8TcSmem,
             argv(xq, sa, w.w, w.scale, b, res, y, rows, nN, nK, br, counts, e, gemmTileGroup()),
             what);
    return;
  }
  if (sched == 2) {
    // 8 warps a block, 8 columns a warp; K split until every SM has 8
    // blocks (64 warps) streaming weights, the partial sums reduced in fixed
    // order (a warp holds 1 KB of loads in flight: the K loop of one warp
    // alone leaves the memory system idle).
    i64 tiles = (rows + 15) / 16 + E, colBlocks = (N + 63) / 64;
    if (tiles > 65535)
      fail("{}: {} rows exceed the FP8 GEMM grid", what, rows);
    i64 want = 8 * i64(s.multiprocessors());
    i64 splits = std::max<i64>(1, std::min<i64>((want + colBlocks * tiles - 1) / (colBlocks * tiles),
                                                nb / 2));
    int kPer = int((nb + splits - 1) / splits);
    splits = (nb + kPer - 1) / kPer;
    if (E) // grouped: many tiles already
      splits = 1, kPer = int(nb);
    CUdeviceptr part = splits > 1 ? s.workspace(size_t(splits * rows * N) * 4) : 0;
    s.launch("dsv3::fp8_gemm_skinny<0>", {unsigned(colBlocks), unsigned(tiles), unsigned(splits)},
             {256, 1, 1}, 0,
             argv(xq, sa, w.w, w.scale, b, res, y, rows, nN, nK, br, counts, e, kPer, part),
             what);
    if (splits > 1) {
      int nSplits = int(splits);
      s.launch("dsv3::fp8_splitk_reduce<0>", {blocks(rows * N, 256), 1, 1}, {256, 1, 1}, 0,
               argv(part, nSplits, b, res, y, rows, nN), what + " split-K");
    }
    return;
  }
  if (counts) {
    if (rows > 65535)
      fail("{}: {} routed rows exceed the few-row FP8 grid (no FP8 tensor cores here)", what,
           rows);
    s.launch("dsv3::fp8_gemm_rows<0>", {unsigned((N + 7) / 8), unsigned(rows), 1},
             {256, 1, 1}, 0, argv(xd, w.w, w.scale, b, res, y, rows, nN, nK, br, counts, e),
             what);
    return;
  }
  for (i64 r0 = 0; r0 < rows; r0 += kFewRows) { // 8 rows a launch
    i64 n = std::min<i64>(kFewRows, rows - r0);
    CUdeviceptr xd0 = xd + CUdeviceptr(r0 * K) * 4;
    CUdeviceptr y0 = y + CUdeviceptr(r0 * N) * 4, res0 = res ? res + CUdeviceptr(r0 * N) * 4 : 0;
    s.launch("dsv3::fp8_gemm_rows<0>", {unsigned((N + 7) / 8), 1, 1}, {256, 1, 1}, 0,
             argv(xd0, w.w, w.scale, b, res0, y0, n, nN, nK, br, none, e), what);
  }
}

void fp8Gemm(CudaSession &s, const std::string &what, CUdeviceptr x, i64 ldx,
             const Fp8Weight &w, CUdeviceptr b, CUdeviceptr y, i64 rows, int64_t N, int64_t K,
             CUdeviceptr res, CUdeviceptr counts, int64_t E, int schedule) {
  if (rows <= 0)
    return;
  int sched = fp8Schedule(s, w, rows, K, E, schedule);
  fp8GemmQuantized(s, what, fp8QuantizeRows(s, what, x, ldx, rows, K, sched > 0), sched, w, b,
                   y, rows, N, K, res, counts, E);
}

void fp8Dgrad(CudaSession &s, const std::string &what, CUdeviceptr dy, i64 R, int64_t N,
              const Fp8Weight &wT, CUdeviceptr dx, int64_t K, bool accumulate,
              CUdeviceptr counts, int64_t E) {
  if (wT.br != 128 || wT.bc != 128)
    fail("{}: FP8 training's input gradient on the GPU takes 128 x 128 weight blocks "
         "(the transposed weight's are {} x {})",
         what, wT.br, wT.bc);
  fp8Gemm(s, what, dy, N, wT, 0, dx, R, K, N, accumulate ? dx : 0, counts, E);
}

void fp8Wgrad(CudaSession &s, const std::string &what, CUdeviceptr dy, i64 ldy, CUdeviceptr x,
              i64 ldx, i64 R, int64_t N, int64_t K, CUdeviceptr dW) {
  if (R <= 0)
    return;
  const i64 tiles = (R + 127) / 128;
  if (tiles > 65535)
    fail("{}: {} rows exceed FP8 Wgrad's quantization grid", what, R);
  // The schedules that take a scale per weight row (br 1): fp8_gemm_tc<1>
  // (e4m3 tensor cores, fp32 sums) or, without e4m3 MMA, fp8_gemm_rows
  // (CUDA cores, on dy^T's quantized values). For the tensor cores the
  // transposed codes are padded with zeros to whole 128-token tiles (zeros
  // add nothing to the sums; the scales are the tile's own), so any number
  // of tokens runs there: a routed expert's tokens are rarely a multiple of
  // 32, and the CUDA-core kernel made the real run's FP8 step ~50x slower
  // than bf16's.
  const int sched = s.computeCapability() >= 89 ? 1 : 0;
  const i64 Rp = sched ? tiles * 128 : R;
  Fp8Rows a = fp8RowsWorkspace(s, N, Rp, tiles, sched > 0);
  CUdeviceptr xq = s.workspace(size_t(K * Rp)), sx = s.workspace(size_t(K * tiles) * 4);
  CUdeviceptr none = 0;
  int nN = int(N), nK = int(K), noExperts = 0;
  const std::string quantize = inst("fp8_quantize_columns", {0});
  s.launch(quantize, {unsigned((N + 31) / 32), unsigned(tiles), 1}, {256, 1, 1}, 0,
           argv(dy, ldy, a.xq, a.sa, a.xd, R, Rp, nN, none, noExperts),
           what + " (dy^T in 128-token tiles)");
  s.launch(quantize, {unsigned((K + 31) / 32), unsigned(tiles), 1}, {256, 1, 1}, 0,
           argv(x, ldx, xq, sx, none, R, Rp, nK, none, noExperts),
           what + " (x^T in 128-token tiles)");
  // A = dy^T [N, R] in 1 x 128 blocks along the tokens; B = x^T [K, R] with
  // a scale per row and token tile.
  Fp8Weight xt;
  xt.w = xq;
  xt.scale = sx;
  xt.br = 1;
  xt.bc = 128;
  fp8GemmQuantized(s, what, a, sched, xt, 0, dW, N, K, Rp, dW, 0, 0);
}

bool fp8WgradGroupedOn(const CudaSession &s) {
  static const bool on = envNotZero("DSV3_FP8_WGRAD_GROUPED");
  return on && s.computeCapability() >= 89;
}

bool fp8WgradGrouped(CudaSession &s, const std::string &what, CUdeviceptr dy, CUdeviceptr x,
                     i64 R, int64_t N, int64_t K, CUdeviceptr counts, int64_t E,
                     CUdeviceptr dW) {
  if (s.computeCapability() < 89 || E < 1 || E > 65535)
    return false;
  // Every expert's tiles: at most R / 128 + E of them (one partial tile an
  // expert), each 128 tokens wide in the transposed codes.
  const i64 tiles = (R + 127) / 128 + E, Kp = tiles * 128;
  if (tiles > 65535 || Kp > 0x7fffffff)
    fail("{}: {} routed rows over {} experts exceed FP8 Wgrad's grid", what, R, E);
  if (R <= 0)
    return true;
  CUdeviceptr aq = s.workspace(size_t(N * Kp)), sa = s.workspace(size_t(N * tiles) * 4);
  CUdeviceptr bq = s.workspace(size_t(K * Kp)), sb = s.workspace(size_t(K * tiles) * 4);
  CUdeviceptr none = 0;
  int nN = int(N), nK = int(K), nE = int(E), nKp = int(Kp), br = 1;
  i64 ldy = N, ldx = K;
  const std::string quantize = inst("fp8_quantize_columns", {0});
  s.launch(quantize, {unsigned((N + 31) / 32), unsigned(tiles), 1}, {256, 1, 1}, 0,
           argv(dy, ldy, aq, sa, none, R, Kp, nN, counts, nE),
           what + " (dy^T in every expert's 128-token tiles)");
  s.launch(quantize, {unsigned((K + 31) / 32), unsigned(tiles), 1}, {256, 1, 1}, 0,
           argv(x, ldx, bq, sb, none, R, Kp, nK, counts, nE),
           what + " (x^T in every expert's 128-token tiles)");
  // A = dy^T [N, Kp], B = x^T [K, Kp] with a scale per row and tile; expert
  // z sums its own tiles into dW + z N K.
  s.launch(inst("fp8_gemm_tc", {2}),
           {unsigned((K + 127) / 128), unsigned((N + 127) / 128), unsigned(E)}, {512, 1, 1},
           kFp8TcSmem,
           argv(aq, sa, bq, sb, none, dW, dW, N, nK, nKp, br, counts, nE, gemmTileGroup()), what);
  return true;
}

/// Whether the gated FP8 GEMM on the TMA schedule runs as one kernel
/// (fp8_gemm_tma<1>: its 64-row weight tiles within one scale block);
/// DSV3_FP8_GATED_TMA=0: two GEMMs and a SwiGLU pass instead.
bool fp8GatedTma(CudaSession &s, const Fp8Weight &w) {
  static const bool on = envNotZero("DSV3_FP8_GATED_TMA");
  return on && w.br % 64 == 0 && s.hasFunction("dsv3::fp8_gemm_tma<1>");
}

/// Whether fp8GatedGemm runs fp8_gemm_tma_wide<1> (or <3>).
bool fp8GatedWide(CudaSession &s, const Fp8Weight &wg, i64 rows, int64_t N, int64_t K,
                  int64_t E) {
  return fp8Schedule(s, wg, rows, K, E, -1) == 4 && fp8GatedTma(s, wg) &&
         fp8TmaWide(s, wg, ((N + 127) / 128) * ((rows + 127) / 128), true);
}

/// A launch's inputs that are parameters (its buffers and arguments null):
/// a producer looks at its sole reader's weights.
Ins paramInputs(CudaSession &s, const Launch &launch) {
  Ins w(launch.inputs.size(), nullptr);
  for (size_t i = 0; i < launch.inputs.size(); ++i)
    if (launch.inputs[i].kind == ValueRef::Kind::Param)
      w[i] = s.param(launch.inputs[i].param);
  return w;
}

/// How an FP8 gated GEMM stores its output y [rows, N]: as e4m3 codes with
/// their 1x128 scales after them (DevTensor::Storage::E4m3, the epilogue of
/// fp8_gemm_tma_wide<3>) where y's only reader is an FP8 GEMM on the tensor
/// cores that would quantize it so first (the routed experts' down GEMM,
/// or a linear / linear_add: dense and shared experts' down), else float.
/// The float round trip it saves: 4 bytes written and read back an element
/// (0.54 GB a routed layer of the 4 x 2048 prefill) and a quantize launch.
DevTensor::Storage fp8GatedOutputStorage(CudaSession &s, const DevTensor &y,
                                         const Fp8Weight &wg, i64 rows, int64_t N, int64_t K,
                                         int64_t E) {
  using Storage = DevTensor::Storage;
  const Launch *use = y.reader.launch;
  if (!storedOperands() || !use || y.reader.input != 0 || N % 128 ||
      !fp8GatedWide(s, wg, rows, N, K, E) || !s.hasFunction("dsv3::fp8_gemm_tma_wide<3>"))
    return Storage::F32;
  size_t bytes = size_t((rows * N + 255) / 256 * 256 + rows * (N / 128) * 4);
  if (bytes > y.capacity * 4 || use->params.contains("fp8_compute"))
    return Storage::F32;
  Ins w = paramInputs(s, *use);
  if (w.size() < 2 || !w[1])
    return Storage::F32;
  Fp8Weight fw = fp8Of(use->params, w, 1);
  if (!fw || fw.bc != 128)
    return Storage::F32;
  const DevTensor &wd = *w[1];
  int64_t readerE = 0;
  if (use->kernel == "expert_grouped_matmul" && wd.shape.size() == 3 && wd.dim(2) == N)
    readerE = wd.dim(0);
  else if (!((use->kernel == "linear" || use->kernel == "linear_add") &&
             wd.shape.size() == 2 && wd.dim(1) == N))
    return Storage::F32;
  return fp8Schedule(s, fw, rows, N, readerE, -1) > 0 ? Storage::E4m3 : Storage::F32;
}

/// An FP8 GEMM over activations a producer stored as e4m3 codes and scales
/// (DevTensor::Storage::E4m3): on the tensor-core schedule the producer's
/// storage predicate chose.
void storedFp8Gemm(CudaSession &s, const std::string &what, const DevTensor &x,
                   const Fp8Weight &fw, CUdeviceptr b, CUdeviceptr res, CUdeviceptr y,
                   i64 rows, int64_t N, int64_t K, CUdeviceptr counts = 0, int64_t E = 0) {
  if (!fw)
    fail("kernel {}: its input was stored as e4m3 codes, but its weight is not FP8", what);
  int sched = fp8Schedule(s, fw, rows, K, E, -1);
  if (sched == 0)
    fail("kernel {}: its input was stored as e4m3 codes for the tensor cores, but {} rows "
         "take the few-row FP8 kernel",
         what, rows);
  Fp8Rows q;
  q.xq = x.ptr;
  q.sa = e4m3StoredScales(x, rows, K);
  fp8GemmQuantized(s, what, q, sched, fw, b, y, rows, N, K, res, counts, E);
}

/// SwiGLU of two FP8 GEMMs (gate, up), the activations quantized once for
/// both (or as `stored` holds them: codes and scales a producer wrote,
/// DevTensor::Storage::E4m3): on the TMA schedule one kernel
/// (fp8_gemm_tma_wide<1> with 128 gate and 128 up rows a tile where
/// fp8GatedWide, else fp8_gemm_tma<1>; bitwise the two GEMMs and the
/// SwiGLU pass), else the two GEMMs through the workspace and a SwiGLU
/// pass. yScales: y is stored as e4m3 codes with their scales there
/// (fp8_gemm_tma_wide<3>; fp8GatedOutputStorage decides).
void fp8GatedGemm(CudaSession &s, const std::string &what, CUdeviceptr x, i64 ldx,
                  const Fp8Weight &wg, const Fp8Weight &wu, CUdeviceptr y, i64 rows, int64_t N,
                  int64_t K, CUdeviceptr counts = 0, int64_t E = 0,
                  const Fp8Rows *stored = nullptr, CUdeviceptr yScales = 0) {
  if (!wg || !wu)
    fail("{}: gate and up weights must both be FP8", what);
  if (wg.br != wu.br || wg.bc != wu.bc)
    fail("{}: gate and up weights have different FP8 blocks ({}x{}, {}x{})", what, wg.br,
         wg.bc, wu.br, wu.bc);
  if (rows <= 0)
    return;
  int sched = fp8Schedule(s, wg, rows, K, E, -1);
  if (stored && sched == 0)
    fail("{}: the rows were stored as e4m3 codes for the tensor cores, but {} rows take the "
         "few-row FP8 kernel",
         what, rows);
  if (yScales && !fp8GatedWide(s, wg, rows, N, K, E))
    fail("{}: its output was to be stored as e4m3 codes, which only fp8_gemm_tma_wide<3> "
         "writes",
         what);
  Fp8Rows q = stored ? *stored : fp8QuantizeRows(s, what, x, ldx, rows, K, sched > 0);
  if (sched == 4 && fp8GatedTma(s, wg)) {
    // Both GEMMs in one kernel, SwiGLU in its epilogue.
    s.countFp8WgmmaLaunch();
    unsigned tiles = gemmRowTiles(what, rows, E);
    i64 wRows = i64(E ? E : 1) * N;
    CUtensorMap mapA = e4m3TmaMap(s, what, q.xq, rows, K);
    CUdeviceptr none = 0;
    int nN = int(N), nK = int(K), br = wg.br, e = int(E), pingpong = fp8TmaPingpong();
    if (fp8GatedWide(s, wg, rows, N, K, E)) {
      const int noTmaStore = 0; // (the plain form's store by TMA)
      // 128 gate and 128 up rows a tile; y as e4m3 codes and scales where
      // yScales is given (fp8GatedOutputStorage).
      CUtensorMap mapB = e4m3TmaMap(s, what, wg.w, wRows, K, 128);
      CUtensorMap mapBu = e4m3TmaMap(s, what, wu.w, wRows, K, 128);
      s.launch(yScales ? "dsv3::fp8_gemm_tma_wide<3>" : "dsv3::fp8_gemm_tma_wide<1>",
               {unsigned((N + 127) / 128), tiles, 1}, {384, 1, 1}, kFp8TmaWideSmem,
               argv(mapA, mapB, mapBu, q.sa, wg.scale, wu.scale, none, none, y, yScales, rows,
                    nN, nK, br, counts, e, tmaTileGroup(counts), pingpong, mapB, noTmaStore,
                    MlaKvOut{}),
               what);
      return;
    }
    CUtensorMap mapB = e4m3TmaMap(s, what, wg.w, wRows, K, 64);
    CUtensorMap mapBu = e4m3TmaMap(s, what, wu.w, wRows, K, 64);
    s.launch("dsv3::fp8_gemm_tma<1>", {unsigned((N + 63) / 64), tiles, 1}, {384, 1, 1},
             kFp8TmaSmem,
             argv(mapA, mapB, mapBu, q.sa, wg.scale, wu.scale, none, none, y, rows, nN, nK, br,
                  counts, e, tmaTileGroup(counts), pingpong),
             what);
    return;
  }
  CUdeviceptr g = s.workspace(size_t(rows * N) * 4), u = s.workspace(size_t(rows * N) * 4);
  fp8GemmQuantized(s, what + " gate", q, sched, wg, 0, g, rows, N, K, 0, counts, E);
  fp8GemmQuantized(s, what + " up", q, sched, wu, 0, u, rows, N, K, 0, counts, E);
  i64 n = rows * N;
  s.launch(elementwiseName("swiglu"), {blocks(n, 256), 1, 1}, {256, 1, 1}, 0,
           argv(g, u, y, n), what + " swiglu");
}

/// Whether a GEMM of bf16 weights over `rows` rows rounds its activations
/// to bf16 and runs bf16TcGemm (what bf16 inference computes: half the
/// MMAs of the split-bf16 kernels, pipelined), rather than keeping them
/// fp32 (linear_mma and friends: the host's precision). Not in a session
/// that compares with the host (fp32Activations); DSV3_BF16_GEMM=0 never.
/// From 64 rows (fewer fill no 128-row tile), or on the TMA kernel from 16:
/// decode steps of 16 to 63 rows are bound by the weights' bytes, which it
/// streams near HBM speed (linear_mma read lm_head at 1.2 TB/s at batch
/// 32, the shared expert's 59 MB in 0.4 ms).
bool useBf16Tc(const CudaSession &s, i64 rows, int64_t K) {
  static const bool enabled = envNotZero("DSV3_BF16_GEMM");
  i64 fewest = bf16GemmSchedule(s) == Bf16Gemm::Tma ? 16 : 64;
  return enabled && !s.fp32Activations && K % 8 == 0 && rows >= fewest;
}

/// The bf16 GEMM's kernel. Hopper: the warpgroup MMA fed by TMA
/// (gemm_bf16_tma: 800 TFLOP/s at 8192 x 7168 x 16384 on an H200), where
/// the driver has TMA maps; DSV3_BF16_GEMM=2 the cp.async-fed form
/// (gemm_bf16_wgmma: 443), =1 mma.sync (gemm_bf16_tc: 258, any GPU). All
/// add the same products in the same k16 steps.
Bf16Gemm bf16GemmSchedule(const CudaSession &s) {
  static const int choice = [] {
    const char *env = std::getenv("DSV3_BF16_GEMM");
    return env ? std::atoi(env) : 3;
  }();
  if (choice == 1 || s.computeCapability() != 90)
    return Bf16Gemm::Tc;
  if (choice == 3 && Driver::get().tensorMapEncodeTiled)
    return Bf16Gemm::Tma;
  return Bf16Gemm::Wgmma;
}

std::string bf16GemmKernel(const CudaSession &s) {
  switch (bf16GemmSchedule(s)) {
  case Bf16Gemm::Tma:
    return bf16TmaName(false);
  case Bf16Gemm::Wgmma:
    return bf16WgmmaName(false, false);
  case Bf16Gemm::Tc:
    break;
  }
  return bf16TcName(false);
}


/// y [rows, K] = x (rows ldx apart; K % 2 == 0, ldx even, x 8-byte
/// aligned) rounded to bf16: eight elements a thread where K, ldx and x
/// allow 16-byte accesses (and the artifact has that form), else a pair.
void launchToBf16(CudaSession &s, const std::string &what, CUdeviceptr x, i64 ldx, i64 rows,
                  i64 K, CUdeviceptr y) {
  const bool wide = K % 8 == 0 && ldx % 4 == 0 && (x & 15) == 0 && (y & 15) == 0 &&
                    s.hasFunction(toBf16Name(true));
  int nK = int(K);
  s.launch(toBf16Name(wide), {blocks(rows * K / (wide ? 8 : 2), 256), 1, 1}, {256, 1, 1}, 0,
           argv(x, ldx, rows, nK, y), what);
}

/// x [rows, K] (row stride ldx) rounded to bf16 rows in the workspace
/// (to_bf16), as the bf16 GEMMs read them.
CUdeviceptr roundRowsToBf16(CudaSession &s, const std::string &what, CUdeviceptr x, i64 ldx,
                            i64 rows, int64_t K) {
  if (K % 8 || ldx % 2 || (x & 7))
    fail("{}: gemm_bf16_tc needs K % 8 == 0 and aligned operands", what);
  CUdeviceptr xb = s.workspace(size_t(rows * K) * 2);
  launchToBf16(s, what + " to bf16", x, ldx, rows, K, xb);
  return xb;
}

void bf16TcGemm(CudaSession &s, const std::string &what, CUdeviceptr x, i64 ldx,
                CUdeviceptr W, CUdeviceptr Wu, CUdeviceptr b, CUdeviceptr res, CUdeviceptr y,
                i64 rows, int64_t N, int64_t K, CUdeviceptr counts, int64_t E, bool bf16Out) {
  CUdeviceptr xb = roundRowsToBf16(s, what, x, ldx, rows, K);
  bf16RoundedGemm(s, what, xb, W, Wu, b, res, y, rows, N, K, counts, E, bf16Out);
}

void bf16RoundedGemm(CudaSession &s, const std::string &what, CUdeviceptr xb, CUdeviceptr W,
                     CUdeviceptr Wu, CUdeviceptr b, CUdeviceptr res, CUdeviceptr y, i64 rows,
                     int64_t N, int64_t K, CUdeviceptr counts, int64_t E, bool bf16Out) {
  if (K % 8 || (xb & 15) || (W & 15) || (Wu & 15))
    fail("{}: gemm_bf16_tc needs K % 8 == 0 and aligned operands", what);
  if ((b || res) && Wu)
    fail("{}: the gated bf16 GEMM has no bias or residual epilogue", what);
  if (bf16Out && (!Wu || bf16GemmSchedule(s) != Bf16Gemm::Tma))
    fail("{}: only the gated gemm_bf16_tma stores bf16 (DevTensor::Storage::Bf16)", what);
  s.countBf16ActivationLaunch();
  if (!Wu && !counts && !b && rows >= cublasRows() && s.cublasLt) {
    // Plain GEMMs of many rows: cuBLASLt (docs/benchmarks.md: its kernels
    // beat gemm_bf16_tma on the prefill's and training's shapes).
    s.timedCall("cublasLtMatmul (bf16, fp32 out)", what, [&] {
      cublasLtGemm(what.c_str(), s.stream(), xb, W, res, y, rows, N, K);
    });
    return;
  }
  int nN = int(N), nK = int(K), nE = int(E);
  int64_t bn = Wu ? 64 : 128;
  unsigned tiles = gemmRowTiles(what, rows, counts ? E : 0);
  Bf16Gemm schedule = bf16GemmSchedule(s);
  if (schedule == Bf16Gemm::Tma) {
    // 128 x 256 tiles (gated: 128 columns), 4 stages of 48 KB.
    int64_t tn = Wu ? 128 : 256;
    i64 wRows = i64(counts ? E : 1) * N;
    CUtensorMap mapA = bf16TmaMap(s, what, xb, rows, K, 128);
    CUtensorMap mapB = bf16TmaMap(s, what, W, wRows, K, unsigned(tn));
    CUtensorMap mapBu = Wu ? bf16TmaMap(s, what, Wu, wRows, K, 128) : mapB;
    CUdeviceptr noSegments = 0;
    i64 noBatch = 0;
    int tilesX = int((N + tn - 1) / tn), tilesY = int(tiles);
    // Persistent (DSV3_GEMM_PERSISTENT=1, opt-in): a block a
    // multiprocessor walks the tiles, copying the next tile's K steps while
    // it stores the last one's results. Measured slower on the bench
    // slice's prefill (80.8 ms against 76.8, H200): the consumers still
    // store before the next tile's MMAs, and the stride loses the grid's
    // row-group order across SMs (docs/benchmarks.md).
    static const bool persistent = envIsOne("DSV3_GEMM_PERSISTENT");
    i64 all = i64(tilesX) * tilesY;
    Dim3 grid = {unsigned(tilesX), unsigned(tilesY), 1};
    if (persistent && all > s.multiprocessors())
      grid = {unsigned(s.multiprocessors()), 1, 1};
    s.launch(bf16TmaName(Wu != 0, bf16Out), grid, {384, 1, 1}, kBf16TmaSmem,
             argv(mapA, mapB, mapBu, b, res, y, rows, nN, nK, counts, nE, tmaTileGroup(counts),
                  noSegments, noBatch, tilesX, tilesY),
             what);
    return;
  }
  if (schedule == Bf16Gemm::Wgmma) {
    // 256 weight rows a tile (prefill 4 x 2048 of the bench slice on an
    // H200: 114 ms, against 144 with 128); DSV3_BF16_WIDE=0: 128.
    static const bool wide = envNotZero("DSV3_BF16_WIDE");
    int64_t wn = wide ? 2 * bn : bn;
    s.launch(bf16WgmmaName(Wu != 0, wide), {unsigned((N + wn - 1) / wn), tiles, 1}, {256, 1, 1},
             wide ? kWgmmaWideSmem : kWgmmaSmem,
             argv(xb, W, Wu, b, res, y, rows, nN, nK, counts, nE, gemmTileGroup()), what);
    return;
  }
  s.launch(bf16TcName(Wu != 0), {unsigned((N + bn - 1) / bn), tiles, 1}, {256, 1, 1},
           size_t(3 * 2 * 128 * 40 * 2),
           argv(xb, W, Wu, b, res, y, rows, nN, nK, counts, nE, gemmTileGroup()),
           what);
}

/// y[rows, N] = x[rows, K] (row stride ldx) W^T (+ b).
void gemm(CudaSession &s, const std::string &what, CUdeviceptr x, i64 ldx,
          CUdeviceptr W, CUdeviceptr b, CUdeviceptr y, i64 rows, int64_t N,
          int64_t K, bool bf16, CUdeviceptr res, const Fp8Weight *fp8) {
  if (fp8 && *fp8)
    return fp8Gemm(s, what, x, ldx, *fp8, b, y, rows, N, K, res);
  if (rows <= kFewRows && bf16 && linearRowsMmaFits(K) && ldx % 4 == 0 && (x & 15) == 0 &&
      !simtGemm()) {
    // decode: weights as the MMA's M operand, 16 a block; K split over
    // blocks until there are ~4 a multiprocessor.
    i64 groups = (N + 15) / 16, want = 4 * i64(s.multiprocessors());
    i64 splits = std::max<i64>(1, std::min<i64>((want + groups - 1) / groups, K / 256));
    int kChunk = int((K + splits - 1) / splits + 255) / 256 * 256;
    splits = (K + kChunk - 1) / kChunk;
    CUdeviceptr part = splits > 1 ? s.workspace(size_t(splits * rows * N) * 4) : 0;
    s.launch(linearRowsMmaName(N, K), {unsigned(groups), unsigned(splits), 1}, {256, 1, 1}, 0,
             argv(x, ldx, W, b, res, y, rows, kChunk, part), what);
    if (splits > 1) {
      int nSplits = int(splits);
      s.launch(splitkReduceName(N), {blocks(rows * N, 256), 1, 1}, {256, 1, 1}, 0,
               argv(part, nSplits, b, res, y, rows), what + " split-K");
    }
  } else if (rows <= kFewRows) // decode: a warp per output column, 8 per block
    s.launch(linearRowsName(N, K, bf16), {unsigned((N + 7) / 8), 1, 1}, {256, 1, 1}, 0,
             argv(x, ldx, W, b, res, y, rows), what);
  else if (bf16 && useBf16Tc(s, rows, K))
    bf16TcGemm(s, what, x, ldx, W, 0, b, res, y, rows, N, K, 0, 0);
  else if (bf16) { // tensor cores, 64 x 64 tiles, split-K when they are few
    i64 tiles = ((N + 63) / 64) * ((rows + 63) / 64), want = 4 * i64(s.multiprocessors());
    i64 splits = std::max<i64>(1, std::min<i64>((want + tiles - 1) / tiles, K / 256));
    int kChunk = int((K + splits - 1) / splits + 31) / 32 * 32;
    splits = (K + kChunk - 1) / kChunk;
    CUdeviceptr part = splits > 1 ? s.workspace(size_t(splits * rows * N) * 4) : 0;
    s.launch(linearMmaName(N, K),
             {unsigned((N + 63) / 64), unsigned((rows + 63) / 64), unsigned(splits)},
             {128, 1, 1}, 0, argv(x, ldx, W, b, res, y, rows, kChunk, part), what);
    if (splits > 1) {
      int nSplits = int(splits);
      s.launch(splitkReduceName(N), {blocks(rows * N, 256), 1, 1}, {256, 1, 1}, 0,
               argv(part, nSplits, b, res, y, rows), what + " split-K");
    }
  } else if (!simtGemm()) { // fp32 weights: split-bf16 tensor cores
    GemmArgs g = gemmArgs(rows, N, K, rowMajor(x, ldx), transposed(W, K), y, N);
    g.bias = b;
    g.res = res;
    stridedGemm(s, what, g);
  } else
    s.launch(linearName(N, K, bf16), {unsigned((N + 15) / 16), unsigned((rows + 15) / 16), 1},
             {16, 16, 1}, 0, argv(x, ldx, W, b, res, y, rows), what);
}

int64_t cublasRows() {
  static const int64_t rows = [] {
    const char *env = std::getenv("DSV3_CUBLAS_ROWS");
    return env && *env ? std::max<int64_t>(1, std::atoll(env)) : kCublasRows;
  }();
  return rows;
}

bool simtGemm() {
  static const bool simt = [] {
    const char *env = std::getenv("DSV3_SIMT_GEMM");
    return env && std::string(env) == "1";
  }();
  return simt;
}

namespace {
/// Whether a [rows, cols] view (batches of it `batch` floats apart) can be
/// rounded into K-contiguous bf16 rows: row-major (to_bf16, or
/// to_bf16_padded) or transposed (to_bf16_transposed).
bool bf16Roundable(Mat m, i64 rows, i64 cols, i64 batches, i64 batch) {
  if (m.cs == 1)
    return batches == 1 || batch == rows * m.rs;
  return m.rs == 1 && ((cols + 7) / 8 * 8 + 63) / 64 <= 65535 && batches <= 65535;
}
/// The view rounded into dst [batches * rows, cp] (cp: cols rounded up to
/// 8, zero-padded).
void roundToBf16(CudaSession &s, const std::string &what, Mat m, i64 rows, i64 cols,
                 i64 batches, i64 batch, CUdeviceptr dst) {
  const i64 cp = (cols + 7) / 8 * 8, all = rows * batches;
  if (m.cs == 1 && cp == cols && m.rs % 2 == 0 && (m.p & 7) == 0) {
    launchToBf16(s, what, m.p, m.rs, all, cols, dst);
  } else if (m.cs == 1) {
    s.launch(inst("to_bf16_padded", {0}), {blocks(all * cp, 256), 1, 1}, {256, 1, 1}, 0,
             argv(m.p, m.rs, all, cols, cp, dst), what);
  } else {
    // The view's transpose is row-major: [cols, rows], rows m.cs apart.
    CUdeviceptr none = 0;
    i64 noSegs = 0;
    s.launch(toBf16TransposedName(),
             {unsigned((rows + 63) / 64), unsigned((cp + 63) / 64), unsigned(batches)},
             {256, 1, 1}, 0, argv(m.p, m.cs, batch, cols, rows, cp, dst, none, none, noSegs),
             what);
  }
}

/// Training's per-expert weight gradients (mode 2: C_z += A[:, seg_z]
/// B[seg_z, :], both operands transposed views of row-major activations)
/// on gemm_bf16_tma: both rounded to bf16 with each expert's rows padded to
/// 64 (zeros), one launch over the experts (blockIdx.z), each summing its
/// own K range. Hopper's TMA kernel only.
bool bf16SegmentedGemm(CudaSession &s, const std::string &what, const GemmArgs &g) {
  Mat a{g.A, g.sam, g.sak}, w{g.B, g.sbn, g.sbk};
  if (bf16GemmSchedule(s) != Bf16Gemm::Tma || a.rs != 1 || w.rs != 1 || g.ldc != g.N ||
      g.res || g.bias || g.segs < 1 || g.segs > 65535 || g.M < 16)
    return false;
  const i64 E = g.segs, R = g.K, M = g.M, N = g.N;
  const i64 Kmax = (R + 64 * E + 63) / 64 * 64; // every segment padded to 64
  if ((R + 63) / 64 > 65535 || Kmax > 0x7fffffff)
    return false;
  CUdeviceptr pseg = s.workspace(size_t(E + 1) * 8);
  s.launch(inst("padded_segments", {0}), {1, 1, 1}, {32, 1, 1}, 0, argv(g.seg, E, pseg), what);
  CUdeviceptr xb = s.workspace(size_t(M * Kmax) * 2), wb = s.workspace(size_t(N * Kmax) * 2);
  i64 noBatch = 0;
  // Only each segment's padding is read besides its rows: zero that, not
  // the whole operand (~3 GB a call at train 4 x 4096); artifacts compiled
  // before zero_segment_pads zero it all.
  const bool padsOnly = s.hasFunction("dsv3::zero_segment_pads<0>");
  auto round = [&](Mat m, i64 cols, CUdeviceptr dst) {
    if (!padsOnly)
      zero(s, dst, cols * Kmax / 2, what);
    s.launch(toBf16TransposedName(),
             {unsigned((cols + 63) / 64), unsigned((R + 63) / 64), 1}, {256, 1, 1}, 0,
             argv(m.p, m.cs, noBatch, R, cols, Kmax, dst, g.seg, pseg, E), what + " (to bf16)");
    if (padsOnly)
      s.launch(inst("zero_segment_pads", {0}), {unsigned((cols + 3) / 4), unsigned(E), 1},
               {256, 1, 1}, 0, argv(dst, Kmax, cols, g.seg, pseg), what + " (padding)");
  };
  round(a, M, xb);
  round(w, N, wb);
  s.countBf16ActivationLaunch();
  CUtensorMap mapA = bf16TmaMap(s, what, xb, M, Kmax, 128);
  CUtensorMap mapB = bf16TmaMap(s, what, wb, N, Kmax, 256);
  CUdeviceptr none = 0, y = g.C, res = g.accumulate ? g.C : 0;
  int nN = int(N), nK = int(Kmax), nE = 0;
  i64 yBatch = g.sCb;
  int tilesX = int((N + 255) / 256), tilesY = int(gemmRowTiles(what, M, 0));
  s.launch(bf16TmaName(false), {unsigned(tilesX), unsigned(tilesY), unsigned(E)},
           {384, 1, 1}, kBf16TmaSmem,
           argv(mapA, mapB, mapB, none, res, y, M, nN, nK, none, nE, gemmTileGroup(), pseg,
                yBatch, tilesX, tilesY),
           what);
  return true;
}

/// Training with bf16 compute (CudaSession::bf16Compute): a strided GEMM
/// on the bf16 kernels (gemm_bf16_tma on Hopper, 800 TFLOP/s against
/// gemm_mma's 3xTF32): A and B (each expert's B, grouped) rounded to bf16
/// K-contiguous copies, fp32 products summed in fp32, the bias, residual
/// and accumulation in the epilogue (C += is C = A B + C, each element
/// read and written by one thread). False where it does not apply
/// (batched or per-expert-K forms, strides neither row-major nor
/// transposed, C rows not N apart, few rows): gemm_mma runs those. The
/// per-expert weight gradients (mode 2) go to bf16SegmentedGemm.
bool bf16StridedGemm(CudaSession &s, const std::string &what, const GemmArgs &g) {
  if (s.bf16Compute && !s.fp32Activations && g.mode == 2)
    return bf16SegmentedGemm(s, what, g);
  if (!s.bf16Compute || s.fp32Activations || g.mode == 2 || g.batches != 1 || g.M < 16 ||
      (g.accumulate && g.res) || (g.mode == 1 && (g.bias || g.res)))
    return false;
  if (g.ldc != g.N) { // rows of C wider than N (a slice of a wider matrix)
    GemmArgs t = g;
    t.C = s.workspace(size_t(g.M * g.N) * 4);
    t.ldc = g.N;
    t.res = 0;
    t.accumulate = false;
    if (!bf16StridedGemm(s, what, t))
      return false;
    int acc = g.accumulate ? 1 : 0;
    s.launch(inst("strided_store", {0}), {blocks(g.M * g.N, 256), 1, 1}, {256, 1, 1}, 0,
             argv(t.C, g.M, g.N, g.C, g.ldc, g.res, acc), what);
    return true;
  }
  const i64 E = g.mode == 1 ? g.segs : 0, experts = E ? E : 1;
  Mat a{g.A, g.sam, g.sak}, w{g.B, g.sbn, g.sbk}; // W[n][k] = B[k][n]
  if (!bf16Roundable(a, g.M, g.K, 1, 0) || !bf16Roundable(w, g.N, g.K, experts, g.sBb))
    return false;
  // K padded to a multiple of 8 with zeros in both copies (the bf16 GEMMs'
  // 16-byte rows): the same sums.
  const i64 Kp = (g.K + 7) / 8 * 8;
  CUdeviceptr xb = s.workspace(size_t(g.M * Kp) * 2);
  CUdeviceptr wb = s.workspace(size_t(experts * g.N * Kp) * 2);
  roundToBf16(s, what + " (A to bf16)", a, g.M, g.K, 1, 0, xb);
  roundToBf16(s, what + " (B to bf16)", w, g.N, g.K, experts, g.sBb, wb);
  CUdeviceptr counts = 0;
  if (E) {
    counts = s.workspace(size_t(E) * 8);
    s.launch(inst("segment_counts", {0}), {1, 1, 1}, {256, 1, 1}, 0,
             argv(g.seg, E, counts), what);
  }
  bf16RoundedGemm(s, what, xb, wb, 0, g.bias, g.accumulate ? g.C : g.res, g.C, g.M, g.N, Kp,
                  counts, E);
  return true;
}
} // namespace

void stridedGemm(CudaSession &s, const std::string &what, const GemmArgs &g) {
  if (g.M <= 0 || g.N <= 0 || g.batches == 0)
    return;
  if (bf16StridedGemm(s, what, g))
    return;
  if ((g.M + 63) / 64 > 65535)
    fail("{}: {} rows exceed the GEMM grid", what, g.M);
  Dim3 grid{unsigned((g.N + 63) / 64), unsigned((g.M + 63) / 64), g.batches};
  bool simt = simtGemm();
  if (simt && (g.bias || g.res))
    fail("{}: the CUDA-core GEMM has no bias/residual epilogue", what);
  if (simt)
    s.launch(gemmAnyName(g.mode, g.accumulate), grid, {256, 1, 1}, 0,
             argv(g.A, g.sam, g.sak, g.sAb, g.B, g.sbk, g.sbn, g.sBb, g.C, g.ldc, g.sCb, g.M,
                  g.N, g.K, g.seg, g.segs),
             what);
  else
    s.launch(gemmMmaName(g.mode, g.accumulate), grid, {128, 1, 1}, 0,
             argv(g.A, g.sam, g.sak, g.sAb, g.B, g.sbk, g.sbn, g.sBb, g.C, g.ldc, g.sCb, g.M,
                  g.N, g.K, g.seg, g.segs, g.bias, g.res),
             what);
}

void rmsRows(CudaSession &s, const std::string &what, CUdeviceptr x, CUdeviceptr w,
             CUdeviceptr y, i64 rows, int64_t N, float eps, bool bf16) {
  i64 ld = N;
  std::string name = rmsNormName(N, bf16);
  if (rows <= kFewRows && fewRowKernels() && rmsNormRowsFits(N) &&
      s.hasFunction(rmsNormRowsName(N, bf16)))
    name = rmsNormRowsName(N, bf16);
  s.launch(name, {unsigned(rows), 1, 1}, {256, 1, 1}, 0, argv(x, w, y, rows, eps, ld, ld), what);
}

/// Whether rms_norm can store its rows as `form` (rms_norm_stored in the
/// artifact; compiled before it, the norm writes floats). DSV3_NORM_STORED=0
/// (or DSV3_STORED_OPERANDS=0): never, for an A/B. Both forms gave logits
/// bitwise equal to the float path's on an H100 (thirtieth session,
/// scripts/gpu-norm-stored-check.sh).
bool normStoresAs(CudaSession &s, DevTensor::Storage form, bool bf16, int64_t N) {
  using Storage = DevTensor::Storage;
  static const bool on = envNotZero("DSV3_NORM_STORED");
  if (!on || !storedOperands() || form == Storage::F32 || (form == Storage::Bf16 && N % 2))
    return false;
  return s.hasFunction(instW("rms_norm_stored", {form == Storage::Bf16 ? 1 : 2}, bf16));
}

/// rms_norm of `rows` rows of N into the form their GEMM reads
/// (rms_norm_stored: the same bits as rmsRows then to_bf16 or
/// fp8_quantize): bf16 halves at y, or e4m3 codes at y and their 1x128
/// scales at sa.
void rmsRowsStored(CudaSession &s, const std::string &what, CUdeviceptr x, CUdeviceptr w,
                   CUdeviceptr y, CUdeviceptr sa, i64 rows, int64_t N, float eps, bool bf16,
                   DevTensor::Storage form) {
  if (!normStoresAs(s, form, bf16, N))
    fail("{}: rms_norm cannot store its rows as {} here", what,
         form == DevTensor::Storage::Bf16 ? "bf16" : "e4m3");
  i64 ld = N;
  int nN = int(N);
  s.launch(instW("rms_norm_stored", {form == DevTensor::Storage::Bf16 ? 1 : 2}, bf16),
           {unsigned(rows), 1, 1}, {256, 1, 1}, 0, argv(x, w, y, sa, rows, eps, ld, nN), what);
}

/// The rope frequencies on the device (computed by the host code, uploaded
/// once per rope configuration).
CUdeviceptr invFreq(CudaSession &s, const std::string &k, const json &rope, float &scale) {
  host::Rope<double> r(k, rope);
  scale = float(r.scale);
  return s.constant("rope " + rope.dump(),
                    std::vector<float>(r.invFreq.begin(), r.invFreq.end()));
}

MlaWeights mlaWeights(CudaSession &s, const std::string &k, const json &p, const Ins &in,
                       size_t first) {
  MlaWeights mw;
  const json &seg = p.at("operandSegmentSizes");
  size_t next = 0;
  for (size_t i = 0; i < seg.size(); ++i) {
    int64_t n = seg[i].get<int64_t>();
    if (i >= first && n && i - first < 10) {
      if (next >= in.size())
        fail("MLA launch: operandSegmentSizes name more operands than the launch has");
      mw.w[i - first] = in[next]->ptr;
      mw.operand[i - first] = int64_t(next);
    }
    next += size_t(n);
  }
  if (mw.operand[MlaWeights::O] < 0 || mw.operand[MlaWeights::KVANorm] < 0)
    fail("MLA launch: no o_proj or kv_a_layernorm operand");
  // The model's dtype (FP8 artifacts keep the norms in it).
  mw.bf16 = in[size_t(mw.operand[MlaWeights::KVANorm])]->bf16;
  for (int slot = 0; slot < 10; ++slot)
    if (mw.operand[slot] >= 0)
      mw.fp8[slot] = fp8Operand(s, k, p, in, size_t(mw.operand[slot]));
  return mw;
}

/// The form mlaProject reads its N rows x in: where q_a_proj and kv_a_proj
/// both round them to bf16 (gemm's bf16 tensor-core branch) or quantize them
/// for the FP8 tensor cores (blocks alike), that form, once for both; else
/// floats. A producer that is x's only reader may store x so (rmsNorm).
DevTensor::Storage mlaInputForm(CudaSession &s, const MlaDims &d, const MlaWeights &mw, i64 N) {
  const Fp8Weight &fa = mw.fp8[MlaWeights::QA], &fkv = mw.fp8[MlaWeights::KVA];
  if (!d.rq || !storedOperands())
    return DevTensor::Storage::F32;
  if (!fa && !fkv && mw.bf16 && N > kFewRows && useBf16Tc(s, N, d.H))
    return DevTensor::Storage::Bf16;
  if (fa && fkv && fa.br == fkv.br && fa.bc == fkv.bc && fp8Schedule(s, fa, N, d.H, 0, -1) > 0)
    return DevTensor::Storage::E4m3;
  return DevTensor::Storage::F32;
}

MlaProjections mlaProject(CudaSession &s, const std::string &k, const MlaDims &d,
                          const MlaWeights &mw, CUdeviceptr x, i64 N, float eps,
                          DevTensor::Storage xForm, bool keepNormedQ) {
  using Storage = DevTensor::Storage;
  const CUdeviceptr *w = mw.w;
  int64_t dq = d.dn + d.dr, H = d.H;
  MlaProjections r;
  r.Q = s.workspace(size_t(N * d.nh * dq) * 4);
  r.A = s.workspace(size_t(N * (d.r + d.dr)) * 4);
  // q_a_proj and kv_a_proj read the same x: where both would round it to
  // bf16 or quantize it (mlaInputForm), it is done once for both (the same
  // values, one pass fewer), or the producer stored it so (xForm).
  const Fp8Weight &fa = mw.fp8[0], &fkv = mw.fp8[3];
  const Storage form = mlaInputForm(s, d, mw, N);
  if (xForm != Storage::F32 && xForm != form)
    fail("kernel {}: its input was stored as {}, but q_a_proj and kv_a_proj read {} rows as {}",
         k, xForm == Storage::Bf16 ? "bf16" : "e4m3", N,
         form == Storage::Bf16 ? "bf16" : form == Storage::E4m3 ? "e4m3" : "floats");
  CUdeviceptr xb = 0;
  Fp8Rows xq;
  int sched = -1;
  const bool shared = d.rq && storedOperands();
  if (form == Storage::Bf16) {
    xb = xForm == Storage::Bf16 ? x : roundRowsToBf16(s, k + " q_a_proj, kv_a_proj", x, H, N, H);
  } else if (shared && fa && fkv && fa.br == fkv.br && fa.bc == fkv.bc) {
    sched = fp8Schedule(s, fa, N, H, 0, -1);
    if (xForm == Storage::E4m3) {
      xq.xq = x;
      xq.sa = e4m3ScalesAfter(x, N, H);
    } else {
      xq = fp8QuantizeRows(s, k + " q_a_proj, kv_a_proj", x, H, N, H, sched > 0);
    }
  }
  auto fromX = [&](const std::string &what, CUdeviceptr W, CUdeviceptr b, const Fp8Weight &fw,
                   CUdeviceptr y, int64_t outN) {
    if (xb)
      bf16RoundedGemm(s, what, xb, W, 0, b, 0, y, N, outN, H, 0, 0);
    else if (sched >= 0)
      fp8GemmQuantized(s, what, xq, sched, fw, b, y, N, outN, H, 0, 0, 0);
    else
      gemm(s, what, x, H, W, b, y, N, outN, H, mw.bf16, 0, &fw);
  };
  if (d.rq) {
    r.QA = s.workspace(size_t(N * d.rq) * 4);
    fromX(k + " q_a_proj", w[0], w[7], fa, r.QA, d.rq);
    // Without a backward to read the normed queries, q_a_layernorm stores
    // them in the form q_b_proj reads them (rms_norm_stored; same bits).
    const Fp8Weight &fq = mw.fp8[MlaWeights::Q];
    const int qbSched = fq ? fp8Schedule(s, fq, N, d.rq, 0, -1) : -1;
    const bool qbRounds = !fq && mw.bf16 && N > kFewRows && useBf16Tc(s, N, d.rq);
    const std::string qn = k + " q_a_layernorm";
    if (!keepNormedQ && qbSched > 0 && normStoresAs(s, Storage::E4m3, mw.bf16, d.rq)) {
      Fp8Rows q = fp8RowsWorkspace(s, N, d.rq, (d.rq + 127) / 128, true);
      rmsRowsStored(s, qn, r.QA, w[1], q.xq, q.sa, N, d.rq, eps, mw.bf16, Storage::E4m3);
      fp8GemmQuantized(s, k + " q_b_proj", q, qbSched, fq, 0, r.Q, N, d.nh * dq, d.rq, 0, 0, 0);
    } else if (!keepNormedQ && qbRounds && normStoresAs(s, Storage::Bf16, mw.bf16, d.rq)) {
      CUdeviceptr qb = s.workspace(size_t(N * d.rq) * 2);
      rmsRowsStored(s, qn, r.QA, w[1], qb, 0, N, d.rq, eps, mw.bf16, Storage::Bf16);
      bf16RoundedGemm(s, k + " q_b_proj", qb, w[2], 0, 0, 0, r.Q, N, d.nh * dq, d.rq, 0, 0);
    } else {
      r.QN = s.workspace(size_t(N * d.rq) * 4);
      rmsRows(s, qn, r.QA, w[1], r.QN, N, d.rq, eps, mw.bf16);
      gemm(s, k + " q_b_proj", r.QN, d.rq, w[2], 0, r.Q, N, d.nh * dq, d.rq, mw.bf16, 0,
           &mw.fp8[2]);
    }
  } else {
    gemm(s, k + " q_proj", x, H, w[2], 0, r.Q, N, d.nh * dq, H, mw.bf16, 0, &mw.fp8[2]);
  }
  fromX(k + " kv_a_proj", w[3], w[8], fkv, r.A, d.r + d.dr);
  return r;
}

MlaLatent mlaLatent(CudaSession &s, const std::string &k, const json &p, const MlaDims &d,
                    const MlaWeights &mw, const MlaProjections &proj, i64 B, i64 T,
                    float eps, bool expandU) {
  i64 N = B * T, S = 0;
  MlaLatent r;
  r.L = s.workspace(size_t(N * (d.r + d.dr)) * 4);
  r.U = expandU ? s.workspace(size_t(N * d.nh * (d.dn + d.dv)) * 4) : 0;
  float scale;
  CUdeviceptr freq = invFreq(s, k, p.at("rope"), scale);
  bool interleaved = p.at("rope").at("interleaved").get<bool>();
  CUdeviceptr none = 0, A = proj.A, Q = proj.Q, kvNorm = mw.w[MlaWeights::KVANorm];
  int noCacheForm = 0;
  s.launch(mlaPrepareName(d, interleaved, mw.bf16), {unsigned(N), 1, 1}, {128, 1, 1}, 0,
           argv(A, kvNorm, r.L, Q, B, T, none, none, S, freq, scale, eps, noCacheForm), k);
  if (expandU)
    gemm(s, k + " kv_b_proj", r.L, d.r + d.dr, mw.w[MlaWeights::KVB], 0, r.U, N,
         d.nh * (d.dn + d.dv), d.r, mw.bf16, 0, &mw.fp8[MlaWeights::KVB]);
  return r;
}

void zero(CudaSession &s, CUdeviceptr p, i64 n, const std::string &what) {
  if (n > 0)
    DSV3_CU(s.driver(), memsetD32Async, "zeroing " + what, p, 0u, size_t(n), s.stream());
}

void dispatchPlan(CudaSession &s, const std::string &k, int64_t E, int64_t K,
                  CUdeviceptr indices, CUdeviceptr counts, CUdeviceptr slots, i64 R) {
  i64 chunks = std::max<i64>(1, (R + 1023) / 1024); // DSV3_DISPATCH_CHUNK
  if (chunks > 65535)
    fail("{}: {} routed rows exceed the dispatch grid", k, R);
  CUdeviceptr chunkCounts = s.workspace(size_t(chunks * E) * 4);
  s.launch(inst("dispatch_plan", {E, K}), {unsigned(chunks), 1, 1}, {256, 1, 1}, 0,
           argv(indices, R, chunkCounts), k);
  s.launch(inst("dispatch_place", {E, K}), {unsigned(chunks), 1, 1}, {256, 1, 1}, 0,
           argv(indices, R, chunkCounts, counts, slots), k);
}

/// The tile of mla_decode_mma_staged for `rows` query rows, among
/// kDecodeStagedTiles that fit and the artifact has (artifacts from before
/// the groups name none of these: the staged kernel is not used there):
/// 4 groups of 16 heads a block where the rows' 64-head blocks alone fill
/// every multiprocessor, else 2. H200, decode on the bench slice, same
/// call: batch 128 16.60 / 16.61 ms with 2, 16.50 / 16.46 with 4 (each
/// latent tile staged and converted once for 64 heads); batch 32 9.87
/// with 2, 10.09 with 4 (64 blocks: 5 key splits to fill the GPU, each
/// merged). DSV3_DECODE_STAGED_GROUPS=2 or 4 asks for that many. groups
/// 0: none.
DecodeStagedTile decodeStagedTile(const CudaSession &s, const MlaDims &d, i64 rows) {
  static const int64_t asked = [] {
    const char *env = std::getenv("DSV3_DECODE_STAGED_GROUPS");
    return int64_t(env && *env ? std::atoll(env) : 0);
  }();
  const int64_t want =
      asked ? asked : rows * ((d.nh + 63) / 64) >= i64(s.multiprocessors()) ? 4 : 2;
  DecodeStagedTile other = {0, 0, 0};
  for (const DecodeStagedTile &t : kDecodeStagedTiles)
    if (mlaDecodeStagedFits(d, t) && s.hasFunction(mlaDecodeStagedName(d, t))) {
      if (t.groups == want)
        return t;
      if (!asked && !other.groups)
        other = t;
    }
  return other;
}

int64_t mlaDecodeHeadsPerBlock(const CudaSession &s, DecodeKernel kernel, const MlaDims &d,
                               i64 rows) {
  return kernel == DecodeKernel::Staged ? 16 * decodeStagedTile(s, d, rows).groups
         : kernel == DecodeKernel::Mma  ? 16
                                        : mlaDecodeHeads(d);
}

void mlaDecodeAttention(CudaSession &s, const std::string &k, const MlaDims &d,
                        DecodeKernel kernel, CUdeviceptr qt, CUdeviceptr cache, CUdeviceptr past,
                        CUdeviceptr part, CUdeviceptr ml, CUdeviceptr ot, i64 rows, i64 splits,
                        i64 splitLen, i64 rowBase, i64 T, i64 S, float softmaxScale,
                        DecodeStagedTile staged) {
  const DecodeStagedTile tile = staged.groups ? staged : decodeStagedTile(s, d, rows);
  int64_t W = d.r + d.dr,
          HB = kernel == DecodeKernel::Staged ? 16 * tile.groups
                                              : mlaDecodeHeadsPerBlock(s, kernel, d, rows),
          groups = (d.nh + HB - 1) / HB;
  if (kernel == DecodeKernel::Staged) {
    if (!tile.groups)
      fail("kernel {}: mla_decode_mma_staged does not fit these widths", k);
    s.countBf16ActivationLaunch();
    s.launch(mlaDecodeStagedName(d, tile), {unsigned(splits), unsigned(groups), unsigned(rows)},
             {unsigned(128 * tile.groups), 1, 1}, mlaDecodeStagedSmem(d, tile),
             argv(qt, cache, past, part, ml, T, S, splitLen, rowBase, softmaxScale), k);
  } else if (kernel == DecodeKernel::Mma) {
    s.countBf16ActivationLaunch();
    s.launch(mlaDecodeMmaName(d), {unsigned(splits), unsigned(groups), unsigned(rows)},
             {128, 1, 1}, 0,
             argv(qt, cache, past, part, ml, T, S, splitLen, rowBase, softmaxScale), k);
  } else {
    size_t smem = size_t((HB + 16) * (W + 1) + HB * 16) * 4;
    s.launch(mlaDecodeNames(d, false)[1], {unsigned(splits), unsigned(groups), unsigned(rows)},
             {256, 1, 1}, smem,
             argv(qt, cache, past, part, ml, T, S, splitLen, rowBase, softmaxScale), k);
  }
  s.launch(mlaDecodeNames(d, false)[2], {unsigned(d.nh), unsigned(rows), 1}, {128, 1, 1}, 0,
           argv(part, ml, ot, splits), k);
}

CUdeviceptr zeroPast(CudaSession &s) {
  return s.constant("a zero past length", std::vector<float>(2, 0.f)); // one i64 0
}

/// Whether the tensor-core prefill attention runs on the warpgroup MMA
/// (mla_prefill_wgmma, Hopper) rather than on mma.sync (mla_prefill_mma):
/// where the artifact has it. DSV3_PREFILL_WGMMA=0 never.
bool usePrefillWgmma(CudaSession &s, const MlaDims &d) {
  static const bool enabled = envNotZero("DSV3_PREFILL_WGMMA");
  return enabled && s.computeCapability() == 90 && mlaPrefillWgmmaFits(d) &&
         s.hasFunction(mlaPrefillWgmmaName(d));
}

bool useMlaKvFp8(CudaSession &s, const MlaDims &d, const Fp8Weight &kvb) {
  // DSV3_MLA_KV_FP8=0 never. Bitwise equal to the unfused path on the same
  // wide kernel (gpu-prefill-tma-check.sh 2b, H200, 28th session).
  static const bool on = envNotZero("DSV3_MLA_KV_FP8");
  // (Sessions that hold the FP8 GEMMs to the host's sums keep kv_b_proj on
  // the schedule fp8Schedule picks for them.)
  return on && kvb && kvb.br == 128 && kvb.bc == 128 && d.dn == 128 && d.dv == 128 &&
         d.r % 128 == 0 && !s.fp32Activations && !s.exactFp8Accumulation &&
         Driver::get().tensorMapEncodeTiled && usePrefillWgmma(s, d) &&
         s.hasFunction("dsv3::fp8_gemm_tma_wide<4>");
}

/// kv_b_proj (FP8 weight kvb [NH x 256, R]) over one sequence's S latent
/// rows `rows` [S, R + DR], stored as the warpgroup-MMA attention's keys kb
/// [NH, S, DQ] and transposed values vt [NH, DV, Sp] (useMlaKvFp8): the
/// latents quantized as fp8Gemm would, then fp8_gemm_tma_wide<4>, whose
/// sums are those of the plain wide GEMM (DSV3_FP8_CUBLAS=0: the same bits
/// as kv_b_proj's fp32 output packed by mla_pack_kv and mla_pack_vt).
static void mlaKvExpandFp8(CudaSession &s, const std::string &k, const MlaDims &d,
                           const Fp8Weight &kvb, CUdeviceptr rows, i64 S, i64 Sp,
                           CUdeviceptr kb, CUdeviceptr vt) {
  const std::string what = k + " kv_b_proj (keys and values for the attention)";
  const int64_t W = d.r + d.dr, N = d.nh * 256;
  if (Sp > S) // the values' padding keys: zeros, as mla_pack_vt writes them
    zero(s, vt, d.nh * d.dv * Sp / 2, what + " (padding)");
  Fp8Rows q = fp8QuantizeRows(s, what, rows, W, S, d.r, true);
  s.countFp8WgmmaLaunch();
  CUtensorMap mapA = e4m3TmaMap(s, what, q.xq, S, d.r);
  CUtensorMap mapB = e4m3TmaMap(s, what, kvb.w, N, d.r);
  MlaKvOut kv;
  kv.kb = kb;
  kv.vt = vt;
  kv.rows = rows;
  kv.S = S;
  kv.Sp = Sp;
  kv.W = int(W);
  kv.R = int(d.r);
  kv.DR = int(d.dr);
  CUdeviceptr none = 0;
  int nN = int(N), nK = int(d.r), br = kvb.br, e = 0, tileGroup = tmaTileGroup(0),
      pingpong = fp8TmaPingpong(), noTmaStore = 0;
  s.launch("dsv3::fp8_gemm_tma_wide<4>", {unsigned(d.nh), gemmRowTiles(what, S, 0), 1},
           {384, 1, 1}, kFp8TmaWideSmem,
           argv(mapA, mapB, mapB, q.sa, kvb.scale, none, none, none, none, none, S, nN, nK, br,
                none, e, tileGroup, pingpong, mapB, noTmaStore, kv),
           what);
}

/// Whether the Hopper prefill attention runs on 128-key tiles fed by TMA
/// (mla_prefill_tma) rather than mla_prefill_wgmma's 64-key tiles: where
/// the artifact has it; DSV3_PREFILL_TMA=0 never. Checked against float64
/// on seven shapes and timed by scripts/gpu-prefill-tma-check.sh (H200,
/// 28th session: causal 4096 1.59 against 2.10 ms).
bool usePrefillTma(CudaSession &s, const MlaDims &d) {
  static const bool enabled = envNotZero("DSV3_PREFILL_TMA");
  return enabled && Driver::get().tensorMapEncodeTiled && usePrefillWgmma(s, d) &&
         mlaPrefillTmaFits(d) && s.hasFunction(mlaPrefillTmaName(d));
}

void mlaPrefillAttention(CudaSession &s, const std::string &k, const MlaDims &d, bool mma,
                         CUdeviceptr q, CUdeviceptr u, CUdeviceptr rows, CUdeviceptr past,
                         i64 b, CUdeviceptr o, i64 T, i64 S, float softmaxScale,
                         CUdeviceptr lse, PrefillKernel kernel, AttentionOut out,
                         CUdeviceptr oScales, const Fp8Weight *kvb) {
  if (kvb && !(mma && kernel != PrefillKernel::Mma && useMlaKvFp8(s, d, *kvb)))
    fail("{}: kv_b_proj was left to the attention, whose kernel cannot take it", k);
  if (out != AttentionOut::F32 && !mma)
    fail("{}: only the tensor-core prefill attention stores its output as bf16 or e4m3", k);
  if (out == AttentionOut::E4m3 && (d.dv != 128 || !oScales))
    fail("{}: the attention stores e4m3 rows (one 1x128 block a head) only with v_head_dim "
         "128 and a scales buffer",
         k);
  int oForm = out == AttentionOut::Bf16 ? 1 : out == AttentionOut::E4m3 ? 2 : 0;
  if (!mma) {
    s.launch(mlaPrefillCachedName(d), {unsigned((T + 15) / 16), unsigned(d.nh), 1},
             {256, 1, 1}, 0, argv(q, u, rows, past, b, o, T, softmaxScale), k);
    return;
  }
  s.countBf16ActivationLaunch();
  CUdeviceptr kb = s.workspace(size_t(d.nh * S * mlaPad16(d.dn + d.dr)) * 2);
  const bool wgmma = kernel != PrefillKernel::Mma && usePrefillWgmma(s, d);
  if (kernel == PrefillKernel::Wgmma && !wgmma)
    fail("{}: mla_prefill_wgmma asked for, but this GPU, artifact or DSV3_PREFILL_WGMMA=0 "
         "does not run it",
         k);
  const bool tma = wgmma && kernel != PrefillKernel::Wgmma && usePrefillTma(s, d);
  if (kernel == PrefillKernel::Tma && !tma)
    fail("{}: mla_prefill_tma asked for, but this GPU or artifact does not run it, or "
         "DSV3_PREFILL_WGMMA=0, or DSV3_PREFILL_TMA is not 1",
         k);
  if (wgmma) {
    // Values transposed, keys padded with zeros to whole key tiles (64, or
    // mla_prefill_tma's 128: no value box of its lies wholly past the map).
    const i64 keyTile = tma ? 128 : 64, Sp = (S + keyTile - 1) / keyTile * keyTile;
    CUdeviceptr vt = s.workspace(size_t(d.nh * d.dv * Sp) * 2), none = 0;
    if (kvb) {
      mlaKvExpandFp8(s, k, d, *kvb, rows, S, Sp, kb, vt);
    } else {
      s.launch(mlaPackKvName(d), {unsigned(S), 1, 1}, {256, 1, 1}, 0,
               argv(u, rows, S, kb, none), k);
      s.launch(mlaPackVtName(d), {unsigned(Sp / 64), unsigned(d.nh), 1}, {256, 1, 1}, 0,
               argv(u, S, Sp, vt), k);
    }
    if (tma) {
      // Keys [NH S, DQ] in boxes of 64 features x 128 keys, values [NH DV,
      // Sp] in boxes of 64 keys x DV features (past Sp: zeros).
      const int64_t dq = d.dn + d.dr;
      CUtensorMap mapK = bf16TmaMap(s, k, kb, d.nh * S, dq, 128);
      CUtensorMap mapV = bf16TmaMap(s, k, vt, d.nh * d.dv, Sp, unsigned(d.dv));
      s.launch(mlaPrefillTmaName(d), {unsigned((T + 127) / 128), unsigned(d.nh), 1},
               {384, 1, 1}, size_t(mlaPrefillTmaSmem(d)),
               argv(mapK, mapV, q, S, past, b, o, lse, T, softmaxScale, oForm, oScales), k);
      return;
    }
    s.launch(mlaPrefillWgmmaName(d), {unsigned((T + 127) / 128), unsigned(d.nh), 1},
             {256, 1, 1}, size_t(mlaPrefillWgmmaSmem(d)),
             argv(q, kb, vt, Sp, past, b, o, lse, T, S, softmaxScale, oForm, oScales), k);
    return;
  }
  CUdeviceptr vb = s.workspace(size_t(d.nh * S * mlaPad16(d.dv)) * 2);
  s.launch(mlaPackKvName(d), {unsigned(S), 1, 1}, {256, 1, 1}, 0,
           argv(u, rows, S, kb, vb), k);
  s.launch(mlaPrefillMmaName(d), {unsigned((T + 127) / 128), unsigned(d.nh), 1},
           {256, 1, 1}, size_t(mlaPrefillMmaSmem(d)),
           argv(q, kb, vb, past, b, o, lse, T, S, softmaxScale, oForm, oScales), k);
}

namespace {

void embedding(CudaSession &s, const std::string &k, const json &, Ins &in, Ins &out) {
  DevTensor &ids = *in[0], &table = *in[1], &y = *out[0];
  int64_t H = table.dim(1);
  std::vector<int64_t> shape = ids.shape;
  shape.push_back(H);
  setShape(k, y, shape);
  i64 n = ids.numel();
  // A few tokens (decode): each row's columns over several blocks.
  unsigned chunks = n <= kFewRows ? unsigned((H + 127) / 128) : 1;
  s.launch(embeddingName(H, table.bf16), {unsigned(n), chunks, 1}, {128, 1, 1}, 0,
           argv(ids.ptr, table.ptr, y.ptr, n), k);
}

void lastToken(CudaSession &s, const std::string &k, const json &, Ins &in, Ins &out) {
  DevTensor &x = *in[0], &y = *out[0];
  i64 B = x.dim(0), T = x.dim(1), H = x.dim(2);
  if (T < 1)
    fail("kernel {}: no positions to take the last of", k);
  setShape(k, y, {B, 1, H});
  s.launch(inst("last_token", {0}), {unsigned(B), 1, 1}, {256, 1, 1}, 0,
           argv(x.ptr, y.ptr, T, H), k);
}

/// How rms_norm stores y [rows, N]: where y's only reader is an inference
/// MLA launch that reads its input as bf16 or e4m3 rows (mlaInputForm), in
/// that form (rms_norm_stored), else float. What it saves: the normed
/// floats written and read back, and the conversion pass (at the 4 x 2048
/// prefill 1.1 GB of traffic a layer).
DevTensor::Storage normOutputStorage(CudaSession &s, const DevTensor &y, i64 rows, int64_t N,
                                     bool bf16) {
  using Storage = DevTensor::Storage;
  const Launch *use = y.reader.launch;
  // The prefill op returns saved state when training (3 outputs); the
  // decode op's second output is its cache.
  if (!storedOperands() || !use || y.reader.input != 0 || use->params.contains("fp8_compute") ||
      !((use->kernel == "latent_attention" && use->outputs.size() == 1) ||
        use->kernel == "latent_attention_decode"))
    return Storage::F32;
  const size_t first = use->kernel == "latent_attention_decode" ? 3 : 1;
  Ins w = paramInputs(s, *use);
  for (size_t i = first; i < w.size(); ++i)
    if (!w[i]) // a weight that is not a parameter: not a launch this predicts
      return Storage::F32;
  const MlaDims d = mlaDims(use->params, N);
  const MlaWeights mw = mlaWeights(s, use->kernel, use->params, w, first);
  const Storage form = mlaInputForm(s, d, mw, rows);
  if (form == Storage::F32 || !normStoresAs(s, form, bf16, N))
    return Storage::F32;
  size_t bytes = form == Storage::Bf16 ? size_t(rows * N) * 2
                                       : size_t((rows * N + 255) / 256 * 256 + rows * ((N + 127) / 128) * 4);
  return bytes <= y.capacity * 4 ? form : Storage::F32;
}

void rmsNorm(CudaSession &s, const std::string &k, const json &p, Ins &in, Ins &out) {
  DevTensor &x = *in[0], &w = *in[1], &y = *out[0];
  setShape(k, y, x.shape);
  const i64 rows = rowsOf(x);
  const int64_t N = x.dim(-1);
  const float eps = float(p.at("epsilon").get<double>());
  y.storage = normOutputStorage(s, y, rows, N, w.bf16);
  if (y.storage == DevTensor::Storage::F32)
    return rmsRows(s, k, x.ptr, w.ptr, y.ptr, rows, N, eps, w.bf16);
  rmsRowsStored(s, k, x.ptr, w.ptr, y.ptr, e4m3StoredScales(y, rows, N), rows, N, eps, w.bf16,
                y.storage);
}

/// Whether gemm() over `rows` rows of K with weight w rounds them to bf16
/// and runs bf16TcGemm (its branch order: FP8, the few-row kernels, then
/// this).
bool linearRoundsRows(const CudaSession &s, const DevTensor &w, const Fp8Weight &fw, i64 rows,
                      int64_t K) {
  return !fw && w.bf16 && rows > kFewRows && useBf16Tc(s, rows, K);
}

/// A linear / linear_add whose input a gated GEMM stored as bf16
/// (gatedOutputStorage): the GEMM on it as it is.
void storedBf16Gemm(CudaSession &s, const std::string &k, const DevTensor &x, const DevTensor &w,
                    CUdeviceptr b, CUdeviceptr res, CUdeviceptr y, const Fp8Weight &fw) {
  int64_t N = w.dim(0), K = w.dim(1);
  i64 rows = rowsOf(x);
  if (!linearRoundsRows(s, w, fw, rows, K))
    fail("kernel {}: its input was stored as bf16 for the bf16 tensor-core GEMM, which {} rows "
         "do not take",
         k, rows);
  bf16RoundedGemm(s, k, x.ptr, w.ptr, 0, b, res, y, rows, N, K, 0, 0);
}

bool expertGatedRoundsRows(CudaSession &s, i64 R, int64_t E, int64_t K, bool bf16);

/// How a gated GEMM on gemm_bf16_tma over `rows` rows stores its output y
/// [rows, N]: as bf16 where y's only reader is a GEMM that would round it
/// so first (the routed experts' down GEMM, or a linear / linear_add of
/// bf16 weights: the predicates their launchers take), else float.
DevTensor::Storage gatedOutputStorage(CudaSession &s, const DevTensor &y, i64 rows, int64_t N) {
  using Storage = DevTensor::Storage;
  const Launch *use = y.reader.launch;
  if (!storedOperands() || !use || y.reader.input != 0 ||
      bf16GemmSchedule(s) != Bf16Gemm::Tma || !s.hasFunction(bf16TmaName(true, true)))
    return Storage::F32;
  Ins w = paramInputs(s, *use);
  if (w.size() < 2 || !w[1] || fp8Of(use->params, w, 1) || use->params.contains("fp8_compute"))
    return Storage::F32;
  const DevTensor &wd = *w[1];
  if (use->kernel == "expert_grouped_matmul" && wd.shape.size() == 3 && wd.dim(2) == N)
    return expertGatedRoundsRows(s, rows, wd.dim(0), N, wd.bf16) ? Storage::Bf16 : Storage::F32;
  if ((use->kernel == "linear" || use->kernel == "linear_add") && wd.shape.size() == 2 &&
      wd.dim(1) == N)
    return linearRoundsRows(s, wd, Fp8Weight(), rows, N) ? Storage::Bf16 : Storage::F32;
  return Storage::F32;
}

void linear(CudaSession &s, const std::string &k, const json &p, Ins &in, Ins &out) {
  DevTensor &x = *in[0], &w = *in[1], &y = *out[0];
  int64_t N = w.dim(0), K = w.dim(1);
  std::vector<int64_t> shape = x.shape;
  shape.back() = N;
  setShape(k, y, shape);
  Fp8Weight fw = fp8Operand(s, k, p, in, 1);
  CUdeviceptr b = numOperands(p, in) > 2 ? in[2]->ptr : 0;
  if (x.storage == DevTensor::Storage::Bf16)
    return storedBf16Gemm(s, k, x, w, b, 0, y.ptr, fw);
  if (x.storage == DevTensor::Storage::E4m3)
    return storedFp8Gemm(s, k, x, fw, b, 0, y.ptr, rowsOf(x), N, K);
  gemm(s, k, x.ptr, K, w.ptr, b, y.ptr, rowsOf(x), N, K, w.bf16, 0, &fw);
}

void linearAdd(CudaSession &s, const std::string &k, const json &p, Ins &in, Ins &out) {
  DevTensor &x = *in[0], &w = *in[1], &res = *in[2], &y = *out[0];
  int64_t N = w.dim(0), K = w.dim(1);
  std::vector<int64_t> shape = x.shape;
  shape.back() = N;
  if (res.shape != shape)
    fail("kernel {}: residual shape differs from the projection's", k);
  setShape(k, y, shape);
  Fp8Weight fw = fp8Operand(s, k, p, in, 1);
  if (x.storage == DevTensor::Storage::Bf16)
    return storedBf16Gemm(s, k, x, w, 0, res.ptr, y.ptr, fw);
  if (x.storage == DevTensor::Storage::E4m3)
    return storedFp8Gemm(s, k, x, fw, 0, res.ptr, y.ptr, rowsOf(x), N, K);
  gemm(s, k, x.ptr, K, w.ptr, 0, y.ptr, rowsOf(x), N, K, w.bf16, res.ptr, &fw);
}

void gatedLinear(CudaSession &s, const std::string &k, const json &p, Ins &in, Ins &out) {
  DevTensor &x = *in[0], &wg = *in[1], &wu = *in[2], &y = *out[0];
  int64_t N = wg.dim(0), K = wg.dim(1);
  std::vector<int64_t> shape = x.shape;
  shape.back() = N;
  setShape(k, y, shape);
  y.storage = DevTensor::Storage::F32;
  i64 rows = rowsOf(x);
  if (Fp8Weight fg = fp8Operand(s, k, p, in, 1)) {
    y.storage = fp8GatedOutputStorage(s, y, fg, rows, N, K, 0);
    CUdeviceptr ys = y.storage == DevTensor::Storage::E4m3 ? e4m3StoredScales(y, rows, N) : 0;
    return fp8GatedGemm(s, k, x.ptr, K, fg, fp8Operand(s, k, p, in, 2), y.ptr, rows, N, K, 0,
                        0, nullptr, ys);
  }
  if (rows <= kFewRows)
    s.launch(gatedLinearRowsName(N, K, wg.bf16), {unsigned((N + 7) / 8), 1, 1}, {256, 1, 1},
             0, argv(x.ptr, wg.ptr, wu.ptr, y.ptr, rows), k);
  else if (wg.bf16 && useBf16Tc(s, rows, K)) {
    y.storage = gatedOutputStorage(s, y, rows, N);
    bf16TcGemm(s, k, x.ptr, K, wg.ptr, wu.ptr, 0, 0, y.ptr, rows, N, K, 0, 0,
               y.storage == DevTensor::Storage::Bf16);
  } else if (wg.bf16)
    s.launch(gatedLinearMmaName(N, K),
             {unsigned((N + 63) / 64), unsigned((rows + 63) / 64), 1}, {128, 1, 1}, 0,
             argv(x.ptr, wg.ptr, wu.ptr, y.ptr, rows), k);
  else
    s.launch(gatedLinearName(N, K, wg.bf16), {unsigned((N + 15) / 16), unsigned((rows + 15) / 16), 1},
             {16, 16, 1}, 0, argv(x.ptr, wg.ptr, wu.ptr, y.ptr, rows), k);
}

/// dsv3.norm_linear / dsv3.norm_gated_linear: the norm, then the GEMM,
/// through the workspace. Where the GEMM reads its rows as bf16 or e4m3
/// (its tensor-core branches), the norm stores them so (rms_norm_stored:
/// the same bits, no float round trip and no conversion pass); else as
/// floats.
void normLinear(CudaSession &s, const std::string &k, const json &p, Ins &in, Ins &out) {
  using Storage = DevTensor::Storage;
  DevTensor &x = *in[0], &wn = *in[1], &w = *in[2], &y = *out[0];
  int64_t N = w.dim(0), K = w.dim(1);
  std::vector<int64_t> shape = x.shape;
  shape.back() = N;
  setShape(k, y, shape);
  i64 rows = rowsOf(x);
  const float eps = float(p.at("epsilon").get<double>());
  Fp8Weight fw = fp8Operand(s, k, p, in, 2);
  if (!p.contains("fp8_compute")) {
    const int sched = fw ? fp8Schedule(s, fw, rows, K, 0, -1) : -1;
    if (sched > 0 && normStoresAs(s, Storage::E4m3, wn.bf16, K)) {
      Fp8Rows q = fp8RowsWorkspace(s, rows, K, (K + 127) / 128, true);
      rmsRowsStored(s, k + " norm", x.ptr, wn.ptr, q.xq, q.sa, rows, K, eps, wn.bf16,
                    Storage::E4m3);
      return fp8GemmQuantized(s, k, q, sched, fw, 0, y.ptr, rows, N, K, 0, 0, 0);
    }
    if (linearRoundsRows(s, w, fw, rows, K) && normStoresAs(s, Storage::Bf16, wn.bf16, K)) {
      CUdeviceptr xb = s.workspace(size_t(rows * K) * 2);
      rmsRowsStored(s, k + " norm", x.ptr, wn.ptr, xb, 0, rows, K, eps, wn.bf16, Storage::Bf16);
      return bf16RoundedGemm(s, k, xb, w.ptr, 0, 0, 0, y.ptr, rows, N, K, 0, 0);
    }
  }
  CUdeviceptr normed = s.workspace(size_t(rows * K) * 4);
  rmsRows(s, k + " norm", x.ptr, wn.ptr, normed, rows, K, eps, wn.bf16);
  gemm(s, k, normed, K, w.ptr, 0, y.ptr, rows, N, K, w.bf16, 0, &fw);
}

void normGatedLinear(CudaSession &s, const std::string &k, const json &p, Ins &in,
                     Ins &out) {
  using Storage = DevTensor::Storage;
  DevTensor &x = *in[0], &wn = *in[1], &wg = *in[2], &y = *out[0];
  i64 rows = rowsOf(x);
  int64_t K = x.dim(-1), N = wg.dim(0);
  const float eps = float(p.at("epsilon").get<double>());
  const bool stores = !p.contains("fp8_compute");
  std::vector<int64_t> shape = x.shape;
  shape.back() = N;
  if (Fp8Weight fg = fp8Operand(s, k, p, in, 2)) {
    setShape(k, y, shape);
    y.storage = fp8GatedOutputStorage(s, y, fg, rows, N, K, 0);
    CUdeviceptr ys = y.storage == Storage::E4m3 ? e4m3StoredScales(y, rows, N) : 0;
    Fp8Weight fu = fp8Operand(s, k, p, in, 3);
    if (stores && fp8Schedule(s, fg, rows, K, 0, -1) > 0 &&
        normStoresAs(s, Storage::E4m3, wn.bf16, K)) {
      Fp8Rows q = fp8RowsWorkspace(s, rows, K, (K + 127) / 128, true);
      rmsRowsStored(s, k + " norm", x.ptr, wn.ptr, q.xq, q.sa, rows, K, eps, wn.bf16,
                    Storage::E4m3);
      return fp8GatedGemm(s, k, 0, K, fg, fu, y.ptr, rows, N, K, 0, 0, &q, ys);
    }
    CUdeviceptr normed = s.workspace(size_t(rows * K) * 4);
    rmsRows(s, k + " norm", x.ptr, wn.ptr, normed, rows, K, eps, wn.bf16);
    return fp8GatedGemm(s, k, normed, K, fg, fu, y.ptr, rows, N, K, 0, 0, nullptr, ys);
  }
  // gatedLinear's bf16 tensor-core branch rounds its rows first.
  if (stores && rows > kFewRows && wg.bf16 && useBf16Tc(s, rows, K) &&
      normStoresAs(s, Storage::Bf16, wn.bf16, K)) {
    setShape(k, y, shape);
    CUdeviceptr xb = s.workspace(size_t(rows * K) * 2);
    rmsRowsStored(s, k + " norm", x.ptr, wn.ptr, xb, 0, rows, K, eps, wn.bf16, Storage::Bf16);
    y.storage = gatedOutputStorage(s, y, rows, N);
    return bf16RoundedGemm(s, k, xb, wg.ptr, in[3]->ptr, 0, 0, y.ptr, rows, N, K, 0, 0,
                           y.storage == Storage::Bf16);
  }
  DevTensor normed = x;
  normed.ptr = s.workspace(size_t(rows * K) * 4);
  normed.capacity = size_t(rows * K);
  rmsRows(s, k + " norm", x.ptr, wn.ptr, normed.ptr, rows, K, eps, wn.bf16);
  std::vector<DevTensor *> gatedIns = {&normed, in[2], in[3]};
  gatedLinear(s, k, p, gatedIns, out);
}

/// Whether the expert GEMMs of R routed rows over E experts take the
/// tensor-core schedule (expert_gmm_mma): bf16 weights and on average 2 or
/// more rows per expert (prefill, batched decode from 64 sequences at
/// top-8 of 256): each expert's weights are then read once per 64-row tile
/// rather than once per routed row as by the warp-per-output kernels
/// (expert_gmm: 14.5 ms for the gate/up GEMM of 1024 routed rows at V3
/// widths, H200), which stay for fewer rows (decode of small batches:
/// mostly one row per expert, no tile to pad).
/// DSV3_EXPERT_MMA=1 / 0 forces either (to check one against the host at
/// any size). The row kernels now read each expert's weights once for all
/// its rows, 4 at a time, so they may pay up to more rows an expert than
/// 2: DSV3_EXPERT_ROWS=n moves the switch to n rows an expert. Measured on
/// the bench slice (H200, decode at context 1024): 2 and 8 give the same
/// batch 1 and 32 (2.83, 18.4 ms a step), but at batch 128 (~4 rows an
/// expert) 8 takes 86.5 ms against 59.9: the row kernel is bound by its
/// CUDA-core FMAs there, and the 128-row tiles, mostly empty, still win.
///
/// Below the switch, bf16 experts take expert_rows_split_mma (the weights as the
/// MMA's M operand, the few rows as its N: no FMA bound, no padded tiles),
/// now the default up to 16 rows an expert; DSV3_EXPERT_ROWS_MMA=0 keeps
/// the CUDA-core row kernel there instead (to compare the two).
bool expertMma(i64 R, int64_t E, bool bf16) {
  static const char *force = std::getenv("DSV3_EXPERT_MMA");
  static const i64 perExpert = [] {
    const char *env = std::getenv("DSV3_EXPERT_ROWS");
    i64 n = env ? std::atoll(env) : 16;
    return n < 1 ? i64(1) : n;
  }();
  if (!bf16)
    return false;
  if (force && *force)
    return std::string(force) == "1";
  return R >= perExpert * E;
}

/// Whether an expert GEMM below expertMma's switch runs on
/// expert_rows_split_mma.
bool expertRowsMma(int64_t KD, bool bf16) {
  static const char *env = std::getenv("DSV3_EXPERT_ROWS_MMA");
  return bf16 && expertRowsMmaFits(KD) && !(env && std::string(env) == "0");
}

/// The warps of a group of expert_(gated_)rows_split_mma that split K
/// between them (1, 2, 4 or 8): DSV3_EXPERT_ROWS_KSPLIT=n for both kernels,
/// =g,d for the gated kernel and the down kernel apart. 2: decode at batch
/// 128 on the bench slice (H200, same call, plain loads) 16.72 / 16.81 ms
/// with 1, 16.37 / 16.47 with 2, 16.64 / 16.69 with 4, 17.58 / 17.55 with
/// 8; with the L2::256B loads (another call) 16.61 / 16.58 with 1, 16.37 /
/// 16.32 with 2; batch 32 the same with 1 and 2. Apart (another call):
/// 2,2 16.28 / 16.21, 2,4 16.44 / 16.39, 2,1 16.39 / 16.31.
int expertRowsKsplit(bool gated) {
  static const std::pair<int, int> ks = [] {
    const char *env = std::getenv("DSV3_EXPERT_ROWS_KSPLIT");
    std::string v = env && *env ? env : "2";
    const size_t comma = v.find(',');
    const int g = std::atoi(v.substr(0, comma).c_str());
    const int d = comma == std::string::npos ? g : std::atoi(v.substr(comma + 1).c_str());
    for (int n : {g, d})
      if (n != 1 && n != 2 && n != 4 && n != 8)
        fail("DSV3_EXPERT_ROWS_KSPLIT={}: expected n or gated,down with each 1, 2, 4 or 8", v);
    return std::make_pair(g, d);
  }();
  return gated ? ks.first : ks.second;
}

void expertRowsMmaLaunch(CudaSession &s, const std::string &k, bool gated, DevTensor &rows,
                         DevTensor &w, CUdeviceptr wu, DevTensor &counts, DevTensor &y) {
  int64_t E = w.dim(0), N = w.dim(1), KD = w.dim(2);
  const std::string name = expertRowsMmaName(N, KD, E, gated);
  if (!s.hasFunction(name)) { // an artifact from before the split kernels
    Dim3 grid = {unsigned((N + 127) / 128), unsigned(E), 1};
    std::string old = expertRowsMmaUnsplitName(N, KD, E, gated);
    if (gated)
      return s.launch(old, grid, {256, 1, 1}, 0, argv(rows.ptr, w.ptr, wu, counts.ptr, y.ptr),
                      k);
    return s.launch(old, grid, {256, 1, 1}, 0, argv(rows.ptr, w.ptr, counts.ptr, y.ptr), k);
  }
  const int ks = expertRowsKsplit(gated);
  const int64_t rowsPerBlock = 16 * (8 / ks);
  Dim3 grid = {unsigned((N + rowsPerBlock - 1) / rowsPerBlock), unsigned(E), 1};
  // Shared memory for the K slices' sums: [8 warps][gate, up][4 tiles x 4][32 lanes].
  const size_t smem = ks > 1 ? size_t(8) * (gated ? 2 : 1) * 16 * 32 * sizeof(float) : 0;
  if (gated)
    s.launch(name, grid, {256, 1, 1}, smem, argv(rows.ptr, w.ptr, wu, counts.ptr, y.ptr, ks), k);
  else
    s.launch(name, grid, {256, 1, 1}, smem, argv(rows.ptr, w.ptr, counts.ptr, y.ptr, ks), k);
}

/// Whether the routed experts' gated GEMM over R rows of K rounds them to
/// bf16 (expertMmaLaunch's bf16 tensor-core schedule): then moe_dispatch
/// may store them so.
bool expertGatedRoundsRows(CudaSession &s, i64 R, int64_t E, int64_t K, bool bf16) {
  return expertMma(R, E, bf16) && useBf16Tc(s, R, K);
}

void expertMmaLaunch(CudaSession &s, const std::string &k, bool gated, DevTensor &rows,
                     DevTensor &w, CUdeviceptr wu, DevTensor &counts, DevTensor &y) {
  int64_t E = w.dim(0), N = w.dim(1), KD = w.dim(2);
  i64 R = rows.dim(0);
  if (useBf16Tc(s, R, KD))
    return bf16TcGemm(s, k, rows.ptr, KD, w.ptr, wu, 0, 0, y.ptr, R, N, KD, counts.ptr, E);
  unsigned tiles = unsigned((R + 63) / 64 + E);
  s.launch(expertMmaName(N, KD, E, gated), {unsigned((N + 63) / 64), tiles, 1}, {128, 1, 1}, 0,
           argv(rows.ptr, w.ptr, wu, counts.ptr, y.ptr), k);
}

void expertGatedMatmul(CudaSession &s, const std::string &k, const json &p, Ins &in,
                       Ins &out) {
  DevTensor &rows = *in[0], &wg = *in[1], &wu = *in[2], &counts = *in[3], &y = *out[0];
  int64_t E = wg.dim(0), N = wg.dim(1), KD = wg.dim(2);
  i64 R = rows.dim(0);
  setShape(k, y, {R, N});
  using Storage = DevTensor::Storage;
  y.storage = Storage::F32;
  if (rows.storage == Storage::E4m3) { // moe_dispatch quantized them (routedRowsStorage)
    Fp8Rows q;
    q.xq = rows.ptr;
    q.sa = e4m3StoredScales(rows, R, KD);
    Fp8Weight fg = fp8Operand(s, k, p, in, 1);
    y.storage = fp8GatedOutputStorage(s, y, fg, R, N, KD, E);
    CUdeviceptr ys = y.storage == Storage::E4m3 ? e4m3StoredScales(y, R, N) : 0;
    return fp8GatedGemm(s, k, 0, KD, fg, fp8Operand(s, k, p, in, 2), y.ptr, R, N, KD,
                        counts.ptr, E, &q, ys);
  }
  bool rounds = expertGatedRoundsRows(s, R, E, KD, wg.bf16);
  if (rows.storage == Storage::Bf16 && !rounds)
    fail("kernel {}: the routed rows were stored as bf16 for the bf16 tensor-core GEMM, "
         "which {} rows over {} experts do not take",
         k, R, E);
  if (rounds) {
    y.storage = gatedOutputStorage(s, y, R, N);
    bool bf16Out = y.storage == Storage::Bf16;
    if (rows.storage == Storage::Bf16) // moe_dispatch rounded them
      return bf16RoundedGemm(s, k, rows.ptr, wg.ptr, wu.ptr, 0, 0, y.ptr, R, N, KD, counts.ptr,
                             E, bf16Out);
    return bf16TcGemm(s, k, rows.ptr, KD, wg.ptr, wu.ptr, 0, 0, y.ptr, R, N, KD, counts.ptr, E,
                      bf16Out);
  }
  if (Fp8Weight fg = fp8Operand(s, k, p, in, 1)) {
    y.storage = fp8GatedOutputStorage(s, y, fg, R, N, KD, E);
    CUdeviceptr ys = y.storage == Storage::E4m3 ? e4m3StoredScales(y, R, N) : 0;
    return fp8GatedGemm(s, k, rows.ptr, KD, fg, fp8Operand(s, k, p, in, 2), y.ptr, R, N, KD,
                        counts.ptr, E, nullptr, ys);
  }
  if (expertMma(R, E, wg.bf16))
    return expertMmaLaunch(s, k, true, rows, wg, wu.ptr, counts, y);
  if (expertRowsMma(KD, wg.bf16))
    return expertRowsMmaLaunch(s, k, true, rows, wg, wu.ptr, counts, y);
  s.launch(instW("expert_gated_gmm", {N, KD, E}, wg.bf16),
           {unsigned((N + 7) / 8), unsigned(std::min<i64>(R, 65535)), 1},
           {256, 1, 1}, 0, argv(rows.ptr, wg.ptr, wu.ptr, counts.ptr, y.ptr, R), k);
}

void elementwise(CudaSession &s, const std::string &k, const json &, Ins &in, Ins &out) {
  DevTensor &a = *in[0], &b = *in[1], &y = *out[0];
  if (a.shape != b.shape)
    fail("kernel {}: operand shapes differ", k);
  setShape(k, y, a.shape);
  i64 n = a.numel();
  // add moves 4 elements a thread (16-byte accesses); the others one.
  const i64 threads = k == "add" ? (n + 3) / 4 : n;
  s.launch(elementwiseName(k), {blocks(threads, 256), 1, 1}, {256, 1, 1}, 0,
           argv(a.ptr, b.ptr, y.ptr, n), k);
}

void fill(CudaSession &s, const std::string &k, const json &p, Ins &, Ins &out) {
  setShape(k, *out[0], p.at("shape").get<std::vector<int64_t>>());
  i64 n = out[0]->numel();
  float v = float(p.at("value").get<double>());
  s.launch(elementwiseName("fill"), {blocks(n, 256), 1, 1}, {256, 1, 1}, 0,
           argv(out[0]->ptr, n, v), k);
}

void rope(CudaSession &s, const std::string &k, const json &p, Ins &in, Ins &out) {
  DevTensor &x = *in[0], &pos = *in[1], &y = *out[0];
  setShape(k, y, x.shape);
  int64_t D = p.at("rope").at("dim").get<int64_t>();
  i64 tokens = x.dim(0) * x.dim(1), per = x.numel() / (tokens * D);
  float scale;
  CUdeviceptr f = invFreq(s, k, p.at("rope"), scale);
  s.launch(ropeName(D, p.at("rope").at("interleaved").get<bool>()),
           {blocks(tokens * per, 128), 1, 1}, {128, 1, 1}, 0,
           argv(x.ptr, pos.ptr, y.ptr, tokens, per, f, scale), k);
}

/// Both MLA forms (SEMANTICS.md 3, 4): projections, latent and rope
/// preparation, attention, output projection.
/// Whether a decode-entry call of T new tokens per sequence over caches of
/// S rows takes the naive-form prefill (mla_prefill_cached) rather than the
/// absorbed decode (whose 3.4x FLOPs and per-row launches took 4.2 s of a
/// 4x2048 prefill at V3 widths on an H200; 1.2 s with this kernel): from 64
/// new tokens a sequence, when one sequence's expanded keys and values fit
/// in 1 GB of workspace. DSV3_MLA_PREFILL_TOKENS=N moves the threshold (1:
/// every call, to check the kernel against the host on decode steps; 0:
/// never).
bool usePrefillCached(const MlaDims &d, i64 T, i64 S) {
  static const i64 threshold = [] {
    const char *env = std::getenv("DSV3_MLA_PREFILL_TOKENS");
    return env && *env ? std::atoll(env) : 64;
  }();
  return threshold > 0 && mlaPrefillCachedFits(d) && T >= threshold &&
         double(S) * double(d.nh * (d.dn + d.dv)) * 4 <= double(1u << 30);
}
/// Whether that prefill runs on tensor cores (mla_prefill_mma: bf16
/// operands) rather than in fp32 (mla_prefill_cached): for bf16 and FP8
/// models, whose tolerance is bf16's; fp32 models stay fp32 throughout,
/// and so does a session that compares with the host (fp32Activations).
/// DSV3_MLA_PREFILL_MMA=0 takes the fp32 kernel for every model.
bool usePrefillMma(const CudaSession &s, const MlaDims &d, bool bf16Model) {
  static const bool enabled = envNotZero("DSV3_MLA_PREFILL_MMA");
  return enabled && bf16Model && !s.fp32Activations && mlaPrefillMmaFits(d);
}

/// The kernel of the absorbed decode's split-KV attention for `rows` query
/// rows: on tensor cores (bf16 q~ and latents) rather than in fp32
/// (mla_decode_split) as usePrefillMma decides (DSV3_MLA_DECODE_MMA=0:
/// never). Of the tensor-core kernels, mla_decode_mma_staged for 16 query rows or
/// more where it fits and the artifact has it (artifacts compiled before it
/// keep mla_decode_mma); DSV3_MLA_DECODE_STAGED=0 keeps mla_decode_mma (the
/// same results). At batch 1 the staged kernel's one block a multiprocessor
/// took the step from 2.04 to 2.11 ms (H200); from batch 32 it is faster
/// (docs/benchmarks.md).
DecodeKernel decodeKernel(CudaSession &s, const MlaDims &d, bool bf16Model, i64 rows) {
  static const bool enabled = envNotZero("DSV3_MLA_DECODE_MMA");
  static const bool staged = envNotZero("DSV3_MLA_DECODE_STAGED");
  if (!enabled || !bf16Model || s.fp32Activations || !mlaDecodeMmaFits(d))
    return DecodeKernel::Split;
  if (staged && rows >= 16 && decodeStagedTile(s, d, rows).groups)
    return DecodeKernel::Staged;
  return DecodeKernel::Mma;
}

} // namespace

bool useAbsorbCublas(const CudaSession &s, const MlaDims &d, bool bf16Weights, i64 rows) {
  static const bool enabled = envNotZero("DSV3_ABSORB_CUBLAS");
  // 16-byte rows and per-head offsets; W_UV's start (DN rows into a head's
  // kv_b rows) 256-byte aligned, as cuBLASLt's heuristic assumes of A.
  return enabled && bf16Weights && s.cublasLt && !s.fp32Activations && rows >= cublasRows() &&
         d.dn % 8 == 0 && d.r % 8 == 0 && d.dv % 4 == 0 && (d.dn * d.r * 2) % 256 == 0;
}

void mlaAbsorbQ(CudaSession &s, const std::string &k, const MlaDims &d, bool bf16Weights,
                bool cublas, CUdeviceptr q, CUdeviceptr kvb, CUdeviceptr qt, i64 rows) {
  const int64_t dq = d.dn + d.dr, W = d.r + d.dr;
  if (cublas) {
    // Head h: q~_h^T [R, rows] = W_UK_h^T [R, DN] q_nope_h^T [DN, rows] in
    // column-major terms, where kv_b's rows of head h (row-major [DN, R])
    // are W_UK_h^T with ld R and the rounded q_nope rows [rows * NH, DN]
    // are q_nope_h^T with ld NH * DN.
    s.countBf16ActivationLaunch();
    CUdeviceptr qb = roundRowsToBf16(s, k + " absorb_q", q, dq, rows * d.nh, d.dn);
    s.timedCall("cublasLtMatmul (bf16, batched over heads)", k + " absorb_q", [&] {
      cublasLtGemmStridedBatched((k + " absorb_q").c_str(), s.stream(), false, kvb, d.r,
                                 (d.dn + d.dv) * d.r, qb, d.nh * d.dn, d.dn, qt, d.nh * W, W,
                                 d.r, rows, d.dn, d.nh);
    });
    // The rope query after the latent columns.
    const i64 n = rows * d.nh;
    const int cols = int(d.dr);
    s.launch(copyColumnsName(), {blocks(n * cols, 256), 1, 1}, {256, 1, 1}, 0,
             argv(q + CUdeviceptr(d.dn) * 4, dq, qt + CUdeviceptr(d.r) * 4, W, n, cols),
             k + " absorb_q rope");
    return;
  }
  if (bf16Weights && rows <= 4 && fewRowKernels() && mlaAbsorbQRowsFits(d) &&
      s.hasFunction(mlaAbsorbQRowsName(d)))
    s.launch(mlaAbsorbQRowsName(d), {unsigned(d.nh), 1, 1}, {256, 1, 1}, 0,
             argv(q, kvb, qt, rows), k);
  else
    s.launch(mlaDecodeNames(d, bf16Weights)[0], {unsigned(d.nh), unsigned((W + 127) / 128), 1},
             {128, 1, 1}, 0, argv(q, kvb, qt, rows), k);
}

void mlaAbsorbV(CudaSession &s, const std::string &k, const MlaDims &d, bool bf16Weights,
                bool cublas, CUdeviceptr ot, CUdeviceptr kvb, CUdeviceptr o, i64 rows) {
  if (cublas) {
    // Head h: o_h^T [DV, rows] = (W_UV_h^T [R, DV])^T o~_h^T [R, rows]:
    // kv_b's rows DN.. of head h (row-major [DV, R]) read transposed.
    s.countBf16ActivationLaunch();
    CUdeviceptr ob = roundRowsToBf16(s, k + " absorb_v", ot, d.r, rows * d.nh, d.r);
    s.timedCall("cublasLtMatmul (bf16, batched over heads)", k + " absorb_v", [&] {
      cublasLtGemmStridedBatched((k + " absorb_v").c_str(), s.stream(), true,
                                 kvb + CUdeviceptr(d.dn * d.r) * 2, d.r, (d.dn + d.dv) * d.r,
                                 ob, d.nh * d.r, d.r, o, d.nh * d.dv, d.dv, d.dv, rows, d.r,
                                 d.nh);
    });
    return;
  }
  if (bf16Weights && mlaAbsorbVMmaFits(d))
    s.launch(mlaAbsorbVMmaName(d), {unsigned((d.dv + 127) / 128), unsigned(d.nh), 1},
             {256, 1, 1}, 0, argv(ot, kvb, o, rows), k);
  else
    s.launch(mlaDecodeNames(d, bf16Weights)[3], {unsigned(d.nh), unsigned((rows + 15) / 16), 1},
             {128, 1, 1}, 0, argv(ot, kvb, o, rows), k);
}

namespace {

void latentAttention(CudaSession &s, const std::string &k, const json &p, Ins &in,
                     Ins &out, bool decode) {
  DevTensor &x = *in[0], &y = *out[0];
  MlaDims d = mlaDims(p, x.dim(-1));
  int64_t dq = d.dn + d.dr, H = d.H;
  MlaWeights mw = mlaWeights(s, k, p, in, decode ? 3 : 1);
  const CUdeviceptr *w = mw.w;
  bool wb = mw.bf16;
  i64 B = x.dim(0), T = x.dim(1), N = B * T;
  setShape(k, y, x.shape);
  float eps = float(p.at("latent_norm_eps").get<double>());
  float scale;
  CUdeviceptr freq = invFreq(s, k, p.at("rope"), scale);
  // Inference (no backward reads the projections' inputs): the normed
  // queries need not be kept.
  // (The decode op's second output is its cache; the prefill op's saved
  // state, when training, its second and third.)
  const bool inference = (decode || out.size() == 1) && !p.contains("fp8_compute");
  MlaProjections proj = mlaProject(s, k, d, mw, x.ptr, N, eps, x.storage, !inference);
  CUdeviceptr Q = proj.Q, A = proj.A;
  // save_for_backward (training): the attention output, as floats, and each
  // query's log-sum-exp are the op's second and third results.
  const bool save = !decode && out.size() == 3;
  if (!decode && out.size() != 1 && !save)
    fail("kernel {}: {} outputs (1, or 3 with save_for_backward)", k, out.size());
  CUdeviceptr savedLse = 0;
  if (save) {
    setShape(k, *out[1], {B, T, d.nh * d.dv});
    setShape(k, *out[2], {B, d.nh, T});
    savedLse = out[2]->ptr;
  }
  CUdeviceptr O = save ? out[1]->ptr : s.workspace(size_t(N * d.nh * d.dv) * 4);
  // The tensor-core attention stores O in the form o_proj makes of it
  // first, where it has one: bf16 for gemm's bf16 tensor-core branch (half
  // the bytes, no to_bf16), e4m3 codes and scales for the FP8 tensor-core
  // schedules (a head's row is one 1x128 block: no fp8_quantize pass).
  const int64_t OK = d.nh * d.dv;
  const Fp8Weight &fo = mw.fp8[MlaWeights::O];
  const int oSched = fo ? fp8Schedule(s, fo, N, OK, 0, -1) : -1;
  // Saved for the vjp, O stays floats.
  AttentionOut oStored = AttentionOut::F32;
  if (!save && storedOperands() && wb && !fo && N > kFewRows && useBf16Tc(s, N, OK))
    oStored = AttentionOut::Bf16;
  else if (!save && storedOperands() && fo && fo.bc == 128 && d.dv == 128 && oSched > 0)
    oStored = AttentionOut::E4m3;
  AttentionOut oForm = AttentionOut::F32; // what the attention below stored
  // e4m3 scales past the codes in the workspace (never with a saved O).
  const CUdeviceptr oScales = save ? 0 : O + CUdeviceptr((N * OK + 255) / 256 * 256);
  auto oAt = [&](i64 row) { // sequence offsets in O as stored
    return O + CUdeviceptr(row * OK) *
                   (oForm == AttentionOut::Bf16 ? 2 : oForm == AttentionOut::E4m3 ? 1 : 4);
  };
  auto oProj = [&] {
    if (oForm == AttentionOut::Bf16) {
      bf16RoundedGemm(s, k + " o_proj", O, w[6], 0, w[9], 0, y.ptr, N, H, OK, 0, 0);
    } else if (oForm == AttentionOut::E4m3) {
      Fp8Rows q;
      q.xq = O;
      q.sa = oScales;
      fp8GemmQuantized(s, k + " o_proj", q, oSched, fo, w[9], y.ptr, N, H, OK, 0, 0, 0);
    } else {
      gemm(s, k + " o_proj", O, OK, w[6], w[9], y.ptr, N, H, OK, wb, 0, &mw.fp8[6]);
    }
  };
  bool interleaved = p.at("rope").at("interleaved").get<bool>();
  if (!decode) {
    const bool tensorCores =
        usePrefillMma(s, d, wb) || (s.bf16Attention() && mlaPrefillMmaFits(d));
    // An FP8 kv_b_proj left to the attention, which stores its output as
    // the keys and values it reads (useMlaKvFp8): no fp32 U. Inference
    // only (FP8 training's forward and its recomputation take one path).
    const Fp8Weight &kvb = mw.fp8[MlaWeights::KVB];
    const bool kvFused =
        tensorCores && !save && !p.contains("fp8_compute") && useMlaKvFp8(s, d, kvb);
    MlaLatent lat = mlaLatent(s, k, p, d, mw, proj, B, T, eps, !kvFused);
    CUdeviceptr L = lat.L, U = lat.U;
    float softmaxScale = float(p.at("softmax_scale").get<double>());
    if (tensorCores) {
      // On tensor cores, a sequence at a time: its latents are the cache
      // rows, no past.
      CUdeviceptr past = zeroPast(s);
      i64 UW = d.nh * (d.dn + d.dv), W = d.r + d.dr;
      oForm = oStored;
      for (i64 b = 0; b < B; ++b)
        mlaPrefillAttention(s, k, d, true, Q + CUdeviceptr(b * T * d.nh * dq) * 4,
                            kvFused ? 0 : U + CUdeviceptr(b * T * UW) * 4,
                            L + CUdeviceptr(b * T * W) * 4, past, 0, oAt(b * T), T, T,
                            softmaxScale, save ? savedLse + CUdeviceptr(b * d.nh * T) * 4 : 0,
                            PrefillKernel::Auto, oForm,
                            oScales ? oScales + CUdeviceptr(b * T * d.nh) * 4 : 0,
                            kvFused ? &kvb : nullptr);
    } else {
      s.launch(mlaPrefillName(d), {unsigned(T), unsigned(d.nh), unsigned(B)}, {128, 1, 1},
               size_t(T) * 4, argv(Q, L, U, O, T, softmaxScale, savedLse), k);
    }
  } else {
    // Past lengths live on the device (one per sequence; run() checked
    // them), so a captured decode step replays as the caches grow.
    DevTensor &cache = *in[1], &past = *in[2];
    i64 S = cache.dim(1);
    CUdeviceptr none = 0;
    // How the cache keeps a row (dsv3c --kv-cache): fp32, or packed as bf16
    // or fp8 rows (DSV3_CACHE_ROW_BYTES; the session packed the argument).
    const std::string storage = p.value("cache_storage", "f32");
    if (cacheFormOf(storage) < 0)
      fail("kernel {}: unknown cache_storage '{}' (f32, bf16 or fp8)", k, storage);
    if (cache.cacheForm != d.cf)
      fail("kernel {}: its cache is stored as {}, but the buffer given holds rows of form {} "
           "(a decode cache must be an argument of the entry)",
           k, storage, cache.cacheForm);
    int cacheForm = int(d.cf);
    s.launch(mlaPrepareName(d, interleaved, wb), {unsigned(N), 1, 1}, {128, 1, 1}, 0,
             argv(A, w[4], none, Q, B, T, past.ptr, cache.ptr, S, freq, scale, eps, cacheForm),
             k);
    float softmaxScale = float(p.at("softmax_scale").get<double>());
    if (usePrefillCached(d, T, S)) {
      // Many new tokens a sequence (a prefill through the decode entry): the
      // naive form over the cache. Per sequence: its cached latents
      // expanded by kv_b_proj (rows past the sequence's length are never
      // read), then the tiled attention of its T queries.
      int64_t W = d.r + d.dr;
      const bool mma = usePrefillMma(s, d, wb);
      // An FP8 kv_b_proj left to the attention (useMlaKvFp8): no fp32 U.
      const Fp8Weight &kvb = mw.fp8[MlaWeights::KVB];
      const bool kvFused = mma && useMlaKvFp8(s, d, kvb);
      CUdeviceptr U = kvFused ? 0 : s.workspace(size_t(S * d.nh * (d.dn + d.dv)) * 4);
      // A packed cache's rows of the sequence as fp32, for the GEMM and the
      // attention that read them so (their values exactly as stored).
      CUdeviceptr unpacked = d.cf ? s.workspace(size_t(S * W) * 4) : 0;
      oForm = mma ? oStored : AttentionOut::F32;
      for (i64 b = 0; b < B; ++b) {
        CUdeviceptr rows = cache.ptr + CUdeviceptr(b * S * W) * 4;
        if (d.cf) {
          CUdeviceptr seq = cache.ptr + CUdeviceptr(b * S * cacheRowBytes(d));
          s.launch(mlaCacheUnpackName(d), {unsigned(S), 1, 1}, {128, 1, 1}, 0,
                   argv(seq, unpacked, S), k + " (the sequence's cache rows, unpacked)");
          rows = unpacked;
        }
        if (!kvFused)
          gemm(s, k + " kv_b_proj (cache)", rows, W, w[5], 0, U, S, d.nh * (d.dn + d.dv), d.r,
               wb, 0, &mw.fp8[5]);
        CUdeviceptr qb = Q + CUdeviceptr(b * T * d.nh * dq) * 4;
        mlaPrefillAttention(s, k, d, mma, qb, U, rows, past.ptr, b, oAt(b * T), T, S,
                            softmaxScale, 0, PrefillKernel::Auto, oForm,
                            oScales + CUdeviceptr(b * T * d.nh) * 4, kvFused ? &kvb : nullptr);
      }
      oProj();
      return;
    }
    // The absorbed form reads kv_b itself: an FP8 one dequantized (once,
    // when the weights were bound), as the official inference does.
    CUdeviceptr kvb = mw.fp8[5] ? s.dequantizedOf(w[5]) : w[5];
    if (mw.fp8[5] && p.contains("fp8_compute")) {
      // FP8 training's decode (an artifact that trains also generates): the
      // master weight as this step quantized it, dequantized (the host's
      // kvbDense), fp32 like the master.
      const Fp8Weight &q = mw.fp8[5];
      long long n = (long long)d.nh * (d.dn + d.dv) * d.r;
      int nN = int(d.nh * (d.dn + d.dv)), nK = int(d.r), br = q.br, bc = q.bc;
      kvb = s.workspace(size_t(n) * 4);
      s.launch("dsv3::fp8_dequantize<float>",
               {unsigned(std::min<long long>((n + 255) / 256, 65535)), 1, 1}, {256, 1, 1}, 0,
               argv(q.w, q.scale, kvb, n, nN, nK, br, bc),
               k + " kv_b_proj (FP8 training: dequantized for the absorbed decode)");
    }
    if (!kvb)
      fail("kernel {}: no dequantized copy of the FP8 kv_b_proj", k);
    int64_t W = d.r + d.dr;
    // Rows in chunks, bounding the partial results' workspace; key splits
    // sized from the cache length so that a chunk fills the GPU twice over
    // (keys past a row's length end a split early).
    const i64 chunk = 256;
    for (i64 r0 = 0; r0 < N; r0 += chunk) {
      i64 rows = std::min(chunk, N - r0);
      const DecodeKernel decodeForm = decodeKernel(s, d, wb, rows);
      const int64_t HB = mlaDecodeHeadsPerBlock(s, decodeForm, d, rows),
                    groups = (d.nh + HB - 1) / HB;
      i64 waves = 2 * i64(s.multiprocessors());
      i64 splits = std::max<i64>(
          1, std::min<i64>((waves + rows * groups - 1) / (rows * groups), (S + 15) / 16));
      // The staged kernel holds a multiprocessor a block: once the rows'
      // head groups fill every one, more splits only add partial sums to
      // merge (64 heads a block at batch 128: 256 blocks, and 2 splits, the
      // second with one key, as the 2 x waves rule asked).
      if (decodeForm == DecodeKernel::Staged && rows * groups >= s.multiprocessors())
        splits = 1;
      i64 splitLen = (S + splits - 1) / splits;
      CUdeviceptr QT = s.workspace(size_t(rows * d.nh * W) * 4);
      CUdeviceptr part = s.workspace(size_t(rows * splits * d.nh * d.r) * 4);
      CUdeviceptr ml = s.workspace(size_t(rows * splits * d.nh * 2) * 4);
      CUdeviceptr OT = s.workspace(size_t(rows * d.nh * d.r) * 4);
      CUdeviceptr q0 = Q + CUdeviceptr(r0 * d.nh * dq) * 4;
      CUdeviceptr o0 = O + CUdeviceptr(r0 * d.nh * d.dv) * 4;
      const bool cublas = useAbsorbCublas(s, d, wb && !mw.fp8[5], rows);
      mlaAbsorbQ(s, k, d, wb, cublas, q0, kvb, QT, rows);
      mlaDecodeAttention(s, k, d, decodeForm, QT, cache.ptr, past.ptr, part, ml, OT,
                         rows, splits, splitLen, r0, T, S, softmaxScale);
      mlaAbsorbV(s, k, d, wb, cublas, OT, kvb, o0, rows);
    }
  }
  oProj();
}

void prefill(CudaSession &s, const std::string &k, const json &p, Ins &in, Ins &out) {
  latentAttention(s, k, p, in, out, false);
}
void decode(CudaSession &s, const std::string &k, const json &p, Ins &in, Ins &out) {
  latentAttention(s, k, p, in, out, true);
}

void moeRoute(CudaSession &s, const std::string &k, const json &p, Ins &in, Ins &out) {
  DevTensor &x = *in[0], &gate = *in[1];
  int64_t E = gate.dim(0), H = gate.dim(1), K = p.at("num_experts_per_tok").get<int64_t>();
  std::vector<int64_t> shape = {x.dim(0), x.dim(1), K};
  setShape(k, *out[0], shape);
  setShape(k, *out[1], shape);
  i64 n = x.dim(0) * x.dim(1);
  CUdeviceptr bias = in.size() > 2 ? in[2]->ptr : 0;
  float scaling = float(p.at("routed_scaling_factor").get<double>());
  CUdeviceptr logits = s.workspace(size_t(n * E) * 4);
  gemm(s, k + " gate", x.ptr, H, gate.ptr, 0, logits, n, E, H, gate.bf16);
  s.launch(routeName(p, E), {unsigned(n), 1, 1}, {128, 1, 1}, 0,
           argv(logits, bias, out[0]->ptr, out[1]->ptr, n, scaling), k);
}

/// How moe_dispatch stores the routed rows [R, H]: where their only reader
/// is the routed experts' gated GEMM, in the form that GEMM converts them
/// to first (bf16 for the bf16 tensor-core schedule, e4m3 codes and 1x128
/// scales for the FP8 tensor-core schedules: the same predicates its
/// launcher takes), else float. Artifacts compiled before the storing
/// gathers existed keep float.
DevTensor::Storage routedRowsStorage(CudaSession &s, const DevTensor &rows, i64 R, int64_t H) {
  using Storage = DevTensor::Storage;
  if (!storedOperands() || !rows.onlyReadBy("expert_gated_matmul", 0))
    return Storage::F32;
  const Launch &use = *rows.reader.launch;
  Ins w = paramInputs(s, use);
  if (w.size() < 4 || !w[1] || w[1]->shape.size() != 3 || w[1]->dim(2) != H ||
      use.params.contains("fp8_compute")) // FP8 training: the rows are read again
    return Storage::F32;
  int64_t E = w[1]->dim(0);
  if (Fp8Weight fg = fp8Of(use.params, w, 1)) {
    size_t bytes = size_t((R * H + 255) / 256 * 256 + R * ((H + 127) / 128) * 4);
    bool fits = bytes <= rows.capacity * 4 && fg.bc == 128;
    return fits && fp8Schedule(s, fg, R, H, E, -1) > 0 &&
                   s.hasFunction(inst("dispatch_gather_e4m3", {H}))
               ? Storage::E4m3
               : Storage::F32;
  }
  return expertGatedRoundsRows(s, R, E, H, w[1]->bf16) && H % 2 == 0 &&
                 s.hasFunction(inst("dispatch_gather_bf16", {H}))
             ? Storage::Bf16
             : Storage::F32;
}

void moeDispatch(CudaSession &s, const std::string &k, const json &p, Ins &in, Ins &out) {
  DevTensor &x = *in[0], &idx = *in[1];
  int64_t E = p.at("num_experts").get<int64_t>(), H = x.dim(-1);
  i64 K = idx.dim(-1), R = idx.numel();
  setShape(k, *out[0], {R, H});
  setShape(k, *out[1], {E});
  setShape(k, *out[2], {R});
  dispatchPlan(s, k, E, K, idx.ptr, out[1]->ptr, out[2]->ptr, R);
  DevTensor &rows = *out[0];
  using Storage = DevTensor::Storage;
  rows.storage = routedRowsStorage(s, rows, R, H);
  if (rows.storage == Storage::Bf16)
    s.launch(inst("dispatch_gather_bf16", {H}), {unsigned(R), 1, 1}, {128, 1, 1}, 0,
             argv(x.ptr, out[2]->ptr, rows.ptr, R, K), k);
  else if (rows.storage == Storage::E4m3) {
    CUdeviceptr sa = e4m3StoredScales(rows, R, H);
    // Quantize each token once into the buffer's room past the rows' codes
    // and scales (a float buffer of R x H holds 4 R H bytes; the rows take
    // about R H), then copy codes: the same bytes as quantizing every
    // routed row. Old artifacts (no dispatch_gather_codes) and widths that
    // are not 16-byte rows quantize each row as it is gathered.
    const i64 tokens = R / K, nb = (H + 127) / 128;
    const size_t rowsEnd = size_t(sa + R * nb * 4 - rows.ptr), tq = (rowsEnd + 255) / 256 * 256,
                 ts = tq + size_t(tokens * H + 255) / 256 * 256, end = ts + size_t(tokens * nb * 4);
    const std::string codes = inst("dispatch_gather_codes", {0});
    // DSV3_GATHER_CODES=0: each row quantized as gathered (the A/B's other side).
    static const bool onceAToken = envNotZero("DSV3_GATHER_CODES");
    if (onceAToken && H % 16 == 0 && tokens * K == R && end <= rows.capacity * 4 &&
        s.hasFunction(codes)) {
      int nH = int(H);
      s.launch("dsv3::fp8_quantize<0>", {blocks(tokens * nb * 32, 256), 1, 1}, {256, 1, 1}, 0,
               argv(x.ptr, i64(H), rows.ptr + tq, rows.ptr + ts, CUdeviceptr(0), tokens, nH),
               k + " (the tokens' quantization)");
      s.launch(codes, {unsigned(R), 1, 1}, {128, 1, 1}, 0,
               argv(rows.ptr + tq, rows.ptr + ts, out[2]->ptr, rows.ptr, sa, R, K, nH), k);
    } else
      s.launch(inst("dispatch_gather_e4m3", {H}), {unsigned(R), 1, 1}, {128, 1, 1}, 0,
               argv(x.ptr, out[2]->ptr, rows.ptr, sa, R, K), k);
  } else
    s.launch(inst("dispatch_gather", {H}), {unsigned(R), 1, 1}, {128, 1, 1}, 0,
             argv(x.ptr, out[2]->ptr, rows.ptr, R, K), k);
}

void groupedMatmul(CudaSession &s, const std::string &k, const json &p, Ins &in, Ins &out) {
  DevTensor &rows = *in[0], &w = *in[1], &counts = *in[2], &y = *out[0];
  int64_t E = w.dim(0), N = w.dim(1), KD = w.dim(2);
  i64 R = rows.dim(0);
  setShape(k, y, {R, N});
  if (rows.storage == DevTensor::Storage::Bf16) { // the gated GEMM stored them so
    if (!expertGatedRoundsRows(s, R, E, KD, w.bf16))
      fail("kernel {}: its rows were stored as bf16 for the bf16 tensor-core GEMM, which {} "
           "rows over {} experts do not take",
           k, R, E);
    return bf16RoundedGemm(s, k, rows.ptr, w.ptr, 0, 0, 0, y.ptr, R, N, KD, counts.ptr, E);
  }
  if (rows.storage == DevTensor::Storage::E4m3) // the FP8 gated GEMM stored them so
    return storedFp8Gemm(s, k, rows, fp8Operand(s, k, p, in, 1), 0, 0, y.ptr, R, N, KD,
                         counts.ptr, E);
  if (Fp8Weight fw = fp8Operand(s, k, p, in, 1))
    return fp8Gemm(s, k, rows.ptr, KD, fw, 0, y.ptr, R, N, KD, 0, counts.ptr, E);
  if (expertMma(R, E, w.bf16))
    return expertMmaLaunch(s, k, false, rows, w, 0, counts, y);
  if (expertRowsMma(KD, w.bf16))
    return expertRowsMmaLaunch(s, k, false, rows, w, 0, counts, y);
  if (!w.bf16 && R >= 2 * E && !simtGemm()) {
    // fp32 weights with many rows per expert (training): one tensor-core
    // GEMM over the rows grouped by expert.
    CUdeviceptr offsets = s.workspace(size_t(E + 1) * 8);
    i64 e64 = E;
    s.launch(inst("exclusive_scan", {0}), {1, 1, 1}, {32, 1, 1}, 0,
             argv(counts.ptr, offsets, e64), k);
    GemmArgs g = gemmArgs(R, N, KD, rowMajor(rows.ptr, KD), transposed(w.ptr, KD), y.ptr, N);
    g.mode = 1;
    g.sBb = N * KD;
    g.seg = offsets;
    g.segs = E;
    return stridedGemm(s, k, g);
  }
  s.launch(instW("expert_gmm", {N, KD, E}, w.bf16),
           {unsigned((N + 7) / 8), unsigned(std::min<i64>(R, 65535)), 1},
           {256, 1, 1}, 0, argv(rows.ptr, w.ptr, counts.ptr, y.ptr, R), k);
}

void moeCombine(CudaSession &s, const std::string &k, const json &, Ins &in, Ins &out) {
  DevTensor &eo = *in[0], &slots = *in[1], &w = *in[2], &y = *out[0];
  int64_t H = eo.dim(1), K = w.dim(-1);
  i64 R = eo.dim(0), n = w.dim(0) * w.dim(1);
  setShape(k, y, {w.dim(0), w.dim(1), H});
  CUdeviceptr inverse = s.workspace(size_t(R) * 8);
  s.launch(inst("invert_slots", {0}), {blocks(R, 256), 1, 1}, {256, 1, 1}, 0,
           argv(slots.ptr, inverse, R), k);
  s.launch(inst("moe_combine", {H, K}), {unsigned(n), 1, 1}, {128, 1, 1}, 0,
           argv(eo.ptr, inverse, w.ptr, y.ptr, n), k);
}

void mtp(CudaSession &s, const std::string &k, const json &p, Ins &in, Ins &out) {
  DevTensor &h = *in[0], &emb = *in[1], &enorm = *in[2], &hnorm = *in[3], &eh = *in[4];
  i64 depth = p.at("depth").get<int64_t>(), B = emb.dim(0), T = emb.dim(1);
  int64_t H = emb.dim(-1);
  i64 rows = T - depth, hRows = h.dim(1);
  if (rows < 1)
    fail("kernel {}: depth {} leaves no rows of a sequence of {}", k, depth, T);
  setShape(k, *out[0], {B, rows, H});
  float eps = float(p.at("epsilon").get<double>());
  CUdeviceptr cat = s.workspace(size_t(B * rows * 2 * H) * 4);
  s.launch(instW("mtp_concat", {H}, enorm.bf16), {unsigned(B * rows), 1, 1}, {128, 1, 1}, 0,
           argv(h.ptr, hRows, emb.ptr, T, enorm.ptr, hnorm.ptr, cat, B, rows, depth, eps), k);
  gemm(s, k + " eh_proj", cat, 2 * H, eh.ptr, 0, out[0]->ptr, B * rows, H, 2 * H,
       eh.bf16);
}

void crossEntropy(CudaSession &s, const std::string &k, const json &p, Ins &in, Ins &out) {
  DevTensor &logits = *in[0], &labels = *in[1];
  i64 B = logits.dim(0), Rw = logits.dim(1), T = labels.dim(1);
  int64_t V = logits.dim(2);
  i64 shift = p.at("shift").get<int64_t>(), ignore = p.at("ignore_index").get<int64_t>();
  float scale = float(p.at("scale").get<double>());
  setShape(k, *out[0], {});
  i64 n = B * Rw, r0 = 0;
  CUdeviceptr ce = s.workspace(size_t(n) * 4), valid = s.workspace(size_t(n) * 4);
  s.launch(inst("cross_entropy_rows", {V}), {unsigned(n), 1, 1}, {256, 1, 1}, 0,
           argv(logits.ptr, labels.ptr, ce, valid, B, Rw, T, shift, ignore, r0), k);
  s.launch(inst("sum_scaled", {0}), {1, 1, 1}, {1024, 1, 1}, 0,
           argv(ce, valid, out[0]->ptr, n, scale), k);
}

/// dsv3.lm_head_cross_entropy: per chunk of rows, lm_head's GEMM into a
/// chunk of logits in the workspace and each row's cross entropy
/// (cross_entropy_rows at the chunk's first row); the mean over every row
/// at the end. The full-vocabulary logits are never stored.
void lmHeadCrossEntropy(CudaSession &s, const std::string &k, const json &p, Ins &in,
                        Ins &out) {
  DevTensor &h = *in[0], &w = *in[1], &labels = *in[2];
  i64 B = h.dim(0), Rw = h.dim(1), T = labels.dim(1);
  int64_t V = w.dim(0), H = w.dim(1);
  if (h.dim(2) != H)
    fail("kernel {}: hidden is {} wide, the lm_head weight {}", k, h.dim(2), H);
  if (h.storage != DevTensor::Storage::F32)
    fail("kernel {}: the hidden states must be stored as floats", k);
  i64 shift = p.at("shift").get<int64_t>(), ignore = p.at("ignore_index").get<int64_t>();
  float scale = float(p.at("scale").get<double>());
  setShape(k, *out[0], {});
  const i64 n = B * Rw, chunk = lossChunkRows(n, V);
  CUdeviceptr ce = s.workspace(size_t(n) * 4), valid = s.workspace(size_t(n) * 4);
  CUdeviceptr logits = s.workspace(size_t(chunk * V) * 4);
  const CudaSession::WorkspaceMark mark = s.workspaceMark();
  for (i64 r0 = 0; r0 < n; r0 += chunk) {
    const i64 rows = std::min(chunk, n - r0);
    gemm(s, k + " logits", h.ptr + CUdeviceptr(r0 * H) * 4, H, w.ptr, 0, logits, rows, V, H,
         w.bf16);
    s.launch(inst("cross_entropy_rows", {V}), {unsigned(rows), 1, 1}, {256, 1, 1}, 0,
             argv(logits, labels.ptr, ce, valid, B, Rw, T, shift, ignore, r0), k);
    s.rewindWorkspace(mark); // the GEMM's bf16 operands
  }
  s.launch(inst("sum_scaled", {0}), {1, 1, 1}, {1024, 1, 1}, 0,
           argv(ce, valid, out[0]->ptr, n, scale), k);
}

const std::map<std::string, Launcher> &launchers() {
  static const std::map<std::string, Launcher> table = {
      {"embedding", embedding},
      {"rms_norm", rmsNorm},
      {"last_token", lastToken},
      {"linear", linear},
      {"lm_head", linear},
      {"add", elementwise},
      {"gated_linear", gatedLinear},
      {"norm_linear", normLinear},
      {"norm_gated_linear", normGatedLinear},
      {"linear_add", linearAdd},
      {"expert_gated_matmul", expertGatedMatmul},
      {"swiglu", elementwise},
      {"fill", fill},
      {"rope", rope},
      {"latent_attention", prefill},
      {"latent_attention_decode", decode},
      {"moe_route", moeRoute},
      {"moe_dispatch", moeDispatch},
      {"expert_grouped_matmul", groupedMatmul},
      {"moe_combine", moeCombine},
      {"mtp", mtp},
      {"cross_entropy", crossEntropy},
      {"lm_head_cross_entropy", lmHeadCrossEntropy},
  };
  static const std::map<std::string, Launcher> all = [] {
    std::map<std::string, Launcher> t = table;
    addGradLaunchers(t);
    addCollectiveLaunchers(t);
    return t;
  }();
  return all;
}
} // namespace

Launcher findLauncher(const std::string &kernel) {
  auto it = launchers().find(kernel);
  return it == launchers().end() ? nullptr : it->second;
}

} // namespace dsv3rt::cuda
