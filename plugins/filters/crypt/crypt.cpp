// crypt: a disk-level filter (VDKIT_CAP_FILTER_DISK) that encrypts the
// virtual disk's data with AES-XTS-128/256-PLAIN64, 512-byte data units,
// tweak = sector number (../shared/reference/formats.md §6.1-6.2; the
// scheme of VirtualBox's CRYPT filter, virtualbox-vd.md §4.2), with the data
// key kept in a VirtualBox version 1 key store (virtualbox-vd.md §4.3).
// README.md says where the key store lives and what is implemented.
#include "keystore.hpp"
#include "xts.hpp"

#include "vdkit/plugin.hpp"

#include <openssl/rand.h>

#include <openssl/crypto.h>

#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <iterator>
#include <memory>
#include <optional>
#include <string>

using namespace vdkit;
using namespace vdkit::crypt;
using sdk::Context;

namespace {

// Where a key store is kept in the base image's metadata (a VMDK's ddb).
constexpr std::string_view kMetadataKey = "ddb.vdkit.crypt.keystore";
// A sidecar next to the base image when its format has no metadata.
constexpr std::string_view kSidecarSuffix = ".keystore";
constexpr uint64_t kChunk = 1u << 20; // bytes transformed per bounce buffer

[[noreturn]] void fail(uint32_t code, const std::string &msg) {
    throw sdk::Error(code, "crypt: " + msg);
}

// The password from password-file= (a path; "-" is standard input) or
// password-env= (a variable's name): never from a clear-text option.
Secret read_password(Context &ctx) {
    const auto file = ctx.config("password-file");
    const auto env = ctx.config("password-env");
    if (file && env) fail(VDKIT_E_INVALID_ARGUMENT, "give password-file or password-env, not both");
    std::string line;
    if (env) {
        const char *v = std::getenv(env->c_str());
        if (!v) fail(VDKIT_E_INVALID_ARGUMENT, "password-env: the environment variable '" + *env + "' is not set");
        line = v;
    } else if (file) {
        if (*file == "-") {
            if (!std::getline(std::cin, line))
                fail(VDKIT_E_INVALID_ARGUMENT, "password-file=-: nothing on standard input");
        } else {
            std::ifstream in(*file, std::ios::binary);
            if (!in) fail(VDKIT_E_NOT_FOUND, "password-file: cannot read '" + *file + "'");
            std::getline(in, line);
        }
        if (!line.empty() && line.back() == '\r') line.pop_back();
    } else {
        fail(VDKIT_E_INVALID_ARGUMENT, "a password is needed: password-file=PATH ('-' for standard input) or "
                                       "password-env=VARIABLE (never on the command line itself)");
    }
    if (line.empty()) fail(VDKIT_E_INVALID_ARGUMENT, "the password is empty");
    Secret pw(line.size());
    std::memcpy(pw.data(), line.data(), line.size());
    OPENSSL_cleanse(line.data(), line.size());
    return pw;
}

// Where this disk's key store lives and how to read and write it.
struct KeyStoreHome {
    enum Kind { user_file, metadata, sidecar } kind = sidecar;
    std::string path; // user_file: the user's path; sidecar: relative to the base image's directory

