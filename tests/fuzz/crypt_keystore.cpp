// Target crypt_keystore: the crypt filter's key store parser
// (plugins/filters/crypt/keystore.cpp; VirtualBox's key store v1 layout,
// virtualbox-vd.md §4.3), fed as the base64 text it reads from a VMDK
// descriptor, a sidecar or keystore-file=. Every input is refused with
// BadKeyStore or parses; a store that parses must serialise to base64 that
// parses back to the same 250 bytes. (unwrap is not called: its cost is the
// PBKDF2 count, which parse bounds by kMaxIterations.)
#include "keystore.hpp"

#include <cstdio>
#include <cstdlib>
#include <string_view>

using namespace vdkit::crypt;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const std::string_view text(reinterpret_cast<const char *>(data), size);
    KeyStore store;
    try {
        store = KeyStore::parse(text);
    } catch (const BadKeyStore &) {
        return 0;
    }
    if (store.dek_iterations > kMaxIterations || store.digest_iterations > kMaxIterations) {
        fprintf(stderr, "crypt_keystore: an iteration count past the bound parsed\n");
        abort();
    }
    const auto bytes = store.bytes();
    try {
        if (KeyStore::parse(store.base64()).bytes() != bytes) {
            fprintf(stderr, "crypt_keystore: a parsed store does not round-trip\n");
            abort();
        }
    } catch (const BadKeyStore &e) {
        fprintf(stderr, "crypt_keystore: a parsed store serialises to one that does not parse: %s\n", e.what());
        abort();
    }
    return 0;
}
