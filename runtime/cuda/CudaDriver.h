//===- CudaDriver.h - the CUDA driver API, loaded at run time -----*- C++ -*-===//
//
// libcuda is opened with dlopen, so dsv3-run starts (and the host backend
// runs) on machines without a GPU driver; `--backend cuda` then reports
// that the driver is missing. Every call goes through DSV3_CU, which
// throws an Error naming the call, the CUDA error and what it was doing.
//
//===----------------------------------------------------------------------===//
#ifndef DSV3_RUNTIME_CUDA_CUDADRIVER_H
#define DSV3_RUNTIME_CUDA_CUDADRIVER_H

#include <cuda.h>

#include <string>

namespace dsv3rt::cuda {

struct Driver {
  decltype(&::cuInit) init;
  decltype(&::cuDeviceGet) deviceGet;
  decltype(&::cuDeviceGetAttribute) deviceGetAttribute;
  decltype(&::cuDeviceGetName) deviceGetName;
  decltype(&::cuDevicePrimaryCtxRetain) primaryCtxRetain;
  decltype(&::cuCtxSetCurrent) ctxSetCurrent;
  decltype(&::cuStreamCreate) streamCreate;
  decltype(&::cuStreamSynchronize) streamSynchronize;
  decltype(&::cuModuleLoadDataEx) moduleLoadDataEx;
  decltype(&::cuModuleGetFunction) moduleGetFunction;
  decltype(&::cuFuncSetAttribute) funcSetAttribute;
  decltype(&::cuMemAlloc) memAlloc;
  decltype(&::cuMemGetInfo) memGetInfo;
  decltype(&::cuMemFree) memFree;
  decltype(&::cuMemcpyHtoD) memcpyHtoD;
  decltype(&::cuMemcpyDtoH) memcpyDtoH;
  // Page-locked host memory (the entries' results: a decode step's logits
  // copied at full PCIe speed, without page faults).
  decltype(&::cuMemAllocHost) memAllocHost;
  decltype(&::cuMemFreeHost) memFreeHost;
  decltype(&::cuMemsetD8) memsetD8;
  decltype(&::cuMemsetD32Async) memsetD32Async;
  decltype(&::cuLaunchKernel) launchKernel;
  // Collectives (expert parallelism): waiting with a timeout, regrouping rows.
  decltype(&::cuStreamQuery) streamQuery;
  decltype(&::cuMemcpyDtoDAsync) memcpyDtoDAsync;
  decltype(&::cuDeviceGetCount) deviceGetCount;
  // CUDA graphs (the decode step is captured once and replayed).
  decltype(&::cuStreamBeginCapture) streamBeginCapture;
  decltype(&::cuStreamEndCapture) streamEndCapture;
  decltype(&::cuStreamIsCapturing) streamIsCapturing;
  decltype(&::cuGraphInstantiate) graphInstantiate;
  decltype(&::cuGraphLaunch) graphLaunch;
  decltype(&::cuGraphExecDestroy) graphExecDestroy;
  decltype(&::cuGraphDestroy) graphDestroy;
  // Events (DSV3_PROFILE: per-launch timing).
  decltype(&::cuEventCreate) eventCreate;
  decltype(&::cuEventRecord) eventRecord;
  decltype(&::cuEventElapsedTime) eventElapsedTime;
  decltype(&::cuEventDestroy) eventDestroy;
  // TMA (Hopper GEMMs); null on a driver without it (then unused).
  decltype(&::cuTensorMapEncodeTiled) tensorMapEncodeTiled;
  decltype(&::cuGetErrorName) getErrorName;
  decltype(&::cuGetErrorString) getErrorString;

  /// The process-wide driver; throws an Error when libcuda cannot be loaded.
  static Driver &get();
  /// Throws an Error for a failed call: "CALL (WHAT): NAME: MESSAGE".
  void check(CUresult r, const char *call, const std::string &what) const;
};

} // namespace dsv3rt::cuda

#define DSV3_CU(drv, call, what, ...)                                          \
  (drv).check((drv).call(__VA_ARGS__), #call, (what))

#endif // DSV3_RUNTIME_CUDA_CUDADRIVER_H
