/* Netstack internals: hosts, per-host objects, the stack's runtime binding.
 * Everything here runs on the stack's loop thread unless it says otherwise. */
#ifndef SPANZA_NS_H
#define SPANZA_NS_H

#include <pthread.h>
#include <stdbool.h>

#include "lwip/ip_addr.h"
#include "lwip/netif.h"
#include "lwip/pbuf.h"
#include "lwip/tcp.h"
#include "runtime/rt.h"

#include "ns_py.h"

/* Something that lives on a host and is closed with it (bridges, listeners,
 * UDP sockets, forwards, pending operations). */
struct ns_obj;
typedef void (*ns_close_fn)(struct ns_obj *o);
struct ns_obj {
	ns_close_fn close;
	struct ns_obj *prev, *next;
	ns_host_t *host;
};

struct ns_host {
	struct netif netif;
	rt_t *rt;
	ns_packet_fn output;
	void *ctx;
	uint16_t mtu;
	bool has_v4;
	uint8_t v4_prefix;
	ip_addr_t v4;
	int n_v6;
	ip_addr_t v6[NS_MAX_V6];
	int slot; /* index in the host table */
	struct ns_host_stats st;
	struct ns_obj objs;      /* list head */
	struct raw_pcb *ping[2]; /* ICMP, ICMPv6: created on first ping */
	struct ns_op *pings;     /* outstanding echo requests */
	uint16_t ping_id;
	uint16_t ping_seq;
	bool closing;
};

/* ---- stack (ns_stack.c) ---- */
/* Binds the stack to rt (or checks it is already bound to it) and counts a
 * host. Any thread. */
int ns_stack_acquire(rt_t *rt);
void ns_stack_release(void);
/* Loop side of the first host: lwIP and the timer, once. */
int ns_stack_start(rt_t *rt);
rt_t *ns_stack_rt(void);
/* Re-arms the timer that drives lwIP's timeouts; call after lwIP work. */
void ns_stack_kick(void);
/* Hosts by table slot, for routing. */
extern ns_host_t *ns_hosts[NS_MAX_HOSTS];
extern int ns_nhosts_hw; /* highest used slot + 1 */
/* A 64 KiB scratch buffer for the loop thread. */
uint8_t *ns_scratch(void);
#define NS_SCRATCH 65536

/* ---- hosts (ns_host.c) ---- */
void ns_obj_link(ns_host_t *h, struct ns_obj *o, ns_close_fn close);
void ns_obj_unlink(struct ns_obj *o);
/* A packet copied into a pbuf as ns_host_input makes them (NULL: too big
 * or no memory), and the input of such a pbuf (checked, counted, owned). */
struct pbuf *ns_pbuf_for_input(const uint8_t *ip, size_t len);
int ns_host_input_pbuf(ns_host_t *h, struct pbuf *p);
/* The host's address of this family (the first one for IPv6); NULL if none. */
const ip_addr_t *ns_host_addr(ns_host_t *h, int family);
bool ns_host_owns(const ns_host_t *h, const ip_addr_t *a);

/* ---- packet checks (ns_filter.c) ---- */
enum ns_verdict { NS_OK = 0, NS_MALFORMED, NS_NOT_OURS };
/* Checks one packet for host h; on NS_OK, *plen is the IP packet's own
 * length (trailing bytes past it are ignored). */
enum ns_verdict ns_check_packet(const ns_host_t *h, const uint8_t *p, size_t len, size_t *plen);

/* ---- addresses (ns_addr.c) ---- */
int ns_addr_to_ip(const struct ns_addr *a, ip_addr_t *out);
void ns_addr_from_ip(const ip_addr_t *ip, uint16_t port, struct ns_addr *out);
/* The NS_ADDR_HDR header format of listener and UDP messages. */
void ns_addr_hdr_put(uint8_t hdr[NS_ADDR_HDR], const ip_addr_t *ip, uint16_t port);
int ns_addr_hdr_get(const uint8_t hdr[NS_ADDR_HDR], ip_addr_t *ip, uint16_t *port);
int ns_err_to_errno(err_t e);
/* A non-blocking, close-on-exec socketpair; *theirs stays blocking for
 * Python. Sizes our end's send buffer. */
