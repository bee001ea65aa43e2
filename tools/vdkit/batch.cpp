// `vdkit batch JOBS.yaml`: run the conversions a job file lists.
//
// The whole file is validated first (batch_file.cpp); nothing runs while any
// problem is left. Jobs then run `parallel` at a time, each through
// convert_image (staged target, verified before it gets its final name).
// What each run achieved is kept in a state file beside the job file
// (.JOBS.yaml.vdkit-state.json); a rerun skips a job whose target is the one
// recorded there (same settings, source and target unchanged) or, without a
// record, a target that reads the same as its source. A report (JSON or YAML)
// lists every job's outcome; the exit code is 1 when any job failed.
#include "batch_file.hpp"
#include "commands.hpp"
#include "progress.hpp"
#include "signals.hpp"

#include <boost/asio/post.hpp>
#include <boost/asio/thread_pool.hpp>
#include <nlohmann/json.hpp>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <mutex>
#include <unistd.h>

namespace fs = std::filesystem;
using json = nlohmann::ordered_json;

namespace vdkit::cli {

namespace {

constexpr int kExitJobFailed = 1;

// Size and modification time: enough to notice a file that changed.
json stamp(const std::string &path) {
    std::error_code ec;
    const auto size = fs::file_size(path, ec);
    if (ec) return nullptr;
    const auto mtime = fs::last_write_time(path, ec);
    if (ec) return nullptr;
    return json{{"size", size}, {"mtime_ns", mtime.time_since_epoch().count()}};
}

// A filter stack as the state file records it. The values of secret keys
// (a password) are kept only as a 64-bit FNV-1a digest: enough to notice
// that one changed, without writing it down.
std::string stack_text(const Library &lib, const std::vector<FilterSpec> &stack) {
    std::string s;
    for (const auto &f : stack) {
        const auto info = lib.plugin(PluginKind::filter, f.name);
        s += f.name + "(";
        for (const auto &[k, v] : f.options) {
            const ConfigKey *key = info ? info->key(k) : nullptr;
            if (!(key && key->secret)) {
                s += k + "=" + v + ",";
                continue;
            }
            uint64_t h = 14695981039346656037ull;
            for (unsigned char ch : v)
                h = (h ^ ch) * 1099511628211ull;
            s += k + "=#" + std::to_string(h) + ",";
        }
        s += ")";
    }
    return s;
}

// Everything about a job that shapes its target.
std::string settings_of(const Library &lib, const BatchJob &job) {
    std::string s =
        "source=" + job.spec.source + ";source_format=" + job.spec.options.source_format +
        ";format=" + job.spec.options.target_format + ";preallocate=" + (job.spec.options.preallocate ? "1" : "0") +
        ";backing=" + job.spec.options.backing + ";keep_uuid=" + (job.spec.options.keep_uuid ? "1" : "0") + ";options=";
    // Only when set, so that records of earlier runs stay valid.
    if (job.spec.options.existing_target)
        s = "existing_target=1;target_is_zero=" + std::string(job.spec.options.target_is_zero ? "1" : "0") + ";" + s;
    for (const auto &[k, v] : job.spec.options.target_options)
        s += k + "=" + v + ",";
    if (!job.spec.options.target_filters.empty()) s += ";filters=" + stack_text(lib, job.spec.options.target_filters);
    if (!job.spec.options.source_filters.empty())
        s += ";source_filters=" + stack_text(lib, job.spec.options.source_filters);
    return s;
}

// Write a file under a temporary name, then rename it over the final one.
void write_atomically(const std::string &path, const std::string &text) {
    const std::string tmp = path + ".tmp";
    {
        std::ofstream out(tmp, std::ios::trunc);
        out << text;
        if (!out.flush()) throw CliError(tmp + ": cannot write");
    }
    std::error_code ec;
    fs::rename(tmp, path, ec);
    if (ec) throw CliError("cannot rename " + tmp + " to " + path + ": " + ec.message());
}

class ResumeState {
public:
    explicit ResumeState(const std::string &job_file) {
        const fs::path p(job_file);
        path_ = (p.parent_path() / ("." + p.filename().string() + ".vdkit-state.json")).string();
        std::error_code ec;
        if (!fs::is_regular_file(path_, ec)) return;
        std::ifstream in(path_);
        if (!in) return;
        try {
            state_ = json::parse(in);
        } catch (const std::exception &) {
            state_ = json::object(); // unreadable: as if there were none (targets are then verified)
        }
        if (!state_.is_object() || !state_.contains("jobs") || !state_["jobs"].is_object()) state_ = json::object();
    }
    // nullptr when the job has no record.
    json record(const std::string &name) const {
        std::lock_guard lock(mu_);
        if (!state_.contains("jobs") || !state_["jobs"].contains(name)) return nullptr;
        return state_["jobs"][name];
    }
    // Record a finished job. Failing to save the record does not fail the
    // job (its target is complete): the note returned says so, and a rerun
    // then verifies the target instead of skipping it.
    std::string remember(const Library &lib, const BatchJob &job) {
        std::lock_guard lock(mu_);
        state_["jobs"][job.name] = json{{"settings", settings_of(lib, job)},
                                        {"source", stamp(job.spec.source)},
                                        {"target", stamp(job.spec.target)}};
        try {
            write_atomically(path_, state_.dump(2) + "\n");
        } catch (const CliError &e) {
            return std::string("the batch state could not be saved (") + e.what() +
                   "); a rerun verifies this target instead of skipping it";
        }
        return {};
    }

private:
    std::string path_;
    json state_ = json::object();
    mutable std::mutex mu_;
};

// The same tree as YAML, in block style.
YAML::Node to_yaml(const json &j) {
    YAML::Node n;
    if (j.is_object()) {
        for (const auto &[k, v] : j.items())
            n[k] = to_yaml(v);
    } else if (j.is_array()) {
        for (const auto &v : j)
            n.push_back(to_yaml(v));
    } else if (j.is_string()) {
        n = j.get<std::string>();
    } else if (!j.is_null()) {
        n = j.dump(); // numbers and booleans as they print
    }
    return n;
}

struct Outcome {
    std::string status = "not_run"; // converted | skipped | failed | not_run
    std::string message;
    uint64_t virtual_size = 0, data_bytes = 0;
    double seconds = 0;
};

class BatchCommand : public Command {
    std::string job_file_, report_;
    bool check_only_ = false, progress_ = false;
    unsigned parallel_ = 0;

