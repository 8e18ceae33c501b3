/* tr: tap points for packet-flow tracing (see trace_py.h for the hops).
 *
 * A tap is one line at a hop:
 *     TR_TAP(pkt, TR_HOP_NS_OUT, TR_OBJ(h), NULL, data, len);
 * It compiles to one predictable branch on the global enabled flag; the
 * arguments are evaluated and the record written only while a capture
 * runs. Records go into the calling thread's ring (no lock, no syscall);
 * a full ring counts the record as overflow. */
#ifndef SPANZA_TR_TRACE_H
#define SPANZA_TR_TRACE_H

#include <stdatomic.h>
#include <stdint.h>
#include <sys/socket.h>

#include "trace/trace_py.h"

extern atomic_int tr_enabled;

#define TR_ON() __builtin_expect(atomic_load_explicit(&tr_enabled, memory_order_relaxed) != 0, 0)
#define TR_TAP(kind, ...)                       \
	do {                                    \
		if (TR_ON())                    \
			tr_##kind(__VA_ARGS__); \
	} while (0)
#define TR_OBJ(p) ((uint64_t)(uintptr_t)(p))

/* A packet (key: the peer's 32-byte key or NULL). */
void tr_pkt(int hop, uint64_t obj, const uint8_t *key, const uint8_t *data, size_t len);
/* A UDP datagram to/from `remote`, on local port lport. */
void tr_udp(int hop, uint64_t obj, const uint8_t *key, const struct sockaddr *remote, uint16_t lport,
	    const uint8_t *data, size_t len);
/* Plaintext at a WireGuard keypair: receiver index and counter. */
void tr_wg(int hop, uint64_t obj, const uint8_t *key, uint32_t index, uint64_t counter, const uint8_t *data,
	   size_t len);
/* A DERP frame built from its parts: type, then key (32 bytes, if not
 * NULL) and data as the payload. peer: the key the record concerns. */
void tr_derp(int hop, uint64_t obj, const uint8_t *peer, int frame_type, const uint8_t *key, const uint8_t *data,
	     size_t len);
/* An encoded DERP frame (header included); key: the peer it concerns. */
void tr_frame(int hop, uint64_t obj, const uint8_t *key, const uint8_t *frame, size_t len);
/* A drop. data NULL: the packet is the last one this thread recorded in
 * the current loop callback (its seq goes into ref). */
void tr_drop(int hop, uint64_t obj, const uint8_t *key, int reason, const uint8_t *data, size_t len);
/* `count` packets lost at once (no packet to show). */
void tr_lost(int hop, uint64_t obj, int reason, uint64_t count);
/* A handshake's keys for the key log: 4 x 32 bytes in the key-log order. */
void tr_keys(uint64_t obj, const uint8_t *keys128);
/* A loop callback begins: no packet is current. */
void tr_ctx_clear(void);

#endif
