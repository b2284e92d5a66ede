//===- Generate.cpp - greedy and sampled generation -----------------------===//
#include "runtime/Generate.h"

#include "runtime/Error.h"
#ifdef DSV3_HAVE_CUDA
#include "runtime/cuda/CudaSession.h"
#endif

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <random>

namespace dsv3rt {

#ifdef DSV3_HAVE_CUDA
void makeCachesResident(cuda::CudaSession &s, std::vector<std::vector<float>> &caches,
                        bool on) {
  for (auto &c : caches) {
    if (on)
      s.makeResident(c.data(), c.size() * sizeof(float), /*latentCache=*/true);
    else
      s.releaseResident(c.data(), false);
  }
}
#endif

int64_t pickToken(const std::vector<double> &logits, const GenerateOptions &o,
                  uint64_t &rngState) {
  if (o.temperature <= 0.0)
    return int64_t(std::max_element(logits.begin(), logits.end()) - logits.begin());
  std::vector<double> p(logits.size());
  double m = *std::max_element(logits.begin(), logits.end()), sum = 0;
  for (size_t i = 0; i < p.size(); ++i)
    sum += (p[i] = std::exp((logits[i] - m) / o.temperature));
  std::vector<size_t> order(p.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return p[a] > p[b]; });
  double kept = 0;
  size_t n = 0;
  while (n < order.size() && (n == 0 || kept < o.topP * sum))
    kept += p[order[n++]];
  std::mt19937_64 rng(rngState);
  rngState = rng();
  double u = std::uniform_real_distribution<double>(0.0, kept)(rng), acc = 0;
  for (size_t i = 0; i < n; ++i)
    if ((acc += p[order[i]]) >= u)
      return int64_t(order[i]);
  return int64_t(order[n - 1]);
}

namespace {
/// The decode entry's token budget (dsv3c --max-tokens): the most tokens
/// one call carries.
int64_t tokenBudget(const Entry &decode) {
  return decode.maxTokens > 0 ? decode.maxTokens : std::numeric_limits<int64_t>::max();
}

/// Prefills `g` sequences of `P` tokens (`ids`, row-major) into cache slots
/// [slot, slot + g): in one call when g x P fits the token budget, else in
/// chunks of the sequences (the later chunks attend to the cached earlier
/// ones), through the `prefill` entry (logits of each sequence's last
/// position only) when the artifact has one, else `decode`. Returns the
/// last call's results and the logits rows each sequence got in it (the
/// last of them is the one to sample from).
template <typename Session, typename Real>
std::pair<std::vector<HostTensor<Real>>, int64_t>
prefill(Session &session, const std::vector<int64_t> &ids, int64_t g, int64_t P,
        std::vector<std::vector<Real>> &caches, int64_t S, int64_t W, int64_t slot) {
  const std::string entry = session.artifact().hasEntry("prefill") ? "prefill" : "decode";
  int64_t T = std::min(P, std::max<int64_t>(1, tokenBudget(session.artifact().entry(entry)) / g));
  std::vector<HostTensor<Real>> out;
  for (int64_t off = 0; off < P; off += T) {
    int64_t chunk = std::min(T, P - off);
    std::vector<int64_t> part(size_t(g * chunk));
    for (int64_t i = 0; i < g; ++i)
      std::copy_n(ids.begin() + i * P + off, chunk, part.begin() + i * chunk);
    std::vector<int64_t> past(size_t(g), off);
    out = session.run(entry, decodeArgs(part, g, chunk, past, caches, S, W, slot));
  }
  int64_t rows = out[0].dim(1);
  return {std::move(out), rows};
}
} // namespace

