// The `file` transport: local files and block devices.
//
// pread/pwrite (retrying short transfers and EINTR), fdatasync, size (also
// of block devices), truncate, extents via SEEK_DATA/SEEK_HOLE, discard by
// punching holes, zeroing with FALLOC_FL_ZERO_RANGE, and image locks that
// QEMU sees and that see QEMU: open file description byte-range locks on
// the permission bytes of QEMU's file-posix driver (see ImageLock below), so
// a second writer, a writer beside readers, or a reader beside a writer gets
// VDKIT_E_BUSY, whether the other side is vdkit, qemu-img, qemu-io or a VM.
// Optional O_DIRECT (key `direct`), with aligned bounce buffers for
// unaligned requests, write-behind (key `write_behind`): write-back started
// every N bytes written, and sparse appends (key `sparse`): long zero runs
// of a write past the end of the file are left as holes.
#include "vdkit/plugin.hpp"
#include "vdkit/text.hpp"

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <mutex>
#include <set>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

using namespace vdkit;
using sdk::Context;
using sdk::Error;
using sdk::hex;

namespace {

[[noreturn]] void fail_errno(int err, const std::string &what) {
    uint32_t code = VDKIT_E_IO;
    if (err == ENOENT)
        code = VDKIT_E_NOT_FOUND;
    else if (err == EEXIST)
        code = VDKIT_E_EXISTS;
    else if (err == EACCES || err == EPERM)
        code = VDKIT_E_PERMISSION;
    else if (err == EROFS)
        code = VDKIT_E_READ_ONLY;
    else if (err == ENOMEM)
        code = VDKIT_E_NO_MEMORY;
    throw Error(code, what + ": " + std::strerror(err));
}

struct AlignedBuffer {
    explicit AlignedBuffer(size_t n) {
        if (posix_memalign(&p, 4096, n) != 0) throw std::bad_alloc();
    }
    ~AlignedBuffer() { std::free(p); }
    AlignedBuffer(const AlignedBuffer &) = delete;
    AlignedBuffer &operator=(const AlignedBuffer &) = delete;
    unsigned char *get() { return static_cast<unsigned char *>(p); }
    void *p = nullptr;
};

constexpr uint64_t kAlign = 4096;

// QEMU-compatible image locks (the protocol of QEMU's block/file-posix.c,
// as QEMU 7.2 shows it in /proc/locks; plugins/transports/file/README.md).
//
// A user of an image holds a set of permissions and shares a set with other
// users. Each permission i has two lock bytes in the image file: byte
// 100 + i ("I hold permission i") and byte 200 + i ("I do not let others
// take permission i"). Both are shared read locks (F_RDLCK) taken with
// F_OFD_SETLK: open file description locks, which belong to this open file,
// not to the process, so another open()/close() of the same file elsewhere
// in the process neither shares nor drops them. After taking its bytes, a
// user tests (F_OFD_GETLK with a write lock, which reports any read lock
// held through another open file) that nobody holds the "not shared" byte of
// a permission it holds, and that nobody holds the "held" byte of a
// permission it does not share. Taking before testing means two users
// opening at once see each other (both may fail; never both succeed).
//
//   vdkit writer: holds consistent-read, write, resize; does not share
//                 write, resize (QEMU's writer of a vmdk/vdi/qcow2 image:
//                 bytes 100, 101, 103, 201, 203).
//   vdkit reader: holds consistent-read; does not share write, resize
//                 (qemu-img info, qemu-io -r: bytes 100, 201, 203).
//   force-share (VDKIT_OPEN_NOLOCK, vdkit -U, qemu-img -U): no bytes, no test.
class ImageLock {
public:
    enum Perm : unsigned { kConsistentRead = 0, kWrite = 1, kWriteUnchanged = 2, kResize = 3, kPermCount = 4 };
    static constexpr off_t kHeldBase = 100;     // QEMU's RAW_LOCK_PERM_BASE
    static constexpr off_t kUnsharedBase = 200; // QEMU's RAW_LOCK_SHARED_BASE

