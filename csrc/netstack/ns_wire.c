/* A memory wire between two hosts, for tests and benchmarks: what one side
 * sends is copied into a queue and delivered to the other side's host on a
 * later loop iteration (never from inside lwIP's output path), optionally
 * after a delay. Queues are bounded; copies of packets can be captured for
 * inspection. */
#include "ns.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define WIRE_MAX_QUEUE 65536 /* packets per direction */

struct wpkt {
	struct wpkt *next;
	uint64_t due_us;
	uint16_t len;
	uint8_t side;
	uint8_t data[];
};

struct wdir {
	struct wpkt *head, *tail;
	uint32_t n;
};

struct wend {
	ns_wire_t *w;
	int side;
};

struct ns_wire {
	rt_t *rt;
	struct wend ends[2];
	ns_host_t *hosts[2];
	struct wdir q[2]; /* q[i]: sent by side i */
	uint32_t delay_us;
	rt_timer_t *timer;
	struct ns_wire_stats st;
	struct wdir cap;  /* captured copies */
	uint32_t capmax;
};

static uint64_t now_us(void) { return rt_now_ns() / 1000u; }

static void arm(ns_wire_t *w)
{
	uint64_t due = UINT64_MAX;
	for (int i = 0; i < 2; i++)
		if (w->q[i].head && w->q[i].head->due_us < due)
			due = w->q[i].head->due_us;
	if (due == UINT64_MAX)
		return;
	/* The loop's timers are in ms: due now means this very iteration. */
	rt_timer_arm_at(w->timer, due <= now_us() ? rt_now_ms() : (due + 999) / 1000);
}

static void push(struct wdir *d, struct wpkt *p)
{
	p->next = NULL;
	if (d->tail)
		d->tail->next = p;
	else
		d->head = p;
	d->tail = p;
	d->n++;
}

static struct wpkt *pop(struct wdir *d)
{
	struct wpkt *p = d->head;
	if (!p)
		return NULL;
	d->head = p->next;
	if (!d->head)
		d->tail = NULL;
	d->n--;
	return p;
}

static struct wpkt *copy(const uint8_t *ip, size_t len, int side)
{
	struct wpkt *p = malloc(sizeof(*p) + len);
	if (!p)
		return NULL;
	p->len = (uint16_t)len;
	p->side = (uint8_t)side;
	memcpy(p->data, ip, len);
	return p;
}

void ns_wire_output(void *end, const uint8_t *ip, size_t len)
{
	struct wend *e = end;
	ns_wire_t *w = e->w;
	int s = e->side;
	struct wpkt *p = NULL;
	if (len <= 0xffff && w->hosts[1 - s] && w->q[s].n < WIRE_MAX_QUEUE)
		p = copy(ip, len, s);
	if (!p) {
		w->st.dropped[s]++;
		return;
	}
	w->st.packets[s]++;
	w->st.bytes[s] += len;
	if (w->capmax) {
		if (w->cap.n >= w->capmax)
			free(pop(&w->cap));
		struct wpkt *c = copy(ip, len, s);
		if (c)
			push(&w->cap, c);
	}
	p->due_us = now_us() + w->delay_us;
	bool idle = !w->q[0].head && !w->q[1].head;
	push(&w->q[s], p);
	if (idle)
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
		while (n[s]-- && w->q[s].head && w->q[s].head->due_us <= now) {
			struct wpkt *p = pop(&w->q[s]);
			ns_host_t *h = w->hosts[1 - s];
			if (h)
				ns_host_input(h, p->data, p->len);
			else
				w->st.dropped[s]++;
			free(p);
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
	while (w->cap.n > w->capmax)
		free(pop(&w->cap));
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
	struct wpkt *p = c->w->cap.head;
	if (!p) {
		c->rc = 0;
		return;
	}
	if (p->len > c->cap) {
		c->rc = -EMSGSIZE;
		return;
	}
	pop(&c->w->cap);
	memcpy(c->buf, p->data, p->len);
	c->side = p->side;
	c->rc = p->len;
	free(p);
}

int ns_wire_take(ns_wire_t *w, uint8_t *buf, size_t cap, int *side)
{
	struct wire_call c = {.w = w, .buf = buf, .cap = cap, .side = -1};
	int rc = rt_call(w->rt, take_on_loop, &c);
	*side = c.side;
	return rc < 0 ? rc : c.rc;
}

static void free_on_loop(rt_t *rt, void *arg)
{
	(void)rt;
	ns_wire_t *w = arg;
	rt_timer_free(w->timer);
	for (int i = 0; i < 2; i++)
		while (w->q[i].head)
			free(pop(&w->q[i]));
	while (w->cap.head)
		free(pop(&w->cap));
}

void ns_wire_free(ns_wire_t *w)
{
	if (!w)
		return;
	rt_call(w->rt, free_on_loop, w);
	free(w);
}
