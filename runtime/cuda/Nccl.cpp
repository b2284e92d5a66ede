//===- Nccl.cpp - NCCL loaded at run time ---------------------------------===//
#include "runtime/cuda/Nccl.h"

#include "runtime/Collectives.h"
#include "runtime/Error.h"

#if __has_include(<nccl.h>)
#include <nccl.h>
#define DSV3_HAVE_NCCL_H 1
#endif

#include <chrono>
#include <cstring>
#include <dlfcn.h>
#include <thread>
#include <vector>

namespace dsv3rt::cuda {

#ifdef DSV3_HAVE_NCCL_H
namespace {

struct NcclApi {
  decltype(&::ncclGetVersion) getVersion;
  decltype(&::ncclGetUniqueId) getUniqueId;
  decltype(&::ncclCommInitRank) commInitRank;
  decltype(&::ncclCommAbort) commAbort;
  decltype(&::ncclCommGetAsyncError) commGetAsyncError;
  decltype(&::ncclGetErrorString) getErrorString;
  decltype(&::ncclGroupStart) groupStart;
  decltype(&::ncclGroupEnd) groupEnd;
  decltype(&::ncclSend) send;
  decltype(&::ncclRecv) recv;
  decltype(&::ncclAllReduce) allReduce;

  static NcclApi &get() {
    static NcclApi *api = [] {
      void *lib = dlopen("libnccl.so.2", RTLD_NOW | RTLD_GLOBAL);
      if (!lib)
        lib = dlopen("libnccl.so", RTLD_NOW | RTLD_GLOBAL);
      if (!lib)
        fail("NCCL is not installed (dlopen libnccl.so.2: {}); parallel artifacts on "
             "--backend cuda need it",
             dlerror());
      auto *a = new NcclApi();
      auto sym = [&](auto &fn, const char *name) {
        void *p = dlsym(lib, name);
        if (!p)
          fail("libnccl lacks {} (too old a NCCL?)", name);
        fn = reinterpret_cast<std::remove_reference_t<decltype(fn)>>(p);
      };
      sym(a->getVersion, "ncclGetVersion");
      sym(a->getUniqueId, "ncclGetUniqueId");
      sym(a->commInitRank, "ncclCommInitRank");
      sym(a->commAbort, "ncclCommAbort");
      sym(a->commGetAsyncError, "ncclCommGetAsyncError");
      sym(a->getErrorString, "ncclGetErrorString");
      sym(a->groupStart, "ncclGroupStart");
      sym(a->groupEnd, "ncclGroupEnd");
      sym(a->send, "ncclSend");
      sym(a->recv, "ncclRecv");
      sym(a->allReduce, "ncclAllReduce");
      return a;
    }();
    return *api;
  }
};

ncclDataType_t ncclType(NcclType t) { return t == NcclType::F32 ? ncclFloat32 : ncclInt64; }

} // namespace

NcclComm &NcclComm::get() {
  static NcclComm *comm = new NcclComm(); // lives until exit (never destroyed mid-run)
  return *comm;
}

NcclComm::NcclComm() {
  NcclApi &api = NcclApi::get();
  Communicator &c = processCommunicator();
  rank_ = c.rank();
  size_ = c.size();
  // Rank 0's unique id reaches the others over the TCP mesh (the
  // bootstrap every launcher sets up: torchrun, srun, dsv3-run launch).
  ncclUniqueId id;
  std::vector<uint8_t> bytes(sizeof id);
  if (rank_ == 0) {
    check(api.getUniqueId(&id), "ncclGetUniqueId", "the NCCL bootstrap");
    std::memcpy(bytes.data(), &id, sizeof id);
  }
  bytes = c.broadcast(bytes, "NCCL unique id");
  if (bytes.size() != sizeof id)
    fail("rank {}: the NCCL unique id from rank 0 has {} bytes", rank_, bytes.size());
  std::memcpy(&id, bytes.data(), sizeof id);
  ncclComm_t comm = nullptr;
  check(api.commInitRank(&comm, size_, id, rank_), "ncclCommInitRank",
        fmt::format("rank {} of {}", rank_, size_));
  comm_ = comm;
}

std::string NcclComm::version() const {
  int v = 0;
  NcclApi::get().getVersion(&v);
  return fmt::format("NCCL {}.{}.{}", v / 10000, (v / 100) % 100, v % 100);
}

void NcclComm::check(int result, const char *call, const std::string &what) {
  if (result == ncclSuccess || result == ncclInProgress)
    return;
  abortWith(what, fmt::format("{} failed: {}", call,
                              NcclApi::get().getErrorString(ncclResult_t(result))));
}

void NcclComm::abortWith(const std::string &what, const std::string &why) {
  if (comm_)
    NcclApi::get().commAbort(static_cast<ncclComm_t>(comm_));
  comm_ = nullptr;
  fail("rank {}: NCCL {}: {} (communicator aborted)", rank_, what, why);
}

void NcclComm::begin() {
  if (!comm_)
    fail("rank {}: the NCCL communicator was aborted by an earlier error", rank_);
  injectFault(rank_, ++seq_);
  check(NcclApi::get().groupStart(), "ncclGroupStart", "all-to-all-v");
}

void NcclComm::send(CUdeviceptr data, size_t count, NcclType type, int peer, CUstream stream) {
  if (count)
    check(NcclApi::get().send(reinterpret_cast<const void *>(data), count, ncclType(type), peer,
                              static_cast<ncclComm_t>(comm_), stream),
          "ncclSend", fmt::format("to rank {}", peer));
}

void NcclComm::recv(CUdeviceptr data, size_t count, NcclType type, int peer, CUstream stream) {
  if (count)
    check(NcclApi::get().recv(reinterpret_cast<void *>(data), count, ncclType(type), peer,
                              static_cast<ncclComm_t>(comm_), stream),
          "ncclRecv", fmt::format("from rank {}", peer));
}

void NcclComm::end(const std::string &what) {
  check(NcclApi::get().groupEnd(), "ncclGroupEnd", what);
}

void NcclComm::allReduce(CUdeviceptr in, CUdeviceptr out, size_t count, NcclType type,
                         bool mean, CUstream stream, const std::string &what) {
  if (!comm_)
    fail("rank {}: the NCCL communicator was aborted by an earlier error", rank_);
  injectFault(rank_, ++seq_);
  check(NcclApi::get().allReduce(reinterpret_cast<const void *>(in), reinterpret_cast<void *>(out),
                                 count, ncclType(type), mean ? ncclAvg : ncclSum,
                                 static_cast<ncclComm_t>(comm_), stream),
        "ncclAllReduce", what);
}

void NcclComm::wait(CUstream stream, const std::string &what) {
  Driver &drv = Driver::get();
  auto deadline = std::chrono::steady_clock::now() +
                  std::chrono::milliseconds(int64_t(collectiveTimeoutSeconds() * 1000));
  for (int spin = 0;; ++spin) {
    CUresult r = drv.streamQuery(stream);
    if (r == CUDA_SUCCESS)
      return;
    if (r != CUDA_ERROR_NOT_READY)
      drv.check(r, "cuStreamQuery", what);
    ncclResult_t async = ncclSuccess;
    if (comm_)
      NcclApi::get().commGetAsyncError(static_cast<ncclComm_t>(comm_), &async);
    if (async != ncclSuccess && async != ncclInProgress)
      abortWith(what, fmt::format("asynchronous error: {} (a rank died or the network "
                                  "failed)",
                                  NcclApi::get().getErrorString(async)));
    if (std::chrono::steady_clock::now() > deadline)
      abortWith(what, fmt::format("timed out after {:.0f} s (a rank hung or died; "
                                  "DSV3_COLLECTIVE_TIMEOUT sets the limit)",
                                  collectiveTimeoutSeconds()));
    if (spin > 1000)
      std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
}

#else // no nccl.h at build time: every use says so

NcclComm &NcclComm::get() {
  fail("this dsv3-run was built without NCCL's header (nccl.h): parallel artifacts cannot "
       "run on --backend cuda");
}
NcclComm::NcclComm() {}
std::string NcclComm::version() const { return "none"; }
void NcclComm::begin() {}
void NcclComm::send(CUdeviceptr, size_t, NcclType, int, CUstream) {}
void NcclComm::recv(CUdeviceptr, size_t, NcclType, int, CUstream) {}
void NcclComm::end(const std::string &) {}
void NcclComm::allReduce(CUdeviceptr, CUdeviceptr, size_t, NcclType, bool, CUstream,
                         const std::string &) {}
void NcclComm::wait(CUstream, const std::string &) {}
void NcclComm::check(int, const char *, const std::string &) {}
void NcclComm::abortWith(const std::string &what, const std::string &why) {
  fail("NCCL {}: {}", what, why);
}
#endif

} // namespace dsv3rt::cuda
