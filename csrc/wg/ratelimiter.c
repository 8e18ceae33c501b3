/* Per-source token buckets for handshake messages under load: 20 per
 * second, burst 5 (kernel ratelimiter.c, wireguard-go ratelimiter). IPv6
 * sources are bucketed by /64. A fixed-size table with keyed hashing: a
 * full probe window recycles its stalest entry, so memory stays bounded. */
#include <errno.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "wg/wg_internal.h"

_Static_assert(WG_RL_HASH_KEY_LEN == crypto_shorthash_KEYBYTES, "the SipHash key of struct wg_ratelimiter");

#define PACKETS_PER_SECOND 20
#define PACKETS_BURSTABLE 5
#define PACKET_COST 1000000ULL /* tokens per packet (integer refill per ms) */
#define TOKEN_MAX (PACKET_COST * PACKETS_BURSTABLE)
#define IDLE_MS 1000

int wg_rl_init(struct wg_ratelimiter *rl, wg_device *dev)
{
	rl->slots = calloc(WG_RL_SLOTS, sizeof(*rl->slots));
	if (!rl->slots)
		return -ENOMEM;
	wg_dev_random(dev, rl->hash_key, sizeof(rl->hash_key));
	return 0;
}

void wg_rl_free(struct wg_ratelimiter *rl)
{
	free(rl->slots);
	rl->slots = NULL;
}

static uint64_t source_key(const struct wg_ratelimiter *rl, const wg_endpoint *from)
{
	uint8_t buf[2 + WG_ENDPOINT_ADDR_LEN], h[crypto_shorthash_BYTES];
	size_t n = from->family == WG_AF_INET    ? WG_IP4_LEN
		   : from->family == WG_AF_INET6 ? WG_IP6_LEN / 2
						 : WG_ENDPOINT_ADDR_LEN;
	buf[0] = (uint8_t)from->family;
	buf[1] = (uint8_t)(from->family >> 8);
	memcpy(buf + 2, from->addr, n);
	crypto_shorthash(h, buf, n + 2, rl->hash_key);
	uint64_t k;
	memcpy(&k, h, 8);
	return k;
}

bool wg_rl_allow(struct wg_ratelimiter *rl, const wg_endpoint *from, uint64_t now_ms)
{
	uint64_t key = source_key(rl, from);
	struct wg_rl_entry *victim = NULL;
	for (unsigned i = 0; i < WG_RL_PROBE; i++) {
		struct wg_rl_entry *e = &rl->slots[(key + i) & (WG_RL_SLOTS - 1)];
		if (e->used && e->key == key) {
			/* Refill by elapsed time (20 per second = one per 50 ms). */
			uint64_t elapsed = now_ms - e->last_ms;
			uint64_t add = elapsed * (PACKET_COST * PACKETS_PER_SECOND / 1000);
			e->tokens = (TOKEN_MAX - e->tokens < add) ? TOKEN_MAX : e->tokens + add;
			e->last_ms = now_ms;
			if (e->tokens < PACKET_COST)
				return false;
			e->tokens -= PACKET_COST;
			return true;
		}
		if (!e->used || now_ms - e->last_ms > IDLE_MS) {
			if (!victim || victim->used)
				victim = e;
		} else if (!victim || (victim->used && e->last_ms < victim->last_ms)) {
			victim = e;
		}
	}
	victim->used = true;
	victim->key = key;
	victim->last_ms = now_ms;
	victim->tokens = TOKEN_MAX - PACKET_COST;
	return true;
}
