/* The Python-facing calls (device_py.h): each runs its work on the loop
 * thread with rt_run, so callers on any thread never touch loop-owned
 * state. Lifetime: Python stops calling (and waits for callers inside)
 * between dev_py_shutdown and dev_py_free. */
#include "device/impl.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct call {
	dev_device *d;
	const uint8_t *bytes;
	size_t len;
	int ival;
	uint32_t uval;
	const char *s1, *s2;
	char *out;
	size_t outlen;
	void *p1, *p2;
};

/* Runs fn on the loop; -ESHUTDOWN if the runtime is gone (the do_ functions
 * return it too once the device's WireGuard core is gone). */
static int on_loop(dev_device *d, rt_rc_fn fn, struct call *c)
{
	c->d = d;
	return rt_run(d->rt, fn, c);
}

static int do_create(void *arg)
{
	struct call *c = arg;
	int rc = dev_create(c->d, c->bytes, c->ival);
	if (rc < 0)
		dev_destroy(c->d);
	return rc;
}

dev_device *dev_py_new(struct rt *rt, const uint8_t *private_key, int listen_port, int *err)
{
	if (listen_port < DEV_NO_UDP || listen_port > 65535) {
		*err = -EINVAL;
		return NULL;
	}
	dev_device *d = calloc(1, sizeof(*d));
	if (!d) {
		*err = -ENOMEM;
		return NULL;
	}
	d->rt = rt;
	int rc = dev_queue_init(&d->rxq, DEV_QUEUE_BYTES, DEV_QUEUE_PACKETS);
	if (rc == 0) {
		struct call c = {.bytes = private_key, .ival = listen_port};
		rc = on_loop(d, do_create, &c);
	}
	if (rc < 0) {
		dev_queue_destroy(&d->rxq);
		free(d);
		*err = rc;
		return NULL;
	}
	*err = 0;
	return d;
}

static int do_shutdown(void *arg)
{
	struct call *c = arg;
	if (!c->d->closed)
		dev_destroy(c->d);
	return 0;
}

void dev_py_shutdown(dev_device *d)
{
	struct call c = {0};
	on_loop(d, do_shutdown, &c);
	dev_queue_close(&d->rxq);
}

void dev_py_free(dev_device *d)
{
	if (!d)
		return;
	dev_queue_destroy(&d->rxq);
	free(d);
}

static int do_uapi_listen(void *arg)
{
	struct call *c = arg;
	dev_device *d = c->d;
	if (d->closed)
		return -ESHUTDOWN;
	struct dev_uapi *s;
	int rc = dev_uapi_listen(d->rt, c->s1, c->s2, dev_uapi_handle, d, &s);
	if (rc < 0)
		return rc;
	dev_uapi_close(d->uapi); /* a device serves one socket at a time */
	d->uapi = s;
	return rc;
}

/* Interface names as wg(8) lists them: 1..15 of [A-Za-z0-9_=+.-], not "." or "..". */
static bool valid_ifname(const char *name)
{
	size_t n = strlen(name);
	if (n == 0 || n > 15 || !strcmp(name, ".") || !strcmp(name, ".."))
		return false;
	for (size_t i = 0; i < n; i++) {
		char ch = name[i];
		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
		      strchr("_=+.-", ch)))
			return false;
	}
	return true;
}

int dev_py_uapi_listen(dev_device *d, const char *dir, const char *name)
{
	if (!dir || !*dir || !name || !valid_ifname(name))
		return -EINVAL;
	struct call c = {.s1 = dir, .s2 = name};
	return on_loop(d, do_uapi_listen, &c);
}

static int do_uapi_get(void *arg)
{
	struct call *c = arg;
	return c->d->wg ? wg_uapi_get(c->d->wg, dev_now(c->d), &c->out, &c->outlen) : -ESHUTDOWN;
}

int dev_py_uapi_get(dev_device *d, char **out, size_t *len)
{
	struct call c = {0};
	int rc = on_loop(d, do_uapi_get, &c);
	*out = c.out;
	*len = c.outlen;
	return rc;
}

static int do_uapi_set(void *arg)
{
	struct call *c = arg;
	if (!c->d->wg)
		return -ESHUTDOWN;
	int rc = wg_uapi_set(c->d->wg, dev_now(c->d), (const char *)c->bytes, c->len);
	dev_kick(c->d);
	return rc;
}

int dev_py_uapi_set(dev_device *d, const char *text, size_t len)
{
	struct call c = {.bytes = (const uint8_t *)text, .len = len};
	return on_loop(d, do_uapi_set, &c);
}

void dev_py_free_text(char *p) { wg_uapi_free(p); }

static int do_write(void *arg)
{
	struct call *c = arg;
	return dev_send_packet(c->d, c->bytes, c->len);
}

int dev_py_write_packet(dev_device *d, const uint8_t *ip, size_t len)
{
	/* No copy: the caller's buffer stays valid while it waits for the loop. */
	struct call c = {.bytes = ip, .len = len};
	return on_loop(d, do_write, &c);
}

static int do_write_batch(void *arg)
{
	struct call *c = arg;
	const uint32_t *lens = c->p1;
	uint8_t *reasons = c->p2;
	size_t off = 0, accepted = 0;
	for (size_t i = 0; i < c->len; i++) {
		int rc = dev_send_packet(c->d, c->bytes + off, lens[i]);
		if (rc < 0)
			return rc;
		reasons[i] = (uint8_t)rc;
		accepted += rc == 0;
		off += lens[i];
	}
	return (int)accepted;
}

