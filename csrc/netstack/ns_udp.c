/* UDP sockets for Python: a SOCK_SEQPACKET socketpair end per socket, each
 * message an NS_ADDR_HDR address header plus the payload; the loop moves
 * datagrams between it and one lwIP udp pcb per host address. Datagrams
 * that do not fit (full socket, bad header) are dropped and counted. */
#include "ns.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "lwip/udp.h"

#define UDP_BUDGET 64 /* datagrams per event, for fairness */
#define UDP_MAX_PAYLOAD 65507

struct ns_udp {
	struct ns_obj obj;
	rt_t *rt;
	struct udp_pcb *pcbs[NS_MAX_ADDRS];
	int npcbs;
	int fd;
	int theirs;
	uint16_t port;
	bool shut;
};

static uint8_t dgram[NS_ADDR_HDR + 65536]; /* loop thread only */

static void udp_shutdown(struct ns_udp *u)
{
	if (u->shut)
		return;
	u->shut = true;
	ns_obj_unlink(&u->obj);
	for (int i = 0; i < u->npcbs; i++)
		udp_remove(u->pcbs[i]);
	u->npcbs = 0;
	if (u->fd >= 0) {
		rt_fd_del(u->rt, u->fd);
		close(u->fd);
	}
	u->fd = -1;
}

static void udp_obj_close(struct ns_obj *o) { udp_shutdown((struct ns_udp *)o); }

static void udp_in(void *arg, struct udp_pcb *pcb, struct pbuf *p, const ip_addr_t *addr, u16_t port)
{
	(void)pcb;
	struct ns_udp *u = arg;
	uint8_t hdr[NS_ADDR_HDR];
	ns_addr_hdr_put(hdr, addr, port);
	struct iovec iov[17];
	int n = 0;
	iov[n].iov_base = hdr;
	iov[n++].iov_len = sizeof(hdr);
	for (struct pbuf *q = p; q && n < 17; q = q->next) {
		iov[n].iov_base = q->payload;
		iov[n++].iov_len = q->len;
	}
	struct msghdr mh = {.msg_iov = iov, .msg_iovlen = (size_t)n};
	bool whole = n < 17 || !p; /* a longer chain is flattened */
	ssize_t w;
	if (whole) {
		w = sendmsg(u->fd, &mh, MSG_DONTWAIT | MSG_NOSIGNAL);
	} else {
		memcpy(dgram, hdr, sizeof(hdr));
		pbuf_copy_partial(p, dgram + NS_ADDR_HDR, p->tot_len, 0);
		w = send(u->fd, dgram, NS_ADDR_HDR + (size_t)p->tot_len, MSG_DONTWAIT | MSG_NOSIGNAL);
	}
	if (w < 0)
		u->obj.host->st.udp_drops++;
	pbuf_free(p);
}

static struct udp_pcb *pcb_for(struct ns_udp *u, const ip_addr_t *dst)
{
	for (int i = 0; i < u->npcbs; i++)
		if (IP_GET_TYPE(&u->pcbs[i]->local_ip) == IP_GET_TYPE(dst))
			return u->pcbs[i];
	return NULL;
}

static void udp_fd_cb(rt_t *rt, int fd, uint32_t events, void *arg)
{
	(void)rt;
	struct ns_udp *u = arg;
	ns_host_t *h = u->obj.host;
	for (int i = 0; i < UDP_BUDGET; i++) {
		ssize_t n = recv(fd, dgram, sizeof(dgram), MSG_DONTWAIT | MSG_TRUNC);
		if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
			udp_shutdown(u); /* the caller closed its end */
			break;
		}
		if (n < 0)
			break;
		ip_addr_t dst;
		uint16_t port;
		struct udp_pcb *pcb;
		if ((size_t)n > sizeof(dgram) || n < NS_ADDR_HDR || n - NS_ADDR_HDR > UDP_MAX_PAYLOAD ||
		    ns_addr_hdr_get(dgram, &dst, &port) < 0 || !(pcb = pcb_for(u, &dst))) {
			h->st.udp_drops++;
			continue;
		}
		u16_t len = (u16_t)(n - NS_ADDR_HDR);
		struct pbuf *p = pbuf_alloc(PBUF_TRANSPORT, len, PBUF_RAM);
		if (!p) {
			h->st.udp_drops++;
			continue;
		}
		memcpy(p->payload, dgram + NS_ADDR_HDR, len);
		if (udp_sendto(pcb, p, &dst, port) != ERR_OK)
			h->st.udp_drops++;
		pbuf_free(p);
	}
	(void)events;
	ns_stack_kick();
}

struct udp_call {
	ns_host_t *h;
	struct ns_udp *u;
	uint16_t port;
	int rc;
};

static void open_on_loop(rt_t *rt, void *arg)
{
	struct udp_call *c = arg;
	struct ns_udp *u = c->u;
	ns_host_t *h = c->h;
	const ip_addr_t *addrs[NS_MAX_ADDRS];
	int n = ns_host_addrs(h, addrs);
	ns_obj_link(h, &u->obj, udp_obj_close);
	uint16_t port = c->port;
	for (int i = 0; i < n && c->rc == 0; i++) {
		struct udp_pcb *pcb = udp_new_ip_type(IP_GET_TYPE(addrs[i]));
		if (!pcb) {
			c->rc = -ENOMEM;
			break;
		}
		err_t e = udp_bind(pcb, addrs[i], port);
		if (e != ERR_OK) {
			udp_remove(pcb);
			c->rc = ns_err_to_errno(e);
			break;
		}
		port = pcb->local_port;
		udp_recv(pcb, udp_in, u);
		u->pcbs[u->npcbs++] = pcb;
	}
	u->port = port;
	if (c->rc == 0)
		c->rc = rt_fd_add(rt, u->fd, EPOLLIN, udp_fd_cb, u);
	if (c->rc < 0) {
		u->fd = -1; /* closed by the caller */
		udp_shutdown(u);
	}
}

int ns_udp_open(ns_host_t *h, uint16_t port, ns_udp_t **out)
{
	*out = NULL;
	struct ns_udp *u = calloc(1, sizeof(*u));
	if (!u)
		return -ENOMEM;
	u->rt = h->rt;
	struct udp_call c = {.h = h, .u = u, .port = port};
	int rc = ns_pair_open(h, &u->fd, &u->theirs, open_on_loop, &c, &c.rc);
	if (rc < 0) {
		free(u);
		return rc;
	}
	*out = u;
	return 0;
}

int ns_udp_take_fd(ns_udp_t *u) { return ns_fd_take(&u->theirs); }

int ns_udp_port(ns_udp_t *u) { return u->port; }

static void close_on_loop(rt_t *rt, void *arg)
{
	(void)rt;
	udp_shutdown(arg);
}

void ns_udp_close(ns_udp_t *u)
{
	if (!u)
		return;
	rt_call(u->rt, close_on_loop, u);
	if (u->theirs >= 0)
		close(u->theirs);
	free(u);
}
