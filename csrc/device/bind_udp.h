/* dev_udp: the UDP bind of a device. One dual-stack socket (AF_INET6 with
 * IPV6_V6ONLY off, so IPv4 peers appear as plain AF_INET addresses), or
 * AF_INET alone when the host has no IPv6. Datagrams are read in batches
 * with recvmmsg into buffers allocated once; sends never block (a full
 * socket buffer drops the datagram and counts it). Loop thread only.
 *
 * Sockets, addresses and receive batches are the runtime's (runtime/udp_sock.h),
 * shared with the gateway's per-peer sockets, so both read and send alike. */
#ifndef SPANZA_DEV_UDP_H
#define SPANZA_DEV_UDP_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "runtime/rt.h"
#include "runtime/udp_sock.h"

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

#endif
