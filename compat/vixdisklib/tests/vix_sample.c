/* A VixDiskLib client written the way VMware's vixDiskLibSample is: every
 * command initialises the library, connects, opens, works, closes,
 * disconnects and exits. It knows nothing of vdkit; vix_test.sh runs it
 * over VMDK, VDI and raw images, local and over NBD, and checks what it did
 * with qemu-img.
 *
 *   vix_sample [-ro] [-single] [-modes M] [-nolog] COMMAND ARGS...
 *   info DISK                      capacity, geometry, adapter, links, parent, uuid
 *   create DISK SECTORS [TYPE [ADAPTER [HW]]]   TYPE/ADAPTER are the enum numbers
 *   fill DISK START COUNT BYTE     write COUNT sectors of BYTE at START
 *   readall DISK FILE              every sector into FILE
 *   writefile DISK FILE            FILE's bytes to the disk from sector 0
 *   meta DISK                      every metadata key = value
 *   wmeta DISK KEY VALUE           write one metadata entry
 *   redo DISK CHILD [TYPE]         create a child (redo log) of DISK
 *   clone SRC DST [TYPE [OVERWRITE]]  TYPE 0: no create params
 *   allocated DISK CHUNK           QueryAllocatedBlocks over the whole disk
 *   async DISK START COUNT BYTE    WriteAsync then ReadAsync of the range, checked
 *   attach PARENT CHILD FILE       open both single-link, attach, read all into FILE
 *   check DISK REPAIR              CheckRepair(REPAIR = 0 or 1)
 *   grow DISK SECTORS / shrink DISK / defrag DISK
 *   space DISK TYPE                SpaceNeededForClone
 *   rename FROM TO / unlink DISK
 *   cancel SRC DST                 Clone whose progress callback cancels at once
 *   bogus                          Read, Close and Disconnect on pointers never handed out
 * Prints "error N: text" and exits 2 on a VIX error (N the code). */
#include "vixDiskLib.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int quiet_log = 0;
static int single_link = 0, read_only = 0;
static const char *modes = NULL;
static VixDiskLibConnection conn = NULL;

static void log_func(const char *fmt, va_list args) {
    if (quiet_log) return;
    fprintf(stderr, "log: ");
    vfprintf(stderr, fmt, args);
}

static void warn_func(const char *fmt, va_list args) {
    fprintf(stderr, "warning: ");
    vfprintf(stderr, fmt, args);
}

static void panic_func(const char *fmt, va_list args) {
    fprintf(stderr, "PANIC: ");
    vfprintf(stderr, fmt, args);
    exit(10);
}

static void check(VixError err, const char *what) {
    char *text;
    if (err == VIX_OK) return;
    text = VixDiskLib_GetErrorText(err, NULL);
    printf("error %llu: %s: %s\n", (unsigned long long)err, what, text ? text : "(no text)");
    VixDiskLib_FreeErrorText(text);
    exit(2);
}

static Bool progress_func(void *data, int percent) {
    (void)data;
    fprintf(stderr, "progress: %d%%\n", percent);
    return TRUE;
}

static Bool cancel_func(void *data, int percent) {
    (void)data;
    (void)percent;
    return FALSE;
}

static VixDiskLibHandle open_disk(const char *path) {
    VixDiskLibHandle h = NULL;
    uint32 flags = 0;
    if (read_only) flags |= VIXDISKLIB_FLAG_OPEN_READ_ONLY;
    if (single_link) flags |= VIXDISKLIB_FLAG_OPEN_SINGLE_LINK;
    check(VixDiskLib_Open(conn, path, flags, &h), "Open");
    return h;
}

static void fill_buffer(uint8 *buf, size_t len, int byte, uint64 start) {
    size_t i;
    for (i = 0; i < len; ++i)
        buf[i] = (uint8)(byte ^ (int)((start * 512 + i) / 512 % 251));
}

