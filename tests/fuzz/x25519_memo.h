/* For fuzz targets whose inputs repeat the same X25519 operations (fixed
 * keys, and the ephemerals a restored RNG draws again): the link wraps
 * spz_x25519 and spz_x25519_public (-Wl,--wrap=..., in the target's
 * FUZZ_LDFLAGS) with a memo looked up by the exact inputs, so every value
 * is the one the real function returns; only new inputs are computed. */
#ifndef SPANZA_FUZZ_X25519_MEMO_H
#define SPANZA_FUZZ_X25519_MEMO_H

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "memo.h"

/* The memo (memo.h) keeps out[32] || rc for a key of tag || priv || pub. */
#define X25519_MEMO_DH 'D'
#define X25519_MEMO_PUB 'P'
#define X25519_LEN 32

static void x25519_key(struct fz_memo_key *k, uint8_t tag, const uint8_t *priv, const uint8_t *pub)
{
	fz_memo_key_init(k, tag);
	fz_memo_key_add(k, priv, X25519_LEN);
	if (pub)
		fz_memo_key_add(k, pub, X25519_LEN);
}

static bool x25519_find(const struct fz_memo_key *k, uint8_t *out, int *rc)
{
	uint8_t v[X25519_LEN + sizeof(int)];
	if (!fz_memo_get(k, v, sizeof(v)))
		return false;
	memcpy(out, v, X25519_LEN);
	memcpy(rc, v + X25519_LEN, sizeof(int));
	return true;
}

static void x25519_keep(const struct fz_memo_key *k, const uint8_t *out, int rc)
{
	uint8_t v[X25519_LEN + sizeof(int)];
	memcpy(v, out, X25519_LEN);
	memcpy(v + X25519_LEN, &rc, sizeof(int));
	fz_memo_put(k, v, sizeof(v));
}

bool __real_spz_x25519(uint8_t out[32], const uint8_t priv[32], const uint8_t pub[32]);
int __real_spz_x25519_public(uint8_t *pub, const uint8_t *priv);
bool __wrap_spz_x25519(uint8_t out[32], const uint8_t priv[32], const uint8_t pub[32]);
int __wrap_spz_x25519_public(uint8_t *pub, const uint8_t *priv);

bool __wrap_spz_x25519(uint8_t out[32], const uint8_t priv[32], const uint8_t pub[32])
{
	struct fz_memo_key k;
	int rc;
	x25519_key(&k, X25519_MEMO_DH, priv, pub);
	if (x25519_find(&k, out, &rc))
		return rc != 0;
	bool ok = __real_spz_x25519(out, priv, pub);
	x25519_keep(&k, out, ok ? 1 : 0); /* the key was copied: out may alias priv or pub */
	return ok;
}

int __wrap_spz_x25519_public(uint8_t *pub, const uint8_t *priv)
{
	struct fz_memo_key k;
	int rc;
	x25519_key(&k, X25519_MEMO_PUB, priv, NULL);
	if (x25519_find(&k, pub, &rc))
		return rc;
	rc = __real_spz_x25519_public(pub, priv);
	x25519_keep(&k, pub, rc);
	return rc;
}

#endif
