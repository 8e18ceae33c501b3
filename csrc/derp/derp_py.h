/* cffi: what the DERP codec (csrc/derp/) shows Python: the events a
 * client's protocol core reports (client_proto.c), which the client
 * (derp/client/) queues for Python and the server's mesh links consume. */
#ifndef SPANZA_DERP_PY_H
#define SPANZA_DERP_PY_H

#include <stddef.h>
#include <stdint.h>

/* Events (struct derp_client_event.type). */
/* key: server public key */
#define DERP_EV_CONNECTED 1
/* text: why */
#define DERP_EV_DISCONNECTED 2
/* key, reason (0 disconnected, 1 not here) */
#define DERP_EV_PEER_GONE 3
/* key, ip[16], port, flags */
#define DERP_EV_PEER_PRESENT 4
/* text (empty: healthy again) */
#define DERP_EV_HEALTH 5
/* reconnect_in_ms, try_for_ms */
#define DERP_EV_RESTARTING 6
/* ping[8], rtt_us */
#define DERP_EV_PONG 7
/* text: why; the client stopped retrying (DERP_CLIENT_REFUSED) */
#define DERP_EV_REFUSED 8

struct derp_client_event {
	int type;
	uint8_t key[32];
	uint8_t reason;
	uint8_t flags;
	uint16_t port;
	uint8_t ip[16];
	uint8_t ping[8];
	uint32_t reconnect_in_ms;
	uint32_t try_for_ms;
	uint64_t rtt_us;
	const char *text; /* NUL-terminated; valid during the callback / until the event is freed */
	size_t text_len;
};

#endif
