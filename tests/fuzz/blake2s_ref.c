/* See blake2s_ref.h. */
#include "blake2s_ref.h"
#include "memo.h"

#include <stdbool.h>
#include <string.h>

#define B2S_BLOCK 64

struct b2s {
	uint32_t h[8], t;
	uint8_t buf[B2S_BLOCK];
	size_t n, outlen;
};

static const uint32_t B2S_IV[8] = {0x6A09E667, 0xBB67AE85, 0x3C6EF372, 0xA54FF53A,
				   0x510E527F, 0x9B05688C, 0x1F83D9AB, 0x5BE0CD19};
static const uint8_t B2S_SIGMA[10][16] = {
	{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15}, {14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3},
	{11, 8, 12, 0, 5, 2, 15, 13, 10, 14, 3, 6, 7, 1, 9, 4}, {7, 9, 3, 1, 13, 12, 11, 14, 2, 6, 5, 10, 4, 0, 15, 8},
	{9, 0, 5, 7, 2, 4, 10, 15, 14, 1, 11, 12, 6, 8, 3, 13}, {2, 12, 6, 10, 0, 11, 8, 3, 4, 13, 7, 5, 15, 14, 1, 9},
	{12, 5, 1, 15, 14, 13, 4, 10, 0, 7, 6, 3, 9, 2, 8, 11}, {13, 11, 7, 14, 12, 1, 3, 9, 5, 0, 15, 4, 8, 6, 2, 10},
	{6, 15, 14, 9, 11, 3, 0, 8, 12, 2, 13, 7, 1, 4, 10, 5}, {10, 2, 8, 4, 7, 6, 1, 5, 15, 11, 9, 14, 3, 12, 13, 0},
};

static inline uint32_t ror32(uint32_t x, int n) { return x >> n | x << (32 - n); }

static void b2s_compress(struct b2s *c, bool last)
{
	uint32_t v[16], m[16];
	for (int i = 0; i < 16; i++)
		m[i] = (uint32_t)c->buf[4 * i] | (uint32_t)c->buf[4 * i + 1] << 8 | (uint32_t)c->buf[4 * i + 2] << 16 |
		       (uint32_t)c->buf[4 * i + 3] << 24;
	memcpy(v, c->h, sizeof(c->h));
	memcpy(v + 8, B2S_IV, sizeof(B2S_IV));
	v[12] ^= c->t; /* messages here are far below 2^32 bytes: t's high word stays 0 */
	if (last)
		v[14] = ~v[14];
#define B2S_G(r, i, a, b, cc, d)                             \
	do {                                                 \
		v[a] += v[b] + m[B2S_SIGMA[r][2 * (i)]];     \
		v[d] = ror32(v[d] ^ v[a], 16);               \
		v[cc] += v[d];                               \
		v[b] = ror32(v[b] ^ v[cc], 12);              \
		v[a] += v[b] + m[B2S_SIGMA[r][2 * (i) + 1]]; \
		v[d] = ror32(v[d] ^ v[a], 8);                \
		v[cc] += v[d];                               \
		v[b] = ror32(v[b] ^ v[cc], 7);               \
	} while (0)
#pragma clang loop unroll(full)
	for (int r = 0; r < 10; r++) {
		B2S_G(r, 0, 0, 4, 8, 12);
		B2S_G(r, 1, 1, 5, 9, 13);
		B2S_G(r, 2, 2, 6, 10, 14);
		B2S_G(r, 3, 3, 7, 11, 15);
		B2S_G(r, 4, 0, 5, 10, 15);
		B2S_G(r, 5, 1, 6, 11, 12);
		B2S_G(r, 6, 2, 7, 8, 13);
		B2S_G(r, 7, 3, 4, 9, 14);
	}
#undef B2S_G
	for (int i = 0; i < 8; i++)
		c->h[i] ^= v[i] ^ v[i + 8];
}

static void b2s_update(struct b2s *c, const void *p, size_t len)
{
	const uint8_t *in = p;
	while (len) {
		if (c->n == B2S_BLOCK) { /* the last block is compressed in b2s_final */
			c->t += B2S_BLOCK;
			b2s_compress(c, false);
			c->n = 0;
		}
		size_t k = B2S_BLOCK - c->n < len ? B2S_BLOCK - c->n : len;
		memcpy(c->buf + c->n, in, k);
		c->n += k;
		in += k;
		len -= k;
	}
}

static void b2s_init(struct b2s *c, size_t outlen, const uint8_t *key, size_t keylen)
{
	memset(c, 0, sizeof(*c));
	memcpy(c->h, B2S_IV, sizeof(B2S_IV));
	c->h[0] ^= 0x01010000u ^ (uint32_t)(keylen << 8) ^ (uint32_t)outlen;
	c->outlen = outlen;
	if (keylen) {
		uint8_t block[B2S_BLOCK] = {0};
		memcpy(block, key, keylen);
		b2s_update(c, block, sizeof(block));
	}
}

