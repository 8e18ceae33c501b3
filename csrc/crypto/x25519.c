/* X25519 and the AEADs used during handshakes and cookies (libsodium). */
#include "crypto/crypto.h"

#include <errno.h>
#include <sodium.h>
#include <string.h>

bool spz_x25519(uint8_t out[32], const uint8_t priv[32], const uint8_t pub[32])
{
	spz_crypto_init();
	/* libsodium returns -1 for an all-zero result (low-order point). */
	if (crypto_scalarmult(out, priv, pub) != 0) {
		sodium_memzero(out, 32);
		return false;
	}
	return true;
}

void spz_x25519_clamp(uint8_t key[32])
{
	key[0] &= 248;
	key[31] = (uint8_t)((key[31] & 127) | 64);
}

int spz_x25519_public(uint8_t *pub, const uint8_t *priv)
{
	spz_crypto_init();
	uint8_t k[32];
	memcpy(k, priv, 32);
	spz_x25519_clamp(k);
	int rc = crypto_scalarmult_base(pub, k);
	sodium_memzero(k, sizeof(k));
	return rc == 0 ? 0 : -EINVAL;
}

int spz_x25519_shared(uint8_t *out, const uint8_t *priv, const uint8_t *pub)
{
	return spz_x25519(out, priv, pub) ? 0 : -EINVAL;
}

void spz_random(uint8_t *buf, size_t len)
{
	spz_crypto_init();
	randombytes_buf(buf, len);
}

static void nonce12(uint8_t n[12], uint64_t counter)
{
	memset(n, 0, 4);
	for (int i = 0; i < 8; i++)
		n[4 + i] = (uint8_t)(counter >> (8 * i));
}

void spz_aead_encrypt(uint8_t *out, const uint8_t *in, size_t len, const uint8_t *ad, size_t adlen,
                      uint64_t counter, const uint8_t key[32])
{
	uint8_t n[12];
	nonce12(n, counter);
	crypto_aead_chacha20poly1305_ietf_encrypt(out, NULL, in, len, ad, adlen, NULL, n, key);
}

bool spz_aead_decrypt(uint8_t *out, const uint8_t *in, size_t len, const uint8_t *ad, size_t adlen,
                      uint64_t counter, const uint8_t key[32])
{
	uint8_t n[12];
	if (len < SPZ_AEAD_TAG_LEN)
		return false;
	nonce12(n, counter);
	return crypto_aead_chacha20poly1305_ietf_decrypt(out, NULL, NULL, in, len, ad, adlen, n, key) == 0;
}

void spz_xaead_encrypt(uint8_t *out, const uint8_t *in, size_t len, const uint8_t *ad, size_t adlen,
                       const uint8_t nonce[24], const uint8_t key[32])
{
	crypto_aead_xchacha20poly1305_ietf_encrypt(out, NULL, in, len, ad, adlen, NULL, nonce, key);
}

bool spz_xaead_decrypt(uint8_t *out, const uint8_t *in, size_t len, const uint8_t *ad, size_t adlen,
                       const uint8_t nonce[24], const uint8_t key[32])
{
	if (len < SPZ_AEAD_TAG_LEN)
		return false;
	return crypto_aead_xchacha20poly1305_ietf_decrypt(out, NULL, NULL, in, len, ad, adlen, nonce, key) == 0;
}
