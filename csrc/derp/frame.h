/* derp frame codec: Tailscale's DERP frames (shared/spec/derp.md §2-§6), sans-IO.
 *
 * Every frame is `type:u8 | len:u32be | payload[len]`. This module encodes
 * each frame type into caller buffers, parses a byte stream incrementally
 * into frames (never assuming one read is one frame), checks every length
 * against the limits of the role that receives it, and seals/opens the
 * ClientInfo/ServerInfo NaCl boxes. No sockets, no clocks, no allocation
 * except the parser's partial-frame buffer. Shared by the server and the
 * client (csrc/derp/client/client.c). */
#ifndef SPANZA_DERP_FRAME_H
#define SPANZA_DERP_FRAME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DERP_MAGIC_LEN 8
#define DERP_PROTOCOL_VERSION 2
#define DERP_HDR_LEN 5
#define DERP_KEY_LEN 32
#define DERP_NONCE_LEN 24
#define DERP_BOX_MAC_LEN 16
#define DERP_BOX_OVERHEAD (DERP_NONCE_LEN + DERP_BOX_MAC_LEN) /* 40 */
#define DERP_MAX_PACKET 65536                                 /* relayed packet bytes */
#define DERP_MAX_INFO_LEN (1u << 20)                          /* ServerInfo bound, client frame cap */
#define DERP_CLIENT_MAX_FRAME (1u << 20)                      /* Go client: any larger frame is fatal */
#define DERP_SERVERKEY_MIN 40
#define DERP_SERVERKEY_MAX 1024
#define DERP_CLIENTINFO_MIN 56
#define DERP_CLIENTINFO_MAX (256u * 1024)
#define DERP_PING_LEN 8
#define DERP_PING_MAX 1000
#define DERP_PEER_PRESENT_LEN 51
#define DERP_KEEPALIVE_MS 60000
#define DERP_KEEPALIVE_JITTER_MS 5000
#define DERP_HANDSHAKE_TIMEOUT_MS 10000
#define DERP_WRITE_TIMEOUT_MS 2000
#define DERP_MESH_WRITE_TIMEOUT_MS 30000
#define DERP_QUEUE_DEPTH 32
#define DERP_DISCO_MAGIC_LEN 6
#define DERP_DISCO_MIN_LEN 62 /* magic(6) + sender disco key(32) + nonce(24) */

extern const uint8_t derp_magic[DERP_MAGIC_LEN];             /* "DERP" U+1F511 */
extern const uint8_t derp_disco_magic[DERP_DISCO_MAGIC_LEN]; /* "TS" U+1F4AC */

enum derp_frame_type {
	DERP_FRAME_SERVER_KEY = 0x01,
	DERP_FRAME_CLIENT_INFO = 0x02,
	DERP_FRAME_SERVER_INFO = 0x03,
	DERP_FRAME_SEND_PACKET = 0x04,
	DERP_FRAME_RECV_PACKET = 0x05,
	DERP_FRAME_KEEP_ALIVE = 0x06,
	DERP_FRAME_NOTE_PREFERRED = 0x07,
	DERP_FRAME_PEER_GONE = 0x08,
	DERP_FRAME_PEER_PRESENT = 0x09,
	DERP_FRAME_FORWARD_PACKET = 0x0a,
	DERP_FRAME_WATCH_CONNS = 0x10,
	DERP_FRAME_CLOSE_PEER = 0x11,
	DERP_FRAME_PING = 0x12,
	DERP_FRAME_PONG = 0x13,
	DERP_FRAME_HEALTH = 0x14,
	DERP_FRAME_RESTARTING = 0x15,
};

enum derp_peer_gone_reason {
	DERP_PEER_GONE_DISCONNECTED = 0x00,
	DERP_PEER_GONE_NOT_HERE = 0x01,
	DERP_PEER_GONE_MESH_CONN_BROKE = 0xf0, /* local only, never on the wire */
};

enum derp_peer_present_flags {
	DERP_PEER_PRESENT_IS_REGULAR = 0x01,
	DERP_PEER_PRESENT_IS_MESH_PEER = 0x02,
	DERP_PEER_PRESENT_IS_PROBER = 0x04,
	DERP_PEER_PRESENT_NOT_IDEAL = 0x08,
};

/* ---- header ---- */

static inline void derp_put_u32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static inline uint32_t derp_get_u32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