    // Takes and tests the bytes for a writer or a reader on fd (open for
    // reading). Throws VDKIT_E_BUSY naming the file, the byte and what it
    // means. Where the file system cannot lock (no OFD locks: EINVAL; an
    // NFS lock manager out of reach: ENOLCK), logs a warning and leaves the
    // file unlocked (QEMU's locking=auto goes without locks too where OFD
    // locks are missing); the caller's fd then carries no locks.
    static void acquire(Context &ctx, int fd, const std::string &path, bool writable) {
        const unsigned held = bit(kConsistentRead) | (writable ? bit(kWrite) | bit(kResize) : 0u);
        const unsigned unshared = bit(kWrite) | bit(kResize);
        for (unsigned i = 0; i < kPermCount; ++i) {
            if ((held & bit(i)) && !take(ctx, fd, path, kHeldBase + i)) return;
            if ((unshared & bit(i)) && !take(ctx, fd, path, kUnsharedBase + i)) return;
        }
        // What others hold first ("in use for writing" says more than "does
        // not let others write": a writer both holds and refuses write).
        for (unsigned i = 0; i < kPermCount; ++i)
            if ((unshared & bit(i)) && taken_elsewhere(fd, path, kHeldBase + i))
                throw Error(VDKIT_E_BUSY, path + " is in use for " + noun(i) +
                                              " by another process (QEMU-compatible lock on byte " +
                                              std::to_string(kHeldBase + i) + ")" + advice(writable));
        for (unsigned i = 0; i < kPermCount; ++i)
            if ((held & bit(i)) && taken_elsewhere(fd, path, kUnsharedBase + i))
                throw Error(VDKIT_E_BUSY, path + " is in use by another process that does not let others " + verb(i) +
                                              " it (QEMU-compatible lock on byte " + std::to_string(kUnsharedBase + i) +
                                              ")" + advice(writable));
    }

private:
    static constexpr unsigned bit(unsigned i) { return 1u << i; }
    static const char *verb(unsigned i) {
        static const char *const v[] = {"read", "write", "write (unchanged data)", "resize"};
        return v[i];
    }
    static const char *noun(unsigned i) {
        static const char *const n[] = {"reading", "writing", "writing unchanged data", "resizing"};
        return n[i];
    }
    static std::string advice(bool writable) {
        // A read-only open here may serve a command that writes elsewhere (a
        // parent under a new child), so -U is offered as an option, not a fix.
        return writable ? "; close it there first"
                        : "; close it there first, or, to only look at it, use force-share (the -U/--force-share "
                          "of vdkit's read-only commands: info, map, check, compare, measure, convert's source), "
                          "knowing that what it shows may change while it is read";
    }
    static struct flock byte(short type, off_t at) {
        struct flock l {};
        l.l_type = type;
        l.l_whence = SEEK_SET;
        l.l_start = at;
        l.l_len = 1;
        return l;
    }
    // false: the file system cannot lock (warned; nothing taken is kept).
    static bool take(Context &ctx, int fd, const std::string &path, off_t at) {
        struct flock l = byte(F_RDLCK, at);
        while (fcntl(fd, F_OFD_SETLK, &l) != 0) {
            const int err = errno;
            if (err == EINTR) continue;
            if (err == EAGAIN || err == EACCES) // a write lock on the byte: another program's whole-file lock
                throw Error(VDKIT_E_BUSY, path + " is locked by another process (a write lock covers byte " +
                                              std::to_string(at) +
                                              " of the QEMU-compatible image locks); close it there first");
            if (err == EINVAL || err == ENOLCK || err == EOPNOTSUPP || err == ENOSYS) {
                release(fd);
                if (first_warning(path))
                    ctx.log(VDKIT_LOG_WARNING, path + ": cannot take the QEMU-compatible image lock (" +
                                                   std::strerror(err) +
                                                   "); opened without it, so other processes (vdkit, QEMU) are not "
                                                   "kept from writing it meanwhile");
                return false;
            }
            fail_errno(err, "cannot lock byte " + std::to_string(at) + " of " + path);
        }
        return true;
    }
    // Whether no warning about locking `path` was logged yet in this process:
    // a file opened again (a staging target reopened to verify it) is warned
    // about once. Thread-safe.
    static bool first_warning(const std::string &path) {
        static std::mutex mutex;
        static std::set<std::string> warned;
        std::lock_guard<std::mutex> hold(mutex);
        return warned.insert(path).second;
    }
    static void release(int fd) {
        struct flock l = byte(F_UNLCK, 0);
        l.l_len = 0; // the whole file
        (void)fcntl(fd, F_OFD_SETLK, &l);
    }
    // Whether a lock held through another open file description covers the
    // byte (our own do not conflict with a test through fd).
    static bool taken_elsewhere(int fd, const std::string &path, off_t at) {
        struct flock l = byte(F_WRLCK, at);
        while (fcntl(fd, F_OFD_GETLK, &l) != 0) {
            if (errno == EINTR) continue;
            fail_errno(errno, "cannot test byte " + std::to_string(at) + " of the image lock of " + path);
        }
        return l.l_type != F_UNLCK;
    }
};

class FileHandle {
public:
    static std::unique_ptr<FileHandle> open(Context &ctx, std::string_view location, uint32_t flags) {
        auto h = std::make_unique<FileHandle>();
        h->path_ = std::string(location);
        h->writable_ = flags & VDKIT_OPEN_WRITE;
        h->direct_ = ctx.config_bool("direct").value_or(false);
        h->write_behind_ = ctx.config_uint("write_behind").value_or(0);
        h->sparse_ = ctx.config_uint("sparse").value_or(0);
        int oflags = (h->writable_ ? O_RDWR : O_RDONLY) | O_CLOEXEC;
        if (flags & VDKIT_OPEN_CREATE) oflags |= O_CREAT | O_EXCL;
        if (h->direct_) oflags |= O_DIRECT;
        h->fd_ = ::open(h->path_.c_str(), oflags, 0644);
        if (h->fd_ < 0) {
            int err = errno;
            if (err == EINVAL && h->direct_)
                throw Error(VDKIT_E_NOT_SUPPORTED,
                            h->path_ + ": this file system does not support O_DIRECT (direct=true)");
            fail_errno(err, "cannot open " + h->path_ + (h->writable_ ? " for writing" : ""));
        }
        struct stat st {};
        if (fstat(h->fd_, &st) != 0) fail_errno(errno, "cannot stat " + h->path_);
        if (S_ISDIR(st.st_mode)) throw Error(VDKIT_E_INVALID_ARGUMENT, h->path_ + " is a directory, not an image");
        h->block_device_ = S_ISBLK(st.st_mode);
        if (h->block_device_ || h->direct_) h->sparse_ = 0; // a device has no holes: skipped bytes keep old data
        if (!(flags & VDKIT_OPEN_NOLOCK)) ImageLock::acquire(ctx, h->fd_, h->path_, h->writable_);
        return h;
    }

