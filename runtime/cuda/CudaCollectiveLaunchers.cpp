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
#include "runtime/cuda/Launchers.h"
#include "runtime/cuda/Nccl.h"

#include <chrono>
#include <cstring>

namespace dsv3rt::cuda {

namespace {

Communicator &ranksOf(const std::string &k, const json &p) {
  Communicator &c = processCommunicator();
  int64_t ranks = p.value("ranks", int64_t(0));
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

/// Counts and times one exchange (exchangeStats()).
struct Counted {
  Counted(int64_t toPeers, int64_t toSelf) {
    ExchangeStats &st = exchangeStats();
    ++st.exchanges;
    st.bytesToPeers += toPeers;
    st.bytesToSelf += toSelf;
  }
  ~Counted() {
    exchangeStats().seconds +=
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  }
  std::chrono::steady_clock::time_point start = std::chrono::steady_clock::now();
};

/// ins: rows [R, H] grouped by global expert, counts [E];
/// outs: local rows grouped by local expert, local counts [L], layout [N, L].
void epDispatch(CudaSession &s, const std::string &k, const json &p, Ins &in, Ins &out) {
  DevTensor &rows = *in[0], &counts = *in[1];
  Communicator &c = ranksOf(k, p);
  int64_t N = c.size(), E = counts.dim(0), L = E / N, H = rows.dim(-1), me = c.rank();
  std::vector<int64_t> cnt = download(s, counts, k + ": the expert counts");
  std::vector<int64_t> start(size_t(E + 1), 0);
  for (int64_t e = 0; e < E; ++e)
    start[size_t(e + 1)] = start[size_t(e)] + cnt[size_t(e)];
  if (start[size_t(E)] != rows.dim(0))
    fail("kernel {}: counts sum to {} rows, rows holds {}", k, start[size_t(E)], rows.dim(0));
  std::vector<std::vector<uint8_t>> sendCounts(static_cast<size_t>(N));
  for (int64_t r = 0; r < N; ++r) {
    sendCounts[size_t(r)].resize(size_t(L) * 8);
    std::memcpy(sendCounts[size_t(r)].data(), cnt.data() + r * L, size_t(L) * 8);
  }
  std::vector<std::vector<uint8_t>> got = c.exchange(sendCounts, "ep_dispatch counts");
  std::vector<int64_t> layout(size_t(N * L)), local(size_t(L), 0);
  for (int64_t src = 0; src < N; ++src) {
    if (got[size_t(src)].size() != size_t(L) * 8)
      fail("kernel {}: rank {} sent {} bytes of counts, expected {} experts", k, src,
           got[size_t(src)].size(), L);
    std::memcpy(layout.data() + src * L, got[size_t(src)].data(), size_t(L) * 8);
  }
  int64_t total = 0;
  std::vector<int64_t> fromRank(size_t(N), 0), recvAt(size_t(N), 0);
  for (int64_t src = 0; src < N; ++src) {
    recvAt[size_t(src)] = total;
    for (int64_t l = 0; l < L; ++l) {
      fromRank[size_t(src)] += layout[size_t(src * L + l)];
      local[size_t(l)] += layout[size_t(src * L + l)];
    }
    total += fromRank[size_t(src)];
  }
  if (size_t(total * H) > out[0]->capacity) {
    if (p.contains("capacity"))
      fail("kernel {}: rank {} received {} rows for its experts, more than the {} the plan "
           "holds (dsv3c --ep-capacity {}: that many times the {} rows a rank dispatches); "
           "recompile with a larger --ep-capacity (at most {}, the ranks: the worst case)",
           k, me, total, out[0]->capacity / size_t(H), p["capacity"].dump(), rows.dim(0), N);
    fail("kernel {}: rank {} received {} rows for its experts, more than the {} the plan holds "
         "(recompile with larger --max-batch / --max-seq / --max-tokens)",
         k, me, total, out[0]->capacity / size_t(H));
  }
  setShape(k, *out[0], {total, H});
  setShape(k, *out[1], {L});
  setShape(k, *out[2], {N, L});
  DSV3_CU(s.driver(), memcpyHtoD, k + ": local counts", out[1]->ptr, local.data(),
          size_t(L) * 8);
  DSV3_CU(s.driver(), memcpyHtoD, k + ": layout", out[2]->ptr, layout.data(),
          size_t(N * L) * 8);
  // Receive [source][local expert] into scratch, then regroup by expert.
  CUdeviceptr scratch = s.workspace(size_t(std::max<int64_t>(total, 1) * H) * 4);
  NcclComm &nccl = NcclComm::get();
  int64_t toPeers = 0, toSelf = 0;
  for (int64_t r = 0; r < N; ++r) {
    int64_t bytes = (start[size_t(r * L + L)] - start[size_t(r * L)]) * H * 4;
    (r == me ? toSelf : toPeers) += bytes;
  }
  {
    Counted counted(toPeers, toSelf);
    nccl.begin();
    for (int64_t r = 0; r < N; ++r) {
      int64_t a = start[size_t(r * L)], b = start[size_t(r * L + L)];
      nccl.send(rows.ptr + CUdeviceptr(a * H * 4), size_t((b - a) * H), NcclType::F32, int(r),
                s.stream());
      nccl.recv(scratch + CUdeviceptr(recvAt[size_t(r)] * H * 4),
                size_t(fromRank[size_t(r)] * H), NcclType::F32, int(r), s.stream());
    }
    nccl.end(k);
    nccl.wait(s.stream(), k + " rows");
  }
  int64_t row = 0;
  for (int64_t l = 0; l < L; ++l)
    for (int64_t src = 0; src < N; ++src) {
      int64_t before = 0;
      for (int64_t j = 0; j < l; ++j)
        before += layout[size_t(src * L + j)];
      int64_t n = layout[size_t(src * L + l)];
      copyRows(s, out[0]->ptr + CUdeviceptr(row * H * 4),
               scratch + CUdeviceptr((recvAt[size_t(src)] + before) * H * 4), n, H, k);
      row += n;
    }
}

/// ins: local expert outputs [sum(layout), H], layout [N, L], counts [E];
/// out: the rows this rank dispatched, in its order.
void epCombine(CudaSession &s, const std::string &k, const json &p, Ins &in, Ins &out) {
  DevTensor &y = *in[0], &layoutT = *in[1], &counts = *in[2];
  Communicator &c = ranksOf(k, p);
  int64_t N = c.size(), E = counts.dim(0), L = E / N, H = y.dim(-1), me = c.rank();
  std::vector<int64_t> layout = download(s, layoutT, k + ": the layout");
  std::vector<int64_t> cnt = download(s, counts, k + ": the expert counts");
  // Gather each destination's blocks ([local expert] order) into scratch.
  std::vector<int64_t> at(size_t(L * N), 0), toRank(size_t(N), 0), sendAt(size_t(N), 0);
  int64_t row = 0;
  for (int64_t l = 0; l < L; ++l)
    for (int64_t dst = 0; dst < N; ++dst) {
      at[size_t(l * N + dst)] = row;
      row += layout[size_t(dst * L + l)];
      toRank[size_t(dst)] += layout[size_t(dst * L + l)];
    }
  if (row != y.dim(0))
    fail("kernel {}: the layout covers {} rows, the expert outputs hold {}", k, row, y.dim(0));
  CUdeviceptr scratch = s.workspace(size_t(std::max<int64_t>(row, 1) * H) * 4);
  int64_t off = 0;
  for (int64_t dst = 0; dst < N; ++dst) {
    sendAt[size_t(dst)] = off;
    for (int64_t l = 0; l < L; ++l) {
      int64_t n = layout[size_t(dst * L + l)];
      copyRows(s, scratch + CUdeviceptr(off * H * 4), y.ptr + CUdeviceptr(at[size_t(l * N + dst)] * H * 4),
               n, H, k);
      off += n;
    }
  }
  int64_t total = 0;
  std::vector<int64_t> fromRank(size_t(N), 0), recvAt(size_t(N), 0);
  for (int64_t r = 0; r < N; ++r) {
    recvAt[size_t(r)] = total;
    for (int64_t l = 0; l < L; ++l)
      fromRank[size_t(r)] += cnt[size_t(r * L + l)];
    total += fromRank[size_t(r)];
  }
  setShape(k, *out[0], {total, H});
  NcclComm &nccl = NcclComm::get();
  int64_t toPeers = 0, toSelf = 0;
  for (int64_t r = 0; r < N; ++r)
    (r == me ? toSelf : toPeers) += toRank[size_t(r)] * H * 4;
  Counted counted(toPeers, toSelf);
  nccl.begin();
  for (int64_t r = 0; r < N; ++r) {
    nccl.send(scratch + CUdeviceptr(sendAt[size_t(r)] * H * 4), size_t(toRank[size_t(r)] * H),
              NcclType::F32, int(r), s.stream());
    nccl.recv(out[0]->ptr + CUdeviceptr(recvAt[size_t(r)] * H * 4),
              size_t(fromRank[size_t(r)] * H), NcclType::F32, int(r), s.stream());
  }
  nccl.end(k);
  nccl.wait(s.stream(), k + " rows");
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
