// The `http`, `https` and `s3` transports: disk images read from web servers
// and S3-compatible object stores, read-only, through libcurl (client.hpp).
//
// One library, three transport plugins: the core picks a transport by the
// location's scheme, so http://, https:// and s3:// each need a plugin of
// that name. http and https are the same code with the same keys; s3 maps
// s3://bucket/key onto an endpoint URL and signs every request with AWS
// Signature Version 4 (libcurl's CURLOPT_AWS_SIGV4).
//
// Files an image names (VMDK extents, parents) are resolved by the host
// against the image's own URL (core/src/io/paths.cpp), so they are read
// through the same transport and never from the local disk.
#include "client.hpp"

#include <cctype>
#include <cstdlib>
#include <memory>

using namespace vdkit;
using sdk::Context;
using sdk::Error;

namespace {

enum class Kind { http, s3 };

std::string getenv_or(const char *name, std::string fallback = {}) {
    const char *v = std::getenv(name);
    return v && *v ? std::string(v) : fallback;
}

// Keys both kinds share (timeouts, retries, connections, TLS).
void common_settings(Context &ctx, http::Settings &s) {
    s.connect_timeout_s = ctx.config_uint("connect_timeout").value_or(s.connect_timeout_s);
    s.timeout_s = ctx.config_uint("timeout").value_or(s.timeout_s);
    s.retries = ctx.config_uint("retries").value_or(s.retries);
    s.retry_delay_ms = ctx.config_uint("retry_delay").value_or(s.retry_delay_ms);
    s.connections = ctx.config_uint("connections").value_or(s.connections);
    s.verify_tls = ctx.config_bool("verify_tls").value_or(true);
    s.ca_file = ctx.config("ca_file").value_or("");
    // "Name: value" lines; a header value never holds a line break.
    const std::string headers = ctx.config("headers").value_or("");
    size_t pos = 0;
    while (pos <= headers.size()) {
        size_t nl = headers.find('\n', pos);
        if (nl == std::string::npos) nl = headers.size();
        std::string line = headers.substr(pos, nl - pos);
        while (!line.empty() && (line.back() == '\r' || line.back() == ' '))
            line.pop_back();
        if (!line.empty()) {
            if (line.find(':') == std::string::npos || line.front() == ':')
                throw Error(VDKIT_E_CONFIG, "option 'headers': each line must be 'Name: value' (a line without a "
                                            "colon was given)");
            s.headers.push_back(line);
        }
        pos = nl + 1;
    }
}

// s3://bucket/key as an endpoint URL. AWS's own endpoint takes the bucket in
// the host name (virtual-hosted style); other endpoints (MinIO, Ceph, local
// stand-ins) get path-style URLs, endpoint/bucket/key, unless path_style is
// set to false.
struct S3Target {
    std::string url;
    std::string region;
};

// A key segment as SigV4 canonicalises it: unreserved characters as they
// are, '/' kept, everything else %XX (AWS Signature Version 4, "Create a
// canonical request": URI-encode each path segment).
std::string s3_encode(std::string_view key) {
    static const char *const digits = "0123456789ABCDEF";
    std::string out;
    for (unsigned char c : key) {
        if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~' || c == '/') {
            out += static_cast<char>(c);
        } else {
            out += '%';
            out += digits[c >> 4];
            out += digits[c & 15];
        }
    }
    return out;
}

S3Target s3_target(Context &ctx, const std::string &location) {
    const std::string rest = location.substr(location.find("://") + 3);
    const size_t slash = rest.find('/');
    const std::string bucket = rest.substr(0, slash);
    const std::string key = slash == std::string::npos ? std::string() : rest.substr(slash + 1);
    bool bucket_ok = bucket.size() >= 3 && bucket.size() <= 63;
    for (char c : bucket)
        bucket_ok = bucket_ok && ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.');
    if (!bucket_ok)
        throw Error(VDKIT_E_INVALID_ARGUMENT,
                    location + ": '" + bucket + "' is not an S3 bucket name (3 to 63 characters: a-z, 0-9, '-', '.')");
    if (key.empty() || key.back() == '/')
        throw Error(VDKIT_E_INVALID_ARGUMENT, location + ": names no object (s3://bucket/key)");
    S3Target t;
    t.region = ctx.config("region").value_or("");
    if (t.region.empty()) t.region = getenv_or("AWS_REGION", getenv_or("AWS_DEFAULT_REGION", "us-east-1"));
    std::string endpoint = ctx.config("endpoint").value_or("");
    if (endpoint.empty()) endpoint = getenv_or("AWS_ENDPOINT_URL");
    while (!endpoint.empty() && endpoint.back() == '/')
        endpoint.pop_back();
    const bool aws = endpoint.empty();
    if (aws) endpoint = "https://s3." + t.region + ".amazonaws.com";
    const size_t scheme = endpoint.find("://");
    if (scheme == std::string::npos ||
        (endpoint.compare(0, scheme, "http") != 0 && endpoint.compare(0, scheme, "https") != 0))
        throw Error(VDKIT_E_CONFIG, "option 'endpoint': must be an http:// or https:// URL (got '" + endpoint + "')");
    const bool path_style = ctx.config_bool("path_style").value_or(!aws || bucket.find('.') != std::string::npos);
    if (path_style) {
        t.url = endpoint + "/" + bucket + "/" + s3_encode(key);
    } else {
        t.url = endpoint.substr(0, scheme + 3) + bucket + "." + endpoint.substr(scheme + 3) + "/" + s3_encode(key);
    }
    return t;
}

