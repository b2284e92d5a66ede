//===- CublasLt.cpp - cuBLASLt for the plain bf16 GEMMs -------------------===//
#include "runtime/cuda/CublasLt.h"

#include "runtime/Error.h"
#include "runtime/cuda/Nvrtc.h"

#include <cublasLt.h>
#include <cmath>

#include <cstdlib>
#include <dlfcn.h>
#include <fcntl.h>
#include <fstream>
#include <map>
#include <mutex>
#include <string>
#include <tuple>
#include <unistd.h>
#include <vector>

namespace dsv3rt::cuda {
namespace {

/// The entry points dsv3 calls, from libcublasLt opened with dlopen.
struct LtApi {
  decltype(&::cublasLtCreate) create;
  decltype(&::cublasLtGetStatusString) statusString;
  decltype(&::cublasLtMatmulDescCreate) descCreate;
  decltype(&::cublasLtMatmulDescSetAttribute) descSet;
  decltype(&::cublasLtMatrixLayoutCreate) layoutCreate;
  decltype(&::cublasLtMatrixLayoutSetAttribute) layoutSet;
  decltype(&::cublasLtMatmulPreferenceCreate) prefCreate;
  decltype(&::cublasLtMatmulPreferenceSetAttribute) prefSet;
  decltype(&::cublasLtMatmulAlgoGetHeuristic) heuristic;
  decltype(&::cublasLtMatmul) matmul;
  decltype(&::cublasLtGetVersion) version;
  cublasLtHandle_t handle = nullptr;
  cublasLtMatmulPreference_t pref = nullptr;
  CUdeviceptr workspace = 0;
  /// 32 MiB: what cuBLAS asks for on Hopper for its largest tiles.
  static constexpr size_t kWorkspace = size_t(32) << 20;

