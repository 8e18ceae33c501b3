/* cffi: the DERP server as Python sees it (spanza.DerpServer). */
#ifndef SPANZA_DERP_SERVER_PY_H
#define SPANZA_DERP_SERVER_PY_H

#include <stddef.h>
#include <stdint.h>

/* struct rt: the runtime (rt_t); spelled as a struct so this header does
 * not depend on the order cffi reads headers in. */
struct rt;

typedef struct derp_server derp_server_t;

struct derp_server_config {
	const char *host;      /* listen address ("127.0.0.1", "::", "" = any) */
	uint16_t port;         /* 0 = pick one */
	int tls;               /* 0 plain HTTP, 1 TLS */
	const char *cert_file; /* TLS: PEM chain; NULL = self-signed for hostname */
	const char *key_file;
	const char *hostname; /* TLS name; self-signed cert subject; SNI check with files */
	int require_sni;      /* refuse mismatched SNI (derper manual mode, DNS names) */
	int has_private_key;
	uint8_t private_key[32]; /* the server's node key; generated when !has_private_key */
	int has_mesh_key;
	uint8_t mesh_key[32];
	const char *mesh_with;      /* comma list: "host[:port]" or "host/dialhost" or URLs */
	const char *mesh_ca_file;   /* trust for mesh peers' TLS (NULL = system roots) */
	int mesh_insecure;          /* mesh peers' TLS not verified (tests only) */
	const char *allowlist_file; /* node keys admitted (mesh-key holders always are) */
	uint64_t rate_bytes_per_s;  /* per-client receive rate (0 = unlimited) */
	uint64_t rate_burst_bytes;  /* raised to at least 65568 */
	/* Timers in ms; 0 = the protocol default. */
	uint32_t keepalive_ms;          /* 60000 (+ up to keepalive_jitter_ms) */
	uint32_t keepalive_jitter_ms;   /* 5000 */
	uint32_t handshake_timeout_ms;  /* 10000: upgrade to ClientInfo */
	uint32_t http_timeout_ms;       /* 30000: accept to end of request head */
	uint32_t write_timeout_ms;      /* 2000 (mesh-key clients: mesh_write_timeout_ms) */
	uint32_t mesh_write_timeout_ms; /* 30000 */
	uint32_t mesh_retry_ms;         /* 5000 */
	uint32_t queue_depth;           /* 32 per queue (data, disco) */
	uint32_t not_here_interval_ms;  /* 1000: NotHere rate (burst 3) */
};

struct derp_server_stats {
	uint64_t connections;     /* open TCP connections (any phase) */
	uint64_t clients;         /* registered DERP connections */
	uint64_t unique_keys;     /* distinct local node keys */
	uint64_t duplicate_conns; /* connections beyond the first per key */
	uint64_t watchers;        /* mesh watchers (WatchConns) */
	uint64_t mesh_clients_up; /* outbound mesh links with the handshake done */
	uint64_t mesh_routes;     /* keys reachable through mesh peers */
	uint64_t home_clients;    /* NotePreferred(true) */
	uint64_t accepts;
	uint64_t upgrades;
	uint64_t http_requests; /* non-DERP HTTP requests answered */
	uint64_t packets_recv;  /* SendPacket + ForwardPacket frames in */
	uint64_t bytes_recv;    /* their packet bytes */
	uint64_t packets_sent;  /* RecvPacket frames written */
	uint64_t bytes_sent;
	uint64_t packets_forwarded_out; /* ForwardPacket queued to mesh peers */
	uint64_t packets_forwarded_in;
	uint64_t disco_packets;
	uint64_t pings;
	uint64_t peer_gone_disconnected_sent;
	uint64_t peer_gone_not_here_sent;
	uint64_t peer_present_sent;
	uint64_t keepalives_sent;
	uint64_t drop_unknown_dest;
	uint64_t drop_unknown_dest_on_fwd;
	uint64_t drop_gone_disconnected;
	uint64_t drop_queue_head;
	uint64_t drop_queue_tail;
	uint64_t drop_write_error;
	uint64_t drop_dup_client;
	uint64_t close_protocol_error; /* after registration: a frame with a bad length */
	uint64_t close_handshake_error; /* before registration: not ClientInfo first, bad length/box/JSON/mesh key, zero key */
	uint64_t close_handshake_timeout;
	uint64_t close_write_timeout;
	uint64_t close_not_allowed; /* allowlist rejections */
	uint64_t close_permission;  /* privileged frames without the mesh key */
	uint64_t close_peer;        /* ClosePeer requests applied */
	uint64_t close_http_error;  /* bad HTTP, 426, oversize heads, TLS failures */
	uint64_t rate_limit_waits;  /* times a client was paused for its rate limit */
	/* Bytes of request heads looked at for their end, the final parse
	 * included: linear in what clients send, however they split it. */
	uint64_t http_head_bytes_scanned;
};

/* Creates and starts a server on rt. On failure returns -errno and writes a
 * message into err[errlen]. */
int derp_server_new(struct rt *rt, const struct derp_server_config *cfg, derp_server_t **out, char *err, size_t errlen);
/* Closes every connection and the listener, then frees. Safe from any thread. */
void derp_server_free(derp_server_t *s);
/* Like derp_server_free, but abrupt (a crash or kill -9 as peers see it):
 * every connection is reset, nothing queued is written. */
void derp_server_kill(derp_server_t *s);
uint16_t derp_server_port(derp_server_t *s);
void derp_server_public_key(derp_server_t *s, uint8_t out[32]);
/* Copies the self-signed certificate's PEM (NUL-terminated) into out[cap];
 * returns its length, 0 when the server has none, or -ENOSPC. */
int derp_server_cert_pem(derp_server_t *s, char *out, size_t cap);
/* SHA-256 of the served leaf certificate's DER; -ENOENT without TLS. */
int derp_server_cert_sha256(derp_server_t *s, uint8_t out[32]);
/* Snapshot of the counters (taken on the loop thread). */
int derp_server_stats(derp_server_t *s, struct derp_server_stats *out);

/* Tests: moves the server's clock forward by ms (virtual time) and runs
 * every deadline that is now due (keepalives, handshake and write
 * deadlines, rate-limit resumes, mesh retries). Real time still passes too. */
int derp_server_advance_clock(derp_server_t *s, uint64_t ms);

/* Helpers for Python: derper's mesh key file (node keys and key files are
 * spanza/keys.py's). */
int derp_server_load_mesh_key(const char *path, uint8_t key[32], char *err, size_t errlen);
/* Self-signed certificate files for hostname (derper's manual mode certdir). */
int derp_server_write_self_signed(const char *hostname, const char *cert_path, const char *key_path, char *err,
				  size_t errlen);

#endif