static void b2s_final(struct b2s *c, uint8_t *out)
{
	c->t += (uint32_t)c->n;
	memset(c->buf + c->n, 0, B2S_BLOCK - c->n);
	b2s_compress(c, true);
	uint8_t h[FZ_B2S_OUT];
	for (int i = 0; i < 8; i++)
		for (int k = 0; k < 4; k++)
			h[4 * i + k] = (uint8_t)(c->h[i] >> (8 * k));
	memcpy(out, h, c->outlen);
}

void fz_b2s_hash(uint8_t out[FZ_B2S_OUT], const void *a, size_t alen, const void *b, size_t blen, const void *c,
		 size_t clen)
{
	struct b2s h;
	b2s_init(&h, FZ_B2S_OUT, NULL, 0);
	b2s_update(&h, a, alen);
	if (b)
		b2s_update(&h, b, blen);
	if (c)
		b2s_update(&h, c, clen);
	b2s_final(&h, out);
}

void fz_b2s_mac(uint8_t *out, size_t outlen, const uint8_t *key, size_t keylen, const void *msg, size_t len)
{
	struct b2s h;
	b2s_init(&h, outlen, key, keylen);
	b2s_update(&h, msg, len);
	b2s_final(&h, out);
}

/* HMAC-BLAKE2s (RFC 2104) with the key's two pad blocks absorbed once:
 * HKDF uses one key for up to three MACs. */
struct hmac_key {
	struct b2s inner, outer;
};

static void hmac_key_init(struct hmac_key *k, const uint8_t key[FZ_B2S_OUT])
{
	uint8_t pad[B2S_BLOCK];
	memset(pad, 0x36, sizeof(pad));
	for (int i = 0; i < FZ_B2S_OUT; i++)
		pad[i] ^= key[i];
	b2s_init(&k->inner, FZ_B2S_OUT, NULL, 0);
	b2s_update(&k->inner, pad, sizeof(pad));
	for (int i = 0; i < B2S_BLOCK; i++)
		pad[i] ^= 0x36 ^ 0x5c;
	b2s_init(&k->outer, FZ_B2S_OUT, NULL, 0);
	b2s_update(&k->outer, pad, sizeof(pad));
}

static void hmac(uint8_t out[FZ_B2S_OUT], const struct hmac_key *k, const void *a, size_t alen, const void *b,
		 size_t blen)
{
	uint8_t inner[FZ_B2S_OUT];
	struct b2s h = k->inner;
	b2s_update(&h, a, alen);
	if (b)
		b2s_update(&h, b, blen);
	b2s_final(&h, inner);
	h = k->outer;
	b2s_update(&h, inner, sizeof(inner));
	b2s_final(&h, out);
}

static void kdf(uint8_t t[][FZ_B2S_OUT], int n, const uint8_t key[FZ_B2S_OUT], const void *in, size_t inlen)
{
	struct hmac_key k;
	uint8_t prk[FZ_B2S_OUT], ctr = 1;
	hmac_key_init(&k, key);
	hmac(prk, &k, in, inlen, NULL, 0);
	hmac_key_init(&k, prk);
	hmac(t[0], &k, &ctr, 1, NULL, 0);
	for (int i = 1; i < n; i++) {
		ctr = (uint8_t)(i + 1);
		hmac(t[i], &k, t[i - 1], FZ_B2S_OUT, &ctr, 1);
	}
}

/* A fuzz target's handshakes derive the same keys again and again (fixed
 * static keys, ephemerals drawn from a restored RNG): the KDF's results are
 * memoised (memo.h). (Memoising the hash and the MAC too gained nothing:
 * their inputs carry timestamps and fuzzed bytes.) */
#define MEMO_TAG_KDF 'K'

void fz_b2s_kdf(uint8_t t[][FZ_B2S_OUT], int n, const uint8_t key[FZ_B2S_OUT], const void *in, size_t inlen)
{
	struct fz_memo_key k;
	uint8_t nn = (uint8_t)n;
	fz_memo_key_init(&k, MEMO_TAG_KDF);
	fz_memo_key_add(&k, &nn, 1);
	fz_memo_key_add(&k, key, FZ_B2S_OUT);
	fz_memo_key_add(&k, in, inlen);
	if (fz_memo_get(&k, &t[0][0], (size_t)n * FZ_B2S_OUT))
		return;
	kdf(t, n, key, in, inlen);
	fz_memo_put(&k, &t[0][0], (size_t)n * FZ_B2S_OUT);
}
