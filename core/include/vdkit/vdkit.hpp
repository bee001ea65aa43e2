/// @file vdkit/vdkit.hpp
/// @brief The C++ API of the vdkit library.
///
/// A Library discovers and loads plugins (formats, filters, transports) and
/// opens or creates Disks. A Disk is a chain of images — a base and zero or
/// more differencing images — read and written as one virtual disk: reads fall
/// through ranges a child does not hold, writes go to the top image with the
/// copy-on-write fill done here, once, for every format.
///
/// Errors: every fallible call returns Status or Result<T> (vdkit/status.hpp);
/// nothing here throws except std::bad_alloc, and nothing calls exit().
///
/// Thread-safety: Library is safe to share (load_plugin and unload_plugin
/// change its plugin set under its own lock, while other calls run). A
/// Disk may be used from several threads: reads run concurrently, writes and
/// metadata changes are serialised per disk. Plugins stay loaded while any
/// Library or Disk that uses them is alive.
///
/// Units: offsets, lengths and sizes are bytes (no call counts sectors).
///
/// Status codes common to every fallible call, besides those each one
/// lists: VDKIT_E_INVALID_ARGUMENT when the Disk was closed,
/// VDKIT_E_NO_MEMORY when an allocation failed, VDKIT_E_INTERNAL for a bug or
/// a plugin that broke its contract, VDKIT_E_IO when the operating system or
/// a transport failed.
///
/// Ownership: arguments are copied or used during the call only unless a
/// function says otherwise; results are values the caller owns.
///
/// The C API in vdkit.h wraps the same objects.
#ifndef VDKIT_VDKIT_HPP
#define VDKIT_VDKIT_HPP

#include "vdkit/export.h"
#include "vdkit/plugin.h" // VDKIT_CAP_* and VDKIT_BLOCK_* constants
#include "vdkit/status.hpp"

#include <array>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace vdkit {
class Host;
struct DiskAccess; // core-internal: how the core builds and reaches into a Disk

