/* Exact-result memo for fuzz harnesses whose inputs repeat the same costly
 * computations (fixed keys, the ephemerals a restored RNG draws again): a
 * result is looked up by the whole of its input, so every value is the one
 * the real function gives; only new inputs are computed. Set-associative:
 * a few hundred hot keys must survive the stream of one-off keys mutated
 * inputs bring (direct-mapped, two hot keys sharing a slot missed on every
 * input). Built apart (mk/wg.mk) at -O3 without sanitizers or coverage: it
 * is not the code under test. One table per process; callers start their
 * keys with a tag of their own. */
#ifndef SPANZA_FUZZ_MEMO_H
#define SPANZA_FUZZ_MEMO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define FZ_MEMO_KEY_MAX 128
#define FZ_MEMO_OUT_MAX 96

/* A key built piece by piece; too long a key is not memoised (fits false). */
struct fz_memo_key {
	uint8_t b[FZ_MEMO_KEY_MAX];
	size_t len;
	bool fits;
};

void fz_memo_key_init(struct fz_memo_key *k, uint8_t tag);
void fz_memo_key_add(struct fz_memo_key *k, const void *p, size_t len);
/* true and out filled (outlen <= FZ_MEMO_OUT_MAX) if the key was put. */
bool fz_memo_get(const struct fz_memo_key *k, void *out, size_t outlen);
/* Keeps out for the key, in a free way of its set or the set's ways in turn. */
void fz_memo_put(const struct fz_memo_key *k, const void *out, size_t outlen);

#endif
