// DryRunStore: a store that takes writes without passing them on. Reads see
// the store below with this store's own writes (and truncation) over it; the
// writes are kept in memory and dropped with the store. An image opened on
// dry-run stores (ImageSetup::dry_run) runs a format's real metadata update
// — the same plugin code as the real operation — and changes no file, so a
// check ("could this be relinked?") answers exactly what the operation does.
#ifndef VDKIT_CORE_IO_DRY_RUN_STORE_HPP
#define VDKIT_CORE_IO_DRY_RUN_STORE_HPP

#include "io/byte_store.hpp"

namespace vdkit {

// `below` is only read. Writes beyond `memory_limit` bytes of changed pages
// fail with VDKIT_E_NO_MEMORY (a dry run is meant for metadata updates).
ByteStorePtr make_dry_run_store(ByteStorePtr below, uint64_t memory_limit = 64u << 20);

} // namespace vdkit

#endif
