/* The gateway's two packet paths (see gateway.h). Loop thread only. */
#include "gateway/impl.h"
#include "base/log.h"
#include "impair/impair.h"

#include <errno.h>
#include <string.h>
#include <sys/epoll.h>

#include "derp/keys.h"
#include "trace/trace.h"

/* The local WireGuard sent from `from`: remember it as where this peer's
 * packets go, unless an endpoint is configured. Cheap when unchanged. */
static void learn(struct gw *g, struct gw_peer *p, const struct sockaddr_storage *from, socklen_t len)
{
	if (g->has_wg_ep)
		return;
	if (p->dst_kind == GW_DST_LEARNED && p->dst_len == len && memcmp(&p->dst, from, len) == 0)
		return;
	if (len > sizeof(p->dst))
		return;
	memcpy(&p->dst, from, len);
	p->dst_len = len;
	p->dst_kind = GW_DST_LEARNED;
	struct gw_addr a;
	socklen_t canon_len;
	if (gw_addr_from_sockaddr(&a, (const struct sockaddr *)from) == 0 &&
	    gw_addr_to_sockaddr(&a, &g->last_src, &canon_len) == 0)
		g->has_last_src = true;
	if (spz_log_enabled(SPZ_LOG_DEBUG)) {
		char k[GW_KEY_TEXT];
		derp_key_to_text(k, sizeof(k), "nodekey:", p->key);
		spz_log(SPZ_LOG_DEBUG, "gateway", "peer %s: local WireGuard at port %u", k, a.port);
	}
}

static void to_derp(struct gw *g, struct gw_peer *p, const uint8_t *data, size_t len)
{
	TR_TAP(pkt, TR_HOP_GW_DERP_OUT, TR_OBJ(g), p->key, data, len);
	int rc = derp_client_send(g->derp, p->key, data, len);
	if (rc == 0) {
		p->st.derp_tx_packets++;
		p->st.derp_tx_bytes += len;
	} else if (rc == -EMSGSIZE) {
		TR_TAP(drop, TR_HOP_GW_DERP_OUT, TR_OBJ(g), p->key, TR_R_GW_OVERSIZE, NULL, 0);
		p->st.drops_oversize++;
	} else {
		TR_TAP(drop, TR_HOP_GW_DERP_OUT, TR_OBJ(g), p->key, TR_R_GW_DERP_SEND, NULL, 0);
		p->st.drops_send_error++;
	}
}

void gw_on_wg_sent(void *ctx, void *tag, size_t len, int err)
{
	struct gw *g = ctx;
	struct gw_peer *p = tag;
	(void)g;
	if (err < 0) {
		TR_TAP(drop, TR_HOP_GW_UDP_OUT, TR_OBJ(g), p->key,
		       err == -EMSGSIZE ? TR_R_GW_OVERSIZE : TR_R_UDP_SEND_ERROR, NULL, 0);
		if (err == -EMSGSIZE)
			p->st.drops_oversize++;
		else
			p->st.drops_send_error++;
		return;
	}
	p->st.wg_tx_datagrams++;
	p->st.wg_tx_bytes += len;
}

/* Queued for the round's sendmmsg (a RecvPacket batch from one DERP read
 * becomes one syscall); larger datagrams leave at once, after the queue. */
static void to_wg(struct gw *g, struct gw_peer *p, const uint8_t *data, size_t len)
{
	TR_TAP(udp, TR_HOP_GW_UDP_OUT, TR_OBJ(g), p->key, (const struct sockaddr *)&p->dst, 0, data, len);
	if (rt_udp_sendq_push(&g->sq, p->fd, (struct sockaddr *)&p->dst, p->dst_len, data, len, p) == 0)
		return;
	rt_udp_sendq_flush(&g->sq);
	ssize_t n = sendto(p->fd, data, len, MSG_DONTWAIT | MSG_NOSIGNAL, (struct sockaddr *)&p->dst, p->dst_len);
	gw_on_wg_sent(g, p, len, n < 0 ? -errno : 0);
}

