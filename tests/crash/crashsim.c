/* vdkit_crashsim — crash-consistency trials for vdkit's writable formats,
 * written in C against the public C API (vdkit/vdkit.h).
 *
 *   vdkit_crashsim kill  --vdkit CLI --format F [--opts O] [--diff] --dir D
 *                        [--trials N] [--seed S] [--max-kill-ms MS] [--recreate-every K]
 *   vdkit_crashsim power --record-plugins DIR --format F [--opts O] [--diff] --dir D
 *                        [--ops N] [--subsets K] [--seed S]
 *   vdkit_crashsim writer ...   (the process `kill` starts and kills)
 *
 * The model. The disk is a row of 512-byte sectors; each sector holds a
 * "generation": 0 is zeros, any other number g fills the sector with a
 * pattern computed from (seed, g, sector), so any sector read back tells
 * which write it came from. Generation 1 is what a differencing image's base
 * holds. The workload (random writes of random offsets and sizes, zero
 * writes, discards, flushes; in kill mode also snapshot and commit steps)
 * logs each disk operation before issuing it and a "flushed" record after
 * vdkit_disk_flush returns (tests/crash/record_log.h).
 * After a crash, a sector must read as the generation it had at the last
 * "flushed" record, or as one an operation logged after it could have left
 * there (the old value, a newer write, zeros, the parent's data for a
 * discard). Anything else — a flushed write lost, garbage, another place's
 * data — is a failure, reported with the sector and the candidates.
 *
 * kill: the writer runs in a child process on an image that survives from
 * trial to trial (re-created every K trials); the driver kills it with
 * SIGKILL at a random moment, runs `vdkit check` (exit 0 required; exit 3 only
 * where the known-issue list below says so), and reads the whole disk back
 * against the model; what it read becomes the next trial's model.
 * Chain steps (every format but raw): now and then the writer flushes,
 * closes the disk and makes a differencing image snap.EXT over it, and goes
 * on writing there (discards now show the disk's data); later it commits
 * snap.EXT into the disk (vdkit_disk_commit, the top emptied) and goes on in
 * the disk. Neither step changes what the disk reads, so a kill inside one
 * must leave exactly the flushed content. A writer that starts on a
 * snapshot (its predecessor was killed in it, perhaps inside the commit)
 * commits it first. The driver follows the steps in the log, checks every
 * image the writer may have changed (the disk, and snap.EXT while it is
 * the top) and reads the disk through the top.
 *
 * power: a stronger crash. The workload runs through the `record` test
 * transport (tests/fixtures/record_transport.cpp), which logs every write,
 * flush, truncate, zero and discard the format plugin issues to its files.
 * The log is then replayed into the states a power cut could leave: every
 * prefix of the log (writes reached the disk in order), and random subsets
 * of the writes each file had not flushed yet (the disk reordered them),
 * on top of everything it had flushed. Each state must check clean (or,
 * where check finds something, be repaired by check -r) and read back the
 * model: nothing flushed may be lost.
 *
 * The findings a crash may leave are listed in kExpected (below), by kind;
 * every other finding fails the run.
 *
 * Output: one line per failure, then "N passed, N failed" per run; exit 1 on
 * any failure.
 */
#define _GNU_SOURCE
#include "vdkit/plugin.h"
#include "vdkit/vdkit.h"

#include "record_log.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define SECTOR 512u
#define MAX_PENDING 256  /* disk records between two flushes (the workload flushes well before this) */
#define OPS_PER_FLUSH 12 /* the workload forces a flush after this many operations */
#define BASE_GEN 1u
/* REC_D_RESOLVE's c: what a discarded run reads as */
#define RESOLVE_ZERO 0u
#define RESOLVE_PARENT 1u
#define RESOLVE_KEPT 2u

/* ---- small helpers ---- */

static void die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "crashsim: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    exit(2);
}

static void *xmalloc(size_t n) {
    void *p = calloc(1, n ? n : 1);
    if (!p) die("out of memory (%zu bytes)", n);
    return p;
}

static uint64_t mix64(uint64_t x) {
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    x ^= x >> 31;
    return x;
}

typedef struct rng {
    uint64_t s;
} rng;
static uint64_t rnd(rng *r) {
    return mix64(r->s += 0x9e3779b97f4a7c15ull);
}
static uint64_t rnd_below(rng *r, uint64_t n) {
    return n ? rnd(r) % n : 0;
}

static void init_err(vdkit_error *e) {
    memset(e, 0, sizeof *e);
    e->struct_size = sizeof *e;
}

/* ---- the content model ---- */

/* The bytes of sector `s` holding generation `gen`. */
static void fill_sector(uint8_t *out, uint64_t seed, uint32_t gen, uint64_t s) {
    if (gen == 0) {
        memset(out, 0, SECTOR);
        return;
    }
    uint64_t *w = (uint64_t *)out;
    const uint64_t k = mix64(seed ^ ((uint64_t)gen << 32) ^ mix64(s));
    for (unsigned i = 0; i < SECTOR / 8; ++i)
        w[i] = mix64(k + i);
}

typedef struct dop {
    uint32_t op; /* REC_D_* */
    uint32_t gen;
    uint64_t off, len;
} dop;

typedef struct model {
    uint64_t size, nsec, seed;
    uint32_t next_gen;
    uint32_t *dur;    /* generation at the last flush */
    uint32_t *cur;    /* generation after the last operation */
    uint32_t *parent; /* what the image under the top shows (0 without one) */
    uint32_t *base;   /* what the disk's own parent shows (0 without one) */
    dop pend[MAX_PENDING];
    int npend;
} model;

static void model_init(model *m, uint64_t size, uint64_t seed) {
    memset(m, 0, sizeof *m);
    m->size = size;
    m->nsec = size / SECTOR;
    m->seed = seed;
    m->next_gen = BASE_GEN + 1;
    m->dur = xmalloc(m->nsec * 4);
    m->cur = xmalloc(m->nsec * 4);
    m->parent = xmalloc(m->nsec * 4);
    m->base = xmalloc(m->nsec * 4);
}

static void model_free(model *m) {
    free(m->dur);
    free(m->cur);
    free(m->parent);
    free(m->base);
}

static void model_copy(model *dst, const model *src) {
    uint32_t *d = dst->dur, *c = dst->cur, *p = dst->parent, *b = dst->base;
    *dst = *src;
    dst->dur = d;
    dst->cur = c;
    dst->parent = p;
    dst->base = b;
    memcpy(d, src->dur, src->nsec * 4);
    memcpy(c, src->cur, src->nsec * 4);
    memcpy(p, src->parent, src->nsec * 4);
    memcpy(b, src->base, src->nsec * 4);
}

/* Apply one disk-level record (REC_D_*) to the model. */
static int model_apply(model *m, uint32_t op, uint64_t off, uint64_t len, uint32_t gen) {
    if (op == REC_D_FLUSHED) {
        memcpy(m->dur, m->cur, m->nsec * 4);
        m->npend = 0;
        return 0;
    }
    if (off % SECTOR || len % SECTOR || off > m->size || len > m->size - off) return -1;
    if (m->npend == MAX_PENDING) return -1;
    m->pend[m->npend++] = (dop){op, gen, off, len};
    const uint64_t s0 = off / SECTOR, n = len / SECTOR;
    for (uint64_t i = 0; i < n; ++i) {
        if (op == REC_D_WRITE)
            m->cur[s0 + i] = gen;
        else if (op == REC_D_ZERO || (op == REC_D_RESOLVE && gen == RESOLVE_ZERO))
            m->cur[s0 + i] = 0;
        else if (op == REC_D_RESOLVE && gen == RESOLVE_PARENT)
            m->cur[s0 + i] = m->parent[s0 + i];
        /* a discard's effect is known only from the REC_D_RESOLVE after it */
    }
    return 0;
}

