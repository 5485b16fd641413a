#include "log/progress.h"

#include <unistd.h>

#include <cstdio>
#include <string>

#include <fmt/format.h>

namespace gradacc {

ProgressBar::ProgressBar(int64_t total_steps, int64_t first_step)
    : total_(total_steps),
      first_(first_step),
      enabled_(total_steps > 0 && ::isatty(STDERR_FILENO) == 1),
      start_(std::chrono::steady_clock::now()) {}

ProgressBar::~ProgressBar() {
  if (enabled_) std::fputc('\n', stderr);
}

void ProgressBar::update(int64_t step, double loss) {
  if (!enabled_) return;
  const auto now = std::chrono::steady_clock::now();
  if (step < total_ && now - last_draw_ < std::chrono::milliseconds(100)) return;  // keep the terminal calm
  last_draw_ = now;
  const double elapsed = std::chrono::duration<double>(now - start_).count();
  const int64_t timed = step - first_;
  const double eta = timed > 0 ? elapsed / static_cast<double>(timed) * static_cast<double>(total_ - step) : 0.0;
  constexpr int kWidth = 30;
  const int filled = total_ > 0 ? static_cast<int>(kWidth * step / total_) : kWidth;
  const std::string bar = std::string(filled, '#') + std::string(kWidth - filled, '.');
  std::fprintf(stderr, "\r[%s] step %lld/%lld  loss %.4f  %s elapsed  eta %s   ", bar.c_str(),
               static_cast<long long>(step), static_cast<long long>(total_), loss,
               fmt::format("{:.0f}s", elapsed).c_str(), fmt::format("{:.0f}s", eta).c_str());
  std::fflush(stderr);
}

}  // namespace gradacc
