/* derp client for Python: the loop-thread client (client.c) wrapped in
 * thread-safe queues, so Python threads can send, and wait for packets and
 * events with the GIL released (cffi drops it around every call).
 *
 * Receive side: the loop's callbacks copy packets and events into bounded
 * queues (oldest dropped and counted when full) and signal a condvar.
 * Send side: Python threads append to a bounded outbox and post one drain
 * job per batch to the loop; the drain stops while the connection is
 * congested and resumes on on_writable, so a fast Python sender waits
 * (backpressure) instead of losing packets. While disconnected the drain
 * hands packets to the client's own bounded queue (overflow counted). */
#include "base/deadline.h"
#include "derp/client/client.h"
#include "derp/frame.h"

#include <errno.h>
#include <stddef.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#define PY_OUTBOX 1024
#define PY_PING_WAITERS 8

struct py_ev {
	struct derp_client_event ev; /* first: Python gets &ev and frees it back */
	struct py_ev *next;
	char text[];
};

struct py_out {
	struct py_out *next;
	uint8_t dst[32];
	size_t len;
	uint8_t data[];
};

struct py_ping {
	bool used, done;
	int rc;
	uint8_t data[8];
	uint64_t rtt_us;
};

/* A FIFO of malloc'd nodes, linked through the pointer at next_off in each
 * node (the node types differ: derp_py_packet's layout is Python's). */
struct pyq {
	void *head, *tail;
	uint32_t len, max; /* max 0: unbounded */
	size_t next_off;
};

/* Threads and locking: the client (c) lives on the runtime's loop thread;
 * Python threads call in (send, recv, next_event, ping, wait_connected,
 * close) with the GIL released. rt and pub are set at creation and only
 * read; c is the loop thread's (set by create_fn, cleared by destroy_fn,
 * read by drain, all on the loop). mu guards every field after it: the loop
 * thread pushes rx and ev, sets connected and the pings' results, and pops
 * ob; Python threads pop rx and ev, push ob, claim pings, and count
 * themselves in users. mu is never held across a syscall or an rt_call.
 * Each condition variable (with mu) has one meaning:
 *   cv_rx     a packet was queued on rx, or closed
 *   cv_ev     an event was queued on ev, or closed
 *   cv_tx     the outbox (ob) has room again, or closed
 *   cv_state  connected, a ping's done, users reaching 0 while closed, or
 *             destroyed changed (close waits for users, then for destroy) */
struct derp_pyclient {
	rt_t *rt;
	derp_client_t *c;
	uint8_t pub[32];
	pthread_mutex_t mu;
	pthread_cond_t cv_rx, cv_ev, cv_tx, cv_state;
	bool closed;    /* no new calls: they get -ESHUTDOWN */
	bool destroyed; /* the client is freed (close finished) */
	int users;      /* calls in progress from Python threads */
	bool connected;
	bool refused; /* the client stopped retrying (DERP_EV_REFUSED) until reconnect */

	struct pyq rx, ev, ob; /* packets, events, outbox */
	bool drain_posted;     /* a drain_job is queued on the loop */
	struct py_ping pings[PY_PING_WAITERS];
	/* Written by the loop thread only (drops_events also without mu,
	 * atomically, when an event cannot be allocated); read under mu. */
	uint64_t drops_recv_queue, drops_events;
};

/* ---- time ---- */

/* Runs op on each condition variable of p (all are woken at close). */
#define FOR_EACH_COND(p, op)                                                                      \
	do {                                                                                      \
		pthread_cond_t *cvs_[] = {&(p)->cv_rx, &(p)->cv_ev, &(p)->cv_tx, &(p)->cv_state}; \
		for (size_t i_ = 0; i_ < sizeof(cvs_) / sizeof(cvs_[0]); i_++)                    \
			op(cvs_[i_]);                                                             \
	} while (0)

static void sync_destroy(derp_pyclient_t *p)
{
	pthread_mutex_destroy(&p->mu);
	FOR_EACH_COND(p, pthread_cond_destroy);
}

