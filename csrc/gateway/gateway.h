/* gw: the Spanza gateway, a UDP <-> DERP relay on a runtime loop.
 *
 *   local WireGuard ──UDP──► peer X's socket ──► derp_client_send(X) ──► relay
 *   relay ──► on_packet(src = X) ──► peer X's socket ──UDP──► local WireGuard
 *
 * One UDP socket per remote peer. The local WireGuard knows each remote
 * peer by an endpoint (address:port); with one socket per peer, that
 * endpoint is simply the peer's socket: what WireGuard sends there goes to
 * X's DERP key, and what X sends through DERP comes from there, so
 * WireGuard sees a stable endpoint per peer and its roaming logic never
 * mixes peers up. No parsing of WireGuard messages is needed (a gateway
 * with one socket would have to map receiver indices to peers, and could
 * not route a handshake initiation without decrypting it).
 *
 * Packets from DERP go to the configured WireGuard endpoint, or (none
 * configured) to the address that last sent to that peer's socket, or to
 * the last sender on any socket when this peer's socket has heard nothing.
 *
 * Backpressure: while the DERP connection is up but congested (its write
 * buffer over the limit), the gateway stops reading its UDP sockets, so
 * excess datagrams wait in (and finally overflow) the kernel's socket
 * buffers instead of being read and thrown away; reading resumes when the
 * client drains. While disconnected, reading goes on and the client's
 * bounded queue keeps the newest packets for the next connection.
 *
 * Everything here runs on the loop thread (callbacks or rt_call); the
 * packet path takes no lock and copies each packet once (into the DERP
 * connection's write buffer; the other way it goes from the client's read
 * buffer straight to sendto). */
#ifndef SPANZA_GW_GATEWAY_H
#define SPANZA_GW_GATEWAY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "derp/client/derp_client_py.h"
#include "gateway/gateway_py.h"
#include "runtime/rt.h"

/* Loop thread. Same contracts as the gw_py_* functions of gateway_py.h. */
int gw_new(rt_t *rt, const char *url, const uint8_t priv[32], const struct derp_client_opts *opts,
	   const struct gw_addr *wg_endpoint, gw_t **out, char *err, size_t errlen);
void gw_free(gw_t *g);
int gw_add_peer(gw_t *g, const uint8_t key[32], const struct gw_addr *listen, struct gw_addr *bound, char *err,
		size_t errlen);
int gw_remove_peer(gw_t *g, const uint8_t key[32]);
int gw_set_wg_endpoint(gw_t *g, const struct gw_addr *ep, char *err, size_t errlen);
int gw_peer_stats(const gw_t *g, const uint8_t key[32], struct gw_peer_stats *out);
void gw_stats(const gw_t *g, struct gw_stats *out, struct derp_client_stats *derp);

/* gw_addr <-> sockaddr (AF_INET / AF_INET6). */
int gw_addr_to_sockaddr(const struct gw_addr *a, struct sockaddr_storage *ss, socklen_t *len);
int gw_addr_from_sockaddr(struct gw_addr *a, const struct sockaddr *sa);

#endif
