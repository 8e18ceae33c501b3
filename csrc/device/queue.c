/* The packet queue from the loop thread to readers; see queue.h. */
#include "device/queue.h"

#include "base/deadline.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define REC_HDR 4u
#define WRAP_MARK 0xffffffffu

static size_t align4(size_t n) { return (n + 3u) & ~(size_t)3u; }

int dev_queue_init(struct dev_queue *q, size_t cap_bytes, size_t max_count)
{
	memset(q, 0, sizeof(*q));
	q->cap = align4(cap_bytes < 64 ? 64 : cap_bytes);
	q->max_count = max_count ? max_count : 1;
	q->ring = malloc(q->cap);
	if (!q->ring)
		return -ENOMEM;
	spz_cond_init(&q->cv);
	pthread_mutex_init(&q->mu, NULL);
	return 0;
}

static void put_u32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static uint32_t get_u32(const uint8_t *p)
{
	uint32_t v;
	memcpy(&v, p, 4);
	return v;
}

/* Caller holds mu. Records never straddle the end of the ring: when one
 * does not fit, the rest of the ring is marked as waste (always >= 4 bytes,
 * since every offset is a multiple of 4). */
static bool push_locked(struct dev_queue *q, const uint8_t *data, size_t len)
{
	size_t need = REC_HDR + align4(len);
	if (q->closed || len > UINT32_MAX - 4 || q->count >= q->max_count || need > q->cap)
		return false;
	size_t free_bytes = q->cap - q->used;
	size_t room = q->cap - q->tail;
	if (need > room) {
		/* Wrap: the record goes to offset 0, which must be free up to
		 * head; only possible when the tail is ahead of the head. */
		if (room + need > free_bytes)
			return false;
		put_u32(q->ring + q->tail, WRAP_MARK);
		q->used += room;
		q->tail = 0;
	} else if (need > free_bytes) {
		return false;
	}
	put_u32(q->ring + q->tail, (uint32_t)len);
	memcpy(q->ring + q->tail + REC_HDR, data, len);
	q->tail += need;
	if (q->tail == q->cap)
		q->tail = 0;
	q->used += need;
	q->count++;
	q->pushed++;
	return true;
}

bool dev_queue_push(struct dev_queue *q, const uint8_t *data, size_t len)
{
	pthread_mutex_lock(&q->mu);
	bool ok = push_locked(q, data, len);
	if (!ok)
		q->dropped++;
	bool wake = ok && q->waiters > 0;
	pthread_mutex_unlock(&q->mu);
	if (wake)
		pthread_cond_signal(&q->cv);
	return ok;
}

/* Caller holds mu and q->count > 0. Returns the record's length and where
 * its bytes are, and advances head. */
static size_t pop_locked(struct dev_queue *q, const uint8_t **data)
{
	uint32_t len = get_u32(q->ring + q->head);
	if (len == WRAP_MARK) {
		q->used -= q->cap - q->head;
		q->head = 0;
		len = get_u32(q->ring);
	}
	size_t need = REC_HDR + align4(len);
	*data = q->ring + q->head + REC_HDR;
	q->head += need;
	if (q->head == q->cap)
		q->head = 0;
	q->used -= need;
	q->count--;
	if (q->count == 0) { /* empty: restart at 0 so big records fit again */
		q->head = q->tail = 0;
		q->used = 0;
	}
	return len;
}

int dev_queue_pop(struct dev_queue *q, uint8_t *out, size_t cap, int timeout_ms)
{
	struct timespec ts;
	const struct timespec *until = spz_deadline_in(&ts, timeout_ms);
	int rc = 0;
	pthread_mutex_lock(&q->mu);
	q->readers++;
	while (q->count == 0) {
		if (q->closed) {
			rc = -ESHUTDOWN;
			goto out;
		}
		if (timeout_ms == 0) {
			rc = -ETIMEDOUT;
			goto out;
		}
		q->waiters++;
		int w = spz_cond_wait(&q->cv, &q->mu, until);
		q->waiters--;
		if (w == -ETIMEDOUT && q->count == 0) {
			rc = q->closed ? -ESHUTDOWN : -ETIMEDOUT;
			goto out;
		}
	}
	/* Data sitting here is copied out under the lock: the producer may
	 * overwrite the slot as soon as head moves. */
	const uint8_t *data;
	size_t len = pop_locked(q, &data);
	if (len > cap) {
		q->dropped++;
		rc = -EMSGSIZE;
	} else {
		memcpy(out, data, len);
		q->popped++;
		rc = (int)len;
	}
out:
	q->readers--;
	bool last = q->closed && q->readers == 0;
	pthread_mutex_unlock(&q->mu);
	if (last)
		pthread_cond_broadcast(&q->cv); /* destroy waits for readers == 0 */
	return rc;
}

void dev_queue_close(struct dev_queue *q)
{
	pthread_mutex_lock(&q->mu);
	q->closed = true;
	pthread_mutex_unlock(&q->mu);
	pthread_cond_broadcast(&q->cv);
}

void dev_queue_clear(struct dev_queue *q)
{
	pthread_mutex_lock(&q->mu);
	q->dropped += q->count;
	q->count = 0;
	q->head = q->tail = q->used = 0;
	pthread_mutex_unlock(&q->mu);
}

void dev_queue_destroy(struct dev_queue *q)
{
	if (!q->ring)
		return;
	pthread_mutex_lock(&q->mu);
	q->closed = true;
	while (q->readers > 0) {
		pthread_mutex_unlock(&q->mu);
		pthread_cond_broadcast(&q->cv);
		pthread_mutex_lock(&q->mu);
		if (q->readers > 0)
			pthread_cond_wait(&q->cv, &q->mu);
	}
	pthread_mutex_unlock(&q->mu);
	pthread_cond_destroy(&q->cv);
	pthread_mutex_destroy(&q->mu);
	free(q->ring);
	q->ring = NULL;
}
