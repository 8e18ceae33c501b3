/* Receiving: every datagram from the network is checked here before any
 * state changes (kernel receive.c, Go receive.go). */
#include <string.h>

#include "base/log.h"
#include "wg/wg_internal.h"
#include "trace/trace.h"

static void set_endpoint(wg_peer *peer, const wg_endpoint *from)
{
	/* Roaming: authenticated packets move the endpoint to their source. */
	if (from && from->family != WG_AF_NONE)
		peer->endpoint = *from;
}

static int handshake_gate(wg_device *dev, uint64_t now_ms, const wg_endpoint *from, const uint8_t *msg, size_t len)
{
	if (!dev->has_key)
		return wg_drop_count(dev, WG_DROP_NO_PRIVATE_KEY);
	wg_dev_note_handshake_message(dev, now_ms);
	if (!wg_cookie_check_mac1(dev, msg, len))
		return wg_drop_count(dev, WG_DROP_BAD_MAC1);
	if (wg_dev_under_load(dev, now_ms)) {
		if (!wg_cookie_check_mac2(dev, msg, len, from, now_ms)) {
			wg_cookie_send_reply(dev, msg, len, from, now_ms);
			return wg_drop_count(dev, WG_DROP_COOKIE_NEEDED);
		}
		if (!wg_rl_allow(&dev->rl, from, now_ms))
			return wg_drop_count(dev, WG_DROP_RATE_LIMITED);
	}
	return 0;
}

static int receive_initiation(wg_device *dev, uint64_t now_ms, const wg_endpoint *from, const uint8_t *msg)
{
	wg_peer *peer = NULL;
	int rc = handshake_gate(dev, now_ms, from, msg, WG_INITIATION_LEN);
	if (rc)
		return rc;
	rc = wg_noise_consume_initiation(dev, now_ms, msg, &peer);
	if (rc)
		return wg_drop_count(dev, rc);
	dev->stats.initiations_received++;
	peer->rx_bytes += WG_INITIATION_LEN;
	set_endpoint(peer, from);
	wg_timers_any_authenticated_packet_traversal(dev, peer, now_ms);
	wg_timers_any_authenticated_packet_received(peer);
	wg_send_handshake_response(dev, peer, now_ms);
	return 0;
}

static int receive_response(wg_device *dev, uint64_t now_ms, const wg_endpoint *from, const uint8_t *msg)
{
	wg_peer *peer = NULL;
	int rc = handshake_gate(dev, now_ms, from, msg, WG_RESPONSE_LEN);
	if (rc)
		return rc;
	rc = wg_noise_consume_response(dev, msg, &peer);
	if (rc)
		return wg_drop_count(dev, rc);
	dev->stats.responses_received++;
	peer->rx_bytes += WG_RESPONSE_LEN;
	set_endpoint(peer, from);
	wg_timers_any_authenticated_packet_traversal(dev, peer, now_ms);
	wg_timers_any_authenticated_packet_received(peer);
	if (wg_noise_begin_session(dev, peer, now_ms) != 0)
		return wg_drop_count(dev, WG_DROP_NO_MEMORY);
	wg_timers_session_derived(dev, peer, now_ms);
	wg_timers_handshake_complete(dev, peer, now_ms);
	/* Confirm the session to the responder: staged packets or a keepalive. */
	wg_send_keepalive(dev, peer, now_ms);
	return 0;
}

static int receive_cookie(wg_device *dev, uint64_t now_ms, const uint8_t *msg)
{
	int rc = wg_cookie_consume_reply(dev, msg, now_ms);
	return rc ? wg_drop_count(dev, rc) : 0;
}

/* The inner packet's real length (trims padding), or 0 if it is not a
 * well-formed IPv4/IPv6 packet; its source address and family. */
static size_t inner_packet(const uint8_t *p, size_t len, int *family, const uint8_t **src)
{
	if (len >= WG_IP4_HDR_LEN && p[0] >> 4 == 4) {
		size_t tot = (size_t)p[2] << 8 | p[3];
		if (tot < WG_IP4_HDR_LEN || tot > len)
			return 0;
		*family = WG_AF_INET;
		*src = p + WG_IP4_SRC;
		return tot;
	}
	if (len >= WG_IP6_HDR_LEN && p[0] >> 4 == 6) {
		size_t tot = ((size_t)p[4] << 8 | p[5]) + WG_IP6_HDR_LEN;
		if (tot > len)
			return 0;
		*family = WG_AF_INET6;
		*src = p + WG_IP6_SRC;
		return tot;
	}
	return 0;
}

static void keep_key_fresh(wg_device *dev, wg_peer *peer, uint64_t now_ms)
{
	struct wg_keypair *kp = peer->kp_cur;
	if (peer->timers.sent_lastminute_handshake)
		return;
	/* The initiator renews before the session dies (180 - 10 - 5 s). */
	if (kp && kp->send_valid && kp->initiator &&
	    now_ms - kp->created_ms >= WG_REJECT_AFTER_TIME - WG_KEEPALIVE_TIMEOUT - WG_REKEY_TIMEOUT) {
		peer->timers.sent_lastminute_handshake = true;
		wg_send_handshake_initiation(dev, peer, now_ms, false);
	}
}