  void check(cublasStatus_t st, const char *call, const char *what) const {
    if (st != CUBLAS_STATUS_SUCCESS)
      fail("{}: {} failed: {} ({})", what, call, statusString ? statusString(st) : "?",
           int(st));
  }
};

/// Why the library did not load ("" when it did), for the messages.
std::string &loadError() {
  static std::string error;
  return error;
}

/// Opens the library and makes the handle and workspace (once a process);
/// null when the library is missing (the GEMMs then stay on dsv3's kernels).
/// Looked for: DSV3_CUBLAS_LIB, the loader's path, then the toolkit's
/// library folder found at build time and $CUDA_HOME/lib64.
LtApi *api() {
  static LtApi *a = []() -> LtApi * {
    std::vector<std::string> names;
    if (const char *env = std::getenv("DSV3_CUBLAS_LIB"); env && *env)
      names.push_back(env);
    names.push_back("libcublasLt.so.13");
    names.push_back("libcublasLt.so.12");
    names.push_back("libcublasLt.so");
#ifdef DSV3_CUDA_LIBDIR
    names.push_back(std::string(DSV3_CUDA_LIBDIR) + "/libcublasLt.so");
#endif
    if (const char *home = std::getenv("CUDA_HOME"); home && *home)
      names.push_back(std::string(home) + "/lib64/libcublasLt.so");
    void *lib = nullptr;
    for (const std::string &n : names) {
      lib = dlopen(n.c_str(), RTLD_NOW | RTLD_LOCAL);
      if (lib)
        break;
      const char *e = dlerror();
      loadError() += (loadError().empty() ? "" : "; ") + std::string(e ? e : n);
    }
    if (!lib)
      return nullptr;
    loadError().clear();
    auto *p = new LtApi();
    bool ok = true;
    auto sym = [&](auto &fn, const char *name) {
      void *f = dlsym(lib, name);
      ok = ok && f;
      fn = reinterpret_cast<std::remove_reference_t<decltype(fn)>>(f);
    };
    sym(p->create, "cublasLtCreate");
    sym(p->statusString, "cublasLtGetStatusString");
    sym(p->descCreate, "cublasLtMatmulDescCreate");
    sym(p->descSet, "cublasLtMatmulDescSetAttribute");
    sym(p->layoutCreate, "cublasLtMatrixLayoutCreate");
    sym(p->layoutSet, "cublasLtMatrixLayoutSetAttribute");
    sym(p->prefCreate, "cublasLtMatmulPreferenceCreate");
    sym(p->prefSet, "cublasLtMatmulPreferenceSetAttribute");
    sym(p->heuristic, "cublasLtMatmulAlgoGetHeuristic");
    sym(p->matmul, "cublasLtMatmul");
    sym(p->version, "cublasLtGetVersion");
    if (!ok)
      fail("libcublasLt lacks an entry point dsv3 calls (too old a cuBLAS?); DSV3_CUBLAS=0 "
           "runs without it");
    p->check(p->create(&p->handle), "cublasLtCreate", "cuBLASLt");
    p->check(p->prefCreate(&p->pref), "cublasLtMatmulPreferenceCreate", "cuBLASLt");
    size_t ws = LtApi::kWorkspace;
    p->check(p->prefSet(p->pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws),
             "cublasLtMatmulPreferenceSetAttribute", "cuBLASLt");
    // Made before any stream capture (the session asks at start-up), so a
    // captured GEMM never allocates.
    Driver &drv = Driver::get();
    DSV3_CU(drv, memAlloc, "the cuBLASLt workspace", &p->workspace, LtApi::kWorkspace);
    return p;
  }();
  return a;
}

/// A shape's descriptors and the algorithm cuBLASLt's heuristic picked
/// (`supported` false: the heuristic found none, for the FP8 GEMMs whose
/// callers then run their own kernel).
struct Plan {
  cublasLtMatmulDesc_t desc;
  cublasLtMatrixLayout_t a, b, c;
  cublasLtMatmulAlgo_t algo;
  bool supported = true;
};

/// Algorithms the heuristic is asked for a shape (each then timed).
constexpr int kCandidates = 8;

/// The descriptors of y^T [N, M] (fp32, ld N) = W [K, N]^T x [K, M] with
/// operands of type `operand`: row-major W [N, K] and x [M, K] seen
/// column-major, A = W transposed, B = x as is (the "TN" form FP8 requires
/// and the bf16 GEMMs use too).
Plan tnPlan(const LtApi &lt, const char *what, cudaDataType_t operand, int64_t M, int64_t N,
            int64_t K) {
  Plan p;
  lt.check(lt.descCreate(&p.desc, CUBLAS_COMPUTE_32F, CUDA_R_32F), "cublasLtMatmulDescCreate",
           what);
  cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
  lt.check(lt.descSet(p.desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta),
           "cublasLtMatmulDescSetAttribute", what);
  lt.check(lt.descSet(p.desc, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb),
           "cublasLtMatmulDescSetAttribute", what);
  lt.check(lt.layoutCreate(&p.a, operand, uint64_t(K), uint64_t(N), K),
           "cublasLtMatrixLayoutCreate", what);
  lt.check(lt.layoutCreate(&p.b, operand, uint64_t(K), uint64_t(M), K),
           "cublasLtMatrixLayoutCreate", what);
  lt.check(lt.layoutCreate(&p.c, CUDA_R_32F, uint64_t(N), uint64_t(M), N),
           "cublasLtMatrixLayoutCreate", what);
  return p;
}

/// Runs a tnPlan: y = W^T x (+ res, the C operand with beta 1; it may be y).
void runTn(const LtApi &lt, const Plan &p, const char *what, CUstream stream, CUdeviceptr W,
           CUdeviceptr x, CUdeviceptr res, CUdeviceptr y) {
  const float one = 1.0f, zero = 0.0f;
  lt.check(lt.matmul(lt.handle, p.desc, &one, reinterpret_cast<const void *>(W), p.a,
                     reinterpret_cast<const void *>(x), p.b, res ? &one : &zero,
                     reinterpret_cast<const void *>(res ? res : y), p.c,
                     reinterpret_cast<void *>(y), p.c, &p.algo,
                     reinterpret_cast<void *>(lt.workspace), LtApi::kWorkspace,
                     reinterpret_cast<cudaStream_t>(stream)),
           "cublasLtMatmul", what);
}

/// The tuning record: which of the heuristic's candidates was fastest for
/// each shape, kept on disk ($DSV3_CACHE_DIR, as the NVRTC re-JITs) per GPU
/// model and cuBLASLt version, so that every later process takes the same
/// algorithm. Two algorithms sum a GEMM's products in different orders, so
/// choosing afresh in each process made two training runs from the same
/// state part at the first step (gradient norm 30.59927 against 30.59919
/// on the H200: scripts/gpu-repro-check.sh); with the record they are
/// bitwise equal. One line a shape, "M N K residual candidate", appended
/// in one write (later lines win); processes that time a shape at the
/// same moment may still choose apart once. The residual field is 0 / 1
/// for the bf16 GEMMs, 2 / 3 for the block-scaled FP8 ones.
class TuneRecord {
public:
  using Key = std::tuple<int64_t, int64_t, int64_t, int>;
  void open(const std::string &device, size_t version) {
    std::string dir = jitCacheDir();
    path_ = fmt::format("{}/cublaslt-tune-{:016x}.txt", dir,
                        stableHash(fmt::format("{} cublasLt {}", device, version)));
    std::ifstream in(path_);
    int64_t M, N, K;
    int kind, candidate;
    while (in >> M >> N >> K >> kind >> candidate)
      choices_[{M, N, K, kind}] = candidate;
    writable_ = makeDirectories(dir);
  }
  /// The recorded candidate for `key`, or -1.
  int find(const Key &key) const {
    auto it = choices_.find(key);
    return it == choices_.end() ? -1 : it->second;
  }
  void add(const Key &key, int candidate) {
    choices_[key] = candidate;
    if (!writable_)
      return;
    std::string line = fmt::format("{} {} {} {} {}\n", std::get<0>(key), std::get<1>(key),
                                   std::get<2>(key), std::get<3>(key), candidate);
    int fd = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd < 0)
      return; // a read-only cache: this process keeps its choice in memory
    ssize_t n = ::write(fd, line.data(), line.size());
    (void)n;
    ::close(fd);
  }

private:
  std::map<Key, int> choices_;
  std::string path_;
  bool writable_ = false;
};

TuneRecord &tuneRecord() {
  static TuneRecord record;
  return record;
}

/// The fastest of the heuristic's `found` algorithms for plan `p`, each
/// timed over three runs on the call's operands (after one untimed run),
/// written with beta 0 into a scratch output, so that the call's output and
/// residual are untouched; the choice recorded (TuneRecord) and taken from
/// the record when the shape was timed before, by this process or an
/// earlier one. The heuristic's first pick is not always the fastest: at a
/// 4 x 2048 prefill's shapes on an H200 the fastest of eight gained 3-10%
/// (q_b 0.857 -> 0.777 ms, dense down 3.08 -> 2.98; docs/benchmarks.md).
/// The first pick when the stream is being captured (nothing can be timed
/// there) and the shape has no record, or with DSV3_CUBLAS_TUNE=0;
/// DSV3_CUBLAS_TUNE=retime times every shape again (and records it),
/// DSV3_CUBLAS_TUNE=log prints each timed shape's times.
/// `kind`: the tuning record's residual field (TuneRecord).
cublasLtMatmulAlgo_t fastestAlgo(const LtApi &lt, const Plan &p,
                                 const cublasLtMatmulHeuristicResult_t *r, int found,
                                 const char *what, CUstream stream, CUdeviceptr xb,
                                 CUdeviceptr W, int64_t M, int64_t N, int64_t K, int kind) {
  static const std::string mode = [] {
    const char *env = std::getenv("DSV3_CUBLAS_TUNE");
    return std::string(env ? env : "1");
  }();
  Driver &drv = Driver::get();
  CUstreamCaptureStatus capture = CU_STREAM_CAPTURE_STATUS_NONE;
  DSV3_CU(drv, streamIsCapturing, what, stream, &capture);
  if (mode == "0" || found < 2)
    return r[0].algo;
  const TuneRecord::Key key{M, N, K, kind};
  if (int c = tuneRecord().find(key); c >= 0 && c < found && mode != "retime")
    return r[c].algo;
  if (capture != CU_STREAM_CAPTURE_STATUS_NONE)
    return r[0].algo;
  // No room for a scratch output (a session near the GPU's memory): the
  // first pick, untimed.
  CUdeviceptr scratch = 0;
  if (drv.memAlloc(&scratch, size_t(M * N) * 4) != CUDA_SUCCESS)
    return r[0].algo;
  CUevent start = nullptr, stop = nullptr;
  DSV3_CU(drv, eventCreate, what, &start, CU_EVENT_DEFAULT);
  DSV3_CU(drv, eventCreate, what, &stop, CU_EVENT_DEFAULT);
  const float one = 1.0f, zero = 0.0f;
  auto run = [&](const cublasLtMatmulAlgo_t &algo) {
    return lt.matmul(lt.handle, p.desc, &one, reinterpret_cast<const void *>(W), p.a,
                     reinterpret_cast<const void *>(xb), p.b, &zero,
                     reinterpret_cast<const void *>(scratch), p.c,
                     reinterpret_cast<void *>(scratch), p.c, &algo,
                     reinterpret_cast<void *>(lt.workspace), LtApi::kWorkspace,
                     reinterpret_cast<cudaStream_t>(stream));
  };
  int best = 0;
  float bestMs = INFINITY, firstMs = INFINITY;
  for (int i = 0; i < found; ++i) {
    // An algorithm that refuses the operands is skipped.
    if (run(r[i].algo) != CUBLAS_STATUS_SUCCESS)
      continue;
    DSV3_CU(drv, eventRecord, what, start, stream);
    bool ok = true;
    for (int rep = 0; rep < 3; ++rep)
      ok = ok && run(r[i].algo) == CUBLAS_STATUS_SUCCESS;
    DSV3_CU(drv, eventRecord, what, stop, stream);
    DSV3_CU(drv, streamSynchronize, what, stream);
    float ms = 0;
    DSV3_CU(drv, eventElapsedTime, what, &ms, start, stop);
    ms /= 3;
    if (i == 0)
      firstMs = ms;
    if (ok && ms < bestMs) {
      bestMs = ms;
      best = i;
    }
  }
  if (mode == "log")
    fmt::print(stderr,
               "cuBLASLt {}x{}x{} ({}): {} algorithms timed, heuristic's first {:.3f} ms, "
               "fastest (#{}) {:.3f} ms ({:.0f} TFLOP/s)\n",
               M, N, K, what, found, firstMs, best, bestMs,
               2.0 * double(M) * double(N) * double(K) / (double(bestMs) * 1e9));
  drv.eventDestroy(start);
  drv.eventDestroy(stop);
  DSV3_CU(drv, memFree, what, scratch);
  tuneRecord().add(key, best);
  return r[best].algo;
}

} // namespace

