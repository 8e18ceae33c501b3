/* cffi: impairments as Python sees them (spanza/impair.py). imp_py_op may
 * be called from any thread: the work runs on the owning object's loop with
 * rt_call, so settings change safely while traffic flows. */
#ifndef SPANZA_IMP_IMPAIR_PY_H
#define SPANZA_IMP_IMPAIR_PY_H

#include <stdint.h>

/* Directions of a hop: what the object sends, what it receives. */
#define IMP_OUT 0
#define IMP_IN 1

/* Queue policy when the bandwidth queue is full. */
#define IMP_TAIL_DROP 0
#define IMP_DROP_HEAD 1

/* Hops (imp_py_op's kind; obj is that module's Python handle). */
/* dev_device *: its UDP socket */
#define IMP_HOP_DEVICE_UDP 1
/* dev_device *: its DERP bind's client (transport mode) */
#define IMP_HOP_DEVICE_DERP 2
/* gw_t *: the UDP side (out: to the local WireGuard, in: from it) */
#define IMP_HOP_GATEWAY_UDP 3
/* gw_t *: its DERP client */
#define IMP_HOP_GATEWAY_DERP 4
/* derp_pyclient_t * */
#define IMP_HOP_DERP_CLIENT 5
/* ns_wire_t *: out = what side 0 sends, in = what side 1 sends */
#define IMP_HOP_WIRE 6

/* Operations. */
/* configure (create if none), counters start again from zero */
#define IMP_OP_SET 1
/* read the counters */
#define IMP_OP_STATS 2
/* release what is held (in order, now), read the counters, remove */
#define IMP_OP_LIFT 3

/* Probabilities are in [0, 1]; zero fields are off. */
struct imp_config {
	double loss;         /* random loss (when ge_p and ge_r are 0) */
	double ge_p;         /* Gilbert-Elliott: P(good -> bad) per packet */
	double ge_r;         /* P(bad -> good) per packet */
	double ge_loss_bad;  /* loss probability in the bad state */
	double ge_loss_good; /* loss probability in the good state */
	uint32_t delay_us;   /* added one-way delay */
	uint32_t jitter_us;  /* delay +- uniform jitter (order kept unless reorder) */
	double reorder;      /* P(a packet skips the delay: it overtakes the held ones) */
	double duplicate;    /* P(a packet is sent twice) */
	double corrupt;      /* P(one random bit of a packet is flipped) */
	uint64_t rate_bps;   /* bandwidth in bits/s (0: unlimited) */
	uint32_t queue;      /* packets waiting for the bandwidth (0: 1000) */
	int queue_policy;    /* IMP_TAIL_DROP or IMP_DROP_HEAD */
	uint32_t mtu;        /* larger packets are dropped (0: off) */
	int blackhole;       /* 1: drop everything */
	uint64_t seed;       /* the run repeats exactly for a seed */
};

struct imp_stats {
	uint64_t packets; /* offered to the impairment */
	uint64_t bytes;
	uint64_t delivered; /* passed on (duplicates included) */
	uint64_t delivered_bytes;
	uint64_t dropped_loss; /* random or Gilbert-Elliott loss */
	uint64_t dropped_blackhole;
	uint64_t dropped_mtu;
	uint64_t dropped_queue;    /* bandwidth queue full (tail or head) */
	uint64_t dropped_overflow; /* delay line full (IMP_MAX_HELD) or out of memory */
	uint64_t duplicated;
	uint64_t corrupted;
	uint64_t reordered;
	uint64_t delayed;           /* held for delay or bandwidth */
	uint64_t bad_state_packets; /* Gilbert-Elliott: packets seen in the bad state */
	uint32_t held;              /* held now */
	uint32_t active;            /* 1 while configured */
};

/* 0, -EINVAL (bad kind/dir/config), -ENOENT (no such hop now, or STATS /
 * LIFT with nothing configured), -ENOMEM, -ESHUTDOWN. out may be NULL. */
int imp_py_op(int kind, void *obj, int dir, int op, const struct imp_config *cfg, struct imp_stats *out);

/* Scenarios: moves the DERP client of a hop (IMP_HOP_DEVICE_DERP,
 * IMP_HOP_GATEWAY_DERP, IMP_HOP_DERP_CLIENT) to another relay (one URL or
 * a region's node URLs separated by spaces), dropping its connection:
 * a home relay change. 0, -EINVAL (err says why), -ENOENT, -ESHUTDOWN. */
int imp_py_move_relay(int kind, void *obj, const char *url, char *err, size_t errlen);

#endif
