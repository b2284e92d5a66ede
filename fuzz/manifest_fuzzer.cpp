//===- manifest_fuzzer.cpp - libFuzzer target: artifact manifests ---------===//
// Any bytes as an artifact's manifest.json: Artifact::load either returns
// a validated artifact or throws an Error naming the JSON path.
#include "runtime/Artifact.h"
#include "runtime/Error.h"

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>
#include <sys/stat.h>
#include <unistd.h>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static std::string dir = "/tmp/dsv3-fuzz-artifact-" + std::to_string(::getpid());
  ::mkdir(dir.c_str(), 0755);
  std::FILE *f = std::fopen((dir + "/manifest.json").c_str(), "wb");
  if (!f)
    return 0;
  std::fwrite(data, 1, size, f);
  std::fclose(f);
  try {
    dsv3rt::Artifact a = dsv3rt::Artifact::load(dir);
    (void)a;
  } catch (const dsv3rt::Error &) {
  }
  return 0;
}
