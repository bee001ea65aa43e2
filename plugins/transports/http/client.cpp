// The HTTP client of the http/https/s3 transports (client.hpp): RFC 9110
// range requests (§14.2 Range, §14.4 Content-Range, §15.3.7 206 Partial
// Content) over libcurl easy handles.
#include "client.hpp"

#include "vdkit/text.hpp"

#include <curl/curl.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstring>
#include <exception>
#include <thread>

namespace vdkit::http {

using sdk::Error;
using sdk::hex;

namespace {

std::string lower(std::string s) {
    for (char &c : s)
        c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return s;
}

std::string trim(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t'))
        s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r' || s.back() == '\n'))
        s.remove_suffix(1);
    return std::string(s);
}

std::optional<uint64_t> parse_u64(std::string_view s) {
    if (s.empty() || s.size() > 19) return std::nullopt;
    uint64_t v = 0;
    for (char c : s) {
        if (c < '0' || c > '9') return std::nullopt;
        v = v * 10 + static_cast<uint64_t>(c - '0');
    }
    return v;
}

void global_init() {
    static std::once_flag once;
    std::call_once(once, [] {
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
            throw Error(VDKIT_E_INTERNAL, "libcurl could not be initialised");
    });
}

// <Code> and <Message> of an S3 error body, or the first line of any other.
std::string body_summary(const std::string &body) {
    auto tag = [&](const char *name) -> std::string {
        const std::string open = std::string("<") + name + ">", close = std::string("</") + name + ">";
        const size_t a = body.find(open);
        if (a == std::string::npos) return {};
        const size_t b = body.find(close, a);
        return b == std::string::npos ? std::string() : body.substr(a + open.size(), b - a - open.size());
    };
    std::string code = tag("Code"), message = tag("Message");
    if (!code.empty()) return code + (message.empty() ? "" : ": " + message);
    return {};
}

} // namespace

std::string redact(const std::string &url) {
    const size_t scheme = url.find("://");
    if (scheme == std::string::npos) return url;
    const size_t host = scheme + 3;
    const size_t end = url.find_first_of("/?#", host);
    const size_t at = url.rfind('@', end == std::string::npos ? url.size() : end);
    if (at == std::string::npos || at < host) return url;
    return url.substr(0, host) + "***@" + url.substr(at + 1);
}

std::string encode_url(const std::string &url) {
    static const char *const digits = "0123456789ABCDEF";
    std::string out;
    for (unsigned char c : url) {
        if (c <= 0x20 || c >= 0x7f || std::strchr("\"<>\\^`{|}", c)) {
            out += '%';
            out += digits[c >> 4];
            out += digits[c & 15];
        } else {
            out += static_cast<char>(c);
        }
    }
    return out;
}

// One request and what came back; the curl callbacks fill it.
struct Client::Exchange {
    // The request.
    bool head = false;
    uint64_t start = 0, len = 0; // the range asked for (GET)
    bool whole = false;          // [start, start+len) is the whole object: a 200 is fine
    unsigned char *buf = nullptr;
    const ObjectInfo *expect = nullptr; // the object as probed (GET of data)
    const std::string *name = nullptr;  // the location, for messages

    // The response (of the last hop, after redirects).
    long status = 0;
    std::string reason;
    std::optional<uint64_t> content_length;
    bool has_range = false;
    std::optional<uint64_t> range_start, range_end, range_total; // Content-Range
    std::string etag, content_encoding;
    bool ranges_none = false; // Accept-Ranges: none
    uint64_t retry_after_s = 0;
    bool started = false;   // the body's first byte was judged
    uint64_t got = 0;       // body bytes stored into buf
    std::string error_body; // start of a non-2xx body
    // Set by the write callback to stop the transfer: never retried.
    uint32_t refused_code = VDKIT_OK;
    std::string refused;
    CURLcode result = CURLE_OK;
    char curl_error[CURL_ERROR_SIZE] = {};

