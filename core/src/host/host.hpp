// Host: the library's engine room. It owns the configuration, the plugin
// registries and the host function table handed to plugins, opens byte
// stores through transports (enforcing the path policy), and creates Disks.
// Library (public API) is a thin handle on a shared Host.
//
// Thread-safety: immutable after create(); all methods are const and safe to
// call concurrently.
#ifndef VDKIT_CORE_HOST_HOST_HPP
#define VDKIT_CORE_HOST_HOST_HPP

#include "config/config_file.hpp"
#include "config/options.hpp"
#include "host/context.hpp"
#include "io/byte_store.hpp"
#include "io/plugin_stores.hpp"
#include "registry/registry.hpp"
#include "vdkit/vdkit.hpp"

#include <memory>
#include <string>
#include <vector>

namespace vdkit {

class PluginLibrary;
class Image;

class Host : public std::enable_shared_from_this<Host> {
public:
    static Result<std::shared_ptr<Host>> create(const LibraryOptions &options);
    ~Host();

    const Registry &registry() const noexcept { return registry_; }
    const Config &config() const noexcept { return config_; }
    const std::vector<LoadProblem> &load_problems() const noexcept { return problems_; }
    const vdkit_host_api *api() const noexcept;

    void log(LogLevel level, std::string_view message) const;

    // Options for a plugin: config-file defaults overlaid by `given`, then
    // validated against the plugin's key table.
    Result<Options> options_for(const PluginEntry &plugin, const Options &given, OptionUse use) const;

    // The transport for a location: its "scheme://" prefix, else "file".
    Result<PluginEntryPtr> transport_for(const std::string &location) const;
    // NOT_FOUND naming the plugin that is not loaded, a likely typo's
    // correction and what is loaded of that kind.
    Status unknown_plugin(PluginKind kind, std::string_view name) const;
    // Open location through its transport (flags: VDKIT_OPEN_*).
    Result<ByteStorePtr> open_store(const std::string &location, uint32_t flags, const Options &transport_options) const;
    // The same with a file-level filter stack over the transport's store.
    Result<ByteStorePtr> open_store(const std::string &location, uint32_t flags, const Options &transport_options,
                                    const FilterStack &filters) const;
    // Look up and validate a filter stack: every name a loaded filter with
    // VDKIT_CAP_FILTER_FILE, its options valid for `use`.
    Result<FilterStack> resolve_filters(const std::vector<FilterSpec> &specs, OptionUse use) const;
    Status remove_location(const std::string &location) const;
    // Move a file within one transport; an existing `to` is refused
    // (VDKIT_E_EXISTS), never replaced.
    Status rename_location(const std::string &from, const std::string &to) const;
    Result<bool> location_exists(const std::string &location) const;

    // The path rule for paths named inside images (docs/design/paths.md).
    // Unless allow_unsafe:
    //  * never a URL, nothing under /proc or /sys, and an existing target
    //    must be a regular file (no device, fifo, socket or directory; a
    //    symbolic link is judged by what it leads to);
    //  * an extent (or any other file of the image) must lie in the image's
    //    directory or below it;
    //  * a parent may also lie in the directory kParentLevels up or at most
    //    kParentLevels directories below it (a VirtualBox base above
    //    Snapshots/, qemu's "-b ../base", "../images/base"): then it is
    //    `beyond` and usable only when verify_parent() accepts the image
    //    found there.
    // Refusals are VDKIT_E_PERMISSION naming the image, the path and the rule.
    enum class PathUse { extent, parent };
    static constexpr int kParentLevels = 1;
    struct NamedPath {
        std::string location; // resolved (lexically normal)
        bool beyond = false;  // a parent outside the image's directory
        bool via_link = false; // beyond only through a symbolic link
    };
    Result<NamedPath> resolve_named(const std::string &image_location, std::string_view path, PathUse use,
                                    bool allow_unsafe) const;
    // resolve_named(..., PathUse::extent, ...).location.
    Result<std::string> resolve_sibling(const std::string &image_location, std::string_view path,
                                        bool allow_unsafe) const;
    // A parent `where` lies beyond its child's directory: the image found
    // there must be the one the child records — its UUID equal to the
    // recorded parent UUID, or (only when one side has no UUID) its
    // modification id equal to the recorded one within one format. A file
    // no format recognises (read as raw) has neither and is refused.
    // OK when `where` is not beyond.
    static Status verify_parent(const std::string &child_location, std::string_view hint, const NamedPath &where,
                                std::string_view child_format, const uint8_t recorded_uuid[16],
                                const uint8_t recorded_modification[16], std::string_view parent_format,
                                const vdkit_image_info &parent);
    // Before a child at child_location records `hint` for `parent` (create,
    // rebase, attach, rename): the link must be one that opening the child
    // will accept — resolve_named(PathUse::parent) and verify_parent with
    // the ids the child records (the parent's own).
    Status check_link(const std::string &child_location, std::string_view hint, std::string_view child_format,
                      std::string_view parent_format, const vdkit_image_info &parent, bool allow_unsafe) const;

