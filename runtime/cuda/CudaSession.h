//===- CudaSession.h - run an artifact on an NVIDIA GPU -----------*- C++ -*-===//
#ifndef DSV3_RUNTIME_CUDA_CUDASESSION_H
#define DSV3_RUNTIME_CUDA_CUDASESSION_H

#include "runtime/Artifact.h"
#include "runtime/Safetensors.h"
#include "runtime/cuda/CudaDriver.h"
#include "runtime/host/HostTensor.h"

#include <functional>
#include <map>
#include <tuple>
#include <string>
#include <vector>

namespace dsv3rt::cuda {

struct Dim3 {
  unsigned x = 1, y = 1, z = 1;
};

/// A buffer on the GPU with its runtime shape.
struct DevTensor {
  bool isInt = false;
  std::vector<int64_t> shape;
  CUdeviceptr ptr = 0;
  size_t capacity = 0; // elements
  int64_t scalar = 0;  // the value of an i64 scalar argument (host copy)
  bool bf16 = false;   // weights stored as bf16 (activations are float)
  bool fp8 = false;    // e4m3 codes (dsv3c --quantize fp8), one byte each
  /// A decode cache argument kept packed on the device (dsv3c --kv-cache:
  /// 1 bf16, 2 fp8; DSV3_CACHE_ROW_BYTES a row): the shape stays the host's
  /// [batch, max_seq, r + dr] floats. 0: fp32 rows as the shape says.
  int cacheForm = 0;
  /// How the producer stored this activation: as float (the default), or,
  /// for a buffer whose only reader is a GEMM that rounds or quantizes its
  /// rows before anything else (reader), already in that form: bf16
  /// (round to nearest even), or e4m3 codes [rows, K] with the 1x128 block
  /// scales after them (fp8Scales(); fp8_quantize's values). The producer
  /// sets it on every run; the reader takes the stored form as it is.
  enum class Storage : uint8_t { F32, Bf16, E4m3 };
  Storage storage = Storage::F32;
  /// This buffer's only reader (soleReaders); none when every launch's
  /// outputs are reported as floats (onLaunch).
  SoleReader reader;
  bool onlyReadBy(const char *kernel, int input) const {
    return reader.launch && reader.input == input && reader.launch->kernel == kernel;
  }
  int64_t numel() const {
    int64_t n = 1;
    for (int64_t d : shape)
      n *= d;
    return n;
  }
  int64_t dim(int k) const { return shape.at(k < 0 ? shape.size() + k : k); }
};

/// Executes an artifact's entries on the GPU with the kernels NVRTC
/// compiled into it (the cubin of this GPU's architecture, else PTX that
/// the driver JITs). Same interface as HostSession<float>: arguments and
/// results are host tensors; weights are uploaded once; one allocation
/// holds every entry's arena as the memory plan lays it out.
/// Random weights made on the GPU (dsv3-run --random-weights SEED): the
/// parameters `dsv3-run init` sets to constants get them, the others
/// normal(0, std) from a counter-based hash of the seed (not init's values).
struct RandomWeights {
  uint64_t seed = 0;
  double std = 0.02;
};

class CudaSession {
public:
  using Real = float;
  CudaSession(const Artifact &artifact, const WeightStore &weights);
  CudaSession(const Artifact &artifact, const RandomWeights &random);
  ~CudaSession();

  /// Runs entry `name`. Arguments are uploaded into buffers kept per entry
  /// and argument (no allocation after the first run); arguments inside a
  /// resident buffer are not copied at all. The second run with the same
  /// shapes and buffers is captured as a CUDA graph, which later such runs
  /// replay (one launch for the whole step; DSV3_CUDA_GRAPHS=0 turns this
  /// off). Results that are arguments (the caches) are returned as views of
  /// the caller's memory.
  std::vector<HostTensor<float>> run(const std::string &name,
                                     std::vector<HostTensor<float>> args);
  /// Keeps the host buffer [host, host + bytes) on the GPU: uploaded now,
  /// then any argument lying inside it (a decode cache, or a view of some
  /// of its sequences) uses the device copy in place, without transfers,
  /// until releaseResident(host) (which copies it back when asked).
  /// latentCache: the buffer is a decode cache ([slots, max_seq, r + dr]
  /// floats): where the artifact keeps its caches packed (dsv3c --kv-cache
  /// bf16 | fp8) the device copy is packed (and unpacked when copied back).
  void makeResident(const void *host, size_t bytes, bool latentCache = false);
  void releaseResident(const void *host, bool copyBack);
  /// How the artifact's decode caches keep a row on the device (PackedCache
  /// cf 0: fp32, the host's layout).
  struct PackedCache {
    int64_t r = 0, dr = 0, cf = 0;
    int64_t width() const { return r + dr; }
    int64_t rowBytes() const;
  };
  const PackedCache &packedCache();
  struct GraphStats {
    int64_t captured = 0, replayed = 0;
  };
  const GraphStats &graphStats() const { return graphStats_; }
  const Artifact &artifact() const { return artifact_; }
  /// A parameter on the device (null if the artifact has none so named):
  /// a producer looks at its sole reader's weights (DevTensor::reader).
  DevTensor *param(const std::string &name);
  /// The parameters' host copies (as uploaded; training updates the device
  /// copies: downloadParams() refreshes these, uploadParams() writes them
  /// back).
  std::map<std::string, std::vector<float>> &paramData();
  void downloadParams();
  void uploadParams();
  /// Called after every launch with its index, kernel and outputs copied to
  /// the host (synchronising the stream: for per-kernel comparisons).
  std::function<void(size_t, const std::string &,
                     const std::vector<HostTensor<float> *> &)>
      onLaunch;