    ~FileHandle() {
        if (fd_ >= 0) ::close(fd_);
    }

    void pread(Context &, uint64_t off, void *buf, uint64_t len) {
        if (direct_ && !aligned(buf, len, off)) return direct_read(buf, len, off);
        raw_read(buf, len, off);
    }

    void pwrite(Context &, uint64_t off, const void *buf, uint64_t len) {
        if (!writable_) throw Error(VDKIT_E_READ_ONLY, path_ + " is open read-only");
        if (direct_ && !aligned(buf, len, off)) return direct_write(buf, len, off);
        if (sparse_ && len >= sparse_ && past_end(off))
            sparse_write(static_cast<const unsigned char *>(buf), len, off);
        else
            raw_write(buf, len, off);
        start_write_behind(len);
    }

    void flush(Context &) {
        if (writable_ && fdatasync(fd_) != 0) fail_errno(errno, "cannot flush " + path_);
    }

    uint64_t size(Context &) {
        if (block_device_) {
            uint64_t s = 0;
            if (ioctl(fd_, BLKGETSIZE64, &s) != 0) fail_errno(errno, "cannot get the size of " + path_);
            return s;
        }
        struct stat st {};
        if (fstat(fd_, &st) != 0) fail_errno(errno, "cannot stat " + path_);
        return static_cast<uint64_t>(st.st_size);
    }

