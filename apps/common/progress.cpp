#include "apps/common/progress.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>

namespace eq {

ProgressBar::ProgressBar(int64_t total, std::string label, std::string unit)
    : ProgressBar(total, std::move(label), std::move(unit), stderr, isatty(fileno(stderr)) != 0) {}

ProgressBar::ProgressBar(int64_t total, std::string label, std::string unit, std::FILE* out, bool interactive)
    : total_(std::max<int64_t>(total, 0)),
      label_(std::move(label)),
      unit_(std::move(unit)),
      out_(out),
      interactive_(interactive),
      start_(std::chrono::steady_clock::now()) {
  next_report_ = std::max<int64_t>(1, total_ / 10);
}

ProgressBar::~ProgressBar() {
  if (!finished_) finish();
}

double ProgressBar::elapsed() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
}

void ProgressBar::step(int64_t items, const std::string& extra) {
  ++done_;
  items_ += items;
  last_extra_ = extra;
  if (interactive_) {
    const double now = elapsed();
    if (now - last_draw_ >= 0.1 || done_ == total_) {
      last_draw_ = now;
      draw(extra, false);
    }
  } else if (done_ >= next_report_ && done_ < total_) {
    // Every ~10%: the next multiple of total/10 past the current step.
    const int64_t tenth = std::max<int64_t>(1, total_ / 10);
    next_report_ = (done_ / tenth + 1) * tenth;
    draw(extra, false);
  }
}

void ProgressBar::finish(const std::string& extra) {
  if (finished_) return;
  finished_ = true;
  draw(extra.empty() ? last_extra_ : extra, true);
}

void ProgressBar::draw(const std::string& extra, bool final_line) {
  const double t = elapsed();
  const double rate = t > 0 ? items_ / t : 0.0;
  const double eta = done_ > 0 ? t / done_ * std::max<int64_t>(0, total_ - done_) : 0.0;
  std::string line = render(label_, done_, total_, rate, eta, unit_, extra);
  if (final_line) line += " (" + format_duration(t) + ")";
  if (interactive_) {
    // \033[K clears what a longer previous line left to the right.
    std::fprintf(out_, "\r%s\033[K%s", line.c_str(), final_line ? "\n" : "");
  } else {
    std::fprintf(out_, "%s\n", line.c_str());
  }
  std::fflush(out_);
}

std::string ProgressBar::render(const std::string& label, int64_t done, int64_t total, double items_per_second,
                                double eta_seconds, const std::string& unit, const std::string& extra,
                                int bar_width) {
  const double fraction = total > 0 ? std::min(1.0, static_cast<double>(done) / total) : 1.0;
  const int filled = static_cast<int>(std::floor(fraction * bar_width));
  std::string line = label.empty() ? "" : label + " ";
  line += "[" + std::string(filled, '#') + std::string(bar_width - filled, '.') + "] ";
  line += std::to_string(done) + "/" + std::to_string(total);
  const double rate = std::isfinite(items_per_second) ? items_per_second : 0.0;
  line += " " + std::to_string(std::llround(rate)) + " " + unit + "/s";
  line += " ETA " + format_duration(eta_seconds);
  if (!extra.empty()) line += " " + extra;
  return line;
}

std::string ProgressBar::format_duration(double seconds) {
  const int64_t s = std::isfinite(seconds) && seconds > 0 ? static_cast<int64_t>(std::llround(seconds)) : 0;
  char buf[32];
  if (s >= 3600)
    std::snprintf(buf, sizeof buf, "%lld:%02lld:%02lld", static_cast<long long>(s / 3600),
                  static_cast<long long>(s / 60 % 60), static_cast<long long>(s % 60));
  else
    std::snprintf(buf, sizeof buf, "%lld:%02lld", static_cast<long long>(s / 60), static_cast<long long>(s % 60));
  return buf;
}

}  // namespace eq
