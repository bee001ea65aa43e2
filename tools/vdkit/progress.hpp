// A one-line progress bar on stderr, redrawn at most ten times a second,
// in the spirit of qemu-img's -p ("    (42.00/100%)").
#ifndef VDKIT_TOOLS_PROGRESS_HPP
#define VDKIT_TOOLS_PROGRESS_HPP

#include <chrono>
#include <cstdint>
#include <string>

namespace vdkit::cli {

class ProgressBar {
public:
    explicit ProgressBar(bool enabled, std::string label = {});
    ~ProgressBar();
    // Returns true (never cancels); suitable as a ProgressFunction.
    bool update(uint64_t done, uint64_t total);
    // Several tasks at once: the bar shows fraction (0..1), the rate bytes.
    void update_fraction(double fraction, uint64_t bytes);
    void finish();

private:
    void draw(double fraction);
    bool enabled_;
    bool finished_ = false;
    std::string label_;
    std::chrono::steady_clock::time_point last_{};
    std::chrono::steady_clock::time_point start_;
    uint64_t done_ = 0;
};

} // namespace vdkit::cli

#endif
