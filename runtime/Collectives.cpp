//===- Collectives.cpp - TCP ranks for the host collectives ---------------===//
#include "runtime/Collectives.h"

#include "runtime/Error.h"

#include <arpa/inet.h>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <thread>
#include <unistd.h>

namespace dsv3rt {

namespace {

using Clock = std::chrono::steady_clock;

std::string envOr(const char *name) {
  const char *v = std::getenv(name);
  return v ? std::string(v) : std::string();
}

int envInt(const char *name, int lo, int hi) {
  std::string v = envOr(name);
  char *end = nullptr;
  errno = 0;
  long x = std::strtol(v.c_str(), &end, 10);
  if (v.empty() || *end || errno || x < lo || x > hi)
    fail("environment variable {}='{}' must be an integer in [{}, {}]", name, v, lo, hi);
  return int(x);
}

/// What precedes every message: which collective it belongs to, so ranks
/// that disagree about the order fail with both names.
struct Header {
  uint32_t magic = 0x33565344; // "DSV3"
  uint32_t source = 0;
  uint64_t seq = 0;
  uint64_t bytes = 0;
  char op[40] = {};
};
constexpr uint32_t kMagic = 0x33565344;
/// Marks a notice in place of a collective's message: the sender lost a
/// rank (its number and what happened follow) and is about to exit. Without
/// it, a rank that sees this one close first would blame this one.
constexpr uint32_t kLostMagic = 0x54534f4c; // "LOST"

/// The TCP mesh: one socket to every other rank.
class SocketCommunicator : public Communicator {
public:
  explicit SocketCommunicator(const DistEnv &env);
  ~SocketCommunicator() override {
    for (int fd : fds_)
      if (fd >= 0)
        close(fd);
  }
  std::vector<std::vector<uint8_t>> exchangeWithin(const std::vector<int> &members,
                                                   const std::vector<std::vector<uint8_t>> &send,
                                                   const std::string &op) override;

private:
  /// Fails naming `peer` as lost, after telling the other ranks (those whose
  /// stream from this one is between messages: `midMessage[r]` false).
  [[noreturn]] void lost(int peer, const std::string &op, const std::string &why,
                         const std::vector<bool> &midMessage);
  /// Fails with the loss rank `from` reported in a notice whose header
  /// `h` was just read from it (the payload still to read), relaying it.
  [[noreturn]] void reportedLost(int from, const Header &h, const std::vector<bool> &midMessage);
  /// Sends every other rank but `lostRank` a notice: `text` says when and how.
  void tellOthers(int lostRank, const std::string &text, const std::vector<bool> &midMessage);
  std::vector<int> fds_; // by rank; -1 for this one
  uint64_t seq_ = 0;
};

void setNonBlocking(int fd) {
  int flags = fcntl(fd, F_GETFL, 0);
  if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0)
    fail("fcntl(O_NONBLOCK): {}", std::strerror(errno));
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

/// Sends all `n` bytes by `deadline`: 0 when sent, else the errno of the
/// send that failed, or ETIMEDOUT.
int sendBy(int fd, const void *data, size_t n, Clock::time_point deadline) {
  const uint8_t *p = static_cast<const uint8_t *>(data);
  while (n) {
    ssize_t k = ::send(fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (k > 0) {
      p += k;
      n -= size_t(k);
      continue;
    }
    if (k < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
      return errno;
    if (Clock::now() > deadline)
      return ETIMEDOUT;
    pollfd pfd{fd, POLLOUT, 0};
    poll(&pfd, 1, 100);
  }
  return 0;
}

/// Blocking helpers for the bootstrap (a deadline on each).
void sendAll(int fd, const void *data, size_t n, Clock::time_point deadline,
             const std::string &what) {
  int err = sendBy(fd, data, n, deadline);
  if (err == ETIMEDOUT)
    fail("{}: timed out sending", what);
  if (err)
    fail("{}: send: {}", what, std::strerror(err));
}

void recvAll(int fd, void *data, size_t n, Clock::time_point deadline, const std::string &what) {
  uint8_t *p = static_cast<uint8_t *>(data);
  while (n) {
    ssize_t k = ::recv(fd, p, n, MSG_DONTWAIT);
    if (k > 0) {
      p += k;
      n -= size_t(k);
      continue;
    }
    if (k == 0)
      fail("{}: the peer closed the connection", what);
    if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
      fail("{}: recv: {}", what, std::strerror(errno));
    if (Clock::now() > deadline)
      fail("{}: timed out after {:.0f} s waiting (is every rank started? "
           "DSV3_COLLECTIVE_TIMEOUT sets the limit)",
           what, collectiveTimeoutSeconds());
    pollfd pfd{fd, POLLIN, 0};
    poll(&pfd, 1, 100);
  }
}

int listenOn(uint16_t port, uint16_t &bound) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0)
    fail("socket: {}", std::strerror(errno));
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_ANY);
  a.sin_port = htons(port);
  if (bind(fd, reinterpret_cast<sockaddr *>(&a), sizeof a) < 0)
    fail("cannot listen on port {}: {}", port, std::strerror(errno));
  if (listen(fd, 256) < 0)
    fail("listen: {}", std::strerror(errno));
  socklen_t len = sizeof a;
  getsockname(fd, reinterpret_cast<sockaddr *>(&a), &len);
  bound = ntohs(a.sin_port);
  setNonBlocking(fd);
  return fd;
}

int acceptOne(int listenFd, Clock::time_point deadline, const std::string &what,
              uint32_t *peerAddr) {
  for (;;) {
    sockaddr_in a{};
    socklen_t len = sizeof a;
    int fd = accept(listenFd, reinterpret_cast<sockaddr *>(&a), &len);
    if (fd >= 0) {
      setNonBlocking(fd);
      if (peerAddr)
        *peerAddr = a.sin_addr.s_addr;
      return fd;
    }
    if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
      fail("{}: accept: {}", what, std::strerror(errno));
    if (Clock::now() > deadline)
      fail("{}: timed out after {:.0f} s waiting for the other ranks to connect (is every "
           "rank started?)",
           what, collectiveTimeoutSeconds());
    pollfd pfd{listenFd, POLLIN, 0};
    poll(&pfd, 1, 100);
  }
}

/// Connects to addr:port, retrying until the deadline (the peer may not
/// be listening yet).
int connectTo(uint32_t addr, uint16_t port, Clock::time_point deadline, const std::string &what) {
  for (;;) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
      fail("socket: {}", std::strerror(errno));
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = addr;
    a.sin_port = htons(port);
    if (connect(fd, reinterpret_cast<sockaddr *>(&a), sizeof a) == 0) {
      setNonBlocking(fd);
      return fd;
    }
    int err = errno;
    close(fd);
    if (Clock::now() > deadline)
      fail("{}: cannot connect after {:.0f} s: {}", what, collectiveTimeoutSeconds(),
           std::strerror(err));
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

uint32_t resolve(const std::string &host) {
  addrinfo hints{}, *res = nullptr;
  hints.ai_family = AF_INET;
  hints.ai_socktype = SOCK_STREAM;
  int rc = getaddrinfo(host.c_str(), nullptr, &hints, &res);
  if (rc != 0 || !res)
    fail("MASTER_ADDR '{}': cannot resolve: {}", host, gai_strerror(rc));
  uint32_t addr = reinterpret_cast<sockaddr_in *>(res->ai_addr)->sin_addr.s_addr;
  freeaddrinfo(res);
  return addr;
}

} // namespace

void injectFault(int rank, uint64_t seq) {
  static const std::string spec = envOr("DSV3_FAULT");
  if (spec.empty())
    return;
  char kind[8] = {};
  int r = -1;
  unsigned long long n = 0;
  if (std::sscanf(spec.c_str(), "%7[a-z]:%d:%llu", kind, &r, &n) != 3 ||
      (std::string(kind) != "kill" && std::string(kind) != "hang"))
    fail("DSV3_FAULT='{}' must be kill:RANK:N or hang:RANK:N", spec);
  if (r != rank || n != seq)
    return;
  if (std::string(kind) == "kill")
    raise(SIGKILL);
  for (;;)
    pause();
}

namespace {

struct Hello {
  uint32_t magic = kMagic;
  int32_t rank = 0;
  int32_t size = 0;
  uint32_t port = 0;
};

SocketCommunicator::SocketCommunicator(const DistEnv &env) {
  rank_ = env.rank;
  size_ = env.size;
  localRank_ = env.localRank;
  fds_.assign(size_t(size_), -1);
  auto deadline = Clock::now() + std::chrono::milliseconds(
                                     int64_t(collectiveTimeoutSeconds() * 1000));
  std::string where = fmt::format("rank {} of {}: bootstrap via {}:{}", rank_, size_,
                                  env.masterAddr, env.masterPort);
  // Every rank but 0 listens for the ranks after it; rank 0 listens on the
  // master port and hands out the table of addresses.
  std::vector<uint32_t> addrs(static_cast<size_t>(size_), 0);
  std::vector<uint32_t> ports(static_cast<size_t>(size_), 0);
  auto checkHello = [&](const Hello &h, const std::string &from) {
    if (h.magic != kMagic)
      fail("{}: {} is not a dsv3 rank (bad handshake)", where, from);
    if (h.size != size_)
      fail("{}: {} (rank {}) says the world has {} ranks, this rank was started with {}", where,
           from, h.rank, h.size, size_);
    if (h.rank < 0 || h.rank >= size_)
      fail("{}: {} claims rank {} (outside [0, {}))", where, from, h.rank, size_);
  };
  if (rank_ == 0) {
    uint16_t bound = 0;
    int lfd = listenOn(uint16_t(env.masterPort), bound);
    for (int k = 1; k < size_; ++k) {
      uint32_t peerAddr = 0;
      int fd = acceptOne(lfd, deadline, where, &peerAddr);
      Hello h;
      recvAll(fd, &h, sizeof h, deadline, where);
      checkHello(h, "a connecting process");
      if (fds_[size_t(h.rank)] >= 0)
        fail("{}: two processes claim rank {}", where, h.rank);
      fds_[size_t(h.rank)] = fd;
      addrs[size_t(h.rank)] = peerAddr;
      ports[size_t(h.rank)] = h.port;
    }
    close(lfd);
    for (int r = 1; r < size_; ++r) {
      sendAll(fds_[size_t(r)], addrs.data(), addrs.size() * 4, deadline, where);
      sendAll(fds_[size_t(r)], ports.data(), ports.size() * 4, deadline, where);
    }
  } else {
    uint16_t myPort = 0;
    int lfd = listenOn(0, myPort);
    int master = connectTo(resolve(env.masterAddr), uint16_t(env.masterPort), deadline, where);
    Hello h;
    h.rank = rank_;
    h.size = size_;
    h.port = myPort;
    sendAll(master, &h, sizeof h, deadline, where);
    recvAll(master, addrs.data(), addrs.size() * 4, deadline, where + " (the address table)");
    recvAll(master, ports.data(), ports.size() * 4, deadline, where + " (the address table)");
    fds_[0] = master;
    // Connect to the ranks before this one (but 0), accept the ones after.
    for (int r = 1; r < rank_; ++r) {
      int fd = connectTo(addrs[size_t(r)], uint16_t(ports[size_t(r)]), deadline,
                         fmt::format("{} (connecting to rank {})", where, r));
      sendAll(fd, &h, sizeof h, deadline, where);
      fds_[size_t(r)] = fd;
    }
    for (int k = rank_ + 1; k < size_; ++k) {
      int fd = acceptOne(lfd, deadline, where, nullptr);
      Hello p;
      recvAll(fd, &p, sizeof p, deadline, where);
      checkHello(p, "a connecting process");
      if (p.rank <= rank_ || fds_[size_t(p.rank)] >= 0)
        fail("{}: unexpected connection from rank {}", where, p.rank);
      fds_[size_t(p.rank)] = fd;
    }
    close(lfd);
  }
  barrier("bootstrap");
}

void SocketCommunicator::tellOthers(int lostRank, const std::string &text,
                                    const std::vector<bool> &midMessage) {
  Header h;
  h.magic = kLostMagic;
  h.source = uint32_t(rank_);
  h.seq = seq_;
  h.bytes = sizeof(int32_t) + text.size();
  std::vector<uint8_t> msg(sizeof h + h.bytes);
  std::memcpy(msg.data(), &h, sizeof h);
  int32_t who = lostRank;
  std::memcpy(msg.data() + sizeof h, &who, sizeof who);
  std::memcpy(msg.data() + sizeof h + sizeof who, text.data(), text.size());
  for (int r = 0; r < size_; ++r)
    if (r != rank_ && r != lostRank && fds_[size_t(r)] >= 0 && !midMessage[size_t(r)])
      // Best effort: a rank that is gone or not reading is given up on.
      sendBy(fds_[size_t(r)], msg.data(), msg.size(),
             Clock::now() + std::chrono::milliseconds(500));
}

void SocketCommunicator::lost(int peer, const std::string &op, const std::string &why,
                              const std::vector<bool> &midMessage) {
  std::string text = fmt::format("during {} #{}: {}", op, seq_, why);
  tellOthers(peer, text, midMessage);
  fail("rank {}: lost rank {} {}", rank_, peer, text);
}

void SocketCommunicator::reportedLost(int from, const Header &h,
                                      const std::vector<bool> &midMessage) {
  std::vector<uint8_t> body(h.bytes);
  int32_t who = -1;
  try {
    if (h.bytes < sizeof who || h.bytes > 4096)
      fail("a malformed notice");
    recvAll(fds_[size_t(from)], body.data(), body.size(),
            Clock::now() + std::chrono::seconds(2), "the notice");
  } catch (const Error &) {
    lost(from, std::string(h.op, strnlen(h.op, sizeof h.op)),
         "it exited while reporting a lost rank", midMessage);
  }
  std::memcpy(&who, body.data(), sizeof who);
  std::string text(body.begin() + sizeof who, body.end());
  if (who >= 0 && who < size_ && who != rank_) {
    // Pass it on: a rank the reporter could not tell hears it from here.
    tellOthers(who, text, midMessage);
    fail("rank {}: lost rank {} {} (reported by rank {})", rank_, who, text, from);
  }
  fail("rank {}: rank {} reported a malformed lost rank {}", rank_, from, who);
}

std::vector<std::vector<uint8_t>>
SocketCommunicator::exchangeWithin(const std::vector<int> &members,
                                   const std::vector<std::vector<uint8_t>> &sendByMember,
                                   const std::string &op) {
  DSV3_CHECK(sendByMember.size() == members.size(), "{} buffers for {} members",
             sendByMember.size(), members.size());
  // Every rank makes the same sequence of calls (SPMD), each within its own
  // group, so the numbers on the wire agree within any group.
  ++seq_;
  injectFault(rank_, seq_);
  std::vector<bool> member(static_cast<size_t>(size_), false);
  std::vector<std::vector<uint8_t>> send(static_cast<size_t>(size_));
  for (size_t i = 0; i < members.size(); ++i) {
    DSV3_CHECK(members[i] >= 0 && members[i] < size_, "member {}", members[i]);
    member[size_t(members[i])] = true;
    send[size_t(members[i])] = sendByMember[i];
  }
  DSV3_CHECK(member[size_t(rank_)], "rank {} is not in its own group", rank_);
  std::vector<std::vector<uint8_t>> recv(static_cast<size_t>(size_));
  recv[size_t(rank_)] = send[size_t(rank_)];
  struct Peer {
    std::vector<uint8_t> out; // header + payload
    size_t sent = 0;
    Header in;
    size_t got = 0; // bytes of header + payload received
    bool done() const { return got >= sizeof(Header) && got == sizeof(Header) + in.bytes; }
  };
  std::vector<Peer> peers(static_cast<size_t>(size_));
  for (int r = 0; r < size_; ++r) {
    if (r == rank_ || !member[size_t(r)])
      continue;
    Header h;
    h.source = uint32_t(rank_);
    h.seq = seq_;
    h.bytes = send[size_t(r)].size();
    std::snprintf(h.op, sizeof h.op, "%s", op.c_str());
    Peer &p = peers[size_t(r)];
    p.out.resize(sizeof h + h.bytes);
    std::memcpy(p.out.data(), &h, sizeof h);
    if (h.bytes)
      std::memcpy(p.out.data() + sizeof h, send[size_t(r)].data(), h.bytes);
  }
  // The ranks whose stream from this one stops inside a message: a notice
  // sent them now would be read as its bytes.
  auto midMessage = [&] {
    std::vector<bool> mid(static_cast<size_t>(size_), false);
    for (int r = 0; r < size_; ++r) {
      const Peer &p = peers[size_t(r)];
      mid[size_t(r)] = p.sent > 0 && p.sent < p.out.size();
    }
    return mid;
  };
  auto timeout = std::chrono::milliseconds(int64_t(collectiveTimeoutSeconds() * 1000));
  auto deadline = Clock::now() + timeout;
  for (;;) {
    std::vector<pollfd> pfds;
    std::vector<int> who;
    for (int r = 0; r < size_; ++r) {
      if (r == rank_ || !member[size_t(r)])
        continue;
      Peer &p = peers[size_t(r)];
      short events = 0;
      if (p.sent < p.out.size())
        events |= POLLOUT;
      if (!p.done())
        events |= POLLIN;
      if (events) {
        pfds.push_back({fds_[size_t(r)], events, 0});
        who.push_back(r);
      }
    }
    if (pfds.empty())
      break;
    int n = poll(pfds.data(), pfds.size(), 200);
    if (n < 0 && errno != EINTR)
      fail("rank {}: poll during {}: {}", rank_, op, std::strerror(errno));
    if (Clock::now() > deadline) {
      std::string waiting;
      for (int r : who)
        waiting += (waiting.empty() ? "" : ", ") + std::to_string(r);
      fail("rank {}: {} #{} timed out after {:.0f} s waiting for rank(s) {} (a rank hung or "
           "stopped calling collectives; DSV3_COLLECTIVE_TIMEOUT sets the limit)",
           rank_, op, seq_, collectiveTimeoutSeconds(), waiting);
    }
    for (size_t k = 0; k < pfds.size(); ++k) {
      int r = who[k];
      Peer &p = peers[size_t(r)];
      int fd = pfds[k].fd;
      if (pfds[k].revents & POLLOUT) {
        ssize_t m = ::send(fd, p.out.data() + p.sent, p.out.size() - p.sent,
                           MSG_NOSIGNAL | MSG_DONTWAIT);
        if (m < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
          std::string why =
              fmt::format("send failed ({}): it exited or was killed", std::strerror(errno));
          // It may have left a notice naming the rank it lost: read it when
          // its stream is between messages.
          if (p.got == 0 || p.done()) {
            Header h;
            try {
              recvAll(fd, &h, sizeof h, Clock::now() + std::chrono::milliseconds(200), why);
            } catch (const Error &) {
              lost(r, op, why, midMessage());
            }
            if (h.magic == kLostMagic && h.source == uint32_t(r))
              reportedLost(r, h, midMessage());
          }
          lost(r, op, why, midMessage());
        }
        if (m > 0)
          p.sent += size_t(m);
      }
      if (pfds[k].revents & (POLLIN | POLLHUP | POLLERR)) {
        uint8_t *dst;
        size_t want;
        if (p.got < sizeof(Header)) {
          dst = reinterpret_cast<uint8_t *>(&p.in) + p.got;
          want = sizeof(Header) - p.got;
        } else {
          dst = recv[size_t(r)].data() + (p.got - sizeof(Header));
          want = sizeof(Header) + p.in.bytes - p.got;
        }
        ssize_t m = ::recv(fd, dst, want, MSG_DONTWAIT);
        if (m == 0)
          lost(r, op, "it closed its connection: it exited or was killed", midMessage());
        if (m < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
          lost(r, op,
               fmt::format("recv failed ({}): it exited or was killed", std::strerror(errno)),
               midMessage());
        if (m > 0) {
          p.got += size_t(m);
          if (p.got == sizeof(Header)) {
            if (p.in.magic == kLostMagic && p.in.source == uint32_t(r))
              reportedLost(r, p.in, midMessage());
            if (p.in.magic != kMagic || p.in.source != uint32_t(r))
              fail("rank {}: corrupted message from rank {} during {}", rank_, r, op);
            p.in.op[sizeof p.in.op - 1] = 0;
            if (p.in.seq != seq_ || op.compare(0, sizeof p.in.op - 1, p.in.op) != 0)
              fail("rank {}: ranks disagree about the collectives: this rank is in {} #{}, "
                   "rank {} sent {} #{} (the ranks ran different programs or inputs)",
                   rank_, op, seq_, r, p.in.op, p.in.seq);
            recv[size_t(r)].resize(p.in.bytes);
          }
        }
      }
    }
  }
  std::vector<std::vector<uint8_t>> byMember;
  for (int r : members)
    byMember.push_back(std::move(recv[size_t(r)]));
  return byMember;
}

std::unique_ptr<Communicator> &processSlot() {
  static std::unique_ptr<Communicator> c;
  return c;
}

class SingleRank : public Communicator {
public:
  std::vector<std::vector<uint8_t>> exchangeWithin(const std::vector<int> &,
                                                   const std::vector<std::vector<uint8_t>> &send,
                                                   const std::string &) override {
    return send;
  }
};

template <typename T>
void reduceSum(Communicator &c, const std::vector<int> &members, T *data, size_t n,
               const std::string &op) {
  std::vector<uint8_t> mine(n * sizeof(T));
  if (n)
    std::memcpy(mine.data(), data, mine.size());
  std::vector<std::vector<uint8_t>> all =
      c.exchangeWithin(members, std::vector<std::vector<uint8_t>>(members.size(), mine), op);
  std::vector<T> sum(n, T(0));
  for (size_t i = 0; i < members.size(); ++i) {
    if (all[i].size() != mine.size())
      fail("rank {}: {}: rank {} contributed {} bytes, this rank {}", c.rank(), op, members[i],
           all[i].size(), mine.size());
    const T *v = reinterpret_cast<const T *>(all[i].data());
    for (size_t i = 0; i < n; ++i)
      sum[i] += v[i];
  }
  if (n)
    std::memcpy(data, sum.data(), n * sizeof(T));
}

} // namespace

DistEnv distEnvFromEnvironment() {
  DistEnv e;
  if (!envOr("WORLD_SIZE").empty() || !envOr("RANK").empty()) {
    e.source = "torchrun";
    e.size = envInt("WORLD_SIZE", 1, 1 << 20);
    e.rank = envInt("RANK", 0, e.size - 1);
    e.localRank = envOr("LOCAL_RANK").empty() ? 0 : envInt("LOCAL_RANK", 0, e.size - 1);
  } else if (!envOr("SLURM_NTASKS").empty() && !envOr("SLURM_PROCID").empty()) {
    e.source = "slurm";
    e.size = envInt("SLURM_NTASKS", 1, 1 << 20);
    e.rank = envInt("SLURM_PROCID", 0, e.size - 1);
    e.localRank = envOr("SLURM_LOCALID").empty() ? 0 : envInt("SLURM_LOCALID", 0, e.size - 1);
  } else {
    return e;
  }
  if (e.size > 1) {
    e.masterAddr = envOr("MASTER_ADDR");
    if (e.masterAddr.empty())
      fail("{} ranks ({} environment): MASTER_ADDR is not set (the host of rank 0)", e.size,
           e.source);
    e.masterPort = envInt("MASTER_PORT", 1, 65535);
  }
  return e;
}

ExchangeStats &exchangeStats() {
  static ExchangeStats stats;
  return stats;
}

static double nowSeconds() {
  return std::chrono::duration<double>(Clock::now().time_since_epoch()).count();
}

CountedExchange::CountedExchange(int64_t bytesToPeers, int64_t bytesToSelf)
    : startSeconds_(nowSeconds()) {
  ExchangeStats &s = exchangeStats();
  ++s.exchanges;
  s.bytesToPeers += bytesToPeers;
  s.bytesToSelf += bytesToSelf;
}

CountedExchange::~CountedExchange() { exchangeStats().seconds += nowSeconds() - startSeconds_; }

std::string exchangeSummary() {
  const ExchangeStats &s = exchangeStats();
  if (!s.exchanges)
    return "";
  auto mb = [](double b) {
    return b >= 1e9 ? fmt::format("{:.2f} GB", b / 1e9)
           : b >= 1e6 ? fmt::format("{:.2f} MB", b / 1e6)
                      : fmt::format("{:.1f} KB", b / 1e3);
  };
  return fmt::format("{} all-to-all-v exchanges, {} to other ranks ({} each), {} kept local, "
                     "{:.1f} ms ({:.2f} GB/s to other ranks)",
                     s.exchanges, mb(double(s.bytesToPeers)),
                     mb(double(s.bytesToPeers) / double(s.exchanges)), mb(double(s.bytesToSelf)),
                     s.seconds * 1e3,
                     s.seconds > 0 ? double(s.bytesToPeers) / s.seconds / 1e9 : 0.0);
}

double collectiveTimeoutSeconds() {
  std::string v = envOr("DSV3_COLLECTIVE_TIMEOUT");
  if (v.empty())
    return 300;
  char *end = nullptr;
  double s = std::strtod(v.c_str(), &end);
  if (*end || !(s > 0))
    fail("DSV3_COLLECTIVE_TIMEOUT='{}' must be a positive number of seconds", v);
  return s;
}

Communicator &processCommunicator() {
  std::unique_ptr<Communicator> &c = processSlot();
  if (!c)
    c = std::make_unique<SingleRank>();
  return *c;
}

void initProcessCommunicator(const DistEnv &env) {
  if (env.size <= 1)
    return;
  processSlot() = std::make_unique<SocketCommunicator>(env);
}

std::vector<std::vector<uint8_t>> Communicator::allGather(const std::vector<uint8_t> &mine,
                                                          const std::string &op) {
  return exchange(std::vector<std::vector<uint8_t>>(size_t(size_), mine), op);
}

void Communicator::allReduceSum(double *data, size_t n, const std::string &op) {
  reduceSum(*this, allRanks(), data, n, op);
}
void Communicator::allReduceSum(float *data, size_t n, const std::string &op) {
  reduceSum(*this, allRanks(), data, n, op);
}
void Communicator::allReduceSum(int64_t *data, size_t n, const std::string &op) {
  reduceSum(*this, allRanks(), data, n, op);
}
void Communicator::allReduceSum(const std::vector<int> &members, float *data, size_t n,
                                const std::string &op) {
  reduceSum(*this, members, data, n, op);
}
void Communicator::allReduceSum(const std::vector<int> &members, double *data, size_t n,
                                const std::string &op) {
  reduceSum(*this, members, data, n, op);
}
void Communicator::allReduceSum(const std::vector<int> &members, int64_t *data, size_t n,
                                const std::string &op) {
  reduceSum(*this, members, data, n, op);
}

RankGroup rankGroup(Communicator &c, const std::string &kind, int64_t ranks,
                    const std::string &what) {
  if (ranks < 1 || c.size() % ranks != 0 || (kind == "data" && ranks != c.size()))
    fail("{}: the artifact was compiled for {} {} ranks but this process is one of {} (run "
         "it with dsv3-run launch --nproc N, N the artifact's data-parallel ranks)",
         what, ranks, kind == "data" ? "data-parallel" : "expert-parallel", c.size());
  RankGroup g;
  g.comm = &c;
  if (kind == "data")
    g.members = c.allRanks();
  else if (kind == "expert")
    g.members = c.blockOf(int(ranks));
  else if (kind == "expert_data")
    g.members = c.stridedOf(int(ranks));
  else
    fail("{}: unknown rank group '{}'", what, kind);
  for (size_t i = 0; i < g.members.size(); ++i)
    if (g.members[i] == c.rank())
      g.index = int(i);
  return g;
}

std::vector<int> Communicator::blockOf(int n) const {
  DSV3_CHECK(n >= 1 && size_ % n == 0, "groups of {} in {} ranks", n, size_);
  std::vector<int> m;
  for (int i = 0; i < n; ++i)
    m.push_back(rank_ / n * n + i);
  return m;
}

std::vector<int> Communicator::stridedOf(int n) const {
  DSV3_CHECK(n >= 1 && size_ % n == 0, "{} strided ranks in {}", n, size_);
  int stride = size_ / n;
  std::vector<int> m;
  for (int i = 0; i < n; ++i)
    m.push_back(rank_ % stride + i * stride);
  return m;
}

std::vector<uint8_t> Communicator::broadcast(const std::vector<uint8_t> &fromRoot,
                                             const std::string &op) {
  std::vector<std::vector<uint8_t>> send(static_cast<size_t>(size_));
  if (rank_ == 0)
    for (auto &s : send)
      s = fromRoot;
  return exchange(send, op)[0];
}

} // namespace dsv3rt