int ns_socketpair(int type, int *ours, int *theirs);
void ns_set_nonblock(int fd);

/* ---- waitable operations (ns_op.c) ---- */
enum ns_op_kind { NS_OP_CONNECT, NS_OP_PING, NS_OP_SPLICE };
/* Locking: the loop thread starts and completes the operation; one caller
 * thread waits (ns_op_wait) and frees it (ns_op_free, after an rt_call that
 * takes it off the loop). mu guards done, rc, value and taken; cv (with mu)
 * is broadcast once, when done is set. The loop-side state below is the
 * loop thread's alone; rt and kind are set at creation and only read. */
struct ns_op {
	struct ns_obj obj; /* linked on the host while pending */
	rt_t *rt;
	enum ns_op_kind kind;
	pthread_mutex_t mu;
	pthread_cond_t cv; /* with mu: done was set */
	bool done;         /* guarded by mu */
	int rc;            /* guarded by mu */
	uint64_t value;    /* guarded by mu */
	bool taken;        /* guarded by mu: rc (an fd) was handed out */
	/* loop-side state */
	bool linked;
	void (*cancel)(struct ns_op *op); /* on the loop, while pending */
	void *pcb;
	void *priv;
	uint64_t t0;
	uint64_t left;
	uint16_t seq;
	struct ns_op *next_ping;
	int family;
	ip_addr_t peer;
};
struct ns_op *ns_op_new(ns_host_t *h, enum ns_op_kind kind);
/* Completes the operation (loop thread): unlinks it and wakes the waiter. */
void ns_op_complete(struct ns_op *op, int rc, uint64_t value);

/* ---- TCP bridges (ns_bridge.c) ---- */
#define NS_BR_FD_CONNECTING 1u /* fd is a TCP socket still connecting */
#define NS_BR_FD_TCP 2u        /* fd is an OS TCP socket (resets use RST) */
struct tcp_pcb;
/* Bridges an established (or, with ns_bridge_connect, connecting) pcb and a
 * non-blocking stream fd; takes ownership of both, also on failure (then the
 * pcb is aborted and the fd closed). Must not be called from inside a pcb
 * callback other than accept/connected (which must then return ERR_ABRT
 * when this fails: returns -errno). */
int ns_bridge_new(ns_host_t *h, struct tcp_pcb *pcb, int fd, unsigned flags);
/* Opens a pcb from the host's address to dst and bridges it to fd once
 * connected; failure resets fd. */
int ns_bridge_connect(ns_host_t *h, const ip_addr_t *dst, uint16_t port, int fd, unsigned flags);
/* Closes an fd as a reset: RST for TCP sockets. */
void ns_fd_reset(int fd, unsigned flags);

/* ---- lwIP pcb helpers ---- */
/* Binds a new pcb to each address of the host: up to 1 + NS_MAX_V6. */
#define NS_MAX_ADDRS (1 + NS_MAX_V6)
/* The host's addresses, for binding one pcb to each (ns_host.c). */
int ns_host_addrs(ns_host_t *h, const ip_addr_t *out[NS_MAX_ADDRS]);
/* Listens on port (0: one ephemeral port for all) on every address of h,
 * a pcb each appended to pcbs[*n] with arg and on_accept (ns_tcp.c). The
 * port listened on, or a negative errno; pcbs made so far are left for the
 * caller to close. */
int ns_tcp_listen_all(ns_host_t *h, uint16_t port, void *arg, tcp_accept_fn on_accept, struct tcp_pcb **pcbs, int *n);

/* ---- socket objects for Python (listeners, UDP sockets) ---- */
/* Makes a SEQPACKET pair (*ours for the loop, *theirs for Python), then
 * runs open_fn(arg) on h's loop, which reports its error in *open_rc. On
 * failure both ends are closed here (a failed open_fn must not close ours:
 * it sets it to -1) and -errno returned; the caller frees its object.
 * (ns_addr.c) */
int ns_pair_open(ns_host_t *h, int *ours, int *theirs, rt_fn open_fn, void *arg, const int *open_rc);

/* Hands Python its end: the object no longer closes it. */
static inline int ns_fd_take(int *fd)
{
	int v = *fd;
	*fd = -1;
	return v;
}

#endif
