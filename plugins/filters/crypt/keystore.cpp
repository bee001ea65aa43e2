#include "keystore.hpp"

#include "xts.hpp"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include <chrono>
#include <cstring>
#include <sys/mman.h>

namespace vdkit::crypt {

// ---- Secret ----

Secret::Secret(size_t n) {
    resize(n);
}
Secret::~Secret() {
    release();
}
Secret::Secret(Secret &&o) noexcept : p_(o.p_), n_(o.n_) {
    o.p_ = nullptr;
    o.n_ = 0;
}
Secret &Secret::operator=(Secret &&o) noexcept {
    if (this != &o) {
        release();
        p_ = o.p_;
        n_ = o.n_;
        o.p_ = nullptr;
        o.n_ = 0;
    }
    return *this;
}
void Secret::resize(size_t n) {
    uint8_t *q = nullptr;
    if (n) {
        q = new uint8_t[n]();
        (void)::mlock(q, n); // best effort: keeps the key out of swap where allowed
        if (p_) std::memcpy(q, p_, std::min(n, n_));
    }
    release();
    p_ = q;
    n_ = n;
}
void Secret::release() noexcept {
    if (!p_) return;
    OPENSSL_cleanse(p_, n_);
    (void)::munlock(p_, n_);
    delete[] p_;
    p_ = nullptr;
    n_ = 0;
}

namespace {

// Field offsets of the packed v1 struct (virtualbox-vd.md §4.3; formats.md §6.3 table).
constexpr size_t kOffMagic = 0, kOffVersion = 4, kOffCipher = 6, kOffKdf = 38, kOffKeyLen = 70, kOffDigest = 74,
                 kOffDigestLen = 106, kOffDigestSalt = 110, kOffDigestIter = 142, kOffDekSalt = 146, kOffDekIter = 178,
                 kOffEncLen = 182, kOffEncDek = 186;
constexpr uint32_t kMagic = 0x454e4353; // "ENCS" read little-endian: bytes 53 43 4E 45
constexpr uint16_t kVersion = 0x0100;

uint32_t le32(const uint8_t *p) {
    return p[0] | p[1] << 8 | p[2] << 16 | static_cast<uint32_t>(p[3]) << 24;
}
void put32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; ++i)
        p[i] = static_cast<uint8_t>(v >> (8 * i));
}

std::string field_text(const uint8_t *p, const char *what, size_t off) {
    const void *nul = std::memchr(p, 0, 32);
    if (!nul)
        throw BadKeyStore(std::string("key store: ") + what + " at offset " + std::to_string(off) +
                          " is not NUL-terminated within its 32 bytes");
    return std::string(reinterpret_cast<const char *>(p), static_cast<const uint8_t *>(nul) - p);
}

std::string kdf_hash(const std::string &kdf) {
    return kdf.substr(7);
} // "PBKDF2-" + hash

size_t key_len_of(const std::string &cipher) {
    return cipher == "AES-XTS128-PLAIN64" ? 32 : cipher == "AES-XTS256-PLAIN64" ? 64 : 0;
}

void random_bytes(uint8_t *p, size_t n) {
    if (RAND_bytes(p, static_cast<int>(n)) != 1) throw std::runtime_error("the system's random generator failed");
}

} // namespace

