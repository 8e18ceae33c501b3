/* lwIP port definitions for Linux/glibc (NO_SYS, one thread). */
#ifndef SPANZA_LWIP_ARCH_CC_H
#define SPANZA_LWIP_ARCH_CC_H

#include <stdint.h>
#include <stdlib.h>

/* glibc's <endian.h> already defines BYTE_ORDER: do not redefine it. */
#define LWIP_RAND() ((u32_t)arc4random())

#define lwip_htons(x) __builtin_bswap16((u16_t)(x))
#define lwip_htonl(x) __builtin_bswap32((u32_t)(x))
#define LWIP_DONT_PROVIDE_BYTEORDER_FUNCTIONS

/* lwIP's diagnostics are compiled out (no LWIP_DEBUG); a failed assertion is
 * a bug: it is logged as an error (which fails the test that caused it) and,
 * in fuzzing builds, aborts so the fuzzer reports it. */
void ns_lwip_assert(const char *msg, const char *file, int line);
#define LWIP_PLATFORM_DIAG(x) \
	do {                  \
	} while (0)
#define LWIP_PLATFORM_ASSERT(x) ns_lwip_assert((x), __FILE__, __LINE__)

#endif
