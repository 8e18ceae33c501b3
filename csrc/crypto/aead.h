/* Transport-data AEAD: ChaCha20-Poly1305 (RFC 8439) in one pass over
 * [Poly1305 key block | text], through OpenSSL's ChaCha20 and Poly1305 with
 * the key installed once per keypair and direction. Not thread-safe per
 * context.
 *
 * Buffers: seal and open write through `out` from SPZ_AEAD_HEADROOM bytes
 * before it (the key block, wiped after use) to SPZ_AEAD_TAILROOM bytes
 * past its text (whole ChaCha20 blocks, then Poly1305's padding and
 * lengths): the caller's buffer must have that room. */
#ifndef SPANZA_CRYPTO_AEAD_H
#define SPANZA_CRYPTO_AEAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "crypto/crypto.h"

#define SPZ_AEAD_HEADROOM 64 /* one ChaCha20 block: block 0 of the stream is the Poly1305 key */
#define SPZ_AEAD_TAILROOM 64 /* the text rounded up to a block, or padding + lengths + tag */

struct spz_aead {
	void *cipher; /* EVP_CIPHER_CTX, ChaCha20 under the key */
	void *mac;    /* EVP_MAC_CTX, Poly1305 */
};

/* 0 or -ENOMEM/-EIO. */
int spz_aead_init(struct spz_aead *a, const uint8_t key[SPZ_AEAD_KEY_LEN]);
void spz_aead_free(struct spz_aead *a);
/* Encrypts in[0..len) followed by pad zero bytes (pad <= 16) into out and
 * appends the tag: out gets len + pad + 16 bytes. in may be out, or must
 * not overlap out's room. false on an OpenSSL error. */
bool spz_aead_seal(struct spz_aead *a, uint64_t counter, const uint8_t *in, size_t len, size_t pad, uint8_t *out);
/* Decrypts len bytes (ciphertext + 16-byte tag, len >= 16) into out
 * (len - 16 bytes); in must not overlap out's room. false, and out wiped,
 * if the tag does not verify. */
bool spz_aead_open(struct spz_aead *a, uint64_t counter, const uint8_t *in, size_t len, uint8_t *out);

#endif
