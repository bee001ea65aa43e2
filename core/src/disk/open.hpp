// Opening and creating disks (disk/open.cpp): format probing, chain
// assembly with parent verification, and image creation. The public API
// (Library::open, create_image, probe) calls these directly.
//
// Thread-safety: each takes the Host const and may be called concurrently.
#ifndef VDKIT_CORE_DISK_OPEN_HPP
#define VDKIT_CORE_DISK_OPEN_HPP

#include "io/byte_store.hpp"
#include "registry/registry.hpp"
#include "vdkit/vdkit.hpp"

#include <cstdint>
#include <memory>
#include <string>

namespace vdkit {

class Host;
class Image;

// Scored probing: the highest score wins; a tie or no match is an error
// naming the candidates. `fallback_ok` accepts a VDKIT_PROBE_FALLBACK
// winner (read-only opens).
Result<PluginEntryPtr> probe(const Host &host, ByteStore &main, const std::string &location, bool fallback_ok);
// With no evidence for any plugin (at best the fallback): an error when
// the file carries a known container signature or its extension names a
// format it is not (docs/design/probing.md, "Foreign containers").
Status refuse_unrecognised(const Host &host, ByteStore &main, const std::string &location, const PluginEntry *fallback);
// Before a link from `child` (of format child_format) to `parent` is
// written: would probing the parent, as every later open of the child
// does (VDI and VMDK cannot record a parent's format), pick the format
// the parent is open with? For a child format that records its parent's
// format (get_parent_format), would recorded_parent_format() accept it?
// An error saying why not, or OK.
Status check_parent_link(const Host &host, Image &parent, const std::string &child, const std::string &child_format);
// The format a child records for its parent (`recorded`, e.g. qcow2's
// backing format), for opening the parent at `location` without probing:
// a format whose probe only guesses (raw, VDKIT_PROBE_FALLBACK) is used
// whatever the bytes look like; any other must recognise the file and be
// what probing picks. Otherwise VDKIT_E_PARENT_MISMATCH naming both (or
// NOT_SUPPORTED for a name no plugin has).
Result<PluginEntryPtr> recorded_parent_format(const Host &host, ByteStore &main, const std::string &location,
                                              const std::string &recorded, const std::string &child);
// The score `fmt`'s own probe gives `main` (0 when its probe fails).
Result<uint32_t> probe_score(const Host &host, const PluginEntry &fmt, ByteStore &main, const std::string &location);

// The disk at `location` with its chain (Library::open); the Disk keeps
// `host` (and so its plugins) alive.
Result<std::unique_ptr<Disk>> open_disk(const Host &host, const std::string &location, const OpenOptions &options);
// A new image at `location` (Library::create_image).
// final_location: the image is built at `location` but will be moved there
// (a staged convert): its parent path is written relative to it and must
// resolve from there. Empty: location.
Result<std::unique_ptr<Disk>> create_disk(const Host &host, const std::string &location, const CreateOptions &options,
                                          const std::string &final_location = {});

} // namespace vdkit

#endif
