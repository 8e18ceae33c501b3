/* libFuzzer: the DERP frame parser in every role, fed in random chunks, and
 * every payload decoder and the handshake JSON parsers on what comes out. */
#include "derp/frame.h"
#include "derp/json.h"

#include <stdint.h>
#include <string.h>

static void decode(const struct derp_frame *f)
{
	struct derp_pkt_view v;
	const uint8_t *k;
	uint8_t reason, ip[16], flags;
	uint16_t port;
	uint32_t a, b;
	if (f->skipped || !f->data)
		return;
	switch (f->type) {
	case DERP_FRAME_SERVER_KEY: derp_dec_server_key(f->data, f->len, &k); break;
	case DERP_FRAME_SEND_PACKET: derp_dec_send_packet(f->data, f->len, &v); break;
	case DERP_FRAME_RECV_PACKET: derp_dec_recv_packet(f->data, f->len, &v); break;
	case DERP_FRAME_FORWARD_PACKET: derp_dec_forward_packet(f->data, f->len, &v); break;
	case DERP_FRAME_PEER_GONE: derp_dec_peer_gone(f->data, f->len, &k, &reason); break;
	case DERP_FRAME_PEER_PRESENT: derp_dec_peer_present(f->data, f->len, &k, ip, &port, &flags); break;
	case DERP_FRAME_PING:
	case DERP_FRAME_PONG: derp_dec_ping(f->data, f->len, &k); break;
	case DERP_FRAME_RESTARTING: derp_dec_restarting(f->data, f->len, &a, &b); break;
	case DERP_FRAME_CLIENT_INFO: {
		/* The JSON after the key and nonce, as if the box had opened. */
		struct derp_client_info ci;
		if (f->len > 56)
			derp_client_info_parse((const char *)f->data + 56, f->len - 56, &ci);
		break;
	}
	case DERP_FRAME_SERVER_INFO: {
		struct derp_server_info si;
		derp_server_info_parse((const char *)f->data, f->len, &si);
		break;
	}
	default: break;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2)
		return 0;
	/* First byte: role and chunking. */
	uint8_t ctl = data[0];
	enum derp_role role = (enum derp_role)(ctl % 3);
	size_t chunk = 1 + (ctl >> 2) * 7;
	data++;
	size--;

	struct derp_parser p;
	derp_parser_init(&p, role);
	size_t off = 0;
	int frames = 0;
	while (off < size) {
		size_t n = size - off < chunk ? size - off : chunk;
		size_t in = 0;
		while (in < n) {
			struct derp_frame f;
			size_t used = 0;
			int rc = derp_parser_feed(&p, data + off + in, n - in, &used, &f);
			in += used;
			if (rc < 0)
				goto out;
			if (rc == 0)
				break;
			if (f.len && !f.skipped && !f.data)
				__builtin_trap();
			decode(&f);
			/* The server switches roles after ClientInfo. */
			if (role == DERP_ROLE_SERVER && f.type == DERP_FRAME_CLIENT_INFO)
				derp_parser_set_role(&p, DERP_ROLE_SERVER_ACTIVE);
			frames++;
		}
		if (in < n)
			__builtin_trap(); /* a feed returning 0 must consume everything */
		off += n;
	}
out:
	derp_parser_free(&p);

	/* The raw input as handshake JSON too. */
	struct derp_client_info ci;
	struct derp_server_info si;
	derp_client_info_parse((const char *)data, size, &ci);
	derp_server_info_parse((const char *)data, size, &si);
	(void)frames;
	return 0;
}
