// vdkit fuse: a FUSE view of any disk vdkit opens (libfuse3, high-level
// API), as nbdfuse and qemu-storage-daemon's FUSE export give: one file
// holding the virtual disk's bytes. Reads, writes, fsync, hole punching and
// zeroing (fallocate), SEEK_DATA/SEEK_HOLE from block status. Runs in the
// foreground until `fusermount3 -u MOUNTPOINT` (or a signal), then closes
// the disk (flushing it) and exits.
//
// MOUNTPOINT is a directory (the disk appears in it as NAME, default
// "disk") or an existing regular file (the mount covers it: the file itself
// is the disk, as qemu-storage-daemon exports it, ready for losetup).
#define FUSE_USE_VERSION 35
#include "fuse.hpp"
#include "commands.hpp"

#include <fuse.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <iostream>
#include <linux/falloc.h>
#include <sys/stat.h>
#include <unistd.h>

namespace fs = std::filesystem;

namespace vdkit::cli {
namespace {

// What the mounted file system serves; fuse_get_context()->private_data.
struct View {
    FuseExport *x = nullptr;
    std::string name; // "/NAME" inside a directory mountpoint; "" when the mountpoint is the file
    bool writable = false;
    uint64_t size = 0; // bytes served: the disk's or the volume's
    struct timespec mounted {};
    uid_t uid = 0;
    gid_t gid = 0;
    bool was_mounted = false; // FUSE called init: the mount worked
};

View &view() {
    return *static_cast<View *>(fuse_get_context()->private_data);
}
Disk &disk() {
    return *view().x->disk;
}

// Apply f(disk_offset, buffer_offset, n) to the disk ranges behind
// [off, off+len) of the served file: the same range for a whole disk, the
// volume's extents otherwise (vdkit/volumes.hpp).
template <class F> Status on_disk(uint64_t off, uint64_t len, F &&f) {
    const std::optional<Volume> &v = view().x->volume;
    if (!v) return f(off, uint64_t{0}, len);
    uint64_t base = 0, done = 0;
    for (const VolumeExtent &e : v->extents) {
        if (done == len) break;
        const uint64_t pos = off + done;
        if (pos < base + e.length) {
            const uint64_t in = pos - base, n = std::min(len - done, e.length - in);
            VDKIT_TRY(f(e.offset + in, done, n));
            done += n;
        }
        base += e.length;
    }
    return done == len ? Status::ok() : Status(VDKIT_E_OUT_OF_RANGE, "past the volume's end");
}

// A vdkit error as the errno FUSE hands to the caller.
int errno_of(const Status &st) {
    switch (st.code()) {
    case VDKIT_OK:
        return 0;
    case VDKIT_E_INVALID_ARGUMENT:
    case VDKIT_E_OUT_OF_RANGE:
        return EINVAL;
    case VDKIT_E_NOT_SUPPORTED:
        return EOPNOTSUPP;
    case VDKIT_E_READ_ONLY:
        return EROFS;
    case VDKIT_E_NO_MEMORY:
        return ENOSPC; // the image is full
    case VDKIT_E_BUSY:
        return EBUSY;
    case VDKIT_E_PERMISSION:
        return EPERM;
    default:
        return EIO;
    }
}

// Failures reach the user as an errno; the message goes to stderr, once per
// failed call, so the reason is not lost.
int report(const Status &st, const char *what) {
    if (st.is_ok()) return 0;
    std::cerr << "vdkit fuse: " << what << ": " << st.to_string() << "\n";
    return -errno_of(st);
}

bool is_disk(const char *path) {
    const View &v = view();
    return v.name.empty() ? std::strcmp(path, "/") == 0 : v.name == path;
}

int op_getattr(const char *path, struct stat *st, struct fuse_file_info *) {
    const View &v = view();
    std::memset(st, 0, sizeof *st);
    st->st_uid = v.uid;
    st->st_gid = v.gid;
    st->st_atim = st->st_mtim = st->st_ctim = v.mounted;
    if (is_disk(path)) {
        st->st_mode = S_IFREG | (v.writable ? 0600 : 0400);
        st->st_nlink = 1;
        st->st_size = static_cast<off_t>(v.size);
        st->st_blksize = 4096;
        st->st_blocks = static_cast<blkcnt_t>((v.size + 511) / 512);
        return 0;
    }
    if (std::strcmp(path, "/") == 0) {
        st->st_mode = S_IFDIR | 0755;
        st->st_nlink = 2;
        return 0;
    }
    return -ENOENT;
}

int op_readdir(const char *path, void *buf, fuse_fill_dir_t fill, off_t, struct fuse_file_info *,
               enum fuse_readdir_flags) {
    if (std::strcmp(path, "/") != 0 || view().name.empty()) return -ENOTDIR;
    fill(buf, ".", nullptr, 0, static_cast<fuse_fill_dir_flags>(0));
    fill(buf, "..", nullptr, 0, static_cast<fuse_fill_dir_flags>(0));
    fill(buf, view().name.c_str() + 1, nullptr, 0, static_cast<fuse_fill_dir_flags>(0));
    return 0;
}

int op_open(const char *path, struct fuse_file_info *fi) {
    if (!is_disk(path)) return -ENOENT;
    if ((fi->flags & O_ACCMODE) != O_RDONLY && !view().writable) return -EROFS;
    if (fi->flags & O_TRUNC) return -EPERM; // the disk's size is the image's
    fi->direct_io = 0;
    fi->keep_cache = 0;
    return 0;
}

// [off, off+len) clipped to the disk; false when off is at or past the end.
bool clip(off_t off, size_t &len) {
    const uint64_t size = view().size;
    if (off < 0 || static_cast<uint64_t>(off) >= size) return false;
    len = static_cast<size_t>(std::min<uint64_t>(len, size - static_cast<uint64_t>(off)));
    return true;
}

int op_read(const char *, char *buf, size_t len, off_t off, struct fuse_file_info *) {
    if (!clip(off, len)) return 0;
    const int r = report(on_disk(static_cast<uint64_t>(off), len,
                                 [&](uint64_t at, uint64_t b, uint64_t n) { return disk().read(at, buf + b, n); }),
                         "read");
    return r ? r : static_cast<int>(len);
}

int op_write(const char *, const char *buf, size_t len, off_t off, struct fuse_file_info *) {
    if (!clip(off, len)) return len ? -EFBIG : 0; // a disk does not grow by writing past its end
    const int r = report(on_disk(static_cast<uint64_t>(off), len,
                                 [&](uint64_t at, uint64_t b, uint64_t n) { return disk().write(at, buf + b, n); }),
                         "write");
    return r ? r : static_cast<int>(len);
}

int op_fsync(const char *, int, struct fuse_file_info *) {
    return report(disk().flush(), "fsync");
}

int op_flush(const char *, struct fuse_file_info *) {
    // close(2) of a writer: make what it wrote durable, as a block device's
    // last close does.
    return view().writable ? report(disk().flush(), "flush") : 0;
}

int op_truncate(const char *path, off_t size, struct fuse_file_info *) {
    if (!is_disk(path)) return -ENOENT;
    // Opening with O_TRUNC or truncating to the current size changes nothing.
    return static_cast<uint64_t>(size) == view().size ? 0 : -EPERM;
}

// fallocate(2): PUNCH_HOLE gives the range back (discard, and zeroes what the
// format keeps), ZERO_RANGE writes zeroes; plain allocation is accepted when
// it does not grow the file (the image allocates on write).
int op_fallocate(const char *, int mode, off_t off, off_t len, struct fuse_file_info *) {
    if (!view().writable) return -EROFS;
    size_t n = static_cast<size_t>(len);
    if (len < 0 || !clip(off, n)) return -EINVAL;
    const auto offset = static_cast<uint64_t>(off);
    const auto zero = [&](const char *what) {
        return report(on_disk(offset, n, [](uint64_t at, uint64_t, uint64_t k) { return disk().write_zeroes(at, k); }),
                      what);
    };
    if (mode & FALLOC_FL_PUNCH_HOLE) {
        if (!(mode & FALLOC_FL_KEEP_SIZE)) return -EOPNOTSUPP; // Linux requires KEEP_SIZE with PUNCH_HOLE
        // Discard may leave the parent's data visible; a punched hole reads
        // as zero, so zero the range (cheap where the format records zeroes).
        return zero("punch hole");
    }
    if (mode & FALLOC_FL_ZERO_RANGE) return zero("zero range");
    if (mode & ~FALLOC_FL_KEEP_SIZE) return -EOPNOTSUPP;
    return static_cast<uint64_t>(off) + static_cast<uint64_t>(len) <= view().size ? 0 : -EFBIG;
}

// SEEK_DATA / SEEK_HOLE from the chain's block status: data is what is
// allocated as data; zero and unallocated ranges read as zero and are holes.
// A volume of one extent maps its offsets; one of several (an LVM volume
// of several segments) is all data.
off_t op_lseek(const char *, off_t off, int whence, struct fuse_file_info *) {
    const uint64_t size = view().size;
    if (whence != SEEK_DATA && whence != SEEK_HOLE) return -EINVAL;
    if (off < 0) return -EINVAL;
    if (static_cast<uint64_t>(off) >= size) return -ENXIO;
    const std::optional<Volume> &vol = view().x->volume;
    if (vol && vol->extents.size() != 1) return whence == SEEK_DATA ? off : static_cast<off_t>(size);
    const uint64_t shift = vol ? vol->extents.front().offset : 0;
    uint64_t pos = static_cast<uint64_t>(off);
    while (pos < size) {
        auto run = disk().block_status(pos + shift, size - pos);
        if (!run) return report(run.status(), "block status");
        const bool data = run->state == BlockState::data;
        if ((whence == SEEK_DATA) == data) return static_cast<off_t>(pos);
        pos += run->length;
    }
    return whence == SEEK_DATA ? -ENXIO : static_cast<off_t>(size); // the end is a hole
}

void *op_init(struct fuse_conn_info *, struct fuse_config *) {
    view().was_mounted = true;
    if (view().x->on_mounted) view().x->on_mounted();
    return &view();
}

int op_statfs(const char *, struct statvfs *st) {
    std::memset(st, 0, sizeof *st);
    st->f_bsize = st->f_frsize = 4096;
    st->f_blocks = (view().size + 4095) / 4096;
    st->f_namemax = 255;
    return 0;
}

class FuseCommand : public Command {
    CLI::App *define(CLI::App &app) override {
        auto *sub = app.add_subcommand(
            "fuse", "Show IMAGE (its whole chain) as one file through FUSE, in the foreground until "
                    "`fusermount3 -u MOUNTPOINT`: a directory gets the file NAME, a regular file is covered by it");
        sub->add_option("image", image_, "Image (a path or a URL of a loaded transport)")->required();
        sub->add_option("mountpoint", mountpoint_, "A directory, or a regular file to cover")->required();
        sub->add_option("-f,--format", format_, "Image format (default: probe)");
        sub->add_option("--name", name_, "Name of the file in a directory mountpoint")->default_val("disk");
        sub->add_flag("-r,--read-only", read_only_, "Open the image read-only; the file is read-only");
        add_filter_option(sub, filters_);
        return sub;
    }

