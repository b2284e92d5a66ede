//===- HostSession.cpp - run an artifact on the host ----------------------===//
#include "runtime/host/HostSession.h"

#include <cmath>
#include "runtime/Progress.h"
#include "runtime/Resources.h"
#include "runtime/Trace.h"

#include "runtime/Error.h"

#include <algorithm>

namespace dsv3rt {

std::map<std::string, BoundParam> bindWeights(const Artifact &artifact,
                                              const WeightStore &weights) {
  std::map<std::string, BoundParam> bound;
  std::vector<std::string> problems;
  double totalBytes = 0, doneBytes = 0;
  for (const ParamInfo &p : artifact.params)
    for (const std::string &name : p.checkpoint)
      if (const TensorView *t = weights.find(name))
        totalBytes += double(t->numElements()) * double(dtypeSize(t->dtype));
  Progress progress("loading weights from " + weights.path(), totalBytes, "bytes");
  std::map<std::string, const ParamInfo *> scalesOf; // FP8 weight -> its scales
  for (const ParamInfo &p : artifact.params)
    if (!p.scales.empty())
      scalesOf[p.scales] = &p;
  auto isFloat = [](DType d) {
    return d == DType::F32 || d == DType::BF16 || d == DType::F16 || d == DType::F64;
  };
  for (const ParamInfo &p : artifact.params) {
    std::vector<int64_t> each = p.tensorShape();
    BoundParam b;
    b.shape = p.shape;
    bool ok = true;
    if (p.role == "weight_scale")
      continue; // bound with its FP8 weight
    if (p.dtype == DType::F8E4M3) {
      // dsv3c --quantize fp8: e4m3 values and their block scales, read as
      // they are from an FP8 checkpoint, or quantized here from a bf16 /
      // fp32 one (amax / 448 per block, as `dsv3-run quantize` writes).
      const ParamInfo &sp = *scalesOf.at(p.name);
      BoundParam sb;
      sb.shape = sp.shape;
      int64_t rows = each.size() == 2 ? each[0] : 0, cols = each.size() == 2 ? each[1] : 0;
      int64_t br = artifact.fp8BlockRows, bc = artifact.fp8BlockCols;
      std::vector<int64_t> want = {(rows + br - 1) / br, (cols + bc - 1) / bc};
      std::vector<uint8_t> codes(size_t(rows * cols));
      std::vector<float> scales(size_t(want[0] * want[1]));
      for (const std::string &name : p.checkpoint) {
        const TensorView *t = weights.find(name);
        std::string sname = name + "_scale_inv";
        const TensorView *st = weights.find(sname);
        if (!t || t->shape != each) {
          problems.push_back(t ? fmt::format("tensor '{}' in {} has shape {}, expected {}",
                                             name, t->file, t->shapeString(), shapeString(each))
                               : fmt::format("missing tensor '{}' (expected F8_E4M3 or a "
                                             "float {})",
                                             name, shapeString(each)));
          ok = false;
          continue;
        }
        if (t->dtype == DType::F8E4M3) {
          if (!st || st->shape != want || !isFloat(st->dtype)) {
            problems.push_back(fmt::format(
                "tensor '{}' in {} is F8_E4M3 but its scale tensor '{}' is {} (expected F32 "
                "{}: {}x{} blocks)",
                name, t->file, sname,
                st ? std::string(safetensorsName(st->dtype)) + " " + st->shapeString() : std::string("missing"),
                shapeString(want), br, bc));
            ok = false;
            continue;
          }
          for (int64_t i = 0; i < rows * cols; ++i)
            b.data.push_back(t->at(size_t(i)));
          for (size_t i = 0; i < scales.size(); ++i)
            sb.data.push_back(st->at(i));
        } else if (isFloat(t->dtype)) {
          std::vector<double> w(size_t(rows * cols));
          for (size_t i = 0; i < w.size(); ++i)
            w[i] = t->at(i);
          quantizeFp8Blocks(w.data(), rows, cols, br, bc, codes.data(), scales.data());
          for (uint8_t c : codes)
            b.data.push_back(f8e4m3ToFloat(c));
          sb.data.insert(sb.data.end(), scales.begin(), scales.end());
        } else {
          problems.push_back(fmt::format("tensor '{}' in {} has dtype {}, expected F8_E4M3 or "
                                         "a float type",
                                         name, t->file, safetensorsName(t->dtype)));
          ok = false;
          continue;
        }
        auto bad = std::find_if(b.data.end() - rows * cols, b.data.end(),
                                [](double v) { return !std::isfinite(v); });
        auto badScale = std::find_if(sb.data.end() - int64_t(scales.size()), sb.data.end(),
                                     [](double v) { return !std::isfinite(v) || v <= 0; });
        if (bad != b.data.end() || badScale != sb.data.end()) {
          problems.push_back(fmt::format("tensor '{}' (or its scales) in {} has a non-finite "
                                         "value or a scale <= 0 (a corrupted checkpoint?)",
                                         name, t->file));
          ok = false;
        }
        doneBytes += double(t->numElements()) * double(dtypeSize(t->dtype));
        progress.update(doneBytes, name);
      }
      if (ok) {
        bound.emplace(p.name, std::move(b));
        bound.emplace(sp.name, std::move(sb));
      }
      continue;
    }
    // Optimizer moments start at zero when the checkpoint has none (a fresh
    // run from model weights); a checkpoint written by `train` has them.
    if (p.role == "optimizer_state" && !weights.find(p.checkpoint.front())) {
      int64_t n = 1;
      for (int64_t d : p.shape)
        n *= d;
      b.data.assign(size_t(n), 0.0);
      bound.emplace(p.name, std::move(b));
      continue;
    }
    for (const std::string &name : p.checkpoint) {
      const TensorView *t = weights.find(name);
      if (!t) {
        problems.push_back(fmt::format("missing tensor '{}' (expected {} {})",
                                       name, manifestName(p.dtype),
                                       shapeString(each)));
        ok = false;
        continue;
      }
      if (t->shape != each) {
        problems.push_back(fmt::format(
            "tensor '{}' in {} has shape {}, expected {} (weights of a "
            "different model?)",
            name, t->file, t->shapeString(), shapeString(each)));
        ok = false;
      }
      // Floating weights convert to the artifact's dtype at load (an fp32
      // checkpoint runs a bf16 artifact); anything else is a mismatch.
      // FP8 checkpoints (DeepSeek-V3's hub format): e4m3 weights with a
      // float `<name>_scale_inv` per block of the artifact's FP8 block size,
      // dequantized at load (w = e4m3 value x its block's scale).
      const TensorView *scale = nullptr;
      if (t->dtype == DType::F8E4M3 && isFloat(p.dtype) && ok) {
        std::string sname = name + "_scale_inv";
        scale = weights.find(sname);
        std::vector<int64_t> want;
        if (t->shape.size() == 2)
          want = {(t->shape[0] + artifact.fp8BlockRows - 1) / artifact.fp8BlockRows,
                  (t->shape[1] + artifact.fp8BlockCols - 1) / artifact.fp8BlockCols};
        if (t->shape.size() != 2) {
          problems.push_back(fmt::format("tensor '{}' in {} is F8_E4M3 but not a matrix "
                                         "(FP8 block scales cover 2-D weights)",
                                         name, t->file));
          ok = false;
        } else if (!scale) {
          problems.push_back(fmt::format("tensor '{}' in {} is F8_E4M3 but its scale tensor "
                                         "'{}' is missing (expected F32 {})",
                                         name, t->file, sname, shapeString(want)));
          ok = false;
        } else if (scale->shape != want || !isFloat(scale->dtype)) {
          problems.push_back(fmt::format(
              "scale tensor '{}' in {} is {} {}, expected F32 {} ({}x{} blocks of the {} "
              "weight)",
              sname, scale->file, safetensorsName(scale->dtype), scale->shapeString(),
              shapeString(want), artifact.fp8BlockRows, artifact.fp8BlockCols,
              t->shapeString()));
          ok = false;
        }
        if (!ok)
          continue;
      } else if (t->dtype != p.dtype && !(isFloat(t->dtype) && isFloat(p.dtype))) {
        problems.push_back(fmt::format("tensor '{}' in {} has dtype {}, expected {}",
                                       name, t->file, safetensorsName(t->dtype),
                                       safetensorsName(p.dtype)));
        ok = false;
      }
      if (!ok)
        continue;
      bool toBf16 = p.dtype == DType::BF16 && t->dtype != DType::BF16;
      int64_t nonFinite = -1;
      int64_t cols = t->shape.empty() ? 1 : t->shape.back();
      int64_t scaleCols = scale ? scale->shape[1] : 1;
      for (int64_t i = 0, n = t->numElements(); i < n; ++i) {
        double v = t->at(size_t(i));
        if (scale)
          v *= scale->at(size_t((i / cols) / artifact.fp8BlockRows * scaleCols +
                                (i % cols) / artifact.fp8BlockCols));
        if (!std::isfinite(v) && nonFinite < 0)
          nonFinite = i;
        b.data.push_back(toBf16 ? double(bf16ToFloat(floatToBf16(float(v)))) : v);
      }
      if (nonFinite >= 0) {
        problems.push_back(fmt::format("tensor '{}' in {} has a non-finite value ({}) at "
                                       "flat index {} (a corrupted or diverged checkpoint?)",
                                       name, t->file, t->at(size_t(nonFinite)), nonFinite));
        ok = false;
      }
      doneBytes += double(t->numElements()) * double(dtypeSize(t->dtype));
      progress.update(doneBytes, name);
    }
    if (ok)
      bound.emplace(p.name, std::move(b));
  }
  progress.finish(fmt::format("{} tensors", bound.size()));
  if (!problems.empty()) {
    std::string msg = fmt::format("{}: {} problem{} binding the weights of {}:",
                                  weights.path(), problems.size(),
                                  problems.size() > 1 ? "s" : "", artifact.dir);
    for (const std::string &s : problems)
      msg += "\n  " + s;
    throw Error(msg);
  }
  return bound;
}

template <typename Real>
HostSession<Real>::HostSession(const Artifact &artifact, const WeightStore &weights)
    : artifact_(artifact) {
  checkHostMemory(artifact, sizeof(Real));
  for (auto &[name, b] : bindWeights(artifact, weights)) {
    std::vector<Real> &data = paramData_[name];
    data.assign(b.data.begin(), b.data.end());
    HostTensor<Real> t;
    t.shape = b.shape;
    t.f = data.data();
    t.capacity = data.size();
    params_[name] = t;
  }
  // The plan's offsets are in artifact bytes; scale them so every floating
  // buffer can hold Real elements (relative placement, and hence reuse, is
  // kept exactly).
  size_t minFloat = sizeof(Real), arena = 0;
  for (auto &[n, e] : artifact.entries)
    for (const BufferInfo &b : e.buffers)
      if (b.dtype != DType::I64 && b.dtype != DType::I32)
        minFloat = std::min(minFloat, dtypeSize(b.dtype));
  scale_ = std::max<size_t>(1, sizeof(Real) / minFloat);
  for (auto &[n, e] : artifact.entries)
    arena = std::max(arena, size_t(e.arenaBytes) * scale_);
  arena_.resize(arena + 256);
}

template <typename Real>
std::vector<HostTensor<Real>>
HostSession<Real>::run(const std::string &name, std::vector<HostTensor<Real>> args) {
  double entryStartUs = activeTracer() ? activeTracer()->nowUs() : 0;
  const Entry &entry = artifact_.entry(name);
  if (args.size() != entry.args.size())
    fail("entry {}: {} arguments given, the artifact expects {}", name,
         args.size(), entry.args.size());
  for (size_t i = 0; i < args.size(); ++i)
    checkTokenBudget(entry, i, args[i].shape);
  for (size_t i = 0; i < args.size(); ++i) {
    bool isInt = entry.args[i].dtype == DType::I64;
    if (args[i].isInt != isInt || args[i].rank() != int64_t(entry.args[i].shape.size()))
      fail("entry {}: argument {} must be {} of rank {}", name, i,
           manifestName(entry.args[i].dtype), entry.args[i].shape.size());
  }
  uint8_t *base = arena_.data();
  base += (256 - reinterpret_cast<uintptr_t>(base) % 256) % 256;
  std::vector<HostTensor<Real>> buffers(entry.buffers.size());
  for (size_t i = 0; i < entry.buffers.size(); ++i) {
    const BufferInfo &info = entry.buffers[i];
    HostTensor<Real> &t = buffers[i];
    t.isInt = info.dtype == DType::I64;
    uint8_t *p = base + size_t(info.offset) * scale_;
    size_t bytes = size_t(info.bytes) * scale_;
    if (t.isInt) {
      t.i = reinterpret_cast<int64_t *>(p);
      t.capacity = bytes / sizeof(int64_t);
    } else {
      t.f = reinterpret_cast<Real *>(p);
      t.capacity = bytes / sizeof(Real);
    }
  }
  auto resolve = [&](const ValueRef &r) -> HostTensor<Real> * {
    switch (r.kind) {
    case ValueRef::Kind::Buffer: return &buffers[r.index];
    case ValueRef::Kind::Arg: return &args[r.index];
    case ValueRef::Kind::Param: {
      auto it = params_.find(r.param);
      DSV3_CHECK(it != params_.end(), "parameter {} not bound", r.param);
      return &it->second;
    }
    }
    return nullptr;
  };
  for (size_t l = 0; l < entry.launches.size(); ++l) {
    const Launch &launch = entry.launches[l];
    HostKernelFn<Real> fn = findHostKernel<Real>(launch.kernel);
    if (!fn)
      fail("{}/manifest.json: entries.{}.launches[{}]: kernel \"{}\" has no host "
           "implementation",
           artifact_.dir, name, l, launch.kernel);
    std::vector<HostTensor<Real> *> ins, outs;
    for (const ValueRef &r : launch.inputs)
      ins.push_back(resolve(r));
    for (const ValueRef &r : launch.outputs)
      outs.push_back(resolve(r));
    Tracer *tracer = activeTracer();
    double t0 = tracer ? tracer->nowUs() : 0;
    try {
      fn(launch.kernel, launch.params, ins, outs);
    } catch (const Error &e) {
      // Say where in the model: the entry, the launch and the op's layer.
      throw Error(fmt::format("{} [{}/manifest.json: entry {}, launch {}{}]", e.what(),
                              artifact_.dir, name, l,
                              launch.loc.empty() ? "" : ", " + launch.loc));
    }
    if (tracer)
      tracer->add({launch.kernel, "kernel", launch.loc, name, t0, tracer->nowUs() - t0, 1});
    if (onLaunch)
      onLaunch(l, launch.kernel, outs);
  }
  std::vector<HostTensor<Real>> results;
  for (const ValueRef &r : entry.results)
    results.push_back(*resolve(r));
  if (Tracer *tracer = activeTracer())
    tracer->phase("run " + name, entryStartUs);
  return results;
}

template class HostSession<float>;
template class HostSession<double>;

} // namespace dsv3rt
