/* The taps: filters, then one record into the thread's ring. Everything
 * here runs only while tracing is on (the TR_TAP branch). */
#include "trace/trace.h"
#include "trace/ring.h"

#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <time.h>

#define TR_KEY_LEN 32
#define TR_KEYS_LEN (4 * TR_KEY_LEN)
#define TR_FRAME_HDR 5 /* DERP: type u8, length u32be */
#define TR_DERP_HDR (TR_FRAME_HDR + TR_KEY_LEN)
#define TR_DEFAULT_RING (4u << 20)
#define TR_MIN_RING 4096u

atomic_int tr_enabled;

/* The configuration as the taps read it: every field is atomic (relaxed
 * loads are plain loads), so a reconfiguration while packets flow is
 * race-free; a record may see a mix of old and new filters. */
static struct {
	_Atomic uint64_t hops;
	atomic_uint snaplen, ring_bytes, nobjs, npeers;
	_Atomic uint64_t objs[TR_MAX_OBJS], peers[TR_MAX_PEERS];
	atomic_uint ip_af, ip_proto, ip_port, pat_off, pat_len, keys;
	atomic_uchar ip_addr[16], pat_val[TR_MAX_PATTERN], pat_mask[TR_MAX_PATTERN];
} cfg;

/* The last record of this thread in the current loop callback. */
static _Thread_local uint64_t ctx_seq;

#define LD(x) atomic_load_explicit(&(x), memory_order_relaxed)
#define ST(x, v) atomic_store_explicit(&(x), (v), memory_order_relaxed)

uint64_t tr_key_id(const uint8_t *key)
{
	uint64_t v = 0;
	for (int i = 7; i >= 0; i--)
		v = v << 8 | key[i];
	return v;
}

/* ---- filters ---- */

static bool hop_on(int bit)
{
	uint64_t m = LD(cfg.hops);
	return !m || (m >> bit & 1);
}

static bool obj_on(uint64_t obj)
{
	unsigned n = LD(cfg.nobjs);
	if (!n)
		return true;
	for (unsigned i = 0; i < n && i < TR_MAX_OBJS; i++)
		if (LD(cfg.objs[i]) == obj)
			return true;
	return false;
}

static bool peer_on(uint64_t peer)
{
	unsigned n = LD(cfg.npeers);
	if (!n || !peer)
		return true;
	for (unsigned i = 0; i < n && i < TR_MAX_PEERS; i++)
		if (LD(cfg.peers[i]) == peer)
			return true;
	return false;
}

static bool addr_is(const uint8_t *a, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		if (a[i] != LD(cfg.ip_addr[i]))
			return false;
	return true;
}

static bool plain_hop(int hop)
{
	return hop == TR_HOP_NS_OUT || hop == TR_HOP_NS_IN || hop == TR_HOP_WG_ENCRYPT || hop == TR_HOP_WG_DECRYPT;
}

/* The IP match on a plaintext packet (v4, or v6 without extension headers
 * before TCP/UDP). */
static bool ip_on(int hop, const uint8_t *p, size_t len)
{
	unsigned af = LD(cfg.ip_af), proto = LD(cfg.ip_proto), port = LD(cfg.ip_port);
	if ((!af && !proto && !port) || !plain_hop(hop))
		return true;
	size_t hl;
	unsigned pr;
	if (len >= 20 && p[0] >> 4 == 4) {
		hl = (size_t)(p[0] & 0xf) * 4;
		pr = p[9];
		if (af && (af != 4 || (!addr_is(p + 12, 4) && !addr_is(p + 16, 4))))
			return false;
	} else if (len >= 40 && p[0] >> 4 == 6) {
		hl = 40;
		pr = p[6];
		if (af && (af != 6 || (!addr_is(p + 8, 16) && !addr_is(p + 24, 16))))
			return false;
	} else {
		return false;
	}
	if (proto && pr != proto)
		return false;
	if (!port)
		return true;
	if ((pr != IPPROTO_TCP && pr != IPPROTO_UDP) || len < hl + 4)
		return false;
	unsigned sp = (unsigned)p[hl] << 8 | p[hl + 1], dp = (unsigned)p[hl + 2] << 8 | p[hl + 3];
	return sp == port || dp == port;
}

