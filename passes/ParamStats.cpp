//===- ParamStats.cpp - parameter counts of a dsv3 module -----------------===//
#include "passes/ParamStats.h"

#include "dialects/Dsv3/IR/Dsv3Ops.h"

#include "llvm/ADT/StringMap.h"
#include "llvm/Support/Format.h"
#include "llvm/Support/FormatVariadic.h"
#include "llvm/Support/JSON.h"

using namespace mlir;
using namespace mlir::dsv3;

namespace {
/// Category names in print order; index by `categoryOf`.
constexpr const char *kCategories[] = {
    "embedding", "attention",      "norms",  "dense MLP",
    "routed experts", "shared experts", "router", "head"};

int categoryOf(ParamRole role) {
  switch (role) {
  case ParamRole::Embedding: return 0;
  case ParamRole::Attention: return 1;
  case ParamRole::Norm: return 2;
  case ParamRole::DenseMlp: return 3;
  case ParamRole::RoutedExperts: return 4;
  case ParamRole::SharedExperts: return 5;
  case ParamRole::Router: return 6;
  case ParamRole::Head: return 7;
  case ParamRole::MtpProjection: return 1; // unused for the main model
  case ParamRole::RouterBias: return -1;
  case ParamRole::OptimizerState: return -1;
  case ParamRole::WeightScale: return -1;
  }
  return -1;
}

/// The number of experts a token uses from stacked parameter `param`: the
/// top_k of the router whose selection feeds the grouped matmul reading it.
FailureOr<int64_t> topKOf(ParamOp param, ModuleOp module) {
  std::optional<int64_t> found;
  auto uses = SymbolTable::getSymbolUses(param, module);
  if (uses) {
    for (const SymbolTable::SymbolUse &use : *uses) {
      auto get = dyn_cast<GetParamOp>(use.getUser());
      if (!get)
        continue;
      for (Operation *user : get->getUsers()) {
        auto mm = dyn_cast<ExpertGroupedMatmulOp>(user);
        if (!mm)
          continue;
        auto dispatch = mm.getCounts().getDefiningOp<MoeDispatchOp>();
        auto route = dispatch
                         ? dispatch.getIndices().getDefiningOp<MoeRouteOp>()
                         : MoeRouteOp();
        if (route)
          found = route.getNumExpertsPerTok();
      }
    }
  }
  if (!found)
    return param.emitError()
           << "cannot count activated parameters of @" << param.getSymName()
           << ": no dsv3.moe_route -> dsv3.moe_dispatch -> "
              "dsv3.expert_grouped_matmul reads it";
  return *found;
}
} // namespace

FailureOr<ParamStats> mlir::dsv3::computeParamStats(ModuleOp module) {
  ParamStats stats;
  for (const char *name : kCategories)
    stats.main.push_back({name, 0, 0});
  bool failedAny = false;
  for (ParamOp param : module.getOps<ParamOp>()) {
    RankedTensorType type = param.getTensorType();
    int64_t n = param.getNumElements();
    if (param.getTiedTo())
      continue; // a copy of another tensor: not a parameter of its own
    stats.bytes += (n * type.getElementTypeBitWidth() + 7) / 8;
    stats.checkpointTensors += param.getStackedFrom() ? type.getDimSize(0) : 1;
    if (param.getRole() == ParamRole::OptimizerState)
      continue; // training state, not part of the model
    if (param.getRole() == ParamRole::RouterBias) {
      stats.buffers += n;
      continue;
    }
    int64_t activated = n;
    if (param.getRole() == ParamRole::RoutedExperts) {
      FailureOr<int64_t> k = topKOf(param, module);
      if (failed(k)) {
        failedAny = true;
        continue;
      }
      activated = n / type.getDimSize(0) * *k;
    }
    if (param.getMtpDepth()) {
      stats.mtp.total += n;
      stats.mtp.activated += activated;
      stats.mtpDepths = std::max<int64_t>(stats.mtpDepths, *param.getMtpDepth());
      continue;
    }
    int c = categoryOf(param.getRole());
    stats.main[c].total += n;
    stats.main[c].activated += activated;
    stats.mainTotal.total += n;
    stats.mainTotal.activated += activated;
  }
  if (failedAny)
    return failure();
  if (stats.mtpDepths > 0)
    stats.mtpShared = stats.main[0].total + stats.main[7].total;
  return stats;
}

