//===- Progress.cpp - progress of long work -------------------------------===//
#include "runtime/Progress.h"

#include <cstdio>
#include <fmt/format.h>
#include <unistd.h>

namespace dsv3rt {

LogMode &logMode() {
  static LogMode mode = LogMode::Human;
  return mode;
}

std::string humanBytes(double b) {
  if (b >= 1e9) return fmt::format("{:.2f} GB", b / 1e9);
  if (b >= 1e6) return fmt::format("{:.1f} MB", b / 1e6);
  if (b >= 1e3) return fmt::format("{:.0f} kB", b / 1e3);
  return fmt::format("{:.0f} B", b);
}

std::string humanSeconds(double s) {
  if (s < 60) return fmt::format("{:.0f}s", s);
  if (s < 3600) return fmt::format("{}m{:02d}s", int(s / 60), int(s) % 60);
  return fmt::format("{}h{:02d}m", int(s / 3600), int(s / 60) % 60);
}

Progress::Progress(std::string task, double total, std::string unit)
    : task_(std::move(task)), unit_(std::move(unit)), total_(total),
      start_(std::chrono::steady_clock::now()), printed_(start_),
      tty_(::isatty(STDERR_FILENO) == 1) {}

Progress::~Progress() {
  if (!finished_)
    finish();
}

std::string Progress::line(double done, const std::string &detail, bool final) const {
  double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  bool bytes = unit_ == "bytes";
  auto amount = [&](double v) {
    return bytes ? humanBytes(v) : fmt::format("{:.0f} {}", v, unit_);
  };
  std::string out = task_ + ": ";
  if (final) {
    out += fmt::format("{} in {:.1f} s", amount(done), secs);
    if (secs > 0)
      out += fmt::format(" ({}/s)", bytes ? humanBytes(done / secs)
                                          : fmt::format("{:.1f} {}", done / secs, unit_));
  } else {
    double pct = total_ > 0 ? 100.0 * done / total_ : 0;
    out += fmt::format("{:3.0f}% {} of {}", pct, amount(done), amount(total_));
    if (secs > 0 && done > 0) {
      double rate = done / secs;
      out += fmt::format(", {}/s, ETA {}",
                         bytes ? humanBytes(rate) : fmt::format("{:.1f} {}", rate, unit_),
                         humanSeconds((total_ - done) / rate));
    }
  }
  if (!detail.empty())
    out += " (" + detail + ")";
  return out;
}

void Progress::update(double done, const std::string &detail) {
  LogMode mode = logMode();
  if (mode == LogMode::Quiet)
    return;
  auto now = std::chrono::steady_clock::now();
  double sincePrint = std::chrono::duration<double>(now - printed_).count();
  double elapsed = std::chrono::duration<double>(now - start_).count();
  if (mode == LogMode::Json) {
    if (sincePrint < 1.0 && last_ >= 0)
      return;
    nlohmann::json j{{"event", "progress"}, {"task", task_}, {"done", done},
                     {"total", total_}, {"unit", unit_}, {"elapsed_s", elapsed}};
    if (!detail.empty())
      j["detail"] = detail;
    std::fprintf(stderr, "%s\n", j.dump().c_str());
  } else if (tty_) {
    // Live line: after the first half second, at most 10 updates a second.
    if (elapsed < 0.5 || (sincePrint < 0.1 && live_))
      return;
    std::fprintf(stderr, "\r\033[K%s", line(done, detail, false).c_str());
    live_ = true;
  } else {
    if (sincePrint < 10.0)
      return;
    std::fprintf(stderr, "%s\n", line(done, detail, false).c_str());
  }
  std::fflush(stderr);
  printed_ = now;
  last_ = done;
}

void Progress::finish(const std::string &detail) {
  if (finished_)
    return;
  finished_ = true;
  LogMode mode = logMode();
  double elapsed =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  double done = total_;
  if (mode == LogMode::Quiet)
    return;
  if (mode == LogMode::Json) {
    nlohmann::json j{{"event", "done"}, {"task", task_}, {"total", total_},
                     {"unit", unit_}, {"elapsed_s", elapsed}};
    if (!detail.empty())
      j["detail"] = detail;
    std::fprintf(stderr, "%s\n", j.dump().c_str());
  } else if (live_) {
    std::fprintf(stderr, "\r\033[K%s\n", line(done, detail, true).c_str());
  } else if (elapsed >= 2.0) {
    std::fprintf(stderr, "%s\n", line(done, detail, true).c_str());
  }
  std::fflush(stderr);
}

void logEvent(const std::string &event, const std::string &human, nlohmann::json fields) {
  LogMode mode = logMode();
  if (mode == LogMode::Quiet)
    return;
  if (mode == LogMode::Json) {
    fields["event"] = event;
    std::fprintf(stderr, "%s\n", fields.dump().c_str());
  } else if (!human.empty()) {
    std::fprintf(stderr, "%s\n", human.c_str());
  }
  std::fflush(stderr);
}

} // namespace dsv3rt
