/* WireGuard core internals shared by the files of csrc/wg/ (never by
 * callers: they use wg.h). Layout follows the kernel's split. */
#ifndef SPANZA_WG_INTERNAL_H
#define SPANZA_WG_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include "crypto/aead.h"
#include "crypto/crypto.h"
#include "wg/messages.h"
#include "wg/replay.h"
#include "wg/wg.h"

#define WG_TIMER_OFF UINT64_MAX
/* Jitter bytes drawn per getrandom: a draw per data packet sent (the
 * new-handshake timer, re-armed after every packet received) cost ~2 % of
 * the data path. */
#define WG_JITTER_POOL 64

/* Inner IP headers: lengths and the offsets of the addresses. */
#define WG_IP4_HDR_LEN 20
#define WG_IP4_SRC 12
#define WG_IP4_DST 16
#define WG_IP6_HDR_LEN 40
#define WG_IP6_SRC 8
#define WG_IP6_DST 24

/* ---- keypairs (one session's transport keys) ---- */
struct wg_keypair {
	struct spz_aead send, recv;
	uint64_t send_counter;
	struct wg_replay replay;
	uint64_t created_ms;
	uint32_t local_index, remote_index;
	bool initiator;
	bool send_valid, recv_valid;
	wg_peer *peer;
};

/* ---- the single handshake slot of a peer ---- */
enum wg_hs_state {
	WG_HS_ZEROED = 0,
	WG_HS_INITIATION_CREATED = 1,
	WG_HS_INITIATION_CONSUMED = 2,
	WG_HS_RESPONSE_CREATED = 3,
	WG_HS_RESPONSE_CONSUMED = 4,
};

struct wg_handshake {
	enum wg_hs_state state;
	uint8_t hash[NOISE_HASH_LEN], chaining_key[NOISE_HASH_LEN];
	uint8_t ephemeral_private[NOISE_PUBLIC_KEY_LEN];
	uint8_t remote_ephemeral[NOISE_PUBLIC_KEY_LEN];
	uint32_t local_index, remote_index;
	bool index_registered;
	uint8_t latest_timestamp[NOISE_TIMESTAMP_LEN];
	uint64_t last_initiation_ms;
	bool have_initiation;
	uint8_t precomputed_ss[NOISE_PUBLIC_KEY_LEN];
	bool ss_valid;
	uint8_t psk[NOISE_SYMMETRIC_KEY_LEN];
};

/* ---- cookies ---- */
struct wg_cookie_gen {                               /* per peer: we are the sender */
	uint8_t mac1_key[NOISE_SYMMETRIC_KEY_LEN];   /* HASH("mac1----" || peer's public key) */
	uint8_t cookie_key[NOISE_SYMMETRIC_KEY_LEN]; /* HASH("cookie--" || peer's public key) */
	uint8_t cookie[COOKIE_LEN];
	uint64_t cookie_ms;
	bool cookie_valid;
	uint8_t last_mac1[COOKIE_LEN];
	bool have_sent_mac1;
};

struct wg_cookie_checker { /* per device: we are the receiver */
	uint8_t mac1_key[NOISE_SYMMETRIC_KEY_LEN];
	uint8_t cookie_key[NOISE_SYMMETRIC_KEY_LEN];
	uint8_t secret[COOKIE_SECRET_LEN];
	uint64_t secret_ms;
	bool secret_valid;
};

/* ---- per-source token buckets, used only under load ---- */
#define WG_RL_SLOTS 4096
#define WG_RL_PROBE 8
#define WG_RL_HASH_KEY_LEN 16 /* libsodium's crypto_shorthash (SipHash-2-4) key */
struct wg_rl_entry {
	uint64_t key;
	uint64_t last_ms;
	uint64_t tokens; /* in units of 1/1000 packet-ms */
	bool used;
};
struct wg_ratelimiter {
	struct wg_rl_entry *slots;
	uint8_t hash_key[WG_RL_HASH_KEY_LEN];
};

/* ---- timers (deadlines in now_ms, WG_TIMER_OFF when not pending) ---- */
struct wg_timers {
	uint64_t retransmit_handshake;
	uint64_t send_keepalive;
	uint64_t new_handshake;
	uint64_t zero_key_material;
	uint64_t persistent_keepalive;
	uint32_t handshake_attempts;
	bool need_another_keepalive;
	bool sent_lastminute_handshake;
};

struct wg_staged {
	struct wg_staged *next;
	size_t len;
	uint8_t data[];
};

struct wg_aip_node;