    // Scored probing: the highest score wins; a tie or no match is an error
    // naming the candidates. `fallback_ok` accepts a VDKIT_PROBE_FALLBACK
    // winner (read-only opens).
    Result<PluginEntryPtr> probe(ByteStore &main, const std::string &location, bool fallback_ok) const;
    // With no evidence for any plugin (at best the fallback): an error when
    // the file carries a known container signature or its extension names a
    // format it is not (docs/design/probing.md, "Foreign containers").
    Status refuse_unrecognised(ByteStore &main, const std::string &location, const PluginEntry *fallback) const;
    // Before a link from `child` (of format child_format) to `parent` is
    // written: would probing the parent, as every later open of the child
    // does (VDI and VMDK cannot record a parent's format), pick the format
    // the parent is open with? An error saying why not, or OK.
    Status check_parent_link(Image &parent, const std::string &child, const std::string &child_format) const;
    // The score `fmt`'s own probe gives `main` (0 when its probe fails).
    Result<uint32_t> probe_score(const PluginEntry &fmt, ByteStore &main, const std::string &location) const;

    // How a child at `child` names a parent at `parent`: relative to the
    // child's directory for files, the parent's location for URLs.
    static std::string relative_hint(const std::string &child, const std::string &parent);

    Result<std::unique_ptr<Disk>> open_disk(const std::string &location, const OpenOptions &options) const;
    // final_location: the image is built at `location` but will be moved
    // there (a staged convert): its parent path is written relative to it
    // and must resolve from there. Empty: location.
    Result<std::unique_ptr<Disk>> create_disk(const std::string &location, const CreateOptions &options,
                                              const std::string &final_location = {}) const;
    Status copy(const Disk &src, Disk &dst, const CopyOptions &options) const;
    // Children of the image at `location` (absolute) and the directories
    // searched for them: every directory from which a child can reach it
    // under the path rule — its own directory D, each directory directly in
    // D, the directory above D and each directory directly in that one, and
    // every directory further up to the root (a child there names it by a
    // path going down) — then the directories of the images of its chain
    // and search_dirs. Only files directly in those directories are looked
    // at (no recursion). A child
    // names it by path (its parent path resolves to it, and its recorded
    // parent UUID, if any, is the image's) or, as VirtualBox's differencing
    // images do, only by UUID (no parent path; its recorded parent UUID is
    // the image's).
    struct Child {
        std::string location;
        std::string format;
        bool by_path = true;
    };
    struct ChildSearch {
        std::vector<Child> children;
        std::vector<std::string> searched;
    };
    Result<ChildSearch> search_children(const std::string &location, const std::vector<std::string> &search_dirs,
                                        const std::vector<FilterSpec> &filters) const;
    // Library::find_children / rename_image / delete_image (disk/manage.cpp).
    Result<std::vector<std::string>> find_children(const std::string &location,
                                                   const std::vector<std::string> &search_dirs,
                                                   const std::vector<FilterSpec> &filters) const;
    Result<RenameResult> rename_image(const std::string &from, const std::string &to,
                                      const RenameOptions &options) const;
    Result<DeleteResult> delete_image(const std::string &location, const DeleteOptions &options) const;

    // A context for calling `plugin` with `options`.
    vdkit_ctx make_ctx(const PluginEntry *plugin, const Options *options) const;

private:
    Host() = default;
    void load_directory(const std::string &dir);
    void load_library(const std::string &path);

    Config config_;
    LogFunction log_;
    LogLevel log_level_ = LogLevel::warning;
    Registry registry_;
    std::vector<LoadProblem> problems_;
    std::vector<std::shared_ptr<PluginLibrary>> libraries_;
};

// Record st in ctx (for host functions that return a code to a plugin).
uint32_t report_to_ctx(vdkit_ctx *ctx, const Status &st);

} // namespace vdkit

#endif
