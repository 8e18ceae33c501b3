/* libFuzzer: hostile datagrams (and packets, and time) against two WireGuard
 * devices that already share a session, so every receive path is reachable.
 *
 * Every input starts from the same state: responder R (the kernel capture's
 * Sr, peer Si) and initiator I (Si, peer Sr) have completed the spec's
 * section 11.1 handshake with its ephemerals and indices (so the capture's
 * messages and indices are valid) and carried one packet each way. Then
 * the input is a list of records:
 *     op (1 byte) | len (2 bytes LE) | len bytes
 * op & 3: 0 = R receives, 1 = I receives, 2 = R sends an IP packet,
 *         3 = both advance time by (first two data bytes) * 16 ms and tick;
 * op & 4: R toggles forced under-load mode first;
 * op & 8: afterwards carry everything queued between I and R.
 *
 * Speed: that handshake is done once. Its result is a snapshot (the
 * devices' and peers' structs, the index table, the ratelimiter's slots,
 * the session keypairs, the harness's RNG and clocks) that is put back
 * before each input (restore(): the peers get fresh clones of the
 * snapshot's keypairs, the index table's entries point at them), and what
 * the input left is freed after it (release(): keypairs, staged packets,
 * queued datagrams, a grown index table). An input can neither add nor
 * remove peers or allowed IPs, so those (and the buffers) stay as they are.
 * This reads the core's internals (wg/wg_internal.h): a field that owns
 * memory, added to struct wg_device, wg_peer or wg_keypair, needs its line
 * in restore() and release(); a check compares a restored device's UAPI
 * text with the snapshot's (every 64th input). Redoing the handshake per input ran at ~1.2k
 * execs/s.
 * The crypto an input's own handshakes run is made cheap with the same
 * values: X25519 is memoised (x25519_memo.h; with the RNG restored, the
 * ephemerals an input draws repeat across inputs), BLAKE2s and its HMAC
 * and HKDF are written out below (see there). The restore's coverage is
 * dropped (its edges are the same every run): libFuzzer only weighs what
 * the input's records reached. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <sodium.h>

#include "base/list.h"
#include "blake2s_ref.h"
#include "crypto/crypto.h"
#include "wg/wg_internal.h"

/* libFuzzer's inline 8-bit counters (zeroed by libFuzzer before each run):
 * the link wraps their registration to learn where they are. */
static uint8_t *cov_start, *cov_stop;
void __real___sanitizer_cov_8bit_counters_init(uint8_t *start, uint8_t *stop);
void __wrap___sanitizer_cov_8bit_counters_init(uint8_t *start, uint8_t *stop);

void __wrap___sanitizer_cov_8bit_counters_init(uint8_t *start, uint8_t *stop)
{
	cov_start = start;
	cov_stop = stop;
	__real___sanitizer_cov_8bit_counters_init(start, stop);
}

static void forget_setup_coverage(void)
{
	if (cov_stop > cov_start)
		memset(cov_start, 0, (size_t)(cov_stop - cov_start));
}

#include "x25519_memo.h"

static const uint8_t SI_PRIV[32] = {0x00, 0xa7, 0x99, 0x68, 0x7c, 0x01, 0xc6, 0x38, 0x8a, 0x2c, 0x59,
				    0xe4, 0x63, 0x6b, 0xa7, 0xbc, 0x47, 0x4e, 0x4e, 0xd8, 0x38, 0x00,
				    0xbf, 0x8c, 0xf5, 0xd4, 0x17, 0x7e, 0x8a, 0x45, 0x54, 0x59};
static const uint8_t SR_PRIV[32] = {0x70, 0x52, 0x31, 0x4d, 0x4c, 0x81, 0xb3, 0x54, 0x22, 0x97, 0x8d,
				    0x78, 0x84, 0x1c, 0x04, 0x82, 0xf6, 0xac, 0x11, 0xac, 0x7c, 0x08,
				    0xa2, 0x79, 0x21, 0x2e, 0x59, 0xa2, 0xe8, 0x29, 0x95, 0x6b};
