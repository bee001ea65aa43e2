// The `vmdk` format plugin: VMware virtual disks (VDF50 "Virtual Disk Format
// 5.0"; shared/reference/formats.md §1).
//
// This version reads descriptor-based disks (text descriptor or embedded in
// a sparse extent), with FLAT, VMFS, ZERO and hosted SPARSE extents,
// including compressed stream-optimized grains in all three layouts
// (tables at the front; grain directory at the end with a footer).
// Differencing disks expose parentFileNameHint so the core walks the chain.
// Extent files are opened through the host, so they are confined to the
// descriptor's directory unless the user allows otherwise.
#include "descriptor.hpp"
#include "sparse_extent.hpp"

#include "vdkit/plugin.hpp"

#include <algorithm>
#include <cstring>
#include <memory>
#include <vector>

using namespace vdkit;
using namespace vdkit::vmdk;
using sdk::Context;
using sdk::Error;
using sdk::StoreRef;

namespace {

struct Extent {
    ExtentLine line;
    uint64_t start = 0;             // byte offset in the virtual disk
    uint64_t length = 0;            // bytes
    sdk::Store owned;               // a file other than the main one
    StoreRef store;                 // owned or the main file
    std::unique_ptr<SparseExtent> sparse;
};

std::string read_text(Context &ctx, StoreRef store, uint64_t offset, uint64_t len) {
    std::string text(static_cast<size_t>(len), '\0');
    store.pread(ctx.get(), text.data(), len, offset);
    size_t nul = text.find('\0');
    if (nul != std::string::npos) text.resize(nul);
    return text;
}

class VmdkImage {
public:
    static uint32_t probe(Context &ctx, StoreRef main, std::string_view) {
        uint64_t size = main.size(ctx.get());
        if (size < 4) return VDKIT_PROBE_NO;
        unsigned char head[4];
        main.pread(ctx.get(), head, 4, 0);
        uint32_t magic = uint32_t(head[0]) | uint32_t(head[1]) << 8 | uint32_t(head[2]) << 16 | uint32_t(head[3]) << 24;
        if (magic == kSparseMagic || magic == kTemporaryMagic) return VDKIT_PROBE_CERTAIN;
        std::string text = read_text(ctx, main, 0, std::min<uint64_t>(size, 4096));
        if (looks_like_descriptor(text) && text.find("createType") != std::string::npos) return VDKIT_PROBE_CERTAIN;
        return VDKIT_PROBE_NO;
    }

    static std::unique_ptr<VmdkImage> open(Context &ctx, StoreRef main, std::string_view name, uint32_t flags) {
        if (flags & VDKIT_OPEN_WRITE)
            throw Error(VDKIT_E_NOT_SUPPORTED, std::string(name) + ": writing VMDK images is not supported yet");
        auto img = std::make_unique<VmdkImage>();
        img->name_ = std::string(name);
        img->load(ctx, main);
        return img;
    }

    void info(Context &, vdkit_image_info &out) {
        out.virtual_size = size_;
        out.flags = VDKIT_IMAGE_READ_ONLY | (desc_.has_parent() ? VDKIT_IMAGE_HAS_PARENT : 0);
        out.granularity = granularity_;
        out.subformat = sdk::str(desc_.create_type);
        auto geo = [&](const char *key) -> uint32_t {
            auto v = desc_.ddb_get(key);
            if (!v) return 0;
            try {
                unsigned long n = std::stoul(*v);
                return n > UINT32_MAX ? 0 : static_cast<uint32_t>(n);
            } catch (...) {
                return 0;
            }
        };
        out.pchs_cylinders = geo("ddb.geometry.cylinders");
        out.pchs_heads = geo("ddb.geometry.heads");
        out.pchs_sectors = geo("ddb.geometry.sectors");
        out.lchs_cylinders = geo("ddb.geometry.biosCylinders");
        out.lchs_heads = geo("ddb.geometry.biosHeads");
        out.lchs_sectors = geo("ddb.geometry.biosSectors");
    }

    std::string parent_hint(Context &) { return desc_.has_parent() ? desc_.parent_hint : std::string(); }

    std::optional<std::string> metadata_get(Context &, std::string_view key) { return desc_.ddb_get(key); }
    std::vector<std::string> metadata_keys(Context &) {
        std::vector<std::string> keys;
        for (const auto &kv : desc_.ddb) keys.push_back(kv.first);
        return keys;
    }

