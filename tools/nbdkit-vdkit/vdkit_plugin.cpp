// nbdkit-vdkit-plugin: serves any disk chain vdkit opens over NBD, as an
// nbdkit plugin (nbdkit-plugin(3), API version 2), through vdkit's public C
// API (vdkit.h) only.
//
//   nbdkit ./nbdkit-vdkit-plugin.so [file=]disk.vmdk [format=vmdk] [readonly=true] [config=vdkit.yaml]
//
// One vdkit_disk handle serves every connection: it is opened after nbdkit
// forks (.after_fork) and closed at .cleanup. The handle is thread-safe
// (reads run concurrently, writes are serialised inside vdkit), so the
// thread model is PARALLEL, and multi-conn is advertised: every connection
// reads and writes the same handle, so a flush on any of them covers writes
// made through all (the condition multi-conn states, NBD protocol
// "Multi-conn"). Block status comes from vdkit_disk_block_status (data,
// zero, unallocated through the whole chain = hole and zero).
// tools/nbdkit-vdkit/README.md has the user's view.
#define NBDKIT_API_VERSION 2
#include <nbdkit-plugin.h>

#include "vdkit/vdkit.h"

#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>

#define THREAD_MODEL NBDKIT_THREAD_MODEL_PARALLEL

namespace {

std::string g_file, g_format, g_config, g_plugin_path;
bool g_readonly = false;
vdkit_library *g_lib = nullptr;
vdkit_disk *g_disk = nullptr;
int g_handle_tag; // connections need a non-NULL handle; all share g_disk

vdkit_error new_error() {
    vdkit_error e{};
    e.struct_size = sizeof e;
    return e;
}

// Report a vdkit failure to nbdkit: its message and the errno the NBD
// client sees.
int fail(const vdkit_error &e) {
    nbdkit_error("%s", e.message[0] ? e.message : vdkit_status_text(e.code));
    int err = EIO;
    switch (e.code) {
    case VDKIT_E_READ_ONLY:
        err = EROFS;
        break;
    case VDKIT_E_OUT_OF_RANGE:
        err = EINVAL;
        break;
    case VDKIT_E_NO_MEMORY:
        err = ENOSPC;
        break; // "the image is full" (vdkit.h, vdkit_disk_write)
    case VDKIT_E_NOT_SUPPORTED:
        err = ENOTSUP;
        break;
    case VDKIT_E_PERMISSION:
        err = EPERM;
        break;
    default:
        break;
    }
    nbdkit_set_error(err);
    return -1;
}

int vd_config(const char *key, const char *value) {
    if (std::strcmp(key, "file") == 0) {
        // A URL (nbd://, http://) is vdkit's to resolve; a path is made
        // absolute (nbdkit may change directory when it forks).
        if (std::strstr(value, "://")) {
            g_file = value;
        } else {
            char *abs = nbdkit_absolute_path(value);
            if (!abs) return -1;
            g_file = abs;
            std::free(abs);
        }
    } else if (std::strcmp(key, "format") == 0) {
        g_format = value;
    } else if (std::strcmp(key, "readonly") == 0) {
        const int r = nbdkit_parse_bool(value);
        if (r == -1) return -1;
        g_readonly = r;
    } else if (std::strcmp(key, "config") == 0) {
        char *abs = nbdkit_absolute_path(value);
        if (!abs) return -1;
        g_config = abs;
        std::free(abs);
    } else if (std::strcmp(key, "plugin_path") == 0) {
        g_plugin_path = value;
    } else {
        nbdkit_error("unknown parameter '%s' (vdkit takes file=, format=, readonly=, config=, plugin_path=)", key);
        return -1;
    }
    return 0;
}

int vd_config_complete() {
    if (g_file.empty()) {
        nbdkit_error("the image to serve is missing: nbdkit vdkit [file=]IMAGE [format=FMT] [readonly=true]");
        return -1;
    }
    return 0;
}

// Open after the fork: vdkit may start worker threads, which a fork would lose.
int vd_after_fork() {
    vdkit_error err = new_error();
    vdkit_library_options o{};
    o.struct_size = sizeof o;
    o.config_file = g_config.empty() ? nullptr : g_config.c_str();
    o.plugin_path = g_plugin_path.empty() ? nullptr : g_plugin_path.c_str();
    if (vdkit_library_open(&o, &g_lib, &err) != VDKIT_OK) return fail(err);
    const uint32_t flags = g_readonly ? VDKIT_DISK_READ_ONLY : VDKIT_DISK_WRITE;
    if (vdkit_disk_open(g_lib, g_file.c_str(), g_format.empty() ? nullptr : g_format.c_str(), flags, nullptr, &g_disk,
                        &err) != VDKIT_OK) {
        fail(err);
        if (!g_readonly &&
            (err.code == VDKIT_E_READ_ONLY || err.code == VDKIT_E_BUSY || err.code == VDKIT_E_NOT_SUPPORTED))
            nbdkit_error("(to serve an image that cannot be written, or that another program writes, pass "
                         "readonly=true)");
        return -1;
    }
    return 0;
}

void vd_cleanup() {
    if (g_disk) {
        vdkit_error err = new_error();
        if (vdkit_disk_close(g_disk, &err) != VDKIT_OK) nbdkit_error("closing %s: %s", g_file.c_str(), err.message);
        g_disk = nullptr;
    }
    vdkit_library_close(g_lib);
    g_lib = nullptr;
}

void *vd_open(int) {
    return &g_handle_tag;
}

int64_t vd_get_size(void *) {
    return static_cast<int64_t>(vdkit_disk_size(g_disk));
}
int vd_can_write(void *) {
    return g_readonly ? 0 : 1;
}
int vd_can_flush(void *) {
    return 1;
}
int vd_can_trim(void *) {
    return g_readonly ? 0 : 1;
}
int vd_can_zero(void *) {
    return g_readonly ? 0 : 1;
}
int vd_can_fua(void *) {
    return NBDKIT_FUA_EMULATE;
}
int vd_can_multi_conn(void *) {
    return 1;
}
int vd_can_extents(void *) {
    return 1;
}

int vd_pread(void *, void *buf, uint32_t count, uint64_t offset, uint32_t) {
    vdkit_error err = new_error();
    if (vdkit_disk_read(g_disk, offset, buf, count, &err) != VDKIT_OK) return fail(err);
    return 0;
}

int vd_flush(void *, uint32_t) {
    vdkit_error err = new_error();
    if (vdkit_disk_flush(g_disk, &err) != VDKIT_OK) return fail(err);
    return 0;
}

int vd_pwrite(void *h, const void *buf, uint32_t count, uint64_t offset, uint32_t flags) {
    vdkit_error err = new_error();
    if (vdkit_disk_write(g_disk, offset, buf, count, &err) != VDKIT_OK) return fail(err);
    return (flags & NBDKIT_FLAG_FUA) ? vd_flush(h, 0) : 0;
}

// Zero: always vdkit's write_zeroes, which makes the range read as zero even
// over a parent (a discard there would show the parent's data).
int vd_zero(void *h, uint32_t count, uint64_t offset, uint32_t flags) {
    if (flags & NBDKIT_FLAG_FAST_ZERO) {
        nbdkit_set_error(ENOTSUP);
        return -1;
    }
    vdkit_error err = new_error();
    if (vdkit_disk_write_zeroes(g_disk, offset, count, &err) != VDKIT_OK) return fail(err);
    return (flags & NBDKIT_FLAG_FUA) ? vd_flush(h, 0) : 0;
}

int vd_trim(void *h, uint32_t count, uint64_t offset, uint32_t flags) {
    vdkit_error err = new_error();
    if (vdkit_disk_discard(g_disk, offset, count, &err) != VDKIT_OK) return fail(err);
    return (flags & NBDKIT_FLAG_FUA) ? vd_flush(h, 0) : 0;
}

// Block status: vdkit's data / zero / unallocated-in-the-whole-chain (which
// reads as zero) become data / zero / hole+zero.
int vd_extents(void *, uint32_t count, uint64_t offset, uint32_t flags, struct nbdkit_extents *extents) {
    const uint64_t end = offset + count;
    for (uint64_t pos = offset; pos < end;) {
        uint32_t state = 0;
        uint64_t run = 0;
        vdkit_error err = new_error();
        if (vdkit_disk_block_status(g_disk, pos, end - pos, &state, &run, &err) != VDKIT_OK) return fail(err);
        uint32_t type = 0;
        if (state == VDKIT_BLOCK_ZERO)
            type = NBDKIT_EXTENT_ZERO;
        else if (state == VDKIT_BLOCK_UNALLOCATED)
            type = NBDKIT_EXTENT_HOLE | NBDKIT_EXTENT_ZERO;
        if (nbdkit_add_extent(extents, pos, run, type) == -1) return -1;
        pos += run;
        if (flags & NBDKIT_FLAG_REQ_ONE) break;
    }
    return 0;
}

struct nbdkit_plugin make_plugin() {
    struct nbdkit_plugin p {};
    p.name = "vdkit";
    p.version = "1.0.0";
    p.longname = "vdkit: any disk chain vdkit opens (VMDK, VDI, raw, ... over any vdkit transport)";
    p.description = "Serves a virtual disk through vdkit's C API, with block status, trim, zero and flush.";
    p.config = vd_config;
    p.config_complete = vd_config_complete;
    p.config_help = "[file=]IMAGE   the image (its whole parent chain is served)\n"
                    "format=FMT     its format (default: probe)\n"
                    "readonly=BOOL  open it read-only (default false)\n"
                    "config=FILE    vdkit configuration file (default: $VDKIT_CONFIG or built-in)\n"
                    "plugin_path=DIRS  ':'-separated vdkit plugin directories searched first";
    p.magic_config_key = "file";
    p.after_fork = vd_after_fork;
    p.cleanup = vd_cleanup;
    p.open = vd_open;
    p.get_size = vd_get_size;
    p.can_write = vd_can_write;
    p.can_flush = vd_can_flush;
    p.can_trim = vd_can_trim;
    p.can_zero = vd_can_zero;
    p.can_fua = vd_can_fua;
    p.can_multi_conn = vd_can_multi_conn;
    p.can_extents = vd_can_extents;
    p.pread = vd_pread;
    p.pwrite = vd_pwrite;
    p.flush = vd_flush;
    p.trim = vd_trim;
    p.zero = vd_zero;
    p.extents = vd_extents;
    return p;
}

struct nbdkit_plugin plugin = make_plugin();

} // namespace

NBDKIT_REGISTER_PLUGIN(plugin)
