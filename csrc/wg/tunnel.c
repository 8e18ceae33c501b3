/* wg_tunnel: a device whose "network" and "stack" are FIFO queues, with an
 * optional deterministic RNG and a settable wall clock. Python's Tunnel,
 * the tests and the fuzzer drive the core through it. */
#include <errno.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "wg/wg_internal.h"
#include "base/list.h"

#define QUEUE_MAX 4096

struct qent {
	struct qent *next;
	wg_endpoint to;
	uint8_t peer_pub[NOISE_PUBLIC_KEY_LEN];
	size_t len;
	uint8_t data[];
};

struct queue {
	struct qent *head, *tail;
	size_t count;
};

struct wg_tunnel {
	wg_device *dev;
	struct queue out, in;
	uint64_t drops;
	uint64_t wall_ns;
	bool seeded;
	uint8_t rng_key[NOISE_SYMMETRIC_KEY_LEN];
	uint64_t rng_nonce;
	uint8_t *script;
	size_t script_len, script_pos;
	uint16_t busy_port;
};

static void q_push(wg_tunnel *t, struct queue *q, wg_peer *peer, const wg_endpoint *to, const uint8_t *data, size_t len)
{
	struct qent *e = malloc(sizeof(*e) + len);
	if (!e) {
		t->drops++;
		return;
	}
	memset(&e->to, 0, sizeof(e->to));
	if (to)
		e->to = *to;
	memset(e->peer_pub, 0, NOISE_PUBLIC_KEY_LEN);
	if (peer)
		wg_peer_public_key(peer, e->peer_pub);
	e->len = len;
	memcpy(e->data, data, len);
	if (q->count >= QUEUE_MAX) {
		struct qent *old;
		SPZ_FIFO_POP(q->head, q->tail, q->count, old, next);
		free(old);
		t->drops++;
	}
	SPZ_FIFO_PUSH(q->head, q->tail, q->count, e, next);
}

static int q_pop(struct queue *q, wg_endpoint *to, uint8_t *peer_pub, uint8_t *buf, size_t cap)
{
	struct qent *e = q->head;
	if (!e)
		return -1;
	if (e->len > cap)
		return -ENOSPC;
	SPZ_FIFO_POP(q->head, q->tail, q->count, e, next);
	if (to)
		*to = e->to;
	if (peer_pub)
		memcpy(peer_pub, e->peer_pub, NOISE_PUBLIC_KEY_LEN);
	memcpy(buf, e->data, e->len);
	int n = (int)e->len;
	free(e);
	return n;
}

static void q_clear(struct queue *q)
{
	struct qent *e;
	for (;;) {
		SPZ_FIFO_POP(q->head, q->tail, q->count, e, next);
		if (!e)
			break;
		free(e);
	}
}

static void t_send(void *ctx, wg_peer *peer, const wg_endpoint *to, const uint8_t *data, size_t len)
{
	wg_tunnel *t = ctx;
	q_push(t, &t->out, peer, to, data, len);
}

static void t_deliver(void *ctx, wg_peer *peer, const uint8_t *ip, size_t len)
{
	wg_tunnel *t = ctx;
	q_push(t, &t->in, peer, NULL, ip, len);
}

static void t_random(void *ctx, uint8_t *buf, size_t len)
{
	wg_tunnel *t = ctx;
	size_t from_script = t->script_len - t->script_pos;
	if (from_script > len)
		from_script = len;
	if (from_script) {
		memcpy(buf, t->script + t->script_pos, from_script);
		t->script_pos += from_script;
		buf += from_script;
		len -= from_script;
		if (t->script_pos == t->script_len) {
			free(t->script);
			t->script = NULL;
			t->script_len = t->script_pos = 0;
		}
	}
	if (!len)
		return;
	if (!t->seeded) {
		randombytes_buf(buf, len);
		return;
	}
	/* A ChaCha20 keystream, one nonce per request: reproducible. */
	uint8_t nonce[8];
	wg_put_le64(nonce, t->rng_nonce++);
	crypto_stream_chacha20(buf, len, nonce, t->rng_key);
}

static uint64_t t_wall(void *ctx) { return ((wg_tunnel *)ctx)->wall_ns; }

/* No socket: "binding" fails only for the port marked busy; port 0 gets an
 * ephemeral-range port from the RNG, as a real bind would. */
static int t_listen_port(void *ctx, uint16_t port)
{
	wg_tunnel *t = ctx;
	if (port && port == t->busy_port)
		return -EADDRINUSE;
	if (!port) {
		uint8_t b[2];
		t_random(t, b, sizeof(b));
		port = (uint16_t)(32768 + (b[0] | b[1] << 8) % 28232);
	}
	return port;
}

wg_tunnel *wg_tunnel_new(const uint8_t *seed, size_t seed_len)
{
	if (spz_crypto_init() != 0)
		return NULL;
	wg_tunnel *t = calloc(1, sizeof(*t));
	if (!t)
		return NULL;
	if (seed) {
		t->seeded = true;
		crypto_generichash(t->rng_key, sizeof(t->rng_key), seed, seed_len, NULL, 0);
	}
	t->wall_ns = spz_wall_ns();
	struct wg_ops ops = {
		.ctx = t,
		.send = t_send,
		.deliver = t_deliver,
		.random = t_random,
		.wall_ns = t_wall,
		.set_listen_port = t_listen_port,
	};
	t->dev = wg_device_new(&ops);
	if (!t->dev) {
		free(t);
		return NULL;
	}
	return t;
}

void wg_tunnel_free(wg_tunnel *t)
{
	if (!t)
		return;
	wg_device_free(t->dev);
	q_clear(&t->out);
	q_clear(&t->in);
	if (t->script)
		spz_wipe(t->script, t->script_len);
	free(t->script);
	spz_wipe(t, sizeof(*t));
	free(t);
}

wg_device *wg_tunnel_device(wg_tunnel *t) { return t->dev; }

void wg_tunnel_set_wall_ns(wg_tunnel *t, uint64_t wall_ns) { t->wall_ns = wall_ns; }

int wg_tunnel_push_random(wg_tunnel *t, const uint8_t *bytes, size_t len)
{
	size_t left = t->script_len - t->script_pos;
	uint8_t *n = malloc(left + len);
	if (!n)
		return -ENOMEM;
	if (left)
		memcpy(n, t->script + t->script_pos, left);
	memcpy(n + left, bytes, len);
	free(t->script);
	t->script = n;
	t->script_len = left + len;
	t->script_pos = 0;
	return 0;
}

int wg_tunnel_pop_outgoing(wg_tunnel *t, wg_endpoint *to, uint8_t *peer_pub, uint8_t *buf, size_t cap)
{
	return q_pop(&t->out, to, peer_pub, buf, cap);
}

int wg_tunnel_pop_delivered(wg_tunnel *t, uint8_t *peer_pub, uint8_t *buf, size_t cap)
{
	return q_pop(&t->in, NULL, peer_pub, buf, cap);
}

void wg_tunnel_random(wg_tunnel *t, uint8_t *buf, size_t len) { t_random(t, buf, len); }

void wg_tunnel_set_busy_port(wg_tunnel *t, uint16_t port) { t->busy_port = port; }

uint64_t wg_tunnel_queue_drops(const wg_tunnel *t) { return t->drops; }
