//===- HostCollectiveKernels.cpp - expert-parallel exchanges on the host --===//
//
// The host kernels of dsv3.ep_dispatch / dsv3.ep_combine: the row
// permutations around an all-to-all-v over the process's communicator
// (runtime/Collectives.h). Rows are moved, never summed, so an
// expert-parallel run computes exactly what the single-rank run does.
//
//===----------------------------------------------------------------------===//
#include "runtime/Collectives.h"
#include "runtime/ExpertPlacement.h"
#include "runtime/host/HostMath.h"

#include <chrono>
#include <cstring>

namespace dsv3rt::host {

namespace {

/// The exchanges run within this rank's expert-parallel group (all ranks
/// unless --dp is a multiple of --ep).
RankGroup expertGroup(const std::string &k, const json &p) {
  return rankGroup(processCommunicator(), "expert", geti(k, p, "ranks"), "kernel " + k);
}

/// Counts an exchange's bytes (to the other ranks, to this one) and times it.
CountedExchange counted(const std::vector<std::vector<uint8_t>> &send, int self) {
  int64_t toPeers = 0, toSelf = 0;
  for (size_t r = 0; r < send.size(); ++r)
    (int(r) == self ? toSelf : toPeers) += int64_t(send[r].size());
  return CountedExchange(toPeers, toSelf);
}

template <typename Real> std::vector<uint8_t> bytesOf(const Real *p, int64_t n) {
  std::vector<uint8_t> b(size_t(n) * sizeof(Real));
  if (n)
    std::memcpy(b.data(), p, b.size());
  return b;
}

/// ins: rows [R, H] grouped by global expert, counts [E];
/// outs: local rows grouped by local slot, local counts [S], layout [N, S].
template <typename Real>
void epDispatch(const std::string &k, const json &p, Ins<Real> &in, Ins<Real> &out) {
  T<Real> &rows = *in[0], &counts = *in[1];
  RankGroup c = expertGroup(k, p);
  int64_t N = c.size(), E = counts.dim(0), H = rows.dim(-1);
  ExpertPlacement pl = ExpertPlacement::fromParams(p, N, E, k);
  int64_t S = pl.slots;
  std::vector<int64_t> start(size_t(E + 1), 0);
  for (int64_t e = 0; e < E; ++e)
    start[size_t(e + 1)] = start[size_t(e)] + counts.i[e];
  if (start[size_t(E)] != rows.dim(0))
    fail("kernel {}: counts sum to {} rows, rows holds {}", k, start[size_t(E)], rows.dim(0));
  // Rank r gets, slot by slot, its copy's chunk of the slot's expert.
  std::vector<std::vector<uint8_t>> sendCounts(static_cast<size_t>(N)),
      sendRows(static_cast<size_t>(N));
  for (int64_t r = 0; r < N; ++r) {
    std::vector<int64_t> n(static_cast<size_t>(S));
    for (int64_t j = 0; j < S; ++j) {
      int64_t e = pl.expertAt(r, j);
      auto [lo, hi] = pl.chunk(r, j, counts.i[e]);
      n[size_t(j)] = hi - lo;
      const uint8_t *src = reinterpret_cast<const uint8_t *>(rows.f + (start[size_t(e)] + lo) * H);
      sendRows[size_t(r)].insert(sendRows[size_t(r)].end(), src,
                                 src + size_t((hi - lo) * H) * sizeof(Real));
    }
    sendCounts[size_t(r)] = bytesOf(n.data(), S);
  }
  std::vector<std::vector<uint8_t>> gotCounts = c.exchange(sendCounts, "ep_dispatch counts");
  std::vector<std::vector<uint8_t>> gotRows;
  {
    CountedExchange timing = counted(sendRows, c.index);
    gotRows = c.exchange(sendRows, "ep_dispatch rows");
  }
  setShape(k, *out[2], {N, S});
  setShape(k, *out[1], {S});
  int64_t total = 0;
  for (int64_t s = 0; s < N; ++s) {
    if (gotCounts[size_t(s)].size() != size_t(S) * sizeof(int64_t))
      fail("kernel {}: rank {} sent {} bytes of counts, expected {} slots", k, s,
           gotCounts[size_t(s)].size(), S);
    std::memcpy(out[2]->i + s * S, gotCounts[size_t(s)].data(), size_t(S) * sizeof(int64_t));
    int64_t n = 0;
    for (int64_t j = 0; j < S; ++j)
      n += out[2]->i[s * S + j];
    if (gotRows[size_t(s)].size() != size_t(n * H) * sizeof(Real))
      fail("kernel {}: rank {} sent {} bytes of rows, its counts say {} rows of {}", k, s,
           gotRows[size_t(s)].size(), n, H);
    total += n;
  }
  checkReceived(k, p, c.comm->rank(), total, H, rows.dim(0), out[0]->capacity);
  setShape(k, *out[0], {total, H});
  // Regroup from [source][slot] to [slot][source].
  int64_t row = 0;
  for (int64_t j = 0; j < S; ++j) {
    out[1]->i[j] = 0;
    for (int64_t s = 0; s < N; ++s) {
      int64_t before = 0;
      for (int64_t q = 0; q < j; ++q)
        before += out[2]->i[s * S + q];
      int64_t n = out[2]->i[s * S + j];
      const Real *src = reinterpret_cast<const Real *>(gotRows[size_t(s)].data()) + before * H;
      std::copy(src, src + n * H, out[0]->f + row * H);
      row += n;
      out[1]->i[j] += n;
    }
  }
}

/// ins: local slots' outputs [sum(layout), H] (ep_dispatch's order),
/// layout [N, S], counts [E]; out: the rows this rank dispatched, in its
/// order (grouped by global expert; an expert's chunks back from its
/// copies, in order).
template <typename Real>
void epCombine(const std::string &k, const json &p, Ins<Real> &in, Ins<Real> &out) {
  T<Real> &y = *in[0], &layout = *in[1], &counts = *in[2];
  RankGroup c = expertGroup(k, p);
  int64_t N = c.size(), E = counts.dim(0), H = y.dim(-1);
  ExpertPlacement pl = ExpertPlacement::fromParams(p, N, E, k);
  int64_t S = pl.slots;
  // Where each (slot, source) block sits in y.
  std::vector<int64_t> at(size_t(S * N), 0);
  int64_t row = 0;
  for (int64_t j = 0; j < S; ++j)
    for (int64_t s = 0; s < N; ++s) {
      at[size_t(j * N + s)] = row;
      row += layout.i[s * S + j];
    }
  if (row != y.dim(0))
    fail("kernel {}: the layout covers {} rows, the expert outputs hold {}", k, row, y.dim(0));
  std::vector<std::vector<uint8_t>> send(static_cast<size_t>(N));
  for (int64_t s = 0; s < N; ++s) {
    std::vector<uint8_t> &b = send[size_t(s)];
    for (int64_t j = 0; j < S; ++j) {
      int64_t n = layout.i[s * S + j];
      const uint8_t *src = reinterpret_cast<const uint8_t *>(y.f + at[size_t(j * N + s)] * H);
      b.insert(b.end(), src, src + size_t(n * H) * sizeof(Real));
    }
  }
  std::vector<std::vector<uint8_t>> got;
  {
    CountedExchange timing = counted(send, c.index);
    got = c.exchange(send, "ep_combine rows");
  }
  std::vector<int64_t> start(size_t(E + 1), 0);
  for (int64_t e = 0; e < E; ++e)
    start[size_t(e + 1)] = start[size_t(e)] + counts.i[e];
  setShape(k, *out[0], {start[size_t(E)], H});
  for (int64_t r = 0; r < N; ++r) {
    int64_t off = 0;
    for (int64_t j = 0; j < S; ++j) {
      int64_t e = pl.expertAt(r, j);
      auto [lo, hi] = pl.chunk(r, j, counts.i[e]);
      if (size_t((off + hi - lo) * H) * sizeof(Real) > got[size_t(r)].size())
        fail("kernel {}: rank {} returned {} bytes, fewer than the rows this rank sent it", k,
             r, got[size_t(r)].size());
      if (hi > lo) // an empty chunk may come with an empty (null) buffer
        std::memcpy(out[0]->f + (start[size_t(e)] + lo) * H,
                    got[size_t(r)].data() + size_t(off * H) * sizeof(Real),
                    size_t((hi - lo) * H) * sizeof(Real));
      off += hi - lo;
    }
    if (size_t(off * H) * sizeof(Real) != got[size_t(r)].size())
      fail("kernel {}: rank {} returned {} bytes, this rank sent it {} rows of {}", k, r,
           got[size_t(r)].size(), off, H);
  }
}

/// dsv3.all_reduce: sum or mean over the ranks (rank order, identical on
/// every rank).
template <typename Real>
void allReduce(const std::string &k, const json &p, Ins<Real> &in, Ins<Real> &out) {
  T<Real> &x = *in[0], &y = *out[0];
  int64_t ranks = geti(k, p, "ranks");
  RankGroup g = rankGroup(processCommunicator(), gets(k, p, "group"), ranks, "kernel " + k);
  Communicator &c = *g.comm;
  setShape(k, y, x.shape);
  int64_t n = x.numel();
  if (x.isInt) {
    std::copy(x.i, x.i + n, y.i);
    c.allReduceSum(g.members, y.i, size_t(n), "all_reduce");
    return;
  }
  std::copy(x.f, x.f + n, y.f);
  c.allReduceSum(g.members, y.f, size_t(n), "all_reduce");
  if (p.value("reduction", std::string("sum")) == "mean")
    for (int64_t i = 0; i < n; ++i)
      y.f[i] /= Real(ranks);
}

} // namespace

template <typename Real>
void addCollectiveKernels(std::map<std::string, HostKernelFn<Real>> &kernels) {
  kernels["ep_dispatch"] = epDispatch<Real>;
  kernels["ep_combine"] = epCombine<Real>;
  kernels["all_reduce"] = allReduce<Real>;
}
template void addCollectiveKernels(std::map<std::string, HostKernelFn<float>> &);
template void addCollectiveKernels(std::map<std::string, HostKernelFn<double>> &);

} // namespace dsv3rt::host
