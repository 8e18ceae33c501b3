/* derp server internals: shared by server*.c and mesh.c (loop thread only).
 *
 * One derp_server lives on one runtime thread. Connections (accepted
 * clients and our outbound mesh links) share one struct and one send path:
 * per-connection queues of whole frames (data and disco bounded with
 * drop-oldest, control frames), a "wire" list of frames committed to the
 * socket, and one timer for every deadline. Frames are written in batches:
 * a connection that got new frames is marked dirty and flushed once the
 * current event has been processed. */
#ifndef SPANZA_DERP_SERVER_H
#define SPANZA_DERP_SERVER_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "derp/client_proto.h"
#include "derp/frame.h"
#include "derp/server/derp_server_py.h"
#include "derp/tls.h"
#include "runtime/rt.h"

#define DERP_SRV_RBUF (DERP_HDR_LEN + 2 * DERP_KEY_LEN + DERP_MAX_PACKET + 4096)
#define DERP_SRV_TLS_CHUNK 16384 /* one TLS record per write */
#define DERP_SRV_IOV_MAX 64
#define DERP_SRV_MESH_QUEUE 1024                                 /* ForwardPacket queue of a mesh link */
#define DERP_SRV_CTL_MAX 4096                                    /* control frames queued for a regular client */
#define DERP_SRV_WATCH_CTL_MAX (1u << 20)                        /* ... for a mesh watcher, then it is closed */
#define DERP_SRV_RATE_FRAME_MAX (DERP_KEY_LEN + DERP_MAX_PACKET) /* 65568 */
#define DERP_SRV_MESH_WRITE_TIMEOUT_MS 5000                      /* our mesh client's writes */
/* Defaults of struct derp_server_config's timers (0 there means these). */
#define DERP_SRV_HTTP_TIMEOUT_MS 30000     /* accept to the end of the request head */
#define DERP_SRV_MESH_RETRY_MS 5000        /* between attempts of a mesh link */
#define DERP_SRV_NOT_HERE_INTERVAL_MS 1000 /* NotHere replies per sender (burst 3) */
#define DERP_SRV_LINGER_MS 2000            /* after an HTTP response: wait this long for the client's EOF */

struct derp_pkt {
	struct derp_pkt *next;
	uint32_t len; /* bytes in data: a whole frame */
	bool slab;    /* from the per-thread free list (DERP_PKT_SLAB bytes of data) */
	uint8_t data[];
};

struct derp_pktq {
	struct derp_pkt *head, *tail;
	uint32_t n;
};

enum derp_conn_state {
	CS_TLS,          /* server: TLS handshake */
	CS_HTTP,         /* server: reading the request head */
	CS_HTTP_REPLY,   /* server: writing a non-DERP response, then close */
	CS_CLIENT_INFO,  /* server: upgraded, waiting for ClientInfo */
	CS_ACTIVE,       /* server: registered client */
	CS_M_CONNECTING, /* mesh link: TCP connect in progress */
	CS_M_TLS,
	CS_M_HTTP,   /* mesh link: request sent; the client protocol runs the upgrade and handshake */
	CS_M_ACTIVE, /* mesh link: ServerInfo received */
	CS_DEAD,
};

enum derp_close_reason {
	CR_EOF,
	CR_READ_ERROR,
	CR_WRITE_ERROR,
	CR_PROTOCOL,
	CR_HANDSHAKE,
	CR_HANDSHAKE_TIMEOUT,
	CR_WRITE_TIMEOUT,
	CR_NOT_ALLOWED,
	CR_PERMISSION,
	CR_CLOSE_PEER,
	CR_HTTP,
	CR_DONE,     /* response written / server shutting down */
	CR_OVERFLOW, /* watcher control queue over its bound */
	CR_SELF,     /* mesh link to ourselves */
};

struct derp_peer;
struct derp_mesh_link;

