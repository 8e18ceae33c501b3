/* The UDP bind; see bind_udp.h. */
#include "device/bind_udp.h"
#include "base/log.h"
#include "impair/impair.h"
#include "trace/trace.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

struct dev_udp {
	rt_t *rt;
	int fd;
	int family; /* AF_INET6 (dual-stack) or AF_INET */
	uint16_t port;
	dev_udp_rx_fn rx;
	void *ctx;
	struct dev_udp_stats st;
	struct rt_udp_batch rb;
	struct rt_udp_sendq sq; /* datagrams of this loop round, sent together */
	struct imp *imp[2];     /* IMP_OUT, IMP_IN: NULL unless impaired */
};

static void on_readable(rt_t *rt, int fd, uint32_t events, void *arg);
static void on_sent(void *ctx, void *tag, size_t len, int err);

/* ---- the device's bind ---- */

/* A bound socket on all addresses: dual-stack when the host has IPv6. */
static int open_socket(uint16_t port, int *family_out, uint16_t *port_out)
{
	struct sockaddr_in6 a6 = {.sin6_family = AF_INET6, .sin6_port = htons(port), .sin6_addr = in6addr_any};
	struct sockaddr_in a4 = {.sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_ANY)};
	int family = AF_INET6;
	int fd = rt_udp_socket((struct sockaddr *)&a6, sizeof(a6));
	if (fd == -EAFNOSUPPORT || fd == -EPROTONOSUPPORT) {
		family = AF_INET;
		fd = rt_udp_socket((struct sockaddr *)&a4, sizeof(a4));
	}
	if (fd < 0)
		return fd;
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	if (getsockname(fd, (struct sockaddr *)&ss, &sl) < 0) {
		int err = errno;
		close(fd);
		return -err;
	}
	*port_out = ntohs(family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
					     : ((struct sockaddr_in *)&ss)->sin_port);
	*family_out = family;
	return fd;
}

int dev_udp_open(rt_t *rt, uint16_t port, dev_udp_rx_fn rx, void *ctx, struct dev_udp **out)
{
	struct dev_udp *u = calloc(1, sizeof(*u));
	if (!u)
		return -ENOMEM;
	if (rt_udp_batch_init(&u->rb) < 0) {
		free(u);
		return -ENOMEM;
	}
	if (rt_udp_sendq_init(&u->sq, rt, on_sent, u) < 0) {
		rt_udp_batch_free(&u->rb);
		free(u);
		return -ENOMEM;
	}
	u->rt = rt;
	u->rx = rx;
	u->ctx = ctx;
	u->fd = open_socket(port, &u->family, &u->port);
	int rc = u->fd;
	if (rc >= 0)
		rc = rt_fd_add(rt, u->fd, EPOLLIN, on_readable, u);
	if (rc < 0) {
		if (u->fd >= 0)
			close(u->fd);
		rt_udp_batch_free(&u->rb);
		rt_udp_sendq_free(&u->sq);
		free(u);
		return rc;
	}
	*out = u;
	return 0;
}

int dev_udp_rebind(struct dev_udp *u, uint16_t port)
{
	if (port != 0 && port == u->port)
		return 0;
	int family;
	uint16_t bound;
	int fd = open_socket(port, &family, &bound);
	if (fd < 0)
		return fd;
	int rc = rt_fd_add(u->rt, fd, EPOLLIN, on_readable, u);
	if (rc < 0) {
		close(fd);
		return rc;
	}
	rt_udp_sendq_flush(&u->sq); /* queued from the old socket */
	rt_fd_del(u->rt, u->fd);
	close(u->fd);
	u->fd = fd;
	u->family = family;
	u->port = bound;
	return 0;
}

static void on_readable(rt_t *rt, int fd, uint32_t events, void *arg)
{
	(void)rt;
	(void)events;
	struct dev_udp *u = arg;
	struct rt_udp_batch *b = &u->rb;
	for (int batch = 0; batch < RT_UDP_MAX_BATCHES; batch++) {
		int n = rt_udp_batch_recv(b, fd);
		if (n < 0) {
			if (n != -EAGAIN)
				u->st.rx_errors++;
			return;
		}
		for (int i = 0; i < n; i++) {
			if (rt_udp_batch_truncated(b, i)) {
				TR_TAP(drop, TR_HOP_DEV_UDP_RX, TR_OBJ(u->ctx), NULL, TR_R_UDP_TRUNCATED, NULL, 0);
				u->st.rx_truncated++;
				continue;
			}
			const struct sockaddr *from = rt_udp_unmap(&b->from[i]);
			/* One read may hold several datagrams (GRO). */
			size_t total = b->msgs[i].msg_len, seg = rt_udp_batch_segment(b, i);
			size_t off = 0;
			do { /* once for an empty datagram too */
				uint8_t *data = (uint8_t *)b->iov[i].iov_base + off;
				size_t len = total - off < seg ? total - off : seg;
				u->st.rx_datagrams++;
				u->st.rx_bytes += len;
				TR_TAP(udp, TR_HOP_DEV_UDP_RX, TR_OBJ(u->ctx), NULL, from, u->port, data, len);
				if (u->imp[IMP_IN])
					imp_input(u->imp[IMP_IN], from, sizeof(struct sockaddr_storage), data, len);
				else
					u->rx(u->ctx, from, data, len);
				off += seg;
			} while (off < total);
			/* rx may have rebound the socket (a UAPI set through the
			 * core): the rest of this batch still belongs to us. */
		}
		if (n < RT_UDP_BATCH || fd != u->fd)
			return;
	}
}

