/* HTTP/1.1 heads for the DERP upgrade: strict, bounded parsing. */
#include "derp/http.h"
#include "crypto/crypto.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

/* The end of the head ("\r\n\r\n", or a bare "\n\n" as Go also
 * tolerates) among the line feeds at b[from..len): the head length
 * including the terminator, or 0. */
static size_t head_end_from(const uint8_t *b, size_t len, size_t from)
{
	for (size_t i = from; i < len; i++) {
		if (b[i] != '\n')
			continue;
		if (i + 1 < len && b[i + 1] == '\n')
			return i + 2;
		if (i + 2 < len && b[i + 1] == '\r' && b[i + 2] == '\n')
			return i + 3;
	}
	return 0;
}

static size_t head_end(const uint8_t *b, size_t len) { return head_end_from(b, len, 0); }

size_t derp_http_head_scan(const uint8_t *buf, size_t len, size_t *from, uint64_t *examined)
{
	size_t start = *from < len ? *from : len;
	size_t end = head_end_from(buf, len, start);
	*examined += (end ? end : len) - start;
	/* A terminator can only have begun at the last two bytes: every line
	 * feed before them was judged with its followers in view. */
	if (!end)
		*from = len > 2 ? len - 2 : 0;
	return end;
}

/* Token chars (RFC 9110) for header names and methods. */
static bool is_tchar(uint8_t c)
{
	if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
		return true;
	return c && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

struct line {
	const uint8_t *p;
	size_t n;
};

/* Next line of the head (without CR LF); false at the end. */
static bool next_line(const uint8_t *b, size_t end, size_t *pos, struct line *l)
{
	if (*pos >= end)
		return false;
	size_t s = *pos, e = s;
	while (e < end && b[e] != '\n')
		e++;
	if (e >= end)
		return false;
	*pos = e + 1;
	if (e > s && b[e - 1] == '\r')
		e--;
	l->p = b + s;
	l->n = e - s;
	return true;
}

static void trim(const uint8_t **p, size_t *n)
{
	while (*n && (**p == ' ' || **p == '\t')) {
		(*p)++;
		(*n)--;
	}
	while (*n && ((*p)[*n - 1] == ' ' || (*p)[*n - 1] == '\t'))
		(*n)--;
}

static bool eq_ci(const uint8_t *p, size_t n, const char *s)
{
	return strlen(s) == n && strncasecmp((const char *)p, s, n) == 0;
}

static void copy_str(char *dst, size_t cap, const uint8_t *p, size_t n)
{
	if (n >= cap)
		n = cap - 1;
	memcpy(dst, p, n);
	dst[n] = 0;
}

/* Splits "Name: value"; false when malformed (no colon, bad name, controls). */
static bool split_header(struct line l, const uint8_t **name, size_t *nn, const uint8_t **val, size_t *vn)
{
	size_t i = 0;
	while (i < l.n && is_tchar(l.p[i]))
		i++;
	if (i == 0 || i >= l.n || l.p[i] != ':')
		return false;
	for (size_t k = i + 1; k < l.n; k++)
		if ((l.p[k] < 0x20 && l.p[k] != '\t') || l.p[k] == 0x7f)
			return false;
	*name = l.p;
	*nn = i;
	*val = l.p + i + 1;
	*vn = l.n - i - 1;
	trim(val, vn);
	return true;
}

/* True if a comma-separated list value contains token (case-insensitive). */
static bool list_has(const uint8_t *v, size_t n, const char *token)
{
	size_t i = 0;
	while (i < n) {
		size_t s = i;
		while (i < n && v[i] != ',')
			i++;
		const uint8_t *t = v + s;
		size_t tn = i - s;
		trim(&t, &tn);
		if (eq_ci(t, tn, token))
			return true;
		i++;
	}
	return false;
}

static bool valid_challenge(const uint8_t *v, size_t n)
{
	if (n > DERP_HTTP_MAX_CHALLENGE)
		return false;
	for (size_t i = 0; i < n; i++) {
		uint8_t c = v[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
		      c == '_' || c == ':' || c == '-'))
			return false;
	}
	return true;
}

/* Finds the end of the head in buf (*end) and reads its first line (*l,
 * *pos after it). 1: found; 0: the head is incomplete; -EMSGSIZE: it is
 * longer than DERP_HTTP_MAX_HEAD; -EBADMSG: no first line. */
static int head_start(const uint8_t *buf, size_t len, size_t *end, size_t *pos, struct line *l)
{
	*end = head_end(buf, len < DERP_HTTP_MAX_HEAD ? len : DERP_HTTP_MAX_HEAD);
	if (!*end)
		return len >= DERP_HTTP_MAX_HEAD ? -EMSGSIZE : 0;
	*pos = 0;
	return next_line(buf, *end, pos, l) ? 1 : -EBADMSG;
}

