/* ICMP and ICMPv6 echo from a host: one raw pcb per family per host (bound
 * to the host's address and netif), outstanding requests matched by
 * identifier, sequence number and peer. Echo requests to a host are
 * answered by lwIP itself. */
#include "ns.h"

#include <errno.h>
#include <string.h>

#include "lwip/inet_chksum.h"
#include "lwip/ip.h"
#include "lwip/prot/icmp.h"
#include "lwip/prot/icmp6.h"
#include "lwip/raw.h"

#define PING_MAX_SIZE 65000

static void ping_unlink(struct ns_op *op)
{
	ns_host_t *h = op->obj.host;
	for (struct ns_op **pp = &h->pings; *pp; pp = &(*pp)->next_ping)
		if (*pp == op) {
			*pp = op->next_ping;
			return;
		}
}

static u8_t ping_recv(void *arg, struct raw_pcb *pcb, struct pbuf *p, const ip_addr_t *addr)
{
	(void)pcb;
	ns_host_t *h = arg;
	u16_t hlen = ip_current_header_tot_len();
	uint8_t icmp[8];
	if (p->tot_len < hlen + sizeof(icmp) || pbuf_copy_partial(p, icmp, sizeof(icmp), hlen) != sizeof(icmp))
		return 0;
	bool v6 = IP_IS_V6(addr);
	if (icmp[0] != (v6 ? ICMP6_TYPE_EREP : ICMP_ER) || icmp[1] != 0)
		return 0;
	uint16_t id = (uint16_t)(icmp[4] << 8 | icmp[5]), seq = (uint16_t)(icmp[6] << 8 | icmp[7]);
	if (id != h->ping_id)
		return 0;
	for (struct ns_op *op = h->pings; op; op = op->next_ping) {
		if (op->seq == seq && ip_addr_cmp(&op->peer, addr)) {
			ping_unlink(op);
			ns_op_complete(op, 0, rt_now_ns() - op->t0);
			pbuf_free(p);
			return 1;
		}
	}
	return 0; /* a late or foreign reply: lwIP drops it */
}

static void ping_cancel(struct ns_op *op) { ping_unlink(op); }

static struct raw_pcb *ping_pcb(ns_host_t *h, int family)
{
	int i = family == 6;
	if (h->ping[i])
		return h->ping[i];
	const ip_addr_t *src = ns_host_addr(h, family);
	struct raw_pcb *pcb = raw_new_ip_type(family == 6 ? IPADDR_TYPE_V6 : IPADDR_TYPE_V4,
					      family == 6 ? IP6_NEXTH_ICMP6 : IP_PROTO_ICMP);
	if (!pcb)
		return NULL;
	if (raw_bind(pcb, src) != ERR_OK) {
		raw_remove(pcb);
		return NULL;
	}
	raw_bind_netif(pcb, &h->netif);
	if (family == 6) { /* lwIP fills in the pseudo-header checksum */
		pcb->chksum_reqd = 1;
		pcb->chksum_offset = 2;
	}
	raw_recv(pcb, ping_recv, h);
	if (!h->ping_id)
		h->ping_id = (uint16_t)(LWIP_RAND() | 1);
	h->ping[i] = pcb;
	return pcb;
}

struct ping_call {
	ns_host_t *h;
	const struct ns_addr *dst;
	int size;
	struct ns_op *op;
	int rc;
};

static void ping_on_loop(rt_t *rt, void *arg)
{
	(void)rt;
	struct ping_call *c = arg;
	ns_host_t *h = c->h;
	ip_addr_t dst;
	c->rc = ns_addr_to_ip(c->dst, &dst);
	if (c->rc < 0)
		return;
	if (!ns_host_addr(h, c->dst->family)) {
		c->rc = -EAFNOSUPPORT;
		return;
	}
	struct raw_pcb *pcb = ping_pcb(h, c->dst->family);
	u16_t len = (u16_t)(8 + c->size);
	struct pbuf *p = pcb ? pbuf_alloc(PBUF_IP, len, PBUF_RAM) : NULL;
	struct ns_op *op = p ? ns_op_new(h, NS_OP_PING) : NULL;
	if (!op) {
		if (p)
			pbuf_free(p);
		c->rc = -ENOMEM;
		return;
	}
	uint16_t seq = ++h->ping_seq;
	uint8_t *b = p->payload;
	memset(b, 0, len);
	b[0] = c->dst->family == 6 ? ICMP6_TYPE_EREQ : ICMP_ECHO;
	b[4] = (uint8_t)(h->ping_id >> 8);
	b[5] = (uint8_t)h->ping_id;
	b[6] = (uint8_t)(seq >> 8);
	b[7] = (uint8_t)seq;
	for (int i = 0; i < c->size; i++)
		b[8 + i] = (uint8_t)i;
	if (c->dst->family == 4) {
		u16_t sum = inet_chksum(b, len);
		memcpy(b + 2, &sum, 2);
	}
	op->seq = seq;
	op->peer = dst;
	op->cancel = ping_cancel;
	op->next_ping = h->pings;
	h->pings = op;
	op->t0 = rt_now_ns();
	err_t e = raw_sendto(pcb, p, &dst);
	pbuf_free(p);
	if (e != ERR_OK) {
		ping_unlink(op);
		ns_op_complete(op, ns_err_to_errno(e), 0);
	}
	c->op = op;
	c->rc = 0;
	ns_stack_kick();
}

int ns_ping(ns_host_t *h, const struct ns_addr *dst, int size, ns_op_t **out)
{
	*out = NULL;
	if (size < 0 || size > PING_MAX_SIZE)
		return -EINVAL;
	struct ping_call c = {.h = h, .dst = dst, .size = size, .rc = -ESHUTDOWN};
	int rc = rt_call(h->rt, ping_on_loop, &c);
	if (rc < 0)
		return rc;
	*out = c.op;
	return c.rc;
}
