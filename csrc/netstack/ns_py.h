/* cffi: the netstack as Python (and the device layer) sees it.
 *
 * lwIP is one global stack per process; it runs on ONE runtime, the first
 * one a host is created on (normally spanza's default runtime), and every
 * lwIP call happens on that loop thread. Functions marked "any thread" hop
 * onto the loop with rt_call; "loop thread" ones must be called there (the
 * device layer calls them from its packet callbacks). Errors are -errno. */
#ifndef SPANZA_NS_PY_H
#define SPANZA_NS_PY_H

#include <stddef.h>
#include <stdint.h>

#include "runtime/rt_py.h"

#define NS_MAX_HOSTS 250
#define NS_MAX_V6 3
#define NS_DEFAULT_MTU 1420
/* The address header of listener and UDP socket messages. */
#define NS_ADDR_HDR 20

typedef struct ns_host ns_host_t;
typedef struct ns_wire ns_wire_t;
typedef struct ns_op ns_op_t;
typedef struct ns_listener ns_listener_t;
typedef struct ns_udp ns_udp_t;
typedef struct ns_fwd ns_fwd_t;

/* A packet callback: `ctx` plus one whole IP packet. Called on the loop
 * thread; the packet is only valid during the call. An output callback must
 * not feed a packet back into any host synchronously (queue it instead):
 * lwIP is not re-entrant. */
typedef void (*ns_packet_fn)(void *ctx, const uint8_t *ip, size_t len);

/* An address: family 4 or 6, the address in network order in ip[0..3] or
 * ip[0..15], a port or prefix length in host order. */
struct ns_addr {
	uint8_t family;
	uint8_t prefix;
	uint16_t port;
	uint8_t ip[16];
};

struct ns_host_stats {
	uint64_t rx_packets; /* handed to lwIP */
	uint64_t rx_bytes;
	uint64_t tx_packets; /* given to the output callback */
	uint64_t tx_bytes;
	uint64_t drop_malformed; /* not a well-formed IPv4/IPv6 header */
	uint64_t drop_not_ours;  /* destination is not one of this host's addresses */
	uint64_t drop_nomem;     /* no memory for a packet buffer */
	uint64_t drop_oversize;  /* outgoing packet larger than the MTU */
	uint64_t tcp_open;       /* live socket bridges */
	uint64_t tcp_refused;    /* connections refused past a listener's backlog */
	uint64_t udp_drops;      /* datagrams dropped (full socket, bad header) */
};

/* ---- hosts ---- */
/* Creates a host: one lwIP netif with at most one IPv4 and NS_MAX_V6 IPv6
 * addresses (with prefix lengths). Its packets go to output(ctx, ...).
 * -EXDEV: the stack already runs on another runtime; -EUSERS: NS_MAX_HOSTS
 * reached; -EADDRINUSE: another host has one of the addresses; -EINVAL: bad
 * address or MTU. Any thread. */
int ns_host_new(struct rt *rt, const struct ns_addr *addrs, int naddrs, int mtu, ns_packet_fn output, void *ctx,
		ns_host_t **out);
/* Closes everything on the host (connections are reset) and frees it. */
void ns_host_free(ns_host_t *h);
/* One IP packet arriving for the host (copied). Malformed packets and
 * packets not addressed to the host are dropped and counted. Loop thread;
 * never from inside an output callback. Returns 0 or -errno (dropped). */
int ns_host_input(ns_host_t *h, const uint8_t *ip, size_t len);
/* ns_host_input with a void * context: the device layer's packet sink. */
void ns_host_sink(void *host, const uint8_t *ip, size_t len);
/* ns_host_input from any thread (tests inject crafted packets). */
int ns_host_inject(ns_host_t *h, const uint8_t *ip, size_t len);
int ns_host_get_stats(ns_host_t *h, struct ns_host_stats *out);
int ns_host_count(void);
/* lwIP's own protocol counters, for tests: name is "tcp", "udp", "icmp",
 * "icmp6", "ip", "ip6"; fields xmit, recv, drop, err in that order. */
