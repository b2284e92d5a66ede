//===- Nccl.h - NCCL for the CUDA backend's collectives ------------*- C++ -*-===//
//
// libnccl is opened with dlopen the first time a parallel artifact runs a
// collective on the GPU, like libcuda: dsv3-run starts without it. One
// communicator per process (one process per GPU), created from a unique id
// that rank 0 sends the others over the host communicator's TCP mesh
// (runtime/Collectives.h). Every NCCL call is checked; a collective is
// waited for with DSV3_COLLECTIVE_TIMEOUT, polling NCCL's asynchronous
// error, and on an error or a timeout the communicator is aborted
// (ncclCommAbort) and an Error names the rank, the operation and why, so a
// lost rank never hangs the others.
//
//===----------------------------------------------------------------------===//
#ifndef DSV3_RUNTIME_CUDA_NCCL_H
#define DSV3_RUNTIME_CUDA_NCCL_H

#include "runtime/cuda/CudaDriver.h"

#include <cstddef>
#include <cstdint>
#include <string>

namespace dsv3rt::cuda {

/// The element types the collectives move.
enum class NcclType { F32, I64 };

class NcclComm {
public:
  /// This process's communicator (created on first use, on the current
  /// CUDA context's device).
  static NcclComm &get();

  int rank() const { return rank_; }
  int size() const { return size_; }
  /// "NCCL 2.28.3".
  std::string version() const;

  /// One grouped set of point-to-point transfers (an all-to-all-v): call
  /// send/recv between begin and end; end() enqueues them on `stream`.
  void begin();
  void send(CUdeviceptr data, size_t count, NcclType type, int peer, CUstream stream);
  void recv(CUdeviceptr data, size_t count, NcclType type, int peer, CUstream stream);
  void end(const std::string &what);
  /// Sum (or average: `mean`) over the ranks, in place allowed.
  void allReduce(CUdeviceptr in, CUdeviceptr out, size_t count, NcclType type, bool mean,
                 CUstream stream, const std::string &what);
  /// Waits for `stream` (which ran collectives), polling NCCL's async error
  /// and the timeout; aborts the communicator and throws on failure.
  void wait(CUstream stream, const std::string &what);

private:
  NcclComm();
  [[noreturn]] void abortWith(const std::string &what, const std::string &why);
  void check(int result, const char *call, const std::string &what);
  void *comm_ = nullptr;
  int rank_ = 0, size_ = 1;
  /// Collectives issued so far (all-to-all-v groups and all-reduces): the
  /// count DSV3_FAULT's lost-rank injection counts in (injectFault).
  uint64_t seq_ = 0;
};

} // namespace dsv3rt::cuda

#endif // DSV3_RUNTIME_CUDA_NCCL_H
