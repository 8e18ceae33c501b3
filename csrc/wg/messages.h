/* WireGuard wire format and protocol constants (spec sections 2 and 5). */
#ifndef SPANZA_WG_MESSAGES_H
#define SPANZA_WG_MESSAGES_H

#include <stdint.h>
#include <string.h>

#define WG_MSG_INITIATION 1
#define WG_MSG_RESPONSE 2
#define WG_MSG_COOKIE 3
#define WG_MSG_DATA 4

#define WG_INITIATION_LEN 148
#define WG_RESPONSE_LEN 92
#define WG_COOKIE_LEN 64
#define WG_DATA_HEADER_LEN 16
#define WG_DATA_MIN_LEN 32 /* header + tag: a keepalive */

/* Offsets inside the messages. */
#define WG_INIT_SENDER 4
#define WG_INIT_EPHEMERAL 8
#define WG_INIT_STATIC 40
#define WG_INIT_TIMESTAMP 88
#define WG_INIT_MAC1 116
#define WG_INIT_MAC2 132
#define WG_RESP_SENDER 4
#define WG_RESP_RECEIVER 8
#define WG_RESP_EPHEMERAL 12
#define WG_RESP_EMPTY 44
#define WG_RESP_MAC1 60
#define WG_RESP_MAC2 76
#define WG_COOKIE_RECEIVER 4
#define WG_COOKIE_NONCE 8
#define WG_COOKIE_ENCRYPTED 32
#define WG_DATA_RECEIVER 4
#define WG_DATA_COUNTER 8

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
/* A cookie is used for 120 - 5 s (kernel): it never outlives the secret. */
#define WG_COOKIE_VALID_TIME (WG_COOKIE_REFRESH_TIME - 5000ULL)
#define WG_MAX_TIMER_HANDSHAKES (WG_REKEY_ATTEMPT_TIME / WG_REKEY_TIMEOUT) /* 18 */
#define WG_INITIATION_MIN_INTERVAL 20ULL /* 50 initiations per second per peer */
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
