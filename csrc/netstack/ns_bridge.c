/* TCP bridges: one lwIP pcb <-> one OS stream fd (a socketpair end handed
 * to Python, or a TCP socket of a port forward), pumped by the loop.
 *
 * Flow control both ways:
 *  - fd -> tunnel: the fd is read only while the pcb's send buffer has room
 *    (with hysteresis, so an ACK does not cost an epoll_ctl);
 *  - tunnel -> fd: received data is acknowledged to lwIP (tcp_recved, which
 *    reopens the TCP window) only once written to the fd; while the fd is
 *    full, it waits in a queue bounded by the window.
 * Closing: EOF on the fd becomes a FIN (tcp_shutdown), a FIN from the tunnel
 * becomes shutdown(SHUT_WR) once the queue is written; a reset or error on
 * either side resets the other (RST into the tunnel; for OS TCP sockets a
 * RST too, for socketpairs the closest there is: close, which Python sees as
 * ECONNRESET if it had unread data, else as end of stream). */
#include "ns.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "lwip/tcp.h"
#include "base/log.h"

#define BR_PCB_CONNECTING 0x100u /* internal: tcp_connect in progress */
#define BR_READ_BUDGET 16        /* reads per event, for fairness */
#define BR_IOV 64
/* Reading resumes when the send buffer has this much room again. */
#define BR_RESUME (TCP_SND_BUF / 4 < 32768 ? TCP_SND_BUF / 4 : 32768)

struct ns_bridge {
	struct ns_obj obj;
	struct tcp_pcb *pcb; /* NULL once closed/aborted/freed */
	int fd;
	unsigned flags;
	uint32_t ev;  /* epoll events registered; 0 = not registered */
	bool blocked; /* reading paused for lack of send buffer */
	/* tunnel -> fd: a ring of received chains, q[qhead] written up to qoff */
	struct pbuf **q;
	unsigned qhead, qlen, qcap;
	u16_t qoff;
	bool rx_fin;     /* FIN from the tunnel */
	bool fd_shut_wr; /* passed on as shutdown(SHUT_WR) */
	/* fd -> tunnel */
	bool fd_eof; /* read returned 0 */
	bool tx_fin; /* passed on as FIN */
	/* Segments received in a loop round are written to the fd together at
	 * its end: one write (and one wake-up of the reader) per round instead
	 * of one per segment. */
	rt_t *rt;
	struct rt_defer flush;
};

static err_t br_recv(void *arg, struct tcp_pcb *pcb, struct pbuf *p, err_t err);
static err_t br_sent(void *arg, struct tcp_pcb *pcb, u16_t len);
static void br_err(void *arg, err_t err);
static void br_fd_cb(rt_t *rt, int fd, uint32_t events, void *arg);

void ns_fd_reset(int fd, unsigned flags)
{
	if (fd < 0)
		return;
	if (flags & NS_BR_FD_TCP) {
		struct linger lg = {.l_onoff = 1, .l_linger = 0};
		setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	}
	close(fd);
}

static void detach_pcb(struct tcp_pcb *pcb)
{
	tcp_arg(pcb, NULL);
	tcp_recv(pcb, NULL);
	tcp_sent(pcb, NULL);
	tcp_err(pcb, NULL);
}

static void br_free(struct ns_bridge *b)
{
	rt_defer_cancel(b->rt, &b->flush);
	if (b->obj.host)
		b->obj.host->st.tcp_open--;
	ns_obj_unlink(&b->obj);
	if (b->ev)
		rt_fd_del(b->obj.host->rt, b->fd);
	for (unsigned i = 0; i < b->qlen; i++)
		pbuf_free(b->q[(b->qhead + i) % b->qcap]);
	free(b->q);
	free(b);
}

/* Both sides are done or one failed: tear down. reset: abort the pcb and
 * reset the fd; otherwise close both gracefully. Returns ERR_ABRT if it
 * aborted the pcb (a pcb callback must then return ERR_ABRT). */
static err_t br_destroy(struct ns_bridge *b, bool reset)
{
	err_t ret = ERR_OK;
	if (b->pcb) {
		detach_pcb(b->pcb);
		if (reset || tcp_close(b->pcb) != ERR_OK) {
			tcp_abort(b->pcb);
			ret = ERR_ABRT;
		}
		b->pcb = NULL;
	}
	int fd = b->fd;
	unsigned flags = b->flags;
	br_free(b);
	if (reset)
		ns_fd_reset(fd, flags);
	else
		close(fd);
	return ret;
}

