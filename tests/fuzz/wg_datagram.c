/* libFuzzer: hostile datagrams (and packets, and time) against two WireGuard
 * devices that already share a session, so every receive path is reachable.
 *
 * Setup per input (deterministic): responder R (the kernel capture's Sr,
 * peer Si) and initiator I (Si, peer Sr) complete the spec's section 11.1
 * handshake with its ephemerals and indices, so the capture's messages and
 * indices are valid. Then the input is a list of records:
 *     op (1 byte) | len (2 bytes LE) | len bytes
 * op & 3: 0 = R receives, 1 = I receives, 2 = R sends an IP packet,
 *         3 = both advance time by (first two data bytes) * 16 ms and tick;
 * op & 4: R toggles forced under-load mode first;
 * op & 8: afterwards carry everything queued between I and R.
 *
 * Speed: that setup is the same for every input, and its dozen X25519
 * operations were nearly all of an execution's cost (~900 execs/s). They are
 * memoised: the link wraps spz_x25519 and spz_x25519_public (mk/wg.mk), and a
 * result is looked up by its exact inputs, so every value is the one the real
 * function returns; only results for new inputs (a fuzzed ephemeral) are
 * computed, and the table keeps the first MEMO_SLOTS (the setup's).
 * The setup's coverage is then dropped (its edges are the same every run):
 * libFuzzer only weighs what the input's records reached, instead of
 * updating the frequency of ~3000 fixed features per execution. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "crypto/crypto.h"
#include "wg/wg.h"

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

#define MEMO_SLOTS 64

struct memo {
	uint8_t priv[32], pub[32]; /* pub: unused (zero) for a public-key derivation */
	uint8_t out[32];
	bool base;
	int rc; /* spz_x25519: 1 or 0 (its bool); spz_x25519_public: its return */
};
static struct memo memo[MEMO_SLOTS];
static size_t nmemo;

static const struct memo *memo_find(bool base, const uint8_t *priv, const uint8_t *pub)
{
	for (size_t i = 0; i < nmemo; i++)
		if (memo[i].base == base && !memcmp(memo[i].priv, priv, 32) && (base || !memcmp(memo[i].pub, pub, 32)))
			return &memo[i];
	return NULL;
}

static void memo_add(bool base, const uint8_t *priv, const uint8_t *pub, const uint8_t *out, int rc)
{
	if (nmemo == MEMO_SLOTS)
		return;
	struct memo *m = &memo[nmemo++];
	memset(m, 0, sizeof(*m));
	m->base = base;
	memcpy(m->priv, priv, 32);
	if (!base)
		memcpy(m->pub, pub, 32);
	memcpy(m->out, out, 32);
	m->rc = rc;
}

bool __real_spz_x25519(uint8_t out[32], const uint8_t priv[32], const uint8_t pub[32]);
int __real_spz_x25519_public(uint8_t *pub, const uint8_t *priv);
bool __wrap_spz_x25519(uint8_t out[32], const uint8_t priv[32], const uint8_t pub[32]);
int __wrap_spz_x25519_public(uint8_t *pub, const uint8_t *priv);

bool __wrap_spz_x25519(uint8_t out[32], const uint8_t priv[32], const uint8_t pub[32])
{
	const struct memo *m = memo_find(false, priv, pub);
	if (m) {
		memcpy(out, m->out, 32);
		return m->rc != 0;
	}
	bool ok = __real_spz_x25519(out, priv, pub);
	memo_add(false, priv, pub, out, ok ? 1 : 0);
	return ok;
}

int __wrap_spz_x25519_public(uint8_t *pub, const uint8_t *priv)
{
	const struct memo *m = memo_find(true, priv, NULL);
	if (m) {
		memcpy(pub, m->out, 32);
		return m->rc;
	}
	int rc = __real_spz_x25519_public(pub, priv);
	memo_add(true, priv, NULL, pub, rc);
	return rc;
}

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

