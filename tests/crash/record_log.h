/* record_log.h — the log format shared by the `record` test transport
 * (tests/fixtures/record_transport.cpp) and the crash harness
 * (tests/crash/crashsim.c).
 *
 * A log is a sequence of records, each a fixed 40-byte header in host byte
 * order followed by `plen` payload bytes, appended with one write() each (the
 * transport and the harness append to the same file with O_APPEND, so
 * the order in the file is the order things happened).
 *
 * File-level records (the transport; `id` names the file, numbered in the
 * order the transport first opened it):
 *   REC_OPEN     a = 1 when the open created the file; payload: its path
 *   REC_WRITE    a = offset, b = length; payload: the bytes written
 *   REC_FLUSH    fdatasync of the file returned
 *   REC_TRUNCATE a = new size
 *   REC_ZERO     a = offset, b = length (reads as zero afterwards)
 *   REC_DISCARD  a = offset, b = length (reads as zero afterwards)
 * Disk-level records (the harness, before it issues the operation; offsets
 * and lengths in bytes of the virtual disk, `c` a content generation):
 *   REC_D_WRITE   a, b, c = generation of the pattern written
 *   REC_D_ZERO    a, b
 *   REC_D_DISCARD a, b
 *   REC_D_RESOLVE a, b, c: after a discard returned, what the range reads
 *                 as: c = 0 zeros, 1 the parent's data, 2 what it held before
 *   REC_D_FLUSHED vdkit_disk_flush returned OK (written after it returned)
 * Chain steps (kill mode; the content stays, what lies under the top changes):
 *   REC_D_SNAPSHOT  a differencing image (snap.EXT) over the disk was
 *                   created and closed; the workload goes on in it
 *   REC_D_COMMIT    a commit of snap.EXT into the disk begins
 *   REC_D_COMMITTED the commit returned and snap.EXT was closed; the
 *                   workload goes on in the disk
 */
#ifndef VDKIT_TESTS_CRASH_RECORD_LOG_H
#define VDKIT_TESTS_CRASH_RECORD_LOG_H

#include <stdint.h>

enum {
    REC_OPEN = 1,
    REC_WRITE = 2,
    REC_FLUSH = 3,
    REC_TRUNCATE = 4,
    REC_ZERO = 5,
    REC_DISCARD = 6,
    REC_D_WRITE = 100,
    REC_D_ZERO = 101,
    REC_D_DISCARD = 102,
    REC_D_RESOLVE = 103,
    REC_D_FLUSHED = 104,
    REC_D_SNAPSHOT = 105,
    REC_D_COMMIT = 106,
    REC_D_COMMITTED = 107
};

typedef struct rec_header {
    uint32_t op;
    uint32_t id;
    uint64_t a, b, c;
    uint32_t plen;
    uint32_t pad;
} rec_header;

#endif
