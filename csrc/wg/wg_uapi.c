/* The cross-platform configuration protocol (spec section 8), parsed and
 * printed exactly as wireguard-go does, so `wg` works against it. */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wg/wg_internal.h"

#define ERRNO_REPLY_MAX 32 /* "errno=-2147483648\n\n" and a NUL */

/* ---- get ---- */
struct sbuf {
	char *p;
	size_t len, cap;
	bool oom;
};

static void sb_printf(struct sbuf *b, const char *fmt, ...)
{
	for (;;) {
		if (b->oom)
			return;
		va_list ap;
		va_start(ap, fmt);
		int n = vsnprintf(b->p ? b->p + b->len : NULL, b->p ? b->cap - b->len : 0, fmt, ap);
		va_end(ap);
		if (n < 0) {
			b->oom = true;
			return;
		}
		if (b->p && b->len + (size_t)n < b->cap) {
			b->len += (size_t)n;
			return;
		}
		/* Not realloc: the old buffer may hold the private key, and
		 * realloc would free it unwiped. */
		size_t ncap = (b->cap ? b->cap * 2 : 1024) + (size_t)n;
		char *np = malloc(ncap);
		if (!np) {
			b->oom = true;
			return;
		}
		if (b->p) {
			memcpy(np, b->p, b->len);
			spz_wipe(b->p, b->cap);
			free(b->p);
		}
		b->p = np;
		b->cap = ncap;
	}
}

static void sb_key(struct sbuf *b, const char *name, const uint8_t k[WG_KEY_LEN])
{
	char hex[2 * WG_KEY_LEN + 1];
	spz_hex_encode(hex, k, WG_KEY_LEN);
	sb_printf(b, "%s=%s\n", name, hex);
	spz_wipe(hex, sizeof(hex));
}

static void print_allowed_ip(void *ctx, const struct wg_allowed_ip *ip)
{
	char tmp[64];
	wg_format_ip(ip->family, ip->addr, tmp, sizeof(tmp));
	sb_printf(ctx, "allowed_ip=%s/%u\n", tmp, ip->cidr);
}

int wg_uapi_get(wg_device *dev, uint64_t now_ms, char **out, size_t *len)
{
	struct sbuf b = {0};
	char tmp[128];
	(void)now_ms;
	if (dev->has_key)
		sb_key(&b, "private_key", dev->priv);
	if (dev->listen_port)
		sb_printf(&b, "listen_port=%u\n", dev->listen_port);
	if (dev->fwmark)
		sb_printf(&b, "fwmark=%u\n", dev->fwmark);
	for (wg_peer *p = dev->peers_head; p; p = p->list_next) {
		sb_key(&b, "public_key", p->pub);
		sb_key(&b, "preshared_key", p->hs.psk);
		sb_printf(&b, "protocol_version=1\n");
		if (p->endpoint.family != WG_AF_NONE && wg_endpoint_format(&p->endpoint, tmp, sizeof(tmp)) > 0)
			sb_printf(&b, "endpoint=%s\n", tmp);
		sb_printf(&b, "last_handshake_time_sec=%" PRIu64 "\n", p->last_handshake_wall_ns / 1000000000ULL);
		sb_printf(&b, "last_handshake_time_nsec=%" PRIu64 "\n", p->last_handshake_wall_ns % 1000000000ULL);
		sb_printf(&b, "tx_bytes=%" PRIu64 "\n", p->tx_bytes);
		sb_printf(&b, "rx_bytes=%" PRIu64 "\n", p->rx_bytes);
		sb_printf(&b, "persistent_keepalive_interval=%u\n", p->keepalive);
		wg_aip_foreach(p, print_allowed_ip, &b);
	}
	sb_printf(&b, "errno=0\n\n");
	if (b.oom) {
		if (b.p)
			spz_wipe(b.p, b.cap);
		free(b.p);
		return -ENOMEM;
	}
	*out = b.p;
	*len = b.len;
	return 0;
}

void wg_uapi_free(char *p)
{
	if (!p)
		return;
	/* The text may hold private keys. */
	spz_wipe(p, strlen(p));
	free(p);
}

/* ---- set ---- */
struct set_peer {
	wg_peer *peer; /* NULL with dummy */
	bool active;   /* a peer section is open */
	bool dummy;    /* our own key, removed, or update_only on a new peer */
	bool created;
	bool pka_on;
};

static bool is_true(const char *v, size_t n) { return n == 4 && !memcmp(v, "true", 4); }

static bool key_is(const char *k, size_t n, const char *name) { return strlen(name) == n && !memcmp(k, name, n); }

