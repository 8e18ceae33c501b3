/* Tracing cost in C, one run: WireGuard core encrypt+decrypt of 1420-byte
 * packets (4 tap points per packet) with tracing off, on with headers only
 * (snap 128) and on with whole packets, while a second thread drains the
 * rings as Python's collector would; rounds interleaved, best of each.
 * Build and run: make trace-bench (bench/trace_bench.py runs it too). */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "runtime/rt.h"
#include "trace/trace.h"
#include "trace/trace_py.h"
#include "wg/wg.h"

#define PKT 1420
#define PACKETS 200000
#define ROUNDS 5
#define DRAIN_BUF (4u << 20)
#define HEADERS_SNAP 128
#define OFF_CALLS 200000000ull

struct side {
	wg_device *dev;
	struct side *other;
	wg_endpoint self;
	uint64_t delivered;
};

static atomic_bool draining;
static atomic_ullong drained;

static void on_send(void *ctx, wg_peer *peer, const wg_endpoint *to, const uint8_t *data, size_t len)
{
	struct side *s = ctx;
	wg_device_receive(s->other->dev, 1, &s->self, data, len);
}

static void on_deliver(void *ctx, wg_peer *peer, const uint8_t *ip, size_t len) { ((struct side *)ctx)->delivered++; }

static void pair(struct side *a, struct side *b)
{
	struct side *s[2] = {a, b};
	uint8_t pub[2][32], key[32], ip[4] = {10, 0, 0, 1};
	for (int i = 0; i < 2; i++) {
		memset(s[i], 0, sizeof(*s[i]));
		s[i]->other = s[1 - i];
		s[i]->self = (wg_endpoint){.family = WG_AF_INET, .port = (uint16_t)(i + 1)};
		struct wg_ops o = {.ctx = s[i], .send = on_send, .deliver = on_deliver};
		s[i]->dev = wg_device_new(&o);
		memset(key, i + 1, sizeof(key));
		wg_device_set_private_key(s[i]->dev, 0, key);
		wg_device_public_key(s[i]->dev, pub[i]);
	}
	for (int i = 0; i < 2; i++) {
		wg_peer *p;
		wg_peer_add(s[i]->dev, pub[1 - i], &p);
		wg_peer_set_endpoint(p, &s[1 - i]->self);
		ip[3] = (uint8_t)(2 - i);
		wg_peer_allowed_ip_add(s[i]->dev, p, WG_AF_INET, ip, 32);
	}
}

static void *drainer(void *arg)
{
	uint8_t *buf = malloc(DRAIN_BUF);
	/* Like Python's collector: drain, and when the rings were empty wait
	 * a little instead of spinning on a core the producer needs. */
	while (atomic_load(&draining)) {
		size_t recs;
		size_t n = tr_py_drain(buf, DRAIN_BUF, &recs);
		atomic_fetch_add(&drained, n);
		if (!n)
			nanosleep(&(struct timespec){.tv_nsec = 1000000}, NULL);
	}
	free(buf);
	return arg;
}

/* MB/s of one round; snap < 0: tracing off. */
static double round_mbs(struct side *a, const uint8_t *pkt, int snap, uint64_t *overflow)
{
	pthread_t th;
	struct tr_stats st0, st1;
	if (snap >= 0) {
		struct tr_config cfg = {.snaplen = (uint32_t)snap, .ring_bytes = 4u << 20};
		tr_py_start(&cfg, 1);
		atomic_store(&draining, true);
		pthread_create(&th, NULL, drainer, NULL);
	}
	tr_py_stats(&st0);
	uint64_t t0 = rt_now_ns();
	for (int i = 0; i < PACKETS; i++)
		wg_device_send(a->dev, 1, pkt, PKT);
	double dt = (double)(rt_now_ns() - t0) / 1e9;
	tr_py_stats(&st1);
	if (snap >= 0) {
		tr_py_stop();
		atomic_store(&draining, false);
		pthread_join(th, NULL);
	}
	*overflow = st1.overflow - st0.overflow;
	return (double)PACKETS * PKT / 1e6 / dt;
}

/* The cost of a tap while tracing is off: the same call with and without
 * one TR_TAP line (not inlined, so the loop cannot drop the check). */
static volatile uint64_t sink;

__attribute__((noinline)) static void hop_bare(const uint8_t *p, size_t n) { sink += n + p[0]; }

__attribute__((noinline)) static void hop_tapped(const uint8_t *p, size_t n)
{
	TR_TAP(pkt, TR_HOP_NS_OUT, 1, NULL, p, n);
	sink += n + p[0];
}

static double ns_per_call(void (*fn)(const uint8_t *, size_t), const uint8_t *p)
{
	uint64_t t0 = rt_now_ns();
	for (uint64_t i = 0; i < OFF_CALLS; i++)
		fn(p, (size_t)i & 1023);
	return (double)(rt_now_ns() - t0) / (double)OFF_CALLS;
}

static void bench_off(const uint8_t *p)
{
	double bare = 1e9, tapped = 1e9;
	for (int r = 0; r < ROUNDS; r++) {
		double b = ns_per_call(hop_bare, p), t = ns_per_call(hop_tapped, p);
		bare = b < bare ? b : bare;
		tapped = t < tapped ? t : tapped;
	}
	printf("a tap while tracing is off: %.3f ns per call with it, %.3f ns without (best of %d x %llu calls)\n",
	       tapped, bare, ROUNDS, OFF_CALLS);
}

int main(void)
{
	static uint8_t pkt[PKT];
	struct side a, b;
	pair(&a, &b);
	memset(pkt, 0xab, sizeof(pkt));
	pkt[0] = 0x45, pkt[2] = PKT >> 8, pkt[3] = PKT & 0xff;
	memcpy(pkt + 12, (uint8_t[8]){10, 0, 0, 1, 10, 0, 0, 2}, 8); /* 10.0.0.1 -> 10.0.0.2 */
	wg_device_send(a.dev, 0, pkt, PKT);                          /* handshake */
	if (b.delivered != 1) {
		fprintf(stderr, "the handshake did not complete (delivered %llu)\n", (unsigned long long)b.delivered);
		return 1;
	}
	const char *names[3] = {"off", "headers (snap 128)", "whole packets"};
	int snaps[3] = {-1, HEADERS_SNAP, 0 /* set below */};
	snaps[2] = PKT + 64;
	double best[3] = {0};
	uint64_t over[3] = {0};
	for (int r = 0; r < ROUNDS; r++)
		for (int m = 0; m < 3; m++) {
			uint64_t o;
			double v = round_mbs(&a, pkt, snaps[m], &o);
			if (v > best[m])
				best[m] = v;
			over[m] += o;
		}
	printf("WireGuard core encrypt+decrypt, %d x %d-byte packets, 4 taps each, best of %d interleaved rounds:\n",
	       PACKETS, PKT, ROUNDS);
	for (int m = 0; m < 3; m++)
		printf("  tracing %-20s %7.0f MB/s  %5.1f%% of off  %6.3f us/packet  overflow %llu\n", names[m],
		       best[m], best[m] / best[0] * 100, PKT / best[m], (unsigned long long)over[m]);
	printf("  drained by a second thread: %.0f MB of records\n", (double)atomic_load(&drained) / 1e6);
	bench_off(pkt);
	wg_device_free(a.dev);
	wg_device_free(b.dev);
	return 0;
}
