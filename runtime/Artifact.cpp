//===- Artifact.cpp - load and validate manifest.json ---------------------===//
#include "runtime/Artifact.h"

#include "runtime/Error.h"

#include <algorithm>
#include <fstream>
#include <set>
#include <sstream>

using json = nlohmann::json;

namespace dsv3rt {

std::string shapeString(const std::vector<int64_t> &shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i)
    s += (i ? ", " : "") + (shape[i] < 0 ? std::string("?") : std::to_string(shape[i]));
  return s + "]";
}

namespace {
/// Reads fields of one JSON object, naming the path in every error.
class Reader {
public:
  Reader(const std::string &file, const json &j, std::string path)
      : file(file), j(j), path(std::move(path)) {}

  [[noreturn]] void error(const std::string &what) const {
    fail("{}: {}: {}", file, path.empty() ? "(top level)" : path, what);
  }
  const json &field(const char *key) const {
    if (!j.is_object())
      error("must be an object");
    if (!j.contains(key))
      error(fmt::format("missing field \"{}\"", key));
    return j.at(key);
  }
  bool has(const char *key) const { return j.is_object() && j.contains(key); }
  Reader sub(const char *key) const {
    return Reader(file, field(key), join(key));
  }
  Reader at(size_t i) const {
    return Reader(file, j.at(i), path + "[" + std::to_string(i) + "]");
  }
  std::string join(const std::string &key) const {
    return path.empty() ? key : path + "." + key;
  }
  int64_t integer(const char *key) const {
    const json &v = field(key);
    if (!v.is_number_integer())
      Reader(file, v, join(key)).error("must be an integer, got " + v.dump());
    return v.get<int64_t>();
  }
  std::string string(const char *key) const {
    const json &v = field(key);
    if (!v.is_string())
      Reader(file, v, join(key)).error("must be a string, got " + v.dump());
    return v.get<std::string>();
  }
  DType dtype(const char *key) const {
    std::string s = string(key);
    std::optional<DType> d = parseManifestDType(s);
    if (!d)
      Reader(file, field(key), join(key)).error("unknown dtype \"" + s + "\"");
    return *d;
  }
  std::vector<int64_t> shape(const char *key, bool allowDynamic) const {
    const json &v = field(key);
    Reader r(file, v, join(key));
    if (!v.is_array())
      r.error("must be an array of extents");
    std::vector<int64_t> out;
    for (const json &d : v) {
      if (!d.is_number_integer() || d.get<int64_t>() < (allowDynamic ? -1 : 0))
        r.error("has an invalid extent " + d.dump());
      out.push_back(d.get<int64_t>());
    }
    return out;
  }
  size_t arraySize(const char *key) const {
    const json &v = field(key);
    if (!v.is_array())
      Reader(file, v, join(key)).error("must be an array");
    return v.size();
  }

  const std::string &file;
  const json &j;
  std::string path;
};

ValueRef readRef(const Reader &r, const Entry &entry, size_t numParams,
                 const std::set<std::string> &paramNames) {
  ValueRef ref;
  if (r.j.is_object() && r.j.contains("buffer")) {
    ref.kind = ValueRef::Kind::Buffer;
    ref.index = r.integer("buffer");
    if (ref.index < 0 || ref.index >= int64_t(entry.buffers.size()))
      r.error(fmt::format("buffer {} does not exist (the entry has {})",
                          ref.index, entry.buffers.size()));
  } else if (r.j.is_object() && r.j.contains("param")) {
    ref.kind = ValueRef::Kind::Param;
    ref.param = r.string("param");
    if (!paramNames.count(ref.param))
      r.error("names parameter \"" + ref.param + "\", which is not declared");
  } else if (r.j.is_object() && r.j.contains("arg")) {
    ref.kind = ValueRef::Kind::Arg;
    ref.index = r.integer("arg");
    if (ref.index < 0 || ref.index >= int64_t(entry.args.size()))
      r.error(fmt::format("argument {} does not exist (the entry has {})",
                          ref.index, entry.args.size()));
  } else {
    r.error("must be {\"buffer\": id}, {\"param\": name} or {\"arg\": index}");
  }
  (void)numParams;
  return ref;
}
} // namespace

