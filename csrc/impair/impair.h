/* imp: a seeded impairment engine for one direction of one hop.
 *
 * A hop's send (or receive) path hands each packet to imp_input instead of
 * sending it; the engine drops, corrupts, duplicates, delays, rate-limits
 * and reorders it as configured, and passes what survives to the hop's
 * deliver function: at once (inside imp_input) or later from a runtime
 * timer (never a sleep). Held packets are copies in bounded FIFOs: the
 * bandwidth queue (cfg.queue packets) and the delay line (IMP_MAX_HELD).
 * Every random choice comes from the engine's own PRNG (xoshiro256**
 * seeded by splitmix64 from cfg.seed), so the same packets give the same
 * outcome on every run.
 *
 * Hops keep a slot (struct imp *, NULL = not impaired: the fast path is
 * one pointer test) per direction and use imp_slot_op from their loop
 * thread. Everything here runs on the loop thread. */
#ifndef SPANZA_IMP_IMPAIR_H
#define SPANZA_IMP_IMPAIR_H

#include <stddef.h>
#include <stdint.h>

#include "impair/impair_py.h"
#include "runtime/rt.h"

#define IMP_ADDR_MAX 160   /* per-packet routing info a hop keeps (key + sockaddr) */
#define IMP_MAX_HELD 65536 /* packets in the delay line */
#define IMP_MAX_HELD_BYTES (96u << 20)
#define IMP_DEFAULT_QUEUE 1000
#define IMP_MAX_PACKET 65536

struct imp;

/* Passes a surviving packet on; addr is what the hop gave imp_input. */
typedef void (*imp_deliver_fn)(void *ctx, const void *addr, size_t alen, const uint8_t *data, size_t len);

/* 0 or -EINVAL (a probability outside [0, 1], a bad policy...). */
int imp_config_check(const struct imp_config *cfg);

/* One packet through the impairment (alen <= IMP_ADDR_MAX). */
void imp_input(struct imp *m, const void *addr, size_t alen, const uint8_t *data, size_t len);

/* Loop thread: SET / STATS / LIFT (IMP_OP_*) on a hop's slot; fn and ctx
 * are the hop's deliver function (used when SET creates the engine). */
int imp_slot_op(struct imp **slot, rt_t *rt, int op, const struct imp_config *cfg, imp_deliver_fn fn, void *ctx,
		struct imp_stats *out);
/* The hop is going away: drops what is held (counted) and frees. Safe
 * from inside a deliver callback of this very engine. */
void imp_slot_free(struct imp **slot);

#endif