    std::string describe() const {
        switch (kind) {
        case user_file:
            return "keystore-file '" + path + "'";
        case metadata:
            return "the base image's metadata key " + std::string(kMetadataKey);
        default:
            return "the sidecar file '" + path + "' next to the base image";
        }
    }
};

KeyStoreHome sidecar_home(Context &ctx) {
    std::string base = ctx.disk_location();
    if (auto slash = base.find_last_of('/'); slash != std::string::npos) base.erase(0, slash + 1);
    KeyStoreHome home;
    home.kind = KeyStoreHome::sidecar;
    home.path = base + std::string(kSidecarSuffix);
    return home;
}

KeyStoreHome find_home(Context &ctx) {
    KeyStoreHome home;
    if (auto f = ctx.config("keystore-file")) {
        home.kind = KeyStoreHome::user_file;
        home.path = *f;
        return home;
    }
    try {
        (void)ctx.disk_metadata(kMetadataKey);
        home.kind = KeyStoreHome::metadata;
        return home;
    } catch (const sdk::Error &e) {
        if (e.code() != VDKIT_E_NOT_SUPPORTED) throw;
    }
    return sidecar_home(ctx);
}

std::optional<std::string> load_text(Context &ctx, const KeyStoreHome &home) {
    switch (home.kind) {
    case KeyStoreHome::user_file: {
        std::ifstream in(home.path, std::ios::binary);
        if (!in) return std::nullopt;
        return std::string(std::istreambuf_iterator<char>(in), {});
    }
    case KeyStoreHome::metadata:
        return ctx.disk_metadata(kMetadataKey);
    default: {
        sdk::Store s;
        try {
            s = ctx.open(home.path, 0);
        } catch (const sdk::Error &e) {
            if (e.code() == VDKIT_E_NOT_FOUND) return std::nullopt;
            throw;
        }
        const uint64_t n = s.size(ctx.get());
        if (n > 4096) fail(VDKIT_E_CORRUPT, home.describe() + " is " + std::to_string(n) + " bytes, not a key store");
        std::string text(static_cast<size_t>(n), '\0');
        s.pread(ctx.get(), 0, text.data(), n);
        return text;
    }
    }
}

void save_text(Context &ctx, const KeyStoreHome &home, const std::string &text, bool create) {
    switch (home.kind) {
    case KeyStoreHome::user_file: {
        std::ofstream out(home.path, std::ios::binary | std::ios::trunc);
        out << text << "\n";
        if (!out.flush()) fail(VDKIT_E_IO, "cannot write " + home.describe());
        return;
    }
    case KeyStoreHome::metadata:
        ctx.set_disk_metadata(kMetadataKey, text);
        return;
    default: {
        const std::string line = text + "\n";
        sdk::Store s;
        try {
            s = ctx.open(home.path, VDKIT_OPEN_WRITE | (create ? VDKIT_OPEN_CREATE : 0));
        } catch (const sdk::Error &e) {
            if (e.code() != VDKIT_E_EXISTS) throw;
            // Not VDKIT_E_EXISTS: --overwrite replaces images, never a key store.
            fail(VDKIT_E_PERMISSION, home.describe() +
                                         " already exists (the key store of an earlier image of this name?); "
                                         "a new disk gets a new key store: remove the file, or name "
                                         "another with keystore-file=");
        }
        s.truncate(ctx.get(), 0);
        s.pwrite(ctx.get(), 0, line.data(), line.size());
        s.flush(ctx.get());
    }
    }
}

bool all_zero(const uint8_t *p, size_t n) {
    return sdk::is_zero(p, n);
}

class Crypt {
public:
    sdk::StoreRef next;
    std::unique_ptr<Xts> xts;
    uint64_t disk_size = 0;

