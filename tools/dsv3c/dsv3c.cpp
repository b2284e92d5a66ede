//===- dsv3c.cpp - the dsv3 compiler driver -------------------------------===//
//
// dsv3c MODEL [-o OUT] [--mode infer|train] [--dump-ir-dir DIR] [--stats]
//
// MODEL is a preset name, a Hugging Face config.json, or a directory holding
// one. The driver imports it into the dsv3 dialect, verifies it, runs the
// pipeline of the mode (the same functions dsv3-opt registers), and writes
// the result. Standard MLIR flags (--mlir-print-ir-after-all, ...) work.
//
//===----------------------------------------------------------------------===//

#include "models/ModelBuilder.h"
#include "models/ModelConfig.h"
#include "models/ComplianceReport.h"
#include "runtime/Progress.h"

#include <chrono>
#include "passes/ParamStats.h"
#include "passes/Passes.h"
#include "codegen/ArtifactWriter.h"

#include "dialects/Dsv3/IR/Dsv3Dialect.h"
#include "dialects/Dsv3/IR/Dsv3Ops.h"
#include "dialects/Dsv3K/IR/Dsv3KOps.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/AsmState.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/IR/Verifier.h"
#include "mlir/Pass/PassManager.h"
#include "mlir/Support/FileUtilities.h"
#include "llvm/ADT/Statistic.h"
#include "llvm/Support/CommandLine.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/FormatVariadic.h"
#include "llvm/Support/InitLLVM.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/ToolOutputFile.h"
#include "llvm/Support/raw_ostream.h"

using namespace mlir;
namespace cl = llvm::cl;

namespace {
cl::OptionCategory category("dsv3c options");

cl::opt<std::string> modelSpec(cl::Positional, cl::desc("<model>"),
                               cl::value_desc("preset | config.json | dir"),
                               cl::cat(category));
cl::opt<std::string> outputDir(
    "o", cl::desc("artifact directory to write (the final IR is OUT/model.mlir); "
                  "without it the final IR goes to stdout"),
    cl::value_desc("dir"), cl::cat(category));
enum class Mode { Infer, Train };
cl::opt<Mode> mode("mode", cl::desc("what to compile"), cl::init(Mode::Infer),
                   cl::values(clEnumValN(Mode::Infer, "infer",
                                         "forward, loss and decode entries"),
                              clEnumValN(Mode::Train, "train",
                                         "also the gradients and the "
                                         "train_step entries (autodiff, "
                                         "AdamW, bias balancing)")),
                   cl::cat(category));
cl::opt<std::string> dumpIrDir(
    "dump-ir-dir",
    cl::desc("write the IR after import and after every pass, one numbered "
             "file each (00-import.mlir, 01-<pass>.mlir, ...)"),
    cl::value_desc("dir"), cl::cat(category));
cl::OptionCategory mlirCategory("MLIR options (as in mlir-opt)");

/// libLLVM registers hundreds of codegen flags in the general category; show
/// only ours and MLIR's own (--mlir-print-ir-after-all, ...).
void showOnlyRelevantOptions() {
  cl::HideUnrelatedOptions({&category});
  for (auto &entry : cl::getRegisteredOptions()) {
    if (!entry.first.starts_with("mlir-"))
      continue;
    entry.second->addCategory(mlirCategory);
    entry.second->setHiddenFlag(cl::NotHidden);
  }
}

/// `--stats` is LLVM's own statistics flag (a second option of that name
/// cannot be registered); dsv3c adopts it, and LLVM's counters, which the
/// compiler does not use, stay empty.
void adoptStatsFlag() {
  auto &options = cl::getRegisteredOptions();
  auto it = options.find("stats");
  if (it == options.end())
    return;
  it->second->setDescription("print total and activated-per-token parameter "
                             "counts with a breakdown");
  it->second->addCategory(category);
  it->second->setHiddenFlag(cl::NotHidden);
}
enum class StatsFormat { Table, Json };
cl::opt<StatsFormat> statsFormat(
    "stats-format", cl::desc("how --stats prints"), cl::init(StatsFormat::Table),
    cl::values(clEnumValN(StatsFormat::Table, "table", "a table for people"),
               clEnumValN(StatsFormat::Json, "json", "JSON for scripts")),
    cl::cat(category));
cl::opt<bool> quiet("quiet", cl::desc("no progress output"), cl::cat(category));
cl::opt<bool> logJson("log-json",
                      cl::desc("progress and stage timings as JSON lines on stderr"),
                      cl::cat(category));

/// Compilation progress: one stage per pass (a live line on a terminal, a
/// final line for compiles of 2 s or more, or a JSON record per stage with
/// its time under --log-json).
struct StageProgress : public PassInstrumentation {
  StageProgress(dsv3rt::Progress &progress) : progress(progress) {}
  void runBeforePass(Pass *pass, Operation *) override {
    start = std::chrono::steady_clock::now();
    progress.update(double(done), pass->getArgument().str());
  }
  void runAfterPass(Pass *pass, Operation *) override {
    double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() -
                                                          start)
                    .count();
    dsv3rt::logEvent("stage", "", {{"stage", pass->getArgument().str()}, {"ms", ms}});
    ++done;
  }
  dsv3rt::Progress &progress;
  std::chrono::steady_clock::time_point start;
  int64_t done = 1; // the import
};

