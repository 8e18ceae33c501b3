/* libFuzzer: a whole byte stream into one DERP server connection, as the
 * network would deliver it: the HTTP request head (or any other request:
 * probes, 404s, bad heads), then DERP frames (tests/fuzz/derp_server_harness.h).
 *
 * Input: byte 0 is flags, byte 1 the chunk size the rest is fed in (so
 * heads and frames split at every point), the rest is the stream.
 *   bits 0-1: what the harness puts before the fuzzed bytes, because the
 *             fuzzer cannot seal a box: 0 nothing (the fuzzed bytes start
 *             with the request head), 1 a valid upgrade head, 2 the head and
 *             a ClientInfo, 3 the head and a ClientInfo with the mesh key;
 *   bit 2:    that ClientInfo is the bystander's key (a duplicate);
 *   bit 3:    the upgrade head asks for fast start (no 101 written);
 *   bit 4:    afterwards the server's clock jumps 70 s (keepalives,
 *             handshake, write and rate deadlines run);
 *   bit 5:    the fuzzed bytes are fed three times over (heads past the
 *             8 KiB limit, floods, from inputs libFuzzer keeps short);
 * Packets to the bystander's key (0x23 x 32 bytes' public key, see the
 * seeds) go through the real queues and writes. */
#include "derp_server_harness.h"

#define CLOCK_JUMP_MS 70000

static void run_on_loop(rt_t *rt, void *arg)
{
	(void)rt;
	struct fz_input *r = arg;
	uint8_t flags = r->data[0];
	size_t chunk = r->data[1];
	int prefix = flags & 3;
	bool fast = flags & 8;

	int peer;
	struct derp_conn *c = fz_conn_new(&peer);
	bool open = true;
	if (prefix >= 1)
		open = fz_feed(c, peer, (const uint8_t *)(fast ? fz.head_fast : fz.head),
			       fast ? fz.head_fast_len : fz.head_len, 0);
	if (open && prefix >= 2) {
		uint8_t ci[FZ_CI_MAX];
		size_t n = fz_client_info(ci, sizeof(ci), flags & 4 ? FZ_BYSTANDER : FZ_ALLOWED, prefix == 3);
		open = fz_feed(c, peer, ci, n, 0);
		if (open && c->state != CS_ACTIVE)
			fz_die("a valid ClientInfo did not register");
	}
	for (int i = 0; i < (flags & 32 ? 3 : 1) && open; i++)
		open = fz_feed(c, peer, r->data + 2, r->size - 2, chunk);
	if (open && (flags & 16)) {
		/* Deadlines can close c: keep it in the list until settle. */
		fz.srv->skew_ms += CLOCK_JUMP_MS;
		derp_conn_check_deadlines(c);
		if (fz_bystander_alive())
			derp_conn_check_deadlines(fz.bystander);
		open = !c->closing;
		derp_srv_settle(fz.srv);
	}
	fz_conn_end(c, open, peer);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) { return fz_fuzz_one(run_on_loop, data, size); }
