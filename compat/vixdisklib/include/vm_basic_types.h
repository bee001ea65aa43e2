/* vm_basic_types.h -- the basic types VMware's public vixDiskLib.h uses,
 * for programs written for VMware's VDDK that include this name.
 *
 * Part of vdkit's open VixDiskLib-compatible library (compat/vixdisklib).
 * Written from VMware's public API reference; not VMware's file. */
#ifndef VDKIT_VM_BASIC_TYPES_H
#define VDKIT_VM_BASIC_TYPES_H

#include <stddef.h>
#include <stdint.h>

typedef uint8_t uint8;
typedef uint16_t uint16;
typedef uint32_t uint32;
typedef uint64_t uint64;
typedef int8_t int8;
typedef int16_t int16;
typedef int32_t int32;
typedef int64_t int64;

/* VMware's Bool is one byte (char); TRUE is 1. */
typedef char Bool;
#ifndef TRUE
#define TRUE 1
#endif
#ifndef FALSE
#define FALSE 0
#endif

#endif /* VDKIT_VM_BASIC_TYPES_H */