bool cublasLtAvailable(int computeCapability, const std::string &device) {
  static const std::string wanted = [] {
    const char *env = std::getenv("DSV3_CUBLAS");
    return std::string(env ? env : "");
  }();
  if (wanted == "0" || computeCapability < 80)
    return false;
  if (LtApi *lt = api()) {
    static std::once_flag once;
    std::call_once(once, [&] { tuneRecord().open(device, lt->version()); });
    return true;
  }
  if (wanted == "1")
    fail("DSV3_CUBLAS=1: cannot load cuBLASLt ({}); DSV3_CUBLAS_LIB=PATH names the library",
         loadError());
  return false;
}

void cublasLtGemm(const char *what, CUstream stream, CUdeviceptr xb, CUdeviceptr W,
                  CUdeviceptr res, CUdeviceptr y, int64_t M, int64_t N, int64_t K) {
  LtApi *lt = api();
  if (!lt)
    fail("{}: cuBLASLt is not loaded", what);
  static std::mutex mu;
  static std::map<std::tuple<int64_t, int64_t, int64_t, bool>, Plan> plans;
  std::lock_guard<std::mutex> lock(mu);
  auto key = std::make_tuple(M, N, K, res != 0);
  auto it = plans.find(key);
  if (it == plans.end()) {
    Plan p = tnPlan(*lt, what, CUDA_R_16BF, M, N, K);
    cublasLtMatmulHeuristicResult_t r[kCandidates]{};
    int found = 0;
    lt->check(lt->heuristic(lt->handle, p.desc, p.a, p.b, p.c, p.c, lt->pref, kCandidates, r,
                            &found),
              "cublasLtMatmulAlgoGetHeuristic", what);
    if (found < 1)
      fail("{}: cuBLASLt has no algorithm for bf16 {}x{}x{} with fp32 output; DSV3_CUBLAS=0 "
           "keeps dsv3's kernels",
           what, M, N, K);
    p.algo = fastestAlgo(*lt, p, r, found, what, stream, xb, W, M, N, K, res ? 1 : 0);
    it = plans.emplace(key, p).first;
  }
  runTn(*lt, it->second, what, stream, W, xb, res, y);
}

