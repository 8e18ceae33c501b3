/* Peers: creation, lookup by public key, configuration accessors. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "wg/wg_internal.h"
#include "base/list.h"

#define PEER_BUCKETS_MIN 16

static uint32_t key_hash(const uint8_t pub[NOISE_PUBLIC_KEY_LEN])
{
	/* Public keys are uniformly random; the table holds only configured
	 * keys, so hostile lookups cannot build long chains. */
	return wg_le32(pub) ^ wg_le32(pub + NOISE_PUBLIC_KEY_LEN - 4);
}

static int buckets_grow(wg_device *dev)
{
	uint32_t n = dev->peer_nbuckets ? dev->peer_nbuckets * 2 : PEER_BUCKETS_MIN;
	wg_peer **b = calloc(n, sizeof(*b));
	if (!b)
		return -ENOMEM;
	for (wg_peer *p = dev->peers_head; p; p = p->list_next) {
		uint32_t h = key_hash(p->pub) & (n - 1);
		p->hash_next = b[h];
		b[h] = p;
	}
	free(dev->peer_buckets);
	dev->peer_buckets = b;
	dev->peer_nbuckets = n;
	return 0;
}

wg_peer *wg_peer_lookup(const wg_device *dev, const uint8_t pub[NOISE_PUBLIC_KEY_LEN])
{
	if (!dev->peer_nbuckets)
		return NULL;
	for (wg_peer *p = dev->peer_buckets[key_hash(pub) & (dev->peer_nbuckets - 1)]; p; p = p->hash_next)
		if (spz_equal(p->pub, pub, NOISE_PUBLIC_KEY_LEN))
			return p;
	return NULL;
}

wg_peer *wg_peer_find(const wg_device *dev, const uint8_t *pub) { return wg_peer_lookup(dev, pub); }

int wg_peer_add(wg_device *dev, const uint8_t *pub, wg_peer **out)
{
	wg_peer *p = wg_peer_lookup(dev, pub);
	if (p) {
		if (out)
			*out = p;
		return -EEXIST;
	}
	if (dev->has_key && spz_equal(pub, dev->pub, NOISE_PUBLIC_KEY_LEN))
		return -EINVAL;
	if (dev->npeers >= WG_MAX_PEERS)
		return -ENOSPC;
	if ((dev->npeers + 1) > dev->peer_nbuckets && buckets_grow(dev) != 0)
		return -ENOMEM;
	p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->dev = dev;
	memcpy(p->pub, pub, NOISE_PUBLIC_KEY_LEN);
	wg_timers_init(p);
	wg_cookie_gen_init(p);
	wg_noise_precompute(dev, p);

	p->list_prev = dev->peers_tail;
	if (dev->peers_tail)
		dev->peers_tail->list_next = p;
	else
		dev->peers_head = p;
	dev->peers_tail = p;
	uint32_t h = key_hash(pub) & (dev->peer_nbuckets - 1);
	p->hash_next = dev->peer_buckets[h];
	dev->peer_buckets[h] = p;
	dev->npeers++;
	if (out)
		*out = p;
	return 0;
}

void wg_peer_remove(wg_device *dev, wg_peer *p)
{
	wg_aip_remove_by_peer(&dev->aip, p);
	wg_staged_purge(dev, p, WG_DROP_PEER_REMOVED);
	wg_noise_handshake_clear(dev, p);
	wg_noise_keypairs_clear(dev, p);
	wg_timers_stop(p);

	wg_peer **pp = &dev->peer_buckets[key_hash(p->pub) & (dev->peer_nbuckets - 1)];
	while (*pp != p)
		pp = &(*pp)->hash_next;
	*pp = p->hash_next;
	SPZ_DLIST_UNLINK_TAIL(dev->peers_head, dev->peers_tail, p, list_prev, list_next);
	dev->npeers--;
	spz_wipe(p, sizeof(*p));
	free(p);
}

void wg_peer_remove_all(wg_device *dev)
{
	while (dev->peers_head)
		wg_peer_remove(dev, dev->peers_head);
}

void wg_peer_public_key(const wg_peer *peer, uint8_t *out) { memcpy(out, peer->pub, NOISE_PUBLIC_KEY_LEN); }

