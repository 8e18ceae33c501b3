/* The impairment engine; see impair.h. Loop thread only. */
#include "impair/impair.h"
#include "base/list.h"
#include "impair/prng.h"

#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define NS_PER_US 1000u
#define NS_PER_MS 1000000u
#define NS_PER_S 1000000000.0

struct imp_pkt {
	struct imp_pkt *next;
	uint64_t due_ns;
	uint32_t len;
	uint16_t alen;
	uint8_t buf[]; /* addr[alen] then data[len] */
};

struct imp_fifo {
	struct imp_pkt *head, *tail;
	uint32_t n;
	uint64_t bytes;
};

struct imp {
	rt_t *rt;
	rt_timer_t *timer;
	imp_deliver_fn fn;
	void *ctx;
	struct imp_config cfg;
	struct imp_stats st;
	struct imp_prng rng;
	bool ge_bad;
	struct imp_fifo rq;    /* waiting for the bandwidth; head is on the link */
	struct imp_fifo dl;    /* the delay line, due times never decrease */
	uint64_t link_free_ns; /* the link finishes its current packet */
	uint64_t last_due_ns;  /* of the delay line's tail */
	int dispatching;       /* inside a deliver callback */
	bool dead;             /* freed from inside a callback: finish after it */
	uint8_t *scratch;      /* a corrupted copy of a packet delivered at once */
};

static uint64_t now_ns(void) { return rt_now_ns(); }

static bool prob_ok(double p) { return p >= 0.0 && p <= 1.0; }

int imp_config_check(const struct imp_config *c)
{
	if (!prob_ok(c->loss) || !prob_ok(c->ge_p) || !prob_ok(c->ge_r) || !prob_ok(c->ge_loss_bad) ||
	    !prob_ok(c->ge_loss_good) || !prob_ok(c->reorder) || !prob_ok(c->duplicate) || !prob_ok(c->corrupt))
		return -EINVAL;
	if (c->queue_policy != IMP_TAIL_DROP && c->queue_policy != IMP_DROP_HEAD)
		return -EINVAL;
	return 0;
}

/* ---- FIFOs of held copies ---- */

static void fifo_push(struct imp_fifo *f, struct imp_pkt *p)
{
	SPZ_FIFO_PUSH(f->head, f->tail, f->n, p, next);
	f->bytes += p->len;
}

static struct imp_pkt *fifo_pop(struct imp_fifo *f)
{
	struct imp_pkt *p;
	SPZ_FIFO_POP(f->head, f->tail, f->n, p, next);
	if (p)
		f->bytes -= p->len;
	return p;
}

static struct imp_pkt *pkt_new(const void *addr, size_t alen, const uint8_t *data, size_t len, int64_t flip_bit)
{
	struct imp_pkt *p = malloc(sizeof(*p) + alen + len);
	if (!p)
		return NULL;
	p->len = (uint32_t)len;
	p->alen = (uint16_t)alen;
	if (alen)
		memcpy(p->buf, addr, alen);
	memcpy(p->buf + alen, data, len);
	if (flip_bit >= 0)
		p->buf[alen + (size_t)flip_bit / 8] ^= (uint8_t)(1u << (flip_bit % 8));
	return p;
}

/* ---- delivery ---- */

static void deliver_raw(struct imp *m, const void *addr, size_t alen, const uint8_t *data, size_t len)
{
	m->st.delivered++;
	m->st.delivered_bytes += len;
	m->dispatching++;
	m->fn(m->ctx, addr, alen, data, len);
	m->dispatching--;
}

static void deliver_pkt(struct imp *m, struct imp_pkt *p)
{
	deliver_raw(m, p->buf, p->alen, p->buf + p->alen, p->len);
	free(p);
}

static void arm(struct imp *m)
{
	uint64_t due = UINT64_MAX;
	if (m->rq.head)
		due = m->rq.head->due_ns;
	if (m->dl.head && m->dl.head->due_ns < due)
		due = m->dl.head->due_ns;
	if (due == UINT64_MAX) {
		rt_timer_cancel(m->timer);
		return;
	}
	/* The loop's timers are in ms: round up so nothing leaves early. */
	rt_timer_arm_at(m->timer, (due + NS_PER_MS - 1) / NS_PER_MS);
}

/* ---- the stages ---- */

static bool lost(struct imp *m)
{
	const struct imp_config *c = &m->cfg;
	if (c->ge_p > 0 || c->ge_r > 0) {
		if (m->ge_bad ? imp_prng_chance(&m->rng, c->ge_r) : imp_prng_chance(&m->rng, c->ge_p))
			m->ge_bad = !m->ge_bad;
		if (m->ge_bad)
			m->st.bad_state_packets++;
		return imp_prng_chance(&m->rng, m->ge_bad ? c->ge_loss_bad : c->ge_loss_good);
	}
	return imp_prng_chance(&m->rng, c->loss);
}