int dev_py_write_batch(dev_device *d, const uint8_t *buf, const uint32_t *lens, size_t n, uint8_t *reasons)
{
	if (n > INT32_MAX)
		return -EINVAL;
	struct call c = {.bytes = buf, .len = n, .p1 = (void *)lens, .p2 = reasons};
	return on_loop(d, do_write_batch, &c);
}

int dev_py_read_packet(dev_device *d, uint8_t *buf, size_t cap, int timeout_ms)
{
	return dev_queue_pop(&d->rxq, buf, cap, timeout_ms);
}

static int do_stats(void *arg)
{
	struct call *c = arg;
	dev_device *d = c->d;
	struct dev_stats *io = c->p1;
	*io = d->st;
	if (d->udp) {
		const struct dev_udp_stats *u = dev_udp_stats(d->udp);
		io->udp_rx_datagrams = u->rx_datagrams;
		io->udp_rx_bytes = u->rx_bytes;
		io->udp_rx_truncated = u->rx_truncated;
		io->udp_rx_errors = u->rx_errors;
		io->udp_tx_datagrams = u->tx_datagrams;
		io->udp_tx_bytes = u->tx_bytes;
		io->udp_tx_dropped = u->tx_dropped;
		io->udp_tx_errors = u->tx_errors;
		io->udp_port = dev_udp_port(d->udp);
	}
	if (d->wg)
		wg_device_stats(d->wg, c->p2);
	return d->wg ? 0 : -ESHUTDOWN;
}

int dev_py_stats(dev_device *d, struct dev_stats *io, struct wg_device_stats *core)
{
	memset(io, 0, sizeof(*io));
	memset(core, 0, sizeof(*core));
	struct call c = {.p1 = io, .p2 = core};
	int rc = on_loop(d, do_stats, &c);
	/* The queue's counters live under its own lock. */
	pthread_mutex_lock(&d->rxq.mu);
	io->queue_packets = d->rxq.pushed;
	io->queue_dropped = d->rxq.dropped;
	io->queue_read = d->rxq.popped;
	io->queue_length = (uint32_t)d->rxq.count;
	pthread_mutex_unlock(&d->rxq.mu);
	return rc;
}

static int do_public_key(void *arg)
{
	struct call *c = arg;
	return c->d->wg ? wg_device_public_key(c->d->wg, c->p1) : -ESHUTDOWN;
}

int dev_py_public_key(dev_device *d, uint8_t *out)
{
	struct call c = {.p1 = out};
	return on_loop(d, do_public_key, &c);
}

static int do_route(void *arg)
{
	struct call *c = arg;
	if (!c->d->wg)
		return -ESHUTDOWN;
	wg_peer *peer = wg_device_lookup_ip(c->d->wg, c->ival, c->bytes);
	if (!peer)
		return 0;
	wg_peer_public_key(peer, c->p1);
	return 1;
}

int dev_py_route(dev_device *d, int family, const uint8_t *addr, uint8_t *peer_public_key)
{
	if (family != WG_AF_INET && family != WG_AF_INET6)
		return -EAFNOSUPPORT;
	struct call c = {.ival = family, .bytes = addr, .p1 = peer_public_key};
	return on_loop(d, do_route, &c);
}

static int do_listen_port(void *arg)
{
	struct call *c = arg;
	return c->d->wg ? wg_device_listen_port(c->d->wg) : -ESHUTDOWN;
}

int dev_py_listen_port(dev_device *d)
{
	struct call c = {0};
	return on_loop(d, do_listen_port, &c);
}

static int do_under_load(void *arg)
{
	struct call *c = arg;
	if (!c->d->wg)
		return -ESHUTDOWN;
	wg_device_set_under_load(c->d->wg, c->ival, c->uval);
	return 0;
}

int dev_py_set_under_load(dev_device *d, int mode, uint32_t threshold)
{
	if (mode != WG_LOAD_AUTO && mode != WG_LOAD_FORCE && mode != WG_LOAD_NEVER)
		return -EINVAL;
	struct call c = {.ival = mode, .uval = threshold};
	return on_loop(d, do_under_load, &c);
}

static int do_rekey(void *arg)
{
	struct call *c = arg;
	if (!c->d->wg)
		return -ESHUTDOWN;
	wg_peer *peer = wg_peer_find(c->d->wg, c->p1);
	if (!peer)
		return -ENOENT;
	int rc = wg_peer_initiate(c->d->wg, peer, dev_now(c->d), 1);
	dev_kick(c->d);
	return rc;
}

int dev_py_rekey(dev_device *d, const uint8_t *peer_public_key)
{
	struct call c = {.p1 = (void *)(uintptr_t)peer_public_key};
	return on_loop(d, do_rekey, &c);
}

static int do_advance_clock(void *arg)
{
	struct call *c = arg;
	if (!c->d->wg)
		return -ESHUTDOWN;
	c->d->clock_offset_ms += c->uval;
	wg_device_tick(c->d->wg, dev_now(c->d));
	dev_kick(c->d);
	return 0;
}

int dev_py_advance_clock(dev_device *d, uint32_t ms)
{
	struct call c = {.uval = ms};
	return on_loop(d, do_advance_clock, &c);
}

static int do_keylog(void *arg)
{
	struct call *c = arg;
	dev_device *d = c->d;
	if (d->closed)
		return -ESHUTDOWN;
	if (d->keylog)
		fclose(d->keylog);
	d->keylog = c->p1;
	return 0;
}

int dev_py_set_keylog(dev_device *d, const char *path)
{
	FILE *f = NULL;
	if (path && *path) {
		/* Opened here, not on the loop: file system calls may block. */
		f = fopen(path, "ae");
		if (!f)
			return -errno;
	}
	struct call c = {.p1 = f};
	int rc = on_loop(d, do_keylog, &c);
	if (rc < 0 && f)
		fclose(f);
	return rc;
}