    void reset_response() {
        status = 0;
        reason.clear();
        content_length.reset();
        has_range = false;
        range_start.reset();
        range_end.reset();
        range_total.reset();
        etag.clear();
        content_encoding.clear();
        ranges_none = false;
        retry_after_s = 0;
        error_body.clear();
    }
    bool success() const { return status >= 200 && status < 300; }
};

class Client::Lease {
public:
    explicit Lease(Client &c) : c_(c), h_(c.take()) {}
    ~Lease() { c_.give(h_); }
    Lease(const Lease &) = delete;
    Lease &operator=(const Lease &) = delete;
    CURL *get() const { return h_; }

private:
    Client &c_;
    CURL *h_;
};

Client::Client(std::string name, std::string url, Settings settings)
    : name_(std::move(name)), url_(encode_url(url)), settings_(std::move(settings)) {
    global_init();
    if (settings_.connections == 0) settings_.connections = 1;
    for (const std::string &h : settings_.headers) {
        curl_slist *next = curl_slist_append(header_list_, h.c_str());
        if (!next) throw std::bad_alloc();
        header_list_ = next;
    }
}

Client::~Client() {
    for (CURL *h : idle_)
        curl_easy_cleanup(h);
    curl_slist_free_all(header_list_);
}

CURL *Client::take() {
    std::unique_lock<std::mutex> hold(mutex_);
    free_.wait(hold, [&] { return !idle_.empty() || created_ < settings_.connections; });
    if (!idle_.empty()) {
        CURL *h = idle_.back();
        idle_.pop_back();
        return h;
    }
    CURL *h = curl_easy_init();
    if (!h) throw Error(VDKIT_E_NO_MEMORY, name_ + ": libcurl could not make a connection handle");
    ++created_;
    return h;
}

void Client::give(CURL *h) {
    {
        std::lock_guard<std::mutex> hold(mutex_);
        idle_.push_back(h);
    }
    free_.notify_one();
}

namespace {

size_t on_header(char *data, size_t size, size_t count, void *user) {
    auto &ex = *static_cast<Client::Exchange *>(user);
    const size_t n = size * count;
    std::string_view line(data, n);
    if (line.rfind("HTTP/", 0) == 0) { // a new response (a redirect hop, a 100 Continue, the final one)
        ex.reset_response();
        const size_t sp = line.find(' ');
        if (sp != std::string_view::npos) {
            ex.status = std::strtol(std::string(line.substr(sp + 1, 3)).c_str(), nullptr, 10);
            ex.reason = trim(line.size() > sp + 4 ? line.substr(sp + 4) : std::string_view());
        }
        return n;
    }
    const size_t colon = line.find(':');
    if (colon == std::string_view::npos) return n;
    const std::string name = lower(trim(line.substr(0, colon)));
    const std::string value = trim(line.substr(colon + 1));
    if (name == "content-length") {
        ex.content_length = parse_u64(value);
    } else if (name == "content-range") {
        // bytes first-last/total, bytes */total (416), total may be '*'
        ex.has_range = true;
        std::string_view v = value;
        if (lower(std::string(v.substr(0, 6))) == "bytes ") v.remove_prefix(6);
        const size_t slash = v.find('/');
        if (slash != std::string_view::npos) {
            ex.range_total = parse_u64(v.substr(slash + 1));
            const std::string_view span = v.substr(0, slash);
            const size_t dash = span.find('-');
            if (dash != std::string_view::npos) {
                ex.range_start = parse_u64(span.substr(0, dash));
                ex.range_end = parse_u64(span.substr(dash + 1));
            }
        }
    } else if (name == "etag") {
        ex.etag = value;
    } else if (name == "content-encoding") {
        ex.content_encoding = lower(value);
    } else if (name == "accept-ranges") {
        ex.ranges_none = lower(value) == "none";
    } else if (name == "retry-after") {
        ex.retry_after_s = parse_u64(value).value_or(0);
    }
    return n;
}

// Judges the response when its body starts: only bytes known to be the ones
// asked for are ever stored.
bool accept_body(Client::Exchange &ex, const std::string &name) {
    auto refuse = [&](uint32_t code, std::string why) {
        ex.refused_code = code;
        ex.refused = std::move(why);
        return false;
    };
    if (!ex.content_encoding.empty() && ex.content_encoding != "identity")
        return refuse(VDKIT_E_NOT_SUPPORTED, name + ": the server sent the data encoded (Content-Encoding: " +
                                                 ex.content_encoding + "), not as the bytes of the file");
    if (ex.expect && !ex.expect->etag.empty() && !ex.etag.empty() && ex.etag != ex.expect->etag)
        return refuse(VDKIT_E_IO,
                      name + " changed on the server while open (ETag " + ex.etag + ", was " + ex.expect->etag + ")");
    if (ex.status == 206) {
        if (!ex.range_start || !ex.range_end || *ex.range_end < *ex.range_start)
            return refuse(VDKIT_E_IO,
                          name + ": the server answered a range request with 206 but no valid Content-Range");
        if (*ex.range_start != ex.start || *ex.range_end >= ex.start + ex.len)
            return refuse(VDKIT_E_IO, name + ": asked for bytes " + std::to_string(ex.start) + "-" +
                                          std::to_string(ex.start + ex.len - 1) + ", the server sent bytes " +
                                          std::to_string(*ex.range_start) + "-" + std::to_string(*ex.range_end));
        if (ex.expect && ex.range_total && *ex.range_total != ex.expect->size)
            return refuse(VDKIT_E_IO, name + " changed on the server while open (its size is now " +
                                          std::to_string(*ex.range_total) + " bytes, was " +
                                          std::to_string(ex.expect->size) + ")");
        return true;
    }
    if (ex.status == 200) {
        if (ex.whole && ex.start == 0) return true;
        return refuse(VDKIT_E_NOT_SUPPORTED,
                      name + ": the server ignores range requests (it answered a request for bytes " +
                          std::to_string(ex.start) + "-" + std::to_string(ex.start + ex.len - 1) +
                          " with the whole file, status 200); vdkit reads remote images only from servers that "
                          "send byte ranges (206 Partial Content)");
    }
    return refuse(VDKIT_E_IO, name + ": unexpected HTTP status " + std::to_string(ex.status) + " for a range request");
}

size_t on_body(char *data, size_t size, size_t count, void *user) {
    auto &ex = *static_cast<Client::Exchange *>(user);
    const size_t n = size * count;
    if (!ex.success()) {
        if (ex.error_body.size() < 4096) ex.error_body.append(data, std::min<size_t>(n, 4096 - ex.error_body.size()));
        return n;
    }
    if (ex.head || !ex.buf) return n;
    if (!ex.started) {
        ex.started = true;
        if (!accept_body(ex, *ex.name)) return 0;
    }
    if (ex.refused_code != VDKIT_OK) return 0;
    if (n > ex.len - ex.got) {
        ex.refused_code = VDKIT_E_IO;
        ex.refused = "the server sent more bytes than the " + std::to_string(ex.len) + " asked for";
        return 0;
    }
    std::memcpy(ex.buf + ex.got, data, n);
    ex.got += n;
    return n;
}

} // namespace

void Client::setup(CURL *h, Exchange &ex) const {
    curl_easy_reset(h);
    auto set = [&](CURLoption opt, auto value) {
        if (curl_easy_setopt(h, opt, value) != CURLE_OK)
            throw Error(VDKIT_E_NOT_SUPPORTED, name_ + ": this libcurl lacks an option vdkit needs (" +
                                                   std::to_string(static_cast<int>(opt)) + ")");
    };
    set(CURLOPT_URL, url_.c_str());
    set(CURLOPT_NOSIGNAL, 1L);
    // Only http and https, also after redirects: a remote image never makes
    // vdkit read a local file (file://) or speak another protocol.
#if LIBCURL_VERSION_NUM >= 0x075500
    set(CURLOPT_PROTOCOLS_STR, "http,https");
    set(CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
#else
    set(CURLOPT_PROTOCOLS, static_cast<long>(CURLPROTO_HTTP | CURLPROTO_HTTPS));
    set(CURLOPT_REDIR_PROTOCOLS, static_cast<long>(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
    set(CURLOPT_FOLLOWLOCATION, 1L);
    set(CURLOPT_MAXREDIRS, 10L);
    set(CURLOPT_CONNECTTIMEOUT, static_cast<long>(settings_.connect_timeout_s));
    set(CURLOPT_TIMEOUT, static_cast<long>(settings_.timeout_s));
    set(CURLOPT_USERAGENT, "vdkit-http/1.0");
    set(CURLOPT_ERRORBUFFER, ex.curl_error);
    set(CURLOPT_HEADERFUNCTION, &on_header);
    set(CURLOPT_HEADERDATA, static_cast<void *>(&ex));
    set(CURLOPT_WRITEFUNCTION, &on_body);
    set(CURLOPT_WRITEDATA, static_cast<void *>(&ex));
    if (header_list_) set(CURLOPT_HTTPHEADER, header_list_);
    if (!settings_.user.empty() || !settings_.password.empty()) {
        set(CURLOPT_USERNAME, settings_.user.c_str());
        set(CURLOPT_PASSWORD, settings_.password.c_str());
        if (settings_.aws_sigv4.empty()) set(CURLOPT_HTTPAUTH, static_cast<long>(CURLAUTH_BASIC));
    }
    if (!settings_.aws_sigv4.empty()) set(CURLOPT_AWS_SIGV4, settings_.aws_sigv4.c_str());
    set(CURLOPT_SSL_VERIFYPEER, settings_.verify_tls ? 1L : 0L);
    set(CURLOPT_SSL_VERIFYHOST, settings_.verify_tls ? 2L : 0L);
    if (!settings_.ca_file.empty()) set(CURLOPT_CAINFO, settings_.ca_file.c_str());
    if (ex.head) {
        set(CURLOPT_NOBODY, 1L);
    } else {
        const std::string range = std::to_string(ex.start) + "-" + std::to_string(ex.start + ex.len - 1);
        set(CURLOPT_RANGE, range.c_str()); // copied by libcurl
    }
}

void Client::perform(Exchange &ex) {
    ex.name = &name_;
    Lease lease(*this);
    setup(lease.get(), ex);
    ex.result = curl_easy_perform(lease.get());
    // A body that never started (HEAD, an empty 206) is judged here.
    if (ex.result == CURLE_OK && !ex.head && ex.buf && !ex.started && ex.success() && ex.len > 0) {
        ex.started = true;
        accept_body(ex, name_);
    }
}

namespace {

// Whether a failed exchange may succeed when tried again.
bool transient(CURLcode rc) {
    switch (rc) {
    case CURLE_COULDNT_CONNECT:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
    case CURLE_SSL_CONNECT_ERROR:
        return true;
    default:
        return false;
    }
}

bool transient_status(long status) {
    return status == 408 || status == 429 || (status >= 500 && status <= 599);
}

} // namespace

// What went wrong, as one phrase.
static std::string what_happened(const Client::Exchange &ex) {
    if (!ex.refused.empty()) return ex.refused;
    if (ex.result != CURLE_OK && ex.result != CURLE_WRITE_ERROR)
        return ex.curl_error[0] ? std::string(ex.curl_error) : std::string(curl_easy_strerror(ex.result));
    if (ex.status && !ex.success()) {
        std::string s = "HTTP " + std::to_string(ex.status) + (ex.reason.empty() ? "" : " " + ex.reason);
        const std::string detail = body_summary(ex.error_body);
        return detail.empty() ? s : s + " (" + detail + ")";
    }
    return ex.curl_error[0] ? std::string(ex.curl_error) : std::string(curl_easy_strerror(ex.result));
}

void Client::fail(const Exchange &ex, const std::string &what, unsigned attempts) const {
    uint32_t code = ex.refused_code != VDKIT_OK ? ex.refused_code : VDKIT_E_IO;
    if (ex.refused_code == VDKIT_OK && ex.result == CURLE_OK) {
        if (ex.status == 404 || ex.status == 410)
            code = VDKIT_E_NOT_FOUND;
        else if (ex.status == 401 || ex.status == 403)
            code = VDKIT_E_PERMISSION;
        else if (ex.status == 416)
            code = VDKIT_E_OUT_OF_RANGE;
    }
    if (ex.result == CURLE_UNSUPPORTED_PROTOCOL) code = VDKIT_E_NOT_SUPPORTED;
    std::string msg = what_happened(ex);
    if (!ex.refused.empty() && ex.refused.rfind(name_, 0) == 0) throw Error(code, msg);
    std::string tries = attempts > 1 ? " after " + std::to_string(attempts) + " attempts" : "";
    throw Error(code, name_ + ": " + what + " failed" + tries + ": " + msg);
}

void Client::back_off(const Exchange &ex, unsigned attempt) const {
    uint64_t delay = settings_.retry_delay_ms;
    for (unsigned i = 1; i < attempt && delay < kMaxDelayMs; ++i)
        delay *= 2;
    delay = std::max<uint64_t>(delay, std::min<uint64_t>(ex.retry_after_s, kMaxDelayMs / 1000) * 1000);
    std::this_thread::sleep_for(std::chrono::milliseconds(std::min(delay, kMaxDelayMs)));
}

bool Client::exists() {
    for (unsigned attempt = 1;; ++attempt) {
        Exchange ex;
        ex.head = true;
        perform(ex);
        if (ex.result == CURLE_OK && ex.success()) return true;
        if (ex.result == CURLE_OK && (ex.status == 404 || ex.status == 410)) return false;
        const bool again = ex.result != CURLE_OK ? transient(ex.result) : transient_status(ex.status);
        if (!again || attempt > settings_.retries) fail(ex, "checking that it exists", attempt);
        back_off(ex, attempt);
    }
}

ObjectInfo Client::probe() {
    // HEAD first (RFC 9110 §9.3.2: the headers a GET would send).
    for (unsigned attempt = 1;; ++attempt) {
        Exchange ex;
        ex.head = true;
        perform(ex);
        if (ex.result == CURLE_OK && ex.success() && ex.content_length) {
            if (ex.ranges_none)
                throw Error(VDKIT_E_NOT_SUPPORTED, name_ + ": the server takes no range requests (Accept-Ranges: "
                                                           "none); vdkit reads remote images only from servers "
                                                           "that send byte ranges");
            if (!ex.content_encoding.empty() && ex.content_encoding != "identity")
                break; // the length is of the encoded body: ask for a range instead
            return ObjectInfo{*ex.content_length, ex.etag};
        }
        if (ex.result == CURLE_OK && (ex.status == 404 || ex.status == 410)) fail(ex, "opening it", attempt);
        if (ex.result == CURLE_OK && ex.success()) break; // no Content-Length: ask for a range
        const bool again = ex.result != CURLE_OK ? transient(ex.result) : transient_status(ex.status);
        if (again && attempt <= settings_.retries) {
            back_off(ex, attempt);
            continue;
        }
        if (ex.result != CURLE_OK) fail(ex, "opening it", attempt);
        break; // 405, 403 (a URL signed for GET only), ...: try a GET
    }
    // GET of byte 0: its Content-Range names the size (RFC 9110 §14.4);
    // an empty object answers 416 with "bytes */0".
    for (unsigned attempt = 1;; ++attempt) {
        Exchange ex;
        unsigned char byte = 0;
        ex.start = 0;
        ex.len = 1;
        ex.buf = &byte;
        perform(ex);
        if (ex.refused_code != VDKIT_OK) fail(ex, "opening it", attempt); // e.g. an encoded body
        if (ex.status == 206 && ex.range_total && (ex.result == CURLE_OK || ex.got == 1))
            return ObjectInfo{*ex.range_total, ex.etag};
        if (ex.status == 416 && ex.range_total && *ex.range_total == 0) return ObjectInfo{0, ex.etag};
        if (ex.status == 200 && ex.result == CURLE_OK && ex.content_length && *ex.content_length <= 1)
            return ObjectInfo{*ex.content_length, ex.etag}; // the whole of a one-byte object
        if (ex.status == 200)
            throw Error(VDKIT_E_NOT_SUPPORTED, name_ + ": the server ignores range requests (it answered a request "
                                                       "for byte 0 with the whole file, status 200); vdkit reads "
                                                       "remote images only from servers that send byte ranges");
        if (ex.status == 206)
            throw Error(VDKIT_E_IO, name_ + ": the server answered a range request without the file's size "
                                            "(Content-Range: bytes 0-0/*), and answers HEAD without Content-Length");
        const bool again = ex.result != CURLE_OK && ex.result != CURLE_WRITE_ERROR ? transient(ex.result)
                                                                                   : transient_status(ex.status);
        if (!again || attempt > settings_.retries) fail(ex, "opening it", attempt);
        back_off(ex, attempt);
    }
}

void Client::read(uint64_t off, void *buf, uint64_t len, const ObjectInfo &expect) {
    // A large read is split into ranges fetched at once over several
    // connections: formats whose reads the host serialises (VMDK, VDI)
    // still get parallel transfers for their big blocks.
    const uint64_t parts = std::min<uint64_t>(settings_.connections, len / kMinPart);
    if (parts <= 1) return read_range(off, buf, len, expect);
    const uint64_t step = (len / parts + 4095) / 4096 * 4096;
    std::vector<std::exception_ptr> errors(parts);
    std::vector<std::thread> helpers;
    auto part = [&](uint64_t i) {
        const uint64_t a = i * step, b = std::min(len, a + step);
        if (a >= b) return;
        try {
            read_range(off + a, static_cast<unsigned char *>(buf) + a, b - a, expect);
        } catch (...) {
            errors[i] = std::current_exception();
        }
    };
    try {
        for (uint64_t i = 1; i < parts; ++i)
            helpers.emplace_back(part, i);
    } catch (...) { // no thread: the rest in this one
        for (uint64_t i = helpers.size() + 1; i < parts; ++i)
            part(i);
    }
    part(0);
    for (std::thread &t : helpers)
        t.join();
    for (const std::exception_ptr &e : errors)
        if (e) std::rethrow_exception(e);
}

void Client::read_range(uint64_t off, void *buf, uint64_t len, const ObjectInfo &expect) {
    auto *out = static_cast<unsigned char *>(buf);
    uint64_t done = 0;
    unsigned attempt = 0;
    while (done < len) {
        Exchange ex;
        ex.start = off + done;
        ex.len = len - done;
        ex.whole = ex.start == 0 && ex.len == expect.size;
        ex.buf = out + done;
        ex.expect = &expect;
        perform(ex);
        done += ex.got; // stored only after the response proved to be this range
        if (ex.refused_code != VDKIT_OK) fail(ex, "reading", attempt + 1);
        ++attempt;
        if (ex.result == CURLE_OK && ex.success()) {
            // A 206 may carry less than asked (RFC 9110 §14.2): ask for the
            // rest. A body shorter than its own Content-Range is a failure.
            const bool short_body = ex.range_end && ex.got < *ex.range_end - ex.start + 1;
            if (ex.got > 0 && !short_body) {
                attempt = 0;
                continue;
            }
            if (done >= len) break;
            if (attempt > settings_.retries) {
                ex.refused = "the server sent " + std::to_string(ex.got) + " bytes of the range asked for";
                fail(ex, "reading " + std::to_string(len) + " bytes at offset " + hex(off), attempt);
            }
            back_off(ex, attempt);
            continue;
        }
        const bool again = ex.result != CURLE_OK ? transient(ex.result) : transient_status(ex.status);
        if (!again || attempt > settings_.retries)
            fail(ex, "reading " + std::to_string(len) + " bytes at offset " + hex(off), attempt);
        if (ex.got > 0) attempt = 0; // progress: the next failure starts its own count
        back_off(ex, attempt == 0 ? 1 : attempt);
    }
}

} // namespace vdkit::http