/* The generations sector s may hold after a crash; returns the count. */
static int candidates(const model *m, uint64_t s, uint32_t *out, int max) {
    int n = 0;
#define ADD(g)                                                                                                         \
    do {                                                                                                               \
        uint32_t g_ = (g);                                                                                             \
        int dup_ = 0;                                                                                                  \
        for (int j_ = 0; j_ < n; ++j_)                                                                                 \
            dup_ |= out[j_] == g_;                                                                                     \
        if (!dup_ && n < max) out[n++] = g_;                                                                           \
    } while (0)
    ADD(m->dur[s]);
    const uint64_t b = s * SECTOR;
    for (int i = 0; i < m->npend; ++i) {
        const dop *d = &m->pend[i];
        if (b < d->off || b >= d->off + d->len) continue;
        if (d->op == REC_D_WRITE)
            ADD(d->gen);
        else if (d->op == REC_D_ZERO || (d->op == REC_D_RESOLVE && d->gen == RESOLVE_ZERO))
            ADD(0);
        else if (d->op == REC_D_RESOLVE && d->gen == RESOLVE_PARENT)
            ADD(m->parent[s]);
        else if (d->op == REC_D_DISCARD) {
            ADD(0);
            ADD(m->parent[s]);
        }
    }
#undef ADD
    return n;
}

/* Read the whole disk and match every sector against its candidates.
 * Failures are printed (at most a few, then a count) with `what` in front.
 * With adopt, the model takes what was read as its new flushed state.
 * Returns the number of sectors that match no candidate. */
static uint64_t verify(model *m, vdkit_disk *disk, const char *what, int adopt) {
    const uint64_t chunk = 1u << 20;
    uint8_t *buf = xmalloc(chunk), want[SECTOR];
    uint64_t bad = 0;
    vdkit_error e;
    init_err(&e);
    for (uint64_t off = 0; off < m->size; off += chunk) {
        const uint64_t len = m->size - off < chunk ? m->size - off : chunk;
        if (vdkit_disk_read(disk, off, buf, len, &e) != VDKIT_OK) {
            printf("FAIL: %s: reading [%llu, +%llu): %s\n", what, (unsigned long long)off, (unsigned long long)len,
                   e.message);
            free(buf);
            return m->nsec;
        }
        for (uint64_t i = 0; i < len / SECTOR; ++i) {
            const uint64_t s = off / SECTOR + i;
            uint32_t cand[2 * MAX_PENDING + 1];
            const int n = candidates(m, s, cand, (int)(sizeof cand / sizeof cand[0]));
            int hit = -1;
            for (int c = 0; c < n && hit < 0; ++c) {
                fill_sector(want, m->seed, cand[c], s);
                if (memcmp(want, buf + i * SECTOR, SECTOR) == 0) hit = c;
            }
            if (hit < 0) {
                if (bad < 4) {
                    char list[256] = "";
                    for (int c = 0; c < n && strlen(list) < 200; ++c)
                        snprintf(list + strlen(list), sizeof list - strlen(list), "%s%u", c ? "," : "", cand[c]);
                    const uint64_t *w = (const uint64_t *)(buf + i * SECTOR);
                    printf("FAIL: %s: disk byte %llu (sector %llu) reads %s, expected generation {%s}%s\n", what,
                           (unsigned long long)(s * SECTOR), (unsigned long long)s,
                           w[0] == 0 && w[1] == 0 ? "zeros" : "other data", list,
                           cand[0] == m->dur[s] ? " (the first was flushed)" : "");
                }
                ++bad;
            } else if (adopt) {
                m->cur[s] = m->dur[s] = cand[hit];
            }
        }
    }
    if (bad > 4) printf("FAIL: %s: %llu sectors wrong in all\n", what, (unsigned long long)bad);
    if (adopt) m->npend = 0;
    free(buf);
    return bad;
}

/* ---- what check may find after a crash ---- */

/* Each finding check reports after a crash is matched against this table by
 * format and message text. Kinds:
 *  CRASH_LEAK  space written before the structure naming it (data before
 *              table, the safe order): docs/check.md "After a crash" says
 *              these are expected; check -r gives the space back.
 *  CRASH_ERROR a state one update's writes leave when cut between them,
 *              which check calls an error because other writers trip over
 *              it (docs/check.md); vdkit's writer copes and check -r
 *              repairs it without losing flushed data.
 * after_repair: the entry also matches findings of the check that follows
 * check -r (which must otherwise be clean). power_only: accepted in power-cut
 * states only, never after kill -9 (none now: the metadata ordering bugs the
 * power cuts found, VMDK grain table entries and VDI block map entries
 * reaching the disk before what they name, are fixed; docs/reliability.md). */
enum { CRASH_LEAK, CRASH_ERROR };
typedef struct expected_finding {
    const char *format;   /* "vdi", "vmdk", "qcow2" */
    const char *contains; /* in the finding's message */
    int kind, after_repair, power_only;
    const char *why;
} expected_finding;
static const expected_finding kExpected[] = {
    {"vmdk", "bytes after the last structure in use", CRASH_LEAK, 0, 0, "grain written, its table entry not yet"},
    {"vmdk", "the extent was not closed cleanly and the primary table is sound", CRASH_LEAK, 0, 0,
     "primary grain table written, its redundant copy not yet"},
    {"vdi", "bytes follow the last data block", CRASH_LEAK, 0, 0, "block written, the block map not yet"},
    /* CRASH_ERROR: a VDI update is two writes (data block + header count +
     * map entry) that no order makes atomic; cut between them, the count runs
     * ahead of the map. check calls it an error (writers that trust the
     * count never reuse those blocks: docs/check.md rule 8), vdkit's writer
     * allocates from the map, and check -r sets the count. */
    {"vdi", "data blocks past the last one in use are used by no block (a crash between the header and", CRASH_ERROR, 0,
     0, "block map entry not yet written after the header's allocated count"},
    {"vdi", "data blocks among those in use (first: data block", CRASH_ERROR, 0, 0,
     "a block moved into a free slot (discard, reuse) before the map entry that frees its old slot"},
    /* qcow2 counts new clusters before the tables name them, and uncounts
     * dropped ones after the tables stop naming them: a cut leaves refcounts
     * above the references (plugins/formats/qcow2/README.md, "Writing"). */
    {"qcow2", "reference(s) (leaked)", CRASH_LEAK, 0, 0,
     "cluster counted, its table entry not yet (or not uncounted yet)"},
    {NULL, NULL, 0, 0, 0, NULL},
};
static unsigned expected_hits[sizeof kExpected / sizeof kExpected[0]];

/* The entry a finding matches, or -1. */
static int expected_index(const char *format, const char *message, int after_repair, int power) {
    for (unsigned i = 0; kExpected[i].format; ++i) {
        const expected_finding *x = &kExpected[i];
        if (strcmp(x->format, format) != 0 || !strstr(message, x->contains)) continue;
        if (after_repair && !x->after_repair) continue;
        if (!after_repair && x->after_repair) continue;
        if (x->power_only && !power) continue;
        ++expected_hits[i];
        return (int)i;
    }
    return -1;
}

static void print_expected(void) {
    static const char *const names[] = {"CRASH-LEAK", "CRASH-ERROR"};
    for (unsigned i = 0; kExpected[i].format; ++i)
        if (expected_hits[i])
            printf("%s: %u× %s \"%s\"%s: %s\n", names[kExpected[i].kind], expected_hits[i], kExpected[i].format,
                   kExpected[i].contains, kExpected[i].after_repair ? " after check -r" : "", kExpected[i].why);
}

/* ---- images ---- */

typedef struct setup {
    const char *format, *opts, *dir;
    int diff;
    uint64_t size, seed;
    const char *plugin_path; /* extra plugin directories (the record transport) */
    const char *config;      /* library configuration file, or NULL */
} setup;

static vdkit_library *open_library(const setup *su) {
    vdkit_library_options lo;
    memset(&lo, 0, sizeof lo);
    lo.struct_size = sizeof lo;
    lo.flags = VDKIT_LIB_QUIET;
    lo.plugin_path = su->plugin_path;
    lo.config_file = su->config;
    vdkit_library *lib = NULL;
    vdkit_error e;
    init_err(&e);
    if (vdkit_library_open(&lo, &lib, &e) != VDKIT_OK) die("library: %s", e.message);
    return lib;
}

