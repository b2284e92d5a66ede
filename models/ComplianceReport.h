//===- ComplianceReport.h - a model description against DeepSeek-V3 -*- C++ -*-===//
//
// `dsv3c --report`: each architectural choice of a model description next
// to DeepSeek-V3 as published (the technical report, arXiv 2412.19437, and
// its released config), with every deviation flagged and its consequence
// stated. No MLIR: the parameter counts come in from the caller.
//
//===----------------------------------------------------------------------===//
#ifndef DSV3_MODELS_COMPLIANCEREPORT_H
#define DSV3_MODELS_COMPLIANCEREPORT_H

#include "models/ModelConfig.h"

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace dsv3 {

struct ReportRow {
  std::string section; // "attention", "moe", ...
  std::string item;
  std::string configured, paper;
  /// A deviation of size only (same structure, other widths or counts), or
  /// of structure (a different mechanism).
  enum class Status { Match, Size, Structure } status = Status::Match;
  std::string consequence; // empty when it matches
};

struct ParamTotals {
  /// Main model: every parameter, and those one token uses.
  int64_t total = 0, activated = 0;
  /// The MTP modules as the checkpoint stores them (their own embedding and
  /// head copies included, as the paper's 14B counts them).
  int64_t mtp = 0;
};

struct ComplianceReport {
  std::string model;
  std::vector<ReportRow> rows;
  /// "DeepSeek-V3 as published", "the DeepSeek-V3 architecture at other
  /// sizes", or "a DeepSeek-family model with structural deviations".
  std::string verdict;
  int sizeDeviations = 0, structuralDeviations = 0;
};

ComplianceReport buildComplianceReport(const ModelConfig &c,
                                       const std::optional<ParamTotals> &params);
std::string reportMarkdown(const ComplianceReport &r);
std::string reportJson(const ComplianceReport &r);

} // namespace dsv3

#endif // DSV3_MODELS_COMPLIANCEREPORT_H
