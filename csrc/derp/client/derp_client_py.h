/* cffi: the DERP client as Python sees it (spanza/derp_client.py), plus the
 * plain structs the C API (client.h) shares: options and stats (events
 * are the codec's: derp/derp_py.h).
 *
 * The derp_pyclient_* functions may be called from any thread; the ones
 * that wait take a timeout in milliseconds (-1: until closed) and wait
 * in C, so cffi runs them with the GIL released. */
#ifndef SPANZA_DERP_CLIENT_PY_H
#define SPANZA_DERP_CLIENT_PY_H

#include <stddef.h>
#include <stdint.h>

#include "derp/derp_py.h"

struct rt;

#define DERP_CLIENT_MAX_PACKET 65536
#define DERP_CLIENT_KEY_LEN 32

/* Options; zero fields take the default shown. */
struct derp_client_opts {
	const char *ca_file;         /* PEM bundle used instead of the system CAs */
	const char *pin_sha256;      /* sha256 of the leaf cert's DER, 64 hex, optional "sha256-raw:"
					prefix: replaces CA/name verification (Tailscale's CertName) */
	const char *server_name;     /* TLS SNI and the name verified (default: the URL host) */
	int insecure;                /* 1: TLS without verification (self-signed test servers) */
	int note_preferred;          /* 1: send NotePreferred(true) after every connect */
	uint32_t queue_size;         /* packets held while disconnected or congested (256) */
	uint32_t write_buffer_max;   /* bytes buffered for the socket before sends queue (512 KiB) */
	uint32_t connect_timeout_ms; /* DNS+TCP+TLS+HTTP+DERP handshake budget (10000) */
	uint32_t dial_timeout_ms;    /* per address when more remain to try (1500) */
	uint32_t read_timeout_ms;    /* no frame for this long: dead connection (120000) */
	uint32_t ping_timeout_ms;    /* an unanswered ping after this long: dead connection (5000) */
	uint32_t idle_ping_ms;       /* send our own ping after this long without a frame (0: off) */
	uint32_t backoff_base_ms;    /* reconnect delay min(n*n*base, max) * [0.5, 1.5) (10) */
	uint32_t backoff_max_ms;     /* (5000) */
	uint8_t server_key[32];      /* expected server public key, if has_server_key */
	int has_server_key;
};

/* Connection states (derp_client_stats.state). */
/* waiting before the next attempt */
#define DERP_CLIENT_BACKOFF 1
/* getaddrinfo on a helper thread */
#define DERP_CLIENT_RESOLVING 2
/* TCP connect */
#define DERP_CLIENT_CONNECTING 3
/* TLS handshake */
#define DERP_CLIENT_TLS 4
/* HTTP upgrade and DERP handshake */
#define DERP_CLIENT_UPGRADING 5
/* ServerInfo received */
#define DERP_CLIENT_CONNECTED 6
#define DERP_CLIENT_CLOSED 7
/* refused by the server twice in a row (closed after ClientInfo: an
 * allowlist or client verification): no more attempts until reconnect */
#define DERP_CLIENT_REFUSED 8

struct derp_client_stats {
	uint64_t packets_sent, bytes_sent; /* SendPacket frames written to the connection */
	uint64_t packets_recv, bytes_recv; /* RecvPacket frames delivered */
	uint64_t connect_attempts;
	uint64_t connect_failures; /* attempts that never reached ServerInfo */
	uint64_t connects;         /* handshakes completed */
	uint64_t reconnects;       /* handshakes completed after a lost connection */
	uint64_t disconnects;      /* established connections lost */
	uint64_t drops_queue_full; /* oldest queued send dropped for a newer one */
	uint64_t drops_too_big;    /* send of more than 65536 bytes refused */
	uint64_t drops_conn_lost;  /* sends written to a connection that died before they left */
	uint64_t drops_rate_limit; /* over the server's token bucket (ServerInfo) */
	uint64_t drops_recv_queue; /* Python: received packets dropped, receive queue full */
	uint64_t drops_events;     /* Python: events dropped, event queue full */
	uint64_t bad_frames;       /* short/oversized frames dropped, connection kept */
	uint64_t protocol_errors;  /* connections dropped for malformed input (HTTP, greeting, box, frame) */
	uint64_t tls_errors;       /* TLS handshake/verification failures */
	uint64_t read_timeouts;    /* connections dropped after read_timeout_ms of silence */
	uint64_t ping_timeouts;    /* connections dropped for an unanswered ping */
	uint64_t pings_sent, pongs_recv, pings_recv; /* pings_recv: server pings answered */
	uint64_t keepalives_recv;
	uint64_t unknown_frames; /* skipped */
	uint64_t queued;         /* sends waiting now */
	uint64_t write_buffered; /* bytes waiting for the socket now */
	int state;               /* DERP_CLIENT_* */
	uint32_t failures;       /* consecutive failed attempts (backoff n) */
	uint64_t refusals;       /* attempts the server closed after our ClientInfo */
	int last_errno;          /* errno-style cause of last_error: ECONNREFUSED, EPROTO (TLS), EACCES
				      (refused), ETIMEDOUT, ECONNRESET, EHOSTUNREACH (DNS); 0: none */
};

