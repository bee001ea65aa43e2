// Image management outside a chain's data: finding an image's children,
// renaming/moving an image (VixDiskLib_Rename) and deleting one
// (VixDiskLib_Unlink), without breaking the chains built on it.
//
// Images do not know their children; a child names its parent (a relative
// path and the parent's UUID). Children are therefore found by looking at
// the images in the parent's directory (and any directories the caller
// adds): an image is a child when its parent path resolves to the image and
// the parent UUID it records, if any, is the image's.
#include "disk/disk_state.hpp"
#include "disk/open.hpp"
#include "host/host.hpp"
#include "io/paths.hpp"
#include "io/stores.hpp"
#include "util/util.hpp"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <optional>
#include <set>
#include <sys/stat.h>

namespace fs = std::filesystem;

namespace vdkit {

namespace {

bool is_url(const std::string &location) {
    return location.find("://") != std::string::npos;
}

// Absolute, normalised form of a file location (URLs unchanged), so paths
// named inside images resolve the same before and after a move.
std::string absolute_location(const std::string &location) {
    if (is_url(location)) return location;
    std::error_code ec;
    fs::path p = fs::absolute(location, ec);
    return (ec ? fs::path(location) : p).lexically_normal().string();
}

bool same_file(const std::string &a, const std::string &b) {
    std::error_code ec;
    return fs::equivalent(a, b, ec);
}

// A file's identity (device, inode), or nothing when it cannot be stat'ed.
std::optional<std::pair<uint64_t, uint64_t>> file_id(const std::string &path) {
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) return std::nullopt;
    return std::pair<uint64_t, uint64_t>(st.st_dev, st.st_ino);
}

std::string joined(const std::vector<std::string> &names) {
    std::string out;
    for (const auto &n : names)
        out += (out.empty() ? "" : ", ") + n;
    return out;
}

// delete, rename (and their search for children) open the image the user
// named only to remove or move its files: a file the probe refuses (a foreign
// container, a misleading name, or raw bytes it will not guess for writing)
// is handled as the one raw file it is, since naming it is consent
// (docs/design/probing.md, "Naming a file is consent").
Result<std::unique_ptr<Disk>> open_named(const Host &host, const std::string &location, OpenOptions &oo,
                                         const char *doing) {
    auto opened = open_disk(host, location, oo);
    if (opened || !oo.format.empty()) return opened;
    const auto c = opened.status().code();
    if (c != VDKIT_E_NOT_SUPPORTED && c != VDKIT_E_PERMISSION && c != VDKIT_E_NOT_FOUND) return opened;
    auto there = host.stores().location_exists(location);
    if (!there || !*there) return opened;
    OpenOptions raw = oo;
    raw.format = "raw";
    auto as_raw = open_disk(host, location, raw);
    if (!as_raw) return opened; // no raw plugin either: the probe's answer stands
    host.log(LogLevel::info, std::string(doing) + " " + location + " as one raw file: " + opened.status().message());
    oo = raw;
    return as_raw;
}

// Children of the image at `location` (absolute) and the directories
// searched for them: every directory from which a child can reach it
// under the path rule — its own directory D, each directory directly in
// D, the directory above D and each directory directly in that one, and
// every directory further up to the root (a child there names it by a
// path going down) — then the directories of the images of its chain
// and search_dirs. Only files directly in those directories are looked
// at (no recursion). A child names it by path (its parent path resolves
// to it, and its recorded parent UUID, if any, is the image's) or, as
// VirtualBox's differencing images do, only by UUID (no parent path; its
// recorded parent UUID is the image's).
struct Child {
    std::string location;
    std::string format;
    bool by_path = true;
};
struct ChildSearch {
    std::vector<Child> children;
    std::vector<std::string> searched;
};

Result<ChildSearch> search_children(const Host &host, const std::string &location,
                                    const std::vector<std::string> &search_dirs,
                                    const std::vector<FilterSpec> &filters) {
    ChildSearch out;
    if (is_url(location)) {
        host.log(LogLevel::warning, location + ": children cannot be searched for over a URL; none are checked");
        return out;
    }
    const std::string me = absolute_location(location);
    OpenOptions oo;
    oo.follow_parents = false;
    oo.lock = false;
    oo.filters = filters;
    VDKIT_ASSIGN_OR_RETURN(auto self, open_named(host, me, oo, "looking for children of"));
    VDKIT_ASSIGN_OR_RETURN(ImageInfo mine, self->image_info(0));
    VDKIT_TRY(self->close());

    // Where to look, in order; each directory once. Exactly the directories
    // from which a child could name this image under the path rule
    // (io/paths.hpp, docs/design/paths.md): a parent lies in the child's
    // directory or below it (any depth), or in the directory one level up or
    // a directory directly in that one. So a child lies in D (the image's
    // directory), a directory directly in D (Snapshots/: `../disk.vdi`), the
    // directory above D or a directory directly in it (a sibling:
    // `../images/base.vdi`), or any directory further up (`vm/images/b.vdi`).
    const fs::path home = fs::path(me).parent_path();
    std::vector<std::string> dirs{home.string()};
    std::vector<std::string> optional; // unreadable ones are skipped (no child there could be opened either)
    std::error_code ec;
    auto subdirs = [&](const fs::path &d) {
        std::vector<std::string> list;
        std::error_code lec;
        fs::directory_iterator it(d, lec), end;
        for (; !lec && it != end; it.increment(lec)) {
            std::error_code tec;
            if (it->is_directory(tec)) list.push_back(it->path().lexically_normal().string());
        }
        std::sort(list.begin(), list.end());
        return list;
    };
    for (const auto &s : subdirs(home))
        optional.push_back(s), dirs.push_back(s);
    if (home.has_relative_path()) {
        const fs::path up = home.parent_path();
        dirs.push_back(up.string());
        optional.push_back(up.string());
        for (const auto &s : subdirs(up))
            optional.push_back(s), dirs.push_back(s);
        for (fs::path a = up; a.has_relative_path();) {
            a = a.parent_path();
            dirs.push_back(a.string());
            optional.push_back(a.string());
        }
    }
    {
        // The directories of its chain (a base above Snapshots/ has
        // children beside its other snapshots); a chain that does not open
        // adds nothing.
        OpenOptions co = oo;
        co.follow_parents = true;
        if (auto chain = open_disk(host, me, co)) {
            for (size_t i = 0; i + 1 < (*chain)->image_count(); ++i)
                if (auto info = (*chain)->image_info(i); info && !is_url(info->location))
                    dirs.push_back(fs::path(absolute_location(info->location)).parent_path().string());
            (void)(*chain)->close();
        }
    }
    for (const auto &d : search_dirs)
        dirs.push_back(absolute_location(d));
    // Each file once, by identity: one stat per file, not one per pair (a
    // search of a directory with thousands of files stayed linear).
    std::set<std::pair<uint64_t, uint64_t>> seen;
    const auto my_id = file_id(me);
    for (const auto &dir : dirs) {
        bool again = false;
        for (const auto &s : out.searched)
            again = again || same_file(s, dir);
        if (again) continue;
        const bool may_skip = std::find(optional.begin(), optional.end(), dir) != optional.end();
        if (may_skip) {
            // Never /proc or /sys (no image lives there; their files can block).
            const fs::path rel_proc = fs::path(dir).lexically_relative("/proc"),
                           rel_sys = fs::path(dir).lexically_relative("/sys");
            if ((!rel_proc.empty() && *rel_proc.begin() != "..") || (!rel_sys.empty() && *rel_sys.begin() != ".."))
                continue;
        }
        fs::directory_iterator it(dir, ec), end;
        if (ec && may_skip &&
            (ec == std::errc::permission_denied || ec == std::errc::no_such_file_or_directory ||
             ec == std::errc::not_a_directory)) {
            // Unreadable (no child there could be opened by this user either)
            // or gone since it was listed (nothing there to orphan).
            if (ec == std::errc::permission_denied)
                host.log(LogLevel::warning, "cannot list " + dir + " to look for children of " + location + ": " +
                                                ec.message() + " (skipped)");
            continue;
        }
        if (ec)
            return Status(VDKIT_E_IO,
                          "cannot list " + dir + " to look for children of " + location + ": " + ec.message());
        out.searched.push_back(dir);
        for (; it != end; it.increment(ec)) {
            if (ec) return Status(VDKIT_E_IO, "cannot list " + dir + ": " + ec.message());
            std::error_code tec;
            if (!it->is_regular_file(tec)) continue;
            const std::string candidate = it->path().lexically_normal().string();
            const auto id = file_id(candidate);
            if (!id || id == my_id || !seen.insert(*id).second) continue; // gone, the image itself, or seen
            // Anything that does not open as an image (extent files, other
            // data) is not a child; only a differencing image can be.
            auto other = open_disk(host, candidate, oo);
            if (!other) continue;
            auto info = (*other)->image_info(0);
            (void)(*other)->close();
            if (!info || !info->has_parent) continue;
            const bool nil = util::uuid_is_nil(info->parent_uuid.data()) || util::uuid_is_nil(mine.uuid.data());
            if (info->parent_hint.empty()) {
                // Named only by UUID (VirtualBox keeps the path in its media
                // registry): a child when that UUID is this image's.
                if (!nil && info->parent_uuid == mine.uuid) out.children.push_back({candidate, info->format, false});
                continue;
            }
            auto parent = resolve_sibling(candidate, info->parent_hint, true);
            if (!parent || !same_file(*parent, me)) continue;
            // A child that names this path but records another parent UUID
            // belongs to an image that was replaced; it is not this one's.
            if (!nil && info->parent_uuid != mine.uuid) continue;
            out.children.push_back({candidate, info->format, true});
        }
    }
    return out;
}

} // namespace