static int cmd_info(const char *path) {
    VixDiskLibHandle h = open_disk(path);
    VixDiskLibInfo *info = NULL;
    check(VixDiskLib_GetInfo(h, &info), "GetInfo");
    printf("capacity %llu\n", (unsigned long long)info->capacity);
    printf("biosGeo %u/%u/%u\n", info->biosGeo.cylinders, info->biosGeo.heads, info->biosGeo.sectors);
    printf("physGeo %u/%u/%u\n", info->physGeo.cylinders, info->physGeo.heads, info->physGeo.sectors);
    printf("adapterType %d\n", (int)info->adapterType);
    printf("numLinks %d\n", info->numLinks);
    printf("parent %s\n", info->parentFileNameHint ? info->parentFileNameHint : "(none)");
    printf("uuid %s\n", info->uuid ? info->uuid : "(none)");
    printf("transport %s\n", VixDiskLib_GetTransportMode(h));
    VixDiskLib_FreeInfo(info);
    check(VixDiskLib_Close(h), "Close");
    return 0;
}

static int cmd_create(const char *path, uint64 sectors, int type, int adapter, int hw) {
    VixDiskLibCreateParams p;
    memset(&p, 0, sizeof p);
    p.diskType = (VixDiskLibDiskType)type;
    p.adapterType = (VixDiskLibAdapterType)adapter;
    p.hwVersion = (uint16)hw;
    p.capacity = sectors;
    check(VixDiskLib_Create(conn, path, &p, progress_func, NULL), "Create");
    return 0;
}

static int cmd_fill(const char *path, uint64 start, uint64 count, int byte) {
    VixDiskLibHandle h = open_disk(path);
    uint8 *buf = malloc(count * VIXDISKLIB_SECTOR_SIZE);
    if (!buf) return 3;
    fill_buffer(buf, count * VIXDISKLIB_SECTOR_SIZE, byte, start);
    check(VixDiskLib_Write(h, start, count, buf), "Write");
    check(VixDiskLib_Flush(h), "Flush");
    free(buf);
    check(VixDiskLib_Close(h), "Close");
    return 0;
}

static void read_all(VixDiskLibHandle h, const char *file) {
    VixDiskLibInfo *info = NULL;
    uint8 buf[64 * 1024];
    uint64 s, n;
    FILE *out = fopen(file, "wb");
    if (!out) exit(3);
    check(VixDiskLib_GetInfo(h, &info), "GetInfo");
    for (s = 0; s < info->capacity; s += n) {
        n = info->capacity - s < 128 ? info->capacity - s : 128;
        check(VixDiskLib_Read(h, s, n, buf), "Read");
        if (fwrite(buf, VIXDISKLIB_SECTOR_SIZE, n, out) != n) exit(3);
    }
    VixDiskLib_FreeInfo(info);
    fclose(out);
}

static int cmd_readall(const char *path, const char *file) {
    VixDiskLibHandle h = open_disk(path);
    read_all(h, file);
    check(VixDiskLib_Close(h), "Close");
    return 0;
}

static int cmd_writefile(const char *path, const char *file) {
    VixDiskLibHandle h = open_disk(path);
    uint8 buf[64 * 1024];
    uint64 sector = 0;
    size_t got;
    FILE *in = fopen(file, "rb");
    if (!in) return 3;
    while ((got = fread(buf, 1, sizeof buf, in)) > 0) {
        if (got % VIXDISKLIB_SECTOR_SIZE) {
            memset(buf + got, 0, VIXDISKLIB_SECTOR_SIZE - got % VIXDISKLIB_SECTOR_SIZE);
            got += VIXDISKLIB_SECTOR_SIZE - got % VIXDISKLIB_SECTOR_SIZE;
        }
        check(VixDiskLib_Write(h, sector, got / VIXDISKLIB_SECTOR_SIZE, buf), "Write");
        sector += got / VIXDISKLIB_SECTOR_SIZE;
    }
    fclose(in);
    check(VixDiskLib_Close(h), "Close");
    return 0;
}

