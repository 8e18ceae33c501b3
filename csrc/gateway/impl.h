/* The gateway's objects, shared by the files of csrc/gateway/ (not a
 * public header: other modules use gateway.h). */
#ifndef SPANZA_GW_IMPL_H
#define SPANZA_GW_IMPL_H

#include <pthread.h>
#include <stdbool.h>
#include <sys/socket.h>

#include "derp/client.h"
#include "gateway/gateway.h"

#define GW_BATCH 32          /* datagrams per recvmmsg */
#define GW_MAX_BATCHES 8     /* per wake-up, then let other fds and timers run */
#define GW_RXBUF 65536       /* a whole UDP payload: nothing is truncated */
#define GW_SOCKBUF (4 << 20) /* socket buffers absorb bursts (the kernel caps them) */

struct gw;

struct gw_peer {
	struct gw *gw;
	uint8_t key[32];
	int fd;
	int family; /* of the socket: AF_INET or AF_INET6 (dual-stack if bound to ::) */
	bool paused;
	/* Where packets from DERP go, already in the socket's family. */
	uint32_t dst_kind;
	struct sockaddr_storage dst;
	socklen_t dst_len;
	struct gw_peer_stats st;
};

struct gw {
	rt_t *rt;
	derp_client_t *derp;
	/* The configured WireGuard endpoint (canonical AF_INET/AF_INET6). */
	bool has_wg_ep;
	struct sockaddr_storage wg_ep;
	/* The last sender on any socket (canonical), for peers whose own
	 * socket has heard nothing yet. */
	bool has_last_src;
	struct sockaddr_storage last_src;

	struct gw_peer **peers; /* in order of addition */
	size_t npeers, cap;
	struct gw_peer **index; /* open addressing by key, load <= 1/2 */
	size_t index_cap;       /* a power of two */

	bool paused; /* while the DERP client is congested */
	struct gw_stats st;        /* only the fields that belong to no peer */
	struct gw_peer_stats gone; /* totals of removed peers */

	/* recvmmsg state, allocated once, shared by the peers' sockets */
	struct mmsghdr msgs[GW_BATCH];
	struct iovec iov[GW_BATCH];
	struct sockaddr_storage from[GW_BATCH];
	/* SO_RXQ_OVFL: the kernel's count of datagrams it dropped on a socket
	 * whose receive buffer was full (before we could read them) */
	union {
		struct cmsghdr align;
		char buf[CMSG_SPACE(sizeof(uint32_t))];
	} ctl[GW_BATCH];
	uint8_t *bufs;

	/* connection state for threads waiting in gw_py_wait_connected */
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool connected;
	bool closed;
	int waiters;
};

/* peers.c */
struct gw_peer *gw_peer_lookup(const struct gw *g, const uint8_t key[32]);
/* Recomputes where the peer's packets from DERP go (after a config change). */
void gw_peer_update_dst(struct gw *g, struct gw_peer *p);
/* Converts a canonical address into the form a socket of family needs
 * (IPv4 on a dual-stack socket becomes v4-mapped). false if it cannot. */
bool gw_sockaddr_for(int family, const struct sockaddr *in, struct sockaddr_storage *out, socklen_t *len);
void gw_peers_free(struct gw *g);

/* relay.c: the two packet paths. */
void gw_on_udp(rt_t *rt, int fd, uint32_t events, void *arg);
void gw_on_derp_packet(void *arg, const uint8_t src[32], const uint8_t *data, size_t len);
void gw_on_derp_writable(void *arg);
/* Starts or stops reading every peer socket. */
void gw_set_paused(struct gw *g, bool paused);

#endif
