/* See memo.h. */
#include "memo.h"

#include <string.h>

#define SET_BITS 13
#define WAYS 4

struct entry {
	size_t len; /* of key; 0: unused */
	uint8_t key[FZ_MEMO_KEY_MAX], out[FZ_MEMO_OUT_MAX];
};

static struct entry table[1u << SET_BITS][WAYS];
/* Each way's full hash, beside the table: a lookup reads one cache line of
 * these and touches an entry only on a likely hit. */
static uint64_t hashes[1u << SET_BITS][WAYS];
static uint8_t victim[1u << SET_BITS];

void fz_memo_key_init(struct fz_memo_key *k, uint8_t tag)
{
	k->len = 0;
	k->fits = true;
	fz_memo_key_add(k, &tag, 1);
}

void fz_memo_key_add(struct fz_memo_key *k, const void *p, size_t len)
{
	if (!k->fits || len > FZ_MEMO_KEY_MAX - k->len) {
		k->fits = false;
		return;
	}
	memcpy(k->b + k->len, p, len);
	k->len += len;
}

/* Eight bytes a step (a byte-wise hash cost more than the hashing it
 * saves), then a multiply-xorshift finaliser; the top bits pick the set. */
static uint64_t hash_of(const struct fz_memo_key *k)
{
	uint64_t h = k->len;
	size_t i = 0;
	for (; i + 8 <= k->len; i += 8) {
		uint64_t w;
		memcpy(&w, k->b + i, 8);
		h = (h ^ w) * 0x9E3779B97F4A7C15ull;
		h ^= h >> 29;
	}
	for (; i < k->len; i++)
		h = (h ^ k->b[i]) * 0x9E3779B97F4A7C15ull;
	h ^= h >> 32;
	h *= 0xD6E8FEB86659FD93ull;
	return h;
}

static uint32_t set_of(uint64_t h) { return (uint32_t)(h >> (64 - SET_BITS)); }

bool fz_memo_get(const struct fz_memo_key *k, void *out, size_t outlen)
{
	if (!k->fits || outlen > FZ_MEMO_OUT_MAX)
		return false;
	uint64_t h = hash_of(k);
	uint32_t s = set_of(h);
	for (int w = 0; w < WAYS; w++) {
		const struct entry *e = &table[s][w];
		if (hashes[s][w] == h && e->len == k->len && !memcmp(e->key, k->b, k->len)) {
			memcpy(out, e->out, outlen);
			return true;
		}
	}
	return false;
}

void fz_memo_put(const struct fz_memo_key *k, const void *out, size_t outlen)
{
	if (!k->fits || outlen > FZ_MEMO_OUT_MAX)
		return;
	uint64_t h = hash_of(k);
	uint32_t s = set_of(h);
	int w = 0;
	while (w < WAYS && table[s][w].len)
		w++;
	if (w == WAYS)
		w = victim[s]++ % WAYS;
	struct entry *e = &table[s][w];
	hashes[s][w] = h;
	e->len = k->len;
	memcpy(e->key, k->b, k->len);
	memcpy(e->out, out, outlen);
}
