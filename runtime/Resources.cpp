//===- Resources.cpp - memory checks before large allocations -------------===//
#include "runtime/Resources.h"

#include "runtime/Error.h"
#include "runtime/Progress.h"

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <sstream>

namespace dsv3rt {

int64_t parameterElements(const Artifact &artifact) {
  int64_t n = 0;
  for (const ParamInfo &p : artifact.params) {
    int64_t e = 1;
    for (int64_t d : p.shape)
      e *= d;
    n += e;
  }
  return n;
}

int64_t largestArenaBytes(const Artifact &artifact) {
  int64_t m = 0;
  for (auto &[name, e] : artifact.entries)
    m = std::max<int64_t>(m, e.arenaBytes);
  return m;
}

int64_t hostAvailableBytes() {
  // DSV3_HOST_MEMORY_BYTES overrides (tests, containers whose limit
  // /proc/meminfo does not show).
  if (const char *v = std::getenv("DSV3_HOST_MEMORY_BYTES"))
    return std::atoll(v);
  std::ifstream in("/proc/meminfo");
  std::string key;
  int64_t kb = 0;
  std::string unit;
  while (in >> key >> kb) {
    std::getline(in, unit);
    if (key == "MemAvailable:")
      return kb * 1024;
  }
  return -1;
}

void checkHostMemory(const Artifact &artifact, size_t realBytes) {
  int64_t available = hostAvailableBytes();
  if (available < 0)
    return;
  double params = double(parameterElements(artifact));
  // Activations in Real: the plan's bytes scaled as HostSession scales them
  // (a plan laid out for bf16 holds floats at twice the offsets).
  size_t minFloat = realBytes;
  for (auto &[n, e] : artifact.entries)
    for (const BufferInfo &b : e.buffers)
      if (b.dtype != DType::I64 && b.dtype != DType::I32)
        minFloat = std::min(minFloat, dtypeSize(b.dtype));
  double arena = double(largestArenaBytes(artifact)) *
                 double(std::max<size_t>(1, realBytes / std::max<size_t>(minFloat, 1)));
  double weights = params * double(realBytes + sizeof(double));
  double needed = weights + arena;
  if (needed <= double(available))
    return;
  fail("{}: the host backend needs about {} ({:.4g} M parameters at {} bytes each plus "
       "an 8-byte copy while loading, and a {} activation arena) but {} of memory is "
       "available; use a smaller model{}, a smaller --max-batch/--max-seq, or the GPU "
       "backend",
       artifact.dir, humanBytes(needed), params / 1e6, realBytes, humanBytes(arena),
       humanBytes(double(available)), realBytes == 8 ? ", --dtype fp32 instead of fp64" : "");
}

} // namespace dsv3rt
