/* DERP client protocol (sans-IO): HTTP 101, handshake, frame dispatch.
 * Malformed input either drops one frame (short frames, as Go's client
 * does: counted in bad_frames) or fails the connection (spec §13). */
#include "derp/client_proto.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <sodium.h>

#include "trace/trace.h"

void derp_cp_init(struct derp_cproto *cp, const uint8_t priv[32], const uint8_t pub[32],
		  const uint8_t *expected_server_key)
{
	memset(cp, 0, sizeof(*cp));
	cp->phase = DERP_CP_HTTP;
	memcpy(cp->priv, priv, 32);
	memcpy(cp->pub, pub, 32);
	if (expected_server_key) {
		cp->has_expected_key = true;
		memcpy(cp->expected_key, expected_server_key, 32);
	}
	derp_parser_init(&cp->parser, DERP_ROLE_CLIENT);
}

void derp_cp_set_mesh(struct derp_cproto *cp, const uint8_t mesh_key[32])
{
	cp->has_mesh_key = true;
	memcpy(cp->mesh_key, mesh_key, 32);
}

void derp_cp_free(struct derp_cproto *cp)
{
	derp_parser_free(&cp->parser);
	sodium_memzero(cp->priv, sizeof(cp->priv));
	sodium_memzero(cp->mesh_key, sizeof(cp->mesh_key));
}

#if defined(__GNUC__)
__attribute__((format(printf, 3, 4)))
#endif
static int
fail(struct derp_cproto *cp, int rc, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(cp->err, sizeof(cp->err), fmt, ap);
	va_end(ap);
	cp->phase = DERP_CP_FAILED;
	return rc;
}

/* ServerKey (the first frame) -> send ClientInfo. */
static int on_server_key(struct derp_cproto *cp, const struct derp_frame *f, const struct derp_cp_ops *ops, void *arg)
{
	const uint8_t *spub;
	if (f->type != DERP_FRAME_SERVER_KEY || !f->data || derp_dec_server_key(f->data, f->len, &spub) < 0)
		return fail(cp, -EPROTO, "invalid server greeting (frame type 0x%02x, %u bytes)", f->type, f->len);
	if (derp_key_is_zero(spub))
		return fail(cp, -EPROTO, "server sent an all-zero key");
	if (cp->has_expected_key && !derp_key_equal(spub, cp->expected_key))
		return fail(cp, -EPROTO, "server key does not match the expected key");
	if (cp->has_mesh_key && derp_key_equal(spub, cp->pub))
		return fail(cp, -ELOOP, "the server's key is our own: a mesh link to this server");
	memcpy(cp->server_pub, spub, 32);
	struct derp_client_info ci = {.version = DERP_PROTOCOL_VERSION, .can_ack_pings = !cp->has_mesh_key};
	if (cp->has_mesh_key) {
		ci.has_mesh_key = true;
		memcpy(ci.mesh_key, cp->mesh_key, 32);
	}
	uint8_t buf[512];
	int n = derp_enc_client_info(buf, sizeof(buf), cp->priv, cp->pub, cp->server_pub, &ci);
	sodium_memzero(&ci, sizeof(ci));
	if (n < 0)
		return fail(cp, -EPROTO, "cannot seal ClientInfo to the server key (invalid point?)");
	cp->phase = DERP_CP_SERVER_INFO;
	int rc = ops->write(arg, buf, (size_t)n);
	if (rc < 0)
		return fail(cp, rc, "cannot send ClientInfo");
	if (cp->has_mesh_key) {
		uint8_t watch[DERP_HDR_LEN];
		derp_enc_watch_conns(watch, sizeof(watch));
		if ((rc = ops->write(arg, watch, sizeof(watch))) < 0)
			return fail(cp, rc, "cannot send WatchConns");
	}
	return 0;
}

static void emit(struct derp_cproto *cp, const struct derp_cp_ops *ops, void *arg, struct derp_client_event *ev)
{
	(void)cp;
	if (ops->event)
		ops->event(arg, ev);
}