static const char *ext_of(const char *format) {
    return strcmp(format, "raw") == 0 ? "img" : format;
}

/* Write generation `gen` over [off, off+len) of disk. */
static int write_gen(vdkit_disk *disk, uint64_t seed, uint32_t gen, uint64_t off, uint64_t len, vdkit_error *e) {
    uint8_t *buf = xmalloc(len);
    for (uint64_t i = 0; i < len / SECTOR; ++i)
        fill_sector(buf + i * SECTOR, seed, gen, off / SECTOR + i);
    const vdkit_status st = vdkit_disk_write(disk, off, buf, len, e);
    free(buf);
    return st == VDKIT_OK ? 0 : -1;
}

/* A differencing image's base: BASE_GEN over about half the disk, in runs. */
static void make_base(vdkit_library *lib, const setup *su, const char *path, model *m) {
    vdkit_disk *d = NULL;
    vdkit_error e;
    init_err(&e);
    unlink(path);
    if (vdkit_disk_create(lib, path, su->format, su->size, 0, su->opts, NULL, &d, &e) != VDKIT_OK)
        die("create %s: %s", path, e.message);
    rng r = {su->seed ^ 0xba5e};
    for (uint64_t off = 0; off < su->size;) {
        uint64_t run = (1 + rnd_below(&r, 256)) * SECTOR;
        if (run > su->size - off) run = su->size - off;
        if (rnd_below(&r, 2)) {
            if (write_gen(d, su->seed, BASE_GEN, off, run, &e)) die("write %s: %s", path, e.message);
            for (uint64_t i = 0; i < run / SECTOR; ++i)
                m->parent[off / SECTOR + i] = BASE_GEN;
        }
        off += run;
    }
    if (vdkit_disk_close(d, &e) != VDKIT_OK) die("close %s: %s", path, e.message);
}

/* Remove the files of earlier images in dir (disk.*, disk-*.vmdk extents,
 * base.*, and the snapshot's snap.*, snap-*), or with snap_only the
 * snapshot's only: a broken image cannot be deleted through the library. */
static void remove_images(const char *dir, int snap_only) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *ent;
    char path[4400];
    while ((ent = readdir(d))) {
        const int snap = strncmp(ent->d_name, "snap.", 5) == 0 || strncmp(ent->d_name, "snap-", 5) == 0;
        const int image = strncmp(ent->d_name, "disk.", 5) == 0 || strncmp(ent->d_name, "disk-", 5) == 0 ||
                          strncmp(ent->d_name, "base.", 5) == 0;
        if (!snap && (snap_only || !image)) continue;
        snprintf(path, sizeof path, "%s/%s", dir, ent->d_name);
        unlink(path);
    }
    closedir(d);
}

/* Create the image the trials write (and its base, for --diff) and reset the
 * model to what it reads. `location` may carry a transport prefix. */
static void make_image(vdkit_library *lib, const setup *su, const char *location, model *m) {
    char base[4096], parent[4200];
    remove_images(su->dir, 0);
    memset(m->parent, 0, m->nsec * 4);
    if (su->diff) {
        /* The parent named as the child is (same transport), so the link
         * recorded is relative: "base.EXT". */
        const char *scheme = strstr(location, "://");
        snprintf(base, sizeof base, "%s/base.%s", su->dir, ext_of(su->format));
        snprintf(parent, sizeof parent, "%.*s%s", scheme ? (int)(scheme + 3 - location) : 0, location, base);
        make_base(lib, su, base, m);
    }
    memcpy(m->cur, m->parent, m->nsec * 4);
    memcpy(m->dur, m->parent, m->nsec * 4);
    memcpy(m->base, m->parent, m->nsec * 4);
    m->npend = 0;
    vdkit_disk *d = NULL;
    vdkit_error e;
    init_err(&e);
    if (vdkit_disk_create(lib, location, su->format, su->diff ? 0 : su->size, VDKIT_DISK_OVERWRITE, su->opts,
                          su->diff ? parent : NULL, &d, &e) != VDKIT_OK)
        die("create %s: %s", location, e.message);
    if (vdkit_disk_close(d, &e) != VDKIT_OK) die("close %s: %s", location, e.message);
}

/* ---- the workload ---- */

typedef struct logger {
    int fd;
} logger;

static void log_rec(logger *lg, uint32_t op, uint64_t a, uint64_t b, uint64_t c) {
    rec_header h;
    memset(&h, 0, sizeof h);
    h.op = op;
    h.a = a;
    h.b = b;
    h.c = c;
    /* One write(): a reader after SIGKILL sees the record whole or not at all
     * (the page cache keeps it; no fsync needed for a killed process). */
    if (write(lg->fd, &h, sizeof h) != (ssize_t)sizeof h) die("cannot write the log: %s", strerror(errno));
}

/* A random range: sector aligned, often near an allocation-unit boundary
 * (64 KiB grains, 1 MiB blocks, extent splits). */
static void pick_range(rng *r, uint64_t size, uint64_t *off, uint64_t *len) {
    const uint64_t nsec = size / SECTOR;
    uint64_t n;
    const uint64_t k = rnd_below(r, 100);
    if (k < 55)
        n = 1 + rnd_below(r, 16);
    else if (k < 90)
        n = 17 + rnd_below(r, 240);
    else
        n = 257 + rnd_below(r, 3840);
    uint64_t s;
    if (rnd_below(r, 2)) {
        const uint64_t unit = rnd_below(r, 2) ? 128 : 2048; /* 64 KiB or 1 MiB in sectors */
        s = rnd_below(r, nsec / unit + 1) * unit;
        const uint64_t back = rnd_below(r, 8);
        s = s > back ? s - back : 0;
    } else {
        s = rnd_below(r, nsec);
    }
    if (s >= nsec) s = nsec - 1;
    if (n > nsec - s) n = nsec - s;
    *off = s * SECTOR;
    *len = n * SECTOR;
}

/* After a discard returned: log what each part of the range reads as now. */
static int resolve_discard(vdkit_disk *d, model *m, logger *lg, uint64_t off, uint64_t len, vdkit_error *e) {
    uint8_t *buf = xmalloc(len), want[SECTOR];
    if (vdkit_disk_read(d, off, buf, len, e) != VDKIT_OK) {
        free(buf);
        return -1;
    }
    uint64_t run_start = off;
    uint32_t run_gen = 0;
    int have = 0;
    for (uint64_t i = 0; i < len / SECTOR; ++i) {
        const uint64_t s = off / SECTOR + i;
        const uint32_t opts[3] = {m->cur[s], 0, m->parent[s]};
        static const uint32_t kinds[3] = {RESOLVE_KEPT, RESOLVE_ZERO, RESOLVE_PARENT};
        int hit = -1;
        for (int c = 0; c < 3 && hit < 0; ++c) {
            fill_sector(want, m->seed, opts[c], s);
            if (memcmp(want, buf + i * SECTOR, SECTOR) == 0) hit = c;
        }
        if (hit < 0) {
            snprintf(e->message, sizeof e->message,
                     "after a discard of [%llu, +%llu) disk byte %llu reads neither its data, zeros nor the parent's",
                     (unsigned long long)off, (unsigned long long)len, (unsigned long long)(s * SECTOR));
            free(buf);
            return -1;
        }
        if (have && kinds[hit] != run_gen) {
            log_rec(lg, REC_D_RESOLVE, run_start, s * SECTOR - run_start, run_gen);
            model_apply(m, REC_D_RESOLVE, run_start, s * SECTOR - run_start, run_gen);
            run_start = s * SECTOR;
        }
        run_gen = kinds[hit];
        have = 1;
    }
    log_rec(lg, REC_D_RESOLVE, run_start, off + len - run_start, run_gen);
    model_apply(m, REC_D_RESOLVE, run_start, off + len - run_start, run_gen);
    free(buf);
    return 0;
}

