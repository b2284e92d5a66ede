//===- Generate.h - greedy and sampled generation ----------------*- C++ -*-===//
#ifndef DSV3_RUNTIME_GENERATE_H
#define DSV3_RUNTIME_GENERATE_H

#include "runtime/host/HostSession.h"

#include <cstdint>
#include <vector>

namespace dsv3rt {

struct GenerateOptions {
  int64_t maxNew = 16;
  /// 0: greedy (argmax). Otherwise softmax(logits / temperature) sampled
  /// within the top-p nucleus.
  double temperature = 0.0;
  double topP = 1.0;
  uint64_t seed = 0;
};

struct GenerateResult {
  /// Per prompt: the generated ids.
  std::vector<std::vector<int64_t>> ids;
  /// Per prompt, per generated token: the logits that chose it.
  std::vector<std::vector<std::vector<double>>> logits;
};

/// Prefills each prompt into the latent caches with the `decode` entry
/// (past length 0), then decodes one token at a time. Prompts of equal
/// length run as one batch; others run one by one.
template <typename Session>
GenerateResult generate(Session &session,
                        const std::vector<std::vector<int64_t>> &prompts,
                        const GenerateOptions &options);

/// Picks the next token from `logits` (greedy or sampled).
int64_t pickToken(const std::vector<double> &logits, const GenerateOptions &options,
                  uint64_t &rngState);

} // namespace dsv3rt

#endif // DSV3_RUNTIME_GENERATE_H
