//===- Trace.h - Chrome/Perfetto traces of a run ------------------*- C++ -*-===//
//
// `dsv3-run ... --trace FILE.json`: every kernel launch (host backend: wall
// time; CUDA backend: CUDA events around each launch), named after its
// kernel and the IR op it was lowered from, and the host phases (loading,
// each entry run), in the Chrome trace-event format that chrome://tracing
// and ui.perfetto.dev open.
//
//===----------------------------------------------------------------------===//
#ifndef DSV3_RUNTIME_TRACE_H
#define DSV3_RUNTIME_TRACE_H

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

namespace dsv3rt {

class Tracer {
public:
  struct Event {
    std::string name, category, loc, detail;
    double startUs = 0, durationUs = 0;
    int track = 0; // 0: host phases, 1: kernels
  };
  Tracer();
  /// Microseconds since the tracer was created.
  double nowUs() const;
  void add(Event e) { events_.push_back(std::move(e)); }
  /// A host phase from `startUs` to now.
  void phase(const std::string &name, double startUs);
  /// Writes the trace (atomically: a temporary file renamed).
  void write(const std::string &path, const std::string &process) const;
  size_t size() const { return events_.size(); }

private:
  std::chrono::steady_clock::time_point origin_;
  std::vector<Event> events_;
};

/// The tracer of this process (null unless --trace was given).
Tracer *activeTracer();
void setActiveTracer(Tracer *t);

} // namespace dsv3rt

#endif // DSV3_RUNTIME_TRACE_H
