/* The device: identity, peers, timers, load state, counters. */
#include <errno.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "wg/wg_internal.h"
#include "trace/trace.h"

static const char *const drop_names[WG_DROP__COUNT] = {
	[WG_DROP_NONE] = "none",
	[WG_DROP_TRUNCATED] = "truncated",
	[WG_DROP_OVERSIZED] = "oversized",
	[WG_DROP_BAD_TYPE] = "bad_type",
	[WG_DROP_NO_PRIVATE_KEY] = "no_private_key",
	[WG_DROP_BAD_MAC1] = "bad_mac1",
	[WG_DROP_COOKIE_NEEDED] = "cookie_needed",
	[WG_DROP_RATE_LIMITED] = "rate_limited",
	[WG_DROP_HANDSHAKE_DECRYPT] = "handshake_decrypt",
	[WG_DROP_UNKNOWN_PEER] = "unknown_peer",
	[WG_DROP_STALE_TIMESTAMP] = "stale_timestamp",
	[WG_DROP_INITIATION_FLOOD] = "initiation_flood",
	[WG_DROP_UNKNOWN_INDEX] = "unknown_index",
	[WG_DROP_BAD_COOKIE] = "bad_cookie",
	[WG_DROP_KEY_EXPIRED] = "key_expired",
	[WG_DROP_DATA_DECRYPT] = "data_decrypt",
	[WG_DROP_REPLAY] = "replay",
	[WG_DROP_BAD_IP] = "bad_ip",
	[WG_DROP_SOURCE_NOT_ALLOWED] = "source_not_allowed",
	[WG_DROP_NO_PEER] = "no_peer",
	[WG_DROP_NO_ENDPOINT] = "no_endpoint",
	[WG_DROP_STAGED_OVERFLOW] = "staged_overflow",
	[WG_DROP_HANDSHAKE_GAVE_UP] = "handshake_gave_up",
	[WG_DROP_NO_MEMORY] = "no_memory",
	[WG_DROP_PEER_REMOVED] = "peer_removed",
};

const char *wg_drop_name(int reason)
{
	if (reason < 0 || reason >= WG_DROP__COUNT || !drop_names[reason])
		return "unknown";
	return drop_names[reason];
}

int wg_drop_count(wg_device *dev, int reason)
{
	TR_TAP(drop, TR_HOP_WG, TR_OBJ(dev->ops.ctx), NULL, TR_R_WG + reason, NULL, 0);
	dev->stats.drops[reason]++;
	return reason;
}

void wg_dev_random(wg_device *dev, void *buf, size_t len)
{
	if (dev->ops.random)
		dev->ops.random(dev->ops.ctx, buf, len);
	else
		randombytes_buf(buf, len);
}

_Static_assert(WG_JITTER_POOL <= UINT8_MAX, "jitter_left counts the pool's bytes");

void wg_dev_jitter_random(wg_device *dev, void *buf, size_t len)
{
	if (dev->ops.random || len > sizeof(dev->jitter_pool)) {
		wg_dev_random(dev, buf, len);
		return;
	}
	if (dev->jitter_left < len) {
		randombytes_buf(dev->jitter_pool, sizeof(dev->jitter_pool));
		dev->jitter_left = sizeof(dev->jitter_pool);
	}
	dev->jitter_left -= (uint8_t)len;
	memcpy(buf, dev->jitter_pool + dev->jitter_left, len);
}

uint64_t wg_dev_wall_ns(wg_device *dev) { return dev->ops.wall_ns ? dev->ops.wall_ns(dev->ops.ctx) : spz_wall_ns(); }

/* Under load when more than `threshold` handshake messages arrived within
 * one second; the state lasts one more second (kernel: 1 s after the last
 * detection). Counting arrivals stands in for the kernel's queue length. */
void wg_dev_note_handshake_message(wg_device *dev, uint64_t now_ms)
{
	dev->load_last_ms = now_ms;
	if (!dev->load_seen || now_ms - dev->load_window_ms >= 1000) {
		dev->load_window_ms = now_ms;
		dev->load_window_count = 0;
		dev->load_seen = true;
	}
	if (++dev->load_window_count > dev->load_threshold)
		dev->under_load_until = now_ms + WG_UNDER_LOAD_HOLD;
}

bool wg_dev_under_load(wg_device *dev, uint64_t now_ms)
{
	if (dev->load_mode == WG_LOAD_FORCE)
		return true;
	if (dev->load_mode == WG_LOAD_NEVER)
		return false;
	return dev->load_seen && now_ms < dev->under_load_until;
}

/* rx_buf and tx_buf: WG_MAX_DATAGRAM bytes with the transport AEAD's room
 * around them (crypto/aead.h), so packets are sealed and opened in place. */
#define IO_BUF_SIZE (SPZ_AEAD_HEADROOM + WG_MAX_DATAGRAM + SPZ_AEAD_TAILROOM)

static uint8_t *io_buf_new(void)
{
	uint8_t *b = malloc(IO_BUF_SIZE);
	return b ? b + SPZ_AEAD_HEADROOM : NULL;
}

static void io_buf_free(uint8_t *b)
{
	if (!b)
		return;
	spz_wipe(b - SPZ_AEAD_HEADROOM, IO_BUF_SIZE);
	free(b - SPZ_AEAD_HEADROOM);
}

