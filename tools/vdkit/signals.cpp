#include "signals.hpp"

#include "cli.hpp"

#include <atomic>
#include <csignal>
#include <cstring>

namespace vdkit::cli {

namespace {

std::atomic<int> g_signal{0};

// Async-signal-safe: one lock-free atomic store, nothing else.
extern "C" void on_cancel_signal(int sig) {
    int none = 0;
    g_signal.compare_exchange_strong(none, sig);
}

static_assert(std::atomic<int>::is_always_lock_free);

} // namespace

void install_cancel_handlers() {
    for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGPIPE}) {
        // A signal ignored when vdkit starts stays ignored (nohup ignores
        // SIGHUP, a shell SIGINT for background jobs): the caller asked for
        // the convert to survive it. SIGPIPE is handled either way (a closed
        // pipe means whoever reads the output is gone).
        struct sigaction old {};
        if (sig != SIGPIPE && sigaction(sig, nullptr, &old) == 0 && old.sa_handler == SIG_IGN) continue;
        struct sigaction sa {};
        sa.sa_handler = on_cancel_signal;
        sigemptyset(&sa.sa_mask);
        // Interrupted system calls restart (the transports also retry EINTR).
        // The first INT/TERM/HUP cancels; the handler then resets, so a
        // second one ends the process at once. SIGPIPE stays handled.
        sa.sa_flags = SA_RESTART | (sig == SIGPIPE ? 0 : SA_RESETHAND);
        sigaction(sig, &sa, nullptr);
    }
}

int cancel_signal() noexcept {
    return g_signal.load();
}

std::string signal_name(int sig) {
    switch (sig) {
    case SIGINT:
        return "SIGINT";
    case SIGTERM:
        return "SIGTERM";
    case SIGHUP:
        return "SIGHUP";
    case SIGPIPE:
        return "SIGPIPE (a closed pipe)";
    default:
        return "signal " + std::to_string(sig);
    }
}

void throw_if_cancelled(const std::string &what) {
    if (const int sig = cancel_signal())
        throw CliError("interrupted by " + signal_name(sig) + ": " + what, signal_exit_code(sig));
}

void reraise_cancel_signal() {
    const int sig = cancel_signal();
    if (!sig) return;
    struct sigaction sa {};
    sa.sa_handler = SIG_DFL;
    sigemptyset(&sa.sa_mask);
    sigaction(sig, &sa, nullptr);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, sig);
    pthread_sigmask(SIG_UNBLOCK, &set, nullptr);
    std::raise(sig);
}

} // namespace vdkit::cli
