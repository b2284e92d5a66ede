//===- CudaSession.cpp - run an artifact on an NVIDIA GPU -----------------===//
#include "runtime/cuda/CudaSession.h"

#include "runtime/Collectives.h"
#include "runtime/cuda/CublasLt.h"
#include "runtime/cuda/KernelNames.h"
#include "runtime/cuda/Launchers.h"
#include "runtime/cuda/Nvrtc.h"
#include "runtime/Trace.h"
#include "runtime/Progress.h"

#include "runtime/Error.h"
#include "runtime/host/HostSession.h"

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

namespace dsv3rt::cuda {


CudaSession::CudaSession(const Artifact &artifact, const WeightStore &weights)
    : artifact_(artifact), drv_(Driver::get()) {
  loadModule();
  checkFreeMemory();
  // Weights: checked and converted like the host backend's, uploaded once.
  for (auto &[pname, b] : bindWeights(artifact, weights)) {
    std::vector<float> &host = hostParams_[pname];
    host.assign(b.data.begin(), b.data.end());
    DevTensor t;
    t.shape = b.shape;
    t.capacity = host.size();
    t.bf16 = artifact.param(pname)->dtype == DType::BF16;
    t.fp8 = artifact.param(pname)->dtype == DType::F8E4M3;
    if (t.fp8) { // bound as e4m3 values: their codes, exactly
      std::vector<uint8_t> codes(host.size());
      for (size_t i = 0; i < host.size(); ++i)
        codes[i] = floatToF8e4m3(host[i]);
      DSV3_CU(drv_, memAlloc, "weights of " + pname, &t.ptr, std::max<size_t>(16, codes.size()));
      upload(t.ptr, codes.data(), codes.size(), "weights of " + pname);
    } else if (t.bf16) {
      std::vector<uint16_t> bits(host.size());
      for (size_t i = 0; i < host.size(); ++i)
        bits[i] = floatToBf16(host[i]);
      DSV3_CU(drv_, memAlloc, "weights of " + pname, &t.ptr,
              std::max<size_t>(4, bits.size() * 2));
      upload(t.ptr, bits.data(), bits.size() * 2, "weights of " + pname);
    } else {
      DSV3_CU(drv_, memAlloc, "weights of " + pname, &t.ptr,
              std::max<size_t>(4, host.size() * 4));
      upload(t.ptr, host.data(), host.size() * 4, "weights of " + pname);
    }
    params_[pname] = t;
  }
  dequantizeAbsorbedWeights();
  allocateArena();
}

void CudaSession::dequantizeAbsorbedWeights() {
  bool bf16 = std::any_of(artifact_.params.begin(), artifact_.params.end(), [](const ParamInfo &p) {
    return p.dtype == DType::BF16 && p.role != "optimizer_state"; // (bf16 moments: not the model's)
  });
  for (const ParamInfo &sp : artifact_.params) {
    if (sp.scales.empty() || sp.scales.find("kv_b_proj") == std::string::npos)
      continue;
    const DevTensor &w = params_.at(sp.scales), &sc = params_.at(sp.name);
    int N = int(w.dim(-2)), K = int(w.dim(-1));
    int br = int(artifact_.fp8BlockRows), bc = int(artifact_.fp8BlockCols);
    long long n = w.numel();
    CUdeviceptr out = 0;
    DSV3_CU(drv_, memAlloc, "dequantized " + sp.scales, &out, size_t(n) * (bf16 ? 2 : 4));
    unsigned blocks = unsigned(std::min<long long>((n + 255) / 256, 65535));
    launch(bf16 ? "dsv3::fp8_dequantize<unsigned short>" : "dsv3::fp8_dequantize<float>",
           {blocks}, {256}, 0, {const_cast<CUdeviceptr *>(&w.ptr), const_cast<CUdeviceptr *>(&sc.ptr), &out, &n, &N, &K, &br, &bc},
           "dequantizing " + sp.scales + " for the absorbed decode");
    dequantized_[w.ptr] = out;
  }
  DSV3_CU(drv_, streamSynchronize, "dequantizing FP8 weights", stream_);
}

CudaSession::CudaSession(const Artifact &artifact, const RandomWeights &random)
    : artifact_(artifact), drv_(Driver::get()) {
  loadModule();
  checkFreeMemory();
  // Made on the GPU by fill_normal: nothing is read from disk or kept on the
  // host (paramData() is empty), so full-width models start in seconds.
  uint64_t index = 0;
  std::map<std::string, const ParamInfo *> scalesOf;
  for (const ParamInfo &p : artifact.params)
    if (!p.scales.empty())
      scalesOf[p.scales] = &p;
  for (const ParamInfo &p : artifact.params) {
    DevTensor t;
    t.shape = p.shape;
    t.capacity = size_t(t.numel());
    t.bf16 = p.dtype == DType::BF16;
    if (p.role == "weight_scale")
      continue; // made with its FP8 weight
    if (p.dtype == DType::F8E4M3) {
      // Normal fp32 values quantized in blocks on the GPU, as the loader
      // quantizes a bf16 checkpoint.
      t.fp8 = true;
      const ParamInfo &sp = *scalesOf.at(p.name);
      DevTensor sc;
      sc.shape = sp.shape;
      sc.capacity = size_t(sc.numel());
      CUdeviceptr tmp = 0;
      DSV3_CU(drv_, memAlloc, "weights of " + p.name, &t.ptr, std::max<size_t>(16, t.capacity));
      DSV3_CU(drv_, memAlloc, "scales of " + p.name, &sc.ptr, sc.capacity * 4);
      DSV3_CU(drv_, memAlloc, "random fp32 values of " + p.name, &tmp, t.capacity * 4);
      long long n = (long long)t.capacity;
      unsigned long long seed = random.seed * 0x100000001b3ull + ++index;
      float mean = 0.0f, stddev = float(random.std);
      unsigned blocks = unsigned(std::min<int64_t>((n + 255) / 256, int64_t(sms_) * 32));
      launch(fillNormalName(false), {std::max(blocks, 1u)}, {256}, 0,
             {&tmp, &n, &seed, &mean, &stddev}, "random weights of " + p.name);
      int N = int(p.shape[p.shape.size() - 2]), K = int(p.shape.back());
      int br = int(artifact.fp8BlockRows), bc = int(artifact.fp8BlockCols);
      unsigned weightBlocks = unsigned(sc.capacity);
      CUdeviceptr noTransposed = 0;
      launch("dsv3::fp8_quantize_blocks<0>", {weightBlocks}, {256}, 0,
             {&tmp, &t.ptr, &sc.ptr, &N, &K, &br, &bc, &noTransposed, &noTransposed},
             "quantizing random weights of " + p.name);
      DSV3_CU(drv_, streamSynchronize, "random weights of " + p.name, stream_);
      DSV3_CU(drv_, memFree, "random fp32 values of " + p.name, tmp);
      params_[p.name] = t;
      params_[sp.name] = sc;
      continue;
    }
    if (p.dtype != DType::F32 && p.dtype != DType::BF16)
      fail("--random-weights: parameter {} has dtype {}; random weights are f32 or bf16",
           p.name, manifestName(p.dtype));
    DSV3_CU(drv_, memAlloc, "weights of " + p.name, &t.ptr,
            std::max<size_t>(4, t.capacity * (t.bf16 ? 2 : 4)));
    std::optional<float> constant = initConstant(p);
    float mean = constant ? *constant : 0.0f, stddev = constant ? 0.0f : float(random.std);
    long long n = (long long)t.capacity;
    unsigned long long seed = random.seed * 0x100000001b3ull + ++index;
    std::string name = fillNormalName(t.bf16);
    unsigned blocks = unsigned(std::min<int64_t>((n + 255) / 256, int64_t(sms_) * 32));
    launch(name, {std::max(blocks, 1u)}, {256}, 0, {&t.ptr, &n, &seed, &mean, &stddev},
           "random weights of " + p.name);
    params_[p.name] = t;
  }
  DSV3_CU(drv_, streamSynchronize, "making random weights", stream_);
  dequantizeAbsorbedWeights();
  allocateArena();
}

void CudaSession::loadModule() {
  const Artifact &artifact = artifact_;
  DSV3_CU(drv_, init, "initialising the driver", 0);
  // One process per GPU: rank r of a machine takes GPU LOCAL_RANK (modulo
  // the GPUs it sees, so that CUDA_VISIBLE_DEVICES=one GPU per rank works).
  int devices = 0;
  DSV3_CU(drv_, deviceGetCount, "counting GPUs", &devices);
  if (devices < 1)
    fail("no CUDA device found");
  int ordinal = processCommunicator().localRank() % devices;
  DSV3_CU(drv_, deviceGet, fmt::format("device {}", ordinal), &device_, ordinal);
  DSV3_CU(drv_, primaryCtxRetain, "primary context", &context_, device_);
  DSV3_CU(drv_, ctxSetCurrent, "primary context", context_);
  DSV3_CU(drv_, streamCreate, "stream", &stream_, CU_STREAM_NON_BLOCKING);
  int major = 0, minor = 0;
  char name[256] = {0};
  DSV3_CU(drv_, deviceGetAttribute, "compute capability", &major,
          CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, device_);
  DSV3_CU(drv_, deviceGetAttribute, "compute capability", &minor,
          CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, device_);
  DSV3_CU(drv_, deviceGetName, "device name", name, int(sizeof(name)), device_);
  cc_ = 10 * major + minor;
  DSV3_CU(drv_, deviceGetAttribute, "multiprocessor count", &sms_,
          CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, device_);
  // Before any stream capture: loading cuBLASLt allocates its workspace.
  cublasLt = cublasLtAvailable(cc_, name);

  // The kernels: the artifact's cubin of this architecture; else the
  // artifact's source re-JITed by NVRTC for this GPU (cached on disk by
  // source hash, arch and NVRTC version); else PTX, JIT by the driver.
  // DSV3_FORCE_JIT=1 takes the NVRTC path even when a cubin matches (to test
  // it on the GPU that the artifact targets).
  std::ifstream in(artifact.dir + "/manifest.json");
  nlohmann::json manifest = nlohmann::json::parse(in);
  if (!manifest.contains("cuda"))
    fail("{}/manifest.json: the artifact has no CUDA kernels (compile it with "
         "dsv3c --target cuda)",
         artifact.dir);
  const nlohmann::json &cuda = manifest["cuda"];
  lowered_ = cuda["functions"].get<std::map<std::string, std::string>>();
  std::string sm = fmt::format("sm_{}{}", major, minor);
  std::string chosen, image;
  const char *forceJit = std::getenv("DSV3_FORCE_JIT");
  bool force = forceJit && std::string(forceJit) == "1";
  for (const auto &b : cuda["binaries"]) {
    if (force)
      break;
    std::string arch = b["arch"];
    if (b["kind"] == "cubin" && (arch == sm || arch == sm + "a")) {
      chosen = "cubin " + arch;
      image = readWholeFile(artifact.dir + "/" + b["file"].get<std::string>());
      break;
    }
  }
  if (image.empty() && haveNvrtc() && cuda.contains("source")) {
    // sm_90a: Hopper's arch-specific instructions (wgmma, TMA) need the "a".
    std::string arch = major == 9 && minor == 0 ? "sm_90a" : sm;
    std::vector<std::string> instances;
    for (const auto &[expr, mangled] : lowered_)
      instances.push_back(expr);
    std::string path, error;
    bool cached = false;
    if (jitCubin(readWholeFile(artifact.dir + "/" + cuda["source"].get<std::string>()), instances,
                 arch, jitCacheDir(), image, path, cached, error))
      chosen = fmt::format("cubin {} re-JIT by NVRTC, {} {}", arch,
                           cached ? "cached in" : "written to", path);
    else
      fmt::print(stderr, "warning: NVRTC re-JIT for {} failed, trying PTX: {}\n", arch,
                 error);
  }
  if (image.empty())
    for (const auto &b : cuda["binaries"]) {
      std::string arch = b["arch"];
      int ptxSm = std::stoi(arch.substr(arch.find('_') + 1, 2));
      if (b["kind"] == "ptx" && ptxSm <= major * 10 + minor) {
        chosen = "PTX " + arch + " (JIT)";
        image = readWholeFile(artifact.dir + "/" + b["file"].get<std::string>());
        image.push_back('\0');
        break;
      }
    }
  if (image.empty())
    fail("{}/manifest.json: no cubin for {} and no PTX this GPU can JIT",
         artifact.dir, sm);
  DSV3_CU(drv_, moduleLoadDataEx, "loading the " + chosen + " of " + artifact.dir,
          &module_, image.data(), 0, nullptr, nullptr);
  description_ = fmt::format("{} ({}, {})", name, sm, chosen);

}

void CudaSession::checkFreeMemory() {
  // Before anything large is allocated: the weights (e4m3 codes, bf16 or
  // fp32, as the artifact stores them) and the largest arena (activations
  // in float) must fit in the GPU's free memory.
  const Artifact &artifact = artifact_;
  {
    double weightBytes = 0, arenaBytes = 0;
    for (const ParamInfo &p : artifact.params) {
      double n = 1;
      for (int64_t d : p.shape)
        n *= double(d);
      // FP8 codes are a byte each (counting them as floats refused the FP8
      // bench slice, ~26 GB of weights, on an 80 GB H100 as "98 GB").
      weightBytes += n * (p.dtype == DType::BF16 ? 2 : p.dtype == DType::F8E4M3 ? 1 : 4);
    }
    size_t minFloat = 4;
    for (auto &[n, e] : artifact.entries)
      for (const BufferInfo &b : e.buffers)
        if (b.dtype != DType::I64 && b.dtype != DType::I32)
          minFloat = std::min(minFloat, dtypeSize(b.dtype));
    for (auto &[n, e] : artifact.entries)
      arenaBytes = std::max(arenaBytes, double(e.arenaBytes) * double(4 / minFloat));
    size_t freeBytes = 0, totalBytes = 0;
    DSV3_CU(drv_, memGetInfo, "free GPU memory", &freeBytes, &totalBytes);
    baselineBytes_ = totalBytes - freeBytes;
    if (weightBytes + arenaBytes > double(freeBytes))
      fail("{}: the GPU needs about {} (weights {}, activation arena {}) but {} of its {} "
           "are free; use a smaller --max-batch/--max-seq, bf16 weights, or more GPUs",
           artifact.dir, humanBytes(weightBytes + arenaBytes), humanBytes(weightBytes),
           humanBytes(arenaBytes), humanBytes(double(freeBytes)),
           humanBytes(double(totalBytes)));
  }
}

std::string CudaSession::memoryReport() const {
  size_t freeBytes = 0, totalBytes = 0;
  DSV3_CU(drv_, memGetInfo, "free GPU memory", &freeBytes, &totalBytes);
  double params = 0, workspace = 0;
  for (const auto &[name, t] : params_)
    params += double(t.capacity) * (t.isInt ? 8 : t.fp8 ? 1 : t.bf16 ? 2 : 4);
  for (const auto &c : chunks_)
    workspace += double(c.second);
  // The driver's count past the session's start, when it is consistent
  // (memory of a process killed just before may still have been in use
  // when the session started, and freed since).
  double resident = 0;
  for (const Resident &r : resident_)
    resident += double(r.devBytes);
  double held = params + double(arenaBytes_) + workspace + fp8MasterBytes_ + resident;
  double grew = double(totalBytes - freeBytes) - double(baselineBytes_);
  std::string driver = grew >= held ? fmt::format("; the driver counts {} more in use than at "
                                                  "the session's start",
                                                  humanBytes(grew))
                                    : std::string();
  std::string masters = fp8MasterBytes_ > 0 ? fmt::format(", FP8 copies of the master "
                                                          "weights {}",
                                                          humanBytes(fp8MasterBytes_))
                                             : std::string();
  std::string caches =
      resident > 0
          ? fmt::format(", resident caches {}{}", humanBytes(resident),
                        packedCacheKnown_ && packedCache_.cf
                            ? fmt::format(" ({} bytes a row: {})", packedCache_.rowBytes(),
                                          packedCache_.cf == 1 ? "bf16" : "fp8")
                            : std::string())
          : std::string();
  return fmt::format("device memory: {} held (parameters and optimizer state {}, activation "
                     "arena {}: the plan's peak, workspace high-water {}{}{}){}; {} of {} in "
                     "use on the GPU",
                     humanBytes(held), humanBytes(params), humanBytes(double(arenaBytes_)),
                     humanBytes(workspace), masters, caches, driver,
                     humanBytes(double(totalBytes - freeBytes)), humanBytes(double(totalBytes)));
}

void CudaSession::allocateArena() {
  const Artifact &artifact = artifact_;
  size_t minFloat = 4;
  for (auto &[n, e] : artifact.entries)
    for (const BufferInfo &b : e.buffers)
      if (b.dtype != DType::I64 && b.dtype != DType::I32)
        minFloat = std::min(minFloat, dtypeSize(b.dtype));
  scale_ = 4 / minFloat;
  for (auto &[n, e] : artifact.entries)
    arenaBytes_ = std::max(arenaBytes_, size_t(e.arenaBytes) * scale_);
  DSV3_CU(drv_, memAlloc, "the arena", &arena_, std::max<size_t>(arenaBytes_, 256));
  const char *graphs = std::getenv("DSV3_CUDA_GRAPHS");
  const char *profile = std::getenv("DSV3_PROFILE");
  profileSites_ = profile && std::string(profile) == "site";
  profile_ = profile && (std::string(profile) == "1" || profileSites_);
  tracing_ = activeTracer() != nullptr;
  // Collectives wait on the host (timeouts, NCCL's async errors), and so
  // does FP8 training's expert weight gradient when it runs per expert
  // (the counts read back: no e4m3 tensor cores, or
  // DSV3_FP8_WGRAD_GROUPED=0): no graphs for either.
  bool hostWaits = artifact.parallel();
  for (const auto &[n, e] : artifact.entries)
    for (const Launch &l : e.launches)
      hostWaits = hostWaits || (l.params.contains("fp8_compute") && !fp8WgradGroupedOn(*this));
  useGraphs_ = !(graphs && std::string(graphs) == "0") && !profile_ && !tracing_ && !hostWaits;
}

CudaSession::~CudaSession() {
  if (!context_)
    return;
  drv_.streamSynchronize(stream_);
  if (profile_)
    printProfile();
  for (CUevent e : freeEvents_)
    drv_.eventDestroy(e);
  if (traceBase_)
    drv_.eventDestroy(traceBase_);
  for (auto &[n, t] : params_)
    drv_.memFree(t.ptr);
  for (auto &[entry, slots] : argBuffers_)
    for (auto &[p, size] : slots)
      if (p)
        drv_.memFree(p);
  for (Resident &r : resident_)
    drv_.memFree(r.dev);
  for (HostBuffer &b : results_)
    if (b.pinned)
      drv_.memFreeHost(b.pinned);
  dropGraphs();
  if (arena_)
    drv_.memFree(arena_);
  for (auto &[p, size] : chunks_)
    drv_.memFree(p);
  for (auto &[k, p] : constants_)
    drv_.memFree(p);
  for (CUdeviceptr p : buffers_)
    drv_.memFree(p);
  for (auto &[key, c] : fp8Masters_)
    for (CUdeviceptr p : {c.codes, c.codesT, c.scales, c.scalesT})
      drv_.memFree(p);
}

std::map<std::string, std::vector<float>> &CudaSession::paramData() {
  return hostParams_;
}

void CudaSession::downloadParams() {
  DSV3_CU(drv_, streamSynchronize, "downloading the parameters", stream_);
  for (auto &[name, t] : params_) {
    std::vector<float> &host = hostParams_[name];
    host.resize(t.capacity);
    if (t.bf16) {
      std::vector<uint16_t> bits(t.capacity);
      DSV3_CU(drv_, memcpyDtoH, "downloading " + name, bits.data(), t.ptr, bits.size() * 2);
      for (size_t i = 0; i < bits.size(); ++i)
        host[i] = bf16ToFloat(bits[i]);
    } else {
      DSV3_CU(drv_, memcpyDtoH, "downloading " + name, host.data(), t.ptr, host.size() * 4);
    }
  }
}

void CudaSession::uploadParams() {
  DSV3_CU(drv_, streamSynchronize, "uploading the parameters", stream_);
  for (auto &[name, host] : hostParams_) {
    DevTensor &t = params_.at(name);
    if (host.size() != t.capacity)
      fail("uploading {}: {} host values for {} on the GPU", name, host.size(), t.capacity);
    if (t.bf16) {
      std::vector<uint16_t> bits(host.size());
      for (size_t i = 0; i < host.size(); ++i)
        bits[i] = floatToBf16(host[i]);
      upload(t.ptr, bits.data(), bits.size() * 2, "weights of " + name);
    } else {
      upload(t.ptr, host.data(), host.size() * 4, "weights of " + name);
    }
  }
}

bool CudaSession::hasFunction(const std::string &instance) const {
  return functions_.count(instance) || lowered_.count(instance);
}

CUfunction CudaSession::function(const std::string &instance) {
  auto it = functions_.find(instance);
  if (it != functions_.end())
    return it->second;
  auto low = lowered_.find(instance);
  if (low == lowered_.end())
    fail("{}: the artifact's CUDA module has no instance {} (recompile it "
         "with this release's dsv3c --target cuda)",
         artifact_.dir, instance);
  CUfunction f = nullptr;
  DSV3_CU(drv_, moduleGetFunction, instance, &f, module_, low->second.c_str());
  functions_[instance] = f;
  return f;
}

CUdeviceptr CudaSession::workspace(size_t bytes) {
  bytes = (bytes + 255) / 256 * 256;
  while (chunk_ < chunks_.size() && chunkUsed_ + bytes > chunks_[chunk_].second) {
    ++chunk_;
    chunkUsed_ = 0;
  }
  if (chunk_ == chunks_.size()) {
    size_t size = std::max<size_t>(bytes, chunks_.empty() ? (64u << 20)
                                                          : chunks_.back().second * 2);
    CUdeviceptr p = 0;
    DSV3_CU(drv_, memAlloc, "workspace", &p, size);
    chunks_.push_back({p, size});
    chunkUsed_ = 0;
  }
  CUdeviceptr p = chunks_[chunk_].first + chunkUsed_;
  chunkUsed_ += bytes;
  return p;
}

CudaSession::Fp8MasterCopy &CudaSession::fp8MasterCopy(CUdeviceptr weight, int br, int bc,
                                                       size_t codes, size_t scales) {
  Fp8MasterCopy &c = fp8Masters_[{weight, br, bc}];
  if (!c.codes) {
    DSV3_CU(drv_, memAlloc, "FP8 copy of a master weight", &c.codes, codes);
    DSV3_CU(drv_, memAlloc, "FP8 copy of a master weight", &c.codesT, codes);
    DSV3_CU(drv_, memAlloc, "FP8 copy of a master weight", &c.scales, scales);
    DSV3_CU(drv_, memAlloc, "FP8 copy of a master weight", &c.scalesT, scales);
    fp8MasterBytes_ += 2.0 * double(codes + scales);
  }
  return c;
}

CUdeviceptr CudaSession::constant(const std::string &key,
                                  const std::vector<float> &data) {
  auto it = constants_.find(key);
  if (it != constants_.end())
    return it->second;
  CUdeviceptr p = 0;
  DSV3_CU(drv_, memAlloc, "constant " + key, &p, std::max<size_t>(data.size() * 4, 4));
  upload(p, data.data(), data.size() * 4, "constant " + key);
  constants_[key] = p;
  return p;
}

void CudaSession::launch(const std::string &instance, Dim3 grid, Dim3 block,
                         size_t smem, std::vector<void *> args,
                         const std::string &what) {
  CUfunction f = function(instance);
  if (smem > 48 * 1024)
    DSV3_CU(drv_, funcSetAttribute, instance + " shared memory", f,
            CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, int(smem));
  if (grid.x == 0 || grid.y == 0 || grid.z == 0)
    return; // nothing to do (an empty batch)
  timedCall(instance, what, [&] {
    DSV3_CU(drv_, launchKernel, what + ": " + instance, f, grid.x, grid.y, grid.z, block.x,
            block.y, block.z, unsigned(smem), stream_, args.data(), nullptr);
  });
}

void CudaSession::timedCall(const std::string &instance, const std::string &what,
                            const std::function<void()> &issue) {
  Timed timed;
  if (profile_ || tracing_) {
    timed = {instance, what, currentLoc_, event(), event()};
    DSV3_CU(drv_, eventRecord, "profiling " + instance, timed.start, stream_);
  }
  issue();
  if (profile_ || tracing_) {
    DSV3_CU(drv_, eventRecord, "profiling " + instance, timed.stop, stream_);
    pendingTimes_.push_back(timed);
  }
}

CUevent CudaSession::event() {
  if (!freeEvents_.empty()) {
    CUevent e = freeEvents_.back();
    freeEvents_.pop_back();
    return e;
  }
  CUevent e = nullptr;
  DSV3_CU(drv_, eventCreate, "profiling event", &e, CU_EVENT_DEFAULT);
  return e;
}

void CudaSession::collectTimes() {
  Tracer *tracer = tracing_ ? activeTracer() : nullptr;
  for (Timed &t : pendingTimes_) {
    float ms = 0;
    DSV3_CU(drv_, eventElapsedTime, "profiling " + t.instance, &ms, t.start, t.stop);
    if (tracer && traceBase_) {
      float offset = 0;
      DSV3_CU(drv_, eventElapsedTime, "tracing " + t.instance, &offset, traceBase_, t.start);
      // The kernel family (the launch's first word) as the name; the
      // instance and the sub-step in the details.
      std::string family = t.what.substr(0, t.what.find(' '));
      tracer->add({family, "kernel", t.loc, currentEntry_ + ": " + t.what + " " + t.instance,
                   traceBaseUs_ + 1e3 * double(offset), 1e3 * double(ms), 1});
    }
    KernelTime &k = kernelTimes_[profileSites_ ? t.instance + " | " + t.what : t.instance];
    ++k.calls;
    k.ms += ms;
    freeEvents_.push_back(t.start);
    freeEvents_.push_back(t.stop);
  }
  pendingTimes_.clear();
}

void CudaSession::resetProfile() {
  if (!profile_)
    return;
  DSV3_CU(drv_, streamSynchronize, "resetting the profile", stream_);
  collectTimes();
  kernelTimes_.clear();
}

void CudaSession::printProfile() {
  std::vector<std::pair<std::string, KernelTime>> rows(kernelTimes_.begin(),
                                                       kernelTimes_.end());
  std::sort(rows.begin(), rows.end(),
            [](auto &a, auto &b) { return a.second.ms > b.second.ms; });
  double total = 0;
  for (auto &[n, k] : rows)
    total += k.ms;
  fmt::print(stderr, "profile ({}): {:.2f} ms in {} kernel instances (CUDA events)\n",
             description_, total, rows.size());
  fmt::print(stderr, "  {:>9} {:>6} {:>7} {:>10}  {}\n", "ms", "%", "calls", "us/call",
             "instance");
  // The longest 24 (48 by site) unless DSV3_PROFILE_ROWS says how many.
  size_t shown = profileSites_ ? 48 : 24;
  if (const char *n = std::getenv("DSV3_PROFILE_ROWS"))
    shown = size_t(std::max(1L, std::atol(n)));
  for (size_t i = 0; i < rows.size() && i < shown; ++i)
    fmt::print(stderr, "  {:>9.3f} {:>5.1f}% {:>7} {:>10.1f}  {}\n", rows[i].second.ms,
               100 * rows[i].second.ms / std::max(total, 1e-9), rows[i].second.calls,
               1e3 * rows[i].second.ms / double(rows[i].second.calls), rows[i].first);
}

void CudaSession::upload(CUdeviceptr dst, const void *src, size_t bytes,
                         const std::string &what) {
  if (bytes)
    DSV3_CU(drv_, memcpyHtoD, what, dst, src, bytes);
}

CUdeviceptr CudaSession::deviceBuffer(size_t bytes, const std::string &what,
                                      const void *src) {
  CUdeviceptr p = 0;
  DSV3_CU(drv_, memAlloc, what, &p, std::max<size_t>(bytes, 16));
  buffers_.push_back(p);
  if (src)
    upload(p, src, bytes, what);
  return p;
}

int64_t CudaSession::PackedCache::rowBytes() const {
  return DSV3_CACHE_ROW_BYTES(r, dr, cf);
}

size_t CudaSession::packedBytes(const PackedCache &c, size_t bytes) {
  const size_t row = size_t(c.width()) * 4;
  if (bytes % row)
    fail("a latent cache of {} bytes is not whole rows of {} floats", bytes, c.width());
  return bytes / row * size_t(c.rowBytes());
}

namespace {
MlaDims cacheDims(const CudaSession::PackedCache &c) {
  MlaDims d{};
  d.r = c.r;
  d.dr = c.dr;
  d.cf = c.cf;
  return d;
}
} // namespace

void CudaSession::packCacheRows(const PackedCache &c, CUdeviceptr f32, CUdeviceptr packed,
                                int64_t rows) {
  launch(mlaCachePackName(cacheDims(c)), {unsigned(rows), 1, 1}, {128, 1, 1}, 0,
         {&f32, &packed, &rows}, "packing latent-cache rows");
}

void CudaSession::unpackCacheRows(const PackedCache &c, CUdeviceptr packed, CUdeviceptr f32,
                                  int64_t rows) {
  launch(mlaCacheUnpackName(cacheDims(c)), {unsigned(rows), 1, 1}, {128, 1, 1}, 0,
         {&packed, &f32, &rows}, "unpacking latent-cache rows");
}

const std::vector<CudaSession::PackedCache> &CudaSession::packedArgsOf(const Entry &entry) {
  auto it = packedArgs_.find(entry.name);
  if (it != packedArgs_.end())
    return it->second;
  std::vector<PackedCache> packed(entry.args.size());
  for (const Launch &l : entry.launches) {
    if (l.kernel != "latent_attention_decode" || l.inputs.size() < 2 ||
        l.inputs[1].kind != ValueRef::Kind::Arg)
      continue;
    const std::string storage = l.params.value("cache_storage", "f32");
    const int64_t cf = cacheFormOf(storage);
    if (cf <= 0)
      continue;
    PackedCache c;
    c.r = l.params.at("kv_lora_rank").get<int64_t>();
    c.dr = l.params.at("qk_rope_head_dim").get<int64_t>();
    c.cf = cf;
    if (!hasFunction(mlaCachePackName(cacheDims(c))))
      fail("{}: the decode cache is stored as {}, but the artifact has no {} (an older "
           "dsv3c kept it as fp32 rows; compile it again)",
           artifact_.dir, storage, mlaCachePackName(cacheDims(c)));
    packed.at(l.inputs[1].index) = c;
  }
  return packedArgs_.emplace(entry.name, std::move(packed)).first->second;
}

const CudaSession::PackedCache &CudaSession::packedCache() {
  if (packedCacheKnown_)
    return packedCache_;
  bool seen = false;
  for (const auto &[name, entry] : artifact_.entries)
    for (const PackedCache &c : packedArgsOf(entry))
      if (c.cf) {
        if (seen && (c.r != packedCache_.r || c.dr != packedCache_.dr || c.cf != packedCache_.cf))
          fail("{}: the decode caches differ in their packed rows ({} + {} in form {} and {} + "
               "{} in form {}); a resident cache needs one",
               artifact_.dir, packedCache_.r, packedCache_.dr, packedCache_.cf, c.r, c.dr,
               c.cf);
        packedCache_ = c;
        seen = true;
      }
  packedCacheKnown_ = true;
  return packedCache_;
}

void CudaSession::downloadUnpacked(const PackedCache &c, CUdeviceptr packed, void *host,
                                   size_t bytes) {
  CUdeviceptr f32 = 0;
  DSV3_CU(drv_, memAlloc, "unpacked latent cache", &f32, std::max<size_t>(bytes, 8));
  unpackCacheRows(c, packed, f32, int64_t(bytes / (size_t(c.width()) * 4)));
  DSV3_CU(drv_, streamSynchronize, "unpacking a latent cache", stream_);
  DSV3_CU(drv_, memcpyDtoH, "copying a latent cache to the host", host, f32, bytes);
  DSV3_CU(drv_, memFree, "unpacked latent cache", f32);
}

void CudaSession::makeResident(const void *host, size_t bytes, bool latentCache) {
  const char *h = static_cast<const char *>(host);
  for (const Resident &r : resident_)
    if (h < r.host + r.bytes && r.host < h + bytes)
      fail("makeResident: [{}, +{}) overlaps a resident buffer", host, bytes);
  Resident r{h, bytes, 0, {}, 0};
  if (latentCache)
    r.packed = packedCache();
  const size_t devBytes = r.packed.cf ? packedBytes(r.packed, bytes) : bytes;
  r.devBytes = devBytes;
  DSV3_CU(drv_, memAlloc, fmt::format("resident buffer of {} bytes", devBytes), &r.dev,
          std::max<size_t>(devBytes, 8));
  if (!r.packed.cf) {
    upload(r.dev, host, bytes, "resident buffer");
  } else { // through an fp32 copy, packed on the device
    CUdeviceptr f32 = 0;
    DSV3_CU(drv_, memAlloc, "unpacked latent cache", &f32, std::max<size_t>(bytes, 8));
    upload(f32, host, bytes, "resident latent cache");
    packCacheRows(r.packed, f32, r.dev, int64_t(bytes / (size_t(r.packed.width()) * 4)));
    DSV3_CU(drv_, streamSynchronize, "packing a resident latent cache", stream_);
    DSV3_CU(drv_, memFree, "unpacked latent cache", f32);
  }
  resident_.push_back(r);
}

void CudaSession::releaseResident(const void *host, bool copyBack) {
  for (size_t i = 0; i < resident_.size(); ++i) {
    Resident &r = resident_[i];
    if (r.host != host)
      continue;
    DSV3_CU(drv_, streamSynchronize, "releasing a resident buffer", stream_);
    if (copyBack && !r.packed.cf)
      DSV3_CU(drv_, memcpyDtoH, "copying a resident buffer back",
              const_cast<char *>(r.host), r.dev, r.bytes);
    if (copyBack && r.packed.cf)
      downloadUnpacked(r.packed, r.dev, const_cast<char *>(r.host), r.bytes);
    dropGraphs(); // graphs may hold its address
    DSV3_CU(drv_, memFree, "releasing a resident buffer", r.dev);
    resident_.erase(resident_.begin() + long(i));
    return;
  }
  fail("releaseResident: {} is not resident", host);
}

DevTensor *CudaSession::param(const std::string &name) {
  auto it = params_.find(name);
  return it == params_.end() ? nullptr : &it->second;
}

const std::vector<SoleReader> &CudaSession::soleReadersOf(const Entry &entry) {
  auto it = soleReaders_.find(entry.name);
  if (it == soleReaders_.end())
    it = soleReaders_.emplace(entry.name, soleReaders(entry)).first;
  return it->second;
}

void CudaSession::dropGraphs() {
  for (auto &[key, g] : graphs_) {
    drv_.graphExecDestroy(g.exec);
    drv_.graphDestroy(g.graph);
  }
  graphs_.clear();
  runsSeen_.clear();
}

std::vector<HostTensor<float>> CudaSession::run(const std::string &name,
                                                std::vector<HostTensor<float>> args) {
  double entryStartUs = activeTracer() ? activeTracer()->nowUs() : 0;
  const Entry &entry = artifact_.entry(name);
  if (args.size() != entry.args.size())
    fail("entry {}: {} arguments given, the artifact expects {}", name,
         args.size(), entry.args.size());
  for (size_t i = 0; i < args.size(); ++i)
    checkTokenBudget(entry, i, args[i].shape);
  // The decode entry's past lengths are checked here: the kernels (and a
  // replayed graph) trust them.
  if ((name == "decode" || name == "prefill") && args.size() >= 3 && args[1].isInt && args[1].shape.size() == 1) {
    int64_t T = args[0].dim(1), S = args[2].dim(1);
    for (int64_t b = 0; b < args[1].numel(); ++b)
      if (args[1].i[b] < 0 || args[1].i[b] + T > S)
        fail("entry {}: sequence {}: {} cached + {} new tokens exceed the "
             "cache length {}",
             name, b, args[1].i[b], T, S);
  }
  // Arguments to the GPU: into a resident buffer's device copy, or into
  // this entry's buffer for the argument (grown when too small).
  std::vector<DevTensor> devArgs(args.size());
  std::vector<bool> inResident(args.size(), false);
  // Packed decode caches (dsv3c --kv-cache bf16 | fp8): the argument's
  // buffer holds the packed rows, then the fp32 rows they cross in.
  const std::vector<PackedCache> &packed = packedArgsOf(entry);
  std::vector<size_t> packedAt(args.size(), 0);
  auto &slots = argBuffers_[name];
  slots.resize(args.size(), {0, 0});
  std::string key = name;
  for (size_t i = 0; i < args.size(); ++i) {
    DevTensor &d = devArgs[i];
    d.isInt = args[i].isInt;
    d.shape = args[i].shape;
    size_t n = size_t(args[i].numel()), bytes = n * (d.isInt ? 8 : 4);
    d.capacity = n;
    const PackedCache pc = !d.isInt && i < packed.size() ? packed[i] : PackedCache{};
    d.cacheForm = int(pc.cf);
    const char *host = d.isInt ? reinterpret_cast<const char *>(args[i].i)
                               : reinterpret_cast<const char *>(args[i].f);
    for (const Resident &r : resident_)
      if (!d.isInt && host >= r.host && host + bytes <= r.host + r.bytes) {
        if (r.packed.cf != pc.cf)
          fail("entry {}: argument {} lies in a resident buffer whose rows are in form {}, "
               "the entry's cache in form {} (make decode caches resident as caches)",
               name, i, r.packed.cf, pc.cf);
        const size_t off = size_t(host - r.host);
        d.ptr = r.dev + CUdeviceptr(pc.cf ? packedBytes(pc, off) : off);
        inResident[i] = true;
      }
    if (!inResident[i] && pc.cf) {
      packedAt[i] = (packedBytes(pc, bytes) + 255) / 256 * 256;
      bytes += packedAt[i];
    }
    if (!inResident[i]) {
      if (slots[i].second < bytes) {
        if (slots[i].first)
          DSV3_CU(drv_, memFree, fmt::format("argument {} of {}", i, name), slots[i].first);
        dropGraphs(); // they may hold the old buffer's address
        size_t size = std::max<size_t>(bytes, 8);
        DSV3_CU(drv_, memAlloc, fmt::format("argument {} of {}", i, name),
                &slots[i].first, size);
        slots[i].second = size;
      }
      d.ptr = slots[i].first;
    }
    if (d.isInt && d.shape.empty())
      d.scalar = args[i].i[0];
    // Token ids are checked here: the kernels trust them.
    if (d.isInt && d.shape.size() == 2 && params_.count("model.embed_tokens.weight")) {
      int64_t vocab = params_["model.embed_tokens.weight"].shape.at(0);
      for (size_t k = 0; k < n; ++k)
        if (args[i].i[k] < 0 || args[i].i[k] >= vocab)
          fail("token id {} (at flat position {}) is outside the vocabulary "
               "[0, {})",
               args[i].i[k], k, vocab);
    }
    if (!inResident[i] && pc.cf) { // fp32 rows after the packed ones, packed here
      upload(d.ptr + packedAt[i], host, bytes - packedAt[i],
             fmt::format("argument {} of {}", i, name));
      packCacheRows(pc, d.ptr + packedAt[i], d.ptr, int64_t(n) / pc.width());
    } else if (!inResident[i]) {
      upload(d.ptr, host, bytes, fmt::format("argument {} of {}", i, name));
    }
    key += fmt::format("|{}:{}:{}", d.ptr, fmt::join(d.shape, "x"), d.scalar);
  }
  std::vector<DevTensor> buffers(entry.buffers.size());
  const std::vector<SoleReader> &readers = soleReadersOf(entry);
  for (size_t i = 0; i < entry.buffers.size(); ++i) {
    const BufferInfo &info = entry.buffers[i];
    buffers[i].isInt = info.dtype == DType::I64;
    buffers[i].ptr = arena_ + CUdeviceptr(info.offset) * scale_;
    buffers[i].capacity = size_t(info.bytes) * scale_ / (buffers[i].isInt ? 8 : 4);
    if (!onLaunch) // (onLaunch reads every output as floats)
      buffers[i].reader = readers[i];
  }
  auto resolve = [&](const ValueRef &r) -> DevTensor * {
    switch (r.kind) {
    case ValueRef::Kind::Buffer: return &buffers[r.index];
    case ValueRef::Kind::Arg: return &devArgs[r.index];
    case ValueRef::Kind::Param: return &params_.at(r.param);
    }
    return nullptr;
  };
  if (tracing_) {
    if (!traceBase_)
      DSV3_CU(drv_, eventCreate, "trace base event", &traceBase_, CU_EVENT_DEFAULT);
    DSV3_CU(drv_, streamSynchronize, "tracing " + name, stream_);
    traceBaseUs_ = activeTracer()->nowUs();
    DSV3_CU(drv_, eventRecord, "trace base event", traceBase_, stream_);
    currentEntry_ = name;
  }
  auto graph = graphs_.find(key);
  if (useGraphs_ && !onLaunch && graph != graphs_.end()) {
    DSV3_CU(drv_, graphLaunch, "replaying the graph of " + name, graph->second.exec,
            stream_);
    buffers = graph->second.buffers;
    ++graphStats_.replayed;
  } else {
    // The second run of a key is captured (the first one allocated the
    // workspace and set the kernels' attributes outside the capture).
    if (runsSeen_.size() > 4096 || graphs_.size() > 64)
      dropGraphs(); // keys that never repeat (a changing scalar) stay bounded
    bool capture = useGraphs_ && !onLaunch && ++runsSeen_[key] >= 2;
    if (capture)
      DSV3_CU(drv_, streamBeginCapture, "capturing " + name, stream_,
              CU_STREAM_CAPTURE_MODE_RELAXED);
    // The weights may have changed since the last run (an optimizer step,
    // a load): FP8 copies of them are made again by their first reader.
    invalidateFp8MasterCopies();
    try {
      for (size_t l = 0; l < entry.launches.size(); ++l) {
        const Launch &launch = entry.launches[l];
        Launcher fn = findLauncher(launch.kernel);
        if (!fn)
          fail("{}/manifest.json: entries.{}.launches[{}]: kernel \"{}\" has no CUDA "
               "implementation yet (use --backend host)",
               artifact_.dir, name, l, launch.kernel);
        std::vector<DevTensor *> ins, outs;
        for (const ValueRef &r : launch.inputs)
          ins.push_back(resolve(r));
        for (const ValueRef &r : launch.outputs)
          outs.push_back(resolve(r));
        chunk_ = 0;
        chunkUsed_ = 0;
        currentLoc_ = launch.loc;
        try {
          fn(*this, launch.kernel, launch.params, ins, outs);
        } catch (const Error &e) {
          throw Error(fmt::format("{} [{}/manifest.json: entry {}, launch {}{}]", e.what(),
                                  artifact_.dir, name, l,
                                  launch.loc.empty() ? "" : ", " + launch.loc));
        }
        if (onLaunch)
          reportLaunch(l, launch.kernel, outs);
      }
    } catch (...) {
      if (capture) {
        CUgraph broken = nullptr;
        drv_.streamEndCapture(stream_, &broken);
        if (broken)
          drv_.graphDestroy(broken);
      }
      throw;
    }
    if (capture) {
      Graph g;
      DSV3_CU(drv_, streamEndCapture, "capturing " + name, stream_, &g.graph);
      DSV3_CU(drv_, graphInstantiate, "instantiating the graph of " + name, &g.exec,
              g.graph, 0);
      g.buffers = buffers;
      DSV3_CU(drv_, graphLaunch, "launching the graph of " + name, g.exec, stream_);
      graphs_[key] = std::move(g);
      ++graphStats_.captured;
    }
  }
  DSV3_CU(drv_, streamSynchronize, "running entry " + name, stream_);
  if (profile_ || tracing_)
    collectTimes();
  // Arguments updated in place (the decode caches) go back to the caller,
  // unless they are resident.
  for (size_t i = 0; i < args.size(); ++i) {
    if (args[i].isInt || args[i].shape.size() < 2 || inResident[i])
      continue;
    CUdeviceptr from = devArgs[i].ptr;
    if (packedAt[i]) { // unpacked into its fp32 rows first
      from += packedAt[i];
      unpackCacheRows(packed[i], devArgs[i].ptr, from, args[i].numel() / packed[i].width());
      DSV3_CU(drv_, streamSynchronize, "unpacking a latent cache", stream_);
    }
    DSV3_CU(drv_, memcpyDtoH, fmt::format("argument {} of {}", i, name), args[i].f, from,
            size_t(args[i].numel()) * 4);
  }
  std::vector<HostTensor<float>> out;
  for (const ValueRef &r : entry.results) {
    if (r.kind == ValueRef::Kind::Arg) {
      out.push_back(args[r.index]); // the caller's memory (see above)
      continue;
    }
    DevTensor *d = resolve(r);
    size_t bytes = size_t(d->numel()) * (d->isInt ? 8 : 4);
    void *host = resultBuffer(out.size(), bytes);
    DSV3_CU(drv_, memcpyDtoH, "results of " + name, host, d->ptr, bytes);
    HostTensor<float> t;
    t.isInt = d->isInt;
    t.shape = d->shape;
    if (d->isInt)
      t.i = reinterpret_cast<int64_t *>(host);
    else
      t.f = reinterpret_cast<float *>(host);
    t.capacity = size_t(d->numel());
    out.push_back(t);
  }
  if (Tracer *tracer = activeTracer())
    tracer->phase("run " + name, entryStartUs);
  return out;
}

void *CudaSession::resultBuffer(size_t index, size_t bytes) {
  if (results_.size() <= index)
    results_.resize(index + 1);
  HostBuffer &b = results_[index];
  bytes = std::max<size_t>(bytes, 8);
  if (b.bytes < bytes) {
    if (b.pinned)
      DSV3_CU(drv_, memFreeHost, "a result buffer", b.pinned);
    b.pinned = nullptr;
    b.pageable.clear();
    b.pageable.shrink_to_fit();
    if (drv_.memAllocHost(&b.pinned, bytes) != CUDA_SUCCESS) {
      b.pinned = nullptr;
      b.pageable.resize(bytes);
    }
    b.bytes = bytes;
  }
  return b.data();
}

void CudaSession::reportLaunch(size_t l, const std::string &kernel,
                               const std::vector<DevTensor *> &outs) {
  DSV3_CU(drv_, streamSynchronize, "launch " + kernel, stream_);
  std::vector<std::vector<uint8_t>> copies;
  std::vector<HostTensor<float>> views(outs.size());
  std::vector<HostTensor<float> *> ptrs;
  for (size_t o = 0; o < outs.size(); ++o) {
    DevTensor *d = outs[o];
    size_t bytes = size_t(d->numel()) * (d->isInt ? 8 : 4);
    copies.emplace_back(std::max<size_t>(bytes, 8));
    if (d->cacheForm) { // a packed cache, read as its fp32 rows
      downloadUnpacked(packedCache(), d->ptr, copies.back().data(), bytes);
    } else {
      DSV3_CU(drv_, memcpyDtoH, "launch " + kernel, copies.back().data(), d->ptr, bytes);
    }
    views[o].isInt = d->isInt;
    views[o].shape = d->shape;
    views[o].capacity = size_t(d->numel());
    if (d->isInt)
      views[o].i = reinterpret_cast<int64_t *>(copies.back().data());
    else
      views[o].f = reinterpret_cast<float *>(copies.back().data());
    ptrs.push_back(&views[o]);
  }
  onLaunch(l, kernel, ptrs);
}

} // namespace dsv3rt::cuda