/* "HTTP/1.x" -> minor, or -1. */
static int http_version(const uint8_t *p, size_t n)
{
	if (n != 8 || memcmp(p, "HTTP/1.", 7) != 0 || p[7] < '0' || p[7] > '9')
		return -1;
	return p[7] - '0';
}

int derp_http_parse_request(const uint8_t *buf, size_t len, struct derp_http_req *req)
{
	memset(req, 0, sizeof(*req));
	size_t end, pos;
	struct line l;
	int rc = head_start(buf, len, &end, &pos, &l);
	if (rc <= 0)
		return rc;
	/* Request line: METHOD SP target SP HTTP/1.x */
	size_t i = 0;
	while (i < l.n && is_tchar(l.p[i]))
		i++;
	if (i == 0 || i >= sizeof(req->method) || i >= l.n || l.p[i] != ' ')
		return -EBADMSG;
	copy_str(req->method, sizeof(req->method), l.p, i);
	size_t ts = ++i;
	while (i < l.n && l.p[i] != ' ')
		i++;
	if (i == ts || i >= l.n)
		return -EBADMSG;
	const uint8_t *target = l.p + ts;
	size_t tn = i - ts;
	for (size_t k = 0; k < tn; k++)
		if (target[k] <= 0x20 || target[k] >= 0x7f)
			return -EBADMSG;
	int minor = http_version(l.p + i + 1, l.n - i - 1);
	if (minor < 0) {
		if (l.n - i - 1 >= 5 && memcmp(l.p + i + 1, "HTTP/", 5) == 0)
			return -EPROTONOSUPPORT;
		return -EBADMSG;
	}
	req->minor = minor;
	/* Absolute-form targets: keep the path part. */
	size_t skip = 0;
	if (tn >= 7 && !strncasecmp((const char *)target, "http://", 7))
		skip = 7;
	else if (tn >= 8 && !strncasecmp((const char *)target, "https://", 8))
		skip = 8;
	if (skip) {
		const uint8_t *slash = memchr(target + skip, '/', tn - skip);
		if (!slash) {
			target = (const uint8_t *)"/";
			tn = 1;
		} else {
			tn -= (size_t)(slash - target);
			target = slash;
		}
	}
	const uint8_t *q = memchr(target, '?', tn);
	size_t pn = q ? (size_t)(q - target) : tn;
	if (pn >= sizeof(req->path))
		return -EBADMSG;
	copy_str(req->path, sizeof(req->path), target, pn);

	while (next_line(buf, end, &pos, &l)) {
		if (l.n == 0)
			break;
		const uint8_t *name, *val;
		size_t nn, vn;
		if (l.p[0] == ' ' || l.p[0] == '\t')
			return -EBADMSG; /* obsolete line folding: refused as Go does */
		if (!split_header(l, &name, &nn, &val, &vn))
			return -EBADMSG;
		if (eq_ci(name, nn, "Upgrade")) {
			req->has_upgrade = true;
			if (eq_ci(val, vn, "derp"))
				req->upgrade_derp = true;
			else if (eq_ci(val, vn, "websocket"))
				req->upgrade_websocket = true;
		} else if (eq_ci(name, nn, "Host")) {
			copy_str(req->host, sizeof(req->host), val, vn);
		} else if (eq_ci(name, nn, "Derp-Fast-Start")) {
			req->fast_start = vn == 1 && val[0] == '1';
		} else if (eq_ci(name, nn, "Ideal-Node")) {
			req->ideal_node = req->ideal_node || vn > 0;
		} else if (eq_ci(name, nn, "Sec-WebSocket-Protocol")) {
			req->ws_derp_proto = req->ws_derp_proto || list_has(val, vn, "derp");
		} else if (eq_ci(name, nn, "X-Tailscale-Challenge")) {
			if (!req->has_challenge && valid_challenge(val, vn)) {
				req->has_challenge = true;
				copy_str(req->challenge, sizeof(req->challenge), val, vn);
			}
		}
	}
	req->header_len = end;
	return 1;
}

