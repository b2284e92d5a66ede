//===- ModelConfig.cpp - import and validate a Hugging Face config.json ---===//
//
// Field names, defaults and the V2/V3 differences follow SEMANTICS.md 1 and
// 5.5. Every problem is reported as "<source>: <field> (<value>) <rule>"; the
// parse goes on after an error so that a user sees all of them at once.
//
//===----------------------------------------------------------------------===//

#include "models/ModelConfig.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <fstream>
#include <limits>
#include <sstream>
#include <sys/stat.h>

using json = nlohmann::json;

namespace dsv3 {
namespace {

/// No extent of a real model comes near this; larger values are typos or
/// attacks, and would overflow 64-bit element counts once multiplied.
constexpr int64_t kMaxExtent = int64_t(1) << 31;

std::string describe(const json &v) {
  std::string s = v.dump();
  return s.size() > 40 ? s.substr(0, 37) + "..." : s;
}

class FieldReader {
public:
  FieldReader(const json &root, const std::string &source,
              std::vector<std::string> &errors)
      : root(root), source(source), errors(errors) {}

  template <typename... Args>
  void error(fmt::format_string<Args...> f, Args &&...args) {
    errors.push_back(source + ": " + fmt::format(f, std::forward<Args>(args)...));
  }

  bool has(const char *key) const { return root.contains(key); }
  bool isNull(const char *key) const { return has(key) && root.at(key).is_null(); }

  /// An integer field; absent -> `dflt`. `minValue` is the smallest legal
  /// value (most sizes must be >= 1).
  int64_t getInt(const char *key, int64_t dflt, int64_t minValue = 1) {
    if (!has(key))
      return dflt;
    return checkInt(key, root.at(key), minValue).value_or(dflt);
  }

  /// An integer field that may be null (-> nullopt); absent -> `dflt`.
  std::optional<int64_t> getOptInt(const char *key, std::optional<int64_t> dflt,
                                   int64_t minValue = 1) {
    if (!has(key))
      return dflt;
    if (root.at(key).is_null())
      return std::nullopt;
    return checkInt(key, root.at(key), minValue);
  }

  std::optional<int64_t> checkInt(const std::string &key, const json &v,
                                  int64_t minValue) {
    if (v.is_number_unsigned() &&
        v.get<uint64_t>() > static_cast<uint64_t>(INT64_MAX)) {
      error("{} ({}) is out of range", key, describe(v));
      return std::nullopt;
    }
    if (!v.is_number_integer()) {
      error("{} must be an integer, got {}", key, describe(v));
      return std::nullopt;
    }
    int64_t x = v.get<int64_t>();
    if (x < minValue) {
      if (minValue == 1)
        error("{} ({}) must be positive", key, x);
      else
        error("{} ({}) must be >= {}", key, x, minValue);
      return std::nullopt;
    }
    if (x > kMaxExtent) {
      error("{} ({}) is absurdly large (limit {})", key, x, kMaxExtent);
      return std::nullopt;
    }
    return x;
  }

  double getFloat(const char *key, double dflt) {
    if (!has(key))
      return dflt;
    return checkFloat(key, root.at(key)).value_or(dflt);
  }

  std::optional<double> checkFloat(const std::string &key, const json &v) {
    if (!v.is_number()) {
      error("{} must be a number, got {}", key, describe(v));
      return std::nullopt;
    }
    double x = v.get<double>();
    if (!std::isfinite(x)) {
      error("{} ({}) must be finite", key, describe(v));
      return std::nullopt;
    }
    return x;
  }

  bool getBool(const char *key, bool dflt) {
    if (!has(key) || root.at(key).is_null())
      return dflt;
    const json &v = root.at(key);
    if (!v.is_boolean()) {
      error("{} must be true or false, got {}", key, describe(v));
      return dflt;
    }
    return v.get<bool>();
  }

  std::optional<std::string> getString(const char *key) {
    if (!has(key) || root.at(key).is_null())
      return std::nullopt;
    const json &v = root.at(key);
    if (!v.is_string()) {
      error("{} must be a string, got {}", key, describe(v));
      return std::nullopt;
    }
    return v.get<std::string>();
  }

