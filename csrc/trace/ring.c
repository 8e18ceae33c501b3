/* Record rings, one per producing thread: the packet path never takes a
 * lock or makes a syscall to record (only its first record on a thread
 * allocates the ring, outside the lock, then links it in). Records are
 * contiguous; one that does not fit before the end leaves a filler and
 * starts at offset 0. A record that does not fit at all is counted as
 * overflow: the oldest records are never overwritten under the reader. */
#include "trace/ring.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define TR_CACHE_LINE 64

/* head and the producer's counters on one cache line, tail on another, so
 * the producer writes without contending with the reader. */
struct tr_ring {
	struct tr_ring *next; /* registry (reg_mu) */
	uint8_t *buf;
	size_t cap;
	atomic_bool dead;                              /* its thread left it: drain, then free */
	_Alignas(TR_CACHE_LINE) _Atomic uint64_t head; /* bytes ever written: producer */
	_Atomic uint64_t records, overflow;            /* written by the producer only */
	uint64_t id;                                   /* high bits of its records' seq */
	uint64_t n;                                    /* producer: records numbered so far */
	uint64_t pending;                              /* producer: bytes reserved, not yet committed */
	uint64_t tail_seen;                            /* producer: the last tail it read */
	_Alignas(TR_CACHE_LINE) _Atomic uint64_t tail; /* bytes ever consumed: consumer */
};

static pthread_mutex_t reg_mu = PTHREAD_MUTEX_INITIALIZER;
static struct tr_ring *rings;
static uint64_t gone_records, gone_overflow; /* of freed rings (reg_mu) */
static uint64_t next_id = 1;                 /* reg_mu */
static pthread_key_t ring_key;
static pthread_once_t key_once = PTHREAD_ONCE_INIT;
static _Thread_local struct tr_ring *mine;
static _Atomic uint64_t lost_alloc; /* records lost because a ring could not be allocated */

static void thread_exit(void *arg)
{
	struct tr_ring *r = arg;
	atomic_store_explicit(&r->dead, true, memory_order_release);
}

static void make_key(void) { pthread_key_create(&ring_key, thread_exit); }

/* The calling thread's ring at the wanted size: a new one replaces a ring
 * of another size (the old one is drained, then freed, by the consumer). */
static struct tr_ring *my_ring(uint32_t ring_bytes)
{
	size_t cap = (size_t)ring_bytes & ~(size_t)(TR_ALIGN - 1);
	if (mine && mine->cap == cap)
		return mine;
	struct tr_ring *r = aligned_alloc(TR_CACHE_LINE, sizeof(struct tr_ring));
	uint8_t *buf = r ? malloc(cap) : NULL;
	if (!buf) {
		free(r);
		return NULL;
	}
	memset(r, 0, sizeof(*r));
	r->buf = buf;
	r->cap = cap;
	pthread_once(&key_once, make_key);
	pthread_mutex_lock(&reg_mu);
	r->id = next_id++;
	r->next = rings;
	rings = r;
	pthread_mutex_unlock(&reg_mu);
	if (mine)
		atomic_store_explicit(&mine->dead, true, memory_order_release);
	mine = r;
	pthread_setspecific(ring_key, r);
	return r;
}

/* Counters only the producer writes: a plain add, no locked instruction. */
static void bump(_Atomic uint64_t *c, uint64_t n)
{
	atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n, memory_order_relaxed);
}

void *tr_ring_reserve(size_t size, uint32_t ring_bytes)
{
	struct tr_ring *r = my_ring(ring_bytes);
	if (!r) {
		atomic_fetch_add_explicit(&lost_alloc, 1, memory_order_relaxed);
		return NULL;
	}
	uint64_t head = atomic_load_explicit(&r->head, memory_order_relaxed);
	size_t off = (size_t)(head % r->cap);
	size_t filler = off + size > r->cap ? r->cap - off : 0;
	/* The reader's tail only moves forward: re-read it only when the one
	 * seen last says the ring is full. */
	if ((head - r->tail_seen) + filler + size > r->cap)
		r->tail_seen = atomic_load_explicit(&r->tail, memory_order_acquire);
	if (size > r->cap || (head - r->tail_seen) + filler + size > r->cap) {
		bump(&r->overflow, 1);
		return NULL;
	}
	if (filler) {
		struct tr_rec f = {.size = (uint32_t)filler, .hop = 0};
		memcpy(r->buf + off, &f, sizeof(f.size) + sizeof(f.hop));
		off = 0;
	}
	r->pending = filler + size;
	return r->buf + off;
}

