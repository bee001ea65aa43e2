#include "descriptor.hpp"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstdio>
#include <random>

namespace vdkit::vmdk {

namespace {

std::string_view trim(std::string_view s) {
    while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front())))
        s.remove_prefix(1);
    while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back())))
        s.remove_suffix(1);
    return s;
}

bool iequal(std::string_view a, std::string_view b) {
    return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
               return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
           });
}

std::string unquote(std::string_view v) {
    v = trim(v);
    if (v.size() >= 2 && v.front() == '"' && v.back() == '"') v = v.substr(1, v.size() - 2);
    return std::string(v);
}

std::optional<uint64_t> parse_u64(std::string_view s) {
    uint64_t v = 0;
    if (s.empty()) return std::nullopt;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc() || p != s.data() + s.size()) return std::nullopt;
    return v;
}

std::optional<ExtentType> parse_type(std::string_view t) {
    struct {
        const char *name;
        ExtentType type;
    } const table[] = {
        {"FLAT", ExtentType::flat},        {"SPARSE", ExtentType::sparse},          {"ZERO", ExtentType::zero},
        {"VMFS", ExtentType::vmfs},        {"VMFSSPARSE", ExtentType::vmfs_sparse}, {"VMFSRDM", ExtentType::vmfs_rdm},
        {"VMFSRAW", ExtentType::vmfs_raw}, {"SESPARSE", ExtentType::se_sparse}};
    for (const auto &e : table)
        if (iequal(t, e.name)) return e.type;
    return std::nullopt;
}

// Splits an extent line into fields; a quoted field may contain spaces.
std::optional<std::vector<std::string>> split_fields(std::string_view line) {
    std::vector<std::string> out;
    size_t i = 0;
    while (i < line.size()) {
        while (i < line.size() && std::isspace(static_cast<unsigned char>(line[i])))
            ++i;
        if (i >= line.size()) break;
        if (line[i] == '"') {
            size_t end = line.find('"', i + 1);
            if (end == std::string_view::npos) return std::nullopt;
            out.emplace_back(line.substr(i + 1, end - i - 1));
            i = end + 1;
        } else {
            size_t end = i;
            while (end < line.size() && !std::isspace(static_cast<unsigned char>(line[end])))
                ++end;
            // A quote inside an unquoted field (RW 8 SPARSE a"b") is not a
            // file name any writer could put back between quotes.
            if (line.substr(i, end - i).find('"') != std::string_view::npos) return std::nullopt;
            out.emplace_back(line.substr(i, end - i));
            i = end;
        }
    }
    return out;
}

} // namespace

const char *to_string(ExtentType t) {
    switch (t) {
    case ExtentType::flat:
        return "FLAT";
    case ExtentType::sparse:
        return "SPARSE";
    case ExtentType::zero:
        return "ZERO";
    case ExtentType::vmfs:
        return "VMFS";
    case ExtentType::vmfs_sparse:
        return "VMFSSPARSE";
    case ExtentType::vmfs_rdm:
        return "VMFSRDM";
    case ExtentType::vmfs_raw:
        return "VMFSRAW";
    case ExtentType::se_sparse:
        return "SESPARSE";
    }
    return "?";
}

bool Descriptor::has_parent() const {
    return !parent_cid.empty() && !iequal(parent_cid, "ffffffff");
}

std::optional<std::string> Descriptor::ddb_get(std::string_view key) const {
    for (const auto &[k, v] : ddb)
        if (iequal(k, key)) return v;
    return std::nullopt;
}

std::string render_descriptor(const Descriptor &d) {
    std::string out = "# Disk DescriptorFile\nversion=" + d.version + "\nCID=" + d.cid +
                      "\nparentCID=" + (d.parent_cid.empty() ? std::string("ffffffff") : d.parent_cid) +
                      "\ncreateType=\"" + d.create_type + "\"\n";
    if (d.has_parent()) out += "parentFileNameHint=\"" + d.parent_hint + "\"\n";
    out += "\n# Extent description\n";
    for (const ExtentLine &e : d.extents) {
        out += e.access == Access::rw ? "RW " : e.access == Access::rdonly ? "RDONLY " : "NOACCESS ";
        out += std::to_string(e.sectors) + " " + to_string(e.type);
        if (e.type != ExtentType::zero) out += " \"" + e.filename + "\"";
        if (e.type == ExtentType::flat) out += " " + std::to_string(e.offset);
        out += "\n";
    }
    out += "\n# The Disk Data Base\n#DDB\n\n";
    for (const auto &[k, v] : d.ddb)
        out += k + " = \"" + v + "\"\n";
    return out;
}

std::string new_cid() {
    std::random_device rd;
    for (;;) {
        uint32_t v = rd();
        if (v >= 0xfffffffeu) continue;
        char buf[16];
        std::snprintf(buf, sizeof buf, "%08x", v);
        return buf;
    }
}

