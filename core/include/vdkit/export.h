/*
 * vdkit/export.h — VDKIT_API, the mark on everything libvdkit exports.
 *
 * libvdkit is built with hidden visibility (-fvisibility=hidden
 * -fvisibility-inlines-hidden): only declarations marked VDKIT_API — the
 * vdkit_* functions of vdkit.h and the vdkit:: C++ API of vdkit.hpp and
 * status.hpp — are in its dynamic symbol table; the core's internals
 * (util/, Host, Image, Boost, yaml-cpp) are not, and a linker version
 * script (core/libvdkit.map) keeps out the std:: and Boost template
 * instantiations whose headers give them default visibility. The test
 * "abi: libvdkit exports only the public API" pins the exported set.
 *
 * C and C++ (any standard); no other header needed.
 */
#ifndef VDKIT_EXPORT_H
#define VDKIT_EXPORT_H

#if defined(_WIN32) || defined(__CYGWIN__)
#ifdef VDKIT_BUILDING_LIBRARY
#define VDKIT_API __declspec(dllexport)
#else
#define VDKIT_API __declspec(dllimport)
#endif
#elif defined(__GNUC__) || defined(__clang__)
#define VDKIT_API __attribute__((visibility("default")))
#else
#define VDKIT_API
#endif

/* VDKIT_LOCAL: a private member of a VDKIT_API class that stays internal
 * (the class's implementation state, constructors only the core calls). */
#if (defined(__GNUC__) || defined(__clang__)) && !defined(_WIN32) && !defined(__CYGWIN__)
#define VDKIT_LOCAL __attribute__((visibility("hidden")))
#else
#define VDKIT_LOCAL
#endif

#endif /* VDKIT_EXPORT_H */