/* The byte pattern, over the two segments as one. */
static bool pat_on(const uint8_t *h, size_t hl, const uint8_t *d, size_t dl)
{
	unsigned n = LD(cfg.pat_len), off = LD(cfg.pat_off);
	if (!n)
		return true;
	if ((size_t)off + n > hl + dl)
		return false;
	for (unsigned i = 0; i < n && i < TR_MAX_PATTERN; i++) {
		size_t at = off + i;
		uint8_t b = at < hl ? h[at] : d[at - hl];
		if ((b & LD(cfg.pat_mask[i])) != LD(cfg.pat_val[i]))
			return false;
	}
	return true;
}

/* ---- records ---- */

struct meta {
	uint64_t peer, ref, counter;
	uint32_t index;
	uint16_t reason;
	const struct sockaddr *addr;
	uint16_t lport;
};

static void put_addr(struct tr_rec *r, const struct sockaddr *sa)
{
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *a = (const struct sockaddr_in *)sa;
		r->af = 4;
		memcpy(r->addr, &a->sin_addr, 4);
		r->port = ntohs(a->sin_port);
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)sa;
		r->af = 6;
		memcpy(r->addr, &a->sin6_addr, 16);
		r->port = ntohs(a->sin6_port);
	}
}

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Writes one record of two segments (h then d), cut at the snap length. */
static void record(int hop, uint64_t obj, const struct meta *m, const uint8_t *h, size_t hl, const uint8_t *d,
		   size_t dl, size_t snap)
{
	size_t total = hl + dl, cap = total < snap ? total : snap;
	struct tr_rec *r = tr_ring_reserve(TR_REC_SIZE(cap), LD(cfg.ring_bytes));
	if (!r) {
		ctx_seq = 0;
		return;
	}
	memset(r, 0, sizeof(*r));
	r->size = (uint32_t)TR_REC_SIZE(cap);
	r->hop = (uint16_t)hop;
	r->reason = m->reason;
	r->seq = tr_ring_seq();
	r->t_ns = now_ns();
	r->obj = obj;
	r->peer = m->peer;
	r->ref = m->ref;
	r->counter = m->counter;
	r->index = m->index;
	r->len = (uint32_t)total;
	r->caplen = (uint32_t)cap;
	r->lport = m->lport;
	if (m->addr)
		put_addr(r, m->addr);
	uint8_t *out = (uint8_t *)(r + 1);
	size_t a = hl < cap ? hl : cap;
	if (a)
		memcpy(out, h, a);
	if (cap > a)
		memcpy(out + a, d, cap - a);
	if (!m->reason)
		ctx_seq = r->seq;
	tr_ring_commit();
}

static void tap(int hop, uint64_t obj, const struct meta *m, const uint8_t *h, size_t hl, const uint8_t *d, size_t dl)
{
	if (!d)
		dl = 0;
	const uint8_t *ip = hl ? h : d;
	size_t iplen = hl ? hl : dl;
	if (!hop_on(m->reason ? TR_HOPS_DROPS : hop) || !obj_on(obj) || !peer_on(m->peer) || !ip_on(hop, ip, iplen) ||
	    !pat_on(h, hl, d, dl)) {
		ctx_seq = 0;
		return;
	}
	record(hop, obj, m, h, hl, d, dl, LD(cfg.snaplen));
}

void tr_pkt(int hop, uint64_t obj, const uint8_t *key, const uint8_t *data, size_t len)
{
	struct meta m = {.peer = key ? tr_key_id(key) : 0};
	tap(hop, obj, &m, NULL, 0, data, len);
}

void tr_udp(int hop, uint64_t obj, const uint8_t *key, const struct sockaddr *remote, uint16_t lport,
	    const uint8_t *data, size_t len)
{
	struct meta m = {.peer = key ? tr_key_id(key) : 0, .addr = remote, .lport = lport};
	tap(hop, obj, &m, NULL, 0, data, len);
}

void tr_wg(int hop, uint64_t obj, const uint8_t *key, uint32_t index, uint64_t counter, const uint8_t *data, size_t len)
{
	struct meta m = {.peer = key ? tr_key_id(key) : 0, .index = index, .counter = counter};
	tap(hop, obj, &m, NULL, 0, data, len);
}

void tr_derp(int hop, uint64_t obj, const uint8_t *peer, int frame_type, const uint8_t *key, const uint8_t *data,
	     size_t len)
{
	uint8_t hdr[TR_DERP_HDR];
	size_t hl = key ? TR_DERP_HDR : TR_FRAME_HDR, body = hl - TR_FRAME_HDR + (data ? len : 0);
	hdr[0] = (uint8_t)frame_type;
	hdr[1] = (uint8_t)(body >> 24);
	hdr[2] = (uint8_t)(body >> 16);
	hdr[3] = (uint8_t)(body >> 8);
	hdr[4] = (uint8_t)body;
	if (key)
		memcpy(hdr + TR_FRAME_HDR, key, TR_KEY_LEN);
	struct meta m = {.peer = peer ? tr_key_id(peer) : 0};
	tap(hop, obj, &m, hdr, hl, data, len);
}

