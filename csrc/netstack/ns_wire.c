/* A memory wire between two hosts, for tests and benchmarks: what one side
 * sends is copied into a queue and delivered to the other side's host on a
 * later loop iteration (never from inside lwIP's output path), optionally
 * after a delay. Queues are bounded; copies of packets can be captured for
 * inspection. */
#include "ns.h"
#include "ns_wire.h"

#include "impair/impair.h"
#include "lwip/pbuf.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define WIRE_MAX_QUEUE 65536 /* packets per direction */

/* A queue of packets: pbufs ready for the receiving host's input, copied
 * once on output like the device layer's decryption will. */
struct wslot {
	struct pbuf *p;
	uint64_t due_us;
};

struct wq {
	struct wslot *s;
	uint32_t head, n, cap;
};

struct wcap { /* a captured copy */
	struct wcap *next;
	uint16_t len;
	uint8_t side;
	uint8_t data[];
};

/* Crafted loss and reordering on one direction (ns_wire_set_bottleneck,
 * ns_wire_drop_list, ns_wire_hold_list). */
struct wloss {
	uint32_t depth, per_ms; /* bottleneck; depth 0: none */
	uint64_t tokens_milli;  /* packets that may leave now, in 1/1000 */
	uint64_t last_us;
	uint32_t *drop, ndrop, next;  /* packet indices to lose, ascending */
	uint32_t *hold, nhold, hnext; /* packet indices to hold back, ascending */
	uint32_t hold_us;             /* by this much more than the others */
	uint64_t index;               /* packets sent since a list was set */
};

struct wend {
	ns_wire_t *w;
	int side;
};

struct ns_wire {
	rt_t *rt;
	struct wend ends[2];
	ns_host_t *hosts[2];
	struct wq q[2];  /* q[i]: sent by side i */
	struct wq hq[2]; /* hq[i]: what ns_wire_hold_list holds back of it */
	struct wloss loss[2];
	uint32_t delay_us;
	rt_timer_t *timer;
	struct ns_wire_stats st;
	struct wcap *cap_head, *cap_tail;
	uint32_t ncap, capmax;
	struct imp *imp[2]; /* imp[i]: what side i sends (IMP_OUT = side 0) */
};

static uint64_t now_us(void) { return rt_now_ns() / 1000u; }

#define US_PER_MS 1000u
#define IP4_HLEN 20
#define IP6_HLEN 40
#define TCP_HLEN_MIN 20
#define IPPROTO_TCP_NUM 6
#define WIRE_BURST_MS 4u

static void arm(ns_wire_t *w)
{
	uint64_t due = UINT64_MAX;
	for (int i = 0; i < 2; i++) {
		if (w->hq[i].n && w->hq[i].s[w->hq[i].head].due_us < due)
			due = w->hq[i].s[w->hq[i].head].due_us;
		if (!w->q[i].n)
			continue;
		uint64_t d = w->q[i].s[w->q[i].head].due_us;
		/* a bottleneck out of tokens: the next ms refills them */
		if (w->loss[i].depth && w->loss[i].tokens_milli < US_PER_MS)
			d = now_us() + US_PER_MS;
		if (d < due)
			due = d;
	}
	if (due == UINT64_MAX)
		return;
	/* The loop's timers are in ms: due now means this very iteration. */
	rt_timer_arm_at(w->timer, due == 0 || due <= now_us() ? 0 : (due + 999) / 1000);
}

static int q_push(struct wq *q, struct pbuf *p, uint64_t due)
{
	if (q->n == q->cap) {
		uint32_t cap = q->cap ? q->cap * 2 : 256;
		if (cap > WIRE_MAX_QUEUE)
			return -ENOBUFS;
		struct wslot *s = malloc(cap * sizeof(*s));
		if (!s)
			return -ENOMEM;
		for (uint32_t i = 0; i < q->n; i++)
			s[i] = q->s[(q->head + i) % q->cap];
		free(q->s);
		q->s = s;
		q->cap = cap;
		q->head = 0;
	}
	q->s[(q->head + q->n) % q->cap] = (struct wslot){.p = p, .due_us = due};
	q->n++;
	return 0;
}

static struct pbuf *q_pop(struct wq *q)
{
	struct pbuf *p = q->s[q->head].p;
	q->head = (q->head + 1) % q->cap;
	q->n--;
	return p;
}

static void q_clear(struct wq *q)
{
	while (q->n)
		pbuf_free(q_pop(q));
	free(q->s);
	*q = (struct wq){0};
}

