/* Raw lwIP throughput: bulk TCP from host b to host a over their link,
 * through lwIP's raw API only (no sockets, no Python), timed from the
 * connection's establishment to the last byte received. */
#include "ns.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "lwip/tcp.h"

#define BENCH_CHUNK 16384

struct bench {
	struct ns_op *op;
	struct tcp_pcb *lpcb, *srv, *cli;
	uint64_t total, sent, received;
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

static void bench_end(struct bench *b, int rc, bool abort)
{
	uint64_t elapsed = rt_now_ns() - b->op->t0;
	drop(&b->cli, abort);
	drop(&b->srv, abort);
	drop(&b->lpcb, abort);
	b->op->priv = NULL;
	ns_op_complete(b->op, rc, elapsed);
	free(b);
}

static void fill(struct bench *b)
{
	struct tcp_pcb *pcb = b->cli;
	bool wrote = false;
	while (b->sent < b->total) {
		uint64_t n = b->total - b->sent;
		if (n > BENCH_CHUNK)
			n = BENCH_CHUNK;
		if (n > tcp_sndbuf(pcb) ||
		    tcp_sndqueuelen(pcb) + n / pcb->mss + 2 >= TCP_SND_QUEUELEN)
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

/* The failed pcb is already freed by lwIP: forget it, end the run. */
static void cli_err(void *arg, err_t err)
{
	struct bench *b = arg;
	if (!b)
		return;
	b->cli = NULL;
	bench_end(b, ns_err_to_errno(err), true);
}

static void srv_err(void *arg, err_t err)
{
	struct bench *b = arg;
	if (!b)
		return;
	b->srv = NULL;
	bench_end(b, ns_err_to_errno(err), true);
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
	b->op->t0 = rt_now_ns();
	fill(b);
	return ERR_OK;
}

static void bench_cancel(struct ns_op *op)
{
	struct bench *b = op->priv;
	if (!b)
		return;
	drop(&b->cli, true);
	drop(&b->srv, true);
	drop(&b->lpcb, true);
	op->priv = NULL;
	free(b);
}

struct bench_call {
	ns_host_t *a, *b;
	uint16_t port;
	uint64_t bytes;
	struct ns_op *op;
	int rc;
};

static void start_on_loop(rt_t *rt, void *arg)
{
	(void)rt;
	struct bench_call *c = arg;
	const ip_addr_t *dst = ns_host_addr(c->a, 4), *src = ns_host_addr(c->b, 4);
	if (!dst || !src) {
		c->rc = -EAFNOSUPPORT;
		return;
	}
	struct bench *b = calloc(1, sizeof(*b));
	struct ns_op *op = b ? ns_op_new(c->b, NS_OP_BENCH) : NULL;
	if (!op) {
		free(b);
		c->rc = -ENOMEM;
		return;
	}
	b->op = op;
	b->total = c->bytes;
	op->priv = b;
	op->cancel = bench_cancel;
	op->t0 = rt_now_ns();
	c->op = op;
	c->rc = 0;
	struct tcp_pcb *l = tcp_new_ip_type(IPADDR_TYPE_V4);
	err_t e = l ? tcp_bind(l, dst, c->port) : ERR_MEM;
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
	e = b->cli ? tcp_bind(b->cli, src, 0) : ERR_MEM;
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

int ns_bench_tcp(ns_host_t *a, ns_host_t *b, uint16_t port, uint64_t bytes, ns_op_t **out)
{
	*out = NULL;
	if (a->rt != b->rt || !port || !bytes)
		return -EINVAL;
	struct bench_call c = {.a = a, .b = b, .port = port, .bytes = bytes, .rc = -ESHUTDOWN};
	int rc = rt_call(a->rt, start_on_loop, &c);
	if (rc < 0)
		return rc;
	*out = c.op;
	return c.rc;
}
