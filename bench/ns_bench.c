/* Raw lwIP throughput: bulk TCP from host b to host a, through lwIP's raw
 * API only (no sockets, no Python), timed from the connection's
 * establishment to the last byte received. The hosts sit on a memory wire
 * (with a one-way delay) or on two WireGuard devices over loopback UDP, all
 * on one runtime of this process.
 *
 *     ns_bench wire|device DELAY_MS:BYTES ...
 *
 * prints one line per run: MB/s wall and MB per CPU-second of the process
 * (MB = 10^6 bytes). bench/netstack_bench.py builds and runs it. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "crypto/crypto.h"
#include "device/device_py.h"
#include "lwip/tcp.h"
#include "netstack/ns.h"

#define BENCH_CHUNK 16384
#define BENCH_PORT_BASE 5000 /* + the delay in ms, as netstack_bench.py did */
#define BENCH_TIMEOUT_S 600
#define BENCH_DELAY_MAX_MS 1000
#define BENCH_PING_MS 5000 /* the device link's first handshake */
#define BENCH_PING_SIZE 56
#define BENCH_WINDOW (1 << 20) /* lwipopts.h TCP_WND: the RTT limit's window */
#define KEY_LEN SPZ_X25519_KEY_LEN
#define UAPI_MAX 512

/* One transfer. The loop thread owns the pcbs and counters until `done`;
 * the main thread owns the struct (allocates, waits, frees). */
struct bench {
	/* loop thread only */
	struct tcp_pcb *lpcb, *srv, *cli;
	uint64_t total, sent, received;
	uint64_t t0;
	bool finished;
	/* mu guards done, rc and elapsed_ns: written once by the loop in
	 * bench_end, read by the main thread waiting on cv. */
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool done;
	int rc;
	uint64_t elapsed_ns;
};

static uint8_t pattern[BENCH_CHUNK];

static void drop(struct tcp_pcb **pp, bool abort)
{
	struct tcp_pcb *pcb = *pp;
	if (!pcb)
		return;
	*pp = NULL;
	tcp_arg(pcb, NULL);
	if (pcb->state == LISTEN) {
		tcp_accept(pcb, NULL);
		tcp_close(pcb);
		return;
	}
	tcp_recv(pcb, NULL);
	tcp_sent(pcb, NULL);
	tcp_err(pcb, NULL);
	if (abort || tcp_close(pcb) != ERR_OK)
		tcp_abort(pcb);
}

/* Loop thread: closes the pcbs and hands the result to the waiter. */
static void bench_end(struct bench *b, int rc, bool abort)
{
	if (b->finished)
		return;
	b->finished = true;
	uint64_t elapsed = rt_now_ns() - b->t0;
	drop(&b->cli, abort);
	drop(&b->srv, abort);
	drop(&b->lpcb, abort);
	pthread_mutex_lock(&b->mu);
	b->rc = rc;
	b->elapsed_ns = elapsed;
	b->done = true;
	pthread_cond_broadcast(&b->cv);
	pthread_mutex_unlock(&b->mu);
}

static void fill(struct bench *b)
{
	struct tcp_pcb *pcb = b->cli;
	bool wrote = false;
	while (b->sent < b->total) {
		uint64_t n = b->total - b->sent;
		if (n > BENCH_CHUNK)
			n = BENCH_CHUNK;
		if (n > tcp_sndbuf(pcb) || tcp_sndqueuelen(pcb) + n / pcb->mss + 2 >= TCP_SND_QUEUELEN)
			break;
		if (tcp_write(pcb, pattern, (u16_t)n, TCP_WRITE_FLAG_COPY) != ERR_OK)
			break;
		b->sent += n;
		wrote = true;
	}
	if (wrote)
		tcp_output(pcb);
}

static err_t cli_sent(void *arg, struct tcp_pcb *pcb, u16_t len)
{
	(void)pcb;
	(void)len;
	if (arg)
		fill(arg);
	return ERR_OK;
}

/* The failed pcb (*pp) is already freed by lwIP: forget it, end the run. */
static void pcb_failed(struct bench *b, struct tcp_pcb **pp, err_t err)
{
	*pp = NULL;
	bench_end(b, ns_err_to_errno(err), true);
}

static void cli_err(void *arg, err_t err)
{
	struct bench *b = arg;
	if (b)
		pcb_failed(b, &b->cli, err);
}

