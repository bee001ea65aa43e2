// The `raw` format: the virtual disk is the file, byte for byte.
//
// Probing: raw has no signature, so its probe answers VDKIT_PROBE_FALLBACK
// for every file. The core picks that only when no other format recognises
// the file and the open is read-only; writing to a raw image needs the format
// named (-f raw). This keeps a damaged image of another format from being
// silently opened as raw and overwritten (docs/design/probing.md).
//
// Allocation status comes from the transport's extents: holes read as zero.
#include "vdkit/plugin.hpp"

#include <algorithm>
#include <vector>

using namespace vdkit;
using sdk::Context;
using sdk::Error;
using sdk::StoreRef;

namespace {

class RawImage {
public:
    static uint32_t probe(Context &, StoreRef, std::string_view) { return VDKIT_PROBE_FALLBACK; }

    static std::unique_ptr<RawImage> open(Context &, StoreRef main, std::string_view name, uint32_t) {
        auto img = std::make_unique<RawImage>();
        img->main_ = main;
        img->name_ = std::string(name);
        return img;
    }

    // A raw image is its virtual size, data or not (as qemu-img measure says).
    static void measure(Context &, uint64_t size, const vdkit_extent *, uint64_t, vdkit_measure &out) {
        out.required = size;
        out.fully_allocated = size;
    }

    static std::unique_ptr<RawImage> create(Context &ctx, StoreRef main, std::string_view name,
                                            const vdkit_create_params &params) {
        if (params.flags & VDKIT_CREATE_DIFF)
            throw Error(VDKIT_E_NOT_SUPPORTED, "raw images cannot be differencing images");
        std::string prealloc = ctx.config("preallocation").value_or("off");
        if (params.flags & VDKIT_CREATE_FIXED) prealloc = "full";
        main.truncate(ctx.get(), params.size);
        if (prealloc == "full") {
            // Allocate every byte so later writes cannot fail for space.
            std::vector<unsigned char> zeros(1u << 20, 0);
            for (uint64_t off = 0; off < params.size;) {
                uint64_t n = std::min<uint64_t>(zeros.size(), params.size - off);
                main.pwrite(ctx.get(), off, zeros.data(), n);
                off += n;
                ctx.progress(off, params.size);
            }
        }
        auto img = open(ctx, main, name, VDKIT_OPEN_WRITE);
        img->created_ = true;
        img->fixed_ = prealloc == "full";
        return img;
    }

    void info(Context &ctx, vdkit_image_info &out) {
        out.virtual_size = main_.size(ctx.get());
        out.granularity = 1;
        out.flags = (created_ ? VDKIT_IMAGE_ZERO_INIT : 0) | (fixed_ ? VDKIT_IMAGE_FIXED : 0);
        out.subformat = sdk::str(fixed_ ? "preallocated" : "");
    }

    sdk::ReadResult read(Context &ctx, uint64_t off, void *buf, uint64_t len) {
        main_.pread(ctx.get(), off, buf, len);
        return {len, false};
    }

    sdk::WriteResult write(Context &ctx, uint64_t off, const void *buf, uint64_t len) {
        main_.pwrite(ctx.get(), off, buf, len);
        return {len, false, 0, 0};
    }

    sdk::BlockStatus block_status(Context &ctx, uint64_t off, uint64_t len) {
        vdkit_extent e[1];
        uint32_t n = main_.extents(ctx.get(), off, len, e, 1);
        if (n == 0 || e[0].offset != off || e[0].length == 0) return {VDKIT_BLOCK_DATA, len};
        return {e[0].type == VDKIT_EXTENT_HOLE ? VDKIT_BLOCK_ZERO : VDKIT_BLOCK_DATA, std::min(e[0].length, len)};
    }

    void flush(Context &ctx) { main_.flush(ctx.get()); }
    void discard(Context &ctx, uint64_t off, uint64_t len) { main_.discard(ctx.get(), off, len); }
    void write_zeroes(Context &ctx, uint64_t off, uint64_t len) { main_.zero(ctx.get(), off, len); }

    void resize(Context &ctx, uint64_t new_size, uint32_t flags) {
        uint64_t cur = main_.size(ctx.get());
        if (new_size < cur && !(flags & VDKIT_RESIZE_SHRINK))
            throw Error(VDKIT_E_INVALID_ARGUMENT, name_ + ": shrinking from " + std::to_string(cur) + " to " +
                                                      std::to_string(new_size) + " bytes loses data; ask for shrink");
        main_.truncate(ctx.get(), new_size);
    }

private:
    StoreRef main_;
    std::string name_;
    bool created_ = false;
    bool fixed_ = false;
};

constexpr vdkit_config_key kKeys[] = {
    sdk::key("preallocation", VDKIT_KEY_ENUM, "off",
             "off: sparse file (holes read as zero); full: write every byte at creation.", VDKIT_KEY_CREATE_ONLY,
             "off|full"),
};
constexpr vdkit_str kExtensions[] = {sdk::str("img"), sdk::str("raw"), sdk::str("bin"), sdk::str("dd")};

const vdkit_plugin_descriptor *raw_format() {
    static const vdkit_plugin_descriptor d = sdk::describe(
        VDKIT_KIND_FORMAT,
        sdk::DescriptorSpec{"raw", "1.0.0", "Raw disk images: the file is the disk",
                            VDKIT_CAP_CREATE_FIXED | VDKIT_CAP_CREATE_DYNAMIC | VDKIT_CAP_DISCARD |
                                VDKIT_CAP_FILE_BASED | VDKIT_CAP_RESIZE | VDKIT_CAP_ZERO_STATE | VDKIT_CAP_THREAD_SAFE,
                            kKeys, static_cast<uint32_t>(std::size(kKeys)), kExtensions,
                            static_cast<uint32_t>(std::size(kExtensions))},
        sdk::format_ops<RawImage>());
    return &d;
}

} // namespace

VDKIT_SDK_ENTRY(raw_format())