namespace {
/// The FP8 GEMMs' plans by (M, N, K, with a residual), refusals included:
/// the one record of which shapes the library takes.
using Fp8Key = std::tuple<int64_t, int64_t, int64_t, bool>;
std::mutex fp8PlansMutex;
std::map<Fp8Key, Plan> &fp8Plans() {
  static std::map<Fp8Key, Plan> plans;
  return plans;
}
} // namespace

bool cublasLtFp8Refused(int64_t M, int64_t N, int64_t K, bool res) {
  std::lock_guard<std::mutex> lock(fp8PlansMutex);
  auto it = fp8Plans().find(Fp8Key{M, N, K, res});
  return it != fp8Plans().end() && !it->second.supported;
}

bool cublasLtFp8Gemm(const char *what, CUstream stream, CUdeviceptr xq, CUdeviceptr xScales,
                     CUdeviceptr Wq, CUdeviceptr wScales, CUdeviceptr res, CUdeviceptr y,
                     int64_t M, int64_t N, int64_t K) {
  LtApi *lt = api();
  if (!lt)
    return false;
  std::lock_guard<std::mutex> lock(fp8PlansMutex);
  auto &plans = fp8Plans();
  auto key = std::make_tuple(M, N, K, res != 0);
  auto it = plans.find(key);
  const bool fresh = it == plans.end();
  if (fresh) {
    // As cublasLtGemm (FP8 takes only this "TN" form: both operands
    // K-major). A is the weight, scaled in 128 x 128 blocks; B the
    // activations, in 1 x 128 blocks.
    Plan p = tnPlan(*lt, what, CUDA_R_8F_E4M3, M, N, K);
    int32_t aMode = CUBLASLT_MATMUL_MATRIX_SCALE_BLK128x128_32F,
            bMode = CUBLASLT_MATMUL_MATRIX_SCALE_VEC128_32F;
    auto set = [&](cublasLtMatmulDescAttributes_t attr, const void *v, size_t n) {
      lt->check(lt->descSet(p.desc, attr, v, n), "cublasLtMatmulDescSetAttribute", what);
    };
    set(CUBLASLT_MATMUL_DESC_A_SCALE_MODE, &aMode, sizeof aMode);
    set(CUBLASLT_MATMUL_DESC_B_SCALE_MODE, &bMode, sizeof bMode);
    set(CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, &wScales, sizeof wScales);
    set(CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, &xScales, sizeof xScales);
    cublasLtMatmulHeuristicResult_t r[kCandidates]{};
    int found = 0;
    // A refusal (an older cuBLAS, a GPU without block scaling, a shape it
    // does not take) is an answer, not an error: the caller's kernel runs.
    if (lt->heuristic(lt->handle, p.desc, p.a, p.b, p.c, p.c, lt->pref, kCandidates, r,
                      &found) != CUBLAS_STATUS_SUCCESS ||
        found < 1) {
      p.supported = false;
      plans.emplace(key, p);
      return false;
    }
    p.algo = fastestAlgo(*lt, p, r, found, what, stream, xq, Wq, M, N, K, res ? 3 : 2);
    it = plans.emplace(key, p).first;
  }
  Plan &p = it->second;
  if (!p.supported)
    return false;
  if (!fresh) { // this call's scales (the plan's were the first call's)
    lt->check(lt->descSet(p.desc, CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, &wScales,
                          sizeof wScales),
              "cublasLtMatmulDescSetAttribute", what);
    lt->check(lt->descSet(p.desc, CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, &xScales,
                          sizeof xScales),
              "cublasLtMatmulDescSetAttribute", what);
  }
  runTn(*lt, p, what, stream, Wq, xq, res, y);
  return true;
}