static int cmd_meta(const char *path) {
    VixDiskLibHandle h = open_disk(path);
    size_t need = 0;
    char *keys, *k;
    VixError err = VixDiskLib_GetMetadataKeys(h, NULL, 0, &need);
    if (err != VIX_OK && err != VIX_E_BUFFER_TOOSMALL) check(err, "GetMetadataKeys");
    keys = malloc(need);
    if (!keys) return 3;
    check(VixDiskLib_GetMetadataKeys(h, keys, need, NULL), "GetMetadataKeys");
    for (k = keys; *k; k += strlen(k) + 1) {
        size_t vneed = 0;
        char *val;
        err = VixDiskLib_ReadMetadata(h, k, NULL, 0, &vneed);
        if (err != VIX_OK && err != VIX_E_BUFFER_TOOSMALL) check(err, "ReadMetadata");
        val = malloc(vneed);
        if (!val) return 3;
        check(VixDiskLib_ReadMetadata(h, k, val, vneed, NULL), "ReadMetadata");
        printf("%s = %s\n", k, val);
        free(val);
    }
    free(keys);
    check(VixDiskLib_Close(h), "Close");
    return 0;
}

static int cmd_wmeta(const char *path, const char *key, const char *value) {
    VixDiskLibHandle h = open_disk(path);
    check(VixDiskLib_WriteMetadata(h, key, value), "WriteMetadata");
    check(VixDiskLib_Close(h), "Close");
    return 0;
}

static int cmd_redo(const char *path, const char *child, int type) {
    VixDiskLibHandle h = open_disk(path);
    VixDiskLibInfo *info = NULL;
    uint8 sector[VIXDISKLIB_SECTOR_SIZE];
    check(VixDiskLib_CreateChild(h, child, (VixDiskLibDiskType)type, progress_func, NULL), "CreateChild");
    /* The parent's handle is still usable afterwards. */
    check(VixDiskLib_GetInfo(h, &info), "GetInfo after CreateChild");
    VixDiskLib_FreeInfo(info);
    check(VixDiskLib_Read(h, 0, 1, sector), "Read after CreateChild");
    printf("parent handle still open\n");
    check(VixDiskLib_Close(h), "Close");
    return 0;
}

/* Pointers the library never handed out are refused, not dereferenced. */
static int cmd_bogus(void) {
    uint8 sector[VIXDISKLIB_SECTOR_SIZE];
    VixError r = VixDiskLib_Read((VixDiskLibHandle)(uintptr_t)0x1234, 0, 1, sector);
    VixError c = VixDiskLib_Close((VixDiskLibHandle)(uintptr_t)0x1234);
    VixError d = VixDiskLib_Disconnect((VixDiskLibConnection)(uintptr_t)0x5678);
    printf("bogus read %llu close %llu disconnect %llu\n", (unsigned long long)r, (unsigned long long)c,
           (unsigned long long)d);
    return 0;
}

static int cmd_clone(const char *src, const char *dst, int type, int overwrite) {
    VixDiskLibCreateParams p;
    memset(&p, 0, sizeof p);
    p.diskType = (VixDiskLibDiskType)type;
    p.adapterType = VIXDISKLIB_ADAPTER_SCSI_LSILOGIC;
    p.hwVersion = 7;
    check(VixDiskLib_Clone(conn, dst, conn, src, type ? &p : NULL, progress_func, NULL, (Bool)overwrite), "Clone");
    return 0;
}

static int cmd_cancel(const char *src, const char *dst) {
    check(VixDiskLib_Clone(conn, dst, conn, src, NULL, cancel_func, NULL, FALSE), "Clone");
    return 0;
}

