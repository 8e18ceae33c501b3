/* The gateway's remote peers: one UDP socket each, found by DERP key
 * through a small open-addressing index. */
#include "gateway/impl.h"
#include "base/log.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "derp/frame.h"
#include "derp/keys.h"

int gw_addr_to_sockaddr(const struct gw_addr *a, struct sockaddr_storage *ss, socklen_t *len)
{
	memset(ss, 0, sizeof(*ss));
	if (a->family == AF_INET) {
		struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
		s4->sin_family = AF_INET;
		s4->sin_port = htons(a->port);
		memcpy(&s4->sin_addr, a->addr, 4);
		*len = sizeof(*s4);
		return 0;
	}
	if (a->family == AF_INET6) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons(a->port);
		s6->sin6_scope_id = a->scope_id;
		memcpy(&s6->sin6_addr, a->addr, 16);
		*len = sizeof(*s6);
		return 0;
	}
	return -EAFNOSUPPORT;
}

int gw_addr_from_sockaddr(struct gw_addr *a, const struct sockaddr *sa)
{
	memset(a, 0, sizeof(*a));
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;
		a->family = AF_INET;
		a->port = ntohs(s4->sin_port);
		memcpy(a->addr, &s4->sin_addr, 4);
		return 0;
	}
	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
		/* v4-mapped (a dual-stack socket's view of IPv4) reads as IPv4 */
		if (IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr)) {
			a->family = AF_INET;
			memcpy(a->addr, &s6->sin6_addr.s6_addr[12], 4);
		} else {
			a->family = AF_INET6;
			a->scope_id = s6->sin6_scope_id;
			memcpy(a->addr, &s6->sin6_addr, 16);
		}
		a->port = ntohs(s6->sin6_port);
		return 0;
	}
	return -EAFNOSUPPORT;
}

/* ---- index ---- */

static size_t slot_of(const uint8_t key[32], size_t cap)
{
	/* Keys are X25519 public keys a peer had to prove it owns (the DERP
	 * handshake), and only configured peers are inserted, so clusters
	 * cannot be grown by strangers; the first 8 bytes spread well. */
	uint64_t h;
	memcpy(&h, key, sizeof(h));
	h ^= h >> 29;
	h *= 0xbf58476d1ce4e5b9ull;
	h ^= h >> 32;
	return (size_t)h & (cap - 1);
}

struct gw_peer *gw_peer_lookup(const struct gw *g, const uint8_t key[32])
{
	if (!g->index_cap)
		return NULL;
	for (size_t i = slot_of(key, g->index_cap), n = 0; n < g->index_cap; i = (i + 1) & (g->index_cap - 1), n++) {
		struct gw_peer *p = g->index[i];
		if (!p)
			return NULL;
		if (derp_key_equal(p->key, key))
			return p;
	}
	return NULL;
}

static int index_rebuild(struct gw *g, size_t cap)
{
	struct gw_peer **idx = calloc(cap, sizeof(*idx));
	if (!idx)
		return -ENOMEM;
	for (size_t k = 0; k < g->npeers; k++) {
		size_t i = slot_of(g->peers[k]->key, cap);
		while (idx[i])
			i = (i + 1) & (cap - 1);
		idx[i] = g->peers[k];
	}
	free(g->index);
	g->index = idx;
	g->index_cap = cap;
	return 0;
}

/* ---- sockets ---- */

static int open_socket(const struct gw_addr *listen, int *family, char *err, size_t errlen)
{
	struct sockaddr_storage ss;
	socklen_t sl;
	if (gw_addr_to_sockaddr(listen, &ss, &sl) < 0) {
		snprintf(err, errlen, "listen address: family %u is neither IPv4 nor IPv6", listen->family);
		return -EINVAL;
	}
	int fd = rt_udp_socket((struct sockaddr *)&ss, sl);
	if (fd < 0) {
		char txt[INET6_ADDRSTRLEN] = "?";
		inet_ntop(listen->family, listen->addr, txt, sizeof(txt));
		snprintf(err, errlen, "cannot bind UDP %s port %u: %s", txt, listen->port, strerror(-fd));
		return fd;
	}
	*family = ss.ss_family;
	return fd;
}

