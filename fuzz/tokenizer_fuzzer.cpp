//===- tokenizer_fuzzer.cpp - libFuzzer target: text through a tokenizer --===//
// Any bytes as text for the DeepSeek-V3-configured test tokenizer (its
// Split regular expressions, ByteLevel, added tokens): encode must return
// ids or reject invalid UTF-8 with an Error, and decoding the ids must give
// the text back; any bytes as token ids must decode without crashing.
#include "runtime/Error.h"
#include "runtime/Tokenizer.h"

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static const dsv3rt::Tokenizer tok = dsv3rt::Tokenizer::load(DSV3_FUZZ_TOKENIZER);
  std::string text(reinterpret_cast<const char *>(data), size);
  try {
    std::vector<int64_t> ids = tok.encode(text, false);
    if (tok.decode(ids) != text)
      __builtin_trap(); // byte-level BPE is lossless
  } catch (const dsv3rt::Error &) {
    // invalid UTF-8: refused with a message
  }
  std::vector<int64_t> ids;
  for (size_t i = 0; i + 1 < size; i += 2)
    ids.push_back(int64_t(data[i]) * 256 + data[i + 1] - 1000);
  (void)tok.decode(ids, true);
  return 0;
}
