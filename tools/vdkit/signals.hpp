// Cancellation on signals, for the commands that build something big
// (convert, batch): SIGINT (Ctrl-C), SIGTERM, SIGHUP and SIGPIPE (a closed
// pipe on stdout/stderr) only set a flag here; the running copy sees it at
// its next progress report and fails with "cancelled", so the normal failure
// path removes the staging directory. A second SIGINT/SIGTERM/SIGHUP ends the
// process at once (the handler is installed with SA_RESETHAND); what it
// leaves behind `vdkit cleanup` finds. SIGPIPE stays handled: writes to the
// closed pipe then fail with EPIPE instead of killing the process. A
// SIGINT, SIGTERM or SIGHUP that is ignored when vdkit starts (nohup, a
// shell's background job) stays ignored.
#ifndef VDKIT_TOOLS_SIGNALS_HPP
#define VDKIT_TOOLS_SIGNALS_HPP

#include <string>

namespace vdkit::cli {

void install_cancel_handlers();
// The first of those signals received since install_cancel_handlers, or 0.
int cancel_signal() noexcept;
inline bool cancel_requested() noexcept {
    return cancel_signal() != 0;
}
// "SIGINT", "SIGTERM", ...
std::string signal_name(int sig);
// The exit status for a command stopped by `sig` (128 + sig, as a shell
// reports a process a signal killed).
inline int signal_exit_code(int sig) {
    return 128 + sig;
}
// When a cancel signal has arrived: throw CliError("interrupted by SIG...:
// what") with signal_exit_code.
void throw_if_cancelled(const std::string &what);
// Called by main() after a failed command: when a cancel signal caused the
// failure, die by that signal (default action) so that a calling shell sees
// an interrupted process; returns only if that does not happen.
void reraise_cancel_signal();

} // namespace vdkit::cli

#endif
