/* Handling secrets: constant-time comparison (for MACs and keys) and
 * wiping that the compiler cannot optimise away. */
#include "crypto/crypto.h"

#include <sodium.h>

#include <openssl/crypto.h>

bool spz_equal(const void *a, const void *b, size_t len) { return CRYPTO_memcmp(a, b, len) == 0; }

bool spz_is_zero(const void *a, size_t len) { return sodium_is_zero(a, len) == 1; }

void spz_wipe(void *p, size_t len) { sodium_memzero(p, len); }

int spz_memeq(const uint8_t *a, const uint8_t *b, size_t len) { return spz_equal(a, b, len) ? 1 : 0; }
