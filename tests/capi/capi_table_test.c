/* The C embedder's door: every row of docs/api.md marked supported, called
 * from C (this file is compiled as C11 against vdkit/vdkit.h alone).
 *
 * Each block names the VirtualBox VD and VixDiskLib calls of its table row.
 * Identity fields written here are also checked where the format keeps
 * them, independent of vdkit's readers: VDI header bytes at the offsets of
 * the VirtualBox VDI header (VDIHEADER1PLUS: comment at 0x54, PCHS at 0x15C,
 * uuidCreate at 0x188 as an RTUUID, LCHS at 0x1C8) and the VMDK
 * descriptor's ddb lines (VMware Virtual Disk Format 1.1, "The Disk
 * Database"). tests/capi/capi_test.sh then reads the kept images with
 * vmdkinfo and qemu-img.
 *
 * usage: vdkit_capi_table_test WORKDIR   (WORKDIR: an empty directory) */
#include "vdkit/plugin.h" /* VDKIT_BLOCK_* */
#include "vdkit/vdkit.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The size-stamped structs are append-only: these offsets never move
 * (sdk/docs/abi-policy.md). */
_Static_assert(offsetof(vdkit_library_options, plugin_path) == 16, "vdkit_library_options.plugin_path moved");
_Static_assert(offsetof(vdkit_library_options, log) == 24, "vdkit_library_options.log moved");
_Static_assert(offsetof(vdkit_library_options, log_level) == 40, "vdkit_library_options.log_level moved");
_Static_assert(offsetof(vdkit_disk_image_info, location) == 8, "vdkit_disk_image_info.location moved");
_Static_assert(offsetof(vdkit_disk_image_info, virtual_size) == 48, "vdkit_disk_image_info.virtual_size moved");
_Static_assert(offsetof(vdkit_disk_image_info, uuid) == 80, "vdkit_disk_image_info.uuid moved");
_Static_assert(offsetof(vdkit_disk_image_info, lchs) == 156, "vdkit_disk_image_info.lchs moved");
_Static_assert(sizeof(vdkit_geometry) == 12, "vdkit_geometry is fixed");

static int failures = 0;
static const char *row = "";

static void fail_at(int line, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "FAIL [%s] line %d: ", row, line);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    ++failures;
}

/* A call that must return `want`; on mismatch the message is printed. */
#define EXPECT(want, call)                                                                                             \
    do {                                                                                                               \
        vdkit_status got_ = (call);                                                                                    \
        if (got_ != (want))                                                                                            \
            fail_at(__LINE__, "%s returned %u (%s: %s), expected %u", #call, (unsigned)got_, vdkit_status_text(got_),  \
                    e.message, (unsigned)(want));                                                                      \
    } while (0)
