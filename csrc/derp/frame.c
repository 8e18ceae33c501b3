/* DERP frame codec: encoders, payload decoders, the incremental parser. */
#include "derp/frame.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

const uint8_t derp_magic[DERP_MAGIC_LEN] = {0x44, 0x45, 0x52, 0x50, 0xf0, 0x9f, 0x94, 0x91};
const uint8_t derp_disco_magic[DERP_DISCO_MAGIC_LEN] = {0x54, 0x53, 0xf0, 0x9f, 0x92, 0xac};

size_t derp_put_hdr(uint8_t *out, uint8_t type, uint32_t len)
{
	out[0] = type;
	derp_put_u32(out + 1, len);
	return DERP_HDR_LEN;
}

bool derp_looks_like_disco(const uint8_t *pkt, size_t len)
{
	return len >= DERP_DISCO_MIN_LEN && memcmp(pkt, derp_disco_magic, DERP_DISCO_MAGIC_LEN) == 0;
}

/* ---- encoders ---- */

/* Header + up to three parts; 0 when it does not fit. */
static size_t enc3(uint8_t *out, size_t cap, uint8_t type, const void *a, size_t an, const void *b, size_t bn,
		   const void *c, size_t cn)
{
	size_t total = DERP_HDR_LEN + an + bn + cn;
	if (total > cap)
		return 0;
	uint8_t *p = out + derp_put_hdr(out, type, (uint32_t)(an + bn + cn));
	if (an)
		memcpy(p, a, an);
	if (bn)
		memcpy(p + an, b, bn);
	if (cn)
		memcpy(p + an + bn, c, cn);
	return total;
}

size_t derp_enc_server_key(uint8_t *out, size_t cap, const uint8_t server_pub[DERP_KEY_LEN])
{
	return enc3(out, cap, DERP_FRAME_SERVER_KEY, derp_magic, DERP_MAGIC_LEN, server_pub, DERP_KEY_LEN, NULL, 0);
}

size_t derp_enc_send_packet(uint8_t *out, size_t cap, const uint8_t dst[DERP_KEY_LEN], const uint8_t *pkt, size_t len)
{
	if (len > DERP_MAX_PACKET)
		return 0;
	return enc3(out, cap, DERP_FRAME_SEND_PACKET, dst, DERP_KEY_LEN, pkt, len, NULL, 0);
}

size_t derp_enc_recv_packet(uint8_t *out, size_t cap, const uint8_t src[DERP_KEY_LEN], const uint8_t *pkt, size_t len)
{
	if (len > DERP_MAX_PACKET)
		return 0;
	return enc3(out, cap, DERP_FRAME_RECV_PACKET, src, DERP_KEY_LEN, pkt, len, NULL, 0);
}

size_t derp_enc_forward_packet(uint8_t *out, size_t cap, const uint8_t src[DERP_KEY_LEN],
			       const uint8_t dst[DERP_KEY_LEN], const uint8_t *pkt, size_t len)
{
	if (len > DERP_MAX_PACKET)
		return 0;
	return enc3(out, cap, DERP_FRAME_FORWARD_PACKET, src, DERP_KEY_LEN, dst, DERP_KEY_LEN, pkt, len);
}

size_t derp_enc_keep_alive(uint8_t *out, size_t cap)
{
	return enc3(out, cap, DERP_FRAME_KEEP_ALIVE, NULL, 0, NULL, 0, NULL, 0);
}

size_t derp_enc_note_preferred(uint8_t *out, size_t cap, bool preferred)
{
	uint8_t b = preferred ? 1 : 0;
	return enc3(out, cap, DERP_FRAME_NOTE_PREFERRED, &b, 1, NULL, 0, NULL, 0);
}

size_t derp_enc_peer_gone(uint8_t *out, size_t cap, const uint8_t peer[DERP_KEY_LEN], uint8_t reason)
{
	return enc3(out, cap, DERP_FRAME_PEER_GONE, peer, DERP_KEY_LEN, &reason, 1, NULL, 0);
}

size_t derp_enc_peer_present(uint8_t *out, size_t cap, const uint8_t peer[DERP_KEY_LEN], const uint8_t ip16[16],
			     uint16_t port, uint8_t flags)
{
	uint8_t tail[19];
	static const uint8_t zero[16];
	memcpy(tail, ip16 ? ip16 : zero, 16);
	tail[16] = (uint8_t)(port >> 8);
	tail[17] = (uint8_t)port;
	tail[18] = flags;
	return enc3(out, cap, DERP_FRAME_PEER_PRESENT, peer, DERP_KEY_LEN, tail, sizeof(tail), NULL, 0);
}

size_t derp_enc_watch_conns(uint8_t *out, size_t cap)
{
	return enc3(out, cap, DERP_FRAME_WATCH_CONNS, NULL, 0, NULL, 0, NULL, 0);
}

