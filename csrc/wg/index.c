/* The device's index table: random 32-bit indices (ours, as sent in
 * handshake messages) mapped to a handshake or a keypair. Open addressing
 * with linear probing and backward-shift deletion; indices are random, so
 * a multiplicative hash spreads them well, and hostile lookups of unknown
 * indices cannot lengthen probe runs (only inserts, which we make, do). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "wg/wg_internal.h"

#define INITIAL_CAP 64

static uint32_t slot_of(const struct wg_index_table *t, uint32_t index)
{
	return (uint32_t)((index * 2654435761u) & (t->cap - 1));
}

int wg_index_init(struct wg_index_table *t)
{
	t->slots = calloc(INITIAL_CAP, sizeof(*t->slots));
	t->cap = INITIAL_CAP;
	t->count = 0;
	return t->slots ? 0 : -ENOMEM;
}

void wg_index_free(struct wg_index_table *t)
{
	free(t->slots);
	t->slots = NULL;
	t->cap = t->count = 0;
}

static void place(struct wg_index_table *t, const struct wg_index_entry *e)
{
	uint32_t i = slot_of(t, e->index);
	while (t->slots[i].kind)
		i = (i + 1) & (t->cap - 1);
	t->slots[i] = *e;
}

static int grow(struct wg_index_table *t)
{
	struct wg_index_table n = {.cap = t->cap * 2, .count = t->count};
	n.slots = calloc(n.cap, sizeof(*n.slots));
	if (!n.slots)
		return -ENOMEM;
	for (uint32_t i = 0; i < t->cap; i++)
		if (t->slots[i].kind)
			place(&n, &t->slots[i]);
	free(t->slots);
	*t = n;
	return 0;
}

struct wg_index_entry *wg_index_find(const struct wg_index_table *t, uint32_t index)
{
	uint32_t i = slot_of(t, index);
	while (t->slots[i].kind) {
		if (t->slots[i].index == index)
			return &t->slots[i];
		i = (i + 1) & (t->cap - 1);
	}
	return NULL;
}

int wg_index_add(wg_device *dev, enum wg_index_kind kind, wg_peer *peer, struct wg_keypair *kp, uint32_t *out)
{
	struct wg_index_table *t = &dev->index;
	if ((t->count + 1) * 2 > t->cap && grow(t) != 0)
		return -ENOMEM;
	struct wg_index_entry e = {.kind = (uint8_t)kind, .peer = peer, .kp = kp};
	/* Draw until unused; with at most 2^18 live indices among 2^32 this
	 * ends at once, unless the random source is broken (bounded). */
	for (int tries = 0;; tries++) {
		uint8_t b[4];
		if (tries == 64)
			return -EAGAIN;
		wg_dev_random(dev, b, sizeof(b));
		e.index = wg_le32(b);
		if (!wg_index_find(t, e.index))
			break;
	}
	place(t, &e);
	t->count++;
	*out = e.index;
	return 0;
}

void wg_index_del(struct wg_index_table *t, uint32_t index)
{
	struct wg_index_entry *e = wg_index_find(t, index);
	if (!e)
		return;
	uint32_t i = (uint32_t)(e - t->slots), mask = t->cap - 1;
	t->slots[i].kind = 0;
	t->count--;
	/* Backward shift: pull later members of the run into the hole. */
	for (uint32_t j = (i + 1) & mask; t->slots[j].kind; j = (j + 1) & mask) {
		uint32_t home = slot_of(t, t->slots[j].index);
		/* Move j into i if its home is not in (i, j] cyclically. */
		bool between = (i <= j) ? (home > i && home <= j) : (home > i || home <= j);
		if (!between) {
			t->slots[i] = t->slots[j];
			t->slots[j].kind = 0;
			i = j;
		}
	}
}
