/* cffi: the few primitives spanza.keys needs. */
#ifndef SPANZA_CRYPTO_PY_H
#define SPANZA_CRYPTO_PY_H

#include <stddef.h>
#include <stdint.h>

/* Public key of a 32-byte private key (clamped as X25519 does). 0 or -EINVAL. */
int spz_x25519_public(uint8_t *pub, const uint8_t *priv);
/* Shared secret; 0, or -EINVAL if the result is all zeros (low-order point). */
int spz_x25519_shared(uint8_t *out, const uint8_t *priv, const uint8_t *pub);
/* Cryptographic random bytes (libsodium). */
void spz_random(uint8_t *buf, size_t len);
/* Constant-time comparison: 1 if equal. */
int spz_memeq(const uint8_t *a, const uint8_t *b, size_t len);

/* Primitives exposed for known-answer tests: BLAKE2s-256; keyed BLAKE2s
 * with a 16-byte digest (key 1..32 bytes; 0 or -EINVAL); WireGuard's KDF3
 * (HKDF over HMAC-BLAKE2s) writing T1 || T2 || T3. */
void spz_blake2s256(uint8_t *out, const uint8_t *msg, size_t len);
int spz_blake2s_mac16(uint8_t *out, const uint8_t *key, size_t keylen, const uint8_t *msg, size_t len);
void spz_hkdf3(uint8_t *out96, const uint8_t *key, size_t keylen, const uint8_t *in, size_t inlen);

/* The transport AEAD (crypto/aead.c) on buffers of its own, to be checked
 * against libsodium's ChaCha20-Poly1305 (spz_aead_encrypt, the handshake's):
 * seal writes len + pad + 16 bytes (in, then pad zero bytes, sealed), open
 * takes len >= 16 and writes len - 16. 0, -EINVAL (bad lengths or a tag
 * that does not verify) or -ENOMEM/-EIO. */
int spz_transport_seal(uint8_t *out, const uint8_t *key, uint64_t counter, const uint8_t *in, size_t len, size_t pad);
int spz_transport_open(uint8_t *out, const uint8_t *key, uint64_t counter, const uint8_t *in, size_t len);
void spz_aead_encrypt(uint8_t *out, const uint8_t *in, size_t len, const uint8_t *ad, size_t adlen, uint64_t counter,
		      const uint8_t key[32]);

#endif