    CLI::App *define(CLI::App &app) override {
        auto *sub = app.add_subcommand("batch", "Run the conversions a YAML job file lists (config/batch.md)");
        sub->add_option("-r,--report", report_, "Write a report of every job here (.json, .yaml or .yml)");
        sub->add_option("-j,--parallel", parallel_, "Jobs at once (overrides the file's 'parallel')")
            ->check(CLI::Range(1, 64));
        sub->add_flag("--check", check_only_, "Validate the job file and exit");
        sub->add_flag("-p,--progress", progress_, "Show a progress bar for the whole batch");
        sub->add_option("jobs", job_file_, "Job file (YAML)")->required();
        return sub;
    }

    // Every source that exists now (not an earlier job's target) is opened
    // as its job will open it, read-only and taking no lock (force-share:
    // a check never disturbs, or is refused by, a writer holding it).
    // With `all_sources` (--check) a source that does not open is a problem
    // of its job; otherwise it is reported when the job runs, with the
    // open's own message. existing_target jobs: a target smaller than the
    // source's virtual size would be refused when the job runs.
    static void check_sources(Library &lib, const BatchFile &file, bool all_sources,
                              std::vector<std::string> &problems) {
        for (const auto &job : file.jobs) {
            if (job.source_from || (!all_sources && !job.spec.options.existing_target)) continue;
            const std::string where = file.path + ":" + std::to_string(job.source_line ? job.source_line : job.line) +
                                      ": job '" + job.name + "': ";
            OpenOptions so;
            so.format = job.spec.options.source_format;
            so.filters = job.spec.options.source_filters;
            so.force_share = true;
            auto src = raw_by(lib.open(job.spec.source, so), job.spec.raw_advice);
            if (!src) {
                if (all_sources)
                    problems.push_back(
                        where + "source " + job.spec.source + ": " +
                        (src.status().message().empty() ? src.status().to_string() : src.status().message()));
                continue;
            }
            if (!job.spec.options.existing_target) continue;
            OpenOptions to;
            to.format = job.spec.options.target_format;
            to.filters = job.spec.options.target_filters;
            to.lock = false;
            to.follow_parents = false;
            auto dst = lib.open(job.spec.target, to);
            if (!dst) continue;
            if ((*dst)->size() < (*src)->size())
                problems.push_back(file.path + ":" + std::to_string(job.line) + ": job '" + job.name +
                                   "': " + job.spec.target + " holds " + std::to_string((*dst)->size()) +
                                   " bytes, less than the virtual size of " + job.spec.source + " (" +
                                   std::to_string((*src)->size()) +
                                   " bytes); existing_target needs a target at "
                                   "least that large");
        }
    }

