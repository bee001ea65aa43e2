// AES-XTS through OpenSSL EVP (IEEE 1619 / NIST SP 800-38E), as dm-crypt's
// "plain64" and VirtualBox's CRYPT filter use it: the data unit is one
// 512-byte sector, the tweak its number as a 64-bit little-endian integer
// followed by 8 zero bytes (../shared/reference/formats.md §6.1, §6.2;
// virtualbox-vd.md §4.2). OpenSSL 3 refuses keys whose two halves are
// equal (formats.md §8.6), so IEEE vector 1 cannot run here.
#ifndef VDKIT_CRYPT_XTS_HPP
#define VDKIT_CRYPT_XTS_HPP

#include <cstddef>
#include <cstdint>
#include <string>

typedef struct evp_cipher_ctx_st EVP_CIPHER_CTX;

namespace vdkit::crypt {

inline constexpr size_t kSector = 512;

// One XTS key (32 bytes: AES-128-XTS; 64: AES-256-XTS), its schedule made
// once. Thread-safe: every call works on its own copy of the schedule.
// Errors throw std::runtime_error (no key material in the text).
class Xts {
public:
    Xts(const uint8_t *key, size_t key_len);
    ~Xts();
    Xts(const Xts &) = delete;
    Xts &operator=(const Xts &) = delete;

    // Transform len bytes (a multiple of 512) in place: sector i of the
    // buffer is data unit first_sector + i.
    void sectors(uint64_t first_sector, uint8_t *data, size_t len, bool encrypt) const;
    // One data unit of any length >= 16 with an explicit 16-byte tweak
    // (test vectors, VirtualBox's key wrapping with a zero tweak).
    void unit(const uint8_t tweak[16], const uint8_t *in, uint8_t *out, size_t len, bool encrypt) const;

private:
    EVP_CIPHER_CTX *enc_ = nullptr, *dec_ = nullptr;
};

// PBKDF2-HMAC-<hash> (hash: "SHA1", "SHA256", "SHA512"); throws on failure.
void pbkdf2(const std::string &hash, const uint8_t *password, size_t password_len, const uint8_t *salt, size_t salt_len,
            uint32_t iterations, uint8_t *out, size_t out_len);

} // namespace vdkit::crypt

#endif