std::unique_ptr<http::Client> make_client(Context &ctx, Kind kind, std::string_view location_view) {
    const std::string location(location_view);
    http::Settings s;
    common_settings(ctx, s);
    if (kind == Kind::http) {
        s.user = ctx.config("user").value_or("");
        s.password = ctx.config("password").value_or("");
        return std::make_unique<http::Client>(http::redact(location), location, std::move(s));
    }
    S3Target t = s3_target(ctx, location);
    s.user = ctx.config("access_key").value_or("");
    s.password = ctx.config("secret_key").value_or("");
    std::string token = ctx.config("session_token").value_or("");
    if (s.user.empty() && s.password.empty()) {
        s.user = getenv_or("AWS_ACCESS_KEY_ID");
        s.password = getenv_or("AWS_SECRET_ACCESS_KEY");
        if (token.empty()) token = getenv_or("AWS_SESSION_TOKEN");
    }
    if (s.user.empty() != s.password.empty())
        throw Error(VDKIT_E_CONFIG, location + ": an S3 access key needs its secret key (set both access_key and "
                                               "secret_key, or neither for a public object)");
    if (!s.user.empty()) {
        s.aws_sigv4 = "aws:amz:" + t.region + ":s3";
        // The hash of the (empty) payload of a GET or HEAD, which S3 wants
        // in its own header.
        s.headers.push_back("x-amz-content-sha256: e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
        if (!token.empty()) s.headers.push_back("x-amz-security-token: " + token);
    }
    return std::make_unique<http::Client>(location, t.url, std::move(s));
}

[[noreturn]] void read_only(std::string_view location, const char *what) {
    throw Error(VDKIT_E_READ_ONLY, std::string(location) + ": cannot " + what +
                                       ": remote images (http, https, s3) are read-only; convert it to a local file "
                                       "to change it");
}

template <Kind K> class RemoteHandle {
public:
    static std::unique_ptr<RemoteHandle> open(Context &ctx, std::string_view location, uint32_t flags) {
        if (flags & (VDKIT_OPEN_WRITE | VDKIT_OPEN_CREATE))
            read_only(K == Kind::http ? http::redact(std::string(location)) : std::string(location),
                      flags & VDKIT_OPEN_CREATE ? "create it" : "open it for writing");
        auto h = std::make_unique<RemoteHandle>();
        h->client_ = make_client(ctx, K, location);
        h->object_ = h->client_->probe();
        return h;
    }

    void pread(Context &, uint64_t off, void *buf, uint64_t len) {
        if (len == 0) return;
        if (off > object_.size || len > object_.size - off)
            throw Error(VDKIT_E_OUT_OF_RANGE, client_->name() + ": read of " + std::to_string(len) +
                                                  " bytes at offset " + std::to_string(off) +
                                                  " is beyond the end of the file (" + std::to_string(object_.size) +
                                                  " bytes)");
        client_->read(off, buf, len, object_);
    }
    uint64_t size(Context &) { return object_.size; }
    void flush(Context &) {} // nothing is ever written

    void pwrite(Context &, uint64_t, const void *, uint64_t) { read_only(client_->name(), "write to it"); }
    void truncate(Context &, uint64_t) { read_only(client_->name(), "resize it"); }
    void discard(Context &, uint64_t, uint64_t) { read_only(client_->name(), "discard in it"); }
    void zero(Context &, uint64_t, uint64_t) { read_only(client_->name(), "write zeros to it"); }

    static void remove(Context &, std::string_view location) { read_only(location, "remove it"); }
    static void rename(Context &, std::string_view from, std::string_view) { read_only(from, "rename it"); }
    static bool exists(Context &ctx, std::string_view location) { return make_client(ctx, K, location)->exists(); }

private:
    std::unique_ptr<http::Client> client_;
    http::ObjectInfo object_;
};

#define VDKIT_HTTP_COMMON_KEYS                                                                                         \
    sdk::key("connect_timeout", VDKIT_KEY_UINT, "10", "Seconds to wait for a connection, per attempt.", 0, {}, 1,      \
             3600),                                                                                                    \
        sdk::key("timeout", VDKIT_KEY_UINT, "60",                                                                      \
                 "Seconds one request may take in all, per attempt; a dead or stalled server fails after at most "     \
                 "(retries + 1) times this, plus the back-off.",                                                       \
                 0, {}, 1, 86400),                                                                                     \
        sdk::key("retries", VDKIT_KEY_UINT, "5",                                                                       \
                 "Further attempts after a transient failure (connection refused or reset, timeout, short body, "      \
                 "HTTP 408, 429, 5xx); 0 fails at the first.",                                                         \
                 0, {}, 0, 100),                                                                                       \
        sdk::key("retry_delay", VDKIT_KEY_UINT, "100",                                                                 \
                 "Milliseconds before the first retry; each further retry waits twice as long (at most 10 s, or "      \
                 "the server's Retry-After up to 10 s).",                                                              \
                 0, {}, 0, 10000),                                                                                     \
        sdk::key("connections", VDKIT_KEY_UINT, "4",                                                                   \
                 "Requests in flight at once per opened file (convert's workers read in parallel).", 0, {}, 1, 64),    \
        sdk::key("headers", VDKIT_KEY_STRING, "",                                                                      \
                 "Extra request headers, one 'Name: value' per line (e.g. an Authorization token).",                   \
                 VDKIT_KEY_SECRET),                                                                                    \
        sdk::key("verify_tls", VDKIT_KEY_BOOL, "true", "Verify the server's TLS certificate and host name (https).",   \
                 VDKIT_KEY_EXPERT),                                                                                    \
        sdk::key("ca_file", VDKIT_KEY_STRING, "", "PEM file of the certificate authorities to trust (https).")

constexpr vdkit_config_key kHttpKeys[] = {
    VDKIT_HTTP_COMMON_KEYS,
    sdk::key("user", VDKIT_KEY_STRING, "", "User name for HTTP basic authentication.", VDKIT_KEY_SECRET),
    sdk::key("password", VDKIT_KEY_STRING, "", "Password for HTTP basic authentication.", VDKIT_KEY_SECRET),
};

constexpr vdkit_config_key kS3Keys[] = {
    VDKIT_HTTP_COMMON_KEYS,
    sdk::key("endpoint", VDKIT_KEY_STRING, "",
             "Endpoint URL of an S3-compatible store (http://host:port); empty: AWS (https://s3.REGION.amazonaws.com) "
             "or $AWS_ENDPOINT_URL."),
    sdk::key("region", VDKIT_KEY_STRING, "",
             "Region for signing; empty: $AWS_REGION, $AWS_DEFAULT_REGION or us-east-1."),
    sdk::key("path_style", VDKIT_KEY_BOOL, "",
             "Path-style URLs (endpoint/bucket/key); default: yes for a custom endpoint, no for AWS."),
    sdk::key("access_key", VDKIT_KEY_STRING, "", "Access key id; empty: $AWS_ACCESS_KEY_ID (none: unsigned requests).",
             VDKIT_KEY_SECRET),
    sdk::key("secret_key", VDKIT_KEY_STRING, "", "Secret access key; empty: $AWS_SECRET_ACCESS_KEY.", VDKIT_KEY_SECRET),
    sdk::key("session_token", VDKIT_KEY_STRING, "",
             "Session token of temporary credentials; empty: $AWS_SESSION_TOKEN.", VDKIT_KEY_SECRET),
};

constexpr uint64_t kCaps = VDKIT_CAP_THREAD_SAFE;

const vdkit_plugin_descriptor *http_transport() {
    static const vdkit_plugin_descriptor d =
        sdk::describe(VDKIT_KIND_TRANSPORT,
                      sdk::DescriptorSpec{"http", "1.0.0", "Images on web servers (http://, read-only; range requests)",
                                          kCaps, kHttpKeys, static_cast<uint32_t>(std::size(kHttpKeys)), nullptr, 0},
                      sdk::transport_ops<RemoteHandle<Kind::http>>());
    return &d;
}

const vdkit_plugin_descriptor *https_transport() {
    static const vdkit_plugin_descriptor d = sdk::describe(
        VDKIT_KIND_TRANSPORT,
        sdk::DescriptorSpec{"https", "1.0.0", "Images on web servers over TLS (https://, read-only; range requests)",
                            kCaps, kHttpKeys, static_cast<uint32_t>(std::size(kHttpKeys)), nullptr, 0},
        sdk::transport_ops<RemoteHandle<Kind::http>>());
    return &d;
}

const vdkit_plugin_descriptor *s3_transport() {
    static const vdkit_plugin_descriptor d = sdk::describe(
        VDKIT_KIND_TRANSPORT,
        sdk::DescriptorSpec{"s3", "1.0.0",
                            "Images in S3-compatible object stores (s3://bucket/key, read-only; AWS SigV4)", kCaps,
                            kS3Keys, static_cast<uint32_t>(std::size(kS3Keys)), nullptr, 0},
        sdk::transport_ops<RemoteHandle<Kind::s3>>());
    return &d;
}

} // namespace

VDKIT_SDK_ENTRY(http_transport(), https_transport(), s3_transport())