/* Ephemerals and indices of the capture (EI || index, ER || index). */
static const uint8_t EI_IDX[36] = {0xb0, 0xb1, 0x8b, 0x25, 0x23, 0x90, 0x7f, 0x2c, 0xfb, 0x24, 0xd2, 0x79,
				   0x64, 0x3c, 0xc5, 0x7f, 0x75, 0x33, 0xd6, 0xb9, 0x22, 0x08, 0xc3, 0x23,
				   0x6d, 0x67, 0xab, 0x35, 0x87, 0x0f, 0x14, 0x55, 0xd8, 0x37, 0xd0, 0x30};
static const uint8_t ER_IDX[36] = {0x40, 0x2e, 0x3f, 0x15, 0x92, 0xa1, 0x15, 0xfd, 0x1b, 0xfd, 0xe5, 0xc4,
				   0x70, 0x27, 0x9c, 0x99, 0x93, 0x6d, 0xe9, 0x5e, 0x8f, 0x5e, 0x64, 0x5a,
				   0xe0, 0x45, 0x86, 0xd4, 0xf2, 0x18, 0x4d, 0x4e, 0x06, 0xf4, 0x7d, 0xab};

/* ---- the handshake's hashes ----
 * spz_hash, spz_mac and spz_kdf are BLAKE2s, its keyed MAC and HKDF over
 * HMAC-BLAKE2s through OpenSSL's EVP, which allocates per call: under ASan
 * that was half of an input's time (every handshake runs ~40 of them). The
 * link wraps them (mk/wg.mk) with blake2s_ref.c, the same functions written
 * from their definitions and built at -O3 without instrumentation: the same
 * bytes, compared with the real ones during the setup and then on every
 * 256th call. */
_Static_assert(SPZ_HASH_LEN == FZ_B2S_OUT, "the wrappers hand blake2s_ref.c's outputs on as they are");

static bool setting_up; /* compare every call */
static unsigned hash_calls;
static bool hash_check(void) { return setting_up || (hash_calls++ & 255) == 0; }

void __real_spz_hash(uint8_t out[SPZ_HASH_LEN], const void *a, size_t alen, const void *b, size_t blen, const void *c,
		     size_t clen);
void __wrap_spz_hash(uint8_t out[SPZ_HASH_LEN], const void *a, size_t alen, const void *b, size_t blen, const void *c,
		     size_t clen);
void __wrap_spz_hash(uint8_t out[SPZ_HASH_LEN], const void *a, size_t alen, const void *b, size_t blen, const void *c,
		     size_t clen)
{
	uint8_t mine[SPZ_HASH_LEN];
	fz_b2s_hash(mine, a, alen, b, blen, c, clen);
	if (hash_check()) {
		__real_spz_hash(out, a, alen, b, blen, c, clen);
		if (memcmp(out, mine, SPZ_HASH_LEN) != 0)
			abort(); /* the harness's BLAKE2s is not the real one */
	}
	memcpy(out, mine, SPZ_HASH_LEN); /* out may be one of the inputs */
}

void __real_spz_mac(uint8_t out[SPZ_MAC_LEN], const uint8_t *key, size_t keylen, const void *msg, size_t len);
void __wrap_spz_mac(uint8_t out[SPZ_MAC_LEN], const uint8_t *key, size_t keylen, const void *msg, size_t len);
void __wrap_spz_mac(uint8_t out[SPZ_MAC_LEN], const uint8_t *key, size_t keylen, const void *msg, size_t len)
{
	if (keylen < 1 || keylen > 32) { /* not ours to judge: the real one decides */
		__real_spz_mac(out, key, keylen, msg, len);
		return;
	}
	uint8_t mine[SPZ_MAC_LEN];
	fz_b2s_mac(mine, SPZ_MAC_LEN, key, keylen, msg, len);
	if (hash_check()) {
		__real_spz_mac(out, key, keylen, msg, len);
		if (memcmp(out, mine, SPZ_MAC_LEN) != 0)
			abort(); /* the harness's keyed BLAKE2s is not the real one */
	}
	memcpy(out, mine, SPZ_MAC_LEN);
}

