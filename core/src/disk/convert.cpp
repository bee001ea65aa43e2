#include "convert.hpp"

#include "commands.hpp"
#include "signals.hpp"
#include "util/util.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <iostream>
#include <system_error>
#include <utility>

#include <map>
#include <mutex>
#include <set>
#include <thread>

#include <dirent.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <vector>

namespace fs = std::filesystem;

namespace vdkit::cli {

std::filesystem::path staging_dir_for(const fs::path &target) {
    fs::path dir = target.parent_path();
    if (dir.empty()) dir = ".";
    return dir / ("." + target.filename().string() + ".vdkit-partial");
}

const char *to_string(StagingDir::State state) {
    switch (state) {
    case StagingDir::State::stale: return "stale";
    case StagingDir::State::in_use: return "in-use";
    case StagingDir::State::unknown: return "unknown";
    case StagingDir::State::removed: return "removed";
    case StagingDir::State::mismatched: return "mismatched";
    case StagingDir::State::other_host: return "other-host";
    case StagingDir::State::foreign: break;
    }
    return "foreign";
}

std::string file_type_name(unsigned m) {
    if (S_ISREG(m)) return "a regular file";
    if (S_ISBLK(m)) return "a block device";
    if (S_ISCHR(m)) return "a character device";
    if (S_ISFIFO(m)) return "a fifo (named pipe)";
    if (S_ISDIR(m)) return "a directory";
    if (S_ISSOCK(m)) return "a socket";
    if (S_ISLNK(m)) return "a symlink";
    return "a special file";
}

namespace {

constexpr const char *kMarkerMagic = "vdkit staging directory";

bool is_url(const std::string &p) { return p.find("://") != std::string::npos; }

std::string errno_text(int err) { return std::strerror(err); }

std::string type_name(mode_t m) { return file_type_name(m); }

struct Fd {
    int fd = -1;
    Fd() = default;
    explicit Fd(int f) : fd(f) {}
    Fd(Fd &&o) noexcept : fd(std::exchange(o.fd, -1)) {}
    Fd &operator=(Fd &&o) noexcept {
        if (this != &o) {
            reset();
            fd = std::exchange(o.fd, -1);
        }
        return *this;
    }
    ~Fd() { reset(); }
    void reset() {
        if (fd >= 0) ::close(fd);
        fd = -1;
    }
};

enum class Lock { taken, held_elsewhere, unsupported };

// The whole marker file, locked (F_WRLCK) through an open file description
// lock: it belongs to this open file, not to the process, so threads and
// other opens of the file (in this process too) do not share or release it.
Lock try_lock(int fd) {
    struct flock l {};
    l.l_type = F_WRLCK;
    l.l_whence = SEEK_SET;
    if (fcntl(fd, F_OFD_SETLK, &l) == 0) return Lock::taken;
    return errno == EAGAIN || errno == EACCES ? Lock::held_elsewhere : Lock::unsupported;
}

// Whether a lock is held on the file, for a read-only look.
Lock lock_held(int fd) {
    struct flock l {};
    l.l_type = F_WRLCK;
    l.l_whence = SEEK_SET;
    if (fcntl(fd, F_OFD_GETLK, &l) != 0) return Lock::unsupported;
    return l.l_type != F_UNLCK ? Lock::held_elsewhere : Lock::taken;
}

StagingDir::State state_of(Lock l) {
    switch (l) {
    case Lock::taken: return StagingDir::State::stale;
    case Lock::held_elsewhere: return StagingDir::State::in_use;
    case Lock::unsupported: break;
    }
    return StagingDir::State::unknown;
}

// Bytes allocated on disk under `p` (not following symlinks).
uint64_t allocated_under(const fs::path &p) {
    uint64_t total = 0;
    std::error_code ec;
    for (fs::recursive_directory_iterator it(p, fs::directory_options::skip_permission_denied, ec), end;
         !ec && it != end; it.increment(ec)) {
        struct stat st {};
        if (::lstat(it->path().c_str(), &st) == 0) total += static_cast<uint64_t>(st.st_blocks) * 512u;
    }
    return total;
}

std::string this_host() {
    char host[256] = "";
    ::gethostname(host, sizeof host - 1);
    return host;
}

// Whether the marker's target is the one this directory stages:
// ".NAME.vdkit-partial" (or ".NAME.vdkit-partial.XXXXXX" while it is made)
// in DIR stages DIR/NAME.
bool marker_matches(const StagingDir &d) {
    std::string name = d.path.filename().string();
    const auto at = name.rfind(".vdkit-partial");
    if (name.size() < 2 || name[0] != '.' || at == std::string::npos || at < 1) return false;
    const std::string rest = name.substr(at + std::strlen(".vdkit-partial"));
    if (!rest.empty() && (rest.size() != 7 || rest[0] != '.')) return false;
    name = name.substr(1, at - 1);
    const fs::path target = d.target;
    if (target.filename() != name) return false;
    fs::path dir = d.path.parent_path();
    if (dir.empty()) dir = ".";
    std::error_code ec;
    return fs::equivalent(target.parent_path().empty() ? fs::path(".") : target.parent_path(), dir, ec) && !ec;
}

// Whether the directory open as `fd` is the root of a mount (a bind mount
// of the same file system keeps st_dev, so st_dev alone cannot tell).
bool is_mount_root(int fd) {
    struct statx stx {};
    if (::statx(fd, "", AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW, STATX_BASIC_STATS, &stx) != 0) return false;
    return (stx.stx_attributes_mask & STATX_ATTR_MOUNT_ROOT) && (stx.stx_attributes & STATX_ATTR_MOUNT_ROOT);
}

// Remove directory `name` in `parent` and all it holds, never following a
// symlink (they are removed, not what they name) and never crossing into
// another mount (throws CliError naming it instead).
// With `dry`, only look (for a mount point) and remove nothing.
void remove_tree_at(int parent, const std::string &name, dev_t dev, const std::string &shown, bool dry) {
    const int fd = ::openat(parent, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT) return;
        throw CliError(shown + ": cannot open to remove: " + errno_text(errno));
    }
    struct stat st {};
    if (::fstat(fd, &st) != 0 || st.st_dev != dev || is_mount_root(fd)) {
        ::close(fd);
        throw CliError(shown + " is a mount point; vdkit never removes anything across one (unmount it first)");
    }
    DIR *dir = ::fdopendir(fd);
    if (!dir) {
        ::close(fd);
        throw CliError(shown + ": cannot list to remove: " + errno_text(errno));
    }
    std::vector<std::string> names;
    while (const dirent *e = ::readdir(dir))
        if (std::strcmp(e->d_name, ".") != 0 && std::strcmp(e->d_name, "..") != 0) names.emplace_back(e->d_name);
    try {
        for (const auto &n : names) {
            struct stat est {};
            if (::fstatat(::dirfd(dir), n.c_str(), &est, AT_SYMLINK_NOFOLLOW) != 0) {
                if (errno == ENOENT) continue;
                throw CliError(shown + "/" + n + ": cannot look at it to remove: " + errno_text(errno));
            }
            if (S_ISDIR(est.st_mode)) remove_tree_at(::dirfd(dir), n, dev, shown + "/" + n, dry);
            else if (!dry && ::unlinkat(::dirfd(dir), n.c_str(), 0) != 0 && errno != ENOENT)
                throw CliError(shown + "/" + n + ": cannot remove: " + errno_text(errno));
        }
    } catch (...) {
        ::closedir(dir);
        throw;
    }
    ::closedir(dir);
    if (!dry && ::unlinkat(parent, name.c_str(), AT_REMOVEDIR) != 0 && errno != ENOENT)
        throw CliError(shown + ": cannot remove: " + errno_text(errno));
}

// Remove the staging directory `path` (a real directory on its parent's
// file system, not a mount point nor a symlink) with what it holds.
void remove_tree(const fs::path &path) {
    fs::path parent = path.parent_path();
    if (parent.empty()) parent = ".";
    const int pfd = ::open(parent.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (pfd < 0) throw CliError(parent.string() + ": cannot open: " + errno_text(errno));
    struct stat pst {};
    if (::fstat(pfd, &pst) != 0) {
        const int err = errno;
        ::close(pfd);
        throw CliError(parent.string() + ": cannot look at it: " + errno_text(err));
    }
    try {
        // First only look, so that a mount point found deep inside leaves
        // the directory whole (its marker too) rather than half removed.
        remove_tree_at(pfd, path.filename().string(), pst.st_dev, path.string(), true);
        remove_tree_at(pfd, path.filename().string(), pst.st_dev, path.string(), false);
    } catch (...) {
        ::close(pfd);
        throw;
    }
    ::close(pfd);
}

// Whether process `pid` (on this host) still runs.
bool pid_alive(long pid) { return pid > 0 && (::kill(static_cast<pid_t>(pid), 0) == 0 || errno == EPERM); }

// Read the marker of staging directory `d.path`, fill in what it says and
// whether a running convert holds it. With `lock_it`, the returned fd holds
// the lock when the state is stale.
Fd inspect(StagingDir &d, bool lock_it) {
    d.state = StagingDir::State::foreign;
    struct stat st {};
    if (::lstat(d.path.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) return Fd();
    const fs::path marker = d.path / kStagingMarker;
    Fd fd(::open(marker.c_str(), (lock_it ? O_RDWR : O_RDONLY) | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK));
    if (fd.fd < 0 && !lock_it) return Fd();
    if (fd.fd < 0 && lock_it) {
        fd = Fd(::open(marker.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK));
        if (fd.fd < 0) return Fd();
        lock_it = false; // readable but not writable here: report only
    }
    if (fstat(fd.fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size > 65536) return Fd();
    std::string text(static_cast<size_t>(st.st_size), '\0');
    if (::pread(fd.fd, text.data(), text.size(), 0) != static_cast<ssize_t>(text.size())) return Fd();
    if (text.rfind(kMarkerMagic, 0) != 0) return Fd();
    auto field = [&](const std::string &key) {
        const auto at = text.find("\n" + key + ": ");
        if (at == std::string::npos) return std::string();
        const auto from = at + key.size() + 3;
        return text.substr(from, text.find('\n', from) - from);
    };
    d.pid = std::strtol(field("pid").c_str(), nullptr, 10);
    d.target = field("target");
    d.started = field("started");
    d.host = field("host");
    d.bytes = allocated_under(d.path);
    if (d.pid <= 0 || d.target.empty() || d.host.empty()) return Fd(); // not a marker vdkit wrote: foreign
    // A marker copied into another directory (or naming another target)
    // does not make this directory vdkit's.
    if (!marker_matches(d)) {
        d.state = StagingDir::State::mismatched;
        return Fd();
    }
    // Locks need not reach across hosts (NFS, cluster file systems): a
    // marker another host wrote is never judged from here.
    if (d.host != this_host()) {
        d.state = StagingDir::State::other_host;
        return Fd();
    }
    d.state = state_of(lock_it ? try_lock(fd.fd) : lock_held(fd.fd));
    if (!lock_it || d.state != StagingDir::State::stale) fd.reset();
    return fd;
}

std::string now_utc() {
    char buf[32];
    const std::time_t t = std::time(nullptr);
    struct tm tm {};
    gmtime_r(&t, &tm);
    std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return buf;
}

std::string mib(uint64_t bytes) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.1f MiB", static_cast<double>(bytes) / (1024.0 * 1024.0));
    return buf;
}

// rename(2) of a directory that never replaces an existing one: 0 or errno.
int rename_dir_noreplace(const fs::path &from, const fs::path &to) {
    if (renameat2(AT_FDCWD, from.c_str(), AT_FDCWD, to.c_str(), RENAME_NOREPLACE) == 0) return 0;
    if (errno != EINVAL) return errno;
    // No RENAME_NOREPLACE here (NFS): rename(2) still refuses a non-empty
    // directory, and the target was checked to be absent just before.
    return ::rename(from.c_str(), to.c_str()) == 0 ? 0 : errno;
}

// Files (regular files, block devices) by st_dev/st_ino, with the path
// they were opened as.
using OpenFiles = std::map<std::pair<dev_t, ino_t>, std::string>;

// The files (regular files, block devices) this process has open now, by
// descriptor (from /proc/self/fd).
struct OpenFd {
    std::pair<dev_t, ino_t> id;
    std::string path;
};
std::map<int, OpenFd> open_fds() {
    std::map<int, OpenFd> out;
    DIR *dir = ::opendir("/proc/self/fd");
    if (!dir) return out;
    while (const dirent *e = ::readdir(dir)) {
        char *end = nullptr;
        const long fd = std::strtol(e->d_name, &end, 10);
        if (!end || *end || end == e->d_name || fd == ::dirfd(dir)) continue;
        struct stat st {};
        if (::fstat(static_cast<int>(fd), &st) != 0 || !(S_ISREG(st.st_mode) || S_ISBLK(st.st_mode))) continue;
        std::error_code ec;
        const fs::path link = fs::read_symlink(fs::path("/proc/self/fd") / e->d_name, ec);
        out[static_cast<int>(fd)] = {{st.st_dev, st.st_ino}, ec ? std::string("fd ") + e->d_name : link.string()};
    }
    ::closedir(dir);
    return out;
}

// Converts that learn which files an open made by comparing open_fds()
// before and after it take this, so that batch jobs running at once do not
// see each other's opens (other opens in the process stay possible: a hit
// is confirmed by a second look, refuse_source_files).
std::mutex g_fd_window;

// The files behind the descriptors opened since `before` was taken (a
// descriptor number reused for another file counts as new).
OpenFiles opened_since(const std::map<int, OpenFd> &before) {
    OpenFiles out;
    for (const auto &[fd, f] : open_fds()) {
        auto was = before.find(fd);
        if (was == before.end() || was->second.id != f.id) out.emplace(f.id, f.path);
    }
    return out;
}

// The files of the open source chain: every image and every extent file it
// opened (what open_fds() gained while it was opened), and each image's
// location.
OpenFiles source_chain_files(const Disk &src, const std::map<int, OpenFd> &before) {
    OpenFiles out = opened_since(before);
    for (size_t i = 0; i < src.image_count(); ++i) {
        auto info = src.image_info(i);
        if (!info) continue;
        struct stat st {};
        if (::stat(info->location.c_str(), &st) == 0) out.emplace(std::make_pair(st.st_dev, st.st_ino), info->location);
    }
    return out;
}

// Refuse to replace a file another process holds open as an image (QEMU or
// vdkit: the QEMU-compatible image locks say): the VM would go on writing
// into the replaced file, and all it writes would be lost. Opening it as raw
// for writing takes the writer's lock, which conflicts with any holder;
// nothing is written. Only regular files are checked (the rest is refused
// before this, or is a symlink, which is replaced itself).
void refuse_in_use(Library &lib, const fs::path &file) {
    struct stat st {};
    if (::lstat(file.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) return;
    OpenOptions probe;
    probe.format = "raw";
    probe.writable = true;
    auto held = lib.open(file.string(), probe);
    if (!held && held.status().code() == VDKIT_E_BUSY)
        throw CliError(held.status().message() + " (convert --overwrite never replaces an image in use)");
}

// Refuse a target that is a file of the source's chain, or an existing
// image one of whose files is: writing into it (-n) or replacing it would
// destroy what the convert reads. Returns the existing target image's files.
// With `in_place` (-n) the target is opened as `format`, as it will be
// written; else the image being replaced is probed first (it may be of
// another format than the new one).
OpenFiles refuse_source_files(Library &lib, const std::string &target, const std::string &format, bool in_place,
                              const OpenFiles &chain) {
    struct stat st {};
    if (::stat(target.c_str(), &st) != 0) return {};
    if (auto hit = chain.find({st.st_dev, st.st_ino}); hit != chain.end())
        throw CliError(target + " is part of the source's chain (" + hit->second +
                           "); convert never writes into or replaces an image it reads from",
                       kExitUsage);
    if (!S_ISREG(st.st_mode)) return {};
    // The files opening the image opens: looked at twice when one of them is
    // in the chain, so that a file another thread opened meanwhile (a batch
    // job reading the same source) is not taken for one of them.
    auto files_of_target = [&]() -> std::optional<OpenFiles> {
        std::lock_guard<std::mutex> window(g_fd_window);
        const auto before = open_fds();
        OpenOptions o;
        o.format = in_place ? format : std::string();
        o.lock = false;
        o.follow_parents = false;
        auto old = lib.open(target, o);
        if (!old && !format.empty()) {
            o.format = in_place ? std::string() : format;
            old = lib.open(target, o);
        }
        if (!old) return std::nullopt; // not an image: only the file itself
        OpenFiles mine = opened_since(before);
        (*old)->close().ignore();
        return mine;
    };
    auto first = files_of_target();
    if (!first) return {};
    OpenFiles mine = *first;
    if (std::any_of(mine.begin(), mine.end(), [&](const auto &f) { return chain.count(f.first) > 0; })) {
        auto again = files_of_target();
        OpenFiles both;
        if (again)
            for (const auto &f : mine)
                if (again->count(f.first)) both.insert(f);
        mine = both;
    }
    for (const auto &f : mine)
        if (auto hit = chain.find(f.first); hit != chain.end())
            throw CliError(target + " uses " + f.second + ", a file of the source's chain (" + hit->second +
                               "); convert never writes into or replaces an image it reads from",
                           kExitUsage);
    return mine;
}

// The staging directory; removed with whatever is in it unless published.
// It appears under its name with its marker already written and locked
// (made under a temporary name, then renamed), so a visible staging
// directory without a held marker is never one a running convert uses.
class Staging {
public:
    Staging(fs::path target, bool overwrite, std::vector<FilterSpec> filters)
        : target_(std::move(target)), overwrite_(overwrite), filters_(std::move(filters)) {
        dir_ = staging_dir_for(target_);
        remove_leftover();
        std::string tmpl = dir_.string() + ".XXXXXX";
        if (!::mkdtemp(tmpl.data()))
            throw CliError(dir_.parent_path().string() + ": cannot create the staging directory for " +
                           target_.string() + ": " + errno_text(errno));
        const fs::path tmp = tmpl;
        try {
            const fs::path marker = tmp / kStagingMarker;
            marker_ = Fd(::open(marker.c_str(), O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644));
            if (marker_.fd < 0) throw CliError(marker.string() + ": cannot create: " + errno_text(errno));
            // Where the file system cannot lock, the convert still runs;
            // cleanup then cannot tell whether it does and leaves it alone.
            if (try_lock(marker_.fd) == Lock::held_elsewhere)
                throw CliError(marker.string() + ": locked by another process as soon as it was made");
            const std::string host = this_host();
            std::error_code ec;
            const fs::path abs = fs::absolute(target_, ec);
            const std::string text = std::string(kMarkerMagic) + " (vdkit convert builds " + target_.filename().string() +
                                     " here; `vdkit cleanup` removes it once no vdkit process holds this file)\n" +
                                     "pid: " + std::to_string(::getpid()) + "\nhost: " + host +
                                     "\ntarget: " + (ec ? target_ : abs).string() + "\nstarted: " + now_utc() + "\n";
            if (::pwrite(marker_.fd, text.data(), text.size(), 0) != static_cast<ssize_t>(text.size()))
                throw CliError(marker.string() + ": cannot write: " + errno_text(errno));
            if (const int err = rename_dir_noreplace(tmp, dir_); err != 0) {
                if (err == EEXIST || err == ENOTEMPTY)
                    throw CliError(target_.string() + ": another vdkit convert into it started at the same time (" +
                                   dir_.string() + " appeared)");
                throw CliError("cannot rename " + tmp.string() + " to " + dir_.string() + ": " + errno_text(err));
            }
        } catch (...) {
            try {
                remove_tree(tmp);
            } catch (const CliError &) {
            }
            throw;
        }
    }
    ~Staging() {
        try {
            remove_tree(dir_); // the marker goes with it, still locked
        } catch (const CliError &e) {
            std::cerr << "vdkit: " << e.what() << "\n";
        }
    }
    Staging(const Staging &) = delete;
    Staging &operator=(const Staging &) = delete;

    fs::path main() const { return dir_ / target_.filename(); }

    // Move the finished image's files beside the final name, each renamed
    // over the file of that name it replaces (atomically), the main file
    // (a VMDK's descriptor) last: at every moment the old main file or the
    // new one is complete. Nothing else is ever removed: files of the old
    // image under other names (its extents) are left where they are. A
    // replaced file's mode (and, as root, owner) carries over to the new
    // one. Only regular files (or symlinks) are ever replaced: anything else
    // that appeared under one of the names meanwhile stops the publish; so
    // does a name that is a file of the source's chain.
    void publish(Library &lib, const OpenFiles &source_files) {
        std::vector<fs::path> others;
        for (const auto &entry : fs::directory_iterator(dir_)) {
            const fs::path name = entry.path().filename();
            if (name != target_.filename() && name != kStagingMarker) others.push_back(entry.path());
        }
        std::sort(others.begin(), others.end());
        const fs::path final_dir = target_.parent_path().empty() ? fs::path(".") : target_.parent_path();
        std::error_code ec;
        std::vector<std::pair<fs::path, fs::path>> moves;
        for (const auto &p : others) moves.emplace_back(p, final_dir / p.filename());
        moves.emplace_back(main(), target_);
        for (const auto &[from, to] : moves) {
            refuse_special(to);
            struct stat st {};
            if (::stat(to.c_str(), &st) != 0) continue;
            if (auto hit = source_files.find({st.st_dev, st.st_ino}); hit != source_files.end())
                throw CliError(to.string() + " is " + hit->second + ", a file of the source's chain; convert never "
                                             "replaces a file it reads from");
            if (overwrite_) refuse_in_use(lib, to);
            if (!overwrite_) {
                if (to == target_)
                    throw CliError(target_.string() + ": appeared while converting; pass --overwrite to replace it");
                throw CliError(to.string() + ": already exists (a file of the new image would replace it); "
                                             "pass --overwrite to replace it");
            }
        }
        for (const auto &[from, to] : moves) {
            keep_mode(from, to);
            rename(from, to);
        }
        sync_directory(final_dir);
    }

private:
    // A leftover staging directory of this target is removed only when it
    // is vdkit's (a valid marker naming this target, written on this host)
    // and no process holds its marker (a convert that was killed). Anything
    // else under the name is refused by name: it may be the user's.
    void remove_leftover() {
        for (int attempt = 0;; ++attempt) {
            struct stat st {};
            if (::lstat(dir_.c_str(), &st) != 0) {
                if (errno == ENOENT) return;
                throw CliError(dir_.string() + ": cannot look at the staging directory: " + errno_text(errno));
            }
            const std::string move_away = "; convert stages the new image under this name: move it away";
            if (!S_ISDIR(st.st_mode))
                throw CliError(dir_.string() + " is " + type_name(st.st_mode) + ", not a vdkit staging directory" +
                               move_away);
            StagingDir d;
            d.path = dir_;
            Fd lock = inspect(d, true);
            switch (d.state) {
            case StagingDir::State::stale:
            case StagingDir::State::removed: remove_tree(dir_); return;
            case StagingDir::State::foreign:
                throw CliError(dir_.string() + " is not a vdkit staging directory (it holds no valid vdkit marker)" +
                               move_away);
            case StagingDir::State::mismatched:
                throw CliError(dir_.string() + " is not this target's staging directory (its vdkit marker names " +
                               d.target + ")" + move_away);
            case StagingDir::State::other_host:
                throw CliError(dir_.string() + " was made by a convert on host " + d.host + " (pid " +
                               std::to_string(d.pid) + "); whether it still runs cannot be told from here: remove "
                               "the directory once it has stopped");
            case StagingDir::State::unknown:
                // No locks on this file system: the pid (on this host) tells.
                if (!pid_alive(d.pid)) {
                    remove_tree(dir_);
                    return;
                }
                throw CliError(target_.string() + ": a vdkit process (pid " + std::to_string(d.pid) +
                               ") may be converting into it now (it made " + dir_.string() +
                               ", and its file system cannot lock files)");
            case StagingDir::State::in_use:
                if (pid_alive(d.pid))
                    throw CliError(target_.string() + ": another vdkit process (pid " + std::to_string(d.pid) +
                                   ") is converting into it now (it holds " + dir_.string() + ")");
                // Held, but not by the convert that made it: `vdkit cleanup
                // --remove` is removing it. Give that a moment.
                if (attempt < 50) {
                    std::this_thread::sleep_for(std::chrono::milliseconds(100));
                    continue;
                }
                throw CliError(dir_.string() + " is locked by another process, not by the convert that made it (pid " +
                               std::to_string(d.pid) + " no longer runs): a `vdkit cleanup --remove` may be removing "
                               "it; try again");
            }
            return;
        }
    }
    // A new file takes the mode (and, as root, owner and group) of the
    // regular file it replaces.
    static void keep_mode(const fs::path &fresh, const fs::path &old) {
        struct stat st {};
        if (::stat(old.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) return;
        if (::geteuid() == 0 && ::lchown(fresh.c_str(), st.st_uid, st.st_gid) != 0)
            throw CliError(fresh.string() + ": cannot give it the owner of " + old.string() + ": " + errno_text(errno));
        if (::chmod(fresh.c_str(), st.st_mode & 07777) != 0)
            throw CliError(fresh.string() + ": cannot give it the mode of " + old.string() + ": " + errno_text(errno));
    }
    static void refuse_special(const fs::path &p) {
        struct stat st {};
        if (::lstat(p.c_str(), &st) == 0 && !S_ISREG(st.st_mode) && !S_ISLNK(st.st_mode))
            throw CliError(p.string() + " is " + type_name(st.st_mode) +
                           " (it appeared while converting); convert never replaces one");
    }
    // Make the renames durable: the directory entries are only on disk once
    // the directory itself is flushed (the files' data was flushed at close).
    static void sync_directory(const fs::path &dir) {
        const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0) throw CliError(dir.string() + ": cannot open the directory to flush it: " + std::strerror(errno));
        const int rc = ::fsync(fd);
        const int err = errno;
        ::close(fd);
        if (rc != 0) throw CliError(dir.string() + ": cannot flush the directory: " + std::strerror(err));
    }
    static void rename(const fs::path &from, const fs::path &to) {
        std::error_code ec;
        fs::rename(from, to, ec);
        if (ec) throw CliError("cannot move " + from.string() + " to " + to.string() + ": " + ec.message());
    }
    fs::path target_, dir_;
    bool overwrite_;
    std::vector<FilterSpec> filters_;
    Fd marker_;
};

// Usage errors: options that cannot go together.
void check_spec(const ConvertSpec &spec) {
    auto usage = [](const std::string &m) { throw CliError(m, kExitUsage); };
    if (spec.target_is_zero && !spec.existing_target)
        usage("--target-is-zero needs -n (a target convert creates is always zero)");
    if (!spec.existing_target) return;
    const std::string why = " only applies when convert creates the target; with -n it is written in place";
    if (!spec.target_options.empty()) usage("-o (target format options)" + why);
    if (spec.preallocate) usage("--preallocate" + why + " (it is as allocated as it already is)");
    if (!spec.backing.empty()) usage("-B" + why);
    if (spec.keep_uuid) usage("--keep-uuid" + why + " (it keeps its own UUID)");
    if (spec.overwrite) usage("--overwrite does not apply with -n: the target is written in place, never replaced");
}

// The kind of thing spec.target names (following a symlink), checked
// against what the convert will do with it; returns the path to write: for
// a new image through a symlink, the file the link points to (the link is
// kept). Throws CliError naming the path and what it is.
std::string check_target(const ConvertSpec &spec) {
    const std::string &t = spec.target;
    if (t.empty()) throw CliError("the target is an empty name; name the image file to create", kExitUsage);
    if (t.back() == '/')
        throw CliError(t + ": the target ends in '/', naming a directory; name the image file to create (e.g. " + t +
                           "disk.img)",
                       kExitUsage);
    struct stat lst {};
    if (::lstat(t.c_str(), &lst) != 0) {
        const int err = errno;
        if (err != ENOENT && err != ENOTDIR) throw CliError(t + ": cannot look at the target: " + errno_text(err));
        if (spec.existing_target)
            throw CliError(t + ": does not exist; -n writes into an existing target (a block device, a preallocated "
                               "file, an image); without -n convert creates it");
        const fs::path dir = fs::path(t).parent_path();
        struct stat dst {};
        if (!dir.empty() && ::stat(dir.c_str(), &dst) != 0)
            throw CliError(t + ": the directory " + dir.string() + " does not exist (" + errno_text(errno) +
                           "); convert creates the image file, not its directory");
        if (!dir.empty() && !S_ISDIR(dst.st_mode))
            throw CliError(t + ": " + dir.string() + " is " + type_name(dst.st_mode) + ", not a directory");
        return t;
    }
    const bool link = S_ISLNK(lst.st_mode);
    struct stat st = lst;
    std::string what = t;
    if (link) {
        std::error_code ec;
        const fs::path to = fs::read_symlink(t, ec);
        if (::stat(t.c_str(), &st) != 0)
            throw CliError(t + " is a symlink to " + to.string() + ", which cannot be reached (" + errno_text(errno) +
                           "); name the file itself");
        what = t + " (a symlink to " + fs::canonical(t, ec).string() + ")";
    }
    if (spec.existing_target) {
        if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode))
            throw CliError(what + " is " + type_name(st.st_mode) + "; -n writes into a regular file or a block device");
        if (S_ISBLK(st.st_mode)) {
            // O_EXCL on a block device fails while it is mounted or claimed
            // (device-mapper, RAID, another exclusive opener): never write under a file system.
            const int fd = ::open(t.c_str(), O_RDONLY | O_EXCL | O_CLOEXEC);
            if (fd < 0 && errno == EBUSY)
                throw CliError(what + " is in use (mounted, or held by device-mapper, RAID or another program); "
                                      "-n does not write into it");
            if (fd >= 0) ::close(fd);
        }
        // A read-only device (losetup -r, a write-protected disk) or file:
        // refused before anything is opened or written.
        const int wfd = ::open(t.c_str(), O_WRONLY | O_CLOEXEC);
        if (wfd < 0)
            throw CliError(what + " cannot be opened for writing (" + errno_text(errno) +
                           "); -n writes into it in place (nothing was written)");
        int ro = 0;
        const bool read_only = S_ISBLK(st.st_mode) && ::ioctl(wfd, BLKROGET, &ro) == 0 && ro;
        ::close(wfd);
        if (read_only)
            throw CliError(what + " is a read-only block device; -n writes into it in place (nothing was written)");
        return t;
    }
    if (!S_ISREG(st.st_mode)) {
        std::string hint;
        if (S_ISBLK(st.st_mode))
            hint = "; pass -n to write into it (it must hold at least the source's virtual size)";
        else if (S_ISDIR(st.st_mode))
            hint = "; name the image file to create in it";
        throw CliError(what + " is " + type_name(st.st_mode) + "; convert never replaces one, even with --overwrite" +
                       hint);
    }
    if (!spec.overwrite) throw CliError(t + ": already exists; pass --overwrite to replace it");
    if (!link) return t;
    std::error_code ec;
    const fs::path real = fs::canonical(t, ec);
    if (ec) throw CliError(t + ": cannot resolve the symlink: " + ec.message());
    return real.string();
}

// convert -n into an existing regular file: one that is an image of another
// format than -O (by the probe, or by a foreign container's signature) is
// refused naming both; a raw or unrecognised file (a preallocated one) and a
// device are written into as they are. Empty when the write may go ahead.
std::string existing_format_problem(const Library &lib, const std::string &target, const std::string &format) {
    struct stat st {};
    if (::stat(target.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) return {};
    std::string is;
    if (auto probed = lib.probe(target); probed) {
        if (util::iequals(*probed, format) || util::iequals(*probed, "raw")) return {};
        is = "a " + *probed + " image (its probe)";
    } else {
        const auto found = container_of_file(target);
        if (!found) return {};
        const containers::Container &c = *found->container;
        if (std::any_of(c.aliases.begin(), c.aliases.end(), [&](std::string_view a) { return util::iequals(a, format); }))
            return {};
        is = "a " + std::string(c.title) + " image (" + found->evidence + ")";
    }
    return target + " is " + is + ", but -n -O " + format + " would write " + format +
           " data into it, destroying it; nothing was written (name a target of the -O format, a raw file or a "
           "device, or convert without -n into a new file)";
}

} // namespace

std::optional<uint64_t> target_difference(const Disk &src, const Disk &dst, const std::string &target) {
    if (dst.size() == src.size()) return take(Library::compare(src, dst));
    constexpr uint64_t kChunk = 4u << 20;
    std::vector<unsigned char> a(kChunk), b(kChunk);
    for (uint64_t pos = 0; pos < src.size(); pos += kChunk) {
        throw_if_cancelled("while verifying " + target);
        const uint64_t n = std::min(kChunk, src.size() - pos);
        check(src.read(pos, a.data(), n));
        check(dst.read(pos, b.data(), n));
        if (std::memcmp(a.data(), b.data(), static_cast<size_t>(n)) != 0)
            for (uint64_t i = 0; i < n; ++i)
                if (a[i] != b[i]) return pos + i;
    }
    return std::nullopt;
}

namespace {

// The progress callback the copy sees: it also stops the copy on a signal.
ProgressFunction copy_progress(ConvertResult &result, const ProgressFunction &progress) {
    return [&result, &progress](uint64_t done, uint64_t total) {
        result.data_bytes = done;
        if (cancel_requested()) return false;
        return !progress || progress(done, total);
    };
}

// -n: the data goes straight into the existing target.
ConvertResult convert_into(Library &lib, const ConvertSpec &spec, const Disk &src, const ProgressFunction &progress) {
    OpenOptions o;
    o.format = spec.target_format;
    o.writable = true;
    o.filters = spec.target_filters;
    auto dst = take(lib.open(spec.target, o));
    // A streamOptimized VMDK's grains are compressed and written once, in
    // order, when it is made (VMDK spec, "Stream-Optimized Compressed
    // Sparse Extents"): there is nothing to write in place.
    if (auto info = dst->image_info(dst->image_count() - 1);
        info && (info->sequential || info->subformat == "streamOptimized"))
        throw CliError(spec.target + " is a " + (info->subformat.empty() ? info->format : info->subformat) +
                       " image, which takes writes only in order as it is made: it cannot be written in place "
                       "(-n); convert without -n creates a new one (nothing was written)");
    if (dst->size() < src.size())
        throw CliError(spec.target + " holds " + std::to_string(dst->size()) + " bytes, less than the virtual size of " +
                       spec.source + " (" + std::to_string(src.size()) +
                       " bytes); -n needs a target at least that large (nothing was written)");
    throw_if_cancelled(spec.target + " was not written");
    ConvertResult result{src.size(), 0};
    CopyOptions copy;
    copy.progress = copy_progress(result, progress);
    copy.target_is_zero = spec.target_is_zero; // else zero ranges are written where it holds data
    copy.threads = spec.threads;
    copy.out_of_order = spec.out_of_order;
    bool wrote = false;
    copy.wrote = &wrote;
    Status copied = lib.copy(src, *dst, copy);
    if (copied && spec.verify) {
        auto diff = target_difference(src, *dst, spec.target);
        if (diff)
            copied = Status(VDKIT_E_CORRUPT, spec.target + ": verification failed: it reads differently from " +
                                                 spec.source + " at offset " + std::to_string(*diff));
    }
    Status closed = dst->close();
    if (copied) copied = closed;
    if (!copied) {
        // Only a write that happened makes the target partly written (a
        // target that refuses its first write, e.g. a damaged map, is not).
        // A failure that is a refusal (damaged, read-only) before any
        // write succeeded wrote nothing; other failures may have written
        // part of the request that failed.
        const auto code = copied.code();
        const bool refused = code == VDKIT_E_CORRUPT || code == VDKIT_E_READ_ONLY || code == VDKIT_E_PERMISSION ||
                             code == VDKIT_E_NOT_SUPPORTED || code == VDKIT_E_CANCELLED;
        const std::string partial = wrote     ? spec.target + " was partly written (-n writes in place)"
                                    : refused ? "nothing was written to " + spec.target
                                              : spec.target + " may have been partly written (-n writes in place)";
        throw_if_cancelled(partial);
        throw CliError((copied.message().empty() ? copied.to_string() : copied.message()) + "; " + partial);
    }
    return result;
}

} // namespace

ConvertResult convert_image(Library &lib, const ConvertSpec &spec_in, const ProgressFunction &progress) {
    check_spec(spec_in);
    ConvertSpec spec = spec_in;
    std::error_code ec;
    if (fs::equivalent(spec.source, spec.target, ec))
        throw CliError("source and target are the same file (" + spec.target + ")", kExitUsage);
    // Every file convert creates is named for the format written into it.
    if (!spec.existing_target)
        if (const std::string problem = written_name_problem(lib, spec.target, spec.target_format); !problem.empty())
            throw CliError(problem + "; nothing was written", kExitUsage);
    if (std::error_code cache_ec; !spec.source_cache.empty() && !fs::exists(spec.source_cache, cache_ec))
        if (const std::string problem = new_name_problem(lib, spec.source_cache, spec.cache_format); !problem.empty())
            throw CliError("--cache " + problem + " (--cache-format)", kExitUsage);
    // Before anything is opened: what the target is decides what may be done to it.
    const std::string final_target = is_url(spec.target) ? spec.target : check_target(spec);
    if (spec.existing_target && !is_url(spec.target))
        if (const std::string problem = existing_format_problem(lib, spec.target, spec.target_format); !problem.empty())
            throw CliError(problem, kExitUsage);
    OpenOptions oo;
    oo.format = spec.source_format;
    oo.filters = spec.source_filters;
    oo.force_share = spec.source_force_share;
    std::unique_lock<std::mutex> window(g_fd_window);
    const auto before = open_fds();
    auto src = take(share_by(raw_by(lib.open(spec.source, oo), spec.raw_advice), spec.force_share_advice));
    const OpenFiles source_files = source_chain_files(*src, before);
    window.unlock();
    const OpenFiles old_files =
        is_url(spec.target) ? OpenFiles() : refuse_source_files(lib, final_target, spec.target_format,
                                                                      spec.existing_target, source_files);
    if (spec.overwrite && !is_url(spec.target)) refuse_in_use(lib, final_target); // before any work; again at publish
    if (!spec.source_cache.empty()) {
        CacheOptions cache;
        cache.format = spec.cache_format;
        check(src->attach_cache(spec.source_cache, cache));
    }
    if (spec.existing_target) return convert_into(lib, spec, *src, progress);
    throw_if_cancelled(spec.target + " was not written");

    Staging staging(final_target, spec.overwrite, spec.target_filters);
    CreateOptions co;
    co.format = spec.target_format;
    co.size = src->size();
    co.options = spec.target_options;
    co.fixed = spec.preallocate;
    co.final_location = final_target;
    co.filters = spec.target_filters;
    if (!spec.backing.empty()) {
        fs::path backing = spec.backing;
        if (backing.is_relative()) backing = fs::path(spec.target).parent_path() / backing;
        co.parent = backing.string();
        co.parent_format = spec.backing_format;
    }
    if (spec.keep_uuid) co.uuid = take(src->image_info(src->image_count() - 1)).uuid;
    auto dst = take(as_parent(lib.create_image(staging.main().string(), co)));
    const std::string not_written = spec.target + " was not written (its staging directory is removed)";
    throw_if_cancelled(not_written);

    CopyOptions copy;
    ConvertResult result{src->size(), 0};
    copy.progress = copy_progress(result, progress);
    copy.target_is_zero = true; // a new image, sparse or preallocated with zeros
    copy.threads = spec.threads;
    copy.out_of_order = spec.out_of_order;
    if (!spec.backing.empty()) {
        auto same = lib.common_image(*src, *dst);
        if (same && *same) copy.same_up_to = **same;
        else copy.target_is_zero = false; // the backing image may show data anywhere
    }
    Status copied = lib.copy(*src, *dst, copy);
    if (copied && spec.verify && !spec.backing.empty()) {
        // The staged image names its backing from its final place, so it is
        // verified through the open chain rather than reopened.
        auto diff = Library::compare(*src, *dst);
        if (!diff) copied = diff.status();
        else if (*diff)
            copied = Status(VDKIT_E_CORRUPT, spec.target + ": verification failed: the new image reads differently "
                                                           "from " + spec.source + " at offset " + std::to_string(**diff));
    }
    if (!copied) {
        dst->close_and_delete().ignore();
        throw_if_cancelled(not_written);
        check(copied);
    }
    check(dst->close());
    throw_if_cancelled(not_written);
    if (spec.verify && spec.backing.empty()) {
        OpenOptions ro;
        ro.format = spec.target_format;
        ro.filters = spec.target_filters;
        auto back = take(lib.open(staging.main().string(), ro));
        auto diff = take(Library::compare(*src, *back));
        if (diff)
            throw CliError(spec.target + ": verification failed: the new image reads differently from " +
                           spec.source + " at offset " + std::to_string(*diff));
    }
    throw_if_cancelled(not_written);
    staging.publish(lib, source_files);
    // The replaced image's files that the new one did not replace (another
    // name: an old descriptor's extents) are left where they are.
    for (const auto &[id, path] : old_files) {
        struct stat st {};
        if (::stat(path.c_str(), &st) == 0 && st.st_dev == id.first && st.st_ino == id.second)
            std::cerr << "vdkit: note: " << path << ", a file of the image " << spec.target
                      << " replaced, is left in place (--overwrite replaces only the new image's files)\n";
    }
    return result;
}

// ---- stale staging directories --------------------------------------------------------

std::vector<StagingDir> find_staging_dirs(const fs::path &dir) {
    std::vector<StagingDir> out;
    std::error_code ec;
    fs::directory_iterator it(dir, ec);
    if (ec) throw CliError(dir.string() + ": cannot list the directory: " + ec.message());
    for (fs::directory_iterator end; it != end; it.increment(ec)) {
        if (ec) throw CliError(dir.string() + ": cannot list the directory: " + ec.message());
        const std::string name = it->path().filename().string();
        // ".NAME.vdkit-partial", or ".NAME.vdkit-partial.XXXXXX" while it is made.
        if (name.size() < 2 || name[0] != '.' || name.find(".vdkit-partial", 1) == std::string::npos) continue;
        if (!it->is_directory(ec) || it->is_symlink(ec)) continue;
        StagingDir d;
        d.path = it->path();
        inspect(d, false);
        out.push_back(std::move(d));
    }
    std::sort(out.begin(), out.end(), [](const StagingDir &a, const StagingDir &b) { return a.path < b.path; });
    return out;
}

StagingDir::State remove_stale_staging(StagingDir &d) {
    Fd lock = inspect(d, true);
    if (d.state != StagingDir::State::stale) return d.state;
    if (lock.fd < 0)
        throw CliError(d.path.string() + ": cannot lock its marker to remove it (no write permission?)");
    remove_tree(d.path); // while holding the marker's lock
    d.state = StagingDir::State::removed;
    return d.state;
}

void note_stale_staging(const fs::path &dir, const std::vector<fs::path> &except) {
    std::vector<StagingDir> found;
    try {
        found = find_staging_dirs(dir.empty() ? fs::path(".") : dir);
    } catch (const CliError &) {
        return; // the convert itself reports what is wrong with the directory
    }
    size_t n = 0;
    uint64_t bytes = 0;
    for (const auto &d : found) {
        if (d.state != StagingDir::State::stale) continue;
        std::error_code ec;
        if (std::any_of(except.begin(), except.end(),
                        [&](const fs::path &e) { return e.filename() == d.path.filename() && fs::equivalent(e, d.path, ec); }))
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
            std::vector<StagingDir> found;
            try {
                found = find_staging_dirs(dir);
            } catch (const CliError &e) {
                // The other directories are still listed (and the JSON printed).
                std::cerr << "vdkit: " << e.what() << "\n";
                rc = kExitError;
                continue;
            }
            for (auto &d : found) {
                if (remove_ && d.state == StagingDir::State::stale) {
                    try {
                        remove_stale_staging(d);
                    } catch (const CliError &e) {
                        std::cerr << "vdkit: " << e.what() << "\n";
                        rc = kExitError;
                    }
                }
                if (d.state == StagingDir::State::stale) ++stale, stale_bytes += d.bytes;
                if (d.state == StagingDir::State::removed) ++removed, removed_bytes += d.bytes;
                if (output_ == "json") {
                    nlohmann::ordered_json j = {{"path", d.path.string()}, {"state", to_string(d.state)}};
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
                std::cout << d.path.string() << ": ";
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
            if (remove_) std::cout << "removed " << removed << " stale staging director" << (removed == 1 ? "y" : "ies")
                                   << ", " << mib(removed_bytes) << "\n";
            if (!remove_ || stale)
                std::cout << stale << " stale staging director" << (stale == 1 ? "y" : "ies") << ", " << mib(stale_bytes)
                          << (stale && !remove_ ? "; pass --remove to remove them" : "") << "\n";
        }
        return rc;
    }
};

} // namespace

void add_cleanup_command(std::vector<std::unique_ptr<Command>> &commands) {
    commands.push_back(std::make_unique<CleanupCommand>());
}

} // namespace vdkit::cli