  const json &root;
  const std::string &source;
  std::vector<std::string> &errors;
};

void readRope(FieldReader &r, ModelConfig &c) {
  c.rope.theta = r.getFloat("rope_theta", 10000.0);
  // The legacy key `rope_scaling` and the new `rope_parameters` hold the same
  // dictionary; rope_parameters may also carry rope_theta.
  const char *key = r.has("rope_scaling") && !r.isNull("rope_scaling")
                        ? "rope_scaling"
                        : "rope_parameters";
  if (!r.has(key) || r.isNull(key))
    return;
  const json &dict = r.root.at(key);
  if (!dict.is_object()) {
    r.error("{} must be an object or null, got {}", key, describe(dict));
    return;
  }
  FieldReader d(dict, r.source, r.errors);
  auto field = [&](const char *name) { return std::string(key) + "." + name; };
  std::string type = "default";
  const char *typeKey = "type";
  for (const char *k : {"rope_type", "type"}) {
    if (dict.contains(k) && !dict.at(k).is_null()) {
      if (!dict.at(k).is_string()) {
        r.error("{} must be a string, got {}", field(k), describe(dict.at(k)));
        return;
      }
      type = dict.at(k).get<std::string>();
      typeKey = k;
      break;
    }
  }
  if (dict.contains("rope_theta"))
    c.rope.theta = d.checkFloat(field("rope_theta"), dict.at("rope_theta"))
                       .value_or(c.rope.theta);
  if (type == "default")
    return;
  if (type != "yarn") {
    r.error("{} '{}' is not supported (supported: default, yarn)",
            field(typeKey), type);
    return;
  }
  c.rope.yarn = true;
  auto num = [&](const char *name) -> std::optional<double> {
    if (!dict.contains(name) || dict.at(name).is_null())
      return std::nullopt;
    return d.checkFloat(field(name), dict.at(name));
  };
  c.rope.originalMaxPositions = c.maxPositionEmbeddings;
  if (dict.contains("original_max_position_embeddings"))
    if (auto v = d.checkInt(field("original_max_position_embeddings"),
                            dict.at("original_max_position_embeddings"), 1))
      c.rope.originalMaxPositions = *v;
  // The explicit factor wins, even when it disagrees with the ratio of the
  // position limits (HF 5.17 only warns; SEMANTICS.md 1).
  if (auto f = num("factor"))
    c.rope.factor = *f;
  else
    c.rope.factor = double(c.maxPositionEmbeddings) / c.rope.originalMaxPositions;
  if (!(c.rope.factor >= 1.0))
    r.error("{} ({}) must be >= 1", field("factor"), c.rope.factor);
  c.rope.betaFast = num("beta_fast").value_or(32.0);
  c.rope.betaSlow = num("beta_slow").value_or(1.0);
  if (!(c.rope.betaFast > c.rope.betaSlow && c.rope.betaSlow > 0))
    r.error("{} ({}) must be > {} ({}) > 0", field("beta_fast"), c.rope.betaFast,
            field("beta_slow"), c.rope.betaSlow);
  c.rope.mscale = num("mscale").value_or(0.0);
  c.rope.mscaleAllDim = num("mscale_all_dim").value_or(0.0);
  c.rope.attentionFactor = num("attention_factor");
  if (dict.contains("truncate") && !dict.at("truncate").is_null()) {
    if (!dict.at("truncate").is_boolean())
      r.error("{} must be true or false, got {}", field("truncate"),
              describe(dict.at("truncate")));
    else
      c.rope.truncate = dict.at("truncate").get<bool>();
  }
}

void readQuantization(FieldReader &r, ModelConfig &c) {
  if (!r.has("quantization_config") || r.isNull("quantization_config"))
    return;
  const json &q = r.root.at("quantization_config");
  if (!q.is_object()) {
    r.error("quantization_config must be an object, got {}", describe(q));
    return;
  }
  auto str = [&](const char *k) -> std::string {
    return q.contains(k) && q.at(k).is_string() ? q.at(k).get<std::string>()
                                                : std::string();
  };
  if (str("quant_method") != "fp8") {
    r.error("quantization_config.quant_method '{}' is not supported (only "
            "fp8 block quantization)",
            str("quant_method"));
    return;
  }
  if (q.contains("fmt") && str("fmt") != "e4m3")
    r.error("quantization_config.fmt '{}' is not supported (only e4m3)",
            str("fmt"));
  if (q.contains("activation_scheme") && str("activation_scheme") != "dynamic")
    r.error("quantization_config.activation_scheme '{}' is not supported "
            "(only dynamic)",
            str("activation_scheme"));
  Fp8Config fp8;
  if (q.contains("weight_block_size")) {
    const json &b = q.at("weight_block_size");
    if (!b.is_array() || b.size() != 2 || !b[0].is_number_integer() ||
        !b[1].is_number_integer() || b[0].get<int64_t>() <= 0 ||
        b[1].get<int64_t>() <= 0) {
      r.error("quantization_config.weight_block_size must be two positive "
              "integers, got {}",
              describe(b));
      return;
    }
    fp8.blockRows = b[0].get<int64_t>();
    fp8.blockCols = b[1].get<int64_t>();
  }
  c.fp8 = fp8;
}

/// The total parameter count of a model of this shape (SEMANTICS.md 10),
/// in 128-bit arithmetic: every extent is below 2^31 and there are fewer
/// than 2^13 layers, so no intermediate overflows; the total must fit the
/// 64-bit counts the compiler uses, with room for bytes (x8).
void checkCounts(FieldReader &r, const ModelConfig &c) {
  using i128 = __int128;
  i128 H = c.hiddenSize, V = c.vocabSize, nh = c.numAttentionHeads;
  i128 dq = c.qHeadDim(), r_ = c.kvLoraRank, dr = c.qkRopeHeadDim;
  i128 attention = c.qLoraRank ? i128(*c.qLoraRank) * (H + 1 + nh * dq)
                               : nh * dq * H;
  attention += (r_ + dr) * H + r_ + nh * (c.qkNopeHeadDim + c.vHeadDim) * r_ +
               H * nh * c.vHeadDim;
  i128 expert = 3 * H * c.moeIntermediateSize;
  i128 moe = (i128(c.nRoutedExperts) + c.nSharedExperts) * expert +
             i128(c.nRoutedExperts) * H;
  i128 layers = i128(c.numHiddenLayers) + c.numNextnPredictLayers;
  i128 total = 2 * V * H + H + layers * (attention + 2 * H) +
               layers * (3 * H * c.intermediateSize + moe) +
               c.numNextnPredictLayers * (2 * H * H + 3 * H);
  if (total > i128(INT64_MAX / 8))
    r.error("the model is too large: its {} parameters would overflow 64-bit "
            "byte counts (hidden_size {}, num_hidden_layers {}, "
            "n_routed_experts {}, vocab_size {})",
            total > i128(INT64_MAX) ? std::string("> 2^63")
                                    : std::to_string(int64_t(total)),
            c.hiddenSize, c.numHiddenLayers, c.nRoutedExperts, c.vocabSize);
}

} // namespace

const char *toString(TopkMethod m) {
  switch (m) {
  case TopkMethod::Greedy: return "greedy";
  case TopkMethod::GroupLimitedGreedy: return "group_limited_greedy";
  case TopkMethod::NoauxTc: return "noaux_tc";
  }
  return "?";
}
const char *toString(Scoring s) {
  return s == Scoring::Sigmoid ? "sigmoid" : "softmax";
}
const char *toString(DType d) {
  switch (d) {
  case DType::F32: return "float32";
  case DType::BF16: return "bfloat16";
  case DType::F16: return "float16";
  }
  return "?";
}

bool ModelConfig::isMoeLayer(int64_t i) const {
  if (nRoutedExperts == 0)
    return false;
  if (i < firstKDenseReplace)
    return false;
  // HF (V2 and V3 alike) ignores moe_layer_freq: layer i is MoE iff
  // i >= first_k_dense_replace (SEMANTICS.md 1). The parser warns when it
  // is not 1.
  return true;
}

double ModelConfig::softmaxScale() const {
  double s = 1.0 / std::sqrt(double(qHeadDim()));
  if (rope.yarn && rope.mscaleAllDim != 0.0 && rope.factor > 1.0) {
    double m = 0.1 * rope.mscaleAllDim * std::log(rope.factor) + 1.0;
    s *= m * m;
  }
  return s;
}

std::optional<ModelConfig> parseModelConfig(const std::string &text,
                                            const std::string &source,
                                            std::vector<std::string> &errors) {
  size_t before = errors.size();
  json root;
  try {
    root = json::parse(text);
  } catch (const json::parse_error &e) {
    errors.push_back(fmt::format("{}: not valid JSON (at byte {}): {}", source,
                                 e.byte, e.what()));
    return std::nullopt;
  } catch (const json::exception &e) {
    // e.g. a number beyond the range of a double (1e999).
    errors.push_back(fmt::format("{}: not a usable JSON document: {}", source,
                                 e.what()));
    return std::nullopt;
  }
  if (!root.is_object()) {
    errors.push_back(source + ": must hold a JSON object, got " + describe(root));
    return std::nullopt;
  }
  FieldReader r(root, source, errors);
  ModelConfig c;
  c.source = source;

  std::optional<std::string> modelType = r.getString("model_type");
  if (!modelType) {
    if (errors.size() == before)
      r.error("model_type is missing (expected deepseek_v3 or deepseek_v2)");
    return std::nullopt;
  }
  c.modelType = *modelType;
  if (*modelType == "deepseek_v3") {
    c.family = ModelFamily::DeepseekV3;
  } else if (*modelType == "deepseek_v2") {
    c.family = ModelFamily::DeepseekV2;
  } else {
    r.error("model_type '{}' is not supported (expected deepseek_v3 or "
            "deepseek_v2)",
            *modelType);
    return std::nullopt;
  }
  bool v3 = c.family == ModelFamily::DeepseekV3;

  // Defaults: HF 5.17 DeepseekV3Config / DeepseekV2Config.
  c.vocabSize = r.getInt("vocab_size", v3 ? 129280 : 32000);
  c.hiddenSize = r.getInt("hidden_size", v3 ? 7168 : 4096);
  c.intermediateSize = r.getInt("intermediate_size", v3 ? 18432 : 11008);
  c.moeIntermediateSize = r.getInt("moe_intermediate_size", v3 ? 2048 : 1407);
  c.numHiddenLayers = r.getInt("num_hidden_layers", v3 ? 61 : 32);
  // The importer builds IR per layer; beyond a few thousand layers a config
  // is a typo, not a model.
  if (c.numHiddenLayers > 4096) {
    r.error("num_hidden_layers ({}) is absurdly large (limit 4096)",
            c.numHiddenLayers);
    c.numHiddenLayers = 1;
  }
  c.numAttentionHeads = r.getInt("num_attention_heads", v3 ? 128 : 32);
  std::optional<int64_t> kvHeads =
      r.getOptInt("num_key_value_heads", c.numAttentionHeads);
  if (kvHeads && *kvHeads != c.numAttentionHeads)
    r.error("num_key_value_heads ({}) must equal num_attention_heads ({}): "
            "MLA shares one latent across all heads, not grouped KV heads",
            *kvHeads, c.numAttentionHeads);
  c.qLoraRank = r.getOptInt("q_lora_rank", 1536);
  c.kvLoraRank = r.getInt("kv_lora_rank", 512);
  c.qkNopeHeadDim = r.getInt("qk_nope_head_dim", 128);
  c.qkRopeHeadDim = r.getInt("qk_rope_head_dim", 64);
  c.vHeadDim = r.getInt("v_head_dim", 128);
  if (c.qkRopeHeadDim % 2 != 0)
    r.error("qk_rope_head_dim ({}) must be even: RoPE rotates pairs",
            c.qkRopeHeadDim);

  // Mixture of experts.
  std::optional<int64_t> routed =
      r.getOptInt("n_routed_experts", v3 ? 256 : 64, 0);
  c.nRoutedExperts = routed.value_or(0);
  if (v3 && c.nRoutedExperts == 0)
    r.error("n_routed_experts must be a positive integer for model_type "
            "deepseek_v3 (every layer from first_k_dense_replace on is MoE)");
  c.nSharedExperts = r.getOptInt("n_shared_experts", v3 ? 1 : 2, 0).value_or(0);
  if (c.nRoutedExperts > 65536) {
    r.error("n_routed_experts ({}) is absurdly large (limit 65536)",
            c.nRoutedExperts);
    c.nRoutedExperts = 0;
  }
  c.numExpertsPerTok =
      r.getOptInt("num_experts_per_tok", v3 ? std::optional<int64_t>(8)
                                            : std::nullopt)
          .value_or(c.nRoutedExperts ? 0 : 1);
  c.firstKDenseReplace = r.getInt("first_k_dense_replace", v3 ? 3 : 0, 0);
  c.moeLayerFreq = r.getInt("moe_layer_freq", 1);
  if (c.moeLayerFreq != 1)
    c.warnings.push_back(fmt::format(
        "{}: moe_layer_freq ({}) is ignored, as Hugging Face transformers "
        "ignores it: every layer from first_k_dense_replace on is MoE "
        "(DeepSeek's original V2 code and vLLM would keep layer i dense unless "
        "i % {} == 0; a checkpoint made that way fails to bind, naming the "
        "missing tensors)",
        source, c.moeLayerFreq, c.moeLayerFreq));
  c.routedScalingFactor = r.getFloat("routed_scaling_factor", v3 ? 2.5 : 1.0);
  c.normTopkProb = r.getBool("norm_topk_prob", v3);
  c.auxLossAlpha = r.getFloat("aux_loss_alpha", v3 ? 0.0 : 0.001);

  std::optional<std::string> scoring = r.getString("scoring_func");
  std::optional<std::string> method = r.getString("topk_method");
  if (v3) {
    // HF V3 always scores with sigmoid and selects with noaux_tc.
    if (scoring && *scoring != "sigmoid")
      r.error("scoring_func '{}' is not supported for model_type deepseek_v3 "
              "(it always scores with sigmoid); use model_type deepseek_v2 for "
              "softmax routing",
              *scoring);
    if (method && *method != "noaux_tc")
      r.error("topk_method '{}' is not supported for model_type deepseek_v3 "
              "(it always selects with noaux_tc); use model_type deepseek_v2 "
              "for greedy or group_limited_greedy",
              *method);
    c.scoring = Scoring::Sigmoid;
    c.topkMethod = TopkMethod::NoauxTc;
  } else {
    if (scoring && *scoring != "softmax")
      r.error("scoring_func '{}' is not supported for model_type deepseek_v2 "
              "(it always scores with softmax)",
              *scoring);
    c.scoring = Scoring::Softmax;
    std::string m = method.value_or("greedy");
    if (m == "greedy")
      c.topkMethod = TopkMethod::Greedy;
    else if (m == "group_limited_greedy")
      c.topkMethod = TopkMethod::GroupLimitedGreedy;
    else
      r.error("topk_method '{}' is not supported for model_type deepseek_v2 "
              "(expected greedy or group_limited_greedy)",
              m);
  }
  bool grouped = c.topkMethod != TopkMethod::Greedy;
  std::optional<int64_t> nGroup =
      r.getOptInt("n_group", v3 ? std::optional<int64_t>(8) : std::nullopt);
  std::optional<int64_t> topkGroup =
      r.getOptInt("topk_group", v3 ? std::optional<int64_t>(4) : std::nullopt);
  bool groupsKnown = !grouped || (nGroup && topkGroup);
  if (c.nRoutedExperts > 0 && !groupsKnown)
    r.error("{} routing needs n_group and topk_group (got {} and {})",
            toString(c.topkMethod), nGroup ? std::to_string(*nGroup) : "null",
            topkGroup ? std::to_string(*topkGroup) : "null");
  c.nGroup = grouped ? nGroup.value_or(1) : 1;
  c.topkGroup = grouped ? topkGroup.value_or(1) : 1;

  if (c.nRoutedExperts > 0) {
    int64_t E = c.nRoutedExperts, G = c.nGroup, K = c.numExpertsPerTok;
    if (K < 1)
      r.error("num_experts_per_tok must be set to a positive integer when "
              "n_routed_experts ({}) is set",
              E);
    else if (K > E)
      r.error("num_experts_per_tok ({}) must be <= n_routed_experts ({})", K, E);
    else if (!groupsKnown)
      ; // reported above
    else if (E % G != 0)
      r.error("n_group ({}) must divide n_routed_experts ({})", G, E);
    else if (c.topkGroup > G)
      r.error("topk_group ({}) must be <= n_group ({})", c.topkGroup, G);
    else if (grouped && K > c.topkGroup * (E / G))
      r.error("num_experts_per_tok ({}) exceeds the {} experts of the "
              "topk_group ({}) kept groups of {} experts",
              K, c.topkGroup * (E / G), c.topkGroup, E / G);
    else if (c.topkMethod == TopkMethod::NoauxTc && E / G < 2)
      r.error("n_group ({}) leaves {} expert per group, but noaux_tc ranks a "
              "group by the sum of its two best experts",
              G, E / G);
    if (!(c.routedScalingFactor > 0))
      r.error("routed_scaling_factor ({}) must be positive",
              c.routedScalingFactor);
  }
  if (c.firstKDenseReplace > c.numHiddenLayers)
    r.error("first_k_dense_replace ({}) must be <= num_hidden_layers ({})",
            c.firstKDenseReplace, c.numHiddenLayers);

  // Everything else.
  if (auto act = r.getString("hidden_act"); act && *act != "silu")
    r.error("hidden_act '{}' is not supported (DeepSeek models use silu)",
            *act);
  c.rmsNormEps = r.getFloat("rms_norm_eps", 1e-6);
  if (!(c.rmsNormEps > 0))
    r.error("rms_norm_eps ({}) must be positive", c.rmsNormEps);
  c.attentionBias = r.getBool("attention_bias", false);
  c.tieWordEmbeddings = r.getBool("tie_word_embeddings", false);
  c.ropeInterleave = r.getBool("rope_interleave", true);
  if (!v3 && !c.ropeInterleave) {
    // HF's DeepseekV2 has no such field: it always rotates adjacent pairs.
    c.warnings.push_back(fmt::format(
        "{}: rope_interleave (false) is ignored for model_type deepseek_v2, as Hugging "
        "Face transformers ignores it: V2 always rotates adjacent pairs (SEMANTICS.md 5.5)",
        source));
    c.ropeInterleave = true;
  }
  c.maxPositionEmbeddings =
      r.getInt("max_position_embeddings", v3 ? 4096 : 2048);
  readRope(r, c);
  if (!(c.rope.theta > 1.0))
    r.error("rope_theta ({}) must be > 1", c.rope.theta);
  const char *mtpKey = r.has("num_nextn_predict_layers")
                           ? "num_nextn_predict_layers"
                           : "num_mtp_layers";
  c.numNextnPredictLayers = r.getOptInt(mtpKey, v3 ? 1 : 0, 0).value_or(0);
  if (c.numNextnPredictLayers > 16) {
    r.error("{} ({}) is absurdly large (limit 16)", mtpKey,
            c.numNextnPredictLayers);
    c.numNextnPredictLayers = 0;
  }
  if (!v3 && c.numNextnPredictLayers > 0)
    r.error("{} ({}) is not supported for model_type deepseek_v2 (MTP is a "
            "DeepSeek-V3 feature)",
            mtpKey, c.numNextnPredictLayers);
  if (c.numNextnPredictLayers > 0 && c.nRoutedExperts == 0)
    r.error("{} ({}) needs routed experts: an MTP block is always MoE", mtpKey,
            c.numNextnPredictLayers);

  const char *dtypeKey = r.has("torch_dtype") ? "torch_dtype" : "dtype";
  std::optional<std::string> dtype = r.getString(dtypeKey);
  std::string dt = dtype.value_or("bfloat16");
  if (dt == "float32")
    c.dtype = DType::F32;
  else if (dt == "bfloat16")
    c.dtype = DType::BF16;
  else if (dt == "float16")
    c.dtype = DType::F16;
  else
    r.error("{} '{}' is not supported (float32, bfloat16, float16)", dtypeKey,
            dt);
  readQuantization(r, c);
  if (errors.size() == before)
    checkCounts(r, c);
  if (errors.size() != before)
    return std::nullopt;
  return c;
}

static bool isDirectory(const std::string &path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

std::optional<ModelConfig> loadModelConfig(const std::string &spec,
                                           std::vector<std::string> &errors) {
  if (std::optional<std::string> text = presetText(spec))
    return parseModelConfig(*text, "preset '" + spec + "'", errors);
  std::string path = spec;
  if (isDirectory(path))
    path += "/config.json";
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    std::string names;
    for (const std::string &n : presetNames())
      names += (names.empty() ? "" : ", ") + n;
    errors.push_back(fmt::format("{}: cannot open (not a file, a directory "
                                 "holding config.json, or a preset: {})",
                                 path, names));
    return std::nullopt;
  }
  std::stringstream buffer;
  buffer << in.rdbuf();
  return parseModelConfig(buffer.str(), path, errors);
}

} // namespace dsv3