static void enter(derp_pyclient_t *p) { p->users++; }

static void leave(derp_pyclient_t *p)
{
	if (--p->users == 0 && p->closed)
		pthread_cond_broadcast(&p->cv_state);
}

/* leave() for a caller that does not hold mu. */
static void leave_locked(derp_pyclient_t *p)
{
	pthread_mutex_lock(&p->mu);
	leave(p);
	pthread_mutex_unlock(&p->mu);
}

/* ---- queues (mu held) ---- */

static void **q_next(const struct pyq *q, void *node) { return (void **)((char *)node + q->next_off); }

static void *q_pop(struct pyq *q)
{
	void *n = q->head;
	if (!n)
		return NULL;
	q->head = *q_next(q, n);
	if (!q->head)
		q->tail = NULL;
	q->len--;
	*q_next(q, n) = NULL;
	return n;
}

/* Appends node; when the queue is full, unlinks the oldest and returns it
 * for the caller to count and free (outside the lock: free may trim the
 * heap, a syscall). */
static void *q_push(struct pyq *q, void *node)
{
	void *old = q->max && q->len >= q->max ? q_pop(q) : NULL;
	*q_next(q, node) = NULL;
	if (q->tail)
		*q_next(q, q->tail) = node;
	else
		q->head = node;
	q->tail = node;
	q->len++;
	return old;
}

static void q_free_all(struct pyq *q)
{
	void *n;
	while ((n = q_pop(q)))
		free(n);
}

/* ---- loop-thread callbacks ---- */

/* Queues item for a Python caller (the oldest is dropped, and counted,
 * when the queue is full) and wakes one waiter; the free happens outside
 * the lock. */
static void deliver(derp_pyclient_t *p, struct pyq *q, void *item, uint64_t *drops, pthread_cond_t *cv)
{
	pthread_mutex_lock(&p->mu);
	void *old = q_push(q, item);
	if (old)
		(*drops)++;
	pthread_mutex_unlock(&p->mu);
	pthread_cond_signal(cv);
	free(old);
}

/* A copy of ev for the queue, its text inline; NULL (counted) without memory. */
static struct py_ev *copy_event(derp_pyclient_t *p, const struct derp_client_event *ev)
{
	size_t tlen = ev->text ? ev->text_len : 0;
	struct py_ev *e = malloc(sizeof(*e) + tlen + 1);
	if (!e) {
		__atomic_fetch_add(&p->drops_events, 1, __ATOMIC_RELAXED);
		return NULL;
	}
	e->ev = *ev;
	if (tlen)
		memcpy(e->text, ev->text, tlen);
	e->text[tlen] = 0;
	e->ev.text = e->text;
	e->ev.text_len = tlen;
	return e;
}

static void push_event(derp_pyclient_t *p, const struct derp_client_event *ev)
{
	struct py_ev *e = copy_event(p, ev);
	if (e)
		deliver(p, &p->ev, e, &p->drops_events, &p->cv_ev);
}

static void py_on_packet(void *arg, const uint8_t src[32], const uint8_t *data, size_t len)
{
	derp_pyclient_t *p = arg;
	struct derp_py_packet *pkt = malloc(sizeof(*pkt) + len);
	if (!pkt) {
		pthread_mutex_lock(&p->mu);
		p->drops_recv_queue++;
		pthread_mutex_unlock(&p->mu);
		return;
	}
	memcpy(pkt->src, src, 32);
	pkt->len = (uint32_t)len;
	pkt->data = (uint8_t *)(pkt + 1);
	if (len)
		memcpy(pkt->data, data, len);
	deliver(p, &p->rx, pkt, &p->drops_recv_queue, &p->cv_rx);
}