static std::string humanCount(int64_t n);

RankMemory mlir::dsv3::computeRankMemory(ModuleOp module, int64_t ep, int64_t fp8Block) {
  RankMemory m;
  m.ep = ep;
  for (ParamOp param : module.getOps<ParamOp>()) {
    if (param.getTiedTo() || param.getRole() == ParamRole::OptimizerState)
      continue;
    RankedTensorType type = param.getTensorType();
    int64_t n = param.getNumElements();
    ParamRole role = param.getRole();
    bool matrixFp8 = role == ParamRole::Attention || role == ParamRole::DenseMlp ||
                     role == ParamRole::RoutedExperts || role == ParamRole::SharedExperts ||
                     role == ParamRole::MtpProjection;
    // One matrix's FP8 bytes: e4m3 elements and an f32 scale per block.
    auto fp8Bytes = [&](int64_t rows, int64_t cols, int64_t count) {
      return count * (rows * cols + 4 * ((rows + fp8Block - 1) / fp8Block) *
                                        ((cols + fp8Block - 1) / fp8Block));
    };
    int64_t rank = type.getRank();
    if (role == ParamRole::RoutedExperts) {
      // A module already partitioned (sharded_over) holds one rank's slice.
      int64_t e = type.getDimSize(0) * param.getNumShards(), local = (e + ep - 1) / ep;
      m.experts = std::max(m.experts, e);
      m.expertsPerRank = std::max(m.expertsPerRank, local);
      int64_t per = n / type.getDimSize(0);
      m.expertParams += per * local;
      m.expertBf16 += 2 * per * local;
      m.expertFp8 += fp8Bytes(type.getDimSize(rank - 2), type.getDimSize(rank - 1), local);
      continue;
    }
    m.replicatedParams += n;
    m.replicatedBf16 += role == ParamRole::RouterBias ? 4 * n : 2 * n;
    if (matrixFp8 && rank >= 2)
      m.replicatedFp8 += fp8Bytes(type.getDimSize(rank - 2), type.getDimSize(rank - 1),
                                  n / (type.getDimSize(rank - 2) * type.getDimSize(rank - 1)));
    else
      m.replicatedFp8 += role == ParamRole::RouterBias ? 4 * n : 2 * n;
  }

  return m;
}

static std::string humanBytes(double b) {
  if (b >= 1e9)
    return llvm::formatv("{0:F1} GB", b / 1e9).str();
  if (b >= 1e6)
    return llvm::formatv("{0:F1} MB", b / 1e6).str();
  return llvm::formatv("{0:F1} KB", b / 1e3).str();
}

