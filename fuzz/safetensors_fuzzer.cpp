//===- safetensors_fuzzer.cpp - libFuzzer target: safetensors parsing -----===//
// Any bytes as a model.safetensors: opening it either succeeds (then every
// tensor view lies inside the file and reading each element is safe) or
// throws an Error; never a crash or an out-of-bounds read.
#include "runtime/Error.h"
#include "runtime/Safetensors.h"

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>
#include <unistd.h>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static std::string path = "/tmp/dsv3-fuzz-" + std::to_string(::getpid()) + ".safetensors";
  std::FILE *f = std::fopen(path.c_str(), "wb");
  if (!f)
    return 0;
  std::fwrite(data, 1, size, f);
  std::fclose(f);
  try {
    dsv3rt::SafetensorsFile file(path);
    double sum = 0;
    for (auto &[name, t] : file.tensors())
      for (int64_t i = 0, n = t.numElements(); i < n; i += 1 + n / 8)
        sum += t.at(size_t(i));
    (void)sum;
  } catch (const dsv3rt::Error &) {
  }
  return 0;
}
