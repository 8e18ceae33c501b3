/* UDP sockets as the loop uses them (the device's bind and the gateway's
 * per-peer sockets): nonblocking, large buffers, the kernel's drop count,
 * dual-stack addressing, and recvmmsg batches read into buffers allocated
 * once. Loop thread only (a batch belongs to one reader). */
#ifndef SPANZA_RT_UDP_SOCK_H
#define SPANZA_RT_UDP_SOCK_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "runtime/rt.h"

#define RT_UDP_BATCH 32      /* datagrams per recvmmsg */
#define RT_UDP_MAX_BATCHES 8 /* per wake-up: then let other fds and timers run */
#define RT_UDP_BUF 65536     /* the largest UDP payload, so nothing is truncated */

/* A nonblocking UDP socket bound to addr (AF_INET or AF_INET6; an IPv6
 * one also serves IPv4, dual-stack), with large buffers and the kernel's
 * drop count (SO_RXQ_OVFL) enabled, and UDP GRO where the kernel has it:
 * one read may then return several datagrams of one sender back to back
 * (see rt_udp_batch_segment). fd or -errno. */
int rt_udp_socket(const struct sockaddr *addr, socklen_t len);
/* to in the form a socket of family needs: AF_INET on an AF_INET6 socket
 * becomes v4-mapped. Its length, or 0 if family cannot reach it. */
socklen_t rt_udp_sockaddr_for(int family, const struct sockaddr *to, struct sockaddr_storage *out);
/* Turns a v4-mapped AF_INET6 address into plain AF_INET, in place. */
const struct sockaddr *rt_udp_unmap(struct sockaddr_storage *ss);

/* Receive state for recvmmsg, allocated once and reused for every read. */
struct rt_udp_batch {
	struct mmsghdr msgs[RT_UDP_BATCH];
	struct iovec iov[RT_UDP_BATCH];
	struct sockaddr_storage from[RT_UDP_BATCH]; /* as the socket reports it (maybe v4-mapped) */
	union {
		struct cmsghdr align;
		char buf[CMSG_SPACE(sizeof(uint32_t)) + CMSG_SPACE(sizeof(int))]; /* SO_RXQ_OVFL, UDP_GRO */
	} ctl[RT_UDP_BATCH];
	uint8_t *bufs;
};

int rt_udp_batch_init(struct rt_udp_batch *b);
void rt_udp_batch_free(struct rt_udp_batch *b);
/* Reads up to RT_UDP_BATCH datagrams from fd: their count, -EAGAIN when
 * there is nothing to read, or another -errno (e.g. an ICMP error queued
 * for an earlier send). Datagram i: iov[i].iov_base, msgs[i].msg_len. */
int rt_udp_batch_recv(struct rt_udp_batch *b, int fd);
/* True if datagram i was cut short (it did not fit RT_UDP_BUF). */
static inline bool rt_udp_batch_truncated(const struct rt_udp_batch *b, int i)
{
	return (b->msgs[i].msg_hdr.msg_flags & MSG_TRUNC) != 0;
}
/* The kernel's running count of datagrams dropped on the socket because
 * its buffer was full, as of datagram i (false if it did not say). */
bool rt_udp_batch_overflow(const struct rt_udp_batch *b, int i, uint32_t *count);
/* The size of the datagrams that read i holds back to back (GRO: all of
 * that size but the last, which may be shorter); msg_len when it holds one.
 * Never 0 for a non-empty read. */
size_t rt_udp_batch_segment(const struct rt_udp_batch *b, int i);

/* Send side: datagrams queued during a loop round leave together at its
 * end, one sendmmsg per socket instead of a sendto each, and runs of
 * same-size datagrams to one address as one UDP GSO message (the kernel's
 * per-datagram path, not the copy into the slot, was the gateway path's
 * largest cost). */
#define RT_UDP_SENDQ 64        /* datagrams per flush */
#define RT_UDP_GSO_MAX 64      /* datagrams per UDP GSO send (the kernel's limit in older releases) */
#define RT_UDP_GSO_BYTES 65000 /* and their bytes: one IP packet's payload at most */
#define RT_UDP_SENDQ_SLOT 2048 /* bytes a queued datagram may have; larger ones go out at once */

/* Told of every queued datagram once it is sent (err 0) or dropped (a
 * negative errno, as sendto would have returned), in queue order. */
typedef void (*rt_udp_sent_fn)(void *ctx, void *tag, size_t len, int err);

struct rt_udp_sendq {
	rt_t *rt;
	struct rt_defer defer;
	rt_udp_sent_fn sent;
	void *ctx;
	int n;
	bool flushing; /* pushes from a sent callback go out directly */
	bool no_gso;   /* the kernel refused UDP_SEGMENT once: plain sendmmsg from then on */
	int fd[RT_UDP_SENDQ];
	void *tag[RT_UDP_SENDQ];
	struct mmsghdr msgs[RT_UDP_SENDQ];
	struct iovec iov[RT_UDP_SENDQ];
	struct sockaddr_storage to[RT_UDP_SENDQ];
	/* A flush's messages on the wire: each carries datagrams [first,
	 * first + count) of one size to one address, as one UDP GSO send. */
	struct mmsghdr wire[RT_UDP_SENDQ];
	int first[RT_UDP_SENDQ], count[RT_UDP_SENDQ];
	union {
		struct cmsghdr align;
		char buf[CMSG_SPACE(sizeof(uint16_t))];
	} wctl[RT_UDP_SENDQ];
	uint8_t *bufs;
};

int rt_udp_sendq_init(struct rt_udp_sendq *q, rt_t *rt, rt_udp_sent_fn sent, void *ctx);
/* Flushes what is queued, then releases the queue. */
void rt_udp_sendq_free(struct rt_udp_sendq *q);
/* Queues a copy of data for `to` on fd, to leave at the end of the loop
 * round (or now, when the queue is full). -EMSGSIZE if it is larger than a
 * slot (or the queue is being flushed): flush, then send it directly, so
 * the order holds. */
int rt_udp_sendq_push(struct rt_udp_sendq *q, int fd, const struct sockaddr *to, socklen_t tolen, const void *data,
		      size_t len, void *tag);
/* Sends what is queued now (before closing one of its fds, or before a
 * datagram that must not overtake them). */
void rt_udp_sendq_flush(struct rt_udp_sendq *q);

#endif
