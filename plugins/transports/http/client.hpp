// The HTTP client under the `http`, `https` and `s3` transports: ranged GETs
// and size probes over a pool of libcurl easy handles, with retries.
//
// Thread safety: one Client serves any number of threads at once. A libcurl
// easy handle is not thread-safe, so each request takes a handle from the
// pool for its whole duration (at most `connections` handles exist; a
// request waits for a free one) and gives it back after; the handles keep
// their connections open between requests.
//
// Errors: every failure throws sdk::Error naming the location (never a
// credential: user:password@ in a URL and the secret keys stay out of every
// message).
#ifndef VDKIT_HTTP_CLIENT_HPP
#define VDKIT_HTTP_CLIENT_HPP

#include "vdkit/plugin.hpp"

#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

typedef void CURL;
struct curl_slist;

namespace vdkit::http {

// What one client does; filled from the plugin's config keys at open.
struct Settings {
    uint64_t connect_timeout_s = 10;  // connecting, per attempt
    uint64_t timeout_s = 60;          // one whole request, per attempt
    uint64_t retries = 5;             // further attempts after a transient failure
    uint64_t retry_delay_ms = 100;    // first back-off; doubles per attempt, at most kMaxDelayMs
    uint64_t connections = 4;         // easy handles (parallel requests)
    std::vector<std::string> headers; // "Name: value"
    std::string user, password;       // basic auth (http) or the access and secret key (s3)
    bool verify_tls = true;
    std::string ca_file;
    std::string aws_sigv4; // CURLOPT_AWS_SIGV4 ("aws:amz:REGION:s3"); empty: unsigned
};

inline constexpr uint64_t kMaxDelayMs = 10000;

// The size and identity of a remote object, from its size probe.
struct ObjectInfo {
    uint64_t size = 0;
    std::string etag; // empty: the server sends none
};

class Client {
public:
    // name: the location as the user wrote it (messages name it); url: what
    // is requested (the same for http, the endpoint URL for s3).
    Client(std::string name, std::string url, Settings settings);
    ~Client();
    Client(const Client &) = delete;
    Client &operator=(const Client &) = delete;

    // HEAD, and where the server answers HEAD badly (an error status, no
    // Content-Length) a GET of byte 0 whose Content-Range gives the size.
    // Refuses a server that says it takes no range requests.
    ObjectInfo probe();
    // HEAD only: true on 2xx, false on 404; anything else throws.
    bool exists();
    // Exactly len bytes at off (off + len <= the probed size). Every byte
    // comes from a response that names its range (206 with Content-Range),
    // or from a 200 only when [off, off+len) is the whole object; a server
    // that ignores Range otherwise is refused (VDKIT_E_NOT_SUPPORTED).
    // Transient failures (connection errors, timeouts, 408/429/5xx, short
    // bodies) are retried with exponential back-off; bytes that did arrive
    // are kept, and only the rest is asked for again.
    // Reads of at least 2 * kMinPart bytes are split into up to `connections`
    // ranges fetched in parallel (each with its own retries).
    void read(uint64_t off, void *buf, uint64_t len, const ObjectInfo &expect);
    static constexpr uint64_t kMinPart = 128 * 1024;

    const std::string &name() const { return name_; }

    struct Exchange; // one request and its response (client.cpp)

private:
    class Lease;
    CURL *take();
    void give(CURL *h);
    void setup(CURL *h, Exchange &ex) const;
    void perform(Exchange &ex);
    void read_range(uint64_t off, void *buf, uint64_t len, const ObjectInfo &expect);
    [[noreturn]] void fail(const Exchange &ex, const std::string &what, unsigned attempts) const;
    void back_off(const Exchange &ex, unsigned attempt) const;

    std::string name_, url_;
    Settings settings_;
    curl_slist *header_list_ = nullptr;
    std::mutex mutex_;
    std::condition_variable free_;
    std::vector<CURL *> idle_;
    uint64_t created_ = 0;
};

// A URL with any user:password@ removed, for messages.
std::string redact(const std::string &url);
// Bytes a URL may not hold as they are (space, controls, non-ASCII, "<>\^`{|})
// percent-encoded; '%' and every reserved character are kept.
std::string encode_url(const std::string &url);

} // namespace vdkit::http

#endif