void __real_spz_kdf(uint8_t *t1, uint8_t *t2, uint8_t *t3, const uint8_t key[SPZ_HASH_LEN], const void *in,
		    size_t inlen);
void __wrap_spz_kdf(uint8_t *t1, uint8_t *t2, uint8_t *t3, const uint8_t key[SPZ_HASH_LEN], const void *in,
		    size_t inlen);
void __wrap_spz_kdf(uint8_t *t1, uint8_t *t2, uint8_t *t3, const uint8_t key[SPZ_HASH_LEN], const void *in,
		    size_t inlen)
{
	uint8_t t[3][SPZ_HASH_LEN];
	int n = t2 ? (t3 ? 3 : 2) : 1;
	fz_b2s_kdf(t, n, key, in, inlen);
	if (hash_check()) {
		uint8_t r[3][SPZ_HASH_LEN];
		__real_spz_kdf(r[0], n > 1 ? r[1] : NULL, n > 2 ? r[2] : NULL, key, in, inlen);
		if (memcmp(r, t, (size_t)n * SPZ_HASH_LEN) != 0)
			abort(); /* the harness's KDF is not the real one */
	}
	uint8_t *const outs[3] = {t1, t2, t3};
	for (int i = 0; i < n; i++)
		memcpy(outs[i], t[i], SPZ_HASH_LEN); /* t1 may be the key */
}

/* ---- a device's surroundings: its outgoing queue, RNG and wall clock ---- */

#define QUEUE_MAX 256

struct dgram {
	struct dgram *next;
	size_t len;
	uint8_t data[];
};

struct side {
	wg_device *dev;
	wg_peer *peer;
	struct dgram *head, *tail; /* datagrams it sent, oldest first */
	size_t queued;
	const uint8_t *script; /* random bytes handed out first (the capture's) */
	size_t script_len;
	uint8_t rng_key[32]; /* then a keystream */
	uint64_t rng_nonce;
	uint64_t wall_ns;
};

static struct side sr, si; /* R and I */

static void q_clear(struct side *s)
{
	struct dgram *d;
	do {
		SPZ_FIFO_POP(s->head, s->tail, s->queued, d, next);
		free(d);
	} while (d);
}

static void op_send(void *ctx, wg_peer *peer, const wg_endpoint *to, const uint8_t *data, size_t len)
{
	(void)peer;
	(void)to;
	struct side *s = ctx;
	if (s->queued >= QUEUE_MAX)
		return;
	struct dgram *d = malloc(sizeof(*d) + len);
	if (!d)
		abort();
	d->len = len;
	memcpy(d->data, data, len);
	SPZ_FIFO_PUSH(s->head, s->tail, s->queued, d, next);
}

static void op_deliver(void *ctx, wg_peer *peer, const uint8_t *ip, size_t len)
{
	(void)ctx;
	(void)peer;
	(void)ip;
	(void)len;
}

/* As wg_tunnel's RNG (csrc/wg/tunnel.c) draws, so the seeds' indices and
 * ephemerals (found with it) stay what they were: scripted bytes first, then
 * a ChaCha20 keystream keyed by the seed's hash, one nonce per request. */
static void op_random(void *ctx, uint8_t *out, size_t len)
{
	struct side *s = ctx;
	size_t k = s->script_len < len ? s->script_len : len;
	memcpy(out, s->script, k);
	s->script += k;
	s->script_len -= k;
	if (k == len)
		return;
	uint8_t nonce[8];
	for (int i = 0; i < 8; i++)
		nonce[i] = (uint8_t)(s->rng_nonce >> (8 * i));
	s->rng_nonce++;
	crypto_stream_chacha20(out + k, len - k, nonce, s->rng_key);
}

static uint64_t op_wall(void *ctx) { return ((struct side *)ctx)->wall_ns; }