static void py_on_event(void *arg, const struct derp_client_event *ev)
{
	derp_pyclient_t *p = arg;
	if (ev->type == DERP_EV_REFUSED) {
		pthread_mutex_lock(&p->mu);
		p->refused = true;
		pthread_mutex_unlock(&p->mu);
		pthread_cond_broadcast(&p->cv_state);
	}
	if (ev->type != DERP_EV_PONG) {
		push_event(p, ev);
		return;
	}
	pthread_mutex_lock(&p->mu);
	for (int i = 0; i < PY_PING_WAITERS; i++) {
		struct py_ping *w = &p->pings[i];
		if (w->used && !w->done && memcmp(w->data, ev->ping, 8) == 0) {
			w->done = true;
			w->rc = 0;
			w->rtt_us = ev->rtt_us;
		}
	}
	pthread_mutex_unlock(&p->mu);
	pthread_cond_broadcast(&p->cv_state);
}

static void py_on_state(void *arg, bool connected, const char *why)
{
	derp_pyclient_t *p = arg;
	struct derp_client_event ev = {.type = connected ? DERP_EV_CONNECTED : DERP_EV_DISCONNECTED};
	if (connected)
		derp_client_server_key(p->c, ev.key);
	if (why) {
		ev.text = why;
		ev.text_len = strlen(why);
	}
	struct py_ev *e = copy_event(p, &ev);
	pthread_mutex_lock(&p->mu);
	p->connected = connected;
	if (!connected) {
		for (int i = 0; i < PY_PING_WAITERS; i++) {
			if (p->pings[i].used && !p->pings[i].done) {
				p->pings[i].done = true;
				p->pings[i].rc = -ENOTCONN;
			}
		}
	}
	/* The event is queued with the state it reports: a caller that saw the
	 * state change (wait_connected returned) finds the event already there. */
	void *old = e ? q_push(&p->ev, e) : NULL;
	if (old)
		p->drops_events++;
	pthread_mutex_unlock(&p->mu);
	pthread_cond_broadcast(&p->cv_state);
	if (e)
		pthread_cond_signal(&p->cv_ev);
	free(old);
}

/* Moves the outbox into the client until it is empty or congested. */
static void drain(derp_pyclient_t *p)
{
	for (;;) {
		pthread_mutex_lock(&p->mu);
		if (!p->ob.head || !p->c || derp_client_congested(p->c)) {
			/* Resumed by py_on_writable; a new send posts again. */
			p->drain_posted = false;
			pthread_mutex_unlock(&p->mu);
			return;
		}
		struct py_out *o = q_pop(&p->ob);
		pthread_mutex_unlock(&p->mu);
		pthread_cond_signal(&p->cv_tx);
		derp_client_send(p->c, o->dst, o->data, o->len);
		free(o);
	}
}

static void drain_job(rt_t *rt, void *arg)
{
	(void)rt;
	drain(arg);
}

static void py_on_writable(void *arg) { drain(arg); }

static const struct derp_client_ops py_ops = {
	.on_packet = py_on_packet,
	.on_event = py_on_event,
	.on_state = py_on_state,
	.on_writable = py_on_writable,
};

/* ---- lifecycle ---- */

struct create_args {
	derp_pyclient_t *p;
	const char *url;
	const uint8_t *priv;
	const struct derp_client_opts *opts;
	int rc;
	char *err;
	size_t errlen;
};

static void create_fn(rt_t *rt, void *arg)
{
	struct create_args *a = arg;
	a->p->c = derp_client_new(rt, a->url, a->priv, a->opts, &py_ops, a->p, &a->rc, a->err, a->errlen);
	if (a->p->c)
		derp_client_public_key(a->p->c, a->p->pub);
}

static void destroy_fn(rt_t *rt, void *arg)
{
	(void)rt;
	derp_pyclient_t *p = arg;
	derp_client_free(p->c);
	p->c = NULL;
}

rt_t *derp_pyclient_rt(const derp_pyclient_t *p) { return p->rt; }

derp_client_t *derp_pyclient_client(const derp_pyclient_t *p) { return p->c; }

static void free_queues(derp_pyclient_t *p)
{
	q_free_all(&p->rx);
	q_free_all(&p->ev);
	q_free_all(&p->ob);
}

