/*
 * vdkit/status.h — status codes shared by the plugin ABI and the public C API.
 *
 * Contract: a code's number never changes and is never reused. A retired
 * code keeps its number under a VDKIT_E_OBSOLETE_<n> name. New codes are
 * only appended. 0 is success; every other value is an error. The ledger in
 * sdk/docs/abi-ledger.md records the ABI minor that added each code, and
 * tests/abi checks that ledger and this header agree.
 *
 * This header is plain C99 and has no dependencies.
 */
#ifndef VDKIT_STATUS_H
#define VDKIT_STATUS_H

#include <stdint.h>

typedef uint32_t vdkit_status;

#define VDKIT_OK 0u                 /* success */
#define VDKIT_E_INVALID_ARGUMENT 1u /* a caller-supplied value is wrong */
#define VDKIT_E_NOT_SUPPORTED 2u    /* the plugin or image cannot do this */
#define VDKIT_E_NOT_FOUND 3u        /* no such file, plugin, key or parent */
#define VDKIT_E_IO 4u               /* the operating system or transport failed */
#define VDKIT_E_CORRUPT 5u          /* an image structure is malformed */
#define VDKIT_E_NO_MEMORY 6u        /* an allocation failed or a bound was hit */
#define VDKIT_E_BUSY 7u             /* the image is locked by another user */
#define VDKIT_E_READ_ONLY 8u        /* a write to something opened read-only */
#define VDKIT_E_INTERNAL 9u         /* a bug: an invariant failed or a plugin threw */
#define VDKIT_E_ABI 10u             /* a plugin's ABI does not match the host */
#define VDKIT_E_UNALLOCATED 11u     /* read: the range is not allocated in this image */
#define VDKIT_E_OUT_OF_RANGE 12u    /* an offset or length is beyond the disk */
#define VDKIT_E_EXISTS 13u          /* the target already exists */
#define VDKIT_E_CANCELLED 14u       /* the progress callback asked to stop */
#define VDKIT_E_PERMISSION 15u      /* a path or operation is refused by policy */
#define VDKIT_E_AMBIGUOUS 16u       /* format probing found a tie */
#define VDKIT_E_CONFIG 17u          /* an option or config file is invalid */
#define VDKIT_E_PARENT_MISMATCH 18u /* a chain link does not verify */
#define VDKIT_E_BLOCK_FREE 19u      /* write: the block is unallocated, write it whole */

/* One past the highest code defined by this header. */
#define VDKIT_STATUS_COUNT 20u

#endif /* VDKIT_STATUS_H */
