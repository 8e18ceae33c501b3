/* lwIP hooks (LWIP_HOOK_FILENAME): included by lwIP's own sources. */
#ifndef SPANZA_NS_HOOKS_H
#define SPANZA_NS_HOOKS_H

#include "lwip/arch.h"
#include "lwip/ip_addr.h"

struct netif;
struct pbuf;

/* Source routing: a packet leaves through the host that owns its source
 * address, never through a route chosen by destination. */
struct netif *ns_hook_route4(const ip4_addr_t *src, const ip4_addr_t *dest);
struct netif *ns_hook_route6(const ip6_addr_t *src, const ip6_addr_t *dest);
/* Strong-host input filter: 1 = dropped (and freed), 0 = let lwIP go on. */
int ns_hook_input(struct pbuf *p, struct netif *inp);
/* 1: tcp_input's tcp_output waits for the end of the receive batch. */
struct tcp_pcb;
int ns_hook_tcp_defer_output(struct tcp_pcb *pcb);
/* RFC 6528 initial sequence numbers. */
u32_t ns_hook_tcp_isn(const ip_addr_t *local_ip, u16_t local_port, const ip_addr_t *remote_ip, u16_t remote_port);

#endif
