//===- dsv3-run.cpp - run compiled dsv3 artifacts --------------------------===//
//
//   dsv3-run generate ART --weights DIR --prompt-ids 1,2,3[/4,5] --max-new N
//   dsv3-run forward  ART --weights DIR --ids 1,2,3[/4,5,6] --out logits.safetensors
//   dsv3-run verify   ART --weights DIR --oracle DIR
//
// Links only libdsv3rt (no MLIR). Every error names its file and tensor;
// the exit status is non-zero on any error or failed check.
//
//===----------------------------------------------------------------------===//

#include "runtime/Artifact.h"
#include "runtime/Collectives.h"
#include "runtime/Error.h"
#include "runtime/ExpertPlacement.h"
#include "runtime/Generate.h"
#include "runtime/Plot.h"
#include "runtime/Trace.h"
#include "runtime/Progress.h"
#include "runtime/Resources.h"
#include "runtime/Safetensors.h"
#include "runtime/Tokenizer.h"
#include "runtime/Train.h"
#include "runtime/host/HostMath.h"
#include "runtime/host/HostSession.h"
#ifdef DSV3_HAVE_CUDA
#include "runtime/cuda/CudaSession.h"
#include "runtime/cuda/Launchers.h"
#include "runtime/cuda/Nvrtc.h"
#include "tools/dsv3-run/Bf16Check.h"
#endif

#include <fmt/format.h>

#include <algorithm>
#include <arpa/inet.h>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>
#include <cmath>
#include <random>
#include <sys/stat.h>
#include <sys/types.h>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

using namespace dsv3rt;
using dsv3rt::host::RoundingDecisions;
using dsv3rt::host::RoundingDecisionScope;

namespace {

const char *kUsage = R"(usage: dsv3-run COMMAND ARTIFACT [options]

commands:
  generate ART --weights DIR (--prompt-ids IDS | --tokenizer PATH --prompt TEXT ...)
           --max-new N
           [--temperature T] [--top-p P] [--seed S] [--speculative mtp]
           [--max-batch N]
      generate tokens after each prompt (greedy unless --temperature > 0);
      IDS is comma-separated ids, prompts separated by '/'; prompts of any
      lengths decode together in up to N cache slots (continuous batching;
      default: one slot per prompt). With --tokenizer (a tokenizer.json or
      its directory), --prompt TEXT is encoded (with the template's BOS
      unless --no-special) and the continuation decoded to text: one prompt
      streams as tokens come, several print when done; a sequence stops at
      the tokenizer's end-of-sentence token; --skip-special hides special
      tokens
  forward  ART --weights DIR --ids IDS --out FILE [--through-cache]
      run the forward entry and write the logits to a safetensors file;
      --through-cache runs the decode entry instead: each sequence written
      into the latent cache and attending to it (absorbed form, as
      generate's prefill; with dsv3c --kv-cache, the rounded rows)
  verify   ART --weights DIR --oracle DIR
      compare with an oracle directory (io.safetensors): logits, loss,
      absorbed decode vs naive prefill, greedy generation; prints a table
      and a last line "N passed, N failed"

  any command: --quiet, --log-json
      progress (weight loading, training steps with ETA) as a live line on
      a terminal, plain lines otherwise; --quiet: none; --log-json: one
      JSON object per line on stderr

  any command: --trace FILE.json
      write a Chrome/Perfetto trace (chrome://tracing, ui.perfetto.dev):
      host phases and every kernel launch (host: wall time; cuda: CUDA
      events, graphs off) named by kernel, with the IR op it came from

  plot     METRICS.jsonl -o DIR
      SVG charts of a training run (train --metrics): the loss and its
      parts, learning rate, tokens/s, gradient norm, and an expert-load
      heatmap per MoE layer, with DIR/index.html showing them all

  init     ART --out DIR [--seed S] [--std X]
      write random weights for the artifact's parameters (hub tensor names,
      the artifact's dtypes) to DIR/model.safetensors: norms 1, router
      correction biases 0, everything else normal(0, X) (default 0.02)

  quantize ART --weights DIR --out DIR
      write the weights in DeepSeek-V3's hub FP8 format: the attention, MLP
      and expert matrices as e4m3 with F32 <name>_scale_inv block scales
      (the block size of the config's quantization_config, else 128x128),
      the rest as they were; every command loads such checkpoints
      (dequantized at load)

  fp8-gemm [ART] --shape M,N,K [--seed S] [--out FILE] [--backend cuda]
      the host FP8 GEMM (dsv3c --quantize fp8: e4m3, 128x128 weight blocks,
      per-token 1x128 activation blocks) on random operands with outlier
      channels: its fp32 sums against float64, every element within the
      e4m3 rounding bound; --out writes x, w, its scales and y; with
      --backend cuda and an FP8 artifact, its CUDA FP8 kernels (few-row,
      tensor cores, grouped over experts) against the host on the same
      operands; with --train, FP8 training's backward GEMMs instead (Dgrad
      over 1x128 tiles of dY, Wgrad over 128x1 tiles of dY and X), each
      against float64 and within its rounding bound (--out: dy, w, x, dx,
      dw)

  bf16-check ART [--seq T] [--context P] [--shape M,N,K] [--seed S]   (cuda)
      the CUDA kernels that round activations to bf16 (bf16 and FP8
      artifacts) on random operands at ART's widths against float64 on the
      same bf16-rounded operands, each within its rounding bound: the
      prefill attention over the latent cache (T new queries after P cached
      positions; defaults 64 and 0; its fp32 twin at 1e-5), the absorbed
      decode's attention (ragged rows over key splits; its fp32 twin too)
      and, with --shape, the bf16 GEMMs (plain with bias and residual,
      gated, grouped over 4 experts); DSV3_ATTENTION_TIME=T and
      DSV3_GEMM_TIME=M,N,K time them beside the fp32-activation kernels

  train    ART (--weights DIR | --init SEED) --data TOKENS --steps N
           --batch B --seq S --save-dir D [--save-every K] [--resume CKPT]
           [--lr X] [--warmup W] [--min-lr-ratio R] [--metrics FILE.jsonl]
           [--skip-nonfinite N] [--backend cuda [--compute bf16]]
      run the artifact's train_step (compile with dsv3c --mode train):
      AdamW with warmup + cosine schedule, aux-loss-free bias balancing;
      checkpoints D/step-NNNNNN/model.safetensors written atomically;
      --resume continues bit-identically from a checkpoint directory;
      --skip-nonfinite N undoes a step whose loss or gradient norm is not
      finite, skips its batch and halves the lr scale (N in a row stop);
      --compute bf16 (GPU): bf16 GEMMs and attention over the fp32 master
      weights and AdamW state (default fp32: every kernel in fp32)
  launch   --nproc N [--master-port P] COMMAND ARGS...
      run COMMAND in N processes on this machine, one rank each (torchrun's
      RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR / MASTER_PORT; Slurm's
      SLURM_PROCID / SLURM_NTASKS / SLURM_LOCALID work too, without launch).
      Artifacts compiled with dsv3c --ep N need N ranks; `forward` splits
      the batch over them and rank 0 writes the logits. A rank that dies
      makes the others fail at their next collective, naming it; a hung
      one after DSV3_COLLECTIVE_TIMEOUT seconds (default 300)
  placement METRICS.jsonl --ep N [--redundant R] --out FILE
      an expert placement for dsv3c --ep-placement from the expert loads a
      training run measured (train --metrics): ceil(E/N) + R slots a rank,
      the spare slots as copies of the experts with the most load per copy,
      the copies spread over the ranks heaviest first; prints each layer's
      busiest-rank load over the mean, contiguous and placed
  encode   --tokenizer PATH (--prompt TEXT ... | --jsonl FILE) [--no-special]
      token ids of each text with a Hugging Face tokenizer.json (byte-level
      BPE: DeepSeek-V3's, GPT-2's, ...), one comma-separated line each;
      --jsonl: lines {"text": ...} in, {"ids": [...]} out; --no-special:
      without the post-processor's template tokens (BOS)
  decode   --tokenizer PATH (--ids IDS | --jsonl FILE) [--skip-special]
      text of each id list ('/' separates lists); --jsonl: lines
      {"ids": [...]} in, {"text": ..., "text_skip_special": ...} out
  tokenize --text FILE --out FILE.tokens [--tokenizer PATH]
      token data for train (uint32 ids) from a text file: one token per
      byte, or the ids of a tokenizer.json
  jit      ART --arch ARCH [--cache-dir D]
      compile the artifact's CUDA source with NVRTC for ARCH (sm_89, ...)
      into the re-JIT cache the cuda backend uses for a GPU the artifact
      has no cubin for (default $DSV3_CACHE_DIR, else ~/.cache/dsv3);
      needs no GPU; says whether the cubin was compiled or already cached
  compare  ART --weights DIR --ids IDS
      run forward, loss and the decode prefill on the host (fp32) and the
      GPU and print their max relative difference (the GPU kernels checked
      against the host reference on the same inputs)
  time     ART --weights DIR [--batch B] [--seq P] [--steps N] [--context C]
      prefill B prompts of P random tokens (the median of 3 after a warm-up),
      then N single-token decode steps over the latent cache; prints
      milliseconds per prefill and per decode step (on the GPU the caches
      stay there and the step is a CUDA graph). With --context C: no prefill, decode steps after C cached
      tokens (random latents). With --train (an artifact compiled with --mode train): the whole
      step (train_step: forward, backward, AdamW) and the forward and backward pass alone
      (train_gradients, whose results are every gradient; on the GPU only with
      DSV3_TIME_GRADIENTS=1) of B sequences of P random tokens, the median of N after a
      warm-up; --compute bf16 as for train
  gradcheck ART --weights DIR --ids IDS [--params a,b] [--samples N] [--eps E]
           [--train-loss]
      compare the gradients entry with central differences of the loss
      (--train-loss: train_gradients and train_loss, with the balance
      losses), in fp64, on N random elements of each named parameter
      (default all)

common options:
  --backend host|cuda   where to run (default host; cuda needs an artifact
                        compiled with dsv3c --target cuda and an NVIDIA GPU)
  --random-weights SEED instead of --weights (cuda; time, generate, forward):
                        random weights made on the GPU, nothing read from
                        disk (benchmarks at full widths): normal(0, --std),
                        norms 1, router biases 0, as init but other values
  --dtype fp32|fp64     compute type of the host backend (default fp32)
  --compute fp32|bf16   training compute on the GPU (default fp32; bf16: fp32 master weights)
  --help                this text
)";

struct Options {
  std::string command, artifact, weights, oracle, out, promptIds, ids;
  double initStd = 0.02;
  std::string data, saveDir, resume, metrics, text, params, speculative;
  std::string arch, cacheDir;
  std::string shape; // fp8-gemm --shape M,N,K
  std::string compute = "fp32"; // --compute fp32|bf16 (train and time on cuda)
  int64_t randomWeights = -1; // --random-weights SEED (cuda)
  std::string tokenizer, jsonl;   // --tokenizer PATH, --jsonl FILE
  std::vector<std::string> prompts; // --prompt TEXT (repeatable)
  bool noSpecial = false, skipSpecial = false, timeTrain = false;
  int64_t init = -1, steps = 0, batch = 4, seq = 64, saveEvery = 0, warmup = 10;
  int64_t samples = 4;
  int64_t ep = 0, redundant = 0; // placement
  double lr = 1e-3, minLrRatio = 0.1, fdEps = 1e-5;
  bool trainLoss = false;
  bool throughCache = false; // forward --through-cache: the decode entry
  std::string backend = "host", dtype = "fp32";
  int64_t maxNew = 16, maxBatch = 0, context = 0, skipNonFinite = 0;
  std::string outDir; // plot -o
  std::string trace;  // --trace FILE.json
  double temperature = 0, topP = 1;
  uint64_t seed = 0;
};

int64_t parseInt(const std::string &flag, const std::string &v) {
  char *end = nullptr;
  errno = 0;
  long long x = std::strtoll(v.c_str(), &end, 10);
  if (v.empty() || *end || errno)
    fail("{}: '{}' is not an integer", flag, v);
  return x;
}
double parseDouble(const std::string &flag, const std::string &v) {
  char *end = nullptr;
  double x = std::strtod(v.c_str(), &end);
  if (v.empty() || *end || !std::isfinite(x))
    fail("{}: '{}' is not a number", flag, v);
  return x;
}

Options parseArgs(int argc, char **argv) {
  Options o;
  std::vector<std::string> positional;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--help" || a == "-h") {
      std::cout << kUsage;
      std::exit(0);
    }
    if (a == "--train") {
      o.timeTrain = true;
      continue;
    }
    if (a == "--no-special" || a == "--skip-special") {
      (a == "--no-special" ? o.noSpecial : o.skipSpecial) = true;
      continue;
    }
    if (a == "--train-loss") {
      o.trainLoss = true;
      continue;
    }
    if (a == "--through-cache") {
      o.throughCache = true;
      continue;
    }
    if (a == "--quiet" || a == "--log-json") {
      logMode() = a == "--quiet" ? LogMode::Quiet : LogMode::Json;
      continue;
    }
    if (a == "-o") {
      if (i + 1 >= argc)
        fail("-o needs a value");
      o.outDir = argv[++i];
      continue;
    }
    if (a.rfind("--", 0) != 0) {
      positional.push_back(a);
      continue;
    }
    std::string value;
    size_t eq = a.find('=');
    if (eq != std::string::npos) {
      value = a.substr(eq + 1);
      a = a.substr(0, eq);
    } else {
      if (i + 1 >= argc)
        fail("{} needs a value", a);
      value = argv[++i];
    }
    if (a == "--weights") o.weights = value;
    else if (a == "--oracle") o.oracle = value;
    else if (a == "--out") o.out = value;
    else if (a == "--prompt-ids") o.promptIds = value;
    else if (a == "--ids") o.ids = value;
    else if (a == "--backend") o.backend = value;
    else if (a == "--dtype") o.dtype = value;
    else if (a == "--compute") o.compute = value;
    else if (a == "--max-new") o.maxNew = parseInt(a, value);
    else if (a == "--max-batch") o.maxBatch = parseInt(a, value);
    else if (a == "--context") o.context = parseInt(a, value);
    else if (a == "--trace") o.trace = value;
    else if (a == "--skip-nonfinite") o.skipNonFinite = parseInt(a, value);
    else if (a == "--temperature") o.temperature = parseDouble(a, value);
    else if (a == "--top-p") o.topP = parseDouble(a, value);
    else if (a == "--seed") o.seed = uint64_t(parseInt(a, value));
    else if (a == "--std") o.initStd = parseDouble(a, value);
    else if (a == "--data") o.data = value;
    else if (a == "--save-dir") o.saveDir = value;
    else if (a == "--resume") o.resume = value;
    else if (a == "--metrics") o.metrics = value;
    else if (a == "--text") o.text = value;
    else if (a == "--speculative") {
      if (value != "mtp")
        fail("--speculative {}: the only drafter is mtp", value);
      o.speculative = value;
    }
    else if (a == "--params") o.params = value;
    else if (a == "--init") o.init = parseInt(a, value);
    else if (a == "--random-weights") o.randomWeights = parseInt(a, value);
    else if (a == "--tokenizer") o.tokenizer = value;
    else if (a == "--prompt") o.prompts.push_back(value);
    else if (a == "--jsonl") o.jsonl = value;
    else if (a == "--steps") o.steps = parseInt(a, value);
    else if (a == "--batch") o.batch = parseInt(a, value);
    else if (a == "--seq") o.seq = parseInt(a, value);
    else if (a == "--save-every") o.saveEvery = parseInt(a, value);
    else if (a == "--warmup") o.warmup = parseInt(a, value);
    else if (a == "--samples") o.samples = parseInt(a, value);
    else if (a == "--lr") o.lr = parseDouble(a, value);
    else if (a == "--min-lr-ratio") o.minLrRatio = parseDouble(a, value);
    else if (a == "--eps") o.fdEps = parseDouble(a, value);
    else if (a == "--arch") o.arch = value;
    else if (a == "--ep") o.ep = parseInt(a, value);
    else if (a == "--redundant") o.redundant = parseInt(a, value);
    else if (a == "--cache-dir") o.cacheDir = value;
    else if (a == "--shape") o.shape = value;
    else fail("unknown option {} (see --help)", a);
  }
  if (positional.empty())
    fail("no command given (generate, forward, verify, compare, time, init, quantize, "
         "train, tokenize, encode, decode, plot, gradcheck or jit; see --help)");
  o.command = positional[0];
  if (o.command == "tokenize") {
    if (o.text.empty() || o.out.empty())
      fail("tokenize: --text FILE and --out FILE are required");
    return o;
  }
  if (o.command == "encode" || o.command == "decode") {
    if (o.tokenizer.empty())
      fail("{}: --tokenizer PATH is required", o.command);
    bool in = o.command == "encode" ? !o.prompts.empty() : !o.ids.empty();
    if (in == !o.jsonl.empty())
      fail("{}: give either {} or --jsonl FILE", o.command,
           o.command == "encode" ? "--prompt TEXT" : "--ids IDS");
    return o;
  }
  if (o.command == "fp8-gemm") {
    if (o.shape.empty())
      fail("fp8-gemm: --shape M,N,K is required");
    if (positional.size() > 1)
      o.artifact = positional[1];
    if (o.backend == "cuda" && o.artifact.empty())
      fail("fp8-gemm --backend cuda: give an FP8 artifact (dsv3c --quantize fp8 --target "
           "cuda) whose kernels to run");
    return o;
  }
  if (o.command == "bf16-check") {
    if (positional.size() != 2)
      fail("bf16-check: usage: dsv3-run bf16-check ART [--seq T] [--context P] "
           "[--shape M,N,K] [--seed S]");
    o.artifact = positional[1];
    return o;
  }
  if (o.command == "placement") {
    if (positional.size() != 2)
      fail("placement: usage: dsv3-run placement METRICS.jsonl --ep N [--redundant R] --out FILE");
    o.artifact = positional[1]; // the metrics file
    return o;
  }
  if (o.command == "plot") {
    if (o.outDir.empty())
      o.outDir = o.out;
    if (positional.size() != 2 || o.outDir.empty())
      fail("plot: usage: dsv3-run plot METRICS.jsonl -o DIR");
    o.artifact = positional[1]; // the metrics file
    return o;
  }
  if (positional.size() < 2)
    fail("{}: no artifact directory given", o.command);
  if (positional.size() > 2)
    fail("{}: unexpected argument '{}'", o.command, positional[2]);
  o.artifact = positional[1];
  if (o.randomWeights >= 0) {
    if (!o.weights.empty())
      fail("--random-weights and --weights exclude each other");
    if (o.backend != "cuda" ||
        (o.command != "time" && o.command != "generate" && o.command != "forward"))
      fail("--random-weights makes the weights on the GPU: it takes --backend cuda and "
           "the commands time, generate and forward (for host runs write random "
           "weights with dsv3-run init)");
  }
  bool weightless = o.command == "init" || o.command == "jit" || o.randomWeights >= 0 ||
                    (o.command == "train" && (o.init >= 0 || !o.resume.empty()));
  if (o.weights.empty() && !weightless)
    fail("{}: --weights DIR is required", o.command);
  if (o.command == "train") {
    if (o.data.empty() || o.saveDir.empty() || o.steps < 1)
      fail("train: --data, --save-dir and --steps N (>= 1) are required");
    if (o.batch < 1 || o.seq < 2)
      fail("train: --batch must be >= 1 and --seq >= 2");
    if (!(o.lr > 0))
      fail("train: --lr must be positive");
  }
  if (o.backend == "cuda" && o.command != "verify" && o.command != "generate" &&
      o.command != "forward" && o.command != "time" && o.command != "train")
    fail("--backend cuda runs generate, forward, verify, time and train (not {})",
         o.command);
  if (o.backend != "host" && o.backend != "cuda")
    fail("--backend {}: unknown backend (host or cuda)", o.backend);
  if (o.dtype != "fp32" && o.dtype != "fp64")
    fail("--dtype {}: the host backend computes in fp32 or fp64", o.dtype);
  if (o.compute != "fp32" && o.compute != "bf16")
    fail("--compute {}: fp32 or bf16", o.compute);
  if (o.compute == "bf16" &&
      (o.backend != "cuda" || (o.command != "train" && o.command != "time")))
    fail("--compute bf16 is training's bf16 compute on the GPU: train or time with "
         "--backend cuda");
  if (o.maxNew < 1)
    fail("--max-new must be >= 1, got {}", o.maxNew);
  if (o.maxBatch < 0)
    fail("--max-batch must be >= 0 (0: one slot per prompt), got {}", o.maxBatch);
  if (o.topP <= 0 || o.topP > 1)
    fail("--top-p must be in (0, 1], got {}", o.topP);
  return o;
}

