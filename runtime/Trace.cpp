//===- Trace.cpp - Chrome/Perfetto traces of a run ------------------------===//
#include "runtime/Trace.h"

#include "runtime/Error.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <nlohmann/json.hpp>
#include <unistd.h>

namespace dsv3rt {

namespace {
Tracer *active = nullptr;
}
Tracer *activeTracer() { return active; }
void setActiveTracer(Tracer *t) { active = t; }

Tracer::Tracer() : origin_(std::chrono::steady_clock::now()) {}

double Tracer::nowUs() const {
  return std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() -
                                                   origin_)
      .count();
}

void Tracer::phase(const std::string &name, double startUs) {
  add({name, "host", "", "", startUs, nowUs() - startUs, 0});
}

void Tracer::write(const std::string &path, const std::string &process) const {
  nlohmann::json events = nlohmann::json::array();
  events.push_back({{"name", "process_name"}, {"ph", "M"}, {"pid", 1},
                    {"args", {{"name", process}}}});
  events.push_back({{"name", "thread_name"}, {"ph", "M"}, {"pid", 1}, {"tid", 0},
                    {"args", {{"name", "host phases"}}}});
  events.push_back({{"name", "thread_name"}, {"ph", "M"}, {"pid", 1}, {"tid", 1},
                    {"args", {{"name", "kernels"}}}});
  for (const Event &e : events_) {
    nlohmann::json args = nlohmann::json::object();
    if (!e.loc.empty())
      args["op"] = e.loc;
    if (!e.detail.empty())
      args["detail"] = e.detail;
    events.push_back({{"name", e.name},
                      {"cat", e.category},
                      {"ph", "X"},
                      {"ts", e.startUs},
                      {"dur", e.durationUs},
                      {"pid", 1},
                      {"tid", e.track},
                      {"args", args}});
  }
  nlohmann::json trace{{"traceEvents", events}, {"displayTimeUnit", "ms"}};
  std::string tmp = path + ".tmp";
  std::FILE *f = std::fopen(tmp.c_str(), "w");
  if (!f)
    fail("{}: cannot open for writing: {}", tmp, std::strerror(errno));
  std::string text = trace.dump() + "\n";
  bool ok = std::fwrite(text.data(), 1, text.size(), f) == text.size();
  ok = std::fflush(f) == 0 && ok;
  ok = ::fsync(::fileno(f)) == 0 && ok;
  ok = std::fclose(f) == 0 && ok;
  if (!ok || std::rename(tmp.c_str(), path.c_str()) != 0)
    fail("{}: cannot write the trace: {}", path, std::strerror(errno));
}

} // namespace dsv3rt