int derp_http_parse_response(const uint8_t *buf, size_t len, struct derp_http_resp *resp)
{
	memset(resp, 0, sizeof(*resp));
	size_t end, pos;
	struct line l;
	int rc = head_start(buf, len, &end, &pos, &l);
	if (rc <= 0)
		return rc;
	/* Status line: HTTP/1.x SP 3DIGIT [SP reason] */
	if (l.n < 12 || l.p[8] != ' ')
		return -EBADMSG;
	int minor = http_version(l.p, 8);
	if (minor < 0)
		return memcmp(l.p, "HTTP/", 5) == 0 ? -EPROTONOSUPPORT : -EBADMSG;
	resp->minor = minor;
	for (int k = 9; k < 12; k++)
		if (l.p[k] < '0' || l.p[k] > '9')
			return -EBADMSG;
	if (l.n > 12 && l.p[12] != ' ')
		return -EBADMSG;
	resp->status = (l.p[9] - '0') * 100 + (l.p[10] - '0') * 10 + (l.p[11] - '0');
	if (resp->status < 100)
		return -EBADMSG;
	while (next_line(buf, end, &pos, &l)) {
		if (l.n == 0)
			break;
		const uint8_t *name, *val;
		size_t nn, vn;
		if (!split_header(l, &name, &nn, &val, &vn))
			return -EBADMSG;
		if (eq_ci(name, nn, "Upgrade")) {
			resp->upgrade_derp = eq_ci(val, vn, "derp");
		} else if (eq_ci(name, nn, "Content-Length")) {
			uint64_t v = 0;
			if (vn == 0 || vn > 18)
				return -EBADMSG;
			for (size_t k = 0; k < vn; k++) {
				if (val[k] < '0' || val[k] > '9')
					return -EBADMSG;
				v = v * 10 + (uint64_t)(val[k] - '0');
			}
			if (resp->has_content_length && resp->content_length != v)
				return -EBADMSG;
			resp->has_content_length = true;
			resp->content_length = v;
		} else if (eq_ci(name, nn, "Transfer-Encoding")) {
			resp->chunked = list_has(val, vn, "chunked");
		} else if (eq_ci(name, nn, "Derp-Public-Key")) {
			resp->has_public_key = spz_hex_decode(resp->public_key, 32, (const char *)val, vn) == 0;
		}
	}
	resp->header_len = end;
	return 1;
}

size_t derp_http_upgrade_request(char *out, size_t cap, const char *host, bool fast_start, const char *ideal_node)
{
	/* Header keys after User-Agent in sorted order, as Go writes them. */
	int n = snprintf(out, cap,
			 "GET /derp HTTP/1.1\r\n"
			 "Host: %s\r\n"
			 "User-Agent: Go-http-client/1.1\r\n"
			 "Connection: Upgrade\r\n"
			 "%s"
			 "%s%s%s"
			 "Upgrade: DERP\r\n"
			 "\r\n",
			 host, fast_start ? "Derp-Fast-Start: 1\r\n" : "",
			 ideal_node && *ideal_node ? "Ideal-Node: " : "", ideal_node && *ideal_node ? ideal_node : "",
			 ideal_node && *ideal_node ? "\r\n" : "");
	if (n < 0 || (size_t)n >= cap)
		return 0;
	/* Refuse header injection through host/ideal_node. */
	for (const char *p = host; *p; p++)
		if ((unsigned char)*p < 0x21 || *p == 0x7f)
			return 0;
	for (const char *p = ideal_node ? ideal_node : ""; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			return 0;
	return (size_t)n;
}

size_t derp_http_101(char *out, size_t cap, const uint8_t server_pub[32])
{
	static const char d[] = "0123456789abcdef";
	char hex[65];
	for (int i = 0; i < 32; i++) {
		hex[2 * i] = d[server_pub[i] >> 4];
		hex[2 * i + 1] = d[server_pub[i] & 15];
	}
	hex[64] = 0;
	int n = snprintf(out, cap,
			 "HTTP/1.1 101 Switching Protocols\r\n"
			 "Upgrade: DERP\r\n"
			 "Connection: Upgrade\r\n"
			 "Derp-Version: 2\r\n"
			 "Derp-Public-Key: %s\r\n"
			 "\r\n",
			 hex);
	return n < 0 || (size_t)n >= cap ? 0 : (size_t)n;
}

const char *derp_http_reason(int status)
{
	switch (status) {
	case 101: return "Switching Protocols";
	case 200: return "OK";
	case 204: return "No Content";
	case 302: return "Found";
	case 400: return "Bad Request";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 408: return "Request Timeout";
	case 426: return "Upgrade Required";
	case 431: return "Request Header Fields Too Large";
	case 500: return "Internal Server Error";
	case 501: return "Not Implemented";
	case 503: return "Service Unavailable";
	case 505: return "HTTP Version Not Supported";
	default: return "Unknown";
	}
}

size_t derp_http_response(char *out, size_t cap, int status, const char *extra_headers, const char *body,
			  size_t body_len, bool head_only)
{
	char clen[48] = "";
	/* 1xx and 204 carry no Content-Length (RFC 9110 §8.6). */
	if (status >= 200 && status != 204)
		snprintf(clen, sizeof(clen), "Content-Length: %zu\r\n", body_len);
	else
		body_len = 0;
	int n = snprintf(out, cap,
			 "HTTP/1.1 %d %s\r\n"
			 "%s"
			 "%s"
			 "Connection: close\r\n"
			 "\r\n",
			 status, derp_http_reason(status), extra_headers ? extra_headers : "", clen);
	if (n < 0 || (size_t)n >= cap)
		return 0;
	size_t o = (size_t)n;
	if (head_only || !body_len)
		return o;
	if (body_len > cap - o)
		return 0;
	memcpy(out + o, body, body_len);
	return o + body_len;
}
