/* Virtual hosts: one lwIP netif each, with its own addresses. Packets the
 * host sends go to its output callback (the device layer, or a memory
 * wire); packets for it come in through ns_host_input. */
#include "ns.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "lwip/ip.h"
#include "lwip/raw.h"
#include "base/log.h"
#include "trace/trace.h"

/* Outgoing packets that lwIP hands over as a pbuf chain are flattened here
 * (loop thread only; packets never exceed the 16-bit IP length). */
static uint8_t out_buf[65536];

#define IN_SLACK 8

void ns_obj_link(ns_host_t *h, struct ns_obj *o, ns_close_fn close)
{
	o->close = close;
	o->host = h;
	o->next = h->objs.next;
	o->prev = &h->objs;
	h->objs.next->prev = o;
	h->objs.next = o;
}

void ns_obj_unlink(struct ns_obj *o)
{
	if (!o->next)
		return;
	o->prev->next = o->next;
	o->next->prev = o->prev;
	o->next = o->prev = NULL;
}

const ip_addr_t *ns_host_addr(ns_host_t *h, int family)
{
	if (family == 4)
		return h->has_v4 ? &h->v4 : NULL;
	return h->n_v6 ? &h->v6[0] : NULL;
}

int ns_host_addrs(ns_host_t *h, const ip_addr_t *out[NS_MAX_ADDRS])
{
	int n = 0;
	if (h->has_v4)
		out[n++] = &h->v4;
	for (int i = 0; i < h->n_v6; i++)
		out[n++] = &h->v6[i];
	return n;
}

bool ns_host_owns(const ns_host_t *h, const ip_addr_t *a)
{
	if (IP_IS_V4(a))
		return h->has_v4 && ip_addr_cmp(a, &h->v4);
	for (int i = 0; i < h->n_v6; i++)
		if (ip_addr_cmp(a, &h->v6[i]))
			return true;
	return false;
}

static err_t emit(ns_host_t *h, struct pbuf *p)
{
	if (p->tot_len > h->netif.mtu) {
		TR_TAP(drop, TR_HOP_NS_OUT, TR_OBJ(h), NULL, TR_R_NS_OVERSIZE, p->payload, p->len);
		h->st.drop_oversize++;
		return ERR_OK;
	}
	const uint8_t *data = p->payload;
	if (p->next) {
		pbuf_copy_partial(p, out_buf, p->tot_len, 0);
		data = out_buf;
	}
	h->st.tx_packets++;
	h->st.tx_bytes += p->tot_len;
	TR_TAP(pkt, TR_HOP_NS_OUT, TR_OBJ(h), NULL, data, p->tot_len);
	h->output(h->ctx, data, p->tot_len);
	return ERR_OK;
}

static err_t out4(struct netif *n, struct pbuf *p, const ip4_addr_t *next_hop)
{
	(void)next_hop;
	return emit(n->state, p);
}

static err_t out6(struct netif *n, struct pbuf *p, const ip6_addr_t *next_hop)
{
	(void)next_hop;
	return emit(n->state, p);
}

static err_t netif_init_cb(struct netif *n)
{
	ns_host_t *h = n->state;
	n->name[0] = 's';
	n->name[1] = 'z';
	n->output = out4;
	n->output_ip6 = out6;
	n->mtu = h->mtu;
	n->flags = 0; /* IP-level link: no ARP, no broadcast, no MLD */
	return ERR_OK;
}

struct pbuf *ns_pbuf_for_input(const uint8_t *ip, size_t len)
{
	if (len > 0xffff - IN_SLACK) /* far beyond any tunnel MTU */
		return NULL;
	/* A few zeroed bytes past the packet: lwIP 2.1.3 has header parsers that
	 * peek a byte or two beyond what they checked, and those reads must stay
	 * inside our buffer (the packet's length is what lwIP goes by). */
	struct pbuf *p = pbuf_alloc(PBUF_RAW, (u16_t)(len + IN_SLACK), PBUF_RAM);
	if (!p)
		return NULL;
	memcpy(p->payload, ip, len);
	memset((uint8_t *)p->payload + len, 0, IN_SLACK);
	p->len = p->tot_len = (u16_t)len;
	return p;
}

static int count_drop(ns_host_t *h, enum ns_verdict v)
{
	TR_TAP(drop, TR_HOP_NS_IN, TR_OBJ(h), NULL, v == NS_MALFORMED ? TR_R_NS_MALFORMED : TR_R_NS_NOT_OURS, NULL, 0);
	if (v == NS_MALFORMED)
		h->st.drop_malformed++;
	else
		h->st.drop_not_ours++;
	return -EINVAL;
}