/* A datagram's fate: counted when it leaves (now, or at the end of the
 * loop round for a queued one). */
static void on_sent(void *ctx, void *tag, size_t len, int err)
{
	(void)tag;
	struct dev_udp *u = ctx;
	if (err < 0) {
		bool full = err == -EAGAIN || err == -EWOULDBLOCK || err == -ENOBUFS;
		TR_TAP(drop, TR_HOP_DEV_UDP_TX, TR_OBJ(u->ctx), NULL, full ? TR_R_UDP_SEND_FULL : TR_R_UDP_SEND_ERROR,
		       NULL, 0);
		if (full)
			u->st.tx_dropped++;
		else
			u->st.tx_errors++;
		return;
	}
	u->st.tx_datagrams++;
	u->st.tx_bytes += len;
}

/* Queued for the round's sendmmsg; a datagram too large for the queue goes
 * out at once, after what is queued. A queued send reports no error here:
 * on_sent counts it. */
static int send_now(struct dev_udp *u, const struct sockaddr *to, socklen_t sl, const uint8_t *data, size_t len)
{
	TR_TAP(udp, TR_HOP_DEV_UDP_TX, TR_OBJ(u->ctx), NULL, to, u->port, data, len);
	if (rt_udp_sendq_push(&u->sq, u->fd, to, sl, data, len, NULL) == 0)
		return 0;
	rt_udp_sendq_flush(&u->sq);
	ssize_t n = sendto(u->fd, data, len, MSG_DONTWAIT | MSG_NOSIGNAL, to, sl);
	int err = n < 0 ? -errno : 0;
	on_sent(u, NULL, len, err);
	return err;
}

int dev_udp_send(struct dev_udp *u, const struct sockaddr *to, const uint8_t *data, size_t len)
{
	struct sockaddr_storage ss;
	socklen_t sl = rt_udp_sockaddr_for(u->family, to, &ss);
	if (!sl) {
		u->st.tx_errors++;
		return -EAFNOSUPPORT;
	}
	if (u->imp[IMP_OUT]) {
		imp_input(u->imp[IMP_OUT], &ss, sl, data, len);
		return 0;
	}
	return send_now(u, (struct sockaddr *)&ss, sl, data, len);
}

/* ---- impairments (csrc/impair/) ---- */

static void imp_send(void *ctx, const void *addr, size_t alen, const uint8_t *data, size_t len)
{
	struct dev_udp *u = ctx;
	struct sockaddr_storage ss;
	memcpy(&ss, addr, alen < sizeof(ss) ? alen : sizeof(ss));
	if (ss.ss_family != u->family) /* rebound to another family meanwhile */
		return;
	send_now(u, (struct sockaddr *)&ss, (socklen_t)alen, data, len);
}

static void imp_recv(void *ctx, const void *addr, size_t alen, const uint8_t *data, size_t len)
{
	(void)alen;
	struct dev_udp *u = ctx;
	struct sockaddr_storage from;
	memcpy(&from, addr, sizeof(from));
	/* The engine hands on either our own receive buffer or its own copy:
	 * writable memory, as rx (decrypt in place) needs. */
	u->rx(u->ctx, (struct sockaddr *)&from, (uint8_t *)(uintptr_t)data, len);
}

int dev_udp_impair(struct dev_udp *u, int dir, int op, const struct imp_config *cfg, struct imp_stats *out)
{
	return imp_slot_op(&u->imp[dir], u->rt, op, cfg, dir == IMP_OUT ? imp_send : imp_recv, u, out);
}

uint16_t dev_udp_port(const struct dev_udp *u) { return u->port; }

const struct dev_udp_stats *dev_udp_stats(const struct dev_udp *u) { return &u->st; }

void dev_udp_close(struct dev_udp *u)
{
	if (!u)
		return;
	imp_slot_free(&u->imp[IMP_OUT]);
	imp_slot_free(&u->imp[IMP_IN]);
	rt_udp_sendq_free(&u->sq); /* what is queued still leaves */
	rt_fd_del(u->rt, u->fd);
	close(u->fd);
	rt_udp_batch_free(&u->rb);
	free(u);
}
