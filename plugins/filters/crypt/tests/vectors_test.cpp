// crypt's AES-XTS against the IEEE P1619/D16 Annex B vectors (as listed in
// ../shared/reference/formats.md §6.1; vector 1 has equal key halves, which
// OpenSSL 3 refuses, §8.6), and the key store's own round trip and refusals.
// Exit 0: all passed; 1: a check failed (each failure printed).
#include "keystore.hpp"
#include "xts.hpp"

#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

using namespace vdkit::crypt;

namespace {

int failures = 0;

void check(bool ok, const std::string &what) {
    std::printf("%s: %s\n", ok ? "ok" : "FAIL", what.c_str());
    if (!ok) ++failures;
}

std::vector<uint8_t> hex(const std::string &h) {
    std::vector<uint8_t> out;
    for (size_t i = 0; i + 1 < h.size(); i += 2)
        out.push_back(static_cast<uint8_t>(std::stoul(h.substr(i, 2), nullptr, 16)));
    return out;
}

std::string to_hex(const uint8_t *p, size_t n) {
    std::string s;
    char b[3];
    for (size_t i = 0; i < n; ++i) {
        std::snprintf(b, sizeof b, "%02x", p[i]);
        s += b;
    }
    return s;
}

std::vector<uint8_t> twice_00_ff() {
    std::vector<uint8_t> v(512);
    for (size_t i = 0; i < 512; ++i)
        v[i] = static_cast<uint8_t>(i & 0xff);
    return v;
}

// A 32-byte data unit with tweak = LE(0x3333333333) (vectors 2 and 3).
void short_unit(const char *name, const std::string &key, const std::string &expect) {
    const auto k = hex(key);
    Xts x(k.data(), k.size());
    uint8_t tweak[16] = {0x33, 0x33, 0x33, 0x33, 0x33};
    std::vector<uint8_t> pt(32, 0x44), ct(32), back(32);
    x.unit(tweak, pt.data(), ct.data(), 32, true);
    check(to_hex(ct.data(), 32) == expect, std::string(name) + " encrypts to the published ciphertext");
    x.unit(tweak, ct.data(), back.data(), 32, false);
    check(back == pt, std::string(name) + " decrypts back");
}

} // namespace