    int run() override {
        std::error_code ec;
        const auto status = fs::status(mountpoint_, ec);
        if (ec || !(fs::is_directory(status) || fs::is_regular_file(status)))
            throw CliError(mountpoint_ + ": not an existing directory or regular file to mount on", kExitUsage);
        if (name_.empty() || name_.find('/') != std::string::npos || name_ == "." || name_ == "..")
            throw CliError("--name " + name_ + ": not a file name", kExitUsage);
        auto lib = open_library(globals());
        OpenOptions o;
        o.format = format_;
        o.writable = !read_only_;
        o.filters = parse_filters(filters_);
        FuseExport x;
        x.disk = take(lib->open(image_, o));
        x.writable = !read_only_;
        x.name = fs::is_directory(status) ? name_ : "";
        x.mountpoint = mountpoint_;
        x.fsname = "vdkit:" + image_;
        if (!globals().quiet)
            std::cerr << "vdkit: " << image_ << " is " << (x.name.empty() ? mountpoint_ : mountpoint_ + "/" + x.name)
                      << (read_only_ ? " (read-only)" : "") << " until fusermount3 -u " << mountpoint_ << "\n";
        bool mounted = false;
        const int rc = run_fuse_export(x, mounted);
        // After a working mount, a non-zero status means a signal (Ctrl-C,
        // SIGTERM) ended it: FUSE unmounted, the disk is flushed, all is well.
        if (rc != 0 && !mounted) throw CliError("FUSE could not mount on " + mountpoint_ + " (see the message above)");
        if (rc != 0 && !globals().quiet) std::cerr << "vdkit: " << mountpoint_ << " unmounted by a signal\n";
        return 0;
    }

