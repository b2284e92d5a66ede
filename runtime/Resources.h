//===- Resources.h - memory checks before large allocations -------*- C++ -*-===//
#ifndef DSV3_RUNTIME_RESOURCES_H
#define DSV3_RUNTIME_RESOURCES_H

#include "runtime/Artifact.h"

#include <cstdint>
#include <string>

namespace dsv3rt {

/// Elements of every parameter of `artifact`.
int64_t parameterElements(const Artifact &artifact);
/// The largest arena of its entries, in the artifact's element sizes.
int64_t largestArenaBytes(const Artifact &artifact);
/// MemAvailable of /proc/meminfo in bytes (-1 when unknown).
int64_t hostAvailableBytes();

/// Fails, before anything large is allocated, when the host backend
/// computing in `realBytes`-byte floats cannot hold `artifact`: weights
/// (kept in Real plus a double staging copy while binding) and the arena,
/// with the needed and available bytes in the message.
void checkHostMemory(const Artifact &artifact, size_t realBytes);

} // namespace dsv3rt

#endif // DSV3_RUNTIME_RESOURCES_H
