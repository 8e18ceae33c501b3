/* UDP sockets and receive batches; see udp_sock.h. */
#include "runtime/udp_sock.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define UDP_SOCKBUF (4 << 20) /* socket buffers absorb bursts (the kernel caps them) */

int rt_udp_socket(const struct sockaddr *addr, socklen_t len)
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
	/* GRO: a burst from one sender (our own GSO sends, on loopback) comes
	 * up as one read instead of one per datagram. Best effort. */
	setsockopt(fd, SOL_UDP, UDP_GRO, &one, sizeof(one));
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

socklen_t rt_udp_sockaddr_for(int family, const struct sockaddr *to, struct sockaddr_storage *out)
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

const struct sockaddr *rt_udp_unmap(struct sockaddr_storage *ss)
{
	struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)ss;
	if (ss->ss_family != AF_INET6 || !IN6_IS_ADDR_V4MAPPED(&a6->sin6_addr))
		return (struct sockaddr *)ss;
	struct sockaddr_in a4 = {.sin_family = AF_INET, .sin_port = a6->sin6_port};
	memcpy(&a4.sin_addr, &a6->sin6_addr.s6_addr[12], 4);
	memcpy(ss, &a4, sizeof(a4));
	return (struct sockaddr *)ss;
}

int rt_udp_batch_init(struct rt_udp_batch *b)
{
	memset(b, 0, sizeof(*b));
	b->bufs = malloc((size_t)RT_UDP_BATCH * RT_UDP_BUF);
	return b->bufs ? 0 : -ENOMEM;
}

void rt_udp_batch_free(struct rt_udp_batch *b)
{
	free(b->bufs);
	b->bufs = NULL;
}

int rt_udp_batch_recv(struct rt_udp_batch *b, int fd)
{
	for (int i = 0; i < RT_UDP_BATCH; i++) {
		b->iov[i] = (struct iovec){.iov_base = b->bufs + (size_t)i * RT_UDP_BUF, .iov_len = RT_UDP_BUF};
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
	int n = recvmmsg(fd, b->msgs, RT_UDP_BATCH, MSG_DONTWAIT, NULL);
	if (n >= 0)
		return n;
	return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? -EAGAIN : -errno;
}

bool rt_udp_batch_overflow(const struct rt_udp_batch *b, int i, uint32_t *count)
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

size_t rt_udp_batch_segment(const struct rt_udp_batch *b, int i)
{
	const struct msghdr *h = &b->msgs[i].msg_hdr;
	size_t len = b->msgs[i].msg_len;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(h); c; c = CMSG_NXTHDR((struct msghdr *)h, c)) {
		if (c->cmsg_level == SOL_UDP && c->cmsg_type == UDP_GRO && c->cmsg_len >= CMSG_LEN(sizeof(int))) {
			int seg;
			memcpy(&seg, CMSG_DATA(c), sizeof(seg));
			if (seg > 0 && (size_t)seg < len)
				return (size_t)seg;
		}
	}
	return len ? len : 1;
}

/* ---- send queue ---- */

static void sendq_on_defer(rt_t *rt, void *arg)
{
	(void)rt;
	rt_udp_sendq_flush(arg);
}

int rt_udp_sendq_init(struct rt_udp_sendq *q, rt_t *rt, rt_udp_sent_fn sent, void *ctx)
{
	memset(q, 0, sizeof(*q));
	q->bufs = malloc((size_t)RT_UDP_SENDQ * RT_UDP_SENDQ_SLOT);
	if (!q->bufs)
		return -ENOMEM;
	q->rt = rt;
	q->sent = sent;
	q->ctx = ctx;
	q->defer.fn = sendq_on_defer;
	q->defer.arg = q;
	return 0;
}

void rt_udp_sendq_free(struct rt_udp_sendq *q)
{
	if (!q->bufs)
		return;
	rt_udp_sendq_flush(q);
	rt_defer_cancel(q->rt, &q->defer);
	free(q->bufs);
	q->bufs = NULL;
}

int rt_udp_sendq_push(struct rt_udp_sendq *q, int fd, const struct sockaddr *to, socklen_t tolen, const void *data,
		      size_t len, void *tag)
{
	if (len > RT_UDP_SENDQ_SLOT || tolen > sizeof(q->to[0]) || q->flushing)
		return -EMSGSIZE;
	if (q->n == RT_UDP_SENDQ)
		rt_udp_sendq_flush(q);
	int i = q->n++;
	uint8_t *slot = q->bufs + (size_t)i * RT_UDP_SENDQ_SLOT;
	memcpy(slot, data, len);
	memcpy(&q->to[i], to, tolen);
	q->fd[i] = fd;
	q->tag[i] = tag;
	q->iov[i] = (struct iovec){.iov_base = slot, .iov_len = len};
	q->msgs[i].msg_hdr = (struct msghdr){
		.msg_name = &q->to[i], .msg_namelen = tolen, .msg_iov = &q->iov[i], .msg_iovlen = 1};
	q->msgs[i].msg_len = 0;
	if (i == 0)
		rt_defer(q->rt, &q->defer);
	return 0;
}

