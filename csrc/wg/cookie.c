/* mac1/mac2 and cookie replies (spec section 4). The checker is the
 * device's receiving side, the generator each peer's sending side. */
#include <string.h>

#include "wg/wg_internal.h"

static const char LABEL_MAC1[8] = {'m', 'a', 'c', '1', '-', '-', '-', '-'};
static const char LABEL_COOKIE[8] = {'c', 'o', 'o', 'k', 'i', 'e', '-', '-'};

static void derive_keys(uint8_t mac1_key[NOISE_SYMMETRIC_KEY_LEN], uint8_t cookie_key[NOISE_SYMMETRIC_KEY_LEN],
			const uint8_t pub[NOISE_PUBLIC_KEY_LEN])
{
	spz_hash(mac1_key, LABEL_MAC1, sizeof(LABEL_MAC1), pub, NOISE_PUBLIC_KEY_LEN, NULL, 0);
	spz_hash(cookie_key, LABEL_COOKIE, sizeof(LABEL_COOKIE), pub, NOISE_PUBLIC_KEY_LEN, NULL, 0);
}

void wg_cookie_checker_init(wg_device *dev)
{
	struct wg_cookie_checker *c = &dev->checker;
	if (dev->has_key)
		derive_keys(c->mac1_key, c->cookie_key, dev->pub);
	else
		memset(c, 0, offsetof(struct wg_cookie_checker, secret));
}

void wg_cookie_gen_init(wg_peer *peer)
{
	struct wg_cookie_gen *g = &peer->cookie;
	memset(g, 0, sizeof(*g));
	derive_keys(g->mac1_key, g->cookie_key, peer->pub);
}

/* mac1 covers everything before it; mac2 everything before mac2. */
static size_t mac1_offset(size_t len) { return len - 2 * COOKIE_LEN; }
static size_t mac2_offset(size_t len) { return len - COOKIE_LEN; }

void wg_cookie_add_macs(wg_device *dev, wg_peer *peer, uint8_t *msg, size_t len, uint64_t now_ms)
{
	(void)dev;
	struct wg_cookie_gen *g = &peer->cookie;
	uint8_t *mac1 = msg + mac1_offset(len), *mac2 = msg + mac2_offset(len);
	spz_mac(mac1, g->mac1_key, NOISE_SYMMETRIC_KEY_LEN, msg, mac1_offset(len));
	memcpy(g->last_mac1, mac1, COOKIE_LEN);
	g->have_sent_mac1 = true;
	if (!g->cookie_valid || now_ms - g->cookie_ms >= WG_COOKIE_VALID_TIME) {
		memset(mac2, 0, COOKIE_LEN);
		return;
	}
	spz_mac(mac2, g->cookie, COOKIE_LEN, msg, mac2_offset(len));
}

bool wg_cookie_check_mac1(wg_device *dev, const uint8_t *msg, size_t len)
{
	uint8_t mac[COOKIE_LEN];
	spz_mac(mac, dev->checker.mac1_key, NOISE_SYMMETRIC_KEY_LEN, msg, mac1_offset(len));
	return spz_equal(mac, msg + mac1_offset(len), COOKIE_LEN);
}

/* The bytes identifying a source: family, address, port (any stable
 * encoding works; the other side treats the cookie as opaque). */
#define SOURCE_MAX (2 + WG_ENDPOINT_ADDR_LEN + 2) /* family, address, port */
static size_t source_bytes(const wg_endpoint *from, uint8_t out[SOURCE_MAX])
{
	size_t n = from->family == WG_AF_INET    ? WG_IP4_LEN
		   : from->family == WG_AF_INET6 ? WG_IP6_LEN
						 : WG_ENDPOINT_ADDR_LEN;
	out[0] = (uint8_t)from->family;
	out[1] = (uint8_t)(from->family >> 8);
	memcpy(out + 2, from->addr, n);
	out[2 + n] = (uint8_t)(from->port >> 8);
	out[3 + n] = (uint8_t)from->port;
	return n + 4;
}

