// `vdkit convert` and batch jobs around Library::convert, and `vdkit
// cleanup` around Library::staging_dirs / remove_stale_staging.
#include "convert.hpp"

#include "commands.hpp"
#include "signals.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdio>
#include <iostream>
#include <system_error>

#include <sys/stat.h>

namespace fs = std::filesystem;

namespace vdkit::cli {

namespace {

std::string mib(uint64_t bytes) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.1f MiB", static_cast<double>(bytes) / (1024.0 * 1024.0));
    return buf;
}

} // namespace

ConvertResult convert_image(Library &lib, const ConvertSpec &spec, const ProgressFunction &progress) {
    const ConvertOptions &given = spec.options;
    // What cannot be converted as asked (options, the target's name or kind,
    // the source's own files as the target) is a usage error, exit 2; the
    // library's one check of convert's arguments says which.
    check(lib.check_convert(spec.source, spec.target, given), kExitUsage);
    ConvertOptions o = given;
    o.progress = [&progress](uint64_t done, uint64_t total) {
        if (cancel_requested()) return false;
        return !progress || progress(done, total);
    };
    auto converted = lib.convert(spec.source, spec.target, o);
    if (!converted) {
        const Status &st = converted.status();
        // Cancelled by a signal: "interrupted by SIG...: what was (not) written".
        if (st.code() == VDKIT_E_CANCELLED) throw_if_cancelled(st.message());
        // Anything else failed the job, whatever its code: an image that
        // does not open (INVALID_ARGUMENT from its content included), a
        // target that cannot be written, ... exit 1.
        check(share_advice(raw_advice(st, spec.raw_advice), spec.force_share_advice), kExitError);
    }
    ConvertResult result = std::move(converted).value();
    for (const auto &path : result.left_in_place)
        std::cerr << "vdkit: note: " << path << ", a file of the image " << spec.target
                  << " replaced, is left in place (--overwrite replaces only the new image's files)\n";
    return result;
}

// ---- stale staging directories --------------------------------------------------------

void note_stale_staging(const fs::path &dir, const std::vector<fs::path> &except) {
    auto found = Library::staging_dirs(dir.empty() ? std::string(".") : dir.string());
    if (!found) return; // the convert itself reports what is wrong with the directory
    size_t n = 0;
    uint64_t bytes = 0;
    for (const auto &d : *found) {
        if (d.state != StagingDir::State::stale) continue;
        std::error_code ec;
        const fs::path path = d.path;
        if (std::any_of(except.begin(), except.end(), [&](const fs::path &e) {
                return e.filename() == path.filename() && fs::equivalent(e, path, ec);
            }))
            continue;
        ++n, bytes += d.bytes;
    }
    if (n == 0) return;
    const std::string where = dir.empty() ? "." : dir.string();
    std::cerr << "vdkit: note: " << where << " holds " << n << " staging director" << (n == 1 ? "y" : "ies")
              << " left by interrupted converts (" << mib(bytes) << "); `vdkit cleanup --remove " << where
              << "` removes them\n";
}

namespace {

class CleanupCommand : public Command {
    std::vector<std::string> dirs_;
    bool remove_ = false;
    std::string output_;
    CLI::App *define(CLI::App &app) override {
        auto *sub = app.add_subcommand(
            "cleanup", "List (and with --remove delete) staging directories interrupted converts left in DIRs");
        sub->add_flag("--remove", remove_,
                      "Remove the stale ones (vdkit's marker inside, no running vdkit holding it)");
        add_output_option(sub, output_);
        sub->add_option("dirs", dirs_, "Directories to look in (where the converts' targets were)")->required();
        return sub;
    }
    int run() override {
        nlohmann::ordered_json all = nlohmann::ordered_json::array();
        int rc = kExitOk;
        size_t stale = 0, removed = 0;
        uint64_t stale_bytes = 0, removed_bytes = 0;
        for (const auto &dir : dirs_) {
            auto listed = Library::staging_dirs(dir);
            if (!listed) {
                // The other directories are still listed (and the JSON printed).
                std::cerr << "vdkit: " << listed.status().message() << "\n";
                rc = kExitError;
                continue;
            }
            for (auto &d : *listed) {
                if (remove_ && d.state == StagingDir::State::stale) {
                    if (Status st = Library::remove_stale_staging(d); !st) {
                        std::cerr << "vdkit: " << st.message() << "\n";
                        rc = kExitError;
                    }
                }
                if (d.state == StagingDir::State::stale) ++stale, stale_bytes += d.bytes;
                if (d.state == StagingDir::State::removed) ++removed, removed_bytes += d.bytes;
                if (output_ == "json") {
                    nlohmann::ordered_json j = {{"path", d.path}, {"state", to_string(d.state)}};
                    if (d.state != StagingDir::State::foreign) {
                        j["pid"] = d.pid;
                        j["host"] = d.host;
                        j["target"] = d.target;
                        j["started"] = d.started;
                        j["bytes"] = d.bytes;
                    }
                    all.push_back(j);
                    continue;
                }
                std::cout << d.path << ": ";
                switch (d.state) {
                case StagingDir::State::stale:
                    std::cout << "stale, " << mib(d.bytes) << " (a convert into " << d.target << " by pid " << d.pid
                              << " started " << d.started << " and was interrupted)";
                    break;
                case StagingDir::State::removed:
                    std::cout << "removed, " << mib(d.bytes) << " (left by a convert into " << d.target << ")";
                    break;
                case StagingDir::State::in_use:
                    std::cout << "in use by pid " << d.pid << " (converting into " << d.target << "); left alone";
                    break;
                case StagingDir::State::foreign:
                    std::cout << "no vdkit marker (not made by this vdkit, or an older one); left alone";
                    break;
                case StagingDir::State::mismatched:
                    std::cout << "its vdkit marker names " << d.target
                              << ", not the target this directory stages (a copied marker?); left alone";
                    break;
                case StagingDir::State::other_host:
                    std::cout << "made on host " << d.host << " by pid " << d.pid << " converting into " << d.target
                              << "; locks may not reach across hosts, so it is judged only there; left alone";
                    break;
                case StagingDir::State::unknown:
                    std::cout << "made by pid " << d.pid << " converting into " << d.target
                              << ", but its file system cannot lock files, so whether that convert still runs "
                                 "cannot be told; left alone";
                    break;
                }
                std::cout << "\n";
            }
        }
        if (output_ == "json") {
            std::cout << all.dump(2) << "\n";
        } else if (!globals().quiet) {
            if (remove_)
                std::cout << "removed " << removed << " stale staging director" << (removed == 1 ? "y" : "ies") << ", "
                          << mib(removed_bytes) << "\n";
            if (!remove_ || stale)
                std::cout << stale << " stale staging director" << (stale == 1 ? "y" : "ies") << ", "
                          << mib(stale_bytes) << (stale && !remove_ ? "; pass --remove to remove them" : "") << "\n";
        }
        return rc;
    }
};

} // namespace

void add_cleanup_command(std::vector<std::unique_ptr<Command>> &commands) {
    commands.push_back(std::make_unique<CleanupCommand>());
}

} // namespace vdkit::cli
