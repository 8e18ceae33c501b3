/* The AEADs of handshakes and cookies (libsodium): ChaCha20-Poly1305 with
 * WireGuard's counter nonce, and XChaCha20-Poly1305. The transport data
 * path uses aead.c (OpenSSL, key installed once) instead. */
#include "crypto/crypto.h"

#include <sodium.h>
#include <string.h>

static void nonce12(uint8_t n[SPZ_AEAD_NONCE_LEN], uint64_t counter)
{
	memset(n, 0, 4);
	for (int i = 0; i < 8; i++)
		n[4 + i] = (uint8_t)(counter >> (8 * i));
}

void spz_aead_encrypt(uint8_t *out, const uint8_t *in, size_t len, const uint8_t *ad, size_t adlen, uint64_t counter,
		      const uint8_t key[SPZ_AEAD_KEY_LEN])
{
	uint8_t n[SPZ_AEAD_NONCE_LEN];
	nonce12(n, counter);
	crypto_aead_chacha20poly1305_ietf_encrypt(out, NULL, in, len, ad, adlen, NULL, n, key);
}

bool spz_aead_decrypt(uint8_t *out, const uint8_t *in, size_t len, const uint8_t *ad, size_t adlen, uint64_t counter,
		      const uint8_t key[SPZ_AEAD_KEY_LEN])
{
	uint8_t n[SPZ_AEAD_NONCE_LEN];
	if (len < SPZ_AEAD_TAG_LEN)
		return false;
	nonce12(n, counter);
	return crypto_aead_chacha20poly1305_ietf_decrypt(out, NULL, NULL, in, len, ad, adlen, n, key) == 0;
}

void spz_xaead_encrypt(uint8_t *out, const uint8_t *in, size_t len, const uint8_t *ad, size_t adlen,
		       const uint8_t nonce[SPZ_XAEAD_NONCE_LEN], const uint8_t key[SPZ_AEAD_KEY_LEN])
{
	crypto_aead_xchacha20poly1305_ietf_encrypt(out, NULL, in, len, ad, adlen, NULL, nonce, key);
}

bool spz_xaead_decrypt(uint8_t *out, const uint8_t *in, size_t len, const uint8_t *ad, size_t adlen,
		       const uint8_t nonce[SPZ_XAEAD_NONCE_LEN], const uint8_t key[SPZ_AEAD_KEY_LEN])
{
	if (len < SPZ_AEAD_TAG_LEN)
		return false;
	return crypto_aead_xchacha20poly1305_ietf_decrypt(out, NULL, NULL, in, len, ad, adlen, nonce, key) == 0;
}
