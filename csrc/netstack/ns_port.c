/* lwIP's port for a NO_SYS build: the clock, assertions, and RFC 6528
 * initial sequence numbers. */
#include <sodium.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "lwip/arch.h"
#include "lwip/ip_addr.h"
#include "lwip/sys.h"
#include "ns_hooks.h"
#include "base/log.h"
#include "runtime/rt.h"

/* lwIP compares times wrap-safely, so the u32 truncation is fine. */
u32_t sys_now(void) { return (u32_t)rt_now_ms(); }
/* RTT samples in microseconds (tcp_clock_us in lwipopts.h). */
unsigned int ns_clock_us(void) { return (unsigned int)(rt_now_ns() / 1000u); }

void ns_lwip_assert(const char *msg, const char *file, int line)
{
	spz_log(SPZ_LOG_ERROR, "netstack", "lwIP assertion failed: %s (%s:%d)", msg, file, line);
#ifdef NS_ASSERT_ABORT
	abort();
#endif
}

/* RFC 6528: ISN = M + F(4-tuple, secret), M a 4 us clock, F SipHash-2-4. */
static unsigned char isn_key[crypto_shorthash_KEYBYTES];
static bool isn_keyed;

static size_t put_ip(unsigned char *b, const ip_addr_t *ip)
{
	if (IP_IS_V6(ip)) {
		memcpy(b, ip_2_ip6(ip)->addr, 16);
		return 16;
	}
	memcpy(b, &ip_2_ip4(ip)->addr, 4);
	return 4;
}

u32_t ns_hook_tcp_isn(const ip_addr_t *local_ip, u16_t local_port, const ip_addr_t *remote_ip, u16_t remote_port)
{
	if (!isn_keyed) { /* loop thread only: no race */
		randombytes_buf(isn_key, sizeof(isn_key));
		isn_keyed = true;
	}
	unsigned char in[36], out[crypto_shorthash_BYTES];
	size_t n = put_ip(in, local_ip);
	n += put_ip(in + n, remote_ip);
	memcpy(in + n, &local_port, 2);
	memcpy(in + n + 2, &remote_port, 2);
	crypto_shorthash(out, in, n + 4, isn_key);
	u32_t f;
	memcpy(&f, out, sizeof(f));
	return f + (u32_t)(rt_now_ns() / 4000u);
}
