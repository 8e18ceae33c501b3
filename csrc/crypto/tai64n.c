/* TAI64N timestamps for handshake initiations. */
#include "crypto/crypto.h"

#include <time.h>

void spz_tai64n(uint8_t out[SPZ_TAI64N_LEN], uint64_t wall_ns, bool whiten)
{
	uint64_t secs = 0x400000000000000aULL + wall_ns / 1000000000ULL;
	uint32_t nsec = (uint32_t)(wall_ns % 1000000000ULL);
	/* Whitening hides the precise clock from observers (kernel and Go do
	 * the same); receivers only compare, so the low bits carry nothing. */
	if (whiten)
		nsec &= ~0xffffffu;
	for (int i = 0; i < 8; i++)
		out[i] = (uint8_t)(secs >> (56 - 8 * i));
	for (int i = 0; i < 4; i++)
		out[8 + i] = (uint8_t)(nsec >> (24 - 8 * i));
}

uint64_t spz_wall_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}
