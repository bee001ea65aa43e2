// Staging directories for Library::convert (see staging.hpp), and the
// public listing and removal of the ones interrupted converts left
// (Library::staging_dirs / remove_stale_staging, `vdkit cleanup`).
#include "disk/staging.hpp"

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <system_error>
#include <thread>

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

namespace fs = std::filesystem;

namespace vdkit {
inline namespace v1 {

std::string staging_dir_for(const std::string &target) {
    const fs::path t(target);
    fs::path dir = t.parent_path();
    if (dir.empty()) dir = ".";
    return (dir / ("." + t.filename().string() + ".vdkit-partial")).string();
}

const char *to_string(StagingDir::State state) noexcept {
    switch (state) {
    case StagingDir::State::stale:
        return "stale";
    case StagingDir::State::in_use:
        return "in-use";
    case StagingDir::State::unknown:
        return "unknown";
    case StagingDir::State::removed:
        return "removed";
    case StagingDir::State::mismatched:
        return "mismatched";
    case StagingDir::State::other_host:
        return "other-host";
    case StagingDir::State::foreign:
        break;
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

} // namespace v1

namespace staging {

namespace {

constexpr const char *kMarkerMagic = "vdkit staging directory";

std::string errno_text(int err) {
    return std::strerror(err);
}

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
    int release() { return std::exchange(fd, -1); }
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
    case Lock::taken:
        return StagingDir::State::stale;
    case Lock::held_elsewhere:
        return StagingDir::State::in_use;
    case Lock::unsupported:
        break;
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
    const fs::path path(d.path);
    std::string name = path.filename().string();
    const auto at = name.rfind(".vdkit-partial");
    if (name.size() < 2 || name[0] != '.' || at == std::string::npos || at < 1) return false;
    const std::string rest = name.substr(at + std::strlen(".vdkit-partial"));
    if (!rest.empty() && (rest.size() != 7 || rest[0] != '.')) return false;
    name = name.substr(1, at - 1);
    const fs::path target = d.target;
    if (target.filename() != name) return false;
    fs::path dir = path.parent_path();
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
// another mount (PERMISSION naming it instead). With `dry`, only look (for
// a mount point) and remove nothing.
Status remove_tree_at(int parent, const std::string &name, dev_t dev, const std::string &shown, bool dry) {
    const int fd = ::openat(parent, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT) return Status::ok();
        return Status(VDKIT_E_IO, shown + ": cannot open to remove: " + errno_text(errno));
    }
    struct stat st {};
    if (::fstat(fd, &st) != 0 || st.st_dev != dev || is_mount_root(fd)) {
        ::close(fd);
        return Status(VDKIT_E_PERMISSION,
                      shown + " is a mount point; vdkit never removes anything across one (unmount it first)");
    }
    DIR *dir = ::fdopendir(fd);
    if (!dir) {
        ::close(fd);
        return Status(VDKIT_E_IO, shown + ": cannot list to remove: " + errno_text(errno));
    }
    std::vector<std::string> names;
    while (const dirent *e = ::readdir(dir))
        if (std::strcmp(e->d_name, ".") != 0 && std::strcmp(e->d_name, "..") != 0) names.emplace_back(e->d_name);
    Status st_all = Status::ok();
    for (const auto &n : names) {
        struct stat est {};
        if (::fstatat(::dirfd(dir), n.c_str(), &est, AT_SYMLINK_NOFOLLOW) != 0) {
            if (errno == ENOENT) continue;
            st_all = Status(VDKIT_E_IO, shown + "/" + n + ": cannot look at it to remove: " + errno_text(errno));
            break;
        }
        if (S_ISDIR(est.st_mode)) {
            st_all = remove_tree_at(::dirfd(dir), n, dev, shown + "/" + n, dry);
            if (!st_all) break;
        } else if (!dry && ::unlinkat(::dirfd(dir), n.c_str(), 0) != 0 && errno != ENOENT) {
            st_all = Status(VDKIT_E_IO, shown + "/" + n + ": cannot remove: " + errno_text(errno));
            break;
        }
    }
    ::closedir(dir);
    VDKIT_TRY(st_all);
    if (!dry && ::unlinkat(parent, name.c_str(), AT_REMOVEDIR) != 0 && errno != ENOENT)
        return Status(VDKIT_E_IO, shown + ": cannot remove: " + errno_text(errno));
    return Status::ok();
}

// Whether process `pid` (on this host) still runs.
bool pid_alive(long pid) {
    return pid > 0 && (::kill(static_cast<pid_t>(pid), 0) == 0 || errno == EPERM);
}

// Read the marker of staging directory `d.path`, fill in what it says and
// whether a running convert holds it. With `lock_it`, the returned fd holds
// the lock when the state is stale.
Fd inspect_locking(StagingDir &d, bool lock_it) {
    d.state = StagingDir::State::foreign;
    struct stat st {};
    if (::lstat(d.path.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) return Fd();
    const fs::path marker = fs::path(d.path) / kMarker;
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

// rename(2) of a directory that never replaces an existing one: 0 or errno.
int rename_dir_noreplace(const fs::path &from, const fs::path &to) {
    if (renameat2(AT_FDCWD, from.c_str(), AT_FDCWD, to.c_str(), RENAME_NOREPLACE) == 0) return 0;
    if (errno != EINVAL) return errno;
    // No RENAME_NOREPLACE here (NFS): rename(2) still refuses a non-empty
    // directory (the new one holds its marker).
    return ::rename(from.c_str(), to.c_str()) == 0 ? 0 : errno;
}

// A leftover staging directory `dir` of `target` is removed only when it is
// vdkit's (a valid marker naming this target, written on this host) and no
// process holds its marker (a convert that was killed). Anything else under
// the name is refused by name: it may be the user's.
Status remove_leftover(const fs::path &dir, const fs::path &target) {
    for (int attempt = 0;; ++attempt) {
        struct stat st {};
        if (::lstat(dir.c_str(), &st) != 0) {
            if (errno == ENOENT) return Status::ok();
            return Status(VDKIT_E_IO, dir.string() + ": cannot look at the staging directory: " + errno_text(errno));
        }
        const std::string move_away = "; convert stages the new image under this name: move it away";
        if (!S_ISDIR(st.st_mode))
            return Status(VDKIT_E_EXISTS, dir.string() + " is " + file_type_name(st.st_mode) +
                                              ", not a vdkit staging directory" + move_away);
        StagingDir d;
        d.path = dir.string();
        Fd lock = inspect_locking(d, true);
        switch (d.state) {
        case StagingDir::State::stale:
        case StagingDir::State::removed:
            return remove_tree(dir);
        case StagingDir::State::foreign:
            return Status(VDKIT_E_EXISTS, dir.string() +
                                              " is not a vdkit staging directory (it holds no valid vdkit marker)" +
                                              move_away);
        case StagingDir::State::mismatched:
            return Status(VDKIT_E_EXISTS, dir.string() +
                                              " is not this target's staging directory (its vdkit marker "
                                              "names " +
                                              d.target + ")" + move_away);
        case StagingDir::State::other_host:
            return Status(VDKIT_E_BUSY, dir.string() + " was made by a convert on host " + d.host + " (pid " +
                                            std::to_string(d.pid) +
                                            "); whether it still runs cannot be told from "
                                            "here: remove the directory once it has stopped");
        case StagingDir::State::unknown:
            // No locks on this file system: the pid (on this host) tells.
            if (!pid_alive(d.pid)) return remove_tree(dir);
            return Status(VDKIT_E_BUSY, target.string() + ": a vdkit process (pid " + std::to_string(d.pid) +
                                            ") may be converting into it now (it made " + dir.string() +
                                            ", and its file system cannot lock files)");
        case StagingDir::State::in_use:
            if (pid_alive(d.pid))
                return Status(VDKIT_E_BUSY, target.string() + ": another vdkit process (pid " + std::to_string(d.pid) +
                                                ") is converting into it now (it holds " + dir.string() + ")");
            // Held, but not by the convert that made it: `vdkit cleanup
            // --remove` is removing it. Give that a moment.
            if (attempt < 50) {
                std::this_thread::sleep_for(std::chrono::milliseconds(100));
                continue;
            }
            return Status(VDKIT_E_BUSY, dir.string() +
                                            " is locked by another process, not by the convert that made "
                                            "it (pid " +
                                            std::to_string(d.pid) +
                                            " no longer runs): a "
                                            "`vdkit cleanup --remove` may be removing it; try again");
        }
        return Status::ok();
    }
}

// A new file takes the mode (and, as root, owner and group) of the regular
// file it replaces.
Status keep_mode(const fs::path &fresh, const fs::path &old) {
    struct stat st {};
    if (::stat(old.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) return Status::ok();
    if (::geteuid() == 0 && ::lchown(fresh.c_str(), st.st_uid, st.st_gid) != 0)
        return Status(VDKIT_E_IO,
                      fresh.string() + ": cannot give it the owner of " + old.string() + ": " + errno_text(errno));
    if (::chmod(fresh.c_str(), st.st_mode & 07777) != 0)
        return Status(VDKIT_E_IO,
                      fresh.string() + ": cannot give it the mode of " + old.string() + ": " + errno_text(errno));
    return Status::ok();
}

Status refuse_special(const fs::path &p) {
    struct stat st {};
    if (::lstat(p.c_str(), &st) == 0 && !S_ISREG(st.st_mode) && !S_ISLNK(st.st_mode))
        return Status(VDKIT_E_PERMISSION, p.string() + " is " + file_type_name(st.st_mode) +
                                              " (it appeared while converting); convert never replaces one");
    return Status::ok();
}

// Make the renames durable: the directory entries are only on disk once the
// directory itself is flushed (the files' data was flushed at close).
Status sync_directory(const fs::path &dir) {
    const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return Status(VDKIT_E_IO, dir.string() + ": cannot open the directory to flush it: " + errno_text(errno));
    const int rc = ::fsync(fd);
    const int err = errno;
    ::close(fd);
    if (rc != 0) return Status(VDKIT_E_IO, dir.string() + ": cannot flush the directory: " + errno_text(err));
    return Status::ok();
}

} // namespace

Status remove_tree(const fs::path &path) {
    fs::path parent = path.parent_path();
    if (parent.empty()) parent = ".";
    const int pfd = ::open(parent.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (pfd < 0) return Status(VDKIT_E_IO, parent.string() + ": cannot open: " + errno_text(errno));
    struct stat pst {};
    if (::fstat(pfd, &pst) != 0) {
        const int err = errno;
        ::close(pfd);
        return Status(VDKIT_E_IO, parent.string() + ": cannot look at it: " + errno_text(err));
    }
    // First only look, so that a mount point found deep inside leaves the
    // directory whole (its marker too) rather than half removed.
    Status st = remove_tree_at(pfd, path.filename().string(), pst.st_dev, path.string(), true);
    if (st) st = remove_tree_at(pfd, path.filename().string(), pst.st_dev, path.string(), false);
    ::close(pfd);
    return st;
}

void inspect(StagingDir &d) {
    inspect_locking(d, false);
}

Result<std::unique_ptr<Dir>> Dir::make(const fs::path &target) {
    const fs::path dir = staging_dir_for(target.string());
    VDKIT_TRY(remove_leftover(dir, target));
    std::string tmpl = dir.string() + ".XXXXXX";
    if (!::mkdtemp(tmpl.data()))
        return Status(VDKIT_E_IO, dir.parent_path().string() + ": cannot create the staging directory for " +
                                      target.string() + ": " + errno_text(errno));
    const fs::path tmp = tmpl;
    auto made = [&]() -> Result<Fd> {
        const fs::path marker = tmp / kMarker;
        Fd fd(::open(marker.c_str(), O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644));
        if (fd.fd < 0) return Status(VDKIT_E_IO, marker.string() + ": cannot create: " + errno_text(errno));
        // Where the file system cannot lock, the convert still runs; cleanup
        // then cannot tell whether it does and leaves it alone.
        if (try_lock(fd.fd) == Lock::held_elsewhere)
            return Status(VDKIT_E_BUSY, marker.string() + ": locked by another process as soon as it was made");
        std::error_code ec;
        const fs::path abs = fs::absolute(target, ec);
        const std::string text = std::string(kMarkerMagic) + " (vdkit convert builds " + target.filename().string() +
                                 " here; `vdkit cleanup` removes it once no vdkit process holds this file)\n" +
                                 "pid: " + std::to_string(::getpid()) + "\nhost: " + this_host() +
                                 "\ntarget: " + (ec ? target : abs).string() + "\nstarted: " + now_utc() + "\n";
        if (::pwrite(fd.fd, text.data(), text.size(), 0) != static_cast<ssize_t>(text.size()))
            return Status(VDKIT_E_IO, marker.string() + ": cannot write: " + errno_text(errno));
        if (const int err = rename_dir_noreplace(tmp, dir); err != 0) {
            if (err == EEXIST || err == ENOTEMPTY)
                return Status(VDKIT_E_BUSY, target.string() +
                                                ": another vdkit convert into it started at the same "
                                                "time (" +
                                                dir.string() + " appeared)");
            return Status(VDKIT_E_IO, "cannot rename " + tmp.string() + " to " + dir.string() + ": " + errno_text(err));
        }
        return fd;
    }();
    if (!made) {
        remove_tree(tmp).ignore();
        return made.status();
    }
    return std::unique_ptr<Dir>(new Dir(target, dir, made->release()));
}

Dir::~Dir() {
    remove_tree(dir_).ignore(); // the marker goes with it, still locked
    if (marker_fd_ >= 0) ::close(marker_fd_);
}

Status Dir::publish(bool overwrite, const OpenFiles &source_files,
                    const std::function<Status(const fs::path &)> &in_use,
                    const std::function<Status(const std::string &, const std::string &)> &rename_noreplace) {
    std::vector<fs::path> others;
    std::error_code ec;
    for (fs::directory_iterator it(dir_, ec), end; !ec && it != end; it.increment(ec)) {
        const fs::path name = it->path().filename();
        if (name != target_.filename() && name != kMarker) others.push_back(it->path());
    }
    if (ec) return Status(VDKIT_E_IO, dir_.string() + ": cannot list the staging directory: " + ec.message());
    std::sort(others.begin(), others.end());
    const fs::path final_dir = target_.parent_path().empty() ? fs::path(".") : target_.parent_path();
    std::vector<std::pair<fs::path, fs::path>> moves;
    for (const auto &p : others)
        moves.emplace_back(p, final_dir / p.filename());
    moves.emplace_back(main(), target_);
    auto exists_message = [&](const fs::path &to) {
        if (to == target_) return target_.string() + ": appeared while converting; pass --overwrite to replace it";
        return to.string() + ": already exists (a file of the new image would replace it); pass --overwrite to "
                             "replace it";
    };
    for (const auto &[from, to] : moves) {
        VDKIT_TRY(refuse_special(to));
        struct stat st {};
        if (::stat(to.c_str(), &st) != 0) continue;
        if (auto hit = source_files.find({st.st_dev, st.st_ino}); hit != source_files.end())
            return Status(VDKIT_E_PERMISSION, to.string() + " is " + hit->second +
                                                  ", a file of the source's chain; convert never replaces a "
                                                  "file it reads from");
        if (!overwrite) return Status(VDKIT_E_EXISTS, exists_message(to));
        VDKIT_TRY(in_use(to));
    }
    for (const auto &[from, to] : moves) {
        if (!overwrite) {
            // The transport's no-replace rename: a file that appeared since
            // the look above is never replaced.
            Status moved = rename_noreplace(from.string(), to.string());
            if (!moved && moved.code() == VDKIT_E_EXISTS) return Status(VDKIT_E_EXISTS, exists_message(to));
            VDKIT_TRY(moved);
            continue;
        }
        VDKIT_TRY(keep_mode(from, to));
        std::error_code rec;
        fs::rename(from, to, rec);
        if (rec)
            return Status(VDKIT_E_IO, "cannot move " + from.string() + " to " + to.string() + ": " + rec.message());
    }
    return sync_directory(final_dir);
}

} // namespace staging

inline namespace v1 {

Result<std::vector<StagingDir>> Library::staging_dirs(const std::string &dir) {
    std::vector<StagingDir> out;
    std::error_code ec;
    fs::directory_iterator it(dir, ec);
    if (ec) return Status(VDKIT_E_IO, dir + ": cannot list the directory: " + ec.message());
    for (fs::directory_iterator end; it != end; it.increment(ec)) {
        if (ec) return Status(VDKIT_E_IO, dir + ": cannot list the directory: " + ec.message());
        const std::string name = it->path().filename().string();
        // ".NAME.vdkit-partial", or ".NAME.vdkit-partial.XXXXXX" while it is made.
        if (name.size() < 2 || name[0] != '.' || name.find(".vdkit-partial", 1) == std::string::npos) continue;
        if (!it->is_directory(ec) || it->is_symlink(ec)) continue;
        StagingDir d;
        d.path = it->path().string();
        staging::inspect(d);
        out.push_back(std::move(d));
    }
    std::sort(out.begin(), out.end(), [](const StagingDir &a, const StagingDir &b) { return a.path < b.path; });
    return out;
}

Status Library::remove_stale_staging(StagingDir &d) {
    staging::Fd lock = staging::inspect_locking(d, true);
    if (d.state != StagingDir::State::stale) return Status::ok();
    if (lock.fd < 0)
        return Status(VDKIT_E_PERMISSION, d.path + ": cannot lock its marker to remove it (no write permission?)");
    VDKIT_TRY(staging::remove_tree(d.path)); // while holding the marker's lock
    d.state = StagingDir::State::removed;
    return Status::ok();
}

} // namespace v1
} // namespace vdkit