static void peer_done(wg_device *dev, struct set_peer *sp, uint64_t now_ms)
{
	if (sp->active && !sp->dummy && sp->peer) {
		if (sp->pka_on)
			wg_send_keepalive(dev, sp->peer, now_ms);
		wg_send_staged(dev, sp->peer, now_ms);
	}
	memset(sp, 0, sizeof(*sp));
}

static int parse_prefix(const char *v, size_t n, int *family, uint8_t addr[WG_IP6_LEN], int *cidr)
{
	const char *slash = memchr(v, '/', n);
	uint64_t bits;
	if (!slash)
		return -EINVAL;
	size_t blen = (size_t)(v + n - slash - 1);
	/* Like Go's netip.ParsePrefix: a plain decimal, no leading zero. */
	if (blen > 1 && slash[1] == '0')
		return -EINVAL;
	if (wg_parse_uint(slash + 1, blen, 128, &bits) != 0)
		return -EINVAL;
	if (wg_parse_ip(v, (size_t)(slash - v), family, addr) != 0)
		return -EINVAL;
	if (bits > (*family == WG_AF_INET ? 32u : 128u))
		return -EINVAL;
	*cidr = (int)bits;
	return 0;
}

static int device_line(wg_device *dev, uint64_t now_ms, const char *k, size_t kn, const char *v, size_t vn)
{
	uint64_t num;
	if (key_is(k, kn, "private_key")) {
		uint8_t key[WG_KEY_LEN];
		if (spz_hex_decode(key, WG_KEY_LEN, v, vn) != 0)
			return -EINVAL;
		int rc = wg_device_set_private_key(dev, now_ms, key);
		spz_wipe(key, sizeof(key));
		return rc ? -EINVAL : 0;
	}
	if (key_is(k, kn, "listen_port")) {
		if (wg_parse_uint(v, vn, 65535, &num) != 0)
			return -EINVAL;
		if (dev->ops.set_listen_port) {
			int rc = dev->ops.set_listen_port(dev->ops.ctx, (uint16_t)num);
			if (rc < 0)
				return -EADDRINUSE;
			if (rc > 0)
				num = (uint64_t)rc;
		}
		dev->listen_port = (uint16_t)num;
		return 0;
	}
	if (key_is(k, kn, "fwmark")) {
		if (wg_parse_uint(v, vn, UINT32_MAX, &num) != 0)
			return -EINVAL;
		if (dev->ops.set_fwmark && dev->ops.set_fwmark(dev->ops.ctx, (uint32_t)num) < 0)
			return -EADDRINUSE;
		dev->fwmark = (uint32_t)num;
		return 0;
	}
	if (key_is(k, kn, "replace_peers")) {
		if (!is_true(v, vn))
			return -EINVAL;
		wg_peer_remove_all(dev);
		return 0;
	}
	return -EINVAL;
}

static int public_key_line(wg_device *dev, struct set_peer *sp, const char *v, size_t vn)
{
	uint8_t pub[WG_KEY_LEN];
	if (spz_hex_decode(pub, WG_KEY_LEN, v, vn) != 0)
		return -EINVAL;
	sp->active = true;
	/* Our own key: accepted and ignored, with the lines that follow. */
	if (dev->has_key && spz_equal(pub, dev->pub, WG_KEY_LEN)) {
		sp->dummy = true;
		return 0;
	}
	int rc = wg_peer_add(dev, pub, &sp->peer);
	if (rc == -EEXIST)
		return 0;
	if (rc)
		return -EINVAL;
	sp->created = true;
	return 0;
}