static uint8_t buf[WG_MAX_DATAGRAM];

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
static void carry(wg_tunnel *from, wg_tunnel *to, const wg_endpoint *src, uint64_t now)
{
	wg_endpoint dst;
	uint8_t pub[32];
	for (int i = 0; i < 64; i++) {
		int n = wg_tunnel_pop_outgoing(from, &dst, pub, buf, sizeof(buf));
		if (n < 0)
			break;
		wg_device_receive(wg_tunnel_device(to), now, src, buf, (size_t)n);
	}
	while (wg_tunnel_pop_delivered(to, pub, buf, sizeof(buf)) >= 0)
		;
}

static const uint8_t PING[] = {0x45, 0, 0,  28, 0, 0, 0, 0, 64, 1, 0, 0, 10, 10,
			       0,    2, 10, 10, 0, 1, 8, 0, 0,  0, 0, 0, 0,  0};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const uint8_t seed_r[] = "fuzz-r", seed_i[] = "fuzz-i";
	wg_tunnel *r = wg_tunnel_new(seed_r, sizeof(seed_r));
	wg_tunnel *in = wg_tunnel_new(seed_i, sizeof(seed_i));
	if (!r || !in)
		abort();
	wg_device *rd = wg_tunnel_device(r), *id = wg_tunnel_device(in);
	wg_endpoint ep_r, ep_i;
	endpoint(&ep_r, 1);
	endpoint(&ep_i, 2);
	uint8_t pub_r[32], pub_i[32], v4[4] = {10, 10, 0, 0};
	uint64_t now = 1000;
	wg_tunnel_set_wall_ns(in, (0x5B52647BULL - 10) * 1000000000ULL + 0x15405610);
	wg_device_set_flags(id, WG_FLAG_NO_WHITENING);
	wg_device_set_private_key(rd, now, SR_PRIV);
	wg_device_set_private_key(id, now, SI_PRIV);
	wg_device_public_key(rd, pub_r);
	wg_device_public_key(id, pub_i);
	wg_peer *pi = NULL, *pr = NULL;
	wg_peer_add(rd, pub_i, &pi);
	wg_peer_add(id, pub_r, &pr);
	v4[3] = 2;
	wg_peer_allowed_ip_add(rd, pi, WG_AF_INET, v4, 32);
	v4[3] = 1;
	wg_peer_allowed_ip_add(id, pr, WG_AF_INET, v4, 32);
	wg_peer_set_endpoint(pr, &ep_r);
	wg_tunnel_push_random(in, EI_IDX, sizeof(EI_IDX));
	wg_tunnel_push_random(r, ER_IDX, sizeof(ER_IDX));
	/* The capture's handshake, then one packet each way. */
	wg_device_send(id, now, PING, sizeof(PING));
	carry(in, r, &ep_i, now);
	carry(r, in, &ep_r, now);
	carry(in, r, &ep_i, now);
	uint8_t pong[sizeof(PING)];
	memcpy(pong, PING, sizeof(PING));
	pong[15] = 1;
	pong[19] = 2;
	wg_device_send(rd, now, pong, sizeof(pong));
	carry(r, in, &ep_r, now);
	struct wg_device_stats st;
	wg_device_stats(rd, &st);
	if (st.handshakes_completed != 1 || st.rx_packets != 1 || st.tx_packets != 1)
		abort(); /* the harness itself is broken: the deep paths would be unreachable */
	forget_setup_coverage();

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
			wg_tunnel_set_wall_ns(in, (0x5B52647BULL - 10) * 1000000000ULL + now * 1000000ULL);
			wg_device_tick(rd, now);
			wg_device_tick(id, now);
			break;
		}
		}
		if (op & 8) {
			carry(in, r, &ep_i, now);
			carry(r, in, &ep_r, now);
		}
		/* Keep the queues from growing across records. */
		wg_endpoint dst;
		uint8_t pub[32];
		while (wg_tunnel_pop_outgoing(r, &dst, pub, buf, sizeof(buf)) >= 0)
			;
		while (wg_tunnel_pop_outgoing(in, &dst, pub, buf, sizeof(buf)) >= 0)
			;
		while (wg_tunnel_pop_delivered(r, pub, buf, sizeof(buf)) >= 0)
			;
	}
	char *text = NULL;
	size_t tlen = 0;
	if (wg_uapi_get(rd, now, &text, &tlen) == 0)
		wg_uapi_free(text);
	wg_tunnel_free(r);
	wg_tunnel_free(in);
	return 0;
}
