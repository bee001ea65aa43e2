// Image: one opened format-plugin instance (one image of a chain) and the
// only code that calls vdkit_format_ops. It checks every answer a plugin
// gives (lengths within the request, runs non-empty) so a buggy plugin
// yields VDKIT_E_INTERNAL instead of an endless loop or an overflow.
//
// An Image reaches the rest of the core only through the Stores it is
// given (io/stores.hpp: opening its files, moving them, the plugin call
// context and the log), never through the Host: the Disk that owns it keeps
// the Host, and so the Stores, alive for the Image's whole life.
//
// Thread-safety: calls are serialised per image unless the plugin declares
// VDKIT_CAP_THREAD_SAFE.
#ifndef VDKIT_CORE_DISK_IMAGE_HPP
#define VDKIT_CORE_DISK_IMAGE_HPP

#include "io/byte_store.hpp"
#include "io/context.hpp"
#include "io/plugin_stores.hpp"
#include "registry/registry.hpp"
#include "vdkit/vdkit.hpp"

#include <mutex>

namespace vdkit {

class Stores; // io/stores.hpp

struct ImageSetup {
    std::string location;
    Options format_options;    // validated
    Options transport_options; // validated, for sibling files
    bool allow_unsafe_paths = false;
    bool writable = false;
    bool lock = true;     // false: the plugin's own files are opened VDKIT_OPEN_NOLOCK too
    FilterStack filters;  // resolved; also stacked over the plugin's own files
    bool dry_run = false; // on dry-run stores: writes change no file (open_dry_run)
};

class Image {
public:
    // `stores` must outlive the Image.
    static Result<std::unique_ptr<Image>> open(const Stores &stores, PluginEntryPtr format, ByteStorePtr main,
                                               ImageSetup setup, uint32_t flags);
    static Result<std::unique_ptr<Image>> create(const Stores &stores, PluginEntryPtr format, ByteStorePtr main,
                                                 ImageSetup setup, const vdkit_create_params &params);
    ~Image();
    // The same image opened again, writable, on dry-run stores
    // (io/dry_run_store.hpp): the format's real code runs on it and no file
    // changes. For checks that must answer what the operation would do.
    Result<std::unique_ptr<Image>> open_dry_run() const;

    const std::string &location() const noexcept { return setup_.location; }
    const PluginEntry &format() const noexcept { return *format_; }
    bool writable() const noexcept { return setup_.writable; }
    bool allow_unsafe_paths() const noexcept { return setup_.allow_unsafe_paths; }
    const FilterStack &filters() const noexcept { return setup_.filters; }
    ByteStore &main() noexcept { return *main_.store; }
    // The locations of the files this image holds open now, as they were
    // opened: its main file first, then every file its plugin opened through
    // the host and has not closed (extents, mapped devices). Recorded where
    // the stores are opened (h_store_open), so opens in other threads never
    // show up here. Thread-safe.
    std::vector<std::string> files() const;

    // Close the plugin instance (flushing); with delete_files remove its files.
    Status close(bool delete_files);

    Result<vdkit_image_info> raw_info();
    Result<ImageInfo> info();

    // read: *unallocated tells whether [offset, offset+*done) is absent here.
    Status read(uint64_t offset, void *buf, uint64_t len, uint64_t &done, bool &unallocated);
    // write: *block_free asks the caller to write [fill_offset, +fill_len) whole.
    Status write(uint64_t offset, const void *buf, uint64_t len, uint64_t &done, bool &block_free,
                 uint64_t &fill_offset, uint64_t &fill_len);
    Status block_status(uint64_t offset, uint64_t len, uint32_t &status, uint64_t &run);
    Status flush();
    Status discard(uint64_t offset, uint64_t len);
    // NOT_SUPPORTED when the plugin has no write_zeroes (the caller emulates).
    Status write_zeroes(uint64_t offset, uint64_t len);
    Result<std::string> parent_hint();
    // The format the image records for its parent (ABI 2.3
    // get_parent_format), "" when it records none or the plugin cannot say.
    Result<std::string> parent_format();
    // True when the format records its parent's format (the plugin fills
    // get_parent_format): its links are opened by that name, not by probing.
    bool records_parent_format() const { return format_->format.get_parent_format != nullptr; }
    // Rebase (header only): the new parent's location as the child names it,
    // its format and ids; an empty hint removes the parent.
    Status set_parent(std::string_view hint, std::string_view format, const vdkit_image_info *parent);
    // Move every file of the image so that main is at `to` (an absolute
    // path or URL on the same transport): the plugin's rename, or for a
    // format that never splits, the host moves main. location() follows.
    Status rename(const std::string &to);
    Result<std::string> comment();
    /// The format's details as JSON text (get_details, ABI 2.3); "" when none.
    Result<std::string> details();
    Status set_comment(std::string_view comment);
    // which: VDKIT_UUID_*. NOT_SUPPORTED when the format records no ids.
    Status set_uuid(uint32_t which, const Uuid &uuid);
    // {cylinders, heads, sectors}; nullptr leaves one unchanged.
    Status set_geometry(const uint32_t *pchs, const uint32_t *lchs);
    Result<std::string> metadata_get(std::string_view key);
    Status metadata_set(std::string_view key, std::string_view value);
    Result<std::vector<std::string>> metadata_keys();
    Status compact(const ProgressFunction &progress);
    // Keep the image's modification id (VMDK CID, VDI modification UUID)
    // for the rest of this session: the format is handed its current id,
    // which pins it (a change that keeps the content, such as compact,
    // must not make the image's children refuse it). OK, changing
    // nothing, when the format keeps no modification id.
    Status keep_modification_id();
    Status resize(uint64_t new_size, uint32_t flags);
    Status check(uint32_t flags, CheckReport &report);

    // The virtual size last reported by the plugin (refreshed by resize).
    uint64_t size() const noexcept { return size_; }

private:
    Image(const Stores &stores, PluginEntryPtr format, ByteStorePtr main, ImageSetup setup);
    vdkit_ctx ctx() const;
    Status done(vdkit_ctx &ctx, uint32_t rc, std::string_view op) const;
    // Runs a (buf, cap, needed) string getter until the buffer is big enough.
    template <class Fn> Result<std::string> get_string(Fn fn, std::string_view op);
    std::unique_lock<std::mutex> lock();
    Status refresh_size();
    // Bytes the image's files use on their media: the main file and every
    // other file the plugin holds open (extents), each counted once; nothing
    // when the main file's transport cannot tell.
    std::optional<uint64_t> disk_usage() const;
    // Bytes the image's files are long (their sizes, holes included), the
    // same files as disk_usage(); nothing when a size cannot be read.
    std::optional<uint64_t> files_length() const;
    // The sum of measure(store) over the main file and every other file the
    // plugin holds open, each counted once; nothing when the main file's
    // value is unknown, or (every_file) any file's.
    template <class Measure> std::optional<uint64_t> sum_over_files(Measure measure, bool every_file) const;

    const Stores &stores_;
    PluginEntryPtr format_;
    vdkit_store main_; // host-owned; the plugin gets &main_
    // The other files the plugin holds open (extents), for the disk size.
    std::shared_ptr<OpenStores> opened_ = std::make_shared<OpenStores>();
    ImageSetup setup_;
    void *instance_ = nullptr;
    std::mutex mu_;
    bool serialise_ = true;
    uint64_t size_ = 0;
};

} // namespace vdkit

#endif