static void side_new(struct side *s, const uint8_t *script, size_t script_len, const uint8_t *seed, size_t seed_len)
{
	struct wg_ops ops = {.ctx = s, .send = op_send, .deliver = op_deliver, .random = op_random, .wall_ns = op_wall};
	s->script = script;
	s->script_len = script_len;
	crypto_generichash(s->rng_key, sizeof(s->rng_key), seed, seed_len, NULL, 0);
	s->rng_nonce = 0;
	s->wall_ns = (0x5B52647BULL - 10) * 1000000000ULL + 0x15405610;
	s->dev = wg_device_new(&ops);
	if (!s->dev)
		abort();
}

static void endpoint(wg_endpoint *ep, uint8_t last)
{
	memset(ep, 0, sizeof(*ep));
	ep->family = WG_AF_INET;
	ep->port = 51820;
	ep->addr[0] = 10;
	ep->addr[1] = 10;
	ep->addr[3] = last;
}

/* Carries everything queued in `from` to `to`. */
static void carry(struct side *from, struct side *to, const wg_endpoint *src, uint64_t now)
{
	for (int i = 0; i < 64 && from->head; i++) {
		struct dgram *d;
		SPZ_FIFO_POP(from->head, from->tail, from->queued, d, next);
		wg_device_receive(to->dev, now, src, d->data, d->len);
		free(d);
	}
}

/* ---- the snapshot ---- */

struct snap {
	struct wg_device dev;
	struct wg_peer peer;
	struct wg_index_entry *slots;
	uint32_t cap;
	struct wg_rl_entry *rl;
	struct side side;
	char *uapi; /* wg_uapi_get's text, for the check */
	size_t uapi_len;
};

static struct snap snap_r, snap_i;

/* The ratelimiter's slots change only through wg_rl_allow (under load):
 * the link wraps it, so a restore copies the 128 KiB back only when used. */
static bool rl_dirty;
bool __real_wg_rl_allow(struct wg_ratelimiter *rl, const wg_endpoint *from, uint64_t now_ms);
bool __wrap_wg_rl_allow(struct wg_ratelimiter *rl, const wg_endpoint *from, uint64_t now_ms);
bool __wrap_wg_rl_allow(struct wg_ratelimiter *rl, const wg_endpoint *from, uint64_t now_ms)
{
	rl_dirty = true;
	return __real_wg_rl_allow(rl, from, now_ms);
}

static void *dup_bytes(const void *p, size_t n)
{
	void *d = malloc(n);
	if (!d)
		abort();
	memcpy(d, p, n);
	return d;
}

static void uapi_text(wg_device *dev, char **text, size_t *len)
{
	if (wg_uapi_get(dev, 0, text, len) != 0)
		abort();
}

/* Takes the state of s as the snapshot. The peer's keypairs become the
 * snapshot's own (the templates restore() clones); the device keeps none
 * until restore(). */
static void snap_take(struct snap *sn, struct side *s)
{
	if (s->dev->npeers != 1 || s->peer->staged_head || s->head)
		abort(); /* restore() relies on one peer, nothing staged or queued */
	sn->dev = *s->dev;
	sn->peer = *s->peer;
	sn->cap = s->dev->index.cap;
	sn->slots = dup_bytes(s->dev->index.slots, sn->cap * sizeof(*sn->slots));
	sn->rl = dup_bytes(s->dev->rl.slots, WG_RL_SLOTS * sizeof(*sn->rl));
	sn->side = *s;
	uapi_text(s->dev, &sn->uapi, &sn->uapi_len);
	s->peer->kp_prev = s->peer->kp_cur = s->peer->kp_next = NULL;
}

static void aead_clone(struct spz_aead *dst, const struct spz_aead *src)
{
	dst->cipher = dst->mac = NULL;
	if (!src->cipher)
		return;
	EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
	EVP_MAC_CTX *m = EVP_MAC_CTX_dup(src->mac);
	if (!c || !m || !EVP_CIPHER_CTX_copy(c, src->cipher))
		abort();
	dst->cipher = c;
	dst->mac = m;
}