/* A frame that does not decode is counted and skipped, as Go's client
 * skips what it cannot parse: the connection goes on. */
static int bad_frame(struct derp_cproto *cp)
{
	cp->n.bad_frames++;
	return 0;
}

static int on_frame(struct derp_cproto *cp, const struct derp_frame *f, const struct derp_cp_ops *ops, void *arg)
{
	if (cp->phase == DERP_CP_SERVER_KEY)
		return on_server_key(cp, f, ops, arg);
	if (f->skipped || !f->data) {
		/* Unknown types (and, defensively, anything the codec skipped). */
		if (f->type != DERP_FRAME_KEEP_ALIVE)
			cp->n.unknown_frames++;
		else
			cp->n.keepalives++;
		return 0;
	}
	if (f->type != DERP_FRAME_RECV_PACKET) /* packets: the client's own tap (cp_packet) */
		TR_TAP(derp, TR_HOP_DC_RX, tr_key_id(cp->pub), NULL, f->type, NULL, f->data, f->len);
	struct derp_client_event ev = {0};
	switch (f->type) {
	case DERP_FRAME_SERVER_KEY: return 0; /* Go ignores a ServerKey after the handshake (fast start). */
	case DERP_FRAME_SERVER_INFO: {
		struct derp_server_info si = {0};
		if (derp_dec_server_info(f->data, f->len, cp->priv, cp->server_pub, &si) < 0)
			return fail(cp, -EBADMSG, "invalid ServerInfo (%u bytes): box or JSON does not open", f->len);
		cp->si = si;
		if (cp->phase == DERP_CP_SERVER_INFO) {
			cp->phase = DERP_CP_RUN;
			if (ops->connected)
				ops->connected(arg, cp->server_pub, &cp->si);
		}
		return 0;
	}
	case DERP_FRAME_RECV_PACKET: {
		struct derp_pkt_view v;
		if (derp_dec_recv_packet(f->data, f->len, &v) < 0 || v.len > DERP_MAX_PACKET)
			return bad_frame(cp);
		if (ops->packet)
			ops->packet(arg, v.key, v.data, v.len);
		return 0;
	}
	case DERP_FRAME_KEEP_ALIVE: cp->n.keepalives++; return 0;
	case DERP_FRAME_PEER_GONE: {
		const uint8_t *peer;
		if (derp_dec_peer_gone(f->data, f->len, &peer, &ev.reason) < 0)
			return bad_frame(cp);
		ev.type = DERP_EV_PEER_GONE;
		memcpy(ev.key, peer, 32);
		emit(cp, ops, arg, &ev);
		return 0;
	}
	case DERP_FRAME_PEER_PRESENT: {
		const uint8_t *peer;
		if (derp_dec_peer_present(f->data, f->len, &peer, ev.ip, &ev.port, &ev.flags) < 0)
			return bad_frame(cp);
		ev.type = DERP_EV_PEER_PRESENT;
		memcpy(ev.key, peer, 32);
		emit(cp, ops, arg, &ev);
		return 0;
	}
	case DERP_FRAME_HEALTH: {
		char text[DERP_CP_HEALTH_MAX + 1];
		size_t n = f->len < DERP_CP_HEALTH_MAX ? f->len : DERP_CP_HEALTH_MAX;
		memcpy(text, f->data, n);
		text[n] = 0;
		/* Text stops at an embedded NUL: callers get a C string. */
		ev.type = DERP_EV_HEALTH;
		ev.text = text;
		ev.text_len = strlen(text);
		emit(cp, ops, arg, &ev);
		return 0;
	}
	case DERP_FRAME_RESTARTING:
		if (derp_dec_restarting(f->data, f->len, &ev.reconnect_in_ms, &ev.try_for_ms) < 0)
			return bad_frame(cp);
		ev.type = DERP_EV_RESTARTING;
		emit(cp, ops, arg, &ev);
		return 0;
	case DERP_FRAME_PING: {
		const uint8_t *data;
		if (derp_dec_ping(f->data, f->len, &data) < 0)
			return bad_frame(cp);
		uint8_t pong[DERP_HDR_LEN + DERP_PING_LEN];
		size_t n = derp_enc_pong(pong, sizeof(pong), data);
		cp->n.pings_recv++;
		int rc = ops->write(arg, pong, n);
		if (rc < 0)
			return fail(cp, rc, "cannot send Pong");
		return 0;
	}
	case DERP_FRAME_PONG: {
		const uint8_t *data;
		if (derp_dec_ping(f->data, f->len, &data) < 0)
			return bad_frame(cp);
		ev.type = DERP_EV_PONG;
		memcpy(ev.ping, data, 8);
		emit(cp, ops, arg, &ev);
		return 0;
	}
	default: cp->n.unknown_frames++; return 0;
	}
}

