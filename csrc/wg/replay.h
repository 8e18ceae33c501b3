/* Sliding replay window for transport counters (RFC 6479 style, as the
 * kernel's counter_validate and wireguard-go's replay.Filter). */
#ifndef SPANZA_WG_REPLAY_H
#define SPANZA_WG_REPLAY_H

#include <stdbool.h>
#include <stdint.h>

#define WG_REPLAY_BLOCKS 128
#define WG_REPLAY_WINDOW ((WG_REPLAY_BLOCKS - 1) * 64) /* 8128 */

struct wg_replay {
	uint64_t last;
	uint64_t ring[WG_REPLAY_BLOCKS];
};

void wg_replay_init(struct wg_replay *r);
/* Accepts and records counter, or rejects it (seen, too old, or >= limit).
 * Call only after the packet authenticated. */
bool wg_replay_check(struct wg_replay *r, uint64_t counter, uint64_t limit);

#endif
