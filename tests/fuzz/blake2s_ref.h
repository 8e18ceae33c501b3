/* BLAKE2s (RFC 7693), its keyed MAC, and HKDF over HMAC-BLAKE2s as the
 * WireGuard paper uses it, written from their definitions for fuzz targets
 * that wrap spz_hash, spz_mac and spz_kdf (OpenSSL's EVP allocates per call,
 * which under ASan costs more than the hashing). Built apart (mk/wg.mk) at
 * -O3 without sanitizers or coverage: it is not the code under test, and
 * the wrappers compare it with the real functions. */
#ifndef SPANZA_FUZZ_BLAKE2S_REF_H
#define SPANZA_FUZZ_BLAKE2S_REF_H

#include <stddef.h>
#include <stdint.h>

#define FZ_B2S_OUT 32

/* out = BLAKE2s-256(a || b || c); b and c may be NULL. */
void fz_b2s_hash(uint8_t out[FZ_B2S_OUT], const void *a, size_t alen, const void *b, size_t blen, const void *c,
		 size_t clen);
/* out = keyed BLAKE2s of outlen (1..32) bytes, key of 1..32 bytes. */
void fz_b2s_mac(uint8_t *out, size_t outlen, const uint8_t *key, size_t keylen, const void *msg, size_t len);
/* t[0..n-1] = HKDF-BLAKE2s outputs (n of 1..3) of key and in. */
void fz_b2s_kdf(uint8_t t[][FZ_B2S_OUT], int n, const uint8_t key[FZ_B2S_OUT], const void *in, size_t inlen);

#endif