struct wg_peer {
	wg_device *dev;
	uint8_t pub[NOISE_PUBLIC_KEY_LEN];
	struct wg_handshake hs;
	struct wg_cookie_gen cookie;
	struct wg_keypair *kp_prev, *kp_cur, *kp_next;
	wg_endpoint endpoint;
	uint16_t keepalive; /* persistent keepalive, seconds */
	struct wg_timers timers;
	uint64_t last_sent_handshake_ms;
	bool have_sent_handshake;
	struct wg_staged *staged_head, *staged_tail;
	uint32_t staged_count;
	struct wg_aip_node *aip_head, *aip_tail;
	uint64_t rx_bytes, tx_bytes, rx_packets, tx_packets;
	uint64_t last_handshake_wall_ns, last_handshake_ms, handshakes_completed;
	wg_peer *list_prev, *list_next; /* device's list, creation order */
	wg_peer *hash_next;             /* device's public-key table */
	void *user;
};

/* ---- index table: our random u32 indices -> handshake or keypair ---- */
enum wg_index_kind { WG_INDEX_HANDSHAKE = 1, WG_INDEX_KEYPAIR = 2 };
struct wg_index_entry {
	uint32_t index;
	uint8_t kind; /* 0 = free slot */
	wg_peer *peer;
	struct wg_keypair *kp;
};
struct wg_index_table {
	struct wg_index_entry *slots;
	uint32_t cap, count;
};

struct wg_allowedips {
	struct wg_aip_node *root4, *root6;
};

struct wg_device {
	struct wg_ops ops;
	uint8_t priv[NOISE_PUBLIC_KEY_LEN], pub[NOISE_PUBLIC_KEY_LEN];
	bool has_key;
	struct wg_cookie_checker checker;
	struct wg_ratelimiter rl;
	wg_peer *peers_head, *peers_tail;
	uint32_t npeers;
	wg_peer **peer_buckets;
	uint32_t peer_nbuckets;
	struct wg_index_table index;
	struct wg_allowedips aip;
	uint16_t listen_port;
	uint32_t fwmark;
	uint32_t mtu;
	uint32_t flags;
	int load_mode;
	uint32_t load_threshold;
	uint64_t load_window_ms;
	uint32_t load_window_count;
	uint64_t under_load_until;
	uint64_t load_last_ms;
	bool load_seen;
	struct wg_device_stats stats;
	uint64_t next_deadline;
	uint8_t *rx_buf, *tx_buf;            /* WG_MAX_DATAGRAM each, with the AEAD's room (wg_device.c) */
	uint8_t jitter_pool[WG_JITTER_POOL]; /* wg_dev_jitter_random's batch */
	uint8_t jitter_left;
};

/* wg_device.c */
void wg_dev_random(wg_device *dev, void *buf, size_t len);
/* Randomness that need not come from the kernel per call (timer jitter):
 * taken from a batch, refilled WG_JITTER_POOL bytes at a time. With
 * ops.random set it is wg_dev_random, so scripted draws stay in order. */
void wg_dev_jitter_random(wg_device *dev, void *buf, size_t len);
uint64_t wg_dev_wall_ns(wg_device *dev);
/* Counts a drop and returns the reason (for `return wg_drop_count(...)`). */
int wg_drop_count(wg_device *dev, int reason);
bool wg_dev_under_load(wg_device *dev, uint64_t now_ms);
void wg_dev_note_handshake_message(wg_device *dev, uint64_t now_ms);

/* index.c */
int wg_index_init(struct wg_index_table *t);
void wg_index_free(struct wg_index_table *t);
/* Registers a fresh random index for (kind, peer, kp); 0, -ENOMEM, or
 * -EAGAIN if the random source keeps repeating itself. */
int wg_index_add(wg_device *dev, enum wg_index_kind kind, wg_peer *peer, struct wg_keypair *kp, uint32_t *out);
struct wg_index_entry *wg_index_find(const struct wg_index_table *t, uint32_t index);
void wg_index_del(struct wg_index_table *t, uint32_t index);

/* peer.c */
wg_peer *wg_peer_lookup(const wg_device *dev, const uint8_t pub[NOISE_PUBLIC_KEY_LEN]);

/* allowedips.c */
int wg_aip_insert(struct wg_allowedips *a, int family, const uint8_t *addr, int cidr, wg_peer *peer);
int wg_aip_remove(struct wg_allowedips *a, int family, const uint8_t *addr, int cidr, wg_peer *peer);
void wg_aip_remove_by_peer(struct wg_allowedips *a, wg_peer *peer);
wg_peer *wg_aip_lookup(const struct wg_allowedips *a, int family, const uint8_t *addr);
size_t wg_aip_list(const wg_peer *peer, struct wg_allowed_ip *out, size_t max);
void wg_aip_foreach(const wg_peer *peer, void (*fn)(void *ctx, const struct wg_allowed_ip *ip), void *ctx);
/* Frees both tries (the peers must be dropped by the caller). */
void wg_aip_free(struct wg_allowedips *a);

