/* A device: the core's callbacks, the timer, binds, sink and queue. Loop
 * thread only; see device.h. */
#include "device/impl.h"
#include "base/log.h"
#include "trace/trace.h"

#include <errno.h>
#include <netinet/in.h>
#include <string.h>

/* ---- the core's callbacks ---- */

static void op_send(void *ctx, wg_peer *peer, const wg_endpoint *to, const uint8_t *data, size_t len)
{
	(void)peer;
	dev_device *d = ctx;
	int kind = to->family == WG_AF_DERP ? DEV_BIND_DERP : DEV_BIND_UDP;
	if (!d->binds[kind].ops) {
		TR_TAP(drop, TR_HOP_DEV, TR_OBJ(d), NULL, TR_R_DEV_NO_BIND, data, len);
		d->st.tx_no_bind++;
		return;
	}
	if (d->binds[kind].ops->send(d->binds[kind].bind, to, data, len) < 0) {
		TR_TAP(drop, TR_HOP_DEV, TR_OBJ(d), NULL, TR_R_DEV_BIND_ERROR, NULL, 0);
		d->st.tx_bind_errors++;
	}
}

static void op_deliver(void *ctx, wg_peer *peer, const uint8_t *ip, size_t len)
{
	dev_device *d = ctx;
	if (d->sink) {
		d->st.sink_packets++;
		d->sink(d->sink_ctx, d, peer, ip, len);
		return;
	}
	/* The queue counts what it drops; nothing else to do when full. */
	if (!dev_queue_push(&d->rxq, ip, len))
		TR_TAP(drop, TR_HOP_DEV, TR_OBJ(d), NULL, TR_R_DEV_QUEUE_FULL, ip, len);
}

static uint64_t op_wall_ns(void *ctx)
{
	/* Virtual time moves the wall clock too: a handshake 121 virtual
	 * seconds later carries a TAI64N timestamp 121 s newer. */
	const dev_device *d = ctx;
	return rt_wall_ns() + d->clock_offset_ms * 1000000ull;
}

static int op_set_listen_port(void *ctx, uint16_t port)
{
	dev_device *d = ctx;
	if (!d->udp)
		return port; /* no UDP bind (a DERP-only device): just recorded */
	int rc = dev_udp_rebind(d->udp, port);
	if (rc < 0) {
		spz_log(SPZ_LOG_DEBUG, "dev", "listen_port=%u: %s", port, strerror(-rc));
		return rc;
	}
	return dev_udp_port(d->udp);
}

static void op_handshake_keys(void *ctx, wg_peer *peer, const struct wg_handshake_keys *keys)
{
	(void)peer;
	dev_device *d = ctx;
	TR_TAP(keys, TR_OBJ(d), keys->local_static_private);
	if (d->keylog)
		dev_keylog_write(d, keys);
}

/* ---- timer ---- */

static void rearm(dev_device *d, uint64_t now, uint64_t floor)
{
	if (!d->wg)
		return;
	uint64_t at = wg_device_next_deadline(d->wg);
	if (at == UINT64_MAX) {
		rt_timer_cancel(d->timer);
		return;
	}
	/* Never in the past: a deadline the core reports as due again right
	 * after a tick must not spin the loop. */
	if (at < now + floor)
		at = now + floor;
	/* at is on the core's clock; the loop's timers run on the loop's. */
	rt_timer_arm_at(d->timer, at > d->clock_offset_ms ? at - d->clock_offset_ms : 0);
}

static void on_timer(rt_t *rt, rt_timer_t *t, void *arg)
{
	(void)rt;
	(void)t;
	dev_device *d = arg;
	if (!d->wg)
		return;
	uint64_t now = dev_now(d);
	d->st.timer_runs++;
	wg_device_tick(d->wg, now);
	rearm(d, now, 1);
}

void dev_kick(dev_device *d) { rearm(d, dev_now(d), 0); }

/* ---- the UDP bind as a dev_bind ---- */

static int udp_bind_send(void *bind, const wg_endpoint *to, const uint8_t *data, size_t len)
{
	struct sockaddr_storage ss;
	if (wg_endpoint_to_sockaddr(to, &ss) < 0)
		return -EAFNOSUPPORT;
	return dev_udp_send(bind, (struct sockaddr *)&ss, data, len);
}

static void udp_bind_close(void *bind) { dev_udp_close(bind); }

static const struct dev_bind_ops udp_bind_ops = {.send = udp_bind_send, .close = udp_bind_close};

static void udp_rx(void *ctx, const struct sockaddr *from, uint8_t *data, size_t len)
{
	dev_device *d = ctx;
	wg_endpoint ep;
	socklen_t sl = from->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
	if (wg_endpoint_from_sockaddr(&ep, from, sl) < 0)
		return;
	dev_input(d, &ep, data, len);
}