    int run() override {
        auto lib = open_library(globals());
        std::vector<std::string> problems;
        BatchFile file = load_batch_file(*lib, job_file_, problems);
        if (problems.empty()) check_sources(*lib, file, check_only_, problems);
        if (!report_.empty() && !report_.ends_with(".json") && !report_.ends_with(".yaml") &&
            !report_.ends_with(".yml"))
            problems.push_back("--report " + report_ + ": must end in .json, .yaml or .yml");
        if (!problems.empty()) {
            for (const auto &p : problems)
                std::cerr << p << "\n";
            throw CliError(job_file_ + ": " + std::to_string(problems.size()) +
                               (problems.size() == 1 ? " problem" : " problems") + "; nothing was run",
                           kExitUsage);
        }
        if (check_only_) {
            std::cout << job_file_ << ": " << file.jobs.size() << (file.jobs.size() == 1 ? " job" : " jobs")
                      << ", no problems\n";
            return kExitOk;
        }
        if (!report_.empty()) file.report = report_;
        if (parallel_) file.parallel = parallel_;
        install_cancel_handlers(); // Ctrl-C etc.: running jobs cancel (staging removed), the rest do not start
        if (!globals().quiet) {
            std::vector<fs::path> dirs, own;
            for (const auto &job : file.jobs) {
                if (job.spec.options.existing_target) continue;
                const fs::path dir = fs::path(job.spec.target).parent_path();
                if (std::find(dirs.begin(), dirs.end(), dir) == dirs.end()) dirs.push_back(dir);
                own.push_back(staging_dir_for(job.spec.target));
            }
            for (const auto &dir : dirs)
                note_stale_staging(dir, own);
        }
        const int rc = run_jobs(*lib, file);
        throw_if_cancelled("jobs that had not finished were stopped or not started (see their lines)");
        return rc;
    }

    int run_jobs(Library &lib, const BatchFile &file) {
        const size_t n = file.jobs.size();
        ResumeState state(file.path);
        std::vector<Outcome> outcomes(n);
        std::vector<std::atomic<uint64_t>> permille(n); // progress of each job, 0..1000
        std::vector<std::atomic<uint64_t>> bytes(n);    // source data each job has copied
        std::atomic<size_t> finished{0};
        std::mutex out_mu;
        ProgressBar bar(progress_, "batch ", "batch");
        // Job lines go to stdout, the bar to stderr: on one terminal, clear the bar's line first.
        const bool clear_line = progress_ && isatty(STDOUT_FILENO) && isatty(STDERR_FILENO);
        const auto started = std::chrono::steady_clock::now();

        auto show_progress = [&] {
            uint64_t sum = 0, copied = 0;
            for (auto &p : permille)
                sum += p.load();
            for (auto &b : bytes)
                copied += b.load();
            std::lock_guard lock(out_mu);
            bar.update_fraction(static_cast<double>(sum) / static_cast<double>(1000 * n), copied);
        };
        // Jobs run on a pool of `parallel` threads (Boost.Asio). A job is
        // queued only once the jobs it needs (its source or backing job,
        // always earlier in the file) have ended, by the last of them to end:
        // no job ever waits for another on a pool thread, so no number of
        // jobs can fill the pool with waiters (docs/design/threads.md).
        // Each job blocks its thread for its whole convert; the core's own
        // pool (the convert's workers) is separate from this one.
        std::vector<std::vector<size_t>> dependents(n);
        std::vector<unsigned> waiting_for(n, 0); // guarded by out_mu
        for (size_t i = 0; i < n; ++i)
            for (const auto &first : {file.jobs[i].source_from, file.jobs[i].after})
                if (first) {
                    dependents[*first].push_back(i);
                    ++waiting_for[i];
                }
        boost::asio::thread_pool pool(std::min<size_t>(file.parallel, n));
        std::function<void(size_t)> run_one = [&](size_t i) {
            const BatchJob &job = file.jobs[i];
            Outcome &o = outcomes[i];
            const auto t0 = std::chrono::steady_clock::now();
            if (cancel_requested()) {
                // Stopped by Ctrl-C, SIGTERM, ...: what has not started does not start.
                o.message = "not started: interrupted by " + signal_name(cancel_signal());
            } else {
                try {
                    if (job.source_from && outcomes[*job.source_from].status == "failed")
                        throw CliError("its source comes from job '" + file.jobs[*job.source_from].name +
                                       "', which failed");
                    if (job.after && outcomes[*job.after].status == "failed")
                        throw CliError("its backing image comes from job '" + file.jobs[*job.after].name +
                                       "', which failed");
                    run_job(lib, job, state, o, [&](uint64_t done, uint64_t total) {
                        permille[i] = total ? done * 1000 / total : 1000;
                        bytes[i] = done;
                        bar.job(job.name, done, total);
                        show_progress();
                        return !cancel_requested();
                    });
                } catch (const std::exception &e) {
                    o.status = "failed";
                    o.message = e.what();
                }
            }
            o.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
            permille[i] = 1000;
            show_progress();
            std::lock_guard lock(out_mu);
            std::cout << (clear_line ? "\r\033[K" : "") << "[" << ++finished << "/" << n << "] " << job.name << ": "
                      << o.status << (o.message.empty() ? "" : ": " + o.message) << "\n"
                      << std::flush;
            for (size_t d : dependents[i])
                if (--waiting_for[d] == 0) boost::asio::post(pool, [&run_one, d] { run_one(d); });
        };
        // The jobs that need none, picked before the first is posted: once
        // one runs, the pool threads change waiting_for (under out_mu), and
        // a dependent it brings to 0 is posted by that thread, so reading
        // waiting_for here meanwhile would race and could post it twice.
        std::vector<size_t> ready;
        for (size_t i = 0; i < n; ++i)
            if (waiting_for[i] == 0) ready.push_back(i);
        for (size_t i : ready)
            boost::asio::post(pool, [&run_one, i] { run_one(i); });
        pool.join();
        bar.finish();

        size_t converted = 0, skipped = 0, failed = 0;
        for (const auto &o : outcomes) {
            converted += o.status == "converted";
            skipped += o.status == "skipped";
            failed += o.status == "failed";
        }
        const double total_secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
        const size_t not_run = n - std::min<size_t>(n, converted + skipped + failed);
        std::cout << n << (n == 1 ? " job: " : " jobs: ") << converted << " converted, " << skipped << " skipped, "
                  << failed << " failed" << (not_run ? ", " + std::to_string(not_run) + " not run" : std::string())
                  << "\n";
        if (!file.report.empty()) write_report(file, outcomes, converted, skipped, failed, total_secs);
        return failed ? kExitJobFailed : kExitOk;
    }

