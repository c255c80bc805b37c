// SHA-256 of Debian's OpenSSL libcrypto, for the dataset fingerprint (TMFData only).
// OpenSSL's code uses the CPU's SHA instructions (or AVX2) where present.
#ifndef TMF_CCRYPTO_H
#define TMF_CCRYPTO_H

#include <stddef.h>
#include <stdint.h>

/// A SHA-256 state: a plain value (copying it forks the hash), large enough for OpenSSL's
/// SHA256_CTX (checked when the shim compiles).
typedef struct tmf_sha256 {
    uint64_t words[16];
} tmf_sha256;

/// Starts a hash.
void tmf_sha256_init(tmf_sha256 *state);
/// Feeds `count` bytes at `bytes` (any count, including 0).
void tmf_sha256_update(tmf_sha256 *state, const void *bytes, size_t count);
/// Writes the 32-byte digest of what was fed; `state` is used up.
void tmf_sha256_final(tmf_sha256 *state, unsigned char digest[32]);

#endif