wg_device *wg_device_new(const struct wg_ops *ops)
{
	if (!ops || !ops->send || !ops->deliver || spz_crypto_init() != 0)
		return NULL;
	wg_device *dev = calloc(1, sizeof(*dev));
	if (!dev)
		return NULL;
	dev->ops = *ops;
	dev->mtu = WG_DEFAULT_MTU;
	dev->load_threshold = WG_DEFAULT_LOAD_THRESHOLD;
	dev->next_deadline = WG_TIMER_OFF;
	dev->rx_buf = io_buf_new();
	dev->tx_buf = io_buf_new();
	if (!dev->rx_buf || !dev->tx_buf || wg_index_init(&dev->index) != 0 || wg_rl_init(&dev->rl, dev) != 0) {
		wg_device_free(dev);
		return NULL;
	}
	return dev;
}

void wg_device_free(wg_device *dev)
{
	if (!dev)
		return;
	wg_peer_remove_all(dev);
	wg_aip_free(&dev->aip);
	wg_index_free(&dev->index);
	wg_rl_free(&dev->rl);
	free(dev->peer_buckets);
	io_buf_free(dev->rx_buf);
	io_buf_free(dev->tx_buf);
	spz_wipe(dev, sizeof(*dev));
	free(dev);
}

int wg_device_set_private_key(wg_device *dev, uint64_t now_ms, const uint8_t *key)
{
	uint8_t k[NOISE_PUBLIC_KEY_LEN];
	bool has = key && !spz_is_zero(key, NOISE_PUBLIC_KEY_LEN);
	if (has) {
		memcpy(k, key, NOISE_PUBLIC_KEY_LEN);
		spz_x25519_clamp(k);
		/* Same key (as `wg setconf` resends it): keep the sessions. */
		if (dev->has_key && spz_equal(k, dev->priv, NOISE_PUBLIC_KEY_LEN)) {
			spz_wipe(k, sizeof(k));
			return 0;
		}
	} else if (!dev->has_key) {
		return 0;
	}
	if (has) {
		uint8_t pub[NOISE_PUBLIC_KEY_LEN];
		if (spz_x25519_public(pub, k) != 0) {
			spz_wipe(k, sizeof(k));
			return -EINVAL;
		}
		/* A peer with our own public key cannot exist. */
		wg_peer *self = wg_peer_lookup(dev, pub);
		if (self)
			wg_peer_remove(dev, self);
		memcpy(dev->priv, k, NOISE_PUBLIC_KEY_LEN);
		memcpy(dev->pub, pub, NOISE_PUBLIC_KEY_LEN);
		dev->has_key = true;
	} else {
		spz_wipe(dev->priv, NOISE_PUBLIC_KEY_LEN);
		memset(dev->pub, 0, NOISE_PUBLIC_KEY_LEN);
		dev->has_key = false;
	}
	spz_wipe(k, sizeof(k));
	wg_cookie_checker_init(dev);
	for (wg_peer *p = dev->peers_head; p; p = p->list_next) {
		wg_noise_precompute(dev, p);
		wg_noise_expire_keypairs(dev, p);
		p->have_sent_handshake = false;
	}
	(void)now_ms;
	return 0;
}

int wg_device_private_key(const wg_device *dev, uint8_t *out)
{
	if (!dev->has_key)
		return -ENOKEY;
	memcpy(out, dev->priv, NOISE_PUBLIC_KEY_LEN);
	return 0;
}

int wg_device_public_key(const wg_device *dev, uint8_t *out)
{
	if (!dev->has_key)
		return -ENOKEY;
	memcpy(out, dev->pub, NOISE_PUBLIC_KEY_LEN);
	return 0;
}

void wg_device_set_listen_port(wg_device *dev, uint16_t port) { dev->listen_port = port; }
uint16_t wg_device_listen_port(const wg_device *dev) { return dev->listen_port; }
void wg_device_set_fwmark(wg_device *dev, uint32_t mark) { dev->fwmark = mark; }
uint32_t wg_device_fwmark(const wg_device *dev) { return dev->fwmark; }
void wg_device_set_mtu(wg_device *dev, uint32_t mtu) { dev->mtu = mtu; }
void wg_device_set_flags(wg_device *dev, uint32_t flags) { dev->flags = flags; }

void wg_device_set_under_load(wg_device *dev, int mode, uint32_t threshold)
{
	dev->load_mode = mode;
	if (threshold)
		dev->load_threshold = threshold;
}

void wg_device_stats(const wg_device *dev, struct wg_device_stats *out)
{
	*out = dev->stats;
	out->peers = dev->npeers;
	/* As of the last handshake message (stats take no clock). */
	out->under_load = dev->load_mode == WG_LOAD_FORCE || (dev->load_mode == WG_LOAD_AUTO && dev->load_seen &&
							      dev->load_last_ms < dev->under_load_until);
}

uint64_t wg_device_tick(wg_device *dev, uint64_t now_ms)
{
	uint64_t next = WG_TIMER_OFF;
	/* A timer action never removes a peer, so the list stays intact. */
	for (wg_peer *p = dev->peers_head; p; p = p->list_next) {
		uint64_t n = wg_timers_next(p) <= now_ms ? wg_timers_run(dev, p, now_ms) : wg_timers_next(p);
		if (n < next)
			next = n;
	}
	dev->next_deadline = next;
	return next;
}

uint64_t wg_device_next_deadline(const wg_device *dev) { return dev->next_deadline; }

wg_peer *wg_device_lookup_ip(const wg_device *dev, int family, const uint8_t *addr)
{
	return wg_aip_lookup(&dev->aip, family, addr);
}

size_t wg_device_peers(const wg_device *dev, wg_peer **out, size_t max)
{
	size_t n = 0;
	for (wg_peer *p = dev->peers_head; p; p = p->list_next, n++)
		if (n < max)
			out[n] = p;
	return n;
}