    // One job: skip it when its target is already good, else convert.
    static void run_job(Library &lib, const BatchJob &job, ResumeState &state, Outcome &o,
                        const ProgressFunction &progress) {
        if (job.spec.options.existing_target) return run_in_place(lib, job, state, o, progress);
        std::error_code ec;
        bool overwrite = false;
        if (fs::exists(job.spec.target, ec)) {
            const json rec = state.record(job.name);
            const bool same_settings = !rec.is_null() && rec["settings"] == settings_of(lib, job);
            const bool unchanged =
                same_settings && rec["source"] == stamp(job.spec.source) && rec["target"] == stamp(job.spec.target);
            if (unchanged) {
                o.status = "skipped";
                o.message = "up to date (made by an earlier run)";
                return;
            }
            if (job.spec.options.overwrite) {
                overwrite = true;
            } else if (!rec.is_null()) {
                throw CliError(same_settings ? "the source or the target changed since an earlier run made the "
                                               "target; set overwrite: true to convert again"
                                             : "the target was made with other settings; set overwrite: true to "
                                               "convert again");
            } else if (!job.verify) {
                throw CliError(job.spec.target + " already exists; set overwrite: true to replace it");
            } else if (target_matches(lib, job)) {
                // A target with no record (say, the run stopped right after renaming it).
                const std::string note = state.remember(lib, job);
                o.status = "skipped";
                o.message =
                    "verified: the existing target reads the same as the source" + (note.empty() ? "" : "; " + note);
                return;
            } else {
                throw CliError(job.spec.target + " already exists and differs from the source; set overwrite: "
                                                 "true to replace it");
            }
        }
        convert_and_remember(lib, job, overwrite, state, o, progress);
    }

    // Runs the job's convert (overwrite as given) and records it for reruns.
    static void convert_and_remember(Library &lib, const BatchJob &job, bool overwrite, ResumeState &state, Outcome &o,
                                     const ProgressFunction &progress) {
        ConvertSpec spec = job.spec;
        spec.options.overwrite = overwrite;
        spec.options.verify = job.verify;
        ConvertResult r = convert_image(lib, spec, progress);
        o.message = state.remember(lib, job);
        o.status = "converted";
        o.virtual_size = r.virtual_size;
        o.data_bytes = r.data_bytes;
    }

