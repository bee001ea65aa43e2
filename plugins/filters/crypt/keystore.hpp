// VirtualBox's disk-encryption key store, version 1 (VDKeyStore.cpp;
// ../shared/reference/virtualbox-vd.md §4.3, formats.md §6.3): a packed,
// little-endian, 250-byte struct, kept base64-encoded. It holds the data
// encryption key (DEK) wrapped with a key derived from the password
// (PBKDF2), and a PBKDF2 digest of the DEK that tells a wrong password.
#ifndef VDKIT_CRYPT_KEYSTORE_HPP
#define VDKIT_CRYPT_KEYSTORE_HPP

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace vdkit::crypt {

// Bytes that hold a secret: locked in memory where the system allows and
// wiped (OPENSSL_cleanse) when freed. Not copyable.
class Secret {
public:
    explicit Secret(size_t n = 0);
    ~Secret();
    Secret(Secret &&other) noexcept;
    Secret &operator=(Secret &&other) noexcept;
    Secret(const Secret &) = delete;
    Secret &operator=(const Secret &) = delete;
    uint8_t *data() noexcept { return p_; }
    const uint8_t *data() const noexcept { return p_; }
    size_t size() const noexcept { return n_; }
    void resize(size_t n); // keeps the first min(n, size()) bytes

private:
    void release() noexcept;
    uint8_t *p_ = nullptr;
    size_t n_ = 0;
};

// The password did not unwrap the key (the digest does not match).
struct WrongPassword : std::runtime_error {
    using std::runtime_error::runtime_error;
};
// A key store that is not one (bad base64, magic, version, field out of range).
struct BadKeyStore : std::runtime_error {
    using std::runtime_error::runtime_error;
};

inline constexpr size_t kKeyStoreSize = 250;
inline constexpr uint32_t kDigestIterations = 20000;  // VirtualBox's fixed count
inline constexpr uint32_t kMinIterations = 20000;     // VirtualBox's minimum for the password KDF
inline constexpr uint32_t kMaxIterations = 100000000; // bound on an untrusted count (CPU time)

struct KeyStore {
    std::string cipher;      // "AES-XTS128-PLAIN64" or "AES-XTS256-PLAIN64"
    std::string kdf;         // "PBKDF2-SHA1", "PBKDF2-SHA256" or "PBKDF2-SHA512"
    uint32_t key_len = 0;    // cbKey: DEK bytes (32 or 64)
    uint8_t digest[32] = {}; // PBKDF2(DEK, digest_salt, digest_iterations)
    uint32_t digest_len = 0; // cbDekDigest (1..32)
    uint8_t digest_salt[32] = {};
    uint32_t digest_iterations = 0;
    uint8_t dek_salt[32] = {};   // the password KDF's salt
    uint32_t dek_iterations = 0; // the password KDF's count
    uint32_t enc_len = 0;        // cbDekEnc (= key_len)
    uint8_t enc_dek[64] = {};    // XTS(KEK, tweak 0)(DEK)

    // Parse base64 text (whitespace ignored); throws BadKeyStore naming the
    // field and its offset.
    static KeyStore parse(std::string_view base64);
    // The 250 bytes, and their base64 (no line breaks).
    std::vector<uint8_t> bytes() const;
    std::string base64() const;

    // A new store for `dek` (32 or 64 bytes) under `password`: fresh salts,
    // PBKDF2-SHA256, `iterations` for the password KDF (>= kMinIterations).
    static KeyStore make(const Secret &dek, const Secret &password, uint32_t iterations);
    // The DEK; throws WrongPassword when the digest does not match.
    Secret unwrap(const Secret &password) const;
};

// The password KDF's count that takes about `target_ms` on this machine
// (VirtualBox aims at 250 ms), at least kMinIterations.
uint32_t calibrate_iterations(unsigned target_ms);

} // namespace vdkit::crypt

#endif
