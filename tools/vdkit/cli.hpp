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
// The format of a new file named `path` (docs/cli.md, "The format of a new
// file"): its extension names a format when exactly one loaded format plugin
// lists it; -f (`given`) naming another format than that is a usage error;
// without -f the extension's format, else `fallback`, else a usage error.
// The format whose plugin (alone) lists path's extension; empty: none.
std::string format_for(const Library &lib, const std::string &path);
std::string new_file_format(const Library &lib, const std::string &path, const std::string &given,
                            const std::string &fallback);

} // namespace vdkit::cli

#endif
