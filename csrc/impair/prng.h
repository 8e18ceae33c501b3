/* imp_prng: xoshiro256** seeded with splitmix64 (Vigna's reference
 * algorithms): fast, and the same seed gives the same stream everywhere. */
#ifndef SPANZA_IMP_PRNG_H
#define SPANZA_IMP_PRNG_H

#include <stdbool.h>
#include <stdint.h>

struct imp_prng {
	uint64_t s[4];
};

static inline uint64_t imp_splitmix64(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static inline void imp_prng_seed(struct imp_prng *r, uint64_t seed)
{
	for (int i = 0; i < 4; i++)
		r->s[i] = imp_splitmix64(&seed);
}

static inline uint64_t imp_rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static inline uint64_t imp_prng_next(struct imp_prng *r)
{
	uint64_t *s = r->s;
	uint64_t out = imp_rotl(s[1] * 5, 7) * 9;
	uint64_t t = s[1] << 17;
	s[2] ^= s[0];
	s[3] ^= s[1];
	s[1] ^= s[2];
	s[0] ^= s[3];
	s[2] ^= t;
	s[3] = imp_rotl(s[3], 45);
	return out;
}

/* Uniform in [0, 1) with 53 bits. */
static inline double imp_prng_unit(struct imp_prng *r) { return (double)(imp_prng_next(r) >> 11) * 0x1.0p-53; }

/* True with probability p; p <= 0 draws nothing (so turning a feature off
 * does not shift the stream of the others... within one configuration). */
static inline bool imp_prng_chance(struct imp_prng *r, double p) { return p > 0 && imp_prng_unit(r) < p; }

/* Uniform in [0, n) (n > 0), by multiply-shift (bias < n / 2^64). */
static inline uint64_t imp_prng_below(struct imp_prng *r, uint64_t n)
{
	return (uint64_t)(((unsigned __int128)imp_prng_next(r) * n) >> 64);
}

#endif