bool looks_like_descriptor(std::string_view text) {
    size_t pos = 0;
    while (pos < text.size()) {
        size_t end = text.find('\n', pos);
        std::string_view line = trim(text.substr(pos, end == std::string_view::npos ? end : end - pos));
        pos = end == std::string_view::npos ? text.size() : end + 1;
        if (line.empty() || line[0] == '#') continue;
        size_t eq = line.find('=');
        if (eq == std::string_view::npos) return false;
        if (!iequal(trim(line.substr(0, eq)), "version")) return false;
        std::string v = unquote(line.substr(eq + 1));
        return v == "1" || v == "2" || v == "3";
    }
    return false;
}

std::optional<Descriptor> parse_descriptor(std::string_view text, std::string *error, bool embedded) {
    auto fail = [&](int line, const std::string &why) -> std::optional<Descriptor> {
        if (error) *error = "descriptor line " + std::to_string(line) + ": " + why;
        return std::nullopt;
    };
    size_t nul = text.find('\0');
    if (nul != std::string_view::npos) text = text.substr(0, nul);
    if (text.size() > kMaxDescriptorBytes) return fail(0, "longer than 1 MiB");
    Descriptor d;
    std::pair<std::string_view, int> header_lines[] = {
        {"version", 0}, {"CID", 0}, {"parentCID", 0}, {"createType", 0}, {"parentFileNameHint", 0}};
    size_t pos = 0;
    int n = 0;
    while (pos < text.size()) {
        if (static_cast<size_t>(++n) > kMaxLines) return fail(n, "too many lines");
        size_t end = text.find('\n', pos);
        std::string_view line = text.substr(pos, end == std::string_view::npos ? std::string_view::npos : end - pos);
        pos = end == std::string_view::npos ? text.size() : end + 1;
        line = trim(line); // also drops a CR before LF
        if (line.empty() || line[0] == '#') continue;
        std::string_view first = line.substr(0, std::min(line.find_first_of(" \t="), line.size()));
        if (iequal(first, "RW") || iequal(first, "RDONLY") || iequal(first, "NOACCESS")) {
            if (d.extents.size() >= kMaxExtents) return fail(n, "too many extents");
            auto fields = split_fields(line);
            if (!fields || fields->size() < 3) return fail(n, "malformed extent line");
            ExtentLine e;
            e.line = n;
            e.access = iequal(first, "RW") ? Access::rw : iequal(first, "RDONLY") ? Access::rdonly : Access::noaccess;
            auto sectors = parse_u64((*fields)[1]);
            if (!sectors) return fail(n, "extent size '" + (*fields)[1] + "' is not a number of sectors");
            e.sectors = *sectors;
            auto type = parse_type((*fields)[2]);
            if (!type) return fail(n, "unknown extent type '" + (*fields)[2] + "'");
            e.type = *type;
            if (e.type != ExtentType::zero) {
                // An embedded descriptor's SPARSE extent may name no file
                // ("", as FreeBSD's mkimg writes it): the file itself (qemu
                // reads it so). A descriptor file always names its extents.
                const bool self = embedded && e.type == ExtentType::sparse && fields->size() >= 4;
                if (fields->size() < 4 || ((*fields)[3].empty() && !self)) return fail(n, "extent has no file name");
                e.filename = (*fields)[3];
            }
            if (fields->size() >= 5) {
                auto off = parse_u64((*fields)[4]);
                if (!off) return fail(n, "extent offset '" + (*fields)[4] + "' is not a number");
                e.offset = *off;
            }
            d.extents.push_back(std::move(e));
            continue;
        }
        size_t eq = line.find('=');
        if (eq == std::string_view::npos) return fail(n, "expected key=value or an extent line");
        std::string_view key = trim(line.substr(0, eq));
        std::string value = unquote(line.substr(eq + 1));
        // A header key given twice is refused: readers disagree about which
        // one counts (qemu and VirtualBox take the first), so a second
        // parentFileNameHint or createType could make vdkit read another
        // disk than they do.
        for (auto &[name, seen_on] : header_lines)
            if (iequal(key, name)) {
                if (seen_on)
                    return fail(n, "duplicate key '" + std::string(key) + "' (first on line " +
                                       std::to_string(seen_on) + "); other readers take the first one");
                seen_on = n;
            }
        if (iequal(key.substr(0, std::min<size_t>(4, key.size())), "ddb."))
            d.ddb.emplace_back(std::string(key), value);
        else if (iequal(key, "version"))
            d.version = value;
        else if (iequal(key, "CID"))
            d.cid = value;
        else if (iequal(key, "parentCID"))
            d.parent_cid = value;
        else if (iequal(key, "createType"))
            d.create_type = value;
        else if (iequal(key, "parentFileNameHint"))
            d.parent_hint = value;
        else
            d.ddb.emplace_back(std::string(key), value); // other header keys are kept too
    }
    if (d.version.empty()) return fail(0, "no version= line");
    if (d.create_type.empty()) return fail(0, "no createType= line");
    if (d.extents.empty()) return fail(0, "no extents");
    return d;
}

} // namespace vdkit::vmdk
