// The one home of the texts of public enums: status codes (names and
// texts, in code order; codes are never renumbered, sdk/docs/abi-ledger.md),
// plugin kinds, option key types and check finding severities, and Status's
// own text forms. Every other place (the C API, the CLI, plugin errors)
// asks these functions.
#include "vdkit/vdkit.hpp"

#include <string>
#include <string_view>

namespace vdkit {

namespace {

const char *const kNames[] = {
    "VDKIT_OK",
    "VDKIT_E_INVALID_ARGUMENT",
    "VDKIT_E_NOT_SUPPORTED",
    "VDKIT_E_NOT_FOUND",
    "VDKIT_E_IO",
    "VDKIT_E_CORRUPT",
    "VDKIT_E_NO_MEMORY",
    "VDKIT_E_BUSY",
    "VDKIT_E_READ_ONLY",
    "VDKIT_E_INTERNAL",
    "VDKIT_E_ABI",
    "VDKIT_E_UNALLOCATED",
    "VDKIT_E_OUT_OF_RANGE",
    "VDKIT_E_EXISTS",
    "VDKIT_E_CANCELLED",
    "VDKIT_E_PERMISSION",
    "VDKIT_E_AMBIGUOUS",
    "VDKIT_E_CONFIG",
    "VDKIT_E_PARENT_MISMATCH",
    "VDKIT_E_BLOCK_FREE",
};
const char *const kTexts[] = {
    "success",
    "invalid argument",
    "not supported",
    "not found",
    "I/O error",
    "image is corrupt",
    "out of memory or over a limit",
    "in use by another process",
    "read-only",
    "internal error",
    "plugin ABI mismatch",
    "range not allocated in this image",
    "offset or length out of range",
    "already exists",
    "cancelled",
    "not permitted",
    "ambiguous",
    "invalid configuration",
    "parent link does not match",
    "block not allocated; write it whole",
};
static_assert(sizeof(kNames) / sizeof(kNames[0]) == VDKIT_STATUS_COUNT, "every status code needs a name");
static_assert(sizeof(kTexts) / sizeof(kTexts[0]) == VDKIT_STATUS_COUNT, "every status code needs a text");

} // namespace

inline namespace v1 {
const char *status_text(vdkit_status code) noexcept {
    return code < VDKIT_STATUS_COUNT ? kTexts[code] : "unknown status";
}
const char *status_name(vdkit_status code) noexcept {
    return code < VDKIT_STATUS_COUNT ? kNames[code] : "VDKIT_E_UNKNOWN";
}

std::string Status::to_string() const {
    if (is_ok()) return "success";
    if (message_.empty()) return std::string(status_text(code_)) + " (" + status_name(code_) + ")";
    return message_ + " (" + status_name(code_) + ")";
}

Status Status::with_context(std::string_view what) const {
    if (is_ok()) return *this;
    return Status(code_, std::string(what) + ": " + message_);
}

const char *to_string(PluginKind kind) noexcept {
    switch (kind) {
    case PluginKind::format:
        return "format";
    case PluginKind::filter:
        return "filter";
    case PluginKind::transport:
        return "transport";
    }
    return "unknown";
}

const char *to_string(KeyType t) noexcept {
    switch (t) {
    case KeyType::string_:
        return "string";
    case KeyType::boolean:
        return "bool";
    case KeyType::integer:
        return "int";
    case KeyType::unsigned_:
        return "uint";
    case KeyType::size:
        return "size";
    case KeyType::enumeration:
        return "enum";
    }
    return "unknown";
}

const char *to_string(FindingSeverity s) noexcept {
    switch (s) {
    case FindingSeverity::error:
        return "error";
    case FindingSeverity::leak:
        return "leak";
    case FindingSeverity::repaired:
        return "repaired";
    case FindingSeverity::note:
        return "note";
    }
    return "unknown";
}
} // namespace v1

} // namespace vdkit
