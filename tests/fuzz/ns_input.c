/* libFuzzer: IP packets arriving at a host (what WireGuard delivers).
 *
 * Two hosts on a memory wire, A listening on TCP 80 and UDP 53. An input is
 * a flags byte, then packets framed as [u16 big-endian length][bytes],
 * injected into A on the loop thread. Flag bit 0 rewrites each packet's
 * destination to A's address and bit 1 fixes the IPv4 header checksum, so
 * the fuzzer gets past the input filter and into lwIP. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "netstack/ns_py.h"
#include "runtime/rt.h"

/* lwIP's IPv6 reassembly keeps the next fragment's pointer inside the packet
 * at a 4-byte aligned offset (packed struct): LeakSanitizer must scan
 * unaligned words or it reports waiting fragments as leaked. */
const char *__lsan_default_options(void);
const char *__lsan_default_options(void) { return "use_unaligned=1"; }

static rt_t *rt;
static ns_host_t *ha, *hb;

static const uint8_t a4[4] = {192, 168, 4, 1};
static const uint8_t a6[16] = {0xfd, [15] = 1};

static void sink(void *ctx, const uint8_t *ip, size_t len)
{
	(void)ctx;
	(void)ip;
	(void)len;
}

static void setup(void)
{
	rt = rt_new("fuzz");
	if (!rt)
		abort();
	struct ns_addr addrs[2] = {{.family = 4, .prefix = 24}, {.family = 6, .prefix = 64}};
	memcpy(addrs[0].ip, a4, 4);
	memcpy(addrs[1].ip, a6, 16);
	if (ns_host_new(rt, addrs, 2, NS_DEFAULT_MTU, sink, NULL, &ha) < 0)
		abort();
	addrs[0].ip[3] = 2;
	addrs[1].ip[15] = 2;
	if (ns_host_new(rt, addrs, 2, NS_DEFAULT_MTU, sink, NULL, &hb) < 0)
		abort();
	ns_listener_t *l;
	ns_udp_t *u;
	if (ns_tcp_listen(ha, 80, 64, &l) < 0 || ns_udp_open(ha, 53, &u) < 0)
		abort();
}

struct batch {
	const uint8_t *data;
	size_t size;
};

static void fix(uint8_t *p, size_t n, uint8_t flags)
{
	if (n >= 20 && (p[0] >> 4) == 4) {
		if (flags & 1)
			memcpy(p + 16, a4, 4);
		size_t ihl = (size_t)(p[0] & 15) * 4;
		if ((flags & 2) && ihl >= 20 && ihl <= n) {
			p[10] = p[11] = 0;
			uint32_t sum = 0;
			for (size_t i = 0; i < ihl; i += 2)
				sum += (uint32_t)(p[i] << 8 | p[i + 1]);
			while (sum >> 16)
				sum = (sum & 0xffff) + (sum >> 16);
			p[10] = (uint8_t)(~sum >> 8);
			p[11] = (uint8_t)~sum;
		}
	} else if (n >= 40 && (p[0] >> 4) == 6 && (flags & 1)) {
		memcpy(p + 24, a6, 16);
	}
}

static void run(rt_t *r, void *arg)
{
	(void)r;
	struct batch *b = arg;
	const uint8_t *d = b->data;
	size_t n = b->size;
	if (!n)
		return;
	uint8_t flags = d[0];
	d++, n--;
	static uint8_t pkt[65536];
	for (int i = 0; i < 64 && n >= 2; i++) {
		size_t len = (size_t)(d[0] << 8 | d[1]);
		d += 2, n -= 2;
		if (len > n)
			len = n;
		memcpy(pkt, d, len);
		fix(pkt, len, flags);
		ns_host_input(ha, pkt, len);
		d += len, n -= len;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!rt)
		setup();
	struct batch b = {.data = data, .size = size};
	rt_call(rt, run, &b);
	return 0;
}