static void srv_err(void *arg, err_t err)
{
	struct bench *b = arg;
	if (b)
		pcb_failed(b, &b->srv, err);
}

static err_t srv_recv(void *arg, struct tcp_pcb *pcb, struct pbuf *p, err_t err)
{
	(void)err;
	struct bench *b = arg;
	if (!p || !b) {
		if (p)
			pbuf_free(p);
		return ERR_OK;
	}
	b->received += p->tot_len;
	for (size_t n = p->tot_len; n;) {
		u16_t k = n > 0xffff ? 0xffff : (u16_t)n;
		tcp_recved(pcb, k);
		n -= k;
	}
	pbuf_free(p);
	if (b->received >= b->total) {
		bench_end(b, 0, true); /* aborts this pcb */
		return ERR_ABRT;
	}
	return ERR_OK;
}

static err_t srv_accept(void *arg, struct tcp_pcb *pcb, err_t err)
{
	struct bench *b = arg;
	if (!b || err != ERR_OK || b->srv) {
		tcp_abort(pcb);
		return ERR_ABRT;
	}
	b->srv = pcb;
	tcp_arg(pcb, b);
	tcp_recv(pcb, srv_recv);
	tcp_err(pcb, srv_err);
	return ERR_OK;
}

static err_t cli_connected(void *arg, struct tcp_pcb *pcb, err_t err)
{
	(void)pcb;
	(void)err;
	struct bench *b = arg;
	b->t0 = rt_now_ns();
	fill(b);
	return ERR_OK;
}

struct start_call {
	ns_host_t *a, *b;
	uint16_t port;
	struct bench *bench;
};

static void start_on_loop(rt_t *rt, void *arg)
{
	(void)rt;
	struct start_call *c = arg;
	struct bench *b = c->bench;
	const ip_addr_t *dst = ns_host_addr(c->a, 4), *src = ns_host_addr(c->b, 4);
	b->t0 = rt_now_ns();
	if (!dst || !src) {
		bench_end(b, -EAFNOSUPPORT, true);
		return;
	}
	struct tcp_pcb *l = tcp_new_ip_type(IPADDR_TYPE_V4);
	err_t e = ERR_MEM;
	if (l)
		e = tcp_bind(l, dst, c->port);
	if (e == ERR_OK)
		b->lpcb = tcp_listen_with_backlog_and_err(l, 1, &e);
	if (!b->lpcb) {
		if (l)
			tcp_abort(l);
		bench_end(b, ns_err_to_errno(e), true);
		return;
	}
	tcp_arg(b->lpcb, b);
	tcp_accept(b->lpcb, srv_accept);
	b->cli = tcp_new_ip_type(IPADDR_TYPE_V4);
	e = ERR_MEM;
	if (b->cli)
		e = tcp_bind(b->cli, src, 0);
	if (e == ERR_OK) {
		tcp_arg(b->cli, b);
		tcp_sent(b->cli, cli_sent);
		tcp_err(b->cli, cli_err);
		tcp_nagle_disable(b->cli);
		e = tcp_connect(b->cli, dst, c->port, cli_connected);
	}
	if (e != ERR_OK)
		bench_end(b, ns_err_to_errno(e), true);
	ns_stack_kick();
}

static void cancel_on_loop(rt_t *rt, void *arg)
{
	(void)rt;
	bench_end(arg, -ETIMEDOUT, true);
	ns_stack_kick();
}