KeyStore KeyStore::parse(std::string_view text) {
    std::string clean;
    for (char c : text)
        if (!std::isspace(static_cast<unsigned char>(c))) clean += c;
    if (clean.size() % 4 || clean.size() > 4 * ((kKeyStoreSize + 2) / 3) + 4)
        throw BadKeyStore("key store: not the base64 of a " + std::to_string(kKeyStoreSize) +
                          "-byte version 1 store (" + std::to_string(clean.size()) + " characters)");
    std::vector<uint8_t> raw(clean.size() / 4 * 3 + 1);
    const int n = EVP_DecodeBlock(raw.data(), reinterpret_cast<const unsigned char *>(clean.data()),
                                  static_cast<int>(clean.size()));
    if (n < 0) throw BadKeyStore("key store: not valid base64");
    size_t len = static_cast<size_t>(n);
    for (size_t i = clean.size(); i-- > 0 && clean[i] == '=';)
        --len; // EVP_DecodeBlock counts padding
    if (len != kKeyStoreSize)
        throw BadKeyStore("key store: " + std::to_string(len) + " bytes, a version 1 store has " +
                          std::to_string(kKeyStoreSize));
    const uint8_t *p = raw.data();
    if (le32(p + kOffMagic) != kMagic) throw BadKeyStore("key store: no 'ENCS' magic at offset 0");
    const uint16_t version = static_cast<uint16_t>(p[kOffVersion] | p[kOffVersion + 1] << 8);
    if (version != kVersion)
        throw BadKeyStore("key store: version " + std::to_string(version >> 8) + "." + std::to_string(version & 0xff) +
                          " at offset 4 (only 1.0 is read; VirtualBox 7's full-VM store is 2.0)");
    KeyStore ks;
    ks.cipher = field_text(p + kOffCipher, "cipher", kOffCipher);
    ks.kdf = field_text(p + kOffKdf, "key derivation", kOffKdf);
    if (!key_len_of(ks.cipher))
        throw BadKeyStore("key store: cipher '" + ks.cipher +
                          "' at offset 6 is not AES-XTS128-PLAIN64 or AES-XTS256-PLAIN64");
    if (ks.kdf != "PBKDF2-SHA1" && ks.kdf != "PBKDF2-SHA256" && ks.kdf != "PBKDF2-SHA512")
        throw BadKeyStore("key store: key derivation '" + ks.kdf + "' at offset 38 is not PBKDF2-SHA1/-SHA256/-SHA512");
    ks.key_len = le32(p + kOffKeyLen);
    if (ks.key_len != key_len_of(ks.cipher))
        throw BadKeyStore("key store: key size " + std::to_string(ks.key_len) + " at offset 70 does not fit " +
                          ks.cipher);
    std::memcpy(ks.digest, p + kOffDigest, 32);
    ks.digest_len = le32(p + kOffDigestLen);
    if (ks.digest_len == 0 || ks.digest_len > 32)
        throw BadKeyStore("key store: digest size " + std::to_string(ks.digest_len) + " at offset 106 is not 1..32");
    std::memcpy(ks.digest_salt, p + kOffDigestSalt, 32);
    ks.digest_iterations = le32(p + kOffDigestIter);
    std::memcpy(ks.dek_salt, p + kOffDekSalt, 32);
    ks.dek_iterations = le32(p + kOffDekIter);
    for (auto [count, off] :
         {std::pair{ks.digest_iterations, kOffDigestIter}, std::pair{ks.dek_iterations, kOffDekIter}})
        if (count == 0 || count > kMaxIterations)
            throw BadKeyStore("key store: iteration count " + std::to_string(count) + " at offset " +
                              std::to_string(off) + " is not 1.." + std::to_string(kMaxIterations));
    ks.enc_len = le32(p + kOffEncLen);
    if (ks.enc_len != ks.key_len)
        throw BadKeyStore("key store: wrapped key size " + std::to_string(ks.enc_len) +
                          " at offset 182 is not the key size " + std::to_string(ks.key_len));
    std::memcpy(ks.enc_dek, p + kOffEncDek, 64);
    return ks;
}

std::vector<uint8_t> KeyStore::bytes() const {
    std::vector<uint8_t> b(kKeyStoreSize, 0);
    put32(&b[kOffMagic], kMagic);
    b[kOffVersion] = kVersion & 0xff;
    b[kOffVersion + 1] = kVersion >> 8;
    std::memcpy(&b[kOffCipher], cipher.data(), std::min<size_t>(cipher.size(), 31));
    std::memcpy(&b[kOffKdf], kdf.data(), std::min<size_t>(kdf.size(), 31));
    put32(&b[kOffKeyLen], key_len);
    std::memcpy(&b[kOffDigest], digest, 32);
    put32(&b[kOffDigestLen], digest_len);
    std::memcpy(&b[kOffDigestSalt], digest_salt, 32);
    put32(&b[kOffDigestIter], digest_iterations);
    std::memcpy(&b[kOffDekSalt], dek_salt, 32);
    put32(&b[kOffDekIter], dek_iterations);
    put32(&b[kOffEncLen], enc_len);
    std::memcpy(&b[kOffEncDek], enc_dek, 64);
    return b;
}