/* Hands a checked packet to lwIP (which owns p from here). */
static void deliver(ns_host_t *h, struct pbuf *p, size_t plen)
{
	h->st.rx_packets++;
	h->st.rx_bytes += plen;
	if (h->netif.input(p, &h->netif) != ERR_OK)
		pbuf_free(p);
	ns_stack_kick();
}

int ns_host_input_pbuf(ns_host_t *h, struct pbuf *p)
{
	size_t plen = 0;
	TR_TAP(pkt, TR_HOP_NS_IN, TR_OBJ(h), NULL, p->payload, p->len);
	enum ns_verdict v = ns_check_packet(h, p->payload, p->len, &plen);
	if (v != NS_OK) {
		pbuf_free(p);
		return count_drop(h, v);
	}
	p->len = p->tot_len = (u16_t)plen; /* trailing bytes past the IP length */
	deliver(h, p, plen);
	return 0;
}

int ns_host_input(ns_host_t *h, const uint8_t *ip, size_t len)
{
	size_t plen = 0;
	TR_TAP(pkt, TR_HOP_NS_IN, TR_OBJ(h), NULL, ip, len);
	enum ns_verdict v = ns_check_packet(h, ip, len, &plen);
	if (v == NS_OK && plen > 0xffff - IN_SLACK)
		v = NS_MALFORMED;
	if (v != NS_OK)
		return count_drop(h, v);
	struct pbuf *p = ns_pbuf_for_input(ip, plen);
	if (!p) {
		TR_TAP(drop, TR_HOP_NS_IN, TR_OBJ(h), NULL, TR_R_NS_NO_MEMORY, NULL, 0);
		h->st.drop_nomem++;
		return -ENOMEM;
	}
	deliver(h, p, plen);
	return 0;
}

void ns_host_sink(void *host, const uint8_t *ip, size_t len) { ns_host_input(host, ip, len); }

/* ---- creation ---- */

struct host_call {
	rt_t *rt;
	ns_host_t *h;
	int rc;
	const uint8_t *pkt;
	size_t len;
	struct ns_host_stats *st;
};

static bool addr_in_use(const ns_host_t *nh)
{
	for (int i = 0; i < ns_nhosts_hw; i++) {
		const ns_host_t *o = ns_hosts[i];
		if (!o)
			continue;
		if (nh->has_v4 && ns_host_owns(o, &nh->v4))
			return true;
		for (int j = 0; j < nh->n_v6; j++)
			if (ns_host_owns(o, &nh->v6[j]))
				return true;
	}
	return false;
}

static void host_new_on_loop(rt_t *rt, void *arg)
{
	struct host_call *c = arg;
	ns_host_t *h = c->h;
	c->rc = ns_stack_start(rt);
	if (c->rc < 0)
		return;
	if (addr_in_use(h)) {
		c->rc = -EADDRINUSE;
		return;
	}
	int slot = 0;
	while (slot < NS_MAX_HOSTS && ns_hosts[slot])
		slot++;
	if (slot == NS_MAX_HOSTS) { /* ns_stack_acquire counts hosts: cannot happen */
		c->rc = -EUSERS;
		return;
	}
	ip4_addr_t mask;
	ip4_addr_set_u32(&mask, 0);
	if (h->has_v4 && h->v4_prefix)
		ip4_addr_set_u32(&mask, lwip_htonl(0xffffffffu << (32 - h->v4_prefix)));
	if (!netif_add(&h->netif, h->has_v4 ? ip_2_ip4(&h->v4) : NULL, &mask, NULL, h, netif_init_cb, ip_input)) {
		c->rc = -ENOMEM;
		return;
	}
	/* Slot 0 is left for a link-local address by lwIP's convention. */
	for (int i = 0; i < h->n_v6; i++) {
		netif_ip6_addr_set(&h->netif, (s8_t)(i + 1), ip_2_ip6(&h->v6[i]));
		netif_ip6_addr_set_state(&h->netif, (s8_t)(i + 1), IP6_ADDR_PREFERRED);
	}
	netif_set_up(&h->netif);
	netif_set_link_up(&h->netif);
	h->slot = slot;
	ns_hosts[slot] = h;
	if (slot >= ns_nhosts_hw)
		ns_nhosts_hw = slot + 1;
	c->rc = 0;
}

