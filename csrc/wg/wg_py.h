/* WireGuard core (sans-IO): the declarations Python sees through cffi.
 * csrc/wg/wg.h includes this and adds what only C callers need (the ops
 * structure with callbacks, sockaddr conversion, the UAPI request helper).
 *
 * Conventions
 * - A wg_device is single-threaded: only one thread may call into a device
 *   (and its peers) at a time; the I/O layer uses the runtime's loop thread.
 * - Time is passed in: `now_ms` is a monotonic millisecond clock chosen by the
 *   caller (a virtual clock in tests); it must never go backwards. The wall
 *   clock (TAI64N timestamps, last-handshake time) comes from ops->wall_ns.
 * - Functions return 0 or a negative errno, unless documented otherwise.
 * - Input from the network is never trusted: a bad datagram is dropped and
 *   counted under a wg_drop reason, nothing else happens.
 * - wg_peer pointers stay valid until the peer is removed (wg_peer_remove,
 *   wg_peer_remove_all, UAPI remove/replace_peers, a private key change that
 *   equals the peer's public key) or the device is freed.
 */
#ifndef SPANZA_WG_PY_H
#define SPANZA_WG_PY_H

#include <stddef.h>
#include <stdint.h>

typedef struct wg_device wg_device;
typedef struct wg_peer wg_peer;

#define WG_KEY_LEN 32
#define WG_IP4_LEN 4
#define WG_IP6_LEN 16
/* The largest endpoint address: a DERP key. */
#define WG_ENDPOINT_ADDR_LEN 32
#define WG_DEFAULT_MTU 1420
/* Largest IP packet accepted by wg_device_send / delivered. */
#define WG_MAX_PACKET 65535
/* Largest datagram the core emits or accepts: 16-byte header + padded
 * packet + 16-byte tag. Buffers of this size always suffice. */
#define WG_MAX_DATAGRAM 65584

/* Endpoint families. AF_INET and AF_INET6 have the Linux values; WG_AF_DERP
 * is ours: a peer reached through a DERP relay, addressed by the relay
 * client's 32-byte public key (UAPI text "derp:<64 lowercase hex>"). */
#define WG_AF_NONE 0
#define WG_AF_INET 2
#define WG_AF_INET6 10
#define WG_AF_DERP 0x4445

/* An endpoint in a plain form (no sockaddr, so Python and C share it). */
typedef struct wg_endpoint {
	uint16_t family;                    /* WG_AF_NONE / WG_AF_INET / WG_AF_INET6 / WG_AF_DERP */
	uint16_t port;                      /* UDP port, host byte order (0 for DERP) */
	uint32_t scope_id;                  /* IPv6 zone index, else 0 */
	uint8_t addr[WG_ENDPOINT_ADDR_LEN]; /* IPv4: 4 bytes, IPv6: 16 bytes, DERP: 32-byte key */
} wg_endpoint;

/* Why a datagram or packet was dropped. Counted per device (wg_device_stats
 * drops[reason]); wg_device_receive / wg_device_send also return it. */
enum wg_drop {
	WG_DROP_NONE = 0,
	WG_DROP_TRUNCATED = 1,           /* shorter than its type requires */
	WG_DROP_OVERSIZED = 2,           /* longer than its type allows */
	WG_DROP_BAD_TYPE = 3,            /* unknown type or non-zero reserved bytes */
	WG_DROP_NO_PRIVATE_KEY = 4,      /* device has no identity yet */
	WG_DROP_BAD_MAC1 = 5,            /* mac1 did not verify */
	WG_DROP_COOKIE_NEEDED = 6,       /* under load, mac2 missing/bad: cookie reply sent */
	WG_DROP_RATE_LIMITED = 7,        /* under load, source over its token bucket */
	WG_DROP_HANDSHAKE_DECRYPT = 8,   /* handshake AEAD failed (or low-order DH) */
	WG_DROP_UNKNOWN_PEER = 9,        /* initiation from a static key that is not a peer */
	WG_DROP_STALE_TIMESTAMP = 10,    /* TAI64N not greater than the last accepted */
	WG_DROP_INITIATION_FLOOD = 11,   /* < 20 ms since this peer's last initiation */
	WG_DROP_UNKNOWN_INDEX = 12,      /* receiver index not ours (or wrong state) */
	WG_DROP_BAD_COOKIE = 13,         /* cookie reply did not decrypt */
	WG_DROP_KEY_EXPIRED = 14,        /* keypair too old / invalid / counter too high */
	WG_DROP_DATA_DECRYPT = 15,       /* transport data tag did not verify */
	WG_DROP_REPLAY = 16,             /* counter already seen or left of the window */
	WG_DROP_BAD_IP = 17,             /* decrypted payload is not a valid IPv4/IPv6 packet */
	WG_DROP_SOURCE_NOT_ALLOWED = 18, /* inner source address not allowed for the peer */
	WG_DROP_NO_PEER = 19,            /* send: no allowed-IPs match for the destination */
	WG_DROP_NO_ENDPOINT = 20,        /* send: the peer has no endpoint */
	WG_DROP_STAGED_OVERFLOW = 21,    /* send: staged queue full, oldest dropped */
	WG_DROP_HANDSHAKE_GAVE_UP = 22,  /* staged packets dropped when retries ran out */
	WG_DROP_NO_MEMORY = 23,          /* allocation failed */
	WG_DROP_PEER_REMOVED = 24,       /* staged packets dropped with their peer/keys */
	WG_DROP__COUNT = 25
};
/* Short stable name of a drop reason ("truncated", "bad_mac1", ...). */
const char *wg_drop_name(int reason);

