/* libFuzzer: the trace taps and rings (csrc/trace/). Input bytes are a
 * filter configuration (IP/port/proto/pattern, snap length; a 4 KiB ring so
 * it wraps and fills often), then a script of taps with hostile packet
 * bytes, with drains and restarts between. Every record drained must be a
 * tap that was made, in order, with its bytes intact (cut at the snap
 * length) and of the traced object only; the drain's count must match. */
#include "trace/trace.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define RING 4096u
#define OBJ 7
#define MAX_PKT 600
#define DRAIN_BUF (2 * RING)
#define CFG_BYTES 24

static uint8_t drained[DRAIN_BUF];

/* Drains and checks records against the expected sequence of lengths;
 * returns how many were drained. */
static size_t drain_check(const uint8_t *pkts[], const size_t *lens, size_t *next, size_t nexp, uint32_t snap)
{
	size_t nrec = 0, got = 0;
	size_t n = tr_py_drain(drained, sizeof(drained), &nrec);
	for (size_t off = 0; off < n; got++) {
		struct tr_rec r;
		memcpy(&r, drained + off, sizeof(r));
		if (r.size < sizeof(r) || off + r.size > n || r.obj != OBJ)
			abort();
		size_t want = r.len < snap ? r.len : snap;
		if (r.caplen != want)
			abort();
		/* Taps filtered out or lost to overflow have no record: the next
		 * record is a later tap with these exact bytes. */
		while (*next < nexp &&
		       (lens[*next] != r.len || memcmp(drained + off + sizeof(r), pkts[*next], want) != 0))
			(*next)++;
		if (*next == nexp)
			abort();
		(*next)++;
		off += r.size;
	}
	if (got != nrec)
		abort();
	return got;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < CFG_BYTES)
		return 0;
	struct tr_config cfg = {.ring_bytes = RING, .nobjs = 1, .objs = {OBJ}};
	cfg.snaplen = data[0] % 2 ? 64u + data[1] : 0xffff;
	cfg.ip_af = data[2] % 3 == 0 ? 0 : data[2] % 3 == 1 ? 4 : 6;
	memcpy(cfg.ip_addr, data + 3, 4);
	cfg.ip_proto = data[7] % 4 == 0 ? 0 : data[7];
	cfg.ip_port = data[8] % 2 ? (uint16_t)(data[9] << 8 | data[10]) : 0;
	cfg.pat_len = data[11] % 4;
	cfg.pat_off = data[12] % 64;
	memcpy(cfg.pat_val, data + 13, 3);
	memset(cfg.pat_mask, 0xff, sizeof(cfg.pat_mask));
	if (tr_py_start(&cfg, 1) != 0)
		abort();
	data += CFG_BYTES;
	size -= CFG_BYTES;

	/* Taps: [hop][len lo][len hi % MAX_PKT] then len bytes (as many as are left). */
	const uint8_t *pkts[256];
	size_t lens[256], n = 0, next = 0;
	uint32_t snap = cfg.snaplen;
	while (size >= 3 && n < 256) {
		uint8_t hop = (uint8_t)(1 + data[0] % (TR_HOP__COUNT - 2));
		size_t len = (size_t)(data[1] | data[2] << 8) % MAX_PKT;
		data += 3;
		size -= 3;
		if (len > size)
			len = size;
		if (hop == TR_HOP_KEYS - 1 && len > 0 && data[0] & 1) {
			tr_py_stop(); /* drain what there is, restart */
			drain_check(pkts, lens, &next, n, snap);
			tr_py_start(&cfg, 0);
		}
		pkts[n] = data;
		lens[n++] = len;
		tr_py_inject(hop, OBJ, data, len);
		tr_py_inject(hop, OBJ + 1, data, len); /* another object: never recorded */
		data += len;
		size -= len;
	}
	tr_py_stop();
	drain_check(pkts, lens, &next, n, snap);
	return 0;
}
