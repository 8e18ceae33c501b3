/* libFuzzer: the device's packet ring (csrc/device/queue.c). Input bytes
 * are a script of pushes and pops on a small ring (so it wraps often);
 * every packet that was accepted must come out once, in order, intact,
 * an empty ring must accept any packet that fits, and the ring's byte
 * accounting must match its offsets after every step. */
#include "device/queue.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define CAP 256
#define MAXN 8

static void fill(uint8_t *p, size_t len, uint32_t seq)
{
	for (size_t i = 0; i < len; i++)
		p[i] = (uint8_t)(seq * 31 + i);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct dev_queue q;
	if (dev_queue_init(&q, CAP, MAXN) != 0)
		return 0;
	/* The model: lengths and sequence numbers of accepted packets. */
	uint32_t lens[MAXN + 1], seqs[MAXN + 1];
	size_t head = 0, n = 0;
	uint32_t seq = 0;
	uint8_t buf[CAP + 64], want[CAP + 64];
	for (size_t i = 0; i + 1 < size; i += 2) {
		uint8_t op = data[i], arg = data[i + 1];
		if (op & 1) {
			size_t len = (size_t)arg % (CAP + 8);
			fill(buf, len, seq);
			bool was_empty = n == 0;
			bool ok = dev_queue_push(&q, buf, len);
			if (ok) {
				if (n == MAXN)
					abort(); /* accepted beyond max_count */
				lens[(head + n) % (MAXN + 1)] = (uint32_t)len;
				seqs[(head + n) % (MAXN + 1)] = seq;
				n++;
			} else if (was_empty && 4 + ((len + 3) & ~(size_t)3) <= CAP) {
				abort(); /* an empty ring refused a packet that fits */
			}
			seq++;
		} else {
			size_t cap = (op & 2) ? sizeof(buf) : (size_t)arg;
			int rc = dev_queue_pop(&q, buf, cap, 0);
			if (n == 0) {
				if (rc != -ETIMEDOUT)
					abort();
				continue;
			}
			uint32_t len = lens[head], s = seqs[head];
			head = (head + 1) % (MAXN + 1);
			n--;
			if (len > cap) {
				if (rc != -EMSGSIZE)
					abort();
				continue;
			}
			fill(want, len, s);
			if (rc != (int)len || memcmp(buf, want, len) != 0)
				abort();
		}
		/* The ring's accounting: used is exactly the distance from head
		 * to tail (the whole ring when they meet with records queued). */
		size_t dist = (q.tail + q.cap - q.head) % q.cap;
		if (q.count == 0 ? q.used != 0 : q.used != (dist ? dist : q.cap))
			abort();
	}
	if (q.count != n)
		abort();
	dev_queue_close(&q);
	dev_queue_destroy(&q);
	return 0;
}