static int cmd_allocated(const char *path, uint64 chunk) {
    VixDiskLibHandle h = open_disk(path);
    VixDiskLibInfo *info = NULL;
    VixDiskLibBlockList *list = NULL;
    uint64 n;
    uint32 i;
    check(VixDiskLib_GetInfo(h, &info), "GetInfo");
    n = (info->capacity + chunk - 1) / chunk * chunk;
    check(VixDiskLib_QueryAllocatedBlocks(h, 0, n, chunk, &list), "QueryAllocatedBlocks");
    for (i = 0; i < list->numBlocks; ++i)
        printf("block %llu %llu\n", (unsigned long long)list->blocks[i].offset,
               (unsigned long long)list->blocks[i].length);
    check(VixDiskLib_FreeBlockList(list), "FreeBlockList");
    VixDiskLib_FreeInfo(info);
    check(VixDiskLib_Close(h), "Close");
    return 0;
}

struct done_count {
    int calls;
    VixError first;
};

static void on_done(void *data, VixError result) {
    struct done_count *d = data;
    /* One callback at a time per request; Wait orders them before we look. */
    __atomic_add_fetch(&d->calls, 1, __ATOMIC_SEQ_CST);
    if (result != VIX_OK) d->first = result;
}

static int cmd_async(const char *path, uint64 start, uint64 count, int byte) {
    VixDiskLibHandle h = open_disk(path);
    size_t len = count * VIXDISKLIB_SECTOR_SIZE;
    uint8 *w = malloc(len), *r = malloc(len);
    struct done_count d = {0, VIX_OK};
    uint64 i;
    VixError err;
    if (!w || !r) return 3;
    fill_buffer(w, len, byte, start);
    memset(r, 0xEE, len);
    for (i = 0; i < count; i += 8) {
        uint64 n = count - i < 8 ? count - i : 8;
        err = VixDiskLib_WriteAsync(h, start + i, n, w + i * VIXDISKLIB_SECTOR_SIZE, on_done, &d);
        if (err != VIX_ASYNC) check(err, "WriteAsync");
    }
    check(VixDiskLib_Wait(h), "Wait");
    for (i = 0; i < count; i += 8) {
        uint64 n = count - i < 8 ? count - i : 8;
        err = VixDiskLib_ReadAsync(h, start + i, n, r + i * VIXDISKLIB_SECTOR_SIZE, on_done, &d);
        if (err != VIX_ASYNC) check(err, "ReadAsync");
    }
    check(VixDiskLib_Wait(h), "Wait");
    check(d.first, "async completion");
    printf("callbacks %d\n", d.calls);
    printf("match %s\n", memcmp(w, r, len) == 0 ? "yes" : "no");
    free(w);
    free(r);
    check(VixDiskLib_Close(h), "Close");
    return 0;
}

static int cmd_attach(const char *parent, const char *child, const char *file) {
    VixDiskLibHandle p, c;
    single_link = 1;
    p = open_disk(parent);
    c = open_disk(child);
    check(VixDiskLib_IsAttachPossible(p, c), "IsAttachPossible");
    check(VixDiskLib_Attach(p, c), "Attach");
    read_all(c, file);
    check(VixDiskLib_Close(c), "Close");
    check(VixDiskLib_Close(p), "Close");
    return 0;
}

static int cmd_space(const char *path, int type) {
    VixDiskLibHandle h = open_disk(path);
    uint64 space = 0;
    check(VixDiskLib_SpaceNeededForClone(h, (VixDiskLibDiskType)type, &space), "SpaceNeededForClone");
    printf("space %llu\n", (unsigned long long)space);
    check(VixDiskLib_Close(h), "Close");
    return 0;
}

static int cmd_compact(const char *path, int defrag) {
    VixDiskLibHandle h = open_disk(path);
    check(defrag ? VixDiskLib_Defragment(h, progress_func, NULL) : VixDiskLib_Shrink(h, progress_func, NULL),
          defrag ? "Defragment" : "Shrink");
    check(VixDiskLib_Close(h), "Close");
    return 0;
}

