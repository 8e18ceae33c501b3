/* The CSPRNG every key, index and nonce comes from (libsodium's
 * randombytes: getrandom on Linux). */
#include "crypto/crypto.h"

#include <sodium.h>

void spz_random(uint8_t *buf, size_t len)
{
	spz_crypto_init();
	randombytes_buf(buf, len);
}