    static std::unique_ptr<Crypt> open(Context &ctx, sdk::StoreRef next, uint32_t flags) {
        auto c = std::make_unique<Crypt>();
        c->next = next;
        c->disk_size = next.size(ctx.get());
        if (c->disk_size % kSector)
            fail(VDKIT_E_NOT_SUPPORTED, "the disk's size (" + std::to_string(c->disk_size) +
                                            " bytes) is not a whole number of 512-byte sectors (AES-XTS data units)");
        const KeyStoreHome home = find_home(ctx);
        if (flags & VDKIT_OPEN_CREATE) {
            if (ctx.config("new-password-file") || ctx.config("new-password-env"))
                fail(VDKIT_E_INVALID_ARGUMENT, "new-password-file/-env change an existing disk's password; a new disk "
                                               "takes its password from password-file/-env");
            if (home.kind == KeyStoreHome::user_file && std::ifstream(home.path))
                fail(VDKIT_E_EXISTS, home.describe() + " already exists; a new disk gets a new key store (remove it "
                                                       "or name another file)");
            const bool aes128 = ctx.config("cipher").value_or("aes-xts-256") == "aes-xts-128";
            Secret dek(aes128 ? 32 : 64);
            do {
                if (RAND_bytes(dek.data(), static_cast<int>(dek.size())) != 1)
                    fail(VDKIT_E_INTERNAL, "the system's random generator failed");
            } while (CRYPTO_memcmp(dek.data(), dek.data() + dek.size() / 2, dek.size() / 2) == 0);
            const Secret pw = read_password(ctx);
            uint64_t iterations = ctx.config_uint("kdf-iterations").value_or(0);
            if (iterations == 0) iterations = calibrate_iterations(250);
            if (iterations < kMinIterations)
                fail(VDKIT_E_INVALID_ARGUMENT, "kdf-iterations must be at least " + std::to_string(kMinIterations));
            const KeyStore ks = KeyStore::make(dek, pw, static_cast<uint32_t>(iterations));
            try {
                save_text(ctx, home, ks.base64(), true);
            } catch (const sdk::Error &e) {
                // Metadata the format cannot change now (a VMDK stream being
                // written has a fixed descriptor): the sidecar instead.
                if (home.kind != KeyStoreHome::metadata || e.code() != VDKIT_E_NOT_SUPPORTED) throw;
                save_text(ctx, sidecar_home(ctx), ks.base64(), true);
            }
            c->xts = std::make_unique<Xts>(dek.data(), dek.size());
            return c;
        }
        KeyStoreHome where = home;
        auto text = load_text(ctx, where);
        if (!text && home.kind == KeyStoreHome::metadata) {
            where = sidecar_home(ctx); // kept beside an image whose metadata could not take it
            text = load_text(ctx, where);
            if (!text) where = home;
        }
        if (!text)
            fail(VDKIT_E_NOT_FOUND, "no key store in " + where.describe() +
                                        " (was this disk encrypted by vdkit? A VirtualBox disk's store is its "
                                        "CRYPT/KeyStore property: save it to a file and pass keystore-file=)");
        KeyStore ks;
        try {
            ks = KeyStore::parse(*text);
        } catch (const BadKeyStore &e) {
            fail(VDKIT_E_CORRUPT, where.describe() + ": " + e.what());
        }
        if (flags & VDKIT_OPEN_INFO) return c; // metadata only: no key, no password
        const bool change = ctx.config("new-password-file") || ctx.config("new-password-env");
        if (change && !(flags & VDKIT_OPEN_WRITE))
            fail(VDKIT_E_READ_ONLY, "changing the password needs the disk open for writing");
        Secret dek;
        try {
            const Secret pw = read_password(ctx);
            dek = ks.unwrap(pw);
        } catch (const WrongPassword &e) {
            fail(VDKIT_E_PERMISSION, std::string(e.what()) + "; nothing was read or changed");
        }
        c->xts = std::make_unique<Xts>(dek.data(), dek.size());
        if (change) rewrap(ctx, where, ks, dek);
        return c;
    }