std::string KeyStore::base64() const {
    const std::vector<uint8_t> b = bytes();
    std::string out(4 * ((b.size() + 2) / 3) + 1, '\0');
    const int n = EVP_EncodeBlock(reinterpret_cast<unsigned char *>(out.data()), b.data(), static_cast<int>(b.size()));
    out.resize(static_cast<size_t>(n));
    return out;
}

KeyStore KeyStore::make(const Secret &dek, const Secret &password, uint32_t iterations) {
    KeyStore ks;
    ks.key_len = static_cast<uint32_t>(dek.size());
    ks.cipher = ks.key_len == 32 ? "AES-XTS128-PLAIN64" : "AES-XTS256-PLAIN64";
    if (key_len_of(ks.cipher) != dek.size()) throw std::runtime_error("a data key is 32 or 64 bytes");
    if (iterations < kMinIterations || iterations > kMaxIterations)
        throw std::runtime_error("the key derivation's iteration count must be " + std::to_string(kMinIterations) +
                                 ".." + std::to_string(kMaxIterations));
    ks.kdf = "PBKDF2-SHA256";
    random_bytes(ks.digest_salt, 32);
    random_bytes(ks.dek_salt, 32);
    ks.digest_len = 32;
    ks.digest_iterations = kDigestIterations;
    ks.dek_iterations = iterations;
    pbkdf2("SHA256", dek.data(), dek.size(), ks.digest_salt, 32, ks.digest_iterations, ks.digest, ks.digest_len);
    Secret kek(ks.key_len);
    pbkdf2("SHA256", password.data(), password.size(), ks.dek_salt, 32, ks.dek_iterations, kek.data(), kek.size());
    static const uint8_t zero_tweak[16] = {};
    Xts(kek.data(), kek.size()).unit(zero_tweak, dek.data(), ks.enc_dek, dek.size(), true);
    ks.enc_len = ks.key_len;
    return ks;
}

Secret KeyStore::unwrap(const Secret &password) const {
    const std::string hash = kdf_hash(kdf);
    Secret kek(key_len);
    pbkdf2(hash, password.data(), password.size(), dek_salt, 32, dek_iterations, kek.data(), kek.size());
    Secret dek(key_len);
    static const uint8_t zero_tweak[16] = {};
    try {
        Xts(kek.data(), kek.size()).unit(zero_tweak, enc_dek, dek.data(), enc_len, false);
    } catch (const std::runtime_error &) {
        // A derived key with equal halves: no password that could be right.
        throw WrongPassword("the password is wrong (it does not unwrap the key store's key)");
    }
    Secret check(digest_len);
    pbkdf2(hash, dek.data(), dek.size(), digest_salt, 32, digest_iterations, check.data(), check.size());
    if (CRYPTO_memcmp(check.data(), digest, digest_len) != 0)
        throw WrongPassword("the password is wrong (it does not unwrap the key store's key)");
    return dek;
}

uint32_t calibrate_iterations(unsigned target_ms) {
    static const uint8_t pw[8] = {}, salt[32] = {};
    uint8_t out[64];
    constexpr uint32_t probe = 10000;
    const auto t0 = std::chrono::steady_clock::now();
    pbkdf2("SHA256", pw, sizeof pw, salt, sizeof salt, probe, out, sizeof out);
    const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    OPENSSL_cleanse(out, sizeof out);
    double want = ms > 0 ? probe * (target_ms / ms) : kMaxIterations;
    if (want > 10000000.0) want = 10000000.0;
    return std::max<uint32_t>(kMinIterations, static_cast<uint32_t>(want));
}

} // namespace vdkit::crypt