    sdk::ReadResult read(Context &ctx, uint64_t off, void *buf, uint64_t len) {
        Extent &e = extent_at(off);
        uint64_t within = off - e.start;
        uint64_t n = std::min(len, e.length - within);
        switch (e.line.type) {
        case ExtentType::zero:
            std::memset(buf, 0, static_cast<size_t>(n));
            return {n, false};
        case ExtentType::sparse:
            return e.sparse->read(ctx, within, buf, n);
        default:
            break;
        }
        // FLAT / VMFS: plain bytes at OFFSET sectors; a short file reads as zeros.
        uint64_t at = e.line.offset * 512 + within;
        uint64_t file = e.store.size(ctx.get());
        uint64_t avail = at < file ? std::min(n, file - at) : 0;
        if (avail) e.store.pread(ctx.get(), buf, avail, at);
        if (avail < n) std::memset(static_cast<unsigned char *>(buf) + avail, 0, static_cast<size_t>(n - avail));
        return {n, false};
    }

    sdk::BlockStatus block_status(Context &ctx, uint64_t off, uint64_t len) {
        Extent &e = extent_at(off);
        uint64_t within = off - e.start;
        uint64_t n = std::min(len, e.length - within);
        switch (e.line.type) {
        case ExtentType::zero: return {VDKIT_BLOCK_ZERO, n};
        case ExtentType::sparse: return e.sparse->status(ctx, within, n);
        default: break;
        }
        // Flat extents: ask the file for holes.
        vdkit_extent x[1];
        uint64_t at = e.line.offset * 512 + within;
        uint32_t got = e.store.extents(ctx.get(), at, n, x, 1);
        if (got == 0 || x[0].length == 0) return {VDKIT_BLOCK_DATA, n};
        return {x[0].type == VDKIT_EXTENT_HOLE ? VDKIT_BLOCK_ZERO : VDKIT_BLOCK_DATA, std::min(n, x[0].length)};
    }

private:
    [[noreturn]] void fail(uint32_t code, const std::string &why) const { throw Error(code, name_ + ": " + why); }

