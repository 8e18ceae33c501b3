/* Thin wrappers over libsodium and OpenSSL 3 for the WireGuard core.
 * Every function is thread-safe; OpenSSL objects are fetched once per
 * process and MAC contexts are kept per thread. */
#ifndef SPANZA_CRYPTO_H
#define SPANZA_CRYPTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "crypto/crypto_py.h"

#define SPZ_HASH_LEN 32     /* BLAKE2s-256, HMAC-BLAKE2s, a KDF output */
#define SPZ_HASH_KEY_MAX 32 /* keyed BLAKE2s */
#define SPZ_MAC_LEN 16      /* keyed BLAKE2s with a 16-byte digest */
#define SPZ_X25519_KEY_LEN 32
#define SPZ_AEAD_KEY_LEN 32 /* ChaCha20-Poly1305, XChaCha20-Poly1305 */
#define SPZ_AEAD_TAG_LEN 16
#define SPZ_AEAD_NONCE_LEN 12 /* IETF ChaCha20-Poly1305 */
#define SPZ_XAEAD_NONCE_LEN 24
#define SPZ_TAI64N_LEN 12

/* Loads the OpenSSL algorithms and libsodium; 0 or -EIO. Called lazily by
 * every function below, so calling it is only needed to fail early. */
int spz_crypto_init(void);

/* BLAKE2s-256 of the concatenation of up to three parts (b/c may be NULL). */
void spz_hash(uint8_t out[SPZ_HASH_LEN], const void *a, size_t alen, const void *b, size_t blen, const void *c,
	      size_t clen);
/* Keyed BLAKE2s with a 16-byte digest (key 1..32 bytes). */
void spz_mac(uint8_t out[SPZ_MAC_LEN], const uint8_t *key, size_t keylen, const void *msg, size_t len);
/* HMAC-BLAKE2s-256 of a || b (b may be NULL). */
void spz_hmac(uint8_t out[SPZ_HASH_LEN], const uint8_t *key, size_t keylen, const void *a, size_t alen, const void *b,
	      size_t blen);
/* HKDF as WireGuard's KDF_n: fills n (1..3) 32-byte outputs (t2/t3 may be NULL). */
void spz_kdf(uint8_t *t1, uint8_t *t2, uint8_t *t3, const uint8_t key[SPZ_HASH_LEN], const void *in, size_t inlen);
void spz_kdf_any(uint8_t *t1, uint8_t *t2, uint8_t *t3, const uint8_t *key, size_t keylen, const void *in,
		 size_t inlen);

/* X25519: false (and out zeroed) if the result is all zeros (low-order point). */
bool spz_x25519(uint8_t out[SPZ_X25519_KEY_LEN], const uint8_t priv[SPZ_X25519_KEY_LEN],
		const uint8_t pub[SPZ_X25519_KEY_LEN]);
/* A fresh clamped private key from random bytes (clamps in place). */
void spz_x25519_clamp(uint8_t key[SPZ_X25519_KEY_LEN]);

/* ChaCha20-Poly1305 (IETF) with nonce = 4 zero bytes || counter LE. */
void spz_aead_encrypt(uint8_t *out, const uint8_t *in, size_t len, const uint8_t *ad, size_t adlen, uint64_t counter,
		      const uint8_t key[SPZ_AEAD_KEY_LEN]);
/* in includes the 16-byte tag (len >= 16); out gets len - 16 bytes. */
bool spz_aead_decrypt(uint8_t *out, const uint8_t *in, size_t len, const uint8_t *ad, size_t adlen, uint64_t counter,
		      const uint8_t key[SPZ_AEAD_KEY_LEN]);
/* XChaCha20-Poly1305 with a 24-byte nonce. */
void spz_xaead_encrypt(uint8_t *out, const uint8_t *in, size_t len, const uint8_t *ad, size_t adlen,
		       const uint8_t nonce[SPZ_XAEAD_NONCE_LEN], const uint8_t key[SPZ_AEAD_KEY_LEN]);
bool spz_xaead_decrypt(uint8_t *out, const uint8_t *in, size_t len, const uint8_t *ad, size_t adlen,
		       const uint8_t nonce[SPZ_XAEAD_NONCE_LEN], const uint8_t key[SPZ_AEAD_KEY_LEN]);

/* TAI64N label of wall_ns (ns since the Unix epoch); whiten clears the low
 * 24 bits of the nanoseconds like the kernel and wireguard-go. */
void spz_tai64n(uint8_t out[SPZ_TAI64N_LEN], uint64_t wall_ns, bool whiten);
/* CLOCK_REALTIME in ns: the only clock the WireGuard core may read, and
 * only when its caller supplied no wall clock. */
uint64_t spz_wall_ns(void);

/* Exactly 2*outlen hex digits (either case) -> out, in constant time.
 * 0, or -EINVAL with out zeroed. */
int spz_hex_decode(uint8_t *out, size_t outlen, const char *s, size_t len);
/* 2*len lowercase hex digits and a NUL into out[2*len + 1], in constant time. */
void spz_hex_encode(char *out, const uint8_t *in, size_t len);

/* Constant-time equality. */
bool spz_equal(const void *a, const void *b, size_t len);
bool spz_is_zero(const void *a, size_t len);
void spz_wipe(void *p, size_t len);

#endif
