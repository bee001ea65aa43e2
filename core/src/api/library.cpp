// The public C++ Library: a handle on a shared Host. Its operations on
// disks live with them in disk/ (open.cpp, copy.cpp, manage.cpp, ...).
#include "disk/disk_state.hpp"
#include "disk/open.hpp"
#include "host/host.hpp"
#include "io/stores.hpp"
#include "util/util.hpp"

namespace vdkit {
inline namespace v1 {

Library::Library(std::shared_ptr<Host> host) : host_(std::move(host)) {}
Library::~Library() = default;

Result<std::shared_ptr<Library>> Library::create(const LibraryOptions &options) {
    VDKIT_ASSIGN_OR_RETURN(std::shared_ptr<Host> host, Host::create(options));
    return std::shared_ptr<Library>(new Library(std::move(host)));
}

std::vector<PluginInfo> Library::plugins() const {
    std::vector<PluginInfo> out;
    for (const auto &e : host_->registry().all())
        out.push_back(e->info);
    return out;
}

std::optional<PluginInfo> Library::plugin(PluginKind kind, std::string_view name) const {
    if (auto e = host_->registry().find(kind, name)) return e->info;
    return std::nullopt;
}

Result<std::vector<PluginInfo>> Library::load_plugin(const std::string &path) {
    return host_->load_plugin_file(path);
}

Status Library::unload_plugin(const std::string &path) {
    return host_->unload_plugin_file(path);
}

const std::vector<LoadProblem> &Library::load_problems() const noexcept {
    return host_->load_problems();
}

Result<std::string> Library::probe(const std::string &location, const Options &transport_options) const {
    VDKIT_ASSIGN_OR_RETURN(ByteStorePtr main, host_->stores().open_store(location, 0, transport_options));
    VDKIT_ASSIGN_OR_RETURN(PluginEntryPtr fmt, vdkit::probe(*host_, *main, location, true));
    return fmt->info.name;
}

Result<std::unique_ptr<Disk>> Library::open(const std::string &location, const OpenOptions &options) const {
    return open_disk(*host_, location, options);
}

Result<std::unique_ptr<Disk>> Library::create_image(const std::string &location, const CreateOptions &options) const {
    return create_disk(*host_, location, options);
}

Status Library::check_filters(const std::vector<FilterSpec> &stack, bool create) const {
    return host_->stores().resolve_filters(stack, create ? OptionUse::create : OptionUse::open).status();
}

Result<FilterSpec> parse_filter_spec(std::string_view text) {
    const size_t colon = text.find(':');
    FilterSpec spec;
    spec.name = std::string(text.substr(0, colon));
    if (spec.name.empty())
        return Status(VDKIT_E_INVALID_ARGUMENT,
                      "filter '" + std::string(text) + "': no filter name before the options");
    if (colon == std::string_view::npos) return spec;
    auto kv = util::parse_key_values(text.substr(colon + 1));
    if (!kv)
        return Status(VDKIT_E_INVALID_ARGUMENT, "filter '" + std::string(text) +
                                                    "': cannot parse its options (expected NAME:key=value,key=value)");
    for (auto &[k, v] : *kv)
        spec.options[k] = v;
    return spec;
}

Status Library::check_options(PluginKind kind, std::string_view name, const Options &options, bool create) const {
    auto entry = host_->registry().find(kind, name);
    if (!entry) return host_->unknown_plugin(kind, name);
    return host_->options_for(*entry, options, create ? OptionUse::create : OptionUse::open).status();
}

} // namespace v1
} // namespace vdkit