derp_pyclient_t *derp_pyclient_new(struct rt *rt, const char *url, const uint8_t priv[32],
				   const struct derp_client_opts *opts, uint32_t recv_queue, uint32_t event_queue,
				   int *rc, char *err, size_t errlen)
{
	derp_pyclient_t *p = calloc(1, sizeof(*p));
	if (!p) {
		*rc = -ENOMEM;
		return NULL;
	}
	p->rt = rt;
	p->rx.max = recv_queue ? recv_queue : 1024;
	p->rx.next_off = offsetof(struct derp_py_packet, next);
	p->ev.max = event_queue ? event_queue : 1024;
	p->ev.next_off = offsetof(struct py_ev, next);
	p->ob.next_off = offsetof(struct py_out, next); /* bounded by send's wait */
	pthread_mutex_init(&p->mu, NULL);
	FOR_EACH_COND(p, spz_cond_init);
	struct create_args a = {.p = p, .url = url, .priv = priv, .opts = opts, .err = err, .errlen = errlen};
	int crc = rt_call(rt, create_fn, &a);
	if (crc < 0 || !p->c) {
		*rc = crc < 0 ? crc : a.rc;
		if (crc < 0 && err && errlen)
			snprintf(err, errlen, "the runtime is closed");
		sync_destroy(p);
		free(p);
		return NULL;
	}
	*rc = 0;
	return p;
}

void derp_pyclient_close(derp_pyclient_t *p)
{
	pthread_mutex_lock(&p->mu);
	if (p->closed) {
		while (!p->destroyed) /* another thread is closing: wait for it */
			pthread_cond_wait(&p->cv_state, &p->mu);
		pthread_mutex_unlock(&p->mu);
		return;
	}
	p->closed = true;
	FOR_EACH_COND(p, pthread_cond_broadcast);
	while (p->users > 0)
		pthread_cond_wait(&p->cv_state, &p->mu);
	pthread_mutex_unlock(&p->mu);
	/* Jobs posted by sends ran before this one (the loop runs jobs in
	 * order), so nothing on the loop refers to p afterwards. */
	rt_call(p->rt, destroy_fn, p);
	pthread_mutex_lock(&p->mu);
	free_queues(p);
	p->destroyed = true;
	pthread_cond_broadcast(&p->cv_state);
	pthread_mutex_unlock(&p->mu);
}

void derp_pyclient_free(derp_pyclient_t *p)
{
	if (!p)
		return;
	derp_pyclient_close(p);
	sync_destroy(p);
	sodium_memzero(p, sizeof(*p));
	free(p);
}

/* ---- Python-facing calls ---- */

int derp_pyclient_send(derp_pyclient_t *p, const uint8_t dst[32], const uint8_t *data, size_t len, int timeout_ms)
{
	if (len > DERP_CLIENT_MAX_PACKET)
		return -EMSGSIZE;
	struct py_out *o = malloc(sizeof(*o) + len);
	if (!o)
		return -ENOMEM;
	memcpy(o->dst, dst, 32);
	o->len = len;
	if (len)
		memcpy(o->data, data, len);
	struct timespec ts;
	const struct timespec *dl = spz_deadline_in(&ts, timeout_ms);
	int rc = 0;
	pthread_mutex_lock(&p->mu);
	enter(p);
	while (!p->closed && p->ob.len >= PY_OUTBOX && rc == 0)
		rc = spz_cond_wait(&p->cv_tx, &p->mu, dl);
	if (p->closed)
		rc = -ESHUTDOWN;
	bool post = false;
	if (rc == 0 || (rc == -ETIMEDOUT && p->ob.len < PY_OUTBOX)) {
		rc = 0;
		q_push(&p->ob, o);
		o = NULL;
		post = !p->drain_posted;
		p->drain_posted = true;
	}
	pthread_mutex_unlock(&p->mu);
	free(o);
	if (post && rt_post(p->rt, drain_job, p) < 0)
		rc = -ESHUTDOWN;
	leave_locked(p);
	return rc;
}

