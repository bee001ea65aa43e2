// VMDK descriptor (VMware "Virtual Disk Format 5.0" technote, "The Descriptor File").
// Text, case-insensitive keys, LF or CRLF, '#' comments, quoted values,
// NUL padding. Unknown keys and ddb entries are kept in order so a rewrite
// can preserve them. Bounded: at most kMaxDescriptorBytes of text,
// kMaxLines lines and kMaxExtents extents.
#ifndef VDKIT_VMDK_DESCRIPTOR_HPP
#define VDKIT_VMDK_DESCRIPTOR_HPP

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace vdkit::vmdk {

constexpr size_t kMaxDescriptorBytes = (1u << 20) - 1; // qemu's limit
constexpr size_t kMaxLines = 10000;
constexpr size_t kMaxExtents = 4096;

enum class Access { rw, rdonly, noaccess };
enum class ExtentType { flat, sparse, zero, vmfs, vmfs_sparse, vmfs_rdm, vmfs_raw, se_sparse };

struct ExtentLine {
    Access access = Access::rw;
    uint64_t sectors = 0;
    ExtentType type = ExtentType::flat;
    std::string filename; // empty for ZERO
    uint64_t offset = 0;  // FLAT: start sector in the file
    int line = 0;         // 1-based, for messages
};

struct Descriptor {
    std::string version;
    std::string cid;        // 8 hex digits
    std::string parent_cid; // "ffffffff": no parent
    std::string create_type;
    std::string parent_hint;
    std::vector<ExtentLine> extents;
    std::vector<std::pair<std::string, std::string>> ddb; // in file order, keys as written

    bool has_parent() const;
    std::optional<std::string> ddb_get(std::string_view key) const; // case-insensitive
};

// Parses text (stops at the first NUL). On failure returns nothing and sets
// *error to "line N: why". `embedded`: the text is a sparse extent's
// embedded descriptor, whose SPARSE extent may have an empty file name
// (meaning the file itself).
std::optional<Descriptor> parse_descriptor(std::string_view text, std::string *error, bool embedded = false);

// Descriptor text in VMware's layout (header, extents, DDB). Keys that were
// parsed into `ddb` (including unknown header keys) are written back in order.
std::string render_descriptor(const Descriptor &d);

// A fresh random CID (8 lowercase hex digits, never ffffffff/fffffffe).
std::string new_cid();

// True when text looks like a descriptor: its first non-comment, non-blank
// line is version=1|2|3 (qemu's probe rule).
bool looks_like_descriptor(std::string_view text);

const char *to_string(ExtentType t);

} // namespace vdkit::vmdk

#endif
