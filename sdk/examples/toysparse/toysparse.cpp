// toysparse — an example vdkit format plugin: a small sparse image format
// with differencing images, written only against the installed SDK.
//
// It shows the whole contract a sparse format has with the host:
//   * probe scores 100 on its magic, 0 otherwise;
//   * read answers "unallocated here" so chains fall through to the parent;
//   * a partial write into an unallocated block answers VDKIT_E_BLOCK_FREE
//     and the host does the copy-on-write fill;
//   * zero blocks are recorded persistently (they shadow the parent);
//   * set_parent relinks the image (merge, commit, rebase need it);
//   * every header field is checked before it is used.
//
// On-disk layout (all integers little-endian):
//   0   char[8]  magic "VDKTOYS1"
//   8   u32      version (1)          12  u32 header size (512)
//   16  u64      virtual size         24  u32 block size (power of two, 4 KiB..64 MiB)
//   28  u32      flags (bit 0: has parent)
//   32  u64      block count          40  u64 map offset (512)
//   48  u8[16]   image UUID           64  u8[16] parent UUID
//   80  u16      parent hint length   82  char[256] parent hint (relative path)
//   512 u64[block count] block map: 0 unallocated, 1 zero, else file offset of the block
//   data blocks from the first block-size boundary after the map.
#include "vdkit/endian.hpp"
#include "vdkit/plugin.hpp"

#include <algorithm>
#include <array>
#include <cstring>
#include <vector>

using namespace vdkit;
using sdk::Context;
using sdk::Error;
using sdk::StoreRef;

namespace {

constexpr char kMagic[8] = {'V', 'D', 'K', 'T', 'O', 'Y', 'S', '1'};
constexpr uint32_t kHeaderSize = 512;
constexpr uint64_t kUnallocated = 0, kZero = 1;
constexpr uint64_t kMaxBlocks = 1ull << 24; // bounds the in-memory map (128 MiB)
constexpr uint32_t kFlagHasParent = 1;

using sdk::load_le;
using sdk::store_le;

class ToySparse {
public:
    static uint32_t probe(Context &ctx, StoreRef main, std::string_view) {
        if (main.size(ctx.get()) < kHeaderSize) return VDKIT_PROBE_NO;
        char magic[8];
        main.pread(ctx.get(), 0, magic, sizeof magic);
        return std::memcmp(magic, kMagic, 8) == 0 ? VDKIT_PROBE_CERTAIN : VDKIT_PROBE_NO;
    }

    static std::unique_ptr<ToySparse> open(Context &ctx, StoreRef main, std::string_view name, uint32_t) {
        auto img = std::make_unique<ToySparse>();
        img->main_ = main;
        img->name_ = std::string(name);
        img->load(ctx);
        return img;
    }

    static std::unique_ptr<ToySparse> create(Context &ctx, StoreRef main, std::string_view name,
                                             const vdkit_create_params &p) {
        auto img = std::make_unique<ToySparse>();
        img->main_ = main;
        img->name_ = std::string(name);
        uint64_t bs = ctx.config_uint("block-size").value_or(65536);
        if (bs < 4096 || bs > (64u << 20) || (bs & (bs - 1)))
            throw Error(VDKIT_E_INVALID_ARGUMENT, "block-size must be a power of two from 4 KiB to 64 MiB");
        img->block_size_ = static_cast<uint32_t>(bs);
        img->size_ = p.size;
        uint64_t blocks = (p.size + bs - 1) / bs;
        if (blocks > kMaxBlocks) throw Error(VDKIT_E_INVALID_ARGUMENT, "too many blocks; use a larger block-size");
        img->map_.assign(blocks, kUnallocated);
        std::memcpy(img->uuid_.data(), p.uuid, 16);
        if (p.flags & VDKIT_CREATE_DIFF) {
            std::string_view hint = sdk::view(p.parent_hint);
            if (hint.size() > 255) throw Error(VDKIT_E_INVALID_ARGUMENT, "parent path longer than 255 bytes");
            img->parent_hint_ = std::string(hint);
            std::memcpy(img->parent_uuid_.data(), p.parent_uuid, 16);
            img->flags_ |= kFlagHasParent;
        }
        img->write_header(ctx);
        std::vector<unsigned char> zeros(static_cast<size_t>(std::min<uint64_t>(blocks * 8, 1u << 20)), 0);
        for (uint64_t off = 0; off < blocks * 8; off += zeros.size())
            main.pwrite(ctx.get(), kHeaderSize + off, zeros.data(), std::min<uint64_t>(zeros.size(), blocks * 8 - off));
        img->data_start_ = img->compute_data_start();
        main.truncate(ctx.get(), img->data_start_);
        img->end_ = img->data_start_;
        return img;
    }

