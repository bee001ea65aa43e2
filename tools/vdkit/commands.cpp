#include "commands.hpp"

#include "convert.hpp"
#include "progress.hpp"
#include "signals.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <thread>

using json = nlohmann::ordered_json;

namespace vdkit::cli {

// ---- shared helpers ----------------------------------------------------------------

std::shared_ptr<Library> open_library(const Globals &g) {
    LibraryOptions lo;
    lo.config_file = g.config_file;
    lo.plugin_paths = g.plugin_paths;
    if (g.quiet) lo.log_level = LogLevel::error;
    if (g.verbose) lo.log_level = LogLevel::info;
    return take(Library::create(lo));
}

Options parse_options(const std::vector<std::string> &specs) {
    Options out;
    for (const auto &spec : specs) {
        auto kv = parse_key_values(spec);
        if (!kv) throw CliError("cannot parse option list '" + spec + "' (expected key=value,key=value)", kExitUsage);
        for (auto &[k, v] : *kv)
            out[k] = v;
    }
    return out;
}

Options format_options(const Library &lib, const std::string &format, const std::vector<std::string> &specs,
                       bool *preallocate) {
    Options given = parse_options(specs);
    const std::optional<PluginInfo> plugin = lib.plugin(PluginKind::format, format);
    if (!plugin) return given;
    const auto key = [&](const std::string &name) { return plugin->key(name); };
    Options out;
    for (const auto &[given_key, given_value] : given) {
        std::string k = given_key, v = given_value;
        if (!key(k)) {
            std::string dashed = k;
            std::replace(dashed.begin(), dashed.end(), '_', '-');
            static const std::pair<const char *, const char *> kQemu[] = {{"hwversion", "hw-version"},
                                                                          {"toolsversion", "tools-version"}};
            for (const auto &[q, ours] : kQemu)
                if (dashed == q) dashed = ours;
            if (dashed == "cluster-size" && !key(dashed))
                for (const char *unit : {"block-size", "grain-size"})
                    if (key(unit)) dashed = unit;
            if (dashed == "static" && preallocate && !key(dashed)) {
                if (v == "on" || v == "true")
                    *preallocate = true;
                else if (v != "off" && v != "false")
                    throw CliError("-o static takes on or off, not '" + v + "'", kExitUsage);
                continue;
            }
            if (key(dashed)) k = dashed;
        }
        if (const ConfigKey *c = key(k); c && c->type == KeyType::boolean) {
            if (v == "on")
                v = "true";
            else if (v == "off")
                v = "false";
        }
        out[k] = v;
    }
    return out;
}

bool print_option_help(const Library &lib, const std::string &format, const std::vector<std::string> &specs) {
    const bool asked = std::any_of(specs.begin(), specs.end(), [](const std::string &s) {
        std::string_view rest = s;
        while (!rest.empty()) {
            const size_t comma = rest.find(',');
            const std::string_view item = rest.substr(0, comma);
            if (item == "help" || item == "?") return true;
            rest = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 1);
        }
        return false;
    });
    if (!asked) return false;
    const std::optional<PluginInfo> plugin = lib.plugin(PluginKind::format, format);
    if (!plugin) throw CliError("no format plugin '" + format + "' is loaded (vdkit plugins lists them)");
    std::cout << "Supported " << format << " options:\n";
    for (const ConfigKey &k : plugin->keys) {
        std::cout << "  " << k.name << "=<" << to_string(k.type) << ">";
        if (!k.enum_values.empty()) {
            std::cout << " (";
            for (size_t i = 0; i < k.enum_values.size(); ++i)
                std::cout << (i ? "|" : "") << k.enum_values[i];
            std::cout << ")";
        }
        if (!k.default_value.empty()) std::cout << " default " << k.default_value;
        std::cout << "\n      " << k.help << "\n";
    }
    if (plugin->keys.empty()) std::cout << "  (none)\n";
    std::cout << "qemu-img's spellings are taken too: '_' for '-', hwversion, toolsversion, cluster_size"
              << (format == "vdi" ? ", static=on (--preallocate)" : "") << "\n";
    return true;
}

uint64_t parse_size_arg(const std::string &text) {
    auto v = parse_size(text);
    if (!v) throw CliError("invalid size '" + text + "' (use bytes or a k/M/G/T suffix, e.g. 10G)", kExitUsage);
    return *v;
}

std::vector<FilterSpec> parse_filters(const std::vector<std::string> &specs) {
    std::vector<FilterSpec> out;
    for (const auto &s : specs) {
        auto spec = parse_filter_spec(s);
        if (!spec) throw CliError(spec.status().message(), kExitUsage);
        out.push_back(std::move(*spec));
    }
    return out;
}

void add_filter_option(CLI::App *sub, std::vector<std::string> &specs, const std::string &name,
                       const std::string &help) {
    sub->add_option(name, specs, help)->allow_extra_args(false)->type_name("SPEC");
}

void add_force_share_option(CLI::App *sub, bool &force_share, const std::string &help) {
    sub->add_flag("-U,--force-share", force_share, help);
}

void add_output_option(CLI::App *sub, std::string &output) {
    sub->add_option("--output", output, "Output format")->check(CLI::IsMember({"human", "json"}))->default_val("human");
}

namespace {

// The URL schemes a transport serves: its name, then the schemes it
// declares (ABI 2.1); none for other plugins.
std::vector<std::string> url_schemes(const PluginInfo &p) {
    if (p.kind != PluginKind::transport) return {};
    std::vector<std::string> out{p.name};
    out.insert(out.end(), p.schemes.begin(), p.schemes.end());
    return out;
}

} // namespace

std::string format_for(const Library &lib, const std::string &path) {
    const std::string ext = naming_extension(path);
    if (is_generic_extension(ext)) return {};
    const auto claim = lib.formats_for_extension(ext);
    return claim.size() == 1 ? claim[0] : std::string();
}

std::optional<ContainerMatch> container_of_file(const std::string &path) {
    std::error_code ec;
    const uint64_t size = std::filesystem::file_size(path, ec);
    if (ec) return std::nullopt;
    std::ifstream in(path, std::ios::binary);
    if (!in) return std::nullopt;
    auto read = [&in](uint64_t offset, void *buf, size_t len) -> Status {
        in.clear();
        in.seekg(static_cast<std::streamoff>(offset));
        if (!in.read(static_cast<char *>(buf), static_cast<std::streamsize>(len)))
            return Status(VDKIT_E_IO, "short read");
        return Status::ok();
    };
    auto found = detect_container(size, read);
    if (!found) return std::nullopt;
    return *found;
}

