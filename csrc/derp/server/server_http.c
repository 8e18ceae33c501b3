/* The HTTP phase of an accepted connection: the /derp upgrade and derper's
 * small endpoints (spec §7, §8). Every non-upgrade response closes. */
#include "derp/server/server.h"
#include "derp/http.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char home_page[] =
	"<html><body>\n<h1>DERP</h1>\n<p>\n  This is a <a href=\"https://tailscale.com/\">Tailscale</a> DERP server\n"
	"  (Spanza).\n</p>\n</body></html>\n";

#define TLS_HANDSHAKE_RECORD 0x16
#define TLS_MAJOR_VERSION 0x03

static void reply(struct derp_conn *c, int status, const char *headers, const char *body, bool head)
{
	char buf[2048];
	size_t n = derp_http_response(buf, sizeof(buf), status, headers, body, body ? strlen(body) : 0, head);
	struct derp_pkt *p = n ? derp_pkt_new((uint32_t)n) : NULL;
	free(c->inbuf);
	c->inbuf = NULL;
	c->inlen = c->incap = 0;
	c->head_from = 0;
	if (!p) {
		derp_conn_close(c, CR_HTTP);
		return;
	}
	memcpy(p->data, buf, n);
	c->state = CS_HTTP_REPLY;
	c->close_after_write = true;
	derp_conn_push_ctl(c, p);
	derp_conn_update_events(c);
}

#define TEXT_PLAIN "Content-Type: text/plain; charset=utf-8\r\nX-Content-Type-Options: nosniff\r\n"

static void serve(struct derp_conn *c, const struct derp_http_req *req)
{
	bool head = !strcmp(req->method, "HEAD");
	bool get_or_head = head || !strcmp(req->method, "GET");
	c->srv->st.http_requests++;
	if (!strcmp(req->path, "/derp/probe") || !strcmp(req->path, "/derp/latency-check")) {
		if (get_or_head)
			reply(c, 200, "Access-Control-Allow-Origin: *\r\n", NULL, head);
		else
			reply(c, 405, TEXT_PLAIN, "bogus probe method\n", false);
		return;
	}
	if (!strcmp(req->path, "/generate_204")) {
		char hdr[256];
		int n = snprintf(hdr, sizeof(hdr),
				 "Cache-Control: no-cache, no-store, must-revalidate, no-transform, max-age=0\r\n");
		if (req->has_challenge)
			snprintf(hdr + n, sizeof(hdr) - (size_t)n, "X-Tailscale-Response: response %s\r\n",
				 req->challenge);
		reply(c, 204, hdr, NULL, true);
		return;
	}
	if (!strcmp(req->path, "/robots.txt")) {
		reply(c, 200, TEXT_PLAIN, "User-agent: *\nDisallow: /\n", head);
		return;
	}
	if (!strcmp(req->path, "/")) {
		reply(c, 200, "Content-Type: text/html; charset=utf-8\r\n", home_page, head);
		return;
	}
	reply(c, 404, TEXT_PLAIN, "404 page not found\n", head);
}

void derp_http_on_bytes(struct derp_conn *c, const uint8_t *b, size_t n)
{
	size_t room = DERP_HTTP_MAX_HEAD - c->inlen, take = n < room ? n : room;
	if (c->inlen + take > c->incap) {
		size_t cap = c->incap ? c->incap : 512;
		while (cap < c->inlen + take)
			cap *= 2;
		if (cap > DERP_HTTP_MAX_HEAD)
			cap = DERP_HTTP_MAX_HEAD;
		uint8_t *nb = realloc(c->inbuf, cap);
		if (!nb) {
			derp_conn_close(c, CR_HTTP);
			return;
		}
		c->inbuf = nb;
		c->incap = (uint32_t)cap;
	}
	memcpy(c->inbuf + c->inlen, b, take);
	c->inlen += (uint32_t)take;

	if (c->inlen >= 2 && c->inbuf[0] == TLS_HANDSHAKE_RECORD && c->inbuf[1] == TLS_MAJOR_VERSION) {
		/* A TLS ClientHello on the plain port: answer now, in plain text
		 * (the client sees a non-TLS reply and can say so), instead of
		 * waiting for a request head that never comes. */
		c->srv->st.close_http_error++;
		reply(c, 400, TEXT_PLAIN, "Client sent a TLS handshake to a plain HTTP server\n", false);
		return;
	}
	/* Only the new bytes are searched for the end of the head, and the head
	 * is parsed once it is complete: a client dribbling its head byte by
	 * byte must not make the server rescan all of it per byte (quadratic
	 * CPU for one connection). */
	uint64_t *scanned = &c->srv->st.http_head_bytes_scanned;
	size_t end = derp_http_head_scan(c->inbuf, c->inlen, &c->head_from, scanned);
	if (!end && c->inlen < DERP_HTTP_MAX_HEAD)
		return;
	struct derp_http_req req;
	int rc = -EMSGSIZE;
	if (end) {
		*scanned += end; /* the parse reads the head once more */
		rc = derp_http_parse_request(c->inbuf, end, &req);
	}
	if (rc < 0) {
		c->srv->st.close_http_error++;
		if (rc == -EMSGSIZE)
			reply(c, 431, TEXT_PLAIN, "request head too large\n", false);
		else if (rc == -EPROTONOSUPPORT)
			reply(c, 505, TEXT_PLAIN, "HTTP/1.1 only\n", false);
		else
			reply(c, 400, TEXT_PLAIN, "400 Bad Request\n", false);
		return;
	}
	if (strcmp(req.path, "/derp") != 0) {
		serve(c, &req);
		return;
	}
	if (!req.upgrade_derp && !req.upgrade_websocket) {
		c->srv->st.close_http_error++;
		reply(c, 426, TEXT_PLAIN, "DERP requires connection upgrade\n", false);
		return;
	}
	if (req.upgrade_websocket && req.ws_derp_proto) {
		/* DERP over WebSocket (browsers, js/wasm) is not served. */
		c->srv->st.close_http_error++;
		reply(c, 501, TEXT_PLAIN, "DERP over WebSocket is not supported here\n", false);
		return;
	}
	/* Upgrade. Everything after the head is DERP stream data (fast start
	 * sends ClientInfo in the same segment as the request). */
	c->not_ideal = req.ideal_node;
	uint8_t *head = c->inbuf;
	size_t hlen = c->inlen;
	c->inbuf = NULL;
	c->inlen = c->incap = 0;
	c->head_from = 0;
	derp_srv_upgrade(c, req.fast_start);
	derp_conn_feed(c, head + req.header_len, hlen - req.header_len);
	free(head);
	derp_conn_feed(c, b + take, n - take);
}