    void truncate(Context &, uint64_t size) {
        if (!writable_) throw Error(VDKIT_E_READ_ONLY, path_ + " is open read-only");
        if (block_device_) throw Error(VDKIT_E_NOT_SUPPORTED, path_ + " is a block device and cannot be resized");
        if (ftruncate(fd_, static_cast<off_t>(size)) != 0) fail_errno(errno, "cannot resize " + path_);
    }

    void discard(Context &ctx, uint64_t off, uint64_t len) {
        if (!writable_) throw Error(VDKIT_E_READ_ONLY, path_ + " is open read-only");
        if (len == 0) return;
        if (fallocate(fd_, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, static_cast<off_t>(off),
                      static_cast<off_t>(len)) == 0)
            return;
        if (errno != EOPNOTSUPP && errno != ENOSYS)
            fail_errno(errno, "cannot punch a hole at " + hex(off) + " in " + path_);
        write_zero_bytes(ctx, off, len);
    }

    void zero(Context &ctx, uint64_t off, uint64_t len) {
        if (!writable_) throw Error(VDKIT_E_READ_ONLY, path_ + " is open read-only");
        if (len == 0) return;
        if (fallocate(fd_, FALLOC_FL_ZERO_RANGE, static_cast<off_t>(off), static_cast<off_t>(len)) == 0) return;
        uint64_t end = off + len;
        // Punching keeps the size; extend first when zeroing past the end.
        if (fallocate(fd_, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, static_cast<off_t>(off),
                      static_cast<off_t>(len)) == 0) {
            if (!block_device_ && size(ctx) < end && ftruncate(fd_, static_cast<off_t>(end)) != 0)
                fail_errno(errno, "cannot extend " + path_);
            return;
        }
        write_zero_bytes(ctx, off, len);
    }

    uint32_t extents(Context &ctx, uint64_t off, uint64_t len, vdkit_extent *out, uint32_t max) {
        uint64_t end = off + len;
        uint64_t file_size = size(ctx);
        uint32_t n = 0;
        uint64_t pos = off;
        auto add = [&](uint64_t a, uint64_t b, uint32_t type) {
            if (n > 0 && out[n - 1].type == type) {
                out[n - 1].length += b - a;
                return;
            }
            out[n++] = vdkit_extent{a, b - a, type, 0};
        };
        while (pos < end && n < max) {
            if (pos >= file_size || block_device_) {
                // Past EOF reads as zero; block devices cannot tell.
                add(pos, end, block_device_ ? VDKIT_EXTENT_DATA : VDKIT_EXTENT_HOLE);
                break;
            }
            off_t data = lseek(fd_, static_cast<off_t>(pos), SEEK_DATA);
            if (data < 0) {
                if (errno == ENXIO) { // no data from pos to EOF
                    add(pos, end, VDKIT_EXTENT_HOLE);
                    break;
                }
                if (errno == EINVAL || errno == EOPNOTSUPP) {
                    add(pos, end, VDKIT_EXTENT_DATA);
                    break;
                }
                fail_errno(errno, "cannot map " + path_);
            }
            uint64_t d = static_cast<uint64_t>(data);
            if (d > pos) {
                add(pos, std::min(d, end), VDKIT_EXTENT_HOLE);
                pos = std::min(d, end);
                continue;
            }
            off_t hole = lseek(fd_, static_cast<off_t>(pos), SEEK_HOLE);
            if (hole < 0) fail_errno(errno, "cannot map " + path_);
            uint64_t h = std::min<uint64_t>(static_cast<uint64_t>(hole), end);
            if (h <= pos) h = std::min<uint64_t>(end, file_size); // defensive: never an empty extent
            add(pos, h, VDKIT_EXTENT_DATA);
            pos = h;
        }
        return n;
    }