    // Password change: the same data key under a new password (fresh salt);
    // the data is not rewritten.
    static void rewrap(Context &ctx, const KeyStoreHome &home, const KeyStore &old, const Secret &dek) {
        std::optional<std::string> file = ctx.config("new-password-file"), env = ctx.config("new-password-env");
        if (file && env) fail(VDKIT_E_INVALID_ARGUMENT, "give new-password-file or new-password-env, not both");
        std::string line;
        if (env) {
            const char *v = std::getenv(env->c_str());
            if (!v)
                fail(VDKIT_E_INVALID_ARGUMENT, "new-password-env: the environment variable '" + *env + "' is not set");
            line = v;
        } else {
            std::ifstream in(*file, std::ios::binary);
            if (!in) fail(VDKIT_E_NOT_FOUND, "new-password-file: cannot read '" + *file + "'");
            std::getline(in, line);
            if (!line.empty() && line.back() == '\r') line.pop_back();
        }
        if (line.empty()) fail(VDKIT_E_INVALID_ARGUMENT, "the new password is empty");
        Secret pw(line.size());
        std::memcpy(pw.data(), line.data(), line.size());
        OPENSSL_cleanse(line.data(), line.size());
        uint64_t iterations = ctx.config_uint("kdf-iterations").value_or(0);
        if (iterations == 0) iterations = std::max<uint64_t>(old.dek_iterations, kMinIterations);
        const KeyStore fresh = KeyStore::make(dek, pw, static_cast<uint32_t>(iterations));
        save_text(ctx, home, fresh.base64(), false);
        ctx.log(VDKIT_LOG_INFO, "crypt: the key store in " + home.describe() + " now opens with the new password");
    }

    void pread(Context &ctx, uint64_t off, void *buf, uint64_t len) {
        need_key();
        auto *out = static_cast<uint8_t *>(buf);
        const uint64_t a = off / kSector * kSector, b = (off + len + kSector - 1) / kSector * kSector;
        if (a == off && b == off + len) {
            next.pread(ctx.get(), off, buf, len);
            decrypt(off, out, len);
            return;
        }
        std::vector<uint8_t> tmp;
        for (uint64_t pos = a; pos < b;) {
            const uint64_t n = std::min(kChunk, b - pos);
            tmp.resize(static_cast<size_t>(n));
            next.pread(ctx.get(), pos, tmp.data(), n);
            decrypt(pos, tmp.data(), n);
            const uint64_t from = std::max(pos, off), to = std::min(pos + n, off + len);
            std::memcpy(out + (from - off), tmp.data() + (from - pos), static_cast<size_t>(to - from));
            OPENSSL_cleanse(tmp.data(), tmp.size());
            pos += n;
        }
    }

    void pwrite(Context &ctx, uint64_t off, const void *buf, uint64_t len) {
        need_key();
        const auto *in = static_cast<const uint8_t *>(buf);
        const uint64_t a = off / kSector * kSector, b = (off + len + kSector - 1) / kSector * kSector;
        std::vector<uint8_t> tmp;
        for (uint64_t pos = a; pos < b;) {
            const uint64_t n = std::min(kChunk, b - pos);
            tmp.resize(static_cast<size_t>(n));
            const uint64_t from = std::max(pos, off), to = std::min(pos + n, off + len);
            // Ragged edges: the rest of the first and last sector as they read now.
            if (from > pos) pread(ctx, pos, tmp.data(), kSector);
            if (to < pos + n) pread(ctx, pos + n - kSector, tmp.data() + n - kSector, kSector);
            std::memcpy(tmp.data() + (from - pos), in + (from - off), static_cast<size_t>(to - from));
            xts->sectors(pos / kSector, tmp.data(), static_cast<size_t>(n), true);
            next.pwrite(ctx.get(), pos, tmp.data(), n);
            pos += n;
        }
    }

