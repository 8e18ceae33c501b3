/* dev_queue: a bounded queue of packets from the loop thread to reader
 * threads (Python's read_packet). One preallocated byte ring, records are
 * [u32 length][bytes][pad to 4]; no allocation per packet. The loop thread
 * never waits: when the ring is full the packet is dropped and counted.
 * Readers wait on a condvar (Python releases the GIL around the call). The
 * lock is held only for memcpy, never across a syscall; the condvar is
 * signalled after unlocking and only when someone waits. */
#ifndef SPANZA_DEV_QUEUE_H
#define SPANZA_DEV_QUEUE_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Locking: mu guards every field below it except ring, cap and max_count
 * (set by dev_queue_init, only read afterwards): the loop thread pushes,
 * reader threads pop, dev_py_stats reads the counters, the closing thread
 * sets closed. cv (with mu) wakes readers (waiters of them wait; readers
 * counts those inside dev_queue_pop) and, on close, dev_queue_destroy
 * waiting for readers to reach 0. */
struct dev_queue {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	uint8_t *ring;
	size_t cap;  /* bytes, a multiple of 4 */
	size_t head; /* next record to read */
	size_t tail; /* next byte to write */
	size_t used; /* bytes between head and tail, including wrap waste */
	size_t count, max_count;
	int waiters, readers;
	bool closed;
	uint64_t pushed, popped, dropped;
};

/* cap_bytes is rounded up to a multiple of 4; max_count bounds the number
 * of queued packets. 0 or -ENOMEM. */
int dev_queue_init(struct dev_queue *q, size_t cap_bytes, size_t max_count);
/* Any thread, never blocks. false when dropped (full or closed). */
bool dev_queue_push(struct dev_queue *q, const uint8_t *data, size_t len);
/* Waits up to timeout_ms (<0: forever) for a packet and copies it into out.
 * Its length, -ETIMEDOUT, -ESHUTDOWN once closed and empty, or -EMSGSIZE
 * (the packet was longer than cap; it is consumed and counted dropped). */
int dev_queue_pop(struct dev_queue *q, uint8_t *out, size_t cap, int timeout_ms);
/* Wakes every reader; later pops drain what is queued, then -ESHUTDOWN. */
void dev_queue_close(struct dev_queue *q);
/* Discards queued packets (counted as dropped). */
void dev_queue_clear(struct dev_queue *q);
/* Waits until no reader is inside pop, then frees the ring. Call after close. */
void dev_queue_destroy(struct dev_queue *q);

#endif
