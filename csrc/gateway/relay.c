/* The gateway's two packet paths (see gateway.h). Loop thread only. */
#include "gateway/impl.h"
#include "runtime/log.h"

#include <errno.h>
#include <string.h>
#include <sys/epoll.h>

#include "derp/keys.h"

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
		char k[8];
		derp_key_short(k, p->key);
		spz_log(SPZ_LOG_DEBUG, "gateway", "peer %s: local WireGuard at port %u", k, a.port);
	}
}

/* The kernel's running count of drops on this socket, as of this message. */
static void note_overflow(struct gw_peer *p, struct msghdr *h)
{
	for (struct cmsghdr *c = CMSG_FIRSTHDR(h); c; c = CMSG_NXTHDR(h, c)) {
		if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SO_RXQ_OVFL &&
		    c->cmsg_len >= CMSG_LEN(sizeof(uint32_t))) {
			uint32_t v;
			memcpy(&v, CMSG_DATA(c), sizeof(v));
			p->st.drops_udp_overflow = v;
		}
	}
}

void gw_on_udp(rt_t *rt, int fd, uint32_t events, void *arg)
{
	(void)rt;
	(void)events;
	struct gw_peer *p = arg;
	struct gw *g = p->gw;
	for (int batch = 0; batch < GW_MAX_BATCHES; batch++) {
		if (g->paused)
			return;
		for (int i = 0; i < GW_BATCH; i++) {
			g->iov[i] = (struct iovec){.iov_base = g->bufs + (size_t)i * GW_RXBUF, .iov_len = GW_RXBUF};
			g->msgs[i].msg_hdr = (struct msghdr){
				.msg_name = &g->from[i],
				.msg_namelen = sizeof(g->from[i]),
				.msg_iov = &g->iov[i],
				.msg_iovlen = 1,
				.msg_control = g->ctl[i].buf,
				.msg_controllen = sizeof(g->ctl[i].buf),
			};
			g->msgs[i].msg_len = 0;
		}
		int n = recvmmsg(fd, g->msgs, GW_BATCH, MSG_DONTWAIT, NULL);
		if (n < 0) {
			/* ECONNREFUSED & co: an ICMP error for an earlier send
			 * (WireGuard not listening yet); nothing to read. */
			if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
				g->st.udp_rx_errors++;
			return;
		}
		if (n > 0)
			note_overflow(p, &g->msgs[n - 1].msg_hdr);
		for (int i = 0; i < n; i++) {
			struct msghdr *h = &g->msgs[i].msg_hdr;
			size_t len = g->msgs[i].msg_len;
			if (h->msg_flags & MSG_TRUNC) {
				g->st.drops_udp_truncated++;
				continue;
			}
			learn(g, p, &g->from[i], h->msg_namelen);
			p->st.wg_rx_datagrams++;
			p->st.wg_rx_bytes += len;
			int rc = derp_client_send(g->derp, p->key, g->iov[i].iov_base, len);
			if (rc == 0) {
				p->st.derp_tx_packets++;
				p->st.derp_tx_bytes += len;
			} else if (rc == -EMSGSIZE) {
				p->st.drops_oversize++;
			} else {
				p->st.drops_send_error++;
			}
		}
		/* Connected but the socket cannot keep up: stop reading until
		 * the client says it drained (on_writable) or the connection
		 * changed (on_state). */
		if (derp_client_congested(g->derp)) {
			gw_set_paused(g, true);
			return;
		}
		if (n < GW_BATCH)
			return;
	}
}

void gw_on_derp_packet(void *arg, const uint8_t src[32], const uint8_t *data, size_t len)
{
	struct gw *g = arg;
	struct gw_peer *p = gw_peer_lookup(g, src);
	if (!p) {
		/* Anyone on the relay may send to our key: count, log rarely. */
		uint64_t n = ++g->st.drops_unknown_key;
		if ((n & (n - 1)) == 0 && spz_log_enabled(SPZ_LOG_DEBUG)) {
			char k[8];
			derp_key_short(k, src);
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
			p->st.drops_no_destination++;
			return;
		}
	}
	ssize_t n = sendto(p->fd, data, len, MSG_DONTWAIT | MSG_NOSIGNAL, (struct sockaddr *)&p->dst, p->dst_len);
	if (n < 0) {
		if (errno == EMSGSIZE)
			p->st.drops_oversize++;
		else
			p->st.drops_send_error++;
		return;
	}
	p->st.wg_tx_datagrams++;
	p->st.wg_tx_bytes += len;
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