struct derp_conn {
	struct derp_server *srv;
	struct derp_conn *next, *prev;         /* srv->conns */
	struct derp_conn *key_next, *key_prev; /* peer->conns (same key) */
	struct derp_conn *watch_next, *watch_prev;
	struct derp_conn *dirty_next; /* srv->dirty */
	struct derp_conn *dead_next;  /* srv->dead */
	struct derp_peer *peer;       /* registered clients */
	struct derp_mesh_link *link;  /* outbound mesh link owning this conn */
	struct derp_io io;
	rt_timer_t *timer;
	struct derp_parser parser;
	uint8_t *inbuf; /* HTTP head, or input held while rate-paused */
	uint32_t inlen, incap;
	size_t head_from; /* HTTP: where the search for the head's end resumes */
	struct derp_pktq ctlq, discoq, dataq, wire;
	uint32_t wire_off;    /* bytes of wire.head already written */
	uint32_t ev;          /* epoll events currently registered */
	uint64_t last_active; /* srv->seq at the last frame read (dup policy) */
	uint64_t ka_period;
	uint64_t ka_at, wdl_at, hs_at, resume_at, rd_at; /* deadlines, 0 = none */
	uint64_t timer_at;                               /* when c->timer is armed for, 0 = not armed */
	int64_t tokens;                                  /* receive rate limit (bytes) */
	uint64_t tokens_at;
	uint64_t nothere_at; /* NotHere limiter: time the bucket was last full-credited */
	uint8_t nothere_tokens;
	uint8_t state;
	uint8_t key[DERP_KEY_LEN];
	uint8_t pong[DERP_PING_LEN];
	uint8_t ip16[16];
	uint16_t port;
	bool pong_pending, ka_pending;
	bool mesh_ok; /* presented the mesh key */
	bool watcher, preferred, prober, not_ideal;
	bool dirty, paused, closing, close_after_write;
	bool lingering;        /* response sent and write side shut: draining until EOF */
	bool out_blocked;      /* the last write hit EAGAIN */
	bool read_wants_write; /* TLS read needs EPOLLOUT */
};

struct derp_peer {
	struct derp_peer *hnext;
	uint8_t key[DERP_KEY_LEN];
	struct derp_conn *conns; /* local connections with this key */
	struct derp_conn *active;
	uint32_t nconns;
	struct derp_mesh_link **routes; /* mesh peers that reported the key; [0] wins */
	uint16_t nroutes, caproutes;
	uint8_t (*sent_to)[DERP_KEY_LEN]; /* open-addressing set of dst keys */
	uint32_t nsent, capsent;
};

struct derp_mesh_link {
	struct derp_server *srv;
	struct derp_mesh_link *next;
	char host[DERP_URL_HOST_HEADER_MAX]; /* URL host[:port]: Host header */
	char sni[DERP_URL_HOST_MAX];         /* host without port: SNI and certificate name */
	struct sockaddr_storage addr;
	socklen_t addrlen;
	bool tls;
	bool stopped; /* self-connect detected */
	struct derp_conn *conn;
	rt_timer_t *retry;
	uint64_t retry_at; /* server time of the next attempt, 0 = none */
	uint64_t routes;   /* keys currently routed through this link */
	uint8_t remote_pub[DERP_KEY_LEN];
	bool up;                /* handshake done (counted in mesh_clients_up) */
	struct derp_cproto *cp; /* the client protocol of the current connection */
};

struct derp_server {
	rt_t *rt;
	bool killed; /* derp_server_kill: connections are reset, not flushed */
	int lfd;
	uint16_t port;
	SSL_CTX *tls;
	SSL_CTX *mesh_tls;
	char *cert_pem;
	bool has_cert_sha;
	uint8_t cert_sha256[32];
	uint8_t priv[DERP_KEY_LEN], pub[DERP_KEY_LEN];
	bool has_mesh_key;
	uint8_t mesh_key[DERP_KEY_LEN];
	struct derp_server_config cfg; /* timers filled in; strings not kept */
	uint8_t (*allow)[DERP_KEY_LEN];
	size_t nallow;
	bool has_allowlist;
	struct derp_peer **ptab;
	size_t ptab_cap, npeers;
	struct derp_conn *conns;
	struct derp_conn *dirty, *dead;
	struct derp_conn *watchers;
	struct derp_mesh_link *links;
	rt_timer_t *accept_retry;
	uint64_t seq;
	uint64_t skew_ms; /* virtual time added to the monotonic clock (tests) */
	bool closing;
	struct derp_server_stats st;
	uint8_t *rbuf; /* DERP_SRV_RBUF: shared read buffer (one thread) */
	uint8_t *wbuf; /* DERP_SRV_TLS_CHUNK: TLS write gather buffer */
};

/* The server's clock: monotonic ms plus the virtual skew tests add with
 * derp_server_advance_clock. Every deadline is in this time. */
static inline uint64_t derp_srv_now(const struct derp_server *s) { return rt_now_ms() + s->skew_ms; }

/* server_conn.c: connections, I/O, timers */
struct derp_conn *derp_conn_new(struct derp_server *s, int fd, SSL *client_ssl, SSL_CTX *server_ctx);
void derp_conn_close(struct derp_conn *c, enum derp_close_reason why);
void derp_conn_mark_dirty(struct derp_conn *c);
/* Writes what is queued now (normally done in batches by derp_srv_settle). */
void derp_conn_flush(struct derp_conn *c);
void derp_conn_update_events(struct derp_conn *c);
void derp_conn_arm_timer(struct derp_conn *c);
/* Runs every deadline of c that is due now (the timer callback's body). */
void derp_conn_check_deadlines(struct derp_conn *c);
/* Bytes read from the connection, whatever its phase (also the fuzz
 * targets' way in: tests/fuzz/derp_server_*.c). */