Artifact Artifact::load(const std::string &dir) {
  std::string file = dir + "/manifest.json";
  std::ifstream in(file);
  if (!in)
    fail("{}: cannot open (is {} an artifact directory written by dsv3c -o?)",
         file, dir);
  std::stringstream ss;
  ss << in.rdbuf();
  json root;
  try {
    root = json::parse(ss.str());
  } catch (const json::exception &e) { // parse errors, numbers out of range
    fail("{}: not valid JSON: {}", file, e.what());
  }
  Reader top(file, root, "");
  Artifact a;
  a.dir = dir;
  if (top.string("format") != "dsv3-artifact")
    top.error("format must be \"dsv3-artifact\"");
  a.version = int(top.integer("version"));
  if (a.version != kArtifactVersion)
    fail("{}: artifact version {} is not supported by this runtime (it reads "
         "version {}); recompile the model with this release's dsv3c",
         file, a.version, kArtifactVersion);
  if (root.contains("model_type"))
    a.modelType = top.string("model_type");
  if (top.has("checkpoint_fp8_block")) {
    std::vector<int64_t> block = top.shape("checkpoint_fp8_block", false);
    if (block.size() != 2 || block[0] < 1 || block[1] < 1)
      top.sub("checkpoint_fp8_block").error("must be two positive block extents");
    a.fp8BlockRows = block[0];
    a.fp8BlockCols = block[1];
  }
  if (top.has("quantization")) {
    a.quantization = top.string("quantization");
    if (a.quantization != "fp8")
      top.sub("quantization").error("must be \"fp8\"");
  }

  if (top.has("parallel")) {
    Reader par = top.sub("parallel");
    a.expertParallel = par.integer("ep");
    a.dataParallel = par.integer("dp");
    a.partitioned = true;
    if (a.expertParallel < 1 || a.dataParallel < 1 || a.dataParallel % a.expertParallel)
      par.error("ep and dp must be positive, ep dividing dp");
  }

  std::set<std::string> paramNames;
  Reader params = top.sub("params");
  for (size_t i = 0, n = top.arraySize("params"); i < n; ++i) {
    Reader p = params.at(i);
    ParamInfo info;
    info.name = p.string("name");
    info.dtype = p.dtype("dtype");
    info.shape = p.shape("shape", false);
    info.role = p.string("role");
    info.stacked = p.j.value("stacked", false);
    if (p.has("scales"))
      info.scales = p.string("scales");
    if (info.scales.empty() != (info.role != "weight_scale"))
      p.error("a weight_scale parameter, and only one, names the FP8 weight it scales "
              "(\"scales\")");
    Reader cp = p.sub("checkpoint");
    for (size_t k = 0, m = p.arraySize("checkpoint"); k < m; ++k) {
      if (!cp.j.at(k).is_string())
        cp.at(k).error("must be a tensor name");
      info.checkpoint.push_back(cp.j.at(k).get<std::string>());
    }
    if (p.has("expert_shards")) {
      info.expertShards = p.integer("expert_shards");
      if (info.expertShards < 1 || !info.stacked)
        p.sub("expert_shards").error("must be a positive shard count of a stacked parameter");
    }
    // A sharded stack lists every rank's experts; it holds one rank's.
    size_t expected = info.stacked ? size_t(info.shape.empty() ? 0 : info.shape[0]) *
                                         size_t(info.expertShards)
                                   : 1;
    if (p.has("expert_placement")) {
      Reader pl = p.sub("expert_placement");
      for (size_t k = 0, m = p.arraySize("expert_placement"); k < m; ++k) {
        if (!pl.j.at(k).is_number_integer() || pl.j.at(k).get<int64_t>() < 0)
          pl.at(k).error("must be an expert index");
        info.placement.push_back(pl.j.at(k).get<int64_t>());
      }
      if (info.shape.empty() || info.expertShards < 1 ||
          int64_t(info.placement.size()) != info.shape[0] * info.expertShards)
        pl.error(fmt::format("must hold {} x {} slots", info.expertShards,
                             info.shape.empty() ? 0 : info.shape[0]));
      expected = size_t(*std::max_element(info.placement.begin(), info.placement.end()) + 1);
    }
    if (info.checkpoint.size() != expected)
      p.error(fmt::format("binds {} checkpoint tensors, expected {}",
                          info.checkpoint.size(), expected));
    if (!paramNames.insert(info.name).second)
      p.error("parameter \"" + info.name + "\" is declared twice");
    a.params.push_back(std::move(info));
  }
  // Each FP8 weight has its block scales, of its rank and experts.
  for (size_t i = 0; i < a.params.size(); ++i) {
    const ParamInfo &s = a.params[i];
    const ParamInfo *w = s.scales.empty() ? nullptr : a.param(s.scales);
    if (!s.scales.empty() &&
        (!w || w->dtype != DType::F8E4M3 || w->shape.size() != s.shape.size() ||
         s.dtype != DType::F32 || w->stacked != s.stacked ||
         (w->stacked && w->shape[0] != s.shape[0])))
      params.at(i).error(fmt::format("scales \"{}\", which must be an f8e4m3 parameter of the "
                                     "f32 scales' rank and experts",
                                     s.scales));
  }
  for (size_t i = 0; i < a.params.size(); ++i)
    if (a.params[i].dtype == DType::F8E4M3 &&
        std::none_of(a.params.begin(), a.params.end(),
                     [&](const ParamInfo &s) { return s.scales == a.params[i].name; }))
      params.at(i).error("an f8e4m3 parameter needs a weight_scale parameter naming it");

  Reader entries = top.sub("entries");
  if (!entries.j.is_object())
    entries.error("must be an object of entry functions");
  for (auto it = entries.j.begin(); it != entries.j.end(); ++it) {
    Reader e(file, it.value(), "entries." + it.key());
    Entry entry;
    entry.name = it.key();
    entry.arenaBytes = e.integer("arena_bytes");
    if (e.has("max_tokens")) {
      entry.maxTokens = e.integer("max_tokens");
      if (entry.maxTokens < 1)
        e.sub("max_tokens").error("must be at least 1");
    }
    Reader args = e.sub("args");
    for (size_t i = 0, n = e.arraySize("args"); i < n; ++i) {
      Reader r = args.at(i);
      entry.args.push_back({r.dtype("dtype"), r.shape("shape", true)});
    }
    Reader bufs = e.sub("buffers");
    for (size_t i = 0, n = e.arraySize("buffers"); i < n; ++i) {
      Reader r = bufs.at(i);
      BufferInfo b;
      if (r.integer("id") != int64_t(i))
        r.error(fmt::format("id must be {} (buffers are listed in id order)", i));
      b.dtype = r.dtype("dtype");
      b.shape = r.shape("shape", true);
      b.maxShape = r.shape("max_shape", false);
      b.offset = r.integer("offset");
      b.bytes = r.integer("bytes");
      if (b.shape.size() != b.maxShape.size())
        r.error("shape and max_shape differ in rank");
      int64_t need = int64_t(dtypeSize(b.dtype));
      for (int64_t d : b.maxShape)
        need *= d;
      if (b.offset < 0 || b.bytes < need || b.offset + b.bytes > entry.arenaBytes)
        r.error(fmt::format("offset {} and bytes {} must hold {} bytes inside "
                            "the {}-byte arena",
                            b.offset, b.bytes, need, entry.arenaBytes));
      entry.buffers.push_back(std::move(b));
    }
    Reader launches = e.sub("launches");
    for (size_t i = 0, n = e.arraySize("launches"); i < n; ++i) {
      Reader r = launches.at(i);
      Launch l;
      l.kernel = r.string("kernel");
      if (r.has("loc"))
        l.loc = r.string("loc");
      Reader ins = r.sub("inputs"), outs = r.sub("outputs");
      for (size_t k = 0, m = r.arraySize("inputs"); k < m; ++k)
        l.inputs.push_back(readRef(ins.at(k), entry, a.params.size(), paramNames));
      for (size_t k = 0, m = r.arraySize("outputs"); k < m; ++k)
        l.outputs.push_back(readRef(outs.at(k), entry, a.params.size(), paramNames));
      l.params = r.field("params");
      if (!l.params.is_object())
        r.sub("params").error("must be an object");
      entry.launches.push_back(std::move(l));
    }
    Reader results = e.sub("results");
    for (size_t k = 0, m = e.arraySize("results"); k < m; ++k)
      entry.results.push_back(readRef(results.at(k), entry, a.params.size(), paramNames));
    if (e.j.contains("result_params")) {
      Reader rp = e.sub("result_params");
      for (size_t k = 0, m = e.arraySize("result_params"); k < m; ++k) {
        if (!rp.j.at(k).is_string() || !paramNames.count(rp.j.at(k).get<std::string>()))
          rp.at(k).error("must name a declared parameter");
        entry.resultParams.push_back(rp.j.at(k).get<std::string>());
      }
      if (entry.resultParams.size() + 1 > entry.results.size())
        rp.error(fmt::format("names {} parameters for {} gradient results",
                             entry.resultParams.size(), entry.results.size() - 1));
    }
    a.entries.emplace(entry.name, std::move(entry));
  }
  return a;
}

