/* Hex text of keys, in constant time (libsodium's codecs): the UAPI, DERP
 * headers, endpoints and key files print and parse secrets through here,
 * so no table lookup or branch depends on a key's bits. */
#include "crypto/crypto.h"

#include <errno.h>
#include <sodium.h>

int spz_hex_decode(uint8_t *out, size_t outlen, const char *s, size_t len)
{
	size_t got = 0;
	if (len != 2 * outlen || sodium_hex2bin(out, outlen, s, len, NULL, &got, NULL) != 0 || got != outlen) {
		sodium_memzero(out, outlen);
		return -EINVAL;
	}
	return 0;
}

void spz_hex_encode(char *out, const uint8_t *in, size_t len) { sodium_bin2hex(out, 2 * len + 1, in, len); }
