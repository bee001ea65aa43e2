// Signatures of disk-image containers, for the probe's raw rule
// (docs/design/probing.md): when no installed format plugin recognises a
// file and only the raw fallback would take it, a file carrying a known
// container signature (qcow2, VHD, VHDX, ...) or a name that says it is one
// is refused instead of being read as its container bytes.
//
// Detection only: nothing here parses more than the fixed header fields that
// make a signature specific. Each check cites the format's own description.
//
// Thread-safety: pure functions over caller-supplied reads.
#ifndef VDKIT_CORE_DISK_CONTAINERS_HPP
#define VDKIT_CORE_DISK_CONTAINERS_HPP

#include "vdkit/status.hpp"

#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace vdkit::containers {

struct Container {
    std::string_view name;                        // qemu-img's name for the format ("qcow2", "vpc")
    std::string_view title;                       // how messages name it ("qcow2", "VHD (vpc)")
    std::span<const std::string_view> aliases;    // plugin names that would read it (name first)
    std::span<const std::string_view> extensions; // file extensions without the dot, lower case
};

struct Match {
    const Container *container = nullptr;
    std::string evidence;       // what was found where, e.g. "QFI\xfb magic, version 3, at offset 0"
    std::string_view condition; // "" (whole), "truncated" or "damaged": how messages describe the image
};

// Reads exactly len bytes at offset (the caller keeps offset+len within the
// file); an I/O error is returned as is.
using ReadAt = std::function<Status(uint64_t offset, void *buf, size_t len)>;

// Every container this file knows.
std::span<const Container> all();

// The container whose signature the file of file_size bytes carries, if any.
// Only I/O errors are errors; foreign or short data is "no match".
Result<std::optional<Match>> detect(uint64_t file_size, const ReadAt &read);

// The container whose magic (4 bytes or more, the ones check_truncated knows:
// qcow/qcow2, QED, Parallels, LUKS, Bochs, VMDK sparse, VHDX, VHD footer
// copy) the first `len` bytes at `head` start with, whatever follows it: a
// stricter test than detect(), for a writer that must not leave a file any
// probe could take for a container (commit/merge into a raw base).
std::optional<Match> magic_at_start(const uint8_t *head, size_t len);

// The container a file extension (without the dot, any case) names, if any.
const Container *by_extension(std::string_view extension);

// Extensions that name no particular format when a file is created: "img",
// "bin", "dd" (generic disk-dump names; the raw plugin lists them, but a VDI
// or VMDK called disk.img is common and probes as what it is).
// docs/design/probing.md, "Naming new files". `extension` is lower case.
bool is_generic_extension(std::string_view extension);

// The last extension of a path or URL's last component, lower case, without
// the dot ("" for none): "dir/Disk.VHD" -> "vhd", "a.b/c" -> "".
std::string extension_of(std::string_view location);

} // namespace vdkit::containers

#endif