static int run(int argc, char **argv) {
    const char *cmd = argv[0];
#define ARG(i) (argc > (i) ? argv[i] : (fprintf(stderr, "%s: missing argument\n", cmd), exit(64), ""))
    if (!strcmp(cmd, "info")) return cmd_info(ARG(1));
    if (!strcmp(cmd, "create"))
        return cmd_create(ARG(1), strtoull(ARG(2), NULL, 0), argc > 3 ? atoi(argv[3]) : 1, argc > 4 ? atoi(argv[4]) : 1,
                          argc > 5 ? atoi(argv[5]) : 0);
    if (!strcmp(cmd, "fill"))
        return cmd_fill(ARG(1), strtoull(ARG(2), NULL, 0), strtoull(ARG(3), NULL, 0), atoi(ARG(4)));
    if (!strcmp(cmd, "readall")) return cmd_readall(ARG(1), ARG(2));
    if (!strcmp(cmd, "writefile")) return cmd_writefile(ARG(1), ARG(2));
    if (!strcmp(cmd, "meta")) return cmd_meta(ARG(1));
    if (!strcmp(cmd, "wmeta")) return cmd_wmeta(ARG(1), ARG(2), ARG(3));
    if (!strcmp(cmd, "redo")) return cmd_redo(ARG(1), ARG(2), argc > 3 ? atoi(argv[3]) : 1);
    if (!strcmp(cmd, "clone"))
        return cmd_clone(ARG(1), ARG(2), argc > 3 ? atoi(argv[3]) : 0, argc > 4 ? atoi(argv[4]) : 0);
    if (!strcmp(cmd, "cancel")) return cmd_cancel(ARG(1), ARG(2));
    if (!strcmp(cmd, "bogus")) return cmd_bogus();
    if (!strcmp(cmd, "allocated")) return cmd_allocated(ARG(1), strtoull(ARG(2), NULL, 0));
    if (!strcmp(cmd, "async"))
        return cmd_async(ARG(1), strtoull(ARG(2), NULL, 0), strtoull(ARG(3), NULL, 0), atoi(ARG(4)));
    if (!strcmp(cmd, "attach")) return cmd_attach(ARG(1), ARG(2), ARG(3));
    if (!strcmp(cmd, "check")) {
        check(VixDiskLib_CheckRepair(conn, ARG(1), (Bool)atoi(ARG(2))), "CheckRepair");
        return 0;
    }
    if (!strcmp(cmd, "grow")) {
        check(VixDiskLib_Grow(conn, ARG(1), strtoull(ARG(2), NULL, 0), FALSE, progress_func, NULL), "Grow");
        return 0;
    }
    if (!strcmp(cmd, "shrink")) return cmd_compact(ARG(1), 0);
    if (!strcmp(cmd, "defrag")) return cmd_compact(ARG(1), 1);
    if (!strcmp(cmd, "space")) return cmd_space(ARG(1), atoi(ARG(2)));
    if (!strcmp(cmd, "rename")) {
        check(VixDiskLib_Rename(ARG(1), ARG(2)), "Rename");
        return 0;
    }
    if (!strcmp(cmd, "unlink")) {
        check(VixDiskLib_Unlink(conn, ARG(1)), "Unlink");
        return 0;
    }
    fprintf(stderr, "unknown command %s\n", cmd);
    return 64;
}

int main(int argc, char **argv) {
    int i = 1, rc;
    for (; i < argc && argv[i][0] == '-'; ++i) {
        if (!strcmp(argv[i], "-ro"))
            read_only = 1;
        else if (!strcmp(argv[i], "-single"))
            single_link = 1;
        else if (!strcmp(argv[i], "-nolog"))
            quiet_log = 1;
        else if (!strcmp(argv[i], "-modes") && i + 1 < argc)
            modes = argv[++i];
        else
            return 64;
    }
    if (i >= argc) return 64;
    check(VixDiskLib_InitEx(6, 7, log_func, warn_func, panic_func, NULL, NULL), "InitEx");
    check(VixDiskLib_ConnectEx(NULL, (Bool)read_only, NULL, modes, &conn), "ConnectEx");
    rc = run(argc - i, argv + i);
    check(VixDiskLib_Disconnect(conn), "Disconnect");
    VixDiskLib_Exit();
    return rc;
}