std::vector<std::vector<int64_t>> parseIdLists(const std::string &flag,
                                               const std::string &text) {
  std::vector<std::vector<int64_t>> rows(1);
  std::string cur;
  size_t at = 0;
  auto flush = [&](bool end) {
    if (cur.empty()) {
      // "1,,2" or "1,/2": an id is missing (an empty row is reported below).
      if (!(end && rows.back().empty()))
        fail("{}: an id is missing before position {} of '{}'", flag, at, text);
      return;
    }
    rows.back().push_back(parseInt(flag, cur));
    cur.clear();
  };
  for (; at < text.size(); ++at) {
    char c = text[at];
    if (c == ',') flush(false);
    else if (c == '/') { flush(true); rows.emplace_back(); }
    else if (c != ' ') cur += c;
  }
  flush(true);
  for (auto &r : rows)
    if (r.empty())
      fail("{}: empty id list in '{}'", flag, text);
  return rows;
}

std::vector<std::vector<int64_t>> rowsOf(const TensorView &t) {
  if (t.shape.size() != 2 || (t.dtype != DType::I64 && t.dtype != DType::I32))
    fail("{}: tensor '{}' must be 2-d integer ids, got {} {}", t.file, t.name,
         safetensorsName(t.dtype), t.shapeString());
  std::vector<std::vector<int64_t>> rows(size_t(t.shape[0]));
  for (int64_t b = 0; b < t.shape[0]; ++b)
    for (int64_t i = 0; i < t.shape[1]; ++i)
      rows[size_t(b)].push_back(int64_t(t.at(size_t(b * t.shape[1] + i))));
  return rows;
}

/// Runs `entry` on a batch of equal-length id rows; returns the first result
/// as doubles with its shape.
/// Runs `entry` on a batch of equal-length id rows; returns every result as
/// (shape, doubles).
template <typename Session>
std::vector<std::pair<std::vector<int64_t>, std::vector<double>>>
runIdsAll(Session &s, const std::string &entry,
          const std::vector<std::vector<int64_t>> &rows, bool decodeForm = false,
          std::vector<std::vector<double>> *cachesOut = nullptr) {
  using Real = typename Session::Real;
  for (auto &r : rows)
    if (r.size() != rows[0].size())
      fail("{}: all id rows must have the same length", entry);
  std::vector<int64_t> flat;
  for (auto &r : rows)
    flat.insert(flat.end(), r.begin(), r.end());
  int64_t B = int64_t(rows.size()), T = int64_t(rows[0].size());
  std::vector<HostTensor<Real>> args(1);
  args[0].isInt = true;
  args[0].shape = {B, T};
  args[0].i = flat.data();
  args[0].capacity = flat.size();
  std::vector<int64_t> past(size_t(B), 0);
  std::vector<std::vector<Real>> caches;
  if (decodeForm) {
    const Entry &e = s.artifact().entry(entry);
    int64_t W = e.args.at(2).shape.at(2);
    caches.assign(e.args.size() - 2, std::vector<Real>(size_t(B * T * W)));
    args = decodeArgs(flat, B, T, past, caches, T, W);
  }
  std::vector<HostTensor<Real>> out = s.run(entry, args);
  if (cachesOut)
    for (const std::vector<Real> &c : caches)
      cachesOut->emplace_back(c.begin(), c.end());
  std::vector<std::pair<std::vector<int64_t>, std::vector<double>>> results;
  for (const HostTensor<Real> &r : out)
    results.push_back({r.shape, std::vector<double>(r.f, r.f + r.numel())});
  return results;
}

/// Expert/data parallelism: rank r runs sequences [r·B/N, (r+1)·B/N) (every
/// rank at least one) and every rank gets the whole batch's first result
/// back, in sequence order (a scalar, the mean loss, weighted by each
/// rank's sequences).
template <typename Session>
std::pair<std::vector<int64_t>, std::vector<double>>
runIdsOnRanks(Session &s, const std::string &entry,
              const std::vector<std::vector<int64_t>> &rows) {
  Communicator &c = processCommunicator();
  if (c.size() == 1)
    return runIdsAll(s, entry, rows).at(0);
  size_t n = size_t(c.size()), B = rows.size();
  if (B < n)
    fail("{}: {} sequences for {} ranks (each rank needs at least one)", entry, B, n);
  auto firstOf = [&](size_t r) { return r * B / n; };
  size_t first = firstOf(size_t(c.rank())), last = firstOf(size_t(c.rank()) + 1);
  std::vector<std::vector<int64_t>> mine(rows.begin() + ptrdiff_t(first),
                                         rows.begin() + ptrdiff_t(last));
  auto [shape, values] = runIdsAll(s, entry, mine).at(0);
  std::vector<uint8_t> bytes(values.size() * sizeof(double));
  std::memcpy(bytes.data(), values.data(), bytes.size());
  std::vector<std::vector<uint8_t>> all = c.allGather(bytes, entry + " results");
  std::vector<double> gathered;
  double weighted = 0;
  for (size_t r = 0; r < n; ++r) {
    const double *v = reinterpret_cast<const double *>(all[r].data());
    size_t count = all[r].size() / sizeof(double);
    if (shape.empty()) {
      if (count != 1)
        fail("{}: rank {} returned {} values for a scalar", entry, r, count);
      weighted += v[0] * double(firstOf(r + 1) - firstOf(r));
    }
    gathered.insert(gathered.end(), v, v + count);
  }
  if (shape.empty())
    return {shape, {weighted / double(B)}};
  shape[0] = int64_t(B);
  return {shape, gathered};
}

template <typename Session>
std::pair<std::vector<int64_t>, std::vector<double>>
runIds(Session &s, const std::string &entry,
       const std::vector<std::vector<int64_t>> &rows, bool decodeForm = false) {
  return runIdsAll(s, entry, rows, decodeForm).at(0);
}

struct Check {
  std::string name;
  double maxAbs = 0, maxRel = 0, tolerance = 0;
  bool passed = false;
  std::string note;
  bool info = false; // reported, not counted (bf16 against the fp64 model)
};

/// A check of `ours` against `ref` (same length) relative to max |ref|.
Check against(const std::string &name, const std::vector<double> &ours,
              const std::vector<double> &ref, double tolerance, double scaleFloor = 0) {
  Check c{name};
  c.tolerance = tolerance;
  double scale = std::max(1e-30, scaleFloor);
  for (size_t i = 0; i < ref.size() && i < ours.size(); ++i) {
    scale = std::max(scale, std::fabs(ref[i]));
    c.maxAbs = std::max(c.maxAbs, std::fabs(ours[i] - ref[i]));
  }
  c.maxRel = c.maxAbs / scale;
  c.passed = ours.size() == ref.size() && c.maxRel <= tolerance;
  if (ours.size() != ref.size())
    c.note = fmt::format("{} values against {}", ours.size(), ref.size());
  return c;
}

Check compare(const std::string &name, const std::vector<double> &ours,
              const TensorView &oracle, double tolerance) {
  Check c{name};
  c.tolerance = tolerance;
  if (int64_t(ours.size()) != oracle.numElements()) {
    c.note = fmt::format("size {} vs oracle {}", ours.size(), oracle.numElements());
    return c;
  }
  double scale = 0;
  for (size_t i = 0; i < ours.size(); ++i) {
    scale = std::max(scale, std::fabs(oracle.at(i)));
    c.maxAbs = std::max(c.maxAbs, std::fabs(ours[i] - oracle.at(i)));
  }
  bool finite = true;
  for (double v : ours)
    finite = finite && std::isfinite(v);
  c.maxRel = c.maxAbs / std::max(scale, 1e-30);
  c.passed = finite && c.maxRel <= tolerance;
  if (!finite)
    c.note = "non-finite values";
  return c;
}

const TensorView &need(const SafetensorsFile &f, const std::string &name) {
  const TensorView *t = f.find(name);
  if (!t)
    fail("{}: the oracle has no tensor '{}'", f.path(), name);
  return *t;
}

/// How the artifact's decode latent cache keeps its rows (dsv3c --kv-cache).
std::string cacheStorage(const Artifact &art) {
  for (const char *entry : {"decode", "prefill"})
    if (art.hasEntry(entry))
      for (const Launch &l : art.entry(entry).launches)
        if (l.kernel == "latent_attention_decode")
          return l.params.value("cache_storage", "f32");
  return "f32";
}

/// Whether every cache row the decode wrote is what `storage` keeps: bf16
/// values, or (fp8) a latent of e4m3 values times the row's scale (its
/// largest |value| / 448, floored as the quantizer floors amax) and a bf16
/// rope key. Exact: the stored values are rounded, not computed, so fp32
/// and float64 sessions alike must hold representable values.
Check storedRowsCheck(const Artifact &art, const std::string &storage,
                      const std::vector<std::vector<double>> &caches) {
  Check c{fmt::format("cache rows stored as {}", storage)};
  const Launch *dec = nullptr;
  for (const Launch &l : art.entry("decode").launches)
    if (l.kernel == "latent_attention_decode" && !dec)
      dec = &l;
  int64_t r = dec->params.at("kv_lora_rank").get<int64_t>();
  int64_t dr = dec->params.at("qk_rope_head_dim").get<int64_t>();
  int64_t W = r + dr, rows = 0, bad = 0;
  auto isBf16 = [](double v) { return double(bf16ToFloat(floatToBf16(float(v)))) == v; };
  for (const std::vector<double> &cache : caches)
    for (size_t at = 0; at + size_t(W) <= cache.size(); at += size_t(W)) {
      const double *row = cache.data() + at;
      bool ok = true;
      if (storage == "bf16") {
        for (int64_t i = 0; i < W; ++i)
          ok = ok && isBf16(row[i]);
      } else {
        double amax = 0;
        for (int64_t i = 0; i < r; ++i)
          amax = std::max(amax, std::fabs(row[i]));
        double scale = double(std::max(float(amax), 1e-4f) / 448.0f);
        for (int64_t i = 0; i < r; ++i) {
          double q = row[i] / scale;
          double e = double(f8e4m3ToFloat(floatToF8e4m3(float(q))));
          ok = ok && std::fabs(q - e) <= 1e-5 * std::max(1.0, std::fabs(q));
          c.maxAbs = std::max(c.maxAbs, std::fabs(q - e));
        }
        for (int64_t i = r; i < W; ++i)
          ok = ok && isBf16(row[i]);
      }
      ++rows;
      bad += !ok;
    }
  c.maxRel = c.maxAbs / 448.0;
  c.passed = rows > 0 && bad == 0;
  c.note = fmt::format("{} of {} rows not representable", bad, rows);
  return c;
}

/// Argmax agreement and the mean KL divergence of softmax(ours) from
/// softmax(ref), over rows of V logits.
std::string logitAgreement(const std::vector<double> &ours, const std::vector<double> &ref,
                           int64_t V) {
  size_t rows = V > 0 ? std::min(ours.size(), ref.size()) / size_t(V) : 0, agree = 0;
  double kl = 0;
  for (size_t r = 0; r < rows; ++r) {
    const double *a = ours.data() + r * size_t(V), *b = ref.data() + r * size_t(V);
    agree += std::max_element(a, a + V) - a == std::max_element(b, b + V) - b;
    double ma = *std::max_element(a, a + V), mb = *std::max_element(b, b + V), za = 0, zb = 0;
    for (int64_t v = 0; v < V; ++v) {
      za += std::exp(a[v] - ma);
      zb += std::exp(b[v] - mb);
    }
    for (int64_t v = 0; v < V; ++v) {
      double lb = b[v] - mb - std::log(zb), la = a[v] - ma - std::log(za);
      kl += std::exp(lb) * (lb - la);
    }
  }
  return fmt::format("argmax agrees at {} of {} positions, mean KL {:.2e} nats", agree, rows,
                     rows ? kl / double(rows) : 0.0);
}

/// What a rounded cache alone would move the logits by, relative to the
/// largest |logit|: the rounding enters the attention scores and the
/// attended latent, a relative error e per cached element (bf16 2^-9; e4m3
/// 2^-4, half an ulp at 3 mantissa bits, the per-token scale keeping the
/// latent in e4m3's normal range down to amax / 2^8). Averaged over the
/// latent these mostly cancel; the bound allows one such error on the
/// whole logit: 2e-2 for bf16 (as for bf16 weights), 2^-4 for fp8. A
/// flipped expert choice moves a token past it (reported, not checked).
double cacheStorageTolerance(const std::string &storage) {
  return storage == "fp8" ? 6.25e-2 : 2e-2;
}

/// Prints verify's table and the last line "N passed, N failed".
int reportChecks(const Options &o, const Artifact &art, const std::string &backend,
                 const std::vector<Check> &checks, const std::vector<std::string> &skipped) {
  fmt::print("verify {} against {} ({}, {})\n", art.dir, o.oracle, backend, o.dtype);
  fmt::print("  {:<46} {:>12} {:>12} {:>10}  {}\n", "check", "max abs err",
             "max rel err", "tolerance", "result");
  int passed = 0, failed = 0;
  int reported = 0;
  for (const Check &c : checks) {
    fmt::print("  {:<46} {:>12.3e} {:>12.3e} {:>10.0e}  {}{}\n", c.name, c.maxAbs,
               c.maxRel, c.tolerance,
               c.info ? (c.passed ? "info (within)" : "info (beyond)")
                      : (c.passed ? "PASS" : "FAIL"),
               c.note.empty() ? "" : "  (" + c.note + ")");
    if (c.info)
      ++reported;
    else
      (c.passed ? passed : failed)++;
  }
  if (reported) {
    // Which other model than the oracle's the artifact computes.
    bool bf16 = std::any_of(art.params.begin(), art.params.end(),
                            [](const ParamInfo &p) { return p.dtype == DType::BF16; });
    std::string model = art.quantization == "fp8" ? "the FP8 model (e4m3 weights and activations)"
                        : bf16                    ? "the model with bf16 weights"
                                                  : "the model with a " + cacheStorage(art) +
                                                        " latent cache";
    fmt::print("  info: {} against the fp32 fixture is reported, not checked; the kernels are "
               "checked against float64 on the same model\n",
               model);
  }
  for (const std::string &s : skipped)
    fmt::print("  skipped: {}\n", s);
  fmt::print("{} passed, {} failed\n", passed, failed);
  return failed ? 1 : 0;
}

