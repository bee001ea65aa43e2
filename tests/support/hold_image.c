/* vdkit_hold_image: opens an image through the public C API and keeps it
 * open until its standard input ends, so a test can run other programs
 * (qemu-io, qemu-img, a second vdkit) against an image vdkit holds.
 *
 *   vdkit_hold_image [-w] [-U] [-f FORMAT] [--plugin-path DIR] IMAGE
 *
 * -w opens for writing (VDKIT_DISK_WRITE), -f names the format (default:
 * probe), -U opens with force-share
 * (VDKIT_DISK_FORCE_SHARE). Prints "ready" on stdout once the image is open,
 * or "error <code>: <message>" on stderr and exits 1 when it cannot be
 * opened. Exits 0 after closing the image once stdin reaches end of file. */
#include "vdkit/vdkit.h"

#include <stdio.h>
#include <string.h>

int main(int argc, char **argv) {
    uint32_t flags = 0;
    const char *image = NULL, *plugin_path = NULL, *format = NULL;
    for (int i = 1; i < argc; ++i) {
        if (strcmp(argv[i], "-w") == 0)
            flags |= VDKIT_DISK_WRITE;
        else if (strcmp(argv[i], "-U") == 0)
            flags |= VDKIT_DISK_FORCE_SHARE;
        else if (strcmp(argv[i], "-f") == 0 && i + 1 < argc)
            format = argv[++i];
        else if (strcmp(argv[i], "--plugin-path") == 0 && i + 1 < argc)
            plugin_path = argv[++i];
        else if (!image && argv[i][0] != '-')
            image = argv[i];
        else {
            fprintf(stderr, "usage: %s [-w] [-U] [-f FORMAT] [--plugin-path DIR] IMAGE\n", argv[0]);
            return 2;
        }
    }
    if (!image) {
        fprintf(stderr, "usage: %s [-w] [-U] [-f FORMAT] [--plugin-path DIR] IMAGE\n", argv[0]);
        return 2;
    }
    vdkit_error err;
    memset(&err, 0, sizeof err);
    err.struct_size = sizeof err;
    vdkit_library_options lo;
    memset(&lo, 0, sizeof lo);
    lo.struct_size = sizeof lo;
    lo.plugin_path = plugin_path;
    vdkit_library *lib = NULL;
    if (vdkit_library_open(&lo, &lib, &err) != VDKIT_OK) {
        fprintf(stderr, "error %u: %s\n", (unsigned)err.code, err.message);
        return 1;
    }
    vdkit_disk *disk = NULL;
    if (vdkit_disk_open(lib, image, format, flags, NULL, &disk, &err) != VDKIT_OK) {
        fprintf(stderr, "error %u: %s\n", (unsigned)err.code, err.message);
        vdkit_library_close(lib);
        return 1;
    }
    printf("ready\n");
    fflush(stdout);
    char line[256];
    while (fgets(line, sizeof line, stdin)) {
    }
    int rc = 0;
    if (vdkit_disk_close(disk, &err) != VDKIT_OK) {
        fprintf(stderr, "error %u: %s\n", (unsigned)err.code, err.message);
        rc = 1;
    }
    vdkit_library_close(lib);
    return rc;
}