    void info(Context &, vdkit_image_info &out) {
        out.virtual_size = size_;
        out.granularity = block_size_;
        out.flags = (flags_ & kFlagHasParent) ? VDKIT_IMAGE_HAS_PARENT : VDKIT_IMAGE_ZERO_INIT;
        std::memcpy(out.uuid, uuid_.data(), 16);
        std::memcpy(out.parent_uuid, parent_uuid_.data(), 16);
        out.subformat = sdk::str((flags_ & kFlagHasParent) ? "diff" : "base");
    }

    std::string parent_hint(Context &) { return parent_hint_; }

    sdk::ReadResult read(Context &ctx, uint64_t off, void *buf, uint64_t len) {
        uint64_t block = off / block_size_, within = off % block_size_;
        uint64_t n = std::min<uint64_t>(len, block_size_ - within);
        uint64_t entry = map_[block];
        if (entry == kUnallocated) {
            // Report the whole unallocated run, so the host asks the parent once.
            uint64_t run = n;
            for (uint64_t b = block + 1; run < len && b < map_.size() && map_[b] == kUnallocated; ++b)
                run += std::min<uint64_t>(block_size_, len - run);
            return {run, true};
        }
        if (entry == kZero)
            std::memset(buf, 0, static_cast<size_t>(n));
        else
            main_.pread(ctx.get(), entry + within, buf, n);
        return {n, false};
    }

    sdk::WriteResult write(Context &ctx, uint64_t off, const void *buf, uint64_t len) {
        uint64_t block = off / block_size_, within = off % block_size_;
        uint64_t n = std::min<uint64_t>(len, block_size_ - within);
        uint64_t entry = map_[block];
        if (entry > kZero) {
            main_.pwrite(ctx.get(), entry + within, buf, n);
            return {n};
        }
        const bool whole = within == 0 && n == block_size_;
        if (!whole && entry == kUnallocated) {
            // Partial write into an unallocated block: the host fills it from the chain.
            return {0, true, block * block_size_, block_size_};
        }
        std::vector<unsigned char> data(block_size_, 0); // a zero block's old content is zeros
        std::memcpy(data.data() + within, buf, static_cast<size_t>(n));
        allocate(ctx, block, data.data());
        return {n};
    }

    sdk::BlockStatus block_status(Context &, uint64_t off, uint64_t len) {
        uint64_t block = off / block_size_;
        auto kind = [](uint64_t e) {
            return e == kUnallocated ? VDKIT_BLOCK_UNALLOCATED : e == kZero ? VDKIT_BLOCK_ZERO : VDKIT_BLOCK_DATA;
        };
        uint32_t status = kind(map_[block]);
        uint64_t run = std::min<uint64_t>(len, block_size_ - off % block_size_);
        for (uint64_t b = block + 1; run < len && b < map_.size() && kind(map_[b]) == status; ++b)
            run += std::min<uint64_t>(block_size_, len - run);
        return {status, run};
    }

    void flush(Context &ctx) { main_.flush(ctx.get()); }

    // Whole blocks only (the host sends partial edges as ordinary writes).
    void write_zeroes(Context &ctx, uint64_t off, uint64_t len) { set_whole_blocks(ctx, off, len, kZero); }
    // Whole blocks become unallocated; partial blocks keep their data.
    void discard(Context &ctx, uint64_t off, uint64_t len) { set_whole_blocks(ctx, off, len, kUnallocated); }