/* Writes the 5-byte header; returns DERP_HDR_LEN. */
size_t derp_put_hdr(uint8_t *out, uint8_t type, uint32_t len);

/* True if the packet looks like a disco message (server queue choice). */
bool derp_looks_like_disco(const uint8_t *pkt, size_t len);

/* ---- encoders ----
 * Each writes a whole frame (header included) into out[cap] and returns its
 * length, or 0 if cap is too small or an argument is out of range (a packet
 * over DERP_MAX_PACKET, a ping over DERP_PING_MAX...). DERP_*_FRAME_LEN
 * give the sizes to allocate. */
#define DERP_SERVER_KEY_FRAME_LEN (DERP_HDR_LEN + DERP_MAGIC_LEN + DERP_KEY_LEN)
#define DERP_SEND_FRAME_LEN(n) (DERP_HDR_LEN + DERP_KEY_LEN + (n))
#define DERP_RECV_FRAME_LEN(n) (DERP_HDR_LEN + DERP_KEY_LEN + (n))
#define DERP_FORWARD_FRAME_LEN(n) (DERP_HDR_LEN + 2 * DERP_KEY_LEN + (n))
#define DERP_PEER_GONE_FRAME_LEN (DERP_HDR_LEN + DERP_KEY_LEN + 1)
#define DERP_PEER_PRESENT_FRAME_LEN (DERP_HDR_LEN + DERP_PEER_PRESENT_LEN)

size_t derp_enc_server_key(uint8_t *out, size_t cap, const uint8_t server_pub[DERP_KEY_LEN]);
size_t derp_enc_send_packet(uint8_t *out, size_t cap, const uint8_t dst[DERP_KEY_LEN], const uint8_t *pkt, size_t len);
size_t derp_enc_recv_packet(uint8_t *out, size_t cap, const uint8_t src[DERP_KEY_LEN], const uint8_t *pkt, size_t len);
size_t derp_enc_forward_packet(uint8_t *out, size_t cap, const uint8_t src[DERP_KEY_LEN],
			       const uint8_t dst[DERP_KEY_LEN], const uint8_t *pkt, size_t len);
size_t derp_enc_keep_alive(uint8_t *out, size_t cap);
size_t derp_enc_note_preferred(uint8_t *out, size_t cap, bool preferred);
size_t derp_enc_peer_gone(uint8_t *out, size_t cap, const uint8_t peer[DERP_KEY_LEN], uint8_t reason);
/* ip16: IPv6 or IPv4-mapped address (16 bytes); flags must be non-zero on the wire. */
size_t derp_enc_peer_present(uint8_t *out, size_t cap, const uint8_t peer[DERP_KEY_LEN], const uint8_t ip16[16],
			     uint16_t port, uint8_t flags);
size_t derp_enc_watch_conns(uint8_t *out, size_t cap);
size_t derp_enc_close_peer(uint8_t *out, size_t cap, const uint8_t target[DERP_KEY_LEN]);
/* Ping/Pong carry exactly 8 bytes. */
size_t derp_enc_ping(uint8_t *out, size_t cap, const uint8_t data[DERP_PING_LEN]);
size_t derp_enc_pong(uint8_t *out, size_t cap, const uint8_t data[DERP_PING_LEN]);
size_t derp_enc_health(uint8_t *out, size_t cap, const char *text, size_t len);
size_t derp_enc_restarting(uint8_t *out, size_t cap, uint32_t reconnect_in_ms, uint32_t try_for_ms);

/* ---- payload decoders (payload = frame bytes after the header) ----
 * Return 0, or -EINVAL when the payload is too short / malformed for the
 * type. Pointers returned point into payload. */
struct derp_pkt_view {
	const uint8_t *key;  /* RecvPacket/SendPacket: src/dst; ForwardPacket: src */
	const uint8_t *dst;  /* ForwardPacket only */
	const uint8_t *data; /* the relayed packet */
	size_t len;
};

/* ServerKey: len >= 40, magic matches; trailing bytes ignored. len > 1024 is
 * also -EINVAL (the Go client's bound). */
