#include "wg/replay.h"

#include <string.h>

void wg_replay_init(struct wg_replay *r) { memset(r, 0, sizeof(*r)); }

bool wg_replay_check(struct wg_replay *r, uint64_t counter, uint64_t limit)
{
	if (counter >= limit)
		return false;
	uint64_t block = counter >> 6;
	if (counter > r->last) {
		/* Move the window forward, clearing the blocks it uncovers (at
		 * most the whole ring). */
		uint64_t cur = r->last >> 6;
		uint64_t diff = block - cur;
		if (diff > WG_REPLAY_BLOCKS)
			diff = WG_REPLAY_BLOCKS;
		for (uint64_t i = cur + 1; i <= cur + diff; i++)
			r->ring[i & (WG_REPLAY_BLOCKS - 1)] = 0;
		r->last = counter;
	} else if (r->last - counter > WG_REPLAY_WINDOW) {
		return false;
	}
	uint64_t *word = &r->ring[block & (WG_REPLAY_BLOCKS - 1)];
	uint64_t bit = 1ULL << (counter & 63);
	if (*word & bit)
		return false;
	*word |= bit;
	return true;
}

#include "wg/wg_py.h"

void wg_replay_test(const uint64_t *counters, size_t n, uint64_t limit, uint8_t *accepted)
{
	struct wg_replay r;
	wg_replay_init(&r);
	for (size_t i = 0; i < n; i++)
		accepted[i] = wg_replay_check(&r, counters[i], limit) ? 1 : 0;
}