static bool bad_unicast(const struct ns_addr *a)
{
	static const uint8_t zero[16];
	if (a->family == 4) {
		uint8_t b = a->ip[0];
		/* 0/8, loopback, multicast and the broadcast address */
		return b == 0 || b == 127 || b >= 224;
	}
	static const uint8_t loop6[16] = {[15] = 1};
	return !memcmp(a->ip, zero, 16) || !memcmp(a->ip, loop6, 16) || a->ip[0] == 0xff ||
	       (a->ip[0] == 0xfe && (a->ip[1] & 0xc0) == 0x80); /* link-local: no zones here */
}

int ns_host_new(rt_t *rt, const struct ns_addr *addrs, int naddrs, int mtu, ns_packet_fn output, void *ctx,
		ns_host_t **out)
{
	*out = NULL;
	if (!rt || !output || naddrs < 1 || naddrs > NS_MAX_ADDRS || mtu < 576 || mtu > 65535)
		return -EINVAL;
	ns_host_t *h = calloc(1, sizeof(*h));
	if (!h)
		return -ENOMEM;
	h->rt = rt;
	h->output = output;
	h->ctx = ctx;
	h->mtu = (uint16_t)mtu;
	h->objs.next = h->objs.prev = &h->objs;
	for (int i = 0; i < naddrs; i++) {
		const struct ns_addr *a = &addrs[i];
		bool v4 = a->family == 4;
		if ((a->family != 4 && a->family != 6) || a->prefix > (v4 ? 32 : 128) || bad_unicast(a) ||
		    (v4 && h->has_v4) || (!v4 && h->n_v6 == NS_MAX_V6) || (!v4 && mtu < 1280)) {
			free(h);
			return -EINVAL;
		}
		if (v4) {
			ns_addr_to_ip(a, &h->v4);
			h->v4_prefix = a->prefix;
			h->has_v4 = true;
		} else {
			ns_addr_to_ip(a, &h->v6[h->n_v6++]);
		}
	}
	int rc = ns_stack_acquire(rt);
	if (rc < 0) {
		free(h);
		return rc;
	}
	struct host_call c = {.h = h, .rc = -ESHUTDOWN};
	int crc = rt_call(rt, host_new_on_loop, &c);
	if (crc < 0 || c.rc < 0) {
		ns_stack_release();
		free(h);
		return crc < 0 ? crc : c.rc;
	}
	*out = h;
	return 0;
}

static void host_free_on_loop(rt_t *rt, void *arg)
{
	(void)rt;
	ns_host_t *h = arg;
	h->closing = true;
	/* Each close unlinks its object; bounded by the objects present. */
	while (h->objs.next != &h->objs)
		h->objs.next->close(h->objs.next);
	for (int i = 0; i < 2; i++)
		if (h->ping[i])
			raw_remove(h->ping[i]);
	netif_set_down(&h->netif);
	netif_remove(&h->netif); /* aborts lwIP-owned pcbs on our addresses */
	ns_hosts[h->slot] = NULL;
	while (ns_nhosts_hw > 0 && !ns_hosts[ns_nhosts_hw - 1])
		ns_nhosts_hw--;
	ns_stack_kick();
}

void ns_host_free(ns_host_t *h)
{
	if (!h)
		return;
	if (rt_call(h->rt, host_free_on_loop, h) < 0) {
		/* The runtime stopped first: lwIP still lists the netif, so the
		 * memory must stay. Close hosts before their runtime. */
		spz_log(SPZ_LOG_WARNING, "netstack", "host freed after its runtime stopped: leaked");
		ns_stack_release();
		return;
	}
	ns_stack_release();
	free(h);
}

static void inject_on_loop(rt_t *rt, void *arg)
{
	(void)rt;
	struct host_call *c = arg;
	c->rc = ns_host_input(c->h, c->pkt, c->len);
}

int ns_host_inject(ns_host_t *h, const uint8_t *ip, size_t len)
{
	if (len > 65535)
		return -EMSGSIZE;
	struct host_call c = {.h = h, .pkt = ip, .len = len, .rc = -ESHUTDOWN};
	int rc = rt_call(h->rt, inject_on_loop, &c);
	return rc < 0 ? rc : c.rc;
}

static void stats_on_loop(rt_t *rt, void *arg)
{
	(void)rt;
	struct host_call *c = arg;
	*c->st = c->h->st;
	c->rc = 0;
}

int ns_host_get_stats(ns_host_t *h, struct ns_host_stats *out)
{
	struct host_call c = {.h = h, .st = out, .rc = -ESHUTDOWN};
	int rc = rt_call(h->rt, stats_on_loop, &c);
	return rc < 0 ? rc : c.rc;
}
