/* cffi: the gateway as Python sees it (spanza/gateway.py). Every gw_py_*
 * function may be called from any thread: the work runs on the gateway's
 * loop with rt_call; gw_py_wait_connected waits in C (GIL released).
 * Returns 0 / a value >= 0, or -errno. */
#ifndef SPANZA_GW_GATEWAY_PY_H
#define SPANZA_GW_GATEWAY_PY_H

#include <stddef.h>
#include <stdint.h>

typedef struct gw gw_t;
struct rt;
struct derp_client_opts;
struct derp_client_stats;

#define GW_MAX_PEERS 4096

/* A UDP address in plain form. family 2 (AF_INET: addr[0..3]) or 10
 * (AF_INET6: addr[0..15]); 0 = none. port in host byte order. */
struct gw_addr {
	uint16_t family;
	uint16_t port;
	uint32_t scope_id;
	uint8_t addr[16];
};

/* Where packets from DERP for a peer go (gw_peer_stats.dst_kind). */
#define GW_DST_NONE 0       /* nothing known yet: packets are dropped */
#define GW_DST_CONFIGURED 1 /* the gateway's wg_endpoint */
#define GW_DST_LEARNED 2    /* the address that last sent to this peer's socket */

/* Counters of one remote peer. "wg" is the local WireGuard (UDP side),
 * "derp" the relay side. */
struct gw_peer_stats {
	uint8_t key[32];
	struct gw_addr local; /* this peer's UDP socket */
	struct gw_addr dst;   /* where its packets go (dst_kind) */
	uint32_t dst_kind;
	uint32_t paused;          /* 1 while reading is held back (DERP backpressure) */
	uint64_t wg_rx_datagrams; /* from the local WireGuard */
	uint64_t wg_rx_bytes;
	uint64_t derp_tx_packets; /* handed to the DERP client */
	uint64_t derp_tx_bytes;
	uint64_t derp_rx_packets; /* from this peer's key through DERP */
	uint64_t derp_rx_bytes;
	uint64_t wg_tx_datagrams; /* sent to the local WireGuard */
	uint64_t wg_tx_bytes;
	uint64_t drops_oversize;       /* too large for DERP (65536) or for UDP */
	uint64_t drops_send_error;     /* UDP send failed (buffer full, unreachable) or DERP client closed */
	uint64_t drops_no_destination; /* from DERP while no WireGuard address is known */
	uint64_t drops_udp_overflow;   /* dropped by the kernel: this socket's receive buffer was full */
	uint64_t peer_gone;            /* the relay said this peer went away / is not there */
};

/* Totals: sums over the current and removed peers, plus what belongs to
 * no peer. The DERP client's own counters (reconnects, queue drops...)
 * come separately in struct derp_client_stats. */
struct gw_stats {
	uint64_t wg_rx_datagrams, wg_rx_bytes;
	uint64_t derp_tx_packets, derp_tx_bytes;
	uint64_t derp_rx_packets, derp_rx_bytes;
	uint64_t wg_tx_datagrams, wg_tx_bytes;
	uint64_t drops_oversize;
	uint64_t drops_send_error;
	uint64_t drops_no_destination;
	uint64_t drops_udp_overflow;
	uint64_t drops_unknown_key;   /* from a DERP key that is no remote peer of ours */
	uint64_t drops_queue_full;    /* the DERP client's send queue overflowed (oldest dropped) */
	uint64_t drops_udp_truncated; /* a datagram larger than the receive buffer */
	uint64_t pauses;              /* times reading was held back for DERP backpressure */
	uint64_t udp_rx_errors;       /* recvmmsg errors other than EAGAIN */
	uint32_t peers;
	uint32_t connected; /* 1 while the DERP connection is up */
};

/* Creates a gateway on rt and starts connecting to url with the 32-byte
 * private key. opts: DERP client options (NULL: defaults). wg_endpoint:
 * where packets from DERP go (NULL or family 0: to the address that last
 * sent to the peer's socket). NULL on error with *rc = -errno and a message
 * in err[errlen] (-EINVAL: bad URL, key or address). */
gw_t *gw_py_new(struct rt *rt, const char *url, const uint8_t *private_key, const struct derp_client_opts *opts,
		const struct gw_addr *wg_endpoint, int *rc, char *err, size_t errlen);
/* Wakes threads in gw_py_wait_connected (they return -ESHUTDOWN); the
 * gateway keeps relaying until gw_py_free. */
void gw_py_shutdown(gw_t *g);
/* Stops everything (sockets, DERP client) and frees, after waiting for
 * threads still in gw_py_wait_connected to leave. */
void gw_py_free(gw_t *g);

/* Adds a remote peer (its DERP public key) with its own UDP socket bound
 * to listen (port 0: any free one); *bound gets the bound address.
 * -EEXIST (already a peer), -EADDRINUSE, -ENOSPC (GW_MAX_PEERS), -EINVAL
 * (bad address, or wg_endpoint unreachable from this socket's family; err
 * says which). */
int gw_py_add_peer(gw_t *g, const uint8_t *key, const struct gw_addr *listen, struct gw_addr *bound, char *err,
		   size_t errlen);
/* Closes the peer's socket and forgets it. -ENOENT if not a peer. */
int gw_py_remove_peer(gw_t *g, const uint8_t *key);
/* NULL or family 0: learn the address from the local WireGuard. -EINVAL
 * if some peer's socket cannot reach that family. */
int gw_py_set_wg_endpoint(gw_t *g, const struct gw_addr *ep);

int gw_py_peer_stats(gw_t *g, const uint8_t *key, struct gw_peer_stats *out);
/* Peers' keys in the order they were added (up to max); returns the count. */
int gw_py_peers(gw_t *g, uint8_t *keys, size_t max);
/* derp may be NULL. */
int gw_py_stats(gw_t *g, struct gw_stats *out, struct derp_client_stats *derp);
int gw_py_public_key(gw_t *g, uint8_t *out);
/* Waits until the DERP connection is up: 0, -ETIMEDOUT, -ESHUTDOWN.
 * timeout_ms < 0: forever. */
int gw_py_wait_connected(gw_t *g, int timeout_ms);
/* Drops the DERP connection now (it reconnects with backoff). */
int gw_py_reconnect(gw_t *g);
/* Why the last DERP connection attempt failed or ended, into out[cap]. */
int gw_py_last_error(gw_t *g, char *out, size_t cap);

#endif