    std::string image_, mountpoint_, format_, name_ = "disk";
    std::vector<std::string> filters_;
    bool read_only_ = false;
};

} // namespace

int run_fuse_export(FuseExport &x, bool &mounted) {
    View v;
    v.x = &x;
    v.writable = x.writable;
    v.size = x.volume ? x.volume->length : x.disk->size();
    v.name = x.name.empty() ? "" : "/" + x.name;
    clock_gettime(CLOCK_REALTIME, &v.mounted);
    v.uid = getuid();
    v.gid = getgid();

    struct fuse_operations ops {};
    ops.getattr = op_getattr;
    ops.readdir = op_readdir;
    ops.open = op_open;
    ops.read = op_read;
    ops.write = op_write;
    ops.flush = op_flush;
    ops.fsync = op_fsync;
    ops.truncate = op_truncate;
    ops.fallocate = op_fallocate;
    ops.lseek = op_lseek;
    ops.statfs = op_statfs;
    ops.init = op_init;
    // -f: foreground (the caller backgrounds us if it wants); the kernel
    // checks permissions from the modes above.
    // max_idle_threads: libfuse 3.14 warns about its own default (-1) otherwise.
    // fsname: commas would split the -o list.
    std::string fsname = x.fsname;
    for (char &c : fsname)
        if (c == ',') c = '_';
    std::vector<std::string> args{"vdkit-fuse", "-f", "-o",
                                  "default_permissions,max_idle_threads=16,fsname=" + fsname + ",subtype=vdkit",
                                  x.mountpoint};
    if (!x.writable) args.insert(args.end() - 1, {"-o", "ro"});
    std::vector<char *> argv;
    for (auto &a : args)
        argv.push_back(a.data());
    const int rc = fuse_main(static_cast<int>(argv.size()), argv.data(), &ops, &v);
    mounted = v.was_mounted;
    // Unmounted (or failed to mount): close the disk, flushing it.
    const Status flushed = x.disk->flush();
    const Status closed = x.disk->close();
    x.disk.reset();
    check(flushed);
    check(closed);
    return rc;
}

void add_fuse_command(std::vector<std::unique_ptr<Command>> &commands) {
    commands.push_back(std::make_unique<FuseCommand>());
}

} // namespace vdkit::cli