    uint64_t allocated_size(Context &) {
        struct stat st {};
        if (fstat(fd_, &st) != 0) fail_errno(errno, "cannot stat " + path_);
        return static_cast<uint64_t>(st.st_blocks) * 512u;
    }

    // Only files are removed: a device node, fifo or socket under an image's
    // name (create --overwrite, delete of a raw image on a device) is left
    // in place, refused by name; a symlink is removed, not what it names.
    static void remove(Context &, std::string_view location) {
        std::string p(location);
        struct stat st {};
        if (::lstat(p.c_str(), &st) == 0 && !S_ISREG(st.st_mode) && !S_ISLNK(st.st_mode))
            throw Error(VDKIT_E_INVALID_ARGUMENT, p + " is " + special_kind(st.st_mode) +
                                                      ", not an image file; vdkit never removes or replaces one");
        if (::unlink(p.c_str()) != 0) fail_errno(errno, "cannot remove " + p);
    }
    static void rename(Context &, std::string_view from, std::string_view to) {
        std::string a(from), b(to);
        const int err = rename_noreplace(a, b);
        if (err == EXDEV) return move_across(a, b);
        if (err != 0) fail_errno(err, "cannot rename " + a + " to " + b);
    }
    static bool exists(Context &, std::string_view location) {
        struct stat st {};
        std::string p(location);
        if (::stat(p.c_str(), &st) == 0) return true;
        if (errno == ENOENT || errno == ENOTDIR) return false;
        fail_errno(errno, "cannot stat " + p);
    }

private:
    static std::string special_kind(mode_t m) {
        if (S_ISBLK(m)) return "a block device";
        if (S_ISCHR(m)) return "a character device";
        if (S_ISFIFO(m)) return "a fifo (named pipe)";
        if (S_ISDIR(m)) return "a directory";
        if (S_ISSOCK(m)) return "a socket";
        return "a special file";
    }

    // rename(2) that never replaces an existing `to`: 0 or an errno. The
    // host checks that `to` is free first; this closes the gap between its
    // check and the rename where the file system allows.
    static int rename_noreplace(const std::string &from, const std::string &to) {
        if (renameat2(AT_FDCWD, from.c_str(), AT_FDCWD, to.c_str(), RENAME_NOREPLACE) == 0) return 0;
        if (errno != EINVAL) return errno;
        // No RENAME_NOREPLACE on this file system (NFS): link(2) never replaces either.
        if (::link(from.c_str(), to.c_str()) == 0) {
            ::unlink(from.c_str());
            return 0;
        }
        if (errno != EPERM && errno != EOPNOTSUPP) return errno;
        // Nor hard links (vfat): a plain rename, after the host's check.
        return ::rename(from.c_str(), to.c_str()) == 0 ? 0 : errno;
    }