void wg_peer_set_preshared_key(wg_peer *peer, const uint8_t *psk)
{
	if (psk)
		memcpy(peer->hs.psk, psk, NOISE_SYMMETRIC_KEY_LEN);
	else
		spz_wipe(peer->hs.psk, NOISE_SYMMETRIC_KEY_LEN);
}

int wg_peer_preshared_key(const wg_peer *peer, uint8_t *out)
{
	memcpy(out, peer->hs.psk, NOISE_SYMMETRIC_KEY_LEN);
	return spz_is_zero(peer->hs.psk, NOISE_SYMMETRIC_KEY_LEN) ? 0 : 1;
}

int wg_peer_set_endpoint(wg_peer *peer, const wg_endpoint *ep)
{
	if (!ep || ep->family == WG_AF_NONE) {
		memset(&peer->endpoint, 0, sizeof(peer->endpoint));
		return 0;
	}
	if (ep->family != WG_AF_INET && ep->family != WG_AF_INET6 && ep->family != WG_AF_DERP)
		return -EINVAL;
	peer->endpoint = *ep;
	return 0;
}

int wg_peer_endpoint(const wg_peer *peer, wg_endpoint *out)
{
	*out = peer->endpoint;
	return peer->endpoint.family == WG_AF_NONE ? -ENOENT : 0;
}

int wg_peer_set_persistent_keepalive(wg_device *dev, wg_peer *peer, uint64_t now_ms, uint16_t secs)
{
	uint16_t old = peer->keepalive;
	peer->keepalive = secs;
	if (!secs)
		peer->timers.persistent_keepalive = WG_TIMER_OFF;
	/* Turning it on sends one at once (opens NAT mappings right away). */
	if (!old && secs)
		wg_send_keepalive(dev, peer, now_ms);
	return 0;
}

int wg_peer_allowed_ip_add(wg_device *dev, wg_peer *peer, int family, const uint8_t *addr, int cidr)
{
	return wg_aip_insert(&dev->aip, family, addr, cidr, peer);
}

int wg_peer_allowed_ip_remove(wg_device *dev, wg_peer *peer, int family, const uint8_t *addr, int cidr)
{
	return wg_aip_remove(&dev->aip, family, addr, cidr, peer);
}

void wg_peer_allowed_ips_clear(wg_device *dev, wg_peer *peer) { wg_aip_remove_by_peer(&dev->aip, peer); }

size_t wg_peer_allowed_ips(const wg_peer *peer, struct wg_allowed_ip *out, size_t max)
{
	return wg_aip_list(peer, out, max);
}

void wg_peer_stats(const wg_device *dev, const wg_peer *peer, uint64_t now_ms, struct wg_peer_stats *out)
{
	memset(out, 0, sizeof(*out));
	out->rx_bytes = peer->rx_bytes;
	out->tx_bytes = peer->tx_bytes;
	out->rx_packets = peer->rx_packets;
	out->tx_packets = peer->tx_packets;
	out->last_handshake_sec = (int64_t)(peer->last_handshake_wall_ns / 1000000000ULL);
	out->last_handshake_nsec = (int64_t)(peer->last_handshake_wall_ns % 1000000000ULL);
	out->last_handshake_ms = peer->last_handshake_ms;
	out->handshakes_completed = peer->handshakes_completed;
	out->handshake_attempts = peer->timers.handshake_attempts;
	out->staged = peer->staged_count;
	out->has_current = peer->kp_cur && peer->kp_cur->send_valid;
	out->has_previous = peer->kp_prev != NULL;
	out->has_next = peer->kp_next != NULL;
	out->handshake_state = peer->hs.state;
	if (peer->kp_cur) {
		out->current_send_counter = peer->kp_cur->send_counter;
		out->current_age_ms = now_ms - peer->kp_cur->created_ms;
	}
	out->persistent_keepalive = peer->keepalive;
	out->has_endpoint = peer->endpoint.family != WG_AF_NONE;
	out->endpoint = peer->endpoint;
	(void)dev;
}

void wg_peer_set_user(wg_peer *peer, void *user) { peer->user = user; }

void *wg_peer_user(const wg_peer *peer) { return peer->user; }

int wg_peer_test_set_send_counter(wg_peer *peer, uint64_t counter)
{
	if (!peer->kp_cur)
		return -ENOENT;
	peer->kp_cur->send_counter = counter;
	return 0;
}
