//===- CudaDriver.cpp - the CUDA driver API, loaded at run time -----------===//
#include "runtime/cuda/CudaDriver.h"

#include "runtime/Error.h"

#include <dlfcn.h>

namespace dsv3rt::cuda {

Driver &Driver::get() {
  static Driver *driver = [] {
    void *lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!lib)
      fail("--backend cuda: cannot load the CUDA driver (libcuda.so.1): {}; "
           "is there an NVIDIA GPU and driver on this machine?",
           dlerror());
    auto *d = new Driver();
    auto sym = [&](auto &fn, const char *name) {
      void *p = dlsym(lib, name);
      if (!p)
        fail("the CUDA driver lacks {} (driver too old?)", name);
      fn = reinterpret_cast<std::remove_reference_t<decltype(fn)>>(p);
    };
    sym(d->init, "cuInit");
    sym(d->deviceGet, "cuDeviceGet");
    sym(d->deviceGetAttribute, "cuDeviceGetAttribute");
    sym(d->deviceGetName, "cuDeviceGetName");
    sym(d->primaryCtxRetain, "cuDevicePrimaryCtxRetain");
    sym(d->ctxSetCurrent, "cuCtxSetCurrent");
    sym(d->streamCreate, "cuStreamCreate");
    sym(d->streamSynchronize, "cuStreamSynchronize");
    sym(d->moduleLoadDataEx, "cuModuleLoadDataEx");
    sym(d->moduleGetFunction, "cuModuleGetFunction");
    sym(d->funcSetAttribute, "cuFuncSetAttribute");
    sym(d->memAlloc, "cuMemAlloc_v2");
    sym(d->memGetInfo, "cuMemGetInfo_v2");
    sym(d->memFree, "cuMemFree_v2");
    sym(d->memcpyHtoD, "cuMemcpyHtoD_v2");
    sym(d->memcpyDtoH, "cuMemcpyDtoH_v2");
    sym(d->memAllocHost, "cuMemAllocHost_v2");
    sym(d->memFreeHost, "cuMemFreeHost");
    sym(d->memsetD8, "cuMemsetD8_v2");
    sym(d->memsetD32Async, "cuMemsetD32Async");
    sym(d->launchKernel, "cuLaunchKernel");
    sym(d->streamQuery, "cuStreamQuery");
    sym(d->memcpyDtoDAsync, "cuMemcpyDtoDAsync_v2");
    sym(d->deviceGetCount, "cuDeviceGetCount");
    sym(d->streamBeginCapture, "cuStreamBeginCapture_v2");
    sym(d->streamEndCapture, "cuStreamEndCapture");
    sym(d->streamIsCapturing, "cuStreamIsCapturing");
    sym(d->graphInstantiate, "cuGraphInstantiateWithFlags");
    sym(d->graphLaunch, "cuGraphLaunch");
    sym(d->graphExecDestroy, "cuGraphExecDestroy");
    sym(d->graphDestroy, "cuGraphDestroy");
    sym(d->eventCreate, "cuEventCreate");
    sym(d->eventRecord, "cuEventRecord");
    sym(d->eventElapsedTime, "cuEventElapsedTime_v2");
    sym(d->eventDestroy, "cuEventDestroy_v2");
    d->tensorMapEncodeTiled = reinterpret_cast<decltype(d->tensorMapEncodeTiled)>(
        dlsym(lib, "cuTensorMapEncodeTiled"));
    sym(d->getErrorName, "cuGetErrorName");
    sym(d->getErrorString, "cuGetErrorString");
    return d;
  }();
  return *driver;
}

void Driver::check(CUresult r, const char *call, const std::string &what) const {
  if (r == CUDA_SUCCESS)
    return;
  const char *name = "?", *message = "?";
  getErrorName(r, &name);
  getErrorString(r, &message);
  fail("{} ({}): {}: {}", call, what, name, message);
}

} // namespace dsv3rt::cuda
