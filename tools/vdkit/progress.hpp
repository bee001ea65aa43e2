// Progress of long commands (-p; docs/cli.md, "Progress"), in three forms:
//   - on a terminal (stderr is a tty): a bar redrawn at most ten times a
//     second, with percent, bytes, rate and ETA;
//   - stderr not a terminal: a plain line ("progress: 42.00% ...") at most
//     every 10 seconds and at each further 10%, so a log stays short;
//   - --progress=json[:FD] (global): one JSON object per line on stderr or
//     file descriptor FD: {"phase", "job"?, "done", "total", "percent",
//     "rate", "elapsed"} — bytes, bytes a second, seconds.
// SIGUSR1 prints the current progress once, -p or not, as qemu-img does.
#ifndef VDKIT_TOOLS_PROGRESS_HPP
#define VDKIT_TOOLS_PROGRESS_HPP

#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>

namespace vdkit::cli {

// --progress=SPEC: "json" (stderr) or "json:FD"; anything else is a usage
// error. Set once from main() before a command runs.
void set_progress_spec(const std::string &spec);

class ProgressBar {
public:
    // `phase` names the operation in JSON lines ("convert", "commit", ...);
    // `label` prefixes the bar.
    explicit ProgressBar(bool enabled, std::string label = {}, std::string phase = {});
    ~ProgressBar();
    // Returns true (never cancels); suitable as a ProgressFunction.
    bool update(uint64_t done, uint64_t total);
    // Several tasks at once: the bar shows fraction (0..1), the rate bytes.
    void update_fraction(double fraction, uint64_t bytes);
    // One job of several (batch): a JSON line naming it (JSON mode only).
    void job(const std::string &name, uint64_t done, uint64_t total);
    void finish();

private:
    void emit(double fraction, bool force);
    std::string json_line(const std::string &job, double fraction, uint64_t done, uint64_t total) const;
    enum class Mode { off, bar, lines, json };
    Mode mode_;
    bool finished_ = false;
    std::string label_, phase_;
    std::chrono::steady_clock::time_point last_{};
    std::chrono::steady_clock::time_point start_;
    uint64_t done_ = 0, total_ = 0;
    double fraction_ = 0, last_line_fraction_ = 0;
    std::mutex mu_;
};

} // namespace vdkit::cli

#endif