    void load(Context &ctx, StoreRef main) {
        uint64_t size = main.size(ctx.get());
        unsigned char head[512] = {};
        if (size >= 4) main.pread(ctx.get(), head, std::min<uint64_t>(size, 512), 0);
        uint32_t magic = uint32_t(head[0]) | uint32_t(head[1]) << 8 | uint32_t(head[2]) << 16 | uint32_t(head[3]) << 24;
        std::optional<SparseHeader> main_header;
        std::string text;
        if (magic == kSparseMagic || magic == kTemporaryMagic) {
            if (size < 512) fail(VDKIT_E_CORRUPT, "file is shorter than a sparse header (512 bytes)");
            main_header = parse_sparse_header(head, name_);
            const SparseHeader &h = *main_header;
            if (h.descriptor_offset && h.descriptor_size) {
                uint64_t off = h.descriptor_offset * 512, len = h.descriptor_size * 512;
                if (h.descriptor_size > kMaxDescriptorBytes / 512 + 1 || off > size || size - off < len)
                    fail(VDKIT_E_CORRUPT, "embedded descriptor (sector " + std::to_string(h.descriptor_offset) + ", " +
                                              std::to_string(h.descriptor_size) + " sectors) lies outside the file");
                text = read_text(ctx, main, off, std::min<uint64_t>(len, kMaxDescriptorBytes));
            }
        } else {
            if (size > kMaxDescriptorBytes)
                fail(VDKIT_E_CORRUPT, "bad magic at offset 0, and too large to be a descriptor file");
            text = read_text(ctx, main, 0, size);
            if (!looks_like_descriptor(text))
                fail(VDKIT_E_CORRUPT, "bad magic at offset 0, and not a descriptor (no version= line first)");
        }
        std::string error;
        if (text.find_first_not_of(" \t\r\n") == std::string::npos) {
            // A sparse extent without an embedded descriptor (a split part
            // opened directly): it describes itself.
            desc_.version = "1";
            desc_.create_type = "monolithicSparse";
            desc_.parent_cid = "ffffffff";
            desc_.extents.push_back(ExtentLine{Access::rw, main_header->capacity, ExtentType::sparse, "", 0, 0});
        } else {
            auto parsed = parse_descriptor(text, &error);
            if (!parsed) fail(VDKIT_E_CORRUPT, error);
            desc_ = std::move(*parsed);
        }
        uint64_t pos = 0;
        for (size_t i = 0; i < desc_.extents.size(); ++i) {
            const ExtentLine &line = desc_.extents[i];
            const std::string where = "extent " + std::to_string(i + 1) +
                                      (line.line ? " (descriptor line " + std::to_string(line.line) + ")" : "");
            auto e = std::make_unique<Extent>();
            e->line = line;
            e->start = pos;
            if (__builtin_mul_overflow(line.sectors, 512, &e->length) || __builtin_add_overflow(pos, e->length, &pos))
                fail(VDKIT_E_CORRUPT, where + ": size overflows");
            if (line.access == Access::noaccess) fail(VDKIT_E_NOT_SUPPORTED, where + " is NOACCESS");
            switch (line.type) {
            case ExtentType::zero:
                break;
            case ExtentType::flat:
            case ExtentType::vmfs:
                e->owned = ctx.open(line.filename, 0);
                e->store = e->owned;
                break;
            case ExtentType::sparse:
                if (main_header) {
                    // Monolithic: the single sparse extent is this file, whatever
                    // name the embedded descriptor gives (it goes stale on rename).
                    if (desc_.extents.size() != 1)
                        fail(VDKIT_E_CORRUPT, "an embedded descriptor lists " +
                                                  std::to_string(desc_.extents.size()) + " extents");
                    e->store = main;
                    e->sparse = std::make_unique<SparseExtent>(ctx, main, name_, *main_header);
                } else {
                    e->owned = ctx.open(line.filename, 0);
                    e->store = e->owned;
                    unsigned char h[512];
                    if (e->store.size(ctx.get()) < 512)
                        fail(VDKIT_E_CORRUPT, where + " '" + line.filename + "' is shorter than a sparse header");
                    e->store.pread(ctx.get(), h, 512, 0);
                    SparseHeader sh = parse_sparse_header(h, line.filename);
                    e->sparse = std::make_unique<SparseExtent>(ctx, e->store, line.filename, sh);
                }
                if (e->sparse->capacity_bytes() < e->length)
                    fail(VDKIT_E_CORRUPT, where + " is larger in the descriptor than its header's capacity");
                break;
            default:
                fail(VDKIT_E_NOT_SUPPORTED, where + ": " + to_string(line.type) + " extents are not supported yet");
            }
            if (e->sparse) granularity_ = std::max(granularity_, e->sparse->grain_bytes());
            extents_.push_back(std::move(e));
        }
        size_ = pos;
        if (desc_.has_parent() && desc_.parent_hint.empty())
            fail(VDKIT_E_CORRUPT, "parentCID is set but there is no parentFileNameHint");
    }

    Extent &extent_at(uint64_t off) {
        // Extents are few and sorted; binary search by start.
        auto it = std::upper_bound(extents_.begin(), extents_.end(), off,
                                   [](uint64_t o, const std::unique_ptr<Extent> &e) { return o < e->start; });
        if (it == extents_.begin()) fail(VDKIT_E_INTERNAL, "offset before the first extent");
        --it;
        while ((*it)->length == 0 && it + 1 != extents_.end()) ++it;
        if (off - (*it)->start >= (*it)->length) fail(VDKIT_E_OUT_OF_RANGE, "offset beyond the last extent");
        return **it;
    }

    std::string name_;
    Descriptor desc_;
    std::vector<std::unique_ptr<Extent>> extents_;
    uint64_t size_ = 0;
    uint64_t granularity_ = 512;
};

constexpr vdkit_str kExtensions[] = {sdk::str("vmdk")};

const vdkit_plugin_descriptor *vmdk_format() {
    static const vdkit_plugin_descriptor d = sdk::describe(
        VDKIT_KIND_FORMAT,
        sdk::DescriptorSpec{"vmdk", "0.1.0", "VMware virtual disks (read-only for now)",
                            VDKIT_CAP_FILE_BASED | VDKIT_CAP_METADATA | VDKIT_CAP_GEOMETRY, nullptr, 0, kExtensions,
                            static_cast<uint32_t>(std::size(kExtensions))},
        sdk::format_ops<VmdkImage>());
    return &d;
}

} // namespace

VDKIT_SDK_ENTRY(vmdk_format())