std::string rename_name_problem(const Library &lib, const std::string &from, const std::string &to) {
    // The same extension names nothing new (mv d.vmdk old/d.vmdk of a misnamed file is allowed).
    if (naming_extension(from) == naming_extension(to)) return {};
    if (auto format = lib.probe(from); format) return lib.new_name_problem(to, *format);
    // The probe refuses it: judged as what it is, a foreign container or raw.
    const auto found = container_of_file(from);
    if (!found) return lib.new_name_problem(to, "raw");
    const ContainerKind &c = *found->container;
    const std::string ext = naming_extension(to);
    if (ext.empty() || is_generic_extension(ext)) return {};
    auto same = [&c](std::string_view name) {
        return std::any_of(c.aliases.begin(), c.aliases.end(), [&](std::string_view a) { return iequals(a, name); });
    };
    std::string named;
    if (const auto claim = lib.formats_for_extension(ext); !claim.empty()) {
        if (std::none_of(claim.begin(), claim.end(), same)) named = claim[0];
    } else if (const ContainerKind *e = container_by_extension(ext); e && e != &c) {
        named = std::string(e->title);
    }
    if (named.empty()) return {};
    return to + ": its extension '." + ext + "' names the " + named + " format, but " + from + " is a " +
           std::string(c.title) + " image (" + found->evidence + "); tools that go by the name would take it for " +
           named + " (name it for " + std::string(c.title) +
           (c.extensions.empty() ? std::string() : ", e.g. ." + std::string(c.extensions.front())) + ")";
}

std::string new_file_format(const Library &lib, const std::string &path, const std::string &given,
                            const std::string &fallback) {
    std::string chosen = given;
    if (chosen.empty()) chosen = format_for(lib, path);
    if (chosen.empty()) chosen = fallback;
    if (chosen.empty()) {
        // A generic name (disk.img) with nothing else to go by: the format that lists it.
        const auto claim = lib.formats_for_extension(naming_extension(path));
        if (claim.size() == 1) chosen = claim[0];
    }
    if (chosen.empty()) {
        const std::string ext = naming_extension(path);
        throw CliError("cannot tell the format of " + path + " from its name" +
                           (ext.empty() ? std::string() : " (no format plugin lists '." + ext + "')") +
                           "; name it with -f",
                       kExitUsage);
    }
    if (const std::string problem = lib.new_name_problem(path, chosen); !problem.empty())
        throw CliError(problem, kExitUsage);
    return chosen;
}

