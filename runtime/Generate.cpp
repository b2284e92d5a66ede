//===- Generate.cpp - greedy and sampled generation -----------------------===//
#include "runtime/Generate.h"

#include "runtime/Error.h"
#ifdef DSV3_HAVE_CUDA
#include "runtime/cuda/CudaSession.h"
#endif

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>

namespace dsv3rt {

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
template <typename Session>
void generateBatch(Session &session,
                   const std::vector<std::vector<int64_t>> &prompts,
                   const std::vector<size_t> &rows, const GenerateOptions &o,
                   uint64_t &rng, GenerateResult &result) {
  using Real = typename Session::Real;
  const Entry &decode = session.artifact().entry("decode");
  size_t layers = decode.args.size() - 2;
  int64_t B = int64_t(rows.size()), P = int64_t(prompts[rows[0]].size());
  if (P == 0)
    fail("generate: empty prompt");
  int64_t S = P + o.maxNew, W = decode.args.at(2).shape.at(2);
  std::vector<std::vector<Real>> caches(layers, std::vector<Real>(size_t(B * S * W)));
  std::vector<int64_t> ids;
  for (size_t r : rows)
    ids.insert(ids.end(), prompts[r].begin(), prompts[r].end());
  int64_t past = 0, step = P;
  for (int64_t n = 0; n < o.maxNew; ++n) {
    std::vector<HostTensor<Real>> out =
        session.run("decode", decodeArgs(ids, B, step, past, caches, S, W));
    const HostTensor<Real> &logits = out[0];
    int64_t V = logits.dim(2);
    std::vector<int64_t> next(static_cast<size_t>(B));
    for (int64_t b = 0; b < B; ++b) {
      const Real *row = logits.f + (b * step + step - 1) * V;
      std::vector<double> l(row, row + V);
      next[size_t(b)] = pickToken(l, o, rng);
      result.ids[rows[size_t(b)]].push_back(next[size_t(b)]);
      result.logits[rows[size_t(b)]].push_back(std::move(l));
    }
    past += step;
    step = 1;
    ids = next;
  }
}
} // namespace

template <typename Session>
GenerateResult generate(Session &session,
                        const std::vector<std::vector<int64_t>> &prompts,
                        const GenerateOptions &o) {
  GenerateResult result;
  result.ids.resize(prompts.size());
  result.logits.resize(prompts.size());
  uint64_t rng = o.seed;
  bool sameLength = std::all_of(prompts.begin(), prompts.end(), [&](auto &p) {
    return p.size() == prompts[0].size();
  });
  if (sameLength) {
    std::vector<size_t> all(prompts.size());
    std::iota(all.begin(), all.end(), 0);
    generateBatch(session, prompts, all, o, rng, result);
  } else {
    for (size_t r = 0; r < prompts.size(); ++r)
      generateBatch(session, prompts, {r}, o, rng, result);
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
  GenerateResult result;
  result.ids.resize(prompts.size());
  result.logits.resize(prompts.size());
  for (size_t p = 0; p < prompts.size(); ++p) {
    std::vector<int64_t> seq = prompts[p];
    int64_t P = int64_t(seq.size()), S = P + o.maxNew + 2;
    std::vector<std::vector<Real>> caches(layers, std::vector<Real>(size_t(S * W)));
    int64_t past = 0;
    // Prefill: the main model's first token.
    std::vector<int64_t> step = seq;
    auto out = session.run("decode", decodeArgs(step, 1, P, past, caches, S, W));
    int64_t V = out[0].dim(2);
    auto emit = [&](const Real *row) {
      int64_t t = argmaxRow(row, V);
      result.ids[p].push_back(t);
      result.logits[p].emplace_back(row, row + V);
      seq.push_back(t);
      return t;
    };
    emit(out[0].f + (P - 1) * V);
    past = P;
    ++result.speculative.mainSteps;
    while (int64_t(result.ids[p].size()) < o.maxNew) {
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
      if (choice == draft && int64_t(result.ids[p].size()) < o.maxNew) {
        ++result.speculative.accepted;
        emit(out[0].f + V); // the draft was right: one more token for free
        past += 2;
      } else {
        past += 1; // the draft's cache row is overwritten next step
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