const Entry &Artifact::entry(const std::string &name) const {
  auto it = entries.find(name);
  if (it == entries.end()) {
    std::string names;
    for (auto &[n, e] : entries)
      names += (names.empty() ? "" : ", ") + n;
    fail("{}/manifest.json: no entry \"{}\" (the artifact has: {})", dir, name,
         names);
  }
  return it->second;
}

std::optional<float> initConstant(const ParamInfo &p) {
  size_t rank = p.shape.size() - (p.stacked ? 1 : 0);
  if (p.role == "norm" || (p.role == "mtp_projection" && rank == 1))
    return 1.0f;
  if (p.role == "router_bias" || p.role == "optimizer_state")
    return 0.0f;
  return std::nullopt;
}

void checkTokenBudget(const Entry &entry, size_t arg, const std::vector<int64_t> &shape) {
  // The arguments over [batch, seq, ...] (ids, labels) are planned for the
  // budget; the decode caches ([batch, seq, width] floats) are not.
  if (entry.maxTokens <= 0 || arg >= entry.args.size() || shape.size() != 2 ||
      entry.args[arg].dtype != DType::I64)
    return;
  if (shape[0] * shape[1] > entry.maxTokens)
    fail("entry {}: argument {} holds {}x{} = {} tokens, more than the {} one call may "
         "carry (the artifact was compiled with dsv3c --max-tokens {}); split the batch "
         "or the prompt into chunks",
         entry.name, arg, shape[0], shape[1], shape[0] * shape[1], entry.maxTokens,
         entry.maxTokens);
}