namespace {

// Point the CLI user at the flag that allows replacing a file.
Result<std::unique_ptr<Disk>> with_overwrite_hint(Result<std::unique_ptr<Disk>> r) {
    if (!r && r.status().code() == VDKIT_E_EXISTS)
        return Status(VDKIT_E_EXISTS, r.status().message() + "; pass --overwrite to replace it");
    return r;
}

std::string uuid_text(const Uuid &u) {
    return u == Uuid{} ? std::string() : vdkit::to_string(u);
}

std::unique_ptr<Disk> open_read_only(Library &lib, const std::string &path, const std::string &format,
                                     const std::vector<std::string> &filters = {}, bool force_share = false,
                                     std::string_view raw = "-f raw") {
    OpenOptions o;
    o.format = format;
    o.filters = parse_filters(filters);
    o.force_share = force_share;
    return take(raw_by(lib.open(path, o), raw));
}

// ---- plugins ----------------------------------------------------------------------

class PluginsCommand : public Command {
    std::string output_;
    CLI::App *define(CLI::App &app) override {
        auto *sub = app.add_subcommand("plugins", "List loaded plugins with capabilities and config keys");
        add_output_option(sub, output_);
        return sub;
    }
    int run() override {
        auto lib = open_library(globals());
        if (output_ == "json") {
            json all = json::array();
            for (const auto &p : lib->plugins()) {
                json keys = json::array();
                for (const auto &k : p.keys) {
                    json jk = {
                        {"name", k.name}, {"type", to_string(k.type)}, {"default", k.default_value}, {"help", k.help}};
                    json flags = json::array();
                    if (k.mandatory) flags.push_back("mandatory");
                    if (k.expert) flags.push_back("expert");
                    if (k.create_only) flags.push_back("create-only");
                    if (k.secret) flags.push_back("secret");
                    jk["flags"] = flags;
                    if (!k.enum_values.empty()) jk["values"] = k.enum_values;
                    if (k.min_value < k.max_value) jk["range"] = {k.min_value, k.max_value};
                    keys.push_back(jk);
                }
                all.push_back({{"kind", to_string(p.kind)},
                               {"name", p.name},
                               {"version", p.version},
                               {"description", p.description},
                               {"abi", std::to_string(p.abi_major) + "." + std::to_string(p.abi_minor)},
                               {"capabilities", p.capability_names},
                               {"extensions", p.extensions},
                               {"schemes", url_schemes(p)},
                               {"keys", keys},
                               {"source", p.source}});
            }
            json problems = json::array();
            for (const auto &pr : lib->load_problems())
                problems.push_back({{"path", pr.path}, {"error", pr.status.message()}});
            std::cout << json{{"plugins", all}, {"problems", problems}}.dump(2) << "\n";
            return kExitOk;
        }
        for (PluginKind kind : {PluginKind::format, PluginKind::filter, PluginKind::transport}) {
            for (const auto &p : lib->plugins()) {
                if (p.kind != kind) continue;
                std::cout << to_string(p.kind) << " " << p.name << " " << p.version << " — " << p.description << "\n";
                std::cout << "  capabilities:";
                for (const auto &c : p.capability_names)
                    std::cout << " " << c;
                std::cout << "\n";
                if (!p.extensions.empty()) {
                    std::cout << "  extensions:";
                    for (const auto &e : p.extensions)
                        std::cout << " ." << e;
                    std::cout << "\n";
                }
                if (p.kind == PluginKind::transport) {
                    std::cout << "  schemes:";
                    for (const auto &e : url_schemes(p))
                        std::cout << " " << e << "://";
                    std::cout << "\n";
                }
                for (const auto &k : p.keys) {
                    std::cout << "  -o " << k.name << "=<" << to_string(k.type) << ">";
                    if (!k.enum_values.empty()) {
                        std::cout << " (";
                        for (size_t i = 0; i < k.enum_values.size(); ++i)
                            std::cout << (i ? "|" : "") << k.enum_values[i];
                        std::cout << ")";
                    }
                    if (!k.default_value.empty()) std::cout << " default " << k.default_value;
                    if (k.mandatory) std::cout << " [mandatory]";
                    if (k.create_only) std::cout << " [create-only]";
                    if (k.secret) std::cout << " [secret]";
                    std::cout << "\n      " << k.help << "\n";
                }
                std::cout << "  from " << p.source << "\n";
            }
        }
        for (const auto &pr : lib->load_problems())
            std::cout << "not loaded: " << pr.status.message() << "\n";
        return kExitOk;
    }
};

// Commands that read one image: IMAGE, -f and --output.
class ImageCommand : public Command {
protected:
    // force_share_option: the command only reads, so it takes -U/--force-share.
    ImageCommand(const char *name, const char *help, bool force_share_option = false)
        : name_(name), help_(help), force_share_option_(force_share_option) {}
    CLI::App *define(CLI::App &app) override {
        auto *sub = app.add_subcommand(name_, help_);
        sub->add_option("-f,--format", format_, "Image format (default: probe)");
        if (force_share_option_)
            add_force_share_option(sub, force_share_,
                                   "Read the image even while another process (vdkit, QEMU) has it open for writing: "
                                   "no image lock is taken or tested (qemu-img -U)");
        add_filter_option(sub, filters_);
        add_output_option(sub, output_);
        sub->add_option("image", image_, "Image file")->required();
        return sub;
    }
    std::unique_ptr<Disk> open_image(Library &lib, bool writable = false) const {
        OpenOptions o;
        o.format = format_;
        o.writable = writable;
        o.filters = parse_filters(filters_);
        o.force_share = force_share_;
        return take(raw_by(lib.open(image_, o), "-f raw"));
    }
    bool json_output() const { return output_ == "json"; }
    bool force_share() const { return force_share_; }
    const std::string &image_path() const { return image_; }

private:
    const char *name_;
    const char *help_;
    bool force_share_option_ = false, force_share_ = false;
    std::string format_, output_, image_;
    std::vector<std::string> filters_;
};

// ---- info -------------------------------------------------------------------------

class InfoCommand : public ImageCommand {
public:
    InfoCommand() : ImageCommand("info", "Show image metadata", true) {}

private:
    bool backing_chain_ = false;
    CLI::App *define(CLI::App &app) override {
        auto *sub = ImageCommand::define(app);
        sub->add_flag("--backing-chain", backing_chain_, "Show every image of the chain, top first");
        return sub;
    }
    // qemu-img info's keys with qemu's meanings (QAPI ImageInfo): sizes in
    // bytes, "full-backing-filename" the parent as opened (joined to the
    // image's directory), "backing-filename-format" the parent's format,
    // "dirty-flag", "format-specific" {type, data} from the format plugin;
    // "cluster-size" only for a unit above a sector, as qemu (none for raw
    // or a flat VMDK).
    // vdkit's extras keep names qemu's schema does not use (subformat, uuid,
    // parent-uuid, comment, filters; docs/qemu-img-differences.md).
    // `parent`: the image below in the opened chain, if any.
    static json to_json(const ImageInfo &info, const ImageInfo *parent) {
        json j = {{"virtual-size", info.virtual_size}, {"filename", info.location}};
        if (info.granularity > 512) j["cluster-size"] = info.granularity;
        j["format"] = info.format;
        if (info.file_size) j["actual-size"] = *info.file_size;
        if (!info.format_specific.empty()) {
            json data = json::parse(info.format_specific, nullptr, false);
            if (data.is_object())
                j["format-specific"] = {{"type", info.format}, {"data", data}};
            else
                std::cerr << "vdkit: format '" << info.format
                          << "' gave details that are not a JSON object; left out\n";
        }
        if (info.has_parent) {
            j["backing-filename"] = info.parent_hint;
            if (parent) {
                j["full-backing-filename"] = parent->location;
                j["backing-filename-format"] = parent->format;
            }
        }
        j["dirty-flag"] = info.dirty;
        if (!info.subformat.empty()) j["subformat"] = info.subformat;
        if (!uuid_text(info.uuid).empty()) j["uuid"] = uuid_text(info.uuid);
        if (info.has_parent && !uuid_text(info.parent_uuid).empty()) j["parent-uuid"] = uuid_text(info.parent_uuid);
        if (!info.comment.empty()) j["comment"] = info.comment;
        if (!info.filters.empty()) j["filters"] = info.filters;
        return j;
    }
    static void print(const ImageInfo &info) {
        std::cout << "image: " << info.location << "\n";
        std::cout << "file format: " << info.format << "\n";
        if (!info.subformat.empty()) std::cout << "subformat: " << info.subformat << "\n";
        std::cout << "virtual size: " << format_size(info.virtual_size) << " (" << info.virtual_size << " bytes)\n";
        if (info.file_size) std::cout << "disk size: " << format_size(*info.file_size) << "\n";
        if (info.granularity > 1) std::cout << "cluster_size: " << info.granularity << "\n";
        if (!uuid_text(info.uuid).empty()) std::cout << "uuid: " << uuid_text(info.uuid) << "\n";
        if (info.has_parent) {
            std::cout << "backing file: " << info.parent_hint << "\n";
            if (!uuid_text(info.parent_uuid).empty())
                std::cout << "parent uuid: " << uuid_text(info.parent_uuid) << "\n";
        }
        if (!info.comment.empty()) std::cout << "comment: " << info.comment << "\n";
        if (!info.filters.empty()) {
            std::cout << "filters:";
            for (const auto &f : info.filters)
                std::cout << " " << f;
            std::cout << "\n";
        }
    }
    int run() override {
        auto lib = open_library(globals());
        auto disk = open_image(*lib);
        const size_t count = disk->image_count();
        if (backing_chain_) {
            // qemu-img info --backing-chain: top first; JSON is an array.
            json all = json::array();
            std::vector<ImageInfo> infos;
            for (size_t i = 0; i < count; ++i)
                infos.push_back(take(disk->image_info(i)));
            for (size_t i = count; i-- > 0;) {
                const ImageInfo &info = infos[i];
                if (json_output()) {
                    all.push_back(to_json(info, i ? &infos[i - 1] : nullptr));
                } else {
                    if (i + 1 < count) std::cout << "\n";
                    print(info);
                }
            }
            if (json_output()) std::cout << all.dump(2) << "\n";
            return kExitOk;
        }
        ImageInfo info = take(disk->image_info(count - 1));
        const std::vector<std::string> disk_filters = disk->disk_filters();
        if (json_output()) {
            std::optional<ImageInfo> parent;
            if (count > 1) parent = take(disk->image_info(count - 2));
            json j = to_json(info, parent ? &*parent : nullptr);
            j["chain-length"] = count;
            if (!disk_filters.empty()) j["disk-filters"] = disk_filters;
            std::cout << j.dump(2) << "\n";
            return kExitOk;
        }
        print(info);
        if (count > 1) std::cout << "chain length: " << count << "\n";
        if (!disk_filters.empty()) {
            // Nearest the chain first, as --filter gave them.
            std::cout << "disk filters:";
            for (const auto &f : disk_filters)
                std::cout << " " << f;
            std::cout << "\n";
        }
        return kExitOk;
    }
};

// ---- create -----------------------------------------------------------------------

class CreateCommand : public Command {
    std::string format_, parent_, parent_format_, image_, size_;
    std::vector<std::string> options_, filters_;
    bool preallocate_ = false, overwrite_ = false;
    CLI::App *define(CLI::App &app) override {
        auto *sub = app.add_subcommand("create", "Create a new image");
        sub->add_option("-f,--format", format_,
                        "Image format (default: the one IMAGE's extension names, else with -b the parent's)");
        sub->add_option("-o,--options", options_, "Format options key=value[,key=value] (see 'vdkit plugins')")
            ->allow_extra_args(false);
        sub->add_option("-b,--backing", parent_, "Create a differencing image over this parent");
        sub->add_option("-F,--backing-format", parent_format_, "Format of the parent (default: probe)");
        sub->add_flag("--preallocate", preallocate_, "Allocate every block now");
        sub->add_flag("--overwrite", overwrite_, "Replace an existing file");
        add_filter_option(sub, filters_, "--filter",
                          "Write the image's files through this file-level filter (NAME or NAME:key=value,...; "
                          "repeat to stack, nearest the file first); a -b parent is read through it too");
        sub->add_option("image", image_, "Image file to create (required but with -o help)");
        sub->add_option("size", size_, "Virtual size (e.g. 10G); default for -b: the parent's");
        return sub;
    }
    int run() override {
        CreateOptions o;
        // As with qemu-img, a relative -b names the parent from the new image's directory.
        o.parent = parent_;
        if (!parent_.empty() && std::filesystem::path(parent_).is_relative() &&
            parent_.find("://") == std::string::npos)
            o.parent = (std::filesystem::path(image_).parent_path() / parent_).lexically_normal().string();
        o.parent_format = parent_format_;
        auto lib = open_library(globals());
        // No -f: the new file's extension names the format, else a -b parent's.
        std::string fallback;
        if (format_.empty() && !parent_.empty() && format_for(*lib, image_).empty()) {
            OpenOptions top;
            top.format = parent_format_;
            top.follow_parents = false;
            top.filters = parse_filters(filters_);
            fallback = take(take(as_parent(lib->open(o.parent, top)))->image_info(0)).format;
        }
        // Nothing else names it: raw, as qemu-img create.
        if (fallback.empty()) fallback = "raw";
        const std::string named = format_.empty() ? format_for(*lib, image_) : format_;
        if (print_option_help(*lib, named.empty() ? fallback : named, options_)) return kExitOk;
        if (image_.empty()) throw CliError("create needs an image file name", kExitUsage);
        format_ = new_file_format(*lib, image_, format_, fallback);
        o.format = format_;
        o.options = format_options(*lib, format_, options_, &preallocate_);
        o.fixed = preallocate_;
        o.overwrite = overwrite_;
        o.filters = parse_filters(filters_);
        if (!size_.empty())
            o.size = parse_size_arg(size_);
        else if (parent_.empty())
            throw CliError("create needs a size (or -b PARENT)", kExitUsage);
        auto disk = take(as_parent(with_overwrite_hint(lib->create_image(image_, o))));
        uint64_t size = disk->size();
        check(disk->close());
        if (!globals().quiet) {
            std::cout << "Formatting '" << image_ << "', fmt=" << format_ << " size=" << size;
            for (const auto &[k, v] : o.options)
                std::cout << " " << k << "=" << v;
            if (!parent_.empty()) std::cout << " backing_file=" << parent_;
            std::cout << "\n";
        }
        return kExitOk;
    }
};

// ---- convert ----------------------------------------------------------------------

// qemu-img convert -r: at most `rate` bytes of source data a second. Run
// from the copy's progress callback (after each piece a worker finishes),
// which sleeps while the copy is ahead of the rate, so every worker waits
// its turn; 0: no limit.
class RateLimit {
public:
    explicit RateLimit(uint64_t rate) : rate_(rate), start_(std::chrono::steady_clock::now()) {}
    void wait(uint64_t done) const {
        if (!rate_) return;
        const auto due = start_ + std::chrono::duration<double>(static_cast<double>(done) / static_cast<double>(rate_));
        std::this_thread::sleep_until(due);
    }

private:
    uint64_t rate_;
    std::chrono::steady_clock::time_point start_;
};

class ConvertCommand : public Command {
    ConvertSpec spec_;
    CLI::Option *source_opt_ = nullptr, *target_opt_ = nullptr; // given or not (convert -o help needs neither)
    std::vector<std::string> options_, source_filters_, target_filters_;
    std::string rate_;
    bool progress_ = false;
    CLI::App *define(CLI::App &app) override {
        auto *sub = app.add_subcommand("convert", "Copy an image (its whole chain) into a new image of any format");
        sub->add_option("-f,--format", spec_.options.source_format, "Source format (default: probe)");
        sub->add_option("-O,--output-format", spec_.options.target_format,
                        "Target format (default: the one the target's extension names, else raw, as qemu-img)");
        sub->add_option("-o,--options", options_, "Target format options key=value[,key=value]")
            ->allow_extra_args(false);
        sub->add_option("-m,--threads", spec_.options.threads,
                        "Workers reading and scanning the source at once (1..64; default: one per processor, 2..4)")
            ->check(CLI::Range(1, 64));
        sub->add_flag("-W,--out-of-order", spec_.options.out_of_order,
                      "Allow out-of-order writes to the target (streams are always written in order)");
        sub->add_flag("-p,--progress", progress_, "Show a progress bar");
        sub->add_option("-r,--rate-limit", rate_, "Copy at most this many bytes of source data a second (K/M/G)");
        sub->add_flag("--overwrite", spec_.options.overwrite,
                      "Replace an existing target file (only once the new one is complete; never a device, fifo or "
                      "directory)");
        sub->add_flag("-n,--existing-target", spec_.options.existing_target,
                      "Write into the existing target (a block device, a preallocated file, an image of the -O "
                      "format) instead of creating it; it must hold at least the source's virtual size");
        sub->add_flag("--target-is-zero", spec_.options.target_is_zero,
                      "With -n: the target already reads as zero, so zero ranges are not written");
        sub->add_flag("--preallocate", spec_.options.preallocate, "Allocate the whole target");
        sub->add_option("-B,--backing", spec_.options.backing,
                        "Create the target as a differencing image over this image (relative to the target's "
                        "directory) and copy only what differs from it");
        sub->add_option("-F,--backing-format", spec_.options.backing_format, "Format of the -B image (default: probe)");
        sub->add_flag("--keep-uuid", spec_.options.keep_uuid, "Give the target the source top image's UUID");
        sub->add_option("--cache", spec_.options.source_cache,
                        "Read the source through this local cache image (made if missing, reused while the source "
                        "is unchanged)");
        sub->add_option("--cache-format", spec_.options.cache_format, "Format of a new --cache image")
            ->default_val("vdi");
        add_force_share_option(sub, spec_.options.source_force_share,
                               "Read the source even while another process (vdkit, QEMU) has it open for writing "
                               "(qemu-img convert -U); the target is always locked");
        add_filter_option(sub, source_filters_, "--source-filter",
                          "Read the source's files through this file-level filter (NAME or NAME:key=value,...; "
                          "repeatable, nearest the file first)");
        add_filter_option(sub, target_filters_, "--target-filter",
                          "Write the target's files through this file-level filter (repeatable; a -B image is "
                          "read through it too)");
        source_opt_ = sub->add_option("source", spec_.source, "Source image (required but with -o help)");
        target_opt_ = sub->add_option("target", spec_.target, "Target image (required but with -o help)");
        return sub;
    }
    int run() override {
        auto lib = open_library(globals());
        if (spec_.options.target_format.empty()) {
            spec_.options.target_format = format_for(*lib, spec_.target);
            if (spec_.options.target_format.empty()) spec_.options.target_format = "raw";
        }
        if (print_option_help(*lib, spec_.options.target_format, options_)) return kExitOk;
        // Not given at all is a usage error; given as "" is the library's to
        // name ("the target is an empty name").
        if (source_opt_->count() == 0 || target_opt_->count() == 0)
            throw CliError("convert needs a source and a target image", kExitUsage);
        spec_.options.target_options =
            format_options(*lib, spec_.options.target_format, options_, &spec_.options.preallocate);
        spec_.options.source_filters = parse_filters(source_filters_);
        spec_.options.target_filters = parse_filters(target_filters_);
        install_cancel_handlers(); // Ctrl-C etc. cancel the copy; the staging directory is removed
        if (!globals().quiet && !spec_.options.existing_target && spec_.target.find("://") == std::string::npos)
            note_stale_staging(std::filesystem::path(spec_.target).parent_path(), {staging_dir_for(spec_.target)});
        const RateLimit limit(rate_.empty() ? 0 : parse_size_arg(rate_));
        ProgressBar bar(progress_, {}, "convert");
        convert_image(*lib, spec_, [&](uint64_t d, uint64_t t) {
            limit.wait(d);
            return bar.update(d, t);
        });
        bar.finish();
        return kExitOk;
    }
};

// ---- measure ----------------------------------------------------------------------

class MeasureCommand : public Command {
    std::string in_format_, out_format_, source_, size_, output_;
    std::vector<std::string> options_, filters_;
    bool force_share_ = false;
    CLI::App *define(CLI::App &app) override {
        auto *sub = app.add_subcommand("measure", "Bytes a new image would take (qemu-img measure)");
        sub->add_option("-f,--format", in_format_, "Source format (default: probe)");
        sub->add_option("-O,--output-format", out_format_, "Format of the new image")->required();
        sub->add_option("-o,--options", options_, "Its create options key=value[,key=value]")->allow_extra_args(false);
        sub->add_option("--size", size_, "Measure an empty image of this size instead of a source");
        add_force_share_option(sub, force_share_,
                               "Read the source even while another process (vdkit, QEMU) has it open for writing");
        add_filter_option(sub, filters_, "--filter",
                          "Read the source's files through this file-level filter (repeatable)");
        add_output_option(sub, output_);
        sub->add_option("source", source_, "Image whose data the new one would hold");
        return sub;
    }
    int run() override {
        auto lib = open_library(globals());
        if (print_option_help(*lib, out_format_, options_)) return kExitOk;
        if (source_.empty() == size_.empty()) throw CliError("give either a source image or --size", kExitUsage);
        std::unique_ptr<Disk> src;
        if (!source_.empty()) src = open_read_only(*lib, source_, in_format_, filters_, force_share_);
        const uint64_t size = size_.empty() ? 0 : parse_size_arg(size_);
        const MeasureResult m =
            take(lib->measure(out_format_, format_options(*lib, out_format_, options_), src.get(), size));
        if (output_ == "json") {
            std::cout << json{{"required", m.required}, {"fully-allocated", m.fully_allocated}}.dump(4) << "\n";
        } else {
            std::cout << "required size: " << m.required << "\nfully allocated size: " << m.fully_allocated << "\n";
        }
        return kExitOk;
    }
};

// ---- compare ----------------------------------------------------------------------

// Library::compare's walk (core/src/disk/compare.cpp) with progress for
// compare -p: ranges neither side holds as data are skipped, data is read
// in pieces of at most 1 MiB, the larger disk's tail must read as zero.
// The progress is bytes walked of the larger size.
Result<std::optional<uint64_t>> compare_with_progress(const Disk &a, const Disk &b, ProgressBar &bar) {
    constexpr uint64_t kPiece = 1u << 20;
    const uint64_t common = std::min(a.size(), b.size()), total = std::max(a.size(), b.size());
    std::vector<unsigned char> ba(kPiece), bb(kPiece);
    for (uint64_t off = 0; off < common;) {
        bar.update(off, total);
        auto ra = a.block_status(off, std::min(common - off, kPiece));
        if (!ra) return ra.status();
        auto rb = b.block_status(off, ra->length);
        if (!rb) return rb.status();
        const uint64_t n = std::min(ra->length, rb->length);
        if (ra->state == BlockState::data || rb->state == BlockState::data) {
            if (Status st = a.read(off, ba.data(), n); !st.is_ok()) return st;
            if (Status st = b.read(off, bb.data(), n); !st.is_ok()) return st;
            for (uint64_t i = 0; i < n; ++i)
                if (ba[i] != bb[i]) return std::optional<uint64_t>(off + i);
        }
        off += n;
    }
    const Disk &longer = a.size() > b.size() ? a : b;
    for (uint64_t off = common; off < total;) {
        bar.update(off, total);
        auto r = longer.block_status(off, std::min(total - off, kPiece));
        if (!r) return r.status();
        if (r->state == BlockState::data) {
            if (Status st = longer.read(off, ba.data(), r->length); !st.is_ok()) return st;
            for (uint64_t i = 0; i < r->length; ++i)
                if (ba[i]) return std::optional<uint64_t>(off + i);
        }
        off += r->length;
    }
    bar.update(total, total);
    return std::optional<uint64_t>();
}

class CompareCommand : public Command {
    std::string format_a_, format_b_, a_, b_;
    std::vector<std::string> filters_a_, filters_b_;
    bool strict_ = false, force_share_ = false, quiet_ = false, progress_ = false;
    CLI::App *define(CLI::App &app) override {
        auto *sub = app.add_subcommand("compare", "Compare the content of two images (exit 0 same, 1 different)");
        sub->add_option("-f,--format", format_a_, "Format of the first image");
        sub->add_option("-F,--second-format", format_b_, "Format of the second image");
        sub->add_flag("-s,--strict", strict_, "Images of different size are different");
        sub->add_flag("-q,--quiet", quiet_, "Print nothing; the exit status says it (qemu-img compare -q)");
        sub->add_flag("-p,--progress", progress_, "Show progress");
        add_force_share_option(sub, force_share_,
                               "Read both images even while another process (vdkit, QEMU) has them open for writing");
        add_filter_option(sub, filters_a_, "--filter",
                          "Read the first image's files through this file-level filter (repeatable)");
        add_filter_option(sub, filters_b_, "--second-filter",
                          "Read the second image's files through this filter (repeatable)");
        sub->add_option("first", a_, "First image")->required();
        sub->add_option("second", b_, "Second image")->required();
        return sub;
    }
    // Library::compare reads data only where either side has some.
    int run() override {
        constexpr int kDiffer = 1, kOpenError = 2, kReadError = 4;
        auto lib = open_library(globals());
        std::unique_ptr<Disk> a, b;
        try {
            a = open_read_only(*lib, a_, format_a_, filters_a_, force_share_);
            b = open_read_only(*lib, b_, format_b_, filters_b_, force_share_, "-F raw");
        } catch (const CliError &e) {
            throw CliError(e.what(), kOpenError);
        }
        // qemu-img compare's messages, on stdout; -q (or the global -q) prints none.
        const bool say = !quiet_ && !globals().quiet;
        if (a->size() != b->size()) {
            if (strict_) {
                if (say) std::cout << "Strict mode: image size mismatch!\n";
                return kDiffer;
            }
            if (say) std::cout << "Warning: Image size mismatch!\n";
        }
        ProgressBar bar(progress_, {}, "compare");
        const std::optional<uint64_t> diff =
            take(progress_ ? compare_with_progress(*a, *b, bar) : Library::compare(*a, *b), kReadError);
        bar.finish();
        if (diff) {
            if (say)
                std::cout << "Content mismatch at offset " << *diff
                          << (*diff >= std::min(a->size(), b->size()) ? " (beyond the smaller image)" : "") << "!\n";
            return kDiffer;
        }
        if (say) std::cout << "Images are identical.\n";
        return kExitOk;
    }
};

// ---- map --------------------------------------------------------------------------

class MapCommand : public ImageCommand {
public:
    MapCommand() : ImageCommand("map", "Show which ranges hold data, read as zero, or come from parents", true) {}

private:
    // Printed as found (one record per run of one state, adjacent runs of
    // the same state merged), so memory stays flat and the first record
    // comes at once whatever the disk's size. JSON is qemu-img map's: one
    // object per line in one array, `depth` the number of images above the
    // one that answered (for a range no image holds: the base's depth,
    // count - 1, with present false and zero true, as qemu shows it).
    int run() override {
        auto lib = open_library(globals());
        auto disk = open_image(*lib);
        struct Entry {
            uint64_t start, length;
            size_t depth;
            bool present, zero, data;
        };
        const bool as_json = json_output();
        bool first = true;
        const auto emit = [&](const Entry &e, bool last) {
            if (as_json) {
                std::printf("%s{ \"start\": %llu, \"length\": %llu, \"depth\": %zu, \"present\": %s, \"zero\": %s, "
                            "\"data\": %s}%s\n",
                            first ? "[" : "", static_cast<unsigned long long>(e.start),
                            static_cast<unsigned long long>(e.length), e.depth, e.present ? "true" : "false",
                            e.zero ? "true" : "false", e.data ? "true" : "false", last ? "]" : ",");
            } else {
                if (first) std::printf("%-20s %-20s %-6s %s\n", "Offset", "Length", "Depth", "State");
                std::printf("0x%-18llx 0x%-18llx %-6zu %s\n", static_cast<unsigned long long>(e.start),
                            static_cast<unsigned long long>(e.length), e.depth,
                            e.data ? "data" : (e.present ? "zero" : "unallocated"));
            }
            first = false;
        };
        const size_t count = disk->image_count(), top = count - 1;
        std::optional<Entry> pending;
        for (uint64_t off = 0; off < disk->size();) {
            BlockRun r = take(disk->block_status(off, std::min<uint64_t>(disk->size() - off, 1ull << 40)));
            const bool present = r.state != BlockState::unallocated;
            const Entry e{off,
                          r.length,
                          present ? top - r.image : top,
                          present,
                          r.state != BlockState::data,
                          r.state == BlockState::data};
            off += r.length;
            if (pending && pending->depth == e.depth && pending->present == e.present && pending->zero == e.zero &&
                pending->data == e.data) {
                pending->length += e.length;
                continue;
            }
            if (pending) emit(*pending, false);
            pending = e;
        }
        if (pending)
            emit(*pending, true);
        else if (as_json)
            std::printf("[]\n");
        else
            std::printf("%-20s %-20s %-6s %s\n", "Offset", "Length", "Depth", "State");
        if (std::fflush(stdout) != 0) throw CliError("cannot write the map to stdout");
        return kExitOk;
    }
};

// ---- check ------------------------------------------------------------------------

// Findings next to each other that differ only in their numbers (offsets,
// indexes, sizes: "grain table 3 entry 17 ...") are one kind; a run of them
// is printed as its first and last finding and a count (docs/check.md,
// "Output"), so a badly cut image gives a few lines instead of thousands.
struct FindingRun {
    size_t first = 0; // index into the report's findings
    size_t count = 1;
};
constexpr size_t kRunShown = 3; // a run this short is printed whole

std::string finding_kind(const CheckFinding &f) {
    std::string k = std::string(to_string(f.severity)) + ":";
    for (size_t i = 0; i < f.message.size();) {
        const char c = f.message[i];
        if (c == '0' && i + 1 < f.message.size() && (f.message[i + 1] == 'x' || f.message[i + 1] == 'X')) {
            i += 2;
            while (i < f.message.size() && std::isxdigit(static_cast<unsigned char>(f.message[i])))
                ++i;
            k += '#';
        } else if (std::isdigit(static_cast<unsigned char>(c))) {
            while (i < f.message.size() && std::isdigit(static_cast<unsigned char>(f.message[i])))
                ++i;
            k += '#';
        } else {
            k += c;
            ++i;
        }
    }
    return k;
}

std::vector<FindingRun> coalesce_findings(const std::vector<CheckFinding> &findings) {
    std::vector<FindingRun> runs;
    std::string last_kind;
    for (size_t i = 0; i < findings.size(); ++i) {
        std::string kind = finding_kind(findings[i]);
        if (!runs.empty() && kind == last_kind)
            ++runs.back().count;
        else
            runs.push_back({i, 1});
        last_kind = std::move(kind);
    }
    return runs;
}

class CheckCommand : public ImageCommand {
public:
    CheckCommand() : ImageCommand("check", "Check an image's metadata for consistency; -r repairs", true) {}

private:
    bool repair_ = false, dry_run_ = false;
    std::string repair_mode_;
    CLI::App *define(CLI::App &app) override {
        auto *sub = ImageCommand::define(app);
        sub->add_flag("-r,--repair", repair_, "Fix what can be fixed (qemu-img's -r leaks|all are taken too)");
        sub->add_option("--repair-mode", repair_mode_,
                        "leaks: repair only when nothing but leaks is found (vdkit repairs a finding of any kind "
                        "or none); all: as -r")
            ->check(CLI::IsMember({"leaks", "all"}));
        sub->add_flag("-n,--dry-run", dry_run_, "With -r: report what would be fixed, change nothing");
        return sub;
    }
    // Exit codes as qemu-img check: 0 clean, 2 errors left, 3 only leaks left,
    // 63 the format cannot check, 1 the check itself failed.
    int run() override {
        constexpr int kCorrupt = 2, kLeaks = 3, kUnsupported = 63;
        if (!repair_mode_.empty()) repair_ = true;
        if (force_share() && repair_ && !dry_run_)
            throw CliError("-U/--force-share only reads an image in use; check -r writes to it (use -r -n to see "
                           "what would be repaired, or repair once nothing else has it open)",
                           kExitUsage);
        auto lib = open_library(globals());
        auto disk = open_image(*lib, repair_ && !dry_run_);
        // qemu-img reports what a repair fixed apart from what is left
        // (corruptions-fixed, leaks-fixed): the counts of a plain check
        // before the repair, less what the repair leaves. -r leaks: the
        // formats repair every kind at once, so only an image with nothing
        // but leaks is repaired (there, all is leaks).
        std::optional<CheckReport> before;
        bool repair = repair_;
        if (repair_ && !dry_run_ && (json_output() || repair_mode_ == "leaks")) {
            Result<CheckReport> b = disk->check({});
            if (b) before = std::move(*b);
            if (repair_mode_ == "leaks" && (!b || b->errors)) {
                std::cerr << "vdkit: -r leaks repairs an image only when nothing but leaks is found; " << image_path()
                          << " has " << (b ? std::to_string(b->errors) : std::string("unknown")) << " errors (-r all "
                          << "repairs them too), so nothing was changed\n";
                repair = false;
            }
        }
        CheckOptions o;
        o.repair = repair;
        o.dry_run = dry_run_;
        Result<CheckReport> r = disk->check(o);
        if (!r && r.status().code() == VDKIT_E_NOT_SUPPORTED) {
            std::cerr << "vdkit: " << r.status().message() << "\n";
            return kUnsupported;
        }
        CheckReport report = take(std::move(r));
        const std::string format_name = take(disk->image_info(disk->image_count() - 1)).format;
        check(disk->close());
        const std::vector<FindingRun> runs = coalesce_findings(report.findings);
        if (json_output()) {
            // Every finding (scripts read each one's lost range), and the
            // runs of one kind as the text output shows them.
            json findings = json::array(), summary = json::array();
            for (const auto &f : report.findings) {
                json jf = {{"severity", to_string(f.severity)}, {"message", f.message}};
                if (f.offset) jf["offset"] = *f.offset;
                findings.push_back(jf);
            }
            for (const auto &run : runs) {
                json js = findings[run.first];
                js["count"] = run.count;
                if (run.count > 1) {
                    const CheckFinding &l = report.findings[run.first + run.count - 1];
                    js["last-message"] = l.message;
                    if (l.offset) js["last-offset"] = *l.offset;
                }
                summary.push_back(js);
            }
            // qemu-img check's keys (QAPI ImageCheck): check-errors counts
            // failures of the check itself (none when a report exists),
            // corruptions and leaks what is left, the -fixed ones what a
            // repair fixed, each present only when not 0, as qemu prints
            // them. vdkit's own: repaired, findings, summary.
            json j = {{"filename", image_path()}, {"format", format_name}, {"check-errors", 0}};
            if (report.errors) j["corruptions"] = report.errors;
            if (report.leaks) j["leaks"] = report.leaks;
            if (before) {
                if (before->errors > report.errors) j["corruptions-fixed"] = before->errors - report.errors;
                if (before->leaks > report.leaks) j["leaks-fixed"] = before->leaks - report.leaks;
            }
            j["repaired"] = report.repaired;
            j["findings"] = findings;
            j["summary"] = summary;
            std::cout << j.dump(4) << "\n";
        } else {
            auto line = [](const CheckFinding &f) {
                std::cout << to_string(f.severity);
                if (f.offset) std::cout << " at " << hex(*f.offset);
                std::cout << ": " << f.message << "\n";
            };
            for (const auto &run : runs) {
                const CheckFinding &first = report.findings[run.first];
                const CheckFinding &last = report.findings[run.first + run.count - 1];
                if (run.count <= kRunShown) {
                    for (size_t i = 0; i < run.count; ++i)
                        line(report.findings[run.first + i]);
                    continue;
                }
                line(first);
                std::cout << "  ... " << (run.count - 2) << " more " << to_string(first.severity)
                          << " findings like it";
                if (first.offset && last.offset)
                    std::cout << " (offsets " << hex(*first.offset) << " to " << hex(*last.offset) << ")";
                std::cout << "; " << run.count << " in all, --output=json lists each\n";
                line(last);
            }
            if (report.repaired) std::cout << report.repaired << " problems were repaired.\n";
            if (report.clean())
                std::cout << "No errors were found on the image.\n";
            else
                std::cout << report.errors << " errors and " << report.leaks << " leaks were found on the image.\n";
        }
        if (report.errors) return kCorrupt;
        if (report.leaks) return kLeaks;
        return kExitOk;
    }
};

// ---- compact ----------------------------------------------------------------------

class CompactCommand : public ImageCommand {
public:
    CompactCommand()
        : ImageCommand("compact", "Give back unused space: zero blocks, blocks equal to the parent, holes") {}

private:
    bool progress_ = false;
    CLI::App *define(CLI::App &app) override {
        auto *sub = ImageCommand::define(app);
        sub->add_flag("-p,--progress", progress_, "Show a progress bar");
        return sub;
    }
    int run() override {
        auto lib = open_library(globals());
        auto disk = open_image(*lib, true);
        // Both the files' length and the bytes they use on the medium: a
        // file whose zeros were holes already shrinks without using less.
        const auto info_before = take(disk->image_info(disk->image_count() - 1));
        ProgressBar bar(progress_, {}, "compact");
        check(disk->compact([&](uint64_t d, uint64_t t) { return bar.update(d, t); }));
        bar.finish();
        const auto info_after = take(disk->image_info(disk->image_count() - 1));
        check(disk->close());
        const auto &before = info_before.file_size, &after = info_after.file_size;
        const auto &len_before = info_before.file_length, &len_after = info_after.file_length;
        if (json_output()) {
            json j = {{"filename", image_path()}};
            if (before) j["size-before"] = *before;
            if (after) j["size-after"] = *after;
            if (len_before) j["file-size-before"] = *len_before;
            if (len_after) j["file-size-after"] = *len_after;
            std::cout << j.dump(2) << "\n";
        } else if (!globals().quiet) {
            std::string parts;
            if (len_before && len_after)
                parts = "file size " + format_size(*len_before) + " -> " + format_size(*len_after);
            if (before && after)
                parts += (parts.empty() ? "" : ", ") + std::string("allocated ") + format_size(*before) + " -> " +
                         format_size(*after);
            if (!parts.empty()) std::cout << "Compacted " << image_path() << ": " << parts << "\n";
        }
        return kExitOk;
    }
};

// ---- resize -----------------------------------------------------------------------

class ResizeCommand : public Command {
    std::string format_, image_, size_;
    std::vector<std::string> filters_;
    bool shrink_ = false;
    CLI::App *define(CLI::App &app) override {
        auto *sub = app.add_subcommand("resize", "Change the virtual size: SIZE, +SIZE or -SIZE");
        sub->add_option("-f,--format", format_, "Image format (default: probe)");
        sub->add_flag("--shrink", shrink_, "Allow making the image smaller (data past the new end is lost)");
        add_filter_option(sub, filters_);
        sub->add_option("image", image_, "Image file")->required();
        sub->add_option("size", size_, "New size, or +/- a change")->required();
        return sub;
    }
    int run() override {
        auto lib = open_library(globals());
        OpenOptions o;
        o.format = format_;
        o.writable = true;
        o.filters = parse_filters(filters_);
        auto disk = take(raw_by(lib->open(image_, o), "-f raw"));
        const uint64_t old_size = disk->size();
        uint64_t new_size = 0;
        if (size_.size() > 1 && (size_[0] == '+' || size_[0] == '-')) {
            const uint64_t delta = parse_size_arg(size_.substr(1));
            if (size_[0] == '+') {
                if (__builtin_add_overflow(old_size, delta, &new_size))
                    throw CliError("the new size overflows", kExitUsage);
            } else {
                if (delta >= old_size) throw CliError("cannot shrink the image to zero or less", kExitUsage);
                new_size = old_size - delta;
            }
        } else {
            new_size = parse_size_arg(size_);
        }
        if (new_size < old_size && !shrink_)
            throw CliError("the new size " + std::to_string(new_size) + " is smaller than the current " +
                               std::to_string(old_size) + " bytes; pass --shrink if the data past it may be lost",
                           kExitUsage);
        check(disk->resize(new_size, shrink_));
        check(disk->close());
        if (!globals().quiet) std::cout << "Image resized.\n";
        return kExitOk;
    }
};

// ---- discard ----------------------------------------------------------------------

// Gives ranges of the top image back (qemu-io's discard / write -z on an
// image): plain discard leaves them reading as zero or as the parent's
// data (Disk::discard), --zero makes them read as zero (Disk::write_zeroes).
class DiscardCommand : public ImageCommand {
public:
    DiscardCommand()
        : ImageCommand("discard", "Give ranges of the top image back (OFFSET:LENGTH, sizes with K/M/G); with "
                                  "--zero they read as zero afterwards") {}

private:
    std::vector<std::string> ranges_;
    bool zero_ = false;
    CLI::App *define(CLI::App &app) override {
        auto *sub = ImageCommand::define(app);
        sub->add_flag("-z,--zero", zero_, "Make the ranges read as zero (otherwise: zero or the parent's data)");
        sub->add_option("range", ranges_, "OFFSET:LENGTH (repeatable)")->required();
        return sub;
    }
    int run() override {
        auto lib = open_library(globals());
        auto disk = open_image(*lib, true);
        // Every range is checked before the first one is given back.
        std::vector<std::pair<uint64_t, uint64_t>> parsed;
        for (const auto &r : ranges_) {
            const auto colon = r.find(':');
            if (colon == std::string::npos) throw CliError("range '" + r + "' is not OFFSET:LENGTH", kExitUsage);
            const uint64_t offset = parse_size_arg(r.substr(0, colon)), length = parse_size_arg(r.substr(colon + 1));
            uint64_t end = 0;
            if (length == 0 || __builtin_add_overflow(offset, length, &end) || end > disk->size())
                throw CliError("range '" + r + "' is empty or ends past the disk's " + std::to_string(disk->size()) +
                                   " bytes",
                               kExitUsage);
            parsed.emplace_back(offset, length);
        }
        uint64_t total = 0;
        for (const auto &[offset, length] : parsed) {
            check(zero_ ? disk->write_zeroes(offset, length) : disk->discard(offset, length));
            total += length;
        }
        check(disk->close());
        if (json_output()) {
            json list = json::array();
            for (const auto &[offset, length] : parsed)
                list.push_back({{"offset", offset}, {"length", length}});
            std::cout << json{{"filename", image_path()}, {"zero", zero_}, {"bytes", total}, {"ranges", list}}.dump(2)
                      << "\n";
        } else if (!globals().quiet) {
            std::cout << (zero_ ? "Zeroed " : "Discarded ") << total << " bytes in " << parsed.size() << " range"
                      << (parsed.size() == 1 ? "" : "s") << ".\n";
        }
        return kExitOk;
    }
};

} // namespace

std::vector<std::unique_ptr<Command>> make_commands() {
    std::vector<std::unique_ptr<Command>> c;
    c.push_back(std::make_unique<PluginsCommand>());
    c.push_back(std::make_unique<InfoCommand>());
    c.push_back(std::make_unique<CreateCommand>());
    c.push_back(std::make_unique<ConvertCommand>());
    c.push_back(std::make_unique<MeasureCommand>());
    c.push_back(std::make_unique<CompareCommand>());
    c.push_back(std::make_unique<MapCommand>());
    c.push_back(std::make_unique<CheckCommand>());
    c.push_back(std::make_unique<CompactCommand>());
    c.push_back(std::make_unique<ResizeCommand>());
    c.push_back(std::make_unique<DiscardCommand>());
    add_chain_commands(c);
    add_image_commands(c);
    add_batch_command(c);
    add_cleanup_command(c);
    add_serve_command(c);
    add_fuse_command(c);
    add_volume_commands(c);
    return c;
}

} // namespace vdkit::cli
