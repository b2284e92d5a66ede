//===- config_fuzzer.cpp - libFuzzer target: config.json import -----------===//
// Any bytes as a config.json: parseModelConfig must return a config or
// errors, never crash, hang or trip a sanitizer.
#include "models/ModelConfig.h"

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  std::string text(reinterpret_cast<const char *>(data), size);
  std::vector<std::string> errors;
  auto config = dsv3::parseModelConfig(text, "fuzz/config.json", errors);
  if (!config && errors.empty())
    __builtin_trap(); // a rejection must say why
  return 0;
}