template <typename Session>
int verify(const Options &o, const Artifact &art, Session &s,
           const std::string &backend) {
  using Real = typename Session::Real;
  SafetensorsFile io(o.oracle + "/io.safetensors");
  bool f64 = std::is_same_v<Real, double>;
  // The same artifact computed by the host backend in float64 (the
  // reference of bf16 or FP8 weights, a rounded cache, FP8 training): built
  // once, when the first check needs it.
  std::optional<WeightStore> refWeights;
  std::optional<HostSession<double>> refSession;
  auto reference = [&]() -> HostSession<double> & {
    if (!refSession) {
      refWeights.emplace(o.weights);
      refSession.emplace(art, *refWeights);
    }
    return *refSession;
  };
  // fp32: ~1e-4 of the largest |logit| (SEMANTICS.md 0); fp64 lands within
  // the fixtures' own fp32-island error (~1e-6). bf16 weights (8-bit
  // mantissa, relative rounding 2^-9 per weight, accumulated over a few
  // layers): 2e-2, and greedy tokens may part ways (agreement is reported).
  bool bf16 = false;
  for (const ParamInfo &p : art.params)
    bf16 = bf16 || p.dtype == DType::BF16;
  // FP8 (dsv3c --quantize fp8) is another model too: e4m3 weights and
  // activations (~1.4% a GEMM, test/Conformance/fp8-compute.test); its rows
  // against the fp32 oracle are reported, the kernels are checked against
  // the same FP8 model in float64.
  bool fp8 = art.quantization == "fp8";
  bool other = bf16 || fp8;
  double logitTol = fp8 ? 0.2 : bf16 ? 2e-2 : f64 ? 1e-5 : 1e-4;
  double lossTol = fp8 ? 5e-2 : bf16 ? 2e-2 : f64 ? 1e-6 : 1e-5;
  std::vector<Check> checks;
  std::vector<std::string> skipped;

  auto input = rowsOf(need(io, "input_ids"));
  if (processCommunicator().size() > 1) {
    // Several ranks (a partitioned artifact): first the oracle's sequences
    // split over the ranks, the logits and the mean loss put back together;
    // then every check below with the whole batch on every rank (each
    // rank's tokens still meet the experts of the others through the
    // exchanges, and identical inputs keep the decode steps in lockstep).
    auto [pshape, plogits] = runIdsOnRanks(s, "forward", input);
    checks.push_back(compare("logits (forward, batch split over " +
                                 std::to_string(processCommunicator().size()) + " ranks)",
                             plogits, need(io, "logits"), logitTol));
    auto [plshape, ploss] = runIdsOnRanks(s, "loss", input);
    checks.push_back(compare("loss (batch split over the ranks)", ploss, need(io, "loss"),
                             lossTol));
  }
  // The checks run the kernels that keep the model's arithmetic exact:
  // fp32 activations, and FP8 blocks summed in fp32. The GPU's faster
  // kernels (bf16 activations, Hopper's FP8 warpgroup MMA with ~14-bit
  // accumulation) are bounded kernel by kernel (dsv3-run bf16-check,
  // fp8-gemm --backend cuda); their whole-model forward is reported below,
  // not checked: on the fixtures' random routers a rounding flips near-tied
  // experts, which moves a token's logits far past any per-GEMM error.
  s.fp32Activations = true;
  s.exactFp8Accumulation = true;
  // A host run records its roundings (to e4m3, and to bf16 in a rounded
  // cache) that sit near a boundary and its expert choices between
  // near-tied scores, and the float64 reference of the same entry takes
  // them the same way (RoundingDecisions): what is left between the two is
  // their arithmetic. A GPU run keeps no such record.
  constexpr bool hostRun = !std::is_same_v<Session, dsv3rt::cuda::CudaSession>;
  auto withRoundings = [&](RoundingDecisions &d, bool replay, auto &&run) {
    std::optional<RoundingDecisionScope> scope;
    if (hostRun)
      scope.emplace(d, replay);
    return run();
  };
  auto recorded = [&](RoundingDecisions &d, auto &&run) { return withRoundings(d, false, run); };
  auto replayed = [&](RoundingDecisions &d, auto &&run) { return withRoundings(d, true, run); };
  auto tiesNote = [&](const RoundingDecisions &d) {
    return hostRun && d.replayed ? fmt::format("{} roundings or expert choices near a tie "
                                               "taken as the run took them, {} of them the "
                                               "other way in float64",
                                               d.replayed, d.taken)
                                 : std::string();
  };
  RoundingDecisions forwardTies, lossTies, decodeTies;
  auto [shape, logits] = recorded(forwardTies, [&] { return runIds(s, "forward", input); });
  checks.push_back(compare("logits (forward)", logits, need(io, "logits"), logitTol));

  auto [lshape, loss] = recorded(lossTies, [&] { return runIds(s, "loss", input); });
  checks.push_back(compare("loss", loss, need(io, "loss"), lossTol));

  if (other) {
    // Rounding the weights to bf16 (or FP8) makes another model: against the fp32
    // fixture its logits move by ~1e-2 and a routing decision near a tie
    // can flip (then one token's logits move by 0.3). Those rows are
    // reported; what is checked is the kernels: the same bf16-rounded model
    // computed by the host backend in float64.
    checks[0].info = checks[1].info = true;
    auto [rshape, refLogits] =
        replayed(forwardTies, [&] { return runIds(reference(), "forward", input); });
    Check c = against(fp8 ? "logits vs float64 on the same FP8 model"
                          : "logits vs float64 on the same bf16 weights",
                      logits, refLogits, 1e-4);
    c.note = tiesNote(forwardTies);
    double scale = 1e-30;
    for (double v : refLogits)
      scale = std::max(scale, std::fabs(v));
    checks.push_back(c);
    auto [rl, refLoss] = replayed(lossTies, [&] { return runIds(reference(), "loss", input); });
    Check l{fp8 ? "loss vs float64 on the same FP8 model" : "loss vs float64 on the same bf16 weights"};
    l.tolerance = 1e-5;
    l.maxAbs = std::fabs(loss.at(0) - refLoss.at(0));
    l.maxRel = l.maxAbs / std::max(std::fabs(refLoss.at(0)), 1e-30);
    l.passed = l.maxRel <= l.tolerance;
    checks.push_back(l);
    // The same forward on the faster kernels, where the GPU has any.
    s.fp32Activations = s.exactFp8Accumulation = false;
    int64_t rounded = s.bf16ActivationLaunches(), wgmma = s.fp8WgmmaLaunches();
    auto [fshape, fast] = runIds(s, "forward", input);
    rounded = s.bf16ActivationLaunches() - rounded;
    wgmma = s.fp8WgmmaLaunches() - wgmma;
    s.fp32Activations = s.exactFp8Accumulation = true;
    if (rounded || wgmma) {
      Check f{"logits, fast kernels, vs the same in float64"};
      f.tolerance = logitTol;
      size_t agree = 0, positions = 0;
      int64_t V = shape.back();
      for (size_t i = 0; i < refLogits.size() && i < fast.size(); ++i)
        f.maxAbs = std::max(f.maxAbs, std::fabs(fast[i] - refLogits[i]));
      for (size_t r = 0; V > 0 && (r + 1) * size_t(V) <= std::min(fast.size(), refLogits.size());
           ++r, ++positions) {
        auto row = [&](const std::vector<double> &v) {
          return std::max_element(v.begin() + long(r * V), v.begin() + long((r + 1) * V)) -
                 (v.begin() + long(r * V));
        };
        agree += row(fast) == row(refLogits);
      }
      f.maxRel = f.maxAbs / scale;
      f.passed = fast.size() == refLogits.size() && f.maxRel <= f.tolerance;
      f.info = true;
      f.note = fmt::format(
          "{}{}{}; argmax agrees at {} of {} positions; each such kernel is bounded on its own "
          "(dsv3-run bf16-check, fp8-gemm --backend cuda), and a rounding can flip a near-tied "
          "expert",
          rounded ? fmt::format("{} launches with bf16 activations", rounded) : "",
          rounded && wgmma ? ", " : "",
          wgmma ? fmt::format("{} FP8 GEMMs on the warpgroup MMA (~14-bit accumulation)", wgmma)
                : "",
          agree, positions);
      checks.push_back(f);
    }
  }

  // The absorbed latent-cache form must equal the naive prefill, unless the
  // cache rounds its rows (dsv3c --kv-cache): then the difference is what
  // that storage costs, reported, and the decode is checked against the
  // same storage computed in float64.
  std::string storage = cacheStorage(art);
  bool roundedCache = storage != "f32";
  std::vector<std::vector<double>> caches;
  std::vector<int64_t> dshape;
  std::vector<double> decoded;
  std::tie(dshape, decoded) = recorded(decodeTies, [&] {
    return runIdsAll(s, "decode", input, true, &caches).at(0);
  });
  if (roundedCache) {
    checks.push_back(storedRowsCheck(art, storage, caches));
    // Against float64 on the same storage. A latent within fp32's error of
    // a rounding boundary rounds the other way there (one e4m3 step is
    // 6-12% of that element, one bf16 step 0.4-0.8%): on the host the
    // reference takes the roundings near a boundary as the run did, and
    // the two are checked at fp32's tolerance; a GPU run keeps no such
    // record: reported.
    auto [rshape, refDecoded] = replayed(decodeTies, [&] {
      return runIds(reference(), "decode", input, true);
    });
    Check c = against(fmt::format("decode vs float64, both with the {} cache", storage),
                      decoded, refDecoded, hostRun ? 1e-4 : logitTol);
    c.info = !hostRun;
    c.note = tiesNote(decodeTies);
    checks.push_back(c);
  }
  {
    Check c{roundedCache ? fmt::format("decode ({} cache) vs forward (naive)", storage)
                         : std::string("decode prefill (absorbed) vs forward (naive)")};
    // bf16 weights on the GPU: the tensor-core GEMMs split the fp32
    // activations into two bf16 halves (~16 mantissa bits), so the two
    // forms agree to ~1e-5 of the largest logit, not the fp32 kernels' 1e-6.
    Check measured = against(c.name, decoded, logits, f64 ? 1e-9 : bf16 ? 1e-4 : 1e-5);
    c = measured;
    if (fp8) { // different numerics by design, as in the official inference
      c.info = true;
      c.note = "FP8: the absorbed form dequantizes kv_b, the naive form quantizes its input";
    }
    if (roundedCache) {
      // What the storage costs, measured (the rows above check that it is
      // what it says): reported, as a rounding that flips a near-tied
      // expert of the fixtures' random routers moves a token's logits far
      // more than the rounding itself.
      c.info = true;
      c.tolerance = cacheStorageTolerance(storage);
      c.note = fmt::format("what the {} cache costs against f32: {}", storage,
                           logitAgreement(decoded, logits, dshape.back()));
    }
    checks.push_back(c);
  }
  // The prefill entry (what generate prefills with): each sequence's last
  // position of the decode entry's logits.
  if (s.artifact().hasEntry("prefill")) {
    auto [pshape, last] = runIds(s, "prefill", input, true);
    Check c{"prefill entry (last position) vs decode"};
    c.tolerance = f64 ? 1e-9 : bf16 ? 1e-4 : 1e-5;
    int64_t B = dshape.at(0), T = dshape.at(1), V = dshape.at(2);
    double scale = 0;
    bool shaped = pshape == std::vector<int64_t>{B, 1, V};
    for (int64_t b = 0; shaped && b < B; ++b)
      for (int64_t v = 0; v < V; ++v) {
        double want = decoded[size_t((b * T + T - 1) * V + v)];
        scale = std::max(scale, std::fabs(want));
        c.maxAbs = std::max(c.maxAbs, std::fabs(last[size_t(b * V + v)] - want));
      }
    c.maxRel = c.maxAbs / std::max(scale, 1e-30);
    c.passed = shaped && c.maxRel <= c.tolerance;
    if (!shaped)
      c.note = fmt::format("logits shaped [{}], expected [{}, 1, {}]", fmt::join(pshape, ", "),
                           B, V);
    checks.push_back(c);
  }

  if (io.find("prompt_ids") && io.find("gen_ids")) {
    const TensorView &genIds = need(io, "gen_ids");
    GenerateOptions g;
    g.maxNew = genIds.shape.at(1);
    GenerateResult r = generate(s, rowsOf(need(io, "prompt_ids")), g);
    Check ids{"gen_ids (greedy, latent cache)"};
    auto expected = rowsOf(genIds);
    int64_t mismatches = 0;
    for (size_t b = 0; b < expected.size(); ++b)
      for (size_t i = 0; i < expected[b].size(); ++i)
        mismatches += r.ids.at(b).at(i) != expected[b][i];
    ids.maxAbs = double(mismatches);
    ids.passed = mismatches == 0 || other || roundedCache;
    ids.note = fmt::format("{} of {} tokens differ{}", mismatches, genIds.numElements(),
                           other || roundedCache
                               ? fmt::format("; {}: agreement reported, not required",
                                             other ? (fp8 ? "FP8" : "bf16")
                                                   : storage + " cache")
                               : "");
    checks.push_back(ids);
    // gen_logits up to each row's first differing token (after it the
    // sequences differ and so do the logits).
    const TensorView &refLogits = need(io, "gen_logits");
    int64_t V = refLogits.shape.at(2), N = refLogits.shape.at(1);
    Check gl{"gen_logits"};
    gl.tolerance = logitTol;
    double scale = 1e-30;
    for (size_t b = 0; b < expected.size(); ++b)
      for (size_t i = 0; i < expected[b].size(); ++i) {
        for (int64_t v = 0; v < V; ++v) {
          double ref = refLogits.at(size_t((int64_t(b) * N + int64_t(i)) * V + v));
          scale = std::max(scale, std::fabs(ref));
          gl.maxAbs = std::max(gl.maxAbs, std::fabs(r.logits[b][i][size_t(v)] - ref));
        }
        if (r.ids[b][i] != expected[b][i])
          break;
      }
    gl.maxRel = gl.maxAbs / scale;
    gl.passed = gl.maxRel <= logitTol;
    gl.info = other || roundedCache;
    checks.push_back(gl);

    // Continuous batching: prompts of different lengths (each oracle prompt
    // cut to a different length, plus more prompts than slots) decoded
    // together must give what each gives alone: the same tokens and logits
    // up to the summation order of the batched kernels.
    std::vector<std::vector<int64_t>> ragged;
    for (const auto &p : rowsOf(need(io, "prompt_ids")))
      for (size_t cut = 0; cut < 2; ++cut) {
        size_t drop = std::min(cut * (1 + ragged.size() % 3), p.size() - 1);
        ragged.emplace_back(p.begin(), p.end() - int64_t(drop));
      }
    GenerateOptions rg;
    rg.maxNew = 4;
    rg.maxBatch = std::max<int64_t>(2, int64_t(ragged.size()) - 1);
    GenerateResult batched = generate(s, ragged, rg);
    Check cb{fmt::format("continuous batching ({} ragged prompts, {} slots)", ragged.size(),
                         rg.maxBatch)};
    cb.tolerance = other ? logitTol : 1e-5;
    int64_t differ = 0;
    double cbScale = 1e-30;
    for (size_t r = 0; r < ragged.size(); ++r) {
      GenerateResult alone = generate(s, {ragged[r]}, rg);
      for (size_t i = 0; i < size_t(rg.maxNew); ++i) {
        differ += alone.ids[0][i] != batched.ids[r][i];
        for (size_t v = 0; v < alone.logits[0][i].size(); ++v) {
          cbScale = std::max(cbScale, std::fabs(alone.logits[0][i][v]));
          cb.maxAbs = std::max(cb.maxAbs,
                               std::fabs(alone.logits[0][i][v] - batched.logits[r][i][v]));
        }
        if (alone.ids[0][i] != batched.ids[r][i])
          break;
      }
    }
    cb.maxRel = cb.maxAbs / cbScale;
    cb.passed = cb.maxRel <= cb.tolerance && (differ == 0 || other);
    cb.note = fmt::format("{} tokens differ from one-by-one decoding", differ);
    checks.push_back(cb);
  }
  if (io.find("mtp_logits")) {
    if (art.hasEntry("forward_mtp")) {
      RoundingDecisions mtpTies;
      auto [mshape, mtpLogits] =
          recorded(mtpTies, [&] { return runIds(s, "forward_mtp", input); });
      checks.push_back(compare("mtp_logits (depth 1)", mtpLogits,
                               need(io, "mtp_logits"), logitTol));
      // Another model than the oracle's (bf16 weights, FP8): reported, and
      // checked against the same model in float64, as the main logits.
      checks.back().info = other;
      if (other) {
        auto [rshape, refMtp] =
            replayed(mtpTies, [&] { return runIds(reference(), "forward_mtp", input); });
        Check c = against("mtp_logits vs float64 on the same model", mtpLogits, refMtp, 1e-4);
        c.note = tiesNote(mtpTies);
        checks.push_back(c);
      }
    } else {
      skipped.push_back("mtp_logits (the artifact has no forward_mtp entry)");
    }
  }
  std::string gradsPath = o.oracle + "/grads.safetensors";
  struct stat st;
  bool haveGrads = stat(gradsPath.c_str(), &st) == 0;
  if (haveGrads && art.hasEntry("gradients")) {
    // dLoss/dW per tensor, relative to the tensor's largest |reference grad|.
    SafetensorsFile gf(gradsPath);
    RoundingDecisions gradientTies;
    auto results = recorded(gradientTies, [&] { return runIdsAll(s, "gradients", input); });
    const Entry &e = art.entry("gradients");
    // One row over every tensor: `refOf(name, i, c)` is the reference of
    // checkpoint tensor c of result parameter i (empty: none).
    auto gradsRow = [&](const std::string &name, double tolerance, auto refOf) {
      Check worst{name};
      worst.tolerance = tolerance;
      worst.passed = true;
      int64_t tensors = 0, failing = 0;
      std::string worstName, failures;
      // The oracle resolves a gradient to ~1e-7 of the model's largest (its
      // fp32 islands), so every tensor is compared relative to at least that
      // (errors below it are the oracle's own). A tensor whose whole oracle
      // gradient is below 1e-6 of the largest is zero to the oracle: the
      // router's with one expert a token and normalized weights (w = s /
      // (s + 1e-20) is 1 whatever s is) holds only rounding on both sides.
      // Such a tensor is checked as zero: within 1e-6 of the largest.
      std::vector<std::vector<std::vector<double>>> refs(e.resultParams.size());
      double largest = 0;
      for (size_t i = 0; i < e.resultParams.size(); ++i) {
        const ParamInfo *info = art.param(e.resultParams[i]);
        for (size_t c = 0; c < info->checkpoint.size(); ++c) {
          refs[i].push_back(refOf(info->checkpoint[c], i, c));
          for (double v : refs[i].back())
            largest = std::max(largest, std::fabs(v));
        }
      }
      double scaleFloor = 1e-7 * largest / tolerance, zeroLevel = 1e-6 * largest;
      int64_t zeros = 0;
      for (size_t i = 0; i < e.resultParams.size(); ++i) {
        const ParamInfo *info = art.param(e.resultParams[i]);
        const std::vector<double> &g = results.at(i + 1).second;
        size_t per = g.size() / info->checkpoint.size();
        for (size_t c = 0; c < info->checkpoint.size(); ++c) {
          const std::vector<double> &ref = refs[i][c];
          if (ref.empty()) {
            failures += fmt::format("\n    no reference gradient for {}", info->checkpoint[c]);
            worst.passed = false;
            ++failing;
            continue;
          }
          std::vector<double> slice(g.begin() + long(c * per), g.begin() + long((c + 1) * per));
          double refMax = 0;
          for (double v : ref)
            refMax = std::max(refMax, std::fabs(v));
          bool zero = refMax < zeroLevel;
          zeros += zero;
          Check one = against(info->checkpoint[c], slice, ref, tolerance,
                              zero ? zeroLevel / tolerance : scaleFloor);
          ++tensors;
          if (!one.passed) {
            ++failing;
            worst.passed = false;
            failures += fmt::format("\n    {}: max rel err {:.3e}{}", one.name, one.maxRel,
                                    one.note.empty() ? "" : " (" + one.note + ")");
          }
          if (one.maxRel >= worst.maxRel) {
            worst.maxRel = one.maxRel;
            worst.maxAbs = one.maxAbs;
            worstName = one.name;
          }
        }
      }
      worst.note = fmt::format("{} tensors, {} failing; worst {}{}{}", tensors, failing,
                               worstName,
                               zeros ? fmt::format("; {} zero to the oracle (below 1e-6 of the "
                                                   "largest gradient), checked as zero",
                                                   zeros)
                                     : std::string(),
                               failures);
      return worst;
    };
    auto oracleOf = [&](const std::string &name, size_t, size_t) {
      std::vector<double> v;
      if (const TensorView *t = gf.find(name))
        for (int64_t k = 0; k < t->numElements(); ++k)
          v.push_back(t->at(size_t(k)));
      return v;
    };
    // fp32: the issue's 1e-3; fp64: what the oracle's fp32 islands (router,
    // norms, RoPE angles) leave, ~2e-6 on the fixtures (tiny-d's softmax
    // router) and up to 1.5e-5 over 400 random configs
    // (scripts/hf-config-sweep.py: YaRN factor 8, three layers and MTP): 5e-5.
    checks.push_back(gradsRow("grads (every tensor, rel. to its max |grad|)",
                              fp8 ? 0.2 : bf16 ? 5e-2 : f64 ? 5e-5 : 1e-3, oracleOf));
    if (fp8) {
      // FP8 training (dsv3c --mode train --quantize fp8) is another model:
      // against the fp32 oracle reported. Against the same step in float64:
      // the backward quantizes ~10x more values than the forward (every
      // cotangent, per token and per channel), and one within fp32's error
      // of an e4m3 rounding boundary rounds the other way there, moving
      // that value by a whole e4m3 step (6-12%). On the host the reference
      // takes those roundings as the run did (RoundingDecisions) and the
      // gradients are checked; a GPU run keeps no such record: reported
      // (its GEMMs are checked on identical operands by fp8-gemm --train;
      // the loss over 200 steps in test/Conformance/fp8-training.test).
      checks.back().info = true;
      auto refResults = replayed(gradientTies, [&] {
        return runIdsAll(reference(), "gradients", input);
      });
      auto sameModel = [&](const std::string &, size_t i, size_t c) {
        const std::vector<double> &g = refResults.at(i + 1).second;
        size_t per = g.size() / art.param(e.resultParams[i])->checkpoint.size();
        return std::vector<double>(g.begin() + long(c * per), g.begin() + long((c + 1) * per));
      };
      checks.push_back(gradsRow("grads vs float64 on the same FP8 training step", 1e-3,
                                sameModel));
      checks.back().info = !hostRun;
      if (std::string n = tiesNote(gradientTies); !n.empty())
        checks.back().note += "; " + n;
    }
  } else if (haveGrads) {
    skipped.push_back("grads.safetensors (compile with --mode train for a "
                      "gradients entry)");
  }

  return reportChecks(o, art, backend, checks, skipped);
}

