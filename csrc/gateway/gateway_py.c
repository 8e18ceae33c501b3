/* gateway_py.h: thread-safe entry points. Each runs its work on the
 * gateway's loop with rt_run (rt_call where the loop itself is needed); only gw_py_wait_connected waits outside it. */
#include "gateway/impl.h"

#include "base/deadline.h"

#include <errno.h>
#include <string.h>
#include <time.h>

struct new_args {
	const char *url;
	const uint8_t *priv;
	const struct derp_client_opts *opts;
	const struct gw_addr *wg_ep;
	gw_t *g;
	int rc;
	char *err;
	size_t errlen;
};

static void do_new(rt_t *rt, void *arg)
{
	struct new_args *a = arg;
	a->rc = gw_new(rt, a->url, a->priv, a->opts, a->wg_ep, &a->g, a->err, a->errlen);
}

gw_t *gw_py_new(struct rt *rt, const char *url, const uint8_t *private_key, const struct derp_client_opts *opts,
		const struct gw_addr *wg_endpoint, int *rc, char *err, size_t errlen)
{
	if (errlen)
		err[0] = '\0';
	struct new_args a = {
		.url = url, .priv = private_key, .opts = opts, .wg_ep = wg_endpoint, .err = err, .errlen = errlen};
	int r = rt_call(rt, do_new, &a);
	*rc = r < 0 ? r : a.rc;
	return *rc < 0 ? NULL : a.g;
}

static void do_free(rt_t *rt, void *arg)
{
	(void)rt;
	gw_free(arg);
}

void gw_py_shutdown(gw_t *g)
{
	pthread_mutex_lock(&g->mu);
	g->closed = true;
	pthread_mutex_unlock(&g->mu);
	pthread_cond_broadcast(&g->cv);
}

void gw_py_free(gw_t *g)
{
	if (!g)
		return;
	pthread_mutex_lock(&g->mu);
	g->closed = true;
	pthread_cond_broadcast(&g->cv);
	while (g->waiters > 0)
		pthread_cond_wait(&g->cv, &g->mu);
	pthread_mutex_unlock(&g->mu);
	rt_call(g->rt, do_free, g);
}

struct peer_args {
	gw_t *g;
	const uint8_t *key;
	const struct gw_addr *addr;
	struct gw_addr *bound;
	void *out;
	size_t max;
	char *err;
	size_t errlen;
};

static int do_add_peer(void *arg)
{
	struct peer_args *a = arg;
	return gw_add_peer(a->g, a->key, a->addr, a->bound, a->err, a->errlen);
}

int gw_py_add_peer(gw_t *g, const uint8_t *key, const struct gw_addr *listen, struct gw_addr *bound, char *err,
		   size_t errlen)
{
	if (errlen)
		err[0] = '\0';
	struct peer_args a = {.g = g, .key = key, .addr = listen, .bound = bound, .err = err, .errlen = errlen};
	return rt_run(g->rt, do_add_peer, &a);
}

static int do_remove_peer(void *arg)
{
	struct peer_args *a = arg;
	return gw_remove_peer(a->g, a->key);
}

int gw_py_remove_peer(gw_t *g, const uint8_t *key)
{
	return rt_run(g->rt, do_remove_peer, &(struct peer_args){.g = g, .key = key});
}

static int do_set_wg_endpoint(void *arg)
{
	struct peer_args *a = arg;
	char err[160];
	return gw_set_wg_endpoint(a->g, a->addr, err, sizeof(err));
}

int gw_py_set_wg_endpoint(gw_t *g, const struct gw_addr *ep)
{
	return rt_run(g->rt, do_set_wg_endpoint, &(struct peer_args){.g = g, .addr = ep});
}

static int do_peer_stats(void *arg)
{
	struct peer_args *a = arg;
	return gw_peer_stats(a->g, a->key, a->out);
}

int gw_py_peer_stats(gw_t *g, const uint8_t *key, struct gw_peer_stats *out)
{
	return rt_run(g->rt, do_peer_stats, &(struct peer_args){.g = g, .key = key, .out = out});
}

static int do_peers(void *arg)
{
	struct peer_args *a = arg;
	uint8_t *keys = a->out;
	size_t n = a->g->npeers < a->max ? a->g->npeers : a->max;
	for (size_t k = 0; k < n; k++)
		memcpy(keys + 32 * k, a->g->peers[k]->key, 32);
	return (int)a->g->npeers;
}

int gw_py_peers(gw_t *g, uint8_t *keys, size_t max)
{
	return rt_run(g->rt, do_peers, &(struct peer_args){.g = g, .out = keys, .max = max});
}

struct stats_args {
	gw_t *g;
	struct gw_stats *out;
	struct derp_client_stats *derp;
	uint8_t *key;
	char *text;
	size_t cap;
};

static int do_stats(void *arg)
{
	struct stats_args *a = arg;
	gw_stats(a->g, a->out, a->derp);
	return 0;
}

int gw_py_stats(gw_t *g, struct gw_stats *out, struct derp_client_stats *derp)
{
	return rt_run(g->rt, do_stats, &(struct stats_args){.g = g, .out = out, .derp = derp});
}

static int do_public_key(void *arg)
{
	struct stats_args *a = arg;
	derp_client_public_key(a->g->derp, a->key);
	return 0;
}

int gw_py_public_key(gw_t *g, uint8_t *out)
{
	return rt_run(g->rt, do_public_key, &(struct stats_args){.g = g, .key = out});
}

static int do_reconnect(void *arg)
{
	struct gw *g = arg;
	derp_client_reconnect(g->derp);
	return 0;
}

int gw_py_reconnect(gw_t *g) { return rt_run(g->rt, do_reconnect, g); }

static int do_last_error(void *arg)
{
	struct stats_args *a = arg;
	return derp_client_last_error(a->g->derp, a->text, a->cap);
}

int gw_py_last_error(gw_t *g, char *out, size_t cap)
{
	return rt_run(g->rt, do_last_error, &(struct stats_args){.g = g, .text = out, .cap = cap});
}

int gw_py_wait_connected(gw_t *g, int timeout_ms)
{
	struct timespec ts;
	const struct timespec *deadline = spz_deadline_in(&ts, timeout_ms);
	int rc = 0;
	pthread_mutex_lock(&g->mu);
	g->waiters++;
	while (!g->connected && !g->closed) {
		if (spz_cond_wait(&g->cv, &g->mu, deadline) < 0) {
			rc = g->connected ? 0 : -ETIMEDOUT;
			break;
		}
	}
	if (g->closed)
		rc = -ESHUTDOWN;
	g->waiters--;
	pthread_mutex_unlock(&g->mu);
	pthread_cond_broadcast(&g->cv);
	return rc;
}
