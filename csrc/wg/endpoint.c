/* Endpoints: text forms (as wireguard-go prints and parses them, plus our
 * "derp:<hex>") and sockaddr conversion. */
#include <arpa/inet.h>
#include <errno.h>
#include <net/if.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wg/wg_internal.h"

/* RFC 5952 text of an IPv6 address (like Go's netip): lowercase, longest
 * run (>= 2) of zero groups as "::", dotted quad only for ::ffff:a.b.c.d. */
static int format_ip6(const uint8_t a[WG_IP6_LEN], char *buf, size_t cap)
{
	static const uint8_t mapped[WG_IP6_LEN - WG_IP4_LEN] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
	if (!memcmp(a, mapped, sizeof(mapped)))
		return snprintf(buf, cap, "::ffff:%u.%u.%u.%u", a[12], a[13], a[14], a[15]);
	uint16_t g[8];
	for (int i = 0; i < 8; i++)
		g[i] = (uint16_t)(a[2 * i] << 8 | a[2 * i + 1]);
	int best = -1, best_len = 0;
	for (int i = 0; i < 8;) {
		if (g[i]) {
			i++;
			continue;
		}
		int j = i;
		while (j < 8 && !g[j])
			j++;
		if (j - i > best_len && j - i >= 2) {
			best = i;
			best_len = j - i;
		}
		i = j;
	}
	size_t n = 0;
	char tmp[48];
	for (int i = 0; i < 8; i++) {
		if (i == best) {
			n += (size_t)snprintf(tmp + n, sizeof(tmp) - n, "::");
			i += best_len - 1;
			continue;
		}
		if (n && tmp[n - 1] != ':')
			tmp[n++] = ':';
		n += (size_t)snprintf(tmp + n, sizeof(tmp) - n, "%x", g[i]);
	}
	tmp[n] = 0;
	return snprintf(buf, cap, "%s", tmp);
}

int wg_format_ip(int family, const uint8_t *addr, char *buf, size_t cap)
{
	if (family == WG_AF_INET)
		return snprintf(buf, cap, "%u.%u.%u.%u", addr[0], addr[1], addr[2], addr[3]);
	if (family == WG_AF_INET6)
		return format_ip6(addr, buf, cap);
	return -EINVAL;
}

int wg_endpoint_format(const wg_endpoint *ep, char *buf, size_t cap)
{
	char ip[64];
	int n;
	switch (ep->family) {
	case WG_AF_INET:
		wg_format_ip(WG_AF_INET, ep->addr, ip, sizeof(ip));
		n = snprintf(buf, cap, "%s:%u", ip, ep->port);
		break;
	case WG_AF_INET6:
		wg_format_ip(WG_AF_INET6, ep->addr, ip, sizeof(ip));
		if (ep->scope_id)
			n = snprintf(buf, cap, "[%s%%%u]:%u", ip, ep->scope_id, ep->port);
		else
			n = snprintf(buf, cap, "[%s]:%u", ip, ep->port);
		break;
	case WG_AF_DERP: {
		char hex[2 * WG_ENDPOINT_ADDR_LEN + 1];
		spz_hex_encode(hex, ep->addr, WG_ENDPOINT_ADDR_LEN);
		n = snprintf(buf, cap, "derp:%s", hex);
		break;
	}
	default: return -EINVAL;
	}
	if (n < 0 || (size_t)n >= cap)
		return -ENOSPC;
	return n;
}

#define UINT64_DIGITS 20 /* 18446744073709551615 */

/* A decimal number without sign or spaces, at most max. */
int wg_parse_uint(const char *s, size_t len, uint64_t max, uint64_t *out)
{
	uint64_t v = 0;
	if (!len || len > UINT64_DIGITS)
		return -EINVAL;
	for (size_t i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -EINVAL;
		uint64_t d = (uint64_t)(s[i] - '0');
		if (v > (UINT64_MAX - d) / 10)
			return -EINVAL;
		v = v * 10 + d;
	}
	if (v > max)
		return -EINVAL;
	*out = v;
	return 0;
}

/* A numeric IPv4 or IPv6 address (no zone). */
int wg_parse_ip(const char *s, size_t len, int *family, uint8_t out[WG_IP6_LEN])
{
	char tmp[64];
	if (!len || len >= sizeof(tmp))
		return -EINVAL;
	memcpy(tmp, s, len);
	tmp[len] = 0;
	memset(out, 0, WG_IP6_LEN);
	if (inet_pton(AF_INET, tmp, out) == 1) {
		*family = WG_AF_INET;
		return 0;
	}
	if (inet_pton(AF_INET6, tmp, out) == 1) {
		*family = WG_AF_INET6;
		return 0;
	}
	return -EINVAL;
}

