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

/* Set-associative: a handful of hot keys (the fixed ones, the ephemerals
 * the restored RNG draws) must survive the stream of one-off keys that
 * mutated handshakes bring; direct-mapped, two hot keys sharing a slot
 * (a birthday certainty with hundreds of them) missed on every input. */
#define MEMO_SET_BITS 14
#define MEMO_WAYS 4

struct memo {
	uint8_t priv[32], pub[32]; /* pub: unused (zero) for a public-key derivation */
	uint8_t out[32];
	bool used, base;
	int rc; /* spz_x25519: 1 or 0 (its bool); spz_x25519_public: its return */
};
static struct memo memo[1u << MEMO_SET_BITS][MEMO_WAYS];
static uint8_t memo_victim[1u << MEMO_SET_BITS]; /* round robin per set */

/* The memo is not the code under test: its key comparisons would feed
 * libFuzzer meaningless values and cost as much as the lookup. */
#define MEMO_NO_COVERAGE __attribute__((no_sanitize("coverage")))

MEMO_NO_COVERAGE static uint32_t memo_set(bool base, const uint8_t *priv, const uint8_t *pub)
{
	/* Eight bytes a step, then a multiply-xorshift finaliser. */
	uint64_t h = base;
	for (int i = 0; i < 64 && (i < 32 || !base); i += 8) {
		uint64_t w;
		memcpy(&w, i < 32 ? priv + i : pub + i - 32, 8);
		h = (h ^ w) * 0x9E3779B97F4A7C15ull;
		h ^= h >> 29;
	}
	h ^= h >> 32;
	h *= 0xD6E8FEB86659FD93ull;
	return (uint32_t)(h >> (64 - MEMO_SET_BITS));
}

MEMO_NO_COVERAGE static const struct memo *memo_find(bool base, const uint8_t *priv, const uint8_t *pub)
{
	struct memo *set = memo[memo_set(base, priv, pub)];
	for (int w = 0; w < MEMO_WAYS; w++) {
		const struct memo *m = &set[w];
		if (m->used && m->base == base && !memcmp(m->priv, priv, 32) && (base || !memcmp(m->pub, pub, 32)))
			return m;
	}
	return NULL;
}

/* Takes a free way of the set, or its ways in turn. */
MEMO_NO_COVERAGE static void memo_add(bool base, const uint8_t *priv, const uint8_t *pub, const uint8_t *out, int rc)
{
	uint32_t s = memo_set(base, priv, pub);
	struct memo *m = NULL;
	for (int w = 0; w < MEMO_WAYS && !m; w++)
		if (!memo[s][w].used)
			m = &memo[s][w];
	if (!m)
		m = &memo[s][memo_victim[s]++ % MEMO_WAYS];
	memset(m, 0, sizeof(*m));
	m->used = true;
	m->base = base;
	memcpy(m->priv, priv, 32);
	if (!base)
		memcpy(m->pub, pub, 32);
	memcpy(m->out, out, 32);
	m->rc = rc;
}

bool __real_spz_x25519(uint8_t out[32], const uint8_t priv[32], const uint8_t pub[32]);
int __real_spz_x25519_public(uint8_t *pub, const uint8_t *priv);
bool __wrap_spz_x25519(uint8_t out[32], const uint8_t priv[32], const uint8_t pub[32]);
int __wrap_spz_x25519_public(uint8_t *pub, const uint8_t *priv);

bool __wrap_spz_x25519(uint8_t out[32], const uint8_t priv[32], const uint8_t pub[32])
{
	const struct memo *m = memo_find(false, priv, pub);
	if (m) {
		memcpy(out, m->out, 32);
		return m->rc != 0;
	}
	bool ok = __real_spz_x25519(out, priv, pub);
	memo_add(false, priv, pub, out, ok ? 1 : 0);
	return ok;
}

int __wrap_spz_x25519_public(uint8_t *pub, const uint8_t *priv)
{
	const struct memo *m = memo_find(true, priv, NULL);
	if (m) {
		memcpy(pub, m->out, 32);
		return m->rc;
	}
	int rc = __real_spz_x25519_public(pub, priv);
	memo_add(true, priv, NULL, pub, rc);
	return rc;
}

#endif
