//===- Train.cpp - training runs on either backend ------------------------===//
#include "runtime/Train.h"
#include "runtime/Collectives.h"
#include "runtime/Progress.h"

#include <map>

#include "runtime/Error.h"
#include "runtime/Safetensors.h"

#include <nlohmann/json.hpp>

#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstring>
#include <fcntl.h>
#include <fstream>
#include <sys/stat.h>
#include <unistd.h>

namespace dsv3rt {

std::vector<uint32_t> loadTokens(const std::string &path, int64_t vocab) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in)
    fail("{}: cannot open token data", path);
  std::streamsize size = in.tellg();
  if (size % 4 != 0)
    fail("{}: {} bytes is not a whole number of uint32 token ids (a flat "
         "little-endian uint32 array; see docs/training.md)",
         path, size);
  std::vector<uint32_t> tokens(size_t(size / 4));
  in.seekg(0);
  in.read(reinterpret_cast<char *>(tokens.data()), size);
  for (size_t i = 0; i < tokens.size(); ++i)
    if (int64_t(tokens[i]) >= vocab)
      fail("{}: token {} at index {} is outside the vocabulary [0, {})", path,
           tokens[i], i, vocab);
  return tokens;
}

int64_t tokenizeBytes(const std::string &textPath, const std::string &outPath) {
  std::ifstream in(textPath, std::ios::binary);
  if (!in)
    fail("{}: cannot open", textPath);
  std::vector<uint32_t> tokens;
  char c;
  while (in.get(c))
    tokens.push_back(uint32_t(uint8_t(c)));
  writeTokens(tokens, outPath);
  return int64_t(tokens.size());
}

void writeTokens(const std::vector<uint32_t> &tokens, const std::string &outPath) {
  std::string tmp = outPath + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary);
    out.write(reinterpret_cast<const char *>(tokens.data()),
              std::streamsize(tokens.size() * 4));
    if (!out)
      fail("{}: write failed", tmp);
  }
  if (std::rename(tmp.c_str(), outPath.c_str()) != 0)
    fail("{}: cannot rename to {}: {}", tmp, outPath, std::strerror(errno));
}

double scheduledLr(const TrainOptions &o, int64_t step) {
  if (o.warmup > 0 && step <= o.warmup)
    return o.lr * double(step) / double(o.warmup);
  double span = double(std::max<int64_t>(1, o.steps - o.warmup));
  double progress = std::min(1.0, double(step - o.warmup) / span);
  double minLr = o.lr * o.minLrRatio;
  return minLr + (o.lr - minLr) * 0.5 * (1.0 + std::cos(M_PI * progress));
}

namespace {
void fsyncDir(const std::string &dir) {
  int fd = ::open(dir.c_str(), O_RDONLY);
  if (fd >= 0) {
    ::fsync(fd);
    ::close(fd);
  }
}

/// The layer a tensor name belongs to ("model.layers.3." -> "layer 3").
std::string layerOf(const std::string &name) {
  const std::string key = "model.layers.";
  if (name.rfind(key, 0) != 0 &&
      name.find("." + key) == std::string::npos)
    return "no layer";
  size_t at = name.find(key);
  size_t end = name.find('.', at + key.size());
  return "layer " + name.substr(at + key.size(), end - at - key.size());
}
} // namespace