/* ---- public (device.h) ---- */

static void replace_bind(dev_device *d, int kind, const struct dev_bind_ops *ops, void *bind)
{
	const struct dev_bind_ops *old = d->binds[kind].ops;
	void *old_bind = d->binds[kind].bind;
	d->binds[kind].ops = ops;
	d->binds[kind].bind = ops ? bind : NULL;
	if (kind == DEV_BIND_UDP && old == &udp_bind_ops && !(ops == old && bind == old_bind))
		d->udp = NULL;
	if (old && old->close && !(old == ops && old_bind == bind))
		old->close(old_bind);
}

int dev_set_bind(dev_device *d, int kind, const struct dev_bind_ops *ops, void *bind)
{
	if (kind < 0 || kind >= DEV_BIND__COUNT)
		return -EINVAL;
	if (d->closed)
		return -ESHUTDOWN;
	replace_bind(d, kind, ops, bind);
	return 0;
}

void dev_input(dev_device *d, const wg_endpoint *from, const uint8_t *data, size_t len)
{
	if (!d->wg)
		return;
	uint64_t now = dev_now(d);
	wg_device_receive(d->wg, now, from, data, len);
	rearm(d, now, 0);
}

void dev_set_sink(dev_device *d, dev_sink_fn fn, void *ctx)
{
	d->sink = fn;
	d->sink_ctx = fn ? ctx : NULL;
}

int dev_send_packet(dev_device *d, const uint8_t *ip, size_t len)
{
	if (!d->wg)
		return -ESHUTDOWN;
	uint64_t now = dev_now(d);
	int rc = wg_device_send(d->wg, now, ip, len);
	rearm(d, now, 0);
	return rc;
}

rt_t *dev_rt(const dev_device *d) { return d->rt; }

uint64_t dev_now(const dev_device *d) { return rt_now_ms() + d->clock_offset_ms; }

wg_device *dev_wg(dev_device *d) { return d->wg; }

uint16_t dev_udp_port_of(const dev_device *d) { return d->udp ? dev_udp_port(d->udp) : 0; }

/* ---- UAPI socket requests ---- */

int dev_uapi_handle(void *ctx, const char *req, size_t len, struct dev_strbuf *reply)
{
	dev_device *d = ctx;
	if (!d->wg)
		return -ESHUTDOWN;
	uint64_t now = dev_now(d);
	char *out = NULL;
	size_t n = 0;
	int rc = wg_uapi_request(d->wg, now, req, len, &out, &n);
	rearm(d, now, 0);
	if (rc < 0) {
		wg_uapi_free(out);
		if (rc == -ENOMEM) {
			reply->oom = true;
			return 0;
		}
		return rc; /* unknown operation: the server closes the connection */
	}
	d->st.uapi_requests++;
	dev_strbuf_append(reply, out, n);
	wg_uapi_free(out);
	return 0;
}

/* ---- lifecycle (on the loop thread, from device_py.c) ---- */

int dev_create(dev_device *d, const uint8_t *private_key, int listen_port)
{
	struct wg_ops ops = {
		.ctx = d,
		.send = op_send,
		.deliver = op_deliver,
		.wall_ns = op_wall_ns,
		.set_listen_port = op_set_listen_port,
		.handshake_keys = op_handshake_keys,
	};
	d->timer = rt_timer_new(d->rt, on_timer, d);
	d->wg = wg_device_new(&ops);
	if (!d->timer || !d->wg)
		return -ENOMEM;
	uint64_t now = dev_now(d);
	if (private_key) {
		int rc = wg_device_set_private_key(d->wg, now, private_key);
		if (rc < 0)
			return rc;
	}
	if (listen_port >= 0) {
		struct dev_udp *u;
		int rc = dev_udp_open(d->rt, (uint16_t)listen_port, udp_rx, d, &u);
		if (rc < 0)
			return rc;
		d->udp = u;
		dev_set_bind(d, DEV_BIND_UDP, &udp_bind_ops, u);
		wg_device_set_listen_port(d->wg, dev_udp_port(u));
	}
	rearm(d, now, 0);
	return 0;
}

void dev_destroy(dev_device *d)
{
	d->closed = true;
	dev_uapi_close(d->uapi);
	d->uapi = NULL;
	for (int k = 0; k < DEV_BIND__COUNT; k++)
		replace_bind(d, k, NULL, NULL);
	d->udp = NULL;
	d->sink = NULL;
	rt_timer_free(d->timer);
	d->timer = NULL;
	wg_device_free(d->wg); /* wipes the keys */
	d->wg = NULL;
	if (d->keylog)
		fclose(d->keylog);
	d->keylog = NULL;
}
