// equilab — a progress bar for long loops, on stderr.
//
//   epoch 2/10 [#####.....] 312/469 1203 img/s ETA 0:12 loss 0.1234
//
// On a terminal the line is redrawn in place (\r) at most ~10 times a second. When stderr is not a terminal (CI,
// a log file) it prints a plain line each time another ~10% is done instead, so logs stay short and readable.
#pragma once
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>

namespace eq {

class ProgressBar {
 public:
  // total: number of steps (e.g. batches); label: "epoch 2/10"; unit: what the rate counts ("img" -> img/s).
  ProgressBar(int64_t total, std::string label, std::string unit = "img");
  // For tests and redirection: write to `out`, and say whether it is a terminal.
  ProgressBar(int64_t total, std::string label, std::string unit, std::FILE* out, bool interactive);

  // One step done, covering `items` units (the batch size); `extra` is appended ("loss 0.1234").
  void step(int64_t items = 1, const std::string& extra = "");
  // Prints the final line (with newline) and the total time; an empty `extra` repeats the last step's. Called by
  // the destructor if not called before.
  void finish(const std::string& extra = "");
  ~ProgressBar();

  // The line without any control characters, for given counts and times (pure: used by step() and by tests).
  static std::string render(const std::string& label, int64_t done, int64_t total, double items_per_second,
                            double eta_seconds, const std::string& unit, const std::string& extra, int bar_width = 10);

  // "0:07", "12:34", "1:02:03"
  static std::string format_duration(double seconds);

 private:
  void draw(const std::string& extra, bool final_line);
  double elapsed() const;

  int64_t total_, done_ = 0, items_ = 0;
  std::string label_, unit_, last_extra_;
  std::FILE* out_;
  bool interactive_, finished_ = false;
  std::chrono::steady_clock::time_point start_;
  double last_draw_ = -1.0;   // seconds since start of the last redraw (terminal mode)
  int64_t next_report_ = 0;   // step count at which the next plain line is due (log mode)
};

}  // namespace eq
