/* derp client protocol, sans-IO: what a DERP client does with the bytes a
 * server sends after the TCP/TLS connection is up (spec §7, §9, §12, §13).
 *
 * It builds the HTTP upgrade request, parses the HTTP response, runs the
 * handshake (ServerKey -> ClientInfo -> ServerInfo), and turns frames into
 * callbacks. No sockets, no clocks: the connection code (client.c) feeds it
 * and the fuzzer (tests/fuzz/derp_client.c) drives it directly. Frames are
 * parsed with the shared codec (frame.h). */
#ifndef SPANZA_DERP_CLIENT_PROTO_H
#define SPANZA_DERP_CLIENT_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "derp/derp_py.h"
#include "derp/frame.h"
#include "derp/http.h"

#define DERP_CP_HEALTH_MAX 4096 /* longer Health text is cut */

enum derp_cp_phase {
	DERP_CP_HTTP = 0,    /* waiting for "HTTP/1.1 101" and the blank line */
	DERP_CP_SERVER_KEY,  /* waiting for the first frame: ServerKey */
	DERP_CP_SERVER_INFO, /* ClientInfo sent, waiting for ServerInfo */
	DERP_CP_RUN,         /* ServerInfo received */
	DERP_CP_FAILED,      /* fatal error: the connection must be dropped */
};

struct derp_cp_ops {
	/* Bytes the client must send (ClientInfo, Pong). Negative: fail. */
	int (*write)(void *arg, const uint8_t *buf, size_t len);
	void (*connected)(void *arg, const uint8_t server_pub[32], const struct derp_server_info *si);
	void (*packet)(void *arg, const uint8_t src[32], const uint8_t *data, size_t len);
	void (*event)(void *arg, const struct derp_client_event *ev);
};

struct derp_cp_counters {
	uint64_t bad_frames, keepalives, pings_recv, unknown_frames;
};

struct derp_cproto {
	enum derp_cp_phase phase;
	bool halt; /* set by the owner from a callback: stop feeding now */
	bool has_expected_key;
	bool has_mesh_key; /* a mesh link: ClientInfo carries the key, then WatchConns */
	uint8_t priv[32], pub[32], server_pub[32], expected_key[32], mesh_key[32];
	struct derp_server_info si;
	int http_status;
	size_t http_len;
	char http[DERP_HTTP_MAX_HEAD];
	struct derp_parser parser;
	struct derp_cp_counters n;
	char err[160]; /* why the phase became FAILED */
};

/* priv must be a valid (non-zero) key; pub is derived by the caller. */
void derp_cp_init(struct derp_cproto *cp, const uint8_t priv[32], const uint8_t pub[32],
		  const uint8_t *expected_server_key);
/* Makes cp a server's mesh link (spec §10): its ClientInfo presents
 * mesh_key and is followed by WatchConns, so PeerPresent/PeerGone arrive
 * as events. A server whose key is cp's own is refused with -ELOOP (a
 * server meshing with itself). */
void derp_cp_set_mesh(struct derp_cproto *cp, const uint8_t mesh_key[32]);
/* Wipes the keys and frees the parser buffer. */
void derp_cp_free(struct derp_cproto *cp);
/* Feeds server bytes. 0 while fine (all bytes consumed, or halted),
 * negative errno on a fatal error (phase FAILED, cp->err says why):
 * -EPROTO (HTTP/greeting/handshake), -EMSGSIZE (frame over 1 MiB),
 * -EBADMSG (ServerInfo box/JSON), -ELOOP (a mesh link's own key),
 * -ENOMEM, or the write op's error. */
int derp_cp_input(struct derp_cproto *cp, const uint8_t *in, size_t len, const struct derp_cp_ops *ops, void *arg);

/* ---- URLs: http(s)://host[:port][/derp] ---- */
#define DERP_URL_HOST_MAX 256                             /* a DNS name fits */
#define DERP_URL_HOST_HEADER_MAX (DERP_URL_HOST_MAX + 16) /* + brackets, ':' and a port */
struct derp_url {
	bool tls;
	bool host_is_ip; /* a literal IPv4/IPv6 address */
	uint16_t port;
	char host[DERP_URL_HOST_MAX];               /* without brackets */
	char host_header[DERP_URL_HOST_HEADER_MAX]; /* as in the URL: host[:port], IPv6 in brackets */
};
/* 0 or -EINVAL; err[errlen] says what is wrong. */
int derp_url_parse(const char *url, struct derp_url *u, char *err, size_t errlen);

#endif