    void flush(Context &ctx) { next.flush(ctx.get()); }
    uint64_t size(Context &ctx) { return next.size(ctx.get()); } // follows a resize
    // Whole sectors become zero records below (they read as zeros: see
    // decrypt); ragged edges are written as encrypted zeros.
    void zero(Context &ctx, uint64_t off, uint64_t len) {
        const uint64_t a = (off + kSector - 1) / kSector * kSector, b = (off + len) / kSector * kSector;
        if (a >= b) {
            const std::vector<uint8_t> z(static_cast<size_t>(len), 0);
            pwrite(ctx, off, z.data(), len);
            return;
        }
        if (a > off) {
            const std::vector<uint8_t> z(static_cast<size_t>(a - off), 0);
            pwrite(ctx, off, z.data(), z.size());
        }
        next.zero(ctx.get(), a, b - a);
        if (off + len > b) {
            const std::vector<uint8_t> z(static_cast<size_t>(off + len - b), 0);
            pwrite(ctx, b, z.data(), z.size());
        }
    }
    // A discarded range reads as zeros or as the parent's (same-key) data;
    // partial sectors stay as they are, as a format's discard leaves partial blocks.
    void discard(Context &ctx, uint64_t off, uint64_t len) {
        const uint64_t a = (off + kSector - 1) / kSector * kSector, b = (off + len) / kSector * kSector;
        if (a < b) next.discard(ctx.get(), a, b - a);
    }
    // Holes below read as zeros here too.
    uint32_t extents(Context &ctx, uint64_t off, uint64_t len, vdkit_extent *out, uint32_t max) {
        return next.extents(ctx.get(), off, len, out, max);
    }

private:
    // Opened for information only (VDKIT_OPEN_INFO): no key was unwrapped.
    void need_key() const {
        if (!xts)
            fail(VDKIT_E_NOT_SUPPORTED, "the disk was opened for information only: no data can be read or written");
    }
    // A stored sector of all zero bytes is a sector nothing encrypted wrote
    // (a format's zero record or zero-filled block, a raw file's hole): it
    // reads as zeros, as unallocated ranges do. An AES-XTS ciphertext is all
    // zero with probability 2^-4096.
    void decrypt(uint64_t off, uint8_t *p, uint64_t len) const {
        for (uint64_t done = 0; done < len;) {
            uint64_t run = 0;
            while (done + run < len && !all_zero(p + done + run, kSector))
                run += kSector;
            if (run) xts->sectors((off + done) / kSector, p + done, static_cast<size_t>(run), false);
            done += run;
            while (done < len && all_zero(p + done, kSector))
                done += kSector;
        }
    }
};

constexpr vdkit_config_key kKeys[] = {
    sdk::key("password-file", VDKIT_KEY_STRING, "",
             "File whose first line is the password ('-': read it from standard input).", 0, {}, 0, 0),
    sdk::key("password-env", VDKIT_KEY_STRING, "", "Environment variable holding the password.", 0, {}, 0, 0),
    sdk::key("keystore-file", VDKIT_KEY_STRING, "",
             "File holding the key store (base64 'ENCS' blob, e.g. a VirtualBox disk's CRYPT/KeyStore "
             "property); default: the base image's metadata, else IMAGE.keystore beside it.",
             0, {}, 0, 0),
    sdk::key("cipher", VDKIT_KEY_ENUM, "aes-xts-256", "Cipher of a new disk (AES-XTS256-PLAIN64 or -128).",
             VDKIT_KEY_CREATE_ONLY, "aes-xts-128|aes-xts-256", 0, 0),
    sdk::key("kdf-iterations", VDKIT_KEY_UINT, "0",
             "PBKDF2-SHA256 iterations for the password (0: calibrated to ~250 ms; at least 20000).", VDKIT_KEY_EXPERT,
             {}, 0, kMaxIterations),
    sdk::key("new-password-file", VDKIT_KEY_STRING, "",
             "Change the password on open (writable): file holding the new one. The data is not rewritten.", 0, {}, 0,
             0),
    sdk::key("new-password-env", VDKIT_KEY_STRING, "", "As new-password-file, from an environment variable.", 0, {}, 0,
             0),
};

const vdkit_plugin_descriptor *crypt_filter() {
    static const vdkit_plugin_descriptor d = sdk::describe(
        VDKIT_KIND_FILTER,
        sdk::DescriptorSpec{
            "crypt", "1.0.0", "AES-XTS-128/256-PLAIN64 disk encryption with a VirtualBox-compatible key store",
            VDKIT_CAP_FILTER_DISK | VDKIT_CAP_THREAD_SAFE, kKeys, static_cast<uint32_t>(std::size(kKeys))},
        sdk::filter_ops<Crypt>());
    return &d;
}

} // namespace
VDKIT_SDK_ENTRY(crypt_filter())