const ParamInfo *Artifact::param(const std::string &name) const {
  for (const ParamInfo &p : params)
    if (p.name == name)
      return &p;
  return nullptr;
}

void Artifact::selectRank(int rank) {
  if (rank < 0 || rank >= dataParallel)
    fail("{}: rank {} of an artifact compiled for {} ranks", dir, rank, dataParallel);
  int64_t shard = rank % expertParallel;
  for (ParamInfo &p : params) {
    if (p.expertShards <= 1 || !p.allCheckpoint.empty())
      continue;
    size_t local = size_t(p.shape[0]);
    std::vector<std::string> mine;
    if (!p.placement.empty())
      for (size_t j = 0; j < local; ++j)
        mine.push_back(p.checkpoint.at(size_t(p.placement[size_t(shard) * local + j])));
    else
      mine.assign(p.checkpoint.begin() + ptrdiff_t(size_t(shard) * local),
                  p.checkpoint.begin() + ptrdiff_t(size_t(shard + 1) * local));
    p.allCheckpoint = std::move(p.checkpoint);
    p.checkpoint = std::move(mine);
  }
}

std::vector<SoleReader> soleReaders(const Entry &entry) {
  std::vector<int> reads(entry.buffers.size(), 0);
  std::vector<SoleReader> readers(entry.buffers.size());
  for (const Launch &launch : entry.launches)
    for (size_t i = 0; i < launch.inputs.size(); ++i)
      if (launch.inputs[i].kind == ValueRef::Kind::Buffer) {
        size_t b = size_t(launch.inputs[i].index);
        if (b < readers.size() && reads[b]++ == 0)
          readers[b] = {&launch, int(i)};
      }
  for (const ValueRef &r : entry.results)
    if (r.kind == ValueRef::Kind::Buffer && size_t(r.index) < reads.size())
      ++reads[size_t(r.index)];
  for (size_t b = 0; b < readers.size(); ++b)
    if (reads[b] != 1)
      readers[b] = SoleReader();
  return readers;
}

} // namespace dsv3rt
