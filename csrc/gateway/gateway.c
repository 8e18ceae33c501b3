/* The gateway object: its DERP client, configuration and connection state.
 * See gateway.h for the design. */
#include "gateway/impl.h"

#include "base/deadline.h"
#include "base/log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "derp/keys.h"

static void on_state(void *arg, bool connected, const char *why)
{
	struct gw *g = arg;
	(void)why; /* the DERP client logs connection lost/restored */
	/* A new connection starts uncongested; a lost one queues: read on. */
	gw_set_paused(g, false);
	pthread_mutex_lock(&g->mu);
	g->connected = connected;
	pthread_mutex_unlock(&g->mu);
	pthread_cond_broadcast(&g->cv);
}

static void on_event(void *arg, const struct derp_client_event *ev)
{
	struct gw *g = arg;
	if (ev->type != DERP_EV_PEER_GONE)
		return;
	struct gw_peer *p = gw_peer_lookup(g, ev->key);
	if (!p)
		return;
	p->st.peer_gone++;
	char k[GW_KEY_TEXT];
	derp_key_to_text(k, sizeof(k), "nodekey:", ev->key);
	spz_log(SPZ_LOG_DEBUG, "gateway", "peer %s is %s", k,
		ev->reason == 1 ? "not connected to the relay" : "gone from the relay");
}

static int check_wg_ep(const struct gw *g, const struct gw_addr *ep, char *err, size_t errlen)
{
	if (ep->family != AF_INET && ep->family != AF_INET6) {
		snprintf(err, errlen, "wg_endpoint: family %u is neither IPv4 nor IPv6", ep->family);
		return -EINVAL;
	}
	if (ep->port == 0) {
		snprintf(err, errlen, "wg_endpoint: port 0 is not a WireGuard endpoint");
		return -EINVAL;
	}
	struct sockaddr_storage ss;
	socklen_t sl;
	gw_addr_to_sockaddr(ep, &ss, &sl);
	for (size_t k = 0; k < g->npeers; k++) {
		struct sockaddr_storage out;
		if (!rt_udp_sockaddr_for(g->peers[k]->family, (struct sockaddr *)&ss, &out)) {
			snprintf(err, errlen, "wg_endpoint: IPv6 address, but remote peer sockets listen on IPv4");
			return -EINVAL;
		}
	}
	return 0;
}

int gw_set_wg_endpoint(gw_t *g, const struct gw_addr *ep, char *err, size_t errlen)
{
	if (ep && ep->family != 0) {
		int rc = check_wg_ep(g, ep, err, errlen);
		if (rc < 0)
			return rc;
		socklen_t sl;
		gw_addr_to_sockaddr(ep, &g->wg_ep, &sl);
		g->has_wg_ep = true;
	} else {
		g->has_wg_ep = false;
	}
	for (size_t k = 0; k < g->npeers; k++)
		gw_peer_update_dst(g, g->peers[k]);
	return 0;
}

int gw_new(rt_t *rt, const char *url, const uint8_t priv[32], const struct derp_client_opts *opts,
	   const struct gw_addr *wg_endpoint, gw_t **out, char *err, size_t errlen)
{
	struct gw *g = calloc(1, sizeof(*g));
	if (!g)
		return -ENOMEM;
	g->rt = rt;
	pthread_mutex_init(&g->mu, NULL);
	spz_cond_init(&g->cv); /* gw_py_wait_connected waits on it */
	int rc = rt_udp_batch_init(&g->rb);
	if (rc < 0)
		goto fail;
	rc = rt_udp_sendq_init(&g->sq, rt, gw_on_wg_sent, g);
	if (rc < 0)
		goto fail;
	rc = gw_set_wg_endpoint(g, wg_endpoint, err, errlen);
	if (rc < 0)
		goto fail;
	static const struct derp_client_ops ops = {
		.on_packet = gw_on_derp_packet,
		.on_event = on_event,
		.on_state = on_state,
		.on_writable = gw_on_derp_writable,
	};
	g->derp = derp_client_new(rt, url, priv, opts, &ops, g, &rc, err, errlen);
	if (!g->derp)
		goto fail;
	*out = g;
	return 0;
fail:
	rt_udp_batch_free(&g->rb);
	rt_udp_sendq_free(&g->sq);
	pthread_cond_destroy(&g->cv);
	pthread_mutex_destroy(&g->mu);
	free(g);
	return rc < 0 ? rc : -ENOMEM;
}

void gw_free(gw_t *g)
{
	if (!g)
		return;
	gw_impair_free(g);
	derp_client_free(g->derp);
	rt_udp_sendq_free(&g->sq); /* what is queued leaves while its peers exist */
	gw_peers_free(g);
	rt_udp_batch_free(&g->rb);
	pthread_cond_destroy(&g->cv);
	pthread_mutex_destroy(&g->mu);
	free(g);
}
