//===- ComplianceReport.cpp - a model description against DeepSeek-V3 ----===//
#include "models/ComplianceReport.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

namespace dsv3 {

namespace {
using Status = ReportRow::Status;

std::string num(int64_t v) { return std::to_string(v); }
std::string num(double v) { return fmt::format("{:g}", v); }
std::string billions(int64_t v) {
  if (v >= 1000000000)
    return fmt::format("{:.1f}B", double(v) / 1e9);
  if (v >= 1000000)
    return fmt::format("{:.1f}M", double(v) / 1e6);
  return std::to_string(v);
}

class Builder {
public:
  explicit Builder(ComplianceReport &r) : r(r) {}
  /// A row whose configured value `got` is compared with the paper's `want`;
  /// `consequence` is stated only when they differ.
  template <typename V>
  void row(const std::string &section, const std::string &item, const V &got,
           const V &want, Status kind, const std::string &consequence) {
    add(section, item, num(got), num(want), got == want ? Status::Match : kind,
        consequence);
  }
  void add(const std::string &section, const std::string &item, std::string got,
           std::string want, Status status, const std::string &consequence) {
    ReportRow row{section, item, std::move(got), std::move(want), status,
                  status == Status::Match ? "" : consequence};
    if (status == Status::Size)
      ++r.sizeDeviations;
    if (status == Status::Structure)
      ++r.structuralDeviations;
    r.rows.push_back(std::move(row));
  }

private:
  ComplianceReport &r;
};

const char *scoringName(Scoring s) { return s == Scoring::Sigmoid ? "sigmoid" : "softmax"; }
const char *methodName(TopkMethod m) {
  switch (m) {
  case TopkMethod::Greedy: return "greedy";
  case TopkMethod::GroupLimitedGreedy: return "group_limited_greedy";
  case TopkMethod::NoauxTc: return "noaux_tc";
  }
  return "?";
}
} // namespace

ComplianceReport buildComplianceReport(const ModelConfig &c,
                                       const std::optional<ParamTotals> &params) {
  ComplianceReport r;
  r.model = c.source;
  Builder b(r);
  const std::string resize =
      "a different size: capacity and cost scale, and the published weights "
      "do not load";

  // Model.
  b.add("model", "model_type", c.modelType, "deepseek_v3",
        c.modelType == "deepseek_v3" ? Status::Match : Status::Structure,
        "the DeepSeek-V2 family: softmax routing without the "
        "auxiliary-loss-free correction bias");
  b.row("model", "layers", c.numHiddenLayers, int64_t(61), Status::Size, resize);
  b.row("model", "hidden size", c.hiddenSize, int64_t(7168), Status::Size, resize);
  b.row("model", "vocabulary", c.vocabSize, int64_t(129280), Status::Size,
        "another tokenizer's vocabulary: DeepSeek-V3's tokenizer does not apply");

  // Multi-head latent attention.
  b.row("attention", "heads", c.numAttentionHeads, int64_t(128), Status::Size, resize);
  b.row("attention", "kv_lora_rank (latent width d_c)", c.kvLoraRank, int64_t(512),
        Status::Size, "the latent KV cache per token and layer scales with it");
  int64_t latent = c.kvLoraRank + c.qkRopeHeadDim;
  int64_t fullKv = c.numAttentionHeads * (c.qHeadDim() + c.vHeadDim);
  std::string ratio = fmt::format("{:.1f}x ({} vs {} floats)", double(fullKv) / double(latent),
                                  latent, fullKv);
  b.add("attention", "KV-cache compression (full K,V / latent + rope key)", ratio,
        "71.1x (576 vs 40960 floats)",
        latent * 2 > fullKv ? Status::Structure
        : c.kvLoraRank == 512 && c.qkRopeHeadDim == 64 && fullKv == 40960
            ? Status::Match
            : Status::Size,
        latent * 2 > fullKv ? "the latent is not smaller than half the full K and V: "
                              "MLA saves little cache over multi-head attention"
                            : "cache saving differs with the widths");
  b.add("attention", "q_lora_rank (query compression d_c')",
        c.qLoraRank ? num(*c.qLoraRank) : std::string("none"), "1536",
        !c.qLoraRank ? Status::Structure
        : *c.qLoraRank == 1536 ? Status::Match
                               : Status::Size,
        !c.qLoraRank ? "queries are projected directly from the hidden state (as in "
                       "DeepSeek-V2-Lite): more parameters in the query path, less "
                       "activation memory saved in training"
                     : "query compression width differs");
  b.row("attention", "qk_nope_head_dim", c.qkNopeHeadDim, int64_t(128), Status::Size,
        resize);
  b.add("attention", "decoupled RoPE (qk_rope_head_dim)", num(c.qkRopeHeadDim), "64",
        c.qkRopeHeadDim == 0 ? Status::Structure
        : c.qkRopeHeadDim == 64 ? Status::Match
                                : Status::Size,
        c.qkRopeHeadDim == 0 ? "no positional signal in attention"
                             : "the shared rope key's width differs");
  b.row("attention", "v_head_dim", c.vHeadDim, int64_t(128), Status::Size, resize);
  std::string yarn = c.rope.yarn ? fmt::format("YaRN factor {:g} from {}", c.rope.factor,
                                               c.rope.originalMaxPositions)
                                 : std::string("none");
  b.add("attention", "long-context RoPE scaling", yarn, "YaRN factor 40 from 4096",
        !c.rope.yarn ? Status::Structure
        : c.rope.factor == 40 && c.rope.originalMaxPositions == 4096 ? Status::Match
                                                                     : Status::Size,
        !c.rope.yarn ? "no YaRN: positions beyond the trained context are "
                       "extrapolated (DeepSeek-V3 extends 4K to 128K with YaRN)"
                     : "a different context extension");
  b.row("attention", "rope_theta", c.rope.theta, 10000.0, Status::Size,
        "other rotary frequencies");

  // DeepSeekMoE.
  bool moe = c.nRoutedExperts > 0;
  b.add("moe", "routed experts", num(c.nRoutedExperts), "256",
        !moe ? Status::Structure : c.nRoutedExperts == 256 ? Status::Match : Status::Size,
        !moe ? "a dense model: no mixture of experts"
             : "expert count differs: with top-k fixed, the activated fraction changes");
  if (moe) {
    b.row("moe", "experts per token (top-k)", c.numExpertsPerTok, int64_t(8), Status::Size,
          "activated expert parameters per token scale with it");
    b.add("moe", "shared experts", num(c.nSharedExperts), "1",
          c.nSharedExperts == 0 ? Status::Structure
          : c.nSharedExperts == 1 ? Status::Match
                                  : Status::Size,
          c.nSharedExperts == 0 ? "no shared expert: common knowledge is spread over "
                                  "routed experts (DeepSeekMoE's isolation is lost)"
                                : "a different number of always-active experts");
    b.row("moe", "expert width (moe_intermediate_size)", c.moeIntermediateSize,
          int64_t(2048), Status::Size, "fine-grained expert size differs");
    b.row("moe", "dense layers first (first_k_dense_replace)", c.firstKDenseReplace,
          int64_t(3), Status::Size, "a different number of dense FFN layers");
    b.row("moe", "dense FFN width (intermediate_size)", c.intermediateSize, int64_t(18432),
          Status::Size, resize);
    b.add("moe", "gate scoring", scoringName(c.scoring), "sigmoid",
          c.scoring == Scoring::Sigmoid ? Status::Match : Status::Structure,
          "softmax gates (DeepSeek-V2): expert affinities compete, and balancing "
          "needs auxiliary losses");
    b.add("moe", "selection (topk_method)", methodName(c.topkMethod), "noaux_tc",
          c.topkMethod == TopkMethod::NoauxTc ? Status::Match : Status::Structure,
          c.topkMethod == TopkMethod::Greedy
              ? "plain top-k: no per-expert correction bias (auxiliary-loss-free "
                "balancing off) and no group limit (a token may reach every device)"
              : "group-limited without the correction bias: balancing relies on "
                "auxiliary losses");
    std::string groups =
        c.topkMethod == TopkMethod::Greedy
            ? std::string("none")
            : fmt::format("{} of {} groups", c.topkGroup, c.nGroup);
    b.add("moe", "group-limited routing", groups, "4 of 8 groups",
          c.topkMethod == TopkMethod::Greedy        ? Status::Structure
          : c.nGroup == 8 && c.topkGroup == 4 ? Status::Match
                                                : Status::Size,
          c.topkMethod == TopkMethod::Greedy
              ? "no node limit: under expert parallelism a token's experts may sit "
                "on every node (more all-to-all traffic)"
              : "a different node limit: the all-to-all fan-out per token changes");
    b.row("moe", "routed scaling factor", c.routedScalingFactor, 2.5, Status::Size,
          "routed experts' output scaled differently relative to the shared expert");
    b.add("moe", "top-k weights renormalised", c.normTopkProb ? "yes" : "no", "yes",
          c.normTopkProb ? Status::Match : Status::Structure,
          "the selected experts' weights do not sum to one");
  }

  // Multi-token prediction.
  b.add("mtp", "MTP depth", num(c.numNextnPredictLayers), "1",
        c.numNextnPredictLayers == 0 ? Status::Structure
        : c.numNextnPredictLayers == 1 ? Status::Match
                                       : Status::Size,
        c.numNextnPredictLayers == 0
            ? "no multi-token prediction: no MTP training signal, and no MTP "
              "speculative decoding"
            : "more MTP modules than the paper's one: more training compute per token");

  // FP8.
  std::string fp8 = c.fp8 ? fmt::format("e4m3, {}x{} blocks", c.fp8->blockRows,
                                        c.fp8->blockCols)
                          : std::string("none");
  b.add("fp8", "FP8 block quantization", fp8, "e4m3, 128x128 blocks",
        !c.fp8 ? Status::Structure
        : c.fp8->blockRows == 128 && c.fp8->blockCols == 128 ? Status::Match
                                                             : Status::Size,
        !c.fp8 ? "weights in 16/32-bit: twice the weight memory and none of the "
                 "FP8 tensor-core throughput"
               : "other scaling blocks: accuracy and the GEMM kernels' tiling change");

  // Parameters.
  if (params) {
    b.add("params", "total parameters (main model)", billions(params->total), "671B",
          std::llabs(params->total - 671000000000LL) < 5000000000LL ? Status::Match
                                                                    : Status::Size,
          "a model of another size");
    b.add("params", "activated per token", billions(params->activated), "37B",
          std::llabs(params->activated - 37000000000LL) < 1500000000LL ? Status::Match
                                                                       : Status::Size,
          "another compute cost per token");
    if (c.numNextnPredictLayers > 0)
      b.add("params", "MTP modules (with their embedding and head copies)",
            billions(params->mtp), "14B",
            std::llabs(params->mtp - 14000000000LL) < 1500000000LL ? Status::Match
                                                                   : Status::Size,
            "MTP parameters differ");
  }

  if (r.structuralDeviations)
    r.verdict = fmt::format("a DeepSeek-family model with {} structural deviation{} "
                            "from DeepSeek-V3 (and {} of size)",
                            r.structuralDeviations, r.structuralDeviations > 1 ? "s" : "",
                            r.sizeDeviations);
  else if (r.sizeDeviations)
    r.verdict = fmt::format("the DeepSeek-V3 architecture at other sizes ({} size "
                            "deviation{}; a scaled-down or toy variant)",
                            r.sizeDeviations, r.sizeDeviations > 1 ? "s" : "");
  else
    r.verdict = "DeepSeek-V3 as published";
  if (params && params->total < 1000000000)
    r.verdict += fmt::format("; toy-sized: {} parameters", billions(params->total));
  return r;
}

namespace {
const char *statusName(Status s) {
  switch (s) {
  case Status::Match: return "match";
  case Status::Size: return "size";
  case Status::Structure: return "STRUCTURE";
  }
  return "?";
}
} // namespace

std::string reportMarkdown(const ComplianceReport &r) {
  std::string out = fmt::format(
      "# Compliance of {} with DeepSeek-V3\n\nVerdict: {}.\n\n"
      "Reference: DeepSeek-V3 technical report (arXiv 2412.19437) and its "
      "released config. `size`: the same mechanism at another size; "
      "`STRUCTURE`: a different mechanism.\n\n"
      "| section | item | configured | DeepSeek-V3 | status | consequence |\n"
      "|---|---|---|---|---|---|\n",
      r.model, r.verdict);
  for (const ReportRow &row : r.rows)
    out += fmt::format("| {} | {} | {} | {} | {} | {} |\n", row.section, row.item,
                       row.configured, row.paper, statusName(row.status),
                       row.consequence);
  return out;
}

std::string reportJson(const ComplianceReport &r) {
  nlohmann::json j;
  j["model"] = r.model;
  j["verdict"] = r.verdict;
  j["size_deviations"] = r.sizeDeviations;
  j["structural_deviations"] = r.structuralDeviations;
  j["rows"] = nlohmann::json::array();
  for (const ReportRow &row : r.rows)
    j["rows"].push_back({{"section", row.section},
                         {"item", row.item},
                         {"configured", row.configured},
                         {"paper", row.paper},
                         {"status", row.status == Status::Match  ? "match"
                                    : row.status == Status::Size ? "size"
                                                                 : "structure"},
                         {"consequence", row.consequence}});
  return j.dump(2) + "\n";
}

} // namespace dsv3
