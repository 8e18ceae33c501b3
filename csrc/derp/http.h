/* derp http: the HTTP/1.1 pieces around the DERP upgrade (spec §7, §8).
 * Parsing only (no I/O): requests for the server, responses for the client,
 * and builders for both. Bytes after the blank line belong to the DERP
 * stream: parsers report header_len so callers keep the rest. */
#ifndef SPANZA_DERP_HTTP_H
#define SPANZA_DERP_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DERP_HTTP_MAX_HEAD 8192 /* request/response head limit (line + headers) */
#define DERP_HTTP_MAX_CHALLENGE 64

struct derp_http_req {
	char method[16];
	char path[256];    /* path without the query string */
	char host[256];    /* Host header (empty if absent) */
	bool has_upgrade;  /* any Upgrade header */
	bool upgrade_derp; /* Upgrade: derp (case-insensitive) */
	bool upgrade_websocket;
	bool ws_derp_proto; /* Sec-WebSocket-Protocol lists "derp" */
	bool fast_start;    /* Derp-Fast-Start: 1 */
	bool ideal_node;    /* non-empty Ideal-Node header */
	bool has_challenge; /* valid X-Tailscale-Challenge (<= 64 chars of [A-Za-z0-9._:-]) */
	char challenge[DERP_HTTP_MAX_CHALLENGE + 1];
	int minor;         /* HTTP/1.x minor version */
	size_t header_len; /* bytes up to and including the blank line */
};

/* Parses a request head from buf[len].
 * Returns 1 (complete; req->header_len set), 0 (need more bytes),
 * -EBADMSG (malformed: answer 400 and close), -EMSGSIZE (head longer than
 * DERP_HTTP_MAX_HEAD: 431 and close), -EPROTONOSUPPORT (not HTTP/1.x). */
int derp_http_parse_request(const uint8_t *buf, size_t len, struct derp_http_req *req);

/* The end of a head that arrives in pieces, looking only at what is new:
 * *from (0 for a new head) is where this call starts and is moved to where
 * the next must (the head's last two bytes, where a terminator may have
 * begun), so a head dribbled byte by byte costs linear time, not a rescan
 * per byte. Returns the head's length (through the blank line) or 0; adds
 * the number of bytes it looked at to *examined. The caller bounds len
 * (DERP_HTTP_MAX_HEAD) and then parses the head once. */
size_t derp_http_head_scan(const uint8_t *buf, size_t len, size_t *from, uint64_t *examined);

struct derp_http_resp {
	int status; /* e.g. 101 */
	int minor;
	bool upgrade_derp;
	bool has_content_length;
	uint64_t content_length;
	bool chunked;
	bool has_public_key; /* Derp-Public-Key: 64 hex */
	uint8_t public_key[32];
	size_t header_len; /* bytes up to and including the blank line */
};

/* Parses a response head (client side). Same return codes as the request
 * parser. Bytes after header_len are DERP data (ServerKey) for a 101. */
int derp_http_parse_response(const uint8_t *buf, size_t len, struct derp_http_resp *resp);

/* Client: "GET /derp HTTP/1.1" with Host, User-Agent, Connection: Upgrade,
 * optional Derp-Fast-Start: 1 and Ideal-Node, Upgrade: DERP, as Go writes it.
 * host may include ":port". ideal_node may be NULL. Returns the length
 * (NUL not counted) or 0 if cap is too small. */
size_t derp_http_upgrade_request(char *out, size_t cap, const char *host, bool fast_start, const char *ideal_node);

/* Server: the exact 101 response (spec §7) with the server key in lower hex. */
size_t derp_http_101(char *out, size_t cap, const uint8_t server_pub[32]);

/* Server: a complete response with Content-Length (none for 1xx/204) and Connection: close.
 * extra_headers: zero or more "Name: value\r\n" lines (may be NULL).
 * head_only: omit the body (HEAD) but keep its Content-Length. */
size_t derp_http_response(char *out, size_t cap, int status, const char *extra_headers, const char *body,
			  size_t body_len, bool head_only);

/* Canonical reason phrase for a status ("Switching Protocols", ...). */
const char *derp_http_reason(int status);

#endif