int ns_lwip_stats(const char *proto, uint64_t out[4]);
/* TCP loss-recovery events of the whole stack (scripts/lwip-patches): RTOs,
 * recoveries entered, partial ACKs, SACK retransmissions, tail loss probes,
 * segments found lost by RACK alone, pacing holds, D-SACKs received,
 * recoveries undone (all their retransmissions were duplicates). */
struct ns_tcp_recovery {
	uint64_t rto, fast_rexmit, partial_ack, sack_rexmit, tlp, rack_lost, paced, dsack, undo;
};
int ns_tcp_recovery_stats(struct ns_tcp_recovery *out);
/* Pacing of every TCP sender of the process on (1, the default) or off (0):
 * for benchmarks and tests that compare. */
int ns_tcp_set_pacing(int on);
/* At most this many received segments share one ACK: tcp_input's output
 * waits for the end of the loop round (NS_ACK_BATCH_DEFAULT; 0: lwIP's own
 * ACK every second segment, at once; 1..NS_ACK_BATCH_MAX). For benchmarks
 * and tests that compare. */
#define NS_ACK_BATCH_DEFAULT 16
#define NS_ACK_BATCH_MAX 64
int ns_tcp_set_ack_batch(int segments);

/* ---- waitable operations (connect, ping) ----
 * ns_op_wait waits up to timeout_ms (-1: forever) and returns -EINPROGRESS
 * if still pending, else the result: an fd for connect (the caller owns it
 * once returned), 0 for ping (then ns_op_value has the round trip in ns),
 * or -errno. ns_op_free cancels a pending operation. */
int ns_op_wait(ns_op_t *op, int timeout_ms);
uint64_t ns_op_value(ns_op_t *op);
void ns_op_free(ns_op_t *op);

/* ---- TCP ---- */
/* Connects from the host's address of the destination's family; the result
 * is one end of an OS socketpair bridged to the connection. */
int ns_tcp_connect(ns_host_t *h, const struct ns_addr *dst, ns_op_t **out);
/* Connects from the host to dst and, once connected, bridges the tunnel
 * connection straight to the caller's OS stream socket fd (the loop pumps
 * it; no socketpair hop), first writing hello[hello_len] (<= NS_SPLICE_HELLO
 * bytes, e.g. a SOCKS5 success reply) to fd. The netstack takes fd: it is
 * closed (plainly, no RST) if the connection fails or is cancelled, so pass
 * a dup() when the caller still wants to answer on it. The op's result is
 * 0 when connected, else -errno as for ns_tcp_connect. */
#define NS_SPLICE_HELLO 64
int ns_tcp_splice(ns_host_t *h, const struct ns_addr *dst, int fd, const uint8_t *hello, size_t hello_len,
		  ns_op_t **out);
/* Listens on port (0: an ephemeral port) on every address of the host.
 * Connections arrive on ns_listener_fd (SOCK_SEQPACKET): each message is a
 * NS_ADDR_HDR address header with the peer and one fd (SCM_RIGHTS). */
int ns_tcp_listen(ns_host_t *h, uint16_t port, int backlog, ns_listener_t **out);
/* Gives the receiving socket to the caller, who owns (and closes) it. */
int ns_listener_take_fd(ns_listener_t *l);
int ns_listener_port(ns_listener_t *l);
/* The caller took one connection off the socket (backlog accounting). */
void ns_listener_accepted(ns_listener_t *l);
void ns_listener_close(ns_listener_t *l);

/* ---- UDP ----
 * A SOCK_SEQPACKET socket: each message is a NS_ADDR_HDR header (family,
 * 0, port big-endian, 16 address bytes) and the payload, both ways. */
int ns_udp_open(ns_host_t *h, uint16_t port, ns_udp_t **out);
int ns_udp_take_fd(ns_udp_t *u);
int ns_udp_port(ns_udp_t *u);
void ns_udp_close(ns_udp_t *u);

/* ---- ICMP echo ---- */
int ns_ping(ns_host_t *h, const struct ns_addr *dst, int size, ns_op_t **out);

