/* WireGuard core, sans-IO: the public C API.
 *
 * The core never touches a socket or reads the monotonic clock. The caller
 * (the device I/O layer, or wg_tunnel) feeds it datagrams, IP packets and
 * `now_ms`, and gets datagrams to send and packets to deliver through the
 * callbacks in struct wg_ops. Everything Python may call is declared in
 * wg_py.h (included here); this header adds what only C needs.
 *
 * Typical I/O layer loop (one thread owns the device):
 *     dev = wg_device_new(&ops);
 *     on UDP datagram:   wg_device_receive(dev, now, &from, buf, n);
 *     on TUN packet:     wg_device_send(dev, now, pkt, n);
 *     on timer expiry:   wg_device_tick(dev, now);
 *     after any call:    re-arm the timer for wg_device_next_deadline(dev);
 *     on UAPI request:   wg_uapi_request(dev, now, req, n, &reply, &rn);
 *
 * Re-entrancy: ops->deliver may call wg_device_send on the same device (a
 * stack answering at once); no other callback may call into the device, and
 * no callback may remove peers or free the device.
 */
#ifndef SPANZA_WG_H
#define SPANZA_WG_H

#include <stdbool.h>
#include <sys/socket.h>

#include "wg/wg_py.h"

/* Keys of one handshake, for a tshark key log (spec section 10): written
 * for every initiation or response this device creates. */
struct wg_handshake_keys {
	uint8_t local_static_private[WG_KEY_LEN];
	uint8_t remote_static_public[WG_KEY_LEN];
	uint8_t local_ephemeral_private[WG_KEY_LEN];
	uint8_t preshared_key[WG_KEY_LEN];
};

struct wg_ops {
	void *ctx;
	/* A datagram for the network. peer is NULL for a cookie reply. The data
	 * is only valid during the call. Required. */
	void (*send)(void *ctx, wg_peer *peer, const wg_endpoint *to, const uint8_t *data, size_t len);
	/* A decrypted IP packet that passed the allowed-IPs source check. Valid
	 * only during the call. Required. */
	void (*deliver)(void *ctx, wg_peer *peer, const uint8_t *ip, size_t len);
	/* Cryptographic randomness; optional (default libsodium randombytes_buf). */
	void (*random)(void *ctx, uint8_t *buf, size_t len);
	/* Wall clock, ns since the Unix epoch (TAI64N, last handshake time);
	 * optional (default CLOCK_REALTIME, the only clock the core may read). */
	uint64_t (*wall_ns)(void *ctx);
	/* UAPI listen_port=: bind the port (0 = any); return the bound port
	 * (1..65535) or -errno (-EADDRINUSE). Optional: without it the value is
	 * just recorded. */
	int (*set_listen_port)(void *ctx, uint16_t port);
	/* UAPI fwmark=: apply the mark; 0 or -errno. Optional. */
	int (*set_fwmark)(void *ctx, uint32_t mark);
	/* Handshake keys for a key log; optional. */
	void (*handshake_keys)(void *ctx, wg_peer *peer, const struct wg_handshake_keys *keys);
};

/* The ops structure is copied. NULL if ops->send/deliver are missing or
 * memory is short. */
wg_device *wg_device_new(const struct wg_ops *ops);

/* sockaddr <-> wg_endpoint (AF_INET / AF_INET6 only). */
int wg_endpoint_from_sockaddr(wg_endpoint *ep, const struct sockaddr *sa, socklen_t len);
/* Returns the sockaddr length, or -EAFNOSUPPORT (e.g. for WG_AF_DERP). */
int wg_endpoint_to_sockaddr(const wg_endpoint *ep, struct sockaddr_storage *ss);
bool wg_endpoint_equal(const wg_endpoint *a, const wg_endpoint *b);

/* UAPI framing for a socket server: wg_uapi_request_len / wg_uapi_request
 * are declared in wg_py.h. */

/* Opaque per-peer pointer for the I/O layer (e.g. its sticky source address). */
void wg_peer_set_user(wg_peer *peer, void *user);
void *wg_peer_user(const wg_peer *peer);

#endif
