/* lwIP options for Spanza's netstack: one stack per process, driven by one
 * runtime's loop thread (NO_SYS=1, no locks), IP-level netifs only (one per
 * virtual host, fed by WireGuard), no loopback, no forwarding, hooks that
 * keep each host's traffic on its own netif, and TCP windows of 1 MiB with
 * window scaling. See shared/spec/lwip.md for the measurements behind them. */
#ifndef SPANZA_LWIPOPTS_H
#define SPANZA_LWIPOPTS_H

/* ---- system: one thread, the runtime loop, drives everything ---- */
#define NO_SYS 1
#define SYS_LIGHTWEIGHT_PROT 0
#define LWIP_TIMERS 1
#define LWIP_SOCKET 0
#define LWIP_NETCONN 0
#define LWIP_NETIF_API 0

/* ---- memory: the C heap, no fixed pools (bounded per connection by the
 * windows, the send buffer and the out-of-order limits below) ---- */
#define MEM_LIBC_MALLOC 1
#define MEMP_MEM_MALLOC 1
#define MEM_ALIGNMENT 8

/* ---- protocols ---- */
#define LWIP_IPV4 1
#define LWIP_IPV6 1
#define LWIP_TCP 1
#define LWIP_UDP 1
#define LWIP_ICMP 1
#define LWIP_ICMP6 1
#define LWIP_RAW 1
#define IP_REASSEMBLY 1
#define IP_FRAG 1
#define LWIP_IPV6_REASS 1
#define LWIP_IPV6_FRAG 1
/* The reassembly helper does not fit the 8-byte fragment header on 64-bit
 * hosts; without this the first ip6_reass_tmr tick asserts. */
#define IPV6_FRAG_COPYHEADER 1
#define IP_REASS_MAX_PBUFS 64
#define IP_DEFAULT_TTL 64

/* IP-level links only: no ARP, no Ethernet, no address configuration. */
#define LWIP_ARP 0
#define LWIP_ETHERNET 0
#define LWIP_DHCP 0
#define LWIP_AUTOIP 0
#define LWIP_IGMP 0
#define LWIP_DNS 0
#define LWIP_ALTCP 0
#define LWIP_IPV6_MLD 0
#define LWIP_IPV6_AUTOCONFIG 0
#define LWIP_IPV6_SEND_ROUTER_SOLICIT 0
#define LWIP_IPV6_DUP_DETECT_ATTEMPTS 0
#define LWIP_ND6_ALLOW_RA_UPDATES 0
#define LWIP_IPV6_DHCP6 0
#define LWIP_IPV6_SCOPES 0
/* Slot 0 stays unused (link-local by convention): up to 3 IPv6 addresses. */
#define LWIP_IPV6_NUM_ADDRESSES 4

/* Each host only talks for itself: no forwarding, no loopback shortcut, so
 * traffic between two hosts of one process always crosses the link. */
#define IP_FORWARD 0
#define LWIP_IPV6_FORWARD 0
#define LWIP_NETIF_LOOPBACK 0
#define LWIP_HAVE_LOOPIF 0
#define LWIP_SINGLE_NETIF 0
#define LWIP_BROADCAST_PING 0
#define LWIP_MULTICAST_PING 0

/* ---- TCP ---- */
/* Loss recovery fit for a relay path (scripts/lwip-patches): the fast timer
 * (delayed ACKs, RTO) ticks every 10 ms, the slow one (keepalive, persist,
 * TIME_WAIT) every 500 ms as before; RFC 6298 RTO in ms from RTT samples in
 * us, 1 s initial, 200 ms minimum (as Linux). A loss leaves 70 % of the
 * window (CUBIC's beta, RFC 9438, as gVisor's and Linux's stacks), not
 * Reno's half; the window still grows by one segment per round trip (more
 * than CUBIC's Reno-friendly 0.53): under 1-10 % random loss on a 20 ms
 * relay link, goodput is loss-bound, and this is what keeps it at or above
 * the Go stack's (bench/e2e/race.py). */
