#include "util/util.hpp"

#include <boost/uuid/random_generator.hpp>
#include <boost/uuid/string_generator.hpp>
#include <boost/uuid/uuid.hpp>
#include <boost/uuid/uuid_io.hpp>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <cstring>
#include <fcntl.h>
#include <random>

namespace vdkit::util {

std::string to_lower(std::string_view s) {
    std::string out(s);
    for (char &c : out)
        c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return out;
}

bool iequals(std::string_view a, std::string_view b) noexcept {
    if (a.size() != b.size()) return false;
    for (size_t i = 0; i < a.size(); ++i)
        if (std::tolower(static_cast<unsigned char>(a[i])) != std::tolower(static_cast<unsigned char>(b[i])))
            return false;
    return true;
}

bool starts_with_icase(std::string_view s, std::string_view prefix) noexcept {
    return s.size() >= prefix.size() && iequals(s.substr(0, prefix.size()), prefix);
}

size_t edit_distance(std::string_view a, std::string_view b) {
    std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
    for (size_t j = 0; j <= b.size(); ++j)
        prev[j] = j;
    for (size_t i = 1; i <= a.size(); ++i) {
        cur[0] = i;
        for (size_t j = 1; j <= b.size(); ++j) {
            size_t cost =
                std::tolower(static_cast<unsigned char>(a[i - 1])) == std::tolower(static_cast<unsigned char>(b[j - 1]))
                    ? 0
                    : 1;
            cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost});
        }
        std::swap(prev, cur);
    }
    return prev[b.size()];
}

std::optional<std::string> closest_match(std::string_view name, const std::vector<std::string> &candidates) {
    std::optional<std::string> best;
    size_t best_distance = SIZE_MAX;
    for (const std::string &c : candidates) {
        size_t d = edit_distance(name, c);
        if (d < best_distance) {
            best_distance = d;
            best = c;
        }
    }
    // A typo is at most a third of the word (and at least one edit away).
    if (best && best_distance <= std::max<size_t>(2, name.size() / 3)) return best;
    // An abbreviation ("prealloc" for "preallocation") is a likely intent too.
    if (name.size() >= 3)
        for (const std::string &c : candidates)
            if (starts_with_icase(c, name)) return c;
    return std::nullopt;
}

std::optional<uint64_t> parse_uint(std::string_view text) {
    uint64_t v = 0;
    if (text.empty()) return std::nullopt;
    auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), v, 10);
    if (ec != std::errc() || p != text.data() + text.size()) return std::nullopt;
    return v;
}

std::optional<int64_t> parse_int(std::string_view text) {
    int64_t v = 0;
    if (text.empty()) return std::nullopt;
    auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), v, 10);
    if (ec != std::errc() || p != text.data() + text.size()) return std::nullopt;
    return v;
}

std::optional<uint64_t> parse_size(std::string_view text) {
    if (text.empty()) return std::nullopt;
    size_t i = 0;
    while (i < text.size() && (std::isdigit(static_cast<unsigned char>(text[i])) || text[i] == '.'))
        ++i;
    std::string_view number = text.substr(0, i);
    std::string suffix = to_lower(text.substr(i));
    if (number.empty()) return std::nullopt;
    if (suffix.size() >= 2 && suffix.substr(suffix.size() - 2) == "ib")
        suffix.resize(suffix.size() - 2);
    else if (suffix.size() >= 1 && suffix.back() == 'b' && suffix.size() == 2)
        suffix.resize(1);
    else if (suffix == "b")
        suffix.clear();
    unsigned shift = 0;
    if (suffix.empty())
        shift = 0;
    else if (suffix == "k")
        shift = 10;
    else if (suffix == "m")
        shift = 20;
    else if (suffix == "g")
        shift = 30;
    else if (suffix == "t")
        shift = 40;
    else if (suffix == "p")
        shift = 50;
    else if (suffix == "e")
        shift = 60;
    else
        return std::nullopt;
    if (number.find('.') == std::string_view::npos) {
        auto v = parse_uint(number);
        if (!v) return std::nullopt;
        if (shift && (*v >> (64 - shift)) != 0) return std::nullopt;
        return *v << shift;
    }
    // Fractions ("1.5G") need a suffix and must come out whole.
    if (shift == 0) return std::nullopt;
    double d = 0;
    try {
        d = std::stod(std::string(number));
    } catch (...) {
        return std::nullopt;
    }
    long double scaled = static_cast<long double>(d) * static_cast<long double>(1ull << shift);
    if (!(scaled >= 0) || scaled >= 18446744073709551615.0L) return std::nullopt;
    long double whole = std::floor(scaled);
    if (whole != scaled) return std::nullopt;
    return static_cast<uint64_t>(whole);
}

