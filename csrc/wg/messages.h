/* WireGuard wire format and protocol constants (spec sections 2 and 5). */
#ifndef SPANZA_WG_MESSAGES_H
#define SPANZA_WG_MESSAGES_H

#include <stdint.h>
#include <string.h>

#include "crypto/crypto.h"

/* Sizes, in the kernel's names (drivers/net/wireguard/messages.h). */
#define NOISE_PUBLIC_KEY_LEN SPZ_X25519_KEY_LEN  /* also a private key, a DH result */
#define NOISE_SYMMETRIC_KEY_LEN SPZ_AEAD_KEY_LEN /* AEAD keys, the PSK */
#define NOISE_TIMESTAMP_LEN SPZ_TAI64N_LEN
#define NOISE_AUTHTAG_LEN SPZ_AEAD_TAG_LEN
#define NOISE_HASH_LEN SPZ_HASH_LEN /* the hash and the chaining key */
#define NOISE_ENCRYPTED_LEN(plain) ((plain) + NOISE_AUTHTAG_LEN)
#define COOKIE_LEN SPZ_MAC_LEN /* a cookie, mac1, mac2 */
#define COOKIE_NONCE_LEN SPZ_XAEAD_NONCE_LEN
#define COOKIE_SECRET_LEN NOISE_HASH_LEN /* the responder's changing secret */

#define WG_MSG_INITIATION 1
#define WG_MSG_RESPONSE 2
#define WG_MSG_COOKIE 3
#define WG_MSG_DATA 4

/* Offsets inside the messages: the type byte and 3 reserved bytes, then
 * the fields in order (spec section 5.4). */
#define WG_MSG_HEADER_LEN 4
#define WG_INDEX_LEN 4
#define WG_COUNTER_LEN 8
#define WG_INIT_SENDER WG_MSG_HEADER_LEN
#define WG_INIT_EPHEMERAL (WG_INIT_SENDER + WG_INDEX_LEN)
#define WG_INIT_STATIC (WG_INIT_EPHEMERAL + NOISE_PUBLIC_KEY_LEN)
#define WG_INIT_TIMESTAMP (WG_INIT_STATIC + NOISE_ENCRYPTED_LEN(NOISE_PUBLIC_KEY_LEN))
#define WG_INIT_MAC1 (WG_INIT_TIMESTAMP + NOISE_ENCRYPTED_LEN(NOISE_TIMESTAMP_LEN))
#define WG_INIT_MAC2 (WG_INIT_MAC1 + COOKIE_LEN)
#define WG_RESP_SENDER WG_MSG_HEADER_LEN
#define WG_RESP_RECEIVER (WG_RESP_SENDER + WG_INDEX_LEN)
#define WG_RESP_EPHEMERAL (WG_RESP_RECEIVER + WG_INDEX_LEN)
#define WG_RESP_EMPTY (WG_RESP_EPHEMERAL + NOISE_PUBLIC_KEY_LEN)
#define WG_RESP_MAC1 (WG_RESP_EMPTY + NOISE_ENCRYPTED_LEN(0))
#define WG_RESP_MAC2 (WG_RESP_MAC1 + COOKIE_LEN)
#define WG_COOKIE_RECEIVER WG_MSG_HEADER_LEN
#define WG_COOKIE_NONCE (WG_COOKIE_RECEIVER + WG_INDEX_LEN)
#define WG_COOKIE_ENCRYPTED (WG_COOKIE_NONCE + COOKIE_NONCE_LEN)
#define WG_DATA_RECEIVER WG_MSG_HEADER_LEN
#define WG_DATA_COUNTER (WG_DATA_RECEIVER + WG_INDEX_LEN)

/* Whole messages (the cookie reply is WG_COOKIE_LEN; one cookie is COOKIE_LEN). */
#define WG_INITIATION_LEN (WG_INIT_MAC2 + COOKIE_LEN)
#define WG_RESPONSE_LEN (WG_RESP_MAC2 + COOKIE_LEN)
#define WG_COOKIE_LEN (WG_COOKIE_ENCRYPTED + NOISE_ENCRYPTED_LEN(COOKIE_LEN))
#define WG_DATA_HEADER_LEN (WG_DATA_COUNTER + WG_COUNTER_LEN)
#define WG_DATA_MIN_LEN (WG_DATA_HEADER_LEN + NOISE_AUTHTAG_LEN) /* a keepalive */
_Static_assert(WG_INITIATION_LEN == 148 && WG_RESPONSE_LEN == 92 && WG_COOKIE_LEN == 64 && WG_DATA_HEADER_LEN == 16 &&
		       WG_DATA_MIN_LEN == 32,
	       "message sizes of spec section 5.4");

/* Timing, in milliseconds, and limits. */
#define WG_REKEY_AFTER_MESSAGES (1ULL << 60)
#define WG_REJECT_AFTER_MESSAGES (UINT64_MAX - (1ULL << 13)) /* 2^64 - 2^13 - 1 */
#define WG_REKEY_AFTER_TIME 120000ULL
#define WG_REJECT_AFTER_TIME 180000ULL
#define WG_REKEY_ATTEMPT_TIME 90000ULL
#define WG_REKEY_TIMEOUT 5000ULL
#define WG_REKEY_TIMEOUT_JITTER_MAX 334 /* 0..333 ms */
#define WG_KEEPALIVE_TIMEOUT 10000ULL
#define WG_COOKIE_REFRESH_TIME 120000ULL
#define WG_ZERO_KEY_MATERIAL_TIME (3 * WG_REJECT_AFTER_TIME)
#define WG_MS_PER_S 1000ULL
/* A cookie is used for 120 - 5 s (kernel): it never outlives the secret. */
#define WG_COOKIE_VALID_TIME (WG_COOKIE_REFRESH_TIME - 5000ULL)
#define WG_MAX_TIMER_HANDSHAKES (WG_REKEY_ATTEMPT_TIME / WG_REKEY_TIMEOUT) /* 18 */
#define WG_INITIATION_MIN_INTERVAL 20ULL                                   /* 50 initiations per second per peer */
#define WG_MAX_STAGED 128
#define WG_MAX_PEERS (1u << 16)
#define WG_UNDER_LOAD_HOLD 1000ULL
#define WG_DEFAULT_LOAD_THRESHOLD 128

static inline uint32_t wg_le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline uint64_t wg_le64(const uint8_t *p) { return (uint64_t)wg_le32(p) | (uint64_t)wg_le32(p + 4) << 32; }

static inline void wg_put_le32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static inline void wg_put_le64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

#endif
