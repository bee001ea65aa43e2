#include "batch_file.hpp"

#include <yaml-cpp/yaml.h>

#include <filesystem>
#include <map>
#include <optional>

#include <sys/stat.h>

namespace fs = std::filesystem;

namespace vdkit::cli {

namespace {

// The yes/no settings of a job (or of `defaults`), each named once: its key
// and the ConvertOptions field it sets (false unless given). `verify` is
// the job's own (BatchJob::verify, true unless given).
struct FlagKey {
    const char *key;
    bool ConvertOptions::*field;
};
constexpr FlagKey kFlagKeys[] = {{"out_of_order", &ConvertOptions::out_of_order},
                                 {"preallocate", &ConvertOptions::preallocate},
                                 {"overwrite", &ConvertOptions::overwrite},
                                 {"keep_uuid", &ConvertOptions::keep_uuid},
                                 {"existing_target", &ConvertOptions::existing_target},
                                 {"target_is_zero", &ConvertOptions::target_is_zero},
                                 {"source_force_share", &ConvertOptions::source_force_share},
                                 {"verify", nullptr}};

// Keys `defaults` may set: the other settings and every flag.
std::vector<std::string> default_keys() {
    std::vector<std::string> keys = {"source_format",  "format",  "options",       "threads",
                                     "backing_format", "filters", "source_filters"};
    for (const FlagKey &f : kFlagKeys)
        keys.push_back(f.key);
    return keys;
}
// Keys a job may set: those and name/source/target/backing.
std::vector<std::string> job_keys() {
    std::vector<std::string> keys = {"name", "source", "target", "backing"};
    for (const auto &k : default_keys())
        keys.push_back(k);
    return keys;
}
const std::vector<std::string> kJobKeys = job_keys();
const std::vector<std::string> kDefaultKeys = default_keys();
const std::vector<std::string> kTopKeys = {"version", "parallel", "report", "defaults", "jobs"};

// Collects problems with their lines; the typed readers return nullopt after
// recording one.
class Checker {
public:
    Checker(std::string path, std::vector<std::string> &problems) : path_(std::move(path)), problems_(problems) {}

    void problem(const YAML::Node &at, const std::string &what) { problem(line(at), what); }
    void problem(int line, const std::string &what) {
        problems_.push_back(path_ + ":" + std::to_string(line) + ": " + what);
    }
    static int line(const YAML::Node &n) { return n.Mark().line + 1; }

    void known_keys(const YAML::Node &map, const std::vector<std::string> &known, const std::string &where) {
        for (const auto &kv : map) {
            const std::string k = kv.first.Scalar();
            if (std::find(known.begin(), known.end(), k) != known.end()) continue;
            problem(kv.first, "unknown key '" + k + "'" + where + did_you_mean(k, known));
        }
    }
    std::optional<std::string> text(const YAML::Node &n, const std::string &what) {
        if (!n.IsScalar() || n.Scalar().empty()) {
            problem(n, what + " must be a single non-empty value");
            return std::nullopt;
        }
        return n.Scalar();
    }
    std::optional<bool> boolean(const YAML::Node &n, const std::string &what) {
        auto t = text(n, what);
        if (!t) return std::nullopt;
        auto b = parse_bool(*t);
        if (!b) problem(n, what + " must be true or false, not '" + *t + "'");
        return b;
    }
    std::optional<unsigned> count(const YAML::Node &n, const std::string &what, unsigned lo, unsigned hi) {
        auto t = text(n, what);
        if (!t) return std::nullopt;
        auto v = parse_uint(*t);
        if (!v || *v < lo || *v > hi) {
            problem(n, what + " must be a whole number from " + std::to_string(lo) + " to " + std::to_string(hi) +
                           ", not '" + *t + "'");
            return std::nullopt;
        }
        return static_cast<unsigned>(*v);
    }
    // options: a mapping of single values; keys remember their lines.
    void options(const YAML::Node &n, Options &out, std::map<std::string, int> &lines) {
        if (!n.IsMap()) {
            problem(n, "options must be a mapping of key: value");
            return;
        }
        for (const auto &kv : n) {
            auto v = text(kv.second, "option '" + kv.first.Scalar() + "'");
            if (!v) continue;
            out[kv.first.Scalar()] = *v;
            lines[kv.first.Scalar()] = line(kv.first);
        }
    }

