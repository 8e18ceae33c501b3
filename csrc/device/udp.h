/* dev_udp: the UDP bind of a device. One dual-stack socket (AF_INET6 with
 * IPV6_V6ONLY off, so IPv4 peers appear as plain AF_INET addresses), or
 * AF_INET alone when the host has no IPv6. Datagrams are read in batches
 * with recvmmsg into buffers allocated once; sends never block (a full
 * socket buffer drops the datagram and counts it). Loop thread only.
 *
 * The socket, address and batch helpers at the end are shared with the
 * gateway's per-peer sockets (csrc/gateway), so both read and send alike. */
#ifndef SPANZA_DEV_UDP_H
#define SPANZA_DEV_UDP_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "runtime/rt.h"

struct dev_udp;

/* Receives one datagram; from is AF_INET or AF_INET6 (never v4-mapped).
 * data is writable (decrypt in place) and valid only during the call. */
typedef void (*dev_udp_rx_fn)(void *ctx, const struct sockaddr *from, uint8_t *data, size_t len);

struct dev_udp_stats {
	uint64_t rx_datagrams, rx_bytes, rx_truncated, rx_errors;
	uint64_t tx_datagrams, tx_bytes, tx_dropped, tx_errors;
};

/* Binds port (0 = any free port) on all addresses. 0 or -errno. */
int dev_udp_open(rt_t *rt, uint16_t port, dev_udp_rx_fn rx, void *ctx, struct dev_udp **out);
/* Moves to another port: the new socket is bound before the old one is
 * closed, so on failure (-EADDRINUSE...) nothing changes. */
int dev_udp_rebind(struct dev_udp *u, uint16_t port);
/* to: AF_INET or AF_INET6. 0 or -errno (the datagram is dropped). */
int dev_udp_send(struct dev_udp *u, const struct sockaddr *to, const uint8_t *data, size_t len);
uint16_t dev_udp_port(const struct dev_udp *u);
/* Impairs what the socket sends (IMP_OUT) or receives (IMP_IN): an
 * IMP_OP_* on its engine (csrc/impair/impair.h). */
struct imp_config;
struct imp_stats;
int dev_udp_impair(struct dev_udp *u, int dir, int op, const struct imp_config *cfg, struct imp_stats *out);
const struct dev_udp_stats *dev_udp_stats(const struct dev_udp *u);
void dev_udp_close(struct dev_udp *u);

/* ---- shared UDP helpers ---- */

#define DEV_UDP_BATCH 32       /* datagrams per recvmmsg */
#define DEV_UDP_MAX_BATCHES 8  /* per wake-up: then let other fds and timers run */
#define DEV_UDP_BUF 65536      /* the largest UDP payload, so nothing is truncated */

/* A nonblocking UDP socket bound to addr (AF_INET or AF_INET6; an IPv6
 * one also serves IPv4, dual-stack), with large buffers and the kernel's
 * drop count (SO_RXQ_OVFL) enabled. fd or -errno. */
int dev_udp_socket(const struct sockaddr *addr, socklen_t len);
/* to in the form a socket of family needs: AF_INET on an AF_INET6 socket
 * becomes v4-mapped. Its length, or 0 if family cannot reach it. */
socklen_t dev_udp_sockaddr_for(int family, const struct sockaddr *to, struct sockaddr_storage *out);
/* Turns a v4-mapped AF_INET6 address into plain AF_INET, in place. */
const struct sockaddr *dev_udp_unmap(struct sockaddr_storage *ss);

/* Receive state for recvmmsg, allocated once and reused for every read. */
struct dev_udp_batch {
	struct mmsghdr msgs[DEV_UDP_BATCH];
	struct iovec iov[DEV_UDP_BATCH];
	struct sockaddr_storage from[DEV_UDP_BATCH]; /* as the socket reports it (maybe v4-mapped) */
	union {
		struct cmsghdr align;
		char buf[CMSG_SPACE(sizeof(uint32_t))];
	} ctl[DEV_UDP_BATCH];
	uint8_t *bufs;
};

int dev_udp_batch_init(struct dev_udp_batch *b);
void dev_udp_batch_free(struct dev_udp_batch *b);
/* Reads up to DEV_UDP_BATCH datagrams from fd: their count, -EAGAIN when
 * there is nothing to read, or another -errno (e.g. an ICMP error queued
 * for an earlier send). Datagram i: iov[i].iov_base, msgs[i].msg_len. */
int dev_udp_batch_recv(struct dev_udp_batch *b, int fd);
/* True if datagram i was cut short (it did not fit DEV_UDP_BUF). */
static inline bool dev_udp_batch_truncated(const struct dev_udp_batch *b, int i)
{
	return (b->msgs[i].msg_hdr.msg_flags & MSG_TRUNC) != 0;
}
/* The kernel's running count of datagrams dropped on the socket because
 * its buffer was full, as of datagram i (false if it did not say). */
bool dev_udp_batch_overflow(const struct dev_udp_batch *b, int i, uint32_t *count);

#endif