static double cpu_seconds(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Bulk TCP b -> a: 0 with *wall and *per_cpu in MB/s, or -errno. */
static int raw_tcp(rt_t *rt, ns_host_t *a, ns_host_t *b, uint64_t bytes, uint16_t port, double *wall, double *per_cpu)
{
	struct bench *bn = calloc(1, sizeof(*bn));
	if (!bn)
		return -ENOMEM;
	bn->total = bytes;
	pthread_mutex_init(&bn->mu, NULL);
	pthread_cond_init(&bn->cv, NULL); /* CLOCK_REALTIME: a coarse bound is enough */
	struct timespec until;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += BENCH_TIMEOUT_S;
	double c0 = cpu_seconds();
	struct start_call c = {.a = a, .b = b, .port = port, .bench = bn};
	int rc = rt_call(rt, start_on_loop, &c);
	if (rc == 0) {
		pthread_mutex_lock(&bn->mu);
		while (!bn->done && pthread_cond_timedwait(&bn->cv, &bn->mu, &until) != ETIMEDOUT)
			;
		bool done = bn->done;
		pthread_mutex_unlock(&bn->mu);
		if (!done)
			rt_call(rt, cancel_on_loop, bn); /* sets done */
		pthread_mutex_lock(&bn->mu);
		rc = bn->rc;
		pthread_mutex_unlock(&bn->mu);
	}
	double cpu = cpu_seconds() - c0;
	if (rc == 0) {
		*wall = (double)bytes / ((double)bn->elapsed_ns / 1e9) / 1e6;
		*per_cpu = (double)bytes / cpu / 1e6;
	}
	pthread_mutex_destroy(&bn->mu);
	pthread_cond_destroy(&bn->cv);
	free(bn);
	return rc;
}

/* ---- links ---- */

struct pair {
	ns_host_t *a, *b;
	ns_wire_t *wire;
	dev_device *dev[2];
};

static void v4(struct ns_addr *out, uint8_t x, uint8_t y, uint8_t z, uint8_t w, uint8_t prefix)
{
	*out = (struct ns_addr){.family = 4, .prefix = prefix, .ip = {x, y, z, w}};
}

static void v6(struct ns_addr *out, uint16_t net, uint16_t host, uint8_t prefix)
{
	*out = (struct ns_addr){.family = 6, .prefix = prefix};
	out->ip[0] = (uint8_t)(net >> 8);
	out->ip[1] = (uint8_t)net;
	out->ip[14] = (uint8_t)(host >> 8);
	out->ip[15] = (uint8_t)host;
}

/* 192.168.4.1/24 + fd00::1/64 and .2 on a memory wire (wired_pair). */
static int wire_pair(rt_t *rt, struct pair *p)
{
	int rc = ns_wire_new(rt, 0, &p->wire);
	if (rc < 0)
		return rc;
	ns_host_t **h[2] = {&p->a, &p->b};
	for (int side = 0; side < 2; side++) {
		struct ns_addr addrs[2];
		v4(&addrs[0], 192, 168, 4, (uint8_t)(side + 1), 24);
		v6(&addrs[1], 0xfd00, (uint16_t)(side + 1), 64);
		rc = ns_host_new(rt, addrs, 2, NS_DEFAULT_MTU, ns_wire_output, ns_wire_end(p->wire, side), h[side]);
		if (rc < 0)
			return rc;
		rc = ns_wire_plug(p->wire, side, *h[side]);
		if (rc < 0)
			return rc;
	}
	return 0;
}

static int peer_with(dev_device *d, const uint8_t pub[KEY_LEN], int port, int host)
{
	char text[UAPI_MAX];
	int n = snprintf(text, sizeof(text), "public_key=");
	for (int i = 0; i < KEY_LEN; i++)
		n += snprintf(text + n, sizeof(text) - (size_t)n, "%02x", pub[i]);
	n += snprintf(text + n, sizeof(text) - (size_t)n,
		      "\nendpoint=127.0.0.1:%d\nreplace_allowed_ips=true\n"
		      "allowed_ip=10.44.0.%d/32\nallowed_ip=fd44::%d/128",
		      port, host, host);
	return dev_py_uapi_set(d, text, (size_t)n);
}

/* 10.44.0.1/24 + fd44::1/64 and .2, each on its own WireGuard device on
 * loopback UDP, peered with each other (netstack_bench.py's device_pair). */
static int device_pair(rt_t *rt, struct pair *p)
{
	uint8_t key[2][KEY_LEN], pub[2][KEY_LEN];
	int port[2], rc;
	for (int i = 0; i < 2; i++) {
		spz_random(key[i], KEY_LEN);
		spz_x25519_clamp(key[i]);
		p->dev[i] = dev_py_new(rt, key[i], 0, &rc);
		if (!p->dev[i])
			return rc;
		if ((rc = dev_py_public_key(p->dev[i], pub[i])) < 0)
			return rc;
		if ((port[i] = dev_py_listen_port(p->dev[i])) < 0)
			return port[i];
	}
	spz_wipe(key, sizeof(key));
	ns_host_t **h[2] = {&p->a, &p->b};
	for (int i = 0; i < 2; i++) {
		if ((rc = peer_with(p->dev[i], pub[1 - i], port[1 - i], 2 - i)) < 0)
			return rc;
		struct ns_addr addrs[2];
		v4(&addrs[0], 10, 44, 0, (uint8_t)(i + 1), 24);
		v6(&addrs[1], 0xfd44, (uint16_t)(i + 1), 64);
		rc = ns_host_new(rt, addrs, 2, NS_DEFAULT_MTU, ns_dev_output, p->dev[i], h[i]);
		if (rc < 0)
			return rc;
		if ((rc = ns_dev_attach(*h[i], p->dev[i])) < 0)
			return rc;
	}
	/* The handshake, before the timed runs. */
	struct ns_addr dst;
	v4(&dst, 10, 44, 0, 1, 0);
	ns_op_t *op;
	if ((rc = ns_ping(p->b, &dst, BENCH_PING_SIZE, &op)) < 0)
		return rc;
	rc = ns_op_wait(op, BENCH_PING_MS);
	ns_op_free(op);
	return rc;
}

static void pair_close(struct pair *p)
{
	ns_host_t *h[2] = {p->a, p->b};
	for (int i = 0; i < 2; i++) {
		if (h[i] && p->dev[i])
			ns_dev_detach(h[i], p->dev[i]);
		else if (h[i] && p->wire)
			ns_wire_plug(p->wire, i, NULL);
		if (h[i])
			ns_host_free(h[i]);
	}
	for (int i = 0; i < 2; i++) {
		if (p->dev[i]) {
			dev_py_shutdown(p->dev[i]);
			dev_py_free(p->dev[i]);
		}
	}
	if (p->wire)
		ns_wire_free(p->wire);
}

/* "DELAY_MS:BYTES": false unless both are whole decimal numbers. */
static bool parse_run(const char *s, unsigned long *delay_ms, unsigned long long *bytes)
{
	char *end;
	errno = 0;
	*delay_ms = strtoul(s, &end, 10);
	if (end == s || *end != ':')
		return false;
	s = end + 1;
	*bytes = strtoull(s, &end, 10);
	return end != s && !*end && errno == 0;
}

static int usage(void)
{
	fprintf(stderr, "usage: ns_bench wire|device DELAY_MS:BYTES ...\n"
			"  (the device link has no delay: DELAY_MS must be 0)\n");
	return 2;
}

int main(int argc, char **argv)
{
	if (argc < 3)
		return usage();
	bool wire = strcmp(argv[1], "wire") == 0;
	if (!wire && strcmp(argv[1], "device") != 0)
		return usage();
	rt_t *rt = rt_new("ns-bench");
	if (!rt) {
		perror("rt_new");
		return 1;
	}
	struct pair p = {0};
	int rc = wire ? wire_pair(rt, &p) : device_pair(rt, &p);
	if (rc < 0)
		fprintf(stderr, "ns_bench: setting up the %s link: %s\n", argv[1], strerror(-rc));
	for (int i = 2; i < argc && rc >= 0; i++) {
		unsigned long delay_ms;
		unsigned long long bytes;
		if (!parse_run(argv[i], &delay_ms, &bytes) || !bytes || delay_ms > BENCH_DELAY_MAX_MS ||
		    (!wire && delay_ms)) {
			rc = usage();
			break;
		}
		if (wire && (rc = ns_wire_set_delay(p.wire, (uint32_t)delay_ms * 1000)) < 0)
			break;
		double mbps = 0, per_cpu = 0;
		rc = raw_tcp(rt, p.a, p.b, bytes, (uint16_t)(BENCH_PORT_BASE + delay_ms), &mbps, &per_cpu);
		if (rc < 0) {
			fprintf(stderr, "ns_bench: %s at %lu ms: %s\n", argv[1], delay_ms, strerror(-rc));
			break;
		}
		char limit[64] = "CPU-bound";
		if (delay_ms)
			snprintf(limit, sizeof(limit), "window/RTT limit %.0f MB/s",
				 BENCH_WINDOW / (2.0 * (double)delay_ms / 1000) / 1e6);
		printf("     one-way %2lu ms: %7.0f MB/s wall, %7.0f MB per CPU-s  (%s)\n", delay_ms, mbps, per_cpu,
		       limit);
		fflush(stdout);
	}
	pair_close(&p);
	rt_free(rt);
	return rc < 0 ? 1 : rc;
}