uint64_t tr_ring_seq(void) { return mine->id << TR_SEQ_RING_SHIFT | ++mine->n; }

void tr_ring_commit(void)
{
	struct tr_ring *r = mine;
	bump(&r->records, 1);
	atomic_store_explicit(&r->head, atomic_load_explicit(&r->head, memory_order_relaxed) + r->pending,
			      memory_order_release);
	r->pending = 0;
}

/* ---- consumer ---- */

static void free_ring(struct tr_ring **link)
{
	struct tr_ring *r = *link;
	*link = r->next;
	gone_records += atomic_load(&r->records);
	gone_overflow += atomic_load(&r->overflow);
	explicit_bzero(r->buf, r->cap); /* undrained key records */
	free(r->buf);
	free(r);
}

void tr_ring_discard_all(void)
{
	pthread_mutex_lock(&reg_mu);
	for (struct tr_ring **l = &rings; *l;) {
		struct tr_ring *r = *l;
		atomic_store_explicit(&r->tail, atomic_load_explicit(&r->head, memory_order_acquire),
				      memory_order_release);
		if (atomic_load_explicit(&r->dead, memory_order_acquire))
			free_ring(l);
		else
			l = &r->next;
	}
	pthread_mutex_unlock(&reg_mu);
}

/* Copies records of one ring into out[0, cap): bytes copied. Fillers are
 * skipped. Stops at the first record that does not fit. */
static size_t drain_one(struct tr_ring *r, uint8_t *out, size_t cap, size_t *records)
{
	uint64_t head = atomic_load_explicit(&r->head, memory_order_acquire);
	uint64_t tail = atomic_load_explicit(&r->tail, memory_order_relaxed);
	size_t used = 0;
	while (tail < head) {
		const uint8_t *p = r->buf + (size_t)(tail % r->cap);
		struct tr_rec h;
		memcpy(&h, p, sizeof(h.size) + sizeof(h.hop));
		if (h.hop != 0) {
			if (used + h.size > cap)
				break;
			memcpy(out + used, p, h.size);
			used += h.size;
			(*records)++;
			/* Handshake keys are secrets: none stay behind in the ring. */
			if (h.hop == TR_HOP_KEYS)
				explicit_bzero(r->buf + (size_t)(tail % r->cap), h.size);
		}
		tail += h.size;
	}
	atomic_store_explicit(&r->tail, tail, memory_order_release);
	return used;
}

size_t tr_ring_drain(uint8_t *buf, size_t cap, size_t *records)
{
	size_t used = 0;
	*records = 0;
	pthread_mutex_lock(&reg_mu);
	for (struct tr_ring **l = &rings; *l;) {
		struct tr_ring *r = *l;
		bool dead = atomic_load_explicit(&r->dead, memory_order_acquire);
		used += drain_one(r, buf + used, cap - used, records);
		if (dead && atomic_load(&r->tail) == atomic_load(&r->head))
			free_ring(l);
		else
			l = &r->next;
	}
	pthread_mutex_unlock(&reg_mu);
	return used;
}

void tr_ring_stats(struct tr_stats *out)
{
	pthread_mutex_lock(&reg_mu);
	out->records = gone_records;
	out->overflow = gone_overflow + atomic_load(&lost_alloc);
	out->rings = 0;
	out->ring_bytes = 0;
	for (struct tr_ring *r = rings; r; r = r->next) {
		out->records += atomic_load(&r->records);
		out->overflow += atomic_load(&r->overflow);
		out->rings++;
		out->ring_bytes += r->cap;
	}
	pthread_mutex_unlock(&reg_mu);
}