/* Sans-IO helper: the reconnect delay after `failures` consecutive failures
 * (0 = none yet), rnd uniform in [0, 2^32): min(n*n*base, max) * (0.5 + rnd/2^32). */
uint32_t derp_client_backoff_ms(uint32_t failures, uint32_t base_ms, uint32_t max_ms, uint32_t rnd);

/* Sans-IO liveness rule of a connected client at time now (ms): what to
 * do, and in *next_ms when to look again. oldest_ping_ms: send time of the
 * oldest unanswered ping, or UINT64_MAX for none. idle_ping_ms 0: off. */
/* nothing to do until *next_ms */
#define DERP_LIVE_OK 0
/* no frame for read_timeout_ms: drop the connection */
#define DERP_LIVE_READ_TIMEOUT 1
/* a ping unanswered for ping_timeout_ms: drop the connection */
#define DERP_LIVE_PING_TIMEOUT 2
/* quiet for idle_ping_ms with no ping out: send one */
#define DERP_LIVE_SEND_PING 3
int derp_client_liveness(uint64_t now_ms, uint64_t last_rx_ms, uint64_t last_idle_ping_ms, uint64_t oldest_ping_ms,
			 uint32_t read_timeout_ms, uint32_t ping_timeout_ms, uint32_t idle_ping_ms, uint64_t *next_ms);

/* ---- Python adapter: a client plus thread-safe queues ---- */
typedef struct derp_pyclient derp_pyclient_t;

struct derp_py_packet {
	uint8_t src[32];
	uint32_t len;
	uint8_t *data;
	void *next;
};

/* Creates the client on rt's loop and starts connecting. NULL on error,
 * with a message in err[errlen] and *rc = -errno (-EINVAL: bad URL, key or
 * option). recv_queue/event_queue: bounds (0: 1024). */
derp_pyclient_t *derp_pyclient_new(struct rt *rt, const char *url, const uint8_t priv[32],
				   const struct derp_client_opts *opts, uint32_t recv_queue, uint32_t event_queue,
				   int *rc, char *err, size_t errlen);
/* Closes the connection and frees the client; wakes blocked callers and
 * waits for them to leave. Idempotent; later calls get -ESHUTDOWN. */
void derp_pyclient_close(derp_pyclient_t *p);
/* Closes (if needed) and frees p itself: only when no thread can call
 * with p any more (Python: when the object is collected). */
void derp_pyclient_free(derp_pyclient_t *p);
/* Queues a packet for dst. Waits (up to timeout_ms) only while the
 * connection is congested. 0, -EMSGSIZE, -ETIMEDOUT, -ESHUTDOWN. */
int derp_pyclient_send(derp_pyclient_t *p, const uint8_t dst[32], const uint8_t *data, size_t len, int timeout_ms);
/* Next received packet (free it with derp_pyclient_packet_free). 0,
 * -ETIMEDOUT, -ESHUTDOWN. */
int derp_pyclient_recv(derp_pyclient_t *p, int timeout_ms, struct derp_py_packet **out);
void derp_pyclient_packet_free(struct derp_py_packet *pkt);
/* Next event (Connected/Disconnected/PeerGone/...; not Pong). Free with
 * derp_pyclient_event_free. */
int derp_pyclient_next_event(derp_pyclient_t *p, int timeout_ms, struct derp_client_event **out);
void derp_pyclient_event_free(struct derp_client_event *ev);
int derp_pyclient_note_preferred(derp_pyclient_t *p, int preferred);
/* Sends a ping; *slot names it for ping_wait/ping_end. 0, -ENOTCONN, -EBUSY (too many pings in flight), -ESHUTDOWN. */
int derp_pyclient_ping_start(derp_pyclient_t *p, int *slot);
/* Waits up to timeout_ms for the pong of ping `slot` (so a caller can wait
 * in slices); *rtt_us set. 0, -ETIMEDOUT (not yet), -ENOTCONN, -ESHUTDOWN. */
int derp_pyclient_ping_wait(derp_pyclient_t *p, int slot, int timeout_ms, uint64_t *rtt_us);
/* Frees the ping's slot (after its wait, whatever the outcome). */
void derp_pyclient_ping_end(derp_pyclient_t *p, int slot);
/* 0 when connected; -ETIMEDOUT, -ESHUTDOWN, -EACCES (refused: the client
 * stopped retrying until derp_pyclient_reconnect). */
int derp_pyclient_wait_connected(derp_pyclient_t *p, int timeout_ms);
int derp_pyclient_connected(derp_pyclient_t *p);
int derp_pyclient_stats(derp_pyclient_t *p, struct derp_client_stats *out);
void derp_pyclient_public_key(derp_pyclient_t *p, uint8_t out[32]);
/* The last connection error, NUL-terminated into out[cap]; returns its length. */
int derp_pyclient_last_error(derp_pyclient_t *p, char *out, size_t cap);
/* Drops the current connection (as if it died); the client reconnects. */
int derp_pyclient_reconnect(derp_pyclient_t *p);

#endif