void derp_conn_on_bytes(struct derp_conn *c, const uint8_t *b, size_t n);
/* Feeds DERP stream bytes, holding what cannot be processed yet (rate pause). */
void derp_conn_feed(struct derp_conn *c, const uint8_t *b, size_t n);
/* Sets a deadline field and makes sure the timer fires by then. */
void derp_conn_deadline(struct derp_conn *c, uint64_t *field, uint64_t at);
/* Queues a whole frame (takes ownership). */
void derp_conn_push_ctl(struct derp_conn *c, struct derp_pkt *p);
/* Flushes dirty connections and frees closed ones: the tail of every entry point. */
void derp_srv_settle(struct derp_server *s);
/* A frame buffer of len bytes. Frames that fit DERP_PKT_SLAB (every
 * WireGuard-sized packet) come from a free list of the calling thread (a
 * server's objects live on its runtime's thread), so the relay's per-packet
 * path does not malloc/free; larger ones are allocated as they come. */
struct derp_pkt *derp_pkt_new(uint32_t len);
/* Returns p (may be NULL) to the calling thread's free list, or frees it. */
void derp_pkt_free(struct derp_pkt *p);
/* Frees the calling thread's free list (a server stopping on its loop). */
void derp_pkt_cache_drain(void);
void derp_pktq_push(struct derp_pktq *q, struct derp_pkt *p);
struct derp_pkt *derp_pktq_pop(struct derp_pktq *q);
void derp_pktq_clear(struct derp_pktq *q);

/* server_http.c: the HTTP phase of accepted connections */
void derp_http_on_bytes(struct derp_conn *c, const uint8_t *b, size_t n);

/* server_frames.c: the DERP phase of accepted connections */
/* Feeds stream bytes; returns how many were consumed (less than n only
 * when the connection paused for its rate limit or closed). */
size_t derp_srv_on_stream(struct derp_conn *c, const uint8_t *b, size_t n);
void derp_srv_upgrade(struct derp_conn *c, bool fast_start);

/* server_peers.c: keys, duplicates, routes, watchers */
struct derp_peer *derp_peer_find(struct derp_server *s, const uint8_t key[DERP_KEY_LEN]);
struct derp_peer *derp_peer_get(struct derp_server *s, const uint8_t key[DERP_KEY_LEN]);
void derp_peer_maybe_free(struct derp_server *s, struct derp_peer *p);
void derp_peer_register(struct derp_conn *c);
void derp_peer_unregister(struct derp_conn *c);
void derp_peer_note_activity(struct derp_conn *c);
void derp_peer_note_sent(struct derp_server *s, const uint8_t src[DERP_KEY_LEN], const uint8_t dst[DERP_KEY_LEN]);
void derp_peer_route_add(struct derp_server *s, const uint8_t key[DERP_KEY_LEN], struct derp_mesh_link *l);
void derp_peer_route_del(struct derp_server *s, const uint8_t key[DERP_KEY_LEN], struct derp_mesh_link *l);
void derp_peer_routes_drop_link(struct derp_server *s, struct derp_mesh_link *l);
void derp_watch_add(struct derp_conn *c);
void derp_watch_del(struct derp_conn *c);
bool derp_allowed(struct derp_server *s, const uint8_t key[DERP_KEY_LEN]);
/* Queues PeerGone(peer, reason) to c. */
void derp_send_peer_gone(struct derp_conn *c, const uint8_t peer[DERP_KEY_LEN], uint8_t reason);

/* mesh.c: outbound mesh links */
int derp_mesh_parse(struct derp_server *s, const char *list, char *err, size_t errlen);
void derp_mesh_start(struct derp_server *s);
void derp_mesh_stop(struct derp_server *s);
void derp_mesh_on_bytes(struct derp_conn *c, const uint8_t *b, size_t n);
void derp_mesh_on_connected(struct derp_conn *c);
void derp_mesh_on_closed(struct derp_conn *c);
/* Reconnects links whose retry is due (after a virtual clock jump). */
void derp_mesh_check_retries(struct derp_server *s);
/* Queues ForwardPacket(src, dst, pkt) on the link; false if it was dropped. */
bool derp_mesh_forward(struct derp_mesh_link *l, const uint8_t src[DERP_KEY_LEN], const uint8_t dst[DERP_KEY_LEN],
		       const uint8_t *pkt, size_t len);

#endif