static void br_obj_close(struct ns_obj *o) { br_destroy((struct ns_bridge *)o, true); }

/* ---- tunnel -> fd ---- */

static int q_push(struct ns_bridge *b, struct pbuf *p)
{
	if (b->qlen == b->qcap) {
		unsigned cap = b->qcap ? b->qcap * 2 : 16;
		struct pbuf **n = malloc(cap * sizeof(*n));
		if (!n)
			return -ENOMEM;
		for (unsigned i = 0; i < b->qlen; i++)
			n[i] = b->q[(b->qhead + i) % b->qcap];
		free(b->q);
		b->q = n;
		b->qcap = cap;
		b->qhead = 0;
	}
	b->q[(b->qhead + b->qlen) % b->qcap] = p;
	b->qlen++;
	return 0;
}

/* Consumes n written bytes, and any chains left empty. */
static void q_consume(struct ns_bridge *b, size_t n)
{
	while (b->qlen) {
		struct pbuf *c = b->q[b->qhead];
		size_t rem = (size_t)c->tot_len - b->qoff;
		if (n < rem) {
			b->qoff = (u16_t)(b->qoff + n);
			return;
		}
		n -= rem;
		pbuf_free(c);
		b->qhead = (b->qhead + 1) % b->qcap;
		b->qlen--;
		b->qoff = 0;
	}
}

static void recved(struct tcp_pcb *pcb, size_t n)
{
	while (n) {
		u16_t k = n > 0xffff ? 0xffff : (u16_t)n;
		tcp_recved(pcb, k);
		n -= k;
	}
}

/* Writes queued data to the fd until it is full. 0 or -errno (fatal). */
static int br_flush(struct ns_bridge *b)
{
	size_t total = 0;
	int rc = 0;
	while (b->qlen) {
		struct iovec iov[BR_IOV];
		int n = 0;
		size_t want = 0, skip = b->qoff;
		for (unsigned k = 0; k < b->qlen && n < BR_IOV; k++) {
			for (struct pbuf *s = b->q[(b->qhead + k) % b->qcap]; s && n < BR_IOV; s = s->next) {
				if (skip >= s->len) {
					skip -= s->len;
					continue;
				}
				iov[n].iov_base = (uint8_t *)s->payload + skip;
				iov[n].iov_len = s->len - skip;
				want += iov[n].iov_len;
				skip = 0;
				n++;
			}
		}
		if (!n) /* only empty pbufs left */
			break;
		struct msghdr mh = {.msg_iov = iov, .msg_iovlen = (size_t)n};
		ssize_t w = sendmsg(b->fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN)
				rc = -errno;
			break;
		}
		q_consume(b, (size_t)w);
		total += (size_t)w;
		if ((size_t)w < want)
			break;
	}
	q_consume(b, 0); /* chains of empty pbufs */
	if (total && b->pcb)
		recved(b->pcb, total); /* the window reopens only as the fd drains */
	return rc;
}

/* ---- fd -> tunnel ---- */

/* Bytes that may be read now without tcp_write failing. */
static size_t br_space(struct ns_bridge *b)
{
	struct tcp_pcb *pcb = b->pcb;
	if (!pcb || b->fd_eof || (b->flags & (BR_PCB_CONNECTING | NS_BR_FD_CONNECTING)))
		return 0;
	if (pcb->state != ESTABLISHED && pcb->state != CLOSE_WAIT)
		return 0;
	size_t snd = tcp_sndbuf(pcb);
	int qroom = (int)TCP_SND_QUEUELEN - (int)tcp_sndqueuelen(pcb) - 2;
	size_t mss = pcb->mss ? pcb->mss : 536;
	size_t byq = qroom > 0 ? (size_t)qroom * mss : 0;
	size_t space = snd < byq ? snd : byq;
	if (b->blocked && space < BR_RESUME)
		return 0;
	b->blocked = space == 0;
	return space;
}