static void make_cookie(wg_device *dev, uint8_t cookie[COOKIE_LEN], const wg_endpoint *from, uint64_t now_ms)
{
	struct wg_cookie_checker *c = &dev->checker;
	/* The secret rotates lazily every two minutes. */
	if (!c->secret_valid || now_ms - c->secret_ms >= WG_COOKIE_REFRESH_TIME) {
		wg_dev_random(dev, c->secret, COOKIE_SECRET_LEN);
		c->secret_ms = now_ms;
		c->secret_valid = true;
	}
	uint8_t src[SOURCE_MAX];
	size_t n = source_bytes(from, src);
	spz_mac(cookie, c->secret, COOKIE_SECRET_LEN, src, n);
}

bool wg_cookie_check_mac2(wg_device *dev, const uint8_t *msg, size_t len, const wg_endpoint *from, uint64_t now_ms)
{
	uint8_t cookie[COOKIE_LEN], mac[COOKIE_LEN];
	make_cookie(dev, cookie, from, now_ms);
	spz_mac(mac, cookie, COOKIE_LEN, msg, mac2_offset(len));
	bool ok = spz_equal(mac, msg + mac2_offset(len), COOKIE_LEN);
	spz_wipe(cookie, sizeof(cookie));
	return ok;
}

void wg_cookie_send_reply(wg_device *dev, const uint8_t *msg, size_t len, const wg_endpoint *from, uint64_t now_ms)
{
	uint8_t reply[WG_COOKIE_LEN], cookie[COOKIE_LEN];
	if (from->family == WG_AF_NONE)
		return; /* no source to answer */
	memset(reply, 0, sizeof(reply));
	reply[0] = WG_MSG_COOKIE;
	/* Both handshake messages carry the sender index at the same offset. */
	memcpy(reply + WG_COOKIE_RECEIVER, msg + WG_INIT_SENDER, WG_INDEX_LEN);
	wg_dev_random(dev, reply + WG_COOKIE_NONCE, COOKIE_NONCE_LEN);
	make_cookie(dev, cookie, from, now_ms);
	spz_xaead_encrypt(reply + WG_COOKIE_ENCRYPTED, cookie, COOKIE_LEN, msg + mac1_offset(len), COOKIE_LEN,
			  reply + WG_COOKIE_NONCE, dev->checker.cookie_key);
	spz_wipe(cookie, sizeof(cookie));
	dev->stats.cookies_sent++;
	dev->stats.tx_datagrams++;
	dev->stats.tx_bytes += sizeof(reply);
	dev->ops.send(dev->ops.ctx, NULL, from, reply, sizeof(reply));
}

int wg_cookie_consume_reply(wg_device *dev, const uint8_t *msg, uint64_t now_ms)
{
	struct wg_index_entry *ent = wg_index_find(&dev->index, wg_le32(msg + WG_COOKIE_RECEIVER));
	if (!ent)
		return WG_DROP_UNKNOWN_INDEX;
	struct wg_cookie_gen *g = &ent->peer->cookie;
	uint8_t cookie[COOKIE_LEN];
	/* A reply answers our last mac1, once. */
	if (!g->have_sent_mac1 || !spz_xaead_decrypt(cookie, msg + WG_COOKIE_ENCRYPTED, NOISE_ENCRYPTED_LEN(COOKIE_LEN),
						     g->last_mac1, COOKIE_LEN, msg + WG_COOKIE_NONCE, g->cookie_key))
		return WG_DROP_BAD_COOKIE;
	memcpy(g->cookie, cookie, COOKIE_LEN);
	spz_wipe(cookie, sizeof(cookie));
	g->cookie_ms = now_ms;
	g->cookie_valid = true;
	g->have_sent_mac1 = false;
	dev->stats.cookies_received++;
	return 0;
}
