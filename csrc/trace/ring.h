/* Per-thread record rings (single producer: the thread; single consumer:
 * whoever drains, under the registry lock). Internal to csrc/trace/. */
#ifndef SPANZA_TR_RING_H
#define SPANZA_TR_RING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "trace/trace_py.h"

#define TR_ALIGN 8u
#define TR_REC_SIZE(caplen) ((sizeof(struct tr_rec) + (caplen) + TR_ALIGN - 1) & ~(size_t)(TR_ALIGN - 1))

/* Reserves room for a record of `size` bytes in the calling thread's ring
 * (allocated on first use, at `ring_bytes`): a pointer to write it at, or
 * NULL (counted as overflow). tr_ring_commit publishes it. */
void *tr_ring_reserve(size_t size, uint32_t ring_bytes);
void tr_ring_commit(void);
/* A number for the record just reserved: the ring's id in the high bits,
 * then a count, so no two threads share a counter (ordering across
 * threads is by time). */
#define TR_SEQ_RING_SHIFT 40
uint64_t tr_ring_seq(void);
/* Consumer side (any thread). */
void tr_ring_discard_all(void);
size_t tr_ring_drain(uint8_t *buf, size_t cap, size_t *records);
void tr_ring_stats(struct tr_stats *out);

#endif