#define OK(call) EXPECT(VDKIT_OK, call)
#define CHECK(cond)                                                                                                    \
    do {                                                                                                               \
        if (!(cond)) fail_at(__LINE__, "%s", #cond);                                                                   \
    } while (0)

static vdkit_error e;
static char dir[1024];

/* WORKDIR/name, in storage that lives until exit (freed then, so that
 * LeakSanitizer reports only the library's leaks). */
static char *paths[64];
static size_t path_count;
static void free_paths(void) {
    while (path_count)
        free(paths[--path_count]);
}
static const char *path(const char *name) {
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    if (!p || path_count == sizeof paths / sizeof paths[0]) abort();
    if (path_count == 0) atexit(free_paths);
    snprintf(p, n, "%s/%s", dir, name);
    paths[path_count++] = p;
    return p;
}

/* ---- log callback: what the library logs arrives here ---- */
static char logged[8192];
static unsigned logged_count[4];
static void on_log(void *opaque, uint32_t level, const char *message) {
    (void)opaque;
    if (level < 4) ++logged_count[level];
    if (strlen(logged) + strlen(message) + 2 < sizeof logged) {
        strcat(logged, message);
        strcat(logged, "\n");
    }
}

static int progress_calls = 0;
static int on_progress(void *opaque, uint64_t done, uint64_t total) {
    (void)opaque;
    (void)done;
    (void)total;
    ++progress_calls;
    return 0;
}

static int aio_done = 0;
static vdkit_status aio_status = 99;
static void on_done(void *opaque, vdkit_status status, const char *message) {
    (void)opaque;
    (void)message;
    aio_status = status;
    ++aio_done;
}

static int findings = 0;
static void on_finding(void *opaque, uint32_t severity, uint64_t offset, const char *message) {
    (void)opaque;
    (void)severity;
    (void)offset;
    (void)message;
    ++findings;
}

static int read_file(const char *file, unsigned char *buf, size_t cap, size_t *len) {
    FILE *f = fopen(file, "rb");
    if (!f) return 0;
    *len = fread(buf, 1, cap, f);
    fclose(f);
    return 1;
}

static uint32_t le32(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static int find_line(const unsigned char *buf, size_t len, const char *line) {
    size_t n = strlen(line);
    for (size_t i = 0; i + n <= len; ++i)
        if (memcmp(buf + i, line, n) == 0) return 1;
    return 0;
}

static int plugin_present(vdkit_library *lib, uint32_t kind, const char *name) {
    uint32_t n = vdkit_plugin_count(lib);
    for (uint32_t i = 0; i < n; ++i) {
        vdkit_plugin_summary s;
        memset(&s, 0, sizeof s);
        s.struct_size = sizeof s;
        if (vdkit_plugin_get(lib, i, &s, &e) == VDKIT_OK && s.kind == kind && strcmp(s.name, name) == 0) return 1;
    }
    return 0;
}

static vdkit_disk_image_info info_of(vdkit_disk *d, uint32_t image) {
    vdkit_disk_image_info i;
    memset(&i, 0, sizeof i);
    i.struct_size = sizeof i;
    OK(vdkit_disk_get_image_info(d, image, &i, &e));
    return i;
}

static const uint8_t kUuid[16] = {0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88,
                                  0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xf0, 0x01};
static const uint8_t kModUuid[16] = {0x12, 0x34, 0xab, 0xcd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
static const uint8_t kParentUuid[16] = {0xa0, 0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7,
                                        0xa8, 0xa9, 0xaa, 0xab, 0xac, 0xad, 0xae, 0xaf};

/* VDSetUuid / VDSetPCHSGeometry / VDSetLCHSGeometry / VDSetComment on the
 * top image of a fresh image of `format`, read back through vdkit after a
 * reopen. */
static void identity_round_trip(vdkit_library *lib, const char *format, const char *file) {
    vdkit_disk *d = NULL;
    OK(vdkit_disk_create(lib, file, format, 8u << 20, 0, NULL, NULL, &d, &e));
    if (!d) return;
    const vdkit_geometry pchs = {1000, 16, 63}, lchs = {520, 32, 63};
    OK(vdkit_disk_set_uuid(d, 0, VDKIT_UUID_IMAGE, kUuid, &e));
    OK(vdkit_disk_set_uuid(d, 0, VDKIT_UUID_MODIFICATION, kModUuid, &e));
    OK(vdkit_disk_set_geometry(d, 0, &pchs, &lchs, &e));
    OK(vdkit_disk_set_comment(d, 0, "written through the C API", &e));
    EXPECT(VDKIT_E_INVALID_ARGUMENT, vdkit_disk_set_comment(d, 1, "beyond the chain", &e));
    EXPECT(VDKIT_E_INVALID_ARGUMENT, vdkit_disk_set_uuid(d, 0, 7, kUuid, &e));
    OK(vdkit_disk_close(d, &e));

    OK(vdkit_disk_open(lib, file, NULL, VDKIT_DISK_READ_ONLY, NULL, &d, &e));
    if (!d) return;
    vdkit_disk_image_info i = info_of(d, 0);
    CHECK(strcmp(i.format, format) == 0);
    CHECK(strcmp(i.location, file) == 0);
    CHECK(i.virtual_size == 8u << 20 && i.sector_size == 512);
    CHECK(i.file_size != UINT64_MAX && i.file_size > 0);
    CHECK(i.flags & VDKIT_IMAGE_INFO_READ_ONLY);
    CHECK(!(i.flags & VDKIT_IMAGE_INFO_HAS_PARENT));
    CHECK(memcmp(i.uuid, kUuid, 16) == 0);
    CHECK(memcmp(i.modification_uuid, kModUuid, 4) == 0);
    CHECK(i.pchs.cylinders == 1000 && i.pchs.heads == 16 && i.pchs.sectors == 63);
    CHECK(i.lchs.cylinders == 520 && i.lchs.heads == 32 && i.lchs.sectors == 63);
    CHECK(strcmp(i.comment, "written through the C API") == 0);
    /* Strings stay valid until close, one copy per distinct text. */
    vdkit_disk_image_info again = info_of(d, 0);
    CHECK(again.format == i.format && again.comment == i.comment);
    /* A read-only disk refuses the setters. */
    EXPECT(VDKIT_E_READ_ONLY, vdkit_disk_set_comment(d, 0, "no", &e));
    EXPECT(VDKIT_E_READ_ONLY, vdkit_disk_set_uuid(d, 0, VDKIT_UUID_IMAGE, kUuid, &e));
    EXPECT(VDKIT_E_READ_ONLY, vdkit_disk_set_geometry(d, 0, &pchs, NULL, &e));
    OK(vdkit_disk_close(d, &e));
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s WORKDIR\n", argv[0]);
        return 2;
    }
    snprintf(dir, sizeof dir, "%s", argv[1]);
    memset(&e, 0, sizeof e);
    e.struct_size = sizeof e;

    /* ---- VDInit/VDCreate, VixDiskLib_InitEx (log callbacks): vdkit_library_open ---- */
    row = "library + log callback";
    vdkit_library_options lo;
    memset(&lo, 0, sizeof lo);
    lo.struct_size = sizeof lo;
    lo.flags = VDKIT_LIB_NO_ENV_PATH | VDKIT_LIB_NO_INSTALL_DIR;
    /* The bad plugins make the loader warn: the warnings reach on_log. */
    lo.plugin_path = VDKIT_TEST_PLUGIN_DIR ":" VDKIT_TEST_BAD_PLUGIN_DIR;
    lo.log = on_log;
    vdkit_library *lib = NULL;
    OK(vdkit_library_open(&lo, &lib, &e));
    if (!lib) return 1;
    CHECK(logged_count[VDKIT_LOG_WARNING] > 0);
    CHECK(strstr(logged, "skipping plugin") != NULL);
    CHECK(strstr(logged, "no_entry.so") != NULL);
    /* log_level: only errors are delivered. */
    {
        vdkit_library *quiet = NULL;
        memset(logged_count, 0, sizeof logged_count);
        lo.flags |= VDKIT_LIB_LOG_LEVEL;
        lo.log_level = VDKIT_LOG_ERROR;
        OK(vdkit_library_open(&lo, &quiet, &e));
        CHECK(logged_count[VDKIT_LOG_WARNING] == 0);
        vdkit_library_close(quiet);
        lo.log_level = 9;
        EXPECT(VDKIT_E_INVALID_ARGUMENT, vdkit_library_open(&lo, &quiet, &e));
        lo.flags &= ~VDKIT_LIB_LOG_LEVEL;
    }
    /* An older caller's struct (without the log fields) still works. */
    {
        vdkit_library *old = NULL;
        vdkit_library_options small;
        memset(&small, 0, sizeof small);
        small.struct_size = (uint32_t)offsetof(vdkit_library_options, log);
        small.flags = VDKIT_LIB_NO_ENV_PATH | VDKIT_LIB_NO_INSTALL_DIR | VDKIT_LIB_QUIET;
        small.plugin_path = VDKIT_TEST_PLUGIN_DIR;
        OK(vdkit_library_open(&small, &old, &e));
        CHECK(old && plugin_present(old, 1, "vdi"));
        vdkit_library_close(old);
    }

    /* ---- VDBackendInfo / VDFilterInfo: vdkit_plugin_count, vdkit_plugin_get ---- */
    row = "plugin list";
    CHECK(plugin_present(lib, 1, "vdi"));
    CHECK(plugin_present(lib, 1, "vmdk"));
    CHECK(plugin_present(lib, 3, "file"));
    CHECK(!plugin_present(lib, 2, "rot"));

    /* ---- VDPluginLoadFromFilename / VDPluginUnloadFromFilename ---- */
    row = "plugin load/unload";
    const char *rot = VDKIT_TEST_EXTRA_PLUGIN_DIR "/test_rot_filter.so";
    uint32_t count = 0;
    OK(vdkit_plugin_load(lib, rot, &count, &e));
    CHECK(count == 1);
    CHECK(plugin_present(lib, 2, "rot"));
    EXPECT(VDKIT_E_EXISTS, vdkit_plugin_load(lib, rot, &count, &e));
    EXPECT(VDKIT_E_NOT_FOUND, vdkit_plugin_load(lib, VDKIT_TEST_EXTRA_PLUGIN_DIR "/no_such_plugin.so", NULL, &e));
    EXPECT(VDKIT_E_ABI, vdkit_plugin_load(lib, VDKIT_TEST_BAD_PLUGIN_DIR "/no_entry.so", NULL, &e));
    CHECK(strstr(e.message, "no_entry.so") != NULL);
    EXPECT(VDKIT_E_EXISTS, vdkit_plugin_load(lib, VDKIT_TEST_PLUGIN_DIR "/vdkit_format_vdi.so", NULL, &e));

    /* ---- VDFilterAdd (at open/create): vdkit_disk_create_filtered / open_filtered ---- */
    row = "filters";
    {
        const char *filters[] = {"rot:bits=3", NULL};
        vdkit_disk *fd = NULL;
        unsigned char data[4096], back[4096];
        memset(data, 0x5a, sizeof data);
        OK(vdkit_disk_create_filtered(lib, path("filtered.raw"), "raw", 1u << 20, 0, NULL, NULL, filters, &fd, &e));
        OK(vdkit_disk_write(fd, 0, data, sizeof data, &e));
        /* In use: unloading is refused and changes nothing. */
        EXPECT(VDKIT_E_BUSY, vdkit_plugin_unload(lib, rot, &e));
        CHECK(strstr(e.message, "rot") != NULL);
        CHECK(plugin_present(lib, 2, "rot"));
        OK(vdkit_disk_close(fd, &e));
        OK(vdkit_disk_open_filtered(lib, path("filtered.raw"), "raw", 0, NULL, filters, &fd, &e));
        OK(vdkit_disk_read(fd, 0, back, sizeof back, &e));
        CHECK(memcmp(data, back, sizeof data) == 0);
        OK(vdkit_disk_close(fd, &e));
        /* The bytes on disk are rotated: the filter really ran. */
        size_t len = 0;
        static unsigned char raw[1 << 20];
        CHECK(read_file(path("filtered.raw"), raw, sizeof raw, &len) && len >= 4096 && raw[0] != 0x5a);
    }
    /* A disk-level filter (capability disk-filter) in the same list: read
     * through, never written through when it declares no writes (rodisk:
     * XOR 0x5a on reads only). */
    row = "disk-level filters";
    {
        OK(vdkit_plugin_load(lib, VDKIT_TEST_EXTRA_PLUGIN_DIR "/test_ro_disk_filter.so", NULL, &e));
        CHECK(plugin_present(lib, 2, "rodisk"));
        const char *filters[] = {"rodisk", NULL};
        vdkit_disk *fd = NULL;
        unsigned char data[4096], back[4096];
        memset(data, 0x11, sizeof data);
        OK(vdkit_disk_create(lib, path("rodisk.raw"), "raw", 1u << 20, 0, NULL, NULL, &fd, &e));
        OK(vdkit_disk_write(fd, 0, data, sizeof data, &e));
        OK(vdkit_disk_close(fd, &e));
        OK(vdkit_disk_open_filtered(lib, path("rodisk.raw"), "raw", VDKIT_DISK_WRITE, NULL, filters, &fd, &e));
        OK(vdkit_disk_read(fd, 0, back, sizeof back, &e));
        CHECK(back[0] == (0x11 ^ 0x5a) && back[4095] == (0x11 ^ 0x5a));
        memset(back, 0x77, sizeof back);
        EXPECT(VDKIT_E_NOT_SUPPORTED, vdkit_disk_write(fd, 0, back, sizeof back, &e));
        CHECK(strstr(e.message, "rodisk") != NULL);
        OK(vdkit_disk_close(fd, &e));
        OK(vdkit_disk_open(lib, path("rodisk.raw"), "raw", VDKIT_DISK_READ_ONLY, NULL, &fd, &e));
        OK(vdkit_disk_read(fd, 0, back, sizeof back, &e));
        CHECK(memcmp(data, back, sizeof data) == 0); /* the refused write changed nothing */
        OK(vdkit_disk_close(fd, &e));
    }
    row = "plugin load/unload";
    OK(vdkit_plugin_unload(lib, rot, &e));
    CHECK(!plugin_present(lib, 2, "rot"));
    EXPECT(VDKIT_E_NOT_FOUND, vdkit_plugin_unload(lib, rot, &e));
    OK(vdkit_plugin_load(lib, rot, NULL, &e)); /* loadable again */
    CHECK(plugin_present(lib, 2, "rot"));
    /* A plugin file named as a plugin path is loaded (not only directories). */
    {
        vdkit_library *one = NULL;
        vdkit_library_options o = lo;
        o.plugin_path = rot;
        o.log = NULL;
        o.flags |= VDKIT_LIB_QUIET;
        OK(vdkit_library_open(&o, &one, &e));
        CHECK(one && vdkit_plugin_count(one) == 1 && plugin_present(one, 2, "rot"));
        vdkit_library_close(one);
    }

    /* ---- VDCreateBase, VixDiskLib_Create / VDOpen, VixDiskLib_Open / VDRead, VDWrite, VDFlush,
     *      VixDiskLib_Read/Write / VDGetCount / VDGetSize / VDClose ---- */
    row = "create/open/read/write";
    const char *base = path("base.vdi");
    vdkit_disk *d = NULL;
    unsigned char buf[65536], back[65536];
    for (size_t i = 0; i < sizeof buf; ++i)
        buf[i] = (unsigned char)(i * 7 + 1);
    OK(vdkit_disk_create(lib, base, "vdi", 16u << 20, 0, NULL, NULL, &d, &e));
    OK(vdkit_disk_write(d, 1u << 20, buf, sizeof buf, &e));
    OK(vdkit_disk_flush(d, &e));
    CHECK(vdkit_disk_size(d) == 16u << 20);
    CHECK(vdkit_disk_image_count(d) == 1);
    OK(vdkit_disk_read(d, 1u << 20, back, sizeof back, &e));
    CHECK(memcmp(buf, back, sizeof buf) == 0);
    EXPECT(VDKIT_E_OUT_OF_RANGE, vdkit_disk_read(d, 16u << 20, back, 1, &e));

    /* ---- VDQueryRegions (allocation): vdkit_disk_block_status ---- */
    row = "block status";
    {
        uint32_t state = 99;
        uint64_t run = 0;
        OK(vdkit_disk_block_status(d, 0, 1u << 20, &state, &run, &e));
        CHECK(state != VDKIT_BLOCK_DATA && run == 1u << 20);
        OK(vdkit_disk_block_status(d, 1u << 20, 65536, &state, &run, &e));
        CHECK(state == VDKIT_BLOCK_DATA);
    }

    /* ---- VDDiscardRanges / write zeroes ---- */
    row = "discard/zero";
    OK(vdkit_disk_write(d, 4u << 20, buf, sizeof buf, &e));
    OK(vdkit_disk_write_zeroes(d, 4u << 20, 4096, &e));
    OK(vdkit_disk_read(d, 4u << 20, back, 4096, &e));
    {
        int zero = 1;
        for (int i = 0; i < 4096; ++i)
            zero &= back[i] == 0;
        CHECK(zero);
    }
    OK(vdkit_disk_discard(d, 8u << 20, 1u << 20, &e));

    /* ---- VDAsyncRead / VDAsyncWrite / VDAsyncFlush / VDAsyncDiscardRanges ---- */
    row = "aio";
    OK(vdkit_disk_aio_write(d, 2u << 20, buf, 4096, on_done, NULL, &e));
    OK(vdkit_disk_aio_flush(d, on_done, NULL, &e));
    OK(vdkit_disk_aio_read(d, 2u << 20, back, 4096, on_done, NULL, &e));
    OK(vdkit_disk_aio_write_zeroes(d, 3u << 20, 4096, on_done, NULL, &e));
    OK(vdkit_disk_aio_discard(d, 10u << 20, 1u << 20, on_done, NULL, &e));
    OK(vdkit_disk_aio_drain(d, &e));
    CHECK(aio_done == 5 && aio_status == VDKIT_OK);
    CHECK(memcmp(buf, back, 4096) == 0);

    /* ---- VDGetFormat, VDGetFilename, VDGetFileSize, VDIsReadOnly, VDGetUuid, VDGetModificationUuid,
     *      VDGetPCHSGeometry, VDGetLCHSGeometry, VDGetComment, VDGetSectorSize, VDGetImageFlags,
     *      VixDiskLib_GetInfo: vdkit_disk_get_image_info ---- */
    row = "image info";
    {
        vdkit_disk_image_info i = info_of(d, 0);
        CHECK(strcmp(i.format, "vdi") == 0 && strcmp(i.location, base) == 0);
        CHECK(i.virtual_size == 16u << 20 && i.sector_size == 512 && i.granularity == 1u << 20);
        CHECK(!(i.flags & VDKIT_IMAGE_INFO_READ_ONLY));
        CHECK(strcmp(i.parent_location, "") == 0 && strcmp(i.comment, "") == 0);
        static const uint8_t zero[16];
        CHECK(memcmp(i.uuid, zero, 16) != 0 && memcmp(i.parent_uuid, zero, 16) == 0);
        /* A smaller struct_size (an older caller): only that much is filled. */
        vdkit_disk_image_info small;
        memset(&small, 0xee, sizeof small);
        small.struct_size = (uint32_t)offsetof(vdkit_disk_image_info, virtual_size);
        OK(vdkit_disk_get_image_info(d, 0, &small, &e));
        CHECK(small.struct_size == offsetof(vdkit_disk_image_info, virtual_size));
        CHECK(strcmp(small.format, "vdi") == 0);
        CHECK(small.virtual_size == 0xeeeeeeeeeeeeeeeeull);
        small.struct_size = 4;
        EXPECT(VDKIT_E_INVALID_ARGUMENT, vdkit_disk_get_image_info(d, 0, &small, &e));
        EXPECT(VDKIT_E_INVALID_ARGUMENT, vdkit_disk_get_image_info(d, 1, &i, &e));
    }

    /* ---- VixDiskLib_GetMetadataKeys / ReadMetadata / WriteMetadata (VDI has none) ---- */
    row = "metadata (vdi)";
    {
        char keys[64];
        EXPECT(VDKIT_E_NOT_SUPPORTED, vdkit_disk_metadata_keys(d, keys, sizeof keys, NULL, &e));
    }

    /* ---- VDCompact (VixDiskLib_Shrink + Defragment), VDResize (VixDiskLib_Grow),
     *      VDRepair (VixDiskLib_CheckRepair) ---- */
    row = "maintenance";
    progress_calls = 0;
    OK(vdkit_disk_compact(d, on_progress, NULL, &e));
    OK(vdkit_disk_resize(d, 32u << 20, 0, &e));
    CHECK(vdkit_disk_size(d) == 32u << 20);
    {
        vdkit_check_summary cs;
        memset(&cs, 0, sizeof cs);
        cs.struct_size = sizeof cs;
        findings = 0;
        OK(vdkit_disk_check(d, 0, on_finding, NULL, &cs, &e));
        CHECK(cs.errors == 0 && cs.leaks == 0);
    }
    OK(vdkit_disk_close(d, &e));

    /* ---- VDCreateDiff, VixDiskLib_CreateChild ---- */
    row = "diff";
    const char *child = path("child.vdi");
    OK(vdkit_disk_create(lib, child, "vdi", 0, 0, NULL, base, &d, &e));
    OK(vdkit_disk_write(d, 0, buf, 4096, &e));
    CHECK(vdkit_disk_image_count(d) == 2);
    {
        /* VDGetParentUuid, VDGetParentModificationUuid */
        vdkit_disk_image_info b = info_of(d, 0), c = info_of(d, 1);
        CHECK(c.flags & VDKIT_IMAGE_INFO_HAS_PARENT);
        CHECK(memcmp(c.parent_uuid, b.uuid, 16) == 0);
        CHECK(memcmp(c.parent_modification_uuid, b.modification_uuid, 16) == 0);
        /* the base is open read-only below a writable top */
        CHECK(b.flags & VDKIT_IMAGE_INFO_READ_ONLY);
        CHECK(!(c.flags & VDKIT_IMAGE_INFO_READ_ONLY));
        EXPECT(VDKIT_E_READ_ONLY, vdkit_disk_set_comment(d, 0, "base", &e));
        CHECK(strstr(e.message, "writable_chain") != NULL);
        /* VDSetParentUuid on the child, read back */
        OK(vdkit_disk_set_uuid(d, 1, VDKIT_UUID_PARENT, kParentUuid, &e));
        c = info_of(d, 1);
        CHECK(memcmp(c.parent_uuid, kParentUuid, 16) == 0);
        OK(vdkit_disk_set_uuid(d, 1, VDKIT_UUID_PARENT, b.uuid, &e));
    }
    OK(vdkit_disk_close(d, &e));
    /* With WRITE_CHAIN a lower image is writable too. */
    OK(vdkit_disk_open(lib, child, NULL, VDKIT_DISK_WRITE | VDKIT_DISK_WRITE_CHAIN, NULL, &d, &e));
    OK(vdkit_disk_set_comment(d, 0, "the base", &e));
    CHECK(strcmp(info_of(d, 0).comment, "the base") == 0);
    OK(vdkit_disk_close(d, &e));

    /* ---- open flags: VD_OPEN_FLAGS_READONLY / VIXDISKLIB_FLAG_OPEN_READ_ONLY ---- */
    row = "open flags";
    OK(vdkit_disk_open(lib, child, NULL, VDKIT_DISK_READ_ONLY, NULL, &d, &e));
    EXPECT(VDKIT_E_READ_ONLY, vdkit_disk_write(d, 0, buf, 512, &e));
    OK(vdkit_disk_close(d, &e));
    /* VIXDISKLIB_FLAG_OPEN_SINGLE_LINK */
    OK(vdkit_disk_open(lib, child, NULL, VDKIT_DISK_SINGLE_LINK, NULL, &d, &e));
    CHECK(vdkit_disk_image_count(d) == 1);
    OK(vdkit_disk_close(d, &e));
    /* VD_OPEN_FLAGS_INFO */
    OK(vdkit_disk_open(lib, child, NULL, VDKIT_DISK_INFO, NULL, &d, &e));
    CHECK(vdkit_disk_image_count(d) == 2);
    CHECK(strcmp(info_of(d, 1).format, "vdi") == 0);
    EXPECT(VDKIT_E_NOT_SUPPORTED, vdkit_disk_read(d, 0, back, 512, &e));
    {
        uint32_t st;
        uint64_t run;
        EXPECT(VDKIT_E_NOT_SUPPORTED, vdkit_disk_block_status(d, 0, 512, &st, &run, &e));
    }
    OK(vdkit_disk_close(d, &e));
    EXPECT(VDKIT_E_INVALID_ARGUMENT,
           vdkit_disk_open(lib, child, NULL, VDKIT_DISK_INFO | VDKIT_DISK_WRITE, NULL, &d, &e));
    /* VD_OPEN_FLAGS_SHAREABLE / qemu -U: a writer holds the image */
    {
        vdkit_disk *writer = NULL;
        OK(vdkit_disk_open(lib, child, NULL, VDKIT_DISK_WRITE, NULL, &writer, &e));
        EXPECT(VDKIT_E_BUSY, vdkit_disk_open(lib, child, NULL, 0, NULL, &d, &e));
        OK(vdkit_disk_open(lib, child, NULL, VDKIT_DISK_FORCE_SHARE, NULL, &d, &e));
        OK(vdkit_disk_read(d, 0, back, 4096, &e));
        CHECK(memcmp(back, buf, 4096) == 0);
        OK(vdkit_disk_close(d, &e));
        OK(vdkit_disk_close(writer, &e));
    }
    /* VIXDISKLIB_FLAG_OPEN_UNBUFFERED: O_DIRECT through the file transport, or the
     * file system's refusal named */
    {
        vdkit_status st = vdkit_disk_open(lib, child, NULL, VDKIT_DISK_DIRECT, NULL, &d, &e);
        if (st == VDKIT_OK) {
            OK(vdkit_disk_read(d, 0, back, 4096, &e));
            CHECK(memcmp(back, buf, 4096) == 0);
            OK(vdkit_disk_read(d, 1u << 20, back, 1000, &e)); /* unaligned: bounce buffers */
            CHECK(memcmp(back, buf, 1000) == 0);
            OK(vdkit_disk_close(d, &e));
        } else {
            CHECK(st == VDKIT_E_NOT_SUPPORTED && strstr(e.message, "O_DIRECT") != NULL);
        }
    }

    /* ---- VDMerge ---- */
    row = "merge";
    {
        const char *m = path("merge-base.vdi"), *mc = path("merge-child.vdi");
        OK(vdkit_disk_create(lib, m, "vdi", 4u << 20, 0, NULL, NULL, &d, &e));
        OK(vdkit_disk_close(d, &e));
        OK(vdkit_disk_create(lib, mc, "vdi", 0, 0, NULL, m, &d, &e));
        OK(vdkit_disk_write(d, 0, buf, 4096, &e));
        OK(vdkit_disk_close(d, &e));
        OK(vdkit_disk_open(lib, mc, NULL, VDKIT_DISK_WRITE | VDKIT_DISK_WRITE_CHAIN, NULL, &d, &e));
        OK(vdkit_disk_merge(d, 1, 0, NULL, NULL, &e));
        CHECK(vdkit_disk_image_count(d) == 1);
        OK(vdkit_disk_close(d, &e));
        OK(vdkit_disk_open(lib, m, NULL, 0, NULL, &d, &e));
        OK(vdkit_disk_read(d, 0, back, 4096, &e));
        CHECK(memcmp(back, buf, 4096) == 0);
        OK(vdkit_disk_close(d, &e));
    }

    /* ---- VDCopy / VixDiskLib_Clone, VDCopyEx, VixDiskLib_SpaceNeededForClone ---- */
    row = "copy/measure";
    {
        vdkit_disk *src = NULL, *dst = NULL;
        uint64_t required = 0, full = 0;
        OK(vdkit_disk_open(lib, child, NULL, 0, NULL, &src, &e));
        OK(vdkit_library_measure(lib, "vmdk", NULL, src, 0, &required, &full, &e));
        CHECK(required > 0 && full >= required);
        OK(vdkit_disk_create(lib, path("clone.vmdk"), "vmdk", vdkit_disk_size(src), 0, NULL, NULL, &dst, &e));
        progress_calls = 0;
        OK(vdkit_disk_copy(lib, src, dst, on_progress, NULL, &e));
        CHECK(progress_calls > 0);
        OK(vdkit_disk_read(dst, 1u << 20, back, sizeof back, &e));
        CHECK(memcmp(back, buf, sizeof buf) == 0);
        OK(vdkit_disk_close(dst, &e));
        vdkit_copy_options co;
        memset(&co, 0, sizeof co);
        co.struct_size = sizeof co;
        co.threads = 2;
        OK(vdkit_disk_create(lib, path("clone2.vdi"), "vdi", vdkit_disk_size(src), 0, NULL, NULL, &dst, &e));
        OK(vdkit_disk_copy_ex(lib, src, dst, &co, &e));
        OK(vdkit_disk_read(dst, 0, back, 4096, &e));
        CHECK(memcmp(back, buf, 4096) == 0);
        uint32_t idx = 0;
        EXPECT(VDKIT_E_NOT_FOUND, vdkit_disk_common_image(src, dst, &idx, &e));
        OK(vdkit_disk_close(dst, &e));
        OK(vdkit_disk_close(src, &e));
    }

    /* ---- VixDiskLib_GetMetadataKeys / ReadMetadata / WriteMetadata (VMDK) ---- */
    row = "metadata (vmdk)";
    OK(vdkit_disk_open(lib, path("clone.vmdk"), NULL, VDKIT_DISK_WRITE, NULL, &d, &e));
    OK(vdkit_disk_metadata_set(d, "ddb.capiTest", "42", &e));
    {
        char keys[4096], value[64];
        uint64_t needed = 0;
        OK(vdkit_disk_metadata_keys(d, NULL, 0, &needed, &e));
        CHECK(needed > 2 && needed <= sizeof keys);
        memset(keys, 'x', sizeof keys);
        OK(vdkit_disk_metadata_keys(d, keys, sizeof keys, &needed, &e));
        CHECK(keys[needed - 1] == '\0' && keys[needed - 2] == '\0');
        int found = 0, n = 0;
        for (const char *k = keys; *k; k += strlen(k) + 1, ++n)
            found |= strcmp(k, "ddb.capiTest") == 0;
        CHECK(found && n >= 2);
        /* too small: an empty list and the size needed */
        keys[0] = 'x';
        OK(vdkit_disk_metadata_keys(d, keys, 3, &needed, &e));
        CHECK(keys[0] == '\0' && needed > 3);
        OK(vdkit_disk_metadata_get(d, "ddb.capiTest", value, sizeof value, NULL, &e));
        CHECK(strcmp(value, "42") == 0);
    }
    OK(vdkit_disk_close(d, &e));

    /* ---- VDSetUuid/VDSetModificationUuid/VDSetPCHSGeometry/VDSetLCHSGeometry/VDSetComment ---- */
    row = "identity (vdi)";
    identity_round_trip(lib, "vdi", path("identity.vdi"));
    {
        /* VDI header bytes at the documented offsets. */
        unsigned char h[0x200];
        size_t len = 0;
        CHECK(read_file(path("identity.vdi"), h, sizeof h, &len) && len == sizeof h);
        CHECK(le32(h + 0x48) >= 0x190); /* cbHeader with the LCHS field */
        CHECK(strcmp((const char *)h + 0x54, "written through the C API") == 0);
        CHECK(le32(h + 0x15c) == 1000 && le32(h + 0x160) == 16 && le32(h + 0x164) == 63);
        /* VirtualBox stores RTUUIDs with the first three fields little-endian. */
        static const uint8_t uuid_le[16] = {0x44, 0x33, 0x22, 0x11, 0x66, 0x55, 0x88, 0x77,
                                            0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xf0, 0x01};
        static const uint8_t mod_le[16] = {0xcd, 0xab, 0x34, 0x12};
        CHECK(memcmp(h + 0x188, uuid_le, 16) == 0);
        CHECK(memcmp(h + 0x198, mod_le, 16) == 0);
        CHECK(le32(h + 0x1c8) == 520 && le32(h + 0x1cc) == 32 && le32(h + 0x1d0) == 63);
    }
    row = "identity (vmdk)";
    identity_round_trip(lib, "vmdk", path("identity.vmdk"));
    {
        /* The embedded descriptor's disk database lines. */
        static unsigned char v[65536];
        size_t len = 0;
        CHECK(read_file(path("identity.vmdk"), v, sizeof v, &len) && len > 1024);
        CHECK(find_line(v, len, "ddb.uuid.image = \"11 22 33 44 55 66 77 88-99 aa bb cc dd ee f0 01\""));
        CHECK(find_line(v, len, "CID=1234abcd"));
        CHECK(find_line(v, len, "ddb.geometry.cylinders = \"1000\""));
        CHECK(find_line(v, len, "ddb.geometry.heads = \"16\""));
        CHECK(find_line(v, len, "ddb.geometry.sectors = \"63\""));
        CHECK(find_line(v, len, "ddb.geometry.biosCylinders = \"520\""));
        CHECK(find_line(v, len, "ddb.geometry.biosHeads = \"32\""));
        CHECK(find_line(v, len, "ddb.comment = \"written through the C API\""));
    }
    row = "identity (raw)";
    OK(vdkit_disk_create(lib, path("plain.raw"), "raw", 1u << 20, 0, NULL, NULL, &d, &e));
    EXPECT(VDKIT_E_NOT_SUPPORTED, vdkit_disk_set_comment(d, 0, "x", &e));
    EXPECT(VDKIT_E_NOT_SUPPORTED, vdkit_disk_set_uuid(d, 0, VDKIT_UUID_IMAGE, kUuid, &e));
    OK(vdkit_disk_close(d, &e));

    /* ---- VixDiskLib_IsAttachPossible / VixDiskLib_Attach ---- */
    row = "attach";
    {
        vdkit_disk *parent = NULL, *kid = NULL;
        OK(vdkit_disk_open(lib, base, NULL, 0, NULL, &parent, &e));
        OK(vdkit_disk_open(lib, child, NULL, VDKIT_DISK_NO_PARENTS, NULL, &kid, &e));
        OK(vdkit_disk_is_attach_possible(parent, kid, 0, &e));
        OK(vdkit_disk_attach(parent, kid, 0, &e));
        CHECK(vdkit_disk_image_count(kid) == 2);
        OK(vdkit_disk_close(parent, &e));
        OK(vdkit_disk_close(kid, &e));
    }

    /* ---- VDCreateCache / VDCacheOpen / VDCacheClose ---- */
    row = "cache";
    OK(vdkit_disk_open(lib, child, NULL, 0, NULL, &d, &e));
    OK(vdkit_disk_attach_cache(d, path("cache.vdi"), NULL, NULL, &e));
    OK(vdkit_disk_read(d, 1u << 20, back, sizeof back, &e));
    OK(vdkit_disk_read(d, 1u << 20, back, sizeof back, &e));
    {
        vdkit_cache_stats cs;
        memset(&cs, 0, sizeof cs);
        cs.struct_size = sizeof cs;
        OK(vdkit_disk_cache_stats(d, &cs, &e));
        CHECK(cs.hit_bytes >= sizeof back && cs.miss_bytes >= sizeof back);
    }
    OK(vdkit_disk_detach_cache(d, VDKIT_CACHE_DELETE, &e));
    OK(vdkit_disk_close(d, &e));

    /* ---- VixDiskLib_Rename / VixDiskLib_Unlink ---- */
    row = "rename/delete";
    OK(vdkit_image_rename(lib, path("clone2.vdi"), path("renamed.vdi"), 0, &e));
    EXPECT(VDKIT_E_NOT_FOUND, vdkit_disk_open(lib, path("clone2.vdi"), NULL, 0, NULL, &d, &e));
    OK(vdkit_image_delete(lib, path("renamed.vdi"), 0, &e));
    EXPECT(VDKIT_E_PERMISSION, vdkit_image_delete(lib, base, 0, &e)); /* child.vdi is built on it */

    /* ---- VixDiskLib_GetErrorText: vdkit_status_text and vdkit_error.message ---- */
    row = "errors";
    CHECK(strcmp(vdkit_status_text(VDKIT_E_IO), "") != 0);
    EXPECT(VDKIT_E_INVALID_ARGUMENT, vdkit_disk_read(NULL, 0, back, 1, &e));
    CHECK(strstr(e.message, "must not be NULL") != NULL);

    /* ---- VDDestroy / VixDiskLib_Exit ---- */
    vdkit_library_close(lib);
    if (failures) {
        fprintf(stderr, "%d check(s) failed\n", failures);
        return 1;
    }
    printf("every supported row of docs/api.md passed\n");
    return 0;
}
