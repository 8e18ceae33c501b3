/* Transport-data AEAD: ChaCha20-Poly1305 with one OpenSSL EVP context per
 * key and direction, set up once per keypair (OpenSSL measured fastest on
 * this machine, see DESIGN.md). Not thread-safe per context. */
#ifndef SPANZA_CRYPTO_AEAD_H
#define SPANZA_CRYPTO_AEAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "crypto/crypto.h"

struct spz_aead {
	void *ctx; /* EVP_CIPHER_CTX */
};

/* 0 or -ENOMEM/-EIO. encrypt selects the direction for the key's lifetime. */
int spz_aead_init(struct spz_aead *a, const uint8_t key[SPZ_AEAD_KEY_LEN], bool encrypt);
void spz_aead_free(struct spz_aead *a);
/* Encrypts in[0..len) followed by pad zero bytes (pad <= 16) into out and
 * appends the tag: writes len + pad + 16 bytes. false on an OpenSSL error. */
bool spz_aead_seal(struct spz_aead *a, uint64_t counter, const uint8_t *in, size_t len, size_t pad, uint8_t *out);
/* Decrypts len bytes (ciphertext + 16-byte tag, len >= 16) into out
 * (len - 16 bytes); false if the tag does not verify. */
bool spz_aead_open(struct spz_aead *a, uint64_t counter, const uint8_t *in, size_t len, uint8_t *out);

#endif