enum class ReportFormat { None, Markdown, Json };
cl::opt<ReportFormat> report(
    "report", cl::ValueOptional, cl::cat(category),
    cl::desc("print a compliance report of the model against DeepSeek-V3 as "
             "published (each choice vs the paper, deviations and their "
             "consequences) and stop, unless -o is given"),
    cl::init(ReportFormat::None),
    cl::values(clEnumValN(ReportFormat::Markdown, "", "Markdown (the default)"),
               clEnumValN(ReportFormat::Markdown, "md", "Markdown"),
               clEnumValN(ReportFormat::Json, "json", "JSON")));

cl::opt<bool> listPresets("list-presets", cl::desc("list the built-in models"),
                          cl::cat(category));
enum class Emit { Dsv3, Kernels, Cuda };
cl::opt<Emit> emit(
    "emit", cl::desc("how far to compile"), cl::init(Emit::Kernels),
    cl::values(clEnumValN(Emit::Dsv3, "dsv3",
                          "stop at the verified, canonical dsv3 module"),
               clEnumValN(Emit::Kernels, "kernels",
                          "lower to kernel launches and plan memory (needed "
                          "for -o)"),
               clEnumValN(Emit::Cuda, "cuda",
                          "print the CUDA source of the kernels (the "
                          "templates and the instances NVRTC compiles)")),
    cl::cat(category));
cl::opt<bool> fuseLoss(
    "fuse-lm-head-loss",
    cl::desc("--mode train: each loss's lm_head fused into its cross entropy "
             "(dsv3-fuse-lm-head-loss; no full-vocabulary logits stored); "
             "default on for the host target, off for cuda (where the "
             "backward's recomputed logits cost more time than the stored "
             "ones)"),
    cl::init(true), cl::cat(category));
cl::opt<bool> saveAttention(
    "save-attention-state",
    cl::desc("--mode train: each latent attention keeps its output and "
             "log-sum-exp for its backward instead of the backward running "
             "the attention again (dsv3-save-attention-state)"),
    cl::init(true), cl::cat(category));
enum class Target { Host, Cuda };
cl::opt<Target> target(
    "target", cl::desc("what the artifact carries"), cl::init(Target::Host),
    cl::values(clEnumValN(Target::Host, "host",
                          "the manifest (the host backend runs it)"),
               clEnumValN(Target::Cuda, "cuda",
                          "also CUDA kernels compiled with NVRTC (cubin and "
                          "PTX, see --cuda-arch)")),
    cl::cat(category));
cl::list<std::string> cudaArchs(
    "cuda-arch",
    cl::desc("NVRTC targets of --target cuda: sm_XX[a] gives a cubin, "
             "compute_XX PTX (default sm_90a,compute_80)"),
    cl::CommaSeparated, cl::cat(category));