void mlir::dsv3::printRankMemory(const RankMemory &m, int64_t arenaBytes,
                                 llvm::raw_ostream &os, bool json) {
  int64_t kvPerToken = 2 * m.layers * m.latentWidth; // bf16 latent
  if (json) {
    llvm::json::Object o{{"ep", m.ep},
                         {"experts_per_rank", m.expertsPerRank},
                         {"replicated_params", m.replicatedParams},
                         {"expert_params_per_rank", m.expertParams},
                         {"bytes_per_rank_bf16", m.replicatedBf16 + m.expertBf16},
                         {"bytes_per_rank_fp8", m.replicatedFp8 + m.expertFp8},
                         {"kv_cache_bytes_per_token_bf16", kvPerToken},
                         {"activation_arena_bytes", arenaBytes}};
    os << llvm::formatv("{0:2}", llvm::json::Value(std::move(o))) << "\n";
    return;
  }
  os << llvm::formatv("expert parallelism over {0} ranks: {1} of {2} routed experts per MoE "
                      "layer on the largest rank (contiguous), everything else replicated\n",
                      m.ep, m.expertsPerRank, m.experts);
  os << llvm::formatv("  {0,-34} {1,16} {2,12} {3,12}\n", "per rank", "parameters", "bf16",
                      "fp8 (hub)");
  auto row = [&](const char *name, int64_t p, int64_t b16, int64_t f8) {
    os << llvm::formatv("  {0,-34} {1,16} {2,12} {3,12}\n", name, humanCount(p),
                        humanBytes(double(b16)), humanBytes(double(f8)));
  };
  row("replicated (attention, dense, ...)", m.replicatedParams, m.replicatedBf16,
      m.replicatedFp8);
  row("routed experts (local)", m.expertParams, m.expertBf16, m.expertFp8);
  row("weights", m.replicatedParams + m.expertParams, m.replicatedBf16 + m.expertBf16,
      m.replicatedFp8 + m.expertFp8);
  os << llvm::formatv("  latent KV cache: {0} per token (bf16, {1} layers x {2}); activation "
                      "arena of the decode plan: {3}\n",
                      humanBytes(double(kvPerToken)), m.layers, m.latentWidth,
                      humanBytes(double(arenaBytes)));
  for (double gpu : {80e9, 141e9}) {
    double left = gpu - double(arenaBytes);
    double b16 = left - double(m.replicatedBf16 + m.expertBf16);
    double f8 = left - double(m.replicatedFp8 + m.expertFp8);
    auto tokens = [&](double rest) {
      return rest <= 0 ? std::string("does not fit")
                       : llvm::formatv("{0:F0}K tokens of cache", rest / double(kvPerToken) / 1e3)
                             .str();
    };
    os << llvm::formatv("  on a {0:F0} GB GPU: bf16 {1}; fp8 {2}\n", gpu / 1e9, tokens(b16),
                        tokens(f8));
  }
}

static std::string humanCount(int64_t n) {
  double v = static_cast<double>(n);
  if (v >= 1e9)
    return llvm::formatv("{0:F2}B", v / 1e9).str();
  if (v >= 1e6)
    return llvm::formatv("{0:F2}M", v / 1e6).str();
  if (v >= 1e3)
    return llvm::formatv("{0:F2}K", v / 1e3).str();
  return std::to_string(n);
}

void mlir::dsv3::printParamStats(const ParamStats &stats, llvm::raw_ostream &os,
                                 bool json) {
  if (json) {
    llvm::json::Object main;
    for (const ParamCount &c : stats.main)
      main[c.category] =
          llvm::json::Object{{"total", c.total}, {"activated", c.activated}};
    llvm::json::Object root{
        {"main", std::move(main)},
        {"total", stats.mainTotal.total},
        {"activated", stats.mainTotal.activated},
        {"mtp_depths", stats.mtpDepths},
        {"mtp_total", stats.mtp.total},
        {"mtp_activated", stats.mtp.activated + stats.mtpShared},
        {"buffers", stats.buffers},
        {"checkpoint_tensors", stats.checkpointTensors},
        {"bytes", stats.bytes}};
    os << llvm::formatv("{0:2}", llvm::json::Value(std::move(root))) << "\n";
    return;
  }
  auto row = [&](StringRef name, int64_t total, int64_t activated) {
    os << llvm::formatv("  {0,-34} {1,18} {2,9}   {3,18} {4,9}\n", name, total,
                        humanCount(total), activated, humanCount(activated));
  };
  os << llvm::formatv("  {0,-34} {1,28}   {2,28}\n", "parameters", "total",
                      "activated per token");
  for (const ParamCount &c : stats.main)
    if (c.total)
      row(c.category, c.total, c.activated);
  row("main model", stats.mainTotal.total, stats.mainTotal.activated);
  if (stats.mtpDepths) {
    row(llvm::formatv("MTP ({0} depth{1}, own weights)", stats.mtpDepths,
                      stats.mtpDepths > 1 ? "s" : "")
            .str(),
        stats.mtp.total, stats.mtp.activated);
    row("MTP incl. shared embedding + head", stats.mtp.total + stats.mtpShared,
        stats.mtp.activated + stats.mtpShared);
    row("main model + MTP", stats.mainTotal.total + stats.mtp.total,
        stats.mainTotal.activated + stats.mtp.activated);
  }
  os << llvm::formatv("  buffers (router correction bias): {0}\n", stats.buffers);
  os << llvm::formatv("  checkpoint tensors bound: {0}; weight bytes: {1}\n",
                      stats.checkpointTensors, stats.bytes);
}
