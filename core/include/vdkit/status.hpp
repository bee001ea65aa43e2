// vdkit/status.hpp — error values of the vdkit C++ API.
//
// Status is a code from vdkit/status.h plus a message naming what failed and
// where ("disk.vmdk: grain table at offset 0x1200: entry beyond end of
// file"). Result<T> is a T or a non-OK Status. Both are cheap to move and
// [[nodiscard]]: the core reports errors as values and never throws; only
// tools/ and config parsing use exceptions, converted at the boundary.
//
// Thread-safety: values, no shared state.
#ifndef VDKIT_STATUS_HPP
#define VDKIT_STATUS_HPP

#include "vdkit/export.h"
#include "vdkit/status.h"

#include <cassert>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

namespace vdkit {
inline namespace v1 {

// Short, stable text for a code ("I/O error"); "unknown status" past the table.
VDKIT_API const char *status_text(vdkit_status code) noexcept;
// The code's symbolic name ("VDKIT_E_IO").
VDKIT_API const char *status_name(vdkit_status code) noexcept;

class [[nodiscard]] Status {
public:
    Status() noexcept = default;
    Status(vdkit_status code, std::string message) : code_(code), message_(std::move(message)) {}

    static Status ok() noexcept { return Status(); }

    bool is_ok() const noexcept { return code_ == VDKIT_OK; }
    explicit operator bool() const noexcept { return is_ok(); }
    vdkit_status code() const noexcept { return code_; }
    const std::string &message() const noexcept { return message_; }

    // "message (VDKIT_E_IO)", or the code's text when there is no message.
    VDKIT_API std::string to_string() const;

    // Prefix the message with context: s.with_context("copy") -> "copy: <message>".
    VDKIT_API Status with_context(std::string_view what) const;

    // Mark as handled on purpose (documents intent where a failure is ignored).
    void ignore() const noexcept {}

private:
    vdkit_status code_ = VDKIT_OK;
    std::string message_;
};

template <class T> class [[nodiscard]] Result {
public:
    Result(T value) : value_(std::move(value)) {}                                    // NOLINT: implicit on purpose
    Result(Status status) : status_(std::move(status)) { assert(!status_.is_ok()); } // NOLINT

    bool is_ok() const noexcept { return value_.has_value(); }
    explicit operator bool() const noexcept { return is_ok(); }
    const Status &status() const noexcept { return status_; }

    T &value() & {
        assert(is_ok());
        return *value_;
    }
    const T &value() const & {
        assert(is_ok());
        return *value_;
    }
    T &&value() && {
        assert(is_ok());
        return std::move(*value_);
    }
    T *operator->() { return &value(); }
    const T *operator->() const { return &value(); }
    T &operator*() & { return value(); }
    const T &operator*() const & { return value(); }

private:
    std::optional<T> value_;
    Status status_;
};

} // namespace v1
} // namespace vdkit

// Early return of a failed Status or Result.
#define VDKIT_TRY(expr)                                                                                                \
    do {                                                                                                               \
        ::vdkit::Status vdkit_try_status_ = (expr);                                                                    \
        if (!vdkit_try_status_.is_ok()) return vdkit_try_status_;                                                      \
    } while (0)

#define VDKIT_CONCAT_INNER(a, b) a##b
#define VDKIT_CONCAT(a, b) VDKIT_CONCAT_INNER(a, b)
#define VDKIT_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr)                                                                    \
    auto tmp = (expr);                                                                                                 \
    if (!tmp.is_ok()) return tmp.status();                                                                             \
    lhs = std::move(tmp).value()
// VDKIT_ASSIGN_OR_RETURN(auto x, make_x()); returns the Status on failure.
#define VDKIT_ASSIGN_OR_RETURN(lhs, expr) VDKIT_ASSIGN_OR_RETURN_IMPL(VDKIT_CONCAT(vdkit_result_, __LINE__), lhs, expr)

#endif // VDKIT_STATUS_HPP
