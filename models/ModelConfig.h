//===- ModelConfig.h - a DeepSeek-V3-family model description ----*- C++ -*-===//
//
// The hyper-parameters of a model, read from a Hugging Face config.json
// (model_type deepseek_v3 or deepseek_v2) with the hub's field names and
// HF 5.17 defaults (SEMANTICS.md 1). No MLIR here: the runtime may reuse it.
//
//===----------------------------------------------------------------------===//
#ifndef DSV3_MODELS_MODELCONFIG_H
#define DSV3_MODELS_MODELCONFIG_H

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace dsv3 {

enum class ModelFamily { DeepseekV3, DeepseekV2 };
enum class Scoring { Sigmoid, Softmax };
enum class TopkMethod { Greedy, GroupLimitedGreedy, NoauxTc };
enum class DType { F32, BF16, F16 };

struct RopeConfig {
  double theta = 10000.0;
  bool yarn = false;
  double factor = 0.0; // YaRN only
  int64_t originalMaxPositions = 0;
  double betaFast = 32.0, betaSlow = 1.0;
  double mscale = 0.0, mscaleAllDim = 0.0; // 0 = absent
  std::optional<double> attentionFactor;
  bool truncate = true;
};

struct Fp8Config {
  int64_t blockRows = 128, blockCols = 128;
};

struct ModelConfig {
  std::string source; // where it came from, for diagnostics
  /// Fields read but not followed the way a reader might expect, one
  /// message each ("config.json: moe_layer_freq (2) is ignored ..."); the
  /// compiler prints them as warnings.
  std::vector<std::string> warnings;
  ModelFamily family = ModelFamily::DeepseekV3;
  std::string modelType = "deepseek_v3";

  int64_t vocabSize = 129280;
  int64_t hiddenSize = 7168;
  int64_t intermediateSize = 18432;
  int64_t moeIntermediateSize = 2048;
  int64_t numHiddenLayers = 61;
  int64_t numAttentionHeads = 128;
  std::optional<int64_t> qLoraRank = 1536;
  int64_t kvLoraRank = 512;
  int64_t qkNopeHeadDim = 128;
  int64_t qkRopeHeadDim = 64;
  int64_t vHeadDim = 128;

  int64_t nRoutedExperts = 256; // 0: no MoE layers
  int64_t nSharedExperts = 1;
  int64_t numExpertsPerTok = 8;
  int64_t nGroup = 8;
  int64_t topkGroup = 4;
  int64_t firstKDenseReplace = 3;
  int64_t moeLayerFreq = 1;
  double routedScalingFactor = 2.5;
  bool normTopkProb = true;
  Scoring scoring = Scoring::Sigmoid;
  TopkMethod topkMethod = TopkMethod::NoauxTc;
  double auxLossAlpha = 0.0;

  double rmsNormEps = 1e-6;
  bool attentionBias = false;
  bool tieWordEmbeddings = false;
  bool ropeInterleave = true;
  int64_t maxPositionEmbeddings = 4096;
  RopeConfig rope;
  int64_t numNextnPredictLayers = 1; // MTP depth
  DType dtype = DType::BF16;
  std::optional<Fp8Config> fp8;

  /// Is decoder layer `i` (0-based, < numHiddenLayers) a MoE layer?
  bool isMoeLayer(int64_t i) const;
  int64_t qHeadDim() const { return qkNopeHeadDim + qkRopeHeadDim; }
  /// The softmax scale of attention (SEMANTICS.md 3.5).
  double softmaxScale() const;
};

/// Parses and validates `text` (the contents of a config.json). `source`
/// names it in diagnostics ("path/config.json: n_group (3) must divide
/// n_routed_experts (256)"). On failure returns nullopt and appends one
/// message per problem to `errors`.
std::optional<ModelConfig> parseModelConfig(const std::string &text,
                                            const std::string &source,
                                            std::vector<std::string> &errors);

/// Loads a model description: a preset name (see `presetNames`), a
/// config.json file, or a directory holding one.
std::optional<ModelConfig> loadModelConfig(const std::string &spec,
                                           std::vector<std::string> &errors);

/// Names of the built-in presets (models/presets/*.json).
std::vector<std::string> presetNames();
/// The config.json text of preset `name`, or nullopt.
std::optional<std::string> presetText(const std::string &name);

const char *toString(TopkMethod m);
const char *toString(Scoring s);
const char *toString(DType d);

} // namespace dsv3

#endif // DSV3_MODELS_MODELCONFIG_H