  /// "NVIDIA H100 80GB HBM3 (sm_90, cubin sm_90a)".
  const std::string &description() const { return description_; }
  /// What the session holds on the device now: the parameters with their
  /// optimizer state, the activation arena (the plan's peak over the
  /// entries, allocated once) and the launchers' workspace (grown to its
  /// high-water mark, never shrunk), beside the driver's count of memory
  /// in use (the whole GPU, and past the session's start).
  std::string memoryReport() const;

  // For the launchers.
  CUfunction function(const std::string &instance);
  /// Whether the artifact's module has `instance` (kernels an older dsv3c
  /// did not compile are skipped by the launchers that can do without).
  bool hasFunction(const std::string &instance) const;
  /// Scratch memory for the current launch (valid until the next launch:
  /// launches run in stream order).
  CUdeviceptr workspace(size_t bytes);
  /// Where the workspace is filled to now. A launcher that loops over
  /// chunks takes a mark after what every chunk shares and rewinds to it
  /// after each chunk's launches are enqueued: the next chunk's launches
  /// run after them in stream order, so they may reuse that scratch (one
  /// chunk's worth, not all of them).
  struct WorkspaceMark {
    size_t chunk, used;
  };
  WorkspaceMark workspaceMark() const { return {chunk_, chunkUsed_}; }
  void rewindWorkspace(WorkspaceMark m) {
    chunk_ = m.chunk;
    chunkUsed_ = m.used;
  }
  /// A device copy of a small constant table (uploaded once per key).
  CUdeviceptr constant(const std::string &key, const std::vector<float> &data);
  void launch(const std::string &instance, Dim3 grid, Dim3 block, size_t smem,
              std::vector<void *> args, const std::string &what);
  void upload(CUdeviceptr dst, const void *src, size_t bytes, const std::string &what);
  /// A device buffer of `bytes` (at least 16) owned by the session, holding
  /// a copy of `src` when given (the check commands' operands).
  CUdeviceptr deviceBuffer(size_t bytes, const std::string &what, const void *src = nullptr);
  Driver &driver() { return drv_; }
  /// Streaming multiprocessors (launchers size split-K/split-KV grids).
  int multiprocessors() const { return sms_; }
  /// Compute capability as 10 * major + minor (FP8 tensor cores from 89).
  int computeCapability() const { return cc_; }
  /// Whether plain bf16 GEMMs of many rows run on cuBLASLt (CublasLt.h):
  /// decided, and its workspace allocated, when the session starts; a
  /// check may turn it off to run dsv3's kernel on the same shapes.
  bool cublasLt = false;
  /// FP8 training's quantized copy of an fp32 master weight (codes and
  /// scales, and their transposed blocks for Dgrad), made by the first
  /// launch of an entry run that reads the weight and read by the others
  /// (its forward, the forward recomputed and the Dgrad: one quantization
  /// a weight a step, not one a use). Session-owned buffers, allocated at
  /// the weight's first use; `current` is cleared when an entry run starts
  /// (a captured graph records the quantization at the first use again) and
  /// when the optimizer updates weights. DSV3_FP8_MASTER_COPIES=0: every
  /// use quantizes into the workspace, as before.
  struct Fp8MasterCopy {
    CUdeviceptr codes = 0, scales = 0, codesT = 0, scalesT = 0;
    bool current = false;
  };
  /// The copy of `weight` in `br` x `bc` blocks (`codes` bytes of codes,
  /// `scales` bytes of scales each way).
  Fp8MasterCopy &fp8MasterCopy(CUdeviceptr weight, int br, int bc, size_t codes,
                               size_t scales);
  void invalidateFp8MasterCopies() {
    for (auto &entry : fp8Masters_)
      entry.second.current = false;
  }
  /// The dequantized copy of an FP8 weight that the absorbed decode reads
  /// (kv_b_proj), made once when the weights are bound; 0 if none.
  CUdeviceptr dequantizedOf(CUdeviceptr fp8) const {
    auto it = dequantized_.find(fp8);
    return it == dequantized_.end() ? 0 : it->second;
  }
  /// DSV3_PROFILE: forgets the launches timed so far. The tools call it
  /// after their warm-up runs, whose first launch of each library kernel
  /// also loads its module (CUDA's lazy loading: tens of milliseconds that
  /// the profile put on whichever cuBLASLt call came first).
  void resetProfile();
  /// Work issued on the stream by a library (cuBLASLt) rather than a
  /// launch(): timed under `instance` like a kernel (DSV3_PROFILE, --trace).
  void timedCall(const std::string &instance, const std::string &what,
                 const std::function<void()> &issue);
  CUstream stream() const { return stream_; }
  /// Only kernels that keep activations in fp32 (the host's precision):
  /// set by `compare`, which checks the GPU against the host at 1e-4. Off,
  /// bf16 models also run kernels that round activations to bf16 (the
  /// tensor-core attention and GEMMs), checked on their own (`dsv3-run
  /// bf16-check`) and against the oracle at bf16 tolerances.
  bool fp32Activations = false;
  /// FP8 GEMMs only on kernels that add each 128-wide K block's products in
  /// fp32 (mma.sync e4m3; SEMANTICS.md's FP8 GEMM): set by verify for its
  /// checks against float64, implied by fp32Activations. Off, Hopper runs
  /// FP8 GEMMs of many rows on the warpgroup MMA (fp8_gemm_wgmma), which
  /// keeps ~14 bits while it accumulates a block before the kernel promotes
  /// it to fp32 (DeepSeek-V3 3.3.2; each GEMM is bounded by `dsv3-run
  /// fp8-gemm --backend cuda`).
  bool exactFp8Accumulation = false;
  /// Training with bf16 compute (fp32 master weights and AdamW state, as
  /// the artifact stores them): the attention forward and backward run on
  /// bf16 tensor cores (mla_prefill_mma, mla_grad_q_mma, mla_grad_kv_mma)
  /// rather than the fp32 kernels. Set by `dsv3-run train/time --compute
  /// bf16`; off under fp32Activations, which the checks against the host
  /// set (the bf16 kernels are bounded by `dsv3-run bf16-check --train`).
  bool bf16Compute = false;
  bool bf16Attention() const { return bf16Compute && !fp32Activations; }
  int64_t fp8WgmmaLaunches() const { return fp8WgmmaLaunches_; }
  void countFp8WgmmaLaunch() { ++fp8WgmmaLaunches_; }
  /// How many launches so far rounded activations to bf16 (counted by
  /// their launchers): verify reports, rather than checks at fp32's
  /// tolerance, the forms such launches make differ.
  int64_t bf16ActivationLaunches() const { return bf16ActivationLaunches_; }
  void countBf16ActivationLaunch() { ++bf16ActivationLaunches_; }

private:
  int64_t bf16ActivationLaunches_ = 0;
  int64_t fp8WgmmaLaunches_ = 0;
  std::vector<CUdeviceptr> buffers_; // deviceBuffer()
  void loadModule();
  void checkFreeMemory();
  void allocateArena();
  const Artifact &artifact_;
  Driver &drv_;
  CUdevice device_ = 0;
  CUcontext context_ = nullptr;
  CUstream stream_ = nullptr;
  CUmodule module_ = nullptr;
  std::string description_;
  int sms_ = 1, cc_ = 0;
  std::map<CUdeviceptr, CUdeviceptr> dequantized_;
  std::map<std::tuple<CUdeviceptr, int, int>, Fp8MasterCopy> fp8Masters_;
  double fp8MasterBytes_ = 0;
  void dequantizeAbsorbedWeights();
  std::map<std::string, std::string> lowered_; // instance -> mangled name
  std::map<std::string, CUfunction> functions_;
  std::map<std::string, DevTensor> params_;
  std::map<std::string, std::vector<float>> hostParams_;
  CUdeviceptr arena_ = 0;
  size_t arenaBytes_ = 0;
  size_t baselineBytes_ = 0; // in use on the device before the session's allocations
  /// Activations are float on the GPU: a plan laid out for narrower
  /// elements (bf16 models) is scaled uniformly, as on the host.
  size_t scale_ = 1;
  /// Workspace chunks, never freed while the session lives (an earlier
  /// piece of the same launch may still be in use), reused by every launch.
  std::vector<std::pair<CUdeviceptr, size_t>> chunks_;
  size_t chunk_ = 0, chunkUsed_ = 0;
  std::map<std::string, CUdeviceptr> constants_;
  /// The last run's results on the host, one buffer a result, reused by
  /// the next run (page-locked; pageable where pinning failed). A fresh
  /// pageable vector a call cost a decode step at batch 128 (66 MB of
  /// logits) ~30 ms of zero-filling and page faults.
  struct HostBuffer {
    void *pinned = nullptr;
    std::vector<uint8_t> pageable;
    size_t bytes = 0;
    void *data() { return pinned ? pinned : pageable.data(); }
  };
  std::vector<HostBuffer> results_;
  void *resultBuffer(size_t index, size_t bytes);
  /// Per entry, per argument: a device buffer and its size in bytes.
  std::map<std::string, std::vector<std::pair<CUdeviceptr, size_t>>> argBuffers_;
  struct Resident {
    const char *host;
    size_t bytes;
    CUdeviceptr dev;
    PackedCache packed; // cf 0: the host's bytes as they are
    size_t devBytes;    // on the device (packed: DSV3_CACHE_ROW_BYTES a row)
  };
  /// Per entry, per argument: the packed cache it is (cf 0: none).
  std::map<std::string, std::vector<PackedCache>> packedArgs_;
  const std::vector<PackedCache> &packedArgsOf(const Entry &entry);
  bool packedCacheKnown_ = false;
  PackedCache packedCache_;
  /// `rows` cache rows between the host's fp32 layout (`f32`, device) and
  /// the packed one (`packed`), on the stream.
  void packCacheRows(const PackedCache &c, CUdeviceptr f32, CUdeviceptr packed, int64_t rows);
  void unpackCacheRows(const PackedCache &c, CUdeviceptr packed, CUdeviceptr f32, int64_t rows);
  /// A packed cache's rows to `host` as `bytes` of fp32 rows (through
  /// scratch, synchronously).
  void downloadUnpacked(const PackedCache &c, CUdeviceptr packed, void *host, size_t bytes);
  /// A packed cache's device bytes for a host buffer of `bytes`.
  static size_t packedBytes(const PackedCache &c, size_t bytes);
  std::vector<Resident> resident_;
  /// A captured run: replayed when entry, argument buffers, shapes and
  /// scalars match (its key); `buffers` holds the shapes the launchers set.
  struct Graph {
    CUgraph graph = nullptr;
    CUgraphExec exec = nullptr;
    std::vector<DevTensor> buffers;
  };
  std::map<std::string, Graph> graphs_;
  /// Per entry, per buffer: its only reader, if it has one.
  std::map<std::string, std::vector<SoleReader>> soleReaders_;
  const std::vector<SoleReader> &soleReadersOf(const Entry &entry);
  std::map<std::string, int> runsSeen_;
  bool useGraphs_ = true;
  GraphStats graphStats_;
  void dropGraphs();
  /// DSV3_PROFILE=1: every launch timed with CUDA events (graphs off); the
  /// totals per kernel instance are printed when the session ends.
  /// DSV3_PROFILE=site: per instance and launch site (the op's step, e.g.
  /// "latent_attention_prefill o_proj"), to tell apart the GEMMs one
  /// library instance runs.
  bool profile_ = false, profileSites_ = false;
  struct Timed {
    std::string instance, what, loc;
    CUevent start, stop;
  };
  /// --trace: launches timed as with DSV3_PROFILE and placed on the host
  /// clock from a base event recorded when the entry starts.
  bool tracing_ = false;
  CUevent traceBase_ = nullptr;
  double traceBaseUs_ = 0;
  std::string currentLoc_, currentEntry_;
  std::vector<Timed> pendingTimes_;
  std::vector<CUevent> freeEvents_;
  struct KernelTime {
    int64_t calls = 0;
    double ms = 0;
  };
  std::map<std::string, KernelTime> kernelTimes_;
  CUevent event();
  void collectTimes();
  void printProfile();
  /// Copies a launch's outputs to the host for onLaunch.
  void reportLaunch(size_t l, const std::string &kernel,
                    const std::vector<DevTensor *> &outs);
};

/// A kernel's launcher: computes the output shapes (as the host kernel
/// does) and launches the CUDA instances KernelNames.h names.
using Launcher = void (*)(CudaSession &s, const std::string &kernel,
                          const nlohmann::json &params,
                          std::vector<DevTensor *> &ins,
                          std::vector<DevTensor *> &outs);
Launcher findLauncher(const std::string &kernel);

} // namespace dsv3rt::cuda

#endif // DSV3_RUNTIME_CUDA_CUDASESSION_H