/// Random weights for every parameter of `art` (SEMANTICS.md 10 names).
int init(Options o, const Artifact &art) {
  if (o.out.empty())
    fail("init: --out DIR is required");
  if (mkdir(o.out.c_str(), 0755) != 0 && errno != EEXIST)
    fail("{}: cannot create: {}", o.out, std::strerror(errno));
  std::mt19937_64 rng(o.seed);
  std::normal_distribution<double> normal(0.0, o.initStd);
  std::vector<OwnedTensor> tensors;
  for (const ParamInfo &p : art.params) {
    // An FP8 artifact's weights are written in fp32 (quantized at load).
    if (p.role == "weight_scale")
      continue;
    DType dtype = p.dtype == DType::F8E4M3 ? DType::F32 : p.dtype;
    if (dtype != DType::F32 && dtype != DType::BF16)
      fail("init: parameter {} has dtype {}; init writes f32 or bf16",
           p.name, manifestName(p.dtype));
    std::vector<int64_t> each = p.tensorShape();
    int64_t n = p.tensorElements();
    for (const std::string &name : p.everyCheckpoint()) {
      OwnedTensor t;
      t.name = name;
      t.dtype = dtype;
      t.shape = each;
      t.data.resize(size_t(n) * dtypeSize(dtype));
      std::optional<float> constant = initConstant(p);
      for (int64_t i = 0; i < n; ++i)
        setFloatElement(t, size_t(i), constant ? *constant : float(normal(rng)));
      tensors.push_back(std::move(t));
    }
  }
  std::string path = o.out + "/model.safetensors";
  writeSafetensors(path, tensors, {{"format", "pt"}, {"dsv3_init_seed", std::to_string(o.seed)}});
  fmt::print("wrote {} tensors to {}\n", tensors.size(), path);
  return 0;
}

/// dsv3-run quantize: a checkpoint in DeepSeek-V3's hub FP8 format. The
/// matrices the official checkpoint stores in FP8 (attention, dense MLP,
/// routed and shared experts, the MTP projection) become e4m3 with an F32
/// `<name>_scale_inv` per block of the artifact's block size (amax / 448,
/// so that w = e4m3 x scale_inv); embeddings, the head, the router, norms
/// and biases stay in the artifact's dtype, as in the official checkpoint.
int quantize(const Options &o, const Artifact &art, const WeightStore &weights) {
  if (o.out.empty())
    fail("quantize: --out DIR is required");
  if (mkdir(o.out.c_str(), 0755) != 0 && errno != EEXIST)
    fail("{}: cannot create: {}", o.out, std::strerror(errno));
  auto bound = bindWeights(art, weights);
  const int64_t br = art.fp8BlockRows, bc = art.fp8BlockCols;
  std::vector<OwnedTensor> tensors;
  int64_t quantized = 0, kept = 0;
  double worst = 0; // largest |dequantized - w| / block amax
  std::map<std::string, std::string> fp8ScaleParam; // FP8 weight -> its scales
  for (const ParamInfo &p : art.params)
    if (!p.scales.empty())
      fp8ScaleParam[p.scales] = p.name;
  for (const ParamInfo &p : art.params) {
    if (p.role == "optimizer_state" || p.role == "weight_scale")
      continue;
    const std::vector<double> &data = bound.at(p.name).data;
    std::vector<int64_t> each = p.tensorShape();
    int64_t per = p.tensorElements();
    bool fp8 = each.size() == 2 && (p.role == "attention" || p.role == "dense_mlp" ||
                                    p.role == "routed_experts" || p.role == "shared_experts");
    for (size_t e = 0; e < p.checkpoint.size(); ++e) {
      const double *w = data.data() + e * size_t(per);
      OwnedTensor t;
      t.name = p.checkpoint[e];
      t.shape = each;
      if (!fp8) {
        t.dtype = p.dtype == DType::BF16 ? DType::BF16 : DType::F32;
        t.data.resize(size_t(per) * dtypeSize(t.dtype));
        for (int64_t i = 0; i < per; ++i)
          setFloatElement(t, size_t(i), float(w[i]));
        tensors.push_back(std::move(t));
        ++kept;
        continue;
      }
      int64_t rows = each[0], cols = each[1];
      int64_t sr = (rows + br - 1) / br, sc = (cols + bc - 1) / bc;
      OwnedTensor scale;
      scale.name = t.name + "_scale_inv";
      scale.dtype = DType::F32;
      scale.shape = {sr, sc};
      scale.data.resize(size_t(sr * sc) * 4);
      t.dtype = DType::F8E4M3;
      t.data.resize(size_t(per));
      if (p.dtype == DType::F8E4M3) {
        // An FP8 artifact's weights are bound as e4m3 values (exact) with
        // their scales: written as they are.
        const std::vector<double> &s = bound.at(fp8ScaleParam.at(p.name)).data;
        for (int64_t i = 0; i < per; ++i)
          t.data[size_t(i)] = floatToF8e4m3(float(w[i]));
        for (int64_t i = 0; i < sr * sc; ++i) {
          float v = float(s[size_t(int64_t(e) * sr * sc + i)]);
          std::memcpy(scale.data.data() + 4 * i, &v, 4);
        }
      } else {
        worst = std::max(worst, quantizeFp8Blocks(w, rows, cols, br, bc, t.data.data(),
                                                  reinterpret_cast<float *>(scale.data.data())));
      }
      tensors.push_back(std::move(t));
      tensors.push_back(std::move(scale));
      ++quantized;
    }
  }
  std::string path = o.out + "/model.safetensors";
  writeSafetensors(path, tensors, {{"format", "pt"}, {"dsv3_quantized", "fp8 e4m3"}});
  fmt::print("wrote {}: {} matrices in FP8 e4m3 with {}x{} block scales, {} tensors kept; "
             "largest error {:.3g} of its block's |max|\n",
             path, quantized, br, bc, kept, worst);
  return 0;
}

#ifdef DSV3_HAVE_CUDA
/// fp8-gemm --backend cuda ART: the CUDA FP8 kernels (ART's module) on the
/// same operands as the host GEMM, every schedule: the few-row kernel, the
/// tensor-core tiles and the skinny tensor-core kernel, plain and grouped
/// over 4 experts (other weights, one
/// expert with no rows). Tolerance 1e-4 of max |y| for the mma.sync
/// schedules: the host sums in fp32 too, in another order. The wgmma
/// schedule is held per element to 2^-10 sum_k |x_k w_k| instead: Hopper's
/// FP8 warpgroup MMA keeps about 14 bits while it accumulates (DeepSeek-V3
/// 3.3.2; measured 2.7e-4 of max |y| at K = 7168), each of a 128-wide K
/// block's four k32 steps truncating by up to ~2^-13 of the block's sum
/// |x w| before the kernel promotes it to fp32: 2^-11, with a factor 2 to
/// spare. A product dropped or counted twice costs ~K^-1 of the sum, so the
/// device script also checks K = 256 (2^-8: four times over the bound).
bool fp8GemmCuda(const Options &o, int64_t M, int64_t N, int64_t K,
                 const std::vector<float> &x, const std::vector<uint8_t> &codes,
                 const std::vector<float> &scales, const std::vector<float> &yHost) {
  Artifact art = Artifact::load(o.artifact);
  if (art.quantization != "fp8")
    fail("fp8-gemm: {} is not an FP8 artifact (dsv3c --quantize fp8)", o.artifact);
  cuda::CudaSession s(art, cuda::RandomWeights{1, 0.02});
  auto &drv = s.driver();
  // Grouped: each expert its own weights; rows split M/2, 0, M/4, rest
  // over 4 experts (DSV3_CHECK_EXPERTS: another count).
  std::vector<int64_t> counts = checkExpertCounts(M);
  const int64_t E = int64_t(counts.size()), blk = 128;
  int64_t sr = (N + blk - 1) / blk, sc = (K + blk - 1) / blk;
  std::mt19937_64 rng(o.seed + 1);
  std::normal_distribution<double> normal(0.0, 0.02);
  std::vector<double> we(size_t(E * N * K));
  for (double &v : we)
    v = normal(rng);
  std::vector<uint8_t> ecodes(we.size());
  std::vector<float> escales(size_t(E * sr * sc));
  for (int64_t e = 0; e < E; ++e)
    quantizeFp8Blocks(we.data() + e * N * K, N, K, blk, blk, ecodes.data() + e * N * K,
                      escales.data() + e * sr * sc);
  std::vector<float> ewq(ecodes.size());
  for (size_t i = 0; i < ecodes.size(); ++i)
    ewq[i] = f8e4m3ToFloat(ecodes[i]);
  host::Proj<float> ep{ewq.data(), escales.data(), blk, blk};
  std::vector<float> yGrouped(size_t(M * N));
  for (int64_t e = 0, r = 0; e < E; ++e)
    for (int64_t c = 0; c < counts[size_t(e)]; ++c, ++r)
      ep.expert(e, N, K).apply(x.data() + r * K, N, K, yGrouped.data() + r * N);

  CUdeviceptr dx = s.deviceBuffer(x.size() * 4, "fp8-gemm x", x.data());
  CUdeviceptr dw = s.deviceBuffer(codes.size(), "fp8-gemm w", codes.data());
  CUdeviceptr ds = s.deviceBuffer(scales.size() * 4, "fp8-gemm scales", scales.data());
  CUdeviceptr dwe = s.deviceBuffer(ecodes.size(), "fp8-gemm expert w", ecodes.data());
  CUdeviceptr dse = s.deviceBuffer(escales.size() * 4, "fp8-gemm expert scales", escales.data());
  CUdeviceptr dc = s.deviceBuffer(counts.size() * 8, "fp8-gemm counts", counts.data());
  std::vector<float> zero(size_t(M * N), 0.f);
  CUdeviceptr dy = s.deviceBuffer(zero.size() * 4, "fp8-gemm y", zero.data());
  bool ok = true;
  // sum_k |x_k w_k| of every output (wgmma's bound), plain and grouped.
  std::vector<float> sumAbs[2];
  if (s.computeCapability() == 90)
    for (int grouped = 0; grouped < 2; ++grouped) {
      std::vector<float> wa(static_cast<size_t>(N * K)), xa(static_cast<size_t>(K));
      sumAbs[grouped].assign(size_t(M * N), 0.f);
      for (int64_t e = 0, r = 0; e < (grouped ? E : 1); ++e) {
        const uint8_t *c = grouped ? ecodes.data() + e * N * K : codes.data();
        const float *sc_ = grouped ? escales.data() + e * sr * sc : scales.data();
        for (int64_t n = 0; n < N; ++n)
          for (int64_t k = 0; k < K; ++k)
            wa[size_t(n * K + k)] =
                std::fabs(f8e4m3ToFloat(c[n * K + k]) * sc_[(n / blk) * sc + k / blk]);
        for (int64_t c2 = 0; c2 < (grouped ? counts[size_t(e)] : M); ++c2, ++r) {
          for (int64_t k = 0; k < K; ++k)
            xa[size_t(k)] = std::fabs(x[size_t(r * K + k)]);
          for (int64_t n = 0; n < N; ++n) {
            float acc = 0.f;
            for (int64_t k = 0; k < K; ++k)
              acc += xa[size_t(k)] * wa[size_t(n * K + k)];
            sumAbs[grouped][size_t(r * N + n)] = acc;
          }
        }
      }
    }
  fmt::print("  {} against the host FP8 GEMM (same operands; tolerance 1e-04 of max |y|, "
             "wgmma 2^-10 sum|x w| per element):\n",
             s.description());
  for (bool grouped : {false, true})
    for (int schedule : {0, 1, 2, 3, 4, 5}) {
      if ((schedule == 3 || schedule == 4) && s.computeCapability() != 90)
        continue; // wgmma: sm_90a only
      if (schedule == 5 && (!grouped || K % 64 != 0))
        continue; // the routed experts' few-row tensor-core kernel
      cuda::Fp8Weight fw{grouped ? dwe : dw, grouped ? dse : ds, int(blk), int(blk)};
      s.upload(dy, zero.data(), zero.size() * 4, "fp8-gemm y");
      cuda::fp8Gemm(s, "fp8-gemm", dx, K, fw, 0, dy, M, N, K, 0, grouped ? dc : 0,
                    grouped ? E : 0, schedule);
      DSV3_CU(drv, streamSynchronize, "fp8-gemm", s.stream());
      std::vector<float> y(size_t(M * N));
      DSV3_CU(drv, memcpyDtoH, "fp8-gemm y", y.data(), dy, y.size() * 4);
      const std::vector<float> &ref = grouped ? yGrouped : yHost;
      double diff = 0, scale = 1e-30, worst = 0;
      for (size_t i = 0; i < y.size(); ++i) {
        double e = std::fabs(double(y[i]) - double(ref[i]));
        if (!std::isfinite(double(y[i])))
          e = INFINITY;
        diff = std::max(diff, e);
        scale = std::max(scale, std::fabs(double(ref[i])));
        if (schedule == 3 || schedule == 4)
          worst = std::max(worst, e / std::max(0x1p-10 * sumAbs[grouped][i], 1e-30));
      }
      bool wgmma = schedule == 3 || schedule == 4;
      bool pass = wgmma ? worst <= 1.0 : diff <= 1e-4 * scale;
      bool ran = schedule == 0 || s.computeCapability() >= 89;
      const char *names[] = {"few-row kernel",      "128x128 tensor-core tiles",
                             "skinny tensor cores", "wgmma (sm_90a)",
                             "wgmma + TMA (sm_90a)", "rows on tensor cores"};
      // (The plain GEMM of many rows on the TMA schedule: cuBLASLt's.)
      const bool lt = schedule == 4 && !grouped && cuda::fp8CublasLt(s, fw, M, N, K, false);
      fmt::print("    {:<40} max rel {:.3e}{} {}\n",
                 fmt::format("{} {}", grouped ? fmt::format("grouped ({} experts)", E) : "plain",
                             lt ? "cuBLASLt block-scaled" : names[schedule]),
                 diff / scale,
                 wgmma ? fmt::format(", worst {:.1f}% of the bound", 100 * worst) : "",
                 !ran ? "(no FP8 tensor cores: few-row kernel)" : pass ? "PASS" : "FAIL");
      // Each line out before the next kernel runs: a device script that
      // times out on a hung kernel still shows the last one that finished.
      std::fflush(stdout);
      ok = ok && pass;
    }
  // DSV3_FP8_GEMM_TIME=M,N,K: each tensor-core schedule timed on random
  // codes of that shape (no host reference: the check above is the
  // correctness), TFLOP/s against the H100/H200 dense FP8 peak (1979).
  if (const char *spec = std::getenv("DSV3_FP8_GEMM_TIME")) {
    int64_t tm = 0, tn = 0, tk = 0;
    if (std::sscanf(spec, "%ld,%ld,%ld", &tm, &tn, &tk) != 3 || tm < 1 || tn < 1 || tk < 128)
      fail("DSV3_FP8_GEMM_TIME takes M,N,K, got '{}'", spec);
    std::vector<uint8_t> bytes(size_t(std::max(tm, tn) * tk));
    for (size_t i = 0; i < bytes.size(); ++i)
      bytes[i] = uint8_t((i * 2654435761u >> 7) % 0x70) | uint8_t(i & 0x80);
    std::vector<float> ones(size_t(std::max(tm, tn) * ((tk + 127) / 128)), 1.0f);
    std::vector<float> xs(size_t(tm * tk));
    for (size_t i = 0; i < xs.size(); ++i)
      xs[i] = f8e4m3ToFloat(bytes[i % bytes.size()]);
    CUdeviceptr tx = s.deviceBuffer(xs.size() * 4, "timing x", xs.data());
    CUdeviceptr tw = s.deviceBuffer(size_t(tn * tk), "timing w", bytes.data());
    CUdeviceptr ts = s.deviceBuffer(ones.size() * 4, "timing scales", ones.data());
    CUdeviceptr ty2 = s.deviceBuffer(size_t(tm * tn) * 4, "timing y");
    cuda::Fp8Weight tf{tw, ts, int(blk), int(blk)};
    for (int schedule : {1, 2, 3, 4}) {
      if (schedule >= 3 && s.computeCapability() != 90)
        continue;
      auto once = [&] {
        cuda::fp8Gemm(s, "fp8-gemm timing", tx, tk, tf, 0, ty2, tm, tn, tk, 0, 0, 0, schedule);
      };
      once();
      DSV3_CU(drv, streamSynchronize, "fp8-gemm timing", s.stream());
      auto t0 = std::chrono::steady_clock::now();
      const int reps = 10;
      for (int r = 0; r < reps; ++r)
        once();
      DSV3_CU(drv, streamSynchronize, "fp8-gemm timing", s.stream());
      double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0)
                      .count() / reps;
      const char *names[] = {"", "128x128 tiles", "skinny", "wgmma", "wgmma + TMA"};
      if (schedule == 4 && cuda::fp8CublasLt(s, tf, tm, tn, tk, false))
        names[4] = "cuBLASLt";
      double tflops = 2.0 * double(tm) * double(tn) * double(tk) / (ms * 1e9);
      fmt::print("    timing {}x{}x{} {:<14} {:8.3f} ms {:7.1f} TFLOP/s ({:.1f}% of 1979), "
                 "activation quantization included\n",
                 tm, tn, tk, names[schedule], ms, tflops, 100.0 * tflops / 1979.0);
      std::fflush(stdout);
    }
  }
  return ok;
}
#endif