enum class DTypeChoice { Config, F32, BF16 };
cl::opt<DTypeChoice> dtype(
    "dtype", cl::desc("element type of the weights and activations"),
    cl::init(DTypeChoice::Config),
    cl::values(clEnumValN(DTypeChoice::Config, "config",
                          "the config's torch_dtype (default)"),
               clEnumValN(DTypeChoice::F32, "f32", "float32"),
               clEnumValN(DTypeChoice::BF16, "bf16",
                          "bfloat16 (fp32 checkpoints are rounded at load)")),
    cl::cat(category));
cl::opt<int64_t> maxBatch(
    "max-batch", cl::desc("largest batch the buffers are planned for"),
    cl::init(4), cl::cat(category));
cl::opt<int64_t> maxSeq(
    "max-seq",
    cl::desc("largest sequence and decode cache length the buffers are planned "
             "for (default: max_position_embeddings, at most 4096)"),
    cl::init(0), cl::cat(category));
cl::opt<int64_t> expertParallel(
    "ep",
    cl::desc("expert parallelism over N ranks (dsv3-partition-experts: routed experts split "
             "contiguously, tokens exchanged by all-to-all; the artifact runs with "
             "dsv3-run launch --nproc N); with --stats: what each rank holds in parameters, "
             "bf16 and FP8 bytes, and how much latent KV cache fits beside it on 80 and "
             "141 GB GPUs"),
    cl::init(0), cl::cat(category));
cl::opt<double> epCapacity(
    "ep-capacity",
    cl::desc("with --ep: the rows a rank may receive, as a multiple of the rows it "
             "dispatches (the memory plan holds that many; more fails at run time naming "
             "the bound); default 0: the worst case, N times"),
    cl::init(0), cl::cat(category));
cl::opt<std::string> epPlacement(
    "ep-placement",
    cl::desc("with --ep: place the experts on the ranks from a JSON file (redundant copies "
             "of hot experts allowed; dsv3-run placement makes one from measured loads; "
             "inference only); default: contiguous"),
    cl::init(""), cl::cat(category));
cl::opt<int64_t> dataParallel(
    "dp",
    cl::desc("data-parallel ranks (default: --ep): each rank runs its own tokens through "
             "the replicated layers; a multiple of --ep makes dp/ep expert-parallel groups "
             "(host backend; the NCCL path needs dp = ep so far)"),
    cl::init(0), cl::cat(category));
cl::opt<std::string> quantize(
    "quantize",
    cl::desc("fp8: store the attention, dense-MLP and expert weights as e4m3 with "
             "128x128 block scales (the config's weight_block_size) and run their GEMMs in "
             "FP8 with per-token 1x128 activation scales (dsv3-quantize-fp8); with --mode "
             "train, FP8 training: fp32 master weights, every such GEMM (forward, Dgrad, "
             "Wgrad) on FP8-quantized operands (host backend)"),
    cl::init(""), cl::cat(category));
cl::opt<std::string> kvCache(
    "kv-cache",
    cl::desc("f32 (default), bf16 or fp8: how the decode latent cache keeps a token's row; "
             "fp8 is e4m3 latents with one fp32 scale per token and the rope key in bf16 "
             "(dsv3-quantize-kv-cache)"),
    cl::init("f32"), cl::cat(category));
cl::opt<int64_t> maxTokens(
    "max-tokens",
    cl::desc("most tokens (batch x sequence) one forward/decode call carries: the "
             "activations are planned for this many rows instead of max-batch x "
             "max-seq, the decode caches still for max-batch x max-seq "
             "(generate prefills longer prompts in chunks; 0 = no budget)"),
    cl::init(0), cl::cat(category));
cl::opt<double> balanceAlpha(
    "balance-alpha",
    cl::desc("alpha of the load-balancing loss in the training loss "
             "(sequence-wise for sigmoid routing, expert-level for softmax; "
             "--mode train only; 0 = off)"),
    cl::init(1e-4), cl::cat(category));
cl::opt<double> weightDecay("weight-decay",
                            cl::desc("AdamW decoupled weight decay (matrices)"),
                            cl::init(0.1), cl::cat(category));