    void set_uuid(Context &ctx, uint32_t which, const uint8_t *u) {
        if (which == VDKIT_UUID_IMAGE)
            std::memcpy(uuid_.data(), u, 16);
        else if (which == VDKIT_UUID_PARENT)
            std::memcpy(parent_uuid_.data(), u, 16);
        else
            throw Error(VDKIT_E_NOT_SUPPORTED, "toysparse keeps no modification UUIDs");
        write_header(ctx);
    }

    // Rebase (header only): the host has already made the content right
    // (safe rebase) or the caller accepts the change (unsafe). An empty
    // hint makes the image a base. The header is one 512-byte write, so a
    // crash leaves either the old link or the new one.
    void set_parent(Context &ctx, std::string_view hint, std::string_view, const uint8_t *uuid, const uint8_t *) {
        if (hint.size() > 255) throw Error(VDKIT_E_INVALID_ARGUMENT, "parent path longer than 255 bytes");
        parent_hint_ = std::string(hint);
        if (hint.empty()) {
            flags_ &= ~kFlagHasParent;
            parent_uuid_ = {};
        } else {
            flags_ |= kFlagHasParent;
            if (uuid) std::memcpy(parent_uuid_.data(), uuid, 16);
        }
        write_header(ctx);
    }

private:
    void load(Context &ctx) {
        uint64_t file_size = main_.size(ctx.get());
        auto corrupt = [&](const std::string &what) { return Error(VDKIT_E_CORRUPT, name_ + ": " + what); };
        if (file_size < kHeaderSize) throw corrupt("file is shorter than the 512-byte header");
        unsigned char h[kHeaderSize];
        main_.pread(ctx.get(), 0, h, kHeaderSize);
        if (std::memcmp(h, kMagic, 8) != 0) throw corrupt("bad magic at offset 0 (not a toysparse image)");
        if (load_le(h + 8, 4) != 1) throw corrupt("unsupported version " + std::to_string(load_le(h + 8, 4)));
        if (load_le(h + 12, 4) != kHeaderSize) throw corrupt("header size at offset 12 is not 512");
        size_ = load_le(h + 16, 8);
        uint64_t bs = load_le(h + 24, 4);
        if (bs < 4096 || bs > (64u << 20) || (bs & (bs - 1)))
            throw corrupt("block size " + std::to_string(bs) + " at offset 24 is not a power of two in 4 KiB..64 MiB");
        block_size_ = static_cast<uint32_t>(bs);
        flags_ = static_cast<uint32_t>(load_le(h + 28, 4));
        uint64_t blocks = load_le(h + 32, 8);
        if (blocks > kMaxBlocks) throw corrupt("block count " + std::to_string(blocks) + " at offset 32 is too large");
        if (size_ > blocks * bs || blocks != (size_ + bs - 1) / bs)
            throw corrupt("block count at offset 32 does not match the virtual size at offset 16");
        if (load_le(h + 40, 8) != kHeaderSize) throw corrupt("map offset at offset 40 is not 512");
        std::memcpy(uuid_.data(), h + 48, 16);
        std::memcpy(parent_uuid_.data(), h + 64, 16);
        uint64_t hint_len = load_le(h + 80, 2);
        if (hint_len > 255) throw corrupt("parent hint length at offset 80 exceeds 255");
        parent_hint_.assign(reinterpret_cast<const char *>(h + 82), static_cast<size_t>(hint_len));
        map_.resize(blocks);
        data_start_ = compute_data_start();
        if (file_size < kHeaderSize + blocks * 8) throw corrupt("block map runs past the end of the file");
        std::vector<unsigned char> raw(static_cast<size_t>(blocks * 8));
        if (!raw.empty()) main_.pread(ctx.get(), kHeaderSize, raw.data(), raw.size());
        end_ = std::max<uint64_t>(data_start_, file_size);
        for (uint64_t b = 0; b < blocks; ++b) {
            uint64_t e = load_le(raw.data() + b * 8, 8);
            if (e > kZero && (e < data_start_ || e % block_size_ != 0 || e > file_size || file_size - e < block_size_))
                throw corrupt("block " + std::to_string(b) + " (map entry at offset " +
                              std::to_string(kHeaderSize + b * 8) + ") points to " + std::to_string(e) +
                              ", outside the data area");
            map_[b] = e;
        }
    }

