// Shared pieces of the vdkit command-line tool. Exceptions are allowed here
// (tools/): a failed Status becomes CliError, which main() turns into a
// message on stderr and the documented exit code (docs/cli.md).
#ifndef VDKIT_TOOLS_CLI_HPP
#define VDKIT_TOOLS_CLI_HPP

#include "vdkit/vdkit.hpp"

#include <stdexcept>
#include <string>
#include <vector>

namespace vdkit::cli {

// Exit codes (docs/cli.md). compare uses 0 same / 1 different / 2 error.
constexpr int kExitOk = 0;
constexpr int kExitError = 1;
constexpr int kExitUsage = 2;

struct CliError : std::runtime_error {
    CliError(const std::string &msg, int code = kExitError) : std::runtime_error(msg), exit_code(code) {}
    int exit_code;
};

// Throw CliError for a failed Status; return the value of a Result.
inline void check(const Status &st, int code = kExitError) {
    if (!st.is_ok()) throw CliError(st.message().empty() ? st.to_string() : st.message(), code);
}
template <class T>
T take(Result<T> r, int code = kExitError) {
    if (!r.is_ok()) check(r.status(), code);
    return std::move(r).value();
}

struct Globals {
    std::string config_file;
    std::vector<std::string> plugin_paths;
    bool quiet = false;
    bool verbose = false;
};

std::shared_ptr<Library> open_library(const Globals &g);
Options parse_options(const std::vector<std::string> &specs);
// File-level filter specs ("NAME" or "NAME:key=value,..."), nearest the
// file first; a malformed one is a usage error.
std::vector<FilterSpec> parse_filters(const std::vector<std::string> &specs);
uint64_t parse_size_arg(const std::string &text);

} // namespace vdkit::cli

#endif