size_t derp_enc_close_peer(uint8_t *out, size_t cap, const uint8_t target[DERP_KEY_LEN])
{
	return enc3(out, cap, DERP_FRAME_CLOSE_PEER, target, DERP_KEY_LEN, NULL, 0, NULL, 0);
}

size_t derp_enc_ping(uint8_t *out, size_t cap, const uint8_t data[DERP_PING_LEN])
{
	return enc3(out, cap, DERP_FRAME_PING, data, DERP_PING_LEN, NULL, 0, NULL, 0);
}

size_t derp_enc_pong(uint8_t *out, size_t cap, const uint8_t data[DERP_PING_LEN])
{
	return enc3(out, cap, DERP_FRAME_PONG, data, DERP_PING_LEN, NULL, 0, NULL, 0);
}

size_t derp_enc_health(uint8_t *out, size_t cap, const char *text, size_t len)
{
	if (len > DERP_MAX_INFO_LEN)
		return 0;
	return enc3(out, cap, DERP_FRAME_HEALTH, text, len, NULL, 0, NULL, 0);
}

size_t derp_enc_restarting(uint8_t *out, size_t cap, uint32_t reconnect_in_ms, uint32_t try_for_ms)
{
	uint8_t b[8];
	derp_put_u32(b, reconnect_in_ms);
	derp_put_u32(b + 4, try_for_ms);
	return enc3(out, cap, DERP_FRAME_RESTARTING, b, sizeof(b), NULL, 0, NULL, 0);
}

/* ---- payload decoders ---- */

int derp_dec_server_key(const uint8_t *p, size_t len, const uint8_t **server_pub)
{
	if (len < DERP_SERVERKEY_MIN || len > DERP_SERVERKEY_MAX || memcmp(p, derp_magic, DERP_MAGIC_LEN) != 0)
		return -EINVAL;
	*server_pub = p + DERP_MAGIC_LEN;
	return 0;
}

static int dec_keyed(const uint8_t *p, size_t len, size_t nkeys, size_t max_extra, struct derp_pkt_view *v)
{
	size_t k = nkeys * DERP_KEY_LEN;
	if (len < k || len - k > max_extra)
		return -EINVAL;
	v->key = p;
	v->dst = nkeys > 1 ? p + DERP_KEY_LEN : NULL;
	v->data = p + k;
	v->len = len - k;
	return 0;
}

int derp_dec_send_packet(const uint8_t *p, size_t len, struct derp_pkt_view *v)
{
	return dec_keyed(p, len, 1, DERP_MAX_PACKET, v);
}

int derp_dec_recv_packet(const uint8_t *p, size_t len, struct derp_pkt_view *v)
{
	return dec_keyed(p, len, 1, SIZE_MAX, v);
}

int derp_dec_forward_packet(const uint8_t *p, size_t len, struct derp_pkt_view *v)
{
	return dec_keyed(p, len, 2, DERP_MAX_PACKET, v);
}

int derp_dec_peer_gone(const uint8_t *p, size_t len, const uint8_t **peer, uint8_t *reason)
{
	if (len < DERP_KEY_LEN)
		return -EINVAL;
	*peer = p;
	*reason = len > DERP_KEY_LEN ? p[DERP_KEY_LEN] : DERP_PEER_GONE_DISCONNECTED;
	return 0;
}

int derp_dec_peer_present(const uint8_t *p, size_t len, const uint8_t **peer, uint8_t ip16[16], uint16_t *port,
			  uint8_t *flags)
{
	if (len < DERP_KEY_LEN || (len > DERP_KEY_LEN && len < DERP_KEY_LEN + 18))
		return -EINVAL;
	*peer = p;
	memset(ip16, 0, 16);
	*port = 0;
	*flags = 0;
	if (len >= DERP_KEY_LEN + 18) {
		memcpy(ip16, p + DERP_KEY_LEN, 16);
		*port = (uint16_t)(p[DERP_KEY_LEN + 16] << 8 | p[DERP_KEY_LEN + 17]);
	}
	if (len >= DERP_PEER_PRESENT_LEN)
		*flags = p[DERP_KEY_LEN + 18];
	return 0;
}

int derp_dec_ping(const uint8_t *p, size_t len, const uint8_t **data)
{
	if (len < DERP_PING_LEN)
		return -EINVAL;
	*data = p;
	return 0;
}

int derp_dec_restarting(const uint8_t *p, size_t len, uint32_t *reconnect_in_ms, uint32_t *try_for_ms)
{
	if (len < 8)
		return -EINVAL;
	*reconnect_in_ms = derp_get_u32(p);
	*try_for_ms = derp_get_u32(p + 4);
	return 0;
}

/* ---- parser ---- */

