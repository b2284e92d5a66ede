//===- Progress.h - progress of long work --------------------------*- C++ -*-===//
//
// Weight loading, compilation stages and training report progress the same
// way: on a terminal a live line rewritten in place; otherwise plain lines
// at most every 10 seconds (and a final one for work that took 2 s or
// more); with --log-json one JSON object per line; with --quiet nothing.
// Everything goes to stderr, so stdout keeps the command's results.
//
//===----------------------------------------------------------------------===//
#ifndef DSV3_RUNTIME_PROGRESS_H
#define DSV3_RUNTIME_PROGRESS_H

#include <chrono>
#include <nlohmann/json.hpp>
#include <string>

namespace dsv3rt {

enum class LogMode { Human, Quiet, Json };
/// The process-wide mode (set from --quiet / --log-json).
LogMode &logMode();

/// "1.2 GB", "340 MB", "12 kB".
std::string humanBytes(double bytes);
/// "4s", "2m05s", "1h03m".
std::string humanSeconds(double seconds);

/// A task with a known total (bytes, steps, stages).
class Progress {
public:
  /// `unit` "bytes" prints sizes and rates in bytes; anything else counts.
  Progress(std::string task, double total, std::string unit);
  ~Progress();
  /// `done` of the total so far; `detail` says what is being done.
  void update(double done, const std::string &detail = "");
  /// The end: a final line (or JSON record) with the elapsed time.
  void finish(const std::string &detail = "");

private:
  std::string line(double done, const std::string &detail, bool final) const;
  std::string task_, unit_;
  double total_, last_ = -1;
  std::chrono::steady_clock::time_point start_, printed_;
  bool live_ = false, finished_ = false, tty_ = false;
};

/// A one-off record (e.g. a compilation stage and its time): a plain line in
/// human mode when `human` is non-empty, a JSON object with `fields` in JSON
/// mode.
void logEvent(const std::string &event, const std::string &human,
              nlohmann::json fields);

} // namespace dsv3rt

#endif // DSV3_RUNTIME_PROGRESS_H
