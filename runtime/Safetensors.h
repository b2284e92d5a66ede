//===- Safetensors.h - read safetensors checkpoints ------------*- C++ -*-===//
//
// A safetensors file is an 8-byte little-endian header length, a JSON header
// {name: {dtype, shape, data_offsets: [begin, end)}, "__metadata__": {...}}
// and the data. Files are mmapped; every header entry is validated (dtype
// known, offsets inside the file and not overlapping, byte size equal to
// shape x dtype) before any tensor is handed out.
//
//===----------------------------------------------------------------------===//
#ifndef DSV3_RUNTIME_SAFETENSORS_H
#define DSV3_RUNTIME_SAFETENSORS_H

#include "runtime/DType.h"

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace dsv3rt {

struct TensorView {
  std::string name;
  std::string file; // for diagnostics
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  const void *data = nullptr;
  size_t bytes = 0;

  int64_t numElements() const;
  std::string shapeString() const;
  /// Element i converted to double (floating and integer dtypes).
  double at(size_t i) const { return loadAsDouble(data, dtype, i); }
};

/// One mmapped .safetensors file.
class SafetensorsFile {
public:
  /// Opens and validates `path`; throws Error naming the file and tensor.
  explicit SafetensorsFile(const std::string &path);
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile &) = delete;
  SafetensorsFile &operator=(const SafetensorsFile &) = delete;

  const std::string &path() const { return path_; }
  const std::map<std::string, TensorView> &tensors() const { return tensors_; }
  const TensorView *find(const std::string &name) const;
  const std::map<std::string, std::string> &metadata() const { return metadata_; }

private:
  std::string path_;
  void *map_ = nullptr;
  size_t size_ = 0;
  std::map<std::string, TensorView> tensors_;
  std::map<std::string, std::string> metadata_;
};

/// The weights of a checkpoint directory (or a single file): one
/// model.safetensors, or shards listed by model.safetensors.index.json.
class WeightStore {
public:
  /// `path` is a directory or a .safetensors file.
  explicit WeightStore(const std::string &path);

  const TensorView *find(const std::string &name) const;
  /// Every tensor name held, sorted.
  std::vector<std::string> names() const;
  const std::string &path() const { return path_; }

private:
  std::string path_;
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::map<std::string, const TensorView *> index_;
};

/// Writes `tensors` as one safetensors file (F32/F64/I64 data from host
/// memory), atomically: a temporary file in the same directory, fsync,
/// rename.
struct OwnedTensor {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  std::vector<uint8_t> data;
};
/// The whole file at `path` (fails naming it when it cannot be read).
std::string readWholeFile(const std::string &path);
/// Stores element `i` of a F32 or BF16 tensor (rounded to nearest even).
void setFloatElement(OwnedTensor &t, size_t i, float value);
void writeSafetensors(const std::string &path,
                      const std::vector<OwnedTensor> &tensors,
                      const std::map<std::string, std::string> &metadata = {});

} // namespace dsv3rt

#endif // DSV3_RUNTIME_SAFETENSORS_H
