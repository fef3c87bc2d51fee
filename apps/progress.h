// A one-line progress bar on stderr: "step 3/20 [#####.....] 1.21 s/it, ETA 20.6 s".
#pragma once

#include <cstdio>
#include <string>
#include <unistd.h>

namespace sdrt::app {

class ProgressBar {
 public:
  explicit ProgressBar(bool enabled) : enabled_(enabled), tty_(isatty(STDERR_FILENO)) {}

  void update(int step, int total, double step_seconds) {
    if (!enabled_) return;
    elapsed_ += step_seconds;
    double per_it = elapsed_ / step;
    constexpr int kWidth = 24;
    int filled = total ? step * kWidth / total : kWidth;
    std::string bar(static_cast<size_t>(filled), '#');
    bar.append(static_cast<size_t>(kWidth - filled), '.');
    // On a terminal the line redraws in place; in a log each step gets its own line.
    std::fprintf(stderr, "%sstep %d/%d [%s] %.2f s/it, ETA %.1f s%s", tty_ ? "\r" : "", step, total, bar.c_str(),
                 per_it, per_it * (total - step), tty_ && step < total ? "" : "\n");
    std::fflush(stderr);
  }

 private:
  bool enabled_;
  bool tty_;
  double elapsed_ = 0;
};

}  // namespace sdrt::app