Result<std::vector<std::string>> Library::find_children(const std::string &location,
                                                        const std::vector<std::string> &search_dirs,
                                                        const std::vector<FilterSpec> &filters) const {
    const Host &host = *host_;
    VDKIT_ASSIGN_OR_RETURN(ChildSearch found, search_children(host, location, search_dirs, filters));
    std::vector<std::string> out;
    for (const auto &c : found.children)
        out.push_back(c.location);
    return out;
}

Result<RenameResult> Library::rename_image(const std::string &from_in, const std::string &to_in,
                                           const RenameOptions &options) const {
    const Host &host = *host_;
    const std::string from = absolute_location(from_in), to = absolute_location(to_in);
    const bool allow_unsafe = options.allow_unsafe_paths.value_or(host.config().allow_unsafe_paths);
    VDKIT_ASSIGN_OR_RETURN(bool exists, host.stores().location_exists(to));
    if (exists) return Status(VDKIT_E_EXISTS, "cannot rename " + from_in + " to " + to_in + ": the target exists");
    // Children that name it by path follow it; those that name it only by
    // UUID need no change.
    std::vector<Child> children;
    std::vector<std::string> searched;
    if (options.relink_children) {
        VDKIT_ASSIGN_OR_RETURN(ChildSearch found, search_children(host, from, options.search_dirs, options.filters));
        for (auto &c : found.children)
            if (c.by_path) children.push_back(std::move(c));
        searched = std::move(found.searched);
    }

    OpenOptions oo;
    oo.writable = true;
    oo.follow_parents = false;
    oo.allow_unsafe_paths = allow_unsafe;
    oo.filters = options.filters;
    VDKIT_ASSIGN_OR_RETURN(auto disk, open_named(host, from, oo, "moving"));
    Image &img = *DiskAccess::state(*disk).images.back();
    VDKIT_ASSIGN_OR_RETURN(vdkit_image_info info, img.raw_info());
    const bool has_parent = info.flags & VDKIT_IMAGE_HAS_PARENT;

    // Everything that must be able to find the image (or its parent) again
    // is checked before anything moves.
    // Every link is checked under the path rule as opening will apply it.
    const std::string format = img.format().info.name;
    std::string parent, parent_hint, parent_format;
    if (has_parent) {
        VDKIT_ASSIGN_OR_RETURN(std::string hint, img.parent_hint());
        VDKIT_ASSIGN_OR_RETURN(parent, resolve_sibling(from, hint, true)); // opened under the policy below
        parent_hint = relative_hint(to, parent);
        OpenOptions po;
        po.follow_parents = false;
        po.lock = false;
        po.allow_unsafe_paths = true;
        po.filters = options.filters;
        vdkit_image_info pinfo{};
        if (auto p = open_disk(host, parent, po)) {
            parent_format = DiskAccess::state(**p).images.back()->format().info.name;
            auto raw = DiskAccess::state(**p).images.back()->raw_info();
            if (raw) pinfo = *raw;
            (void)(*p)->close();
        }
        // The image keeps the parent ids it records.
        Status back = [&]() -> Status {
            VDKIT_ASSIGN_OR_RETURN(NamedPath where, resolve_named(to, parent_hint, PathUse::parent, allow_unsafe));
            return verify_parent(to, parent_hint, where, format, info.parent_uuid, info.parent_modification_uuid,
                                 parent_format, pinfo);
        }();
        if (!back) return back.with_context("moving " + from_in + " to " + to_in + " (its parent)");
    }
    for (const auto &child : children) {
        Status back =
            check_link(child.location, relative_hint(child.location, to), child.format, format, info, allow_unsafe);
        if (!back)
            return back.with_context("moving " + from_in + " to " + to_in + " (its child " + child.location + ")");
    }
    // The format must be able to record each new path (an embedded VMDK
    // descriptor without room, a VDI whose block map leaves no room for a
    // longer parent location): the same set_parent calls as below, on
    // dry-run copies (io/dry_run_store.hpp), opened as the real run opens
    // them — so nothing moves when one would fail.
    if (has_parent) {
        Status trial = [&]() -> Status {
            VDKIT_ASSIGN_OR_RETURN(auto copy, img.open_dry_run());
            vdkit_image_info link{};
            std::memcpy(link.uuid, info.parent_uuid, 16);
            std::memcpy(link.modification_uuid, info.parent_modification_uuid, 16);
            Status st = copy->set_parent(parent_hint, parent_format, &link);
            Status closed = copy->close(false);
            return st ? closed : st;
        }();
        if (!trial)
            return trial.with_context("moving " + from_in + " to " + to_in +
                                      " (its parent path cannot be recorded; nothing was moved)");
    }
    for (const auto &kid : children) {
        Status trial = [&]() -> Status {
            OpenOptions co;
            co.writable = true;
            co.follow_parents = false;
            co.allow_unsafe_paths = allow_unsafe;
            co.filters = options.filters;
            VDKIT_ASSIGN_OR_RETURN(auto c, open_disk(host, kid.location, co));
            Status st = [&]() -> Status {
                VDKIT_ASSIGN_OR_RETURN(auto copy, DiskAccess::state(*c).images.back()->open_dry_run());
                Status set = copy->set_parent(relative_hint(kid.location, to), format, &info);
                Status closed = copy->close(false);
                return set ? closed : set;
            }();
            Status closed = c->close();
            return st ? closed : st;
        }();
        if (!trial)
            return trial.with_context("moving " + from_in + " to " + to_in + " (its child " + kid.location +
                                      " cannot record the new path; nothing was moved)");
    }

    VDKIT_TRY(img.rename(to));
    RenameResult result;
    result.location = to;
    result.searched = searched;
    // Reopened where it now is: after a move to another file system (a
    // copy) the files held open are the removed originals.
    VDKIT_TRY(disk->close());
    auto reopened = open_disk(host, to, oo);
    if (!reopened)
        return reopened.status().with_context(from_in + " was moved to " + to_in + " but cannot be opened there");
    disk = std::move(*reopened);
    Image &moved_img = *DiskAccess::state(*disk).images.back();
    // The image's own link: a relative parent path changes with the move.
    if (has_parent) {
        vdkit_image_info link{};
        std::memcpy(link.uuid, info.parent_uuid, 16);
        std::memcpy(link.modification_uuid, info.parent_modification_uuid, 16);
        Status st = moved_img.set_parent(parent_hint, parent_format, &link);
        if (!st)
            return st.with_context(from_in + " was moved to " + to_in + " but its parent path could not be updated");
    }
    // What the children record: the moved image's ids, which a move keeps.
    VDKIT_ASSIGN_OR_RETURN(vdkit_image_info moved, moved_img.raw_info());
    VDKIT_TRY(disk->close());

    // Children: header-only relink to the new location, with the paths
    // checked above under the caller's policy.
    std::vector<std::string> failed;
    Status first;
    for (const auto &kid : children) {
        const std::string &child = kid.location;
        OpenOptions co;
        co.writable = true;
        co.follow_parents = false;
        co.allow_unsafe_paths = allow_unsafe;
        co.filters = options.filters;
        Status st = [&]() -> Status {
            VDKIT_ASSIGN_OR_RETURN(auto c, open_disk(host, child, co));
            VDKIT_TRY(DiskAccess::state(*c).images.back()->set_parent(relative_hint(child, to), format, &moved));
            return c->close();
        }();
        if (st)
            result.relinked.push_back(child);
        else {
            failed.push_back(child);
            if (first.is_ok()) first = st;
        }
    }
    if (!failed.empty())
        return first.with_context(from_in + " was moved to " + to_in +
                                  ", but these children still name the old path (" + joined(failed) +
                                  "); fix them with 'vdkit rebase -u -b " + to_in + "'");
    return result;
}