int wg_endpoint_parse(const char *s, size_t len, wg_endpoint *ep)
{
	memset(ep, 0, sizeof(*ep));
	if (len > 5 && !memcmp(s, "derp:", 5)) {
		if (spz_hex_decode(ep->addr, WG_ENDPOINT_ADDR_LEN, s + 5, len - 5) != 0)
			return -EINVAL;
		ep->family = WG_AF_DERP;
		return 0;
	}
	const char *colon = NULL;
	for (size_t i = len; i > 0; i--)
		if (s[i - 1] == ':') {
			colon = s + i - 1;
			break;
		}
	if (!colon)
		return -EINVAL;
	uint64_t port;
	if (wg_parse_uint(colon + 1, (size_t)(s + len - colon - 1), 65535, &port) != 0)
		return -EINVAL;
	size_t hlen = (size_t)(colon - s);
	int family;
	if (hlen >= 2 && s[0] == '[' && s[hlen - 1] == ']') {
		const char *h = s + 1;
		size_t n = hlen - 2;
		const char *pct = memchr(h, '%', n);
		if (pct) {
			/* Zone: a number or an interface name. */
			char zone[IF_NAMESIZE + 1];
			size_t zl = (size_t)(h + n - pct - 1);
			uint64_t idx;
			if (!zl || zl > IF_NAMESIZE)
				return -EINVAL;
			memcpy(zone, pct + 1, zl);
			zone[zl] = 0;
			if (wg_parse_uint(zone, zl, UINT32_MAX, &idx) != 0) {
				idx = if_nametoindex(zone);
				if (!idx)
					return -EINVAL;
			}
			ep->scope_id = (uint32_t)idx;
			n = (size_t)(pct - h);
		}
		if (wg_parse_ip(h, n, &family, ep->addr) != 0 || family != WG_AF_INET6)
			return -EINVAL;
	} else {
		if (wg_parse_ip(s, hlen, &family, ep->addr) != 0 || family != WG_AF_INET)
			return -EINVAL;
	}
	ep->family = (uint16_t)family;
	ep->port = (uint16_t)port;
	return 0;
}

int wg_endpoint_from_sockaddr(wg_endpoint *ep, const struct sockaddr *sa, socklen_t len)
{
	memset(ep, 0, sizeof(*ep));
	if (sa->sa_family == AF_INET && len >= (socklen_t)sizeof(struct sockaddr_in)) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
		ep->family = WG_AF_INET;
		ep->port = ntohs(in->sin_port);
		memcpy(ep->addr, &in->sin_addr, 4);
		return 0;
	}
	if (sa->sa_family == AF_INET6 && len >= (socklen_t)sizeof(struct sockaddr_in6)) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
		ep->family = WG_AF_INET6;
		ep->port = ntohs(in6->sin6_port);
		ep->scope_id = in6->sin6_scope_id;
		memcpy(ep->addr, &in6->sin6_addr, WG_IP6_LEN);
		return 0;
	}
	return -EAFNOSUPPORT;
}

int wg_endpoint_to_sockaddr(const wg_endpoint *ep, struct sockaddr_storage *ss)
{
	memset(ss, 0, sizeof(*ss));
	if (ep->family == WG_AF_INET) {
		struct sockaddr_in *in = (struct sockaddr_in *)ss;
		in->sin_family = AF_INET;
		in->sin_port = htons(ep->port);
		memcpy(&in->sin_addr, ep->addr, 4);
		return (int)sizeof(*in);
	}
	if (ep->family == WG_AF_INET6) {
		struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons(ep->port);
		in6->sin6_scope_id = ep->scope_id;
		memcpy(&in6->sin6_addr, ep->addr, WG_IP6_LEN);
		return (int)sizeof(*in6);
	}
	return -EAFNOSUPPORT;
}

bool wg_endpoint_equal(const wg_endpoint *a, const wg_endpoint *b)
{
	if (a->family != b->family || a->port != b->port || a->scope_id != b->scope_id)
		return false;
	size_t n = a->family == WG_AF_INET    ? WG_IP4_LEN
		   : a->family == WG_AF_INET6 ? WG_IP6_LEN
		   : a->family == WG_AF_DERP  ? WG_ENDPOINT_ADDR_LEN
					      : 0;
	return !memcmp(a->addr, b->addr, n);
}
