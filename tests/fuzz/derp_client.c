/* libFuzzer: server bytes into the DERP client's protocol core
 * (csrc/derp/client_proto.c): HTTP response, handshake, frame dispatch.
 *
 * Input: byte 0 picks the starting phase (HTTP, ServerKey, or running) and
 * byte 1 the chunk size the rest is fed in (so frames and HTTP heads are
 * split at every possible point); the rest is what the server sent. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "derp/client_proto.h"

static size_t written;

static int w(void *arg, const uint8_t *buf, size_t len)
{
	(void)arg;
	(void)buf;
	written += len;
	return 0;
}

static void connected(void *arg, const uint8_t server_pub[32], const struct derp_server_info *si)
{
	(void)arg;
	(void)server_pub;
	(void)si;
}

static void packet(void *arg, const uint8_t src[32], const uint8_t *data, size_t len)
{
	(void)arg;
	/* Touch every byte so ASan checks the bounds handed out. */
	volatile uint8_t x = src[31];
	for (size_t i = 0; i < len; i++)
		x ^= data[i];
	(void)x;
	if (len > DERP_MAX_PACKET)
		__builtin_trap();
}

static void event(void *arg, const struct derp_client_event *ev)
{
	(void)arg;
	if (ev->text && strlen(ev->text) != ev->text_len)
		__builtin_trap();
}

static const struct derp_cp_ops ops = {.write = w, .connected = connected, .packet = packet, .event = event};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const uint8_t priv[32] = {1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11, 12, 13, 14, 15, 16,
					 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32};
	static uint8_t pub[32];
	static int init;
	if (!init) {
		derp_key_public(priv, pub);
		init = 1;
	}
	if (size < 2)
		return 0;
	uint8_t mode = data[0] % 3;
	size_t chunk = data[1] ? data[1] : size;
	data += 2;
	size -= 2;

	struct derp_cproto cp;
	derp_cp_init(&cp, priv, pub, NULL);
	if (mode >= 1)
		cp.phase = DERP_CP_SERVER_KEY;
	if (mode == 2) {
		/* Skip the handshake: any key, so frames reach the dispatcher. */
		memcpy(cp.server_pub, pub, 32);
		cp.phase = DERP_CP_RUN;
	}
	for (size_t off = 0; off < size;) {
		size_t n = size - off < chunk ? size - off : chunk;
		if (derp_cp_input(&cp, data + off, n, &ops, NULL) < 0)
			break;
		off += n;
	}
	derp_cp_free(&cp);
	return 0;
}