/* Reads the fd into the pcb while there is room. 0 or -errno (fatal). */
static int br_pump(struct ns_bridge *b)
{
	uint8_t *buf = ns_scratch();
	bool wrote = false;
	int rc = 0;
	for (int i = 0; i < BR_READ_BUDGET; i++) {
		size_t space = br_space(b);
		if (!space)
			break;
		if (space > NS_SCRATCH)
			space = NS_SCRATCH;
		if (space > 0xffff) /* tcp_write takes a u16 */
			space = 0xffff;
		ssize_t n = recv(b->fd, buf, space, MSG_DONTWAIT);
		if (n > 0) {
			if (tcp_write(b->pcb, buf, (u16_t)n, TCP_WRITE_FLAG_COPY) != ERR_OK) {
				rc = -ENOMEM; /* br_space keeps this to allocation failure */
				break;
			}
			wrote = true;
			if ((size_t)n < space)
				break;
			continue;
		}
		if (n == 0) {
			b->fd_eof = true;
			if (tcp_shutdown(b->pcb, 0, 1) != ERR_OK) {
				rc = -ENOMEM;
				break;
			}
			b->tx_fin = true;
			wrote = true;
			break;
		}
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN)
			rc = -errno;
		break;
	}
	if (wrote && b->pcb)
		tcp_output(b->pcb);
	return rc;
}

/* ---- state ---- */

static int br_update_events(struct ns_bridge *b)
{
	uint32_t want = 0;
	if (b->flags & NS_BR_FD_CONNECTING)
		want = EPOLLOUT;
	else if (!(b->flags & BR_PCB_CONNECTING)) {
		if (b->qlen)
			want |= EPOLLOUT;
		if (br_space(b))
			want |= EPOLLIN;
	}
	if (want == b->ev)
		return 0;
	rt_t *rt = b->obj.host->rt;
	int rc;
	/* Unregistered while idle: a hung-up fd would otherwise report
	 * EPOLLHUP on every loop iteration while we wait for the pcb. */
	if (!want)
		rc = rt_fd_del(rt, b->fd);
	else if (!b->ev)
		rc = rt_fd_add(rt, b->fd, want, br_fd_cb, b);
	else
		rc = rt_fd_mod(rt, b->fd, want);
	b->ev = rc < 0 ? 0 : want;
	return rc < 0 && want ? rc : 0;
}

/* Moves half-closes along and tears down when both directions are done.
 * Returns ERR_ABRT if it aborted the pcb. */
static err_t br_settle(struct ns_bridge *b)
{
	if (b->rx_fin && !b->qlen && !b->fd_shut_wr) {
		shutdown(b->fd, SHUT_WR);
		b->fd_shut_wr = true;
	}
	/* Both FINs exchanged: lwIP finishes the pcb (TIME_WAIT frees it
	 * without telling us, so let go of it now). In these states tcp_close
	 * only hands the pcb over. */
	err_t ret = ERR_OK;
	if (b->pcb && b->rx_fin && b->tx_fin) {
		struct tcp_pcb *pcb = b->pcb;
		b->pcb = NULL;
		detach_pcb(pcb);
		if (tcp_close(pcb) != ERR_OK) {
			tcp_abort(pcb);
			ret = ERR_ABRT;
		}
	}
	if (!b->pcb && b->fd_shut_wr && b->fd_eof) {
		br_destroy(b, false);
		return ret;
	}
	if (br_update_events(b) < 0 && br_destroy(b, true) == ERR_ABRT)
		return ERR_ABRT;
	return ret;
}

static err_t br_recv(void *arg, struct tcp_pcb *pcb, struct pbuf *p, err_t err)
{
	(void)pcb;
	struct ns_bridge *b = arg;
	if (!b) {
		if (p)
			pbuf_free(p);
		return ERR_OK;
	}
	if (!p) {
		b->rx_fin = true;
	} else if (err != ERR_OK) {
		pbuf_free(p);
		return ERR_OK;
	} else if (q_push(b, p) < 0) {
		return ERR_MEM; /* lwIP keeps it and offers it again later */
	}
	rt_defer(b->rt, &b->flush); /* br_on_flush */
	return ERR_OK;
}

/* The end of a loop round in which segments (or the FIN) arrived: write
 * them to the fd, then move the close along, as br_fd_cb does. */
static void br_on_flush(rt_t *rt, void *arg)
{
	(void)rt;
	struct ns_bridge *b = arg;
	if (b->flags & NS_BR_FD_CONNECTING)
		return; /* written once the fd connects (br_fd_cb) */
	if (br_flush(b) < 0)
		br_destroy(b, true);
	else
		br_settle(b);
	ns_stack_kick();
}

static err_t br_sent(void *arg, struct tcp_pcb *pcb, u16_t len)
{
	(void)pcb;
	(void)len;
	struct ns_bridge *b = arg;
	if (b && b->blocked && br_update_events(b) < 0)
		return br_destroy(b, true);
	return ERR_OK;
}