static int receive_data(wg_device *dev, uint64_t now_ms, const wg_endpoint *from, const uint8_t *msg, size_t len)
{
	struct wg_index_entry *ent = wg_index_find(&dev->index, wg_le32(msg + WG_DATA_RECEIVER));
	if (!ent || ent->kind != WG_INDEX_KEYPAIR)
		return wg_drop_count(dev, WG_DROP_UNKNOWN_INDEX);
	struct wg_keypair *kp = ent->kp;
	wg_peer *peer = ent->peer;
	if (!kp->recv_valid || now_ms - kp->created_ms >= WG_REJECT_AFTER_TIME) {
		kp->recv_valid = false;
		return wg_drop_count(dev, WG_DROP_KEY_EXPIRED);
	}
	uint64_t counter = wg_le64(msg + WG_DATA_COUNTER);
	uint8_t *plain = dev->rx_buf;
	size_t plen = len - WG_DATA_MIN_LEN;
	if (!spz_aead_open(&kp->recv, counter, msg + WG_DATA_HEADER_LEN, len - WG_DATA_HEADER_LEN, plain))
		return wg_drop_count(dev, WG_DROP_DATA_DECRYPT);
	TR_TAP(wg, TR_HOP_WG_DECRYPT, TR_OBJ(dev->ops.ctx), peer->pub, kp->local_index, counter, plain, plen);
	/* Only now, authenticated, may the counter move the window. */
	if (!wg_replay_check(&kp->replay, counter, WG_REJECT_AFTER_MESSAGES))
		return wg_drop_count(dev, WG_DROP_REPLAY);

	set_endpoint(peer, from);
	if (wg_noise_received_with_keypair(dev, peer, kp)) {
		/* The responder's session is confirmed: use it. */
		wg_timers_handshake_complete(dev, peer, now_ms);
		wg_send_staged(dev, peer, now_ms);
	}
	keep_key_fresh(dev, peer, now_ms);
	wg_timers_any_authenticated_packet_traversal(dev, peer, now_ms);
	wg_timers_any_authenticated_packet_received(peer);
	peer->rx_bytes += len;

	if (plen == 0) {
		dev->stats.keepalives_received++;
		return 0;
	}
	wg_timers_data_received(dev, peer, now_ms);

	int family;
	const uint8_t *src;
	size_t ilen = inner_packet(plain, plen, &family, &src);
	if (!ilen)
		return wg_drop_count(dev, WG_DROP_BAD_IP);
	if (wg_aip_lookup(&dev->aip, family, src) != peer)
		return wg_drop_count(dev, WG_DROP_SOURCE_NOT_ALLOWED);
	peer->rx_packets++;
	dev->stats.rx_packets++;
	/* Last: deliver may send (a stack answering at once). */
	dev->ops.deliver(dev->ops.ctx, peer, plain, ilen);
	return 0;
}

int wg_device_receive(wg_device *dev, uint64_t now_ms, const wg_endpoint *from, const uint8_t *dgram, size_t len)
{
	static const wg_endpoint none;
	if (!from)
		from = &none;
	TR_TAP(pkt, TR_HOP_WG_CIPHER_IN, TR_OBJ(dev->ops.ctx), NULL, dgram, len);
	dev->stats.rx_datagrams++;
	dev->stats.rx_bytes += len;
	if (!dgram || len < 4)
		return wg_drop_count(dev, WG_DROP_TRUNCATED);
	size_t want;
	uint32_t type = wg_le32(dgram);
	switch (type) {
	case WG_MSG_INITIATION: want = WG_INITIATION_LEN; break;
	case WG_MSG_RESPONSE: want = WG_RESPONSE_LEN; break;
	case WG_MSG_COOKIE: want = WG_COOKIE_LEN; break;
	case WG_MSG_DATA:
		if (len < WG_DATA_MIN_LEN)
			return wg_drop_count(dev, WG_DROP_TRUNCATED);
		if (len > WG_MAX_DATAGRAM)
			return wg_drop_count(dev, WG_DROP_OVERSIZED);
		return receive_data(dev, now_ms, from, dgram, len);
	default: return wg_drop_count(dev, WG_DROP_BAD_TYPE);
	}
	if (len < want)
		return wg_drop_count(dev, WG_DROP_TRUNCATED);
	if (len > want)
		return wg_drop_count(dev, WG_DROP_OVERSIZED);
	if (type == WG_MSG_INITIATION)
		return receive_initiation(dev, now_ms, from, dgram);
	if (type == WG_MSG_RESPONSE)
		return receive_response(dev, now_ms, from, dgram);
	return receive_cookie(dev, now_ms, dgram);
}