void gw_peer_update_dst(struct gw *g, struct gw_peer *p)
{
	if (g->has_wg_ep) {
		if ((p->dst_len = rt_udp_sockaddr_for(p->family, (struct sockaddr *)&g->wg_ep, &p->dst)))
			p->dst_kind = GW_DST_CONFIGURED;
		else
			p->dst_kind = GW_DST_NONE; /* refused earlier by the config checks */
		return;
	}
	if (p->dst_kind == GW_DST_CONFIGURED)
		p->dst_kind = GW_DST_NONE; /* learn again */
	if (p->dst_kind == GW_DST_NONE && g->has_last_src &&
	    (p->dst_len = rt_udp_sockaddr_for(p->family, (struct sockaddr *)&g->last_src, &p->dst)))
		p->dst_kind = GW_DST_LEARNED;
}

int gw_add_peer(gw_t *g, const uint8_t key[32], const struct gw_addr *listen, struct gw_addr *bound, char *err,
		size_t errlen)
{
	if (derp_key_is_zero(key)) {
		snprintf(err, errlen, "remote peer key is all zeros");
		return -EINVAL;
	}
	if (gw_peer_lookup(g, key)) {
		snprintf(err, errlen, "already a remote peer of this gateway");
		return -EEXIST;
	}
	if (g->npeers >= GW_MAX_PEERS) {
		snprintf(err, errlen, "too many remote peers (%d)", GW_MAX_PEERS);
		return -ENOSPC;
	}
	if (g->has_wg_ep && listen->family == AF_INET && g->wg_ep.ss_family == AF_INET6) {
		snprintf(err, errlen, "an IPv4 listen address cannot reach the IPv6 WireGuard endpoint");
		return -EINVAL;
	}
	if (g->npeers == g->cap) {
		size_t cap = g->cap ? 2 * g->cap : 4;
		struct gw_peer **v = realloc(g->peers, cap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		g->peers = v;
		g->cap = cap;
	}
	if (2 * (g->npeers + 1) > g->index_cap) {
		int rc = index_rebuild(g, g->index_cap ? 2 * g->index_cap : 8);
		if (rc < 0)
			return rc;
	}
	struct gw_peer *p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->gw = g;
	memcpy(p->key, key, 32);
	memcpy(p->st.key, key, 32);
	p->fd = open_socket(listen, &p->family, err, errlen);
	if (p->fd < 0) {
		int rc = p->fd;
		free(p);
		return rc;
	}
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	int rc = getsockname(p->fd, (struct sockaddr *)&ss, &sl) < 0 ? -errno : 0;
	if (rc == 0)
		rc = gw_addr_from_sockaddr(&p->st.local, (struct sockaddr *)&ss);
	if (rc == 0)
		rc = rt_fd_add(g->rt, p->fd, g->paused ? 0 : EPOLLIN, gw_on_udp, p);
	if (rc < 0) {
		snprintf(err, errlen, "cannot watch the UDP socket: %s", strerror(-rc));
		close(p->fd);
		free(p);
		return rc;
	}
	p->paused = g->paused;
	g->peers[g->npeers++] = p;
	size_t i = slot_of(key, g->index_cap);
	while (g->index[i])
		i = (i + 1) & (g->index_cap - 1);
	g->index[i] = p;
	gw_peer_update_dst(g, p);
	*bound = p->st.local;
	char short_key[GW_KEY_TEXT];
	derp_key_to_text(short_key, sizeof(short_key), "nodekey:", key);
	spz_log(SPZ_LOG_INFO, "gateway", "remote peer %s on UDP port %u", short_key, p->st.local.port);
	return 0;
}

static void add_totals(struct gw_peer_stats *t, const struct gw_peer_stats *s)
{
	t->wg_rx_datagrams += s->wg_rx_datagrams;
	t->wg_rx_bytes += s->wg_rx_bytes;
	t->derp_tx_packets += s->derp_tx_packets;
	t->derp_tx_bytes += s->derp_tx_bytes;
	t->derp_rx_packets += s->derp_rx_packets;
	t->derp_rx_bytes += s->derp_rx_bytes;
	t->wg_tx_datagrams += s->wg_tx_datagrams;
	t->wg_tx_bytes += s->wg_tx_bytes;
	t->drops_oversize += s->drops_oversize;
	t->drops_send_error += s->drops_send_error;
	t->drops_no_destination += s->drops_no_destination;
	t->drops_udp_overflow += s->drops_udp_overflow;
	t->peer_gone += s->peer_gone;
}

static void peer_close(struct gw *g, struct gw_peer *p)
{
	rt_udp_sendq_flush(&g->sq); /* it may hold this peer's datagrams */
	rt_fd_del(g->rt, p->fd);
	close(p->fd);
	add_totals(&g->gone, &p->st);
	free(p);
}

int gw_remove_peer(gw_t *g, const uint8_t key[32])
{
	struct gw_peer *p = gw_peer_lookup(g, key);
	if (!p)
		return -ENOENT;
	size_t k = 0;
	while (g->peers[k] != p)
		k++;
	memmove(&g->peers[k], &g->peers[k + 1], (g->npeers - k - 1) * sizeof(*g->peers));
	g->npeers--;
	/* Deleting from linear probing breaks chains: rebuild (rare, small). */
	int rc = index_rebuild(g, g->index_cap);
	if (rc < 0) {
		/* Keep a consistent index without allocating: clear and reinsert. */
		memset(g->index, 0, g->index_cap * sizeof(*g->index));
		for (size_t j = 0; j < g->npeers; j++) {
			size_t i = slot_of(g->peers[j]->key, g->index_cap);
			while (g->index[i])
				i = (i + 1) & (g->index_cap - 1);
			g->index[i] = g->peers[j];
		}
	}
	peer_close(g, p);
	return 0;
}

void gw_peers_free(struct gw *g)
{
	for (size_t k = 0; k < g->npeers; k++)
		peer_close(g, g->peers[k]);
	free(g->peers);
	free(g->index);
	g->peers = NULL;
	g->index = NULL;
	g->npeers = g->cap = g->index_cap = 0;
}

int gw_peer_stats(const gw_t *g, const uint8_t key[32], struct gw_peer_stats *out)
{
	const struct gw_peer *p = gw_peer_lookup(g, key);
	if (!p)
		return -ENOENT;
	*out = p->st;
	out->dst_kind = p->dst_kind;
	out->paused = p->paused;
	memset(&out->dst, 0, sizeof(out->dst));
	if (p->dst_kind != GW_DST_NONE)
		gw_addr_from_sockaddr(&out->dst, (const struct sockaddr *)&p->dst);
	return 0;
}

void gw_stats(const gw_t *g, struct gw_stats *out, struct derp_client_stats *derp)
{
	struct gw_peer_stats t = g->gone;
	for (size_t k = 0; k < g->npeers; k++)
		add_totals(&t, &g->peers[k]->st);
	*out = g->st;
	out->wg_rx_datagrams = t.wg_rx_datagrams;
	out->wg_rx_bytes = t.wg_rx_bytes;
	out->derp_tx_packets = t.derp_tx_packets;
	out->derp_tx_bytes = t.derp_tx_bytes;
	out->derp_rx_packets = t.derp_rx_packets;
	out->derp_rx_bytes = t.derp_rx_bytes;
	out->wg_tx_datagrams = t.wg_tx_datagrams;
	out->wg_tx_bytes = t.wg_tx_bytes;
	out->drops_oversize = t.drops_oversize;
	out->drops_send_error = t.drops_send_error;
	out->drops_no_destination = t.drops_no_destination;
	out->drops_udp_overflow = t.drops_udp_overflow;
	out->peers = (uint32_t)g->npeers;
	out->connected = derp_client_connected(g->derp);
	struct derp_client_stats ds;
	derp_client_stats(g->derp, &ds);
	out->drops_queue_full = ds.drops_queue_full;
	if (derp)
		*derp = ds;
}
