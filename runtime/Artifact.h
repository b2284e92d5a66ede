//===- Artifact.h - load a compiled artifact's manifest ----------*- C++ -*-===//
//
// The runtime side of the compiler/runtime contract (docs/artifact.md).
// Loading validates everything it reads; an error names the file and the
// JSON path of the offending field.
//
//===----------------------------------------------------------------------===//
#ifndef DSV3_RUNTIME_ARTIFACT_H
#define DSV3_RUNTIME_ARTIFACT_H

#include "runtime/DType.h"

#include <nlohmann/json.hpp>

#include <map>
#include <optional>
#include <string>
#include <vector>

namespace dsv3rt {

/// The manifest version this runtime reads.
constexpr int kArtifactVersion = 1;

/// A value a launch reads or writes: an arena buffer of the entry, a
/// parameter, or an argument of the entry.
struct ValueRef {
  enum class Kind { Buffer, Param, Arg } kind = Kind::Buffer;
  int64_t index = 0;  // buffer id or argument index
  std::string param;  // parameter name
};

struct BufferInfo {
  DType dtype = DType::F32;
  std::vector<int64_t> shape;    // -1: dynamic
  std::vector<int64_t> maxShape; // at the compile-time maxima
  int64_t offset = 0, bytes = 0;
};

struct ArgInfo {
  DType dtype = DType::F32;
  std::vector<int64_t> shape; // empty: a scalar
};

struct Launch {
  std::string kernel;
  /// The IR op it was lowered from (its location: a checkpoint prefix such
  /// as `model.layers.3.mlp`); empty in older manifests.
  std::string loc;
  std::vector<ValueRef> inputs, outputs;
  nlohmann::json params;
};

struct Entry {
  std::string name;
  std::vector<ArgInfo> args;
  std::vector<BufferInfo> buffers;
  std::vector<Launch> launches;
  std::vector<ValueRef> results;
  /// gradients entry: result i + 1 is dLoss/d(resultParams[i]).
  std::vector<std::string> resultParams;
  int64_t arenaBytes = 0;
  /// The most tokens (batch x sequence of the ids) one call may carry
  /// (dsv3c --max-tokens); 0: max-batch x max-seq, bounded by the buffers.
  int64_t maxTokens = 0;
};

struct ParamInfo {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  std::string role;
  bool stacked = false;
  /// Checkpoint tensor names: one, or one per expert when stacked (every
  /// rank's experts when sharded, until Artifact::selectRank).
  std::vector<std::string> checkpoint;
  /// Expert-parallel ranks the stack is split over (dsv3c --ep): `shape`
  /// is one rank's slice.
  int64_t expertShards = 1;
  /// dsv3c --ep-placement: rank r's slot j holds expert
  /// placement[r * shape[0] + j] (empty: contiguous).
  std::vector<int64_t> placement;
  /// After Artifact::selectRank: every rank's tensor names (checkpoints
  /// gather the shards; init writes them all); empty otherwise.
  std::vector<std::string> allCheckpoint;
  /// Role "weight_scale" (dsv3c --quantize fp8): the FP8 parameter whose
  /// block scales this holds.
  std::string scales;
  const std::vector<std::string> &everyCheckpoint() const {
    return allCheckpoint.empty() ? checkpoint : allCheckpoint;
  }

  /// The shape of each checkpoint tensor (one expert's when stacked).
  std::vector<int64_t> tensorShape() const {
    std::vector<int64_t> each = shape;
    if (stacked && !each.empty())
      each.erase(each.begin());
    return each;
  }
  int64_t tensorElements() const {
    int64_t n = 1;
    for (int64_t d : tensorShape())
      n *= d;
    return n;
  }
};

struct Artifact {
  std::string dir;
  int version = 0;
  std::string modelType;
  /// The block size of FP8 checkpoints' weight scales (the config's
  /// quantization_config.weight_block_size; DeepSeek-V3's 128 x 128 when the
  /// config has none).
  int64_t fp8BlockRows = 128, fp8BlockCols = 128;
  /// dsv3c --quantize: "fp8" (FP8 weights and GEMMs), or empty.
  std::string quantization;
  std::vector<ParamInfo> params;
  std::map<std::string, Entry> entries;
  /// Expert- and data-parallel ranks the program was compiled for (dsv3c
  /// --ep / --dp; 1 and 1: one process).
  int64_t expertParallel = 1, dataParallel = 1;
  /// Compiled with dsv3c --ep / --dp (even over one rank: its collectives
  /// then run with world size 1).
  bool partitioned = false;
  bool parallel() const { return partitioned; }

  /// Loads and validates DIR/manifest.json.
  static Artifact load(const std::string &dir);
  const Entry &entry(const std::string &name) const;
  bool hasEntry(const std::string &name) const { return entries.count(name); }
  const ParamInfo *param(const std::string &name) const;
  /// Narrows every sharded parameter's checkpoint tensors to the experts of
  /// `rank` (contiguous blocks), as that rank's process binds them.
  void selectRank(int rank);
};

std::string shapeString(const std::vector<int64_t> &shape);

/// The value a freshly initialised parameter holds everywhere, when it is a
/// constant (dsv3-run init, random GPU weights): 1 for norms and the MTP
/// layer's 1-D projection norms, 0 for router correction biases and
/// optimizer state; nullopt for the normal(0, std) matrices.
std::optional<float> initConstant(const ParamInfo &param);

/// Fails when an argument of `entry` shaped `shape` (its index `arg`) is a
/// token array ([batch, seq] i64) holding more tokens than the entry's
/// budget (dsv3c --max-tokens): its buffers hold no more.
void checkTokenBudget(const Entry &entry, size_t arg, const std::vector<int64_t> &shape);

/// A buffer's only reader: the launch and which of its inputs the buffer
/// is (launch null when the buffer is read by several launches or inputs,
/// by none, or is one of the entry's results).
struct SoleReader {
  const Launch *launch = nullptr;
  int input = -1;
};
/// Per buffer of `entry` (by id). Backends use it to store an activation in
/// the form its one reader converts it to first.
std::vector<SoleReader> soleReaders(const Entry &entry);

} // namespace dsv3rt

#endif // DSV3_RUNTIME_ARTIFACT_H
