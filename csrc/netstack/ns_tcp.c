/* TCP for Python: connect (a waitable operation whose result is a bridged
 * socketpair end) and listeners (accepted connections are passed as fds
 * over a SOCK_SEQPACKET socket, so Python can select on the listener). */
#include "ns.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "lwip/tcp.h"

/* ---- connect ---- */

static void conn_detach(struct tcp_pcb *pcb)
{
	tcp_arg(pcb, NULL);
	tcp_err(pcb, NULL);
}

/* ns_tcp_splice's caller socket and the bytes to greet it with. */
struct splice {
	int fd;
	size_t hello_len;
	uint8_t hello[NS_SPLICE_HELLO];
};

/* A splice that will not happen: the caller's fd is closed plainly (no
 * RST: a reply it wrote on its own copy must still get out). */
static void splice_drop(struct ns_op *op)
{
	struct splice *sp = op->priv;
	if (!sp)
		return;
	op->priv = NULL;
	close(sp->fd);
	free(sp);
}

static err_t splice_connected(struct ns_op *op, struct tcp_pcb *pcb)
{
	struct splice *sp = op->priv;
	op->priv = NULL;
	/* A fresh socket's send buffer is empty: a few bytes go in whole. */
	ssize_t n = sp->hello_len ? send(sp->fd, sp->hello, sp->hello_len, MSG_NOSIGNAL | MSG_DONTWAIT) : 0;
	bool whole = n >= 0 && (size_t)n == sp->hello_len;
	int fd = sp->fd;
	free(sp);
	if (!whole) {
		close(fd);
		tcp_abort(pcb);
		ns_op_complete(op, -EPIPE, 0);
		return ERR_ABRT;
	}
	ns_set_nonblock(fd);
	int rc = ns_bridge_new(op->obj.host, pcb, fd, NS_BR_FD_TCP);
	ns_op_complete(op, rc < 0 ? rc : 0, 0);
	return rc < 0 ? ERR_ABRT : ERR_OK;
}

static err_t conn_connected(void *arg, struct tcp_pcb *pcb, err_t err)
{
	(void)err; /* always ERR_OK in lwIP 2.1.3 */
	struct ns_op *op = arg;
	op->pcb = NULL;
	conn_detach(pcb);
	if (op->kind == NS_OP_SPLICE)
		return splice_connected(op, pcb);
	int ours, theirs;
	int rc = ns_socketpair(SOCK_STREAM, &ours, &theirs);
	if (rc < 0) {
		tcp_abort(pcb);
		ns_op_complete(op, rc, 0);
		return ERR_ABRT;
	}
	rc = ns_bridge_new(op->obj.host, pcb, ours, 0);
	if (rc < 0) { /* the bridge aborted the pcb */
		close(theirs);
		ns_op_complete(op, rc, 0);
		return ERR_ABRT;
	}
	ns_op_complete(op, theirs, 0);
	return ERR_OK;
}

static void conn_err(void *arg, err_t err)
{
	struct ns_op *op = arg;
	op->pcb = NULL;
	/* While connecting, a RST means refused and lwIP aborts only when its
	 * SYN retransmissions run out. */
	int rc = err == ERR_RST ? -ECONNREFUSED : err == ERR_ABRT ? -ETIMEDOUT : ns_err_to_errno(err);
	splice_drop(op);
	ns_op_complete(op, rc, 0);
}

static void conn_cancel(struct ns_op *op)
{
	splice_drop(op);
	struct tcp_pcb *pcb = op->pcb;
	if (!pcb)
		return;
	op->pcb = NULL;
	conn_detach(pcb);
	tcp_abort(pcb);
}

struct tcp_call {
	ns_host_t *h;
	const struct ns_addr *addr;
	struct splice *splice; /* ns_tcp_splice: handed to the op */
	uint16_t port;
	int backlog;
	struct ns_op *op;
	struct ns_listener *l;
	int rc;
};

