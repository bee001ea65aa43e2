/* A C embedder's program: strict C99 including only <vdkit/vdkit.h> (with
 * -Wall -Wextra -pedantic -Werror), built and run against the INSTALLED
 * library by tests/abi/installed_api_test.sh. Every constant vdkit.h's
 * functions take or return must come from vdkit.h itself.
 * Usage: c_consumer DIR — creates DIR/c.raw, writes, reads it back. */
#include <vdkit/vdkit.h>

#include <stdio.h>
#include <string.h>

static int fail(const char *what, const vdkit_error *err) {
    fprintf(stderr, "FAIL: %s: %s (%s)\n", what, err->message, vdkit_status_text(err->code));
    return 1;
}

int main(int argc, char **argv) {
    /* The constants vdkit.h documents for its functions. */
    static const uint32_t kinds[] = {VDKIT_KIND_FORMAT, VDKIT_KIND_FILTER, VDKIT_KIND_TRANSPORT};
    static const uint32_t check_flags = VDKIT_CHECK_REPAIR | VDKIT_CHECK_DRY_RUN;
    static const uint32_t findings[] = {VDKIT_FINDING_ERROR, VDKIT_FINDING_LEAK, VDKIT_FINDING_REPAIRED,
                                        VDKIT_FINDING_NOTE};
    vdkit_error err;
    vdkit_library_options lo;
    vdkit_library *lib = NULL;
    vdkit_disk *disk = NULL;
    char path[4096], buf[4096], back[4096];
    uint32_t i, formats = 0, state = 99;
    uint64_t run = 0;

    if (argc != 2) return 2;
    memset(&err, 0, sizeof err);
    err.struct_size = sizeof err;
    memset(&lo, 0, sizeof lo);
    lo.struct_size = sizeof lo;
    lo.flags = VDKIT_LIB_NO_ENV_PATH; /* only the plugins installed beside the library */
    if (vdkit_library_open(&lo, &lib, &err) != VDKIT_OK) return fail("library_open", &err);
    for (i = 0; i < vdkit_plugin_count(lib); ++i) {
        vdkit_plugin_summary s;
        memset(&s, 0, sizeof s);
        s.struct_size = sizeof s;
        if (vdkit_plugin_get(lib, i, &s, &err) != VDKIT_OK) return fail("plugin_get", &err);
        if (s.kind == kinds[0]) ++formats;
    }
    snprintf(path, sizeof path, "%s/c.raw", argv[1]);
    if (vdkit_disk_create(lib, path, "raw", 1u << 20, VDKIT_DISK_OVERWRITE, NULL, NULL, &disk, &err) != VDKIT_OK)
        return fail("disk_create", &err);
    for (i = 0; i < sizeof buf; ++i)
        buf[i] = (char)(i * 7 + 1);
    if (vdkit_disk_write(disk, 65536, buf, sizeof buf, &err) != VDKIT_OK) return fail("disk_write", &err);
    if (vdkit_disk_read(disk, 65536, back, sizeof back, &err) != VDKIT_OK) return fail("disk_read", &err);
    if (memcmp(buf, back, sizeof buf) != 0) {
        fprintf(stderr, "FAIL: read back differs\n");
        return 1;
    }
    if (vdkit_disk_block_status(disk, 65536, 4096, &state, &run, &err) != VDKIT_OK) return fail("block_status", &err);
    if (state != VDKIT_BLOCK_DATA && state != VDKIT_BLOCK_ZERO && state != VDKIT_BLOCK_UNALLOCATED) {
        fprintf(stderr, "FAIL: block state %u is no VDKIT_BLOCK_*\n", (unsigned)state);
        return 1;
    }
    if (vdkit_disk_close(disk, &err) != VDKIT_OK) return fail("disk_close", &err);
    vdkit_library_close(lib);
    printf("OK: C99 consumer: %u format plugins, size-%u write read back, block state %s, %u finding kinds, "
           "check flags 0x%x\n",
           (unsigned)formats, (unsigned)sizeof buf, state == VDKIT_BLOCK_DATA ? "data" : "not data",
           (unsigned)(sizeof findings / sizeof findings[0]), (unsigned)check_flags);
    return formats > 0 ? 0 : 1;
}