void tr_frame(int hop, uint64_t obj, const uint8_t *key, const uint8_t *frame, size_t len)
{
	struct meta m = {.peer = key ? tr_key_id(key) : 0};
	tap(hop, obj, &m, NULL, 0, frame, len);
}

void tr_drop(int hop, uint64_t obj, const uint8_t *key, int reason, const uint8_t *data, size_t len)
{
	struct meta m = {.peer = key ? tr_key_id(key) : 0, .reason = (uint16_t)reason, .ref = data ? 0 : ctx_seq};
	if (!hop_on(TR_HOPS_DROPS) || !obj_on(obj) || !peer_on(m.peer))
		return;
	record(hop, obj, &m, NULL, 0, data, data ? len : 0, LD(cfg.snaplen));
}

void tr_lost(int hop, uint64_t obj, int reason, uint64_t count)
{
	struct meta m = {.reason = (uint16_t)reason, .counter = count};
	if (count && hop_on(TR_HOPS_DROPS) && obj_on(obj))
		record(hop, obj, &m, NULL, 0, NULL, 0, 0);
}

void tr_keys(uint64_t obj, const uint8_t *keys128)
{
	struct meta m = {0};
	if (LD(cfg.keys) && obj_on(obj))
		record(TR_HOP_KEYS, obj, &m, NULL, 0, keys128, TR_KEYS_LEN, TR_KEYS_LEN);
}

void tr_ctx_clear(void) { ctx_seq = 0; }

/* ---- control (trace_py.h) ---- */

int tr_py_start(const struct tr_config *c, int discard)
{
	uint32_t ring = c->ring_bytes ? c->ring_bytes : TR_DEFAULT_RING;
	if (c->snaplen > TR_MAX_SNAPLEN || ring < TR_MIN_RING || c->nobjs > TR_MAX_OBJS || c->npeers > TR_MAX_PEERS ||
	    c->pat_len > TR_MAX_PATTERN || (c->ip_af != 0 && c->ip_af != 4 && c->ip_af != 6))
		return -EINVAL;
	ST(cfg.hops, c->hops);
	ST(cfg.snaplen, c->snaplen);
	ST(cfg.ring_bytes, ring);
	for (unsigned i = 0; i < TR_MAX_OBJS; i++)
		ST(cfg.objs[i], c->objs[i]);
	ST(cfg.nobjs, c->nobjs);
	for (unsigned i = 0; i < TR_MAX_PEERS; i++)
		ST(cfg.peers[i], c->peers[i]);
	ST(cfg.npeers, c->npeers);
	ST(cfg.ip_af, c->ip_af);
	ST(cfg.ip_proto, c->ip_proto);
	ST(cfg.ip_port, c->ip_port);
	for (unsigned i = 0; i < 16; i++)
		ST(cfg.ip_addr[i], c->ip_addr[i]);
	for (unsigned i = 0; i < TR_MAX_PATTERN; i++) {
		ST(cfg.pat_val[i], c->pat_val[i] & c->pat_mask[i]);
		ST(cfg.pat_mask[i], c->pat_mask[i]);
	}
	ST(cfg.pat_off, c->pat_off);
	ST(cfg.pat_len, c->pat_len);
	ST(cfg.keys, c->keys);
	if (discard)
		tr_ring_discard_all();
	atomic_store_explicit(&tr_enabled, 1, memory_order_release);
	return 0;
}

void tr_py_stop(void) { atomic_store_explicit(&tr_enabled, 0, memory_order_release); }

size_t tr_py_drain(uint8_t *buf, size_t cap, size_t *records) { return tr_ring_drain(buf, cap, records); }

void tr_py_stats(struct tr_stats *out)
{
	tr_ring_stats(out);
	out->enabled = (uint32_t)atomic_load(&tr_enabled);
}

void tr_py_clocks(uint64_t *mono, uint64_t *wall)
{
	struct timespec ts;
	*mono = now_ns();
	clock_gettime(CLOCK_REALTIME, &ts);
	*wall = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

void tr_py_inject(int hop, uint64_t obj, const uint8_t *data, size_t len)
{
	if (hop > 0 && hop < TR_HOP__COUNT)
		TR_TAP(pkt, hop, obj, NULL, data, len);
}
