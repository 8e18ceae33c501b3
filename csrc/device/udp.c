/* The UDP bind; see udp.h. */
#include "device/udp.h"
#include "runtime/log.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#define UDP_BATCH 32
#define UDP_BUF 65536     /* the largest UDP payload, so nothing is truncated */
#define UDP_MAX_BATCHES 8 /* per wake-up: then let other fds and timers run */
#define UDP_SOCKBUF (4 << 20)

struct dev_udp {
	rt_t *rt;
	int fd;
	int family; /* AF_INET6 (dual-stack) or AF_INET */
	uint16_t port;
	dev_udp_rx_fn rx;
	void *ctx;
	struct dev_udp_stats st;
	/* recvmmsg state, allocated once */
	struct mmsghdr msgs[UDP_BATCH];
	struct iovec iov[UDP_BATCH];
	struct sockaddr_storage from[UDP_BATCH];
	uint8_t *bufs;
};

static void on_readable(rt_t *rt, int fd, uint32_t events, void *arg);

/* A bound nonblocking socket: dual-stack when the host has IPv6. */
static int open_socket(uint16_t port, int *family_out, uint16_t *port_out)
{
	int family = AF_INET6;
	int fd = socket(AF_INET6, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0 && (errno == EAFNOSUPPORT || errno == EPROTONOSUPPORT)) {
		family = AF_INET;
		fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	}
	if (fd < 0)
		return -errno;
	int zero = 0, sz = UDP_SOCKBUF;
	/* Best effort: larger buffers absorb bursts; the kernel caps them. */
	setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));
	setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
	int rc;
	if (family == AF_INET6) {
		if (setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero)) < 0)
			goto fail;
		struct sockaddr_in6 a = {.sin6_family = AF_INET6, .sin6_port = htons(port), .sin6_addr = in6addr_any};
		rc = bind(fd, (struct sockaddr *)&a, sizeof(a));
	} else {
		struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_ANY)};
		rc = bind(fd, (struct sockaddr *)&a, sizeof(a));
	}
	if (rc < 0)
		goto fail;
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	if (getsockname(fd, (struct sockaddr *)&ss, &sl) < 0)
		goto fail;
	*port_out = ntohs(family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
					     : ((struct sockaddr_in *)&ss)->sin_port);
	*family_out = family;
	return fd;
fail:;
	int err = errno;
	close(fd);
	return -err;
}

int dev_udp_open(rt_t *rt, uint16_t port, dev_udp_rx_fn rx, void *ctx, struct dev_udp **out)
{
	struct dev_udp *u = calloc(1, sizeof(*u));
	if (!u)
		return -ENOMEM;
	u->bufs = malloc((size_t)UDP_BATCH * UDP_BUF);
	if (!u->bufs) {
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
		free(u->bufs);
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

/* An IPv4-mapped IPv6 source becomes a plain AF_INET address. */
static const struct sockaddr *unmap(struct sockaddr_storage *ss)
{
	struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)ss;
	if (ss->ss_family != AF_INET6 || !IN6_IS_ADDR_V4MAPPED(&a6->sin6_addr))
		return (struct sockaddr *)ss;
	struct sockaddr_in a4 = {.sin_family = AF_INET, .sin_port = a6->sin6_port};
	memcpy(&a4.sin_addr, &a6->sin6_addr.s6_addr[12], 4);
	memcpy(ss, &a4, sizeof(a4));
	return (struct sockaddr *)ss;
}

static void on_readable(rt_t *rt, int fd, uint32_t events, void *arg)
{
	(void)rt;
	(void)events;
	struct dev_udp *u = arg;
	for (int batch = 0; batch < UDP_MAX_BATCHES; batch++) {
		for (int i = 0; i < UDP_BATCH; i++) {
			u->iov[i] = (struct iovec){.iov_base = u->bufs + (size_t)i * UDP_BUF, .iov_len = UDP_BUF};
			u->msgs[i].msg_hdr = (struct msghdr){
				.msg_name = &u->from[i],
				.msg_namelen = sizeof(u->from[i]),
				.msg_iov = &u->iov[i],
				.msg_iovlen = 1,
			};
			u->msgs[i].msg_len = 0;
		}
		int n = recvmmsg(fd, u->msgs, UDP_BATCH, MSG_DONTWAIT, NULL);
		if (n < 0) {
			if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
				u->st.rx_errors++;
			return;
		}
		for (int i = 0; i < n; i++) {
			struct msghdr *h = &u->msgs[i].msg_hdr;
			if (h->msg_flags & MSG_TRUNC) {
				u->st.rx_truncated++;
				continue;
			}
			u->st.rx_datagrams++;
			u->st.rx_bytes += u->msgs[i].msg_len;
			u->rx(u->ctx, unmap(&u->from[i]), u->iov[i].iov_base, u->msgs[i].msg_len);
			/* rx may have rebound the socket (a UAPI set through the
			 * core): the rest of this batch still belongs to us. */
		}
		if (n < UDP_BATCH || fd != u->fd)
			return;
	}
}

int dev_udp_send(struct dev_udp *u, const struct sockaddr *to, const uint8_t *data, size_t len)
{
	struct sockaddr_storage ss;
	socklen_t sl;
	if (to->sa_family == AF_INET && u->family == AF_INET6) {
		const struct sockaddr_in *a4 = (const struct sockaddr_in *)to;
		struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&ss;
		memset(a6, 0, sizeof(*a6));
		a6->sin6_family = AF_INET6;
		a6->sin6_port = a4->sin_port;
		a6->sin6_addr.s6_addr[10] = 0xff;
		a6->sin6_addr.s6_addr[11] = 0xff;
		memcpy(&a6->sin6_addr.s6_addr[12], &a4->sin_addr, 4);
		sl = sizeof(*a6);
	} else if (to->sa_family == AF_INET) {
		memcpy(&ss, to, sizeof(struct sockaddr_in));
		sl = sizeof(struct sockaddr_in);
	} else if (to->sa_family == AF_INET6 && u->family == AF_INET6) {
		memcpy(&ss, to, sizeof(struct sockaddr_in6));
		sl = sizeof(struct sockaddr_in6);
	} else {
		u->st.tx_errors++;
		return -EAFNOSUPPORT;
	}
	ssize_t n = sendto(u->fd, data, len, MSG_DONTWAIT | MSG_NOSIGNAL, (struct sockaddr *)&ss, sl);
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

uint16_t dev_udp_port(const struct dev_udp *u) { return u->port; }

const struct dev_udp_stats *dev_udp_stats(const struct dev_udp *u) { return &u->st; }

void dev_udp_close(struct dev_udp *u)
{
	if (!u)
		return;
	rt_fd_del(u->rt, u->fd);
	close(u->fd);
	free(u->bufs);
	free(u);
}