/* Under-load mode (cookie mechanism). AUTO: under load when more than
 * `threshold` handshake messages arrived within the last second, and for one
 * second after; FORCE: always under load (tests, hostile networks). */
#define WG_LOAD_AUTO 0
#define WG_LOAD_FORCE 1
#define WG_LOAD_NEVER 2

/* Device flags (wg_device_set_flags). */
/* Do not clear the low 24 bits of TAI64N nanoseconds (test vectors). */
#define WG_FLAG_NO_WHITENING 1

struct wg_device_stats {
	uint64_t rx_datagrams; /* datagrams given to wg_device_receive */
	uint64_t rx_bytes;
	uint64_t tx_datagrams; /* datagrams handed to ops->send */
	uint64_t tx_bytes;
	uint64_t rx_packets; /* IP packets delivered */
	uint64_t tx_packets; /* IP packets encrypted and sent */
	uint64_t initiations_sent;
	uint64_t initiations_received; /* valid, accepted */
	uint64_t responses_sent;
	uint64_t responses_received; /* valid, accepted */
	uint64_t cookies_sent;
	uint64_t cookies_received; /* valid, stored */
	uint64_t keepalives_sent;
	uint64_t keepalives_received;
	uint64_t handshakes_completed;
	uint64_t drops[WG_DROP__COUNT];
	uint32_t peers;
	uint32_t under_load; /* 1 while the cookie mechanism is active */
};

struct wg_peer_stats {
	uint64_t rx_bytes;          /* UDP payload bytes received from the peer (UAPI rx_bytes) */
	uint64_t tx_bytes;          /* UDP payload bytes sent to the peer (UAPI tx_bytes) */
	uint64_t rx_packets;        /* IP packets delivered from the peer */
	uint64_t tx_packets;        /* IP packets sent to the peer */
	int64_t last_handshake_sec; /* wall clock of the last completed handshake; 0 = never */
	int64_t last_handshake_nsec;
	uint64_t last_handshake_ms; /* now_ms of it; 0 = never */
	uint64_t handshakes_completed;
	uint32_t handshake_attempts; /* retransmissions of the pending handshake */
	uint32_t staged;             /* packets waiting for a session */
	uint32_t has_current;        /* a keypair usable for sending exists */
	uint32_t has_previous;
	uint32_t has_next;
	uint32_t handshake_state; /* 0 zeroed, 1 initiation created, 2 initiation consumed,
	                               3 response created, 4 response consumed */
	uint64_t current_send_counter;
	uint64_t current_age_ms;       /* age of the current keypair (0 if none) */
	uint16_t persistent_keepalive; /* seconds, 0 = off */
	uint16_t has_endpoint;
	wg_endpoint endpoint;
};

/* Allowed IP entry (family WG_AF_INET/WG_AF_INET6, addr masked to cidr). */
struct wg_allowed_ip {
	uint16_t family;
	uint8_t cidr;
	uint8_t addr[WG_IP6_LEN];
};

/* ---- device ---- */
void wg_device_free(wg_device *dev);
/* 32-byte private key (clamped on store), or NULL to remove the identity.
 * Removes a peer whose public key equals the new public key, resets
 * handshakes and stops sending on existing keypairs (receiving still works). */
int wg_device_set_private_key(wg_device *dev, uint64_t now_ms, const uint8_t *key);
/* Copies the (clamped) private / public key; -ENOKEY if none is set. */
int wg_device_private_key(const wg_device *dev, uint8_t *out);
int wg_device_public_key(const wg_device *dev, uint8_t *out);
/* The port UAPI get reports (the I/O layer sets the bound port here). */
void wg_device_set_listen_port(wg_device *dev, uint16_t port);
uint16_t wg_device_listen_port(const wg_device *dev);
void wg_device_set_fwmark(wg_device *dev, uint32_t mark);
uint32_t wg_device_fwmark(const wg_device *dev);
/* Tunnel MTU used for padding (default 1420; 0 = pad without cap). */
void wg_device_set_mtu(wg_device *dev, uint32_t mtu);
void wg_device_set_flags(wg_device *dev, uint32_t flags);
/* mode: WG_LOAD_AUTO / WG_LOAD_FORCE / WG_LOAD_NEVER; threshold: handshake
 * messages per second that switch AUTO to under load (default 128). */
