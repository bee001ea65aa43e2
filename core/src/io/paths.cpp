// The path policy (docs/design/paths.md): how paths named inside images
// (parents, extents) are resolved and which of them may be followed.
#include "io/paths.hpp"

#include "util/util.hpp"

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstring>
#include <filesystem>

namespace fs = std::filesystem;

namespace vdkit {

namespace {

// How far `p` lies from `dir` (both absolute and normal): 0 in dir or below
// it (any depth), k when it lies in the directory k levels up or at most k
// directories below that one (k <= max; for k = 1: `../x`, `../d/x`), -1
// further. The depth limit keeps the set of directories a child of a given
// parent can lie in finite and small (search_children in disk/manage.cpp searches it).
int distance(const fs::path &p, const fs::path &dir, int max) {
    fs::path ancestor = dir;
    for (int k = 0; k <= max; ++k) {
        fs::path rel = p.lexically_relative(ancestor);
        if (!rel.empty() && *rel.begin() != "..") {
            if (k == 0) return 0;
            return std::distance(rel.begin(), rel.end()) <= k + 1 ? k : -1;
        }
        if (!ancestor.has_relative_path()) return -1; // the root: nothing above
        ancestor = ancestor.parent_path();
    }
    return -1;
}

int worse(int a, int b) {
    return a < 0 || b < 0 ? -1 : std::max(a, b);
}

const char *file_type_name(fs::file_type t) {
    switch (t) {
    case fs::file_type::directory:
        return "a directory";
    case fs::file_type::block:
        return "a block device";
    case fs::file_type::character:
        return "a character device";
    case fs::file_type::fifo:
        return "a fifo";
    case fs::file_type::socket:
        return "a socket";
    default:
        return "not a regular file";
    }
}

// A path made absolute and normal, without a trailing separator: the
// directory part of `child.vdi` is empty, of `./child.vdi` is `.`, of
// `a/b/../x.vdi` is `a/b/..`; lexically_normal turns `/x/d/.` and
// `/x/d/e/..` into `/x/d/`, whose parent_path() is `/x/d` itself, not the
// directory above. Every spelling must give the same directory.
fs::path normal_path(const fs::path &p) {
    std::error_code ec;
    fs::path a = fs::absolute(p.empty() ? fs::path(".") : p, ec);
    if (ec) a = p;
    a = a.lexically_normal();
    while (a.has_relative_path() && !a.has_filename())
        a = a.parent_path();
    return a;
}

fs::path real_path(const fs::path &abs) {
    std::error_code ec;
    fs::path r = fs::weakly_canonical(abs, ec);
    if (ec) return abs;
    return normal_path(r);
}

// A modification id as its format shows it: a VMDK's is its 32-bit CID
// (the plugin stores it as 4 big-endian bytes and a 1 marker, see
// cid_to_uuid in plugins/formats/vmdk), printed as 8 hex digits.
std::string modification_text(std::string_view format, const uint8_t id[16]) {
    bool cid = format == "vmdk" && id[4] == 1;
    for (int i = 5; i < 16; ++i)
        cid = cid && id[i] == 0;
    if (!cid) return util::uuid_to_string(id);
    char buf[16];
    std::snprintf(buf, sizeof buf, "CID %02x%02x%02x%02x", id[0], id[1], id[2], id[3]);
    return buf;
}

// Names from other systems and qemu's pseudo-protocols, which an image's own
// paths never are (shared/reference/formats.md §8.1: CVE-2022-47951,
// CVE-2024-4467): what the name is, or nullptr for a plain path.
const char *foreign_path_form(const std::string &p) {
    if (p.size() >= 2 && p[0] == '\\' && p[1] == '\\') return "a Windows UNC path";
    if (p.size() >= 2 && std::isalpha(static_cast<unsigned char>(p[0])) && p[1] == ':') return "a Windows drive path";
    if (p[0] == '[' && p.find(']') != std::string::npos) return "a VMware datastore path ([datastore] ...)";
    const size_t colon = p.find(':');
    if (colon != std::string::npos && p.find('/') > colon) {
        static const char *const protocols[] = {"json",    "nbd",      "file",  "http",        "https",     "ftp",
                                                "ftps",    "ssh",      "sftp",  "iscsi",       "rbd",       "gluster",
                                                "nfs",     "sheepdog", "vvfat", "fat",         "blkdebug",  "blkverify",
                                                "null-co", "null-aio", "tftp",  "host_device", "host_cdrom"};
        const std::string scheme = p.substr(0, colon);
        for (const char *proto : protocols)
            if (util::iequals(scheme, proto)) return "a protocol name (qemu's '<protocol>:' syntax)";
    }
    return nullptr;
}

// scheme://authority, /path and ?query#fragment of a URL; path is "/" when
// the URL has none (nbd://host).
struct UrlParts {
    std::string prefix, path, suffix;
};
UrlParts split_url(const std::string &url) {
    const size_t sep = url.find("://");
    const size_t query = url.find_first_of("?#", sep + 3);
    const std::string head = url.substr(0, query);
    const std::string suffix = query == std::string::npos ? std::string() : url.substr(query);
    const size_t path = head.find('/', sep + 3);
    if (path == std::string::npos) return {head, "/", suffix};
    return {head.substr(0, path), head.substr(path), suffix};
}

bool under_system_tree(const fs::path &real) {
    for (const char *root : {"/proc", "/sys"}) {
        fs::path rel = real.lexically_relative(root);
        if (!rel.empty() && *rel.begin() != "..") return true;
    }
    return false;
}

// The part of a URL's query that locates its server rather than the object:
// a "+unix" scheme's query (nbd+unix:///export?socket=PATH, RFC 3986 form of
// the NBD URI specification) names the socket, so the image's siblings are
// reached through the same one. Other queries (a signed URL's parameters)
// belong to the image's own request and are dropped.
std::string server_query(const std::string &url) {
    const size_t sep = url.find("://");
    const std::string scheme = util::to_lower(url.substr(0, sep));
    if (scheme.size() < 5 || scheme.compare(scheme.size() - 5, 5, "+unix") != 0) return {};
    const size_t q = url.find('?', sep + 3);
    if (q == std::string::npos) return {};
    return url.substr(q, url.find('#', q) - q);
}

// resolve_named for an image reached by URL (http://, s3://, nbd://...): the
// name is joined onto the directory of the image's URL path (its query and
// fragment dropped: they belong to the image's own request) and judged by
// the same rule as local files, lexically (a server has no symbolic links
// vdkit could see): extents in the image's directory or below, parents also
// kParentLevels up (then `beyond`, verified like local ones). The joined
// URL is always on the image's own scheme and server, so a remote image
// never leads vdkit to a local file. Names holding '%', '?' or '#' (URL
// syntax that a server would decode into other paths, e.g. %2e%2e) are
// refused unless allowed.
Result<NamedPath> resolve_in_url(const std::string &image_location, const std::string &p, PathUse use,
                                 bool allow_unsafe) {
    const char *what = use == PathUse::parent ? "parent" : "file";
    const size_t authority = image_location.find("://") + 3;
    size_t path_at = image_location.find_first_of("/?#", authority);
    if (path_at == std::string::npos) path_at = image_location.size();
    const std::string prefix = image_location.substr(0, path_at); // scheme://authority
    std::string path = image_location.substr(path_at);
    path = path.substr(0, path.find_first_of("?#"));
    if (path.empty() || path[0] != '/') path = "/" + path;
    const fs::path dir = fs::path(path).parent_path();
    const fs::path cand = (p[0] == '/' ? fs::path(p) : dir / p).lexically_normal();
    NamedPath out{prefix + cand.generic_string() + server_query(image_location), false, false};
    if (allow_unsafe) return out;
    auto refuse = [&](const std::string &why) {
        return Status(VDKIT_E_PERMISSION, image_location + ": refers to '" + p + "' (" + out.location + ") as its " +
                                              what + ", which " + why + "; set allow_unsafe_paths to allow it");
    };
    if (p.find_first_of("%?#") != std::string::npos)
        return refuse("holds URL syntax ('%', '?' or '#'); an image's own paths are plain file names");
    const int levels = use == PathUse::parent ? kParentLevels : 0;
    // A climb above the server's root is clamped by lexically_normal (and by
    // servers); judge the name as written.
    const fs::path unclamped = (p[0] == '/' ? fs::path(p).relative_path() : dir.relative_path() / p).lexically_normal();
    const bool above_root = !unclamped.empty() && *unclamped.begin() == "..";
    const int zone = above_root ? -1 : distance(cand, dir, levels);
    if (zone < 0)
        return refuse(use == PathUse::parent
                          ? "lies neither in the image's directory (" + prefix + dir.generic_string() +
                                ") nor in the directory above it or a directory directly in that one; a parent must "
                                "lie in one of those"
                          : "lies outside the image's directory (" + prefix + dir.generic_string() +
                                "); an image's files must lie in its directory or below it");
    if (!cand.has_filename()) return refuse("names a directory, not a file");
    out.beyond = zone > 0;
    return out;
}

} // namespace

Result<NamedPath> resolve_named(const std::string &image_location, std::string_view path, PathUse use,
                                bool allow_unsafe) {
    std::string p(path);
    const char *what = use == PathUse::parent ? "parent" : "file";
    if (p.empty()) return Status(VDKIT_E_INVALID_ARGUMENT, image_location + ": names an empty path");
    if (p.find('\0') != std::string::npos)
        return Status(VDKIT_E_CORRUPT, image_location + ": names a path containing a NUL byte");
    const bool url = p.find("://") != std::string::npos;
    if (url) {
        if (!allow_unsafe)
            return Status(VDKIT_E_PERMISSION, image_location + ": refers to '" + p + "' as its " + what +
                                                  ", a URL; an image's own paths are never followed to URLs "
                                                  "(set allow_unsafe_paths to follow it)");
        return NamedPath{p, false};
    }
    if (const char *form = foreign_path_form(p); form && !allow_unsafe)
        return Status(VDKIT_E_PERMISSION, image_location + ": refers to '" + p + "' as its " + what + ", " + form +
                                              "; an image's own paths are plain file names relative to its directory "
                                              "(set allow_unsafe_paths to follow it)");
    if (image_location.find("://") != std::string::npos) return resolve_in_url(image_location, p, use, allow_unsafe);
    fs::path base_dir = fs::path(image_location).parent_path();
    if (base_dir.empty()) base_dir = ".";
    fs::path candidate = fs::path(p).is_absolute() ? fs::path(p) : base_dir / p;
    candidate = candidate.lexically_normal();
    if (allow_unsafe) return NamedPath{candidate.string(), false};

    const fs::path abs_dir = normal_path(base_dir);
    const fs::path abs_cand = normal_path(candidate);
    auto refuse = [&](const std::string &why) {
        return Status(VDKIT_E_PERMISSION, image_location + ": refers to '" + p + "' (" + abs_cand.string() +
                                              ") as its " + what + ", which " + why +
                                              "; set allow_unsafe_paths to allow it");
    };
    std::error_code ec;
    // Where the path really leads: symbolic links resolved, in the
    // directory and on the way.
    const fs::path real_dir = real_path(abs_dir);
    const fs::path real_cand = real_path(abs_cand);
    const int levels = use == PathUse::parent ? kParentLevels : 0;
    const int lexical = distance(abs_cand, abs_dir, levels);
    const int real = distance(real_cand, real_dir, levels);
    const int zone = worse(lexical, real);
    if (zone < 0) {
        std::string where = use == PathUse::parent ? "lies neither in the image's directory (" + abs_dir.string() +
                                                         ") nor in the directory above it or a directory directly in "
                                                         "that one; a parent must lie in one of those"
                                                   : "lies outside the image's directory (" + abs_dir.string() +
                                                         "); an image's files must lie in its directory or below it";
        if (lexical >= 0) where = "leads through a symbolic link to " + real_cand.string() + ", which " + where;
        return refuse(where);
    }
    if (under_system_tree(real_cand)) return refuse("lies in " + real_cand.string() + ", a system tree");
    fs::file_status status = fs::status(real_cand, ec);
    if (!ec && fs::exists(status) && !fs::is_regular_file(status))
        return refuse("is " + std::string(file_type_name(status.type())) + " (" + real_cand.string() +
                      "), not an image file");
    return NamedPath{candidate.string(), zone > 0, zone > 0 && lexical == 0};
}

Result<std::string> resolve_sibling(const std::string &image_location, std::string_view path, bool allow_unsafe) {
    VDKIT_ASSIGN_OR_RETURN(NamedPath named, resolve_named(image_location, path, PathUse::extent, allow_unsafe));
    return named.location;
}

Status verify_parent(const std::string &child_location, std::string_view hint, const NamedPath &where,
                     std::string_view child_format, const uint8_t recorded_uuid[16],
                     const uint8_t recorded_modification[16], std::string_view parent_format,
                     const vdkit_image_info &parent) {
    if (!where.beyond) return Status::ok();
    const bool uuids = !util::uuid_is_nil(recorded_uuid) && !util::uuid_is_nil(parent.uuid);
    if (uuids && std::memcmp(recorded_uuid, parent.uuid, 16) == 0) return Status::ok();
    const bool modification = !uuids && child_format == parent_format && !util::uuid_is_nil(recorded_modification) &&
                              !util::uuid_is_nil(parent.modification_uuid);
    if (modification && std::memcmp(recorded_modification, parent.modification_uuid, 16) == 0) return Status::ok();
    std::string why;
    if (uuids)
        why = "the image there is " + util::uuid_to_string(parent.uuid) + ", not the parent " +
              util::uuid_to_string(recorded_uuid) + " it records";
    else if (modification)
        why = "the image there is not the one it records (modification id " +
              modification_text(parent_format, parent.modification_uuid) + ", recorded " +
              modification_text(parent_format, recorded_modification) + ")";
    else if (util::uuid_is_nil(parent.uuid) && util::uuid_is_nil(parent.modification_uuid))
        why = "the file there (read as '" + std::string(parent_format) +
              "') has no identity to verify it by — only an image of a known format can be a parent there";
    else
        why = "it records no identity of its parent to verify the image there by";
    return Status(
        VDKIT_E_PERMISSION,
        child_location + ": its parent '" + std::string(hint) + "' (" +
            (where.location.find("://") != std::string::npos ? where.location : normal_path(where.location).string()) +
            (where.via_link ? ") leads through a symbolic link" : ") lies") + " outside its directory, and " + why +
            "; set allow_unsafe_paths to allow it");
}

Status check_link(const std::string &child_location, std::string_view hint, std::string_view child_format,
                  std::string_view parent_format, const vdkit_image_info &parent, bool allow_unsafe) {
    VDKIT_ASSIGN_OR_RETURN(NamedPath where, resolve_named(child_location, hint, PathUse::parent, allow_unsafe));
    return verify_parent(child_location, hint, where, child_format, parent.uuid, parent.modification_uuid,
                         parent_format, parent);
}

std::string relative_hint(const std::string &child, const std::string &parent) {
    const size_t cs = child.find("://"), ps = parent.find("://");
    if (cs != std::string::npos || ps != std::string::npos) {
        // URLs: relative when joining it onto the child's URL (as
        // resolve_named does: same scheme and server, only a server query
        // kept) gives the parent back exactly, else the whole URL.
        if (cs == std::string::npos || ps == std::string::npos) return parent;
        const UrlParts c = split_url(child), pp = split_url(parent);
        if (c.prefix != pp.prefix) return parent;
        const fs::path cdir = fs::path(c.path).lexically_normal().parent_path();
        const std::string rel = fs::path(pp.path).lexically_normal().lexically_relative(cdir).string();
        if (rel.empty()) return parent;
        auto back = resolve_in_url(child, rel, PathUse::parent, true);
        return back.is_ok() && back->location == parent ? rel : parent;
    }
    std::error_code ec;
    fs::path cdir = fs::absolute(fs::path(child), ec).lexically_normal().parent_path();
    fs::path p = fs::absolute(fs::path(parent), ec).lexically_normal();
    fs::path rel = p.lexically_relative(cdir);
    return rel.empty() ? p.string() : rel.string();
}

} // namespace vdkit