/* ---- port forwards ---- */
/* OS -> tunnel: the caller's OS listening TCP socket (or bound UDP socket)
 * fd, whose ownership passes to the netstack (also on failure); each
 * connection (or UDP client) is carried to `to` inside the tunnel. */
int ns_fwd_tcp_in(ns_host_t *h, int os_fd, const struct ns_addr *to, ns_fwd_t **out);
int ns_fwd_udp_in(ns_host_t *h, int os_fd, const struct ns_addr *to, ns_fwd_t **out);
/* tunnel -> OS: connections (datagrams) to the host's `port` go to the OS
 * address `to`. */
int ns_fwd_tcp_out(ns_host_t *h, uint16_t port, const struct ns_addr *to, ns_fwd_t **out);
int ns_fwd_udp_out(ns_host_t *h, uint16_t port, const struct ns_addr *to, ns_fwd_t **out);
int ns_fwd_port(ns_fwd_t *f);
void ns_fwd_close(ns_fwd_t *f);

/* ---- a memory wire between two hosts (tests, benchmarks) ----
 * side 0's output is delivered to side 1's host and vice versa, on a later
 * loop iteration (optionally after delay_us). Use ns_wire_output as the
 * hosts' output function with ctx = ns_wire_end(w, side). */
int ns_wire_new(struct rt *rt, uint32_t delay_us, ns_wire_t **out);
void *ns_wire_end(ns_wire_t *w, int side);
void ns_wire_output(void *end, const uint8_t *ip, size_t len);
/* Plugs host h in at `side`: it receives what the other side sends (NULL
 * unplugs). Any thread. */
int ns_wire_plug(ns_wire_t *w, int side, ns_host_t *h);
int ns_wire_set_delay(ns_wire_t *w, uint32_t delay_us);
struct ns_wire_stats {
	uint64_t packets[2]; /* sent by side i */
	uint64_t bytes[2];
	uint64_t dropped[2]; /* queue full, or nothing plugged in */
	uint64_t lost[2];    /* by the crafted loss below */
};
int ns_wire_get_stats(ns_wire_t *w, struct ns_wire_stats *out);
/* Crafted loss on what `side` sends (tests of TCP loss recovery). A
 * bottleneck like derper's per-client queue, at the far end of the delay: at
 * most `depth` packets wait, drained at `per_ms` packets per ms; packets
 * arriving at a full queue drop the oldest (depth 0: none). A drop list: the TCP segments with
 * payload whose indices, counted from this call, are in idx (ascending) are
 * lost. */
int ns_wire_set_bottleneck(ns_wire_t *w, int side, uint32_t depth, uint32_t per_ms);
int ns_wire_drop_list(ns_wire_t *w, int side, const uint32_t *idx, uint32_t n);
/* Crafted reordering: the TCP segments with payload whose indices (counted
 * from this call or ns_wire_drop_list's, as the drop list counts) are in
 * idx (ascending) arrive hold_us (> 0) later than the wire's delay, after
 * segments sent later. */
int ns_wire_hold_list(ns_wire_t *w, int side, const uint32_t *idx, uint32_t n, uint32_t hold_us);
/* Keeps copies of up to max packets for ns_wire_take (0: stop). */
int ns_wire_capture(ns_wire_t *w, int max);
/* Pops the oldest captured packet: its length (0: none), side in *side. */
int ns_wire_take(ns_wire_t *w, uint8_t *buf, size_t cap, int *side);
void ns_wire_free(ns_wire_t *w);

/* ---- on a WireGuard device (csrc/device/) ----
 * Create the host with output ns_dev_output and ctx = the device (on the
 * device's runtime), then ns_dev_attach: the device's delivered packets go
 * to the host (its sink). Detach, and free the host, before freeing the
 * device. Any thread. -EXDEV: host and device are on different runtimes. */
struct dev_device;
void ns_dev_output(void *dev, const uint8_t *ip, size_t len);
int ns_dev_attach(ns_host_t *h, struct dev_device *d);
int ns_dev_detach(ns_host_t *h, struct dev_device *d);

#endif