int main() {
    short_unit("IEEE 1619 vector 2", std::string(32, '1') + std::string(32, '2'),
               "c454185e6a16936e39334038acef838bfb186fff7480adc4289382ecd6d394f0");
    short_unit("IEEE 1619 vector 3", "fffefdfcfbfaf9f8f7f6f5f4f3f2f1f0" + std::string(32, '2'),
               "af85336b597afc1a900b2eb21ec949d292df4c047e0b21532186a5971a227a89");

    // Vectors 4 and 5: 512-byte sectors 0 and 1 through the plain64 path.
    const auto k4 = hex("2718281828459045235360287471352631415926535897932384626433832795");
    Xts x4(k4.data(), k4.size());
    auto s0 = twice_00_ff();
    x4.sectors(0, s0.data(), s0.size(), true);
    check(to_hex(s0.data(), 32) == "27a7479befa1d476489f308cd4cfa6e2a96e4bbe3208ff25287dd3819616e89c",
          "IEEE 1619 vector 4 (sector 0)");
    auto s1 = s0;
    x4.sectors(1, s1.data(), s1.size(), true);
    check(to_hex(s1.data(), 16) == "264d3ca8512194fec312c8c9891f279f", "IEEE 1619 vector 5 (sector 1)");
    x4.sectors(1, s1.data(), s1.size(), false);
    check(s1 == s0, "vector 5 decrypts back to vector 4's ciphertext");
    // Two sectors in one call number them first, first+1.
    std::vector<uint8_t> two = twice_00_ff();
    two.insert(two.end(), s0.begin(), s0.end());
    x4.sectors(0, two.data(), two.size(), true);
    check(std::memcmp(two.data(), s0.data(), 512) == 0 &&
              to_hex(two.data() + 512, 16) == "264d3ca8512194fec312c8c9891f279f",
          "a two-sector call uses tweaks 0 and 1");

    // Vector 10 (formats.md #6): AES-256-XTS, data unit 0xff.
    const auto k6 = hex("2718281828459045235360287471352662497757247093699959574966967627"
                        "3141592653589793238462643383279502884197169399375105820974944592");
    Xts x6(k6.data(), k6.size());
    auto s6 = twice_00_ff();
    x6.sectors(0xff, s6.data(), s6.size(), true);
    check(to_hex(s6.data(), 16) == "1c3b3a102f770386e4836c99e370cf9b", "IEEE 1619 vector 10 (AES-256, sector 0xff)");

    // OpenSSL 3 refuses equal halves (vector 1): the error is a clean exception.
    bool refused = false;
    try {
        std::vector<uint8_t> zero(32, 0);
        Xts bad(zero.data(), zero.size());
    } catch (const std::runtime_error &) {
        refused = true;
    }
    check(refused, "a key with equal halves (IEEE vector 1) is refused, not used");

    // Key store: make, encode, parse, unwrap; wrong password; corrupt fields.
    Secret dek(64), pw(6), wrong(6);
    for (size_t i = 0; i < 64; ++i)
        dek.data()[i] = static_cast<uint8_t>(i * 7 + 1);
    std::memcpy(pw.data(), "secret", 6);
    std::memcpy(wrong.data(), "Secret", 6);
    const KeyStore ks = KeyStore::make(dek, pw, kMinIterations);
    const std::string b64 = ks.base64();
    check(b64.rfind("U0NORQAB", 0) == 0, "the key store's base64 starts U0NORQAB (ENCS, version 1.0)");
    check(ks.bytes().size() == kKeyStoreSize, "the key store is 250 bytes");
    const KeyStore again = KeyStore::parse(b64);
    check(again.cipher == "AES-XTS256-PLAIN64" && again.kdf == "PBKDF2-SHA256" &&
              again.dek_iterations == kMinIterations,
          "parse reads back cipher, KDF and iterations");
    const Secret out = again.unwrap(pw);
    check(out.size() == 64 && std::memcmp(out.data(), dek.data(), 64) == 0, "unwrap with the password gives the key");
    bool wrong_refused = false;
    try {
        (void)again.unwrap(wrong);
    } catch (const WrongPassword &) {
        wrong_refused = true;
    }
    check(wrong_refused, "a wrong password is refused");
    auto corrupt = [&](size_t off, uint8_t value, const char *what, const char *says) {
        auto bytes = ks.bytes();
        bytes[off] = value;
        std::string text;
        // Re-encode the damaged bytes through a throwaway store's encoder.
        {
            static const char *tbl = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
            for (size_t i = 0; i < bytes.size(); i += 3) {
                uint32_t v = bytes[i] << 16 | (i + 1 < bytes.size() ? bytes[i + 1] << 8 : 0) |
                             (i + 2 < bytes.size() ? bytes[i + 2] : 0);
                text += tbl[v >> 18 & 63];
                text += tbl[v >> 12 & 63];
                text += i + 1 < bytes.size() ? tbl[v >> 6 & 63] : '=';
                text += i + 2 < bytes.size() ? tbl[v & 63] : '=';
            }
        }
        std::string msg;
        try {
            (void)KeyStore::parse(text);
        } catch (const BadKeyStore &e) {
            msg = e.what();
        }
        check(msg.find(says) != std::string::npos,
              std::string("a key store with ") + what + " is refused naming it (" + msg + ")");
    };
    corrupt(0, 'X', "a bad magic", "offset 0");
    corrupt(5, 2, "version 2", "offset 4");
    corrupt(70, 33, "a key size that does not fit the cipher", "offset 70");
    corrupt(181, 0x7f, "a huge iteration count", "offset 178");
    corrupt(182, 65, "a wrapped key longer than 64", "offset 182");
    std::string msg;
    try {
        (void)KeyStore::parse("U0NORQAB");
    } catch (const BadKeyStore &e) {
        msg = e.what();
    }
    check(msg.find("bytes") != std::string::npos, "a truncated key store is refused (" + msg + ")");
    std::printf("%d failure(s)\n", failures);
    return failures ? 1 : 0;
}