void gw_on_udp(rt_t *rt, int fd, uint32_t events, void *arg)
{
	(void)rt;
	(void)events;
	struct gw_peer *p = arg;
	struct gw *g = p->gw;
	struct rt_udp_batch *b = &g->rb;
	for (int batch = 0; batch < RT_UDP_MAX_BATCHES; batch++) {
		if (g->paused)
			return;
		int n = rt_udp_batch_recv(b, fd);
		if (n < 0) {
			/* ECONNREFUSED & co: an ICMP error for an earlier send
			 * (WireGuard not listening yet); nothing to read. */
			if (n != -EAGAIN)
				g->st.udp_rx_errors++;
			return;
		}
		uint32_t overflow;
		if (n > 0 && rt_udp_batch_overflow(b, n - 1, &overflow))
			p->st.drops_udp_overflow = overflow;
		for (int i = 0; i < n; i++) {
			if (rt_udp_batch_truncated(b, i)) {
				TR_TAP(drop, TR_HOP_GW_UDP_IN, TR_OBJ(g), p->key, TR_R_UDP_TRUNCATED, NULL, 0);
				g->st.drops_udp_truncated++;
				continue;
			}
			learn(g, p, &b->from[i], b->msgs[i].msg_hdr.msg_namelen);
			/* One read may hold several datagrams (GRO). */
			size_t total = b->msgs[i].msg_len, seg = rt_udp_batch_segment(b, i);
			size_t off = 0;
			do { /* once for an empty datagram too */
				const uint8_t *data = (const uint8_t *)b->iov[i].iov_base + off;
				size_t len = total - off < seg ? total - off : seg;
				p->st.wg_rx_datagrams++;
				p->st.wg_rx_bytes += len;
				TR_TAP(udp, TR_HOP_GW_UDP_IN, TR_OBJ(g), p->key, (const struct sockaddr *)&b->from[i],
				       0, data, len);
				if (g->imp[IMP_IN])
					imp_input(g->imp[IMP_IN], p->key, sizeof(p->key), data, len);
				else
					to_derp(g, p, data, len);
				off += seg;
			} while (off < total);
		}
		/* Connected but the socket cannot keep up: stop reading until
		 * the client says it drained (on_writable) or the connection
		 * changed (on_state). */
		if (derp_client_congested(g->derp)) {
			gw_set_paused(g, true);
			return;
		}
		if (n < RT_UDP_BATCH)
			return;
	}
}

void gw_on_derp_packet(void *arg, const uint8_t src[32], const uint8_t *data, size_t len)
{
	struct gw *g = arg;
	TR_TAP(pkt, TR_HOP_GW_DERP_IN, TR_OBJ(g), src, data, len);
	struct gw_peer *p = gw_peer_lookup(g, src);
	if (!p) {
		TR_TAP(drop, TR_HOP_GW_DERP_IN, TR_OBJ(g), src, TR_R_GW_UNKNOWN_KEY, NULL, 0);
		/* Anyone on the relay may send to our key: count, log rarely. */
		uint64_t n = ++g->st.drops_unknown_key;
		if ((n & (n - 1)) == 0 && spz_log_enabled(SPZ_LOG_DEBUG)) {
			char k[GW_KEY_TEXT];
			derp_key_to_text(k, sizeof(k), "nodekey:", src);
			spz_log(SPZ_LOG_DEBUG, "gateway", "dropped a packet from unknown key %s (%llu so far)", k,
				(unsigned long long)n);
		}
		return;
	}
	p->st.derp_rx_packets++;
	p->st.derp_rx_bytes += len;
	if (p->dst_kind == GW_DST_NONE) {
		gw_peer_update_dst(g, p);
		if (p->dst_kind == GW_DST_NONE) {
			TR_TAP(drop, TR_HOP_GW_DERP_IN, TR_OBJ(g), src, TR_R_GW_NO_DESTINATION, NULL, 0);
			p->st.drops_no_destination++;
			return;
		}
	}
	if (g->imp[IMP_OUT])
		imp_input(g->imp[IMP_OUT], p->key, sizeof(p->key), data, len);
	else
		to_wg(g, p, data, len);
}

void gw_set_paused(struct gw *g, bool paused)
{
	if (g->paused == paused)
		return;
	g->paused = paused;
	if (paused)
		g->st.pauses++;
	for (size_t k = 0; k < g->npeers; k++) {
		struct gw_peer *p = g->peers[k];
		/* Level-triggered: datagrams that waited fire EPOLLIN at once. */
		if (rt_fd_mod(g->rt, p->fd, paused ? 0 : EPOLLIN) == 0)
			p->paused = paused;
	}
}

void gw_on_derp_writable(void *arg) { gw_set_paused(arg, false); }

/* ---- impairments: a held packet finds its peer again by key (the peer
 * may have been removed meanwhile: then it is gone) ---- */

static void imp_to_wg(void *ctx, const void *addr, size_t alen, const uint8_t *data, size_t len)
{
	(void)alen;
	struct gw *g = ctx;
	struct gw_peer *p = gw_peer_lookup(g, addr);
	if (p && p->dst_kind != GW_DST_NONE)
		to_wg(g, p, data, len);
}

static void imp_to_derp(void *ctx, const void *addr, size_t alen, const uint8_t *data, size_t len)
{
	(void)alen;
	struct gw *g = ctx;
	struct gw_peer *p = gw_peer_lookup(g, addr);
	if (p)
		to_derp(g, p, data, len);
}

int gw_impair_udp(struct gw *g, int dir, int op, const struct imp_config *cfg, struct imp_stats *out)
{
	return imp_slot_op(&g->imp[dir], g->rt, op, cfg, dir == IMP_OUT ? imp_to_wg : imp_to_derp, g, out);
}

void gw_impair_free(struct gw *g)
{
	imp_slot_free(&g->imp[IMP_OUT]);
	imp_slot_free(&g->imp[IMP_IN]);
}