    uint64_t compute_data_start() const {
        uint64_t end = kHeaderSize + map_.size() * 8;
        return (end + block_size_ - 1) / block_size_ * block_size_;
    }

    void write_header(Context &ctx) {
        unsigned char h[kHeaderSize] = {};
        std::memcpy(h, kMagic, 8);
        store_le(h + 8, 1, 4);
        store_le(h + 12, kHeaderSize, 4);
        store_le(h + 16, size_, 8);
        store_le(h + 24, block_size_, 4);
        store_le(h + 28, flags_, 4);
        store_le(h + 32, map_.size(), 8);
        store_le(h + 40, kHeaderSize, 8);
        std::memcpy(h + 48, uuid_.data(), 16);
        std::memcpy(h + 64, parent_uuid_.data(), 16);
        store_le(h + 80, parent_hint_.size(), 2);
        std::memcpy(h + 82, parent_hint_.data(), parent_hint_.size());
        main_.pwrite(ctx.get(), 0, h, kHeaderSize);
    }

    void set_entry(Context &ctx, uint64_t block, uint64_t value) {
        unsigned char e[8];
        store_le(e, value, 8);
        main_.pwrite(ctx.get(), kHeaderSize + block * 8, e, 8);
        map_[block] = value;
    }

    // Data first, then the map entry: a crash in between leaks a block but
    // never exposes unwritten data.
    void allocate(Context &ctx, uint64_t block, const unsigned char *data) {
        uint64_t at = end_;
        main_.pwrite(ctx.get(), at, data, block_size_);
        end_ = at + block_size_;
        set_entry(ctx, block, at);
    }

    void set_whole_blocks(Context &ctx, uint64_t off, uint64_t len, uint64_t value) {
        uint64_t first = (off + block_size_ - 1) / block_size_;
        uint64_t last = std::min<uint64_t>((off + len) / block_size_, map_.size());
        if ((off + len) == size_) last = map_.size(); // the short tail block counts as whole
        for (uint64_t b = first; b < last; ++b)
            set_entry(ctx, b, value);
    }

    StoreRef main_;
    std::string name_;
    uint64_t size_ = 0;
    uint32_t block_size_ = 65536;
    uint32_t flags_ = 0;
    std::vector<uint64_t> map_;
    uint64_t data_start_ = 0;
    uint64_t end_ = 0;
    std::array<uint8_t, 16> uuid_{}, parent_uuid_{};
    std::string parent_hint_;
};

constexpr vdkit_config_key kKeys[] = {
    sdk::key("block-size", VDKIT_KEY_SIZE, "64k", "Allocation unit, a power of two from 4k to 64M.",
             VDKIT_KEY_CREATE_ONLY, {}, 4096, 64 << 20),
};
constexpr vdkit_str kExtensions[] = {sdk::str("toys")};

const vdkit_plugin_descriptor *toysparse_format() {
    static const vdkit_plugin_descriptor d = sdk::describe(
        VDKIT_KIND_FORMAT,
        sdk::DescriptorSpec{"toysparse", "1.0.0", "Example sparse format with differencing images (SDK example)",
                            VDKIT_CAP_CREATE_DYNAMIC | VDKIT_CAP_DIFF | VDKIT_CAP_UUID | VDKIT_CAP_DISCARD |
                                VDKIT_CAP_ZERO_STATE | VDKIT_CAP_FILE_BASED,
                            kKeys, static_cast<uint32_t>(std::size(kKeys)), kExtensions,
                            static_cast<uint32_t>(std::size(kExtensions))},
        sdk::format_ops<ToySparse>());
    return &d;
}

} // namespace

VDKIT_SDK_ENTRY(toysparse_format())