int derp_dec_server_key(const uint8_t *p, size_t len, const uint8_t **server_pub);
int derp_dec_send_packet(const uint8_t *p, size_t len, struct derp_pkt_view *v);    /* 32 <= len <= 32+64K */
int derp_dec_recv_packet(const uint8_t *p, size_t len, struct derp_pkt_view *v);    /* len >= 32 */
int derp_dec_forward_packet(const uint8_t *p, size_t len, struct derp_pkt_view *v); /* 64 <= len <= 64+64K */
/* PeerGone: len >= 32; reason 0 when absent. */
int derp_dec_peer_gone(const uint8_t *p, size_t len, const uint8_t **peer, uint8_t *reason);
/* PeerPresent: 32, 50 or 51+ bytes; missing fields are zero. */
int derp_dec_peer_present(const uint8_t *p, size_t len, const uint8_t **peer, uint8_t ip16[16], uint16_t *port,
			  uint8_t *flags);
/* Ping/Pong: len >= 8; the first 8 bytes are the data. */
int derp_dec_ping(const uint8_t *p, size_t len, const uint8_t **data);
int derp_dec_restarting(const uint8_t *p, size_t len, uint32_t *reconnect_in_ms, uint32_t *try_for_ms);

/* ---- incremental stream parser ----
 * Feed it the bytes received; it returns frames one at a time. A frame whose
 * bytes all arrived in one feed is returned in place (no copy); otherwise the
 * payload is gathered into a buffer allocated for exactly that frame (freed
 * when the next frame starts, or by derp_parser_free).
 *
 * Length checks happen as soon as the header is known, before any payload is
 * buffered, per role:
 *  - DERP_ROLE_SERVER (a server before the handshake): the only valid frame
 *    is ClientInfo with 56 <= len <= 256K; anything else is -EBADMSG.
 *  - DERP_ROLE_SERVER_ACTIVE (a server after ClientInfo): SendPacket
 *    32..32+64K, ForwardPacket 64..64+64K, NotePreferred ==1, WatchConns ==0,
 *    ClosePeer ==32, Ping 8..1000: a violation is -EBADMSG (close). Every
 *    other type (unknown, Pong, ClientInfo again, server-to-client types) is
 *    skipped whatever its size: its bytes are discarded as they arrive and
 *    the frame is reported with skipped=true and data NULL.
 *  - DERP_ROLE_CLIENT (bytes from a server): any frame > 1 MiB is -EMSGSIZE
 *    (fatal, as in Go). Known types are returned whole (the caller checks
 *    short frames with the derp_dec_* helpers and may drop them); unknown
 *    types are skipped as above.
 * Switch roles between frames with derp_parser_set_role (e.g. right after
 * handling ClientInfo, before feeding the bytes that followed it).
 */
enum derp_role { DERP_ROLE_SERVER = 0, DERP_ROLE_CLIENT = 1, DERP_ROLE_SERVER_ACTIVE = 2 };

struct derp_frame {
	uint8_t type;
	bool skipped;        /* payload was discarded (unknown/ignored type) */
	uint32_t len;        /* payload length as announced */
	const uint8_t *data; /* payload (NULL if skipped); valid until the next feed */
};

struct derp_parser {
	uint8_t role;
	uint8_t hdr_have;
	uint8_t hdr[DERP_HDR_LEN];
	bool in_frame; /* header complete, payload pending */
	bool skipping;
	uint32_t len;  /* current frame's payload length */
	uint32_t have; /* payload bytes gathered (or skipped) so far */
	uint8_t *buf;  /* gathered payload, malloc'd for the current frame */
};

void derp_parser_init(struct derp_parser *p, enum derp_role role);
void derp_parser_free(struct derp_parser *p);
static inline void derp_parser_set_role(struct derp_parser *p, enum derp_role role) { p->role = (uint8_t)role; }
/* Consumes bytes from in[len]. Sets *used to how many were consumed.
 * Returns 1 with *f filled when a frame is complete, 0 when all input was
 * consumed without completing one, -EBADMSG/-EMSGSIZE on a fatal length,
 * -ENOMEM. Call again with the remaining bytes after each frame. */
int derp_parser_feed(struct derp_parser *p, const uint8_t *in, size_t len, size_t *used, struct derp_frame *f);
/* True when no partial frame is held (no buffered bytes). */
bool derp_parser_idle(const struct derp_parser *p);
/* Bytes of heap the parser holds now. */
size_t derp_parser_mem(const struct derp_parser *p);
/* Largest payload a role accepts for a (non-skipped) type, or 0 for types
 * that are skipped; for tests and callers that size buffers. */
