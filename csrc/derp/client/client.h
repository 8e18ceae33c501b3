/* derp client: one connection to a DERP server, kept up forever.
 *
 * derp_client_new() starts connecting at once and reconnects after every
 * failure or loss, with Tailscale's backoff (spec §12): delay =
 * min(n*n*10 ms, 5 s) * rand[0.5, 1.5), n = consecutive failures, reset by
 * a completed handshake. A connection is declared dead after read_timeout_ms
 * without any frame (120 s), or when a ping stays unanswered for
 * ping_timeout_ms (5 s).
 *
 * URL: http(s)://host[:port][/derp], or the nodes of one region (Tailscale's
 * DERP map order) separated by spaces or commas: after each failed attempt
 * or lost connection the next attempt goes to the next node. Literal IPv4/IPv6 addresses are used
 * as they are; host names are resolved with getaddrinfo on a short-lived
 * helper thread (never on the loop), and each address is tried in order.
 * TLS (https): SNI = server_name or the URL host (none for IP literals),
 * verified against the system CAs or ca_file, or pinned (pin_sha256 of the
 * leaf's DER, instead of CA checks), or not at all (insecure). No ALPN is
 * offered, so the server cannot pick HTTP/2.
 *
 * Threading: every function here runs on the runtime's loop thread (from a
 * loop callback or inside rt_call). Callbacks run on the loop thread too,
 * and may call derp_client_send/ping/note_preferred/reconnect, and even
 * derp_client_free (the free is then finished when the callback returns).
 *
 * Sends: derp_client_send() encodes the frame straight into the
 * connection's write buffer (the one copy) when connected and not
 * congested; otherwise the packet is copied into a bounded FIFO
 * (queue_size packets; when full the oldest is dropped and counted) that
 * drains, in order, as soon as the connection is up and writable. */
#ifndef SPANZA_DERP_CLIENT_H
#define SPANZA_DERP_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "derp/client/derp_client_py.h"
#include "runtime/rt.h"

typedef struct derp_client derp_client_t;

struct derp_client_ops {
	/* A packet from src (len <= 65536). data is valid during the call only. */
	void (*on_packet)(void *arg, const uint8_t src[32], const uint8_t *data, size_t len);
	/* PeerGone, PeerPresent, Health, Restarting, Pong (DERP_EV_*). */
	void (*on_event)(void *arg, const struct derp_client_event *ev);
	/* connected: handshake complete (ServerInfo received). !connected: the
	 * connection was lost (why: a message); the client is reconnecting. */
	void (*on_state)(void *arg, bool connected, const char *why);
	/* The client stopped being congested (derp_client_congested() turned
	 * false after it was true, however it got there: a send, a queued
	 * packet, a control frame): sends go straight to the socket again.
	 * A lost connection reports on_state instead. */
	void (*on_writable)(void *arg);
};

/* Creates a client and starts connecting. priv: the node private key (32
 * bytes, not all zero). opts may be NULL (defaults). ops may be NULL or
 * have NULL members. Returns NULL with *rc = -EINVAL (bad URL, key, option:
 * err[errlen] says which) or -ENOMEM. */
derp_client_t *derp_client_new(rt_t *rt, const char *url, const uint8_t priv[32], const struct derp_client_opts *opts,
			       const struct derp_client_ops *ops, void *arg, int *rc, char *err, size_t errlen);
/* Closes the connection and frees everything. No callbacks afterwards. */
void derp_client_free(derp_client_t *c);

/* Sends a packet to dst. 0: written or queued; -EMSGSIZE: over 65536
 * bytes; -ESHUTDOWN: closed. A queue overflow drops the oldest queued
 * packet (stats.drops_queue_full), not this one. */
int derp_client_send(derp_client_t *c, const uint8_t dst[32], const uint8_t *data, size_t len);
/* True while connected and nothing is queued or over write_buffer_max:
 * a send now goes straight to the socket. */
bool derp_client_writable(const derp_client_t *c);
/* True while connected but queueing (the caller may hold back: on_writable
 * follows once it turns false, or on_state if the connection is lost). */
bool derp_client_congested(const derp_client_t *c);
bool derp_client_connected(const derp_client_t *c);

/* Sends Ping(data). The Pong comes back as a DERP_EV_PONG event with the
 * round-trip time; no Pong within ping_timeout_ms drops the connection.
 * 0, -ENOTCONN, -EBUSY (16 pings already outstanding). */
int derp_client_ping(derp_client_t *c, const uint8_t data[8]);
/* Sends NotePreferred now (if connected) and after every reconnect. */
int derp_client_note_preferred(derp_client_t *c, bool preferred);
/* Moves to another relay (a home relay change): url as derp_client_new
 * takes it (one URL or a region's node URLs), same scheme as before. The
 * current connection is dropped and the new relay dialled now. 0, -EINVAL
 * (err says why), -ESHUTDOWN. */
int derp_client_set_url(derp_client_t *c, const char *url, char *err, size_t errlen);
/* Drops the current connection (or skips the backoff wait) and reconnects.
 * With several node URLs the next attempt goes to the next node. */
void derp_client_reconnect(derp_client_t *c);

/* Impairs sends (IMP_OUT, before framing or queueing) or received packets
 * (IMP_IN, before on_packet): an IMP_OP_* on its engine (impair/impair.h). */
struct imp_config;
struct imp_stats;
int derp_client_impair(derp_client_t *c, int dir, int op, const struct imp_config *cfg, struct imp_stats *out);

void derp_client_stats(const derp_client_t *c, struct derp_client_stats *out);
void derp_client_public_key(const derp_client_t *c, uint8_t out[32]);
/* The server's public key once connected (false before). */
bool derp_client_server_key(const derp_client_t *c, uint8_t out[32]);
/* The Python adapter's runtime (any thread) and its client (loop thread;
 * NULL once closed), for other modules' loop-thread calls. */
rt_t *derp_pyclient_rt(const derp_pyclient_t *p);
derp_client_t *derp_pyclient_client(const derp_pyclient_t *p);

/* Copies why the last connection attempt failed or the last connection
 * ended into out (truncated, NUL-terminated if cap > 0); returns its length. */
int derp_client_last_error(const derp_client_t *c, char *out, size_t cap);

#endif