#define TCP_TMR_INTERVAL 10
#define TCP_SLOW_INTERVAL 500
#define TCP_RTO_INIT_MS 1000
#define TCP_RTO_MIN_MS 200
#define TCP_LOSS_BETA_PCT 70
unsigned int ns_clock_us(void);
#define tcp_clock_us() ((u32_t)ns_clock_us())
#define TCP_MSS 1380 /* MTU 1420 - 40; IPv6 peers negotiate 1360 */
#define TCP_CALCULATE_EFF_SEND_MSS 1
#define LWIP_WND_SCALE 1
#define TCP_RCV_SCALE 7 /* windows up to 8 MiB in 128-byte steps */
#ifndef NS_TCP_WND
#define NS_TCP_WND (1024 * 1024)
#endif
#define TCP_WND NS_TCP_WND
#define TCP_SND_BUF NS_TCP_WND
/* pbufs per send queue: enough for the whole buffer in small writes */
#define TCP_SND_QUEUELEN ((4 * TCP_SND_BUF + TCP_MSS - 1) / TCP_MSS)
#define TCP_SNDQUEUELOWAT (TCP_SND_QUEUELEN / 2)
/* Must stay 4*MSS below u16 overflow (init.c checks). */
#define TCP_SNDLOWAT (0xFFFF - 4 * TCP_MSS - 1)
#define TCP_QUEUE_OOSEQ 1
#define TCP_OOSEQ_MAX_BYTES TCP_WND
#define TCP_OOSEQ_MAX_PBUFS (4 * TCP_WND / TCP_MSS)
/* A window update only once it at least doubles the window still open
 * (lwIP patch 0007, as Linux): a reader that keeps up leaves most of the
 * window open, and an update every 4 segments read was a quarter of a bulk
 * receiver's ACKs through derper, each an extra packet for the relay. */
#define TCP_WND_UPDATE_DOUBLES 1
/* Sends SACK blocks; lwIP 2.1.3's sender does not act on received SACKs. */
#define LWIP_TCP_SACK_OUT 1
#define LWIP_TCP_MAX_SACK_NUM 4
#define TCP_LISTEN_BACKLOG 1
#define TCP_DEFAULT_LISTEN_BACKLOG 255
#define LWIP_TCP_KEEPALIVE 1
#define LWIP_TCP_TIMESTAMPS 0
#define TCP_OVERSIZE TCP_MSS
/* TIME_WAIT = 2*MSL = 20 s: the ephemeral pool (16,383 ports) is shared by
 * every host of the process. */
#define TCP_MSL 10000UL
#define LWIP_CALLBACK_API 1
/* SOF_REUSEADDR for listeners: rebinding a port whose old connections are
 * in TIME_WAIT works, as it does for servers on Linux. */
#define SO_REUSE 1
#define SO_REUSE_RXTOALL 0

/* ---- netifs ---- */
#define LWIP_NETIF_STATUS_CALLBACK 0
#define LWIP_NETIF_LINK_CALLBACK 0
#define LWIP_NETIF_HOSTNAME 0
#define LWIP_NETIF_TX_SINGLE_PBUF 0
#define PBUF_LINK_HLEN 0
#define PBUF_LINK_ENCAPSULATION_HLEN 0

/* ---- checksums: generated on output; not checked on input, because every
 * packet arrives through WireGuard, whose AEAD already authenticated it
 * (IP headers are still checked). ---- */
#define LWIP_CHECKSUM_ON_COPY 1
#define LWIP_CHKSUM_ALGORITHM 3
#define CHECKSUM_GEN_IP 1
#define CHECKSUM_GEN_UDP 1
#define CHECKSUM_GEN_TCP 1
#define CHECKSUM_GEN_ICMP 1
#define CHECKSUM_GEN_ICMP6 1
#define CHECKSUM_CHECK_IP 1
#define CHECKSUM_CHECK_UDP 0
#define CHECKSUM_CHECK_TCP 0
#define CHECKSUM_CHECK_ICMP 0
#define CHECKSUM_CHECK_ICMP6 0

/* ---- stats (read by tests and the benchmark) ---- */
#define LWIP_STATS 1
#define LWIP_STATS_DISPLAY 0
#define LINK_STATS 0
#define MEM_STATS 0
#define MEMP_STATS 0
#define SYS_STATS 0

/* ---- hooks: source routing, strong-host input filter, RFC 6528 ISNs ---- */
#define LWIP_HOOK_FILENAME "ns_hooks.h"
#define LWIP_HOOK_IP4_ROUTE_SRC(src, dest) ns_hook_route4((src), (dest))
#define LWIP_HOOK_IP6_ROUTE(src, dest) ns_hook_route6((src), (dest))
#define LWIP_HOOK_IP4_INPUT(p, inp) ns_hook_input((p), (inp))
#define LWIP_HOOK_IP6_INPUT(p, inp) ns_hook_input((p), (inp))
#define LWIP_HOOK_TCP_ISN(lip, lport, rip, rport) ns_hook_tcp_isn((lip), (lport), (rip), (rport))
#define LWIP_HOOK_TCP_DEFER_OUTPUT(pcb) ns_hook_tcp_defer_output(pcb)

#endif
