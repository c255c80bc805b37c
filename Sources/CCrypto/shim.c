// The low-level SHA256_* calls are deprecated in OpenSSL 3 in favour of EVP, whose context is
// heap-allocated; the fingerprint wants a value it can copy, which SHA256_CTX is.
#define OPENSSL_SUPPRESS_DEPRECATED
#include "CCrypto.h"
#include <openssl/sha.h>

_Static_assert(sizeof(SHA256_CTX) <= sizeof(tmf_sha256), "tmf_sha256 must hold a SHA256_CTX");
_Static_assert(_Alignof(SHA256_CTX) <= _Alignof(tmf_sha256), "tmf_sha256 must align a SHA256_CTX");

void tmf_sha256_init(tmf_sha256 *state) {
    SHA256_Init((SHA256_CTX *)state);
}

void tmf_sha256_update(tmf_sha256 *state, const void *bytes, size_t count) {
    if (count > 0) SHA256_Update((SHA256_CTX *)state, bytes, count);
}

void tmf_sha256_final(tmf_sha256 *state, unsigned char digest[32]) {
    SHA256_Final(digest, (SHA256_CTX *)state);
}