static struct wg_keypair *kp_clone(const struct wg_keypair *t)
{
	if (!t)
		return NULL;
	struct wg_keypair *k = dup_bytes(t, sizeof(*t));
	aead_clone(&k->send, &t->send);
	aead_clone(&k->recv, &t->recv);
	return k;
}

static void kp_free(struct wg_keypair *k)
{
	if (!k)
		return;
	spz_aead_free(&k->send);
	spz_aead_free(&k->recv);
	free(k);
}

/* Before an input: puts s back as the snapshot had it (see the header),
 * on fresh clones of its keypairs. */
static void restore(struct side *s, const struct snap *sn)
{
	wg_device *d = s->dev;
	wg_peer *p = s->peer;
	struct wg_index_entry *slots = d->index.slots;
	memcpy(slots, sn->slots, sn->cap * sizeof(*slots));
	/* Every other pointer in the device is the snapshot's (see above). */
	*d = sn->dev;
	d->index.slots = slots;
	*p = sn->peer;
	struct wg_keypair *const tmpl[3] = {sn->peer.kp_prev, sn->peer.kp_cur, sn->peer.kp_next};
	struct wg_keypair **const live[3] = {&p->kp_prev, &p->kp_cur, &p->kp_next};
	for (int i = 0; i < 3; i++) {
		*live[i] = kp_clone(tmpl[i]);
		for (uint32_t k = 0; k < sn->cap && tmpl[i]; k++)
			if (slots[k].kind == WG_INDEX_KEYPAIR && slots[k].kp == tmpl[i])
				slots[k].kp = *live[i];
	}
	*s = sn->side;
}

/* After an input: frees what it left in s (keypairs, staged packets,
 * queued datagrams, a grown index table), so each input frees what it
 * allocates (libFuzzer's leak detection counts mallocs and frees per run). */
static void release(struct side *s, const struct snap *sn, bool rl)
{
	wg_device *d = s->dev;
	wg_peer *p = s->peer;
	kp_free(p->kp_prev);
	kp_free(p->kp_cur);
	kp_free(p->kp_next);
	p->kp_prev = p->kp_cur = p->kp_next = NULL;
	struct wg_staged *st;
	do {
		SPZ_FIFO_POP(p->staged_head, p->staged_tail, p->staged_count, st, next);
		free(st);
	} while (st);
	q_clear(s);
	if (d->index.cap != sn->cap) {
		free(d->index.slots);
		d->index.slots = malloc(sn->cap * sizeof(*d->index.slots));
		if (!d->index.slots)
			abort();
		d->index.cap = sn->cap;
	}
	if (rl)
		memcpy(d->rl.slots, sn->rl, WG_RL_SLOTS * sizeof(*sn->rl));
}

/* The restored device says what the snapshot's said. */
static void check_restored(struct side *s, const struct snap *sn)
{
	char *text;
	size_t len;
	uapi_text(s->dev, &text, &len);
	if (len != sn->uapi_len || memcmp(text, sn->uapi, len) != 0)
		abort(); /* the harness's restore is broken */
	wg_uapi_free(text);
}

static const uint8_t PING[] = {0x45, 0, 0,  28, 0, 0, 0, 0, 64, 1, 0, 0, 10, 10,
			       0,    2, 10, 10, 0, 1, 8, 0, 0,  0, 0, 0, 0,  0};

static wg_endpoint ep_r, ep_i;