uint32_t derp_frame_max_len(enum derp_role role, uint8_t type);

/* ---- keys and NaCl box (libsodium crypto_box: X25519 + XSalsa20-Poly1305) ---- */

/* Random clamped private key and its public key. */
void derp_key_generate(uint8_t priv[DERP_KEY_LEN], uint8_t pub[DERP_KEY_LEN]);
/* pub = X25519(priv, 9). -EINVAL for an all-zero private key. */
int derp_key_public(const uint8_t priv[DERP_KEY_LEN], uint8_t pub[DERP_KEY_LEN]);
bool derp_key_is_zero(const uint8_t key[DERP_KEY_LEN]);
/* Constant-time key equality. */
bool derp_key_equal(const uint8_t a[DERP_KEY_LEN], const uint8_t b[DERP_KEY_LEN]);

/* out[len + 40] = nonce(24) ‖ mac(16) ‖ ciphertext, fresh random nonce.
 * Returns len + 40, or -EINVAL (zero key, bad point). */
int derp_box_seal(uint8_t *out, const uint8_t *msg, size_t len, const uint8_t their_pub[DERP_KEY_LEN],
		  const uint8_t my_priv[DERP_KEY_LEN]);
/* Opens box[blen] (nonce ‖ mac ‖ ct) into out[blen - 40]. Returns the
 * plaintext length, or -EBADMSG. */
int derp_box_open(uint8_t *out, const uint8_t *box, size_t blen, const uint8_t their_pub[DERP_KEY_LEN],
		  const uint8_t my_priv[DERP_KEY_LEN]);

/* ---- ClientInfo / ServerInfo ---- */
struct derp_client_info {
	int version; /* 2 */
	bool can_ack_pings;
	bool is_prober;
	bool has_mesh_key; /* meshKey emitted/present (64 hex) */
	uint8_t mesh_key[DERP_KEY_LEN];
	char app_name[64];
};

struct derp_server_info {
	int version;
	int64_t token_bucket_bytes_per_second; /* 0: omitted/none */
	int64_t token_bucket_bytes_burst;
};

/* The JSON as the Go client writes it ({"version":2,"CanAckPings":true}...).
 * Returns its length (NUL not counted) or 0 if cap is too small. */
size_t derp_client_info_json(char *out, size_t cap, const struct derp_client_info *ci);
/* Tolerant parse (case-insensitive keys, unknown fields ignored, any order).
 * -EINVAL for invalid JSON, a non-object, or a meshKey that is not 64 hex. */
int derp_client_info_parse(const char *json, size_t len, struct derp_client_info *ci);
size_t derp_server_info_json(char *out, size_t cap, const struct derp_server_info *si);
int derp_server_info_parse(const char *json, size_t len, struct derp_server_info *si);

/* Whole ClientInfo frame: client_pub ‖ box(client_priv -> server_pub, json).
 * Returns the frame length or a negative errno (-ENOSPC, -EINVAL). A 1 KiB
 * buffer is plenty. */
int derp_enc_client_info(uint8_t *out, size_t cap, const uint8_t client_priv[DERP_KEY_LEN],
			 const uint8_t client_pub[DERP_KEY_LEN], const uint8_t server_pub[DERP_KEY_LEN],
			 const struct derp_client_info *ci);
/* Server side: opens a ClientInfo payload (56..256K) with the server's
 * private key. -EINVAL: bad length or all-zero key; -EBADMSG: box or JSON. */
int derp_dec_client_info(const uint8_t *p, size_t len, const uint8_t server_priv[DERP_KEY_LEN],
			 uint8_t client_pub[DERP_KEY_LEN], struct derp_client_info *ci);
/* Whole ServerInfo frame: box(server_priv -> client_pub, json). */
int derp_enc_server_info(uint8_t *out, size_t cap, const uint8_t server_priv[DERP_KEY_LEN],
			 const uint8_t client_pub[DERP_KEY_LEN], const struct derp_server_info *si);
/* Client side: opens a ServerInfo payload (24..24+1M). */
int derp_dec_server_info(const uint8_t *p, size_t len, const uint8_t client_priv[DERP_KEY_LEN],
			 const uint8_t server_pub[DERP_KEY_LEN], struct derp_server_info *si);

#endif
