// vdkit/endian.hpp — little- and big-endian field access for plugin code.
//
// Image formats store their headers little-endian (VMDK, VDI, toysparse) or
// big-endian (qcow2, VHD); plugins read and write them through these helpers
// instead of each rewriting the byte loops. Header-only, no dependencies, safe on any host
// byte order and on unaligned buffers.
#ifndef VDKIT_ENDIAN_HPP
#define VDKIT_ENDIAN_HPP

#include <cstdint>

namespace vdkit::sdk {

// The n-byte (1..8) little-endian unsigned integer at p.
constexpr uint64_t load_le(const unsigned char *p, int n) noexcept {
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; --i)
        v = (v << 8) | p[i];
    return v;
}

// Store the low n bytes (1..8) of v at p, little-endian.
constexpr void store_le(unsigned char *p, uint64_t v, int n) noexcept {
    for (int i = 0; i < n; ++i)
        p[i] = static_cast<unsigned char>(v >> (8 * i));
}

// The n-byte (1..8) big-endian unsigned integer at p.
constexpr uint64_t load_be(const unsigned char *p, int n) noexcept {
    uint64_t v = 0;
    for (int i = 0; i < n; ++i)
        v = (v << 8) | p[i];
    return v;
}

// Store the low n bytes (1..8) of v at p, big-endian.
constexpr void store_be(unsigned char *p, uint64_t v, int n) noexcept {
    for (int i = n - 1; i >= 0; --i, v >>= 8)
        p[i] = static_cast<unsigned char>(v);
}

} // namespace vdkit::sdk

#endif // VDKIT_ENDIAN_HPP
