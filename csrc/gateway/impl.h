/* The gateway's objects, shared by the files of csrc/gateway/ (not a
 * public header: other modules use gateway.h). */
#ifndef SPANZA_GW_IMPL_H
#define SPANZA_GW_IMPL_H

#include <pthread.h>
#include <stdbool.h>
#include <sys/socket.h>

#include "derp/client/client.h"
#include "runtime/udp_sock.h"
#include "gateway/gateway.h"

/* Keys in log lines: nodekey:<64 hex>, as the Python side and `spanza
 * gateway` print them (one spelling for one key). */
#define GW_KEY_TEXT (sizeof("nodekey:") + 64)

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

/* Locking: everything above `mu` is the loop thread's (the peers, their
 * sockets, the stats), reached from Python only through rt_call. mu guards
 * connected, closed and waiters: the loop sets connected (on_connected),
 * Python threads wait in gw_py_wait_connected (counted in waiters), and
 * gw_py_shutdown/gw_py_free set closed and wait for waiters to leave. cv
 * (with mu) is broadcast on each of those changes. */
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

	bool paused;               /* while the DERP client is congested */
	struct gw_stats st;        /* only the fields that belong to no peer */
	struct gw_peer_stats gone; /* totals of removed peers */

	/* recvmmsg state, allocated once, shared by the peers' sockets (the
	 * device's UDP bind reads the same way: device/udp.h) */
	struct rt_udp_batch rb;
	/* datagrams for the local WireGuard from one loop round, sent together
	 * (one sendmmsg per peer socket); a datagram's tag is its gw_peer */
	struct rt_udp_sendq sq;

	/* impairments of the UDP side (csrc/impair/): IMP_OUT toward the local
	 * WireGuard, IMP_IN from it; packets are routed again by peer key */
	struct imp *imp[2];

	/* connection state for threads waiting in gw_py_wait_connected */
	pthread_mutex_t mu;
	pthread_cond_t cv; /* with mu: connected, closed or waiters changed */
	bool connected;    /* guarded by mu; written by the loop thread */
	bool closed;       /* guarded by mu; written by the closing thread */
	int waiters;       /* guarded by mu; threads in gw_py_wait_connected */
};

/* relay.c: counts a datagram for the local WireGuard once it has left */
void gw_on_wg_sent(void *ctx, void *tag, size_t len, int err);

/* peers.c */
struct gw_peer *gw_peer_lookup(const struct gw *g, const uint8_t key[32]);
/* Recomputes where the peer's packets from DERP go (after a config change). */
void gw_peer_update_dst(struct gw *g, struct gw_peer *p);
void gw_peers_free(struct gw *g);

/* relay.c: the two packet paths. */
void gw_on_udp(rt_t *rt, int fd, uint32_t events, void *arg);
void gw_on_derp_packet(void *arg, const uint8_t src[32], const uint8_t *data, size_t len);
void gw_on_derp_writable(void *arg);
/* Starts or stops reading every peer socket. */
void gw_set_paused(struct gw *g, bool paused);
struct imp_config;
struct imp_stats;
int gw_impair_udp(struct gw *g, int dir, int op, const struct imp_config *cfg, struct imp_stats *out);
void gw_impair_free(struct gw *g);

#endif
