// vdkit/text.hpp — how numbers are written in messages.
//
// Offsets in error messages read the same whichever part of vdkit wrote
// them — the core, the CLI or any plugin ("read at offset 0x1a2b failed"):
// every one of them calls these helpers instead of formatting its own.
// Header-only, standard library only (C++17 or later), safe on any thread.
#ifndef VDKIT_TEXT_HPP
#define VDKIT_TEXT_HPP

#include <charconv>
#include <cstdint>
#include <string>
#include <string_view>

namespace vdkit::sdk {

// `value` as "0x" and lower-case hex digits without padding: 0 -> "0x0",
// 6699 -> "0x1a2b". Throws only std::bad_alloc (the string).
inline std::string hex(uint64_t value) {
    char buf[2 + 16] = {'0', 'x'};
    const auto end = std::to_chars(buf + 2, buf + sizeof buf, value, 16).ptr;
    return std::string(buf, end);
}

// `text` as a JSON string literal, quotes included: the quote, the
// backslash and control characters escaped (as \u00XX), other bytes copied as they are (UTF-8
// stays UTF-8). For format details (vdkit_format_ops.get_details). Throws
// only std::bad_alloc.
inline std::string json_quote(std::string_view text) {
    std::string out = "\"";
    for (const char ch : text) {
        const auto c = static_cast<unsigned char>(ch);
        if (c == '"' || c == '\\') {
            out += '\\';
            out += ch;
        } else if (c < 0x20) {
            static const char digits[] = "0123456789abcdef";
            out += "\\u00";
            out += digits[c >> 4];
            out += digits[c & 15];
        } else {
            out += ch;
        }
    }
    return out + "\"";
}

} // namespace vdkit::sdk

#endif // VDKIT_TEXT_HPP
