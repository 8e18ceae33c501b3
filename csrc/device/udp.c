/* The UDP bind; see udp.h. */
#include "device/udp.h"
#include "impair/impair.h"
#include "runtime/log.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#define UDP_SOCKBUF (4 << 20) /* socket buffers absorb bursts (the kernel caps them) */

struct dev_udp {
	rt_t *rt;
	int fd;
	int family; /* AF_INET6 (dual-stack) or AF_INET */
	uint16_t port;
	dev_udp_rx_fn rx;
	void *ctx;
	struct dev_udp_stats st;
	struct dev_udp_batch rb;
	struct imp *imp[2]; /* IMP_OUT, IMP_IN: NULL unless impaired */
};

static void on_readable(rt_t *rt, int fd, uint32_t events, void *arg);

/* ---- shared helpers ---- */

int dev_udp_socket(const struct sockaddr *addr, socklen_t len)
{
	int fd = socket(addr->sa_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	/* Best effort: larger buffers absorb bursts; the kernel caps them.
	 * SO_RXQ_OVFL makes the kernel report what it dropped unread. */
	int sz = UDP_SOCKBUF, zero = 0, one = 1;
	setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));
	setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
	setsockopt(fd, SOL_SOCKET, SO_RXQ_OVFL, &one, sizeof(one));
	/* Like a WireGuard listening on all addresses: :: serves IPv4 too. */
	if (addr->sa_family == AF_INET6 && setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero)) < 0)
		goto fail;
	if (bind(fd, addr, len) < 0)
		goto fail;
	return fd;
fail:;
	int err = errno;
	close(fd);
	return -err;
}

socklen_t dev_udp_sockaddr_for(int family, const struct sockaddr *to, struct sockaddr_storage *out)
{
	if (to->sa_family == AF_INET && family == AF_INET6) {
		const struct sockaddr_in *a4 = (const struct sockaddr_in *)to;
		struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)out;
		memset(a6, 0, sizeof(*a6));
		a6->sin6_family = AF_INET6;
		a6->sin6_port = a4->sin_port;
		a6->sin6_addr.s6_addr[10] = 0xff;
		a6->sin6_addr.s6_addr[11] = 0xff;
		memcpy(&a6->sin6_addr.s6_addr[12], &a4->sin_addr, 4);
		return sizeof(*a6);
	}
	if (to->sa_family == AF_INET && family == AF_INET) {
		memcpy(out, to, sizeof(struct sockaddr_in));
		return sizeof(struct sockaddr_in);
	}
	if (to->sa_family == AF_INET6 && family == AF_INET6) {
		memcpy(out, to, sizeof(struct sockaddr_in6));
		return sizeof(struct sockaddr_in6);
	}
	return 0;
}

const struct sockaddr *dev_udp_unmap(struct sockaddr_storage *ss)
{
	struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)ss;
	if (ss->ss_family != AF_INET6 || !IN6_IS_ADDR_V4MAPPED(&a6->sin6_addr))
		return (struct sockaddr *)ss;
	struct sockaddr_in a4 = {.sin_family = AF_INET, .sin_port = a6->sin6_port};
	memcpy(&a4.sin_addr, &a6->sin6_addr.s6_addr[12], 4);
	memcpy(ss, &a4, sizeof(a4));
	return (struct sockaddr *)ss;
}

int dev_udp_batch_init(struct dev_udp_batch *b)
{
	memset(b, 0, sizeof(*b));
	b->bufs = malloc((size_t)DEV_UDP_BATCH * DEV_UDP_BUF);
	return b->bufs ? 0 : -ENOMEM;
}

void dev_udp_batch_free(struct dev_udp_batch *b)
{
	free(b->bufs);
	b->bufs = NULL;
}