/* Returns the accepted [min,max] for a type, or false if the type is skipped. */
static bool frame_bounds(enum derp_role role, uint8_t type, uint32_t *min, uint32_t *max)
{
	if (role == DERP_ROLE_CLIENT) {
		switch (type) {
		case DERP_FRAME_SERVER_KEY:
		case DERP_FRAME_SERVER_INFO:
		case DERP_FRAME_RECV_PACKET:
		case DERP_FRAME_KEEP_ALIVE:
		case DERP_FRAME_PEER_GONE:
		case DERP_FRAME_PEER_PRESENT:
		case DERP_FRAME_PING:
		case DERP_FRAME_PONG:
		case DERP_FRAME_HEALTH:
		case DERP_FRAME_RESTARTING:
			*min = 0;
			*max = DERP_CLIENT_MAX_FRAME;
			return true;
		default: return false;
		}
	}
	if (role == DERP_ROLE_SERVER) {
		/* Before the handshake only ClientInfo is valid: any other type is
		 * bounded to nothing, so the parser rejects it at its header. */
		*min = type == DERP_FRAME_CLIENT_INFO ? DERP_CLIENTINFO_MIN : 1;
		*max = type == DERP_FRAME_CLIENT_INFO ? DERP_CLIENTINFO_MAX : 0;
		return true;
	}
	switch (type) {
	case DERP_FRAME_SEND_PACKET:
		*min = DERP_KEY_LEN;
		*max = DERP_KEY_LEN + DERP_MAX_PACKET;
		return true;
	case DERP_FRAME_FORWARD_PACKET:
		*min = 2 * DERP_KEY_LEN;
		*max = 2 * DERP_KEY_LEN + DERP_MAX_PACKET;
		return true;
	case DERP_FRAME_NOTE_PREFERRED: *min = *max = 1; return true;
	case DERP_FRAME_WATCH_CONNS: *min = *max = 0; return true;
	case DERP_FRAME_CLOSE_PEER: *min = *max = DERP_KEY_LEN; return true;
	case DERP_FRAME_PING:
		*min = DERP_PING_LEN;
		*max = DERP_PING_MAX;
		return true;
	default: return false;
	}
}

uint32_t derp_frame_max_len(enum derp_role role, uint8_t type)
{
	uint32_t min, max;
	return frame_bounds(role, type, &min, &max) ? max : 0;
}

void derp_parser_init(struct derp_parser *p, enum derp_role role)
{
	memset(p, 0, sizeof(*p));
	p->role = (uint8_t)role;
}

void derp_parser_free(struct derp_parser *p)
{
	free(p->buf);
	p->buf = NULL;
	p->hdr_have = 0;
	p->in_frame = false;
}

bool derp_parser_idle(const struct derp_parser *p) { return p->hdr_have == 0 && !p->in_frame; }

size_t derp_parser_mem(const struct derp_parser *p) { return p->buf ? p->len : 0; }

static void frame_done(struct derp_parser *p)
{
	p->hdr_have = 0;
	p->in_frame = false;
	p->skipping = false;
	p->have = 0;
}

int derp_parser_feed(struct derp_parser *p, const uint8_t *in, size_t len, size_t *used, struct derp_frame *f)
{
	size_t i = 0;
	/* The previous frame's gathered payload is no longer referenced. */
	if (!p->in_frame && p->buf) {
		free(p->buf);
		p->buf = NULL;
	}
	if (!p->in_frame) {
		while (p->hdr_have < DERP_HDR_LEN && i < len)
			p->hdr[p->hdr_have++] = in[i++];
		if (p->hdr_have < DERP_HDR_LEN) {
			*used = i;
			return 0;
		}
		uint8_t type = p->hdr[0];
		uint32_t flen = derp_get_u32(p->hdr + 1), min, max;
		if (frame_bounds((enum derp_role)p->role, type, &min, &max)) {
			if (flen < min || flen > max) {
				*used = i;
				return p->role == DERP_ROLE_CLIENT ? -EMSGSIZE : -EBADMSG;
			}
			p->skipping = false;
		} else {
			if (p->role == DERP_ROLE_CLIENT && flen > DERP_CLIENT_MAX_FRAME) {
				*used = i;
				return -EMSGSIZE;
			}
			p->skipping = true;
		}
		p->len = flen;
		p->have = 0;
		p->in_frame = true;
		/* Fast path: the whole payload is in this input; hand it out in place. */
		if (!p->skipping && len - i >= flen) {
			f->type = type;
			f->skipped = false;
			f->len = flen;
			f->data = in + i;
			*used = i + flen;
			frame_done(p);
			return 1;
		}
		if (!p->skipping && flen) {
			p->buf = malloc(flen);
			if (!p->buf) {
				*used = i;
				return -ENOMEM;
			}
		}
	}
	size_t want = p->len - p->have, take = len - i < want ? len - i : want;
	if (!p->skipping && take)
		memcpy(p->buf + p->have, in + i, take);
	p->have += (uint32_t)take;
	i += take;
	*used = i;
	if (p->have < p->len)
		return 0;
	f->type = p->hdr[0];
	f->skipped = p->skipping;
	f->len = p->len;
	f->data = p->skipping ? NULL : p->buf;
	frame_done(p);
	/* buf stays allocated until the next feed, which frees it above. */
	return 1;
}
