/*
 * vdkit/constants.h — values shared by the public C API (vdkit.h) and the
 * plugin ABI (plugin.h): plugin kinds, block states, log levels, check flags
 * and finding severities. Both headers include this one, so each compiles on
 * its own and together they define every value once.
 *
 * C99 and C++ (any standard); macros only, no declarations. The values are
 * part of the ABI (sdk/docs/abi-ledger.md): never renumbered.
 */
#ifndef VDKIT_CONSTANTS_H
#define VDKIT_CONSTANTS_H

/* ---- plugin kinds (vdkit_plugin_summary.kind, vdkit_plugin_info.kind) ------- */
#define VDKIT_KIND_FORMAT 1u
#define VDKIT_KIND_FILTER 2u
#define VDKIT_KIND_TRANSPORT 3u

/* ---- allocation status (vdkit_disk_block_status, format block_status) -------- */
#define VDKIT_BLOCK_DATA 0u        /* format: allocated here, holds data */
#define VDKIT_BLOCK_ZERO 1u        /* format: reads as zero here (shadows the parent) */
#define VDKIT_BLOCK_UNALLOCATED 2u /* format: not present here; look at the parent */

/* ---- log levels ---------------------------------------------------------------- */
#define VDKIT_LOG_ERROR 0u
#define VDKIT_LOG_WARNING 1u
#define VDKIT_LOG_INFO 2u
#define VDKIT_LOG_DEBUG 3u

/* ---- check flags (vdkit_disk_check, format check) --------------------------------- */
#define VDKIT_CHECK_REPAIR (1u << 0)  /* fix what can be fixed */
#define VDKIT_CHECK_DRY_RUN (1u << 1) /* with REPAIR: say what would be fixed, write nothing */

/* ---- check findings -------------------------------------------------------------- */
#define VDKIT_FINDING_ERROR 0u    /* data is or may be wrong */
#define VDKIT_FINDING_LEAK 1u     /* space is wasted, data is fine */
#define VDKIT_FINDING_REPAIRED 2u /* found and fixed */
#define VDKIT_FINDING_NOTE 3u

#endif /* VDKIT_CONSTANTS_H */