    // existing_target: the target is written in place (no staging, nothing
    // replaced). A rerun skips it when an earlier run wrote it from the
    // unchanged source with the same settings and it is unchanged since —
    // known from its size and time for a file, by reading it (verify) for a
    // device, whose node does not change when it is written.
    static void run_in_place(Library &lib, const BatchJob &job, ResumeState &state, Outcome &o,
                             const ProgressFunction &progress) {
        const json rec = state.record(job.name);
        if (!rec.is_null() && rec["settings"] == settings_of(lib, job) && rec["source"] == stamp(job.spec.source)) {
            std::error_code ec;
            if (fs::is_regular_file(job.spec.target, ec) && rec["target"] == stamp(job.spec.target)) {
                o.status = "skipped";
                o.message = "up to date (written by an earlier run)";
                return;
            }
            if (job.verify && target_holds_source(lib, job)) {
                const std::string note = state.remember(lib, job);
                o.status = "skipped";
                o.message = "verified: the target reads as the source (written by an earlier run)" +
                            (note.empty() ? "" : "; " + note);
                return;
            }
        }
        convert_and_remember(lib, job, job.spec.options.overwrite, state, o, progress);
    }

    // The job's source and its existing target, each opened as the job
    // reads or made it (a raw target named plain.qcow2 is not probed).
    static std::pair<Result<std::unique_ptr<Disk>>, Result<std::unique_ptr<Disk>>>
    open_source_and_target(Library &lib, const BatchJob &job) {
        OpenOptions src_o, dst_o;
        src_o.format = job.spec.options.source_format;
        src_o.filters = job.spec.options.source_filters;
        src_o.force_share = job.spec.options.source_force_share;
        dst_o.format = job.spec.options.target_format;
        dst_o.filters = job.spec.options.target_filters;
        return {lib.open(job.spec.source, src_o), lib.open(job.spec.target, dst_o)};
    }

    static bool target_holds_source(Library &lib, const BatchJob &job) {
        auto [src, dst] = open_source_and_target(lib, job);
        if (!src || !dst || (*dst)->size() < (*src)->size()) return false;
        auto diff = Library::compare_prefix(**src, **dst, [](uint64_t, uint64_t) { return !cancel_requested(); });
        if (!diff) {
            throw_if_cancelled("while verifying " + job.spec.target);
            check(diff.status());
        }
        return !diff->has_value();
    }

    // The existing target is in the job's format and reads as the source does.
    static bool target_matches(Library &lib, const BatchJob &job) {
        auto [src, dst] = open_source_and_target(lib, job);
        if (!src || !dst) return false;
        auto info = (*dst)->image_info((*dst)->image_count() - 1);
        if (!info || info->format != job.spec.options.target_format) return false;
        auto diff = Library::compare(**src, **dst);
        return diff && !diff->has_value();
    }

    static void write_report(const BatchFile &file, const std::vector<Outcome> &outcomes, size_t converted,
                             size_t skipped, size_t failed, double seconds) {
        json jobs = json::array();
        for (size_t i = 0; i < file.jobs.size(); ++i) {
            const BatchJob &j = file.jobs[i];
            const Outcome &o = outcomes[i];
            json r = {{"name", j.name},
                      {"line", j.line},
                      {"source", j.spec.source},
                      {"target", j.spec.target},
                      {"format", j.spec.options.target_format},
                      {"status", o.status}};
            if (!o.message.empty()) r[o.status == "failed" ? "error" : "note"] = o.message;
            if (o.status == "converted") {
                r["virtual_size"] = o.virtual_size;
                r["data_bytes"] = o.data_bytes;
            }
            r["seconds"] = std::round(o.seconds * 1000) / 1000;
            jobs.push_back(r);
        }
        json report = {
            {"job_file", file.path},
            {"summary",
             {{"jobs", file.jobs.size()},
              {"converted", converted},
              {"skipped", skipped},
              {"failed", failed},
              {"not_run", file.jobs.size() - std::min<size_t>(file.jobs.size(), converted + skipped + failed)},
              {"seconds", std::round(seconds * 1000) / 1000}}},
            {"jobs", jobs}};
        std::string text;
        if (file.report.ends_with(".json")) {
            text = report.dump(2) + "\n";
        } else {
            YAML::Emitter e;
            e << to_yaml(report);
            text = std::string(e.c_str()) + "\n";
        }
        write_atomically(file.report, text);
    }
};

} // namespace

void add_batch_command(std::vector<std::unique_ptr<Command>> &commands) {
    commands.push_back(std::make_unique<BatchCommand>());
}

} // namespace vdkit::cli