/* The kill mode's chain: the disk (disk.EXT, over base.EXT with --diff)
 * and, between a snapshot and its commit, snap.EXT over it (the top). */
typedef struct chain {
    vdkit_library *lib;
    const char *format, *opts;
    int diff, on_snap;
    char disk[4096], snap[4096], dir[4096];
} chain;

/* Flush the open top, log it and close it. */
static int flush_and_close(vdkit_disk **dp, model *m, logger *lg, vdkit_error *e) {
    if (vdkit_disk_flush(*dp, e) != VDKIT_OK) return -1;
    log_rec(lg, REC_D_FLUSHED, 0, 0, 0);
    model_apply(m, REC_D_FLUSHED, 0, 0, 0);
    const vdkit_status st = vdkit_disk_close(*dp, e);
    *dp = NULL;
    return st == VDKIT_OK ? 0 : -1;
}

/* Snapshot step: the disk (*dp, open) is flushed and closed, snap.EXT is
 * made over it, and *dp becomes snap.EXT open for writing. */
static int chain_snapshot(chain *ch, vdkit_disk **dp, model *m, logger *lg, vdkit_error *e) {
    if (flush_and_close(dp, m, lg, e)) return -1;
    remove_images(ch->dir, 1); /* an earlier, committed snapshot */
    vdkit_disk *s = NULL;
    if (vdkit_disk_create(ch->lib, ch->snap, ch->format, 0, VDKIT_DISK_OVERWRITE, ch->opts, ch->disk, &s, e) !=
        VDKIT_OK)
        return -1;
    if (vdkit_disk_close(s, e) != VDKIT_OK) return -1;
    log_rec(lg, REC_D_SNAPSHOT, 0, 0, 0);
    memcpy(m->parent, m->cur, m->nsec * 4); /* discards in snap.EXT show the disk as it is now */
    ch->on_snap = 1;
    return vdkit_disk_open(ch->lib, ch->snap, ch->format, VDKIT_DISK_WRITE, NULL, dp, e) == VDKIT_OK ? 0 : -1;
}

/* Commit step: snap.EXT (*dp, open, or NULL when it is not open) is flushed
 * and closed, committed into the disk with its chain open for writing, and
 * *dp becomes the disk open for writing. */
static int chain_commit(chain *ch, vdkit_disk **dp, model *m, logger *lg, vdkit_error *e) {
    if (*dp && flush_and_close(dp, m, lg, e)) return -1;
    log_rec(lg, REC_D_COMMIT, 0, 0, 0);
    vdkit_disk *s = NULL;
    if (vdkit_disk_open(ch->lib, ch->snap, ch->format, VDKIT_DISK_WRITE | VDKIT_DISK_WRITE_CHAIN, NULL, &s, e) !=
        VDKIT_OK)
        return -1;
    /* Images count from the bottom: base.EXT (--diff), disk.EXT, snap.EXT. */
    if (vdkit_disk_commit(s, ch->diff ? 1 : 0, 0, NULL, NULL, e) != VDKIT_OK) {
        vdkit_error ignored;
        init_err(&ignored);
        vdkit_disk_close(s, &ignored);
        return -1;
    }
    if (vdkit_disk_close(s, e) != VDKIT_OK) return -1;
    log_rec(lg, REC_D_COMMITTED, 0, 0, 0);
    memcpy(m->parent, m->base, m->nsec * 4);
    ch->on_snap = 0;
    return vdkit_disk_open(ch->lib, ch->disk, ch->format, VDKIT_DISK_WRITE, NULL, dp, e) == VDKIT_OK ? 0 : -1;
}

/* Run `ops` random operations (0: until killed) on *dp, logging each before
 * it is issued and every completed flush after it; with ch, chain steps too
 * (which reopen *dp). Returns 0, or -1 with e filled. The last operations
 * are always followed by a flush. */
static int workload(vdkit_disk **dp, model *m, logger *lg, uint64_t seed, uint64_t ops, chain *ch, vdkit_error *e) {
    rng r = {seed};
    int since_flush = 0;
    for (uint64_t i = 0; ops == 0 || i < ops; ++i) {
        vdkit_disk *d = *dp;
        const uint64_t k = rnd_below(&r, 100);
        uint64_t off, len;
        pick_range(&r, m->size, &off, &len);
        if (ch && rnd_below(&r, 100) < 8) { /* about one operation in 12 */
            if (ch->on_snap ? chain_commit(ch, dp, m, lg, e) : chain_snapshot(ch, dp, m, lg, e)) return -1;
            since_flush = 0;
            continue;
        }
        if (since_flush >= OPS_PER_FLUSH || m->npend >= MAX_PENDING / 2 || k >= 86 || (ops && i + 1 == ops)) {
            if (vdkit_disk_flush(d, e) != VDKIT_OK) return -1;
            log_rec(lg, REC_D_FLUSHED, 0, 0, 0);
            model_apply(m, REC_D_FLUSHED, 0, 0, 0);
            since_flush = 0;
            continue;
        }
        ++since_flush;
        if (k < 60) {
            const uint32_t gen = m->next_gen++;
            log_rec(lg, REC_D_WRITE, off, len, gen);
            model_apply(m, REC_D_WRITE, off, len, gen);
            if (write_gen(d, m->seed, gen, off, len, e)) return -1;
        } else if (k < 73) {
            log_rec(lg, REC_D_ZERO, off, len, 0);
            model_apply(m, REC_D_ZERO, off, len, 0);
            if (vdkit_disk_write_zeroes(d, off, len, e) != VDKIT_OK) return -1;
        } else {
            log_rec(lg, REC_D_DISCARD, off, len, 0);
            model_apply(m, REC_D_DISCARD, off, len, 0);
            if (vdkit_disk_discard(d, off, len, e) != VDKIT_OK) return -1;
            if (resolve_discard(d, m, lg, off, len, e)) return -1;
        }
    }
    return 0;
}

/* ---- model files (driver -> writer) ---- */

typedef struct model_file_header {
    uint64_t magic, size, seed;
    uint32_t next_gen, pad;
} model_file_header;
#define MODEL_MAGIC 0x4d4f44454c534d43ull

static void save_model(const model *m, const char *path) {
    FILE *f = fopen(path, "wb");
    if (!f) die("cannot write %s: %s", path, strerror(errno));
    model_file_header h = {MODEL_MAGIC, m->size, m->seed, m->next_gen, 0};
    if (fwrite(&h, sizeof h, 1, f) != 1 || fwrite(m->cur, 4, m->nsec, f) != m->nsec ||
        fwrite(m->parent, 4, m->nsec, f) != m->nsec || fwrite(m->base, 4, m->nsec, f) != m->nsec || fclose(f) != 0)
        die("cannot write %s", path);
}

static void load_model(model *m, const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) die("cannot read %s: %s", path, strerror(errno));
    model_file_header h;
    if (fread(&h, sizeof h, 1, f) != 1 || h.magic != MODEL_MAGIC) die("%s is not a model file", path);
    model_init(m, h.size, h.seed);
    m->next_gen = h.next_gen;
    if (fread(m->cur, 4, m->nsec, f) != m->nsec || fread(m->parent, 4, m->nsec, f) != m->nsec ||
        fread(m->base, 4, m->nsec, f) != m->nsec)
        die("%s is cut short", path);
    fclose(f);
    memcpy(m->dur, m->cur, m->nsec * 4);
}

/* ---- reading logs ---- */

typedef struct logbuf {
    uint8_t *data;
    size_t len;
} logbuf;

static logbuf read_log(const char *path) {
    logbuf b = {NULL, 0};
    int fd = open(path, O_RDONLY);
    if (fd < 0) {
        if (errno == ENOENT) return b;
        die("cannot read %s: %s", path, strerror(errno));
    }
    struct stat st;
    if (fstat(fd, &st) != 0) die("cannot stat %s", path);
    b.data = xmalloc((size_t)st.st_size + 1);
    size_t got = 0;
    while (got < (size_t)st.st_size) {
        ssize_t n = read(fd, b.data + got, (size_t)st.st_size - got);
        if (n <= 0) break;
        got += (size_t)n;
    }
    b.len = got;
    close(fd);
    return b;
}