cl::opt<double> maxGradNorm("max-grad-norm",
                            cl::desc("global gradient-norm clipping (0 = off)"),
                            cl::init(1.0), cl::cat(category));
cl::opt<double> biasUpdateRate(
    "bias-update-rate",
    cl::desc("gamma of the aux-loss-free bias update (0 = off)"),
    cl::init(1e-3), cl::cat(category));
cl::opt<std::string> optimizerState(
    "optimizer-state",
    cl::desc("--mode train: element type of the AdamW moments, f32 or bf16 (DeepSeek-V3 "
             "3.3.3 tracks them in BF16; master weights and gradients stay fp32)"),
    cl::init("f32"), cl::cat(category));
cl::opt<std::string> recompute(
    "recompute",
    cl::desc("--mode train: recompute these units' forward in the backward instead of "
             "keeping their activations (\"all\" or layer indices \"1,2\"; "
             "dsv3-recompute-activations)"),
    cl::init(""), cl::cat(category));
cl::opt<int64_t> activationBudget(
    "activation-budget",
    cl::desc("--mode train: recompute the units that keep the most activations until "
             "the estimate fits this many bytes (the plan's real peak: --stats)"),
    cl::init(0), cl::cat(category));
cl::opt<std::string> recomputeScope(
    "recompute-scope",
    cl::desc("--mode train: a recomputed unit is a layer (default), its attention or "
             "its mlp"),
    cl::init("layer"), cl::cat(category));
cl::opt<double> mtpLambda("mtp-lambda",
                          cl::desc("weight of the multi-token-prediction loss"),
                          cl::init(0.3), cl::cat(category));

/// Writes the IR after each pass into its own numbered file.
class DumpDirPrinter : public PassManager::IRPrinterConfig {
public:
  DumpDirPrinter(std::string dir, unsigned firstIndex)
      : IRPrinterConfig(/*printModuleScope=*/true), dir(std::move(dir)),
        index(firstIndex) {}

  void printAfterIfEnabled(Pass *pass, Operation *op,
                           PrintCallbackFn print) override {
    std::string name = pass->getArgument().str();
    if (name.empty())
      name = pass->getName().str();
    std::string path =
        llvm::formatv("{0}/{1:02}-{2}.mlir", dir, index++, name).str();
    std::error_code ec;
    llvm::raw_fd_ostream os(path, ec);
    if (ec) {
      llvm::errs() << "dsv3c: error: cannot write " << path << ": "
                   << ec.message() << "\n";
      return;
    }
    print(os);
  }

private:
  std::string dir;
  unsigned index;
};

LogicalResult writeFile(const std::string &path, ModuleOp module) {
  std::string error;
  auto file = openOutputFile(path, &error);
  if (!file) {
    llvm::errs() << "dsv3c: error: " << error << "\n";
    return failure();
  }
  module.print(file->os());
  file->os() << "\n"; // as mlir-opt ends its output
  file->keep();
  return success();
}

LogicalResult makeDir(const std::string &dir) {
  if (std::error_code ec = llvm::sys::fs::create_directories(dir)) {
    llvm::errs() << "dsv3c: error: cannot create directory " << dir << ": "
                 << ec.message() << "\n";
    return failure();
  }
  return success();
}
/// What the compiled artifact stores (after dsv3-quantize-fp8): bytes of
/// its parameters by element type (e4m3 weights, their f32 block scales, the
/// rest in the model's dtype); tied copies and optimizer moments excluded.
void printArtifactWeights(ModuleOp module, llvm::raw_ostream &os) {
  if (!module->hasAttr("dsv3.quantization"))
    return;
  int64_t fp8 = 0, scales = 0, rest = 0;
  for (auto param : module.getOps<mlir::dsv3::ParamOp>()) {
    if (param.getTiedTo() || param.getRole() == mlir::dsv3::ParamRole::OptimizerState)
      continue;
    auto type = param.getTensorType();
    int64_t bytes = type.getNumElements() * int64_t(type.getElementTypeBitWidth() / 8) *
                    param.getNumShards();
    if (param.getRole() == mlir::dsv3::ParamRole::WeightScale)
      scales += bytes;
    else if (isa<Float8E4M3FNType>(type.getElementType()))
      fp8 += bytes;
    else
      rest += bytes;
  }
  os << llvm::formatv("  FP8 artifact weights: {0} bytes ({1} e4m3, {2} block scales, {3} "
                      "in the model's dtype)\n",
                      fp8 + scales + rest, fp8, scales, rest);
}