static void br_err(void *arg, err_t err)
{
	struct ns_bridge *b = arg;
	if (!b)
		return;
	b->pcb = NULL; /* already freed by lwIP */
	if (err == ERR_CLSD) {
		/* Closed normally under us (last ACK): deliver what is queued. */
		b->rx_fin = b->tx_fin = b->fd_eof = true;
		br_settle(b);
		return;
	}
	br_destroy(b, true);
}

static void br_fd_cb(rt_t *rt, int fd, uint32_t events, void *arg)
{
	(void)rt;
	(void)fd;
	struct ns_bridge *b = arg;
	if (b->flags & NS_BR_FD_CONNECTING) {
		int soerr = 0;
		socklen_t sl = sizeof(soerr);
		if (getsockopt(b->fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0)
			soerr = errno;
		if (soerr || (events & (EPOLLERR | EPOLLHUP))) {
			br_destroy(b, true); /* the tunnel side sees a RST */
			ns_stack_kick();
			return;
		}
		b->flags &= ~NS_BR_FD_CONNECTING;
		events |= EPOLLOUT | EPOLLIN;
	}
	int rc = 0;
	if (b->qlen && (events & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
		rc = br_flush(b);
	if (!rc && (events & (EPOLLIN | EPOLLERR | EPOLLHUP)))
		rc = br_pump(b);
	if (rc < 0)
		br_destroy(b, true);
	else
		br_settle(b);
	ns_stack_kick();
}

/* ---- creation ---- */

static struct ns_bridge *br_alloc(ns_host_t *h, struct tcp_pcb *pcb, int fd, unsigned flags)
{
	struct ns_bridge *b = calloc(1, sizeof(*b));
	if (!b)
		return NULL;
	b->pcb = pcb;
	b->fd = fd;
	b->flags = flags;
	b->rt = h->rt;
	b->flush.fn = br_on_flush;
	b->flush.arg = b;
	ns_obj_link(h, &b->obj, br_obj_close);
	h->st.tcp_open++;
	tcp_arg(pcb, b);
	tcp_recv(pcb, br_recv);
	tcp_sent(pcb, br_sent);
	tcp_err(pcb, br_err);
	tcp_nagle_disable(pcb);
	return b;
}

int ns_bridge_new(ns_host_t *h, struct tcp_pcb *pcb, int fd, unsigned flags)
{
	struct ns_bridge *b = br_alloc(h, pcb, fd, flags);
	if (!b) {
		detach_pcb(pcb);
		tcp_abort(pcb);
		ns_fd_reset(fd, flags);
		return -ENOMEM;
	}
	if (br_update_events(b) < 0) {
		br_destroy(b, true);
		return -ENOMEM;
	}
	return 0;
}

static err_t br_connected(void *arg, struct tcp_pcb *pcb, err_t err)
{
	(void)pcb;
	(void)err; /* always ERR_OK in lwIP 2.1.3 */
	struct ns_bridge *b = arg;
	if (!b)
		return ERR_OK;
	b->flags &= ~BR_PCB_CONNECTING;
	if (br_update_events(b) < 0) {
		br_destroy(b, true);
		return ERR_ABRT;
	}
	return ERR_OK;
}

int ns_bridge_connect(ns_host_t *h, const ip_addr_t *dst, uint16_t port, int fd, unsigned flags)
{
	const ip_addr_t *src = ns_host_addr(h, IP_IS_V6(dst) ? 6 : 4);
	struct tcp_pcb *pcb = src ? tcp_new_ip_type(IP_GET_TYPE(dst)) : NULL;
	if (!pcb) {
		ns_fd_reset(fd, flags);
		return src ? -ENOMEM : -EAFNOSUPPORT;
	}
	err_t e = tcp_bind(pcb, src, 0);
	if (e != ERR_OK) {
		tcp_abort(pcb);
		ns_fd_reset(fd, flags);
		return ns_err_to_errno(e);
	}
	struct ns_bridge *b = br_alloc(h, pcb, fd, flags | BR_PCB_CONNECTING);
	if (!b) {
		tcp_abort(pcb);
		ns_fd_reset(fd, flags);
		return -ENOMEM;
	}
	e = tcp_connect(pcb, dst, port, br_connected);
	if (e != ERR_OK) {
		br_destroy(b, true);
		return ns_err_to_errno(e);
	}
	return 0;
}
