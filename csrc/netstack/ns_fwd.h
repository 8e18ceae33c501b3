/* Port forwards (internal): OS sockets <-> tunnel, TCP and UDP. */
#ifndef SPANZA_NS_FWD_H
#define SPANZA_NS_FWD_H

#include <sys/socket.h>

#include "ns.h"

struct udp_pcb;
struct tcp_pcb;
struct ns_fsess;

struct ns_fwd {
	struct ns_obj obj;
	rt_t *rt;
	void (*shutdown)(struct ns_fwd *f); /* loop thread; idempotent */
	bool shut;
	uint16_t port;   /* where it listens: OS port (in) or tunnel port (out) */
	int os_fd;       /* in: the OS listening/bound socket */
	ip_addr_t to_ip; /* in: the tunnel destination */
	uint16_t to_port;
	struct sockaddr_storage os_to; /* out: the OS destination */
	socklen_t os_to_len;
	struct tcp_pcb *lpcbs[NS_MAX_ADDRS]; /* out: tunnel listeners */
	struct udp_pcb *upcbs[NS_MAX_ADDRS]; /* out: tunnel UDP sockets */
	int npcbs;
	struct ns_fsess *sessions; /* UDP: one per peer */
	int nsessions;
	rt_timer_t *sweep;
};

/* Runs on the loop thread; sets *rc < 0 on failure (f is then closed). */
typedef void ns_fwd_setup_fn(struct ns_fwd *f, int *rc);

/* Common entry: allocates f, runs setup(f) on the loop (linked to h). */
int ns_fwd_start(ns_host_t *h, struct ns_fwd *f, ns_fwd_setup_fn *setup, ns_fwd_t **out);
/* The TCP/UDP entries: in (OS socket os_fd, which it owns from here on,
 * to the tunnel address to) and out (tunnel port to the OS address to). */
int ns_fwd_in(ns_host_t *h, int os_fd, const struct ns_addr *to, ns_fwd_setup_fn *setup, ns_fwd_t **out);
int ns_fwd_out(ns_host_t *h, uint16_t port, const struct ns_addr *to, ns_fwd_setup_fn *setup, ns_fwd_t **out);
struct ns_fwd *ns_fwd_alloc(ns_host_t *h, int os_fd);
int ns_fwd_os_addr(const struct ns_addr *a, struct sockaddr_storage *ss, socklen_t *len);
/* The port an OS socket is bound to, or -errno. */
int ns_fwd_os_port(int fd);

#endif