/* The Python side of a receive queue: waits (timeout_ms < 0: forever) on
 * cv for a node and pops it into *out; -ESHUTDOWN once closed, or
 * -ETIMEDOUT. */
static int q_wait_pop(derp_pyclient_t *p, struct pyq *q, pthread_cond_t *cv, int timeout_ms, void **out)
{
	struct timespec ts;
	const struct timespec *dl = spz_deadline_in(&ts, timeout_ms);
	int rc = 0;
	*out = NULL;
	pthread_mutex_lock(&p->mu);
	enter(p);
	while (!q->head && !p->closed && rc == 0)
		rc = spz_cond_wait(cv, &p->mu, dl);
	if (q->head) {
		*out = q_pop(q);
		rc = 0;
	} else if (p->closed) {
		rc = -ESHUTDOWN;
	} else {
		rc = -ETIMEDOUT;
	}
	leave(p);
	pthread_mutex_unlock(&p->mu);
	return rc;
}

int derp_pyclient_recv(derp_pyclient_t *p, int timeout_ms, struct derp_py_packet **out)
{
	void *pkt;
	int rc = q_wait_pop(p, &p->rx, &p->cv_rx, timeout_ms, &pkt);
	*out = pkt;
	return rc;
}

void derp_pyclient_packet_free(struct derp_py_packet *pkt) { free(pkt); }

int derp_pyclient_next_event(derp_pyclient_t *p, int timeout_ms, struct derp_client_event **out)
{
	void *node;
	int rc = q_wait_pop(p, &p->ev, &p->cv_ev, timeout_ms, &node);
	struct py_ev *e = node;
	*out = e ? &e->ev : NULL;
	return rc;
}

void derp_pyclient_event_free(struct derp_client_event *ev)
{
	/* ev is the first member of its py_ev. */
	free(ev);
}

/* Runs fn on the loop for a Python call, guarded against a concurrent free. */
struct loop_call {
	derp_pyclient_t *p;
	int i;
	void *ptr;
	size_t n;
};

static int call_on_loop(derp_pyclient_t *p, rt_rc_fn fn, struct loop_call *lc)
{
	pthread_mutex_lock(&p->mu);
	if (p->closed) {
		pthread_mutex_unlock(&p->mu);
		return -ESHUTDOWN;
	}
	enter(p);
	pthread_mutex_unlock(&p->mu);
	lc->p = p;
	int rc = rt_run(p->rt, fn, lc);
	leave_locked(p);
	return rc;
}

static int preferred_fn(void *arg)
{
	struct loop_call *lc = arg;
	return derp_client_note_preferred(lc->p->c, lc->i != 0);
}

int derp_pyclient_note_preferred(derp_pyclient_t *p, int preferred)
{
	return call_on_loop(p, preferred_fn, &(struct loop_call){.i = preferred});
}

static int ping_fn(void *arg)
{
	struct loop_call *lc = arg;
	return derp_client_ping(lc->p->c, lc->ptr);
}

int derp_pyclient_ping_start(derp_pyclient_t *p, int *slot)
{
	pthread_mutex_lock(&p->mu);
	struct py_ping *w = NULL;
	int i = 0;
	for (; i < PY_PING_WAITERS && !w; i++)
		if (!p->pings[i].used)
			w = &p->pings[i];
	if (!w || p->closed) {
		pthread_mutex_unlock(&p->mu);
		return p->closed ? -ESHUTDOWN : -EBUSY;
	}
	*slot = i - 1;
	memset(w, 0, sizeof(*w));
	w->used = true;
	randombytes_buf(w->data, sizeof(w->data));
	uint8_t data[8];
	memcpy(data, w->data, 8);
	enter(p);
	pthread_mutex_unlock(&p->mu);

	int rc = rt_run(p->rt, ping_fn, &(struct loop_call){.p = p, .ptr = data});
	pthread_mutex_lock(&p->mu);
	if (rc < 0)
		w->used = false;
	leave(p);
	pthread_mutex_unlock(&p->mu);
	return rc;
}