static uint64_t serialize_ns(const struct imp *m, size_t len)
{
	return (uint64_t)((double)len * 8.0 * NS_PER_S / (double)m->cfg.rate_bps);
}

/* The delay for the next packet (delay +- jitter, not below 0). */
static uint64_t delay_ns(struct imp *m)
{
	int64_t d = (int64_t)m->cfg.delay_us;
	if (m->cfg.jitter_us) {
		uint64_t span = 2 * (uint64_t)m->cfg.jitter_us + 1;
		d += (int64_t)imp_prng_below(&m->rng, span) - (int64_t)m->cfg.jitter_us;
	}
	return d > 0 ? (uint64_t)d * NS_PER_US : 0;
}

/* A packet leaves the bandwidth stage at time t: into the delay line,
 * or out at once. p: its held copy (NULL: the caller's buffer). */
static void delay_stage(struct imp *m, struct imp_pkt *p, const void *addr, size_t alen, const uint8_t *data,
			size_t len, int64_t flip_bit, uint64_t t)
{
	uint64_t d = delay_ns(m);
	bool skip = imp_prng_chance(&m->rng, m->cfg.reorder);
	if (skip && m->dl.head)
		m->st.reordered++;
	if (skip || (d == 0 && !m->dl.head)) {
		if (p) {
			deliver_pkt(m, p);
		} else if (flip_bit >= 0) {
			if (!m->scratch && !(m->scratch = malloc(IMP_MAX_PACKET))) {
				m->st.dropped_overflow++;
				return;
			}
			memcpy(m->scratch, data, len);
			m->scratch[flip_bit / 8] ^= (uint8_t)(1u << (flip_bit % 8));
			deliver_raw(m, addr, alen, m->scratch, len);
		} else {
			deliver_raw(m, addr, alen, data, len);
		}
		return;
	}
	bool counted = p != NULL; /* already held (and counted) by the bandwidth stage */
	if (m->dl.n >= IMP_MAX_HELD || m->dl.bytes + len > IMP_MAX_HELD_BYTES ||
	    (!p && !(p = pkt_new(addr, alen, data, len, flip_bit)))) {
		free(p);
		m->st.dropped_overflow++;
		return;
	}
	uint64_t due = t + d;
	if (due < m->last_due_ns)
		due = m->last_due_ns; /* jitter keeps the order; reorder is its own knob */
	m->last_due_ns = due;
	p->due_ns = due;
	fifo_push(&m->dl, p);
	if (!counted)
		m->st.delayed++;
}

/* The head of the bandwidth queue starts on the link. */
static void rate_start_head(struct imp *m, uint64_t now)
{
	struct imp_pkt *h = m->rq.head;
	if (!h)
		return;
	uint64_t start = m->link_free_ns > now ? m->link_free_ns : now;
	h->due_ns = start + serialize_ns(m, h->len);
}

static void rate_stage(struct imp *m, const void *addr, size_t alen, const uint8_t *data, size_t len, int64_t flip_bit,
		       uint64_t now)
{
	uint32_t limit = m->cfg.queue ? m->cfg.queue : IMP_DEFAULT_QUEUE;
	if (m->rq.n >= limit) {
		m->st.dropped_queue++;
		if (m->cfg.queue_policy == IMP_TAIL_DROP)
			return;
		free(fifo_pop(&m->rq)); /* drop-head: the oldest waiting packet goes */
		m->link_free_ns = now;
		rate_start_head(m, now);
	}
	struct imp_pkt *p = pkt_new(addr, alen, data, len, flip_bit);
	if (!p) {
		m->st.dropped_overflow++;
		return;
	}
	fifo_push(&m->rq, p);
	m->st.delayed++;
	if (m->rq.n == 1)
		rate_start_head(m, now);
}

static void run(rt_t *rt, rt_timer_t *t, void *arg)
{
	(void)rt;
	(void)t;
	struct imp *m = arg;
	uint64_t now = now_ns();
	m->dispatching++;
	while (!m->dead && m->rq.head && m->rq.head->due_ns <= now) {
		struct imp_pkt *p = fifo_pop(&m->rq);
		m->link_free_ns = p->due_ns;
		rate_start_head(m, p->due_ns);
		delay_stage(m, p, NULL, 0, NULL, p->len, -1, p->due_ns);
	}
	/* Only what is due now and was held before: bounded work per run. */
	for (uint32_t n = m->dl.n; !m->dead && n && m->dl.head && m->dl.head->due_ns <= now; n--)
		deliver_pkt(m, fifo_pop(&m->dl));
	m->dispatching--;
	if (m->dead) {
		struct imp *self = m;
		imp_slot_free(&self);
		return;
	}
	arm(m);
}