template <typename Session>
GenerateResult generate(Session &session,
                        const std::vector<std::vector<int64_t>> &prompts,
                        const GenerateOptions &o) {
  using Real = typename Session::Real;
  GenerateResult result;
  result.ids.resize(prompts.size());
  result.logits.resize(prompts.size());
  if (prompts.empty() || o.maxNew <= 0)
    return result;
  uint64_t rng = o.seed;
  const Entry &decode = session.artifact().entry("decode");
  size_t layers = decode.args.size() - 2;
  int64_t W = decode.args.at(2).shape.at(2), longest = 0;
  for (const auto &p : prompts) {
    if (p.empty())
      fail("generate: empty prompt");
    longest = std::max(longest, int64_t(p.size()));
  }
  int64_t slots = o.maxBatch > 0 ? std::min<int64_t>(o.maxBatch, int64_t(prompts.size()))
                                 : int64_t(prompts.size());
  int64_t budget = tokenBudget(decode);
  if (slots > budget)
    fail("generate: {} cache slots decode {} tokens a step, more than the {} one call of {} "
         "may carry (compiled with dsv3c --max-tokens {}); use --max-batch {} or fewer",
         slots, slots, budget, session.artifact().dir, budget, budget);
  int64_t S = longest + o.maxNew;
  std::vector<std::vector<Real>> caches(layers, std::vector<Real>(size_t(slots * S * W)));
  ResidentCaches<Session, Real> onDevice(session, caches);
  // Per slot: the prompt it serves (-1: free), its past length, its last token.
  std::vector<int64_t> owner(size_t(slots), -1), past(size_t(slots), 0),
      last(size_t(slots), 0);
  size_t nextPrompt = 0;
  // Records slot b's next token from a logits row; frees the slot when its
  // sequence is complete.
  auto take = [&](int64_t b, const Real *row, int64_t V) {
    size_t r = size_t(owner[size_t(b)]);
    std::vector<double> l(row, row + V);
    int64_t t = pickToken(l, o, rng);
    result.ids[r].push_back(t);
    result.logits[r].push_back(std::move(l));
    last[size_t(b)] = t;
    if (o.onToken)
      o.onToken(r, t);
    if (int64_t(result.ids[r].size()) >= o.maxNew ||
        std::find(o.stopIds.begin(), o.stopIds.end(), t) != o.stopIds.end())
      owner[size_t(b)] = -1;
  };
  while (true) {
    // Admit waiting prompts into free slots: a run of adjacent free slots
    // whose prompts have one length is prefilled as one batch.
    for (int64_t b = 0; b < slots && nextPrompt < prompts.size();) {
      if (owner[size_t(b)] >= 0) {
        ++b;
        continue;
      }
      int64_t P = int64_t(prompts[nextPrompt].size()), g = 0;
      std::vector<int64_t> ids;
      // (More prompts join a prefill while their tokens fit one call; a
      // prompt longer than the budget is prefilled alone, in chunks.)
      while (b + g < slots && owner[size_t(b + g)] < 0 &&
             nextPrompt < prompts.size() && int64_t(prompts[nextPrompt].size()) == P &&
             (g == 0 || (g + 1) * P <= budget)) {
        owner[size_t(b + g)] = int64_t(nextPrompt);
        ids.insert(ids.end(), prompts[nextPrompt].begin(), prompts[nextPrompt].end());
        ++nextPrompt;
        ++g;
      }
      auto [out, T] = prefill(session, ids, g, P, caches, S, W, b);
      int64_t V = out[0].dim(2);
      for (int64_t i = 0; i < g; ++i) {
        past[size_t(b + i)] = P;
        take(b + i, out[0].f + (i * T + T - 1) * V, V);
      }
      b += g;
    }
    if (std::none_of(owner.begin(), owner.end(), [](int64_t r) { return r >= 0; }))
      break;
    // One step of every slot; a free slot decodes a dummy token at its
    // row 0 (overwritten by the next prefill) and its output is dropped.
    std::vector<int64_t> ids(static_cast<size_t>(slots), 0),
        pos(static_cast<size_t>(slots), 0);
    for (int64_t b = 0; b < slots; ++b) {
      bool used = owner[size_t(b)] >= 0;
      ids[size_t(b)] = used ? last[size_t(b)] : 0;
      pos[size_t(b)] = used ? past[size_t(b)] : 0;
    }
    std::vector<HostTensor<Real>> out =
        session.run("decode", decodeArgs(ids, slots, 1, pos, caches, S, W));
    int64_t V = out[0].dim(2);
    for (int64_t b = 0; b < slots; ++b)
      if (owner[size_t(b)] >= 0) {
        ++past[size_t(b)];
        take(b, out[0].f + b * V, V);
      }
  }
  return result;
}

namespace {
int64_t argmaxRow(const float *row, int64_t V) {
  return int64_t(std::max_element(row, row + V) - row);
}
int64_t argmaxRow(const double *row, int64_t V) {
  return int64_t(std::max_element(row, row + V) - row);
}
} // namespace