static void connect_on_loop(rt_t *rt, void *arg)
{
	(void)rt;
	struct tcp_call *c = arg;
	ip_addr_t dst;
	c->rc = ns_addr_to_ip(c->addr, &dst);
	if (c->rc < 0)
		return;
	const ip_addr_t *src = ns_host_addr(c->h, c->addr->family);
	if (!src) {
		c->rc = -EAFNOSUPPORT;
		return;
	}
	struct tcp_pcb *pcb = tcp_new_ip_type(IP_GET_TYPE(&dst));
	struct ns_op *op = pcb ? ns_op_new(c->h, c->splice ? NS_OP_SPLICE : NS_OP_CONNECT) : NULL;
	if (!op) {
		if (pcb)
			tcp_abort(pcb);
		c->rc = -ENOMEM;
		return;
	}
	op->priv = c->splice;
	c->splice = NULL;
	err_t e = tcp_bind(pcb, src, 0);
	if (e == ERR_OK) {
		op->pcb = pcb;
		op->cancel = conn_cancel;
		tcp_arg(pcb, op);
		tcp_err(pcb, conn_err);
		e = tcp_connect(pcb, &dst, c->addr->port, conn_connected);
	}
	if (e != ERR_OK) {
		op->pcb = NULL;
		conn_detach(pcb);
		tcp_abort(pcb);
		splice_drop(op);
		ns_op_complete(op, ns_err_to_errno(e), 0);
	}
	c->op = op;
	c->rc = 0;
	ns_stack_kick();
}

int ns_tcp_connect(ns_host_t *h, const struct ns_addr *dst, ns_op_t **out)
{
	*out = NULL;
	struct tcp_call c = {.h = h, .addr = dst, .rc = -ESHUTDOWN};
	int rc = rt_call(h->rt, connect_on_loop, &c);
	if (rc < 0)
		return rc;
	*out = c.op;
	return c.rc;
}

int ns_tcp_splice(ns_host_t *h, const struct ns_addr *dst, int fd, const uint8_t *hello, size_t hello_len,
		  ns_op_t **out)
{
	*out = NULL;
	struct splice *sp = hello_len <= NS_SPLICE_HELLO ? calloc(1, sizeof(*sp)) : NULL;
	if (!sp) {
		close(fd);
		return hello_len <= NS_SPLICE_HELLO ? -ENOMEM : -EINVAL;
	}
	sp->fd = fd;
	sp->hello_len = hello_len;
	if (hello_len)
		memcpy(sp->hello, hello, hello_len);
	struct tcp_call c = {.h = h, .addr = dst, .splice = sp, .rc = -ESHUTDOWN};
	int rc = rt_call(h->rt, connect_on_loop, &c);
	if (c.splice) { /* never reached an op: still ours */
		close(fd);
		free(c.splice);
	}
	if (rc < 0)
		return rc;
	*out = c.op;
	return c.rc;
}

/* ---- listeners ---- */

struct ns_listener {
	struct ns_obj obj;
	rt_t *rt;
	struct tcp_pcb *pcbs[NS_MAX_ADDRS];
	int npcbs;
	int fd;     /* our end of the SOCK_SEQPACKET pair */
	int theirs; /* the caller's end, until taken */
	uint16_t port;
	int backlog;
	atomic_int pending; /* passed to the socket, not yet accepted */
	bool shut;
};

static void lst_shutdown(struct ns_listener *l)
{
	if (l->shut)
		return;
	l->shut = true;
	ns_obj_unlink(&l->obj);
	for (int i = 0; i < l->npcbs; i++) {
		tcp_arg(l->pcbs[i], NULL);
		tcp_accept(l->pcbs[i], NULL);
		tcp_close(l->pcbs[i]); /* a listening pcb is freed at once */
	}
	l->npcbs = 0;
	if (l->fd >= 0)
		close(l->fd);
	l->fd = -1;
}

static void lst_obj_close(struct ns_obj *o) { lst_shutdown((struct ns_listener *)o); }

