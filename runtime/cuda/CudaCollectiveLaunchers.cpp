//===- CudaCollectiveLaunchers.cpp - expert-parallel exchanges over NCCL --===//
//
// The CUDA launchers of ep_dispatch / ep_combine / all_reduce: the same
// permutations as the host kernels (HostCollectiveKernels.cpp), with the
// rows moved by NCCL send/recv grouped into one all-to-all-v on the
// session's stream. The per-expert counts (a few hundred bytes) go to the
// host and travel over the host communicator: the transfer sizes must be
// known on the host to post the sends and receives anyway. Each exchange
// is waited for (NcclComm::wait: timeout, async errors), so CUDA graphs are
// off for parallel artifacts.
//
//===----------------------------------------------------------------------===//
#include "runtime/Collectives.h"
#include "runtime/ExpertPlacement.h"
#include "runtime/cuda/Launchers.h"
#include "runtime/cuda/Nccl.h"

#include <chrono>
#include <cstring>

namespace dsv3rt::cuda {

namespace {

Communicator &ranksOf(const std::string &k, const json &p) {
  Communicator &c = processCommunicator();
  int64_t ranks = p.value("ranks", int64_t(0));
  if (ranks >= 1 && c.size() % ranks == 0 && c.size() != ranks)
    fail("kernel {}: groups of {} ranks inside {} (dsv3c --dp larger than --ep) run on the "
         "host backend so far; the NCCL path needs one communicator a group",
         k, ranks, c.size());
  if (c.size() != ranks)
    fail("kernel {}: the artifact was compiled for {} ranks but this process is one of {} "
         "(run it with dsv3-run launch --nproc {})",
         k, ranks, c.size(), ranks);
  return c;
}

std::vector<int64_t> download(CudaSession &s, const DevTensor &t, const std::string &what) {
  std::vector<int64_t> v(size_t(t.numel()));
  DSV3_CU(s.driver(), streamSynchronize, what, s.stream());
  if (!v.empty())
    DSV3_CU(s.driver(), memcpyDtoH, what, v.data(), t.ptr, v.size() * 8);
  return v;
}

void copyRows(CudaSession &s, CUdeviceptr dst, CUdeviceptr src, int64_t rows, int64_t H,
              const std::string &what) {
  if (rows > 0)
    DSV3_CU(s.driver(), memcpyDtoDAsync, what, dst, src, size_t(rows * H) * 4, s.stream());
}

/// One all-to-all-v of rows of H floats: rank r gets toRank[r] rows from
/// send + sendAt[r], rank r's fromRank[r] rows land at recv + recvAt[r];
/// counted in exchangeStats() and waited for.
void exchangeRows(CudaSession &s, const std::string &k, int64_t H, CUdeviceptr send,
                  const std::vector<int64_t> &sendAt, const std::vector<int64_t> &toRank,
                  CUdeviceptr recv, const std::vector<int64_t> &recvAt,
                  const std::vector<int64_t> &fromRank) {
  NcclComm &nccl = NcclComm::get();
  int64_t N = int64_t(toRank.size()), me = nccl.rank(), toPeers = 0, toSelf = 0;
  for (int64_t r = 0; r < N; ++r)
    (r == me ? toSelf : toPeers) += toRank[size_t(r)] * H * 4;
  CountedExchange timing(toPeers, toSelf);
  nccl.begin();
  for (int64_t r = 0; r < N; ++r) {
    nccl.send(send + CUdeviceptr(sendAt[size_t(r)] * H * 4), size_t(toRank[size_t(r)] * H),
              NcclType::F32, int(r), s.stream());
    nccl.recv(recv + CUdeviceptr(recvAt[size_t(r)] * H * 4), size_t(fromRank[size_t(r)] * H),
              NcclType::F32, int(r), s.stream());
  }
  nccl.end(k);
  nccl.wait(s.stream(), k + " rows");
}

/// ins: rows [R, H] grouped by global expert, counts [E];
/// outs: local rows grouped by local slot, local counts [S], layout [N, S].
void epDispatch(CudaSession &s, const std::string &k, const json &p, Ins &in, Ins &out) {
  DevTensor &rows = *in[0], &counts = *in[1];
  Communicator &c = ranksOf(k, p);
  int64_t N = c.size(), E = counts.dim(0), H = rows.dim(-1), me = c.rank();
  ExpertPlacement pl = ExpertPlacement::fromParams(p, N, E, k);
  int64_t S = pl.slots;
  std::vector<int64_t> cnt = download(s, counts, k + ": the expert counts");
  std::vector<int64_t> start(size_t(E + 1), 0);
  for (int64_t e = 0; e < E; ++e)
    start[size_t(e + 1)] = start[size_t(e)] + cnt[size_t(e)];
  if (start[size_t(E)] != rows.dim(0))
    fail("kernel {}: counts sum to {} rows, rows holds {}", k, start[size_t(E)], rows.dim(0));
  // What rank r gets: slot by slot, its copy's chunk of the slot's expert.
  std::vector<std::vector<uint8_t>> sendCounts(static_cast<size_t>(N));
  std::vector<int64_t> toRank(size_t(N), 0);
  for (int64_t r = 0; r < N; ++r) {
    std::vector<int64_t> n(static_cast<size_t>(S));
    for (int64_t j = 0; j < S; ++j) {
      auto [lo, hi] = pl.chunk(r, j, cnt[size_t(pl.expertAt(r, j))]);
      n[size_t(j)] = hi - lo;
      toRank[size_t(r)] += hi - lo;
    }
    sendCounts[size_t(r)].resize(size_t(S) * 8);
    std::memcpy(sendCounts[size_t(r)].data(), n.data(), size_t(S) * 8);
  }
  std::vector<std::vector<uint8_t>> got = c.exchange(sendCounts, "ep_dispatch counts");
  std::vector<int64_t> layout(size_t(N * S)), local(size_t(S), 0);
  for (int64_t src = 0; src < N; ++src) {
    if (got[size_t(src)].size() != size_t(S) * 8)
      fail("kernel {}: rank {} sent {} bytes of counts, expected {} slots", k, src,
           got[size_t(src)].size(), S);
    std::memcpy(layout.data() + src * S, got[size_t(src)].data(), size_t(S) * 8);
  }
  int64_t total = 0;
  std::vector<int64_t> fromRank(size_t(N), 0), recvAt(size_t(N), 0);
  for (int64_t src = 0; src < N; ++src) {
    recvAt[size_t(src)] = total;
    for (int64_t j = 0; j < S; ++j) {
      fromRank[size_t(src)] += layout[size_t(src * S + j)];
      local[size_t(j)] += layout[size_t(src * S + j)];
    }
    total += fromRank[size_t(src)];
  }
  checkReceived(k, p, int(me), total, H, rows.dim(0), out[0]->capacity);
  setShape(k, *out[0], {total, H});
  setShape(k, *out[1], {S});
  setShape(k, *out[2], {N, S});
  DSV3_CU(s.driver(), memcpyHtoD, k + ": local counts", out[1]->ptr, local.data(),
          size_t(S) * 8);
  DSV3_CU(s.driver(), memcpyHtoD, k + ": layout", out[2]->ptr, layout.data(),
          size_t(N * S) * 8);
  // Gather each destination's chunks (contiguous for the contiguous split),
  // exchange, then regroup what came in by slot.
  CUdeviceptr sendBuf = s.workspace(size_t(std::max<int64_t>(rows.dim(0), 1) * H) * 4);
  CUdeviceptr scratch = s.workspace(size_t(std::max<int64_t>(total, 1) * H) * 4);
  std::vector<int64_t> sendAt(size_t(N), 0);
  int64_t off = 0;
  for (int64_t r = 0; r < N; ++r) {
    sendAt[size_t(r)] = off;
    for (int64_t j = 0; j < S; ++j) {
      int64_t e = pl.expertAt(r, j);
      auto [lo, hi] = pl.chunk(r, j, cnt[size_t(e)]);
      copyRows(s, sendBuf + CUdeviceptr(off * H * 4),
               rows.ptr + CUdeviceptr((start[size_t(e)] + lo) * H * 4), hi - lo, H, k);
      off += hi - lo;
    }
  }
  exchangeRows(s, k, H, sendBuf, sendAt, toRank, scratch, recvAt, fromRank);
  int64_t row = 0;
  for (int64_t j = 0; j < S; ++j)
    for (int64_t src = 0; src < N; ++src) {
      int64_t before = 0;
      for (int64_t q = 0; q < j; ++q)
        before += layout[size_t(src * S + q)];
      int64_t n = layout[size_t(src * S + j)];
      copyRows(s, out[0]->ptr + CUdeviceptr(row * H * 4),
               scratch + CUdeviceptr((recvAt[size_t(src)] + before) * H * 4), n, H, k);
      row += n;
    }
}

/// ins: local slots' outputs [sum(layout), H], layout [N, S], counts [E];
/// out: the rows this rank dispatched, in its order.
void epCombine(CudaSession &s, const std::string &k, const json &p, Ins &in, Ins &out) {
  DevTensor &y = *in[0], &layoutT = *in[1], &counts = *in[2];
  Communicator &c = ranksOf(k, p);
  int64_t N = c.size(), E = counts.dim(0), H = y.dim(-1);
  ExpertPlacement pl = ExpertPlacement::fromParams(p, N, E, k);
  int64_t S = pl.slots;
  std::vector<int64_t> layout = download(s, layoutT, k + ": the layout");
  std::vector<int64_t> cnt = download(s, counts, k + ": the expert counts");
  // Gather each destination's blocks ([slot] order) into scratch.
  std::vector<int64_t> at(size_t(S * N), 0), toRank(size_t(N), 0), sendAt(size_t(N), 0);
  int64_t row = 0;
  for (int64_t j = 0; j < S; ++j)
    for (int64_t dst = 0; dst < N; ++dst) {
      at[size_t(j * N + dst)] = row;
      row += layout[size_t(dst * S + j)];
      toRank[size_t(dst)] += layout[size_t(dst * S + j)];
    }
  if (row != y.dim(0))
    fail("kernel {}: the layout covers {} rows, the expert outputs hold {}", k, row, y.dim(0));
  CUdeviceptr scratch = s.workspace(size_t(std::max<int64_t>(row, 1) * H) * 4);
  int64_t off = 0;
  for (int64_t dst = 0; dst < N; ++dst) {
    sendAt[size_t(dst)] = off;
    for (int64_t j = 0; j < S; ++j) {
      int64_t n = layout[size_t(dst * S + j)];
      copyRows(s, scratch + CUdeviceptr(off * H * 4),
               y.ptr + CUdeviceptr(at[size_t(j * N + dst)] * H * 4), n, H, k);
      off += n;
    }
  }
  std::vector<int64_t> start(size_t(E + 1), 0);
  for (int64_t e = 0; e < E; ++e)
    start[size_t(e + 1)] = start[size_t(e)] + cnt[size_t(e)];
  int64_t total = start[size_t(E)];
  std::vector<int64_t> fromRank(size_t(N), 0), recvAt(size_t(N), 0);
  int64_t at0 = 0;
  for (int64_t r = 0; r < N; ++r) {
    recvAt[size_t(r)] = at0;
    for (int64_t j = 0; j < S; ++j) {
      auto [lo, hi] = pl.chunk(r, j, cnt[size_t(pl.expertAt(r, j))]);
      fromRank[size_t(r)] += hi - lo;
    }
    at0 += fromRank[size_t(r)];
  }
  setShape(k, *out[0], {total, H});
  CUdeviceptr back = s.workspace(size_t(std::max<int64_t>(at0, 1) * H) * 4);
  exchangeRows(s, k, H, scratch, sendAt, toRank, back, recvAt, fromRank);
  // Each chunk to its place in the expert-sorted order.
  for (int64_t r = 0; r < N; ++r) {
    int64_t o = recvAt[size_t(r)];
    for (int64_t j = 0; j < S; ++j) {
      int64_t e = pl.expertAt(r, j);
      auto [lo, hi] = pl.chunk(r, j, cnt[size_t(e)]);
      copyRows(s, out[0]->ptr + CUdeviceptr((start[size_t(e)] + lo) * H * 4),
               back + CUdeviceptr(o * H * 4), hi - lo, H, k);
      o += hi - lo;
    }
  }
}

void allReduce(CudaSession &s, const std::string &k, const json &p, Ins &in, Ins &out) {
  DevTensor &x = *in[0], &y = *out[0];
  ranksOf(k, p);
  setShape(k, y, x.shape);
  bool mean = p.value("reduction", std::string("sum")) == "mean";
  NcclComm &nccl = NcclComm::get();
  nccl.allReduce(x.ptr, y.ptr, size_t(x.numel()), x.isInt ? NcclType::I64 : NcclType::F32,
                 mean, s.stream(), k + " (" + p.value("group", std::string("?")) + ")");
  nccl.wait(s.stream(), k);
}

} // namespace

void addCollectiveLaunchers(std::map<std::string, Launcher> &t) {
  t["ep_dispatch"] = epDispatch;
  t["ep_combine"] = epCombine;
  t["all_reduce"] = allReduce;
}

} // namespace dsv3rt::cuda
