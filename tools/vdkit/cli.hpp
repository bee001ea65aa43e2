// Shared pieces of the vdkit command-line tool. Exceptions are allowed here
// (tools/): a failed Status becomes CliError, which main() turns into a
// message on stderr and the documented exit code (docs/cli.md).
#ifndef VDKIT_TOOLS_CLI_HPP
#define VDKIT_TOOLS_CLI_HPP

#include "vdkit/text.hpp"
#include "vdkit/vdkit.hpp"

#include <cstdint>
#include <cstdio>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace vdkit::cli {

// Case-insensitive ASCII comparison (format and plugin names).
inline bool iequals(std::string_view a, std::string_view b) noexcept {
    if (a.size() != b.size()) return false;
    for (size_t i = 0; i < a.size(); ++i) {
        const auto lower = [](char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; };
        if (lower(a[i]) != lower(b[i])) return false;
    }
    return true;
}
using sdk::hex; // "0x1a2b": offsets in messages (vdkit/text.hpp, as the library and plugins write them)
// " — did you mean 'NAME'?" for the candidate closest to a mistyped `name`
// (vdkit::closest_match, the library's own rule), or "" when none is close.
inline std::string did_you_mean(std::string_view name, const std::vector<std::string> &candidates) {
    auto guess = closest_match(name, candidates);
    return guess ? " — did you mean '" + *guess + "'?" : std::string();
}

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
// The core's probe refusals end in the neutral advice "open it with format
// 'raw' ..." (docs/design/probing.md); the command says how, for the position
// the image was named in: raw_by(r, "-F raw") for a second image, or
// as_parent(r) where the image becomes a chain parent (no flag helps there:
// parents are probed at every open).
constexpr std::string_view kRawAdvice = "open it with format 'raw'";
inline Status raw_advice(const Status &st, std::string_view how) {
    std::string msg = st.message();
    const size_t at = msg.find(kRawAdvice);
    if (at == std::string::npos) return st;
    msg.insert(at + kRawAdvice.size(), " (" + std::string(how) + ")");
    return Status(st.code(), msg);
}
template <class T> Result<T> raw_by(Result<T> r, std::string_view how) {
    if (r.is_ok()) return r;
    return raw_advice(r.status(), how);
}
// The file transport's advice for an image another program holds names the
// CLI's flag (plugins/transports/file/file.cpp, advice()); a batch job says
// it another way: share_by(r, "source_force_share: true on the job,
// config/batch.md"). An empty `how` keeps the message.
constexpr std::string_view kForceShareAdvice =
    "the -U/--force-share of vdkit's read-only commands: info, map, check, compare, measure, convert's source";
inline Status share_advice(const Status &st, std::string_view how) {
    std::string msg = st.message();
    const size_t at = msg.find(kForceShareAdvice);
    if (how.empty() || at == std::string::npos) return st;
    msg.replace(at, kForceShareAdvice.size(), how);
    return Status(st.code(), msg);
}
template <class T> Result<T> share_by(Result<T> r, std::string_view how) {
    if (r.is_ok()) return r;
    return share_advice(r.status(), how);
}
inline Status as_parent(const Status &st) {
    std::string msg = st.message();
    const size_t at = msg.find("; " + std::string(kRawAdvice));
    if (at == std::string::npos) return st;
    msg.erase(at);
    msg += "; it cannot be a chain's parent (a parent is probed each time the chain opens, and no option names "
           "its format then)";
    return Status(st.code(), msg);
}
template <class T> Result<T> as_parent(Result<T> r) {
    if (r.is_ok()) return r;
    return as_parent(r.status());
}

template <class T> T take(Result<T> r, int code = kExitError) {
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
// The create options `specs` (-o) for `format`, qemu-img's spellings taken
// as aliases (docs/qemu-img-differences.md): a key the format does not have
// is tried with '_' as '-', then qemu's names (hwversion, toolsversion,
// cluster_size for the format's allocation unit); on/off for a boolean
// key; VDI's static=on sets *preallocate. Keys still unknown are left for the
// library to refuse by name.
Options format_options(const Library &lib, const std::string &format, const std::vector<std::string> &specs,
                       bool *preallocate = nullptr);
// `-o help` (or `-o ?`) among specs: print the format's create keys on
// stdout and return true.
bool print_option_help(const Library &lib, const std::string &format, const std::vector<std::string> &specs);
// File-level filter specs ("NAME" or "NAME:key=value,..."), nearest the
// file first; a malformed one is a usage error.
std::vector<FilterSpec> parse_filters(const std::vector<std::string> &specs);
uint64_t parse_size_arg(const std::string &text);
// The format of a new file named `path` (docs/cli.md, "The format of a new
// file"): -f (`given`), else the format path's extension names, else
// `fallback`, else the format a generic extension (.img) is listed by, else
// a usage error; a choice Library::new_name_problem objects to is a usage error.
// The format whose plugin (alone) lists path's extension; empty: none, or a
// generic extension (.img, .bin, .dd: vdkit::is_generic_extension).
std::string format_for(const Library &lib, const std::string &path);
// The naming rule for new files is the library's: Library::new_name_problem,
// Library::written_name_problem and vdkit::naming_extension.
// The foreign container (or VDI/VMDK) whose signature the regular file at
// `path` carries (vdkit::detect_container), if any; unreadable: none.
std::optional<ContainerMatch> container_of_file(const std::string &path);
// The naming rule for `rename from to` (docs/design/probing.md): `to` judged
// against the format `from` probes as, or, for a file the probe refuses,
// the foreign container its signature says it is, else raw.
std::string rename_name_problem(const Library &lib, const std::string &from, const std::string &to);
std::string new_file_format(const Library &lib, const std::string &path, const std::string &given,
                            const std::string &fallback);

} // namespace vdkit::cli

#endif