void wg_device_set_under_load(wg_device *dev, int mode, uint32_t threshold);
void wg_device_stats(const wg_device *dev, struct wg_device_stats *out);

/* A datagram from the network. `from` is its outer source. Returns 0 when
 * it was accepted, else the wg_drop reason (> 0). Never fails otherwise. */
int wg_device_receive(wg_device *dev, uint64_t now_ms, const wg_endpoint *from, const uint8_t *dgram, size_t len);
/* An IP packet to send: routed by destination through the allowed IPs,
 * encrypted and sent, or staged while a handshake runs (bounded queue).
 * Returns 0 (sent or staged), else the wg_drop reason (> 0). */
int wg_device_send(wg_device *dev, uint64_t now_ms, const uint8_t *ip, size_t len);
/* Runs all timers due at now_ms; returns the next deadline (UINT64_MAX if none). */
uint64_t wg_device_tick(wg_device *dev, uint64_t now_ms);
/* Earliest pending timer (a lower bound: ticking at it may find nothing due).
 * Check it after every call into the device to re-arm the caller's timer. */
uint64_t wg_device_next_deadline(const wg_device *dev);
/* The peer whose allowed IPs contain addr (4 or 16 bytes), or NULL. */
wg_peer *wg_device_lookup_ip(const wg_device *dev, int family, const uint8_t *addr);
/* Fills out with up to max peers (in creation order); returns the total number. */
size_t wg_device_peers(const wg_device *dev, wg_peer **out, size_t max);

/* ---- peers ---- */
/* Creates a peer: 0 and *out; -EEXIST with *out = the existing peer;
 * -EINVAL if pub is the device's own public key; -ENOSPC/-ENOMEM. */
int wg_peer_add(wg_device *dev, const uint8_t *pub, wg_peer **out);
wg_peer *wg_peer_find(const wg_device *dev, const uint8_t *pub);
void wg_peer_remove(wg_device *dev, wg_peer *peer);
void wg_peer_remove_all(wg_device *dev);
void wg_peer_public_key(const wg_peer *peer, uint8_t *out);
/* 32 bytes, or NULL / all zeros for none. */
void wg_peer_set_preshared_key(wg_peer *peer, const uint8_t *psk);
/* Copies the PSK (zeros if none); returns 1 if one is set, else 0. */
int wg_peer_preshared_key(const wg_peer *peer, uint8_t *out);
/* Sets the endpoint (family WG_AF_NONE clears it). -EINVAL for a bad family. */
int wg_peer_set_endpoint(wg_peer *peer, const wg_endpoint *ep);
/* Copies the endpoint; -ENOENT if none. */
int wg_peer_endpoint(const wg_peer *peer, wg_endpoint *out);
/* Seconds, 0 = off. Going from off to on sends a keepalive at once. */
int wg_peer_set_persistent_keepalive(wg_device *dev, wg_peer *peer, uint64_t now_ms, uint16_t secs);
/* addr is 4 (WG_AF_INET) or 16 (WG_AF_INET6) bytes; host bits are masked.
 * An existing equal prefix moves to this peer. -EINVAL for a bad family/cidr. */
int wg_peer_allowed_ip_add(wg_device *dev, wg_peer *peer, int family, const uint8_t *addr, int cidr);
/* Removes the prefix only if it belongs to this peer; -ENOENT otherwise. */
int wg_peer_allowed_ip_remove(wg_device *dev, wg_peer *peer, int family, const uint8_t *addr, int cidr);
void wg_peer_allowed_ips_clear(wg_device *dev, wg_peer *peer);
/* Fills out with up to max entries (in insertion order); returns the total. */
size_t wg_peer_allowed_ips(const wg_peer *peer, struct wg_allowed_ip *out, size_t max);
void wg_peer_stats(const wg_device *dev, const wg_peer *peer, uint64_t now_ms, struct wg_peer_stats *out);
/* Starts a handshake now (subject to the 5 s rate limit unless force). */
int wg_peer_initiate(wg_device *dev, wg_peer *peer, uint64_t now_ms, int force);
/* Sends a keepalive (or flushes staged packets), handshaking if needed. */
int wg_peer_send_keepalive(wg_device *dev, wg_peer *peer, uint64_t now_ms);