/// dsv3-run fp8-gemm --shape M,N,K: the host FP8 GEMM (the kernels'
/// reference, SEMANTICS.md 9) on random operands: activations normal with
/// outlier channels (x20 every 97th, as trained models have), weights
/// normal(0, 0.02) quantized in 128x128 blocks. Checks its fp32
/// accumulation against float64 on the same e4m3 operands (1e-5 of max|y|),
/// and every element against float64 on the unquantized activations within
/// the rounding bound: |err| <= sum_i |W_i| max(2^-4 |x_i|, 2^-10 s_a) (half
/// an e4m3 ulp, relative 2^-4, or half the subnormal step 2^-9 s_a) plus
/// 1e-5 sum_i |x_i W_i| for the accumulation. --out FILE writes x, the
/// e4m3 weight, its scales and y for an independent check.
#ifdef DSV3_HAVE_CUDA
/// fp8-gemm --train --backend cuda ART (an FP8 training artifact): the
/// GPU's FP8 training GEMMs (fp8Dgrad on the master weight quantized with
/// its transpose, fp8Wgrad) on the host check's operands, against the
/// host's fp32 results: with the fp32-accumulating schedules (the checks'
/// exactFp8Accumulation) within 1e-4 of the largest |result| (the same
/// e4m3 operands, sums in another order), and Dgrad once more on the
/// default (Hopper: wgmma, ~14-bit accumulation) schedule, reported.
bool fp8TrainGemmCuda(const Options &o, int64_t M, int64_t N, int64_t K,
                      const std::vector<float> &dy, const std::vector<float> &x,
                      const std::vector<float> &w, const std::vector<float> &dxHost,
                      const std::vector<float> &dwHost) {
  Artifact art = Artifact::load(o.artifact);
  cuda::CudaSession s(art, cuda::RandomWeights{1, 0.02});
  auto &drv = s.driver();
  CUdeviceptr ddy = s.deviceBuffer(dy.size() * 4, "fp8-gemm dy", dy.data());
  CUdeviceptr dxin = s.deviceBuffer(x.size() * 4, "fp8-gemm x", x.data());
  cuda::DevTensor wt;
  wt.shape = {N, K};
  wt.capacity = size_t(N * K);
  wt.ptr = s.deviceBuffer(w.size() * 4, "fp8-gemm w", w.data());
  CUdeviceptr ddx = s.deviceBuffer(size_t(M * K) * 4, "fp8-gemm dx");
  CUdeviceptr ddw = s.deviceBuffer(size_t(N * K) * 4, "fp8-gemm dw");
  const nlohmann::json p = {{"fp8_compute", {128, 128}}};
  auto compare = [&](const char *what, CUdeviceptr got, const std::vector<float> &want,
                     bool bounded) {
    DSV3_CU(drv, streamSynchronize, "fp8-gemm --train", s.stream());
    std::vector<float> g(want.size());
    DSV3_CU(drv, memcpyDtoH, "fp8-gemm --train result", g.data(), got, g.size() * 4);
    double err = 0, big = 1e-30;
    for (size_t i = 0; i < g.size(); ++i) {
      err = std::max(err, std::isfinite(g[i]) ? double(std::fabs(g[i] - want[i])) : INFINITY);
      big = std::max(big, double(std::fabs(want[i])));
    }
    bool pass = !bounded || err <= 1e-4 * big;
    fmt::print("  cuda {}: max |gpu - host| / max |host| {:.3e}{}\n", what, err / big,
               bounded ? (pass ? " (tolerance 1e-04) PASS" : " (tolerance 1e-04) FAIL") : "");
    return pass;
  };
  bool ok = true;
  for (bool exact : {true, false}) {
    s.exactFp8Accumulation = s.fp32Activations = exact;
    std::vector<float> zero(size_t(M * K), 0.f);
    DSV3_CU(drv, memcpyHtoD, "fp8-gemm dx", ddx, zero.data(), zero.size() * 4);
    cuda::Fp8Weight wT;
    cuda::fp8MasterWeight(s, "fp8-gemm --train", p, wt, &wT);
    cuda::fp8Dgrad(s, "fp8-gemm --train Dgrad", ddy, M, N, wT, ddx, K, true);
    ok = compare(exact ? "Dgrad (fp32-accumulating schedule)" : "Dgrad (default schedule)",
                 ddx, dxHost, exact) && ok;
    if (exact) {
      std::vector<float> zw(size_t(N * K), 0.f);
      DSV3_CU(drv, memcpyHtoD, "fp8-gemm dw", ddw, zw.data(), zw.size() * 4);
      cuda::fp8Wgrad(s, "fp8-gemm --train Wgrad", ddy, N, dxin, K, M, N, K, ddw);
      ok = compare("Wgrad", ddw, dwHost, true) && ok;
      // The routed experts' form (fp8WgradGrouped, one GEMM launch): the M
      // tokens over 4 experts, M/2, none, M/4 and the rest (partial tiles,
      // an empty expert), each expert's dW against the host's Wgrad over
      // its own rows.
      const std::vector<int64_t> counts = {M / 2, 0, M / 4, M - M / 2 - M / 4};
      const int64_t E = int64_t(counts.size());
      std::vector<float> want(size_t(E * N * K), 0.f);
      int64_t r0 = 0;
      for (int64_t e = 0; e < E; ++e) {
        host::fp8Wgrad(dy.data() + r0 * N, x.data() + r0 * K, counts[size_t(e)], N, K,
                       int64_t(128), want.data() + e * N * K);
        r0 += counts[size_t(e)];
      }
      CUdeviceptr dcounts = s.deviceBuffer(counts.size() * 8, "fp8-gemm counts", counts.data());
      std::vector<float> zg(want.size(), 0.f);
      CUdeviceptr dwg = s.deviceBuffer(zg.size() * 4, "fp8-gemm grouped dw", zg.data());
      if (cuda::fp8WgradGrouped(s, "fp8-gemm --train grouped Wgrad", ddy, dxin, M, N, K,
                                dcounts, E, dwg))
        ok = compare("Wgrad grouped over 4 experts", dwg, want, true) && ok;
      else
        fmt::print("  cuda Wgrad grouped: not on this GPU (no e4m3 tensor cores)\n");
    }
  }
  return ok;
}
#endif

/// fp8-gemm --train: FP8 training's backward GEMMs (dsv3c --mode train
/// --quantize fp8) on random operands with outlier channels. Dgrad: dX =
/// dY W over M tokens, dY [M, N] quantized per token per 128 outputs, W
/// [N, K] in 128 x 128 blocks. Wgrad: dW = dY^T X, dY and X [M, K]
/// quantized per channel per 128 tokens. Each in fp32 against float64 on
/// the same e4m3 operands (the quantization runs in fp32 in both, so only
/// the sums differ: 1e-5 of the largest |result|), and every element against
/// float64 on unquantized operands within the rounding bound: a quantized
/// value is a (1 + e) + d with |e| <= 2^-4 and |d| <= 2^-10 s (half the
/// subnormal step), so |q(a) q(b) - a b| <= |a b| (2^-3 + 2^-8) + |a|
/// (1 + 2^-4) 2^-10 s_b + |b| (1 + 2^-4) 2^-10 s_a + 2^-20 s_a s_b, summed.
int fp8TrainGemm(const Options &o, int64_t M, int64_t N, int64_t K) {
  const int64_t blk = 128;
  std::mt19937_64 rng(o.seed);
  std::normal_distribution<double> normal(0.0, 1.0);
  auto random = [&](int64_t rows, int64_t cols, double sd, int64_t outlierEvery) {
    std::vector<float> v(size_t(rows * cols));
    for (size_t i = 0; i < v.size(); ++i)
      v[i] = float(sd * normal(rng) *
                   ((i % size_t(cols)) % size_t(outlierEvery) == 5 ? 20.0 : 1.0));
    return v;
  };
  std::vector<float> dy = random(M, N, 1e-3, 89), x = random(M, K, 1.0, 97);
  std::vector<float> w = random(N, K, 0.02, 1 << 30);
  std::vector<double> dy64(dy.begin(), dy.end()), x64(x.begin(), x.end()), w64(w.begin(), w.end());
  // The bound of one product, given both scales (see above).
  auto pairBound = [](double a, double b, double sa, double sb) {
    double u = std::ldexp(1.0, -10), e = std::ldexp(1.0, -4);
    return std::fabs(a * b) * (2 * e + e * e) + std::fabs(a) * (1 + e) * u * sb +
           std::fabs(b) * (1 + e) * u * sa + u * u * sa * sb;
  };
  // In fp32 as the kernels run, so both sessions see the same scales.
  auto scaleOf = [](const double *v, int64_t n, int64_t stride) {
    float amax = 1e-4f;
    for (int64_t i = 0; i < n; ++i)
      amax = std::max(amax, std::fabs(float(v[i * stride])));
    return double(amax / 448.0f);
  };
  // Per result element: the fp32 value, the float64 one on the same e4m3
  // operands, the unquantized product and its rounding bound.
  struct Tally {
    double accErr = 0, yMax = 0, worst = 0, sq = 0, refSq = 0;
    void add(double y, double same, double ref, double bound) {
      accErr = std::max(accErr, std::fabs(y - same));
      yMax = std::max(yMax, std::fabs(same));
      worst = std::max(worst, std::fabs(y - ref) / (bound + 1e-300));
      sq += (y - ref) * (y - ref);
      refSq += ref * ref;
    }
  };
  bool ok = true;
  auto report = [&](const char *what, const Tally &t) {
    bool acc = t.accErr <= 1e-5 * t.yMax, bound = t.worst <= 1.0;
    ok = ok && acc && bound;
    fmt::print("  {}: fp32 vs float64 on the same e4m3 operands: max rel {:.3e} (tolerance "
               "1e-05) {}; vs float64 on unquantized operands: rms rel {:.3e}, worst |err| / "
               "rounding bound {:.3f} (<= 1) {}\n",
               what, t.accErr / t.yMax, acc ? "PASS" : "FAIL", std::sqrt(t.sq / t.refSq),
               t.worst, bound ? "PASS" : "FAIL");
  };
  fmt::print("fp8 training GEMMs, M = {} tokens, N = {}, K = {} (e4m3; 128 x 128 weight blocks, "
             "1 x 128 and 128 x 1 activation tiles)\n",
             M, N, K);
  std::vector<float> dx32(size_t(M * K), 0.0f);
  {
    // Dgrad.
    std::vector<float> q32 = host::quantizeWeightBlocks(w.data(), 1, N, K, blk, blk);
    std::vector<double> q64 = host::quantizeWeightBlocks(w64.data(), 1, N, K, blk, blk);
    host::Proj<float> p32{q32.data(), q32.data() + N * K, blk, blk, nullptr};
    host::Proj<double> p64{q64.data(), q64.data() + N * K, blk, blk, nullptr};
    std::vector<double> dx64(size_t(M * K), 0.0);
    int64_t cb = (K + blk - 1) / blk, nbs = (N + blk - 1) / blk;
    Tally t;
    std::vector<double> sa(static_cast<size_t>(nbs));
    for (int64_t m = 0; m < M; ++m) {
      host::fp8RowDgrad(dy.data() + m * N, p32, N, K, dx32.data() + m * K);
      host::fp8RowDgrad(dy64.data() + m * N, p64, N, K, dx64.data() + m * K);
      for (int64_t nb = 0; nb < nbs; ++nb)
        sa[size_t(nb)] = scaleOf(dy64.data() + m * N + nb * blk, std::min(blk, N - nb * blk), 1);
      for (int64_t i = 0; i < K; ++i) {
        double ref = 0, bound = 0;
        for (int64_t n = 0; n < N; ++n) {
          double a = dy64[size_t(m * N + n)], b = w64[size_t(n * K + i)];
          ref += a * b;
          double sw = q64[size_t(N * K + (n / blk) * cb + i / blk)];
          bound += pairBound(a, b, sa[size_t(n / blk)], sw);
        }
        t.add(dx32[size_t(m * K + i)], dx64[size_t(m * K + i)], ref, bound);
      }
    }
    report("Dgrad dX = dY W", t);
  }
  std::vector<float> dw32(size_t(N * K), 0.0f);
  {
    // Wgrad.
    std::vector<double> dw64(size_t(N * K), 0.0);
    host::fp8Wgrad(dy.data(), x.data(), M, N, K, blk, dw32.data());
    host::fp8Wgrad(dy64.data(), x64.data(), M, N, K, blk, dw64.data());
    Tally t;
    int64_t tb = (M + blk - 1) / blk;
    std::vector<double> sdy(size_t(tb * N)), sx(size_t(tb * K));
    for (int64_t b = 0; b < tb; ++b) {
      int64_t rows = std::min(blk, M - b * blk);
      for (int64_t n = 0; n < N; ++n)
        sdy[size_t(b * N + n)] = scaleOf(dy64.data() + b * blk * N + n, rows, N);
      for (int64_t i = 0; i < K; ++i)
        sx[size_t(b * K + i)] = scaleOf(x64.data() + b * blk * K + i, rows, K);
    }
    for (int64_t n = 0; n < N; ++n)
      for (int64_t i = 0; i < K; ++i) {
        double ref = 0, bound = 0;
        for (int64_t m = 0; m < M; ++m) {
          double a = dy64[size_t(m * N + n)], b = x64[size_t(m * K + i)];
          ref += a * b;
          bound += pairBound(a, b, sdy[size_t(m / blk * N + n)], sx[size_t(m / blk * K + i)]);
        }
        t.add(dw32[size_t(n * K + i)], dw64[size_t(n * K + i)], ref, bound);
      }
    report("Wgrad dW = dY^T X", t);
    if (!o.out.empty()) {
      // The operands and both results, for fp8_tools.py's own FP8 GEMMs.
      auto f32 = [](std::string name, std::vector<int64_t> shape, const std::vector<float> &v) {
        OwnedTensor tensor{std::move(name), DType::F32, std::move(shape), {}};
        tensor.data.resize(v.size() * 4);
        std::memcpy(tensor.data.data(), v.data(), v.size() * 4);
        return tensor;
      };
      writeSafetensors(o.out, {f32("dy", {M, N}, dy), f32("w", {N, K}, w), f32("x", {M, K}, x),
                               f32("dx", {M, K}, dx32), f32("dw", {N, K}, dw32)});
    }
  }
  if (o.backend == "cuda") {
#ifdef DSV3_HAVE_CUDA
    ok = fp8TrainGemmCuda(o, M, N, K, dy, x, w, dx32, dw32) && ok;
#else
    fail("fp8-gemm: this dsv3-run was built without the CUDA toolkit");
#endif
  }
  fmt::print("{}\n", ok ? "PASS" : "FAIL");
  return ok ? 0 : 1;
}

