/* TCP port forwards.
 *  in:  an OS listening socket; each accepted connection is bridged to a new
 *       tunnel connection from the host to `to`.
 *  out: tunnel listeners on the host's `port`; each accepted connection is
 *       bridged to a new OS connection to `to`.
 * A failed far side resets the near one (RST both ways). */
#include "ns_fwd.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "lwip/tcp.h"

#define ACCEPT_BUDGET 64

static void nodelay(int fd)
{
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

/* ---- OS -> tunnel ---- */

static void in_accept(rt_t *rt, int fd, uint32_t events, void *arg)
{
	(void)rt;
	(void)events;
	struct ns_fwd *f = arg;
	for (int i = 0; i < ACCEPT_BUDGET; i++) {
		int c = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (c < 0)
			break; /* EAGAIN, or a client that gave up already */
		nodelay(c);
		ns_bridge_connect(f->obj.host, &f->to_ip, f->to_port, c, NS_BR_FD_TCP);
	}
	ns_stack_kick();
}

static void in_shutdown(struct ns_fwd *f)
{
	if (f->os_fd >= 0) {
		rt_fd_del(f->rt, f->os_fd);
		close(f->os_fd);
		f->os_fd = -1;
	}
}

static void in_setup(struct ns_fwd *f, int *rc)
{
	f->shutdown = in_shutdown;
	if (!ns_host_addr(f->obj.host, IP_IS_V6(&f->to_ip) ? 6 : 4)) {
		*rc = -EAFNOSUPPORT;
		return;
	}
	ns_set_nonblock(f->os_fd);
	*rc = rt_fd_add(f->rt, f->os_fd, EPOLLIN, in_accept, f);
}

int ns_fwd_tcp_in(ns_host_t *h, int os_fd, const struct ns_addr *to, ns_fwd_t **out)
{
	return ns_fwd_in(h, os_fd, to, in_setup, out);
}

/* ---- tunnel -> OS ---- */

static err_t out_accept(void *arg, struct tcp_pcb *pcb, err_t err)
{
	struct ns_fwd *f = arg;
	if (!f || err != ERR_OK || !pcb)
		return ERR_VAL;
	int fd = socket(f->os_to.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		tcp_abort(pcb);
		return ERR_ABRT;
	}
	nodelay(fd);
	unsigned flags = NS_BR_FD_TCP;
	if (connect(fd, (struct sockaddr *)&f->os_to, f->os_to_len) < 0) {
		if (errno != EINPROGRESS) {
			close(fd);
			tcp_abort(pcb); /* refused at once: the tunnel side sees a RST */
			return ERR_ABRT;
		}
		flags |= NS_BR_FD_CONNECTING;
	}
	return ns_bridge_new(f->obj.host, pcb, fd, flags) < 0 ? ERR_ABRT : ERR_OK;
}

static void out_shutdown(struct ns_fwd *f)
{
	for (int i = 0; i < f->npcbs; i++) {
		tcp_arg(f->lpcbs[i], NULL);
		tcp_accept(f->lpcbs[i], NULL);
		tcp_close(f->lpcbs[i]);
	}
	f->npcbs = 0;
}

static void out_setup(struct ns_fwd *f, int *rc)
{
	f->shutdown = out_shutdown;
	int port = ns_tcp_listen_all(f->obj.host, f->port, f, out_accept, f->lpcbs, &f->npcbs);
	if (port < 0) {
		*rc = port;
		return;
	}
	f->port = (uint16_t)port;
}

int ns_fwd_tcp_out(ns_host_t *h, uint16_t port, const struct ns_addr *to, ns_fwd_t **out)
{
	return ns_fwd_out(h, port, to, out_setup, out);
}