template <typename Session>
void saveCheckpoint(Session &session, const std::string &dir, const TrainState &state) {
  using Real = typename Session::Real;
  pullParams(session);
  Communicator &comm = processCommunicator();
  // Expert parallelism: rank 0 gathers every rank's experts (and their
  // AdamW moments), so the checkpoint is the whole model under hub names,
  // the same file a single-rank run writes.
  std::map<std::string, std::vector<Real>> gathered;
  for (const ParamInfo &p : session.artifact().params) {
    if (p.allCheckpoint.empty())
      continue;
    const std::vector<Real> &mine = session.paramData().at(p.name);
    std::vector<uint8_t> bytes(mine.size() * sizeof(Real));
    std::memcpy(bytes.data(), mine.data(), bytes.size());
    std::vector<std::vector<uint8_t>> all = comm.allGather(bytes, "checkpoint " + p.name);
    // The first expert-parallel group (ranks 0 .. shards-1) holds every
    // shard once; the other groups hold the same values.
    all.resize(size_t(p.expertShards));
    std::vector<Real> &whole = gathered[p.name];
    for (const std::vector<uint8_t> &b : all) {
      const Real *v = reinterpret_cast<const Real *>(b.data());
      whole.insert(whole.end(), v, v + b.size() / sizeof(Real));
    }
  }
  if (comm.rank() != 0)
    return;
  std::string parent = dir.substr(0, dir.find_last_of('/'));
  std::string tmpDir = dir + ".tmp", old = dir + ".old";
  // Leftovers of a save that was killed (kill -9, power loss) are removed
  // first: a stale `.old` would block the replacing rename below.
  for (const std::string &d : {tmpDir, old}) {
    std::remove((d + "/model.safetensors.tmp").c_str());
    std::remove((d + "/model.safetensors").c_str());
    ::rmdir(d.c_str());
  }
  if (mkdir(tmpDir.c_str(), 0755) != 0 && errno != EEXIST)
    fail("{}: cannot create: {}", tmpDir, std::strerror(errno));
  std::vector<OwnedTensor> tensors;
  for (const ParamInfo &p : session.artifact().params) {
    auto g = gathered.find(p.name);
    const std::vector<Real> &data =
        g != gathered.end() ? g->second : session.paramData().at(p.name);
    const std::vector<std::string> &names = p.everyCheckpoint();
    size_t per = data.size() / names.size();
    std::vector<int64_t> each = p.tensorShape();
    for (size_t c = 0; c < names.size(); ++c) {
      OwnedTensor t;
      t.name = names[c];
      t.dtype = p.dtype == DType::BF16 ? DType::BF16 : DType::F32;
      t.shape = each;
      t.data.resize(per * dtypeSize(t.dtype));
      for (size_t i = 0; i < per; ++i)
        setFloatElement(t, i, float(data[c * per + i]));
      tensors.push_back(std::move(t));
    }
  }
  try {
    writeSafetensors(tmpDir + "/model.safetensors", tensors,
                     {{"format", "pt"},
                      {"dsv3_step", std::to_string(state.step)},
                      {"dsv3_data_position", std::to_string(state.dataPosition)}});
    fsyncDir(tmpDir);
  } catch (const Error &e) {
    // Disk full, quota, I/O error: nothing half-written stays behind, and
    // the checkpoints already on disk are untouched.
    std::remove((tmpDir + "/model.safetensors.tmp").c_str());
    std::remove((tmpDir + "/model.safetensors").c_str());
    ::rmdir(tmpDir.c_str());
    fail("{}; checkpoint {} not written (earlier checkpoints are intact)", e.what(), dir);
  }
  // Replace an older checkpoint of the same step only after the new one is
  // complete on disk.
  bool hadOld = std::rename(dir.c_str(), old.c_str()) == 0;
  if (std::rename(tmpDir.c_str(), dir.c_str()) != 0)
    fail("{}: cannot rename to {}: {}", tmpDir, dir, std::strerror(errno));
  if (hadOld) {
    std::remove((old + "/model.safetensors").c_str());
    ::rmdir(old.c_str());
  }
  fsyncDir(parent.empty() ? "." : parent);
}

TrainState checkpointState(const std::string &dir) {
  SafetensorsFile f(dir + "/model.safetensors");
  auto get = [&](const char *key) -> int64_t {
    auto it = f.metadata().find(key);
    if (it == f.metadata().end())
      fail("{}/model.safetensors: not a training checkpoint (no {} in its "
           "metadata)",
           dir, key);
    return std::stoll(it->second);
  };
  return {get("dsv3_step"), get("dsv3_data_position")};
}

