// LVM2 physical volumes: the label, the PV header, the metadata area header
// and the VG's text metadata (LVM2 lib/format_text/layout.h and the
// metadata format of lvm.conf(5)/vgcfgbackup; formats.md §5.3). Read
// through vdkit (no device-mapper, no lvm2 tools): each logical volume whose
// segments lie on this PV becomes a Volume; linear ones ("striped" with one
// stripe) can be mounted, others are listed by segment type.
#include "volume/scan.hpp"

#include "vdkit/endian.hpp"

#include <algorithm>
#include <cstring>
#include <map>

namespace vdkit::volume {
using sdk::load_le;

namespace {

constexpr char kMdaMagic[] = " LVM2 x[5A%r0N*>";
constexpr uint64_t kMdaHeaderSize = 512;

void add(std::vector<VolumeFinding> &f, FindingSeverity sev, std::optional<uint64_t> off, std::string msg) {
    f.push_back(VolumeFinding{sev, off, std::move(msg)});
}

// ---- the metadata text: name = value, name { ... }, values are numbers,
// "strings" and [lists]; # comments. Bounded depth and size.
// (A section's fields are Field, not std::pair<std::string, Value>: a pair
// of the still incomplete Value inside Value's own definition does not
// compile with clang and libstdc++.)
struct Field;
struct Value {
    enum Kind { number, string, list, section } kind = number;
    int64_t num = 0;
    std::string str;
    std::vector<Value> items;  // list
    std::vector<Field> fields; // section
    const Value *get(std::string_view key) const;
    std::optional<int64_t> number_at(std::string_view key) const {
        const Value *v = get(key);
        return v && v->kind == number ? std::optional<int64_t>(v->num) : std::nullopt;
    }
    std::string string_at(std::string_view key) const {
        const Value *v = get(key);
        return v && v->kind == string ? v->str : std::string();
    }
};
struct Field {
    std::string first; // the name
    Value second;
};
const Value *Value::get(std::string_view key) const {
    for (const auto &[k, v] : fields)
        if (k == key) return &v;
    return nullptr;
}

class Parser {
public:
    explicit Parser(std::string_view t) : t_(t) {}
    // The top-level section; false on a syntax error (error() says where).
    bool parse(Value &top) {
        top.kind = Value::section;
        return fields(top, 0) && (skip(), pos_ == t_.size());
    }
    std::string error() const { return err_.empty() ? "syntax error at byte " + std::to_string(pos_) : err_; }

private:
    void skip() {
        while (pos_ < t_.size()) {
            const char c = t_[pos_];
            if (c == '#') {
                while (pos_ < t_.size() && t_[pos_] != '\n')
                    ++pos_;
            } else if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\0')
                ++pos_;
            else
                break;
        }
    }
    static bool ident_char(char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '.' ||
               c == '-' || c == '+';
    }
    bool fields(Value &sec, int depth) {
        if (depth > 16) return err_ = "metadata nested too deeply", false;
        for (;;) {
            skip();
            if (pos_ >= t_.size() || t_[pos_] == '}') return true;
            const size_t start = pos_;
            while (pos_ < t_.size() && ident_char(t_[pos_]))
                ++pos_;
            if (pos_ == start) return false;
            std::string name(t_.substr(start, pos_ - start));
            skip();
            if (pos_ >= t_.size()) return false;
            Value v;
            if (t_[pos_] == '{') {
                ++pos_;
                v.kind = Value::section;
                if (!fields(v, depth + 1)) return false;
                skip();
                if (pos_ >= t_.size() || t_[pos_] != '}') return false;
                ++pos_;
            } else if (t_[pos_] == '=') {
                ++pos_;
                if (!value(v, depth)) return false;
            } else
                return false;
            if (++count_ > 100000) return err_ = "metadata has too many fields", false;
            sec.fields.push_back(Field{std::move(name), std::move(v)});
        }
    }
    bool value(Value &v, int depth) {
        skip();
        if (pos_ >= t_.size()) return false;
        const char c = t_[pos_];
        if (c == '"') {
            v.kind = Value::string;
            for (++pos_; pos_ < t_.size() && t_[pos_] != '"'; ++pos_) {
                if (t_[pos_] == '\\' && pos_ + 1 < t_.size()) ++pos_;
                v.str += t_[pos_];
            }
            if (pos_ >= t_.size()) return false;
            ++pos_;
            return true;
        }
        if (c == '[') {
            if (depth > 16) return false;
            v.kind = Value::list;
            ++pos_;
            for (;;) {
                skip();
                if (pos_ < t_.size() && t_[pos_] == ']') return ++pos_, true;
                Value item;
                if (!value(item, depth + 1)) return false;
                if (++count_ > 100000) return err_ = "metadata has too many fields", false;
                v.items.push_back(std::move(item));
                skip();
                if (pos_ < t_.size() && t_[pos_] == ',') ++pos_;
            }
        }
        // A number (possibly negative) or a bare word, kept as a string.
        const size_t start = pos_;
        while (pos_ < t_.size() && ident_char(t_[pos_]))
            ++pos_;
        if (pos_ == start) return false;
        const std::string_view w = t_.substr(start, pos_ - start);
        int64_t n = 0;
        bool neg = false, digits = !w.empty();
        size_t i = 0;
        if (!w.empty() && w[0] == '-') neg = true, i = 1;
        if (i == w.size()) digits = false;
        for (; i < w.size() && digits; ++i) {
            if (w[i] < '0' || w[i] > '9' || n > (INT64_MAX - 9) / 10)
                digits = false;
            else
                n = n * 10 + (w[i] - '0');
        }
        if (digits)
            v.kind = Value::number, v.num = neg ? -n : n;
        else
            v.kind = Value::string, v.str = std::string(w);
        return true;
    }

