//===- ArtifactWriter.cpp - write manifest.json and the final IR ----------===//
//
// The manifest is the whole contract between compiler and runtime; its
// format is documented in docs/artifact.md. Values are referred to as
// {"buffer": id} (an arena buffer of the entry), {"param": name} or
// {"arg": index}.
//
//===----------------------------------------------------------------------===//

#include "codegen/ArtifactWriter.h"

#include <algorithm>

#include "dialects/Dsv3/IR/Dsv3Ops.h"
#include "dialects/Dsv3K/IR/Dsv3KOps.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/raw_ostream.h"

#include <nlohmann/json.hpp>

using json = nlohmann::json;

namespace mlir::dsv3 {
namespace {

std::string dtypeName(Type t) {
  if (t.isF64()) return "f64";
  if (t.isF32()) return "f32";
  if (t.isBF16()) return "bf16";
  if (t.isF16()) return "f16";
  if (isa<Float8E4M3FNType>(t)) return "f8e4m3";
  if (t.isInteger(64)) return "i64";
  if (t.isInteger(32)) return "i32";
  return "unknown";
}

json shapeJson(ArrayRef<int64_t> shape) {
  json a = json::array();
  for (int64_t d : shape)
    a.push_back(ShapedType::isDynamic(d) ? -1 : d);
  return a;
}

/// Kernel parameters as JSON: numbers, booleans (unit attributes are
/// true), strings, enums by keyword, the rope attribute as an object.
/// Where a launch came from, for traces and messages: the checkpoint
/// prefix the importer named the op after (`model.layers.3.self_attn`), or
/// file:line for IR read from a file.
std::string locationString(Location loc) {
  if (auto name = dyn_cast<NameLoc>(loc))
    return name.getName().str();
  if (auto file = dyn_cast<FileLineColLoc>(loc))
    return (file.getFilename().str() + ":" + std::to_string(file.getLine()));
  if (auto fused = dyn_cast<FusedLoc>(loc)) {
    std::string out;
    for (Location l : fused.getLocations()) {
      std::string part = locationString(l);
      if (!part.empty() && out.find(part) == std::string::npos)
        out += (out.empty() ? "" : "+") + part;
    }
    return out;
  }
  if (auto call = dyn_cast<CallSiteLoc>(loc))
    return locationString(call.getCallee());
  return "";
}

json attrJson(Attribute a, StringRef name = "") {
  // The enums are i32 integer attributes: which enum is known from the
  // attribute's name only (a cast would accept any enum's value).
  if (auto i = dyn_cast<IntegerAttr>(a)) {
    int64_t v = i.getInt();
    if (name == "scoring_func")
      if (auto e = symbolizeScoringFunc(uint32_t(v)))
        return stringifyScoringFunc(*e).str();
    if (name == "topk_method")
      if (auto e = symbolizeTopkMethod(uint32_t(v)))
        return stringifyTopkMethod(*e).str();
    if (name == "cache_storage")
      if (auto e = symbolizeCacheStorage(uint32_t(v)))
        return stringifyCacheStorage(*e).str();
    if (name == "role")
      if (auto e = symbolizeParamRole(uint32_t(v)))
        return stringifyParamRole(*e).str();
  }
  if (auto b = dyn_cast<BoolAttr>(a))
    return b.getValue();
  if (auto i = dyn_cast<IntegerAttr>(a))
    return i.getValue().getSExtValue();
  if (auto f = dyn_cast<FloatAttr>(a))
    return f.getValueAsDouble();
  if (isa<UnitAttr>(a))
    return true;
  if (auto s = dyn_cast<StringAttr>(a))
    return s.getValue().str();
  if (auto arr = dyn_cast<DenseI32ArrayAttr>(a))
    return json(std::vector<int32_t>(arr.asArrayRef().begin(), arr.asArrayRef().end()));
  if (auto arr = dyn_cast<DenseI64ArrayAttr>(a))
    return json(std::vector<int64_t>(arr.asArrayRef().begin(), arr.asArrayRef().end()));
  if (auto r = dyn_cast<RopeAttr>(a))
    return json{{"dim", r.getDim()},
                {"theta", r.getTheta().convertToDouble()},
                {"interleaved", r.getInterleaved()},
                {"factor", r.getFactor().convertToDouble()},
                {"original_max_position_embeddings",
                 r.getOriginalMaxPositionEmbeddings()},
                {"beta_fast", r.getBetaFast().convertToDouble()},
                {"beta_slow", r.getBetaSlow().convertToDouble()},
                {"mscale", r.getMscale().convertToDouble()},
                {"mscale_all_dim", r.getMscaleAllDim().convertToDouble()},
                {"attention_factor", r.getAttentionFactor().convertToDouble()},
                {"truncate", r.getTruncate()},
                {"cos_sin_scale", r.getCosSinScale()}};
  if (auto d = dyn_cast<DictionaryAttr>(a)) {
    json o = json::object();
    for (NamedAttribute n : d)
      o[n.getName().str()] = attrJson(n.getValue(), n.getName().getValue());
    return o;
  }
  std::string s;
  llvm::raw_string_ostream os(s);
  a.print(os);
  return s;
}

FailureOr<json> entryJson(func::FuncOp func) {
  json entry;
  DenseMap<Value, json> refs;
  json args = json::array();
  for (auto [i, arg] : llvm::enumerate(func.getArguments())) {
    json a{{"index", i}};
    if (auto m = dyn_cast<MemRefType>(arg.getType())) {
      a["dtype"] = dtypeName(m.getElementType());
      a["shape"] = shapeJson(m.getShape());
    } else {
      a["dtype"] = dtypeName(arg.getType());
      a["shape"] = json::array();
    }
    args.push_back(a);
    refs[arg] = json{{"arg", i}};
  }
  json buffers = json::array(), launches = json::array();
  for (Operation &op : func.getBody().front()) {
    if (auto alloc = dyn_cast<dsv3k::AllocOp>(op)) {
      if (!alloc.getOffset() || !alloc.getBytes())
        return alloc.emitOpError()
               << "has no memory plan (run dsv3k-plan-memory first)";
      auto type = cast<MemRefType>(alloc.getType());
      int64_t id = static_cast<int64_t>(buffers.size());
      buffers.push_back(json{{"id", id},
                             {"dtype", dtypeName(type.getElementType())},
                             {"shape", shapeJson(type.getShape())},
                             {"max_shape", shapeJson(alloc.getMaxShape())},
                             {"offset", int64_t(*alloc.getOffset())},
                             {"bytes", int64_t(*alloc.getBytes())}});
      refs[alloc] = json{{"buffer", id}};
    } else if (auto param = dyn_cast<dsv3k::ParamOp>(op)) {
      refs[param] = json{{"param", param.getParam().str()}};
    } else if (auto launch = dyn_cast<dsv3k::LaunchOp>(op)) {
      json ins = json::array(), outs = json::array();
      for (Value v : launch.getInputs())
        ins.push_back(refs.lookup(v));
      for (Value v : launch.getOutputs())
        outs.push_back(refs.lookup(v));
      json params = attrJson(launch.getParams());
      launches.push_back(json{{"kernel", launch.getKernel().str()},
                              {"loc", locationString(launch.getLoc())},
                              {"inputs", ins},
                              {"outputs", outs},
                              {"params", params}});
    } else if (auto ret = dyn_cast<func::ReturnOp>(op)) {
      json results = json::array();
      for (Value v : ret.getOperands())
        results.push_back(refs.lookup(v));
      entry["results"] = results;
    } else {
      return op.emitOpError() << "cannot be written to the manifest (lower "
                                 "to dsv3k first)";
    }
  }
  if (auto names = func->getAttrOfType<ArrayAttr>("dsv3.grad_params")) {
    // Result i + 1 of a gradients entry is dLoss/d(result_params[i]).
    json params = json::array();
    for (Attribute a : names)
      params.push_back(cast<FlatSymbolRefAttr>(a).getValue().str());
    entry["result_params"] = params;
  }
  if (auto names = func->getAttrOfType<ArrayAttr>("dsv3.expert_count_params")) {
    // train_step: results 2.. are the expert counts of the MoE layers whose
    // correction biases these are.
    json params = json::array();
    for (Attribute a : names)
      params.push_back(cast<FlatSymbolRefAttr>(a).getValue().str());
    entry["expert_count_params"] = params;
  }
  if (auto parts = func->getAttrOfType<ArrayAttr>("dsv3.loss_parts")) {
    // The last results are these parts of the loss.
    json names = json::array();
    for (Attribute a : parts)
      names.push_back(cast<StringAttr>(a).getValue().str());
    entry["loss_parts"] = names;
  }
  auto arena = func->getAttrOfType<IntegerAttr>("dsv3k.arena_bytes");
  entry["args"] = args;
  entry["buffers"] = buffers;
  entry["launches"] = launches;
  entry["arena_bytes"] = arena ? arena.getInt() : 0;
  if (auto tokens = func->getAttrOfType<IntegerAttr>("dsv3k.max_tokens"))
    entry["max_tokens"] = tokens.getInt();
  return entry;
}
} // namespace

FailureOr<json> buildManifest(ModuleOp module) {
  json manifest;
  manifest["format"] = "dsv3-artifact";
  manifest["version"] = kArtifactVersion;
  if (auto t = module->getAttrOfType<StringAttr>("dsv3.model_type"))
    manifest["model_type"] = t.getValue().str();
  if (auto block = module->getAttrOfType<DenseI64ArrayAttr>("dsv3.checkpoint_fp8_block"))
    manifest["checkpoint_fp8_block"] = {block[0], block[1]};
  // dsv3-quantize-fp8: the FP8 weights are stored e4m3 with block scales
  // of the checkpoint block (bf16 / fp32 checkpoints quantize at load).
  if (auto q = module->getAttrOfType<StringAttr>("dsv3.quantization"))
    manifest["quantization"] = q.getValue().str();
  // Expert / data parallelism (dsv3-partition-experts): the program is the
  // same on every rank; the runtime checks it runs on this many ranks.
  auto ep = module->getAttrOfType<IntegerAttr>("dsv3.expert_parallel");
  auto dp = module->getAttrOfType<IntegerAttr>("dsv3.data_parallel");
  if (ep || dp)
    manifest["parallel"] = {{"ep", ep ? ep.getInt() : 1}, {"dp", dp ? dp.getInt() : 1}};
  json params = json::array();
  for (ParamOp p : module.getOps<ParamOp>()) {
    json checkpoint = json::array();
    // A sharded stack lists every rank's experts (rank r binds the r-th
    // slice of the list, or its placement's entries).
    if (p.getStackedFrom()) {
      int64_t experts = p.getTensorType().getDimSize(0) * p.getNumShards();
      if (std::optional<ArrayRef<int64_t>> placed = p.getPlacement()) // copies: fewer experts
        experts = *std::max_element(placed->begin(), placed->end()) + 1;
      for (int64_t e = 0; e < experts; ++e)
        checkpoint.push_back(p.getExpertTensorName(e));
    } else {
      checkpoint.push_back(p.getSymName().str());
    }
    json entry{{"name", p.getSymName().str()},
               {"dtype", dtypeName(p.getTensorType().getElementType())},
               {"shape", shapeJson(p.getTensorType().getShape())},
               {"role", stringifyParamRole(p.getRole()).str()},
               {"checkpoint", checkpoint}};
    if (p.getStackedFrom())
      entry["stacked"] = true;
    if (p.getNumShards() > 1)
      entry["expert_shards"] = p.getNumShards();
    if (std::optional<ArrayRef<int64_t>> placed = p.getPlacement())
      entry["expert_placement"] = std::vector<int64_t>(placed->begin(), placed->end());
    if (p.getTiedTo())
      entry["tied_to"] = p.getTiedTo()->str();
    if (std::optional<StringRef> of = p.getScales())
      entry["scales"] = of->str();
    params.push_back(entry);
  }
  manifest["params"] = params;
  json entries = json::object();
  for (auto func : module.getOps<func::FuncOp>()) {
    auto kind = func->getAttrOfType<StringAttr>("dsv3.entry");
    if (!kind)
      continue;
    FailureOr<json> e = entryJson(func);
    if (failed(e))
      return failure();
    entries[kind.getValue().str()] = *e;
  }
  manifest["entries"] = entries;
  return manifest;
}

LogicalResult writeArtifact(ModuleOp module, const std::string &dir,
                            const ::dsv3::CudaTargets *cuda) {
  FailureOr<json> built = buildManifest(module);
  if (failed(built))
    return failure();
  json &manifest = *built;
  if (std::error_code ec = llvm::sys::fs::create_directories(dir))
    return module.emitError() << "cannot create " << dir << ": " << ec.message();
  auto write = [&](const std::string &name, auto &&print) -> LogicalResult {
    std::string path = dir + "/" + name, tmp = path + ".tmp";
    {
      std::error_code ec;
      llvm::raw_fd_ostream os(tmp, ec);
      if (ec)
        return module.emitError() << "cannot write " << tmp << ": " << ec.message();
      print(os);
    }
    if (std::error_code ec = llvm::sys::fs::rename(tmp, path))
      return module.emitError() << "cannot rename " << tmp << ": " << ec.message();
    return success();
  };
  if (cuda) {
    std::string error;
    if (!::dsv3::emitCuda(manifest, dir, *cuda, error))
      return module.emitError() << "cannot compile the CUDA kernels: " << error;
  }
  if (failed(write("model.mlir", [&](llvm::raw_ostream &os) {
        module.print(os);
        os << "\n";
      })))
    return failure();
  return write("manifest.json", [&](llvm::raw_ostream &os) {
    os << manifest.dump(1) << "\n";
  });
}

} // namespace mlir::dsv3