int dev_udp_batch_recv(struct dev_udp_batch *b, int fd)
{
	for (int i = 0; i < DEV_UDP_BATCH; i++) {
		b->iov[i] = (struct iovec){.iov_base = b->bufs + (size_t)i * DEV_UDP_BUF, .iov_len = DEV_UDP_BUF};
		b->msgs[i].msg_hdr = (struct msghdr){
			.msg_name = &b->from[i],
			.msg_namelen = sizeof(b->from[i]),
			.msg_iov = &b->iov[i],
			.msg_iovlen = 1,
			.msg_control = b->ctl[i].buf,
			.msg_controllen = sizeof(b->ctl[i].buf),
		};
		b->msgs[i].msg_len = 0;
	}
	int n = recvmmsg(fd, b->msgs, DEV_UDP_BATCH, MSG_DONTWAIT, NULL);
	if (n >= 0)
		return n;
	return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? -EAGAIN : -errno;
}

bool dev_udp_batch_overflow(const struct dev_udp_batch *b, int i, uint32_t *count)
{
	const struct msghdr *h = &b->msgs[i].msg_hdr;
	bool found = false;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(h); c; c = CMSG_NXTHDR((struct msghdr *)h, c)) {
		if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SO_RXQ_OVFL &&
		    c->cmsg_len >= CMSG_LEN(sizeof(uint32_t))) {
			memcpy(count, CMSG_DATA(c), sizeof(*count));
			found = true;
		}
	}
	return found;
}

/* ---- the device's bind ---- */

/* A bound socket on all addresses: dual-stack when the host has IPv6. */
static int open_socket(uint16_t port, int *family_out, uint16_t *port_out)
{
	struct sockaddr_in6 a6 = {.sin6_family = AF_INET6, .sin6_port = htons(port), .sin6_addr = in6addr_any};
	struct sockaddr_in a4 = {.sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_ANY)};
	int family = AF_INET6;
	int fd = dev_udp_socket((struct sockaddr *)&a6, sizeof(a6));
	if (fd == -EAFNOSUPPORT || fd == -EPROTONOSUPPORT) {
		family = AF_INET;
		fd = dev_udp_socket((struct sockaddr *)&a4, sizeof(a4));
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
	if (dev_udp_batch_init(&u->rb) < 0) {
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
		dev_udp_batch_free(&u->rb);
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
	struct dev_udp_batch *b = &u->rb;
	for (int batch = 0; batch < DEV_UDP_MAX_BATCHES; batch++) {
		int n = dev_udp_batch_recv(b, fd);
		if (n < 0) {
			if (n != -EAGAIN)
				u->st.rx_errors++;
			return;
		}
		for (int i = 0; i < n; i++) {
			if (dev_udp_batch_truncated(b, i)) {
				u->st.rx_truncated++;
				continue;
			}
			u->st.rx_datagrams++;
			u->st.rx_bytes += b->msgs[i].msg_len;
			const struct sockaddr *from = dev_udp_unmap(&b->from[i]);
			if (u->imp[IMP_IN])
				imp_input(u->imp[IMP_IN], from, sizeof(struct sockaddr_storage), b->iov[i].iov_base,
					  b->msgs[i].msg_len);
			else
				u->rx(u->ctx, from, b->iov[i].iov_base, b->msgs[i].msg_len);
			/* rx may have rebound the socket (a UAPI set through the
			 * core): the rest of this batch still belongs to us. */
		}
		if (n < DEV_UDP_BATCH || fd != u->fd)
			return;
	}
}

static int send_now(struct dev_udp *u, const struct sockaddr *to, socklen_t sl, const uint8_t *data, size_t len)
{
	ssize_t n = sendto(u->fd, data, len, MSG_DONTWAIT | MSG_NOSIGNAL, to, sl);
	if (n < 0) {
		int err = errno;
		if (err == EAGAIN || err == EWOULDBLOCK || err == ENOBUFS)
			u->st.tx_dropped++;
		else
			u->st.tx_errors++;
		return -err;
	}
	u->st.tx_datagrams++;
	u->st.tx_bytes += (uint64_t)n;
	return 0;
}

int dev_udp_send(struct dev_udp *u, const struct sockaddr *to, const uint8_t *data, size_t len)
{
	struct sockaddr_storage ss;
	socklen_t sl = dev_udp_sockaddr_for(u->family, to, &ss);
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
	rt_fd_del(u->rt, u->fd);
	close(u->fd);
	dev_udp_batch_free(&u->rb);
	free(u);
}