    std::string_view t_;
    size_t pos_ = 0, count_ = 0;
    std::string err_;
};

std::string undash(std::string s) {
    s.erase(std::remove(s.begin(), s.end(), '-'), s.end());
    return s;
}

} // namespace

void parse_lvm_metadata(std::string_view text, const std::string &pv_id, const Volume &pv, uint32_t &next_index,
                        std::vector<Volume> &out, std::vector<VolumeFinding> &findings) {
    Value top;
    Parser p(text);
    if (!p.parse(top)) {
        add(findings, FindingSeverity::error, pv.offset,
            "LVM metadata of the PV at volume " + std::to_string(pv.index) + ": " + p.error());
        return;
    }
    // The VG is the one section at the top level.
    const Value *vg = nullptr;
    std::string vg_name;
    for (const auto &[k, v] : top.fields)
        if (v.kind == Value::section) vg = &v, vg_name = k;
    if (!vg) {
        add(findings, FindingSeverity::error, pv.offset, "LVM metadata names no volume group");
        return;
    }
    const auto extent_size = vg->number_at("extent_size"); // 512-byte sectors
    if (!extent_size || *extent_size <= 0 || *extent_size > (int64_t{1} << 40)) {
        add(findings, FindingSeverity::error, pv.offset, "LVM volume group " + vg_name + " has no valid extent_size");
        return;
    }
    const uint64_t extent_bytes = static_cast<uint64_t>(*extent_size) * 512;
    // Which pvN is this disk, and where its extents start.
    std::map<std::string, uint64_t> pe_start; // pv name -> bytes from the PV start; only ours
    if (const Value *pvs = vg->get("physical_volumes"))
        for (const auto &[name, v] : pvs->fields) {
            if (v.kind != Value::section || undash(v.string_at("id")) != undash(pv_id)) continue;
            const auto ps = v.number_at("pe_start");
            if (ps && *ps >= 0 && static_cast<uint64_t>(*ps) < pv.length / 512)
                pe_start[name] = static_cast<uint64_t>(*ps) * 512;
            else
                add(findings, FindingSeverity::error, pv.offset, "LVM PV " + name + " has no valid pe_start");
        }
    if (pe_start.empty()) {
        add(findings, FindingSeverity::error, pv.offset, "LVM metadata of VG " + vg_name + " does not list this PV");
        return;
    }
    const Value *lvs = vg->get("logical_volumes");
    if (!lvs) return;
    for (const auto &[lv_name, lv] : lvs->fields) {
        if (lv.kind != Value::section) continue;
        if (out.size() >= kMaxLvmVolumes) {
            add(findings, FindingSeverity::error, pv.offset,
                "more than " + std::to_string(kMaxLvmVolumes) + " LVM volumes; the rest are not listed");
            return;
        }
        Volume v;
        v.index = next_index++;
        v.kind = VolumeKind::lvm;
        v.parent = pv.index;
        v.name = vg_name + "/" + lv_name;
        v.part_uuid = lv.string_at("id");
        v.type_name = "LVM logical volume";
        // Segments in start_extent order.
        std::vector<std::pair<int64_t, const Value *>> segs;
        for (const auto &[k, s] : lv.fields)
            if (s.kind == Value::section && k.rfind("segment", 0) == 0)
                segs.emplace_back(s.number_at("start_extent").value_or(-1), &s);
        std::sort(segs.begin(), segs.end(), [](const auto &a, const auto &b) { return a.first < b.first; });
        uint64_t expect = 0;
        std::string problem;
        std::vector<std::string> types;
        for (const auto &[start, s] : segs) {
            std::string type = s->string_at("type");
            const auto count = s->number_at("extent_count");
            const Value *stripes = s->get("stripes");
            const auto nstripes = s->number_at("stripe_count");
            const bool linear = type == "striped" && nstripes == 1 && stripes && stripes->kind == Value::list &&
                                stripes->items.size() == 2 && stripes->items[0].kind == Value::string &&
                                stripes->items[1].kind == Value::number;
            types.push_back(linear ? "linear" : type.empty() ? "unknown" : type);
            if (!linear) {
                if (problem.empty())
                    problem = "its segment type is " + types.back() + " (only linear volumes can be mounted)";
                continue;
            }
            if (start < 0 || static_cast<uint64_t>(start) != expect || !count || *count <= 0 ||
                static_cast<uint64_t>(*count) > pv.length / extent_bytes) {
                problem = "its segments are not contiguous from extent 0";
                continue;
            }
            expect += static_cast<uint64_t>(*count);
            auto where = pe_start.find(stripes->items[0].str);
            const int64_t pe = stripes->items[1].num;
            if (where == pe_start.end()) {
                if (problem.empty()) problem = "it lies partly on another PV (" + stripes->items[0].str + ")";
                continue;
            }
            const uint64_t count_bytes = static_cast<uint64_t>(*count) * extent_bytes;
            if (pe < 0 || static_cast<uint64_t>(pe) > pv.length / extent_bytes ||
                where->second + static_cast<uint64_t>(pe) * extent_bytes > pv.length ||
                count_bytes > pv.length - where->second - static_cast<uint64_t>(pe) * extent_bytes) {
                problem = "a segment lies past the PV's end";
                add(findings, FindingSeverity::error, pv.offset,
                    "LVM volume " + v.name + ": a segment lies past the PV's end");
                continue;
            }
            v.extents.push_back(
                VolumeExtent{pv.offset + where->second + static_cast<uint64_t>(pe) * extent_bytes, count_bytes});
            v.length += count_bytes;
        }
        std::sort(types.begin(), types.end());
        types.erase(std::unique(types.begin(), types.end()), types.end());
        for (const std::string &t : types)
            v.lvm_segment_type += (v.lvm_segment_type.empty() ? "" : ",") + t;
        if (segs.empty()) problem = "it has no segments";
        if (!problem.empty()) {
            v.not_mountable = problem;
            v.extents.clear();
            v.length = 0;
        }
        v.offset = v.extents.empty() ? 0 : v.extents.front().offset;
        out.push_back(std::move(v));
    }
}

bool has_lvm_label(const Reader &r, uint64_t offset, uint64_t length) {
    unsigned char b[512];
    for (uint64_t s = 0; s < 4 && (s + 1) * 512 <= length; ++s) {
        bool inside = false;
        if (!r.read(offset + s * 512, b, sizeof b, inside).is_ok() || !inside) return false;
        if (std::memcmp(b, "LABELONE", 8) == 0 && std::memcmp(b + 24, "LVM2 001", 8) == 0) return true;
    }
    return false;
}

Status scan_lvm(const Reader &r, const Volume &pv, uint32_t &next_index, std::vector<Volume> &out,
                std::vector<VolumeFinding> &findings) {
    unsigned char b[512];
    bool inside = false;
    uint64_t label = 0;
    for (uint64_t s = 0; s < 4; ++s) {
        VDKIT_TRY(r.read(pv.offset + s * 512, b, sizeof b, inside));
        if (inside && std::memcmp(b, "LABELONE", 8) == 0) {
            label = pv.offset + s * 512;
            break;
        }
    }
    if (!label && std::memcmp(b, "LABELONE", 8) != 0) return Status::ok();
    const auto off = static_cast<uint32_t>(load_le(b + 20, 4));
    const auto crc_field = static_cast<uint32_t>(load_le(b + 16, 4));
    (void)crc_field; // LVM's own CRC variant; the metadata's structure is checked instead
    if (off < 32 || off > 512 - 32 - 16) {
        add(findings, FindingSeverity::error, label,
            "LVM label: PV header offset " + std::to_string(off) + " is not inside the label sector");
        return Status::ok();
    }
    const std::string pv_id(reinterpret_cast<const char *>(b + off), 32);
    // Two lists of {offset, size}: data areas, then metadata areas.
    size_t p = off + 32 + 8;
    auto next_area = [&](uint64_t &o, uint64_t &s) {
        if (p + 16 > sizeof b) return false;
        o = load_le(b + p, 8);
        s = load_le(b + p + 8, 8);
        p += 16;
        return o != 0;
    };
    uint64_t o = 0, s = 0;
    while (next_area(o, s)) {
    }
    std::vector<std::pair<uint64_t, uint64_t>> mdas;
    while (next_area(o, s) && mdas.size() < 2)
        mdas.emplace_back(o, s);
    if (mdas.empty()) {
        add(findings, FindingSeverity::note, label,
            "LVM PV at volume " + std::to_string(pv.index) +
                " has no metadata area; its logical volumes are not listed");
        return Status::ok();
    }
    for (const auto &[mda_off, mda_size] : mdas) {
        if (mda_off >= pv.length || mda_size < kMdaHeaderSize || mda_size > pv.length - mda_off) {
            add(findings, FindingSeverity::error, label,
                "LVM metadata area at " + std::to_string(mda_off) + " lies outside the PV");
            continue;
        }
        unsigned char h[kMdaHeaderSize];
        VDKIT_TRY(r.read(pv.offset + mda_off, h, sizeof h, inside));
        if (!inside || std::memcmp(h + 4, kMdaMagic, 16) != 0) {
            add(findings, FindingSeverity::error, pv.offset + mda_off, "LVM metadata area header has no LVM2 magic");
            continue;
        }
        const uint64_t rl_off = load_le(h + 40, 8), rl_size = load_le(h + 48, 8);
        if (rl_size == 0) continue; // an empty area (vgcreate not run yet)
        if (rl_off < kMdaHeaderSize || rl_off >= mda_size || rl_size > kMaxLvmMetadata ||
            rl_size > mda_size - kMdaHeaderSize) {
            add(findings, FindingSeverity::error, pv.offset + mda_off,
                "LVM metadata location " + std::to_string(rl_off) + "+" + std::to_string(rl_size) +
                    " is not inside its area");
            continue;
        }
        // The area is a ring after its header: the text may wrap.
        std::string text(rl_size, '\0');
        const uint64_t first = std::min(rl_size, mda_size - rl_off);
        VDKIT_TRY(r.read(pv.offset + mda_off + rl_off, text.data(), first, inside));
        if (inside && first < rl_size)
            VDKIT_TRY(r.read(pv.offset + mda_off + kMdaHeaderSize, text.data() + first, rl_size - first, inside));
        if (!inside) continue;
        while (!text.empty() && text.back() == '\0')
            text.pop_back();
        parse_lvm_metadata(text, pv_id, pv, next_index, out, findings);
        return Status::ok(); // one good copy is enough
    }
    return Status::ok();
}

} // namespace vdkit::volume