static int peer_line(wg_device *dev, struct set_peer *sp, const char *k, size_t kn, const char *v, size_t vn)
{
	wg_peer *p = sp->dummy ? NULL : sp->peer;
	uint64_t num;
	if (key_is(k, kn, "update_only")) {
		if (!is_true(v, vn))
			return -EINVAL;
		if (sp->created && p) {
			wg_peer_remove(dev, p);
			sp->peer = NULL;
			sp->dummy = true;
		}
		return 0;
	}
	if (key_is(k, kn, "remove")) {
		if (!is_true(v, vn))
			return -EINVAL;
		if (p)
			wg_peer_remove(dev, p);
		sp->peer = NULL;
		sp->dummy = true;
		return 0;
	}
	if (key_is(k, kn, "preshared_key")) {
		uint8_t psk[WG_KEY_LEN];
		if (spz_hex_decode(psk, WG_KEY_LEN, v, vn) != 0)
			return -EINVAL;
		if (p)
			wg_peer_set_preshared_key(p, psk);
		spz_wipe(psk, sizeof(psk));
		return 0;
	}
	if (key_is(k, kn, "endpoint")) {
		wg_endpoint ep;
		if (wg_endpoint_parse(v, vn, &ep) != 0)
			return -EINVAL;
		if (p)
			wg_peer_set_endpoint(p, &ep);
		return 0;
	}
	if (key_is(k, kn, "persistent_keepalive_interval")) {
		if (wg_parse_uint(v, vn, 65535, &num) != 0)
			return -EINVAL;
		if (p) {
			uint16_t old = p->keepalive;
			p->keepalive = (uint16_t)num;
			if (!num)
				p->timers.persistent_keepalive = WG_TIMER_OFF;
			/* Turning it on sends a keepalive when the section ends. */
			sp->pka_on = old == 0 && num != 0;
		}
		return 0;
	}
	if (key_is(k, kn, "replace_allowed_ips")) {
		if (!is_true(v, vn))
			return -EINVAL;
		if (p)
			wg_aip_remove_by_peer(&dev->aip, p);
		return 0;
	}
	if (key_is(k, kn, "allowed_ip")) {
		int family, cidr;
		uint8_t addr[WG_IP6_LEN];
		/* "-prefix" removes one prefix (newer wg and wireguard-go). */
		bool remove = vn && v[0] == '-';
		if (parse_prefix(v + remove, vn - remove, &family, addr, &cidr) != 0)
			return -EINVAL;
		if (!p)
			return 0;
		if (remove) {
			wg_aip_remove(&dev->aip, family, addr, cidr, p);
			return 0;
		}
		return wg_aip_insert(&dev->aip, family, addr, cidr, p) == 0 ? 0 : -EINVAL;
	}
	if (key_is(k, kn, "protocol_version"))
		return (vn == 1 && v[0] == '1') ? 0 : -EINVAL;
	return -EINVAL;
}

int wg_uapi_set(wg_device *dev, uint64_t now_ms, const char *text, size_t len)
{
	struct set_peer sp = {0};
	bool device_config = true;
	size_t pos = 0;
	int rc = 0;
	while (pos < len) {
		const char *line = text + pos;
		const char *nl = memchr(line, '\n', len - pos);
		size_t n = nl ? (size_t)(nl - line) : len - pos;
		pos += n + (nl ? 1 : 0);
		if (n == 0)
			break; /* a blank line ends the request */
		const char *eq = memchr(line, '=', n);
		if (!eq) {
			rc = -EPROTO;
			break;
		}
		const char *k = line, *v = eq + 1;
		size_t kn = (size_t)(eq - line), vn = n - kn - 1;
		if (key_is(k, kn, "public_key")) {
			device_config = false;
			peer_done(dev, &sp, now_ms);
			rc = public_key_line(dev, &sp, v, vn);
		} else if (device_config) {
			rc = device_line(dev, now_ms, k, kn, v, vn);
		} else {
			rc = peer_line(dev, &sp, k, kn, v, vn);
		}
		if (rc)
			break;
	}
	/* Like Go: the open peer section is finished (and earlier lines stay
	 * applied) only on success. */
	if (!rc)
		peer_done(dev, &sp, now_ms);
	return rc;
}

/* ---- framing for a socket server ---- */
size_t wg_uapi_request_len(const char *buf, size_t len)
{
	if (len >= 6 && !memcmp(buf, "get=1\n", 6))
		return len >= 7 ? 7 : 0;
	if (len >= 6 && !memcmp(buf, "set=1\n", 6)) {
		/* Ends at the first empty line ("set=1\n\n" has no lines). */
		if (len >= 7 && buf[6] == '\n')
			return 7;
		for (size_t i = 6; i + 1 < len; i++)
			if (buf[i] == '\n' && buf[i + 1] == '\n')
				return i + 2;
		return 0;
	}
	const char *nl = memchr(buf, '\n', len);
	if (nl)
		return (size_t)(nl - buf) + 1;
	return 0;
}

int wg_uapi_request(wg_device *dev, uint64_t now_ms, const char *req, size_t len, char **reply, size_t *reply_len)
{
	*reply = NULL;
	*reply_len = 0;
	int rc;
	if (len >= 7 && !memcmp(req, "get=1\n", 6)) {
		if (req[6] == '\n')
			return wg_uapi_get(dev, now_ms, reply, reply_len);
		rc = -EINVAL; /* trailing character after get=1 */
	} else if (len >= 6 && !memcmp(req, "set=1\n", 6)) {
		rc = wg_uapi_set(dev, now_ms, req + 6, len - 6);
	} else {
		return -EPROTO;
	}
	char *r = malloc(ERRNO_REPLY_MAX);
	if (!r)
		return -ENOMEM;
	int n = snprintf(r, ERRNO_REPLY_MAX, "errno=%d\n\n", rc);
	*reply = r;
	*reply_len = (size_t)n;
	return 0;
}