    // A move to another file system (rename(2) says EXDEV), as mv(1) does
    // it: the data ranges are copied (holes stay holes) into a hidden file
    // beside the target, which is flushed and renamed to the target name
    // (rename_noreplace); only then is the source removed.
    // Cut off anywhere, the source is whole and the target name is either
    // absent or complete; a hidden leftover is the only debris.
    static void move_across(const std::string &from, const std::string &to) {
        const int in = ::open(from.c_str(), O_RDONLY | O_CLOEXEC);
        if (in < 0) fail_errno(errno, "cannot open " + from + " to move it");
        struct Closer {
            int fd;
            ~Closer() { ::close(fd); }
        } close_in{in};
        struct stat st {};
        if (fstat(in, &st) != 0) fail_errno(errno, "cannot stat " + from);
        const auto slash = to.find_last_of('/');
        const std::string dir = slash == std::string::npos ? "." : (slash == 0 ? "/" : to.substr(0, slash));
        const std::string tmp = (slash == std::string::npos ? std::string() : to.substr(0, slash + 1)) + "." +
                                to.substr(slash == std::string::npos ? 0 : slash + 1) + ".vdkit-move";
        const int out = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, st.st_mode & 07777);
        if (out < 0) fail_errno(errno, "cannot create " + tmp + " to move " + from + " across file systems");
        try {
            Closer close_out{out};
            copy_data(in, out, static_cast<uint64_t>(st.st_size), from, tmp);
            if (ftruncate(out, st.st_size) != 0) fail_errno(errno, "cannot size " + tmp);
            if (fsync(out) != 0) fail_errno(errno, "cannot flush " + tmp);
            if (const int err = rename_noreplace(tmp, to); err != 0)
                fail_errno(err, "cannot rename " + tmp + " to " + to);
        } catch (...) {
            ::unlink(tmp.c_str());
            throw;
        }
        const int d = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (d >= 0) {
            (void)fsync(d); // the new name is durable before the old file goes
            ::close(d);
        }
        if (::unlink(from.c_str()) != 0)
            fail_errno(errno, "moved " + from + " to " + to + " but cannot remove the original");
    }

    // Copies [0, size) of in to out range by range of data (SEEK_DATA; a
    // file system without it copies everything).
    static void copy_data(int in, int out, uint64_t size, const std::string &from, const std::string &to) {
        std::vector<unsigned char> buf(1u << 20);
        uint64_t pos = 0;
        while (pos < size) {
            off_t data = lseek(in, static_cast<off_t>(pos), SEEK_DATA);
            if (data < 0 && errno == ENXIO) break; // only a hole is left
            const bool mapped = data >= 0;
            if (!mapped && errno != EINVAL && errno != EOPNOTSUPP) fail_errno(errno, "cannot map " + from);
            uint64_t a = mapped ? static_cast<uint64_t>(data) : pos, b = size;
            if (mapped) {
                off_t hole = lseek(in, data, SEEK_HOLE);
                if (hole < 0) fail_errno(errno, "cannot map " + from);
                b = std::min<uint64_t>(size, static_cast<uint64_t>(hole));
            }
            for (; a < b;) {
                const size_t n = static_cast<size_t>(std::min<uint64_t>(buf.size(), b - a));
                ssize_t got = ::pread(in, buf.data(), n, static_cast<off_t>(a));
                if (got < 0 && errno == EINTR) continue;
                if (got <= 0) fail_errno(got < 0 ? errno : EIO, "cannot read " + from + " at " + hex(a));
                for (ssize_t put = 0; put < got;) {
                    ssize_t w = ::pwrite(out, buf.data() + put, static_cast<size_t>(got - put),
                                         static_cast<off_t>(a + static_cast<uint64_t>(put)));
                    if (w < 0 && errno == EINTR) continue;
                    if (w < 0) fail_errno(errno, "cannot write " + to + " at " + hex(a));
                    put += w;
                }
                a += static_cast<uint64_t>(got);
            }
            pos = b;
        }
    }

    static bool aligned(const void *buf, uint64_t len, uint64_t off) {
        return reinterpret_cast<uintptr_t>(buf) % kAlign == 0 && len % kAlign == 0 && off % kAlign == 0;
    }

    void raw_read(void *buf, uint64_t len, uint64_t off) {
        auto *p = static_cast<unsigned char *>(buf);
        while (len > 0) {
            ssize_t n =
                ::pread(fd_, p, static_cast<size_t>(std::min<uint64_t>(len, 1u << 30)), static_cast<off_t>(off));
            if (n < 0) {
                if (errno == EINTR) continue;
                fail_errno(errno, "read of " + std::to_string(len) + " bytes at offset " + hex(off) + " from " + path_ +
                                      " failed");
            }
            if (n == 0)
                throw Error(VDKIT_E_OUT_OF_RANGE,
                            path_ + ": read at offset " + hex(off) + " is beyond the end of the file");
            p += n;
            off += static_cast<uint64_t>(n);
            len -= static_cast<uint64_t>(n);
        }
    }