inline namespace v1 {

/// Option values by key, as text; validated against the plugin's key table.
using Options = std::map<std::string, std::string>;
using Uuid = std::array<uint8_t, 16>;

enum class PluginKind : uint32_t { format = 1, filter = 2, transport = 3 };
/// "format", "filter" or "transport" (static storage; "unknown" otherwise). Thread-safe.
VDKIT_API const char *to_string(PluginKind kind) noexcept;

enum class KeyType : uint32_t { string_ = 1, boolean = 2, integer = 3, unsigned_ = 4, size = 5, enumeration = 6 };
/// The key type's name as plugin help prints it (static storage). Thread-safe.
VDKIT_API const char *to_string(KeyType type) noexcept;

/// One configuration key a plugin accepts (PluginInfo::keys).
struct ConfigKey {
    std::string name;
    KeyType type = KeyType::string_;
    bool mandatory = false;
    bool expert = false;
    bool create_only = false;
    bool secret = false;
    std::string default_value; // empty: none
    std::string help;
    std::vector<std::string> enum_values;
    int64_t min_value = 0; // a range applies when min_value < max_value
    int64_t max_value = 0;
};

/// What a loaded plugin declares (Library::plugins, Library::plugin).
struct PluginInfo {
    PluginKind kind = PluginKind::format;
    std::string name;
    std::string version;
    std::string description;
    uint64_t capabilities = 0; // VDKIT_CAP_* bits
    std::vector<std::string> capability_names;
    std::vector<ConfigKey> keys;
    std::vector<std::string> extensions;
    std::string source; // library file it came from
    uint32_t abi_major = 0;
    uint32_t abi_minor = 0;
    /// Transports: URL schemes served besides `name` (lower case; ABI 2.1).
    std::vector<std::string> schemes;
    /// Whether every VDKIT_CAP_* bit of `cap` is set.
    bool has(uint64_t cap) const noexcept { return (capabilities & cap) == cap; }
    /// The key named exactly `key_name`, or null.
    const ConfigKey *key(std::string_view key_name) const noexcept {
        for (const ConfigKey &k : keys)
            if (k.name == key_name) return &k;
        return nullptr;
    }
};

/// A plugin library that was found but not loaded, and why.
struct LoadProblem {
    std::string path;
    Status status;
};

enum class LogLevel : uint32_t { error = 0, warning = 1, info = 2, debug = 3 };
using LogFunction = std::function<void(LogLevel, std::string_view message)>;
/// Called once when an asynchronous operation (Disk::submit_*) ends.
using Completion = std::function<void(Status)>;
/// Return false to cancel the operation (it fails with VDKIT_E_CANCELLED).
using ProgressFunction = std::function<bool(uint64_t done, uint64_t total)>;

/// Options of Library::create.
struct LibraryOptions {
    /// YAML configuration; empty: $VDKIT_CONFIG if set, else built-in defaults.
    std::string config_file;
    /// Plugin directories searched before the configured ones.
    std::vector<std::string> plugin_paths;
    bool search_environment = true; // VDKIT_PLUGIN_PATH (':'-separated)
    bool search_install_dir = true; // <libdir>/vdkit/plugins next to libvdkit
    /// Diagnostics (everything the library and its plugins log); default:
    /// warnings and errors to stderr. Called from any thread that logs,
    /// possibly several at once; kept until the Library is destroyed.
    LogFunction log;
    std::optional<LogLevel> log_level; // default: from config, else warning
};

enum class BlockState : uint32_t { data = 0, zero = 1, unallocated = 2 };

/// A run of one allocation state (Disk::block_status); offsets in bytes.
struct BlockRun {
    uint64_t offset = 0;
    uint64_t length = 0;
    BlockState state = BlockState::data;
    /// Index of the image that answered (0 = base); for unallocated: none did.
    size_t image = 0;
};

/// Disk geometry: cylinders, heads, sectors per track (0 when none).
struct Geometry {
    uint32_t cylinders = 0, heads = 0, sectors = 0;
};

/// Which identifier Disk::set_uuid writes (the values of VDKIT_UUID_*).
enum class UuidKind : uint32_t { image = 0, modification = 1, parent = 2, parent_modification = 3 };

/// One image of a chain (Disk::image_info); sizes in bytes.
struct ImageInfo {
    std::string location;
    std::string format;
    std::string subformat;
    uint64_t virtual_size = 0;
    std::optional<uint64_t> file_size; // bytes used on the medium
    uint64_t granularity = 0;
    bool read_only = false;
    bool has_parent = false;
    bool fixed = false;
    bool zero_init = false;
    bool sequential = false; // takes writes only at increasing offsets
    Uuid uuid{}, modification_uuid{}, parent_uuid{}, parent_modification_uuid{};
    std::string parent_hint;
    Geometry pchs, lchs;
    std::string comment;
    std::vector<std::string> filters;    // the file-level filter stack, nearest the file first
                                         // (disk-level ones: Disk::disk_filters)
    std::optional<uint64_t> file_length; // bytes the image's files are long (holes included)
    /// The image records an unclean close (qcow2's dirty bit): qemu-img
    /// info's "dirty-flag". Always false for formats without such a mark.
    bool dirty = false;
    /// The format's own facts as one JSON object's text (qemu-img info's
    /// "format-specific" "data" where qemu shows one: VMDK cid, parent-cid,
    /// create-type, extents[]; VDI type, block-size, UUIDs); empty when the
    /// format gives none. From the plugin (vdkit_format_ops.get_details),
    /// unparsed: a caller parses it as JSON and treats malformed text as none.
    std::string format_specific;
};

/// A file-level filter (a filter plugin with VDKIT_CAP_FILTER_FILE) in an
/// image's stack: it sits between the format and every file of the image
/// (main file and extents), the first of a stack nearest the file. Its
/// options are validated against the filter's config keys.
struct FilterSpec {
    std::string name;
    Options options;
};
/// "NAME" or "NAME:key=value,key=value" (the CLI's --filter, the C API, batch
/// files). INVALID_ARGUMENT names what is wrong with the text.
VDKIT_API Result<FilterSpec> parse_filter_spec(std::string_view text);

/// Options of Library::open.
struct OpenOptions {
    std::string format;        // empty: probe
    Options format_options;    // validated against the format's keys
    Options transport_options; // validated against the transport's keys
    bool writable = false;
    bool lock = true;           // take the transport's advisory lock
    bool follow_parents = true; // open the chain below a diff image
    bool ignore_parent_mismatch = false;
    /// With writable: open every image of the chain for writing, not only the
    /// top (merge and commit write into parents).
    bool writable_chain = false;
    /// Allow extent/parent paths outside the image's directory; empty: config.
    std::optional<bool> allow_unsafe_paths;
    /// Filters every image of the chain is read (and written) through: a
    /// chain is stored one way throughout. File-level ones (capability
    /// file-filter) sit on each file, the first nearest it; disk-level ones
    /// (disk-filter, e.g. crypt) over the whole chain, the first nearest it
    /// (Disk::disk_filters lists them).
    std::vector<FilterSpec> filters;
    /// Read an image other processes may hold (qemu-img -U): no image lock
    /// is taken on any file of the chain and none is tested, so a writer
    /// elsewhere (vdkit, QEMU) does not keep this open out; what is read may
    /// change meanwhile. Read-only: with writable the open is refused
    /// (INVALID_ARGUMENT).
    bool force_share = false;
    /// Bypass the host's page cache (VD_OPEN_FLAGS_...; qemu cache=none):
    /// every image's transport gets its `direct` option set to true (the
    /// file transport opens with O_DIRECT). NOT_SUPPORTED when the
    /// location's transport has no `direct` option; the file transport
    /// fails with NOT_SUPPORTED on a file system without O_DIRECT.
    bool direct = false;
    /// Metadata only (VD_OPEN_FLAGS_INFO): formats are told (VDKIT_OPEN_INFO)
    /// that no data I/O follows; image_info, metadata and comments work,
    /// while read, block_status and what builds on them (copy, compare,
    /// asynchronous reads) fail with NOT_SUPPORTED. Read-only: with
    /// writable the open is refused (INVALID_ARGUMENT).
    bool info_only = false;
};

/// Options of Disk::rebase.
struct RebaseOptions {
    std::string format;  // of the new parent; empty: probe
    bool unsafe = false; // header only: what the top shows may change
    ProgressFunction progress;
};

/// Options of Library::create_image.
struct CreateOptions {
    std::string format; // required
    uint64_t size = 0;  // bytes; for diffs 0 means the parent's size
    Options options;    // format keys
    Options transport_options;
    bool fixed = false;        // preallocate
    std::string parent;        // create a differencing image over this
    std::string parent_format; // empty: probe the parent
    bool overwrite = false;    // replace an existing file
    std::optional<bool> allow_unsafe_paths;
    /// The new image's UUID (VDCopyEx pDstUuid, a copy that keeps its
    /// identity); empty: a fresh random one.
    std::optional<Uuid> uuid;
    /// Filters the new image is written through (and its parent chain read
    /// through), as OpenOptions::filters. A new base sets its disk-level
    /// filters up (crypt makes a key store); a new differencing image joins
    /// its chain's.
    std::vector<FilterSpec> filters;
};

/// One finding of a consistency check, in the order the format reported it.
enum class FindingSeverity : uint32_t { error = 0, leak = 1, repaired = 2, note = 3 };
/// "error", "leak", "repaired" or "note" (static storage). Thread-safe.
VDKIT_API const char *to_string(FindingSeverity severity) noexcept;

/// One finding of Disk::check.
struct CheckFinding {
    FindingSeverity severity = FindingSeverity::error;
    std::optional<uint64_t> offset; // byte offset in the image file it concerns
    std::string message;
};

/// Options of Disk::check.
struct CheckOptions {
    bool repair = false;  // fix what can be fixed (the disk must be writable)
    bool dry_run = false; // with repair: report what would be fixed, write nothing
};

/// The result of Disk::check.
struct CheckReport {
    std::vector<CheckFinding> findings;
    uint64_t errors = 0;   // findings that affect data, left unfixed
    uint64_t leaks = 0;    // wasted space, left unfixed
    uint64_t repaired = 0; // fixed by this run
    /// No errors and no leaks left.
    bool clean() const noexcept { return errors == 0 && leaks == 0; }
};

/// Disk::attach / can_attach (VixDiskLib_Attach / IsAttachPossible).
struct AttachOptions {
    /// Also record the link in the child's bottom image (its parent path and
    /// the parent's ids), as an unsafe rebase would; then a child recorded
    /// over another parent may be attached too. Needs the child writable.
    bool relink = false;
    /// With relink: still require that the parent is the one the child
    /// records (as without relink) — VixDiskLib_Attach's rule, with the link
    /// written. Without relink the check is always made.
    bool verify_identity = false;
};

/// Disk::attach_cache (VDCreateCache / VDCacheOpen).
struct CacheOptions {
    std::string format = "vdi"; // for a new cache: any format with writes, an allocation map and a comment
    Options options;            // its create options
};

/// Counters of an attached cache (Disk::cache_stats); bytes.
struct CacheStats {
    std::string location;
    uint64_t hit_bytes = 0;  // read from the cache
    uint64_t miss_bytes = 0; // read from the chain (and copied into the cache)
    bool bypassed = false;   // a cache operation failed; reads go to the chain
};

/// An opened chain of images read and written as one virtual disk
/// (Library::open, Library::create_image). Reads run concurrently; writes,
/// metadata and identity changes are serialised. Destroying a Disk closes
/// it (errors are logged).
class VDKIT_API Disk {
public:
    /// Close (flushing; errors are logged) and free. No other call may run.
    ~Disk();
    /// Not copyable: a Disk owns its open images.
    Disk(const Disk &) = delete;
    /// Not copyable.
    Disk &operator=(const Disk &) = delete;

    /// Virtual size in bytes. Thread-safe.
    uint64_t size() const noexcept;
    /// Whether the top image is open for writing. Thread-safe.
    bool writable() const noexcept;
    /// Images in the chain: the base is 0, the top image_count()-1. Thread-safe.
    size_t image_count() const noexcept;
    /// Describe images[index] (format, sizes in bytes, ids, geometry,
    /// comment, parent). Runs concurrently with reads.
    /// INVALID_ARGUMENT when index is beyond the chain; IO.
    Result<ImageInfo> image_info(size_t index) const;
    /// The disk-level filter stack (filters with capability disk-filter,
    /// e.g. crypt) between the chain and the caller, nearest the chain
    /// first; empty when there is none. Thread-safe.
    std::vector<std::string> disk_filters() const;

    /// Read len bytes at byte offset into buf (len bytes, the caller's),
    /// through the chain. Runs concurrently with other reads.
    /// OUT_OF_RANGE when [offset, offset+len) is not within size();
    /// NOT_SUPPORTED when opened info_only; CORRUPT; IO.
    Status read(uint64_t offset, void *buf, uint64_t len) const;
    /// Write len bytes from buf at byte offset into the top image; partial
    /// blocks are filled from the chain (copy-on-write). Serialised.
    /// READ_ONLY when not writable; OUT_OF_RANGE; NO_MEMORY when the image
    /// cannot grow further; IO.
    Status write(uint64_t offset, const void *buf, uint64_t len);
    /// [offset, offset+len) (bytes) reads as zero afterwards, persistently
    /// where the format can record it. Errors as write().
    Status write_zeroes(uint64_t offset, uint64_t len);
    /// Give the range (bytes) back in the top image; content becomes
    /// undefined-but-stable (zero or the parent's data). Errors as write().
    Status discard(uint64_t offset, uint64_t len);
    /// Make what was written durable. Serialised with writes. IO.
    Status flush();

    /// Allocation of the run starting at byte offset, resolved through the
    /// chain (length in 1..len bytes). Runs concurrently with reads.
    /// INVALID_ARGUMENT for len 0; OUT_OF_RANGE; NOT_SUPPORTED when opened
    /// info_only; IO.
    Result<BlockRun> block_status(uint64_t offset, uint64_t len) const;

    /// A metadata value of the top image (VixDiskLib_ReadMetadata).
    /// NOT_FOUND for a missing key; NOT_SUPPORTED when the format keeps no
    /// key/value metadata; IO.
    Result<std::string> metadata_get(std::string_view key) const;
    /// Set a metadata value of the top image (VixDiskLib_WriteMetadata).
    /// Serialised. READ_ONLY; INVALID_ARGUMENT for a key or value the format
    /// cannot hold; NOT_SUPPORTED; IO.
    Status metadata_set(std::string_view key, std::string_view value);
    /// The metadata keys of the top image in the format's order
    /// (VixDiskLib_GetMetadataKeys). NOT_SUPPORTED; IO.
    Result<std::vector<std::string>> metadata_keys() const;
    /// set_comment(image_count() - 1, comment): the top image's comment.
    Status set_comment(std::string_view comment);

    /// Identity of one image of the chain (VDSetUuid, VDSetModificationUuid,
    /// VDSetParentUuid): write one id of images[image] (0 = base); read it
    /// back with image_info(). The image must be open for writing: the top
    /// with OpenOptions::writable, a lower one also with writable_chain.
    /// Nothing else is changed: a child recording the old UUID no longer
    /// verifies against a changed parent. Serialised with writes.
    /// INVALID_ARGUMENT for an index beyond the chain, an unknown kind or a
    /// kind the image cannot hold (a parent id without a parent, VMDK);
    /// READ_ONLY when that image is not open for writing; NOT_SUPPORTED when
    /// the format records no ids; IO.
    Status set_uuid(size_t image, UuidKind which, const Uuid &uuid);
    /// Geometry of images[image] (VDSetPCHSGeometry, VDSetLCHSGeometry);
    /// nullopt leaves that one unchanged. Rules and errors as set_uuid;
    /// INVALID_ARGUMENT also for values the format cannot hold (VMDK: heads
    /// 1..255, sectors 1..63); NOT_SUPPORTED when the format records no
    /// geometry (VDI version 0: no LCHS).
    Status set_geometry(size_t image, const std::optional<Geometry> &pchs, const std::optional<Geometry> &lchs);
    /// Comment of images[image] (VDSetComment). Rules and errors as
    /// set_uuid; INVALID_ARGUMENT also for text the format cannot hold (VDI:
    /// at most 255 bytes); NOT_SUPPORTED when the format has no comment.
    Status set_comment(size_t image, std::string_view comment);

    /// Maintenance of the top image (VDCompact / VDResize / VDRepair,
    /// VixDiskLib Shrink+Defragment / Grow / CheckRepair).
    ///
    /// compact: in a differencing image, blocks that read the same as the
    /// chain below are given back first (done here, for every format); then
    /// the format drops zero blocks, closes holes and truncates. Content is
    /// unchanged. NOT_SUPPORTED when the format cannot compact.
    Status compact(const ProgressFunction &progress = {});
    /// resize: grow, or shrink when allow_shrink is set and the format can.
    /// Reads beyond a smaller parent's end return zeros.
    Status resize(uint64_t new_size, bool allow_shrink = false);
    /// check: consistency of the top image's metadata; with repair, fix it.
    Result<CheckReport> check(const CheckOptions &options = {});

    /// Chain operations (VDMerge, qemu-img commit/rebase). Each leaves, at
    /// every step, a chain whose top reads the same data: data is written
    /// before any link changes, and images are deleted last. Where the data
    /// already reads the same, nothing is written (same-data elision).
    ///
    /// merge: images[from..to] become one image. from > to (backward, a
    /// child into an ancestor): what images[to+1..from] show goes into
    /// images[to]; the image above `from` is relinked to images[to]; images
    /// to+1..from are deleted. from < to (forward, an ancestor into a
    /// descendant): images[to] gets what images[from..to-1] show where it has
    /// nothing, is relinked to images[from-1] (or has no parent) and images
    /// from..to-1 are deleted. Needs writable_chain.
    Status merge(size_t from, size_t to, const ProgressFunction &progress = {});
    /// commit (qemu-img commit): what the images above images[base] show is
    /// written into it and the top is relinked directly onto it; with
    /// empty_top the top's blocks are then given back (it reads through to
    /// base). Images between base and top are left as files but leave the
    /// chain. Needs writable_chain.
    Status commit(size_t base, bool empty_top, const ProgressFunction &progress = {});
    /// rebase (qemu-img rebase): the top gets `new_parent` (a location; empty:
    /// none) as its parent. Safe mode first copies into the top whatever the
    /// new chain would show differently, so the content is unchanged.
    Status rebase(const std::string &new_parent, const RebaseOptions &options = {});

    /// Asynchronous I/O (VDAsyncRead/Write/Flush/Discard): the operation is
    /// queued and run on the library's thread pool (at most four of one disk
    /// at a time); `done` is called once, from a pool thread, with its
    /// result, and must not wait for another queued operation; the
    /// buffer must stay valid until then. Operations in flight together may
    /// run in any order (do not overlap writes in flight); submit_flush is a
    /// barrier: it runs after everything submitted before it has completed
    /// and before anything submitted after it starts. The submit call itself
    /// fails only when the disk is closed or closing. A callback must not
    /// close the disk or call drain().
    /// Queue read(offset, buf, len); see above. INVALID_ARGUMENT when closed.
    Status submit_read(uint64_t offset, void *buf, uint64_t len, Completion done);
    /// Queue write(offset, buf, len); see above. INVALID_ARGUMENT when closed.
    Status submit_write(uint64_t offset, const void *buf, uint64_t len, Completion done);
    /// Queue write_zeroes(offset, len); see above. INVALID_ARGUMENT when closed.
    Status submit_write_zeroes(uint64_t offset, uint64_t len, Completion done);
    /// Queue discard(offset, len); see above. INVALID_ARGUMENT when closed.
    Status submit_discard(uint64_t offset, uint64_t len, Completion done);
    /// Queue a flush, a barrier; see above. INVALID_ARGUMENT when closed.
    Status submit_flush(Completion done);
    /// Wait until every submitted operation has completed.
    void drain();

    /// VixDiskLib_IsAttachPossible: whether this disk (the child, opened
    /// with follow_parents=false so that its bottom is a differencing image)
    /// can be put on top of `parent`: the bottom must have a parent link, the
    /// parent's top must be what it records (UUID, and modification id
    /// within one format) unless relinking, the parent must be no larger,
    /// and no image may be in both chains. With relink, the link must also
    /// be one the child can record and find again: the path rule
    /// (docs/design/paths.md) and the format's own update, run on a dry-run
    /// copy of the child. attach() runs exactly these checks first, so the
    /// answer is what attach() does. The error says which rule fails.
    Status can_attach(const Disk &parent, const AttachOptions &options = {}) const;
    /// VixDiskLib_Attach: this disk becomes the combined chain (parent's
    /// images below its own); `parent` is closed (its handle stays valid but
    /// every call fails). Nothing is written unless options.relink.
    Status attach(Disk &parent, const AttachOptions &options = {});

    /// A local cache image in front of a slow chain (VDCreateCache /
    /// VDCacheOpen): reads are served from it where it holds the block, and
    /// blocks read from the chain are copied into it; writes go to the chain
    /// first, then into cached blocks (write-through), so the cache can be
    /// detached or deleted at any time without losing data. An existing cache
    /// made for this content is reused; a stale one (the disk changed
    /// without it, or a crash while it was being updated) is emptied; any
    /// other existing file is refused (VDKIT_E_EXISTS), never replaced. A
    /// failing cache is bypassed (logged), never failing a read.
    Status attach_cache(const std::string &location, const CacheOptions &options = {});
    /// Record that the cache matches the disk and close it (delete_file: remove it).
    Status detach_cache(bool delete_file = false);
    /// The cache's counters; NOT_FOUND when none is attached. Thread-safe.
    Result<CacheStats> cache_stats() const;

    /// Flush and close every image; the first error is returned. Submitted
    /// asynchronous operations complete first. After close()
    /// every other call fails with VDKIT_E_INVALID_ARGUMENT.
    Status close();
    /// Close, then delete every file of the top image (a multi-file format's
    /// extents too); the images below stay. For a target that failed half-way.
    Status close_and_delete();

private:
    friend struct ::vdkit::DiskAccess;
    struct VDKIT_LOCAL State;
    VDKIT_LOCAL explicit Disk(std::unique_ptr<State> state);
    std::unique_ptr<State> state_;
};

/// The convert pipeline (Library::copy). Cost follows allocated data: the
/// source's allocation map is walked once, unallocated and zero ranges are
/// never read, and data that reads as zero is found in units of the target's
/// allocation unit (at least 4 KiB) and not written to a zero target.
struct CopyOptions {
    /// Called from one thread at a time with bytes of source data done/total;
    /// false cancels (VDKIT_E_CANCELLED).
    ProgressFunction progress;
    /// The target reads as zero where nothing was written (new images): zero
    /// ranges of the source are then skipped instead of written.
    bool target_is_zero = true;
    /// Bytes each worker reads at once (rounded up to the target's unit; at
    /// most 128 KiB for a sequential target, whose writer queues its own work).
    size_t buffer_size = 1u << 20;
    /// Workers reading the source and finding zeros at the same time (1..64;
    /// qemu-img convert -m): the calling thread and threads-1 tasks on the
    /// library's thread pool, which grows while the copy runs until it holds
    /// them (beside the helpers of other copies running then; 64 threads at
    /// most, never shrinking): a copy alone gets every worker it asks for.
    /// 0: one per processor, at least 2 (one reads while the other scans), at
    /// most 4 (more only hold buffers waiting for their turn to write). Peak
    /// buffer memory is about threads*buffer_size.
    unsigned threads = 0;
    /// Let writes reach the target in any order (qemu-img convert -W): faster
    /// on random-access targets; the file layout then depends on timing. A
    /// sequential target (ImageInfo::sequential) is always written in order.
    bool out_of_order = false;
    /// VDCopyEx's "same content up to image N": dst is a differencing image
    /// whose parent chain reads what src's images 0..N read (a copy of them,
    /// see Library::common_image). Only what src's images above N hold is
    /// copied — their zeros written as zeros — and nothing else is read.
    std::optional<size_t> same_up_to;
    /// When set: true after the copy if any write to dst succeeded (false:
    /// dst was not written to). Set by Library::copy on return, by the
    /// calling thread; the pointee is owned by the caller.
    bool *wrote = nullptr;
};

/// What a new image would take on its medium (Library::measure).
struct MeasureResult {
    uint64_t required = 0;        // for the source's data (a fresh sparse image: metadata only)
    uint64_t fully_allocated = 0; // with every block allocated (create --preallocate)
};

/// Library::rename_image (VixDiskLib_Rename; a move when the directory changes).
struct RenameOptions {
    /// Relink the image's children (found by find_children) to the new
    /// location; without this they keep naming the old path.
    bool relink_children = true;
    /// Directories searched for children besides the image's own.
    std::vector<std::string> search_dirs;
    /// Allow parent paths that leave an image's directory; empty: config.
    std::optional<bool> allow_unsafe_paths;
    /// The file-level filter stack the image, its parent and its children
    /// are stored through (OpenOptions::filters).
    std::vector<FilterSpec> filters;
};

/// The result of Library::rename_image.
struct RenameResult {
    std::string location;              // the image's new (absolute) location
    std::vector<std::string> relinked; // children now naming it
    std::vector<std::string> searched; // the directories searched for children
};

/// Library::delete_image (VixDiskLib_Unlink).
struct DeleteOptions {
    /// Delete even when children depend on the image (they are orphaned).
    bool force = false;
    std::vector<std::string> search_dirs; // as RenameOptions::search_dirs
    std::vector<FilterSpec> filters;      // as RenameOptions::filters
    /// Only search for children: the result's `children` and `searched` say
    /// what a delete would find; nothing is opened for writing or removed,
    /// and children do not make it fail (e.g. to report a refusal's details).
    bool dry_run = false;
};

/// The result of Library::delete_image.
struct DeleteResult {
    std::vector<std::string> orphaned; // children left without their parent (force)
    std::vector<std::string> searched; // the directories searched for children
    std::vector<std::string> children; // the children found (refused without force; orphaned with it)
};

/// Library::convert (qemu-img convert, VDCopyEx into a new image,
/// VixDiskLib_Clone): every setting of one conversion, described once. The
/// CLI's `convert` flags and a batch job's keys (config/batch.md) fill this
/// struct; vdkit_convert_options (vdkit.h) carries the same fields.
struct ConvertOptions {
    // ---- the source ----
    std::string source_format;              // empty: probe
    std::vector<FilterSpec> source_filters; // OpenOptions::filters for the source chain
    bool source_force_share = false;        // OpenOptions::force_share (qemu-img convert -U)
    /// Read the source through this cache image (Disk::attach_cache; made if
    /// missing); empty: none.
    std::string source_cache;
    std::string cache_format = "vdi"; // of a new source_cache image

    // ---- the target ----
    std::string target_format;              // required
    Options target_options;                 // create options of target_format
    std::vector<FilterSpec> target_filters; // the target's (and a backing image's) file-level filters
    bool preallocate = false;               // CreateOptions::fixed
    /// Replace an existing regular file (or the file a symlink names), only
    /// once the new image is complete; never a device, fifo or directory, nor
    /// an image another process holds open. Without it an existing target,
    /// or one that appears while converting, fails with VDKIT_E_EXISTS.
    bool overwrite = false;
    /// The target is a differencing image over `backing` (a location relative
    /// to the target's directory, as qemu-img convert -B). When the backing is
    /// a UUID-kept copy of one of the source's images (Library::common_image)
    /// only what the source's images above it hold is copied.
    std::string backing, backing_format; // backing_format empty: probe
    bool keep_uuid = false;              // the target gets the source top image's UUID
    /// Write into the existing `target` (a block device, a preallocated file,
    /// an image of target_format; qemu-img convert -n) in place: no staging.
    /// It must hold at least the source's virtual size; its excess is left
    /// untouched. target_options, preallocate, backing, keep_uuid and
    /// overwrite only apply when the target is created and are refused here.
    bool existing_target = false;
    /// With existing_target: the target already reads as zero, so the
    /// source's zero ranges are not written (--target-is-zero).
    bool target_is_zero = false;

    // ---- the copy ----
    unsigned threads = 0;      // CopyOptions::threads (1..64; 0: automatic)
    bool out_of_order = false; // CopyOptions::out_of_order
    /// Before the target gets its final name, compare it with the source
    /// (Library::compare); a difference fails with VDKIT_E_CORRUPT.
    bool verify = false;
    /// Bytes of source data done/total; called from one thread at a time (not
    /// always the caller's), and also between the steps of the job (with the
    /// same numbers; 0, 0 before the copy has begun, when the total is not
    /// known yet), so that returning false cancels at any step
    /// (VDKIT_E_CANCELLED, nothing published, the staging removed).
    ProgressFunction progress;
};

/// What Library::convert did (sizes in bytes).
struct ConvertResult {
    uint64_t virtual_size = 0; // of the source
    uint64_t data_bytes = 0;   // source data the copy read
    /// With overwrite: files of the replaced image the new one did not
    /// replace (another name: an old descriptor's extents), left in place.
    std::vector<std::string> left_in_place;
};

/// An option combination Library::convert refuses
/// (Library::convert_option_problems).
struct ConvertOptionProblem {
    /// The ConvertOptions member at fault ("keep_uuid", "backing", ...; the
    /// first one the message names), so that a tool can point at its line.
    std::string option;
    std::string message; // the whole sentence, options spelled as asked
};

/// A staging directory a convert left behind (Library::convert stages a new
/// target in ".NAME.vdkit-partial" beside it, holding a marker file it keeps
/// locked while it runs). Library::staging_dirs lists them; a stale one (its
/// convert was killed) is removed by remove_stale_staging, or by the next
/// convert into the same target.
struct StagingDir {
    /// stale: vdkit's marker, nobody holds its lock; in_use: a running
    /// convert holds it; foreign: no valid vdkit marker; removed: just
    /// removed; unknown: the file system cannot lock files, so whether a
    /// convert still runs there cannot be told; mismatched: its marker names
    /// another target (a copied marker); other_host: made on another host,
    /// whose locks may not reach here. Only stale ones are ever removed.
    enum class State { stale, in_use, foreign, removed, unknown, mismatched, other_host };
    std::string path;
    State state = State::foreign;
    long pid = 0;                // of the convert that made it (from the marker)
    std::string target, started; // from the marker
    std::string host;            // from the marker
    uint64_t bytes = 0;          // allocated on disk by what it holds
};
/// "stale", "in use", ... (static storage). Thread-safe.
VDKIT_API const char *to_string(StagingDir::State state) noexcept;
/// The staging directory Library::convert uses for the file `target`
/// (".NAME.vdkit-partial" in its directory).
VDKIT_API std::string staging_dir_for(const std::string &target);

/// Plugins (formats, filters, transports) and configuration; opens and
/// creates Disks. Shared by threads: every method is thread-safe, also
/// load_plugin / unload_plugin while others run.
class VDKIT_API Library {
public:
    /// Read the configuration and load the plugins of every plugin
    /// directory; plugins that fail to load are skipped (load_problems(),
    /// and a warning to the log). CONFIG when the configuration is invalid.
    static Result<std::shared_ptr<Library>> create(const LibraryOptions &options = {});
    /// Free; Disks opened from it keep the plugins they use loaded.
    ~Library();
    /// Not copyable: share the shared_ptr.
    Library(const Library &) = delete;
    /// Not copyable.
    Library &operator=(const Library &) = delete;

    /// Every registered plugin, in load order (a snapshot). Thread-safe.
    std::vector<PluginInfo> plugins() const;

    /// ---- one plugin library at run time (VDPluginLoadFromFilename / VDPluginUnloadFile) ----
    /// Load the plugin library file at `path` and register every plugin it
    /// provides; returns them. All or nothing: NOT_FOUND when the file does
    /// not exist, EXISTS when it is loaded already or one of its plugins'
    /// names is taken, ABI when it is not a vdkit plugin library (the
    /// loader's own error text). Safe to call while other threads use the
    /// library.
    Result<std::vector<PluginInfo>> load_plugin(const std::string &path);
    /// Unregister every plugin that came from the library file at `path`
    /// (named as it was loaded, or the same file by another path) and let it
    /// be unmapped. Refused with BUSY, changing nothing, while one of its
    /// plugins is in use (an open disk, a store, a call in progress);
    /// NOT_FOUND when no library of that file is loaded.
    Status unload_plugin(const std::string &path);
    /// The plugin of that kind and name (case-insensitive), or nullopt. Thread-safe.
    std::optional<PluginInfo> plugin(PluginKind kind, std::string_view name) const;
    /// Plugin files found by create() but not loaded, and why. The
    /// reference lives as long as the Library.
    const std::vector<LoadProblem> &load_problems() const noexcept;

    /// Name of the format whose probe scores highest for location. When only
    /// the raw fallback would take it, a file carrying another container's
    /// signature or named for another format is an error (docs/design/probing.md).
    Result<std::string> probe(const std::string &location, const Options &transport_options = {}) const;

    /// Open the image at location (a path or URL) and, unless
    /// follow_parents is false, its chain of parents. NOT_FOUND (file,
    /// parent, format); BUSY (locked by another writer); CORRUPT;
    /// PARENT_MISMATCH; PERMISSION (path rule); AMBIGUOUS (probe tie);
    /// CONFIG (options); NOT_SUPPORTED (direct without support);
    /// INVALID_ARGUMENT (force_share or info_only with writable).
    Result<std::unique_ptr<Disk>> open(const std::string &location, const OpenOptions &options = {}) const;
    /// Create an image (size in bytes) and open it writable. EXISTS (without
    /// overwrite); NOT_FOUND (format, parent); NOT_SUPPORTED; CONFIG;
    /// PERMISSION.
    Result<std::unique_ptr<Disk>> create_image(const std::string &location, const CreateOptions &options) const;

    /// Copy src's virtual content into dst (same size or larger), driven by
    /// allocation status: unallocated and zero ranges are not read.
    Status copy(const Disk &src, Disk &dst, const CopyOptions &options = {}) const;

    /// For copying into an existing chain: the highest index N of src's
    /// images whose UUID is that of the image just below dst's top (dst is a
    /// differencing image over a copy of src's images 0..N made with their
    /// UUIDs kept, as VirtualBox identifies media), or nullopt. The result is
    /// what CopyOptions::same_up_to takes.
    static Result<std::optional<size_t>> common_image(const Disk &src, const Disk &dst);

    /// qemu-img measure / VixDiskLib SpaceNeededForClone: the bytes a new
    /// image of `format` (with create `options`) would take holding source's
    /// data — from its allocation map; nothing is read — or, without a
    /// source, an empty image of `size` bytes. An upper bound where the
    /// format compresses. NOT_SUPPORTED when the format cannot tell.
    Result<MeasureResult> measure(const std::string &format, const Options &options, const Disk *source,
                                  uint64_t size = 0) const;

    /// Content comparison (qemu-img compare): the first offset at which a and
    /// b read differently, or nullopt when they read the same. Over the
    /// common size ranges neither side holds data are not read; the larger
    /// disk's tail must read as zero. Formats may differ.
    static Result<std::optional<uint64_t>> compare(const Disk &a, const Disk &b);

    /// compare for a target at least as large as the source (convert -n into
    /// a device): the first offset below a.size() at which a and b read
    /// differently, or nullopt; b's excess is not compared. progress (may be
    /// empty) is asked between 4 MiB pieces with bytes done/total of a and
    /// may cancel (VDKIT_E_CANCELLED). OUT_OF_RANGE when b is smaller.
    static Result<std::optional<uint64_t>> compare_prefix(const Disk &a, const Disk &b,
                                                          const ProgressFunction &progress = {});

    /// Differencing images whose parent is `location`: among the files in its
    /// directory, its Snapshots/ subdirectory, the directories of the images
    /// of its chain and search_dirs, those whose parent path resolves to it
    /// and whose recorded parent UUID (if any) is its UUID, and those that
    /// name no parent path but record its UUID (VirtualBox). File locations
    /// only; for a URL the list is empty (with a warning). The image and the
    /// candidates are read through `filters` (OpenOptions::filters).
    Result<std::vector<std::string>> find_children(const std::string &location,
                                                   const std::vector<std::string> &search_dirs = {},
                                                   const std::vector<FilterSpec> &filters = {}) const;

    /// Rename or move an image with all its files (a VMDK's extents follow
    /// its descriptor, renamed after it). The image's own parent path and its
    /// children's parent paths are rewritten (ids unchanged), and every path
    /// is checked against the path policy before anything moves. No existing
    /// file is replaced (the target, or an extent's new name: VDKIT_E_EXISTS,
    /// and what moved is moved back); the image must not be in use (its lock
    /// is taken).
    Result<RenameResult> rename_image(const std::string &from, const std::string &to,
                                      const RenameOptions &options = {}) const;

    /// Delete an image with all its files. Refused (VDKIT_E_PERMISSION,
    /// naming them and the directories searched) when children found as by
    /// find_children depend on it, unless options.force; the
    /// orphans are then listed in the result and logged as warnings.
    Result<DeleteResult> delete_image(const std::string &location, const DeleteOptions &options = {}) const;

    /// Convert `source` (its whole chain) into `target` (qemu-img convert):
    /// the whole job in one call. A new target is built in a staging
    /// directory beside it (staging_dir_for), copied (Library::copy),
    /// verified when asked, closed and flushed, then published under its
    /// final name with the transport's no-replace rename — an image that
    /// appears meanwhile is never replaced (VDKIT_E_EXISTS) unless
    /// options.overwrite — and the staging directory is removed. On any
    /// failure or cancel (progress returns false: VDKIT_E_CANCELLED) the
    /// staging directory is removed and the final name is untouched. With
    /// existing_target the data goes straight into the existing target.
    /// Errors: INVALID_ARGUMENT for options that cannot go together
    /// (check_convert_options), a target that names a directory, source and
    /// target the same file, or a target that is a file of the source's
    /// chain; EXISTS for an existing target without overwrite; NOT_FOUND for
    /// a missing source or -n target; whatever opening, creating, copying or
    /// renaming returns otherwise (every message names the file). Units:
    /// bytes. Thread safety: converts into different targets may run at
    /// once on one Library.
    Result<ConvertResult> convert(const std::string &source, const std::string &target,
                                  const ConvertOptions &options) const;
    /// The option combinations convert refuses before touching anything
    /// (INVALID_ARGUMENT with the first of convert_option_problems, options
    /// spelled as vdkit convert's flags); OK otherwise.
    static Status check_convert_options(const ConvertOptions &options);
    /// Every option combination convert refuses, in one order, each with the
    /// member at fault and a message in which each option is spelled as
    /// `spell` returns for its ConvertOptions member name ("existing_target",
    /// "target_options", ...); without `spell`, as vdkit convert's flags
    /// ("-n", "-o (target format options)"). The one validation behind
    /// check_convert_options, for tools that take the options under other
    /// names (batch files). Empty: none. Pure; thread-safe.
    static std::vector<ConvertOptionProblem>
    convert_option_problems(const ConvertOptions &options,
                            const std::function<std::string(std::string_view member)> &spell = {});
    /// The refusals of convert that are about its arguments, made before the
    /// job starts and without writing anything: check_convert_options,
    /// source and target the same file, a target name that breaks the
    /// naming rule (written_name_problem; with existing_target not applied)
    /// or names a directory, a new source cache named for another format, an
    /// existing target of another format (existing_target), and a target
    /// that is a file of the source's chain (the source is opened to learn
    /// them, shared and read-only; a source that does not open is left to
    /// convert to report). INVALID_ARGUMENT naming what is wrong; OK
    /// otherwise. Convert makes the same checks; a tool calls this first to
    /// tell a usage error from a failure of the job (the CLI's exit 2 and
    /// 1). Thread-safe.
    Status check_convert(const std::string &source, const std::string &target, const ConvertOptions &options) const;
    /// The naming rule for every file vdkit creates (docs/design/probing.md,
    /// "Naming new files"): empty when a new image of `format` may be called
    /// `location`, else the message saying why not — its extension
    /// (naming_extension) names another format, one an installed plugin
    /// lists or a foreign container's (.qcow2, .vhd, ...). Generic extensions
    /// (.img) and unknown formats pass. Convert applies it to its target and
    /// source cache; vdkit create, snapshot and batch too. Thread-safe.
    std::string new_name_problem(const std::string &location, const std::string &format) const;
    /// new_name_problem for a file written through `location` (convert and
    /// batch targets replace the file a symlink points to): the name given
    /// and, for a symlink, the name of the file it resolves to. Thread-safe.
    std::string written_name_problem(const std::string &location, const std::string &format) const;
    /// The format plugins that list `extension` (without the dot, any case)
    /// among their extensions (PluginInfo::extensions), by name in load
    /// order; empty for "" or when none does. What a file name claims to be,
    /// as the naming rule (new_name_problem) and tools that pick a format
    /// from a name judge it. Thread-safe.
    std::vector<std::string> formats_for_extension(std::string_view extension) const;
    /// The staging directories (".*.vdkit-partial*") directly in `dir` and
    /// whether a running convert holds each (sorted by path). IO naming the
    /// directory when it cannot be listed.
    static Result<std::vector<StagingDir>> staging_dirs(const std::string &dir);
    /// Remove `d` if it is still stale (re-checked with its marker's lock
    /// held while removing). Symlinks in it are removed, not followed; a
    /// mount point inside stops the removal (PERMISSION) before anything is
    /// removed. d.state becomes what was found (removed on success).
    static Status remove_stale_staging(StagingDir &d);

    /// Validate options for a plugin as open (create=false) or create would:
    /// unknown keys (with a suggestion), types, ranges and enumerations. The
    /// message names the plugin and the key.
    Status check_options(PluginKind kind, std::string_view name, const Options &options, bool create) const;
    /// OK when every filter of `stack` is a loaded file-level filter and its
    /// options are valid (for creating an image when `create`).
    Status check_filters(const std::vector<FilterSpec> &stack, bool create) const;

private:
    VDKIT_LOCAL explicit Library(std::shared_ptr<Host> host);
    std::shared_ptr<Host> host_;
};

// ---- text the library reads and writes, for tools that take the same syntax ----
/// Pure functions of their arguments: thread-safe, no I/O, nothing thrown but
/// std::bad_alloc.

/// A byte count as size-typed keys accept it: "4096", "64k", "1.5G", "2T"
/// (binary multiples, any case, optional trailing "B" or "iB"). Nothing on
/// overflow, a negative number or malformed text.
VDKIT_API std::optional<uint64_t> parse_size(std::string_view text);
/// Bytes as the library's messages print them: "1.5 GiB", "512 B".
VDKIT_API std::string format_size(uint64_t bytes);
/// As bool-typed keys accept: true/false, yes/no, on/off, 1/0 (any case).
VDKIT_API std::optional<bool> parse_bool(std::string_view text);
/// An unsigned 64-bit decimal number as uint-typed keys accept it.
VDKIT_API std::optional<uint64_t> parse_uint(std::string_view text);
/// "a=1,b=2" into its pairs in order, as the C API's `options` strings: a key
/// without "=" gets the value "on", ",," is a literal comma. Nothing when a
/// key is empty.
VDKIT_API std::optional<std::vector<std::pair<std::string, std::string>>> parse_key_values(std::string_view text);
/// The candidate nearest `name` by edit distance when it is near enough to be
/// a likely typo, else nothing: the rule of the library's own "did you mean"
/// suggestions (option keys, plugin names), so a tool's agree with them.
VDKIT_API std::optional<std::string> closest_match(std::string_view name, const std::vector<std::string> &candidates);
/// A UUID in canonical RFC 4122 text, lower case ("0f1e...-..."); the nil UUID
/// is "00000000-0000-0000-0000-000000000000".
VDKIT_API std::string to_string(const Uuid &uuid);

// ---- disk-image containers (docs/design/probing.md) ------------------------------
/// The containers whose signatures or names the probe's raw rule knows
/// (qcow2, VHD, VHDX, ...; VDI and VMDK too), whether or not a plugin for
/// them is installed. The table is the library's, built once, and lives as
/// long as the process: pointers into it stay valid and may be compared.
struct ContainerKind {
    std::string name;                    // qemu-img's name for it ("qcow2", "vpc")
    std::string title;                   // how messages name it ("qcow2", "VHD (vpc)")
    std::vector<std::string> aliases;    // plugin names that would read it (name first)
    std::vector<std::string> extensions; // file extensions, lower case, without the dot
};
/// A container signature detect_container found, and where.
struct ContainerMatch {
    const ContainerKind *container = nullptr; // into known_containers()
    std::string evidence;                     // what was found where ("QFI\xfb magic, version 3, at offset 0")
    std::string condition;                    // "" (whole), "truncated" or "damaged"
};
/// Every container the library knows. Thread-safe.
VDKIT_API const std::vector<ContainerKind> &known_containers();
/// The container an extension (without the dot, any case) names, or null.
VDKIT_API const ContainerKind *container_by_extension(std::string_view extension);
/// Extensions that name no particular format ("img", "bin", "dd"); lower case.
VDKIT_API bool is_generic_extension(std::string_view extension);
/// The last extension of a path or URL's last component, lower case, without
/// the dot ("" for none): "dir/Disk.VHD" -> "vhd", "a.b/c" -> "".
VDKIT_API std::string extension_of(std::string_view location);
/// The extension the naming rule (Library::new_name_problem) judges, lower
/// case without the dot ("" for none): extension_of the last component after
/// dropping trailing dots and spaces (Windows and SMB drop them), and a
/// dotfile ".vmdk" has the extension "vmdk". Pure; thread-safe.
VDKIT_API std::string naming_extension(std::string_view location);
/// What a stat(2) st_mode names, for messages: "a regular file", "a block
/// device", "a character device", "a fifo (named pipe)", "a directory",
/// "a socket", "a symlink", else "a special file". Pure; thread-safe.
VDKIT_API std::string file_type_name(unsigned mode);
/// Reads exactly len bytes at offset of the file being examined (the caller
/// of detect_container keeps offset+len within it); I/O errors as Status.
using ContainerRead = std::function<Status(uint64_t offset, void *buf, size_t len)>;
/// The container whose signature a file of file_size bytes carries, if any,
/// read through `read`. Only I/O errors (read's, returned as they are) are
/// errors; foreign or short data is "no match". Thread-safe if `read` is.
VDKIT_API Result<std::optional<ContainerMatch>> detect_container(uint64_t file_size, const ContainerRead &read);

} // namespace v1
} // namespace vdkit

#endif // VDKIT_VDKIT_HPP