Result<DeleteResult> Library::delete_image(const std::string &location_in, const DeleteOptions &options) const {
    const Host &host = *host_;
    const std::string location = absolute_location(location_in);
    VDKIT_ASSIGN_OR_RETURN(ChildSearch found, search_children(host, location, options.search_dirs, options.filters));
    std::vector<std::string> children;
    for (const auto &c : found.children)
        children.push_back(c.location);
    if (options.dry_run) {
        DeleteResult seen;
        seen.children = std::move(children);
        seen.searched = std::move(found.searched);
        return seen;
    }
    if (!children.empty() && !options.force)
        return Status(VDKIT_E_PERMISSION, location_in + " is the parent of " + joined(children) +
                                              "; deleting it would leave them unreadable (merge or commit them "
                                              "first, or force the delete). Searched: " +
                                              joined(found.searched));
    OpenOptions oo;
    oo.writable = true; // takes the lock: an image in use is not deleted
    oo.follow_parents = false;
    oo.filters = options.filters;
    VDKIT_ASSIGN_OR_RETURN(auto disk, open_named(host, location, oo, "deleting"));
    VDKIT_TRY(disk->close_and_delete());
    for (const auto &c : children)
        host.log(LogLevel::warning, c + " lost its parent " + location_in + " (deleted)");
    DeleteResult result;
    result.children = children;
    result.orphaned = std::move(children);
    result.searched = std::move(found.searched);
    return result;
}

} // namespace vdkit