    void raw_write(const void *buf, uint64_t len, uint64_t off) {
        const auto *p = static_cast<const unsigned char *>(buf);
        while (len > 0) {
            ssize_t n =
                ::pwrite(fd_, p, static_cast<size_t>(std::min<uint64_t>(len, 1u << 30)), static_cast<off_t>(off));
            if (n < 0) {
                if (errno == EINTR) continue;
                fail_errno(errno, "write of " + std::to_string(len) + " bytes at offset " + hex(off) + " to " + path_ +
                                      " failed");
            }
            p += n;
            off += static_cast<uint64_t>(n);
            len -= static_cast<uint64_t>(n);
        }
    }

    // O_DIRECT: read the covering aligned span; EOF may cut the last block.
    void read_span(unsigned char *dst, uint64_t start, uint64_t span, uint64_t file_size) {
        std::memset(dst, 0, static_cast<size_t>(span));
        uint64_t avail = file_size > start ? std::min(span, file_size - start) : 0;
        uint64_t got = 0;
        while (got < avail) {
            ssize_t n = ::pread(fd_, dst + got, static_cast<size_t>(span - got), static_cast<off_t>(start + got));
            if (n < 0) {
                if (errno == EINTR) continue;
                fail_errno(errno, "direct read at offset " + hex(start + got) + " from " + path_ + " failed");
            }
            if (n == 0) break;
            got += static_cast<uint64_t>(n);
        }
    }

    void direct_read(void *buf, uint64_t len, uint64_t off) {
        Context none(nullptr);
        uint64_t file_size = size(none);
        if (off + len > file_size)
            throw Error(VDKIT_E_OUT_OF_RANGE,
                        path_ + ": read at offset " + hex(off) + " is beyond the end of the file");
        uint64_t start = off / kAlign * kAlign;
        uint64_t end = (off + len + kAlign - 1) / kAlign * kAlign;
        AlignedBuffer bounce(static_cast<size_t>(end - start));
        read_span(bounce.get(), start, end - start, file_size);
        std::memcpy(buf, bounce.get() + (off - start), static_cast<size_t>(len));
    }

    void direct_write(const void *buf, uint64_t len, uint64_t off) {
        std::lock_guard<std::mutex> lock(rmw_); // read-modify-write of shared edge blocks
        Context none(nullptr);
        uint64_t file_size = size(none);
        uint64_t start = off / kAlign * kAlign;
        uint64_t end = (off + len + kAlign - 1) / kAlign * kAlign;
        AlignedBuffer bounce(static_cast<size_t>(end - start));
        read_span(bounce.get(), start, end - start, file_size);
        std::memcpy(bounce.get() + (off - start), buf, static_cast<size_t>(len));
        raw_write(bounce.get(), end - start, start);
        uint64_t want = std::max(file_size, off + len);
        if (!block_device_ && end > want && ftruncate(fd_, static_cast<off_t>(want)) != 0)
            fail_errno(errno, "cannot trim " + path_ + " after a direct write");
    }

    // Sparse appends. Past the end of a file every byte reads as zero and
    // nothing is in flight there (writers of one range are serialised by the
    // format; other processes are kept out by the lock), so zero runs of at
    // least `sparse_` bytes (whole pages) of such a write need not be
    // written: they stay holes. A VDI or VMDK block that is half data costs
    // half the disk writes. The write's last page is always written, so the
    // file grows over it as with a full write.
    bool past_end(uint64_t off) const {
        struct stat st {};
        return fstat(fd_, &st) == 0 && off >= static_cast<uint64_t>(st.st_size);
    }