/* Iterate records: copies the next header into *h (records follow each
 * other unaligned, after payloads of any length) and returns h, or NULL at
 * the end (a record cut by the kill ends the log). */
static const rec_header *next_rec(const logbuf *b, size_t *pos, rec_header *h, const uint8_t **payload) {
    if (*pos + sizeof *h > b->len) return NULL;
    memcpy(h, b->data + *pos, sizeof *h);
    if (h->plen > b->len - *pos - sizeof *h) return NULL;
    *payload = b->data + *pos + sizeof *h;
    *pos += sizeof *h + h->plen;
    return h;
}

/* ---- arguments ---- */

typedef struct args {
    const char *mode, *vdkit, *format, *opts, *dir, *image, *model, *log, *record_plugins;
    int diff, on_snap;
    uint64_t trials, seed, max_kill_ms, recreate_every, ops, subsets, size;
} args;

static args parse_args(int argc, char **argv) {
    args a;
    memset(&a, 0, sizeof a);
    a.mode = argc > 1 ? argv[1] : "";
    a.trials = 100;
    a.seed = 1;
    a.max_kill_ms = 40;
    a.recreate_every = 25;
    a.ops = 60;
    a.subsets = 4;
    a.size = 24u << 20;
    const char *env = getenv("VDKIT_CRASH_TRIALS");
    if (env && *env) a.trials = strtoull(env, NULL, 10);
    for (int i = 2; i < argc; ++i) {
        const char *k = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define STR(name, field)                                                                                               \
    if (strcmp(k, name) == 0 && v) {                                                                                   \
        a.field = v;                                                                                                   \
        ++i;                                                                                                           \
        continue;                                                                                                      \
    }
#define NUM(name, field)                                                                                               \
    if (strcmp(k, name) == 0 && v) {                                                                                   \
        a.field = strtoull(v, NULL, 0);                                                                                \
        ++i;                                                                                                           \
        continue;                                                                                                      \
    }
        STR("--vdkit", vdkit)
        STR("--format", format)
        STR("--opts", opts)
        STR("--dir", dir)
        STR("--image", image)
        STR("--model", model)
        STR("--log", log)
        STR("--record-plugins", record_plugins)
        NUM("--trials", trials)
        NUM("--seed", seed)
        NUM("--max-kill-ms", max_kill_ms)
        NUM("--recreate-every", recreate_every)
        NUM("--ops", ops)
        NUM("--subsets", subsets)
        NUM("--size", size)
#undef STR
#undef NUM
        if (strcmp(k, "--diff") == 0) {
            a.diff = 1;
            continue;
        }
        if (strcmp(k, "--on-snap") == 0) {
            a.on_snap = 1;
            continue;
        }
        die("unknown argument %s (see the comment at the top of tests/crash/crashsim.c)", k);
    }
    if (!a.format) die("--format is required");
    if (a.opts && !*a.opts) a.opts = NULL;
    return a;
}

/* ---- kill mode ---- */

/* The child: open the image, say so on fd 1, run the workload until killed. */
static int run_writer(const args *a) {
    if (!a->image || !a->model || !a->log) die("writer needs --image, --model and --log");
    model m;
    load_model(&m, a->model);
    logger lg = {open(a->log, O_WRONLY | O_CREAT | O_APPEND | O_TRUNC, 0644)};
    if (lg.fd < 0) die("cannot open %s: %s", a->log, strerror(errno));
    setup su = {.format = a->format};
    vdkit_library *lib = open_library(&su);
    /* With --dir, chain steps (formats that record a parent: not raw). */
    chain ch = {.lib = lib, .format = a->format, .opts = a->opts, .diff = a->diff, .on_snap = a->on_snap};
    const int steps = a->dir && strcmp(a->format, "raw") != 0;
    if (steps) {
        snprintf(ch.dir, sizeof ch.dir, "%s", a->dir);
        snprintf(ch.disk, sizeof ch.disk, "%s", a->image);
        snprintf(ch.snap, sizeof ch.snap, "%s/snap.%s", a->dir, ext_of(a->format));
    } else if (a->on_snap) {
        die("--on-snap needs --dir and a format with parents");
    }
    vdkit_disk *d = NULL;
    vdkit_error e;
    init_err(&e);
    if (!ch.on_snap && vdkit_disk_open(lib, a->image, a->format, VDKIT_DISK_WRITE, NULL, &d, &e) != VDKIT_OK) {
        fprintf(stderr, "writer: open %s: %s\n", a->image, e.message);
        return 1;
    }
    if (write(1, "R", 1) != 1) return 1;
    /* Started on a snapshot: commit it first (perhaps finishing a commit
     * the killed writer before was inside). */
    if (ch.on_snap && chain_commit(&ch, &d, &m, &lg, &e)) {
        fprintf(stderr, "writer: commit of %s: %s\n", ch.snap, e.message);
        return 1;
    }
    if (workload(&d, &m, &lg, a->seed, a->ops, steps ? &ch : NULL, &e)) {
        fprintf(stderr, "writer: %s\n", e.message);
        return 1;
    }
    if (vdkit_disk_close(d, &e) != VDKIT_OK) {
        fprintf(stderr, "writer: close: %s\n", e.message);
        return 1;
    }
    log_rec(&lg, REC_D_FLUSHED, 0, 0, 0);
    vdkit_library_close(lib);
    return 0;
}

static void sleep_us(uint64_t us) {
    struct timespec ts = {(time_t)(us / 1000000), (long)(us % 1000000) * 1000};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* Run `vdkit check -f F IMAGE`; its output lands in out_path. */
static int run_check(const char *vdkit, const char *format, const char *image, const char *out_path) {
    pid_t pid = fork();
    if (pid < 0) die("fork: %s", strerror(errno));
    if (pid == 0) {
        int fd = open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd < 0) _exit(127);
        dup2(fd, 1);
        dup2(fd, 2);
        execl(vdkit, vdkit, "check", "-f", format, image, (char *)NULL);
        _exit(127);
    }
    int status = 0;
    if (waitpid(pid, &status, 0) < 0) die("waitpid: %s", strerror(errno));
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* Judge a `vdkit check` output of exit 3 (leaks) or 2 (errors): every
 * finding line must be expected after a kill. Returns 1 when all are. */
static int all_expected(const char *format, const char *out_path, const char *what) {
    FILE *f = fopen(out_path, "r");
    if (!f) return 0;
    char line[2048];
    int findings = 0, unknown = 0;
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "leak at", 7) != 0 && strncmp(line, "error at", 8) != 0) continue;
        ++findings;
        if (expected_index(format, line, 0, 0) < 0) {
            ++unknown;
            printf("FAIL: %s: check: %s", what, line);
        }
    }
    fclose(f);
    return findings > 0 && unknown == 0;
}