int derp_pyclient_ping_wait(derp_pyclient_t *p, int slot, int timeout_ms, uint64_t *rtt_us)
{
	if (slot < 0 || slot >= PY_PING_WAITERS)
		return -EINVAL;
	struct timespec ts;
	const struct timespec *dl = spz_deadline_in(&ts, timeout_ms);
	pthread_mutex_lock(&p->mu);
	struct py_ping *w = &p->pings[slot];
	enter(p);
	int rc = 0;
	while (rc == 0 && !w->done && !p->closed)
		rc = spz_cond_wait(&p->cv_state, &p->mu, dl);
	if (w->done) {
		rc = w->rc;
		*rtt_us = w->rtt_us;
	} else if (rc == 0 && p->closed) {
		rc = -ESHUTDOWN;
	}
	leave(p);
	pthread_mutex_unlock(&p->mu);
	return rc;
}

void derp_pyclient_ping_end(derp_pyclient_t *p, int slot)
{
	if (slot < 0 || slot >= PY_PING_WAITERS)
		return;
	pthread_mutex_lock(&p->mu);
	p->pings[slot].used = false;
	pthread_mutex_unlock(&p->mu);
}

int derp_pyclient_wait_connected(derp_pyclient_t *p, int timeout_ms)
{
	struct timespec ts;
	const struct timespec *dl = spz_deadline_in(&ts, timeout_ms);
	int rc = 0;
	pthread_mutex_lock(&p->mu);
	enter(p);
	while (!p->connected && !p->closed && !p->refused && rc == 0)
		rc = spz_cond_wait(&p->cv_state, &p->mu, dl);
	if (p->connected)
		rc = 0;
	else if (p->closed)
		rc = -ESHUTDOWN;
	else if (p->refused)
		rc = -EACCES;
	leave(p);
	pthread_mutex_unlock(&p->mu);
	return rc;
}

int derp_pyclient_connected(derp_pyclient_t *p)
{
	pthread_mutex_lock(&p->mu);
	int v = p->connected && !p->closed;
	pthread_mutex_unlock(&p->mu);
	return v;
}

static int stats_fn(void *arg)
{
	struct loop_call *lc = arg;
	derp_client_stats(lc->p->c, lc->ptr);
	return 0;
}

int derp_pyclient_stats(derp_pyclient_t *p, struct derp_client_stats *out)
{
	int rc = call_on_loop(p, stats_fn, &(struct loop_call){.ptr = out});
	if (rc < 0)
		return rc;
	pthread_mutex_lock(&p->mu);
	out->drops_recv_queue = p->drops_recv_queue;
	out->drops_events = __atomic_load_n(&p->drops_events, __ATOMIC_RELAXED);
	out->queued += p->ob.len;
	pthread_mutex_unlock(&p->mu);
	return 0;
}

void derp_pyclient_public_key(derp_pyclient_t *p, uint8_t out[32]) { memcpy(out, p->pub, 32); }

static int last_error_fn(void *arg)
{
	struct loop_call *lc = arg;
	return derp_client_last_error(lc->p->c, lc->ptr, lc->n);
}

int derp_pyclient_last_error(derp_pyclient_t *p, char *out, size_t cap)
{
	if (!cap)
		return -EINVAL;
	out[0] = 0;
	return call_on_loop(p, last_error_fn, &(struct loop_call){.ptr = out, .n = cap});
}

static int reconnect_fn(void *arg)
{
	struct loop_call *lc = arg;
	derp_client_reconnect(lc->p->c);
	return 0;
}

int derp_pyclient_reconnect(derp_pyclient_t *p)
{
	pthread_mutex_lock(&p->mu);
	p->refused = false;
	pthread_mutex_unlock(&p->mu);
	return call_on_loop(p, reconnect_fn, &(struct loop_call){0});
}