/* noise.c */
void wg_noise_precompute(wg_device *dev, wg_peer *peer);
int wg_noise_create_initiation(wg_device *dev, wg_peer *peer, uint8_t msg[WG_INITIATION_LEN]);
int wg_noise_consume_initiation(wg_device *dev, uint64_t now_ms, const uint8_t *msg, wg_peer **out);
int wg_noise_create_response(wg_device *dev, wg_peer *peer, uint8_t msg[WG_RESPONSE_LEN]);
int wg_noise_consume_response(wg_device *dev, const uint8_t *msg, wg_peer **out);
int wg_noise_begin_session(wg_device *dev, wg_peer *peer, uint64_t now_ms);
/* Promotes `next` when its first packet arrives; true if it did. */
bool wg_noise_received_with_keypair(wg_device *dev, wg_peer *peer, struct wg_keypair *kp);
void wg_noise_handshake_clear(wg_device *dev, wg_peer *peer);
void wg_noise_keypairs_clear(wg_device *dev, wg_peer *peer);
/* Stops sending on current/next (private key change). */
void wg_noise_expire_keypairs(wg_device *dev, wg_peer *peer);

/* cookie.c */
void wg_cookie_checker_init(wg_device *dev);
void wg_cookie_gen_init(wg_peer *peer);
void wg_cookie_add_macs(wg_device *dev, wg_peer *peer, uint8_t *msg, size_t len, uint64_t now_ms);
bool wg_cookie_check_mac1(wg_device *dev, const uint8_t *msg, size_t len);
bool wg_cookie_check_mac2(wg_device *dev, const uint8_t *msg, size_t len, const wg_endpoint *from, uint64_t now_ms);
void wg_cookie_send_reply(wg_device *dev, const uint8_t *msg, size_t len, const wg_endpoint *from, uint64_t now_ms);
int wg_cookie_consume_reply(wg_device *dev, const uint8_t *msg, uint64_t now_ms);

/* ratelimiter.c */
int wg_rl_init(struct wg_ratelimiter *rl, wg_device *dev);
void wg_rl_free(struct wg_ratelimiter *rl);
bool wg_rl_allow(struct wg_ratelimiter *rl, const wg_endpoint *from, uint64_t now_ms);

/* timers.c */
void wg_timers_init(wg_peer *peer);
void wg_timers_stop(wg_peer *peer);
void wg_timers_data_sent(wg_device *dev, wg_peer *peer, uint64_t now_ms);
void wg_timers_data_received(wg_device *dev, wg_peer *peer, uint64_t now_ms);
void wg_timers_any_authenticated_packet_sent(wg_peer *peer);
void wg_timers_any_authenticated_packet_received(wg_peer *peer);
void wg_timers_handshake_initiated(wg_device *dev, wg_peer *peer, uint64_t now_ms);
void wg_timers_handshake_complete(wg_device *dev, wg_peer *peer, uint64_t now_ms);
void wg_timers_session_derived(wg_device *dev, wg_peer *peer, uint64_t now_ms);
void wg_timers_any_authenticated_packet_traversal(wg_device *dev, wg_peer *peer, uint64_t now_ms);
/* Runs the peer's due timers; returns its next deadline. */
uint64_t wg_timers_run(wg_device *dev, wg_peer *peer, uint64_t now_ms);
uint64_t wg_timers_next(const wg_peer *peer);

/* endpoint.c: text helpers shared with wg_uapi.c */
int wg_format_ip(int family, const uint8_t *addr, char *buf, size_t cap);
int wg_parse_uint(const char *s, size_t len, uint64_t max, uint64_t *out);
int wg_parse_ip(const char *s, size_t len, int *family, uint8_t out[WG_IP6_LEN]);

/* send.c */
void wg_send_handshake_initiation(wg_device *dev, wg_peer *peer, uint64_t now_ms, bool retry);
void wg_send_handshake_response(wg_device *dev, wg_peer *peer, uint64_t now_ms);
void wg_send_keepalive(wg_device *dev, wg_peer *peer, uint64_t now_ms);
void wg_send_staged(wg_device *dev, wg_peer *peer, uint64_t now_ms);
void wg_staged_purge(wg_device *dev, wg_peer *peer, int reason);
/* Hands a datagram to ops->send (if the peer has an endpoint), counting it. */
void wg_transmit(wg_device *dev, wg_peer *peer, const uint8_t *data, size_t len);

#endif
