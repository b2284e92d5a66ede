//===- Train.h - training runs on either backend ------------------*- C++ -*-===//
#ifndef DSV3_RUNTIME_TRAIN_H
#define DSV3_RUNTIME_TRAIN_H

#include "runtime/host/HostSession.h"
#ifdef DSV3_HAVE_CUDA
#include "runtime/cuda/CudaSession.h"
#endif

#include <cstdint>
#include <string>
#include <vector>

namespace dsv3rt {

/// Token data: a flat array of little-endian uint32 token ids (no header),
/// conventionally `*.tokens`. `loadTokens` checks the size and that every
/// id is below `vocab` (naming the first offender and its offset).
std::vector<uint32_t> loadTokens(const std::string &path, int64_t vocab);
/// Converts a text file to token data, one token per byte (the byte-level
/// vocabulary of the tiny models). Returns the token count.
int64_t tokenizeBytes(const std::string &textPath, const std::string &outPath);
/// Writes uint32 token ids (the data format of train) atomically.
void writeTokens(const std::vector<uint32_t> &tokens, const std::string &outPath);

struct TrainOptions {
  std::string dataPath;
  int64_t steps = 100, batch = 4, seq = 64;
  double lr = 1e-3, minLrRatio = 0.1;
  int64_t warmup = 10;
  std::string saveDir;
  int64_t saveEvery = 0; // 0: only at the end
  std::string metricsPath; // JSONL; empty: none
  bool quiet = false;
  /// 0: a non-finite loss or gradient norm stops the run. N > 0: the step
  /// is undone (weights and optimizer state restored from before it), its
  /// batch skipped and the learning-rate scale halved (it grows back x2
  /// after 50 finite steps, up to 1); N consecutive such steps stop the run.
  int64_t skipNonFinite = 0;
};

/// Where a run starts: step 0 and data position 0, or a checkpoint's.
struct TrainState {
  int64_t step = 0;
  int64_t dataPosition = 0;
};

/// The arguments of a train_step call, as views of the caller's memory:
/// ids [B, T], the optimizer step (1-based) and the learning rate.
template <typename Real>
std::vector<HostTensor<Real>> trainStepArgs(std::vector<int64_t> &ids, int64_t B, int64_t T,
                                            int64_t &step, Real &lr) {
  std::vector<HostTensor<Real>> args(3);
  args[0].isInt = true;
  args[0].shape = {B, T};
  args[0].i = ids.data();
  args[0].capacity = ids.size();
  args[1].isInt = true;
  args[1].i = &step;
  args[1].capacity = 1;
  args[2].f = &lr;
  args[2].capacity = 1;
  return args;
}

/// The learning rate of step `step` (1-based): linear warmup to `lr`, then
/// cosine decay to lr * minLrRatio at `steps`.
double scheduledLr(const TrainOptions &o, int64_t step);

/// The parameters' host copies (paramData()) brought up to date with the
/// session's (a no-op on the host; a download from the GPU), and written
/// back after the host copies were changed.
template <typename Real> void pullParams(HostSession<Real> &) {}
template <typename Real> void pushParams(HostSession<Real> &) {}
#ifdef DSV3_HAVE_CUDA
inline void pullParams(cuda::CudaSession &s) { s.downloadParams(); }
inline void pushParams(cuda::CudaSession &s) { s.uploadParams(); }
#endif

/// Runs the artifact's train_step from `state` to `o.steps`, writing
/// metrics and checkpoints. Stops with an Error naming the step and the
/// first non-finite tensor when the loss or gradient norm is NaN/Inf.
/// Session: HostSession<float|double> or cuda::CudaSession.
template <typename Session>
void train(Session &session, const TrainOptions &o, TrainState state);

/// Writes the session's parameters (model weights under their checkpoint
/// names, optimizer moments, routing biases) and the run state to
/// DIR/model.safetensors, atomically (temporary file, fsync, rename).
template <typename Session>
void saveCheckpoint(Session &session, const std::string &dir, const TrainState &state);

/// Reads the run state a checkpoint directory's metadata holds.
TrainState checkpointState(const std::string &dir);

} // namespace dsv3rt

#endif // DSV3_RUNTIME_TRAIN_H