/* The capture's handshake, then one packet each way; then the snapshot. */
static void setup(void)
{
	setting_up = true;
	static const uint8_t seed_r[] = "fuzz-r", seed_i[] = "fuzz-i";
	side_new(&sr, ER_IDX, sizeof(ER_IDX), seed_r, sizeof(seed_r));
	side_new(&si, EI_IDX, sizeof(EI_IDX), seed_i, sizeof(seed_i));
	wg_device *rd = sr.dev, *id = si.dev;
	endpoint(&ep_r, 1);
	endpoint(&ep_i, 2);
	uint8_t pub_r[32], pub_i[32], v4[4] = {10, 10, 0, 0};
	uint64_t now = 1000;
	wg_device_set_flags(id, WG_FLAG_NO_WHITENING);
	wg_device_set_private_key(rd, now, SR_PRIV);
	wg_device_set_private_key(id, now, SI_PRIV);
	wg_device_public_key(rd, pub_r);
	wg_device_public_key(id, pub_i);
	wg_peer_add(rd, pub_i, &sr.peer);
	wg_peer_add(id, pub_r, &si.peer);
	v4[3] = 2;
	wg_peer_allowed_ip_add(rd, sr.peer, WG_AF_INET, v4, 32);
	v4[3] = 1;
	wg_peer_allowed_ip_add(id, si.peer, WG_AF_INET, v4, 32);
	wg_peer_set_endpoint(si.peer, &ep_r);
	wg_device_send(id, now, PING, sizeof(PING));
	carry(&si, &sr, &ep_i, now);
	carry(&sr, &si, &ep_r, now);
	carry(&si, &sr, &ep_i, now);
	uint8_t pong[sizeof(PING)];
	memcpy(pong, PING, sizeof(PING));
	pong[15] = 1;
	pong[19] = 2;
	wg_device_send(rd, now, pong, sizeof(pong));
	carry(&sr, &si, &ep_r, now);
	struct wg_device_stats st;
	wg_device_stats(rd, &st);
	if (st.handshakes_completed != 1 || st.rx_packets != 1 || st.tx_packets != 1 || !sr.peer->kp_cur ||
	    !si.peer->kp_cur)
		abort(); /* the harness itself is broken: the deep paths would be unreachable */
	snap_take(&snap_r, &sr);
	snap_take(&snap_i, &si);
	setting_up = false;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static bool ready;
	if (!ready) {
		setup();
		ready = true;
	}
	restore(&sr, &snap_r);
	restore(&si, &snap_i);
	/* The restore is the same code every time: checking one input in 64
	 * finds a broken one as surely, at a sixtieth of the cost. */
	static unsigned inputs;
	if ((inputs++ & 63) == 0) {
		check_restored(&sr, &snap_r);
		check_restored(&si, &snap_i);
	}
	forget_setup_coverage();
	wg_device *rd = sr.dev, *id = si.dev;
	uint64_t now = 1000;

	int under_load = 0;
	size_t pos = 0;
	while (pos + 3 <= size) {
		uint8_t op = data[pos];
		size_t len = (size_t)data[pos + 1] | (size_t)data[pos + 2] << 8;
		pos += 3;
		if (len > size - pos)
			len = size - pos;
		const uint8_t *d = data + pos;
		pos += len;
		if (op & 4) {
			under_load = !under_load;
			wg_device_set_under_load(rd, under_load ? WG_LOAD_FORCE : WG_LOAD_AUTO, 4);
		}
		switch (op & 3) {
		case 0: wg_device_receive(rd, now, &ep_i, d, len); break;
		case 1: wg_device_receive(id, now, &ep_r, d, len); break;
		case 2: wg_device_send(rd, now, d, len); break;
		case 3: {
			uint64_t step = len >= 2 ? ((uint64_t)d[0] | (uint64_t)d[1] << 8) * 16 : 1;
			now += step;
			si.wall_ns = (0x5B52647BULL - 10) * 1000000000ULL + now * 1000000ULL;
			wg_device_tick(rd, now);
			wg_device_tick(id, now);
			break;
		}
		}
		if (op & 8) {
			carry(&si, &sr, &ep_i, now);
			carry(&sr, &si, &ep_r, now);
		}
		/* Keep the queues from growing across records. */
		q_clear(&sr);
		q_clear(&si);
	}
	char *text = NULL;
	size_t tlen = 0;
	if (wg_uapi_get(rd, now, &text, &tlen) == 0)
		wg_uapi_free(text);
	release(&sr, &snap_r, rl_dirty);
	release(&si, &snap_i, rl_dirty);
	rl_dirty = false;
	return 0;
}