template <typename Session>
void train(Session &session, const TrainOptions &o, TrainState state) {
  using Real = typename Session::Real;
  const Artifact &art = session.artifact();
  const Entry &entry = art.entry("train_step");
  int64_t vocab = 0;
  if (const ParamInfo *emb = art.param("model.embed_tokens.weight"))
    vocab = emb->shape.at(0);
  std::vector<uint32_t> tokens = loadTokens(o.dataPath, vocab);
  if (int64_t(tokens.size()) < o.seq)
    fail("{}: {} tokens are fewer than one sequence of {}", o.dataPath,
         tokens.size(), o.seq);
  std::FILE *metrics = nullptr;
  if (!o.metricsPath.empty() && processCommunicator().rank() == 0) { // rank 0 writes them
    metrics = std::fopen(o.metricsPath.c_str(), state.step > 0 ? "a" : "w");
    if (!metrics)
      fail("{}: cannot open for writing: {}", o.metricsPath, std::strerror(errno));
  }
  std::vector<std::string> countParams, lossParts;
  {
    std::ifstream in(art.dir + "/manifest.json");
    nlohmann::json m = nlohmann::json::parse(in);
    const nlohmann::json &e = m["entries"]["train_step"];
    for (auto &n : e.value("expert_count_params", nlohmann::json::array()))
      countParams.push_back(n.get<std::string>());
    for (auto &n : e.value("loss_parts", nlohmann::json::array()))
      lossParts.push_back(n.get<std::string>());
  }
  std::vector<int64_t> ids(size_t(o.batch * o.seq));
  // Data parallelism: every rank reads the same global batch and trains on
  // its share of the sequences (equal shares: the ranks' mean losses then
  // average to the global batch's).
  Communicator &comm = processCommunicator();
  int64_t ranks = comm.size();
  if (o.batch % ranks != 0)
    fail("--batch {} does not split evenly over {} data-parallel ranks", o.batch, ranks);
  int64_t local = o.batch / ranks;
  std::vector<int64_t> mine(size_t(local * o.seq));
  bool leader = comm.rank() == 0;
  auto runStart = std::chrono::steady_clock::now();
  int64_t firstStep = state.step;
  // --skip-nonfinite: the state before each step, and the lr scale.
  std::map<std::string, std::vector<Real>> before;
  double lrScale = 1.0;
  int64_t skippedInARow = 0, finiteSinceSkip = 0;
  while (state.step < o.steps) {
    auto start = std::chrono::steady_clock::now();
    for (int64_t b = 0; b < o.batch; ++b) {
      if (state.dataPosition + o.seq > int64_t(tokens.size()))
        state.dataPosition = 0;
      for (int64_t t = 0; t < o.seq; ++t)
        ids[size_t(b * o.seq + t)] = tokens[size_t(state.dataPosition + t)];
      state.dataPosition += o.seq;
    }
    int64_t step = state.step + 1;
    Real lr = Real(scheduledLr(o, step) * lrScale);
    if (o.skipNonFinite > 0) {
      pullParams(session);
      before = session.paramData();
    }
    std::copy(ids.begin() + ptrdiff_t(comm.rank() * local * o.seq),
              ids.begin() + ptrdiff_t((comm.rank() + 1) * local * o.seq), mine.begin());
    std::vector<HostTensor<Real>> out =
        session.run("train_step", trainStepArgs(mine, local, o.seq, step, lr));
    double loss = out[0].f[0], norm = out[1].f[0];
    double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if ((!std::isfinite(loss) || !std::isfinite(norm)) && o.skipNonFinite > 0 &&
        skippedInARow + 1 < o.skipNonFinite) {
      // Undo the update in place (the session's tensors point into these
      // vectors), drop the batch, halve the lr scale, and go on.
      for (auto &[name, data] : session.paramData())
        std::copy(before.at(name).begin(), before.at(name).end(), data.begin());
      pushParams(session);
      ++skippedInARow;
      finiteSinceSkip = 0;
      lrScale *= 0.5;
      logEvent("skipped_step",
               fmt::format("step {}: loss {} / gradient norm {} not finite: update undone, "
                           "batch skipped, lr scale now {:g} ({} in a row)",
                           step, loss, norm, lrScale, skippedInARow),
               {{"step", step}, {"lr_scale", lrScale}, {"in_a_row", skippedInARow}});
      continue;
    }
    if (!std::isfinite(loss) || !std::isfinite(norm)) {
      if (o.skipNonFinite > 0)
        fail("step {}: {} consecutive steps with a non-finite loss or gradient norm "
             "(--skip-nonfinite {}); stopped without saving this step",
             step, skippedInARow + 1, o.skipNonFinite);
      std::string culprit = "none of the parameters (the loss alone)";
      pullParams(session);
      for (const ParamInfo &p : art.params) {
        const std::vector<Real> &d = session.paramData().at(p.name);
        for (size_t i = 0; i < d.size(); ++i)
          if (!std::isfinite(double(d[i]))) {
            size_t c = p.stacked ? i / (d.size() / p.checkpoint.size()) : 0;
            culprit = fmt::format("{} ({})", p.checkpoint[c], layerOf(p.checkpoint[c]));
            goto found;
          }
      }
    found:
      fail("step {}: the loss ({}) or the gradient norm ({}) is not finite; "
           "first non-finite tensor after the update: {}. Stopped without "
           "saving this step.",
           step, loss, norm, culprit);
    }
    state.step = step;
    skippedInARow = 0;
    if (lrScale < 1.0 && ++finiteSinceSkip >= 50) {
      lrScale = std::min(1.0, lrScale * 2);
      finiteSinceSkip = 0;
    }
    nlohmann::json line{{"step", step},
                        {"loss", loss},
                        {"grad_norm", norm},
                        {"lr", double(lr)},
                        {"tokens_per_s", double(o.batch * o.seq) / seconds}};
    nlohmann::json load = nlohmann::json::object(),
                   imbalance = nlohmann::json::object(),
                   utilization = nlohmann::json::object(),
                   routingEntropy = nlohmann::json::object();
    for (size_t l = 0; l < countParams.size() && l + 2 < out.size(); ++l) {
      const HostTensor<Real> &c = out[l + 2];
      std::vector<int64_t> counts(c.i, c.i + c.numel());
      double mean = 0, mx = 0, used = 0, total = 0, entropy = 0;
      for (int64_t n : counts) {
        mean += double(n);
        mx = std::max(mx, double(n));
        used += n > 0;
        total += double(n);
      }
      for (int64_t n : counts)
        if (n > 0)
          entropy -= double(n) / total * std::log(double(n) / total);
      mean /= double(counts.size());
      std::string layer = layerOf(countParams[l]);
      load[layer] = counts;
      imbalance[layer] = mean > 0 ? mx / mean : 0.0;
      utilization[layer] = used / double(counts.size());
      routingEntropy[layer] = entropy / std::log(double(counts.size()));
    }
    for (size_t i = 0; i < lossParts.size(); ++i) {
      const HostTensor<Real> &part = out[2 + countParams.size() + i];
      line[lossParts[i]] = double(part.f[0]);
    }
    line["expert_load"] = load;
    line["load_imbalance"] = imbalance;
    line["expert_utilization"] = utilization;
    line["routing_entropy"] = routingEntropy;
    if (metrics) {
      std::fputs((line.dump() + "\n").c_str(), metrics);
      std::fflush(metrics);
    }
    // Progress: the step line with an ETA from this run's mean step time
    // (stdout), or with --log-json the step's record (stderr).
    double perStep = std::chrono::duration<double>(std::chrono::steady_clock::now() -
                                                   runStart)
                         .count() /
                     double(step - firstStep);
    double eta = perStep * double(o.steps - step);
    if (leader && logMode() == LogMode::Json) {
      nlohmann::json record = line;
      record["eta_s"] = eta;
      record["steps"] = o.steps;
      logEvent("step", "", record);
    } else if (leader && !o.quiet && logMode() != LogMode::Quiet) {
      fmt::print("step {:>5}/{}  loss {:.4f}  grad_norm {:.3f}  lr {:.2e}  {:.0f} tok/s  "
                 "ETA {}\n",
                 step, o.steps, loss, norm, double(lr), double(o.batch * o.seq) / seconds,
                 humanSeconds(eta));
      std::fflush(stdout);
    }
    bool last = state.step == o.steps;
    if (!o.saveDir.empty() && (last || (o.saveEvery > 0 && state.step % o.saveEvery == 0)))
      saveCheckpoint(session, fmt::format("{}/step-{:06d}", o.saveDir, state.step), state);
  }
  if (metrics)
    std::fclose(metrics);
}

template void train(HostSession<float> &, const TrainOptions &, TrainState);
template void train(HostSession<double> &, const TrainOptions &, TrainState);
template void saveCheckpoint(HostSession<float> &, const std::string &, const TrainState &);
template void saveCheckpoint(HostSession<double> &, const std::string &, const TrainState &);
#ifdef DSV3_HAVE_CUDA
template void train(cuda::CudaSession &, const TrainOptions &, TrainState);
template void saveCheckpoint(cuda::CudaSession &, const std::string &, const TrainState &);
#endif

} // namespace dsv3rt
