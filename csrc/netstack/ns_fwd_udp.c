/* UDP port forwards, with a session per peer so replies find their way
 * back; idle sessions expire.
 *  in:  an OS UDP socket; each OS client gets a tunnel UDP pcb (the host's
 *       address, an ephemeral port) connected to `to`.
 *  out: tunnel UDP pcbs on the host's `port`; each tunnel peer gets an OS
 *       UDP socket connected to `to`. */
#include "ns_fwd.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "lwip/udp.h"

#define SESS_MAX 1024
#define SESS_IDLE_MS 60000
#define SWEEP_MS 5000
#define UDP_BUDGET 64

struct ns_fsess {
	struct ns_fsess *next;
	struct ns_fwd *f;
	struct udp_pcb *pcb; /* in: the session's own pcb; out: the listening one */
	int fd;              /* out: the session's OS socket */
	ip_addr_t peer;      /* out: the tunnel peer */
	uint16_t peer_port;
	struct sockaddr_storage os_peer; /* in: the OS client */
	socklen_t os_peer_len;
	uint64_t last_ms;
};

static uint8_t buf[65536]; /* loop thread only */

static void sess_free(struct ns_fwd *f, struct ns_fsess *s)
{
	/* out: the session owns an OS socket; in: its own pcb. */
	if (s->fd >= 0) {
		rt_fd_del(f->rt, s->fd);
		close(s->fd);
	} else if (s->pcb) {
		udp_remove(s->pcb);
	}
	f->nsessions--;
	free(s);
}

static void sweep(rt_t *rt, rt_timer_t *t, void *arg)
{
	(void)rt;
	struct ns_fwd *f = arg;
	uint64_t now = rt_now_ms();
	for (struct ns_fsess **pp = &f->sessions; *pp;) {
		struct ns_fsess *s = *pp;
		if (now - s->last_ms > SESS_IDLE_MS) {
			*pp = s->next;
			sess_free(f, s);
		} else {
			pp = &s->next;
		}
	}
	rt_timer_arm_in(t, SWEEP_MS);
	ns_stack_kick();
}

static void shutdown_common(struct ns_fwd *f)
{
	while (f->sessions) {
		struct ns_fsess *s = f->sessions;
		f->sessions = s->next;
		sess_free(f, s);
	}
	rt_timer_free(f->sweep);
	f->sweep = NULL;
	if (f->os_fd >= 0) {
		rt_fd_del(f->rt, f->os_fd);
		close(f->os_fd);
		f->os_fd = -1;
	}
	for (int i = 0; i < f->npcbs; i++)
		udp_remove(f->upcbs[i]);
	f->npcbs = 0;
}

static int start_sweep(struct ns_fwd *f)
{
	f->sweep = rt_timer_new(f->rt, sweep, f);
	if (!f->sweep)
		return -ENOMEM;
	rt_timer_arm_in(f->sweep, SWEEP_MS);
	return 0;
}

static struct pbuf *to_pbuf(const uint8_t *data, size_t n)
{
	struct pbuf *p = pbuf_alloc(PBUF_TRANSPORT, (u16_t)n, PBUF_RAM);
	if (p)
		memcpy(p->payload, data, n);
	return p;
}

/* ---- OS -> tunnel ---- */

static void in_reply(void *arg, struct udp_pcb *pcb, struct pbuf *p, const ip_addr_t *addr, u16_t port)
{
	(void)pcb;
	(void)addr;
	(void)port;
	struct ns_fsess *s = arg;
	u16_t n = pbuf_copy_partial(p, buf, p->tot_len, 0);
	if (sendto(s->f->os_fd, buf, n, MSG_DONTWAIT | MSG_NOSIGNAL, (struct sockaddr *)&s->os_peer, s->os_peer_len) <
	    0)
		s->f->obj.host->st.udp_drops++;
	s->last_ms = rt_now_ms();
	pbuf_free(p);
}

static struct ns_fsess *in_session(struct ns_fwd *f, const struct sockaddr_storage *from, socklen_t fl)
{
	for (struct ns_fsess *s = f->sessions; s; s = s->next)
		if (s->os_peer_len == fl && !memcmp(&s->os_peer, from, fl))
			return s;
	const ip_addr_t *src = ns_host_addr(f->obj.host, IP_IS_V6(&f->to_ip) ? 6 : 4);
	if (f->nsessions >= SESS_MAX || !src)
		return NULL;
	struct ns_fsess *s = calloc(1, sizeof(*s));
	struct udp_pcb *pcb = s ? udp_new_ip_type(IP_GET_TYPE(&f->to_ip)) : NULL;
	if (!pcb || udp_bind(pcb, src, 0) != ERR_OK || udp_connect(pcb, &f->to_ip, f->to_port) != ERR_OK) {
		if (pcb)
			udp_remove(pcb);
		free(s);
		return NULL;
	}
	s->f = f;
	s->pcb = pcb;
	s->fd = -1;
	memcpy(&s->os_peer, from, fl);
	s->os_peer_len = fl;
	udp_recv(pcb, in_reply, s);
	s->next = f->sessions;
	f->sessions = s;
	f->nsessions++;
	return s;
}