/// What a training artifact's AdamW moments take (two per trainable
/// parameter, fp32 or bf16: --optimizer-state), beside the memory plans.
void printOptimizerState(ModuleOp module, llvm::raw_ostream &os) {
  int64_t bytes = 0, count = 0;
  std::string types;
  for (auto param : module.getOps<mlir::dsv3::ParamOp>()) {
    if (param.getRole() != mlir::dsv3::ParamRole::OptimizerState)
      continue;
    auto type = param.getTensorType();
    bytes += type.getNumElements() * int64_t(type.getElementTypeBitWidth() / 8) *
             param.getNumShards();
    ++count;
    std::string name;
    llvm::raw_string_ostream(name) << type.getElementType();
    if (types.find(name) == std::string::npos)
      types += (types.empty() ? "" : ", ") + name;
  }
  if (count)
    os << llvm::formatv("  optimizer state: {0} AdamW moments ({1}), {2} bytes\n", count,
                        types, bytes);
}

/// The arena of each entry function after memory planning.
void printMemoryPlan(ModuleOp module, llvm::raw_ostream &os) {
  for (auto func : module.getOps<func::FuncOp>()) {
    auto arena = func->getAttrOfType<IntegerAttr>("dsv3k.arena_bytes");
    auto unplanned = func->getAttrOfType<IntegerAttr>("dsv3k.unplanned_bytes");
    if (!arena || !unplanned)
      continue;
    os << llvm::formatv("  memory plan of {0}: peak {1} bytes ({2} without "
                        "reuse, {3:F1}x saved)\n",
                        func.getName(), arena.getInt(), unplanned.getInt(),
                        arena.getInt() ? double(unplanned.getInt()) /
                                             double(arena.getInt())
                                       : 1.0);
    if (auto units = func->getAttrOfType<ArrayAttr>("dsv3.recomputed")) {
      std::string names;
      for (Attribute a : units)
        names += (names.empty() ? "" : ", ") + cast<StringAttr>(a).getValue().str();
      os << llvm::formatv("    recomputed in the backward: {0}\n",
                          names.empty() ? std::string("none") : names);
    }
  }
}

/// The decode entry's latent caches: how many (a layer each, the MTP
/// depths' included) and the bytes a token takes in each, as stored
/// (`--kv-cache`): f32 4 W, bf16 2 W, fp8 r + 2 dr + 4 (e4m3 latent, bf16
/// rope key, fp32 scale), W = r + dr.
void printLatentCache(ModuleOp module, int64_t maxBatch, int64_t maxSeq,
                      llvm::raw_ostream &os) {
  for (auto func : module.getOps<func::FuncOp>()) {
    auto entry = func->getAttrOfType<StringAttr>("dsv3.entry");
    if (!entry || entry.getValue() != "decode")
      continue;
    int64_t caches = 0, bytes = 0;
    std::string storage = "f32";
    func.walk([&](mlir::dsv3k::LaunchOp launch) {
      if (launch.getKernel() != "latent_attention_decode")
        return;
      DictionaryAttr p = launch.getParams();
      auto geti = [&](StringRef name) {
        auto a = p.getAs<IntegerAttr>(name);
        return a ? a.getInt() : 0;
      };
      int64_t r = geti("kv_lora_rank"), dr = geti("qk_rope_head_dim");
      auto kind = mlir::dsv3::symbolizeCacheStorage(uint32_t(geti("cache_storage")));
      storage = kind ? mlir::dsv3::stringifyCacheStorage(*kind).str() : "f32";
      bytes += storage == "fp8" ? r + 2 * dr + 4 : (storage == "bf16" ? 2 : 4) * (r + dr);
      ++caches;
    });
    if (!caches)
      continue;
    os << llvm::formatv("  latent cache ({0}): {1} caches, {2} bytes a token; {3:F1} MB at "
                        "max-batch {4} x max-seq {5}",
                        storage, caches, bytes,
                        double(bytes) * double(maxBatch * maxSeq) / 1e6, maxBatch, maxSeq);
    os << (storage == "f32" ? "\n"
                            : " on a device that stores it so (the host backend keeps the "
                              "rounded values in f32)\n");
  }
}