std::optional<bool> parse_bool(std::string_view text) {
    std::string t = to_lower(text);
    if (t == "1" || t == "true" || t == "yes" || t == "on") return true;
    if (t == "0" || t == "false" || t == "no" || t == "off") return false;
    return std::nullopt;
}

std::string format_size(uint64_t bytes) {
    static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
    double v = static_cast<double>(bytes);
    int u = 0;
    while (v >= 1024.0 && u < 6) {
        v /= 1024.0;
        ++u;
    }
    char buf[64];
    if (u == 0)
        std::snprintf(buf, sizeof buf, "%llu B", static_cast<unsigned long long>(bytes));
    else
        std::snprintf(buf, sizeof buf, "%.3g %s", v, units[u]);
    return buf;
}

// UUIDs are Boost.UUID's (RFC 4122 version 4 from the OS random source, and
// its canonical text form); only the byte layout (uint8_t[16]) is ours.
void generate_uuid(uint8_t out[16]) noexcept {
    boost::uuids::uuid u{};
    try {
        u = boost::uuids::random_generator()();
    } catch (...) {
        // entropy_error: no OS random source (getrandom cannot fail for 16
        // bytes after boot); Boost's generator seeded from std::random_device.
        std::random_device rd;
        std::seed_seq seed{rd(), rd(), rd(), rd(), rd(), rd(), rd(), rd()};
        std::mt19937 engine(seed);
        u = boost::uuids::basic_random_generator<std::mt19937>(engine)();
    }
    std::memcpy(out, u.data, sizeof u.data);
}

std::string uuid_to_string(const uint8_t u[16]) {
    boost::uuids::uuid v{};
    std::memcpy(v.data, u, sizeof v.data);
    return boost::uuids::to_string(v);
}

std::optional<Uuid> parse_uuid(std::string_view text) {
    boost::uuids::uuid v{};
    try {
        v = boost::uuids::string_generator()(text.begin(), text.end());
    } catch (const std::exception &) { // not 32 hex digits (with the usual dashes or braces)
        return std::nullopt;
    }
    Uuid u{};
    std::memcpy(u.data(), v.data, u.size());
    return u;
}

bool uuid_is_nil(const uint8_t uuid[16]) noexcept {
    return is_zero(uuid, 16);
}

bool is_zero(const void *buf, size_t len) noexcept {
    const auto *p = static_cast<const unsigned char *>(buf);
    while (len && (reinterpret_cast<uintptr_t>(p) & 7)) {
        if (*p) return false;
        ++p;
        --len;
    }
    const auto *w = reinterpret_cast<const uint64_t *>(p);
    for (; len >= 64; len -= 64, w += 8)
        if ((w[0] | w[1] | w[2] | w[3] | w[4] | w[5] | w[6] | w[7]) != 0) return false;
    for (; len >= 8; len -= 8, ++w)
        if (*w) return false;
    p = reinterpret_cast<const unsigned char *>(w);
    for (; len; --len, ++p)
        if (*p) return false;
    return true;
}

std::vector<std::string> split_path_list(std::string_view text) {
    std::vector<std::string> out;
    size_t start = 0;
    while (start <= text.size()) {
        size_t colon = text.find(':', start);
        if (colon == std::string_view::npos) colon = text.size();
        if (colon > start) out.emplace_back(text.substr(start, colon - start));
        start = colon + 1;
    }
    return out;
}

std::optional<std::vector<std::pair<std::string, std::string>>> parse_key_values(std::string_view text) {
    std::vector<std::pair<std::string, std::string>> out;
    std::string item;
    auto flush = [&]() -> bool {
        if (item.empty()) return true;
        size_t eq = item.find('=');
        std::string k = item.substr(0, eq);
        std::string v = eq == std::string::npos ? "on" : item.substr(eq + 1);
        if (k.empty()) return false;
        out.emplace_back(std::move(k), std::move(v));
        item.clear();
        return true;
    };
    for (size_t i = 0; i < text.size(); ++i) {
        if (text[i] == ',') {
            if (i + 1 < text.size() && text[i + 1] == ',') {
                item.push_back(',');
                ++i;
                continue;
            }
            if (!flush()) return std::nullopt;
            continue;
        }
        item.push_back(text[i]);
    }
    if (!flush()) return std::nullopt;
    return out;
}

} // namespace vdkit::util
