#include "progress.hpp"

#include <cstdio>
#include <unistd.h>

namespace vdkit::cli {

ProgressBar::ProgressBar(bool enabled, std::string label)
    : enabled_(enabled), label_(std::move(label)), start_(std::chrono::steady_clock::now()) {}

ProgressBar::~ProgressBar() {
    // Interrupted (an error was thrown): end the line without claiming 100%.
    if (enabled_ && !finished_) std::fprintf(stderr, "\n");
}

bool ProgressBar::update(uint64_t done, uint64_t total) {
    update_fraction(total ? static_cast<double>(done) / static_cast<double>(total) : 1.0, done);
    return true;
}

void ProgressBar::update_fraction(double fraction, uint64_t bytes) {
    done_ = bytes;
    if (!enabled_) return;
    auto now = std::chrono::steady_clock::now();
    if (now - last_ < std::chrono::milliseconds(100) || fraction >= 1.0) return; // finish() draws 100%
    last_ = now;
    draw(fraction);
}

void ProgressBar::draw(double fraction) {
    constexpr int width = 30;
    int filled = static_cast<int>(fraction * width + 0.5);
    std::string bar(static_cast<size_t>(filled), '#');
    bar.resize(width, ' ');
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
    double mib = static_cast<double>(done_) / (1024.0 * 1024.0);
    std::fprintf(stderr, "\r%s[%s] %6.2f%%  %.1f MiB  %.1f MiB/s ", label_.c_str(), bar.c_str(), fraction * 100.0, mib,
                 secs > 0 ? mib / secs : 0.0);
    std::fflush(stderr);
}

void ProgressBar::finish() {
    if (!enabled_ || finished_) return;
    finished_ = true;
    draw(1.0);
    std::fprintf(stderr, "\n");
}

} // namespace vdkit::cli