/// Reads `--stats` and switches LLVM's statistics back off, so that LLVM
/// does not report on its (unused, compiled-out) counters at exit.
bool consumeStatsFlag() {
  bool enabled = llvm::AreStatisticsEnabled();
  auto &options = cl::getRegisteredOptions();
  auto it = options.find("stats");
  if (enabled && it != options.end())
    static_cast<cl::opt<bool, true> *>(it->second)->setValue(false);
  return enabled;
}
} // namespace

int main(int argc, char **argv) {
  llvm::InitLLVM init(argc, argv);
  registerAsmPrinterCLOptions();
  registerMLIRContextCLOptions();
  registerPassManagerCLOptions();
  showOnlyRelevantOptions();
  adoptStatsFlag();
  cl::ParseCommandLineOptions(
      argc, argv,
      "dsv3c: compile a DeepSeek-V3-family model\n\n"
      "  MODEL is a preset (--list-presets), a Hugging Face config.json, or a\n"
      "  directory holding one.\n");

  if (listPresets) {
    for (const std::string &name : ::dsv3::presetNames())
      llvm::outs() << name << "\n";
    return 0;
  }
  if (modelSpec.empty()) {
    llvm::errs() << "dsv3c: error: no model given (a preset name, a "
                    "config.json or a directory; see --help)\n";
    return 2;
  }

  if (quiet)
    dsv3rt::logMode() = dsv3rt::LogMode::Quiet;
  else if (logJson)
    dsv3rt::logMode() = dsv3rt::LogMode::Json;
  auto importStart = std::chrono::steady_clock::now();
  std::vector<std::string> errors;
  std::optional<::dsv3::ModelConfig> config =
      ::dsv3::loadModelConfig(modelSpec, errors);
  if (!config) {
    for (const std::string &e : errors)
      llvm::errs() << "dsv3c: error: " << e << "\n";
    return 1;
  }
  for (const std::string &w : config->warnings)
    llvm::errs() << "dsv3c: warning: " << w << "\n";

  if (dtype == DTypeChoice::F32)
    config->dtype = ::dsv3::DType::F32;
  else if (dtype == DTypeChoice::BF16)
    config->dtype = ::dsv3::DType::BF16;

  DialectRegistry registry;
  registry.insert<mlir::dsv3::Dsv3Dialect, mlir::dsv3k::Dsv3KDialect,
                  func::FuncDialect>();
  MLIRContext context(registry);
  context.loadAllAvailableDialects();
  ::dsv3::BuildOptions buildOptions;
  buildOptions.mtpLambda = mtpLambda;
  buildOptions.balanceAlpha = mode == Mode::Train ? double(balanceAlpha) : 0.0;
  OwningOpRef<ModuleOp> module =
      ::dsv3::buildModelModule(context, *config, buildOptions);
  if (failed(verify(*module))) {
    llvm::errs() << "dsv3c: error: the imported module of " << config->source
                 << " does not verify\n";
    return 1;
  }

  // Parameters are counted on the dsv3 module (the lowering replaces the
  // routing ops the activated counts are read from).
  bool stats = consumeStatsFlag();
  if (expertParallel.getNumOccurrences() && expertParallel < 1) {
    llvm::errs() << "dsv3c: error: --ep N needs N >= 1, got " << expertParallel << "\n";
    return 2;
  }
  if (optimizerState != "f32" && optimizerState != "bf16") {
    llvm::errs() << "dsv3c: error: --optimizer-state takes f32 or bf16, got '"
                 << optimizerState << "'\n";
    return 2;
  }
  if (!quantize.empty() && quantize != "fp8") {
    llvm::errs() << "dsv3c: error: --quantize takes fp8, got '" << quantize << "'\n";
    return 2;
  }
  if (kvCache != "f32" && kvCache != "bf16" && kvCache != "fp8") {
    llvm::errs() << "dsv3c: error: --kv-cache takes f32, bf16 or fp8, got '" << kvCache
                 << "'\n";
    return 2;
  }
  if (kvCache != "f32" && mode == Mode::Train) {
    llvm::errs() << "dsv3c: error: --kv-cache is for inference artifacts (training has no "
                    "decode cache)\n";
    return 2;
  }
  if (dataParallel.getNumOccurrences() && dataParallel < 1) {
    llvm::errs() << "dsv3c: error: --dp M needs M >= 1, got " << dataParallel << "\n";
    return 2;
  }
  FailureOr<mlir::dsv3::ParamStats> paramCounts;
  if ((stats || report != ReportFormat::None) &&
      failed(paramCounts = mlir::dsv3::computeParamStats(*module)))
    return 1;
  if (report != ReportFormat::None) {
    ::dsv3::ParamTotals totals{paramCounts->mainTotal.total,
                               paramCounts->mainTotal.activated,
                               paramCounts->mtp.total + paramCounts->mtpShared};
    ::dsv3::ComplianceReport r = ::dsv3::buildComplianceReport(*config, totals);
    llvm::outs() << (report == ReportFormat::Json ? ::dsv3::reportJson(r)
                                                  : ::dsv3::reportMarkdown(r));
    if (outputDir.empty())
      return 0;
  }

  if (!dumpIrDir.empty()) {
    if (failed(makeDir(dumpIrDir)) ||
        failed(writeFile(dumpIrDir + "/00-import.mlir", *module)))
      return 1;
  }

  PassManager pm(&context, ModuleOp::getOperationName());
  if (failed(applyPassManagerCLOptions(pm)))
    return 1;
  if (!dumpIrDir.empty()) {
    // IR printing needs a single-threaded context (the files are numbered in
    // pass order).
    context.disableMultithreading();
    pm.enableIRPrinting(std::make_unique<DumpDirPrinter>(dumpIrDir, 1));
  }
  mlir::dsv3::PipelineOptions pipelineOptions;
  pipelineOptions.maxBatch = maxBatch;
  pipelineOptions.maxTokens = maxTokens;
  pipelineOptions.lowerToKernels = emit != Emit::Dsv3;
  pipelineOptions.weightDecay = weightDecay;
  pipelineOptions.maxGradNorm = maxGradNorm;
  pipelineOptions.biasUpdateRate = biasUpdateRate;
  pipelineOptions.optimizerState = optimizerState;
  pipelineOptions.recompute = recompute;
  pipelineOptions.activationBudget = activationBudget;
  pipelineOptions.recomputeScope = recomputeScope;
  pipelineOptions.ep = expertParallel; // 0: not given
  pipelineOptions.epCapacity = epCapacity;
  pipelineOptions.epPlacement = epPlacement;
  pipelineOptions.dp = dataParallel;
  pipelineOptions.quantize = quantize;
  pipelineOptions.kvCache = kvCache;
  // On the GPU the fused backward recomputes the logits (+14 ms a step at
  // 1 x 4096 and +65 ms at 4 x 4096 on the bench's training slice, H200):
  // opt-in there.
  pipelineOptions.fuseLmHeadLoss =
      fuseLoss.getNumOccurrences() ? bool(fuseLoss) : target != Target::Cuda;
  pipelineOptions.saveAttentionState = saveAttention;
  if (config->fp8) {
    pipelineOptions.fp8BlockRows = config->fp8->blockRows;
    pipelineOptions.fp8BlockCols = config->fp8->blockCols;
  }
  if (!outputDir.empty() && emit == Emit::Dsv3) {
    llvm::errs() << "dsv3c: error: -o writes an artifact, which needs "
                    "--emit=kernels\n";
    return 2;
  }
  pipelineOptions.maxSeq =
      maxSeq > 0 ? int64_t(maxSeq)
                 : std::min<int64_t>(config->maxPositionEmbeddings, 4096);
  if (mode == Mode::Train)
    mlir::dsv3::buildDsv3TrainPipeline(pm, pipelineOptions);
  else
    mlir::dsv3::buildDsv3InferPipeline(pm, pipelineOptions);
  dsv3rt::logEvent("stage", "",
                   {{"stage", "import"},
                    {"ms", std::chrono::duration<double, std::milli>(
                               std::chrono::steady_clock::now() - importStart)
                               .count()}});
  // Stages: the import, each pass, and writing the artifact (NVRTC).
  dsv3rt::Progress progress("compiling " + config->source,
                            double(pm.size() + 1 + (outputDir.empty() ? 0 : 1)), "stages");
  pm.addInstrumentation(std::make_unique<StageProgress>(progress));
  if (failed(pm.run(*module))) {
    llvm::errs() << "dsv3c: error: the pipeline failed on " << config->source
                 << "\n";
    return 1;
  }

  if (stats) {
    if (statsFormat == StatsFormat::Table) {
      llvm::outs() << "model: " << config->source << " (" << config->modelType
                   << ", " << config->numHiddenLayers << " layers";
      if (config->nRoutedExperts)
        llvm::outs() << ", " << config->nRoutedExperts
                     << " routed experts top-" << config->numExpertsPerTok;
      llvm::outs() << ")\n";
    }
    mlir::dsv3::printParamStats(*paramCounts, llvm::outs(),
                                statsFormat == StatsFormat::Json);
    if (statsFormat == StatsFormat::Table) {
      printMemoryPlan(*module, llvm::outs());
      printOptimizerState(*module, llvm::outs());
      printLatentCache(*module, pipelineOptions.maxBatch, pipelineOptions.maxSeq,
                       llvm::outs());
      printArtifactWeights(*module, llvm::outs());
    }
    if (expertParallel > 0) {
      int64_t arena = 0;
      for (auto func : module->getOps<mlir::func::FuncOp>())
        if (auto kind = func->getAttrOfType<mlir::StringAttr>("dsv3.entry");
            kind && kind.getValue() == "decode")
          if (auto a = func->getAttrOfType<mlir::IntegerAttr>("dsv3k.arena_bytes"))
            arena = a.getInt();
      mlir::dsv3::RankMemory rank = mlir::dsv3::computeRankMemory(
          *module, expertParallel, config->fp8 ? config->fp8->blockRows : 128);
      rank.layers = config->numHiddenLayers;
      rank.latentWidth = config->kvLoraRank + config->qkRopeHeadDim;
      mlir::dsv3::printRankMemory(rank, arena, llvm::outs(),
                                  statsFormat == StatsFormat::Json);
    }
  }

  if (emit == Emit::Cuda && outputDir.empty()) {
    FailureOr<nlohmann::json> manifest = mlir::dsv3::buildManifest(*module);
    if (failed(manifest))
      return 1;
    llvm::outs() << ::dsv3::cudaSource(::dsv3::cudaInstances(*manifest));
    return 0;
  }
  if (outputDir.empty()) {
    if (!stats)
      module->print(llvm::outs());
    return 0;
  }
  ::dsv3::CudaTargets cudaTargets;
  if (!cudaArchs.empty())
    cudaTargets.archs.assign(cudaArchs.begin(), cudaArchs.end());
  progress.update(double(pm.size() + 1),
                  target == Target::Cuda ? "writing the artifact, NVRTC" : "writing the artifact");
  auto writeStart = std::chrono::steady_clock::now();
  if (failed(mlir::dsv3::writeArtifact(
          *module, outputDir, target == Target::Cuda ? &cudaTargets : nullptr)))
    return 1;
  dsv3rt::logEvent("stage", "",
                   {{"stage", "write-artifact"},
                    {"ms", std::chrono::duration<double, std::milli>(
                               std::chrono::steady_clock::now() - writeStart)
                               .count()}});
  progress.finish(outputDir);
  return 0;
}
