/* X25519 (libsodium): Diffie-Hellman, clamping, public keys. */
#include "crypto/crypto.h"

#include <errno.h>
#include <sodium.h>
#include <string.h>

bool spz_x25519(uint8_t out[SPZ_X25519_KEY_LEN], const uint8_t priv[SPZ_X25519_KEY_LEN],
		const uint8_t pub[SPZ_X25519_KEY_LEN])
{
	spz_crypto_init();
	/* libsodium returns -1 for an all-zero result (low-order point). */
	if (crypto_scalarmult(out, priv, pub) != 0) {
		sodium_memzero(out, SPZ_X25519_KEY_LEN);
		return false;
	}
	return true;
}

void spz_x25519_clamp(uint8_t key[SPZ_X25519_KEY_LEN])
{
	key[0] &= 248;
	key[SPZ_X25519_KEY_LEN - 1] = (uint8_t)((key[SPZ_X25519_KEY_LEN - 1] & 127) | 64);
}

int spz_x25519_public(uint8_t *pub, const uint8_t *priv)
{
	spz_crypto_init();
	uint8_t k[SPZ_X25519_KEY_LEN];
	memcpy(k, priv, SPZ_X25519_KEY_LEN);
	spz_x25519_clamp(k);
	int rc = crypto_scalarmult_base(pub, k);
	sodium_memzero(k, sizeof(k));
	return rc == 0 ? 0 : -EINVAL;
}

int spz_x25519_shared(uint8_t *out, const uint8_t *priv, const uint8_t *pub)
{
	return spz_x25519(out, priv, pub) ? 0 : -EINVAL;
}