int fp8Gemm(const Options &o) {
  std::vector<int64_t> dims;
  std::stringstream shape(o.shape);
  for (std::string d; std::getline(shape, d, ',');)
    dims.push_back(parseInt("--shape", d));
  if (dims.size() != 3 || dims[0] < 1 || dims[1] < 1 || dims[2] < 1)
    fail("fp8-gemm: --shape takes M,N,K (positive), got '{}'", o.shape);
  if (o.timeTrain) {
    return fp8TrainGemm(o, dims[0], dims[1], dims[2]);
  }
  const int64_t M = dims[0], N = dims[1], K = dims[2], blk = 128;
  std::mt19937_64 rng(o.seed);
  std::normal_distribution<double> normal(0.0, 1.0);
  std::vector<double> x(size_t(M * K)), w(size_t(N * K));
  for (size_t i = 0; i < x.size(); ++i)
    x[i] = normal(rng) * ((i % size_t(K)) % 97 == 5 ? 20.0 : 1.0);
  for (double &v : w)
    v = 0.02 * normal(rng);
  int64_t sr = (N + blk - 1) / blk, sc = (K + blk - 1) / blk;
  std::vector<uint8_t> codes(size_t(N * K));
  std::vector<float> scales(size_t(sr * sc));
  quantizeFp8Blocks(w.data(), N, K, blk, blk, codes.data(), scales.data());
  std::vector<float> wq32(codes.size()), x32(x.begin(), x.end()), s32(scales);
  std::vector<double> wq64(codes.size()), s64(scales.begin(), scales.end()), x64(x32.begin(), x32.end());
  for (size_t i = 0; i < codes.size(); ++i)
    wq32[i] = f8e4m3ToFloat(codes[i]), wq64[i] = wq32[i];
  host::Proj<float> p32{wq32.data(), s32.data(), blk, blk};
  host::Proj<double> p64{wq64.data(), s64.data(), blk, blk};
  std::vector<float> y32(size_t(M * N));
  std::vector<double> y64(size_t(M * N));
  double accErr = 0, yMax = 0, worstRatio = 0, sumSq = 0, refSq = 0, maxRel = 0;
  std::vector<double> sa(static_cast<size_t>(sc)), xq(static_cast<size_t>(K));
  for (int64_t m = 0; m < M; ++m) {
    p32.apply(x32.data() + m * K, N, K, y32.data() + m * N);
    p64.apply(x64.data() + m * K, N, K, y64.data() + m * N);
    for (int64_t kb = 0; kb < sc; ++kb)
      sa[size_t(kb)] = host::quantizeActivationBlock(x64.data() + m * K + kb * blk,
                                                      std::min(blk, K - kb * blk),
                                                      xq.data() + kb * blk);
    for (int64_t n = 0; n < N; ++n) {
      double ref = 0, bound = 0, mag = 0;
      for (int64_t k = 0; k < K; ++k) {
        double wd = wq64[size_t(n * K + k)] * s64[size_t((n / blk) * sc + k / blk)];
        double xv = x64[size_t(m * K + k)];
        ref += xv * wd;
        bound += std::fabs(wd) * std::max(std::ldexp(std::fabs(xv), -4),
                                          std::ldexp(sa[size_t(k / blk)], -10));
        mag += std::fabs(xv * wd);
      }
      double y = y32[size_t(m * N + n)];
      accErr = std::max(accErr, std::fabs(y - y64[size_t(m * N + n)]));
      yMax = std::max(yMax, std::fabs(y64[size_t(m * N + n)]));
      worstRatio = std::max(worstRatio, std::fabs(y - ref) / (bound + 1e-5 * mag));
      sumSq += (y - ref) * (y - ref);
      refSq += ref * ref;
      maxRel = std::max(maxRel, std::fabs(y - ref));
    }
  }
  double refMax = 0;
  for (int64_t m = 0; m < M; ++m)
    for (int64_t n = 0; n < N; ++n)
      refMax = std::max(refMax, std::fabs(y64[size_t(m * N + n)]));
  bool accOk = accErr <= 1e-5 * yMax, boundOk = worstRatio <= 1.0;
  // The rounding itself (floatToF8e4m3 is bit arithmetic): at every finite
  // code, its float neighbours, every midpoint between codes and the floats
  // beside it, against the nearest of the 127 non-negative codes found by
  // search (ties to the even code), with both signs.
  int64_t roundingChecked = 0, roundingBad = 0;
  {
    std::vector<float> codes127(127);
    for (int c = 0; c < 127; ++c)
      codes127[size_t(c)] = f8e4m3ToFloat(uint8_t(c));
    auto nearest = [&](float v) {
      float a = std::fabs(v);
      int best = 126;
      if (a < 448.0f) {
        size_t hi = size_t(std::upper_bound(codes127.begin(), codes127.end(), a) -
                           codes127.begin());
        size_t lo = hi - 1;
        float dl = a - codes127[lo], dh = codes127[hi] - a;
        best = int(dl < dh || (dl == dh && lo % 2 == 0) ? lo : hi);
      }
      return uint8_t((std::signbit(v) ? 0x80 : 0) | best);
    };
    for (int c = 0; c < 127; ++c) {
      float v = codes127[size_t(c)], next = c < 126 ? codes127[size_t(c + 1)] : 464.0f;
      float mid = (v + next) / 2;
      for (float t : {v, std::nextafter(v, 1e9f), std::nextafter(v, -1e9f), mid,
                      std::nextafter(mid, 1e9f), std::nextafter(mid, -1e9f)})
        for (float sgn : {1.0f, -1.0f}) {
          ++roundingChecked;
          roundingBad += floatToF8e4m3(sgn * t) != nearest(sgn * t);
        }
    }
  }
  fmt::print("e4m3 rounding: {} values (every code, its neighbours, every midpoint and "
             "beside it) against a search of the codes: {} differ {}\n",
             roundingChecked, roundingBad, roundingBad ? "FAIL" : "PASS");
  fmt::print("fp8 GEMM {}x{}x{} (e4m3, 128x128 weight blocks, 1x128 activation blocks)\n", M,
             N, K);
  fmt::print("  fp32 accumulation vs float64 on the same e4m3 operands: max rel {:.3e} "
             "(tolerance 1e-05) {}\n",
             accErr / yMax, accOk ? "PASS" : "FAIL");
  fmt::print("  vs float64 on unquantized activations: rms rel {:.3e}, max rel {:.3e}; worst "
             "|err| / rounding bound {:.3f} (<= 1) {}\n",
             std::sqrt(sumSq / refSq), maxRel / refMax, worstRatio, boundOk ? "PASS" : "FAIL");
  if (!o.out.empty()) {
    auto f32 = [](std::string name, std::vector<int64_t> shape, const float *v, size_t n) {
      OwnedTensor t{std::move(name), DType::F32, std::move(shape), {}};
      t.data.resize(n * 4);
      std::memcpy(t.data.data(), v, n * 4);
      return t;
    };
    std::vector<OwnedTensor> out;
    out.push_back(f32("x", {M, K}, x32.data(), x32.size()));
    out.push_back(OwnedTensor{"w", DType::F8E4M3, {N, K}, codes});
    out.push_back(f32("w_scale_inv", {sr, sc}, scales.data(), scales.size()));
    out.push_back(f32("y", {M, N}, y32.data(), y32.size()));
    writeSafetensors(o.out, out);
  }
  bool gpuOk = true;
  if (o.backend == "cuda") {
#ifdef DSV3_HAVE_CUDA
    gpuOk = fp8GemmCuda(o, M, N, K, x32, codes, scales, y32);
#else
    fail("fp8-gemm: this dsv3-run was built without the CUDA toolkit");
#endif
  }
  return accOk && boundOk && gpuOk && roundingBad == 0 ? 0 : 1;
}

/// Central differences of the loss entry against the gradients entry.
int gradcheck(const Options &o, const Artifact &art, const WeightStore &weights) {
  HostSession<double> s(art, weights);
  if (o.ids.empty())
    fail("gradcheck: --ids is required");
  auto rows = parseIdLists("--ids", o.ids);
  // --params may ask for the training loss (with the balance terms).
  std::string gradEntry = art.hasEntry("train_gradients") && o.trainLoss
                              ? "train_gradients" : "gradients";
  std::string lossEntry = gradEntry == "gradients" ? "loss" : "train_loss";
  auto grads = runIdsAll(s, gradEntry, rows);
  const Entry &e = art.entry(gradEntry);
  std::vector<std::string> names;
  std::string cur;
  for (char c : o.params + ",") {
    if (c == ',') {
      if (!cur.empty())
        names.push_back(cur);
      cur.clear();
    } else {
      cur += c;
    }
  }
  std::mt19937_64 rng(o.seed);
  int failed = 0, checked = 0;
  fmt::print("gradcheck {} of {} (fp64, eps {:g}, {} samples per tensor)\n",
             lossEntry, art.dir, o.fdEps, o.samples);
  fmt::print("  {:<56} {:>12} {:>10}  {}\n", "parameter", "max rel err", "tolerance",
             "result");
  for (size_t i = 0; i < e.resultParams.size(); ++i) {
    const std::string &name = e.resultParams[i];
    bool wanted = names.empty();
    for (const std::string &n : names)
      wanted |= name.find(n) != std::string::npos;
    if (!wanted)
      continue;
    std::vector<double> &w = s.paramData().at(name);
    const std::vector<double> &g = grads.at(i + 1).second;
    double scale = 1e-12;
    for (double x : g)
      scale = std::max(scale, std::fabs(x));
    double worst = 0;
    for (int64_t k = 0; k < o.samples; ++k) {
      size_t at = std::uniform_int_distribution<size_t>(0, w.size() - 1)(rng);
      double saved = w[at];
      w[at] = saved + o.fdEps;
      double up = runIds(s, lossEntry, rows).second.at(0);
      w[at] = saved - o.fdEps;
      double down = runIds(s, lossEntry, rows).second.at(0);
      w[at] = saved;
      double numeric = (up - down) / (2 * o.fdEps);
      worst = std::max(worst, std::fabs(numeric - g[at]) / scale);
    }
    // Central differences in fp64 with eps 1e-5 are good to ~1e-9 of the
    // largest gradient; 1e-6 leaves room for routing-free curvature.
    bool ok = worst <= 1e-6;
    fmt::print("  {:<56} {:>12.3e} {:>10.0e}  {}\n", name, worst, 1e-6, ok ? "PASS" : "FAIL");
    failed += !ok;
    ++checked;
  }
  if (!checked)
    fail("gradcheck: no parameter matches --params {}", o.params);
  fmt::print("{} passed, {} failed\n", checked - failed, failed);
  return failed ? 1 : 0;
}

template <typename Real> int runTrain(const Options &o, const Artifact &art) {
  std::string weightsDir = o.weights;
  TrainState state;
  if (!o.resume.empty()) {
    weightsDir = o.resume;
    state = checkpointState(o.resume);
    fmt::print("resuming from {} at step {}\n", o.resume, state.step);
  } else if (o.init >= 0) {
    Options io = o;
    io.out = o.saveDir + "/init";
    io.seed = uint64_t(o.init);
    // One rank writes the (whole model's) initial weights; the others wait
    // for them.
    if (processCommunicator().rank() == 0) {
      if (mkdir(o.saveDir.c_str(), 0755) != 0 && errno != EEXIST)
        fail("{}: cannot create: {}", o.saveDir, std::strerror(errno));
      init(io, art);
    }
    processCommunicator().barrier("initial weights written");
    weightsDir = io.out;
  }
  if (mkdir(o.saveDir.c_str(), 0755) != 0 && errno != EEXIST)
    fail("{}: cannot create: {}", o.saveDir, std::strerror(errno));
  WeightStore weights(weightsDir);
  TrainOptions t;
  t.dataPath = o.data;
  t.steps = o.steps;
  t.batch = o.batch;
  t.seq = o.seq;
  t.lr = o.lr;
  t.minLrRatio = o.minLrRatio;
  t.warmup = o.warmup;
  t.saveDir = o.saveDir;
  t.saveEvery = o.saveEvery;
  t.metricsPath = o.metrics;
  t.skipNonFinite = o.skipNonFinite;
  if (o.backend == "cuda") {
#ifdef DSV3_HAVE_CUDA
    if (o.dtype != "fp32")
      fail("--backend cuda computes in fp32 (no --dtype fp64)");
    cuda::CudaSession s(art, weights);
    s.bf16Compute = o.compute == "bf16";
    fmt::print("training on {}{}\n", s.description(),
               s.bf16Compute ? " (bf16 compute, fp32 master weights)" : "");
    train(s, t, state);
    fmt::print("{}\n", s.memoryReport());
    return 0;
#else
    fail("--backend cuda: this dsv3-run was built without CUDA headers");
#endif
  }
  HostSession<Real> s(art, weights);
  train(s, t, state);
  return 0;
}

