//===- Safetensors.cpp - read and write safetensors ------------------------===//
#include "runtime/Safetensors.h"

#include "runtime/Error.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <fstream>
#include <sstream>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

using json = nlohmann::json;

namespace dsv3rt {

int64_t TensorView::numElements() const {
  int64_t n = 1;
  for (int64_t d : shape)
    n *= d;
  return n;
}

std::string TensorView::shapeString() const {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i)
    s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

SafetensorsFile::SafetensorsFile(const std::string &path) : path_(path) {
  int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0)
    fail("{}: cannot open: {}", path, std::strerror(errno));
  struct stat st;
  if (fstat(fd, &st) != 0) {
    ::close(fd);
    fail("{}: cannot stat: {}", path, std::strerror(errno));
  }
  size_ = static_cast<size_t>(st.st_size);
  if (size_ < 8) {
    ::close(fd);
    fail("{}: truncated safetensors file ({} bytes; the 8-byte header length "
         "is missing)",
         path, size_);
  }
  map_ = mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
  ::close(fd);
  if (map_ == MAP_FAILED) {
    map_ = nullptr;
    fail("{}: cannot mmap: {}", path, std::strerror(errno));
  }
  const auto *bytes = static_cast<const uint8_t *>(map_);
  uint64_t headerLen = 0;
  for (int i = 7; i >= 0; --i)
    headerLen = (headerLen << 8) | bytes[i];
  if (headerLen > size_ - 8)
    fail("{}: header length {} runs past the end of the file ({} bytes): "
         "truncated or not a safetensors file",
         path, headerLen, size_);
  json header;
  try {
    header = json::parse(bytes + 8, bytes + 8 + headerLen);
  } catch (const json::exception &e) {
    fail("{}: header is not valid JSON: {}", path, e.what());
  }
  if (!header.is_object())
    fail("{}: header must be a JSON object", path);
  const uint8_t *data = bytes + 8 + headerLen;
  size_t dataSize = size_ - 8 - headerLen;
  struct Range {
    uint64_t begin, end;
    std::string name;
    bool operator<(const Range &o) const { return begin < o.begin; }
  };
  std::vector<Range> ranges;
  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string &name = it.key();
    const json &e = it.value();
    if (name == "__metadata__") {
      // The format's metadata is a map of strings to strings.
      if (!e.is_object())
        fail("{}: __metadata__ must be an object of strings, got {}", path, e.dump());
      for (auto m = e.begin(); m != e.end(); ++m) {
        if (!m.value().is_string())
          fail("{}: __metadata__ entry '{}' must be a string, got {}", path, m.key(),
               m.value().dump());
        metadata_[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    if (!e.is_object() || !e.contains("dtype") || !e.contains("shape") ||
        !e.contains("data_offsets"))
      fail("{}: tensor '{}': header entry needs dtype, shape and data_offsets",
           path, name);
    TensorView t;
    t.name = name;
    t.file = path;
    if (!e["dtype"].is_string())
      fail("{}: tensor '{}': dtype must be a string", path, name);
    std::optional<DType> dt = parseSafetensorsDType(e["dtype"].get<std::string>());
    if (!dt)
      fail("{}: tensor '{}': unsupported dtype {}", path, name,
           e["dtype"].dump());
    t.dtype = *dt;
    if (!e["shape"].is_array())
      fail("{}: tensor '{}': shape must be an array", path, name);
    uint64_t elements = 1;
    for (const json &d : e["shape"]) {
      if (!d.is_number_integer() || d.get<int64_t>() < 0)
        fail("{}: tensor '{}': shape {} has a non-integer or negative extent",
             path, name, e["shape"].dump());
      t.shape.push_back(d.get<int64_t>());
      if (__builtin_mul_overflow(elements, uint64_t(d.get<int64_t>()), &elements))
        fail("{}: tensor '{}': shape {} overflows", path, name, e["shape"].dump());
    }
    const json &off = e["data_offsets"];
    if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() ||
        !off[1].is_number_unsigned())
      fail("{}: tensor '{}': data_offsets must be two non-negative integers",
           path, name);
    uint64_t begin = off[0].get<uint64_t>(), end = off[1].get<uint64_t>();
    if (begin > end || end > dataSize)
      fail("{}: tensor '{}': data_offsets [{}, {}) lie outside the {} data "
           "bytes (truncated file?)",
           path, name, begin, end, dataSize);
    uint64_t expected = elements * dtypeSize(t.dtype);
    if (end - begin != expected)
      fail("{}: tensor '{}': {} bytes for shape {} of {} (expected {})", path,
           name, end - begin, t.shapeString(), safetensorsName(t.dtype),
           expected);
    t.data = data + begin;
    t.bytes = end - begin;
    ranges.push_back({begin, end, name});
    tensors_.emplace(name, std::move(t));
  }
  std::sort(ranges.begin(), ranges.end());
  for (size_t i = 1; i < ranges.size(); ++i)
    if (ranges[i].begin < ranges[i - 1].end)
      fail("{}: tensors '{}' (bytes [{}, {})) and '{}' (bytes [{}, {})) overlap in the "
           "data section",
           path, ranges[i - 1].name, ranges[i - 1].begin, ranges[i - 1].end,
           ranges[i].name, ranges[i].begin, ranges[i].end);
}

SafetensorsFile::~SafetensorsFile() {
  if (map_)
    munmap(map_, size_);
}

const TensorView *SafetensorsFile::find(const std::string &name) const {
  auto it = tensors_.find(name);
  return it == tensors_.end() ? nullptr : &it->second;
}

static bool isDir(const std::string &p) {
  struct stat st;
  return stat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}
static bool exists(const std::string &p) {
  struct stat st;
  return stat(p.c_str(), &st) == 0;
}

WeightStore::WeightStore(const std::string &path) : path_(path) {
  std::vector<std::string> files;
  std::map<std::string, std::string> indexMap; // tensor -> shard (sharded only)
  if (!isDir(path)) {
    files.push_back(path);
  } else if (exists(path + "/model.safetensors.index.json")) {
    std::string indexPath = path + "/model.safetensors.index.json";
    std::ifstream in(indexPath);
    std::stringstream ss;
    ss << in.rdbuf();
    json index;
    try {
      index = json::parse(ss.str());
    } catch (const json::exception &e) {
      fail("{}: not valid JSON: {}", indexPath, e.what());
    }
    if (!index.is_object() || !index.contains("weight_map") ||
        !index["weight_map"].is_object())
      fail("{}: needs a \"weight_map\" object", indexPath);
    std::map<std::string, std::string> &shardOf = indexMap;
    for (auto it = index["weight_map"].begin(); it != index["weight_map"].end();
         ++it) {
      if (!it.value().is_string())
        fail("{}: weight_map entry '{}' must name a file", indexPath, it.key());
      shardOf[it.key()] = it.value().get<std::string>();
    }
    std::vector<std::string> shards;
    for (auto &[tensor, shard] : shardOf)
      if (std::find(shards.begin(), shards.end(), shard) == shards.end())
        shards.push_back(shard);
    for (const std::string &s : shards) {
      if (!exists(path + "/" + s))
        fail("{}: names shard '{}', which does not exist in {}", indexPath, s,
             path);
      files.push_back(path + "/" + s);
    }
  } else if (exists(path + "/model.safetensors")) {
    files.push_back(path + "/model.safetensors");
  } else {
    fail("{}: no model.safetensors or model.safetensors.index.json", path);
  }
  for (const std::string &f : files) {
    files_.push_back(std::make_unique<SafetensorsFile>(f));
    for (auto &[name, view] : files_.back()->tensors()) {
      auto [it, inserted] = index_.emplace(name, &view);
      if (!inserted)
        fail("tensor '{}' is stored twice: in {} and {}", name, it->second->file,
             f);
    }
  }
  // The index must tell the truth: each tensor it maps is in that shard.
  for (auto &[tensor, shard] : indexMap) {
    auto it = index_.find(tensor);
    if (it == index_.end() || it->second->file != path + "/" + shard)
      fail("{}/model.safetensors.index.json: maps tensor '{}' to {}, which does not hold it",
           path, tensor, shard);
  }
}

const TensorView *WeightStore::find(const std::string &name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : it->second;
}

std::vector<std::string> WeightStore::names() const {
  std::vector<std::string> out;
  for (auto &[n, v] : index_)
    out.push_back(n);
  return out;
}

std::string readWholeFile(const std::string &path) {
  std::ifstream in(path, std::ios::binary);
  if (!in)
    fail("{}: cannot open", path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void setFloatElement(OwnedTensor &t, size_t i, float value) {
  if (t.dtype == DType::BF16) {
    uint16_t h = floatToBf16(value);
    std::memcpy(t.data.data() + 2 * i, &h, 2);
  } else {
    DSV3_CHECK(t.dtype == DType::F32, "setFloatElement: tensor {} is {}", t.name,
               safetensorsName(t.dtype));
    std::memcpy(t.data.data() + 4 * i, &value, 4);
  }
}

void writeSafetensors(const std::string &path,
                      const std::vector<OwnedTensor> &tensors,
                      const std::map<std::string, std::string> &metadata) {
  json header = json::object();
  if (!metadata.empty())
    header["__metadata__"] = metadata;
  uint64_t offset = 0;
  for (const OwnedTensor &t : tensors) {
    header[t.name] = {{"dtype", safetensorsName(t.dtype)},
                      {"shape", t.shape},
                      {"data_offsets", {offset, offset + t.data.size()}}};
    offset += t.data.size();
  }
  std::string text = header.dump();
  while ((text.size() + 8) % 8 != 0)
    text += ' ';
  std::string tmp = path + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0)
    fail("{}: cannot create: {}", tmp, std::strerror(errno));
  auto writeAll = [&](const void *p, size_t n) {
    const char *c = static_cast<const char *>(p);
    while (n) {
      ssize_t w = ::write(fd, c, n);
      if (w < 0) {
        int e = errno;
        ::close(fd);
        fail("{}: write failed: {}", tmp, std::strerror(e));
      }
      c += w;
      n -= size_t(w);
    }
  };
  uint8_t len[8];
  uint64_t n = text.size();
  for (int i = 0; i < 8; ++i)
    len[i] = uint8_t(n >> (8 * i));
  writeAll(len, 8);
  writeAll(text.data(), text.size());
  for (const OwnedTensor &t : tensors)
    writeAll(t.data.data(), t.data.size());
  if (fsync(fd) != 0) {
    int e = errno;
    ::close(fd);
    fail("{}: fsync failed: {}", tmp, std::strerror(e));
  }
  ::close(fd);
  if (std::rename(tmp.c_str(), path.c_str()) != 0)
    fail("{}: cannot rename to {}: {}", tmp, path, std::strerror(errno));
}

} // namespace dsv3rt