template <typename Session>
GenerateResult generateSpeculative(Session &session,
                                   const std::vector<std::vector<int64_t>> &prompts,
                                   const GenerateOptions &o) {
  using Real = typename Session::Real;
  const Artifact &art = session.artifact();
  if (!art.hasEntry("forward_mtp"))
    fail("--speculative mtp: {} has no forward_mtp entry (the model has no MTP "
         "layer)",
         art.dir);
  if (o.temperature > 0)
    fail("--speculative mtp decodes greedily (drop --temperature)");
  const Entry &decode = art.entry("decode");
  size_t layers = decode.args.size() - 2;
  int64_t W = decode.args.at(2).shape.at(2);
  // The drafter runs forward_mtp over the whole sequence (no MTP cache yet),
  // so the sequence must fit one call.
  if (int64_t budget = art.entry("forward_mtp").maxTokens; budget > 0)
    for (const auto &p : prompts)
      if (int64_t(p.size()) + o.maxNew > budget)
        fail("--speculative mtp: the drafter runs forward_mtp over the whole sequence "
             "({} prompt + {} new tokens), more than the {} one call of {} may carry "
             "(compiled with dsv3c --max-tokens {})",
             p.size(), o.maxNew, budget, art.dir, budget);
  GenerateResult result;
  result.ids.resize(prompts.size());
  result.logits.resize(prompts.size());
  for (size_t p = 0; p < prompts.size(); ++p) {
    std::vector<int64_t> seq = prompts[p];
    int64_t P = int64_t(seq.size()), S = P + o.maxNew + 2;
    std::vector<std::vector<Real>> caches(layers, std::vector<Real>(size_t(S * W)));
    ResidentCaches<Session, Real> onDevice(session, caches);
    std::vector<int64_t> past = {0};
    // Prefill: the main model's first token.
    auto [out, T] = prefill(session, seq, 1, P, caches, S, W, 0);
    int64_t V = out[0].dim(2);
    bool stopped = false;
    auto emit = [&](const Real *row) {
      int64_t t = argmaxRow(row, V);
      result.ids[p].push_back(t);
      result.logits[p].emplace_back(row, row + V);
      seq.push_back(t);
      if (o.onToken)
        o.onToken(p, t);
      stopped = stopped || std::find(o.stopIds.begin(), o.stopIds.end(), t) != o.stopIds.end();
      return t;
    };
    emit(out[0].f + (T - 1) * V);
    past[0] = P;
    ++result.speculative.mainSteps;
    while (int64_t(result.ids[p].size()) < o.maxNew && !stopped) {
      // Draft the token after the one just emitted.
      std::vector<int64_t> whole = seq;
      std::vector<HostTensor<Real>> args(1);
      args[0].isInt = true;
      args[0].shape = {1, int64_t(whole.size())};
      args[0].i = whole.data();
      args[0].capacity = whole.size();
      auto draftOut = session.run("forward_mtp", args);
      int64_t rows = draftOut[0].dim(1);
      int64_t draft = argmaxRow(draftOut[0].f + (rows - 1) * V, V);
      ++result.speculative.drafted;
      // Verify: the main model scores [t_{n+1}, draft] in one step.
      std::vector<int64_t> pair = {seq.back(), draft};
      out = session.run("decode", decodeArgs(pair, 1, 2, past, caches, S, W));
      ++result.speculative.mainSteps;
      int64_t choice = emit(out[0].f);
      if (choice == draft && int64_t(result.ids[p].size()) < o.maxNew && !stopped) {
        ++result.speculative.accepted;
        emit(out[0].f + V); // the draft was right: one more token for free
        past[0] += 2;
      } else {
        past[0] += 1; // the draft's cache row is overwritten next step
      }
    }
  }
  return result;
}

template GenerateResult generateSpeculative(HostSession<float> &,
                                            const std::vector<std::vector<int64_t>> &,
                                            const GenerateOptions &);
template GenerateResult generateSpeculative(HostSession<double> &,
                                            const std::vector<std::vector<int64_t>> &,
                                            const GenerateOptions &);
#ifdef DSV3_HAVE_CUDA
template GenerateResult generateSpeculative(cuda::CudaSession &,
                                            const std::vector<std::vector<int64_t>> &,
                                            const GenerateOptions &);
#endif

template GenerateResult generate(HostSession<float> &,
                                 const std::vector<std::vector<int64_t>> &,
                                 const GenerateOptions &);
template GenerateResult generate(HostSession<double> &,
                                 const std::vector<std::vector<int64_t>> &,
                                 const GenerateOptions &);
#ifdef DSV3_HAVE_CUDA
template GenerateResult generate(cuda::CudaSession &,
                                 const std::vector<std::vector<int64_t>> &,
                                 const GenerateOptions &);
#endif

} // namespace dsv3rt