void imp_input(struct imp *m, const void *addr, size_t alen, const uint8_t *data, size_t len)
{
	const struct imp_config *c = &m->cfg;
	m->st.packets++;
	m->st.bytes += len;
	if (c->blackhole) {
		m->st.dropped_blackhole++;
		return;
	}
	if (c->mtu && len > c->mtu) {
		m->st.dropped_mtu++;
		return;
	}
	if (lost(m)) {
		m->st.dropped_loss++;
		return;
	}
	if (alen > IMP_ADDR_MAX || len > IMP_MAX_PACKET) {
		m->st.dropped_overflow++;
		return;
	}
	int copies = imp_prng_chance(&m->rng, c->duplicate) ? 2 : 1;
	if (copies == 2)
		m->st.duplicated++;
	uint64_t now = now_ns();
	m->dispatching++; /* a deliver callback may free the hop, and us */
	for (int i = 0; i < copies && !m->dead; i++) {
		int64_t flip_bit = -1;
		if (len && imp_prng_chance(&m->rng, c->corrupt)) {
			flip_bit = (int64_t)imp_prng_below(&m->rng, (uint64_t)len * 8);
			m->st.corrupted++;
		}
		if (c->rate_bps)
			rate_stage(m, addr, alen, data, len, flip_bit, now);
		else
			delay_stage(m, NULL, addr, alen, data, len, flip_bit, now);
	}
	if (--m->dispatching == 0 && m->dead) {
		struct imp *self = m;
		imp_slot_free(&self);
	} else if (!m->dead) {
		arm(m);
	}
}

/* ---- slots ---- */

static void stats_of(const struct imp *m, struct imp_stats *out)
{
	*out = m->st;
	out->held = m->rq.n + m->dl.n;
	out->active = 1;
}

static void configure(struct imp *m, const struct imp_config *cfg)
{
	m->cfg = *cfg;
	imp_prng_seed(&m->rng, cfg->seed);
	m->ge_bad = false;
	memset(&m->st, 0, sizeof(m->st));
}

/* Everything held goes out now, oldest first (the delay line's packets
 * entered before the bandwidth queue's). */
static void flush(struct imp *m)
{
	m->dispatching++;
	struct imp_pkt *p;
	while (!m->dead && (p = fifo_pop(&m->dl)))
		deliver_pkt(m, p);
	while (!m->dead && (p = fifo_pop(&m->rq)))
		deliver_pkt(m, p);
	m->dispatching--;
}

int imp_slot_op(struct imp **slot, rt_t *rt, int op, const struct imp_config *cfg, imp_deliver_fn fn, void *ctx,
		struct imp_stats *out)
{
	struct imp *m = *slot;
	if (out)
		memset(out, 0, sizeof(*out));
	switch (op) {
	case IMP_OP_SET: {
		if (!cfg || imp_config_check(cfg) < 0)
			return -EINVAL;
		if (!m) {
			m = calloc(1, sizeof(*m));
			if (!m)
				return -ENOMEM;
			m->rt = rt;
			m->fn = fn;
			m->ctx = ctx;
			m->timer = rt_timer_new(rt, run, m);
			if (!m->timer) {
				free(m);
				return -ENOMEM;
			}
			*slot = m;
		}
		configure(m, cfg);
		if (out)
			stats_of(m, out);
		return 0;
	}
	case IMP_OP_STATS:
		if (!m)
			return -ENOENT;
		if (out)
			stats_of(m, out);
		return 0;
	case IMP_OP_LIFT:
		if (!m)
			return -ENOENT;
		*slot = NULL; /* packets released now bypass it */
		flush(m);
		if (out) {
			stats_of(m, out);
			out->active = 0;
		}
		imp_slot_free(&m);
		return 0;
	default: return -EINVAL;
	}
}

void imp_slot_free(struct imp **slot)
{
	struct imp *m = *slot;
	if (!m)
		return;
	*slot = NULL;
	if (m->dispatching) {
		m->dead = true; /* the running callback frees it */
		return;
	}
	struct imp_pkt *p;
	while ((p = fifo_pop(&m->dl)))
		free(p);
	while ((p = fifo_pop(&m->rq)))
		free(p);
	rt_timer_free(m->timer);
	free(m->scratch);
	free(m);
}