static void cap_pop_free(ns_wire_t *w)
{
	struct wcap *c = w->cap_head;
	w->cap_head = c->next;
	if (!w->cap_head)
		w->cap_tail = NULL;
	w->ncap--;
	free(c);
}

static void capture(ns_wire_t *w, const uint8_t *ip, size_t len, int side)
{
	if (w->ncap >= w->capmax)
		cap_pop_free(w); /* the oldest makes room */
	struct wcap *c = malloc(sizeof(*c) + len);
	if (!c)
		return;
	c->next = NULL;
	c->len = (uint16_t)len;
	c->side = (uint8_t)side;
	memcpy(c->data, ip, len);
	if (w->cap_tail)
		w->cap_tail->next = c;
	else
		w->cap_head = c;
	w->cap_tail = c;
	w->ncap++;
}

static void wire_push(struct wend *e, const uint8_t *ip, size_t len);

/* Whether a packet carries TCP payload (the drop list counts only those,
 * so a test's indices do not depend on when pure ACKs leave). */
static bool tcp_payload(const uint8_t *ip, size_t len)
{
	size_t hl;
	if (len >= IP4_HLEN && ip[0] >> 4 == 4 && ip[9] == IPPROTO_TCP_NUM)
		hl = (size_t)(ip[0] & 0xf) * 4;
	else if (len >= IP6_HLEN && ip[0] >> 4 == 6 && ip[6] == IPPROTO_TCP_NUM)
		hl = IP6_HLEN;
	else
		return false;
	if (len < hl + TCP_HLEN_MIN)
		return false;
	return len > hl + (size_t)(ip[hl + 12] >> 4) * 4;
}

/* Whether index i is next on a list (ascending), which then moves on. */
static bool listed(const uint32_t *list, uint32_t n, uint32_t *next, uint64_t i)
{
	if (*next >= n || list[*next] != i)
		return false;
	(*next)++;
	return true;
}

/* The bottleneck's tokens: per_ms packets per ms, at most WIRE_BURST_MS'
 * worth (the loop's ms timers fire late by a ms or two). */
static void refill(struct wloss *l)
{
	uint64_t now = now_us(), dt = now - l->last_us;
	l->last_us = now;
	uint64_t t = l->tokens_milli + dt * l->per_ms;
	uint64_t cap = (uint64_t)l->per_ms * US_PER_MS * WIRE_BURST_MS;
	l->tokens_milli = t < cap ? t : cap;
}

/* derper's queue: packets that have reached the bottleneck (are due) beyond
 * its depth drop the oldest. Packets still within the delay have not
 * reached it yet. Returns how many were dropped. */
static uint32_t trim(ns_wire_t *w, int s, uint64_t now)
{
	struct wq *q = &w->q[s];
	uint32_t due = 0, dropped = 0;
	while (due < q->n && q->s[(q->head + due) % q->cap].due_us <= now)
		due++;
	for (; due > w->loss[s].depth; due--, dropped++) {
		pbuf_free(q_pop(q));
		w->st.lost[s]++;
	}
	return dropped;
}

void ns_wire_output(void *end, const uint8_t *ip, size_t len)
{
	struct wend *e = end;
	struct imp *m = e->w->imp[e->side];
	if (m)
		imp_input(m, NULL, 0, ip, len);
	else
		wire_push(e, ip, len);
}

static void imp_push(void *ctx, const void *addr, size_t alen, const uint8_t *data, size_t len)
{
	(void)addr;
	(void)alen;
	wire_push(ctx, data, len);
}

static void wire_push(struct wend *e, const uint8_t *ip, size_t len)
{
	ns_wire_t *w = e->w;
	int s = e->side;
	struct wloss *l = &w->loss[s];
	bool held = false;
	if ((l->ndrop || l->nhold) && tcp_payload(ip, len)) {
		uint64_t i = l->index++;
		if (listed(l->drop, l->ndrop, &l->next, i)) {
			w->st.lost[s]++;
			return;
		}
		held = listed(l->hold, l->nhold, &l->hnext, i);
	}
	struct pbuf *p = w->hosts[1 - s] ? ns_pbuf_for_input(ip, len) : NULL;
	uint64_t due = w->delay_us ? now_us() + w->delay_us : 0;
	if (held)
		due = now_us() + w->delay_us + l->hold_us;
	if (!p || q_push(held ? &w->hq[s] : &w->q[s], p, due) < 0) {
		if (p)
			pbuf_free(p);
		w->st.dropped[s]++;
		return;
	}
	w->st.packets[s]++;
	w->st.bytes[s] += len;
	if (w->capmax)
		capture(w, ip, len, s);
	if (w->q[0].n + w->q[1].n + w->hq[0].n + w->hq[1].n == 1)
		arm(w);
}