/* Accumulates the response head; returns bytes of `in` that belong to it,
 * 0 with phase unchanged if more are needed, or a negative error. */
static int http_input(struct derp_cproto *cp, const uint8_t *in, size_t len, size_t *used)
{
	size_t room = sizeof(cp->http) - cp->http_len;
	size_t take = len < room ? len : room;
	memcpy(cp->http + cp->http_len, in, take);
	/* Parse only once the blank line is in: a server dribbling bytes must
	 * not make us rescan the head for each one. */
	size_t from = cp->http_len > 3 ? cp->http_len - 3 : 0;
	bool blank = memmem(cp->http + from, cp->http_len + take - from, "\n\r\n", 3) ||
		     memmem(cp->http + from, cp->http_len + take - from, "\n\n", 2); /* bare LF, as Go allows */
	struct derp_http_resp r;
	int rc = blank ? derp_http_parse_response((const uint8_t *)cp->http, cp->http_len + take, &r) : 0;
	size_t have = cp->http_len + take;
	if (have >= 2 && (cp->http[0] == 0x15 || cp->http[0] == 0x16) && cp->http[1] == 0x03)
		return fail(cp, -EPROTO, "the server answered in TLS: it is a TLS relay, use https://");
	if (rc == 0 && have >= 12 && memcmp(cp->http, "HTTP/1.", 7) != 0)
		rc = -EBADMSG; /* not an HTTP response at all: no need to wait for more */
	if (rc == 0) {
		cp->http_len += take;
		*used = take;
		if (cp->http_len >= sizeof(cp->http))
			return fail(cp, -EPROTO, "HTTP response head longer than %zu bytes", sizeof(cp->http));
		return 0;
	}
	if (rc < 0)
		return fail(cp, -EPROTO, "malformed HTTP response to the upgrade request");
	cp->http_status = r.status;
	if (r.status != 101)
		return fail(cp, -EPROTO, "server answered HTTP %d instead of 101 Switching Protocols (%s)", r.status,
			    memmem(cp->http, have, "HTTPS server", 12) ? "a TLS relay: use https://"
								       : "is the URL a DERP server?");
	if (r.header_len < cp->http_len || r.header_len > cp->http_len + take)
		return fail(cp, -EPROTO, "malformed HTTP response to the upgrade request");
	*used = r.header_len - cp->http_len;
	cp->http_len = r.header_len;
	cp->phase = DERP_CP_SERVER_KEY;
	return 0;
}

int derp_cp_input(struct derp_cproto *cp, const uint8_t *in, size_t len, const struct derp_cp_ops *ops, void *arg)
{
	if (cp->phase == DERP_CP_FAILED)
		return -EPROTO;
	while (len > 0 && !cp->halt) {
		size_t used = 0;
		if (cp->phase == DERP_CP_HTTP) {
			int rc = http_input(cp, in, len, &used);
			if (rc < 0)
				return rc;
			in += used;
			len -= used;
			continue;
		}
		struct derp_frame f;
		int rc = derp_parser_feed(&cp->parser, in, len, &used, &f);
		in += used;
		len -= used;
		if (rc == -EMSGSIZE)
			return fail(cp, rc, "frame type 0x%02x of %u bytes is over the 1 MiB limit", f.type, f.len);
		if (rc < 0)
			return fail(cp, rc == -ENOMEM ? -ENOMEM : -EPROTO, "malformed frame stream (%d)", rc);
		if (rc == 0)
			continue; /* everything consumed; loop ends */
		rc = on_frame(cp, &f, ops, arg);
		if (rc < 0)
			return rc;
	}
	return 0;
}