void cublasLtGemmStridedBatched(const char *what, CUstream stream, bool transA, CUdeviceptr A,
                                int64_t lda, int64_t strideA, CUdeviceptr B, int64_t ldb,
                                int64_t strideB, CUdeviceptr D, int64_t ldd, int64_t strideD,
                                int64_t m, int64_t n, int64_t k, int64_t batch) {
  LtApi *lt = api();
  if (!lt)
    fail("{}: cuBLASLt is not loaded", what);
  static std::mutex mu;
  using Key = std::tuple<bool, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t,
                         int64_t, int64_t, int64_t>;
  static std::map<Key, Plan> plans;
  std::lock_guard<std::mutex> lock(mu);
  const Key key{transA, lda, strideA, ldb, strideB, ldd, strideD, m, n, k, batch};
  auto it = plans.find(key);
  if (it == plans.end()) {
    Plan p;
    lt->check(lt->descCreate(&p.desc, CUBLAS_COMPUTE_32F, CUDA_R_32F),
              "cublasLtMatmulDescCreate", what);
    cublasOperation_t ta = transA ? CUBLAS_OP_T : CUBLAS_OP_N, tb = CUBLAS_OP_N;
    lt->check(lt->descSet(p.desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta),
              "cublasLtMatmulDescSetAttribute", what);
    lt->check(lt->descSet(p.desc, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb),
              "cublasLtMatmulDescSetAttribute", what);
    auto layout = [&](cublasLtMatrixLayout_t &l, cudaDataType_t type, int64_t rows,
                      int64_t cols, int64_t ld, int64_t stride) {
      lt->check(lt->layoutCreate(&l, type, uint64_t(rows), uint64_t(cols), ld),
                "cublasLtMatrixLayoutCreate", what);
      int count = int(batch);
      lt->check(lt->layoutSet(l, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &count, sizeof count),
                "cublasLtMatrixLayoutSetAttribute", what);
      lt->check(lt->layoutSet(l, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &stride,
                              sizeof stride),
                "cublasLtMatrixLayoutSetAttribute", what);
    };
    layout(p.a, CUDA_R_16BF, transA ? k : m, transA ? m : k, lda, strideA);
    layout(p.b, CUDA_R_16BF, k, n, ldb, strideB);
    layout(p.c, CUDA_R_32F, m, n, ldd, strideD);
    cublasLtMatmulHeuristicResult_t r[1]{};
    int found = 0;
    lt->check(lt->heuristic(lt->handle, p.desc, p.a, p.b, p.c, p.c, lt->pref, 1, r, &found),
              "cublasLtMatmulAlgoGetHeuristic", what);
    if (found < 1)
      fail("{}: cuBLASLt has no algorithm for {} bf16 products {}x{}x{} with fp32 output",
           what, batch, m, n, k);
    p.algo = r[0].algo;
    it = plans.emplace(key, p).first;
  }
  const Plan &p = it->second;
  const float one = 1.0f, zero = 0.0f;
  lt->check(lt->matmul(lt->handle, p.desc, &one, reinterpret_cast<const void *>(A), p.a,
                       reinterpret_cast<const void *>(B), p.b, &zero,
                       reinterpret_cast<const void *>(D), p.c, reinterpret_cast<void *>(D), p.c,
                       &p.algo, reinterpret_cast<void *>(lt->workspace), LtApi::kWorkspace,
                       reinterpret_cast<cudaStream_t>(stream)),
            "cublasLtMatmul", what);
}

} // namespace dsv3rt::cuda
