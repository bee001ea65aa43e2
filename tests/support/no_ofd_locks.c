/* LD_PRELOAD shim: a file system without open file description locks.
 *
 * fcntl(F_OFD_SETLK / F_OFD_SETLKW / F_OFD_GETLK) fails with EINVAL, as on
 * kernels and file systems that lack OFD locks (some FUSE file systems;
 * NFS without a reachable lock manager answers ENOLCK, handled alike by
 * the file transport). Every other fcntl goes to libc. Each refused call
 * appends "ofd <cmd>\n" to $VDKIT_NO_OFD_LOG when that is set, so a test
 * can tell the shim was in effect. Used by
 * plugins/transports/file/tests/no_ofd_lock_test.sh. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

typedef int (*fcntl_fn)(int, int, ...);

static int refused(int cmd) {
    const char *log = getenv("VDKIT_NO_OFD_LOG");
    if (log && *log) {
        FILE *f = fopen(log, "a");
        if (f) {
            fprintf(f, "ofd %d\n", cmd);
            fclose(f);
        }
    }
    errno = EINVAL;
    return -1;
}

static int forward(const char *name, int fd, int cmd, void *arg) {
    fcntl_fn next = (fcntl_fn)dlsym(RTLD_NEXT, name);
    if (!next) {
        errno = ENOSYS;
        return -1;
    }
    return next(fd, cmd, arg);
}

static int is_ofd(int cmd) {
    return cmd == F_OFD_SETLK || cmd == F_OFD_SETLKW || cmd == F_OFD_GETLK;
}

/* Every fcntl command takes at most one argument, an int or a pointer;
 * passing it on as a pointer is what glibc's own wrapper does. */
int fcntl(int fd, int cmd, ...) {
    va_list ap;
    va_start(ap, cmd);
    void *arg = va_arg(ap, void *);
    va_end(ap);
    return is_ofd(cmd) ? refused(cmd) : forward("fcntl", fd, cmd, arg);
}

int fcntl64(int fd, int cmd, ...) {
    va_list ap;
    va_start(ap, cmd);
    void *arg = va_arg(ap, void *);
    va_end(ap);
    return is_ofd(cmd) ? refused(cmd) : forward("fcntl64", fd, cmd, arg);
}
