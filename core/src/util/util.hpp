// Shared helpers for the core and the built-in plugins' tests: checked
// arithmetic, string parsing, UUIDs and zero detection. One place, so no
// plugin or core module writes its own. Everything here is pure and
// thread-safe (generate_uuid reads the OS random source). UUIDs are
// Boost.UUID's (version 4, canonical lower-case text).
#ifndef VDKIT_CORE_UTIL_HPP
#define VDKIT_CORE_UTIL_HPP

#include "vdkit/text.hpp"

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace vdkit::util {

// Checked arithmetic for values derived from untrusted headers.
inline std::optional<uint64_t> checked_add(uint64_t a, uint64_t b) noexcept {
    uint64_t r;
    if (__builtin_add_overflow(a, b, &r)) return std::nullopt;
    return r;
}
inline std::optional<uint64_t> checked_mul(uint64_t a, uint64_t b) noexcept {
    uint64_t r;
    if (__builtin_mul_overflow(a, b, &r)) return std::nullopt;
    return r;
}
// True when [offset, offset+len) lies within [0, limit).
inline bool range_within(uint64_t offset, uint64_t len, uint64_t limit) noexcept {
    auto end = checked_add(offset, len);
    return end && *end <= limit;
}

std::string to_lower(std::string_view s);
bool iequals(std::string_view a, std::string_view b) noexcept;
bool starts_with_icase(std::string_view s, std::string_view prefix) noexcept;

// Levenshtein distance, for "did you mean" suggestions.
size_t edit_distance(std::string_view a, std::string_view b);
// The candidate closest to name, if it is close enough to be a likely typo.
std::optional<std::string> closest_match(std::string_view name, const std::vector<std::string> &candidates);

// "4096", "64k", "1.5G", "2T" (binary multiples, case-insensitive, optional
// trailing 'B' or 'iB'). Nothing on overflow, negative or malformed input.
std::optional<uint64_t> parse_size(std::string_view text);
std::optional<bool> parse_bool(std::string_view text);
std::optional<int64_t> parse_int(std::string_view text);
std::optional<uint64_t> parse_uint(std::string_view text);

// "1.5 GiB" style.
std::string format_size(uint64_t bytes);
using sdk::hex; // "0x1a2b": offsets in messages (vdkit/text.hpp, the plugins' too)

using Uuid = std::array<uint8_t, 16>;
void generate_uuid(uint8_t out[16]) noexcept;
std::string uuid_to_string(const uint8_t uuid[16]);
std::optional<Uuid> parse_uuid(std::string_view text);
bool uuid_is_nil(const uint8_t uuid[16]) noexcept;

// True when every byte of buf is zero (word-at-a-time).
bool is_zero(const void *buf, size_t len) noexcept;

// Split a ':'-separated path list (VDKIT_PLUGIN_PATH style); empty items dropped.
std::vector<std::string> split_path_list(std::string_view text);

// Split "a=1,b=2" into pairs; a key without '=' gets value "on".
// Returns nothing on an empty key. Commas can be escaped as ",,".
std::optional<std::vector<std::pair<std::string, std::string>>> parse_key_values(std::string_view text);

} // namespace vdkit::util

#endif