static void in_readable(rt_t *rt, int fd, uint32_t events, void *arg)
{
	(void)rt;
	(void)events;
	struct ns_fwd *f = arg;
	ns_host_t *h = f->obj.host;
	for (int i = 0; i < UDP_BUDGET; i++) {
		struct sockaddr_storage from;
		socklen_t fl = sizeof(from);
		ssize_t n = recvfrom(fd, buf, sizeof(buf), MSG_DONTWAIT, (struct sockaddr *)&from, &fl);
		if (n < 0)
			break;
		struct ns_fsess *s = in_session(f, &from, fl);
		struct pbuf *p = s && n <= 65507 ? to_pbuf(buf, (size_t)n) : NULL;
		if (!p) {
			h->st.udp_drops++;
			continue;
		}
		s->last_ms = rt_now_ms();
		if (udp_send(s->pcb, p) != ERR_OK)
			h->st.udp_drops++;
		pbuf_free(p);
	}
	ns_stack_kick();
}

static void in_setup(struct ns_fwd *f, int *rc)
{
	f->shutdown = shutdown_common;
	ns_set_nonblock(f->os_fd);
	*rc = start_sweep(f);
	if (*rc == 0)
		*rc = rt_fd_add(f->rt, f->os_fd, EPOLLIN, in_readable, f);
}

int ns_fwd_udp_in(ns_host_t *h, int os_fd, const struct ns_addr *to, ns_fwd_t **out)
{
	return ns_fwd_in(h, os_fd, to, in_setup, out);
}

/* ---- tunnel -> OS ---- */

static void out_reply(rt_t *rt, int fd, uint32_t events, void *arg)
{
	(void)rt;
	(void)events;
	struct ns_fsess *s = arg;
	for (int i = 0; i < UDP_BUDGET; i++) {
		ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
		if (n < 0)
			break; /* EAGAIN, or an ICMP error from the OS side: ignored */
		struct pbuf *p = n <= 65507 ? to_pbuf(buf, (size_t)n) : NULL;
		if (!p || udp_sendto(s->pcb, p, &s->peer, s->peer_port) != ERR_OK)
			s->f->obj.host->st.udp_drops++;
		if (p)
			pbuf_free(p);
		s->last_ms = rt_now_ms();
	}
	ns_stack_kick();
}

static struct ns_fsess *out_session(struct ns_fwd *f, struct udp_pcb *pcb, const ip_addr_t *peer, u16_t port)
{
	for (struct ns_fsess *s = f->sessions; s; s = s->next)
		if (s->peer_port == port && ip_addr_cmp(&s->peer, peer))
			return s;
	if (f->nsessions >= SESS_MAX)
		return NULL;
	struct ns_fsess *s = calloc(1, sizeof(*s));
	int fd = s ? socket(f->os_to.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0) : -1;
	if (fd < 0 || connect(fd, (struct sockaddr *)&f->os_to, f->os_to_len) < 0 ||
	    rt_fd_add(f->rt, fd, EPOLLIN, out_reply, s) < 0) {
		if (fd >= 0)
			close(fd);
		free(s);
		return NULL;
	}
	s->f = f;
	s->pcb = pcb;
	s->fd = fd;
	ip_addr_copy(s->peer, *peer);
	s->peer_port = port;
	s->next = f->sessions;
	f->sessions = s;
	f->nsessions++;
	return s;
}

static void out_in(void *arg, struct udp_pcb *pcb, struct pbuf *p, const ip_addr_t *addr, u16_t port)
{
	struct ns_fwd *f = arg;
	struct ns_fsess *s = out_session(f, pcb, addr, port);
	if (!s) {
		f->obj.host->st.udp_drops++;
		pbuf_free(p);
		return;
	}
	u16_t n = pbuf_copy_partial(p, buf, p->tot_len, 0);
	if (send(s->fd, buf, n, MSG_DONTWAIT | MSG_NOSIGNAL) < 0)
		f->obj.host->st.udp_drops++;
	s->last_ms = rt_now_ms();
	pbuf_free(p);
}

static void out_setup(struct ns_fwd *f, int *rc)
{
	f->shutdown = shutdown_common;
	*rc = start_sweep(f);
	const ip_addr_t *addrs[NS_MAX_ADDRS];
	int n = ns_host_addrs(f->obj.host, addrs);
	uint16_t port = f->port;
	for (int i = 0; i < n && *rc == 0; i++) {
		struct udp_pcb *pcb = udp_new_ip_type(IP_GET_TYPE(addrs[i]));
		if (!pcb) {
			*rc = -ENOMEM;
			return;
		}
		err_t e = udp_bind(pcb, addrs[i], port);
		if (e != ERR_OK) {
			udp_remove(pcb);
			*rc = ns_err_to_errno(e);
			return;
		}
		port = pcb->local_port;
		udp_recv(pcb, out_in, f);
		f->upcbs[f->npcbs++] = pcb;
	}
	f->port = port;
}

int ns_fwd_udp_out(ns_host_t *h, uint16_t port, const struct ns_addr *to, ns_fwd_t **out)
{
	return ns_fwd_out(h, port, to, out_setup, out);
}