static bool full_err(int err) { return err == -EAGAIN || err == -EWOULDBLOCK || err == -ENOBUFS; }

/* Sends msgs[from, to) on one fd, a datagram per message; reports each
 * datagram's fate in order. */
static void send_each(struct rt_udp_sendq *q, int fd, int from, int to)
{
	while (from < to) {
		int r = sendmmsg(fd, q->msgs + from, (unsigned)(to - from), MSG_DONTWAIT | MSG_NOSIGNAL);
		if (r < 0 && errno == EINTR)
			continue;
		if (r > 0) {
			for (int i = from; i < from + r; i++)
				q->sent(q->ctx, q->tag[i], q->iov[i].iov_len, 0);
			from += r;
			continue;
		}
		int err = r < 0 ? -errno : -EIO;
		/* A full socket stays full for the rest of this run: drop it,
		 * as sendto would have one by one. Any other error is this
		 * datagram's (e.g. ICMP-reported): go on with the next. */
		int last = full_err(err) ? to : from + 1;
		for (int i = from; i < last; i++)
			q->sent(q->ctx, q->tag[i], q->iov[i].iov_len, err);
		from = last;
	}
}

/* How many datagrams from i on can leave as one GSO message: one address,
 * one size (the last may be shorter), within the kernel's limits. */
static int gso_run(const struct rt_udp_sendq *q, int i, int to)
{
	size_t seg = q->iov[i].iov_len, total = seg;
	socklen_t nl = q->msgs[i].msg_hdr.msg_namelen;
	int k = 1;
	while (i + k < to && k < RT_UDP_GSO_MAX && q->iov[i + k - 1].iov_len == seg && q->iov[i + k].iov_len <= seg &&
	       q->iov[i + k].iov_len > 0 && total + q->iov[i + k].iov_len <= RT_UDP_GSO_BYTES &&
	       q->msgs[i + k].msg_hdr.msg_namelen == nl && memcmp(&q->to[i + k], &q->to[i], nl) == 0) {
		total += q->iov[i + k].iov_len;
		k++;
	}
	return k;
}

/* Sends msgs[from, to) on one fd: runs of datagrams as GSO messages (the
 * kernel cuts them into datagrams, once per run instead of per datagram
 * through the IP stack), the rest one per message. */
static void sendq_run(struct rt_udp_sendq *q, int from, int to)
{
	int fd = q->fd[from];
	if (q->no_gso) {
		send_each(q, fd, from, to);
		return;
	}
	int nw = 0;
	for (int i = from; i < to; nw++) {
		int k = gso_run(q, i, to);
		struct msghdr *h = &q->wire[nw].msg_hdr;
		*h = q->msgs[i].msg_hdr;
		h->msg_iovlen = (size_t)k;
		if (k > 1) {
			h->msg_control = q->wctl[nw].buf;
			h->msg_controllen = sizeof(q->wctl[nw].buf);
			struct cmsghdr *cm = CMSG_FIRSTHDR(h);
			cm->cmsg_level = SOL_UDP;
			cm->cmsg_type = UDP_SEGMENT;
			cm->cmsg_len = CMSG_LEN(sizeof(uint16_t));
			uint16_t seg = (uint16_t)q->iov[i].iov_len;
			memcpy(CMSG_DATA(cm), &seg, sizeof(seg));
		}
		q->first[nw] = i;
		q->count[nw] = k;
		i += k;
	}
	for (int w = 0; w < nw;) {
		int r = sendmmsg(fd, q->wire + w, (unsigned)(nw - w), MSG_DONTWAIT | MSG_NOSIGNAL);
		if (r < 0 && errno == EINTR)
			continue;
		if (r > 0) {
			for (int m = w; m < w + r; m++)
				for (int i = q->first[m]; i < q->first[m] + q->count[m]; i++)
					q->sent(q->ctx, q->tag[i], q->iov[i].iov_len, 0);
			w += r;
			continue;
		}
		int err = r < 0 ? -errno : -EIO;
		int a = q->first[w], b = a + q->count[w];
		if (full_err(err)) {
			for (int i = a; i < q->first[nw - 1] + q->count[nw - 1]; i++)
				q->sent(q->ctx, q->tag[i], q->iov[i].iov_len, err);
			return;
		}
		if (q->count[w] > 1) {
			/* No GSO here (EIO: no checksum offload; EINVAL: a segment
			 * above the route's MTU...): these one by one, and plain
			 * sends from now on when the kernel lacks it outright. */
			if (err == -ENOPROTOOPT || err == -EOPNOTSUPP || err == -EIO)
				q->no_gso = true;
			send_each(q, fd, a, b);
		} else {
			q->sent(q->ctx, q->tag[a], q->iov[a].iov_len, err);
		}
		w++;
	}
}

void rt_udp_sendq_flush(struct rt_udp_sendq *q)
{
	int n = q->n;
	if (!n || q->flushing)
		return;
	q->flushing = true;
	for (int i = 0; i < n;) {
		int j = i + 1;
		while (j < n && q->fd[j] == q->fd[i])
			j++;
		sendq_run(q, i, j);
		i = j;
	}
	q->n = 0;
	q->flushing = false;
	rt_defer_cancel(q->rt, &q->defer);
}
