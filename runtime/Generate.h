//===- Generate.h - greedy and sampled generation ----------------*- C++ -*-===//
#ifndef DSV3_RUNTIME_GENERATE_H
#define DSV3_RUNTIME_GENERATE_H

#include "runtime/host/HostSession.h"

#include <cstdint>
#include <functional>
#include <vector>

namespace dsv3rt {

struct GenerateOptions {
  int64_t maxNew = 16;
  /// 0: greedy (argmax). Otherwise softmax(logits / temperature) sampled
  /// within the top-p nucleus.
  double temperature = 0.0;
  double topP = 1.0;
  uint64_t seed = 0;
  /// Sequences decoded together (continuous batching): 0 = all prompts.
  /// When prompts outnumber the slots, a prompt is prefilled into the slot
  /// of a sequence as soon as that sequence has finished.
  int64_t maxBatch = 0;
  /// A sequence ends after it produces one of these (e.g. the tokenizer's
  /// end-of-sentence token), or after maxNew tokens.
  std::vector<int64_t> stopIds;
  /// Called with (prompt index, token id) as each token is produced
  /// (streaming output).
  std::function<void(size_t, int64_t)> onToken;
};

struct SpeculativeStats {
  int64_t drafted = 0, accepted = 0, mainSteps = 0;
};

struct GenerateResult {
  SpeculativeStats speculative;
  /// Per prompt: the generated ids.
  std::vector<std::vector<int64_t>> ids;
  /// Per prompt, per generated token: the logits that chose it.
  std::vector<std::vector<std::vector<double>>> logits;
};

/// Continuous batching over `maxBatch` cache slots: each prompt is
/// prefilled into a free slot with the `decode` entry (past length 0;
/// prompts of equal length admitted together into adjacent slots share one
/// prefill), then every occupied slot decodes one token per step, each at
/// its own past length, so sequences of different lengths share one batch.
template <typename Session>
GenerateResult generate(Session &session,
                        const std::vector<std::vector<int64_t>> &prompts,
                        const GenerateOptions &options);

/// The arguments of the `decode` entry: ids `[B, T]`, the past length of
/// each sequence `[B]`, and one `[B, S, W]` latent-cache view per layer
/// (updated in place), starting `offset` sequences into each cache.
template <typename Real>
std::vector<HostTensor<Real>> decodeArgs(std::vector<int64_t> &ids, int64_t B,
                                         int64_t T, std::vector<int64_t> &past,
                                         std::vector<std::vector<Real>> &caches,
                                         int64_t S, int64_t W, int64_t offset = 0) {
  std::vector<HostTensor<Real>> args(2 + caches.size());
  args[0].isInt = true;
  args[0].shape = {B, T};
  args[0].i = ids.data();
  args[0].capacity = ids.size();
  args[1].isInt = true;
  args[1].shape = {B};
  args[1].i = past.data();
  args[1].capacity = past.size();
  for (size_t l = 0; l < caches.size(); ++l) {
    args[2 + l].shape = {B, S, W};
    args[2 + l].f = caches[l].data() + offset * S * W;
    args[2 + l].capacity = size_t(B * S * W);
  }
  return args;
}

namespace cuda {
class CudaSession;
}
/// Decode caches on the GPU: uploaded once, updated in place by every step,
/// never copied back (only the logits cross the bus). No-op on the host.
void makeCachesResident(cuda::CudaSession &s, std::vector<std::vector<float>> &caches,
                        bool on);
template <typename Session, typename Real>
void makeCachesResident(Session &, std::vector<std::vector<Real>> &, bool) {}

/// makeCachesResident for a scope.
template <typename Session, typename Real> class ResidentCaches {
public:
  ResidentCaches(Session &s, std::vector<std::vector<Real>> &caches)
      : s_(s), caches_(caches) {
    makeCachesResident(s_, caches_, true);
  }
  ~ResidentCaches() {
    try {
      makeCachesResident(s_, caches_, false);
    } catch (...) {
    }
  }
  ResidentCaches(const ResidentCaches &) = delete;
  ResidentCaches &operator=(const ResidentCaches &) = delete;

private:
  Session &s_;
  std::vector<std::vector<Real>> &caches_;
};

/// Greedy generation with MTP speculative decoding (SEMANTICS.md 7): after
/// the main model emits t_{n+1}, the MTP depth drafts t_{n+2} from the
/// main model's hidden state and the embedding of t_{n+1} (the
/// `forward_mtp` entry, recomputed over the sequence); the next main step
/// scores t_{n+1} and the draft together and keeps the draft iff it equals
/// the main model's own choice, so the output is identical to plain greedy
/// decoding. One prompt at a time.
template <typename Session>
GenerateResult generateSpeculative(Session &session,
                                   const std::vector<std::vector<int64_t>> &prompts,
                                   const GenerateOptions &options);

/// Picks the next token from `logits` (greedy or sampled).
int64_t pickToken(const std::vector<double> &logits, const GenerateOptions &options,
                  uint64_t &rngState);

} // namespace dsv3rt

#endif // DSV3_RUNTIME_GENERATE_H
