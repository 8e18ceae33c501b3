/* libFuzzer: the DERP server's handshake (spec §9, §11, §13): ClientInfo
 * decoding, the box opened with the server's key, the JSON inside, and the
 * allowlist and mesh-key decisions, on a real server connection that has
 * just been upgraded (tests/fuzz/derp_server_harness.h).
 *
 * Input: byte 0 picks the sender's key (bits 0-2: allowed, stranger,
 * bystander = a duplicate, all zeros, the server's own) and the form of the
 * rest (bit 3: raw, the ClientInfo payload after the key as sent; else a
 * JSON text the harness seals with that key, so the fuzzer reaches the
 * parser and the decisions; bit 4: fast start; bit 5: the box is sealed
 * for a wrong server key). Byte 1 is the chunk size. After the frame, a
 * Ping shows whether the connection is live.
 *
 * Oracles: a zero key or a box not sealed for this server never registers; a
 * registered stranger must have presented the mesh key. */
#include "derp_server_harness.h"

#define KEY_ZERO 3
#define KEY_SERVER 4
#define JSON_MAX 4096

static bool contains_mesh_key_hex(const uint8_t *json, size_t n)
{
	char hex[2 * DERP_KEY_LEN + 1], text[JSON_MAX + 1];
	spz_hex_encode(hex, FZ_MESH_KEY, DERP_KEY_LEN);
	memcpy(text, json, n);
	text[n] = 0;
	for (size_t i = 0; i < n; i++)
		if (!text[i])
			text[i] = ' ';
	return strcasestr(text, hex) != NULL;
}

static void run_on_loop(rt_t *rt, void *arg)
{
	(void)rt;
	struct fz_input *r = arg;
	uint8_t flags = r->data[0];
	size_t chunk = r->data[1];
	const uint8_t *body = r->data + 2;
	size_t blen = r->size - 2;
	int which = flags & 7;
	bool raw = flags & 8, fast = flags & 16, wrong_server = flags & 32;

	static uint8_t bogus_pub[DERP_KEY_LEN];
	uint8_t zero[DERP_KEY_LEN] = {0};
	if (derp_key_is_zero(bogus_pub)) {
		uint8_t bogus_priv[DERP_KEY_LEN];
		memset(bogus_priv, 0x5a, sizeof(bogus_priv));
		derp_key_public(bogus_priv, bogus_pub);
	}
	const uint8_t *pub, *priv = NULL;
	switch (which) {
	case FZ_ALLOWED:
	case FZ_STRANGER:
	case FZ_BYSTANDER:
		pub = fz.pub[which];
		priv = fz.priv[which];
		break;
	case KEY_ZERO: pub = zero; break;
	default: pub = fz.server_pub; break;
	}

	static uint8_t frame[DERP_HDR_LEN + DERP_KEY_LEN + DERP_BOX_OVERHEAD + JSON_MAX + DERP_HDR_LEN + DERP_PING_LEN];
	size_t n;
	if (raw || !priv) {
		if (blen > JSON_MAX)
			blen = JSON_MAX;
		derp_put_hdr(frame, DERP_FRAME_CLIENT_INFO, (uint32_t)(DERP_KEY_LEN + blen));
		memcpy(frame + DERP_HDR_LEN, pub, DERP_KEY_LEN);
		memcpy(frame + DERP_HDR_LEN + DERP_KEY_LEN, body, blen);
		n = DERP_HDR_LEN + DERP_KEY_LEN + blen;
	} else {
		if (blen > JSON_MAX)
			blen = JSON_MAX;
		const uint8_t *to = fz.server_pub;
		if (wrong_server)
			to = bogus_pub;
		uint8_t *box = frame + DERP_HDR_LEN + DERP_KEY_LEN;
		memset(box, 0x4e, DERP_NONCE_LEN); /* a fixed nonce: inputs replay exactly */
		if (crypto_box_easy(box + DERP_NONCE_LEN, body, blen, box, to, priv) != 0)
			fz_die("crypto_box_easy");
		derp_put_hdr(frame, DERP_FRAME_CLIENT_INFO, (uint32_t)(DERP_KEY_LEN + DERP_BOX_OVERHEAD + blen));
		memcpy(frame + DERP_HDR_LEN, pub, DERP_KEY_LEN);
		n = DERP_HDR_LEN + DERP_KEY_LEN + DERP_BOX_OVERHEAD + blen;
	}
	static const uint8_t ping_data[DERP_PING_LEN] = "fuzzping";
	n += derp_enc_ping(frame + n, DERP_HDR_LEN + DERP_PING_LEN, ping_data);

	int peer;
	struct derp_conn *c = fz_conn_new(&peer);
	bool open = fz_feed(c, peer, (const uint8_t *)(fast ? fz.head_fast : fz.head),
			    fast ? fz.head_fast_len : fz.head_len, 0);
	if (!open || c->state != CS_CLIENT_INFO)
		fz_die("the upgrade failed");
	open = fz_feed(c, peer, frame, n, chunk);
	if (open && c->state == CS_ACTIVE) {
		bool sealed_right = !raw && priv && !wrong_server;
		if (which == KEY_ZERO || raw || wrong_server)
			fz_die("registered with a zero key or a box the fuzzer could not have sealed");
		if (which == FZ_STRANGER && !c->mesh_ok)
			fz_die("a stranger passed the allowlist without the mesh key");
		if (c->mesh_ok && sealed_right && !contains_mesh_key_hex(body, blen))
			fz_die("mesh access without the mesh key");
		if (memcmp(c->key, pub, DERP_KEY_LEN) != 0)
			fz_die("registered under another key");
	}
	fz_conn_end(c, open, peer);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) { return fz_fuzz_one(run_on_loop, data, size); }