static int run_kill(const args *a, const char *self) {
    if (!a->vdkit || !a->dir) die("kill needs --vdkit and --dir");
    char image[4096], snap[4096], model_path[4096], log_path[4096], check_out[4096], what[512];
    snprintf(image, sizeof image, "%s/disk.%s", a->dir, ext_of(a->format));
    snprintf(snap, sizeof snap, "%s/snap.%s", a->dir, ext_of(a->format));
    snprintf(model_path, sizeof model_path, "%s/model.bin", a->dir);
    snprintf(log_path, sizeof log_path, "%s/ops.log", a->dir);
    snprintf(check_out, sizeof check_out, "%s/check.out", a->dir);
    setup su = {.format = a->format, .opts = a->opts, .dir = a->dir, .diff = a->diff, .size = a->size, .seed = a->seed};
    vdkit_library *lib = open_library(&su);
    model m;
    model_init(&m, a->size, a->seed);
    rng r = {a->seed * 7919};
    uint64_t passed = 0, failed = 0, killed_mid = 0, completed = 0, flushes = 0;
    uint64_t snapshots = 0, commits = 0, killed_in_commit = 0, killed_on_snap = 0, stale_links = 0;
    int on_snap = 0; /* snap.EXT is the top (the log's last chain step was a snapshot) */
    const char *label = a->diff ? "diff" : a->opts ? a->opts : "default";
    for (uint64_t t = 0; t < a->trials; ++t) {
        snprintf(what, sizeof what, "%s (%s) trial %llu seed %llu", a->format, label, (unsigned long long)t,
                 (unsigned long long)a->seed);
        if (t % a->recreate_every == 0) {
            make_image(lib, &su, image, &m);
            on_snap = 0;
        }
        save_model(&m, model_path);
        unlink(log_path);
        char seed_s[32];
        snprintf(seed_s, sizeof seed_s, "%llu", (unsigned long long)(a->seed * 1000003ull + t));
        int pfd[2];
        if (pipe(pfd) != 0) die("pipe: %s", strerror(errno));
        pid_t pid = fork();
        if (pid < 0) die("fork: %s", strerror(errno));
        if (pid == 0) {
            close(pfd[0]);
            dup2(pfd[1], 1);
            const char *argv[24] = {self,    "writer", "--format", a->format, "--image", image, "--model", model_path,
                                    "--log", log_path, "--seed",   seed_s,    "--ops",   "0",   "--dir",   a->dir};
            int n = 16;
            if (a->opts) {
                argv[n++] = "--opts";
                argv[n++] = a->opts;
            }
            if (a->diff) argv[n++] = "--diff";
            if (on_snap) argv[n++] = "--on-snap";
            argv[n] = NULL;
            execv(self, (char *const *)argv);
            _exit(127);
        }
        close(pfd[1]);
        /* One trial in ten is killed while it opens the image; the others
         * once it has, at a random moment of its writing. */
        if (rnd_below(&r, 10) != 0) {
            char c;
            if (read(pfd[0], &c, 1) != 1) { /* it died: judged below */
            }
        }
        sleep_us(rnd_below(&r, a->max_kill_ms * 1000 + 1));
        kill(pid, SIGKILL);
        close(pfd[0]);
        int status = 0;
        waitpid(pid, &status, 0);
        if (!(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)) {
            ++failed;
            printf("FAIL: %s: the writer ended by itself (status %d) before the kill\n", what, status);
            make_image(lib, &su, image, &m);
            on_snap = 0;
            continue;
        }
        /* What the writer did: its log, on the model it started from. */
        logbuf lb = read_log(log_path);
        size_t pos = 0;
        const uint8_t *payload;
        rec_header hbuf;
        const rec_header *h;
        int nrec = 0, bad_log = 0, in_commit = 0;
        while ((h = next_rec(&lb, &pos, &hbuf, &payload))) {
            ++nrec;
            if (h->op == REC_D_FLUSHED) ++flushes;
            /* Chain steps (chain_snapshot, chain_commit): the content stays. */
            if (h->op == REC_D_SNAPSHOT) {
                if (m.npend) bad_log = 1; /* a snapshot follows a flush */
                memcpy(m.parent, m.cur, m.nsec * 4);
                on_snap = 1;
                ++snapshots;
                continue;
            }
            if (h->op == REC_D_COMMIT) {
                if (m.npend || !on_snap) bad_log = 1;
                in_commit = 1;
                continue;
            }
            if (h->op == REC_D_COMMITTED) {
                memcpy(m.parent, m.base, m.nsec * 4);
                on_snap = in_commit = 0;
                ++commits;
                continue;
            }
            if (model_apply(&m, h->op, h->a, h->b, (uint32_t)h->c)) bad_log = 1;
            if (h->op == REC_D_WRITE && h->c >= m.next_gen) m.next_gen = (uint32_t)h->c + 1;
        }
        free(lb.data);
        if (bad_log) die("%s: the writer's log does not fit the model", what);
        if (nrec) ++killed_mid;
        killed_in_commit += in_commit;
        killed_on_snap += on_snap;
        /* A snapshot the log does not name (killed while making it) or one
         * committed already is no part of the chain. */
        if (!on_snap) remove_images(a->dir, 1);
        int ok = 1;
        if (on_snap && in_commit) {
            /* Finding 5 (docs/reliability.md), fixed: a kill anywhere inside
             * a commit must leave a chain that opens as it is — the disk's
             * new modification id reaches the snapshot before any data
             * moves (announce_change in core/src/disk/chain_ops.cpp). A
             * chain that refuses (PARENT_MISMATCH or anything else) fails
             * the trial, and is relinked (rebase -u, what a user would do)
             * only so that the data can still be judged. */
            vdkit_disk *probe = NULL;
            vdkit_error pe;
            init_err(&pe);
            if (vdkit_disk_open(lib, snap, a->format, 0, NULL, &probe, &pe) == VDKIT_OK) {
                vdkit_disk_close(probe, &pe);
            } else {
                ++stale_links;
                ok = 0;
                printf("FAIL: %s: the chain does not open after a kill inside a commit: %s\n", what, pe.message);
                char parent_name[64];
                snprintf(parent_name, sizeof parent_name, "disk.%s", ext_of(a->format));
                init_err(&pe);
                probe = NULL;
                if (vdkit_disk_open(lib, snap, a->format, VDKIT_DISK_WRITE | VDKIT_DISK_NO_PARENTS, NULL, &probe,
                                    &pe) != VDKIT_OK ||
                    vdkit_disk_rebase(probe, parent_name, a->format, VDKIT_REBASE_UNSAFE, NULL, NULL, &pe) != VDKIT_OK)
                    printf("FAIL: %s: relinking the snapshot after a kill inside a commit: %s\n", what, pe.message);
                if (probe) vdkit_disk_close(probe, &pe);
            }
        }
        /* Every image the writer may have changed: the disk (a commit
         * writes it), and the snapshot while it is the top. */
        for (int img = 0; img < 1 + on_snap; ++img) {
            const char *path = img ? snap : image;
            const int rc = run_check(a->vdkit, a->format, path, check_out);
            /* 63: the format cannot check images (raw has no metadata). */
            if (rc == 0 || (rc == 63 && strcmp(a->format, "raw") == 0)) continue;
            if ((rc == 3 || rc == 2) && all_expected(a->format, check_out, what)) continue;
            ok = 0;
            printf("FAIL: %s: vdkit check %s exit %d:\n", what, img ? "snap" : "disk", rc);
            FILE *f = fopen(check_out, "r");
            char line[2048];
            for (int n = 0; f && n < 12 && fgets(line, sizeof line, f); ++n)
                printf("    %s", line);
            if (f) fclose(f);
        }
        vdkit_disk *d = NULL;
        vdkit_error e;
        init_err(&e);
        if (vdkit_disk_open(lib, on_snap ? snap : image, a->format, 0, NULL, &d, &e) != VDKIT_OK) {
            printf("FAIL: %s: the image does not open after the kill: %s\n", what, e.message);
            ok = 0;
        } else {
            if (verify(&m, d, what, 1)) ok = 0;
            vdkit_disk_close(d, &e);
        }
        if (ok)
            ++passed;
        else {
            ++failed;
            make_image(lib, &su, image, &m); /* start over from a sound image */
            on_snap = 0;
            if (failed > 20) break;
        }
        ++completed;
    }
    vdkit_library_close(lib);
    model_free(&m);
    print_expected();
    if (stale_links)
        printf("FAIL: %llu× a kill inside a commit left a chain that does not open (docs/reliability.md, finding "
               "5)\n",
               (unsigned long long)stale_links);
    printf("kill %s (%s): %llu trials, %llu killed after writing, %llu flushes logged, %llu snapshots and %llu "
           "commits made, %llu kills inside a commit, %llu with a snapshot on top\n",
           a->format, label, (unsigned long long)completed, (unsigned long long)killed_mid, (unsigned long long)flushes,
           (unsigned long long)snapshots, (unsigned long long)commits, (unsigned long long)killed_in_commit,
           (unsigned long long)killed_on_snap);
    printf("%llu passed, %llu failed\n", (unsigned long long)passed, (unsigned long long)failed);
    return failed ? 1 : 0;
}