    // A filter stack: a list whose items are "NAME", "NAME:key=value,..."
    // or {name: NAME, options: {key: value}}; each item remembers its line.
    std::optional<std::vector<FilterSpec>> filters(const YAML::Node &n, const std::string &what,
                                                   std::vector<int> &lines) {
        if (!n.IsSequence()) {
            problem(n, what + " must be a list of filters (NAME, NAME:key=value,... or {name: NAME, options: {...}})");
            return std::nullopt;
        }
        std::vector<FilterSpec> out;
        lines.clear();
        for (const auto &item : n) {
            if (item.IsMap()) {
                known_keys(item, {"name", "options"}, " in a filter of " + what);
                FilterSpec spec;
                if (auto name = item["name"]) {
                    if (auto v = text(name, "a filter's name"))
                        spec.name = *v;
                    else
                        continue;
                } else {
                    problem(item, "a filter in " + what + " has no name");
                    continue;
                }
                if (auto opts = item["options"]) {
                    std::map<std::string, int> ignored;
                    options(opts, spec.options, ignored);
                }
                out.push_back(std::move(spec));
                lines.push_back(line(item));
                continue;
            }
            auto t = text(item, "a filter of " + what);
            if (!t) continue;
            auto spec = parse_filter_spec(*t);
            if (!spec) {
                problem(item, spec.status().message());
                continue;
            }
            out.push_back(std::move(*spec));
            lines.push_back(line(item));
        }
        return out;
    }

private:
    std::string path_;
    std::vector<std::string> &problems_;
};

// The settings `defaults` and a job share; a job's own value wins.
struct Settings {
    std::optional<std::string> source_format, format, backing_format;
    Options options;
    std::map<std::string, int> option_lines;
    std::optional<unsigned> threads;
    std::map<std::string, bool> flags; // by kFlagKeys key, those given
    std::optional<std::vector<FilterSpec>> filters, source_filters;
    std::vector<int> filter_lines, source_filter_lines;
};

void read_settings(Checker &c, const YAML::Node &map, Settings &s) {
    if (auto n = map["source_format"]) s.source_format = c.text(n, "source_format");
    if (auto n = map["format"]) s.format = c.text(n, "format");
    if (auto n = map["options"]) c.options(n, s.options, s.option_lines);
    if (auto n = map["threads"]) s.threads = c.count(n, "threads", 1, 64);
    for (const FlagKey &f : kFlagKeys)
        if (auto n = map[f.key])
            if (auto v = c.boolean(n, f.key)) s.flags[f.key] = *v;
    if (auto n = map["backing_format"]) s.backing_format = c.text(n, "backing_format");
    if (auto n = map["filters"]) s.filters = c.filters(n, "filters", s.filter_lines);
    if (auto n = map["source_filters"]) s.source_filters = c.filters(n, "source_filters", s.source_filter_lines);
}

// Each filter of a stack on its own, so every bad one is reported at its line.
void check_filters(Checker &c, const Library &lib, const std::string &who, const std::vector<FilterSpec> &stack,
                   const std::vector<int> &lines, bool create) {
    for (size_t i = 0; i < stack.size() && i < lines.size(); ++i) {
        Status ok = lib.check_filters({stack[i]}, create);
        if (!ok) c.problem(lines[i], who + ok.message());
    }
}

bool is_url(const std::string &p) {
    return p.find("://") != std::string::npos;
}

std::string resolve(const fs::path &base, const std::string &p) {
    if (is_url(p) || fs::path(p).is_absolute()) return p;
    return (base / p).lexically_normal().string();
}

// Same file, for files that may not exist yet.
std::string identity(const std::string &p) {
    std::error_code ec;
    fs::path c = fs::weakly_canonical(p, ec);
    return ec ? p : c.string();
}

} // namespace

BatchFile load_batch_file(const Library &lib, const std::string &path, std::vector<std::string> &problems) {
    BatchFile bf;
    bf.path = path;
    Checker c(path, problems);
    YAML::Node root;
    try {
        root = YAML::LoadFile(path);
    } catch (const YAML::BadFile &) {
        problems.push_back(path + ": cannot read the job file");
        return bf;
    } catch (const YAML::Exception &e) {
        c.problem(e.mark.line + 1, e.msg);
        return bf;
    }
    if (!root.IsMap()) {
        problems.push_back(path + ": the top level must be a mapping with a 'jobs' list");
        return bf;
    }
    const fs::path base = fs::path(path).parent_path().empty() ? fs::path(".") : fs::path(path).parent_path();
    c.known_keys(root, kTopKeys, "");
    if (auto n = root["version"]) {
        if (!n.IsScalar() || n.Scalar() != "1") c.problem(n, "version must be 1 (the only version so far)");
    }
    if (auto n = root["parallel"])
        if (auto v = c.count(n, "parallel", 1, 64)) bf.parallel = *v;
    if (auto n = root["report"])
        if (auto v = c.text(n, "report")) {
            bf.report = resolve(base, *v);
            if (!bf.report.ends_with(".json") && !bf.report.ends_with(".yaml") && !bf.report.ends_with(".yml"))
                c.problem(n, "report must end in .json, .yaml or .yml (that picks its format)");
        }
    Settings defaults;
    if (auto n = root["defaults"]) {
        if (!n.IsMap()) {
            c.problem(n, "defaults must be a mapping of job settings");
        } else {
            c.known_keys(n, kDefaultKeys, " under defaults");
            read_settings(c, n, defaults);
        }
    }
    const YAML::Node jobs = root["jobs"];
    if (!jobs) {
        problems.push_back(path + ": no 'jobs' list");
        return bf;
    }
    if (!jobs.IsSequence() || jobs.size() == 0) {
        c.problem(jobs, "jobs must be a non-empty list");
        return bf;
    }

    std::map<std::string, int> names, targets;
    for (const auto &j : jobs) {
        const int line = Checker::line(j);
        if (!j.IsMap()) {
            c.problem(j, "a job must be a mapping with at least source, target and format");
            continue;
        }
        c.known_keys(j, kJobKeys, " in a job");
        Settings s = defaults;
        Settings own;
        read_settings(c, j, own);
        // Per key: the job's value over the default's.
        if (own.source_format) s.source_format = own.source_format;
        if (own.format) s.format = own.format;
        for (const auto &[k, v] : own.options) {
            s.options[k] = v;
            s.option_lines[k] = own.option_lines[k];
        }
        if (own.threads) s.threads = own.threads;
        for (const auto &[k, v] : own.flags)
            s.flags[k] = v;
        if (own.backing_format) s.backing_format = own.backing_format;
        // A stack is replaced whole (an empty list removes the default's).
        if (own.filters) {
            s.filters = own.filters;
            s.filter_lines = own.filter_lines;
        }
        if (own.source_filters) {
            s.source_filters = own.source_filters;
            s.source_filter_lines = own.source_filter_lines;
        }

        BatchJob job;
        job.line = line;
        ConvertOptions &o = job.spec.options;
        for (const FlagKey &f : kFlagKeys) {
            const auto given = s.flags.find(f.key);
            if (f.field)
                o.*f.field = given != s.flags.end() && given->second;
            else
                job.verify = given == s.flags.end() || given->second;
        }
        std::optional<std::string> source, target;
        if (auto n = j["source"])
            source = c.text(n, "source");
        else
            c.problem(line, "the job has no source");
        if (auto n = j["target"])
            target = c.text(n, "target");
        else
            c.problem(line, "the job has no target");
        if (!s.format) c.problem(line, "the job has no target format (format, in the job or under defaults)");
        job.name = target ? fs::path(*target).filename().string() : "job at line " + std::to_string(line);
        if (auto n = j["name"])
            if (auto v = c.text(n, "name")) job.name = *v;
        const std::string who = "job '" + job.name + "': ";
        if (auto [it, fresh] = names.emplace(job.name, line); !fresh)
            c.problem(line, who + "the name is also used by the job at line " + std::to_string(it->second));

        if (source) {
            job.spec.source = resolve(base, *source);
            job.source_line = Checker::line(j["source"]); // checked below: it exists or an earlier job makes it
        }
        if (target) {
            job.spec.target = resolve(base, *target);
            std::error_code ec;
            const fs::path dir = fs::path(job.spec.target).parent_path();
            if (is_url(job.spec.target))
                c.problem(j["target"], who + "a batch target must be a local file (it is staged and renamed)");
            else if (!dir.empty() && !fs::is_directory(dir, ec))
                c.problem(j["target"], who + "the target's directory " + dir.string() + " does not exist");
            if (auto [it, fresh] = targets.emplace(identity(job.spec.target), line); !fresh)
                c.problem(j["target"],
                          who + "the target is also written by the job at line " + std::to_string(it->second));
            if (source && identity(job.spec.target) == identity(job.spec.source))
                c.problem(j["target"], who + "the target is the source");
            // What the target is decides what a job may do to it (as convert does).
            struct stat st {};
            const bool there = !is_url(job.spec.target) && ::stat(job.spec.target.c_str(), &st) == 0;
            struct stat lst {};
            if (!there && !is_url(job.spec.target) && ::lstat(job.spec.target.c_str(), &lst) == 0 &&
                S_ISLNK(lst.st_mode)) {
                std::error_code lec;
                c.problem(j["target"], who + job.spec.target + " is a symlink to " +
                                           fs::read_symlink(job.spec.target, lec).string() +
                                           ", which cannot be reached; name the file itself");
            } else if (o.existing_target) {
                if (!there)
                    c.problem(j["target"],
                              who + job.spec.target +
                                  " does not exist; existing_target: true writes "
                                  "into an existing target (a block device, a preallocated file, an image)");
                else if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode))
                    c.problem(j["target"], who + job.spec.target + " is " + file_type_name(st.st_mode) +
                                               "; existing_target writes into a regular file or a block device");
            } else if (there && !S_ISREG(st.st_mode)) {
                c.problem(j["target"], who + job.spec.target + " is " + file_type_name(st.st_mode) +
                                           "; a job never replaces one, even with overwrite: true" +
                                           (S_ISBLK(st.st_mode) ? " (existing_target: true writes into it)" : ""));
            }
        }
        {
            // The library's one validation of convert's option combinations,
            // spelled as the job file spells them, each at its line.
            ConvertOptions combination = o;
            combination.target_options = s.options;
            if (j["backing"]) combination.backing = "-"; // read below; only whether it is given counts here
            combination.target_format = "-";             // a missing format is reported above
            for (const auto &p : Library::convert_option_problems(combination, [](std::string_view member) {
                     if (member == "existing_target") return std::string("existing_target: true");
                     if (member == "target_options") return std::string("options");
                     return std::string(member);
                 }))
                c.problem(p.option == "backing" ? Checker::line(j["backing"]) : line, who + p.message);
        }
        if (auto n = j["backing"]) {
            if (auto v = c.text(n, "backing")) {
                // Absolute: convert takes a relative backing path from the target's directory.
                job.spec.options.backing = resolve(base, *v);
                if (!is_url(job.spec.options.backing))
                    job.spec.options.backing = fs::absolute(job.spec.options.backing).lexically_normal().string();
                job.backing_line = Checker::line(n);
            }
        }
        if (s.backing_format) {
            Status known = lib.check_options(PluginKind::format, *s.backing_format, {}, false);
            if (!known) c.problem(line, who + "backing_format: " + known.message());
            job.spec.options.backing_format = *s.backing_format;
        }
        if (s.source_format) {
            Status known = lib.check_options(PluginKind::format, *s.source_format, {}, false);
            if (!known) c.problem(line, who + "source_format: " + known.message());
            job.spec.options.source_format = *s.source_format;
        }
        if (s.format) {
            job.spec.options.target_format = *s.format;
            Status known = lib.check_options(PluginKind::format, *s.format, {}, true);
            if (!known) {
                c.problem(line, who + "format: " + known.message());
            } else {
                // The naming rule every new file follows (docs/design/probing.md).
                if (target && !o.existing_target)
                    if (const std::string p = lib.written_name_problem(job.spec.target, *s.format); !p.empty())
                        c.problem(j["target"], who + p);
                // Each option on its own, so every bad one is reported at its line.
                for (const auto &[k, v] : s.options) {
                    Status ok = lib.check_options(PluginKind::format, *s.format, Options{{k, v}}, true);
                    if (!ok) c.problem(s.option_lines[k], who + ok.message());
                }
            }
        }
        if (s.filters) {
            check_filters(c, lib, who, *s.filters, s.filter_lines, true);
            job.spec.options.target_filters = *s.filters;
        }
        if (s.source_filters) {
            check_filters(c, lib, who, *s.source_filters, s.source_filter_lines, false);
            job.spec.options.source_filters = *s.source_filters;
        }
        job.spec.options.target_options = s.options;
        job.spec.options.threads = s.threads.value_or(0); // 0: as convert -m's default
        job.spec.raw_advice = "source_format: raw";
        job.spec.force_share_advice = "source_force_share: true on the job (config/batch.md)";
        bf.jobs.push_back(std::move(job));
    }
    // A source or backing image exists, or an earlier job makes it (that job
    // runs first). A later job's target is not waited for: jobs start in
    // file order.
    auto find_maker = [&](size_t i, const std::string &image, int line, const std::string &what,
                          std::optional<size_t> &maker) {
        if (image.empty()) return;
        for (size_t k = 0; k < i && !maker; ++k)
            if (identity(bf.jobs[k].spec.target) == identity(image)) maker = k;
        std::error_code ec;
        if (!maker && !is_url(image) && !fs::exists(image, ec))
            c.problem(line, "job '" + bf.jobs[i].name + "': " + what + " " + image +
                                " does not exist and no earlier job makes it");
    };
    for (size_t i = 0; i < bf.jobs.size(); ++i) {
        BatchJob &job = bf.jobs[i];
        find_maker(i, job.spec.source, job.source_line, "source", job.source_from);
        // An earlier job's target is read in the format that job wrote: a raw
        // target named step1.vdi is not probed (the probe would refuse its name).
        if (job.source_from && job.spec.options.source_format.empty())
            job.spec.options.source_format = bf.jobs[*job.source_from].spec.options.target_format;
        find_maker(i, job.spec.options.backing, job.backing_line, "backing image", job.after);
    }
    return bf;
}

} // namespace vdkit::cli
