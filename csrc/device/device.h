/* dev: a WireGuard device with I/O. A sans-IO wg_device (csrc/wg/) driven
 * by a runtime loop (csrc/runtime/rt.h):
 *
 *   network ──► bind (UDP socket, later DERP) ──► dev_input ──► wg_device_receive
 *                                                     │ decrypted IP packets
 *                                                     ▼
 *                        sink (netstack) or the read queue (Python read_packet)
 *   producer (netstack, write_packet) ──► dev_send_packet ──► wg_device_send ──► bind
 *
 * One runtime timer is armed at the core's next deadline after every call
 * into the core. Everything in this header runs on the device's loop
 * thread only (inside a runtime callback or rt_call): the packet path has
 * no locks and no allocation. Python's side is device_py.h.
 *
 * Integrating a netstack (another module's host attached to the device):
 *   on the loop thread:  dev_set_sink(d, my_input, host);
 *                        ... my_input(host, d, peer, ip, len) receives every
 *                        packet the tunnel delivers (instead of the queue);
 *                        dev_send_packet(d, ip, len) sends one into the tunnel.
 *   detach:              dev_set_sink(d, NULL, NULL) (before freeing host).
 *
 * Integrating a DERP transport (a bind): implement struct dev_bind_ops,
 *   dev_set_bind(d, DEV_BIND_DERP, &ops, client) on the loop thread, and for
 *   every datagram received call dev_input(d, &from, data, len) with from =
 *   {family WG_AF_DERP, addr = the sender's 32-byte key}. Peers whose
 *   endpoint is "derp:<hex>" are then reached through it. The UDP bind is
 *   the same interface (kind DEV_BIND_UDP, endpoints AF_INET/AF_INET6).
 */
#ifndef SPANZA_DEV_DEVICE_H
#define SPANZA_DEV_DEVICE_H

#include <stddef.h>
#include <stdint.h>

#include "device/device_py.h"
#include "runtime/rt.h"
#include "wg/wg.h"

/* Which bind carries a datagram is chosen by the endpoint's family. */
enum dev_bind_kind {
	DEV_BIND_UDP = 0,  /* WG_AF_INET, WG_AF_INET6 */
	DEV_BIND_DERP = 1, /* WG_AF_DERP */
	DEV_BIND__COUNT
};

struct dev_bind_ops {
	/* Sends one datagram without blocking. data is valid only during the
	 * call. 0, or -errno when it was dropped (the device counts it). */
	int (*send)(void *bind, const wg_endpoint *to, const uint8_t *data, size_t len);
	/* The device no longer uses the bind (replaced, or device closed). */
	void (*close)(void *bind);
};

/* Attaches a bind of a kind, closing the one it replaces. ops NULL detaches
 * (closing the old one). The device keeps the ops pointer: it must stay
 * valid while attached. 0, -EINVAL (bad kind), -ESHUTDOWN (closed). */
int dev_set_bind(dev_device *d, int kind, const struct dev_bind_ops *ops, void *bind);

/* A bind hands each received datagram to the device. from is the outer
 * source (AF_INET/AF_INET6 for UDP, WG_AF_DERP + key for DERP). */
void dev_input(dev_device *d, const wg_endpoint *from, const uint8_t *data, size_t len);

/* Consumer of delivered packets: ip is a decrypted IPv4/IPv6 packet that
 * passed the allowed-IPs source check, from peer; valid only during the
 * call. The sink may call dev_send_packet (answer at once) but must not
 * close the device or remove peers. */
typedef void (*dev_sink_fn)(void *ctx, dev_device *d, wg_peer *peer, const uint8_t *ip, size_t len);
/* Replaces the read queue as the consumer; fn NULL restores the queue. */
void dev_set_sink(dev_device *d, dev_sink_fn fn, void *ctx);

/* Producer: one IPv4/IPv6 packet into the tunnel, routed by the peers'
 * allowed IPs (encrypted and sent, or staged while a handshake runs).
 * 0, a wg_drop reason (> 0, counted), or -ESHUTDOWN. */
int dev_send_packet(dev_device *d, const uint8_t *ip, size_t len);

rt_t *dev_rt(const dev_device *d);
/* The core's clock: the loop's monotonic ms plus what dev_py_advance_clock
 * added. Every call into the core passes it as now. */
uint64_t dev_now(const dev_device *d);
/* The core, for direct calls on the loop thread (peers, stats); NULL once
 * closed. Call dev_kick afterwards: it re-arms the timer. */
wg_device *dev_wg(dev_device *d);
void dev_kick(dev_device *d);
/* The UDP port bound, 0 if the device has no UDP bind. */
uint16_t dev_udp_port_of(const dev_device *d);

#endif