/* ---- power mode ---- */

typedef struct fbuf {
    char path[4096]; /* in the replay directory */
    uint8_t *data;
    uint64_t size, cap;
} fbuf;

static void fb_reserve(fbuf *f, uint64_t size) {
    if (size <= f->cap) return;
    uint64_t cap = f->cap ? f->cap : 1u << 20;
    while (cap < size)
        cap *= 2;
    f->data = realloc(f->data, cap);
    if (!f->data) die("out of memory");
    memset(f->data + f->cap, 0, cap - f->cap);
    f->cap = cap;
}

static void fb_apply(fbuf *f, const rec_header *h, const uint8_t *payload) {
    switch (h->op) {
    case REC_OPEN:
        if (h->a) f->size = 0;
        break;
    case REC_WRITE:
        fb_reserve(f, h->a + h->b);
        memcpy(f->data + h->a, payload, h->b);
        if (h->a + h->b > f->size) f->size = h->a + h->b;
        break;
    case REC_TRUNCATE:
        fb_reserve(f, h->a);
        if (h->a < f->size) memset(f->data + h->a, 0, f->size - h->a);
        f->size = h->a;
        break;
    case REC_ZERO:
    case REC_DISCARD:
        if (h->a < f->size) memset(f->data + h->a, 0, (h->a + h->b > f->size ? f->size : h->a + h->b) - h->a);
        break;
    default:
        break;
    }
}

/* Write f's bytes to its path, leaving zero 4 KiB pages as holes. */
static void fb_store(const fbuf *f) {
    int fd = open(f->path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) die("cannot write %s: %s", f->path, strerror(errno));
    if (ftruncate(fd, (off_t)f->size) != 0) die("cannot size %s", f->path);
    static const uint8_t zero[4096];
    for (uint64_t p = 0; p < f->size; p += 4096) {
        const uint64_t n = f->size - p < 4096 ? f->size - p : 4096;
        if (memcmp(f->data + p, zero, n) == 0) continue;
        if (pwrite(fd, f->data + p, n, (off_t)p) != (ssize_t)n) die("cannot write %s", f->path);
    }
    close(fd);
}

typedef struct finding_ctx {
    const char *format, *what;
    int after_repair;
    int unknown, errors;
} finding_ctx;

static void on_finding(void *opaque, uint32_t severity, uint64_t offset, const char *message) {
    finding_ctx *c = opaque;
    if (severity != VDKIT_FINDING_ERROR && severity != VDKIT_FINDING_LEAK) return;
    if (severity == VDKIT_FINDING_ERROR) ++c->errors;
    if (getenv("VDKIT_CRASH_VERBOSE"))
        printf("  %s: finding %u at %llu: %s\n", c->what, severity, (unsigned long long)offset, message);
    if (expected_index(c->format, message, c->after_repair, 1) >= 0) return;
    ++c->unknown;
    if (c->unknown <= 3)
        printf("FAIL: %s: check %s at file byte %llu: %s\n", c->what,
               severity == VDKIT_FINDING_ERROR ? "error" : "leak", (unsigned long long)offset, message);
}

/* One crash state, already in the replay directory. It passes when every
 * finding of check is expected (kExpected), the flushed data reads back
 * (before the repair too when check found no error: a repair must not be
 * needed to read it), and, when check found anything, check -r leaves it
 * clean (but for after-repair entries of kExpected) and reading the model. */
static int judge_state(vdkit_library *lib, const char *image, const char *format, model *m, const char *what,
                       int *repaired) {
    vdkit_error e;
    init_err(&e);
    vdkit_disk *d = NULL;
    *repaired = 0;
    if (vdkit_disk_open(lib, image, format, 0, NULL, &d, &e) != VDKIT_OK) {
        printf("FAIL: %s: does not open: %s\n", what, e.message);
        return 0;
    }
    finding_ctx fc = {format, what, 0, 0, 0};
    vdkit_check_summary sum;
    memset(&sum, 0, sizeof sum);
    sum.struct_size = sizeof sum;
    int ok = 1;
    const vdkit_status cst = vdkit_disk_check(d, 0, on_finding, &fc, &sum, &e);
    if (cst == VDKIT_E_NOT_SUPPORTED && strcmp(format, "raw") == 0) {
        /* raw has no metadata to check: only the data is judged */
    } else if (cst != VDKIT_OK) {
        printf("FAIL: %s: check failed: %s\n", what, e.message);
        ok = 0;
    }
    if (fc.unknown) ok = 0;
    if (!fc.errors && verify(m, d, what, 0)) ok = 0;
    vdkit_disk_close(d, &e);
    if (sum.errors + sum.leaks == 0) return ok;
    /* check -r, then check again and read back. */
    *repaired = 1;
    if (vdkit_disk_open(lib, image, format, VDKIT_DISK_WRITE, NULL, &d, &e) != VDKIT_OK) {
        printf("FAIL: %s: does not open for check -r: %s\n", what, e.message);
        return 0;
    }
    finding_ctx fr = {format, "check -r", 0, 0, 0};
    if (vdkit_disk_check(d, VDKIT_CHECK_REPAIR, getenv("VDKIT_CRASH_VERBOSE") ? on_finding : NULL, &fr, NULL, &e) !=
        VDKIT_OK) {
        printf("FAIL: %s: check -r failed: %s\n", what, e.message);
        ok = 0;
    }
    vdkit_disk_close(d, &e);
    if (vdkit_disk_open(lib, image, format, 0, NULL, &d, &e) != VDKIT_OK) {
        printf("FAIL: %s: does not open after check -r: %s\n", what, e.message);
        return 0;
    }
    char after[700];
    snprintf(after, sizeof after, "%s, after check -r", what);
    finding_ctx fc2 = {format, after, 1, 0, 0};
    memset(&sum, 0, sizeof sum);
    sum.struct_size = sizeof sum;
    if (vdkit_disk_check(d, 0, on_finding, &fc2, &sum, &e) != VDKIT_OK) {
        printf("FAIL: %s: check failed: %s\n", after, e.message);
        ok = 0;
    }
    if (fc2.unknown) ok = 0;
    if (verify(m, d, after, 0)) ok = 0;
    vdkit_disk_close(d, &e);
    return ok;
}

#define MAX_FILES 64

