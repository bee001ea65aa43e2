// The naming rule for every file vdkit creates (docs/design/probing.md,
// "Naming new files"): a new image's extension must not name another format
// than the one written into it. Library::convert applies it to its target
// and cache; the CLI's create, snapshot, rename and batch call the same
// functions, so there is one rule.
#include "disk/containers.hpp"
#include "util/util.hpp"
#include "vdkit/vdkit.hpp"

#include <algorithm>
#include <filesystem>

namespace vdkit {

namespace {

// Whether an installed format plugin called `name` can create images.
bool can_create(const Library &lib, std::string_view name) {
    auto info = lib.plugin(PluginKind::format, std::string(name));
    return info && (info->has(VDKIT_CAP_CREATE_FIXED) || info->has(VDKIT_CAP_CREATE_DYNAMIC));
}

} // namespace

inline namespace v1 {

std::string naming_extension(std::string_view location) {
    if (location.find("://") != std::string_view::npos) return containers::extension_of(location);
    const size_t slash = location.find_last_of('/');
    std::string last(slash == std::string_view::npos ? location : location.substr(slash + 1));
    // Windows and SMB servers drop trailing dots and spaces: "d.vmdk. " is d.vmdk there.
    while (!last.empty() && (last.back() == '.' || last.back() == ' '))
        last.pop_back();
    // A dotfile named for a format (".vmdk") is that format's name to every tool that goes by it.
    if (last.size() > 1 && last[0] == '.' && last.find('.', 1) == std::string::npos) last = "x" + last;
    return containers::extension_of(last);
}

std::string Library::new_name_problem(const std::string &path, const std::string &format) const {
    const std::string ext = naming_extension(path);
    if (ext.empty() || containers::is_generic_extension(ext)) return {};
    if (!plugin(PluginKind::format, format)) return {}; // an unknown format is the library's error
    auto same = [&format](std::string_view name) { return util::iequals(name, format); };
    std::string named;
    bool writable = false; // whether vdkit could write the format the name says instead
    const auto claim = formats_for_extension(ext);
    if (!claim.empty() && std::none_of(claim.begin(), claim.end(), same)) {
        named = claim[0];
        writable = can_create(*this, named);
    }
    if (named.empty() && claim.empty())
        if (const containers::Container *c = containers::by_extension(ext))
            if (std::none_of(c->aliases.begin(), c->aliases.end(), same)) {
                named = std::string(c->title);
                for (std::string_view a : c->aliases)
                    if (can_create(*this, a)) writable = true;
            }
    if (named.empty()) return {};
    std::string suggestion = "img";
    if (auto info = plugin(PluginKind::format, format); info && !info->extensions.empty())
        suggestion = info->extensions.front();
    return path + ": its extension '." + ext + "' names the " + named + " format, but it would be written as " +
           format +
           "; tools that go by the name, and vdkit's probe for a file no plugin recognises, would take it "
           "for " +
           named + " or refuse it (name it for " + format + ", e.g. ." + suggestion +
           (writable ? ", or write " + named : std::string()) + ")";
}

std::vector<std::string> Library::formats_for_extension(std::string_view extension) const {
    std::vector<std::string> claim;
    if (extension.empty()) return claim;
    for (const auto &p : plugins())
        if (p.kind == PluginKind::format)
            for (const auto &e : p.extensions)
                if (util::iequals(e, extension)) claim.push_back(p.name);
    return claim;
}

std::string Library::written_name_problem(const std::string &path, const std::string &format) const {
    if (std::string problem = new_name_problem(path, format); !problem.empty()) return problem;
    std::error_code ec;
    if (path.find("://") != std::string::npos || !std::filesystem::is_symlink(path, ec)) return {};
    // The link is followed and the file it names is replaced: that file's name counts too.
    const std::filesystem::path real = std::filesystem::weakly_canonical(path, ec);
    if (ec) return {};
    if (std::string problem = new_name_problem(real.string(), format); !problem.empty())
        return path + " is a symlink to " + real.string() + ", the file that would be written; " + problem;
    return {};
}

} // namespace v1
} // namespace vdkit