/* ---- endpoints as text ("1.2.3.4:51820", "[fe80::1%2]:51820", "derp:<hex>") ---- */
/* Writes a NUL-terminated string; returns its length or -ENOSPC / -EINVAL. */
int wg_endpoint_format(const wg_endpoint *ep, char *buf, size_t cap);
/* Parses len bytes of text (numeric addresses only); 0 or -EINVAL. */
int wg_endpoint_parse(const char *text, size_t len, wg_endpoint *out);

/* ---- UAPI (wireguard-go's text protocol) ---- */
/* The body of a get reply: "private_key=...\n...errno=0\n\n" (malloc'd,
 * NUL-terminated, free with wg_uapi_free). 0 or -ENOMEM. */
int wg_uapi_get(wg_device *dev, uint64_t now_ms, char **out, size_t *len);
/* Applies the lines of a set request (the text after "set=1\n"; a final
 * blank line is optional). Lines are applied in order; processing stops at
 * the first error. Returns 0 or -errno (-EINVAL, -EPROTO, -EADDRINUSE...). */
int wg_uapi_set(wg_device *dev, uint64_t now_ms, const char *text, size_t len);
void wg_uapi_free(char *p);
/* UAPI framing for a socket server. wg_uapi_request_len: the length of the
 * first complete request in buf (up to and including its terminating blank
 * line), or 0 if more bytes are needed. wg_uapi_request: handles one
 * complete request ("get=1\n\n" or "set=1\n...\n\n") and returns the full
 * reply in *reply (malloc'd, free with wg_uapi_free; ends with "errno=N\n\n").
 * Returns 0, or -EPROTO for an unknown operation (wireguard-go then closes
 * the connection; *reply is NULL), or -ENOMEM. */
size_t wg_uapi_request_len(const char *buf, size_t len);
int wg_uapi_request(wg_device *dev, uint64_t now_ms, const char *req, size_t len, char **reply, size_t *reply_len);

/* ---- wg_tunnel: a device with queues instead of sockets (Python's Tunnel,
 *      tests, fuzzers). Outgoing datagrams and delivered packets are kept in
 *      FIFO queues (bounded: 4096 entries each, oldest dropped). ---- */
typedef struct wg_tunnel wg_tunnel;
/* seed: NULL for real randomness, or seed_len bytes that make every random
 * choice (indices, ephemerals, jitter, cookies) reproducible. */
wg_tunnel *wg_tunnel_new(const uint8_t *seed, size_t seed_len);
void wg_tunnel_free(wg_tunnel *t);
wg_device *wg_tunnel_device(wg_tunnel *t);
/* The wall clock the device sees (ns since the Unix epoch). */
void wg_tunnel_set_wall_ns(wg_tunnel *t, uint64_t wall_ns);
/* Scripted randomness: these bytes are handed out before the RNG's (lets a
 * test inject ephemeral keys and indices: an initiation or a response draws
 * 32 ephemeral bytes, then 4 index bytes). */
int wg_tunnel_push_random(wg_tunnel *t, const uint8_t *bytes, size_t len);
/* Draws from the tunnel's RNG (scripted bytes first, then the seed's stream). */
void wg_tunnel_random(wg_tunnel *t, uint8_t *buf, size_t len);
/* What the core asked to send: copies the oldest datagram into buf (cap >=
 * WG_MAX_DATAGRAM is always enough), its destination into *to, its peer's
 * public key into peer_pub (zeros if none). Returns the length, or -1 if the
 * queue is empty, -ENOSPC if cap is too small. */
int wg_tunnel_pop_outgoing(wg_tunnel *t, wg_endpoint *to, uint8_t *peer_pub, uint8_t *buf, size_t cap);
/* What the core delivered (decrypted, source-checked IP packets). */
int wg_tunnel_pop_delivered(wg_tunnel *t, uint8_t *peer_pub, uint8_t *buf, size_t cap);
/* UAPI listen_port= on a tunnel: this port "is in use" (-EADDRINUSE);
 * port 0 picks one from the RNG. */
void wg_tunnel_set_busy_port(wg_tunnel *t, uint16_t port);
/* Entries dropped because a queue was full. */
uint64_t wg_tunnel_queue_drops(const wg_tunnel *t);

/* ---- test helpers ---- */
/* Runs counters[0..n) through a fresh replay window (rejecting counters >=
 * limit) and writes 1 (accepted) or 0 per counter into accepted. */
void wg_replay_test(const uint64_t *counters, size_t n, uint64_t limit, uint8_t *accepted);

/* Sets the current keypair's next send counter (to reach the message
 * limits in tests); -ENOENT without a current keypair. */
int wg_peer_test_set_send_counter(wg_peer *peer, uint64_t counter);

#endif