static int run_power(const args *a) {
    if (!a->dir || !a->record_plugins) die("power needs --dir and --record-plugins");
    char work[4096], replay[4096], log_path[4096], config[4096], location[4096], what[600];
    snprintf(work, sizeof work, "%s/work", a->dir);
    snprintf(replay, sizeof replay, "%s/replay", a->dir);
    snprintf(log_path, sizeof log_path, "%s/record.log", a->dir);
    snprintf(config, sizeof config, "%s/record.yaml", a->dir);
    mkdir(work, 0755);
    mkdir(replay, 0755);
    unlink(log_path);
    FILE *cf = fopen(config, "w");
    if (!cf) die("cannot write %s", config);
    fprintf(cf, "defaults:\n  transport:\n    record:\n      log: \"%s\"\n", log_path);
    fclose(cf);
    const char *ext = ext_of(a->format);
    snprintf(location, sizeof location, "record://%s/disk.%s", work, ext);
    setup su = {.format = a->format,
                .opts = a->opts,
                .dir = work,
                .diff = a->diff,
                .size = a->size,
                .seed = a->seed,
                .plugin_path = a->record_plugins,
                .config = config};
    const char *label = a->diff ? "diff" : a->opts ? a->opts : "default";

    /* Record: create (the files start empty), flush, run the workload, close. */
    vdkit_library *lib = open_library(&su);
    model m, m0;
    model_init(&m, a->size, a->seed);
    model_init(&m0, a->size, a->seed);
    make_image(lib, &su, location, &m);
    logger lg = {open(log_path, O_WRONLY | O_CREAT | O_APPEND, 0644)};
    if (lg.fd < 0) die("cannot open %s", log_path);
    log_rec(&lg, REC_D_FLUSHED, 0, 0, 0); /* the closed new image is the first flushed state */
    model_copy(&m0, &m);
    vdkit_disk *d = NULL;
    vdkit_error e;
    init_err(&e);
    if (vdkit_disk_open(lib, location, a->format, VDKIT_DISK_WRITE, NULL, &d, &e) != VDKIT_OK)
        die("open %s: %s", location, e.message);
    if (workload(&d, &m, &lg, a->seed * 31 + 7, a->ops, NULL, &e)) die("%s: workload: %s", a->format, e.message);
    if (vdkit_disk_close(d, &e) != VDKIT_OK) die("close: %s", e.message);
    log_rec(&lg, REC_D_FLUSHED, 0, 0, 0);
    close(lg.fd);
    vdkit_library_close(lib);

    /* Replay. The base (for --diff) is read only, never recorded: copy it. */
    if (a->diff) {
        char from[4096], to[4096], cmd[9000];
        snprintf(from, sizeof from, "%s/base.%s", work, ext);
        snprintf(to, sizeof to, "%s/base.%s", replay, ext);
        snprintf(cmd, sizeof cmd, "cp --sparse=always '%s' '%s'", from, to);
        if (system(cmd) != 0) die("cannot copy the base");
    }
    setup plain = {.format = a->format};
    lib = open_library(&plain);
    logbuf lb = read_log(log_path);
    char image[4096];
    snprintf(image, sizeof image, "%s/disk.%s", replay, ext);

    fbuf cur[MAX_FILES], dur[MAX_FILES];
    memset(cur, 0, sizeof cur);
    memset(dur, 0, sizeof dur);
    size_t *pend_at = xmalloc(lb.len / sizeof(rec_header) * sizeof(size_t) + 8); /* offsets of unflushed records */
    size_t npend_at = 0;
    uint32_t nfiles = 0;
    model_copy(&m, &m0);
    rng r = {a->seed ^ 0x5eed};
    uint64_t passed = 0, failed = 0, states = 0, subset_states = 0, repairs = 0, records = 0;
    int started = 0, synced = 0;
    size_t pos = 0;
    const uint8_t *payload;
    rec_header hbuf;
    const rec_header *h;
    while ((h = next_rec(&lb, &pos, &hbuf, &payload))) {
        ++records;
        const size_t at = pos - sizeof *h - h->plen;
        if (h->op >= REC_D_WRITE) {
            if (model_apply(&m, h->op, h->a, h->b, (uint32_t)h->c)) die("bad disk record in %s", log_path);
            if (h->op == REC_D_FLUSHED && !started) {
                started = 1; /* crash states start once the new image was flushed */
                model_copy(&m, &m0);
            }
        } else {
            if (h->id >= MAX_FILES) die("too many files in %s", log_path);
            if (h->id >= nfiles) nfiles = h->id + 1;
            if (h->op == REC_OPEN) {
                const char *slash = memrchr(payload, '/', h->plen);
                const char *name = slash ? slash + 1 : (const char *)payload;
                const int nlen = (int)(h->plen - (uint32_t)(name - (const char *)payload));
                snprintf(cur[h->id].path, sizeof cur[h->id].path, "%s/%.*s", replay, nlen, name);
                memcpy(dur[h->id].path, cur[h->id].path, sizeof cur[h->id].path);
            }
            fb_apply(&cur[h->id], h, payload);
            if (h->op == REC_FLUSH) {
                /* Everything this file had not flushed is flushed now. */
                size_t keep = 0;
                for (size_t i = 0; i < npend_at; ++i) {
                    size_t p2 = pend_at[i];
                    const uint8_t *pl2;
                    rec_header h2buf;
                    const rec_header *h2 = next_rec(&lb, &p2, &h2buf, &pl2);
                    if (h2->id == h->id)
                        fb_apply(&dur[h->id], h2, pl2);
                    else
                        pend_at[keep++] = pend_at[i];
                }
                npend_at = keep;
            } else if (h->op == REC_OPEN) {
                fb_apply(&dur[h->id], h, payload);
            } else {
                pend_at[npend_at++] = at;
            }
            synced = 0;
        }
        if (!started) continue;
        /* The prefix state: every record so far reached the disk. */
        if (!synced) {
            for (uint32_t f = 0; f < nfiles; ++f)
                if (cur[f].path[0]) fb_store(&cur[f]);
            synced = 1;
        }
        snprintf(what, sizeof what, "%s (%s) seed %llu, power cut after record %llu", a->format, label,
                 (unsigned long long)a->seed, (unsigned long long)records);
        int rep = 0;
        ++states;
        if (judge_state(lib, image, a->format, &m, what, &rep))
            ++passed;
        else
            ++failed;
        if (rep) {
            ++repairs;
            synced = 0;
        }
        /* Subsets: on a flush of the disk and at random points, the files'
         * flushed bytes plus a random part of what they had not flushed. */
        const int at_flush = h->op == REC_D_FLUSHED;
        if (npend_at && (at_flush || rnd_below(&r, 8) == 0)) {
            for (uint64_t k = 0; k < a->subsets; ++k) {
                fbuf st[MAX_FILES];
                memset(st, 0, sizeof st);
                for (uint32_t f = 0; f < nfiles; ++f) {
                    st[f] = dur[f];
                    st[f].data = NULL;
                    st[f].cap = 0;
                    fb_reserve(&st[f], dur[f].size);
                    if (dur[f].size) memcpy(st[f].data, dur[f].data, dur[f].size);
                }
                uint64_t kept = 0;
                const uint64_t keep_pct = rnd_below(&r, 101);
                for (size_t i = 0; i < npend_at; ++i) {
                    if (rnd_below(&r, 100) >= keep_pct) continue;
                    size_t p2 = pend_at[i];
                    const uint8_t *pl2;
                    rec_header h2buf;
                    const rec_header *h2 = next_rec(&lb, &p2, &h2buf, &pl2);
                    fb_apply(&st[h2->id], h2, pl2);
                    ++kept;
                }
                for (uint32_t f = 0; f < nfiles; ++f) {
                    if (st[f].path[0]) fb_store(&st[f]);
                    free(st[f].data);
                }
                snprintf(what, sizeof what,
                         "%s (%s) seed %llu, power cut after record %llu keeping %llu of %zu unflushed writes",
                         a->format, label, (unsigned long long)a->seed, (unsigned long long)records,
                         (unsigned long long)kept, npend_at);
                ++states;
                ++subset_states;
                if (judge_state(lib, image, a->format, &m, what, &rep))
                    ++passed;
                else
                    ++failed;
                if (rep) ++repairs;
            }
            synced = 0;
        }
        if (failed > 20) break;
    }
    for (uint32_t f = 0; f < nfiles; ++f) {
        free(cur[f].data);
        free(dur[f].data);
    }
    free(pend_at);
    free(lb.data);
    vdkit_library_close(lib);
    model_free(&m);
    model_free(&m0);
    print_expected();
    printf("power %s (%s): %llu records, %llu states (%llu with a subset of unflushed writes), %llu needed check -r\n",
           a->format, label, (unsigned long long)records, (unsigned long long)states, (unsigned long long)subset_states,
           (unsigned long long)repairs);
    printf("%llu passed, %llu failed\n", (unsigned long long)passed, (unsigned long long)failed);
    return failed ? 1 : 0;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc < 2) die("usage: vdkit_crashsim kill|power|writer ... (see tests/crash/crashsim.c)");
    const args a = parse_args(argc, argv);
    if (strcmp(a.mode, "writer") == 0) return run_writer(&a);
    if (strcmp(a.mode, "kill") == 0) return run_kill(&a, argv[0]);
    if (strcmp(a.mode, "power") == 0) return run_power(&a);
    die("unknown mode %s", a.mode);
}
