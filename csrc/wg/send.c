/* Sending: handshake messages, transport data, keepalives, the staged
 * queue (kernel send.c, Go send.go). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "wg/wg_internal.h"
#include "base/list.h"
#include "trace/trace.h"

void wg_transmit(wg_device *dev, wg_peer *peer, const uint8_t *data, size_t len)
{
	/* Without an endpoint the message is built (timers run as usual, like
	 * the kernel) but has nowhere to go. */
	if (peer->endpoint.family == WG_AF_NONE)
		return;
	TR_TAP(pkt, TR_HOP_WG_CIPHER_OUT, TR_OBJ(dev->ops.ctx), peer->pub, data, len);
	peer->tx_bytes += len;
	dev->stats.tx_datagrams++;
	dev->stats.tx_bytes += len;
	dev->ops.send(dev->ops.ctx, peer, &peer->endpoint, data, len);
}

void wg_send_handshake_initiation(wg_device *dev, wg_peer *peer, uint64_t now_ms, bool retry)
{
	uint8_t msg[WG_INITIATION_LEN];
	if (!retry)
		peer->timers.handshake_attempts = 0;
	/* At most one initiation per REKEY_TIMEOUT (responses count too). */
	if (peer->have_sent_handshake && now_ms - peer->last_sent_handshake_ms < WG_REKEY_TIMEOUT)
		return;
	if (wg_noise_create_initiation(dev, peer, msg) != 0)
		return;
	peer->last_sent_handshake_ms = now_ms;
	peer->have_sent_handshake = true;
	wg_cookie_add_macs(dev, peer, msg, sizeof(msg), now_ms);
	wg_timers_any_authenticated_packet_traversal(dev, peer, now_ms);
	wg_timers_any_authenticated_packet_sent(peer);
	dev->stats.initiations_sent++;
	wg_transmit(dev, peer, msg, sizeof(msg));
	wg_timers_handshake_initiated(dev, peer, now_ms);
}

void wg_send_handshake_response(wg_device *dev, wg_peer *peer, uint64_t now_ms)
{
	uint8_t msg[WG_RESPONSE_LEN];
	/* Suppresses our own initiation for REKEY_TIMEOUT: the initiator's
	 * first data packet will confirm this session. */
	peer->last_sent_handshake_ms = now_ms;
	peer->have_sent_handshake = true;
	if (wg_noise_create_response(dev, peer, msg) != 0)
		return;
	if (wg_noise_begin_session(dev, peer, now_ms) != 0)
		return;
	wg_cookie_add_macs(dev, peer, msg, sizeof(msg), now_ms);
	wg_timers_session_derived(dev, peer, now_ms);
	wg_timers_any_authenticated_packet_traversal(dev, peer, now_ms);
	wg_timers_any_authenticated_packet_sent(peer);
	dev->stats.responses_sent++;
	wg_transmit(dev, peer, msg, sizeof(msg));
}

/* Padding to a multiple of 16, never beyond the MTU (kernel send.c). */
static size_t padding(const wg_device *dev, size_t len)
{
	size_t mtu = dev->mtu, l = len;
	if (mtu && l > mtu)
		l %= mtu;
	size_t padded = (l + 15) & ~(size_t)15;
	if (mtu && padded > mtu)
		padded = mtu;
	return padded > l ? padded - l : 0;
}

static bool keypair_usable(const struct wg_keypair *kp, uint64_t now_ms)
{
	return kp && kp->send_valid && now_ms - kp->created_ms < WG_REJECT_AFTER_TIME &&
	       kp->send_counter < WG_REJECT_AFTER_MESSAGES;
}

/* Encrypts one packet (len may be 0: a keepalive) with the current keypair
 * and sends it. The caller checked keypair_usable. */
static void encrypt_and_send(wg_device *dev, wg_peer *peer, struct wg_keypair *kp, const uint8_t *ip, size_t len)
{
	uint8_t *out = dev->tx_buf;
	size_t pad = len ? padding(dev, len) : 0;
	uint64_t counter = kp->send_counter++;
	TR_TAP(wg, TR_HOP_WG_ENCRYPT, TR_OBJ(dev->ops.ctx), peer->pub, kp->remote_index, counter, ip, len);
	/* The seal uses the bytes before its output (the header's place and
	 * tx_buf's headroom): the header goes in after it. */
	if (!spz_aead_seal(&kp->send, counter, ip, len, pad, out + WG_DATA_HEADER_LEN)) {
		spz_log(SPZ_LOG_ERROR, "wg", "OpenSSL failed to encrypt");
		return;
	}
	out[0] = WG_MSG_DATA;
	out[1] = out[2] = out[3] = 0;
	wg_put_le32(out + WG_DATA_RECEIVER, kp->remote_index);
	wg_put_le64(out + WG_DATA_COUNTER, counter);
	if (len) {
		peer->tx_packets++;
		dev->stats.tx_packets++;
	} else {
		dev->stats.keepalives_sent++;
	}
	wg_transmit(dev, peer, out, WG_DATA_HEADER_LEN + len + pad + SPZ_AEAD_TAG_LEN);
}

static void keep_key_fresh(wg_device *dev, wg_peer *peer, uint64_t now_ms)
{
	struct wg_keypair *kp = peer->kp_cur;
	if (!kp || !kp->send_valid)
		return;
	if (kp->send_counter > WG_REKEY_AFTER_MESSAGES ||
	    (kp->initiator && now_ms - kp->created_ms >= WG_REKEY_AFTER_TIME))
		wg_send_handshake_initiation(dev, peer, now_ms, false);
}

