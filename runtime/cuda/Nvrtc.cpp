//===- Nvrtc.cpp - compile the kernel templates with NVRTC ----------------===//

#include "runtime/cuda/Nvrtc.h"

#include <fmt/format.h>

#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <sys/stat.h>
#include <unistd.h>

#ifdef DSV3_HAVE_NVRTC
#include <nvrtc.h>
#endif

namespace dsv3rt::cuda {

bool haveNvrtc() {
#ifdef DSV3_HAVE_NVRTC
  return true;
#else
  return false;
#endif
}

std::string nvrtcVersionString() {
#ifdef DSV3_HAVE_NVRTC
  int major = 0, minor = 0;
  ::nvrtcVersion(&major, &minor);
  return fmt::format("{}.{}", major, minor);
#else
  return "";
#endif
}

bool nvrtcCompile(const std::string &source, const std::vector<std::string> &instances,
                  const std::string &arch, NvrtcOutput &out, std::string &error) {
#ifndef DSV3_HAVE_NVRTC
  (void)source, (void)instances, (void)out;
  error = fmt::format("cannot compile for {}: built without NVRTC", arch);
  return false;
#else
  nvrtcProgram prog;
  auto check = [&](nvrtcResult r, const char *what) {
    if (r == NVRTC_SUCCESS)
      return true;
    error = fmt::format("NVRTC {} failed for {}: {}", what, arch, nvrtcGetErrorString(r));
    return false;
  };
  if (!check(nvrtcCreateProgram(&prog, source.c_str(), "kernels.cu", 0, nullptr, nullptr),
             "nvrtcCreateProgram"))
    return false;
  struct Destroy {
    nvrtcProgram *p;
    ~Destroy() { nvrtcDestroyProgram(p); }
  } destroy{&prog};
  for (const std::string &n : instances)
    if (!check(nvrtcAddNameExpression(prog, n.c_str()), "nvrtcAddNameExpression"))
      return false;
  std::string archOpt = "--gpu-architecture=" + arch;
  // --fmad=false: no a*b+c contraction, so the kernels round like the host
  // reference they are checked against.
  const char *opts[] = {archOpt.c_str(), "-std=c++17", "--fmad=false"};
  if (nvrtcCompileProgram(prog, 3, opts) != NVRTC_SUCCESS) {
    size_t logSize = 0;
    nvrtcGetProgramLogSize(prog, &logSize);
    std::string log(logSize, '\0');
    nvrtcGetProgramLog(prog, log.data());
    error = fmt::format("NVRTC could not compile the kernels for {}:\n{}", arch, log);
    return false;
  }
  for (const std::string &n : instances) {
    const char *name = nullptr;
    if (!check(nvrtcGetLoweredName(prog, n.c_str(), &name), "nvrtcGetLoweredName"))
      return false;
    out.lowered[n] = name;
  }
  out.cubin = arch.rfind("sm_", 0) == 0;
  size_t size = 0;
  if (out.cubin) {
    if (!check(nvrtcGetCUBINSize(prog, &size), "nvrtcGetCUBINSize"))
      return false;
    out.binary.resize(size);
    return check(nvrtcGetCUBIN(prog, out.binary.data()), "nvrtcGetCUBIN");
  }
  if (!check(nvrtcGetPTXSize(prog, &size), "nvrtcGetPTXSize"))
    return false;
  out.binary.resize(size);
  return check(nvrtcGetPTX(prog, out.binary.data()), "nvrtcGetPTX");
#endif
}

std::string jitCacheDir() {
  if (const char *d = std::getenv("DSV3_CACHE_DIR"); d && *d)
    return d;
  if (const char *d = std::getenv("XDG_CACHE_HOME"); d && *d)
    return std::string(d) + "/dsv3";
  const char *home = std::getenv("HOME");
  return std::string(home && *home ? home : "/tmp") + "/.cache/dsv3";
}

uint64_t stableHash(const std::string &s) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s)
    h = (h ^ c) * 1099511628211ull;
  return h;
}

bool makeDirectories(const std::string &dir) {
  for (size_t i = 1; i <= dir.size(); ++i)
    if (i == dir.size() || dir[i] == '/') {
      std::string prefix = dir.substr(0, i);
      if (mkdir(prefix.c_str(), 0755) != 0 && errno != EEXIST)
        return false;
    }
  return true;
}

bool jitCubin(const std::string &source, const std::vector<std::string> &instances,
              const std::string &arch, const std::string &cacheDir, std::string &cubin,
              std::string &path, bool &cached, std::string &error) {
  // The instance list is part of the source (its header comment), so the
  // source's hash covers it.
  path = fmt::format("{}/kernels-{:016x}-{}-nvrtc{}.cubin", cacheDir, stableHash(source), arch,
                     nvrtcVersionString());
  if (std::ifstream in{path, std::ios::binary}) {
    std::ostringstream s;
    s << in.rdbuf();
    cubin = s.str();
    if (!cubin.empty()) {
      cached = true;
      return true;
    }
  }
  cached = false;
  NvrtcOutput out;
  if (!nvrtcCompile(source, instances, arch, out, error))
    return false;
  cubin = std::move(out.binary);
  // Written to a temporary name and renamed: a reader never sees half a file,
  // and two processes racing write the same bytes.
  if (!makeDirectories(cacheDir)) {
    error = fmt::format("cannot create the JIT cache directory {}", cacheDir);
    return false;
  }
  std::string tmp = fmt::format("{}.tmp{}", path, getpid());
  {
    std::ofstream o(tmp, std::ios::binary);
    o.write(cubin.data(), std::streamsize(cubin.size()));
    if (!o.good()) {
      error = fmt::format("cannot write {}", tmp);
      return false;
    }
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    error = fmt::format("cannot rename {} to {}", tmp, path);
    return false;
  }
  return true;
}

} // namespace dsv3rt::cuda
