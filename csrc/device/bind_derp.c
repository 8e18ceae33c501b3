/* The DERP bind of a device; see bind_derp.h. */
#include "device/bind_derp.h"
#include "device/impl.h"
#include "base/log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "derp/keys.h"

struct dev_derp {
	dev_device *d;
	derp_client_t *c;
	struct dev_derp_stats st;
};

static const struct dev_bind_ops derp_bind_ops;

static struct dev_derp *bind_of(dev_device *d)
{
	if (d->closed || d->binds[DEV_BIND_DERP].ops != &derp_bind_ops)
		return NULL;
	return d->binds[DEV_BIND_DERP].bind;
}

/* ---- the bind ---- */

static int bind_send(void *bind, const wg_endpoint *to, const uint8_t *data, size_t len)
{
	struct dev_derp *b = bind;
	if (to->family != WG_AF_DERP) {
		b->st.tx_errors++;
		return -EAFNOSUPPORT;
	}
	/* Queued by the client while disconnected or congested (bounded,
	 * oldest dropped): WireGuard retries what matters. */
	int rc = derp_client_send(b->c, to->addr, data, len);
	if (rc < 0) {
		b->st.tx_errors++;
		return rc;
	}
	b->st.tx_packets++;
	b->st.tx_bytes += len;
	return 0;
}

static void bind_close(void *bind)
{
	struct dev_derp *b = bind;
	derp_client_free(b->c);
	free(b);
}

static const struct dev_bind_ops derp_bind_ops = {.send = bind_send, .close = bind_close};

/* ---- the client's callbacks ---- */

static void on_packet(void *arg, const uint8_t src[32], const uint8_t *data, size_t len)
{
	struct dev_derp *b = arg;
	wg_endpoint from = {.family = WG_AF_DERP};
	memcpy(from.addr, src, 32);
	b->st.rx_packets++;
	b->st.rx_bytes += len;
	dev_input(b->d, &from, data, len);
}

static void on_state(void *arg, bool connected, const char *why)
{
	struct dev_derp *b = arg;
	(void)why; /* the DERP client logs connection lost/restored */
	b->st.connected = connected;
}

static void on_event(void *arg, const struct derp_client_event *ev)
{
	struct dev_derp *b = arg;
	if (ev->type != DERP_EV_PEER_GONE)
		return;
	b->st.peer_gone++;
	if (spz_log_enabled(SPZ_LOG_DEBUG)) {
		char k[8];
		derp_key_short(k, ev->key);
		spz_log(SPZ_LOG_DEBUG, "dev", "DERP peer %s gone (reason %u)", k, ev->reason);
	}
}

#define DEV_DERP_QUEUE_SIZE 2048

/* ---- public ---- */

int dev_derp_attach(dev_device *d, const char *url, const uint8_t priv[32], const struct derp_client_opts *opts,
		    char *err, size_t errlen)
{
	if (d->closed) {
		snprintf(err, errlen, "the device is closed");
		return -ESHUTDOWN;
	}
	struct dev_derp *b = calloc(1, sizeof(*b));
	if (!b)
		return -ENOMEM;
	b->d = d;
	static const struct derp_client_ops ops = {.on_packet = on_packet, .on_state = on_state, .on_event = on_event};
	/* The device cannot push back on its senders (lwIP hosts, write_packet),
	 * so the queue must hold a TCP window's worth of datagrams in flight:
	 * with the client's default of 256, a 1 MiB lwIP window overflows it and
	 * every overflow is a TCP loss (measured, a 20 MiB GET: 151 drops and
	 * 6.8 MB/s with 256; none and 27 MB/s with 2048). */
	struct derp_client_opts o = {0};
	if (opts)
		o = *opts;
	if (!o.queue_size)
		o.queue_size = DEV_DERP_QUEUE_SIZE;
	int rc = -ENOMEM;
	b->c = derp_client_new(d->rt, url, priv, &o, &ops, b, &rc, err, errlen);
	if (!b->c) {
		free(b);
		return rc < 0 ? rc : -ENOMEM;
	}
	rc = dev_set_bind(d, DEV_BIND_DERP, &derp_bind_ops, b);
	if (rc < 0)
		bind_close(b);
	return rc;
}

derp_client_t *dev_derp_client(dev_device *d)
{
	struct dev_derp *b = bind_of(d);
	return b ? b->c : NULL;
}

/* ---- Python (bind_derp_py.h) ---- */

struct call {
	dev_device *d;
	const char *url;
	const uint8_t *key;
	const struct derp_client_opts *opts;
	char *err;
	size_t errlen;
	void *out, *out2;
};

/* The do_ functions run on the loop (rt_run: -ESHUTDOWN once the runtime
 * is gone); -ENOENT when the device has no DERP bind. */
static int do_attach(void *arg)
{
	struct call *c = arg;
	return dev_derp_attach(c->d, c->url, c->key, c->opts, c->err, c->errlen);
}

int dev_py_derp_attach(dev_device *d, const char *url, const uint8_t *private_key, const struct derp_client_opts *opts,
		       char *err, size_t errlen)
{
	if (errlen)
		err[0] = '\0';
	struct call c = {.d = d, .url = url, .key = private_key, .opts = opts, .err = err, .errlen = errlen};
	return rt_run(d->rt, do_attach, &c);
}

static int do_detach(void *arg)
{
	struct call *c = arg;
	return bind_of(c->d) ? dev_set_bind(c->d, DEV_BIND_DERP, NULL, NULL) : -ENOENT;
}

int dev_py_derp_detach(dev_device *d) { return rt_run(d->rt, do_detach, &(struct call){.d = d}); }

static int do_stats(void *arg)
{
	struct call *c = arg;
	struct dev_derp *b = bind_of(c->d);
	if (!b)
		return -ENOENT;
	*(struct dev_derp_stats *)c->out = b->st;
	if (c->out2)
		derp_client_stats(b->c, c->out2);
	return 0;
}

int dev_py_derp_stats(dev_device *d, struct dev_derp_stats *out, struct derp_client_stats *derp)
{
	return rt_run(d->rt, do_stats, &(struct call){.d = d, .out = out, .out2 = derp});
}

static int do_public_key(void *arg)
{
	struct call *c = arg;
	struct dev_derp *b = bind_of(c->d);
	if (!b)
		return -ENOENT;
	derp_client_public_key(b->c, c->out);
	return 0;
}

int dev_py_derp_public_key(dev_device *d, uint8_t *out)
{
	return rt_run(d->rt, do_public_key, &(struct call){.d = d, .out = out});
}

static int do_reconnect(void *arg)
{
	struct call *c = arg;
	struct dev_derp *b = bind_of(c->d);
	if (!b)
		return -ENOENT;
	derp_client_reconnect(b->c);
	return 0;
}

int dev_py_derp_reconnect(dev_device *d) { return rt_run(d->rt, do_reconnect, &(struct call){.d = d}); }

static int do_last_error(void *arg)
{
	struct call *c = arg;
	struct dev_derp *b = bind_of(c->d);
	return b ? derp_client_last_error(b->c, c->err, c->errlen) : -ENOENT;
}

int dev_py_derp_last_error(dev_device *d, char *out, size_t cap)
{
	return rt_run(d->rt, do_last_error, &(struct call){.d = d, .err = out, .errlen = cap});
}
