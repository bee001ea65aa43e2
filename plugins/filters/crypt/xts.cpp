#include "xts.hpp"

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <cstring>
#include <memory>
#include <stdexcept>

namespace vdkit::crypt {

namespace {

struct CtxFree {
    void operator()(EVP_CIPHER_CTX *c) const noexcept { EVP_CIPHER_CTX_free(c); }
};
using CtxPtr = std::unique_ptr<EVP_CIPHER_CTX, CtxFree>;

EVP_CIPHER_CTX *keyed(const EVP_CIPHER *cipher, const uint8_t *key, int enc) {
    CtxPtr c(EVP_CIPHER_CTX_new());
    if (!c || EVP_CipherInit_ex(c.get(), cipher, nullptr, key, nullptr, enc) != 1)
        throw std::runtime_error("OpenSSL refused the AES-XTS key (its two halves must differ)");
    return c.release();
}

CtxPtr copy_of(EVP_CIPHER_CTX *tmpl) {
    CtxPtr c(EVP_CIPHER_CTX_new());
    if (!c || EVP_CIPHER_CTX_copy(c.get(), tmpl) != 1)
        throw std::runtime_error("OpenSSL could not copy an XTS context");
    return c;
}

void run(EVP_CIPHER_CTX *c, const uint8_t tweak[16], const uint8_t *in, uint8_t *out, size_t len) {
    int outl = 0;
    if (EVP_CipherInit_ex(c, nullptr, nullptr, nullptr, tweak, -1) != 1 ||
        EVP_CipherUpdate(c, out, &outl, in, static_cast<int>(len)) != 1 || static_cast<size_t>(outl) != len)
        throw std::runtime_error("AES-XTS failed on a data unit");
}

} // namespace

Xts::Xts(const uint8_t *key, size_t key_len) {
    const EVP_CIPHER *cipher = key_len == 32 ? EVP_aes_128_xts() : key_len == 64 ? EVP_aes_256_xts() : nullptr;
    if (!cipher) throw std::runtime_error("an AES-XTS key is 32 or 64 bytes, not " + std::to_string(key_len));
    enc_ = keyed(cipher, key, 1);
    try {
        dec_ = keyed(cipher, key, 0);
    } catch (...) {
        EVP_CIPHER_CTX_free(enc_);
        throw;
    }
}

// EVP_CIPHER_CTX_free wipes the key schedule (OPENSSL_cleanse in the provider).
Xts::~Xts() {
    EVP_CIPHER_CTX_free(enc_);
    EVP_CIPHER_CTX_free(dec_);
}

void Xts::sectors(uint64_t first_sector, uint8_t *data, size_t len, bool encrypt) const {
    if (len % kSector) throw std::runtime_error("AES-XTS works on whole 512-byte sectors");
    CtxPtr c = copy_of(encrypt ? enc_ : dec_);
    uint8_t tweak[16] = {};
    for (size_t off = 0; off < len; off += kSector) {
        const uint64_t n = first_sector + off / kSector;
        for (int i = 0; i < 8; ++i)
            tweak[i] = static_cast<uint8_t>(n >> (8 * i)); // plain64: LE64 ‖ 0^8
        run(c.get(), tweak, data + off, data + off, kSector);
    }
}

void Xts::unit(const uint8_t tweak[16], const uint8_t *in, uint8_t *out, size_t len, bool encrypt) const {
    if (len < 16) throw std::runtime_error("an AES-XTS data unit is at least 16 bytes");
    CtxPtr c = copy_of(encrypt ? enc_ : dec_);
    run(c.get(), tweak, in, out, len);
}

void pbkdf2(const std::string &hash, const uint8_t *password, size_t password_len, const uint8_t *salt, size_t salt_len,
            uint32_t iterations, uint8_t *out, size_t out_len) {
    const EVP_MD *md = hash == "SHA1"     ? EVP_sha1()
                       : hash == "SHA256" ? EVP_sha256()
                       : hash == "SHA512" ? EVP_sha512()
                                          : nullptr;
    if (!md) throw std::runtime_error("unknown PBKDF2 hash '" + hash + "'");
    if (iterations == 0 || iterations > 0x7fffffffu) throw std::runtime_error("PBKDF2 iteration count out of range");
    // An empty password is passed as a non-null pointer (OpenSSL wants one).
    static const char empty = 0;
    if (PKCS5_PBKDF2_HMAC(password_len ? reinterpret_cast<const char *>(password) : &empty,
                          static_cast<int>(password_len), salt, static_cast<int>(salt_len),
                          static_cast<int>(iterations), md, static_cast<int>(out_len), out) != 1)
        throw std::runtime_error("PBKDF2 failed");
}

} // namespace vdkit::crypt