static void deliver(rt_t *rt, rt_timer_t *t, void *arg)
{
	(void)rt;
	(void)t;
	ns_wire_t *w = arg;
	uint64_t now = now_us();
	/* Only what was queued before this call: replies produced by these
	 * deliveries wait for the next loop iteration. */
	uint32_t n[2] = {w->q[0].n, w->q[1].n};
	for (int s = 0; s < 2; s++) {
		/* held packets rejoin past the others that were sent after them */
		for (uint32_t k = w->hq[s].n; k-- && w->hq[s].s[w->hq[s].head].due_us <= now;) {
			struct pbuf *p = q_pop(&w->hq[s]);
			if (w->hosts[1 - s]) {
				ns_host_input_pbuf(w->hosts[1 - s], p);
			} else {
				pbuf_free(p);
				w->st.dropped[s]++;
			}
		}
		struct wq *q = &w->q[s];
		struct wloss *l = &w->loss[s];
		if (l->depth) {
			refill(l);
			uint32_t d = trim(w, s, now);
			n[s] = n[s] > d ? n[s] - d : 0;
		}
		while (n[s]-- && q->n && q->s[q->head].due_us <= now) {
			if (l->depth) {
				if (l->tokens_milli < US_PER_MS)
					break;
				l->tokens_milli -= US_PER_MS;
			}
			struct pbuf *p = q_pop(q);
			ns_host_t *h = w->hosts[1 - s];
			if (h) {
				ns_host_input_pbuf(h, p);
			} else {
				pbuf_free(p);
				w->st.dropped[s]++;
			}
		}
	}
	arm(w);
}

int ns_wire_new(rt_t *rt, uint32_t delay_us, ns_wire_t **out)
{
	*out = NULL;
	ns_wire_t *w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	w->rt = rt;
	w->delay_us = delay_us;
	for (int i = 0; i < 2; i++)
		w->ends[i] = (struct wend){.w = w, .side = i};
	w->timer = rt_timer_new(rt, deliver, w); /* not yet published to the loop */
	if (!w->timer) {
		free(w);
		return -ENOMEM;
	}
	*out = w;
	return 0;
}

void *ns_wire_end(ns_wire_t *w, int side) { return side == 0 || side == 1 ? &w->ends[side] : NULL; }

struct wire_call {
	ns_wire_t *w;
	int side;
	ns_host_t *h;
	uint32_t delay_us;
	uint32_t depth, per_ms, *drop, ndrop, hold_us;
	int max;
	uint8_t *buf;
	size_t cap;
	struct ns_wire_stats *st;
	int rc;
};

static void plug_on_loop(rt_t *rt, void *arg)
{
	(void)rt;
	struct wire_call *c = arg;
	c->w->hosts[c->side] = c->h;
}

int ns_wire_plug(ns_wire_t *w, int side, ns_host_t *h)
{
	if (side != 0 && side != 1)
		return -EINVAL;
	struct wire_call c = {.w = w, .side = side, .h = h};
	return rt_call(w->rt, plug_on_loop, &c);
}

static void delay_on_loop(rt_t *rt, void *arg)
{
	(void)rt;
	struct wire_call *c = arg;
	c->w->delay_us = c->delay_us;
}

int ns_wire_set_delay(ns_wire_t *w, uint32_t delay_us)
{
	struct wire_call c = {.w = w, .delay_us = delay_us};
	return rt_call(w->rt, delay_on_loop, &c);
}

static void bottleneck_on_loop(rt_t *rt, void *arg)
{
	(void)rt;
	struct wire_call *c = arg;
	struct wloss *l = &c->w->loss[c->side];
	l->depth = c->depth;
	l->per_ms = c->per_ms;
	l->tokens_milli = 0;
	l->last_us = now_us();
}

int ns_wire_set_bottleneck(ns_wire_t *w, int side, uint32_t depth, uint32_t per_ms)
{
	if ((side != 0 && side != 1) || (depth && !per_ms) || depth > WIRE_MAX_QUEUE || per_ms > WIRE_MAX_QUEUE)
		return -EINVAL;
	struct wire_call c = {.w = w, .side = side, .depth = depth, .per_ms = per_ms};
	return rt_call(w->rt, bottleneck_on_loop, &c);
}