    void sparse_write(const unsigned char *p, uint64_t len, uint64_t off) {
        const uint64_t end = off + len;
        uint64_t written = off;          // [off, written) is written or left as a hole
        uint64_t zero_from = UINT64_MAX; // start of the current run of zero pages
        for (uint64_t pos = off, next; pos < end; pos = next) {
            next = std::min(end, (pos / kAlign + 1) * kAlign);
            if (sdk::is_zero(p + (pos - off), static_cast<size_t>(next - pos))) {
                if (zero_from == UINT64_MAX) zero_from = pos;
                continue;
            }
            if (zero_from != UINT64_MAX && pos - zero_from >= sparse_) {
                if (zero_from > written) raw_write(p + (written - off), zero_from - written, written);
                written = pos;
            }
            zero_from = UINT64_MAX;
        }
        if (zero_from != UINT64_MAX && end - zero_from >= sparse_) {
            if (zero_from > written) raw_write(p + (written - off), zero_from - written, written);
            const uint64_t last = std::max(zero_from, (end - 1) / kAlign * kAlign);
            raw_write(p + (last - off), end - last, last);
        } else {
            raw_write(p + (written - off), end - written, written);
        }
    }

    void write_zero_bytes(Context &ctx, uint64_t off, uint64_t len) {
        std::vector<unsigned char> z(static_cast<size_t>(std::min<uint64_t>(len, 1u << 20)), 0);
        while (len > 0) {
            uint64_t n = std::min<uint64_t>(len, z.size());
            pwrite(ctx, off, z.data(), n);
            off += n;
            len -= n;
        }
    }

    // Write-behind: after every `write_behind_` bytes written, ask the kernel
    // to start writing the file's dirty pages out (SYNC_FILE_RANGE_WRITE does
    // not wait for them), so the disk works while the copy goes on and the
    // final fdatasync finds little left; it also keeps a big conversion from
    // filling the page cache with dirty pages. Advisory: an error is ignored,
    // the next flush reports any real one.
    void start_write_behind(uint64_t len) {
        if (write_behind_ == 0 || direct_) return;
        if (unwritten_.fetch_add(len, std::memory_order_relaxed) + len < write_behind_) return;
        unwritten_.store(0, std::memory_order_relaxed);
        (void)sync_file_range(fd_, 0, 0, SYNC_FILE_RANGE_WRITE);
    }

    int fd_ = -1;
    std::string path_;
    uint64_t write_behind_ = 0;
    uint64_t sparse_ = 0; // shortest zero run left as a hole past the end of the file; 0: off
    std::atomic<uint64_t> unwritten_{0};
    bool writable_ = false;
    bool direct_ = false;
    bool block_device_ = false;
    std::mutex rmw_;
};

constexpr vdkit_config_key kKeys[] = {
    sdk::key("direct", VDKIT_KEY_BOOL, "false",
             "Open with O_DIRECT, bypassing the page cache (unaligned requests use bounce buffers)."),
    sdk::key("write_behind", VDKIT_KEY_SIZE, "8M",
             "After this many bytes written, start writing the file's dirty pages to the disk without waiting "
             "(sync_file_range); 0 leaves write-back to the kernel."),
    sdk::key("sparse", VDKIT_KEY_SIZE, "64K",
             "Zero runs of at least this size (whole 4 KiB pages) in a write past the end of the file are left as "
             "holes, which read as zero; 0 writes every byte. Off for block devices and with direct."),
};

const vdkit_plugin_descriptor *file_transport() {
    static const vdkit_plugin_descriptor d = sdk::describe(
        VDKIT_KIND_TRANSPORT,
        sdk::DescriptorSpec{"file", "1.0.0", "Local files and block devices",
                            VDKIT_CAP_EXTENTS | VDKIT_CAP_LOCKING | VDKIT_CAP_DISCARD | VDKIT_CAP_THREAD_SAFE, kKeys,
                            static_cast<uint32_t>(std::size(kKeys)), nullptr, 0},
        sdk::transport_ops<FileHandle>());
    return &d;
}

} // namespace

VDKIT_SDK_ENTRY(file_transport())