#ifdef DSV3_HAVE_CUDA
/// The CUDA kernels against the host reference on the same weights and ids.
int compareBackends(const Options &o, const Artifact &art, const WeightStore &weights) {
  if (o.ids.empty())
    fail("compare: --ids is required");
  auto rows = parseIdLists("--ids", o.ids);
  auto start = std::chrono::steady_clock::now();
  cuda::CudaSession gpu(art, weights);
  gpu.fp32Activations = true; // kernels that round activations have their own checks
  HostSession<float> host(art, weights);
  fmt::print("compare {} on {} against the host backend (fp32), ids {}x{}\n",
             art.dir, gpu.description(), rows.size(), rows[0].size());
  fmt::print("  {:<40} {:>12} {:>12} {:>10}  {}\n", "entry", "max abs diff",
             "max rel diff", "tolerance", "result");
  int failed = 0, passed = 0;
  auto check = [&](const std::string &entry, bool decodeForm) {
    if (!art.hasEntry(entry))
      return;
    auto a = runIds(host, entry, rows, decodeForm).second;
    auto b = runIds(gpu, entry, rows, decodeForm).second;
    const double tol = 1e-4; // both fp32, different summation orders
    double scale = 1e-30, diff = 0;
    for (size_t i = 0; i < a.size(); ++i) {
      scale = std::max(scale, std::fabs(a[i]));
      diff = std::max(diff, std::fabs(a[i] - b[i]));
    }
    bool finite = true;
    for (double v : b)
      finite = finite && std::isfinite(v);
    bool ok = a.size() == b.size() && finite && diff / scale <= tol;
    fmt::print("  {:<40} {:>12.3e} {:>12.3e} {:>10.0e}  {}\n",
               entry + (decodeForm ? " (latent cache)" : ""), diff, diff / scale,
               tol, ok ? "PASS" : "FAIL");
    (ok ? passed : failed)++;
  };
  check("forward", false);
  check("loss", false);
  check("decode", true);
  check("forward_mtp", false);
  {
    // Decode steps over the latent cache with continuous batching: the
    // rows cut to different lengths, 8 greedy steps each (past lengths
    // differ per sequence, the caches stay on the GPU, later steps replay
    // a CUDA graph, and the cache spans several 16-key splits).
    std::vector<std::vector<int64_t>> ragged;
    for (size_t r = 0; r < rows.size(); ++r)
      ragged.emplace_back(rows[r].begin(),
                          rows[r].end() - int64_t(std::min(r * 3, rows[r].size() - 1)));
    GenerateOptions g;
    g.maxNew = 8;
    GenerateResult a = generate(host, ragged, g), b = generate(gpu, ragged, g);
    const double tol = 1e-4;
    double scale = 1e-30, diff = 0;
    int64_t differ = 0;
    for (size_t r = 0; r < ragged.size(); ++r)
      for (size_t i = 0; i < size_t(g.maxNew); ++i) {
        for (size_t v = 0; v < a.logits[r][i].size(); ++v) {
          scale = std::max(scale, std::fabs(a.logits[r][i][v]));
          diff = std::max(diff, std::fabs(a.logits[r][i][v] - b.logits[r][i][v]));
        }
        if (a.ids[r][i] != b.ids[r][i]) {
          ++differ;
          break; // later steps decode different tokens
        }
      }
    bool ok = differ == 0 && diff / scale <= tol;
    fmt::print("  {:<40} {:>12.3e} {:>12.3e} {:>10.0e}  {}{}\n",
               "decode steps (ragged batch, 8 steps)", diff, diff / scale, tol,
               ok ? "PASS" : "FAIL",
               differ ? fmt::format("  ({} sequences pick another token)", differ) : "");
    (ok ? passed : failed)++;
  }
  // Training entries: every gradient, each against its own largest value
  // (1e-3: long fp32 reductions in other orders, through the MLA and
  // routing backward).
  for (const char *entry : {"gradients", "train_gradients"}) {
    if (!art.hasEntry(entry))
      continue;
    auto a = runIdsAll(host, entry, rows), b = runIdsAll(gpu, entry, rows);
    double worst = 0;
    size_t worstAt = 0;
    bool finite = a.size() == b.size();
    for (size_t r = 0; finite && r < a.size(); ++r) {
      double scale = 1e-30, diff = 0;
      for (size_t i = 0; i < a[r].second.size() && i < b[r].second.size(); ++i) {
        scale = std::max(scale, std::fabs(a[r].second[i]));
        diff = std::max(diff, std::fabs(a[r].second[i] - b[r].second[i]));
        finite = finite && std::isfinite(b[r].second[i]);
      }
      if (a[r].second.size() != b[r].second.size())
        finite = false;
      if (diff / scale > worst) {
        worst = diff / scale;
        worstAt = r;
      }
    }
    bool ok = finite && worst <= 1e-3;
    fmt::print("  {:<40} {:>12} {:>12.3e} {:>10.0e}  {}  (worst: result {} of {})\n",
               std::string(entry) + " (every gradient)", "", worst, 1e-3,
               ok ? "PASS" : "FAIL", worstAt, a.size());
    (ok ? passed : failed)++;
  }
  // Kernel by kernel: every launch of forward and decode (and of the
  // gradients entry of a training artifact), on the same inputs, its
  // outputs against the host's (the first divergence names the kernel at
  // fault; later ones inherit it).
  for (const char *entry : {"forward", "decode", "gradients"}) {
    if (!art.hasEntry(entry))
      continue;
    // Backward kernels sum longer chains in other orders: 1e-3.
    const double tol = std::string(entry) == "gradients" ? 1e-3 : 1e-4;
    std::vector<std::vector<std::vector<double>>> reference;
    host.onLaunch = [&](size_t, const std::string &,
                        const std::vector<HostTensor<float> *> &outs) {
      reference.emplace_back();
      for (const HostTensor<float> *t : outs) {
        std::vector<double> v;
        for (int64_t i = 0; i < t->numel(); ++i)
          v.push_back(t->isInt ? double(t->i[i]) : double(t->f[i]));
        reference.back().push_back(std::move(v));
      }
    };
    runIds(host, entry, rows, std::string(entry) == "decode");
    host.onLaunch = nullptr;
    std::map<std::string, double> worst;
    std::string firstBad;
    gpu.onLaunch = [&](size_t l, const std::string &kernel,
                       const std::vector<HostTensor<float> *> &outs) {
      double w = 0;
      std::string detail;
      for (size_t o = 0; o < outs.size(); ++o) {
        const std::vector<double> &ref = reference.at(l).at(o);
        double scale = 1e-30, diff = 0;
        for (int64_t i = 0; i < outs[o]->numel() && size_t(i) < ref.size(); ++i) {
          double g = outs[o]->isInt ? double(outs[o]->i[i]) : double(outs[o]->f[i]);
          scale = std::max(scale, std::fabs(ref[i]));
          if (std::fabs(g - ref[i]) > diff && detail.empty() &&
              std::fabs(g - ref[i]) > 1e-4 * std::max(1.0, std::fabs(ref[i])))
          {
            // The whole innermost row around the first difference.
            int64_t last = outs[o]->shape.empty() ? 1 : outs[o]->shape.back();
            int64_t row = i / std::max<int64_t>(last, 1);
            std::vector<double> hr, gr;
            for (int64_t j = row * last; j < (row + 1) * last && j < outs[o]->numel(); ++j) {
              hr.push_back(ref[j]);
              gr.push_back(outs[o]->isInt ? double(outs[o]->i[j]) : double(outs[o]->f[j]));
            }
            detail = fmt::format("output {} element {} (row {}): host [{}] gpu [{}]", o,
                                 i, row, fmt::join(hr, ", "), fmt::join(gr, ", "));
          }
          diff = std::max(diff, std::fabs(g - ref[i]));
        }
        if (size_t(outs[o]->numel()) != ref.size())
          diff = INFINITY;
        w = std::max(w, diff / scale);
      }
      worst[kernel] = std::max(worst[kernel], w);
      if (w > tol && firstBad.empty())
        firstBad = fmt::format("launch {} ({}); {}", l, kernel, detail);
    };
    runIds(gpu, entry, rows, std::string(entry) == "decode");
    gpu.onLaunch = nullptr;
    for (auto &[kernel, w] : worst) {
      bool ok = w <= tol;
      fmt::print("  {:<40} {:>12} {:>12.3e} {:>10.0e}  {}\n",
                 std::string(entry) + ": " + kernel, "", w, tol, ok ? "PASS" : "FAIL");
      (ok ? passed : failed)++;
    }
    if (!firstBad.empty())
      fmt::print("  first divergence in {}: {}\n", entry, firstBad);
  }
  if (art.hasEntry("train_step")) {
    // One optimizer step on both (last: it updates the parameters): its
    // results (loss, gradient norm, expert counts, loss parts), then the
    // AdamW moments, which are linear in the clipped gradients (the
    // parameters themselves move by ~lr sign(g) on a first step, where
    // gradients at rounding level may differ in sign).
    std::vector<int64_t> flat;
    for (auto &r : rows)
      flat.insert(flat.end(), r.begin(), r.end());
    int64_t step = 1;
    float lr = 1e-3f;
    std::vector<HostTensor<float>> args = trainStepArgs(
        flat, int64_t(rows.size()), int64_t(rows[0].size()), step, lr);
    auto collect = [](const std::vector<HostTensor<float>> &out) {
      std::vector<std::vector<double>> v;
      for (const HostTensor<float> &t : out) {
        v.emplace_back();
        for (int64_t i = 0; i < t.numel(); ++i)
          v.back().push_back(t.isInt ? double(t.i[i]) : double(t.f[i]));
      }
      return v;
    };
    auto a = collect(host.run("train_step", args));
    auto b = collect(gpu.run("train_step", args));
    double worst = 0;
    bool same = a.size() == b.size();
    for (size_t r = 0; same && r < a.size(); ++r)
      for (size_t i = 0; i < a[r].size(); ++i)
        worst = std::max(worst, std::fabs(a[r][i] - b[r][i]) /
                                    std::max(1e-30, std::fabs(a[r][i])));
    bool ok = same && worst <= 1e-3;
    fmt::print("  {:<40} {:>12} {:>12.3e} {:>10.0e}  {}\n", "train_step results", "", worst,
               1e-3, ok ? "PASS" : "FAIL");
    (ok ? passed : failed)++;
    gpu.downloadParams();
    // bf16 moments (--optimizer-state bf16): the host rounds its value
    // (from double) to bf16 and the GPU its fp32 one, so an element at a
    // rounding boundary may land one bf16 step (2^-8 of itself, at most of
    // the tensor's largest) apart; that step is added to the bound.
    double mWorst = 0, mTol = 1e-3;
    std::string mAt;
    for (auto &[name, hv] : host.paramData()) {
      if (name.rfind("optimizer.", 0) != 0)
        continue;
      const std::vector<float> &gv = gpu.paramData().at(name);
      double scale = 1e-30, diff = 0;
      for (size_t i = 0; i < hv.size(); ++i) {
        scale = std::max(scale, std::fabs(double(hv[i])));
        diff = std::max(diff, std::fabs(double(hv[i]) - double(gv[i])));
      }
      const ParamInfo *info = art.param(name);
      const double tol = info && info->dtype == DType::BF16 ? 1e-3 + 0x1p-8 : 1e-3;
      if (diff / scale / tol > mWorst / mTol) {
        mWorst = diff / scale;
        mTol = tol;
        mAt = name;
      }
    }
    ok = mWorst <= mTol;
    fmt::print("  {:<40} {:>12} {:>12.3e} {:>10.1e}  {}  ({})\n",
               "train_step AdamW moments", "", mWorst, mTol, ok ? "PASS" : "FAIL", mAt);
    (ok ? passed : failed)++;
  }
  fmt::print("  ({:.1f} s)\n", std::chrono::duration<double>(
                                     std::chrono::steady_clock::now() - start)
                                     .count());
  fmt::print("{} passed, {} failed\n", passed, failed);
  return failed ? 1 : 0;
}
#endif

template <typename Session> std::string graphNote(Session &) { return ""; }
/// DSV3_PROFILE: the profile starts here (after the warm-up runs).
template <typename Session> void profileFromHere(Session &) {}
#ifdef DSV3_HAVE_CUDA
std::string graphNote(cuda::CudaSession &s) {
  return fmt::format(" (CUDA graphs: {} captured, {} replays)", s.graphStats().captured,
                     s.graphStats().replayed);
}
void profileFromHere(cuda::CudaSession &s) { s.resetProfile(); }
#endif

/// Prefill and decode latencies of the decode entry; with --context C, of
/// decode steps at context C (no prefill).
template <typename Session> int timeDecode(const Options &o, Session &s,
                                           const std::string &backend) {
  using Real = typename Session::Real;
  const Entry &decode = s.artifact().entry("decode");
  size_t layers = decode.args.size() - 2;
  int64_t B = o.batch, P = o.seq, N = std::max<int64_t>(o.steps, 1);
  int64_t W = decode.args.at(2).shape.at(2);
  int64_t S = (o.context > 0 ? o.context : P) + N + 2;
  int64_t vocab = s.artifact().param("model.embed_tokens.weight")->shape.at(0);
  std::mt19937_64 rng(o.seed);
  std::vector<int64_t> ids(size_t(B * P));
  for (auto &x : ids)
    x = int64_t(rng() % uint64_t(vocab));
  std::vector<std::vector<Real>> caches(layers, std::vector<Real>(size_t(B * S * W)));
  if (o.context > 0) {
    // Decode at a given context without prefilling it: the caches hold
    // random latents (unit scale, as the RMS-normed latents are).
    std::normal_distribution<double> normal(0.0, 1.0);
    for (auto &c : caches)
      for (Real &v : c)
        v = Real(normal(rng));
  }
  ResidentCaches<Session, Real> onDevice(s, caches);
  std::vector<int64_t> past(size_t(B), 0);
  // Prompts through the prefill entry (last position's logits) when the
  // artifact has one, as generate does; steps through decode.
  const std::string prefillEntry = s.artifact().hasEntry("prefill") ? "prefill" : "decode";
  auto call = [&](int64_t T) {
    std::vector<HostTensor<Real>> args = decodeArgs(ids, B, T, past, caches, S, W);
    auto t0 = std::chrono::steady_clock::now();
    s.run(T > 1 ? prefillEntry : "decode", args);
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0)
        .count();
  };
  double prefill = 0;
  if (o.context > 0) {
    for (int64_t &p : past)
      p = o.context;
  } else {
    call(P); // warm-up (module load, first-touch)
    profileFromHere(s);
    std::vector<double> times; // the median of 3 (each rewrites the caches)
    for (int r = 0; r < 3; ++r)
      times.push_back(call(P));
    std::sort(times.begin(), times.end());
    prefill = times[1];
    for (int64_t &p : past)
      p = P;
  }
  ids.resize(size_t(B));
  for (int warm = 0; warm < 2; ++warm) { // eager, then captured as a graph
    call(1);
    for (int64_t &p : past)
      ++p;
  }
  if (o.context > 0) // (else the profile keeps the timed prefills)
    profileFromHere(s);
  double total = 0;
  for (int64_t n = 0; n < N; ++n) {
    total += call(1);
    for (int64_t &p : past)
      ++p;
  }
  double step = total / double(N);
  std::string first =
      o.context > 0 ? fmt::format("context {}", o.context)
                    : fmt::format("prompt {}: prefill {:.2f} ms ({:.0f} tokens/s)", P,
                                  prefill, double(B * P) / prefill * 1e3);
  // Measured after the steps, the caches still resident (the last line
  // stays the timing line).
  if (std::string m = s.memoryReport(); !m.empty())
    fmt::print("{}\n", m);
  fmt::print("time {} on {}: batch {}, {}, decode {:.2f} ms per step ({:.0f} tokens/s) "
             "over {} steps{}\n",
             s.artifact().dir, backend, B, first, step, double(B) / step * 1e3, N,
             graphNote(s));
  return 0;
}

/// One training step's parts on random ids: fwd+bwd (train_gradients, the
/// loss with its balance terms and every gradient) and the whole step
/// (train_step: the same plus clipping, AdamW and the bias update).
template <typename Session> int timeTrain(const Options &o, Session &s,
                                          const std::string &backend) {
  using Real = typename Session::Real;
  const Artifact &art = s.artifact();
  if (!art.hasEntry("train_step") || !art.hasEntry("train_gradients"))
    fail("time --train: {} has no training entries (compile it with --mode train)", art.dir);
  int64_t B = o.batch, P = o.seq, N = std::max<int64_t>(o.steps, 1);
  int64_t vocab = art.param("model.embed_tokens.weight")->shape.at(0);
  std::mt19937_64 rng(o.seed);
  std::vector<int64_t> ids(size_t(B * P));
  for (auto &x : ids)
    x = int64_t(rng() % uint64_t(vocab));
  int64_t step = 0;
  Real lr = Real(1e-5);
  auto call = [&](const std::string &entry) {
    std::vector<HostTensor<Real>> args = trainStepArgs(ids, B, P, ++step, lr);
    if (entry != "train_step")
      args.resize(1); // train_gradients takes the ids alone
    auto t0 = std::chrono::steady_clock::now();
    s.run(entry, args);
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0)
        .count();
  };
  auto median = [&](const std::string &entry) {
    call(entry); // warm-up
    profileFromHere(s);
    std::vector<double> t;
    for (int64_t n = 0; n < N; ++n)
      t.push_back(call(entry));
    std::sort(t.begin(), t.end());
    return t[t.size() / 2];
  };
  // train_step returns a few scalars; train_gradients returns every
  // gradient, which on the GPU is copied to the host (22 GB for the
  // benchmark's slice): the step is the figure that measures the device.
  // On the GPU train_gradients is mostly that copy (~15 s for 22 GB): timed
  // there only with DSV3_TIME_GRADIENTS=1.
  const bool gradients = backend.rfind("cuda", 0) != 0 || std::getenv("DSV3_TIME_GRADIENTS");
  double full = median("train_step"), fb = gradients ? median("train_gradients") : 0;
  double tokens = double(B * P);
  // Measured after the steps (the last line stays the timing line).
  if (std::string m = s.memoryReport(); !m.empty())
    fmt::print("{}\n", m);
  fmt::print("time {} on {}: train batch {} x {}: train_step {:.2f} ms ({:.0f} tokens/s; "
             "fwd+bwd+AdamW), {}, median of {}; {} compute\n",
             art.dir, backend, B, P, full, tokens / full * 1e3,
             gradients ? fmt::format("train_gradients {:.2f} ms (fwd+bwd, every gradient "
                                     "returned to the caller)",
                                     fb)
                       : std::string("train_gradients not timed (DSV3_TIME_GRADIENTS=1)"),
             N, o.compute);
  return 0;
}

/// generate / forward / verify with one session of either backend.
template <typename Session>
int runInference(const Options &o, const Artifact &art, Session &s,
                 const std::string &backend) {
  if (o.command == "verify") {
    if (o.oracle.empty())
      fail("verify: --oracle DIR is required");
    return verify(o, art, s, backend);
  }
  if (o.command == "time")
    return o.timeTrain ? timeTrain(o, s, backend) : timeDecode(o, s, backend);
  if (o.command == "generate") {
    if (o.promptIds.empty() == o.prompts.empty())
      fail("generate: give --prompt-ids IDS, or --tokenizer PATH with --prompt TEXT");
    if (!o.prompts.empty() && o.tokenizer.empty())
      fail("generate: --prompt TEXT needs --tokenizer PATH (a tokenizer.json)");
    GenerateOptions g;
    g.maxNew = o.maxNew;
    g.maxBatch = o.maxBatch;
    g.temperature = o.temperature;
    g.topP = o.topP;
    g.seed = o.seed;
    std::optional<Tokenizer> tok;
    std::vector<std::vector<int64_t>> prompts;
    if (!o.tokenizer.empty()) {
      tok = Tokenizer::load(o.tokenizer);
      int64_t vocab = s.artifact().param("model.embed_tokens.weight")->shape.at(0);
      if (tok->vocabSize() > vocab)
        fail("generate: the tokenizer {} has {} ids, more than the model's vocabulary ({})",
             tok->path(), tok->vocabSize(), vocab);
      g.stopIds = tok->endOfSentenceIds();
      for (const std::string &text : o.prompts)
        prompts.push_back(tok->encode(text, !o.noSpecial));
    } else {
      prompts = parseIdLists("--prompt-ids", o.promptIds);
    }
    // One text prompt streams its continuation as it is produced.
    std::optional<TokenStream> stream;
    if (tok && prompts.size() == 1) {
      stream.emplace(*tok);
      fmt::print("{}", o.prompts[0]);
      std::fflush(stdout);
      g.onToken = [&](size_t, int64_t id) {
        if (!(o.skipSpecial && tok->isSpecial(id))) {
          fmt::print("{}", stream->push(id));
          std::fflush(stdout);
        }
      };
    }
    auto start = std::chrono::steady_clock::now();
    GenerateResult r = o.speculative.empty() ? generate(s, prompts, g)
                                             : generateSpeculative(s, prompts, g);
    double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (stream)
      fmt::print("{}\n", stream->finish());
    for (size_t b = 0; b < prompts.size(); ++b) {
      if (tok && !stream)
        fmt::print("prompt {}: {} -> {}\n", b, nlohmann::json(o.prompts[b]).dump(),
                   nlohmann::json(tok->decode(r.ids[b], o.skipSpecial)).dump());
      if (!tok)
        fmt::print("prompt {}: [{}] -> [{}]\n", b, fmt::join(prompts[b], ", "),
                   fmt::join(r.ids[b], ", "));
    }
    if (!o.speculative.empty()) {
      const SpeculativeStats &st = r.speculative;
      int64_t tokens = 0;
      for (auto &ids : r.ids)
        tokens += int64_t(ids.size());
      fmt::print("speculative mtp: {} of {} drafts accepted ({:.0f}%), {} tokens in {} "
                 "main-model steps ({:.2f} tokens per step), {:.3f} s\n",
                 st.accepted, st.drafted,
                 st.drafted ? 100.0 * double(st.accepted) / double(st.drafted) : 0.0,
                 tokens, st.mainSteps,
                 st.mainSteps ? double(tokens) / double(st.mainSteps) : 0.0, seconds);
    }
    return 0;
  }
  if (o.command == "forward") {
    if (o.ids.empty() || o.out.empty())
      fail("forward: --ids and --out are required");
    std::vector<std::vector<int64_t>> ids = parseIdLists("--ids", o.ids);
    if (o.throughCache && processCommunicator().size() > 1)
      fail("forward --through-cache runs on one rank (got {})", processCommunicator().size());
    auto [shape, logits] = o.throughCache ? runIdsAll(s, "decode", ids, true).at(0)
                                          : runIdsOnRanks(s, "forward", ids);
    if (processCommunicator().rank() != 0)
      return 0; // rank 0 writes the whole batch's logits
    OwnedTensor t;
    t.name = "logits";
    t.dtype = DType::F32;
    t.shape = shape;
    t.data.resize(logits.size() * 4);
    for (size_t i = 0; i < logits.size(); ++i) {
      float f = float(logits[i]);
      std::memcpy(t.data.data() + 4 * i, &f, 4);
    }
    writeSafetensors(o.out, {t});
    fmt::print("wrote logits {} to {}\n", shapeString(shape), o.out);
    return 0;
  }
  fail("unknown command '{}' (generate, forward, verify, compare, time, init, quantize, "
       "train, tokenize, encode, decode, plot, gradcheck or jit)",
       o.command);
}

