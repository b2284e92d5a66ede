//===- Collectives.h - ranks and the collectives between them ---*- C++ -*-===//
//
// One process per rank. A process learns its rank from the launcher's
// environment (torchrun's RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR /
// MASTER_PORT, or Slurm's SLURM_PROCID / SLURM_NTASKS / SLURM_LOCALID),
// connects to every other rank over TCP (rank 0 at MASTER_ADDR:MASTER_PORT
// hands out the addresses) and exchanges bytes with them. The host
// backend's collectives (expert-parallel all-to-all-v, all-reduce) run on
// these sockets; the CUDA backend uses them to bootstrap NCCL.
//
// Every collective is numbered and named on the wire, so ranks that call
// different collectives fail with both names instead of exchanging garbage;
// a rank that dies closes its sockets, and the others fail at once naming
// it; a rank that hangs makes the others fail after the timeout
// (DSV3_COLLECTIVE_TIMEOUT seconds, default 300). Nothing waits forever.
//
//===----------------------------------------------------------------------===//
#ifndef DSV3_RUNTIME_COLLECTIVES_H
#define DSV3_RUNTIME_COLLECTIVES_H

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace dsv3rt {

/// Where this process sits among the ranks of a run.
struct DistEnv {
  int rank = 0, size = 1, localRank = 0;
  std::string masterAddr;
  int masterPort = 0;
  /// Which variables it came from ("torchrun", "slurm", or "" when alone).
  std::string source;
};

/// Reads the launcher's environment; size 1 when none is set. Malformed or
/// inconsistent values are errors naming the variable.
DistEnv distEnvFromEnvironment();

/// The ranks of a run and byte exchanges between them.
class Communicator {
public:
  virtual ~Communicator() = default;
  int rank() const { return rank_; }
  int size() const { return size_; }
  /// This rank's index on its machine (LOCAL_RANK / SLURM_LOCALID): the
  /// GPU a CUDA session uses.
  int localRank() const { return localRank_; }

  /// All-to-all-v: `send[r]` goes to rank r (send[rank()] to itself);
  /// returns what every rank sent this one, indexed by source. `op` names
  /// the collective in messages and on the wire.
  std::vector<std::vector<uint8_t>> exchange(const std::vector<std::vector<uint8_t>> &send,
                                             const std::string &op) {
    return exchangeWithin(allRanks(), send, op);
  }
  /// The same among `members` (ranks in increasing order, this one among
  /// them): send[i] goes to members[i]; returns what each member sent.
  /// Every member must make the same call; the other ranks do not take part.
  virtual std::vector<std::vector<uint8_t>>
  exchangeWithin(const std::vector<int> &members, const std::vector<std::vector<uint8_t>> &send,
                 const std::string &op) = 0;
  std::vector<int> allRanks() const {
    std::vector<int> all(static_cast<size_t>(size_));
    for (int r = 0; r < size_; ++r)
      all[size_t(r)] = r;
    return all;
  }
  /// The ranks of this rank's group when the world is cut into groups of
  /// `n` consecutive ranks ("blocks": expert-parallel groups) or into `n`
  /// groups strided by size/n... (`strided`: the ranks holding the same
  /// expert shard in every expert-parallel group).
  std::vector<int> blockOf(int n) const;
  std::vector<int> stridedOf(int n) const;

  /// Every rank's `mine`, indexed by rank.
  std::vector<std::vector<uint8_t>> allGather(const std::vector<uint8_t> &mine,
                                              const std::string &op);
  /// Elementwise sum over the ranks (or `members`), added in rank order on
  /// every rank, so all of them get bit-identical results.
  void allReduceSum(double *data, size_t n, const std::string &op);
  void allReduceSum(float *data, size_t n, const std::string &op);
  void allReduceSum(int64_t *data, size_t n, const std::string &op);
  void allReduceSum(const std::vector<int> &members, float *data, size_t n, const std::string &op);
  void allReduceSum(const std::vector<int> &members, double *data, size_t n,
                    const std::string &op);
  void allReduceSum(const std::vector<int> &members, int64_t *data, size_t n,
                    const std::string &op);
  /// Rank 0's bytes on every rank.
  std::vector<uint8_t> broadcast(const std::vector<uint8_t> &fromRoot, const std::string &op);
  void barrier(const std::string &op) { allGather({}, op); }

protected:
  int rank_ = 0, size_ = 1, localRank_ = 0;
};

/// What this process's expert-parallel exchanges moved (both backends), for
/// the communication-volume report: every ep_dispatch / ep_combine adds its
/// bytes sent to other ranks and to itself.
struct ExchangeStats {
  int64_t exchanges = 0;
  int64_t bytesToPeers = 0, bytesToSelf = 0;
  double seconds = 0; // wall time inside the exchanges (host: sockets; cuda: NCCL, synchronised)
};
ExchangeStats &exchangeStats();
/// Counts one exchange's bytes into exchangeStats() and, when it goes out
/// of scope, the time it took (both backends' exchanges).
class CountedExchange {
public:
  CountedExchange(int64_t bytesToPeers, int64_t bytesToSelf);
  ~CountedExchange();

private:
  double startSeconds_;
};
/// "12 all-to-all-v exchanges, 3.1 MB to other ranks (258 KB each), 1.2 MB
/// kept local, 4.1 ms (0.76 GB/s)"; empty when none ran.
std::string exchangeSummary();

/// The ranks one collective runs among (a kernel's `group`): the whole world
/// ("data"), this rank's expert-parallel group of `ranks` consecutive ranks
/// ("expert"), or the `ranks` ranks holding the same expert shard, one per
/// expert-parallel group ("expert_data").
struct RankGroup {
  Communicator *comm = nullptr;
  std::vector<int> members;
  int index = 0; // this rank's position in members
  int size() const { return int(members.size()); }
  std::vector<std::vector<uint8_t>> exchange(const std::vector<std::vector<uint8_t>> &send,
                                             const std::string &op) const {
    return comm->exchangeWithin(members, send, op);
  }
};
/// `kind` is "data", "expert" or "expert_data"; `ranks` the group's size,
/// which must divide the world (an error names `what` otherwise).
RankGroup rankGroup(Communicator &c, const std::string &kind, int64_t ranks,
                    const std::string &what);

/// The communicator of this process: a single rank until
/// initProcessCommunicator() connects it to the others.
Communicator &processCommunicator();

/// Connects to the ranks of `env` (no-op for size 1). Called once, by the
/// tool's main, before any artifact is run.
void initProcessCommunicator(const DistEnv &env);

/// The seconds a collective (or the bootstrap) waits for a peer.
double collectiveTimeoutSeconds();

/// Fault injection for the lost-rank tests, called by every communicator
/// (sockets, NCCL) with its running count of collectives: DSV3_FAULT=
/// "kill:R:N" makes rank R kill itself (SIGKILL, as an OOM kill or a node
/// failure would) at its N-th collective; "hang:R:N" makes it stop there.
void injectFault(int rank, uint64_t seq);

} // namespace dsv3rt

#endif // DSV3_RUNTIME_COLLECTIVES_H
