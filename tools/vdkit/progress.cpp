#include "progress.hpp"

#include "cli.hpp"

#include <atomic>
#include <csignal>
#include <cstdio>
#include <fcntl.h>
#include <string_view>
#include <unistd.h>

namespace vdkit::cli {

namespace {

int g_json_fd = -1; // --progress=json[:FD]; -1: none
volatile std::sig_atomic_t g_usr1 = 0;
std::atomic<bool> g_usr1_installed{false};

void on_usr1(int) {
    g_usr1 = 1;
}

bool fcntl_ok(int fd) {
    return fcntl(fd, F_GETFD) != -1;
}

void install_usr1() {
    if (g_usr1_installed.exchange(true)) return;
    struct sigaction sa {};
    sa.sa_handler = on_usr1;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    sigaction(SIGUSR1, &sa, nullptr);
}

void write_all(int fd, const std::string &text) {
    size_t at = 0;
    while (at < text.size()) {
        const ssize_t n = ::write(fd, text.data() + at, text.size() - at);
        if (n <= 0) return; // a closed descriptor loses progress, never the command
        at += static_cast<size_t>(n);
    }
}

std::string eta_text(double secs) {
    if (secs < 0 || secs > 1e7) return "--:--";
    const auto s = static_cast<unsigned long>(secs + 0.5);
    char buf[32];
    if (s >= 3600)
        std::snprintf(buf, sizeof buf, "%lu:%02lu:%02lu", s / 3600, s / 60 % 60, s % 60);
    else
        std::snprintf(buf, sizeof buf, "%02lu:%02lu", s / 60, s % 60);
    return buf;
}

} // namespace

void set_progress_spec(const std::string &spec) {
    if (spec.empty()) return;
    if (spec == "json") {
        g_json_fd = STDERR_FILENO;
        return;
    }
    if (spec.rfind("json:", 0) == 0) {
        const std::string fd = spec.substr(5);
        if (!fd.empty() && fd.size() < 6 && fd.find_first_not_of("0123456789") == std::string::npos) {
            const int n = std::stoi(fd);
            if (fcntl_ok(n)) {
                g_json_fd = n;
                return;
            }
            throw CliError("--progress=json:" + fd + ": file descriptor " + fd + " is not open", kExitUsage);
        }
    }
    throw CliError("--progress takes json or json:FD (a file descriptor number), not '" + spec + "'", kExitUsage);
}

ProgressBar::ProgressBar(bool enabled, std::string label, std::string phase)
    : label_(std::move(label)), phase_(std::move(phase)), start_(std::chrono::steady_clock::now()) {
    if (g_json_fd >= 0)
        mode_ = Mode::json;
    else if (!enabled)
        mode_ = Mode::off;
    else
        mode_ = isatty(STDERR_FILENO) ? Mode::bar : Mode::lines;
    install_usr1();
}

ProgressBar::~ProgressBar() {
    // Interrupted (an error was thrown): end the line without claiming 100%.
    if (mode_ == Mode::bar && !finished_) std::fprintf(stderr, "\n");
}

bool ProgressBar::update(uint64_t done, uint64_t total) {
    {
        std::lock_guard lock(mu_);
        total_ = total;
    }
    update_fraction(total ? static_cast<double>(done) / static_cast<double>(total) : 1.0, done);
    return true;
}

void ProgressBar::update_fraction(double fraction, uint64_t bytes) {
    std::lock_guard lock(mu_);
    done_ = bytes;
    fraction_ = fraction;
    if (g_usr1) {
        // qemu-img's answer to SIGUSR1: the progress so far, once.
        g_usr1 = 0;
        std::fprintf(stderr, "    (%.2f/100%%)\n", fraction * 100.0);
        std::fflush(stderr);
    }
    if (mode_ == Mode::off || fraction >= 1.0) return; // finish() reports 100%
    emit(fraction, false);
}

void ProgressBar::job(const std::string &name, uint64_t done, uint64_t total) {
    if (mode_ != Mode::json) return;
    std::lock_guard lock(mu_);
    write_all(g_json_fd,
              json_line(name, total ? static_cast<double>(done) / static_cast<double>(total) : 1.0, done, total));
}

std::string ProgressBar::json_line(const std::string &job, double fraction, uint64_t done, uint64_t total) const {
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
    char buf[256];
    std::snprintf(buf, sizeof buf,
                  "\"done\": %llu, \"total\": %llu, \"percent\": %.2f, \"rate\": %.0f, \"elapsed\": %.3f}\n",
                  static_cast<unsigned long long>(done), static_cast<unsigned long long>(total), fraction * 100.0,
                  secs > 0 ? static_cast<double>(done) / secs : 0.0, secs);
    std::string line = "{\"phase\": " + sdk::json_quote(phase_.empty() ? "copy" : phase_) + ", ";
    if (!job.empty()) line += "\"job\": " + sdk::json_quote(job) + ", ";
    return line + buf;
}

void ProgressBar::emit(double fraction, bool force) {
    const auto now = std::chrono::steady_clock::now();
    const double secs = std::chrono::duration<double>(now - start_).count();
    const double mib = static_cast<double>(done_) / (1024.0 * 1024.0);
    const double rate = secs > 0 ? mib / secs : 0.0;
    const double eta = fraction > 0 && fraction < 1 ? secs / fraction * (1 - fraction) : -1;
    switch (mode_) {
    case Mode::off:
        return;
    case Mode::bar: {
        if (!force && now - last_ < std::chrono::milliseconds(100)) return;
        last_ = now;
        constexpr int width = 30;
        const int filled = static_cast<int>(fraction * width + 0.5);
        std::string bar(static_cast<size_t>(filled), '#');
        bar.resize(width, ' ');
        std::fprintf(stderr, "\r%s[%s] %6.2f%%  %.1f MiB  %.1f MiB/s  ETA %s ", label_.c_str(), bar.c_str(),
                     fraction * 100.0, mib, rate, fraction >= 1 ? "00:00" : eta_text(eta).c_str());
        std::fflush(stderr);
        return;
    }
    case Mode::lines:
        // A log, not an animation: every 10 s or each further 10%.
        if (!force && now - last_ < std::chrono::seconds(10) && fraction - last_line_fraction_ < 0.1) return;
        last_ = now;
        last_line_fraction_ = fraction;
        std::fprintf(stderr, "%sprogress: %.2f%%, %.1f MiB, %.1f MiB/s, ETA %s\n", label_.c_str(), fraction * 100.0,
                     mib, rate, fraction >= 1 ? "00:00" : eta_text(eta).c_str());
        std::fflush(stderr);
        return;
    case Mode::json:
        if (!force && now - last_ < std::chrono::milliseconds(500)) return;
        last_ = now;
        write_all(g_json_fd, json_line({}, fraction, done_, total_));
        return;
    }
}

void ProgressBar::finish() {
    std::lock_guard lock(mu_);
    if (mode_ == Mode::off || finished_) return;
    finished_ = true;
    if (total_ == 0 && done_ > 0) total_ = done_;
    emit(1.0, true);
    if (mode_ == Mode::bar) std::fprintf(stderr, "\n");
}

} // namespace vdkit::cli