/* ---- URLs ---- */

#if defined(__GNUC__)
__attribute__((format(printf, 3, 4)))
#endif
static int
url_err(char *err, size_t errlen, const char *fmt, ...)
{
	if (err && errlen) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return -EINVAL;
}

static bool host_char_ok(char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '-' ||
	       ch == '.' || ch == '_';
}

int derp_url_parse(const char *url, struct derp_url *u, char *err, size_t errlen)
{
	memset(u, 0, sizeof(*u));
	if (!url)
		return url_err(err, errlen, "no URL");
	const char *p;
	if (strncasecmp(url, "https://", 8) == 0) {
		u->tls = true;
		u->port = 443;
		p = url + 8;
	} else if (strncasecmp(url, "http://", 7) == 0) {
		u->port = 80;
		p = url + 7;
	} else {
		return url_err(err, errlen, "URL %.80s: must start with http:// or https://", url);
	}
	const char *end = p + strcspn(p, "/?#");
	size_t alen = (size_t)(end - p);
	if (alen == 0 || alen >= sizeof(u->host_header))
		return url_err(err, errlen, "URL %.80s: missing or too long host", url);
	if (memchr(p, '@', alen))
		return url_err(err, errlen, "URL %.80s: user info is not supported", url);
	memcpy(u->host_header, p, alen);
	u->host_header[alen] = 0;
	const char *hs = p, *he, *portp = NULL;
	if (*p == '[') {
		const char *rb = memchr(p, ']', alen);
		if (!rb)
			return url_err(err, errlen, "URL %.80s: unclosed [ in host", url);
		hs = p + 1;
		he = rb;
		if (rb + 1 < end) {
			if (rb[1] != ':')
				return url_err(err, errlen, "URL %.80s: junk after ]", url);
			portp = rb + 2;
		}
	} else {
		const char *colon = memchr(p, ':', alen);
		he = colon ? colon : end;
		if (colon)
			portp = colon + 1;
	}
	size_t hlen = (size_t)(he - hs);
	if (hlen == 0 || hlen >= sizeof(u->host))
		return url_err(err, errlen, "URL %.80s: bad host", url);
	memcpy(u->host, hs, hlen);
	u->host[hlen] = 0;
	if (portp) {
		unsigned long port = 0;
		if (portp == end)
			return url_err(err, errlen, "URL %.80s: empty port", url);
		for (const char *q = portp; q < end; q++) {
			if (*q < '0' || *q > '9' || port > 65535)
				return url_err(err, errlen, "URL %.80s: bad port", url);
			port = port * 10 + (unsigned long)(*q - '0');
		}
		if (port == 0 || port > 65535)
			return url_err(err, errlen, "URL %.80s: port out of range", url);
		u->port = (uint16_t)port;
	}
	struct in6_addr a6;
	struct in_addr a4;
	if (inet_pton(AF_INET6, u->host, &a6) == 1 || inet_pton(AF_INET, u->host, &a4) == 1) {
		u->host_is_ip = true;
		if (*p != '[' && strchr(u->host, ':'))
			return url_err(err, errlen, "URL %.80s: IPv6 addresses go in brackets", url);
	} else {
		if (*p == '[')
			return url_err(err, errlen, "URL %.80s: [..] must hold an IPv6 address", url);
		for (const char *q = u->host; *q; q++)
			if (!host_char_ok(*q))
				return url_err(err, errlen, "URL %.80s: bad character in host name", url);
	}
	/* Path: DERP lives at /derp (Go always requests the URL's path, which
	 * for DERP servers is /derp). Query and fragment are not allowed. */
	if (*end && strcmp(end, "/derp") != 0 && strcmp(end, "/") != 0)
		return url_err(err, errlen, "URL %.80s: path must be /derp", url);
	return 0;
}