/// dsv3-run encode / decode: a tokenizer.json on its own (the --jsonl
/// forms, one JSON object a line, are what test/Tokenizer checks against
/// the `tokenizers` library).
int tokenizerCommand(const Options &o) {
  Tokenizer tok = Tokenizer::load(o.tokenizer);
  auto encodeOne = [&](const std::string &text) { return tok.encode(text, !o.noSpecial); };
  if (o.jsonl.empty()) {
    if (o.command == "encode") {
      for (const std::string &p : o.prompts)
        fmt::print("{}\n", fmt::join(encodeOne(p), ","));
    } else {
      for (const auto &ids : parseIdLists("--ids", o.ids))
        fmt::print("{}\n", tok.decode(ids, o.skipSpecial));
    }
    return 0;
  }
  std::ifstream in(o.jsonl);
  if (!in)
    fail("{}: cannot open", o.jsonl);
  std::string line;
  for (int64_t n = 1; std::getline(in, line); ++n) {
    if (line.empty())
      continue;
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(line);
    } catch (const nlohmann::json::exception &e) {
      fail("{}:{}: not JSON: {}", o.jsonl, n, e.what());
    }
    nlohmann::json r;
    if (o.command == "encode") {
      if (!j.contains("text") || !j["text"].is_string())
        fail("{}:{}: expected {{\"text\": \"...\"}}", o.jsonl, n);
      r["ids"] = encodeOne(j["text"].get<std::string>());
    } else {
      if (!j.contains("ids") || !j["ids"].is_array())
        fail("{}:{}: expected {{\"ids\": [...]}}", o.jsonl, n);
      auto ids = j["ids"].get<std::vector<int64_t>>();
      r["text"] = tok.decode(ids, false);
      r["text_skip_special"] = tok.decode(ids, true);
    }
    fmt::print("{}\n", r.dump());
  }
  return 0;
}

#ifdef DSV3_HAVE_CUDA
/// dsv3-run jit: fill the NVRTC re-JIT cache for an architecture.
int jit(const Options &o) {
  if (o.arch.empty())
    fail("jit: --arch ARCH is required (e.g. sm_89)");
  if (!cuda::haveNvrtc())
    fail("jit: this dsv3-run was built without NVRTC");
  std::string path = o.artifact + "/manifest.json";
  std::ifstream in(path);
  if (!in)
    fail("jit: cannot read {}", path);
  nlohmann::json manifest = nlohmann::json::parse(in);
  if (!manifest.contains("cuda") || !manifest["cuda"].contains("source"))
    fail("{}: the artifact has no CUDA source (compile it with dsv3c --target cuda)", path);
  const nlohmann::json &c = manifest["cuda"];
  std::vector<std::string> instances;
  for (const auto &[expr, mangled] : c["functions"].items())
    instances.push_back(expr);
  std::ifstream src(o.artifact + "/" + c["source"].get<std::string>(), std::ios::binary);
  std::ostringstream source;
  source << src.rdbuf();
  std::string cubin, cubinPath, error;
  bool cached = false;
  if (!cuda::jitCubin(source.str(), instances, o.arch,
                      o.cacheDir.empty() ? cuda::jitCacheDir() : o.cacheDir, cubin, cubinPath,
                      cached, error))
    fail("jit: {}", error);
  fmt::print("jit {} for {}: {} {} ({} bytes, {} kernels, NVRTC {})\n", o.artifact, o.arch,
             cached ? "cached in" : "compiled to", cubinPath, cubin.size(), instances.size(),
             cuda::nvrtcVersionString());
  return 0;
}
#endif

/// An artifact compiled for several ranks (dsv3c --ep / --dp) runs with
/// one process a rank (dsv3-run launch, torchrun, srun); each binds its own
/// experts. `init` writes every rank's weights and needs no ranks.
void checkRanks(const Options &o, Artifact &art) {
  Communicator &c = processCommunicator();
  if (o.command == "init" || o.command == "jit")
    return;
  if (!art.parallel()) {
    if (c.size() > 1)
      fail("{} is a single-rank artifact but this is rank {} of {}: compile it with "
           "dsv3c --ep N (expert parallelism) to run it on several ranks",
           art.dir, c.rank(), c.size());
    return;
  }
  if (c.size() != art.dataParallel)
    fail("{} was compiled for {} ranks (expert parallelism {}, data parallelism {}) but this "
         "process is one of {}: run it with dsv3-run launch --nproc {} {} ...",
         art.dir, art.dataParallel, art.expertParallel, art.dataParallel, c.size(),
         art.dataParallel, o.command);
  if (o.command != "forward" && o.command != "train" && o.command != "time" &&
      o.command != "verify" && o.command != "generate")
    fail("{} on {} ranks: `forward`, `verify`, `generate`, `train` and `time` run parallel "
         "artifacts so far",
         o.command, c.size());
  art.selectRank(c.rank());
}

template <typename Real> int run(const Options &o) {
  if (o.command == "jit") {
#ifdef DSV3_HAVE_CUDA
    return jit(o);
#else
    fail("jit: this dsv3-run was built without the CUDA toolkit");
#endif
  }
  if (o.command == "fp8-gemm")
    return fp8Gemm(o);
  if (o.command == "bf16-check") {
#ifdef DSV3_HAVE_CUDA
    int64_t M = 0, N = 0, K = 0;
    if (!o.shape.empty() && (std::sscanf(o.shape.c_str(), "%ld,%ld,%ld", &M, &N, &K) != 3 ||
                             M < 1 || N < 1 || K < 8))
      fail("bf16-check: --shape takes M,N,K (K >= 8), got '{}'", o.shape);
    return bf16Check(o.artifact, o.seq, o.context, M, N, K, o.seed);
#else
    fail("bf16-check: this dsv3-run was built without the CUDA toolkit");
#endif
  }
  if (o.command == "placement") {
    if (o.ep < 1 || o.out.empty())
      fail("placement: --ep N and --out FILE are required");
    std::string report;
    nlohmann::json placed = placeExperts(o.artifact, o.ep, o.redundant, report);
    std::string tmp = o.out + ".tmp";
    {
      std::ofstream f(tmp);
      f << placed.dump(1) << "\n";
      if (!f)
        fail("{}: cannot write", tmp);
    }
    if (std::rename(tmp.c_str(), o.out.c_str()) != 0)
      fail("{}: cannot rename to {}: {}", tmp, o.out, std::strerror(errno));
    fmt::print("{}wrote {} (dsv3c --ep {} --ep-placement {})\n", report, o.out, o.ep, o.out);
    return 0;
  }
  if (o.command == "plot") {
    std::vector<std::string> files = plotMetrics(o.artifact, o.outDir);
    fmt::print("wrote {} files to {}: {}\n", files.size(), o.outDir, fmt::join(files, ", "));
    return 0;
  }
  if (o.command == "encode" || o.command == "decode")
    return tokenizerCommand(o);
  if (o.command == "tokenize") {
    if (!o.tokenizer.empty()) { // BPE ids of the whole text (no template tokens)
      std::ifstream in(o.text, std::ios::binary);
      if (!in)
        fail("{}: cannot open", o.text);
      std::stringstream ss;
      ss << in.rdbuf();
      Tokenizer tok = Tokenizer::load(o.tokenizer);
      std::vector<uint32_t> ids;
      for (int64_t id : tok.encode(ss.str(), false))
        ids.push_back(uint32_t(id));
      writeTokens(ids, o.out);
      fmt::print("wrote {} tokens to {} ({} bytes of text, {})\n", ids.size(), o.out,
                 ss.str().size(), tok.path());
      return 0;
    }
    int64_t n = tokenizeBytes(o.text, o.out);
    fmt::print("wrote {} tokens to {}\n", n, o.out);
    return 0;
  }
  Tracer *tracer = activeTracer();
  double t0 = tracer ? tracer->nowUs() : 0;
  Artifact art = Artifact::load(o.artifact);
  if (tracer)
    tracer->phase("load the manifest", t0);
  checkRanks(o, art);
  if (o.compute == "bf16" && !art.hasEntry("train_step"))
    fail("--compute bf16: {} is not a training artifact (its bf16 kernels come with "
         "dsv3c --mode train)",
         art.dir);
  // Before the weights are opened: a model this machine cannot hold fails
  // now, with the needed and available bytes.
  if (o.backend == "host" && (o.command == "generate" || o.command == "forward" ||
                              o.command == "verify" || o.command == "time" ||
                              o.command == "train" || o.command == "gradcheck"))
    checkHostMemory(art, sizeof(Real));
  if (o.command == "init")
    return init(o, art);
  if (o.command == "train")
    return runTrain<Real>(o, art);
  if (o.command == "gradcheck") {
    WeightStore weights(o.weights);
    return gradcheck(o, art, weights);
  }
  if (o.command == "quantize") {
    WeightStore weights(o.weights);
    return quantize(o, art, weights);
  }
#ifdef DSV3_HAVE_CUDA
  if (o.randomWeights >= 0) {
    t0 = tracer ? tracer->nowUs() : 0;
    cuda::CudaSession s(art, cuda::RandomWeights{uint64_t(o.randomWeights), o.initStd});
    s.bf16Compute = o.compute == "bf16";
    if (tracer)
      tracer->phase("start the GPU session (kernels, random weights)", t0);
    return runInference(o, art, s, "cuda: " + s.description());
  }
#else
  if (o.randomWeights >= 0)
    fail("--random-weights: this dsv3-run was built without CUDA headers");
#endif
  t0 = tracer ? tracer->nowUs() : 0;
  WeightStore weights(o.weights);
  if (tracer)
    tracer->phase("open the weights", t0);
  if (o.command == "compare") {
#ifdef DSV3_HAVE_CUDA
    return compareBackends(o, art, weights);
#else
    fail("compare: this dsv3-run was built without CUDA headers");
#endif
  }
  if (o.backend == "cuda") {
#ifdef DSV3_HAVE_CUDA
    if (o.dtype != "fp32")
      fail("--backend cuda computes in fp32 today (bf16 kernels are not built yet)");
    t0 = tracer ? tracer->nowUs() : 0;
    cuda::CudaSession s(art, weights);
    s.bf16Compute = o.compute == "bf16";
    if (tracer)
      tracer->phase("start the GPU session (kernels, weights upload)", t0);
    return runInference(o, art, s, "cuda: " + s.description());
#else
    fail("--backend cuda: this dsv3-run was built without CUDA headers");
#endif
  }
  t0 = tracer ? tracer->nowUs() : 0;
  HostSession<Real> s(art, weights);
  if (tracer)
    tracer->phase("start the host session (bind weights)", t0);
  return runInference(o, art, s, "host");
}

} // namespace

/// A TCP port free on this machine now (for rank 0 to listen on).
int freeLocalPort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  if (fd < 0 || bind(fd, reinterpret_cast<sockaddr *>(&a), sizeof a) < 0 ||
      getsockname(fd, reinterpret_cast<sockaddr *>(&a), &len) < 0)
    fail("launch: cannot find a free port: {}", std::strerror(errno));
  close(fd);
  return ntohs(a.sin_port);
}

/// dsv3-run launch --nproc N [--master-port P] COMMAND ARGS...: runs
/// COMMAND in N processes on this machine with torchrun's variables (RANK,
/// WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT).
/// Ranks > 0 print only errors. When a rank fails, the others get
/// DSV3_LAUNCH_GRACE seconds (default 30) to fail on their own (they see
/// the lost connection at their next collective) before they are killed;
/// the exit status is the first failure's.
int launchRanks(int argc, char **argv) {
  int nproc = 0, port = 0, i = 2;
  auto intArg = [&](const char *flag) {
    if (i + 1 >= argc)
      fail("launch: {} needs a value", flag);
    char *end = nullptr;
    long v = std::strtol(argv[i + 1], &end, 10);
    if (*end || v < 1 || v > 65535)
      fail("launch: {} '{}' must be an integer in [1, 65535]", flag, argv[i + 1]);
    i += 2;
    return int(v);
  };
  while (i < argc && std::string(argv[i]).rfind("--", 0) == 0) {
    std::string a = argv[i];
    if (a == "--nproc")
      nproc = intArg("--nproc");
    else if (a == "--master-port")
      port = intArg("--master-port");
    else
      fail("launch: unknown option '{}' (--nproc N, --master-port P, then the command)", a);
  }
  if (nproc < 1)
    fail("launch: --nproc N is required (usage: dsv3-run launch --nproc N COMMAND ARGS...)");
  if (i >= argc)
    fail("launch: no command to run (usage: dsv3-run launch --nproc N COMMAND ARGS...)");
  if (std::string(argv[i]) == "launch")
    fail("launch: the command cannot be launch itself");
  if (!port)
    port = freeLocalPort();
  double grace = 30;
  if (const char *g = std::getenv("DSV3_LAUNCH_GRACE"))
    grace = std::atof(g);
  std::vector<pid_t> pids;
  for (int r = 0; r < nproc; ++r) {
    pid_t pid = fork();
    if (pid < 0)
      fail("launch: fork: {}", std::strerror(errno));
    if (pid == 0) {
      setenv("RANK", std::to_string(r).c_str(), 1);
      setenv("LOCAL_RANK", std::to_string(r).c_str(), 1);
      setenv("WORLD_SIZE", std::to_string(nproc).c_str(), 1);
      setenv("LOCAL_WORLD_SIZE", std::to_string(nproc).c_str(), 1);
      setenv("MASTER_ADDR", "127.0.0.1", 1);
      setenv("MASTER_PORT", std::to_string(port).c_str(), 1);
      setenv("NCCL_NVLS_ENABLE", "0", 1); // NVLink multicast stays off
      if (r > 0) {
        int devnull = open("/dev/null", O_WRONLY);
        if (devnull >= 0)
          dup2(devnull, 1);
      }
      std::vector<char *> args{argv[0]};
      for (int k = i; k < argc; ++k)
        args.push_back(argv[k]);
      args.push_back(nullptr);
      execv("/proc/self/exe", args.data());
      fmt::print(stderr, "dsv3-run launch: rank {}: exec failed: {}\n", r, std::strerror(errno));
      _exit(127);
    }
    pids.push_back(pid);
  }
  int status = 0, alive = nproc;
  std::vector<bool> done(size_t(nproc), false);
  auto failedAt = std::chrono::steady_clock::time_point::max();
  while (alive > 0) {
    int ws = 0;
    pid_t pid = waitpid(-1, &ws, WNOHANG);
    if (pid > 0) {
      size_t r = size_t(std::find(pids.begin(), pids.end(), pid) - pids.begin());
      if (r >= pids.size())
        continue;
      done[r] = true;
      --alive;
      int code = WIFEXITED(ws) ? WEXITSTATUS(ws) : 128 + WTERMSIG(ws);
      if (code != 0) {
        if (WIFSIGNALED(ws))
          fmt::print(stderr, "dsv3-run launch: rank {} was killed by signal {}\n", r,
                     WTERMSIG(ws));
        else
          fmt::print(stderr, "dsv3-run launch: rank {} exited with status {}\n", r, code);
        if (!status) {
          status = code;
          failedAt = std::chrono::steady_clock::now();
        }
      }
      continue;
    }
    if (status && std::chrono::steady_clock::now() - failedAt >
                      std::chrono::milliseconds(int64_t(grace * 1000))) {
      for (int r = 0; r < nproc; ++r)
        if (!done[size_t(r)]) {
          fmt::print(stderr, "dsv3-run launch: rank {} still running {:.0f} s after a failure: "
                             "killed\n", r, grace);
          kill(pids[size_t(r)], SIGKILL);
        }
      failedAt = std::chrono::steady_clock::time_point::max();
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return status;
}

int main(int argc, char **argv) {
  if (argc > 1 && std::string(argv[1]) == "launch") {
    try {
      return launchRanks(argc, argv);
    } catch (const Error &e) {
      fmt::print(stderr, "dsv3-run: error: {}\n", e.what());
      return 2;
    }
  }
  std::string who;
  try {
    DistEnv env = distEnvFromEnvironment();
    if (env.size > 1)
      who = fmt::format(" [rank {} of {}]", env.rank, env.size);
    Options o = parseArgs(argc, argv);
    initProcessCommunicator(env);
    // The communication volume of the expert-parallel exchanges, once the
    // command is done (every rank reports its own; launch shows rank 0's).
    struct Report {
      ~Report() {
        std::string s = exchangeSummary();
        if (!s.empty() && logMode() != LogMode::Quiet)
          fmt::print("rank {}: {}\n", processCommunicator().rank(), s);
      }
    } report;
    if (o.trace.empty())
      return o.dtype == "fp64" ? run<double>(o) : run<float>(o);
    // The trace is written however the command ends.
    Tracer tracer;
    setActiveTracer(&tracer);
    int rc = 1;
    std::exception_ptr failure;
    try {
      rc = o.dtype == "fp64" ? run<double>(o) : run<float>(o);
    } catch (...) {
      failure = std::current_exception();
    }
    tracer.phase("dsv3-run " + o.command, 0);
    setActiveTracer(nullptr);
    tracer.write(o.trace, "dsv3-run " + o.command + " " + o.artifact);
    fmt::print(stderr, "wrote {} trace events to {}\n", tracer.size(), o.trace);
    if (failure)
      std::rethrow_exception(failure);
    return rc;
  } catch (const Error &e) {
    fmt::print(stderr, "dsv3-run{}: error: {}\n", who, e.what());
    return 1;
  } catch (const std::exception &e) {
    fmt::print(stderr, "dsv3-run{}: error: {}\n", who, e.what());
    return 1;
  }
}