/* After one or more packets went out on the current keypair. */
static void after_sent(wg_device *dev, wg_peer *peer, uint64_t now_ms, bool data)
{
	wg_timers_any_authenticated_packet_traversal(dev, peer, now_ms);
	wg_timers_any_authenticated_packet_sent(peer);
	if (data)
		wg_timers_data_sent(dev, peer, now_ms);
	keep_key_fresh(dev, peer, now_ms);
}

void wg_send_staged(wg_device *dev, wg_peer *peer, uint64_t now_ms)
{
	if (!peer->staged_head)
		return;
	struct wg_keypair *kp = peer->kp_cur;
	if (!keypair_usable(kp, now_ms)) {
		if (kp)
			kp->send_valid = false;
		wg_send_handshake_initiation(dev, peer, now_ms, false);
		return;
	}
	bool data = false;
	while (peer->staged_head && kp->send_counter < WG_REJECT_AFTER_MESSAGES) {
		struct wg_staged *s;
		SPZ_FIFO_POP(peer->staged_head, peer->staged_tail, peer->staged_count, s, next);
		encrypt_and_send(dev, peer, kp, s->data, s->len);
		data |= s->len != 0;
		free(s);
	}
	after_sent(dev, peer, now_ms, data);
	if (peer->staged_head) {
		/* The counter ran out: the rest waits for new keys. */
		kp->send_valid = false;
		wg_send_handshake_initiation(dev, peer, now_ms, false);
	}
}

static int stage(wg_device *dev, wg_peer *peer, const uint8_t *ip, size_t len)
{
	struct wg_staged *s = malloc(sizeof(*s) + len);
	if (!s)
		return wg_drop_count(dev, WG_DROP_NO_MEMORY);
	s->len = len;
	if (len)
		memcpy(s->data, ip, len);
	if (peer->staged_count >= WG_MAX_STAGED) {
		/* Bounded: the oldest packet makes room. */
		struct wg_staged *old;
		SPZ_FIFO_POP(peer->staged_head, peer->staged_tail, peer->staged_count, old, next);
		free(old);
		wg_drop_count(dev, WG_DROP_STAGED_OVERFLOW);
	}
	SPZ_FIFO_PUSH(peer->staged_head, peer->staged_tail, peer->staged_count, s, next);
	return 0;
}

void wg_staged_purge(wg_device *dev, wg_peer *peer, int reason)
{
	struct wg_staged *s;
	for (;;) {
		SPZ_FIFO_POP(peer->staged_head, peer->staged_tail, peer->staged_count, s, next);
		if (!s)
			break;
		free(s);
		wg_drop_count(dev, reason);
	}
}

void wg_send_keepalive(wg_device *dev, wg_peer *peer, uint64_t now_ms)
{
	struct wg_keypair *kp = peer->kp_cur;
	/* Fast path: nothing staged and a usable session. */
	if (!peer->staged_head && keypair_usable(kp, now_ms)) {
		encrypt_and_send(dev, peer, kp, NULL, 0);
		after_sent(dev, peer, now_ms, false);
		return;
	}
	if (!peer->staged_head && stage(dev, peer, NULL, 0) != 0)
		return;
	wg_send_staged(dev, peer, now_ms);
}

static int ip_destination(const uint8_t *ip, size_t len, int *family, const uint8_t **dst)
{
	if (len >= WG_IP4_HDR_LEN && ip[0] >> 4 == 4) {
		*family = WG_AF_INET;
		*dst = ip + WG_IP4_DST;
		return 0;
	}
	if (len >= WG_IP6_HDR_LEN && ip[0] >> 4 == 6) {
		*family = WG_AF_INET6;
		*dst = ip + WG_IP6_DST;
		return 0;
	}
	return -EINVAL;
}

int wg_device_send(wg_device *dev, uint64_t now_ms, const uint8_t *ip, size_t len)
{
	int family;
	const uint8_t *dst;
	if (len > WG_MAX_PACKET)
		return wg_drop_count(dev, WG_DROP_OVERSIZED);
	if (!ip || ip_destination(ip, len, &family, &dst) != 0)
		return wg_drop_count(dev, WG_DROP_BAD_IP);
	wg_peer *peer = wg_aip_lookup(&dev->aip, family, dst);
	if (!peer)
		return wg_drop_count(dev, WG_DROP_NO_PEER);
	if (peer->endpoint.family == WG_AF_NONE)
		return wg_drop_count(dev, WG_DROP_NO_ENDPOINT);
	struct wg_keypair *kp = peer->kp_cur;
	/* Fast path: no queue, a usable session: encrypt straight from the
	 * caller's buffer. */
	if (!peer->staged_head && keypair_usable(kp, now_ms)) {
		encrypt_and_send(dev, peer, kp, ip, len);
		after_sent(dev, peer, now_ms, true);
		return 0;
	}
	int rc = stage(dev, peer, ip, len);
	if (rc)
		return rc;
	wg_send_staged(dev, peer, now_ms);
	return 0;
}

int wg_peer_send_keepalive(wg_device *dev, wg_peer *peer, uint64_t now_ms)
{
	wg_send_keepalive(dev, peer, now_ms);
	return 0;
}

int wg_peer_initiate(wg_device *dev, wg_peer *peer, uint64_t now_ms, int force)
{
	if (!dev->has_key)
		return -ENOKEY;
	if (force)
		peer->have_sent_handshake = false;
	wg_send_handshake_initiation(dev, peer, now_ms, false);
	return 0;
}
