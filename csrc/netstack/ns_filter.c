/* Host isolation on one lwIP stack.
 *
 * Input: a host accepts only well-formed packets addressed to one of its own
 * unicast addresses (strong host model); everything else is dropped and
 * counted before lwIP sees it, and again in lwIP's input hooks in case a
 * packet reaches ip_input some other way.
 * Output: packets leave through the host that owns their source address, so
 * replies without a pcb (RSTs, ICMP errors) go back out the netif they came
 * in on, and no packet ever takes a shortcut to another host. */
#include "ns.h"

#include <string.h>

#include "lwip/ip4_addr.h"
#include "lwip/ip6_addr.h"
#include "ns_hooks.h"
#include "trace/trace.h"

static uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }

/* lwIP 2.1.3 reads an IPv6 extension header's length byte before checking
 * that the header is there; walk the chain (up to the first fragment
 * header: what follows is data until reassembly) and refuse truncations. */
static bool v6_ext_ok(const uint8_t *p, size_t tot)
{
	size_t off = 40;
	uint8_t nh = p[6];
	for (int i = 0; i < 16; i++) {
		switch (nh) {
		case 0:  /* hop-by-hop */
		case 43: /* routing */
		case 60: /* destination options */
			if (off + 8 > tot || off + 8 * (1 + (size_t)p[off + 1]) > tot)
				return false;
			nh = p[off];
			off += 8 * (1 + (size_t)p[off + 1]);
			break;
		case 44: /* fragment */ return off + 8 <= tot;
		default: return true;
		}
	}
	return false; /* nobody needs 16 extension headers */
}

enum ns_verdict ns_check_packet(const ns_host_t *h, const uint8_t *p, size_t len, size_t *plen)
{
	if (len < 1)
		return NS_MALFORMED;
	switch (p[0] >> 4) {
	case 4: {
		if (len < 20)
			return NS_MALFORMED;
		size_t ihl = (size_t)(p[0] & 0x0f) * 4, tot = rd16(p + 2);
		if (ihl < 20 || ihl > len || tot < ihl || tot > len)
			return NS_MALFORMED;
		*plen = tot;
		if (!h->has_v4)
			return NS_NOT_OURS;
		uint32_t dst;
		memcpy(&dst, p + 16, 4);
		return dst == ip_2_ip4(&h->v4)->addr ? NS_OK : NS_NOT_OURS;
	}
	case 6: {
		size_t tot = 40 + (size_t)rd16(p + 4);
		if (len < 40 || tot > len || tot > 0xffff) /* pbufs are 16-bit */
			return NS_MALFORMED;
		if (!v6_ext_ok(p, tot))
			return NS_MALFORMED;
		*plen = tot;
		for (int i = 0; i < h->n_v6; i++)
			if (!memcmp(p + 24, ip_2_ip6(&h->v6[i])->addr, 16))
				return NS_OK;
		return NS_NOT_OURS;
	}
	default: return NS_MALFORMED;
	}
}

int ns_hook_input(struct pbuf *p, struct netif *inp)
{
	ns_host_t *h = inp->state;
	/* Our pbufs are contiguous; anything else is not ours to judge. */
	size_t plen;
	enum ns_verdict v = p->len == p->tot_len ? ns_check_packet(h, p->payload, p->len, &plen) : NS_MALFORMED;
	if (v == NS_OK)
		return 0;
	TR_TAP(drop, TR_HOP_NS_IN, TR_OBJ(h), NULL, v == NS_MALFORMED ? TR_R_NS_MALFORMED : TR_R_NS_NOT_OURS, NULL, 0);
	if (v == NS_MALFORMED)
		h->st.drop_malformed++;
	else
		h->st.drop_not_ours++;
	pbuf_free(p);
	return 1;
}

struct netif *ns_hook_route4(const ip4_addr_t *src, const ip4_addr_t *dest)
{
	(void)dest;
	if (!src || ip4_addr_isany(src))
		return NULL;
	for (int i = 0; i < ns_nhosts_hw; i++) {
		ns_host_t *h = ns_hosts[i];
		if (h && h->has_v4 && ip_2_ip4(&h->v4)->addr == src->addr)
			return netif_is_up(&h->netif) ? &h->netif : NULL;
	}
	return NULL;
}

struct netif *ns_hook_route6(const ip6_addr_t *src, const ip6_addr_t *dest)
{
	(void)dest;
	if (!src || ip6_addr_isany(src))
		return NULL;
	for (int i = 0; i < ns_nhosts_hw; i++) {
		ns_host_t *h = ns_hosts[i];
		if (!h)
			continue;
		for (int j = 0; j < h->n_v6; j++)
			if (ip6_addr_cmp_zoneless(src, ip_2_ip6(&h->v6[j])))
				return netif_is_up(&h->netif) ? &h->netif : NULL;
	}
	return NULL;
}