static void drop_list_on_loop(rt_t *rt, void *arg)
{
	(void)rt;
	struct wire_call *c = arg;
	struct wloss *l = &c->w->loss[c->side];
	if (c->hold_us) {
		free(l->hold);
		l->hold = c->drop;
		l->nhold = c->ndrop;
		l->hnext = 0;
		l->hold_us = c->hold_us;
	} else {
		free(l->drop);
		l->drop = c->drop;
		l->ndrop = c->ndrop;
		l->next = 0;
	}
	l->index = 0;
}

/* A drop list (hold_us 0) or a hold list. */
static int set_list(ns_wire_t *w, int side, const uint32_t *idx, uint32_t n, uint32_t hold_us)
{
	if ((side != 0 && side != 1) || n > WIRE_MAX_QUEUE)
		return -EINVAL;
	for (uint32_t i = 1; i < n; i++)
		if (idx[i] <= idx[i - 1])
			return -EINVAL; /* ascending, no repeats */
	uint32_t *copy = NULL;
	if (n) {
		copy = malloc(n * sizeof(*copy));
		if (!copy)
			return -ENOMEM;
		memcpy(copy, idx, n * sizeof(*copy));
	}
	struct wire_call c = {.w = w, .side = side, .drop = copy, .ndrop = n, .hold_us = hold_us};
	int rc = rt_call(w->rt, drop_list_on_loop, &c);
	if (rc < 0)
		free(copy);
	return rc;
}

int ns_wire_drop_list(ns_wire_t *w, int side, const uint32_t *idx, uint32_t n) { return set_list(w, side, idx, n, 0); }

int ns_wire_hold_list(ns_wire_t *w, int side, const uint32_t *idx, uint32_t n, uint32_t hold_us)
{
	if (!hold_us)
		return -EINVAL;
	return set_list(w, side, idx, n, hold_us);
}

static void stats_on_loop(rt_t *rt, void *arg)
{
	(void)rt;
	struct wire_call *c = arg;
	*c->st = c->w->st;
}

int ns_wire_get_stats(ns_wire_t *w, struct ns_wire_stats *out)
{
	struct wire_call c = {.w = w, .st = out};
	return rt_call(w->rt, stats_on_loop, &c);
}

static void capture_on_loop(rt_t *rt, void *arg)
{
	(void)rt;
	struct wire_call *c = arg;
	ns_wire_t *w = c->w;
	w->capmax = (uint32_t)c->max;
	while (w->ncap > w->capmax)
		cap_pop_free(w);
}

int ns_wire_capture(ns_wire_t *w, int max)
{
	if (max < 0 || max > WIRE_MAX_QUEUE)
		return -EINVAL;
	struct wire_call c = {.w = w, .max = max};
	return rt_call(w->rt, capture_on_loop, &c);
}

static void take_on_loop(rt_t *rt, void *arg)
{
	(void)rt;
	struct wire_call *c = arg;
	struct wcap *p = c->w->cap_head;
	if (!p) {
		c->rc = 0;
		return;
	}
	if (p->len > c->cap) {
		c->rc = -EMSGSIZE;
		return;
	}
	memcpy(c->buf, p->data, p->len);
	c->side = p->side;
	c->rc = p->len;
	cap_pop_free(c->w);
}

int ns_wire_take(ns_wire_t *w, uint8_t *buf, size_t cap, int *side)
{
	struct wire_call c = {.w = w, .buf = buf, .cap = cap, .side = -1};
	int rc = rt_call(w->rt, take_on_loop, &c);
	*side = c.side;
	return rc < 0 ? rc : c.rc;
}

rt_t *ns_wire_rt(const ns_wire_t *w) { return w->rt; }

int ns_wire_impair(ns_wire_t *w, int dir, int op, const struct imp_config *cfg, struct imp_stats *out)
{
	return imp_slot_op(&w->imp[dir], w->rt, op, cfg, imp_push, &w->ends[dir], out);
}

static void free_on_loop(rt_t *rt, void *arg)
{
	(void)rt;
	ns_wire_t *w = arg;
	imp_slot_free(&w->imp[0]);
	imp_slot_free(&w->imp[1]);
	rt_timer_free(w->timer);
	for (int i = 0; i < 2; i++) {
		q_clear(&w->q[i]);
		q_clear(&w->hq[i]);
		free(w->loss[i].drop);
		free(w->loss[i].hold);
	}
	while (w->cap_head)
		cap_pop_free(w);
}

void ns_wire_free(ns_wire_t *w)
{
	if (!w)
		return;
	rt_call(w->rt, free_on_loop, w);
	free(w);
}