static err_t lst_accept(void *arg, struct tcp_pcb *pcb, err_t err)
{
	struct ns_listener *l = arg;
	if (!l || err != ERR_OK || !pcb)
		return ERR_VAL;
	ns_host_t *h = l->obj.host;
	if (atomic_load(&l->pending) >= l->backlog) {
		h->st.tcp_refused++;
		tcp_abort(pcb);
		return ERR_ABRT;
	}
	int ours, theirs;
	if (ns_socketpair(SOCK_STREAM, &ours, &theirs) < 0) {
		h->st.tcp_refused++;
		tcp_abort(pcb);
		return ERR_ABRT;
	}
	uint8_t hdr[NS_ADDR_HDR];
	ns_addr_hdr_put(hdr, &pcb->remote_ip, pcb->remote_port);
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} cm;
	memset(&cm, 0, sizeof(cm));
	struct iovec iov = {.iov_base = hdr, .iov_len = sizeof(hdr)};
	struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cm.buf, .msg_controllen = sizeof(cm.buf)};
	struct cmsghdr *ch = CMSG_FIRSTHDR(&mh);
	ch->cmsg_level = SOL_SOCKET;
	ch->cmsg_type = SCM_RIGHTS;
	ch->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(ch), &theirs, sizeof(int));
	ssize_t n = sendmsg(l->fd, &mh, MSG_DONTWAIT | MSG_NOSIGNAL);
	close(theirs); /* in flight (or refused): the kernel holds its own reference */
	if (n < 0) {
		h->st.tcp_refused++;
		close(ours);
		tcp_abort(pcb);
		return ERR_ABRT;
	}
	atomic_fetch_add(&l->pending, 1);
	if (ns_bridge_new(h, pcb, ours, 0) < 0)
		return ERR_ABRT;
	return ERR_OK;
}

int ns_tcp_listen_all(ns_host_t *h, uint16_t port, void *arg, tcp_accept_fn on_accept, struct tcp_pcb **pcbs, int *n)
{
	const ip_addr_t *addrs[NS_MAX_ADDRS];
	int naddrs = ns_host_addrs(h, addrs);
	for (int i = 0; i < naddrs; i++) {
		struct tcp_pcb *pcb = tcp_new_ip_type(IP_GET_TYPE(addrs[i]));
		if (!pcb)
			return -ENOMEM;
		/* Like servers on Linux: rebinding while old connections linger
		 * in TIME_WAIT is fine; a second listener is still refused. */
		ip_set_option(pcb, SOF_REUSEADDR);
		err_t e = tcp_bind(pcb, addrs[i], port);
		struct tcp_pcb *lp = e == ERR_OK ? tcp_listen_with_backlog_and_err(pcb, 255, &e) : NULL;
		if (!lp) {
			tcp_abort(pcb);
			return ns_err_to_errno(e);
		}
		port = lp->local_port;
		tcp_arg(lp, arg);
		tcp_accept(lp, on_accept);
		pcbs[(*n)++] = lp;
	}
	return port;
}

static void listen_on_loop(rt_t *rt, void *arg)
{
	(void)rt;
	struct tcp_call *c = arg;
	struct ns_listener *l = c->l;
	ns_obj_link(c->h, &l->obj, lst_obj_close);
	int port = ns_tcp_listen_all(c->h, c->port, l, lst_accept, l->pcbs, &l->npcbs);
	if (port < 0) {
		c->rc = port;
		l->fd = -1; /* closed by the caller */
		lst_shutdown(l);
		return;
	}
	l->port = (uint16_t)port;
}

int ns_tcp_listen(ns_host_t *h, uint16_t port, int backlog, ns_listener_t **out)
{
	*out = NULL;
	if (backlog < 1)
		backlog = 1;
	struct ns_listener *l = calloc(1, sizeof(*l));
	if (!l)
		return -ENOMEM;
	l->rt = h->rt;
	l->backlog = backlog;
	atomic_init(&l->pending, 0);
	struct tcp_call c = {.h = h, .port = port, .l = l, .rc = 0};
	int rc = ns_pair_open(h, &l->fd, &l->theirs, listen_on_loop, &c, &c.rc);
	if (rc < 0) {
		free(l);
		return rc;
	}
	*out = l;
	return 0;
}

int ns_listener_take_fd(ns_listener_t *l) { return ns_fd_take(&l->theirs); }

int ns_listener_port(ns_listener_t *l) { return l->port; }

void ns_listener_accepted(ns_listener_t *l)
{
	if (atomic_fetch_sub(&l->pending, 1) <= 0)
		atomic_fetch_add(&l->pending, 1); /* never below zero */
}

static void lst_close_on_loop(rt_t *rt, void *arg)
{
	(void)rt;
	lst_shutdown(arg);
}

void ns_listener_close(ns_listener_t *l)
{
	if (!l)
		return;
	if (rt_call(l->rt, lst_close_on_loop, l) < 0 && l->fd >= 0)
		close(l->fd);
	if (l->theirs >= 0)
		close(l->theirs);
	free(l);
}
